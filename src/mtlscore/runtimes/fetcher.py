"""The one fetch loop both runtimes share, written against a small HTTP-client Protocol.

A validation asks for CRLs, OCSP responses and issuers (``NeedCRL``,
``NeedOCSP``, ``NeedIssuer``), an account's key set for its JWKS
(``NeedJwks``). :class:`Fetcher` answers them: one in-flight fetch per
request shared by every validation that asks for it, at most
``max_concurrent`` at once, redirects to the same scheme only, every limit
enforced (``runtimes/fetch.py`` does the HTTP bytes with h11). What it needs
of a runtime is an :class:`HttpClient`: open a TCP or TLS stream, a time
limit, a concurrency limiter and an event — asyncio's in
``fetch_asyncio.py``, trio's in ``fetch_trio.py``, as the gateway's
connection loop needs only a ``Stream`` (``runtimes/driver.py``).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol, TypedDict

from ..decision.validator import Validation, Validator
from ..decision.verdict import Verdict
from ..identity.jwks import JwksCache, NeedJwks
from ..verify.machine import Request
from ..x509.cert import ChainInput
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
from .shared import SharedStore

__all__ = ["Event", "Fetcher", "FetcherOptions", "HttpClient", "HttpStream", "drive"]

# A chain as Validator.start takes it: PEM or DER, one or several, or certificates (leaf first).
Chain = ChainInput


class HttpStream(Protocol):
    """A connected byte stream to an HTTP server."""

    async def send_all(self, data: bytes) -> None:
        """Send all of ``data``."""

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes``; ``b""`` at EOF."""

    async def aclose(self) -> None:
        """Close; never raises."""


class Event(Protocol):
    """Set once; waited on by every validation that joined a fetch (asyncio.Event, trio.Event)."""

    def set(self) -> None: ...

    async def wait(self) -> object: ...


class HttpClient(Protocol):
    """What a runtime supplies to :class:`Fetcher`."""

    async def connect(self, target: Target, ssl_context: ssl.SSLContext | None) -> HttpStream:
        """A stream to ``target``: TCP, or TLS with ``ssl_context`` (given for https only)."""

    def time_limit(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """A scope that raises :class:`TimeoutError` when ``seconds`` pass inside it."""

    def limiter(self, concurrent: int) -> AbstractAsyncContextManager[object]:
        """A limiter that lets ``concurrent`` holders in at once (entered with ``async with``)."""

    def event(self) -> Event:
        """A new event."""


class FetcherOptions(TypedDict, total=False):
    """The keyword arguments of :class:`Fetcher` (and so of AsyncioFetcher and TrioFetcher)."""

    timeout: float
    max_bytes: int
    max_concurrent: int
    ssl_context: ssl.SSLContext | None


class _Flight:
    """One fetch in progress that other validations may wait on."""

    __slots__ = ("done", "error", "response")

    def __init__(self, done: Event) -> None:
        self.done = done
        self.response: Response | None = None
        self.error: FetchError | None = None


class Fetcher:
    """Fetch CRLs, OCSP responses, issuers and JWK Sets for validations, with ``client``'s I/O.

    ``timeout``: seconds for one fetch (connect, send, receive, redirects);
    ``max_bytes``: largest answer; ``max_concurrent``: fetches at once;
    ``ssl_context``: for https URLs (default: the system trust store).
    """

    def __init__(
        self,
        client: HttpClient,
        *,
        timeout: float = 5.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_concurrent: int = 8,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_concurrent = max_concurrent
        self._ssl = ssl_context
        # Made on first use: asyncio's primitives bind to the loop that first waits on them.
        self._limiter: AbstractAsyncContextManager[object] | None = None
        self._inflight: dict[Request | NeedJwks, _Flight] = {}
        self.fetches = 0  # network fetches started
        self.joined = 0  # requests that waited on another validation's fetch
        # [shared] (docs/shared-state.md): answers other processes fetched are looked up here
        # first, and what this one fetches is offered to them. Set by the runtime's serve().
        self.shared: SharedStore | None = None

    def share(self, store: SharedStore | None) -> None:
        """Use the gateway's ``[shared]`` store, unless this fetcher was given one of its own."""
        if store is not None and self.shared is None:
            self.shared = store

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
            assert running.response is not None
            return running.response
        flight = _Flight(self.client.event())
        self._inflight[request] = flight
        try:
            if self._limiter is None:
                self._limiter = self.client.limiter(self.max_concurrent)
            flight.response = await self._shared_or_fetch(request)
            return flight.response
        except FetchError as exc:
            flight.error = exc
            raise
        except Exception as exc:  # noqa: BLE001 - OSError, TLS errors, the runtime's stream errors
            flight.error = FetchError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            raise flight.error from None
        except BaseException:
            # Cancellation (asyncio.CancelledError, trio.Cancelled) goes on up; the validations
            # that joined this fetch learn why it gave them nothing.
            flight.error = FetchError("the fetch was cancelled")
            raise
        finally:
            self._inflight.pop(request, None)
            flight.done.set()

    async def _shared_or_fetch(self, request: Request | NeedJwks) -> Response:
        """The answer from the shared store when another process fetched it, else fetched (and shared)."""
        shared = self.shared
        # A refresh after an unknown kid wants the issuer's current keys, not the shared copy
        # of the ones that just missed.
        use_shared = shared is not None and not (isinstance(request, NeedJwks) and request.refresh)
        if use_shared:
            assert shared is not None
            found = await shared.lookup(request, at=datetime.now(UTC))
            if found is not None:
                # Validated by the caller exactly as a fetched answer (Redis is trusted no more than the network).
                return Response(200, ((b"cache-control", found.cache_control),), found.body)
        assert self._limiter is not None
        async with self._limiter:
            self.fetches += 1
            response = await self._fetch(request)
        if shared is not None:
            await shared.store(request, response.body, at=datetime.now(UTC),
                               cache_control=response.header(b"cache-control"))
        return response

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
        # A JWKS request may carry tighter limits than the fetcher's.
        timeout, limit = self.timeout, self.max_bytes
        if isinstance(request, NeedJwks):
            timeout, limit = min(timeout, request.timeout), min(limit, request.max_bytes)
        try:
            async with self.client.time_limit(timeout):
                for _ in range(MAX_REDIRECTS + 1):
                    exchange = Exchange(replace(call, target=target), max_bytes=limit)
                    response = await self._exchange(target, exchange)
                    nxt = redirect_target(target, response)
                    if nxt is None:
                        return response
                    target = nxt
        except TimeoutError:
            raise FetchError(f"timed out after {timeout:g} s") from None
        raise FetchError(f"{call.target.url}: more than {MAX_REDIRECTS} redirects")

    async def _exchange(self, target: Target, exchange: Exchange) -> Response:
        stream = await self.client.connect(target, self._ssl_context() if target.scheme == "https" else None)
        try:
            await stream.send_all(exchange.request_bytes())
            while True:
                response = exchange.receive(await stream.receive_some(65536))
                if response is not None:
                    return response
        finally:
            await stream.aclose()

    async def run(self, validation: Validation) -> Verdict:
        """Drive ``validation`` to its verdict, fetching what it asks for."""
        return await drive(validation, self)

    async def validate(
        self,
        validator: Validator,
        chain: Chain,
        *,
        at: datetime,
        crls: Iterable[bytes] = (),
        ocsp_responses: Iterable[bytes] = (),
    ) -> Verdict:
        """Validate ``chain`` at ``at`` with ``validator``, fetching what it asks for. Never raises for bad input."""
        return await self.run(validator.start(chain, at=at, crls=crls, ocsp_responses=ocsp_responses))


async def drive(validation: Validation, fetcher: Fetcher) -> Verdict:
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
