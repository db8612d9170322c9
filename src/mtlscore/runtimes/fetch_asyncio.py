"""Answer the asking validator's requests over HTTP with asyncio (h11 over asyncio streams).

::

    fetcher = AsyncioFetcher(timeout=5.0)
    verdict = await fetcher.validate(validator, chain, at=datetime.now(UTC))

One fetcher is meant to be shared by every validation of a process: it caps
concurrent fetches, and concurrent validations asking for the same URL share
one in-flight fetch. What the bytes mean is the core's business; this module
only moves them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..decision.validator import Validation, Validator
from ..decision.verdict import Verdict
from ..identity.jwks import JwksCache, NeedJwks
from ..verify.machine import Request
from .fetch import (
    DEFAULT_MAX_BYTES,
    MAX_REDIRECTS,
    Exchange,
    FetchError,
    Response,
    Target,
    call_for,
    redirect_target,
    report_jwks,
)

__all__ = ["AsyncioFetcher", "FetchError", "drive", "validate_with_fetch"]


class AsyncioFetcher:
    """Fetch CRLs, OCSP responses and issuers for validations, on the running asyncio loop.

    ``timeout``: seconds for one fetch (connect, send, receive, redirects);
    ``max_bytes``: largest answer; ``max_concurrent``: fetches at once;
    ``ssl_context``: for https URLs (default: the system trust store).
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_concurrent: int = 8,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_concurrent = max_concurrent
        self._ssl = ssl_context
        self._sem: asyncio.Semaphore | None = None
        self._inflight: dict[Request | NeedJwks, asyncio.Future[Response]] = {}
        self.fetches = 0  # network fetches started
        self.joined = 0  # requests that waited on another validation's fetch

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def fetch(self, request: Request) -> bytes:
        """The bytes that answer ``request``. Raises FetchError when they cannot be had."""
        return (await self.fetch_response(request)).body

    async def fetch_response(self, request: Request | NeedJwks) -> Response:
        """The HTTP 200 response that answers ``request`` (after redirects). Raises FetchError."""
        running = self._inflight.get(request)
        if running is not None:
            self.joined += 1
            return await asyncio.shield(running)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._inflight[request] = fut
        try:
            if self._sem is None:
                self._sem = asyncio.Semaphore(self.max_concurrent)
            async with self._sem:
                self.fetches += 1
                data = await self._fetch(request)
        except BaseException as exc:
            err = exc if isinstance(exc, FetchError) else FetchError(_describe(exc, self.timeout))
            fut.set_exception(err)
            fut.exception()  # waiters get it; nobody else needs to retrieve it
            if isinstance(exc, Exception):
                raise err from None
            raise  # cancellation and the like go on up
        else:
            fut.set_result(data)
            return data
        finally:
            self._inflight.pop(request, None)

    async def jwks(self, cache: JwksCache, request: NeedJwks, *, now: float) -> str | None:
        """Fetch the JWK Set ``request`` names and report it to ``cache``; None when the keys were replaced."""
        try:
            response: Response | FetchError = await self.fetch_response(request)
        except FetchError as exc:
            response = exc
        return report_jwks(cache, request, response, now=now)

    async def _fetch(self, request: Request | NeedJwks) -> Response:
        call = call_for(request)
        target = call.target
        timeout = min(self.timeout, request.timeout) if isinstance(request, NeedJwks) else self.timeout
        try:
            async with asyncio.timeout(timeout):
                for _ in range(MAX_REDIRECTS + 1):
                    limit = min(self.max_bytes, request.max_bytes) if isinstance(request, NeedJwks) else self.max_bytes
                    exchange = Exchange(replace(call, target=target), max_bytes=limit)
                    response = await self._exchange(target, exchange)
                    nxt = redirect_target(target, response)
                    if nxt is None:
                        return response
                    target = nxt
        except TimeoutError:
            # The limit that applied (a JWKS request may carry a tighter one than the fetcher's).
            raise FetchError(f"timed out after {timeout:g} s") from None
        raise FetchError(f"{call.target.url}: more than {MAX_REDIRECTS} redirects")

    async def _exchange(self, target: Target, exchange: Exchange) -> Response:
        tls = self._ssl_context() if target.scheme == "https" else None
        reader, writer = await asyncio.open_connection(
            target.host, target.port, ssl=tls, server_hostname=target.host if tls else None
        )
        try:
            writer.write(exchange.request_bytes())
            await writer.drain()
            while True:
                data = await reader.read(65536)
                response = exchange.receive(data)
                if response is not None:
                    return response
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass

    async def run(self, validation: Validation) -> Verdict:
        """Drive ``validation`` to its verdict, fetching what it asks for."""
        return await drive(validation, self)

    async def validate(
        self,
        validator: Validator,
        chain: Any,
        *,
        at: datetime,
        crls: Iterable[bytes] = (),
        ocsp_responses: Iterable[bytes] = (),
    ) -> Verdict:
        """Validate ``chain`` at ``at`` with ``validator``, fetching what it asks for. Never raises for bad input."""
        return await self.run(validator.start(chain, at=at, crls=crls, ocsp_responses=ocsp_responses))


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, asyncio.CancelledError):
        return "the fetch was cancelled"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def drive(validation: Validation, fetcher: AsyncioFetcher) -> Verdict:
    """Answer ``validation``'s requests with ``fetcher`` until it gives its verdict."""
    while True:
        event = validation.next_event()
        if isinstance(event, Verdict):
            return event
        try:
            data = await fetcher.fetch(event)
        except FetchError as exc:
            validation.fail(event, str(exc))
        else:
            validation.send(event, data)


def validate_with_fetch(
    validator: Validator,
    chain: Any,
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
