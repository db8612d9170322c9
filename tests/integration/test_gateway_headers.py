"""Issue 15 on real sockets, both runtimes: forwarding headers are the gateway's, the client
address comes from a proxy only as configured (real nginx in front), and ambiguous
framing or targets are refused with a 400 that never reaches the upstream."""

from __future__ import annotations

import json
import logging
import socket
import ssl
from functools import partial
from pathlib import Path
from typing import Any

import _nginx as peers
import h11
import pytest
from test_gateway import (  # noqa: F401 - fixtures
    API_KEY,
    Env,
    Upstream,
    anyio_backend,
    call,
    env,
    gateway,
    request,
    upstream,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

# Each a header a client could use to pass itself off as someone, or somewhere, else.
SPOOFS = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Proto": "gopher",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "1",
    "Forwarded": "for=6.6.6.6;proto=gopher",
    "X-Real-IP": "6.6.6.6",
    "True-Client-IP": "6.6.6.6",
    "Remote-User": "admin",
    "X-Client-DN": "CN=admin",
    "X-Client-Verify": "SUCCESS",
    "X-SSL-Client-S-DN": "CN=admin",
    "X-Client-Cert-Hash": "forged",
    "X-Mtls-Account": "root",
}


def spoof_free(seen: list[tuple[str, str]], client_address: str) -> None:
    """The upstream saw exactly one X-Forwarded-For and one X-Forwarded-Proto, the
    gateway's, and none of the client's spoofed values."""
    values = [v for _, v in seen]
    assert [v for k, v in seen if k == "x-forwarded-for"] == [client_address], seen
    assert [v for k, v in seen if k == "x-forwarded-proto"] == ["https"], seen
    for name, value in SPOOFS.items():
        assert value not in values, (name, seen)
    for name in ("forwarded", "x-real-ip", "x-forwarded-host", "x-forwarded-port", "true-client-ip",
                 "remote-user", "x-client-dn", "x-client-verify", "x-ssl-client-s-dn"):
        assert name not in {k for k, _ in seen}, (name, seen)
    assert [v for k, v in seen if k == "x-mtls-account"] == ["partner-abc"]


@pytest.mark.anyio
async def test_a_direct_client_cannot_spoof_forwarding_headers(
    env: Env, upstream: Upstream, anyio_backend: str  # noqa: F811
) -> None:
    config = env.config(f"spoof-{anyio_backend}.toml", upstream=f"http://127.0.0.1:{upstream.port}")
    async with gateway(config, anyio_backend) as info:
        status, _, _ = await call(request, env, info.address.port, "good",
                                  headers={**SPOOFS, "X-API-Key": API_KEY})
    assert status == 200
    [seen] = upstream.seen
    spoof_free(seen["headers"], "127.0.0.1")


# -- framing and targets over real TLS --------------------------------------------------------


def exchange(env: Env, port: int, data: bytes, *, until_eof: bool) -> bytes:  # noqa: F811
    """Send raw bytes as the good client over TLS; what the gateway answers: until it
    closes (``until_eof``), else the first complete response."""
    ctx = env.client_context("good")
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    parser.send(h11.EndOfMessage())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(data)
        out = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLError, ConnectionError):
                break
            if not chunk:
                break
            out += chunk
            if not until_eof:
                parser.receive_data(chunk)
                while (event := parser.next_event()) is not h11.NEED_DATA:
                    if isinstance(event, h11.EndOfMessage):
                        return out
    return out


@pytest.mark.anyio
async def test_ambiguous_framing_and_bad_targets_get_400_without_a_traceback(
    env: Env, upstream: Upstream, anyio_backend: str, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    config = env.config(f"framing-{anyio_backend}.toml", upstream=f"http://127.0.0.1:{upstream.port}/api")
    smuggle = (b"POST /a HTTP/1.1\r\nHost: localhost\r\nX-API-Key: " + API_KEY.encode()
               + b"\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    climb = b"GET /a/%2e%2e/../admin HTTP/1.1\r\nHost: localhost\r\nX-API-Key: " + API_KEY.encode() + b"\r\n\r\n"
    caplog.set_level(logging.INFO, logger="mtlscore.gateway")
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        answer = await call(partial(exchange, env, port, smuggle, until_eof=True))
        refused = await call(partial(exchange, env, port, climb, until_eof=False))
        # The same path without the climb goes through, under the prefix.
        status, _, body = await call(request, env, port, "good", "/a/./b/../admin",
                                     headers={"X-API-Key": API_KEY})
    head, _, body_out = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"connection: close" in head.lower()
    assert json.loads(body_out)["error"] == "invalid_framing"
    assert answer.count(b"HTTP/1.1") == 1  # nothing after it: the smuggled request was never read
    head, _, body_out = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body_out)["error"] == "invalid_target"
    assert status == 200 and json.loads(body)["path"] == "/api/a/admin"
    assert [s["path"] for s in upstream.seen] == ["/api/a/admin"]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    reasons = [json.loads(r.getMessage()).get("reason") for r in caplog.records if r.getMessage().startswith("{")]
    assert "invalid_framing" in reasons and "invalid_target" in reasons


# -- behind real nginx: curl -> nginx -> the gateway -> upstream ----------------------------------

# docs/proxy.md before issue 15: nothing sets X-Forwarded-For, so a client's own copy
# travels through nginx unchanged.
NGINX_OLD_SNIPPET = """
        proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;"""
# docs/gateway.md after issue 15: nginx appends the address it saw; the gateway takes hop 1.
NGINX_SNIPPET = """
        proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
        proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;"""

NGINX = """
server {{
    listen 127.0.0.1:{{port}} ssl;
    ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key;
    ssl_verify_client optional_no_ca;
    location / {{{snippet}
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_bind {proxy_addr};
        proxy_pass https://127.0.0.1:{gateway};
    }}
}}
"""
PROXY_ADDR = "127.0.0.2"
CLIENT_ADDR = "127.0.0.3"  # the one address the ip-limited account allows besides 10/8


def proxied_config(env: Env, name: str, upstream: Upstream, proxy: str) -> Path:  # noqa: F811
    config = env.config(name, upstream=f"http://127.0.0.1:{upstream.port}")
    (env.dir / "issuing.pem").write_bytes(env.issuing.pem)
    text = config.read_text().replace('anchors = ["root.pem"]', 'anchors = ["root.pem"]\nintermediates = ["issuing.pem"]')
    text = text.replace('ip_allow = ["10.0.0.0/8"]', f'ip_allow = ["10.0.0.0/8", "{CLIENT_ADDR}/32"]')
    config.write_text(text + f"trusted_proxies = [{proxy}]\n")  # [server] is the file's last table
    return config


@pytest.fixture
def nginx_ready() -> None:
    if peers.NGINX is None or peers.CURL is None:
        pytest.skip("nginx or curl not installed")
    for addr in (PROXY_ADDR, CLIENT_ADDR):
        if not peers.loopback_alias_usable(addr):
            pytest.skip(f"cannot bind {addr}")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("snippet", "proxy", "forged_status", "genuine_status", "detail"),
    [
        # The finding: the old snippet and a proxy without client_address_header.
        # The forged 10.1.2.3 is no longer believed; the proxy's own address is the client's.
        (NGINX_OLD_SNIPPET, "nginx", 403, 403, "trusted proxy 'nginx' itself"),
        # The documented configuration: nginx appends $remote_addr, the gateway reads hop 1.
        (NGINX_SNIPPET, "nginx-xff", 403, 200, "x-forwarded-for entry 1 from the right"),
    ],
    ids=["old-snippet", "documented"],
)
async def test_forged_x_forwarded_for_through_nginx_gets_ip_not_allowed(
    env: Env, upstream: Upstream, anyio_backend: str, tmp_path: Path, nginx_ready: None,  # noqa: F811
    snippet: str, proxy: str, forged_status: int, genuine_status: int, detail: str,
) -> None:
    table = f'{{ name = "nginx", networks = ["{PROXY_ADDR}/32"], format = "nginx"'
    if proxy == "nginx-xff":
        table += ', client_address_header = "X-Forwarded-For", client_address_hop = 1'
    config = proxied_config(env, f"nginx-{proxy}-{anyio_backend}.toml", upstream, table + " }")
    async with gateway(config, anyio_backend) as info:
        nginx = peers.Nginx(tmp_path, NGINX.format(d=env.dir, snippet=snippet, proxy_addr=PROXY_ADDR,
                                                   gateway=info.address.port))
        await call(nginx.start)
        try:
            def via(**kw: Any) -> peers.Reply:
                return peers.curl(f"https://127.0.0.1:{nginx.port}/api", cacert=env.dir / "server-ca.pem",
                                  cert=env.dir / "other-account.pem", key=env.dir / "other-account.key", **kw)

            forged = await call(via, headers={"X-Forwarded-For": "10.1.2.3"})
            genuine = await call(via, interface=CLIENT_ADDR)
        finally:
            nginx.stop()
    assert forged.status == forged_status, (forged, nginx.error_log())
    assert forged.body["error"] == "ip_not_allowed" and detail in forged.body["detail"]
    assert genuine.status == genuine_status, genuine
    if genuine_status == 200:
        # The real client address, once, as the gateway determined it.
        assert [v for k, v in upstream.seen[-1]["headers"] if k == "x-forwarded-for"] == [CLIENT_ADDR]


@pytest.mark.anyio
async def test_spoofs_through_nginx_reach_the_upstream_as_the_gateways_values_only(
    env: Env, upstream: Upstream, anyio_backend: str, tmp_path: Path, nginx_ready: None,  # noqa: F811
) -> None:
    table = (f'{{ name = "nginx", networks = ["{PROXY_ADDR}/32"], format = "nginx", '
             'client_address_header = "X-Forwarded-For" }')
    config = proxied_config(env, f"nginx-spoof-{anyio_backend}.toml", upstream, table)
    async with gateway(config, anyio_backend) as info:
        nginx = peers.Nginx(tmp_path, NGINX.format(d=env.dir, snippet=NGINX_SNIPPET, proxy_addr=PROXY_ADDR,
                                                   gateway=info.address.port))
        await call(nginx.start)
        try:
            reply = await call(peers.curl, f"https://127.0.0.1:{nginx.port}/api", cacert=env.dir / "server-ca.pem",
                               cert=env.dir / "good.pem", key=env.dir / "good.key", interface=CLIENT_ADDR,
                               headers={**SPOOFS, "X-API-Key": API_KEY})
        finally:
            nginx.stop()
    assert reply.status == 200, (reply, nginx.error_log())
    # nginx appended the client's real address to the forged 6.6.6.6; the gateway took hop 1.
    spoof_free(upstream.seen[-1]["headers"], CLIENT_ADDR)
