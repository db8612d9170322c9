"""The gateway session's states, the events that move it, and the table between them.

Written as data (h11 ``_state.py``; like the verifier's asking machine,
``verify/machine.py``): for each :class:`State`, the :class:`Event` s allowed there and
the state each leads to. Two kinds of event share the table:

- what the runtime reports (``receive_client``, ``upstream_connected``,
  ``validated``, …): an event the table does not list for the current state is a
  runtime driving the session wrongly, and raises :class:`SessionError` naming
  the state — the peer's bytes never do;
- what the session does itself (ask for a validation, open the upstream, send
  the request head, start the next request, close).

An input whose consequence depends on what arrives (client bytes, a failure)
leaves the state as it is; the moves that follow it change it.
"""

from __future__ import annotations

import enum

from ..reasons import MtlsError

__all__ = ["TRANSITIONS", "Event", "SessionError", "State", "successors", "transition"]


class State(enum.Enum):
    """Where a gateway connection is."""

    # Members are singletons compared by identity: hash them so too, in C. Enum's own
    # __hash__ is Python code, and the table is looked up several times per request.
    __hash__ = object.__hash__

    AWAIT_REQUEST = "await_request"  # reading (and deciding) a request head from the client
    CONNECTING = "connecting"  # OpenUpstream issued, waiting for the runtime
    VALIDATING = "validating"  # Validate issued for a forwarded chain, waiting for the runtime
    FETCHING_KEYS = "fetching_keys"  # FetchJwks issued for an account's jwks_uri, waiting for the runtime
    CHECKING_RATE = "checking_rate"  # CheckRate issued for the shared rate limit, waiting for the runtime
    STREAM_REQUEST = "stream_request"  # relaying the request body upstream
    AWAIT_RESPONSE = "await_response"  # relaying the upstream response to the client
    CLOSED = "closed"


class Event(enum.Enum):
    """What can happen to a session: the runtime's reports, then the session's own moves."""

    __hash__ = object.__hash__  # as State's

    # -- reported by the runtime (the Session's public methods) --
    CLIENT_DATA = "receive_client"
    CLIENT_TIMEOUT = "client_timeout"
    CLIENT_WRITE_TIMEOUT = "client_write_timeout"
    UPSTREAM_CONNECTED = "upstream_connected"
    UPSTREAM_DATA = "receive_upstream"
    UPSTREAM_FAILED = "upstream_failed"
    VALIDATED = "validated"
    KEYS_FETCHED = "keys_fetched"
    RATE_CHECKED = "rate_checked"
    # -- the session's own moves --
    STEP = "next_action"  # work out the next action from the bytes at hand
    ASK_VALIDATION = "ask_validation"  # a trusted proxy forwarded a chain the runtime must validate
    ASK_KEYS = "ask_keys"  # the request's checks need keys from a jwks_uri the runtime must fetch
    ASK_RATE = "ask_rate"  # the account's rate limit is kept in the shared store ([shared])
    OPEN_UPSTREAM = "open_upstream"  # forward a request: ask the runtime for an upstream connection
    REQUEST_SENT = "request_sent"  # the whole request body went upstream
    NEXT_REQUEST = "next_request"  # both sides done with this exchange: keep-alive
    CLOSE = "close"


_S, _E = State, Event
# Every state takes CLIENT_WRITE_TIMEOUT: a write the session queued earlier
# (a 100 Continue before OpenUpstream, an answer before it closed) may fail after
# it moved on. The runtime reads only when told (ReadClient in AWAIT_REQUEST and
# STREAM_REQUEST; ReadUpstream in AWAIT_RESPONSE), and while CONNECTING,
# VALIDATING, FETCHING_KEYS or CHECKING_RATE the session waits for the one report it asked for.
TRANSITIONS: dict[State, dict[Event, State]] = {
    _S.AWAIT_REQUEST: {
        _E.STEP: _S.AWAIT_REQUEST,
        _E.CLIENT_DATA: _S.AWAIT_REQUEST,
        _E.CLIENT_TIMEOUT: _S.AWAIT_REQUEST,
        _E.CLIENT_WRITE_TIMEOUT: _S.AWAIT_REQUEST,
        _E.ASK_VALIDATION: _S.VALIDATING,
        _E.ASK_KEYS: _S.FETCHING_KEYS,
        _E.ASK_RATE: _S.CHECKING_RATE,
        _E.OPEN_UPSTREAM: _S.CONNECTING,
        _E.NEXT_REQUEST: _S.AWAIT_REQUEST,  # answered locally (identity JSON, 4xx)
        _E.CLOSE: _S.CLOSED,
    },
    _S.VALIDATING: {
        _E.CLIENT_WRITE_TIMEOUT: _S.VALIDATING,
        # Back to the request just read, decided now with the forwarded chain's verdict.
        _E.VALIDATED: _S.AWAIT_REQUEST,
        _E.CLOSE: _S.CLOSED,
    },
    _S.FETCHING_KEYS: {
        _E.CLIENT_WRITE_TIMEOUT: _S.FETCHING_KEYS,
        # Back to the request just read, decided again now that the keys are cached.
        _E.KEYS_FETCHED: _S.AWAIT_REQUEST,
        _E.CLOSE: _S.CLOSED,
    },
    _S.CHECKING_RATE: {
        _E.CLIENT_WRITE_TIMEOUT: _S.CHECKING_RATE,
        # Back to the request just read, decided with the shared store's answer.
        _E.RATE_CHECKED: _S.AWAIT_REQUEST,
        _E.CLOSE: _S.CLOSED,
    },
    _S.CONNECTING: {
        _E.CLIENT_WRITE_TIMEOUT: _S.CONNECTING,
        _E.UPSTREAM_CONNECTED: _S.STREAM_REQUEST,
        _E.UPSTREAM_FAILED: _S.CONNECTING,
        _E.NEXT_REQUEST: _S.AWAIT_REQUEST,  # answered 502/504 with the body all read
        _E.CLOSE: _S.CLOSED,
    },
    _S.STREAM_REQUEST: {
        _E.STEP: _S.STREAM_REQUEST,
        _E.CLIENT_DATA: _S.STREAM_REQUEST,
        _E.CLIENT_TIMEOUT: _S.STREAM_REQUEST,
        _E.CLIENT_WRITE_TIMEOUT: _S.STREAM_REQUEST,
        _E.UPSTREAM_FAILED: _S.STREAM_REQUEST,
        _E.REQUEST_SENT: _S.AWAIT_RESPONSE,
        _E.NEXT_REQUEST: _S.AWAIT_REQUEST,  # answered (413, 502) with the body all read
        _E.CLOSE: _S.CLOSED,
    },
    _S.AWAIT_RESPONSE: {
        _E.STEP: _S.AWAIT_RESPONSE,
        _E.CLIENT_WRITE_TIMEOUT: _S.AWAIT_RESPONSE,
        _E.UPSTREAM_DATA: _S.AWAIT_RESPONSE,
        _E.UPSTREAM_FAILED: _S.AWAIT_RESPONSE,
        _E.NEXT_REQUEST: _S.AWAIT_REQUEST,
        _E.CLOSE: _S.CLOSED,
    },
    # Closed is final: late reports of what was under way are taken and change nothing.
    _S.CLOSED: {
        _E.STEP: _S.CLOSED,
        _E.CLIENT_DATA: _S.CLOSED,
        _E.CLIENT_TIMEOUT: _S.CLOSED,
        _E.CLIENT_WRITE_TIMEOUT: _S.CLOSED,
        _E.UPSTREAM_FAILED: _S.CLOSED,
        _E.CLOSE: _S.CLOSED,
    },
}

# What the session waits for in the states where it cannot step on its own.
_AWAITED = {
    State.CONNECTING: "report upstream_connected() or upstream_failed()",
    State.VALIDATING: "report validated(verdict)",
    State.FETCHING_KEYS: "report keys_fetched()",
    State.CHECKING_RATE: "report rate_checked(answer)",
}


class SessionError(MtlsError):
    """The runtime drove the session in a way its current state does not allow.

    A programming error in the runtime (like h11's ``LocalProtocolError``), never
    a verdict about a peer; ``state`` and ``event`` name where and what.
    """

    def __init__(self, message: str, state: State, event: Event) -> None:
        super().__init__(message)
        self.state = state
        self.event = event


def transition(state: State, event: Event) -> State:
    """The state after ``event`` in ``state``. Raises :class:`SessionError` if not allowed."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        hint = _AWAITED.get(state)
        message = f"{event.value} in state {state.value}" + (f": {hint}" if hint else "")
        raise SessionError(message, state, event) from None


def successors(state: State) -> frozenset[State]:
    """The states ``state`` can move to (the table's graph, without the events)."""
    return frozenset(TRANSITIONS[state].values())
