"""The verdict cache (and the counters of the parse and signature caches), with a pinned clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mtlscore import Policy, TrustStore, Validator, pki
from mtlscore.decision.cache import CacheStats, VerdictCache, chain_key, stats
from mtlscore.verify.signature import SignatureCache
from mtlscore.verify.trust import Anchor
from mtlscore.x509.cert import PARSE_CACHE, parse_certificate

NOW = pki.NOW
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.root("CN=Cache Root", not_before=NOW - 400 * DAY, not_after=NOW + 4000 * DAY)


@pytest.fixture(scope="module")
def inter(ca: pki.Issued) -> pki.Issued:
    return ca.intermediate("CN=Cache Intermediate", not_before=NOW - 300 * DAY, not_after=NOW + 3000 * DAY)


def _accepted(trust: TrustStore, chain: list[bytes], policy: Policy | None = None, at=NOW):  # type: ignore[no-untyped-def]
    policy = policy or Policy()
    v = Validator(trust, policy).validate(chain, at=at)
    assert v.ok, v.detail
    return v


def test_hit_inside_window_and_counters(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf(not_before=NOW - DAY, not_after=NOW + 10 * DAY)
    trust = TrustStore([ca.pem])
    policy = Policy()
    verdict = _accepted(trust, leaf.chain_der, policy)
    cache = VerdictCache(8, max_age=timedelta(days=365))
    key = cache.key(leaf.chain_der, trust.epoch, policy.epoch)
    assert cache.get(key, NOW) is None
    assert cache.put(key, verdict, at=NOW)
    # Another list holding equal bytes is the same key: reconnecting clients send fresh objects.
    again = cache.key([bytes(bytearray(d)) for d in leaf.chain_der], trust.epoch, policy.epoch)
    assert cache.get(again, NOW + 5 * DAY) is verdict
    s = cache.stats()
    assert (s.hits, s.misses, s.entries, s.work) == (1, 1, 1, 1)
    assert s.hit_ratio == 0.5


def test_expires_at_not_after(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf(not_before=NOW - DAY, not_after=NOW + 2 * DAY)
    trust = TrustStore([ca.pem])
    policy = Policy()
    verdict = _accepted(trust, leaf.chain_der, policy)
    cache = VerdictCache(8, max_age=timedelta(days=365))
    key = cache.key(leaf.chain_der, trust.epoch, policy.epoch)
    assert cache.put(key, verdict, at=NOW)
    not_after = leaf.cert.not_valid_after_utc
    # RFC 5280 §4.1.2.5: the validity period includes notAfter itself.
    assert cache.get(key, not_after) is verdict
    assert cache.get(key, not_after + timedelta(seconds=1)) is None
    # Past the window the entry is gone for good, not just skipped.
    assert len(cache) == 0
    assert cache.get(key, NOW) is None
    # And a fresh validation at that time agrees: the leaf has expired.
    assert Validator(trust, policy).validate(leaf.chain_der, at=not_after + timedelta(seconds=1)).reason == "expired"


def test_earliest_not_after_on_path_bounds_the_window(ca: pki.Issued) -> None:
    short_inter = ca.intermediate("CN=Short Intermediate", not_before=NOW - DAY, not_after=NOW + DAY)
    leaf = short_inter.leaf(not_before=NOW - DAY, not_after=NOW + 30 * DAY)
    trust = TrustStore([ca.pem])
    verdict = _accepted(trust, leaf.chain_der)
    cache = VerdictCache(8, max_age=timedelta(days=365))
    assert cache.put("k", verdict, at=NOW)
    assert cache.get("k", NOW + DAY) is verdict
    assert cache.get("k", NOW + DAY + timedelta(seconds=1)) is None


def test_time_before_not_before_never_hits(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf(not_before=NOW - timedelta(hours=1), not_after=NOW + 10 * DAY)
    trust = TrustStore([ca.pem])
    verdict = _accepted(trust, leaf.chain_der)
    cache = VerdictCache(8, max_age=timedelta(days=365))
    assert cache.put("k", verdict, at=NOW)
    not_before = leaf.cert.not_valid_before_utc
    assert cache.get("k", not_before - timedelta(seconds=1)) is None
    # A clock set back does not evict the entry for the clients on time.
    assert cache.get("k", not_before) is verdict
    # Storing a verdict for a time outside its own window is refused.
    other = VerdictCache(8)
    assert not other.put("k", verdict, at=not_before - timedelta(seconds=1))
    assert len(other) == 0


def test_anchor_activation_window_bounds_the_window(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf(not_before=NOW - 10 * DAY, not_after=NOW + 10 * DAY)
    anchor = Anchor(parse_certificate(ca.der), not_before=NOW - DAY, not_after=NOW + DAY)
    trust = TrustStore([anchor])
    verdict = _accepted(trust, leaf.chain_der)
    cache = VerdictCache(8, max_age=timedelta(days=365))
    assert cache.put("k", verdict, at=NOW)
    assert cache.get("k", NOW - DAY - timedelta(seconds=1)) is None
    assert cache.get("k", NOW + DAY + timedelta(seconds=1)) is None


def test_max_age(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf(not_before=NOW - DAY, not_after=NOW + 10 * DAY)
    trust = TrustStore([ca.pem])
    verdict = _accepted(trust, leaf.chain_der)
    cache = VerdictCache(8, max_age=timedelta(minutes=5))
    assert cache.put("k", verdict, at=NOW)
    assert cache.get("k", NOW + timedelta(minutes=5)) is verdict
    assert cache.get("k", NOW + timedelta(minutes=5, seconds=1)) is None


def test_revocation_expiry(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf(not_before=NOW - DAY, not_after=NOW + 10 * DAY)
    trust = TrustStore([ca.pem])
    verdict = _accepted(trust, leaf.chain_der)
    cache = VerdictCache(8, max_age=timedelta(days=365))
    this_update, next_update = NOW - timedelta(hours=1), NOW + timedelta(hours=6)
    assert cache.put("k", verdict, at=NOW, valid_from=this_update, valid_until=next_update)
    assert cache.get("k", next_update) is verdict
    assert cache.get("k", this_update - timedelta(seconds=1)) is None
    assert cache.get("k", next_update + timedelta(seconds=1)) is None
    # Revocation data already stale at validation time: nothing is stored.
    assert not cache.put("k", verdict, at=NOW, valid_until=NOW - timedelta(seconds=1))


def test_trust_rotation_and_policy_change_start_new_epochs(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf(not_before=NOW - DAY, not_after=NOW + 10 * DAY)
    trust = TrustStore([ca.pem])
    policy = Policy()
    verdict = _accepted(trust, leaf.chain_der, policy)
    cache = VerdictCache(8, max_age=timedelta(days=365))
    key = cache.key(leaf.chain_der, trust.epoch, policy.epoch)
    assert cache.put(key, verdict, at=NOW)
    # Rotation: a new anchor in the same store changes its epoch, so the old key is never asked again.
    trust.add_anchor(pki.root("CN=Next Root").pem)
    rotated = cache.key(leaf.chain_der, trust.epoch, policy.epoch)
    assert rotated != key
    assert cache.get(rotated, NOW) is None
    assert cache.get(cache.key(leaf.chain_der, trust.epoch, policy.evolve(min_rsa_bits=3072).epoch), NOW) is None
    assert cache.get(cache.key(leaf.chain_der, TrustStore([ca.pem]).epoch, policy.epoch), NOW) is None


def test_rejections_are_not_cached(inter: pki.Issued) -> None:
    leaf = inter.leaf()
    verdict = Validator(TrustStore([pki.root().pem])).validate(leaf.chain_der, at=NOW)
    assert not verdict.ok
    cache = VerdictCache(8)
    assert not cache.put("k", verdict, at=NOW)
    assert cache.get("k", NOW) is None


def test_lru_bound_keeps_recently_used(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf(not_before=NOW - DAY, not_after=NOW + 10 * DAY)
    verdict = _accepted(TrustStore([ca.pem]), leaf.chain_der)
    cache = VerdictCache(3, max_age=timedelta(days=1))
    for k in "abc":
        cache.put(k, verdict, at=NOW)
    assert cache.get("a", NOW) is verdict  # a is now the most recently used
    cache.put("d", verdict, at=NOW)
    assert len(cache) == 3
    assert cache.get("b", NOW) is None
    assert all(cache.get(k, NOW) is verdict for k in "acd")
    assert not VerdictCache(0).put("a", verdict, at=NOW)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        VerdictCache(-1)
    with pytest.raises(ValueError):
        VerdictCache(1, max_age=timedelta(seconds=-1))


def test_chain_key_forms(inter: pki.Issued) -> None:
    leaf = inter.leaf()
    cert = parse_certificate(leaf.der)
    assert chain_key(leaf.der) == leaf.der
    assert chain_key(leaf.pem) == leaf.pem
    assert chain_key([cert, inter.der]) == (leaf.der, inter.der)
    assert chain_key(cert) == leaf.der
    assert chain_key([leaf.cert]) is None  # a cryptography object: not cached
    assert chain_key(42) is None
    # PEM and DER of the same chain are different inputs, hence different keys (a miss, never a wrong hit).
    assert chain_key([leaf.der]) != chain_key(leaf.pem)


def test_stats_cover_parse_signature_and_verdict_caches(ca: pki.Issued, inter: pki.Issued) -> None:
    sigs = SignatureCache(16)
    validator = Validator(TrustStore([ca.pem]), signatures=sigs)
    leaf = inter.leaf()
    parse_misses = PARSE_CACHE.misses
    assert validator.validate(leaf.chain_der, at=NOW).ok
    assert validator.validate(inter.leaf().chain_der, at=NOW).ok
    cache = VerdictCache(4)
    out = stats(cache, sigs)
    assert set(out) == {"parse", "signatures", "verdicts"}
    assert all(isinstance(s, CacheStats) for s in out.values())
    # Two leaves, one intermediate: three links, of which the intermediate→root one was verified once;
    # the second leaf reuses the first one's path (KnownPaths), so that link is not even looked up again.
    assert out["signatures"].work == 3
    assert out["signatures"].hits == 0
    assert validator.known_paths.hits == 1
    assert out["parse"].misses >= parse_misses + 2
    assert out["parse"].entries == len(PARSE_CACHE)
    summed = stats([cache, VerdictCache(6)], sigs)["verdicts"]
    assert summed.capacity == 10
    assert out["verdicts"].to_dict()["capacity"] == 4


# -- wired into Validator.validate ------------------------------------------------


def test_validator_reuses_accepted_verdicts(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf(not_before=NOW - DAY, not_after=NOW + 2 * DAY)
    trust = TrustStore([ca.pem])
    validator = Validator(trust, Policy(revocation="off"), verdict_cache=VerdictCache(max_age=7 * DAY))
    first = validator.validate(leaf.chain_der, at=NOW)
    assert first.ok
    assert validator.validate([bytes(bytearray(d)) for d in leaf.chain_der], at=NOW + DAY) is first
    assert validator.verdict_cache.hits == 1
    # Past notAfter the cached verdict is not used: a fresh validation rejects.
    late = validator.validate(leaf.chain_der, at=leaf.cert.not_valid_after_utc + timedelta(seconds=1))
    assert late.reason == "expired"
    # Rotation: once the store changes, the chain is validated against the new store.
    trust.add_anchor(pki.root("CN=Rotated In").pem)
    again = validator.validate(leaf.chain_der, at=NOW)
    assert again.ok and again is not first


def test_validator_removes_anchor_by_new_store(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf()
    cache = VerdictCache()
    assert Validator(TrustStore([ca.pem]), verdict_cache=cache).validate(leaf.chain_der, at=NOW).ok
    # Another validator sharing the cache (a reload with a store that no longer trusts ca) never hits.
    assert Validator(TrustStore([pki.root().pem]), verdict_cache=cache).validate(leaf.chain_der, at=NOW).reason == "untrusted"


def test_validator_bounds_by_crl_next_update(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf(not_before=NOW - DAY, not_after=NOW + 30 * DAY)
    next_update = NOW + timedelta(hours=2)
    crls = [inter.crl(this_update=NOW - timedelta(hours=1), next_update=next_update),
            ca.crl(this_update=NOW - timedelta(hours=1), next_update=NOW + DAY)]
    validator = Validator(TrustStore([ca.pem]), Policy(revocation="hard"), crls=crls,
                          verdict_cache=VerdictCache(max_age=7 * DAY))
    first = validator.validate(leaf.chain_der, at=NOW)
    assert first.ok, first.detail
    assert validator.validate(leaf.chain_der, at=next_update) is first
    stale = validator.validate(leaf.chain_der, at=next_update + timedelta(seconds=1))
    assert stale is not first
    assert stale.reason == "revocation_unavailable"


def test_validator_does_not_cache_with_per_call_data(ca: pki.Issued, inter: pki.Issued) -> None:
    leaf = inter.leaf()
    validator = Validator(TrustStore([ca.pem]))
    crl = inter.crl()
    assert validator.validate(leaf.chain_der, at=NOW, crls=[crl]).ok
    assert len(validator.verdict_cache) == 0
    revoked = validator.validate(leaf.chain_der, at=NOW, crls=[inter.crl(revoked=[leaf])])
    assert revoked.reason == "revoked"
    fetching = Validator(TrustStore([ca.pem]), Policy(fetch=True))
    assert fetching.validate(leaf.chain_der, at=NOW).ok
    assert len(fetching.verdict_cache) == 0
