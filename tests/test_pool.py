"""runtimes/pool.py's retry rule (``Reused``) with scripted connections; the real upstream
that closes a pooled connection is in tests/integration/test_gateway_pool.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from mtlscore.runtimes.pool import REPLAY_LIMIT, Reused, UpstreamPool


class Scripted:
    """A connection whose reads return (or raise) what ``reads`` says, in order."""

    def __init__(self, *reads: bytes | Exception | None, send_error: Exception | None = None) -> None:
        self.reads = list(reads)
        self.sent: list[bytes] = []
        self.send_error = send_error
        self.closed = False

    async def recv(self, max_bytes: int, timeout: float) -> bytes | None:
        got = self.reads.pop(0)
        if isinstance(got, Exception):
            raise got
        return got

    async def send(self, data: bytes, timeout: float) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(data)

    async def stale(self) -> bool:
        return False

    async def aclose(self) -> None:
        self.closed = True


def opener(*fresh: Scripted) -> tuple[Callable[[], Awaitable[Scripted]], list[Scripted]]:
    opened: list[Scripted] = []
    queue = list(fresh)

    async def reopen() -> Scripted:
        opened.append(queue.pop(0))
        return opened[-1]

    return reopen, opened


def run(reused: Reused, *sends: bytes) -> bytes | None:
    async def main() -> bytes | None:
        for data in sends:
            await reused.send(data, 1.0)
        return await reused.recv(100, 1.0)

    return asyncio.run(main())


@pytest.mark.parametrize("failure", [b"", ConnectionResetError(104, "reset")])
def test_closed_before_the_response_an_idempotent_request_goes_out_again_on_a_new_connection(
    failure: bytes | Exception,
) -> None:
    old, new = Scripted(failure), Scripted(b"HTTP/1.1 200 OK\r\n")
    reopen, opened = opener(new)
    counted: list[int] = []
    reused = Reused(old, reopen, retry=True, on_retry=lambda: counted.append(1))
    assert run(reused, b"GET / HTTP/1.1\r\n", b"\r\n") == b"HTTP/1.1 200 OK\r\n"
    assert old.closed and opened == [new] and new.sent == [b"GET / HTTP/1.1\r\n\r\n"] and counted == [1]
    # Back in the pool goes the connection that answered, not the wrapper.
    pool = UpstreamPool()
    pool.put("k", reused, 0.0, 4)
    assert asyncio.run(pool.take("k", 0.0, 10.0)) is new


def test_a_failed_write_is_retried_with_everything_written_before() -> None:
    old, new = Scripted(send_error=BrokenPipeError(32, "pipe")), Scripted(b"HTTP/1.1 200 OK\r\n")
    reopen, _ = opener(new)
    assert run(Reused(old, reopen, retry=True), b"PUT / HTTP/1.1\r\n") == b"HTTP/1.1 200 OK\r\n"
    assert new.sent == [b"PUT / HTTP/1.1\r\n"]


def test_no_retry_when_the_rule_says_no() -> None:
    # Not idempotent: the end of stream reaches the session (a 502).
    reopen, opened = opener(Scripted(b"x"))
    assert run(Reused(Scripted(b""), reopen, retry=False), b"POST / HTTP/1.1\r\n\r\n") == b""
    with pytest.raises(ConnectionResetError):
        run(Reused(Scripted(ConnectionResetError()), reopen, retry=False), b"POST /\r\n\r\n")
    # More written than is held.
    assert run(Reused(Scripted(b""), reopen, retry=True), b"x" * (REPLAY_LIMIT + 1)) == b""
    # A timeout is a slow upstream, not a closed one: no second wait.
    assert run(Reused(Scripted(None), reopen, retry=True), b"GET /\r\n\r\n") is None
    with pytest.raises(TimeoutError):
        run(Reused(Scripted(send_error=TimeoutError()), reopen, retry=True), b"GET /\r\n\r\n")
    assert opened == []


def test_never_after_a_response_byte_and_never_twice() -> None:
    async def main() -> None:
        reopen, opened = opener(Scripted(b"x"))
        started = Reused(Scripted(b"HTTP/1.1 2", b""), reopen, retry=True)
        await started.send(b"GET /\r\n\r\n", 1.0)
        assert await started.recv(100, 1.0) == b"HTTP/1.1 2"
        assert await started.recv(100, 1.0) == b""  # cut mid-response: the session's 502
        assert opened == []
        # The new connection closes too: that end of stream is the answer, no third try.
        reopen, opened = opener(Scripted(b""), Scripted(b"never"))
        twice = Reused(Scripted(b""), reopen, retry=True)
        await twice.send(b"GET /\r\n\r\n", 1.0)
        assert await twice.recv(100, 1.0) == b"" and len(opened) == 1

    asyncio.run(main())


def test_a_new_connection_that_cannot_be_opened_is_the_callers_failure() -> None:
    async def refused() -> Scripted:
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(ConnectionRefusedError):
        run(Reused(Scripted(b""), refused, retry=True), b"GET /\r\n\r\n")


@pytest.mark.parametrize(("method", "retry"), [
    ("GET", True), ("HEAD", True), ("OPTIONS", True), ("PUT", True), ("DELETE", True),
    ("POST", False), ("PATCH", False), ("get", False),  # method names are case-sensitive (RFC 9110 §9.1)
])
def test_the_session_says_which_requests_may_be_retried(method: str, retry: bool) -> None:
    from test_session import GOOD, NOW, Driver, facts, gateway, req, upstream_response

    from mtlscore.gateway.events import OpenUpstream
    from mtlscore.gateway.session import Session

    body = b"x" if method in ("PUT", "POST", "PATCH") else None
    d = Driver(Session(gateway(), facts(GOOD), at=NOW), [req(method=method, body=body)], [upstream_response()]).run()
    [opened] = [a for a in d.actions if isinstance(a, OpenUpstream)]
    assert opened.retry is retry
