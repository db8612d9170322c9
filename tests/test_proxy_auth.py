"""Basic authentication of a trusted proxy (RFC 7617) against a scrypt PHC hash."""

from __future__ import annotations

import base64

import pytest

from mtlscore import ConfigError, Reason, pki
from mtlscore.proxy import headers as h
from mtlscore.proxy.basic_auth import PasswordHash, ProxyCredentials, hash_password
from mtlscore.proxy.trusted import ProxyPolicy, Reject, TrustedProxy, UseForwarded, proxies_from_config
from mtlscore.x509.cert import parse_certificate

CLIENT = parse_certificate(pki.root().leaf("client.example").der)
HASH = hash_password("s3cret pass", ln=14)
CERT_HEADER = (b"client-cert", h.emit_client_cert(CLIENT).encode())


def basic(user: str, password: str, scheme: str = "Basic") -> bytes:
    return f"{scheme} {base64.b64encode(f'{user}:{password}'.encode()).decode()}".encode()


def test_hash_round_trip_and_format() -> None:
    parsed = PasswordHash.parse(HASH)
    assert HASH.startswith("$scrypt$ln=14,r=8,p=1$") and str(parsed) == HASH
    assert parsed.verify(b"s3cret pass") and not parsed.verify(b"s3cret pasS")
    # A fresh salt each time: two hashes of one password differ.
    assert hash_password("s3cret pass", ln=14) != HASH


@pytest.mark.parametrize("bad", ["s3cret pass", "", None, 5, "$pbkdf2-sha256$29000$abc$def",
                                 HASH.replace("ln=14", "ln=30"), HASH.replace("ln=14", "ln=4"),
                                 HASH.replace("r=8", "r=99"), HASH[:-10]])
def test_plain_or_unsafe_hashes_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError) as e:
        TrustedProxy(name="edge", networks=("10.0.0.5/32",), username="edge", password_hash=bad)  # type: ignore[arg-type]
    assert e.value.key == "trusted_proxies.password_hash"


def test_credentials_check_every_failure_has_a_reason() -> None:
    creds = ProxyCredentials("edge", PasswordHash.parse(HASH))
    assert creds.check(basic("edge", "s3cret pass")) is None
    assert creds.check(basic("edge", "s3cret pass", "bAsIc")) is None  # RFC 9110 §11.1
    for value, fragment in [
        (None, "no proxy-authorization"),
        (basic("edge", "wrong"), "not the configured"),
        (basic("other", "s3cret pass"), "not the configured"),
        (basic("edge", "s3cret pass", "Bearer"), "not Basic"),
        (b"Basic !!!notbase64", "not base64"),
        (b"Basic " + base64.b64encode(b"no-colon"), "no ':'"),
        (b"Basic " + b"A" * 2000, "over 1024 bytes"),
    ]:
        why = creds.check(value)
        assert why is not None and fragment in why, (value, why)


def test_verified_credentials_are_remembered_not_failures() -> None:
    creds = ProxyCredentials("edge", PasswordHash.parse(HASH))
    assert creds.check(basic("edge", "s3cret pass")) is None
    assert len(creds._verified) == 1
    assert creds.check(basic("edge", "bad")) is not None and len(creds._verified) == 1


def policy(**kw: object) -> ProxyPolicy:
    return ProxyPolicy((TrustedProxy(name="edge", networks=("10.0.0.5/32",), username="edge",
                                     password_hash=HASH, **kw),))  # type: ignore[arg-type]


def test_proxy_with_the_password_is_believed() -> None:
    d = policy().decide(peer=("10.0.0.5", 1), headers=[CERT_HEADER, (b"Proxy-Authorization",
                                                                       basic("edge", "s3cret pass"))])
    assert isinstance(d, UseForwarded) and d.chain == (CLIENT,)


@pytest.mark.parametrize("auth", [None, basic("edge", "guess"), basic("root", "s3cret pass")])
def test_forwarded_certificate_without_the_password_is_untrusted_proxy(auth: bytes | None) -> None:
    headers = [CERT_HEADER] + ([(b"proxy-authorization", auth)] if auth else [])
    d = policy().decide(peer=("10.0.0.5", 1), headers=headers)
    assert isinstance(d, Reject) and d.reason is Reason.UNTRUSTED_PROXY
    assert "basic authentication of trusted proxy 'edge'" in d.detail


def test_right_password_from_the_wrong_address_is_untrusted_proxy() -> None:
    d = policy().decide(peer=("10.0.0.6", 1), headers=[CERT_HEADER, (b"proxy-authorization",
                                                                       basic("edge", "s3cret pass"))])
    assert isinstance(d, Reject) and d.reason is Reason.UNTRUSTED_PROXY


def test_two_authorization_headers_are_refused() -> None:
    good = (b"proxy-authorization", basic("edge", "s3cret pass"))
    d = policy().decide(peer=("10.0.0.5", 1), headers=[CERT_HEADER, good, good])
    assert isinstance(d, Reject) and "appears 2 times" in d.detail


def test_basic_auth_without_networks_or_pin_is_a_config_error() -> None:
    # Every client could otherwise make the gateway derive scrypt per guess (a CPU/memory lever).
    with pytest.raises(ConfigError) as e:
        TrustedProxy(name="saas", username="edge", password_hash=HASH)  # type: ignore[arg-type]
    assert e.value.key == "trusted_proxies.networks" and "0.0.0.0/0" in str(e.value)


def test_basic_auth_from_any_address_and_header_is_configurable() -> None:
    p = ProxyPolicy((TrustedProxy(name="saas", networks=("0.0.0.0/0", "::/0"), username="edge",  # type: ignore[arg-type]
                                  password_hash=HASH, auth_header="X_Proxy_Auth"),))
    good = [CERT_HEADER, (b"x-proxy-auth", basic("edge", "s3cret pass"))]
    assert isinstance(p.decide(peer=("198.51.100.7", 1), headers=good), UseForwarded)
    # The same credentials in the default header do not count.
    bad = [CERT_HEADER, (b"proxy-authorization", basic("edge", "s3cret pass"))]
    assert isinstance(p.decide(peer=("198.51.100.7", 1), headers=bad), Reject)


def test_config_keys() -> None:
    (p,) = proxies_from_config([{"name": "edge", "networks": ["10.0.0.5/32"], "username": "edge",
                                 "password_hash": HASH}])
    assert p.credentials is not None and p.auth_header == "proxy-authorization"
    with pytest.raises(ConfigError) as e:
        proxies_from_config([{"networks": ["10.0.0.5/32"], "username": "a:b", "password_hash": HASH}])
    assert e.value.key == "trusted_proxies[0].username"
    with pytest.raises(ConfigError) as e:
        proxies_from_config([{"networks": ["10.0.0.5/32"], "password_hash": HASH}])
    assert e.value.key == "trusted_proxies[0].username"


def test_failed_basic_auth_is_refused_even_when_untrusted_headers_are_ignored() -> None:
    # The gateway's policy ignores certificate headers from ordinary clients; a peer that is
    # the proxy by address but fails its basic auth is refused instead.
    proxy = TrustedProxy(name="edge", networks=("10.0.0.5/32",), username="edge", password_hash=HASH)
    lenient = ProxyPolicy((proxy,), on_untrusted="ignore")
    d = lenient.decide(peer=("10.0.0.5", 1), headers=[CERT_HEADER, (b"proxy-authorization", basic("edge", "x"))])
    assert isinstance(d, Reject) and d.reason is Reason.UNTRUSTED_PROXY
    stranger = lenient.decide(peer=("10.0.0.9", 1), headers=[CERT_HEADER])
    assert not isinstance(stranger, Reject)


def test_a_custom_auth_header_never_reaches_the_upstream() -> None:
    from mtlscore.gateway.forwarding import request_header_filter
    from mtlscore.gateway.settings import ServerConfig

    proxy = TrustedProxy(name="saas", networks=("10.0.0.5/32",), username="edge", password_hash=HASH,
                         auth_header="X-Edge-Auth")
    owned = request_header_filter(ServerConfig(b"", b"", proxies=(proxy,)))
    assert b"x-edge-auth" in owned and b"X_Edge_Auth" in owned and b"x-other" not in owned


def test_hash_password_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from mtlscore.cli.main import main

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pass\n"))
    assert main(["hash-password", "--ln", "14"]) == 0
    out = capsys.readouterr().out.strip()
    assert PasswordHash.parse(out).verify(b"s3cret pass")
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["hash-password"]) == 2 and "empty" in capsys.readouterr().err
