"""The trio runtime: sockets, timeouts and signals around the shared gateway loop.

    state = GatewayState.from_config_file("mtlscore.toml")
    trio.run(serve, state)

``serve`` follows trio's ``nursery.start`` protocol (``task_status.started``
with a ``ServerInfo``). SIGHUP reloads, SIGTERM and SIGINT shut down
gracefully, and the config file is polled for changes.
"""

from __future__ import annotations

import contextlib
import errno
import select
import signal
import socket
import struct
from collections.abc import Awaitable, Callable
from heapq import heapify, heappop, heappush
from itertools import count
from math import inf

import trio

from ..gateway.settings import Address
from ..gateway.shared import SharedSettings
from . import ServerInfo, TaskStatus
from .admin import serve_admin
from .driver import serve_connection
from .fetch_trio import FetchError, TrioFetcher
from .pool import UpstreamPool, reap_interval
from .shared import Backend, store_for
from .startup import listen_error
from .state import GatewayState
from .tls import presented_chain, server_context

__all__ = ["FetchError", "TrioFetcher", "TrioStream", "connect", "presented_chain", "serve", "server_context"]


class TrioStream:
    """A ``trio.SocketStream`` as the driver's ``Stream``.

    Reads and writes go to the socket under it with trio's low-level waits, not through
    ``receive_some``/``send_all``: those check for a concurrent call, try the call, and
    then yield to the scheduler once more even when the call did not wait — per request
    a scheduler pass and a poll of the kernel for nothing. Here a read where bytes are
    likely there takes them between the two checkpoints trio's own socket calls make
    around a call that did not wait (cancellation and fairness), else waits for the socket
    to be readable under its deadline; a write that the kernel takes whole returns at once (the
    read that follows checkpoints), one that does not waits for room under its deadline.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._raw = _stdlib_socket(stream.socket)
        self._eager = True  # try a read before waiting (see recv)
        # For _ReadDeadlines: the waiting read's deadline (None: no read waiting); the live
        # entry it keeps for this stream (its number, None: none) and that entry's time;
        # whether it woke the read because the deadline passed.
        self.read_deadline: float | None = None
        self.entry: int | None = None
        self.entry_at = inf
        self.timed_out = False

    async def recv(self, max_bytes: int, timeout: float) -> bytes | None:
        sock = self._raw
        if sock is None:
            return await self._receive_some(max_bytes, timeout)
        if self._eager:
            # Bytes are likely there already (a new connection's first read, or the last read
            # found bytes without waiting or filled its buffer): take them without the timeout
            # scope and the epoll registration (an epoll_ctl) that waiting costs, between the
            # checkpoints trio's own socket calls make around a call that did not wait
            # (cancellation, fairness). Only then: a keep-alive peer's next request has
            # mostly not arrived when the read starts (in auth_bench.py ~96 % of reads), and
            # a failed recv for each would cost more than the hits save.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                data = sock.recv(max_bytes)
            except BlockingIOError:
                self._eager = False
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
        # The timeout: a deadline _ReadDeadlines watches, not a cancel scope per read (a
        # scope costs ~5 µs to enter and leave, and each leaves an entry in trio's deadline
        # heap; two reads per proxied request). When it passes, the wait ends as trio's does
        # for a socket about to be closed, and the read returns None as a timeout.
        self.timed_out = False
        _read_deadlines().watch(self, timeout)
        try:
            while True:
                if self.timed_out:
                    # The deadline passed after a wakeup that found no bytes (below): the
                    # keeper ended this read's watch, so a wait now would have no deadline.
                    return None
                try:
                    await trio.lowlevel.wait_readable(sock)
                except trio.ClosedResourceError as exc:
                    if self.timed_out:
                        return None
                    raise OSError(str(exc)) from None
                try:
                    data = sock.recv(max_bytes)
                except BlockingIOError:
                    continue  # readable, then not (another reader, or a spurious wakeup): wait again
                self._eager = len(data) == max_bytes  # a full buffer: more is likely waiting
                return data
        finally:
            self.read_deadline = None

    async def send(self, data: bytes, timeout: float) -> None:
        sock = self._raw
        if sock is None:
            return await self._send_all(data, timeout)
        await trio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(data)
        try:
            sent = sock.send(view)
        except BlockingIOError:
            sent = 0
        if sent == len(view):
            return  # the kernel took it all
        view = view[sent:]
        # Bounded: a peer that does not read would otherwise hold this task forever.
        with trio.move_on_after(timeout) as scope:
            while view:
                try:
                    await trio.lowlevel.wait_writable(sock)
                except trio.ClosedResourceError as exc:
                    raise OSError(str(exc)) from None
                try:
                    view = view[sock.send(view):]
                except BlockingIOError:
                    continue
        if scope.cancelled_caught:
            self.abort()
            raise TimeoutError(f"the peer took nothing for {timeout:g} s")

    # Through trio's SocketStream, where its socket has no stdlib socket under it.

    async def _receive_some(self, max_bytes: int, timeout: float) -> bytes | None:
        with trio.move_on_after(timeout):
            try:
                return bytes(await self.stream.receive_some(max_bytes))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise OSError(str(exc)) from None
        return None

    async def _send_all(self, data: bytes, timeout: float) -> None:
        with trio.move_on_after(timeout) as scope:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise OSError(str(exc)) from None
        if scope.cancelled_caught:
            self.abort()
            raise TimeoutError(f"the peer took nothing for {timeout:g} s")

    def abort(self) -> None:
        """Make :meth:`aclose` reset the connection (SO_LINGER 0): what the peer never read
        is dropped, not left in the kernel's send queue."""
        with contextlib.suppress(OSError):
            self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def stale(self) -> bool:
        # trio keeps no read buffer: readable now means bytes or an EOF arrived while idle.
        try:
            ready, _, _ = select.select([self.stream.socket.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(ready)

    async def aclose(self) -> None:
        # What SocketStream.aclose does, minus its checkpoint: trio.aclose_forcefully raised
        # and caught a Cancelled at every close just to skip that checkpoint.
        with contextlib.suppress(Exception):
            self.stream.socket.close()
        if self.entry is not None:  # its deadline entry is dead: pruned with the others
            with contextlib.suppress(LookupError):  # (a keeper exists: it made the entry)
                _READ_DEADLINES.get().forget(self)


class _ReadDeadlines:
    """The read timeouts of every :class:`TrioStream` in one trio run, kept by one task.

    A read that has to wait sets its stream's deadline; the task sleeps until the earliest
    one and wakes the read of each stream whose deadline has passed with
    ``trio.lowlevel.notify_closing`` (its ``wait_readable`` raises ``ClosedResourceError``;
    the stream, marked ``timed_out``, returns None). The socket is not closed and stays
    usable: the session answers the timeout (a 408) or closes it.

    A stream has one live entry in the heap. A later read whose deadline is no earlier
    than the entry's (within :data:`SLACK`) only moves the stream's deadline; when the
    entry comes up and the stream's deadline has moved on, it is pushed again at the new
    one. A read with an earlier deadline pushes a new entry; the old one, like the entry of
    a stream that was closed, is dropped when it comes up, or when such dead entries
    outnumber the live ones (the heap is then rebuilt before the next push, as trio prunes
    its own). So a keep-alive read costs a clock read and a few attribute writes, where
    trio's ``move_on_after`` built, entered and left a cancel scope and left an entry in
    trio's own deadline heap.
    """

    SLACK = 0.001  # seconds a read may end after its deadline, rather than a new entry

    def __init__(self) -> None:
        # The run's clock, read directly: trio.current_time() is the same reading behind a
        # generated wrapper (as serve's clock, below).
        self._clock = trio.lowlevel.current_clock().current_time
        self._heap: list[tuple[float, int, TrioStream]] = []
        self._numbers = count()  # entry numbers: ties in the heap never compare streams
        self._live = 0  # streams with an entry
        self._wake_at = inf
        self._sleep: trio.CancelScope | None = None

    def watch(self, stream: TrioStream, timeout: float) -> None:
        """Watch the read that ``stream`` starts: it times out ``timeout`` seconds from now."""
        stream.read_deadline = deadline = self._clock() + timeout
        if stream.entry is not None:
            if stream.entry_at <= deadline + self.SLACK:
                return  # its entry comes up first, and is pushed again at this deadline then
        else:
            self._live += 1
        self._push(stream, deadline)
        if deadline < self._wake_at:
            self._wake_at = deadline
            if self._sleep is not None:
                self._sleep.deadline = deadline

    def forget(self, stream: TrioStream) -> None:
        """A closed stream: its entry no longer counts (it holds the stream until pruned)."""
        stream.read_deadline = None
        if stream.entry is not None:
            self._drop(stream)

    def _push(self, stream: TrioStream, deadline: float) -> None:
        if len(self._heap) > 2 * self._live + 64:
            self._prune()
        stream.entry = number = next(self._numbers)
        stream.entry_at = deadline
        heappush(self._heap, (deadline, number, stream))

    def _prune(self) -> None:
        self._heap = [item for item in self._heap if item[2].entry == item[1]]
        heapify(self._heap)

    def _drop(self, stream: TrioStream) -> None:
        stream.entry = None
        self._live -= 1

    async def run(self) -> None:
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:  # (_push may prune: a new list)
                _, number, stream = heappop(self._heap)
                if number != stream.entry:
                    continue  # dead: replaced by an earlier entry, or its stream closed
                deadline = stream.read_deadline
                if deadline is None:
                    self._drop(stream)  # no read waiting any more
                elif deadline > now:
                    self._push(stream, deadline)
                else:
                    self._drop(stream)
                    stream.read_deadline = None
                    stream.timed_out = True
                    if stream._raw is not None:
                        with contextlib.suppress(OSError, ValueError):
                            trio.lowlevel.notify_closing(stream._raw)
            self._wake_at = self._heap[0][0] if self._heap else inf
            with trio.CancelScope(deadline=self._wake_at) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None


_READ_DEADLINES: trio.lowlevel.RunVar[_ReadDeadlines] = trio.lowlevel.RunVar("mtlscore_read_deadlines")


def _read_deadlines() -> _ReadDeadlines:
    """This trio run's :class:`_ReadDeadlines`, its task started on first use (a system
    task: it ends with the run)."""
    try:
        return _READ_DEADLINES.get()
    except LookupError:
        keeper = _ReadDeadlines()
        trio.lowlevel.spawn_system_task(keeper.run, name="mtlscore read deadlines")
        _READ_DEADLINES.set(keeper)
        return keeper


def _stdlib_socket(sock: trio.socket.SocketType) -> socket.socket | None:
    """The stdlib socket (non-blocking) under a trio socket, or None. trio keeps it as
    ``_sock`` and has no public name for it (a duplicate descriptor would outlive trio's
    close); without it TrioStream goes through trio's SocketStream."""
    raw = getattr(sock, "_sock", None)
    return raw if isinstance(raw, socket.socket) else None


async def connect(host: str, port: int, timeout: float) -> TrioStream:
    """Open a TCP connection (raises ``TimeoutError`` / ``OSError``)."""
    try:
        with trio.fail_after(timeout):
            return TrioStream(await trio.open_tcp_stream(host, port))
    except trio.TooSlowError:
        raise TimeoutError(f"connecting to {host}:{port} timed out") from None


def _peer(stream: trio.SocketStream) -> tuple[str, int]:
    try:
        name = stream.socket.getpeername()
        return str(name[0]), int(name[1])
    except OSError:
        return ("", 0)


def _redis(settings: SharedSettings) -> Backend:
    from .shared_trio import TrioRedis  # the redis extra: imported only with [shared]

    return TrioRedis(settings)


async def serve(
    state: GatewayState,
    *,
    task_status: TaskStatus = trio.TASK_STATUS_IGNORED,
    handle_signals: bool = True,
    fetcher: TrioFetcher | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Run the gateway until cancelled or signalled.

    Calls ``task_status.started(ServerInfo)`` once listening. ``fetcher`` fetches
    CRLs, OCSP answers and issuers when ``[revocation] fetch`` is on (default: one
    :class:`TrioFetcher` shared by every connection). ``sock``: a listening socket to
    accept on instead of binding ``[server] listen`` (a worker's, inherited from the
    parent: mtlscore.runtimes.workers).
    """
    fetcher = fetcher or TrioFetcher()
    server_cfg = state.snapshot.gateway.server
    shared = store_for(state.snapshot.gateway.shared, _redis, state.metrics)
    fetcher.share(shared)
    stop = trio.Event()
    why = ["shutdown requested"]  # what asked for the drain, for its log line
    cut = [0]  # connections the end of the shutdown grace cancelled
    pool = UpstreamPool()  # idle upstream connections, shared by every client connection
    # trio.current_time() is this clock's reading behind a generated wrapper the driver
    # paid for at every look at the clock: the run's clock itself, the same time.
    clock = trio.lowlevel.current_clock().current_time

    async def on_client(stream: trio.SocketStream) -> None:
        peer = _peer(stream)
        # Admitted, or refused now: never queued for a slot (mtlscore.gateway.admission).
        ticket = state.admit(peer, clock())
        if ticket is None:
            await TrioStream(stream).aclose()
            return
        try:
            with trio.CancelScope() as scope:
                ticket.shed = scope.cancel
                await serve_connection(
                    TrioStream(stream), peer, state, connect, clock, fetcher.run, ticket,
                    lambda cache, request, now: fetcher.jwks(cache, request, now=now),
                    shared.take if shared is not None else None, pool,
                )
        except trio.Cancelled:
            # Not a shed (that scope absorbs its own cancel): the shutdown grace ran out.
            cut[0] += 1
            raise
        finally:
            state.release(ticket)

    async def on_admin(stream: trio.SocketStream) -> None:
        await serve_admin(TrioStream(stream), state, trio.current_time)

    listen = server_cfg.listen
    try:
        if sock is not None:
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
        else:
            listeners = await trio.open_tcp_listeners(listen.port, host=listen.host)
    except OSError as exc:
        raise listen_error("server.listen", listen, exc) from None
    admin: list[trio.SocketListener] = []
    admin_address = None
    if server_cfg.admin_listen is not None and state.worker is None:  # a worker's parent serves it
        # Bound before the nursery opens: an error inside it would reach the caller
        # wrapped in an ExceptionGroup instead of as the one-line ConfigError.
        host = server_cfg.admin_listen.host
        try:
            admin = await trio.open_tcp_listeners(server_cfg.admin_listen.port, host=host)
        except OSError as exc:
            for listener in listeners:
                await listener.aclose()
            raise listen_error("server.admin_listen", server_cfg.admin_listen, exc) from None
        admin_address = Address(host, admin[0].socket.getsockname()[1])
    try:
        async with trio.open_nursery() as background:
            if admin:
                background.start_soon(trio.serve_listeners, on_admin, admin)
            if handle_signals:
                # Started (its receiver open) before the gateway says it listens: a SIGHUP
                # right after that must reload, not meet the default action (terminate).
                await background.start(_signals, state, stop, why)
            background.start_soon(_watch, state)
            background.start_soon(_reap, state, pool)
            async with trio.open_nursery() as conns:
                accepting = trio.CancelScope()

                async def accept() -> None:
                    with accepting:
                        # One accept per checkpoint: workers sharing the socket (sock) take
                        # turns at a burst of connects without more (measured in workers_bench).
                        async with trio.open_nursery() as loops:
                            for listener in listeners:
                                loops.start_soon(_accept_loop, listener, conns, on_client)

                conns.start_soon(accept)
                port = listeners[0].socket.getsockname()[1]
                task_status.started(ServerInfo(Address(listen.host, port), admin_address, state, stop.set))
                state.log_started("trio", Address(listen.host, port), admin_address)
                await stop.wait()
                # Graceful: stop accepting, let connections in flight finish, then cut them.
                accepting.cancel()
                for listener in listeners:
                    await listener.aclose()
                grace = state.snapshot.gateway.server.shutdown_grace
                state.log_draining(why[0], grace)
                conns.cancel_scope.deadline = trio.current_time() + grace
            # Connections still open when the grace ran out were cut.
            for idle in pool.drain():
                await idle.aclose()
            state.log_stopped(cut=cut[0], graceful=True)
            background.cancel_scope.cancel()
    finally:
        state.save_radar()  # the record kept across restarts ([server] radar_file)
        if shared is not None:
            await shared.aclose()


# accept(2) failures that mean "out of resources for now" (trio.serve_listeners' list).
_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


async def _accept_loop(
    listener: trio.SocketListener,
    conns: trio.Nursery,
    on_client: Callable[[trio.SocketStream], Awaitable[None]],
) -> None:
    """trio.serve_listeners' accept loop for one listener, each connection's task closing its
    socket when done: serve_listeners' own wrapper closes it again with aclose_forcefully,
    which raises and catches a Cancelled for every connection (~25 µs)."""
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in _CAPACITY_ERRNOS:
                raise
            await trio.sleep(0.1)  # out of descriptors: retry shortly, as serve_listeners does
            continue
        conns.start_soon(_serve_stream, on_client, stream)


async def _serve_stream(on_client: Callable[[trio.SocketStream], Awaitable[None]], stream: trio.SocketStream) -> None:
    try:
        await on_client(stream)
    finally:
        with contextlib.suppress(OSError):
            stream.socket.close()  # a no-op when the connection's own close came first


async def _signals(
    state: GatewayState,
    stop: trio.Event,
    why: list[str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        receiver = trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
    except RuntimeError:  # not in the main thread
        task_status.started()
        return
    with receiver as signals:
        task_status.started()
        async for sig in signals:
            if sig == signal.SIGHUP:
                state.reload()
            else:
                why[0] = signal.Signals(sig).name
                stop.set()


async def _watch(state: GatewayState) -> None:
    while (poll := state.snapshot.gateway.server.reload_poll) > 0:
        await trio.sleep(poll)
        if state.polls_files() and state.changed():
            state.reload()
        state.sweep(trio.current_time())


async def _reap(state: GatewayState, pool: UpstreamPool) -> None:
    while True:
        timeout = state.snapshot.gateway.server.upstream_keepalive_timeout
        await trio.sleep(reap_interval(timeout))
        for stream in pool.expired(trio.current_time(), timeout):
            await stream.aclose()
