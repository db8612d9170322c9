"""Certificate extensions (RFC 5280 §4.2): the common ones decoded from their bytes with the
schemas of :mod:`.schema` (their facts shared by the leaves of one profile), the rest read by
``cryptography``; the OIDs' texts and the small sets certificates carry, one object per distinct value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Annotated, Any

from cryptography import x509 as cx509
from cryptography.hazmat import asn1
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from ..reasons import CertificateRejected, Reason
from . import schema
from ._der import header_for
from .certificate import PolicyControls

BC = ExtensionOID.BASIC_CONSTRAINTS.dotted_string
KU = ExtensionOID.KEY_USAGE.dotted_string
EKU = ExtensionOID.EXTENDED_KEY_USAGE.dotted_string
SAN = ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string
_NC = ExtensionOID.NAME_CONSTRAINTS.dotted_string
SKI = ExtensionOID.SUBJECT_KEY_IDENTIFIER.dotted_string
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
            if ext.extn_id.dotted_string == BC:
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
        return tuple((oid_text(m.issuer_domain_policy), oid_text(m.subject_domain_policy)) for m in value)
    # The extnValue contents are a SEQUENCE OF, which the decoder reads only as a
    # field: give it the one-field SEQUENCE around them.
    items = asn1.decode_der(_PolicyMappings, der_sequence(value.value)).mappings
    if not items:
        raise ValueError("policyMappings is empty (RFC 5280 §4.2.1.5: SIZE (1..MAX))")
    return tuple((oid_text(m.issuer_domain_policy), oid_text(m.subject_domain_policy)) for m in items)


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


# OIDs' dotted strings by the OID object (cryptography formats the string on every read),
# and the small sets certificates carry (their extension OIDs, their EKUs), one object
# per distinct set: thousands of client certificates of one profile share them.
_OID_TEXTS: dict[Any, str] = {}
_SETS: dict[tuple[str, ...], frozenset[str]] = {}
SHARED_MAX = 512  # distinct entries kept; past that, new ones are made per certificate


def oid_text(oid: Any) -> str:
    text = _OID_TEXTS.get(oid)
    if text is None:
        text = oid.dotted_string
        if len(_OID_TEXTS) < SHARED_MAX:
            _OID_TEXTS[oid] = text
    return text


def shared_set(items: list[str]) -> frozenset[str]:
    key = tuple(items)
    found = _SETS.get(key)
    if found is None:
        found = frozenset(key)
        if len(_SETS) < SHARED_MAX:
            _SETS[key] = found
    return found


# (extension OIDs, critical ones) → their two sets, for the profiles certificates come in.
_EXTENSION_SETS: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[frozenset[str], frozenset[str]]] = {}


def extension_sets(oids: list[str], critical: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    key = (tuple(oids), tuple(critical))
    found = _EXTENSION_SETS.get(key)
    if found is None:
        found = (shared_set(oids), shared_set(critical))
        if len(_EXTENSION_SETS) < SHARED_MAX:
            _EXTENSION_SETS[key] = found
    return found


def clear_shared() -> None:
    """Forget the facts shared across certificates: decoded extension values, OID texts and interned sets.

    They refill as certificates are read; only a first sight of a chain (the
    cold benchmark) or memory pressure calls for it.
    """
    SHARED_EXTENSIONS.clear()
    _OID_TEXTS.clear()
    _SETS.clear()
    _EXTENSION_SETS.clear()


def malformed(why: str) -> CertificateRejected:
    return CertificateRejected(Reason.MALFORMED, why)


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
FAST_OIDS = frozenset([BC, KU, EKU, SAN, SKI, _AKI, _CRLDP, _AIA, _POLICIES])
# The same by OID object (what the decoder gives), to their one dotted string.
FAST_OID_TEXTS: dict[cx509.ObjectIdentifier, str] = {cx509.ObjectIdentifier(o): o for o in FAST_OIDS}


# The facts of the extensions every leaf of one profile under one CA carries byte for byte
# (basicConstraints, keyUsage, EKU, authorityKeyIdentifier, CRL distribution points, AIA,
# certificate policies), by (OID, extnValue): thousands of client certificates decode each
# once. Bounded like _SETS; the values are immutable.
SHARED_EXTENSIONS: dict[tuple[str, bytes], Any] = {}
_SHARED_EXTENSION_OIDS = frozenset([BC, KU, EKU, _AKI, _CRLDP, _AIA, _POLICIES])
_CPS = cx509.ObjectIdentifier("1.3.6.1.5.5.7.2.1")  # id-qt-cps (RFC 5280 §4.2.1.4)


def shared_extension(oid: str, value: bytes) -> Any:
    """The decoded facts of a shared-kind extension; LookupError when a form is left to cryptography."""
    key = (oid, value)
    found = SHARED_EXTENSIONS.get(key)
    if found is not None:
        return found
    if oid == BC:
        bc = asn1.decode_der(schema.BasicConstraints, value)
        if bc.path_len is not None and (not bc.ca or bc.path_len < 0):
            raise LookupError  # cryptography refuses it, in its words (and _extensions_problem's)
        found = (bool(bc.ca), bc.path_len)
    elif oid == KU:
        found = _key_usage(value)
    elif oid == EKU:
        oids = asn1.decode_der(schema.Oids, schema.wrap(value)).oids
        if not oids:
            raise LookupError
        found = shared_set([oid_text(o) for o in oids])
    elif oid == _AKI:
        found = (asn1.decode_der(schema.AuthorityKeyId, value).key_id,)
    elif oid == _CRLDP:
        found = _crl_urls(value)
    elif oid == _AIA:
        found = _access_urls(value)
    else:  # _POLICIES
        found = _policies(value)
    if len(SHARED_EXTENSIONS) < SHARED_MAX:
        SHARED_EXTENSIONS[key] = found
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
            method = oid_text(d.method)
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
    return shared_set([oid_text(p.policy_identifier) for p in policies])


def san_names(value: bytes) -> list[Any]:
    """subjectAltName's GeneralNames as the schema decodes them (Certificate.san makes the objects when read)."""
    return _general_names(asn1.decode_der(schema.GeneralNames, schema.wrap(value)).names)


def san_and_ski(san: bytes, ski: bytes) -> tuple[list[Any], bytes]:
    """subjectAltName (as :func:`san_names`) and subjectKeyIdentifier, the two values every client
    certificate has of its own, in one decode."""
    both = asn1.decode_der(schema.NamesAndKeyId, schema.wrap(san + ski))
    key_id = both.key_id
    # The key identifier's OCTET STRING is exactly the SKI's value, so the names are exactly
    # the SAN's: no element of one was read as part of the other.
    if header_for(len(key_id)) + len(key_id) != len(ski):
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


def store_shared(c: Any, oid: str, facts: Any) -> None:
    """Store the facts of a shared-kind extension (:func:`shared_extension`) on the certificate being built."""
    if oid == BC:
        c.is_ca, c.path_length = facts
    elif oid == KU:
        c.key_usage = facts
    elif oid == EKU:
        c.eku = facts
    elif oid == _AKI:
        c.aki = facts[0]
    elif oid == _CRLDP:
        c.crl_urls = facts
    elif oid == _AIA:
        c.ocsp_urls, c.ca_issuer_urls = facts
    else:  # _POLICIES
        c.policies = facts


def fast_extension(c: Any, oid: str, value: bytes) -> None:
    """Store the facts of one extension of :data:`FAST_OIDS`; LookupError when a form is left to cryptography."""
    if oid in _SHARED_EXTENSION_OIDS:
        facts = shared_extension(oid, value)
        store_shared(c, oid, facts)
    elif oid == SAN:
        c._san = san_names(value)
    else:  # SKI
        c.ski = asn1.decode_der(bytes, value)


def slow_extensions(c: Any, x: cx509.Certificate) -> tuple[list[str], list[str]]:
    """Every extension read by ``cryptography`` (the rarer ones, or forms :func:`fast_extension` leaves to it)."""
    try:
        exts = x.extensions  # raises on duplicates / undecodable known extensions
    except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        why = _extensions_problem(x.tbs_certificate_bytes)
        raise malformed(why or f"certificate could not be parsed: {exc}") from None
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
            if oid == BC:
                c.is_ca = bool(value.ca)
                c.path_length = value.path_length
            elif oid == KU:
                c.key_usage = value
            elif oid == EKU:
                c.eku = shared_set([oid_text(o) for o in value])
            elif oid == SAN:
                c._san = tuple(value)
            elif oid == SKI:
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
                c.policies = shared_set([oid_text(p.policy_identifier) for p in value])
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
        raise malformed(f"certificate extension could not be parsed: {exc}") from None
    c.crl_urls = tuple(crl_urls)
    c.ocsp_urls = tuple(ocsp_urls)
    c.ca_issuer_urls = tuple(ca_issuer_urls)
    c.policy_controls = controls
    return oids, critical
