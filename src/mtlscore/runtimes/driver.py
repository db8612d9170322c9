"""The byte-moving loop both runtimes share, written against two tiny async protocols.

A runtime supplies a :class:`Stream` (recv with timeout, send, close) and a
``connect`` coroutine; this module runs TLS (an engine over memory BIOs) and
obeys the session core's actions. It imports neither asyncio nor trio.
Also here: the reloadable :class:`GatewayState` and the admin (metrics) handler.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import h11

from ..decision.validator import Validation
from ..decision.verdict import Verdict
from ..gateway.admission import Admission, Ticket
from ..gateway.appauth import RateLimiter
from ..gateway.handshake import handshake_verdict
from ..gateway.metrics import expiry_gauges
from ..gateway.preview import guard, preview_log
from ..gateway.radar import ExpiryWarning, Radar, Report, report, trust_rows
from ..gateway.session import (
    Close,
    CloseUpstream,
    Decision,
    FetchJwks,
    Gateway,
    Log,
    OpenUpstream,
    ReadClient,
    ReadUpstream,
    Session,
    UpstreamFailure,
    Validate,
    WriteClient,
    WriteUpstream,
    handshake_decision,
)
from ..gateway.settings import RESTART_KEYS
from ..identity.jwks import JwksCache, NeedJwks
from ..proxy.headers import lb_error_name
from ..reasons import ConfigError, MtlsError, Reason
from ..x509.cert import Certificate, parse_certificate
from .metrics import Metrics, require_exposition
from .tls import TLSEngine, TLSHandshakeError, engine_factory
from .upstream_tls import TLSClientStream, upstream_context

__all__ = ["GatewayState", "Snapshot", "Stream", "serve_admin", "serve_connection"]

logger = logging.getLogger("mtlscore.gateway")

# Seconds between two sweeps of the expiry radar from the reload poll (mtlscore.gateway.radar).
SWEEP_INTERVAL = 60.0


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


Connect = Callable[[str, int, float], Awaitable[Stream]]
Resolve = Callable[[Validation], Awaitable[Verdict]]
FetchKeys = Callable[[JwksCache, NeedJwks, float], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A loaded configuration: the core's gateway and the matching TLS engine maker."""

    gateway: Gateway
    new_engine: Callable[[], TLSEngine]
    # Files whose change triggers a reload: (path, mtime_ns).
    watched: tuple[tuple[pathlib.Path, int], ...] = ()
    # The client context for an https:// upstream (mtlscore.runtimes.upstream_tls), else None.
    upstream_tls: ssl.SSLContext | None = None


def _mtime(path: pathlib.Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


class GatewayState:
    """The current :class:`Snapshot`, the shared counters and rate limiter, and reloading.

    New connections take the current snapshot; connections in flight keep theirs.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        loader: Callable[[RateLimiter], Snapshot] | None = None,
        metrics: Metrics | None = None,
        limiter: RateLimiter | None = None,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.loader = loader
        self.metrics = metrics or Metrics()
        self.limiter = limiter or snapshot.gateway.limiter
        self.on_decision = on_decision
        self.admission = Admission()
        # The settings the listeners and the loop were made with: a reload cannot change them.
        self.running = snapshot.gateway.server
        if self.running.admin_listen is not None:
            require_exposition()
        # The expiry radar (mtlscore.gateway.radar): kept across reloads, sized by the current settings.
        self.radar = Radar()
        self._swept: float | None = None  # monotonic time of the last sweep
        self._size_radar()
        self._load_radar()

    def _load_radar(self) -> None:
        """The record a previous run saved (``[server] radar_file``); a bad file is logged, not fatal."""
        path = self.running.radar_file
        if path is None or not path.exists():
            return
        try:
            rows = Report.from_json(json.loads(path.read_bytes())).rows
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            logger.warning(json.dumps({"event": "radar_file", "result": "error", "file": str(path),
                                       "error": str(exc), "detail": "starting with an empty record"}))
            return
        self.radar.restore(rows, parse=parse_certificate)

    def save_radar(self) -> None:
        """Write the radar's record to ``[server] radar_file`` (at shutdown), atomically; errors are logged."""
        path = self.snapshot.gateway.server.radar_file
        if path is None:
            return
        doc = report(self.radar, at=datetime.now(UTC)).to_json()
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except OSError as exc:
            logger.error(json.dumps({"event": "radar_file", "result": "error", "file": str(path), "error": str(exc)}))

    def _size_radar(self) -> None:
        server = self.snapshot.gateway.server
        self.radar.max_certificates = server.radar_max_certificates
        self.radar.horizon = timedelta(days=server.expiry_warning_days)

    def admit(self, peer: tuple[str, int], now: float) -> Ticket | None:
        """A connection slot for ``peer`` at accept (``now``, monotonic): its ticket (set its
        ``shed``; give it back with :meth:`release`), or None: refused, counted and logged,
        and the runtime closes the connection at once. Taking a waiting connection's slot
        sheds it (mtlscore.gateway.admission), counted and logged too."""
        got = self.admission.admit(peer, self.snapshot.gateway.server, now=now, on_shed=self._shed)
        if isinstance(got, Ticket):
            return got
        self.metrics.inc("mtlscore_connections_refused_total", {"limit": got})
        if logger.isEnabledFor(logging.INFO):
            logger.info(json.dumps({"event": "connection_refused", "peer": f"{peer[0]}:{peer[1]}", "limit": got}))
        return None

    def _shed(self, ticket: Ticket, now: float) -> None:
        self.metrics.inc("mtlscore_connections_shed_total")
        if logger.isEnabledFor(logging.INFO):
            waited = now - (ticket.waiting_since or now)
            peer = f"{ticket.peer[0]}:{ticket.peer[1]}"
            logger.info(json.dumps({"event": "connection_shed", "peer": peer, "waiting_seconds": round(waited, 3)}))

    def release(self, ticket: Ticket) -> None:
        """Give back the slot :meth:`admit` took."""
        self.admission.release(ticket)

    @classmethod
    def from_config_file(cls, path: str | pathlib.Path, **kw: Any) -> GatewayState:
        """Load a config file (docs/reference.md#configuration-file) with a ``[server]`` table; raises ConfigError."""
        limiter = RateLimiter()
        path = pathlib.Path(path)

        def loader(lim: RateLimiter) -> Snapshot:
            return load_snapshot(path, lim)

        return cls(loader(limiter), loader=loader, limiter=limiter, **kw)

    def record(
        self, decision: Decision, chain: tuple[Certificate, ...] = (), verdict: Verdict | None = None
    ) -> None:
        """Log one decision as a JSON line and count it; an accepted ``chain`` goes to the radar."""
        self.metrics.inc(
            "mtlscore_decisions_total",
            {"outcome": decision.outcome, "reason": decision.reason or "ok", "lb_error": decision.lb_error},
        )
        if logger.isEnabledFor(logging.INFO):  # the JSON line is built only when it is written
            logger.info(json.dumps(decision.as_log(), sort_keys=False))
        if verdict is not None:
            self._warn(self.radar.observe(chain, verdict, account=decision.account, at=datetime.now(UTC)))
        if self.on_decision is not None:
            self.on_decision(decision)

    def certificates(self, at: datetime | None = None) -> Report:
        """The expiry report: the radar's record and the running trust config's certificates and
        CRLs. Logs the warnings for what came within the horizon since the last look."""
        at = at or datetime.now(UTC)
        validator = self.snapshot.gateway.validator
        rep = report(self.radar, at=at, trust=validator.trust, crls=validator.crls)
        self._warn(self.radar.sweep(at, also=(r for r in rep.rows if r.kind not in ("client", "intermediate"))))
        return rep

    def sweep(self, now: float, at: datetime | None = None) -> None:
        """Log the expiry warnings due (recorded clients not seen since they came within the
        horizon, the trust config's certificates and CRLs), at most every ``SWEEP_INTERVAL``
        seconds of ``now`` (monotonic). The runtimes call it from their reload poll."""
        if self._swept is not None and now - self._swept < SWEEP_INTERVAL:
            return
        self._swept = now
        validator = self.snapshot.gateway.validator
        self._warn(self.radar.sweep(at or datetime.now(UTC), also=trust_rows(validator.trust, validator.crls)))

    def _warn(self, warnings: tuple[ExpiryWarning, ...]) -> None:
        for warning in warnings:
            logger.warning(json.dumps(warning.as_log()))

    def expiry_report(self) -> Report:
        """What the expiry gauges count: the trust config's items and the certificates in use
        (seen within ``radar_active_seconds``): a partner's replaced certificate stops counting
        once it is no longer seen, instead of alerting until, and after, its notAfter."""
        rep = self.certificates()
        return rep.active(rep.taken - timedelta(seconds=self.snapshot.gateway.server.radar_active))

    def render_metrics(self, accept: str = "") -> tuple[str, bytes]:
        """(content type, body) of a scrape: the counters and the radar's gauges, in the
        exposition format ``accept`` asks for (prometheus-client's negotiation)."""
        return self.metrics.render(accept, expiry_gauges(self.expiry_report(), recorded=len(self.radar)))

    def _locks_out(self, candidate: Snapshot) -> tuple[str, ...]:
        """Who active lately the candidate configuration would lock out (``[server] reload_guard``)."""
        server = self.snapshot.gateway.server
        at = datetime.now(UTC)
        active = self.radar.active(since=at - timedelta(seconds=server.radar_active))
        preview = guard(active, candidate.gateway.validator, at=at)
        locked = preview.locked_out().get(at, ())
        if locked:
            for line in preview_log(preview):
                logger.warning(json.dumps(line))
        return locked

    def reload(self) -> bool:
        """Load the configuration again; on error keep the old one. True when swapped."""
        if self.loader is None:
            return False
        try:
            candidate = self.loader(self.limiter)
        except (MtlsError, OSError, ValueError) as exc:
            self.metrics.inc("mtlscore_reloads_total", {"result": "error"})
            logger.error(json.dumps({
                "event": "mtls_reload",
                "result": "error",
                "error": str(exc),
                "detail": "the new configuration was not loaded; the running configuration stays",
            }))
            return False
        # The running configuration's reload_guard decides: a new file cannot switch off its own check.
        if self.snapshot.gateway.server.reload_guard:
            locked = self._locks_out(candidate)
            if locked:
                self.metrics.inc("mtlscore_reloads_total", {"result": "refused"})
                logger.error(json.dumps({
                    "event": "mtls_reload",
                    "result": "refused",
                    "locked_out": list(locked),
                    "detail": "reload_guard: the new configuration would refuse every recent certificate of "
                    "these accounts (see the mtls_preview lines); the running configuration stays",
                }))
                return False
        # Fetched JWKS keys outlive a reload, like the rate limiter's buckets; the limits are the new ones.
        cache = self.snapshot.gateway.jwks_cache
        cache.limits = candidate.gateway.server.jwks
        self.snapshot = replace(candidate, gateway=replace(candidate.gateway, jwks_cache=cache))
        self._size_radar()
        server = self.snapshot.gateway.server
        stuck = [f"server.{k}" for k in RESTART_KEYS if getattr(server, k) != getattr(self.running, k)]
        if stuck:
            # Applied, except these: the listeners and the loop keep what they started with.
            self.metrics.inc("mtlscore_reloads_total", {"result": "restart_required"})
            logger.warning(json.dumps({
                "event": "mtls_reload",
                "result": "restart_required",
                "keys": stuck,
                "detail": "the rest of the configuration is applied; these keep their running values "
                "until the gateway restarts",
            }))
            return True
        self.metrics.inc("mtlscore_reloads_total", {"result": "ok"})
        logger.info(json.dumps({"event": "mtls_reload", "result": "ok"}))
        return True

    def log_started(self, runtime: str, address: object, admin_address: object | None) -> None:
        """The ``mtls_start`` line: where the gateway listens and what it trusts and does."""
        gateway = self.snapshot.gateway
        server, trust = gateway.server, gateway.validator.trust
        identity_map = gateway.validator.identity_map
        logger.info(json.dumps({
            "event": "mtls_start",
            "runtime": runtime,
            "listen": str(address),
            "admin_listen": str(admin_address) if admin_address is not None else None,
            "mode": server.mode,
            "tls_engine": server.effective_tls_engine,
            "upstream": f"http://{server.upstream.authority}{server.upstream.prefix}" if server.upstream else None,
            "anchors": [a.name for a in trust.anchors],
            "intermediates": len(trust.intermediates),
            "allowlisted": len(trust.allowlisted),
            "accounts": len(identity_map) if identity_map is not None else 0,
            "revocation": gateway.validator.policy.revocation,
            "crls": len(gateway.validator.crls) + len(gateway.crls),
        }))

    def log_draining(self, why: str, grace: float) -> None:
        """The ``mtls_drain`` line: no new connections; those in flight get ``grace`` seconds."""
        logger.info(json.dumps({
            "event": "mtls_drain",
            "why": why,
            "connections": self.admission.total,
            "grace_seconds": grace,
        }))

    def log_stopped(self, *, cut: int, graceful: bool) -> None:
        """The ``mtls_stop`` line: ``cut`` connections were still open when the gateway stopped."""
        logger.info(json.dumps({"event": "mtls_stop", "graceful": graceful, "connections_cut": cut}))

    def changed(self) -> bool:
        """True when a watched file's modification time differs from the loaded one."""
        return any(_mtime(p) != m for p, m in self.snapshot.watched)


def build_snapshot(config: Any, limiter: RateLimiter, *, watch: tuple[pathlib.Path, ...] = ()) -> Snapshot:
    """A :class:`Snapshot` from a loaded ``mtlscore.config.Config``; raises ConfigError."""
    if config.server is None:
        raise ConfigError("the gateway needs a [server] table", key="server")
    # The CRLs given as data live in the validator (config.validator()).
    server = config.server
    if server.tls_engine == "auto" and getattr(config.accounts, "self_signed_clients", ()):
        # RFC 8705 §2.2 clients present certificates no CA vouches for: stdlib ssl would
        # refuse them in the handshake, the deferred engine lets the session decide.
        server = replace(server, tls_engine="deferred")
    gateway = Gateway(validator=config.validator(), server=server, limiter=limiter,
                      jwks_cache=JwksCache(server.jwks))
    # The server's own certificate and key, and the CA bundles and CRLs the config names.
    upstream_files = (server.upstream_ca, server.upstream_certificate, server.upstream_key)
    files = (*watch, server.certificate, server.key, *getattr(config, "files", ()),
             *(p for p in upstream_files if p is not None))
    new_engine = engine_factory(server, config.trust, judge=partial(_judge, gateway))
    return Snapshot(gateway, new_engine, tuple((p, _mtime(p)) for p in files), upstream_context(server))


def _judge(gateway: Gateway, chain: Sequence[bytes]) -> Verdict | None:
    """A chain's verdict inside the TLS handshake (``reject_at = "handshake"``), or None."""
    return handshake_verdict(gateway.validator, chain, at=datetime.now(UTC), crls=gateway.crls)


def load_snapshot(path: pathlib.Path, limiter: RateLimiter) -> Snapshot:
    """Read the config file at ``path`` into a :class:`Snapshot`; raises ConfigError."""
    from ..config import load_config
    from .startup import startup_warnings

    mtime = _mtime(path)
    config = load_config(path)
    warnings = startup_warnings(config, at=datetime.now(UTC))  # raises ConfigError (hard mode)
    snap = build_snapshot(config, limiter)
    for warning in warnings:
        logger.warning(json.dumps({"event": "config_warning", **warning}))
    return Snapshot(snap.gateway, snap.new_engine, ((path, mtime), *snap.watched), snap.upstream_tls)


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
) -> None:
    """Terminate TLS on ``stream`` and run one :class:`Session` to its end. Never raises OSError.

    ``resolve`` drives a :class:`Validation` to its verdict with the runtime's
    revocation fetcher; it is used when the policy asks for fetching. Call it as
    soon as the connection is accepted: the handshake deadline and the
    connection's age count from here (the runtimes admit or refuse at once, they
    never queue a connection for a slot). ``ticket``: its slot, kept told whether the
    connection is waiting for a handshake or a request head (it may then be shed).
    ``fetch_jwks(cache, request, now)`` fetches a JWK Set into the cache (``FetchJwks``).
    """
    accepted = clock()
    if ticket is not None:
        ticket.waiting_since = accepted
    snapshot = state.snapshot  # fixed for this connection's lifetime (reloads don't touch it)
    server = snapshot.gateway.server
    state.metrics.inc("mtlscore_connections_total")
    engine = snapshot.new_engine()
    upstream: Stream | None = None
    stalled = False  # the client stopped reading: no close_notify, the stream was aborted
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
        await _flush(stream, engine, server.write_timeout)
        facts = engine.facts(peer)
        at = datetime.now(UTC)
        given = engine.verdict  # reached inside the handshake (reject_at = "handshake"), if it was
        validator = snapshot.gateway.validator
        if given is None and resolve is not None and facts.chain and validator.policy.fetch:
            given = await resolve(validator.start(list(facts.chain), at=at, crls=snapshot.gateway.crls))
        session = Session(snapshot.gateway, facts, at=at, verdict=given, fetch=resolve is not None, now=accepted)
        while True:
            action = session.next_action(at=datetime.now(UTC), now=clock())
            if ticket is not None:
                ticket.waiting_since = action.waiting_since if isinstance(action, ReadClient) else None
            if isinstance(action, Close):
                if action.linger and not stalled:
                    with contextlib.suppress(TimeoutError):
                        await _linger(stream, engine, server.max_body_bytes * 2, clock)
                break
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
            elif isinstance(action, Validate):
                assert resolve is not None  # the session asks only when told it may (fetch=)
                session.validated(await resolve(action.validation))
            elif isinstance(action, OpenUpstream):
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
        if not stalled:
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


# -- the admin listener (plain HTTP: /metrics, /healthz) ----------------------------


async def serve_admin(stream: Stream, state: GatewayState, clock: Callable[[], float] = time.monotonic) -> None:
    """Answer plain-HTTP requests for ``/metrics`` (Prometheus text), ``/certs`` (the expiry
    report as JSON, mtlscore.gateway.radar) and ``/healthz``.

    The gateway's own deadlines apply: ``keepalive_timeout`` for a request's first
    byte, then ``header_timeout`` for the whole request (a trickled head is cut).
    """
    server = state.snapshot.gateway.server
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=server.max_header_bytes)
    deadline = clock() + server.keepalive_timeout
    started = False  # this request's first byte has arrived
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                left = deadline - clock()
                data = await stream.recv(65536, left) if left > 0 else None
                if not data:
                    return
                if not started:
                    started, deadline = True, clock() + server.header_timeout
                conn.receive_data(data)
                continue
            if not isinstance(event, h11.Request):
                return
            path, _, query = event.target.partition(b"?")
            if path == b"/metrics":
                accept = b", ".join(v for k, v in event.headers if k == b"accept").decode("latin-1")
                ctype, body = state.render_metrics(accept)
                status = 200
            elif path == b"/certs":
                # The expiry report with the presented chains (`mtlscore preview` replays them);
                # ?chains=0 leaves them out (`mtlscore certs` prints a table without them).
                doc = state.certificates().to_json(chains=b"chains=0" not in query.split(b"&"))
                status, ctype, body = 200, "application/json", json.dumps(doc).encode()
            elif path == b"/healthz":
                status, ctype, body = 200, "text/plain", b"ok\n"
            else:
                status, ctype, body = 404, "text/plain", b"not found\n"
            headers = [("content-type", ctype), ("content-length", str(len(body)))]
            out = conn.send(h11.Response(status_code=status, headers=headers))
            out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
            await stream.send(out, 10.0)
            while conn.their_state is h11.SEND_BODY and conn.next_event() not in (h11.NEED_DATA,):
                pass
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
                started = bool(conn.trailing_data[0])
                deadline = clock() + (server.header_timeout if started else server.keepalive_timeout)
            else:
                return
    except (h11.ProtocolError, OSError):
        return
    finally:
        await stream.aclose()
