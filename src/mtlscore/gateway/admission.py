"""Who gets a connection slot (issue 15, finding 5): decided at accept, never queued.

Both runtimes ask :meth:`Admission.admit` for every accepted connection; the
connection's handshake deadline runs from that moment. A queue of connections
waiting for a slot is what let 3,000 idle sockets delay a normal client by
20 s. When every slot is taken:

* the connection that has kept the gateway waiting longest — for its TLS
  handshake or for a request head (an idle keep-alive connection, a silent
  socket, a slowloris head) — is **shed** (closed) to make room: a normal
  client's wait lasts milliseconds, so the one shed is an attacker's or an
  idle keep-alive connection, which a client reopens at will;
* when no connection is waiting (all are busy with requests), the new one is
  **refused**: closed at once, so it learns it and can retry.

A per-source-address limit (:attr:`ServerConfig.address_limit`, tighter by
default when the handshake is lenient: anonymous connections are free to open)
refuses at once too; a trusted proxy's addresses are exempt from it (a proxy
concentrates its clients' connections by design). The limits are read from the
current :class:`ServerConfig` at every call, so a reload changes them. No I/O;
time is a parameter.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .settings import ServerConfig

__all__ = ["MAX_CONNECTIONS", "MAX_PER_ADDRESS", "Admission", "Ticket"]

MAX_CONNECTIONS = "max_connections"
MAX_PER_ADDRESS = "max_connections_per_address"


@dataclass(eq=False, slots=True)
class Ticket:
    """One admitted connection's slot.

    The runtime sets ``shed`` (how to close this connection from outside) and keeps
    ``waiting_since`` current: the monotonic time since which the connection has kept
    the gateway waiting for a handshake or a request head, None while it is busy
    with a request.
    """

    peer: tuple[str, int]
    waiting_since: float | None
    shed: Callable[[], None] | None = None
    gone: bool = False  # shed: its slot is already free


class Admission:
    """The open connections, in all and per source address."""

    def __init__(self) -> None:
        self._tickets: set[Ticket] = set()
        self._by_address: Counter[str] = Counter()

    @property
    def total(self) -> int:
        """Connections holding a slot now."""
        return len(self._tickets)

    def admit(
        self,
        peer: tuple[str, int],
        server: ServerConfig,
        *,
        now: float,
        on_shed: Callable[[Ticket, float], None] | None = None,
    ) -> Ticket | str:
        """A slot for a connection from ``peer`` accepted at ``now``: its :class:`Ticket`
        (give it back with :meth:`release`), or the name of the limit that refused it.

        Taking the slot of a waiting connection calls that connection's ``shed`` (and
        ``on_shed(ticket, now)``, to count and log it).
        """
        address = peer[0]
        if self._by_address[address] >= server.address_limit and not _is_proxy(address, server):
            return MAX_PER_ADDRESS
        if len(self._tickets) >= server.max_connections:
            victim = self._longest_waiting()
            if victim is None:
                return MAX_CONNECTIONS
            self._drop(victim)
            victim.gone = True
            if on_shed is not None:
                on_shed(victim, now)
            assert victim.shed is not None
            victim.shed()
        ticket = Ticket(peer, waiting_since=now)
        self._tickets.add(ticket)
        self._by_address[address] += 1
        return ticket

    def release(self, ticket: Ticket) -> None:
        """Give back the slot ``ticket`` held (nothing when it was shed)."""
        if not ticket.gone:
            ticket.gone = True
            self._drop(ticket)

    def open_from(self, address: str) -> int:
        """Connections open from ``address`` now."""
        return self._by_address[address]

    def _longest_waiting(self) -> Ticket | None:
        waiting = [t for t in self._tickets if t.waiting_since is not None and t.shed is not None]
        return min(waiting, key=lambda t: t.waiting_since or 0.0, default=None)

    def _drop(self, ticket: Ticket) -> None:
        self._tickets.discard(ticket)
        address = ticket.peer[0]
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]


def _is_proxy(address: str, server: ServerConfig) -> bool:
    if not server.trusted_proxies:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in net for net in server.trusted_proxies)
