"""Byte-level pieces shared by the proxy-header parsers (``proxy/headers.py``, ``proxy/xfcc.py``).

Size limits, the RFC 9110 field-value check, PEM blocks (decoded by ``cryptography``) and
RFC 3986 percent-encoding (``urllib.parse``).
Every helper raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``),
never another exception.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..reasons import CertificateRejected, Reason
from ..x509.cert import DEFAULT_MAX_CERT_BYTES, DEFAULT_MAX_CHAIN_BYTES, Certificate, parse_certificate

__all__ = ["DEFAULT_LIMITS", "HeaderLimits"]


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Size limits applied before and while parsing a header value."""

    # A URL-encoded PEM chain of 64 KiB DER is ~95 KiB; leave room, refuse more.
    max_header_bytes: int = 128 * 1024
    max_cert_bytes: int = DEFAULT_MAX_CERT_BYTES
    max_chain_bytes: int = DEFAULT_MAX_CHAIN_BYTES
    max_certs: int = 32
    max_xfcc_elements: int = 16
    max_xfcc_pairs: int = 64


DEFAULT_LIMITS = HeaderLimits()


def _malformed(detail: str) -> CertificateRejected:
    return CertificateRejected(Reason.MALFORMED, detail)


def _text(value: str | bytes, what: str, limits: HeaderLimits, *, folded: bool = False) -> str:
    """The header value as text, length-checked, with OWS trimmed and no control characters.

    RFC 9110 §5.5: field values exclude leading/trailing whitespace, and CR, LF and NUL
    are never part of one; a value carrying them is an injection attempt. ``folded``
    admits the line folds of nginx's legacy ``$ssl_client_cert`` (LF + HTAB).
    """
    if isinstance(value, bytes | bytearray | memoryview):
        if len(value) > limits.max_header_bytes:
            raise CertificateRejected(
                Reason.PKI_TOO_LARGE,
                f"{what} header is {len(value)} bytes; the limit is {limits.max_header_bytes}",
            )
        value = bytes(value).decode("latin-1")
    if not isinstance(value, str):
        raise _malformed(f"{what} header value is not text")
    if len(value) > limits.max_header_bytes:
        raise CertificateRejected(
            Reason.PKI_TOO_LARGE,
            f"{what} header is {len(value)} bytes; the limit is {limits.max_header_bytes}",
        )
    allowed = _FOLDED_CHARS if folded else _VALUE_CHARS
    bad = allowed.search(value)
    if bad is not None:
        raise _malformed(
            f"{what} header contains the character {bad.group()!r} at offset {bad.start()} "
            "(control characters and non-ASCII are refused: header injection)"
        )
    return value.strip(" \t\r\n")


# Visible ASCII, SP and HTAB only (RFC 9110 §5.5 field-vchar minus obs-text).
_VALUE_CHARS = re.compile(r"[^\t\x20-\x7e]")
_FOLDED_CHARS = re.compile(r"[^\t\r\n\x20-\x7e]")


def _der_list(ders: Sequence[bytes], what: str, limits: HeaderLimits) -> list[Certificate]:
    if len(ders) > limits.max_certs:
        raise CertificateRejected(
            Reason.PKI_TOO_LARGE,
            f"{what} carries {len(ders)} certificates; the limit is {limits.max_certs}",
        )
    total = sum(len(d) for d in ders)
    if total > limits.max_chain_bytes:
        raise CertificateRejected(
            Reason.PKI_TOO_LARGE,
            f"{what} carries {total} bytes of certificates; the limit is {limits.max_chain_bytes}",
        )
    return [parse_certificate(d, max_bytes=limits.max_cert_bytes) for d in ders]


# --- PEM and URL encoding (nginx, Envoy, ALB) ----------------------------------------

# What cryptography's PEM loader does not check, and a header must: nothing but
# CERTIFICATE blocks and whitespace (its loader skips other text and other block
# types, and takes "X509 CERTIFICATE" and RFC 1421 headers). This is framing only;
# cryptography decodes the base64 and the DER. Possessive: linear on any input.
_PEM_FRAMING = re.compile(
    r"\s*+(?:-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*+-----END CERTIFICATE-----\s*+)*+"
)
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


def _pem_ders(text: str, what: str, limits: HeaderLimits) -> list[bytes]:
    """DER of each CERTIFICATE block; nothing but whitespace may sit between blocks."""
    framed = _PEM_FRAMING.match(text)
    end = framed.end() if framed is not None else 0
    if end != len(text):
        raise _malformed(f"{what}: expected a PEM CERTIFICATE block at offset {end}")
    count = text.count(_PEM_BEGIN)
    if count == 0:
        raise _malformed(f"{what}: no certificate in the header")
    if count > limits.max_certs:
        raise CertificateRejected(
            Reason.PKI_TOO_LARGE, f"{what} carries more than {limits.max_certs} certificates"
        )
    try:
        loaded = x509.load_pem_x509_certificates(text.encode("ascii"))
    # Bad base64 or DER is a ValueError, an unknown version x509.InvalidVersion (not a
    # ValueError); like _cert._build, any failure to load hostile bytes is a decision.
    except Exception as exc:  # noqa: BLE001 - hostile input must become a decision, not a crash
        raise _malformed(f"{what}: PEM block is not a certificate ({exc})") from None
    return [c.public_bytes(Encoding.DER) for c in loaded]


def _pem(der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


# What urllib.parse.unquote lets through and a header must not carry: a '%' that
# starts no "%XX" triplet (unquote keeps it literally).
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# urllib.parse.quote never encodes the RFC 3986 §2.3 unreserved characters; with
# safe="" it keeps exactly those, which is what nginx's NGX_ESCAPE_URI_COMPONENT
# leaves alone (Envoy's URL encoding of Cert/Chain keeps the same set). AWS ALB:
# "URL-encoded PEM format, with +=/ as safe characters".
_NGINX_SAFE = ""
_ALB_SAFE = "+=/"


def _percent_decode(text: str, what: str) -> str:
    """RFC 3986 §2.1 percent-decoding; '+' stays '+' (this is not form encoding)."""
    if " " in text or "\t" in text:
        raise _malformed(f"{what}: whitespace in a URL-encoded value")
    if (m := _STRAY_PERCENT.search(text)) is not None:
        raise _malformed(f"{what}: '%' not followed by two hex digits at offset {m.start()}")
    try:
        return unquote(text, encoding="ascii", errors="strict")
    except UnicodeDecodeError:
        raise _malformed(f"{what}: decoded value is not ASCII PEM") from None


def _urlpem_certs(value: str | bytes, what: str, limits: HeaderLimits) -> list[Certificate]:
    text = _text(value, what, limits)
    return _der_list(_pem_ders(_percent_decode(text, what), what, limits), what, limits)


def _one(certs: list[Certificate], what: str) -> Certificate:
    if len(certs) != 1:
        raise _malformed(f"{what}: expected exactly one certificate, found {len(certs)}")
    return certs[0]
