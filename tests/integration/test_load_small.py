"""The gateway under load and faults, small size: loadtest/run.py --small as a subprocess.

Generous bounds and no timing assertions: what must hold is that good clients
were served, bad ones got their reason, nothing leaked and memory stayed bounded.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("OpenSSL", reason="the deferred TLS engine needs pyOpenSSL")

REPO = pathlib.Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("load") / "report.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "loadtest" / "run.py"), "--small", "--json", str(out), "--timeout", "150"],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=str(REPO),
    )
    assert out.exists(), f"no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    doc["_stdout"] = proc.stdout
    doc["_exit"] = proc.returncode
    return doc


def test_every_check_of_the_run_holds(report: dict) -> None:
    failed = [name for name, ok in report["checks"].items() if not ok]
    assert not failed, report["_stdout"]
    assert report["_exit"] == 0


def test_good_clients_were_served(report: dict) -> None:
    good = report["good"]
    assert good["clients"] == 40
    assert good["served"] == good["clients"], good["failures"]
    assert report["slow_upstream"]["served"] == report["slow_upstream"]["clients"] == 10


def test_bad_clients_got_their_reason(report: dict) -> None:
    bad = report["bad"]
    assert bad["clients"] == 20
    assert bad["rejected_with_reason"] == 20, bad["wrong"]


def test_faults_were_contained(report: dict) -> None:
    assert report["hang_upstream"]["got_504"] == report["hang_upstream"]["clients"]
    assert report["upstream_down"]["got_502"] == report["upstream_down"]["requests"]
    assert report["upstream_down"]["then_200"] == report["upstream_down"]["requests"]
    # Stalled and idle clients were cut by the gateway, not by the clients' own cap.
    assert report["stalled_handshakes"]["closed_after_connect_max_s"] < 60
    assert report["idle_after_handshake"]["closed_after_max_s"] < 60


def test_no_fd_leak_and_bounded_memory(report: dict) -> None:
    fds = report["fds"]
    assert fds["after"] <= fds["before"] + 2, fds
    mem = report["memory_kb"]
    assert mem["peak_hwm"] < 512 * 1024, mem  # 100 connections: far below half a GiB
    assert mem["rss_after"] < mem["rss_before"] + 256 * 1024, mem


def test_the_asyncio_runtime_listens_with_a_backlog_for_its_connection_limit(tmp_path, monkeypatch) -> None:
    # Found by loadtest/run.py (full): with asyncio's default backlog of 100, a burst of
    # 1,000 connects overflowed the accept queue (396 dropped handshakes, clients waiting
    # for TCP retransmits, stalled clients never seen by the gateway).
    import asyncio
    from datetime import UTC, datetime

    sys.path.insert(0, str(REPO))
    from loadtest._setup import write_files
    from mtlscore.runtimes import asyncio as runtime
    from mtlscore.runtimes.state import GatewayState

    files = write_files(
        tmp_path,
        datetime.now(UTC),
        upstream_port=9,
        hang_port=9,
        tls_engine="ssl",
        timeouts={"handshake": 1, "header": 1, "upstream": 1},
        max_connections=1500,
    )
    seen: list[dict] = []
    original = asyncio.BaseEventLoop.create_server  # what the runtime listens with

    async def spy(self, *args, **kwargs):
        seen.append(kwargs)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_server", spy)

    async def main() -> None:
        started: asyncio.Future = asyncio.get_running_loop().create_future()

        class Status:
            def started(self, info=None) -> None:
                started.set_result(info)

        task = asyncio.create_task(
            runtime.serve(GatewayState.from_config_file(files.config), task_status=Status(), handle_signals=False)
        )
        await asyncio.wait_for(started, 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    import contextlib

    asyncio.run(main())
    assert seen and seen[0].get("backlog", 100) >= 1500


def test_deferred_engine_write_after_the_peer_left_is_an_oserror(tmp_path) -> None:
    # Found by loadtest/run.py --runtime trio: a client that disconnected mid-request made
    # pyOpenSSL raise SSL.Error on the answer's write; the driver only expects OSError
    # (what stdlib ssl raises), so the error escaped and took the whole trio gateway down.
    import ssl

    pytest.importorskip("OpenSSL")
    from mtlscore import TrustStore, pki
    from mtlscore.runtimes.tls import DeferredEngine

    root = pki.root()
    server = root.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"])
    client = root.leaf("client")
    for name, data in {
        "s.pem": server.pem,
        "s.key": server.key_pem,
        "c.pem": client.pem,
        "c.key": client.key_pem,
        "ca.pem": root.pem,
    }.items():
        (tmp_path / name).write_bytes(data)
    engine = DeferredEngine(
        DeferredEngine.context(TrustStore([root.pem]), certificate=tmp_path / "s.pem", key=tmp_path / "s.key")
    )
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ctx.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "c.key"))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    client_done = server_done = False
    for _ in range(10):  # an in-memory handshake: a few round trips, no sockets
        try:
            tls.do_handshake()
            client_done = True
        except ssl.SSLWantReadError:
            pass
        engine.feed(outgoing.read())
        server_done = engine.handshake()
        incoming.write(engine.outgoing())
        if client_done and server_done:
            break
    assert client_done and server_done
    tls.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    engine.feed(outgoing.read())
    assert engine.read() == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    engine.feed(b"")  # the client is gone
    assert engine.read() == b""
    with pytest.raises(OSError):
        engine.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
