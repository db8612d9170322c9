"""``mtlscore certs [SOURCE]``: the expiry report, soonest first (mtlscore.gateway.radar).

SOURCE is the gateway's admin listener (``http://127.0.0.1:9443``, its ``/certs``)
or a snapshot file saved from it; ``--config`` adds (or, alone, shows) a
configuration's own certificates and CRLs. Exit 0, 2 on a usage error or an
unreadable source.
"""

from __future__ import annotations

import argparse
import json
import re
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

from ..gateway.radar import DEFAULT_HORIZON, Report, Row, report
from .check import parse_at, read_input
from .common import Command, CommandError, arg

__all__ = ["load_report", "parse_window", "printable", "COMMAND", "run"]

# The admin endpoint's answer is a few MB at most (radar_max_certificates entries with chains).
MAX_SNAPSHOT_BYTES = 256 << 20
_WINDOW = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "": 86400}


def parse_window(value: str) -> timedelta:
    m = _WINDOW.match(value.strip())
    if not m:
        raise CommandError(f"--within {value!r}: expected a number and a unit (30d, 12h, 2w, 90m)")
    return timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2)])


def load_report(source: str, *, chains: bool = True) -> Report:
    """The report at an admin URL (``http://host:port`` → ``/certs``) or in a snapshot file.

    ``chains=False`` asks the admin endpoint to leave the presented chains out (smaller).
    Raises CommandError naming the source.
    """
    if source.startswith(("http://", "https://")):
        url = urllib.parse.urlsplit(source)
        if url.scheme != "http":
            raise CommandError(f"{source}: the admin listener speaks plain http://")
        if url.path in ("", "/"):
            url = url._replace(path="/certs")
        if not chains:
            url = url._replace(query="&".join(q for q in (url.query, "chains=0") if q))
        try:
            # No proxy from the environment: the admin listener is the gateway's own, reached directly.
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(urllib.parse.urlunsplit(url), timeout=30) as answer:
                data = answer.read(MAX_SNAPSHOT_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"cannot read {source}: {exc}") from None
    else:
        data = read_input(source)
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise CommandError(f"{source}: larger than {MAX_SNAPSHOT_BYTES} bytes")
    try:
        return Report.from_json(json.loads(data))
    except (ValueError, UnicodeDecodeError) as exc:  # SnapshotError and JSONDecodeError are ValueErrors
        raise CommandError(f"{source}: not an mtlscore snapshot: {exc}") from None


def _config_rows(path: str) -> list[Row]:
    from ..config import load_config

    config = load_config(path)
    validator = config.validator()
    return list(report(None, at=datetime.now(UTC), trust=config.trust, crls=validator.crls).rows)


def printable(text: str) -> str:
    """``text`` safe for a terminal: a certificate's subject is the client's to choose (an accepted
    one too), and an escape sequence or newline in it must not paint or forge lines of the report."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _left(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    s = abs(int(seconds))
    if s >= 86400:
        return f"{sign}{s // 86400}d{(s % 86400) // 3600}h"
    return f"{sign}{s // 3600}h{(s % 3600) // 60}m"


def _table(rows: list[Row], at: datetime, horizon: timedelta) -> str:
    header = ("NOT AFTER", "LEFT", "STATUS", "KIND", "ACCOUNT", "SUBJECT", "ISSUER", "SERIAL", "SEEN", "LAST SEEN")
    lines: list[tuple[str, ...]] = [header]
    for r in rows:
        lines.append((
            r.not_after.strftime("%Y-%m-%d %H:%M"),
            _left(r.seconds_left(at)),
            r.status(at, horizon),
            r.kind,
            r.account or "-",
            r.subject,
            r.issuer,
            r.serial or "-",
            str(r.count) if r.kind in ("client", "intermediate") else "-",
            r.last_seen.strftime("%Y-%m-%d %H:%M") if r.last_seen else "-",
        ))
    lines = [tuple(printable(c) for c in line) for line in lines]
    widths = [min(max(len(line[i]) for line in lines), 60) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(line, widths, strict=True)]
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    at = parse_at(args.at)
    window = parse_window(args.within) if args.within else None
    if not args.source and not args.config:
        raise CommandError("give SOURCE (an admin URL or a snapshot file), --config FILE, or both")
    loaded = load_report(args.source, chains=args.json and not args.no_chains) if args.source else None
    rows = list(loaded.rows) if loaded is not None else []
    if args.config:
        rows += _config_rows(args.config)
    horizon = loaded.horizon if loaded is not None else DEFAULT_HORIZON
    full = Report.of(at, horizon, rows)
    shown = full.within(window) if window is not None else full.rows
    if args.json:
        doc = Report(at, horizon, shown).to_json(chains=not args.no_chains)
        print(json.dumps(doc, indent=2))
        return 0
    if not shown:
        print("nothing" + (f" expires within {args.within}" if window is not None else " to report"))
        return 0
    print(_table(list(shown), at, horizon))
    return 0


COMMAND = Command(
    "certs",
    help="list the client certificates seen lately and the trust config's, soonest expiry first",
    description="Print the expiry report of a running gateway (SOURCE: its admin URL, "
    "e.g. http://127.0.0.1:9443) or of a snapshot file saved from /certs, with the "
    "certificates and CRLs of --config. Sorted by notAfter (a CRL by nextUpdate). "
    "Exit 0, 2 on a usage error or an unreadable source.",
    arguments=(
        arg("source", metavar="SOURCE", nargs="?", help="admin URL (http://host:port) or snapshot file"),
        arg("--config", metavar="FILE",
            help="also report this configuration's anchors, intermediates, allowlisted certificates and CRLs"),
        arg("--within", metavar="WINDOW",
            help="only what expires within WINDOW (30d, 12h, 2w; a bare number is days), expired included"),
        arg("--at", metavar="TIME", help="report as of TIME (ISO 8601; default now)"),
        arg("--json", action="store_true", help="print the report as JSON (the snapshot format)"),
        arg("--no-chains", action="store_true", help="with --json: leave the presented chains out"),
    ),
    run=run,
)
