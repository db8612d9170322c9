"""State shared between gateway processes (``[shared]``, docs/shared-state.md): the settings,
what the session asks the runtime for, and what of a fetched answer is worth sharing.

Sans-IO like the rest of the core. Several ``mtlscore serve`` processes (workers, or
machines behind one load balancer) keep one account's rate limit exact by asking a
shared store to take the token (``appauth.NeedRate``, answered with an ``appauth.RateAnswer``);
the runtime talks to the store (Redis, ``runtimes/shared.py``). Fetched CRLs, OCSP
responses and JWK Sets are shared by the runtime's fetcher under :func:`cache_key`,
for :func:`shared_ttl` seconds: the core decides what is worth keeping and for how
long; whatever comes back from the store is validated exactly as a fetched answer is.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.x509 import ocsp

from ..identity.jwks import NeedJwks, parse_jwks, ttl_from_cache_control
from ..reasons import ConfigError
from ..revocation.crl import parse_crl
from ..verify.machine import NeedCRL, NeedIssuer, NeedOCSP
from .appauth import ON_ERROR, OnError

__all__ = [
    "SharedRequest",
    "SharedSettings",
    "cache_key",
    "redacted",
    "seal",
    "shared_from_config",
    "shared_ttl",
    "unseal",
]

_SCHEMES = ("redis", "rediss", "unix")

_KEYS = {
    "redis", "prefix", "timeout_seconds", "connect_timeout_seconds", "retry_interval_seconds",
    "rate_limit_on_error", "caches", "cache_max_ttl_seconds", "cache_max_bytes", "max_connections", "secret",
}
# An HMAC-SHA256 key (RFC 2104 §3: at least the hash output's length is recommended; shorter is refused).
MIN_SECRET = 32
_TAG = 32


@dataclass(frozen=True, slots=True)
class SharedSettings:
    """The ``[shared]`` table. Seconds and bytes; defaults in docs/shared-state.md."""

    url: str
    prefix: str = "mtlscore:"
    # Every command (and the connect) must finish within these, or it counts as the store down.
    timeout: float = 0.1
    connect_timeout: float = 0.1
    # After a failure the store is not asked again for this long (requests get the on-error
    # behaviour at once, the fetchers fetch themselves); then the next call tries it.
    retry_interval: float = 1.0
    rate_limit_on_error: OnError = "local"
    # Share fetched CRLs, OCSP responses and JWK Sets.
    caches: bool = True
    cache_max_ttl: float = 3600.0
    cache_max_bytes: int = 4 * 1024 * 1024
    max_connections: int = 32
    # Authenticates shared cache entries (HMAC-SHA256). CRLs and OCSP responses carry their
    # CA's signature and are shared without it; a JWK Set is authenticated only by the TLS
    # connection it was fetched over, so JWK Sets are shared only with a secret: without
    # one, write access to Redis would be the power to choose the token keys.
    secret: bytes | None = field(default=None, repr=False)

    @property
    def safe_url(self) -> str:
        return redacted(self.url)


def redacted(url: str) -> str:
    """``url`` without its password (for logs and errors)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _check_url(value: object) -> str:
    key = "shared.redis"
    if not isinstance(value, str) or not value:
        raise ConfigError('required: the Redis URL, e.g. "redis://127.0.0.1:6379/0"', key=key)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{redacted(value)!r} is not a URL: {exc}", key=key) from None
    if parts.scheme not in _SCHEMES:
        raise ConfigError(f"must be a redis://, rediss:// or unix:// URL, not {redacted(value)!r}", key=key)
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{redacted(value)!r} names no socket path (unix:///run/redis.sock)", key=key)
    else:
        if not parts.hostname:
            raise ConfigError(f"{redacted(value)!r} names no host", key=key)
        if port == 0:
            raise ConfigError(f"{redacted(value)!r}: port 0", key=key)
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ConfigError(f"{redacted(value)!r}: the path is the database number (/0), not {db!r}", key=key)
    return value


def _seconds(table: Mapping[str, Any], name: str, default: float, *, zero: bool = False) -> float:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError("must be a number of seconds", key=f"shared.{name}")
    if value < 0 or (value == 0 and not zero):
        raise ConfigError("must be positive", key=f"shared.{name}")
    return float(value)


def _count(table: Mapping[str, Any], name: str, default: int) -> int:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError("must be a positive integer", key=f"shared.{name}")
    return value


def shared_from_config(table: object) -> SharedSettings:
    """The ``[shared]`` table as :class:`SharedSettings`; raises ConfigError naming the key."""
    if not isinstance(table, Mapping):
        raise ConfigError("must be a table", key="shared")
    for name in table:
        if name not in _KEYS:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(_KEYS))})", key=f"shared.{name}")
    prefix = table.get("prefix", "mtlscore:")
    if not isinstance(prefix, str) or len(prefix) > 64:
        raise ConfigError("must be a string of at most 64 characters", key="shared.prefix")
    on_error = table.get("rate_limit_on_error", "local")
    if on_error not in ON_ERROR:
        raise ConfigError(f"must be one of {', '.join(ON_ERROR)}; got {on_error!r}", key="shared.rate_limit_on_error")
    caches = table.get("caches", True)
    if not isinstance(caches, bool):
        raise ConfigError("must be true or false", key="shared.caches")
    secret = table.get("secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) < MIN_SECRET):
        raise ConfigError(f"must be a random string of at least {MIN_SECRET} characters "
                          "(the same in every gateway sharing the store)", key="shared.secret")
    return SharedSettings(
        url=_check_url(table.get("redis")),
        prefix=prefix,
        timeout=_seconds(table, "timeout_seconds", 0.1),
        connect_timeout=_seconds(table, "connect_timeout_seconds", 0.1),
        retry_interval=_seconds(table, "retry_interval_seconds", 1.0, zero=True),
        rate_limit_on_error=on_error,
        caches=caches,
        cache_max_ttl=_seconds(table, "cache_max_ttl_seconds", 3600.0),
        cache_max_bytes=_count(table, "cache_max_bytes", 4 * 1024 * 1024),
        max_connections=_count(table, "max_connections", 32),
        secret=secret.encode() if secret is not None else None,
    )


# -- shared caches ---------------------------------------------------------------

SharedRequest = NeedCRL | NeedOCSP | NeedIssuer | NeedJwks


def cache_key(request: SharedRequest, settings: SharedSettings) -> str | None:
    """The store key (without the prefix) of the answer to ``request``; None: not shared.

    OCSP answers are keyed by the whole request (URL and DER): with nonces (RFC 8954)
    every request is its own and nothing is shared, as it should be. Issuers are not
    shared (fetched once per process and kept). JWK Sets only with ``secret`` (see
    :class:`SharedSettings`).
    """
    if not settings.caches:
        return None
    if isinstance(request, NeedCRL):
        kind, material = "crl", request.url.encode()
    elif isinstance(request, NeedOCSP):
        kind, material = "ocsp", request.url.encode() + b"\0" + request.request_der
    elif isinstance(request, NeedJwks) and settings.secret is not None:
        kind, material = "jwks", request.url.encode()
    else:
        return None
    return f"{kind}:{hashlib.sha256(material).hexdigest()}"


def shared_ttl(
    request: SharedRequest, body: bytes, *, at: datetime, settings: SharedSettings,
    cache_control: bytes | None = None,
) -> float | None:
    """Seconds to keep ``body`` (the fetched answer to ``request``) in the store; None: do not
    share it (not shared, too large, unparsable, or already past its nextUpdate).

    Also the first check of what the store returns: an entry this refuses is a miss (the
    process fetches itself); one it accepts still goes through the full validation
    (signature, issuer, times) as any fetched answer does. CRL and OCSP: until nextUpdate
    (RFC 5280 §5.1.2.5, RFC 6960 §4.2.2.1), at most ``cache_max_ttl``; JWKS: its
    ``Cache-Control`` (RFC 9111 §5.2.2) within the asking cache's ``[server.jwks]`` limits
    (``NeedJwks.limits``), at most ``cache_max_ttl``.
    """
    if cache_key(request, settings) is None or not body or len(body) > settings.cache_max_bytes:
        return None
    ttl = settings.cache_max_ttl
    next_update: datetime | None
    if isinstance(request, NeedCRL):
        try:
            next_update = parse_crl(body).next_update
        except ValueError:
            return None
    elif isinstance(request, NeedOCSP):
        try:
            response = ocsp.load_der_ocsp_response(body)
            if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
                return None  # RFC 6960 §2.3: an error status says nothing worth repeating
            next_update = response.next_update_utc
        except ValueError:
            return None
    elif isinstance(request, NeedJwks):
        # The asking cache's [server.jwks] limits, not the defaults: a set the cache would
        # refuse is not shared, and no process reuses it past the configured max_ttl.
        limits = request.limits
        try:
            parse_jwks(body, limits=limits)
        except ConfigError:
            return None
        return min(ttl, ttl_from_cache_control(cache_control, limits))
    else:
        return None  # issuers are not shared (cache_key)
    if next_update is not None:
        ttl = min(ttl, (next_update - at).total_seconds())
    return ttl if ttl >= 1.0 else None


def seal(key: str, body: bytes, settings: SharedSettings) -> bytes:
    """What is stored under ``key``: ``body``, preceded by its HMAC tag when there is a secret."""
    if settings.secret is None:
        return body
    return hmac.new(settings.secret, key.encode() + b"\0" + body, hashlib.sha256).digest() + body


def unseal(key: str, value: bytes, settings: SharedSettings) -> bytes | None:
    """The body stored under ``key``, or None when its tag does not verify (written by someone
    without the secret, or for another key)."""
    if settings.secret is None:
        return value
    tag, body = value[:_TAG], value[_TAG:]
    good = hmac.new(settings.secret, key.encode() + b"\0" + body, hashlib.sha256).digest()
    return body if len(tag) == _TAG and hmac.compare_digest(tag, good) else None
