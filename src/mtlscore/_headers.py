"""Proxy hand-off headers, both directions: parse what a TLS-terminating proxy forwards, emit it.

Formats (grammar quoted from each spec where the code implements it):

* RFC 9440 ``Client-Cert`` / ``Client-Cert-Chain``: RFC 8941 Byte Sequences of DER.
* nginx ``$ssl_client_escaped_cert`` (URL-encoded PEM) and the legacy
  ``$ssl_client_cert`` (PEM with every line but the first prefixed by a tab).
* Envoy ``x-forwarded-client-cert`` (XFCC): elements, key=value pairs, quoting.
* AWS ALB ``X-Amzn-Mtls-Clientcert`` (passthrough: the whole chain) and
  ``X-Amzn-Mtls-Clientcert-Leaf`` (verify mode: the leaf), URL-encoded PEM.
* GCP-style ``X-Client-Cert-*`` verdict headers (emit only).

Every parser is strict and size-limited: bad input raises
:class:`CertificateRejected` with ``malformed`` (``pki_too_large`` over the
limits), never another exception. Whether a header may be believed at all is
``_proxy.py``'s business, not this module's.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509

from ._cert import DEFAULT_MAX_CERT_BYTES, DEFAULT_MAX_CHAIN_BYTES, Certificate, parse_certificate
from ._reasons import CertificateRejected, Reason

if TYPE_CHECKING:
    from ._verdict import Verdict

__all__ = [
    "CERT_HEADER_NAMES",
    "DEFAULT_LIMITS",
    "GCP_HEADER_NAMES",
    "IDENTITY_HEADER_NAMES",
    "HeaderLimits",
    "XfccElement",
    "emit_alb_clientcert",
    "emit_alb_leaf",
    "emit_client_cert",
    "emit_client_cert_chain",
    "emit_nginx_cert",
    "emit_nginx_escaped_cert",
    "emit_xfcc",
    "gcp_headers",
    "parse_alb_clientcert",
    "parse_alb_leaf",
    "parse_client_cert",
    "parse_client_cert_chain",
    "parse_nginx_cert",
    "parse_nginx_escaped_cert",
    "parse_xfcc",
]


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

# Headers that carry a client certificate in one of the formats above (lower case).
CERT_HEADER_NAMES = frozenset(
    {
        "client-cert",
        "client-cert-chain",
        "x-forwarded-client-cert",
        "x-amzn-mtls-clientcert",
        "x-amzn-mtls-clientcert-leaf",
        "x-ssl-client-cert",
        "ssl-client-cert",
        "x-client-cert",
    }
)

GCP_HEADER_NAMES = (
    "X-Client-Cert-Present",
    "X-Client-Cert-Chain-Verified",
    "X-Client-Cert-Error",
    "X-Client-Cert-Hash",
    "X-Client-Cert-Serial-Number",
    "X-Client-Cert-SPIFFE",
    "X-Client-Cert-URI-SANs",
    "X-Client-Cert-DNSName-SANs",
    "X-Client-Cert-Valid-Not-Before",
    "X-Client-Cert-Valid-Not-After",
)

# Every header a gateway must strip from a client's request before it adds its own:
# an upstream that believes any of these from the client is the classic breach.
IDENTITY_HEADER_NAMES = (
    CERT_HEADER_NAMES
    | frozenset(n.lower() for n in GCP_HEADER_NAMES)
    | frozenset(
        {
            "x-amzn-mtls-clientcert-serial-number",
            "x-amzn-mtls-clientcert-issuer",
            "x-amzn-mtls-clientcert-subject",
            "x-amzn-mtls-clientcert-validity",
            "x-ssl-client-verify",
            "x-ssl-client-s-dn",
            "x-ssl-client-i-dn",
        }
    )
)


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


# --- RFC 8941 byte sequences and lists (the subset RFC 9440 uses) -------------------

# RFC 8941 §3.3.5: sf-binary = ":" *(base64) ":"   base64 = ALPHA / DIGIT / "+" / "/" / "="
_SF_BINARY = re.compile(r":([A-Za-z0-9+/=]*):")


def _sf_binary(member: str, what: str) -> bytes:
    m = _SF_BINARY.fullmatch(member)
    if m is None:
        # RFC 9440 §2.2: "Client-Cert = sf-binary"; no parameters are defined, so a
        # parameter or any other item type is not this header.
        raise _malformed(
            f"{what}: expected an RFC 8941 byte sequence ':<base64>:', got {member[:40]!r}"
        )
    body = m.group(1)
    if not body:
        raise _malformed(f"{what}: empty byte sequence")
    # RFC 8941 §4.2.7: parsers SHOULD NOT fail when "=" padding is absent.
    body += "=" * (-len(body) % 4)
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{what}: byte sequence is not valid base64") from None


def _sf_list(value: str, what: str) -> list[str]:
    # RFC 8941 §4.2.1: members separated by OWS "," OWS; a trailing comma fails parsing.
    # Byte sequences cannot contain "," so a plain split is exact here.
    members = [m.strip(" \t") for m in value.split(",")]
    if any(not m for m in members):
        raise _malformed(f"{what}: empty list member (stray or trailing comma)")
    return members


def parse_client_cert(value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS) -> Certificate:
    """The leaf from an RFC 9440 ``Client-Cert`` value (``:<base64 DER>:``).

    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    text = _text(value, "Client-Cert", limits)
    return _der_list([_sf_binary(text, "Client-Cert")], "Client-Cert", limits)[0]


def parse_client_cert_chain(
    value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS
) -> list[Certificate]:
    """The certificates of an RFC 9440 ``Client-Cert-Chain`` value (the leaf is not in it).

    RFC 9440 §2.3: a List of Byte Sequences, each a DER certificate, in TLS order.
    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    text = _text(value, "Client-Cert-Chain", limits)
    if not text:
        return []
    members = _sf_list(text, "Client-Cert-Chain")
    if len(members) > limits.max_certs:
        raise CertificateRejected(
            Reason.PKI_TOO_LARGE,
            f"Client-Cert-Chain has {len(members)} members; the limit is {limits.max_certs}",
        )
    return _der_list(
        [_sf_binary(m, "Client-Cert-Chain") for m in members], "Client-Cert-Chain", limits
    )


def emit_client_cert(cert: Certificate) -> str:
    """An RFC 9440 ``Client-Cert`` value for ``cert`` (RFC 8941 §4.1.8 serialisation)."""
    return ":" + base64.b64encode(cert.der).decode("ascii") + ":"


def emit_client_cert_chain(certs: Iterable[Certificate]) -> str:
    """An RFC 9440 ``Client-Cert-Chain`` value (pass the chain without the leaf)."""
    return ", ".join(emit_client_cert(c) for c in certs)


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


_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
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
    raw = _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), text)
    if any(ord(c) > 0x7E for c in raw):
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


def parse_nginx_escaped_cert(
    value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS
) -> Certificate:
    """The leaf from nginx ``$ssl_client_escaped_cert`` ("the client certificate in the PEM
    format (urlencoded)", nginx ≥ 1.13.5).

    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    return _one(
        _urlpem_certs(value, "nginx escaped certificate", limits), "nginx escaped certificate"
    )


def emit_nginx_escaped_cert(cert: Certificate) -> str:
    """What nginx puts in ``$ssl_client_escaped_cert`` for ``cert``."""
    return _percent_encode(_pem(cert.der), _UNRESERVED)


def parse_nginx_cert(value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS) -> Certificate:
    """The leaf from nginx's legacy ``$ssl_client_cert``.

    nginx: "returns the client certificate in the PEM format ... with each line except
    the first prepended with the tab character". Sent as a header that is an obs-fold
    (RFC 9112 §5.2), which servers replace with spaces; both forms are accepted.
    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    text = _text(value, "nginx certificate", limits, folded=True)
    return _one(
        _der_list(_pem_ders(text, "nginx certificate", limits), "nginx certificate", limits),
        "nginx certificate",
    )


def emit_nginx_cert(cert: Certificate) -> str:
    """nginx's legacy ``$ssl_client_cert`` form: LF+TAB between lines, no final newline."""
    return _pem(cert.der).rstrip("\n").replace("\n", "\n\t")


def parse_alb_clientcert(
    value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS
) -> list[Certificate]:
    """The presented chain from AWS ALB ``X-Amzn-Mtls-Clientcert`` (mTLS passthrough).

    AWS: "URL-encoded PEM format, with +=/ as safe characters", leaf first.
    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    return _urlpem_certs(value, "X-Amzn-Mtls-Clientcert", limits)


def parse_alb_leaf(value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS) -> Certificate:
    """The leaf from AWS ALB ``X-Amzn-Mtls-Clientcert-Leaf`` (mTLS verify mode).

    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    what = "X-Amzn-Mtls-Clientcert-Leaf"
    return _one(_urlpem_certs(value, what, limits), what)


def emit_alb_clientcert(certs: Iterable[Certificate]) -> str:
    """An ``X-Amzn-Mtls-Clientcert`` value: the chain as URL-encoded PEM, ``+=/`` kept."""
    return _percent_encode("".join(_pem(c.der) for c in certs), _ALB_SAFE)


def emit_alb_leaf(cert: Certificate) -> str:
    """An ``X-Amzn-Mtls-Clientcert-Leaf`` value."""
    return emit_alb_clientcert([cert])


# --- Envoy x-forwarded-client-cert ----------------------------------------------------


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
            i += 1
            out: list[str] = []
            while True:
                if i >= n:
                    raise _malformed("x-forwarded-client-cert: unterminated quoted value")
                c = text[i]
                if c == "\\" and i + 1 < n and text[i + 1] in '"\\':
                    out.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    out.append(c)
                    i += 1
            value = "".join(out)
        else:
            start = i
            while i < n and text[i] not in ";,":
                if text[i] in '"=':
                    raise _malformed(
                        f"x-forwarded-client-cert: unquoted {text[i]!r} in the value of {key!r}"
                    )
                i += 1
            value = text[start:i].strip(" \t")
        pairs.append((key, value))
        total_pairs += 1
        if total_pairs > limits.max_xfcc_pairs:
            raise CertificateRejected(
                Reason.PKI_TOO_LARGE,
                f"x-forwarded-client-cert has more than {limits.max_xfcc_pairs} pairs",
            )
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            elements.append(pairs)
            break
        sep = text[i]
        if sep not in ";,":
            raise _malformed(
                f"x-forwarded-client-cert: unexpected {sep!r} after the value of {key!r}"
            )
        i += 1
        while i < n and text[i] in " \t":
            i += 1
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
            pairs.append(f"Cert={emit_nginx_escaped_cert(el.cert)}")
        if el.chain:
            pairs.append(
                "Chain=" + _percent_encode("".join(_pem(c.der) for c in el.chain), _UNRESERVED)
            )
        if el.subject is not None:
            # Envoy always double-quotes Subject.
            pairs.append(f"Subject={_xfcc_value(el.subject, quote=True)}")
        pairs += [f"URI={_xfcc_value(u)}" for u in el.uri]
        pairs += [f"DNS={_xfcc_value(d)}" for d in el.dns]
        out.append(";".join(pairs))
    return ",".join(out)


# --- GCP-style verdict headers ---------------------------------------------------------

# DESIGN.md §4: the nearest GCP load-balancer error for each reason; the rest keep our code.
_GCP_ERRORS = {
    Reason.NOT_PROVIDED: "client_cert_not_provided",
    Reason.INVALID_EKU: "client_cert_chain_invalid_eku",
    Reason.RSA_KEY_TOO_SMALL: "client_cert_invalid_rsa_key_size",
    Reason.RSA_KEY_TOO_LARGE: "client_cert_invalid_rsa_key_size",
    Reason.UNSUPPORTED_CURVE: "client_cert_unsupported_elliptic_curve_key",
    Reason.UNSUPPORTED_KEY_ALGORITHM: "client_cert_unsupported_key_algorithm",
    Reason.CHAIN_TOO_LONG: "client_cert_chain_exceeded_limit",
    Reason.PKI_TOO_LARGE: "client_cert_pki_too_large",
    Reason.SEARCH_LIMIT_EXCEEDED: "client_cert_validation_search_limit_exceeded",
    Reason.IDENTITY_UNMAPPED: "identity_unmapped",
    Reason.BINDING_MISMATCH: "binding_mismatch",
    Reason.UNTRUSTED_PROXY: "untrusted_proxy",
}
# Reasons that say nothing against the chain itself.
_CHAIN_OK_REASONS = frozenset({Reason.IDENTITY_UNMAPPED, Reason.BINDING_MISMATCH})


def gcp_error(reason: Reason) -> str:
    """The GCP load balancer's ``client_cert_error`` value nearest to ``reason``."""
    return _GCP_ERRORS.get(reason, "client_cert_validation_failed")


def _b64_list(values: Iterable[str]) -> str:
    return ",".join(base64.b64encode(v.encode("utf-8")).decode("ascii") for v in values)


def gcp_headers(verdict: Verdict | None, *, present: bool) -> list[tuple[str, str]]:
    """GCP-style ``X-Client-Cert-*`` headers describing ``verdict`` (all ten, always).

    Values follow the GCP load balancer's mTLS custom-header variables: ``true``/``false``
    flags, base64 SHA-256 fingerprint, hex serial, SANs as comma-separated base64 (the
    SPIFFE ID in its own header), RFC 3339 validity times. Never raises.
    """
    leaf = verdict.path[0] if verdict is not None and verdict.path else None
    if not present:
        error = gcp_error(Reason.NOT_PROVIDED)
        verified = False
    elif verdict is None:
        error, verified = "client_cert_validation_failed", False
    else:
        verified = verdict.ok or verdict.reason in _CHAIN_OK_REASONS
        error = "" if verdict.ok or verdict.reason is None else gcp_error(verdict.reason)
    values = {name: "" for name in GCP_HEADER_NAMES}
    values["X-Client-Cert-Present"] = "true" if present else "false"
    values["X-Client-Cert-Chain-Verified"] = "true" if verified else "false"
    values["X-Client-Cert-Error"] = error
    if present and leaf is not None:
        uris = [n.value for n in leaf.san or () if isinstance(n, x509.UniformResourceIdentifier)]
        spiffe = [u for u in uris if u.lower().startswith("spiffe://")]
        dns = [n.value for n in leaf.san or () if isinstance(n, x509.DNSName)]
        values["X-Client-Cert-Hash"] = base64.b64encode(leaf.sha256).decode("ascii")
        values["X-Client-Cert-Serial-Number"] = format(leaf.serial, "x")
        # A SPIFFE ID is only meaningful when exactly one is present (SPIFFE X.509-SVID §2).
        values["X-Client-Cert-SPIFFE"] = (
            spiffe[0] if len(spiffe) == 1 and spiffe[0].isascii() else ""
        )
        values["X-Client-Cert-URI-SANs"] = _b64_list(u for u in uris if u not in spiffe)
        values["X-Client-Cert-DNSName-SANs"] = _b64_list(dns)
        values["X-Client-Cert-Valid-Not-Before"] = leaf.not_before.isoformat()
        values["X-Client-Cert-Valid-Not-After"] = leaf.not_after.isoformat()
    # Defence in depth: nothing outside visible ASCII ever reaches a header value.
    return [(k, v if _VALUE_CHARS.search(v) is None else "") for k, v in values.items()]
