"""The proxy-header parsers as they were before the XFCC speed-up (commit 4338bc8): the oracle
of tests/test_xfcc_differential.py.

A character-at-a-time XFCC splitter, ``urllib.parse.unquote`` for every value and
cryptography's PEM loader for the base64. Kept verbatim but for two deliberate changes,
each marked ``DEVIATION`` and documented in docs/proxy.md:

* PEM whitespace is RFC 7468 §3's W (SP, HTAB, CR, LF, VT, FF), not str's ``\\s``
  (which also takes \\x1c-\\x1f);
* an empty line inside a PEM body is whitespace like any other (RFC 7468 §3
  ``laxbase64text``); cryptography's loader read it as the end of RFC 1421 headers and
  refused the block — unless it came right after the BEGIN line.

The new parser must agree with this one: the same elements for every accepted value and
the same reason for every refused one.
"""

from __future__ import annotations

import hmac
import re
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mtlscore.proxy.header_codec import HeaderLimits, _der_list, _malformed, _one
from mtlscore.proxy.xfcc import XfccElement
from mtlscore.reasons import CertificateRejected, Reason
from mtlscore.x509.cert import Certificate

LIMITS = HeaderLimits()
_VALUE_CHARS = re.compile(r"[^\t\x20-\x7e]")
_FOLDED_CHARS = re.compile(r"[^\t\r\n\x20-\x7e]")


def text(value: str | bytes, what: str, limits: HeaderLimits = LIMITS, *, folded: bool = False) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        if len(value) > limits.max_header_bytes:
            raise CertificateRejected(Reason.PKI_TOO_LARGE, f"{what} header is too large")
        value = bytes(value).decode("latin-1")
    if not isinstance(value, str):
        raise _malformed(f"{what} header value is not text")
    if len(value) > limits.max_header_bytes:
        raise CertificateRejected(Reason.PKI_TOO_LARGE, f"{what} header is too large")
    bad = (_FOLDED_CHARS if folded else _VALUE_CHARS).search(value)
    if bad is not None:
        raise _malformed(f"{what} header contains the character {bad.group()!r}")
    return value.strip(" \t\r\n")


# DEVIATION: [ \t\n\r\v\f] where the original had \s.
_W = r"[ \t\n\r\v\f]"
_PEM_FRAMING = re.compile(
    rf"{_W}*+(?:-----BEGIN CERTIFICATE-----[A-Za-z0-9+/= \t\n\r\v\f]*+-----END CERTIFICATE-----{_W}*+)*+"
)
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
# DEVIATION: every whitespace run inside a body becomes one newline before the loader sees
# it, so an empty line is no longer the end of RFC 1421 headers. (The loader took every
# other arrangement of whitespace in a body already.)
_BODY = re.compile(r"(-----BEGIN CERTIFICATE-----)([^-]*)(-----END CERTIFICATE-----)")
_BODY_WS = re.compile(r"[ \t\n\r\v\f]+")


def _one_newline(m: re.Match[str]) -> str:
    return m[1] + "\n" + "\n".join(_BODY_WS.split(m[2].strip(" \t\n\r\v\f"))) + "\n" + m[3]


def pem_ders(text: str, what: str, limits: HeaderLimits = LIMITS) -> list[bytes]:
    framed = _PEM_FRAMING.match(text)
    end = framed.end() if framed is not None else 0
    if end != len(text):
        raise _malformed(f"{what}: expected a PEM CERTIFICATE block at offset {end}")
    count = text.count(_PEM_BEGIN)
    if count == 0:
        raise _malformed(f"{what}: no certificate in the header")
    if count > limits.max_certs:
        raise CertificateRejected(Reason.PKI_TOO_LARGE, f"{what} carries more than {limits.max_certs} certificates")
    text = _BODY.sub(_one_newline, text)  # DEVIATION, above
    try:
        loaded = x509.load_pem_x509_certificates(text.encode("ascii"))
    except Exception as exc:  # noqa: BLE001
        raise _malformed(f"{what}: PEM block is not a certificate ({exc})") from None
    return [c.public_bytes(Encoding.DER) for c in loaded]


_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def percent_decode(text: str, what: str) -> str:
    if " " in text or "\t" in text:
        raise _malformed(f"{what}: whitespace in a URL-encoded value")
    if (m := _STRAY_PERCENT.search(text)) is not None:
        raise _malformed(f"{what}: '%' not followed by two hex digits at offset {m.start()}")
    try:
        return unquote(text, encoding="ascii", errors="strict")
    except UnicodeDecodeError:
        raise _malformed(f"{what}: decoded value is not ASCII PEM") from None


def urlpem_certs(value: str | bytes, what: str, limits: HeaderLimits = LIMITS) -> list[Certificate]:
    t = text(value, what, limits)
    return _der_list(pem_ders(percent_decode(t, what), what, limits), what, limits)


def parse_nginx_escaped_cert(value: str | bytes) -> Certificate:
    return _one(urlpem_certs(value, "nginx escaped certificate"), "nginx escaped certificate")


def parse_nginx_cert(value: str | bytes) -> Certificate:
    t = text(value, "nginx certificate", LIMITS, folded=True)
    return _one(_der_list(pem_ders(t, "nginx certificate"), "nginx certificate", LIMITS), "nginx certificate")


def parse_alb_clientcert(value: str | bytes) -> list[Certificate]:
    return urlpem_certs(value, "X-Amzn-Mtls-Clientcert")


# --- XFCC, as it was -------------------------------------------------------------------

_XFCC_SINGLE = frozenset({"hash", "cert", "chain", "subject"})
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_TOKEN = re.compile(r"[A-Za-z0-9_\-.]+")
_QUOTED = re.compile(r'(?:[^"\\]++|\\["\\]|\\(?!["\\]))*+"')
_ESCAPE = re.compile(r'\\(["\\])')
_BARE = re.compile(r'[^;,"=]*')
_OWS = re.compile(r"[ \t]*")


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    m = pattern.match(text, pos)
    return pos if m is None else m.end()


def xfcc_split(text: str, limits: HeaderLimits = LIMITS) -> list[list[tuple[str, str]]]:
    elements: list[list[tuple[str, str]]] = []
    pairs: list[tuple[str, str]] = []
    total_pairs = 0
    i, n = 0, len(text)
    while True:
        m = _TOKEN.match(text, i)
        if m is None:
            raise _malformed(f"x-forwarded-client-cert: expected a key at offset {i}")
        key = m.group().lower()
        i = m.end()
        if i >= n or text[i] != "=":
            raise _malformed(f"x-forwarded-client-cert: expected '=' after key {key!r}")
        i += 1
        if i < n and text[i] == '"':
            m = _QUOTED.match(text, i + 1)
            if m is None:
                raise _malformed("x-forwarded-client-cert: unterminated quoted value")
            body = text[i + 1 : m.end() - 1]
            value = _ESCAPE.sub(r"\1", body) if "\\" in body else body
            i = m.end()
        else:
            end = _skip(_BARE, text, i)
            if end < n and text[end] in '"=':
                raise _malformed(f"x-forwarded-client-cert: unquoted {text[end]!r} in the value of {key!r}")
            value = text[i:end].strip(" \t")
            i = end
        pairs.append((key, value))
        total_pairs += 1
        if total_pairs > limits.max_xfcc_pairs:
            raise CertificateRejected(Reason.PKI_TOO_LARGE, "x-forwarded-client-cert has too many pairs")
        i = _skip(_OWS, text, i)
        if i >= n:
            elements.append(pairs)
            break
        sep = text[i]
        if sep not in ";,":
            raise _malformed(f"x-forwarded-client-cert: unexpected {sep!r} after the value of {key!r}")
        i = _skip(_OWS, text, i + 1)
        if sep == ",":
            elements.append(pairs)
            pairs = []
            if len(elements) >= limits.max_xfcc_elements:
                raise CertificateRejected(Reason.PKI_TOO_LARGE, "x-forwarded-client-cert has too many elements")
    return elements


def _xfcc_element(pairs: list[tuple[str, str]], index: int, limits: HeaderLimits) -> XfccElement:
    what = f"x-forwarded-client-cert element {index}"
    seen: set[str] = set()
    by: list[str] = []
    uri: list[str] = []
    dns: list[str] = []
    cert: Certificate | None = None
    chain: tuple[Certificate, ...] = ()
    digest: str | None = None
    subject: str | None = None
    for key, value in pairs:
        if key in _XFCC_SINGLE:
            if key in seen:
                raise _malformed(f"{what}: several {key.capitalize()}= pairs")
            seen.add(key)
        if key == "cert":
            if value:
                cert = _one(urlpem_certs(value, f"{what} Cert", limits), f"{what} Cert")
        elif key == "chain":
            if value:
                chain = tuple(urlpem_certs(value, f"{what} Chain", limits))
        elif key == "hash":
            if not _HEX64.fullmatch(value):
                raise _malformed(f"{what}: Hash is not a hex SHA-256 digest")
            digest = value.lower()
        elif key == "subject":
            subject = value
        elif key == "by":
            by.append(value)
        elif key == "uri":
            uri.append(value)
        elif key == "dns":
            dns.append(value)
    leaf = chain[0] if chain else cert
    if cert is not None and chain and chain[0] != cert:
        raise _malformed(f"{what}: Chain does not start with Cert")
    if digest is not None and leaf is not None and not hmac.compare_digest(digest, leaf.fingerprint_hex):
        raise _malformed(f"{what}: Hash does not match the certificate")
    return XfccElement(cert=cert, chain=chain, hash=digest, subject=subject, by=tuple(by), uri=tuple(uri), dns=tuple(dns))


def parse_xfcc(value: str | bytes, limits: HeaderLimits = LIMITS) -> tuple[XfccElement, ...]:
    t = text(value, "x-forwarded-client-cert", limits)
    if not t:
        raise _malformed("x-forwarded-client-cert is empty")
    return tuple(_xfcc_element(p, i, limits) for i, p in enumerate(xfcc_split(t, limits)))
