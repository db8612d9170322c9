"""Answer the asking validator's requests over HTTP with trio (h11 over trio streams).

::

    fetcher = TrioFetcher(timeout=5.0)
    verdict = await fetcher.validate(validator, chain, at=datetime.now(UTC))

One fetcher is meant to be shared by every validation of a process: it caps
concurrent fetches, and concurrent validations asking for the same URL share
one in-flight fetch. What the bytes mean is the core's business; this module
only moves them.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

import trio

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

__all__ = ["FetchError", "TrioFetcher", "drive"]


class _Flight:
    """One fetch in progress that other validations may wait on."""

    __slots__ = ("data", "done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.data: Response | None = None
        self.error: FetchError | None = None


class TrioFetcher:
    """Fetch CRLs, OCSP responses and issuers for validations, under trio.

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
        self._limiter: trio.CapacityLimiter | None = None
        self._inflight: dict[Request | NeedJwks, _Flight] = {}
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
            await running.done.wait()
            if running.error is not None:
                raise running.error
            assert running.data is not None
            return running.data
        flight = _Flight()
        self._inflight[request] = flight
        try:
            if self._limiter is None:
                self._limiter = trio.CapacityLimiter(self.max_concurrent)
            async with self._limiter:
                self.fetches += 1
                flight.data = await self._fetch(request)
            return flight.data
        except FetchError as exc:
            flight.error = exc
            raise
        except trio.Cancelled:
            flight.error = FetchError("the fetch was cancelled")
            raise
        except trio.TooSlowError:
            flight.error = FetchError(f"timed out after {self.timeout:g} s")
            raise flight.error from None
        except Exception as exc:  # noqa: BLE001 - OSError, TLS errors, trio stream errors
            flight.error = FetchError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            raise flight.error from None
        finally:
            self._inflight.pop(request, None)
            flight.done.set()

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
            with trio.fail_after(timeout):
                for _ in range(MAX_REDIRECTS + 1):
                    limit = min(self.max_bytes, request.max_bytes) if isinstance(request, NeedJwks) else self.max_bytes
                    exchange = Exchange(replace(call, target=target), max_bytes=limit)
                    response = await self._exchange(target, exchange)
                    nxt = redirect_target(target, response)
                    if nxt is None:
                        return response
                    target = nxt
        except trio.TooSlowError:
            # The limit that applied (a JWKS request may carry a tighter one than the fetcher's).
            raise FetchError(f"timed out after {timeout:g} s") from None
        raise FetchError(f"{call.target.url}: more than {MAX_REDIRECTS} redirects")

    async def _exchange(self, target: Target, exchange: Exchange) -> Response:
        stream: trio.abc.Stream
        if target.scheme == "https":
            stream = await trio.open_ssl_over_tcp_stream(target.host, target.port, ssl_context=self._ssl_context())
        else:
            stream = await trio.open_tcp_stream(target.host, target.port)
        async with stream:
            await stream.send_all(exchange.request_bytes())
            while True:
                data = await stream.receive_some(65536)
                response = exchange.receive(bytes(data))
                if response is not None:
                    return response

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


async def drive(validation: Validation, fetcher: TrioFetcher) -> Verdict:
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
