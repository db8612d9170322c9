"""RFC 6125 peer-name matching against subjectAltName."""

from __future__ import annotations

import ipaddress

import pytest

from mtlscore import pki
from mtlscore.x509 import dns_name_matches, match_peer_name, parse_certificate
from mtlscore.x509.hostname import is_valid_dns_name, parse_ip


@pytest.mark.parametrize(
    ("presented", "reference", "ok"),
    [
        ("api.example.com", "api.example.com", True),
        ("API.Example.COM", "api.example.com", True),
        ("api.example.com.", "api.example.com", True),
        ("*.example.com", "api.example.com", True),
        ("*.example.com", "a.b.example.com", False),  # one label only
        ("*.example.com", "example.com", False),
        ("*.com", "example.com", False),  # a whole TLD
        ("a*.example.com", "ab.example.com", False),  # partial wildcards are not honoured
        ("api.*.com", "api.example.com", False),
        ("api.example.com", "*.example.com", False),  # the reference is never a pattern
        ("xn--bcher-kva.example", "xn--bcher-kva.example", True),
        ("bücher.example", "bücher.example", False),  # U-labels are not valid presented names
        ("bad_label.example", "bad_label.example", False),
        ("", "", False),
    ],
)
def test_dns_name_matches(presented: str, reference: str, ok: bool) -> None:
    assert dns_name_matches(presented, reference) is ok


def test_is_valid_dns_name() -> None:
    assert is_valid_dns_name("a-b.example")
    assert not is_valid_dns_name("-a.example") and not is_valid_dns_name("a..example")
    assert not is_valid_dns_name("a" * 64 + ".example")
    assert not is_valid_dns_name("*.example.com")
    assert is_valid_dns_name("*.example.com", allow_wildcard=True)
    assert not is_valid_dns_name("x" * 254)


def test_parse_ip() -> None:
    assert parse_ip("10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_ip("[2001:db8::1]") == ipaddress.ip_address("2001:db8::1")
    assert parse_ip("example.com") is None and parse_ip("10.0.0") is None


def test_match_peer_name_uses_sans_only() -> None:
    root = pki.root()
    c = parse_certificate(root.leaf("CN=api.example.com", san_dns=["*.example.com"],
                                    san_ip=["10.0.0.1", "2001:db8::1"]).der)
    assert match_peer_name(c, "api.example.com")
    assert match_peer_name(c, "10.0.0.1") and match_peer_name(c, "2001:db8::1")
    assert match_peer_name(c, "[2001:db8::1]")
    assert not match_peer_name(c, "10.0.0.2")
    assert not match_peer_name(c, "example.com")
    # An IP literal never matches a DNS SAN spelling it.
    dns_ip = parse_certificate(root.leaf(san_dns=["www.example.com"], san_ip=[]).der)
    assert not match_peer_name(dns_ip, "10.0.0.1")
    # No CN fallback.
    no_san = parse_certificate(root.leaf("CN=api.example.com").der)
    assert not match_peer_name(no_san, "api.example.com")
