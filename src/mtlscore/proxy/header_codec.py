"""Byte-level pieces shared by the proxy-header parsers (``proxy/headers.py``, ``proxy/xfcc.py``).

Size limits, the RFC 9110 field-value check, PEM blocks (framed by a regular expression,
base64 decoded by ``binascii``, the DER parsed by ``x509.cert``) and RFC 3986
percent-encoding (``urllib.parse``).
Every helper raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``),
never another exception.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

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
    allowed = _FOLDED_BYTES if folded else _VALUE_BYTES
    if isinstance(value, bytes | bytearray | memoryview):
        if len(value) > limits.max_header_bytes:
            raise CertificateRejected(
                Reason.PKI_TOO_LARGE,
                f"{what} header is {len(value)} bytes; the limit is {limits.max_header_bytes}",
            )
        raw = bytes(value)
        text = raw.decode("latin-1")
    elif isinstance(value, str):
        if len(value) > limits.max_header_bytes:
            raise CertificateRejected(
                Reason.PKI_TOO_LARGE,
                f"{what} header is {len(value)} bytes; the limit is {limits.max_header_bytes}",
            )
        text = value
        # isascii() is a flag lookup; encoding an ASCII str is a copy.
        raw = value.encode("ascii") if value.isascii() else b"\x80"
    else:
        raise _malformed(f"{what} header value is not text")
    # Deleting every allowed byte leaves the refused ones: one C loop over the value,
    # ~8× cheaper than the regex below, which runs only to name the first fault.
    if raw.translate(None, allowed):
        bad = (_FOLDED_CHARS if folded else _VALUE_CHARS).search(text)
        if bad is not None:
            raise _malformed(
                f"{what} header contains the character {bad.group()!r} at offset {bad.start()} "
                "(control characters and non-ASCII are refused: header injection)"
            )
    return text.strip(" \t\r\n")


# Visible ASCII, SP and HTAB only (RFC 9110 §5.5 field-vchar minus obs-text).
_VALUE_CHARS = re.compile(r"[^\t\x20-\x7e]")
_FOLDED_CHARS = re.compile(r"[^\t\r\n\x20-\x7e]")
_VALUE_BYTES = bytes([0x09, *range(0x20, 0x7F)])
_FOLDED_BYTES = bytes([0x09, 0x0A, 0x0D, *range(0x20, 0x7F)])


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

# What a PEM loader such as cryptography's would let through and a header must not
# carry: anything but CERTIFICATE blocks and whitespace (that loader skips other text
# and other block types, and takes "X509 CERTIFICATE" and RFC 1421 headers).
# Possessive: linear on any input.
_PEM_FRAMING = re.compile(
    r"[ \t\n\r\v\f]*+(?:-----BEGIN CERTIFICATE-----[A-Za-z0-9+/= \t\n\r\v\f]*+"
    r"-----END CERTIFICATE-----[ \t\n\r\v\f]*+)*+"
)
# One block at a time, cheaper: whitespace, the armour, and the body as group 1 (any run
# without '-', which a regex scans ~3× faster than the base64 class above); the body
# is then held to the grammar by _base64_der (whitespace deleted, strict base64), and
# a fault falls back to _PEM_FRAMING to say where. What may follow the last block.
# Whitespace is RFC 7468 §3's W (SP, HTAB, CR, LF, VT, FF), not the wider ``\s`` of
# str patterns (which takes \x1c-\x1f).
_PEM_BLOCK = re.compile(
    r"[ \t\n\r\v\f]*+-----BEGIN CERTIFICATE-----([^-]*+)-----END CERTIFICATE-----"
)
_PEM_TAIL = re.compile(r"[ \t\n\r\v\f]*+\Z")
_PEM_WHITESPACE = b" \t\n\r\v\f"


def _pem_ders(text: str, what: str, limits: HeaderLimits) -> list[bytes]:
    """DER of each CERTIFICATE block; nothing but whitespace may sit between blocks.

    The body of a block is RFC 7468 §3 ``laxbase64text``: base64 characters with any
    whitespace between them, padding only at the end. The base64 must be canonical
    (RFC 4648 §3.5: no '=' after a complete quantum, zero pad bits), which is what
    cryptography's PEM loader enforces; the DER is then parsed once, by
    ``parse_certificate`` (``_der_list``), as for every other header format.
    """
    bodies: list[str] = []
    pos = 0
    while (block := _PEM_BLOCK.match(text, pos)) is not None:
        bodies.append(block[1])
        pos = block.end()
    if _PEM_TAIL.match(text, pos) is None:
        raise _framing_fault(text, what)
    if not bodies:
        raise _malformed(f"{what}: no certificate in the header")
    if len(bodies) > limits.max_certs:
        raise CertificateRejected(
            Reason.PKI_TOO_LARGE, f"{what} carries more than {limits.max_certs} certificates"
        )
    return [_base64_der(body, text, what, n) for n, body in enumerate(bodies)]


def _framing_fault(text: str, what: str) -> CertificateRejected:
    # The longest framed prefix names where the first fault is.
    framed = _PEM_FRAMING.match(text)
    end = framed.end() if framed is not None else 0
    return _malformed(f"{what}: expected a PEM CERTIFICATE block at offset {end}")


def _base64_der(body: str, text: str, what: str, index: int) -> bytes:
    b64 = body.encode("ascii").translate(None, _PEM_WHITESPACE)
    try:
        # strict_mode: only the base64 alphabet, no '=' but at the end, no data after
        # padding, padding required.
        der = binascii.a2b_base64(b64, strict_mode=True)
    except binascii.Error as exc:
        if _PEM_FRAMING.fullmatch(text) is None:
            raise _framing_fault(text, what) from None
        raise _malformed(f"{what}: PEM block {index} is not base64 ({exc})") from None
    # RFC 4648 §3.5 canonical encoding: strict mode still takes "AAAA====" and non-zero
    # pad bits ("AB=="); the length and the re-encoded last quantum refuse them.
    tail = len(der) % 3
    if len(b64) != (len(der) + 2) // 3 * 4 or (
        tail and binascii.b2a_base64(der[-tail:], newline=False) != b64[-4:]
    ):
        raise _malformed(f"{what}: PEM block {index} is not canonical base64 (RFC 4648 §3.5)")
    return der


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
    # A URL-encoded PEM certificate escapes only a few characters; str.replace decodes
    # those ~6× faster than unquote. No replacement yields a '%' or a hex digit, so no
    # escape is created or broken: when no '%' is left every one was a known escape and
    # the result is unquote's. Anything else (lower-case hex, other escapes, a stray
    # '%') takes the checked path below.
    decoded = text
    for escape, char in _PEM_ESCAPES:
        decoded = decoded.replace(escape, char)
    if "%" not in decoded:
        return decoded
    if (m := _STRAY_PERCENT.search(text)) is not None:
        raise _malformed(f"{what}: '%' not followed by two hex digits at offset {m.start()}")
    try:
        return unquote(text, encoding="ascii", errors="strict")
    except UnicodeDecodeError:
        raise _malformed(f"{what}: decoded value is not ASCII PEM") from None


# What nginx's and Envoy's encoders escape in a PEM certificate: the line feeds, the
# armour lines' space, and base64's '+', '/', '=' (upper-case hex, as both emit it).
_PEM_ESCAPES = tuple((f"%{ord(c):02X}", c) for c in "\n +/=")


def _urlpem_certs(value: str | bytes, what: str, limits: HeaderLimits) -> list[Certificate]:
    return _urlpem_text_certs(_text(value, what, limits), what, limits)


def _urlpem_text_certs(text: str, what: str, limits: HeaderLimits) -> list[Certificate]:
    """``_urlpem_certs`` for text that ``_text`` has already checked."""
    return _der_list(_pem_ders(_percent_decode(text, what), what, limits), what, limits)


def _one(certs: list[Certificate], what: str) -> Certificate:
    if len(certs) != 1:
        raise _malformed(f"{what}: expected exactly one certificate, found {len(certs)}")
    return certs[0]
