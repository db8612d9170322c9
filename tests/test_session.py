"""The gateway's sans-IO session core, driven by hand (no sockets)."""

from __future__ import annotations

import base64
import ipaddress
import json
import pathlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlscore import Policy, Reason, TrustStore, Validator, Verdict, pki
from mtlscore.gateway.appauth import hash_api_key
from mtlscore.gateway.events import (
    Close,
    CloseUpstream,
    Gateway,
    Log,
    OpenUpstream,
    ReadClient,
    ReadUpstream,
    ReleaseUpstream,
    TLSFacts,
    Validate,
    WriteClient,
    WriteUpstream,
    handshake_decision,
)
from mtlscore.gateway.session import _TRANSITIONS, Session, SessionError, State
from mtlscore.gateway.settings import ServerConfig, Upstream
from mtlscore.identity.identity_map import accounts_from_config
from mtlscore.proxy.headers import GCP_HEADER_NAMES
from mtlscore.x509.cert import parse_certificate

NOW = pki.NOW
DN = "CN=partner-abc-prod-client,O=PartnerABC"
ROOT = pki.root()
INTER = ROOT.intermediate()
GOOD = INTER.leaf(DN)
EXPIRED = INTER.leaf(DN, not_after=NOW - timedelta(days=1))
STRANGER = pki.root("CN=Elsewhere").leaf(DN)


def gateway(
    *, upstream: bool = True, mode: str = "reject_invalid", account: dict[str, Any] | None = None,
    policy: Policy | None = None, **kw: Any,
) -> Gateway:
    trust = TrustStore([ROOT.pem])
    table = {"id": "partner-abc", "match": {"subject_dn": DN}, **(account or {})}
    imap = accounts_from_config([table], trust=trust)
    server = ServerConfig(
        certificate=pathlib.Path("server.pem"),
        key=pathlib.Path("server.key"),
        upstream=Upstream("127.0.0.1", 8080) if upstream else None,
        mode=mode,
        **kw,  # type: ignore[arg-type]
    )
    return Gateway(validator=Validator(trust, policy, identity_map=imap), server=server)


def facts(issued: pki.Issued | None = None, **kw: Any) -> TLSFacts:
    return TLSFacts(chain=tuple(issued.chain_der) if issued else (), peer=("127.0.0.1", 5555), **kw)


def req(
    target: str = "/", headers: Sequence[tuple[str, str]] = (), body: bytes | None = None, method: str = "GET"
) -> bytes:
    c = h11.Connection(h11.CLIENT)
    hs = [("Host", "api.example"), *headers]
    if body is not None:
        hs.append(("Content-Length", str(len(body))))
    out = c.send(h11.Request(method=method, target=target, headers=hs))
    if body:
        out += c.send(h11.Data(data=body))
    return out + c.send(h11.EndOfMessage())


def upstream_response(body: bytes = b"hello", headers: Sequence[tuple[str, str]] = ()) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: keep-alive\r\n" % len(body)
        + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers)
        + b"\r\n"
        + body
    )


class Driver:
    """Plays runtime: feeds scripted client and upstream bytes, records everything."""

    def __init__(
        self, session: Session, client: list[bytes], upstream: list[bytes | str] | None = None, connect: str = "ok",
        fetched: dict[str, bytes] | None = None,
    ) -> None:
        self.s = session
        self.fetched = fetched or {}  # what the "fetcher" answers, by URL (others fail)
        self.asked: list[str] = []
        self.client = list(client)
        self.upstream = list(upstream or [])
        self.connect = connect
        self.to_client = b""
        self.to_upstream = b""
        self.actions: list[Any] = []

    def run(self, max_steps: int = 500) -> Driver:
        for _ in range(max_steps):
            a = self.s.next_action(at=NOW, now=0.0)
            self.actions.append(a)
            if isinstance(a, Close):
                return self
            if isinstance(a, ReadClient):
                if self.client:
                    chunk = self.client.pop(0)
                    if chunk == b"<timeout>":
                        self.s.client_timeout()
                    else:
                        self.s.receive_client(chunk)
                else:
                    self.s.receive_client(b"")
            elif isinstance(a, WriteClient):
                self.to_client += a.data
            elif isinstance(a, OpenUpstream):
                if self.connect == "ok":
                    self.s.upstream_connected()
                else:
                    self.s.upstream_failed(self.connect, "scripted")
            elif isinstance(a, WriteUpstream):
                self.to_upstream += a.data
            elif isinstance(a, Validate):
                self.s.validated(self._resolve(a.validation))
            elif isinstance(a, ReadUpstream):
                item = self.upstream.pop(0) if self.upstream else b""
                if item == "timeout":
                    self.s.upstream_failed("timeout", "scripted")
                else:
                    assert isinstance(item, bytes)
                    self.s.receive_upstream(item)
        raise AssertionError("session did not close")

    def _resolve(self, run: Any) -> Verdict:
        """Drive a Validation as a runtime's fetcher would, from ``fetched``."""
        for _ in range(50):
            event = run.next_event()
            if isinstance(event, Verdict):
                return event
            self.asked.append(event.url)
            if event.url in self.fetched:
                run.send(event, self.fetched[event.url])
            else:
                run.fail(event, "not scripted")
        raise AssertionError("the validation did not finish")

    def responses(self) -> list[tuple[int, dict[str, str], bytes]]:
        c = h11.Connection(h11.CLIENT)
        out: list[tuple[int, dict[str, str], bytes]] = []
        c.receive_data(self.to_client)
        c.receive_data(b"")
        while True:
            # The client conn must think it sent requests to parse responses.
            if c.our_state is h11.IDLE:
                c.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
                c.send(h11.EndOfMessage())
            try:
                e = c.next_event()
            except h11.RemoteProtocolError:  # EOF where the next response would start
                return out
            if isinstance(e, h11.Response):
                out.append((e.status_code, {k.decode(): v.decode() for k, v in e.headers}, b""))
            elif isinstance(e, h11.Data):
                out[-1] = (out[-1][0], out[-1][1], out[-1][2] + e.data)
            elif isinstance(e, h11.EndOfMessage):
                if c.our_state is h11.DONE and c.their_state is h11.DONE:
                    c.start_next_cycle()
            else:
                return out

    def upstream_requests(self) -> list[tuple[bytes, dict[bytes, list[bytes]]]]:
        c = h11.Connection(h11.SERVER)
        c.receive_data(self.to_upstream)
        out = []
        while True:
            e = c.next_event()
            if isinstance(e, h11.Request):
                hs: dict[bytes, list[bytes]] = {}
                for k, v in e.headers:
                    hs.setdefault(k, []).append(v)
                out.append((e.target, hs))
            elif isinstance(e, h11.EndOfMessage):
                c.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                c.send(h11.EndOfMessage())
                c.start_next_cycle()
            elif e is h11.NEED_DATA or isinstance(e, h11.ConnectionClosed):
                return out

    def decisions(self) -> list[Any]:
        return [a.decision for a in self.actions if isinstance(a, Log)]


def test_state_table_covers_every_state() -> None:
    assert set(_TRANSITIONS) == set(State)
    assert _TRANSITIONS[State.CLOSED] == frozenset({State.CLOSED})


def test_forward_adds_identity_headers_and_strips_client_copies() -> None:
    s = Session(gateway(), facts(GOOD), at=NOW)
    forged = [
        ("X-Client-Cert-Hash", "forged"),
        ("X-Mtls-Account", "root"),
        ("Client-Cert", ":AA==:"),
        ("Connection", "keep-alive, X-Secret"),
        ("X-Secret", "hop"),
        ("Keep-Alive", "timeout=5"),
    ]
    d = Driver(s, [req("/a", forged), req("/b")], [upstream_response(), upstream_response(b"two")]).run()
    (t1, h1), (t2, _) = d.upstream_requests()
    assert (t1, t2) == (b"/a", b"/b")
    assert h1[b"x-client-cert-hash"] == [base64.b64encode(s.presented[0].sha256)]
    assert h1[b"x-mtls-account"] == [b"partner-abc"]
    assert h1[b"client-cert"] != [b":AA==:"] and len(h1[b"client-cert"]) == 1
    assert b"x-secret" not in h1 and b"keep-alive" not in h1
    assert h1[b"host"] == [b"api.example"]
    # Each response read to its end hands the connection back (the runtime's pool gives it
    # to the next request); the next request asks for one again.
    upstream_moves = [a for a in d.actions if isinstance(a, OpenUpstream | ReleaseUpstream | CloseUpstream)]
    assert upstream_moves == [OpenUpstream("127.0.0.1", 8080, 5.0, retry=True), ReleaseUpstream()] * 2
    assert [r[2] for r in d.responses()] == [b"hello", b"two"]
    assert [x.outcome for x in d.decisions()] == ["forward", "forward"]
    assert d.decisions()[0].account == "partner-abc"


def _upstream_moves(d: Driver) -> list[Any]:
    return [type(a).__name__ for a in d.actions if isinstance(a, OpenUpstream | ReleaseUpstream | CloseUpstream)]


@pytest.mark.parametrize(
    ("response", "why"),
    [
        # RFC 9112 §9.6: the upstream closes after this response.
        (upstream_response(headers=[("Connection", "close")]).replace(b"Connection: keep-alive\r\n", b""),
         "connection close"),
        # HTTP/1.0 without keep-alive: the connection ends with the response (RFC 9112 §9.3).
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "http/1.0"),
        # Bytes past the response: they would be read as the next request's response.
        (upstream_response() + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbad", "bytes past the response"),
    ],
)
def test_upstream_connection_not_handed_back_unless_clean(response: bytes, why: str) -> None:
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req()], [response]).run()
    assert d.responses()[0][0] == 200, why
    assert _upstream_moves(d) == ["OpenUpstream", "CloseUpstream"], why


def test_upstream_connection_not_handed_back_with_its_response_cut_short() -> None:
    # The upstream stops in the middle of the body: the connection is not at a message
    # boundary, so it is closed, never pooled.
    s = Session(gateway(), facts(GOOD), at=NOW)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
    d = Driver(s, [req()], [head]).run()
    assert "ReleaseUpstream" not in _upstream_moves(d)
    assert s.state is State.CLOSED


def test_upstream_connection_not_handed_back_after_an_error() -> None:
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req()], [b"HTTP/1.1 20x nonsense\r\n\r\n"]).run()
    assert d.responses()[0][0] == 502
    assert "ReleaseUpstream" not in _upstream_moves(d)


def test_identity_headers_are_built_once_per_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    import mtlscore.gateway.forwarding as forwarding

    calls: list[int] = []
    real = forwarding._identity_headers

    def counting(*args: Any, **kw: Any) -> list[tuple[str, str]]:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(forwarding, "_identity_headers", counting)
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req("/a"), req("/b"), req("/c")],
               [upstream_response()] * 3).run()
    requests = d.upstream_requests()
    assert [t for t, _ in requests] == [b"/a", b"/b", b"/c"]
    assert all(h[b"x-mtls-account"] == [b"partner-abc"] and len(h[b"client-cert"]) == 1 for _, h in requests)
    assert len(calls) == 1


_VERDICT = {n.lower() for n in GCP_HEADER_NAMES}
_RFC9440 = {"client-cert", "client-cert-chain"}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, _VERDICT | _RFC9440 | {"x-mtls-account"}),
        ({"forward_verdict_headers": False}, _RFC9440 | {"x-mtls-account"}),
        ({"forward_verdict_headers": False, "forward_client_cert": False}, {"x-mtls-account"}),
        ({"forward_client_cert": False}, _VERDICT | {"x-mtls-account"}),
    ],
)
def test_forwarded_identity_headers_follow_the_configuration(settings: dict[str, Any], expected: set[str]) -> None:
    # The client's copies go whatever is forwarded: a header the gateway does not send
    # is not left to the client either.
    forged = [("X-Client-Cert-Hash", "forged"), ("X-Client-Cert-Present", "forged"), ("Client-Cert", "forged"),
              ("Client-Cert-Chain", "forged"), ("X-Mtls-Account", "forged")]
    d = Driver(Session(gateway(**settings), facts(GOOD), at=NOW), [req("/", forged)], [upstream_response()]).run()
    [(_, h)] = d.upstream_requests()
    sent = {k.decode() for k in h if k.startswith((b"x-client-cert", b"client-cert", b"x-mtls-"))}
    assert sent == expected
    assert all(len(h[k.encode()]) == 1 and h[k.encode()] != [b"forged"] for k in sent)


@pytest.mark.parametrize("account", ["bad\r\nX-Injected: 1", "caf\u00e9\u0142"])
def test_an_identity_value_no_field_may_carry_is_refused_not_forwarded(account: str) -> None:
    # The identity fields skip h11's second check per request (_parsed): they were checked
    # once, and one that fails (a CR LF, a character outside latin-1) is a 400, never written.
    d = Driver(Session(gateway(account={"id": account}), facts(GOOD), at=NOW), [req("/a")],
               [upstream_response()]).run()
    assert d.to_upstream == b""
    assert d.responses()[0][0] == 400 and d.decisions()[-1].reason == "protocol_error"


def test_a_response_head_and_body_go_to_the_client_in_one_write() -> None:
    s = Session(gateway(), facts(GOOD), at=NOW)
    d = Driver(s, [req("/a")], [upstream_response(b"x" * 100)]).run()
    writes = [a for a in d.actions if isinstance(a, WriteClient)]
    assert len(writes) == 1 and writes[0].status == 200 and writes[0].data.endswith(b"x" * 100)


def test_a_write_timeout_on_a_relayed_response_never_asks_for_more_of_it() -> None:
    # The head and the first body bytes are written while the rest is asked for; when that
    # write times out the session closes, and the queued read is never handed out (a report
    # of it would reach a closed session).
    s = Session(gateway(), facts(GOOD), at=NOW)
    s.receive_client(req("/a"))
    assert isinstance(s.next_action(at=NOW, now=0.0), Log)
    assert isinstance(s.next_action(at=NOW, now=0.0), OpenUpstream)
    s.upstream_connected()
    assert isinstance(s.next_action(at=NOW, now=0.0), WriteUpstream)
    assert isinstance(s.next_action(at=NOW, now=0.0), ReadUpstream)
    s.receive_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    assert isinstance(s.next_action(at=NOW, now=0.0), WriteClient)
    s.client_write_timeout()
    rest = []
    while not isinstance(action := s.next_action(at=NOW, now=0.0), Close):
        rest.append(type(action).__name__)
    assert "ReadUpstream" not in rest and "CloseUpstream" in rest


def test_reject_mode_invalid_gets_403_json_and_never_reaches_upstream() -> None:
    d = Driver(Session(gateway(), facts(EXPIRED), at=NOW), [req()]).run()
    [(status, headers, body)] = d.responses()
    assert status == 403 and headers["connection"] == "close"
    assert json.loads(body)["error"] == "expired"
    assert not any(isinstance(a, OpenUpstream) for a in d.actions)
    assert d.decisions()[0].reason == "expired"


def test_reject_mode_without_certificate() -> None:
    d = Driver(Session(gateway(), facts(None), at=NOW), [req()]).run()
    assert json.loads(d.responses()[0][2])["error"] == Reason.NOT_PROVIDED.value


def test_allow_mode_forwards_invalid_with_verdict_headers() -> None:
    for issued in (STRANGER, None):
        d = Driver(
            Session(gateway(mode="allow_invalid_or_missing"), facts(issued), at=NOW),
            [req(headers=[("X-Mtls-Account", "partner-abc")])],
            [upstream_response()],
        ).run()
        [(_, h)] = d.upstream_requests()
        assert h[b"x-client-cert-chain-verified"] == [b"false"]
        assert h[b"x-client-cert-present"] == [b"true" if issued else b"false"]
        assert b"x-mtls-account" not in h
        assert d.responses()[0][0] == 200


def test_identity_json_without_upstream() -> None:
    d = Driver(Session(gateway(upstream=False), facts(GOOD, sni="api.example"), at=NOW), [req()]).run()
    doc = json.loads(d.responses()[0][2])
    assert doc["verdict"] == "accepted" and doc["account"] == "partner-abc"
    assert doc["certificate"]["x5t#S256"] == parse_certificate(GOOD.der).x5t_s256
    assert doc["tls"]["sni"] == "api.example"
    # Issue 18 item 6: one serial format (hex) in both places, no internal normalised keys.
    assert doc["identity"]["serial"] == doc["certificate"]["serial"] == format(GOOD.serial, "x")
    assert not {"subject_key", "issuer_key"} & set(doc["identity"])
    assert doc["identity"]["subject_dn"] == doc["certificate"]["subject"]


def test_app_checks_401_and_api_key() -> None:
    g = gateway(account={"api_key_sha256": [hash_api_key("k1")]})
    d = Driver(
        Session(g, facts(GOOD), at=NOW), [req(), req(headers=[("X-API-Key", "k1")])], [upstream_response()]
    ).run()
    (s1, h1, _), (s2, _, _) = d.responses()
    assert (s1, s2) == (401, 200)
    assert h1["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("headers", "gone", "kept"),
    [
        # The key in X-API-Key: that header goes; the client's own Authorization stays.
        ([("X-API-Key", "api-key-1"), ("Authorization", "Basic dXNlcjpwdw==")], b"x-api-key:", b"authorization: basic"),
        # The key as a Bearer value: that Authorization goes.
        ([("Authorization", "Bearer api-key-1"), ("X-Other", "v")], b"authorization:", b"x-other: v"),
    ],
)
def test_the_api_key_the_gateway_accepted_is_not_forwarded(
    headers: list[tuple[str, str]], gone: bytes, kept: bytes
) -> None:
    g = gateway(account={"api_key_sha256": [hash_api_key("api-key-1")]})
    d = Driver(Session(g, facts(GOOD), at=NOW), [req(headers=headers)], [upstream_response()]).run()
    assert d.responses()[0][0] == 200
    head = d.to_upstream.lower()
    # (a hyphen never occurs in the base64 of the certificate headers)
    assert gone not in head and b"api-key-1" not in head
    assert kept in head


def test_upstream_connect_failure_is_502_and_timeout_504() -> None:
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req()], connect="connect").run()
    assert json.loads(d.responses()[0][2])["error"] == "upstream_unavailable"
    assert d.responses()[0][0] == 502
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req()], ["timeout"]).run()
    assert d.responses()[0][0] == 504
    assert any(isinstance(a, CloseUpstream) for a in d.actions)


def test_upstream_closing_mid_response_closes_client() -> None:
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req()], [partial, b""]).run()
    assert d.to_client.startswith(b"HTTP/1.1 200")
    assert d.decisions()[-1].reason == "upstream_unavailable"


def test_bad_upstream_response_is_502() -> None:
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req()], [b"garbage\r\n\r\n"]).run()
    assert d.responses()[0][0] == 502


def test_timeouts_idle_closes_partial_gets_408() -> None:
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [b"<timeout>"]).run()
    assert d.to_client == b""
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [b"GET / HT", b"<timeout>"]).run()
    assert d.responses()[0][0] == 408


def test_malformed_request_gets_400_and_oversized_head_431() -> None:
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [b"NOT HTTP AT ALL\r\n\r\n"]).run()
    assert d.responses()[0][0] == 400
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [big]).run()
    assert d.responses()[0][0] == 431


def test_body_limits() -> None:
    g = gateway(max_body_bytes=10)
    d = Driver(Session(g, facts(GOOD), at=NOW), [req(body=b"x" * 11, method="POST")]).run()
    assert d.responses()[0][0] == 413
    chunked = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\naaaaaaaa\r\n8\r\nbbbbbbbb\r\n0\r\n\r\n"
    )
    d = Driver(Session(g, facts(GOOD), at=NOW), [chunked], [upstream_response()]).run()
    assert d.responses()[0][0] == 413
    assert isinstance(d.actions[-1], Close)


def test_streams_chunked_body_upstream() -> None:
    chunked = (
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"2\r\nde\r\n0\r\n\r\n",
    )
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), list(chunked), [upstream_response()]).run()
    [(_, h)] = d.upstream_requests()
    assert h[b"transfer-encoding"] == [b"chunked"]
    assert b"abc" in d.to_upstream and b"de" in d.to_upstream


def test_expect_100_continue_is_answered() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [head, b"abc"], [upstream_response()]).run()
    assert d.to_client.startswith(b"HTTP/1.1 100 ")
    [(_, h)] = d.upstream_requests()
    assert b"expect" not in h


def test_leaf_only_is_noted() -> None:
    s = Session(gateway(), TLSFacts(chain=(GOOD.der,), leaf_only=True, peer=("127.0.0.1", 1)), at=NOW)
    assert not s.verdict.ok  # the intermediate was not visible and is not in the pool
    assert "only the leaf" in s.verdict.detail


def test_illegal_driving_raises_session_error() -> None:
    s = Session(gateway(), facts(GOOD), at=NOW)
    with pytest.raises(SessionError, match="await_request"):
        s.upstream_connected()
    with pytest.raises(SessionError):
        s.receive_upstream(b"x")


def test_handshake_decision() -> None:
    d = handshake_decision(Reason.UNTRUSTED, "unknown ca", ("::1", 9))
    assert (d.outcome, d.reason, d.peer) == ("deny", "untrusted", "[::1]:9")
    assert d.as_log()["event"] == "mtls_decision"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=6), st.lists(st.binary(max_size=200), max_size=4))
def test_arbitrary_bytes_never_raise(client: list[bytes], upstream: list[bytes]) -> None:
    chunks = [req(), *client]
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), chunks, list(upstream)).run(max_steps=2000)
    assert isinstance(d.actions[-1], Close)


# -- trusted proxies: a request's certificate may come from its proxy -------------------------

from mtlscore.proxy.headers import emit_client_cert, emit_client_cert_chain  # noqa: E402
from mtlscore.proxy.trusted import TrustedProxy  # noqa: E402

PROXY = TrustedProxy(name="lb", networks=(ipaddress.ip_network("127.0.0.0/8"),))


def _forwarded(issued: pki.Issued) -> list[tuple[str, str]]:
    return [("Client-Cert", emit_client_cert(parse_certificate(issued.der))),
            ("Client-Cert-Chain", emit_client_cert_chain([parse_certificate(INTER.der)]))]


def test_a_trusted_proxy_speaks_for_each_request() -> None:
    # The proxy connects without a certificate of its own and multiplexes two clients.
    g = gateway(proxies=(PROXY,))
    other = INTER.leaf("CN=someone else")
    d = Driver(Session(g, facts(None), at=NOW),
               [req(headers=_forwarded(GOOD)), req(headers=_forwarded(other)), req(headers=_forwarded(EXPIRED))],
               [upstream_response(), upstream_response()]).run()
    assert [r[0] for r in d.responses()] == [200, 403, 403]
    first, second, third = d.decisions()
    assert first.account == "partner-abc" and first.thumbprint == parse_certificate(GOOD.der).x5t_s256
    assert second.reason == "identity_unmapped"
    assert second.thumbprint == parse_certificate(other.der).x5t_s256
    assert third.reason == "expired"
    # The upstream saw the forwarded client's identity, once, for the first request only.
    head = d.to_upstream.lower()
    assert head.count(b"x-mtls-account: partner-abc") == 1
    # A request from the proxy without a forwarded certificate has none.
    d = Driver(Session(g, facts(None), at=NOW), [req()]).run()
    assert d.responses()[0][0] == 403 and d.decisions()[0].reason == "not_provided"


def test_headers_from_a_peer_that_is_not_a_proxy_are_not_believed() -> None:
    far = TrustedProxy(name="far", networks=(ipaddress.ip_network("10.9.0.0/16"),))
    g = gateway(proxies=(far,))
    # The client's own certificate is expired; it claims a good one in a header.
    d = Driver(Session(g, facts(EXPIRED), at=NOW), [req(headers=_forwarded(GOOD))], [upstream_response()]).run()
    assert d.responses()[0][0] == 403
    assert d.decisions()[0].reason == "expired"


def test_without_proxies_the_connection_decides_and_headers_are_stripped() -> None:
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req(headers=_forwarded(EXPIRED))],
               [upstream_response()]).run()
    assert d.responses()[0][0] == 200
    sent = parse_certificate(GOOD.der).x5t_s256
    assert d.decisions()[0].thumbprint == sent
    # The client's Client-Cert never reaches the upstream; the gateway's own one does.
    head = d.to_upstream.decode("latin-1").lower()
    assert head.count("client-cert:") == 1
    assert emit_client_cert(parse_certificate(EXPIRED.der)).lower() not in head


def test_proxy_handshakes_are_lenient_and_requests_strict() -> None:
    s = ServerConfig(certificate=pathlib.Path("s.pem"), key=pathlib.Path("s.key"), proxies=(PROXY,))
    assert s.mode == "reject_invalid" and s.handshake_mode == "allow_invalid_or_missing"
    assert s.effective_tls_engine == "deferred" and s.proxy_policy is not None
    plain = ServerConfig(certificate=pathlib.Path("s.pem"), key=pathlib.Path("s.key"))
    assert plain.handshake_mode == "reject_invalid" and plain.proxy_policy is None


XFF = {"client_address_header": "X-Forwarded-For"}


@pytest.mark.parametrize(
    ("proxy", "sent", "status", "address", "detail"),
    [
        # The client, as the proxy reported it in the header it is configured to set.
        (XFF, [("X-Forwarded-For", "10.1.2.3")], 200, "10.1.2.3", ""),
        # A client-written entry comes first, the proxy's own last: hop 1 is the proxy's.
        (XFF, [("X-Forwarded-For", "10.1.2.3, 192.0.2.9")], 403, "192.0.2.9", "entry 1 from the right"),
        # Two field lines combine in order (RFC 9110 §5.3): still the rightmost entry.
        (XFF, [("X-Forwarded-For", "10.1.2.3"), ("X-Forwarded-For", "192.0.2.9")], 403, "192.0.2.9", ""),
        # Two proxies (client -> CDN -> lb): hop 2 is what the CDN saw.
        ({"client_address_header": "X-Forwarded-For", "client_address_hop": 2},
         [("X-Forwarded-For", "6.6.6.6, 10.1.2.3, 192.0.2.9")], 200, "10.1.2.3", ""),
        # No report, or garbage where the address should be: unknown, refused.
        (XFF, [], 403, "127.0.0.1", "has 0 entries; client_address_hop is 1"),
        (XFF, [("X-Forwarded-For", "10.1.2.3:4444")], 403, "127.0.0.1", "is not an IP address"),
        # A proxy without client_address_header: its own address is the client's, and a
        # forged X-Forwarded-For is not believed (the nginx finding of issue 15).
        ({}, [("X-Forwarded-For", "10.1.2.3")], 403, "127.0.0.1", "that is trusted proxy 'lb' itself"),
        # A one-address header: exactly one value, else refused rather than guessed.
        ({"client_address_header": "X-Real-IP"}, [("X-Real-IP", "10.1.2.3")], 200, "10.1.2.3", ""),
        ({"client_address_header": "X-Real-IP"}, [("X-Real-IP", "10.1.2.3"), ("X-Real-IP", "10.1.2.4")], 403, "127.0.0.1", "carries 2 values"),
    ],
)
def test_ip_allow_behind_a_trusted_proxy_uses_only_its_configured_header(
    proxy: dict[str, Any], sent: list[tuple[str, str]], status: int, address: str, detail: str
) -> None:
    g = gateway(proxies=(TrustedProxy(name="lb", networks=PROXY.networks, **proxy),), account={"ip_allow": ["10.0.0.0/8"]})
    d = Driver(Session(g, facts(None), at=NOW), [req(headers=_forwarded(GOOD) + sent)], [upstream_response()]).run()
    assert d.responses()[0][0] == status
    if status == 403:
        decision = d.decisions()[0]
        assert decision.reason == "ip_not_allowed" and detail in decision.detail
    else:
        # The upstream gets one X-Forwarded-For: the address the gateway decided with.
        [(_, h)] = d.upstream_requests()
        assert h[b"x-forwarded-for"] == [address.encode()]
        assert b"x-real-ip" not in h


CRL_URL = "http://crl.example/inter.crl"
FETCHING = Policy(fetch=True, revocation="hard", revocation_ca="off")


def test_a_forwarded_chain_waits_for_revocation_data_when_the_runtime_fetches() -> None:
    good, revoked = INTER.leaf(DN, crl_urls=[CRL_URL]), INTER.leaf(DN, crl_urls=[CRL_URL])
    g = gateway(proxies=(PROXY,), policy=FETCHING)
    crl = INTER.crl(revoked=[revoked])
    d = Driver(Session(g, facts(None), at=NOW, fetch=True),
               [req(headers=_forwarded(good)), req(headers=_forwarded(revoked))], [upstream_response()],
               fetched={CRL_URL: crl}).run()
    assert [r[0] for r in d.responses()] == [200, 403]
    assert [x.reason for x in d.decisions()] == [None, "revoked"]
    assert sum(isinstance(a, Validate) for a in d.actions) == 2
    assert d.asked == [CRL_URL]  # fetched once; the second request used the revocation cache
    # Nothing to fetch from: hard-fail refuses, and the proxy's connection stays open.
    d = Driver(Session(gateway(proxies=(PROXY,), policy=FETCHING), facts(None), at=NOW, fetch=True),
               [req(headers=_forwarded(good)), req(headers=_forwarded(good))]).run()
    assert [r[0] for r in d.responses()] == [403, 403]
    assert d.decisions()[0].reason == "revocation_unavailable"
    # A runtime without a fetcher (fetch=False): validated on the spot, no Validate action.
    d = Driver(Session(gateway(proxies=(PROXY,), policy=FETCHING), facts(None), at=NOW),
               [req(headers=_forwarded(good))], fetched={CRL_URL: crl}).run()
    assert not any(isinstance(a, Validate) for a in d.actions) and d.asked == []
    assert d.decisions()[0].reason == "revocation_unavailable"


def test_validate_must_be_answered_before_anything_else() -> None:
    s = Session(gateway(proxies=(PROXY,), policy=FETCHING), facts(None), at=NOW, fetch=True)
    with pytest.raises(SessionError):
        s.validated(Verdict.reject(Reason.REVOKED, "not asked"))
    s.receive_client(req(headers=_forwarded(INTER.leaf(DN, crl_urls=[CRL_URL]))))
    action = s.next_action(at=NOW, now=0.0)
    assert isinstance(action, Validate) and s.state is State.VALIDATING
    with pytest.raises(SessionError):
        s.next_action(at=NOW, now=0.0)
    s.validated(Verdict.reject(Reason.REVOKED, "scripted"))
    assert s.state is not State.VALIDATING
    with pytest.raises(SessionError):
        s.validated(Verdict.reject(Reason.REVOKED, "twice"))


# -- issue 15: forwarding headers are the gateway's ------------------------------------------

SPOOFS = [
    ("X-Forwarded-For", "6.6.6.6"),
    ("x-forwarded-for", "6.6.6.6"),  # any case (h11 lower-cases names)
    ("X_Forwarded_For", "6.6.6.6"),  # CGI/WSGI read "_" as "-"
    ("X-Forwarded-Proto", "http"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Port", "80"),
    ("X-Forwarded-Prefix", "/admin"),
    ("Forwarded", "for=6.6.6.6;proto=http"),
    ("X-Real-IP", "6.6.6.6"),
    ("X_Real_IP", "6.6.6.6"),
    ("True-Client-IP", "6.6.6.6"),
    ("Remote-User", "admin"),
    ("X-Remote-User", "admin"),
    ("X-Client-DN", "CN=admin"),
    ("X-Client-Verify", "SUCCESS"),
    ("X-SSL-Client-S-DN", "CN=admin"),
    ("X-SSL-Client-Cert", "forged"),
    ("SSL_Client_Cert", "forged"),
    ("X-Amzn-Mtls-Clientcert-Subject", "CN=admin"),
    ("X-Original-URL", "/admin"),
]


@pytest.mark.parametrize(("name", "value"), SPOOFS, ids=[n for n, _ in SPOOFS])
def test_forwarding_and_identity_headers_from_the_client_never_reach_the_upstream(name: str, value: str) -> None:
    # Sent twice as well: every copy goes, and the gateway's own value is the only one.
    sent = [(name, value), (name, value)]
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req("/a", sent)], [upstream_response()]).run()
    [(_, h)] = d.upstream_requests()
    assert h[b"x-forwarded-for"] == [b"127.0.0.1"]
    assert h[b"x-forwarded-proto"] == [b"https"]
    assert value.encode() not in [v for vs in h.values() for v in vs]
    normal = name.lower().replace("_", "-").encode()
    if normal not in (b"x-forwarded-for", b"x-forwarded-proto"):
        assert normal not in h and name.lower().encode() not in h


def test_an_obs_fold_cannot_smuggle_a_header() -> None:
    # RFC 9112 §5.2: h11 unfolds the continuation line into the previous value; it never
    # becomes a field of its own, and the value stays one line upstream.
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n X-Forwarded-For: 6.6.6.6\r\n\r\n"
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [raw], [upstream_response()]).run()
    [(_, h)] = d.upstream_requests()
    assert h[b"x-forwarded-for"] == [b"127.0.0.1"]
    assert h[b"x-note"] == [b"a X-Forwarded-For: 6.6.6.6"]


def test_strip_request_headers_is_configurable_but_the_gateways_own_always_go() -> None:
    # The operator lets X-Client-Version through (dropping X-Client-*) and adds X-Tenant.
    g = gateway(strip_request_headers=("X-Tenant", "Internal-*"))
    sent = [("X-Client-Version", "7"), ("X-Tenant", "t"), ("Internal-Role", "admin"),
            ("X-Forwarded-For", "6.6.6.6"), ("X-Real-IP", "6.6.6.6"), ("Forwarded", "for=x"),
            ("X-Client-Cert-Hash", "forged"), ("X-Mtls-Account", "root")]
    d = Driver(Session(g, facts(GOOD), at=NOW), [req("/", sent)], [upstream_response()]).run()
    [(_, h)] = d.upstream_requests()
    assert h[b"x-client-version"] == [b"7"]
    assert not {b"x-tenant", b"internal-role", b"x-real-ip", b"forwarded"} & set(h)
    assert h[b"x-forwarded-for"] == [b"127.0.0.1"] and h[b"x-mtls-account"] == [b"partner-abc"]
    assert h[b"x-client-cert-hash"] != [b"forged"]


def test_a_proxys_custom_headers_are_stripped_before_forwarding() -> None:
    proxy = TrustedProxy(name="lb", networks=PROXY.networks, format="nginx", header="X-Partner-Cert",
                         client_address_header="X-Partner-Client")
    g = gateway(proxies=(proxy,))
    d = Driver(Session(g, facts(GOOD), at=NOW),
               [req(headers=[("X-Partner-Cert", "x"), ("X-Partner-Client", "10.0.0.1")])]).run()
    assert d.responses()[0][0] == 403  # the header is not a certificate: malformed, refused
    proxy = TrustedProxy(name="far", networks=(ipaddress.ip_network("10.9.0.0/16"),), header="X-Partner-Cert",
                         client_address_header="X-Partner-Client")
    d = Driver(Session(gateway(proxies=(proxy,)), facts(GOOD), at=NOW),
               [req(headers=[("X-Partner-Cert", "x"), ("X-Partner-Client", "10.0.0.1")])],
               [upstream_response()]).run()
    [(_, h)] = d.upstream_requests()  # not from the proxy: the TLS certificate decides
    assert b"x-partner-cert" not in h and b"x-partner-client" not in h


# -- issue 15: request framing ----------------------------------------------------------------

CL_TE = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        # RFC 9112 §6.1: both framings at once; before the fix the gateway forwarded a head
        # with Content-Length: 10, sent 3 bytes and died in h11 (no answer, a traceback).
        (CL_TE, 400, "invalid_framing"),
        (CL_TE.replace(b"Content-Length: 10\r\nTransfer-Encoding: chunked",
                       b"Transfer-Encoding: chunked\r\nContent-Length: 3"), 400, "invalid_framing"),
        (b"POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
         400, "invalid_framing"),
        # What h11 refuses itself, answered with its status hint and no traceback.
        (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 400, "protocol_error"),
        (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "protocol_error"),
        (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         501, "protocol_error"),
        (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400, "protocol_error"),
        (b"GET /a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For : 6.6.6.6\r\n\r\n", 400, "protocol_error"),
        (b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, "protocol_error"),
    ],
)
def test_ambiguous_framing_is_refused_and_never_forwarded(raw: bytes, status: int, reason: str) -> None:
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [raw], [upstream_response()]).run()
    [(got, headers, body)] = d.responses()
    assert (got, json.loads(body)["error"]) == (status, reason)
    assert headers["connection"] == "close" and isinstance(d.actions[-1], Close)
    assert d.to_upstream == b"" and not any(isinstance(a, OpenUpstream) for a in d.actions)
    assert [(x.outcome, x.status, x.reason) for x in d.decisions()] == [("error", status, reason)]


def test_identical_content_length_copies_are_forwarded_as_one() -> None:
    # RFC 9110 §8.6: a recipient MAY replace identical copies by one; h11 does, and the
    # gateway re-frames, so the upstream never sees two.
    raw = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [raw], [upstream_response()]).run()
    [(_, h)] = d.upstream_requests()
    assert h[b"content-length"] == [b"3"] and b"transfer-encoding" not in h
    assert d.responses()[0][0] == 200


def test_a_request_that_cannot_be_relayed_is_a_400_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    # Defence in depth behind the framing checks: if the head sent upstream ever declares
    # a length the body does not have, h11's LocalProtocolError becomes a 400 and a log line.
    import mtlscore.gateway.session as session_module

    real = session_module._upstream_request_headers

    def lying(*args: Any, **kw: Any) -> list[tuple[bytes, bytes]]:
        return real(*args, **{**kw, "length": 10})

    monkeypatch.setattr(session_module, "_upstream_request_headers", lying)
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req("/a", body=b"abc", method="POST")],
               [upstream_response()]).run()
    assert d.responses()[0][0] == 400
    assert d.decisions()[-1].reason == "protocol_error" and "Too little data" in d.decisions()[-1].detail
    assert any(isinstance(a, CloseUpstream) for a in d.actions)


# -- issue 15: request targets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "upstream_target"),
    [
        (b"/v1/score?x=1", b"/api/v1/score?x=1"),
        (b"/", b"/api/"),
        (b"/a/../admin", b"/api/admin"),  # resolved, and still under the prefix
        (b"/a/./b/", b"/api/a/b/"),
        (b"/a/b/..", b"/api/a/"),
        (b"/a/%2e%2E/b", b"/api/b"),  # percent-encoded dots are dots
        (b"/a/.%2E/b?q=/../x", b"/api/b?q=/../x"),  # the query is not a path
        (b"/a%2Eb/c", b"/api/a%2Eb/c"),  # a dot inside a segment is no dot-segment
        (b"//a", b"/api//a"),
        (b"/..", None),  # above "/": above the prefix
        (b"/a/../../admin", None),
        (b"/%2e%2e/admin", None),
        (b"/%2E./admin", None),
        (b"/a/..;x/admin", None),  # Tomcat reads "..;x" as ".."
        (b"/a%2Fb", None),  # an encoded "/" is refused
        (b"/a%2fb", None),
        (b"/a%5Cb", None),
        (b"/a\\..\\b", None),
        (b"/a%00", None),
        (b"/a%zz", None),
        (b"/a#frag", None),
        (b"*", None),  # asterisk-form: not configured
        (b"http://evil.example/x", None),  # absolute-form: not configured
        (b"evil.example:443", None),
    ],
)
def test_request_targets_are_normalised_under_the_upstream_prefix(
    target: bytes, upstream_target: bytes | None
) -> None:
    g = gateway()
    g = Gateway(validator=g.validator, server=replace(g.server, upstream=Upstream("127.0.0.1", 8080, "/api")))
    method = b"OPTIONS" if target == b"*" else b"GET"
    raw = method + b" " + target + b" HTTP/1.1\r\nHost: api.example\r\n\r\n"
    d = Driver(Session(g, facts(GOOD), at=NOW), [raw, req("/next")], [upstream_response(), upstream_response()]).run()
    targets = [t for t, _ in d.upstream_requests()]
    if upstream_target is None:
        first = d.responses()[0]
        assert (first[0], json.loads(first[2])["error"]) == (400, "invalid_target")
        assert d.decisions()[0].reason == "invalid_target"
        # The head was well framed: the connection stays up for the next request.
        assert targets == [b"/api/next"]
    else:
        assert targets == [upstream_target, b"/api/next"]


def test_connect_and_other_forms_are_refused_even_when_configured() -> None:
    g = gateway(request_target_forms=frozenset({"origin", "absolute", "asterisk"}))
    for raw in (b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
                b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",  # "*" is only for OPTIONS
                b"GET ftp://evil.example/x HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET http://user@evil.example/x HTTP/1.1\r\nHost: x\r\n\r\n"):
        d = Driver(Session(g, facts(GOOD), at=NOW), [raw], [upstream_response()]).run()
        assert d.decisions()[0].reason == "invalid_target", raw
        assert d.to_upstream == b""


def test_absolute_and_asterisk_forms_when_configured() -> None:
    g = gateway(request_target_forms=frozenset({"origin", "absolute", "asterisk"}))
    g = Gateway(validator=g.validator, server=replace(g.server, upstream=Upstream("127.0.0.1", 8080, "/api")))
    raws = [b"GET HTTP://Origin.example:8443/a/../b?x HTTP/1.1\r\nHost: other.example\r\n\r\n",
            b"GET http://origin.example HTTP/1.1\r\nHost: other.example\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"]
    d = Driver(Session(g, facts(GOOD), at=NOW), raws, [upstream_response()] * 3).run()
    (t1, h1), (t2, h2), (t3, _) = d.upstream_requests()
    # RFC 9112 §3.2.2: the target's authority replaces Host.
    assert (t1, h1[b"host"]) == (b"/api/b?x", [b"Origin.example:8443"])
    assert (t2, h2[b"host"]) == (b"/api/", [b"origin.example"])
    assert t3 == b"*"


def test_a_refused_forwarded_certificate_keeps_the_address_its_proxy_reported() -> None:
    # allow_invalid_or_missing forwards a request whose forwarded certificate is malformed
    # (the proxy's decision is Reject); the upstream still gets the client's address.
    proxy = TrustedProxy(name="lb", networks=PROXY.networks, client_address_header="X-Forwarded-For")
    g = gateway(mode="allow_invalid_or_missing", proxies=(proxy,))
    sent = [("Client-Cert", ":not base64:"), ("X-Forwarded-For", "6.6.6.6, 10.1.2.3")]
    d = Driver(Session(g, facts(None), at=NOW), [req(headers=sent)], [upstream_response()]).run()
    [(_, h)] = d.upstream_requests()
    assert h[b"x-client-cert-chain-verified"] == [b"false"]
    assert h[b"x-forwarded-for"] == [b"10.1.2.3"]


def test_pipelined_requests_in_one_read_are_each_forwarded_and_answered_in_order() -> None:
    # Bytes past a request (the next one, sent without waiting) stay in h11's buffer when
    # the exchange ends: the session reads them as the next request before asking for more.
    # The client then waits for its answers: a read now would time out.
    d = Driver(Session(gateway(), facts(GOOD), at=NOW),
               [req("/one") + req("/two") + req("/three"), b"<timeout>"],
               upstream=[upstream_response(b"1"), upstream_response(b"2"), upstream_response(b"3")]).run()
    assert [body for _, _, body in d.responses()] == [b"1", b"2", b"3"]
    assert [target for target, _ in d.upstream_requests()] == [b"/one", b"/two", b"/three"]
    assert sum(isinstance(a, ReleaseUpstream) for a in d.actions) == 3

