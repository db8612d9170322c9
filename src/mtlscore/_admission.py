"""Who gets a connection slot (issue 15, finding 5): decided at accept, never queued.

Both runtimes ask :meth:`Admission.admit` for every accepted connection and
close it at once when refused; the connection's handshake deadline runs from
that moment. A queue of connections waiting for a slot is what let 3,000 idle
sockets delay a normal client by 20 s: a refused client learns at once and can
retry, an attacker's extra sockets cost the gateway nothing.

Two limits, read from the current :class:`ServerConfig` on every call (so a
reload changes them): ``max_connections`` in all, and
:attr:`ServerConfig.address_limit` per source address — tighter by default when
the handshake is lenient (anonymous connections are free to open). A trusted
proxy's addresses are exempt from the per-address limit: a proxy concentrates
its clients' connections by design. No I/O, no clock.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

from ._gateway_config import ServerConfig

__all__ = ["MAX_CONNECTIONS", "MAX_PER_ADDRESS", "Admission"]

MAX_CONNECTIONS = "max_connections"
MAX_PER_ADDRESS = "max_connections_per_address"


class Admission:
    """Counts the open connections, in all and per source address."""

    def __init__(self) -> None:
        self.total = 0
        self._by_address: Counter[str] = Counter()

    def admit(self, address: str, server: ServerConfig) -> str | None:
        """Take a slot for a connection from ``address``: None when admitted (then call
        :meth:`release`), else the name of the limit that refused it."""
        if self.total >= server.max_connections:
            return MAX_CONNECTIONS
        if self._by_address[address] >= server.address_limit and not _is_proxy(address, server):
            return MAX_PER_ADDRESS
        self.total += 1
        self._by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        """Give back the slot a connection from ``address`` held."""
        self.total -= 1
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]

    def open_from(self, address: str) -> int:
        """Connections open from ``address`` now."""
        return self._by_address[address]


def _is_proxy(address: str, server: ServerConfig) -> bool:
    if not server.trusted_proxies:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in net for net in server.trusted_proxies)
