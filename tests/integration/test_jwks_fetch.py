"""JWKS from a URL on both runtimes: a real loopback HTTP server whose keys rotate mid-test."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from test_fetch import Route, Server, anyio_backend, down_url, fetcher_for, server, silent_url  # noqa: F401 - fixtures

from mtlscore import pki
from mtlscore.identity.jwks import JwksCache, JwksLimits, JwksUnavailable, with_jwks
from mtlscore.jwt import TokenInvalid, issue_bound_token, verify_bound_token
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_public_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NOW = pki.NOW
CERT = parse_certificate(pki.root().leaf("CN=client").der)
CLAIMS = {"sub": "client", "exp": int((NOW + timedelta(minutes=5)).timestamp())}
LIMITS = JwksLimits(default_ttl=300, min_ttl=60, refresh_interval=30, retry_interval=10, max_stale=600,
                    max_bytes=8192)


def keyset(*pairs: tuple[str, Any]) -> bytes:
    return json.dumps({"keys": [jwk_from_public_key(k, kid=kid, use="sig") for kid, k in pairs]}).encode()


def missed(exc: Exception) -> bool:
    return isinstance(exc, TokenInvalid) and exc.key_miss


@pytest.mark.anyio
async def test_rotation_mid_test(server: Server, anyio_backend: str) -> None:  # noqa: F811
    old, new, rogue = pki.new_key("ec"), pki.new_key("ec"), pki.new_key("ec")
    server.routes["/jwks"] = Route(keyset(("k1", old)), headers={"Cache-Control": "max-age=120",
                                                                  "Content-Type": "application/jwk-set+json"})
    url = server.url("/jwks")
    cache, fetcher = JwksCache(LIMITS), fetcher_for(anyio_backend, timeout=5.0)

    async def verify(token: str, now: float) -> dict[str, Any]:
        return await with_jwks(fetcher, cache, url, lambda keys: verify_bound_token(token, keys, CERT, at=NOW),
                               now=now, missed=missed)

    assert (await verify(issue_bound_token(CLAIMS, old, CERT, kid="k1"), 0))["sub"] == "client"
    assert (await verify(issue_bound_token(CLAIMS, old, CERT, kid="k1"), 10))["sub"] == "client"
    assert server.hits["/jwks"] == 1  # cached (max-age=120)

    # The AS rotates: k2 replaces k1. A token with k2 makes the cache refetch once.
    server.routes["/jwks"] = Route(keyset(("k2", new)), headers={"Cache-Control": "max-age=120"})
    assert (await verify(issue_bound_token(CLAIMS, new, CERT, kid="k2"), 40))["sub"] == "client"
    assert server.hits["/jwks"] == 2
    # An unknown kid right after: no refetch within refresh_interval, a clear refusal.
    with pytest.raises(TokenInvalid, match="kid 'k9'"):
        await verify(issue_bound_token(CLAIMS, rogue, CERT, kid="k9"), 50)
    assert server.hits["/jwks"] == 2
    # A forged token under a known kid: refused without a refetch storm either.
    with pytest.raises(TokenInvalid, match="does not verify"):
        await verify(issue_bound_token(CLAIMS, rogue, CERT, kid="k2"), 55)
    assert server.hits["/jwks"] == 2

    # The AS breaks (bad JSON): the last good keys stay; then it goes down: stale keys
    # work until max_stale past expiry, then the URL is unavailable with the reason.
    server.routes["/jwks"] = Route(b"<html>oops</html>")
    token = issue_bound_token(CLAIMS, new, CERT, kid="k2")
    assert (await verify(token, 200))["sub"] == "client"  # expired at 160: refetched, bad, stale keys used
    assert server.hits["/jwks"] == 3 and "is not JSON" in cache.error(url)
    server.routes["/jwks"] = Route(b"", status=503)
    assert (await verify(token, 700))["sub"] == "client"
    assert "503" in cache.error(url)
    with pytest.raises(JwksUnavailable, match="503"):
        await verify(token, 160 + 600 + 1)


@pytest.mark.anyio
async def test_size_limit_and_down_server(server: Server, anyio_backend: str, down_url: str) -> None:  # noqa: F811
    key = pki.new_key("ec")
    server.routes["/big"] = Route(b'{"keys": [' + b" " * 9000 + b"]}")
    cache, fetcher = JwksCache(LIMITS), fetcher_for(anyio_backend, timeout=2.0)
    with pytest.raises(JwksUnavailable, match="8192"):
        await with_jwks(fetcher, cache, server.url("/big"), lambda k: k, now=0, missed=missed)
    with pytest.raises(JwksUnavailable):
        await with_jwks(fetcher, cache, down_url, lambda k: k, now=0, missed=missed)
    server.routes["/ok"] = Route(keyset(("a", key)))
    keys = await with_jwks(fetcher, cache, server.url("/ok"), lambda k: k, now=0, missed=missed)
    assert [k["kid"] for k in keys["keys"]] == ["a"]  # type: ignore[index, union-attr]


@pytest.mark.anyio
async def test_a_silent_jwks_server_times_out_within_the_limit(silent_url: str, anyio_backend: str) -> None:  # noqa: F811
    # The fetcher alone would wait 300 s, past this module's 60 s test timeout: only
    # JwksLimits.timeout ends the fetch in time.
    cache = JwksCache(JwksLimits(timeout=0.5))
    fetcher = fetcher_for(anyio_backend, timeout=300.0)
    with pytest.raises(JwksUnavailable, match=r"timed out after 0\.5 s"):
        await with_jwks(fetcher, cache, silent_url, lambda k: k, now=0, missed=missed)
