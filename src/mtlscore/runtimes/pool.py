"""Idle upstream connections kept for reuse across client connections (both runtimes).

nginx's upstream ``keepalive``: a connection the session released at a message
boundary (its last response read to the end, nothing unread, no
``Connection: close``: ``gateway/session.py`` decides, and says so with
``ReleaseUpstream``) waits here for the next request to the same upstream,
whichever client sends it. At most ``upstream_keepalive`` wait per upstream
(the least recently used is closed first); each is closed after
``upstream_keepalive_timeout_seconds`` unused (:meth:`UpstreamPool.expired`,
called by the runtime's reaper task). A connection the upstream closed, or
sent anything on, while it waited is never handed out (:meth:`UpstreamPool.take`
asks the stream): bytes nobody asked for would be read as the next client's
response.

That check cannot see an upstream that closes the connection as it is taken (its
idle timeout firing while the request is on its way): the request then meets a
reset or an end of stream before any byte of the response. :class:`Reused` sends
such a request once more, on a new connection, when that is safe — RFC 9110
§9.2.2: "A proxy MUST NOT automatically retry non-idempotent requests", and "A
client SHOULD NOT automatically retry a failed automatic retry" (RFC 9112 §9.3.1
refers retries of a closed connection's requests to that section). So: only an
idempotent method (the session says, ``OpenUpstream.retry``), only on a connection
that came from the pool (a new one that fails is not stale, it is the upstream),
only before the first byte of the response, at most once, and only while every
byte of the request written so far is still held (at most :data:`REPLAY_LIMIT`;
a larger request goes out unheld, and a failure is the 502 it was before).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol

__all__ = ["REPLAY_LIMIT", "PooledStream", "Reused", "UpstreamPool", "reap_interval"]

# The bytes of one request held for a retry on a reused connection: a request head with
# the identity headers (a chain of a few KB) and a small body. Past it the request is not
# retried: holding a whole 10 MiB upload per connection in case of a race is not worth it.
REPLAY_LIMIT = 64 * 1024


class PooledStream(Protocol):
    """What the pool needs of a connection: the driver's ``Stream`` plus :meth:`stale`."""

    async def recv(self, max_bytes: int, timeout: float) -> bytes | None: ...

    async def send(self, data: bytes, timeout: float) -> None: ...

    async def aclose(self) -> None: ...

    async def stale(self) -> bool:
        """True when the peer closed, or sent anything, while the connection sat idle."""


class Reused:
    """A connection from the pool carrying one request: sent again, once, on a new connection
    (``reopen()``) when the upstream turns out to have closed it before answering, if
    ``retry`` (the request's method is idempotent). See the module for the rule.

    A :class:`PooledStream` itself; :meth:`UpstreamPool.put` keeps the connection it holds
    now (the new one after a retry), not this wrapper.
    """

    def __init__(self, stream: PooledStream, reopen: Callable[[], Awaitable[PooledStream]], *, retry: bool,
                 on_retry: Callable[[], None] = lambda: None, limit: int = REPLAY_LIMIT) -> None:
        self.stream = stream
        self._reopen = reopen
        self._on_retry = on_retry
        self._limit = limit
        # What was written so far, while a retry is still possible; None once it is not (not
        # idempotent, over the limit, a response byte read, or retried already).
        self._held: list[bytes] | None = [] if retry else None
        self._size = 0

    async def send(self, data: bytes, timeout: float) -> None:
        if self._held is not None:
            self._size += len(data)
            if self._size > self._limit:
                self._held = None
            else:
                self._held.append(data)
        try:
            await self.stream.send(data, timeout)
        except TimeoutError:
            raise  # the upstream does not read: slow, not closed; another try would wait as long
        except OSError:
            if self._held is None:
                raise
            await self._retry(timeout)

    async def recv(self, max_bytes: int, timeout: float) -> bytes | None:
        try:
            data = await self.stream.recv(max_bytes, timeout)
        except TimeoutError:
            raise
        except OSError:
            if self._held is None:
                raise
            data = b""
        if data == b"" and self._held is not None:
            # Closed (or reset) before any byte of the response: the request met a connection
            # the upstream had given up on. Send it again on a new one and read from there.
            await self._retry(timeout)
            data = await self.stream.recv(max_bytes, timeout)
        if data:
            self._held = None  # RFC 9110 §9.2.2: never after the response began
        return data

    async def _retry(self, timeout: float) -> None:
        held, self._held = self._held, None  # once: a failed retry is not retried
        assert held is not None
        await self.stream.aclose()
        self._on_retry()
        self.stream = await self._reopen()  # raises OSError / TimeoutError: the caller's failure
        await self.stream.send(b"".join(held), timeout)

    async def stale(self) -> bool:
        return await self.stream.stale()

    async def aclose(self) -> None:
        await self.stream.aclose()


class UpstreamPool:
    """Idle connections per upstream key, most recently released first."""

    def __init__(self) -> None:
        # key -> deque of (stream, released at); the right end is the most recent.
        self._idle: dict[Hashable, deque[tuple[PooledStream, float]]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._idle.values())

    async def take(self, key: Hashable, now: float, timeout: float) -> PooledStream | None:
        """An idle connection to ``key`` released less than ``timeout`` seconds ago and
        still clean, or None; stale and expired ones met on the way are closed."""
        queue = self._idle.get(key)
        while queue:
            stream, since = queue.pop()
            if now - since < timeout and not await stream.stale():
                return stream
            await stream.aclose()
        return None

    def put(self, key: Hashable, stream: PooledStream, now: float, size: int) -> list[PooledStream]:
        """Keep ``stream`` for ``key``; the connections to close now (over ``size``, oldest first)."""
        if isinstance(stream, Reused):
            stream = stream.stream  # the connection itself: the next request brings its own rule
        queue = self._idle.setdefault(key, deque())
        queue.append((stream, now))
        out: list[PooledStream] = []
        while len(queue) > size:
            out.append(queue.popleft()[0])
        return out

    def expired(self, now: float, timeout: float) -> list[PooledStream]:
        """Remove and return the connections idle for ``timeout`` seconds or more."""
        out: list[PooledStream] = []
        for key in list(self._idle):
            queue = self._idle[key]
            while queue and now - queue[0][1] >= timeout:
                out.append(queue.popleft()[0])
            if not queue:
                del self._idle[key]
        return out

    def drain(self) -> list[PooledStream]:
        """Remove and return every idle connection (shutdown)."""
        out = [stream for queue in self._idle.values() for stream, _ in queue]
        self._idle.clear()
        return out


def reap_interval(timeout: float) -> float:
    """How often the runtime's reaper looks for expired connections: a quarter of the
    idle timeout (so one is closed at most 25 % late), between 50 ms and 1 s."""
    return min(max(timeout / 4, 0.05), 1.0)
