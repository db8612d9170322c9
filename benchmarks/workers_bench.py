"""Keep-alive throughput of `mtlscore serve` with `[server] workers = 2` against `workers = 1`.

Each run starts the real command (``--quiet``, the identity JSON, no upstream: only the
gateway works), opens ``--connections`` keep-alive mTLS connections from as many client
processes, warms them up, then counts the requests answered in a ``--seconds`` window.
Configurations are interleaved per repeat.

The client runs on the same machine, so a plain requests/s ratio mostly measures how
the client and the server share the cores. The server's own cost is accounted for
instead, from ``/proc/<pid>/stat`` (user + system CPU of the parent and of each worker
over the window), and each client connection is matched to the worker process that
holds its server-side socket (``/proc/net/tcp`` inode → ``/proc/<pid>/fd``):

* **requests per server CPU-second**: what one core's worth of gateway serves;
* **projected requests/s with a core per worker**: each worker's requests per
  CPU-second of its own, summed (what the workers would serve with a core each and
  enough connections to keep each busy: the client elsewhere, accounted for);
* **measured requests/s**, with the clients pinned to the last core by
  ``os.sched_setaffinity`` (``--pin-client``, the default when there are 2+ cores)
  and the gateway free to use every core.

    python benchmarks/workers_bench.py --seconds 5 --repeats 3 [--runtime trio] [--workers-socket inherit]

``--workers-socket`` sets ``[server] workers_socket`` (default ``auto``: SO_REUSEPORT on
Linux): "requests per worker" then shows how each mode spread the connections.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from mtlscore import pki

_REQUEST = b"GET /score HTTP/1.1\r\nHost: localhost\r\n\r\n"
_TICK = os.sysconf("SC_CLK_TCK")


def _files(d: pathlib.Path, runtime: str, workers: int, socket_mode: str = "auto") -> pathlib.Path:
    now = datetime.now(UTC)
    root = pki.root("CN=Workers Bench Root", now=now)
    client = root.leaf("CN=bench-client,O=Bench")
    server_ca = pki.root("CN=Workers Bench Server CA", now=now)
    server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"])
    for name, data in (("root.pem", root.pem), ("server-ca.pem", server_ca.pem), ("server.pem", server.pem),
                       ("server.key", server.key_pem), ("client.pem", client.chain_pem),
                       ("client.key", client.key_pem)):
        (d / name).write_bytes(data)
    (d / "server.key").chmod(0o600)
    config = d / f"workers-{workers}.toml"
    config.write_text(f"""[trust]
anchors = ["root.pem"]

[revocation]
mode = "off"

[[accounts]]
id = "bench"
match = {{ cn = "bench-client" }}

[server]
listen = "127.0.0.1:0"
certificate = "server.pem"
key = "server.key"
runtime = "{runtime}"
reject_at = "http"
reload_poll_seconds = 0
max_connection_age_seconds = 0
keepalive_timeout_seconds = 120
workers = {workers}
workers_socket = "{socket_mode}"
""")
    return config


# -- the client: one process per connection ---------------------------------------------------


def _client(port: int, d: str, start: float, stop: float, pin: int | None) -> None:
    """Warm up, then count answered requests between ``start`` and ``stop`` (CLOCK_MONOTONIC,
    shared by every process); print {"port": local port, "requests": n, "cpu": seconds}."""
    if pin is not None:
        os.sched_setaffinity(0, {pin})
    ctx = ssl.create_default_context(cafile=f"{d}/server-ca.pem")
    ctx.load_cert_chain(f"{d}/client.pem", f"{d}/client.key")
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    buf = b""

    def one() -> None:
        nonlocal buf
        sock.sendall(_REQUEST)
        while True:
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep:
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= length:
                    assert head.startswith(b"HTTP/1.1 200"), head[:40]
                    buf = rest[length:]
                    return
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the gateway closed the connection")
            buf += data

    while time.monotonic() < start:
        one()
    cpu0 = time.process_time()
    n = 0
    while time.monotonic() < stop:
        one()
        n += 1
    print(json.dumps({"port": sock.getsockname()[1], "requests": n, "cpu": time.process_time() - cpu0}), flush=True)
    sys.stdin.read()  # open until the harness has seen which worker holds this connection
    sock.close()


# -- the server's processes and their CPU ---------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(p) for p in f.read().split()]
    return out


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (proc(5) fields 14, 15)


def _owner(server_port: int, client_ports: list[int], pids: list[int]) -> dict[int, int]:
    """client port -> pid of the process holding the server side of that connection."""
    inode_of: dict[int, int] = {}
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], int(parts[9])
            if int(local.split(":")[1], 16) == server_port:
                inode_of[int(remote.split(":")[1], 16)] = inode
    holder: dict[int, int] = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                holder[int(link[8:-1])] = pid
    return {p: holder.get(inode_of.get(p, -1), -1) for p in client_ports}


@dataclass
class Run:
    workers: int
    seconds: float
    requests: int
    server_cpu: dict[str, float]  # "parent" / "worker <pid>" / "gateway" -> CPU seconds in the window
    split: dict[int, int]  # worker pid -> requests
    client_cpu: float

    @property
    def per_cpu_second(self) -> float:
        return self.requests / sum(self.server_cpu.values())

    @property
    def projected(self) -> float:
        # Each worker's own requests per CPU-second, summed: what the workers would serve
        # with a core each and enough connections to keep every one busy.
        return sum(self.split[int(k.split()[1])] / v for k, v in self.server_cpu.items() if k != "parent" and v > 0)

    @property
    def measured(self) -> float:
        return self.requests / self.seconds


def run_once(d: pathlib.Path, runtime: str, workers: int, connections: int, warmup: float, seconds: float,
             pin: int | None, socket_mode: str = "auto") -> Run:
    config = _files(d, runtime, workers, socket_mode)
    proc = subprocess.Popen([sys.executable, "-m", "mtlscore", "serve", "--quiet", "--config", str(config)],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        assert banner.startswith("mtlscore gateway"), banner
        port = int(banner.split("https://127.0.0.1:")[1].split()[0])
        start = time.monotonic() + warmup + 0.5
        stop = start + seconds
        clients = [
            subprocess.Popen([sys.executable, __file__, "--client", str(port), str(d), repr(start), repr(stop),
                              str(pin if pin is not None else -1)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(connections)
        ]
        workers_pids = _children(proc.pid) if workers > 1 else [proc.pid]
        pids = [proc.pid, *workers_pids] if workers > 1 else [proc.pid]
        time.sleep(max(0.0, start - time.monotonic()))
        before = {p: _cpu(p) for p in pids}
        time.sleep(max(0.0, stop - time.monotonic()))
        after = {p: _cpu(p) for p in pids}
        outs: list[dict[str, float]] = []
        for c in clients:
            assert c.stdout is not None
            outs.append(json.loads(c.stdout.readline()))
        # Every connection is still open: which worker holds each.
        mapping = _owner(port, [int(o["port"]) for o in outs], workers_pids)
        for c in clients:
            assert c.stdin is not None
            c.stdin.close()
            c.wait(timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    cpu = {("parent" if p == proc.pid and workers > 1 else f"worker {p}"): after[p] - before[p] for p in pids}
    split = {p: 0 for p in workers_pids}
    for o in outs:
        owner = mapping[int(o["port"])]
        split[owner] = split.get(owner, 0) + int(o["requests"])
    return Run(workers, seconds, sum(int(o["requests"]) for o in outs), cpu, split,
               sum(o["cpu"] for o in outs))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runtime", choices=("asyncio", "trio"), default="asyncio")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-pin-client", action="store_true")
    p.add_argument("--workers-socket", choices=("auto", "reuseport", "inherit"), default="auto",
                   help="[server] workers_socket of the 2-worker gateway")
    args = p.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    pin = cores[-1] if len(cores) > 1 and not args.no_pin_client else None
    runs: dict[int, list[Run]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for workers in (1, 2):  # interleaved: each pair shares the machine's conditions
                d = pathlib.Path(tmp) / f"w{workers}"
                d.mkdir(exist_ok=True)
                run = run_once(d, args.runtime, workers, args.connections, args.warmup, args.seconds, pin,
                               args.workers_socket)
                runs[workers].append(run)
                split = ", ".join(str(v) for v in run.split.values())
                cpu = ", ".join(f"{k} {v:.2f}" for k, v in run.server_cpu.items())
                print(f"workers={workers}: {run.measured:7.0f} req/s measured, {run.per_cpu_second:7.0f} req per "
                      f"server CPU-s, {run.projected:7.0f} req/s projected; server CPU s: {cpu}; "
                      f"requests per worker: {split}; client CPU {run.client_cpu:.2f} s", flush=True)

    def med(workers: int, what: str) -> float:
        return float(statistics.median(float(getattr(r, what)) for r in runs[workers]))

    print(f"\n{args.runtime}, {args.connections} keep-alive connections, {args.seconds:g} s windows, "
          f"median of {args.repeats}; clients pinned to core {pin} ({len(cores)} cores)")
    print("| metric | workers = 1 | workers = 2 | ratio |")
    print("|---|---|---|---|")
    for what, label in (("projected", "projected req/s, a core per worker"),
                        ("per_cpu_second", "req per server CPU-second"),
                        ("measured", "measured req/s (client on this machine)")):
        one, two = med(1, what), med(2, what)
        print(f"| {label} | {one:,.0f} | {two:,.0f} | {two / one:.2f}× |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _client(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5]),
                None if sys.argv[6] == "-1" else int(sys.argv[6]))
    else:
        main()
