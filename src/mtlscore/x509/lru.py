"""The bounded least-recently-used map behind the core's caches (parsed certificates,
verified signatures, verdicts), with hit/miss counters for metrics.

Safe enough for the runtimes' use without locks: a concurrent eviction between a
lookup and its bookkeeping is tolerated, never an error.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedLRU"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedLRU(Generic[K, V]):
    """At most ``size`` entries; the least recently used go first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        # An empty cache is still a cache: ``cache or DEFAULT`` must keep it.
        return True

    def peek(self, key: K) -> V | None:
        """The entry, without counting or reordering."""
        return self._items.get(key)

    def hit(self, key: K) -> None:
        """Count a hit on ``key`` and mark it most recently used."""
        self.hits += 1
        try:
            self._items.move_to_end(key)
        except KeyError:  # evicted in between; harmless
            pass

    def lookup(self, key: K) -> V | None:
        """The entry (counted as a hit, most recently used) or None (counted as a miss)."""
        item = self._items.get(key)
        if item is None:
            self.misses += 1
        else:
            self.hit(key)
        return item

    def store(self, key: K, value: V) -> None:
        """Store ``value`` as most recently used; evict beyond ``size``."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            try:
                self._items.popitem(last=False)
            except KeyError:
                break

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        """Forget every entry and reset the counters."""
        self._items.clear()
        self.hits = self.misses = 0
