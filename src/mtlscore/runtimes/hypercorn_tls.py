"""Put the client's certificate chain into the ASGI scope when hypercorn (asyncio) terminates TLS.

hypercorn 0.18 does not fill the ASGI TLS extension. :func:`serve` is
``hypercorn.asyncio.serve`` plus ``scope["extensions"]["tls"]`` (the full presented
chain, as :mod:`mtlscore.runtimes.uvicorn_tls` builds it) and
``scope["extensions"]["mtlscore.peer"]``::

    from hypercorn.config import Config
    from mtlscore.runtimes.hypercorn_tls import serve

    config = Config()
    config.certfile, config.keyfile = "server.pem", "server.key"
    config.ca_certs, config.verify_mode = "partner-ca.pem", ssl.CERT_OPTIONAL
    asyncio.run(serve(app, config))

How: hypercorn's asyncio runner builds one ``TCPServer`` per connection, after the
handshake, and runs the app in tasks it starts from there. :func:`serve` swaps in a
subclass that only records the connection's TLS facts in a context variable
(inherited by those tasks); an app wrapper copies them into each scope. The swap
is process-wide and changes nothing else. The trio worker is not covered.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import hypercorn.asyncio
import hypercorn.asyncio.run as _hypercorn_run
from hypercorn.asyncio.tcp_server import TCPServer

from .uvicorn_tls import tls_extension

__all__ = ["MtlsTCPServer", "serve", "with_tls_extension"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

_CONNECTION: contextvars.ContextVar[tuple[dict[str, Any] | None, Any] | None] = contextvars.ContextVar(
    "mtlscore_hypercorn_connection", default=None
)


class MtlsTCPServer(TCPServer):
    """hypercorn's per-connection server, recording the TLS extension for the app's tasks."""

    async def run(self) -> None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        peer = self.writer.get_extra_info("peername")
        tls = tls_extension(ssl_object) if ssl_object is not None else None
        if isinstance(peer, tuple | list) and len(peer) >= 2:
            peer = (str(peer[0]), int(peer[1]))
        else:
            peer = None
        _CONNECTION.set((tls, peer))
        await super().run()


def with_tls_extension(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so each http/websocket scope carries the connection's TLS facts."""

    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        facts = _CONNECTION.get()
        if facts is not None and scope.get("type") in ("http", "websocket"):
            tls, peer = facts
            scope = dict(scope)
            ext = dict(scope.get("extensions") or {})
            if tls is not None:
                ext["tls"] = tls
            ext["mtlscore.peer"] = peer
            scope["extensions"] = ext
        await app(scope, receive, send)

    return wrapped


async def serve(app: ASGIApp, config: Any, **kwargs: Any) -> None:
    """``hypercorn.asyncio.serve(app, config, **kwargs)`` with the ASGI TLS extension."""
    _hypercorn_run.TCPServer = MtlsTCPServer  # type: ignore[attr-defined]
    await hypercorn.asyncio.serve(with_tls_extension(app), config, **kwargs)  # type: ignore[arg-type]
