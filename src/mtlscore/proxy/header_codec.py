"""Byte-level pieces shared by the proxy-header parsers (``proxy/headers.py``, ``proxy/xfcc.py``).

Size limits, the RFC 9110 field-value check, PEM blocks and RFC 3986 percent-encoding.
Every helper raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``),
never another exception.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

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

_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*)-----END CERTIFICATE-----")
_PEM_GAP = re.compile(r"\s*")


def _pem_ders(text: str, what: str, limits: HeaderLimits) -> list[bytes]:
    """DER of each CERTIFICATE block; nothing but whitespace may sit between blocks."""
    ders: list[bytes] = []
    pos = 0
    while True:
        gap = _PEM_GAP.match(text, pos)
        pos = gap.end() if gap else pos
        if pos == len(text):
            break
        m = _PEM_BLOCK.match(text, pos)
        if m is None:
            raise _malformed(f"{what}: expected a PEM CERTIFICATE block at offset {pos}")
        body = re.sub(r"\s+", "", m.group(1))
        try:
            ders.append(base64.b64decode(body, validate=True))
        except (binascii.Error, ValueError):
            raise _malformed(f"{what}: PEM block is not valid base64") from None
        if len(ders) > limits.max_certs:
            raise CertificateRejected(
                Reason.PKI_TOO_LARGE, f"{what} carries more than {limits.max_certs} certificates"
            )
        pos = m.end()
    if not ders:
        raise _malformed(f"{what}: no certificate in the header")
    return ders


def _pem(der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


# "XX" (either case) -> the character it percent-encodes.
_PCT_CHAR = {f"{a}{b}": chr(int(a + b, 16)) for a in string.hexdigits for b in string.hexdigits}
_NOT_ASCII_PEM = re.compile(r"[^\x00-\x7e]")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# RFC 3986 §2.3 unreserved characters: exactly what nginx's NGX_ESCAPE_URI_COMPONENT
# leaves alone (Envoy's URL encoding of Cert/Chain keeps the same set).
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ALB_SAFE = _UNRESERVED | frozenset("+=/")


def _percent_decode(text: str, what: str) -> str:
    """RFC 3986 §2.1 percent-decoding; '+' stays '+' (this is not form encoding)."""
    if " " in text or "\t" in text:
        raise _malformed(f"{what}: whitespace in a URL-encoded value")
    if (m := _STRAY_PERCENT.search(text)) is not None:
        raise _malformed(f"{what}: '%' not followed by two hex digits at offset {m.start()}")
    # Every '%' now starts a "%XX" triplet, so splitting on '%' puts the two hex digits
    # at the head of each later part (one dict lookup each, no per-character loop).
    first, *rest = text.split("%")
    raw = first + "".join([_PCT_CHAR[p[:2]] + p[2:] for p in rest])
    if _NOT_ASCII_PEM.search(raw) is not None:
        raise _malformed(f"{what}: decoded value is not ASCII PEM")
    return raw


def _percent_encode(text: str, safe: frozenset[str]) -> str:
    return "".join(c if c in safe else f"%{ord(c):02X}" for c in text)


def _urlpem_certs(value: str | bytes, what: str, limits: HeaderLimits) -> list[Certificate]:
    text = _text(value, what, limits)
    return _der_list(_pem_ders(_percent_decode(text, what), what, limits), what, limits)


def _one(certs: list[Certificate], what: str) -> Certificate:
    if len(certs) != 1:
        raise _malformed(f"{what}: expected exactly one certificate, found {len(certs)}")
    return certs[0]
