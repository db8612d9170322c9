"""Revocation policy per position, source order, and the cache of fetched answers (pinned clock)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from ocsp_helpers import ocsp_response

from mtlscore import ConfigError, Policy, Reason, TrustStore, Validator, Verdict, pki
from mtlscore._cert import parse_certificate
from mtlscore._crl import parse_crl
from mtlscore._machine import NeedCRL, NeedOCSP
from mtlscore._revocation import RevocationCache, Source, plan_sources

NOW = pki.NOW
CRL = "http://127.0.0.1:1/inter.crl"
OCSP = "http://127.0.0.1:1/ocsp"


@pytest.fixture(scope="module")
def ca() -> tuple[pki.Issued, pki.Issued]:
    root = pki.root()
    return root, root.intermediate()


# -- policy ----------------------------------------------------------------------------


def test_policy_modes_per_position() -> None:
    p = Policy(revocation="soft", revocation_leaf="hard")
    assert (p.revocation_mode(0), p.revocation_mode(1), p.revocation_mode(3)) == ("hard", "soft", "soft")
    assert Policy(revocation_ca="off").revocation_mode(2) == "off"
    with pytest.raises(ConfigError, match=r"revocation\.mode_leaf"):
        Policy(revocation_leaf="maybe")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prefer"):
        Policy(revocation_prefer="ldap")  # type: ignore[arg-type]


def test_defaults_keep_fetching_and_aia_off() -> None:
    p = Policy()
    assert not p.fetch and not p.fetch_issuers and p.revocation_leaf is None and p.revocation_ca is None


def test_hard_for_cas_only(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf()
    # The leaf is covered by a CRL; the intermediate is not: hard for CAs rejects at position 1.
    v = Validator(TrustStore([root.pem]), Policy(revocation_ca="hard"), crls=[inter.crl()])
    verdict = v.validate(leaf.chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and verdict.position == 1
    v = Validator(TrustStore([root.pem]), Policy(revocation="hard", revocation_ca="off"), crls=[inter.crl()])
    assert v.validate(leaf.chain_pem, at=NOW).ok


def test_sources_in_preferred_order_and_ldap_skipped(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    leaf = parse_certificate(inter.leaf(crl_urls=["ldap://dir/cn=ca?crl", CRL], ocsp_urls=[OCSP]).der)
    sources, notes = plan_sources(leaf, Policy())
    assert sources == [Source("ocsp", OCSP), Source("crl", CRL)]
    assert len(notes) == 1 and "ldap://" in notes[0] and "only http(s)" in notes[0]
    sources, _ = plan_sources(leaf, Policy(revocation_prefer="crl"))
    assert [s.kind for s in sources] == ["crl", "ocsp"]


def test_fetch_on_but_no_location(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf()
    soft = Validator(TrustStore([root.pem]), Policy(fetch=True)).validate(leaf.chain_pem, at=NOW)
    assert soft.ok and any("names no CRL or OCSP location" in n for n in soft.notes)
    hard = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation="hard")).validate(leaf.chain_pem, at=NOW)
    assert hard.reason is Reason.REVOCATION_UNAVAILABLE and "no fetchable" in hard.detail


def test_fetched_crl_from_another_issuer_is_no_answer(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL])
    run = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation="hard", revocation_ca="off")).start(
        leaf.chain_pem, at=NOW)
    run.send(run.next_event(), root.crl(revoked=[leaf.serial]))  # type: ignore[arg-type]
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and verdict.reason is Reason.REVOCATION_UNAVAILABLE
    assert "not by" in verdict.detail


def test_oversized_answer_is_refused(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL])
    run = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation_ca="off", max_fetch_bytes=100)).start(
        leaf.chain_pem, at=NOW)
    run.send(run.next_event(), inter.crl())  # type: ignore[arg-type]
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and verdict.ok and any("over 100 bytes" in n for n in verdict.notes)


# -- the cache -------------------------------------------------------------------------


def test_crl_cached_until_next_update(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    issuer = parse_certificate(inter.der)
    cache = RevocationCache()
    crl = parse_crl(inter.crl(next_update=NOW + timedelta(hours=1)))
    cache.put_crl(issuer, CRL, crl, at=NOW, max_age=timedelta(days=1))
    assert cache.get_crl(issuer, CRL, at=NOW + timedelta(minutes=59)) is crl
    assert cache.get_crl(issuer, "http://127.0.0.1:1/other.crl", at=NOW) is None  # keyed by URL
    assert cache.get_crl(parse_certificate(pki.root().der), CRL, at=NOW) is None  # and by issuer key
    assert cache.get_crl(issuer, CRL, at=NOW + timedelta(hours=1)) is None
    assert len(cache) == 0  # expired entries are dropped


def test_cache_bounded_by_max_age(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    issuer = parse_certificate(inter.der)
    crl = parse_crl(inter.crl(next_update=NOW + timedelta(days=30)))
    cache = RevocationCache()
    cache.put_crl(issuer, CRL, crl, at=NOW, max_age=timedelta(hours=2))
    assert cache.get_crl(issuer, CRL, at=NOW + timedelta(hours=1)) is crl
    assert cache.get_crl(issuer, CRL, at=NOW + timedelta(hours=2)) is None
    short = RevocationCache(max_age=timedelta(minutes=5))
    short.put_crl(issuer, CRL, crl, at=NOW, max_age=timedelta(days=1))
    assert short.get_crl(issuer, CRL, at=NOW + timedelta(minutes=6)) is None


def test_cache_bounded_by_memory(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    issuer = parse_certificate(inter.der)
    crl = parse_crl(inter.crl())
    cache = RevocationCache(max_entries=2)
    for i in range(3):
        cache.put_crl(issuer, f"http://127.0.0.1:1/{i}.crl", crl, at=NOW, max_age=timedelta(hours=1))
    assert len(cache) == 2
    assert cache.get_crl(issuer, "http://127.0.0.1:1/0.crl", at=NOW) is None  # least recently used went
    by_bytes = RevocationCache(max_bytes=len(crl.der) * 2)
    for i in range(3):
        by_bytes.put_crl(issuer, f"http://127.0.0.1:1/{i}.crl", crl, at=NOW, max_age=timedelta(hours=1))
    assert len(by_bytes) == 2 and by_bytes.size_bytes <= len(crl.der) * 2


def test_cache_shared_across_validations(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    a, b = inter.leaf("CN=a", crl_urls=[CRL]), inter.leaf("CN=b", crl_urls=[CRL])
    v = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation="hard", revocation_ca="off"))
    run = v.start(a.chain_pem, at=NOW)
    event = run.next_event()
    assert event == NeedCRL(CRL)
    run.send(event, inter.crl(revoked=[b], next_update=NOW + timedelta(hours=1)))
    assert run.next_event().ok  # type: ignore[union-attr]
    # The other leaf is decided from the cache: no request at all.
    verdict = v.start(b.chain_pem, at=NOW + timedelta(minutes=30)).next_event()
    assert isinstance(verdict, Verdict) and verdict.reason is Reason.REVOKED
    # After nextUpdate the cached CRL is gone and the validator asks again.
    assert v.start(a.chain_pem, at=NOW + timedelta(hours=2)).next_event() == NeedCRL(CRL)


def test_ocsp_cached_per_serial(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    a, b = inter.leaf("CN=a", ocsp_urls=[OCSP]), inter.leaf("CN=b", ocsp_urls=[OCSP])
    v = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation_ca="off"))
    run = v.start(a.chain_pem, at=NOW)
    event = run.next_event()
    assert isinstance(event, NeedOCSP)
    run.send(event, ocsp_response(a, inter, status="revoked"))
    assert run.next_event().reason is Reason.REVOKED  # type: ignore[union-attr]
    assert v.validate(a.chain_pem, at=NOW + timedelta(minutes=1)).reason is Reason.REVOKED  # from the cache
    assert isinstance(v.start(b.chain_pem, at=NOW).next_event(), NeedOCSP)  # another serial: asked


def test_unverified_answers_are_not_cached(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL])
    v = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation_ca="off"))
    run = v.start(leaf.chain_pem, at=NOW)
    run.send(run.next_event(), inter.crl(signer=pki.new_key("ec")))  # type: ignore[arg-type]
    assert run.next_event().ok  # type: ignore[union-attr]  # soft-fail
    assert len(v.cache) == 0
    assert v.start(leaf.chain_pem, at=NOW).next_event() == NeedCRL(CRL)


def test_validators_can_share_one_cache(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL])
    cache = RevocationCache()
    first = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation_ca="off"), cache=cache)
    run = first.start(leaf.chain_pem, at=NOW)
    run.send(run.next_event(), inter.crl(revoked=[leaf]))  # type: ignore[arg-type]
    second = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation_ca="off"), cache=cache)
    assert second.validate(leaf.chain_pem, at=NOW).reason is Reason.REVOKED
