"""Certificates a trusted proxy forwarded, remembered by the exact header values.

An edge in front of ``mode = "auth"`` (nginx ``auth_request``, Envoy ``ext_authz``)
asks about the same clients over and over, each time with the same header bytes.
Parsing those and validating the chain again cost several times the rest of the
answer, so the outcome is kept, keyed by everything it is a function of:

- which configured proxy spoke (its position: the proxy fixes the format, the header
  names, the XFCC element, whether its own verdict stands);
- the raw value of every header that decision reads (``TrustedProxy.read_headers``,
  every copy in order: a duplicated header is a different key, and is refused again);
- the validator (its CRLs and identity map), and the trust store's and the policy's
  epochs (both change on every change).

The entries live in a :class:`~mtlscore.decision.cache.VerdictCache`, the type of the
validator's own verdict cache: accepted verdicts only, each reused only inside its
window — the latest notBefore and earliest notAfter on the path and the anchor's
window, the validator's CRLs' thisUpdate … nextUpdate, and ``max_age`` after it was
computed. Nothing is kept when the verdict depends on fetched revocation answers or
per-call CRLs (``Validator.reuse_window``, the same rule as the validator's cache).
The :class:`~mtlscore.gateway.events.Gateway` snapshot owns the cache, so a reload
(trust store, accounts, CRLs) starts from an empty one.

Bounded twice: ``size`` entries (``[server] auth_cache_entries``, 2,048 by default; 0
keeps nothing; least recently used out first), and a key whose
header values exceed ``max_key_bytes`` is not kept, so keys hold at most
``size × max_key_bytes`` bytes (32 MiB by default; a forwarded leaf and intermediate
are ~3 KB). The header bytes come from a trusted proxy, but from what its clients sent.

A hit replaces the header parse and the validation only. Whatever else a request is
decided on still runs every time: which proxy the peer is (address, pin, basic auth),
the client address it reports, and the account's app-level checks (API key, bound
token, ``ip_allow``, rate limit).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta

import h11

from ..decision.cache import DEFAULT_MAX_AGE, CacheStats, VerdictCache
from ..decision.validator import Validator
from ..decision.verdict import Verdict
from ..proxy.trusted import FromProxy
from ..x509.cert import Certificate
from .appauth import AccountAuth
from .settings import AUTH_CACHE_ENTRIES

__all__ = ["DEFAULT_FORWARDED_CACHE_SIZE", "DEFAULT_MAX_KEY_BYTES", "Forwarded", "ForwardedCache"]

DEFAULT_FORWARDED_CACHE_SIZE = AUTH_CACHE_ENTRIES
DEFAULT_MAX_KEY_BYTES = 16 * 1024


@dataclass(slots=True)
class Forwarded:
    """What is remembered beside the verdict, all derived from it and the snapshot alone,
    filled in by the session on first use: the presented chain, parsed; the account's
    app-level settings (``account_auth``, once ``account_known``); the head of a yes in
    auth mode with its identity headers (made and checked by h11 once: an h11 event is
    immutable and sent as often as wanted)."""

    presented: tuple[Certificate, ...]
    account_known: bool = False
    account_auth: AccountAuth | None = None
    answer_headers: list[tuple[str, str]] | None = None
    answer: h11.Response | None = None


class ForwardedCache:
    """Verdicts of forwarded certificates by (proxy, header values, epochs); see the module.

    Raises ``ValueError`` for a negative size, key bound or max age.
    """

    def __init__(
        self,
        size: int = DEFAULT_FORWARDED_CACHE_SIZE,
        *,
        max_key_bytes: int = DEFAULT_MAX_KEY_BYTES,
        max_age: timedelta = DEFAULT_MAX_AGE,
    ) -> None:
        if max_key_bytes < 0:
            raise ValueError("forwarded cache max_key_bytes must not be negative")
        self.verdicts = VerdictCache(size, max_age=max_age)
        self.max_key_bytes = max_key_bytes

    def __len__(self) -> int:
        return len(self.verdicts)

    def key(self, found: FromProxy, validator: Validator, crls: tuple[bytes, ...] = ()) -> Hashable | None:
        """The key of what ``found``'s headers decide under ``validator``; None: not to be cached."""
        if self.verdicts.size == 0 or validator.reuse_window(crls=crls) is None:
            return None
        total = 0
        for copies in found.values:
            for value in copies:
                total += len(value)
        if total > self.max_key_bytes:
            return None
        # The validator itself (hashed by identity, kept alive by the key) stands for its
        # CRLs, identity map and verdict cache: another validator never reads these entries.
        return (found.index, found.values, validator, validator.trust.epoch, validator.policy.epoch)

    def get(self, key: Hashable, at: datetime) -> tuple[Verdict, Forwarded] | None:
        """The verdict and what rides with it, when ``at`` is inside the verdict's window."""
        hit = self.verdicts.get_attached(key, at)
        if hit is None or not isinstance(hit[1], Forwarded):
            return None
        return hit[0], hit[1]

    def put(
        self, key: Hashable, verdict: Verdict, presented: tuple[Certificate, ...], *, at: datetime,
        validator: Validator,
    ) -> Forwarded | None:
        """Remember an accepted ``verdict`` of ``presented`` reached at ``at``; what was
        stored beside it, or None when it was not (a rejection, an empty window)."""
        window = validator.reuse_window()
        if window is None:
            return None
        entry = Forwarded(presented)
        stored = self.verdicts.put(key, verdict, at=at, valid_from=window[0], valid_until=window[1], attached=entry)
        return entry if stored else None

    def clear(self) -> None:
        """Forget every entry."""
        self.verdicts.clear()

    def stats(self) -> CacheStats:
        """Counters for metrics (``work``: entries stored)."""
        s = self.verdicts.stats()
        return CacheStats("forwarded", s.entries, s.capacity, s.hits, s.misses, s.work)
