"""Issue 15's attacks, quick versions, on both runtimes from one test body.

The attackers are loadtest/_attacks.py's clients, run with the upstream
(loadtest/_setup.py's) in an asyncio loop of their own thread; the gateway runs
in-process on the backend under test. Assertions are on outcomes (closed,
refused, served), never on times; each attacker's own loop is bounded.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_gateway import API_KEY, Env, anyio_backend, env, gateway  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from loadtest import _attacks as attacks  # noqa: E402
from loadtest._setup import Upstream  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PROBE = b"X-API-Key: " + API_KEY.encode()


def attacker_address() -> str:
    """Attackers come from 127.0.0.2 (Linux routes all of 127/8), the normal client from 127.0.0.1."""
    try:
        from . import _nginx as peers
    except ImportError:  # tests/integration is not a package
        import _nginx as peers  # type: ignore[no-redef]
    if not peers.loopback_alias_usable("127.0.0.2"):
        pytest.skip("cannot bind 127.0.0.2")
    return "127.0.0.2"


async def in_thread(scenario: Callable[[Upstream], Awaitable[Any]], upstream: Upstream) -> Any:
    """Run ``scenario(upstream)`` in a fresh asyncio loop in a thread (whatever the test's backend)."""

    async def main() -> Any:
        try:
            return await scenario(upstream)
        finally:
            await upstream.stop()

    return await anyio.to_thread.run_sync(asyncio.run, main())


async def started_upstream() -> tuple[Upstream, socket.socket, int]:
    """An upstream's socket, bound now and held (its port goes in the config), served later in
    the attack thread. Held, not closed and bound again: meanwhile another socket (a client's
    ephemeral port) could take the port, and the upstream would fail with EADDRINUSE."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return Upstream(), s, int(s.getsockname()[1])


async def probe(port: int, env: Env) -> float | None:  # noqa: F811 - the fixture, passed on
    return await attacks.probe(port, env.client_context("good"), headers=PROBE)


@pytest.mark.anyio
async def test_slowloris_on_the_head_is_cut(env: Env, anyio_backend: str) -> None:  # noqa: F811
    """Finding 3: a head trickled a byte at a time gets 408 at the head deadline; a normal client is served."""
    pytest.importorskip("OpenSSL")
    source = attacker_address()
    config = env.config(f"loris-{anyio_backend}.toml", mode="allow_invalid_or_missing",
                        header_timeout_seconds=1)
    anonymous = env.client_context(None)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port

        async def scenario(_: Upstream) -> tuple[list[str], float | None]:
            lorises = [attacks.slowloris(port, anonymous, source=source, interval=0.2, duration=20)
                       for _ in range(10)]
            *outcomes, served = await asyncio.gather(*lorises, probe(port, env))
            return outcomes, served

        outcomes, served = await in_thread(scenario, Upstream())
    assert outcomes == ["closed:408"] * 10
    assert served is not None


@pytest.mark.anyio
async def test_a_slow_body_is_cut(env: Env, anyio_backend: str) -> None:  # noqa: F811
    """Finding 3: a body below the minimum rate gets 408 at its deadline, and its upstream request is dropped.

    Allow mode lets a client without a certificate through to the body only with a
    credential (issue 19: the app-level checks stay), hence the API key."""
    pytest.importorskip("OpenSSL")
    upstream, up_sock, up_port = await started_upstream()
    config = env.config(f"slowbody-{anyio_backend}.toml", mode="allow_invalid_or_missing",
                        upstream=f"http://127.0.0.1:{up_port}", body_timeout_seconds=1,
                        min_body_bytes_per_second=1000)
    anonymous = env.client_context(None)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port

        async def scenario(up: Upstream) -> list[str]:
            await up.start(up_sock)
            return list(await asyncio.gather(*(attacks.slow_body(port, anonymous, interval=0.2, duration=20,
                                                                     headers=PROBE)
                                               for _ in range(5))))

        outcomes = await in_thread(scenario, upstream)
    assert outcomes == ["closed:408"] * 5


@pytest.mark.anyio
async def test_a_client_that_never_reads_is_cut_with_its_upstream(env: Env, anyio_backend: str) -> None:  # noqa: F811
    """Finding 4: a client asking for a big answer and not reading: its connection and its upstream's are closed."""
    upstream, up_sock, up_port = await started_upstream()
    config = env.config(f"nonreader-{anyio_backend}.toml", upstream=f"http://127.0.0.1:{up_port}",
                        write_timeout_seconds=1)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        ctx = env.client_context("good")

        async def scenario(up: Upstream) -> tuple[list[str], float | None, int]:
            await up.start(up_sock)
            readers = [attacks.non_reader(port, ctx, size=64_000_000, duration=8, headers=PROBE) for _ in range(3)]
            *outcomes, served = await asyncio.gather(*readers, probe(port, env))
            return outcomes, served, up.broken

        outcomes, served, broken = await in_thread(scenario, upstream)
        timeouts = info.state.metrics.get("mtlscore_decisions_total", outcome="error", reason="write_timeout")
    assert outcomes == ["closed"] * 3
    assert broken == 3  # each upstream connection was closed mid-answer
    assert timeouts == 3
    assert served is not None


@pytest.mark.anyio
async def test_when_every_slot_is_busy_a_new_connection_is_refused_at_once(
    env: Env, anyio_backend: str  # noqa: F811
) -> None:
    """Finding 5: with every slot busy (requests in flight), a new connection is closed at once, not queued."""
    upstream, up_sock, up_port = await started_upstream()
    config = env.config(f"busy-{anyio_backend}.toml", max_connections=4, upstream=f"http://127.0.0.1:{up_port}",
                        keepalive_timeout_seconds=1)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        metrics = info.state.metrics
        ctx = env.client_context("good")

        async def scenario(up: Upstream) -> tuple[float | None, list[str]]:
            await up.start(up_sock)
            held = [asyncio.ensure_future(attacks.busy(port, ctx, headers=PROBE, duration=60)) for _ in range(4)]
            while up.requests < 4:  # all four are in flight upstream
                await asyncio.sleep(0.01)
            # Queued behind them (as before), it would wait for one of them to end.
            refused = await probe(port, env)
            await up.stop()  # the upstream goes: the four get their 502 and go
            return refused, list(await asyncio.gather(*held))

        refused, ended = await in_thread(scenario, upstream)
    assert refused is None
    assert metrics.get("mtlscore_connections_refused_total", limit="max_connections") == 1
    assert metrics.get("mtlscore_connections_shed_total") == 0
    assert ended == ["closed:502"] * 4


@pytest.mark.anyio
async def test_when_every_slot_is_waiting_the_longest_waiting_is_shed(
    env: Env, anyio_backend: str  # noqa: F811
) -> None:
    """Finding 5: idle sockets hold every slot: a normal client gets the slot of the one that waited longest."""
    source = attacker_address()
    config = env.config(f"shed-{anyio_backend}.toml", max_connections=4, handshake_timeout_seconds=60)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        metrics = info.state.metrics

        async def scenario(_: Upstream) -> tuple[float | None, list[str]]:
            held = []
            for n in range(1, 5):  # one at a time: the first is the one that waited longest
                held.append(asyncio.ensure_future(attacks.idle(port, None, source=source, duration=30)))
                while metrics.get("mtlscore_connections_total") < n:
                    await asyncio.sleep(0.01)
            served = await probe(port, env)
            first = await held[0]  # shed: the gateway closed it
            for h in held[1:]:
                h.cancel()
            await asyncio.gather(*held[1:], return_exceptions=True)
            return served, [first]

        served, first = await in_thread(scenario, Upstream())
    assert served is not None
    assert first == ["closed"]
    assert metrics.get("mtlscore_connections_shed_total") == 1
    assert metrics.get("mtlscore_connections_refused_total", limit="max_connections") == 0


@pytest.mark.anyio
async def test_one_address_cannot_take_every_slot_in_lenient_mode(env: Env, anyio_backend: str) -> None:  # noqa: F811
    """Finding 5: anonymous connections from one address stop at the (lenient) per-address limit."""
    pytest.importorskip("OpenSSL")
    source = attacker_address()
    config = env.config(f"per-address-{anyio_backend}.toml", mode="allow_invalid_or_missing")
    assert info_limit(config) == 64  # the lenient default
    anonymous = env.client_context(None)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port

        async def scenario(_: Upstream) -> tuple[list[str], float | None]:
            flood = [attacks.idle(port, anonymous, source=source, duration=3) for _ in range(70)]
            *outcomes, served = await asyncio.gather(*flood, probe(port, env))
            return outcomes, served

        outcomes, served = await in_thread(scenario, Upstream())
        refused = info.state.metrics.get("mtlscore_connections_refused_total", limit="max_connections_per_address")
    assert refused == 6 and outcomes.count("refused") + outcomes.count("closed") >= 6
    assert served is not None


def info_limit(config: Path) -> int:
    from mtlscore.config import load_config

    return int(load_config(config).server.address_limit)


@pytest.mark.anyio
async def test_keepalive_connections_end_at_their_maximum_age(env: Env, anyio_backend: str) -> None:  # noqa: F811
    """Finding 8: past max_connection_age a keep-alive connection closes after its response, so a
    trust reload reaches its client (it reconnects and meets the new trust)."""
    import http.client
    import ssl
    from functools import partial

    from test_gateway import request

    config = env.config(f"age-{anyio_backend}.toml", max_connection_age_seconds=0.001)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        conn = http.client.HTTPSConnection("localhost", port, context=env.client_context("good"), timeout=10)
        try:
            status, headers, _ = await anyio.to_thread.run_sync(
                partial(request, env, port, "good", headers={"X-API-Key": API_KEY}, conn=conn))
            assert (status, headers["connection"]) == (200, "close")
            # The partner's root is removed; the client's next request needs a new connection.
            text = env.config(f"age-next-{anyio_backend}.toml", anchors="other-root.pem").read_text()
            config.write_text(text.replace("max_connection_age_seconds", "# age"))
            assert info.state.reload()
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await anyio.to_thread.run_sync(
                    partial(request, env, port, "good", headers={"X-API-Key": API_KEY}, conn=conn))
        finally:
            conn.close()
        assert info.state.metrics.get("mtlscore_connections_total") == 2  # it had to reconnect


@pytest.mark.anyio
async def test_the_admin_listener_cuts_a_trickled_head(env: Env, anyio_backend: str) -> None:  # noqa: F811
    """The metrics listener keeps the gateway's head deadline too (it read forever, 10 s per byte)."""
    config = env.config(f"admin-loris-{anyio_backend}.toml", admin_listen="127.0.0.1:0", header_timeout_seconds=1)
    async with gateway(config, anyio_backend) as info:
        assert info.admin_address is not None
        admin = info.admin_address.port

        async def scenario(_: Upstream) -> tuple[str, float | None]:
            loris = await attacks.slowloris(admin, None, interval=0.2, duration=20)
            return loris, await attacks.probe(admin, None, timeout=10, target=b"/healthz")

        loris, scraped = await in_thread(scenario, Upstream())
    assert loris == "closed"
    assert scraped is not None
