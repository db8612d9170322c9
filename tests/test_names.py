"""DN normalisation for matching (RFC 5280 §7.1, RFC 4518)."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlscore.x509.names import name_key, normalize_value


def N(text: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(text)


def test_case_and_insignificant_space_do_not_matter() -> None:
    assert name_key(N("CN=Partner  CA,O=ACME")) == name_key(N("CN=partner ca,O=acme"))
    assert normalize_value("  Partner \t CA  ") == "partner ca"
    assert normalize_value("ＡＣＭＥ") == "acme"  # NFKC: full-width letters
    assert normalize_value("Stra\u00dfe") == normalize_value("STRASSE")  # case folding


def test_string_encodings_compare_equal() -> None:
    printable = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA", x509.name._ASN1Type.PrintableString)])
    utf8 = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca", x509.name._ASN1Type.UTF8String)])
    assert name_key(printable) == name_key(utf8)


def test_structure_matters() -> None:
    assert name_key(N("CN=A,O=B")) != name_key(N("O=B,CN=A"))  # RDN order
    assert name_key(N("CN=A")) != name_key(N("O=A"))  # attribute type
    assert name_key(N("CN=A")) != name_key(N("CN=A,O=B"))
    # Within a multi-valued RDN, order does not matter.
    assert name_key(N("CN=A+O=B")) == name_key(N("O=B+CN=A"))


def test_controls_are_mapped_away() -> None:
    assert normalize_value("a\u200bb") == "ab"  # zero-width space (Cf)
    assert normalize_value("a\u00a0b") == "a b"  # no-break space → space


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_normalisation_is_idempotent(value: str) -> None:
    once = normalize_value(value)
    assert normalize_value(once) == once
    assert normalize_value(value.upper()) == normalize_value(value.lower()) or not value.isascii()
