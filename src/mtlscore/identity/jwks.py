"""JWK Sets from a URL, sans-IO: a cache that asks its caller to fetch (like ``NeedCRL``).

Authorization servers publish their token-signing keys at a ``jwks_uri`` and
rotate them; RFC 8705 §2.2 clients may register a ``jwks_uri`` instead of a
``jwks``. :class:`JwksCache` holds one entry per URL and never does I/O:

- :meth:`JwksCache.due` returns a :class:`NeedJwks` when the caller should fetch
  (no keys yet, or the keys' time to live has passed), at most once per
  ``retry_interval`` while fetches fail;
- :meth:`JwksCache.refresh` returns one when a token names an unknown ``kid``
  or fails verification (the issuer may have rotated), at most once per
  ``refresh_interval``;
- the caller fetches (the runtimes do it with h11, ``runtimes/fetch.py``) and
  reports :meth:`JwksCache.answer` (status, ``Cache-Control``, body) or
  :meth:`JwksCache.fail`;
- :meth:`JwksCache.keys` gives the current keys: stale ones keep working while
  refetches fail, up to ``max_stale`` past their expiry. A bad answer (not JSON,
  not a JWK Set, too big, no usable key) is recorded as the entry's error and
  keeps the last good keys.

Time is a parameter (``now``: monotonic seconds).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from ..reasons import ConfigError

__all__ = [
    "JwkSet",
    "JwksCache",
    "JwksFetcher",
    "JwksLimits",
    "JwksUnavailable",
    "NeedJwks",
    "check_jwks_uri",
    "limits_from_config",
    "parse_jwks",
    "ttl_from_cache_control",
    "with_jwks",
]


@dataclass(frozen=True, slots=True)
class JwksLimits:
    """Bounds of a JWKS cache (seconds and bytes). Construction raises ConfigError."""

    # RFC 9111 §5.2.2.1 max-age is honoured within [min_ttl, max_ttl]; default_ttl without it.
    default_ttl: float = 300.0
    min_ttl: float = 60.0
    max_ttl: float = 86400.0
    # An unknown kid / failed verification refetches at most once per this many seconds:
    # a client sending tokens with made-up kids cannot turn the gateway into a flood.
    refresh_interval: float = 30.0
    # After a failed fetch, the next attempt waits this long.
    retry_interval: float = 30.0
    # Expired keys keep working while refetches fail, for at most this long past expiry.
    max_stale: float = 86400.0
    max_bytes: int = 256 * 1024
    max_keys: int = 64
    timeout: float = 5.0  # for the runtime's fetch

    def __post_init__(self) -> None:
        for name in ("default_ttl", "min_ttl", "max_ttl", "refresh_interval", "retry_interval", "max_stale",
                     "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"must be a non-negative number of seconds, not {value!r}", key=f"jwks.{name}")
        if not self.min_ttl <= self.default_ttl <= self.max_ttl:
            raise ConfigError("needs min_ttl <= default_ttl <= max_ttl", key="jwks.default_ttl")
        for name in ("max_bytes", "max_keys"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"must be a positive integer, not {value!r}", key=f"jwks.{name}")


DEFAULT_LIMITS = JwksLimits()


@dataclass(frozen=True, slots=True)
class NeedJwks:
    """Fetch the JWK Set at ``url`` (HTTP GET, at most ``max_bytes``, within ``timeout`` s) and report it."""

    url: str
    max_bytes: int = 256 * 1024
    timeout: float = 5.0
    # Asked by :meth:`JwksCache.refresh` (an unknown kid): the issuer's current set is wanted,
    # not a copy another process holds (``[shared]``).
    refresh: bool = field(default=False, compare=False)
    # The asking cache's limits (``[server.jwks]``): whoever handles the answer besides the
    # cache (the ``[shared]`` store: how long another process may reuse it) holds it to the
    # same bounds the cache does.
    limits: JwksLimits = field(default=DEFAULT_LIMITS, compare=False)

_CONFIG_NAMES = {
    "default_ttl_seconds": "default_ttl", "min_ttl_seconds": "min_ttl", "max_ttl_seconds": "max_ttl",
    "refresh_interval_seconds": "refresh_interval", "retry_interval_seconds": "retry_interval",
    "max_stale_seconds": "max_stale", "max_bytes": "max_bytes", "max_keys": "max_keys",
    "timeout_seconds": "timeout",
}


def limits_from_config(table: object, *, key: str = "server.jwks") -> JwksLimits:
    """:class:`JwksLimits` from a config table (``refresh_interval_seconds = 30``, …); raises ConfigError."""
    if not isinstance(table, Mapping):
        raise ConfigError("must be a table", key=key)
    unknown = sorted(set(table) - set(_CONFIG_NAMES))
    if unknown:
        raise ConfigError(f"unknown key (known: {', '.join(sorted(_CONFIG_NAMES))})", key=f"{key}.{unknown[0]}")
    try:
        return JwksLimits(**{_CONFIG_NAMES[k]: v for k, v in table.items()})
    except ConfigError as exc:
        field_name = (exc.key or "").removeprefix("jwks.")
        name = next((k for k, v in _CONFIG_NAMES.items() if v == field_name), field_name)
        raise ConfigError(exc.message, key=f"{key}.{name}") from None


class JwksUnavailable(Exception):
    """No usable keys for a URL: never fetched successfully, or stale past ``max_stale``."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"{url}: {detail}")
        self.url = url
        self.detail = detail


# RFC 3986 §3: scheme "://" authority; the authority is non-empty (the runtime's URL parser does the rest).
_HTTP_URL = re.compile(r"^(?i:https?)://[^/?#\s@]+(?:[/?#]\S*)?$")
_MAX_AGE = re.compile(r"(?:^|,)\s*(s-maxage|max-age)\s*=\s*\"?(\d{1,10})\"?\s*(?=,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(no-store|no-cache)\s*(?=,|=|$)", re.IGNORECASE)


def ttl_from_cache_control(value: str | bytes | None, limits: JwksLimits = DEFAULT_LIMITS) -> float:
    """Seconds to keep a JWKS, from its ``Cache-Control`` (RFC 9111 §5.2.2), within the limits.

    ``max-age`` (or ``s-maxage``: we are a shared cache, §5.2.2.10) clamped to
    ``[min_ttl, max_ttl]``; ``no-store``/``no-cache`` mean ``min_ttl`` (a key
    fetched per request is a flood); absent or unreadable, ``default_ttl``.
    """
    if value is None:
        return limits.default_ttl
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if _NO_CACHE.search(text):
        return limits.min_ttl
    ages = {m.group(1).lower(): int(m.group(2)) for m in _MAX_AGE.finditer(text)}
    age = ages.get("s-maxage", ages.get("max-age"))
    if age is None:
        return limits.default_ttl
    return float(min(max(age, limits.min_ttl), limits.max_ttl))


# A parsed JWK Set: {"keys": [...]}, public members only, each still as its publisher wrote it
# (the JOSE library checks a key's members when it is used).
JwkSet = dict[str, list[dict[str, object]]]


def parse_jwks(data: object, *, limits: JwksLimits = DEFAULT_LIMITS,
               key: str = "jwks", allow_empty: bool = False) -> JwkSet:
    """A JWK Set (RFC 7517 §5) from JSON text or bytes, or a mapping; private members are dropped.

    Raises :class:`ConfigError` naming ``key`` when it is not JSON, not a JWK
    Set, too large, or (unless ``allow_empty``) holds no public key (RSA, EC, OKP).
    """
    found = data
    if isinstance(found, bytes | str):
        if len(found) > limits.max_bytes:
            raise ConfigError(f"is {len(found)} bytes; the limit is {limits.max_bytes}", key=key)
        try:
            found = json.loads(found)
        except (ValueError, RecursionError):
            raise ConfigError("is not JSON", key=key) from None
    members = found.get("keys") if isinstance(found, Mapping) else None
    if not isinstance(members, list):
        raise ConfigError('is not a JWK Set {"keys": [...]} (RFC 7517 §5)', key=key)
    if len(members) > limits.max_keys:
        raise ConfigError(f"has {len(members)} keys; the limit is {limits.max_keys}", key=key)
    keys: list[dict[str, object]] = []
    for m in members:
        # Public-key types only: an "oct" member would make the set a shared secret.
        if isinstance(m, Mapping) and m.get("kty") in ("RSA", "EC", "OKP"):
            keys.append({k: v for k, v in m.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth", "k")})
    if not keys and not allow_empty:
        raise ConfigError("holds no public key (RSA, EC or OKP)", key=key)
    return {"keys": keys}


def check_jwks_uri(url: object, *, key: str) -> str:
    """``url`` if it is an absolute http(s) URL, else ConfigError naming ``key``."""
    if not isinstance(url, str):
        raise ConfigError("must be an https:// (or http://) URL string", key=key)
    if not _HTTP_URL.match(url):
        raise ConfigError(f"{url!r} is not an http(s) URL", key=key)
    return url


@dataclass(slots=True)
class _Entry:
    keys: JwkSet | None = None
    fetched_at: float | None = None
    expires_at: float = 0.0
    last_attempt: float | None = None
    last_refresh: float | None = None
    error: str = ""
    fetches: int = 0


@dataclass(slots=True)
class JwksCache:
    """Keys by URL, with their expiry, last error and refetch budget (see the module doc).

    One cache is shared by every request of a process; it survives configuration
    reloads (a URL no longer configured is just never asked for).
    """

    limits: JwksLimits = field(default_factory=JwksLimits)
    _entries: dict[str, _Entry] = field(default_factory=dict)

    def _entry(self, url: str) -> _Entry:
        entry = self._entries.get(url)
        if entry is None:
            entry = self._entries[url] = _Entry()
        return entry

    def _request(self, url: str) -> NeedJwks:
        return NeedJwks(url, self.limits.max_bytes, self.limits.timeout, limits=self.limits)

    def due(self, url: str, *, now: float) -> NeedJwks | None:
        """A request when the keys of ``url`` should be (re)fetched before use, else None."""
        entry = self._entry(url)
        if entry.keys is not None and now < entry.expires_at:
            return None
        if entry.last_attempt is not None and now - entry.last_attempt < self.limits.retry_interval:
            return None  # failed (or fetched) recently: no hammering a broken server
        return self._request(url)

    def refresh(self, url: str, *, now: float) -> NeedJwks | None:
        """A request after an unknown ``kid`` or a failed verification, at most once per ``refresh_interval``."""
        entry = self._entry(url)
        for t in (entry.last_refresh, entry.last_attempt):
            if t is not None and now - t < self.limits.refresh_interval:
                return None
        entry.last_refresh = now
        return replace(self._request(url), refresh=True)

    def keys(self, url: str, *, now: float) -> JwkSet:
        """The usable keys of ``url``. Raises :class:`JwksUnavailable` when there are none."""
        entry = self._entry(url)
        if entry.keys is None:
            raise JwksUnavailable(url, "no keys fetched yet" + (f" ({entry.error})" if entry.error else ""))
        if now >= entry.expires_at + self.limits.max_stale:
            raise JwksUnavailable(
                url,
                f"the keys expired over {self.limits.max_stale:g} s ago and could not be refetched"
                + (f" ({entry.error})" if entry.error else ""),
            )
        return entry.keys

    def answer(self, request: NeedJwks, *, status: int, body: bytes, cache_control: str | bytes | None,
               now: float) -> str | None:
        """Report a fetched answer. None when it replaced the keys, else the error kept on the entry."""
        entry = self._entry(request.url)
        entry.last_attempt = now
        entry.fetches += 1
        if status != 200:
            entry.error = f"HTTP {status}"
            return entry.error
        try:
            keys = parse_jwks(body, limits=self.limits, key=request.url)
        except ConfigError as exc:
            # The last good keys stay: one bad deployment at the issuer must not lock everyone out.
            entry.error = f"the answer {exc.message}"
            return entry.error
        entry.keys = keys
        entry.fetched_at = now
        entry.expires_at = now + ttl_from_cache_control(cache_control, self.limits)
        entry.error = ""
        return None

    def fail(self, request: NeedJwks, detail: str, *, now: float) -> None:
        """Report that the fetch failed (network, timeout, size); the last good keys stay."""
        entry = self._entry(request.url)
        entry.last_attempt = now
        entry.fetches += 1
        entry.error = detail

    def error(self, url: str) -> str:
        """The last fetch error of ``url`` ("" after a good answer)."""
        entry = self._entries.get(url)
        return entry.error if entry is not None else ""

    def fetches(self, url: str) -> int:
        """How many answers and failures were reported for ``url``."""
        entry = self._entries.get(url)
        return entry.fetches if entry is not None else 0


T = TypeVar("T")


class JwksFetcher(Protocol):
    """What :func:`with_jwks` needs of a fetcher: ``runtimes.fetch_asyncio.AsyncioFetcher`` or
    ``runtimes.fetch_trio.TrioFetcher`` (their ``jwks`` fetches with h11 and reports to the cache)."""

    def jwks(self, cache: JwksCache, request: NeedJwks, *, now: float) -> Awaitable[str | None]: ...


async def with_jwks(
    fetcher: JwksFetcher,
    cache: JwksCache,
    url: str,
    use: Callable[[JwkSet], T],
    *,
    now: float,
    missed: Callable[[Exception], bool],
) -> T:
    """``use(keys)`` with the keys of ``url``: fetched first when due, refetched once when
    ``use`` raises an exception ``missed`` says is a key miss (unknown kid, unregistered key).

    Raises :class:`JwksUnavailable` when there are no usable keys, else what ``use`` raises.
    """
    request = cache.due(url, now=now)
    if request is not None:
        await fetcher.jwks(cache, request, now=now)
    keys = cache.keys(url, now=now)
    try:
        return use(keys)
    except Exception as exc:
        if not missed(exc) or (request := cache.refresh(url, now=now)) is None:
            raise
        if await fetcher.jwks(cache, request, now=now) is not None:
            raise  # the refetch failed: the miss stands
    return use(cache.keys(url, now=now))

