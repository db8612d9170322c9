"""The ``[shared]`` store's commands with ``redis.asyncio`` (see :mod:`mtlscore.runtimes.shared`)."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager

from redis import exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..gateway.shared import SharedSettings
from .shared import RATE_SCRIPT, SharedDataError, pool_options

__all__ = ["AsyncioRedis"]


class AsyncioRedis:
    """:class:`~mtlscore.runtimes.shared.Backend` over ``redis.asyncio`` (make it on the running loop)."""

    def __init__(self, settings: SharedSettings) -> None:
        # No retries inside the client: one attempt within the timeouts, then the caller's
        # fallback (a retry with backoff would hold the request for seconds while Redis is down).
        # A blocking pool: a request beyond max_connections waits for a connection (within the
        # caller's time limit) instead of failing at once as if Redis were down.
        pool = BlockingConnectionPool.from_url(settings.url, **pool_options(settings))
        self._client = Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        # EVALSHA, and EVAL (which loads it) when the server answers NOSCRIPT (after a restart).
        self._script = self._client.register_script(RATE_SCRIPT)

    async def take(self, key: str, count: int, period_ms: int) -> int:
        try:
            return int(await self._script(keys=[key], args=[count, period_ms]))
        except exceptions.ResponseError as exc:
            raise SharedDataError(f"{key}: {exc}") from None

    async def get(self, key: str) -> tuple[bytes | None, int]:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                value, ttl = await pipe.execute()
        except exceptions.ResponseError as exc:
            raise SharedDataError(f"{key}: {exc}") from None
        return value, int(ttl)

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        await self._client.set(key, value, px=ttl_ms)

    def time_limit(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()
