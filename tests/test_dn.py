"""RFC 4514 parsing/printing of DNs and RFC 5280 §7.1 / RFC 4518 comparison."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlscore.reasons import ConfigError
from mtlscore.x509.dn import dn_equal, dn_key_text, format_dn, parse_dn
from mtlscore.x509.names import name_key, normalize_value


def attrs(name: x509.Name) -> list[list[tuple[str, str]]]:
    return [[(a.oid.dotted_string, a.value) for a in rdn] for rdn in name.rdns]


def test_parse_order_is_rfc4514_most_specific_first() -> None:
    name = parse_dn("CN=client,OU=Risk,O=PartnerABC,C=DE")
    # ASN.1 order is the reverse of the string order (RFC 4514 §2.1).
    assert [rdn[0][1] for rdn in attrs(name)] == ["DE", "PartnerABC", "Risk", "client"]
    assert format_dn(name) == "CN=client,OU=Risk,O=PartnerABC,C=DE"


def test_parse_accepts_what_operators_paste() -> None:
    a = parse_dn("CN = client , ou=Risk; o=PartnerABC")
    assert format_dn(a) == "CN=client,OU=Risk,O=PartnerABC"
    b = parse_dn('CN="Smith, John",emailAddress=j@example.com,serialNumber=42')
    assert format_dn(b) == r"CN=Smith\, John,emailAddress=j@example.com,serialNumber=42"
    assert parse_dn("E=j@example.com") == parse_dn("emailAddress=j@example.com")


def test_multivalued_rdn_kept() -> None:
    name = parse_dn("CN=a+UID=7,O=b")
    assert len(name.rdns) == 2
    assert {a.oid for a in name.rdns[1]} == {NameOID.COMMON_NAME, NameOID.USER_ID}
    assert dn_equal("UID=7+CN=a,O=b", name)  # an RDN is a set


def test_escapes_and_hex() -> None:
    assert parse_dn(r"CN=a\,b\+c\"d\\e").rdns[0]._attributes[0].value == 'a,b+c"d\\e'
    assert parse_dn(r"CN=\C3\A9t\C3\A9").rdns[0]._attributes[0].value == "été"
    assert parse_dn("CN=#0c03616263").rdns[0]._attributes[0].value == "abc"  # UTF8String "abc"
    assert parse_dn(r"CN=\ padded\ ").rdns[0]._attributes[0].value == " padded "
    assert parse_dn("1.2.3.4=x").rdns[0]._attributes[0].oid.dotted_string == "1.2.3.4"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("CN", "expected TYPE=value"),
        ("=x", "missing attribute type"),
        ("FOO=bar", "unknown attribute type"),
        ("CN=a,", "ends with a separator"),
        ("CN=a,,O=b", "expected TYPE=value"),
        ("CN=", "empty value"),
        ("CN=a\\", "lone backslash"),
        ("CN=a\\q", "not a valid escape"),
        ("CN=a<b", "must be escaped"),
        ('CN="abc', "unterminated"),
        ("CN=#zz", "not hexadecimal"),
        ("CN=#0201ff", "not a short DER string"),
        ("C=DEU", "C="),
        ("CN=\\ff", "not valid UTF-8"),
    ],
)
def test_bad_dn_is_a_config_error_naming_the_key(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_dn(text, key="accounts[0].match.subject_dn")
    assert info.value.key == "accounts[0].match.subject_dn"
    assert fragment in str(info.value)


def test_non_string_is_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_dn(42, key="k")  # type: ignore[arg-type]


def test_comparison_rfc4518() -> None:
    assert dn_equal("CN=Partner  ABC,O=X", "cn=partner abc, o=x")
    assert dn_equal("CN= Partner ABC ", "CN=partner abc")
    assert not dn_equal("CN=partner-abc,O=X", "CN=partner-abd,O=X")
    assert not dn_equal("CN=a,O=b", "O=b,CN=a")  # RDN order matters
    assert not dn_equal("CN=a+O=b", "CN=a,O=b")  # multi-valued RDN ≠ two RDNs


def test_printable_and_utf8_strings_compare_alike() -> None:
    printable = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Client One", x509.name._ASN1Type.PrintableString)])
    utf8 = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client one", x509.name._ASN1Type.UTF8String)])
    assert dn_equal(printable, utf8)
    assert dn_key_text(name_key(printable)) == dn_key_text(name_key(parse_dn("CN=CLIENT  ONE")))


# -- properties ----------------------------------------------------------------

_OIDS = [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
         NameOID.DOMAIN_COMPONENT, NameOID.SERIAL_NUMBER, NameOID.EMAIL_ADDRESS, NameOID.USER_ID,
         NameOID.LOCALITY_NAME, NameOID.TITLE]
_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1, max_size=20,
)
_attr = st.builds(lambda oid, v: x509.NameAttribute(oid, v), st.sampled_from(_OIDS), _values)
_rdn = st.lists(_attr, min_size=1, max_size=3, unique_by=lambda a: a.oid).map(x509.RelativeDistinguishedName)
_names = st.lists(_rdn, min_size=1, max_size=5).map(x509.Name)


@settings(max_examples=200, deadline=None)
@given(_names)
def test_name_format_parse_round_trip(name: x509.Name) -> None:
    text = format_dn(name)
    parsed = parse_dn(text)
    assert attrs(parsed) == attrs(name) or name_key(parsed) == name_key(name)
    assert name_key(parsed) == name_key(name)
    # string → parse → string is the identity on printed DNs
    assert format_dn(parsed) == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_normalisation_idempotent(value: str) -> None:
    once = normalize_value(value)
    assert normalize_value(once) == once


@settings(max_examples=100, deadline=None)
@given(_names)
def test_key_text_is_canonical(name: x509.Name) -> None:
    # Equal keys give equal texts; the text survives a re-parse of the printed DN.
    assert dn_key_text(name_key(parse_dn(format_dn(name)))) == dn_key_text(name_key(name))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_parser_never_raises_anything_but_config_error(text: str) -> None:
    try:
        parse_dn(text)
    except ConfigError:
        pass
