"""docs/examples/authlib_token_endpoint.py under real uvicorn (mtlscore's uvicorn_tls) with curl (issue #19): Authlib with
mtlscore's RFC 8705 client authentication — a PKI client, its rotated certificate, a self-signed
client registered at a jwks_uri (rotating its key mid-test), impostors → 401 invalid_client — and
the token issued then accepted by the mtlscore gateway and refused with another certificate."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _nginx as peers
import pytest
from test_fetch import Route, Server, server  # noqa: F401 - fixtures
from test_gateway import anyio_backend, call, gateway  # noqa: F401 - fixtures

from mtlscore import pki
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_certificate, jwk_from_public_key

pytest.importorskip("authlib")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "authlib_token_endpoint.py"
DN = "CN=partner-abc,O=PartnerABC"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("authlib_token_endpoint", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class World:
    def __init__(self, d: Path, jwks_url: str) -> None:
        now = datetime.now(UTC)
        self.dir = d
        self.root = pki.root("CN=Partner CA", now=now)
        other_ca = pki.root("CN=Other CA", now=now)
        server_ca = pki.root("CN=AS Server CA", now=now)
        as_server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_ip=["127.0.0.1"], san_dns=["localhost"])
        gw_server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_ip=["127.0.0.1"], san_dns=["localhost"])
        self.clients = {
            "pki": self.root.leaf(DN),
            "pki-rotated": self.root.leaf(DN),  # renewed: same name, new key
            "someone-else": self.root.leaf("CN=someone-else,O=PartnerABC"),
            "foreign-ca": other_ca.leaf(DN),  # the registered name under a CA the AS does not trust
            "selfie": pki.root("CN=fintech-app", ca=False, eku=[pki.CLIENT_AUTH], now=now),
            "selfie-rotated": pki.root("CN=fintech-app", ca=False, eku=[pki.CLIENT_AUTH], now=now),
            "selfie-impostor": pki.root("CN=fintech-app", ca=False, eku=[pki.CLIENT_AUTH], now=now),
        }
        for name, issued in self.clients.items():
            (d / f"{name}.pem").write_bytes(issued.chain_pem if issued.parent else issued.pem)
            (d / f"{name}.key").write_bytes(issued.key_pem)
        (d / "trust.pem").write_bytes(self.root.pem)
        (d / "server-ca.pem").write_bytes(server_ca.pem)
        (d / "server.pem").write_bytes(as_server.chain_pem)
        (d / "server.key").write_bytes(as_server.key_pem)
        (d / "gw.pem").write_bytes(gw_server.chain_pem)
        (d / "gw.key").write_bytes(gw_server.key_pem)
        (d / "gw.key").chmod(0o600)
        self.signing = pki.new_key("ec")
        from cryptography.hazmat.primitives import serialization

        (d / "signing.key").write_bytes(self.signing.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (d / "issuer.txt").write_text("https://127.0.0.1")
        (d / "clients.json").write_text(json.dumps({
            "partner-abc": {"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": DN,
                            "scope": "score"},
            "fintech-app": {"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks_uri": jwks_url,
                            "scope": "score"},
        }))

    def jwk(self, name: str) -> dict[str, Any]:
        return jwk_from_certificate(parse_certificate(self.clients[name].der))

    def post_token(self, port: int, who: str, client_id: str) -> peers.Reply:
        assert peers.CURL is not None
        cmd = [peers.CURL, "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", "--noproxy", "*",
               "--cacert", str(self.dir / "server-ca.pem"), "--cert", str(self.dir / f"{who}.pem"),
               "--key", str(self.dir / f"{who}.key"),
               "--data", f"grant_type=client_credentials&client_id={client_id}&scope=score",
               f"https://127.0.0.1:{port}/token"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        out, _, code = done.stdout.rpartition("\n")
        return peers.Reply(int(code) if code.isdigit() else 0, json.loads(out) if out else None, done.stderr)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # uvicorn runs in its own thread; the gateway below too
async def test_authlib_token_endpoint_under_uvicorn(tmp_path: Path, server: Server, anyio_backend: str) -> None:  # noqa: F811
    if peers.CURL is None:
        pytest.skip("curl not installed")
    pytest.importorskip("OpenSSL")
    from mtlscore.runtimes.uvicorn_tls import uvicorn_tls

    server.routes["/fintech-jwks"] = Route(b"")
    world = World(tmp_path, server.url("/fintech-jwks"))
    server.routes["/fintech-jwks"] = Route(json.dumps({"keys": [world.jwk("selfie")]}).encode(),
                                           headers={"Cache-Control": "max-age=60"})
    from mtlscore.identity.jwks import JwksLimits

    # A key rotation is picked up at once (the default waits refresh_interval between refetches).
    app = load_example().create_app(str(tmp_path), jwks_limits=JwksLimits(refresh_interval=0, retry_interval=0))
    # mtlscore terminates TLS inside uvicorn (deferred engine): no CA bundle, so the
    # self-signed clients are known by their registered keys alone.
    uv = peers.UvicornThread(app, **uvicorn_tls(certificate=tmp_path / "server.pem", key=tmp_path / "server.key"))
    await call(uv.start)
    try:
        meta = await call(peers.curl, f"https://127.0.0.1:{uv.port}/.well-known/oauth-authorization-server",
                          cacert=tmp_path / "server-ca.pem")
        assert meta.body["tls_client_certificate_bound_access_tokens"] is True
        assert "self_signed_tls_client_auth" in meta.body["token_endpoint_auth_methods_supported"]

        replies = {}
        for who, client_id in [("pki", "partner-abc"), ("pki-rotated", "partner-abc"), ("selfie", "fintech-app"),
                               ("someone-else", "partner-abc"), ("selfie-impostor", "fintech-app"),
                               ("selfie", "partner-abc"), ("pki", "fintech-app"), ("pki", "nobody"),
                               ("foreign-ca", "partner-abc")]:
            replies[(who, client_id)] = await call(world.post_token, uv.port, who, client_id)
        # The self-signed client rotates its key: registered at its jwks_uri, accepted at once.
        server.routes["/fintech-jwks"] = Route(json.dumps({"keys": [world.jwk("selfie"),
                                                                    world.jwk("selfie-rotated")]}).encode())
        rotated = await call(world.post_token, uv.port, "selfie-rotated", "fintech-app")
    finally:
        await call(uv.stop)

    for ok in [("pki", "partner-abc"), ("pki-rotated", "partner-abc"), ("selfie", "fintech-app")]:
        r = replies[ok]
        assert r.status == 200 and r.body["token_type"] == "Bearer", (ok, r)
    assert rotated.status == 200, rotated
    expected = {("someone-else", "partner-abc"): "identity_unmapped",
                ("selfie-impostor", "fintech-app"): "not_allowlisted",
                ("selfie", "partner-abc"): "untrusted",
                ("pki", "fintech-app"): "not_allowlisted",
                ("pki", "nobody"): "unknown_client",
                ("foreign-ca", "partner-abc"): "untrusted"}
    for case, reason in expected.items():
        r = replies[case]
        assert (r.status, r.body["error"]) == (401, "invalid_client"), (case, r)
        assert reason in r.body["error_description"], (case, r)

    # The issued token: cnf is the PKI client's certificate; the gateway accepts it with that
    # certificate and refuses it with the renewed one (another certificate, same account).
    from joserfc import jwt
    from joserfc.jwk import ECKey

    token = replies[("pki", "partner-abc")].body["access_token"]
    claims = jwt.decode(token, ECKey.import_key(world.signing.public_key())).claims
    assert claims["cnf"] == {"x5t#S256": parse_certificate(world.clients["pki"].der).x5t_s256}
    config = tmp_path / "gateway.toml"
    as_jwks = json.dumps({"keys": [jwk_from_public_key(world.signing, kid="as")]})
    config.write_text(f"""
[trust]
anchors = ["trust.pem"]

[[accounts]]
id = "partner-abc"
match = {{ subject_dn = "{DN}" }}
profile = "fapi2"
token.jwks = '{as_jwks}'
token.issuer = "https://127.0.0.1"

[server]
listen = "127.0.0.1:0"
certificate = "gw.pem"
key = "gw.key"
reload_poll_seconds = 0
""")
    async with gateway(config, "asyncio") as info:
        def whoami(who: str) -> peers.Reply:
            return peers.curl(f"https://127.0.0.1:{info.address.port}/", cacert=tmp_path / "server-ca.pem",
                              cert=tmp_path / f"{who}.pem", key=tmp_path / f"{who}.key",
                              headers={"Authorization": f"Bearer {token}"})

        accepted = await call(whoami, "pki")
        refused = await call(whoami, "pki-rotated")
    assert accepted.status == 200 and accepted.body["account"] == "partner-abc", accepted
    assert accepted.body["credential"] == "bound_token"
    assert (refused.status, refused.body["error"]) == (401, "binding_mismatch"), refused
