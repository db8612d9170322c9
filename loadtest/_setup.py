"""The load test's PKI, configuration file, upstream and hanging revocation server."""

from __future__ import annotations

import asyncio
import json
import pathlib
import socket
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import h11

from mtlscore import pki

ACCOUNT = "load-client"
GOOD_CERTS = 8
# Bad certificate kinds and the reason the gateway must give for each.
BAD_KINDS: dict[str, str] = {
    "expired": "expired",
    "unknown-ca": "untrusted",
    "wrong-eku": "invalid_eku",
    "revoked": "revoked",
    "self-signed": "untrusted",
}


@dataclass
class Files:
    """Paths of everything written for one run."""

    dir: pathlib.Path
    config: pathlib.Path
    server_ca: pathlib.Path
    good: list[tuple[pathlib.Path, pathlib.Path]]
    bad: dict[str, tuple[pathlib.Path, pathlib.Path]]


def write_files(
    d: pathlib.Path,
    now: datetime,
    *,
    upstream_port: int,
    hang_port: int,
    tls_engine: str,
    timeouts: dict[str, float],
    max_connections: int,
    fetch: bool = True,
) -> Files:
    """The PKI (real time ``now``: the gateway validates at wall time) and ``mtlscore.toml``."""
    hang = f"http://127.0.0.1:{hang_port}"
    root = pki.root("CN=Load Root CA,O=LoadCo", now=now)
    issuing = root.intermediate("CN=Load Issuing CA,O=LoadCo", crl_urls=[f"{hang}/root.crl"])
    revocation_urls = {"crl_urls": [f"{hang}/issuing.crl"], "ocsp_urls": [f"{hang}/ocsp"]}

    def write(name: str, issued: pki.Issued) -> tuple[pathlib.Path, pathlib.Path]:
        cert, key = d / f"{name}.pem", d / f"{name}.key"
        cert.write_bytes(issued.chain_pem)
        key.write_bytes(issued.key_pem)
        return cert, key

    good = [write(f"good-{i}", issuing.leaf(f"CN=client-{i},O=LoadCo", **revocation_urls)) for i in range(GOOD_CERTS)]
    revoked = issuing.leaf("CN=revoked,O=LoadCo", **revocation_urls)
    bad = {
        "expired": write(
            "expired",
            issuing.leaf(
                "CN=expired,O=LoadCo", not_before=now - timedelta(days=400), not_after=now - timedelta(days=1)
            ),
        ),
        "unknown-ca": write("unknown-ca", pki.root("CN=Other Root", now=now).leaf("CN=stranger,O=LoadCo")),
        "wrong-eku": write("wrong-eku", issuing.leaf("CN=server-ish,O=LoadCo", eku=[pki.SERVER_AUTH])),
        "revoked": write("revoked", revoked),
        "self-signed": write("self-signed", pki.root("CN=self,O=LoadCo", ca=False, eku=[pki.CLIENT_AUTH], now=now)),
    }
    server_ca = pki.root("CN=Load Server CA", now=now)
    server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"], san_ip=["127.0.0.1"])
    (d / "root.pem").write_bytes(root.pem)
    (d / "issuing.crl").write_bytes(issuing.crl(revoked=[revoked]))
    (d / "server-ca.pem").write_bytes(server_ca.pem)
    (d / "server.pem").write_bytes(server.pem)
    (d / "server.key").write_bytes(server.key_pem)
    (d / "server.key").chmod(0o600)  # a private key: the gateway warns otherwise
    config = d / "mtlscore.toml"
    config.write_text(
        f"""# Written by loadtest/run.py.
[trust]
anchors = ["root.pem"]

[revocation]
mode = "soft"
crls = ["issuing.crl"]
# The certificates name a CRL/OCSP server that accepts and never answers.
fetch = {"true" if fetch else "false"}

[[accounts]]
id = "{ACCOUNT}"
anchors = ["root.pem"]
match = {{ o = "LoadCo" }}

[server]
listen = "127.0.0.1:0"
certificate = "server.pem"
key = "server.key"
runtime = "asyncio"
mode = "reject_invalid"
tls_engine = "{tls_engine}"
upstream = "http://127.0.0.1:{upstream_port}"
handshake_timeout_seconds = {timeouts["handshake"]}
header_timeout_seconds = {timeouts["header"]}
body_timeout_seconds = {timeouts["header"]}
upstream_connect_timeout_seconds = 1
upstream_timeout_seconds = {timeouts["upstream"]}
shutdown_grace_seconds = 1
max_connections = {max_connections}
reload_poll_seconds = 0
"""
    )
    return Files(d, config, d / "server-ca.pem", good, bad)


def client_context(files: Files, cert: tuple[pathlib.Path, pathlib.Path] | None) -> ssl.SSLContext:
    """A client TLS context trusting the gateway's CA, presenting ``cert`` (chain, key)."""
    ctx = ssl.create_default_context(cafile=str(files.server_ca))
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


# -- peers: the upstream and the hanging revocation server ---------------------------------


@dataclass
class Upstream:
    """A plain-HTTP upstream: ``/ok`` answers at once, ``/slow`` after a delay, ``/hang`` never,
    ``/big?N`` with N bytes (counting in ``broken`` the answers the gateway cut short).

    Records the account header each request carried (the gateway must set it and
    strip the client's own copy).
    """

    slow_delay: float = 0.5
    requests: int = 0
    accounts: dict[str, int] = field(default_factory=dict)
    broken: int = 0
    server: asyncio.Server | None = None
    port: int = 0
    _conns: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self, port: int | socket.socket = 0) -> int:
        """Listen on 127.0.0.1:``port``, or on ``port`` a socket bound before (held since, so no
        other socket took its port meanwhile)."""
        # A large backlog: the gateway may open hundreds of upstream connections at once.
        if isinstance(port, socket.socket):
            self.server = await asyncio.start_server(self._handle, sock=port, backlog=4096)
        else:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", port, reuse_address=True,
                                                     backlog=4096)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and cut every open connection (the upstream goes down)."""
        if self.server is not None:
            self.server.close()
            for w in list(self._conns):
                w.transport.abort()
            await self.server.wait_closed()
            self.server = None

    async def _big(self, writer: asyncio.StreamWriter, size: int) -> None:
        """A ``size``-byte answer sent as fast as the gateway takes it."""
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
        chunk = b"x" * 65536
        try:
            while size > 0:
                writer.write(chunk[:size])
                size -= min(size, len(chunk))
                await writer.drain()
        except OSError:
            self.broken += 1  # the gateway closed its upstream connection mid-answer

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request) and event.target == b"/__stats":
                    stats = {"requests": self.requests, "accounts": self.accounts, "broken": self.broken}
                    body = json.dumps(stats).encode()
                    writer.write(
                        conn.send(
                            h11.Response(
                                status_code=200, headers=[("content-length", str(len(body))), ("connection", "close")]
                            )
                        )
                    )
                    writer.write(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    return
                if isinstance(event, h11.Request):
                    self.requests += 1
                    account = dict(event.headers).get(b"x-mtls-account", b"").decode()
                    self.accounts[account] = self.accounts.get(account, 0) + 1
                    target = event.target
                    continue
                if isinstance(event, h11.EndOfMessage):
                    if target.startswith(b"/hang"):
                        await asyncio.sleep(3600)
                    if target.startswith(b"/slow"):
                        await asyncio.sleep(self.slow_delay)
                    if target.startswith(b"/big?"):
                        await self._big(writer, int(target.split(b"?", 1)[1]))
                        return
                    body = json.dumps({"upstream": "ok", "account": account}).encode()
                    writer.write(
                        conn.send(
                            h11.Response(
                                status_code=200,
                                headers=[("content-type", "application/json"), ("content-length", str(len(body)))],
                            )
                        )
                    )
                    writer.write(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    conn.start_next_cycle()
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    return
        except (h11.ProtocolError, OSError, asyncio.CancelledError):
            return
        finally:
            self._conns.discard(writer)
            writer.close()


@dataclass
class HangingServer:
    """Accepts connections and never answers (a CRL/OCSP responder that hangs)."""

    connections: int = 0
    server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        await reader.read()  # until the client gives up

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for w in self._writers:
                w.transport.abort()


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of ``values``, or None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def as_ms(value: float | None) -> Any:
    return None if value is None else round(value * 1000, 1)


async def _serve_upstream(port: int) -> None:
    up = Upstream()
    await up.start(port)
    print(up.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    # ``python -m loadtest._setup PORT``: the upstream alone, in its own process, so that
    # the load generator's CPU use does not slow it down. Prints its port.
    import sys

    asyncio.run(_serve_upstream(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
