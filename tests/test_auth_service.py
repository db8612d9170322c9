"""``[server] mode = "auth"`` in the sans-IO session and the config (issue #20 item 3):
a trusted proxy's question answered 200 with identity headers or 401/403 with the reason,
nothing forwarded, every yes fed to the expiry radar."""

from __future__ import annotations

import ipaddress
import pathlib

import pytest
from test_session import GOOD, INTER, NOW, PROXY, STRANGER, Driver, _forwarded, facts, gateway, req

from mtlscore.gateway.events import Log, OpenUpstream, Outcome
from mtlscore.gateway.session import Session
from mtlscore.gateway.settings import server_from_config
from mtlscore.proxy.trusted import TrustedProxy
from mtlscore.reasons import ConfigError


def auth_gateway(**kw: object):  # type: ignore[no-untyped-def]
    return gateway(upstream=False, proxies=(PROXY,), auth_service=True, **kw)


def test_a_good_forwarded_certificate_gets_200_with_identity_headers_and_no_body() -> None:
    d = Driver(Session(auth_gateway(), facts(None), at=NOW), [req(headers=_forwarded(GOOD))]).run()
    ((status, headers, body),) = d.responses()
    assert status == 200 and body == b""
    assert headers["x-mtls-account"] == "partner-abc"
    assert headers["x-client-cert-chain-verified"] == "true"
    assert headers["client-cert"] == _forwarded(GOOD)[0][1]
    assert "content-type" not in headers
    assert not any(isinstance(a, OpenUpstream) for a in d.actions) and d.to_upstream == b""
    (decision,) = d.decisions()
    assert decision.outcome is Outcome.AUTHORIZE and decision.account == "partner-abc"


def test_pipelined_subrequests_are_each_answered() -> None:
    # Two subrequests in one read, then the edge waits for its answers: the second waits in
    # h11's buffer when the first is answered and is read before the session asks for more.
    d = Driver(Session(auth_gateway(), facts(None), at=NOW),
               [req(headers=_forwarded(GOOD)) * 2, b"<timeout>"]).run()
    assert [status for status, _, _ in d.responses()] == [200, 200]  # then the idle wait ends it
    assert [decision.outcome for decision in d.decisions()] == [Outcome.AUTHORIZE] * 2


def test_every_yes_feeds_the_radar_and_no_no_does() -> None:
    d = Driver(Session(auth_gateway(), facts(None), at=NOW),
               [req(headers=_forwarded(GOOD)), req(headers=_forwarded(STRANGER))]).run()
    logs = [a for a in d.actions if isinstance(a, Log)]
    assert [log.decision.outcome for log in logs] == [Outcome.AUTHORIZE, Outcome.DENY]
    # The radar is fed from Log.chain (runtimes/state.py): the accepted chain, then nothing.
    assert [c.der for c in logs[0].chain] == [GOOD.der, INTER.der] and logs[0].verdict is not None
    assert logs[1].chain == () and logs[1].verdict is None


def test_refusals_are_401_or_403_with_the_reason_header() -> None:
    limited = auth_gateway(account={"rate_limit": "1/min"})
    d = Driver(Session(limited, facts(None), at=NOW),
               [req(headers=_forwarded(GOOD)), req(headers=_forwarded(GOOD)), req(headers=_forwarded(STRANGER)),
                req()]).run()
    got = [(s, h.get("x-mtls-reason")) for s, h, _ in d.responses()]
    # 429 in proxy mode; nginx auth_request passes 401/403 only, so 403 with the reason.
    assert got == [(200, None), (403, "rate_limited"), (403, "untrusted"), (403, "not_provided")]
    keyed = auth_gateway(account={"api_key_sha256": ["0" * 64]})
    d = Driver(Session(keyed, facts(None), at=NOW), [req(headers=_forwarded(GOOD))]).run()
    ((status, headers, _),) = d.responses()
    assert (status, headers["x-mtls-reason"]) == (401, "credential_missing")


def test_a_peer_that_is_not_a_trusted_proxy_is_refused_whatever_it_sends() -> None:
    far = TrustedProxy(name="edge", networks=(ipaddress.ip_network("10.9.0.0/16"),))
    g = gateway(upstream=False, proxies=(far,), auth_service=True)
    d = Driver(Session(g, facts(None), at=NOW), [req(headers=[*_forwarded(GOOD), ("X-Mtls-Account", "x")])]).run()
    ((status, headers, _),) = d.responses()
    assert (status, headers["x-mtls-reason"]) == (403, "not_provided")
    assert "x-mtls-account" not in headers


def test_a_protocol_error_carries_the_reason_header() -> None:
    d = Driver(Session(auth_gateway(), facts(None), at=NOW), [b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"]).run()
    ((status, headers, _),) = d.responses()
    assert status == 400 and headers["x-mtls-reason"] == "protocol_error"


BASE = {"certificate": "s.pem", "key": "s.key"}
EDGE = [{"networks": ["10.0.0.5/32"], "format": "nginx"}]


def test_config_mode_auth() -> None:
    server = server_from_config({**BASE, "mode": "auth", "trusted_proxies": EDGE}, base_dir=pathlib.Path("."))
    assert server.auth_service and server.mode == "reject_invalid" and server.upstream is None
    assert not server_from_config({**BASE, "trusted_proxies": EDGE}, base_dir=pathlib.Path(".")).auth_service


@pytest.mark.parametrize(("table", "key", "words"), [
    ({"mode": "auth"}, "server.mode", "needs trusted_proxies"),
    ({"mode": "auth", "trusted_proxies": EDGE, "upstream": "http://127.0.0.1:8080"}, "server.upstream",
     "forwards nothing"),
    ({"mode": "proxy"}, "server.mode", "one of reject_invalid, allow_invalid_or_missing, auth"),
])
def test_config_mode_auth_mistakes(table: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        server_from_config({**BASE, **table}, base_dir=pathlib.Path("."))
    assert exc.value.key == key and words in str(exc.value)

