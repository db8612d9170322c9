"""Envoy ``x-forwarded-client-cert`` (XFCC): elements, key=value pairs, quoting.

Parse what Envoy forwards and emit it. The parser is strict and size-limited: bad
input raises :class:`CertificateRejected` with ``malformed`` (``pki_too_large`` over
the limits), never another exception. ``proxy/headers.py`` re-exports the public names.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote as percent_encode

from cryptography import x509

from ..reasons import CertificateRejected, Reason
from ..x509.cert import Certificate
from .header_codec import (
    _NGINX_SAFE,
    DEFAULT_LIMITS,
    HeaderLimits,
    _malformed,
    _one,
    _pem,
    _text,
    _urlpem_certs,
)

__all__ = ["XfccElement", "emit_xfcc", "parse_xfcc"]


@dataclass(frozen=True, slots=True)
class XfccElement:
    """One XFCC element: what a single proxy said about the certificate of its peer."""

    cert: Certificate | None = None
    chain: tuple[Certificate, ...] = ()
    hash: str | None = None  # hex SHA-256 of the DER, as Envoy sends it
    subject: str | None = None
    by: tuple[str, ...] = ()
    uri: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()

    @property
    def presented(self) -> tuple[Certificate, ...]:
        """The presented chain, leaf first: ``Chain`` when sent, else ``Cert``."""
        if self.chain:
            return self.chain
        return (self.cert,) if self.cert is not None else ()

    @classmethod
    def from_chain(cls, chain: Sequence[Certificate], *, by: Sequence[str] = ()) -> XfccElement:
        """The element a proxy would add for a peer that presented ``chain`` (leaf first)."""
        leaf = chain[0]
        uri: tuple[str, ...] = ()
        dns: tuple[str, ...] = ()
        if leaf.san:
            uri = tuple(n.value for n in leaf.san if isinstance(n, x509.UniformResourceIdentifier))
            dns = tuple(n.value for n in leaf.san if isinstance(n, x509.DNSName))
        return cls(
            cert=leaf,
            chain=tuple(chain) if len(chain) > 1 else (),
            hash=leaf.fingerprint_hex,
            subject=leaf.subject_text,
            by=tuple(by),
            uri=uri,
            dns=dns,
        )


_XFCC_KEYS = frozenset({"by", "hash", "cert", "chain", "subject", "uri", "dns"})
_XFCC_SINGLE = frozenset({"hash", "cert", "chain", "subject"})
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_TOKEN = re.compile(r"[A-Za-z0-9_\-.]+")
# The rest of a quoted value, closing quote included: \" and \\ are escapes, any other
# backslash is literal. Possessive, so an unterminated value fails in linear time.
_QUOTED = re.compile(r'(?:[^"\\]++|\\["\\]|\\(?!["\\]))*+"')
_ESCAPE = re.compile(r'\\(["\\])')
# A bare value runs to the next ';' or ','; a '"' or '=' before that is refused.
_BARE = re.compile(r'[^;,"=]*')
_OWS = re.compile(r"[ \t]*")


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where a run of ``pattern`` (which may match empty) starting at ``pos`` ends."""
    m = pattern.match(text, pos)
    return pos if m is None else m.end()


def _xfcc_split(text: str, limits: HeaderLimits) -> list[list[tuple[str, str]]]:
    """Split an XFCC value into elements of (key, value) pairs.

    Envoy: "The XFCC header value is a comma (",") separated string. Each substring is
    an XFCC element ... Each XFCC element is a semicolon (";") separated string. Each
    substring is a key-value pair, grouped together by an equals ("=") sign. ... If ",",
    ";" or "=" appear in a value, the value should be double-quoted. Double-quotes in
    the value should be replaced by backslash-double-quote (\\")."
    """
    elements: list[list[tuple[str, str]]] = []
    pairs: list[tuple[str, str]] = []
    total_pairs = 0
    i, n = 0, len(text)
    while True:
        # key
        m = _TOKEN.match(text, i)
        if m is None:
            raise _malformed(f"x-forwarded-client-cert: expected a key at offset {i}")
        key = m.group().lower()
        i = m.end()
        if i >= n or text[i] != "=":
            raise _malformed(f"x-forwarded-client-cert: expected '=' after key {key!r}")
        i += 1
        # value: quoted string, or bare run up to the next ';' / ','
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
                raise _malformed(
                    f"x-forwarded-client-cert: unquoted {text[end]!r} in the value of {key!r}"
                )
            value = text[i:end].strip(" \t")
            i = end
        pairs.append((key, value))
        total_pairs += 1
        if total_pairs > limits.max_xfcc_pairs:
            raise CertificateRejected(
                Reason.PKI_TOO_LARGE,
                f"x-forwarded-client-cert has more than {limits.max_xfcc_pairs} pairs",
            )
        i = _skip(_OWS, text, i)
        if i >= n:
            elements.append(pairs)
            break
        sep = text[i]
        if sep not in ";,":
            raise _malformed(
                f"x-forwarded-client-cert: unexpected {sep!r} after the value of {key!r}"
            )
        i = _skip(_OWS, text, i + 1)
        if sep == ",":
            elements.append(pairs)
            pairs = []
            if len(elements) >= limits.max_xfcc_elements:
                raise CertificateRejected(
                    Reason.PKI_TOO_LARGE,
                    f"x-forwarded-client-cert has more than {limits.max_xfcc_elements} elements",
                )
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
                cert = _one(_urlpem_certs(value, f"{what} Cert", limits), f"{what} Cert")
        elif key == "chain":
            if value:
                chain = tuple(_urlpem_certs(value, f"{what} Chain", limits))
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
        # Unknown keys are grammatical and ignored (Envoy may add keys).
    leaf = chain[0] if chain else cert
    if cert is not None and chain and chain[0] != cert:
        raise _malformed(f"{what}: Chain does not start with Cert")
    if (
        digest is not None
        and leaf is not None
        and not hmac.compare_digest(digest, leaf.fingerprint_hex)
    ):
        raise _malformed(f"{what}: Hash does not match the certificate")
    return XfccElement(
        cert=cert,
        chain=chain,
        hash=digest,
        subject=subject,
        by=tuple(by),
        uri=tuple(uri),
        dns=tuple(dns),
    )


def parse_xfcc(
    value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS
) -> tuple[XfccElement, ...]:
    """The elements of an Envoy ``x-forwarded-client-cert`` value, first hop first.

    Each proxy appends one element, so the last is the one the nearest proxy added.
    Raises :class:`CertificateRejected` (``malformed``: bad quoting, several ``Cert=``,
    a ``Hash`` that does not match; ``pki_too_large``).
    """
    text = _text(value, "x-forwarded-client-cert", limits)
    if not text:
        raise _malformed("x-forwarded-client-cert is empty")
    return tuple(_xfcc_element(p, i, limits) for i, p in enumerate(_xfcc_split(text, limits)))


def _xfcc_value(value: str, *, quote: bool = False) -> str:
    # Non-ASCII and control characters never reach a header: escape them as RFC 4514
    # hex pairs of their UTF-8 bytes.
    safe = "".join(
        c if 0x20 <= ord(c) <= 0x7E else "".join(f"\\{b:02X}" for b in c.encode("utf-8"))
        for c in value
    )
    if quote or any(c in safe for c in ',;="\\') or safe != safe.strip(" \t"):
        return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return safe


def emit_xfcc(elements: Iterable[XfccElement]) -> str:
    """An ``x-forwarded-client-cert`` value from elements (first hop first)."""
    out = []
    for el in elements:
        pairs: list[str] = [f"By={_xfcc_value(b)}" for b in el.by]
        if el.hash is not None:
            pairs.append(f"Hash={el.hash}")
        if el.cert is not None:
            # What nginx puts in $ssl_client_escaped_cert (emit_nginx_escaped_cert).
            pairs.append(f"Cert={percent_encode(_pem(el.cert.der), safe=_NGINX_SAFE)}")
        if el.chain:
            pairs.append(
                "Chain=" + percent_encode("".join(_pem(c.der) for c in el.chain), safe=_NGINX_SAFE)
            )
        if el.subject is not None:
            # Envoy always double-quotes Subject.
            pairs.append(f"Subject={_xfcc_value(el.subject, quote=True)}")
        pairs += [f"URI={_xfcc_value(u)}" for u in el.uri]
        pairs += [f"DNS={_xfcc_value(d)}" for d in el.dns]
        out.append(";".join(pairs))
    return ",".join(out)
