"""`mtlscore serve` beside nginx with `ssl_verify_client on`, on loopback, server CPU read from /proc.

    python benchmarks/nginx_bench.py [--quick] [--runtimes asyncio,trio] [--repeats N] [--json FILE]
                                     [--extra TOML] [--compare CHECKOUT]

Every server runs in its own process(es) and proxies to the same upstream, a
small HTTP/1.1 server in a third process (its CPU is never counted). One
client (this process) drives each server in turn, servers interleaved in every
repeat (rotating which goes first), so machine drift cancels in the ratios.

* nginx: the real binary, a temporary prefix and config: one worker,
  ``ssl_verify_client on`` against the client root, TLS 1.3, no session tickets
  or cache, ``proxy_pass`` to the upstream with ``keepalive 32`` and the
  certificate forwarded as nginx users do (``$ssl_client_escaped_cert``,
  ``$ssl_client_verify``, ``$ssl_client_s_dn``).
* mtlscore: ``python -m mtlscore serve --quiet`` on the runtime asked for,
  ``reject_invalid`` with its default TLS engine, revocation off (nginx checks
  none either), one account mapped, the same upstream.

What is measured, per server:

* ``new``: a new TLS connection (full handshake with the client certificate,
  no resumption), ``GET /`` with ``Connection: close``, the whole answer read;
  for RSA-2048 and P-256 PKIs (server and client keys of that type).
* ``keepalive``: ``GET /`` requests one after another on one connection.
* fresh-connection latency p50: connect to last answer byte of ``new`` (RSA,
  sequential, so low load).
* idle RSS: the sum of VmRSS of the server's processes after the runs.

Server CPU per unit is the CPU time the server's processes (nginx: master and
worker; mtlscore: the process and any children) spent during a sample, divided
by its units: from ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds on CPU)
when the kernel keeps it, else ``/proc/<pid>/stat`` utime + stime (clock ticks).
Ratios are medians of per-repeat ratios (mtlscore ÷ nginx: above 1 means
mtlscore spends more).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
DN = "CN=bench-client,O=Bench"
_RESPONSE = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
DEADLINE = 20.0


# -- the upstream: a tiny HTTP/1.1 server in its own process ---------------------------


def upstream_main() -> None:
    """Answer every request head with a fixed 200 (keep-alive unless the client closes); print the port."""

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.t = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while (end := self.buf.find(b"\r\n\r\n")) >= 0:
                head, self.buf = self.buf[:end].lower(), self.buf[end + 4:]
                self.t.write(_RESPONSE)
                if b"\r\nconnection: close" in head:
                    self.t.close()
                    return

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Proto, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


# -- /proc ------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def _schedstat_ok() -> bool:
    try:
        with open(f"/proc/{os.getpid()}/schedstat") as f:
            return int(f.read().split()[0]) > 0
    except (OSError, ValueError, IndexError):
        return False


SCHEDSTAT = _schedstat_ok()


def cpu_seconds(pids: list[int]) -> float:
    """CPU time used so far by ``pids`` (every thread)."""
    total = 0.0
    for pid in pids:
        if SCHEDSTAT:
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                        total += int(f.read().split()[0]) / 1e9
        else:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


# -- PKI and servers ----------------------------------------------------------------------


def write_pki(d: pathlib.Path, key: str) -> None:
    from mtlscore import pki

    now = datetime.now(UTC)
    root = pki.root("CN=Bench Client Root", now=now, key=key)
    issuing = root.intermediate("CN=Bench Client Issuing CA", key=key)
    client = issuing.leaf(DN, san_dns=["bench-client.example"], key=key)
    server_ca = pki.root("CN=Bench Server CA", now=now, key=key)
    server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"], san_ip=["127.0.0.1"], key=key)
    d.mkdir(parents=True, exist_ok=True)
    (d / "root.pem").write_bytes(root.pem)
    (d / "server-ca.pem").write_bytes(server_ca.pem)
    (d / "server.pem").write_bytes(server.chain_pem)
    (d / "server.key").write_bytes(server.key_pem)
    (d / "server.key").chmod(0o600)
    (d / "client.pem").write_bytes(client.chain_pem)
    (d / "client.key").write_bytes(client.key_pem)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> bool:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end and proc.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.02)  # poll interval, bounded by the deadline
    return False


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def pids(self) -> list[int]:
        return tree(self.proc.pid)


def start_nginx(d: pathlib.Path, upstream: int) -> Server:
    assert NGINX is not None
    prefix = d / "nginx"
    prefix.mkdir(exist_ok=True)
    for attempt in range(5):
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(f"""
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        ssl_client_certificate {d}/root.pem;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets off;
        ssl_session_cache off;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
            proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
""")
        proc = subprocess.Popen([NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait_port(port, proc):
            return Server("nginx", proc, port)
        stop(proc)
        log = (prefix / "error.log").read_text(errors="replace") if (prefix / "error.log").exists() else ""
        if "Address already in use" not in log or attempt == 4:
            raise RuntimeError(f"nginx did not start: {log[-2000:]}")
    raise AssertionError("unreachable")


def start_mtlscore(d: pathlib.Path, upstream: int, runtime: str, extra: str = "", source: str | None = None,
                   label: str = "", mode: str = "reject_invalid", wrap: tuple[str, ...] = (),
                   deadline: float = DEADLINE) -> Server:
    """``source``: another checkout's ``src`` directory to run instead of the installed mtlscore.
    ``wrap``: a command the server runs under (``instructions.py``: valgrind), ``deadline`` its
    time to start."""
    config = d / f"mtlscore-{runtime}{label}.toml"
    config.write_text(f"""[trust]
anchors = ["root.pem"]

[revocation]
mode = "off"

[[accounts]]
id = "bench"
match = {{ subject_dn = "{DN}" }}

[server]
listen = "127.0.0.1:0"
certificate = "server.pem"
key = "server.key"
mode = "{mode}"
{"" if mode == "auth" else f'upstream = "http://127.0.0.1:{upstream}"'}
reload_poll_seconds = 0
{extra}
""")
    log = d / f"mtlscore-{runtime}{label}.log"
    env = {**os.environ, "PYTHONPATH": source} if source else None
    with open(log, "wb") as err:
        proc = subprocess.Popen([*wrap, sys.executable, "-m", "mtlscore", "serve", "--config", str(config),
                                 "--runtime", runtime, "--quiet"], stdout=subprocess.DEVNULL, stderr=err, env=env)
    end = time.monotonic() + deadline
    while time.monotonic() < end and proc.poll() is None:
        text = log.read_text(errors="replace")
        if " on https://" in text:
            port = int(text.split(" on https://", 1)[1].split()[0].rsplit(":", 1)[1])
            return Server(f"mtlscore-{runtime}{label}", proc, port)
        time.sleep(0.02)  # poll interval, bounded by the deadline
    stop(proc)
    raise RuntimeError(f"mtlscore serve did not start: {log.read_text(errors='replace')[-2000:]}")


# -- the client ---------------------------------------------------------------------------


def client_context(d: pathlib.Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(d / "server-ca.pem"))
    ctx.load_cert_chain(str(d / "client.pem"), str(d / "client.key"))
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def _read_response(tls: ssl.SSLSocket, buf: bytearray) -> int:
    """Read one response (Content-Length framed) from ``tls``; its status. Leftover stays in ``buf``."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head = bytes(buf[:end]).lower()
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line[15:])
    total = end + 4 + length
    while len(buf) < total:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        buf += chunk
    del buf[:total]
    return status


_GET_CLOSE = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
_GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def new_connection(port: int, ctx: ssl.SSLContext) -> float:
    """Connect, handshake, GET with Connection: close, read the answer; the seconds it took."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(_GET_CLOSE)
            status = _read_response(tls, bytearray())
    if status != 200:
        raise RuntimeError(f"port {port} answered {status}")
    return time.perf_counter() - t0


def keepalive(port: int, ctx: ssl.SSLContext, n: int, cpu: Callable[[], float]) -> tuple[float, float]:
    """``n`` GETs on one connection: (server CPU seconds, wall seconds) for them, the handshake excluded."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            buf = bytearray()
            tls.sendall(_GET)
            _read_response(tls, buf)  # the first one pays for the connection's setup
            c0, t0 = cpu(), time.perf_counter()
            for _ in range(n):
                tls.sendall(_GET)
                if _read_response(tls, buf) != 200:
                    raise RuntimeError(f"port {port}: not 200")
            return cpu() - c0, time.perf_counter() - t0


# -- the run ------------------------------------------------------------------------------


@dataclass
class Samples:
    cpu: dict[str, list[float]] = field(default_factory=dict)  # per unit, seconds
    rate: dict[str, list[float]] = field(default_factory=dict)  # units per wall second
    latency: dict[str, list[float]] = field(default_factory=dict)  # seconds, every connection

    def add(self, key: str, cpu: float, rate: float) -> None:
        self.cpu.setdefault(key, []).append(cpu)
        self.rate.setdefault(key, []).append(rate)


def measure_new(server: Server, ctx: ssl.SSLContext, n: int, samples: Samples, key: str) -> None:
    pids = server.pids
    c0, t0 = cpu_seconds(pids), time.perf_counter()
    lat = [new_connection(server.port, ctx) for _ in range(n)]
    wall = time.perf_counter() - t0
    samples.add(key, (cpu_seconds(pids) - c0) / n, n / wall)
    samples.latency.setdefault(key, []).extend(lat)


def measure_keepalive(server: Server, ctx: ssl.SSLContext, n: int, samples: Samples, key: str) -> None:
    pids = server.pids
    cpu, wall = keepalive(server.port, ctx, n, lambda: cpu_seconds(pids))
    samples.add(key, cpu / n, n / wall)


@contextlib.contextmanager
def servers(d: pathlib.Path, upstream: int, runtimes: list[str], extra: str,
            compare: str | None) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        started.append(start_nginx(d, upstream))
        for rt in runtimes:
            started.append(start_mtlscore(d, upstream, rt, extra))
            if compare:
                started.append(start_mtlscore(d, upstream, rt, "", f"{compare}/src", "@compare"))
        yield started
    finally:
        for s in started:
            stop(s.proc)


def run(args: argparse.Namespace) -> dict[str, Any]:
    runtimes = [r for r in args.runtimes.split(",") if r]
    n_new = 100 if args.quick else 300
    n_ka = 1000 if args.quick else 3000
    repeats = args.repeats or (3 if args.quick else 5)
    tmp = tempfile.TemporaryDirectory(prefix="mtlscore-nginx-bench-")
    base = pathlib.Path(tmp.name)
    up = subprocess.Popen([sys.executable, __file__, "--upstream"], stdout=subprocess.PIPE)
    try:
        assert up.stdout is not None
        upstream = int(up.stdout.readline())
        samples = Samples()
        rss: dict[str, float] = {}
        for key, label in (("rsa", "RSA-2048"), ("ec", "P-256")):
            d = base / key
            write_pki(d, key)
            ctx = client_context(d)
            with servers(d, upstream, runtimes, args.extra, args.compare) as group:
                for s in group:  # warm-up: caches, imports, the upstream pool
                    for _ in range(20):
                        new_connection(s.port, ctx)
                for rep in range(repeats):
                    order = group[rep % len(group):] + group[:rep % len(group)]
                    for s in order:
                        measure_new(s, ctx, n_new, samples, f"new {label}|{s.name}")
                        if key == "rsa":
                            measure_keepalive(s, ctx, n_ka, samples, f"keepalive|{s.name}")
                    print(f"  {label} repeat {rep + 1}/{repeats} done", file=sys.stderr, flush=True)
                if key == "rsa":
                    for s in group:
                        rss[s.name] = rss_mib(s.pids)
    finally:
        stop(up)
        tmp.cleanup()
    names = [f"mtlscore-{rt}{label}" for rt in runtimes for label in ("", "@compare") if label == "" or args.compare]
    return report(samples, rss, names, n_new, n_ka, repeats)


def _ratio(samples: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))


def report(samples: Samples, rss: dict[str, float], names: list[str], n_new: int, n_ka: int,
           repeats: int) -> dict[str, Any]:
    rows: list[tuple[str, str, list[str]]] = []
    out: dict[str, Any] = {}

    def fmt_us(x: float) -> str:
        return f"{x * 1e6:,.0f} µs" if x < 1e-3 else f"{x * 1e3:,.2f} ms"

    for metric in ("new RSA-2048", "new P-256", "keepalive"):
        base = f"{metric}|nginx"
        if base not in samples.cpu:
            continue
        cells = []
        for n in names:
            k = f"{metric}|{n}"
            r = _ratio(samples.cpu, k, base)
            cells.append(f"{fmt_us(statistics.median(samples.cpu[k]))} ({r:.2f}×)")
            out[f"cpu {metric}|{n}"] = {"median_s": statistics.median(samples.cpu[k]), "ratio": r}
        out[f"cpu {metric}|nginx"] = {"median_s": statistics.median(samples.cpu[base])}
        rows.append((f"server CPU per {'keep-alive request' if metric == 'keepalive' else 'connection, ' + metric}",
                     fmt_us(statistics.median(samples.cpu[base])), cells))
        cells = []
        for n in names:
            k = f"{metric}|{n}"
            r = _ratio(samples.rate, k, base)
            cells.append(f"{statistics.median(samples.rate[k]):,.0f}/s ({r:.2f}×)")
        rows.append((f"{'keep-alive requests' if metric == 'keepalive' else metric + ' connections'} per second",
                     f"{statistics.median(samples.rate[base]):,.0f}/s", cells))
    base = "new RSA-2048|nginx"
    if base in samples.latency:
        ng = statistics.median(samples.latency[base])
        cells = []
        for n in names:
            v = statistics.median(samples.latency[f"new RSA-2048|{n}"])
            cells.append(f"{v * 1e3:.2f} ms ({v / ng:.2f}×)")
        rows.append(("fresh-connection latency p50, RSA-2048", f"{ng * 1e3:.2f} ms", cells))
    if "nginx" in rss:
        rows.append(("RSS idle (sum of processes)", f"{rss['nginx']:.0f} MiB",
                     [f"{rss[n]:.0f} MiB ({rss[n] / rss['nginx']:.1f}×)" for n in names]))
    out["rss_mib"] = rss
    header = ["metric", "nginx (1 worker)", *[f"{n} (÷ nginx)" for n in names]]
    widths = [max(len(header[i]), *(len(([r[0], r[1], *r[2]])[i]) for r in rows)) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip([r[0], r[1], *r[2]], widths, strict=True)) for r in rows]
    clock = "schedstat ns" if SCHEDSTAT else f"utime+stime at {_TICK} Hz"
    lines.append(f"({repeats} interleaved repeats; {n_new} new connections and {n_ka} keep-alive requests per "
                 f"sample; medians; ratios are medians of per-repeat ratios; CPU from /proc ({clock}))")
    print("\n".join(lines))
    out["table"] = lines
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runtimes", default="asyncio,trio")
    p.add_argument("--repeats", type=int, default=0)
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--extra", default="", help="extra [server] lines for mtlscore (TOML)")
    p.add_argument("--compare", help="another checkout (its src/ is run as mtlscore-<runtime>@compare, "
                                     "e.g. an older commit from `git archive`), interleaved with the rest")
    p.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.upstream:
        upstream_main()
        return
    if NGINX is None:
        sys.exit("nginx_bench: nginx is not installed")
    out = run(args)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
