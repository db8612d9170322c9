"""`mtlscore --version` / `-V` (issue 18, item 2): the versions a bug report needs."""

from __future__ import annotations

import ssl
import subprocess
import sys

import cryptography
import pytest
from cryptography.hazmat.backends.openssl.backend import backend

import mtlscore


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_mtlscore_cryptography_and_openssl(flag: str) -> None:
    result = subprocess.run([sys.executable, "-m", "mtlscore", flag], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1  # one line, not re-wrapped by argparse
    line = lines[0]
    assert line.startswith(f"mtlscore {mtlscore.__version__} ")
    assert f"cryptography {cryptography.__version__}" in line
    assert backend.openssl_version_text() in line  # the OpenSSL inside cryptography
    assert ssl.OPENSSL_VERSION in line  # the OpenSSL the gateway's stdlib ssl uses


def test_the_version_matches_the_installed_distribution() -> None:
    from importlib.metadata import version

    assert mtlscore.__version__ == version("mtlscore")
