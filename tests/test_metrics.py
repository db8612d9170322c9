"""Prometheus text rendering of the gateway counters."""

from __future__ import annotations

import pytest

from mtlscore.gateway.metrics import CONTENT_TYPE, Metrics


def test_render_has_help_type_and_samples() -> None:
    m = Metrics()
    m.inc("mtlscore_decisions_total", {"outcome": "deny", "reason": "expired"})
    m.inc("mtlscore_decisions_total", {"outcome": "deny", "reason": "expired"})
    m.inc("mtlscore_decisions_total", {"outcome": "forward", "reason": "ok"})
    m.inc("mtlscore_connections_total", by=3)
    text = m.render()
    assert "# HELP mtlscore_decisions_total " in text
    assert "# TYPE mtlscore_decisions_total counter" in text
    assert 'mtlscore_decisions_total{outcome="deny",reason="expired"} 2' in text
    assert 'mtlscore_decisions_total{outcome="forward",reason="ok"} 1' in text
    assert "mtlscore_connections_total 3" in text
    assert text.endswith("\n")
    assert m.get("mtlscore_decisions_total", outcome="deny", reason="expired") == 2
    assert m.get("mtlscore_handshake_failures_total", reason="untrusted") == 0
    assert "0.0.4" in CONTENT_TYPE


def test_empty_families_still_declared() -> None:
    text = Metrics().render()
    assert "# TYPE mtlscore_handshake_failures_total counter" in text
    assert "mtlscore_connections_total 0" in text


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.inc("mtlscore_handshake_failures_total", {"reason": 'a"b\\c\nd'})
    assert 'reason="a\\"b\\\\c\\nd"' in m.render()


def test_wrong_labels_are_a_programming_error() -> None:
    with pytest.raises(KeyError):
        Metrics().inc("mtlscore_decisions_total", {"reason": "x"})
    with pytest.raises(KeyError):
        Metrics().inc("no_such_family")
