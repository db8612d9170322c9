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
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..reasons import CertificateRejected, ConfigError, MtlsError, Reason
from ..x509.cert import Certificate

__all__ = [
    "CREDENTIAL_INVALID",
    "CREDENTIAL_MISSING",
    "IP_NOT_ALLOWED",
    "RATE_LIMITED",
    "AccountAuth",
    "AuthResult",
    "Rate",
    "RateLimiter",
    "authorize",
    "hash_api_key",
]

# Gateway-level denial codes. They sit beside the certificate Reasons of
# DESIGN.md §4 (which are about certificates) and are just as stable.
CREDENTIAL_MISSING = "credential_missing"
CREDENTIAL_INVALID = "credential_invalid"
IP_NOT_ALLOWED = "ip_not_allowed"
RATE_LIMITED = "rate_limited"

REALM = "mtlscore"
API_KEY_HEADER = b"x-api-key"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
TokenVerifier = Callable[..., Mapping[str, Any]]

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
    def parse(cls, text: str, *, key: str = "rate_limit") -> Rate:
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
    jwks: Mapping[str, Any] | None = None
    token_issuer: str | None = None
    token_audience: str | None = None

    @property
    def requires_credential(self) -> bool:
        return bool(self.api_key_sha256) or self.jwks is not None

    @classmethod
    def from_mapping(cls, account: str, table: Mapping[str, Any]) -> AccountAuth:
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
        jwks = table.get("jwks")
        if isinstance(jwks, str):
            try:
                jwks = json.loads(jwks)
            except ValueError:
                raise ConfigError("is not JSON", key=f"{prefix}.jwks") from None
        if jwks is not None and not (isinstance(jwks, Mapping) and isinstance(jwks.get("keys"), list)):
            raise ConfigError('must be a JWKS object {"keys": [...]}', key=f"{prefix}.jwks")
        for name in ("token_issuer", "token_audience"):
            if table.get(name) is not None and not isinstance(table.get(name), str):
                raise ConfigError("must be a string", key=f"{prefix}.{name}")
        return cls(
            account=account,
            api_key_sha256=tuple(hashes),
            ip_allow=tuple(nets),
            rate_limit=Rate.parse(rate, key=f"{prefix}.rate_limit") if rate is not None else None,
            jwks=jwks,
            token_issuer=table.get("token_issuer"),
            token_audience=table.get("token_audience"),
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
    claims: Mapping[str, Any] | None = None
    # The request header the accepted API key came in (b"x-api-key" or b"authorization"):
    # the gateway's own secret, removed before the request goes upstream.
    consumed: bytes | None = None


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
) -> AuthResult:
    """Run the account's checks in order: IP allowlist, rate limit, credential.

    The rate limit comes before the credential so that guessing keys spends the
    account's budget. Never raises on the peer's input.
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
    if auth.rate_limit is not None:
        wait = limiter.check(auth.account, auth.rate_limit, now)
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
    if not auth.requires_credential:
        return AuthResult(True)
    return _check_credential(auth, headers, cert, at, verify_token)


def _check_credential(
    auth: AccountAuth,
    headers: Sequence[tuple[bytes, bytes]],
    cert: Certificate | None,
    at: datetime,
    verify_token: TokenVerifier | None,
) -> AuthResult:
    api_key = _header(headers, API_KEY_HEADER)
    bearer: bytes | None = None
    authorization = _header(headers, b"authorization")
    if authorization is not None:
        # RFC 9110 §11.1: the auth scheme is case-insensitive; RFC 6750 §2.1 form.
        scheme, _, rest = authorization.strip().partition(b" ")
        if scheme.lower() == b"bearer" and rest.strip():
            bearer = rest.strip()
    if api_key is None and bearer is None:
        what = "an API key (X-API-Key) or a Bearer token" if auth.api_key_sha256 else "a Bearer token"
        return AuthResult(
            False,
            401,
            CREDENTIAL_MISSING,
            f"account {auth.account} requires {what} besides the client certificate",
            (_challenge(),),
        )
    if auth.api_key_sha256:
        for candidate, header in ((api_key, API_KEY_HEADER), (bearer, b"authorization")):
            if candidate is not None and _api_key_matches(candidate, auth.api_key_sha256):
                return AuthResult(True, credential="api_key", consumed=header)
    if bearer is not None and auth.jwks is not None:
        return _check_token(auth, bearer, cert, at, verify_token)
    return AuthResult(
        False,
        401,
        CREDENTIAL_INVALID,
        f"the API key is not one registered for account {auth.account}",
        (_challenge("invalid_token", "unknown API key"),),
    )


def _check_token(
    auth: AccountAuth,
    token: bytes,
    cert: Certificate | None,
    at: datetime,
    verify_token: TokenVerifier | None,
) -> AuthResult:
    if cert is None or auth.jwks is None:
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
    try:
        claims = verify_token(
            token.decode("ascii", "replace"),
            auth.jwks,
            cert,
            at=at,
            issuer=auth.token_issuer,
            audience=auth.token_audience,
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
        return AuthResult(
            False,
            401,
            CREDENTIAL_INVALID,
            f"bearer token rejected: {exc}",
            (_challenge("invalid_token", str(exc)),),
        )
    return AuthResult(True, credential="bound_token", claims=claims)
