"""The gateway fetches revocation data itself ([revocation] fetch = true), on both runtimes.

A real HTTP server on 127.0.0.1 serves the issuing CA's CRL; the gateway's
runtime fetcher drives the sans-IO validator (Validator.start) before the
session answers. Hard-fail for the leaf, soft-fail for CAs (per-position modes).
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from _gateway import FileServer, gateway

from mtlscore import pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, FileServer]]:
    d = tmp_path_factory.mktemp("gwrev")
    crls = FileServer()
    now = datetime.now(UTC)
    url = f"http://127.0.0.1:{crls.port}/issuing.crl"
    root = pki.root("CN=Rev Root", now=now)
    issuing = root.intermediate("CN=Rev Issuing")
    leaves = {
        "good": issuing.leaf("CN=good", crl_urls=[url]),
        "revoked": issuing.leaf("CN=revoked", crl_urls=[url]),
        "unreachable": issuing.leaf("CN=unreachable", crl_urls=[f"http://127.0.0.1:{closed_port()}/gone.crl"]),
    }
    crls.files["/issuing.crl"] = issuing.crl(revoked=[leaves["revoked"]])
    server_ca = pki.root("CN=Rev Server CA", now=now)
    server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"])
    for name, data in {"root.pem": root.pem, "server-ca.pem": server_ca.pem, "server.pem": server.pem,
                       "server.key": server.key_pem}.items():
        (d / name).write_bytes(data)
    for name, leaf in leaves.items():
        (d / f"{name}.pem").write_bytes(leaf.chain_pem)
        (d / f"{name}.key").write_bytes(leaf.key_pem)
    (d / "mtlscore.toml").write_text("""
[trust]
anchors = ["root.pem"]

[revocation]
fetch = true
mode = "hard"
mode_ca = "soft"

[server]
listen = "127.0.0.1:0"
certificate = "server.pem"
key = "server.key"
reload_poll_seconds = 0
reject_at = "http"    # fetching: decided after the handshake (test_gateway_reject_at covers both)
""")
    yield d, crls
    crls.close()


def get(d: Path, port: int, cert: str, *, forwarded: bool = False) -> tuple[int, dict[str, Any]]:
    """GET / as the client ``cert``, or, ``forwarded``, as a trusted proxy: no client
    certificate of its own, the client's chain in RFC 9440 headers."""
    from mtlscore import load_certificates
    from mtlscore.proxy.headers import emit_client_cert, emit_client_cert_chain

    ctx = ssl.create_default_context(cafile=str(d / "server-ca.pem"))
    headers = {}
    if forwarded:
        leaf, *rest = load_certificates((d / f"{cert}.pem").read_bytes())
        headers = {"Client-Cert": emit_client_cert(leaf), "Client-Cert-Chain": emit_client_cert_chain(rest),
                   "X-Forwarded-For": "192.0.2.7"}
    else:
        ctx.load_cert_chain(str(d / f"{cert}.pem"), str(d / f"{cert}.key"))
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=15)
    try:
        conn.request("GET", "/", headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


@pytest.mark.anyio
@pytest.mark.parametrize("forwarded", [False, True], ids=["tls", "forwarded"])
async def test_gateway_fetches_crl(world: tuple[Path, FileServer], anyio_backend: str, forwarded: bool) -> None:
    # Behind a trusted proxy (forwarded) each request's chain waits for its revocation
    # data as a directly connected client's does.
    d, crls = world
    config = d / "mtlscore.toml"
    if forwarded:
        config = d / "proxied.toml"
        config.write_text((d / "mtlscore.toml").read_text() + 'trusted_proxies = ["127.0.0.1/32"]\n')
    before = len(crls.hits)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        status, body = await anyio.to_thread.run_sync(partial(get, d, port, "good", forwarded=forwarded))
        assert status == 200, body
        assert body.get("identity", {}).get("subject_dn") == "CN=good", body
        status, body = await anyio.to_thread.run_sync(partial(get, d, port, "revoked", forwarded=forwarded))
        assert (status, body.get("error")) == (403, "revoked"), body
        # Hard-fail for the leaf: a CRL that cannot be fetched rejects.
        status, body = await anyio.to_thread.run_sync(partial(get, d, port, "unreachable", forwarded=forwarded))
        assert (status, body.get("error")) == (403, "revocation_unavailable"), body
    # The CRL was fetched over HTTP by the gateway itself, and cached: once per run.
    assert crls.hits[before:] == ["/issuing.crl"]
