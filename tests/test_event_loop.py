"""``[server] event_loop``: which loop the asyncio runtime runs on, and what an operator
is told when the one asked for is not installed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtlscore import pki
from mtlscore.cli import main
from mtlscore.reasons import ConfigError
from mtlscore.runtimes import asyncio as asyncio_runtime


def _without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError


def test_asyncio_is_asyncio_s_own_loop() -> None:
    assert asyncio_runtime.event_loop("asyncio") == ("asyncio", None)


def test_trio_runs_its_own_loop_and_refuses_uvloop() -> None:
    # --runtime trio over a file that names a loop: the file's check (settings.py) cannot see it.
    assert asyncio_runtime.event_loop("auto", "trio") == ("trio", None)
    with pytest.raises(ConfigError) as caught:
        asyncio_runtime.event_loop("uvloop", "trio")
    assert caught.value.key == "server.event_loop"


def test_auto_takes_uvloop_when_installed_else_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")
    assert asyncio_runtime.event_loop("auto") == ("uvloop", uvloop.new_event_loop)
    assert asyncio_runtime.event_loop("uvloop") == ("uvloop", uvloop.new_event_loop)
    _without_uvloop(monkeypatch)
    assert asyncio_runtime.event_loop("auto") == ("asyncio", None)


def test_uvloop_asked_for_but_not_installed_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_uvloop(monkeypatch)
    with pytest.raises(ConfigError) as caught:
        asyncio_runtime.event_loop("uvloop")
    assert caught.value.key == "server.event_loop" and "pip install uvloop" in str(caught.value)


def test_run_runs_on_the_loop_the_factory_makes() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert asyncio_runtime.run(which, uvloop.new_event_loop).startswith("uvloop")
    assert asyncio_runtime.run(which, None).startswith("asyncio")


def _config(d: Path, extra: str = "", loop: str | None = "uvloop") -> Path:
    """A gateway config in ``d``; ``loop``: its event_loop line (None: none, the default)."""
    root = pki.root("CN=Loop Root")
    server = root.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"])
    (d / "root.pem").write_bytes(root.pem)
    (d / "server.pem").write_bytes(server.pem)
    (d / "server.key").write_bytes(server.key_pem)
    os.chmod(d / "server.key", 0o600)
    config = d / "mtlscore.toml"
    config.write_text('[trust]\nanchors = ["root.pem"]\n[server]\nlisten = "127.0.0.1:0"\ncertificate = "server.pem"\n'
                      f'key = "server.key"\nreload_poll_seconds = 0\n{extra}'
                      + (f'event_loop = "{loop}"\n' if loop else ""))
    return config


@pytest.mark.parametrize("args", [[], ["--runtime", "trio"]], ids=["uvloop-missing", "trio-from-the-command-line"])
def test_serve_names_the_file_and_key_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    config = _config(tmp_path)
    _without_uvloop(monkeypatch)
    assert main(["serve", "--config", str(config), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(config) in err[0] and "server.event_loop" in err[0], err


def test_workers_say_it_once_before_starting_any(tmp_path: Path) -> None:
    # The parent checks before it forks: one line, not one failed worker after another.
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "uvloop.py").write_text('raise ImportError("uvloop hidden for this test")\n')
    config = _config(tmp_path, "workers = 2\n")
    result = subprocess.run([sys.executable, "-m", "mtlscore", "serve", "--config", str(config), "--quiet"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(hidden)})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert str(config) in line and "server.event_loop" in line and "pip install uvloop" in line, line


def test_a_reload_cannot_change_the_loop_it_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    from mtlscore.runtimes.state import GatewayState

    config = _config(tmp_path, loop=None)
    text = config.read_text()
    state = GatewayState.from_config_file(config)
    assert state.snapshot.gateway.server.event_loop == "auto"  # the default
    config.write_text(text + 'event_loop = "asyncio"\n')
    with caplog.at_level(logging.WARNING, logger="mtlscore.gateway"):
        assert state.reload()
    [line] = [json.loads(r.getMessage()) for r in caplog.records if "restart_required" in r.getMessage()]
    assert line["keys"] == ["server.event_loop"]
