"""RFC 6125 peer-name matching against a certificate's subjectAltName.

Only SANs are consulted (RFC 6125 §6.4.4: no CN fallback when SANs exist, and
we never fall back at all, as modern verifiers do). DNS names compare
case-insensitively in their ASCII (A-label) form; a wildcard is allowed only as
the whole leftmost label of the presented name (§6.4.3) and matches exactly
one label. IP addresses compare as addresses, and only against iPAddress SANs.
"""

from __future__ import annotations

import ipaddress
import re

from cryptography import x509

from .cert import Certificate

__all__ = ["dns_name_matches", "is_valid_dns_name", "match_peer_name", "parse_ip"]

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def parse_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address if ``name`` is a canonical IPv4 dotted quad or an IPv6 literal, else None."""
    text = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_valid_dns_name(name: str, *, allow_wildcard: bool = False) -> bool:
    """LDH syntax (RFC 1034 §3.5, RFC 5890 A-labels); a leftmost ``*`` label when allowed."""
    if not name or len(name) > 253 or not name.isascii():
        return False
    labels = name.lower().rstrip(".").split(".")
    if allow_wildcard and labels[0] == "*":
        labels = labels[1:]
        # RFC 6125 §7.2: "*" alone or "*.tld" would match a whole top-level domain.
        if len(labels) < 2:
            return False
    return all(_LABEL.match(label) for label in labels)


def dns_name_matches(presented: str, reference: str) -> bool:
    """Whether a presented DNS identifier (possibly ``*.example.com``) matches a reference name."""
    if not is_valid_dns_name(reference) or not is_valid_dns_name(presented, allow_wildcard=True):
        return False
    p_labels = presented.lower().rstrip(".").split(".")
    r_labels = reference.lower().rstrip(".").split(".")
    if p_labels[0] == "*":
        # RFC 6125 §6.4.3: the wildcard stands for exactly one whole label.
        return len(p_labels) == len(r_labels) and p_labels[1:] == r_labels[1:]
    return p_labels == r_labels


def match_peer_name(cert: Certificate, name: str) -> bool:
    """Whether ``cert``'s subjectAltName covers ``name`` (a DNS name or an IP literal)."""
    if not cert.san:
        return False
    ip = parse_ip(name)
    if ip is not None:
        return any(isinstance(g, x509.IPAddress) and g.value == ip for g in cert.san)
    return any(
        isinstance(g, x509.DNSName) and dns_name_matches(g.value, name) for g in cert.san
    )
