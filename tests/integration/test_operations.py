"""What an operator reads: the JSON log lines and the /metrics counters (issue 18, items 4 and 5).

Logs: `mtlscore serve` as a real process on both runtimes, clients by real curl,
every stderr line after the banner parsed as JSON and its fields checked: an RFC
3339 UTC ``ts`` and a ``level`` on every line; start, decisions, reload (ok, and
kept-old-config with why), drain and stop. Metrics: each counter driven by its
event and read back from the admin listener's /metrics with curl (the text format,
so the test survives a change of metrics library).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
import pytest
from test_gateway import Env, Upstream, anyio_backend, bearer, env, request  # noqa: F401 - fixtures

from mtlscore.runtimes.state import GatewayState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

# RFC 3339 §5.6 date-time, in UTC with a Z, milliseconds.
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

if shutil.which("curl") is None:  # pragma: no cover - the CI installs curl
    pytest.skip("curl not installed", allow_module_level=True)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    u = Upstream()
    yield u
    u.close()


def curl(e: Env, port: int, cert: str | None, path: str = "/", headers: dict[str, str] | None = None) -> str:
    args = ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
            "--resolve", f"localhost:{port}:127.0.0.1", "--cacert", str(e.dir / "server-ca.pem")]
    if cert:
        args += ["--cert", str(e.dir / f"{cert}.pem"), "--key", str(e.dir / f"{cert}.key")]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run([*args, f"https://localhost:{port}{path}"], capture_output=True, text=True, timeout=20)
    return out.stdout


class Samples(dict[str, float]):
    """/metrics samples keyed 'family{a="x",b="y"}'; a key names the labels it cares about."""

    def get(self, key: str, default: float | None = None) -> float | None:  # type: ignore[override]
        family, _, rest = key.partition("{")
        wanted = set(re.findall(r'(\w+)="([^"]*)"', rest))
        found = [v for k, v in self.items() if k.partition("{")[0] == family
                 and wanted <= set(re.findall(r'(\w+)="([^"]*)"', k.partition("{")[2]))]
        return sum(found) if found else default

    def __getitem__(self, key: str) -> float:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value


def scrape(port: int) -> Samples:
    """/metrics by curl. Other labels beside the ones a test names (lb_error…) are summed over."""
    out = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/metrics"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    samples = Samples()
    for line in out.stdout.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def helps(port: int) -> dict[str, str]:
    out = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{port}/metrics"], capture_output=True, text=True,
                         timeout=20)
    return {m.group(1): m.group(2) for m in re.finditer(r"^# HELP (\S+) (.*)$", out.stdout, re.M)}


class Lines:
    """The gateway's stderr, one parsed JSON object per line (every one must parse)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []

    def next(self, event: str, **match: Any) -> dict[str, Any]:
        assert self.proc.stderr is not None
        while True:
            line = self.proc.stderr.readline()
            assert line, f"the gateway ended before logging {event} {match}; saw {self.seen}"
            doc = json.loads(line)  # every line after the banner is one JSON object
            self.seen.append(doc)
            assert RFC3339_UTC.match(doc["ts"]), doc
            stamp = datetime.fromisoformat(doc["ts"].replace("Z", "+00:00"))
            assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)
            assert doc["level"] in ("info", "warning", "error"), doc
            assert list(doc)[:2] == ["ts", "level"]
            if doc.get("event") == event and all(doc.get(k) == v for k, v in match.items()):
                return doc


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_serve_logs_are_json_with_ts_and_level_from_start_to_stop(
    env: Env, upstream: Upstream, runtime: str  # noqa: F811
) -> None:
    config = env.config(f"ops-{runtime}.toml", upstream=f"http://127.0.0.1:{upstream.port}",
                        admin_listen="127.0.0.1:0")
    original = config.read_text()
    proc = subprocess.Popen([sys.executable, "-m", "mtlscore", "serve", "--config", str(config), "--runtime", runtime],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # the one human line: where to connect
        # event_loop = "auto" (the default): uvloop wherever it is installed (the test extra has it).
        loop = ("uvloop" if importlib.util.find_spec("uvloop") else "asyncio") if runtime == "asyncio" else None
        label = "asyncio on uvloop" if loop == "uvloop" else runtime
        assert banner.startswith(f"mtlscore gateway ({label}, reject_invalid"), banner
        log = Lines(proc)
        start = log.next("mtls_start")
        assert start["level"] == "info" and start["runtime"] == runtime and start["event_loop"] == loop
        port = int(start["listen"].rsplit(":", 1)[1])
        assert start["listen"] == f"127.0.0.1:{port}" and f"https://{start['listen']}" in banner
        assert start["admin_listen"].startswith("127.0.0.1:")
        assert start["mode"] == "reject_invalid" and f"TLS engine {start['tls_engine']})" in banner
        assert start["anchors"] == ["root.pem"] and start["accounts"] == 3 and start["crls"] == 1
        assert start["upstream"] == f"http://127.0.0.1:{upstream.port}"

        assert curl(env, port, "good", "/v1/score", bearer(env)) == "200"
        decision = log.next("mtls_decision")
        assert (decision["level"], decision["outcome"], decision["account"]) == ("info", "forward", "partner-abc")

        proc.send_signal(signal.SIGHUP)
        assert log.next("mtls_reload")["result"] == "ok"
        config.write_text(original.replace("[trust]", "[trust]\nbogus = 1"))
        proc.send_signal(signal.SIGHUP)
        kept = log.next("mtls_reload")
        assert (kept["level"], kept["result"]) == ("error", "error")
        assert "trust.bogus" in kept["error"] and "the running configuration stays" in kept["detail"]
        config.write_text(original)
        assert curl(env, port, "good", "/v1/score", bearer(env)) == "200"  # still serving, old config

        proc.send_signal(signal.SIGTERM)
        drain = log.next("mtls_drain")
        assert (drain["level"], drain["why"]) == ("info", "SIGTERM")
        # The last curl's connection may still be closing: at most that one is in flight.
        assert drain["connections"] in (0, 1) and drain["grace_seconds"] > 0
        stop = log.next("mtls_stop")
        assert stop == {**stop, "graceful": True, "connections_cut": 0}
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_the_formatter_wraps_every_record() -> None:
    """An embedder's own message and an exception still come out as one JSON line."""
    import logging

    from mtlscore.runtimes.logs import JsonLineFormatter

    fmt = JsonLineFormatter()
    record = logging.LogRecord("mtlscore.gateway", logging.WARNING, __file__, 1, "plain %s", ("text",), None)
    doc = json.loads(fmt.format(record))
    assert (doc["level"], doc["event"], doc["message"]) == ("warning", "log", "plain text")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("g", logging.ERROR, __file__, 1, '{"event": "x"}', (), sys.exc_info())
    doc = json.loads(fmt.format(record))
    assert doc["event"] == "x" and "RuntimeError: boom" in doc["traceback"]
    empty = logging.LogRecord("g", logging.INFO, __file__, 1, "{}", (), None)
    assert set(json.loads(fmt.format(empty))) == {"ts", "level"}


# -- every counter moves when its event happens ---------------------------------------


async def _until(check: Any, what: str) -> None:
    with anyio.fail_after(10):
        while not await anyio.to_thread.run_sync(check):
            await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_every_counter_moves_when_its_event_happens(
    env: Env, upstream: Upstream, anyio_backend: str, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    from mtlscore.gateway.session import Session
    from mtlscore.runtimes import asyncio as asyncio_runtime
    from mtlscore.runtimes import trio as trio_runtime

    runtime = asyncio_runtime if anyio_backend == "asyncio" else trio_runtime
    forward = env.config(f"m-fwd-{anyio_backend}.toml", upstream=f"http://127.0.0.1:{upstream.port}",
                         admin_listen="127.0.0.1:0", max_connections=2, max_connections_per_address=2)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
    dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    state = GatewayState.from_config_file(forward)
    async with anyio.create_task_group() as tg:
        info = await tg.start(partial(runtime.serve, state, handle_signals=False))
        port, admin = info.address.port, info.admin_address.port
        before = await anyio.to_thread.run_sync(scrape, admin)
        assert before["mtlscore_connections_total"] == 0
        assert before.get("mtlscore_responses_total") in (None, 0)

        # forward (200); deny at HTTP (403: the account's IP allowlist); deny in the handshake
        # (an expired certificate, no certificate: reject_at = handshake, the default).
        assert await anyio.to_thread.run_sync(curl, env, port, "good", "/v1", bearer(env)) == "200"
        assert await anyio.to_thread.run_sync(curl, env, port, "other-account") == "403"
        await anyio.to_thread.run_sync(curl, env, port, "expired")
        await anyio.to_thread.run_sync(curl, env, port, None)
        # A handshake failure is counted after its alert is sent: curl may exit first.
        await _until(lambda: scrape(admin).get("mtlscore_handshake_failures_total") == 2, "handshake failures")
        m = await anyio.to_thread.run_sync(scrape, admin)
        assert m['mtlscore_decisions_total{outcome="forward",reason="ok"}'] == 1
        assert m['mtlscore_decisions_total{outcome="deny",reason="ip_not_allowed"}'] == 1
        assert m['mtlscore_decisions_total{outcome="deny",reason="expired"}'] == 1
        assert m['mtlscore_decisions_total{outcome="deny",reason="not_provided"}'] == 1
        assert m['mtlscore_handshake_failures_total{reason="expired"}'] == 1
        assert m['mtlscore_handshake_failures_total{reason="not_provided"}'] == 1
        assert m['mtlscore_responses_total{status="200"}'] == 1  # was never incremented
        assert m['mtlscore_responses_total{status="403"}'] == 1
        assert m["mtlscore_connections_total"] == 4

        # Two silent sockets from 127.0.0.1 hold both slots (max_connections = 2).
        first = await anyio.to_thread.run_sync(socket.create_connection, ("127.0.0.1", port))
        await _until(lambda: state.admission.total == 1, "first admitted")
        second = await anyio.to_thread.run_sync(socket.create_connection, ("127.0.0.1", port))
        await _until(lambda: state.admission.total == 2, "second admitted")
        # refused: a third at once from that address (max_connections_per_address = 2).
        third = await anyio.to_thread.run_sync(socket.create_connection, ("127.0.0.1", port))
        await _until(lambda: scrape(admin).get(
            'mtlscore_connections_refused_total{limit="max_connections_per_address"}') == 1, "refused")
        # shed: one from another loopback address takes the slot of the one waiting longest.
        fourth = await anyio.to_thread.run_sync(
            partial(socket.create_connection, ("127.0.0.1", port), source_address=("127.0.0.2", 0)))
        await _until(lambda: scrape(admin).get("mtlscore_connections_shed_total") == 1, "shed")
        for s in (first, second, third, fourth):
            s.close()
        await _until(lambda: state.admission.total == 0, "all released")

        # error: the upstream is gone (502); a reload: ok, then one that fails.
        forward.write_text(forward.read_text().replace(f"http://127.0.0.1:{upstream.port}", dead))
        assert state.reload()
        assert await anyio.to_thread.run_sync(curl, env, port, "good", "/v1", bearer(env)) == "502"
        text = forward.read_text()
        forward.write_text(text.replace("[trust]", "[trust]\nbogus = 1"))
        assert not state.reload()
        forward.write_text(text)

        # answer: no upstream, the identity JSON.
        forward.write_text(text.replace(f'upstream = "{dead}"', ""))
        assert state.reload()
        assert await anyio.to_thread.run_sync(curl, env, port, "good", "/", bearer(env)) == "200"

        # connection error: a bug inside one connection is counted (and the gateway lives on).
        real = Session.receive_client

        def broken(self: Session, data: bytes) -> None:
            # Only this request: other connections may still be delivering their EOF.
            if b"/injected-bug" in data:
                raise RuntimeError("injected")
            real(self, data)

        monkeypatch.setattr(Session, "receive_client", broken)
        await anyio.to_thread.run_sync(curl, env, port, "good", "/injected-bug", bearer(env))
        monkeypatch.undo()
        m = await anyio.to_thread.run_sync(scrape, admin)
        assert m['mtlscore_decisions_total{outcome="error",reason="upstream_unavailable"}'] == 1
        assert m['mtlscore_responses_total{status="502"}'] == 1
        assert m['mtlscore_decisions_total{outcome="answer",reason="ok"}'] == 1
        assert m['mtlscore_responses_total{status="200"}'] == 2
        assert m['mtlscore_reloads_total{result="ok"}'] == 2
        assert m['mtlscore_reloads_total{result="error"}'] == 1
        assert m["mtlscore_connection_errors_total"] == 1
        assert await anyio.to_thread.run_sync(curl, env, port, "good", "/", bearer(env)) == "200"

        # HELP texts name what is emitted: the four outcomes.
        decisions_help = (await anyio.to_thread.run_sync(helps, admin))["mtlscore_decisions_total"]
        for outcome in ("forward", "answer", "deny", "error"):
            assert outcome + ":" in decisions_help
        tg.cancel_scope.cancel()
    closed.close()

