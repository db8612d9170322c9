"""App-level checks per account: API keys (hashed), bound tokens, IP allowlist, rate limit."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlscore import CertificateRejected, ConfigError, Reason, pki
from mtlscore.gateway.appauth import (
    CREDENTIAL_INVALID,
    CREDENTIAL_MISSING,
    IP_NOT_ALLOWED,
    RATE_LIMITED,
    AccountAuth,
    Rate,
    RateLimiter,
    authorize,
    hash_api_key,
)
from mtlscore.jwt import TokenInvalid
from mtlscore.x509.cert import parse_certificate

NOW = pki.NOW
CERT = parse_certificate(pki.root().leaf().der)


def check(
    auth: AccountAuth | None,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    ip: str = "127.0.0.1",
    now: float = 0.0,
    limiter: RateLimiter | None = None,
    verify: Any = None,
    cert: Any = CERT,
) -> Any:
    return authorize(
        auth,
        headers=headers or [],
        peer_ip=ip,
        cert=cert,
        at=NOW,
        now=now,
        limiter=limiter or RateLimiter(),
        verify_token=verify,
    )


def test_hash_api_key_is_sha256_hex() -> None:
    assert hash_api_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_no_requirements_means_certificate_only() -> None:
    assert check(None).ok
    assert check(AccountAuth("a")).ok


def test_api_key_header_and_bearer() -> None:
    auth = AccountAuth.from_mapping("a", {"api_key_sha256": [hash_api_key("k1"), hash_api_key("k2")]})
    assert check(auth, [(b"x-api-key", b"k2")]).credential == "api_key"
    assert check(auth, [(b"authorization", b"bearer k1")]).ok  # RFC 9110 §11.1: scheme case-insensitive
    bad = check(auth, [(b"x-api-key", b"k3")])
    assert (bad.status, bad.reason) == (401, CREDENTIAL_INVALID)
    assert 'error="invalid_token"' in dict(bad.headers)["WWW-Authenticate"]
    missing = check(auth, [(b"authorization", b"Basic dXNlcjpwdw==")])
    assert (missing.status, missing.reason) == (401, CREDENTIAL_MISSING)
    assert dict(missing.headers)["WWW-Authenticate"] == 'Bearer realm="mtlscore"'


def test_bound_token_outcomes() -> None:
    auth = AccountAuth.from_mapping("a", {"jwks": '{"keys": []}', "token_issuer": "https://as"})
    calls: list[dict[str, Any]] = []

    def ok(token: str, jwks: Any, cert: Any, **kw: Any) -> dict[str, Any]:
        calls.append({"token": token, "cert": cert, **kw})
        return {"sub": "x"}

    r = check(auth, [(b"authorization", b"Bearer t.o.k")], verify=ok)
    assert r.ok and r.credential == "bound_token" and r.claims == {"sub": "x"}
    assert calls[0]["token"] == "t.o.k" and calls[0]["cert"] is CERT and calls[0]["issuer"] == "https://as"

    def mismatch(*a: Any, **kw: Any) -> Any:
        raise CertificateRejected(Reason.BINDING_MISMATCH, "bound to another certificate")

    r = check(auth, [(b"authorization", b"Bearer t")], verify=mismatch)
    assert (r.status, r.reason) == (401, "binding_mismatch")

    def invalid(*a: Any, **kw: Any) -> Any:
        raise TokenInvalid("expired")

    r = check(auth, [(b"authorization", b"Bearer t")], verify=invalid)
    assert (r.status, r.reason) == (401, CREDENTIAL_INVALID)
    r = check(auth, [(b"authorization", b"Bearer t")], verify=ok, cert=None)
    assert (r.status, r.reason) == (401, "binding_mismatch")


def test_real_bound_token_roundtrip() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from mtlscore.jwt import issue_bound_token
    from mtlscore.x509.jwk import jwk_from_public_key

    key = ec.generate_private_key(ec.SECP256R1())
    auth = AccountAuth.from_mapping("a", {"jwks": {"keys": [jwk_from_public_key(key.public_key())]}})
    claims = {"exp": int(NOW.timestamp()) + 60}
    token = issue_bound_token(claims, key, CERT).encode()
    assert check(auth, [(b"authorization", b"Bearer " + token)]).ok
    other = parse_certificate(pki.root().leaf().der)
    assert check(auth, [(b"authorization", b"Bearer " + token)], cert=other).reason == "binding_mismatch"


def test_ip_allowlist() -> None:
    auth = AccountAuth.from_mapping("a", {"ip_allow": ["10.0.0.0/8", "::1/128"]})
    assert check(auth, ip="10.1.2.3").ok and check(auth, ip="::1").ok
    r = check(auth, ip="192.0.2.1")
    assert (r.status, r.reason) == (403, IP_NOT_ALLOWED)
    assert check(auth, ip="not-an-ip").reason == IP_NOT_ALLOWED


def test_rate_limit_token_bucket_and_retry_after() -> None:
    auth = AccountAuth.from_mapping("a", {"rate_limit": "2/min"})
    lim = RateLimiter()
    assert check(auth, now=0, limiter=lim).ok and check(auth, now=1, limiter=lim).ok
    r = check(auth, now=2, limiter=lim)
    assert (r.status, r.reason) == (429, RATE_LIMITED)
    assert dict(r.headers)["Retry-After"] == "28"  # 0.93 token short, 1 token per 30 s
    assert check(auth, now=40, limiter=lim).ok  # refilled


def test_checks_run_in_order_ip_then_rate_then_credential() -> None:
    auth = AccountAuth.from_mapping(
        "a", {"ip_allow": ["10.0.0.0/8"], "rate_limit": "1/s", "api_key_sha256": [hash_api_key("k")]}
    )
    lim = RateLimiter()
    assert check(auth, ip="192.0.2.1", limiter=lim).reason == IP_NOT_ALLOWED
    assert check(auth, ip="10.0.0.1", limiter=lim).reason == CREDENTIAL_MISSING  # spent the token
    assert check(auth, ip="10.0.0.1", limiter=lim).reason == RATE_LIMITED


@pytest.mark.parametrize(
    ("text", "rate"),
    [("100/s", Rate(100, 1)), ("10/min", Rate(10, 60)), ("500/5m", Rate(500, 300)), ("1000/h", Rate(1000, 3600))],
)
def test_rate_parse(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"rate_limit": "fast"}, "accounts.a.rate_limit"),
        ({"rate_limit": "0/s"}, "accounts.a.rate_limit"),
        ({"api_key_sha256": ["plaintext-key"]}, "accounts.a.api_key_sha256"),
        ({"api_key_sha256": 5}, "accounts.a.api_key_sha256"),
        ({"ip_allow": ["nope"]}, "accounts.a.ip_allow"),
        ({"ip_allow": "10.0.0.0/8"}, "accounts.a.ip_allow"),
        ({"jwks": "{not json"}, "accounts.a.jwks"),
        ({"jwks": {"no": "keys"}}, "accounts.a.jwks"),
        ({"token_issuer": 3}, "accounts.a.token_issuer"),
    ],
)
def test_bad_account_values_name_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        AccountAuth.from_mapping("a", table)
    assert info.value.key == key


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=200)), max_size=6), st.text(max_size=40))
def test_arbitrary_headers_never_raise(headers: list[tuple[bytes, bytes]], ip: str) -> None:
    auth = AccountAuth.from_mapping(
        "a", {"api_key_sha256": [hash_api_key("k")], "ip_allow": ["0.0.0.0/0"], "jwks": {"keys": []}}
    )
    r = check(auth, [(k.lower(), v) for k, v in headers], ip=ip)
    assert r.ok or r.status in (401, 403, 429, 500)


# -- allow mode without a valid certificate: whose credential is it (issue 19) ------------------


def _owner(auths: list[Any], headers: list[tuple[bytes, bytes]], cert: Any = None) -> Any:
    from datetime import UTC, datetime

    from mtlscore.gateway.appauth import credential_owner

    return credential_owner(auths, headers=headers, cert=cert, at=datetime.now(UTC), now=0.0)


def test_credential_owner_finds_the_account_of_an_api_key() -> None:
    from mtlscore.gateway.appauth import AccountAuth, hash_api_key

    a = AccountAuth.from_mapping("a", {"api_key_sha256": [hash_api_key("key-a")]})
    b = AccountAuth.from_mapping("b", {"api_key_sha256": [hash_api_key("key-b")]})
    assert _owner([a, b], [(b"x-api-key", b"key-b")]) is b
    assert _owner([a, b], [(b"authorization", b"Bearer key-a")]) is a  # RFC 6750 form of a key
    missing = _owner([a, b], [])
    assert (missing.ok, missing.status, missing.reason) == (False, 401, "credential_missing")
    unknown = _owner([a, b], [(b"x-api-key", b"key-c")])
    assert (unknown.status, unknown.reason) == (401, "credential_invalid")


def test_credential_owner_never_takes_an_api_key_for_a_fapi2_account() -> None:
    from mtlscore.gateway.appauth import AccountAuth, hash_api_key

    fapi = AccountAuth.from_mapping("f", {"api_key_sha256": [hash_api_key("k")], "profile": "fapi2",
                                          "jwks": {"keys": []}})
    assert _owner([fapi], [(b"x-api-key", b"k")]).reason == "credential_invalid"


def test_a_bound_token_without_any_certificate_has_nothing_to_bind_to() -> None:
    from mtlscore.gateway.appauth import AccountAuth

    tokens = AccountAuth.from_mapping("t", {"jwks": {"keys": []}})
    result = _owner([tokens], [(b"authorization", b"Bearer eyJhbGciOi.x.y")])
    assert (result.status, result.reason) == (401, "binding_mismatch")
    # Two accounts take tokens and neither does: no one account's reason, a generic refusal.
    other = AccountAuth.from_mapping("u", {"jwks": {"keys": []}})
    assert _owner([tokens, other], [(b"authorization", b"Bearer eyJhbGciOi.x.y")]).reason == "credential_invalid"
