"""IdentityMap: each rule kind, anchor scoping, ambiguity, the index, and [[accounts]] loading."""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import pytest

from mtlscore import pki
from mtlscore.config import read_account_files
from mtlscore.decision.validator import Validator
from mtlscore.identity.identity import Identity
from mtlscore.identity.identity_map import IdentityMap, Principal, Rule, account_files, accounts_from_config
from mtlscore.reasons import CertificateRejected, ConfigError, Reason
from mtlscore.verify.trust import Anchor, TrustStore
from mtlscore.x509.cert import parse_certificate

DN_X = "CN=partner-abc-prod-client,OU=RiskOSIntegration,O=PartnerABC"


class World:
    def __init__(self) -> None:
        self.x = pki.root("CN=Partner X CA")
        self.y = pki.root("CN=Partner Y CA")
        self.trust = TrustStore([self.x.pem, self.y.pem])
        self.ax, self.ay = self.trust.anchors

    def ident(self, issued: pki.Issued, anchor: Anchor | None) -> Identity:
        return Identity.from_certificate(parse_certificate(issued.der), anchor)


@pytest.fixture(scope="module")
def w() -> World:
    return World()


def one(rule: Rule) -> IdentityMap:
    return IdentityMap([rule])


def unmapped(m: IdentityMap, ident: Identity) -> str:
    with pytest.raises(CertificateRejected) as info:
        m.resolve(ident)
    assert info.value.reason is Reason.IDENTITY_UNMAPPED
    return info.value.detail


def test_exact_subject_dn_and_cross_anchor(w: World) -> None:
    m = one(Rule.for_account("partner-abc", anchors=[w.ax], subject_dn=DN_X.lower().replace(",", ", ")))
    good = w.x.leaf(DN_X)
    assert m.resolve(w.ident(good, w.ax)) == Principal("partner-abc")
    # CA Y issues a certificate with partner X's exact DN: it must not map to X.
    forged = w.y.leaf(DN_X)
    detail = unmapped(m, w.ident(forged, w.ay))
    assert "Partner Y CA" in detail and "scoped to" in detail
    # No anchor known (e.g. chain not validated): never maps.
    unmapped(m, w.ident(good, None))
    # Same DN text but one RDN more: not an exact match.
    unmapped(m, w.ident(w.x.leaf(DN_X + ",C=DE"), w.ax))


def test_anchor_scope_uses_key_not_just_name(w: World) -> None:
    # A different CA with the same subject name as X's CA is another anchor.
    x2 = pki.root("CN=Partner X CA")
    a2 = TrustStore([x2.pem]).anchors[0]
    m = one(Rule.for_account("p", anchors=[w.ax], cn="c"))
    unmapped(m, w.ident(x2.leaf("CN=c"), a2))
    assert m.resolve(w.ident(w.x.leaf("CN=c"), w.ax)).id == "p"


def test_attribute_rules_all_must_hold(w: World) -> None:
    m = one(Rule.for_account("p", anchors=[w.ax], cn="Client", ou=["Risk", "Ops"]))
    assert m.resolve(w.ident(w.x.leaf("CN=client,OU=ops,O=Org"), w.ax)).id == "p"
    unmapped(m, w.ident(w.x.leaf("CN=client,OU=Sales"), w.ax))
    unmapped(m, w.ident(w.x.leaf("CN=other,OU=Risk"), w.ax))


@pytest.mark.parametrize(
    ("match", "leaf_kw", "ok"),
    [
        ({"san_dns": "API.partner.example."}, {"san_dns": ["api.partner.example"]}, True),
        ({"san_dns": "api.partner.example"}, {"san_dns": ["www.partner.example"]}, False),
        ({"san_dns": "*.partner.example"}, {"san_dns": ["api.partner.example"]}, True),
        ({"san_dns": "*.partner.example"}, {"san_dns": ["a.b.partner.example"]}, False),
        ({"san_dns": "*.partner.example"}, {"san_dns": ["partner.example"]}, False),
        ({"san_uri": "HTTPS://Partner.example/c"}, {"san_uri": ["https://partner.example/c"]}, True),
        ({"san_uri": "https://partner.example/C"}, {"san_uri": ["https://partner.example/c"]}, False),
        ({"san_email": "ops@PARTNER.example"}, {"san_email": ["ops@partner.example"]}, True),
        ({"san_email": "OPS@partner.example"}, {"san_email": ["ops@partner.example"]}, False),
        ({"san_ip": "2001:db8::0:1"}, {"san_ip": ["2001:db8::1"]}, True),
        ({"san_ip": "10.0.0.1"}, {"san_ip": ["10.0.0.2"]}, False),
        ({"spiffe_id": "spiffe://example.org/ns/prod/sa/web"},
         {"san_uri": ["spiffe://example.org/ns/prod/sa/web"]}, True),
        ({"spiffe_trust_domain": "example.org"}, {"san_uri": ["spiffe://example.org/x"]}, True),
        ({"spiffe_trust_domain": "spiffe://example.org"}, {"san_uri": ["spiffe://other.org/x"]}, False),
        ({"spiffe_id_prefix": "spiffe://example.org/ns/prod"},
         {"san_uri": ["spiffe://example.org/ns/prod/sa/web"]}, True),
        ({"spiffe_id_prefix": "spiffe://example.org/ns/prod"},
         {"san_uri": ["spiffe://example.org/ns/production/sa/web"]}, False),
        # Two URI SANs: not an SVID, so SPIFFE rules do not apply.
        ({"spiffe_trust_domain": "example.org"},
         {"san_uri": ["spiffe://example.org/x", "https://e.example/"]}, False),
    ],
)
def test_san_and_spiffe_rules(w: World, match: dict[str, Any], leaf_kw: dict[str, Any], ok: bool) -> None:
    m = one(Rule.for_account("p", anchors=[w.ax], **match))
    ident = w.ident(w.x.leaf("CN=n", **leaf_kw), w.ax)
    if ok:
        assert m.resolve(ident).id == "p"
    else:
        unmapped(m, ident)


def test_issuer_serial_thumbprint_spki(w: World) -> None:
    leaf = w.x.leaf("CN=pinned")
    c = parse_certificate(leaf.der)
    ident = w.ident(leaf, w.ax)
    other = w.ident(w.x.leaf("CN=pinned"), w.ax)
    rules = {
        "serial": {"issuer_serial": {"issuer": "cn=partner x ca", "serial": format(c.serial, "x")}},
        "serial-int": {"issuer_serial": {"issuer": "CN=Partner X CA", "serial": c.serial}},
        "x5t": {"thumbprint": c.x5t_s256},
        "hex": {"thumbprint": ":".join(f"{b:02X}" for b in c.sha256)},
        "spki": {"spki": c.spki_pin},
        "spki-hex": {"spki": "sha256/" + c.spki_sha256.hex()},
    }
    for name, match in rules.items():
        m = one(Rule.for_account(name, anchors=[w.ax], **match))
        assert m.resolve(ident).id == name
        unmapped(m, other)


def test_any_anchor_only_with_a_pin(w: World) -> None:
    c = parse_certificate(w.y.leaf("CN=self").der)
    m = one(Rule.for_account("pinned", anchors="any", thumbprint=c.x5t_s256))
    assert m.resolve(Identity.from_certificate(c, None)).id == "pinned"
    with pytest.raises(ConfigError, match="only allowed with a thumbprint or spki"):
        Rule.for_account("p", anchors="any", cn="self")
    with pytest.raises(ConfigError, match="at least one anchor"):
        Rule.for_account("p", anchors=[], cn="self")


def test_kubernetes_template(w: World) -> None:
    m = IdentityMap([
        Rule.for_account("partner-abc", anchors=[w.ax], subject_dn=DN_X),
        Rule.kubernetes(anchors=[w.ay], id_prefix="k8s:"),
    ])
    p = m.resolve(w.ident(w.y.leaf("CN=jane,O=dev,O=ops"), w.ay))
    assert (p.id, p.groups) == ("k8s:jane", ("dev", "ops"))
    unmapped(m, w.ident(w.y.leaf("O=dev"), w.ay))  # no CN: nothing to name the user
    unmapped(m, w.ident(w.x.leaf("CN=jane"), w.ax))  # template not scoped to X


def test_template_cannot_mint_an_explicit_account(w: World) -> None:
    m = IdentityMap([
        Rule.for_account("partner-abc", anchors=[w.ax], subject_dn=DN_X),
        Rule.kubernetes(anchors=[w.ay]),
    ])
    # Y's certificate named like X's account: the template would yield "partner-abc".
    detail = unmapped(m, w.ident(w.y.leaf("CN=partner-abc"), w.ay))
    assert "explicit account" in detail


def test_runtime_ambiguity_names_both(w: World) -> None:
    m = IdentityMap([
        Rule.for_account("by-cn", anchors=[w.ax], cn="shared"),
        Rule.for_account("by-ou", anchors=[w.ax], ou="Team"),
    ])
    assert m.resolve(w.ident(w.x.leaf("CN=shared"), w.ax)).id == "by-cn"
    detail = unmapped(m, w.ident(w.x.leaf("CN=shared,OU=Team"), w.ax))
    assert "'by-cn'" in detail and "'by-ou'" in detail


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"cn": "c"}, {"cn": "C "}),
        ({"cn": "c"}, {"subject_dn": "CN=c,O=o"}),
        ({"subject_dn": "CN=c,O=o"}, {"subject_dn": "cn=c, o=O"}),
        ({"san_dns": "*.p.example"}, {"san_dns": "api.p.example"}),
        ({"spiffe_trust_domain": "example.org"}, {"spiffe_id": "spiffe://example.org/a"}),
        ({"spiffe_id_prefix": "spiffe://example.org/ns"}, {"spiffe_id_prefix": "spiffe://example.org/ns/x"}),
        ({"cn": ["a", "b"]}, {"cn": "a", "ou": "u"}),
    ],
)
def test_load_time_conflict(w: World, a: dict[str, Any], b: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        IdentityMap([Rule.for_account("one", anchors=[w.ax], name="accounts[0]", **a),
                     Rule.for_account("two", anchors=[w.ax], name="accounts[1]", **b)])
    assert info.value.key is not None and info.value.key.startswith("accounts[1].match.")
    assert "'one'" in str(info.value) and "'two'" in str(info.value)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"cn": "c"}, {"cn": "d"}),
        ({"cn": "c"}, {"ou": "u"}),  # overlap possible but not certain: runtime check
        ({"san_dns": "*.p.example"}, {"san_dns": "a.b.p.example"}),
        ({"subject_dn": "CN=c,O=o"}, {"subject_dn": "CN=c,O=p"}),
    ],
)
def test_no_false_conflicts(w: World, a: dict[str, Any], b: dict[str, Any]) -> None:
    IdentityMap([Rule.for_account("one", anchors=[w.ax], **a), Rule.for_account("two", anchors=[w.ax], **b)])


def test_disjoint_anchor_scopes_do_not_conflict(w: World) -> None:
    m = IdentityMap([Rule.for_account("x-acct", anchors=[w.ax], cn="c"),
                     Rule.for_account("y-acct", anchors=[w.ay], cn="c")])
    assert m.resolve(w.ident(w.x.leaf("CN=c"), w.ax)).id == "x-acct"
    assert m.resolve(w.ident(w.y.leaf("CN=c"), w.ay)).id == "y-acct"


def test_lookup_is_indexed_not_linear(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = [Rule.for_account(f"acct-{i}", anchors=[w.ax], subject_dn=f"CN=client-{i},O=Org")
             for i in range(5000)]
    rules += [Rule.for_account(f"pin-{i}", anchors=[w.ax], thumbprint=hashlib.sha256(b"%d" % i).hexdigest())
              for i in range(5000)]
    m = IdentityMap(rules)
    calls = 0
    original = Rule.names_match

    def counting(self: Rule, identity: Identity) -> bool:
        nonlocal calls
        calls += 1
        return original(self, identity)

    monkeypatch.setattr(Rule, "names_match", counting)
    assert m.resolve(w.ident(w.x.leaf("CN=client-4321,O=org"), w.ax)).id == "acct-4321"
    assert calls == 1


def test_principal_carries_attributes(w: World) -> None:
    m = one(Rule.for_account("p", anchors=[w.ax], cn="c", groups=["g"], attributes={"rate_limit": "5/s"}))
    p = m.resolve(w.ident(w.x.leaf("CN=c"), w.ax))
    assert p.groups == ("g",) and p.attributes["rate_limit"] == "5/s"
    assert p.to_dict()["attributes"] == {"rate_limit": "5/s"}
    with pytest.raises(TypeError):
        p.attributes["x"] = 1  # type: ignore[index]


# -- [[accounts]] -------------------------------------------------------------


@pytest.fixture()
def files(tmp_path: pathlib.Path, w: World) -> pathlib.Path:
    (tmp_path / "partner-x.pem").write_bytes(w.x.pem)
    (tmp_path / "partner-y.pem").write_bytes(w.y.pem)
    (tmp_path / "stranger.pem").write_bytes(pki.root("CN=Stranger").pem)
    return tmp_path


def load(items: Any, base: pathlib.Path, trust: TrustStore) -> IdentityMap:
    # As config loading does it: the edge reads the files the tables name, the core gets contents.
    return accounts_from_config(items, trust=trust, files=read_account_files(items, base))


def test_accounts_from_config(w: World, files: pathlib.Path) -> None:
    m = load([
        {"id": "partner-abc", "anchors": ["partner-x.pem"], "match": {"subject_dn": DN_X},
         "rate_limit": "100/s", "ip_allow": ["10.0.0.0/8"]},
        {"id": "partner-y", "anchors": ["partner-y.pem"], "match": {"cn": "y-client"}},
        {"template": "kubernetes", "anchors": ["partner-y.pem"], "id_prefix": "k8s:"},
    ], files, w.trust)
    p = m.resolve(w.ident(w.x.leaf(DN_X), w.ax))
    assert p.id == "partner-abc" and p.attributes["rate_limit"] == "100/s" and p.rule == "accounts[0]"
    # Y's forged DN falls to the Y template, never to X's account.
    assert m.resolve(w.ident(w.y.leaf(DN_X), w.ay)).id == "k8s:partner-abc-prod-client"


@pytest.mark.parametrize(
    ("items", "key", "fragment"),
    [
        ({"id": "a"}, "accounts", "array of tables"),
        ([1], "accounts[0]", "must be a table"),
        ([{"anchors": ["partner-x.pem"], "match": {"cn": "a"}}], "accounts[0].id", "id"),
        ([{"id": "a", "anchors": ["partner-x.pem"]}], "accounts[0].match", "at least one"),
        ([{"id": "a", "anchors": ["partner-x.pem"], "match": {"cn": "a"}, "colour": "red"}],
         "accounts[0].colour", "unknown key"),
        ([{"id": "a", "anchors": ["partner-x.pem"], "match": {"common_name": "a"}}],
         "accounts[0].match.common_name", "unknown match key"),
        ([{"id": "a", "anchors": ["partner-x.pem"], "match": {"subject_dn": "CN=a,,O=b"}}],
         "accounts[0].match.subject_dn", "TYPE=value"),
        ([{"id": "a", "anchors": ["partner-x.pem"], "match": {"san_ip": "10.0.0.300"}}],
         "accounts[0].match.san_ip", "not an IP"),
        ([{"id": "a", "anchors": ["partner-x.pem"], "match": {"san_dns": "*"}}],
         "accounts[0].match.san_dns", "DNS name"),
        ([{"id": "a", "anchors": ["partner-x.pem"], "match": {"thumbprint": "abc"}}],
         "accounts[0].match.thumbprint", "SHA-256"),
        ([{"id": "a", "anchors": ["partner-x.pem"], "match": {"spiffe_id": "spiffe://a/b/"}}],
         "accounts[0].match.spiffe_id", "SPIFFE"),
        ([{"id": "a", "anchors": ["partner-x.pem"], "match": {"issuer_serial": "CN=x/1"}}],
         "accounts[0].match.issuer_serial", "table"),
        ([{"id": "a", "anchors": ["partner-x.pem"],
           "match": {"issuer_serial": {"issuer": "CN=x", "serial": "xyz"}}}],
         "accounts[0].match.issuer_serial.serial", "serial"),
        ([{"id": "a", "match": {"cn": "a"}}], "accounts[0].anchors", "required"),
        ([{"id": "a", "anchors": ["missing.pem"], "match": {"cn": "a"}}], "accounts[0].anchors[0]", "cannot read"),
        ([{"id": "a", "anchors": ["stranger.pem"], "match": {"cn": "a"}}],
         "accounts[0].anchors[0]", "not one of the [trust] anchors"),
        ([{"id": "a", "anchors": "any", "match": {"cn": "a"}}], "accounts[0].anchors", "only allowed"),
        ([{"id": "a", "anchors": ["partner-x.pem"], "match": {"cn": "a"}},
          {"id": "a", "anchors": ["partner-y.pem"], "match": {"cn": "b"}}], "accounts[1].id", "already defined"),
        ([{"id": "a", "anchors": ["partner-x.pem"], "match": {"cn": "a"}},
          {"id": "b", "anchors": ["partner-x.pem", "partner-y.pem"], "match": {"cn": "A", "ou": "u"}}],
         "accounts[1].match.cn", "both match"),
        ([{"template": "ldap", "anchors": ["partner-x.pem"]}], "accounts[0].template", "unknown template"),
    ],
)
def test_config_errors_name_the_key(
    w: World, files: pathlib.Path, items: Any, key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(items, files, w.trust)
    assert info.value.key == key, str(info.value)
    assert fragment in str(info.value)


def test_the_core_is_handed_contents_not_file_names(w: World) -> None:
    # Config loading reads what account_files() lists; the core opens nothing (nothing is on disk here).
    items = [
        {"id": "a", "anchors": ["partner-x.pem", {"path": "partner-y.pem"}], "match": {"cn": "a"}},
        {"id": "b", "anchors": "any", "match": {"thumbprint": "ab" * 32}, "jwks_file": "api.jwks",
         "token": {"jwks_file": "token.jwks"}},
        "not a table",
    ]
    assert account_files(items) == [
        ("accounts[0].anchors[0]", "partner-x.pem"), ("accounts[0].anchors[1]", "partner-y.pem"),
        ("accounts[1].jwks_file", "api.jwks"), ("accounts[1].token.jwks_file", "token.jwks"),
    ]
    m = accounts_from_config(items[:1], trust=w.trust, files={"partner-x.pem": w.x.pem, "partner-y.pem": w.y.pem})
    assert m.resolve(w.ident(w.y.leaf("CN=a"), w.ay)).id == "a"
    with pytest.raises(ConfigError) as info:
        accounts_from_config(items[:1], trust=w.trust, files={"partner-x.pem": w.x.pem})
    assert info.value.key == "accounts[0].anchors[1]" and "partner-y.pem" in str(info.value)


def test_single_anchor_default(w: World, files: pathlib.Path) -> None:
    trust = TrustStore([w.x.pem])
    m = load([{"id": "a", "match": {"cn": "a"}}], files, trust)
    assert m.resolve(w.ident(w.x.leaf("CN=a"), trust.anchors[0])).id == "a"


def test_validator_uses_the_map(w: World) -> None:
    m = one(Rule.for_account("partner-abc", anchors=[w.ax], subject_dn=DN_X))
    v = Validator(w.trust, identity_map=m)
    ok = v.validate(w.x.leaf(DN_X).pem, at=pki.NOW)
    assert ok.ok and ok.principal == Principal("partner-abc") and ok.identity is not None
    bad = v.validate(w.y.leaf(DN_X).pem, at=pki.NOW)
    assert not bad.ok and bad.reason is Reason.IDENTITY_UNMAPPED
