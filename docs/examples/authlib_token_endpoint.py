"""An OAuth 2.0 token endpoint with RFC 8705 mTLS client authentication: Authlib + mtlscore.

A raw ASGI app (no web framework) serving ``POST /token`` (client credentials)
and ``GET /.well-known/oauth-authorization-server``. Clients authenticate with
their TLS client certificate only — ``tls_client_auth`` (a CA-issued
certificate carrying the registered name) or ``self_signed_tls_client_auth``
(a certificate whose key the client registered) — and the JWT access token is
bound to that certificate (``cnf.x5t#S256``). Run it under uvicorn with mtlscore
terminating TLS (the deferred engine accepts any client certificate in the
handshake; this app decides)::

    import uvicorn
    from mtlscore.runtimes.uvicorn_tls import uvicorn_tls
    uvicorn.run(create_app("/path/to/as"), host="0.0.0.0", port=8443,
                **uvicorn_tls(certificate="server.pem", key="server.key"))

The directory holds ``trust.pem`` (the CAs of PKI clients), ``clients.json``
(client_id → RFC 8705 metadata), ``signing.key`` (the AS's EC P-256 key, PEM)
and ``issuer.txt``. Self-signed clients need no CA bundle: their registered
keys (``jwks`` or ``jwks_uri``) are what authenticates them.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Request, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from joserfc.jwk import ECKey

from mtlscore import TrustStore, Validator
from mtlscore.identity.jwks import JwksCache, JwksLimits
from mtlscore.integrations.authlib import (
    MTLS_METHODS,
    MtlsClientAuth,
    MtlsEvidence,
    MtlsJWTBearerTokenGenerator,
    attach,
)
from mtlscore.oauth import ClientRegistry, server_metadata
from mtlscore.runtimes.fetch_asyncio import AsyncioFetcher


class Client(ClientMixin):  # type: ignore[misc]
    """The application's client model: what Authlib asks of it."""

    def __init__(self, client_id: str, metadata: dict[str, Any]) -> None:
        self.client_id = client_id
        self.method = metadata["token_endpoint_auth_method"]
        self.scope = metadata.get("scope", "")

    def get_client_id(self) -> str:
        return self.client_id

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method == self.method

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.scope.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)


class ClientCredentials(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(MTLS_METHODS)  # certificates only: no secrets


class AsgiRequest(OAuth2Request):  # type: ignore[misc]
    def __init__(self, method: str, uri: str, headers: dict[str, str], form: dict[str, str]) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = BasicOAuth2Payload(form)
        self._form = form

    @property
    def form(self) -> dict[str, str]:
        return self._form


class Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, clients: dict[str, Client]) -> None:
        super().__init__()
        self.clients = clients

    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        pass  # JWT access tokens: nothing to store

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request  # the ASGI glue below builds it

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> tuple[int, list[Any], bytes]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return status, list(headers), data


def create_app(directory: str | None = None, *, jwks_limits: JwksLimits | None = None) -> Any:
    """The ASGI app; ``jwks_limits`` tunes the cache of clients' ``jwks_uri`` keys."""
    d = pathlib.Path(directory or os.environ["AS_DIR"])
    issuer = (d / "issuer.txt").read_text().strip()
    metadata = json.loads((d / "clients.json").read_text())
    registry = ClientRegistry(metadata, cache=JwksCache(jwks_limits or JwksLimits()))
    validator = Validator(TrustStore([(d / "trust.pem").read_bytes()]))
    signing = ECKey.import_key((d / "signing.key").read_bytes())
    fetcher = AsyncioFetcher(timeout=5.0)

    class Tokens(MtlsJWTBearerTokenGenerator):
        def get_jwks(self) -> Any:
            return signing

        def get_audiences(self, client: Any, user: Any, scope: Any) -> str:
            return issuer

    server = Server({cid: Client(cid, meta) for cid, meta in metadata.items()})
    MtlsClientAuth(registry).register(server)
    server.register_grant(ClientCredentials)
    server.register_token_generator("default", Tokens(issuer, alg="ES256"))
    well_known = server_metadata(issuer, token_endpoint=f"{issuer}/token",
                                 mtls_endpoint_aliases={"token_endpoint": f"{issuer}/token"})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > 65536:
                break
            if not message.get("more_body"):
                break
        if scope["method"] == "GET" and scope["path"] == "/.well-known/oauth-authorization-server":
            status, headers, data = 200, [("Content-Type", "application/json")], json.dumps(well_known).encode()
        elif scope["method"] == "POST" and scope["path"] == "/token":
            status, headers, data = await token(scope, body)
        else:
            status, headers, data = 404, [("Content-Type", "text/plain")], b"not found\n"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers]})
        await send({"type": "http.response.body", "body": data})

    async def token(scope: dict[str, Any], body: bytes) -> tuple[int, list[Any], bytes]:
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        chain = [c.encode() for c in scope.get("extensions", {}).get("tls", {}).get("client_cert_chain", [])]
        at = datetime.now(UTC)
        verdict = validator.validate(b"".join(chain), at=at) if chain else None
        # A jwks_uri client's keys are fetched here (async), before Authlib runs (sync).
        from mtlscore.oauth import authenticate

        result = await authenticate(registry, lambda cache, req: fetcher.jwks(cache, req, now=time.monotonic()),
                                    form.get("client_id"), certificate=chain[0] if chain else None,
                                    verdict=verdict, at=at, now=time.monotonic())
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request = AsgiRequest("POST", f"{issuer}/token", headers, form)
        attach(request, MtlsEvidence(chain[0] if chain else None, verdict, result))
        status, out_headers, data = server.create_token_response(request)
        return int(status), out_headers, data

    return app
