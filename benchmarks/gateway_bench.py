"""End to end: full mTLS handshakes + one request per connection, gateway vs a bare stdlib-ssl + h11 server.

Both servers use the same ``ssl.SSLContext`` settings (``mtlscore.runtimes.tls.server_context``),
run on loopback in background threads (one event loop each), and are driven by
one client in the main thread that connects, handshakes with a client
certificate, sends ``GET /`` and reads the answer, one connection at a time.
Servers are interleaved per repeat, so each ratio compares like with like.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import h11

from mtlscore import TrustStore, pki

_BODY = b'{"ok":true}'


def _files(d: pathlib.Path, runtime: str) -> pathlib.Path:
    now = datetime.now(UTC)  # the gateway validates at the real time
    root = pki.root("CN=Bench Client Root", now=now)
    issuing = root.intermediate("CN=Bench Client Issuing CA")
    client = issuing.leaf("CN=bench-client,O=Bench", san_dns=["bench-client.example"])
    server_ca = pki.root("CN=Bench Server CA", now=now)
    server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"], san_ip=["127.0.0.1"])
    (d / "root.pem").write_bytes(root.pem)
    (d / "server-ca.pem").write_bytes(server_ca.pem)
    (d / "server.pem").write_bytes(server.pem)
    (d / "server.key").write_bytes(server.key_pem)
    (d / "client.pem").write_bytes(client.chain_pem)
    (d / "client.key").write_bytes(client.key_pem)
    config = d / f"gateway-{runtime}.toml"
    config.write_text(
        f"""[trust]
anchors = ["root.pem"]

[revocation]
mode = "off"

[server]
listen = "127.0.0.1:0"
certificate = "server.pem"
key = "server.key"
runtime = "{runtime}"
mode = "reject_invalid"
reload_poll_seconds = 0
"""
    )
    return config


class _Started:
    def __init__(self, cb: Callable[[Any], None]) -> None:
        self.cb = cb

    def started(self, value: Any = None) -> None:
        self.cb(value)


def _respond(conn: h11.Connection) -> bytes:
    return conn.send(h11.Response(status_code=200, headers=[("Content-Type", "application/json"),
                                                              ("Content-Length", str(len(_BODY))),
                                                              ("Connection", "close")])) + \
        (conn.send(h11.Data(data=_BODY)) or b"") + (conn.send(h11.EndOfMessage()) or b"")


class Server:
    """A server running in its own thread; ``port`` once started; ``stop()`` ends it."""

    def __init__(self, name: str, start: Callable[[Callable[[int], None], threading.Event], None]) -> None:
        self.name = name
        self.port = 0
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                start(self._started, self._stop)
            except BaseException as exc:  # noqa: BLE001 - reported by the suite, not raised in a thread
                self.error = exc
                self._ready.set()

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()
        if not self._ready.wait(20):
            raise RuntimeError(f"{name} did not start")
        if self.error is not None:
            raise RuntimeError(f"{name} failed: {self.error!r}")

    def _started(self, port: int) -> None:
        self.port = port
        self._ready.set()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


def _asyncio_bare(ctx: ssl.SSLContext) -> Callable[[Callable[[int], None], threading.Event], None]:
    def start(started: Callable[[int], None], stop: threading.Event) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = h11.Connection(h11.SERVER)
            try:
                while True:
                    ev = conn.next_event()
                    if ev is h11.NEED_DATA:
                        conn.receive_data(await reader.read(65536))
                        continue
                    if isinstance(ev, h11.EndOfMessage | h11.ConnectionClosed):
                        break
                writer.write(_respond(conn))
                await writer.drain()
            except (OSError, h11.ProtocolError, ssl.SSLError):
                pass
            finally:
                writer.close()

        async def main() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
            started(server.sockets[0].getsockname()[1])
            while not stop.is_set():
                await asyncio.sleep(0.05)
            server.close()

        asyncio.run(main())

    return start


def _trio_bare(ctx: ssl.SSLContext) -> Callable[[Callable[[int], None], threading.Event], None]:
    import trio

    def start(started: Callable[[int], None], stop: threading.Event) -> None:
        async def handle(stream: Any) -> None:
            conn = h11.Connection(h11.SERVER)
            try:
                while True:
                    ev = conn.next_event()
                    if ev is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                        continue
                    if isinstance(ev, h11.EndOfMessage | h11.ConnectionClosed):
                        break
                await stream.send_all(_respond(conn))
            except (OSError, h11.ProtocolError, trio.BrokenResourceError, ssl.SSLError):
                pass
            finally:
                await stream.aclose()

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(trio.serve_ssl_over_tcp, handle, 0, ctx)
                started(listeners[0].transport_listener.socket.getsockname()[1])
                while not stop.is_set():
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()

        trio.run(main)

    return start


def _gateway(config: pathlib.Path, runtime: str) -> Callable[[Callable[[int], None], threading.Event], None]:
    from mtlscore.runtimes.state import GatewayState

    def start(started: Callable[[int], None], stop: threading.Event) -> None:
        state = GatewayState.from_config_file(config)
        if runtime == "asyncio":
            from mtlscore.runtimes import asyncio as rt

            async def main() -> None:
                loop = asyncio.get_running_loop()
                fut: asyncio.Future[Any] = loop.create_future()
                task = asyncio.create_task(rt.serve(state, task_status=_Started(fut.set_result), handle_signals=False))
                info = await asyncio.wait_for(fut, 10)
                started(info.address.port)
                while not stop.is_set():
                    await asyncio.sleep(0.05)
                info.shutdown()
                task.cancel()

            # On the loop `mtlscore serve` would run it on ([server] event_loop; auto: uvloop if installed).
            rt.run(main, rt.event_loop(state.snapshot.gateway.server.event_loop)[1])
        else:
            import trio

            from mtlscore.runtimes import trio as trt

            async def tmain() -> None:
                async with trio.open_nursery() as nursery:
                    info = await nursery.start(lambda task_status: trt.serve(state, task_status=task_status,
                                                                               handle_signals=False))
                    started(info.address.port)
                    while not stop.is_set():
                        await trio.sleep(0.05)
                    nursery.cancel_scope.cancel()

            trio.run(tmain)

    return start


def _client_context(d: pathlib.Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(d / "server-ca.pem"))
    ctx.load_cert_chain(str(d / "client.pem"), str(d / "client.key"))
    return ctx


def one_request(port: int, ctx: ssl.SSLContext) -> int:
    """Handshake, GET /, read the whole answer; the HTTP status."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # Without it Nagle holds the client's second handshake flight for the peer's delayed ACK (~40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _exchange(ctx.wrap_socket(sock, server_hostname="localhost"))


def _exchange(tls: ssl.SSLSocket) -> int:
    with tls:
        conn = h11.Connection(h11.CLIENT)
        tls.sendall(conn.send(h11.Request(method="GET", target="/", headers=[("Host", "localhost"),
                                                                            ("Connection", "close")])))
        tls.sendall(conn.send(h11.EndOfMessage()))
        status = 0
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                try:
                    conn.receive_data(tls.recv(65536))
                except (ssl.SSLError, OSError):
                    conn.receive_data(b"")
                continue
            if isinstance(ev, h11.Response):
                status = ev.status_code
            if isinstance(ev, h11.EndOfMessage | h11.ConnectionClosed):
                return status


def gateway_results(quick: bool, repeats: int) -> list[Any]:
    """The gateway-asyncio and gateway-trio results (or why they are not available)."""
    from run import Result, interleaved  # the suite's own helpers

    from mtlscore.runtimes.tls import server_context

    out: list[Any] = []
    tmp = tempfile.TemporaryDirectory(prefix="mtlscore-bench-")
    d = pathlib.Path(tmp.name)
    servers: list[Server] = []
    try:
        # One PKI for both runtimes: the trio config reuses the files.
        asyncio_cfg = _files(d, "asyncio")
        trio_cfg = d / "gateway-trio.toml"
        trio_cfg.write_text(asyncio_cfg.read_text().replace('runtime = "asyncio"', 'runtime = "trio"'))
        configs = {"asyncio": asyncio_cfg, "trio": trio_cfg}
        trust = TrustStore([(d / "root.pem").read_bytes()])
        ctx = server_context(trust, certificate=d / "server.pem", key=d / "server.key")
        client = _client_context(d)
        n = 200 if quick else 600
        for rt, bare in (("asyncio", _asyncio_bare), ("trio", _trio_bare)):
            res_name = f"gateway-{rt}"
            try:
                gw = Server(f"mtlscore-{rt}", _gateway(configs[rt], rt))
                servers.append(gw)
                br = Server(f"bare-{rt}", bare(ctx))
                servers.append(br)
                for s in (gw, br):
                    status = one_request(s.port, client)
                    if status != 200:
                        raise RuntimeError(f"{s.name} answered {status}")
            except Exception as exc:  # noqa: BLE001 - a missing or broken runtime is reported, not fatal
                r = Result(res_name, "mtlscore")
                r.unavailable = f"{type(exc).__name__}: {exc}"
                out.append(r)
                continue
            ports = {"mtlscore": gw.port, "bare": br.port}
            impls = {k: (lambda p: (lambda _i: one_request(p, client)))(v) for k, v in ports.items()}
            r = interleaved(res_name, impls, lambda _i, _r: [None] * n, repeats)
            med = r.ratio("bare")[0]
            r.notes.append(f"{1e6 / r.median('mtlscore'):,.0f} conn/s through the gateway vs "
                           f"{1e6 / r.median('bare'):,.0f} bare; gateway rate = {med:.2f}× bare "
                           "(handshake + 1 request per connection, client in the same process)")
            out.append(r)
    finally:
        for s in servers:
            s.stop()
        tmp.cleanup()
    return out
