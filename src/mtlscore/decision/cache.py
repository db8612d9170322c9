"""The whole-verdict cache: a reconnecting client costs one dictionary lookup.

A verdict is a pure function of the presented chain, the trust store, the
policy, the revocation data and the validation time. The first three are the
cache key — the presented bytes themselves, ``TrustStore.epoch`` and
``Policy.epoch`` (both change on every change) — and the other two bound where
an entry may be used: an accepted verdict is returned only for a validation
time inside ``[latest notBefore on the path, earliest of: any notAfter on the
path, the anchor's activation window, revocation data expiry, stored time +
max_age]``. Inside that window every check the path passed still passes, so
the cached verdict is one a fresh validation could give. Rejections are not
cached: whether another path would succeed at another time is not knowable from
the failed one.

The key holds the presented bytes rather than a digest of them: Python hashes
them for the dictionary (cheaper than SHA-256), and the lookup then compares
them exactly, so no collision can ever hand one client another client's verdict.

Memory is bounded (LRU, ``size`` entries). The runtimes are single-threaded
event loops; every operation here is a few dictionary calls that tolerate a
concurrent eviction, which is all the thread safety they need.

:func:`stats` reports the three caches of the hot path (parsed certificates,
verified signatures, verdicts) for metrics.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..verify.signature import SIGNATURES, SignatureCache
from ..x509.cert import PARSE_CACHE, Certificate, ChainInput
from ..x509.lru import BoundedLRU
from .verdict import Verdict

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_VERDICT_CACHE_SIZE",
    "CacheStats",
    "VerdictCache",
    "chain_key",
    "stats",
]

DEFAULT_VERDICT_CACHE_SIZE = 16384
DEFAULT_MAX_AGE = timedelta(hours=1)

# (verdict, first usable time, last usable time, what the caller attached to it)
_Entry = tuple[Verdict, datetime, datetime, object]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of one cache: entries held, capacity, hits, misses, and what they cost."""

    name: str
    entries: int
    capacity: int
    hits: int
    misses: int
    # Signature cache: signatures actually verified; verdict cache: entries stored.
    work: int = 0

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def to_dict(self) -> dict[str, int | float]:
        return {
            "entries": self.entries,
            "capacity": self.capacity,
            "hits": self.hits,
            "misses": self.misses,
            "work": self.work,
            "hit_ratio": round(self.hit_ratio, 4),
        }


def chain_key(chain: ChainInput | None) -> Hashable | None:
    """The exact presented input as a hashable key, or None when it cannot be one.

    PEM or DER bytes key as themselves; a sequence keys as the tuple of its
    items' bytes (a parsed :class:`Certificate` contributes its DER). Anything
    else (a ``cryptography`` object, a malformed item) is not cached.
    """
    if type(chain) is list or type(chain) is tuple:
        # The hot path: a list of DER from a TLS stack.
        key = tuple(chain)
        for item in key:
            if type(item) is not bytes:
                break
        else:
            return key
    if isinstance(chain, bytes):
        return chain
    if isinstance(chain, str):
        return chain
    if isinstance(chain, list | tuple):
        out: list[bytes | str] = []
        for item in chain:
            if isinstance(item, bytes | str):
                out.append(item)
            elif isinstance(item, Certificate):
                out.append(item.der)
            else:
                return None
        return tuple(out)
    if isinstance(chain, Certificate):
        return chain.der
    return None


def _window(verdict: Verdict) -> tuple[datetime, datetime] | None:
    """[latest notBefore, earliest notAfter] over the path and the anchor's window."""
    path = verdict.path
    if not path:
        return None
    lo, hi = path[0].not_before, path[0].not_after
    for c in path:
        if c.not_before > lo:
            lo = c.not_before
        if c.not_after < hi:
            hi = c.not_after
    if verdict.anchor is not None:
        a_lo, a_hi = verdict.anchor.window()
        if a_lo > lo:
            lo = a_lo
        if a_hi < hi:
            hi = a_hi
    return lo, hi


class VerdictCache(BoundedLRU[Hashable, _Entry]):
    """Bounded LRU of accepted verdicts, each usable only inside its validity window.

    ``size`` bounds the number of verdicts held; ``max_age`` bounds how long
    after it was computed a verdict may be reused. Construction raises
    ``ValueError`` for a negative size or max age.
    """

    def __init__(self, size: int = DEFAULT_VERDICT_CACHE_SIZE, *, max_age: timedelta = DEFAULT_MAX_AGE) -> None:
        if size < 0:
            raise ValueError("verdict cache size must not be negative")
        if max_age < timedelta(0):
            raise ValueError("verdict cache max_age must not be negative")
        super().__init__(size)
        self.max_age = max_age
        self.stored = 0

    @staticmethod
    def key(chain: ChainInput | None, trust_epoch: int, policy_epoch: int, *context: Hashable) -> Hashable | None:
        """The cache key of ``chain`` under a trust/policy epoch (plus caller context); None: uncacheable."""
        presented = chain_key(chain)
        if presented is None:
            return None
        return (presented, trust_epoch, policy_epoch, *context)

    def get(self, key: Hashable, at: datetime) -> Verdict | None:
        """The cached verdict for ``key`` when ``at`` lies inside its window; None otherwise."""
        entry = self.peek(key)
        if entry is None:
            self.misses += 1
            return None
        verdict, lo, hi, _ = entry
        if at < lo or at > hi:
            self.misses += 1
            if at > hi:
                # Expired for every later time too; a validation time before the
                # window (a clock set back) leaves it for the clients on time.
                self.discard(key)
            return None
        self.hit(key)
        return verdict

    def get_attached(self, key: Hashable, at: datetime) -> tuple[Verdict, object] | None:
        """:meth:`get`, with what :meth:`put` attached to the verdict."""
        verdict = self.get(key, at)
        entry = self.peek(key) if verdict is not None else None
        return (verdict, entry[3]) if verdict is not None and entry is not None else None

    def put(
        self,
        key: Hashable,
        verdict: Verdict,
        *,
        at: datetime,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        attached: object = None,
    ) -> bool:
        """Remember an accepted ``verdict`` computed at ``at``; True when it was stored.

        ``valid_from``/``valid_until`` narrow the window for data outside the path
        (the revocation data's thisUpdate / nextUpdate). ``attached`` rides along
        (:meth:`get_attached`): what the caller derived from the same input, valid as
        long as the verdict. A rejection, a verdict without a path, or an empty
        window is not stored.
        """
        if not verdict.ok or self.size == 0:
            return False
        window = _window(verdict)
        if window is None:
            return False
        return self.put_within(key, verdict, at=at, lo=window[0], hi=window[1], valid_from=valid_from,
                               valid_until=valid_until, attached=attached)

    def put_within(
        self,
        key: Hashable,
        verdict: Verdict,
        *,
        at: datetime,
        lo: datetime,
        hi: datetime,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        attached: object = None,
    ) -> bool:
        """:meth:`put` for an accepted ``verdict`` with a path whose window the caller already
        knows: ``lo``/``hi`` are its latest notBefore and earliest notAfter over the path and
        the anchor's window (what :meth:`put` computes from the verdict)."""
        if self.size == 0:
            return False
        limit = at + self.max_age
        if limit < hi:
            hi = limit
        if valid_from is not None and valid_from > lo:
            lo = valid_from
        if valid_until is not None and valid_until < hi:
            hi = valid_until
        if not lo <= at <= hi:
            return False
        self.store(key, (verdict, lo, hi, attached))
        self.stored += 1
        return True

    def clear(self) -> None:
        """Forget every verdict and reset the counters."""
        super().clear()
        self.stored = 0

    def stats(self) -> CacheStats:
        """Counters for metrics."""
        return CacheStats("verdicts", len(self), self.size, self.hits, self.misses, self.stored)


def stats(
    verdicts: VerdictCache | Iterable[VerdictCache] | None = None,
    signatures: SignatureCache | None = None,
) -> dict[str, CacheStats]:
    """Counters of the parse cache, the signature cache and the given verdict cache(s).

    With several verdict caches (one per validator) their counters are summed.
    """
    sigs = signatures or SIGNATURES
    out = {
        "parse": CacheStats("parse", len(PARSE_CACHE), PARSE_CACHE.size, PARSE_CACHE.hits, PARSE_CACHE.misses),
        "signatures": CacheStats("signatures", len(sigs), sigs.size, sigs.hits, sigs.misses, sigs.verifications),
    }
    if verdicts is not None:
        caches = [verdicts] if isinstance(verdicts, VerdictCache) else list(verdicts)
        out["verdicts"] = CacheStats(
            "verdicts",
            sum(len(c) for c in caches),
            sum(c.size for c in caches),
            sum(c.hits for c in caches),
            sum(c.misses for c in caches),
            sum(c.stored for c in caches),
        )
    return out
