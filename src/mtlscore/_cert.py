"""Certificate input: DER, PEM and PEM bundles, parsed once into :class:`Certificate`.

Everything validation needs is computed here, once per distinct DER (a bounded
cache keyed by SHA-256 of the DER), so that later steps never re-parse.
Parsing is `cryptography`'s; any parse failure becomes ``Reason.MALFORMED``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from ._lru import BoundedLRU
from ._names import NameKey, name_key
from ._reasons import CertificateRejected, Reason

__all__ = [
    "DEFAULT_MAX_CERT_BYTES",
    "DEFAULT_MAX_CHAIN_BYTES",
    "Certificate",
    "clear_parse_cache",
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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True, eq=False)
class Certificate:
    """One parsed X.509 certificate and the facts validation needs from it.

    Build with :func:`parse_certificate` or :func:`load_certificates`; both raise
    :class:`CertificateRejected` (``malformed`` / ``pki_too_large``) on bad input.
    Equality and hashing are by DER.
    """

    der: bytes
    sha256: bytes
    x509: cx509.Certificate = field(repr=False)
    subject: cx509.Name = field(repr=False)
    issuer: cx509.Name = field(repr=False)
    subject_key: NameKey = field(repr=False)
    issuer_key: NameKey = field(repr=False)
    serial: int = field(repr=False)
    version: int = field(repr=False)
    not_before: datetime = field(repr=False)
    not_after: datetime = field(repr=False)
    # Extensions: every OID present, and those marked critical.
    extension_oids: frozenset[str] = field(repr=False)
    critical_oids: frozenset[str] = field(repr=False)
    is_ca: bool | None = field(repr=False)  # None: no basicConstraints
    path_length: int | None = field(repr=False)
    key_usage: cx509.KeyUsage | None = field(repr=False)
    eku: frozenset[str] | None = field(repr=False)  # dotted OIDs
    san: tuple[cx509.GeneralName, ...] | None = field(repr=False)
    name_constraints: cx509.NameConstraints | None = field(repr=False)
    ski: bytes | None = field(repr=False)
    aki: bytes | None = field(repr=False)
    public_key: Any = field(repr=False)  # cryptography public key, or None if unsupported
    key_type: str = field(repr=False)  # rsa | ec | ed25519 | ed448 | dsa | unknown
    key_bits: int = field(repr=False)
    curve: str | None = field(repr=False)  # "P-256", ...; "explicit" for explicit EC parameters
    spki_der: bytes = field(repr=False)
    signature_oid: str = field(repr=False)
    signature_hash: str | None = field(repr=False)  # "sha256", None for EdDSA/unknown
    signature_params: Any = field(repr=False)
    crl_urls: tuple[str, ...] = field(repr=False)
    ocsp_urls: tuple[str, ...] = field(repr=False)
    ca_issuer_urls: tuple[str, ...] = field(repr=False)
    # Derived
    self_issued: bool = field(repr=False)
    spki_sha256: bytes = field(repr=False)
    # The RFC 4514 subject, written on first use (only details and logs read it).
    _subject_text: str | None = field(default=None, repr=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Certificate) and other.der == self.der

    def __hash__(self) -> int:
        return hash(self.sha256)

    @property
    def subject_text(self) -> str:
        """The subject DN as an RFC 4514 string (``<unprintable name>`` when it cannot be)."""
        text = self._subject_text
        if text is None:
            text = _name_text(self.subject)
            object.__setattr__(self, "_subject_text", text)
        return text

    def __repr__(self) -> str:
        return f"<Certificate {self.subject_text!r} sha256={self.sha256.hex()[:16]}…>"

    @property
    def x5t_s256(self) -> str:
        """RFC 8705 §3.1 ``x5t#S256``: base64url (no padding) of SHA-256 of the DER."""
        return _b64url(self.sha256)

    @property
    def fingerprint_hex(self) -> str:
        """SHA-256 of the DER, lower-case hex."""
        return self.sha256.hex()

    @property
    def spki_pin(self) -> str:
        """RFC 7469 pin: base64 (padded) of SHA-256 of the SubjectPublicKeyInfo."""
        return base64.b64encode(self.spki_sha256).decode("ascii")

    @property
    def issuer_text(self) -> str:
        return _name_text(self.issuer)

    @property
    def pem(self) -> str:
        body = base64.encodebytes(self.der).decode("ascii").replace("\n", "")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"

    def describe(self) -> str:
        """A short human name: the subject DN, or the serial when the subject is empty."""
        return self.subject_text or f"serial {self.serial:x}"


def _name_text(name: cx509.Name) -> str:
    try:
        return name.rfc4514_string()
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return "<unprintable name>"


def _key_facts(cert: cx509.Certificate) -> tuple[Any, str, int, str | None]:
    try:
        key = cert.public_key()
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return None, "unknown", 0, None
    if isinstance(key, rsa.RSAPublicKey):
        return key, "rsa", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(
            key.curve.name, key.curve.name
        )
        return key, "ec", key.curve.key_size, curve
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key, "ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return key, "ed448", 456, None
    if isinstance(key, dsa.DSAPublicKey):
        return key, "dsa", key.key_size, None
    return key, "unknown", 0, None


_BC = ExtensionOID.BASIC_CONSTRAINTS.dotted_string
_KU = ExtensionOID.KEY_USAGE.dotted_string
_EKU = ExtensionOID.EXTENDED_KEY_USAGE.dotted_string
_SAN = ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string
_NC = ExtensionOID.NAME_CONSTRAINTS.dotted_string
_SKI = ExtensionOID.SUBJECT_KEY_IDENTIFIER.dotted_string
_AKI = ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string
_CRLDP = ExtensionOID.CRL_DISTRIBUTION_POINTS.dotted_string
_AIA = ExtensionOID.AUTHORITY_INFORMATION_ACCESS.dotted_string
_AIA_OCSP = AuthorityInformationAccessOID.OCSP.dotted_string
_AIA_CA_ISSUERS = AuthorityInformationAccessOID.CA_ISSUERS.dotted_string


def _urls(names: Any) -> list[str]:
    return [n.value for n in names if isinstance(n, cx509.UniformResourceIdentifier)]


def _build(der: bytes, digest: bytes) -> Certificate:
    try:
        cert = cx509.load_der_x509_certificate(der)
        exts = cert.extensions  # raises on duplicates / undecodable known extensions
        subject = cert.subject
        issuer = cert.issuer
        subject_key = name_key(subject)
        issuer_key = name_key(issuer)
        serial = cert.serial_number
        version = cert.version.value + 1
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
        sig_oid = cert.signature_algorithm_oid.dotted_string
        try:
            sig_hash_alg = cert.signature_hash_algorithm
            sig_hash = sig_hash_alg.name if sig_hash_alg is not None else None
        except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
            sig_hash = "unknown"
        try:
            sig_params = cert.signature_algorithm_parameters
        except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
            sig_params = None
    except CertificateRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        raise CertificateRejected(Reason.MALFORMED, f"certificate could not be parsed: {exc}") from None

    is_ca: bool | None = None
    path_length: int | None = None
    key_usage = None
    eku: frozenset[str] | None = None
    san: tuple[cx509.GeneralName, ...] | None = None
    nc = None
    ski = aki = None
    crl_urls: list[str] = []
    ocsp_urls: list[str] = []
    ca_issuer_urls: list[str] = []
    oids = set()
    critical = set()
    try:
        for ext in exts:
            # Dispatch on the dotted string: ObjectIdentifier comparisons cost more.
            oid = ext.oid.dotted_string
            oids.add(oid)
            if ext.critical:
                critical.add(oid)
            value = ext.value
            if oid == _BC:
                is_ca = bool(value.ca)
                path_length = value.path_length
            elif oid == _KU:
                key_usage = value
            elif oid == _EKU:
                eku = frozenset(o.dotted_string for o in value)
            elif oid == _SAN:
                san = tuple(value)
            elif oid == _NC:
                nc = value
            elif oid == _SKI:
                ski = value.digest
            elif oid == _AKI:
                aki = value.key_identifier
            elif oid == _CRLDP:
                for dp in value:
                    if dp.full_name:
                        crl_urls.extend(_urls(dp.full_name))
            elif oid == _AIA:
                for desc in value:
                    loc = desc.access_location
                    if isinstance(loc, cx509.UniformResourceIdentifier):
                        method = desc.access_method.dotted_string
                        if method == _AIA_OCSP:
                            ocsp_urls.append(loc.value)
                        elif method == _AIA_CA_ISSUERS:
                            ca_issuer_urls.append(loc.value)
    except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        raise CertificateRejected(Reason.MALFORMED, f"certificate extension could not be parsed: {exc}") from None

    key, key_type, key_bits, curve = _key_facts(cert)
    spki_der = _spki_der(cert, key)
    if key_type == "ec" and spki_der not in tbs_bytes(der, cert):
        # The SPKI is not the namedCurve encoding of its key, so the curve was spelled
        # out as explicit parameters (RFC 5480 §2.1.1 forbids them).
        curve = "explicit"
    return Certificate(
        der=der,
        sha256=digest,
        x509=cert,
        subject=subject,
        issuer=issuer,
        subject_key=subject_key,
        issuer_key=issuer_key,
        serial=serial,
        version=version,
        not_before=not_before,
        not_after=not_after,
        extension_oids=frozenset(oids),
        critical_oids=frozenset(critical),
        is_ca=is_ca,
        path_length=path_length,
        key_usage=key_usage,
        eku=eku,
        san=san,
        name_constraints=nc,
        ski=ski,
        aki=aki,
        public_key=key,
        key_type=key_type,
        key_bits=key_bits,
        curve=curve,
        spki_der=spki_der,
        signature_oid=sig_oid,
        signature_hash=sig_hash,
        signature_params=sig_params,
        crl_urls=tuple(crl_urls),
        ocsp_urls=tuple(ocsp_urls),
        ca_issuer_urls=tuple(ca_issuer_urls),
        self_issued=subject_key == issuer_key,
        spki_sha256=hashlib.sha256(spki_der).digest(),
    )


def _tlv_content(data: bytes, pos: int) -> tuple[int, int] | None:
    """(start, end) of the contents of the DER TLV at ``pos``; None when it does not fit (X.690 §8.1.3)."""
    if pos + 2 > len(data):
        return None
    first = data[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + 2 + n > len(data):
            return None
        start, length = pos + 2 + n, int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
    end = start + length
    return (start, end) if end <= len(data) else None


def tbs_bytes(der: bytes, x509: cx509.Certificate) -> bytes:
    """The TBSCertificate as transmitted: what the signature covers (RFC 5280 §4.1.1.3).

    Sliced from the DER (cheap) rather than re-encoded by ``cryptography`` (a few
    µs per call); its strict DER parser guarantees both are the same bytes.
    """
    outer = _tlv_content(der, 0)
    if outer is not None and der[0] == 0x30 and outer[0] < len(der) and der[outer[0]] == 0x30:
        inner = _tlv_content(der, outer[0])
        if inner is not None:
            return der[outer[0] : inner[1]]
    return x509.tbs_certificate_bytes


def _spki_der(cert: cx509.Certificate, key: Any) -> bytes:
    if key is not None:
        try:
            return bytes(
                key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            )
        except Exception:  # noqa: BLE001, S110 - fall through to the unique placeholder below
            pass
    # An unsupported key cannot be serialised; give it a key unique to this certificate
    # so that it never matches another certificate's key.
    return b"unsupported-key:" + hashlib.sha256(cert.tbs_certificate_bytes).digest()


# Parsed certificates keyed by the DER itself: the dictionary's hash of the bytes
# is cheaper than SHA-256 and the lookup compares the whole DER, so a hit is
# always the same certificate.
PARSE_CACHE: BoundedLRU[bytes, Certificate] = BoundedLRU(PARSE_CACHE_SIZE)


def clear_parse_cache() -> None:
    """Forget every cached parsed certificate (tests, memory pressure)."""
    PARSE_CACHE.clear()


def parse_certificate(der: bytes, *, max_bytes: int = DEFAULT_MAX_CERT_BYTES) -> Certificate:
    """Parse one DER certificate.

    Raises :class:`CertificateRejected` with ``pki_too_large`` over ``max_bytes``
    and ``malformed`` when it is not a certificate.
    """
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
    cert = _build(der, hashlib.sha256(der).digest())
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


def split_certificates(
    data: bytes | str | Certificate | cx509.Certificate | list[Any] | tuple[Any, ...],
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
    elif isinstance(data, list | tuple):
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
    data: bytes | str | Certificate | cx509.Certificate | list[Any] | tuple[Any, ...],
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
