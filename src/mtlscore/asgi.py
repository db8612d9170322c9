"""ASGI middleware: mTLS verdict, identity and certificate-bound tokens for any ASGI app.

The client certificate comes from the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``, which uvicorn and hypercorn do
not fill — see :mod:`mtlscore.runtimes.uvicorn_tls`) or from the headers of a
trusted proxy (:mod:`mtlscore.proxy.trusted`). On success the verdict and principal go
into ``scope["state"]`` (Starlette: ``request.state.mtls_verdict``,
``request.state.mtls_principal``); on failure the middleware answers 401/403 with
a JSON body naming the reason, or, in ``allow`` mode, passes the failed verdict on.

Usage::

    nginx = TrustedProxy(networks=["10.0.0.5/32"], format="nginx")
    app = MtlsMiddleware(app, Validator(trust), proxies=[nginx])
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol, cast

from .decision.validator import Validator
from .decision.verdict import Verdict
from .gateway.preview import account_of
from .gateway.radar import Radar
from .identity.identity_map import IdentityMap, IdentityResolver
from .identity.jwks import JwksCache, JwksFetcher, JwksUnavailable, check_jwks_uri
from .proxy.trusted import Decision, ProxyPolicy, TrustedProxy, UseForwarded, UseTls, decision_verdict
from .reasons import CertificateRejected, MtlsError, Reason
from .types import ASGIApp, Receive, Scope, Send
from .x509.cert import Certificate, load_certificates

# TrustedProxy and ProxyPolicy are re-exported: configuring the middleware needs them.
__all__ = ["STATE_KEYS", "BoundToken", "Fetcher", "MtlsMiddleware", "ProxyPolicy", "TrustedProxy", "status_for"]


logger = logging.getLogger("mtlscore.asgi")

# Keys the middleware sets in scope["state"].
STATE_KEYS = ("mtls_verdict", "mtls_principal", "mtls_identity", "mtls_token_claims")

# Extension key our uvicorn/hypercorn hooks add: how the chain was obtained.
CHAIN_SOURCE_KEY = "mtlscore.chain_source"
# Extension key our server hooks add: the transport's real peer address, immune to
# X-Forwarded-For rewriting by server-side proxy-header middleware.
PEER_KEY = "mtlscore.peer"

# 401: the caller did not prove who it is (no certificate, token missing or not bound
# to this certificate — RFC 8705 §3 / RFC 6750 §3.1 invalid_token). 403: it presented
# a credential that is refused.
_STATUS_401 = frozenset({Reason.NOT_PROVIDED, Reason.BINDING_MISMATCH})


def status_for(reason: Reason | None) -> int:
    """The HTTP status the middleware answers for ``reason``."""
    return 401 if reason in _STATUS_401 else 403


@dataclasses.dataclass(frozen=True, slots=True)
class BoundToken:
    """Require a certificate-bound bearer token (RFC 8705 §3, ``cnf``/``x5t#S256``).

    Either ``jwks`` (the token is a JWT verified here with
    :func:`mtlscore.jwt.verify_bound_token`), or ``jwks_uri`` (the same, with the keys
    fetched by the middleware's ``fetcher`` into ``jwks_cache``: TTL from Cache-Control,
    one refetch on an unknown ``kid``, stale keys while refetches fail; see
    docs/gateway.md "Keys from a jwks_uri"), or ``claims`` (a callable returning the
    already-verified claims for the request, e.g. set by an earlier middleware; only
    the ``cnf`` check of :func:`mtlscore.identity.binding.check_cnf` runs). ``required``
    False lets requests without an ``Authorization: Bearer`` header through.
    """

    jwks: Mapping[str, object] | str | None = None
    claims: Callable[[Scope], Mapping[str, object] | None] | None = None
    jwks_uri: str | None = None
    jwks_cache: JwksCache = dataclasses.field(default_factory=JwksCache, compare=False, repr=False)
    issuer: str | None = None
    audience: str | None = None
    algorithms: tuple[str, ...] = ("PS256", "ES256", "RS256")
    required: bool = True

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.jwks, self.jwks_uri, self.claims)) != 1:
            from .reasons import ConfigError

            raise ConfigError("give exactly one of jwks, jwks_uri or claims", key="bound_token")
        if self.jwks_uri is not None:
            check_jwks_uri(self.jwks_uri, key="bound_token.jwks_uri")


class _TokenError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _headers(scope: Scope) -> Iterable[tuple[bytes, bytes]]:
    # ASGI HTTP and WebSocket scopes: "headers" is an iterable of [name, value] byte pairs
    # (the server's, which the middleware trusts to follow the spec).
    headers = scope.get("headers")
    return cast("Iterable[tuple[bytes, bytes]]", headers) if isinstance(headers, list | tuple) else ()


def _extensions(scope: Scope) -> Mapping[str, object]:
    ext = scope.get("extensions")
    return ext if isinstance(ext, Mapping) else {}


def _bearer(scope: Scope) -> str | None:
    for name, value in _headers(scope):
        if name.lower() == b"authorization":
            text = bytes(value).decode("latin-1").strip()
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _tls_chain(scope: Scope) -> tuple[tuple[Certificate, ...], str | None]:
    """The chain from the ASGI TLS extension and how the server obtained it.

    Raises :class:`CertificateRejected` when the server handed over garbage.
    """
    ext = _extensions(scope).get("tls")
    if not ext or not isinstance(ext, Mapping):
        return (), None
    pems = ext.get("client_cert_chain") or ()
    certs: list[Certificate] = []
    for pem in pems if isinstance(pems, list | tuple) else ():
        if not isinstance(pem, str | bytes):
            raise CertificateRejected(Reason.MALFORMED, f"client_cert_chain holds a {type(pem).__name__}, not PEM")
        certs.extend(load_certificates(pem.encode("ascii") if isinstance(pem, str) else pem))
    source = ext.get(CHAIN_SOURCE_KEY)
    return tuple(certs), source if isinstance(source, str) else None


class Fetcher(JwksFetcher, Protocol):
    """What the middleware needs of a runtime fetcher (``AsyncioFetcher``, ``TrioFetcher``):
    validate a chain with ``validator``, fetching the CRLs, OCSP answers and issuers it asks
    for, and fetch a ``jwks_uri`` into a cache (:class:`mtlscore.identity.jwks.JwksFetcher`)."""

    async def validate(
        self, validator: Validator, chain: list[Certificate], *, at: datetime, crls: Iterable[bytes] = ()
    ) -> Verdict: ...


class MtlsMiddleware:
    """Wrap an ASGI app: validate the client certificate, map identity, check bound tokens.

    ``validator`` decides on chains (give it an ``identity_map`` there, or here).
    ``proxies``: trusted proxies whose certificate headers are believed.
    ``fetcher``: a runtime fetcher (``AsyncioFetcher`` under uvicorn, ``TrioFetcher``
    under hypercorn's trio worker); when the validator's policy fetches, each
    chain is validated with it, waiting for the CRLs / OCSP answers / issuers it
    needs. Without one the validator decides from given CRLs and its caches.
    ``mode``: ``"reject"`` answers failures itself; ``"allow"`` passes every request
    on with the verdict in ``scope["state"]``. A self-signed certificate no anchor vouches
    for is an account of the identity map's ``self_signed_clients`` (``method =
    "self_signed_tls_client_auth"``) when its key is registered (keys of a ``jwks_uri``
    fetched by ``fetcher`` into ``jwks_cache``), else ``not_allowlisted``. ``clock`` returns the validation time
    (default ``datetime.now(UTC)``). ``radar``: an expiry radar
    (:class:`mtlscore.gateway.radar.Radar`) recording every accepted certificate; its
    warnings are logged on the ``mtlscore.asgi`` logger; serve :func:`mtlscore.gateway.radar.report`
    of it (``.to_json()``) where ``mtlscore certs`` can read it. Never raises for bad client input.
    """

    def __init__(
        self,
        app: ASGIApp,
        validator: Validator,
        *,
        proxies: ProxyPolicy | Sequence[TrustedProxy] = (),
        identity_map: IdentityResolver | None = None,
        mode: Literal["reject", "allow"] = "reject",
        bound_token: BoundToken | None = None,
        crls: Iterable[bytes] = (),
        clock: Callable[[], datetime] | None = None,
        expose_detail: bool = True,
        fetcher: Fetcher | None = None,
        jwks_cache: JwksCache | None = None,
        radar: Radar | None = None,
    ) -> None:
        if mode not in ("reject", "allow"):
            from .reasons import ConfigError

            raise ConfigError("must be reject or allow", key="mode")
        self.app = app
        self.validator = validator
        self.proxies = proxies if isinstance(proxies, ProxyPolicy) else ProxyPolicy(tuple(proxies))
        self.identity_map = identity_map
        self.mode = mode
        self.bound_token = bound_token
        self.crls = tuple(crls)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.expose_detail = expose_detail
        self.fetcher = fetcher
        # Keys of self_signed_tls_client_auth accounts' jwks_uri (identity_map.self_signed_clients).
        self.jwks_cache = jwks_cache if jwks_cache is not None else JwksCache()
        self.radar = radar
        if bound_token is not None and bound_token.jwks_uri is not None and fetcher is None:
            from .reasons import ConfigError

            raise ConfigError("a jwks_uri needs fetcher= (AsyncioFetcher under uvicorn, TrioFetcher under trio)",
                              key="bound_token.jwks_uri")

    # -- the decision, sans HTTP ---------------------------------------------------

    def verdict_for(self, scope: Scope, *, at: datetime | None = None) -> Verdict:
        """The verdict for one request scope (certificate and identity; no token), without fetching."""
        at = at or self.clock()
        prepared = self._decision(scope)
        if isinstance(prepared, Verdict):
            return prepared
        decision, source = prepared
        return self._settle(decision, source, lambda chain: self.validator.validate(list(chain), at=at, crls=self.crls))

    async def verdict_for_async(self, scope: Scope, *, at: datetime | None = None) -> Verdict:
        """:meth:`verdict_for`, with the ``fetcher`` fetching revocation data when the policy asks for it."""
        return (await self._judge(scope, at or self.clock()))[0]

    async def _judge(self, scope: Scope, at: datetime) -> tuple[Verdict, tuple[Certificate, ...]]:
        """The verdict and the chain it is about (as presented, or as a trusted proxy forwarded it)."""
        prepared = self._decision(scope)
        if isinstance(prepared, Verdict):
            return prepared, ()
        decision, source = prepared
        chain = decision.chain if isinstance(decision, UseTls | UseForwarded) else ()
        if self.fetcher is None or not self.validator.policy.fetch:
            return self._settle(
                decision, source, lambda c: self.validator.validate(list(c), at=at, crls=self.crls)
            ), chain
        fetched: Verdict | None = None  # none to validate: decision_verdict says why, or believes the proxy
        if chain and not (isinstance(decision, UseForwarded) and not decision.revalidate):
            fetched = await self.fetcher.validate(self.validator, list(chain), at=at, crls=self.crls)

        def validate(chain: tuple[Certificate, ...]) -> Verdict:
            assert fetched is not None
            return fetched

        return self._settle(decision, source, validate), chain

    def _decision(self, scope: Scope) -> tuple[Decision, str | None] | Verdict:
        """Whose certificate decides this request (ProxyPolicy.decide), or a verdict already."""
        try:
            tls_chain, source = _tls_chain(scope)
        except CertificateRejected as exc:
            return Verdict.reject(
                exc.reason, f"TLS client certificate from the server: {exc.detail}"
            )
        # ASGI "client": [host, port] (or None); our server hooks' PEER_KEY: the transport's peer.
        peer = _extensions(scope).get(PEER_KEY) or scope.get("client")
        decision = self.proxies.decide(
            peer=peer if isinstance(peer, str | list | tuple) else None, peer_chain=tls_chain, headers=_headers(scope)
        )
        return decision, source

    def _settle(
        self, decision: Decision, source: str | None, base: Callable[[tuple[Certificate, ...]], Verdict]
    ) -> Verdict:
        def validate(chain: tuple[Certificate, ...]) -> Verdict:
            verdict = base(chain)
            if source == "leaf_only" and isinstance(decision, UseTls):
                extra = "the server could only read the leaf certificate (no presented intermediates)"
                verdict = dataclasses.replace(verdict, notes=verdict.notes + (extra,))
                if not verdict.ok and verdict.reason == Reason.UNTRUSTED:
                    verdict = dataclasses.replace(
                        verdict,
                        detail=f"{verdict.detail} ({extra}; configure the intermediates in the trust store)",
                    )
            return verdict

        return decision_verdict(decision, validate, self.identity_map)

    async def _self_signed(self, verdict: Verdict, chain: tuple[Certificate, ...], at: datetime) -> Verdict:
        """RFC 8705 §2.2: a self-signed certificate no CA vouches for may be an account's registered
        key (``method = "self_signed_tls_client_auth"``); the keys of a ``jwks_uri`` come through
        the ``fetcher``. ``verdict`` unchanged when no such account exists or the chain is no candidate."""
        import time

        from .identity.identity import Identity
        from .identity.jwks import NeedJwks
        from .identity.self_signed import is_candidate, match

        identity_map = self.identity_map if self.identity_map is not None else self.validator.identity_map
        # Clients registered by key are [[accounts]] of an IdentityMap (method = self_signed_tls_client_auth).
        clients = identity_map.self_signed_clients if isinstance(identity_map, IdentityMap) else ()
        if not clients or not is_candidate(chain):
            return verdict
        leaf = chain[0]
        for _ in range(1 + len(clients)):  # each jwks_uri is asked for at most once per round
            now = time.monotonic()
            try:
                found = match(clients, leaf, at=at, now=now, cache=self.jwks_cache)
            except CertificateRejected as exc:
                return Verdict.reject(exc.reason, exc.detail, path=chain, position=0)
            if isinstance(found, NeedJwks):
                if self.fetcher is None:
                    self.jwks_cache.fail(found, "the middleware has no fetcher for JWKS URLs", now=now)
                else:
                    await self.fetcher.jwks(self.jwks_cache, found, now=now)
                continue
            principal = found.client.principal
            return Verdict(True, path=chain, identity=Identity.from_certificate(leaf, None), principal=principal,
                           notes=(f"self_signed_tls_client_auth: key {found.jwk.get('kid') or leaf.x5t_s256} "
                                  f"registered by account {principal.id}",))
        return Verdict.reject(Reason.NOT_ALLOWLISTED, f"{leaf.describe()}: the registered keys could not be had",
                              path=chain, position=0)

    def _token(self, scope: Scope, leaf: Certificate, at: datetime) -> Mapping[str, object] | None:
        """Check the bearer token against ``leaf``; the verified claims, or None when absent.

        Raises CertificateRejected (binding_mismatch) or _TokenError (invalid token).
        """
        bt = self.bound_token
        assert bt is not None
        if bt.claims is not None:
            from .identity.binding import check_cnf

            claims = bt.claims(scope)
            if claims is None:
                if bt.required:
                    raise _TokenError("no verified token claims for this request")
                return None
            check_cnf(claims, leaf, required=True)
            return claims
        token = _bearer(scope)
        if token is None:
            if bt.required:
                raise _TokenError("an Authorization: Bearer token is required")
            return None
        from .jwt import TokenInvalid

        assert bt.jwks is not None
        try:
            return self._verify(token, bt.jwks, leaf, at)
        except TokenInvalid as exc:
            raise _TokenError(str(exc) or "the bearer token is not valid") from None

    def _verify(
        self, token: str, jwks: Mapping[str, object] | str, leaf: Certificate, at: datetime
    ) -> Mapping[str, object]:
        from .jwt import verify_bound_token

        bt = self.bound_token
        assert bt is not None
        verified: Mapping[str, object] = verify_bound_token(
            token, jwks, leaf, at=at, algorithms=bt.algorithms, issuer=bt.issuer, audience=bt.audience
        )
        return verified

    async def _token_async(self, scope: Scope, leaf: Certificate, at: datetime) -> Mapping[str, object] | None:
        """:meth:`_token`, fetching the keys of a ``jwks_uri`` with the middleware's fetcher."""
        bt = self.bound_token
        assert bt is not None
        if bt.jwks_uri is None:
            return self._token(scope, leaf, at)
        token = _bearer(scope)
        if token is None:
            if bt.required:
                raise _TokenError("an Authorization: Bearer token is required")
            return None
        import time

        from .identity.jwks import with_jwks
        from .jwt import TokenInvalid

        def missed(exc: Exception) -> bool:
            return isinstance(exc, TokenInvalid) and exc.key_miss

        assert self.fetcher is not None  # a jwks_uri without one is refused at construction
        try:
            return await with_jwks(self.fetcher, bt.jwks_cache, bt.jwks_uri,
                                   lambda keys: self._verify(token, keys, leaf, at),
                                   now=time.monotonic(), missed=missed)
        except TokenInvalid as exc:
            raise _TokenError(str(exc) or "the bearer token is not valid") from None
        except JwksUnavailable as exc:
            raise _TokenError(f"no token keys from {exc.url}: {exc.detail}") from None

    # -- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        at = self.clock()
        verdict, chain = await self._judge(scope, at)
        if not verdict.ok and verdict.reason is Reason.UNTRUSTED:
            verdict = await self._self_signed(verdict, chain, at)
        if self.radar is not None and verdict.ok:
            for warning in self.radar.observe(chain, verdict, account=account_of(verdict.principal), at=at):
                logger.warning(json.dumps(warning.as_log()))
        claims: Mapping[str, object] | None = None
        token_error: str | None = None
        if verdict.ok and self.bound_token is not None:
            try:
                claims = await self._token_async(scope, verdict.path[0], at)
            except CertificateRejected as exc:
                verdict = dataclasses.replace(
                    verdict, ok=False, reason=exc.reason, detail=exc.detail
                )
            except _TokenError as exc:
                token_error = exc.detail
            except MtlsError as exc:  # a binding helper's own error type
                token_error = str(exc)
        if (not verdict.ok or token_error is not None) and self.mode == "reject":
            await self._refuse(scope, receive, send, verdict, token_error)
            return
        scope = dict(scope)
        given = scope.get("state")
        state = dict(given) if isinstance(given, Mapping) else {}
        state.update(
            mtls_verdict=verdict,
            mtls_principal=verdict.principal if verdict.ok else None,
            mtls_identity=verdict.identity,
            mtls_token_claims=claims,
        )
        if token_error is not None:
            state["mtls_token_error"] = token_error
        scope["state"] = state
        await self.app(scope, receive, send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, verdict: Verdict, token_error: str | None
    ) -> None:
        if token_error is not None:
            status, error, detail = 401, "invalid_token", token_error
        else:
            assert verdict.reason is not None
            status, error, detail = status_for(verdict.reason), verdict.reason.value, verdict.detail
        if scope["type"] == "websocket":
            # ASGI: closing before accept makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": error})
            return
        body = {"error": error}
        if self.expose_detail:
            body["detail"] = detail
        payload = json.dumps(body).encode("utf-8")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        if token_error is not None or verdict.reason == Reason.BINDING_MISMATCH:
            # RFC 6750 §3 / RFC 8705 §3: a token not bound to this certificate is invalid_token.
            headers.append((b"www-authenticate", b'Bearer error="invalid_token"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
