"""Name constraints (RFC 5280 §4.2.1.10, §6.1.3 (b)–(c), §6.1.4 (g)–(i)).

Permitted subtrees intersect down the path and excluded subtrees accumulate.
Rather than compute intersections of subtrees, we keep each CA's permitted set
separately: a name must fall within some permitted subtree of its type in
*every* CA that constrained that type — the same thing as the intersection.
Work is bounded: every (name, subtree) comparison costs one unit of budget.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..reasons import Reason
from ..x509.cert import Certificate
from ..x509.hostname import is_valid_dns_name
from ..x509.names import name_key
from .failure import Who

__all__ = ["NameConstraintState"]

_DNS, _EMAIL, _URI, _IP, _DN, _OTHER = "dns", "email", "uri", "ip", "dn", "other"
_VIOLATION = Reason.NAME_CONSTRAINTS_VIOLATION


def _kind(g: x509.GeneralName) -> str:
    if isinstance(g, x509.DNSName):
        return _DNS
    if isinstance(g, x509.RFC822Name):
        return _EMAIL
    if isinstance(g, x509.UniformResourceIdentifier):
        return _URI
    if isinstance(g, x509.IPAddress):
        return _IP
    if isinstance(g, x509.DirectoryName):
        return _DN
    return _OTHER


def _validate_subtree(g: x509.GeneralName, who: Who) -> None:
    """Reject constraint encodings that cannot mean anything (RFC 5280 §4.2.1.10) in ``who``'s nameConstraints."""
    if isinstance(g, x509.DNSName):
        v = g.value
        # A DNS constraint is a domain: no wildcard, no leading period (that is the URI/email form).
        if v and (v.startswith(".") or not is_valid_dns_name(v)):
            raise who.fail(_VIOLATION, f"{who}: name constraint dNSName {v!r} is not a valid domain")
    elif isinstance(g, x509.IPAddress):
        if not isinstance(g.value, ipaddress.IPv4Network | ipaddress.IPv6Network):
            raise who.fail(_VIOLATION, f"{who}: name constraint iPAddress is not an address and mask")
    elif isinstance(g, x509.RFC822Name):
        v = g.value
        if not v or v.count("@") > 1 or (v.startswith(".") and "@" in v):
            raise who.fail(_VIOLATION, f"{who}: name constraint rfc822Name {v!r} is not valid")
        host = v.split("@")[-1].lstrip(".")
        if not is_valid_dns_name(host):
            raise who.fail(_VIOLATION, f"{who}: name constraint rfc822Name {v!r} has an invalid host")
    elif isinstance(g, x509.UniformResourceIdentifier):
        host = g.value.lstrip(".")
        if host and not is_valid_dns_name(host):
            raise who.fail(_VIOLATION, f"{who}: name constraint URI {g.value!r} is not a valid host")


def _dns_within(name: str, base: str) -> bool:
    name, base = name.lower().rstrip("."), base.lower().rstrip(".")
    return not base or name == base or name.endswith("." + base)


def _dns_permitted(name: str, base: str) -> bool:
    if name.startswith("*."):
        # "*.X" stands for names one label below X: all of them lie within
        # the subtree exactly when X does.
        return _dns_within(name[2:], base)
    return _dns_within(name, base)


def _dns_excluded(name: str, base: str) -> bool:
    if name.startswith("*."):
        rest = name[2:].lower().rstrip(".")
        b = base.lower().rstrip(".")
        # Excluded when some name the wildcard can stand for ("L.X", one label L)
        # lies in the excluded subtree: X inside it, or the subtree is one such "L.X".
        if _dns_within(rest, b):
            return True
        return b.endswith("." + rest) and "." not in b[: -len(rest) - 1]
    return _dns_within(name, base)


def _host_within(host: str, base: str) -> bool:
    host, base = host.lower(), base.lower()
    if base.startswith("."):
        return host.endswith(base)
    return host == base


def _email_within(mailbox: str, base: str) -> bool:
    if "@" not in mailbox:
        return False
    local, _, host = mailbox.rpartition("@")
    if "@" in base:
        b_local, _, b_host = base.rpartition("@")
        # The local part is case-sensitive (RFC 5321 §2.4); the host is not.
        return local == b_local and host.lower() == b_host.lower()
    return _host_within(host, base)


def _uri_host(uri: str) -> str | None:
    """The host of a URI's authority (RFC 3986 §3.2), or None when it has none."""
    scheme, sep, rest = uri.partition(":")
    if not sep or not scheme or not rest.startswith("//"):
        return None
    authority = rest[2:]
    for stop in "/?#":
        authority = authority.split(stop, 1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return None  # IP-literal hosts are not domain names (RFC 5280 §4.2.1.10)
    host = host.split(":", 1)[0]
    return host or None


def _dn_within(name: x509.Name, base: x509.Name) -> bool:
    n, b = name_key(name), name_key(base)
    return len(n) >= len(b) and n[: len(b)] == b


def _ip_within(addr: x509.IPAddress, net: x509.IPAddress) -> bool:
    a, n = addr.value, net.value
    if not isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return False
    if not isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return False
    return a.version == n.version and a in n


def _other_within(name: x509.GeneralName, base: x509.GeneralName) -> bool:
    return type(name) is type(base) and name == base


def _matches(name: x509.GeneralName, base: x509.GeneralName, *, excluded: bool) -> bool:
    kind = _kind(name)
    if kind == _DNS:
        assert isinstance(name, x509.DNSName) and isinstance(base, x509.DNSName)
        return (_dns_excluded if excluded else _dns_permitted)(name.value, base.value)
    if kind == _EMAIL:
        assert isinstance(base, x509.RFC822Name)
        return _email_within(str(name.value), base.value)
    if kind == _URI:
        assert isinstance(base, x509.UniformResourceIdentifier)
        host = _uri_host(str(name.value))
        return host is not None and _host_within(host, base.value)
    if kind == _IP:
        assert isinstance(name, x509.IPAddress) and isinstance(base, x509.IPAddress)
        return _ip_within(name, base)
    if kind == _DN:
        assert isinstance(name, x509.DirectoryName) and isinstance(base, x509.DirectoryName)
        return _dn_within(name.value, base.value)
    return _other_within(name, base)


def _check_name_syntax(g: x509.GeneralName, who: Who) -> None:
    """A constrained name must itself be well formed, or it could slip past a subtree."""
    if isinstance(g, x509.DNSName):
        if not is_valid_dns_name(g.value, allow_wildcard=True):
            raise who.fail(_VIOLATION, f"subjectAltName dNSName {g.value!r} is not a valid DNS name")
    elif isinstance(g, x509.RFC822Name):
        local, at, host = g.value.rpartition("@")
        if not at or not local or "@" in local or not is_valid_dns_name(host):
            raise who.fail(_VIOLATION, f"subjectAltName rfc822Name {g.value!r} is not a valid mailbox")
    elif isinstance(g, x509.IPAddress):
        if not isinstance(g.value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise who.fail(_VIOLATION, "subjectAltName iPAddress is not a single address")


@dataclass
class NameConstraintState:
    """Accumulated constraints while walking a path from the anchor down."""

    budget: int = 1 << 16
    permitted: list[dict[str, list[x509.GeneralName]]] = field(default_factory=list)
    excluded: list[x509.GeneralName] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.permitted and not self.excluded

    def add(self, cert: Certificate, who: Who) -> None:
        """§6.1.4 (g): take in a CA certificate's nameConstraints (``who`` names it in a failure).

        Raises a :class:`~mtlscore.verify.failure.PathFailure` for constraints that cannot mean anything.
        """
        nc = cert.name_constraints
        if nc is None:
            return
        if not nc.permitted_subtrees and not nc.excluded_subtrees:
            raise who.fail(
                _VIOLATION, f"{who}: {cert.describe()}: nameConstraints has neither permitted nor excluded subtrees"
            )
        if nc.permitted_subtrees:
            by_kind: dict[str, list[x509.GeneralName]] = {}
            for g in nc.permitted_subtrees:
                _validate_subtree(g, who)
                by_kind.setdefault(_kind(g), []).append(g)
            self.permitted.append(by_kind)
        for g in nc.excluded_subtrees or ():
            _validate_subtree(g, who)
            self.excluded.append(g)

    def _spend(self, n: int, who: Who) -> None:
        self.budget -= n
        if self.budget < 0:
            raise who.fail(Reason.SEARCH_LIMIT_EXCEEDED, "name constraint checking exceeded its work budget")

    def check(self, cert: Certificate, who: Who, *, end_entity: bool = False) -> None:
        """§6.1.3 (b)–(c): the subject and every subjectAltName must be allowed (``who`` is ``cert``'s place).

        Raises a :class:`~mtlscore.verify.failure.PathFailure` at ``who``'s position: a name
        outside the constraints, or the work budget spent.

        For the ``end_entity`` (the client certificate) without a dNSName in its
        subjectAltName, a commonName that reads as a DNS name must satisfy the DNS
        constraints too, as OpenSSL checks it (docs/differences.md "A leaf's CN and
        DNS name constraints"). RFC 5280 applies dNSName constraints to dNSName
        SANs only; but identity rules map clients by CN (``match = { cn = … }``),
        and a CA constrained to one partner's domain must not mint a certificate
        whose CN is another partner's host name.
        """
        if self.empty:
            return
        names: list[x509.GeneralName] = list(cert.san or ())
        subject = cert.subject  # decoded on each read: read once
        constrained = {_kind(g) for g in self.excluded}
        for level in self.permitted:
            constrained.update(level)
        cn_names: set[int] = set()
        if len(subject):
            names.append(x509.DirectoryName(subject))
            # §4.2.1.10: rfc822Name constraints apply to emailAddress in the subject DN.
            for attr in subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
                if isinstance(attr.value, str):
                    names.append(x509.RFC822Name(attr.value))
            if end_entity and _DNS in constrained and not any(isinstance(g, x509.DNSName) for g in names):
                for attr in subject.get_attributes_for_oid(NameOID.COMMON_NAME):
                    if isinstance(attr.value, str) and _cn_is_dns_name(attr.value):
                        cn_names.add(len(names))
                        names.append(x509.DNSName(attr.value))
        for i, name in enumerate(names):
            kind = _kind(name)
            if kind not in constrained:
                continue
            if i in cn_names:
                shown = f"commonName {name.value!r} (a DNS name, and no dNSName subjectAltName)"
            else:
                _check_name_syntax(name, who)
                shown = _show(name)
            for base in self.excluded:
                if _kind(base) != kind:
                    continue
                self._spend(1, who)
                if _matches(name, base, excluded=True):
                    raise who.fail(
                        _VIOLATION, f"{cert.describe()}: {shown} is inside the excluded subtree {_show(base)}"
                    )
            for level in self.permitted:
                bases = level.get(kind)
                if bases is None:
                    continue
                self._spend(len(bases), who)
                if not any(_matches(name, b, excluded=False) for b in bases):
                    raise who.fail(
                        _VIOLATION,
                        f"{cert.describe()}: {shown} is outside the permitted subtrees "
                        f"({', '.join(_show(b) for b in bases[:5])})"
                    )


def _cn_is_dns_name(cn: str) -> bool:
    """Whether a commonName reads as a DNS name of two labels or more (OpenSSL's cn2dnsid).

    Letters, digits and "_"; "-" and "." inside only, no "." next to "." or "-", and
    at least one ".". Anything else ("diff client", "Partner X") is not a host name
    and is left to directoryName constraints.
    """
    dotted = False
    last = len(cn) - 1
    for i, c in enumerate(cn):
        if c.isascii() and (c.isalnum() or c == "_"):
            continue
        if 0 < i < last:
            if c == "-":
                continue
            if c == "." and cn[i + 1] not in ".-" and cn[i - 1] != "-":
                dotted = True
                continue
        return False
    return dotted


def _show(g: x509.GeneralName) -> str:
    kind = _kind(g)
    if kind == _DN:
        assert isinstance(g, x509.DirectoryName)
        return f"DN {g.value.rfc4514_string()!r}"
    if kind == _OTHER:
        return f"{type(g).__name__}"
    return f"{kind.upper()} {g.value!s}"
