"""Auth-service mode (``[server] mode = "auth"``): decisions per second over one kept-alive
connection, against the same gateway answering its identity JSON in the same run.

- ``auth``: an edge's subrequests, the client certificate in RFC 9440 ``Client-Cert`` /
  ``Client-Cert-Chain`` from a trusted proxy (127.0.0.1/32); after the first request the
  verdict comes from the verdict cache, so this is header parse + cache + identity headers.
- ``identity``: the same client certificate in the TLS handshake (decided once per
  connection), each request answered with the identity JSON.

One connection each, requests one after another (like one nginx keepalive connection),
interleaved per repeat. ``python benchmarks/auth_bench.py [--requests N] [--repeats R]
[--connections 1,4]``. Prints figures; asserts nothing about time.

``--connections``: besides one connection, auth mode is also asked over C connections at
once (C client processes, each one keep-alive connection, as an edge under load uses its
``keepalive`` pool), the load that shows what one worker can answer: the gateway is then
busy nearly all the time, where over one connection it waits for each round trip and
~40 % of it idles. Reported: decisions/s (wall), per CPU-second of the gateway thread, and
how busy the thread was.

The gateway runs in a thread of this process; the client (the edge) runs in a forked
child process, as nginx would, so the two do not share an interpreter lock. requests/s
is the pair's rate — on a loaded machine, the share of CPU they got. The figure that
speaks for one worker is the server's own CPU per decision: the gateway thread's user +
system time from /proc (Linux), reported as decisions per CPU-second of that thread. /proc
counts in clock ticks (10 ms): the default 10,000 requests per sample (~2 s of CPU) keep the
rounding under 1 %; 2,000 (the old default) let it reach ±3 %.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.pool
import os
import pathlib
import socket
import ssl
import statistics
import sys
import tempfile
import time

import h11

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from gateway_bench import Server, _client_context, _files, _gateway

from mtlscore.proxy.headers import emit_client_cert, emit_client_cert_chain
from mtlscore.x509.cert import load_certificates


def _configs(d: pathlib.Path, runtime: str) -> tuple[pathlib.Path, pathlib.Path]:
    """(auth, identity): one PKI; identity is reject_invalid without upstream (the identity JSON)."""
    identity = _files(d, runtime)
    auth = d / f"auth-{runtime}.toml"
    auth.write_text(identity.read_text().replace('mode = "reject_invalid"', 'mode = "auth"')
                    + 'trusted_proxies = ["127.0.0.1/32"]\n')
    return auth, identity


def _thread_cpu(server: Server) -> float:
    """CPU seconds (user + system) the server's thread has used, from /proc; 0.0 elsewhere."""
    try:
        with open(f"/proc/self/task/{server.thread.native_id}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # proc(5): utime and stime are fields 14 and 15; fields[0] here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(
    pool: multiprocessing.pool.Pool, server: Server, d: pathlib.Path, cert: bool, headers: list[tuple[str, str]],
    n: int,
) -> tuple[float, float]:
    """(requests/s, requests per server-thread CPU second) for ``n`` requests on one connection,
    sent by the client process (``cert``: it presents the client certificate)."""
    cpu = _thread_cpu(server)
    elapsed = pool.apply(_client, (server.port, str(d), cert, headers, n))
    used = _thread_cpu(server) - cpu
    return n / elapsed, (n / used if used > 0 else float("nan"))


def _client(port: int, d: str, cert: bool, headers: list[tuple[str, str]], n: int) -> float:
    """In the client process: ``_keepalive`` with the edge's context (``cert``: the client's)."""
    ctx = _client_context(pathlib.Path(d)) if cert else ssl.create_default_context(cafile=f"{d}/server-ca.pem")
    return _keepalive(port, ctx, headers, n)


def _keepalive(port: int, ctx: ssl.SSLContext, headers: list[tuple[str, str]], n: int) -> float:
    """Seconds for ``n`` requests on one connection (handshake excluded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            conn = h11.Connection(h11.CLIENT)
            start = time.perf_counter()
            for _ in range(n):
                tls.sendall(conn.send(h11.Request(method="GET", target="/_mtlscore",
                                                  headers=[("Host", "localhost"), *headers])))
                tls.sendall(conn.send(h11.EndOfMessage()))
                while True:
                    ev = conn.next_event()
                    if ev is h11.NEED_DATA:
                        conn.receive_data(tls.recv(65536))
                        continue
                    if isinstance(ev, h11.Response) and ev.status_code != 200:
                        raise RuntimeError(f"answered {ev.status_code}")
                    if isinstance(ev, h11.EndOfMessage):
                        conn.start_next_cycle()
                        break
            return time.perf_counter() - start


def _saturated(
    pool: multiprocessing.pool.Pool, server: Server, d: pathlib.Path, headers: list[tuple[str, str]],
    n: int, conns: int,
) -> tuple[float, float, float]:
    """(decisions/s, decisions per server-thread CPU second, share of the wall time the thread
    was busy) for ``n`` auth requests split over ``conns`` concurrent connections."""
    each = n // conns
    cpu = _thread_cpu(server)
    start = time.perf_counter()
    pending = [pool.apply_async(_client, (server.port, str(d), False, headers, each)) for _ in range(conns)]
    for result in pending:
        result.get()
    wall = time.perf_counter() - start
    used = _thread_cpu(server) - cpu
    done = each * conns
    return done / wall, (done / used if used > 0 else float("nan")), used / wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--runtime", choices=("asyncio", "trio"), default="asyncio")
    ap.add_argument("--connections", default="1,4",
                    help="comma-separated counts of concurrent connections for auth mode (1: only the serial run)")
    args = ap.parse_args()
    try:
        counts = sorted({int(c) for c in args.connections.split(",")} - {1})
    except ValueError:
        ap.error(f"--connections {args.connections!r}: comma-separated whole numbers")
    if any(c < 1 for c in counts):
        ap.error("--connections: counts of at least 1")
    saturated: dict[int, list[tuple[float, float, float]]] = {c: [] for c in counts}
    rates: dict[str, list[float]] = {"auth": [], "identity": []}
    per_cpu: dict[str, list[float]] = {"auth": [], "identity": []}
    # The client process is forked before the gateway threads exist: it holds none of their locks.
    with tempfile.TemporaryDirectory(prefix="mtlscore-auth-bench-") as tmp, \
            multiprocessing.get_context("fork").Pool(max([1, *counts])) as pool:
        d = pathlib.Path(tmp)
        auth_cfg, ident_cfg = _configs(d, args.runtime)
        auth = Server("auth", _gateway(auth_cfg, args.runtime))
        ident = Server("identity", _gateway(ident_cfg, args.runtime))
        try:
            chain = load_certificates((d / "client.pem").read_bytes())
            forwarded = [("Client-Cert", emit_client_cert(chain[0])),
                         ("Client-Cert-Chain", emit_client_cert_chain(chain[1:]))]
            runs = (("auth", auth, False, forwarded), ("identity", ident, True, []))
            for _ in range(args.repeats):
                for name, server, cert, headers in runs:
                    rate, cpu_rate = _measured(pool, server, d, cert, headers, args.requests)
                    rates[name].append(rate)
                    per_cpu[name].append(cpu_rate)
                for c in counts:
                    saturated[c].append(_saturated(pool, auth, d, forwarded, args.requests, c))
        finally:
            auth.stop()
            ident.stop()
    a, i = statistics.median(rates["auth"]), statistics.median(rates["identity"])
    ca, ci = statistics.median(per_cpu["auth"]), statistics.median(per_cpu["identity"])
    print(f"{args.runtime}: auth mode {a:,.0f} decisions/s (cached verdicts, one keep-alive connection); "
          f"identity JSON {i:,.0f} requests/s; auth = {a / i:.2f}x identity "
          f"(medians of {args.repeats} x {args.requests})")
    print(f"{args.runtime}: server thread CPU: auth mode {ca:,.0f} decisions per CPU-second "
          f"({1e6 / ca:.0f} µs each); identity JSON {ci:,.0f} per CPU-second ({1e6 / ci:.0f} µs each)")
    for c, samples in saturated.items():
        wall = statistics.median(r[0] for r in samples)
        cpu_rate = statistics.median(r[1] for r in samples)
        busy = statistics.median(r[2] for r in samples)
        print(f"{args.runtime}: auth mode over {c} connections at once: {wall:,.0f} decisions/s, "
              f"{cpu_rate:,.0f} per CPU-second ({1e6 / cpu_rate:.0f} µs each), gateway thread busy {busy:.0%} "
              f"(medians of {args.repeats} x {args.requests})")


if __name__ == "__main__":
    main()
