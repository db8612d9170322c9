"""Allow mode keeps every app-level check: the matrix (mode × certificate × credential) in
docs/gateway.md "Allow mode" is read from the docs and every row is run, on both runtimes,
against a real gateway with Python ssl clients."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_gateway import (  # noqa: F401 - fixtures
    API_KEY,
    Env,
    anyio_backend,
    call,
    env,
    gateway,
    request,
)

from mtlscore.gateway.appauth import hash_api_key
from mtlscore.jwt import issue_bound_token
from mtlscore.x509.cert import parse_certificate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"
IP_LIMITED_KEY = "ip-limited-key-123"
RATE_KEY = "rate-limited-key-456"
CERTS = {"valid": "good", "invalid": "expired", "missing": None}


def matrix() -> list[tuple[str, str, str, int, str]]:
    """(mode, certificate, credential, status, error) for every row of the documented table."""
    section = DOCS.read_text().split("## Allow mode", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| `(\w+)` \| `(\d{3})(?: (\w+))?` \|$", section, flags=re.M)
    return [(m, c, k, int(s), e) for m, c, k, s, e in rows]


def test_the_matrix_is_complete() -> None:
    rows = matrix()
    cells = {(m, c, k) for m, c, k, _, _ in rows}
    assert len(cells) == len(rows) == 2 * 3 * 6  # every mode × certificate × credential, once


def configure(env: Env, name: str, mode: str) -> Path:  # noqa: F811
    config = env.config(name, mode=mode, tls_engine="deferred", reject_at="http")
    config.write_text(config.read_text() + f"""
[[accounts]]
id = "ip-limited-key"
match = {{ cn = "nobody-presents-this" }}
api_key_sha256 = ["{hash_api_key(IP_LIMITED_KEY)}"]
ip_allow = ["10.0.0.0/8"]

[[accounts]]
id = "rate-limited-key"
match = {{ cn = "nor-this" }}
api_key_sha256 = ["{hash_api_key(RATE_KEY)}"]
rate_limit = "2/min"
""")
    return config


def credential(env: Env, name: str, cert: str) -> dict[str, str]:  # noqa: F811
    if name == "none":
        return {}
    if name in ("api_key", "wrong_key", "ip_limited_key"):
        return {"X-API-Key": {"api_key": API_KEY, "wrong_key": "nobody's key", "ip_limited_key": IP_LIMITED_KEY}[name]}
    if name == "token_for_another":
        return {"Authorization": f"Bearer {env.tokens['other']}"}
    # bound_token: bound to the certificate presented (partner-abc's valid one when none is).
    leaf = env.leaves[CERTS[cert] or "good"]
    now = datetime.now(UTC)
    claims = {"iss": "https://as.test", "iat": int(now.timestamp()), "exp": int((now + timedelta(hours=1)).timestamp())}
    return {"Authorization": f"Bearer {issue_bound_token(claims, env.signer, parse_certificate(leaf.der), kid='as')}"}


@pytest.mark.anyio
@pytest.mark.parametrize(("mode", "cert", "cred", "status", "error"), matrix())
async def test_matrix_cell(
    env: Env, anyio_backend: str, mode: str, cert: str, cred: str, status: int, error: str  # noqa: F811
) -> None:
    config = configure(env, f"matrix-{mode}-{anyio_backend}.toml", mode)
    decisions: list[Any] = []
    async with gateway(config, anyio_backend, on_decision=decisions.append) as info:
        got, _, body = await call(request, env, info.address.port, CERTS[cert], headers=credential(env, cred, cert))
    doc = json.loads(body)
    assert (got, doc.get("error", "")) == (status, error), doc
    if status == 200:
        # Let through: the verdict travels as it is; an account only for a valid certificate.
        assert doc["verdict"] == ("accepted" if cert == "valid" else "rejected")
        assert doc["credential"] == ("api_key" if cred == "api_key" else "bound_token")
        assert doc["upstream_headers"].get("X-Mtls-Account") == ("partner-abc" if cert == "valid" else None)
        assert doc["upstream_headers"]["X-Client-Cert-Present"] == ("false" if cert == "missing" else "true")
    # One decision line: the refusal's reason, or (let through) the certificate's verdict.
    verdict_reason = {"valid": "", "invalid": "expired", "missing": "not_provided"}[cert]
    assert [d.reason or "" for d in decisions] == [error or verdict_reason]


@pytest.mark.anyio
async def test_allow_mode_rate_limits_the_credentials_account(env: Env, anyio_backend: str) -> None:  # noqa: F811
    config = configure(env, f"matrix-rate-{anyio_backend}.toml", "allow_invalid_or_missing")
    async with gateway(config, anyio_backend) as info:
        answers = [await call(request, env, info.address.port, None, headers={"X-API-Key": RATE_KEY})
                   for _ in range(3)]
        # Another account's budget is its own.
        other = await call(request, env, info.address.port, None, headers={"X-API-Key": API_KEY})
    assert [a[0] for a in answers] == [200, 200, 429]
    assert json.loads(answers[2][2])["error"] == "rate_limited" and int(answers[2][1]["retry-after"]) >= 1
    assert other[0] == 200
