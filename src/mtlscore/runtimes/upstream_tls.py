"""Outbound TLS (and mTLS) to an ``https://`` upstream, for both runtimes.

The runtime opens the TCP connection; :class:`TLSClientStream` runs stdlib ``ssl``
over memory BIOs on top of it, so asyncio and trio share one implementation and
the driver sees the same :class:`~mtlscore.runtimes.driver.Stream` either way.
The context (:func:`upstream_context`) verifies the upstream's chain against
``upstream_ca`` (or the system store), checks its name against the upstream
host (RFC 9110 §4.3.4; RFC 6125), sends that host as SNI when it is a name
(RFC 6066 §3: never an IP address literal), and presents
``upstream_certificate`` / ``upstream_key`` when the upstream asks for one.
"""

from __future__ import annotations

import ssl
from typing import Protocol

from ..gateway.settings import ServerConfig
from ..reasons import ConfigError

__all__ = ["TLSClientStream", "upstream_context"]

_READ = 65536


class _Stream(Protocol):
    async def recv(self, max_bytes: int, timeout: float) -> bytes | None: ...

    async def send(self, data: bytes, timeout: float) -> None: ...

    async def aclose(self) -> None: ...

    async def stale(self) -> bool: ...


def upstream_context(server: ServerConfig) -> ssl.SSLContext | None:
    """The client context for ``server.upstream`` when it is ``https://``, else None.

    Raises :class:`ConfigError` naming the key and the file when a CA bundle,
    certificate or key cannot be read or does not fit.
    """
    upstream = server.upstream
    if upstream is None or not upstream.tls:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname on
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if server.upstream_ca is not None:
        path = server.upstream_ca
        try:
            ctx.load_verify_locations(cafile=str(path))
        except FileNotFoundError:
            raise ConfigError(f"cannot read {path}", key="server.upstream_ca") from None
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not a PEM CA bundle ({_why(exc)})", key="server.upstream_ca") from None
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if server.upstream_certificate is not None and server.upstream_key is not None:
        cert, key = server.upstream_certificate, server.upstream_key
        for name, path in (("upstream_certificate", cert), ("upstream_key", key)):
            if not path.is_file():
                raise ConfigError(f"cannot read {path}", key=f"server.{name}")
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc).upper().replace(" ", "_"):
                raise ConfigError(
                    f"{key} is not the key of server.upstream_certificate ({cert})", key="server.upstream_key"
                ) from None
            raise ConfigError(
                f"cannot load {cert} with {key} as a PEM certificate chain and key ({_why(exc)})",
                key="server.upstream_certificate",
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read {cert} / {key}: {_why(exc)}", key="server.upstream_certificate") from None
    return ctx


def _why(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or str(exc)
    return str(text).splitlines()[0] if text else type(exc).__name__


class TLSClientStream:
    """TLS over a connected stream (stdlib ``ssl`` on memory BIOs), itself a stream.

    ``ssl.SSLError`` is an ``OSError``: a failed handshake or a broken record is
    "the upstream is unavailable" to the driver, a slow one a ``TimeoutError``.
    """

    def __init__(self, inner: _Stream, ctx: ssl.SSLContext, server_hostname: str) -> None:
        self._inner = inner
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        # server_hostname: SNI (Python omits it for an IP literal) and the name checked.
        self._obj = ctx.wrap_bio(self._in, self._out, server_side=False, server_hostname=server_hostname)
        self._eof = False

    async def _flush(self, timeout: float) -> None:
        data = self._out.read()
        if data:
            await self._inner.send(data, timeout)

    async def _fill(self, timeout: float) -> bool:
        """More bytes from the peer into the BIO: False when ``timeout`` passed first."""
        raw = await self._inner.recv(_READ, timeout)
        if raw is None:
            return False
        if raw:
            self._in.write(raw)
        else:
            self._eof = True
            self._in.write_eof()
        return True

    async def handshake(self, timeout: float, clock: _Clock) -> None:
        """Complete the TLS handshake within ``timeout`` seconds; raises TimeoutError / OSError."""
        deadline = clock() + timeout
        while True:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                left = deadline - clock()
                await self._flush(max(left, 0.001))
                # At EOF the next do_handshake raises SSLEOFError (an OSError).
                if left <= 0 or not await self._fill(left):
                    raise TimeoutError("TLS handshake with the upstream timed out") from None
                continue
            await self._flush(max(deadline - clock(), 0.001))
            return

    async def recv(self, max_bytes: int, timeout: float) -> bytes | None:
        while True:
            try:
                return self._obj.read(max_bytes)
            except ssl.SSLWantReadError:
                if self._eof:
                    return b""
                if not await self._fill(timeout):
                    return None
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def send(self, data: bytes, timeout: float) -> None:
        self._obj.write(data)
        await self._flush(timeout)

    async def stale(self) -> bool:
        # Decrypted bytes not read, records not decrypted, or anything on the wire: a
        # close_notify or data the next request would take for its response.
        return self._eof or self._obj.pending() > 0 or self._in.pending > 0 or await self._inner.stale()

    async def aclose(self) -> None:
        try:
            self._obj.unwrap()
            await self._flush(1.0)
        except (ssl.SSLError, OSError):
            pass
        await self._inner.aclose()


class _Clock(Protocol):
    def __call__(self) -> float: ...
