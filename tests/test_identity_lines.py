"""The identity fields written after h11's request head (forwarding.with_identity_lines) are
the bytes h11 writes with them among its fields: checked on random heads, and on what a
session sends upstream against a session that leaves them to h11."""

from __future__ import annotations

from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_session import GOOD, INTER, NOW, Driver, facts, gateway, req, upstream_response

import mtlscore.gateway.session as session_module
from mtlscore.decision.verdict import Verdict
from mtlscore.gateway.forwarding import IdentityFields, identity_fields, with_identity_lines
from mtlscore.gateway.session import Session
from mtlscore.x509.cert import parse_certificate

_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).map(str.encode)
_VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).map(str.encode)
_ACTS_ON = {b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect"}
_NAME = _TOKEN.filter(lambda n: n not in _ACTS_ON)


def _head(fields: list[tuple[bytes, bytes]], framing: str, last: list[tuple[bytes, bytes]]) -> bytes:
    # As the session orders a forwarded head: Host, the client's fields, the framing, then
    # the gateway's own (identity last).
    headers = [(b"host", b"upstream.example"), *fields]
    if framing == "length":
        headers.append((b"content-length", b"5"))
    elif framing == "chunked":
        headers.append((b"transfer-encoding", b"chunked"))
    return h11.Connection(h11.CLIENT).send(h11.Request(method="POST", target="/x", headers=[*headers, *last]))


@settings(max_examples=300, deadline=None)
@given(
    client=st.lists(st.tuples(_NAME, _VALUE), max_size=6),
    identity=st.lists(st.tuples(_NAME, _VALUE), min_size=1, max_size=6),
    framing=st.sampled_from(["none", "length", "chunked"]),
)
def test_spliced_lines_are_the_bytes_h11_writes_with_them_last(
    client: list[tuple[bytes, bytes]], identity: list[tuple[bytes, bytes]], framing: str
) -> None:
    lines = b"".join(b"%s: %s\r\n" % kv for kv in identity)
    assert with_identity_lines(_head(client, framing, []), lines) == _head(client, framing, identity)


def test_a_head_h11_did_not_end_is_never_spliced() -> None:
    with pytest.raises(h11.LocalProtocolError):
        with_identity_lines(b"GET / HTTP/1.1\r\nhost: x\r\n", b"x-a: 1\r\n")


def _verdict() -> tuple[Verdict, tuple[Any, ...]]:
    leaf, inter = parse_certificate(GOOD.der), parse_certificate(INTER.der)
    return Verdict(True, path=(leaf, inter)), (leaf, inter)


def test_identity_fields_come_with_their_lines_unless_h11_acts_on_a_name() -> None:
    verdict, presented = _verdict()
    usual = identity_fields(verdict, presented, "partner-abc", gateway().server)
    assert usual is not None and usual.lines == b"".join(b"%s: %s\r\n" % kv for kv in usual.fields)
    assert (b"x-mtls-account", b"partner-abc") in usual.fields
    # A name h11 reads when it writes a head (settings.py refuses it as account_header; a
    # ServerConfig built in code is not checked): the fields then go through h11.
    odd = identity_fields(verdict, presented, "partner-abc", gateway(account_header="Expect").server)
    assert odd is not None and odd.lines is None and (b"expect", b"partner-abc") in odd.fields


def _to_upstream(monkeypatch: pytest.MonkeyPatch, spliced: bool) -> bytes:
    if not spliced:
        real = session_module.identity_fields

        def through_h11(*args: Any) -> IdentityFields | None:
            built = real(*args)
            return None if built is None else IdentityFields(built.fields, None)

        monkeypatch.setattr(session_module, "identity_fields", through_h11)
    requests = [
        req("/a"),
        req("/b", headers=[("X-Trace", "1"), ("X-Mtls-Account", "spoofed")], body=b"hello", method="POST"),
        req("/c?q=1", headers=[("Accept", "*/*")], method="HEAD"),
        req("/d", headers=[("Transfer-Encoding", "chunked")], method="PUT").replace(
            b"\r\n\r\n", b"\r\n\r\n5\r\nhello\r\n", 1),
    ]
    responses = [upstream_response() for _ in requests]
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), requests, responses).run()
    return bytes(d.to_upstream)


def test_a_session_sends_upstream_the_bytes_h11_would(monkeypatch: pytest.MonkeyPatch) -> None:
    spliced = _to_upstream(monkeypatch, spliced=True)
    through = _to_upstream(monkeypatch, spliced=False)
    assert spliced == through
    assert spliced.count(b"x-mtls-account: partner-abc\r\n") == 4 and b"spoofed" not in spliced
