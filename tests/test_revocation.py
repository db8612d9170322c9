"""Revocation policy per position, source order, and the cache of fetched answers (pinned clock)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from ocsp_helpers import ocsp_responder, ocsp_response

from mtlscore import ConfigError, Policy, Reason, TrustStore, Validator, Verdict, pki
from mtlscore.revocation.checker import RevocationCache, Source, plan_sources
from mtlscore.revocation.crl import parse_crl
from mtlscore.verify.machine import NeedCRL, NeedOCSP
from mtlscore.x509.cert import parse_certificate

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


# -- a delegated OCSP responder's own revocation (RFC 6960 §4.2.2.2.1) -------------------

RCRL = "http://127.0.0.1:1/responder.crl"


def _hard(root: pki.Issued, **kw: object) -> Validator:
    return Validator(TrustStore([root.pem]), Policy(revocation="hard", revocation_ca="off", **kw))  # type: ignore[arg-type]


def test_a_responder_with_nocheck_is_trusted_for_its_validity(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf()
    responder = ocsp_responder(inter, nocheck=True)
    verdict = _hard(root).validate(leaf.chain_pem, at=NOW, ocsp_responses=[ocsp_response(leaf, inter, responder=responder)])
    assert verdict.ok, verdict.detail


def test_a_responder_without_nocheck_is_checked_against_the_crls_at_hand(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf()
    responder = ocsp_responder(inter)
    good = ocsp_response(leaf, inter, responder=responder)
    # Nothing says whether the responder is revoked: under hard-fail its "good" is no answer.
    verdict = _hard(root).validate(leaf.chain_pem, at=NOW, ocsp_responses=[good])
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE
    assert "id-pkix-ocsp-nocheck" in verdict.detail and "unknown" in verdict.detail
    # Soft-fail accepts, saying why it could not believe the answer.
    soft = Validator(TrustStore([root.pem]), Policy(revocation_ca="off")).validate(
        leaf.chain_pem, at=NOW, ocsp_responses=[good])
    assert soft.ok and any("id-pkix-ocsp-nocheck" in n for n in soft.notes)
    # A responder with id-pkix-ocsp-nocheck, the same answer otherwise: believed.
    trusted = ocsp_response(leaf, inter, responder=ocsp_responder(inter, nocheck=True))
    assert _hard(root).validate(leaf.chain_pem, at=NOW, ocsp_responses=[trusted]).ok


def test_a_revoked_answer_is_believed_whoever_signs_it(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf()
    responder = ocsp_responder(inter)
    verdict = _hard(root).validate(leaf.chain_pem, at=NOW,
                                   ocsp_responses=[ocsp_response(leaf, inter, responder=responder, status="revoked")])
    assert verdict.reason is Reason.REVOKED


@pytest.mark.parametrize("answer", ["good", "revoked", "fails", "garbage"])
def test_the_responders_crl_is_asked_for_through_the_machine(ca: tuple[pki.Issued, pki.Issued], answer: str) -> None:
    root, inter = ca
    leaf = inter.leaf(ocsp_urls=[OCSP])
    responder = ocsp_responder(inter, crl_urls=[RCRL])
    run = _hard(root, fetch=True).start(leaf.chain_pem, at=NOW)
    event = run.next_event()
    assert isinstance(event, NeedOCSP)
    run.send(event, ocsp_response(leaf, inter, responder=responder))
    # The "good" is held until the responder's own status is known: its CRL is asked for.
    event = run.next_event()
    assert event == NeedCRL(RCRL)
    if answer == "fails":
        run.fail(event, "connection refused")
    else:
        data = {"good": inter.crl(), "revoked": inter.crl(revoked=[responder]), "garbage": b"junk"}[answer]
        run.send(event, data)
    verdict = run.next_event()
    assert isinstance(verdict, Verdict)
    if answer == "good":
        assert verdict.ok, verdict.detail
    else:
        assert verdict.reason is Reason.REVOCATION_UNAVAILABLE
        assert ("itself revoked" if answer == "revoked" else "id-pkix-ocsp-nocheck") in verdict.detail


def test_a_responder_crl_in_the_cache_answers_without_asking(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    responder = ocsp_responder(inter, crl_urls=[RCRL])
    v = _hard(root, fetch=True)
    first = inter.leaf("CN=first", ocsp_urls=[OCSP])
    run = v.start(first.chain_pem, at=NOW)
    run.send(run.next_event(), ocsp_response(first, inter, responder=responder))  # type: ignore[arg-type]
    run.send(run.next_event(), inter.crl())  # type: ignore[arg-type]
    assert run.next_event().ok  # type: ignore[union-attr]
    # Another leaf, the same responder: its CRL is in the cache, only the OCSP is asked.
    second = inter.leaf("CN=second", ocsp_urls=[OCSP])
    run = v.start(second.chain_pem, at=NOW)
    run.send(run.next_event(), ocsp_response(second, inter, responder=responder))  # type: ignore[arg-type]
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and verdict.ok, verdict


@pytest.mark.parametrize("revoked", [False, True])
def test_the_responders_status_from_a_cached_crl(ca: tuple[pki.Issued, pki.Issued], revoked: bool) -> None:
    root, inter = ca
    leaf = inter.leaf()
    responder = ocsp_responder(inter, crl_urls=[RCRL])
    v = _hard(root)
    crl = parse_crl(inter.crl(revoked=[responder] if revoked else []))
    v.cache.put_crl(parse_certificate(inter.der), RCRL, crl, at=NOW, max_age=timedelta(days=1))
    verdict = v.validate(leaf.chain_pem, at=NOW, ocsp_responses=[ocsp_response(leaf, inter, responder=responder)])
    if revoked:
        assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "itself revoked" in verdict.detail
    else:
        assert verdict.ok, verdict.detail


# -- GET for small OCSP requests (RFC 6960 A.1) ------------------------------------------------


@pytest.mark.parametrize("nonce", [False, True])
def test_small_ocsp_requests_carry_a_get_url(ca: tuple[pki.Issued, pki.Issued], nonce: bool) -> None:
    import base64
    from urllib.parse import unquote

    root, inter = ca
    leaf = inter.leaf(ocsp_urls=[OCSP])
    event = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation_ca="off", ocsp_nonce=nonce)).start(
        leaf.chain_pem, at=NOW).next_event()
    assert isinstance(event, NeedOCSP) and event.get_url is not None
    assert event.get_url.startswith(OCSP + "/")
    assert base64.b64decode(unquote(event.get_url.removeprefix(OCSP + "/"))) == event.request_der
    off = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation_ca="off", ocsp_get=False)).start(
        leaf.chain_pem, at=NOW).next_event()
    assert isinstance(off, NeedOCSP) and off.get_url is None


def test_the_runtimes_http_call_follows_the_request() -> None:
    from mtlscore.runtimes.fetch import call_for

    get = call_for(NeedOCSP(OCSP, b"\x30\x00", OCSP + "/MAA%3D"))
    assert (get.method, get.target.path, get.body) == ("GET", "/ocsp/MAA%3D", b"")
    post = call_for(NeedOCSP(OCSP, b"\x30\x00"))
    assert (post.method, post.target.path, post.body, post.content_type) == (
        "POST", "/ocsp", b"\x30\x00", "application/ocsp-request")


# -- negative caching of failed fetches ------------------------------------------------------


def test_a_failed_fetch_is_not_repeated_for_the_ttl(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL], ocsp_urls=[OCSP])
    v = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation_ca="off"))
    run = v.start(leaf.chain_pem, at=NOW)
    for _ in range(2):
        run.fail(run.next_event(), "connection refused")  # type: ignore[arg-type]
    assert run.next_event().ok  # type: ignore[union-attr]  # soft-fail
    assert v.cache.failures == 2
    # Ten seconds later nothing is asked: both URLs failed just now.
    later = v.start(leaf.chain_pem, at=NOW + timedelta(seconds=10)).next_event()
    assert isinstance(later, Verdict) and later.ok
    assert any("failed recently" in n for n in later.notes)
    hard = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation="hard", revocation_ca="off"),
                     cache=v.cache).start(leaf.chain_pem, at=NOW + timedelta(seconds=10)).next_event()
    assert isinstance(hard, Verdict) and hard.reason is Reason.REVOCATION_UNAVAILABLE
    assert "failed recently" in hard.detail
    # After the TTL (30 s by default) the entries expire and the URLs are asked again.
    assert isinstance(v.start(leaf.chain_pem, at=NOW + timedelta(seconds=31)).next_event(), NeedOCSP)


def test_the_failure_ttl_is_configurable(ca: tuple[pki.Issued, pki.Issued], tmp_path: object) -> None:
    from pathlib import Path

    from mtlscore.config import parse_config

    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL])
    for ttl, asked_again_at in ((0, 0), (300, 301)):
        v = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation_ca="off", fetch_failure_ttl=ttl))
        run = v.start(leaf.chain_pem, at=NOW)
        run.fail(run.next_event(), "timed out")  # type: ignore[arg-type]
        assert run.next_event().ok  # type: ignore[union-attr]
        if ttl:
            assert isinstance(v.start(leaf.chain_pem, at=NOW + timedelta(seconds=299)).next_event(), Verdict)
        assert v.start(leaf.chain_pem, at=NOW + timedelta(seconds=asked_again_at)).next_event() == NeedCRL(CRL)
    cfg = parse_config({"revocation": {"failure_ttl_seconds": 5, "ocsp_get": False}}, base_dir=Path(str(tmp_path)))
    assert cfg.policy.fetch_failure_ttl == timedelta(seconds=5) and cfg.policy.ocsp_get is False
    assert Policy().fetch_failure_ttl == timedelta(seconds=30) and Policy().ocsp_get is True
    for bad in (-1, "5"):
        with pytest.raises(ConfigError) as exc:
            parse_config({"revocation": {"failure_ttl_seconds": bad}}, base_dir=Path(str(tmp_path)))
        assert exc.value.key == "revocation.failure_ttl_seconds"


def test_validate_without_io_does_not_poison_the_negative_cache(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL])
    v = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation_ca="off"))
    assert v.validate(leaf.chain_pem, at=NOW).ok  # declines the request: nothing was tried
    assert v.cache.failures == 0
    assert v.start(leaf.chain_pem, at=NOW).next_event() == NeedCRL(CRL)


def test_negative_entries_are_bounded() -> None:
    cache = RevocationCache(max_failures=2)
    for i in range(3):
        cache.note_failure("crl", f"http://x/{i}", at=NOW, ttl=timedelta(seconds=30))
    assert cache.failures == 2
    assert cache.failed_until("crl", "http://x/0", at=NOW) is None  # the oldest went first
    assert cache.failed_until("crl", "http://x/2", at=NOW) == NOW + timedelta(seconds=30)
    assert cache.failed_until("ocsp", "http://x/2", at=NOW) is None  # by kind and URL
    assert cache.failed_until("crl", "http://x/2", at=NOW + timedelta(seconds=30)) is None  # expired
    assert cache.failures == 1
    cache.note_failure("crl", "http://x/3", at=NOW, ttl=timedelta(0))  # a zero TTL remembers nothing
    assert cache.failures == 1
# -- FreshestCRL (RFC 5280 §4.2.1.15, §5.2.6): deltas asked for when fetching ------------------

DELTA = "http://127.0.0.1:1/inter-delta.crl"


@pytest.mark.parametrize("named_by", ["certificate", "complete CRL"])
def test_freshest_crl_delta_is_asked_for_and_applied(ca: tuple[pki.Issued, pki.Issued], named_by: str) -> None:
    root, inter = ca
    in_cert = named_by == "certificate"
    leaf = inter.leaf(crl_urls=[CRL], freshest=[DELTA] if in_cert else ())
    base = inter.crl(number=7, freshest=() if in_cert else [DELTA])
    v = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation="hard", revocation_ca="off"))
    run = v.start(leaf.chain_pem, at=NOW)
    assert run.next_event() == NeedCRL(CRL)
    run.send(NeedCRL(CRL), base)
    assert run.next_event() == NeedCRL(DELTA)
    run.send(NeedCRL(DELTA), inter.crl(revoked=[leaf], number=8, delta_of=7))
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and verdict.reason is Reason.REVOKED and "delta CRL #8" in verdict.detail
    # Both are cached: the next validation decides with no request.
    again = v.start(leaf.chain_pem, at=NOW).next_event()
    assert isinstance(again, Verdict) and again.reason is Reason.REVOKED


def test_freshest_crl_delta_unavailable_decides_on_the_complete_crl(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL], freshest=[DELTA])
    v = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation="hard", revocation_ca="off"))
    run = v.start(leaf.chain_pem, at=NOW)
    run.send(run.next_event(), inter.crl(number=7))  # type: ignore[arg-type]
    event = run.next_event()
    assert event == NeedCRL(DELTA)
    run.fail(event, "connection refused")  # type: ignore[arg-type]
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and verdict.ok
    assert any("without a delta CRL" in n and "connection refused" in n for n in verdict.notes)


def test_freshest_crl_delta_for_a_given_complete_crl(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(freshest=[DELTA])
    v = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation="hard", revocation_ca="off"),
                  crls=[inter.crl(number=3)])
    run = v.start(leaf.chain_pem, at=NOW)
    assert run.next_event() == NeedCRL(DELTA)
    run.send(NeedCRL(DELTA), inter.crl(revoked=[leaf], number=4, delta_of=3))
    assert run.next_event().reason is Reason.REVOKED  # type: ignore[union-attr]


def test_stale_complete_crl_asks_for_the_delta(ca: tuple[pki.Issued, pki.Issued]) -> None:
    # §6.3.3 (a)(1)(i) with fetching: the complete CRL is past its nextUpdate; the delta it announces is asked
    # for and, being current, makes the pair usable.
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL])
    stale = inter.crl(number=7, freshest=[DELTA], this_update=NOW - timedelta(days=3),
                      next_update=NOW - timedelta(days=1))
    for delta, ok in ((inter.crl(number=8, delta_of=7), True), (inter.crl(revoked=[leaf], number=8, delta_of=7), False)):
        v = Validator(TrustStore([root.pem]), Policy(fetch=True, revocation="hard", revocation_ca="off"))
        run = v.start(leaf.chain_pem, at=NOW)
        assert run.next_event() == NeedCRL(CRL)
        run.send(NeedCRL(CRL), stale)
        assert run.next_event() == NeedCRL(DELTA)
        run.send(NeedCRL(DELTA), delta)
        verdict = run.next_event()
        assert isinstance(verdict, Verdict) and verdict.ok is ok and (ok or verdict.reason is Reason.REVOKED)
