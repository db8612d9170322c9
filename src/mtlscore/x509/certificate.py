"""The certificate model: :class:`Certificate`, the facts validation reads from one X.509 certificate.

Immutable, compared and hashed by DER; the names, the SPKI digest and
``cryptography``'s object are computed on first use. Building one from bytes
is :mod:`mtlscore.x509.cert`'s job (parsing, size limits, the parse cache);
this module is what the rest of the code holds.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from cryptography import x509 as cx509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ..reasons import CertificateRejected, Reason
from . import schema
from .lru import BoundedLRU
from .names import NameKey, name_key, name_key_of_der

__all__ = ["NAME_KEYS", "UNSET", "Certificate", "PolicyControls", "SignatureParams", "Unfrozen", "spki_der_of"]

# What a signature check needs besides the hash (cryptography's signature_algorithm_parameters):
# the RSA padding, ECDSA, or None (EdDSA, DSA, or unknown).
SignatureParams = padding.PSS | padding.PKCS1v15 | ec.ECDSA | None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


UNSET = object()  # a lazy field not computed yet


@dataclass(frozen=True, slots=True)
class PolicyControls:
    """A CA's policyMappings, policyConstraints and inhibitAnyPolicy (RFC 5280 §4.2.1.5, .11, .14)."""

    mappings: tuple[tuple[str, str], ...] = ()  # (issuerDomainPolicy, subjectDomainPolicy)
    require_explicit_policy: int | None = None
    inhibit_policy_mapping: int | None = None
    inhibit_any_policy: int | None = None


class Certificate:
    """One parsed X.509 certificate and the facts validation needs from it.

    Build with :func:`parse_certificate` or :func:`load_certificates`; both raise
    :class:`CertificateRejected` (``malformed`` / ``pki_too_large``) on bad input.
    Immutable; equality and hashing are by DER.

    What every check reads (extensions, validity, serial, key, signature
    algorithm) is computed on construction. The names and the SPKI digest are
    computed on first use: a client certificate that is validated once needs
    only its issuer's name, and that is looked up by its DER bytes, which
    thousands of client certificates share (see :func:`_name_key_of`).
    Names are decoded on construction (an undecodable one is ``malformed``
    there) but not kept; their matching keys are kept once first used.
    """

    __slots__ = (
        "_issuer_key",
        "_issuer_raw",
        "_san",
        "_self_issued",
        "_sha256",
        "_sig_start",
        "_spki_end",
        "_spki_raw",
        "_spki_sha256",
        "_spki_start",
        "_subject_key",
        "_subject_raw",
        "_subject_text",
        "_tbs_end",
        "_tbs_start",
        "_x509",
        "aki",
        "ca_issuer_urls",
        "critical_oids",
        "crl_urls",
        "curve",
        "der",
        "eku",
        "extension_oids",
        "is_ca",
        "key_bits",
        "key_type",
        "key_usage",
        "name_constraints",
        "not_after",
        "not_before",
        "ocsp_urls",
        "path_length",
        "policies",
        "policy_controls",
        "public_key",
        "serial",
        "signature_hash",
        "signature_oid",
        "signature_params",
        "ski",
        "version",
    )

    der: bytes
    serial: int
    version: int
    not_before: datetime
    not_after: datetime
    # Extensions: every OID present, and those marked critical.
    extension_oids: frozenset[str]
    critical_oids: frozenset[str]
    is_ca: bool | None  # None: no basicConstraints
    path_length: int | None
    key_usage: cx509.KeyUsage | None
    eku: frozenset[str] | None  # dotted OIDs
    name_constraints: cx509.NameConstraints | None
    ski: bytes | None
    aki: bytes | None
    public_key: CertificatePublicKeyTypes | None  # None if cryptography cannot load it
    key_type: str  # rsa | ec | ed25519 | ed448 | dsa | unknown
    key_bits: int
    curve: str | None  # "P-256", ...; "explicit" for explicit EC parameters
    signature_oid: str
    signature_hash: str | None  # "sha256", None for EdDSA/unknown
    signature_params: SignatureParams
    crl_urls: tuple[str, ...]
    ocsp_urls: tuple[str, ...]
    ca_issuer_urls: tuple[str, ...]
    # certificatePolicies (dotted OIDs; None: no such extension) and the rarer policy
    # extensions of CAs (None when the certificate has none of them).
    policies: frozenset[str] | None
    policy_controls: PolicyControls | None
    # Located in the DER on construction (None when they could not be).
    _tbs_start: int
    _tbs_end: int
    _issuer_raw: bytes | None
    _subject_raw: bytes | None
    _spki_raw: bytes | None
    # Computed on first use (UNSET until then).
    _x509: Any
    _subject_key: Any
    _issuer_key: Any
    _self_issued: Any
    # subjectAltName: its GeneralNames as cryptography's objects, or until :attr:`san` is first
    # read as the schema decoded them (a list of asn1.Variant) or as the extension's value (bytes
    # whose names were checked when read: a leaf keeps no decoded objects); None: no such extension.
    _san: tuple[cx509.GeneralName, ...] | list[Any] | bytes | None
    _spki_sha256: bytes | None
    # Where the signatureValue's octets start in ``der`` (they end it), and where the SPKI lies
    # in it when ``_spki_raw`` is None (``_spki_end`` 0: not sliced out, re-encoded from the key):
    # sliced when read, not kept, so a certificate held in the verdict cache holds its DER once.
    _sig_start: int
    _spki_start: int
    _spki_end: int
    _subject_text: str | None
    _sha256: bytes | None  # None until :attr:`sha256` is first read

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Certificate is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Certificate is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Certificate) and other.der == self.der

    def __reduce__(self) -> tuple[Callable[[bytes], Certificate], tuple[bytes]]:
        # Pickled (and copied) as its DER: everything else is computed from it.
        from .cert import from_der

        return (from_der, (self.der,))

    def __hash__(self) -> int:
        return hash(self.sha256)

    # -- computed on first use ------------------------------------------------------

    @property
    def sha256(self) -> bytes:
        """SHA-256 of the DER: the certificate's identity (caches, fingerprints, RFC 8705 ``x5t#S256``).

        Computed when first read: a client certificate accepted along a known path
        is looked up by its DER, not by its digest, and needs none.
        """
        digest = self._sha256
        if digest is None:
            digest = hashlib.sha256(self.der).digest()
            _set(self, "_sha256", digest)
        return digest

    @property
    def x509(self) -> cx509.Certificate:
        """``cryptography``'s certificate object (loaded again from the DER when first wanted).

        The object made while parsing is not kept: it holds every decoded
        extension, and a validator keeps thousands of client certificates in its
        verdict cache, all of which the garbage collector would walk.
        """
        x = self._x509
        if x is UNSET:
            x = cx509.load_der_x509_certificate(self.der)
            _set(self, "_x509", x)
        return x  # type: ignore[no-any-return]

    @property
    def tbs(self) -> bytes:
        """The TBSCertificate as transmitted: what the signature covers (RFC 5280 §4.1.1.3)."""
        if self._tbs_end:
            return self.der[self._tbs_start : self._tbs_end]
        return self.x509.tbs_certificate_bytes

    @property
    def san(self) -> tuple[cx509.GeneralName, ...] | None:
        """subjectAltName's names as ``cryptography``'s objects (None: no such extension; RFC 5280 §4.2.1.6)."""
        san = self._san
        if isinstance(san, bytes):
            # The extension's value, whose names were checked when the certificate was read.
            san = asn1.decode_der(schema.GeneralNames, schema.wrap(san)).names
        if isinstance(san, list):
            names = tuple([_GENERAL_NAMES[gn.tag](gn.value) for gn in san])
            _set(self, "_san", names)
            return names
        return san

    @property
    def subject(self) -> cx509.Name:
        """The subject as ``cryptography``'s Name, decoded when read (and not kept: see :attr:`x509`)."""
        return _decoded(lambda: self.x509.subject, "subject")

    @property
    def issuer(self) -> cx509.Name:
        """The issuer as ``cryptography``'s Name, decoded when read (and not kept)."""
        return _decoded(lambda: self.x509.issuer, "issuer")

    @property
    def subject_key(self) -> NameKey:
        """The subject's matching key (RFC 5280 §7.1, :func:`name_key`)."""
        key = self._subject_key
        if key is UNSET:
            key = _name_key_of(self._subject_raw, lambda: self.subject)
            _set(self, "_subject_key", key)
        return key  # type: ignore[no-any-return]

    @property
    def issuer_key(self) -> NameKey:
        """The issuer's matching key: what path building looks candidates up by."""
        key = self._issuer_key
        if key is UNSET:
            key = _name_key_of(self._issuer_raw, lambda: self.issuer)
            _set(self, "_issuer_key", key)
        return key  # type: ignore[no-any-return]

    @property
    def issuer_der(self) -> bytes | None:
        """The issuer name's DER as transmitted (None when it could not be sliced out of the certificate)."""
        return self._issuer_raw

    @property
    def subject_empty(self) -> bool:
        """Whether the subject is the empty name (answered from the bytes when it can be)."""
        if self._subject_raw is not None:
            return self._subject_raw == b"\x30\x00"
        return not self.subject_key

    @property
    def issuer_empty(self) -> bool:
        if self._issuer_raw is not None:
            return self._issuer_raw == b"\x30\x00"
        return not self.issuer_key

    @property
    def self_issued(self) -> bool:
        """Subject and issuer are the same name (RFC 5280 §6.1: self-issued)."""
        same = self._self_issued
        if same is UNSET:
            raw_s, raw_i = self._subject_raw, self._issuer_raw
            same = True if raw_s is not None and raw_s == raw_i else self.subject_key == self.issuer_key
            _set(self, "_self_issued", same)
        return same  # type: ignore[no-any-return]

    @property
    def spki_der(self) -> bytes:
        """The SubjectPublicKeyInfo as transmitted (re-encoded from the key when it cannot be sliced out)."""
        raw = self._spki_raw
        if raw is None:
            end = self._spki_end
            if end:
                return self.der[self._spki_start : end]
            raw = spki_der_of(self.public_key, self.der)
            _set(self, "_spki_raw", raw)
        return raw

    @property
    def signature(self) -> bytes:
        """The signatureValue's octets (RFC 5280 §4.1.1.3): the last octets of the DER, sliced when read."""
        return self.der[self._sig_start :]

    @property
    def spki_sha256(self) -> bytes:
        """SHA-256 of :attr:`spki_der`: the key's identity (RFC 7469 pins hash the same bytes)."""
        digest = self._spki_sha256
        if digest is None:
            digest = hashlib.sha256(self.spki_der).digest()
            _set(self, "_spki_sha256", digest)
        return digest

    @property
    def subject_text(self) -> str:
        """The subject DN as an RFC 4514 string (``<unprintable name>`` when it cannot be)."""
        text = self._subject_text
        if text is None:
            try:
                text = _name_text(self.subject)
            except CertificateRejected:
                text = "<unprintable name>"
            _set(self, "_subject_text", text)
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
        try:
            return _name_text(self.issuer)
        except CertificateRejected:
            return "<unprintable name>"

    @property
    def pem(self) -> str:
        body = base64.encodebytes(self.der).decode("ascii").replace("\n", "")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"

    def describe(self) -> str:
        """A short human name: the subject DN, or the serial when the subject is empty."""
        return self.subject_text or f"serial {self.serial:x}"


_set = object.__setattr__

# The GeneralName forms the schema reads (mtlscore.x509.schema.GeneralName), by their
# Variant tag, to cryptography's objects. The values were checked when decoded: IA5
# strings (7-bit), iPAddress 4 or 16 octets (RFC 5280 §4.2.1.6).
_GENERAL_NAMES: dict[str, Callable[[Any], cx509.GeneralName]] = {
    "dns": lambda v: cx509.DNSName(v.as_str()),
    "rfc822": lambda v: cx509.RFC822Name(v.as_str()),
    "uri": lambda v: cx509.UniformResourceIdentifier(v.as_str()),
    "ip": lambda v: cx509.IPAddress(ipaddress.ip_address(v)),
}


class Unfrozen(Certificate):
    """The same object while it is being filled in: plain attribute stores (the frozen
    class's ``__setattr__`` would cost a call per field), then ``__class__`` becomes
    :class:`Certificate`."""

    __slots__ = ()
    # Both, or neither is the plain slot store: with Certificate's __delattr__ inherited,
    # every store would go through a call to __setattr__ (ten times slower).
    __setattr__ = object.__setattr__  # type: ignore[assignment]
    __delattr__ = object.__delattr__


_T = TypeVar("_T")


def _decoded(read: Callable[[], _T], what: str) -> _T:
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        raise CertificateRejected(Reason.MALFORMED, f"certificate {what} could not be decoded: {exc}") from None


# Name keys by the name's DER: the issuer of a client certificate is the subject of
# its CA, byte for byte, so thousands of client certificates share one entry.
# Equal bytes are equal names; unequal bytes fall back to comparing keys.
NAME_KEYS: BoundedLRU[bytes, NameKey] = BoundedLRU(4096)


def _name_key_of(raw: bytes | None, read: Callable[[], cx509.Name]) -> NameKey:
    if raw is None:
        return _decoded(lambda: name_key(read()), "name")
    key = NAME_KEYS.lookup(raw)
    if key is None:
        # RFC 5280 §7.1 keys from the name's DER; cryptography's Name (which loads the
        # whole certificate) only for what the declarative decoder does not read.
        key = name_key_of_der(raw)
        if key is None:
            key = _decoded(lambda: name_key(read()), "name")
        NAME_KEYS.store(raw, key)
    return key


def _name_text(name: cx509.Name) -> str:
    try:
        return name.rfc4514_string()
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return "<unprintable name>"


def spki_der_of(key: CertificatePublicKeyTypes | None, der: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER of ``key`` (the public key of the certificate ``der``), re-encoded."""
    if key is not None:
        try:
            return bytes(
                key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            )
        except Exception:  # noqa: BLE001, S110 - fall through to the unique placeholder below
            pass
    # An unsupported key cannot be serialised; give it a key unique to this certificate
    # so that it never matches another certificate's key.
    return b"unsupported-key:" + hashlib.sha256(der).digest()

