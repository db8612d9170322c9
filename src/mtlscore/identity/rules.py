"""Match conditions of identity rules: parsing configured values, testing identities.

A condition is one match key of docs/reference.md#configuration-file (``subject_dn``, ``cn``,
``san_dns``, ``thumbprint``, …) with one or more accepted values (a list means
"any of these"). Every condition yields *index keys*, so that
:class:`mtlscore.identity.identity_map.IdentityMap` finds candidate rules by hashing the
identity's keys instead of scanning every account. Pins and thumbprints are
not secrets (certificates are public), so hashing them for lookup leaks
nothing; the confirming comparison is still constant-time (STYLE.md §11).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..reasons import ConfigError
from ..x509.dn import attribute_name, dn_key_text, parse_dn
from ..x509.hostname import dns_name_matches, is_valid_dns_name
from ..x509.names import name_key, normalize_value
from ..x509.spiffe import SpiffeId, parse_spiffe_id
from .identity import Identity

__all__ = ["ATTRIBUTE_KEYS", "MATCH_KEYS", "Condition", "identity_keys", "parse_condition"]

# Config key → subject attribute (compared with RFC 4518 caseIgnoreMatch).
ATTRIBUTE_KEYS = {"cn": "CN", "o": "O", "ou": "OU", "c": "C", "l": "L", "st": "ST", "dc": "DC",
                  "uid": "UID", "serial_number": "SERIALNUMBER", "email_address": "EMAILADDRESS"}
MATCH_KEYS = (
    "subject_dn", *ATTRIBUTE_KEYS, "san_dns", "san_uri", "san_email", "san_ip", "spiffe_id",
    "spiffe_trust_domain", "spiffe_id_prefix", "issuer_serial", "thumbprint", "spki",
)
# Which condition a rule is indexed under, most selective first.
SELECTIVITY = ("thumbprint", "spki", "issuer_serial", "subject_dn", "spiffe_id", "san_uri",
               "san_email", "san_ip", "san_dns", "attr", "spiffe_id_prefix", "spiffe_trust_domain")

IndexKey = tuple[str, ...]
# One accepted value of a condition, normalised by kind: a string (names, addresses), a SHA-256
# (thumbprint, spki), a SpiffeId (trust domain, prefix), (DN key, DN text, attributes) for
# subject_dn, (issuer DN key, serial, issuer text) for issuer_serial.
MatchValue = str | bytes | SpiffeId | tuple[str, str, frozenset[tuple[str, str]]] | tuple[str, int, str]
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class Condition:
    """One match key with its accepted values (any of them), already normalised."""

    kind: str  # a SELECTIVITY entry
    values: tuple[MatchValue, ...]
    key: str  # the config key it came from, for messages: "accounts[2].match.cn"
    attribute: str = ""  # for kind "attr": the upper-case attribute name

    def holds(self, identity: Identity) -> bool:
        """Whether any of the values matches ``identity``."""
        return any(_holds(self, v, identity) for v in self.values)

    def index_keys(self) -> list[IndexKey]:
        """The identity keys under which a rule with this condition is filed."""
        return [_index_key(self, v) for v in self.values]

    def implied_by(self, other: Condition) -> bool:
        """True if every identity satisfying ``other`` satisfies this condition."""
        return all(any(_implies(other, vb, self, va) for va in self.values) for vb in other.values)

    def describe(self) -> str:
        shown = [_show(self, v) for v in self.values]
        return f"{self.key.rsplit('.', 1)[-1]} = {shown[0] if len(shown) == 1 else shown}"


def _show(cond: Condition, v: Any) -> str:
    if cond.kind == "subject_dn":
        return repr(v[1])
    if cond.kind in ("thumbprint", "spki"):
        return str(v.hex())
    if cond.kind == "issuer_serial":
        return f"{v[2]} / {v[1]:X}"
    return repr(str(v))


# -- normalisation shared by rules and identities ----------------------------


def _dns(name: str) -> str:
    return name.lower().rstrip(".")


def _parent(name: str) -> str:
    return _dns(name).partition(".")[2]


def _uri(uri: str) -> str:
    # RFC 3986 §6.2.2.1: scheme and host are case-insensitive; the rest is not.
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    authority, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{authority.lower()}{slash}{path}"


def _email(addr: str) -> str:
    # RFC 5280 §7.5: the local part is case-sensitive, the host part is not.
    local, at, host = addr.rpartition("@")
    return f"{local}@{host.lower()}" if at else addr.lower()


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def identity_keys(identity: Identity) -> Iterator[IndexKey]:
    """Every index key an identity can be found under."""
    yield ("subject_dn", identity.subject_key)
    for rdn in identity.subject:
        for name, value in rdn:
            yield ("attr", name.upper(), normalize_value(value))
    for d in identity.san_dns:
        yield ("san_dns", _dns(d))
        yield ("san_dns_wild", _parent(d))
    for u in identity.san_uri:
        yield ("san_uri", _uri(u))
    for e in identity.san_email:
        yield ("san_email", _email(e))
    for i in identity.san_ip:
        yield ("san_ip", _ip(i))
    if identity.spiffe_id:
        yield ("spiffe_id", identity.spiffe_id)
        yield ("spiffe_td", identity.spiffe_id[len("spiffe://") :].partition("/")[0])
    yield ("issuer_serial", identity.issuer_key, str(identity.serial))
    yield ("thumbprint", identity.sha256_hex)
    yield ("spki", identity.spki_sha256_hex)


def _index_key(cond: Condition, v: Any) -> IndexKey:
    kind = cond.kind
    if kind == "subject_dn":
        return ("subject_dn", v[0])
    if kind == "attr":
        return ("attr", cond.attribute, v)
    if kind == "san_dns":
        return ("san_dns_wild", _parent(v)) if v.startswith("*") else ("san_dns", v)
    if kind in ("spiffe_trust_domain", "spiffe_id_prefix"):
        return ("spiffe_td", v.trust_domain)
    if kind == "issuer_serial":
        return ("issuer_serial", v[0], str(v[1]))
    if kind in ("thumbprint", "spki"):
        return (kind, v.hex())
    return (kind, str(v))


def _holds(cond: Condition, v: Any, identity: Identity) -> bool:
    kind = cond.kind
    if kind == "subject_dn":
        return bool(identity.subject_key == v[0])
    if kind == "attr":
        return any(normalize_value(x) == v for x in identity.values(cond.attribute))
    if kind == "san_dns":
        if v.startswith("*"):
            return any(dns_name_matches(v, d) for d in identity.san_dns)
        return any(_dns(d) == v for d in identity.san_dns)
    if kind == "san_uri":
        return any(_uri(u) == v for u in identity.san_uri)
    if kind == "san_email":
        return any(_email(e) == v for e in identity.san_email)
    if kind == "san_ip":
        return any(_ip(i) == v for i in identity.san_ip)
    if kind == "spiffe_id":
        return bool(identity.spiffe_id == v)
    if kind in ("spiffe_trust_domain", "spiffe_id_prefix"):
        if not identity.spiffe_id:
            return False
        sid = parse_spiffe_id(identity.spiffe_id)
        return sid.has_prefix(v) if kind == "spiffe_id_prefix" else sid.trust_domain == v.trust_domain
    if kind == "issuer_serial":
        return bool(identity.issuer_key == v[0] and identity.serial == v[1])
    if kind == "thumbprint":
        return hmac.compare_digest(bytes.fromhex(identity.sha256_hex), v)
    if kind == "spki":
        return hmac.compare_digest(bytes.fromhex(identity.spki_sha256_hex), v)
    return False


def _canon(cond: Condition, v: Any) -> Any:
    # The part of a value that decides matching (a DN's key, not how it was typed).
    if cond.kind == "subject_dn":
        return v[0]
    if cond.kind == "issuer_serial":
        return (v[0], v[1])
    return v


def _implies(cb: Condition, vb: Any, ca: Condition, va: Any) -> bool:
    """Does value ``vb`` of condition ``cb`` force value ``va`` of ``ca`` to hold?"""
    if cb.kind == ca.kind and cb.attribute == ca.attribute and _canon(cb, vb) == _canon(ca, va):
        return True
    if ca.kind == "attr" and cb.kind == "subject_dn":
        return (ca.attribute, va) in vb[2]
    if ca.kind == "san_dns" and cb.kind == "san_dns" and va.startswith("*"):
        return not vb.startswith("*") and dns_name_matches(va, vb)
    if ca.kind in ("spiffe_trust_domain", "spiffe_id_prefix"):
        if cb.kind == "spiffe_id":
            sid = parse_spiffe_id(vb)
        elif cb.kind == "spiffe_id_prefix":
            sid = vb
        else:
            return False
        if ca.kind == "spiffe_trust_domain":
            return bool(sid.trust_domain == va.trust_domain)
        return bool(sid.has_prefix(va))
    return False


# -- parsing configured values -------------------------------------------------


def _digest(text: Any, key: str, what: str, *, b64url: bool) -> bytes:
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a string", key=key)
    t = text.strip()
    if t.lower().startswith("sha256/"):
        t = t[len("sha256/") :]
    compact = t.replace(":", "")
    if _HEX.match(compact):
        return bytes.fromhex(compact)
    try:
        raw = (
            base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))
            if b64url and "=" not in t
            else base64.b64decode(t, validate=True)
        )
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            f"{text!r} is not a SHA-256 {what} (64 hex digits or "
            f"{'base64url x5t#S256' if b64url else 'base64 pin'})",
            key=key,
        )
    return raw


def _serial(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise ConfigError("serial must be an integer or a hex string", key=key)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        t = value.strip().replace(":", "").replace(" ", "")
        t = t[2:] if t.lower().startswith("0x") else t
        try:
            return int(t, 16)
        except ValueError:
            pass
    raise ConfigError(f"{value!r} is not a serial number (an integer or hex digits)", key=key)


def _one(kind: str, raw: object, key: str) -> MatchValue:
    """Normalise one configured value of a match key; ConfigError naming ``key`` if bad."""
    if kind == "issuer_serial":
        if not isinstance(raw, dict) or set(raw) != {"issuer", "serial"}:
            raise ConfigError('must be a table { issuer = "<DN>", serial = "<hex>" }', key=key)
        name = parse_dn(raw["issuer"], key=f"{key}.issuer")
        return (dn_key_text(name_key(name)), _serial(raw["serial"], f"{key}.serial"), raw["issuer"])
    if kind == "thumbprint":
        return _digest(raw, key, "certificate thumbprint", b64url=True)
    if kind == "spki":
        return _digest(raw, key, "SPKI pin", b64url=False)
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError("must be a non-empty string", key=key)
    if kind == "subject_dn":
        name = parse_dn(raw, key=key)
        attrs = frozenset(
            (a.oid.dotted_string, normalize_value(a.value)) for a in name if isinstance(a.value, str)
        )
        return (dn_key_text(name_key(name)), raw, _named(attrs))
    if kind == "attr":
        return normalize_value(raw)
    if kind == "san_dns":
        if not is_valid_dns_name(raw.rstrip("."), allow_wildcard=True):
            raise ConfigError(f"{raw!r} is not a DNS name or a '*.' wildcard (RFC 6125 §6.4.3)", key=key)
        return _dns(raw)
    if kind == "san_uri":
        return _uri(raw)
    if kind == "san_email":
        if "@" not in raw:
            raise ConfigError(f"{raw!r} is not an email address", key=key)
        return _email(raw)
    if kind == "san_ip":
        try:
            return str(ipaddress.ip_address(raw))
        except ValueError:
            raise ConfigError(f"{raw!r} is not an IP address", key=key) from None
    if kind == "spiffe_id":
        return str(parse_spiffe_id(raw, key=key))
    if kind == "spiffe_trust_domain":
        sid = parse_spiffe_id(raw, key=key, allow_bare_domain=True)
        if sid.path:
            raise ConfigError(f"{raw!r} has a path; a trust domain has none", key=key)
        return sid
    if kind == "spiffe_id_prefix":
        return parse_spiffe_id(raw, key=key)
    raise ConfigError("unknown match key", key=key)  # pragma: no cover - guarded by caller


def _named(attrs: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    # Re-key a DN's (OID, value) pairs by the upper-case names attribute rules use.
    return frozenset((attribute_name(oid).upper(), v) for oid, v in attrs)


def parse_condition(match_key: str, raw: object, *, key: str) -> Condition:
    """A :class:`Condition` from one configured match key; ConfigError naming ``key`` if bad."""
    if match_key not in MATCH_KEYS:
        raise ConfigError(
            f"unknown match key {match_key!r} (known: {', '.join(MATCH_KEYS)})", key=key
        )
    kind = "attr" if match_key in ATTRIBUTE_KEYS else match_key
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ConfigError("an empty list matches nothing", key=key)
    values = tuple(
        _one(kind, item, f"{key}[{i}]" if isinstance(raw, list) else key) for i, item in enumerate(items)
    )
    return Condition(kind, values, key, ATTRIBUTE_KEYS.get(match_key, ""))
