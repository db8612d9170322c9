"""The load generator's clients: one coroutine per behaviour, each bounded in time."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import h11

# Every client gives up after this long, whatever the gateway does.
CLIENT_CAP = 60.0


@dataclass
class Result:
    """What one client connection saw."""

    kind: str
    index: int
    local_port: int = 0
    statuses: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    handshake: float | None = None
    connect: float | None = None  # TCP connect alone (a full accept queue shows here)
    tls_error: str | None = None
    error: str | None = None
    closed_after: float | None = None  # stall/idle clients: when the gateway hung up
    expect_reason: str | None = None


async def _read_response(reader: asyncio.StreamReader, conn: h11.Connection) -> tuple[int, dict[str, Any]]:
    status = 0
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        doc = {"raw": body[:200].decode("latin-1")}
    return status, doc if isinstance(doc, dict) else {"raw": doc}


def _request(conn: h11.Connection, target: str, spoof: bool = True) -> bytes:
    headers = [("Host", "localhost")]
    if spoof:
        # The gateway must strip a client's own identity headers before adding its own.
        headers += [("X-Mtls-Account", "attacker"), ("X-Client-Cert-Present", "spoofed")]
    return conn.send(h11.Request(method="GET", target=target, headers=headers)) + conn.send(h11.EndOfMessage())


async def _open_tls(
    host: str, port: int, ctx: ssl.SSLContext, r: Result
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ctx, server_hostname="localhost", ssl_handshake_timeout=CLIENT_CAP
    )
    r.handshake = time.monotonic() - start
    r.local_port = writer.get_extra_info("sockname")[1]
    return reader, writer


async def requests(host: str, port: int, ctx: ssl.SSLContext, r: Result, targets: list[str]) -> None:
    """TLS with a client certificate, then ``targets`` requested on one keep-alive connection."""
    start = time.monotonic()
    writer = None
    try:
        reader, writer = await _open_tls(host, port, ctx, r)
        conn = h11.Connection(h11.CLIENT)
        for target in targets:
            writer.write(_request(conn, target))
            await writer.drain()
            status, body = await _read_response(reader, conn)
            r.statuses.append(status)
            r.bodies.append(body)
            r.latencies.append(time.monotonic() - start)
            start = time.monotonic()
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                break
            conn.start_next_cycle()
    except ssl.SSLError as exc:
        r.tls_error = exc.reason or str(exc)
    except (OSError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
        r.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.transport.abort()


def client_hello(ctx: ssl.SSLContext) -> bytes:
    """The bytes of a real ClientHello (from a memory BIO handshake that goes no further)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


async def _wait_closed(reader: asyncio.StreamReader, r: Result, start: float) -> None:
    try:
        while await asyncio.wait_for(reader.read(65536), CLIENT_CAP):
            pass
    except (TimeoutError, OSError, ssl.SSLError):
        pass
    r.closed_after = time.monotonic() - start


async def stall_handshake(host: str, port: int, hello: bytes, r: Result) -> None:
    """Open TCP, send part (or none) of a ClientHello, then stall until the gateway hangs up."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    r.connect = time.monotonic() - start
    r.local_port = writer.get_extra_info("sockname")[1]
    try:
        if hello:
            writer.write(hello)
            await writer.drain()
        await _wait_closed(reader, r, start)
    finally:
        writer.transport.abort()


async def idle_after_handshake(host: str, port: int, ctx: ssl.SSLContext, r: Result) -> None:
    """Complete the handshake, then send nothing: the gateway's idle timeout must close it."""
    start = time.monotonic()
    writer = None
    try:
        reader, writer = await _open_tls(host, port, ctx, r)
        await _wait_closed(reader, r, start)
    except (OSError, ssl.SSLError) as exc:
        r.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.transport.abort()


async def disconnect(host: str, port: int, ctx: ssl.SSLContext, r: Result, *, mid_upstream: bool) -> None:
    """Send part of a request head (or a whole request to /slow) and vanish without reading."""
    writer = None
    try:
        _reader, writer = await _open_tls(host, port, ctx, r)
        if mid_upstream:
            writer.write(_request(h11.Connection(h11.CLIENT), "/slow"))
        else:
            writer.write(b"GET /ok HTTP/1.1\r\nHost: localhost\r\nX-Half-A-He")
        await writer.drain()
        await asyncio.sleep(0.05 if not mid_upstream else 0.2)
    except (OSError, ssl.SSLError) as exc:
        r.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.transport.abort()
