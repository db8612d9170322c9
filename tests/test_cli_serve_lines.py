"""`mtlscore serve` writes each of its own stderr lines in one write.

Workers share the parent's stderr; a line written in two pieces (text, then newline,
as ``print`` does on the write-through stderr) can take a worker's JSON log line
between them — seen in CI: a worker's ``mtls_start`` ended up inside the banner.
"""

from __future__ import annotations

import io
import pathlib
import sys

import pytest

from mtlscore.cli import serve
from mtlscore.gateway.settings import ServerConfig


class Writes(io.StringIO):
    """A stream that records each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, s: str) -> int:
        self.calls.append(s)
        return super().write(s)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_banner_is_one_write_ending_in_its_newline(monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    out = Writes()
    monkeypatch.setattr(sys, "stderr", out)
    server = ServerConfig(certificate=pathlib.Path("server.pem"), key=pathlib.Path("server.key"))
    serve._banner("trio", server, "127.0.0.1:8443", "127.0.0.1:9000", workers)
    assert len(out.calls) == 1, out.calls
    line = out.calls[0]
    assert line.startswith("mtlscore gateway (trio, ") and line.endswith("/metrics\n")
    assert line.count("\n") == 1
