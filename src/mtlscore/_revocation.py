"""Revocation of one certificate on a validated path, and the cache of fetched answers.

Sources, in order (RFC 5280 §6.3, RFC 6960): CRLs the operator gave; OCSP
responses the caller has (stapled); the cache of fetched answers; and then, when
``Policy.fetch`` is on, requests for the certificate's OCSP responders and CRL
distribution points (preferred kind first). The first definite answer (good or
revoked) decides. When none comes, the position's mode decides: ``soft``
accepts and records why on the verdict's notes; ``hard`` rejects with
``revocation_unavailable``.

A CRL *given* for the issuer that cannot be used is an operator problem and
rejects even in soft mode (the core validator's rule); a *fetched* answer that
cannot be used is merely no answer.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ._aia import http_url
from ._cert import Certificate
from ._crl import ParsedCRL, check_certificate, parse_crl
from ._machine import NeedCRL, NeedOCSP, Request
from ._ocsp import OCSPStatus, build_request, check_response
from ._policy import Policy
from ._reasons import Reason

__all__ = ["Outcome", "PositionCheck", "RevocationCache", "Source", "plan_sources"]


@dataclass(frozen=True, slots=True)
class Source:
    """Where revocation status for a certificate can be fetched."""

    kind: Literal["ocsp", "crl"]
    url: str


def plan_sources(cert: Certificate, policy: Policy) -> tuple[list[Source], list[str]]:
    """The fetchable sources for ``cert``, preferred kind first, and notes on skipped ones."""
    notes: list[str] = []
    by_kind: dict[str, list[Source]] = {"ocsp": [], "crl": []}
    for kind, urls in (("ocsp", cert.ocsp_urls), ("crl", cert.crl_urls)):
        for url in dict.fromkeys(urls):
            if http_url(url):
                by_kind[kind].append(Source(kind, url))  # type: ignore[arg-type]
            else:
                # RFC 5280 §4.2.1.13 allows LDAP and others; runtimes speak HTTP only.
                notes.append(f"{kind.upper()} location {url!r} of {cert.describe()!r} skipped: only http(s) is fetched")
    first, second = ("ocsp", "crl") if policy.revocation_prefer == "ocsp" else ("crl", "ocsp")
    return by_kind[first] + by_kind[second], notes


# -- the cache -----------------------------------------------------------------


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
    Shared by every validation of a :class:`Validator`; time is always given.
    """

    def __init__(
        self, *, max_entries: int = 4096, max_bytes: int = 64 * 1024 * 1024, max_age: timedelta = timedelta(days=7)
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_age = max_age
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
        self._bytes = 0

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


# -- one certificate -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """The revocation decision for one certificate: accept (``reason`` None) or reject."""

    reason: Reason | None
    detail: str = ""
    notes: tuple[str, ...] = ()


class PositionCheck:
    """The revocation check of the certificate at ``position`` on a validated path.

    Local sources are consulted on construction; :meth:`next_request` then asks
    for what is still missing, one request at a time, until :attr:`outcome` is set.
    """

    def __init__(
        self,
        cert: Certificate,
        issuer: Certificate,
        position: int,
        *,
        policy: Policy,
        cache: RevocationCache,
        given: list[ParsedCRL],
        stapled: list[bytes],
        at: datetime,
    ) -> None:
        self.cert = cert
        self.issuer = issuer
        self.position = position
        self.policy = policy
        self.cache = cache
        self.at = at
        self.mode = policy.revocation_mode(position)
        self.outcome: Outcome | None = None
        self.notes: list[str] = []
        self.failures: list[str] = []
        self.sources: list[Source] = []
        self.tried = 0
        self._nonce: bytes | None = None
        self._local(given, stapled)

    # -- deciding ----------------------------------------------------------

    def _accept(self) -> None:
        self.outcome = Outcome(None, "", tuple(self.notes))

    def _reject(self, reason: Reason, detail: str) -> None:
        self.outcome = Outcome(reason, detail, tuple(self.notes))

    def _revoked(self, detail: str) -> None:
        self._reject(Reason.REVOKED, detail + "; the holder needs a new certificate")

    def _give_up(self, *, had_sources: bool) -> None:
        if not had_sources and not self.failures:
            if self.mode == "hard":
                self._reject(
                    Reason.REVOCATION_UNAVAILABLE,
                    f"revocation is hard-fail and there is no CRL for {self.cert.describe()!r} "
                    f"(issuer {self.cert.issuer_text!r})"
                    + ("" if not self.policy.fetch else " and it names no fetchable CRL or OCSP location"),
                )
            else:
                if self.policy.fetch:
                    self.notes.append(
                        f"revocation of {self.cert.describe()!r} not checked: it names no CRL or OCSP location"
                    )
                self._accept()
            return
        who = self.cert.describe()
        why = "; ".join(self.failures) or "no answer"
        if self.mode == "hard":
            self._reject(Reason.REVOCATION_UNAVAILABLE,
                         f"revocation is hard-fail and no fresh status for {who!r} could be had: {why}")
        else:
            self.notes.append(f"revocation of {who!r} not checked (soft-fail): {why}")
            self._accept()

    def _local(self, given: list[ParsedCRL], stapled: list[bytes]) -> None:
        p = self.policy
        if self.mode == "off":
            self._accept()
            return
        if self.mode == "soft" and not given and not stapled and not p.fetch and not len(self.cache):
            # Soft-fail with nothing to consult: the answer is "accept" with nothing to note.
            self._accept()
            return
        st = check_certificate(self.cert, self.issuer, given, at=self.at, skew=p.clock_skew,
                               max_age=p.max_revocation_age)
        if st.status == "revoked":
            self._revoked(st.detail)
            return
        if st.status == "good":
            self._accept()
            return
        if st.status == "unavailable":
            # A CRL given for this issuer that cannot be used fails in soft mode too.
            self._reject(Reason.REVOCATION_UNAVAILABLE,
                         f"no usable revocation data for {self.cert.describe()!r}: {st.detail}")
            return
        for data in stapled:
            o = self._ocsp_status(data, nonce=None)
            if o.status == "good":
                self._accept()
                return
            if o.status == "revoked":
                self._revoked(o.detail)
                return
            if o.status != "unrelated":
                self.notes.append(f"a stapled OCSP response was ignored: {o.detail}")
        sources, skipped = plan_sources(self.cert, p)
        self.notes.extend(skipped)
        for src in sources:
            if self._from_cache(src):
                return
        if p.fetch and sources:
            self.sources = sources
            return
        if given and not p.fetch and self.mode == "soft":
            self.notes.append(f"revocation of {self.cert.describe()!r} not checked: no CRL for its issuer (soft-fail)")
        self._give_up(had_sources=p.fetch and bool(sources))

    def _from_cache(self, src: Source) -> bool:
        if src.kind == "crl":
            crl = self.cache.get_crl(self.issuer, src.url, at=self.at)
            return crl is not None and self._crl_status(crl, src.url, store=False)
        status = self.cache.get_ocsp(self.issuer, src.url, self.cert.serial, at=self.at)
        if status is None or (status.this_update is not None and status.this_update > self.at + self.policy.clock_skew):
            return False
        if status.status == "revoked":
            self._revoked(status.detail)
            return True
        if status.status == "good":
            self._accept()
            return True
        return False

    def _crl_status(self, crl: ParsedCRL, url: str, *, store: bool) -> bool:
        p = self.policy
        st = check_certificate(self.cert, self.issuer, [crl], at=self.at, skew=p.clock_skew,
                               max_age=p.max_revocation_age, url=url)
        if st.status in ("good", "revoked") and store:
            self.cache.put_crl(self.issuer, url, crl, at=self.at, max_age=p.max_revocation_age)
        if st.status == "revoked":
            self._revoked(st.detail)
            return True
        if st.status == "good":
            self._accept()
            return True
        if st.status == "uncovered":
            self.failures.append(
                f"the CRL at {url} is issued by {crl.issuer_text!r}, not by {self.cert.issuer_text!r}")
        else:
            self.failures.append(f"the CRL at {url} is unusable: {st.detail}")
        return False

    def _ocsp_status(self, data: bytes, *, nonce: bytes | None) -> OCSPStatus:
        p = self.policy
        return check_response(data, self.cert, self.issuer, at=self.at, skew=p.clock_skew,
                              max_age=p.max_revocation_age, nonce=nonce, allowed_hashes=p.signature_hashes)

    # -- asking ------------------------------------------------------------

    def next_request(self) -> Request | None:
        """The next request to make, or None once :attr:`outcome` is set."""
        while self.outcome is None:
            if not self.sources:
                self._give_up(had_sources=True)
                return None
            src = self.sources.pop(0)
            self.tried += 1
            if src.kind == "crl":
                return NeedCRL(src.url)
            self._nonce = secrets.token_bytes(16) if self.policy.ocsp_nonce else None
            try:
                der = build_request(self.cert, self.issuer, nonce=self._nonce)
            except Exception as exc:  # noqa: BLE001 - a certificate the OCSP encoder refuses
                self.failures.append(f"no OCSP request could be built for {src.url}: {exc}")
                continue
            return NeedOCSP(src.url, der)
        return None

    def answer(self, request: Request, data: bytes) -> None:
        """Take the bytes fetched for ``request``. Never raises on bad bytes."""
        p = self.policy
        if len(data) > p.max_fetch_bytes:
            self.failures.append(f"{request.url}: the answer is over {p.max_fetch_bytes} bytes")
            return
        if isinstance(request, NeedCRL):
            try:
                crl = parse_crl(bytes(data))
            except ValueError as exc:
                self.failures.append(f"{request.url}: {exc}")
                return
            self._crl_status(crl, request.url, store=True)
            return
        if isinstance(request, NeedOCSP):
            o = self._ocsp_status(bytes(data), nonce=self._nonce)
            if o.status in ("good", "revoked"):
                self.cache.put_ocsp(self.issuer, request.url, self.cert.serial, o, at=self.at,
                                    max_age=p.max_revocation_age)
                if o.status == "good":
                    self._accept()
                else:
                    self._revoked(o.detail)
                return
            self.failures.append(f"{request.url}: {o.detail}")

    def fail(self, request: Request, why: str) -> None:
        """Record that ``request`` could not be answered."""
        self.failures.append(f"{request.url}: {why or 'unavailable'}")
