"""The matching key of a name read from its DER (:func:`name_key_of_der`) is :func:`name_key` of cryptography's Name.

Differential: for the test PKI's names, x509-limbo's certificates and generated
names (multi-valued RDNs, every string type, Unicode, case and space variants,
empty values), the key from the declarative decoder equals the key of the Name
``cryptography`` loads from the same certificate, or the decoder declines and
the certificate's key is cryptography's (the same key, or the same refusal).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from conformance import limbo
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlscore import CertificateRejected, Reason, pki
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.certificate import NAME_KEYS
from mtlscore.x509.names import NameKey, name_key, name_key_of_der

_KEY = ed25519.Ed25519PrivateKey.generate()
_AT = pki.NOW


def _certificate(subject: x509.Name, issuer: x509.Name) -> bytes:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(_KEY.public_key())
        .serial_number(7)
        .not_valid_before(_AT)
        .not_valid_after(_AT + timedelta(days=1))
    )
    return builder.sign(_KEY, None).public_bytes(Encoding.DER)


def _outcome(read: object) -> tuple[str, object]:
    """What reading a key gives: the key, or the reason it was refused with."""
    try:
        return ("key", read() if callable(read) else read)
    except CertificateRejected as exc:
        return ("refused", exc.reason)
    except ValueError:
        return ("refused", Reason.MALFORMED)


def _agrees(der: bytes) -> int:
    """Check one certificate's subject and issuer keys; the number of names the decoder read itself."""
    crypto = x509.load_der_x509_certificate(der)
    try:
        cert = parse_certificate(der, remember=False)
    except CertificateRejected:
        return 0  # refused before any key is asked for: nothing to compare
    read = 0
    for raw, crypto_name, ours in (
        (cert._subject_raw, lambda: crypto.subject, lambda: cert.subject_key),
        (cert._issuer_raw, lambda: crypto.issuer, lambda: cert.issuer_key),
    ):
        expected = _outcome(lambda n=crypto_name: name_key(n()))  # type: ignore[misc]
        assert raw is not None
        direct = name_key_of_der(raw)
        if direct is not None:
            read += 1
            assert ("key", direct) == expected, der.hex()
        NAME_KEYS.clear()  # the certificate's own route, not a key stored from another name's bytes
        assert _outcome(ours) == expected, der.hex()
    return read


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_limbo_names_have_cryptographys_keys() -> None:
    certs = limbo.certificates()
    read = sum(_agrees(der) for der in certs)
    # Most of limbo's names are in the decoder's string types: the new route is what is compared.
    assert len(certs) > 500 and read > len(certs), (len(certs), read)


_PKI_NAMES = [
    "CN=Test Root CA",
    "CN=client.example,O=Partner,C=DE",
    "CN=Partner  Issuing CA,OU=Ops,O=ACME Corp,L=Berlin,ST=Berlin,C=DE",
    "CN=svc+UID=42,O=ACME",
    "1.2.840.113549.1.9.1=a@example.org,CN=mail",
    "DC=example,DC=org,CN=dc",
    "CN=Ünïcödé Straße,O=ＡＣＭＥ",
    "2.5.4.5=0042,CN=serial",
]


@pytest.mark.parametrize("name", _PKI_NAMES)
def test_the_test_pki_names_have_cryptographys_keys(name: str) -> None:
    root = pki.root("CN=Shape Root,O=" + name.split(",")[-1].split("=")[-1])
    leaf = pki.make(name, issuer=root)
    inter = pki.make(name, issuer=root, ca=True)
    assert _agrees(root.der) == 2
    assert _agrees(leaf.der) == 2
    assert _agrees(inter.der) == 2


_OIDS = [
    NameOID.COMMON_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.LOCALITY_NAME,
    NameOID.EMAIL_ADDRESS,
    NameOID.DOMAIN_COMPONENT,
    NameOID.SERIAL_NUMBER,
    x509.ObjectIdentifier("1.3.6.1.4.1.55555.7"),
]
_PRINTABLE = "ABCabc019 '()+,-./:=?"
_PIECES = ["Acme", "ACME", "acme", " ", "  ", "\t", "Straße", "ＡＣＭＥ", "Ünï", "\u00a0", "\u200b", "ß", "İ", "ﬁ", "x"]


def _value(kind: _ASN1Type) -> st.SearchStrategy[str]:
    if kind is _ASN1Type.PrintableString:
        return st.text(_PRINTABLE, max_size=12)
    if kind in (_ASN1Type.IA5String, _ASN1Type.VisibleString, _ASN1Type.T61String):
        return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
    chars = st.characters(exclude_categories=("Cs",), max_codepoint=0xFFFF if kind is _ASN1Type.BMPString else None)
    pieces = st.lists(st.sampled_from(_PIECES) | st.text(chars, max_size=4), max_size=5)
    return pieces.map("".join)


_KINDS = [
    _ASN1Type.UTF8String,
    _ASN1Type.PrintableString,
    _ASN1Type.IA5String,
    _ASN1Type.BMPString,
    _ASN1Type.UniversalString,
    _ASN1Type.T61String,
    _ASN1Type.VisibleString,
]


@st.composite
def _attribute(draw: st.DrawFn) -> x509.NameAttribute:
    if draw(st.integers(0, 19)) == 0:
        return x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, draw(st.binary(max_size=4)), _ASN1Type.BitString)
    kind = draw(st.sampled_from(_KINDS))
    return x509.NameAttribute(draw(st.sampled_from(_OIDS)), draw(_value(kind)), kind, _validate=False)


@st.composite
def _name(draw: st.DrawFn) -> x509.Name:
    rdns = []
    for _ in range(draw(st.integers(0, 4))):
        attrs = draw(st.lists(_attribute(), min_size=1, max_size=3, unique_by=lambda a: (a.oid, a.value)))
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


@pytest.mark.filterwarnings("ignore:Attribute's length must be")
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_name(), _name())
def test_generated_names_have_cryptographys_keys(subject: x509.Name, issuer: x509.Name) -> None:
    _agrees(_certificate(subject, issuer))


def _one_string_type(kind: _ASN1Type, value: str) -> NameKey | None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value, kind)])
    der = _certificate(name, name)
    assert _agrees(der) in (0, 2)
    return name_key_of_der(parse_certificate(der, remember=False)._subject_raw or b"")


def test_the_decoder_reads_its_three_string_types_and_declines_the_others() -> None:
    for kind in (_ASN1Type.PrintableString, _ASN1Type.UTF8String, _ASN1Type.IA5String):
        assert _one_string_type(kind, "  Partner   CA ") == (frozenset({(NameOID.COMMON_NAME.dotted_string, "partner ca")}),)
    for kind in (_ASN1Type.BMPString, _ASN1Type.UniversalString, _ASN1Type.T61String, _ASN1Type.VisibleString):
        assert _one_string_type(kind, "Partner CA") is None


def test_a_repeated_attribute_in_an_rdn_is_cryptographys_to_refuse() -> None:
    # X.501: cryptography refuses an RDN holding the same attribute twice; DER's SET OF order
    # allows equal elements, so the decoder reads it and the key must not quietly drop one.
    rdn = x509.RelativeDistinguishedName([
        x509.NameAttribute(NameOID.COMMON_NAME, "dupa", _ASN1Type.UTF8String),
        x509.NameAttribute(NameOID.COMMON_NAME, "dupb", _ASN1Type.UTF8String),
    ])
    der = _certificate(x509.Name([rdn]), x509.Name.from_rfc4514_string("CN=issuer"))
    assert der.count(b"dupb") == 1
    der = der.replace(b"dupb", b"dupa")
    raw = parse_certificate(der, remember=False)._subject_raw
    assert raw is not None and name_key_of_der(raw) is None
    assert _agrees(der) == 1  # the issuer only
    with pytest.raises(ValueError):
        name_key(x509.load_der_x509_certificate(der).subject)
