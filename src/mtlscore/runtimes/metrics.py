"""The gateway's counters, kept and exposed by prometheus-client (the ``[gateway]`` extra).

One :class:`Metrics` per gateway process. Every family of
:data:`mtlscore.gateway.metrics.FAMILIES` is a prometheus-client ``Counter`` in a private
registry, so ``/metrics`` is the library's own exposition (content negotiation
included) and its multiprocess mode applies unchanged: when
``PROMETHEUS_MULTIPROC_DIR`` is set before prometheus-client is imported, every
process's counters live in that directory and :meth:`Metrics.render` reports the
totals over all of them (the parent marks dead workers with
``prometheus_client.multiprocess.mark_process_dead``).

Without prometheus-client the gateway still counts (:meth:`Metrics.get`), but has no
exposition: ``server.admin_listen`` is then a :class:`ConfigError` (:func:`require_exposition`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..gateway.metrics import FAMILIES, Gauge, label_values
from ..reasons import ConfigError

try:
    import prometheus_client
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError:  # pragma: no cover - exercised by the no-extra install check
    prometheus_client = None  # type: ignore[assignment]

__all__ = ["Metrics", "exposition_available", "require_exposition"]


def exposition_available() -> bool:
    """True when prometheus-client is importable (``pip install 'mtlscore[gateway]'``)."""
    return prometheus_client is not None


def require_exposition() -> None:
    """Raise :class:`ConfigError` (``server.admin_listen``) when /metrics cannot be served."""
    if prometheus_client is None:
        raise ConfigError(
            "serves /metrics, which needs prometheus-client: pip install 'mtlscore[gateway]'",
            key="server.admin_listen",
        )


class _Scrape:
    """What one scrape exposes: the registry's families minus the ``*_created`` series
    prometheus-client adds to counters (/metrics keeps exactly the declared names, as
    in multiprocess mode, whose collector has no creation times), then ``gauges``."""

    def __init__(self, registry: Any, gauges: Iterable[Gauge]) -> None:
        self._registry = registry
        self._gauges = gauges

    def collect(self) -> Iterator[Any]:
        for family in self._registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
        for gauge in self._gauges:
            names = list(gauge.samples[0][0]) if gauge.samples else []
            family = GaugeMetricFamily(gauge.name, gauge.help, labels=names)
            for labels, value in gauge.samples:
                family.add_metric([labels[n] for n in names], value)
            yield family


_MAX_CHILDREN = 4096  # Metrics.inc's lookups kept (see there)


class Metrics:
    """Monotonic counters keyed by family and label values.

    :meth:`inc` raises :class:`KeyError` for an undeclared family or wrong label
    names (a programming error, never a peer's). :meth:`get` reads this process's
    count; :meth:`render` is what a scrape sees (all processes in multiprocess mode).
    """

    def __init__(self) -> None:
        # This process's counts, for get(): exact integers, with or without the extra.
        self._counts: dict[str, dict[tuple[str, ...], int]] = {name: {} for name in FAMILIES}
        self._registry: Any = None
        self._counters: dict[str, Any] = {}
        # (family, the labels' items as given) -> (its bucket, its key, prometheus-client's
        # child): checked and looked up once, not per increment (labels() takes a lock and
        # checks the values again each call). Label values are reason codes, statuses and
        # outcomes, a bounded set; the bound below only guards against a caller's mistake.
        self._children: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[dict[tuple[str, ...], int],
                                                                             tuple[str, ...], Any]] = {}
        if prometheus_client is not None:
            self._registry = prometheus_client.CollectorRegistry(auto_describe=False)
            self._counters = {
                name: prometheus_client.Counter(name, help_text, names, registry=self._registry)
                for name, (help_text, names) in FAMILIES.items()
            }

    def inc(self, family: str, labels: Mapping[str, str] | None = None, by: int = 1) -> None:
        """Add ``by`` to the counter ``family{labels}``."""
        seen = (family, tuple(labels.items()) if labels else ())
        hit = self._children.get(seen)
        if hit is None:
            key = label_values(family, labels)
            child = None
            if self._counters:
                counter = self._counters[family]
                child = counter.labels(*key) if key else counter
            if len(self._children) >= _MAX_CHILDREN:
                self._children.clear()
            hit = self._children[seen] = (self._counts[family], key, child)
        bucket, key, child = hit
        bucket[key] = bucket.get(key, 0) + by
        if child is not None:
            child.inc(by)

    def get(self, family: str, **labels: str) -> int:
        """This process's value of ``family{labels}`` (0 when never incremented); labels left
        out match any value (the sum over them, as a PromQL ``sum`` without them)."""
        _, names = FAMILIES[family]
        unknown = set(labels) - set(names)
        if unknown:
            raise KeyError(f"{family} takes labels {names}, got {sorted(unknown)}")
        want = [(i, labels[n]) for i, n in enumerate(names) if n in labels]
        return sum(v for key, v in self._counts[family].items() if all(key[i] == value for i, value in want))

    def samples(self) -> Iterable[tuple[str, dict[str, str], int]]:
        """This process's samples as (family, labels, value), families in declaration order."""
        for family, (_, names) in FAMILIES.items():
            for key, value in sorted(self._counts[family].items()):
                yield family, dict(zip(names, key, strict=True)), value

    def render(self, accept: str = "", gauges: Iterable[Gauge] = ()) -> tuple[str, bytes]:
        """(content type, body) of a scrape: the counters, then ``gauges`` (values computed
        by the caller at scrape time), in the format ``accept`` asks for (Prometheus text
        0.0.4 by default, OpenMetrics when the scraper prefers it).

        Raises :class:`RuntimeError` without prometheus-client (``admin_listen`` is
        refused at start-up then, so a runtime never calls this).
        """
        if self._registry is None:
            raise RuntimeError("/metrics needs prometheus-client (pip install 'mtlscore[gateway]')")
        source: Any = self._registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            source = prometheus_client.CollectorRegistry(auto_describe=False)
            MultiProcessCollector(source)  # type: ignore[no-untyped-call]
        encode, content_type = choose_encoder(accept)
        return content_type, encode(_Scrape(source, gauges))
