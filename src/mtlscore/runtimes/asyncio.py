"""The asyncio runtime: sockets, timeouts and signals around the shared gateway loop.

    state = GatewayState.from_config_file("mtlscore.toml")
    asyncio.run(serve(state))

``serve`` also works under ``anyio``'s ``TaskGroup.start`` (it calls
``task_status.started(ServerInfo)`` once listening). SIGHUP reloads, SIGTERM
and SIGINT shut down gracefully, and the config file is polled for changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from typing import TypeVar, cast

from ..gateway.settings import Address
from ..gateway.shared import SharedSettings
from ..reasons import ConfigError
from . import ServerInfo, TaskStatus
from .admin import serve_admin
from .driver import serve_connection
from .fetch_asyncio import AsyncioFetcher, FetchError, validate_with_fetch
from .pool import UpstreamPool, reap_interval
from .shared import Backend, store_for
from .startup import listen_error
from .state import GatewayState
from .tls import presented_chain, server_context

__all__ = [
    "event_loop",
    "run",
    "AsyncioFetcher",
    "AsyncioStream",
    "ConnectionStream",
    "FetchError",
    "connect",
    "presented_chain",
    "serve",
    "server_context",
    "validate_with_fetch",
]


# What an asyncio socket transport reads at once. Its default (max_size, 256 KiB) makes
# every readable event allocate a 256 KiB bytes object, past malloc's mmap threshold:
# mapped, paged in, shrunk and unmapped again, ~17 µs for a read of a few hundred bytes,
# four or five times per connection. The driver never asks for more than 64 KiB at once.
READ_SIZE = 65536


class AsyncioStream:
    """An asyncio stream pair as the driver's ``Stream``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        transport = writer.transport
        if hasattr(transport, "max_size"):  # asyncio's selector transports (not uvloop's)
            transport.max_size = READ_SIZE

    async def recv(self, max_bytes: int, timeout: float) -> bytes | None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for wraps every read in a new Task.
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read(max_bytes)
        except TimeoutError:
            return None

    async def send(self, data: bytes, timeout: float) -> None:
        self.writer.write(data)
        transport = self.writer.transport
        if not transport.get_write_buffer_size() and not transport.is_closing():
            return  # the kernel took all of it: nothing to wait for (a reset shows at the next read)
        try:
            # drain() waits while the transport's buffer is over its high-water mark, i.e.
            # for as long as the peer does not read: bounded, or a non-reading client holds
            # its connection (and its upstream's) forever.
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except TimeoutError:
            self.abort()
            raise

    def abort(self) -> None:
        """Reset the connection now: drop what the peer never read (asyncio's close() would
        wait to flush it, and the kernel would keep it queued after close)."""
        with contextlib.suppress(Exception):
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def stale(self) -> bool:
        # A read that cannot wait: the bytes or the EOF that arrived while idle (the
        # transport reads eagerly into the reader, so the socket itself shows nothing).
        try:
            async with asyncio.timeout(0):
                await self.reader.read(1)
        except TimeoutError:
            return False  # nothing there: clean
        except Exception:  # noqa: BLE001 - a reset connection is as stale as a closed one
            return True
        return True

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for runs the wait in a new Task.
                async with asyncio.timeout(1.0):
                    await self.writer.wait_closed()
            except TimeoutError:
                self.abort()


class ConnectionStream(asyncio.Protocol):
    """One TCP connection as the driver's ``Stream``, on asyncio's protocol callbacks.

    The gateway reads once per request and the connection lives for many: asyncio's
    streams (a ``StreamReader`` future per read, an ``asyncio.timeout`` context and its
    timer per read, ``drain()`` per write) cost more than the request's own work. Here
    bytes land in a buffer (``data_received``), a read that finds them takes them
    without waiting, and a read that waits has one future. Every read has a deadline,
    kept by one timer per connection: the timer stays armed at the earliest deadline
    still pending and, when it fires before the current one (a keep-alive connection's
    next read has a later deadline), re-arms itself there — about one timer per
    timeout period instead of one per read. Reading pauses while more than
    ``_HIGH`` bytes wait (a client that sends faster than the gateway forwards is
    held by TCP, not by memory), as ``StreamReader`` does.
    """

    _HIGH = 2 * 65536  # pause reading above this many buffered bytes (StreamReader's limit x 2)

    def __init__(
        self, loop: asyncio.AbstractEventLoop,
        on_connect: Callable[[ConnectionStream], Coroutine[object, object, None]] | None = None,
    ) -> None:
        """``on_connect``: a coroutine function run as its own task with this stream once
        the connection is made (a server's accepted connections)."""
        self._loop = loop
        self._on_connect = on_connect
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False  # the peer sent EOF, or the connection is gone
        self._lost = False  # connection_lost() was called
        self._error: BaseException | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None  # a recv() waiting for bytes
        self._drainer: asyncio.Future[None] | None = None  # a send() waiting for the buffer to drain
        self._closed: asyncio.Future[None] | None = None  # an aclose() waiting for connection_lost
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None  # the serving task (asyncio keeps weak references)

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not a subclass of asyncio.Transport, hence no check).
        self.transport = cast(asyncio.Transport, transport)
        if hasattr(transport, "max_size"):  # asyncio's selector transports (not uvloop's): see READ_SIZE
            transport.max_size = READ_SIZE
        if self._on_connect is not None:
            self.task = self._loop.create_task(self._on_connect(self))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self._HIGH and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return True  # keep the transport open: the answer (and close_notify) may still go out

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = self._eof = True
        self._error = exc
        self._disarm()
        self._wake()
        for fut in (self._drainer, self._closed):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the deadline timer ------------------------------------------------------------

    def _expire(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # no read waiting: the next recv() arms the timer again
        if self._deadline - self._loop.time() > 0.001:
            self._timer = self._loop.call_at(self._deadline, self._expire)  # the deadline moved on
            return
        waiter.set_result(None)  # timed out: recv() finds no bytes and returns None

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the driver's Stream -----------------------------------------------------------

    def _take(self, max_bytes: int) -> bytes:
        buf = self._buffer
        if len(buf) <= max_bytes:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:max_bytes])
            del buf[:max_bytes]
        if self._reading_paused and len(buf) <= self._HIGH // 2 and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def recv(self, max_bytes: int, timeout: float) -> bytes | None:
        if not self._buffer and not self._eof:
            if timeout <= 0:
                return None
            loop = self._loop
            deadline = self._deadline = loop.time() + timeout
            timer = self._timer
            if timer is None or timer.when() > deadline:
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(deadline, self._expire)
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
            if not self._buffer and not self._eof:
                return None  # the deadline passed
        if self._buffer:
            return self._take(max_bytes)
        if self._error is not None:
            raise ConnectionResetError(str(self._error) or "connection lost")
        return b""

    async def send(self, data: bytes, timeout: float) -> None:
        if self._lost or self.transport is None:
            raise ConnectionResetError("connection lost")
        self.transport.write(data)
        if not self._writing_paused:
            return  # under asyncio's high-water mark: nothing to wait for (a reset shows at the next read)
        # Over it: wait while the peer does not read, bounded, or a non-reading client holds
        # its connection (and its upstream's) forever.
        drainer = self._drainer = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await drainer
        except TimeoutError:
            self.abort()
            raise
        finally:
            self._drainer = None
        if self._lost and self._writing_paused:
            raise ConnectionResetError("connection lost")

    def abort(self) -> None:
        """Reset the connection now: drop what the peer never read (a close would wait to
        flush it, and the kernel would keep it queued after close)."""
        self._disarm()
        transport = self.transport
        if transport is None:
            return
        with contextlib.suppress(Exception):
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    async def stale(self) -> bool:
        # The transport reads eagerly into the buffer: bytes or an EOF that arrived while
        # the connection sat idle are already here.
        return bool(self._buffer) or self._eof

    async def aclose(self) -> None:
        self._disarm()
        transport = self.transport
        if transport is None or self._lost:
            return
        closed = self._closed = self._loop.create_future()
        with contextlib.suppress(Exception):
            transport.close()
            try:
                async with asyncio.timeout(1.0):
                    await closed
            except TimeoutError:
                self.abort()

    def peer(self) -> tuple[str, int]:
        name = self.transport.get_extra_info("peername") if self.transport is not None else None
        return (str(name[0]), int(name[1])) if name else ("", 0)


class TakingTurns:
    """Accepts on a listening socket shared with other workers (mtlscore.runtimes.workers) one
    connection per turn of the event loop, like nginx's default (``multi_accept off``).

    asyncio's own server accepts up to its backlog at each wakeup: the worker that wakes
    first takes a whole burst of connects, and with keep-alive keeps that load. Here each
    accept is its own turn of the loop, so the other workers, woken by the same
    readiness, take a share (bursts of 8 connects landing whole on one of 2 workers: 16
    of 30 with asyncio's server, 9 of 30 here; trio's accept loop already checkpoints
    between accepts).
    """

    def __init__(self, sock: socket.socket,
                 on_client: Callable[[ConnectionStream], Coroutine[object, object, None]]) -> None:
        sock.setblocking(False)  # sock_accept on a blocking socket would block the whole loop
        self.sockets = [sock]
        self._on_client = on_client
        self._conns: set[asyncio.Task[None]] = set()
        self._task = asyncio.create_task(self._accept(sock))

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except (ConnectionAbortedError, InterruptedError):
                continue
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                await asyncio.sleep(0.1)  # out of descriptors: retry shortly, as asyncio's server does
                continue
            try:
                _, stream = await loop.connect_accepted_socket(
                    lambda: ConnectionStream(loop, self._on_client), sock=conn)
            except OSError:
                conn.close()  # reset before it was set up
                continue
            task = stream.task
            if task is not None:
                self._conns.add(task)  # asyncio keeps only weak references to tasks
                task.add_done_callback(self._conns.discard)

    def close(self) -> None:
        """Stop accepting and close this worker's copy of the socket (connections go on)."""
        self._task.cancel()
        self.sockets[0].close()


async def connect(host: str, port: int, timeout: float) -> ConnectionStream:
    """Open a TCP connection (raises ``TimeoutError`` / ``OSError``)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, stream = await loop.create_connection(lambda: ConnectionStream(loop), host, port)
    return stream


def _redis(settings: SharedSettings) -> Backend:
    from .shared_asyncio import AsyncioRedis  # the redis extra: imported only with [shared]

    return AsyncioRedis(settings)


async def serve(
    state: GatewayState,
    *,
    task_status: TaskStatus | None = None,
    handle_signals: bool = True,
    fetcher: AsyncioFetcher | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Run the gateway until cancelled or signalled.

    Calls ``task_status.started(ServerInfo)`` once listening. ``fetcher`` fetches
    CRLs, OCSP answers and issuers when ``[revocation] fetch`` is on (default: one
    :class:`AsyncioFetcher` shared by every connection, so concurrent validations
    share each in-flight fetch). ``sock``: a listening socket to accept on instead of
    binding ``[server] listen`` (a worker's, inherited from the parent: mtlscore.runtimes.workers).
    """
    fetcher = fetcher or AsyncioFetcher()
    server_cfg = state.snapshot.gateway.server
    shared = store_for(state.snapshot.gateway.shared, _redis, state.metrics)
    fetcher.share(shared)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    pool = UpstreamPool()  # idle upstream connections, shared by every client connection

    async def on_client(stream: ConnectionStream) -> None:
        peer = stream.peer()
        # Admitted, or refused now: never queued for a slot (mtlscore.gateway.admission).
        ticket = state.admit(peer, time.monotonic())
        if ticket is None:
            stream.abort()
            return
        task = asyncio.current_task()
        assert task is not None

        def shed() -> None:
            task.cancel()

        ticket.shed = shed
        tasks.add(task)
        try:
            await serve_connection(stream, peer, state, connect, time.monotonic, fetcher.run, ticket,
                                   lambda cache, request, now: fetcher.jwks(cache, request, now=now),
                                   shared.take if shared is not None else None, pool)
        except asyncio.CancelledError:
            # Shed, or cut at shutdown. Not re-raised: nobody awaits the connection's task,
            # and asyncio would report it cancelled as an unhandled error.
            pass
        finally:
            state.release(ticket)
            tasks.discard(task)

    async def on_admin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_admin(AsyncioStream(reader, writer), state)

    listen = server_cfg.listen
    # asyncio's default backlog (100) overflows on a burst of connects: the kernel then
    # drops handshakes and clients wait for TCP retransmits (loadtest/run.py measured
    # 396 of 1,000). Let the accept queue hold what max_connections allows (the kernel
    # caps it at net.core.somaxconn).
    backlog = max(100, server_cfg.max_connections)
    try:
        if sock is not None:
            sock.listen(backlog)
            server: asyncio.Server | TakingTurns = TakingTurns(sock, on_client)
        else:
            server = await loop.create_server(lambda: ConnectionStream(loop, on_client), listen.host, listen.port,
                                              backlog=backlog)
    except OSError as exc:
        raise listen_error("server.listen", listen, exc) from None
    admin = None
    if server_cfg.admin_listen is not None and state.worker is None:  # a worker's parent serves it
        try:
            admin = await asyncio.start_server(on_admin, server_cfg.admin_listen.host, server_cfg.admin_listen.port)
        except OSError as exc:
            server.close()
            raise listen_error("server.admin_listen", server_cfg.admin_listen, exc) from None
    info = ServerInfo(
        Address(listen.host, server.sockets[0].getsockname()[1]),
        Address(server_cfg.admin_listen.host, admin.sockets[0].getsockname()[1])
        if admin is not None and server_cfg.admin_listen is not None
        else None,
        state,
        stop.set,
    )
    why = ["shutdown requested"]  # what asked for the drain, for its log line

    def stop_on(sig: signal.Signals) -> None:
        why[0] = sig.name
        stop.set()

    if handle_signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, state.reload)
            loop.add_signal_handler(signal.SIGTERM, stop_on, signal.SIGTERM)
            loop.add_signal_handler(signal.SIGINT, stop_on, signal.SIGINT)
    if task_status is not None:
        task_status.started(info)
    state.log_started("asyncio", info.address, info.admin_address,
                      "uvloop" if type(loop).__module__.partition(".")[0] == "uvloop" else "asyncio")

    async def watch() -> None:
        while (poll := state.snapshot.gateway.server.reload_poll) > 0:
            await asyncio.sleep(poll)
            if state.polls_files() and state.changed():
                state.reload()
            state.sweep(time.monotonic())

    async def reap() -> None:
        while True:
            timeout = state.snapshot.gateway.server.upstream_keepalive_timeout
            await asyncio.sleep(reap_interval(timeout))
            for stream in pool.expired(time.monotonic(), timeout):
                await stream.aclose()

    watcher = asyncio.create_task(watch())
    reaper = asyncio.create_task(reap())
    graceful = False
    try:
        await stop.wait()
        graceful = True
    finally:
        # Graceful: stop accepting, let connections in flight finish, then cut them.
        # When cancelled from outside, cut them at once.
        watcher.cancel()
        reaper.cancel()
        server.close()
        if admin is not None:
            admin.close()
        grace = state.snapshot.gateway.server.shutdown_grace
        if graceful:
            state.log_draining(why[0], grace)
        if graceful and tasks:
            await asyncio.wait(set(tasks), timeout=grace)
        cut = len(tasks)
        for t in set(tasks):
            t.cancel()
        for idle in pool.drain():
            await idle.aclose()
        state.log_stopped(cut=cut, graceful=graceful)
        if handle_signals:
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
        state.save_radar()
        if shared is not None:
            await shared.aclose()


T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def event_loop(setting: str, runtime: str = "asyncio") -> tuple[str, LoopFactory | None]:
    """``[server] event_loop``: (the loop's name, its factory; None for asyncio's own).

    "auto" takes uvloop when it is installed (as uvicorn's ``--loop auto`` does), else
    asyncio's own loop; "uvloop" raises ConfigError when it is not installed. uvloop runs
    the same code with its event loop and transports written in C: less interpreter per
    connection and per request (docs/performance.md, "uvloop"). ``runtime``: the one that
    will run (``--runtime`` overrides the file's): on trio, ("trio", None), and a
    ConfigError when the setting asks for uvloop.
    """
    if runtime == "trio":
        if setting == "uvloop":
            raise ConfigError("uvloop is an asyncio event loop: with the trio runtime, remove event_loop",
                              key="server.event_loop")
        return "trio", None
    if setting == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if setting == "uvloop":
            raise ConfigError('uvloop is not installed: pip install uvloop (it comes with "mtlscore[gateway]"), '
                              'or event_loop = "auto"', key="server.event_loop") from None
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def run(main: Callable[[], Coroutine[object, object, T]], factory: LoopFactory | None) -> T:
    """``asyncio.run(main())`` on the loop ``factory`` makes (None: asyncio's own)."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
