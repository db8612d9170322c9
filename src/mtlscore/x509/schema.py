"""The certificate's ASN.1 structures, for ``cryptography``'s declarative DER decoder.

RFC 5280 §4.1 (Certificate, TBSCertificate, Validity, Extension) and the
extensions a client leaf carries (§4.2.1.1 AKI, .2 SKI, .3 keyUsage, .6 SAN,
.9 basicConstraints, .12 EKU). The decoder (``cryptography.hazmat.asn1``,
Rust) enforces DER: definite minimal lengths, DEFAULT values not encoded,
minimal INTEGERs, zero padding bits where a BIT STRING is read, no trailing
data. Names and the SubjectPublicKeyInfo stay raw TLVs: names are compared by
their bytes, the key is loaded by ``cryptography`` from its bytes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from cryptography import x509 as cx509
from cryptography.hazmat import asn1

__all__ = [
    "AccessDescriptions",
    "AuthorityKeyId",
    "BasicConstraints",
    "CertificateSchema",
    "CommonCertificate",
    "CommonTBSCertificate",
    "DistributionPoints",
    "Extension",
    "GeneralNames",
    "NamesAndKeyId",
    "NameSchema",
    "Oids",
    "Policies",
    "SubjectPublicKeyInfo",
    "TBSCertificate",
    "Validity",
    "tlv_bytes",
    "wrap",
]


@asn1.sequence
class Validity:
    """RFC 5280 §4.1.2.5."""

    not_before: asn1.UTCTime | asn1.GeneralizedTime
    not_after: asn1.UTCTime | asn1.GeneralizedTime


@asn1.sequence
class Extension:
    """RFC 5280 §4.1.2.9 (critical DEFAULT FALSE: an encoded FALSE is not DER and is refused)."""

    extn_id: cx509.ObjectIdentifier
    critical: Annotated[bool, asn1.Default(False)]
    extn_value: bytes


@asn1.sequence
class TBSCertificate:
    """RFC 5280 §4.1.2 (version DEFAULT v1; the unique identifiers are read and ignored, as cryptography does)."""

    version: Annotated[int, asn1.Explicit(0), asn1.Default(0)]
    serial: int
    signature: asn1.TLV
    issuer: asn1.TLV
    validity: Validity
    subject: asn1.TLV
    spki: asn1.TLV
    issuer_uid: Annotated[asn1.BitString | None, asn1.Implicit(1)]
    subject_uid: Annotated[asn1.BitString | None, asn1.Implicit(2)]
    extensions: Annotated[list[Extension] | None, asn1.Explicit(3)]


@asn1.sequence
class CertificateSchema:
    """RFC 5280 §4.1.1: the TBS stays a TLV (its bytes are what the signature covers)."""

    tbs: asn1.TLV
    signature_algorithm: asn1.TLV
    signature: asn1.BitString


@asn1.sequence
class SubjectPublicKeyInfo:
    """RFC 5280 §4.1.2.7, enough to tell it from a bare PKCS #1 RSAPublicKey (RFC 8017 §A.1.1).

    ``load_der_public_key`` also accepts the latter, which a certificate's
    subjectPublicKeyInfo must not be; the algorithm's parameters are checked
    by ``load_der_public_key`` itself.
    """

    algorithm: asn1.TLV
    subject_public_key: asn1.BitString


@asn1.sequence
class AlgorithmOid:
    """An AlgorithmIdentifier without parameters (ECDSA, EdDSA: RFC 5758 §3.2, RFC 8410 §3)."""

    algorithm: cx509.ObjectIdentifier


@asn1.sequence
class AlgorithmNull:
    """An AlgorithmIdentifier with NULL parameters (PKCS #1 v1.5: RFC 4055 §5)."""

    algorithm: cx509.ObjectIdentifier
    parameters: asn1.Null


@asn1.sequence
class AttributeTypeAndValue:
    """An attribute of a name whose value is one of the string types certificates use.

    The decoder checks each as ``cryptography`` does: PrintableString's
    character set (X.680 §41.4), UTF8String's UTF-8, IA5String's 7 bits. A value
    of any other type makes the decode fail, and ``cryptography`` reads the name.
    """

    type: cx509.ObjectIdentifier
    value: asn1.PrintableString | str | asn1.IA5String


# The RDNSequence of a name (RFC 5280 §4.1.2.4; X.501: an RDN is a SET SIZE (1..MAX)).
RDNSequence = list[Annotated[asn1.SetOf[AttributeTypeAndValue], asn1.Size(1, None)]]


@asn1.sequence
class NameSchema:
    """An RDNSequence (RFC 5280 §4.1.2.4), read as the one field of a wrapping SEQUENCE.

    X.501: a RelativeDistinguishedName is a SET SIZE (1..MAX): an empty one is refused.
    """

    rdns: RDNSequence


@asn1.sequence
class CommonTBSCertificate:
    """TBSCertificate in the shape client certificates and their CAs have, read in the same pass as the certificate.

    Differs from :class:`TBSCertificate` in what it refuses: unique identifiers
    (absent from RFC 5280 profiles, §4.1.2.8), a subject with a string type
    other than :class:`AttributeTypeAndValue`'s, and a subjectPublicKeyInfo
    that is not an AlgorithmIdentifier and a BIT STRING (§4.1.2.7). What it
    refuses is read again with :class:`TBSCertificate`, which decides.
    """

    version: Annotated[int, asn1.Explicit(0), asn1.Default(0)]
    serial: int
    signature: asn1.TLV
    issuer: asn1.TLV
    validity: Validity
    subject: RDNSequence
    spki: SubjectPublicKeyInfo
    extensions: Annotated[list[Extension] | None, asn1.Explicit(3)]


@asn1.sequence
class CommonCertificate:
    """RFC 5280 §4.1.1 with :class:`CommonTBSCertificate`: a certificate in one decode."""

    tbs: CommonTBSCertificate
    signature_algorithm: asn1.TLV
    signature: asn1.BitString


@asn1.sequence
class BasicConstraints:
    """RFC 5280 §4.2.1.9."""

    ca: Annotated[bool, asn1.Default(False)]
    path_len: int | None = None


@asn1.sequence
class AuthorityKeyId:
    """RFC 5280 §4.2.1.1 with only keyIdentifier (the form CAs issue; anything else is read by cryptography)."""

    key_id: Annotated[bytes | None, asn1.Implicit(0)]


@asn1.sequence
class Oids:
    """A SEQUENCE OF OBJECT IDENTIFIER (EKU, RFC 5280 §4.2.1.12), read as the one field of a wrapping SEQUENCE."""

    oids: list[cx509.ObjectIdentifier]


# GeneralName (RFC 5280 §4.2.1.6) in the forms a client's SAN uses; any other form
# makes the decode fail and cryptography reads the extension instead.
GeneralName = (
    Annotated[asn1.Variant[asn1.IA5String, Literal["rfc822"]], asn1.Implicit(1)]
    | Annotated[asn1.Variant[asn1.IA5String, Literal["dns"]], asn1.Implicit(2)]
    | Annotated[asn1.Variant[asn1.IA5String, Literal["uri"]], asn1.Implicit(6)]
    | Annotated[asn1.Variant[bytes, Literal["ip"]], asn1.Implicit(7)]
)


@asn1.sequence
class GeneralNames:
    """GeneralNames, read as the one field of a wrapping SEQUENCE."""

    names: list[GeneralName]


@asn1.sequence
class NamesAndKeyId:
    """A subjectAltName's GeneralNames then a subjectKeyIdentifier's KeyIdentifier (RFC 5280 §4.2.1.6, §4.2.1.2),
    read as the fields of a wrapping SEQUENCE: the two values one client certificate has of its own, in one decode."""

    names: list[GeneralName]
    key_id: bytes


@asn1.sequence
class OneGeneralName:
    """A GeneralNames of exactly one name, as the contents of a tagged SEQUENCE OF (see DistributionPoint)."""

    name: GeneralName


@asn1.set
class OneAttribute:
    """A RelativeDistinguishedName of one attribute (see DistributionPoint)."""

    attribute: AttributeTypeAndValue


# RFC 5280 §4.2.1.13 DistributionPointName, in the forms read here: a fullName of one
# GeneralName (the usual one URI); a relative name is read only to be left to cryptography.
DistributionPointName = (
    Annotated[asn1.Variant[OneGeneralName, Literal["full"]], asn1.Implicit(0)]
    | Annotated[asn1.Variant[OneAttribute, Literal["relative"]], asn1.Implicit(1)]
)


@asn1.sequence
class DistributionPoint:
    """RFC 5280 §4.2.1.13 with a distributionPoint only (reasons and cRLIssuer are read by cryptography)."""

    name: Annotated[DistributionPointName, asn1.Explicit(0)]


@asn1.sequence
class DistributionPoints:
    """CRLDistributionPoints (RFC 5280 §4.2.1.13), read as the one field of a wrapping SEQUENCE."""

    points: list[DistributionPoint]


@asn1.sequence
class AccessDescription:
    """RFC 5280 §4.2.2.1."""

    method: cx509.ObjectIdentifier
    location: GeneralName


@asn1.sequence
class AccessDescriptions:
    """AuthorityInfoAccessSyntax (RFC 5280 §4.2.2.1), read as the one field of a wrapping SEQUENCE."""

    descriptions: list[AccessDescription]


@asn1.sequence
class PolicyQualifier:
    """A PolicyQualifierInfo whose qualifier is an IA5String: the CPS pointer (RFC 5280 §4.2.1.4).

    A user notice (a SEQUENCE) makes the decode fail, and cryptography reads the extension.
    """

    qualifier_id: cx509.ObjectIdentifier
    qualifier: asn1.IA5String


@asn1.sequence
class PolicyInformation:
    """RFC 5280 §4.2.1.4."""

    policy_identifier: cx509.ObjectIdentifier
    qualifiers: list[PolicyQualifier] | None = None


@asn1.sequence
class Policies:
    """certificatePolicies (RFC 5280 §4.2.1.4), read as the one field of a wrapping SEQUENCE."""

    policies: list[PolicyInformation]


def wrap(content: bytes) -> bytes:
    """``content`` as the contents of a DER SEQUENCE (X.690 §8.1.3): the decoder reads SEQUENCE OF only as a field."""
    n = len(content)
    if n < 0x80:
        return bytes([0x30, n]) + content
    size = (n.bit_length() + 7) // 8
    return bytes([0x30, 0x80 | size]) + n.to_bytes(size, "big") + content


def tlv_bytes(tlv: asn1.TLV) -> bytes:
    """The whole element (tag, length, contents) of a decoded TLV, as transmitted.

    The decoder accepts only DER, where the length has exactly one encoding
    (X.690 §10.1), so re-writing it gives the transmitted bytes.
    """
    data = tlv.data
    n = len(data)
    if n < 0x80:
        head = bytes([n])
    else:
        size = (n.bit_length() + 7) // 8
        head = bytes([0x80 | size]) + n.to_bytes(size, "big")
    return bytes(tlv.tag_bytes) + head + bytes(data)
