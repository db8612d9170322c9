"""Vendor error names beside mtlscore's reasons: in each decision log line, in the metric
labels, and in the documented table (docs/gateway.md "Error names"), which must say what
the code does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtlscore.gateway.events import Decision, handshake_decision
from mtlscore.proxy.headers import gcp_headers, lb_error_name
from mtlscore.reasons import Reason
from mtlscore.runtimes.metrics import Metrics

DOCS = Path(__file__).resolve().parents[1] / "docs" / "gateway.md"


def documented_table() -> dict[str, str]:
    text = DOCS.read_text()
    section = text.split("## Error names", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([a-z_]+)` \| `([a-z_]+)` \|$", section, flags=re.M))


def test_the_documented_table_is_the_codes_for_every_reason() -> None:
    assert documented_table() == {r.value: lb_error_name(r.value) for r in Reason}


@pytest.mark.parametrize(
    ("reason", "name"),
    [
        ("invalid_eku", "client_cert_chain_invalid_eku"),
        ("rsa_key_too_small", "client_cert_invalid_rsa_key_size"),
        ("not_provided", "client_cert_not_provided"),
        ("expired", "client_cert_validation_failed"),
        ("identity_unmapped", "identity_unmapped"),
        # Not about the certificate: the load balancer's vocabulary has no name.
        ("credential_missing", ""),
        ("rate_limited", ""),
        ("upstream_timeout", ""),
        ("tls_protocol_error", ""),
        (None, ""),
    ],
)
def test_lb_error_name(reason: str | None, name: str) -> None:
    assert lb_error_name(reason) == name


@pytest.mark.parametrize("reason", list(Reason))
def test_the_log_name_is_the_header_name(reason: Reason) -> None:
    """What dashboards read in the log is what the upstream reads in X-Client-Cert-Error."""
    from mtlscore.decision.verdict import Verdict

    headers = dict(gcp_headers(Verdict.reject(reason, "x"), present=reason is not Reason.NOT_PROVIDED))
    assert headers["X-Client-Cert-Error"] == Decision("deny", 403, reason.value, "").lb_error


def test_decision_log_line_carries_both_names() -> None:
    line = Decision("deny", 403, "invalid_eku", "wrong EKU").as_log()
    assert (line["reason"], line["lb_error"]) == ("invalid_eku", "client_cert_chain_invalid_eku")
    assert Decision("forward", None, None, "").as_log()["lb_error"] is None
    assert Decision("deny", 401, "credential_missing", "").as_log()["lb_error"] is None
    line = handshake_decision(Reason.EXPIRED, "expired", ("127.0.0.1", 1)).as_log()
    assert line["lb_error"] == "client_cert_validation_failed"


def test_metric_labels_carry_both_and_get_sums_over_omitted_labels() -> None:
    m = Metrics()
    m.inc("mtlscore_decisions_total", {"outcome": "deny", "reason": "invalid_eku",
                                       "lb_error": "client_cert_chain_invalid_eku"})
    m.inc("mtlscore_decisions_total", {"outcome": "forward", "reason": "invalid_eku",
                                       "lb_error": "client_cert_chain_invalid_eku"})
    assert m.get("mtlscore_decisions_total", reason="invalid_eku") == 2
    assert m.get("mtlscore_decisions_total", outcome="deny", lb_error="client_cert_chain_invalid_eku") == 1
    assert m.get("mtlscore_decisions_total", outcome="deny", reason="expired") == 0
    with pytest.raises(KeyError):
        m.get("mtlscore_decisions_total", colour="red")
    from prometheus_client.parser import text_string_to_metric_families

    body = m.render()[1].decode()
    [family] = [f for f in text_string_to_metric_families(body) if f.name == "mtlscore_decisions"]
    assert {(s.labels["outcome"], s.labels["reason"], s.labels["lb_error"]): s.value for s in family.samples
            if s.name.endswith("_total")} == {
        ("deny", "invalid_eku", "client_cert_chain_invalid_eku"): 1,
        ("forward", "invalid_eku", "client_cert_chain_invalid_eku"): 1,
    }
