"""Upstream connection pooling (``upstream_keepalive``), both runtimes from one test body.

The upstream is a threaded http.server on 127.0.0.1 that numbers its TCP
connections and says which one served each request, so a test sees reuse (and
its absence) from the upstream's side. Waits are polls with deadlines.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from test_gateway import Env, call, gateway, request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return Env(tmp_path_factory.mktemp("pool"))


class Upstream:
    """Numbers its connections; ``/close`` answers with Connection: close (and leaves the
    closing to the gateway, as ``/garbage`` does after its bytes that are not HTTP), ``/drop`` answers
    keep-alive and then closes the connection itself (as an upstream's own idle timeout
    would), ``/big`` sends 4 MiB,
    ``/hold`` waits until ``holding`` requests are in at once."""

    def __init__(self, holding: int = 1) -> None:
        self.lock = threading.Lock()
        self.opened = 0
        self.closed: set[int] = set()
        self.served: list[tuple[int, str]] = []
        self.barrier = threading.Barrier(holding, timeout=20)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with outer.lock:
                    outer.opened += 1
                    self.number = outer.opened

            def finish(self) -> None:
                with outer.lock:
                    outer.closed.add(self.number)
                super().finish()

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with outer.lock:
                    outer.served.append((self.number, self.path))
                if self.path == "/garbage":
                    self.wfile.write(b"\x00\x01 not http\r\n\r\n")
                    return  # and keeps the connection open: the gateway must close it
                if self.path == "/hold":
                    outer.barrier.wait()
                body = b"x" * (4 << 20) if self.path == "/big" else json.dumps({"conn": self.number}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                if self.path == "/close":
                    self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    self.close_connection = True
                    return
                if self.path == "/drop":
                    self.wfile.flush()
                    self.close_connection = True
                elif self.path == "/close":
                    self.close_connection = False  # says close, keeps it open: the gateway must close it

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def conns(self, path: str) -> list[int]:
        with self.lock:
            return [n for n, p in self.served if p == path]

    def wait_closed(self, number: int, deadline: float = 10.0) -> bool:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with self.lock:
                if number in self.closed:
                    return True
            time.sleep(0.02)  # poll interval, bounded by the deadline
        return False

    def open_count(self) -> int:
        with self.lock:
            return self.opened - len(self.closed)

    def close(self) -> None:
        self.barrier.abort()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    u = Upstream()
    yield u
    u.close()


def config(env: Env, port: int, **server: Any) -> Any:
    return env.config(upstream=f"http://127.0.0.1:{port}", **server)


def get(env: Env, port: int, path: str) -> int:
    status, _, _ = request(env, port, "good", path, headers={"X-API-Key": "demo-api-key-123"})
    return status


@pytest.mark.anyio
async def test_two_client_connections_share_one_upstream_connection(
    env: Env, upstream: Upstream, anyio_backend: str
) -> None:
    async with gateway(config(env, upstream.port), anyio_backend) as info:
        for path in ("/a", "/b"):  # two client connections, one after the other
            assert await call(get, env, info.address.port, path) == 200
    assert upstream.conns("/a") == upstream.conns("/b")  # one TCP connection upstream
    assert upstream.opened == 1


@pytest.mark.anyio
async def test_upstream_keepalive_zero_opens_a_connection_per_request(
    env: Env, upstream: Upstream, anyio_backend: str
) -> None:
    async with gateway(config(env, upstream.port, upstream_keepalive=0), anyio_backend) as info:
        for path in ("/a", "/b"):
            assert await call(get, env, info.address.port, path) == 200
        assert upstream.wait_closed(upstream.conns("/b")[0])
    assert upstream.conns("/a") != upstream.conns("/b")


@pytest.mark.parametrize("first", ["/close", "/drop", "/garbage", "/big"])
@pytest.mark.anyio
async def test_no_reuse_of_a_connection_that_is_not_clean(
    env: Env, upstream: Upstream, anyio_backend: str, first: str
) -> None:
    """Connection: close, an upstream that closed the idle connection itself, an upstream
    error, and a response body the client never read: the next request gets a new one."""
    # A long idle timeout: only the decision not to reuse closes the connection here.
    async with gateway(config(env, upstream.port, upstream_keepalive_timeout_seconds=60), anyio_backend) as info:
        port = info.address.port
        if first == "/big":
            # Read the head of a 4 MiB answer and leave with a reset: the rest stays unread.
            def leave_early() -> int:
                c = http.client.HTTPSConnection("localhost", port, context=env.client_context("good"), timeout=10)
                c.request("GET", "/big", headers={"X-API-Key": "demo-api-key-123"})
                status = c.getresponse().status
                assert c.sock is not None
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.sock.close()
                return status

            assert await call(leave_early) == 200
        else:
            expected = 502 if first == "/garbage" else 200
            assert await call(get, env, port, first) == expected
        (number,) = upstream.conns(first)
        # Whoever closes it (the upstream, or the gateway for the unread body), it is gone
        # before the next request is sent: the gateway never writes on it.
        assert await call(upstream.wait_closed, number)
        assert await call(get, env, port, "/next") == 200
    assert upstream.conns("/next") != [number]


@pytest.mark.anyio
async def test_pool_bound_and_idle_timeout(env: Env, anyio_backend: str) -> None:
    up = Upstream(holding=3)
    try:
        cfg = config(env, up.port, upstream_keepalive=2, upstream_keepalive_timeout_seconds=0.5)
        async with gateway(cfg, anyio_backend) as info:
            port = info.address.port
            # Three requests in flight at once: three upstream connections.
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(call, get, env, port, "/hold")
            held = sorted(up.conns("/hold"))
            assert len(held) == 3
            # Back in the pool only two are kept: the third is closed by the gateway.
            assert await call(lambda: _poll(lambda: up.open_count() == 2))
            kept = [n for n in held if n not in up.closed]
            assert await call(get, env, port, "/again") == 200
            assert up.conns("/again")[0] in kept
            # Unused past upstream_keepalive_timeout_seconds: every one closed.
            assert await call(lambda: _poll(lambda: up.open_count() == 0))
            assert await call(get, env, port, "/later") == 200
            assert up.conns("/later")[0] not in held
    finally:
        up.close()


def _poll(condition: Any, deadline: float = 10.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)  # poll interval, bounded by the deadline
    return False


# -- a pooled connection the upstream closes as it is taken ---------------------------------------


class ClosingUpstream:
    """Answers the first request of each connection (keep-alive), then closes the connection
    when the next request on it arrives, without answering: its idle timeout firing just as
    the request comes in, after the gateway's check of the pooled connection. ``how``: with a
    FIN (``close``) or a reset (``reset``). Every request is recorded as (connection, method,
    path, body) once read whole."""

    def __init__(self, how: str, tls: ssl.SSLContext | None = None) -> None:
        self.lock = threading.Lock()
        self.opened = 0
        self.requests: list[tuple[int, str, str, bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.answered = 0
                with outer.lock:
                    outer.opened += 1
                    self.number = outer.opened

            def log_message(self, *args: Any) -> None:
                pass

            def any_method(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.requests.append((self.number, self.command, self.path, body))
                if self.answered:
                    self.close_connection = True
                    if how == "reset":  # RST, no FIN: SO_LINGER 0 and a close
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.connection.close()
                    return
                self.answered += 1
                answer = json.dumps({"conn": self.number, "body": body.decode()}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = any_method

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:  # https://: each accepted connection completes its handshake first
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self) -> list[tuple[int, str, str, bytes]]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def retries(admin_port: int) -> float:
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mtlscore_upstream_retries_total"))


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize(("method", "body", "retried"), [
    ("GET", None, True),
    ("PUT", b"payload", True),  # idempotent (RFC 9110 §9.2.2): sent again, body and all
    ("POST", b"payload", False),  # not: the upstream may have acted on it; a 502, as before
])
@pytest.mark.anyio
async def test_a_request_on_a_pooled_connection_the_upstream_closes_is_retried_if_idempotent(
    env: Env, anyio_backend: str, how: str, method: str, body: bytes | None, retried: bool,
) -> None:
    up = ClosingUpstream(how)
    try:
        # A long idle timeout: the upstream, not the gateway, decides when the connection ends.
        cfg = config(env, up.port, upstream_keepalive_timeout_seconds=60, admin_listen="127.0.0.1:0")
        async with gateway(cfg, anyio_backend) as info:
            port = info.address.port
            assert await call(get, env, port, "/first") == 200
            status, _, answer = await call(request, env, port, "good", "/second", method=method, body=body,
                                           headers={"X-API-Key": "demo-api-key-123"})
            assert info.admin_address is not None
            counted = await call(retries, info.admin_address.port)
        sent = (method, "/second", body or b"")
        if retried:
            assert status == 200, answer
            assert json.loads(answer) == {"conn": 2, "body": (body or b"").decode()}
            # Once on the pooled connection (which the upstream closed), once on a new one.
            assert [(n, *r) for n, *r in up.seen()] == [(1, "GET", "/first", b""), (1, *sent), (2, *sent)]
            assert counted == 1
        else:
            assert status == 502 and json.loads(answer)["error"] == "upstream_unavailable"
            # Never sent twice: the upstream read it, and could have acted on it.
            assert [(n, *r) for n, *r in up.seen()] == [(1, "GET", "/first", b""), (1, *sent)]
            assert counted == 0
    finally:
        up.close()


@pytest.mark.anyio
async def test_the_retry_over_an_https_upstream_opens_a_new_tls_connection(
    env: Env, anyio_backend: str, tmp_path: Any,
) -> None:
    from mtlscore import pki

    ca = pki.root("CN=Closing Upstream CA")
    leaf = ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"])
    (tmp_path / "up.pem").write_bytes(leaf.chain_pem)
    (tmp_path / "up.key").write_bytes(leaf.key_pem)
    (tmp_path / "up-ca.pem").write_bytes(ca.pem)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(tmp_path / "up.pem"), str(tmp_path / "up.key"))
    up = ClosingUpstream("close", tls)
    try:
        cfg = env.config(f"closing-tls-{anyio_backend}.toml", upstream=f"https://localhost:{up.port}",
                         upstream_ca=str(tmp_path / "up-ca.pem"), upstream_keepalive_timeout_seconds=60)
        async with gateway(cfg, anyio_backend) as info:
            assert await call(get, env, info.address.port, "/first") == 200
            assert await call(get, env, info.address.port, "/second") == 200
        assert [(n, m, path) for n, m, path, _ in up.seen()] == [(1, "GET", "/first"), (1, "GET", "/second"),
                                                                (2, "GET", "/second")]
    finally:
        up.close()
