"""OCSP (RFC 6960): build requests and decide what a response says about a certificate.

Parsing and encoding are ``cryptography``'s; the decisions are ours: the
response must be *successful*, carry a single response for exactly this
certificate (serial and issuer hashes), be signed by an *authorised* responder
(§4.2.2.2: the issuing CA itself, or a certificate the CA issued with the
id-kp-OCSPSigning EKU), be current (§4.2.2.1 thisUpdate/nextUpdate), and echo
our nonce when one was sent (RFC 8954). "unknown" is no answer; "revoked" is.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import OCSPExtensionOID

from ._cert import Certificate, parse_certificate
from ._names import name_key
from ._policy import OCSP_SIGNING
from ._reasons import CertificateRejected
from ._signature import verify_link

__all__ = ["OCSPStatus", "build_request", "check_response"]

DEFAULT_HASHES = frozenset({"sha256", "sha384", "sha512"})
_NONCE = OCSPExtensionOID.NONCE.dotted_string
# A response carrying more certificates than this is not a responder's answer.
_MAX_RESPONSE_CERTS = 8

# RFC 6960 §4.3 signature algorithms (the same OIDs as for certificates).
_SIG_KINDS: dict[str, str] = {
    "1.2.840.113549.1.1.5": "rsa",
    "1.2.840.113549.1.1.11": "rsa",
    "1.2.840.113549.1.1.12": "rsa",
    "1.2.840.113549.1.1.13": "rsa",
    "1.2.840.10045.4.1": "ec",
    "1.2.840.10045.4.3.2": "ec",
    "1.2.840.10045.4.3.3": "ec",
    "1.2.840.10045.4.3.4": "ec",
    "1.3.101.112": "ed25519",
    "1.3.101.113": "ed448",
}


@dataclass(frozen=True, slots=True)
class OCSPStatus:
    """What one OCSP response says about one certificate.

    ``unknown``: the responder does not know the certificate (no answer);
    ``unusable``: the response cannot be relied on (``detail`` says why);
    ``unrelated``: the response is about other certificates.
    """

    status: Literal["good", "revoked", "unknown", "unusable", "unrelated"]
    detail: str = ""
    this_update: datetime | None = None
    next_update: datetime | None = None


def build_request(cert: Certificate, issuer: Certificate, *, nonce: bytes | None = None) -> bytes:
    """A DER OCSP request for ``cert`` issued by ``issuer`` (SHA-1 CertID, RFC 6960 §4.1.1).

    SHA-1 here only names the certificate (RFC 5019 §2.1.1 makes it the
    interoperable choice); it signs nothing. Raises ValueError on unusable input.
    """
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert.x509, issuer.x509, hashes.SHA1())  # noqa: S303
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


def _key_hash(key: Any) -> bytes:
    # RFC 6960 §4.2.1: KeyHash is SHA-1 of the subjectPublicKey BIT STRING value,
    # which is exactly RFC 5280 §4.2.1.2 method (1) for a key identifier.
    return x509.SubjectKeyIdentifier.from_public_key(key).digest


def _verify(key: Any, resp: ocsp.OCSPResponse, allowed_hashes: frozenset[str]) -> str | None:
    """None when ``key`` verifies the response signature; else why not."""
    oid = resp.signature_algorithm_oid.dotted_string
    kind = _SIG_KINDS.get(oid)
    if kind is None:
        return f"its signature algorithm {oid} is not supported"
    hash_alg = resp.signature_hash_algorithm if kind in ("rsa", "ec") else None
    if hash_alg is not None and hash_alg.name not in allowed_hashes:
        return f"it is signed with {hash_alg.name.upper()}, which policy does not allow"
    try:
        if kind == "rsa" and isinstance(key, rsa.RSAPublicKey) and hash_alg is not None:
            key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(), hash_alg)
        elif kind == "ec" and isinstance(key, ec.EllipticCurvePublicKey) and hash_alg is not None:
            key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(hash_alg))
        elif kind == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(resp.signature, resp.tbs_response_bytes)
        elif kind == "ed448" and isinstance(key, ed448.Ed448PublicKey):
            key.verify(resp.signature, resp.tbs_response_bytes)
        else:
            return "its signature algorithm does not match the signer's key"
    except InvalidSignature:
        return "its signature does not verify"
    except Exception:  # noqa: BLE001 - odd parameters from hostile input
        return "its signature could not be checked"
    return None


def _responder_is(resp: ocsp.OCSPResponse, cert: Certificate) -> bool:
    # RFC 6960 §4.2.2.3: the ResponderID names the signer by name or by key hash.
    if resp.responder_key_hash is not None:
        return cert.public_key is not None and hmac.compare_digest(
            resp.responder_key_hash, _key_hash(cert.public_key)
        )
    if resp.responder_name is not None:
        return name_key(resp.responder_name) == cert.subject_key
    return False


def _authorised_signer(
    resp: ocsp.OCSPResponse,
    issuer: Certificate,
    *,
    at: datetime,
    skew: timedelta,
    allowed_hashes: frozenset[str],
) -> str | None:
    """None when the response is signed by an authorised responder; else why not."""
    # RFC 6960 §4.2.2.2 (1): the CA that issued the certificate signs itself.
    if _responder_is(resp, issuer):
        why = _verify(issuer.public_key, resp, allowed_hashes)
        return None if why is None else f"{why} with the issuing CA's key"
    # §4.2.2.2 (3): a delegated responder, issued directly by that CA, with id-kp-OCSPSigning.
    reasons: list[str] = []
    certs = resp.certificates[:_MAX_RESPONSE_CERTS]
    for raw in certs:
        try:
            cand = parse_certificate(raw.public_bytes(Encoding.DER))
        except CertificateRejected as exc:
            reasons.append(f"an included certificate is malformed: {exc.detail}")
            continue
        if not _responder_is(resp, cand):
            continue
        who = f"delegated responder {cand.describe()!r}"
        if cand.issuer_key != issuer.subject_key or not verify_link(cand, issuer):
            reasons.append(f"{who} was not issued by the certificate's CA {issuer.describe()!r}")
        elif cand.eku is None or OCSP_SIGNING not in cand.eku:
            reasons.append(f"{who} lacks the OCSPSigning extended key usage (RFC 6960 §4.2.2.2)")
        elif not (cand.not_before - skew <= at <= cand.not_after + skew):
            reasons.append(f"{who} is outside its validity period")
        elif (why := _verify(cand.public_key, resp, allowed_hashes)) is not None:
            reasons.append(f"{who}: {why}")
        else:
            return None
    if reasons:
        return "; ".join(reasons)
    return "it is signed by neither the issuing CA nor a responder that CA authorised"


def _matches(single: ocsp.OCSPSingleResponse, cert: Certificate, issuer: Certificate) -> bool:
    if single.serial_number != cert.serial:
        return False
    try:
        # The CertID hashes under the response's own hash algorithm, computed by the library.
        expect = ocsp.OCSPRequestBuilder().add_certificate(cert.x509, issuer.x509, single.hash_algorithm).build()
    except Exception:  # noqa: BLE001 - a hash algorithm the library cannot use
        return False
    return hmac.compare_digest(expect.issuer_key_hash, single.issuer_key_hash) and hmac.compare_digest(
        expect.issuer_name_hash, single.issuer_name_hash
    )


def check_response(
    data: bytes,
    cert: Certificate,
    issuer: Certificate,
    *,
    at: datetime,
    skew: timedelta = timedelta(0),
    max_age: timedelta | None = None,
    nonce: bytes | None = None,
    allowed_hashes: frozenset[str] = DEFAULT_HASHES,
) -> OCSPStatus:
    """What the DER OCSP response ``data`` says about ``cert`` (issued by ``issuer``) at ``at``.

    Never raises: anything wrong with the response is ``unusable`` with a detail.
    """
    try:
        resp = ocsp.load_der_ocsp_response(bytes(data))
        status = resp.response_status
    except Exception as exc:  # noqa: BLE001 - any parse failure
        return OCSPStatus("unusable", f"the OCSP response could not be parsed: {exc}")
    if status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return OCSPStatus("unusable", f"the OCSP responder answered {status.name.lower()}")
    try:
        return _check(resp, cert, issuer, at=at, skew=skew, max_age=max_age, nonce=nonce, allowed_hashes=allowed_hashes)
    except Exception as exc:  # noqa: BLE001 - undecodable parts of a hostile response
        return OCSPStatus("unusable", f"the OCSP response could not be decoded: {type(exc).__name__}: {exc}")


def _check(
    resp: ocsp.OCSPResponse,
    cert: Certificate,
    issuer: Certificate,
    *,
    at: datetime,
    skew: timedelta,
    max_age: timedelta | None,
    nonce: bytes | None,
    allowed_hashes: frozenset[str],
) -> OCSPStatus:
    exts = list(resp.extensions)
    unknown = [e.oid.dotted_string for e in exts if e.critical and e.oid.dotted_string != _NONCE]
    if unknown:
        return OCSPStatus("unusable", f"the OCSP response has unsupported critical extension(s) {', '.join(unknown)}")
    if nonce is not None:
        # RFC 8954 §2.1: a response to a request with a nonce must carry the same nonce.
        got = next((e.value.nonce for e in exts if isinstance(e.value, x509.OCSPNonce)), None)
        if got is None or not hmac.compare_digest(got, nonce):
            return OCSPStatus("unusable", "the OCSP response does not echo the request's nonce (replayed?)")
    single = next((s for s in resp.responses if _matches(s, cert, issuer)), None)
    if single is None:
        return OCSPStatus("unrelated", f"the OCSP response says nothing about {cert.describe()!r}")
    why = _authorised_signer(resp, issuer, at=at, skew=skew, allowed_hashes=allowed_hashes)
    if why is not None:
        return OCSPStatus("unusable", f"the OCSP response is not trustworthy: {why}")
    this_update = single.this_update_utc
    next_update = single.next_update_utc
    # RFC 6960 §4.2.2.1: thisUpdate sufficiently recent, nextUpdate not passed.
    if this_update > at + skew:
        return OCSPStatus("unusable", f"the OCSP response is not valid until {this_update.isoformat()}")
    if next_update is not None and next_update < at - skew:
        return OCSPStatus("unusable", f"the OCSP response is stale: its nextUpdate was {next_update.isoformat()}")
    if next_update is None and max_age is not None and this_update + max_age < at - skew:
        return OCSPStatus("unusable", f"the OCSP response has no nextUpdate and is older than {max_age}")
    cs = single.certificate_status
    if cs is ocsp.OCSPCertStatus.GOOD:
        return OCSPStatus("good", "", this_update, next_update)
    if cs is ocsp.OCSPCertStatus.REVOKED:
        when = single.revocation_time_utc
        reason = single.revocation_reason.value if single.revocation_reason is not None else "unspecified"
        stamp = when.isoformat() if when is not None else "an unstated time"
        return OCSPStatus(
            "revoked",
            f"{cert.describe()!r} (serial {cert.serial:x}) was revoked on {stamp} "
            f"according to the OCSP responder for {issuer.describe()!r}, reason {reason}",
            this_update,
            next_update,
        )
    return OCSPStatus("unknown", f"the OCSP responder does not know {cert.describe()!r}", this_update, next_update)
