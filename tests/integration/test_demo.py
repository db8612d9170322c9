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
