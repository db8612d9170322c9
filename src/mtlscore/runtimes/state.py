"""The gateway's reloadable state: the loaded configuration (:class:`Snapshot`), the shared
counters, rate limiter and admission, and reloading (``SIGHUP`` or a changed file).

New connections take the current snapshot; connections in flight keep theirs. The
connection loop is :mod:`mtlscore.runtimes.driver`; the admin listener
:mod:`mtlscore.runtimes.admin`.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial

from ..config import GatewayConfig
from ..decision.verdict import Verdict
from ..gateway.admission import Admission, Ticket
from ..gateway.appauth import RateLimiter
from ..gateway.events import Decision, Gateway
from ..gateway.forwarded_cache import ForwardedCache
from ..gateway.handshake import handshake_verdict
from ..gateway.metrics import Gauge, expiry_gauges
from ..gateway.preview import guard, preview_log
from ..gateway.radar import ExpiryWarning, Radar, Report, report, trust_rows
from ..gateway.settings import RESTART_KEYS
from ..identity.identity_map import IdentityMap
from ..identity.jwks import JwksCache
from ..reasons import ConfigError, MtlsError
from ..x509.cert import Certificate, parse_certificate
from .metrics import Metrics, require_exposition
from .tls import TLSEngine, engine_factory
from .upstream_tls import upstream_context

__all__ = ["GatewayState", "Snapshot", "build_snapshot", "load_snapshot"]

logger = logging.getLogger("mtlscore.gateway")

# Seconds between two sweeps of the expiry radar from the reload poll (mtlscore.gateway.radar).
SWEEP_INTERVAL = 60.0


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
        # This process's index under ``[server] workers > 1`` (mtlscore.runtimes.workers), else
        # None. A worker opens no admin listener and polls no files (the parent does both, and
        # validates a reload once before it signals the workers); reloads are counted by the parent.
        self.worker: int | None = None
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
    def from_config_file(
        cls,
        path: str | pathlib.Path,
        *,
        metrics: Metrics | None = None,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> GatewayState:
        """Load a config file (docs/reference.md#configuration-file) with a ``[server]`` table; raises ConfigError."""
        limiter = RateLimiter()
        path = pathlib.Path(path)

        def loader(lim: RateLimiter) -> Snapshot:
            return load_snapshot(path, lim)

        return cls(loader(limiter), loader=loader, limiter=limiter, metrics=metrics, on_decision=on_decision)

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

    def render_metrics(self, accept: str = "", extra: Iterable[Gauge] = ()) -> tuple[str, bytes]:
        """(content type, body) of a scrape: the counters, the radar's gauges and ``extra``
        (the workers' gauges, mtlscore.runtimes.workers), in the exposition format ``accept``
        asks for (prometheus-client's negotiation)."""
        gauges = (*expiry_gauges(self.expiry_report(), recorded=len(self.radar)), *extra)
        return self.metrics.render(accept, gauges)

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

    def _count_reload(self, result: str) -> None:
        # Under workers the parent counts each reload once; every worker counting too would
        # make the summed /metrics say workers + 1 reloads.
        if self.worker is None:
            self.metrics.inc("mtlscore_reloads_total", {"result": result})

    def polls_files(self) -> bool:
        """Whether this process's reload poll watches the files (not a worker's: the parent's does)."""
        return self.worker is None

    def reload(self) -> bool:
        """Load the configuration again; on error keep the old one. True when swapped."""
        if self.loader is None:
            return False
        try:
            candidate = self.loader(self.limiter)
        except (MtlsError, OSError, ValueError) as exc:
            self._count_reload("error")
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
                self._count_reload("refused")
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
        # [shared] is the store the runtime connected to at start: it stays until a restart.
        shared = self.snapshot.gateway.shared
        self.snapshot = replace(candidate, gateway=replace(candidate.gateway, jwks_cache=cache, shared=shared))
        self._size_radar()
        server = self.snapshot.gateway.server
        stuck = [f"server.{k}" for k in RESTART_KEYS if getattr(server, k) != getattr(self.running, k)]
        if candidate.gateway.shared != shared:
            stuck.append("shared")
        if stuck:
            # Applied, except these: the listeners and the loop keep what they started with.
            self._count_reload("restart_required")
            logger.warning(json.dumps({
                "event": "mtls_reload",
                "result": "restart_required",
                "keys": stuck,
                "detail": "the rest of the configuration is applied; these keep their running values "
                "until the gateway restarts",
            }))
            return True
        self._count_reload("ok")
        logger.info(json.dumps({"event": "mtls_reload", "result": "ok"}))
        return True

    def log_started(self, runtime: str, address: object, admin_address: object | None,
                    event_loop: str | None = None) -> None:
        """The ``mtls_start`` line: where the gateway listens and what it trusts and does
        (``event_loop``: the asyncio runtime's loop, asyncio's own or uvloop)."""
        gateway = self.snapshot.gateway
        server, trust = gateway.server, gateway.validator.trust
        identity_map = gateway.validator.identity_map
        logger.info(json.dumps({
            "event": "mtls_start",
            "runtime": runtime,
            "event_loop": event_loop,
            "listen": str(address),
            "admin_listen": str(admin_address) if admin_address is not None else None,
            "mode": server.mode,
            "tls_engine": server.effective_tls_engine,
            "upstream": f"http://{server.upstream.authority}{server.upstream.prefix}" if server.upstream else None,
            "anchors": [a.name for a in trust.anchors],
            "intermediates": len(trust.intermediates),
            "allowlisted": len(trust.allowlisted),
            # A custom identity resolver's accounts are not countable: null.
            "accounts": (
                len(identity_map) if isinstance(identity_map, IdentityMap) else 0 if identity_map is None else None
            ),
            "revocation": gateway.validator.policy.revocation,
            "crls": len(gateway.validator.crls) + len(gateway.crls),
            "shared": gateway.shared.safe_url if gateway.shared is not None else None,
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


def build_snapshot(config: GatewayConfig, limiter: RateLimiter, *, watch: tuple[pathlib.Path, ...] = ()) -> Snapshot:
    """A :class:`Snapshot` from a loaded configuration (``mtlscore.config.Config``); raises ConfigError."""
    if config.server is None:
        raise ConfigError("the gateway needs a [server] table", key="server")
    # The CRLs given as data live in the validator (config.validator()).
    server = config.server
    if server.tls_engine == "auto" and config.accounts is not None and config.accounts.self_signed_clients:
        # RFC 8705 §2.2 clients present certificates no CA vouches for: stdlib ssl would
        # refuse them in the handshake, the deferred engine lets the session decide.
        server = replace(server, tls_engine="deferred")
    gateway = Gateway(validator=config.validator(), server=server, limiter=limiter,
                      jwks_cache=JwksCache(server.jwks), shared=config.shared,
                      forwarded=ForwardedCache(server.auth_cache_entries))
    # The server's own certificate and key, and the CA bundles and CRLs the config names.
    upstream_files = (server.upstream_ca, server.upstream_certificate, server.upstream_key)
    files = (*watch, server.certificate, server.key, *config.files,
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
