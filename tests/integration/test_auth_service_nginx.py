"""``[server] mode = "auth"`` behind real nginx ``auth_request`` (issue #20 item 3), both runtimes.

curl → nginx (TLS, optional_no_ca) → auth subrequest → mtlscore (auth mode) → 200/401/403;
on 200 nginx proxies to a real upstream with the identity headers mtlscore answered. The
nginx configuration is the one in docs/auth-service.md, run as written (addresses and
file names substituted).
"""

from __future__ import annotations

import base64
import http.client
import re
import ssl
from pathlib import Path
from typing import Any

import _nginx as peers
import pytest
from test_gateway import API_KEY, Env, Upstream, anyio_backend, call, env, gateway, upstream  # noqa: F401 - fixtures

from mtlscore.proxy.headers import emit_nginx_escaped_cert
from mtlscore.x509.cert import parse_certificate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DOC = Path(__file__).resolve().parents[2] / "docs" / "auth-service.md"
UNTRUSTED_ADDR = "127.0.0.3"  # a peer that is not the edge
# What a client claims about itself, hoping the upstream believes it.
SPOOFS = {
    "X-Mtls-Account": "root",
    "X-Client-Cert-Hash": "forged",
    "X-Client-Cert-Chain-Verified": "forged-true",
    "X-Client-Cert-SPIFFE": "spiffe://forged/admin",
    "Client-Cert": ":Zm9yZ2Vk:",
    "X-SSL-Client-Cert": "forged-pem",
}


def documented_nginx(env: Env, gateway_port: int, upstream_port: int) -> str:  # noqa: F811
    """The nginx block of docs/auth-service.md, pointed at this test's peers."""
    text = DOC.read_text()
    block = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert block is not None, "docs/auth-service.md lost its nginx configuration"
    conf = block.group(1)
    for old, new in {
        "10.0.0.7:8443": f"127.0.0.1:{gateway_port}",
        "10.0.0.9:8080": f"127.0.0.1:{upstream_port}",
        "listen 443 ssl;": "listen 127.0.0.1:{port} ssl;",
        "/etc/nginx/api.pem": str(env.dir / "server.pem"),
        "/etc/nginx/api.key": str(env.dir / "server.key"),
        "/etc/nginx/mtlscore-ca.pem": str(env.dir / "server-ca.pem"),
        "proxy_ssl_name decider.internal;": "proxy_ssl_name localhost;",
    }.items():
        assert old in conf, old
        conf = conf.replace(old, new)
    return conf


def auth_config(env: Env, name: str) -> Path:  # noqa: F811
    config = env.config(name, mode="auth")
    (env.dir / "issuing.pem").write_bytes(env.issuing.pem)
    text = config.read_text().replace('anchors = ["root.pem"]', 'anchors = ["root.pem"]\nintermediates = ["issuing.pem"]')
    table = ('{ name = "edge", networks = ["127.0.0.1/32"], format = "nginx", '
             'client_address_header = "X-Forwarded-For" }')
    config.write_text(text + f"trusted_proxies = [{table}]\n")  # [server] is the file's last table
    return config


@pytest.fixture
def nginx_ready() -> None:
    if peers.NGINX is None or peers.CURL is None:
        pytest.skip("nginx or curl not installed")
    if not peers.loopback_alias_usable(UNTRUSTED_ADDR):
        pytest.skip(f"cannot bind {UNTRUSTED_ADDR}")


def ask_directly(env: Env, port: int, headers: dict[str, str]) -> tuple[int, dict[str, str]]:  # noqa: F811
    """A request straight to mtlscore from a peer that is not the edge (no client certificate)."""
    ctx = ssl.create_default_context(cafile=str(env.dir / "server-ca.pem"))
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10,
                                       source_address=(UNTRUSTED_ADDR, 0))
    try:
        conn.request("GET", "/_mtlscore", headers=headers)
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


@pytest.mark.anyio
async def test_nginx_auth_request_in_front_of_a_real_upstream(
    env: Env, upstream: Upstream, anyio_backend: str, tmp_path: Path, nginx_ready: None,  # noqa: F811
) -> None:
    config = auth_config(env, f"auth-{anyio_backend}.toml")
    good = parse_certificate(env.leaves["good"].der)
    async with gateway(config, anyio_backend) as info:
        nginx = peers.Nginx(tmp_path, documented_nginx(env, info.address.port, upstream.port))
        await call(nginx.start)
        try:
            def via(cert: str | None, headers: dict[str, str]) -> peers.Reply:
                kw: dict[str, Any] = {}
                if cert is not None:
                    kw = {"cert": env.dir / f"{cert}.pem", "key": env.dir / f"{cert}.key"}
                return peers.curl(f"https://127.0.0.1:{nginx.port}/api/orders", cacert=env.dir / "server-ca.pem",
                                  headers=headers, **kw)

            ok = await call(via, "good", {**SPOOFS, "X-API-Key": API_KEY})
            seen_ok = list(upstream.seen)
            refused = {
                name: await call(via, cert, {**SPOOFS, "X-API-Key": API_KEY})
                for name, cert in (("revoked", "revoked"), ("unknown", "unknown"), ("none", None))
            }
            no_key = await call(via, "good", dict(SPOOFS))
            direct = await call(ask_directly, env, info.address.port,
                                {"X-SSL-Client-Cert": emit_nginx_escaped_cert(good), "X-API-Key": API_KEY})
        finally:
            nginx.stop()
    # A good client: 200 from the upstream, with mtlscore's identity, none of its own claims.
    assert ok.status == 200, (ok, nginx.error_log())
    assert len(seen_ok) == 1 and seen_ok[0]["path"] == "/api/orders"
    headers = seen_ok[0]["headers"]
    values = [v for _, v in headers]
    assert [v for k, v in headers if k == "x-mtls-account"] == ["partner-abc"], headers
    assert [v for k, v in headers if k == "x-client-cert-chain-verified"] == ["true"], headers
    assert [v for k, v in headers if k == "client-cert"] == [f":{base64.b64encode(good.der).decode()}:"]
    assert "x-ssl-client-cert" not in {k for k, _ in headers}
    for name, value in SPOOFS.items():
        assert value not in values, (name, headers)
    # Bad certificates: nginx answers 403 with mtlscore's reason; the upstream never sees them.
    assert {n: (r.status, r.stderr) for n, r in refused.items()} == {n: (403, "") for n in refused}, nginx.error_log()
    assert len(upstream.seen) == 1, upstream.seen
    # The account's own check (its API key) still applies: 401 through nginx.
    assert no_key.status == 401, no_key
    # A peer that is not the edge, sending the certificate header itself: refused.
    status, answer = direct
    assert (status, answer.get("x-mtls-reason")) == (403, "not_provided"), answer


@pytest.mark.anyio
async def test_the_reason_header_reaches_the_client(
    env: Env, upstream: Upstream, anyio_backend: str, tmp_path: Path, nginx_ready: None,  # noqa: F811
) -> None:
    config = auth_config(env, f"auth-reason-{anyio_backend}.toml")
    async with gateway(config, anyio_backend) as info:
        nginx = peers.Nginx(tmp_path, documented_nginx(env, info.address.port, upstream.port))
        await call(nginx.start)
        try:
            def head(cert: str | None, headers: dict[str, str] | None = None) -> dict[str, str]:
                ctx = ssl.create_default_context(cafile=str(env.dir / "server-ca.pem"))
                if cert is not None:
                    ctx.load_cert_chain(str(env.dir / f"{cert}.pem"), str(env.dir / f"{cert}.key"))
                conn = http.client.HTTPSConnection("127.0.0.1", nginx.port, context=ctx, timeout=10)
                ctx.check_hostname = False
                try:
                    conn.request("GET", "/api", headers={"X-API-Key": API_KEY, **(headers or {})})
                    r = conn.getresponse()
                    r.read()
                    return {"status": str(r.status), **{k.lower(): v for k, v in r.getheaders()}}
                finally:
                    conn.close()

            answers = {cert: await call(head, cert) for cert in ("revoked", "expired", "unknown", "limited")}
            # No certificate in the handshake, a good client's (public) certificate in the very
            # header nginx forwards it in: the documented block sets that header from
            # $ssl_client_escaped_cert (empty here: not sent), so mtlscore is asked about nobody.
            good = parse_certificate(env.leaves["good"].der)
            before = len(upstream.seen)
            stolen = await call(head, None, {"X-SSL-Client-Cert": emit_nginx_escaped_cert(good)})
            # An account allowed from 10.0.0.0/8 only, asked from 127.0.0.1 by a client that
            # claims 10.1.2.3 in X-Forwarded-For: the block replaces it with $remote_addr.
            claimed = await call(head, "other-account", {"X-Forwarded-For": "10.1.2.3"})
            reached = upstream.seen[before:]
        finally:
            nginx.stop()
    assert (stolen["status"], stolen.get("x-mtls-reason")) == ("403", "not_provided"), nginx.error_log()
    assert (claimed["status"], claimed.get("x-mtls-reason")) == ("403", "ip_not_allowed"), nginx.error_log()
    assert reached == [], reached
    got = {cert: (a["status"], a.get("x-mtls-reason")) for cert, a in answers.items()}
    assert got == {
        "revoked": ("403", "revoked"),
        # nginx's own check, before any subrequest: optional_no_ca still refuses an expired
        # certificate with its 400 (docs/auth-service.md says so).
        "expired": ("400", None),
        "unknown": ("403", "untrusted"),
        "limited": ("200", None),
    }, nginx.error_log()
