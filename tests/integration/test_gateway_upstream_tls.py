"""Outbound mTLS: ``upstream = "https://…"`` with ``upstream_ca`` / ``upstream_certificate`` /
``upstream_key``, against a real nginx on 127.0.0.1 that requires a client certificate;
both runtimes from one test body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import _nginx as peers
import pytest
from test_gateway import (  # noqa: F401 - fixtures
    Env,
    anyio_backend,
    bearer,
    call,
    env,
    gateway,
    request,
)

from mtlscore import pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class UpstreamPKI:
    """The upstream's own world: its server CA and certificate, the CA it trusts for
    clients, the gateway's client certificate, and an impostor's."""

    def __init__(self, d: Path) -> None:
        now = datetime.now(UTC)
        server_ca = pki.root("CN=Upstream Server CA", now=now)
        # Named, not by address: an upstream configured as https://127.0.0.1 fails the name check.
        server = server_ca.leaf("upstream.internal", eku=[pki.SERVER_AUTH], san_dns=["upstream.internal", "localhost"])
        other_ca = pki.root("CN=Some Other Server CA", now=now)
        client_ca = pki.root("CN=Upstream Client CA", now=now)
        gateway_cert = client_ca.leaf("CN=mtlscore-gateway,O=PartnerABC")
        stranger = pki.root("CN=Stranger CA", now=now).leaf("CN=mtlscore-gateway,O=PartnerABC")
        self.dir = d
        files = {
            "up-server-ca.pem": server_ca.pem, "up-server.pem": server.chain_pem, "up-server.key": server.key_pem,
            "up-other-ca.pem": other_ca.pem, "up-client-ca.pem": client_ca.pem,
            "gw-client.pem": gateway_cert.chain_pem, "gw-client.key": gateway_cert.key_pem,
            "stranger.pem": stranger.chain_pem, "stranger.key": stranger.key_pem,
            "not-pem.pem": b"this is not a certificate\n",
        }
        for name, data in files.items():
            (d / name).write_bytes(data)
            if name.endswith(".key"):
                (d / name).chmod(0o600)


@pytest.fixture(scope="module")
def world(env: Env) -> UpstreamPKI:  # noqa: F811 - the fixture
    return UpstreamPKI(env.dir)


@pytest.fixture(scope="module")
def nginx(world: UpstreamPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Nginx]:
    if peers.NGINX is None:
        pytest.skip("nginx not installed")
    d = world.dir
    # A client certificate is required ("on"): without one nginx answers 400, and one
    # from another CA fails verification (400 too; the handshake completes in nginx).
    server = f"""
    server {{
        listen 127.0.0.1:{{port}} ssl;
        server_name upstream.internal;
        ssl_certificate     {d}/up-server.pem;
        ssl_certificate_key {d}/up-server.key;
        ssl_client_certificate {d}/up-client-ca.pem;
        ssl_verify_client on;
        location / {{
            default_type application/json;
            return 200 '{{"client_dn": "$ssl_client_s_dn", "verify": "$ssl_client_verify", "sni": "$ssl_server_name", "uri": "$request_uri", "account": "$http_x_mtls_account"}}';
        }}
    }}
    """
    proc = peers.Nginx(tmp_path_factory.mktemp("upstream-nginx"), server).start()
    yield proc
    proc.stop()


def upstream_config(env: Env, port: int, name: str, host: str = "localhost", **keys: str) -> Path:  # noqa: F811
    settings = {"upstream_ca": "up-server-ca.pem", "upstream_certificate": "gw-client.pem",
                "upstream_key": "gw-client.key", **keys}
    settings = {k: v for k, v in settings.items() if v}
    return env.config(name, upstream=f"https://{host}:{port}/base", reject_at="http", **settings)


@pytest.mark.anyio
async def test_requests_reach_an_upstream_that_requires_a_client_certificate(
    env: Env, world: UpstreamPKI, nginx: peers.Nginx, anyio_backend: str  # noqa: F811
) -> None:
    config = upstream_config(env, nginx.port, f"up-{anyio_backend}.toml")
    async with gateway(config, anyio_backend) as info:
        status, _, body = await call(request, env, info.address.port, "good", "/x?y=1", headers=bearer(env))
        again = await call(request, env, info.address.port, "good", "/z", headers=bearer(env))
    assert status == 200, body
    seen = json.loads(body)
    # nginx verified the gateway's certificate; SNI carried the upstream's name.
    assert (seen["verify"], seen["client_dn"]) == ("SUCCESS", "CN=mtlscore-gateway,O=PartnerABC")
    assert seen["sni"] == "localhost" and seen["uri"] == "/base/x?y=1"
    assert seen["account"] == "partner-abc"
    assert again[0] == 200


@pytest.mark.anyio
async def test_the_upstream_refuses_without_the_right_client_certificate(
    env: Env, world: UpstreamPKI, nginx: peers.Nginx, anyio_backend: str  # noqa: F811
) -> None:
    """The nginx really requires one: with none, or one from a CA it does not trust, it says 400."""
    none = upstream_config(env, nginx.port, f"up-none-{anyio_backend}.toml", upstream_certificate="", upstream_key="")
    stranger = upstream_config(env, nginx.port, f"up-stranger-{anyio_backend}.toml",
                               upstream_certificate="stranger.pem", upstream_key="stranger.key")
    for config in (none, stranger):
        async with gateway(config, anyio_backend) as info:
            status, _, body = await call(request, env, info.address.port, "good", headers=bearer(env))
        assert status == 400 and b"SSL certificate" in body, body


@pytest.mark.anyio
async def test_an_upstream_that_fails_verification_is_502(
    env: Env, world: UpstreamPKI, nginx: peers.Nginx, anyio_backend: str  # noqa: F811
) -> None:
    """Another CA, or a name the upstream's certificate does not carry: never sent a byte of the request."""
    wrong_ca = upstream_config(env, nginx.port, f"up-ca-{anyio_backend}.toml", upstream_ca="up-other-ca.pem")
    wrong_name = upstream_config(env, nginx.port, f"up-name-{anyio_backend}.toml", host="127.0.0.1")
    details = []
    for config in (wrong_ca, wrong_name):
        async with gateway(config, anyio_backend) as info:
            status, _, body = await call(request, env, info.address.port, "good", headers=bearer(env))
        doc = json.loads(body)
        assert (status, doc["error"]) == (502, "upstream_unavailable"), body
        details.append(doc["detail"])
    assert "certificate verify failed" in details[0]
    # 127.0.0.1 reaches the same nginx, but its certificate names only upstream.internal and localhost.
    assert "certificate verify failed" in details[1] and "127.0.0.1" in details[1]


@pytest.mark.parametrize(
    ("keys", "key", "words"),
    [
        ({"upstream_ca": "missing.pem"}, "server.upstream_ca", "cannot read"),
        ({"upstream_ca": "not-pem.pem"}, "server.upstream_ca", "not a PEM CA bundle"),
        ({"upstream_certificate": "missing.pem"}, "server.upstream_certificate", "cannot read"),
        ({"upstream_key": "stranger.key"}, "server.upstream_key", "is not the key"),
        ({"upstream_certificate": "not-pem.pem"}, "server.upstream_certificate", "cannot load"),
    ],
)
def test_bad_upstream_files_are_one_line_config_errors(
    env: Env, world: UpstreamPKI, keys: dict[str, str], key: str, words: str  # noqa: F811
) -> None:
    from mtlscore import ConfigError
    from mtlscore.runtimes.state import GatewayState

    config = upstream_config(env, 1, f"bad-{key}-{words[:6]}.toml", **keys)
    with pytest.raises(ConfigError) as info:
        GatewayState.from_config_file(config)
    message = str(info.value)
    assert info.value.key == key and words in message and "\n" not in message
    assert str(env.dir) in message  # names the file
