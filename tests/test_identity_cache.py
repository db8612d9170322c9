"""The identity fields remembered per accepted verdict, across connections (mtlscore.gateway.identity_cache),
and the rest of what a reconnecting client's new connection is spared: its account's settings
read again, the snapshot's header filter built again."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from test_session import DN, GOOD, INTER, NOW, ROOT, Driver, facts, gateway, req, upstream_response

from mtlscore import Reason, Verdict, pki
from mtlscore.gateway.identity_cache import IdentityCache
from mtlscore.gateway.session import Session
from mtlscore.x509.cert import parse_certificate

OTHER = INTER.leaf(DN)  # the same account, another certificate (a rotated key)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import mtlscore.gateway.forwarding as forwarding

    calls: list[int] = []
    real = forwarding._identity_headers

    def counting(*args: Any, **kw: Any) -> list[tuple[str, str]]:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(forwarding, "_identity_headers", counting)
    return calls


def _forward(gw: Any, issued: pki.Issued) -> dict[bytes, list[bytes]]:
    d = Driver(Session(gw, facts(issued), at=NOW), [req("/")], [upstream_response()]).run()
    [(_, headers)] = d.upstream_requests()
    return headers


def test_a_reconnecting_client_gets_the_same_fields_without_a_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    gw = gateway()
    first = _forward(gw, GOOD)  # a connection: validated, fields built
    again = _forward(gw, GOOD)  # a new connection, the verdict from the validator's cache
    assert first == again and first[b"x-mtls-account"] == [b"partner-abc"]
    assert len(calls) == 1
    other = _forward(gw, OTHER)  # another client: its own fields
    assert other[b"client-cert"] != first[b"client-cert"] and len(calls) == 2
    # A reload is a new snapshot: it starts empty (the forwarding settings may have changed).
    assert _forward(replace(gw, identity_fields=IdentityCache()), GOOD) == first and len(calls) == 3


def test_refused_verdicts_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # Allow mode forwards a refused certificate with its verdict headers; a refusal is a new
    # verdict each time (never cached), so nothing is kept for it.
    calls = _counting(monkeypatch)
    gw = gateway(mode="allow_invalid_or_missing")
    stranger = pki.root("CN=Elsewhere").leaf("CN=stranger")
    first, again = _forward(gw, stranger), _forward(gw, stranger)
    assert first == again and first[b"x-client-cert-chain-verified"] == [b"false"]
    assert len(calls) == 2 and len(gw.identity_fields) == 0


def _cache_case() -> tuple[Verdict, tuple[Any, ...]]:
    leaf, inter = parse_certificate(GOOD.der), parse_certificate(INTER.der)
    return Verdict(True, path=(leaf, inter)), (leaf, inter)


def test_keyed_by_the_verdict_object_the_presented_chain_and_the_account() -> None:
    cache: IdentityCache[int] = IdentityCache()
    built: list[int] = []

    def build() -> int:
        built.append(1)
        return len(built)

    verdict, presented = _cache_case()
    assert cache.get(verdict, presented, "a", build) == 1
    assert cache.get(verdict, presented, "a", build) == 1
    # An equal verdict that is another object (not from the verdict cache): its own entry.
    assert cache.get(replace(verdict), presented, "a", build) == 2
    # The same verdict with other certificates sent beside it, or another account.
    extra = (*presented, parse_certificate(ROOT.der))
    assert cache.get(verdict, extra, "a", build) == 3
    assert cache.get(verdict, presented, "b", build) == 4
    # A refusal is built every time.
    refused = Verdict.reject(Reason.UNTRUSTED, "no path")
    assert cache.get(refused, presented, None, build) == 5
    assert cache.get(refused, presented, None, build) == 6
    assert len(cache) == 4


def test_bounded_least_recently_used_out_first() -> None:
    cache: IdentityCache[str] = IdentityCache(size=2)
    verdict, presented = _cache_case()
    cache.get(verdict, presented, "a", lambda: "a")
    cache.get(verdict, presented, "b", lambda: "b")
    cache.get(verdict, presented, "a", lambda: "rebuilt")  # a is used again: b is the oldest
    cache.get(verdict, presented, "c", lambda: "c")
    assert len(cache) == 2
    assert cache.get(verdict, presented, "a", lambda: "rebuilt") == "a"
    assert cache.get(verdict, presented, "b", lambda: "rebuilt") == "rebuilt"
    off: IdentityCache[str] = IdentityCache(size=0)
    assert off.get(verdict, presented, "a", lambda: "x") == "x" and len(off) == 0


def test_an_accounts_settings_are_read_once_across_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtlscore.gateway.appauth import AccountAuth

    calls: list[str] = []
    real = AccountAuth.from_mapping.__func__  # type: ignore[attr-defined]

    def counting(cls: type[AccountAuth], account: str, table: Any) -> AccountAuth:
        calls.append(account)
        return real(cls, account, table)  # type: ignore[no-any-return]

    monkeypatch.setattr(AccountAuth, "from_mapping", classmethod(counting))
    gw = gateway(account={"ip_allow": ["127.0.0.0/8"]})
    for _ in range(3):  # three connections of one client: its verdict (and principal) cached
        assert _forward(gw, GOOD)[b"x-mtls-account"] == [b"partner-abc"]
    assert calls == ["partner-abc"]
    # Another snapshot (a reload) has its own principals: read again, and its settings apply.
    refused = gateway(account={"ip_allow": ["192.0.2.0/24"]})
    d = Driver(Session(refused, facts(GOOD), at=NOW), [req("/")], [upstream_response()]).run()
    assert d.responses()[0][0] == 403 and d.upstream_requests() == []
    assert calls == ["partner-abc", "partner-abc"]


def test_the_header_filter_is_built_once_per_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    import mtlscore.gateway.forwarding as forwarding

    built: list[int] = []
    real = forwarding._header_filter

    def counting(server: Any) -> Any:
        built.append(1)
        return real(server)

    monkeypatch.setattr(forwarding, "_header_filter", counting)
    gw = gateway(strip_request_headers=("X-Internal-*",))
    for _ in range(3):
        d = Driver(Session(gw, facts(GOOD), at=NOW), [req("/", [("X-Internal-Role", "admin")])],
                   [upstream_response()]).run()
        [(_, headers)] = d.upstream_requests()
        assert b"x-internal-role" not in headers
    assert len(built) == 1
    # Another snapshot's settings are its own.
    other = gateway()
    d = Driver(Session(other, facts(GOOD), at=NOW), [req("/", [("X-Internal-Role", "admin")])],
               [upstream_response()]).run()
    assert d.upstream_requests()[0][1][b"x-internal-role"] == [b"admin"] and len(built) == 2
