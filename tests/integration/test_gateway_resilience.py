"""One connection's unexpected failure must not take the gateway down (both runtimes)."""

from __future__ import annotations

import ssl
from functools import partial

import anyio
import pytest
from test_gateway import API_KEY, Env, anyio_backend, env, gateway, request  # noqa: F401 - fixtures

from mtlscore.gateway import session as _session

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.mark.anyio
async def test_a_crashing_connection_is_contained(env: Env, anyio_backend: str,  # noqa: F811
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real_init = _session.Session.__init__
    calls = {"n": 0}

    def flaky_init(self: _session.Session, *args: object, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in one connection")
        real_init(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_session.Session, "__init__", flaky_init)
    async with gateway(env.config(), anyio_backend) as info:
        port = info.address.port
        with pytest.raises((ssl.SSLError, OSError, ConnectionError)):
            await anyio.to_thread.run_sync(request, env, port, "good")
        status, _, _ = await anyio.to_thread.run_sync(
            partial(request, env, port, "good", headers={"X-API-Key": API_KEY}))
        assert status == 200
        metrics = info.state.metrics.render()[1].decode()
    assert 'mtlscore_connection_errors_total' in metrics
