"""Fetching revocation data and issuers for real, on both runtimes from one test body.

Peers on 127.0.0.1: a threaded http.server serving CRLs and issuers (started
by each test), a real ``openssl ocsp`` responder (its answers, behind a
loopback http.server: ``openssl ocsp -port`` would listen on every
interface), a port with nothing listening (down), and a socket that accepts
connections and never answers (slow). The PKI is built around the real clock
because ``openssl ocsp`` stamps its responses with it.
"""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import pytest
from cryptography import x509

from mtlscore import Policy, Reason, TrustStore, Validator, pki
from mtlscore.runtimes.fetch_asyncio import AsyncioFetcher, validate_with_fetch
from mtlscore.runtimes.fetch_trio import TrioFetcher
from mtlscore.verify.policy import OCSP_SIGNING

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


class OcspResponder:
    """``openssl ocsp`` answering each request, behind an http.server on 127.0.0.1.

    ``openssl ocsp -port`` listens on every interface; this front end binds loopback
    only and hands each request — POSTed, or GET with the base64 request in the path
    (RFC 6960 A.1) — to ``openssl ocsp -reqin … -respout …`` (the same responder
    code, one process per request). ``methods`` records how each one came.
    """

    def __init__(self, openssl: str, directory: Path) -> None:
        self.requests = 0
        self.methods: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    body = base64.b64decode(unquote(self.path.rsplit("/", 1)[-1]), validate=True)
                except ValueError:
                    self.send_error(400)
                    return
                outer.methods.append("GET")
                self.answer(body)

            def do_POST(self) -> None:
                outer.methods.append("POST")
                self.answer(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

            def answer(self, body: bytes) -> None:
                outer.requests += 1
                with tempfile.TemporaryDirectory(dir=directory) as tmp:
                    req, resp = Path(tmp) / "req.der", Path(tmp) / "resp.der"
                    req.write_bytes(body)
                    done = subprocess.run(
                        [openssl, "ocsp", "-index", "index.txt", "-CA", "ca.pem", "-rsigner", "rsigner.pem",
                         "-rkey", "rkey.pem", "-nmin", "5", "-reqin", str(req), "-respout", str(resp)],
                        cwd=directory, capture_output=True, timeout=20, check=False,
                    )
                    answer = resp.read_bytes() if done.returncode == 0 and resp.exists() else b""
                self.send_response(200 if answer else 500)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class World:
    root: pki.Issued
    inter: pki.Issued
    ocsp_url: str
    ocsp_good: pki.Issued
    ocsp_revoked: pki.Issued
    ocsp: OcspResponder

    def trust(self) -> TrustStore:
        return TrustStore([self.root.pem])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A root, an intermediate, and `openssl ocsp` answering for the intermediate.

    The responder is delegated (a certificate with id-kp-OCSPSigning issued by the
    intermediate, and id-pkix-ocsp-nocheck, as real responders carry).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    root = pki.root("CN=Fetch Root", now=NOW)
    inter = root.intermediate("CN=Fetch Intermediate")
    responder = inter.leaf("CN=Fetch OCSP Responder", eku=[OCSP_SIGNING],
                           extensions=[(x509.OCSPNoCheck(), False)])
    d = tmp_path_factory.mktemp("ocsp")
    (d / "ca.pem").write_bytes(inter.pem)
    (d / "rsigner.pem").write_bytes(responder.pem)
    (d / "rkey.pem").write_bytes(responder.key_pem)

    def line(status: str, c: pki.Issued, when: str = "") -> str:
        exp = c.cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        return f"{status}\t{exp}\t{when}\t{c.serial:X}\tunknown\t/CN=c{c.serial:X}\n"

    ocsp = OcspResponder(openssl, d)
    try:
        good = inter.leaf("CN=ocsp-good", ocsp_urls=[ocsp.url])
        revoked = inter.leaf("CN=ocsp-revoked", ocsp_urls=[ocsp.url])
        stamp = NOW.strftime("%y%m%d%H%M%SZ")
        (d / "index.txt").write_text(line("V", good) + line("R", revoked, stamp + ",keyCompromise"))
        yield World(root, inter, ocsp.url, good, revoked, ocsp)
    finally:
        ocsp.close()


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
async def test_delta_and_crl_signer_path_fetched(anyio_backend: str, world: World, server: Server) -> None:
    # RFC 5280 §6.3.3 over fetched CRLs: the complete CRL is signed by a separate CRL key whose
    # own status is on the root's CRL (asked for through the machine), and the delta the
    # certificate's FreshestCRL names is fetched and applied.
    base_url, delta_url, root_url = server.url("/base.crl"), server.url("/delta.crl"), server.url("/root.crl")
    inter = world.root.intermediate("CN=Delta CA", crl_urls=[root_url])
    signer = inter.crl_signer(crl_urls=[root_url])
    good = inter.leaf("CN=delta-good", crl_urls=[base_url], freshest=[delta_url])
    bad = inter.leaf("CN=delta-revoked", crl_urls=[base_url], freshest=[delta_url])
    window = {"this_update": NOW - _H, "next_update": NOW + _H}
    server.routes["/base.crl"] = Route(inter.crl(signer=signer, number=4, **window))  # type: ignore[arg-type]
    server.routes["/delta.crl"] = Route(inter.crl(revoked=[bad], signer=signer, number=5, delta_of=4,
                                                  **window))  # type: ignore[arg-type]
    server.routes["/root.crl"] = Route(world.root.crl(**window))  # type: ignore[arg-type]
    trust = TrustStore([world.root.pem], [signer.pem])
    v = Validator(trust, Policy(fetch=True, revocation="hard", revocation_prefer="crl"))
    fetcher = fetcher_for(anyio_backend)
    verdict = await fetcher.validate(v, pem_chain(bad), at=NOW)
    assert verdict.reason is Reason.REVOKED and "delta CRL #5" in verdict.detail, verdict.detail
    verdict = await fetcher.validate(v, pem_chain(good), at=NOW)
    assert verdict.ok, verdict.detail
    # Each CRL was fetched once, then served from the revocation cache.
    assert server.hits == {"/base.crl": 1, "/delta.crl": 1, "/root.crl": 1}


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
    # openssl stamps thisUpdate when it answers, a moment after ``at`` (a second or more
    # on a loaded machine): allow the clock skew a deployment against a real responder would.
    v = Validator(world.trust(), Policy(fetch=True, revocation="hard", revocation_ca="off", ocsp_nonce=nonce,
                                        clock_skew=timedelta(minutes=1)))
    fetcher = fetcher_for(anyio_backend, timeout=10)
    at = datetime.now(UTC)
    asked = world.ocsp.requests
    verdict = await fetcher.validate(v, pem_chain(world.ocsp_revoked), at=at)
    assert verdict.reason is Reason.REVOKED, verdict.detail
    assert "OCSP responder" in verdict.detail and "keyCompromise" in verdict.detail
    verdict = await fetcher.validate(v, pem_chain(world.ocsp_good), at=at)
    assert verdict.ok, verdict.detail
    assert world.ocsp.requests == asked + 2  # openssl answered both, nothing was cached between them


@pytest.mark.anyio
@pytest.mark.parametrize("get", [True, False])
async def test_small_ocsp_requests_go_by_get(anyio_backend: str, world: World, get: bool) -> None:
    # RFC 6960 A.1: the core asks for a GET (the request is well under 255 bytes encoded);
    # the runtime makes it, and the real responder answers it.
    v = Validator(world.trust(), Policy(fetch=True, revocation="hard", revocation_ca="off", ocsp_get=get,
                                        clock_skew=timedelta(minutes=1)))
    fetcher = fetcher_for(anyio_backend, timeout=10)
    before = len(world.ocsp.methods)
    verdict = await fetcher.validate(v, pem_chain(world.ocsp_revoked), at=datetime.now(UTC))
    assert verdict.reason is Reason.REVOKED, verdict.detail
    verdict = await fetcher.validate(v, pem_chain(world.ocsp_good), at=datetime.now(UTC))
    assert verdict.ok, verdict.detail
    assert world.ocsp.methods[before:] == (["GET", "GET"] if get else ["POST", "POST"])


@pytest.mark.anyio
@pytest.mark.parametrize("responder_revoked", [False, True])
async def test_a_responder_without_nocheck_is_checked_through_its_crl(
    anyio_backend: str, world: World, server: Server, tmp_path: Path, responder_revoked: bool
) -> None:
    # RFC 6960 §4.2.2.2.1: a real openssl responder whose certificate lacks id-pkix-ocsp-nocheck;
    # its own CRL distribution point (a loopback server) is fetched before its "good" counts.
    openssl = shutil.which("openssl")
    assert openssl is not None  # the world fixture skipped otherwise
    crl_path = "/responder.crl"
    responder = world.inter.leaf("CN=Checked OCSP Responder", eku=[OCSP_SIGNING], crl_urls=[server.url(crl_path)])
    (tmp_path / "ca.pem").write_bytes(world.inter.pem)
    (tmp_path / "rsigner.pem").write_bytes(responder.pem)
    (tmp_path / "rkey.pem").write_bytes(responder.key_pem)
    ocsp = OcspResponder(openssl, tmp_path)
    try:
        leaf = world.inter.leaf("CN=checked-responder-client", ocsp_urls=[ocsp.url])
        exp = leaf.cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        (tmp_path / "index.txt").write_text(f"V\t{exp}\t\t{leaf.serial:X}\tunknown\t/CN=c\n")
        server.routes[crl_path] = Route(world.inter.crl(revoked=[responder] if responder_revoked else [],
                                                        this_update=NOW - _H, next_update=NOW + _H))
        v = Validator(world.trust(), Policy(fetch=True, revocation="hard", revocation_ca="off",
                                            clock_skew=timedelta(minutes=1)))
        verdict = await fetcher_for(anyio_backend, timeout=10).validate(v, pem_chain(leaf), at=datetime.now(UTC))
        assert ocsp.requests == 1 and server.hits[crl_path] == 1
        if responder_revoked:
            assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "itself revoked" in verdict.detail
        else:
            assert verdict.ok, verdict.detail
    finally:
        ocsp.close()


@pytest.mark.anyio
async def test_a_failing_responder_is_not_asked_again_for_the_ttl(anyio_backend: str, world: World,
                                                                    down_url: str) -> None:
    leaf = world.inter.leaf("CN=down-responder", ocsp_urls=[down_url])
    v = Validator(world.trust(), Policy(fetch=True, revocation_ca="off"))
    fetcher = fetcher_for(anyio_backend, timeout=5)
    first = await fetcher.validate(v, pem_chain(leaf), at=NOW)
    assert first.ok and fetcher.fetches == 1  # soft-fail, after one failed fetch
    again = await fetcher.validate(v, pem_chain(leaf), at=NOW + timedelta(seconds=5))
    assert again.ok and any("failed recently" in n for n in again.notes)
    assert fetcher.fetches == 1  # the negative entry kept the runtime from trying again
    await fetcher.validate(v, pem_chain(leaf), at=NOW + timedelta(seconds=31))
    assert fetcher.fetches == 2  # expired: asked again


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
    # A moment after openssl stamps its answer (see test_openssl_ocsp_responder).
    verdict = validate_with_fetch(v, world.ocsp_revoked.chain_pem, at=datetime.now(UTC) + timedelta(minutes=1),
                                  timeout=10)
    assert verdict.reason is Reason.REVOKED



# -- the ASGI middleware with a runtime fetcher -----------------------------------------


@pytest.mark.anyio
async def test_asgi_middleware_fetches_with_the_runtime_fetcher(anyio_backend: str, world: World,
                                                                server: Server) -> None:
    from mtlscore.asgi import MtlsMiddleware
    from mtlscore.proxy.headers import emit_client_cert, emit_client_cert_chain
    from mtlscore.proxy.trusted import TrustedProxy

    url = server.url("/asgi.crl")
    good = world.inter.leaf("CN=asgi-good", crl_urls=[url])
    bad = world.inter.leaf("CN=asgi-revoked", crl_urls=[url])
    server.routes["/asgi.crl"] = Route(world.inter.crl(revoked=[bad], this_update=NOW - _H, next_update=NOW + _H))
    lb = TrustedProxy(name="lb", networks=("127.0.0.1/32",))

    def direct(leaf: pki.Issued) -> dict[str, Any]:
        chain = [leaf.pem.decode(), world.inter.pem.decode()]
        return {"type": "http", "method": "GET", "path": "/", "headers": [], "client": ("192.0.2.9", 1),
                "extensions": {"tls": {"client_cert_chain": chain}}}

    def forwarded(leaf: pki.Issued) -> dict[str, Any]:
        from mtlscore.x509 import parse_certificate

        headers = [(b"client-cert", emit_client_cert(parse_certificate(leaf.der)).encode()),
                   (b"client-cert-chain", emit_client_cert_chain([parse_certificate(world.inter.der)]).encode())]
        return {"type": "http", "method": "GET", "path": "/", "headers": headers, "client": ("127.0.0.1", 2)}

    async def status(mw: MtlsMiddleware, scope: dict[str, Any]) -> tuple[int, str | None]:
        sent: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        mw.app = app
        await mw(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return sent[0]["status"], (json.loads(body)["error"] if body else None)

    policy = Policy(fetch=True, revocation="hard", revocation_ca="off")
    fetcher = fetcher_for(anyio_backend, timeout=10)
    mw = MtlsMiddleware(None, Validator(world.trust(), policy), proxies=[lb], fetcher=fetcher,  # type: ignore[arg-type]
                        clock=lambda: NOW)
    assert await status(mw, direct(good)) == (200, None)
    assert await status(mw, direct(bad)) == (403, "revoked")
    assert await status(mw, forwarded(good)) == (200, None)
    assert await status(mw, forwarded(bad)) == (403, "revoked")
    assert server.hits["/asgi.crl"] == 1 and fetcher.fetches == 1  # one fetch, then the revocation cache
    # Without a fetcher the validator only asks: hard-fail refuses for lack of data.
    plain = MtlsMiddleware(None, Validator(world.trust(), policy), proxies=[lb], clock=lambda: NOW)  # type: ignore[arg-type]
    assert await status(plain, direct(good)) == (403, "revocation_unavailable")
    assert server.hits["/asgi.crl"] == 1
