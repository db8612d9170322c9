"""The asking validator: its requests, its transitions table, and illegal moves."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocsp_helpers import ocsp_response, pkcs7_bundle

from mtlscore import Policy, Reason, TrustStore, Validator, Verdict, pki
from mtlscore.verify.machine import (
    TRANSITIONS,
    MachineError,
    Move,
    NeedCRL,
    NeedIssuer,
    NeedOCSP,
    State,
    transition,
)

NOW = pki.NOW
CRL = "http://127.0.0.1:1/inter.crl"
OCSP = "http://127.0.0.1:1/ocsp"
AIA = "http://127.0.0.1:1/inter.der"


@pytest.fixture(scope="module")
def ca() -> tuple[pki.Issued, pki.Issued]:
    root = pki.root()
    return root, root.intermediate()


def validator(root: pki.Issued, **policy: object) -> Validator:
    return Validator(TrustStore([root.pem]), Policy(**policy))  # type: ignore[arg-type]


# -- the table -------------------------------------------------------------------------


def test_every_state_is_in_the_table_and_done_is_final() -> None:
    assert set(TRANSITIONS) == set(State)
    assert TRANSITIONS[State.DONE] == {}
    for moves in TRANSITIONS.values():
        assert set(moves.values()) <= set(State)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("move", list(Move))
def test_transition_follows_the_table_or_names_the_state(state: State, move: Move) -> None:
    if move in TRANSITIONS[state]:
        assert transition(state, move) is TRANSITIONS[state][move]
    else:
        with pytest.raises(MachineError, match=state.value) as info:
            transition(state, move)
        assert info.value.state is state


def test_events_are_frozen_hashable_and_comparable() -> None:
    a, b = NeedOCSP(OCSP, b"\x30\x00"), NeedOCSP(OCSP, b"\x30\x00")
    assert a == b and hash(a) == hash(b) and a != NeedOCSP(OCSP, b"\x30\x01")
    assert {NeedCRL(CRL), NeedCRL(CRL), NeedIssuer(AIA)} == {NeedCRL(CRL), NeedIssuer(AIA)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        NeedCRL(CRL).url = "x"  # type: ignore[misc]
    assert not hasattr(NeedCRL(CRL), "__dict__")  # slots


# -- runs ------------------------------------------------------------------------------


def test_without_fetch_nothing_is_asked(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL], ocsp_urls=[OCSP])
    run = validator(root).start(leaf.chain_pem, at=NOW)
    assert run.state is State.BUILDING
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and verdict.ok
    assert run.state is State.DONE and run.verdict is verdict
    assert run.next_event() is verdict  # asking again repeats the verdict


def test_crl_request_answered(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL])
    run = validator(root, fetch=True, revocation="hard", revocation_ca="off").start(leaf.chain_pem, at=NOW)
    event = run.next_event()
    assert event == NeedCRL(CRL)
    assert run.state is State.AWAITING_REVOCATION and run.pending == event
    assert run.next_event() == event  # unanswered: the same request again
    run.send(event, inter.crl(revoked=[leaf]))
    assert run.state is State.CHECKING_REVOCATION
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and verdict.reason is Reason.REVOKED and verdict.position == 0


def test_ocsp_preferred_then_crl_after_a_failure(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL], ocsp_urls=[OCSP])
    run = validator(root, fetch=True, revocation_ca="off").start(leaf.chain_pem, at=NOW)
    first = run.next_event()
    assert isinstance(first, NeedOCSP) and first.url == OCSP and first.request_der.startswith(b"\x30")
    run.fail(first, "connection refused")
    second = run.next_event()
    assert second == NeedCRL(CRL)
    run.send(second, inter.crl())
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and verdict.ok


def test_prefer_crl(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL], ocsp_urls=[OCSP])
    run = validator(root, fetch=True, revocation_prefer="crl").start(leaf.chain_pem, at=NOW)
    assert run.next_event() == NeedCRL(CRL)


def test_ocsp_answer(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(ocsp_urls=[OCSP])
    run = validator(root, fetch=True, revocation="hard", revocation_ca="off").start(leaf.chain_pem, at=NOW)
    event = run.next_event()
    assert isinstance(event, NeedOCSP)
    run.send(event, ocsp_response(leaf, inter, status="revoked", reason=None))
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and verdict.reason is Reason.REVOKED


@pytest.mark.parametrize("mode,ok", [("soft", True), ("hard", False)])
def test_all_sources_fail(ca: tuple[pki.Issued, pki.Issued], mode: str, ok: bool) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL], ocsp_urls=[OCSP])
    run = validator(root, fetch=True, revocation=mode, revocation_ca="off").start(leaf.chain_pem, at=NOW)
    for _ in range(2):
        event = run.next_event()
        assert not isinstance(event, Verdict)
        run.fail(event, "timed out after 1 s")
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and verdict.ok is ok
    if ok:
        assert any("soft-fail" in n and "timed out" in n for n in verdict.notes)
    else:
        assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "timed out" in verdict.detail


def test_validate_answers_unavailable(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[CRL])
    soft = validator(root, fetch=True).validate(leaf.chain_pem, at=NOW)
    assert soft.ok and any("validate() does no I/O" in n for n in soft.notes)
    hard = validator(root, fetch=True, revocation="hard", revocation_ca="off").validate(leaf.chain_pem, at=NOW)
    assert hard.reason is Reason.REVOCATION_UNAVAILABLE


# -- illegal moves ---------------------------------------------------------------------


def test_answering_before_asking_names_the_state(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    run = validator(root, fetch=True).start(inter.leaf(crl_urls=[CRL]).chain_pem, at=NOW)
    with pytest.raises(MachineError, match="building"):
        run.send(NeedCRL(CRL), b"")
    with pytest.raises(MachineError, match="building"):
        run.fail(NeedCRL(CRL), "x")


def test_answering_another_request_is_refused(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    run = validator(root, fetch=True).start(inter.leaf(crl_urls=[CRL]).chain_pem, at=NOW)
    assert run.next_event() == NeedCRL(CRL)
    with pytest.raises(MachineError, match="awaiting_revocation"):
        run.send(NeedCRL("http://127.0.0.1:1/other.crl"), b"")
    assert run.pending == NeedCRL(CRL)  # still outstanding


def test_answering_twice_or_after_the_verdict(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    run = validator(root, fetch=True, revocation_ca="off").start(inter.leaf(crl_urls=[CRL]).chain_pem, at=NOW)
    event = run.next_event()
    run.send(event, inter.crl())
    with pytest.raises(MachineError, match="checking_revocation"):
        run.send(event, inter.crl())
    assert isinstance(run.next_event(), Verdict)
    with pytest.raises(MachineError, match="done"):
        run.fail(event, "late")


# -- AIA -------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["der", "pem", "p7c", "p7c-pem"])
def test_missing_issuer_is_asked_for(ca: tuple[pki.Issued, pki.Issued], form: str) -> None:
    root, inter = ca
    leaf = inter.leaf(ca_issuers_urls=[AIA])
    body = {"der": inter.der, "pem": inter.pem, "p7c": pkcs7_bundle(inter),
            "p7c-pem": pkcs7_bundle(inter, pem=True)}[form]
    run = validator(root, fetch_issuers=True).start(leaf.pem, at=NOW)
    event = run.next_event()
    assert event == NeedIssuer(AIA) and run.state is State.AWAITING_ISSUER
    run.send(event, body)
    assert run.state is State.BUILDING
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and verdict.ok, verdict
    assert [c.der for c in verdict.path] == [leaf.der, inter.der, root.der]
    assert any("AIA caIssuers" in n for n in verdict.notes)


def test_aia_off_by_default_and_bounded(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(ca_issuers_urls=[AIA, "http://127.0.0.1:1/b.der", "http://127.0.0.1:1/c.der"])
    verdict = validator(root).start(leaf.pem, at=NOW).next_event()
    assert isinstance(verdict, Verdict) and verdict.reason is Reason.UNTRUSTED
    run = validator(root, fetch_issuers=True, max_fetched_issuers=2).start(leaf.pem, at=NOW)
    asked = []
    while not isinstance(event := run.next_event(), Verdict):
        asked.append(event)
        run.send(event, b"not a certificate")
    assert [type(e) for e in asked] == [NeedIssuer, NeedIssuer]
    assert event.reason is Reason.UNTRUSTED


def test_fetched_junk_issuer_does_not_help(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    other = pki.root("CN=Other").intermediate("CN=Test Intermediate CA")  # same name, other key
    leaf = inter.leaf(ca_issuers_urls=[AIA])
    run = validator(root, fetch_issuers=True).start(leaf.pem, at=NOW)
    run.send(run.next_event(), other.der)  # type: ignore[arg-type]
    verdict = run.next_event()
    assert isinstance(verdict, Verdict) and not verdict.ok


# -- never raises ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_answer_bytes_give_a_verdict(data: bytes) -> None:
    root = pki.root("CN=Fuzz Root")
    inter = root.intermediate()
    leaf = inter.leaf(crl_urls=[CRL], ocsp_urls=[OCSP], ca_issuers_urls=[AIA])
    for chain in (leaf.chain_pem, leaf.pem):
        run = validator(root, fetch=True, fetch_issuers=True).start(chain, at=NOW)
        for _ in range(10):
            event = run.next_event()
            if isinstance(event, Verdict):
                break
            run.send(event, data)
        assert isinstance(run.next_event(), Verdict)


@pytest.mark.parametrize("chain", [None, b"", b"garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n", 42, [b"\x30\x00"]])
def test_bad_chains_give_verdicts_not_exceptions(ca: tuple[pki.Issued, pki.Issued], chain: object) -> None:
    root, _ = ca
    verdict = validator(root, fetch=True).start(chain, at=NOW).next_event()
    assert isinstance(verdict, Verdict) and not verdict.ok and verdict.reason is not None
