"""Per-account token algorithms, profile = "fapi2", token keys from a jwks_uri (sans-IO), account keys."""

from __future__ import annotations

from typing import Any

import pytest

from mtlscore import ConfigError, pki
from mtlscore.gateway.appauth import (
    CREDENTIAL_INVALID,
    CREDENTIAL_MISSING,
    INSECURE_TLS,
    JWKS_UNAVAILABLE,
    AccountAuth,
    RateLimiter,
    authorize,
    hash_api_key,
)
from mtlscore.identity.jwks import JwksCache, NeedJwks
from mtlscore.jwt import issue_bound_token
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_public_key

NOW = pki.NOW
CERT = parse_certificate(pki.root().leaf().der)
RSA, EC = pki.new_key("rsa"), pki.new_key("ec")
JWKS = {"keys": [jwk_from_public_key(RSA, kid="r"), jwk_from_public_key(EC, kid="e")]}
URL = "https://as.example/jwks"


def bearer(key: Any, alg: str, kid: str) -> list[tuple[bytes, bytes]]:
    token = issue_bound_token({"exp": int(NOW.timestamp()) + 60}, key, CERT, algorithm=alg, kid=kid)
    return [(b"authorization", b"Bearer " + token.encode())]


def check(auth: AccountAuth, headers: list[tuple[bytes, bytes]], **kw: Any) -> Any:
    return authorize(auth, headers=headers, peer_ip="127.0.0.1", cert=CERT, at=NOW,
                     now=kw.pop("now", 0.0), limiter=kw.pop("limiter", RateLimiter()), **kw)


def test_default_algorithms_accept_rs256_and_token_algorithms_narrow_them() -> None:
    default = AccountAuth.from_mapping("a", {"jwks": JWKS})
    assert check(default, bearer(RSA, "RS256", "r")).ok
    narrow = AccountAuth.from_mapping("a", {"jwks": JWKS, "token_algorithms": ["PS256", "ES256"]})
    r = check(narrow, bearer(RSA, "RS256", "r"))
    assert (r.ok, r.reason) == (False, CREDENTIAL_INVALID) and "alg 'RS256' is not allowed" in r.detail
    assert check(narrow, bearer(RSA, "PS256", "r")).ok and check(narrow, bearer(EC, "ES256", "e")).ok


def test_fapi2_refuses_rs256_and_api_keys_and_weak_tls() -> None:
    auth = AccountAuth.from_mapping("a", {"profile": "fapi2", "jwks": JWKS, "api_key_sha256": [hash_api_key("k")]})
    assert auth.token_algorithms == ("PS256", "ES256", "EdDSA")
    r = check(auth, bearer(RSA, "RS256", "r"))
    assert (r.ok, r.status) == (False, 401) and "RS256" in r.detail
    assert check(auth, bearer(RSA, "PS256", "r")).ok
    # FAPI 2.0: sender-constrained tokens only; the API key does not count.
    r = check(auth, [(b"x-api-key", b"k")])
    assert r.reason == CREDENTIAL_MISSING and "certificate-bound Bearer token" in r.detail
    ok_tls = {"tls_version": "TLSv1.2", "tls_cipher": "ECDHE-ECDSA-AES128-GCM-SHA256"}
    assert check(auth, bearer(EC, "ES256", "e"), **ok_tls).ok
    assert check(auth, bearer(EC, "ES256", "e"), tls_version="TLSv1.3", tls_cipher="TLS_CHACHA20_POLY1305_SHA256").ok
    for version, cipher in (("TLSv1.2", "AES128-SHA"), ("TLSv1.2", "ECDHE-RSA-AES128-SHA256"), ("TLSv1.1", "")):
        r = check(auth, bearer(EC, "ES256", "e"), tls_version=version, tls_cipher=cipher)
        assert (r.status, r.reason) == (403, INSECURE_TLS), (version, cipher)


@pytest.mark.parametrize(("table", "key", "fragment"), [
    ({"profile": "fapi2", "jwks": JWKS, "token_algorithms": ["RS256"]}, "accounts.a.token_algorithms", "fapi2"),
    ({"profile": "fapi2"}, "accounts.a.profile", "certificate-bound"),
    ({"profile": "fapi9"}, "accounts.a.profile", "unknown profile"),
    ({"jwks": JWKS, "token_algorithms": ["HS256"]}, "accounts.a.token_algorithms", "not allowed"),
    ({"jwks": JWKS, "token_algorithms": []}, "accounts.a.token_algorithms", "non-empty"),
    ({"jwks": "https://as.example/jwks"}, "accounts.a.jwks", "jwks_uri"),
    ({"jwks_uri": "ftp://as.example/jwks"}, "accounts.a.jwks_uri", "not an http"),
    ({"jwks": JWKS, "jwks_uri": URL}, "accounts.a.jwks_uri", "not both"),
    ({"jwks_uri": URL, "token": {"jwks_uri": URL}}, "accounts.a.jwks_uri", "twice"),
    ({"token": {"keys": []}}, "accounts.a.token.keys", "unknown key"),
    ({"method": "private_key_jwt"}, "accounts.a.method", "must be one of"),
    ({"method": "self_signed_tls_client_auth"}, "accounts.a.jwks", "jwks or jwks_uri"),
])
def test_bad_token_settings_name_the_key(table: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        AccountAuth.from_mapping("a", table)
    assert e.value.key == key and fragment in e.value.message


def test_self_signed_accounts_keep_token_keys_in_the_token_table() -> None:
    auth = AccountAuth.from_mapping("a", {"method": "self_signed_tls_client_auth", "jwks": JWKS,
                                          "token": {"jwks_uri": URL}})
    assert auth.client_jwks is not None and auth.jwks is None and auth.jwks_uri == URL


def test_jwks_uri_asks_to_fetch_then_decides_and_refetches_on_a_miss() -> None:
    auth = AccountAuth.from_mapping("a", {"token": {"jwks_uri": URL}, "rate_limit": "1/min"})
    cache, limiter = JwksCache(), RateLimiter()
    first = check(auth, bearer(EC, "ES256", "e"), jwks_cache=cache, limiter=limiter)
    assert not first.ok and first.need == NeedJwks(URL, cache.limits.max_bytes, cache.limits.timeout)
    cache.answer(first.need, status=200, body=b'{"keys": []}', cache_control=None, now=0)  # empty: an error
    unavailable = check(auth, bearer(EC, "ES256", "e"), jwks_cache=cache, limiter=limiter, count_rate=False)
    assert (unavailable.status, unavailable.reason) == (503, JWKS_UNAVAILABLE) and URL in unavailable.detail
    # Keys arrive later; the rate limit was counted once for the request that waited.
    cache.answer(NeedJwks(URL), status=200, body=f'{{"keys": [{_json(EC, "e")}]}}'.encode(), cache_control=None,
                 now=100)
    assert check(auth, bearer(EC, "ES256", "e"), jwks_cache=cache, limiter=limiter, count_rate=False, now=100).ok
    # A token under an unknown kid asks for one refetch (once per refresh_interval), then is refused.
    miss = check(auth, bearer(RSA, "PS256", "r"), jwks_cache=cache, limiter=limiter, count_rate=False, now=200)
    assert miss.need is not None
    again = check(auth, bearer(RSA, "PS256", "r"), jwks_cache=cache, limiter=limiter, count_rate=False, now=201)
    assert (again.need, again.reason) == (None, CREDENTIAL_INVALID)


def _json(key: Any, kid: str) -> str:
    import json

    return json.dumps(jwk_from_public_key(key, kid=kid))


def test_account_token_mistakes_are_config_errors_at_load(tmp_path: Any) -> None:
    from mtlscore.config import load_config

    root = pki.root()
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "as.jwks").write_text('{"keys": []}')
    base = '[trust]\nanchors = ["root.pem"]\n\n[[accounts]]\nid = "a"\nmatch = { cn = "a" }\n'
    (tmp_path / "ok.toml").write_text(base + 'profile = "fapi2"\ntoken.jwks_file = "as.jwks"\n')
    assert load_config(tmp_path / "ok.toml").accounts is not None
    (tmp_path / "bad.toml").write_text(base + 'profile = "fapi2"\ntoken.jwks_uri = "https://as.example/jwks"\n'
                                       'token_algorithms = ["RS256"]\n')
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "bad.toml")
    assert e.value.key == "accounts[0].token_algorithms" and "fapi2" in e.value.message
