"""``[server] mode = "auth"`` behind real Caddy ``forward_auth`` (issue #20 item 3), both runtimes.

Runs only where a ``caddy`` binary is installed (Debian bookworm packages 2.6.2; the CI
image does not install it, so there this module is skipped). What it shows is what
docs/auth-service.md says about Caddy.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import _nginx as peers
import pytest
from test_gateway import API_KEY, Env, Upstream, anyio_backend, call, env, gateway, upstream  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CADDY = shutil.which("caddy")
CADDYFILE = """{{
    admin off
    auto_https off
    storage file_system {d}/caddy-data
}}
https://localhost:{{port}} {{
    bind 127.0.0.1
    tls {d}/server.pem {d}/server.key {{
        client_auth {{
            mode request
        }}
    }}
    forward_auth https://127.0.0.1:{gateway} {{
        uri /_mtlscore
        header_up Client-Cert ":{{http.request.tls.client.certificate_der_base64}}:"
        header_up X-Forwarded-For {{remote_host}}
        copy_headers X-Mtls-Account X-Client-Cert-Hash X-Client-Cert-SPIFFE Client-Cert X-Mtls-Unanswered
        transport http {{
            tls_trusted_ca_certs {d}/server-ca.pem
            tls_server_name localhost
        }}
    }}
    reverse_proxy 127.0.0.1:{upstream}
}}
"""


class Caddy:
    def __init__(self, prefix: Path, text: str) -> None:
        self.prefix, self.text = prefix, text
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = prefix / "caddy.log"

    def start(self) -> Caddy:
        assert CADDY is not None
        self.port = peers.free_port()
        conf = self.prefix / "Caddyfile"
        conf.write_text(self.text.replace("{port}", str(self.port)))
        environ = {**os.environ, "HOME": str(self.prefix), "XDG_DATA_HOME": str(self.prefix),
               "XDG_CONFIG_HOME": str(self.prefix)}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([CADDY, "run", "--config", str(conf), "--adapter", "caddyfile"],
                                         stdout=out, stderr=subprocess.STDOUT, env=environ)
        if not peers.wait_for_port(self.port, proc=self.proc):
            self.stop()
            raise RuntimeError(f"caddy did not start:\n{self.log.read_text()[-3000:]}")
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        peers.stop_process(proc)


@pytest.mark.anyio
async def test_caddy_forward_auth(
    env: Env, upstream: Upstream, anyio_backend: str, tmp_path: Path,  # noqa: F811
) -> None:
    if CADDY is None or peers.CURL is None:
        pytest.skip("caddy or curl not installed")
    config = env.config(f"caddy-auth-{anyio_backend}.toml", mode="auth")
    (env.dir / "issuing.pem").write_bytes(env.issuing.pem)
    text = config.read_text().replace('anchors = ["root.pem"]', 'anchors = ["root.pem"]\nintermediates = ["issuing.pem"]')
    config.write_text(text + 'trusted_proxies = ["127.0.0.1/32"]\n')
    async with gateway(config, anyio_backend) as info:
        caddy = Caddy(tmp_path, CADDYFILE.format(d=env.dir, gateway=info.address.port, upstream=upstream.port))
        await call(caddy.start)
        try:
            def via(cert: str | None, headers: dict[str, str]) -> peers.Reply:
                kw = {"cert": env.dir / f"{cert}.pem", "key": env.dir / f"{cert}.key"} if cert else {}
                return peers.curl(f"https://localhost:{caddy.port}/api", cacert=env.dir / "server-ca.pem",
                                  headers=headers, **kw)  # type: ignore[arg-type]

            spoofs = {"X-Mtls-Account": "root", "X-Client-Cert-SPIFFE": "spiffe://forged/admin",
                      "X-Mtls-Unanswered": "forged"}
            ok = await call(via, "good", {**spoofs, "X-API-Key": API_KEY})
            seen = list(upstream.seen)
            revoked = await call(via, "revoked", {"X-API-Key": API_KEY})
            none = await call(via, None, {"X-API-Key": API_KEY})
            # No certificate in the handshake, a good client's (public) certificate in the
            # header forward_auth sends it in: header_up replaces it with the (empty) TLS one.
            good = env.leaves["good"].der
            stolen = await call(via, None, {"X-API-Key": API_KEY, "Client-Cert": f":{base64.b64encode(good).decode()}:"})
        finally:
            caddy.stop()
    log = caddy.log.read_text()[-3000:]
    assert ok.status == 200, (ok, log)
    headers = seen[0]["headers"]
    assert [v for k, v in headers if k == "x-mtls-account"] == ["partner-abc"], headers
    assert (revoked.status, none.status, stolen.status) == (403, 403, 403), log
    assert len(upstream.seen) == 1
    # A copied header mtlscore answers empty (the good certificate has no SPIFFE ID) replaces
    # the client's copy with the empty value: the forged one never reaches the upstream.
    assert [v for k, v in headers if k == "x-client-cert-spiffe"] == [""], headers
    assert not {"root", "spiffe://forged/admin"} & {v for _, v in headers}, headers
    # A copied header the answer does not carry at all: Caddy 2.6.2 drops the client's copy but
    # sends its own unexpanded placeholder (docs/auth-service.md: copy only what mtlscore always sends).
    assert [v for k, v in headers if k == "x-mtls-unanswered"] == ["{http.reverse_proxy.header.X-Mtls-Unanswered}"]
