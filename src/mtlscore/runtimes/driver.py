"""The byte-moving loop both runtimes share, written against two tiny async protocols.

A runtime supplies a :class:`Stream` (recv with timeout, send, close) and a
``connect`` coroutine; this module runs TLS (an engine over memory BIOs) and
obeys the session core's actions. It imports neither asyncio nor trio.
The reloadable state is :mod:`mtlscore.runtimes.state`, the admin listener
:mod:`mtlscore.runtimes.admin`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

from ..decision.validator import Validation
from ..decision.verdict import Verdict
from ..gateway.admission import Ticket
from ..gateway.appauth import NeedRate, RateAnswer
from ..gateway.events import (
    CheckRate,
    Close,
    CloseUpstream,
    FetchJwks,
    Log,
    OpenUpstream,
    ReadClient,
    ReadUpstream,
    ReleaseUpstream,
    UpstreamFailure,
    Validate,
    WriteClient,
    WriteUpstream,
    handshake_decision,
)
from ..gateway.machine import State
from ..gateway.session import Session
from ..identity.jwks import JwksCache, NeedJwks
from ..proxy.headers import lb_error_name
from ..reasons import Reason
from .pool import Reused, UpstreamPool
from .state import GatewayState
from .tls import TLSEngine, TLSHandshakeError
from .upstream_tls import TLSClientStream

__all__ = ["Stream", "serve_connection"]

logger = logging.getLogger("mtlscore.gateway")


class Stream(Protocol):
    """A connected byte stream, as each runtime provides it."""

    async def recv(self, max_bytes: int, timeout: float) -> bytes | None:
        """Up to ``max_bytes``; ``b""`` at EOF; None when ``timeout`` passed first."""

    async def send(self, data: bytes, timeout: float) -> None:
        """Send all of ``data``; raises ``OSError`` when the peer is gone, ``TimeoutError``
        when the peer did not take it within ``timeout`` (the stream is then aborted: its
        :meth:`aclose` resets the connection rather than leave the data in kernel queues)."""

    async def aclose(self) -> None:
        """Close; never raises."""

    async def stale(self) -> bool:
        """True when the peer closed, or sent anything, since the last read (an idle
        upstream connection that must not be reused); never raises."""


Connect = Callable[[str, int, float], Awaitable[Stream]]
Resolve = Callable[[Validation], Awaitable[Verdict]]
FetchKeys = Callable[[JwksCache, NeedJwks, float], Awaitable[object]]
CheckRateCall = Callable[[NeedRate], Awaitable[RateAnswer]]



# -- one client connection ----------------------------------------------------------


async def _flush(stream: Stream, engine: TLSEngine, timeout: float) -> None:
    out = engine.outgoing()
    if out:
        await stream.send(out, timeout)


async def _tls_recv(
    stream: Stream, engine: TLSEngine, timeout: float, clock: Callable[[], float], write_timeout: float
) -> bytes | None:
    deadline = clock() + timeout
    while True:
        data = engine.read()
        if data is not None:
            return data
        await _flush(stream, engine, write_timeout)
        remaining = deadline - clock()
        raw = await stream.recv(65536, remaining) if remaining > 0 else None
        if raw is None:
            return None
        engine.feed(raw)


async def _linger(stream: Stream, engine: TLSEngine, limit: int, clock: Callable[[], float]) -> None:
    # Bounded in bytes and in time (2 s), like nginx's lingering_close.
    deadline = clock() + 2.0
    seen = 0
    while seen < limit and (remaining := deadline - clock()) > 0:
        data = await _tls_recv(stream, engine, remaining, clock, remaining)
        if not data:
            return
        seen += len(data)


async def _open_upstream(
    connect: Connect, action: OpenUpstream, tls: ssl.SSLContext | None, clock: Callable[[], float]
) -> Stream:
    """Connect, and over an https:// upstream complete the TLS handshake, within ``action.timeout``."""
    deadline = clock() + action.timeout
    raw = await connect(action.host, action.port, action.timeout)
    if tls is None:
        return raw
    stream = TLSClientStream(raw, tls, action.host)
    try:
        await stream.handshake(deadline - clock(), clock)
    except BaseException:
        await raw.aclose()
        raise
    return stream


async def serve_connection(
    stream: Stream,
    peer: tuple[str, int],
    state: GatewayState,
    connect: Connect,
    clock: Callable[[], float],
    resolve: Resolve | None = None,
    ticket: Ticket | None = None,
    fetch_jwks: FetchKeys | None = None,
    check_rate: CheckRateCall | None = None,
    pool: UpstreamPool | None = None,
) -> None:
    """Terminate TLS on ``stream`` and run one :class:`Session` to its end. Never raises OSError.

    ``resolve`` drives a :class:`Validation` to its verdict with the runtime's
    revocation fetcher; it is used when the policy asks for fetching. Call it as
    soon as the connection is accepted: the handshake deadline and the
    connection's age count from here (the runtimes admit or refuse at once, they
    never queue a connection for a slot). ``ticket``: its slot, kept told whether the
    connection is waiting for a handshake or a request head (it may then be shed).
    ``fetch_jwks(cache, request, now)`` fetches a JWK Set into the cache (``FetchJwks``).
    ``check_rate(request)`` takes a rate-limit token in the shared store (``CheckRate``,
    ``[shared]``; ``runtimes/shared.SharedStore.take``: bounded in time, never raises).
    ``pool``: idle upstream connections shared by every connection of the runtime
    (``OpenUpstream`` takes one, ``ReleaseUpstream`` gives one back).
    """
    accepted = clock()
    if ticket is not None:
        ticket.waiting_since = accepted
    snapshot = state.snapshot  # fixed for this connection's lifetime (reloads don't touch it)
    server = snapshot.gateway.server
    state.metrics.inc("mtlscore_connections_total")
    engine = snapshot.new_engine()
    upstream: Stream | None = None
    # Pooled connections are per upstream and per outbound TLS context (a reload brings a new one).
    pool_key = (server.upstream.host, server.upstream.port, snapshot.upstream_tls) if server.upstream else None
    stalled = False  # the client stopped reading: no close_notify, the stream was aborted
    notified = False  # close_notify went out with the last answer
    try:
        deadline = accepted + server.handshake_timeout
        try:
            while not engine.handshake():
                await _flush(stream, engine, max(deadline - clock(), 0.001))
                remaining = deadline - clock()
                raw = await stream.recv(65536, remaining) if remaining > 0 else None
                if raw is None:
                    raise TLSHandshakeError("tls_protocol_error", "handshake timed out")
                engine.feed(raw)
        except TimeoutError:
            state.metrics.inc("mtlscore_handshake_failures_total", {"reason": "tls_protocol_error", "lb_error": ""})
            return
        except TLSHandshakeError as exc:
            with contextlib.suppress(TimeoutError):
                await _flush(stream, engine, max(deadline - clock(), 0.001))  # the alert, so the client learns why
            state.metrics.inc("mtlscore_handshake_failures_total",
                              {"reason": exc.code, "lb_error": lb_error_name(exc.code)})
            reason = Reason(exc.code) if exc.code in Reason.__members__.values() else None
            if reason is not None:
                state.record(handshake_decision(reason, exc.detail, peer, thumbprint=exc.thumbprint))
            else:
                logger.info(json.dumps({"event": "tls_error", "peer": f"{peer[0]}:{peer[1]}", "detail": exc.detail}))
            return
        if ticket is not None:
            ticket.waiting_since = None  # validating, then the session says (ReadClient)
        # What the handshake's last step wrote (TLS 1.3 session tickets, TLS 1.2's Finished)
        # is not sent on its own here: the first ReadClient sends it before it waits for
        # bytes (a fetch below, first), or, when the request came with the client's
        # Finished, the answer takes it along (one send, not two).
        facts = engine.facts(peer)
        at = datetime.now(UTC)
        given = engine.verdict  # reached inside the handshake (reject_at = "handshake"), if it was
        validator = snapshot.gateway.validator
        if given is None and resolve is not None and facts.chain and validator.policy.fetch:
            # Fetching may take a while: the client's handshake completes first.
            await _flush(stream, engine, server.write_timeout)
            given = await resolve(validator.start(list(facts.chain), at=at, crls=snapshot.gateway.crls))
        session = Session(snapshot.gateway, facts, at=at, verdict=given, fetch=resolve is not None, now=accepted)
        # The write timeout of a closed session's last answer, whose bytes wait to go out
        # with close_notify (one send, not two); None: nothing held.
        held: float | None = None

        async def send_held() -> None:
            nonlocal held, stalled
            timeout, held = held or server.write_timeout, None
            try:
                await _flush(stream, engine, timeout)
            except TimeoutError:
                stalled = True
                session.client_write_timeout()  # its decision is an action still to come

        while True:
            action = session.next_action(at=datetime.now(UTC), now=clock())
            if ticket is not None:
                ticket.waiting_since = action.waiting_since if isinstance(action, ReadClient) else None
            if isinstance(action, Close):
                if held is not None:
                    if not action.linger:
                        engine.close()
                        notified = True
                    await send_held()
                    if stalled:
                        continue  # the write timeout's decision, then Close again
                if action.linger and not stalled:
                    with contextlib.suppress(TimeoutError):
                        await _linger(stream, engine, server.max_body_bytes * 2, clock)
                break
            if held is not None and isinstance(action, CloseUpstream):
                await send_held()  # closing may wait: the answer does not
            if isinstance(action, ReadClient):
                try:
                    data = await _tls_recv(stream, engine, action.timeout, clock, server.write_timeout)
                except TimeoutError:  # flushing TLS bytes to a client that does not read
                    stalled = True
                    session.client_write_timeout()
                    continue
                if data is None:
                    session.client_timeout()
                else:
                    session.receive_client(data)
            elif isinstance(action, WriteClient):
                if action.status is not None:
                    state.metrics.inc("mtlscore_responses_total", {"status": str(action.status)})
                engine.write(action.data)
                if session.state is State.CLOSED and not stalled:
                    held = action.timeout  # the last answer: sent with close_notify
                    continue
                try:
                    await _flush(stream, engine, action.timeout)
                except TimeoutError:
                    stalled = True
                    session.client_write_timeout()
            elif isinstance(action, Log):
                state.record(action.decision, action.chain, action.verdict)
            elif isinstance(action, FetchJwks):
                if fetch_jwks is None:
                    action.cache.fail(action.request, "this runtime has no fetcher for JWKS URLs", now=clock())
                else:
                    await fetch_jwks(action.cache, action.request, clock())
                session.keys_fetched()
            elif isinstance(action, CheckRate):
                if check_rate is None:
                    answer = RateAnswer(None, error="this runtime has no shared store")
                else:
                    answer = await check_rate(action.request)
                session.rate_checked(answer)
            elif isinstance(action, Validate):
                assert resolve is not None  # the session asks only when told it may (fetch=)
                session.validated(await resolve(action.validation))
            elif isinstance(action, OpenUpstream):
                if pool is not None and server.upstream_keepalive:
                    pooled = await pool.take(pool_key, clock(), server.upstream_keepalive_timeout)
                    if pooled is not None:
                        # Closed by the upstream as it was taken: sent again on a new
                        # connection when the request allows it (runtimes/pool.py).
                        upstream = Reused(
                            pooled, partial(_open_upstream, connect, action, snapshot.upstream_tls, clock),
                            retry=action.retry, on_retry=partial(state.metrics.inc, "mtlscore_upstream_retries_total"),
                        )
                        session.upstream_connected()
                        continue
                try:
                    upstream = await _open_upstream(connect, action, snapshot.upstream_tls, clock)
                except TimeoutError:
                    session.upstream_failed(
                        UpstreamFailure.TIMEOUT, f"connecting to {action.host}:{action.port} timed out"
                    )
                except OSError as exc:
                    session.upstream_failed(
                        UpstreamFailure.CONNECT, f"cannot connect to {action.host}:{action.port}: {exc}"
                    )
                else:
                    session.upstream_connected()
            elif isinstance(action, WriteUpstream):
                assert upstream is not None
                try:
                    await upstream.send(action.data, action.timeout)
                except TimeoutError:
                    session.upstream_failed(
                        UpstreamFailure.TIMEOUT, f"the upstream read nothing for {action.timeout:g} s"
                    )
                except OSError as exc:
                    session.upstream_failed(UpstreamFailure.ERROR, f"sending to the upstream failed: {exc}")
            elif isinstance(action, ReadUpstream):
                assert upstream is not None
                try:
                    got = await upstream.recv(65536, action.timeout)
                except OSError as exc:
                    session.upstream_failed(UpstreamFailure.ERROR, f"reading from the upstream failed: {exc}")
                    continue
                if got is None:
                    session.upstream_failed(UpstreamFailure.TIMEOUT, f"no response within {action.timeout:g} s")
                else:
                    session.receive_upstream(got)
            elif isinstance(action, CloseUpstream) and upstream is not None:
                await upstream.aclose()
                upstream = None
            elif isinstance(action, ReleaseUpstream) and upstream is not None:
                released, upstream = upstream, None
                if pool is None or not server.upstream_keepalive:
                    if held is not None:
                        await send_held()  # closing may wait: the answer does not
                    await released.aclose()
                    continue
                extras = pool.put(pool_key, released, clock(), server.upstream_keepalive)
                if held is not None and extras:
                    await send_held()  # closing may wait: the answer does not
                for extra in extras:
                    await extra.aclose()
        if not stalled and not notified:
            engine.close()
            await _flush(stream, engine, server.write_timeout)
    except OSError:  # also TimeoutError: a last close_notify the client did not take
        pass  # the client went away; nothing to tell it
    except Exception as exc:
        # A bug in one connection is logged and counted; it must not take the gateway
        # down (in trio, an escaping error would cancel the whole nursery).
        state.metrics.inc("mtlscore_connection_errors_total")
        logger.error(json.dumps({"event": "connection_error", "peer": f"{peer[0]}:{peer[1]}",
                                 "error": type(exc).__name__}), exc_info=exc)
    finally:
        if upstream is not None:
            await upstream.aclose()
        await stream.aclose()
