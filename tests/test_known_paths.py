"""KnownPaths: the next client certificate under the same CAs reuses the path the builder found.

The contract is that reuse never changes a verdict: every test here validates
the same input twice — once with a validator that has learnt the path from a
sibling, once with one that never reuses anything (``KnownPaths(0)``) — and
requires the same decision, reason, position, path, anchor, notes and identity.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509

from mtlscore import Policy, TrustStore, Validator, pki
from mtlscore.decision.verdict import Verdict
from mtlscore.identity.identity import Identity
from mtlscore.reasons import Reason
from mtlscore.verify.path import KnownPaths
from mtlscore.verify.policy import SERVER_AUTH
from mtlscore.x509.cert import PARSE_CACHE, parse_certificate

NOW = pki.NOW
UNKNOWN = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")


def _summary(v: Verdict) -> tuple[Any, ...]:
    ident = v.identity.to_dict() if v.identity is not None else None
    return (v.ok, v.reason, v.position, tuple(c.sha256 for c in v.path),
            v.anchor.spki_sha256 if v.anchor else None, v.notes, ident, v.principal)


def _pair(trust: TrustStore, policy: Policy | None = None, **kw: Any) -> tuple[Validator, Validator]:
    """A validator that reuses paths and one that never does, otherwise identical."""
    reuse = Validator(trust, policy or Policy(), **kw)
    fresh = Validator(trust, policy or Policy(), known_paths=KnownPaths(0), **kw)
    return reuse, fresh


def _same(reuse: Validator, fresh: Validator, chain: Any, **kw: Any) -> Verdict:
    a = reuse.validate(chain, **kw)
    b = fresh.validate(chain, **kw)
    assert _summary(a) == _summary(b)
    assert fresh.known_paths.hits == 0
    return a


@pytest.fixture(scope="module")
def pkis() -> dict[str, pki.Issued]:
    root = pki.root("CN=KP Root", key="rsa2048")
    inter = root.intermediate("CN=KP Intermediate", key="rsa2048")
    return {"root": root, "inter": inter}


def test_a_sibling_reuses_the_path_and_gets_the_same_verdict(pkis: dict[str, pki.Issued]) -> None:
    inter = pkis["inter"]
    reuse, fresh = _pair(TrustStore([pkis["root"].der]))
    first = _same(reuse, fresh, inter.leaf("one.example").chain_der, at=NOW)
    assert first.ok and reuse.known_paths.hits == 0 and len(reuse.known_paths) == 1
    for i in range(5):
        v = _same(reuse, fresh, inter.leaf(f"sibling-{i}.example").chain_der, at=NOW)
        assert v.ok
        assert v.identity is not None and v.identity.common_name == f"sibling-{i}.example"
    assert reuse.known_paths.hits == 5


@pytest.mark.parametrize(
    ("make_leaf", "reason", "position"),
    [
        (lambda i: i.leaf("expired", not_after=NOW - timedelta(days=1)), Reason.EXPIRED, 0),
        (lambda i: i.leaf("not-yet", not_before=NOW + timedelta(days=1)), Reason.NOT_YET_VALID, 0),
        (lambda i: i.leaf("server-only", eku=[SERVER_AUTH]), Reason.INVALID_EKU, 0),
        (lambda i: i.leaf("weak", key="rsa-1024"), Reason.RSA_KEY_TOO_SMALL, 0),
        (lambda i: i.leaf("ca-ku", key_usage=pki.key_usage("key_cert_sign", "digital_signature")),
         Reason.LEAF_KEY_USAGE, 0),
        (lambda i: i.leaf("critical", extensions=[(UNKNOWN, True)]), Reason.UNHANDLED_CRITICAL_EXTENSION, 0),
        # Issued under the intermediate's name by another key: the known issuer's key does not verify it.
        (lambda i: i.leaf("impostor", signer=pki.new_key("rsa2048")), Reason.BAD_SIGNATURE, 0),
    ],
)
def test_a_bad_sibling_falls_back_and_is_rejected_as_without_reuse(
    pkis: dict[str, pki.Issued], make_leaf: Any, reason: Reason, position: int
) -> None:
    inter = pkis["inter"]
    reuse, fresh = _pair(TrustStore([pkis["root"].der]))
    assert _same(reuse, fresh, inter.leaf("good").chain_der, at=NOW).ok
    bad = _same(reuse, fresh, make_leaf(inter).chain_der, at=NOW)
    assert not bad.ok and bad.reason is reason and bad.position == position
    assert reuse.known_paths.hits == 0


def test_name_constraints_handed_down_by_the_cas_still_apply(pkis: dict[str, pki.Issued]) -> None:
    root = pkis["root"]
    nc_inter = root.intermediate("CN=KP Constrained", key="rsa2048",
                                 permitted=[x509.DNSName("allowed.example")])
    reuse, fresh = _pair(TrustStore([root.der]))
    assert _same(reuse, fresh, nc_inter.leaf("a", san_dns=["x.allowed.example"]).chain_der, at=NOW).ok
    assert _same(reuse, fresh, nc_inter.leaf("b", san_dns=["y.allowed.example"]).chain_der, at=NOW).ok
    assert reuse.known_paths.hits == 1
    bad = _same(reuse, fresh, nc_inter.leaf("c", san_dns=["evil.example"]).chain_der, at=NOW)
    assert bad.reason is Reason.NAME_CONSTRAINTS_VIOLATION


def test_not_reused_outside_the_cas_validity(pkis: dict[str, pki.Issued]) -> None:
    root = pkis["root"]
    short = root.intermediate("CN=KP Short-lived", key="rsa2048", not_after=NOW + timedelta(days=2))
    reuse, fresh = _pair(TrustStore([root.der]))
    assert _same(reuse, fresh, short.leaf("a").chain_der, at=NOW).ok
    later = NOW + timedelta(days=3)
    v = _same(reuse, fresh, short.leaf("b", not_after=NOW + timedelta(days=30)).chain_der, at=later)
    assert v.reason is Reason.EXPIRED and v.position == 1
    assert reuse.known_paths.hits == 0


def test_a_trust_or_policy_change_is_a_new_epoch(pkis: dict[str, pki.Issued]) -> None:
    inter = pkis["inter"]
    trust = TrustStore([pkis["root"].der])
    v = Validator(trust, Policy())
    assert v.validate(inter.leaf("a").chain_der, at=NOW).ok
    assert v.validate(inter.leaf("b").chain_der, at=NOW).ok
    assert v.known_paths.hits == 1
    trust.add_anchor(pki.root("CN=KP Other Root").der)
    assert v.validate(inter.leaf("c").chain_der, at=NOW).ok
    assert v.known_paths.hits == 1  # learnt again under the new epoch
    v.policy = v.policy.evolve(min_rsa_bits=4096)
    refused = v.validate(inter.leaf("d").chain_der, at=NOW)
    assert refused.reason is Reason.RSA_KEY_TOO_SMALL
    assert v.known_paths.hits == 1


def test_other_presented_certificates_are_another_search(pkis: dict[str, pki.Issued]) -> None:
    inter, root = pkis["inter"], pkis["root"]
    reuse, fresh = _pair(TrustStore([root.der]))
    assert _same(reuse, fresh, inter.leaf("a").chain_der, at=NOW).ok
    # The same leaf shape with an extra (unrelated) presented certificate: not the same key.
    extra = pki.root("CN=KP Unrelated").der
    assert _same(reuse, fresh, [*inter.leaf("b").chain_der, extra], at=NOW).ok
    assert reuse.known_paths.hits == 0


def test_a_sibling_under_another_issuer_name_is_another_search() -> None:
    # Two intermediates with one key (so one subjectKeyIdentifier, and their leaves one
    # authorityKeyIdentifier), both presented with every leaf: the issuer name alone tells
    # their leaves' searches apart. A path learnt under one must not be reused for the
    # other: its key would verify the leaf, and the path would chain the wrong name.
    root = pki.root("CN=KP Twin Root")
    key = pki.new_key("ec")
    twin_a = root.intermediate("CN=KP Twin A", key=key)
    twin_b = root.intermediate("CN=KP Twin B", key=key)
    reuse, fresh = _pair(TrustStore([root.der]))
    for ca, name in ((twin_a, "twin-1"), (twin_b, "twin-2"), (twin_a, "twin-3"), (twin_b, "twin-4")):
        v = _same(reuse, fresh, [ca.leaf(name).der, twin_a.der, twin_b.der], at=NOW)
        assert v.ok and v.path[1].der == ca.der
    assert reuse.known_paths.hits == 2  # each twin's second leaf reused its own path


def test_an_issuer_name_encoded_otherwise_is_learnt_under_its_own_bytes(pkis: dict[str, pki.Issued]) -> None:
    # Known paths are keyed by the issuer name's DER: a leaf whose issuer field names its CA
    # in another encoding (PrintableString, other case: the same name under RFC 5280 §7.1)
    # is not along the path learnt from its CA's other leaves; its own search decides, as it
    # would without reuse, and is learnt for the leaves encoded like it.
    inter, root = pkis["inter"], pkis["root"]
    other = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "kp  intermediate",
                                          _type=x509.name._ASN1Type.PrintableString)])
    assert parse_certificate(inter.leaf("enc-0", issuer_name=other).der).issuer_key == \
        parse_certificate(inter.der).subject_key
    reuse, fresh = _pair(TrustStore([root.der]))
    assert _same(reuse, fresh, inter.leaf("enc-1").chain_der, at=NOW).ok
    odd = [inter.leaf(f"enc-{i}", issuer_name=other).der for i in (2, 3)]
    assert _same(reuse, fresh, [odd[0], inter.der], at=NOW).ok
    assert reuse.known_paths.hits == 0
    assert _same(reuse, fresh, [odd[1], inter.der], at=NOW).ok
    assert reuse.known_paths.hits == 1 and len(reuse.known_paths) == 2


def test_a_leaf_accepted_along_a_known_path_has_its_fingerprints(pkis: dict[str, pki.Issued]) -> None:
    # A leaf accepted along a known path is never digested on the way (its SHA-256 is made on
    # first read): what it is known by afterwards is still the SHA-256 of its DER (RFC 8705 §3.1).
    inter, root = pkis["inter"], pkis["root"]
    v = Validator(TrustStore([root.der]), Policy())
    assert v.validate(inter.leaf("fp-1").chain_der, at=NOW).ok
    der = inter.leaf("fp-2").der
    verdict = v.validate([der, inter.der], at=NOW)
    assert verdict.ok and v.known_paths.hits == 1
    digest = hashlib.sha256(der).digest()
    assert verdict.path[0].sha256 == digest
    assert verdict.identity is not None and verdict.identity.sha256_hex == digest.hex()
    assert verdict.identity.x5t_s256 == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    # And an allowlist still finds it by that digest.
    allow = Validator(TrustStore([root.der], allowlisted=[der]), Policy())
    assert allow.validate([der], at=NOW).ok


def test_a_search_that_backtracked_is_not_learnt() -> None:
    # Two intermediates with the same name and a leaf without an authorityKeyIdentifier:
    # the presented impostor is tried first, its key does not verify the leaf, and the
    # builder goes on to the pool's real one. A search with a detour is not reused.
    root = pki.root("CN=KP BT Root")
    good = root.intermediate("CN=KP BT Inter")
    rogue = pki.make("CN=KP BT Inter", issuer=pki.root("CN=KP BT Rogue"), ca=True)
    trust = TrustStore([root.der], intermediates=[good.der])
    reuse, fresh = _pair(trust)
    for name in ("bt-1", "bt-2"):
        v = _same(reuse, fresh, [good.leaf(name, aki=False).der, rogue.der], at=NOW)
        assert v.ok and v.path[1].sha256 == parse_certificate(good.der).sha256
    assert len(reuse.known_paths) == 0 and reuse.known_paths.hits == 0
    # The same leaves presented with their real intermediate: straight, so learnt.
    assert _same(reuse, fresh, [good.leaf("bt-3", aki=False).der, good.der], at=NOW).ok
    assert len(reuse.known_paths) == 1


def test_a_leaf_with_an_anchor_key_takes_the_full_search() -> None:
    root = pki.root("CN=KP Self Root", key="rsa2048")
    inter = root.intermediate("CN=KP Self Inter", key="rsa2048")
    reuse, fresh = _pair(TrustStore([root.der]))
    assert _same(reuse, fresh, inter.leaf("a").chain_der, at=NOW).ok
    # A leaf carrying the root's own key: the builder first checks whether the leaf is
    # itself an anchor (same name and key), so reuse steps aside for it.
    same_key = pki.make("CN=KP Self Leaf", issuer=inter, ca=False, key=root.key)
    assert _same(reuse, fresh, same_key.chain_der, at=NOW).ok
    assert reuse.known_paths.hits == 0
    # A leaf carrying its issuer's key would repeat a (name, key) pair on the path: also the full search.
    loop = pki.make("CN=KP Self Loop", issuer=inter, ca=False, key=inter.key)
    _same(reuse, fresh, loop.chain_der, at=NOW)
    assert reuse.known_paths.hits == 0


def test_revocation_data_keeps_the_machine_in_charge(pkis: dict[str, pki.Issued]) -> None:
    inter, root = pkis["inter"], pkis["root"]
    good, revoked = inter.leaf("kept"), inter.leaf("revoked")
    crl = inter.crl([revoked])
    root_crl = root.crl([])
    reuse, fresh = _pair(TrustStore([root.der]), Policy(revocation="hard"), crls=[crl, root_crl])
    assert _same(reuse, fresh, good.chain_der, at=NOW).ok
    v = _same(reuse, fresh, revoked.chain_der, at=NOW)
    assert v.reason is Reason.REVOKED
    # The path was reused for building; revocation was still checked.
    assert reuse.known_paths.hits == 1


def test_hard_fail_without_data_is_still_unavailable(pkis: dict[str, pki.Issued]) -> None:
    inter, root = pkis["inter"], pkis["root"]
    reuse, fresh = _pair(TrustStore([root.der]), Policy(revocation="soft", revocation_leaf="hard"))
    first = _same(reuse, fresh, inter.leaf("a").chain_der, at=NOW)
    assert first.reason is Reason.REVOCATION_UNAVAILABLE
    second = _same(reuse, fresh, inter.leaf("b").chain_der, at=NOW)
    assert second.reason is Reason.REVOCATION_UNAVAILABLE


def _with_revocation_data(source: str, root: pki.Issued, inter: pki.Issued,
                          leaf: pki.Issued) -> tuple[Validator, dict[str, Any]]:
    """A soft-fail validator with one source of revocation data that revokes ``leaf``, and the per-call arguments."""
    from ocsp_helpers import ocsp_response

    from mtlscore.revocation.checker import RevocationCache
    from mtlscore.verify.machine import NeedCRL

    trust, soft = TrustStore([root.der]), Policy(revocation="soft", revocation_ca="off")
    crl = inter.crl(revoked=[leaf], next_update=NOW + timedelta(hours=1))
    if source == "validator-crls":
        return Validator(trust, soft, crls=[crl]), {}
    if source == "per-call-crls":
        return Validator(trust, soft), {"crls": [crl]}
    if source == "per-call-ocsp":
        return Validator(trust, soft), {"ocsp_responses": [ocsp_response(leaf, inter, status="revoked")]}
    # A revocation cache another validator filled (fetched answers), shared with one that does not fetch.
    cache = RevocationCache()
    fetching = Validator(trust, soft.evolve(fetch=True), cache=cache)
    run = fetching.start(inter.leaf("fills the cache", crl_urls=["http://127.0.0.1:1/kp.crl"]).chain_der, at=NOW)
    event = run.next_event()
    assert isinstance(event, NeedCRL)
    run.send(event, crl)
    assert isinstance(run.next_event(), Verdict) and len(cache) == 1
    return Validator(trust, soft, cache=cache), {}


@pytest.mark.parametrize("source", ["validator-crls", "per-call-crls", "per-call-ocsp", "shared-cache"])
def test_soft_fail_with_revocation_data_is_not_the_plain_call(pkis: dict[str, pki.Issued], source: str) -> None:
    # validate()'s common call (DER certificates, soft-fail, nothing to consult) skips the
    # revocation machinery; any revocation data (RFC 5280 §6.3: CRLs given to the validator or
    # per call, stapled OCSP, answers cached from a fetch) makes it another call, where a
    # revoked leaf is rejected, also after a sibling taught the validator its path.
    inter, root = pkis["inter"], pkis["root"]
    leaf = inter.leaf(f"revoked via {source}", crl_urls=["http://127.0.0.1:1/kp.crl"])
    sibling = inter.leaf(f"sibling via {source}", crl_urls=["http://127.0.0.1:1/kp.crl"])
    v, per_call = _with_revocation_data(source, root, inter, leaf)
    assert v.validate(sibling.chain_der, at=NOW).ok
    assert v.validate(leaf.chain_der, at=NOW, **per_call).reason is Reason.REVOKED


def test_identity_map_resolution_is_the_same(pkis: dict[str, pki.Issued]) -> None:
    from mtlscore.identity.identity_map import IdentityMap, Rule

    inter, root = pkis["inter"], pkis["root"]
    trust = TrustStore([root.der])
    idmap = IdentityMap([Rule.for_account("acct-b", anchors=[trust.anchors[0]], cn="b.example")])
    reuse, fresh = _pair(trust, identity_map=idmap)
    assert _same(reuse, fresh, inter.leaf("a.example").chain_der, at=NOW).reason is Reason.IDENTITY_UNMAPPED
    mapped = _same(reuse, fresh, inter.leaf("b.example").chain_der, at=NOW)
    assert mapped.ok and mapped.principal is not None


def test_the_verdict_identity_is_built_once_on_first_read(pkis: dict[str, pki.Issued]) -> None:
    inter = pkis["inter"]
    v = Validator(TrustStore([pkis["root"].der]), Policy())
    leaf = inter.leaf("lazy.example")
    verdict = v.validate(leaf.chain_der, at=NOW)
    first = verdict.identity
    assert first is verdict.identity  # computed once, then kept
    assert first == Identity.from_certificate(verdict.path[0], verdict.anchor)
    assert first is not None and first.anchor is not None and first.common_name == "lazy.example"


def test_client_certificates_stay_out_of_the_parse_cache(pkis: dict[str, pki.Issued]) -> None:
    inter = pkis["inter"]
    v = Validator(TrustStore([pkis["root"].der]), Policy())
    leaf = inter.leaf("not-cached")
    assert v.validate(leaf.chain_der, at=NOW).ok
    assert PARSE_CACHE.peek(leaf.der) is None
    assert PARSE_CACHE.peek(inter.der) is not None


# -- randomised: whatever the sibling, the time and the presentation, reuse changes nothing --------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    root = pki.root("CN=KPH Root", key="rsa2048", not_after=NOW + timedelta(days=400))
    inters = {
        "plain": root.intermediate("CN=KPH Inter", key="rsa2048", not_after=NOW + timedelta(days=30)),
        "nc": root.intermediate("CN=KPH NC Inter", permitted=[x509.DNSName("ok.example")]),
        "pathlen0": root.intermediate("CN=KPH PL0 Inter", path_length=0),
    }
    trust = TrustStore([root.der], intermediates=[inters["pathlen0"].der])
    return {"root": root, "inters": inters, "trust": trust}


_DEFECTS: dict[str, dict[str, Any]] = {
    "none": {},
    "expired": {"not_after": NOW - timedelta(days=1)},
    "future": {"not_before": NOW + timedelta(days=2)},
    "server-eku": {"eku": [SERVER_AUTH]},
    "no-eku": {"eku": None},
    "bad-san": {"san_dns": ["evil.example"]},
    "good-san": {"san_dns": ["a.ok.example"]},
    "critical-unknown": {"extensions": [(UNKNOWN, True)]},
    "no-aki": {"aki": False},
    "ca-leaf": {"ca": True},
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["plain", "nc", "pathlen0"]),
            st.sampled_from(sorted(_DEFECTS)),
            st.sampled_from(["full", "leaf-only", "with-root"]),
            st.sampled_from([0, 20, 29, 31, 60]),
        ),
        min_size=2,
        max_size=6,
    )
)
def test_reuse_never_changes_a_verdict(world: dict[str, Any], steps: list[tuple[str, str, str, int]]) -> None:
    reuse, fresh = _pair(world["trust"])
    for n, (inter_name, defect, shape, days) in enumerate(steps):
        inter = world["inters"][inter_name]
        leaf = inter.leaf(f"h{n}.example", **_DEFECTS[defect])
        chain = {"full": [leaf.der, inter.der], "leaf-only": [leaf.der],
                 "with-root": [leaf.der, inter.der, world["root"].der]}[shape]
        verdict = _same(reuse, fresh, chain, at=NOW + timedelta(days=days))
        _RANDOMISED["accepted"] += verdict.ok
    _RANDOMISED["reused"] += reuse.known_paths.hits


_RANDOMISED = {"reused": 0, "accepted": 0}


def test_the_randomised_run_did_reuse_paths() -> None:
    # Runs after the property above (file order): it must have exercised reuse, not only fallbacks.
    assert _RANDOMISED["reused"] > 0 and _RANDOMISED["accepted"] > 0


def test_verdicts_pickle_with_their_identity(pkis: dict[str, pki.Issued]) -> None:
    import pickle

    v = Validator(TrustStore([pkis["root"].der]), Policy()).validate(pkis["inter"].leaf("p.example").chain_der, at=NOW)
    again = pickle.loads(pickle.dumps(v))  # identity not read yet: it travels as "derive on first read"
    assert again.ok and again.identity == v.identity and again.identity is not None
    assert again.identity.common_name == "p.example"


def test_a_failed_reuse_is_not_tried_again_by_the_machine(pkis: dict[str, pki.Issued]) -> None:
    from mtlscore.verify.signature import SignatureCache

    inter = pkis["inter"]
    sigs = SignatureCache()
    v = Validator(TrustStore([pkis["root"].der]), Policy(), signatures=sigs)
    assert v.validate(inter.leaf("good").chain_der, at=NOW).ok
    before = sigs.verifications
    impostor = inter.leaf("impostor", signer=pki.new_key("rsa2048"))
    assert v.validate(impostor.chain_der, at=NOW).reason is Reason.BAD_SIGNATURE
    # Once on the known path, once in the full search; not a third time on the known path again.
    assert sigs.verifications - before == 2
