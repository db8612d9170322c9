"""The gateway session's (state, event) table, its Evidence and its typed outcomes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import replace

import pytest
from test_session import (
    CRL_URL,
    DN,
    FETCHING,
    GOOD,
    INTER,
    NOW,
    PROXY,
    Driver,
    _forwarded,
    facts,
    gateway,
    req,
    upstream_response,
)

from mtlscore import MtlsError, Reason, Verdict
from mtlscore.gateway.appauth import RateAnswer
from mtlscore.gateway.events import (
    CheckRate,
    Close,
    Evidence,
    FetchJwks,
    GatewayReason,
    Log,
    OpenUpstream,
    Outcome,
    ReleaseUpstream,
    UpstreamFailure,
    Validate,
    WriteClient,
    WriteUpstream,
)
from mtlscore.gateway.machine import TRANSITIONS, Event, transition
from mtlscore.gateway.session import Session, SessionError, State
from mtlscore.gateway.shared import SharedSettings
from mtlscore.identity.jwks import NeedJwks

SHARED = SharedSettings("redis://127.0.0.1:6379/0")


def test_every_pair_the_table_does_not_list_raises_naming_the_state() -> None:
    for state in State:
        for event in Event:
            if event in TRANSITIONS[state]:
                assert transition(state, event) is TRANSITIONS[state][event]
                continue
            with pytest.raises(SessionError, match=state.value) as info:
                transition(state, event)
            assert isinstance(info.value, MtlsError)
            assert (info.value.state, info.value.event) == (state, event)


def test_closed_is_final_and_every_state_can_close() -> None:
    assert set(TRANSITIONS[State.CLOSED].values()) == {State.CLOSED}
    assert all(TRANSITIONS[s][Event.CLOSE] is State.CLOSED for s in State)
    # Every state is reachable from the first one.
    seen, todo = {State.AWAIT_REQUEST}, [State.AWAIT_REQUEST]
    while todo:
        for nxt in TRANSITIONS[todo.pop()].values():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(State)


# -- the session enforces the table on what the runtime reports -------------------------------

# The runtime's reports, as calls.
REPORTS: dict[Event, Callable[[Session], None]] = {
    Event.CLIENT_DATA: lambda s: s.receive_client(b""),
    Event.CLIENT_TIMEOUT: lambda s: s.client_timeout(),
    Event.CLIENT_WRITE_TIMEOUT: lambda s: s.client_write_timeout(),
    Event.UPSTREAM_CONNECTED: lambda s: s.upstream_connected(),
    Event.UPSTREAM_DATA: lambda s: s.receive_upstream(b""),
    Event.UPSTREAM_FAILED: lambda s: s.upstream_failed(UpstreamFailure.ERROR, "scripted"),
    Event.VALIDATED: lambda s: s.validated(Verdict.reject(Reason.REVOKED, "scripted")),
    Event.KEYS_FETCHED: lambda s: s.keys_fetched(),
    Event.RATE_CHECKED: lambda s: s.rate_checked(RateAnswer(None)),
}
# An account whose token keys live at a jwks_uri: a request with a token makes the runtime fetch them.
JWKS_ACCOUNT = {"token": {"jwks_uri": "https://as.test/jwks", "issuer": "https://as.test"}}


def _until(s: Session, want: State) -> Session:
    for _ in range(50):
        if s.state is want and want is not State.CONNECTING:  # that one: once OpenUpstream is out
            return s
        action = s.next_action(at=NOW, now=0.0)
        if isinstance(action, OpenUpstream):
            if want is State.CONNECTING:
                return s
            s.upstream_connected()
        elif isinstance(action, Close):
            break
    assert s.state is want, s.state
    return s


def _in(state: State) -> Session:
    """A fresh session driven into ``state``."""
    if state is State.VALIDATING:
        s = Session(gateway(proxies=(PROXY,), policy=FETCHING), facts(None), at=NOW, fetch=True)
        s.receive_client(req(headers=_forwarded(INTER.leaf(DN, crl_urls=[CRL_URL]))))
        assert isinstance(s.next_action(at=NOW, now=0.0), Validate)
        return s
    if state is State.FETCHING_KEYS:
        s = Session(gateway(account=JWKS_ACCOUNT), facts(GOOD), at=NOW)
        s.receive_client(req(headers=[("Authorization", "Bearer a.b.c")]))
        assert isinstance(s.next_action(at=NOW, now=0.0), FetchJwks)
        return s
    if state is State.CHECKING_RATE:
        s = Session(replace(gateway(account={"rate_limit": "2/min"}), shared=SHARED), facts(GOOD), at=NOW)
        s.receive_client(req())
        assert isinstance(s.next_action(at=NOW, now=0.0), CheckRate)
        return s
    s = Session(gateway(), facts(GOOD), at=NOW)
    if state is State.AWAIT_REQUEST:
        return s
    if state is State.CLOSED:
        s.receive_client(b"")
        return _until(s, State.CLOSED)
    body = b"x" * 10
    head = req("/", method="POST", body=body)
    s.receive_client(head[: len(head) - len(body)] if state is State.STREAM_REQUEST else head)
    return _until(s, state)


@pytest.mark.parametrize("state", list(State))
def test_a_report_the_state_does_not_take_raises_and_changes_nothing(state: State) -> None:
    for event, report in REPORTS.items():
        s = _in(state)
        if event in TRANSITIONS[state]:
            continue
        with pytest.raises(SessionError, match=state.value):
            report(s)
        assert s.state is state


@pytest.mark.parametrize("state", [State.CONNECTING, State.VALIDATING, State.FETCHING_KEYS, State.CHECKING_RATE])
def test_next_action_waits_for_the_report_it_asked_for(state: State) -> None:
    s = _in(state)
    with pytest.raises(SessionError, match=r"report (upstream_connected|validated|keys_fetched|rate_checked)"):
        s.next_action(at=NOW, now=0.0)


def test_keys_fetched_decides_the_waiting_request_again() -> None:
    s = _in(State.FETCHING_KEYS)
    with pytest.raises(SessionError):  # not yet: the keys are not reported
        s.next_action(at=NOW, now=0.0)
    s.gateway.jwks_cache.fail(NeedJwks("https://as.test/jwks"), "scripted: unreachable", now=0.0)
    s.keys_fetched()
    assert s.state is State.AWAIT_REQUEST
    d = Driver(s, []).run()
    [decision] = d.decisions()
    assert (decision.outcome, decision.status, decision.reason) == (Outcome.DENY, 503, "jwks_unavailable")
    assert d.responses()[0][0] == 503
    with pytest.raises(SessionError, match="closed"):
        s.keys_fetched()


def test_an_unknown_upstream_failure_is_the_runtimes_error() -> None:
    s = _in(State.CONNECTING)
    with pytest.raises(SessionError, match="bogus"):
        s.upstream_failed("bogus", "scripted")  # type: ignore[arg-type]
    s.upstream_failed("connect", "plain strings still name a kind")  # type: ignore[arg-type]
    d = Driver(s, []).run()
    assert d.decisions()[0].reason == GatewayReason.UPSTREAM_UNAVAILABLE


# -- bugs the table made plain -----------------------------------------------------------------


def test_a_validated_forwarded_chain_goes_out_on_the_kept_alive_upstream() -> None:
    # Behind a trusted proxy, with fetching: each request's chain is validated by the
    # runtime (Validate). Each response hands the upstream connection back for the next
    # request (the runtime's pool gives the same one out again).
    s = Session(gateway(proxies=(PROXY,), policy=FETCHING.evolve(revocation="soft")), facts(None), at=NOW, fetch=True)
    d = Driver(s, [req("/one", headers=_forwarded(GOOD)), req("/two", headers=_forwarded(GOOD))],
               [upstream_response(), upstream_response()]).run()
    assert sum(isinstance(a, Validate) for a in d.actions) == 2
    assert sum(isinstance(a, OpenUpstream) for a in d.actions) == 2
    assert sum(isinstance(a, ReleaseUpstream) for a in d.actions) == 2
    assert [t for t, _ in d.upstream_requests()] == [b"/one", b"/two"]
    assert [r[0] for r in d.responses()] == [200, 200]


def test_a_client_gone_before_the_upstream_opens_never_asks_to_open_it() -> None:
    s = Session(gateway(), facts(GOOD), at=NOW)
    s.receive_client(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    seen = []
    for _ in range(20):
        action = s.next_action(at=NOW, now=0.0)
        seen.append(action)
        if isinstance(action, WriteClient):  # the 100 Continue: the client takes nothing
            s.client_write_timeout()
        elif isinstance(action, Close):
            break
    assert not any(isinstance(a, OpenUpstream) for a in seen)
    logged = [(a.decision.outcome, a.decision.reason) for a in seen if isinstance(a, Log)]
    assert logged == [("forward", None), ("error", "write_timeout")]


# -- the evidence and the outcomes -------------------------------------------------------------


def test_each_request_gets_its_own_evidence_whole() -> None:
    s = Session(gateway(proxies=(PROXY,)), facts(None), at=NOW)
    own = s.evidence
    assert (own.forwarded, own.presented, own.account, own.address.address) == (False, (), None, "127.0.0.1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        own.account = "root"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.verdict = Verdict.reject(Reason.REVOKED, "")  # type: ignore[misc]
    s.receive_client(req(headers=[*_forwarded(GOOD), ("X-Forwarded-For", "203.0.113.9")]))
    while not isinstance(s.next_action(at=NOW, now=0.0), OpenUpstream):
        pass
    e = s.evidence
    assert isinstance(e, Evidence) and e is not own and s.evidence is not own
    assert e.forwarded and e.verdict.ok and e.account == "partner-abc"
    assert e.leaf is not None and e.thumbprint == e.leaf.x5t_s256 and e.principal is e.verdict.principal
    assert (s.verdict, s.presented, s.account, s.thumbprint) == (e.verdict, e.presented, e.account, e.thumbprint)
    assert own == s._own  # the connection's own evidence is untouched


def test_outcomes_are_typed_and_log_as_plain_strings() -> None:
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req()], [upstream_response()]).run()
    [decision] = d.decisions()
    assert decision.outcome is Outcome.FORWARD
    assert json.loads(json.dumps(decision.as_log()))["outcome"] == "forward"
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req()], connect="timeout").run()
    forward, decision = d.decisions()  # decided to forward, then the upstream did not answer
    assert forward.outcome is Outcome.FORWARD
    assert (decision.outcome, decision.status, decision.reason) == (Outcome.ERROR, 504, GatewayReason.UPSTREAM_TIMEOUT)
    assert json.loads(d.responses()[0][2])["error"] == "upstream_timeout"
    assert not any(isinstance(a, WriteUpstream) for a in d.actions)
