"""The fixed PKI, files and gateway the fuzz targets validate against (built once per process)."""

from __future__ import annotations

import functools
import json
import pathlib
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from mtlscore import Policy, TrustStore, Validator, pki
from mtlscore.gateway.appauth import hash_api_key
from mtlscore.x509.cert import Certificate, parse_certificate
from mtlscore.x509.jwk import jwk_from_certificate

API_KEY = "fuzz-api-key-0123456789"
_FETCH_POLICIES: tuple[tuple[Literal["soft", "hard"], bool, Literal["ocsp", "crl"]], ...] = (
    ("soft", False, "ocsp"),
    ("hard", True, "crl"),
    ("hard", False, "ocsp"),
    ("soft", True, "crl"),
)


@dataclass(frozen=True)
class World:
    """Everything a target needs: certificates, a validator, revocation data, files."""

    root: pki.Issued
    inter: pki.Issued
    leaf: pki.Issued
    leaf_cert: Certificate
    inter_cert: Certificate
    validator: Validator
    fetching: tuple[Validator, ...]
    crl_der: bytes
    ocsp_good: bytes
    ocsp_revoked: bytes
    ocsp_delegated: bytes
    jwks: dict[str, Any]
    token: str
    token_jwks: dict[str, Any]
    tmpdir: pathlib.Path


def _ocsp(leaf: pki.Issued, inter: pki.Issued, *, revoked: bool = False, signer: pki.Issued | None = None) -> bytes:
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=leaf.cert,
        issuer=inter.cert,
        algorithm=hashes.SHA1(),
        cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
        this_update=pki.NOW - timedelta(hours=1),
        next_update=pki.NOW + timedelta(days=1),
        revocation_time=pki.NOW - timedelta(days=2) if revoked else None,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
    )
    who = signer or inter
    b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, who.cert)
    if signer is not None:
        b = b.certificates([signer.cert])
    b = b.add_extension(x509.OCSPNonce(b"0123456789abcdef"), critical=False)
    return b.sign(who.key, hashes.SHA256()).public_bytes(Encoding.DER)


def _write_files(w_root: pki.Issued, inter: pki.Issued, leaf: pki.Issued, crl: bytes) -> pathlib.Path:
    d = pathlib.Path(tempfile.mkdtemp(prefix="mtlscore-fuzz-"))
    server = w_root.leaf("localhost", san_dns=["localhost"], eku=[pki.SERVER_AUTH])
    (d / "ca.pem").write_bytes(w_root.pem)
    (d / "inter.pem").write_bytes(inter.pem)
    (d / "leaf.pem").write_bytes(leaf.pem)
    (d / "ca.crl").write_bytes(crl)
    (d / "server.pem").write_bytes(server.pem)
    (d / "server.key").write_bytes(server.key_pem)
    return d


@functools.cache
def world() -> World:
    """The shared fixture (certificates are made fresh per process; nothing is on disk but tmpdir)."""
    root = pki.root("Fuzz Root CA")
    inter = root.intermediate("Fuzz Issuing CA", crl_urls=["http://127.0.0.1:1/ca.crl"])
    leaf = inter.leaf(
        "client.fuzz.example",
        san_dns=["client.fuzz.example"],
        san_uri=["spiffe://fuzz.example/ns/default/sa/client"],
        san_email=["ops@fuzz.example"],
        san_ip=["127.0.0.1"],
        ocsp_urls=["http://127.0.0.1:1/ocsp"],
        crl_urls=["http://127.0.0.1:1/inter.crl"],
        ca_issuers_urls=["http://127.0.0.1:1/inter.der"],
    )
    responder = inter.leaf("Fuzz OCSP", eku=["1.3.6.1.5.5.7.3.9"])
    crl = inter.crl(revoked=[12345, leaf.serial + 1])
    leaf_cert = parse_certificate(leaf.der)
    inter_cert = parse_certificate(inter.der)
    validator = Validator(TrustStore([root.pem]), Policy(revocation="soft"))
    jwks = {"keys": [jwk_from_certificate(leaf_cert), {"kty": "oct", "k": "c2VjcmV0"}]}
    signer = root.leaf("Fuzz Token Issuer", key="ec")
    from mtlscore.jwt import issue_bound_token

    token = issue_bound_token(
        {
            "iss": "https://issuer.fuzz.example",
            "aud": "api",
            "exp": int(pki.NOW.timestamp()) + 600,
            "iat": int(pki.NOW.timestamp()),
            "sub": "client",
        },
        signer.key,
        leaf_cert,
        kid="k1",
    )
    token_jwks = {"keys": [{**jwk_from_certificate(parse_certificate(signer.der)), "kid": "k1", "use": "sig"}]}
    tmp = _write_files(root, inter, leaf, crl)
    return World(
        root=root,
        inter=inter,
        leaf=leaf,
        leaf_cert=leaf_cert,
        inter_cert=inter_cert,
        validator=validator,
        fetching=tuple(
            Validator(
                TrustStore([root.pem]),
                Policy(revocation=mode, fetch=True, fetch_issuers=True, ocsp_nonce=nonce, revocation_prefer=prefer),
            )
            for mode, nonce, prefer in _FETCH_POLICIES
        ),
        crl_der=crl,
        ocsp_good=_ocsp(leaf, inter),
        ocsp_revoked=_ocsp(leaf, inter, revoked=True),
        ocsp_delegated=_ocsp(leaf, inter, signer=responder),
        jwks=jwks,
        token=token,
        token_jwks=token_jwks,
        tmpdir=tmp,
    )


def config_toml(w: World, *, server: bool = False, accounts: bool = True) -> str:
    """A valid configuration file (docs/reference.md#configuration-file) naming the files in ``w.tmpdir``."""
    text = """
[trust]
anchors = ["ca.pem", { path = "ca.pem", not_after = "2030-01-31T00:00:00Z", label = "old" }]
intermediates = ["inter.pem"]

[policy]
required_eku = "clientAuth"
require_leaf_eku = true
min_rsa_bits = 2048
curves = ["P-256", "P-384"]
key_types = ["rsa", "ec"]
signature_hashes = ["sha256", "sha384"]
max_intermediates = 4
clock_skew_seconds = 30

[revocation]
mode = "soft"
crls = ["ca.crl"]
max_age_seconds = 86400
"""
    if accounts:
        text += f"""
[[accounts]]
id = "fuzz-client"
anchors = ["ca.pem"]
match = {{ cn = "client.fuzz.example", san_dns = "client.fuzz.example" }}
api_key_sha256 = ["{hash_api_key(API_KEY)}"]
ip_allow = ["127.0.0.0/8"]
rate_limit = "1000/s"

[[accounts]]
id = "spiffe-workload"
anchors = ["ca.pem"]
match = {{ spiffe_id = "spiffe://fuzz.example/ns/default/sa/other" }}
jwks = {json.dumps(json.dumps(w.token_jwks))}
"""
    if server:
        text += """
[server]
listen = "127.0.0.1:0"
certificate = "server.pem"
key = "server.key"
mode = "reject_invalid"
"""
    return text


@dataclass(frozen=True)
class CRLWorld:
    """A PKI with every CRL shape of RFC 5280 §6.3 (crl_set target): its chains, CRLs and validators."""

    leaf: pki.Issued
    leaf_cert: Certificate
    inter_cert: Certificate
    chains: tuple[tuple[bytes, ...], ...]
    crls: tuple[bytes, ...]
    validators: tuple[Validator, ...]


@functools.cache
def crl_world() -> CRLWorld:
    """Rollover, a separate CRL key, an indirect CRL issuer, reason partitions, deltas (made once per process)."""
    dp_url, delta_url = "http://127.0.0.1:1/part.crl", "http://127.0.0.1:1/delta.crl"
    root = pki.root("Fuzz CRL Root")
    new_key = root.rollover()
    inter = root.intermediate("Fuzz CRL CA", key_usage=pki.key_usage("key_cert_sign"))
    signer = inter.crl_signer()
    indirect = root.intermediate("Fuzz Indirect CRL Issuer")
    leaf = inter.leaf("crl.fuzz.example", crl_dps=[pki.dp(uri=dp_url), pki.dp(crl_issuer=indirect)],
                      freshest=[delta_url])
    plain = new_key.leaf("rolled.fuzz.example")
    reasons = ["keyCompromise", "cACompromise", "affiliationChanged"]
    rest = ["superseded", "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise"]
    crls = (
        inter.crl(revoked=[12345], signer=signer, number=10, idp=pki.idp(uri=dp_url, reasons=reasons)),
        inter.crl(signer=signer, number=11, idp=pki.idp(uri=dp_url, reasons=rest)),
        inter.crl(revoked=[leaf], signer=signer, number=12, delta_of=10, idp=pki.idp(uri=dp_url, reasons=reasons)),
        indirect.crl(revoked=[pki.entry(7, issuer=inter), pki.entry(leaf)], idp=pki.idp(dirname=indirect.cert.subject,
                                                                                        indirect=True)),
        root.crl(revoked=[99], number=1),
        new_key.crl(revoked=[plain], number=2),
        inter.crl(idp=pki.idp(relative="CN=Part 1", users=True)),
    )
    pool = [signer.pem, indirect.pem, new_key.pem]
    return CRLWorld(
        leaf=leaf,
        leaf_cert=parse_certificate(leaf.der),
        inter_cert=parse_certificate(inter.der),
        chains=((leaf.der, inter.der), (plain.der, new_key.der), (leaf.der, inter.der, signer.der, indirect.der)),
        crls=crls,
        validators=tuple(
            Validator(TrustStore([root.pem], pool if with_pool else ()), Policy(revocation=mode, max_path_work=work))
            for mode, with_pool, work in (("hard", True, 1024), ("soft", True, 1024), ("hard", False, 1024),
                                          ("hard", True, 40))
        ),
    )
