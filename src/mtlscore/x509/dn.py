"""Distinguished names written by people: RFC 4514 parsing, printing and comparison.

Configured DNs (``subject_dn = "CN=partner-abc,OU=Risk,O=PartnerABC"``) are
parsed here into :class:`cryptography.x509.Name` and compared with certificate
names by :func:`mtlscore.x509.names.name_key` (RFC 5280 §7.1 with the RFC 4518
string preparation: case-folding, insignificant whitespace, and
PrintableString/UTF8String treated alike).

The parser is ours rather than ``x509.Name.from_rfc4514_string`` because
operators paste DNs the way OpenSSL and Java print them (``CN = a, O = b``,
lower-case type names, ``emailAddress``/``serialNumber``), and a bad DN must
produce a :class:`ConfigError` that says what is wrong and where.
"""

from __future__ import annotations

import functools
import json
import re

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from ..reasons import ConfigError
from .names import NameKey, name_key

__all__ = [
    "ATTRIBUTE_NAMES",
    "attribute_name",
    "attribute_oid",
    "dn_equal",
    "dn_key_text",
    "format_dn",
    "parse_dn",
]

# Canonical short names, printed and accepted. RFC 4514 §3 lists CN, L, ST, O,
# OU, C, STREET, DC, UID; the rest are the names OpenSSL and RFC 4519 use.
ATTRIBUTE_NAMES: dict[str, ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "title": NameOID.TITLE,
    "SN": NameOID.SURNAME,
    "GN": NameOID.GIVEN_NAME,
    "initials": NameOID.INITIALS,
    "generationQualifier": NameOID.GENERATION_QUALIFIER,
    "dnQualifier": NameOID.DN_QUALIFIER,
    "pseudonym": NameOID.PSEUDONYM,
    "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
    "businessCategory": NameOID.BUSINESS_CATEGORY,
    "postalCode": NameOID.POSTAL_CODE,
    "jurisdictionC": NameOID.JURISDICTION_COUNTRY_NAME,
    "jurisdictionST": NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME,
    "jurisdictionL": NameOID.JURISDICTION_LOCALITY_NAME,
}
_ALIASES = {"S": "ST", "E": "emailAddress", "EMAIL": "emailAddress", "GIVENNAME": "GN",
            "SURNAME": "SN", "USERID": "UID", "COMMONNAME": "CN"}
_BY_UPPER = {k.upper(): v for k, v in ATTRIBUTE_NAMES.items()}
_BY_UPPER.update({alias: ATTRIBUTE_NAMES[name] for alias, name in _ALIASES.items()})
_NAME_OF = {oid.dotted_string: name for name, oid in ATTRIBUTE_NAMES.items()}
_PRINT_NAMES = {oid: name for name, oid in ATTRIBUTE_NAMES.items()}

# RFC 4514 §2.4: characters escaped anywhere in a value.
_SPECIAL = '"+,;<>\\'
# DER string tags a ``#hex`` value may carry (RFC 4514 §2.4 "BER encoding").
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


def attribute_oid(name: str) -> ObjectIdentifier | None:
    """The OID of an attribute type name (case-insensitive) or dotted OID; None if unknown."""
    if name and name[0].isdigit():
        parts = name.split(".")
        if len(parts) >= 2 and all(p.isdigit() and (p == "0" or p[0] != "0") for p in parts):
            try:
                return ObjectIdentifier(name)
            except ValueError:  # X.660: first arc 0-2, second arc < 40 under 0 and 1
                return None
        return None
    return _BY_UPPER.get(name.upper())


def attribute_name(oid: ObjectIdentifier | str) -> str:
    """The short name printed for an attribute type (the dotted OID when it has none)."""
    dotted = oid if isinstance(oid, str) else oid.dotted_string
    return _NAME_OF.get(dotted, dotted)


def _decode_hex_value(hexpart: str, where: str, key: str | None) -> str:
    # RFC 4514 §2.4: '#' + hex of the BER encoding. Only a DER string type with a
    # short length is meaningful for matching a configured name.
    try:
        raw = bytes.fromhex(hexpart)
    except ValueError:
        raise ConfigError(f"{where}: '#' value is not hexadecimal", key=key) from None
    if len(raw) < 2 or raw[0] not in _STRING_TAGS or raw[1] != len(raw) - 2:
        raise ConfigError(f"{where}: '#' value is not a short DER string", key=key)
    try:
        return raw[2:].decode(_STRING_TAGS[raw[0]])
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: '#' value does not decode as its string type", key=key) from None


def _parse_value(text: str, i: int, where: str, key: str | None) -> tuple[str, int]:
    """Parse one attribute value starting at ``i``; return it and the index after it."""
    n = len(text)
    if i < n and text[i] == "#":
        j = i + 1
        while j < n and text[j] not in ",+;" and not text[j].isspace():
            j += 1
        return _decode_hex_value(text[i + 1 : j], where, key), j
    if i < n and text[i] == '"':
        # RFC 1779 quoted value; RFC 4514 §4 allows accepting it.
        out = []
        j = i + 1
        while j < n and text[j] != '"':
            if text[j] == "\\" and j + 1 < n:
                j += 1
            out.append(text[j])
            j += 1
        if j >= n:
            raise ConfigError(f"{where}: unterminated quoted value", key=key)
        return "".join(out), j + 1
    buf = bytearray()
    escaped_upto = 0  # length of buf that ends with an escaped character (kept on strip)
    j = i
    while j < n:
        ch = text[j]
        if ch in ",+;":
            break
        if ch == "\\":
            if j + 1 >= n:
                raise ConfigError(f"{where}: the value ends with a lone backslash", key=key)
            nxt = text[j + 1]
            pair = text[j + 1 : j + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                buf.append(int(pair, 16))  # RFC 4514 §2.4 hexpair: one UTF-8 octet
                j += 3
            elif nxt in _SPECIAL + " #=":
                buf += nxt.encode()
                j += 2
            else:
                raise ConfigError(f"{where}: '\\{nxt}' is not a valid escape", key=key)
            escaped_upto = len(buf)
            continue
        if ch in '"<>':
            raise ConfigError(f"{where}: '{ch}' must be escaped in a value", key=key)
        buf += ch.encode()
        j += 1
    # Unescaped trailing spaces are separator padding (RFC 4514 §4 leniency).
    end = len(buf)
    while end > escaped_upto and buf[end - 1 : end] == b" ":
        end -= 1
    try:
        return bytes(buf[:end]).decode("utf-8"), j
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: escaped octets are not valid UTF-8", key=key) from None


def _parse(text: str, key: str | None) -> list[list[tuple[ObjectIdentifier, str]]]:
    rdns: list[list[tuple[ObjectIdentifier, str]]] = []
    current: list[tuple[ObjectIdentifier, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] == " ":
            i += 1
        start = i
        while i < n and text[i] not in "=,+;":
            i += 1
        type_name = text[start:i].strip()
        where = f"attribute {len(rdns) + 1}" + (f" ({type_name})" if type_name else "")
        if i >= n or text[i] != "=":
            raise ConfigError(f"{where}: expected TYPE=value in DN {text!r}", key=key)
        if not type_name:
            raise ConfigError(f"{where}: missing attribute type before '='", key=key)
        oid = attribute_oid(type_name)
        if oid is None:
            raise ConfigError(
                f"{where}: unknown attribute type {type_name!r} "
                f"(use CN, O, OU, C, L, ST, DC, UID, serialNumber, emailAddress, … or a dotted OID)",
                key=key,
            )
        i += 1
        while i < n and text[i] == " ":
            i += 1
        value, i = _parse_value(text, i, where, key)
        while i < n and text[i] == " ":
            i += 1
        current.append((oid, value))
        if i >= n:
            rdns.append(current)
            return rdns
        sep = text[i]
        i += 1
        if sep in ",;":  # ';' is the RFC 1779 separator, still common
            rdns.append(current)
            current = []
        if i >= n:
            raise ConfigError(f"DN {text!r} ends with a separator", key=key)


def parse_dn(text: str, *, key: str | None = None) -> x509.Name:
    """Parse an RFC 4514 DN string (most specific RDN first, as printed) into a Name.

    Accepts spaces around separators, ``;`` separators, quoted values and
    case-insensitive type names. Raises :class:`ConfigError` (with ``key``) on
    anything it cannot read, naming the attribute and the problem.
    """
    if not isinstance(text, str):
        raise ConfigError(f"a DN must be a string, not {type(text).__name__}", key=key)
    if not text.strip():
        raise ConfigError("the DN is empty", key=key)
    rdns = []
    for parsed_rdn in _parse(text, key):
        attrs = []
        for oid, value in parsed_rdn:
            if not value:
                raise ConfigError(f"{attribute_name(oid)} has an empty value", key=key)
            try:
                attrs.append(x509.NameAttribute(oid, value))
            except ValueError as exc:
                raise ConfigError(f"{attribute_name(oid)}={value!r}: {exc}", key=key) from None
        try:
            rdns.append(x509.RelativeDistinguishedName(attrs))
        except ValueError as exc:  # e.g. "CN=a+CN=a": an RDN is a set (X.501), no duplicates
            raise ConfigError(f"bad multi-valued RDN in DN {text!r}: {exc}", key=key) from None
    # RFC 4514 §2.1: the string lists RDNs last-to-first.
    return x509.Name(list(reversed(rdns)))


_NEEDS_ESCAPE = re.compile(r'[,+"\\<>;\x00-\x1f\x7f]|^[# ]| $')


def _escape(value: str) -> str:
    # RFC 4514 §2.4.
    if _NEEDS_ESCAPE.search(value) is None:
        return value  # the common case: nothing to escape
    out = []
    for idx, ch in enumerate(value):
        if ch in _SPECIAL or (idx == 0 and ch in "# ") or (idx == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ch == "\x00" or (ord(ch) < 0x20) or ch == "\x7f":
            out.append("".join(f"\\{b:02X}" for b in ch.encode()))
        else:
            out.append(ch)
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def format_dn(name: x509.Name) -> str:
    """The RFC 4514 string of a Name, with the short names of :data:`ATTRIBUTE_NAMES`."""
    parts = []
    for rdn in reversed(name.rdns):
        attrs = []
        for attr in rdn:
            type_name = attribute_name(attr.oid)
            value = attr.value
            if isinstance(value, bytes):
                # A bit-string attribute (e.g. x500UniqueIdentifier): RFC 4514 §2.4 '#' form.
                attrs.append(f"{type_name}=#{value.hex()}")
            else:
                attrs.append(f"{type_name}={_escape(value)}")
        parts.append("+".join(attrs))
    return ",".join(parts)


def _key(dn: str | x509.Name) -> NameKey:
    return name_key(parse_dn(dn) if isinstance(dn, str) else dn)


def dn_equal(a: str | x509.Name, b: str | x509.Name) -> bool:
    """RFC 5280 §7.1 equality of two DNs (strings are parsed; raises ConfigError if bad)."""
    return _key(a) == _key(b)


@functools.lru_cache(maxsize=1024)
def dn_key_text(key: NameKey) -> str:
    """A canonical, JSON-safe text of a normalised DN key (equal keys, equal texts)."""
    return json.dumps(
        [sorted([oid, v if isinstance(v, str) else "#" + v.hex()] for oid, v in rdn) for rdn in key],
        ensure_ascii=False,
        separators=(",", ":"),
    )
