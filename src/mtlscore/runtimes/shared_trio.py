"""The ``[shared]`` store's commands with the sync ``redis`` client on worker threads, for trio
(see :mod:`mtlscore.runtimes.shared`).

The event loop never blocks on Redis: each command runs in a thread (``trio.to_thread``),
at most ``max_connections`` at once (a ``CapacityLimiter``, the size of the client's
connection pool). A command the caller's deadline gives up on is abandoned, and its
thread ends within the client's own socket timeouts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import TypeVar

import trio
from redis import BlockingConnectionPool, Redis, exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..gateway.shared import SharedSettings
from .fetch_trio import time_limit
from .shared import RATE_SCRIPT, SharedDataError, pool_options

__all__ = ["TrioRedis"]

T = TypeVar("T")


class TrioRedis:
    """:class:`~mtlscore.runtimes.shared.Backend` over the sync ``redis`` client, off trio's loop."""

    def __init__(self, settings: SharedSettings) -> None:
        # A blocking pool as large as the thread limiter: a thread never finds it empty.
        pool = BlockingConnectionPool.from_url(settings.url, **pool_options(settings))
        self._client = Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        self._script = self._client.register_script(RATE_SCRIPT)
        self._limiter = trio.CapacityLimiter(settings.max_connections)

    async def _run(self, call: Callable[[], T]) -> T:
        try:
            return await trio.to_thread.run_sync(call, limiter=self._limiter, abandon_on_cancel=True)
        except exceptions.ResponseError as exc:
            raise SharedDataError(str(exc)) from None

    async def take(self, key: str, count: int, period_ms: int) -> int:
        return int(await self._run(partial(self._script, keys=[key], args=[count, period_ms])))

    async def get(self, key: str) -> tuple[bytes | None, int]:
        def both() -> tuple[bytes | None, int]:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                value, ttl = pipe.execute()
            return value, int(ttl)

        return await self._run(both)

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        await self._run(partial(self._client.set, key, value, px=ttl_ms))

    def time_limit(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return time_limit(seconds)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()
