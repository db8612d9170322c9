"""``[server] workers = N``: a parent process supervising N worker processes on one listening port.

How the workers share the port is ``[server] workers_socket``
(docs/operations.md#workers):

* ``reuseport`` (``auto`` on Linux): each worker binds its own socket with
  SO_REUSEPORT and the kernel hashes each new connection to one of them, so the
  load is spread evenly whoever is busy. The parent first binds the port plainly
  (a port another process listens on, another gateway's SO_REUSEPORT group included,
  is then the same one-line ``ConfigError`` as with one process), then keeps it
  bound with SO_REUSEPORT without listening (it receives nothing: the kernel
  hands connections to listening sockets only) so a worker started again binds
  the same port and nobody else's plain socket takes it meanwhile. A dying
  worker's socket takes the connections queued on it down with it (reset).
* ``inherit`` (``auto`` elsewhere: where SO_REUSEPORT does not spread
  connections, macOS and the BSDs before FreeBSD's SO_REUSEPORT_LB): the parent
  binds ``[server] listen`` once and every worker accepts on that inherited
  socket: one kernel accept queue (nginx's default), so the connections a dying
  worker had not accepted stay queued for the others; the worker that wakes
  first takes a connection, so a busy worker takes fewer, but a burst can land
  on one.

Workers are started with fork+exec (a fresh interpreter running
``python -m mtlscore.runtimes.workers``, as uvicorn and hypercorn start theirs),
not a bare ``fork()``: the parent runs an event loop and threads (the admin
listener, asyncio's child watcher), and a forked copy of those (a shared epoll
descriptor, locks held by another thread) is unsafe. Each worker loads the
configuration file itself and runs the configured runtime (asyncio or trio); the
parent runs asyncio whatever the workers run: it serves no client.

The parent:

* starts the workers and waits until each listens; one that exits first (its
  configuration error is on the shared stderr) ends ``mtlscore serve`` with it;
* restarts a worker that dies, after a back-off that doubles with each death in a
  row (``RESTART_DELAY`` .. ``RESTART_DELAY_MAX``), one ``worker_exit`` line each time;
* on SIGHUP (or a changed file) loads the configuration once: valid, it signals
  every worker to reload; invalid, no worker is told (all keep the running one);
* on SIGTERM/SIGINT signals every worker to drain, waits for them, exits 0;
* serves the admin listener: ``/metrics`` sums the workers' counters
  (prometheus-client's multiprocess mode, in a directory ``mtlscore serve`` makes
  and removes), ``/healthz`` says how many workers are ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..gateway.metrics import Gauge
from ..gateway.settings import Address
from ..reasons import ConfigError
from .admin import serve_admin
from .startup import listen_error
from .state import GatewayState

__all__ = [
    "RESTART_DELAY",
    "RESTART_DELAY_MAX",
    "START_TIMEOUT",
    "Supervisor",
    "WorkerFailed",
    "listen_socket",
    "reserve_port",
    "reuseport_socket",
    "serve_workers",
    "socket_mode",
    "worker_main",
]

logger = logging.getLogger("mtlscore.gateway")

# A worker that died is started again after RESTART_DELAY seconds, doubled for each death in a
# row up to RESTART_DELAY_MAX: a worker that crashes at once does not spin the machine.
RESTART_DELAY = 0.1
RESTART_DELAY_MAX = 10.0
# A worker that ran this long before it died starts a new row (the next restart is quick again).
STABLE_SECONDS = 30.0
# A worker that neither listens nor exits within this long is killed and counts as failed.
START_TIMEOUT = 60.0
# Beyond shutdown_grace_seconds, what the parent gives the workers to log and exit before SIGKILL.
STOP_MARGIN = 5.0
# What a worker writes on its stdout once it listens.
READY = b"ready\n"


def socket_mode(setting: str) -> str:
    """``reuseport`` or ``inherit``: what ``[server] workers_socket`` means on this OS; raises
    :class:`ConfigError` (``server.workers_socket``) for ``reuseport`` where it would not balance."""
    # Linux (3.9+) hashes each connection to one socket of a SO_REUSEPORT group; macOS and
    # the older BSDs accept the option but give every connection to one socket.
    balances = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    if setting == "auto":
        return "reuseport" if balances else "inherit"
    if setting == "reuseport" and not balances:
        raise ConfigError(f'SO_REUSEPORT spreads connections over the workers on Linux only, not on {sys.platform}: '
                          'use "inherit" (or "auto")', key="server.workers_socket")
    return setting


def _address(listen: Address) -> tuple[socket.AddressFamily, tuple[str, int]]:
    # One socket per process, so one address: a host name's first (the single-process
    # runtimes bind every address a name resolves to).
    family, _, _, _, address = socket.getaddrinfo(listen.host, listen.port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    return family, (str(address[0]), int(address[1]))


def listen_socket(listen: Address, backlog: int) -> socket.socket:
    """``inherit``: ``[server] listen`` bound and listening, inheritable by the workers; raises
    :class:`ConfigError` (``server.listen``) as the single-process runtimes do."""
    try:
        family, address = _address(listen)
        sock = socket.create_server(address, family=family, backlog=backlog)
    except OSError as exc:
        raise listen_error("server.listen", listen, exc) from None
    return sock


def _reuseport_bound(family: socket.AddressFamily, address: tuple[str, int]) -> socket.socket:
    """Bound, not listening, with SO_REUSEADDR and SO_REUSEPORT (as ``socket.create_server``
    sets them for a worker: a group needs the option on every member, same user)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as create_server does
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def reserve_port(listen: Address) -> socket.socket:
    """``reuseport``: the port of ``[server] listen`` (port 0: a free one), bound with SO_REUSEPORT
    and never listened on, held by the parent for the workers; raises :class:`ConfigError`
    (``server.listen``) when anything listens there already.

    A plain bind comes first: a socket with SO_REUSEPORT would quietly join another process's
    group on the port (a second gateway by mistake) and share its traffic.
    """
    try:
        family, address = _address(listen)
        with socket.socket(family, socket.SOCK_STREAM) as probe:  # bound only: it must take no connection
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, as create_server
            probe.bind(address)
            address = (address[0], probe.getsockname()[1])
        return _reuseport_bound(family, address)
    except OSError as exc:
        raise listen_error("server.listen", listen, exc) from None


def reuseport_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A worker's own listening socket in the parent's SO_REUSEPORT group (``host``: numeric)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog, reuse_port=True)


class WorkerFailed(Exception):
    """A worker exited (or hung) before it listened: ``mtlscore serve`` cannot start."""

    def __init__(self, index: int, status: str, returncode: int | None) -> None:
        super().__init__(f"worker {index} exited before it was ready ({status})")
        self.index = index
        self.status = status
        self.returncode = returncode


def exit_status(returncode: int | None) -> str:
    """``exit 2`` or ``killed by SIGKILL`` (asyncio gives a signal as a negative code)."""
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


@dataclass(slots=True)
class _Slot:
    """One worker position: the process in it now, and its row of deaths for the back-off."""

    index: int
    proc: asyncio.subprocess.Process | None = None
    ready: bool = False
    ready_at: float = 0.0
    generation: int = 0  # the parent's configuration generation when this process started
    deaths: int = 0  # in a row, for the back-off
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    """``count`` worker processes, each started as ``command(index)`` with ``fd`` inherited (if any).

    A worker writes ``ready`` on its stdout once it listens (:func:`worker_main`).
    """

    def __init__(self, count: int, command: Callable[[int], Sequence[str]], *, fd: int | None, grace: float,
                 on_restart: Callable[[], None] = lambda: None, on_stop: Callable[[], None] = lambda: None,
                 mode: str = "inherit") -> None:
        self.slots = [_Slot(i) for i in range(1, count + 1)]
        self.command = command
        self.fd = fd  # the inherited listening socket; None: each worker binds its own (reuseport)
        self.mode = mode
        self.grace = grace
        self.on_restart = on_restart
        self.on_stop = on_stop
        self.stopping = False
        self.generation = 0  # bumped by each reload the parent validated
        self._wake = asyncio.Event()  # set when stopping: cuts a back-off short

    # -- what the admin listener reports --------------------------------------------------

    def ready_count(self) -> int:
        return sum(1 for s in self.slots if s.ready)

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.slots if s.proc is not None and s.proc.returncode is None]

    def health(self) -> tuple[int, str]:
        ready, count = self.ready_count(), len(self.slots)
        if ready == count:
            return 200, f"ok: {ready} of {count} workers ready"
        if ready:  # still serving: a load balancer should keep sending
            return 200, f"degraded: {ready} of {count} workers ready"
        return 503, f"no worker ready (0 of {count})"

    def gauges(self) -> tuple[Gauge, ...]:
        return (
            Gauge("mtlscore_workers_configured", "Worker processes configured ([server] workers).",
                  (({}, len(self.slots)),)),
            Gauge("mtlscore_workers_ready", "Worker processes listening now (fewer: one is being restarted).",
                  (({}, self.ready_count()),)),
        )

    # -- starting -------------------------------------------------------------------------

    async def _spawn(self, slot: _Slot) -> None:
        slot.ready = False
        slot.generation = self.generation
        slot.proc = await asyncio.create_subprocess_exec(
            *self.command(slot.index), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            pass_fds=(self.fd,) if self.fd is not None else (),
        )

    async def _until_ready(self, slot: _Slot) -> bool:
        """True once the worker says it listens; False when it exited first (or hung: killed)."""
        proc = slot.proc
        assert proc is not None and proc.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                line = await proc.stdout.readline()
        except TimeoutError:
            line = b""
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if line != READY:
            await proc.wait()
            return False
        slot.ready, slot.ready_at = True, time.monotonic()
        logger.info(json.dumps({"event": "worker_start", "worker": slot.index, "worker_pid": proc.pid,
                                "socket": self.mode}))
        if slot.generation != self.generation and not self.stopping:
            # A reload was validated while this worker was loading the (older) file.
            self._signal(slot, signal.SIGHUP)
        return True

    async def start(self) -> None:
        """Start every worker and wait until each listens; raises :class:`WorkerFailed` (the
        others are then stopped) when one exits first. A :meth:`stop` meanwhile (SIGTERM
        while starting) is no failure: it returns once they are stopped."""
        for slot in self.slots:
            await self._spawn(slot)
        results = await asyncio.gather(*(self._until_ready(s) for s in self.slots))
        for slot, ok in zip(self.slots, results, strict=True):
            if not ok and not self.stopping:
                assert slot.proc is not None
                await self.stop()
                raise WorkerFailed(slot.index, exit_status(slot.proc.returncode), slot.proc.returncode)

    # -- supervising ----------------------------------------------------------------------

    def supervise(self) -> None:
        """Watch every worker from now on (after :meth:`start`)."""
        for slot in self.slots:
            slot.task = asyncio.create_task(self._watch(slot))

    async def _watch(self, slot: _Slot) -> None:
        while True:
            proc = slot.proc
            assert proc is not None
            code = await proc.wait()
            ran = time.monotonic() - slot.ready_at if slot.ready else 0.0
            slot.ready = False
            _forget(proc.pid)
            if self.stopping:
                logger.info(json.dumps({"event": "worker_exit", "worker": slot.index, "worker_pid": proc.pid,
                                        "status": exit_status(code), "restart_in_seconds": None}))
                return
            slot.deaths = 1 if ran >= STABLE_SECONDS else slot.deaths + 1
            delay = min(RESTART_DELAY * 2 ** (slot.deaths - 1), RESTART_DELAY_MAX)
            logger.warning(json.dumps({"event": "worker_exit", "worker": slot.index, "worker_pid": proc.pid,
                                       "status": exit_status(code), "restart_in_seconds": delay}))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            if self.stopping:
                return
            self.on_restart()
            await self._spawn(slot)
            if self.stopping:  # stop() came while this one was being started: it never saw it
                self._signal(slot, signal.SIGTERM)
            await self._until_ready(slot)  # one that exits first is met by proc.wait() above

    def _signal(self, slot: _Slot, sig: signal.Signals) -> None:
        if slot.proc is not None and slot.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                slot.proc.send_signal(sig)

    def reload(self) -> None:
        """Tell every listening worker to reload (the parent validated the configuration)."""
        self.generation += 1
        for slot in self.slots:
            if slot.ready:
                self._signal(slot, signal.SIGHUP)

    async def stop(self) -> None:
        """Drain: SIGTERM to every worker, wait ``grace`` (+ a margin), SIGKILL what is left."""
        self.stopping = True
        self._wake.set()
        for slot in self.slots:
            self._signal(slot, signal.SIGTERM)
        # The parent's copy of the listening socket closes too: once every worker has closed
        # its own, new connections are refused instead of queueing where no one accepts.
        self.on_stop()
        procs = [s.proc for s in self.slots if s.proc is not None]
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        if waits:
            _, late = await asyncio.wait(waits, timeout=self.grace + STOP_MARGIN)
            if late:
                for p in procs:
                    if p.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            p.kill()
                await asyncio.wait(waits)
        watchers = [s.task for s in self.slots if s.task is not None]
        if watchers:
            await asyncio.wait(watchers)
        for slot in self.slots:
            slot.ready = False
        for p in procs:
            _forget(p.pid)


def _forget(pid: int) -> None:
    """prometheus-client's bookkeeping for a dead process (its live gauges leave the sum; its
    counters stay, so the totals never go down)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:  # pragma: no cover - without the extra there is no /metrics
        return
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


# -- the parent ---------------------------------------------------------------------------------


Banner = Callable[[str, GatewayState, Address, Address | None], None]


def serve_workers(config: str, *, runtime: str | None, count: int, quiet: bool, banner: Banner) -> int:
    """Run ``mtlscore serve`` as a parent over ``count`` workers; the exit status.

    ``runtime`` overrides ``[server] runtime``. ``banner(runtime, state, address,
    admin_address)`` is called once every worker listens. ``PROMETHEUS_MULTIPROC_DIR``
    must be set by the caller before prometheus-client is imported (``mtlscore.cli.serve``
    does). Raises :class:`ConfigError` for the parent's own configuration problems (the
    file, the listen and admin addresses), :class:`WorkerFailed` when a worker cannot start.
    """
    state = GatewayState.from_config_file(config)
    server = state.snapshot.gateway.server
    runtime = runtime or server.runtime
    if runtime == "trio" and importlib.util.find_spec("trio") is None:
        raise ConfigError('the trio runtime needs trio: pip install "mtlscore[trio]"', key="server.runtime")
    from . import asyncio as asyncio_runtime

    # uvloop asked for and not installed, or with trio: said here, once, not by each worker.
    asyncio_runtime.event_loop(server.event_loop, runtime)
    mode = socket_mode(server.workers_socket)
    if mode == "reuseport":
        sock = reserve_port(server.listen)
    else:
        sock = listen_socket(server.listen, max(100, server.max_connections))
    try:
        return asyncio.run(_parent(state, sock, mode, config, runtime, count, quiet, banner))
    finally:
        sock.close()


async def _parent(state: GatewayState, sock: socket.socket, mode: str, config: str, runtime: str, count: int,
                  quiet: bool, banner: Banner) -> int:
    from .asyncio import AsyncioStream

    server = state.snapshot.gateway.server
    host, port = sock.getsockname()[:2]
    address = Address(server.listen.host, port)
    loop = asyncio.get_running_loop()
    # inherit: the parent's listening socket; reuseport: the numeric address each worker binds.
    where = ["--fd", str(sock.fileno())] if mode == "inherit" else ["--bind", str(host), "--port", str(port)]

    def command(index: int) -> list[str]:
        return [sys.executable, "-m", "mtlscore.runtimes.workers", "--config", config, "--runtime", runtime,
                "--index", str(index), *where, *(["--quiet"] if quiet else [])]

    workers = Supervisor(count, command, fd=sock.fileno() if mode == "inherit" else None, grace=server.shutdown_grace,
                         on_restart=lambda: state.metrics.inc("mtlscore_worker_restarts_total"), on_stop=sock.close,
                         mode=mode)
    admin = None
    admin_address = None
    if server.admin_listen is not None:
        async def on_admin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await serve_admin(AsyncioStream(reader, writer), state, workers=workers)

        try:
            admin = await asyncio.start_server(on_admin, server.admin_listen.host, server.admin_listen.port)
        except OSError as exc:
            raise listen_error("server.admin_listen", server.admin_listen, exc) from None
        admin_address = Address(server.admin_listen.host, admin.sockets[0].getsockname()[1])

    stop = asyncio.Event()

    def reload() -> None:
        if state.reload():  # loaded and checked once, here; a bad file reaches no worker
            workers.reload()

    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    async def watch() -> None:
        while (poll := state.snapshot.gateway.server.reload_poll) > 0:
            await asyncio.sleep(poll)
            if state.changed():
                reload()

    try:
        starting = asyncio.ensure_future(workers.start())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait((starting, stopped), return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # SIGTERM while starting
            await workers.stop()
            await starting  # returns: the workers it waited for were stopped, not failed
            return 0
        stopped.cancel()
        starting.result()  # raises WorkerFailed
        workers.supervise()
        banner(runtime, state, address, admin_address)
        watcher = asyncio.create_task(watch())
        await stop.wait()
        watcher.cancel()
        await workers.stop()
        return 0
    finally:
        if admin is not None:
            admin.close()
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


# -- a worker -----------------------------------------------------------------------------------


def worker_main(argv: Sequence[str] | None = None) -> int:
    """One worker: ``python -m mtlscore.runtimes.workers --config FILE --runtime R --index I``, then
    ``--fd FD`` (the inherited socket) or ``--bind HOST --port P`` (its own, SO_REUSEPORT)."""
    from . import OnStarted, ServerInfo
    from .logs import json_log_handler, shared_line_bytes

    p = argparse.ArgumentParser(prog="mtlscore worker")
    p.add_argument("--config", required=True)
    p.add_argument("--runtime", choices=("asyncio", "trio"), required=True)
    p.add_argument("--index", type=int, required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--fd", type=int)
    where.add_argument("--bind")
    p.add_argument("--port", type=int)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if not args.quiet:
        log = logging.getLogger("mtlscore.gateway")
        # The workers and the parent share one stderr: lines short enough to be written whole.
        log.addHandler(json_log_handler(sys.stderr, {"worker": args.index, "pid": os.getpid()},
                                        max_bytes=shared_line_bytes()))
        log.setLevel(logging.INFO)
    inherited = socket.socket(fileno=args.fd) if args.fd is not None else None
    try:
        state = GatewayState.from_config_file(args.config)
        if inherited is None:
            server = state.snapshot.gateway.server
            try:
                sock = reuseport_socket(args.bind, args.port, max(100, server.max_connections))
            except OSError as exc:
                raise listen_error("server.listen", Address(args.bind, args.port), exc) from None
        else:
            sock = inherited
    except ConfigError as exc:
        # One write (see cli.serve.one_line): the other workers' lines share this stream.
        sys.stderr.write(f"mtlscore serve: worker {args.index}: configuration error in {args.config}: {exc}\n")
        sys.stderr.flush()
        return 2
    state.worker = args.index
    # The parent holds the other end of stdin: when it dies (even by SIGKILL) the read ends,
    # and the worker drains as on SIGTERM rather than serve on unsupervised.
    threading.Thread(target=_orphaned, daemon=True).start()

    def ready(info: ServerInfo) -> None:
        os.write(1, READY)
        os.dup2(2, 1)  # anything printed later goes to stderr, not into the parent's pipe

    status = OnStarted(ready)
    if args.runtime == "trio":
        import trio

        from . import trio as trio_runtime

        trio.run(lambda: trio_runtime.serve(state, task_status=status, sock=sock))
    else:
        from . import asyncio as asyncio_runtime

        _, factory = asyncio_runtime.event_loop(state.snapshot.gateway.server.event_loop)
        asyncio_runtime.run(lambda: asyncio_runtime.serve(state, task_status=status, sock=sock), factory)
    return 0


def _orphaned() -> None:
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(worker_main())
