"""The forwarded-certificate cache (gateway/forwarded_cache.py): a trusted proxy's header
bytes seen before are neither parsed nor validated again while the verdict holds, and
everything else a request is decided on still runs for each request."""

from __future__ import annotations

import ipaddress
import pathlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import h11
import pytest
from test_session import DN, GOOD, INTER, NOW, PROXY, ROOT, _forwarded, facts, gateway, req

from mtlscore import Reason, TrustStore, Validator, pki
from mtlscore.decision.verdict import Verdict
from mtlscore.gateway.events import Close, Gateway, ReadClient, TLSFacts, Validate
from mtlscore.gateway.forwarded_cache import ForwardedCache
from mtlscore.gateway.session import Session
from mtlscore.proxy import headers as h
from mtlscore.proxy import trusted
from mtlscore.proxy.trusted import TrustedProxy
from mtlscore.verify.policy import Policy
from mtlscore.x509.cert import parse_certificate


def auth(**kw: Any) -> Gateway:
    kw.setdefault("proxies", (PROXY,))
    return gateway(upstream=False, auth_service=True, **kw)


def ask(session: Session, headers: list[tuple[str, str]], at: datetime = NOW) -> tuple[int, dict[str, str]]:
    """One request on ``session`` at ``at``; the answer's status and headers."""
    session.receive_client(req(headers=headers))
    out = b""
    for _ in range(50):
        action = session.next_action(at=at, now=0.0)
        if isinstance(action, ReadClient | Close):
            break
        out += getattr(action, "data", b"") or b""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(out)
    response = client.next_event()
    assert isinstance(response, h11.Response), out
    return response.status_code, {k.decode(): v.decode() for k, v in response.headers}


class Counting:
    """Counts calls of a function in a module (the header parse, the validation)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        self.calls = 0
        real = getattr(owner, name)

        def counted(*a: Any, **kw: Any) -> Any:
            self.calls += 1
            return real(*a, **kw)

        monkeypatch.setattr(owner, name, counted)


def test_the_same_header_bytes_are_parsed_and_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    g = auth()
    parsed = Counting(monkeypatch, h, "parse_client_cert")
    validated = Counting(monkeypatch, g.validator, "validate")
    s = Session(g, facts(None), at=NOW)
    answers = [ask(s, _forwarded(GOOD)) for _ in range(3)]
    assert [status for status, _ in answers] == [200, 200, 200]
    assert answers[0][1] == answers[1][1] == answers[2][1]  # the same identity headers, made once
    assert answers[2][1]["x-mtls-account"] == "partner-abc"
    assert (parsed.calls, validated.calls) == (1, 1)
    # Another connection from the proxy (nginx keeps several) shares the gateway's cache.
    assert ask(Session(g, facts(None), at=NOW), _forwarded(GOOD))[0] == 200
    assert (parsed.calls, validated.calls) == (1, 1)
    assert g.forwarded.stats().hits == 3


def test_different_header_bytes_are_different_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    other = INTER.leaf("CN=someone else")
    g = auth()
    validated = Counting(monkeypatch, g.validator, "validate")
    s = Session(g, facts(None), at=NOW)
    got = [ask(s, _forwarded(c)) for c in (GOOD, other, GOOD, other)]
    assert [status for status, _ in got] == [200, 403, 200, 403]
    assert [hd.get("x-mtls-reason") for _, hd in got] == [None, "identity_unmapped"] * 2
    # The refusal is not cached (its reason may change with the time): validated each time.
    assert validated.calls == 3 and len(g.forwarded) == 1
    # The same certificate without its chain header is another question.
    leaf_only = _forwarded(GOOD)[:1]
    assert ask(s, leaf_only)[0] == 403  # its issuer is not an anchor: untrusted
    # The same header twice is refused every time, however the single copy was answered.
    for _ in range(2):
        status, headers = ask(s, [*_forwarded(GOOD), _forwarded(GOOD)[0]])
        assert (status, headers["x-mtls-reason"]) == (403, "malformed")


def test_a_verdict_past_its_notafter_is_not_served() -> None:
    short = INTER.leaf(DN, not_after=NOW + timedelta(hours=2))
    g = auth()
    s = Session(g, facts(None), at=NOW)
    assert ask(s, _forwarded(short), at=NOW)[0] == 200
    assert ask(s, _forwarded(short), at=NOW + timedelta(hours=1))[0] == 200  # inside the window
    status, headers = ask(s, _forwarded(short), at=NOW + timedelta(hours=3))
    assert (status, headers["x-mtls-reason"]) == (403, "expired")


def test_a_verdict_outlives_neither_max_age_nor_its_crl(monkeypatch: pytest.MonkeyPatch) -> None:
    # Revocation from a configured CRL: the cached yes holds until the CRL's nextUpdate.
    crl = INTER.crl(this_update=NOW - timedelta(hours=1), next_update=NOW + timedelta(minutes=30))
    g = auth(policy=Policy(revocation="hard", revocation_ca="off"))
    g = replace(g, validator=Validator(g.validator.trust, g.validator.policy, crls=[crl],
                                       identity_map=g.validator.identity_map))
    validated = Counting(monkeypatch, g.validator, "validate")
    s = Session(g, facts(None), at=NOW)
    assert ask(s, _forwarded(GOOD), at=NOW)[0] == 200
    assert ask(s, _forwarded(GOOD), at=NOW + timedelta(minutes=20))[0] == 200
    assert validated.calls == 1
    # Past nextUpdate the CRL no longer says anything: validated again, and hard-fail refuses.
    status, headers = ask(s, _forwarded(GOOD), at=NOW + timedelta(minutes=40))
    assert validated.calls == 2 and status == 403
    assert headers["x-mtls-reason"] == Reason.REVOCATION_UNAVAILABLE.value
    # max_age bounds an entry whatever else holds.
    g = replace(auth(), forwarded=ForwardedCache(max_age=timedelta(minutes=10)))
    validated = Counting(monkeypatch, g.validator, "validate")
    s = Session(g, facts(None), at=NOW)
    for minutes in (0, 9, 11):
        assert ask(s, _forwarded(GOOD), at=NOW + timedelta(minutes=minutes))[0] == 200
    assert validated.calls == 2


def test_a_revoked_certificate_is_not_answered_from_the_cache() -> None:
    # A reload that brings a CRL listing the client: a new validator (same trust store and
    # policy objects, so the same epochs), whose questions never read the old one's
    # entries, even when the snapshot kept the cache object.
    hard = Policy(revocation="hard", revocation_ca="off")
    g = auth(policy=hard)
    trust, imap = g.validator.trust, g.validator.identity_map
    g = replace(g, validator=Validator(trust, hard, crls=[INTER.crl()], identity_map=imap))
    s = Session(g, facts(None), at=NOW)
    assert ask(s, _forwarded(GOOD))[0] == 200
    revoking = Validator(trust, hard, crls=[INTER.crl(revoked=[GOOD], number=2)], identity_map=imap)
    reloaded = replace(g, validator=revoking)
    assert reloaded.forwarded is g.forwarded and len(g.forwarded) == 1
    status, headers = ask(Session(reloaded, facts(None), at=NOW), _forwarded(GOOD))
    assert (status, headers["x-mtls-reason"]) == (403, "revoked")
    # With revocation fetched by the runtime nothing is cached: every request asks again,
    # and the answer of the moment decides.
    fetching = auth(policy=Policy(fetch=True, revocation="hard", revocation_ca="off"))
    s = Session(fetching, facts(None), at=NOW, fetch=True)
    s.receive_client(req(headers=_forwarded(GOOD)))
    assert isinstance(_until_stop(s), Validate)
    plain = Validator(fetching.validator.trust, identity_map=fetching.validator.identity_map)
    good = plain.validate([GOOD.der, INTER.der], at=NOW)
    assert good.ok
    s.validated(good)  # what the runtime's fetch found: not revoked
    assert _drain(s).startswith(b"HTTP/1.1 200")
    s.receive_client(req(headers=_forwarded(GOOD)))
    assert isinstance(_until_stop(s), Validate)  # not answered from a cache
    s.validated(Verdict.reject(Reason.REVOKED, "listed on the CRL"))
    assert _drain(s).startswith(b"HTTP/1.1 403") and len(fetching.forwarded) == 0


def _until_stop(s: Session) -> object:
    for _ in range(50):
        action = s.next_action(at=NOW, now=0.0)
        if isinstance(action, Validate | ReadClient | Close):
            return action
    raise AssertionError("the session did not stop")


def _drain(s: Session) -> bytes:
    out = b""
    for _ in range(50):
        action = s.next_action(at=NOW, now=0.0)
        if isinstance(action, ReadClient | Close):
            return out
        out += getattr(action, "data", b"") or b""
    raise AssertionError("the session did not settle")


def test_a_changed_trust_store_is_not_served_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    g = auth()
    validated = Counting(monkeypatch, g.validator, "validate")
    s = Session(g, facts(None), at=NOW)
    assert ask(s, _forwarded(GOOD))[0] == 200
    g.validator.trust.add_anchor(pki.root("CN=Another Root").pem)  # a new epoch
    assert ask(s, _forwarded(GOOD))[0] == 200
    assert validated.calls == 2
    # A reload builds a new snapshot: its cache starts empty.
    fresh = Gateway(validator=Validator(TrustStore([pki.root("CN=Other").pem])), server=g.server)
    assert len(fresh.forwarded) == 0
    assert ask(Session(fresh, facts(None), at=NOW), _forwarded(GOOD))[0] == 403


def test_per_request_checks_still_run_on_a_hit() -> None:
    # Rate limit: the second answer comes from the cache and is still counted.
    g = auth(account={"rate_limit": "1/min"})
    s = Session(g, facts(None), at=NOW)
    assert ask(s, _forwarded(GOOD))[0] == 200
    status, headers = ask(s, _forwarded(GOOD))
    assert (status, headers["x-mtls-reason"]) == (403, "rate_limited") and g.forwarded.stats().hits == 1
    # IP allowlist, with the client address the proxy reports per request.
    edge = TrustedProxy(name="lb", networks=(ipaddress.ip_network("127.0.0.0/8"),),
                        client_address_header="X-Forwarded-For")
    g = auth(proxies=(edge,), account={"ip_allow": ["10.1.0.0/16"]})
    s = Session(g, facts(None), at=NOW)
    assert ask(s, [*_forwarded(GOOD), ("X-Forwarded-For", "10.1.2.3")])[0] == 200
    status, headers = ask(s, [*_forwarded(GOOD), ("X-Forwarded-For", "192.0.2.1")])
    assert (status, headers["x-mtls-reason"]) == (403, "ip_not_allowed") and g.forwarded.stats().hits == 1
    assert ask(s, [*_forwarded(GOOD), ("X-Forwarded-For", "10.1.9.9")])[0] == 200
    # An API key the account requires: asked for on every request.
    g = auth(account={"api_key_sha256": [h_key("k1")]})
    s = Session(g, facts(None), at=NOW)
    assert ask(s, [*_forwarded(GOOD), ("X-Api-Key", "k1")])[0] == 200
    assert ask(s, _forwarded(GOOD))[0] == 401
    assert ask(s, [*_forwarded(GOOD), ("X-Api-Key", "k2")])[0] == 401
    assert g.forwarded.stats().hits == 2


def h_key(key: str) -> str:
    from mtlscore.gateway.appauth import hash_api_key

    return hash_api_key(key)


def test_a_warm_cache_answers_nobody_but_a_trusted_proxy() -> None:
    g = auth()
    assert ask(Session(g, facts(None), at=NOW), _forwarded(GOOD))[0] == 200
    stranger = TLSFacts(chain=(), peer=("203.0.113.9", 4444))
    status, headers = ask(Session(g, stranger, at=NOW), _forwarded(GOOD))
    assert (status, headers["x-mtls-reason"]) == (403, "not_provided")
    assert g.forwarded.stats().hits == 0


def test_a_proxy_verdict_header_is_part_of_the_key() -> None:
    # revalidate = false: the proxy's verdict stands, and it is one of the values read.
    believed = TrustedProxy(name="lb", networks=(ipaddress.ip_network("127.0.0.0/8"),), format="nginx",
                            revalidate=False, verdict_header="X-SSL-Client-Verify")
    server = auth(proxies=(believed,)).server
    g = Gateway(validator=Validator(TrustStore([ROOT.pem])), server=server)  # no accounts: any yes is 200
    s = Session(g, facts(None), at=NOW)
    cert = ("X-SSL-Client-Cert", h.emit_nginx_escaped_cert(parse_certificate(GOOD.der)))
    assert ask(s, [cert, ("X-SSL-Client-Verify", "SUCCESS")])[0] == 200
    assert len(g.forwarded) == 1
    status, headers = ask(s, [cert, ("X-SSL-Client-Verify", "FAILED:certificate revoked")])
    assert (status, headers["x-mtls-reason"]) == (403, "untrusted")


def test_the_cache_is_bounded_in_entries_and_key_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    g = replace(auth(), forwarded=ForwardedCache(size=2))
    s = Session(g, facts(None), at=NOW)
    clients = [INTER.leaf(DN) for _ in range(4)]
    for c in clients:
        assert ask(s, _forwarded(c))[0] == 200
        assert len(g.forwarded) <= 2
    validated = Counting(monkeypatch, g.validator, "validate")
    assert ask(s, _forwarded(clients[0]))[0] == 200 and validated.calls == 1  # evicted first
    assert ask(s, _forwarded(clients[3]))[0] == 200 and validated.calls == 1  # still held
    # A key over max_key_bytes is answered but never kept.
    g = replace(auth(), forwarded=ForwardedCache(max_key_bytes=100))
    s = Session(g, facts(None), at=NOW)
    assert [ask(s, _forwarded(GOOD))[0] for _ in range(2)] == [200, 200]
    assert len(g.forwarded) == 0 and g.forwarded.stats().hits == 0
    with pytest.raises(ValueError):
        ForwardedCache(max_key_bytes=-1)
    with pytest.raises(ValueError):
        ForwardedCache(size=-1)


def test_identify_then_forwarded_is_decide() -> None:
    # The two halves the session uses give what decide() gives, from the values alone.
    policy = trusted.ProxyPolicy((PROXY,))
    headers = [(k.lower().encode(), v.encode()) for k, v in _forwarded(GOOD)]
    found = policy.identify(peer="127.0.0.1", headers=headers)
    assert isinstance(found, trusted.FromProxy) and found.index == 0
    assert found.values == ((headers[0][1],), (headers[1][1],))
    assert policy.forwarded(found) == policy.decide(peer="127.0.0.1", headers=headers)
    assert isinstance(policy.identify(peer="192.0.2.1", headers=headers), trusted.Reject)


def _auth_state(tmp_path: pathlib.Path, entries: int | None) -> Gateway:
    """The gateway snapshot ``mtlscore serve`` builds from a configuration file in auth mode."""
    from mtlscore.runtimes.state import GatewayState

    server_ca = pki.root("CN=Cache Server CA")
    server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"])
    (tmp_path / "root.pem").write_bytes(ROOT.pem)
    (tmp_path / "server.pem").write_bytes(server.pem)
    (tmp_path / "server.key").write_bytes(server.key_pem)
    (tmp_path / "server.key").chmod(0o600)
    line = f"auth_cache_entries = {entries}\n" if entries is not None else ""
    config = tmp_path / "auth.toml"
    config.write_text(f"""
[trust]
anchors = ["root.pem"]

[server]
certificate = "server.pem"
key = "server.key"
mode = "auth"
trusted_proxies = ["127.0.0.0/8"]
reload_poll_seconds = 0
{line}""")
    return GatewayState.from_config_file(config).snapshot.gateway


@pytest.mark.parametrize(("entries", "held"), [(None, 2048), (2, 2), (0, 0)])
def test_auth_cache_entries_sizes_the_cache_serve_builds(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, entries: int | None, held: int,
) -> None:
    g = _auth_state(tmp_path, entries)
    assert g.forwarded.stats().capacity == held
    s = Session(g, facts(None), at=NOW)
    clients = [INTER.leaf(DN) for _ in range(3)]
    for c in clients:
        assert ask(s, _forwarded(c))[0] == 200
    assert len(g.forwarded) == min(held, 3)
    validated = Counting(monkeypatch, g.validator, "validate")
    # Asked again about all three, newest first: what the configured size could not hold is
    # validated again (with 2 entries, the first client was evicted; with 0, every one).
    for c in reversed(clients):
        assert ask(s, _forwarded(c))[0] == 200
    assert validated.calls == 3 - min(held, 3)


def test_a_bad_auth_cache_entries_is_one_line_naming_the_file_and_key(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from mtlscore.cli import main

    _auth_state(tmp_path, 2)
    config = tmp_path / "auth.toml"
    config.write_text(config.read_text().replace("auth_cache_entries = 2", "auth_cache_entries = -5"))
    assert main(["serve", "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (f"mtlscore serve: configuration error in {config}: server.auth_cache_entries: must be a whole "
                   "number from 0 (no cache) to 1,000,000; got -5\n")
