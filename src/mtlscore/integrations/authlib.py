"""RFC 8705 mTLS client authentication for Authlib's ``AuthorizationServer`` (extra ``authlib``).

Authlib has no ``tls_client_auth`` / ``self_signed_tls_client_auth``; this
module registers both, backed by a :class:`mtlscore.oauth.ClientRegistry`,
and binds issued JWT access tokens to the client's certificate (``cnf``)::

    from mtlscore.integrations.authlib import MTLS_METHODS, MtlsClientAuth, MtlsJWTBearerTokenGenerator

    mtls = MtlsClientAuth(registry)
    mtls.register(server)                       # server: an authlib AuthorizationServer
    server.register_token_generator("default", MtlsJWTBearerTokenGenerator(issuer, ...))

    class ClientCredentials(grants.ClientCredentialsGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = list(MTLS_METHODS)

The framework glue (whatever builds Authlib's ``OAuth2Request``) puts what the
TLS layer established on the request before Authlib runs: :func:`attach`
(``request.mtls_evidence``: the presented certificate and mtlscore's verdict),
or the finished :class:`~mtlscore.oauth.ClientAuthResult` when the registry had
to fetch a ``jwks_uri`` first (:func:`mtlscore.oauth.authenticate`). A client
that fails is answered ``401 invalid_client`` with mtlscore's reason in
``error_description``. See docs/oauth.md for a complete token endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator

from ..decision.verdict import Verdict
from ..oauth import METHODS, ClientAuthResult, ClientRegistry
from ..x509.cert import Certificate

__all__ = ["MTLS_METHODS", "BoundClient", "MtlsClientAuth", "MtlsEvidence", "MtlsJWTBearerTokenGenerator", "attach"]

MTLS_METHODS = METHODS


@dataclass(frozen=True, slots=True)
class MtlsEvidence:
    """What the TLS layer established for one request: the leaf presented and mtlscore's verdict."""

    certificate: Certificate | bytes | str | None
    verdict: Verdict | None = None
    result: ClientAuthResult | None = None  # already authenticated (e.g. after fetching a jwks_uri)


def attach(request: OAuth2Request, evidence: MtlsEvidence) -> OAuth2Request:
    """Put ``evidence`` on Authlib's request for :class:`MtlsClientAuth` to read; returns the request."""
    request.mtls_evidence = evidence
    return request


class BoundClient:
    """The application's client model, plus the mTLS result it authenticated with (``mtls``).

    Attribute reads go to the wrapped client, so Authlib and the application
    see their own model; :class:`MtlsJWTBearerTokenGenerator` reads ``mtls``.
    """

    __slots__ = ("client", "mtls")

    def __init__(self, client: object, mtls: ClientAuthResult) -> None:
        object.__setattr__(self, "client", client)
        object.__setattr__(self, "mtls", mtls)

    def __getattr__(self, name: str) -> Any:
        # A transparent proxy: the application's model has whatever attributes it has.
        return getattr(object.__getattribute__(self, "client"), name)


# Authlib's client-auth function: (query_client, request) -> the client, None (not this method), or raise.
ClientAuthFunction = Callable[[Callable[[str], object], OAuth2Request], "BoundClient | None"]


class ClientAuthRegistrar(Protocol):
    """What :meth:`MtlsClientAuth.register` needs of Authlib's ``AuthorizationServer``."""

    def register_client_auth_method(self, method: str, func: ClientAuthFunction) -> None: ...


class MtlsClientAuth:
    """The two RFC 8705 client authentication methods, for ``AuthorizationServer.register_client_auth_method``.

    ``evidence``: how to get :class:`MtlsEvidence` from Authlib's request
    (default: ``request.mtls_evidence``, set by :func:`attach`). ``clock``:
    wall time for certificate validity (default: now, UTC).
    """

    def __init__(
        self,
        registry: ClientRegistry,
        *,
        evidence: Callable[[OAuth2Request], MtlsEvidence | None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.registry = registry
        self._evidence = evidence or (lambda request: getattr(request, "mtls_evidence", None))
        self._clock = clock or (lambda: datetime.now(UTC))

    def register(self, server: ClientAuthRegistrar) -> None:
        """Register ``tls_client_auth`` and ``self_signed_tls_client_auth`` with Authlib's server."""
        for method in MTLS_METHODS:
            server.register_client_auth_method(method, self.method(method))

    def method(self, method: str) -> ClientAuthFunction:
        """The Authlib client-auth function for ``method``."""

        def authenticate(query_client: Callable[[str], object], request: OAuth2Request) -> BoundClient | None:
            client_id = request.payload.client_id if request.payload is not None else None
            registered = self.registry.get(client_id)
            if registered is not None and registered.method != method:
                return None  # the client's own method decides (Authlib tries each)
            result = self._result(request, client_id)
            if not result.ok:
                # RFC 6749 §5.2: invalid_client, 401 for a failed client authentication.
                raise InvalidClientError(status_code=401, description=result.error().description)
            client = query_client(client_id) if client_id else None
            if not client:
                raise InvalidClientError(status_code=401, description=f"unknown_client: {client_id!r}")
            return BoundClient(client, result)

        authenticate.__name__ = f"authenticate_{method}"
        return authenticate

    def _result(self, request: OAuth2Request, client_id: str | None) -> ClientAuthResult:
        evidence = self._evidence(request)
        if evidence is None:
            evidence = MtlsEvidence(None)
        if evidence.result is not None:
            # Computed by the glue (it could fetch a jwks_uri); it must be about this client.
            if evidence.result.client_id == client_id:
                return evidence.result
            return ClientAuthResult(False, client_id, reason="unknown_client",
                                    detail="the mTLS result attached to the request is for another client")
        result = self.registry.authenticate(client_id, certificate=evidence.certificate, verdict=evidence.verdict,
                                            at=self._clock(), now=time.monotonic())
        if result.need is not None:
            return ClientAuthResult(False, client_id, result.client, "not_allowlisted",
                                    f"the keys at {result.need.url} are not fetched yet; authenticate with "
                                    "mtlscore.oauth.authenticate() and attach the result", result.certificate)
        return result


class MtlsJWTBearerTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    """Authlib's RFC 9068 JWT access tokens with ``cnf.x5t#S256`` of the client's certificate (RFC 8705 §3.1)."""

    def get_extra_claims(self, client: object, grant_type: str, user: object, scope: str | None) -> dict[str, object]:
        claims = dict(super().get_extra_claims(client, grant_type, user, scope) or {})
        mtls = getattr(client, "mtls", None)
        if isinstance(mtls, ClientAuthResult) and mtls.ok:
            claims["cnf"] = mtls.cnf
        return claims
