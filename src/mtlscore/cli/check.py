"""``mtlscore check``: validate a presented chain and explain the verdict (docs/reference.md#command-line)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat import asn1
from cryptography.x509 import ObjectIdentifier

from ..decision.validator import Validator
from ..decision.verdict import Verdict
from ..reasons import CertificateRejected, ConfigError
from ..x509.cert import load_certificates
from ..x509.certificate import Certificate
from .common import JSON, PASSWORD, PKCS12_PASSWORD_ENV, Command, CommandError, arg
from .explain import explain

if TYPE_CHECKING:
    from ..decision.validator import Validator
    from ..identity.identity_map import Principal

__all__ = ["COMMAND", "read_certificates", "run"]


def read_input(name: str) -> bytes:
    """Bytes of a file, or of standard input for ``-``. Raises CommandError."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {name}: {exc.strerror or exc}") from None


# PEM labels (RFC 7468 §5-§11, and OpenSSL's legacy ones) that are not a certificate: what to say.
_NOT_A_CERTIFICATE = {
    "PRIVATE KEY": "a private key, not a certificate: give the certificate (the file curl takes "
    "with --cert), not the key (--key)",
    "CERTIFICATE REQUEST": "a certificate signing request (CSR), not a certificate: the CA issues "
    "the certificate from it; give that certificate",
    "X509 CRL": "a CRL, not a certificate: pass it with --crl",
    "PKCS7": "PKCS#7, not a PEM certificate: extract the certificates with "
    "openssl pkcs7 -print_certs -in {name} -out chain.pem",
    "PUBLIC KEY": "a public key, not a certificate: give the certificate that carries it",
}


def _not_a_certificate(label: str) -> str | None:
    for key, what in _NOT_A_CERTIFICATE.items():
        if label == key or label.endswith(" " + key) or label == "NEW " + key:
            return what
    return None


def certificate_input(name: str, data: bytes, password: str | None = None) -> bytes:
    """``data`` as the validator takes it, or :class:`CommandError` saying what the file is instead.

    PEM and DER certificates pass unchanged (their own errors are the validator's
    ``malformed``). A PKCS#12 file (what browsers and ``curl --cert-type P12`` use) is
    opened with ``password`` (or ``$MTLSCORE_PKCS12_PASSWORD``) and becomes PEM, its
    keyed certificate first. A private key, CSR, CRL or PKCS#7 file given by mistake is
    named as such, with what to give instead, rather than an ASN.1 parse error.
    """
    from ..runtimes.tls import pem_label

    if b"-----BEGIN " in data[:4096]:
        if b"-----BEGIN CERTIFICATE-----" in data or b"-----BEGIN X509 CERTIFICATE-----" in data:
            return data
        label = pem_label(data) or ""
        what = _not_a_certificate(label)
        if what is None:
            raise CommandError(f"{name} holds a PEM {label} block, not a CERTIFICATE")
        raise CommandError(f"{name} is {what.format(name=name)}")
    if not data:
        return data
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        pass
    else:
        return data
    if _is_pkcs12(data):
        return _open_pkcs12(name, data, password if password is not None else os.environ.get(PKCS12_PASSWORD_ENV))
    try:
        x509.load_der_x509_csr(data)
    except ValueError:
        pass
    else:
        raise CommandError(f"{name} is {_NOT_A_CERTIFICATE['CERTIFICATE REQUEST']} (DER)")
    try:
        x509.load_der_x509_crl(data)
    except ValueError:
        pass
    else:
        raise CommandError(f"{name} is {_NOT_A_CERTIFICATE['X509 CRL']} (DER)")
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:  # an encrypted key
        raise CommandError(f"{name} is an encrypted {_NOT_A_CERTIFICATE['PRIVATE KEY']} (DER)") from None
    except (ValueError, UnsupportedAlgorithm):
        return data  # neither: the validator explains why it is not a certificate
    raise CommandError(f"{name} is {_NOT_A_CERTIFICATE['PRIVATE KEY']} (DER)")


def read_certificates(name: str, password: str | None = None) -> list[Certificate]:
    """The certificates of file ``name`` (PEM, DER or PKCS#12; ``-`` for stdin), leaf first.

    Raises :class:`CommandError`: 2 when the file cannot be read or is not a
    certificate file, 1 when a certificate in it is malformed.
    """
    try:
        return load_certificates(certificate_input(name, read_input(name), password))
    except CertificateRejected as exc:
        raise CommandError(f"{name}: {exc.reason.value}: {exc.detail}", code=1) from None


# RFC 7292 §4: PFX ::= SEQUENCE { version INTEGER {v3(3)}, authSafe ContentInfo, macData MacData OPTIONAL }
@asn1.sequence
class _ContentInfo:
    content_type: ObjectIdentifier
    content: Annotated[asn1.TLV, asn1.Explicit(0)]


@asn1.sequence
class _MacData:
    mac: asn1.TLV
    mac_salt: bytes
    iterations: Annotated[int, asn1.Default(1)]


@asn1.sequence
class _PFX:
    version: int
    auth_safe: _ContentInfo
    mac_data: _MacData | None


def _is_pkcs12(data: bytes) -> bool:
    try:
        pfx = asn1.decode_der(_PFX, data)
    except ValueError:
        return False
    return pfx.version == 3


def _open_pkcs12(name: str, data: bytes, password: str | None) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    tries = [password.encode()] if password is not None else [None, b""]  # no password, or an empty one
    for secret in tries:
        try:
            bundle = pkcs12.load_pkcs12(data, secret)
        except ValueError:
            continue
        certs = ([bundle.cert] if bundle.cert is not None else []) + list(bundle.additional_certs)
        if not certs:
            raise CommandError(f"{name} is PKCS#12 but holds no certificate")
        return b"".join(c.certificate.public_bytes(Encoding.PEM) for c in certs)
    if password is None:
        raise CommandError(
            f"{name} is PKCS#12 (a .p12/.pfx bundle) protected by a password: pass --password "
            f"(or set {PKCS12_PASSWORD_ENV}), or extract the chain with "
            f"openssl pkcs12 -in {name} -nokeys -out chain.pem"
        )
    raise CommandError(f"{name} is PKCS#12 and the password given does not open it (or the file is damaged)")


def parse_at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--at {value!r} is not an ISO 8601 time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def build_validator(args: argparse.Namespace) -> Validator:
    from ..config import Config, load_config
    from ..verify.trust import TrustStore

    if args.config:
        config = load_config(args.config)
    else:
        from ..verify.policy import Policy

        config = Config(None, Path.cwd(), TrustStore(), Policy())
    store = config.trust
    for name in args.trust:
        _add(store.add_anchor, read_input(name), name, label=name)
    for name in args.intermediates:
        _add(store.add_intermediates, read_input(name), name)
    for name in args.allow:
        _add(store.add_allowlisted, read_input(name), name)
    crls = list(config.crls)
    for name in args.crl:
        from ..revocation.crl import parse_crl

        data = read_input(name)
        try:
            parse_crl(data)
        except ValueError as exc:
            raise CommandError(f"{name}: {exc}") from None
        crls.append(data)
    policy = config.policy.evolve(fetch=True, fetch_issuers=True) if args.fetch else config.policy
    return Validator(store, policy, identity_map=config.accounts, crls=crls)


def _add(method: Any, data: bytes, name: str, **kw: Any) -> None:
    try:
        method(data, **kw)
    except (ConfigError, CertificateRejected) as exc:
        msg = exc.message if isinstance(exc, ConfigError) else exc.detail
        raise CommandError(f"{name}: {msg}") from None


def verdict_json(verdict: Verdict) -> dict[str, object]:
    """The JSON object of docs/reference.md#command-line."""
    return {
        "verdict": "accepted" if verdict.ok else "rejected",
        "reason": verdict.reason.value if verdict.reason else None,
        "detail": verdict.detail,
        "path": [
            {
                "subject": c.subject_text,
                "issuer": c.issuer_text,
                "serial": format(c.serial, "x"),
                "sha256": c.fingerprint_hex,
                "not_after": c.not_after.isoformat(),
            }
            for c in verdict.path
        ],
        "identity": verdict.identity.to_dict() if verdict.identity is not None else None,
        "anchor": verdict.anchor.name if verdict.anchor is not None else None,
        "principal": _principal(verdict.principal),
        "notes": list(verdict.notes),
    }


def _principal(principal: Principal | None) -> dict[str, object] | None:
    return principal.to_dict() if principal is not None else None


def principal_text(principal: Principal) -> str:
    """``partner-abc (groups: a, b; mapped by accounts[0])``: the principal for a person.

    The account's other attributes (keys, hashes, limits) are configuration, not who
    the caller is; ``--json`` prints them.
    """
    extra = []
    if principal.groups:
        extra.append("groups: " + ", ".join(principal.groups))
    if principal.rule:
        extra.append(f"mapped by {principal.rule}")
    return f"{principal.id} ({'; '.join(extra)})" if extra else principal.id


def explain_text(verdict: Verdict) -> str:
    """The verdict explained to a person."""
    lines: list[str] = []
    if verdict.ok:
        lines.append("ACCEPTED")
        if verdict.anchor is not None:
            lines.append(f"  trusted via anchor: {verdict.anchor.name}")
    else:
        assert verdict.reason is not None
        what, fix = explain(verdict.reason)
        lines.append(f"REJECTED: {verdict.reason.value}")
        lines.append(f"  what:   {what}")
        lines.append(f"  why:    {verdict.detail}")
        lines.append(f"  fix:    {fix}")
    if verdict.path:
        lines.append("  path (leaf first):" if verdict.ok else "  closest path tried (leaf first):")
        for i, c in enumerate(verdict.path):
            mark = " <-- here" if verdict.position == i and not verdict.ok else ""
            lines.append(f"    [{i}] {c.describe()}{mark}")
            lines.append(f"        issuer {c.issuer_text}; serial {c.serial:x}; "
                         f"valid {c.not_before:%Y-%m-%d} .. {c.not_after:%Y-%m-%d}")
            lines.append(f"        sha256 {c.fingerprint_hex}")
    if verdict.identity is not None:
        ident = verdict.identity
        lines.append(f"  identity: {ident.subject_dn or '(empty subject)'}  x5t#S256={ident.x5t_s256}")
    if verdict.principal is not None:
        lines.append(f"  principal: {principal_text(verdict.principal)}")
    for note in verdict.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    at = parse_at(args.at)
    validator = build_validator(args)
    chain = certificate_input(args.chain, read_input(args.chain), args.password)
    ocsp = [read_input(name) for name in args.ocsp_response]
    if not len(validator.trust) and not validator.trust.allowlisted and not args.json:
        print("mtlscore check: warning: no trust anchors given (--trust, --allow or --config); "
              "nothing can be accepted", file=sys.stderr)
    if args.fetch:
        from ..runtimes.fetch_asyncio import validate_with_fetch

        verdict = validate_with_fetch(validator, chain, at=at, timeout=args.fetch_timeout, ocsp_responses=ocsp)
    else:
        verdict = validator.validate(chain, at=at, ocsp_responses=ocsp)
    if args.json:
        print(json.dumps(verdict_json(verdict), indent=2))
    else:
        print(explain_text(verdict))
    return 0 if verdict.ok else 1


COMMAND = Command(
    "check",
    help="validate a client certificate chain and explain the verdict",
    description="Validate CHAIN (a PEM file, leaf first, one DER certificate, or a PKCS#12 file; - for stdin). "
    "Exit 0 accepted, 1 rejected, 2 usage error.",
    arguments=(
        arg("--trust", action="append", default=[], metavar="FILE", help="trust anchor(s), PEM/DER"),
        arg("--intermediates", action="append", default=[], metavar="FILE",
            help="intermediates pool used to complete the chain"),
        arg("--allow", action="append", default=[], metavar="FILE",
            help="allowlisted certificate(s), accepted on exact match"),
        arg("--crl", action="append", default=[], metavar="FILE",
            help="CRL(s); every certificate whose issuer one covers is checked"),
        arg("--fetch", action="store_true",
            help="fetch CRLs, OCSP answers and missing issuers named in the certificates (HTTP)"),
        arg("--fetch-timeout", type=float, default=5.0, metavar="SECONDS", help="timeout of one fetch (default 5)"),
        arg("--ocsp-response", action="append", default=[], metavar="FILE",
            help="a DER OCSP response for a certificate of the chain (e.g. saved from a stapled handshake)"),
        arg("--config", metavar="FILE", help="configuration file ([trust], [policy], [revocation])"),
        arg("--at", metavar="ISO8601", help="validation time (default: now)"),
        JSON,
        PASSWORD,
        arg("chain", metavar="CHAIN"),
    ),
    run=run,
)
