"""``[shared]`` against a real redis-server (issue 20 item 2), started and stopped here, on a unix
socket; gateways as real ``mtlscore serve`` processes and in-process on both runtimes; clients
over real TLS; a real loopback HTTP server for the CRL and the JWK Set, counting its fetches.

- the rate script is the in-process token bucket, run atomically on Redis's clock;
- two gateway processes (each runtime, and one of each) enforce one account's limit exactly,
  under concurrent requests;
- a hung Redis (SIGSTOP) and a dead one: every request is still answered, with the configured
  ``rate_limit_on_error`` behaviour, counted in /metrics; a restarted Redis enforces again;
- two gateways fetch a CRL and a JWK Set once between them;
- a poisoned entry in Redis is rejected like a bad fetch.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from _gateway import FileServer, gateway
from _nginx import stop_process
from _redis import RedisServer, require_redis

from mtlscore import pki
from mtlscore.gateway.shared import cache_key, shared_from_config
from mtlscore.identity.jwks import NeedJwks
from mtlscore.jwt import issue_bound_token
from mtlscore.runtimes.state import GatewayState
from mtlscore.verify.machine import NeedCRL
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_public_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = "0123456789abcdef0123456789abcdef"
DEADLINE = 15.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@dataclass
class World:
    dir: Path
    origin: FileServer
    tokens: dict[str, str]
    attacker: Any  # a key nobody registered

    def config(self, name: str, redis: RedisServer | None, *, limit: str = "10/min", fetch: bool = False,
               admin: bool = False, secret: bool = True, jwks: dict[str, Any] | None = None,
               **shared: Any) -> Path:
        server = ['listen = "127.0.0.1:0"', 'certificate = "server.pem"', 'key = "server.key"',
                  "reload_poll_seconds = 0", 'reject_at = "http"']
        if admin:
            server.append('admin_listen = "127.0.0.1:0"')
        revocation = 'fetch = true\nmode = "hard"\nmode_ca = "soft"' if fetch else 'mode = "off"'
        text = f"""
[trust]
anchors = ["root.pem"]

[revocation]
{revocation}

[[accounts]]
id = "acme"
match = {{ cn = "acme" }}
rate_limit = "{limit}"

[[accounts]]
id = "tokens"
match = {{ cn = "tokens" }}
token = {{ jwks_uri = "{self.origin.url('/jwks')}", issuer = "https://as.test" }}

[server]
{chr(10).join(server)}
"""
        if jwks:
            text += "\n[server.jwks]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in jwks.items()) + "\n"
        if redis is not None:
            table = {"redis": redis.url, **({"secret": SECRET} if secret else {}), **shared}
            text += "\n[shared]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + "\n"
        path = self.dir / name
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from cryptography.hazmat.primitives.asymmetric import ec

    require_redis()
    d = tmp_path_factory.mktemp("shared")
    origin = FileServer({"Cache-Control": "max-age=600"})
    now = datetime.now(UTC)
    root = pki.root("CN=Shared Root", now=now)
    issuing = root.intermediate("CN=Shared Issuing")
    crl_url = origin.url("/issuing.crl")
    leaves = {"acme": issuing.leaf("CN=acme", crl_urls=[crl_url]),
              "tokens": issuing.leaf("CN=tokens", crl_urls=[crl_url])}
    origin.files["/issuing.crl"] = issuing.crl(next_update=now + timedelta(hours=1))
    signer, attacker = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    origin.files["/jwks"] = json.dumps({"keys": [jwk_from_public_key(signer.public_key(), kid="as")]}).encode()
    claims = {"iss": "https://as.test", "iat": int(now.timestamp()), "exp": int((now + timedelta(hours=1)).timestamp())}
    cert = parse_certificate(leaves["tokens"].der)
    tokens = {"good": issue_bound_token(claims, signer, cert, kid="as"),
              "forged": issue_bound_token(claims, attacker, cert, kid="evil")}
    server_ca = pki.root("CN=Shared Server CA", now=now)
    server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"])
    files = {"root.pem": root.pem, "server-ca.pem": server_ca.pem, "server.pem": server.pem,
             "server.key": server.key_pem}
    files |= {f"{n}.pem": leaf.chain_pem for n, leaf in leaves.items()}
    files |= {f"{n}.key": leaf.key_pem for n, leaf in leaves.items()}
    for name, data in files.items():
        (d / name).write_bytes(data)
    (d / "server.key").chmod(0o600)
    (d / "other.crl").write_bytes(pki.root("CN=Shared Issuing").crl(next_update=now + timedelta(hours=1)))
    yield World(d, origin, tokens, attacker)
    origin.close()


def get(w: World, port: int, cert: str = "acme", *, token: str | None = None) -> tuple[int, dict[str, str], Any]:
    """One request on its own TLS connection; (status, headers, JSON body)."""
    ctx = ssl.create_default_context(cafile=str(w.dir / "server-ca.pem"))
    ctx.load_cert_chain(str(w.dir / f"{cert}.pem"), str(w.dir / f"{cert}.key"))
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/", headers={"Authorization": f"Bearer {w.tokens[token]}"} if token else {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read() or b"{}")
    finally:
        conn.close()


# -- gateways as processes ---------------------------------------------------------------------


class Serve:
    """``mtlscore serve`` as a real process; its stderr read by a thread (every line kept)."""

    def __init__(self, config: Path, runtime: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "mtlscore", "serve", "--config", str(config),
                                      "--runtime", runtime], stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        self.lines: list[str] = []
        # With workers, their start lines come before the banner (printed once all listen).
        while " on https://127.0.0.1:" not in (banner := self.proc.stderr.readline()):
            assert banner, f"the gateway ended before its banner: {self.lines}"
            self.lines.append(banner)
        self.port = int(banner.split(" on https://127.0.0.1:")[1].split(" ")[0])
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self) -> None:
        stop_process(self.proc)  # type: ignore[arg-type]


@contextlib.contextmanager
def serving(*args: tuple[Path, str]) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    try:
        for config, runtime in args:
            started.append(Serve(config, runtime))
        yield started
    finally:
        for s in started:
            s.stop()


# -- the script ---------------------------------------------------------------------------------


def test_the_rate_script_is_the_in_process_token_bucket(redis_server: RedisServer) -> None:
    from mtlscore.gateway.appauth import Rate, RateLimiter
    from mtlscore.runtimes.shared import RATE_SCRIPT

    with redis_server.client() as c:
        take = c.register_script(RATE_SCRIPT)
        limiter = RateLimiter()
        # A burst of 3 per hour: the same decisions, and the same wait (1200 s per token).
        for _ in range(5):
            ours = take(keys=["b"], args=[3, 3_600_000])
            local = limiter.check("b", Rate(3, 3600.0), 0.0)
            assert (ours < 0) == (local is None)
            if local is not None:
                assert abs(ours / 1e6 - local) < 1.0
        # While the bucket refills, the key lives exactly until it would be full: idle accounts
        # leave nothing behind.
        assert 3 * 1_200_000 <= c.pttl("b") <= 3 * 1_200_000 + 1000
        # A changed rate starts a full bucket, as in process.
        assert [take(keys=["b"], args=[5, 3_600_000]) < 0 for _ in range(6)] == [True] * 5 + [False]
        # Ten "processes" taking at once from a bucket of 10 per hour: exactly 10 tokens.
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda _: take(keys=["c"], args=[10, 3_600_000]), range(40)))
        assert sum(a < 0 for a in answers) == 10
        # A script flushed from Redis (a restart, SCRIPT FLUSH) is loaded again (EVALSHA, NOSCRIPT, EVAL).
        c.script_flush()
        assert take(keys=["d"], args=[1, 1000]) == -1


ACL = ["~mtlscore:*", "+evalsha", "+script|load", "+hmget", "+hset", "+pexpire", "+time", "+get", "+set", "+pttl"]


def test_the_acl_in_the_docs_is_all_mtlscore_needs(redis_server: RedisServer) -> None:
    import asyncio

    from mtlscore.gateway.appauth import NeedRate, Rate
    from mtlscore.runtimes.metrics import Metrics
    from mtlscore.runtimes.shared import SharedStore
    from mtlscore.runtimes.shared_asyncio import AsyncioRedis

    assert " ".join(ACL) in (Path(__file__).parents[2] / "docs" / "shared-state.md").read_text()
    with redis_server.client() as c:
        c.execute_command("ACL", "SETUSER", "mtlscore", "on", ">pw", *ACL)
    settings = shared_from_config({"redis": f"unix://mtlscore:pw@{redis_server.socket}"})
    metrics = Metrics()
    crl = pki.root("CN=ACL").crl()

    async def main() -> None:
        store = SharedStore(settings, AsyncioRedis(settings), metrics)
        assert (await store.take(NeedRate("acme", Rate(1, 60.0)))).error == ""  # EVALSHA, NOSCRIPT, SCRIPT LOAD
        await store.store(NeedCRL("http://x/c.crl"), crl, at=pki.NOW, cache_control=None)
        assert await store.lookup(NeedCRL("http://x/c.crl"), at=pki.NOW) is not None
        await store.aclose()

    asyncio.run(main())
    assert metrics.get("mtlscore_shared_errors_total") == 0


# -- (a) two gateway processes, one limit ---------------------------------------------------------


@pytest.mark.parametrize("runtimes", [("asyncio", "trio"), ("asyncio", "asyncio"), ("trio", "trio")],
                         ids=lambda r: "+".join(r))
def test_two_gateway_processes_enforce_one_accounts_limit_exactly(
    world: World, redis_server: RedisServer, runtimes: tuple[str, str],
) -> None:
    name = "-".join(runtimes)
    # Timeouts generous for a loaded test machine, and "closed": a Redis call that failed would
    # show as a 503 here, not hide as an extra success.
    # 10 an hour: no token comes back while the test runs, however slow the machine.
    configs = [(world.config(f"two-{name}-{i}.toml", redis_server, limit="10/h", timeout_seconds=5,
                             connect_timeout_seconds=5, rate_limit_on_error="closed"), rt)
               for i, rt in enumerate(runtimes)]
    with serving(*configs) as gateways:
        ports = [g.port for g in gateways]
        # 30 requests at once, spread over both processes: 10 for the account, whoever serves.
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: (i % 2, get(world, ports[i % 2])), range(30)))
    assert not [line for g in gateways for line in g.lines if "shared_unavailable" in line]
    statuses = [r[1][0] for r in results]
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses
    for _, (_status, headers, body) in (r for r in results if r[1][0] == 429):
        assert body["error"] == "rate_limited"
        assert 1 <= int(headers["retry-after"]) <= 360  # 10/h: a token every 6 min
    assert {g for g, (status, _, _) in results if status == 429} == {0, 1}  # both refused some


# -- (b)+(c) both runtimes: a hung or dead Redis, the configured behaviour, recovery ---------------


def scrape(port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def metric(samples: dict[str, float], family: str, **labels: str) -> float:
    return sum(v for k, v in samples.items() if k.partition("{")[0] == family
               and all(f'{n}="{v}"' in k for n, v in labels.items()))


async def statuses(w: World, port: int, n: int) -> list[tuple[int, str | None]]:
    out = []
    for _ in range(n):
        status, _, body = await anyio.to_thread.run_sync(partial(get, w, port))
        out.append((status, body.get("error")))
    return out


@pytest.mark.anyio
@pytest.mark.parametrize("on_error", ["closed", "open", "local"])
async def test_a_hung_then_dead_redis_gets_the_configured_behaviour_and_recovery(
    world: World, redis_server: RedisServer, anyio_backend: str, on_error: str,
) -> None:
    config = world.config(f"down-{on_error}-{anyio_backend}.toml", redis_server, limit="3/min", admin=True,
                          rate_limit_on_error=on_error, timeout_seconds=0.5, connect_timeout_seconds=0.5,
                          retry_interval_seconds=1)
    down = {"closed": [(503, "rate_limit_unavailable")] * 4, "open": [(200, None)] * 4,
            # local: this process's own bucket of 3/min takes over.
            "local": [(200, None)] * 3 + [(429, "rate_limited")]}[on_error]
    async with gateway(config, anyio_backend) as info:
        port, admin = info.address.port, info.admin_address
        assert admin is not None
        assert await statuses(world, port, 4) == [(200, None)] * 3 + [(429, "rate_limited")]
        # Hung: the socket accepts, nothing answers. Each request is still answered (the
        # client's own 10 s timeout would fail the test otherwise), by the configured behaviour.
        redis_server.pause()
        assert await statuses(world, port, 4) == down
        # Dead: the socket is gone.
        redis_server.resume()
        redis_server.stop()
        assert (await statuses(world, port, 1))[0] == down[-1]
        samples = await anyio.to_thread.run_sync(scrape, admin.port)
        assert metric(samples, "mtlscore_shared_errors_total", operation="rate_limit") >= 5
        if on_error == "closed":
            assert metric(samples, "mtlscore_decisions_total", reason="rate_limit_unavailable") == 5
        # Back (empty: no persistence), without a restart of the gateway: the shared limit
        # applies again once the retry interval has passed.
        redis_server.start()
        end = time.monotonic() + DEADLINE
        while not await anyio.to_thread.run_sync(partial(_shared_again, redis_server)):
            assert time.monotonic() < end, "the gateway never used the restarted Redis"
            await statuses(world, port, 1)
        assert await statuses(world, port, 3) == [(200, None)] * 2 + [(429, "rate_limited")]


def _shared_again(redis_server: RedisServer) -> bool:
    with redis_server.client() as c:
        return bool(c.keys("mtlscore:rate:acme:*"))


# -- (d) shared CRL and JWKS: fetched once ------------------------------------------------------------


def test_two_gateways_fetch_a_crl_and_a_jwks_once(world: World, redis_server: RedisServer) -> None:
    before = len(world.origin.hits)
    configs = [(world.config(f"fetch-{i}.toml", redis_server, fetch=True), rt)
               for i, rt in enumerate(("asyncio", "trio"))]
    with serving(*configs) as gateways:
        for g in gateways:
            status, _, body = get(world, g.port, "tokens", token="good")
            assert status == 200, body
            assert body["credential"] == "bound_token"
    assert sorted(world.origin.hits[before:]) == ["/issuing.crl", "/jwks"]
    with redis_server.client() as c:
        keys = {k.decode().split(":")[1] for k in c.keys("mtlscore:*")}
    assert keys == {"crl", "jwks"}  # the account "tokens" has no rate limit


@pytest.mark.anyio
async def test_a_shared_jwks_is_kept_no_longer_than_the_configured_max_ttl(
    world: World, redis_server: RedisServer, anyio_backend: str,
) -> None:
    # The origin says max-age=600; [server.jwks] max_ttl_seconds = 120 says this gateway keeps
    # keys two minutes at most. The copy it shares may not outlive that: another process
    # taking it from Redis after 119 s would otherwise hold keys the issuer rotated out long
    # ago for up to ten minutes.
    config = world.config(f"jwks-ttl-{anyio_backend}.toml", redis_server,
                          jwks={"max_ttl_seconds": 120, "default_ttl_seconds": 90})
    async with gateway(config, anyio_backend) as info:
        status, _, body = await anyio.to_thread.run_sync(
            partial(get, world, info.address.port, "tokens", token="good"))
    assert status == 200, body
    settings = shared_from_config({"redis": redis_server.url, "secret": SECRET})
    with redis_server.client() as c:
        ttl_ms = c.pttl(f"mtlscore:{cache_key(NeedJwks(world.origin.url('/jwks')), settings)}")
    assert 0 < ttl_ms <= 120_000


# -- (e) a poisoned entry is rejected like a bad fetch ------------------------------------------------


def _poison(redis_server: RedisServer, request: NeedCRL | NeedJwks, value: bytes) -> None:
    """Write ``value`` as is under ``request``'s key (no tag: whoever wrote it has no secret)."""
    settings = shared_from_config({"redis": redis_server.url, "secret": SECRET})
    with redis_server.client() as c:
        c.set(f"mtlscore:{cache_key(request, settings)}", value, px=600_000)


@pytest.mark.anyio
async def test_a_poisoned_entry_is_rejected_like_a_bad_fetch(
    world: World, redis_server: RedisServer, anyio_backend: str,
) -> None:
    crl, jwks = NeedCRL(world.origin.url("/issuing.crl")), NeedJwks(world.origin.url("/jwks"))
    config = world.config(f"poison-{anyio_backend}.toml", redis_server, fetch=True, admin=True)

    async def one(cert: str, token: str | None = None) -> tuple[int, Any]:
        status, _, body = await anyio.to_thread.run_sync(partial(get, world, port, cert, token=token))
        return status, body

    # Garbage under the CRL's key and an attacker's key set (no tag) under the JWKS key: both
    # refused before use; the gateway fetches for itself and replaces them.
    _poison(redis_server, crl, b"\x30\x82garbage")
    _poison(redis_server, jwks, json.dumps({"keys": [jwk_from_public_key(world.attacker.public_key(),
                                                                         kid="evil")]}).encode())
    before = len(world.origin.hits)
    async with gateway(config, anyio_backend) as info:
        port = info.address.port
        assert (await one("tokens", "forged"))[0] == 401
        assert (await one("tokens", "good"))[0] == 200
        samples = await anyio.to_thread.run_sync(scrape, info.admin_address.port)  # type: ignore[union-attr]
    assert sorted(world.origin.hits[before:]) == ["/issuing.crl", "/jwks"]
    assert metric(samples, "mtlscore_shared_cache_total", kind="crl", result="rejected") == 1
    assert metric(samples, "mtlscore_shared_cache_total", kind="jwks", result="rejected") == 1
    assert metric(samples, "mtlscore_shared_cache_total", result="stored") == 2

    # Without a secret, entries carry no tag: a well-formed, unexpired CRL signed by someone
    # else gets through to the validator, which rejects it exactly as if the CRL server had
    # sent it — with mode = "hard", the leaf is refused.
    _poison(redis_server, crl, (world.dir / "other.crl").read_bytes())
    untagged = world.config(f"poison-nosecret-{anyio_backend}.toml", redis_server, fetch=True, admin=True,
                            secret=False)
    before = len(world.origin.hits)
    async with gateway(untagged, anyio_backend) as info:
        port = info.address.port
        status, body = await one("acme")
        samples = await anyio.to_thread.run_sync(scrape, info.admin_address.port)  # type: ignore[union-attr]
    assert (status, body.get("error")) == (403, "revocation_unavailable"), body
    assert "carries the key that signed it" in body["detail"], body["detail"]
    assert metric(samples, "mtlscore_shared_cache_total", kind="crl", result="hit") == 1
    assert world.origin.hits[before:] == []  # the shared entry was used, and refused


# -- configuration: one line naming the file and the key; [shared] is kept until a restart -------------


@pytest.mark.parametrize(("shared", "named"), [
    ('redis = "http://127.0.0.1:6379"', "shared.redis: must be a redis://, rediss:// or unix:// URL"),
    ('redis = "redis://:hunter2@h/x"', "shared.redis: 'redis://:***@h/x': the path is the database number"),
    ('redis = "redis://h"\ntimeout = "100ms"', "shared.timeout: unknown key"),
    ('redis = "redis://h"\nrate_limit_on_error = "sometimes"', "shared.rate_limit_on_error: must be one of"),
])
def test_a_bad_shared_table_is_one_line_naming_the_file_and_key(
    world: World, capsys: pytest.CaptureFixture[str], shared: str, named: str,
) -> None:
    from mtlscore.cli import main

    config = world.config("bad-shared.toml", None)
    config.write_text(config.read_text() + f"\n[shared]\n{shared}\n")
    code = main(["serve", "--config", str(config)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"mtlscore serve: configuration error in {config}: {named}"), err
    assert "hunter2" not in err


def test_a_reload_keeps_the_running_shared_store_and_says_restart(world: World, redis_server: RedisServer) -> None:
    config = world.config("reload-shared.toml", redis_server)
    state = GatewayState.from_config_file(config)
    running = state.snapshot.gateway.shared
    assert running is not None and running.url == redis_server.url
    config.write_text(config.read_text() + 'prefix = "other:"\n')  # the [shared] table is last
    assert state.reload()
    assert state.snapshot.gateway.shared == running  # the store the runtime connected to
    assert state.metrics.get("mtlscore_reloads_total", result="restart_required") == 1


# -- many requests at once, few connections -------------------------------------------------------------


@pytest.mark.anyio
async def test_more_requests_at_once_than_connections_wait_for_one_instead_of_failing(
    redis_server: RedisServer, anyio_backend: str,
) -> None:
    from mtlscore.gateway.appauth import NeedRate, Rate
    from mtlscore.runtimes.metrics import Metrics
    from mtlscore.runtimes.shared import SharedStore

    if anyio_backend == "asyncio":
        from mtlscore.runtimes.shared_asyncio import AsyncioRedis as Backend
    else:
        from mtlscore.runtimes.shared_trio import TrioRedis as Backend  # type: ignore[assignment]
    settings = shared_from_config({"redis": redis_server.url, "max_connections": 2, "timeout_seconds": 2})
    metrics = Metrics()
    store = SharedStore(settings, Backend(settings), metrics)
    answers = []

    async def one() -> None:
        answers.append(await store.take(NeedRate("burst", Rate(25, 3600.0))))

    async with anyio.create_task_group() as tg:
        for _ in range(60):
            tg.start_soon(one)
    await store.aclose()
    assert [a.error for a in answers if a.error] == []
    assert sum(a.wait is None for a in answers) == 25
    assert metrics.get("mtlscore_shared_errors_total") == 0


def test_gateways_with_different_rates_for_one_account_do_not_reset_each_other(redis_server: RedisServer) -> None:
    # A rolling configuration change: for a while some gateways say 2/h, others 3/h. Each
    # rate keeps its own bucket; one bucket that every call with the other rate reset to
    # full would let everything through.
    import asyncio

    from mtlscore.gateway.appauth import NeedRate, Rate
    from mtlscore.runtimes.metrics import Metrics
    from mtlscore.runtimes.shared import SharedStore
    from mtlscore.runtimes.shared_asyncio import AsyncioRedis

    settings = shared_from_config({"redis": redis_server.url})

    async def main() -> list[bool]:
        store = SharedStore(settings, AsyncioRedis(settings), Metrics())
        out = []
        for _ in range(5):
            for rate in (Rate(2, 3600.0), Rate(3, 3600.0)):
                out.append((await store.take(NeedRate("acme", rate))).wait is None)
        await store.aclose()
        return out

    allowed = asyncio.run(main())
    assert allowed[0::2] == [True, True, False, False, False]  # 2/h
    assert allowed[1::2] == [True, True, True, False, False]  # 3/h


# -- [server] workers: one account's limit, exact across the workers of one gateway ------------------


def _decisions(gateway: Serve) -> list[dict[str, Any]]:
    return [json.loads(line) for line in list(gateway.lines) if '"mtls_decision"' in line]


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_two_workers_enforce_one_accounts_limit_exactly(world: World, redis_server: RedisServer, runtime: str) -> None:
    # 10 an hour: no token comes back while the test runs, however slow the machine.
    config = world.config(f"workers-{runtime}.toml", redis_server, limit="10/h", timeout_seconds=5,
                          connect_timeout_seconds=5, rate_limit_on_error="closed")
    config.write_text(config.read_text().replace("[server]\n", "[server]\nworkers = 2\n", 1))
    with serving((config, runtime)) as (gateway,):
        with ThreadPoolExecutor(8) as pool:
            statuses = [s for s, _, _ in pool.map(lambda _: get(world, gateway.port), range(30))]
        # The kernel decides which worker accepts: go on until both have served the account.
        end = time.monotonic() + 60
        while len({d["pid"] for d in _decisions(gateway)}) < 2 or len(_decisions(gateway)) < len(statuses):
            assert time.monotonic() < end, f"one worker served everything: {_decisions(gateway)}"
            if len(_decisions(gateway)) >= len(statuses):
                statuses.append(get(world, gateway.port)[0])
            else:
                time.sleep(0.05)  # the last decision lines are on their way; bounded by the deadline
    assert statuses.count(200) == 10 and statuses.count(429) == len(statuses) - 10, statuses
    assert len({d["pid"] for d in _decisions(gateway)}) == 2  # without [shared]: 10 each
