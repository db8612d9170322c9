"""Issue 15's attacks on the gateway as repeatable scenarios, with the figures they produce.

    python loadtest/attacks.py --list
    python loadtest/attacks.py slowloris --connections 200
    python loadtest/attacks.py big                    # 1,100 slowloris + 200 non-readers

``mtlscore serve`` runs as a subprocess on 127.0.0.1 (lenient mode, so that
anonymous clients get through the handshake, as in the issue), with
loadtest/_setup.py's upstream in another process. The attackers bind
127.0.0.2 (``--sources N``: 127.0.1.1 … 127.0.1.N), the normal client
127.0.0.1 and probes every 0.5 s (new connection, certificate, ``GET /ok``).
Printed: the probes' latency (p50, max, failures), how the attacking
connections ended, the gateway's RSS before, at its peak (VmHWM) and after.
Loopback only; every attacker stops after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import pathlib
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from loadtest import _attacks as a  # noqa: E402
from loadtest._setup import client_context, percentile, write_files  # noqa: E402
from loadtest.run import Gateway, UpstreamProcess  # noqa: E402

Attack = Callable[..., Awaitable[str]]

SCENARIOS: dict[str, tuple[str, int]] = {
    "slowloris": ("a request head sent one byte per --interval s, never finished (anonymous)", 200),
    "slow-body": ("a head announcing 1 MB, then the body one byte per --interval s (anonymous)", 200),
    "non-reader": ("GET of a 50 MB answer with a certificate, never read", 20),
    "idle-flood": ("TCP connections that send nothing", 3000),
    "anonymous": ("TLS handshakes without a certificate, then silence", 1100),
    "big": ("1,100 slowloris and 200 non-readers at once (non-readers from their own addresses)", 1300),
}


def _sources(n: int) -> list[str]:
    return ["127.0.0.2"] if n <= 1 else [f"127.0.1.{i}" for i in range(1, n + 1)]


def _attackers(name: str, n: int, port: int, anon: Any, good: Any, args: argparse.Namespace) -> list[Awaitable[str]]:
    src = _sources(args.sources)
    d, iv = args.duration, args.interval
    out: list[Awaitable[str]] = []
    for i in range(n):
        s = src[i % len(src)]
        if name == "slowloris" or (name == "big" and i < 1100):
            out.append(a.slowloris(port, anon, source=s, interval=iv, duration=d))
        elif name == "slow-body":
            out.append(a.slow_body(port, anon, source=s, interval=iv, duration=d))
        elif name == "non-reader":
            out.append(a.non_reader(port, good, source=s, duration=d))
        elif name == "big":  # from addresses of their own (127.0.2.1-4), under the per-address limit
            out.append(a.non_reader(port, good, source=f"127.0.2.{1 + i % 4}", duration=d))
        elif name == "idle-flood":
            out.append(a.idle(port, None, source=s, duration=d))
        else:
            out.append(a.idle(port, anon, source=s, duration=d))
    return out


async def scenario(name: str, args: argparse.Namespace, workdir: pathlib.Path) -> dict[str, Any]:
    n = args.connections or SCENARIOS[name][1]
    upstream = UpstreamProcess()
    up_port = await asyncio.to_thread(upstream.start)
    files = write_files(
        workdir, datetime.now(UTC), upstream_port=up_port, hang_port=9, tls_engine="deferred",
        timeouts={"handshake": 10.0, "header": 15.0, "upstream": 30.0}, max_connections=args.max_connections,
        fetch=False,
    )
    text = files.config.read_text().replace('mode = "reject_invalid"', 'mode = "allow_invalid_or_missing"')
    text = text.replace("body_timeout_seconds = 15.0", "body_timeout_seconds = 30.0")
    settings = dict(args.set)  # [server] is the file's last table: drop what they replace, append them
    text = "".join(line for line in text.splitlines(True) if line.split(" = ")[0] not in settings)
    files.config.write_text(text + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    gw = Gateway(files.config, runtime=args.runtime)
    try:
        await asyncio.to_thread(gw.ready.wait, 30)
        if gw.port is None:
            raise RuntimeError("the gateway did not start:\n" + "\n".join(gw.other[-20:]))
        port = gw.port
        good = client_context(files, files.good[0])
        anon = client_context(files, None)
        assert await a.probe(port, good) is not None, "the gateway does not serve a normal client"
        rss_before = gw.status()
        started = time.monotonic()
        attack = asyncio.gather(*_attackers(name, n, port, anon, good, args))
        probes: list[float | None] = []
        while not attack.done():
            probes.append(await a.probe(port, good))
            await asyncio.sleep(0.5)  # pacing the probes, not synchronisation
        outcomes = collections.Counter(attack.result())
        elapsed = time.monotonic() - started
        rss_peak = gw.status()
        after = [await a.probe(port, good) for _ in range(3)]
        await asyncio.sleep(2)
        rss_after = gw.status()
        stats = await upstream.stats()
    finally:
        gw.stop()
        await upstream.stop()
    served = [p for p in probes if p is not None]
    refused = collections.Counter(
        d["limit"] for d in gw.decisions if d.get("event") == "connection_refused"
    )
    return {
        "scenario": name,
        "runtime": args.runtime,
        "connections": n,
        "sources": len(_sources(args.sources)),
        "seconds": round(elapsed, 1),
        "outcomes": dict(outcomes),
        "refused_at_accept": dict(refused),
        "shed": sum(1 for d in gw.decisions if d.get("event") == "connection_shed"),
        "log_events": dict(collections.Counter(str(d.get("event")) for d in gw.decisions)),
        "other_log_lines": len(gw.other),
        "decisions": dict(collections.Counter(
            f"{d['outcome']}:{d['reason']}" for d in gw.decisions if d.get("event") == "mtls_decision"
        )),
        "write_timeouts": sum(1 for d in gw.decisions if d.get("reason") == "write_timeout"),
        "upstream_answers_cut": stats["broken"],
        "probes": len(probes),
        "probes_failed": len(probes) - len(served),
        "probe_p50_ms": round(1000 * (percentile(served, 50) or 0)),
        "probe_max_ms": round(1000 * max(served)) if served else None,
        "served_after": sum(1 for p in after if p is not None),
        "rss_mb": {
            "before": round(rss_before["VmRSS"] / 1024, 1),
            "peak": round(rss_peak["VmHWM"] / 1024, 1),
            "after": round(rss_after["VmRSS"] / 1024, 1),
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS))
    p.add_argument("--list", action="store_true", help="list the scenarios")
    p.add_argument("--connections", type=int, help="attacking connections (default: per scenario)")
    p.add_argument("--sources", type=int, default=1, help="attacker addresses (default 1: 127.0.0.2)")
    p.add_argument("--duration", type=float, default=60.0, help="each attacker gives up after this (s)")
    p.add_argument("--interval", type=float, default=5.0, help="slowloris / slow-body: s between bytes")
    p.add_argument("--runtime", choices=("asyncio", "trio"), default="asyncio")
    p.add_argument("--max-connections", type=int, default=1024)
    p.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="an extra [server] setting, e.g. --set write_timeout_seconds 10")
    p.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = p.parse_args()
    if args.list or not args.scenario:
        for name, (what, n) in SCENARIOS.items():
            print(f"{name:12} {n:5}  {what}")
        return 0
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="mtlscore-attack-") as d:
        result = asyncio.run(scenario(args.scenario, args, pathlib.Path(d)))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["served_after"] and result["probes_failed"] < result["probes"] else 1


if __name__ == "__main__":
    sys.exit(main())
