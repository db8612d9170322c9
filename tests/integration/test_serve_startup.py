"""`mtlscore serve` startup problems: one line naming the key and the file or address, exit 2.

Issue 18, item 1. Before: a taken port was a traceback ending in ``OSError: [Errno 98]``
(exit 1) on both runtimes; a missing key said ``server.certificate: cannot read None``;
a garbage certificate blamed ``server.key`` with ``[SSL] PEM lib``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mtlscore import pki
from mtlscore.cli import main

NOW = datetime.now(UTC)


def write(d: Path, *, listen: str = "127.0.0.1:0", certificate: str = "server.pem", key: str = "server.key",
          extra: str = "", tls_engine: str = "ssl") -> Path:
    root = pki.root("CN=Startup Root", now=NOW)
    server = pki.root("CN=Startup Server CA", now=NOW).leaf("localhost", eku=[pki.SERVER_AUTH],
                                                            san_dns=["localhost"])
    other = pki.root("CN=Other", now=NOW).leaf("other", eku=[pki.SERVER_AUTH])
    (d / "root.pem").write_bytes(root.pem)
    (d / "server.pem").write_bytes(server.pem)
    (d / "server.key").write_bytes(server.key_pem)
    (d / "other.key").write_bytes(other.key_pem)
    os.chmod(d / "server.key", 0o600)
    config = d / "mtlscore.toml"
    config.write_text(f"""
[trust]
anchors = ["root.pem"]
[server]
listen = "{listen}"
certificate = "{certificate}"
key = "{key}"
tls_engine = "{tls_engine}"
reload_poll_seconds = 0
{extra}
""")
    return config


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other socket is listening on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def serve(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A startup error ends the process at once; a gateway that started would be killed
    # by the timeout and fail the test.
    return subprocess.run(
        [sys.executable, "-m", "mtlscore", "serve", "--config", str(config), *args],
        capture_output=True, text=True, timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_a_listen_port_in_use_is_one_line_naming_server_listen(tmp_path: Path, busy_port: int, runtime: str) -> None:
    config = write(tmp_path, listen=f"127.0.0.1:{busy_port}")
    line = one_line(serve(config, "--runtime", runtime))
    assert f"{config}: server.listen: 127.0.0.1:{busy_port} is already in use" in line


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_an_admin_port_in_use_names_server_admin_listen(tmp_path: Path, busy_port: int, runtime: str) -> None:
    config = write(tmp_path, extra=f'admin_listen = "127.0.0.1:{busy_port}"')
    line = one_line(serve(config, "--runtime", runtime))
    assert f"server.admin_listen: 127.0.0.1:{busy_port} is already in use" in line


def test_an_address_of_another_machine_is_named(tmp_path: Path) -> None:
    # 203.0.113.0/24 is TEST-NET-3 (RFC 5737): never an address of this machine. bind(2)
    # fails locally with EADDRNOTAVAIL; nothing is sent.
    config = write(tmp_path, listen="203.0.113.9:8443")
    line = one_line(serve(config))
    assert "server.listen: 203.0.113.9:8443 is not an address of this machine" in line


def test_a_missing_key_file_is_one_line_by_subprocess(tmp_path: Path) -> None:
    config = write(tmp_path, key="nokey.key")
    line = one_line(serve(config))
    assert f"server.key: {tmp_path / 'nokey.key'}: no such file" in line


def _cli_error(config: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["serve", "--config", str(config)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"mtlscore serve: configuration error in {config}: ")
    return err


@pytest.mark.parametrize("engine", ["ssl", "deferred"])
def test_certificate_and_key_problems_name_the_right_key_file_and_defect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    d = tmp_path
    cases: list[tuple[dict[str, str], str]] = []
    cases.append(({"certificate": "nocert.pem"}, f"server.certificate: {d / 'nocert.pem'}: no such file"))
    cases.append(({"key": "nokey.key"}, f"server.key: {d / 'nokey.key'}: no such file"))
    (d / "garbage.pem").write_bytes(b"garbage\n")
    cases.append(({"certificate": "garbage.pem"}, f"server.certificate: {d / 'garbage.pem'}: no PEM CERTIFICATE "
                                                  "(not a PEM file)"))
    # The key given as the certificate, and the certificate as the key: classic swaps.
    cases.append(({"certificate": "server.key"}, "server.certificate: " + str(d / "server.key")
                  + ": no PEM CERTIFICATE (it holds a PRIVATE KEY block)"))
    cases.append(({"key": "server.pem"}, f"server.key: {d / 'server.pem'}: no PEM private key "
                                         "(it holds a CERTIFICATE block)"))
    cases.append(({"key": "other.key"}, f"server.key: {d / 'other.key'}: this private key does not match "
                                        f"the certificate in {d / 'server.pem'}"))
    cases.append(({"key": "encrypted.key"}, f"server.key: {d / 'encrypted.key'}: the private key is encrypted"))
    cases.append(({"certificate": "."}, f"server.certificate: {d}: is a directory"))
    for kwargs, expected in cases:
        config = write(d, tls_engine=engine, **kwargs)
        if kwargs.get("key") == "encrypted.key":
            key = serialization.load_pem_private_key((d / "server.key").read_bytes(), None)
            (d / "encrypted.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ))
        assert expected in _cli_error(config, capsys), kwargs


def test_a_good_pair_still_starts(tmp_path: Path) -> None:
    """The checks refuse only what cannot serve: the same files, correct, start the gateway."""
    from mtlscore.runtimes.state import GatewayState

    state = GatewayState.from_config_file(write(tmp_path, tls_engine="deferred"))
    assert state.snapshot.new_engine() is not None
    state = GatewayState.from_config_file(write(tmp_path, tls_engine="ssl"))
    assert state.snapshot.new_engine() is not None
