"""``[server] reject_at``: reject_invalid fails the TLS handshake with the alert matching the
reason (mtlscore.gateway.handshake), read by ``openssl s_client``; both runtimes from one body.

Also: the decision log still carries reason and detail; ``reject_at = "http"`` answers the
same clients with a 403; and the revocation-fetching fallback (a chain whose CRL is not
cached yet is decided after the handshake, with the fetch; once cached, in the handshake).
"""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from _gateway import FileServer
from test_gateway import (  # noqa: F401 - fixtures
    API_KEY,
    Env,
    anyio_backend,
    call,
    env,
    gateway,
    request,
)
from test_gateway_revocation import gateway as revocation_gateway
from test_gateway_revocation import world  # noqa: F401 - fixtures

from mtlscore import pki
from mtlscore.gateway.handshake import HANDSHAKE_ALERTS, handshake_alert
from mtlscore.proxy.headers import lb_error_name
from mtlscore.reasons import Reason

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# OpenSSL's text and number for each alert (ssl/ssl_stat.c SSL_alert_desc_string_long; RFC 8446 §6).
ALERT_TEXT = {
    "certificate_expired": ("certificate expired", 45),
    "certificate_revoked": ("certificate revoked", 44),
    "unknown_ca": ("unknown ca", 48),
    "unsupported_certificate": ("unsupported certificate", 43),
    "bad_certificate": ("bad certificate", 42),
    "certificate_unknown": ("certificate unknown", 46),
}

# client certificate -> the reason the gateway logs (the alert follows from the table).
CASES = {
    "expired": Reason.EXPIRED,
    "revoked": Reason.REVOKED,
    "unknown": Reason.UNTRUSTED,
    "wrong-eku": Reason.INVALID_EKU,
    "unmapped": Reason.IDENTITY_UNMAPPED,
}


@pytest.fixture(scope="module")
def more(env: Env) -> Env:  # noqa: F811 - the fixture
    """Two more clients in ``env``'s PKI: a serverAuth-only leaf and one no account maps."""
    for name, leaf in {
        "wrong-eku": env.issuing.leaf("CN=partner-abc-prod-client,OU=RiskOSIntegration,O=PartnerABC",
                                      eku=[pki.SERVER_AUTH]),
        "unmapped": env.issuing.leaf("CN=nobody,O=Elsewhere"),
    }.items():
        (env.dir / f"{name}.pem").write_bytes(leaf.chain_pem)
        (env.dir / f"{name}.key").write_bytes(leaf.key_pem)
    return env


def s_client(e: Env, port: int, cert: str | None, *extra: str) -> subprocess.CompletedProcess[bytes]:
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
            "-CAfile", str(e.dir / "server-ca.pem"), "-quiet", *extra]
    if cert is not None:
        args += ["-cert", str(e.dir / f"{cert}.pem"), "-key", str(e.dir / f"{cert}.key"),
                 "-cert_chain", str(e.dir / f"{cert}.pem")]
    req = f"GET / HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {API_KEY}\r\nConnection: close\r\n\r\n".encode()
    return subprocess.run(args, input=req, capture_output=True, timeout=20)


def test_the_cases_cover_every_alert() -> None:
    covered = {handshake_alert(r) for r in CASES.values()} | {handshake_alert(Reason.REVOCATION_UNAVAILABLE)}
    assert covered == set(ALERT_TEXT) == set(HANDSHAKE_ALERTS.values()) | {"bad_certificate"}


@pytest.mark.anyio
@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
async def test_handshake_fails_with_the_reasons_alert(
    more: Env, anyio_backend: str, version: str  # noqa: F811
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    pytest.importorskip("OpenSSL")
    decisions: list[Any] = []
    config = more.config(f"handshake-{anyio_backend}.toml")  # reject_invalid, reject_at default
    async with gateway(config, anyio_backend, on_decision=decisions.append) as info:
        port = info.address.port
        good = await call(s_client, more, port, "good", version)
        got = {cert: await call(s_client, more, port, cert, version) for cert in CASES}
        none = await call(s_client, more, port, None, version)
        metrics = info.state.metrics
    assert good.stdout.startswith(b"HTTP/1.1 200"), good.stderr
    for cert, reason in CASES.items():
        text, number = ALERT_TEXT[handshake_alert(reason)]
        out = got[cert]
        assert b"HTTP/1.1" not in out.stdout, cert  # no HTTP answer: the handshake failed
        assert f"alert {text}".encode() in out.stderr and f"alert number {number}".encode() in out.stderr, (
            cert, out.stderr)
        # Both names, mtlscore's and the load balancer's, in the metric labels (docs/gateway.md "Error names").
        lb = lb_error_name(reason.value)
        assert lb and metrics.get("mtlscore_handshake_failures_total", reason=reason.value, lb_error=lb) == 1
        assert metrics.get("mtlscore_decisions_total", outcome="deny", reason=reason.value, lb_error=lb) == 1
    # No certificate at all: OpenSSL's own alert (TLS 1.3 certificate_required; TLS 1.2 handshake_failure).
    assert b"HTTP/1.1" not in none.stdout
    assert (b"certificate required" if version == "-tls1_3" else b"handshake failure") in none.stderr
    # The decision log still says why, with the detail and the client's thumbprint.
    denied = {d.reason: d for d in decisions if d.outcome == "deny"}
    assert set(denied) == {r.value for r in CASES.values()} | {"not_provided"}
    for reason in CASES.values():
        d = denied[reason.value]
        assert d.status is None and d.thumbprint and d.detail.startswith("TLS handshake failed: ")
        assert f"(alert {handshake_alert(reason)})" in d.detail
        assert d.as_log()["lb_error"] == lb_error_name(reason.value)
    assert "expired" in denied["expired"].detail and "revoked" in denied["revoked"].detail


@pytest.mark.anyio
async def test_reject_at_http_answers_the_same_clients_with_403(more: Env, anyio_backend: str) -> None:  # noqa: F811
    pytest.importorskip("OpenSSL")
    config = more.config(f"http-{anyio_backend}.toml", tls_engine="deferred", reject_at="http")
    async with gateway(config, anyio_backend) as info:
        for cert, reason in CASES.items():
            status, _, body = await call(request, more, info.address.port, cert)
            assert (status, json.loads(body)["error"]) == (403, reason.value), cert


@pytest.mark.anyio
async def test_hard_fail_without_revocation_data_is_certificate_unknown(
    more: Env, anyio_backend: str  # noqa: F811
) -> None:
    """Nothing is known against the certificate, its status just cannot be learnt (no CRL
    for its CA, no fetching, hard-fail): certificate_unknown, logged revocation_unavailable."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    pytest.importorskip("OpenSSL")
    config = more.config(f"hard-{anyio_backend}.toml")
    config.write_text(config.read_text().replace('crls = ["issuing.crl"]', 'mode = "hard"'))
    async with gateway(config, anyio_backend) as info:
        out = await call(s_client, more, info.address.port, "good")
        metrics = info.state.metrics
    assert b"HTTP/1.1" not in out.stdout
    assert b"alert certificate unknown" in out.stderr and b"alert number 46" in out.stderr, out.stderr
    assert metrics.get("mtlscore_handshake_failures_total", reason="revocation_unavailable") == 1


def get_status(d: Path, port: int, cert: str) -> tuple[int, str] | str:
    """GET / as ``cert``: (status, error) or the TLS error's text."""
    ctx = ssl.create_default_context(cafile=str(d / "server-ca.pem"))
    ctx.load_cert_chain(str(d / f"{cert}.pem"), str(d / f"{cert}.key"))
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=15)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}").get("error", "")
    except (ssl.SSLError, ConnectionError) as exc:
        return str(exc)
    finally:
        conn.close()


@pytest.mark.anyio
async def test_fetching_falls_back_to_http_until_the_crl_is_cached(
    world: tuple[Path, FileServer], anyio_backend: str  # noqa: F811
) -> None:
    """A verify callback cannot wait for a fetch: the first client under a CA whose CRL is
    not cached is decided after the handshake (403); the fetch fills the cache, and the
    next one is refused in its handshake with certificate_revoked."""
    d, crls = world
    config = d / f"handshake-fetch-{anyio_backend}.toml"
    config.write_text((d / "mtlscore.toml").read_text().replace('reject_at = "http"', ""))
    before = len(crls.hits)
    async with revocation_gateway(config, anyio_backend) as info:
        port = info.address.port
        first = await anyio.to_thread.run_sync(partial(get_status, d, port, "revoked"))
        second = await anyio.to_thread.run_sync(partial(get_status, d, port, "revoked"))
        good = await anyio.to_thread.run_sync(partial(get_status, d, port, "good"))
        metrics = info.state.metrics
    assert first == (403, "revoked")
    assert isinstance(second, str) and "CERTIFICATE_REVOKED" in second.upper().replace(" ", "_"), second
    assert good == (200, "")
    assert crls.hits[before:] == ["/issuing.crl"]  # fetched once, at HTTP time
    assert metrics.get("mtlscore_handshake_failures_total", reason="revoked") == 1
    assert metrics.get("mtlscore_decisions_total", outcome="deny", reason="revoked") == 2
