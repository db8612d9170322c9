"""`mtlscore demo` runs end to end in a subprocess, in bounded time, and says why for each client."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mtlscore.cli.demo import CASES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_demo_exits_zero_with_every_case() -> None:
    proc = subprocess.run([sys.executable, "-m", "mtlscore", "demo"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for case in CASES:
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(case.name + " "))
        assert line.rstrip().endswith("PASS"), line
        assert (case.expect or "account partner-abc") in line
    assert f"{len(CASES)}/{len(CASES)} clients got the expected outcome" in proc.stdout


def test_demo_json() -> None:
    import json

    proc = subprocess.run(
        [sys.executable, "-m", "mtlscore", "demo", "--json"], capture_output=True, text=True, timeout=60
    )
    rows = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert [r["case"] for r in rows] == [c.name for c in CASES]
    assert all(r["ok"] for r in rows)
    assert rows[0]["got"] == "HTTP 200"


def test_demo_deferred_engine_answers_every_rejection_in_http() -> None:
    import json

    pytest.importorskip("OpenSSL")
    proc = subprocess.run(
        [sys.executable, "-m", "mtlscore", "demo", "--json", "--tls-engine", "deferred"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = json.loads(proc.stdout)
    assert proc.returncode == 0 and all(r["ok"] for r in rows)
    assert all(r["got"].startswith("HTTP ") for r in rows)


def test_demo_keep_writes_what_replays_every_client_with_curl(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 18 item 8: `demo --keep DIR` leaves a token, its signing key and README.txt whose
    curl commands, run as written (the port changed to a free one), replay every client."""
    import json
    import re
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    d = tmp_path / "kept"
    proc = subprocess.run([sys.executable, "-m", "mtlscore", "demo", "--keep", str(d)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("good.token", "other.token", "token-signer.key", "jwks.json", "README.txt", "mtlscore.toml"):
        assert (d / name).is_file(), name
    readme = (d / "README.txt").read_text()
    assert "mtlscore serve --config mtlscore.toml" in readme
    commands = [line for line in readme.splitlines() if line.startswith(("curl ", "printf "))]
    assert len(commands) == len(CASES)
    # Serve the kept configuration as README.txt says, on a free port instead of 8443.
    config = d / "mtlscore.toml"
    config.write_text(config.read_text().replace('listen = "127.0.0.1:8443"', 'listen = "127.0.0.1:0"'))
    serve = subprocess.Popen([sys.executable, "-m", "mtlscore", "serve", "--config", "mtlscore.toml", "--quiet"],
                             cwd=d, stderr=subprocess.PIPE, text=True)
    try:
        assert serve.stderr is not None
        banner = serve.stderr.readline()
        port = re.search(r"https://127\.0\.0\.1:(\d+)", banner)
        assert port, banner

        def replay(command: str) -> subprocess.CompletedProcess[str]:
            command = command.replace("https://localhost:8443/", f"https://localhost:{port.group(1)}/")
            command = command.replace("-connect 127.0.0.1:8443 ", f"-connect 127.0.0.1:{port.group(1)} ")
            command = command.replace("curl ", f"curl --resolve localhost:{port.group(1)}:127.0.0.1 ", 1)
            return subprocess.run(["bash", "-c", command], cwd=d, capture_output=True, text=True, timeout=30)

        for case, command in zip(CASES, commands, strict=True):
            result = replay(command)
            if case.expect is None:
                assert result.returncode == 0, result.stderr
                assert json.loads(result.stdout)["account"] == "partner-abc"
            elif result.returncode == 0:  # an HTTP answer: the JSON reason
                assert json.loads(result.stdout)["error"] == case.expect, (case.name, result.stdout)
            else:  # refused in the handshake: curl (or s_client) names the TLS alert
                assert "alert" in result.stderr.lower(), (case.name, result.stderr)
            if command.startswith("printf "):  # s_client exits 0 after the alert too
                assert "alert bad certificate" in result.stderr + result.stdout, result
        # The signing key mints a new token the gateway accepts, with README.txt's command.
        mint = next(line.strip() for line in readme.splitlines() if line.strip().startswith("python -c"))
        (d / "good.token").write_text("")
        assert subprocess.run(["bash", "-c", mint], cwd=d, timeout=60).returncode == 0
        assert (d / "good.token").read_text().count(".") == 2
        result = replay(commands[0])
        assert result.returncode == 0 and json.loads(result.stdout)["account"] == "partner-abc"
    finally:
        serve.terminate()
        serve.wait(timeout=20)
