"""The sans-IO JWKS cache: when to fetch, TTL from Cache-Control, refresh budget, stale keys, bad answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mtlscore import ConfigError, pki
from mtlscore.identity.jwks import (
    JwksCache,
    JwksLimits,
    JwksUnavailable,
    NeedJwks,
    parse_jwks,
    ttl_from_cache_control,
)
from mtlscore.x509.jwk import jwk_from_public_key

URL = "https://as.example/jwks"
LIMITS = JwksLimits(default_ttl=300, min_ttl=60, max_ttl=3600, refresh_interval=30, retry_interval=10,
                    max_stale=1000)


def jwks(*kids: str) -> bytes:
    return json.dumps({"keys": [jwk_from_public_key(pki.new_key("ec"), kid=k) for k in kids]}).encode()


def kids(keys: dict[str, Any]) -> list[str]:
    return [k["kid"] for k in keys["keys"]]


@pytest.mark.parametrize(("header", "ttl"), [
    (None, 300), ("max-age=120", 120), ("public, max-age=5", 60), ("max-age=999999", 3600),
    ("no-store", 60), ("no-cache, max-age=600", 60), ("max-age=abc", 300), ("s-maxage=900, max-age=100", 900),
    (b"MAX-AGE=200", 200), ("private", 300),
])
def test_ttl_from_cache_control(header: str | bytes | None, ttl: float) -> None:
    assert ttl_from_cache_control(header, LIMITS) == ttl


def test_first_use_asks_then_serves_until_expiry() -> None:
    cache = JwksCache(LIMITS)
    with pytest.raises(JwksUnavailable, match="no keys fetched yet"):
        cache.keys(URL, now=0)
    req = cache.due(URL, now=0)
    assert req == NeedJwks(URL, LIMITS.max_bytes, LIMITS.timeout)
    assert cache.answer(req, status=200, body=jwks("a"), cache_control="max-age=100", now=0) is None
    assert kids(cache.keys(URL, now=1)) == ["a"] and cache.due(URL, now=99) is None
    assert cache.due(URL, now=100) == req  # expired: fetch before use


def test_refresh_on_unknown_kid_is_rate_limited() -> None:
    cache = JwksCache(LIMITS)
    cache.answer(NeedJwks(URL), status=200, body=jwks("a"), cache_control=None, now=0)
    assert cache.refresh(URL, now=5) is None  # just fetched
    req = cache.refresh(URL, now=31)
    assert req is not None
    assert cache.refresh(URL, now=40) is None  # once per refresh_interval, whatever the kids
    cache.answer(req, status=200, body=jwks("b"), cache_control=None, now=31)
    assert kids(cache.keys(URL, now=32)) == ["b"]
    assert cache.refresh(URL, now=62) is not None


@pytest.mark.parametrize(("status", "body", "error"), [
    (200, b"not json", "is not JSON"),
    (200, b'{"kty": "EC"}', "is not a JWK Set"),
    (200, b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "no public key"),
    (200, json.dumps({"keys": [{"kty": "EC"}] * 65}).encode(), "the limit is 64"),
    (200, b" " * (256 * 1024 + 1), "the limit is 262144"),
    (500, b"", "HTTP 500"),
])
def test_bad_answers_keep_the_last_good_keys(status: int, body: bytes, error: str) -> None:
    cache = JwksCache(LIMITS)
    cache.answer(NeedJwks(URL), status=200, body=jwks("good"), cache_control="max-age=60", now=0)
    got = cache.answer(NeedJwks(URL), status=status, body=body, cache_control=None, now=60)
    assert got is not None and error in got and error in cache.error(URL)
    assert kids(cache.keys(URL, now=61)) == ["good"]
    assert cache.due(URL, now=65) is None  # retry_interval after the failed attempt
    assert cache.due(URL, now=70) is not None


def test_stale_keys_work_while_refetch_fails_within_max_stale() -> None:
    cache = JwksCache(LIMITS)
    cache.answer(NeedJwks(URL), status=200, body=jwks("a"), cache_control="max-age=60", now=0)
    cache.fail(NeedJwks(URL), "connection refused", now=60)
    assert kids(cache.keys(URL, now=500)) == ["a"]
    with pytest.raises(JwksUnavailable) as e:
        cache.keys(URL, now=60 + 1000)
    assert "connection refused" in e.value.detail and cache.fetches(URL) == 2


def test_parse_jwks_drops_private_members() -> None:
    raw = {"keys": [{**jwk_from_public_key(pki.new_key("ec")), "d": "secret"}, {"kty": "oct", "k": "x"}]}
    parsed = parse_jwks(raw)
    assert len(parsed["keys"]) == 1 and "d" not in parsed["keys"][0]


@pytest.mark.parametrize("kw", [{"min_ttl": -1}, {"default_ttl": 10}, {"max_bytes": 0}, {"timeout": "5"}])
def test_bad_limits(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        JwksLimits(**kw)
