"""Gateway counters per decision reason, rendered in the Prometheus text format.

Pure: the runtimes count decisions here and serve :meth:`Metrics.render` on
their admin listener. Format: Prometheus text exposition format 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from .radar import KINDS, WINDOWS, Report

__all__ = ["CONTENT_TYPE", "Metrics", "render_expiry"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (help text, label names). Declared once so the output always has
# HELP/TYPE lines, even before the first sample.
_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "mtlscore_decisions_total": (
        "Gateway decisions by outcome (forward, deny, error) and reason code.",
        ("outcome", "reason"),
    ),
    "mtlscore_handshake_failures_total": (
        "TLS handshakes that failed, by the nearest reason code.",
        ("reason",),
    ),
    "mtlscore_responses_total": ("HTTP responses sent to clients, by status code.", ("status",)),
    "mtlscore_connections_total": ("Client connections accepted.", ()),
    "mtlscore_connections_shed_total": (
        "Client connections closed to make room for a new one when every slot was taken: "
        "the one that had kept the gateway waiting longest for a handshake or a request head.",
        (),
    ),
    "mtlscore_connections_refused_total": (
        "Client connections closed at accept, by the limit that refused them "
        "(max_connections, max_connections_per_address).",
        ("limit",),
    ),
    "mtlscore_connection_errors_total": ("Client connections ended by an unexpected error (a bug; see the log).", ()),
    "mtlscore_reloads_total": (
        "Configuration reloads by result (ok, restart_required, error, refused: by reload_guard).",
        ("result",),
    ),
}


def _escape(value: str) -> str:
    # Exposition format: label values escape backslash, double quote and newline.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(slots=True)
class Metrics:
    """Monotonic counters keyed by family and label values.

    :meth:`inc` raises :class:`KeyError` for an undeclared family or wrong
    label names (a programming error, never a peer's).
    """

    _counts: dict[str, dict[tuple[str, ...], int]] = field(default_factory=lambda: {name: {} for name in _FAMILIES})

    def inc(self, family: str, labels: Mapping[str, str] | None = None, by: int = 1) -> None:
        """Add ``by`` to the counter ``family{labels}``."""
        _, names = _FAMILIES[family]
        labels = labels or {}
        if set(labels) != set(names):
            raise KeyError(f"{family} takes labels {names}, got {sorted(labels)}")
        key = tuple(str(labels[n]) for n in names)
        bucket = self._counts[family]
        bucket[key] = bucket.get(key, 0) + by

    def get(self, family: str, **labels: str) -> int:
        """The current value of ``family{labels}`` (0 when never incremented)."""
        _, names = _FAMILIES[family]
        return self._counts[family].get(tuple(labels.get(n, "") for n in names), 0)

    def samples(self) -> Iterable[tuple[str, dict[str, str], int]]:
        """Every sample as (family, labels, value), families in declaration order."""
        for family, (_, names) in _FAMILIES.items():
            for key, value in sorted(self._counts[family].items()):
                yield family, dict(zip(names, key, strict=True)), value

    def render(self) -> str:
        """The counters in Prometheus text format (one HELP/TYPE block per family)."""
        lines: list[str] = []
        for family, (help_text, names) in _FAMILIES.items():
            lines.append(f"# HELP {family} {help_text}")
            lines.append(f"# TYPE {family} counter")
            samples = sorted(self._counts[family].items())
            if not samples and not names:
                lines.append(f"{family} 0")
            for key, value in samples:
                if names:
                    body = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, key, strict=True))
                    lines.append(f"{family}{{{body}}} {value}")
                else:
                    lines.append(f"{family} {value}")
        return "\n".join(lines) + "\n"


# -- the expiry radar's gauges (mtlscore.gateway.radar), computed from a report at scrape time --------

_EXPIRY_FAMILIES: dict[str, str] = {
    "mtlscore_client_cert_expiry_seconds": (
        "Seconds until the soonest notAfter among each account's client certificates seen lately "
        "(negative: expired)."
    ),
    "mtlscore_certificates_expiring": (
        "Certificates (and CRLs, by nextUpdate) that expire within the window or have expired, by kind: "
        "client and intermediate as seen by the radar; anchor, trust_intermediate, allowlisted and crl "
        "from the configuration."
    ),
    "mtlscore_radar_certificates": "Certificates the expiry radar remembers (bounded by radar_max_certificates).",
}


def render_expiry(report: Report, *, recorded: int) -> str:
    """The radar's gauges in Prometheus text format, from ``report`` (taken at scrape time)."""
    lines: list[str] = []
    name = "mtlscore_client_cert_expiry_seconds"
    lines += [f"# HELP {name} {_EXPIRY_FAMILIES[name]}", f"# TYPE {name} gauge"]
    for account, row in sorted(report.soonest_by_account().items()):
        lines.append(f'{name}{{account="{_escape(account)}"}} {int(row.seconds_left(report.taken))}')
    name = "mtlscore_certificates_expiring"
    lines += [f"# HELP {name} {_EXPIRY_FAMILIES[name]}", f"# TYPE {name} gauge"]
    for days in WINDOWS:
        rows = report.within(timedelta(days=days))
        for kind in KINDS:  # every series present, 0 included: an alert rule sees it from the start
            count = sum(1 for r in rows if r.kind == kind)
            lines.append(f'{name}{{kind="{kind}",within="{days}d"}} {count}')
    name = "mtlscore_radar_certificates"
    lines += [f"# HELP {name} {_EXPIRY_FAMILIES[name]}", f"# TYPE {name} gauge", f"{name} {recorded}"]
    return "\n".join(lines) + "\n"
