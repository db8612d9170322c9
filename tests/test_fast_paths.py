"""The common case's short cuts decide exactly as the full checks and the machine do.

``verify/plain.py`` answers the common client certificate (``plain_end_entity``)
and the common CA (``plain_ca``) in one pass and hands everything else to the
full checks; ``verify/path.py``'s search first tries its first descent without its
bookkeeping; ``Validator.validate`` takes a quick route (the known path, or the
search, without the machine) when revocation can only accept silently. Each
test holds the short cut beside the general route over certificates carrying
every defect the suite can make, under several policies and times, and requires:

- a one-pass answer never says "passes" where a full check fails;
- the public entry points give the same failure (reason, detail, position) or
  the same result as the full checks;
- the common case does take the short cut (otherwise the comparison would be
  vacuous).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_differential import Generated, chains

from mtlscore import Policy, TrustStore, Validator, Verdict, pki
from mtlscore.verify import Anchor, checks, plain
from mtlscore.verify import path as search
from mtlscore.verify.checks import (
    HandedDown,
    PathFailure,
    check_end_entity,
    check_end_entity_fully,
    check_issuers,
)
from mtlscore.verify.path import KnownPaths
from mtlscore.verify.policy import ANY_EKU, SERVER_AUTH
from mtlscore.x509 import parse_certificate

NOW = pki.NOW
DAY = timedelta(days=1)
UNKNOWN = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.7"), b"\x05\x00")
POLICY_OID = "1.3.6.1.4.1.55555.9.1"

# Keywords of pki's factory: a defect (or an unusual trait) of one certificate.
COMMON: dict[str, dict[str, Any]] = {
    "plain_ec": {},
    "plain_rsa": {"key": "rsa"},
    "p384": {"key": "ec-p384"},
    "rsa3072": {"key": "rsa-3072"},
    "expired": {"not_after": NOW - DAY, "not_before": NOW - 30 * DAY},
    "not_yet_valid": {"not_before": NOW + DAY},
    "sha384": {"hash_alg": "sha384"},
    "sha224": {"hash_alg": "sha224"},
    "sha1": {"hash_alg": "sha1"},
    "small_rsa": {"key": "rsa-1024"},
    "p521": {"key": "ec-p521"},
    "ed25519": {"key": "ed25519"},
    "critical_unknown": {"extensions": [(UNKNOWN, True)]},
    "critical_aki": {"aki": False, "extensions": [(x509.AuthorityKeyIdentifier(b"\x01" * 20, None, None), True)]},
    "no_aki": {"aki": False},
    "serial_zero": {"serial": 0},
    "serial_wide": {"serial": 1 << 170},
    "policies": {"extensions": [pki.certificate_policies(POLICY_OID)]},
    "no_key_usage": {"key_usage": None},
    "server_eku": {"eku": [SERVER_AUTH]},
    "any_eku": {"eku": [ANY_EKU]},
    "no_eku": {"eku": None},
    "permitted": {"permitted": [x509.DNSName("partner.example")]},
}
LEAF_ONLY: dict[str, dict[str, Any]] = {
    "ku_without_digital_signature": {"key_usage": pki.key_usage("key_encipherment")},
    "ku_cert_sign": {"key_usage": pki.key_usage("digital_signature", "key_cert_sign")},
    "empty_subject_critical_san": {"cn": x509.Name([]), "san_dns": ["client.example"], "san_critical": True},
    "empty_subject": {"cn": x509.Name([]), "san_dns": ["client.example"]},
    "a_ca": {"ca": True},
}
CA_ONLY: dict[str, dict[str, Any]] = {
    "not_ca": {"ca": False, "key_usage": pki.key_usage("key_cert_sign")},
    "no_basic_constraints": {"ca": None, "key_usage": pki.key_usage("key_cert_sign")},
    "crl_sign_only": {"key_usage": pki.key_usage("crl_sign")},
    "path_length_0": {"path_length": 0},
    "pss": {"key": "rsa", "pss": True},
    "non_critical_bc": {"bc_critical": False},
    "no_ski": {"ski": False},
}
POLICIES: dict[str, Policy] = {
    "default": Policy(),
    "lenient_eku": Policy(require_leaf_eku=False),
    "no_eku": Policy(required_eku=None),
    "no_digital_signature": Policy(require_leaf_digital_signature=False, check_ca_eku=False),
    "legacy": Policy(signature_hashes=frozenset({"sha1", "sha224", "sha256", "sha384", "sha512"}),
                     key_types=frozenset({"rsa", "ec", "ed25519"}), curves=frozenset({"P-256", "P-384", "P-521"}),
                     min_rsa_bits=1024),
    "rsa3072": Policy(min_rsa_bits=3072, max_rsa_bits=3072),
    "strict": Policy(strict_ca_profile=True),
    "explicit": Policy(certificate_policies=frozenset([POLICY_OID])),
    "skewed": Policy(clock_skew=timedelta(days=2)),
}
TIMES = (NOW, NOW + 400 * DAY, NOW - 40 * DAY)


@functools.cache
def pkis() -> dict[str, Any]:
    """A root and intermediate (RSA, so that PSS children can be made), and every variant below them."""
    root = pki.root("CN=Fast Root", key="rsa")
    inter = root.intermediate("CN=Fast Issuing", key="rsa")
    leaves = {}
    for name, kw in {**COMMON, **LEAF_ONLY, "pss": {"pss": True}}.items():
        kw = dict(kw)
        cn = kw.pop("cn", f"client {name}")
        leaves[name] = inter.leaf(cn, san_dns=kw.pop("san_dns", ["client.example"]), **kw)
    cas = {name: root.intermediate(f"CN=Fast CA {name}", **({"key": "rsa"} | kw))
           for name, kw in {**COMMON, **CA_ONLY}.items()}
    anchors = {name: pki.root(f"CN=Fast Anchor {name}", **({"key": "rsa"} | kw))
               for name, kw in {**COMMON, **CA_ONLY}.items() if name != "pss"}
    return {"root": root, "inter": inter, "leaves": leaves, "cas": cas, "anchors": anchors}


def _outcome(check: Any, *args: Any, **kw: Any) -> Any:
    try:
        return ("passed", check(*args, **kw))
    except PathFailure as failure:
        return ("failed", failure)


def _handed(policy: Policy, at: datetime) -> HandedDown:
    p = pkis()
    return check_issuers([parse_certificate(p["leaves"]["plain_ec"].der), parse_certificate(p["inter"].der)],
                         Anchor(parse_certificate(p["root"].der)), at=at, policy=policy)


def _cases(names: dict[str, Any]) -> Iterator[tuple[str, str, datetime]]:
    for name in names:
        for pname in POLICIES:
            for at in TIMES:
                yield name, pname, at


def test_a_client_certificate_answered_in_one_pass_passes_the_full_checks() -> None:
    taken = set()
    for name, pname, at in _cases(pkis()["leaves"]):
        policy = POLICIES[pname]
        cert = parse_certificate(pkis()["leaves"][name].der)
        try:
            handed = _handed(policy, at)
        except PathFailure:
            continue  # the CAs themselves fail at this time or under this policy
        full = _outcome(check_end_entity_fully, cert, handed, at=at, policy=policy)
        fast = plain.plain_end_entity(cert, handed, at, policy)
        if fast:
            taken.add((name, pname))
            assert full == ("passed", None), (name, pname, at, full)
        # The public entry point decides (and words) exactly as the full checks.
        assert _outcome(check_end_entity, cert, handed, at=at, policy=policy) == full, (name, pname, at)
    # The short cut is the common case's route, not a dead branch.
    for common in ("plain_ec", "plain_rsa", "p384", "sha384", "no_aki"):
        assert (common, "default") in taken
    assert ("any_eku", "lenient_eku") in taken and ("no_eku", "no_eku") in taken
    # And it never vouches for what it does not cover.
    assert not {(n, p) for n, p in taken if p == "strict" or n in ("pss", "policies", "empty_subject_critical_san")}


def _issuers(path: list[Any], anchor: Anchor, at: datetime, policy: Policy) -> Any:
    return _outcome(check_issuers, path, anchor, at=at, policy=policy)


@pytest.mark.parametrize("role", ["intermediate", "anchor"])
def test_a_ca_answered_in_one_pass_passes_the_full_checks(role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = pkis()
    root = p["root"]
    variants = p["cas"] if role == "intermediate" else p["anchors"]
    taken = set()
    for name, pname, at in _cases(variants):
        policy = POLICIES[pname]
        ca = variants[name]
        leaf = ca.leaf("client", san_dns=["client.example"])
        if role == "intermediate":
            path = [parse_certificate(leaf.der), parse_certificate(ca.der)]
            anchor = Anchor(parse_certificate(root.der))
            cert, window = path[1], None
        else:
            path = [parse_certificate(leaf.der)]
            anchor = Anchor(parse_certificate(ca.der))
            cert, window = anchor.certificate, anchor.window()
        max_len = None if role == "anchor" else len(path)
        if plain.plain_ca(cert, window, at, policy, max_len):
            taken.add((name, pname))
        fast = _issuers(path, anchor, at, policy)
        with monkeypatch.context() as m:
            m.setattr(checks, "plain_ca", lambda *_: False)
            full = _issuers(path, anchor, at, policy)
        assert fast == full, (role, name, pname, at)
        if (name, pname) in taken and at == NOW and role == "anchor":
            assert full[0] == "passed", (name, pname)
    for common in ("plain_ec", "plain_rsa", "p384", "no_aki"):
        assert (common, "default") in taken
    assert not {(n, p) for n, p in taken if p == "strict" or n in ("not_ca", "no_basic_constraints", "pss")}


# -- whole validations: the quick route against the machine with no short cut -------------


def _summary(v: Verdict) -> tuple[Any, ...]:
    return (v.ok, v.reason, v.detail, v.position, tuple(c.sha256 for c in v.path),
            v.anchor.spki_sha256 if v.anchor else None, v.notes)


def _general(trust: TrustStore, policy: Policy, chain: list[bytes], monkeypatch: pytest.MonkeyPatch) -> Verdict:
    """The verdict of the machine (start() answered as validate() answers it), with neither the quick
    route, the known paths, the search's first descent, nor the one-pass answers."""
    with monkeypatch.context() as m:
        m.setattr(search, "_first_descent", lambda *_: None)
        m.setattr(checks, "plain_end_entity", lambda *_: False)
        m.setattr(checks, "plain_ca", lambda *_: False)
        run = Validator(trust, policy, known_paths=KnownPaths(0)).start(chain, at=NOW)
        for _ in range(100):
            event = run.next_event()
            if isinstance(event, Verdict):
                return event
            run.decline(event, "not fetched: validate() does no I/O")
    raise AssertionError("the validation did not finish")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(g=chains(), lenient=st.booleans())
def test_the_quick_route_decides_as_the_machine(g: Generated, lenient: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = Policy(require_leaf_eku=not lenient)
    trust = TrustStore([g.root.der])
    chain = [g.leaf.der, *(c.der for c in g.presented)]
    expected = _general(trust, policy, chain, monkeypatch)
    cold = Validator(trust, policy).validate(chain, at=NOW)
    assert _summary(cold) == _summary(expected), g.description
    # A sibling under the same CA first: the leaf then goes along the known path when it can.
    assert g.leaf.parent is not None
    sibling = g.leaf.parent.leaf("CN=diff sibling", san_dns=["sibling.example"])
    warm = Validator(trust, policy)
    warm.validate([sibling.der, *(c.der for c in g.presented)], at=NOW)
    assert _summary(warm.validate(chain, at=NOW)) == _summary(expected), g.description


def test_the_quick_route_is_taken_for_a_common_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparisons above compare two routes: a common chain does go the quick one (no machine)."""
    from mtlscore.decision import validator as module

    p = pkis()
    trust = TrustStore([p["root"].der])
    v = Validator(trust, Policy())
    machines = []

    class Counted(module.Validation):
        def __init__(self, *a: Any, **kw: Any) -> None:
            machines.append(1)
            super().__init__(*a, **kw)

    descents = []
    first_descent = search._first_descent

    def counted_descent(*a: Any) -> Any:
        found = first_descent(*a)
        descents.append(found is not None)
        return found

    monkeypatch.setattr(module, "Validation", Counted)
    monkeypatch.setattr(search, "_first_descent", counted_descent)
    chains = [[p["leaves"][name].der, p["inter"].der] for name in ("plain_ec", "plain_rsa")]
    verdicts = [v.validate(chain, at=NOW) for chain in chains]
    assert all(verdict.ok for verdict in verdicts) and v.known_paths.hits == 1 and not machines
    assert descents == [True]  # the first leaf's search (the second went along the known path)
    assert _summary(verdicts[1]) == _summary(_general(trust, Policy(), chains[1], monkeypatch))
    assert machines  # the general route is the machine


@pytest.mark.parametrize("anchor_window", [False, True])
def test_a_verdict_along_a_known_path_is_cached_for_the_window_put_computes(anchor_window: bool) -> None:
    """The quick route stores its verdict with the window it takes from the known path and the leaf; it is
    the window VerdictCache.put computes from the verdict (latest notBefore, earliest notAfter over the path
    and the anchor's activation window), or a cached verdict could outlive a certificate of its path."""
    from mtlscore.decision.cache import VerdictCache

    # Ends within the hour the cache keeps a verdict at most (max_age), so that each one binds somewhere.
    minute = timedelta(minutes=1)
    root = pki.root("CN=Window Root", not_before=NOW - 300 * DAY, not_after=NOW + 900 * DAY)
    inter = root.intermediate("CN=Window CA", not_before=NOW - 100 * DAY, not_after=NOW + 55 * minute)
    leaves = [inter.leaf(f"client {i}", not_before=NOW - days * DAY, not_after=NOW + (15 + 20 * i) * minute)
              for i, days in enumerate((200, 50, 2))]
    anchor: Any = root.der
    if anchor_window:
        anchor = Anchor(parse_certificate(root.der), not_before=NOW - 10 * DAY, not_after=NOW + 40 * minute)
    v = Validator(TrustStore([anchor]), Policy())
    for leaf in leaves:  # the first by the search (then learnt), the others along the known path
        chain = [leaf.der, inter.der]
        verdict = v.validate(chain, at=NOW)
        assert verdict.ok
        key = v.verdict_cache.key(chain, v.trust.epoch, v.policy.epoch, v._cache_token)
        stored = v.verdict_cache.peek(key)
        assert stored is not None and stored[0] is verdict
        computed = VerdictCache()
        assert computed.put(key, verdict, at=NOW)
        assert stored == computed.peek(key)
    assert v.known_paths.hits == 2


def test_the_allowed_signature_algorithms_follow_the_policy_not_its_epoch() -> None:
    """A copy of a policy made with dataclasses.replace keeps its epoch: what the one-pass answers
    allow must still be read from the copy's own fields."""
    import dataclasses

    from mtlscore.reasons import Reason

    legacy = Policy(signature_hashes=frozenset({"sha1", "sha256"}))
    modern = dataclasses.replace(legacy, signature_hashes=frozenset({"sha256"}))
    assert modern.epoch == legacy.epoch
    cert = parse_certificate(pkis()["leaves"]["sha1"].der)
    assert _outcome(check_end_entity, cert, _handed(legacy, NOW), at=NOW, policy=legacy) == ("passed", None)
    outcome = _outcome(check_end_entity, cert, _handed(modern, NOW), at=NOW, policy=modern)
    assert outcome[0] == "failed" and outcome[1].reason is Reason.WEAK_SIGNATURE_ALGORITHM
