"""Runtimes: real sockets around the sans-IO core (``asyncio``, ``trio``).

``mtlscore.runtimes.asyncio.serve`` and ``mtlscore.runtimes.trio.serve`` run the
gateway; both share one byte-moving loop (``driver``) and the TLS helpers of
``tls`` (``server_context``, ``presented_chain``, ``handshake_reason``), which
other servers (uvicorn, hypercorn, aiohttp) can use on their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..gateway.settings import Address

__all__ = [
    "GatewayState",
    "OnStarted",
    "ServerInfo",
    "TaskStatus",
    "handshake_reason",
    "presented_chain",
    "server_context",
]


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A running gateway: where it listens, its state (reload, metrics) and how to stop it."""

    address: Address
    admin_address: Address | None
    state: GatewayState
    # Ask for a graceful shutdown (stop accepting, let requests in flight finish).
    shutdown: Callable[[], None]


class TaskStatus(Protocol):
    """What ``serve(task_status=...)`` tells once it listens: trio's ``nursery.start`` protocol."""

    def started(self, value: ServerInfo) -> None: ...


@dataclass(frozen=True, slots=True)
class OnStarted:
    """A :class:`TaskStatus` outside a nursery: ``callback(info)`` once the gateway listens."""

    callback: Callable[[ServerInfo], object]

    def started(self, value: ServerInfo) -> None:
        self.callback(value)


# Re-exported after ServerInfo is defined (the runtime modules import it from here).
from .state import GatewayState  # noqa: E402
from .tls import handshake_reason, presented_chain, server_context  # noqa: E402
