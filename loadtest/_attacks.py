"""The attacks of issue 15 as asyncio clients, one coroutine per attacking connection.

Each returns how its connection ended: ``"refused"`` (closed before or during
the handshake), ``"closed"`` (the gateway ended it, ``"closed:408"`` when it
answered first) or ``"open"`` (still open when the attacker's own time ran
out: the attack held its slot). ``probe`` is a normal client. Used by
``loadtest/attacks.py`` (the scenarios, with figures) and by
``tests/integration/test_attacks.py`` (the quick versions, outcomes only).
Loopback only; every loop is bounded by ``duration``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

HOST = "127.0.0.1"
_ERRORS = (OSError, ssl.SSLError, asyncio.IncompleteReadError, EOFError)


def _lines(headers: bytes) -> bytes:
    return b"".join(line.strip() + b"\r\n" for line in headers.splitlines() if line.strip())


async def _open(
    port: int, ctx: ssl.SSLContext | None, *, source: str = HOST, rcvbuf: int | None = None, timeout: float = 10.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP (``ctx`` None) or TLS connection from ``source`` (a 127/8 address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:  # before connect, so the window stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (HOST, port)), timeout)
        kw = {"ssl": ctx, "server_hostname": "localhost", "ssl_handshake_timeout": timeout} if ctx else {}
        if rcvbuf is not None:
            kw["limit"] = 1024  # the stream's own buffer small too: stop reading the socket soon
        return await asyncio.open_connection(sock=sock, **kw)  # type: ignore[arg-type]
    except BaseException:
        sock.close()
        raise


async def _ended(reader: asyncio.StreamReader, duration: float) -> str:
    """Wait up to ``duration`` for the gateway to end the connection; read what it says."""
    first = b""
    deadline = time.monotonic() + duration
    try:
        while (left := deadline - time.monotonic()) > 0:
            data = await asyncio.wait_for(reader.read(65536), left)
            if not data:
                break
            first = first or data
        else:
            return "open"
    except TimeoutError:
        return "open"
    except _ERRORS:
        pass
    return f"closed:{first[9:12].decode()}" if first.startswith(b"HTTP/1.1 ") else "closed"


async def _trickle(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, data: bytes,
                   interval: float, duration: float) -> str:
    """Send ``data`` one byte every ``interval`` s, watching for the gateway to end it."""
    deadline = time.monotonic() + duration
    i = 0
    read = asyncio.ensure_future(_ended(reader, duration))
    try:
        while time.monotonic() < deadline:
            try:
                writer.write(data[i % len(data):i % len(data) + 1])
                await writer.drain()
            except _ERRORS:
                return await read
            i += 1
            done, _ = await asyncio.wait({read}, timeout=interval)
            if done:
                return read.result()
        return "open"
    finally:
        read.cancel()
        writer.transport.abort()


async def slowloris(port: int, ctx: ssl.SSLContext | None, *, source: str = HOST, interval: float = 1.0,
                    duration: float = 30.0) -> str:
    """A request head sent one byte at a time, never finished."""
    try:
        reader, writer = await _open(port, ctx, source=source)
    except _ERRORS:
        return "refused"
    writer.write(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n")
    return await _trickle(writer, reader, b"X-Slow: a\r\n", interval, duration)


async def slow_body(port: int, ctx: ssl.SSLContext, *, source: str = HOST, interval: float = 1.0,
                    duration: float = 30.0, headers: bytes = b"") -> str:
    """A complete head announcing a large body, then the body one byte at a time.

    ``headers``: extra head lines (a credential, so that the body is reached where the
    gateway requires one)."""
    try:
        reader, writer = await _open(port, ctx, source=source)
    except _ERRORS:
        return "refused"
    writer.write(b"POST /ok HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: 1000000\r\n\r\n" % _lines(headers))
    return await _trickle(writer, reader, b"x", interval, duration)


async def non_reader(port: int, ctx: ssl.SSLContext, *, source: str = HOST, size: int = 50_000_000,
                     duration: float = 30.0, headers: bytes = b"") -> str:
    """Ask for a big answer and never read it; after ``duration``, see whether the gateway cut it."""
    try:
        reader, writer = await _open(port, ctx, source=source, rcvbuf=4096)
    except _ERRORS:
        return "refused"
    try:
        writer.write(b"GET /big?%d HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (size, _lines(headers)))
        await writer.drain()
        await asyncio.sleep(duration)  # the attack: not reading
        # Now read: a connection the gateway reset ends within what the buffers held;
        # one it kept open goes on delivering the answer.
        got = 0
        while got < size:
            data = await asyncio.wait_for(reader.read(65536), 5.0)
            if not data:
                return "closed"
            got += len(data)
            if got > 8_000_000:  # far past any socket buffer: the answer is still flowing
                return "open"
        return "open"
    except TimeoutError:
        return "open"
    except _ERRORS:
        return "closed"
    finally:
        writer.transport.abort()


async def idle(port: int, ctx: ssl.SSLContext | None, *, source: str = HOST, duration: float = 30.0) -> str:
    """Connect (TCP only with ``ctx`` None; else a TLS handshake, e.g. anonymous) and send nothing."""
    try:
        reader, writer = await _open(port, ctx, source=source)
    except _ERRORS:
        return "refused"
    try:
        outcome = await _ended(reader, duration)
        return outcome
    finally:
        writer.transport.abort()


async def busy(port: int, ctx: ssl.SSLContext, *, source: str = HOST, target: bytes = b"/hang",
               headers: bytes = b"", duration: float = 30.0) -> str:
    """A request the upstream does not answer (``/hang``): the connection is busy, not waiting."""
    try:
        reader, writer = await _open(port, ctx, source=source)
    except _ERRORS:
        return "refused"
    try:
        writer.write(b"GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (target, _lines(headers)))
        return await _ended(reader, duration)
    finally:
        writer.transport.abort()


async def probe(
    port: int, ctx: ssl.SSLContext | None, *, source: str = HOST, timeout: float = 30.0, headers: bytes = b"",
    target: bytes = b"/ok",
) -> float | None:
    """A normal client's request (new connection, handshake, GET /ok): its latency, None on failure."""
    start = time.monotonic()
    try:
        reader, writer = await _open(port, ctx, source=source, timeout=timeout)
    except _ERRORS:
        return None
    try:
        writer.write(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s\r\n" % (target, _lines(headers)))
        answer = await asyncio.wait_for(reader.read(), timeout)
    except (*_ERRORS, TimeoutError):
        return None
    finally:
        writer.transport.abort()
    return time.monotonic() - start if answer.startswith(b"HTTP/1.1 200") else None
