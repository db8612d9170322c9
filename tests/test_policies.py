"""Certificate policies (RFC 5280 §6.1.3 (d)-(f), §6.1.4 (a)-(b), (h)-(j), §6.1.5; RFC 9618).

Hand-worked cases for each step, then a differential run against OpenSSL's
``openssl verify -policy_check`` on generated chains with random policies,
mappings and constraints.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from mtlscore import CertificateRejected, ConfigError, Policy, Reason, TrustStore, Validator, pki
from mtlscore.config import parse_config
from mtlscore.verify.path import KnownPaths
from mtlscore.x509 import parse_certificate

NOW = pki.NOW
ANY = "2.5.29.32.0"
P, Q, R = "1.3.6.1.4.1.55555.1.1", "1.3.6.1.4.1.55555.1.2", "1.3.6.1.4.1.55555.1.3"


policies = pki.certificate_policies
mappings = pki.policy_mappings


def constraints(require: int | None = None, inhibit_mapping: int | None = None,
                critical: bool = True) -> tuple[x509.ExtensionType, bool]:
    return x509.PolicyConstraints(require_explicit_policy=require, inhibit_policy_mapping=inhibit_mapping), critical


def inhibit_any(skip: int, critical: bool = True) -> tuple[x509.ExtensionType, bool]:
    return x509.InhibitAnyPolicy(skip), critical


def validate(leaf: pki.Issued, *inters: pki.Issued, root: pki.Issued, **policy: Any) -> Any:
    v = Validator(TrustStore([root.der]), Policy(revocation="off", **policy))
    return v.validate([leaf.der, *(c.der for c in inters)], at=NOW)


@pytest.fixture(scope="module")
def root() -> pki.Issued:
    return pki.root("CN=Policy Root")


# -- no policy required: RFC 5280 accepts whatever the certificates assert ---------------


def test_without_requirements_any_policies_are_accepted(root: pki.Issued) -> None:
    inter = root.intermediate(extensions=[policies(P)])
    assert validate(inter.leaf(extensions=[policies(Q)]), inter, root=root).ok
    assert validate(inter.leaf(), inter, root=root).ok
    bare = root.intermediate("CN=Bare CA")
    assert validate(bare.leaf(extensions=[policies(P, critical=True)]), bare, root=root).ok


# -- the user-initial-policy-set --------------------------------------------------------


def test_a_required_policy_asserted_down_the_path_is_accepted(root: pki.Issued) -> None:
    inter = root.intermediate(extensions=[policies(P, Q)])
    v = validate(inter.leaf(extensions=[policies(P)]), inter, root=root, certificate_policies=[P])
    assert v.ok, v.detail


def test_a_leaf_outside_the_required_policies_is_refused_with_its_reason(root: pki.Issued) -> None:
    inter = root.intermediate(extensions=[policies(P, Q)])
    v = validate(inter.leaf(extensions=[policies(Q)]), inter, root=root, certificate_policies=[P])
    assert v.reason is Reason.NO_VALID_POLICY and v.position == 0
    assert P in v.detail and Q in v.detail  # what was wanted, and what the path allows


def test_a_ca_without_policies_ends_the_path_for_a_required_policy(root: pki.Issued) -> None:
    inter = root.intermediate()
    v = validate(inter.leaf(extensions=[policies(P)]), inter, root=root, certificate_policies=[P])
    assert v.reason is Reason.NO_VALID_POLICY and v.position == 1


def test_any_policy_in_the_ca_passes_the_leafs_policy(root: pki.Issued) -> None:
    inter = root.intermediate(extensions=[policies(ANY)])
    assert validate(inter.leaf(extensions=[policies(P)]), inter, root=root, certificate_policies=[P]).ok
    assert not validate(inter.leaf(extensions=[policies(Q)]), inter, root=root, certificate_policies=[P]).ok
    # A leaf asserting anyPolicy is valid for every policy the user accepts (§6.1.5 (g)(iii)(3)).
    assert validate(inter.leaf(extensions=[policies(ANY)]), inter, root=root, certificate_policies=[P]).ok


def test_policies_named_any_policy_accept_any_asserted_policy_but_need_one(root: pki.Issued) -> None:
    inter = root.intermediate(extensions=[policies(Q)])
    assert validate(inter.leaf(extensions=[policies(Q)]), inter, root=root, certificate_policies=["anyPolicy"]).ok
    v = validate(inter.leaf(), inter, root=root, certificate_policies=["anyPolicy"])
    assert v.reason is Reason.NO_VALID_POLICY


def test_certificate_policies_without_explicit_requirement_follow_rfc_5280(root: pki.Issued) -> None:
    # initial-explicit-policy off: the user set only matters once a CA requires an explicit policy.
    inter = root.intermediate(extensions=[policies(Q)])
    leaf = inter.leaf(extensions=[policies(Q)])
    assert validate(leaf, inter, root=root, certificate_policies=[P], require_explicit_policy=False).ok
    assert not validate(leaf, inter, root=root, certificate_policies=[P]).ok


# -- policyConstraints, inhibitAnyPolicy (§6.1.4 (i)-(j), §6.1.5 (b)) -------------------


def test_a_ca_requiring_an_explicit_policy_refuses_a_path_without_one(root: pki.Issued) -> None:
    # The constraint applies from the next certificate on (§6.1.4 (i) follows the CA's own (f)).
    inter = root.intermediate(extensions=[constraints(require=0)])
    v = validate(inter.leaf(), inter, root=root)
    assert v.reason is Reason.NO_VALID_POLICY and v.position == 0
    with_policies = root.intermediate("CN=Policy CA", extensions=[constraints(require=0), policies(P)])
    assert validate(with_policies.leaf(extensions=[policies(P)]), with_policies, root=root).ok
    v = validate(with_policies.leaf(), with_policies, root=root)
    assert v.reason is Reason.NO_VALID_POLICY and v.position == 0


def test_require_explicit_policy_counts_certificates_below_the_ca(root: pki.Issued) -> None:
    # skipCerts counts the certificates below the CA; the wrap-up (§6.1.5 (a)) counts once
    # more, so with two below, skipCerts 2 still requires a policy at the end and 3 does not.
    for skip, ok in ((1, False), (2, False), (3, True)):
        top = root.intermediate(f"CN=Top {skip}", extensions=[constraints(require=skip), policies(P)])
        mid = top.intermediate(f"CN=Mid {skip}", extensions=[policies(P)])
        v = validate(mid.leaf(), mid, top, root=root)
        assert v.ok is ok and (ok or (v.reason is Reason.NO_VALID_POLICY and v.position == 0)), (skip, v.detail)
        assert validate(mid.leaf(extensions=[policies(P)]), mid, top, root=root).ok


def test_a_leaf_requiring_an_explicit_policy_itself(root: pki.Issued) -> None:
    inter = root.intermediate(extensions=[policies(P)])
    assert validate(inter.leaf(extensions=[policies(P), constraints(require=0)]), inter, root=root).ok
    v = validate(inter.leaf(extensions=[constraints(require=0)]), inter, root=root)
    assert v.reason is Reason.NO_VALID_POLICY


def test_inhibit_any_policy_stops_any_policy_below_the_ca(root: pki.Issued) -> None:
    inter = root.intermediate(extensions=[policies(ANY), inhibit_any(0)])
    leaf = inter.leaf(extensions=[policies(ANY)])
    assert validate(leaf, inter, root=root).ok  # nothing requires a policy
    v = validate(leaf, inter, root=root, certificate_policies=[P])
    assert v.reason is Reason.NO_VALID_POLICY and v.position == 0
    # The CA's own anyPolicy still counts (inhibitAnyPolicy applies below it).
    assert validate(inter.leaf(extensions=[policies(P)]), inter, root=root, certificate_policies=[P]).ok
    # The same with the initial flag instead of the extension: not even the CA's anyPolicy.
    plain = root.intermediate("CN=Plain", extensions=[policies(ANY)])
    v = validate(plain.leaf(extensions=[policies(P)]), plain, root=root, certificate_policies=[P],
                 inhibit_any_policy=True)
    assert v.reason is Reason.NO_VALID_POLICY and v.position == 1


@pytest.mark.parametrize("ext", ["constraints", "inhibit_any"])
def test_non_critical_policy_controls_are_processed_as_if_critical(root: pki.Issued, ext: str) -> None:
    # Real CAs mark them non-critical and OpenSSL honours them: so does the default profile.
    # inhibitAnyPolicy(0) with the leaf asserting only anyPolicy, or requireExplicitPolicy(0)
    # with the leaf asserting nothing: each leaves no valid policy when it is processed.
    made = constraints(require=0, critical=False) if ext == "constraints" else inhibit_any(0, critical=False)
    inter = root.intermediate(extensions=[made, policies(ANY)])
    leaf = inter.leaf(extensions=[policies(ANY)] if ext == "inhibit_any" else [])
    v = validate(leaf, inter, root=root, certificate_policies=[P] if ext == "inhibit_any" else None)
    assert v.reason is Reason.NO_VALID_POLICY and v.position == 0, v
    # The strict CA profile refuses the encoding itself, naming the certificate and the rule.
    v = validate(leaf, inter, root=root, strict_ca_profile=True)
    assert v.reason is Reason.MALFORMED and v.position == 1
    assert "intermediate #1" in v.detail and "not marked critical" in v.detail
    assert ("§4.2.1.11" if ext == "constraints" else "§4.2.1.14") in v.detail


# -- policyMappings (§6.1.4 (a)-(b)) --------------------------------------------------------


def test_a_mapped_policy_keeps_its_meaning_in_the_anchors_domain(root: pki.Issued) -> None:
    bridge = root.intermediate("CN=Bridge", extensions=[policies(P), mappings((P, Q))])
    inter = bridge.intermediate("CN=Partner CA", extensions=[policies(Q)])
    leaf = inter.leaf(extensions=[policies(Q)])
    assert validate(leaf, inter, bridge, root=root, certificate_policies=[P]).ok
    # Q below the bridge stands for P above it, not for Q.
    assert validate(leaf, inter, bridge, root=root, certificate_policies=[Q]).reason is Reason.NO_VALID_POLICY
    # With mapping inhibited, the mapped policy ends at the bridge.
    v = validate(leaf, inter, bridge, root=root, certificate_policies=[P], inhibit_policy_mapping=True)
    assert v.reason is Reason.NO_VALID_POLICY


def test_a_mapping_under_any_policy_creates_the_mapped_policy(root: pki.Issued) -> None:
    bridge = root.intermediate("CN=Bridge", extensions=[policies(ANY), mappings((P, Q))])
    inter = bridge.intermediate("CN=Partner CA", extensions=[policies(Q)])
    assert validate(inter.leaf(extensions=[policies(Q)]), inter, bridge, root=root, certificate_policies=[P]).ok


def test_a_mapping_under_an_inhibited_any_policy_creates_nothing(root: pki.Issued) -> None:
    # §6.1.4 (b)(1) creates a node for a mapped policy only from an anyPolicy node of the
    # same depth; with anyPolicy inhibited there is none. (OpenSSL creates one anyway.)
    bridge = root.intermediate("CN=Bridge", extensions=[policies(Q, ANY), mappings((P, R))])
    inter = bridge.intermediate("CN=Partner CA", extensions=[policies(R)])
    leaf = inter.leaf(extensions=[policies(R)])
    assert validate(leaf, inter, bridge, root=root, certificate_policies=[P]).ok
    v = validate(leaf, inter, bridge, root=root, certificate_policies=[P], inhibit_any_policy=True)
    assert v.reason is Reason.NO_VALID_POLICY and v.position == 1


def test_inhibit_policy_mapping_from_a_ca(root: pki.Issued) -> None:
    top = root.intermediate("CN=Top", extensions=[policies(P), constraints(inhibit_mapping=0)])
    bridge = top.intermediate("CN=Bridge", extensions=[policies(P), mappings((P, Q))])
    inter = bridge.intermediate("CN=Partner CA", extensions=[policies(Q)])
    v = validate(inter.leaf(extensions=[policies(Q)]), inter, bridge, top, root=root, certificate_policies=[P])
    assert v.reason is Reason.NO_VALID_POLICY


@pytest.mark.parametrize("pair", [(ANY, Q), (P, ANY)])
def test_mapping_any_policy_is_malformed(root: pki.Issued, pair: tuple[str, str]) -> None:
    bridge = root.intermediate("CN=Bridge", extensions=[policies(P), mappings(pair)])
    v = validate(bridge.leaf(extensions=[policies(P)]), bridge, root=root)
    assert v.reason is Reason.MALFORMED and v.position == 1 and "anyPolicy" in v.detail


@pytest.mark.parametrize("raw", [b"\x30\x00", b"\x30\x03\x02\x01\x01", b"\x04\x00"])
def test_an_undecodable_policy_mapping_is_malformed(root: pki.Issued, raw: bytes) -> None:
    ext = (x509.UnrecognizedExtension(ExtensionOID.POLICY_MAPPINGS, raw), True)
    bridge = root.intermediate("CN=Bridge", extensions=[policies(P), ext])
    with pytest.raises(CertificateRejected) as exc:
        parse_certificate(bridge.der)
    assert exc.value.reason is Reason.MALFORMED
    # Presented, it is junk beside the leaf: nothing else issues the leaf, and the note says why.
    v = validate(bridge.leaf(), bridge, root=root)
    assert v.reason is Reason.UNTRUSTED and any("could not be parsed" in n for n in v.notes)


# -- self-issued CAs (a key rollover under the same name) ---------------------------------


def test_a_self_issued_ca_does_not_count_against_the_constraints(root: pki.Issued) -> None:
    # §6.1.4 (h): counters step down only for certificates that are not self-issued.
    top = root.intermediate("CN=Rollover CA", extensions=[constraints(require=2), policies(P)])
    rolled = top.intermediate("CN=Rollover CA", extensions=[policies(P)])
    assert rolled.cert.subject == rolled.cert.issuer
    leaf = rolled.leaf()  # no policies: fine while explicit_policy stays above zero
    assert validate(leaf, rolled, top, root=root).ok
    other = top.intermediate("CN=Other CA", extensions=[policies(P)])
    assert validate(other.leaf(), other, top, root=root).reason is Reason.NO_VALID_POLICY


def test_a_self_issued_ca_passes_any_policy_on_despite_inhibit_any_policy(root: pki.Issued) -> None:
    # §6.1.3 (d)(2): anyPolicy in a self-issued intermediate counts even when inhibited.
    top = root.intermediate("CN=Any CA", extensions=[policies(ANY), inhibit_any(0)])
    rolled = top.intermediate("CN=Any CA", extensions=[policies(ANY)])
    leaf = rolled.leaf(extensions=[policies(P)])
    assert validate(leaf, rolled, top, root=root, certificate_policies=[P]).ok
    other = top.intermediate("CN=Not Rolled", extensions=[policies(ANY)])
    v = validate(other.leaf(extensions=[policies(P)]), other, top, root=root, certificate_policies=[P])
    assert v.reason is Reason.NO_VALID_POLICY and v.position == 1


# -- what the anchor carries is not processed (§6.1.1 (d): it is an input, not a path certificate)


def test_the_anchors_own_policy_extensions_are_not_processed() -> None:
    root = pki.root("CN=Policy Root With Constraints", extensions=[constraints(require=0), policies(P)])
    inter = root.intermediate()
    assert validate(inter.leaf(), inter, root=root).ok


# -- limits and reuse ----------------------------------------------------------------------


@pytest.mark.timeout(60)  # a hang guard, not a speed claim
def test_a_policy_graph_bomb_is_bounded(root: pki.Issued) -> None:
    # Each CA asserts 18 policies and maps each to all 18 of the next level: RFC 5280's
    # tree would grow as 18^depth; the graph holds 18 nodes per level, within the budget
    # or refused as search_limit_exceeded — never slow, never a crash.
    level = [[f"1.3.6.1.4.1.55555.{d}.{i}" for i in range(18)] for d in range(5)]
    issuer = root
    chain = []
    for d in range(4):
        pairs = [(a, b) for a in level[d] for b in level[d + 1]]
        issuer = issuer.intermediate(f"CN=Bomb {d}", extensions=[policies(*level[d]), mappings(*pairs)])
        chain.insert(0, issuer)
    leaf = issuer.leaf(extensions=[policies(*level[4])])
    v = validate(leaf, *chain, root=root, certificate_policies=[level[0][0]])
    assert v.ok or v.reason is Reason.SEARCH_LIMIT_EXCEEDED, v.detail
    tight = validate(leaf, *chain, root=root, certificate_policies=[level[0][0]], max_path_work=4)
    assert tight.reason is Reason.SEARCH_LIMIT_EXCEEDED


def test_known_paths_apply_the_policy_state_to_each_sibling(root: pki.Issued) -> None:
    inter = root.intermediate("CN=Sibling CA", extensions=[policies(P, Q), constraints(require=0)])
    siblings = [inter.leaf(f"CN=s{i}", extensions=[policies(o)] if o else []) for i, o in enumerate([P, Q, None, P])]
    policy = Policy(revocation="off", certificate_policies=[P])
    reusing = Validator(TrustStore([root.der]), policy)
    fresh = Validator(TrustStore([root.der]), policy, known_paths=KnownPaths(0))
    for leaf in siblings:
        a = reusing.validate([leaf.der, inter.der], at=NOW)
        b = fresh.validate([leaf.der, inter.der], at=NOW)
        assert (a.ok, a.reason, a.position) == (b.ok, b.reason, b.position)
    assert [reusing.validate([s.der, inter.der], at=NOW).ok for s in siblings] == [True, False, False, True]
    assert reusing.known_paths.hits > 0


# -- configuration ---------------------------------------------------------------------------


def test_config_keys(tmp_path: Path) -> None:
    cfg = parse_config({"policy": {"certificate_policies": [P, "anyPolicy"], "inhibit_any_policy": True}},
                       base_dir=tmp_path)
    assert cfg.policy.certificate_policies == frozenset([P, ANY])
    assert cfg.policy.inhibit_any_policy and cfg.policy.explicit_policy and cfg.policy.user_policies is None
    off = parse_config({"policy": {"certificate_policies": [P], "require_explicit_policy": False}}, base_dir=tmp_path)
    assert not off.policy.explicit_policy and off.policy.user_policies == frozenset([P])
    for bad in (["not-an-oid"], [], ["1"], [7]):
        with pytest.raises(ConfigError) as exc:
            parse_config({"policy": {"certificate_policies": bad}}, base_dir=tmp_path)
        assert exc.value.key == "policy.certificate_policies"
    with pytest.raises(ConfigError) as exc:
        Policy(certificate_policies=P)  # type: ignore[arg-type]
    assert exc.value.key == "certificate_policies"


# -- differential: OpenSSL's RFC 5280 policy checking ------------------------------------------

OPENSSL = shutil.which("openssl")
POOL = [P, Q, R]


def _random_policies(rng: random.Random) -> list[str] | None:
    return None if rng.random() < 0.2 else rng.sample([*POOL, ANY], rng.randint(1, 3))


def _random_ca_extensions(rng: random.Random) -> list[tuple[x509.ExtensionType, bool]]:
    chosen = _random_policies(rng)
    exts = [policies(*chosen)] if chosen else []
    asserted = [o for o in chosen or () if o != ANY]
    if asserted and rng.random() < 0.35:
        # Mappings only from policies the CA asserts itself: where a mapped policy is
        # covered only by the CA's anyPolicy, OpenSSL creates its node even when anyPolicy
        # is inhibited there, which RFC 5280 §6.1.4 (b)(1) does not (see
        # test_a_mapping_under_an_inhibited_any_policy_creates_nothing).
        exts.append(mappings(*{(rng.choice(asserted), rng.choice(POOL)) for _ in range(rng.randint(1, 3))}))
    if rng.random() < 0.3:
        require = rng.choice([None, 0, 1, 2])
        inhibit = rng.choice([None, 0, 1])
        if require is not None or inhibit is not None:
            exts.append(constraints(require=require, inhibit_mapping=inhibit))
    if rng.random() < 0.2:
        exts.append(inhibit_any(rng.choice([0, 1])))
    return exts


def _openssl_accepts(d: Path, root: pki.Issued, chain: list[pki.Issued], leaf: pki.Issued,
                     flags: dict[str, Any]) -> tuple[bool, str]:
    (d / "root.pem").write_bytes(root.pem)
    (d / "chain.pem").write_bytes(b"".join(c.pem for c in chain))
    (d / "leaf.pem").write_bytes(leaf.pem)
    args = [OPENSSL, "verify", "-policy_check", "-purpose", "sslclient", "-attime", str(int(NOW.timestamp())),
            "-CAfile", str(d / "root.pem"), "-untrusted", str(d / "chain.pem")]
    # RFC 5280's default user-initial-policy-set is any-policy; OpenSSL's is empty
    # (every explicit-policy path then fails), so name anyPolicy for it.
    for oid in flags.get("certificate_policies") or (ANY,):
        args += ["-policy", oid]
    if flags.get("require_explicit_policy"):
        args.append("-explicit_policy")
    if flags.get("inhibit_any_policy"):
        args.append("-inhibit_any")
    if flags.get("inhibit_policy_mapping"):
        args.append("-inhibit_map")
    out = subprocess.run([*args, str(d / "leaf.pem")], capture_output=True, text=True, timeout=30)
    return out.returncode == 0, (out.stdout + out.stderr).strip()


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed (CI installs it)")
def test_differential_against_openssl_policy_check(tmp_path: Path) -> None:
    rng = random.Random(9618)
    root = pki.root("CN=Differential Policy Root")
    outcomes = {True: 0, False: 0}
    for case in range(240):
        depth = rng.randint(1, 4)
        chain: list[pki.Issued] = []
        issuer = root
        for level in range(depth):
            # No self-issued CAs here: OpenSSL calls a certificate self-issued only when its
            # AKI also names its own key (EXFLAG_SI), RFC 5280 §6.1 whenever subject and
            # issuer names are the same — see test_a_self_issued_ca_* for those.
            issuer = issuer.intermediate(f"CN=CA {case}.{level}", extensions=_random_ca_extensions(rng))
            chain.insert(0, issuer)
        chosen = _random_policies(rng)
        leaf_exts = [policies(*chosen)] if chosen else []
        if rng.random() < 0.1:
            leaf_exts.append(constraints(require=0))
        leaf = issuer.leaf(f"CN=leaf {case}", extensions=leaf_exts)
        flags: dict[str, Any] = {
            "certificate_policies": rng.sample(POOL, rng.randint(1, 2)) if rng.random() < 0.5 else None,
            "require_explicit_policy": rng.random() < 0.5,
            "inhibit_any_policy": rng.random() < 0.25,
            "inhibit_policy_mapping": rng.random() < 0.25,
        }
        theirs, why = _openssl_accepts(tmp_path, root, chain, leaf, flags)
        ours = validate(leaf, *chain, root=root, **flags)
        assert ours.ok == theirs, f"case {case}: {flags} mtlscore {ours.reason}: {ours.detail} / openssl: {why}"
        if not ours.ok:
            assert ours.reason in (Reason.NO_VALID_POLICY, Reason.MALFORMED), ours.detail
        outcomes[ours.ok] += 1
    # The generator reaches both outcomes often enough to mean something.
    assert min(outcomes.values()) >= 50, outcomes


def test_presenting_the_root_too_changes_nothing(root: pki.Issued) -> None:
    # The anchor is not a path certificate whether or not the client sends it along.
    inter = root.intermediate("CN=Presented CA", extensions=[policies(P), constraints(require=1)])
    for leaf_policies, ok in (((P,), True), ((), False)):
        leaf = inter.leaf(extensions=[policies(*leaf_policies)] if leaf_policies else [])
        short = validate(leaf, inter, root=root)
        full = validate(leaf, inter, root, root=root)
        assert (short.ok, short.reason, short.position) == (full.ok, full.reason, full.position)
        assert short.ok is ok


def test_known_path_reuse_never_changes_a_policy_verdict() -> None:
    # Random policy PKIs, each with several sibling leaves: a validator that reuses the
    # path learnt from one sibling and one that never reuses give the same verdicts.
    rng = random.Random(5280)
    root = pki.root("CN=Reuse Policy Root")
    reused = 0
    for case in range(40):
        chain: list[pki.Issued] = []
        issuer = root
        for level in range(rng.randint(1, 3)):
            issuer = issuer.intermediate(f"CN=Reuse CA {case}.{level}", extensions=_random_ca_extensions(rng))
            chain.insert(0, issuer)
        flags: dict[str, Any] = {
            "certificate_policies": rng.sample(POOL, rng.randint(1, 2)) if rng.random() < 0.5 else None,
            "require_explicit_policy": rng.random() < 0.5,
            "inhibit_any_policy": rng.random() < 0.25,
            "inhibit_policy_mapping": rng.random() < 0.25,
        }
        policy = Policy(revocation="off", **flags)
        reusing = Validator(TrustStore([root.der]), policy)
        fresh = Validator(TrustStore([root.der]), policy, known_paths=KnownPaths(0))
        for sibling in range(6):
            chosen = _random_policies(rng)
            exts = [policies(*chosen)] if chosen else []
            if rng.random() < 0.15:
                exts.append(constraints(require=0))
            leaf = issuer.leaf(f"CN=sibling {case}.{sibling}", extensions=exts)
            presented = [leaf.der, *(c.der for c in chain)]
            a, b = reusing.validate(presented, at=NOW), fresh.validate(presented, at=NOW)
            assert (a.ok, a.reason, a.position) == (b.ok, b.reason, b.position), (case, sibling, a.detail, b.detail)
            assert "internal error" not in a.detail
        reused += reusing.known_paths.hits
    assert reused > 40  # the reuse really happened, often


# -- which policies a path is valid for (Validator.valid_policies) ----------------------------


def test_valid_policies_names_the_required_ones_the_path_holds(root: pki.Issued) -> None:
    inter = root.intermediate("CN=Which CA", extensions=[policies(P, Q, R)])
    leaf = inter.leaf(extensions=[policies(P, R)])
    v = Validator(TrustStore([root.der]), Policy(revocation="off", certificate_policies=[P, Q]))
    verdict = v.validate([leaf.der, inter.der], at=NOW)
    assert verdict.ok and v.valid_policies(verdict) == frozenset([P])
    anything = Validator(TrustStore([root.der]), Policy(revocation="off"))
    assert anything.valid_policies(anything.validate([leaf.der, inter.der], at=NOW)) == frozenset([P, R])
    # A leaf asserting anyPolicy holds every required policy its CAs allow.
    any_leaf = inter.leaf("CN=any", extensions=[policies(ANY)])
    assert v.valid_policies(v.validate([any_leaf.der, inter.der], at=NOW)) == frozenset([P, Q])
    # No policies anywhere: none; a rejection: none.
    plain = root.intermediate("CN=Plain Which")
    assert anything.valid_policies(anything.validate([plain.leaf().der, plain.der], at=NOW)) == frozenset()
    assert v.valid_policies(v.validate([plain.leaf().der, plain.der], at=NOW)) == frozenset()


def test_valid_policies_are_named_in_the_anchors_domain(root: pki.Issued) -> None:
    bridge = root.intermediate("CN=Naming Bridge", extensions=[policies(P), mappings((P, Q))])
    inter = bridge.intermediate("CN=Naming CA", extensions=[policies(Q)])
    leaf = inter.leaf(extensions=[policies(Q)])
    v = Validator(TrustStore([root.der]), Policy(revocation="off"))
    verdict = v.validate([leaf.der, inter.der, bridge.der], at=NOW)
    assert v.valid_policies(verdict) == frozenset([P])  # Q below the bridge is P above it
