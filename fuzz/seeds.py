"""Seed corpora, generated at start: certificates from mtlscore.pki and the x509-limbo vectors.

The fixture PKI is made fresh per run; the limbo vectors are the ones vendored in
``tests/conformance/limbo.json.xz``.
"""

from __future__ import annotations

import base64
import functools
import json
import lzma
import pathlib
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mtlscore import pki
from mtlscore.proxy import headers as hdr
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.dn import format_dn
from mtlscore.x509.jwk import jwk_from_certificate

from ._world import API_KEY, config_toml, crl_world, world
from .targets import CHAIN_SEPARATOR, UPSTREAM_SEPARATOR

REPO = pathlib.Path(__file__).resolve().parent.parent
LIMBO = REPO / "tests" / "conformance" / "limbo.json.xz"  # vendored (tests/conformance/README.md)
# Enough limbo cases to cover the feature kinds, few enough to keep start-up fast.
MAX_LIMBO_CASES = 60


@functools.cache
def limbo_cases() -> tuple[dict[str, Any], ...]:
    """A deterministic sample of limbo test cases (empty when the file is absent)."""
    try:
        doc = json.loads(lzma.decompress(LIMBO.read_bytes()))
    except (OSError, ValueError, lzma.LZMAError):
        return ()
    cases = doc.get("testcases", [])
    step = max(1, len(cases) // MAX_LIMBO_CASES)
    return tuple(cases[::step][:MAX_LIMBO_CASES])


def _pem_to_der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)


def _limbo_chains() -> list[tuple[list[bytes], str]]:
    out = []
    for case in limbo_cases():
        try:
            pems = [case["peer_certificate"], *case.get("untrusted_intermediates", [])]
            out.append(([_pem_to_der(p) for p in pems], "".join(pems)))
        except (KeyError, ValueError):
            continue
    return out


def _limbo_crls() -> list[bytes]:
    out = []
    for case in limbo_cases():
        for crl in case.get("crls", []) or []:
            out.append(crl.encode())
    return out


@functools.cache
def _extra_issued() -> tuple[pki.Issued, ...]:
    w = world()
    rsa_root = pki.root("RSA Root", key="rsa")
    return (
        rsa_root.intermediate("RSA Inter", key="rsa").leaf("rsa.client", key="rsa", pss=True),
        w.inter.leaf('CN=odd \\"name\\"+OU=Ops,O=Acme\\, Inc.', san_uri=["spiffe://a/b"], eku=[pki.SERVER_AUTH]),
        pki.root("Self Signed Client", ca=False, eku=[pki.CLIENT_AUTH]),
        w.inter.leaf("expired", not_before=pki.NOW.replace(year=2024), not_after=pki.NOW.replace(year=2025)),
        _policy_leaf(w.root),
    )


def _policy_leaf(root: pki.Issued) -> pki.Issued:
    """A chain with every certificate-policy extension, so mutations reach policy processing."""
    p, q = "1.3.6.1.4.1.55555.1.1", "1.3.6.1.4.1.55555.1.2"
    bridge = root.intermediate("Policy Bridge", extensions=[
        pki.certificate_policies(p, "2.5.29.32.0"), pki.policy_mappings((p, q)),
        (x509.PolicyConstraints(require_explicit_policy=0, inhibit_policy_mapping=1), True),
        (x509.InhibitAnyPolicy(1), True),
    ])
    return bridge.intermediate("Policy CA", extensions=[pki.certificate_policies(q)]).leaf(
        "policy.client", extensions=[pki.certificate_policies(q)])


def _chains() -> list[tuple[list[bytes], str]]:
    w = world()
    mine = [([c.der for c in i.chain], i.chain_pem.decode()) for i in (w.leaf, *_extra_issued())]
    return mine + _limbo_chains()


def _certs() -> list[Any]:
    w = world()
    return [parse_certificate(d) for d in (w.leaf.der, w.inter.der, w.root.der, *(i.der for i in _extra_issued()))]


def _headers(name: str) -> list[bytes]:
    certs = _certs()
    leaf, inter = certs[0], certs[1]
    table: dict[str, Callable[[], list[str]]] = {
        "header_rfc9440": lambda: [hdr.emit_client_cert(c) for c in certs],
        "header_rfc9440_chain": lambda: [hdr.emit_client_cert_chain([leaf, inter]), hdr.emit_client_cert_chain([leaf])],
        "header_nginx_escaped": lambda: [hdr.emit_nginx_escaped_cert(c) for c in certs],
        "header_nginx": lambda: [hdr.emit_nginx_cert(c) for c in certs],
        "header_alb": lambda: [hdr.emit_alb_clientcert([leaf, inter]), hdr.emit_alb_clientcert([leaf])],
        "header_alb_leaf": lambda: [hdr.emit_alb_leaf(c) for c in certs],
        "header_xfcc": lambda: [
            hdr.emit_xfcc([hdr.XfccElement.from_chain([leaf, inter], by=["spiffe://proxy/a"])]),
            hdr.emit_xfcc([hdr.XfccElement.from_chain([c]) for c in certs[:3]]),
            'By=spiffe://a;Hash=00;Subject="CN=x,O=\\"q\\"";URI=spiffe://b;DNS=a.example,By=b',
        ],
    }
    return [v.encode() for v in table[name]()]


def _proxy_seeds() -> list[bytes]:
    certs = _certs()
    leaf, inter = certs[0], certs[1]
    lines = [
        (0, b"client-cert", hdr.emit_client_cert(leaf)),
        (1, b"client-cert", hdr.emit_client_cert(leaf)),
        (1, b"client-cert-chain", hdr.emit_client_cert_chain([inter])),
        (2, b"x-forwarded-client-cert", hdr.emit_xfcc([hdr.XfccElement.from_chain([leaf, inter])])),
        (3, b"x-ssl-client-cert", hdr.emit_nginx_cert(leaf)),
        (4, b"x-amzn-mtls-clientcert", hdr.emit_alb_clientcert([leaf, inter])),
        (5, b"x-client-cert-present", "true"),
    ]
    out = [bytes([peer]) + name + b": " + value.encode() for peer, name, value in lines]
    out.append(b"\x03x-ssl-client-verify: SUCCESS\nx-ssl-client-cert: " + hdr.emit_nginx_cert(leaf).encode())
    return out


def _asgi_seeds() -> list[bytes]:
    w = world()
    out = []
    for seed in _proxy_seeds():
        for flags in (0x00, 0x08, 0x18, 0x28, 0x38):
            out.append(bytes([(seed[0] % 8) | flags]) + seed[1:])
    out.append(bytes([0x18]) + b"authorization: Bearer " + w.token.encode())
    out.append(bytes([0x38]) + b"authorization: Bearer " + w.token.encode() + b"\nclient-cert: :AAAA:")
    return out


def _dn_seeds() -> list[bytes]:
    names = [format_dn(c.subject) for c in _certs()]
    names += [
        'CN=a\\,b+O=x;OU="quoted, value",C=US',
        "1.2.840.113549.1.9.1=#160d6f7073406578616d706c652e636f6d,CN=x",
        "cn = spaced , o = Lower ,  dc=example, dc=com",
        "CN=\\23hash\\20,O=\\c3\\a9t\\c3\\a9",
        "UID=u1,serialNumber=42,emailAddress=a@b,street=1 Main,L=Town,ST=State,postalCode=1",
    ]
    for case in limbo_cases()[:20]:
        try:
            cert = x509.load_pem_x509_certificate(case["peer_certificate"].encode())
            names.append(cert.subject.rfc4514_string())
        except (KeyError, ValueError):
            continue
    return [n.encode() for n in names]


def _jwks_seeds() -> list[bytes]:
    w = world()
    leaf = w.leaf_cert
    with_x5c = {**jwk_from_certificate(leaf), "x5c": [base64.b64encode(leaf.der).decode()]}
    x5c_only = {"kty": "EC", "x5c": [base64.b64encode(leaf.der).decode()]}
    other = jwk_from_certificate(parse_certificate(_extra_issued()[0].der))
    docs: tuple[dict[str, Any], ...] = (
        w.jwks,
        {"keys": [with_x5c]},
        {"keys": [x5c_only, other]},
        {"keys": []},
        w.token_jwks,
    )
    return [json.dumps(d).encode() for d in docs]


def _token_seeds() -> list[bytes]:
    w = world()
    return [
        w.token.encode(),
        json.dumps({"cnf": {"x5t#S256": w.leaf_cert.x5t_s256}}).encode(),
        json.dumps({"cnf": {"x5t#S256": "AAAA"}, "sub": "x"}).encode(),
        b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    ]


def _crl_seeds() -> list[bytes]:
    w = world()
    pem = x509.load_der_x509_crl(w.crl_der).public_bytes(Encoding.PEM)
    return [w.crl_der, pem, w.inter.crl(), w.root.crl(revoked=[w.inter])] + _limbo_crls()[:20]


def _crl_set_seeds() -> list[bytes]:
    w = crl_world()
    out = []
    for sel, chain in ((1, 0), (1, 1), (3, 2), (5, 0), (13, 0), (0x81, 0)):
        chain_der = list(w.chains[chain])[: 1 + (sel & 3)]
        chain_der += [w.leaf.der] * (1 + (sel & 3) - len(chain_der))
        for crls in (w.crls, w.crls[:1], w.crls[3:5], (w.crls[2], w.crls[0], w.crls[1], w.crls[4])):
            out.append(bytes([sel]) + CHAIN_SEPARATOR.join([*chain_der, *crls]))
    return out


def _fetch_seeds() -> list[bytes]:
    w = world()
    out = []
    for mode in range(8):
        for answers in (
            [w.ocsp_good, w.crl_der],
            [w.crl_der, w.ocsp_revoked],
            [w.inter.der, w.ocsp_delegated],
            [b"", w.crl_der],
            [w.ocsp_good, w.ocsp_good, w.ocsp_good],
        ):
            out.append(bytes([mode]) + CHAIN_SEPARATOR.join(answers))
    return out


def _config_seeds() -> list[bytes]:
    w = world()
    return [
        config_toml(w).encode(),
        config_toml(w, server=True).encode(),
        config_toml(w, accounts=False).encode(),
        b'[trust]\nallowlisted = ["leaf.pem"]\n[policy]\nrequire_leaf_eku = false\n',
        b'[trust]\nanchors = ["ca.pem"]\n[[accounts]]\ntemplate = "kubernetes"\nanchors = ["ca.pem"]\n',
        b'[server]\nlisten = "[::1]:0"\ncertificate = "server.pem"\nkey = "server.key"\n'
        b'upstream = "http://127.0.0.1:8080/p"\ntrusted_proxies = ["127.0.0.1/32"]\n',
    ]


def _session_seeds() -> list[bytes]:
    key = API_KEY.encode()
    reqs = [
        b"GET /identity HTTP/1.1\r\nHost: gw\r\nX-Api-Key: " + key + b"\r\n\r\n",
        b"POST /api/x HTTP/1.1\r\nHost: gw\r\nAuthorization: ApiKey "
        + key
        + b"\r\nContent-Length: 5\r\nX-Client-Cert-Present: true\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: gw\r\nX-Api-Key: " + key + b"\r\n\r\nGET /b HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET /s HTTP/1.1\r\nHost: gw\r\nX-Api-Key: " + key + b"\r\nX_Mtls_Account: evil\r\n"
        b"X-Client-Cert-Present: spoof\r\nClient_Cert: :AAAA:\r\nX-Forwarded-Client-Cert: By=x\r\n\r\n",
    ]
    # Through a trusted proxy (selector bit 3): the client certificate in RFC 9440 headers.
    w = world()
    forwarded = (b"Client-Cert: :" + base64.b64encode(w.leaf.der) + b":\r\nClient-Cert-Chain: :"
                 + base64.b64encode(w.inter.der) + b":\r\nX-Forwarded-For: 10.0.0.7\r\n")
    reqs += [
        b"GET /p HTTP/1.1\r\nHost: gw\r\nX-Api-Key: " + key + b"\r\n" + forwarded + b"\r\n",
        b"GET /p HTTP/1.1\r\nHost: gw\r\n" + forwarded + b"\r\nGET /q HTTP/1.1\r\nHost: gw\r\n\r\n",
    ]
    # Issue 15: forwarding spoofs, ambiguous framing, targets to normalise or refuse.
    reqs += [
        b"GET /s HTTP/1.1\r\nHost: gw\r\nX-Api-Key: " + key + b"\r\nX-Forwarded-For: 6.6.6.6\r\n"
        b"X_Forwarded_For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Real-IP: 7.7.7.7\r\n"
        b"Remote-User: admin\r\nX-Note: a\r\n X-Forwarded-Proto: http\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: gw\r\nX-Api-Key: " + key + b"\r\nContent-Length: 20\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET /a/./b/../%2e%2E/c?x=/../y HTTP/1.1\r\nHost: gw\r\nX-Api-Key: " + key + b"\r\n\r\n"
        b"GET /a/..;x/%2F/..%5c HTTP/1.1\r\nHost: gw\r\n\r\nGET /../admin HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET http://gw.example:8443/a/../b?q HTTP/1.1\r\nHost: other\r\nX-Api-Key: " + key + b"\r\n\r\n"
        b"OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\nCONNECT gw:443 HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /p HTTP/1.1\r\nHost: gw\r\n" + forwarded + b"X-Forwarded-For: 10.0.0.8, 10.0.0.9\r\n"
        b"X-Real-IP: 10.0.0.7\r\n\r\n",
    ]
    upstream = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    out = []
    for sel in (0, 1, 2, 5, 8, 9, 13):
        for r in reqs:
            out.append(bytes([sel]) + r + UPSTREAM_SEPARATOR + upstream)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    out.append(b"\x01" + reqs[0] + UPSTREAM_SEPARATOR + chunked)
    return out


def _jwks_fetched_seeds() -> list[bytes]:
    headers = (b"max-age=300", b"public, max-age=5", b"no-store", b"s-maxage=99999999999", b"")
    return [h + b"\n" + doc for h in headers for doc in _jwks_seeds()]


def _basic_auth_seeds() -> list[bytes]:
    return [b"Basic " + base64.b64encode(b"edge:s3cret"), b"basic ZWRnZTo=", b"Basic !!!", b"Bearer x",
            b"Basic " + base64.b64encode(b"no-colon"), b""]


def _oauth_client_seeds() -> list[bytes]:
    w = world()
    return [b"pki\x00" + w.leaf.der, b"self\x00" + w.leaf.der, b"self\x00" + w.leaf.pem,
            b"nobody\x00" + w.leaf.der, b"pki\x00garbage", b"\x00"]


def seeds_for(name: str) -> list[bytes]:
    """The seed inputs of target ``name`` (see :data:`fuzz.targets.TARGETS`)."""
    if name == "certificate":
        out = [d for chain, _ in _chains() for d in chain]
        return out + [c.pem.encode() for c in _certs()]
    if name == "chain_der":
        return [CHAIN_SEPARATOR.join(chain) for chain, _ in _chains()]
    if name == "chain_pem":
        return [pem.encode() for _, pem in _chains()] + [world().leaf.der]
    if name.startswith("header_"):
        return _headers(name)
    table = {
        "proxy_decide": _proxy_seeds,
        "asgi": _asgi_seeds,
        "dn": _dn_seeds,
        "jwks": _jwks_seeds,
        "jwks_fetched": _jwks_fetched_seeds,
        "proxy_basic_auth": _basic_auth_seeds,
        "oauth_client": _oauth_client_seeds,
        "bound_token": _token_seeds,
        "crl": _crl_seeds,
        "crl_set": _crl_set_seeds,
        "ocsp": lambda: [world().ocsp_good, world().ocsp_revoked, world().ocsp_delegated],
        "config": _config_seeds,
        "revocation_fetch": _fetch_seeds,
        "session": _session_seeds,
    }
    return table[name]()
