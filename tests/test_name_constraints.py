"""Name constraints (RFC 5280 §4.2.1.10, §6.1.3 (b)-(c), §6.1.4 (g)): DNS, email, URI, IP, DN."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from cryptography import x509

from mtlscore import Policy, Reason, TrustStore, Validator, pki
from mtlscore.verify.failure import PathFailure, Who
from mtlscore.verify.name_constraints import NameConstraintState
from mtlscore.x509 import parse_certificate

NOW = pki.NOW
DNS, EMAIL, URI, DN = x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier, x509.DirectoryName


def IP(net: str) -> x509.IPAddress:
    return x509.IPAddress(ipaddress.ip_network(net))


def verdict(*, permitted: Any = None, excluded: Any = None, subject: str = "CN=client",
            policy: Policy | None = None, **leaf_kw: Any) -> Reason | None:
    """Root → constrained intermediate → leaf; the verdict's reason (None when accepted)."""
    root = pki.root()
    inter = root.intermediate(permitted=permitted, excluded=excluded)
    leaf = inter.leaf(subject, **leaf_kw)
    return Validator(TrustStore(anchors=[root.pem]), policy).validate(leaf.chain_pem, at=NOW).reason


V = Reason.NAME_CONSTRAINTS_VIOLATION


@pytest.mark.parametrize(
    ("permitted", "excluded", "leaf_kw", "expected"),
    [
        # DNS: a subtree is the name and everything below it.
        ([DNS("partner.example")], None, {"san_dns": ["partner.example"]}, None),
        ([DNS("partner.example")], None, {"san_dns": ["api.partner.example"]}, None),
        ([DNS("partner.example")], None, {"san_dns": ["*.partner.example"]}, None),
        ([DNS("partner.example")], None, {"san_dns": ["evilpartner.example"]}, V),
        ([DNS("partner.example")], None, {"san_dns": ["partner.example.evil"]}, V),
        ([DNS("partner.example")], None, {"san_dns": ["api.partner.example", "x.other"]}, V),
        ([DNS("PARTNER.example")], None, {"san_dns": ["api.partner.EXAMPLE"]}, None),
        (None, [DNS("internal.partner.example")], {"san_dns": ["api.partner.example"]}, None),
        (None, [DNS("internal.partner.example")], {"san_dns": ["db.internal.partner.example"]}, V),
        (None, [DNS("internal.partner.example")], {"san_dns": ["*.partner.example"]}, V),
        ([DNS("partner.example")], [DNS("internal.partner.example")],
         {"san_dns": ["db.internal.partner.example"]}, V),
        # Constraints of one type do not restrict other types.
        ([DNS("partner.example")], None, {"san_email": ["a@elsewhere.example"]}, None),
        ([DNS("partner.example")], None, {}, None),  # no SAN, DN not DNS-constrained
        # Email: a mailbox, a host, or a domain (leading period).
        ([EMAIL("ops@partner.example")], None, {"san_email": ["ops@partner.example"]}, None),
        ([EMAIL("ops@partner.example")], None, {"san_email": ["dev@partner.example"]}, V),
        ([EMAIL("partner.example")], None, {"san_email": ["dev@partner.example"]}, None),
        ([EMAIL("partner.example")], None, {"san_email": ["dev@mail.partner.example"]}, V),
        ([EMAIL(".partner.example")], None, {"san_email": ["dev@mail.partner.example"]}, None),
        ([EMAIL(".partner.example")], None, {"san_email": ["dev@partner.example"]}, V),
        (None, [EMAIL("partner.example")], {"san_email": ["dev@partner.example"]}, V),
        # Email constraints also apply to emailAddress in the subject DN.
        ([EMAIL("partner.example")], None,
         {"subject": "CN=client,1.2.840.113549.1.9.1=dev@evil.example"}, V),
        # URI: the host of the authority.
        ([URI("partner.example")], None, {"san_uri": ["https://partner.example/x"]}, None),
        ([URI("partner.example")], None, {"san_uri": ["https://api.partner.example/x"]}, V),
        ([URI(".partner.example")], None, {"san_uri": ["https://api.partner.example:8443/"]}, None),
        ([URI(".partner.example")], None, {"san_uri": ["spiffe://evil.example/w"]}, V),
        ([URI("partner.example")], None, {"san_uri": ["urn:uuid:1234"]}, V),  # no host
        # IP: address in network.
        ([IP("10.1.0.0/16")], None, {"san_ip": ["10.1.2.3"]}, None),
        ([IP("10.1.0.0/16")], None, {"san_ip": ["10.2.0.1"]}, V),
        ([IP("10.1.0.0/16")], None, {"san_ip": ["::1"]}, V),
        ([IP("2001:db8::/32")], None, {"san_ip": ["2001:db8::7"]}, None),
        (None, [IP("192.168.0.0/16")], {"san_ip": ["192.168.7.7"]}, V),
        # Directory names: the subject DN must lie below the permitted DN.
        ([DN(x509.Name.from_rfc4514_string("O=Partner,C=DE"))], None,
         {"subject": "CN=client,O=Partner,C=DE"}, None),
        ([DN(x509.Name.from_rfc4514_string("O=Partner,C=DE"))], None,
         {"subject": "CN=client,O=Evil,C=DE"}, V),
        ([DN(x509.Name.from_rfc4514_string("O=partner,C=de"))], None,
         {"subject": "CN=client,O=PARTNER,C=DE"}, None),  # compared normalised
        (None, [DN(x509.Name.from_rfc4514_string("O=Evil,C=DE"))],
         {"subject": "CN=client,O=Evil,C=DE"}, V),
    ],
)
def test_constraint_table(permitted: Any, excluded: Any, leaf_kw: dict[str, Any],
                          expected: Reason | None) -> None:
    assert verdict(permitted=permitted, excluded=excluded, **leaf_kw) is expected


def test_constraints_intersect_down_the_path() -> None:
    root = pki.root(permitted=[DNS("example")])
    inter = root.intermediate(permitted=[DNS("partner.example"), DNS("other.test")])
    validator = Validator(TrustStore(anchors=[root.pem]))
    assert validator.validate(inter.leaf(san_dns=["a.partner.example"]).chain_pem, at=NOW).ok
    # Allowed by the intermediate, outside the root's subtree.
    v = validator.validate(inter.leaf(san_dns=["a.other.test"]).chain_pem, at=NOW)
    assert v.reason is V and v.position == 0


def test_constraints_apply_to_intermediates_too() -> None:
    root = pki.root(permitted=[DN(x509.Name.from_rfc4514_string("O=Partner"))])
    inter = root.intermediate("CN=Issuing,O=Evil")
    v = Validator(TrustStore(anchors=[root.pem])).validate(inter.leaf("CN=c,O=Partner").chain_pem, at=NOW)
    assert v.reason is V and v.position == 1


def test_self_issued_intermediates_are_not_constrained() -> None:
    # RFC 5280 §6.1.3 (b): constraints are not applied to self-issued intermediates.
    root = pki.root(permitted=[DN(x509.Name.from_rfc4514_string("O=Partner"))])
    inter = root.intermediate("CN=Issuing,O=Partner")
    rolled = pki.make("CN=Issuing,O=Partner", issuer=inter, ca=True)
    leaf = rolled.leaf("CN=c,O=Partner")
    v = Validator(TrustStore(anchors=[root.pem])).validate([leaf.pem, rolled.pem, inter.pem], at=NOW)
    assert v.ok, v.detail


def test_leaf_carrying_name_constraints_is_rejected() -> None:
    root = pki.root()
    leaf = root.leaf(permitted=[DNS("example")], san_dns=["a.example"])
    assert Validator(TrustStore(anchors=[root.pem])).validate(leaf.pem, at=NOW).reason is V


@pytest.mark.parametrize(
    "bad_subtree",
    [DNS(".partner.example"), DNS("bad_label.example")],
)
def test_meaningless_constraints_reject(bad_subtree: x509.GeneralName) -> None:
    assert verdict(permitted=[bad_subtree], san_dns=["a.partner.example"]) is V


def test_malformed_names_cannot_slip_past_a_constraint() -> None:
    assert verdict(permitted=[DNS("partner.example")], san_dns=["bad_name.partner.example"]) is V


def test_the_work_budget_bounds_name_constraint_checking() -> None:
    many = [DNS(f"n{i}.example") for i in range(200)]
    root = pki.root()
    inter = root.intermediate(permitted=many)
    leaf = inter.leaf(san_dns=[f"h{i}.n199.example" for i in range(100)])
    trust = TrustStore(anchors=[root.pem])
    tight = Policy(max_path_work=100)  # budget: 64 comparisons per unit of path work
    assert Validator(trust, tight).validate(leaf.chain_pem, at=NOW).reason is Reason.SEARCH_LIMIT_EXCEEDED
    assert Validator(trust).validate(leaf.chain_pem, at=NOW).ok


def test_state_directly() -> None:
    state = NameConstraintState()
    assert state.empty
    ca = parse_certificate(pki.root(permitted=[DNS("example")], excluded=[DNS("bad.example")]).der)
    state.add(ca, Who(ca, 2, "trust anchor"))
    assert not state.empty
    ok = parse_certificate(pki.root().leaf(san_dns=["ok.example"]).der)
    state.check(ok, Who(ok, 0))
    excluded = parse_certificate(pki.root().leaf(san_dns=["x.bad.example"]).der)
    with pytest.raises(PathFailure) as exc:
        state.check(excluded, Who(excluded, 0))
    assert "excluded" in exc.value.detail and exc.value.reason is Reason.NAME_CONSTRAINTS_VIOLATION
    assert exc.value.position == 0
    outside = parse_certificate(pki.root().leaf(san_dns=["x.test"]).der)
    with pytest.raises(PathFailure) as exc:
        state.check(outside, Who(outside, 1))  # the position is the one the failure names
    assert "permitted" in exc.value.detail and exc.value.position == 1
