"""The gateway's JSON lines under a length limit (``JsonLineFormatter(max_bytes=)``): what
``mtlscore serve`` with workers uses so no line is longer than one atomic pipe write."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from mtlscore.runtimes.logs import JsonLineFormatter, shared_line_bytes


def _record(message: dict[str, object], exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise RuntimeError("the end of the traceback")
        except RuntimeError:
            info = sys.exc_info()
    return logging.LogRecord("mtlscore.gateway", logging.INFO, __file__, 1, json.dumps(message), (), info)


def _decision(**over: object) -> dict[str, object]:
    return {"event": "mtls_decision", "outcome": "deny", "status": 403, "reason": "untrusted_issuer",
            "peer": "127.0.0.1:5000", "target": "/", "detail": "client certificate 'CN=x' ...", **over}


def test_a_short_line_is_the_same_with_or_without_a_limit() -> None:
    record = _record(_decision())
    limited = JsonLineFormatter({"worker": 1}, max_bytes=512).format(record)
    assert limited == JsonLineFormatter({"worker": 1}).format(record)
    assert "truncated" not in json.loads(limited)


@pytest.mark.parametrize("limit", [512, 4096])
def test_a_long_string_is_cut_from_its_end_and_named(limit: int) -> None:
    detail = "client certificate 'OU=" + "x" * 20_000 + "'"
    line = JsonLineFormatter({"worker": 2, "pid": 7}, max_bytes=limit).format(_record(_decision(detail=detail)))
    assert len(line.encode()) <= limit - 1  # the newline is the last byte
    doc = json.loads(line)
    assert doc["truncated"] == ["detail"]
    assert doc["detail"].startswith("client certificate 'OU=xxx") and doc["detail"].endswith("...")
    assert {k: doc[k] for k in ("worker", "pid", "event", "reason", "target")} == {
        "worker": 2, "pid": 7, "event": "mtls_decision", "reason": "untrusted_issuer", "target": "/"}
    # The line is as long as the limit allows: only what had to go went.
    assert len(line) > limit - 40


def test_the_longest_string_goes_first_and_only_as_much_as_needed() -> None:
    line = JsonLineFormatter(max_bytes=4096).format(_record(_decision(target="/" + "t" * 3000, detail="d" * 9000)))
    doc = json.loads(line)
    assert len(line) <= 4095
    assert doc["truncated"] == ["detail"] and doc["detail"].endswith("...")
    assert doc["target"] == "/" + "t" * 3000
    # Both too long for the limit alone: both cut, in the order they were.
    line = JsonLineFormatter(max_bytes=1024).format(_record(_decision(target="/" + "t" * 3000, detail="d" * 9000)))
    doc = json.loads(line)
    assert len(line) <= 1023 and doc["truncated"] == ["detail", "target"]
    assert doc["target"].startswith("/ttt") and doc["target"].endswith("...")


def test_characters_that_escape_to_six_bytes_still_fit() -> None:
    # "\x01" is one character but six bytes in JSON ("\u0001"): cutting by characters alone undershoots.
    line = JsonLineFormatter(max_bytes=1024).format(_record(_decision(detail="\x01é" * 5000)))
    assert len(line.encode()) <= 1023 and line.isascii()
    doc = json.loads(line)
    assert doc["truncated"] == ["detail"] and doc["detail"].startswith("\x01é\x01é")


def test_a_traceback_keeps_its_end() -> None:
    class Deep(JsonLineFormatter):
        def formatException(self, ei: object) -> str:
            return "Traceback (most recent call last):\n" + "  frame\n" * 2000 + "RuntimeError: the end"

    record = _record({"event": "connection_error", "peer": "127.0.0.1:1", "error": "boom"}, exc=True)
    doc = json.loads(Deep(max_bytes=1024).format(record))
    assert doc["truncated"] == ["traceback"]
    assert doc["traceback"].startswith("...") and doc["traceback"].endswith("RuntimeError: the end")


def test_a_line_that_cannot_be_cut_enough_keeps_who_and_what() -> None:
    # Many fields, none of them a long string: nothing to cut; the line says so and how long it was.
    message = {"event": "mtls_start", **{f"k{i}": list(range(20)) for i in range(100)}}
    line = JsonLineFormatter({"worker": 3, "pid": 9}, max_bytes=512).format(_record(message))
    doc = json.loads(line)
    assert len(line) <= 511
    assert doc == {"ts": doc["ts"], "level": "info", "worker": 3, "pid": 9, "event": "mtls_start",
                   "truncated": True, "line_bytes": doc["line_bytes"]}
    assert doc["line_bytes"] > 5000


def test_a_limit_below_the_smallest_pipe_buf_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 512"):
        JsonLineFormatter(max_bytes=100)
    assert shared_line_bytes() >= 512
