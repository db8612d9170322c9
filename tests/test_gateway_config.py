"""The [server] table: defaults, every key, and ConfigErrors that name the key."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from mtlscore import ConfigError
from mtlscore.gateway.settings import Address, Upstream, parse_upstream, server_from_config

BASE = Path("/etc/mtlscore")
MIN = {"certificate": "server.pem", "key": "server.key"}


def test_defaults() -> None:
    s = server_from_config(MIN, base_dir=BASE)
    assert s.certificate == BASE / "server.pem" and s.key == BASE / "server.key"
    assert s.listen == Address("127.0.0.1", 8443)
    assert (s.mode, s.runtime, s.upstream, s.admin_listen) == ("reject_invalid", "asyncio", None, None)
    assert (s.upstream_keepalive, s.upstream_keepalive_timeout) == (32, 4.0)
    assert s.forward_verdict_headers and s.forward_client_cert  # both sets, as before (docs/gateway.md)
    # Rejecting in the handshake (the default) takes the deferred engine.
    assert (s.reject_at, s.rejects_in_handshake, s.effective_tls_engine) == ("handshake", True, "deferred")
    s = server_from_config({**MIN, "reject_at": "http"}, base_dir=BASE)
    assert (s.rejects_in_handshake, s.effective_tls_engine) == (False, "ssl")


def test_every_key() -> None:
    s = server_from_config(
        {
            **MIN,
            "listen": "[::1]:0",
            "runtime": "trio",
            "mode": "allow_invalid_or_missing",
            "upstream": "http://127.0.0.1:8080/api/",
            "trusted_proxies": ["10.0.0.0/8"],
            "admin_listen": "127.0.0.1:9443",
            "header_timeout_seconds": 2,
            "upstream_timeout_seconds": 0.5,
            "max_body_bytes": 1000,
            "account_header": "X-Account",
            "forward_client_cert": False,
            "reload_poll_seconds": 0,
            "upstream_keepalive": 0,
            "forward_verdict_headers": False,
            "upstream_keepalive_timeout_seconds": 1.5,
        },
        base_dir=BASE,
    )
    assert (s.upstream_keepalive, s.upstream_keepalive_timeout) == (0, 1.5)
    assert not s.forward_verdict_headers
    assert s.listen == Address("::1", 0) and str(s.listen) == "[::1]:0"
    assert s.upstream == Upstream("127.0.0.1", 8080, "/api")
    assert s.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),)
    assert [p.networks for p in s.proxies] == [(ipaddress.ip_network("10.0.0.0/8"),)]
    assert s.proxy_policy is not None and s.handshake_mode == "allow_invalid_or_missing"
    assert (s.header_timeout, s.upstream_timeout, s.max_body_bytes) == (2, 0.5, 1000)
    assert s.effective_tls_engine == "deferred"
    assert not s.forward_client_cert and s.reload_poll == 0


def test_trusted_proxy_tables() -> None:
    s = server_from_config(
        {**MIN, "trusted_proxies": ["127.0.0.1/32", {"networks": ["10.0.0.5/32"], "format": "nginx"}]},
        base_dir=BASE,
    )
    assert [p.format for p in s.proxies] == ["rfc9440", "nginx"]
    assert s.trusted_proxies == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.5/32"))


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"colour": "blue"}, "server.colour"),
        ({"certificate": None}, "server.certificate"),
        ({"key": ""}, "server.key"),
        ({"listen": "8443"}, "server.listen"),
        ({"listen": "127.0.0.1:99999"}, "server.listen"),
        ({"mode": "allow"}, "server.mode"),
        ({"runtime": "gevent"}, "server.runtime"),
        ({"tls_engine": "boring"}, "server.tls_engine"),
        ({"upstream": "ftp://backend"}, "server.upstream"),
        ({"upstream": "http://backend", "upstream_ca": "ca.pem"}, "server.upstream_ca"),
        ({"upstream": "https://backend", "upstream_certificate": "c.pem"}, "server.upstream_key"),
        ({"upstream": "https://backend", "upstream_key": "k.pem"}, "server.upstream_certificate"),
        ({"upstream": "https://backend", "upstream_ca": 3}, "server.upstream_ca"),
        ({"upstream": "not a url"}, "server.upstream"),
        ({"trusted_proxies": ["nope"]}, "server.trusted_proxies"),
        ({"trusted_proxies": "10.0.0.0/8"}, "server.trusted_proxies"),
        ({"trusted_proxies": ["10.0.0.0/8", {"networks": ["10.1.0.0/16"], "colour": "red"}]},
         "server.trusted_proxies[1]"),
        ({"trusted_proxies": [{"networks": ["10.1.0.0/16"], "format": "apache"}]},
         "server.trusted_proxies[0].format"),
        ({"trusted_proxies": ["10.0.0.0/8", {"networks": ["10.1.0.0/16"], "client_address_header": "X Real"}]},
         "server.trusted_proxies[1].client_address_header"),
        ({"trusted_proxies": [{"networks": ["10.1.0.0/16"], "client_address_header": "X-Forwarded-For",
                               "client_address_hop": 0}]}, "server.trusted_proxies[0].client_address_hop"),
        ({"trusted_proxies": [{"networks": ["10.1.0.0/16"], "client_address_header": "X-Forwarded-For",
                               "client_address_hop": True}]}, "server.trusted_proxies[0].client_address_hop"),
        ({"trusted_proxies": [{"networks": ["10.1.0.0/16"], "client_address_header": "X-Real-IP",
                               "client_address_hop": 2}]}, "server.trusted_proxies[0].client_address_hop"),
        ({"strip_request_headers": "X-Foo"}, "server.strip_request_headers"),
        ({"strip_request_headers": ["X-Foo", "X Bar"]}, "server.strip_request_headers[1]"),
        ({"strip_request_headers": ["*"]}, "server.strip_request_headers[0]"),
        ({"strip_request_headers": ["X-*-Foo"]}, "server.strip_request_headers[0]"),
        ({"request_target_forms": ["origin", "authority"]}, "server.request_target_forms"),
        ({"request_target_forms": ["absolute"]}, "server.request_target_forms"),
        ({"request_target_forms": "origin"}, "server.request_target_forms"),
        ({"admin_listen": 9443}, "server.admin_listen"),
        ({"header_timeout_seconds": 0}, "server.header_timeout_seconds"),
        ({"upstream_timeout_seconds": "5"}, "server.upstream_timeout_seconds"),
        ({"upstream_keepalive": -1}, "server.upstream_keepalive"),
        ({"forward_verdict_headers": "no"}, "server.forward_verdict_headers"),
        ({"upstream_keepalive": 2.5}, "server.upstream_keepalive"),
        ({"upstream_keepalive_timeout_seconds": 0}, "server.upstream_keepalive_timeout_seconds"),
        ({"max_body_bytes": 1.5}, "server.max_body_bytes"),
        ({"max_connections": True}, "server.max_connections"),
        ({"account_header": "X Account"}, "server.account_header"),
        ({"event_loop": "libuv"}, "server.event_loop"),
        ({"runtime": "trio", "event_loop": "uvloop"}, "server.event_loop"),
        ({"account_header": "Content-Length"}, "server.account_header"),
        ({"account_header": "expect"}, "server.account_header"),
        ({"account_header": "Authorization"}, "server.account_header"),
        ({"account_header": "X-Client-Cert-Hash"}, "server.account_header"),
        ({"forward_client_cert": "yes"}, "server.forward_client_cert"),
        ({"reject_at": "tls"}, "server.reject_at"),
        ({"forward_certificate": {"format": "der"}}, "server.forward_certificate[0].format"),
        ({"forward_certificate": []}, "server.forward_certificate"),
        ({"forward_certificate": ["rfc9440"]}, "server.forward_certificate[0]"),
        ({"forward_certificate": {"format": "xfcc", "colour": "red"}}, "server.forward_certificate[0]"),
        ({"forward_certificate": {"format": "xfcc", "header": "X-Client-Cert-Hash"}},
         "server.forward_certificate[0].header"),
        ({"forward_certificate": {"format": "xfcc", "header": "Host"}}, "server.forward_certificate[0].header"),
        ({"forward_certificate": {"format": "xfcc", "header": "X Cert"}}, "server.forward_certificate[0].header"),
        ({"forward_certificate": {"format": "xfcc", "header": "X-Mtls-Account"}},
         "server.forward_certificate[0].header"),
        ({"forward_certificate": [{"format": "xfcc", "header": "X-Cert"}, {"format": "pem_base64", "header": "x_cert"}]},
         "server.forward_certificate[1].header"),
        ({"forward_certificate": {"format": "xfcc", "chain_header": "X-Chain"}},
         "server.forward_certificate[0].chain_header"),
        ({"forward_certificate": {"format": "rfc9440"}, "forward_client_cert": True}, "server.forward_certificate"),
        # Said explicitly but impossible: stdlib ssl has no verify callback; a proxy's
        # connection carries other clients.
        ({"reject_at": "handshake", "tls_engine": "ssl"}, "server.reject_at"),
        ({"reject_at": "handshake", "trusted_proxies": ["10.0.0.0/8"]}, "server.reject_at"),
    ],
)
def test_bad_values_name_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        server_from_config({**MIN, **table}, base_dir=BASE)
    assert info.value.key == key


def test_forwarding_and_target_keys() -> None:
    s = server_from_config(MIN, base_dir=BASE)
    assert "X-Forwarded-*" in s.strip_request_headers and "Remote-User" in s.strip_request_headers
    assert s.request_target_forms == frozenset({"origin"})
    s = server_from_config(
        {
            **MIN,
            "strip_request_headers": ["X-Tenant", "Internal-*"],
            "request_target_forms": ["origin", "asterisk"],
            "trusted_proxies": [{"networks": ["10.0.0.5/32"], "format": "nginx",
                                 "client_address_header": "X-Forwarded-For", "client_address_hop": 2}],
        },
        base_dir=BASE,
    )
    assert s.strip_request_headers == ("X-Tenant", "Internal-*")
    assert s.request_target_forms == frozenset({"origin", "asterisk"})
    (proxy,) = s.proxies
    assert (proxy.client_address_header, proxy.client_address_hop) == ("x-forwarded-for", 2)


def test_not_a_table() -> None:
    with pytest.raises(ConfigError, match="table"):
        server_from_config(["x"], base_dir=BASE)  # type: ignore[arg-type]


def test_upstream_forms() -> None:
    assert parse_upstream("http://backend") == Upstream("backend", 80)
    assert parse_upstream("http://[::1]:81").authority == "[::1]:81"
    assert parse_upstream("http://backend").authority == "backend"


def test_deadlines_and_limits() -> None:
    """Issue 15: every deadline and limit has a [server] key and a default (docs/hardening.md)."""
    s = server_from_config(MIN, base_dir=BASE)
    assert (s.header_timeout, s.body_timeout, s.min_body_rate) == (15.0, 30.0, 1024)
    assert (s.write_timeout, s.keepalive_timeout, s.max_connection_age) == (30.0, 15.0, 3600.0)
    assert (s.max_connections, s.address_limit) == (1024, 256)
    # Tighter per address when the handshake is lenient (anonymous connections are free).
    assert server_from_config({**MIN, "mode": "allow_invalid_or_missing"}, base_dir=BASE).address_limit == 64
    assert server_from_config({**MIN, "trusted_proxies": ["10.0.0.0/8"]}, base_dir=BASE).address_limit == 64
    s = server_from_config(
        {
            **MIN,
            "min_body_bytes_per_second": 10,
            "write_timeout_seconds": 5,
            "keepalive_timeout_seconds": 2.5,
            "max_connection_age_seconds": 0,  # 0: no age limit
            "max_connections_per_address": 8,
        },
        base_dir=BASE,
    )
    assert (s.min_body_rate, s.write_timeout, s.keepalive_timeout, s.max_connection_age) == (10, 5, 2.5, 0)
    assert s.address_limit == 8


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"min_body_bytes_per_second": 0}, "server.min_body_bytes_per_second"),
        ({"min_body_bytes_per_second": 0.5}, "server.min_body_bytes_per_second"),
        ({"write_timeout_seconds": 0}, "server.write_timeout_seconds"),
        ({"keepalive_timeout_seconds": float("nan")}, "server.keepalive_timeout_seconds"),
        ({"max_connection_age_seconds": -1}, "server.max_connection_age_seconds"),
        ({"max_connections_per_address": 0}, "server.max_connections_per_address"),
        ({"max_connections_per_address": "8"}, "server.max_connections_per_address"),
    ],
)
def test_bad_deadlines_name_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        server_from_config({**MIN, **table}, base_dir=BASE)
    assert info.value.key == key


def test_serve_names_the_file_and_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mtlscore.cli import main

    bad = tmp_path / "gateway.toml"
    bad.write_text('[trust]\nanchors = []\n[server]\ncertificate = "s.pem"\nkey = "s.key"\n'
                   'trusted_proxies = [{ networks = ["10.0.0.5/32"], client_address_header = "X-Real-IP", '
                   "client_address_hop = 2 }]\n")
    assert main(["serve", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"in {bad}: server.trusted_proxies[0].client_address_hop: only X-Forwarded-For" in err[0]


def test_reject_at_follows_mode_engine_and_proxies() -> None:
    def server(**kw: Any) -> Any:
        return server_from_config({**MIN, **kw}, base_dir=BASE)

    assert server(reject_at="handshake", tls_engine="deferred").rejects_in_handshake
    # Allow mode never rejects; behind proxies rejection is per request; tls_engine "ssl" cannot.
    assert not server(mode="allow_invalid_or_missing").rejects_in_handshake
    assert not server(trusted_proxies=["10.0.0.0/8"]).rejects_in_handshake
    assert not server(tls_engine="ssl").rejects_in_handshake
    assert server(tls_engine="ssl").effective_tls_engine == "ssl"


def test_https_upstream() -> None:
    s = server_from_config(
        {**MIN, "upstream": "https://api.internal/v1/", "upstream_ca": "up-ca.pem",
         "upstream_certificate": "gw.pem", "upstream_key": "gw.key"},
        base_dir=BASE,
    )
    assert s.upstream == Upstream("api.internal", 443, "/v1", tls=True)
    assert s.upstream.authority == "api.internal"  # 443 is https's default
    assert (s.upstream_ca, s.upstream_certificate, s.upstream_key) == (
        BASE / "up-ca.pem", BASE / "gw.pem", BASE / "gw.key")
    assert parse_upstream("https://10.0.0.7:8443").authority == "10.0.0.7:8443"
    assert parse_upstream("http://h:443").authority == "h:443"


def test_forward_certificate() -> None:
    from mtlscore.gateway.settings import ForwardCertificate

    assert server_from_config(MIN, base_dir=BASE).forward_certificate == ()  # the RFC 9440 pair, as before
    one = server_from_config({**MIN, "forward_certificate": {"format": "nginx_escaped", "header": "X-Cert"}},
                             base_dir=BASE)
    assert one.forward_certificate == (ForwardCertificate("nginx_escaped", "X-Cert"),)
    many = server_from_config(
        {**MIN, "forward_certificate": [{"format": "rfc9440"}, {"format": "rfc9440", "header": "X-Leaf"},
                                        {"format": "xfcc"}, {"format": "pem_base64"}]},
        base_dir=BASE,
    )
    assert many.forward_certificate == (
        ForwardCertificate("rfc9440", "Client-Cert", "Client-Cert-Chain"),
        ForwardCertificate("rfc9440", "X-Leaf", "X-Leaf-Chain"),
        ForwardCertificate("xfcc", "X-Forwarded-Client-Cert"),
        ForwardCertificate("pem_base64", "X-Client-Cert-PEM"),
    )


def test_workers_default_one_a_number_or_auto() -> None:
    assert server_from_config(MIN, base_dir=BASE).workers == 1
    assert server_from_config({**MIN, "workers": 4}, base_dir=BASE).workers == 4
    # "auto" is counted by the runtime (the cores this process may use): the core reads no OS state.
    assert server_from_config({**MIN, "workers": "auto"}, base_dir=BASE).workers == "auto"


@pytest.mark.parametrize("value", [0, -2, 257, "x", "Auto", True, 2.0, [2]])
def test_a_bad_workers_value_names_the_key(value: object) -> None:
    with pytest.raises(ConfigError) as err:
        server_from_config({**MIN, "workers": value}, base_dir=BASE)
    assert err.value.key == "server.workers" and f"got {value!r}" in str(err.value)


def test_auth_cache_entries_default_a_number_or_zero() -> None:
    assert server_from_config(MIN, base_dir=BASE).auth_cache_entries == 2048
    assert server_from_config({**MIN, "auth_cache_entries": 0}, base_dir=BASE).auth_cache_entries == 0
    assert server_from_config({**MIN, "auth_cache_entries": 1_000_000}, base_dir=BASE).auth_cache_entries == 1_000_000


@pytest.mark.parametrize("value", [-1, 1_000_001, "2048", True, 2048.0, [1]])
def test_a_bad_auth_cache_entries_value_names_the_key(value: object) -> None:
    with pytest.raises(ConfigError) as err:
        server_from_config({**MIN, "auth_cache_entries": value}, base_dir=BASE)
    assert err.value.key == "server.auth_cache_entries" and f"got {value!r}" in str(err.value)
