"""One gateway connection's deadlines (issue 15): absolute times from the runtime's ``now``.

The session (``gateway/session.py``) asks here how long its next read from the client
may wait, and whether the connection is past its maximum age; the runtime only
enforces the timeout it is given. Each deadline starts once and is not moved by
the bytes that trickle in — a fresh timeout per read is what let slowloris hold
a connection forever:

* waiting for a request's first byte: ``keepalive_timeout`` from the start of
  the wait (capped by the connection's age once it has answered a request);
* the request head: ``header_timeout`` from its first byte;
* the body: ``body_timeout`` from its start, plus one second per
  ``min_body_rate`` bytes received (Apache mod_reqtimeout's ``MinRate``).

Monotonic seconds throughout; no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import ServerConfig

__all__ = ["Deadlines"]


@dataclass(slots=True)
class Deadlines:
    """The clock readings one connection's deadlines count from."""

    server: ServerConfig
    born: float | None = None  # accepted (or first seen)
    now: float = 0.0  # the latest reading the session was given
    idle_since: float | None = None  # waiting for this request's first byte since
    head_since: float | None = None  # this request head's first byte
    body_since: float | None = None  # this request body's start
    cycles: int = 0  # requests answered on this connection

    def tick(self, now: float) -> None:
        """The runtime's latest monotonic reading."""
        self.now = now
        if self.born is None:
            self.born = now

    def request(self, now: float, *, begun: bool) -> float:
        """When waiting for the request must end: for its first byte, or (``begun``) its whole head."""
        server = self.server
        if self.idle_since is None:  # (a pipelined head has no idle wait before it)
            self.idle_since = now
        if begun:
            if self.head_since is None:
                self.head_since = now
            return self.head_since + server.header_timeout
        deadline = self.idle_since + server.keepalive_timeout
        # An aged keep-alive connection is closed rather than kept waiting; its first
        # request is always read (the age never refuses a fresh connection).
        if server.max_connection_age and self.born is not None and self.cycles:
            deadline = min(deadline, self.born + server.max_connection_age)
        return deadline

    def body(self, now: float, received: int) -> float:
        """When reading the request body must end, ``received`` bytes of it in."""
        if self.body_since is None:
            self.body_since = now
        server = self.server
        return self.body_since + server.body_timeout + received / server.min_body_rate

    def waiting_since(self) -> float | None:
        """Since when the connection has kept the gateway waiting for this request (from
        accept for its first one); None when no request wait has begun."""
        if self.idle_since is None:
            return None
        if self.cycles or self.born is None:
            return self.idle_since
        return min(self.born, self.idle_since)

    def aged(self) -> bool:
        """Past ``max_connection_age``: close after the current response (trust and CRLs reload)."""
        age = self.server.max_connection_age
        return bool(age) and self.born is not None and self.now - self.born >= age

    def next_cycle(self) -> None:
        """A request was answered; the next one's deadlines start afresh."""
        self.idle_since = self.head_since = self.body_since = None
        self.cycles += 1
