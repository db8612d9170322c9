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
