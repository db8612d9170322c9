"""The gateway counters: declared families, prometheus-client exposition, multiprocess totals."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mtlscore.gateway.metrics import FAMILIES
from mtlscore.runtimes.metrics import Metrics


def scrape(m: Metrics, accept: str = "") -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The scrape as {family: {sorted labels: value}}, read by prometheus-client's own parser."""
    content_type, body = m.render(accept)
    assert content_type.startswith("text/plain; version=0.0.4")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(body.decode()):
        assert fam.type == "counter"
        values = out.setdefault(fam.name + "_total", {})
        for s in fam.samples:
            values[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_render_has_help_type_and_samples() -> None:
    m = Metrics()
    m.inc("mtlscore_decisions_total", {"outcome": "deny", "reason": "expired", "lb_error": "client_cert_validation_failed"})
    m.inc("mtlscore_decisions_total", {"outcome": "deny", "reason": "expired", "lb_error": "client_cert_validation_failed"})
    m.inc("mtlscore_decisions_total", {"outcome": "forward", "reason": "ok", "lb_error": ""})
    m.inc("mtlscore_connections_total", by=3)
    _, body = m.render()
    text = body.decode()
    assert "# HELP mtlscore_decisions_total " in text
    assert "# TYPE mtlscore_decisions_total counter" in text
    got = scrape(m)
    assert got["mtlscore_decisions_total"] == {
        (("lb_error", "client_cert_validation_failed"), ("outcome", "deny"), ("reason", "expired")): 2,
        (("lb_error", ""), ("outcome", "forward"), ("reason", "ok")): 1,
    }
    assert got["mtlscore_connections_total"] == {(): 3}
    assert m.get("mtlscore_decisions_total", outcome="deny", reason="expired") == 2
    assert m.get("mtlscore_handshake_failures_total", reason="untrusted") == 0


def test_every_declared_family_is_exposed_and_nothing_else() -> None:
    # Names and label names are the /metrics contract: each family once, with its HELP,
    # even before its first sample; no *_created series from the client library.
    _, body = Metrics().render()
    text = body.decode()
    for name, (help_text, _) in FAMILIES.items():
        assert f"# HELP {name} {help_text}\n" in text
        assert f"# TYPE {name} counter\n" in text
    assert "_created" not in text
    assert "mtlscore_connections_total 0.0" in text


def test_labels_are_the_declared_ones() -> None:
    m = Metrics()
    for name, (_, names) in FAMILIES.items():
        m.inc(name, {n: "x" for n in names})
    for name, (_, names) in FAMILIES.items():
        assert scrape(m)[name] == {tuple(sorted((n, "x") for n in names)): 1}


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.inc("mtlscore_handshake_failures_total", {"reason": 'a"b\\c\nd', "lb_error": ""})
    assert scrape(m)["mtlscore_handshake_failures_total"] == {(("lb_error", ""), ("reason", 'a"b\\c\nd')): 1}


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    m = Metrics()
    m.inc("mtlscore_reloads_total", {"result": "ok"})
    content_type, body = m.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert 'mtlscore_reloads_total{result="ok"} 1.0' in body.decode()
    assert body.decode().endswith("# EOF\n")


def test_wrong_labels_are_a_programming_error() -> None:
    with pytest.raises(KeyError):
        Metrics().inc("mtlscore_decisions_total", {"reason": "x"})
    with pytest.raises(KeyError):
        Metrics().inc("no_such_family")


def _python(code: str, env: dict[str, str] | None = None) -> str:
    import os

    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_multiprocess_mode_reports_totals_over_processes(tmp_path: Path) -> None:
    # Pre-forked workers each count in their own process; a scrape sees the sums.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = """
        from mtlscore.runtimes.metrics import Metrics
        m = Metrics()
        m.inc("mtlscore_decisions_total", {"outcome": "deny", "reason": "expired", "lb_error": "x"}, by=%d)
        m.inc("mtlscore_connections_total")
        print(m.get("mtlscore_decisions_total", outcome="deny", reason="expired"))
    """
    assert _python(count % 2, env).strip() == "2"  # get(): this process only
    assert _python(count % 3, env).strip() == "3"
    body = _python(
        """
        import sys
        from mtlscore.runtimes.metrics import Metrics
        sys.stdout.write(Metrics().render()[1].decode())
        """,
        env,
    )
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
    }
    assert got[("mtlscore_decisions_total", (("lb_error", "x"), ("outcome", "deny"), ("reason", "expired")))] == 5
    assert got[("mtlscore_connections_total", ())] == 2


BLOCK_PROMETHEUS = "import sys; sys.modules['prometheus_client'] = None\n"


def test_core_and_gateway_import_without_the_gateway_extra() -> None:
    out = _python(
        BLOCK_PROMETHEUS
        + textwrap.dedent(
            """
            import mtlscore, mtlscore.proxy.headers, mtlscore.runtimes.driver
            from mtlscore.runtimes.metrics import Metrics, exposition_available
            m = Metrics()
            m.inc("mtlscore_connections_total")
            print(exposition_available(), m.get("mtlscore_connections_total"))
            """
        )
    )
    assert out.split() == ["False", "1"]


def test_admin_listen_without_prometheus_client_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mtlscore import ConfigError
    from mtlscore.runtimes import metrics
    from mtlscore.runtimes.state import GatewayState
    from tests.test_startup import write

    monkeypatch.setattr(metrics, "prometheus_client", None)
    # Without an admin listener the gateway starts and counts.
    state = GatewayState.from_config_file(write(tmp_path))
    state.metrics.inc("mtlscore_connections_total")
    assert state.metrics.get("mtlscore_connections_total") == 1
    with pytest.raises(ConfigError) as info:
        GatewayState.from_config_file(write(tmp_path, extra='admin_listen = "127.0.0.1:0"'))
    assert info.value.key == "server.admin_listen"
    assert "pip install 'mtlscore[gateway]'" in str(info.value)
