"""Drive the mTLS gateway with many concurrent TLS clients and faults; measure what it does.

    python loadtest/run.py --small        # CI: 100 connections, well under 60 s
    python loadtest/run.py                # full: 1,000 concurrent connections

The gateway runs as a subprocess (``python -m mtlscore serve --config …``) on
127.0.0.1, with an upstream and a hanging CRL/OCSP server run here. Of every
100 connections: 20 present bad certificates (expired, unknown CA, wrong EKU,
revoked, self-signed), 10 stall mid-handshake (half a ClientHello, or
nothing), 5 go idle after the handshake, 10 disconnect mid-request (half a
header, or while the upstream is slow), 10 hit a slow upstream, 5 an upstream
that never answers, and 40 make two good keep-alive requests. Then the upstream
goes down (good requests must get 502) and comes back (200 again).

Measures good requests served, bad rejected (with the reason each got),
p50/p99 latency, the gateway's peak RSS (VmHWM) and its open file descriptors
before and after. Prints a table and, with ``--json FILE``, writes the figures.
Exit 0 when every check holds, 1 otherwise. Loopback only; bounded in count
and time (``--timeout``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from loadtest import _clients as c  # noqa: E402
from loadtest._setup import (  # noqa: E402
    ACCOUNT,
    BAD_KINDS,
    HangingServer,
    as_ms,
    client_context,
    percentile,
    write_files,
)

# Behaviour of connection i is MIX[i % 100].
MIX: list[str] = (
    ["bad"] * 20
    + ["stall-partial"] * 5
    + ["stall-silent"] * 5
    + ["idle"] * 5
    + ["disconnect-head"] * 5
    + ["disconnect-upstream"] * 5
    + ["slow-upstream"] * 10
    + ["hang-upstream"] * 5
    + ["good"] * 40
)
# Spread the kinds so that any prefix of the run has a bit of everything.
MIX = [MIX[(i * 37) % 100] for i in range(100)]

SIZES = {
    "small": {
        "connections": 100,
        "concurrency": 100,
        "down": 10,
        "timeouts": {"handshake": 3.0, "header": 3.0, "upstream": 2.0},
    },
    "full": {
        "connections": 1000,
        "concurrency": 1000,
        "down": 50,
        "timeouts": {"handshake": 10.0, "header": 10.0, "upstream": 3.0},
    },
}


# -- the gateway subprocess -------------------------------------------------------------


class Gateway:
    """``mtlscore serve`` as a subprocess: its address, decision log lines and /proc figures."""

    def __init__(self, config: pathlib.Path, *, backlog: int | None = None, runtime: str = "asyncio") -> None:
        cmd = [sys.executable, "-m", "mtlscore"]
        if backlog is not None:
            cmd = [sys.executable, str(HERE / "_backlog_shim.py"), str(backlog)]
        self.proc = subprocess.Popen(
            [*cmd, "serve", "--config", str(config), "--runtime", runtime],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.port: int | None = None
        self.decisions: list[dict[str, Any]] = []
        self.other: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            m = re.search(r"on https://127\.0\.0\.1:(\d+)", line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self.ready.set()
            elif line.startswith("{"):
                try:
                    self.decisions.append(json.loads(line))
                except ValueError:
                    self.other.append(line)
            else:
                self.other.append(line)
        self.ready.set()

    def status(self) -> dict[str, int]:
        """VmRSS/VmHWM (kB) from /proc/<pid>/status."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
        return out

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)


class UpstreamProcess:
    """The upstream (loadtest/_setup.py) in its own process; stop() is "the upstream goes down"."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.accounts: dict[str, int] = {}
        self.requests = 0
        self.broken = 0

    def start(self, port: int = 0) -> int:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loadtest._setup", str(port)],
            cwd=str(HERE.parent),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        return self.port

    async def stats(self) -> dict[str, Any]:
        """The upstream's counters now: requests, accounts seen, answers cut short (broken)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(b"GET /__stats HTTP/1.1\r\nHost: upstream\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        stats: dict[str, Any] = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        return stats

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError, ValueError):
            stats = await self.stats()
            self.requests += stats["requests"]
            self.broken += stats["broken"]
            for k, v in stats["accounts"].items():
                self.accounts[k] = self.accounts.get(k, 0) + v
        self.proc.kill()
        self.proc.wait(10)


def listen_overflows() -> int | None:
    """Linux TcpExt ListenOverflows (system-wide): connections a full accept queue turned away."""
    try:
        lines = pathlib.Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0))
    return None


# -- the run ---------------------------------------------------------------------------------


async def _settle_fds(gw: Gateway, baseline: int, limit: float) -> tuple[int, float]:
    """Poll the gateway's fd count until it is back to ``baseline`` or ``limit`` seconds pass."""
    start = time.monotonic()
    count = gw.fds()
    while count > baseline and time.monotonic() - start < limit:
        await asyncio.sleep(0.2)  # polling an external process: there is nothing to await
        count = gw.fds()
    return count, time.monotonic() - start


async def run(
    size: str,
    *,
    tls_engine: str,
    workdir: pathlib.Path,
    backlog: int | None = None,
    fetch: bool = True,
    runtime: str = "asyncio",
) -> dict[str, Any]:
    spec = SIZES[size]
    timeouts: dict[str, float] = spec["timeouts"]  # type: ignore[assignment]
    n, concurrency, down_n = int(spec["connections"]), int(spec["concurrency"]), int(spec["down"])  # type: ignore[call-overload]
    upstream = UpstreamProcess()
    hanging = HangingServer()
    up_port = await asyncio.to_thread(upstream.start)
    hang_port = await hanging.start()
    files = write_files(
        workdir,
        datetime.now(UTC),
        upstream_port=up_port,
        hang_port=hang_port,
        tls_engine=tls_engine,
        timeouts=timeouts,
        max_connections=max(2 * n, 256),
        fetch=fetch,
    )
    gw = Gateway(files.config, backlog=backlog, runtime=runtime)
    try:
        await asyncio.to_thread(gw.ready.wait, 30)
        if gw.port is None:
            raise RuntimeError("the gateway did not start:\n" + "\n".join(gw.other[-20:]))
        host, port = "127.0.0.1", gw.port
        good_ctx = [client_context(files, g) for g in files.good]
        bad_ctx = {k: client_context(files, v) for k, v in files.bad.items()}
        hello = c.client_hello(good_ctx[0])

        # Warm up (first handshake, lazy imports), then take the baseline.
        warm = c.Result("warm", -1)
        await c.requests(host, port, good_ctx[0], warm, ["/ok"])
        fds_before, _ = await _settle_fds(gw, 0, 0)
        fds_before, _ = await _settle_fds(gw, fds_before, 2.0)
        rss_before = gw.status()

        limit = asyncio.Semaphore(concurrency)
        results: list[c.Result] = []
        bad_kinds = list(BAD_KINDS)

        async def one(i: int) -> None:
            kind = MIX[i % 100]
            r = c.Result(kind, i)
            results.append(r)
            ctx = good_ctx[i % len(good_ctx)]
            async with limit:
                if kind == "bad":
                    bk = bad_kinds[(i // 100 + i) % len(bad_kinds)]
                    r.kind, r.expect_reason = f"bad:{bk}", BAD_KINDS[bk]
                    await c.requests(host, port, bad_ctx[bk], r, ["/ok"])
                elif kind == "good":
                    await c.requests(host, port, ctx, r, ["/ok", "/ok"])
                elif kind == "slow-upstream":
                    await c.requests(host, port, ctx, r, ["/slow"])
                elif kind == "hang-upstream":
                    await c.requests(host, port, ctx, r, ["/hang"])
                elif kind == "stall-partial":
                    await c.stall_handshake(host, port, hello[: len(hello) // 2], r)
                elif kind == "stall-silent":
                    await c.stall_handshake(host, port, b"", r)
                elif kind == "idle":
                    await c.idle_after_handshake(host, port, ctx, r)
                elif kind.startswith("disconnect"):
                    await c.disconnect(host, port, ctx, r, mid_upstream=kind.endswith("upstream"))

        overflows_before = listen_overflows()
        start = time.monotonic()
        await asyncio.gather(*(asyncio.wait_for(one(i), c.CLIENT_CAP + 10) for i in range(n)), return_exceptions=True)
        load_seconds = time.monotonic() - start
        overflows = listen_overflows()
        overflow_delta = None if overflows is None or overflows_before is None else overflows - overflows_before
        peak_during_load = gw.status()

        # The upstream goes down, then comes back.
        await upstream.stop()
        down = [c.Result("upstream-down", i) for i in range(down_n)]
        await asyncio.gather(
            *(c.requests(host, port, good_ctx[i % len(good_ctx)], r, ["/ok"]) for i, r in enumerate(down))
        )
        await asyncio.to_thread(upstream.start, up_port)
        back = [c.Result("upstream-back", i) for i in range(down_n)]
        await asyncio.gather(
            *(c.requests(host, port, good_ctx[i % len(good_ctx)], r, ["/ok"]) for i, r in enumerate(back))
        )

        fds_after, settle = await _settle_fds(gw, fds_before, timeouts["handshake"] + timeouts["header"] + 5)
        rss_after = gw.status()
    finally:
        gw.stop()
        await upstream.stop()
        await hanging.stop()
    report = _report(
        size,
        tls_engine,
        n,
        concurrency,
        results,
        down,
        back,
        gw,
        hanging,
        upstream,
        fds_before,
        fds_after,
        settle,
        rss_before,
        peak_during_load,
        rss_after,
        load_seconds,
        timeouts,
        overflow_delta,
    )
    report["revocation_server"]["fetch"] = fetch
    report["runtime"] = runtime
    return report


def _report(
    size: str,
    tls_engine: str,
    n: int,
    concurrency: int,
    results: list[c.Result],
    down: list[c.Result],
    back: list[c.Result],
    gw: Gateway,
    hanging: HangingServer,
    upstream: UpstreamProcess,
    fds_before: int,
    fds_after: int,
    settle: float,
    rss_before: dict[str, int],
    peak: dict[str, int],
    rss_after: dict[str, int],
    load_seconds: float,
    timeouts: dict[str, float],
    overflow_delta: int | None,
) -> dict[str, Any]:
    by_port: dict[int, dict[str, Any]] = {}
    for d in gw.decisions:
        peer = str(d.get("peer") or "")
        if d.get("event") == "mtls_decision" and ":" in peer:
            by_port.setdefault(int(peer.rsplit(":", 1)[1]), d)

    def of(prefix: str) -> list[c.Result]:
        return [r for r in results if r.kind.startswith(prefix)]

    good = of("good")
    good_ok = [r for r in good if r.statuses == [200, 200] and all(b.get("account") == ACCOUNT for b in r.bodies)]
    bad_rows = []
    for r in of("bad:"):
        body_reason = r.bodies[0].get("error") if r.bodies else None
        log_reason = by_port.get(r.local_port, {}).get("reason")
        got = body_reason or log_reason
        bad_rows.append(
            {
                "kind": r.kind[4:],
                "expected": r.expect_reason,
                "got": got,
                "status": r.statuses[0] if r.statuses else None,
                "tls_error": r.tls_error,
                "ok": got == r.expect_reason and (not r.statuses or r.statuses[0] in (401, 403)),
            }
        )
    slow = of("slow-upstream")
    hang = of("hang-upstream")
    stalls = of("stall-")
    idle = of("idle")
    latencies = [lat for r in good_ok for lat in r.latencies]
    handshakes = [r.handshake for r in good_ok if r.handshake is not None]
    checks = {
        "good clients served (2 requests each, right account)": len(good_ok) == len(good),
        "bad certificates rejected with their reason": all(row["ok"] for row in bad_rows),
        "slow upstream still served": all(r.statuses == [200] for r in slow),
        "hanging upstream answered 504": all(r.statuses == [504] for r in hang),
        "stalled handshakes cut by the gateway": all(
            r.closed_after is not None and r.closed_after < c.CLIENT_CAP for r in stalls
        ),
        "idle connections cut by the gateway": all(
            r.closed_after is not None and r.closed_after < c.CLIENT_CAP for r in idle
        ),
        "upstream down: 502": all(r.statuses == [502] for r in down),
        "upstream back: 200": all(r.statuses == [200] for r in back),
        "client identity headers never reach the upstream": "attacker" not in upstream.accounts,
        "no file descriptor leak": fds_after <= fds_before + 2,
        "gateway still running": gw.proc.returncode in (None, 0, -15),
    }
    return {
        "size": size,
        "tls_engine": tls_engine,
        "connections": n,
        "concurrency": concurrency,
        "load_seconds": round(load_seconds, 2),
        "timeouts_seconds": timeouts,
        "good": {
            "clients": len(good),
            "served": len(good_ok),
            "requests_served": 2 * len(good_ok),
            "p50_ms": as_ms(percentile(latencies, 50)),
            "p99_ms": as_ms(percentile(latencies, 99)),
            "handshake_p50_ms": as_ms(percentile(handshakes, 50)),
            "handshake_p99_ms": as_ms(percentile(handshakes, 99)),
            "failures": [
                {"i": r.index, "statuses": r.statuses, "tls": r.tls_error, "error": r.error}
                for r in good
                if r not in good_ok
            ][:10],
        },
        "bad": {
            "clients": len(bad_rows),
            "rejected_with_reason": sum(row["ok"] for row in bad_rows),
            "wrong": [row for row in bad_rows if not row["ok"]][:10],
        },
        "slow_upstream": {
            "clients": len(slow),
            "served": sum(r.statuses == [200] for r in slow),
            "p50_ms": as_ms(percentile([x for r in slow for x in r.latencies], 50)),
        },
        "hang_upstream": {"clients": len(hang), "got_504": sum(r.statuses == [504] for r in hang)},
        "stalled_handshakes": {
            "clients": len(stalls),
            "closed_after_max_s": _round(max((r.closed_after or c.CLIENT_CAP for r in stalls), default=None)),
            "tcp_connect_max_s": _round(max((r.connect or 0.0 for r in stalls), default=None)),
            "closed_after_connect_max_s": _round(
                max(((r.closed_after or c.CLIENT_CAP) - (r.connect or 0.0) for r in stalls), default=None)
            ),
        },
        "idle_after_handshake": {
            "clients": len(idle),
            "closed_after_max_s": _round(max((r.closed_after or c.CLIENT_CAP for r in idle), default=None)),
        },
        "disconnects": len(of("disconnect")),
        "upstream_down": {
            "requests": len(down),
            "got_502": sum(r.statuses == [502] for r in down),
            "then_200": sum(r.statuses == [200] for r in back),
        },
        "revocation_server": {
            "connections": hanging.connections,
            "note": "the gateway uses the configured CRL only; it opened no fetch connection"
            if hanging.connections == 0
            else "the gateway connected to the hanging server",
        },
        "memory_kb": {
            "rss_before": rss_before.get("VmRSS"),
            "rss_peak_during_load": peak.get("VmHWM"),
            "rss_after": rss_after.get("VmRSS"),
            "peak_hwm": rss_after.get("VmHWM"),
        },
        "fds": {"before": fds_before, "after": fds_after, "settle_seconds": round(settle, 1)},
        "decisions_logged": len(gw.decisions),
        "listen_overflows": overflow_delta,
        "gateway_events": _event_counts(gw.decisions),
        "stall_outcomes": {
            "cut_by_gateway": sum(1 for r in stalls if r.closed_after is not None and r.closed_after < c.CLIENT_CAP),
            "client_gave_up": sum(1 for r in stalls if r.closed_after is None or r.closed_after >= c.CLIENT_CAP),
        },
        "gateway_exit": gw.proc.returncode,
        "gateway_stderr_tail": gw.other[-30:],
        "checks": checks,
        "ok": all(checks.values()),
    }


def _event_counts(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in events:
        key = f"{e.get('event')}:{e.get('reason') or e.get('detail', '')[:40]}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def _print(report: dict[str, Any]) -> None:
    g, b, m, f = report["good"], report["bad"], report["memory_kb"], report["fds"]
    print(
        f"mtlscore gateway ({report['runtime']}) under load: {report['connections']} connections, "
        f"{report['concurrency']} at once, "
        f"TLS engine {report['tls_engine']}, {report['load_seconds']} s"
    )
    print(
        f"  good requests served   {g['requests_served']} / {2 * g['clients']}   "
        f"p50 {g['p50_ms']} ms  p99 {g['p99_ms']} ms  (handshake p50 {g['handshake_p50_ms']} ms, "
        f"p99 {g['handshake_p99_ms']} ms)"
    )
    print(f"  bad rejected (reason)  {b['rejected_with_reason']} / {b['clients']}")
    print(
        f"  slow upstream served   {report['slow_upstream']['served']} / {report['slow_upstream']['clients']}; "
        f"hanging upstream 504 {report['hang_upstream']['got_504']} / {report['hang_upstream']['clients']}"
    )
    print(
        f"  stalled handshakes     {report['stalled_handshakes']['clients']} cut after "
        f"<= {report['stalled_handshakes']['closed_after_connect_max_s']:.1f} s after connecting "
        f"(TCP connect <= {report['stalled_handshakes']['tcp_connect_max_s']:.1f} s); idle "
        f"{report['idle_after_handshake']['clients']} cut after <= "
        f"{report['idle_after_handshake']['closed_after_max_s']:.1f} s"
    )
    print(
        f"  upstream down          502 {report['upstream_down']['got_502']} / {report['upstream_down']['requests']}, "
        f"back 200 {report['upstream_down']['then_200']}"
    )
    print(f"  hanging CRL/OCSP       {report['revocation_server']['connections']} connection(s)")
    print(
        f"  gateway memory         RSS {m['rss_before']} kB before, peak {m['peak_hwm']} kB, {m['rss_after']} kB after"
    )
    print(f"  gateway fds            {f['before']} before, {f['after']} after ({f['settle_seconds']} s to settle)")
    if report.get("listen_overflows"):
        print(f"  accept queue overflows {report['listen_overflows']} (clients waited for TCP retransmits)")
    for name, ok in report["checks"].items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")
    if not report["checks"]["gateway still running"]:
        print(f"  gateway exited with {report['gateway_exit']}; its last output:")
        for line in report["gateway_stderr_tail"]:
            print(f"    {line}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="the CI size: 100 connections")
    p.add_argument(
        "--tls-engine",
        choices=("deferred", "ssl"),
        default="deferred",
        help="deferred (default): every bad certificate reaches the core and gets a JSON 403; "
        "ssl: stdlib ssl refuses some in the handshake (reason read from the gateway's log)",
    )
    p.add_argument("--json", type=pathlib.Path, help="write the figures here")
    p.add_argument("--runtime", choices=("asyncio", "trio"), default="asyncio", help="the gateway's runtime")
    p.add_argument(
        "--no-fetch",
        action="store_true",
        help="[revocation] fetch = false: the hanging CRL/OCSP server is never asked (latency without its timeout)",
    )
    p.add_argument(
        "--backlog", type=int, help="experiment: run the gateway with this listen backlog (asyncio's default is 100)"
    )
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (default 120/300)")
    args = p.parse_args(argv)
    size = "small" if args.small else "full"
    want = 4 * SIZES[size]["connections"] + 256  # type: ignore[operator]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    timeout = args.timeout or (120.0 if args.small else 300.0)
    with tempfile.TemporaryDirectory(prefix="mtlscore-load-") as tmp:
        try:
            report = asyncio.run(
                asyncio.wait_for(
                    run(
                        size,
                        tls_engine=args.tls_engine,
                        workdir=pathlib.Path(tmp),
                        backlog=args.backlog,
                        fetch=not args.no_fetch,
                        runtime=args.runtime,
                    ),
                    timeout,
                )
            )
        except TimeoutError:
            print(f"loadtest: gave up after {timeout:.0f} s", file=sys.stderr)
            return 1
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
