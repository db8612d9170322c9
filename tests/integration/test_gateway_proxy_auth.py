"""A trusted proxy that authenticates with HTTP basic auth (issue #19), real nginx in front,
both runtimes: the right password is believed and never reaches the upstream; a wrong one
makes the forwarded certificate ``untrusted_proxy``."""

from __future__ import annotations

import base64
from pathlib import Path

import _nginx as peers
import pytest
from test_gateway import API_KEY, Env, Upstream, anyio_backend, call, env, gateway, upstream  # noqa: F401 - fixtures
from test_gateway_headers import NGINX, NGINX_SNIPPET, PROXY_ADDR, nginx_ready, proxied_config  # noqa: F401

from mtlscore.proxy.basic_auth import hash_password

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PASSWORD = "correct horse battery staple"
HASH = hash_password(PASSWORD, ln=14)


def snippet(password: str) -> str:
    token = base64.b64encode(f"edge:{password}".encode()).decode()
    return NGINX_SNIPPET + f'\n        proxy_set_header Proxy-Authorization "Basic {token}";'


@pytest.mark.anyio
@pytest.mark.parametrize(("password", "status", "error"),
                         [(PASSWORD, 200, None), ("guessed", 403, "untrusted_proxy")], ids=["right", "wrong"])
async def test_nginx_with_basic_auth(
    env: Env, upstream: Upstream, anyio_backend: str, tmp_path: Path, nginx_ready: None,  # noqa: F811
    password: str, status: int, error: str | None,
) -> None:
    table = (f'{{ name = "edge", networks = ["{PROXY_ADDR}/32"], format = "nginx", '
             f'username = "edge", password_hash = "{HASH}" }}')
    config = proxied_config(env, f"nginx-basic-{anyio_backend}-{status}.toml", upstream, table)
    async with gateway(config, anyio_backend) as info:
        nginx = peers.Nginx(tmp_path, NGINX.format(d=env.dir, snippet=snippet(password), proxy_addr=PROXY_ADDR,
                                                   gateway=info.address.port))
        await call(nginx.start)
        try:
            reply = await call(peers.curl, f"https://127.0.0.1:{nginx.port}/api", cacert=env.dir / "server-ca.pem",
                               cert=env.dir / "good.pem", key=env.dir / "good.key",
                               headers={"X-API-Key": API_KEY})
        finally:
            nginx.stop()
    assert reply.status == status, (reply, nginx.error_log())
    if error is None:
        seen = {k for k, _ in upstream.seen[-1]["headers"]}
        assert "proxy-authorization" not in seen and "x-ssl-client-cert" not in seen
    else:
        assert reply.body["error"] == error and "basic authentication" in reply.body["detail"]
        assert not upstream.seen
