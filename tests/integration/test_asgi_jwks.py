"""The ASGI middleware's BoundToken(jwks_uri=...) on both runtimes, against a real loopback JWKS
server that rotates the authorization server's keys mid-test."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_asgi import GOOD, IDMAP, INTER, VALIDATOR, Recorder, tls_scope
from test_fetch import Route, Server, anyio_backend, fetcher_for, server  # noqa: F401 - fixtures

from mtlscore import ConfigError, pki
from mtlscore.asgi import BoundToken, MtlsMiddleware
from mtlscore.identity.jwks import JwksCache, JwksLimits
from mtlscore.jwt import issue_bound_token
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_public_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CLAIMS = {"exp": int(pki.NOW.timestamp()) + 600}


async def call(mw: MtlsMiddleware, token: str) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await mw(tls_scope([GOOD, INTER], headers=[(b"authorization", f"Bearer {token}".encode())]), receive, send)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], json.loads(body) if body != b"ok" else {}


def keyset(*pairs: tuple[str, Any]) -> bytes:
    return json.dumps({"keys": [jwk_from_public_key(k, kid=kid) for kid, k in pairs]}).encode()


@pytest.mark.anyio
async def test_middleware_follows_a_rotating_jwks_uri(server: Server, anyio_backend: str) -> None:  # noqa: F811
    k1, k2 = pki.new_key("ec"), pki.new_key("ec")
    leaf = parse_certificate(GOOD.der)
    server.routes["/jwks"] = Route(keyset(("k1", k1)), headers={"Cache-Control": "max-age=300"})
    cache = JwksCache(JwksLimits(refresh_interval=0))
    bound = BoundToken(jwks_uri=server.url("/jwks"), jwks_cache=cache, algorithms=("ES256",))
    mw = MtlsMiddleware(Recorder(), VALIDATOR, identity_map=IDMAP, bound_token=bound, clock=lambda: pki.NOW,
                        fetcher=fetcher_for(anyio_backend))
    assert (await call(mw, issue_bound_token(CLAIMS, k1, leaf, kid="k1")))[0] == 200
    assert (await call(mw, issue_bound_token(CLAIMS, k1, leaf, kid="k1")))[0] == 200
    assert server.hits["/jwks"] == 1
    server.routes["/jwks"] = Route(keyset(("k2", k2)))
    assert (await call(mw, issue_bound_token(CLAIMS, k2, leaf, kid="k2")))[0] == 200
    assert server.hits["/jwks"] == 2
    status, body = await call(mw, issue_bound_token(CLAIMS, k1, leaf, kid="k1"))
    assert status == 401 and "kid 'k1'" in body["detail"]
    # The server goes away: the last good keys keep working.
    server.routes["/jwks"] = Route(b"", status=500)
    assert (await call(mw, issue_bound_token(CLAIMS, k2, leaf, kid="k2")))[0] == 200


def test_jwks_uri_needs_a_fetcher_and_one_source() -> None:
    with pytest.raises(ConfigError, match="fetcher"):
        MtlsMiddleware(Recorder(), VALIDATOR, bound_token=BoundToken(jwks_uri="https://as.example/jwks"))
    with pytest.raises(ConfigError, match="exactly one"):
        BoundToken(jwks={"keys": []}, jwks_uri="https://as.example/jwks")
    with pytest.raises(ConfigError):
        BoundToken(jwks_uri="as.example/jwks")


@pytest.mark.anyio
async def test_middleware_accepts_self_signed_clients_by_registered_key(server: Server, anyio_backend: str) -> None:  # noqa: F811
    from mtlscore.identity.identity_map import IdentityMap, Principal
    from mtlscore.identity.self_signed import SelfSignedClient
    from mtlscore.x509.jwk import jwk_from_certificate

    inline, remote, rotated, stranger = (pki.root(f"CN={n}", ca=False, eku=[pki.CLIENT_AUTH])
                                         for n in ("inline", "remote", "rotated", "stranger"))

    def jwk(issued: pki.Issued) -> dict[str, Any]:
        return jwk_from_certificate(parse_certificate(issued.der))

    server.routes["/client-jwks"] = Route(json.dumps({"keys": [jwk(remote)]}).encode())
    idmap = IdentityMap([], self_signed=[
        SelfSignedClient(Principal("inline-app"), jwks={"keys": [jwk(inline)]}),
        SelfSignedClient(Principal("remote-app"), jwks_uri=server.url("/client-jwks")),
    ])
    app = Recorder()
    mw = MtlsMiddleware(app, VALIDATOR, identity_map=idmap, clock=lambda: pki.NOW,
                        fetcher=fetcher_for(anyio_backend), jwks_cache=JwksCache(JwksLimits(refresh_interval=0)))

    async def who(issued: pki.Issued) -> tuple[int, Any]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        app.scope = None
        await mw(tls_scope([issued]), receive, send)
        if sent[0]["status"] == 200:
            return 200, app.scope["state"]["mtls_principal"].id
        return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"]

    assert await who(inline) == (200, "inline-app")
    assert await who(remote) == (200, "remote-app")
    assert await who(stranger) == (403, "not_allowlisted")
    assert await who(rotated) == (403, "not_allowlisted")
    server.routes["/client-jwks"] = Route(json.dumps({"keys": [jwk(remote), jwk(rotated)]}).encode())
    assert await who(rotated) == (200, "remote-app")
    # A CA-issued leaf sent without its intermediate is no candidate: the validator's verdict stands.
    assert await who(GOOD) == (403, "untrusted")


def test_uvicorn_tls_and_the_middleware_accept_a_key_registered_client(server: Server, tmp_path: Any) -> None:  # noqa: F811
    """uvicorn with mtlscore's TLS (uvicorn_tls) + MtlsMiddleware, real curl: a self-signed client whose key
    is registered at a jwks_uri gets in as its account; another self-signed certificate is not_allowlisted."""
    pytest.importorskip("OpenSSL")
    import _nginx as peers

    if peers.CURL is None:
        pytest.skip("curl not installed")
    from mtlscore.config import load_config
    from mtlscore.runtimes.fetch_asyncio import AsyncioFetcher
    from mtlscore.runtimes.uvicorn_tls import uvicorn_tls
    from mtlscore.x509.jwk import jwk_from_certificate

    me, stranger = (pki.root(f"CN={n}", ca=False, eku=[pki.CLIENT_AUTH]) for n in ("fintech", "stranger"))
    server_ca = pki.root("CN=API Server CA")
    srv = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_ip=["127.0.0.1"])
    for name, issued in (("me", me), ("stranger", stranger)):
        (tmp_path / f"{name}.pem").write_bytes(issued.pem)
        (tmp_path / f"{name}.key").write_bytes(issued.key_pem)
    (tmp_path / "server.pem").write_bytes(srv.pem)
    (tmp_path / "server.key").write_bytes(srv.key_pem)
    (tmp_path / "server-ca.pem").write_bytes(server_ca.pem)
    (tmp_path / "root.pem").write_bytes(pki.root().pem)
    server.routes["/jwks"] = Route(json.dumps({"keys": [jwk_from_certificate(parse_certificate(me.der))]}).encode())
    (tmp_path / "m.toml").write_text('[trust]\nanchors = ["root.pem"]\n\n[[accounts]]\nid = "fintech-app"\n'
                                     f'method = "self_signed_tls_client_auth"\njwks_uri = "{server.url("/jwks")}"\n')
    config = load_config(tmp_path / "m.toml")

    async def whoami(scope: Any, receive: Any, send: Any) -> None:
        body = json.dumps({"account": scope["state"]["mtls_principal"].id}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    app = MtlsMiddleware(whoami, config.validator(), identity_map=config.accounts, fetcher=AsyncioFetcher())
    uv = peers.UvicornThread(app, **uvicorn_tls(certificate=tmp_path / "server.pem", key=tmp_path / "server.key"))
    uv.start()
    try:
        def curl(who: str) -> Any:
            return peers.curl(f"https://127.0.0.1:{uv.port}/", cacert=tmp_path / "server-ca.pem",
                              cert=tmp_path / f"{who}.pem", key=tmp_path / f"{who}.key")

        accepted, refused = curl("me"), curl("stranger")
    finally:
        uv.stop()
    assert (accepted.status, accepted.body) == (200, {"account": "fintech-app"}), accepted
    assert (refused.status, refused.body["error"]) == (403, "not_allowlisted"), refused
