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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Protocol

__all__ = ["PooledStream", "UpstreamPool", "reap_interval"]


class PooledStream(Protocol):
    """What the pool needs of a connection: the driver's ``Stream`` plus :meth:`stale`."""

    async def recv(self, max_bytes: int, timeout: float) -> bytes | None: ...

    async def send(self, data: bytes, timeout: float) -> None: ...

    async def aclose(self) -> None: ...

    async def stale(self) -> bool:
        """True when the peer closed, or sent anything, while the connection sat idle."""


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
