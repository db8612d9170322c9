"""The gateway's metrics: names, help texts and label names (the /metrics contract), and
the expiry radar's gauges computed from a report.

Pure declarations and values. The runtimes count into
:class:`mtlscore.runtimes.metrics.Metrics`, which keeps the counters with
prometheus-client and renders the exposition format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from .radar import KINDS, WINDOWS, Report

__all__ = ["FAMILIES", "Gauge", "expiry_gauges", "label_values"]

# name -> (help text, label names). Declared once so the output always has
# HELP/TYPE lines, even before the first sample.
_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "mtlscore_decisions_total": (
        "Gateway decisions by outcome (forward: sent upstream; answer: the identity JSON, no upstream; "
        "authorize: mode auth, the edge's question answered 200; "
        "deny: refused, at the handshake or with a 4xx; error: the upstream failed, or a bad request), "
        "reason code (ok when accepted) and the load balancer's error name for it (empty when it has none).",
        ("outcome", "reason", "lb_error"),
    ),
    "mtlscore_handshake_failures_total": (
        "TLS handshakes that failed, by the nearest reason code and the load balancer's error name for it.",
        ("reason", "lb_error"),
    ),
    "mtlscore_responses_total": ("HTTP responses sent to clients, by status code.", ("status",)),
    "mtlscore_connections_total": ("Client connections admitted (each then gets a TLS handshake).", ()),
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
    "mtlscore_shared_errors_total": (
        "Calls to the shared store ([shared] redis) that failed or timed out, or were not made because it "
        "failed within retry_interval_seconds, by operation (rate_limit: the request got "
        "rate_limit_on_error's behaviour; cache_get, cache_put: the process fetched for itself).",
        ("operation",),
    ),
    "mtlscore_shared_cache_total": (
        "Fetched answers looked up in and stored to the shared store, by kind (crl, ocsp, jwks) and result "
        "(hit: used instead of fetching; miss; rejected: an entry that is not a usable answer, fetched "
        "instead; stored).",
        ("kind", "result"),
    ),
    "mtlscore_upstream_retries_total": (
        "Requests sent again on a new upstream connection: the pooled one they went out on was closed by "
        "the upstream before any byte of the response (idempotent methods only, RFC 9110 §9.2.2).",
        (),
    ),
    "mtlscore_worker_restarts_total": (
        "Worker processes the parent started again after one died ([server] workers > 1; always 0 without).",
        (),
    ),
}


# Read-only view for the runtimes (the table above stays the one place to edit).
FAMILIES: Mapping[str, tuple[str, tuple[str, ...]]] = _FAMILIES


def label_values(family: str, labels: Mapping[str, str] | None) -> tuple[str, ...]:
    """The values of ``labels`` in the declared order of ``family``'s label names.

    Raises :class:`KeyError` for an undeclared family or wrong label names (a
    programming error, never a peer's).
    """
    _, names = _FAMILIES[family]
    labels = labels or {}
    if set(labels) != set(names):
        raise KeyError(f"{family} takes labels {names}, got {sorted(labels)}")
    return tuple(str(labels[n]) for n in names)


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



@dataclass(frozen=True, slots=True)
class Gauge:
    """One gauge family's values at scrape time: (labels, value) per series."""

    name: str
    help: str
    samples: tuple[tuple[Mapping[str, str], float], ...]


def expiry_gauges(report: Report, *, recorded: int) -> tuple[Gauge, ...]:
    """The radar's gauges from ``report`` (taken at scrape time)."""
    name = "mtlscore_client_cert_expiry_seconds"
    expiry = Gauge(
        name,
        _EXPIRY_FAMILIES[name],
        tuple(
            ({"account": account}, int(row.seconds_left(report.taken)))
            for account, row in sorted(report.soonest_by_account().items())
        ),
    )
    name = "mtlscore_certificates_expiring"
    expiring: list[tuple[Mapping[str, str], float]] = []
    for days in WINDOWS:
        rows = report.within(timedelta(days=days))
        for kind in KINDS:  # every series present, 0 included: an alert rule sees it from the start
            expiring.append(({"kind": kind, "within": f"{days}d"}, sum(1 for r in rows if r.kind == kind)))
    name_r = "mtlscore_radar_certificates"
    return (
        expiry,
        Gauge(name, _EXPIRY_FAMILIES[name], tuple(expiring)),
        Gauge(name_r, _EXPIRY_FAMILIES[name_r], (({}, recorded),)),
    )
