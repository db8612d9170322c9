"""The expiry radar: a bounded record of the client certificates (and their CAs) accepted lately.

Sans-IO: the gateway, the ASGI middleware and an auth service call
:meth:`Radar.observe` with each accepted chain, its verdict and the time; they
log the :class:`ExpiryWarning` values it returns (once per certificate, when it
first comes within ``horizon`` of its notAfter) and serve :func:`report` on
their admin listener. Nothing here reads a clock or a file.

Memory is bounded by ``max_certificates`` entries, least recently seen evicted
first. An intermediate is touched after every client it came with, so it is
always more recent than those clients: it is evicted only after all of them.
An entry keeps what the certificate itself shows (subject, issuer, serial,
notAfter, its DER and the chain presented with it, for ``mtlscore preview``)
plus the account it mapped to and when and how often it was seen.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from ..decision.verdict import Verdict
from ..reasons import MtlsError
from ..revocation.crl import ParsedCRL
from ..types import JSONObject
from ..verify.trust import TrustStore
from ..x509.cert import Certificate

__all__ = [
    "DEFAULT_HORIZON",
    "DEFAULT_MAX_CERTIFICATES",
    "KINDS",
    "WINDOWS",
    "ExpiryWarning",
    "Radar",
    "Report",
    "Row",
    "Seen",
    "SnapshotError",
    "report",
    "trust_rows",
]

DEFAULT_MAX_CERTIFICATES = 10_000
DEFAULT_HORIZON = timedelta(days=30)
# The windows of the "expiring within" counts (days): one alert per window.
WINDOWS: tuple[int, ...] = (7, 30)
SNAPSHOT_VERSION = 1

Kind = Literal["client", "intermediate", "anchor", "trust_intermediate", "allowlisted", "crl"]
KINDS: tuple[str, ...] = ("client", "intermediate", "anchor", "trust_intermediate", "allowlisted", "crl")


class Seen(Protocol):
    """What the radar reads of a certificate (:class:`mtlscore.x509.cert.Certificate` has it all)."""

    @property
    def der(self) -> bytes: ...
    @property
    def sha256(self) -> bytes: ...
    @property
    def subject_text(self) -> str: ...
    @property
    def issuer_text(self) -> str: ...
    @property
    def serial(self) -> int: ...
    @property
    def not_after(self) -> datetime: ...


class SnapshotError(ValueError):
    """A snapshot document is not one :meth:`Report.to_json` wrote; the message says where."""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the expiry report: a certificate (or a CRL) and when it stops being usable.

    ``not_after`` is a certificate's notAfter (an anchor's configured
    ``not_after`` when set), or a CRL's nextUpdate. ``chain``: for a client,
    the chain it presented (DER, leaf first), which ``mtlscore preview`` replays.
    """

    kind: str
    subject: str
    issuer: str
    serial: str  # hex, lower case; "" for a CRL without a number
    not_after: datetime
    x5t_s256: str = ""
    account: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    count: int = 0
    chain: tuple[bytes, ...] = ()

    def seconds_left(self, at: datetime) -> float:
        return (self.not_after - at).total_seconds()

    def status(self, at: datetime, horizon: timedelta) -> str:
        """``expired``, ``expiring`` (within ``horizon``) or ``ok``."""
        left = self.not_after - at
        if left <= timedelta(0):
            return "expired"
        return "expiring" if left <= horizon else "ok"

    def as_json(self, at: datetime, horizon: timedelta, *, chains: bool = True) -> JSONObject:
        doc: JSONObject = {
            "kind": self.kind,
            "account": self.account,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "x5t#S256": self.x5t_s256,
            "not_after": _iso(self.not_after),
            "seconds_left": int(self.seconds_left(at)),
            "status": self.status(at, horizon),
            "first_seen": _iso(self.first_seen) if self.first_seen else None,
            "last_seen": _iso(self.last_seen) if self.last_seen else None,
            "count": self.count,
        }
        if chains and self.chain:
            doc["chain"] = [base64.b64encode(der).decode("ascii") for der in self.chain]
        return doc

    @classmethod
    def from_json(cls, doc: object, where: str) -> Row:
        """A row from :meth:`as_json` output; raises :class:`SnapshotError` naming ``where``."""
        if not isinstance(doc, Mapping):
            raise SnapshotError(f"{where}: must be an object")
        kind = doc.get("kind")
        if kind not in KINDS:
            raise SnapshotError(f"{where}.kind: must be one of {', '.join(KINDS)}")
        chain: list[bytes] = []
        items = doc.get("chain") or []
        if not isinstance(items, list):
            raise SnapshotError(f"{where}.chain: must be a list of base64 DER certificates")
        for i, item in enumerate(items):
            try:
                chain.append(base64.b64decode(item, validate=True))
            except (TypeError, ValueError, binascii.Error):
                raise SnapshotError(f"{where}.chain[{i}]: not base64") from None
        count = doc.get("count", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise SnapshotError(f"{where}.count: must be a non-negative integer")
        account = doc.get("account")
        if account is not None and not isinstance(account, str):
            raise SnapshotError(f"{where}.account: must be a string or null")
        return cls(
            kind=str(kind),
            subject=_text(doc, "subject", where),
            issuer=_text(doc, "issuer", where),
            serial=_text(doc, "serial", where),
            not_after=_time(doc.get("not_after"), f"{where}.not_after"),
            x5t_s256=_text(doc, "x5t#S256", where),
            account=account,
            first_seen=_time(doc["first_seen"], f"{where}.first_seen") if doc.get("first_seen") else None,
            last_seen=_time(doc["last_seen"], f"{where}.last_seen") if doc.get("last_seen") else None,
            count=count,
            chain=tuple(chain),
        )


@dataclass(frozen=True, slots=True)
class ExpiryWarning:
    """A certificate came within the horizon (or past its notAfter): log it, once."""

    row: Row
    at: datetime

    def as_log(self) -> JSONObject:
        row = self.row
        return {
            "event": "cert_expiry_warning",
            "kind": row.kind,
            "account": row.account,
            "subject": row.subject,
            "issuer": row.issuer,
            "serial": row.serial,
            "x5t#S256": row.x5t_s256,
            "not_after": _iso(row.not_after),
            "days_left": round(row.seconds_left(self.at) / 86400, 1),
        }


@dataclass(slots=True)
class _Entry:
    der: bytes
    kind: str
    account: str | None
    subject: str
    issuer: str
    serial: int
    not_after: datetime
    first_seen: datetime
    last_seen: datetime
    count: int = 1
    # The rest of the chain the client presented (DER), shared with the intermediates' entries.
    rest: tuple[bytes, ...] = ()
    warned: bool = False


def _row(key: bytes, entry: _Entry) -> Row:
    return Row(
        kind=entry.kind,
        subject=entry.subject,
        issuer=entry.issuer,
        serial=format(entry.serial, "x"),
        not_after=entry.not_after,
        x5t_s256=base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii"),  # RFC 8705 §3.1
        account=entry.account,
        first_seen=entry.first_seen,
        last_seen=entry.last_seen,
        count=entry.count,
        chain=(entry.der, *entry.rest) if entry.kind == "client" else (),
    )


@dataclass(slots=True)
class Radar:
    """The bounded record (see the module docstring). Not thread-safe: one per event loop."""

    max_certificates: int = DEFAULT_MAX_CERTIFICATES
    horizon: timedelta = DEFAULT_HORIZON
    # SHA-256 of the DER -> entry, least recently seen first.
    _entries: OrderedDict[bytes, _Entry] = field(default_factory=OrderedDict)
    # Issuer texts are shared by many clients: one string each.
    _names: dict[str, str] = field(default_factory=dict)
    # The trust config's rows already warned about (see :meth:`sweep`).
    _warned_rows: set[tuple[str, str, str, datetime]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.max_certificates < 1:
            raise ValueError("max_certificates must be at least 1")

    def __len__(self) -> int:
        return len(self._entries)

    def observe(
        self, chain: Sequence[Seen], verdict: Verdict, *, account: str | None, at: datetime
    ) -> tuple[ExpiryWarning, ...]:
        """Record an accepted ``chain`` (as presented, leaf first) and its ``verdict``.

        A refused verdict or an empty chain records nothing. The intermediates
        recorded are the CA certificates of the validated path (not the anchor,
        which the trust config reports). Returns the warnings to log.
        """
        if not verdict.ok or not chain:
            return ()
        warnings: list[ExpiryWarning] = []
        path = verdict.path
        cas = path[1:-1] if verdict.anchor is not None else path[1:]
        leaf = chain[0]
        # The leaf first, then its CAs: the CAs end up more recent than every client they came with.
        self._touch(leaf, "client", account, at, warnings)
        for cert in cas:
            self._touch(cert, "intermediate", None, at, warnings)
        client = self._entries.get(leaf.sha256)
        if client is not None:
            # The presented rest of the chain, sharing the recorded intermediates' DER (one copy each).
            entries = self._entries
            client.rest = tuple(entries[c.sha256].der if c.sha256 in entries else c.der for c in chain[1:])
        return tuple(warnings)

    def _touch(
        self,
        cert: Seen,
        kind: str,
        account: str | None,
        at: datetime,
        warnings: list[ExpiryWarning],
    ) -> None:
        key = cert.sha256
        entry = self._entries.get(key)
        if entry is None:
            issuer = cert.issuer_text
            entry = _Entry(
                der=cert.der,
                kind=kind,
                account=account,
                subject=cert.subject_text,
                issuer=self._names.setdefault(issuer, issuer),
                serial=cert.serial,
                not_after=cert.not_after,
                first_seen=at,
                last_seen=at,
                count=0,
            )
            self._entries[key] = entry
            while len(self._entries) > self.max_certificates:
                self._entries.popitem(last=False)
            if len(self._names) > 2 * self.max_certificates:
                self._names = {e.issuer: e.issuer for e in self._entries.values()}
        else:
            self._entries.move_to_end(key)
            if account is not None:
                entry.account = account  # the latest mapping wins (an account renamed in the config)
        entry.count += 1
        entry.last_seen = max(entry.last_seen, at)
        self._check(key, entry, at, warnings)

    def _check(self, key: bytes, entry: _Entry, at: datetime, warnings: list[ExpiryWarning]) -> None:
        if not entry.warned and entry.not_after - at <= self.horizon:
            entry.warned = True
            warnings.append(ExpiryWarning(_row(key, entry), at))

    def sweep(self, at: datetime, also: Iterable[Row] = ()) -> tuple[ExpiryWarning, ...]:
        """Warnings for what came within the horizon since it was last looked at.

        The recorded certificates, and ``also`` (the trust config's rows, from
        :func:`trust_rows`): each of those is warned once while it stays in the
        rows given (a reload that keeps a CA does not warn about it again).
        """
        warnings: list[ExpiryWarning] = []
        for key, entry in self._entries.items():
            self._check(key, entry, at, warnings)
        given: set[tuple[str, str, str, datetime]] = set()
        for row in also:
            mark = (row.kind, row.x5t_s256 or row.subject, row.serial, row.not_after)
            given.add(mark)
            if mark not in self._warned_rows and row.not_after - at <= self.horizon:
                self._warned_rows.add(mark)
                warnings.append(ExpiryWarning(row, at))
        self._warned_rows &= given  # bounded by the trust config's size
        return tuple(warnings)

    def rows(self) -> Iterator[Row]:
        """Every recorded certificate, least recently seen first."""
        for key, entry in self._entries.items():
            yield _row(key, entry)

    def active(self, since: datetime) -> list[Row]:
        """The clients seen at or after ``since`` (most recent last)."""
        return [_row(k, e) for k, e in self._entries.items() if e.kind == "client" and e.last_seen >= since]

    def restore(self, rows: Iterable[Row], *, parse: Callable[[bytes], Seen]) -> None:
        """Load the client rows of a snapshot (a restarted gateway keeps its record).

        ``parse``: DER -> certificate (``mtlscore.x509.cert.parse_certificate``); rows
        whose DER does not parse, or without seen times, are skipped. Entries keep their
        times and counts and go in least recently seen first, as the record keeps them.
        Intermediates are recorded again with the first client that brings them.
        """
        clients = [r for r in rows if r.kind == "client" and r.chain]
        for row in sorted(clients, key=lambda r: r.last_seen or r.not_after):
            if row.first_seen is None or row.last_seen is None:
                continue
            try:
                leaf = parse(row.chain[0])
            except (ValueError, MtlsError):  # a snapshot edited by hand: skip what does not parse
                continue
            key = leaf.sha256
            if key in self._entries:
                continue
            issuer = leaf.issuer_text
            self._entries[key] = _Entry(
                der=leaf.der,
                kind="client",
                account=row.account,
                subject=leaf.subject_text,
                issuer=self._names.setdefault(issuer, issuer),
                serial=leaf.serial,
                not_after=leaf.not_after,
                first_seen=row.first_seen,
                last_seen=row.last_seen,
                count=row.count,
                rest=row.chain[1:],
            )
            while len(self._entries) > self.max_certificates:
                self._entries.popitem(last=False)


# -- the trust config's own certificates and CRLs -------------------------------------------


def trust_rows(trust: TrustStore | None, crls: Iterable[ParsedCRL] = ()) -> list[Row]:
    """The trust config's anchors, intermediates and allowlisted certificates, and the CRLs' nextUpdate."""
    rows: list[Row] = []
    if trust is not None:
        for anchor in trust.anchors:
            cert = anchor.certificate
            # An anchor's configured activation window replaces the certificate's (rotation).
            label = f" [{anchor.label}]" if anchor.label else ""  # the config names it so
            rows.append(_cert_row("anchor", cert, not_after=anchor.window()[1], subject=cert.subject_text + label))
        rows += [_cert_row("trust_intermediate", c) for c in trust.intermediates]
        rows += [_cert_row("allowlisted", c) for c in trust.allowlisted]
    for crl in crls:
        # RFC 5280 §5.1.2.5: after nextUpdate the CRL is stale; a missing nextUpdate never expires.
        if crl.next_update is None:
            continue
        rows.append(
            Row(
                kind="crl",
                subject=f"CRL of {crl.issuer_text}",
                issuer=crl.issuer_text,
                serial=format(crl.number, "x") if crl.number is not None else "",
                not_after=crl.next_update,
            )
        )
    return rows


def _cert_row(kind: str, cert: Certificate, *, not_after: datetime | None = None, subject: str = "") -> Row:
    return Row(
        kind=kind,
        subject=subject or cert.subject_text,
        issuer=cert.issuer_text,
        serial=format(cert.serial, "x"),
        not_after=not_after or cert.not_after,
        x5t_s256=cert.x5t_s256,
    )


@dataclass(frozen=True, slots=True)
class Report:
    """The radar's rows and the trust config's, soonest expiry first, as of ``taken``."""

    taken: datetime
    horizon: timedelta
    rows: tuple[Row, ...]

    @classmethod
    def of(cls, taken: datetime, horizon: timedelta, rows: Iterable[Row]) -> Report:
        """A report of ``rows`` in report order (soonest expiry first)."""
        return cls(taken, horizon, _sorted(rows))

    def active(self, since: datetime) -> Report:
        """This report without the recorded certificates last seen before ``since`` (the trust
        config's rows stay): what is in use, for the expiry gauges."""
        kept = tuple(r for r in self.rows if r.last_seen is None or r.last_seen >= since)
        return Report(self.taken, self.horizon, kept)

    def within(self, window: timedelta) -> tuple[Row, ...]:
        """Rows whose notAfter is at most ``window`` after :attr:`taken` (expired ones included)."""
        return tuple(r for r in self.rows if r.not_after - self.taken <= window)

    def soonest_by_account(self) -> dict[str, Row]:
        """Per account, its client certificate that expires first."""
        out: dict[str, Row] = {}
        for row in self.rows:  # sorted: the first seen per account is the soonest
            if row.kind == "client" and row.account is not None and row.account not in out:
                out[row.account] = row
        return out

    def to_json(self, *, chains: bool = True) -> JSONObject:
        return {
            "version": SNAPSHOT_VERSION,
            "taken": _iso(self.taken),
            "horizon_seconds": int(self.horizon.total_seconds()),
            "certificates": [r.as_json(self.taken, self.horizon, chains=chains) for r in self.rows],
        }

    @classmethod
    def from_json(cls, doc: object) -> Report:
        """A report from :meth:`to_json` output; raises :class:`SnapshotError`."""
        if not isinstance(doc, Mapping):
            raise SnapshotError("the snapshot must be a JSON object")
        if doc.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError(f"version: expected {SNAPSHOT_VERSION}, got {doc.get('version')!r}")
        items = doc.get("certificates")
        if not isinstance(items, list):
            raise SnapshotError("certificates: must be a list")
        horizon = doc.get("horizon_seconds", int(DEFAULT_HORIZON.total_seconds()))
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 0:
            raise SnapshotError("horizon_seconds: must be a non-negative integer")
        rows = [Row.from_json(item, f"certificates[{i}]") for i, item in enumerate(items)]
        return cls(_time(doc.get("taken"), "taken"), timedelta(seconds=horizon), _sorted(rows))


def report(
    radar: Radar | None,
    *,
    at: datetime,
    trust: TrustStore | None = None,
    crls: Iterable[ParsedCRL] = (),
    horizon: timedelta | None = None,
) -> Report:
    """The radar's record and the trust config's certificates and CRLs, soonest expiry first."""
    rows = list(radar.rows()) if radar is not None else []
    rows += trust_rows(trust, crls)
    if horizon is None:
        horizon = radar.horizon if radar is not None else DEFAULT_HORIZON
    return Report(at, horizon, _sorted(rows))


def _sorted(rows: Iterable[Row]) -> tuple[Row, ...]:
    return tuple(sorted(rows, key=lambda r: (r.not_after, KINDS.index(r.kind), r.account or "", r.subject)))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise SnapshotError(f"{where}: must be an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SnapshotError(f"{where}: {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise SnapshotError(f"{where}: {value!r} has no time zone")
    return parsed.astimezone(UTC)


def _text(doc: Mapping[str, Any], name: str, where: str) -> str:
    value = doc.get(name, "")
    if not isinstance(value, str):
        raise SnapshotError(f"{where}.{name}: must be a string")
    return value
