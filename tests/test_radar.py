"""The expiry radar's record (mtlscore.gateway.radar): what it keeps, in what order, within what bound."""

from __future__ import annotations

import gc
import hashlib
import json
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from mtlscore import pki
from mtlscore.decision.validator import Validator
from mtlscore.decision.verdict import Verdict
from mtlscore.gateway.radar import Radar, Report, SnapshotError, report, trust_rows
from mtlscore.reasons import Reason
from mtlscore.revocation.crl import parse_crl
from mtlscore.verify.trust import TrustStore
from mtlscore.x509.cert import parse_certificate

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> dict[str, object]:
    root = pki.root("CN=Radar Root", now=NOW - timedelta(days=10))
    issuing = root.intermediate("CN=Radar Issuing")
    leaves = {
        "soon": issuing.leaf("CN=soon", not_after=NOW + timedelta(days=5)),
        "later": issuing.leaf("CN=later", not_after=NOW + timedelta(days=20)),
        "far": issuing.leaf("CN=far", not_after=NOW + timedelta(days=200)),
    }
    trust = TrustStore()
    trust.add_anchor(root.pem, label="radar root")
    return {"root": root, "issuing": issuing, "leaves": leaves, "validator": Validator(trust), "trust": trust}


def seen(world: dict[str, object], name: str) -> tuple[tuple[object, ...], Verdict]:
    leaf = world["leaves"][name]  # type: ignore[index]
    chain = tuple(parse_certificate(der) for der in leaf.chain_der)
    verdict = world["validator"].validate(list(leaf.chain_der), at=NOW)  # type: ignore[attr-defined]
    assert verdict.ok, verdict.detail
    return chain, verdict


def test_report_orders_by_expiry_with_accounts_counts_and_chains(world: dict[str, object]) -> None:
    radar = Radar()
    for name, account in (("far", "gamma"), ("soon", "alpha"), ("later", "beta"), ("soon", "alpha")):
        chain, verdict = seen(world, name)
        radar.observe(chain, verdict, account=account, at=NOW)  # type: ignore[arg-type]
    rep = report(radar, at=NOW)
    clients = [r for r in rep.rows if r.kind == "client"]
    assert [r.account for r in clients] == ["alpha", "beta", "gamma"]
    assert [r.count for r in clients] == [2, 1, 1]
    assert clients[0].subject == "CN=soon" and clients[0].status(NOW, rep.horizon) == "expiring"
    assert clients[2].status(NOW, rep.horizon) == "ok"
    # The intermediate is recorded once, counted per client, and the anchor is not (trust rows report it).
    (inter,) = [r for r in rep.rows if r.kind == "intermediate"]
    assert inter.subject == "CN=Radar Issuing" and inter.count == 4
    # The presented chain is kept for the preview: leaf then the intermediate it came with.
    leaf = world["leaves"]["soon"]  # type: ignore[index]
    assert clients[0].chain == tuple(leaf.chain_der)
    assert clients[0].serial == format(leaf.serial, "x")
    assert clients[0].x5t_s256 == parse_certificate(leaf.der).x5t_s256
    assert [r.subject for r in rep.within(timedelta(days=7))] == ["CN=soon"]
    assert set(rep.soonest_by_account()) == {"alpha", "beta", "gamma"}


def test_refused_verdicts_and_empty_chains_are_not_recorded(world: dict[str, object]) -> None:
    radar = Radar()
    chain, _ = seen(world, "soon")
    radar.observe(chain, Verdict.reject(Reason.EXPIRED, "x"), account="a", at=NOW)  # type: ignore[arg-type]
    _, verdict = seen(world, "soon")
    radar.observe((), verdict, account="a", at=NOW)
    assert len(radar) == 0


def test_one_warning_per_certificate_entering_the_horizon(world: dict[str, object]) -> None:
    radar = Radar(horizon=timedelta(days=10))
    chain, verdict = seen(world, "later")  # 20 days left: outside the horizon today
    assert radar.observe(chain, verdict, account="beta", at=NOW) == ()  # type: ignore[arg-type]
    assert radar.sweep(NOW + timedelta(days=5)) == ()
    # Ten days later it is within: one warning, whether seen again or swept.
    warned = radar.sweep(NOW + timedelta(days=11))
    assert [w.row.subject for w in warned] == ["CN=later"]
    line = warned[0].as_log()
    assert line["event"] == "cert_expiry_warning" and line["account"] == "beta" and line["days_left"] == 9.0
    assert radar.observe(chain, verdict, account="beta", at=NOW + timedelta(days=12)) == ()  # type: ignore[arg-type]
    assert radar.sweep(NOW + timedelta(days=13)) == ()
    # Seen for the first time inside the horizon: warned on that observation.
    chain, verdict = seen(world, "soon")
    (w,) = radar.observe(chain, verdict, account="alpha", at=NOW)  # type: ignore[arg-type]
    assert w.row.account == "alpha" and w.row.kind == "client"


def test_eviction_is_least_recently_seen_and_keeps_a_clients_intermediate(world: dict[str, object]) -> None:
    radar = Radar(max_certificates=3)
    for i, name in enumerate(("soon", "later", "far")):
        chain, verdict = seen(world, name)
        radar.observe(chain, verdict, account=name, at=NOW + timedelta(minutes=i))  # type: ignore[arg-type]
    assert len(radar) == 3
    subjects = {r.subject for r in radar.rows()}
    # "soon" went first; the intermediate, touched after each client, stays.
    assert subjects == {"CN=Radar Issuing", "CN=later", "CN=far"}


def test_snapshot_round_trip_and_restore(world: dict[str, object]) -> None:
    radar = Radar()
    for name in ("soon", "far"):
        chain, verdict = seen(world, name)
        radar.observe(chain, verdict, account=name, at=NOW)  # type: ignore[arg-type]
    crl = parse_crl(world["issuing"].crl(next_update=NOW + timedelta(days=3)))  # type: ignore[attr-defined]
    rep = report(radar, at=NOW, trust=world["trust"], crls=[crl])  # type: ignore[arg-type]
    doc = json.loads(json.dumps(rep.to_json()))
    again = Report.from_json(doc)
    assert again.rows == rep.rows and again.taken == rep.taken
    assert [r.kind for r in again.rows][:2] == ["crl", "client"]  # the CRL's nextUpdate comes first
    restored = Radar()
    restored.restore(again.rows, parse=parse_certificate)
    clients = [r for r in restored.rows() if r.kind == "client"]
    assert {(r.account, r.count, r.chain) for r in clients} == {
        (r.account, r.count, r.chain) for r in rep.rows if r.kind == "client"
    }
    without = rep.to_json(chains=False)
    assert all("chain" not in c for c in without["certificates"])


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ([], "JSON object"),
        ({"version": 2}, "version"),
        ({"version": 1, "taken": "2026-12-04T00:00:00Z", "certificates": {}}, "certificates"),
        ({"version": 1, "taken": "yesterday", "certificates": []}, "taken"),
        ({"version": 1, "taken": "2026-12-04T00:00:00Z", "certificates": [{"kind": "x"}]}, "certificates[0].kind"),
        (
            {"version": 1, "taken": "2026-12-04T00:00:00Z",
             "certificates": [{"kind": "client", "not_after": "2026-12-04T00:00:00Z", "chain": ["%%"]}]},
            "certificates[0].chain[0]",
        ),
        (
            {"version": 1, "taken": "2026-12-04T00:00:00Z",
             "certificates": [{"kind": "client", "not_after": "2026-12-04T00:00:00Z", "chain": {"a": 1}}]},
            "certificates[0].chain: must be a list",
        ),
        (
            {"version": 1, "taken": "2026-12-04T00:00:00Z",
             "certificates": [{"kind": "client", "not_after": "2026-12-04T00:00:00"}]},
            "no time zone",
        ),
    ],
)
def test_a_bad_snapshot_says_where(doc: object, where: str) -> None:
    with pytest.raises(SnapshotError, match=None) as info:
        Report.from_json(doc)
    assert where in str(info.value)


def test_trust_rows_anchor_window_intermediates_allowlisted_and_crls(world: dict[str, object]) -> None:
    root, issuing = world["root"], world["issuing"]
    trust = TrustStore()
    trust.add_anchor(root.pem, label="rotating root", not_after=NOW + timedelta(days=2))  # type: ignore[attr-defined]
    trust.add_intermediates(issuing.pem)  # type: ignore[attr-defined]
    trust.add_allowlisted(world["leaves"]["far"].pem)  # type: ignore[index]
    crl = parse_crl(issuing.crl(next_update=NOW + timedelta(days=1)))  # type: ignore[attr-defined]
    rows = report(None, at=NOW, trust=trust, crls=[crl]).rows
    assert [r.kind for r in rows][:2] == ["crl", "anchor"]
    assert sorted(r.kind for r in rows) == ["allowlisted", "anchor", "crl", "trust_intermediate"]
    anchor = next(r for r in rows if r.kind == "anchor")
    assert anchor.subject == "CN=Radar Root [rotating root]" and anchor.not_after == NOW + timedelta(days=2)
    assert {r.kind for r in trust_rows(trust)} == {"anchor", "trust_intermediate", "allowlisted"}


def _distinct(template: bytes, i: int) -> bytes:
    # The template's 20-byte serial (tag 02, length 14) replaced: a distinct certificate per i.
    at = template.index(bytes([0x02, 0x14])) + 2
    serial = (0x10 << 152 | i).to_bytes(20, "big")
    return template[:at] + serial + template[at + 20:]


@dataclass(frozen=True, slots=True)
class Facts:
    """A certificate as the radar reads it (mtlscore.gateway.radar.Seen), parsed by ``cryptography`` alone."""

    der: bytes
    sha256: bytes
    subject_text: str
    issuer_text: str
    serial: int
    not_after: datetime

    @classmethod
    def of(cls, der: bytes, subject: str, issuer: str) -> Facts:
        # Names as the template's (only the serial differs), each its own string as a parse makes it.
        cert = x509.load_der_x509_certificate(der)
        return cls(der, hashlib.sha256(der).digest(), "".join((subject, " "))[:-1],
                   "".join((issuer, " "))[:-1], cert.serial_number, cert.not_valid_after_utc)


def test_memory_is_bounded_with_100000_distinct_certificates(world: dict[str, object]) -> None:
    """100,000 distinct client certificates through a radar bounded to 1,000 entries.

    Bound by count (never more than 1,000 entries) and by size (tracemalloc):
    the record's memory after 100,000 is what it was after the first 2,000 (within
    10 %), and under 4 KiB an entry. The certificates' signatures are not valid
    (serials patched in place): the radar records accepted chains, it does not verify;
    they are parsed by ``cryptography`` alone (mtlscore's full parse would make this
    test slow, and the radar reads only what :class:`Facts` has).
    """
    leaf = world["leaves"]["far"]  # type: ignore[index]
    chain, verdict = seen(world, "far")
    template = leaf.der
    subject, issuer = chain[0].subject_text, chain[0].issuer_text  # type: ignore[attr-defined]
    radar = Radar(max_certificates=1000)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        after_2000 = 0
        for i in range(100_000):
            cert = Facts.of(_distinct(template, i), subject, issuer)
            radar.observe((cert, *chain[1:]), verdict, account=f"acct-{i % 50}", at=NOW)  # type: ignore[arg-type]
            assert len(radar) <= 1000
            if i == 1999:
                gc.collect()
                after_2000 = tracemalloc.get_traced_memory()[0] - base
        del cert
        gc.collect()
        after_all = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(radar) == 1000
    assert sum(1 for r in radar.rows() if r.kind == "client") == 999  # plus the intermediate
    assert after_all <= after_2000 * 1.1, (after_2000, after_all)
    assert after_all < 1000 * 4096, after_all


def test_restore_keeps_the_least_recently_seen_order(world: dict[str, object]) -> None:
    radar = Radar()
    # Seen in the opposite order of their expiry: a report lists them by expiry, the record by use.
    for name, day in (("far", 1), ("later", 2), ("soon", 3)):
        chain, verdict = seen(world, name)
        radar.observe(chain, verdict, account=name, at=NOW + timedelta(days=day))  # type: ignore[arg-type]
    restored = Radar(max_certificates=3)
    restored.restore(Report.from_json(report(radar, at=NOW).to_json()).rows, parse=parse_certificate)
    assert [r.subject for r in restored.rows()] == ["CN=far", "CN=later", "CN=soon"]
    chain, verdict = seen(world, "soon")
    restored.observe(chain, verdict, account="soon", at=NOW + timedelta(days=4))  # type: ignore[arg-type]
    # The intermediate came back and took the least recently seen client's place ("far").
    assert [r.subject for r in restored.rows()] == ["CN=later", "CN=soon", "CN=Radar Issuing"]


def test_every_outcome_that_lets_a_client_in_feeds_the_radar() -> None:
    """The hook for gateway modes: the session hands the radar the chain of every decision whose
    outcome lets the request through. A new outcome (an auth-service "allow") must be classed."""
    from mtlscore.gateway.events import Outcome
    from mtlscore.gateway.session import _LETS_IN

    assert frozenset(Outcome) - {Outcome.DENY, Outcome.ERROR} == _LETS_IN
