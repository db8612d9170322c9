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

import asyncio
import contextlib
import contextvars
import json
import logging
import pathlib
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import hypercorn.asyncio
import hypercorn.asyncio.run as _hypercorn_run
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config

from ..proxy.headers import lb_error_name
from ..types import ASGIApp, JSONObject, Receive, Scope, Send
from .uvicorn_tls import tls_extension, with_connection_facts

__all__ = ["MtlsTCPServer", "hypercorn_tls", "serve", "with_tls_extension"]


_CONNECTION: contextvars.ContextVar[tuple[JSONObject | None, tuple[str, int] | None] | None] = contextvars.ContextVar(
    "mtlscore_hypercorn_connection", default=None
)


class MtlsTCPServer(TCPServer):
    """hypercorn's per-connection server, recording the TLS extension for the app's tasks."""

    async def run(self) -> None:
        deferred = getattr(self.config, "mtlscore_deferred", None)
        peer = self.writer.get_extra_info("peername")
        if deferred is not None:  # hypercorn_tls(): mtlscore runs the handshake
            tls = await _deferred_handshake(self, *deferred)
            if tls is None:
                return
        else:
            ssl_object = self.writer.get_extra_info("ssl_object")
            tls = tls_extension(ssl_object) if ssl_object is not None else None
        if isinstance(peer, tuple | list) and len(peer) >= 2:
            peer = (str(peer[0]), int(peer[1]))
        else:
            peer = None
        _CONNECTION.set((tls, peer))
        await super().run()


def with_tls_extension(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so each http/websocket scope carries the connection's TLS facts."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        facts = _CONNECTION.get()
        await app(with_connection_facts(scope, *facts) if facts is not None else scope, receive, send)

    return wrapped


async def serve(
    app: ASGIApp,
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    mode: Literal["asgi", "wsgi"] | None = None,
) -> None:
    """``hypercorn.asyncio.serve(app, config, ...)`` with the ASGI TLS extension."""
    _hypercorn_run.TCPServer = MtlsTCPServer  # type: ignore[attr-defined]
    await hypercorn.asyncio.serve(
        with_tls_extension(app), config, shutdown_trigger=shutdown_trigger, mode=mode  # type: ignore[arg-type]
    )


# -- TLS terminated by mtlscore inside hypercorn: every client certificate reaches the app ---------

_log = logging.getLogger(__name__)


def hypercorn_tls(
    config: Config, *, certificate: str | pathlib.Path, key: str | pathlib.Path, handshake_timeout: float = 10.0
) -> None:
    """Make :func:`serve` terminate TLS with mtlscore's deferred engine on ``config``'s ``bind``.

    hypercorn's own TLS (``certfile``, ``ca_certs``, ``verify_mode``) is stdlib ``ssl``:
    OpenSSL aborts the handshake for an expired, wrong-EKU or unknown-CA client before
    the app runs. After ``hypercorn_tls(config, certificate=..., key=...)``, hypercorn
    listens on plain TCP and :func:`serve` runs the handshake itself (pyOpenSSL, a verify
    callback that accepts any chain), so :class:`mtlscore.asgi.MtlsMiddleware` answers
    every bad certificate with its JSON reason; a handshake that fails anyway is one JSON
    line on this module's logger with its reason. Leave ``certfile``/``keyfile`` unset.
    Raises :class:`~mtlscore.ConfigError` naming the file for a bad certificate or key."""
    from ..verify.trust import TrustStore
    from .tls import DeferredEngine

    # Carried on the Config (MtlsTCPServer reads it back per connection): hypercorn's Config
    # is a plain object that takes any attribute.
    config.mtlscore_deferred = (  # type: ignore[attr-defined]
        DeferredEngine.context(TrustStore(), certificate=certificate, key=key), handshake_timeout)


class _NotStdlibSSL:
    """What hypercorn asks of ``ssl_object``: the ALPN protocol (HTTP/1.1 only here)."""

    def selected_alpn_protocol(self) -> str:
        return "http/1.1"


class _TLSReader:
    def __init__(self, raw: asyncio.StreamReader, writer: asyncio.StreamWriter, engine: Any) -> None:
        self._raw, self._writer, self._engine, self._eof = raw, writer, engine, False

    def at_eof(self) -> bool:
        return self._eof

    async def read(self, n: int = -1) -> bytes:
        while True:
            plain = self._engine.read()
            out = self._engine.outgoing()  # post-handshake records (tickets, key updates, alerts)
            if out:
                self._writer.write(out)
            if plain is None:
                data = await self._raw.read(65536)
                self._engine.feed(data)
                continue
            if not plain:
                self._eof = True
            return bytes(plain)


class _TLSWriter:
    def __init__(self, raw: asyncio.StreamWriter, engine: Any) -> None:
        self._raw, self._engine = raw, engine

    def write(self, data: bytes) -> None:
        try:
            self._engine.write(data)
        except OSError:
            self._raw.close()
            raise ConnectionResetError("the TLS peer has gone") from None
        self._raw.write(self._engine.outgoing())

    async def drain(self) -> None:
        await self._raw.drain()

    def write_eof(self) -> None:
        raise NotImplementedError("TLS: close_notify is sent by close()")

    def close(self) -> None:
        if not self._raw.is_closing():
            self._engine.close()
            self._raw.write(self._engine.outgoing())
            self._raw.close()

    async def wait_closed(self) -> None:
        await self._raw.wait_closed()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return _NotStdlibSSL()
        return self._raw.get_extra_info(name, default)


async def _deferred_handshake(server: TCPServer, context: Any, timeout: float) -> dict[str, Any] | None:
    """Run the handshake on ``server``'s streams; swap in TLS streams and return the TLS extension,
    or log the failure (with its reason) and return None."""
    from .tls import DeferredEngine, TLSHandshakeError
    from .uvicorn_tls import deferred_extension

    reader, writer = server.reader, server.writer
    name = writer.get_extra_info("peername")
    peer = f"{name[0]}:{name[1]}" if isinstance(name, tuple | list) and len(name) >= 2 else ""
    engine = DeferredEngine(context)
    try:
        async with asyncio.timeout(timeout):
            while not engine.handshake():
                writer.write(engine.outgoing())
                await writer.drain()
                engine.feed(await reader.read(65536))
    except (TLSHandshakeError, TimeoutError, OSError) as exc:
        code, detail = (exc.code, exc.detail) if isinstance(exc, TLSHandshakeError) else (
            "tls_protocol_error", f"no TLS handshake within {timeout:g} s" if isinstance(exc, TimeoutError)
            else str(exc))
        # lb_error: the load balancer's name for the reason (docs/gateway.md "Error names").
        _log.warning(json.dumps({"event": "tls_handshake_failed", "peer": peer, "reason": code,
                                 "lb_error": lb_error_name(code) or None, "detail": detail}))
        with contextlib.suppress(OSError, RuntimeError):
            writer.write(engine.outgoing())  # the alert, so the client learns why
            writer.close()
        return None
    writer.write(engine.outgoing())
    facts = engine.facts(("", 0))
    server.reader = _TLSReader(reader, writer, engine)  # type: ignore[assignment]
    server.writer = _TLSWriter(writer, engine)  # type: ignore[assignment]
    return deferred_extension(facts.chain, facts.version)
