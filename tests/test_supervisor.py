"""The workers' supervisor (mtlscore.runtimes.workers.Supervisor) with real child processes.

The parent runs asyncio whatever runtime its workers run (it serves no client), so these
tests drive it under asyncio alone; tests/integration/test_workers.py runs `mtlscore
serve` with both runtimes' workers. The children here are small Python scripts that
speak the workers' one-line protocol (``ready`` on stdout), so each failure is exact.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtlscore.reasons import ConfigError
from mtlscore.runtimes.workers import RESTART_DELAY, Supervisor, WorkerFailed, exit_status

pytestmark = pytest.mark.timeout(60)

# Says it listens, then runs until its stdin (the parent's pipe) ends or it is signalled.
SERVES = "import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()"
# Says it listens, then dies at once.
DIES = "import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.exit(1)"
# Cannot start: exits before it listens.
FAILS = "import sys; print('worker: cannot load the configuration', file=sys.stderr); sys.exit(3)"


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    s = socket.create_server(("127.0.0.1", 0))
    yield s
    s.close()


def script(*bodies: str) -> list[list[str]]:
    return [[sys.executable, "-c", body] for body in bodies]


def exits(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mtlscore.gateway"]
    return [line for line in lines if line["event"] == "worker_exit"]


def test_a_worker_that_cannot_start_fails_the_start_and_the_others_are_stopped(sock: socket.socket) -> None:
    commands = script(SERVES, FAILS)

    async def main() -> Supervisor:
        workers = Supervisor(2, lambda i: commands[i - 1], fd=sock.fileno(), grace=5)
        with pytest.raises(WorkerFailed) as failed:
            await workers.start()
        assert (failed.value.index, failed.value.status, failed.value.returncode) == (2, "exit 3", 3)
        return workers

    workers = asyncio.run(main())
    first = workers.slots[0].proc
    assert first is not None and first.returncode is not None  # stopped, not left serving
    assert workers.ready_count() == 0 and workers.health()[0] == 503


def test_a_crash_looping_worker_is_restarted_with_a_growing_delay(
    sock: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    # Worker 1 dies right after it listens; each replacement cannot even start. The delay
    # doubles with each death in a row: no spin, and the parent never gives up on the slot
    # nor stops worker 2 (only a failure at start ends `mtlscore serve`).
    spawned: list[int] = []

    def command(index: int) -> list[str]:
        spawned.append(index)
        if index == 2:
            return script(SERVES)[0]
        return script(DIES if spawned.count(1) == 1 else FAILS)[0]

    restarts: list[int] = []

    async def main() -> Supervisor:
        workers = Supervisor(2, command, fd=sock.fileno(), grace=5, on_restart=lambda: restarts.append(1))
        await workers.start()
        workers.supervise()
        async with asyncio.timeout(30):
            while len(exits(caplog)) < 4:
                await asyncio.sleep(0.01)
        assert workers.health() == (200, "degraded: 1 of 2 workers ready")
        await workers.stop()
        return workers

    with caplog.at_level(logging.INFO, logger="mtlscore.gateway"):
        workers = asyncio.run(main())
    lines = exits(caplog)
    delays = [line["restart_in_seconds"] for line in lines if line["worker"] == 1][:4]
    assert delays == [RESTART_DELAY, RESTART_DELAY * 2, RESTART_DELAY * 4, RESTART_DELAY * 8]
    assert [line["status"] for line in lines[:2]] == ["exit 1", "exit 3"]
    assert spawned.count(2) == 1  # worker 2 was never touched
    assert len(restarts) == spawned.count(1) - 1
    # Stopping ends them all; the last exit lines say no restart follows.
    assert all(s.proc is not None and s.proc.returncode is not None for s in workers.slots)
    assert lines[-1]["restart_in_seconds"] is None


def test_exit_status_words() -> None:
    assert exit_status(0) == "exit 0"
    assert exit_status(-9) == "killed by SIGKILL"
    assert exit_status(-200) == "killed by signal 200"
    assert exit_status(None) == "running"


def test_serve_ends_with_the_failed_workers_status_and_removes_the_metrics_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from mtlscore.cli import main
    from mtlscore.runtimes import workers

    config = tmp_path / "mtlscore.toml"
    config.write_text('[trust]\nanchors = []\n[server]\ncertificate = "s.pem"\nkey = "s.key"\nworkers = 2\n')
    seen: list[str] = []

    def fail(*args: object, **kw: object) -> int:
        seen.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert os.path.isdir(seen[0])
        raise WorkerFailed(2, "exit 3", 3)

    monkeypatch.setattr(workers, "serve_workers", fail)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert main(["serve", "--quiet", "--config", str(config)]) == 3
    assert capsys.readouterr().err.splitlines() == [
        "mtlscore serve: worker 2 exited before it was ready (exit 3); stopping"
    ]
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ and not os.path.exists(seen[0])


def test_auto_is_the_cores_this_process_may_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from mtlscore.cli import serve

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5})  # e.g. taskset -c 0,2,5
    assert serve.usable_cores() == 3
    config = tmp_path / "mtlscore.toml"
    config.write_text('[trust]\nanchors = []\n[server]\ncertificate = "s.pem"\nkey = "s.key"\nworkers = "auto"\n')
    assert serve._worker_count(str(config)) == 3
    monkeypatch.delattr(os, "sched_getaffinity")  # no affinity API (macOS): every core
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert serve.usable_cores() == 8


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_parent_binds_one_listening_socket_of_the_address_family(host: str) -> None:
    from mtlscore.gateway.settings import Address
    from mtlscore.runtimes.workers import listen_socket

    try:
        sock = listen_socket(Address(host, 0), 16)
    except ConfigError as exc:  # pragma: no cover - a host without IPv6 loopback
        pytest.skip(str(exc))
    with sock:
        assert sock.family == (socket.AF_INET6 if ":" in host else socket.AF_INET)
        assert sock.getsockname()[0] == host and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        with pytest.raises(ConfigError) as taken:
            listen_socket(Address(host, sock.getsockname()[1]), 16)
        assert taken.value.key == "server.listen" and "is already in use" in str(taken.value)


# Starts, and never says it listens (a worker still loading its configuration).
LOADING = "import sys; sys.stdin.read()"


def test_a_stop_while_starting_is_not_a_failed_start(sock: socket.socket) -> None:
    # SIGTERM to `mtlscore serve` while its workers load: stop them and exit 0, not report
    # "worker 1 exited before it was ready" (before: start() raised WorkerFailed into a task
    # nobody awaited any more).
    async def main() -> Supervisor:
        workers = Supervisor(2, lambda i: script(LOADING)[0], fd=sock.fileno(), grace=5)
        starting = asyncio.ensure_future(workers.start())
        async with asyncio.timeout(30):
            while not all(s.proc is not None for s in workers.slots):
                await asyncio.sleep(0.01)
        await workers.stop()
        await starting  # returns, raises nothing
        return workers

    workers = asyncio.run(main())
    assert all(s.proc is not None and s.proc.returncode is not None for s in workers.slots)


def test_workers_socket_auto_is_reuseport_where_the_kernel_balances_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtlscore.runtimes.workers import socket_mode

    monkeypatch.setattr(sys, "platform", "linux")
    assert (socket_mode("auto"), socket_mode("reuseport"), socket_mode("inherit")) == ("reuseport", "reuseport",
                                                                                       "inherit")
    # macOS accepts SO_REUSEPORT but hands every connection to one socket: no balancing there.
    monkeypatch.setattr(sys, "platform", "darwin")
    assert (socket_mode("auto"), socket_mode("inherit")) == ("inherit", "inherit")
    with pytest.raises(ConfigError) as err:
        socket_mode("reuseport")
    assert err.value.key == "server.workers_socket" and "on Linux only, not on darwin" in str(err.value)


def test_workers_socket_is_read_and_needs_a_restart() -> None:
    from mtlscore.gateway.settings import RESTART_KEYS, server_from_config

    base = {"certificate": "s.pem", "key": "s.key"}
    assert server_from_config(base, base_dir=Path(".")).workers_socket == "auto"
    assert server_from_config({**base, "workers_socket": "inherit"}, base_dir=Path(".")).workers_socket == "inherit"
    assert "workers_socket" in RESTART_KEYS  # the sockets exist once per process


def test_metrics_directories_of_dead_gateways_go_and_live_ones_stay(tmp_path: Path) -> None:
    """``serve``'s metrics directory is locked while its parent lives; a new one removes those
    whose lock is free (a SIGKILLed parent's), keeps held ones, and what is not its own."""
    import os

    from mtlscore.cli.serve import metrics_directory

    alive, alive_fd = metrics_directory(str(tmp_path))
    dead, dead_fd = metrics_directory(str(tmp_path))
    assert alive_fd is not None and dead_fd is not None
    (Path(dead) / "counter_123.db").write_bytes(b"x")
    os.close(dead_fd)  # how the kernel ends a killed process's lock
    old_unlocked = tmp_path / "mtlscore-metrics-old"  # made before locks existed, a day untouched
    old_unlocked.mkdir()
    os.utime(old_unlocked, (0, 0))
    new_unlocked = tmp_path / "mtlscore-metrics-new"  # just made, not yet locked
    new_unlocked.mkdir()
    other = tmp_path / "something-else"
    other.mkdir()
    (tmp_path / "mtlscore-metrics-link").symlink_to(other)
    third, third_fd = metrics_directory(str(tmp_path))
    try:
        assert os.path.isdir(alive) and os.path.isdir(third)
        assert not os.path.exists(dead) and not old_unlocked.exists()
        assert new_unlocked.is_dir() and other.is_dir() and (tmp_path / "mtlscore-metrics-link").is_symlink()
    finally:
        for fd in (alive_fd, third_fd):
            assert fd is not None
            os.close(fd)
