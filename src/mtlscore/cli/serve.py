"""``mtlscore serve --config FILE [--runtime asyncio|trio]``: run the mTLS gateway (docs/reference.md#command-line)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..reasons import ConfigError
from .common import Command, CommandError, arg

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

    from ..gateway.settings import Address, ServerConfig
    from ..runtimes.state import GatewayState

__all__ = ["COMMAND", "run"]


def run(args: argparse.Namespace) -> int:
    try:
        workers = _worker_count(args.config)
        if workers > 1:
            return _run_workers(args, workers)
        return _serve(args)
    except ConfigError as exc:
        # One line naming the file and the key (the ConfigError names the key): the file
        # itself, or the listeners (server.listen / server.admin_listen taken or not of
        # this machine).
        raise CommandError(f"configuration error in {args.config}: {exc}") from None


def _worker_count(config: str) -> int:
    """``[server] workers`` of the file (1 without a [server] table: the load below says why)."""
    from ..config import load_config

    server = load_config(config).server
    if server is None:
        return 1
    if server.workers == "auto":
        return usable_cores()
    return server.workers


def usable_cores() -> int:
    """``workers = "auto"``: the cores this process may run on (its CPU affinity, which a
    container or ``taskset`` limits), else every core."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        return os.cpu_count() or 1


def _banner(runtime: str, server: ServerConfig, address: object, admin_address: object | None,
            workers: int = 1) -> None:
    admin = f", metrics on http://{admin_address}/metrics" if admin_address else ""
    upstream = f"http://{server.upstream.authority}" if server.upstream else "identity JSON"
    if server.auth_service:
        upstream = "auth service (200 with identity headers, or 401/403 with X-Mtls-Reason)"
    processes = f", {workers} workers" if workers > 1 else ""
    one_line(
        f"mtlscore gateway ({runtime}, {server.mode}, TLS engine "
        f"{server.effective_tls_engine}{processes}) on https://{address} -> {upstream}{admin}"
    )


def one_line(text: str) -> None:
    """``text`` and its newline on stderr in one write.

    ``print`` writes the text and the newline separately, and stderr writes through: with
    workers sharing the stream, a worker's JSON log line could land between the two,
    inside the banner, and be lost to whoever parses the lines. One write of a line under
    PIPE_BUF (4 KiB on Linux) is atomic on a pipe (POSIX write(2)).
    """
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _log_lines(fields: dict[str, object] | None = None, *, shared: bool = False) -> None:
    """JSON lines on stderr; ``shared`` (workers): each short enough to be one atomic write."""
    from ..runtimes.logs import json_log_handler, shared_line_bytes

    log = logging.getLogger("mtlscore.gateway")
    log.addHandler(json_log_handler(sys.stderr, fields, max_bytes=shared_line_bytes() if shared else None))
    log.setLevel(logging.INFO)


def _serve(args: argparse.Namespace) -> int:
    from ..runtimes import OnStarted, ServerInfo
    from ..runtimes.state import GatewayState

    if not args.quiet:
        _log_lines()
    state = GatewayState.from_config_file(args.config)
    server = state.snapshot.gateway.server
    runtime = args.runtime or server.runtime

    label, factory = _loop_label(runtime, server)

    def ready(info: ServerInfo) -> None:
        _banner(label, server, info.address, info.admin_address)

    status = OnStarted(ready)
    if runtime == "trio":
        try:
            import trio
        except ImportError:
            raise CommandError('the trio runtime needs trio: pip install "mtlscore[trio]"') from None
        from ..runtimes import trio as trio_runtime

        trio.run(lambda: trio_runtime.serve(state, task_status=status))
    else:
        from ..runtimes import asyncio as asyncio_runtime

        asyncio_runtime.run(lambda: asyncio_runtime.serve(state, task_status=status), factory)
    return 0


def _loop_label(runtime: str, server: ServerConfig) -> tuple[str, Callable[[], AbstractEventLoop] | None]:
    """(what the banner calls the runtime, the asyncio loop factory) for ``[server] event_loop``.
    Raises ConfigError (``run`` names the file): uvloop asked for and not installed, or with trio
    (``--runtime trio`` over a file that asks for uvloop)."""
    from ..runtimes import asyncio as asyncio_runtime

    loop, factory = asyncio_runtime.event_loop(server.event_loop, runtime)
    return (loop if loop in ("asyncio", "trio") else f"asyncio on {loop}"), factory


def _run_workers(args: argparse.Namespace, count: int) -> int:
    """``workers > 1``: this process supervises ``count`` workers (mtlscore.runtimes.workers)."""
    # prometheus-client picks multiprocess mode when it is imported, so the directory is set
    # before anything imports mtlscore.runtimes; the workers inherit it with the environment.
    metrics_dir, held = metrics_directory()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        from ..runtimes.workers import WorkerFailed, serve_workers

        if not args.quiet:
            _log_lines({"pid": os.getpid()}, shared=True)

        def banner(runtime: str, state: GatewayState, address: Address, admin_address: Address | None) -> None:
            server = state.snapshot.gateway.server
            _banner(_loop_label(runtime, server)[0], server, address, admin_address, count)

        try:
            return serve_workers(args.config, runtime=args.runtime, count=count, quiet=args.quiet, banner=banner)
        except WorkerFailed as exc:
            # The worker's own error (a configuration error, a traceback) is on stderr above.
            code = exc.returncode if exc.returncode and exc.returncode > 0 else 1
            raise CommandError(f"{exc}; stopping", code=code) from None
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if held is not None:
            os.close(held)


_METRICS_PREFIX = "mtlscore-metrics-"
_LOCK = ".owner.lock"
_UNLOCKED_STALE_SECONDS = 24 * 3600


def metrics_directory(parent: str | None = None) -> tuple[str, int | None]:
    """A new directory for the workers' counters, and the descriptor holding its lock.

    The directory goes when ``serve`` ends, but not when it is killed with SIGKILL (the OOM
    killer, systemd's last resort): each such restart would leave one behind. So the
    parent holds an exclusive ``flock`` on a file inside for as long as it lives; the kernel
    drops it however the parent ends. Each start removes the directories whose lock nobody
    holds (workers orphaned by a killed parent may still be draining into one: no process
    serves those counters any more). A lock, not a pid: a pid may be reused, or belong to
    another pid namespace sharing this /tmp.
    """
    parent = parent or tempfile.gettempdir()
    _remove_stale(parent)
    path = tempfile.mkdtemp(prefix=_METRICS_PREFIX, dir=parent)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, no sweep
        return path, None
    fd = os.open(os.path.join(path, _LOCK), os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return path, fd


def _remove_stale(parent: str) -> None:
    """Remove this user's metrics directories left by a killed ``serve``: their lock is free.

    One without a lock file (made before locks, or in the instant between its creation
    and its lock) goes only when untouched for a day.
    """
    try:
        import fcntl
    except ImportError:
        return
    import time

    try:
        names = [n for n in os.listdir(parent) if n.startswith(_METRICS_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(parent, name)
        try:
            st = os.lstat(path)
            if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.getuid():
                continue
            fd = os.open(os.path.join(path, _LOCK), os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | os.O_NOFOLLOW)
        except FileNotFoundError:
            if time.time() - st.st_mtime > _UNLOCKED_STALE_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: a running gateway's
        finally:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)


COMMAND = Command(
    "serve",
    help="run the mTLS gateway described by a config file's [server] table",
    description="Terminate mTLS, validate and map client certificates, enforce per-account "
    "credentials, and forward to the upstream (or answer with the identity as JSON). "
    "SIGHUP or a change to the config file reloads; SIGTERM/SIGINT shut down gracefully "
    "([server] workers > 1: signal this process, the parent).",
    arguments=(
        arg("--config", required=True, metavar="FILE", help="configuration file (TOML)"),
        arg("--runtime", choices=("asyncio", "trio"), help="overrides [server] runtime"),
        arg("--quiet", action="store_true", help="do not print one JSON line per decision"),
    ),
    run=run,
)
