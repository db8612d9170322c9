"""The trust-change preview (mtlscore.gateway.preview) and its commands, without sockets."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mtlscore import pki
from mtlscore.cli.main import main
from mtlscore.config import parse_config
from mtlscore.gateway.metrics import expiry_gauges
from mtlscore.gateway.preview import Recorded, account_of, replay
from mtlscore.gateway.radar import Radar, report
from mtlscore.gateway.settings import server_from_config
from mtlscore.reasons import ConfigError
from mtlscore.runtimes.metrics import Metrics
from mtlscore.x509.cert import parse_certificate

NOW = pki.NOW
A = pki.root("CN=Preview CA A", now=NOW - timedelta(days=30))
B = pki.root("CN=Preview CA B", now=NOW - timedelta(days=30))
# acme rotates from a certificate under B to one under A; zeta has only B.
ACME_OLD = B.leaf("CN=acme", not_after=NOW + timedelta(days=40))
ACME_NEW = A.leaf("CN=acme", not_after=NOW + timedelta(days=300))
ZETA = B.leaf("CN=zeta", not_after=NOW + timedelta(days=300))


def recorded(leaf: pki.Issued, account: str) -> Recorded:
    return Recorded((leaf.der,), parse_certificate(leaf.der).subject_text, account)


@pytest.fixture
def chains() -> list[Recorded]:
    return [recorded(ACME_OLD, "acme"), recorded(ACME_NEW, "acme"), recorded(ZETA, "zeta")]


def single_anchor(tmp: Path, anchor: str) -> object:
    (tmp / "a.pem").write_bytes(A.pem)
    (tmp / "b.pem").write_bytes(B.pem)
    doc = {
        "trust": {"anchors": [anchor]},
        "accounts": [{"id": "acme", "match": {"cn": "acme"}}, {"id": "zeta", "match": {"cn": "zeta"}}],
    }
    return parse_config(doc, base_dir=tmp).validator()


def test_dropping_a_ca_locks_out_only_the_account_without_another_chain(tmp_path: Path, chains: list[Recorded]) -> None:
    preview = replay(chains, single_anchor(tmp_path, "a.pem"), times=(NOW,))  # type: ignore[arg-type]
    # acme's old certificate is refused, but its rotated one works: only zeta is locked out.
    assert [(c.who, c.new.text()) for c in preview.refusals()] == [
        ("acme", "refused: untrusted"), ("zeta", "refused: untrusted")
    ]
    assert preview.locked_out() == {NOW: ("zeta",)}
    assert preview.anyone_locked_out


def test_a_future_time_past_not_after_is_expired(tmp_path: Path, chains: list[Recorded]) -> None:
    later = NOW + timedelta(days=400)
    preview = replay(chains[2:], single_anchor(tmp_path, "b.pem"), times=(NOW, later))  # type: ignore[arg-type]
    assert preview.locked_out() == {later: ("zeta",)}
    (change,) = preview.refusals()
    assert change.at == later and change.new.reason == "expired" and change.old.text() == "accepted as zeta"


def test_a_chain_mapped_to_another_account_is_a_loss_and_old_comes_from_the_current_config(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.pem").write_bytes(A.pem)
    renamed = parse_config(
        {"trust": {"anchors": ["a.pem"]}, "accounts": [{"id": "acme-2", "match": {"cn": "acme"}}]},
        base_dir=tmp_path,
    ).validator()
    current = single_anchor(tmp_path, "a.pem")
    preview = replay([Recorded((ACME_NEW.der,), "CN=acme")], renamed, times=(NOW,), old=current)  # type: ignore[arg-type]
    (change,) = preview.refusals()
    assert change.old.text() == "accepted as acme" and change.new.text() == "accepted as acme-2"
    assert preview.locked_out() == {NOW: ("acme",)}
    # Refused today already: not a loss of the new configuration's making.
    gone = replay([Recorded((ZETA.der,), "CN=zeta")], current, times=(NOW,), old=current)  # type: ignore[arg-type]
    assert gone.locked_out() == {} and gone.refusals()[0].old.text() == "refused: untrusted"


def test_garbage_in_a_snapshot_chain_is_refused_malformed_not_a_traceback(tmp_path: Path) -> None:
    preview = replay([Recorded((b"\x30\x03junk",), "?", "acme")], single_anchor(tmp_path, "a.pem"), times=(NOW,))  # type: ignore[arg-type]
    assert preview.refusals()[0].new.reason == "malformed"


def test_expiry_gauges_render_every_series(tmp_path: Path) -> None:
    radar = Radar()
    v = single_anchor(tmp_path, "b.pem")
    for leaf in (ACME_OLD, ZETA):
        verdict = v.validate([leaf.der], at=NOW)  # type: ignore[attr-defined]
        radar.observe((parse_certificate(leaf.der),), verdict, account=account_of(verdict.principal), at=NOW)
    text = Metrics().render(gauges=expiry_gauges(report(radar, at=NOW), recorded=len(radar)))[1].decode()
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert got[("mtlscore_client_cert_expiry_seconds", (("account", "acme"),))] == 40 * 86400
    assert got[("mtlscore_client_cert_expiry_seconds", (("account", "zeta"),))] == 300 * 86400
    assert got[("mtlscore_certificates_expiring", (("kind", "client"), ("within", "7d")))] == 0
    assert got[("mtlscore_certificates_expiring", (("kind", "crl"), ("within", "30d")))] == 0
    assert "# TYPE mtlscore_client_cert_expiry_seconds gauge" in text
    assert got[("mtlscore_radar_certificates", ())] == 2


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"reload_guard": "yes"}, "server.reload_guard"),
        ({"radar_max_certificates": 0}, "server.radar_max_certificates"),
        ({"radar_max_certificates": 1.5}, "server.radar_max_certificates"),
        ({"expiry_warning_days": -1}, "server.expiry_warning_days"),
        ({"radar_active_seconds": "1d"}, "server.radar_active_seconds"),
        ({"radar_file": ""}, "server.radar_file"),
        ({"radar_file": 3}, "server.radar_file"),
    ],
)
def test_radar_settings_bad_values_name_the_key(table: dict[str, object], key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        server_from_config({"certificate": "s.pem", "key": "s.key", **table}, base_dir=tmp_path)
    assert info.value.key == key


def test_radar_settings_defaults(tmp_path: Path) -> None:
    s = server_from_config({"certificate": "s.pem", "key": "s.key"}, base_dir=tmp_path)
    assert (s.reload_guard, s.radar_max_certificates, s.expiry_warning_days, s.radar_active, s.radar_file) == (
        False, 10_000, 30.0, 7 * 86400.0, None
    )
    kept = server_from_config({"certificate": "s.pem", "key": "s.key", "radar_file": "r.json"}, base_dir=tmp_path)
    assert kept.radar_file == (tmp_path / "r.json").resolve()


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_certs_reads_a_snapshot_and_the_config(tmp_path: Path) -> None:
    radar = Radar()
    v = single_anchor(tmp_path, "b.pem")
    for leaf in (ZETA, ACME_OLD):
        verdict = v.validate([leaf.der], at=NOW)  # type: ignore[attr-defined]
        radar.observe((parse_certificate(leaf.der),), verdict, account=account_of(verdict.principal), at=NOW)
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(report(radar, at=NOW).to_json()))
    config = tmp_path / "c.toml"
    config.write_text('[trust]\nanchors = ["b.pem"]\n')
    at = NOW.isoformat()
    code, out, _ = cli("certs", str(snap), "--config", str(config), "--at", at)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("NOT AFTER")
    # NOT AFTER is two words: kind and account are the 5th and 6th.
    assert [tuple(line.split()[4:6]) for line in lines[1:]] == [("client", "acme"), ("client", "zeta"), ("anchor", "-")]
    code, out, _ = cli("certs", str(snap), "--within", "41d", "--json", "--at", at)
    assert [c["account"] for c in json.loads(out)["certificates"]] == ["acme"]
    code, out, _ = cli("certs", str(snap), "--within", "1d", "--at", at)
    assert out.strip() == "nothing expires within 1d"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("certs",), "give SOURCE"),
        (("certs", "{snap}", "--within", "soon"), "--within 'soon'"),
        (("certs", "{bad}"), "not an mtlscore snapshot: certificates[0].kind"),
        (("certs", "{missing}"), "cannot read"),
        (("certs", "--config", "{badconfig}"), "trust.anchors[0]"),
        (("certs", "https://127.0.0.1:1"), "plain http://"),
        (("preview", "--config", "{config}", "--chains", "{missing}"), "not a directory"),
        (("preview", "--config", "{config}", "--chains", "{junkdir}"), "junk.pem: malformed"),
        (("preview", "--config", "{config}", "--chains", "{keydir}"), "alpha.pem is a private key"),
        (("preview", "--config", "{missing}", "--against", "{snap}"), "cannot read"),
        (("preview", "--config", "{config}", "--against", "{snap}", "--at", "someday"), "--at 'someday'"),
        (("preview", "--config", "{config}", "--against", "{chainless}"), "no chains to replay"),
    ],
)
def test_command_errors_are_one_line_and_exit_2(argv: tuple[str, ...], message: str, tmp_path: Path) -> None:
    (tmp_path / "b.pem").write_bytes(B.pem)
    names = {
        "snap": tmp_path / "snap.json",
        "bad": tmp_path / "bad.json",
        "missing": tmp_path / "missing",
        "config": tmp_path / "c.toml",
        "junkdir": tmp_path / "junk",
        "chainless": tmp_path / "chainless.json",
        "keydir": tmp_path / "keys",
        "badconfig": tmp_path / "bad.toml",
    }
    names["badconfig"].write_text('[trust]\nanchors = ["nowhere.pem"]\n')
    names["keydir"].mkdir()
    (names["keydir"] / "alpha.pem").write_bytes(ZETA.key_pem)
    radar = Radar()
    verdict = single_anchor(tmp_path, "b.pem").validate([ZETA.der], at=NOW)  # type: ignore[attr-defined]
    radar.observe((parse_certificate(ZETA.der),), verdict, account="zeta", at=NOW)
    names["chainless"].write_text(json.dumps(report(radar, at=NOW).to_json(chains=False)))
    names["snap"].write_text(json.dumps(report(None, at=NOW).to_json()))
    names["bad"].write_text(json.dumps({"version": 1, "taken": NOW.isoformat(), "certificates": [{"kind": 1}]}))
    names["config"].write_text('[trust]\nanchors = ["b.pem"]\n')
    names["junkdir"].mkdir()
    (names["junkdir"] / "junk.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    code, _, err = cli(*(a.format(**names) for a in argv))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_subject_with_terminal_escapes_is_printed_escaped(tmp_path: Path) -> None:
    """A client chooses its subject: an accepted certificate must not paint or forge report lines."""
    evil = B.leaf("CN=zeta\x1b[2J\nnow  acme  forged", not_after=NOW + timedelta(days=3))
    radar = Radar()
    cert = parse_certificate(evil.der)
    (tmp_path / "b.pem").write_bytes(B.pem)
    (tmp_path / "a.pem").write_bytes(A.pem)
    verdict = parse_config({"trust": {"anchors": ["b.pem"]}}, base_dir=tmp_path).validator().validate(
        [evil.der], at=NOW
    )
    assert verdict.ok, verdict.detail
    radar.observe((cert,), verdict, account="zeta", at=NOW)
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(report(radar, at=NOW).to_json()))
    code, out, _ = cli("certs", str(snap), "--at", NOW.isoformat())
    assert code == 0 and "\x1b" not in out and len(out.splitlines()) == 2
    assert "CN=zeta\\x1b[2J\\nnow  acme  forged" in out
    dropped = tmp_path / "new.toml"
    dropped.write_text('[trust]\nanchors = ["a.pem"]\n')
    code, out, _ = cli("preview", "--config", str(dropped), "--against", str(snap))
    assert code == 1 and "\x1b" not in out and "CN=zeta\\x1b[2J\\nnow" in out
