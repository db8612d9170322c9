"""``mtlscore preview --config NEW.toml``: who a trust change would refuse, before it is made.

Replays the chains clients presented — from a gateway's radar (``--against``:
its admin URL or a snapshot file) or from a folder of chain files (``--chains``)
— against NEW.toml now and at ``--at``, and prints every chain refused (or
mapped to another account), old outcome → new outcome with the reason.
Exit 1 when an account (a chain without one: its subject) would have no chain
left that works; 0 otherwise; 2 on a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..gateway.preview import Preview, Recorded, recorded_from, replay
from ..reasons import CertificateRejected
from ..x509.cert import load_certificates
from .certs import load_report, printable
from .check import certificate_input, parse_at
from .common import Command, CommandError, Group, arg

__all__ = ["load_chains", "COMMAND", "run"]

_CHAIN_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".chain")
MAX_CHAIN_FILES = 100_000


def load_chains(folder: str) -> list[Recorded]:
    """One :class:`Recorded` per chain file in ``folder`` (sorted by name). Raises CommandError."""
    path = Path(folder)
    if not path.is_dir():
        raise CommandError(f"--chains {folder}: not a directory")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _CHAIN_SUFFIXES)
    if len(files) > MAX_CHAIN_FILES:
        raise CommandError(f"--chains {folder}: more than {MAX_CHAIN_FILES} chain files")
    chains: list[Recorded] = []
    for file in files:
        try:
            # A key, CSR, CRL or PKCS#7 file dropped in the folder is named as such; PKCS#12 opens
            # with $MTLSCORE_PKCS12_PASSWORD (mtlscore.cli.check.certificate_input).
            certs = load_certificates(certificate_input(str(file), file.read_bytes()))
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror or exc}") from None
        except CertificateRejected as exc:
            raise CommandError(f"{file}: {exc.reason.value}: {exc.detail}") from None
        if not certs:
            raise CommandError(f"{file}: no certificate in it")
        chains.append(Recorded(tuple(c.der for c in certs), certs[0].subject_text, None, source=file.name))
    return chains


def _text(preview: Preview, now: datetime) -> str:
    def when(at: datetime) -> str:
        return "now" if at == now else at.strftime("%Y-%m-%d %H:%M")

    lines: list[str] = []
    refusals = preview.refusals()
    for c in refusals:
        lines.append(f"{when(c.at):<16}  {printable(c.who)}  {printable(c.recorded.subject)}")
        lines.append(f"{'':<16}  {printable(c.old.text())} -> {printable(c.new.text())}")
        if c.new.detail:
            lines.append(f"{'':<16}  {printable(c.new.detail)}")
    locked = preview.locked_out()
    chains = len(preview.changes) // max(len(preview.times), 1)
    summary = [f"{chains} chain(s) replayed at {', '.join(when(t) for t in preview.times)}; "
               f"{len(refusals)} refusal(s)"]
    for at, who in locked.items():
        summary.append(f"locked out {when(at)}: {printable(', '.join(who))}")
    if not locked:
        summary.append("nobody would be locked out")
    return "\n".join([*lines, *([""] if lines else []), *summary])


def _json(preview: Preview) -> dict[str, Any]:
    return {
        "times": [t.isoformat() for t in preview.times],
        "locked_out": {at.isoformat(): list(who) for at, who in preview.locked_out().items()},
        "replays": [
            {
                "at": c.at.isoformat(),
                "who": c.who,
                "subject": c.recorded.subject,
                "source": c.recorded.source,
                "old": c.old.text(),
                "new": c.new.text(),
                "reason": c.new.reason,
                "detail": c.new.detail,
                "keeps_access": c.keeps_access,
            }
            for c in preview.changes
        ],
    }


def run(args: argparse.Namespace) -> int:
    from ..config import load_config

    now = datetime.now(UTC)
    times = [now, *(parse_at(v) for v in args.at)]
    new = load_config(args.config).validator()
    old = load_config(args.current).validator() if args.current else None
    if args.against:
        rows = load_report(args.against).rows
        chains = recorded_from(rows)
        if not chains and any(r.kind == "client" for r in rows):
            raise CommandError(f"{args.against}: the snapshot has no chains to replay "
                               "(saved with --no-chains or from /certs?chains=0)")
    else:
        chains = load_chains(args.chains)
    preview = replay(chains, new, times=times, old=old, now=now)
    if args.json:
        print(json.dumps(_json(preview), indent=2))
    else:
        print(_text(preview, now))
    return 1 if preview.anyone_locked_out else 0


COMMAND = Command(
    "preview",
    help="replay recorded client chains against a new configuration: who would be refused, and why",
    description="Validate the chains clients presented (--against: a gateway's admin URL or a "
    "snapshot of its /certs; --chains: a folder of PEM/DER chain files, leaf first) with "
    "the configuration NEW.toml, now and at --at. Prints each chain refused or mapped to "
    "another account (old -> new, with the reason). Exit 1 when an account would be locked "
    "out (no chain of it accepted), 0 otherwise, 2 on a usage or configuration error.",
    arguments=(
        arg("--config", metavar="NEW.toml", required=True, help="the candidate configuration"),
        Group((
            arg("--against", metavar="SNAPSHOT", help="admin URL (http://host:port) or snapshot file"),
            arg("--chains", metavar="DIR", help="a folder of chain files (.pem .crt .cer .der .chain)"),
        ), required=True),
        arg("--at", metavar="TIME", action="append", default=[],
            help="also replay at TIME (2027-01-31 or ISO 8601; repeatable)"),
        arg("--current", metavar="OLD.toml",
            help="the configuration running now, for the old outcome (default: what the snapshot "
            "recorded; unknown for --chains)"),
        arg("--json", action="store_true", help="print every replay as JSON"),
    ),
    run=run,
)
