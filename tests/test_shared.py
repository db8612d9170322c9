"""``[shared]`` without a Redis: the settings, the session's CheckRate, the on-error choices, what
of a fetched answer is shared and for how long, the entries' tag, and the runtime's store
wrapper (timeouts, retry interval, counting, one log line per outage) over a scripted backend.
The real Redis is in tests/integration/test_shared_redis.py."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from ocsp_helpers import ocsp_response
from test_session import GOOD, NOW, Driver, facts, gateway, req

from mtlscore import ConfigError, pki
from mtlscore.config import parse_config
from mtlscore.gateway.appauth import (
    RATE_LIMIT_UNAVAILABLE,
    AccountAuth,
    NeedRate,
    Rate,
    RateAnswer,
    RateLimiter,
    authorize,
)
from mtlscore.gateway.events import CheckRate, Outcome, WriteClient
from mtlscore.gateway.session import Session, State
from mtlscore.gateway.shared import (
    SharedSettings,
    cache_key,
    redacted,
    seal,
    shared_from_config,
    shared_ttl,
    unseal,
)
from mtlscore.identity.jwks import JwksCache, JwksLimits, NeedJwks
from mtlscore.runtimes.metrics import Metrics
from mtlscore.runtimes.shared import SharedStore
from mtlscore.verify.machine import NeedCRL, NeedIssuer, NeedOCSP
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_certificate

URL = "redis://127.0.0.1:6379/0"
SECRET = "s" * 32
SETTINGS = SharedSettings(URL)


# -- [shared] settings -------------------------------------------------------------------------


def test_defaults_and_every_key() -> None:
    s = shared_from_config({"redis": URL})
    assert s == SharedSettings(URL, "mtlscore:", 0.1, 0.1, 1.0, "local", True, 3600.0, 4 * 1024 * 1024, 32, None)
    full = shared_from_config({
        "redis": "rediss://:pw@redis.internal:6380/2", "prefix": "gw1:", "timeout_seconds": 0.25,
        "connect_timeout_seconds": 0.5, "retry_interval_seconds": 0, "rate_limit_on_error": "closed",
        "caches": False, "cache_max_ttl_seconds": 600, "cache_max_bytes": 1024, "max_connections": 4,
        "secret": SECRET,
    })
    assert (full.prefix, full.timeout, full.connect_timeout, full.retry_interval, full.rate_limit_on_error,
            full.caches, full.cache_max_ttl, full.cache_max_bytes, full.max_connections, full.secret) == (
        "gw1:", 0.25, 0.5, 0.0, "closed", False, 600.0, 1024, 4, SECRET.encode())
    assert shared_from_config({"redis": "unix:///run/redis/redis.sock"}).url == "unix:///run/redis/redis.sock"
    assert SECRET not in repr(full)  # the secret never lands in a log line that prints the settings


@pytest.mark.parametrize(("table", "key", "words"), [
    ({}, "shared.redis", "required"),
    ({"redis": 6379}, "shared.redis", "required"),
    ({"redis": "http://127.0.0.1:6379"}, "shared.redis", "redis://, rediss:// or unix://"),
    ({"redis": "redis://"}, "shared.redis", "names no host"),
    ({"redis": "redis://h:99999"}, "shared.redis", "not a URL"),
    ({"redis": "redis://h/x"}, "shared.redis", "database number"),
    ({"redis": "unix://"}, "shared.redis", "no socket path"),
    ({"redis": URL, "bogus": 1}, "shared.bogus", "unknown key"),
    ({"redis": URL, "timeout_seconds": 0}, "shared.timeout_seconds", "positive"),
    ({"redis": URL, "timeout_seconds": "100ms"}, "shared.timeout_seconds", "number of seconds"),
    ({"redis": URL, "connect_timeout_seconds": float("inf")}, "shared.connect_timeout_seconds", "seconds"),
    ({"redis": URL, "rate_limit_on_error": "maybe"}, "shared.rate_limit_on_error", "local, open, closed"),
    ({"redis": URL, "caches": "yes"}, "shared.caches", "true or false"),
    ({"redis": URL, "cache_max_bytes": 0}, "shared.cache_max_bytes", "positive integer"),
    ({"redis": URL, "max_connections": True}, "shared.max_connections", "positive integer"),
    ({"redis": URL, "prefix": 1}, "shared.prefix", "string"),
    ({"redis": URL, "secret": "short"}, "shared.secret", "at least 32"),
])
def test_bad_values_name_the_key(table: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        shared_from_config(table)
    assert info.value.key == key and words in info.value.message


def test_a_password_in_the_url_is_never_repeated() -> None:
    with pytest.raises(ConfigError) as info:
        shared_from_config({"redis": "redis://:hunter2@h/notanumber"})
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    assert redacted("redis://user:hunter2@h:1/0") == "redis://user:***@h:1/0"
    assert SharedSettings("rediss://:hunter2@h").safe_url == "rediss://:***@h"


def test_the_section_is_read_by_the_config_file_and_needs_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_config({"shared": {"redis": URL}}, base_dir=pathlib.Path(".")).shared == SharedSettings(URL)
    assert parse_config({}, base_dir=pathlib.Path(".")).shared is None
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a))
    with pytest.raises(ConfigError) as info:
        parse_config({"shared": {"redis": URL}}, base_dir=pathlib.Path("."))
    assert info.value.key == "shared.redis" and "pip install 'mtlscore[redis]'" in info.value.message


# -- authorize and the session ----------------------------------------------------------------

LIMITED = AccountAuth("acme", rate_limit=Rate(2, 60.0))


def _authorize(**kw: Any) -> Any:
    base: dict[str, Any] = {"headers": [], "peer_ip": "127.0.0.1", "cert": None, "at": NOW, "now": 0.0,
                            "limiter": RateLimiter()}
    return authorize(LIMITED, **{**base, **kw})


def test_a_shared_rate_limit_is_asked_for_then_decided_by_the_answer() -> None:
    first = _authorize(shared_rates=True)
    assert not first.ok and first.need_rate == NeedRate("acme", Rate(2, 60.0)) and first.status == 200
    assert _authorize(shared_rates=True, rate_answer=RateAnswer(None)).ok
    denied = _authorize(shared_rates=True, rate_answer=RateAnswer(29.2))
    # The same 429 as the in-process limiter: Retry-After as whole seconds, rounded up.
    assert (denied.status, denied.reason, denied.headers) == (429, "rate_limited", (("Retry-After", "30"),))
    assert _authorize(shared_rates=True, rate_answer=RateAnswer(0.01)).headers == (("Retry-After", "1"),)


def test_what_a_request_gets_when_the_store_did_not_answer() -> None:
    down = RateAnswer(None, error="ConnectionError: refused")
    limiter = RateLimiter()
    # local: this process's own bucket (2/min here).
    local = [_authorize(shared_rates=True, rate_answer=down, limiter=limiter).status for _ in range(3)]
    assert local == [200, 200, 429]
    # open: no limit at all.
    assert all(_authorize(shared_rates=True, rate_answer=down, on_error="open").ok for _ in range(5))
    # closed: 503 naming why, never the 429 that would blame the client.
    closed = _authorize(shared_rates=True, rate_answer=down, on_error="closed")
    assert (closed.status, closed.reason) == (503, RATE_LIMIT_UNAVAILABLE)
    assert "ConnectionError: refused" in closed.detail and closed.headers == (("Retry-After", "1"),)
    # The store's own answer wins whatever on_error says.
    assert _authorize(shared_rates=True, rate_answer=RateAnswer(None), on_error="closed").ok


def _shared_session(on_error: str = "local", **server: Any) -> Session:
    settings = SharedSettings(URL, rate_limit_on_error=on_error)  # type: ignore[arg-type]
    gw = replace(gateway(upstream=False, account={"rate_limit": "2/min"}, **server), shared=settings)
    return Session(gw, facts(GOOD), at=NOW)


@pytest.mark.parametrize(("answer", "on_error", "status", "reason"), [
    (RateAnswer(None), "closed", 200, None),
    (RateAnswer(4.5), "open", 429, "rate_limited"),
    (RateAnswer(None, "down"), "open", 200, None),
    (RateAnswer(None, "down"), "closed", 503, RATE_LIMIT_UNAVAILABLE),
])
def test_the_session_asks_check_rate_and_decides_on_the_answer(
    answer: RateAnswer, on_error: str, status: int, reason: str | None,
) -> None:
    s = _shared_session(on_error)
    s.receive_client(req())
    action = s.next_action(at=NOW, now=0.0)
    assert action == CheckRate(NeedRate("partner-abc", Rate(2, 60.0))) and s.state is State.CHECKING_RATE
    s.rate_checked(answer)
    d = Driver(s, []).run()
    [decision] = d.decisions()
    assert (decision.status or 200, decision.reason) == (status, reason)
    assert d.responses()[0][0] == status


def _status(s: Session, answer: RateAnswer | None = None) -> int:
    """Play runtime until the next response starts; CheckRate is answered with ``answer``."""
    for _ in range(50):
        action = s.next_action(at=NOW, now=0.0)
        if isinstance(action, CheckRate):
            assert answer is not None, "CheckRate without [shared]"
            s.rate_checked(answer)
        elif isinstance(action, WriteClient) and action.status is not None:
            return action.status
    raise AssertionError("no response")


def test_each_request_takes_its_own_token() -> None:
    s = _shared_session()
    s.receive_client(req() * 3)
    assert [_status(s, RateAnswer(w)) for w in (None, None, 20.0)] == [200, 200, 429]


def test_auth_mode_refuses_an_unavailable_limit_as_403_naming_it() -> None:
    s = _shared_session("closed")
    s.server = replace(s.server, auth_service=True)
    s.receive_client(req())
    assert isinstance(s.next_action(at=NOW, now=0.0), CheckRate)
    s.rate_checked(RateAnswer(None, "down"))
    d = Driver(s, []).run()
    status, headers, _ = d.responses()[0]
    assert status == 403 and headers["x-mtls-reason"] == RATE_LIMIT_UNAVAILABLE
    assert d.decisions()[0].outcome is Outcome.DENY


def test_without_shared_the_limiter_decides_in_process_as_before() -> None:
    s = Session(gateway(upstream=False, account={"rate_limit": "2/min"}), facts(GOOD), at=NOW)
    s.receive_client(req() * 3)
    assert [_status(s) for _ in range(3)] == [200, 200, 429]  # never a CheckRate


# -- what is shared, for how long -----------------------------------------------------------------

CA = pki.root("CN=Shared Test Root")
LEAF = CA.leaf("CN=leaf")
AT = CA.now


def test_a_crl_is_shared_until_its_next_update_at_most_cache_max_ttl() -> None:
    crl = CA.crl(next_update=AT + timedelta(minutes=10))
    assert shared_ttl(NeedCRL("http://x/c.crl"), crl, at=AT, settings=SETTINGS) == 600.0
    far = CA.crl(next_update=AT + timedelta(days=7))
    assert shared_ttl(NeedCRL("http://x/c.crl"), far, at=AT, settings=SETTINGS) == 3600.0
    # Past its nextUpdate, or not a CRL, or too large: not shared (and a miss when read back).
    assert shared_ttl(NeedCRL("http://x/c.crl"), crl, at=AT + timedelta(minutes=11), settings=SETTINGS) is None
    assert shared_ttl(NeedCRL("http://x/c.crl"), b"garbage", at=AT, settings=SETTINGS) is None
    small = replace(SETTINGS, cache_max_bytes=len(crl) - 1)
    assert shared_ttl(NeedCRL("http://x/c.crl"), crl, at=AT, settings=small) is None


def test_an_ocsp_response_is_shared_until_its_next_update_an_error_status_never() -> None:
    from cryptography.x509 import ocsp

    good = ocsp_response(LEAF, CA, next_update=AT + timedelta(minutes=30))
    request = NeedOCSP("http://ocsp.x", b"\x30\x03\x02\x01\x01")
    assert shared_ttl(request, good, at=AT, settings=SETTINGS) == 1800.0
    later = ocsp_response(LEAF, CA, response_status=ocsp.OCSPResponseStatus.TRY_LATER)
    assert shared_ttl(request, later, at=AT, settings=SETTINGS) is None
    assert shared_ttl(request, b"\x30\x00", at=AT, settings=SETTINGS) is None


def test_keys_separate_requests_and_only_signed_answers_are_shared_without_a_secret() -> None:
    a, b = NeedOCSP("http://o", b"\x01"), NeedOCSP("http://o", b"\x02")
    assert cache_key(a, SETTINGS) != cache_key(b, SETTINGS)  # a nonce makes every request its own
    assert cache_key(NeedCRL("http://o"), SETTINGS) != cache_key(NeedOCSP("http://o", b""), SETTINGS)
    assert cache_key(NeedIssuer("http://o"), SETTINGS) is None
    # A JWK Set is authenticated by nothing but the TLS connection it came over: shared only
    # when entries carry the gateways' own tag.
    assert cache_key(NeedJwks("https://as/jwks"), SETTINGS) is None
    assert cache_key(NeedJwks("https://as/jwks"), replace(SETTINGS, secret=SECRET.encode())) is not None
    assert cache_key(NeedCRL("http://o"), replace(SETTINGS, caches=False)) is None


def test_a_jwks_is_shared_for_its_cache_control_within_the_limits() -> None:
    settings = replace(SETTINGS, secret=SECRET.encode())
    body = json.dumps({"keys": [jwk_from_certificate(parse_certificate(LEAF.der))]}).encode()
    request = NeedJwks("https://as/jwks")
    assert shared_ttl(request, body, at=AT, settings=settings, cache_control=b"max-age=120") == 120.0
    assert shared_ttl(request, body, at=AT, settings=settings) == 300.0  # the JWKS default_ttl
    assert shared_ttl(request, b'{"keys": []}', at=AT, settings=settings) is None


def test_a_shared_jwks_is_held_to_the_asking_caches_configured_limits() -> None:
    # [server.jwks] tighter than the defaults: another process may not reuse the set longer
    # than this one's cache would keep it, nor get a set this cache would refuse.
    settings = replace(SETTINGS, secret=SECRET.encode())
    jwk = jwk_from_certificate(parse_certificate(LEAF.der))
    body = json.dumps({"keys": [jwk]}).encode()
    limits = JwksLimits(default_ttl=90.0, min_ttl=60.0, max_ttl=120.0, max_keys=1)
    request = JwksCache(limits).due("https://as/jwks", now=0.0)
    assert request is not None and request.limits == limits
    assert shared_ttl(request, body, at=AT, settings=settings, cache_control=b"max-age=600") == 120.0
    assert shared_ttl(request, body, at=AT, settings=settings) == 90.0
    two = json.dumps({"keys": [jwk, jwk]}).encode()
    assert shared_ttl(request, two, at=AT, settings=settings) is None  # over max_keys = 1
    assert shared_ttl(NeedJwks("https://as/jwks"), two, at=AT, settings=settings) == 300.0  # the defaults'
    refresh = JwksCache(limits).refresh("https://as/jwks", now=0.0)
    assert refresh is not None and refresh.limits == limits


def test_the_tag_binds_an_entry_to_its_key_and_the_secret() -> None:
    settings = replace(SETTINGS, secret=SECRET.encode())
    sealed = seal("jwks:1", b"body", settings)
    assert unseal("jwks:1", sealed, settings) == b"body"
    assert unseal("jwks:2", sealed, settings) is None  # moved to another key
    assert unseal("jwks:1", sealed[:-1] + b"X", settings) is None  # altered
    assert unseal("jwks:1", b"body", settings) is None  # written without the secret
    assert unseal("jwks:1", sealed, replace(settings, secret=b"t" * 32)) is None
    assert seal("crl:1", b"body", SETTINGS) == b"body"  # no secret: stored as is


# -- the runtime's store wrapper over a scripted backend --------------------------------------------


class Scripted:
    """A Backend whose calls fail, hang or answer as the test says."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.data: dict[str, bytes] = {}

    async def _step(self) -> None:
        self.calls += 1
        if self.mode == "down":
            raise ConnectionError("refused")
        if self.mode == "hang":
            await asyncio.sleep(3600)

    async def take(self, key: str, count: int, period_ms: int) -> int:
        await self._step()
        return -1

    async def get(self, key: str) -> tuple[bytes | None, int]:
        await self._step()
        return self.data.get(key), 60_000

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        await self._step()
        self.data[key] = value

    @asynccontextmanager
    async def _limit(self, seconds: float) -> AsyncIterator[None]:
        async with asyncio.timeout(seconds):
            yield

    def time_limit(self, seconds: float) -> Any:
        return self._limit(seconds)

    async def aclose(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


NEED = NeedRate("acme", Rate(10, 60.0))


def test_failures_become_answers_are_counted_and_retried_after_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    backend, clock, metrics = Scripted(), Clock(), Metrics()
    store = SharedStore(replace(SETTINGS, timeout=0.05, connect_timeout=0.05), backend, metrics, clock=clock)

    async def main() -> None:
        assert await store.take(NEED) == RateAnswer(None)
        backend.mode = "hang"
        hung = await store.take(NEED)  # bounded by connect_timeout + timeout, never a hang
        assert hung.error == "no answer within 0.1 s"
        backend.mode = "down"
        calls = backend.calls
        for _ in range(100):  # within retry_interval: answered at once, the store is not asked
            assert (await store.take(NEED)).error == "no answer within 0.1 s"
        assert backend.calls == calls
        clock.t += 1.0
        assert (await store.take(NEED)).error == "ConnectionError: refused"
        assert backend.calls == calls + 1
        backend.mode = "ok"
        clock.t += 1.0
        assert await store.take(NEED) == RateAnswer(None)  # recovered: no restart

    with caplog.at_level(logging.WARNING, logger="mtlscore.gateway"):
        asyncio.run(main())
    assert metrics.get("mtlscore_shared_errors_total", operation="rate_limit") == 102
    events = [json.loads(r.getMessage())["event"] for r in caplog.records]
    # One line when it started failing, one when it came back: not one per request.
    assert events == ["shared_unavailable", "shared_recovered"]


def test_cache_lookups_fall_back_to_fetching_and_reject_what_is_not_an_answer() -> None:
    backend, metrics = Scripted(), Metrics()
    store = SharedStore(SETTINGS, backend, metrics, clock=Clock())
    crl = CA.crl(next_update=AT + timedelta(minutes=10))
    request = NeedCRL("http://x/c.crl")

    async def main() -> None:
        assert await store.lookup(request, at=AT) is None
        await store.store(request, crl, at=AT, cache_control=None)
        found = await store.lookup(request, at=AT)
        assert found is not None and found.body == crl and found.cache_control == b"max-age=60"
        await store.store(request, b"not a crl", at=AT, cache_control=None)  # never offered
        backend.data["mtlscore:" + str(cache_key(request, SETTINGS))] = b"poison"
        assert await store.lookup(request, at=AT) is None
        backend.mode = "down"
        assert await store.lookup(request, at=AT) is None

    asyncio.run(main())
    counts = {r: metrics.get("mtlscore_shared_cache_total", kind="crl", result=r)
              for r in ("miss", "stored", "hit", "rejected")}
    assert counts == {"miss": 1, "stored": 1, "hit": 1, "rejected": 1}
    assert metrics.get("mtlscore_shared_errors_total", operation="cache_get") == 1


def test_a_refresh_for_an_unknown_kid_is_marked_so_the_shared_copy_is_skipped() -> None:
    cache = JwksCache()
    assert cache.due("https://as/jwks", now=0.0) == NeedJwks("https://as/jwks")
    refresh = cache.refresh("https://as/jwks", now=0.0)
    assert refresh is not None and refresh.refresh and not cache.due("https://as/jwks", now=0.0).refresh  # type: ignore[union-attr]
    assert refresh == NeedJwks("https://as/jwks")  # one in-flight fetch serves both

