"""Fetching revocation data and issuers for real, on both runtimes from one test body.

Peers on 127.0.0.1: a threaded http.server serving CRLs and issuers (started
by each test), a real ``openssl ocsp`` responder (started once for the module;
it needs a fixed port, so one is picked by binding port 0 and retried on a
clash), a port with nothing listening (down), and a socket that accepts
connections and never answers (slow). The PKI is built around the real clock
because ``openssl ocsp`` stamps its responses with it.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from mtlscore import Policy, Reason, TrustStore, Validator, pki
from mtlscore._policy import OCSP_SIGNING
from mtlscore.runtimes.fetch_asyncio import AsyncioFetcher, validate_with_fetch
from mtlscore.runtimes.fetch_trio import TrioFetcher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NOW = datetime.now(UTC)
_H = timedelta(hours=1)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def fetcher_for(backend: str, **kw: Any) -> AsyncioFetcher | TrioFetcher:
    return AsyncioFetcher(**kw) if backend == "asyncio" else TrioFetcher(**kw)


# -- a loopback HTTP server --------------------------------------------------------------


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    gate: threading.Event | None = None  # hold the answer until set


class Server:
    """http.server on 127.0.0.1:0 in a thread; routes by path; counts hits per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                route = outer.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.gate is not None:
                    route.gate.wait(10)
                self.send_response(route.status)
                for k, v in route.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        for route in self.routes.values():
            if route.gate is not None:
                route.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def down_url() -> str:
    """An http URL on a loopback port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/down.crl"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """An http URL whose server accepts the connection and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)  # the kernel completes handshakes; nobody ever reads or writes
    try:
        yield f"http://127.0.0.1:{s.getsockname()[1]}/slow.crl"
    finally:
        s.close()


# -- the PKI and a real OCSP responder ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_listening(proc: subprocess.Popen[bytes], seconds: float = 10) -> bool:
    """Whether ``openssl ocsp`` says it is waiting for connections (it binds first).

    Not probed by connecting: the responder serves one connection at a time and
    an empty probe connection would block it.
    """
    assert proc.stderr is not None
    deadline = time.monotonic() + seconds
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            return False  # exited: the port was taken
        seen += chunk
        if b"waiting for OCSP client connections" in seen:
            # Keep draining its log so that it never blocks on a full pipe.
            threading.Thread(target=_drain, args=(proc.stderr.fileno(),), daemon=True).start()
            return True
    return False


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 4096):
            pass


@dataclass
class World:
    root: pki.Issued
    inter: pki.Issued
    ocsp_url: str
    ocsp_good: pki.Issued
    ocsp_revoked: pki.Issued

    def trust(self) -> TrustStore:
        return TrustStore([self.root.pem])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A root, an intermediate, and `openssl ocsp` answering for the intermediate.

    The responder is delegated (a certificate with id-kp-OCSPSigning issued by the
    intermediate). ``openssl ocsp`` takes only a fixed port, and the leaves must
    name it: pick a free one, issue the leaves, start; on a clash, start over.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    root = pki.root("CN=Fetch Root", now=NOW)
    inter = root.intermediate("CN=Fetch Intermediate")
    responder = inter.leaf("CN=Fetch OCSP Responder", eku=[OCSP_SIGNING])
    d = tmp_path_factory.mktemp("ocsp")
    (d / "ca.pem").write_bytes(inter.pem)
    (d / "rsigner.pem").write_bytes(responder.pem)
    (d / "rkey.pem").write_bytes(responder.key_pem)

    def line(status: str, c: pki.Issued, when: str = "") -> str:
        exp = c.cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        return f"{status}\t{exp}\t{when}\t{c.serial:X}\tunknown\t/CN=c{c.serial:X}\n"

    proc: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(5):
            port = _free_port()
            url = f"http://127.0.0.1:{port}/"
            good = inter.leaf("CN=ocsp-good", ocsp_urls=[url])
            revoked = inter.leaf("CN=ocsp-revoked", ocsp_urls=[url])
            stamp = NOW.strftime("%y%m%d%H%M%SZ")
            (d / "index.txt").write_text(line("V", good) + line("R", revoked, stamp + ",keyCompromise"))
            proc = subprocess.Popen(
                [openssl, "ocsp", "-index", "index.txt", "-port", str(port), "-CA", "ca.pem",
                 "-rsigner", "rsigner.pem", "-rkey", "rkey.pem", "-nmin", "5", "-ignore_err"],
                cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            if _wait_until_listening(proc):
                break
            proc.kill()
            proc.wait()
            proc = None
        else:
            pytest.fail("openssl ocsp did not start on a free loopback port")
        yield World(root, inter, url, good, revoked)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def pem_chain(leaf: pki.Issued) -> bytes:
    return leaf.chain_pem


# -- CRLs from distribution points -------------------------------------------------------


@pytest.mark.anyio
async def test_fetched_crl_revokes_and_clears(anyio_backend: str, world: World, server: Server) -> None:
    url = server.url("/inter.crl")
    good = world.inter.leaf("CN=crl-good", crl_urls=[url])
    bad = world.inter.leaf("CN=crl-revoked", crl_urls=[url])
    server.routes["/inter.crl"] = Route(world.inter.crl(revoked=[bad], this_update=NOW - _H, next_update=NOW + _H))
    fetcher = fetcher_for(anyio_backend)
    v = Validator(world.trust(), Policy(fetch=True, revocation="hard", revocation_ca="off"))
    verdict = await fetcher.validate(v, pem_chain(bad), at=NOW)
    assert verdict.reason is Reason.REVOKED, verdict.detail
    assert verdict.position == 0
    verdict = await fetcher.validate(v, pem_chain(good), at=NOW)
    assert verdict.ok, verdict.detail
    # The CRL verified once is kept (until nextUpdate) and shared: one fetch for both.
    assert server.hits["/inter.crl"] == 1
    assert fetcher.fetches == 1


@pytest.mark.anyio
async def test_revoked_intermediate_from_root_crl(anyio_backend: str, world: World, server: Server) -> None:
    url = server.url("/root.crl")
    inter = world.root.intermediate("CN=Revoked Intermediate", crl_urls=[url])
    leaf = inter.leaf("CN=under-revoked-ca")
    server.routes["/root.crl"] = Route(world.root.crl(revoked=[inter], this_update=NOW - _H, next_update=NOW + _H))
    v = Validator(world.trust(), Policy(fetch=True, revocation_leaf="off"))
    verdict = await fetcher_for(anyio_backend).validate(v, pem_chain(leaf), at=NOW)
    assert verdict.reason is Reason.REVOKED
    assert verdict.position == 1


# -- OCSP from a real openssl responder --------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("nonce", [False, True])
async def test_openssl_ocsp_responder(anyio_backend: str, world: World, nonce: bool) -> None:
    v = Validator(world.trust(), Policy(fetch=True, revocation="hard", revocation_ca="off", ocsp_nonce=nonce))
    fetcher = fetcher_for(anyio_backend, timeout=10)
    at = datetime.now(UTC)
    verdict = await fetcher.validate(v, pem_chain(world.ocsp_revoked), at=at)
    assert verdict.reason is Reason.REVOKED, verdict.detail
    assert "OCSP responder" in verdict.detail and "keyCompromise" in verdict.detail
    verdict = await fetcher.validate(v, pem_chain(world.ocsp_good), at=at)
    assert verdict.ok, verdict.detail


# -- missing issuers from AIA caIssuers --------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["der", "p7c"])
async def test_missing_intermediate_fetched(anyio_backend: str, world: World, server: Server, form: str) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

    body = world.inter.der if form == "der" else pkcs7.serialize_certificates([world.inter.cert], Encoding.DER)
    server.routes[f"/inter.{form}"] = Route(body)
    leaf = world.inter.leaf("CN=aia-client", ca_issuers_urls=[server.url(f"/inter.{form}")])
    fetcher = fetcher_for(anyio_backend)
    off = Validator(world.trust(), Policy(fetch=True))
    verdict = await fetcher.validate(off, leaf.pem, at=NOW)  # the leaf alone
    assert verdict.reason is Reason.UNTRUSTED  # AIA is off by default
    on = Validator(world.trust(), Policy(fetch_issuers=True))
    verdict = await fetcher.validate(on, leaf.pem, at=NOW)
    assert verdict.ok, verdict.detail
    assert any("AIA caIssuers" in n for n in verdict.notes)


# -- soft- and hard-fail when the data cannot be had -------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["down", "slow", "404", "too_big", "other_scheme"])
async def test_unavailable_soft_and_hard(
    anyio_backend: str, world: World, server: Server, down_url: str, silent_url: str, where: str
) -> None:
    urls = {"down": down_url, "slow": silent_url, "404": server.url("/missing.crl"),
            "too_big": server.url("/big.crl"), "other_scheme": server.url("/moved.crl")}
    server.routes["/big.crl"] = Route(b"\x30" * 5000)
    server.routes["/moved.crl"] = Route(status=302, headers={"Location": "https://127.0.0.1:1/inter.crl"})
    expected = {"down": "Connect", "slow": "timed out", "404": "404", "too_big": "limit",
                "other_scheme": "another scheme"}[where]
    leaf = world.inter.leaf("CN=unreachable", crl_urls=[urls[where]])
    fetcher = fetcher_for(anyio_backend, timeout=0.5, max_bytes=4096)
    soft = Validator(world.trust(), Policy(fetch=True, revocation_ca="off"))
    verdict = await fetcher.validate(soft, pem_chain(leaf), at=NOW)
    assert verdict.ok, verdict.detail
    notes = " ".join(verdict.notes)
    assert "soft-fail" in notes and expected.lower() in notes.lower(), notes
    hard = Validator(world.trust(), Policy(fetch=True, revocation="hard", revocation_ca="off"))
    verdict = await fetcher.validate(hard, pem_chain(leaf), at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE
    assert expected.lower() in verdict.detail.lower(), verdict.detail


@pytest.mark.anyio
async def test_same_scheme_redirect_is_followed(anyio_backend: str, world: World, server: Server) -> None:
    leaf = world.inter.leaf("CN=redirected", crl_urls=[server.url("/old.crl")])
    server.routes["/old.crl"] = Route(status=301, headers={"Location": "/new.crl"})
    server.routes["/new.crl"] = Route(world.inter.crl(revoked=[leaf], this_update=NOW - _H, next_update=NOW + _H))
    v = Validator(world.trust(), Policy(fetch=True, revocation_ca="off"))
    verdict = await fetcher_for(anyio_backend).validate(v, pem_chain(leaf), at=NOW)
    assert verdict.reason is Reason.REVOKED
    assert server.hits == {"/old.crl": 1, "/new.crl": 1}


@pytest.mark.anyio
async def test_crl_then_ocsp_fallback(anyio_backend: str, world: World, server: Server, down_url: str) -> None:
    # OCSP is preferred; its responder is down, so the CRL decides.
    url = server.url("/fallback.crl")
    leaf = world.inter.leaf("CN=fallback", crl_urls=[url], ocsp_urls=[down_url])
    server.routes["/fallback.crl"] = Route(world.inter.crl(revoked=[leaf], this_update=NOW - _H, next_update=NOW + _H))
    v = Validator(world.trust(), Policy(fetch=True, revocation_ca="off"))
    verdict = await fetcher_for(anyio_backend).validate(v, pem_chain(leaf), at=NOW)
    assert verdict.reason is Reason.REVOKED


# -- one in-flight fetch per URL ---------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_validations_share_one_fetch(anyio_backend: str, world: World, server: Server) -> None:
    gate = threading.Event()
    url = server.url("/shared.crl")
    leaves = [world.inter.leaf(f"CN=herd-{i}", crl_urls=[url]) for i in range(5)]
    server.routes["/shared.crl"] = Route(world.inter.crl(revoked=[leaves[0]], this_update=NOW - _H,
                                                         next_update=NOW + _H), gate=gate)
    fetcher = fetcher_for(anyio_backend, max_concurrent=2)
    v = Validator(world.trust(), Policy(fetch=True, revocation="hard", revocation_ca="off"))
    results: dict[int, Any] = {}

    async def one(i: int) -> None:
        results[i] = await fetcher.validate(v, pem_chain(leaves[i]), at=NOW)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(one, i)
            # Every validation is now waiting: one on the socket, four on its fetch.
            while fetcher.joined < 4:
                await anyio.wait_all_tasks_blocked()
                if fetcher.joined < 4:
                    await anyio.sleep(0.01)
            gate.set()
    assert server.hits["/shared.crl"] == 1
    assert fetcher.fetches == 1
    assert results[0].reason is Reason.REVOKED
    assert all(results[i].ok for i in range(1, 5)), [results[i].detail for i in range(5)]


# -- the CLI's entry point (plain asyncio, no running loop) ------------------------------


def test_validate_with_fetch_for_the_cli(world: World, server: Server) -> None:
    url = server.url("/cli.crl")
    leaf = world.inter.leaf("CN=cli", crl_urls=[url])
    server.routes["/cli.crl"] = Route(world.inter.crl(revoked=[leaf], this_update=NOW - _H, next_update=NOW + _H))
    v = Validator(world.trust(), Policy(fetch=True, fetch_issuers=True))
    verdict = validate_with_fetch(v, leaf.chain_pem, at=NOW, timeout=5)
    assert verdict.reason is Reason.REVOKED
    verdict = validate_with_fetch(v, world.ocsp_revoked.chain_pem, at=datetime.now(UTC), timeout=10)
    assert verdict.reason is Reason.REVOKED

