"""OAuth client authentication with TLS client certificates (RFC 8705), for any authorization server.

A :class:`ClientRegistry` holds each client's RFC 8705 / RFC 7591 metadata by
``client_id``; :meth:`ClientRegistry.authenticate` takes the request's
``client_id`` and what the TLS layer established (the presented certificate
and mtlscore's verdict on it) and answers authenticated, or ``invalid_client``
with the reason::

    registry = ClientRegistry({
        "partner-abc": {"token_endpoint_auth_method": "tls_client_auth",
                        "tls_client_auth_subject_dn": "CN=partner-abc,O=PartnerABC"},
        "fintech-app": {"token_endpoint_auth_method": "self_signed_tls_client_auth",
                        "jwks_uri": "https://fintech.example/jwks.json"},
    })
    result = registry.authenticate(client_id, certificate=leaf, verdict=verdict, at=now_utc, now=monotonic)
    if result.need:            # a jwks_uri to fetch first (sans-IO): fetch, then ask again
        ...
    if not result.ok:
        err = result.error()   # 401 invalid_client, the reason in error_description
    claims["cnf"] = result.cnf # RFC 8705 §3.1: bind the access token to this certificate

:func:`authenticate` does the fetching loop with any async fetcher (the
runtimes' ``AsyncioFetcher`` / ``TrioFetcher``), and :func:`server_metadata`
writes the RFC 8414 / RFC 8705 §5 authorization-server metadata.
``mtlscore.integrations.authlib`` plugs this into Authlib.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NotRequired, TypedDict, Unpack

from .decision.verdict import Verdict
from .identity.binding import METHODS, Method, OAuthError, TlsClientAuth, cnf_claim, oauth_error
from .identity.identity_map import Principal
from .identity.jwks import JwksCache, NeedJwks, check_jwks_uri, parse_jwks
from .identity.self_signed import SelfSignedClient, SelfSignedMatch, match
from .reasons import CertificateRejected, ConfigError, Reason
from .types import JSONObject, JSONValue
from .x509.cert import Certificate, load_certificates

__all__ = [
    "METHODS",
    "UNKNOWN_CLIENT",
    "Client",
    "ClientAuthResult",
    "ClientRegistry",
    "Presented",
    "authenticate",
    "cnf_claim",
    "server_metadata",
]

# The client_id names no registered client (or none was sent): invalid_client too.
UNKNOWN_CLIENT = "unknown_client"
# The client registered another token_endpoint_auth_method than this call accepts.
METHOD_NOT_ALLOWED = "method_not_allowed"
_TLS_NAMES = ("tls_client_auth_subject_dn", "tls_client_auth_san_dns", "tls_client_auth_san_uri",
              "tls_client_auth_san_ip", "tls_client_auth_san_email")


@dataclass(frozen=True, slots=True)
class Client:
    """One registered client: ``client_id``, its method, and what authenticates it.

    Build with :meth:`from_metadata`; ``metadata`` keeps every member given.
    """

    client_id: str
    method: Method
    tls: TlsClientAuth | None = None
    jwks: Mapping[str, object] | None = field(default=None, compare=False)
    jwks_uri: str | None = None
    metadata: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_metadata(cls, client_id: str, metadata: Mapping[str, object]) -> Client:
        """Read RFC 8705 §2 metadata. Raises ConfigError naming ``clients.<id>.<member>``."""
        prefix = f"clients.{client_id}"
        if not isinstance(client_id, str) or not client_id:
            raise ConfigError("a client_id must be a non-empty string", key="clients")
        if not isinstance(metadata, Mapping):
            raise ConfigError("must be a table of client metadata", key=prefix)
        method = metadata.get("token_endpoint_auth_method")
        if method not in METHODS:
            raise ConfigError(f"must be one of {', '.join(METHODS)}, not {method!r}",
                              key=f"{prefix}.token_endpoint_auth_method")
        if method == "tls_client_auth":
            if metadata.get("jwks") is not None or metadata.get("jwks_uri") is not None:
                # RFC 8705 §2.1: PKI clients are known by a name; keys would be a second, unchecked credential.
                raise ConfigError("tls_client_auth clients are known by a certificate name, not by jwks",
                                  key=f"{prefix}.jwks")
            try:
                tls = TlsClientAuth.from_metadata(metadata)
            except ConfigError as exc:
                raise ConfigError(exc.message, key=f"{prefix}.{exc.key}") from None
            return cls(client_id, method, tls=tls, metadata=dict(metadata))
        given = [n for n in _TLS_NAMES if metadata.get(n) is not None]
        if given:
            raise ConfigError("self_signed_tls_client_auth clients are known by their keys, not a name",
                              key=f"{prefix}.{given[0]}")
        raw_jwks, raw_uri = metadata.get("jwks"), metadata.get("jwks_uri")
        # RFC 7591 §2: jwks and jwks_uri MUST NOT both be present.
        if (raw_jwks is None) == (raw_uri is None):
            raise ConfigError("give jwks or jwks_uri (exactly one, RFC 7591 §2)", key=f"{prefix}.jwks")
        jwks = parse_jwks(raw_jwks, key=f"{prefix}.jwks") if raw_jwks is not None else None
        uri = check_jwks_uri(raw_uri, key=f"{prefix}.jwks_uri") if raw_uri is not None else None
        return cls(client_id, method, jwks=jwks, jwks_uri=uri, metadata=dict(metadata))


@dataclass(frozen=True, slots=True)
class ClientAuthResult:
    """Authenticated (``ok``), refused (``reason``, ``detail``), or waiting for keys (``need``)."""

    ok: bool
    client_id: str | None
    client: Client | None = None
    reason: str | None = None
    detail: str = ""
    certificate: Certificate | None = None
    need: NeedJwks | None = None
    # self_signed_tls_client_auth: the registered JWK the certificate matched.
    jwk: Mapping[str, object] | None = field(default=None, compare=False)

    @property
    def cnf(self) -> dict[str, str]:
        """The ``cnf`` claim binding an access token to the authenticated certificate (RFC 8705 §3.1).

        Raises ConfigError when the client is not authenticated.
        """
        if not self.ok or self.certificate is None:
            raise ConfigError("only an authenticated client's certificate can be bound", key="cnf")
        return cnf_claim(self.certificate)

    def error(self) -> OAuthError:
        """The token endpoint's answer for a refusal: 401 ``invalid_client`` (RFC 6749 §5.2)."""
        return oauth_error(self.reason or UNKNOWN_CLIENT, endpoint="token", detail=self.detail)


def _refused(client_id: str | None, reason: Reason | str, detail: str, client: Client | None = None,
             cert: Certificate | None = None) -> ClientAuthResult:
    code = reason.value if isinstance(reason, Reason) else reason
    return ClientAuthResult(False, client_id, client, code, detail, cert)


def _certificate(certificate: Certificate | bytes | str | None, verdict: Verdict | None) -> Certificate | None:
    if isinstance(certificate, Certificate):
        return certificate
    if certificate is not None:
        return load_certificates(certificate, max_count=1)[0]
    if verdict is not None and verdict.path:
        return verdict.path[0]
    return None


class ClientRegistry:
    """Clients by ``client_id`` with their RFC 8705 metadata; keys behind a ``jwks_uri`` in ``cache``.

    Construction raises ConfigError naming the client and member.
    """

    def __init__(
        self,
        clients: Mapping[str, Mapping[str, object]] | Iterable[Client] = (),
        *,
        cache: JwksCache | None = None,
    ) -> None:
        self.cache = cache if cache is not None else JwksCache()
        self._clients: dict[str, Client] = {}
        items: Iterable[Client] = (
            [Client.from_metadata(cid, meta) for cid, meta in clients.items()]
            if isinstance(clients, Mapping) else clients
        )
        for c in items:
            self.add(c)

    def add(self, client: Client) -> None:
        """Register (or replace) ``client``."""
        self._clients[client.client_id] = client

    def get(self, client_id: str | None) -> Client | None:
        """The client registered as ``client_id``, or None."""
        return self._clients.get(client_id) if isinstance(client_id, str) else None

    def __len__(self) -> int:
        return len(self._clients)

    def authenticate(
        self,
        client_id: str | None,
        *,
        certificate: Certificate | bytes | str | None,
        verdict: Verdict | None,
        at: datetime,
        now: float = 0.0,
        methods: Sequence[str] = METHODS,
    ) -> ClientAuthResult:
        """Authenticate ``client_id`` by the TLS client certificate. Never raises on the client's input.

        ``certificate``: the leaf presented in the handshake (parsed, DER or PEM;
        default: the verdict's leaf); ``verdict``: mtlscore's verdict on the
        presented chain. ``tls_client_auth`` (§2.1) needs an accepted verdict
        for this very certificate and the registered name in it;
        ``self_signed_tls_client_auth`` (§2.2) needs the certificate's key in
        the registered JWK Set (no CA involved). ``now`` (monotonic seconds)
        times the JWKS cache; a result with ``need`` asks for that JWK Set to be
        fetched into :attr:`cache` first.
        """
        client = self.get(client_id)
        if client is None:
            return _refused(client_id, UNKNOWN_CLIENT, f"no client is registered as {client_id!r}"
                            if client_id else "the request names no client_id")
        if client.method not in methods:
            return _refused(client_id, METHOD_NOT_ALLOWED,
                            f"client {client_id!r} registered {client.method}, not one of {', '.join(methods)}",
                            client)
        try:
            cert = _certificate(certificate, verdict)
        except CertificateRejected as exc:
            return _refused(client_id, exc.reason, exc.detail, client)
        if cert is None:
            return _refused(client_id, Reason.NOT_PROVIDED,
                            f"client {client_id!r} authenticates with a TLS client certificate; none was presented",
                            client)
        if client.method == "tls_client_auth":
            return self._pki(client, cert, verdict)
        return self._self_signed(client, cert, at, now)

    def _pki(self, client: Client, cert: Certificate, verdict: Verdict | None) -> ClientAuthResult:
        cid = client.client_id
        # RFC 8705 §2.1: the chain must be validated, and the validated leaf be the one presented.
        if verdict is None or not verdict.ok or not verdict.path:
            reason = verdict.reason if verdict is not None and verdict.reason else Reason.UNTRUSTED
            detail = verdict.detail if verdict is not None else "the certificate's chain was not validated"
            return _refused(cid, reason, detail, client, cert)
        if verdict.path[0].sha256 != cert.sha256:
            return _refused(cid, Reason.UNTRUSTED, "the verdict is about another certificate than the one presented",
                            client, cert)
        assert client.tls is not None
        try:
            client.tls.check(cert)
        except CertificateRejected as exc:
            return _refused(cid, exc.reason, f"client {cid!r}: {exc.detail}", client, cert)
        return ClientAuthResult(True, cid, client, certificate=cert)

    def _self_signed(self, client: Client, cert: Certificate, at: datetime, now: float) -> ClientAuthResult:
        cid = client.client_id
        registered = SelfSignedClient(Principal(cid), jwks=client.jwks, jwks_uri=client.jwks_uri)
        try:
            found = match([registered], cert, at=at, now=now, cache=self.cache)
        except CertificateRejected as exc:
            return _refused(cid, exc.reason, f"client {cid!r}: {exc.detail}", client, cert)
        if isinstance(found, NeedJwks):
            return ClientAuthResult(False, cid, client, certificate=cert, need=found)
        assert isinstance(found, SelfSignedMatch)
        return ClientAuthResult(True, cid, client, certificate=cert, jwk=found.jwk)


FetchJwks = Callable[[JwksCache, NeedJwks], Awaitable[object]]


class Presented(TypedDict):
    """The keyword arguments of :meth:`ClientRegistry.authenticate`, which :func:`authenticate` passes on."""

    certificate: Certificate | bytes | str | None
    verdict: Verdict | None
    at: datetime
    now: NotRequired[float]
    methods: NotRequired[Sequence[str]]


async def authenticate(
    registry: ClientRegistry, fetch: FetchJwks, client_id: str | None, **presented: Unpack[Presented]
) -> ClientAuthResult:
    """:meth:`ClientRegistry.authenticate`, fetching JWK Sets it asks for with ``fetch(cache, request)``.

    Takes the method's keyword arguments (``certificate``, ``verdict``, ``at``, ``now``,
    ``methods``). ``fetch`` is e.g. ``lambda cache, req: fetcher.jwks(cache, req, now=now)``
    with a runtime fetcher. The cache's intervals bound the rounds; after a few the answer stands.
    """
    for _ in range(4):
        result = registry.authenticate(client_id, **presented)
        if result.need is None:
            return result
        await fetch(registry.cache, result.need)
    return _refused(client_id, Reason.NOT_ALLOWLISTED, "the client's keys could not be had", result.client,
                    result.certificate)


def _https(url: object, key: str) -> str:
    if not isinstance(url, str) or not url.lower().startswith("https://"):
        raise ConfigError(f"must be an https URL, not {url!r}", key=key)
    return check_jwks_uri(url, key=key)


def server_metadata(
    issuer: str,
    *,
    token_endpoint: str,
    mtls_endpoint_aliases: Mapping[str, str] | None = None,
    methods: Sequence[str] = METHODS,
    bound_tokens: bool = True,
    **extra: JSONValue,
) -> JSONObject:
    """Authorization-server metadata (RFC 8414 §2) with RFC 8705's members.

    ``token_endpoint_auth_methods_supported`` lists ``methods``;
    ``tls_client_certificate_bound_access_tokens`` (§3.3) says tokens carry
    ``cnf``; ``mtls_endpoint_aliases`` (§5) names the endpoints served on a host
    that asks for client certificates (e.g. ``{"token_endpoint":
    "https://mtls.as.example/token"}``). ``extra`` members are added as given.
    Raises ConfigError for a non-https URL or an unknown method.
    """
    out: JSONObject = {
        "issuer": _https(issuer, "issuer"),
        "token_endpoint": _https(token_endpoint, "token_endpoint"),
    }
    bad = [m for m in methods if not isinstance(m, str)]
    if bad or not methods:
        raise ConfigError("must be a non-empty list of method names", key="token_endpoint_auth_methods_supported")
    out["token_endpoint_auth_methods_supported"] = list(methods)
    out["tls_client_certificate_bound_access_tokens"] = bool(bound_tokens)
    if mtls_endpoint_aliases:
        out["mtls_endpoint_aliases"] = {
            name: _https(url, f"mtls_endpoint_aliases.{name}") for name, url in mtls_endpoint_aliases.items()
        }
    out.update(extra)
    return out
