"""Startup and reload checks of the gateway's configuration (issue 15, finding 8)."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mtlscore import ConfigError, pki
from mtlscore.config import load_config
from mtlscore.runtimes.startup import startup_warnings
from mtlscore.runtimes.state import GatewayState

NOW = datetime.now(UTC)


def write(d: Path, *, crl: bytes | None = None, mode: str = "soft", key_mode: int = 0o600,
          listen: str = "127.0.0.1:0", extra: str = "") -> Path:
    root = pki.root("CN=Startup Root", now=NOW)
    server = pki.root("CN=Startup Server CA", now=NOW).leaf("localhost", eku=[pki.SERVER_AUTH],
                                                            san_dns=["localhost"])
    (d / "root.pem").write_bytes(root.pem)
    (d / "issuing.crl").write_bytes(crl if crl is not None else root.crl())
    (d / "server.pem").write_bytes(server.pem)
    (d / "server.key").write_bytes(server.key_pem)
    os.chmod(d / "server.key", key_mode)
    config = d / "mtlscore.toml"
    config.write_text(f"""
[trust]
anchors = ["root.pem"]
[revocation]
mode = "{mode}"
crls = ["issuing.crl"]
[server]
listen = "{listen}"
certificate = "server.pem"
key = "server.key"
reload_poll_seconds = 0
{extra}
""")
    return config


def stale_crl() -> bytes:
    root = pki.root("CN=Startup Root", now=NOW)
    return root.crl(this_update=NOW - timedelta(days=10), next_update=NOW - timedelta(days=3))


def test_a_fresh_crl_and_a_private_key_give_no_warning(tmp_path: Path) -> None:
    assert startup_warnings(load_config(write(tmp_path)), at=NOW) == []


def test_a_stale_crl_is_a_warning_naming_the_file_and_its_next_update(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, crl=stale_crl()))
    [warning] = startup_warnings(config, at=NOW)
    assert warning["key"] == "revocation.crls[0]"
    assert warning["file"] == str(tmp_path / "issuing.crl")
    assert warning["next_update"].startswith((NOW - timedelta(days=3)).date().isoformat())
    assert "stale" in warning["detail"] and "revocation_unavailable" in warning["detail"]


def test_a_crl_not_yet_valid_is_a_warning(tmp_path: Path) -> None:
    root = pki.root("CN=Startup Root", now=NOW)
    crl = root.crl(this_update=NOW + timedelta(days=2), next_update=NOW + timedelta(days=9))
    [warning] = startup_warnings(load_config(write(tmp_path, crl=crl)), at=NOW)
    assert "not valid yet" in warning["detail"]


def test_a_stale_crl_under_hard_mode_is_a_config_error(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, crl=stale_crl(), mode="hard"))
    with pytest.raises(ConfigError) as info:
        startup_warnings(config, at=NOW)
    assert info.value.key == "revocation.crls[0]" and "issuing.crl" in str(info.value)
    # The gateway refuses to start on it.
    with pytest.raises(ConfigError):
        GatewayState.from_config_file(tmp_path / "mtlscore.toml")


def test_a_private_key_readable_by_others_is_a_warning(tmp_path: Path) -> None:
    [warning] = startup_warnings(load_config(write(tmp_path, key_mode=0o644)), at=NOW)
    assert (warning["key"], warning["mode"]) == ("server.key", "0644")
    assert warning["file"] == str(tmp_path / "server.key")


@pytest.mark.parametrize("extra", ['reject_at = "http"', 'mode = "allow_invalid_or_missing"'])
def test_the_key_warning_does_not_depend_on_where_invalid_certificates_are_refused(
    tmp_path: Path, extra: str
) -> None:
    [warning] = startup_warnings(load_config(write(tmp_path, key_mode=0o644, extra=extra)), at=NOW)
    assert (warning["key"], warning["mode"]) == ("server.key", "0644")


def test_the_gateway_logs_the_warnings_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, crl=stale_crl(), key_mode=0o640)
    with caplog.at_level(logging.WARNING, logger="mtlscore.gateway"):
        GatewayState.from_config_file(tmp_path / "mtlscore.toml")
    lines = [json.loads(r.getMessage()) for r in caplog.records]
    assert [(x["event"], x["key"]) for x in lines] == [
        ("config_warning", "revocation.crls[0]"),
        ("config_warning", "server.key"),
    ]


def test_a_reload_that_changes_listen_says_restart_required(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = write(tmp_path, listen="127.0.0.1:0")
    state = GatewayState.from_config_file(config)
    write(tmp_path, listen="127.0.0.1:9", extra='admin_listen = "127.0.0.1:0"\nmax_connections = 7')
    with caplog.at_level(logging.INFO, logger="mtlscore.gateway"):
        assert state.reload() is True
    [line] = [json.loads(r.getMessage()) for r in caplog.records if "mtls_reload" in r.getMessage()]
    assert line["result"] == "restart_required"
    assert line["keys"] == ["server.listen", "server.admin_listen"]
    assert state.metrics.get("mtlscore_reloads_total", result="restart_required") == 1
    assert state.metrics.get("mtlscore_reloads_total", result="ok") == 0
    # What a reload can apply is applied (max_connections is read at every accept).
    assert state.snapshot.gateway.server.max_connections == 7
    # Until the listen address is back, every reload says so.
    caplog.clear()
    write(tmp_path, listen="127.0.0.1:0")
    with caplog.at_level(logging.INFO, logger="mtlscore.gateway"):
        assert state.reload() is True
    [line] = [json.loads(r.getMessage()) for r in caplog.records if "mtls_reload" in r.getMessage()]
    assert line == {"event": "mtls_reload", "result": "ok"}


def test_a_reload_applies_the_tls_engine(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The engine is made per connection from the current snapshot: no restart needed, and "ok" says so."""
    pytest.importorskip("OpenSSL")
    from mtlscore.runtimes.tls import DeferredEngine, StdlibEngine

    state = GatewayState.from_config_file(write(tmp_path, extra='tls_engine = "ssl"'))
    assert isinstance(state.snapshot.new_engine(), StdlibEngine)
    write(tmp_path, extra='tls_engine = "deferred"')
    with caplog.at_level(logging.INFO, logger="mtlscore.gateway"):
        assert state.reload() is True
    assert isinstance(state.snapshot.new_engine(), DeferredEngine)
    assert [json.loads(r.getMessage())["result"] for r in caplog.records] == ["ok"]


def test_handshake_rejection_without_pyopenssl_falls_back_to_ssl_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tls_engine "auto" with reject_at "handshake" wants the deferred engine; without
    pyOpenSSL the gateway still starts on stdlib ssl, and says what that costs."""
    from mtlscore.runtimes import tls
    from mtlscore.runtimes.tls import StdlibEngine

    monkeypatch.setattr(tls, "deferred_available", lambda: False)
    config = load_config(write(tmp_path))
    [warning] = startup_warnings(config, at=NOW)
    assert warning["key"] == "server.reject_at" and "pyOpenSSL" in warning["detail"]
    assert isinstance(GatewayState.from_config_file(tmp_path / "mtlscore.toml").snapshot.new_engine(), StdlibEngine)
    # Rejecting after the handshake needs no pyOpenSSL: nothing to warn about.
    assert startup_warnings(load_config(write(tmp_path, extra='reject_at = "http"')), at=NOW) == []


def test_a_reload_that_changes_workers_says_restart_required(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The number of processes is the parent's, fixed at start (mtlscore.runtimes.workers).
    config = write(tmp_path)
    state = GatewayState.from_config_file(config)
    write(tmp_path, extra="workers = 3")
    with caplog.at_level(logging.INFO, logger="mtlscore.gateway"):
        assert state.reload() is True
    [line] = [json.loads(r.getMessage()) for r in caplog.records if "mtls_reload" in r.getMessage()]
    assert (line["result"], line["keys"]) == ("restart_required", ["server.workers"])
    assert state.running.workers == 1


def test_a_worker_counts_no_reload_and_polls_no_file(tmp_path: Path) -> None:
    # Under workers > 1 the parent polls the files and counts each reload once; the
    # workers' counters are summed into the same /metrics.
    state = GatewayState.from_config_file(write(tmp_path))
    assert state.polls_files()
    state.worker = 1
    assert not state.polls_files()
    assert state.reload() is True
    assert state.metrics.get("mtlscore_reloads_total") == 0
