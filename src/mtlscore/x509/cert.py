"""Certificate input: DER, PEM and PEM bundles, parsed once into :class:`Certificate` (the model is
:mod:`mtlscore.x509.certificate`; it is re-exported here, where callers have always found it).

Everything validation needs is computed here, once per distinct DER (a bounded
cache keyed by SHA-256 of the DER), so that later steps never re-parse.
The DER is read once by ``cryptography``'s declarative decoder with the schemas of
:mod:`mtlscore.x509.schema`; ``cryptography``'s certificate object is made only for
the rarer extensions and forms. Any parse failure becomes ``Reason.MALFORMED``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Annotated, Any

from cryptography import x509 as cx509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from ..reasons import CertificateRejected, Reason
from . import schema
from .certificate import NAME_KEYS, UNSET, Certificate, PolicyControls, Unfrozen, _decoded, spki_der_of
from .lru import BoundedLRU

__all__ = [
    "DEFAULT_MAX_CERT_BYTES",
    "DEFAULT_MAX_CHAIN_BYTES",
    "Certificate",
    "clear_parse_cache",
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


def _key_kind(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa"
    return "unknown"


# Key classes → kind: isinstance against the abstract classes once per class, not per certificate.
_KEY_KINDS: dict[type, str] = {}
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def key_kind(key: object) -> str:
    """``rsa``, ``ec``, ``ed25519``, ``ed448``, ``dsa`` or ``unknown``: the kind of a public key."""
    kind = _KEY_KINDS.get(type(key))
    if kind is None:
        kind = _KEY_KINDS[type(key)] = _key_kind(key)
    return kind


def _key_facts(cert: cx509.Certificate) -> tuple[Any, str, int, str | None]:
    """(key, kind, bits, curve) of the certificate's key (kind ``unknown`` when ``cryptography`` cannot load it)."""
    try:
        key: Any = cert.public_key()
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return None, "unknown", 0, None
    return _facts_of_key(key)


def _facts_of_key(key: Any) -> tuple[Any, str, int, str | None]:
    kind = key_kind(key)
    if kind == "rsa" or kind == "dsa":
        return key, kind, key.key_size, None
    if kind == "ec":
        name = key.curve.name
        return key, "ec", key.curve.key_size, _CURVES.get(name, name)
    if kind == "ed25519":
        return key, kind, 256, None
    if kind == "ed448":
        return key, kind, 456, None
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
# Extension value classes → their OID's dotted string (filled as they are met).
_TYPE_OIDS: dict[type, str] = {}
_AIA_CA_ISSUERS = AuthorityInformationAccessOID.CA_ISSUERS.dotted_string
_POLICIES = ExtensionOID.CERTIFICATE_POLICIES.dotted_string
_POLICY_MAPPINGS = ExtensionOID.POLICY_MAPPINGS.dotted_string
_POLICY_CONSTRAINTS = ExtensionOID.POLICY_CONSTRAINTS.dotted_string
_INHIBIT_ANY_POLICY = ExtensionOID.INHIBIT_ANY_POLICY.dotted_string
_POLICY_CONTROL_OIDS = frozenset([_POLICY_MAPPINGS, _POLICY_CONSTRAINTS, _INHIBIT_ANY_POLICY])


@asn1.sequence
class _PolicyMapping:
    issuer_domain_policy: cx509.ObjectIdentifier
    subject_domain_policy: cx509.ObjectIdentifier


@asn1.sequence
class _PolicyMappings:
    mappings: list[_PolicyMapping]


@asn1.sequence
class _BasicConstraints:
    ca: Annotated[bool, asn1.Default(False)]
    path_len: int | None = None


def _extensions_problem(tbs: bytes) -> str | None:
    """Why ``cryptography`` could not read the extensions of ``tbs``, in plain words, when we know."""
    try:
        # The schema's TBSCertificate reads the extensions cryptography refused (only to say
        # in plain words why; the certificate is refused either way).
        for ext in asn1.decode_der(schema.TBSCertificate, tbs).extensions or ():
            if ext.extn_id.dotted_string == _BC:
                bc = asn1.decode_der(_BasicConstraints, ext.extn_value)
                if not bc.ca and bc.path_len is not None:
                    return (
                        "the certificate's basicConstraints has cA=FALSE with "
                        f"pathLenConstraint={bc.path_len}; RFC 5280 §4.2.1.9 allows pathLenConstraint only "
                        "when cA is TRUE (an encoding error of the issuing CA); have it reissued without "
                        "pathLenConstraint"
                    )
    except Exception:  # noqa: BLE001 - a diagnosis of hostile input must not crash either
        return None
    return None


def _policy_mappings(value: Any) -> tuple[tuple[str, str], ...]:
    """policyMappings (RFC 5280 §4.2.1.5): ``cryptography`` has no class for it, so its
    value is decoded with ``cryptography``'s ASN.1 decoder."""
    if not isinstance(value, cx509.UnrecognizedExtension):  # a cryptography that decodes it itself
        return tuple((_oid_text(m.issuer_domain_policy), _oid_text(m.subject_domain_policy)) for m in value)
    # The extnValue contents are a SEQUENCE OF, which the decoder reads only as a
    # field: give it the one-field SEQUENCE around them.
    items = asn1.decode_der(_PolicyMappings, der_sequence(value.value)).mappings
    if not items:
        raise ValueError("policyMappings is empty (RFC 5280 §4.2.1.5: SIZE (1..MAX))")
    return tuple((_oid_text(m.issuer_domain_policy), _oid_text(m.subject_domain_policy)) for m in items)


# ``content`` as the contents of a DER SEQUENCE (X.690 §8.1.3): the schema's one definition.
der_sequence = schema.wrap


def encode_policy_mappings(pairs: Iterable[tuple[str, str]]) -> bytes:
    """The policyMappings extension value for (issuerDomainPolicy, subjectDomainPolicy) pairs."""
    return der_sequence(b"".join(
        asn1.encode_der(_PolicyMapping(issuer_domain_policy=cx509.ObjectIdentifier(a),
                                       subject_domain_policy=cx509.ObjectIdentifier(b)))
        for a, b in pairs
    ))


def _controls(found: PolicyControls | None, oid: str, value: Any) -> PolicyControls:
    controls = found or PolicyControls()
    if oid == _POLICY_MAPPINGS:
        return replace(controls, mappings=_policy_mappings(value))
    if oid == _POLICY_CONSTRAINTS:
        return replace(controls, require_explicit_policy=value.require_explicit_policy,
                       inhibit_policy_mapping=value.inhibit_policy_mapping)
    return replace(controls, inhibit_any_policy=value.skip_certs)


def _urls(names: Any) -> list[str]:
    return [n.value for n in names if isinstance(n, cx509.UniformResourceIdentifier)]


# One parameters object per algorithm, shared by every certificate that uses it.
_PKCS1 = padding.PKCS1v15()
_HASHES: dict[str, hashes.HashAlgorithm] = {
    h.name: h for h in (hashes.SHA224(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512())
}
_ECDSA = {name: ec.ECDSA(h) for name, h in _HASHES.items()}
_RSA_PKCS1_OIDS = frozenset(
    ["1.2.840.113549.1.1.4", "1.2.840.113549.1.1.5", "1.2.840.113549.1.1.14", "1.2.840.113549.1.1.11",
     "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13"]
)
_ECDSA_OIDS = frozenset(
    ["1.2.840.10045.4.1", "1.2.840.10045.4.3.1", "1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"]
)


# The common signature algorithms name their hash in the OID: (hash name, parameters) without asking.
_BY_OID: dict[str, tuple[str, Any]] = {
    "1.2.840.113549.1.1.14": ("sha224", _PKCS1),
    "1.2.840.113549.1.1.11": ("sha256", _PKCS1),
    "1.2.840.113549.1.1.12": ("sha384", _PKCS1),
    "1.2.840.113549.1.1.13": ("sha512", _PKCS1),
    "1.2.840.10045.4.3.1": ("sha224", _ECDSA["sha224"]),
    "1.2.840.10045.4.3.2": ("sha256", _ECDSA["sha256"]),
    "1.2.840.10045.4.3.3": ("sha384", _ECDSA["sha384"]),
    "1.2.840.10045.4.3.4": ("sha512", _ECDSA["sha512"]),
}


def _signature_facts(x509_of: Callable[[], cx509.Certificate], oid: str) -> tuple[str | None, Any]:
    """(hash name, parameters object for verify) of the certificate's signature algorithm.

    The common algorithms are known by their OID; any other is asked of
    ``cryptography``'s certificate object (made by ``x509_of`` only then).
    """
    known = _BY_OID.get(oid)
    if known is not None:
        return known
    cert = x509_of()  # malformed when cryptography refuses the certificate
    try:
        alg = cert.signature_hash_algorithm
        name = alg.name if alg is not None else None
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return "unknown", None
    if name is not None and name in _HASHES:
        if oid in _RSA_PKCS1_OIDS:
            return name, _PKCS1
        if oid in _ECDSA_OIDS:
            return name, _ECDSA[name]
    try:
        return name, cert.signature_algorithm_parameters
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return name, None


def signature_hash_algorithm(cert: Certificate) -> hashes.HashAlgorithm | None:
    """The hash object of ``cert``'s signature (shared instances for the common hashes)."""
    name = cert.signature_hash
    if name is not None and name in _HASHES:
        return _HASHES[name]
    try:
        return cert.x509.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return None



# The fixed head of a namedCurve SPKI with an uncompressed point (RFC 5480 §2.1.1, §2.2),
# up to the point, and the SPKI's whole length: a raw SPKI that starts so and is that long
# is the namedCurve encoding (cryptography has decoded the point itself), with no need to
# re-encode the key to compare.
_NAMED_CURVE_SPKI = {
    "P-256": (bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200"), 91),
    "P-384": (bytes.fromhex("3076301006072a8648ce3d020106052b81040022036200"), 120),
    "P-521": (bytes.fromhex("30819b301006072a8648ce3d020106052b8104002303818600"), 158),
}


def _named_curve_spki(spki: bytes | None, curve: str | None) -> bool:
    shape = _NAMED_CURVE_SPKI.get(curve or "")
    return spki is not None and shape is not None and len(spki) == shape[1] and spki.startswith(shape[0])


# OIDs' dotted strings by the OID object (cryptography formats the string on every read),
# and the small sets certificates carry (their extension OIDs, their EKUs), one object
# per distinct set: thousands of client certificates of one profile share them.
_OID_TEXTS: dict[Any, str] = {}
_SETS: dict[tuple[str, ...], frozenset[str]] = {}
_SHARED_MAX = 512  # distinct entries kept; past that, new ones are made per certificate


def _oid_text(oid: Any) -> str:
    text = _OID_TEXTS.get(oid)
    if text is None:
        text = oid.dotted_string
        if len(_OID_TEXTS) < _SHARED_MAX:
            _OID_TEXTS[oid] = text
    return text


def _shared_set(items: list[str]) -> frozenset[str]:
    key = tuple(items)
    found = _SETS.get(key)
    if found is None:
        found = frozenset(key)
        if len(_SETS) < _SHARED_MAX:
            _SETS[key] = found
    return found


# (extension OIDs, critical ones) → their two sets, for the profiles certificates come in.
_EXTENSION_SETS: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[frozenset[str], frozenset[str]]] = {}


def _extension_sets(oids: list[str], critical: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    key = (tuple(oids), tuple(critical))
    found = _EXTENSION_SETS.get(key)
    if found is None:
        found = (_shared_set(oids), _shared_set(critical))
        if len(_EXTENSION_SETS) < _SHARED_MAX:
            _EXTENSION_SETS[key] = found
    return found


def _malformed(why: str) -> CertificateRejected:
    return CertificateRejected(Reason.MALFORMED, why)


def _check_name(raw: bytes, what: str, x509_of: Callable[[], cx509.Certificate]) -> None:
    """Refuse an undecodable name now (``malformed``), not wherever it is first shown.

    A name already in the name-key cache was checked when it was stored. The
    RDNSequence is decoded declaratively (DER, SET OF order, no empty RDN, each
    value a PrintableString, UTF8String or IA5String checked as ``cryptography``
    checks it); a name the schema does not read (another string type, or a
    value it refuses) is decoded by ``cryptography`` itself, which decides.
    """
    if NAME_KEYS.peek(raw) is not None:
        return
    try:
        asn1.decode_der(schema.NameSchema, schema.wrap(raw))
    except Exception:  # noqa: BLE001 - any refusal: cryptography's Name decoder decides
        _decoded(lambda: getattr(x509_of(), what), what)


_KU_BITS = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
            "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")


def _key_usage(value: bytes) -> cx509.KeyUsage:
    """keyUsage (RFC 5280 §4.2.1.3) from its BIT STRING; ValueError where cryptography refuses it."""
    bits = asn1.decode_der(asn1.BitString, value)
    data = bits.as_bytes()
    flags = {name: i // 8 < len(data) and bool(data[i // 8] & (0x80 >> (i % 8))) for i, name in enumerate(_KU_BITS)}
    return cx509.KeyUsage(**flags)  # ValueError: encipherOnly/decipherOnly without keyAgreement


# The extensions decoded here from their bytes; a certificate with any other is read by
# cryptography (cryptography.x509 objects for name constraints, policy mappings …).
_FAST_OIDS = frozenset([_BC, _KU, _EKU, _SAN, _SKI, _AKI, _CRLDP, _AIA, _POLICIES])
# The same by OID object (what the decoder gives), to their one dotted string.
_FAST_OID_TEXTS: dict[cx509.ObjectIdentifier, str] = {cx509.ObjectIdentifier(o): o for o in _FAST_OIDS}


# The facts of the extensions every leaf of one profile under one CA carries byte for byte
# (basicConstraints, keyUsage, EKU, authorityKeyIdentifier, CRL distribution points, AIA,
# certificate policies), by (OID, extnValue): thousands of client certificates decode each
# once. Bounded like _SETS; the values are immutable.
_SHARED_EXTENSIONS: dict[tuple[str, bytes], Any] = {}
_SHARED_EXTENSION_OIDS = frozenset([_BC, _KU, _EKU, _AKI, _CRLDP, _AIA, _POLICIES])
_CPS = cx509.ObjectIdentifier("1.3.6.1.5.5.7.2.1")  # id-qt-cps (RFC 5280 §4.2.1.4)


def _shared_extension(oid: str, value: bytes) -> Any:
    """The decoded facts of a shared-kind extension; LookupError when a form is left to cryptography."""
    key = (oid, value)
    found = _SHARED_EXTENSIONS.get(key)
    if found is not None:
        return found
    if oid == _BC:
        bc = asn1.decode_der(schema.BasicConstraints, value)
        if bc.path_len is not None and (not bc.ca or bc.path_len < 0):
            raise LookupError  # cryptography refuses it, in its words (and _extensions_problem's)
        found = (bool(bc.ca), bc.path_len)
    elif oid == _KU:
        found = _key_usage(value)
    elif oid == _EKU:
        oids = asn1.decode_der(schema.Oids, schema.wrap(value)).oids
        if not oids:
            raise LookupError
        found = _shared_set([_oid_text(o) for o in oids])
    elif oid == _AKI:
        found = (asn1.decode_der(schema.AuthorityKeyId, value).key_id,)
    elif oid == _CRLDP:
        found = _crl_urls(value)
    elif oid == _AIA:
        found = _access_urls(value)
    else:  # _POLICIES
        found = _policies(value)
    if len(_SHARED_EXTENSIONS) < _SHARED_MAX:
        _SHARED_EXTENSIONS[key] = found
    return found


def _uri(name: Any) -> str | None:
    """The URI of a decoded GeneralName, None for the other forms (checked as :func:`_general_names` checks)."""
    _general_names([name])
    return name.value.as_str() if name.tag == "uri" else None


def _crl_urls(value: bytes) -> tuple[str, ...]:
    """The URIs of the fullNames of CRLDistributionPoints (RFC 5280 §4.2.1.13); LookupError for the rest."""
    points = asn1.decode_der(schema.DistributionPoints, schema.wrap(value)).points
    if not points:
        raise LookupError  # SIZE (1..MAX): cryptography decides
    urls = []
    for point in points:
        if point.name.tag != "full":
            raise LookupError  # nameRelativeToCRLIssuer: cryptography reads it
        full: Any = point.name.value
        url = _uri(full.name)
        if url is not None:
            urls.append(url)
    return tuple(urls)


def _access_urls(value: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(OCSP, caIssuers) URIs of authorityInfoAccess (RFC 5280 §4.2.2.1); LookupError for what cryptography reads."""
    descriptions = asn1.decode_der(schema.AccessDescriptions, schema.wrap(value)).descriptions
    if not descriptions:
        raise LookupError  # SIZE (1..MAX): cryptography decides
    ocsp: list[str] = []
    ca_issuers: list[str] = []
    for d in descriptions:
        url = _uri(d.location)
        if url is not None:
            method = _oid_text(d.method)
            if method == _AIA_OCSP:
                ocsp.append(url)
            elif method == _AIA_CA_ISSUERS:
                ca_issuers.append(url)
    return tuple(ocsp), tuple(ca_issuers)


def _policies(value: bytes) -> frozenset[str]:
    """The policy identifiers of certificatePolicies (RFC 5280 §4.2.1.4), whose qualifiers are CPS pointers
    if any; LookupError for the rest (user notices, other qualifiers, empty lists), which cryptography reads."""
    policies = asn1.decode_der(schema.Policies, schema.wrap(value)).policies
    if not policies:
        raise LookupError
    for p in policies:
        if p.qualifiers is not None and (not p.qualifiers or any(q.qualifier_id != _CPS for q in p.qualifiers)):
            raise LookupError
    return _shared_set([_oid_text(p.policy_identifier) for p in policies])


def _san_names(value: bytes) -> list[Any]:
    """subjectAltName's GeneralNames as the schema decodes them (Certificate.san makes the objects when read)."""
    return _general_names(asn1.decode_der(schema.GeneralNames, schema.wrap(value)).names)


def _san_and_ski(san: bytes, ski: bytes) -> tuple[list[Any], bytes]:
    """subjectAltName (as :func:`_san_names`) and subjectKeyIdentifier, the two values every client
    certificate has of its own, in one decode."""
    both = asn1.decode_der(schema.NamesAndKeyId, schema.wrap(san + ski))
    key_id = both.key_id
    # The key identifier's OCTET STRING is exactly the SKI's value, so the names are exactly
    # the SAN's: no element of one was read as part of the other.
    if _header_for(len(key_id)) + len(key_id) != len(ski):
        raise ValueError("the values are not one element each")
    return _general_names(both.names), key_id


def _general_names(names: list[Any]) -> list[Any]:
    """``names``; LookupError for what is left to cryptography (which words the refusal)."""
    if not names:
        raise LookupError  # RFC 5280 §4.2.1.6: GeneralNames is SIZE (1..MAX)
    for gn in names:
        value: Any = gn.value
        tag = gn.tag
        if tag == "ip":
            if len(value) != 4 and len(value) != 16:
                raise LookupError  # an iPAddress that is no address
        elif tag == "rfc822":
            # cryptography's RFC822Name refuses what is not one bare address (its reader
            # makes the object without asking): cryptography's reader makes those.
            try:
                cx509.RFC822Name(value.as_str())
            except ValueError:
                raise LookupError from None
    return names


def _store_shared(c: Any, oid: str, facts: Any) -> None:
    """Store the facts of a shared-kind extension (:func:`_shared_extension`) on the certificate being built."""
    if oid == _BC:
        c.is_ca, c.path_length = facts
    elif oid == _KU:
        c.key_usage = facts
    elif oid == _EKU:
        c.eku = facts
    elif oid == _AKI:
        c.aki = facts[0]
    elif oid == _CRLDP:
        c.crl_urls = facts
    elif oid == _AIA:
        c.ocsp_urls, c.ca_issuer_urls = facts
    else:  # _POLICIES
        c.policies = facts


def _fast_extension(c: Any, oid: str, value: bytes) -> None:
    """Store the facts of one extension of :data:`_FAST_OIDS`; LookupError when a form is left to cryptography."""
    if oid in _SHARED_EXTENSION_OIDS:
        facts = _shared_extension(oid, value)
        _store_shared(c, oid, facts)
    elif oid == _SAN:
        c._san = _san_names(value)
    else:  # _SKI
        c.ski = asn1.decode_der(bytes, value)


def _slow_extensions(c: Any, x: cx509.Certificate) -> tuple[list[str], list[str]]:
    """Every extension read by ``cryptography`` (the rarer ones, or forms :func:`_fast_extension` leaves to it)."""
    try:
        exts = x.extensions  # raises on duplicates / undecodable known extensions
    except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        why = _extensions_problem(x.tbs_certificate_bytes)
        raise _malformed(why or f"certificate could not be parsed: {exc}") from None
    oids: list[str] = []
    critical: list[str] = []
    crl_urls: list[str] = []
    ocsp_urls: list[str] = []
    ca_issuer_urls: list[str] = []
    controls: PolicyControls | None = None
    try:
        for ext in exts:
            value = ext.value
            # Dispatch on the dotted string, found by the value's class: cheaper than
            # reading the OID object (UnrecognizedExtension has no fixed OID).
            oid = _TYPE_OIDS.get(type(value))
            if oid is None:
                oid = ext.oid.dotted_string
                if not isinstance(value, cx509.UnrecognizedExtension):
                    _TYPE_OIDS[type(value)] = oid
            oids.append(oid)
            if ext.critical:
                critical.append(oid)
            if oid == _BC:
                c.is_ca = bool(value.ca)
                c.path_length = value.path_length
            elif oid == _KU:
                c.key_usage = value
            elif oid == _EKU:
                c.eku = _shared_set([_oid_text(o) for o in value])
            elif oid == _SAN:
                c._san = tuple(value)
            elif oid == _SKI:
                c.ski = value.digest
            elif oid == _AKI:
                c.aki = value.key_identifier
            elif oid == _NC:
                c.name_constraints = value
            elif oid == _CRLDP:
                for dp in value:
                    if dp.full_name:
                        crl_urls.extend(_urls(dp.full_name))
            elif oid == _POLICIES:
                c.policies = _shared_set([_oid_text(p.policy_identifier) for p in value])
            elif oid in _POLICY_CONTROL_OIDS:
                controls = _controls(controls, oid, value)
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
        raise _malformed(f"certificate extension could not be parsed: {exc}") from None
    c.crl_urls = tuple(crl_urls)
    c.ocsp_urls = tuple(ocsp_urls)
    c.ca_issuer_urls = tuple(ca_issuer_urls)
    c.policy_controls = controls
    return oids, critical


# Signature algorithms' dotted OIDs by their AlgorithmIdentifier bytes: a handful of
# distinct values, shared by every certificate. An encoding enters only once
# ``cryptography``'s typed AlgorithmIdentifier has accepted it (see _signature_algorithm).
_ALGORITHMS: dict[bytes, str] = {}


def _signature_algorithm(alg_der: bytes, x509_of: Callable[[], cx509.Certificate]) -> str:
    """The signature algorithm's dotted OID: PKCS #1 (NULL parameters) and ECDSA/EdDSA (none) read here.

    An encoding not seen before is also checked by ``cryptography`` (``x509_of``
    loads the certificate; malformed when it refuses): its AlgorithmIdentifier
    knows which parameters each algorithm may carry (say, none for Ed25519).
    Whether it accepts depends on the AlgorithmIdentifier's bytes alone, so the
    answer is kept by them.
    """
    found = _ALGORITHMS.get(alg_der)
    if found is not None:
        return found
    x509_of()
    for shape in (schema.AlgorithmNull, schema.AlgorithmOid):
        try:
            found = _oid_text(asn1.decode_der(shape, alg_der).algorithm)  # type: ignore[attr-defined]
        except ValueError:
            continue
        if len(_ALGORITHMS) < _SHARED_MAX:
            _ALGORITHMS[alg_der] = found
        return found
    return _decoded(lambda: _oid_text(x509_of().signature_algorithm_oid), "signature algorithm")


def _x509_loader(der: bytes) -> Callable[[], cx509.Certificate]:
    """``cryptography``'s certificate object for ``der``, loaded on the first call only (malformed when refused).

    The declarative read does not need it; the rarer forms do (extensions read by
    ``cryptography``, names with other string types, signature algorithms or keys
    not seen before), and they load it once.
    """
    box: list[cx509.Certificate] = []

    def x509_of() -> cx509.Certificate:
        if not box:
            try:
                box.append(cx509.load_der_x509_certificate(der))
            except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision
                raise _malformed(f"certificate could not be parsed: {exc}") from None
        return box[0]

    return x509_of


def _int_size(value: int) -> int:
    """Octets of the DER INTEGER ``value`` with its tag and length (X.690 §8.3.2: the minimal two's complement)."""
    content = (value if value >= 0 else ~value).bit_length() // 8 + 1
    return _header_for(content) + content


def _tlv_size(tlv: Any) -> int:
    """Octets of a decoded TLV field as transmitted (DER: one length encoding, X.690 §10.1)."""
    n = len(tlv.data)
    return len(tlv.tag_bytes) + (1 if n < 0x80 else 1 + (n.bit_length() + 7) // 8) + n


def _validity_size(validity: Any) -> int:
    """Octets of the Validity when its times have the RFC 5280 §4.1.2.5.1-2 forms (UTCTime 13, GeneralizedTime 15)."""
    content = 0
    for t in (validity.not_before, validity.not_after):
        content += 15 if isinstance(t, asn1.UTCTime) else 17
    return 2 + content


def _key_of(spki_raw: bytes, x509_of: Callable[[], cx509.Certificate]) -> tuple[Any, str, int, str | None]:
    """(key, kind, bits, curve) of the SubjectPublicKeyInfo.

    ``load_der_public_key`` reads the SPKI with the same typed structure as
    ``cryptography``'s certificate (its AlgorithmIdentifier parameters
    included). When it refuses, the certificate decides as before: a structure
    it refuses makes the certificate malformed; a key it cannot load (an
    unsupported algorithm, a point not on its curve) is an unsupported key.
    """
    try:
        # An SPKI (an AlgorithmIdentifier SEQUENCE and a BIT STRING), not the bare PKCS #1
        # RSAPublicKey load_der_public_key would also take.
        spki = asn1.decode_der(schema.SubjectPublicKeyInfo, spki_raw)
        if spki.algorithm.tag_bytes != b"\x30":
            raise ValueError("not an AlgorithmIdentifier")
        key = serialization.load_der_public_key(spki_raw)
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return _key_facts(x509_of())
    return _facts_of_key(key)


def _build(der: bytes, digest: bytes) -> Certificate:
    """Read ``der``: in one decode when it has the common shape (:func:`_read_common`), else by :func:`_read_any`."""
    try:
        cert = _read_common(der, digest)
    except Exception:  # noqa: BLE001 - whatever the one-pass read does not take, _read_any decides
        cert = None
    return cert if cert is not None else _read_any(der, digest)


def _element(der: bytes, start: int) -> tuple[int, int]:
    """(start of the contents, end) of the element at ``start``, one whose tag is one octet.

    Only for elements the decoder has already read in ``der``: their length
    octets are DER's (X.690 §8.1.3: short form under 128, else the minimal long
    form), so they give the element's extent without any other reading.
    """
    n = der[start + 1]
    if n < 0x80:
        return start + 2, start + 2 + n
    if n == 0x81:
        return start + 3, start + 3 + der[start + 2]
    if n == 0x82:
        return start + 4, start + 4 + (der[start + 2] << 8 | der[start + 3])
    body = start + 2 + (n & 0x7F)
    return body, body + int.from_bytes(der[start + 2 : body], "big")


# Names already decoded by the schema (the issuers of client certificates: one per CA),
# by their DER. Bounded like _SETS.
_CHECKED_NAMES: dict[bytes, None] = {}


def _read_common(der: bytes, digest: bytes) -> Certificate | None:
    """The certificate in the common shape, or None for :func:`_read_any` to read (and word any refusal).

    One declarative decode (:class:`schema.CommonCertificate`) reads the
    certificate, the TBS, the subject's values and the SPKI's shape; the
    names and the SPKI are sliced from ``der`` at the extents the decoder has
    validated. Everything :func:`_read_any` checks is checked here, on the
    same facts; what is not known here (an extension outside
    :data:`_FAST_OIDS`, a signature algorithm or issuer name not seen before,
    a key ``cryptography`` does not load, a form the schemas leave to
    ``cryptography``) returns None rather than being decided twice.
    """
    try:
        outer = asn1.decode_der(schema.CommonCertificate, der)
    except ValueError:
        return None
    tbs = outer.tbs
    signature = outer.signature
    version = tbs.version
    # RFC 5280 §4.1.1.3 whole-octet signature, §4.1.2.1 v1 or v3 (see _read_any).
    if signature.padding_bits() != 0 or (version != 0 and version != 2):
        return None
    sig_bytes = signature.as_bytes()
    tbs_start = _element(der, 0)[0]
    body, tbs_end = _element(der, tbs_start)
    serial = tbs.serial
    pos = body + (5 if version else 0) + _int_size(serial)  # [0] EXPLICIT INTEGER 2: A0 03 02 01 02
    # RFC 5280 §4.1.1.2: the outer signatureAlgorithm and the TBS signature field are the same
    # AlgorithmIdentifier, byte for byte (see _read_any).
    alg_size = len(der) - tbs_end - _header_for(len(sig_bytes) + 1) - len(sig_bytes) - 1
    alg_der = der[tbs_end : tbs_end + alg_size]
    issuer_start = pos + alg_size
    if alg_size <= 0 or not der.startswith(alg_der, pos) or tbs.issuer.tag_bytes != b"\x30":
        return None
    issuer_end = _element(der, issuer_start)[1]
    subject_start = _element(der, issuer_end)[1]  # after the Validity
    subject_end = _element(der, subject_start)[1]
    spki_end = _element(der, subject_end)[1]
    exts = tbs.extensions
    # The extents add up to the TBS: the extensions ([3]) or nothing follow the SPKI.
    if exts is None:
        if spki_end != tbs_end:
            return None
    elif der[spki_end] != 0xA3 or _element(der, spki_end)[1] != tbs_end:
        return None
    issuer_raw = der[issuer_start:issuer_end]
    if issuer_raw not in _CHECKED_NAMES and NAME_KEYS.peek(issuer_raw) is None:
        try:
            asn1.decode_der(schema.NameSchema, schema.wrap(issuer_raw))
        except ValueError:
            return None
        if len(_CHECKED_NAMES) < _SHARED_MAX:
            _CHECKED_NAMES[issuer_raw] = None
    sig_oid = _ALGORITHMS.get(alg_der)
    if sig_oid is None:
        return None
    known = _BY_OID.get(sig_oid)
    if known is None:
        return None
    spki_raw = der[subject_end:spki_end]
    if tbs.spki.algorithm.tag_bytes != b"\x30":
        return None
    try:
        key = serialization.load_der_public_key(spki_raw)
    except Exception:  # noqa: BLE001 - _read_any decides what a key cryptography does not load means
        return None
    key, key_type, key_bits, curve = _facts_of_key(key)
    if key_type == "ec" and not _named_curve_spki(spki_raw, curve):
        return None
    validity = tbs.validity
    try:
        not_before = validity.not_before.as_datetime()
        not_after = validity.not_after.as_datetime()
    except ValueError:
        return None

    c = object.__new__(Unfrozen)
    c.is_ca = c.path_length = c.key_usage = c.eku = c._san = c.name_constraints = None
    c.ski = c.aki = c.policies = c.policy_controls = None
    c.crl_urls = c.ocsp_urls = c.ca_issuer_urls = ()
    oids: list[str] = []
    critical: list[str] = []
    san = ski = None
    try:
        for e in exts or ():
            oid = _FAST_OID_TEXTS.get(e.extn_id)
            if oid is None:
                return None
            oids.append(oid)
            if e.critical:
                critical.append(oid)
            value = e.extn_value
            if oid == _SAN:
                san = value
            elif oid == _SKI:
                ski = value
            else:
                facts = _SHARED_EXTENSIONS.get((oid, value))
                if facts is None:
                    facts = _shared_extension(oid, value)
                if oid == _BC:
                    c.is_ca, c.path_length = facts
                elif oid == _KU:
                    c.key_usage = facts
                elif oid == _EKU:
                    c.eku = facts
                else:
                    _store_shared(c, oid, facts)
        extension_oids, critical_oids = _extension_sets(oids, critical)
        if len(extension_oids) != len(oids):
            return None  # RFC 5280 §4.2: one instance of an extension (_read_any words it)
        if san is not None and ski is not None:
            c._san, c.ski = _san_and_ski(san, ski)
        elif san is not None:
            c._san = _san_names(san)
        elif ski is not None:
            c.ski = asn1.decode_der(bytes, ski)
    except (LookupError, ValueError):
        return None
    c.der = der
    c.sha256 = digest
    c.signature = sig_bytes
    c._x509 = UNSET
    c.serial = serial
    c.version = 3 if version == 2 else 1
    c.not_before = not_before
    c.not_after = not_after
    c.extension_oids = extension_oids
    c.critical_oids = critical_oids
    c.public_key = key
    c.key_type = key_type
    c.key_bits = key_bits
    c.curve = curve
    c.signature_oid = sig_oid
    c.signature_hash, c.signature_params = known
    c._tbs_start = tbs_start
    c._tbs_end = tbs_end
    c._issuer_raw = issuer_raw
    c._subject_raw = der[subject_start:subject_end]
    c._spki_raw = spki_raw
    c._spki_sha256 = None
    c._subject_text = None
    c._subject_key = UNSET
    c._issuer_key = UNSET
    c._self_issued = UNSET
    c.__class__ = Certificate  # type: ignore[assignment]  # frozen from here on
    return c


def _read_any(der: bytes, digest: bytes) -> Certificate:
    """Read ``der`` with the declarative schemas of :mod:`.schema` (RFC 5280 §4.1), ``cryptography`` for the rest."""
    try:
        outer = asn1.decode_der(schema.CertificateSchema, der)
        tbs_tlv = outer.tbs
        tbs = tbs_tlv.parse(schema.TBSCertificate)
    except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        raise _malformed(f"certificate could not be parsed: {exc}") from None
    signature = outer.signature
    # RFC 5280 §4.1.1.3: the signatureValue is a whole number of octets. cryptography
    # hands over the bytes without the unused-bits octet, so a signature with unused
    # bits would verify as if they were not there: the same signature under another
    # encoding (another SHA-256, another x5t#S256). OpenSSL refuses it too.
    if signature.padding_bits() != 0:
        raise _malformed("its signature BIT STRING declares unused bits (RFC 5280 §4.1.1.3: whole octets)")
    # cryptography reads v1 and v3 only (RFC 5280 §4.1.2.1; v2 certificates do not occur).
    version = tbs.version
    if version != 0 and version != 2:
        raise _malformed(f"certificate could not be parsed: {version} is not a valid X509 version")
    # Where each field lies in the DER, from the decoded sizes: the decoder accepts only
    # DER, where a length has one encoding (X.690 §10.1) and an INTEGER one form
    # (§8.3.2), so the fields are sliced from the DER rather than re-encoded.
    tbs_start = _header_of(len(der))
    tbs_len = len(tbs_tlv.data)
    pos = tbs_start + len(tbs_tlv.tag_bytes) + _header_for(tbs_len) - 1
    tbs_end = pos + tbs_len
    if version:
        pos += 5  # [0] EXPLICIT INTEGER 2: A0 03 02 01 02
    pos += _int_size(tbs.serial)
    # RFC 5280 §4.1.1.2: signatureAlgorithm MUST be the same AlgorithmIdentifier as the
    # TBS signature field. Only the TBS is signed, so a different outer encoding (say,
    # RSA parameters NULL vs absent) would be another certificate with the same signature.
    # The outer one lies between the TBS and the signature BIT STRING; the inner one
    # starts at ``pos``. Equal bytes over the outer one's size include equal tag and
    # length octets, so the inner one is exactly as long: the two are the same element.
    sig_bytes = signature.as_bytes()
    alg_size = len(der) - tbs_end - _header_for(len(sig_bytes) + 1) - len(sig_bytes) - 1
    alg_end = pos + alg_size
    alg_der = der[tbs_end : tbs_end + alg_size]
    if alg_size <= 0 or not der.startswith(alg_der, pos):
        raise _malformed(
            "its signatureAlgorithm is not the same AlgorithmIdentifier as the signature field inside "
            "tbsCertificate (RFC 5280 §4.1.1.2)"
        )
    issuer_end = alg_end + _tlv_size(tbs.issuer)
    issuer_raw = der[alg_end:issuer_end]
    subject_start = issuer_end + _validity_size(tbs.validity)
    if der[issuer_end + 1] + 2 == subject_start - issuer_end:
        subject_end = subject_start + _tlv_size(tbs.subject)
        subject_raw = der[subject_start:subject_end]
        spki_raw = der[subject_end : subject_end + _tlv_size(tbs.spki)]
    else:  # times in other forms: rebuilt from the decoded elements
        subject_raw = schema.tlv_bytes(tbs.subject)
        spki_raw = schema.tlv_bytes(tbs.spki)
    x509_of = _x509_loader(der)

    c = object.__new__(Unfrozen)
    c.is_ca = c.path_length = c.key_usage = c.eku = c._san = c.name_constraints = None
    c.ski = c.aki = c.policies = c.policy_controls = None
    c.crl_urls = c.ocsp_urls = c.ca_issuer_urls = ()
    exts = tbs.extensions or ()
    oids = [_oid_text(e.extn_id) for e in exts]
    if len(set(oids)) != len(oids):
        # RFC 5280 §4.2: a certificate MUST NOT include more than one instance of an extension.
        raise _malformed("certificate could not be parsed: duplicate extension")
    critical = [oid for oid, e in zip(oids, exts, strict=True) if e.critical]
    try:
        if not _FAST_OIDS.issuperset(oids):
            raise LookupError
        for oid, e in zip(oids, exts, strict=True):
            _fast_extension(c, oid, e.extn_value)
    except Exception:  # noqa: BLE001 - LookupError, or a form this decoder refuses: cryptography decides
        # (and words the refusal, as it did when it read every extension).
        c.is_ca = c.path_length = c.key_usage = c.eku = c._san = c.ski = c.aki = c.policies = None
        c.crl_urls = c.ocsp_urls = c.ca_issuer_urls = ()
        oids, critical = _slow_extensions(c, x509_of())

    _check_name(subject_raw, "subject", x509_of)
    _check_name(issuer_raw, "issuer", x509_of)
    sig_oid = _signature_algorithm(alg_der, x509_of)
    sig_hash, sig_params = _signature_facts(x509_of, sig_oid)
    key, key_type, key_bits, curve = _key_of(spki_raw, x509_of)
    if key_type == "ec" and not _named_curve_spki(spki_raw, curve) and spki_raw != spki_der_of(key, der):
        # The SPKI is not the namedCurve encoding of its key, so the curve was spelled
        # out as explicit parameters (RFC 5480 §2.1.1 forbids them).
        curve = "explicit"
    try:
        not_before = tbs.validity.not_before.as_datetime()
        not_after = tbs.validity.not_after.as_datetime()
    except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        raise _malformed(f"certificate could not be parsed: {exc}") from None
    c.der = der
    c.sha256 = digest
    c.signature = sig_bytes
    c._x509 = UNSET  # not kept (see Certificate.x509): it would hold every decoded extension
    c.serial = tbs.serial
    c.version = 3 if version == 2 else 1
    c.not_before = not_before
    c.not_after = not_after
    c.extension_oids = _shared_set(oids)
    c.critical_oids = _shared_set(critical)
    c.public_key = key
    c.key_type = key_type
    c.key_bits = key_bits
    c.curve = curve
    c.signature_oid = sig_oid
    c.signature_hash = sig_hash
    c.signature_params = sig_params
    c._tbs_start = tbs_start
    c._tbs_end = tbs_end
    c._issuer_raw = issuer_raw
    c._subject_raw = subject_raw
    c._spki_raw = spki_raw
    c._spki_sha256 = None
    c._subject_text = None
    c._subject_key = UNSET
    c._issuer_key = UNSET
    c._self_issued = UNSET
    c.__class__ = Certificate  # type: ignore[assignment]  # frozen from here on
    return c


def _header_for(content: int) -> int:
    """Tag and length octets of a DER element with ``content`` octets (one-octet tag; X.690 §8.1.3)."""
    return 2 if content < 0x80 else 2 + (content.bit_length() + 7) // 8


def _header_of(total: int) -> int:
    """Tag and length octets of a DER element ``total`` octets long in all (one-octet tag)."""
    for head in (2, 3, 4, 5, 6):
        if _header_for(total - head) == head:
            return head
    raise ValueError("no DER length fits")


# Parsed certificates keyed by the DER itself: the dictionary's hash of the bytes
# is cheaper than SHA-256 and the lookup compares the whole DER, so a hit is
# always the same certificate.
PARSE_CACHE: BoundedLRU[bytes, Certificate] = BoundedLRU(PARSE_CACHE_SIZE)


def clear_parse_cache() -> None:
    """Forget every cached parsed certificate (tests, memory pressure)."""
    PARSE_CACHE.clear()


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
    cert = _build(der, hashlib.sha256(der).digest())
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
