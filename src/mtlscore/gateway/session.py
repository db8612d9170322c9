"""The gateway's sans-IO core for one client connection (h11 towards client and upstream).

A runtime terminates TLS, builds a :class:`Session` from what the TLS layer
saw (:class:`TLSFacts`), then loops until :class:`Close`::

    action = session.next_action(at=wall_clock, now=monotonic)
    ReadClient    -> session.receive_client(data)  (b"" at EOF) | session.client_timeout()
    WriteClient   -> send action.data to the client | session.client_write_timeout()
    OpenUpstream  -> session.upstream_connected() | session.upstream_failed(UpstreamFailure.CONNECT, why)
    WriteUpstream -> send action.data upstream | session.upstream_failed(UpstreamFailure.TIMEOUT, why)
    ReadUpstream  -> session.receive_upstream(data) | session.upstream_failed(UpstreamFailure.TIMEOUT, why)
    CloseUpstream -> close the upstream socket
    ReleaseUpstream -> keep the upstream connection for a later request (any client's) or close it
    FetchJwks     -> fetch action.request into action.cache, then session.keys_fetched()
    CheckRate     -> take the account's token in the shared store ([shared]), then
                     session.rate_checked(RateAnswer) (error set when the store did not answer)
    Validate      -> session.validated(verdict), the verdict of action.validation driven
                     with the runtime's revocation fetcher (only with fetch=True)
    Log           -> log action.decision as one line and count it

It validates the chain once per connection, then per request applies the mode
(docs/reference.md#configuration-file ``[server] mode``), the account's app-level checks
(``_appauth``), and answers locally (JSON) or forwards to the upstream with
identity headers, the client's own copies of those headers removed first
(``gateway/forwarding.py``; the actions and facts are in ``gateway/events.py``).
Deadlines are the session's arithmetic (docs/hardening.md): the runtime passes
``now`` and enforces the timeout each action carries. The request head has one
deadline from its first byte, the body one that grows with the bytes received
(a minimum rate), waiting for a request an idle one; every write carries the
write timeout; past ``max_connection_age`` the connection closes after its
current response. No sockets, no clocks.

Where the connection is and what may happen next is the table in
``gateway/machine.py`` (keyed by state and event, like the verifier's asking
machine); what the current request is decided on is one frozen
:class:`Evidence`, replaced whole per request.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import h11

from ..decision.verdict import Verdict
from ..identity.identity import Identity
from ..identity.identity_map import IdentityMap, Principal
from ..identity.jwks import NeedJwks
from ..identity.self_signed import is_candidate
from ..identity.self_signed import match as match_self_signed
from ..proxy.trusted import (
    ClientAddress,
    Reject,
    TrustedProxy,
    UseForwarded,
    UseTls,
    decision_verdict,
    peer_address,
)
from ..proxy.trusted import Decision as ProxyDecision
from ..reasons import CertificateRejected, ConfigError, Reason
from ..x509.cert import Certificate, parse_certificate
from .appauth import AccountAuth, AuthResult, NeedRate, RateAnswer, authorize, credential_owner
from .deadlines import Deadlines
from .events import (
    IDEMPOTENT_METHODS,
    Action,
    CheckRate,
    Close,
    CloseUpstream,
    Decision,
    Evidence,
    FetchJwks,
    Gateway,
    GatewayReason,
    Log,
    OpenUpstream,
    Outcome,
    ReadClient,
    ReadUpstream,
    ReleaseUpstream,
    TLSFacts,
    UpstreamFailure,
    Validate,
    WriteClient,
    WriteUpstream,
    _peer,
)
from .forwarded_cache import Forwarded
from .forwarding import (
    HOP_BY_HOP as HOP_BY_HOP,
)
from .forwarding import (
    IdentityFields,
    _client_response_headers,
    _identity_document,
    _identity_headers,
    _json,
    _upstream_request_headers,
    identity_fields,
    request_header_filter,
    with_identity_lines,
)
from .http11 import ServerConnection
from .machine import Event, SessionError, State, successors, transition
from .request_head import INVALID_FRAMING as INVALID_FRAMING
from .request_head import INVALID_TARGET as INVALID_TARGET
from .request_head import Refused, Target, framing_problem, request_target

# The actions and facts a runtime handles are mtlscore.gateway.events' (one list, there).
__all__ = ["Event", "Session", "SessionError", "State"]

# What h11 hands back from the client's side.
ClientEvent = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]

# The outcomes that let a request through (the expiry radar records those certificates).
_LETS_IN = frozenset({Outcome.FORWARD, Outcome.ANSWER, Outcome.AUTHORIZE})
# mode = "auth": the header naming why a request was refused (the edge shows it to the client).
REASON_HEADER = "X-Mtls-Reason"

# The state graph (which states each can reach), read off the event table.
_TRANSITIONS: dict[State, frozenset[State]] = {state: successors(state) for state in State}


# default_account_auth's answers by principal object (held, so its id is never another's):
# a reconnecting client's verdict, from the verdict cache, brings back the same principal,
# and reading its account table again was a few µs of every new connection. Bounded.
_ACCOUNT_AUTH: dict[int, tuple[Principal, AccountAuth]] = {}
_ACCOUNT_AUTH_SIZE = 256


def default_account_auth(principal: Principal | None) -> AccountAuth | None:
    """App-level requirements from a principal's attributes (the ``[[accounts]]`` table keys).

    Raises :class:`ConfigError` naming the key when a value is bad.
    """
    if principal is None:
        return None
    hit = _ACCOUNT_AUTH.get(id(principal))
    if hit is not None and hit[0] is principal:
        return hit[1]
    auth = AccountAuth.from_mapping(principal.id, principal.attributes)
    if len(_ACCOUNT_AUTH) >= _ACCOUNT_AUTH_SIZE:
        _ACCOUNT_AUTH.clear()
    _ACCOUNT_AUTH[id(principal)] = (principal, auth)
    return auth


@functools.lru_cache(maxsize=8)
def _credential_accounts(
    identity_map: IdentityMap, resolve: Callable[[Principal | None], AccountAuth | None]
) -> tuple[AccountAuth, ...] | AuthResult:
    """The accounts of ``identity_map`` that require a credential, by ``resolve``.

    Cached per loaded configuration (a reload brings a new identity map): clients
    without a certificate in allow mode must not make every request parse every
    account's settings again.
    """
    principals = [Principal(rule.account, rule.groups, rule.attributes, rule.name)
                  for rule in identity_map.rules if rule.account and not rule.template]
    principals += [client.principal for client in identity_map.self_signed_clients]
    out: dict[str, AccountAuth] = {}
    for principal in principals:
        try:
            auth = resolve(principal)
        except ConfigError as exc:
            return AuthResult(False, 500, GatewayReason.ACCOUNT_CONFIG, f"account configuration: {exc}")
        if auth is not None and auth.requires_credential and auth.account not in out:
            out[auth.account] = auth
    return tuple(out.values())


class Session:
    """One client connection: validation once, then a sequence of HTTP/1.1 exchanges.

    Illegal driving (e.g. ``upstream_connected`` with no upstream pending) raises
    :class:`SessionError` naming the state (the table in ``gateway/machine.py``);
    the peer's bytes never raise.
    """

    def __init__(
        self,
        gateway: Gateway,
        tls: TLSFacts,
        *,
        at: datetime,
        verdict: Verdict | None = None,
        fetch: bool = False,
        now: float | None = None,
    ) -> None:
        """``verdict``: the chain's verdict when the runtime already reached it by driving
        ``Validator.start`` (fetching CRLs, OCSP answers, issuers); else validated here.
        ``fetch``: the runtime drives :class:`Validate` actions with its fetcher, so a
        chain forwarded by a trusted proxy waits for revocation data as a TLS one does
        (when the policy fetches); without it a forwarded chain is validated here,
        from the configured CRLs and what is cached.
        ``now``: the monotonic time the connection was accepted (its age counts from
        there; default: the first :meth:`next_action`)."""
        self.gateway = gateway
        self.server = gateway.server
        self.tls = tls
        self.state = State.AWAIT_REQUEST
        self._fetch = fetch and gateway.validator.policy.fetch
        self._awaiting: tuple[UseForwarded, datetime, float] | None = None  # a forwarded chain being validated
        self._keys_wait: tuple[datetime, float] | None = None  # (at, now) of the request waiting on FetchJwks
        self._rate_wait: tuple[datetime, float] | None = None  # (at, now) of the request waiting on CheckRate
        self._pending: deque[Action] = deque()
        self._client = ServerConnection(max_incomplete_event_size=self.server.max_header_bytes)
        self._upstream: h11.Connection | None = None
        self._owned = request_header_filter(self.server)  # what of the client's head never goes upstream
        self._request: h11.Request | None = None
        # The current request's fields as (lower-case name, value), read off h11's parse once:
        # iterating h11's Headers goes through Sequence.__iter__, an item at a time.
        self._fields: list[tuple[bytes, bytes]] = []
        self._target = Target(b"/")  # the current request's normalised target
        self._response_started = False
        self._consumed: bytes | None = None  # the header that carried the API key the gateway accepted
        # The app-level settings of the last principal resolved (the snapshot is this connection's).
        self._account_auth: tuple[Principal | None, AccountAuth | None] | None = None
        # The identity fields of one Evidence (``_identity_fields``), kept while it is current.
        self._identity: tuple[Evidence, IdentityFields | None] | None = None
        self._body_seen = 0
        self._received_any = False
        # h11's buffer of client bytes is known empty (nothing received since the last cycle
        # ended clean, or since the start): its next event is NEED_DATA, not worth a parse.
        self._client_drained = True
        # Likewise the upstream's: a connection's h11 before the response's first bytes.
        self._upstream_drained = False
        # The upstream h11 connection of the last exchange, handed back clean (IDLE both
        # ways, nothing buffered, keep-alive): the next request's, whichever pooled socket
        # it goes out on, rather than a new one (what h11 keeps across cycles is only the
        # peer's HTTP version, which a client connection does not use).
        self._spare_upstream: h11.Connection | None = None
        # Deadline bookkeeping (monotonic seconds, from next_action's ``now``).
        self._deadlines = Deadlines(self.server, born=now)
        self._proxy_policy = self.server.proxy_policy  # built once per connection, used per request
        # Parsed once, matched against proxies per request (none configured: never read).
        self._peer_ip = peer_address(tls.peer[0]) if self._proxy_policy is not None else None
        self._peer_text = _peer(tls.peer)  # as every decision logs it
        # The evidence of this connection's last forwarded-cache hit: the next request of the
        # same client (an edge's keep-alive connection asks about the same ones) reuses it.
        self._last_hit: Evidence | None = None
        # The forwarded-cache entry this request's evidence came from or went into.
        self._remembered: Forwarded | None = None
        # The connection's own (TLS) evidence; behind trusted proxies each request
        # decides on its own (:meth:`_evidence`), starting again from this one.
        self._own = self._validate(at, verdict)
        self.evidence = self._own

    # What the current request is decided on (read-only views of :attr:`evidence`).

    @property
    def verdict(self) -> Verdict:
        return self.evidence.verdict

    @property
    def presented(self) -> tuple[Certificate, ...]:
        return self.evidence.presented

    @property
    def account(self) -> str | None:
        return self.evidence.account

    @property
    def thumbprint(self) -> str | None:
        return self.evidence.thumbprint

    # -- validation, once per connection -----------------------------------

    def _validate(self, at: datetime, given: Verdict | None) -> Evidence:
        address = ClientAddress(self.tls.peer[0], "")
        if not self.tls.chain:
            verdict = Verdict.reject(Reason.NOT_PROVIDED, "the client sent no certificate")
            return Evidence.of(verdict, (), address)
        # With revocation fetching on, the runtime drives Validator.start() with its
        # fetcher before the session exists and hands the verdict in.
        if given is None:
            verdict = self.gateway.validator.validate(list(self.tls.chain), at=at, crls=self.gateway.crls)
        else:
            verdict = given
        try:
            presented = self._parsed(verdict)
        except CertificateRejected as exc:
            if verdict.ok:
                verdict = Verdict.reject(exc.reason, exc.detail)
            return Evidence.of(verdict, (), address)
        if self.tls.leaf_only:
            note = "only the leaf was visible to the gateway (no presented-chain API in this Python)"
            verdict = replace(
                verdict,
                notes=(*verdict.notes, note),
                detail=verdict.detail if verdict.ok else f"{verdict.detail} ({note})",
            )
        return Evidence.of(verdict, presented, address)

    def _parsed(self, verdict: Verdict) -> tuple[Certificate, ...]:
        """The presented certificates, parsed: the verdict's own leaf when it has it.

        The client certificate is not added to the shared parse cache (see
        Validator.parse); a reconnecting client's verdict, from the verdict
        cache, already holds it.
        """
        chain = self.tls.chain
        leaf = verdict.path[0] if verdict.path and verdict.path[0].der == chain[0] else None
        if leaf is None:
            leaf = parse_certificate(chain[0], remember=False)
        return (leaf, *(parse_certificate(der) for der in chain[1:]))

    # -- transitions -------------------------------------------------------

    def _on(self, event: Event) -> None:
        """Move by ``event`` (the table in ``gateway/machine.py``); SessionError if illegal here."""
        self.state = transition(self.state, event)

    def _decide(self, outcome: Outcome, status: int | None, reason: str | None, detail: str) -> None:
        req = self._request
        evidence = self.evidence
        accepted = outcome in _LETS_IN and evidence.verdict.ok
        self._pending.append(
            Log(
                Decision(
                    outcome,
                    status,
                    reason,
                    detail,
                    account=evidence.account,
                    thumbprint=evidence.thumbprint,
                    peer=self._peer_text,
                    method=req.method.decode("latin-1") if req else "",
                    target=req.target.decode("latin-1")[:200] if req else "",
                ),
                # What the expiry radar records: a certificate let through on its own merit.
                chain=evidence.presented if accepted else (),
                verdict=evidence.verdict if accepted else None,
            )
        )

    # -- runtime inputs ----------------------------------------------------

    def receive_client(self, data: bytes) -> None:
        """Bytes from the client (``b""`` at end of stream), after :class:`ReadClient`."""
        self._on(Event.CLIENT_DATA)
        if data:
            self._received_any = True
        self._client_drained = False
        if self.state is not State.CLOSED:
            self._client.receive_data(data)

    def client_timeout(self) -> None:
        """The runtime's read timeout on the client fired."""
        self._on(Event.CLIENT_TIMEOUT)
        if self.state is State.AWAIT_REQUEST and not self._received_any:
            self._close()  # an idle keep-alive connection: just close
        elif self.state in (State.AWAIT_REQUEST, State.STREAM_REQUEST) and not self._response_started:
            self._answer_error(408, GatewayReason.PROTOCOL_ERROR, "timed out waiting for the request", close=True)
        else:
            self._close()

    def client_write_timeout(self) -> None:
        """A send to the client did not finish within the write timeout: a client that does not read."""
        self._on(Event.CLIENT_WRITE_TIMEOUT)
        self._decide(
            Outcome.ERROR,
            None,
            GatewayReason.WRITE_TIMEOUT,
            f"the client read nothing for {self.server.write_timeout:g} s",
        )
        self._drop_upstream()
        self._close()

    def upstream_connected(self) -> None:
        """The connection asked for by :class:`OpenUpstream` is open."""
        self._on(Event.UPSTREAM_CONNECTED)
        assert self._request is not None  # CONNECTING is entered with a request to forward
        spare, self._spare_upstream = self._spare_upstream, None
        self._upstream = spare or h11.Connection(h11.CLIENT, max_incomplete_event_size=self.server.max_header_bytes)
        self._upstream_drained = True
        self._send_request_head(self._request)

    def receive_upstream(self, data: bytes) -> None:
        """Bytes from the upstream (``b""`` at end of stream), after :class:`ReadUpstream`."""
        self._on(Event.UPSTREAM_DATA)
        assert self._upstream is not None  # AWAIT_RESPONSE has its upstream connection
        self._upstream_drained = False
        self._upstream.receive_data(data)

    def upstream_failed(self, kind: UpstreamFailure, detail: str = "") -> None:
        """Reaching the upstream failed: see :class:`UpstreamFailure` (a timeout answers 504)."""
        try:
            kind = UpstreamFailure(kind)
        except ValueError:
            raise SessionError(f"upstream_failed({kind!r}): not an UpstreamFailure", self.state,
                               Event.UPSTREAM_FAILED) from None
        self._on(Event.UPSTREAM_FAILED)
        self._drop_upstream()
        timeout = kind is UpstreamFailure.TIMEOUT
        reason = GatewayReason.UPSTREAM_TIMEOUT if timeout else GatewayReason.UPSTREAM_UNAVAILABLE
        if self._response_started or self.state is State.CLOSED:
            self._decide(Outcome.ERROR, None, reason, detail or kind.value)
            self._close()
            return
        self._answer_error(504 if timeout else 502, reason, detail or f"upstream {kind.value} failed")

    def validated(self, verdict: Verdict) -> None:
        """The verdict of the forwarded chain asked for by :class:`Validate`; the request goes on."""
        self._on(Event.VALIDATED)
        assert self._awaiting is not None and self._request is not None  # set with ASK_VALIDATION
        decision, at, now = self._awaiting
        self._awaiting = None
        self._settle(self._request, decision, lambda _chain: verdict, decision.proxy)
        self._decide_request(self._request, at, now)

    # -- the loop ------------------------------------------------------------

    def next_action(self, *, at: datetime, now: float) -> Action:
        """The next thing the runtime must do; ``at`` is wall time, ``now`` monotonic seconds."""
        self._deadlines.tick(now)
        while not self._pending:
            self._on(Event.STEP)  # not while an OpenUpstream or a Validate awaits its report
            if self.state is State.CLOSED:
                return Close(linger=self._client.their_state is h11.SEND_BODY)
            if self.state is State.AWAIT_RESPONSE:
                self._step_upstream()
                # Relay what h11 already holds of the response with it: the head and a body
                # that came in the same read go to the client in one write (one TLS record,
                # one send), not one per h11 event.
                while self.state is State.AWAIT_RESPONSE and all(isinstance(a, WriteClient) for a in self._pending):
                    self._step_upstream()
            else:
                self._step_client(at, now)
        return self._pending.popleft()

    def _client_event(self) -> ClientEvent | None:
        try:
            return self._client.next_event()
        except h11.RemoteProtocolError as exc:
            self._drop_upstream()
            if self._response_started:
                self._close()
            else:
                self._answer_error(exc.error_status_hint, GatewayReason.PROTOCOL_ERROR, str(exc), close=True)
            return None

    def _step_client(self, at: datetime, now: float) -> None:
        if self._client_drained and self.state is State.AWAIT_REQUEST:
            event: ClientEvent | None = h11.NEED_DATA
        else:
            event = self._client_event()
        if event is None:
            return
        if event is h11.NEED_DATA:
            timeout = self._read_deadline(now) - now
            if timeout > 0:
                self._pending.append(ReadClient(timeout, self._waiting_since()))
            else:
                self.client_timeout()
        elif isinstance(event, h11.Request):
            self._on_request(event, at, now)
        elif isinstance(event, h11.Data) and self.state is State.STREAM_REQUEST:
            self._body_seen += len(event.data)
            if self._body_seen > self.server.max_body_bytes:
                self._drop_upstream()
                self._answer_error(
                    413,
                    GatewayReason.BODY_TOO_LARGE,
                    f"request body over {self.server.max_body_bytes} bytes",
                    close=True,
                )
                return
            self._send_upstream(h11.Data(data=event.data))
        elif isinstance(event, h11.EndOfMessage) and self.state is State.STREAM_REQUEST:
            self._send_upstream(h11.EndOfMessage())
            if self.state is State.STREAM_REQUEST:  # not when relaying it failed
                self._on(Event.REQUEST_SENT)
        else:  # ConnectionClosed or PAUSED: the client is gone or done
            self._drop_upstream()
            self._close()

    def _read_deadline(self, now: float) -> float:
        """When the current wait for client bytes must end (absolute; ``gateway/deadlines.py``)."""
        if self.state is State.AWAIT_REQUEST:
            return self._deadlines.request(now, begun=self._received_any)
        return self._deadlines.body(now, self._body_seen)

    def _waiting_since(self) -> float | None:
        """Since when this connection has kept the gateway waiting for a request (None: in a body)."""
        return self._deadlines.waiting_since() if self.state is State.AWAIT_REQUEST else None

    # -- one request -----------------------------------------------------------

    def _evidence(self, request: h11.Request, at: datetime) -> UseForwarded | None:
        """Whose certificate this request is about: the connection's, or the one a trusted proxy forwarded.

        Without trusted proxies every request is the connection's. With them, each
        request is decided on its own (a proxy multiplexes its clients on one
        connection): mtlscore.proxy.trusted.ProxyPolicy picks the chain — from the
        headers of a trusted proxy, else the TLS one (other peers' certificate
        headers are ignored, and stripped before forwarding) — and it is validated.
        Returns the proxy's decision when the runtime must validate its chain first
        (with fetching, :class:`Validate`).
        """
        policy = self._proxy_policy
        self.evidence = own = self._own
        self._remembered = None
        if policy is None:
            return None
        found = policy.identify(peer=self._peer_ip, peer_chain=own.presented, headers=self._fields)
        if isinstance(found, UseTls):
            if found.notes:
                self.evidence = replace(own, verdict=replace(own.verdict, notes=own.verdict.notes + found.notes))
            return None
        validator = self.gateway.validator

        def validate(chain: tuple[Certificate, ...]) -> Verdict:
            return validator.validate(list(chain), at=at, crls=self.gateway.crls)

        if isinstance(found, Reject):
            self._settle(request, found, validate, None)
            return None
        # The same header bytes from the same proxy, under the same trust store and
        # policy: the verdict reached before, while it holds (gateway/forwarded_cache.py).
        cache = self.gateway.forwarded
        key = cache.key(found, validator, self.gateway.crls)
        hit = cache.get(key, at) if key is not None else None
        if hit is not None:
            verdict, self._remembered = hit
            address = found.proxy.client_address(self.tls.peer[0], self._fields)
            last = self._last_hit
            presented = self._remembered.presented
            if (last is not None and last.verdict is verdict and last.presented is presented
                    and last.address == address):
                self.evidence = last  # the same verdict, certificates and client address: the same evidence
            else:
                self.evidence = self._last_hit = Evidence.of(verdict, presented, address, forwarded=True)
            return None
        decision = policy.forwarded(found)
        if self._fetch and isinstance(decision, UseForwarded) and decision.revalidate and decision.chain:
            return decision  # validated by the runtime, with fetching (Validate)
        self._settle(request, decision, validate, found.proxy)
        if key is not None and isinstance(decision, UseForwarded):
            self._remembered = cache.put(key, self.evidence.verdict, decision.chain, at=at, validator=validator)
        return None

    def _settle(
        self, request: h11.Request, decision: ProxyDecision, validate: Callable[[tuple[Certificate, ...]], Verdict],
        proxy: TrustedProxy | None,
    ) -> None:
        """This request's evidence from a proxy's decision, ``validate`` giving a chain's verdict.
        ``proxy``: the trusted proxy that spoke (None: the peer is none)."""
        verdict = decision_verdict(decision, validate, self.gateway.validator.identity_map)
        # A refused forwarded certificate (Reject) came from a trusted proxy too: the
        # client's address is still the one that proxy reports (allow mode forwards it).
        address = self._own.address
        if proxy is not None:
            address = proxy.client_address(self.tls.peer[0], self._fields)
        presented = decision.chain if isinstance(decision, UseForwarded) else ()
        self.evidence = Evidence.of(verdict, presented, address, forwarded=True)

    def _on_request(self, request: h11.Request, at: datetime, now: float) -> None:
        self._request = request
        self._fields = [(k.lower(), v) for k, v in request.headers.raw_items()]
        self._response_started = False
        self._body_seen = 0
        # The head is checked before anything acts on it: never validate, count or
        # forward a request two HTTP readers would frame or route differently.
        framing = framing_problem(request, self._fields)
        if framing is not None:
            # RFC 9112 §6.1: after a faulty framing the connection MUST be closed.
            self._answer_error(400, framing.reason, framing.detail, close=True)
            return
        target = request_target(request.method, request.target, self.server.request_target_forms)
        if isinstance(target, Refused):
            self._answer_error(400, target.reason, target.detail)
            return
        self._target = target
        pending = self._evidence(request, at)
        if pending is not None:
            self._awaiting = (pending, at, now)
            self._on(Event.ASK_VALIDATION)
            validator = self.gateway.validator
            self._pending.append(Validate(validator.start(list(pending.chain), at=at, crls=self.gateway.crls)))
            return
        self._decide_request(request, at, now)

    def keys_fetched(self) -> None:
        """The JWK Set asked for by :class:`FetchJwks` is in the cache (or its failure is); the request goes on."""
        self._on(Event.KEYS_FETCHED)
        assert self._keys_wait is not None and self._request is not None  # set with ASK_KEYS
        at, now = self._keys_wait
        self._keys_wait = None
        self._decide_request(self._request, at, now, resumed=True)

    def rate_checked(self, answer: RateAnswer) -> None:
        """The shared store's answer to :class:`CheckRate` (``error`` set when it gave none); the request goes on."""
        self._on(Event.RATE_CHECKED)
        assert self._rate_wait is not None and self._request is not None  # set with ASK_RATE
        at, now = self._rate_wait
        self._rate_wait = None
        self._decide_request(self._request, at, now, rate_answer=answer)

    def _ask_rate(self, need: NeedRate, at: datetime, now: float) -> None:
        """The runtime takes the account's token in the shared store, then reports rate_checked()."""
        self._rate_wait = (at, now)
        self._on(Event.ASK_RATE)
        self._pending.append(CheckRate(need))

    def _ask_keys(self, need: NeedJwks, at: datetime, now: float) -> None:
        """The runtime fetches ``need`` into the gateway's JWKS cache, then reports keys_fetched()."""
        self._keys_wait = (at, now)
        self._on(Event.ASK_KEYS)
        self._pending.append(FetchJwks(need, self.gateway.jwks_cache))

    def _decide_request(
        self, request: h11.Request, at: datetime, now: float, *, resumed: bool = False,
        rate_answer: RateAnswer | None = None,
    ) -> None:
        """Mode, app-level checks and limits for this request, then answer or forward it."""
        if not self.evidence.verdict.ok and self._self_signed(at, now):
            return  # waiting on FetchJwks for a registered client's jwks_uri
        evidence = self.evidence
        verdict = evidence.verdict
        if not verdict.ok and self.server.mode == "reject_invalid":
            assert verdict.reason is not None
            # The connection's own certificate fails every request on it: close. A proxy's
            # connection carries other clients' requests: refuse this one only.
            self._deny(403, verdict.reason.value, verdict.detail, close=not evidence.forwarded)
            return
        if verdict.ok:
            result = self._app_checks(request, at, now, count_rate=not resumed, rate_answer=rate_answer)
        else:
            # allow_invalid_or_missing relaxes the certificate only: the credential, and its
            # account's IP allowlist and rate limit, still decide (docs/gateway.md "Allow mode").
            result = self._app_checks_without_certificate(request, at, now, count_rate=not resumed,
                                                          rate_answer=rate_answer)
        if result.need_rate is not None:
            # [shared]: the account's bucket is in the shared store; the runtime takes the token.
            self._ask_rate(result.need_rate, at, now)
            return
        if result.need is not None:
            # The account's keys come from a jwks_uri: the runtime fetches, then keys_fetched().
            # The cache's own intervals bound how often this can happen per URL.
            self._ask_keys(result.need, at, now)
            return
        if not result.ok:
            assert result.reason is not None
            self._deny(result.status, result.reason, result.detail, headers=result.headers)
            return
        length = self._content_length(request)
        if length is not None and length > self.server.max_body_bytes:
            self._deny(
                413,
                GatewayReason.BODY_TOO_LARGE,
                f"request body over {self.server.max_body_bytes} bytes",
                close=True,
            )
            return
        reason = verdict.reason.value if verdict.reason else None
        if self.server.auth_service:
            # The edge copies these to its upstream (auth_request_set, allowed_upstream_headers,
            # authResponseHeaders); no body: the edge never shows it.
            self._decide(Outcome.AUTHORIZE, 200, reason, verdict.detail)
            self._answer_yes(evidence)
            return
        if self.server.upstream is None:
            self._decide(Outcome.ANSWER, 200, reason, verdict.detail)
            self._answer(*_json(200, self._identity_document(result)))
            return
        self._decide(Outcome.FORWARD, None, reason, verdict.detail)
        self._consumed = result.consumed
        if self._client.client_is_waiting_for_100_continue:
            self._write_client(self._client.send(h11.InformationalResponse(status_code=100, headers=[])))
        # Every request asks for a connection: the last one was handed back (ReleaseUpstream)
        # or closed when its response ended, and the runtime's pool gives it out again.
        assert self._upstream is None
        self._on(Event.OPEN_UPSTREAM)
        up = self.server.upstream
        self._pending.append(OpenUpstream(up.host, up.port, self.server.upstream_connect_timeout,
                                          retry=request.method in IDEMPOTENT_METHODS))

    def _answer_yes(self, evidence: Evidence) -> None:
        """Auth mode's 200: no body, the identity headers. Its head is built and checked by
        h11 once per forwarded-cache entry (it depends on the verdict, the chain and this
        snapshot's settings only), then sent as it is."""
        remembered = self._remembered
        if remembered is None or remembered.presented is not evidence.presented:
            self._answer(200, b"", headers=_identity_headers(
                evidence.verdict, evidence.presented, evidence.account, self.server))
            return
        if remembered.answer_headers is None or remembered.answer is None:
            remembered.answer_headers = _identity_headers(
                evidence.verdict, evidence.presented, evidence.account, self.server)
            remembered.answer = h11.Response(
                status_code=200, headers=[("content-length", "0"), *remembered.answer_headers])
        self._answer(200, b"", headers=remembered.answer_headers, head=remembered.answer)

    def _self_signed(self, at: datetime, now: float) -> bool:
        """RFC 8705 §2.2: a self-signed certificate no CA vouches for may be a client known by
        its registered key. Replaces the evidence's verdict (accepted as that account, or
        not_allowlisted); True when the keys must be fetched first (FetchJwks)."""
        evidence = self.evidence
        imap = self.gateway.validator.identity_map
        # Clients registered by key are [[accounts]] of an IdentityMap (method = self_signed_tls_client_auth).
        clients = imap.self_signed_clients if isinstance(imap, IdentityMap) else ()
        if not clients or evidence.verdict.reason is not Reason.UNTRUSTED or not is_candidate(evidence.presented):
            return False
        leaf = evidence.presented[0]
        try:
            found = match_self_signed(clients, leaf, at=at, now=now, cache=self.gateway.jwks_cache)
        except CertificateRejected as exc:
            verdict = Verdict.reject(exc.reason, exc.detail, path=(leaf,), position=0)
        else:
            if isinstance(found, NeedJwks):
                self._ask_keys(found, at, now)
                return True
            principal = found.client.principal
            kid = found.jwk.get("kid")
            verdict = Verdict(True, path=(leaf,), identity=Identity.from_certificate(leaf, None),
                              principal=principal,
                              notes=(f"self_signed_tls_client_auth: key {kid or leaf.x5t_s256} registered by "
                                     f"account {principal.id}",))
        self.evidence = Evidence.of(
            verdict, evidence.presented, evidence.address, forwarded=evidence.forwarded
        )
        if not evidence.forwarded:
            self._own = self.evidence  # the connection's own certificate: decided once for it
        return False

    def _app_checks(
        self, request: h11.Request, at: datetime, now: float, *, count_rate: bool = True,
        rate_answer: RateAnswer | None = None,
    ) -> AuthResult:
        remembered = self._remembered
        if remembered is not None and remembered.account_known and remembered.presented is self.evidence.presented:
            auth = remembered.account_auth  # resolved for this cached verdict's principal before
        elif self._account_auth is not None and self._account_auth[0] is self.evidence.principal:
            auth = self._account_auth[1]  # this principal's settings, read for an earlier request
        else:
            resolve = self.gateway.account_auth or default_account_auth
            try:
                auth = resolve(self.evidence.principal)
            except ConfigError as exc:
                return AuthResult(False, 500, GatewayReason.ACCOUNT_CONFIG, f"account configuration: {exc}")
            # The configuration snapshot is the connection's: the same principal resolves the same.
            self._account_auth = (self.evidence.principal, auth)
            if remembered is not None and remembered.presented is self.evidence.presented:
                remembered.account_auth, remembered.account_known = auth, True
        return self._authorize(auth, request, at, now, count_rate=count_rate, rate_answer=rate_answer)

    def _authorize(
        self, auth: AccountAuth | None, request: h11.Request, at: datetime, now: float, *, count_rate: bool,
        rate_answer: RateAnswer | None = None,
    ) -> AuthResult:
        """One account's app-level checks on this request, with the connection's evidence."""
        evidence = self.evidence
        shared = self.gateway.shared
        return authorize(
            auth,
            headers=self._fields,
            peer_ip=evidence.address.address or "unknown",
            peer_source=evidence.address.source,
            cert=evidence.leaf,
            at=at,
            now=now,
            limiter=self.gateway.limiter,
            verify_token=self.gateway.verify_token,
            jwks_cache=self.gateway.jwks_cache,
            tls_version=self.tls.version,
            tls_cipher=self.tls.cipher,
            count_rate=count_rate,
            shared_rates=shared is not None,
            rate_answer=rate_answer,
            on_error=shared.rate_limit_on_error if shared is not None else "local",
        )

    def _app_checks_without_certificate(
        self, request: h11.Request, at: datetime, now: float, *, count_rate: bool = True,
        rate_answer: RateAnswer | None = None,
    ) -> AuthResult:
        """Allow mode, no valid certificate: the request's credential names the account whose
        checks apply. Without any account requiring a credential there is nothing to check."""
        auths = self._credential_accounts()
        if isinstance(auths, AuthResult):
            return auths
        if not auths:
            return AuthResult(True)
        owner = credential_owner(
            auths, headers=self._fields, cert=self.evidence.leaf, at=at, now=now,
            verify_token=self.gateway.verify_token, jwks_cache=self.gateway.jwks_cache,
        )
        if isinstance(owner, AuthResult):
            return owner
        return self._authorize(owner, request, at, now, count_rate=count_rate, rate_answer=rate_answer)

    def _credential_accounts(self) -> tuple[AccountAuth, ...] | AuthResult:
        """Every configured account that requires a credential (one entry per account id)."""
        resolve = self.gateway.account_auth or default_account_auth
        identity_map = self.gateway.validator.identity_map
        if not isinstance(identity_map, IdentityMap):  # a custom resolver: its accounts are not known here
            return ()
        return _credential_accounts(identity_map, resolve)

    def _content_length(self, request: h11.Request) -> int | None:
        for k, v in self._fields if request is self._request else request.headers:
            if k == b"content-length":
                return int(v)  # h11 has checked it is a valid integer
        return None

    def _identity_document(self, result: AuthResult) -> dict[str, Any]:
        e = self.evidence
        return _identity_document(e.verdict, e.presented, e.account, result.credential, self.tls, self.server)

    def _identity_fields(self) -> IdentityFields | None:
        """This evidence's identity fields, built and checked once (``identity_fields``):
        once per connection, per request only when a trusted proxy forwards each one's."""
        e = self.evidence
        cached = self._identity
        if cached is None or cached[0] is not e:
            # Across connections too: per accepted verdict, in the snapshot (gateway/identity_cache.py).
            fields = self.gateway.identity_fields.get(
                e.verdict, e.presented, e.account,
                lambda: identity_fields(e.verdict, e.presented, e.account, self.server))
            cached = self._identity = (e, fields)
        return cached[1]

    def _send_request_head(self, request: h11.Request) -> None:
        server, e = self.server, self.evidence
        assert server.upstream is not None and self._upstream is not None
        # The client's fields as h11 parsed (and checked) them, names in lower case.
        fields = self._fields
        host = self._target.host or next((v for k, v in fields if k == b"host"), None)
        identity = self._identity_fields()
        if identity is None:
            # A value no HTTP field may carry (an account id minted from a certificate's CN
            # with a control character, say): refused, never written upstream.
            self._drop_upstream()
            self._answer_error(400, GatewayReason.PROTOCOL_ERROR, "cannot relay the request: an identity "
                               "header value is not a valid field value (RFC 9110 §5.5)", close=True)
            return
        # The identity fields go last: as serialised lines after h11's head when they can
        # (the same bytes: forwarding.with_identity_lines), else among h11's fields.
        lines = identity.lines
        headers = _upstream_request_headers(
            fields,
            host=host or server.upstream.authority.encode(),
            length=self._content_length(request),
            client_address=e.address.address or self.tls.peer[0],
            owned=self._owned,
            identity=identity.fields if lines is None else (),
            consumed=self._consumed,
        )
        # The prefix is a boundary: the path was normalised and refused if it climbed.
        path = self._target.path
        target = path if path == b"*" else server.upstream.prefix.encode() + path
        # Every field line is one h11 already checked: the client's (h11 parsed them), the
        # identity fields (checked once, above), and what the gateway writes from values
        # it parsed itself (the Host h11 or request_target checked, an address, a length).
        # _parsed=True (h11's own flag for parsed events) skips checking them all again on
        # every request; the method and target are still checked.
        self._send_upstream(h11.Request(method=request.method, target=target, headers=headers, _parsed=True),
                            lines)

    def _send_upstream(self, event: h11.Request | h11.Data | h11.EndOfMessage, lines: bytes | None = None) -> None:
        """``lines``: field lines to write after a request head's own (see ``_send_request_head``)."""
        assert self._upstream is not None
        try:
            data = self._upstream.send(event)
            if lines is not None:
                data = with_identity_lines(data, lines)
        except h11.LocalProtocolError as exc:
            # The client's bytes cannot be relayed as framed (the checks above should make
            # this unreachable): the upstream's request is cut, the client gets a 400.
            self._drop_upstream()
            detail = f"cannot relay the request: {exc}"
            if self._response_started:
                self._decide(Outcome.ERROR, None, GatewayReason.PROTOCOL_ERROR, detail)
                self._close()
            else:
                self._answer_error(400, GatewayReason.PROTOCOL_ERROR, detail, close=True)
            return
        if data:
            self._pending.append(WriteUpstream(data, self.server.write_timeout))

    def _write_client(self, data: bytes, status: int | None = None) -> None:
        last = self._pending[-1] if self._pending else None
        if status is None and isinstance(last, WriteClient):
            # More of the same response: one write (the status is counted once, with its head).
            self._pending[-1] = WriteClient(last.data + data, last.timeout, last.status)
            return
        self._pending.append(WriteClient(data, self.server.write_timeout, status))

    def _step_upstream(self) -> None:
        assert self._upstream is not None
        if self._upstream_drained:
            self._pending.append(ReadUpstream(self.server.upstream_timeout))
            return
        try:
            event = self._upstream.next_event()
        except h11.RemoteProtocolError as exc:
            self.upstream_failed(UpstreamFailure.ERROR, f"upstream protocol error: {exc}")
            return
        if event is h11.NEED_DATA:
            self._pending.append(ReadUpstream(self.server.upstream_timeout))
        elif isinstance(event, h11.Response):
            self._response_started = True
            headers = _client_response_headers([(k.lower(), v) for k, v in event.headers.raw_items()])
            if self._deadlines.aged():
                headers = [*headers, (b"connection", b"close")]
            # Fields, status and reason as h11 parsed (and checked) them from the upstream:
            # _parsed=True does not check them a second time.
            self._send_client(h11.Response(status_code=event.status_code, headers=headers, reason=event.reason,
                                           _parsed=True))
        elif isinstance(event, h11.Data):
            self._send_client(h11.Data(data=event.data))
        elif isinstance(event, h11.EndOfMessage):
            self._send_client(h11.EndOfMessage())
            self._finish_upstream_cycle()
            self._finish_client_cycle()
        elif isinstance(event, h11.InformationalResponse):
            pass  # 1xx from the upstream are not relayed (100-continue is answered by us)
        else:  # ConnectionClosed before the response ended
            self.upstream_failed(UpstreamFailure.ERROR, "the upstream closed the connection")

    def _send_client(self, event: h11.Response | h11.Data | h11.EndOfMessage) -> None:
        try:
            data = self._client.send(event)
        except h11.LocalProtocolError as exc:
            detail = f"cannot relay the upstream response: {exc}"
            self._decide(Outcome.ERROR, None, GatewayReason.PROTOCOL_ERROR, detail)
            self._close()
            return
        if data:
            self._write_client(data, event.status_code if isinstance(event, h11.Response) else None)

    # -- answering and cycling ---------------------------------------------------

    def _deny(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        close: bool = False,
    ) -> None:
        self._decide(Outcome.DENY, status, reason, detail)
        if self.server.auth_service:
            # nginx auth_request passes on 401 and 403 only (any other status is its 500): a
            # refusal for any other cause (429, 413, 500 of an account) is 403, the reason says which.
            status = status if status in (401, 403) else 403
            headers = [*headers, (REASON_HEADER, reason)]
        self._answer(*_json(status, {"error": reason, "detail": detail}), headers=headers, close=close)

    def _answer_error(self, status: int, reason: str, detail: str, *, close: bool = False) -> None:
        self._decide(Outcome.ERROR, status, reason, detail)
        headers = [(REASON_HEADER, reason)] if self.server.auth_service else []
        self._answer(*_json(status, {"error": reason, "detail": detail}), headers=headers, close=close)

    def _answer(
        self,
        status: int,
        body: bytes,
        *,
        headers: Sequence[tuple[str, str]] = (),
        close: bool = False,
        head: h11.Response | None = None,
    ) -> None:
        """Answer the current request. ``head``: the head of this bodiless answer made before
        from the same ``headers`` (not checked again); when the connection must close, the
        head is made anew from ``headers`` with ``Connection: close``."""
        client = self._client
        if client.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self._close()
            return
        # Use what of the request body is already buffered, so keep-alive survives a
        # small body; anything still unread means we must close after answering.
        while client.their_state is h11.SEND_BODY:
            try:
                event = client.next_event()
            except h11.RemoteProtocolError:
                break
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                break
        close = close or client.their_state is not h11.DONE or self._deadlines.aged()
        if head is None or close or body:
            hdrs = [("content-type", "application/json")] if body else []
            hdrs += [("content-length", str(len(body))), *headers]
            if close:
                hdrs.append(("connection", "close"))
            head = h11.Response(status_code=status, headers=hdrs)
        try:
            data = client.send(head)
            if body:  # an empty Data writes nothing: skip its trip through h11
                data += client.send(h11.Data(data=body))
            data += client.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            self._close()
            return
        self._write_client(data, status)
        self._finish_client_cycle()

    def _finish_client_cycle(self) -> None:
        client = self._client
        if client.our_state is h11.DONE and client.their_state is h11.DONE:
            client.start_next_cycle()
            trailing = client.trailing_data
            self._received_any = bool(trailing[0])
            self._client_drained = trailing == (b"", False)
            self._deadlines.next_cycle()
            self._request = None
            self._on(Event.NEXT_REQUEST)
        else:
            self._drop_upstream()
            self._close()

    def _finish_upstream_cycle(self) -> None:
        up = self._upstream
        if up is not None and up.our_state is h11.DONE and up.their_state is h11.DONE:
            up.start_next_cycle()
            if up.trailing_data == (b"", False):
                # RFC 9112 §9.3: the response ended, both sides keep the connection, and the
                # upstream sent nothing past it: it may carry the next request, any client's
                # (the runtime's pool). Bytes past the response would be read as the next
                # response: such a connection is closed, never reused.
                self._upstream = None
                self._spare_upstream = up
                self._pending.append(ReleaseUpstream())
                return
        self._drop_upstream()

    def _drop_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream = None
            self._pending.append(CloseUpstream())

    def _close(self) -> None:
        self._on(Event.CLOSE)
        # A request for I/O still queued would be reported back to a closed session,
        # which takes no such report: the runtime never sees it. (A ReadUpstream can be
        # queued behind the relayed response's write, whose failure closes the session.)
        self._pending = deque(
            a for a in self._pending
            if not isinstance(a, OpenUpstream | Validate | FetchJwks | CheckRate | ReadUpstream)
        )
        self._awaiting = self._keys_wait = self._rate_wait = None
