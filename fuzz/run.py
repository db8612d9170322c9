"""Run every fuzz target for a bounded time: ``python fuzz/run.py --seconds N``.

``--seconds N`` is the TOTAL fuzzing budget, split evenly across the selected
targets (each gets at least 1 s; start-up of each target's worker, ~1-2 s, is
on top). Each target runs in its own worker process, with a hard kill after
its share plus a grace period, so a hang or a native crash in one target is a
finding rather than a stuck run.

Engines: ``atheris`` (libFuzzer, coverage of mtlscore's Python code) when it
is importable, else ``hypothesis`` (fuzz/engine.py: hypothesis-drawn
mutations kept when they reach new line arcs). ``--engine`` forces one.

Prints executions per target; exits 1 when any target crashed, with the
reproducer saved under ``fuzz/crashes/<target>--<kind>-<sha1>`` (replayed by
tests/test_fuzz_regressions.py). Exit 2 on usage errors.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
CRASHES = HERE / "crashes"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

__all__ = ["CRASHES", "TargetResult", "atheris_available", "main", "replay", "run_target", "target_names"]


@dataclass
class TargetResult:
    """The outcome of fuzzing one target."""

    name: str
    engine: str
    seconds: float
    execs: int
    corpus: int = 0
    crash: str | None = None
    reproducer: str | None = None

    @property
    def ok(self) -> bool:
        return self.crash is None


def atheris_available() -> bool:
    """True when atheris imports on this interpreter."""
    try:
        importlib.import_module("atheris")
    except ImportError:
        return False
    return True


def target_names() -> list[str]:
    """Names of all fuzz targets, in a stable order."""
    from fuzz.targets import TARGETS

    return list(TARGETS)


def _save(name: str, data: bytes, kind: str = "crash", crashes: pathlib.Path = CRASHES) -> pathlib.Path:
    crashes.mkdir(parents=True, exist_ok=True)
    path = crashes / f"{name}--{kind}-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    return path


def replay(path: pathlib.Path) -> None:
    """Run the target a reproducer file is named for on its bytes (raises what the target raises)."""
    from fuzz.targets import TARGETS

    name = path.name.split("--", 1)[0]
    TARGETS[name](path.read_bytes())


# -- the hypothesis engine (in process) ---------------------------------------------------


def _run_hypothesis(name: str, seconds: float, crashes: pathlib.Path) -> TargetResult:
    from fuzz.engine import fuzz
    from fuzz.seeds import seeds_for
    from fuzz.targets import TARGETS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fuzz(TARGETS[name], seeds_for(name), seconds)
    result = TargetResult(name, "hypothesis", seconds, r.execs, r.corpus, r.crash)
    if r.crash_input is not None:
        kind = "timeout" if r.crash and r.crash.startswith("slow input") else "crash"
        result.reproducer = str(_save(name, r.crash_input, kind, crashes))
    return result


# -- the atheris engine (libFuzzer; one process per target) --------------------------------


def _atheris_worker(name: str, seconds: float, corpus: pathlib.Path, crashes: pathlib.Path) -> None:
    atheris: Any = importlib.import_module("atheris")

    with atheris.instrument_imports(include=["mtlscore", "fuzz", "h11", "http_sf"]):
        from fuzz.seeds import seeds_for
        from fuzz.targets import TARGETS
    warnings.simplefilter("ignore")
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = seeds_for(name)
    for s in seeds:
        (corpus / hashlib.sha1(s).hexdigest()).write_bytes(s)
    crashes.mkdir(parents=True, exist_ok=True)
    max_len = min(128 * 1024, max(4096, 2 * max(len(s) for s in seeds)))
    fn = TARGETS[name]
    args = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={max(1, round(seconds))}",
        f"-artifact_prefix={crashes}/{name}--",
        f"-max_len={max_len}",
        "-timeout=20",
        "-rss_limit_mb=3072",
        "-print_final_stats=1",
    ]
    atheris.Setup(args, fn)
    atheris.Fuzz()


def _run_atheris(name: str, seconds: float, crashes: pathlib.Path, corpus_root: pathlib.Path | None) -> TargetResult:
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as tmp:
        corpus = (corpus_root / name) if corpus_root else pathlib.Path(tmp) / "corpus"
        cmd = [
            sys.executable,
            str(HERE / "run.py"),
            "--worker",
            name,
            "--seconds",
            str(seconds),
            "--corpus-dir",
            str(corpus),
            "--crashes-dir",
            str(crashes),
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, errors="replace", timeout=seconds + 120, cwd=str(REPO)
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stderr or "") if isinstance(exc.stderr, str) else ""
            return TargetResult(name, "atheris", seconds, _execs(out), crash=f"worker hung past {seconds + 120:.0f} s")
        log = proc.stdout + proc.stderr
        execs = _execs(log)
        corpus_size = len(list(corpus.iterdir())) if corpus.is_dir() else 0
        if proc.returncode == 0:
            return TargetResult(name, "atheris", seconds, execs, corpus_size)
        m = re.search(r"Test unit written to (\S+)", log)
        repro = m.group(1) if m else None
        found = re.search(r"=== Uncaught Python exception: ===\n(.*?)(?:\n==\d+==|\nINFO:|\Z)", log, re.S)
        tail = found.group(1).strip() if found else "\n".join(log.strip().splitlines()[-30:])
        return TargetResult(name, "atheris", seconds, execs, corpus_size, crash=tail, reproducer=repro)


def _execs(log: str) -> int:
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    if m:
        return int(m.group(1))
    runs = re.findall(r"#(\d+)\s", log)
    return int(runs[-1]) if runs else 0


# -- API ------------------------------------------------------------------------------------


def run_target(
    name: str,
    seconds: float,
    *,
    engine: str = "auto",
    crashes: pathlib.Path = CRASHES,
    corpus_root: pathlib.Path | None = None,
    isolate: bool = True,
) -> TargetResult:
    """Fuzz one target for ``seconds`` with ``engine`` ("auto", "atheris" or "hypothesis").

    ``isolate`` runs the hypothesis engine in a worker process (always so for atheris).
    Raises ValueError for an unknown target or engine.
    """
    if name not in target_names():
        raise ValueError(f"unknown fuzz target {name!r}")
    if engine == "auto":
        engine = "atheris" if atheris_available() else "hypothesis"
    if engine == "atheris":
        return _run_atheris(name, seconds, crashes, corpus_root)
    if engine != "hypothesis":
        raise ValueError(f"unknown engine {engine!r}")
    if not isolate:
        return _run_hypothesis(name, seconds, crashes)
    cmd = [
        sys.executable,
        str(HERE / "run.py"),
        "--worker",
        name,
        "--engine",
        "hypothesis",
        "--seconds",
        str(seconds),
        "--crashes-dir",
        str(crashes),
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, errors="replace", timeout=seconds + 120, cwd=str(REPO)
        )
    except subprocess.TimeoutExpired:
        return TargetResult(name, "hypothesis", seconds, 0, crash=f"worker hung past {seconds + 120:.0f} s")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return TargetResult(**json.loads(line))
    return TargetResult(
        name, "hypothesis", seconds, 0, crash=f"worker died (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--seconds", type=float, default=60.0, help="total fuzzing time, split evenly across the targets (default 60)"
    )
    p.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    p.add_argument("--target", action="append", default=[], help="fuzz only these targets (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once (default 1)")
    p.add_argument("--corpus-dir", type=pathlib.Path, help="keep the grown corpora here")
    p.add_argument("--crashes-dir", type=pathlib.Path, default=CRASHES)
    p.add_argument("--list", action="store_true", help="list the targets and exit")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        if args.engine == "hypothesis":
            r = _run_hypothesis(args.worker, args.seconds, args.crashes_dir)
            print(json.dumps(asdict(r)), flush=True)
            return 0
        _atheris_worker(args.worker, args.seconds, args.corpus_dir, args.crashes_dir)
        return 0  # not reached: libFuzzer exits the process

    names = target_names()
    if args.list:
        print("\n".join(names))
        return 0
    unknown = [t for t in args.target if t not in names]
    if unknown:
        print(f"unknown target(s): {', '.join(unknown)}; known: {', '.join(names)}", file=sys.stderr)
        return 2
    selected = args.target or names
    jobs = max(1, args.jobs)
    share = max(1.0, args.seconds * jobs / len(selected))
    engine = args.engine if args.engine != "auto" else ("atheris" if atheris_available() else "hypothesis")
    print(f"fuzzing {len(selected)} target(s) with {engine}, {share:.1f} s each, {jobs} at a time", flush=True)

    results: list[TargetResult] = []
    start = time.monotonic()
    if jobs == 1:
        for name in selected:
            results.append(
                run_target(name, share, engine=engine, crashes=args.crashes_dir, corpus_root=args.corpus_dir)
            )
            _print(results[-1])
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(jobs) as pool:
            futures = [
                pool.submit(run_target, n, share, engine=engine, crashes=args.crashes_dir, corpus_root=args.corpus_dir)
                for n in selected
            ]
            for f in futures:
                results.append(f.result())
                _print(results[-1])
    crashed = [r for r in results if not r.ok]
    total = sum(r.execs for r in results)
    print(
        f"{len(results)} target(s), {total} executions in {time.monotonic() - start:.0f} s; {len(crashed)} crashed",
        flush=True,
    )
    for r in crashed:
        print(f"\n=== {r.name}: reproducer {r.reproducer}\n{r.crash}", flush=True)
    return 1 if crashed else 0


def _print(r: TargetResult) -> None:
    status = "ok" if r.ok else f"CRASH -> {r.reproducer}"
    print(
        f"  {r.name:22} {r.engine:10} {r.execs:>9} execs  {r.seconds:6.1f} s  corpus {r.corpus:>5}  {status}",
        flush=True,
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
