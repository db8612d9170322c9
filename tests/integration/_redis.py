"""A real redis-server for the ``[shared]`` tests, started and stopped by the tests.

On a unix socket in a fresh short temp directory (no TCP port at all), no persistence
(``--save "" --appendonly no``), startup waited for by polling PING within a deadline.
Absent redis-server: the tests skip, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from _nginx import stop_process

REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK)
                                                 else None)
DEADLINE = 15.0


def require_redis() -> str:
    """The redis-server binary; skips when absent (fails in CI, which installs it: .ci/run)."""
    if REDIS_SERVER is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed, and CI must run the [shared] tests (.ci/run installs it)")
        pytest.skip("redis-server not installed (apt install redis-server): the [shared] tests need a real one")
    pytest.importorskip("redis", reason="the redis client is not installed: pip install 'mtlscore[redis]'")
    return REDIS_SERVER


class RedisServer:
    """One redis-server on a unix socket; :meth:`stop`, :meth:`start` again, :meth:`pause`."""

    def __init__(self) -> None:
        self.binary = require_redis()
        # Short: a unix socket path must fit in sun_path (108 bytes).
        self.dir = Path(tempfile.mkdtemp(prefix="mtlsredis-"))
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if self.ping():
                return
            time.sleep(0.02)  # poll interval, bounded by the deadline
        raise RuntimeError("redis-server did not answer PING in time")

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2, socket_connect_timeout=2)

    def ping(self) -> bool:
        import redis

        try:
            with self.client() as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the socket still accepts, nothing answers (a hung Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
