"""AIA caIssuers answers (RFC 5280 §4.2.2.1): the bytes at a caIssuers URL, as certificates.

The URL serves a single DER certificate or a "certs-only" CMS/PKCS#7 bundle
(DER or PEM); PEM certificates are accepted too. Fetched certificates are only
candidates: path building and validation decide whether they are used.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from ..reasons import CertificateRejected
from ..verify.policy import Policy
from ..x509.cert import Certificate, load_certificates, parse_certificate

__all__ = ["MAX_ISSUERS_PER_ANSWER", "http_url", "parse_issuers"]

# One caIssuers answer names the issuer (or a few cross-certificates), not a trust store.
MAX_ISSUERS_PER_ANSWER = 8


def http_url(url: str) -> bool:
    """Whether ``url`` is one a runtime can fetch (http or https)."""
    return url[:7].lower() == "http://" or url[:8].lower() == "https://"


def parse_issuers(data: bytes, policy: Policy) -> list[Certificate]:
    """The certificates in a caIssuers answer. Raises ValueError saying why there are none."""
    raw = bytes(data)
    if len(raw) > policy.max_fetch_bytes:
        raise ValueError(f"the answer is {len(raw)} bytes; the limit is {policy.max_fetch_bytes}")
    stripped = raw.lstrip()
    try:
        if stripped.startswith(b"-----BEGIN PKCS7") or stripped.startswith(b"-----BEGIN CMS"):
            found = pkcs7.load_pem_pkcs7_certificates(raw)
            ders = [c.public_bytes(Encoding.DER) for c in found]
        elif stripped.startswith(b"-----BEGIN"):
            return load_certificates(
                raw,
                max_cert_bytes=policy.max_cert_bytes,
                max_chain_bytes=policy.max_chain_bytes,
                max_count=MAX_ISSUERS_PER_ANSWER,
            )
        else:
            try:
                return [parse_certificate(raw, max_bytes=policy.max_cert_bytes)]
            except CertificateRejected:
                found = pkcs7.load_der_pkcs7_certificates(raw)
                ders = [c.public_bytes(Encoding.DER) for c in found]
    except CertificateRejected as exc:
        raise ValueError(exc.detail) from None
    except Exception as exc:  # noqa: BLE001 - neither a certificate nor PKCS#7
        raise ValueError(f"it is neither a certificate nor a PKCS#7 bundle: {exc}") from None
    if not ders:
        raise ValueError("the PKCS#7 bundle holds no certificate")
    if len(ders) > MAX_ISSUERS_PER_ANSWER:
        raise ValueError(f"the bundle holds {len(ders)} certificates; the limit is {MAX_ISSUERS_PER_ANSWER}")
    out: list[Certificate] = []
    for der in ders:
        try:
            out.append(parse_certificate(der, max_bytes=policy.max_cert_bytes))
        except CertificateRejected as exc:
            raise ValueError(exc.detail) from None
    return out
