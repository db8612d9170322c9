"""The runtimes' side of ``[shared]`` (docs/shared-state.md): a Redis store behind timeouts,
a retry interval, counters and a rate-limited log line.

The core asks (``CheckRate`` for a rate limit; the fetcher's ``NeedCRL`` / ``NeedOCSP`` /
``NeedJwks`` for answers other processes may have fetched); :class:`SharedStore` answers,
and whatever goes wrong with the store — refused, slow, down — becomes an answer too:
``RateAnswer(error=…)`` (``rate_limit_on_error`` decides) or a cache miss (the process
fetches itself). Never an exception to the caller, never longer than the timeouts.
Recovery needs no restart: after ``retry_interval`` the next call tries the store again.

The Redis commands are a :class:`Backend`: ``redis.asyncio`` in ``shared_asyncio.py``,
the sync client on worker threads in ``shared_trio.py``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypedDict, TypeVar

from ..gateway.appauth import NeedRate, RateAnswer
from ..gateway.shared import SharedRequest, SharedSettings, cache_key, seal, shared_ttl, unseal
from .metrics import Metrics

__all__ = [
    "RATE_SCRIPT", "Backend", "Cached", "SharedDataError", "SharedStore", "SharedUnavailable", "PoolOptions",
    "pool_options", "store_for",
]

logger = logging.getLogger("mtlscore.gateway")

# While the store keeps failing, one log line per this many seconds at most.
LOG_INTERVAL = 60.0

# One account's token bucket, as mtlscore.gateway.appauth.RateLimiter keeps it in process
# (burst ``count``, refilled at count/period; a changed rate starts a full bucket), taken
# atomically on the server: the script runs alone, so two processes can never both take
# the last token (no read-modify-write across the network). Time is the server's own
# (TIME), so processes on machines with skewed clocks agree. Redis >= 5 replicates a script
# by its effects, which is what makes TIME before a write allowed.
# KEYS[1]: the bucket; ARGV[1]: count; ARGV[2]: the period in milliseconds.
# Returns -1 when a token was taken, else the microseconds until one is available.
RATE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local count = tonumber(ARGV[1])
local period = tonumber(ARGV[2]) * 1000
local rate = ARGV[1] .. '/' .. ARGV[2]
local state = redis.call('HMGET', KEYS[1], 'r', 't', 'l')
local tokens = count
if state[1] == rate and tonumber(state[2]) and tonumber(state[3]) then
  local elapsed = math.max(0, now - tonumber(state[3]))
  tokens = math.min(count, tonumber(state[2]) + elapsed * count / period)
end
local wait = -1
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * period / count)
end
redis.call('HSET', KEYS[1], 'r', rate, 't', string.format('%.17g', tokens), 'l', string.format('%.0f', now))
-- Kept until the bucket would be full again (then a missing key means the same): idle
-- accounts leave nothing behind.
redis.call('PEXPIRE', KEYS[1], math.ceil((count - tokens) * period / count / 1000) + 1000)
return wait
"""

T = TypeVar("T")


class SharedUnavailable(Exception):
    """The store did not answer (down, slow, refused): the caller falls back."""


class SharedDataError(Exception):
    """The store answered with an error about the data (e.g. a key of the wrong type): the
    store is up, this key is bad. Counted and logged like an outage, without the retry pause."""


class PoolOptions(TypedDict):
    max_connections: int
    timeout: float
    socket_timeout: float
    socket_connect_timeout: float


def pool_options(settings: SharedSettings) -> PoolOptions:
    """The keywords both runtimes' Redis connection pools are made with from ``[shared]``: its
    size, how long a request waits for a free connection (within the caller's time limit), the
    socket timeouts. (Each client also gets a ``Retry`` with no retries: one attempt within the
    timeouts, then the caller's fallback.)"""
    return {
        "max_connections": settings.max_connections,
        "timeout": settings.connect_timeout + settings.timeout,
        "socket_timeout": settings.timeout,
        "socket_connect_timeout": settings.connect_timeout,
    }


class Backend(Protocol):
    """The store's commands, as each runtime runs them."""

    async def take(self, key: str, count: int, period_ms: int) -> int:
        """Run :data:`RATE_SCRIPT` on ``key``: -1 (taken) or microseconds to wait."""

    async def get(self, key: str) -> tuple[bytes | None, int]:
        """The value of ``key`` and its remaining time to live in milliseconds."""

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        """Set ``key`` to ``value`` for ``ttl_ms`` milliseconds."""

    def time_limit(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """A scope that raises :class:`TimeoutError` when ``seconds`` pass inside it."""

    async def aclose(self) -> None:
        """Close the connections; never raises."""


@dataclass(frozen=True, slots=True)
class Cached:
    """An answer found in the store: its bytes, and the ``Cache-Control`` its remaining
    time to live amounts to (a JWK Set is kept by this process that long too)."""

    body: bytes
    cache_control: bytes


class SharedStore:
    """``[shared]`` for one process: rate-limit tokens and shared fetched answers, never raising."""

    def __init__(
        self, settings: SharedSettings, backend: Backend, metrics: Metrics, *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.metrics = metrics
        self._clock = clock
        self._retry_at: float | None = None  # store calls wait until then after a failure
        self._last_error = ""
        self._failing_since: float | None = None
        self._logged_at = 0.0
        self._errors_since_log = 0

    # -- one call, bounded ---------------------------------------------------------

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        if self._retry_at is not None and now < self._retry_at:
            # It failed a moment ago: answer at once instead of making every request wait
            # for the timeout while it is down.
            self._failed(operation, self._last_error, now, pause=False)
            raise SharedUnavailable(self._last_error)
        settings = self.settings
        try:
            async with self.backend.time_limit(settings.connect_timeout + settings.timeout):
                result = await call()
        except SharedDataError as exc:
            self._failed(operation, str(exc), now, pause=False)
            raise SharedUnavailable(str(exc)) from None
        except TimeoutError:
            self._failed(operation, f"no answer within {settings.connect_timeout + settings.timeout:g} s", now)
            raise SharedUnavailable(self._last_error) from None
        except Exception as exc:  # noqa: BLE001 - the client's errors (connection, protocol, OSError)
            self._failed(operation, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, now)
            raise SharedUnavailable(self._last_error) from None
        self._recovered(now)
        return result

    def _failed(self, operation: str, detail: str, now: float, *, pause: bool = True) -> None:
        self.metrics.inc("mtlscore_shared_errors_total", {"operation": operation})
        if pause:
            self._retry_at = now + self.settings.retry_interval
            self._last_error = detail
        self._errors_since_log += 1
        first = self._failing_since is None
        if first:
            self._failing_since = now
        if first or now - self._logged_at >= LOG_INTERVAL:
            # One line when it starts failing, then at most one per LOG_INTERVAL: an outage
            # must not write a line per request.
            logger.warning(json.dumps({
                "event": "shared_unavailable",
                "store": self.settings.safe_url,
                "operation": operation,
                "error": detail,
                "errors": self._errors_since_log,
                "rate_limit_on_error": self.settings.rate_limit_on_error,
                "detail": "rate limits get rate_limit_on_error's behaviour, fetches are made by this process",
            }))
            self._logged_at = now
            self._errors_since_log = 0

    def _recovered(self, now: float) -> None:
        self._retry_at = None
        if self._failing_since is not None:
            logger.warning(json.dumps({
                "event": "shared_recovered",
                "store": self.settings.safe_url,
                "failing_seconds": round(now - self._failing_since, 3),
                "errors": self._errors_since_log,
            }))
            self._failing_since = None
            self._errors_since_log = 0

    # -- rate limits ---------------------------------------------------------------

    async def take(self, need: NeedRate) -> RateAnswer:
        """Take one token of ``need.account``'s bucket; ``RateAnswer(error=…)`` when the store did not answer."""
        period_ms = max(1, round(need.rate.per_seconds * 1000))
        # The rate is part of the key: gateways that disagree for a while (a rolling
        # configuration change) each keep their own bucket instead of resetting one shared
        # bucket to full on every call; the old key expires by itself.
        key = f"{self.settings.prefix}rate:{need.account}:{need.rate.count}/{period_ms}"
        try:
            wait_us = await self._call("rate_limit", lambda: self.backend.take(key, need.rate.count, period_ms))
        except SharedUnavailable as exc:
            return RateAnswer(None, error=str(exc) or "the shared store is unavailable")
        return RateAnswer(None if wait_us < 0 else wait_us / 1_000_000)

    # -- fetched answers -------------------------------------------------------------

    async def lookup(self, request: SharedRequest, *, at: datetime) -> Cached | None:
        """Another process's answer to ``request``, if the store has a usable one (else fetch)."""
        key = cache_key(request, self.settings)
        if key is None:
            return None
        kind = key.partition(":")[0]
        try:
            stored, ttl_ms = await self._call("cache_get", lambda: self.backend.get(self.settings.prefix + key))
        except SharedUnavailable:
            return None
        if stored is None or ttl_ms <= 0:
            self.metrics.inc("mtlscore_shared_cache_total", {"kind": kind, "result": "miss"})
            return None
        cache_control = f"max-age={ttl_ms // 1000}".encode()
        # The first check: what the store holds must at least be what we would have shared
        # (and carry our tag, with a secret). The validator then checks it exactly as a
        # fetched answer (signature, issuer, times).
        value = unseal(key, stored, self.settings)
        if value is None or shared_ttl(request, value, at=at, settings=self.settings,
                                       cache_control=cache_control) is None:
            self.metrics.inc("mtlscore_shared_cache_total", {"kind": kind, "result": "rejected"})
            return None
        self.metrics.inc("mtlscore_shared_cache_total", {"kind": kind, "result": "hit"})
        return Cached(value, cache_control)

    async def store(self, request: SharedRequest, body: bytes, *, at: datetime, cache_control: bytes | None) -> None:
        """Offer the answer this process fetched to the others, for as long as :func:`shared_ttl` says."""
        key = cache_key(request, self.settings)
        if key is None:
            return
        ttl = shared_ttl(request, body, at=at, settings=self.settings, cache_control=cache_control)
        if ttl is None:
            return
        value = seal(key, body, self.settings)
        try:
            await self._call("cache_put", lambda: self.backend.put(self.settings.prefix + key, value, int(ttl * 1000)))
        except SharedUnavailable:
            return
        self.metrics.inc("mtlscore_shared_cache_total", {"kind": key.partition(":")[0], "result": "stored"})

    async def aclose(self) -> None:
        await self.backend.aclose()


def store_for(
    settings: SharedSettings | None, backend: Callable[[SharedSettings], Backend], metrics: Metrics
) -> SharedStore | None:
    """The ``[shared]`` store (docs/shared-state.md) over the runtime's ``backend``; None without ``[shared]``."""
    return SharedStore(settings, backend(settings), metrics) if settings is not None else None
