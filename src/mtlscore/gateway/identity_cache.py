"""The identity fields a request is forwarded with, remembered per accepted verdict.

A client that connects again presents the same chain, and the validator's verdict
cache hands back the very same :class:`~mtlscore.decision.verdict.Verdict` object
(so does the forwarded cache for a trusted proxy's headers). The gateway's identity
fields (the GCP-style verdict headers, RFC 9440 ``Client-Cert`` and
``Client-Cert-Chain``, the account: ``gateway/forwarding.py``) are a function of that
verdict, the presented certificates, the account and the snapshot's settings alone;
building them (base64 of the chain, structured-field serialisation) and having h11
check them costs more than the rest of a small request's relaying. So each snapshot
(:class:`~mtlscore.gateway.events.Gateway`; a reload starts an empty one) keeps them,
keyed by the verdict object and the presented certificates' DER:

- the key holds the verdict's ``id``; the entry holds the verdict itself, and a hit
  must be that very object, so an id is never taken for another verdict's;
- the presented DER is in the key because one verdict may come with different extra
  certificates (the handshake judges the chain OpenSSL linked up, the session
  forwards what the client sent);
- only accepted verdicts are kept: a refused one is a new object every time.

Bounded: ``size`` entries, the least recently used out first (an entry is ~3 KB of
fields and ~3 KB of key for a leaf and an intermediate).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from ..decision.verdict import Verdict
from ..x509.cert import Certificate
from ..x509.lru import BoundedLRU

__all__ = ["DEFAULT_IDENTITY_CACHE_SIZE", "IdentityCache"]

DEFAULT_IDENTITY_CACHE_SIZE = 512

T = TypeVar("T")


class IdentityCache(Generic[T]):
    """What ``build`` makes of (verdict, presented, account), remembered per accepted verdict."""

    def __init__(self, size: int = DEFAULT_IDENTITY_CACHE_SIZE) -> None:
        self._entries: BoundedLRU[Hashable, tuple[Verdict, T]] = BoundedLRU(size)

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, verdict: Verdict, presented: tuple[Certificate, ...], account: str | None, build: Callable[[], T]
    ) -> T:
        """``build()``'s value for this verdict, presented chain and account: remembered when
        the verdict is accepted, made again otherwise."""
        if not verdict.ok or self._entries.size <= 0:
            return build()
        key = (id(verdict), tuple(c.der for c in presented), account)
        hit = self._entries.lookup(key)
        if hit is not None and hit[0] is verdict:
            return hit[1]
        value = build()
        self._entries.store(key, (verdict, value))
        return value
