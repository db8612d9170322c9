"""The README's quickstart, its five commands run as written (issue 18 item 10).

The install line is checked, not run (the test runs inside the installed package);
`serve` listens on a free port instead of 8443 (the only change), and curl is pointed
at it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- tests/integration/test_quickstart.py runs these five commands -->"


def quickstart() -> list[str]:
    after = README.read_text().split(MARKER, 1)[1]
    match = re.match(r"\s*```sh\n(.*?)```", after, re.S)
    assert match
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_the_quickstart_is_five_commands_at_the_top() -> None:
    text = README.read_text()
    assert text.index(MARKER) < text.index("## The two commands")
    assert "Python ≥ 3.11" in text.split("## Quickstart", 1)[0]
    commands = quickstart()
    assert len(commands) == 5
    assert commands[0].startswith("python -m pip install '.[gateway]'")


def test_the_quickstart_runs(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    install, demo, check, serve, curl = quickstart()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60)

    made = sh(demo)
    assert made.returncode == 0, made.stdout + made.stderr
    checked = sh(check)
    assert checked.returncode == 0 and checked.stdout.startswith("ACCEPTED"), checked.stdout + checked.stderr
    config = tmp_path / "pki" / "mtlscore.toml"
    assert 'listen = "127.0.0.1:8443"' in config.read_text()
    config.write_text(config.read_text().replace('listen = "127.0.0.1:8443"', 'listen = "127.0.0.1:0"'))
    assert serve.endswith(" &")
    proc = subprocess.Popen(["bash", "-c", f"exec {serve[:-2]}"], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        port = re.search(r"https://127\.0\.0\.1:(\d+)", banner)
        assert port, banner
        command = curl.replace("https://localhost:8443/", f"https://localhost:{port.group(1)}/")
        command = command.replace("curl ", f"curl -sS --resolve localhost:{port.group(1)}:127.0.0.1 ", 1)
        answered = sh(command)
        assert answered.returncode == 0, answered.stderr
        assert json.loads(answered.stdout)["account"] == "partner-abc"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
