"""The runtimes' connections as the driver uses them (``Stream``: recv with a deadline,
send with a deadline, stale, aclose), over real loopback TCP, both runtimes from one test
body: asyncio's ``ConnectionStream`` (a Protocol with one deadline timer per connection)
and trio's ``TrioStream`` (trio's low-level waits on the socket, or, where trio's socket has
no stdlib socket under it, its SocketStream)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture(params=["asyncio", "trio", "trio-socketstream"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param).split("-")[0]


@pytest.fixture
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["anyio_backend"])


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as s:
        s.settimeout(10)
        yield s


async def _pair(listener: socket.socket, variant: str) -> tuple[Any, socket.socket]:
    port = listener.getsockname()[1]
    if variant == "asyncio":
        from mtlscore.runtimes.asyncio import connect
    else:
        from mtlscore.runtimes.trio import connect
    stream = await connect("127.0.0.1", port, 10)
    if variant == "trio-socketstream":
        stream._raw = None  # as on a trio whose socket has no stdlib socket under it
    peer, _ = listener.accept()
    peer.settimeout(10)
    return stream, peer


def _later(delay: float, fn: Any) -> threading.Timer:
    t = threading.Timer(delay, fn)
    t.start()
    return t


@pytest.mark.anyio
async def test_reads_bytes_eof_and_deadlines(listener: socket.socket, variant: str) -> None:
    stream, peer = await _pair(listener, variant)
    with peer:
        peer.sendall(b"hello")
        assert await stream.recv(65536, 10) == b"hello"
        # A deadline that passes: None, and the connection still works.
        assert await stream.recv(65536, 0.05) is None
        # A later, shorter deadline than a read before it had is still kept (asyncio keeps one
        # timer per connection, armed for the earliest deadline pending).
        peer.sendall(b"a")
        assert await stream.recv(65536, 30) == b"a"
        started = time.monotonic()
        assert await stream.recv(65536, 0.1) is None
        assert time.monotonic() - started < 20  # not the 30 s of the read before
        # A read that waits past an earlier read's deadline gets its bytes.
        timer = _later(0.3, lambda: peer.sendall(b"late"))
        assert await stream.recv(65536, 10) == b"late"
        timer.join()
        peer.shutdown(socket.SHUT_WR)
        assert await stream.recv(65536, 10) == b""
        await stream.aclose()


@pytest.mark.anyio
async def test_more_than_one_read_takes(listener: socket.socket, variant: str) -> None:
    stream, peer = await _pair(listener, variant)
    with peer:
        data = bytes(range(256)) * 2048  # 512 KiB: more than the asyncio buffer's high mark
        threading.Thread(target=peer.sendall, args=(data,), daemon=True).start()
        got = b""
        while len(got) < len(data):
            chunk = await stream.recv(65536, 10)
            assert chunk, "the stream ended early"
            assert len(chunk) <= 65536
            got += chunk
        assert got == data
        await stream.aclose()
        assert peer.recv(1) == b""  # closed: the peer sees the end of the stream


@pytest.mark.anyio
async def test_stale_sees_bytes_or_eof_that_arrive_while_idle(listener: socket.socket, variant: str) -> None:
    stream, peer = await _pair(listener, variant)
    with peer:
        assert await stream.stale() is False
        peer.sendall(b"x")
        await anyio.sleep(0.2)  # for the bytes to cross loopback (stale never waits)
        assert await stream.stale() is True
        await stream.aclose()
    stream, peer = await _pair(listener, variant)
    peer.close()
    await anyio.sleep(0.2)
    assert await stream.stale() is True
    await stream.aclose()


@pytest.mark.anyio
async def test_a_reset_is_an_oserror(listener: socket.socket, variant: str) -> None:
    stream, peer = await _pair(listener, variant)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    with pytest.raises(OSError):
        for _ in range(3):  # the first send may still be taken; the reset shows by the next
            await stream.send(b"x" * 1000, 10)
            await anyio.sleep(0.05)
    await stream.aclose()


@pytest.mark.anyio
async def test_a_peer_that_does_not_read_times_the_send_out(listener: socket.socket, variant: str) -> None:
    stream, peer = await _pair(listener, variant)
    with peer:
        with pytest.raises(TimeoutError):
            for _ in range(10_000):  # until the kernel buffers are full and the wait times out
                await stream.send(b"x" * 65536, 0.2)
        await stream.aclose()
        # Aborted: what the peer never read is dropped, the peer sees a reset.
        peer.settimeout(10)
        with pytest.raises(OSError):
            while peer.recv(1 << 20):
                pass


@pytest.mark.anyio
async def test_a_read_of_bytes_already_there_still_yields_and_can_be_cancelled(
    listener: socket.socket, variant: str
) -> None:
    # trio takes bytes already there without waiting for readability: that read must still
    # be a checkpoint (a peer that keeps the socket readable must not starve other
    # connections) and a cancelled task must not take the bytes (the next read gets them).
    if variant == "asyncio":
        pytest.skip("asyncio's ConnectionStream hands over its buffer without a scheduler pass")
    stream, peer = await _pair(listener, variant)
    with peer:
        peer.sendall(b"first")
        while not await stream.stale():  # the bytes are in this side's socket
            await anyio.sleep(0.01)
        got: list[bytes | None] = []
        with anyio.CancelScope() as scope:
            scope.cancel()
            got.append(await stream.recv(65536, 10))
        assert scope.cancelled_caught and got == []
        ran: list[str] = []

        async def other() -> None:
            ran.append("other")

        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            # One byte a read: every read finds bytes there. trio may run this task first
            # in a scheduler batch, so the other task's turn is due by the second read.
            data = b""
            while len(data) < 5:
                data += await stream.recv(1, 10) or b""
            assert data == b"first"
            assert ran == ["other"]  # the reads let the other task run
        await stream.aclose()


@pytest.mark.anyio
async def test_a_read_that_ended_before_its_deadline_does_not_time_out_a_later_read(
    listener: socket.socket, variant: str
) -> None:
    # The first read waits (its bytes come after it started) and ends well before its
    # 1 s deadline; the next read waits past that deadline for its own bytes. trio keeps
    # one deadline entry per stream: the first read's, when it comes up, must move on to
    # the second read's deadline, not end it.
    stream, peer = await _pair(listener, variant)
    with peer:
        timer = _later(0.05, lambda: peer.sendall(b"soon"))
        assert await stream.recv(65536, 1.0) == b"soon"
        timer.join()
        timer = _later(1.4, lambda: peer.sendall(b"late"))
        started = time.monotonic()
        assert await stream.recv(65536, 10) == b"late"
        assert time.monotonic() - started >= 1.3
        timer.join()
        # And after a timeout the connection still sends and reads (the 408 path).
        assert await stream.recv(65536, 0.05) is None
        await stream.send(b"408", 10)
        assert peer.recv(16) == b"408"
        peer.sendall(b"again")
        assert await stream.recv(65536, 10) == b"again"
        await stream.aclose()


@pytest.mark.anyio
async def test_many_streams_time_out_each_at_its_own_deadline(listener: socket.socket, variant: str) -> None:
    pairs = [await _pair(listener, variant) for _ in range(12)]
    # Distinct and out of order; the first read waits longest (an earlier deadline must wake
    # the keeper sooner).
    timeouts = [1.0, 0.12, 0.6, 0.2, 0.85, 0.3, 0.45, 0.15, 0.7, 0.25, 0.95, 0.38]
    ended: dict[int, float] = {}
    started = time.monotonic()

    async def read(i: int) -> None:
        assert await pairs[i][0].recv(65536, timeouts[i]) is None
        ended[i] = time.monotonic() - started

    async with anyio.create_task_group() as tg:
        tg.start_soon(read, 0)
        await anyio.sleep(0.03)  # the longest read waits first (trio's keeper sleeps until it)
        for i in range(1, 12):
            tg.start_soon(read, i)
    for i, t in enumerate(timeouts):
        assert t - 0.01 <= ended[i] < t + 2.0
    assert ended[1] < ended[0] - 0.5  # 0.12 s did not wait for the 1 s read's deadline
    # They ended in the order of their deadlines (where those are far enough apart that a
    # busy machine's late wake-up cannot put two in one scheduler batch, run in any order).
    for i in range(12):
        for j in range(12):
            if timeouts[i] + 0.2 <= timeouts[j]:
                assert ended[i] < ended[j], (timeouts[i], timeouts[j])
    for stream, peer in pairs:
        await stream.aclose()
        peer.close()


@pytest.mark.anyio
async def test_reads_that_wait_keep_the_deadline_entries_bounded(listener: socket.socket, variant: str) -> None:
    # trio: a keep-alive connection's reads (each waits, each gets its bytes) must not pile
    # up entries in the deadline keeper (one per read would hold memory for the timeout),
    # not even when each read's deadline is earlier than the last (each needs its own entry).
    if variant != "trio":
        pytest.skip("trio's read-deadline keeper")
    from mtlscore.runtimes.trio import _read_deadlines

    stream, peer = await _pair(listener, variant)
    with peer:
        for timeouts in ([60.0] * 300, [60 - i * 0.1 for i in range(300)]):
            for timeout in timeouts:
                timer = _later(0.001, lambda: peer.sendall(b"x"))
                assert await stream.recv(65536, timeout) == b"x"
                timer.join()
            if timeouts[0] == timeouts[-1]:
                assert len(_read_deadlines()._heap) == 1  # the same timeout: one entry
        assert len(_read_deadlines()._heap) <= 2 + 64 + 1  # pruned: live ones, twice, and 64
        await stream.aclose()


@pytest.mark.anyio
async def test_a_deadline_that_passes_between_a_wakeup_and_the_read_still_ends_the_read(
    listener: socket.socket, variant: str
) -> None:
    # trio: the read's wait is woken because the socket is readable, and before the task
    # runs, the deadline keeper finds the deadline passed (its wake finds no wait left).
    # The read then finds no bytes (another reader took them, or a spurious wakeup) and
    # would wait again, with no deadline watching it any more: it must return None instead.
    if variant != "trio":
        pytest.skip("trio's read-deadline keeper")
    stream, peer = await _pair(listener, variant)
    real = stream._raw

    class Raced:
        def __init__(self) -> None:
            self.calls = 0

        def recv(self, n: int) -> bytes:
            self.calls += 1
            if self.calls == 1:
                raise BlockingIOError  # the eager read: nothing there yet
            real.recv(n)  # the bytes go elsewhere ...
            stream.timed_out, stream.read_deadline = True, None  # ... as the keeper fired
            raise BlockingIOError

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    stream._raw = Raced()
    with peer:
        timer = _later(0.05, lambda: peer.sendall(b"x"))
        with anyio.fail_after(5):
            assert await stream.recv(65536, 30) is None
        timer.join()
        stream._raw = real
        await stream.aclose()


@pytest.mark.anyio
async def test_closed_streams_do_not_pile_up_in_the_deadline_keeper(listener: socket.socket, variant: str) -> None:
    # trio: each connection's last read leaves an entry until its deadline (a minute, say);
    # a closed stream's entry is dead and pruned as new ones come, so a busy gateway holds
    # no more than about twice its open streams' entries, not every stream of the last minute.
    if variant != "trio":
        pytest.skip("trio's read-deadline keeper")
    from mtlscore.runtimes.trio import _read_deadlines

    for _ in range(200):
        stream, peer = await _pair(listener, variant)
        with peer:
            timer = _later(0.001, lambda peer=peer: peer.sendall(b"x"))
            assert await stream.recv(65536, 60) == b"x"  # waited: its entry stays for 60 s
            timer.join()
            await stream.aclose()
    # Pruned before a push once over twice the live entries (one: the stream being read)
    # plus 64: at most 2 * 1 + 64 + 1, whatever the timing (a read that finds its byte
    # already there does not wait, and pushes nothing).
    assert len(_read_deadlines()._heap) <= 2 * 1 + 64 + 1
