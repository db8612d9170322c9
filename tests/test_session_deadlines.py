"""The session's deadline arithmetic (issue 15, finding 3): driven by hand with a fake clock.

The session is given ``now``; each ReadClient carries what is left of the
deadline that applies, and when it has passed the session acts itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_session import GOOD, NOW, facts, gateway, req, upstream_response

from mtlscore.gateway.events import (
    Close,
    CloseUpstream,
    Log,
    OpenUpstream,
    ReadClient,
    ReadUpstream,
    WriteClient,
    WriteUpstream,
)
from mtlscore.gateway.session import Session


class Clocked:
    """Plays runtime with a clock the test moves; records what reached each side."""

    def __init__(self, session: Session, upstream: list[bytes] | None = None) -> None:
        self.s = session
        self.upstream = list(upstream or [])
        self.to_client = b""
        self.to_upstream = b""
        self.actions: list[Any] = []

    def until_read(self, now: float) -> ReadClient | Close:
        """Run the session at ``now`` until it wants client bytes or closes."""
        for _ in range(200):
            a = self.s.next_action(at=NOW, now=now)
            self.actions.append(a)
            if isinstance(a, ReadClient | Close):
                return a
            if isinstance(a, WriteClient):
                self.to_client += a.data
            elif isinstance(a, WriteUpstream):
                self.to_upstream += a.data
            elif isinstance(a, OpenUpstream):
                self.s.upstream_connected()
            elif isinstance(a, ReadUpstream):
                self.s.receive_upstream(self.upstream.pop(0) if self.upstream else b"")
        raise AssertionError("the session neither read nor closed")

    def feed(self, data: bytes, now: float) -> ReadClient | Close:
        self.s.receive_client(data)
        return self.until_read(now)

    def statuses(self) -> list[int]:
        return [int(line.split()[1]) for line in self.to_client.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]

    def reasons(self) -> list[str | None]:
        return [a.decision.reason for a in self.actions if isinstance(a, Log)]


def test_the_head_has_one_deadline_from_its_first_byte() -> None:
    # Slowloris: a byte every few seconds used to restart a fresh header timeout per read.
    c = Clocked(Session(gateway(header_timeout=10.0, keepalive_timeout=100.0), facts(GOOD), at=NOW))
    assert c.until_read(0.0) == ReadClient(100.0, 0.0)  # waiting for the first byte: the idle deadline
    assert c.feed(b"G", 50.0) == ReadClient(10.0, 0.0)  # the head's deadline starts at its first byte
    assert c.feed(b"E", 56.0) == ReadClient(4.0, 0.0)  # and a trickle does not move it
    assert c.feed(b"T", 59.5) == ReadClient(0.5, 0.0)
    closed = c.until_read(60.0)  # past it: answered 408 and closed, without another read
    assert isinstance(closed, Close)
    assert c.statuses() == [408]
    assert json.loads(c.to_client.split(b"\r\n\r\n", 1)[1])["error"] == "protocol_error"


def test_the_body_deadline_grows_only_with_bytes_received() -> None:
    g = gateway(body_timeout=10.0, min_body_rate=100)
    c = Clocked(Session(g, facts(GOOD), at=NOW))
    c.until_read(0.0)
    head = b"POST /up HTTP/1.1\r\nHost: api.example\r\nContent-Length: 1000\r\n\r\n"
    assert c.feed(head, 1.0) == ReadClient(10.0)  # the grace period, from the body's start
    assert c.feed(b"x" * 100, 5.0) == ReadClient(7.0)  # 100 bytes at 100 B/s: one more second
    assert c.feed(b"x", 9.0) == ReadClient(pytest.approx(3.01))
    closed = c.until_read(12.5)
    assert isinstance(closed, Close)
    assert c.statuses() == [408]
    assert any(isinstance(a, CloseUpstream) for a in c.actions)  # the half-sent request is dropped


def test_keepalive_idle_deadline_then_close() -> None:
    c = Clocked(Session(gateway(keepalive_timeout=15.0), facts(GOOD), at=NOW), [upstream_response()])
    c.until_read(0.0)
    assert c.feed(req(), 1.0) == ReadClient(15.0, 1.0)  # answered; idle again, from now
    assert c.until_read(10.0) == ReadClient(6.0, 1.0)
    assert isinstance(c.until_read(16.0), Close)
    assert c.statuses() == [200]  # an idle connection is closed without an answer


def test_max_connection_age_closes_after_the_current_response() -> None:
    g = gateway(max_connection_age=100.0, keepalive_timeout=15.0)
    c = Clocked(Session(g, facts(GOOD), at=NOW, now=0.0), [upstream_response(), upstream_response(b"two")])
    c.until_read(0.0)
    assert c.feed(req("/a"), 90.0) == ReadClient(10.0, 90.0)  # idle, capped by the age left
    closed = c.feed(req("/b"), 101.0)  # a request on an aged connection is served, then closed
    assert isinstance(closed, Close)
    responses = c.to_client.split(b"HTTP/1.1 ")[1:]
    assert len(responses) == 2
    assert b"connection: close" not in responses[0].lower()
    assert b"connection: close" in responses[1].lower() and responses[1].endswith(b"two")
    # Without an age limit (0) the same connection stays open.
    g = gateway(max_connection_age=0, keepalive_timeout=15.0)
    c = Clocked(Session(g, facts(GOOD), at=NOW, now=0.0), [upstream_response()])
    c.until_read(0.0)
    assert c.feed(req("/b"), 10_000.0) == ReadClient(15.0, 10_000.0)


def test_an_aged_connection_answering_locally_closes_too() -> None:
    c = Clocked(Session(gateway(upstream=False, max_connection_age=5.0), facts(GOOD), at=NOW, now=0.0))
    c.until_read(0.0)
    assert isinstance(c.feed(req(), 6.0), Close)
    assert c.statuses() == [200] and b"connection: close" in c.to_client.lower()


def test_writes_carry_the_write_timeout_and_a_stalled_client_is_dropped() -> None:
    big = upstream_response(b"x" * 100_000)
    c = Clocked(Session(gateway(write_timeout=7.0), facts(GOOD), at=NOW), [big[:50_000], big[50_000:]])
    c.until_read(0.0)
    c.s.receive_client(req())
    while True:
        a = c.s.next_action(at=NOW, now=1.0)
        c.actions.append(a)
        if isinstance(a, OpenUpstream):
            c.s.upstream_connected()
        elif isinstance(a, ReadUpstream):
            c.s.receive_upstream(c.upstream.pop(0))
        elif isinstance(a, WriteClient) and a.data.startswith(b"HTTP/1.1 200"):
            break  # the response head: the client does not take it
    writes = [a for a in c.actions if isinstance(a, WriteClient | WriteUpstream)]
    assert writes and {a.timeout for a in writes} == {7.0}
    c.s.client_write_timeout()
    rest = [c.s.next_action(at=NOW, now=8.0) for _ in range(3)]
    assert [type(a) for a in rest] == [Log, CloseUpstream, Close]
    assert rest[0].decision.reason == "write_timeout"  # type: ignore[union-attr]
    assert rest[2] == Close(linger=False)


def test_an_upstream_write_timeout_is_504() -> None:
    c = Clocked(Session(gateway(), facts(GOOD), at=NOW))
    c.until_read(0.0)
    c.s.receive_client(req("/up", method="POST", body=b"x" * 10))
    for _ in range(20):
        a = c.s.next_action(at=NOW, now=1.0)
        if isinstance(a, OpenUpstream):
            c.s.upstream_connected()
        elif isinstance(a, WriteUpstream):
            c.s.upstream_failed("timeout", "the upstream read nothing for 30 s")
            break
    c.until_read(2.0)
    assert c.statuses() == [504]
    assert c.reasons()[-1] == "upstream_timeout"


def test_the_age_never_refuses_a_connection_its_first_request() -> None:
    c = Clocked(Session(gateway(max_connection_age=1.0, keepalive_timeout=15.0), facts(GOOD), at=NOW, now=0.0),
                [upstream_response()])
    assert c.until_read(5.0) == ReadClient(15.0, 0.0)  # already past the age: still waits for one request
    assert isinstance(c.feed(req(), 6.0), Close)
    assert c.statuses() == [200] and b"connection: close" in c.to_client.lower()
