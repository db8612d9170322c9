"""The gateway end to end, on both runtimes from one test body (anyio's pytest plugin).

Real peers on 127.0.0.1 only: Python ssl, curl, openssl s_client as clients; a
threaded http.server as the upstream. The PKI is built around the real clock
because the gateway validates at the current time.
"""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from _gateway import Backend, backend_name, gateway

from mtlscore import pki
from mtlscore.gateway.appauth import hash_api_key
from mtlscore.jwt import issue_bound_token
from mtlscore.runtimes.state import GatewayState
from mtlscore.x509.cert import parse_certificate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

DN = "CN=partner-abc-prod-client,OU=RiskOSIntegration,O=PartnerABC"
API_KEY = "demo-api-key-123"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Backend:
    # Also run on uvloop, the default event loop where it is installed: test_gateway_uvloop.py.
    return str(request.param)


# -- PKI and config --------------------------------------------------------------------


class Env:
    """Files on disk for one PKI; :meth:`config` writes a TOML with variations."""

    def __init__(self, d: Path) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        from mtlscore.x509.jwk import jwk_from_public_key

        self.dir = d
        now = datetime.now(UTC)
        root = pki.root("CN=Partner Root,O=PartnerABC", now=now)
        self.issuing = root.intermediate("CN=Partner Issuing,O=PartnerABC")
        other_root = pki.root("CN=Other Root,O=Other", now=now)
        self.leaves = {
            "good": self.issuing.leaf(DN, san_dns=["client.partner.example"]),
            "other": self.issuing.leaf(DN),
            "expired": self.issuing.leaf(DN, not_before=now - timedelta(days=40), not_after=now - timedelta(days=1)),
            "revoked": self.issuing.leaf(DN),
            "unknown": other_root.leaf(DN),
            "other-account": self.issuing.leaf("CN=ip-limited,O=PartnerABC"),
            "limited": self.issuing.leaf("CN=rate-limited,O=PartnerABC"),
        }
        server_ca = pki.root("CN=Gateway Test Server CA", now=now)
        server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"], san_ip=["127.0.0.1"])
        (d / "root.pem").write_bytes(root.pem)
        (d / "other-root.pem").write_bytes(other_root.pem)
        (d / "issuing.crl").write_bytes(self.issuing.crl(revoked=[self.leaves["revoked"]]))
        (d / "server-ca.pem").write_bytes(server_ca.pem)
        (d / "server.pem").write_bytes(server.pem)
        (d / "server.key").write_bytes(server.key_pem)
        (d / "server.key").chmod(0o600)  # a private key: the gateway warns otherwise
        for name, leaf in self.leaves.items():
            (d / f"{name}.pem").write_bytes(leaf.chain_pem)
            (d / f"{name}.key").write_bytes(leaf.key_pem)
        self.signer = ec.generate_private_key(ec.SECP256R1())
        self.jwks = {"keys": [jwk_from_public_key(self.signer.public_key(), kid="as")]}
        claims = {
            "iss": "https://as.test",
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(hours=1)).timestamp()),
        }
        self.tokens = {
            n: issue_bound_token(claims, self.signer, parse_certificate(self.leaves[n].der), kid="as")
            for n in ("good", "other")
        }

    def config(self, name: str = "mtlscore.toml", *, anchors: str = "root.pem", **server: Any) -> Path:
        settings = {
            "listen": "127.0.0.1:0",
            "certificate": "server.pem",
            "key": "server.key",
            "reload_poll_seconds": 0,
            **server,
        }
        lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
        text = f"""
[trust]
anchors = ["{anchors}"]

[revocation]
crls = ["issuing.crl"]

[[accounts]]
id = "partner-abc"
match = {{ subject_dn = "{DN}" }}
jwks = '{json.dumps(self.jwks)}'
api_key_sha256 = ["{hash_api_key(API_KEY)}"]

[[accounts]]
id = "ip-limited"
match = {{ cn = "ip-limited" }}
ip_allow = ["10.0.0.0/8"]

[[accounts]]
id = "rate-limited"
match = {{ cn = "rate-limited" }}
rate_limit = "2/min"

[server]
{lines}
"""
        path = self.dir / name
        path.write_text(text)
        return path

    def client_context(self, cert: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "server-ca.pem"))
        if cert:
            ctx.load_cert_chain(str(self.dir / f"{cert}.pem"), str(self.dir / f"{cert}.key"))
        return ctx


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return Env(tmp_path_factory.mktemp("gateway"))


# -- a real upstream: http.server in a thread --------------------------------------------


class Upstream:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("transfer-encoding") == "chunked":
                    while (size := int(self.rfile.readline().strip(), 16)) > 0:
                        body += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                outer.seen.append(
                    {"path": self.path, "headers": [(k.lower(), v) for k, v in self.headers.items()], "body": len(body)}
                )
                if self.path.startswith("/hang"):
                    outer.release.wait(20)
                out = json.dumps(
                    {
                        "path": self.path,
                        "headers": dict((k.lower(), v) for k, v in self.headers.items()),
                        "body_bytes": len(body),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    u = Upstream()
    yield u
    u.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- running the gateway on the backend under test ---------------------------------------


def request(
    env: Env,
    port: int,
    cert: str | None,
    path: str = "/",
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
    conn: http.client.HTTPSConnection | None = None,
) -> tuple[int, dict[str, str], bytes]:
    c = conn or http.client.HTTPSConnection("localhost", port, context=env.client_context(cert), timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


async def call(*args: Any, **kw: Any) -> Any:
    return await anyio.to_thread.run_sync(partial(*args, **kw))


def bearer(env: Env, which: str = "good") -> dict[str, str]:
    return {"Authorization": f"Bearer {env.tokens[which]}"}


# -- tests --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_forward_with_identity_headers_and_stripping(env: Env, upstream: Upstream, anyio_backend: Backend) -> None:
    config = env.config(upstream=f"http://127.0.0.1:{upstream.port}")
    forged = {"X-Client-Cert-Hash": "forged", "X-Mtls-Account": "admin", "Client-Cert": ":AAAA:", **bearer(env)}
    async with gateway(config, anyio_backend) as info:
        status, _, body = await call(request, env, info.address.port, "good", "/api/x?y=1", headers=forged)
    assert status == 200
    seen = json.loads(body)
    h = seen["headers"]
    leaf = parse_certificate(env.leaves["good"].der)
    assert seen["path"] == "/api/x?y=1"
    assert h["x-mtls-account"] == "partner-abc"
    assert h["x-client-cert-present"] == "true"
    assert h["x-client-cert-chain-verified"] == "true"
    assert h["x-client-cert-hash"] != "forged"
    import base64

    assert h["x-client-cert-hash"] == base64.b64encode(leaf.sha256).decode()
    assert h["client-cert"].startswith(":") and h["client-cert"] != ":AAAA:"
    assert "client-cert-chain" in h
    assert h["x-forwarded-proto"] == "https"
    # Exactly one copy of each identity header reached the upstream.
    names = [k for k, _ in upstream.seen[-1]["headers"]]
    assert names.count("x-client-cert-hash") == 1 and names.count("x-mtls-account") == 1


@pytest.mark.anyio
async def test_reject_mode_status_paths(env: Env, anyio_backend: Backend) -> None:
    config = env.config(reject_at="http")  # no upstream: the identity as JSON
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        status, _, body = await call(request, env, port, "good", headers=bearer(env))
        doc = json.loads(body)
        assert (status, doc["account"], doc["credential"]) == (200, "partner-abc", "bound_token")
        assert doc["upstream_headers"]["X-Client-Cert-Chain-Verified"] == "true"

        status, _, body = await call(request, env, port, "good", headers={"X-API-Key": API_KEY})
        assert (status, json.loads(body)["credential"]) == (200, "api_key")

        status, headers, body = await call(request, env, port, "good")
        assert status == 401 and headers["www-authenticate"] == 'Bearer realm="mtlscore"'
        assert json.loads(body)["error"] == "credential_missing"

        status, headers, body = await call(request, env, port, "good", headers={"X-API-Key": "nope"})
        assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]

        status, headers, body = await call(request, env, port, "good", headers=bearer(env, "other"))
        assert status == 401 and json.loads(body)["error"] == "binding_mismatch"
        assert 'error="invalid_token"' in headers["www-authenticate"]

        for cert, reason in (("expired", "expired"), ("revoked", "revoked")):
            status, headers, body = await call(request, env, port, cert, headers=bearer(env))
            doc = json.loads(body)
            assert (status, doc["error"]) == (403, reason)
            assert doc["detail"] and headers["content-type"] == "application/json"

        status, _, body = await call(request, env, port, "other-account")
        assert (status, json.loads(body)["error"]) == (403, "ip_not_allowed")

        results = [await call(request, env, port, "limited") for _ in range(3)]
        assert [r[0] for r in results] == [200, 200, 429]
        assert int(results[2][1]["retry-after"]) >= 1

        with pytest.raises((ssl.SSLError, ConnectionError)):
            await call(request, env, port, "unknown")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await call(request, env, port, None)
        metrics = info.state.metrics
    assert metrics.get("mtlscore_decisions_total", outcome="deny", reason="expired") == 1
    assert metrics.get("mtlscore_handshake_failures_total", reason="untrusted") == 1
    assert metrics.get("mtlscore_handshake_failures_total", reason="not_provided") == 1
    assert metrics.get("mtlscore_decisions_total", outcome="deny", reason="rate_limited") == 1


@pytest.mark.anyio
async def test_deferred_engine_reject_mode_answers_json_for_everything(env: Env, anyio_backend: Backend) -> None:
    pytest.importorskip("OpenSSL")
    config = env.config(tls_engine="deferred", reject_at="http")
    async with gateway(config, anyio_backend) as info:
        for cert, reason in (("unknown", "untrusted"), (None, "not_provided"), ("expired", "expired")):
            status, _, body = await call(request, env, info.address.port, cert)
            assert (status, json.loads(body)["error"]) == (403, reason)


@pytest.mark.anyio
async def test_allow_mode_forwards_invalid_and_missing_with_verdict(
    env: Env, upstream: Upstream, anyio_backend: Backend
) -> None:
    pytest.importorskip("OpenSSL")
    config = env.config(upstream=f"http://127.0.0.1:{upstream.port}", mode="allow_invalid_or_missing")
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        # Only the certificate is relaxed: the API key is still required (issue 19; the
        # full matrix is test_gateway_allow_matrix.py).
        results = {
            c: await call(request, env, port, c, headers={"X-Mtls-Account": "admin", "X-API-Key": API_KEY})
            for c in ("unknown", "expired", None)
        }
        status, _, body = await call(request, env, port, "good", headers=bearer(env))
        assert json.loads(body)["headers"]["x-mtls-account"] == "partner-abc"
        status, _, body = await call(request, env, port, None, headers={"X-Mtls-Account": "admin"})
        assert (status, json.loads(body)["error"]) == (401, "credential_missing")
    for cert, (status, _, body) in results.items():
        h = json.loads(body)["headers"]
        assert status == 200, cert
        assert h["x-client-cert-chain-verified"] == "false"
        assert "x-mtls-account" not in h  # never believed, never asserted for an invalid cert
    assert json.loads(results[None][2])["headers"]["x-client-cert-present"] == "false"
    assert json.loads(results["unknown"][2])["headers"]["x-client-cert-present"] == "true"
    assert json.loads(results["expired"][2])["headers"]["x-client-cert-error"] == "client_cert_validation_failed"


@pytest.mark.anyio
async def test_upstream_unavailable_502_and_timeout_504(env: Env, upstream: Upstream, anyio_backend: Backend) -> None:
    down = env.config("down.toml", upstream=f"http://127.0.0.1:{closed_port()}")
    async with gateway(down, anyio_backend) as info:
        status, _, body = await call(request, env, info.address.port, "good", headers=bearer(env))
        assert (status, json.loads(body)["error"]) == (502, "upstream_unavailable")
    slow = env.config("slow.toml", upstream=f"http://127.0.0.1:{upstream.port}", upstream_timeout_seconds=0.3)
    async with gateway(slow, anyio_backend) as info:
        status, _, body = await call(request, env, info.address.port, "good", "/hang", headers=bearer(env))
        assert (status, json.loads(body)["error"]) == (504, "upstream_timeout")
        upstream.release.set()


@pytest.mark.anyio
async def test_streaming_bodies_keepalive_and_limits(env: Env, upstream: Upstream, anyio_backend: Backend) -> None:
    config = env.config(upstream=f"http://127.0.0.1:{upstream.port}", max_body_bytes=2_000_000)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        conn = http.client.HTTPSConnection("localhost", port, context=env.client_context("good"), timeout=10)
        try:
            big = os.urandom(1_500_000)
            status, _, body = await call(
                request, env, port, "good", "/up", method="POST", body=big, headers=bearer(env), conn=conn
            )
            assert (status, json.loads(body)["body_bytes"]) == (200, len(big))
            chunks = iter([b"a" * 1000, b"b" * 2000])
            status, _, body = await call(
                request, env, port, "good", "/chunked", method="POST", body=chunks, headers=bearer(env), conn=conn
            )
            assert (status, json.loads(body)["body_bytes"]) == (200, 3000)
        finally:
            conn.close()
        status, _, body = await call(
            request, env, port, "good", "/up", method="POST", body=b"x" * 2_000_001, headers=bearer(env)
        )
        assert (status, json.loads(body)["error"]) == (413, "body_too_large")
        assert info.state.metrics.get("mtlscore_connections_total") == 2  # keep-alive reused one


@pytest.mark.anyio
async def test_curl_reference_flow(env: Env, upstream: Upstream, anyio_backend: Backend) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    config = env.config(upstream=f"http://127.0.0.1:{upstream.port}", reject_at="http")
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        base = [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--resolve",
            f"localhost:{port}:127.0.0.1",
            "--cacert",
            str(env.dir / "server-ca.pem"),
        ]
        good = await call(
            subprocess.run,
            [
                *base,
                "--cert",
                str(env.dir / "good.pem"),
                "--key",
                str(env.dir / "good.key"),
                "-H",
                f"Authorization: Bearer {env.tokens['good']}",
                f"https://localhost:{port}/reference",
            ],
            capture_output=True,
            timeout=20,
        )
        expired = await call(
            subprocess.run,
            [
                *base,
                "--cert",
                str(env.dir / "expired.pem"),
                "--key",
                str(env.dir / "expired.key"),
                "-w",
                "\n%{http_code}",
                f"https://localhost:{port}/",
            ],
            capture_output=True,
            timeout=20,
        )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["headers"]["x-mtls-account"] == "partner-abc"
    assert expired.stdout.decode().endswith("403") and b'"error": "expired"' in expired.stdout


@pytest.mark.anyio
async def test_openssl_s_client(env: Env, anyio_backend: Backend) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    async with gateway(env.config(), anyio_backend) as info:
        base = [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{info.address.port}",
            "-servername",
            "localhost",
            "-CAfile",
            str(env.dir / "server-ca.pem"),
            "-quiet",
        ]
        req = f"GET / HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {API_KEY}\r\nConnection: close\r\n\r\n".encode()
        good = await call(
            subprocess.run,
            [
                *base,
                "-cert",
                str(env.dir / "good.pem"),
                "-key",
                str(env.dir / "good.key"),
                "-cert_chain",
                str(env.dir / "good.pem"),
            ],
            input=req,
            capture_output=True,
            timeout=20,
        )
        none = await call(subprocess.run, base, input=req, capture_output=True, timeout=20)
    assert good.stdout.startswith(b"HTTP/1.1 200"), good.stderr
    assert b'"account": "partner-abc"' in good.stdout
    assert b"HTTP/1.1" not in none.stdout
    assert b"certificate required" in none.stderr


@pytest.mark.anyio
async def test_reload_during_traffic(env: Env, anyio_backend: Backend) -> None:
    config = env.config("reload.toml", reload_poll_seconds=0.05)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        conn = http.client.HTTPSConnection("localhost", port, context=env.client_context("good"), timeout=10)
        try:
            assert (await call(request, env, port, "good", headers=bearer(env), conn=conn))[0] == 200
            # New trust config: only the other root. Written under a new mtime; the poller reloads.
            text = env.config("reload-next.toml", anchors="other-root.pem", reload_poll_seconds=0.05).read_text()
            config.write_text(text.replace("jwks =", "# jwks =").replace("api_key_sha256", "# api"))
            os.utime(config, ns=(1, 1))
            with anyio.fail_after(10):
                while info.state.metrics.get("mtlscore_reloads_total", result="ok") < 1:
                    await anyio.sleep(0.02)
            # The connection in flight keeps the trust it started with.
            assert (await call(request, env, port, "good", headers=bearer(env), conn=conn))[0] == 200
        finally:
            conn.close()
        # A new connection gets the new trust: the partner root is gone.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await call(request, env, port, "good")
        # A broken config is refused; the running one stays.
        config.write_text("[server]\nnonsense = 1\n")
        assert info.state.reload() is False
        assert info.state.metrics.get("mtlscore_reloads_total", result="error") == 1


@pytest.mark.anyio
async def test_replacing_a_trust_file_reloads(env: Env, anyio_backend: Backend) -> None:
    # The config names a CA bundle; rotating the CA means replacing that file, not editing the config.
    bundle = env.dir / f"bundle-{backend_name(anyio_backend)}.pem"
    bundle.write_bytes((env.dir / "root.pem").read_bytes())
    config = env.config(f"bundle-{backend_name(anyio_backend)}.toml", anchors=bundle.name, reload_poll_seconds=0.05)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        assert (await call(request, env, port, "good", headers=bearer(env)))[0] == 200
        assert bundle in {p for p, _ in info.state.snapshot.watched}
        bundle.write_bytes((env.dir / "other-root.pem").read_bytes())
        os.utime(bundle, ns=(1, 1))
        with anyio.fail_after(10):
            while info.state.metrics.get("mtlscore_reloads_total", result="ok") < 1:
                await anyio.sleep(0.02)
        # The partner's root is no longer trusted by new connections.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await call(request, env, port, "good")


@pytest.mark.anyio
async def test_admin_metrics_and_graceful_shutdown(env: Env, upstream: Upstream, anyio_backend: Backend) -> None:
    config = env.config(
        "admin.toml", upstream=f"http://127.0.0.1:{upstream.port}", admin_listen="127.0.0.1:0", reject_at="http"
    )
    from mtlscore.runtimes import asyncio as asyncio_runtime
    from mtlscore.runtimes import trio as trio_runtime

    runtime = trio_runtime if anyio_backend == "trio" else asyncio_runtime
    state = GatewayState.from_config_file(config)
    async with anyio.create_task_group() as tg:
        info = await tg.start(partial(runtime.serve, state, handle_signals=False))
        port = info.address.port
        await call(request, env, port, "expired")
        assert info.admin_address is not None

        def scrape(accept: str | None = None) -> tuple[int, str, str]:
            c = http.client.HTTPConnection("127.0.0.1", info.admin_address.port, timeout=10)
            c.request("GET", "/metrics", headers={"Accept": accept} if accept else {})
            r = c.getresponse()
            return r.status, r.getheader("content-type") or "", r.read().decode()

        status, ctype, text = await call(scrape)
        assert status == 200
        assert ctype.startswith("text/plain; version=0.0.4")
        assert 'mtlscore_decisions_total{lb_error="client_cert_validation_failed",outcome="deny",reason="expired"} 1.0' in text
        assert "# TYPE mtlscore_handshake_failures_total counter" in text
        # A scraper that prefers OpenMetrics gets it (prometheus-client's negotiation).
        status, ctype, text = await call(scrape, "application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
        assert status == 200 and ctype.startswith("application/openmetrics-text")
        assert text.endswith("# EOF\n")

        # A request in flight survives a graceful shutdown; new connections are refused.
        results: list[Any] = []

        async def slow() -> None:
            results.append(await call(request, env, port, "good", "/hang", headers=bearer(env)))

        tg.start_soon(slow)
        with anyio.fail_after(10):
            while not upstream.seen or upstream.seen[-1]["path"] != "/hang":
                await anyio.sleep(0.02)
        info.shutdown()
        with anyio.fail_after(10):
            while True:  # the listener closes before the in-flight request ends
                try:
                    await call(socket.create_connection, ("127.0.0.1", port), timeout=1)
                except OSError:
                    break
                await anyio.sleep(0.02)
        upstream.release.set()
    assert results and results[0][0] == 200


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_mtlscore_serve_curl_sighup_sigterm(env: Env, upstream: Upstream, runtime: str) -> None:
    """The reference flow against `mtlscore serve`: client cert + Bearer token -> upstream sees the account."""
    import signal
    import sys

    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    config = env.config(f"serve-{runtime}.toml", upstream=f"http://127.0.0.1:{upstream.port}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtlscore", "serve", "--config", str(config), "--runtime", runtime],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        ready = proc.stderr.readline()
        # event_loop = "auto" (the default): the asyncio runtime on uvloop wherever it is installed.
        uvloop = runtime == "asyncio" and importlib.util.find_spec("uvloop") is not None
        assert f"mtlscore gateway ({'asyncio on uvloop' if uvloop else runtime}, reject_invalid" in ready, ready
        port = int(ready.split("https://127.0.0.1:")[1].split()[0])
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "10",
                "--resolve",
                f"localhost:{port}:127.0.0.1",
                "--cacert",
                str(env.dir / "server-ca.pem"),
                "--cert",
                str(env.dir / "good.pem"),
                "--key",
                str(env.dir / "good.key"),
                "-H",
                f"Authorization: Bearer {env.tokens['good']}",
                f"https://localhost:{port}/v1/score",
            ],
            capture_output=True,
            timeout=20,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["headers"]["x-mtls-account"] == "partner-abc"
        assert json.loads(proc.stderr.readline())["event"] == "mtls_start"
        log = json.loads(proc.stderr.readline())  # one structured line per decision
        assert (log["outcome"], log["account"], log["target"]) == ("forward", "partner-abc", "/v1/score")
        assert log["thumbprint"] == parse_certificate(env.leaves["good"].der).x5t_s256
        proc.send_signal(signal.SIGHUP)
        reload = json.loads(proc.stderr.readline())
        assert (reload["level"], reload["event"], reload["result"]) == ("info", "mtls_reload", "ok")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# -- behind a trusted proxy: curl → nginx (client mTLS) → the gateway → upstream -------------

NGINX_TO_GATEWAY = """
server {{
    listen 127.0.0.1:{{port}} ssl;
    ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key;
    ssl_verify_client optional_no_ca;   # ask for a certificate; the gateway decides
    location / {{
        proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_bind {proxy_addr};
        proxy_pass https://127.0.0.1:{gateway};
    }}
}}
"""


@pytest.mark.anyio
async def test_behind_nginx_as_a_trusted_proxy(
    env: Env, upstream: Upstream, anyio_backend: Backend, tmp_path: Path
) -> None:
    try:
        from . import _nginx as peers
    except ImportError:  # tests/integration is not a package
        import _nginx as peers  # type: ignore[no-redef]
    if peers.NGINX is None or peers.CURL is None:
        pytest.skip("nginx or curl not installed")
    proxy_addr = "127.0.0.2"
    if not peers.loopback_alias_usable(proxy_addr):
        pytest.skip(f"cannot bind {proxy_addr}")
    config = env.config(f"proxied-{backend_name(anyio_backend)}.toml", upstream=f"http://127.0.0.1:{upstream.port}")
    # nginx forwards only the leaf: the issuing CA goes in the intermediates pool. [server] is
    # the file's last table: the trusted proxy is nginx, by address, in nginx's header format.
    (env.dir / "issuing.pem").write_bytes(env.issuing.pem)
    text = config.read_text().replace('anchors = ["root.pem"]', 'anchors = ["root.pem"]\nintermediates = ["issuing.pem"]')
    config.write_text(text + f'trusted_proxies = [{{ networks = ["{proxy_addr}/32"], format = "nginx" }}]\n')
    async with gateway(config, anyio_backend) as info:
        conf = NGINX_TO_GATEWAY.format(d=env.dir, proxy_addr=proxy_addr, gateway=info.address.port)
        nginx = peers.Nginx(tmp_path, conf)
        await call(nginx.start)
        try:
            def via(who: str | None, **kw: Any) -> Any:
                client = {"cert": env.dir / f"{who}.pem", "key": env.dir / f"{who}.key"} if who else {}
                return peers.curl(f"https://127.0.0.1:{nginx.port}/api", cacert=env.dir / "server-ca.pem",
                                  **client, **kw)

            good = await call(via, "good", headers={"X-API-Key": API_KEY})
            assert good.status == 200, (good, nginx.error_log())
            seen = good.body["headers"]
            assert seen["x-mtls-account"] == "partner-abc"
            assert "x-ssl-client-cert" not in seen and "x-api-key" not in seen
            assert seen["x-client-cert-hash"]  # the gateway's own identity headers went up
            # nginx (optional_no_ca) lets a certificate from an unknown CA through; the gateway refuses it.
            unknown = await call(via, "unknown", headers={"X-API-Key": API_KEY})
            assert unknown.status == 403 and unknown.body["error"] == "untrusted"
            nothing = await call(via, None)
            assert nothing.status == 403 and nothing.body["error"] == "not_provided"
        finally:
            nginx.stop()
        # Straight to the gateway from 127.0.0.1 (not the proxy) with the header forged:
        # not believed; this connection has no certificate of its own.
        forged = parse_certificate(env.leaves["good"].der).pem
        from urllib.parse import quote

        status, _, body = await call(request, env, info.address.port, None,
                                     headers={"X-SSL-Client-Cert": quote(forged), "X-API-Key": API_KEY})
        assert status == 403 and json.loads(body)["error"] == "not_provided"


@pytest.mark.anyio
async def test_the_start_line_names_the_event_loop_it_runs_on(
    env: Env, anyio_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    # The in-process tests above run the asyncio runtime on asyncio's loop and on uvloop
    # (where it is installed): this checks each really ran where its id says.
    import logging

    with caplog.at_level(logging.INFO, logger="mtlscore.gateway"):
        async with gateway(env.config(), anyio_backend) as info:
            assert (await call(request, env, info.address.port, "good", headers=bearer(env)))[0] == 200
    [start] = [json.loads(r.getMessage()) for r in caplog.records if '"mtls_start"' in r.getMessage()]
    name = backend_name(anyio_backend)
    assert start["runtime"] == ("trio" if name == "trio" else "asyncio")
    assert start["event_loop"] == (None if name == "trio" else name)
