"""`mtlscore check --fetch` (CRLs over HTTP from a loopback server) and `--ocsp-response FILE`."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ocsp_helpers import ocsp_response

from mtlscore import pki
from mtlscore.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
AT = pki.NOW.isoformat()


@pytest.fixture
def crl_server() -> Iterator[tuple[int, dict[str, bytes]]]:
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = files.get(self.path, b"")
            self.send_response(200 if self.path in files else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], files
    server.shutdown()
    server.server_close()


def test_fetch_rejects_revoked_and_accepts_good(tmp_path: Path, crl_server) -> None:
    port, files = crl_server
    root = pki.root()
    inter = root.intermediate(crl_urls=[f"http://127.0.0.1:{port}/root.crl"])
    url = f"http://127.0.0.1:{port}/inter.crl"
    good, revoked = inter.leaf("CN=good", crl_urls=[url]), inter.leaf("CN=bad", crl_urls=[url])
    files["/inter.crl"] = inter.crl(revoked=[revoked])
    files["/root.crl"] = root.crl()
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "good.pem").write_bytes(good.chain_pem)
    (tmp_path / "bad.pem").write_bytes(revoked.chain_pem)
    base = [sys.executable, "-m", "mtlscore", "check", "--json", "--at", AT, "--fetch",
            "--trust", str(tmp_path / "root.pem")]
    bad = subprocess.run([*base, str(tmp_path / "bad.pem")], capture_output=True, timeout=30)
    assert bad.returncode == 1, bad.stderr
    assert json.loads(bad.stdout)["reason"] == "revoked"
    ok = subprocess.run([*base, str(tmp_path / "good.pem")], capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stdout
    # Without --fetch nothing is fetched: soft-fail accepts the revoked leaf.
    assert main(["check", "--at", AT, "--trust", str(tmp_path / "root.pem"), str(tmp_path / "bad.pem")]) == 0


def test_fetch_hard_fail_when_server_down(tmp_path: Path) -> None:
    root = pki.root()
    leaf = root.leaf(crl_urls=["http://127.0.0.1:9/none.crl"])  # discard port: refused
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "leaf.pem").write_bytes(leaf.pem)
    (tmp_path / "hard.toml").write_text('[trust]\nanchors = ["root.pem"]\n[revocation]\nmode = "hard"\n')
    args = ["check", "--json", "--at", AT, "--fetch", "--fetch-timeout", "2",
            "--config", str(tmp_path / "hard.toml"), str(tmp_path / "leaf.pem")]
    assert main(args) == 1


@pytest.mark.parametrize(("status", "code", "reason"), [("revoked", 1, "revoked"), ("good", 0, None)])
def test_ocsp_response_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], status: str, code: int,
                            reason: str | None) -> None:
    root = pki.root()
    leaf = root.leaf(ocsp_urls=["http://127.0.0.1:9/ocsp"])
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "leaf.pem").write_bytes(leaf.pem)
    (tmp_path / "resp.der").write_bytes(ocsp_response(leaf, root, status=status))
    (tmp_path / "hard.toml").write_text('[trust]\nanchors = ["root.pem"]\n[revocation]\nmode = "hard"\n')
    got = main(["check", "--json", "--at", AT, "--config", str(tmp_path / "hard.toml"),
                "--ocsp-response", str(tmp_path / "resp.der"), str(tmp_path / "leaf.pem")])
    out = json.loads(capsys.readouterr().out)
    assert (got, out["reason"]) == (code, reason), out["detail"]


def test_ocsp_response_unreadable_is_usage_error(tmp_path: Path) -> None:
    root = pki.root()
    (tmp_path / "leaf.pem").write_bytes(root.leaf().pem)
    assert main(["check", "--ocsp-response", str(tmp_path / "missing.der"), str(tmp_path / "leaf.pem")]) == 2
