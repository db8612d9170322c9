"""Real peers for integration tests: nginx, uvicorn, hypercorn and curl on loopback.

Every process or thread started here is stopped by its owner's ``stop()``; waits are
bounded by deadlines (polling, never fixed sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
CURL = shutil.which("curl")
DEADLINE = 15.0


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (for servers that cannot bind 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, *, proc: subprocess.Popen[bytes] | None = None, deadline: float = DEADLINE) -> bool:
    """Poll until something accepts on 127.0.0.1:port; False if ``proc`` died or time ran out."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.02)  # poll interval, bounded by the deadline
    return False


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate a peer process started by a test, killing it if it does not exit in 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def loopback_alias_usable(address: str) -> bool:
    """Whether we can bind a second loopback address (Linux routes all of 127/8)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
        return True
    except OSError:
        return False


def _temp_path_directives(prefix: Path) -> str:
    """Temp paths inside our prefix for every module this nginx was built with."""
    try:
        built = subprocess.run([NGINX, "-V"], capture_output=True, text=True, timeout=10).stderr
    except (OSError, subprocess.TimeoutExpired):
        built = ""
    lines = [f"client_body_temp_path {prefix}/body;"]
    for module in ("proxy", "fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{module}_module" not in built:
            lines.append(f"{module}_temp_path {prefix}/{module};")
    return "\n    ".join(lines)


class Nginx:
    """nginx in the foreground with its own prefix, pid file and error log."""

    def __init__(self, prefix: Path, server_blocks: str) -> None:
        self.prefix = prefix
        self.server_blocks = server_blocks  # may use {port}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def config(self, port: int) -> str:
        p = self.prefix
        return f"""
daemon off;
master_process off;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    {_temp_path_directives(p)}
    {self.server_blocks.replace("{port}", str(port))}
}}
"""

    def start(self, attempts: int = 5) -> Nginx:
        assert NGINX is not None
        for _ in range(attempts):
            port = free_port()
            conf = self.prefix / "nginx.conf"
            conf.write_text(self.config(port))
            self.proc = subprocess.Popen(
                [NGINX, "-p", str(self.prefix), "-e", str(self.prefix / "error.log"), "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if wait_for_port(port, proc=self.proc):
                self.port = port
                return self
            self.stop()
            if "Address already in use" not in self.error_log():
                break  # a real failure, not a port race
        raise RuntimeError(f"nginx did not start:\n{self.error_log()}")

    def error_log(self) -> str:
        try:
            return (self.prefix / "error.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc)


class UvicornThread:
    """uvicorn serving ``app`` on 127.0.0.1 (a socket bound to port 0) in a thread."""

    def __init__(self, app: Any, **config: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        config.setdefault("log_level", "warning")
        config.setdefault("lifespan", "off")
        self.server = uvicorn.Server(uvicorn.Config(app, **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> UvicornThread:
        self.thread.start()
        end = time.monotonic() + DEADLINE
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                self.stop()
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)  # poll interval, bounded by the deadline
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class HypercornThread:
    """hypercorn (asyncio) serving ``app`` on a pre-bound 127.0.0.1 socket in a thread."""

    def __init__(self, app: Any, *, serve: Any = None, **config: Any) -> None:
        from hypercorn.config import Config

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.set_inheritable(True)
        self.port = int(self.sock.getsockname()[1])
        self.config = Config()
        self.config.bind = [f"fd://{self.sock.fileno()}"]
        self.config.loglevel = "WARNING"
        for k, v in config.items():
            setattr(self.config, k, v)
        self.app = app
        self.serve = serve
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from hypercorn.asyncio import serve as hypercorn_serve

        serve = self.serve or hypercorn_serve

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop_event = asyncio.Event()
            self.ready.set()
            await serve(self.app, self.config, shutdown_trigger=self.stop_event.wait)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by start()/stop()
            self.error = exc
            self.ready.set()

    def start(self) -> HypercornThread:
        self.thread.start()
        if not self.ready.wait(DEADLINE) or self.error is not None:
            raise RuntimeError(f"hypercorn did not start: {self.error!r}")
        # The socket already listens, so the first request simply waits in the backlog.
        return self

    def stop(self) -> None:
        if self.loop is not None and self.stop_event is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass
class Reply:
    status: int
    body: Any
    stderr: str


def curl(
    url: str,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    cacert: Path | None = None,
    headers: dict[str, str] | None = None,
    interface: str | None = None,
    timeout: float = 20,
) -> Reply:
    """One request with the real curl binary; JSON bodies are decoded.

    ``interface``: the source address to connect from (e.g. a loopback alias)."""
    assert CURL is not None
    cmd = [CURL, "-sS", "--max-time", str(timeout), "-o", "-", "-w", "\n%{http_code}", "--noproxy", "*"]
    if cert is not None:
        cmd += ["--cert", str(cert)]
    if key is not None:
        cmd += ["--key", str(key)]
    if cacert is not None:
        cmd += ["--cacert", str(cacert)]
    if interface is not None:
        cmd += ["--interface", interface]  # the client's source address (a loopback alias)
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10)
    out, _, code = done.stdout.rpartition("\n")
    try:
        body: Any = json.loads(out) if out else None
    except ValueError:
        body = out
    return Reply(int(code) if code.isdigit() else 0, body, done.stderr)
