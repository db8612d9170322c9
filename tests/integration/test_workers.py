"""`mtlscore serve` with `[server] workers = 2` (issue 20, item 1): real processes on loopback.

Every test runs the real command on both runtimes and reads its stderr, one JSON line
per event: the parent's lines carry its ``pid``, a worker's ``worker`` and ``pid`` (the
processes share stderr), which is how a test knows which worker served a connection.
Nothing sleeps to synchronise: every wait polls a condition under a deadline.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mtlscore import pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NOW = datetime.now(UTC)
RUNTIMES = ["asyncio", "trio"]
# [server] workers_socket, each said explicitly (the default, "auto", is reuseport on Linux).
SOCKETS = ["reuseport", "inherit"]


class Site:
    """A PKI and a config file: one client certificate mapped to an account with no credential,
    so the identity JSON answers 200 and the decision line names the account."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        root = pki.root("CN=Workers Root", now=NOW)
        server_ca = pki.root("CN=Workers Server CA", now=NOW)
        server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"])
        client = root.leaf("CN=worker-client")
        (d / "root.pem").write_bytes(root.pem)
        (d / "server-ca.pem").write_bytes(server_ca.pem)
        (d / "server.pem").write_bytes(server.pem)
        (d / "server.key").write_bytes(server.key_pem)
        (d / "server.key").chmod(0o600)
        (d / "client.pem").write_bytes(client.chain_pem)
        (d / "client.key").write_bytes(client.key_pem)
        self.config = d / "mtlscore.toml"
        self.context = ssl.create_default_context(cafile=str(d / "server-ca.pem"))
        self.context.load_cert_chain(str(d / "client.pem"), str(d / "client.key"))

    def write(self, *, account: str = "acct-one", workers: object = 2, **server: object) -> Path:
        settings = {"listen": "127.0.0.1:0", "certificate": "server.pem", "key": "server.key",
                    "reload_poll_seconds": 0, "admin_listen": "127.0.0.1:0", "workers": workers, **server}
        lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
        # Replaced whole (a reader never sees it half written: the parent polls it).
        tmp = self.config.with_name(".mtlscore.toml.tmp")
        tmp.write_text(f"""
[trust]
anchors = ["root.pem"]

[[accounts]]
id = "{account}"
match = {{ cn = "worker-client" }}

[server]
{lines}
""")
        os.replace(tmp, self.config)
        return self.config

    def get(self, port: int, path: str = "/") -> tuple[int, bytes]:
        """One request on a new connection."""
        c = http.client.HTTPSConnection("localhost", port, context=self.context, timeout=20)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


class Serve:
    """`mtlscore serve` as a real process; its stderr lines collected by a thread."""

    def __init__(self, config: Path, runtime: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mtlscore", "serve", "--config", str(config), "--runtime", runtime],
            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []  # every line as read, its newline included
        self.banner = ""
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.raw.append(line)
                if line.startswith("{"):
                    self.lines.append(json.loads(line))
                elif line.startswith("mtlscore gateway"):
                    self.banner = line
                else:
                    self.lines.append({"event": "text", "text": line})
                self._cond.notify_all()
        with self._cond:
            self.lines.append({"event": "eof"})
            self._cond.notify_all()

    def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (got := check()):
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}; saw {self.lines}"
                self._cond.wait(left)
            return got

    def events(self, event: str, **match: Any) -> list[dict[str, Any]]:
        with self._cond:
            return [d for d in self.lines if d.get("event") == event and all(d.get(k) == v for k, v in match.items())]

    def started(self) -> tuple[int, int]:
        """(port, admin port) from the banner, once every worker listens."""
        self.wait_for(lambda: self.banner or self.events("eof"), "the banner")
        assert self.banner, self.lines
        port = int(self.banner.split("https://127.0.0.1:")[1].split()[0])
        admin = int(self.banner.split("metrics on http://127.0.0.1:")[1].split("/")[0])
        return port, admin

    def workers(self) -> dict[int, int]:
        """worker index -> pid, of the latest start of each."""
        return {d["worker"]: d["worker_pid"] for d in self.events("worker_start")}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # the workers see their stdin end and drain
            self.proc.wait(timeout=10)
        self._reader.join(timeout=10)


@pytest.fixture
def serve() -> Iterator[Callable[[Path, str], Serve]]:
    started: list[Serve] = []

    def start(config: Path, runtime: str, env: dict[str, str] | None = None) -> Serve:
        s = Serve(config, runtime, env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def admin_get(port: int, path: str) -> tuple[int, str]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def metric(text: str, name: str) -> float:
    """The sum of every sample of ``name`` (over its labels) in a text exposition."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    assert seen, f"{name} not in /metrics"
    return total


def until_both_workers_served(s: Serve, site: Site, port: int, pids: set[int], *, done: int,
                              limit: int = 400) -> int:
    """New connections until decision lines from every pid in ``pids`` came back; how many were made.

    ``done``: the requests this gateway answered before, whose lines are awaited first (the
    reader thread may lag), so only the new requests' lines are looked at."""
    s.wait_for(lambda: len(s.events("mtls_decision")) >= done, "the earlier decision lines")
    before = done
    made = 0
    while True:
        assert site.get(port)[0] == 200
        made += 1
        want = before + made
        s.wait_for(lambda want=want: len(s.events("mtls_decision")) >= want, "the decision line")
        served = {d["pid"] for d in s.events("mtls_decision")[before:]}
        if pids <= served:
            return made
        assert made < limit, f"{limit} connections, all served by {served}; workers {pids}"


def listening(port: int) -> int:
    """Sockets in LISTEN on 127.0.0.1:``port`` (/proc/net/tcp, state 0A): one per worker with
    reuseport (the parent's, bound only, is not one), one for them all when inherited."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "0A" and local == f"0100007F:{port:04X}":
            count += 1
    return count


# -- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", SOCKETS)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_two_workers_share_the_port_and_metrics_sum_them(site: Site, serve: Any, runtime: str, mode: str) -> None:
    s = serve(site.write(workers_socket=mode), runtime)
    port, admin = s.started()
    # event_loop = "auto" (the default): the asyncio runtime on uvloop wherever it is installed.
    label = "asyncio on uvloop" if runtime == "asyncio" and importlib.util.find_spec("uvloop") else runtime
    assert f"({label}, reject_invalid, TLS engine" in s.banner and ", 2 workers)" in s.banner
    pids = set(s.workers().values())
    assert len(pids) == 2 and s.proc.pid not in pids
    assert {d["socket"] for d in s.events("worker_start")} == {mode}
    assert listening(port) == (2 if mode == "reuseport" else 1)
    # A worker logs mtls_start just after it says it listens: maybe after the banner.
    starts = s.wait_for(lambda: len(s.events("mtls_start")) == 2 and s.events("mtls_start"), "two mtls_start")
    assert sorted(d["worker"] for d in starts) == [1, 2] and {d["pid"] for d in starts} == pids
    assert {d["runtime"] for d in starts} == {runtime}

    made = until_both_workers_served(s, site, port, pids, done=0)

    status, text = admin_get(admin, "/metrics")
    assert status == 200
    # Every connection and decision of both workers, summed (prometheus-client multiprocess mode).
    assert metric(text, "mtlscore_connections_total") == made
    assert metric(text, 'mtlscore_decisions_total{lb_error="",outcome="answer",reason="ok"}') == made
    assert metric(text, "mtlscore_workers_configured") == 2
    assert metric(text, "mtlscore_workers_ready") == 2
    assert metric(text, "mtlscore_worker_restarts_total") == 0
    assert admin_get(admin, "/healthz") == (200, "ok: 2 of 2 workers ready\n")


@pytest.mark.parametrize("mode", SOCKETS)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_killed_worker_is_restarted_and_the_port_keeps_serving(site: Site, serve: Any, runtime: str,
                                                                 mode: str) -> None:
    s = serve(site.write(workers_socket=mode), runtime)
    port, admin = s.started()
    before = s.workers()
    assert site.get(port)[0] == 200
    requests = 1
    os.kill(before[1], signal.SIGKILL)
    if mode == "reuseport":
        # Its own socket dies with it, and with it the connections queued on it (reset):
        # from its death on, the kernel hands every connection to the other worker.
        s.wait_for(lambda: s.events("worker_exit", worker=1), "the worker_exit line")
        assert listening(port) == 1
    # The other worker serves every connection while worker 1 is down and restarted.
    deadline = time.monotonic() + 60
    while len(s.events("worker_start")) < 3:
        assert site.get(port)[0] == 200
        requests += 1
        assert time.monotonic() < deadline, f"worker 1 was not started again: {s.lines}"
    exit_line = s.wait_for(lambda: s.events("worker_exit", worker=1), "the worker_exit line")[0]
    assert exit_line == {**exit_line, "level": "warning", "worker_pid": before[1], "status": "killed by SIGKILL",
                         "pid": s.proc.pid}
    assert exit_line["restart_in_seconds"] > 0
    again = s.workers()
    assert again[2] == before[2] and again[1] not in (before[1], before[2])
    # Started again, the worker binds the port again (reuseport: the parent held it meanwhile).
    assert listening(port) == (2 if mode == "reuseport" else 1)
    requests += until_both_workers_served(s, site, port, {again[1], again[2]}, done=requests)

    _, text = admin_get(admin, "/metrics")
    assert metric(text, "mtlscore_worker_restarts_total") == 1
    assert metric(text, "mtlscore_workers_ready") == 2
    # The dead worker's counts stay in the sum: totals never go down.
    assert metric(text, "mtlscore_connections_total") == requests


@pytest.mark.parametrize("mode", SOCKETS)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sighup_is_validated_once_and_reaches_every_worker(site: Site, serve: Any, runtime: str, mode: str) -> None:
    s = serve(site.write(account="acct-one", workers_socket=mode), runtime)
    port, admin = s.started()
    pids = set(s.workers().values())
    seen = until_both_workers_served(s, site, port, pids, done=0)
    assert {d["account"] for d in s.events("mtls_decision")} == {"acct-one"}

    # A broken file: the parent says so once, and no worker is told (all keep acct-one).
    good = site.config.read_text()
    site.config.write_text(good.replace("[trust]", "[trust]\nbogus = 1"))
    s.proc.send_signal(signal.SIGHUP)
    error = s.wait_for(lambda: s.events("mtls_reload", result="error"), "the parent's reload error")
    assert len(error) == 1 and error[0]["pid"] == s.proc.pid and "trust.bogus" in error[0]["error"]
    # The account renamed: the parent validates it, then every worker reloads.
    site.write(account="acct-two", workers_socket=mode)
    s.proc.send_signal(signal.SIGHUP)
    s.wait_for(lambda: {d["pid"] for d in s.events("mtls_reload", result="ok")} == {s.proc.pid, *pids},
               "mtls_reload ok from the parent and both workers")
    assert len(s.events("mtls_reload")) == 4  # the error once (no worker saw it), then ok three times
    until_both_workers_served(s, site, port, pids, done=seen)
    after = s.events("mtls_decision")[seen:]
    assert {d["account"] for d in after} == {"acct-two"} and {d["pid"] for d in after} == pids
    _, text = admin_get(admin, "/metrics")
    # Counted by the parent, once per reload (not once per worker).
    assert metric(text, 'mtlscore_reloads_total{result="ok"}') == 1
    assert metric(text, 'mtlscore_reloads_total{result="error"}') == 1


class HangingUpstream:
    """An HTTP upstream whose answer waits for :attr:`release`."""

    def __init__(self) -> None:
        import http.server

        self.release = threading.Event()
        self.arrived = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.arrived.set()
                outer.release.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"done")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("mode", SOCKETS)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigterm_drains_the_request_in_flight_then_exits_0(site: Site, serve: Any, runtime: str, mode: str) -> None:
    upstream = HangingUpstream()
    try:
        s = serve(site.write(upstream=f"http://127.0.0.1:{upstream.port}", shutdown_grace_seconds=20,
                             workers_socket=mode), runtime)
        port, _ = s.started()
        result: list[tuple[int, bytes]] = []
        client = threading.Thread(target=lambda: result.append(site.get(port, "/slow")))
        client.start()
        assert upstream.arrived.wait(20), "the request never reached the upstream"
        s.proc.send_signal(signal.SIGTERM)
        drains = s.wait_for(lambda: len(s.events("mtls_drain")) == 2 and s.events("mtls_drain"), "two drains")
        assert {d["why"] for d in drains} == {"SIGTERM"} and sorted(d["connections"] for d in drains) == [0, 1]
        # Draining: the port refuses new connections (the parent closed its copy too, or
        # they would queue where no one accepts them, and time out).
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                break
            except (TimeoutError, ConnectionResetError):
                # A SYN that reached the listening socket just before it closed is answered
                # by a reset; the next attempt meets the closed port and is refused.
                pass
            assert time.monotonic() < deadline, "the port does not refuse connections while draining"
        upstream.release.set()
        client.join(20)
        assert result == [(200, b"done")]
        assert s.proc.wait(timeout=30) == 0
        s.wait_for(lambda: s.events("eof"), "the last lines")  # the reader thread may lag the exit
        stops = s.events("mtls_stop")
        assert [d["connections_cut"] for d in stops] == [0, 0] and all(d["graceful"] for d in stops)
        assert sorted(d["status"] for d in s.events("worker_exit")) == ["exit 0", "exit 0"]
    finally:
        upstream.close()


@pytest.mark.parametrize("value", [0, -1, 257, "x", True, 1.5, "AUTO"])
def test_a_bad_workers_value_is_one_line_naming_the_key_and_file(site: Site, value: object) -> None:
    config = site.write(workers=value)
    out = subprocess.run([sys.executable, "-m", "mtlscore", "serve", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        f"mtlscore serve: configuration error in {config}: server.workers: must be a whole number from 1 to 256, "
        f'or "auto" (one per usable core); got {value!r}'
    ]


@pytest.mark.parametrize("value", ["so_reuseport", "", 1, True])
def test_a_bad_workers_socket_value_is_one_line_naming_the_key_and_file(site: Site, value: object) -> None:
    config = site.write(workers_socket=value)
    out = subprocess.run([sys.executable, "-m", "mtlscore", "serve", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        f"mtlscore serve: configuration error in {config}: server.workers_socket: must be one of auto, reuseport, "
        f"inherit; got {value!r}"
    ]


SIGNALLED_AT_ONCE = """
import os, signal, sys
from mtlscore.runtimes import OnStarted
from mtlscore.runtimes.state import GatewayState

state = GatewayState.from_config_file(sys.argv[1])

def started(info):
    # The moment a parent forwards a SIGHUP to a worker that just said it listens.
    os.kill(os.getpid(), signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGTERM)

if sys.argv[2] == "trio":
    import trio
    from mtlscore.runtimes import trio as runtime
    trio.run(lambda: runtime.serve(state, task_status=OnStarted(started)))
else:
    import asyncio
    from mtlscore.runtimes import asyncio as runtime
    asyncio.run(runtime.serve(state, task_status=OnStarted(started)))
print(state.metrics.get("mtlscore_reloads_total", result="ok"))
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_sighup_right_after_listening_reloads(site: Site, runtime: str) -> None:
    # Before: trio's signal receiver was opened by a task that had not run yet when
    # serve() said it listened, so a SIGHUP then met the default action and killed the gateway.
    config = site.write(workers=1)
    out = subprocess.run([sys.executable, "-c", SIGNALLED_AT_ONCE, str(config), runtime],
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (0, "1\n"), out.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_workers_whose_parent_is_killed_drain_and_exit(site: Site, serve: Any, runtime: str) -> None:
    s = serve(site.write(), runtime)
    port, _ = s.started()
    assert site.get(port)[0] == 200
    s.proc.kill()  # no SIGTERM to forward: the workers see their stdin (the parent's pipe) end
    # stderr ends when the last process holding it (the workers) has exited.
    s.wait_for(lambda: s.events("eof"), "every worker to exit")
    stops = s.events("mtls_stop")
    assert sorted(d["worker"] for d in stops) == [1, 2] and all(d["graceful"] for d in stops)
    assert {d["why"] for d in s.events("mtls_drain")} == {"SIGTERM"}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.parametrize("busy_reuseport", [False, True], ids=["plain", "reuseport-group"])
@pytest.mark.parametrize("mode", SOCKETS)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_with_workers_a_port_in_use_is_still_one_line(site: Site, runtime: str, mode: str,
                                                      busy_reuseport: bool) -> None:
    # The parent binds the port plainly first: a second gateway on the port fails as with one
    # process, even when the port's listeners are a SO_REUSEPORT group of this user (another
    # gateway in reuseport mode), which a socket with SO_REUSEPORT would silently have joined.
    busy = socket.create_server(("127.0.0.1", 0), reuse_port=busy_reuseport)
    try:
        port = busy.getsockname()[1]
        config = site.write(listen=f"127.0.0.1:{port}", workers_socket=mode)
        out = subprocess.run([sys.executable, "-m", "mtlscore", "serve", "--config", str(config), "--runtime", runtime],
                             capture_output=True, text=True, timeout=60)
    finally:
        busy.close()
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        f"mtlscore serve: configuration error in {config}: server.listen: 127.0.0.1:{port} is already in use "
        "(another process listens there: stop it or pick another port)"
    ]


def test_with_workers_an_invalid_configuration_stops_before_any_worker(site: Site) -> None:
    config = site.write()
    (site.dir / "server.key").unlink()
    out = subprocess.run([sys.executable, "-m", "mtlscore", "serve", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        f"mtlscore serve: configuration error in {config}: server.key: {site.dir / 'server.key'}: no such file"
    ]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_changed_file_is_polled_by_the_parent_and_reaches_every_worker(site: Site, serve: Any,
                                                                         runtime: str) -> None:
    s = serve(site.write(account="acct-one", reload_poll_seconds=0.1), runtime)
    s.started()
    pids = set(s.workers().values())
    s.wait_for(lambda: len(s.events("mtls_start")) == 2, "both workers' mtls_start")
    site.write(account="acct-two", reload_poll_seconds=0.1)
    s.wait_for(lambda: {d["pid"] for d in s.events("mtls_reload", result="ok")} == {s.proc.pid, *pids},
               "mtls_reload ok from the parent and both workers")
    # One reload: the workers poll nothing themselves (each would reload again on its own).
    assert len(s.events("mtls_reload")) == 3


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigterm_cuts_what_outlives_the_grace_then_exits_0(site: Site, serve: Any, runtime: str) -> None:
    upstream = HangingUpstream()  # never released while the gateway drains
    try:
        s = serve(site.write(upstream=f"http://127.0.0.1:{upstream.port}", shutdown_grace_seconds=1), runtime)
        port, _ = s.started()
        result: list[object] = []

        def slow() -> None:
            try:
                result.append(site.get(port, "/slow"))
            except (OSError, http.client.HTTPException) as exc:
                result.append(exc)

        client = threading.Thread(target=slow)
        client.start()
        assert upstream.arrived.wait(20), "the request never reached the upstream"
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=30) == 0
        s.wait_for(lambda: s.events("eof"), "the last lines")  # the reader thread may lag the exit
        client.join(20)
        assert len(result) == 1 and isinstance(result[0], OSError | http.client.HTTPException), result
        stops = s.wait_for(lambda: len(s.events("mtls_stop")) == 2 and s.events("mtls_stop"), "two mtls_stop")
        assert sorted(d["connections_cut"] for d in stops) == [0, 1]
        assert sorted(d["status"] for d in s.events("worker_exit")) == ["exit 0", "exit 0"]
    finally:
        upstream.close()


def _long_named_client(d: Path) -> ssl.SSLContext:
    """A client context presenting a self-signed certificate whose subject is ~6 KB of text:
    what a client puts in the ``detail`` of its own refusal line."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit-{i:03d}-" + "x" * 50)
                      for i in range(100)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(hours=1)).not_valid_after(NOW + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (d / "long.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "long.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    ctx = ssl.create_default_context(cafile=str(d / "server-ca.pem"))
    ctx.load_cert_chain(str(d / "long.pem"), str(d / "long.key"))
    return ctx


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_with_workers_a_long_line_is_cut_to_one_atomic_write(site: Site, serve: Any, runtime: str) -> None:
    """The workers share the parent's stderr, and a write longer than PIPE_BUF can be split
    by another worker's: two lines no parser reads. A client chooses its certificate's
    subject, which its refusal line names in ``detail``: that line is cut to PIPE_BUF, the
    detail's start kept and the cut named, so a client cannot hide its own refusals."""
    s = serve(site.write(), runtime)
    port, _ = s.started()
    c = http.client.HTTPSConnection("localhost", port, context=_long_named_client(site.dir), timeout=20)
    try:
        c.request("GET", "/")
        c.getresponse().read()
    except (OSError, http.client.HTTPException):
        pass  # refused in the handshake or with a 4xx: the line is what is looked at
    finally:
        c.close()
    (line,) = s.wait_for(lambda: s.events("mtls_decision"), "the refusal line")
    assert line["outcome"] == "deny" and line["thumbprint"], line
    assert line.get("truncated") == ["detail"], line
    assert "unit-099-xxx" in line["detail"] and line["detail"].endswith("...")
    raw = next(r for r in s.raw if '"mtls_decision"' in r)
    assert len(raw.encode()) <= select.PIPE_BUF and raw.endswith("}\n")


def test_a_killed_parents_metrics_directory_is_removed_by_the_next_start(site: Site, serve: Any,
                                                                        tmp_path: Path) -> None:
    """SIGKILL skips the parent's clean-up; the next ``serve`` finds the directory's lock free
    and removes it, and keeps the directory of a gateway still running."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    config = site.write()

    def dirs() -> set[str]:
        return {p.name for p in tmp.iterdir() if p.name.startswith("mtlscore-metrics-")}

    first = serve(config, "asyncio", {"TMPDIR": str(tmp)})
    first.started()
    (killed,) = dirs()
    first.proc.kill()
    first.proc.wait(timeout=10)
    second = serve(config, "asyncio", {"TMPDIR": str(tmp)})
    second.started()
    assert killed not in dirs() and len(dirs()) == 1
    (running,) = dirs()
    third = serve(config, "asyncio", {"TMPDIR": str(tmp)})
    third.started()
    assert running in dirs() and len(dirs()) == 2
