"""The cache of fetched revocation answers, and of fetches that failed (negative entries).

Shared by every validation of a :class:`~mtlscore.Validator` (and, when passed,
by several validators); time is always the validation's ``at``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..x509.cert import Certificate
from .crl import ParsedCRL
from .ocsp import OCSPStatus

__all__ = ["RevocationCache"]


@dataclass(frozen=True, slots=True)
class _Entry:
    value: ParsedCRL | OCSPStatus
    expires: datetime
    size: int


class RevocationCache:
    """Fetched revocation answers by (issuer key, URL) — plus serial for OCSP — until they expire.

    An entry expires at the earliest of its nextUpdate, ``max_age`` after it was
    stored, and the policy's ``max_revocation_age`` after it was stored. Only
    answers that verified under the issuer's key are stored. Memory is bounded
    by ``max_entries`` and ``max_bytes`` (least recently used goes first).

    It also remembers fetches that failed (negative entries, by kind and URL,
    at most ``max_failures``, oldest dropped first), each for the TTL it was
    noted with, so that an unreachable responder is not asked by every validation.
    Shared by every validation of a :class:`Validator`; time is always given.
    """

    def __init__(
        self, *, max_entries: int = 4096, max_bytes: int = 64 * 1024 * 1024, max_age: timedelta = timedelta(days=7),
        max_failures: int = 1024,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.max_failures = max_failures
        self._failed: OrderedDict[tuple[str, str], datetime] = OrderedDict()
        self._items: OrderedDict[tuple[bytes, str, int | None], _Entry] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._items.clear()
        self._failed.clear()
        self._bytes = 0

    # -- negative entries ----------------------------------------------------

    @property
    def failures(self) -> int:
        """How many negative entries are held (expired ones included until looked up)."""
        return len(self._failed)

    def note_failure(self, kind: str, url: str, *, at: datetime, ttl: timedelta) -> None:
        """Remember that fetching ``url`` (a ``kind`` source) failed at ``at``, for ``ttl``."""
        if ttl <= timedelta(0) or self.max_failures <= 0:
            return
        key = (kind, url)
        self._failed.pop(key, None)
        self._failed[key] = at + ttl
        while len(self._failed) > self.max_failures:
            self._failed.popitem(last=False)

    def failed_until(self, kind: str, url: str, *, at: datetime) -> datetime | None:
        """Until when ``url`` is not to be fetched again (a failure noted before ``at``), else None."""
        key = (kind, url)
        until = self._failed.get(key)
        if until is None:
            return None
        if at >= until:
            del self._failed[key]
            return None
        return until

    def _get(self, key: tuple[bytes, str, int | None], at: datetime) -> ParsedCRL | OCSPStatus | None:
        entry = self._items.get(key)
        if entry is None:
            self.misses += 1
            return None
        if at >= entry.expires:
            self._drop(key)
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return entry.value

    def _drop(self, key: tuple[bytes, str, int | None]) -> None:
        entry = self._items.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def _put(
        self,
        key: tuple[bytes, str, int | None],
        value: ParsedCRL | OCSPStatus,
        *,
        next_update: datetime | None,
        at: datetime,
        max_age: timedelta,
        size: int,
    ) -> None:
        if size > self.max_bytes or self.max_entries <= 0:
            return
        expires = at + min(max_age, self.max_age)
        if next_update is not None:
            expires = min(expires, next_update)
        if expires <= at:
            return
        self._drop(key)
        self._items[key] = _Entry(value, expires, size)
        self._bytes += size
        while self._items and (len(self._items) > self.max_entries or self._bytes > self.max_bytes):
            old_key = next(iter(self._items))
            self._drop(old_key)

    def get_crl(self, issuer: Certificate, url: str, *, at: datetime) -> ParsedCRL | None:
        """The cached CRL from ``url`` for ``issuer``, if still fresh at ``at``."""
        found = self._get((issuer.spki_sha256, url, None), at)
        return found if isinstance(found, ParsedCRL) else None

    def put_crl(self, issuer: Certificate, url: str, crl: ParsedCRL, *, at: datetime, max_age: timedelta) -> None:
        """Keep a CRL that verified under ``issuer``'s key."""
        self._put((issuer.spki_sha256, url, None), crl, next_update=crl.next_update, at=at, max_age=max_age,
                  size=len(crl.der))

    def get_ocsp(self, issuer: Certificate, url: str, serial: int, *, at: datetime) -> OCSPStatus | None:
        """The cached OCSP status of ``serial`` from ``url``, if still fresh at ``at``."""
        found = self._get((issuer.spki_sha256, url, serial), at)
        return found if isinstance(found, OCSPStatus) else None

    def put_ocsp(
        self, issuer: Certificate, url: str, serial: int, status: OCSPStatus, *, at: datetime, max_age: timedelta
    ) -> None:
        """Keep a definite (good/revoked) OCSP status."""
        self._put((issuer.spki_sha256, url, serial), status, next_update=status.next_update, at=at,
                  max_age=max_age, size=256 + len(status.detail))
