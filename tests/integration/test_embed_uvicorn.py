"""The "Embedded in uvicorn" instructions (docs/guide.md, linked from the README), for uvicorn
and for hypercorn, run as they are, with the real server and real curl.

Issue 18, item 3. Before: the README said to pass mtlscore's context as uvicorn's
``ssl=`` (``uvicorn.Config(app, ssl=ctx)`` is a TypeError), and with uvicorn's own
``ssl_*`` settings OpenSSL dropped expired, wrong-EKU and unknown-CA clients during
the handshake: curl saw "Empty reply from server", nothing was logged. The
block is extracted and run unchanged but for its port (8443 -> 0: the test binds
an ephemeral port); every client must get its JSON reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mtlscore import pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"
MARKERS = {
    "uvicorn": "<!-- tests/integration/test_embed_uvicorn.py runs this block as it is -->",
    "hypercorn": "<!-- tests/integration/test_embed_uvicorn.py runs this hypercorn block as it is -->",
}
DN = "CN=partner-abc-prod-client,O=PartnerABC"

pytest.importorskip("uvicorn")
pytest.importorskip("OpenSSL")
if shutil.which("curl") is None:  # pragma: no cover - the CI installs curl
    pytest.skip("curl not installed", allow_module_level=True)


def readme_block(server: str) -> str:
    text = GUIDE.read_text()
    after = text.split(MARKERS[server], 1)[1]
    match = re.match(r"\s*```python\n(.*?)```", after, re.S)
    assert match, "the guide's uvicorn block follows its marker"
    return match.group(1)


@pytest.fixture(scope="module", params=["uvicorn", "hypercorn"])
def served(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Path, int, subprocess.Popen[str]]]:
    server_name = str(request.param)
    pytest.importorskip(server_name)
    d = tmp_path_factory.mktemp(f"embed-{server_name}")
    now = datetime.now(UTC)
    root = pki.root("CN=Partner Root CA,O=PartnerABC", now=now)
    issuing = root.intermediate("CN=Partner Issuing CA,O=PartnerABC")
    clients = {
        "good": issuing.leaf(DN),
        "expired": issuing.leaf(DN, not_before=now - timedelta(days=400), not_after=now - timedelta(days=1)),
        "wrong-eku": issuing.leaf(DN, eku=[pki.SERVER_AUTH]),
        "unknown-ca": pki.root("CN=Someone Else Root CA", now=now).leaf(DN),
    }
    server_ca = pki.root("CN=Embed Server CA", now=now)
    server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"])
    (d / "partner-ca.pem").write_bytes(root.pem)
    (d / "server-ca.pem").write_bytes(server_ca.pem)
    (d / "server.pem").write_bytes(server.pem)
    (d / "server.key").write_bytes(server.key_pem)
    for name, leaf in clients.items():
        (d / f"{name}.pem").write_bytes(leaf.chain_pem)  # leaf + issuing CA, as a client presents
        (d / f"{name}.key").write_bytes(leaf.key_pem)
    (d / "leaf-only.pem").write_bytes(clients["good"].pem)  # the leaf without its issuing CA
    (d / "leaf-only.key").write_bytes(clients["good"].key_pem)
    code = readme_block(server_name)
    port_setting = "port=8443" if server_name == "uvicorn" else '"127.0.0.1:8443"'
    assert code.count(port_setting) == 1
    (d / "app.py").write_text(code.replace(port_setting, port_setting.replace("8443", "0")))
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=d, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    port = 0
    for line in proc.stderr:
        # uvicorn prints http://: it listens on plain TCP, the protocol does the TLS.
        if m := re.search(r"(?:Uvicorn running|Running) on https?://127\.0\.0\.1:(\d+)", line):
            port = int(m.group(1))
            break
    assert port, "uvicorn did not start"
    try:
        yield d, port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def curl(d: Path, port: int, client: str, scheme: str = "https") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", "--resolve", f"localhost:{port}:127.0.0.1",
         "--cacert", str(d / "server-ca.pem"), "--cert", str(d / f"{client}.pem"), "--key", str(d / f"{client}.key"),
         f"{scheme}://localhost:{port}/"],
        capture_output=True, text=True, timeout=20,
    )


def test_a_good_client_reaches_the_app(served: tuple[Path, int, subprocess.Popen[str]]) -> None:
    d, port, _ = served
    result = curl(d, port, "good")
    assert result.returncode == 0, result.stderr
    body, status = result.stdout.rsplit("\n", 1)
    assert (status, body) == ("200", f"hello {DN}\n")


@pytest.mark.parametrize(("client", "reason"), [
    ("expired", "expired"),
    ("wrong-eku", "invalid_eku"),
    ("unknown-ca", "untrusted"),
    ("leaf-only", "untrusted"),  # the issuing CA is neither sent nor configured
])
def test_every_bad_certificate_gets_its_json_reason(
    served: tuple[Path, int, subprocess.Popen[str]], client: str, reason: str
) -> None:
    d, port, _ = served
    result = curl(d, port, client)
    assert result.returncode == 0, result.stderr  # not "Empty reply from server" (52) nor a reset (56)
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "403"
    answer = json.loads(body)
    assert answer["error"] == reason


def test_a_handshake_openssl_refuses_is_logged_with_its_reason(
    served: tuple[Path, int, subprocess.Popen[str]],
) -> None:
    d, port, proc = served
    result = curl(d, port, "good", scheme="http")  # plain HTTP on the TLS port
    assert result.returncode != 0 or not result.stdout.startswith("hello")
    assert proc.stderr is not None
    for line in proc.stderr:
        if "tls_handshake_failed" in line:
            logged = json.loads(line)
            break
    assert logged["event"] == "tls_handshake_failed"
    assert logged["reason"] == "tls_protocol_error" and logged["peer"].startswith("127.0.0.1:")
    assert logged["lb_error"] is None  # not a certificate problem: the load balancer has no name for it
    assert logged["detail"]
