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
    _der_list,
    _malformed,
    _one,
    _pem,
    _pem_ders,
    _percent_decode,
    _text,
    _urlpem_text_certs,
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
# The fast path's pieces. A key, '=' and, when the value is quoted, its opening quote;
# the rest of a quoted pair: its body (escapes still in), the closing quote, OWS and the
# separator or the end. A bare value is cut at the next ';' or ',' with str.find, ~20×
# cheaper than a regex character class over a 1-2 KB certificate. Where these do not
# fit, _pair_error walks the pair with the step patterns above to say what is wrong.
_HEAD = re.compile(r'([A-Za-z0-9_\-.]+)=(")?')
_QUOTED_REST = re.compile(r'((?:[^"\\]++|\\["\\]|\\(?!["\\]))*+)"[ \t]*+(?:([;,])|\Z)')


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where a run of ``pattern`` (which may match empty) starting at ``pos`` ends."""
    m = pattern.match(text, pos)
    return pos if m is None else m.end()


def _pair_error(text: str, i: int) -> CertificateRejected:
    """Why the pair starting at offset ``i`` is not grammatical (the fast path refused it)."""
    n = len(text)
    m = _TOKEN.match(text, i)
    if m is None:
        return _malformed(f"x-forwarded-client-cert: expected a key at offset {i}")
    key = m.group().lower()
    i = m.end()
    if i >= n or text[i] != "=":
        return _malformed(f"x-forwarded-client-cert: expected '=' after key {key!r}")
    i += 1
    if i < n and text[i] == '"':
        m = _QUOTED.match(text, i + 1)
        if m is None:
            return _malformed("x-forwarded-client-cert: unterminated quoted value")
        i = m.end()
    else:
        i = _skip(_BARE, text, i)
        if i < n and text[i] in '"=':
            return _malformed(
                f"x-forwarded-client-cert: unquoted {text[i]!r} in the value of {key!r}"
            )
    i = _skip(_OWS, text, i)
    found = repr(text[i]) if i < n else "the end"
    return _malformed(f"x-forwarded-client-cert: unexpected {found} after the value of {key!r}")


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
    # The next ';' and ',' at or after i, found again only once i has passed them, so
    # the scans stay linear in the header whatever the number of pairs.
    semi = comma = -1
    while True:
        start = i
        head = _HEAD.match(text, i)
        if head is None:
            raise _pair_error(text, start)
        key = head[1].lower()
        i = head.end()
        sep: str | None
        if head[2] is not None:
            rest = _QUOTED_REST.match(text, i)
            if rest is None:
                raise _pair_error(text, start)
            body, sep = rest.groups()
            value = _ESCAPE.sub(r"\1", body) if "\\" in body else body
            i = rest.end()
        else:
            if semi < i:
                semi = text.find(";", i) % (n + 1)  # -1 (none) -> n
            if comma < i:
                comma = text.find(",", i) % (n + 1)
            end = min(semi, comma)
            raw = text[i:end]
            if '"' in raw or "=" in raw:
                raise _pair_error(text, start)
            value = raw.strip(" \t")
            sep = text[end] if end < n else None
            i = end + 1
        pairs.append((key, value))
        total_pairs += 1
        if total_pairs > limits.max_xfcc_pairs:
            raise CertificateRejected(
                Reason.PKI_TOO_LARGE,
                f"x-forwarded-client-cert has more than {limits.max_xfcc_pairs} pairs",
            )
        if sep is None:
            elements.append(pairs)
            return elements
        if text.startswith((" ", "\t"), i):
            i = _skip(_OWS, text, i)
        if sep == ",":
            elements.append(pairs)
            pairs = []
            if len(elements) >= limits.max_xfcc_elements:
                raise CertificateRejected(
                    Reason.PKI_TOO_LARGE,
                    f"x-forwarded-client-cert has more than {limits.max_xfcc_elements} elements",
                )


def _chain_certs(
    value: str, cert: Certificate | None, cert_value: str, what: str, limits: HeaderLimits
) -> tuple[Certificate, ...]:
    """The certificates of a ``Chain`` value.

    Envoy writes ``Chain`` as the ``Cert`` block followed by the rest of the chain, so
    when the value starts with the ``Cert`` value already decoded (one whole block:
    percent-decoding and PEM framing both compose at its end), only the rest is
    decoded. Any failure there is left to the whole value, which names the fault as
    it always did; a success is what decoding the whole value gives.
    """
    if cert is not None and len(value) > len(cert_value) and value.startswith(cert_value):
        try:
            rest = _pem_ders(_percent_decode(value[len(cert_value) :], what), what, limits)
            return tuple(_der_list([cert.der, *rest], what, limits))
        except CertificateRejected:
            pass
    return tuple(_urlpem_text_certs(value, what, limits))


def _xfcc_element(pairs: list[tuple[str, str]], index: int, limits: HeaderLimits) -> XfccElement:
    what = f"x-forwarded-client-cert element {index}"
    seen: set[str] = set()
    by: list[str] = []
    uri: list[str] = []
    dns: list[str] = []
    cert: Certificate | None = None
    chain: tuple[Certificate, ...] = ()
    cert_value = ""
    digest: str | None = None
    subject: str | None = None
    for key, value in pairs:
        if key in _XFCC_SINGLE:
            if key in seen:
                raise _malformed(f"{what}: several {key.capitalize()}= pairs")
            seen.add(key)
        if key == "cert":
            # The value is a slice of the whole header, which _text has checked.
            if value:
                cert = _one(_urlpem_text_certs(value, f"{what} Cert", limits), f"{what} Cert")
                cert_value = value
        elif key == "chain":
            if value:
                chain = _chain_certs(value, cert, cert_value, f"{what} Chain", limits)
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
