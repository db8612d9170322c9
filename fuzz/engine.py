"""The fallback fuzzing engine: hypothesis draws mutations, line-arc coverage keeps the good ones.

Used where atheris does not install (or with ``--engine hypothesis``). It is
"coverage-guided-ish": every input runs under ``sys.settrace`` restricted to
mtlscore's own source files; an input that reaches a new (line → line) arc
joins the corpus, and hypothesis draws which corpus entry to mutate and how
(bit flips, interesting bytes, DER length tweaks, inserts, deletes, splices,
fresh random bytes). No shrinking: the first crashing input is saved as is.
"""

from __future__ import annotations

import hashlib
import pathlib
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import mtlscore

SOURCE_ROOT = str(pathlib.Path(mtlscore.__file__).resolve().parent)
MAX_INPUT = 128 * 1024
MAX_CORPUS = 4000
# Bytes that change the meaning of DER lengths, tags and text parsers.
INTERESTING = (
    0x00,
    0x01,
    0x02,
    0x7F,
    0x80,
    0x81,
    0x82,
    0x83,
    0xFF,
    0x30,
    0x31,
    0xA0,
    0x04,
    0x05,
    0x06,
    0x0C,
    0x13,
    0x16,
    0x17,
    0x18,
    ord(","),
    ord("="),
    ord("\\"),
    ord('"'),
    ord("+"),
    ord(";"),
    ord("%"),
    ord("\n"),
    ord("\r"),
    ord(" "),
    ord("\t"),
)
OPS = ("flip", "set", "interesting", "insert", "delete", "dup", "splice", "truncate", "lenbump", "fresh")

Arc = tuple[Any, int, int]


@dataclass
class EngineResult:
    """What one in-process fuzzing session did."""

    execs: int = 0
    corpus: int = 0
    arcs: int = 0
    crash: str | None = None
    crash_input: bytes | None = None
    slowest: float = 0.0


def run_traced(fn: Callable[[bytes], None], data: bytes, arcs: set[Arc]) -> BaseException | None:
    """Run ``fn(data)`` recording mtlscore line arcs into ``arcs``; return what it raised."""

    def global_trace(frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        if not code.co_filename.startswith(SOURCE_ROOT):
            return None
        prev = -1

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            nonlocal prev
            if event == "line":
                line = frame.f_lineno
                arcs.add((code, prev, line))
                prev = line
            return local

        return local

    old = sys.gettrace()
    sys.settrace(global_trace)
    try:
        fn(data)
    except Exception as exc:  # noqa: BLE001 - every exception is a finding to report
        return exc
    finally:
        sys.settrace(old)
    return None


def mutate(base: bytes, ops: list[tuple[str, int, bytes]], other: bytes) -> bytes:
    """Apply drawn mutation operations to ``base`` (``other``: a second corpus entry to splice)."""
    buf = bytearray(base)
    for op, n, blob in ops:
        size = len(buf)
        pos = n % (size + 1)
        if op == "fresh":
            buf = bytearray(blob)
        elif op == "flip" and size:
            buf[pos % size] ^= 1 << (n >> 20 & 7)
        elif op == "set" and size and blob:
            buf[pos % size] = blob[0]
        elif op == "interesting" and size:
            buf[pos % size] = INTERESTING[(n >> 8) % len(INTERESTING)]
        elif op == "insert":
            buf[pos:pos] = blob
        elif op == "delete" and size:
            del buf[pos : pos + 1 + (n >> 24) % 64]
        elif op == "dup" and size:
            chunk = buf[pos : pos + 1 + (n >> 16) % 256]
            buf[pos:pos] = chunk * (1 + (n >> 28) % 8)
        elif op == "splice" and other:
            cut = n % (len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
        elif op == "truncate":
            del buf[pos:]
        elif op == "lenbump" and size:
            # Nudge a byte that follows a DER tag (likely a length) up or down.
            i = pos % size
            buf[i] = (buf[i] + (1 if n & 1 else 255)) & 0xFF
    return bytes(buf[:MAX_INPUT])


_ops = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, 2**31 - 1), st.binary(min_size=0, max_size=24)),
    min_size=1,
    max_size=6,
)


def fuzz(
    fn: Callable[[bytes], None],
    seeds: list[bytes],
    seconds: float,
    *,
    slow_seconds: float = 10.0,
) -> EngineResult:
    """Fuzz ``fn`` for about ``seconds``; stop at the first crash (or an input slower than ``slow_seconds``)."""
    result = EngineResult()
    corpus: list[bytes] = []
    seen: set[bytes] = set()
    arcs: set[Arc] = set()
    deadline = time.monotonic() + seconds

    def execute(data: bytes) -> bool:
        """Run one input; True when fuzzing must stop (a crash)."""
        fresh: set[Arc] = set()
        start = time.monotonic()
        exc = run_traced(fn, data, fresh)
        took = time.monotonic() - start
        result.execs += 1
        result.slowest = max(result.slowest, took)
        if exc is not None:
            result.crash = "".join(traceback.format_exception(exc)).rstrip()
            result.crash_input = data
            return True
        if took > slow_seconds:
            result.crash = f"slow input: {took:.1f} s (limit {slow_seconds} s)"
            result.crash_input = data
            return True
        if not fresh <= arcs:
            arcs.update(fresh)
            digest = hashlib.sha1(data).digest()
            if digest not in seen and len(corpus) < MAX_CORPUS:
                seen.add(digest)
                corpus.append(data)
        return False

    for s in seeds or [b""]:
        if time.monotonic() > deadline or execute(s[:MAX_INPUT]):
            break
    if not corpus:
        corpus.append(seeds[0] if seeds else b"")

    @settings(
        database=None,
        deadline=None,
        max_examples=200,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1), _ops)
    def step(pick: int, pick_other: int, ops: list[tuple[str, int, bytes]]) -> None:
        if result.crash is not None or time.monotonic() > deadline:
            return
        data = mutate(corpus[pick % len(corpus)], ops, corpus[pick_other % len(corpus)])
        execute(data)

    while result.crash is None and time.monotonic() < deadline:
        step()
    result.corpus = len(corpus)
    result.arcs = len(arcs)
    return result
