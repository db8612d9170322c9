"""Answer the asking validator's requests over HTTP with trio (h11 over trio streams).

::

    fetcher = TrioFetcher(timeout=5.0)
    verdict = await fetcher.validate(validator, chain, at=datetime.now(UTC))

One fetcher is meant to be shared by every validation of a process: it caps
concurrent fetches, and concurrent validations asking for the same URL share
one in-flight fetch. The loop is :class:`mtlscore.runtimes.fetcher.Fetcher`'s;
this module only supplies trio's streams, timeouts and locks.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Unpack

import trio

from .fetch import FetchError, Target
from .fetcher import Fetcher, FetcherOptions, HttpStream, drive

__all__ = ["FetchError", "TrioFetcher", "drive", "time_limit"]


class _Stream:
    """A trio stream as an :class:`HttpStream`."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def send_all(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive_some(self, max_bytes: int) -> bytes:
        return bytes(await self.stream.receive_some(max_bytes))

    async def aclose(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.stream.aclose()


@asynccontextmanager
async def time_limit(seconds: float) -> AsyncIterator[None]:
    """trio's deadline as the ``TimeoutError`` the runtime-neutral loops (fetcher, shared store) catch."""
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise TimeoutError from None


class TrioClient:
    """trio's side of :class:`~mtlscore.runtimes.fetcher.HttpClient`."""

    async def connect(self, target: Target, ssl_context: ssl.SSLContext | None) -> HttpStream:
        stream: trio.abc.Stream
        if ssl_context is not None:
            stream = await trio.open_ssl_over_tcp_stream(target.host, target.port, ssl_context=ssl_context)
        else:
            stream = await trio.open_tcp_stream(target.host, target.port)
        return _Stream(stream)

    def time_limit(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return time_limit(seconds)

    def limiter(self, concurrent: int) -> AbstractAsyncContextManager[object]:
        return trio.CapacityLimiter(concurrent)

    def event(self) -> trio.Event:
        return trio.Event()


class TrioFetcher(Fetcher):
    """Fetch CRLs, OCSP responses and issuers for validations, under trio.

    ``timeout``: seconds for one fetch (connect, send, receive, redirects);
    ``max_bytes``: largest answer; ``max_concurrent``: fetches at once;
    ``ssl_context``: for https URLs (default: the system trust store).
    """

    def __init__(self, **options: Unpack[FetcherOptions]) -> None:
        super().__init__(TrioClient(), **options)
