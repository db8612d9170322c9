"""Certificate input: DER, PEM and PEM bundles, parsed once into :class:`Certificate` (the model is
:mod:`mtlscore.x509.certificate`; it is re-exported here, where callers have always found it).

Everything validation needs is computed once per distinct DER (a bounded
cache keyed by the DER), so that later steps never re-parse. The DER is read
once by ``cryptography``'s declarative decoder with the schemas of
:mod:`mtlscore.x509.schema`: in one pass when the certificate has the common
shape (:mod:`mtlscore.x509._read_common`), else by the general read
(:mod:`mtlscore.x509._read_any`), which makes ``cryptography``'s certificate
object only for the rarer extensions and forms. Any parse failure becomes
``Reason.MALFORMED``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence

from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization

from ..reasons import CertificateRejected, Reason
from ._algorithms import key_kind as key_kind
from ._algorithms import signature_hash_algorithm as signature_hash_algorithm
from ._extensions import clear_shared
from ._extensions import der_sequence as der_sequence
from ._extensions import encode_policy_mappings as encode_policy_mappings
from ._read_any import read_any
from ._read_common import clear_checked_names, read_common
from .certificate import NAME_KEYS, Certificate
from .lru import BoundedLRU

__all__ = [
    "DEFAULT_MAX_CERT_BYTES",
    "DEFAULT_MAX_CHAIN_BYTES",
    "Certificate",
    "clear_parse_cache",
    "forget_certificates",
    "CertificateInput",
    "ChainInput",
    "from_der",
    "load_certificates",
    "parse_certificate",
    "split_certificates",
]

DEFAULT_MAX_CERT_BYTES = 16 * 1024
DEFAULT_MAX_CHAIN_BYTES = 64 * 1024
PARSE_CACHE_SIZE = 4096

_PEM_RE = re.compile(
    rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----\s*(.*?)-----END (?:X509 |TRUSTED )?CERTIFICATE-----",
    re.DOTALL,
)

_SIG_HASH_NAMES = {"sha1", "md5", "sha224", "sha256", "sha384", "sha512", "sha3-256", "sha3-384"}


def from_der(der: bytes) -> Certificate:
    """A certificate again from its DER (unpickling); served from the parse cache when there."""
    return PARSE_CACHE.peek(der) or _build(der, hashlib.sha256(der).digest())


def _build(der: bytes, digest: bytes | None = None) -> Certificate:
    """Read ``der``: in one decode when it has the common shape (:func:`read_common`), else by :func:`read_any`.

    ``digest``: SHA-256 of ``der`` when the caller has it; else the certificate computes it when
    first asked (:attr:`Certificate.sha256`).
    """
    try:
        cert = read_common(der, digest)
    except Exception:  # noqa: BLE001 - whatever the one-pass read does not take, read_any decides
        cert = None
    return cert if cert is not None else read_any(der, digest)


# Parsed certificates keyed by the DER itself: the dictionary's hash of the bytes
# is cheaper than SHA-256 and the lookup compares the whole DER, so a hit is
# always the same certificate.
PARSE_CACHE: BoundedLRU[bytes, Certificate] = BoundedLRU(PARSE_CACHE_SIZE)


def clear_parse_cache() -> None:
    """Forget every cached parsed certificate (tests, memory pressure)."""
    PARSE_CACHE.clear()


def forget_certificates() -> None:
    """Forget every certificate read so far and all that was learned from their contents.

    The parse cache, the name keys by DER (``NAME_KEYS``), and what the readers
    share across certificates: decoded extension values, issuer names already
    decoded, OID texts and interned sets. What the process knows of signature
    algorithm encodings and key types stays (reading a trust store teaches it).
    For a first sight of a chain (the cold benchmark) and memory pressure.
    """
    clear_parse_cache()
    NAME_KEYS.clear()
    clear_shared()
    clear_checked_names()


def parse_certificate(der: bytes, *, max_bytes: int = DEFAULT_MAX_CERT_BYTES, remember: bool = True) -> Certificate:
    """Parse one DER certificate.

    Raises :class:`CertificateRejected` with ``pki_too_large`` over ``max_bytes``
    and ``malformed`` when it is not a certificate. ``remember=False`` still
    looks in the parse cache but does not add to it: the validator parses
    client certificates so, since a stream of one-time client certificates
    would otherwise push the shared intermediates out.
    """
    if type(der) is not bytes:  # the common case first: a TLS stack hands over bytes
        if not isinstance(der, bytes | bytearray | memoryview):
            raise CertificateRejected(Reason.MALFORMED, "certificate input is not bytes")
        der = bytes(der)
    if len(der) > max_bytes:
        raise CertificateRejected(
            Reason.PKI_TOO_LARGE,
            f"certificate is {len(der)} bytes; the limit is {max_bytes}",
        )
    if not der:
        raise CertificateRejected(Reason.MALFORMED, "empty certificate")
    cached = PARSE_CACHE.lookup(der)
    if cached is not None:
        return cached
    # A certificate kept in the cache (a CA's) is digested now: its digest keys the
    # signature cache and the paths. A client certificate's is made when first read.
    cert = _build(der, hashlib.sha256(der).digest() if remember else None)
    if remember:
        # Keyed by the certificate's own ``der`` object: the key costs no memory of its own.
        PARSE_CACHE.store(cert.der, cert)
    return cert


def _pem_blocks(data: bytes) -> list[bytes]:
    out = []
    for m in _PEM_RE.finditer(data):
        body = re.sub(rb"\s+", b"", m.group(1))
        try:
            out.append(base64.b64decode(body, validate=True))
        except (binascii.Error, ValueError):
            raise CertificateRejected(Reason.MALFORMED, "PEM block is not valid base64") from None
    return out


# What the chain-taking entry points (Validator.validate and start, load_certificates)
# accept: PEM (one certificate or a bundle), one DER certificate, a parsed certificate,
# or a sequence of those, leaf first.
CertificateInput = bytes | str | Certificate | cx509.Certificate
ChainInput = CertificateInput | Sequence[CertificateInput]


def split_certificates(
    data: ChainInput,
    *,
    max_cert_bytes: int = DEFAULT_MAX_CERT_BYTES,
    max_chain_bytes: int = DEFAULT_MAX_CHAIN_BYTES,
    max_count: int | None = None,
) -> list[bytes | Certificate]:
    """Split input into DER certificates (or already-parsed ones) without parsing them.

    Accepts PEM (one or a bundle), one DER certificate, parsed certificates, or a
    sequence of those. Raises :class:`CertificateRejected`: ``not_provided`` for
    empty input, ``malformed`` when it is neither PEM nor DER, ``pki_too_large``
    over the byte or count limits.
    """
    out: list[bytes | Certificate] = []
    if isinstance(data, Certificate):
        out = [data]
    elif isinstance(data, cx509.Certificate):
        out = [data.public_bytes(serialization.Encoding.DER)]
    elif isinstance(data, list | tuple) or (
        isinstance(data, Sequence) and not isinstance(data, str | bytes | bytearray | memoryview)
    ):
        limit = max_chain_bytes * 2 + 4096
        for item in data:
            if type(item) is bytes and item[:1] == b"\x30" and len(item) <= limit:
                # The common case (DER from a TLS stack): what the recursive call returns for it.
                out.append(item)
            else:
                out.extend(split_certificates(item, max_cert_bytes=max_cert_bytes, max_chain_bytes=max_chain_bytes))
            if max_count is not None and len(out) > max_count:
                raise CertificateRejected(Reason.PKI_TOO_LARGE, f"more than {max_count} certificates presented")
        if not out:
            raise CertificateRejected(Reason.NOT_PROVIDED, "no certificate was presented")
    else:
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise CertificateRejected(Reason.MALFORMED, f"cannot read certificates from {type(data).__name__}")
        raw = bytes(data)
        # A PEM bundle holds base64 (4/3 of the DER) plus armour; allow for it.
        if len(raw) > max_chain_bytes * 2 + 4096:
            raise CertificateRejected(
                Reason.PKI_TOO_LARGE, f"input exceeds {max_chain_bytes} bytes of certificates"
            )
        stripped = raw.lstrip()
        if not stripped:
            raise CertificateRejected(Reason.NOT_PROVIDED, "no certificate in the input")
        # RFC 7468 §2: text before the first boundary is allowed (openssl -text output,
        # commented bundles); DER is recognised first so that a "-----BEGIN" inside it is inert.
        if stripped.startswith(b"-----BEGIN") or (raw[:1] != b"\x30" and b"-----BEGIN" in raw):
            out = list(_pem_blocks(raw))
            if not out:
                raise CertificateRejected(Reason.MALFORMED, "no CERTIFICATE block in the PEM input")
        elif raw[:1] == b"\x30":
            out = [raw]
        else:
            raise CertificateRejected(Reason.MALFORMED, "input is neither PEM nor DER")
    if max_count is not None and len(out) > max_count:
        raise CertificateRejected(Reason.PKI_TOO_LARGE, f"more than {max_count} certificates presented")
    total = 0
    for item in out:
        size = len(item.der if isinstance(item, Certificate) else item)
        if size > max_cert_bytes:
            raise CertificateRejected(
                Reason.PKI_TOO_LARGE, f"a certificate is {size} bytes; the limit is {max_cert_bytes}"
            )
        total += size
    if total > max_chain_bytes:
        raise CertificateRejected(
            Reason.PKI_TOO_LARGE, f"presented chain is {total} bytes; the limit is {max_chain_bytes}"
        )
    return out


def load_certificates(
    data: ChainInput,
    *,
    max_cert_bytes: int = DEFAULT_MAX_CERT_BYTES,
    max_chain_bytes: int = DEFAULT_MAX_CHAIN_BYTES,
    max_count: int | None = None,
) -> list[Certificate]:
    """Certificates from PEM (one or a bundle), one DER certificate, or a sequence of those.

    Order is kept (leaf first for a presented chain). Raises
    :class:`CertificateRejected`: ``malformed`` for anything unparsable,
    ``not_provided`` for empty input, ``pki_too_large`` over the limits.
    """
    items = split_certificates(
        data, max_cert_bytes=max_cert_bytes, max_chain_bytes=max_chain_bytes, max_count=max_count
    )
    return [i if isinstance(i, Certificate) else parse_certificate(i, max_bytes=max_cert_bytes) for i in items]
