"""The expiry radar and the trust-change preview end to end, on both runtimes from one test body.

Three accounts' clients (Python ssl, real TLS on 127.0.0.1) call a gateway; its
admin listener reports their expiry, soonest first, and the gauges; a config
dropping one CA makes ``mtlscore preview`` name exactly that account and
``reload_guard`` keep the running config.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import ssl
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from _gateway import gateway

from mtlscore import pki
from mtlscore.cli import main
from mtlscore.runtimes import ServerInfo
from mtlscore.runtimes.state import GatewayState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

# account -> (its CA, days until its certificate's notAfter)
CLIENTS = {"alpha": ("a", 5), "beta": ("a", 20), "gamma": ("b", 200)}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class World:
    def __init__(self, d: Path) -> None:
        self.dir = d
        now = datetime.now(UTC)
        roots = {"a": pki.root("CN=Radar CA A", now=now), "b": pki.root("CN=Radar CA B", now=now)}
        issuing = {k: r.intermediate(f"CN=Radar Issuing {k.upper()}") for k, r in roots.items()}
        self.not_after: dict[str, datetime] = {}
        for account, (ca, days) in CLIENTS.items():
            leaf = issuing[ca].leaf(f"CN={account}-client", not_after=now + timedelta(days=days))
            self.not_after[account] = leaf.cert.not_valid_after_utc
            (d / f"{account}.pem").write_bytes(leaf.chain_pem)
            (d / f"{account}.key").write_bytes(leaf.key_pem)
        for k, r in roots.items():
            (d / f"ca-{k}.pem").write_bytes(r.pem)
        server_ca = pki.root("CN=Radar Server CA", now=now)
        server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"], san_ip=["127.0.0.1"])
        (d / "server-ca.pem").write_bytes(server_ca.pem)
        (d / "server.pem").write_bytes(server.pem)
        (d / "server.key").write_bytes(server.key_pem)
        (d / "server.key").chmod(0o600)

    def config(self, name: str, anchors: list[str], **server: Any) -> Path:
        settings = {
            "listen": "127.0.0.1:0",
            "admin_listen": "127.0.0.1:0",
            "certificate": "server.pem",
            "key": "server.key",
            "reload_poll_seconds": 0,
            **server,
        }
        # Each account vouched for by its own CA (an account whose CA is gone is gone too).
        accounts = "\n".join(
            f'[[accounts]]\nid = "{a}"\nmatch = {{ cn = "{a}-client" }}\nanchors = ["ca-{ca}.pem"]\n'
            for a, (ca, _) in CLIENTS.items()
            if f"ca-{ca}.pem" in anchors
        )
        text = (
            f"[trust]\nanchors = {json.dumps(anchors)}\n\n{accounts}\n[server]\n"
            + "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
        )
        path = self.dir / name
        path.write_text(text)
        return path

    def call(self, port: int, account: str) -> int:
        ctx = ssl.create_default_context(cafile=str(self.dir / "server-ca.pem"))
        ctx.load_cert_chain(str(self.dir / f"{account}.pem"), str(self.dir / f"{account}.key"))
        c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
        try:
            c.request("GET", "/")
            return c.getresponse().status
        finally:
            c.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("radar"))


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin_get(info: ServerInfo, path: str) -> tuple[int, bytes]:
    assert info.admin_address is not None
    c = http.client.HTTPConnection("127.0.0.1", info.admin_address.port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def cli(*argv: str) -> tuple[int, str]:
    out = io_capture()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def io_capture() -> Any:
    import io

    return io.StringIO()


async def run(fn: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(partial(fn, *args))


@pytest.mark.anyio
async def test_radar_reports_three_accounts_and_reload_guard_keeps_the_config(
    world: World, anyio_backend: str, caplog: pytest.LogCaptureFixture, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="mtlscore.gateway")
    config = world.config(f"running-{anyio_backend}.toml", ["ca-a.pem", "ca-b.pem"], reload_guard=True)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        for account in ("gamma", "alpha", "beta", "alpha"):
            assert await run(world.call, port, account) == 200

        # The admin report: soonest expiry first, each account once, alpha seen twice.
        status, body = await run(admin_get, info, "/certs")
        assert status == 200
        doc = json.loads(body)
        clients = [c for c in doc["certificates"] if c["kind"] == "client"]
        assert [c["account"] for c in clients] == ["alpha", "beta", "gamma"]
        assert [c["count"] for c in clients] == [2, 1, 1]
        assert [c["status"] for c in clients] == ["expiring", "expiring", "ok"]
        assert all(len(c["chain"]) == 2 for c in clients)  # leaf and intermediate, as presented
        status, body = await run(admin_get, info, "/certs?chains=0")
        assert status == 200 and all("chain" not in c for c in json.loads(body)["certificates"])
        kinds = {c["kind"] for c in doc["certificates"]}
        assert kinds == {"client", "intermediate", "anchor"}  # the trust config is in the same report

        # The gauges: soonest expiry per account, and the 7/30-day counts.
        status, body = await run(admin_get, info, "/metrics")
        metrics = body.decode()
        values = {
            line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines() if line[:1] != "#"
        }
        now = datetime.now(UTC)
        for account in CLIENTS:
            left = values[f'mtlscore_client_cert_expiry_seconds{{account="{account}"}}']
            assert abs(left - (world.not_after[account] - now).total_seconds()) < 120
        assert values['mtlscore_certificates_expiring{kind="client",within="7d"}'] == 1
        assert values['mtlscore_certificates_expiring{kind="client",within="30d"}'] == 2

        # One warning line per certificate within the 30-day horizon, however often it is seen.
        warned = [json.loads(r.getMessage()) for r in caplog.records if "cert_expiry_warning" in r.getMessage()]
        assert sorted(w["account"] for w in warned if w["kind"] == "client") == ["alpha", "beta"]

        # The CLI reads the admin endpoint: a table sorted by expiry, --within, --json; directly,
        # whatever proxy the environment names (a closed port here).
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{closed_port()}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        admin = f"http://127.0.0.1:{info.admin_address.port}"  # type: ignore[union-attr]
        code, table = await run(cli, "certs", admin, "--within", "7d")
        assert code == 0
        assert "alpha" in table and "beta" not in table and "gamma" not in table
        code, out = await run(cli, "certs", admin, "--json")
        assert [c["account"] for c in json.loads(out)["certificates"] if c["kind"] == "client"] == [
            "alpha", "beta", "gamma"
        ]
        snapshot = tmp_path / "snapshot.json"
        snapshot.write_text(out)

        # A config that drops CA B: the preview names exactly gamma, and exits 1.
        dropped = world.config(f"dropped-{anyio_backend}.toml", ["ca-a.pem"])
        code, out = await run(cli, "preview", "--config", str(dropped), "--against", str(snapshot))
        assert code == 1, out
        assert "locked out now: gamma" in out
        assert "accepted as gamma -> refused: untrusted" in out
        assert "alpha" not in out and "beta" not in out
        # The same, straight from the admin endpoint.
        code, out = await run(cli, "preview", "--config", str(dropped), "--against", admin)
        assert code == 1 and "locked out now: gamma" in out

        # reload_guard: the running config stays, gamma still gets in, the refusal is counted and logged.
        config.write_text(dropped.read_text())
        assert info.state.reload() is False
        assert info.state.metrics.get("mtlscore_reloads_total", result="refused") == 1
        assert await run(world.call, port, "gamma") == 200
        logged = [json.loads(r.getMessage()) for r in caplog.records if '"mtls_preview"' in r.getMessage()]
        assert [line["account"] for line in logged] == ["gamma"]
        # A config that locks nobody out is applied.
        config.write_text(world.config(f"same-{anyio_backend}.toml", ["ca-b.pem", "ca-a.pem"]).read_text())
        assert info.state.reload() is True


def test_preview_at_a_future_time_lists_the_expired_certificate(world: World, tmp_path: Path) -> None:
    """``--chains DIR`` with ``--at`` past alpha's notAfter: alpha is expired then, nobody today."""
    chains = tmp_path / "chains"
    chains.mkdir()
    for account in CLIENTS:
        (chains / f"{account}.pem").write_bytes((world.dir / f"{account}.pem").read_bytes())
    config = world.config("future.toml", ["ca-a.pem", "ca-b.pem"])
    later = (world.not_after["alpha"] + timedelta(days=1)).strftime("%Y-%m-%d")
    code, out = cli("preview", "--config", str(config), "--chains", str(chains), "--current", str(config),
                    "--at", later)
    assert code == 1, out
    assert f"locked out {later} 00:00: alpha" in out
    assert "accepted as alpha -> refused: expired" in out
    assert "locked out now" not in out
    code, out = cli("preview", "--config", str(config), "--chains", str(chains), "--current", str(config))
    assert code == 0 and "nobody would be locked out" in out


def test_sweep_warns_once_about_the_trust_config_and_clients_not_seen_since(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The reload poll's sweep: an anchor's activation window ending within the horizon is warned
    once, as is a client that came within it without being seen again; at most every minute."""
    from mtlscore.runtimes.state import SWEEP_INTERVAL

    ends = (datetime.now(UTC) + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = world.config("sweep.toml", ["ca-a.pem"], expiry_warning_days=15)
    text = config.read_text().replace('anchors = ["ca-a.pem"]', f'anchors = [{{ path = "ca-a.pem", not_after = "{ends}" }}]')
    config.write_text(text)
    state = GatewayState.from_config_file(config)
    caplog.set_level(logging.WARNING, logger="mtlscore.gateway")

    def warned() -> list[tuple[str, str]]:
        lines = [json.loads(r.getMessage()) for r in caplog.records if "cert_expiry_warning" in r.getMessage()]
        caplog.clear()
        return [(w["kind"], w["subject"]) for w in lines]

    state.sweep(0.0)
    assert warned() == [("anchor", "CN=Radar CA A [ca-a.pem]")]
    state.sweep(SWEEP_INTERVAL + 1)
    assert warned() == []
    # beta (20 days left) is outside a 15-day horizon when seen; ten days on, the sweep warns.
    from mtlscore.x509.cert import load_certificates

    chain = tuple(load_certificates((world.dir / "beta.pem").read_bytes()))
    verdict = state.snapshot.gateway.validator.validate(list(chain), at=datetime.now(UTC))
    assert verdict.ok, verdict.detail
    from mtlscore.gateway.events import Decision

    state.record(Decision("answer", 200, None, "", account="beta"), chain, verdict)
    assert warned() == []
    state.sweep(2 * SWEEP_INTERVAL + 2, at=datetime.now(UTC) + timedelta(days=10))
    assert warned() == [("client", "CN=beta-client")]
    state.sweep(3 * SWEEP_INTERVAL + 3, at=datetime.now(UTC) + timedelta(days=11))
    assert warned() == []


@pytest.mark.anyio
async def test_radar_file_keeps_the_record_across_a_restart(world: World, anyio_backend: str, tmp_path: Path) -> None:
    record = tmp_path / "radar.json"
    config = world.config(f"kept-{anyio_backend}.toml", ["ca-a.pem", "ca-b.pem"], radar_file=str(record))
    async with gateway(config, anyio_backend) as info:
        assert await run(world.call, info.address.port, "beta") == 200
        assert await run(world.call, info.address.port, "beta") == 200
    # Written at shutdown (here: cancelled from outside), read at the next start.
    assert [c["account"] for c in json.loads(record.read_text())["certificates"] if c["kind"] == "client"] == ["beta"]
    async with gateway(config, anyio_backend) as info:
        status, body = await run(admin_get, info, "/certs")
        clients = [c for c in json.loads(body)["certificates"] if c["kind"] == "client"]
        assert [(c["account"], c["count"]) for c in clients] == [("beta", 2)]
        # The restored chain replays: the preview of a config without CA A names beta.
        dropped = world.config(f"kept-dropped-{anyio_backend}.toml", ["ca-b.pem"])
        admin = f"http://127.0.0.1:{info.admin_address.port}"  # type: ignore[union-attr]
        code, out = await run(cli, "preview", "--config", str(dropped), "--against", admin)
        assert code == 1 and "locked out now: beta" in out
    # A damaged file is logged and the gateway starts with an empty record.
    record.write_text("{not json")
    state = GatewayState.from_config_file(config)
    assert len(state.radar) == 0


def test_the_gauges_count_certificates_in_use_only(world: World) -> None:
    """A replaced certificate not seen for radar_active_seconds leaves the gauges (no alert
    forever on a rotated partner), but stays in /certs."""
    from mtlscore.x509.cert import load_certificates

    config = world.config("active.toml", ["ca-a.pem", "ca-b.pem"], radar_active_seconds=86400)
    state = GatewayState.from_config_file(config)
    now = datetime.now(UTC)
    for account, seen in (("alpha", now - timedelta(days=2)), ("beta", now)):
        chain = tuple(load_certificates((world.dir / f"{account}.pem").read_bytes()))
        verdict = state.snapshot.gateway.validator.validate(list(chain), at=seen)
        # Observed directly, at a chosen time (GatewayState.record stamps the present).
        state.radar.observe(chain, verdict, account=account, at=seen)
    in_use = state.expiry_report()
    assert set(in_use.soonest_by_account()) == {"beta"}
    assert "alpha" not in state.render_metrics()[1].decode()
    assert 'account="beta"' in state.render_metrics()[1].decode()
    assert {r.account for r in state.certificates().rows if r.kind == "client"} == {"alpha", "beta"}
    assert {r.kind for r in in_use.rows} >= {"anchor", "client", "intermediate"}
