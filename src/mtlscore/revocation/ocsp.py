"""OCSP (RFC 6960): build requests and decide what a response says about a certificate.

Parsing and encoding are ``cryptography``'s; the decisions are ours: the
response must be *successful*, carry a single response for exactly this
certificate (serial and issuer hashes), be signed by an *authorised* responder
(§4.2.2.2: the issuing CA itself, or a certificate the CA issued with the
id-kp-OCSPSigning EKU), be current (§4.2.2.1 thisUpdate/nextUpdate), and echo
our nonce when one was sent (RFC 8954). "unknown" is no answer; "revoked" is.

A delegated responder without id-pkix-ocsp-nocheck (§4.2.2.2.1) is handed back
on the status (``OCSPStatus.responder``): its own revocation is the caller's to
check before a "good" is believed. Signatures: RSA PKCS#1 v1.5, RSASSA-PSS
(RFC 4055 parameters, decoded with ``cryptography``'s ASN.1 decoder, since its
OCSP API does not expose them), ECDSA, EdDSA.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import OCSPExtensionOID

from ..reasons import CertificateRejected
from ..verify.policy import OCSP_SIGNING
from ..verify.signature import verify_link
from ..x509.cert import Certificate, parse_certificate
from ..x509.names import name_key

__all__ = ["OCSP_NOCHECK", "OCSPStatus", "build_request", "check_response", "get_url"]

DEFAULT_HASHES = frozenset({"sha256", "sha384", "sha512"})
_NONCE = OCSPExtensionOID.NONCE.dotted_string
# RFC 6960 §4.2.2.2.1: a responder certificate the CA says need not be checked for revocation.
OCSP_NOCHECK = "1.3.6.1.5.5.7.48.1.5"
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
    "1.2.840.113549.1.1.10": "rsa-pss",
}
_PSS = "1.2.840.113549.1.1.10"
_MGF1 = "1.2.840.113549.1.1.8"
_HASH_OIDS: dict[str, hashes.HashAlgorithm] = {
    "1.3.14.3.2.26": hashes.SHA1(),  # noqa: S303 - named so that policy can refuse it
    "2.16.840.1.101.3.4.2.4": hashes.SHA224(),
    "2.16.840.1.101.3.4.2.1": hashes.SHA256(),
    "2.16.840.1.101.3.4.2.2": hashes.SHA384(),
    "2.16.840.1.101.3.4.2.3": hashes.SHA512(),
}


# RFC 4055 §3.1 RSASSA-PSS-params, and just enough of RFC 6960 §4.2.1 to reach the
# response's signatureAlgorithm (cryptography's OCSP API gives no PSS parameters).
@asn1.sequence
class _HashId:
    algorithm: x509.ObjectIdentifier
    parameters: asn1.Null | None


@asn1.sequence
class _MaskGenId:
    algorithm: x509.ObjectIdentifier
    parameters: _HashId


@asn1.sequence
class _PSSParams:
    hash_algorithm: Annotated[_HashId | None, asn1.Explicit(0)]
    mask_gen_algorithm: Annotated[_MaskGenId | None, asn1.Explicit(1)]
    salt_length: Annotated[int | None, asn1.Explicit(2)]
    trailer_field: Annotated[int | None, asn1.Explicit(3)]


@asn1.sequence
class _PSSAlgorithm:
    algorithm: x509.ObjectIdentifier
    parameters: _PSSParams


@asn1.sequence
class _BasicResponse:
    tbs_response_data: asn1.TLV
    signature_algorithm: asn1.TLV
    signature: asn1.BitString
    certs: Annotated[list[asn1.TLV] | None, asn1.Explicit(0)]


@asn1.sequence
class _ResponseBytes:
    response_type: x509.ObjectIdentifier
    response: bytes


@asn1.sequence
class _Response:
    response_status: asn1.TLV
    response_bytes: Annotated[_ResponseBytes | None, asn1.Explicit(0)]


def _pss_parameters(data: bytes) -> tuple[hashes.HashAlgorithm, padding.PSS] | str:
    """The hash and padding of a response signed with RSASSA-PSS (RFC 4055 §3.1); else why not."""
    try:
        outer = asn1.decode_der(_Response, data)
        assert outer.response_bytes is not None
        basic = asn1.decode_der(_BasicResponse, outer.response_bytes.response)
        params = basic.signature_algorithm.parse(_PSSAlgorithm).parameters
    except Exception:  # noqa: BLE001 - hostile encodings
        return "its RSASSA-PSS parameters could not be decoded"
    # Absent fields take RFC 4055's defaults: SHA-1, MGF1 with SHA-1, salt 20, trailer 1.
    hash_oid = params.hash_algorithm.algorithm.dotted_string if params.hash_algorithm else "1.3.14.3.2.26"
    mgf = params.mask_gen_algorithm
    mgf_hash = mgf.parameters.algorithm.dotted_string if mgf else "1.3.14.3.2.26"
    salt = params.salt_length if params.salt_length is not None else 20
    hash_alg = _HASH_OIDS.get(hash_oid)
    if hash_alg is None:
        return f"its RSASSA-PSS hash {hash_oid} is not supported"
    if (mgf is not None and mgf.algorithm.dotted_string != _MGF1) or mgf_hash != hash_oid:
        # RFC 4055 §3.1: the MGF1 hash SHOULD be the message hash; mixing them buys nothing.
        return "its RSASSA-PSS mask generation is not MGF1 with the message hash"
    if params.trailer_field not in (None, 1) or not 0 <= salt <= 1024:
        return "its RSASSA-PSS parameters are out of range (RFC 4055 §3.1)"
    return hash_alg, padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=salt)


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
    # The delegated responder that signed it, when its certificate lacks id-pkix-ocsp-nocheck
    # (RFC 6960 §4.2.2.2.1): its own revocation must be checked before a "good" is believed.
    responder: Certificate | None = None


def build_request(cert: Certificate, issuer: Certificate, *, nonce: bytes | None = None) -> bytes:
    """A DER OCSP request for ``cert`` issued by ``issuer`` (SHA-1 CertID, RFC 6960 §4.1.1).

    SHA-1 here only names the certificate (RFC 5019 §2.1.1 makes it the
    interoperable choice); it signs nothing. Raises ValueError on unusable input.
    """
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert.x509, issuer.x509, hashes.SHA1())  # noqa: S303
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


# RFC 6960 A.1 / RFC 5019 §5: GET only while the encoded request stays under 255 bytes.
_MAX_GET_REQUEST = 254


def get_url(url: str, request_der: bytes) -> str | None:
    """The RFC 6960 A.1 GET URL for ``request_der`` at responder ``url``; None when it must be POSTed.

    ``{url}/{url-encoding of base64 of the DER request}``, when the encoded request
    is under 255 bytes and ``url`` has no query or fragment to append to.
    """
    if "?" in url or "#" in url:
        return None
    # Base64's alphabet needs URL-encoding only for "+", "/" and "=" (RFC 3986 §2.2).
    encoded = (
        base64.b64encode(request_der).decode("ascii").replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    )
    if len(encoded) > _MAX_GET_REQUEST:
        return None
    return url + ("" if url.endswith("/") else "/") + encoded


def _key_hash(key: Any) -> bytes:
    # RFC 6960 §4.2.1: KeyHash is SHA-1 of the subjectPublicKey BIT STRING value,
    # which is exactly RFC 5280 §4.2.1.2 method (1) for a key identifier.
    return x509.SubjectKeyIdentifier.from_public_key(key).digest


def _verify(key: Any, resp: ocsp.OCSPResponse, data: bytes, allowed_hashes: frozenset[str]) -> str | None:
    """None when ``key`` verifies the signature of ``resp`` (whose DER is ``data``); else why not."""
    oid = resp.signature_algorithm_oid.dotted_string
    kind = _SIG_KINDS.get(oid)
    if kind is None:
        return f"its signature algorithm {oid} is not supported"
    pss: padding.PSS | None = None
    if kind == "rsa-pss":
        found = _pss_parameters(data)
        if isinstance(found, str):
            return found
        hash_alg: hashes.HashAlgorithm | None = found[0]
        pss = found[1]
    else:
        hash_alg = resp.signature_hash_algorithm if kind in ("rsa", "ec") else None
    if hash_alg is not None and hash_alg.name not in allowed_hashes:
        return f"it is signed with {hash_alg.name.upper()}, which policy does not allow"
    try:
        if kind == "rsa-pss" and isinstance(key, rsa.RSAPublicKey) and hash_alg is not None and pss is not None:
            key.verify(resp.signature, resp.tbs_response_bytes, pss, hash_alg)
        elif kind == "rsa" and isinstance(key, rsa.RSAPublicKey) and hash_alg is not None:
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
    data: bytes,
    issuer: Certificate,
    *,
    at: datetime,
    skew: timedelta,
    allowed_hashes: frozenset[str],
) -> str | Certificate | None:
    """Who signed the response, if authorised: None for the CA itself or a delegated
    responder with id-pkix-ocsp-nocheck, the responder's certificate for one without
    (its revocation is still to be checked); a string saying why not otherwise."""
    # RFC 6960 §4.2.2.2 (1): the CA that issued the certificate signs itself.
    if _responder_is(resp, issuer):
        why = _verify(issuer.public_key, resp, data, allowed_hashes)
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
        elif (why := _verify(cand.public_key, resp, data, allowed_hashes)) is not None:
            reasons.append(f"{who}: {why}")
        else:
            # §4.2.2.2.1: with id-pkix-ocsp-nocheck the CA vouches for the responder for its
            # validity period; without it, the responder's own status must be checked.
            return None if OCSP_NOCHECK in cand.extension_oids else cand
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
        return _check(resp, bytes(data), cert, issuer, at=at, skew=skew, max_age=max_age, nonce=nonce,
                      allowed_hashes=allowed_hashes)
    except Exception as exc:  # noqa: BLE001 - undecodable parts of a hostile response
        return OCSPStatus("unusable", f"the OCSP response could not be decoded: {type(exc).__name__}: {exc}")


def _check(
    resp: ocsp.OCSPResponse,
    data: bytes,
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
    signer = _authorised_signer(resp, data, issuer, at=at, skew=skew, allowed_hashes=allowed_hashes)
    if isinstance(signer, str):
        return OCSPStatus("unusable", f"the OCSP response is not trustworthy: {signer}")
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
        return OCSPStatus("good", "", this_update, next_update, signer)
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
            signer,
        )
    return OCSPStatus("unknown", f"the OCSP responder does not know {cert.describe()!r}", this_update, next_update)
