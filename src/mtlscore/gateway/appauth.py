"""App-level checks per account, after mTLS has said which system is calling.

"mTLS authenticates the calling system; the bearer token or API key
authenticates the app" (reference 000). Per account: an IP allowlist (403), a
rate limit (429 with ``Retry-After``), and a credential (401 with
``WWW-Authenticate``) — an API key stored only as its SHA-256, or a
certificate-bound JWT (RFC 8705 ``cnf``). Pure: time is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from ..identity.jwks import JwksCache, JwksUnavailable, NeedJwks, check_jwks_uri
from ..reasons import CertificateRejected, ConfigError, MtlsError, Reason
from ..x509.cert import Certificate
from .token_settings import (
    DEFAULT_TOKEN_ALGORITHMS,
    FAPI2_ALGORITHMS,
    FAPI2_TLS12_CIPHERS,
    METHODS,
    PROFILES,
    TOKEN_TABLE_KEYS,
    fapi2_tls_problem,
    jwks_value,
    token_algorithms,
)

__all__ = [
    "CREDENTIAL_INVALID",
    "CREDENTIAL_MISSING",
    "FAPI2_ALGORITHMS",
    "FAPI2_TLS12_CIPHERS",
    "INSECURE_TLS",
    "IP_NOT_ALLOWED",
    "JWKS_UNAVAILABLE",
    "ON_ERROR",
    "RATE_LIMITED",
    "RATE_LIMIT_UNAVAILABLE",
    "AccountAuth",
    "AuthResult",
    "NeedRate",
    "Rate",
    "RateAnswer",
    "RateLimiter",
    "authorize",
    "credential_owner",
    "hash_api_key",
]

# Gateway-level denial codes. They sit beside the certificate Reasons of
# docs/reference.md#reason-codes (which are about certificates) and are just as stable.
CREDENTIAL_MISSING = "credential_missing"
CREDENTIAL_INVALID = "credential_invalid"
IP_NOT_ALLOWED = "ip_not_allowed"
RATE_LIMITED = "rate_limited"
# [shared] rate_limit_on_error = "closed" and the shared store did not answer (503).
RATE_LIMIT_UNAVAILABLE = "rate_limit_unavailable"
# What a request whose rate limit the shared store could not decide gets (docs/shared-state.md):
# "local": this process's own token bucket (each process allows the account's rate, so at most
#   N times the limit across N processes while the store is down); "open": no limit;
# "closed": 503 rate_limit_unavailable.
OnError = Literal["local", "open", "closed"]
ON_ERROR: tuple[str, ...] = ("local", "open", "closed")
# The account's token keys come from a jwks_uri that has given no usable keys (503).
JWKS_UNAVAILABLE = "jwks_unavailable"
# The connection's TLS version or cipher suite is below the account's profile (fapi2).
INSECURE_TLS = "insecure_tls"

REALM = "mtlscore"
API_KEY_HEADER = b"x-api-key"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenVerifier(Protocol):
    """Verifies a bearer token against the account's keys (``mtlscore.jwt.verify_bound_token`` is
    one): the claims, or :class:`mtlscore.jwt.TokenInvalid` / ``CertificateRejected`` (cnf mismatch)."""

    def __call__(
        self,
        token: str,
        jwks: Mapping[str, object] | str,
        cert: Certificate | None,
        *,
        at: datetime,
        issuer: str | None,
        audience: str | None,
        algorithms: Iterable[str],
    ) -> Mapping[str, object]: ...


_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def hash_api_key(key: str | bytes) -> str:
    """The hex SHA-256 of an API key: what the configuration stores (never the key)."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``per_seconds`` (a token bucket with burst ``count``)."""

    count: int
    per_seconds: float

    @classmethod
    def parse(cls, text: object, *, key: str = "rate_limit") -> Rate:
        """Parse ``"100/s"``, ``"10/min"``, ``"500/5m"``, ``"1000/h"``; raise ConfigError."""
        m = _RATE_RE.match(text) if isinstance(text, str) else None
        if not m or int(m.group(1)) <= 0:
            raise ConfigError(f"expected like '100/s', '10/min' or '1000/h', not {text!r}", key=key)
        per = int(m.group(2) or 1) * _UNITS[m.group(3)]
        if per <= 0:
            raise ConfigError(f"the period of {text!r} must be positive", key=key)
        return cls(int(m.group(1)), float(per))

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds


@dataclass(frozen=True, slots=True)
class AccountAuth:
    """The app-level requirements of one account.

    No API keys and no JWKS: the certificate alone is the credential.
    Build from an ``[[accounts]]`` table with :meth:`from_mapping`.
    """

    account: str
    api_key_sha256: tuple[bytes, ...] = ()
    ip_allow: tuple[IPNetwork, ...] = ()
    rate_limit: Rate | None = None
    jwks: Mapping[str, object] | None = None
    token_issuer: str | None = None
    token_audience: str | None = None
    # Token keys from a URL (JwksCache), the accepted algorithms, and the profile.
    jwks_uri: str | None = None
    token_algorithms: tuple[str, ...] = DEFAULT_TOKEN_ALGORITHMS
    profile: str | None = None
    # RFC 8705 §2: how the client is authenticated; for self_signed_tls_client_auth its
    # registered keys (inline or by URL).
    method: str = "tls_client_auth"
    client_jwks: Mapping[str, object] | None = None
    client_jwks_uri: str | None = None

    @property
    def requires_credential(self) -> bool:
        return bool(self.api_key_sha256) or self.has_token_keys or self.profile == "fapi2"

    @property
    def has_token_keys(self) -> bool:
        return self.jwks is not None or self.jwks_uri is not None

    @classmethod
    def from_mapping(cls, account: str, table: Mapping[str, object]) -> AccountAuth:
        """Read the app-level keys of an account table; other keys are ignored.

        ``jwks`` is a JWKS object (or its JSON text). Raises :class:`ConfigError`
        naming the key on a bad value.
        """
        prefix = f"accounts.{account}"
        hashes: list[bytes] = []
        raw_hashes = table.get("api_key_sha256", [])
        if isinstance(raw_hashes, str):
            raw_hashes = [raw_hashes]
        if not isinstance(raw_hashes, list):
            raise ConfigError("must be a list of hex SHA-256 digests", key=f"{prefix}.api_key_sha256")
        for h in raw_hashes:
            if not isinstance(h, str) or not _HEX64.match(h):
                raise ConfigError(
                    f"{h!r} is not a hex SHA-256 digest (store hash_api_key(key), never the key)",
                    key=f"{prefix}.api_key_sha256",
                )
            hashes.append(bytes.fromhex(h))
        nets: list[IPNetwork] = []
        raw_nets = table.get("ip_allow", [])
        if not isinstance(raw_nets, list):
            raise ConfigError("must be a list of CIDR networks", key=f"{prefix}.ip_allow")
        for n in raw_nets:
            try:
                nets.append(ipaddress.ip_network(str(n), strict=False))
            except ValueError:
                raise ConfigError(f"{n!r} is not an IP network", key=f"{prefix}.ip_allow") from None
        rate = table.get("rate_limit")
        method = table.get("method", "tls_client_auth")
        if method not in METHODS:
            raise ConfigError(f"must be one of {', '.join(METHODS)}, not {method!r}", key=f"{prefix}.method")
        profile = table.get("profile")
        if profile is not None and profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})", key=f"{prefix}.profile")
        token = table.get("token", {})
        if not isinstance(token, Mapping):
            raise ConfigError("must be a table (jwks, jwks_uri, algorithms, issuer, audience)",
                              key=f"{prefix}.token")
        unknown = sorted(set(token) - TOKEN_TABLE_KEYS)
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r}", key=f"{prefix}.token.{unknown[0]}")
        # For self_signed_tls_client_auth, jwks/jwks_uri are the client's registered keys
        # (RFC 7591 §2 names); token keys then live only in the token table.
        self_signed = method == "self_signed_tls_client_auth"
        flat = {"algorithms": table.get("token_algorithms"), "issuer": table.get("token_issuer"),
                "audience": table.get("token_audience")}
        if not self_signed:
            flat.update(jwks=table.get("jwks"), jwks_uri=table.get("jwks_uri"))
        merged: dict[str, Any] = {}
        for name in TOKEN_TABLE_KEYS:
            a, b = flat.get(name), token.get(name)
            if a is not None and b is not None:
                raise ConfigError(f"given twice: here and as token.{name}", key=f"{prefix}.{name}")
            merged[name] = b if b is not None else a
        jwks = jwks_value(merged["jwks"], f"{prefix}.jwks")
        jwks_uri = check_jwks_uri(merged["jwks_uri"], key=f"{prefix}.jwks_uri") if merged["jwks_uri"] else None
        if jwks is not None and jwks_uri is not None:
            raise ConfigError("give jwks or jwks_uri, not both", key=f"{prefix}.jwks_uri")
        for name in ("issuer", "audience"):
            if merged[name] is not None and not isinstance(merged[name], str):
                raise ConfigError("must be a string", key=f"{prefix}.token_{name}")
        algorithms = token_algorithms(merged["algorithms"], profile, f"{prefix}.token_algorithms")
        if profile == "fapi2" and jwks is None and jwks_uri is None:
            raise ConfigError("profile fapi2 requires certificate-bound tokens: give token keys "
                              "(jwks / jwks_uri, or token.jwks / token.jwks_uri)", key=f"{prefix}.profile")
        client_jwks = client_jwks_uri = None
        if self_signed:
            client_jwks = jwks_value(table.get("jwks"), f"{prefix}.jwks")
            raw_uri = table.get("jwks_uri")
            client_jwks_uri = check_jwks_uri(raw_uri, key=f"{prefix}.jwks_uri") if raw_uri is not None else None
            if (client_jwks is None) == (client_jwks_uri is None):
                raise ConfigError("self_signed_tls_client_auth needs the client's jwks or jwks_uri (one of them)",
                                  key=f"{prefix}.jwks")
        return cls(
            account=account,
            api_key_sha256=tuple(hashes),
            ip_allow=tuple(nets),
            rate_limit=Rate.parse(rate, key=f"{prefix}.rate_limit") if rate is not None else None,
            jwks=jwks,
            token_issuer=merged["issuer"],
            token_audience=merged["audience"],
            jwks_uri=jwks_uri,
            token_algorithms=algorithms,
            profile=profile,
            method=method,
            client_jwks=client_jwks,
            client_jwks_uri=client_jwks_uri,
        )


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The app-level outcome: allowed, or the status, code and headers to answer with."""

    ok: bool
    status: int = 200
    reason: str | None = None
    detail: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    # "api_key", "bound_token" or None (certificate only).
    credential: str | None = None
    claims: Mapping[str, object] | None = None
    # The request header the accepted API key came in (b"x-api-key" or b"authorization"):
    # the gateway's own secret, removed before the request goes upstream.
    consumed: bytes | None = None
    # Not decided yet: fetch these keys into the JwksCache, then authorize again
    # (with count_rate=False: the request was counted once).
    need: NeedJwks | None = None
    # Not decided yet: take the account's token in the shared store, then authorize again
    # with its answer (rate_answer=).
    need_rate: NeedRate | None = None


@dataclass(slots=True)
class RateLimiter:
    """Token buckets per account; state survives configuration reloads.

    Time is a monotonic number of seconds passed to :meth:`check`.
    """

    _buckets: dict[str, tuple[Rate, float, float]] = field(default_factory=dict)

    def check(self, key: str, rate: Rate, now: float) -> float | None:
        """Take one token: None when allowed, else the seconds until one is available."""
        current = self._buckets.get(key)
        if current is None or current[0] != rate:
            tokens, last = float(rate.count), now
        else:
            _, tokens, last = current
            tokens = min(float(rate.count), tokens + max(0.0, now - last) * rate.per_second)
        if tokens >= 1.0:
            self._buckets[key] = (rate, tokens - 1.0, now)
            return None
        self._buckets[key] = (rate, tokens, now)
        return (1.0 - tokens) / rate.per_second


@dataclass(frozen=True, slots=True)
class NeedRate:
    """Take one token of ``account``'s bucket (``rate``) in the shared store (``[shared]``),
    then report a :class:`RateAnswer` (``session.rate_checked``)."""

    account: str
    rate: Rate


@dataclass(frozen=True, slots=True)
class RateAnswer:
    """The shared store's answer to :class:`NeedRate`: ``wait`` None (allowed) or the seconds
    until a token is available; ``error`` non-empty when the store could not answer (``wait``
    is then ignored and ``on_error`` decides)."""

    wait: float | None
    error: str = ""


def _quote(text: str) -> str:
    # RFC 6750 §3: error_description is a quoted-string of %x20-21 / %x23-5B / %x5D-7E.
    return "".join(c for c in text if 0x20 <= ord(c) <= 0x7E and c not in '"\\')[:200]


def _challenge(error: str | None = None, description: str = "") -> tuple[str, str]:
    # RFC 6750 §3: no error attribute when the request carried no credentials.
    value = f'Bearer realm="{REALM}"'
    if error:
        value += f', error="{error}"'
        if description:
            value += f', error_description="{_quote(description)}"'
    return ("WWW-Authenticate", value)


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _api_key_matches(presented: bytes, hashes: Sequence[bytes]) -> bool:
    digest = hashlib.sha256(presented).digest()
    found = False
    for h in hashes:  # no early exit: the time does not tell which entry matched
        found |= hmac.compare_digest(digest, h)
    return found


def authorize(
    auth: AccountAuth | None,
    *,
    headers: Sequence[tuple[bytes, bytes]],
    peer_ip: str,
    peer_source: str = "",
    cert: Certificate | None,
    at: datetime,
    now: float,
    limiter: RateLimiter,
    verify_token: TokenVerifier | None = None,
    jwks_cache: JwksCache | None = None,
    tls_version: str = "",
    tls_cipher: str = "",
    count_rate: bool = True,
    shared_rates: bool = False,
    rate_answer: RateAnswer | None = None,
    on_error: OnError = "local",
) -> AuthResult:
    """Run the account's checks in order: IP allowlist, rate limit, TLS profile, credential.

    The rate limit comes before the credential so that guessing keys spends the
    account's budget. An account whose token keys come from a ``jwks_uri`` may
    answer ``AuthResult(need=NeedJwks)``: fetch it into ``jwks_cache`` and call
    again with ``count_rate=False``. ``tls_version``/``tls_cipher`` (as OpenSSL
    names them) are checked against the account's profile when given. Never
    raises on the peer's input.

    ``shared_rates``: the rate limit is kept by a shared store (``[shared]``), not
    ``limiter``: the first call answers ``AuthResult(need_rate=NeedRate)``; call
    again with the store's ``rate_answer``. When the store could not answer,
    ``on_error`` decides (``limiter``, no limit, or 503 ``rate_limit_unavailable``).
    """
    if auth is None:
        return AuthResult(True)
    if auth.ip_allow:
        try:
            ip = ipaddress.ip_address(peer_ip)
        except ValueError:
            ip = None
        if ip is None or not any(ip in net for net in auth.ip_allow):
            return AuthResult(
                False,
                403,
                IP_NOT_ALLOWED,
                f"address {peer_ip} is not in the allowlist of account {auth.account}"
                + (f" ({peer_source})" if peer_source else ""),
            )
    if auth.rate_limit is not None and count_rate:
        if shared_rates and rate_answer is None:
            return AuthResult(False, need_rate=NeedRate(auth.account, auth.rate_limit))
        if rate_answer is None or (rate_answer.error and on_error == "local"):
            wait = limiter.check(auth.account, auth.rate_limit, now)
        elif not rate_answer.error:
            wait = rate_answer.wait
        elif on_error == "open":
            wait = None
        else:
            # Fail closed: nobody can say the account is under its limit, so it is not let
            # in; 503, not 429: the client is not at fault (RFC 9110 §15.6.4).
            return AuthResult(
                False, 503, RATE_LIMIT_UNAVAILABLE,
                f"account {auth.account}: the shared rate limit could not be checked ({rate_answer.error})",
                (("Retry-After", "1"),),
            )
        if wait is not None:
            # RFC 9110 §10.2.3: Retry-After as delay-seconds, an integer.
            seconds = max(1, math.ceil(wait))
            return AuthResult(
                False,
                429,
                RATE_LIMITED,
                f"account {auth.account} is over {auth.rate_limit.count} requests per "
                f"{auth.rate_limit.per_seconds:g} s; retry in {seconds} s",
                (("Retry-After", str(seconds)),),
            )
    if auth.profile == "fapi2" and tls_version:
        weak = fapi2_tls_problem(tls_version, tls_cipher)
        if weak:
            return AuthResult(False, 403, INSECURE_TLS, f"account {auth.account} (profile fapi2): {weak}")
    if not auth.requires_credential:
        return AuthResult(True)
    return _check_credential(auth, headers, _TokenCheck(cert, at, now, verify_token, jwks_cache))


def credential_owner(
    auths: Sequence[AccountAuth],
    *,
    headers: Sequence[tuple[bytes, bytes]],
    cert: Certificate | None,
    at: datetime,
    now: float,
    verify_token: TokenVerifier | None = None,
    jwks_cache: JwksCache | None = None,
) -> AccountAuth | AuthResult:
    """Allow mode without a valid certificate: the account whose credential the request carries.

    A load balancer's "allow invalid or missing" relaxes the certificate check only; the
    API key or token is still required, and it now says which account is calling. The
    API key is looked up in every account (SHA-256, constant time, no early exit); a
    Bearer token that is no account's key must verify under an account's token keys,
    bound (RFC 8705 ``cnf``) to the certificate presented, valid or not (the handshake
    proved possession of its key). Returns that account's :class:`AccountAuth` (run
    :func:`authorize` with it: IP allowlist, rate limit and the credential again), or
    the :class:`AuthResult` to answer: 401 ``credential_missing`` / ``credential_invalid``
    / ``binding_mismatch``, or ``need`` (fetch the keys, then ask again).
    """
    api_key = _header(headers, API_KEY_HEADER)
    bearer = _bearer(headers)
    if api_key is None and bearer is None:
        return AuthResult(
            False, 401, CREDENTIAL_MISSING,
            "no valid client certificate: this gateway needs an API key (X-API-Key) or a Bearer token",
            (_challenge(),),
        )
    owner: AccountAuth | None = None
    for auth in auths:  # every account is tried: the time does not tell which one matched
        keys = auth.api_key_sha256 if auth.profile != "fapi2" else ()
        for candidate in (api_key, bearer):
            if keys and candidate is not None and _api_key_matches(candidate, keys) and owner is None:
                owner = auth
    if owner is not None:
        return owner
    if bearer is None:
        return AuthResult(
            False, 401, CREDENTIAL_INVALID, "the API key is not one registered for any account",
            (_challenge("invalid_token", "unknown API key"),),
        )
    tried = [auth for auth in auths if auth.has_token_keys]
    results: list[AuthResult] = []
    check = _TokenCheck(cert, at, now, verify_token, jwks_cache)
    for auth in tried:
        result = _check_token(auth, bearer, check)
        if result.ok:
            return auth
        if result.need is not None:
            return result
        results.append(result)
    if len(results) == 1:
        return results[0]  # the one account that takes tokens says why
    return AuthResult(
        False, 401, CREDENTIAL_INVALID, "the Bearer token is no account's key and no account's token keys accept it",
        (_challenge("invalid_token", "token not accepted"),),
    )


def _bearer(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    authorization = _header(headers, b"authorization")
    if authorization is None:
        return None
    # RFC 9110 §11.1: the auth scheme is case-insensitive; RFC 6750 §2.1 form.
    scheme, _, rest = authorization.strip().partition(b" ")
    return rest.strip() if scheme.lower() == b"bearer" and rest.strip() else None


@dataclass(frozen=True, slots=True)
class _TokenCheck:
    """What checking a bearer token needs besides the account and the token: the certificate it
    must be bound to, the times, the verifier and the cache of keys fetched from a jwks_uri."""

    cert: Certificate | None
    at: datetime
    now: float
    verify_token: TokenVerifier | None
    jwks_cache: JwksCache | None


def _check_credential(auth: AccountAuth, headers: Sequence[tuple[bytes, bytes]], check: _TokenCheck) -> AuthResult:
    api_key = _header(headers, API_KEY_HEADER)
    bearer = _bearer(headers)
    if auth.profile == "fapi2":
        # FAPI 2.0 §5.3.2.2: sender-constrained access tokens only; an API key is no substitute.
        api_key = None
    if api_key is None and bearer is None:
        what = ("an API key (X-API-Key) or a Bearer token" if auth.api_key_sha256 and auth.profile != "fapi2"
                else "a certificate-bound Bearer token")
        return AuthResult(
            False,
            401,
            CREDENTIAL_MISSING,
            f"account {auth.account} requires {what} besides the client certificate",
            (_challenge(),),
        )
    if auth.api_key_sha256 and auth.profile != "fapi2":
        for candidate, header in ((api_key, API_KEY_HEADER), (bearer, b"authorization")):
            if candidate is not None and _api_key_matches(candidate, auth.api_key_sha256):
                return AuthResult(True, credential="api_key", consumed=header)
    if bearer is not None and auth.has_token_keys:
        return _check_token(auth, bearer, check)
    return AuthResult(
        False,
        401,
        CREDENTIAL_INVALID,
        f"the API key is not one registered for account {auth.account}",
        (_challenge("invalid_token", "unknown API key"),),
    )


def _check_token(auth: AccountAuth, token: bytes, check: _TokenCheck) -> AuthResult:
    cert, at, now, verify_token, jwks_cache = check.cert, check.at, check.now, check.verify_token, check.jwks_cache
    if cert is None or not auth.has_token_keys:
        return AuthResult(
            False,
            401,
            Reason.BINDING_MISMATCH.value,
            "a certificate-bound token needs a client certificate to bind to",
            (_challenge("invalid_token", "no client certificate"),),
        )
    if verify_token is None:
        from ..jwt import verify_bound_token

        verify_token = verify_bound_token
    keys: Mapping[str, object] = auth.jwks or {"keys": []}
    url = auth.jwks_uri
    if url is not None:
        if jwks_cache is None:
            return AuthResult(False, 500, "account_config", f"account {auth.account}: jwks_uri needs a JWKS cache")
        due = jwks_cache.due(url, now=now)
        if due is not None:
            return AuthResult(False, need=due)
        try:
            keys = jwks_cache.keys(url, now=now)
        except JwksUnavailable as exc:
            return AuthResult(False, 503, JWKS_UNAVAILABLE,
                              f"account {auth.account}: no token keys from {exc.url}: {exc.detail}")
    try:
        claims = verify_token(
            token.decode("ascii", "replace"),
            keys,
            cert,
            at=at,
            issuer=auth.token_issuer,
            audience=auth.token_audience,
            algorithms=auth.token_algorithms,
        )
    except CertificateRejected as exc:
        # RFC 8705 §3: a cnf mismatch is an invalid_token (401).
        return AuthResult(
            False,
            401,
            exc.reason.value,
            exc.detail,
            (_challenge("invalid_token", "token not bound to this certificate"),),
        )
    except ConfigError as exc:
        return AuthResult(False, 500, "account_config", f"account {auth.account}: {exc}")
    except MtlsError as exc:
        from ..jwt import TokenInvalid

        if url is not None and jwks_cache is not None and isinstance(exc, TokenInvalid) and exc.key_miss:
            # The issuer may have rotated its keys: refetch, at most once per refresh_interval.
            again = jwks_cache.refresh(url, now=now)
            if again is not None:
                return AuthResult(False, need=again)
        return AuthResult(
            False,
            401,
            CREDENTIAL_INVALID,
            f"bearer token rejected: {exc}",
            (_challenge("invalid_token", str(exc)),),
        )
    return AuthResult(True, credential="bound_token", claims=claims)
