"""Distinguished-name normalisation for matching (RFC 5280 §7.1, RFC 4518).

Chain building compares an issuer name with candidate subjects, and identity
rules compare configured DNs with certificate DNs. Both use :func:`name_key`:
a hashable form in which string values are case-folded, Unicode-normalised
(NFKC) and have insignificant whitespace removed, so that PrintableString and
UTF8String encodings of the same text compare equal.
"""

from __future__ import annotations

import unicodedata

from cryptography import x509
from cryptography.hazmat import asn1

from . import schema

__all__ = ["NameKey", "name_key", "name_key_of_der", "normalize_value"]

# One RDN is a set of (attribute OID, normalised value); a name is their sequence.
NameKey = tuple[frozenset[tuple[str, str | bytes]], ...]


def normalize_value(value: str) -> str:
    """RFC 4518 §2: map, normalise (NFKC), case-fold, squeeze insignificant space."""
    if value.isascii() and value.isprintable():
        # Printable ASCII (nearly every DN value) maps to itself, is its own NFKC form
        # and case-folds to lower case: the same result without the per-character walk.
        return " ".join(value.lower().split())
    # §2.2 map: drop controls/format characters that carry no meaning for matching.
    mapped = "".join(
        " " if ch in "\t\n\v\f\r\x85\u00a0" or unicodedata.category(ch) == "Zs" else ch
        for ch in value
        if unicodedata.category(ch) not in ("Cc", "Cf") or ch in "\t\n\v\f\r\x85"
    )
    folded = unicodedata.normalize("NFKC", mapped).casefold()
    # §2.6.1 insignificant space handling: leading/trailing removed, runs become one.
    return " ".join(folded.split())


def name_key(name: x509.Name) -> NameKey:
    """The matching key of a DN: equal keys mean RFC 5280 §7.1 equal names."""
    rdns = []
    for rdn in name.rdns:
        attrs: set[tuple[str, str | bytes]] = set()
        for attr in rdn:
            value = attr.value
            if isinstance(value, bytes):
                attrs.add((attr.oid.dotted_string, value))
            else:
                attrs.add((attr.oid.dotted_string, normalize_value(value)))
        rdns.append(frozenset(attrs))
    return tuple(rdns)


def name_key_of_der(raw: bytes) -> NameKey | None:
    """:func:`name_key` of the Name whose DER is ``raw``, read with the declarative decoder.

    None when :class:`schema.NameSchema` does not read it (a string type other
    than PrintableString, UTF8String or IA5String, an empty RDN, anything it
    refuses), or when an RDN repeats an attribute: the caller then reads the
    name with ``cryptography``, which decides (it refuses a repeated
    attribute, X.501 §9.3, and decodes the other string types), so the key is
    the one :func:`name_key` gives for the same bytes.
    """
    try:
        rdns = asn1.decode_der(schema.NameSchema, schema.wrap(raw)).rdns
    except ValueError:
        return None
    key: list[frozenset[tuple[str, str | bytes]]] = []
    for rdn_set in rdns:
        rdn = rdn_set.as_list()
        attrs: set[tuple[str, str | bytes]] = set()
        for attr in rdn:
            value = attr.value
            # PrintableString and IA5String come as the decoder's objects, UTF8String as str.
            text = value if isinstance(value, str) else value.as_str()
            attrs.add((attr.type.dotted_string, normalize_value(text)))
        if len(attrs) != len(rdn):
            return None
        key.append(frozenset(attrs))
    return tuple(key)
