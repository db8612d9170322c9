"""Issue #19 on real sockets, both runtimes: accounts whose keys live at a jwks_uri served by a
real loopback HTTP server that rotates them mid-test — token-signing keys (``token.jwks_uri``)
and RFC 8705 §2.2 self-signed clients registered by key (``method =
"self_signed_tls_client_auth"``) — plus per-account ``token_algorithms``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_fetch import Route, Server, server  # noqa: F401 - fixtures
from test_gateway import Env, anyio_backend, call, env, gateway, request  # noqa: F401 - fixtures

from mtlscore import pki
from mtlscore.jwt import issue_bound_token
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_certificate, jwk_from_public_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def write(env: Env, name: str, issued: pki.Issued) -> None:  # noqa: F811
    (env.dir / f"{name}.pem").write_bytes(issued.chain_pem if issued.parent else issued.pem)
    (env.dir / f"{name}.key").write_bytes(issued.key_pem)


def self_signed(cn: str) -> pki.Issued:
    return pki.root(f"CN={cn}", ca=False, eku=[pki.CLIENT_AUTH], now=datetime.now(UTC))


def keyset(*jwks: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(jwks)}).encode()


def token(key: Any, leaf: pki.Issued, kid: str, alg: str = "ES256") -> dict[str, str]:
    now = datetime.now(UTC)
    claims = {"iss": "https://as.test", "exp": int((now + timedelta(minutes=10)).timestamp())}
    return {"Authorization": "Bearer " + issue_bound_token(claims, key, parse_certificate(leaf.der), kid=kid,
                                                           algorithm=alg)}


def config(env: Env, name: str, server: Server) -> Path:  # noqa: F811
    path = env.config(name, tls_engine="auto")
    accounts = f"""
[[accounts]]
id = "rotating"
match = {{ cn = "rotating" }}
token.jwks_uri = "{server.url('/as-jwks')}"
token.issuer = "https://as.test"
token_algorithms = ["ES256", "PS256"]

[[accounts]]
id = "selfie"
method = "self_signed_tls_client_auth"
jwks_uri = "{server.url('/client-jwks')}"

[[accounts]]
id = "selfie-inline"
method = "self_signed_tls_client_auth"
jwks_file = "inline-client.jwks"

[server]"""
    # [server] is the file's last table: the JWKS limits go at its end.
    path.write_text(path.read_text().replace("[server]", accounts, 1)
                    + "jwks = { refresh_interval_seconds = 0.001, retry_interval_seconds = 0.001 }\n")
    return path


@pytest.mark.anyio
async def test_jwks_uri_accounts_with_rotation(env: Env, server: Server, anyio_backend: str) -> None:  # noqa: F811
    rotating = env.issuing.leaf("CN=rotating,O=PartnerABC")
    selfie, selfie2, inline, stranger = (self_signed(n) for n in ("selfie", "selfie-new", "inline", "stranger"))
    for name, issued in (("rotating", rotating), ("selfie", selfie), ("selfie2", selfie2), ("inline", inline),
                         ("stranger", stranger)):
        write(env, name, issued)
    (env.dir / "inline-client.jwks").write_bytes(keyset(jwk_from_certificate(parse_certificate(inline.der))))
    k1, k2, rsa, rogue = pki.new_key("ec"), pki.new_key("ec"), pki.new_key("rsa"), pki.new_key("ec")
    server.routes["/as-jwks"] = Route(keyset(jwk_from_public_key(k1, kid="k1"), jwk_from_public_key(rsa, kid="r")),
                                      headers={"Cache-Control": "max-age=300"})
    server.routes["/client-jwks"] = Route(keyset(jwk_from_certificate(parse_certificate(selfie.der))))
    path = config(env, f"jwks-{anyio_backend}.toml", server)

    async with gateway(path, anyio_backend) as info:
        port = info.address.port

        async def ask(cert: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
            status, _, body = await call(request, env, port, cert, headers=headers)
            return status, json.loads(body)

        status, body = await ask("rotating", token(k1, rotating, "k1"))
        assert (status, body["account"], body["credential"]) == (200, "rotating", "bound_token"), body
        assert server.hits["/as-jwks"] == 1
        status, body = await ask("rotating", token(k1, rotating, "k1"))
        assert status == 200 and server.hits["/as-jwks"] == 1  # cached (max-age=300)

        # The AS rotates to k2 mid-test: the first k2 token makes the gateway refetch once.
        server.routes["/as-jwks"] = Route(keyset(jwk_from_public_key(k2, kid="k2")))
        status, body = await ask("rotating", token(k2, rotating, "k2"))
        assert status == 200, body
        assert server.hits["/as-jwks"] == 2
        # The retired k1 and a forged kid are refused with the reason.
        status, body = await ask("rotating", token(k1, rotating, "k1"))
        assert status == 401 and body["error"] == "credential_invalid" and "kid 'k1'" in body["detail"]
        status, body = await ask("rotating", token(rogue, rotating, "k2"))
        assert status == 401 and "does not verify" in body["detail"]
        # token_algorithms: RS256 is not in ["ES256", "PS256"] even with a registered RSA key.
        server.routes["/as-jwks"] = Route(keyset(jwk_from_public_key(k2, kid="k2"), jwk_from_public_key(rsa, kid="r")))
        status, body = await ask("rotating", token(rsa, rotating, "r", "RS256"))
        assert status == 401 and "alg 'RS256' is not allowed" in body["detail"], body
        status, body = await ask("rotating", token(rsa, rotating, "r", "PS256"))
        assert status == 200, body
        # The AS answers junk: the last good keys stay in use.
        server.routes["/as-jwks"] = Route(b"<html>maintenance</html>")
        status, body = await ask("rotating", token(rogue, rotating, "zz"))  # a miss triggers a refetch
        assert status == 401
        status, body = await ask("rotating", token(k2, rotating, "k2"))
        assert status == 200, body

        # RFC 8705 §2.2: a self-signed client registered by key at a jwks_uri.
        status, body = await ask("selfie")
        assert (status, body["account"]) == (200, "selfie"), body
        status, body = await ask("inline")
        assert (status, body["account"]) == (200, "selfie-inline"), body
        status, body = await ask("stranger")
        assert status == 403 and body["error"] == "not_allowlisted", body
        # The client rotates its certificate (new key): registered at its jwks_uri, accepted.
        status, body = await ask("selfie2")
        assert status == 403 and body["error"] == "not_allowlisted"
        server.routes["/client-jwks"] = Route(keyset(jwk_from_certificate(parse_certificate(selfie.der)),
                                                     jwk_from_certificate(parse_certificate(selfie2.der))))
        status, body = await ask("selfie2")
        assert (status, body["account"]) == (200, "selfie"), body


@pytest.mark.anyio
async def test_fapi2_account_refuses_weak_tls_and_rs256(env: Env, anyio_backend: str) -> None:  # noqa: F811
    import http.client
    import ssl

    fapi = env.issuing.leaf("CN=fapi,O=PartnerABC")
    write(env, "fapi", fapi)
    rsa = pki.new_key("rsa")
    path = env.config(f"fapi-{anyio_backend}.toml")
    jwks = json.dumps({"keys": [jwk_from_public_key(rsa, kid="r")]})
    path.write_text(path.read_text().replace("[server]", f"""
[[accounts]]
id = "fapi"
match = {{ cn = "fapi" }}
profile = "fapi2"
token.jwks = '{jwks}'

[server]""", 1))

    def ask(headers: dict[str, str], *, weak: bool) -> tuple[int, dict[str, Any]]:
        ctx = env.client_context("fapi")
        if weak:  # TLS 1.2 with a CBC suite: fine for TLS, not for FAPI 2.0 (RFC 9325 §4.2: AEAD only)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256")
        c = http.client.HTTPSConnection("localhost", info.address.port, context=ctx, timeout=10)
        c.request("GET", "/", headers=headers)
        r = c.getresponse()
        body = json.loads(r.read())
        c.close()
        return r.status, body

    async with gateway(path, anyio_backend) as info:
        ps256 = token(rsa, fapi, "r", "PS256")
        status, body = await call(ask, ps256, weak=False)
        assert status == 200 and body["account"] == "fapi", body
        status, body = await call(ask, token(rsa, fapi, "r", "RS256"), weak=False)
        assert status == 401 and "RS256" in body["detail"], body
        status, body = await call(ask, ps256, weak=True)
        assert (status, body["error"]) == (403, "insecure_tls"), body


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ["ssl", "deferred"])
async def test_server_tls_profile_fapi2_refuses_other_suites_in_the_handshake(
    env: Env, anyio_backend: str, engine: str  # noqa: F811
) -> None:
    import ssl

    path = env.config(f"tls-fapi-{anyio_backend}-{engine}.toml", tls_engine=engine, tls_profile="fapi2",
                      mode="allow_invalid_or_missing" if engine == "deferred" else "reject_invalid")

    def handshake(ciphers: str | None) -> str:
        ctx = env.client_context("good")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if ciphers:
            ctx.set_ciphers(ciphers)
        import socket

        with socket.create_connection(("127.0.0.1", info.address.port), timeout=10) as raw:
            try:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    return str(tls.cipher()[0])
            except ssl.SSLError as exc:
                return f"refused: {exc.reason}"

    async with gateway(path, anyio_backend) as info:
        aead = await call(handshake, None)
        cbc = await call(handshake, "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA")
    assert aead in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                    "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"), aead
    assert cbc.startswith("refused"), cbc
