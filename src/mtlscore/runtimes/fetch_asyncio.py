"""Answer the asking validator's requests over HTTP with asyncio (h11 over asyncio streams).

::

    fetcher = AsyncioFetcher(timeout=5.0)
    verdict = await fetcher.validate(validator, chain, at=datetime.now(UTC))

One fetcher is meant to be shared by every validation of a process: it caps
concurrent fetches, and concurrent validations asking for the same URL share
one in-flight fetch. The loop is :class:`mtlscore.runtimes.fetcher.Fetcher`'s;
this module only supplies asyncio's streams, timeouts and locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Unpack

from ..decision.validator import Validator
from ..decision.verdict import Verdict
from .fetch import FetchError, Target
from .fetcher import Chain, Fetcher, FetcherOptions, HttpStream, drive

__all__ = ["AsyncioFetcher", "FetchError", "drive", "validate_with_fetch"]


class _Stream:
    """An asyncio stream pair as an :class:`HttpStream`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send_all(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive_some(self, max_bytes: int) -> bytes:
        return await self.reader.read(max_bytes)

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


class AsyncioClient:
    """asyncio's side of :class:`~mtlscore.runtimes.fetcher.HttpClient`."""

    async def connect(self, target: Target, ssl_context: ssl.SSLContext | None) -> HttpStream:
        reader, writer = await asyncio.open_connection(
            target.host, target.port, ssl=ssl_context, server_hostname=target.host if ssl_context else None
        )
        return _Stream(reader, writer)

    def time_limit(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)

    def limiter(self, concurrent: int) -> AbstractAsyncContextManager[object]:
        return asyncio.Semaphore(concurrent)

    def event(self) -> asyncio.Event:
        return asyncio.Event()


class AsyncioFetcher(Fetcher):
    """Fetch CRLs, OCSP responses and issuers for validations, on the running asyncio loop.

    ``timeout``: seconds for one fetch (connect, send, receive, redirects);
    ``max_bytes``: largest answer; ``max_concurrent``: fetches at once;
    ``ssl_context``: for https URLs (default: the system trust store).
    """

    def __init__(self, **options: Unpack[FetcherOptions]) -> None:
        super().__init__(AsyncioClient(), **options)


def validate_with_fetch(
    validator: Validator,
    chain: Chain,
    *,
    at: datetime,
    timeout: float = 5.0,
    crls: Iterable[bytes] = (),
    ocsp_responses: Iterable[bytes] = (),
) -> Verdict:
    """Validate ``chain`` at ``at``, fetching CRLs/OCSP/issuers with a fresh asyncio loop (for the CLI).

    Never raises for bad input; unreachable data is soft- or hard-fail by policy.
    """

    async def main() -> Verdict:
        fetcher = AsyncioFetcher(timeout=timeout, max_bytes=validator.policy.max_fetch_bytes)
        return await fetcher.validate(validator, chain, at=at, crls=crls, ocsp_responses=ocsp_responses)

    return asyncio.run(main())
