"""Trust-change preview: replay recorded client chains against a new configuration.

Sans-IO: given the chains clients presented (from the radar's record or
snapshot, or a folder of chains), the validator of the configuration running
now (or what was recorded: those chains were accepted, as that account) and
the validator of a candidate configuration, say for each chain and each time
asked what changes: ``accepted as acme`` → ``refused: untrusted``. An account
is *locked out* at a time when none of its chains would be accepted as that
account any more. ``mtlscore preview`` prints it; the gateway's reload refuses
a configuration that would lock out an active account (``[server] reload_guard``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..decision.verdict import Verdict
from ..identity.identity_map import Principal
from ..types import JSONObject
from ..x509.cert import ChainInput
from .radar import Row

__all__ = [
    "Change",
    "Outcome",
    "Preview",
    "Recorded",
    "Replayer",
    "account_of",
    "guard",
    "outcome",
    "preview_log",
    "recorded_from",
    "replay",
]


class Replayer(Protocol):
    """What the preview needs of a configuration: a validator (``mtlscore.Validator``)."""

    def validate(self, chain: ChainInput, *, at: datetime) -> Verdict: ...


def account_of(principal: Principal | None) -> str | None:
    """The account id of a mapped principal, as the gateway names it (None: no principal)."""
    return principal.id if principal is not None else None


@dataclass(frozen=True, slots=True)
class Recorded:
    """One chain to replay (DER, leaf first): who it was (``account``, ``subject``), and from where."""

    chain: tuple[bytes, ...]
    subject: str
    account: str | None = None  # the account it was accepted as, when recorded
    source: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A verdict reduced to what the preview compares: accepted (as which account) or why not."""

    ok: bool | None  # None: not known (no current configuration to compare with)
    account: str | None = None
    reason: str | None = None
    detail: str = ""

    def text(self) -> str:
        if self.ok is None:
            return "unknown"
        if self.ok:
            return f"accepted as {self.account}" if self.account else "accepted"
        return f"refused: {self.reason}"


UNKNOWN = Outcome(None)


def outcome(verdict: Verdict) -> Outcome:
    if verdict.ok:
        return Outcome(True, account_of(verdict.principal))
    return Outcome(False, None, verdict.reason.value if verdict.reason else "refused", verdict.detail)


@dataclass(frozen=True, slots=True)
class Change:
    """One chain at one time: its outcome today (``old``) and under the new configuration then."""

    recorded: Recorded
    at: datetime
    old: Outcome
    new: Outcome

    @property
    def who(self) -> str:
        """The account, or the subject when the chain has none."""
        return self.old.account or self.recorded.account or self.new.account or self.recorded.subject

    @property
    def keeps_access(self) -> bool:
        """Accepted under the new configuration as the account it had (a new account is not the old one)."""
        if not self.new.ok:
            return False
        expected = self.old.account or self.recorded.account
        return expected is None or self.new.account == expected


@dataclass(frozen=True, slots=True)
class Preview:
    """Every replay (chain × time), in input order, then time order."""

    changes: tuple[Change, ...]
    times: tuple[datetime, ...]

    def refusals(self) -> tuple[Change, ...]:
        """The replays the new configuration refuses or maps to another account."""
        return tuple(c for c in self.changes if not c.keeps_access)

    def locked_out(self) -> dict[datetime, tuple[str, ...]]:
        """Per time, who (accounts; subjects of chains without one) has no chain left that works.

        Only who had access today counts (old outcome accepted, or unknown).
        """
        out: dict[datetime, tuple[str, ...]] = {}
        for at in self.times:
            had: set[str] = set()
            keeps: set[str] = set()
            for c in self.changes:
                if c.at != at or c.old.ok is False:
                    continue
                had.add(c.who)
                if c.keeps_access:
                    keeps.add(c.who)
            lost = tuple(sorted(had - keeps))
            if lost:
                out[at] = lost
        return out

    @property
    def anyone_locked_out(self) -> bool:
        return bool(self.locked_out())


def recorded_from(rows: Iterable[Row]) -> list[Recorded]:
    """The client rows of a radar record or snapshot (those with a presented chain)."""
    return [
        Recorded(row.chain, row.subject, row.account, source="snapshot")
        for row in rows
        if row.kind == "client" and row.chain
    ]


def replay(
    chains: Sequence[Recorded],
    new: Replayer,
    *,
    times: Sequence[datetime],
    old: Replayer | None = None,
    now: datetime | None = None,
) -> Preview:
    """Validate each chain with ``new`` at each of ``times``.

    The old outcome is ``old``'s verdict at ``now`` (default: the first time)
    when a current configuration is given; else what was recorded (accepted,
    as ``account``) for chains with an account, unknown for the others.
    Validation never raises for bad input: a chain that does not parse is
    ``refused: malformed`` on both sides.
    """
    if not times:
        raise ValueError("replay needs at least one time")
    today = now or times[0]
    changes: list[Change] = []
    for rec in chains:
        if old is not None:
            before = outcome(old.validate(list(rec.chain), at=today))
        elif rec.account is not None:
            before = Outcome(True, rec.account)
        else:
            before = UNKNOWN
        for at in times:
            changes.append(Change(rec, at, before, outcome(new.validate(list(rec.chain), at=at))))
    return Preview(tuple(changes), tuple(times))


def guard(active: Iterable[Row], new: Replayer, *, at: datetime) -> Preview:
    """The reload guard's preview: the clients active lately, replayed with ``new`` at ``at``."""
    return replay(recorded_from(active), new, times=(at,))


def preview_log(preview: Preview) -> list[JSONObject]:
    """The refusals as flat dicts (one log line each)."""
    return [
        {
            "event": "mtls_preview",
            "at": c.at.isoformat(),
            "account": c.who,
            "subject": c.recorded.subject,
            "old": c.old.text(),
            "new": c.new.text(),
            "detail": c.new.detail,
        }
        for c in preview.refusals()
    ]
