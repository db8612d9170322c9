"""End to end with real peers: curl → nginx (mTLS, optional_no_ca) → uvicorn/hypercorn → middleware.

Also: the reverse-proxy pattern of reference 002 (the proxy forwards the certificate,
the API compares the token's cnf x5t#S256 with it, 401 on mismatch), a client that
sends the certificate header itself (untrusted_proxy), uvicorn terminating mTLS
itself with :class:`MtlsH11Protocol`, nginx authenticating to the API with its own
certificate (proxy recognised by pin), and what hypercorn 0.18 provides.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from mtlscore import TrustStore, Validator, pki
from mtlscore.asgi import BoundToken, MtlsMiddleware
from mtlscore.identity.identity_map import IdentityMap, Rule
from mtlscore.jwt import issue_bound_token
from mtlscore.proxy.trusted import TrustedProxy
from mtlscore.runtimes.uvicorn_tls import MtlsH11Protocol
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_public_key

try:
    from . import _nginx as peers
except ImportError:  # tests/integration is not a package
    import _nginx as peers  # type: ignore[no-redef]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

if peers.NGINX is None:
    pytest.skip("nginx binary not found (Debian: apt-get install nginx-light or nginx)", allow_module_level=True)
if peers.CURL is None:
    pytest.skip("curl binary not found (Debian: apt-get install curl)", allow_module_level=True)

PROXY_ADDR = "127.0.0.2"  # nginx connects upstream from here; clients come from 127.0.0.1


# --- one PKI for the module, valid now (curl, nginx and stdlib ssl check real time) -------


class Files:
    def __init__(self, d: Path) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        self.dir = d
        client_root = pki.root("Partner Root CA", now=now)
        client_inter = client_root.intermediate("Partner Issuing CA")
        server_root = pki.root("Server Root CA", now=now)
        self.client_root, self.client_inter = client_root, client_inter
        self.server = server_root.leaf(
            "localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"], san_ip=["127.0.0.1"]
        )
        self.proxy = server_root.leaf("nginx-proxy.internal")  # nginx's own client certificate
        self.leaves = {
            "good": client_inter.leaf("partner-abc"),
            "other": client_inter.leaf("partner-abc"),  # same name, different key
            "stranger": client_inter.leaf("stranger"),
            # nginx checks the purpose itself (a serverAuth-only leaf gets its 400), but
            # a leaf without EKU passes nginx; mtlscore requires clientAuth by default.
            "no_eku": client_inter.leaf("partner-abc", eku=None),
            "ed25519": client_inter.leaf("partner-abc", key="ed25519"),
            "rogue": pki.root("Rogue Root CA", now=now).leaf("partner-abc"),
        }
        self.write("server_root.pem", server_root.pem)
        self.write("server.pem", self.server.pem + server_root.pem)
        self.write("server.key", self.server.key_pem)
        self.write("proxy.pem", self.proxy.pem)
        self.write("proxy.key", self.proxy.key_pem)
        self.write("client_cas.pem", client_root.pem + server_root.pem)
        for name, leaf in self.leaves.items():
            self.write(f"{name}.pem", leaf.chain_pem)
            self.write(f"{name}.key", leaf.key_pem)
        self.trust = TrustStore(anchors=[client_root.pem], intermediates=[client_inter.pem])
        self.idmap = IdentityMap([Rule.for_account("partner-abc", anchors=self.trust, cn="partner-abc")])
        self.as_key = pki.new_key("ec")
        self.jwks = {"keys": [jwk_from_public_key(self.as_key.public_key(), kid="as", alg="ES256")]}

    def write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path

    def path(self, name: str) -> Path:
        return self.dir / name

    def client(self, name: str) -> dict[str, Path]:
        return {"cert": self.path(f"{name}.pem"), "key": self.path(f"{name}.key")}

    def token(self, bound_to: str) -> str:
        now = datetime.now(UTC)
        claims = {
            "iss": "https://login.example.com",
            "aud": "api.example.com",
            "sub": "partner-client",
            "scope": "transactions",
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=5)).timestamp()),
        }
        cert = parse_certificate(self.leaves[bound_to].der)
        return issue_bound_token(claims, self.as_key, cert, algorithm="ES256", kid="as")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files(tmp_path_factory.mktemp("pki"))


async def whoami(request: Request) -> JSONResponse:
    verdict = request.state.mtls_verdict
    tls = request.scope.get("extensions", {}).get("tls")
    claims = request.state.mtls_token_claims or {}
    return JSONResponse(
        {
            "principal": request.state.mtls_principal.id,
            "x5t": verdict.path[0].x5t_s256,
            "path": len(verdict.path),
            "tls_chain": len(tls["client_cert_chain"]) if tls else None,
            "tls_source": tls.get("mtlscore.chain_source") if tls else None,
            "sub": claims.get("sub"),
        }
    )


def api(files: Files, proxies: list[TrustedProxy]) -> Starlette:
    """The API: every route behind the middleware; /bound also needs a cnf-bound token."""
    inner = Starlette(routes=[Route("/whoami", whoami), Route("/api/transactions", whoami, methods=["POST"])])
    validator = Validator(files.trust)
    plain = MtlsMiddleware(inner, validator, proxies=proxies, identity_map=files.idmap)
    # Reference 002: the proxy verified and forwarded the certificate; the API checks the
    # JWT and that its cnf x5t#S256 is this certificate's, and answers 401 otherwise.
    bound = MtlsMiddleware(
        inner,
        validator,
        proxies=proxies,
        identity_map=files.idmap,
        bound_token=BoundToken(jwks=files.jwks, issuer="https://login.example.com", audience="api.example.com"),
    )
    return Starlette(routes=[Mount("/bound", app=bound), Mount("/", app=plain)])


NGINX_TO_HTTP = """
server {{
    listen 127.0.0.1:{{port}} ssl;
    ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key;
    ssl_verify_client optional_no_ca;   # ask for a certificate; mtlscore decides
    location / {{
        proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
        proxy_bind {proxy_addr};
        proxy_pass http://127.0.0.1:{upstream};
    }}
}}
"""


@pytest.fixture(scope="module", params=["uvicorn", "hypercorn"])
def stack(request: pytest.FixtureRequest, files: Files, tmp_path_factory: pytest.TempPathFactory):
    """curl → nginx → {uvicorn, hypercorn} → MtlsMiddleware(Starlette)."""
    if not peers.loopback_alias_usable(PROXY_ADDR):
        pytest.skip(f"cannot bind {PROXY_ADDR} (a second loopback address)")
    proxies = [TrustedProxy(name="nginx", networks=(f"{PROXY_ADDR}/32",), format="nginx")]
    app = api(files, proxies)
    if request.param == "uvicorn":
        # The worst case for address-based trust: uvicorn believes X-Forwarded-For from
        # anyone. MtlsH11Protocol records the transport's real peer, which the middleware uses.
        server = peers.UvicornThread(app, http=MtlsH11Protocol, proxy_headers=True, forwarded_allow_ips="*")
    else:
        server = peers.HypercornThread(app)
    server.start()
    request.addfinalizer(server.stop)
    prefix = tmp_path_factory.mktemp(f"nginx-{request.param}")
    nginx = peers.Nginx(prefix, NGINX_TO_HTTP.format(d=files.dir, proxy_addr=PROXY_ADDR, upstream=server.port))
    request.addfinalizer(nginx.stop)
    nginx.start()
    return nginx, server


def error_of(reply: peers.Reply) -> object:
    return reply.body.get("error") if isinstance(reply.body, dict) else reply.body


def via_nginx(files: Files, nginx: peers.Nginx, path: str, who: str | None = None, **kw) -> peers.Reply:
    client = files.client(who) if who else {}
    return peers.curl(f"https://127.0.0.1:{nginx.port}{path}", cacert=files.path("server_root.pem"), **client, **kw)


def test_good_certificate_through_nginx(files, stack):
    nginx, _ = stack
    reply = via_nginx(files, nginx, "/whoami", "good")
    assert reply.status == 200, (reply, nginx.error_log())
    assert reply.body["principal"] == "partner-abc"
    assert reply.body["x5t"] == parse_certificate(files.leaves["good"].der).x5t_s256
    assert reply.body["path"] == 3  # nginx forwards the leaf; the pool supplies the intermediate


@pytest.mark.parametrize(
    ("who", "status", "error"),
    [
        (None, 401, "not_provided"),
        ("rogue", 403, "untrusted"),
        ("no_eku", 403, "invalid_eku"),
        ("ed25519", 403, "unsupported_key_algorithm"),
        ("stranger", 403, "identity_unmapped"),
    ],
)
def test_bad_certificates_through_nginx(files, stack, who, status, error):
    nginx, _ = stack
    reply = via_nginx(files, nginx, "/whoami", who)
    assert (reply.status, error_of(reply)) == (status, error), reply


def test_client_header_injected_through_nginx_is_replaced(files, stack):
    # proxy_set_header replaces the client's header of the same name; with no client
    # certificate the value is empty and nginx sends no header at all.
    nginx, _ = stack
    spoof = {"X-SSL-Client-Cert": files.leaves["good"].pem.decode().replace("\n", "%0A")}
    reply = via_nginx(files, nginx, "/whoami", headers=spoof)
    assert (reply.status, error_of(reply)) == (401, "not_provided"), reply


def test_header_sent_straight_to_the_api_is_untrusted_proxy(files, stack):
    _, server = stack
    from mtlscore.proxy.headers import emit_nginx_escaped_cert

    forged = emit_nginx_escaped_cert(parse_certificate(files.leaves["good"].der))
    reply = peers.curl(
        f"http://127.0.0.1:{server.port}/whoami",
        headers={"X-SSL-Client-Cert": forged, "X-Forwarded-For": PROXY_ADDR},
    )
    assert (reply.status, error_of(reply)) == (403, "untrusted_proxy"), reply


def test_reference_002_bound_token(files, stack):
    nginx, _ = stack
    ok = via_nginx(files, nginx, "/bound/whoami", "good", headers={"Authorization": f"Bearer {files.token('good')}"})
    assert ok.status == 200, ok
    assert ok.body["sub"] == "partner-client"
    # A token issued to another certificate (stolen and replayed): 401.
    stolen = via_nginx(
        files, nginx, "/bound/whoami", "good", headers={"Authorization": f"Bearer {files.token('other')}"}
    )
    assert (stolen.status, error_of(stolen)) == (401, "binding_mismatch"), stolen
    # The thief's own certificate with the victim's token: 401 as well.
    replay = via_nginx(
        files, nginx, "/bound/whoami", "other", headers={"Authorization": f"Bearer {files.token('good')}"}
    )
    assert (replay.status, error_of(replay)) == (401, "binding_mismatch"), replay
    missing = via_nginx(files, nginx, "/bound/whoami", "good")
    assert (missing.status, error_of(missing)) == (401, "invalid_token"), missing


# --- uvicorn terminating mTLS itself ----------------------------------------------------


def uvicorn_tls(files: Files, app) -> peers.UvicornThread:
    return peers.UvicornThread(
        app,
        http=MtlsH11Protocol,
        ssl_certfile=str(files.path("server.pem")),
        ssl_keyfile=str(files.path("server.key")),
        ssl_ca_certs=str(files.path("client_cas.pem")),
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
    )


@pytest.fixture(scope="module")
def direct(files: Files, request: pytest.FixtureRequest):
    """uvicorn with TLS and MtlsH11Protocol; nginx is trusted only by its own certificate."""
    pin = parse_certificate(files.proxy.der).x5t_s256
    proxies = [TrustedProxy(name="nginx-mtls", thumbprints=(pin,), format="nginx")]
    server = uvicorn_tls(files, api(files, proxies))
    server.start()
    request.addfinalizer(server.stop)
    return server


def test_uvicorn_tls_extension_carries_full_chain(files, direct):
    reply = peers.curl(
        f"https://127.0.0.1:{direct.port}/whoami", cacert=files.path("server_root.pem"), **files.client("good")
    )
    assert reply.status == 200, reply
    assert reply.body["principal"] == "partner-abc"
    assert reply.body["tls_chain"] == 2  # leaf + intermediate, as presented
    assert reply.body["tls_source"] == "chain"
    assert reply.body["path"] == 3


def test_uvicorn_tls_without_certificate(files, direct):
    reply = peers.curl(f"https://127.0.0.1:{direct.port}/whoami", cacert=files.path("server_root.pem"))
    assert (reply.status, error_of(reply)) == (401, "not_provided"), reply


def test_uvicorn_tls_unmapped(files, direct):
    reply = peers.curl(
        f"https://127.0.0.1:{direct.port}/whoami", cacert=files.path("server_root.pem"), **files.client("stranger")
    )
    assert (reply.status, error_of(reply)) == (403, "identity_unmapped"), reply


def test_uvicorn_tls_client_with_forged_header_is_untrusted_proxy(files, direct):
    from mtlscore.proxy.headers import emit_nginx_escaped_cert

    forged = emit_nginx_escaped_cert(parse_certificate(files.leaves["good"].der))
    reply = peers.curl(
        f"https://127.0.0.1:{direct.port}/whoami",
        cacert=files.path("server_root.pem"),
        headers={"X-SSL-Client-Cert": forged},
        **files.client("stranger"),
    )
    assert (reply.status, error_of(reply)) == (403, "untrusted_proxy"), reply


NGINX_TO_MTLS = """
server {{
    listen 127.0.0.1:{{port}} ssl;
    ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key;
    ssl_verify_client optional_no_ca;
    location / {{
        proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
        proxy_pass https://127.0.0.1:{upstream};
        proxy_ssl_certificate {d}/proxy.pem;        # nginx authenticates to the API
        proxy_ssl_certificate_key {d}/proxy.key;
        proxy_ssl_trusted_certificate {d}/server_root.pem;
        proxy_ssl_verify on;
        proxy_ssl_name localhost;
    }}
}}
"""


def test_nginx_recognised_by_its_own_certificate(files, direct, tmp_path):
    nginx = peers.Nginx(tmp_path, NGINX_TO_MTLS.format(d=files.dir, upstream=direct.port))
    try:
        nginx.start()
        good = via_nginx(files, nginx, "/whoami", "good")
        assert good.status == 200, (good, nginx.error_log())
        assert good.body["principal"] == "partner-abc"
        assert good.body["tls_chain"] == 1  # the TLS peer is nginx: its own certificate
        rogue = via_nginx(files, nginx, "/whoami", "rogue")
        assert (rogue.status, error_of(rogue)) == (403, "untrusted"), rogue
    finally:
        nginx.stop()


# --- hypercorn terminating TLS ----------------------------------------------------------


def test_hypercorn_0_18_gives_no_tls_extension(files, request):
    import hypercorn.asyncio.run
    from hypercorn.asyncio.tcp_server import TCPServer

    if hypercorn.asyncio.run.TCPServer is not TCPServer:
        pytest.skip("hypercorn_tls.serve already swapped hypercorn's TCPServer in this process")
    seen: dict[str, object] = {}

    async def probe(scope, receive, send):
        if scope["type"] != "http":
            return
        seen["extensions"] = sorted((scope.get("extensions") or {}).keys())
        await MtlsMiddleware(_ok, Validator(files.trust))(scope, receive, send)

    server = peers.HypercornThread(
        probe,
        certfile=str(files.path("server.pem")),
        keyfile=str(files.path("server.key")),
        ca_certs=str(files.path("client_cas.pem")),
        verify_mode=ssl.CERT_OPTIONAL,
    )
    server.start()
    request.addfinalizer(server.stop)
    reply = peers.curl(
        f"https://127.0.0.1:{server.port}/", cacert=files.path("server_root.pem"), **files.client("good")
    )
    # The handshake carried a valid client certificate, but the app cannot see it.
    assert "tls" not in seen["extensions"]
    assert (reply.status, error_of(reply)) == (401, "not_provided"), reply


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_hypercorn_with_mtlscore_serve_gets_the_chain(files, request):
    from mtlscore.runtimes.hypercorn_tls import serve

    pin = parse_certificate(files.proxy.der).x5t_s256
    app = api(files, [TrustedProxy(name="nginx-mtls", thumbprints=(pin,), format="nginx")])
    server = peers.HypercornThread(
        app,
        serve=serve,
        certfile=str(files.path("server.pem")),
        keyfile=str(files.path("server.key")),
        ca_certs=str(files.path("client_cas.pem")),
        verify_mode=ssl.CERT_OPTIONAL,
    )
    server.start()
    request.addfinalizer(server.stop)
    url = f"https://127.0.0.1:{server.port}/whoami"
    good = peers.curl(url, cacert=files.path("server_root.pem"), **files.client("good"))
    assert good.status == 200, good
    assert (good.body["principal"], good.body["tls_chain"], good.body["tls_source"]) == ("partner-abc", 2, "chain")
    none = peers.curl(url, cacert=files.path("server_root.pem"))
    assert (none.status, error_of(none)) == (401, "not_provided"), none
    from mtlscore.proxy.headers import emit_nginx_escaped_cert

    forged = emit_nginx_escaped_cert(parse_certificate(files.leaves["good"].der))
    spoof = peers.curl(
        url, cacert=files.path("server_root.pem"), headers={"X-SSL-Client-Cert": forged}, **files.client("stranger")
    )
    assert (spoof.status, error_of(spoof)) == (403, "untrusted_proxy"), spoof
