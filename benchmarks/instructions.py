"""Instructions the gateway executes per unit of work, counted by valgrind (callgrind).

    python benchmarks/instructions.py [--modes keepalive,new,auth] [--runtimes asyncio,trio]
                                      [--units N] [--compare CHECKOUT]

Why: CPU seconds on this kind of machine move by up to 25 % between runs of the same
build, so a change worth 1-3 % of a request cannot be told apart from noise by timing,
however interleaved. An instruction count can: callgrind counts every instruction the
server process executes (the interpreter, OpenSSL, libc; not the kernel), and the count
for the same build, inputs and hash seed comes back within ~0.3 % whatever else the
machine is doing. It is not time — a cache miss or a system call costs no instructions
here — so read it beside ``nginx_bench.py`` (time, against nginx), never instead of it.

The server is ``mtlscore serve`` as ``nginx_bench.py`` starts it (RSA-2048 PKI, one
account, revocation off, the same tiny upstream in its own process), run under
``valgrind --tool=callgrind --instr-atstart=no``. After a warm-up (connections and
requests whose one-time costs — imports, caches, first verdict — are not the figure),
counting is switched on with ``callgrind_control -i on``, the units run, counting is
switched off and dumped. Modes:

* ``keepalive``: ``GET /`` requests one after another on one connection, proxied to the
  upstream (the unit of ``nginx_bench.py``'s keep-alive figure);
* ``new``: a new connection (full TLS 1.3 handshake with the client certificate, one
  ``GET`` with ``Connection: close``), as ``nginx_bench.py``'s new-connection figure;
* ``auth``: auth-service mode (``mode = "auth"``), the certificate in RFC 9440
  ``Client-Cert``/``Client-Cert-Chain`` from a trusted proxy, a cached verdict, over one
  keep-alive connection (``auth_bench.py``'s unit).

``--compare CHECKOUT``: the same counts for another checkout's ``src/`` (e.g. one made by
``git worktree add /tmp/base HEAD~1``), and the change in per cent. PYTHONHASHSEED is
fixed so both see the same dict and set orders. Needs valgrind (Debian: ``valgrind``).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nginx_bench as nb

MODES = ("keepalive", "new", "auth")
WARM = {"keepalive": 200, "new": 20, "auth": 200}
UNITS = {"keepalive": 2000, "new": 200, "auth": 2000}
STARTUP = 600.0  # seconds: the interpreter starts ~30x slower under valgrind


def _auth_request(headers: list[tuple[str, str]]) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return f"GET /_mtlscore HTTP/1.1\r\nHost: localhost\r\n{lines}\r\n".encode("latin-1")


def _run_units(mode: str, port: int, d: pathlib.Path, ctx: ssl.SSLContext, n: int) -> None:
    if mode == "new":
        for _ in range(n):
            nb.new_connection(port, ctx)
        return
    if mode == "keepalive":
        nb.keepalive(port, ctx, n, lambda: 0.0)
        return
    from mtlscore.proxy.headers import emit_client_cert, emit_client_cert_chain
    from mtlscore.x509.cert import load_certificates

    chain = load_certificates((d / "client.pem").read_bytes())
    request = _auth_request([("Client-Cert", emit_client_cert(chain[0])),
                             ("Client-Cert-Chain", emit_client_cert_chain(chain[1:]))])
    edge = ssl.create_default_context(cafile=str(d / "server-ca.pem"))  # the edge presents no certificate
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock, \
            edge.wrap_socket(sock, server_hostname="localhost") as tls:
        buf = bytearray()
        for _ in range(n):
            tls.sendall(request)
            if (status := nb._read_response(tls, buf)) != 200:
                raise RuntimeError(f"auth mode answered {status}")


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120)


def count(mode: str, runtime: str, units: int, source: str | None, d: pathlib.Path, upstream: int,
          extra: str = "") -> int:
    """Instructions the server process executed for ``units`` units of ``mode``."""
    out = d / f"cg-{mode}-{runtime}-{'compare' if source else 'this'}"
    wrap = ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p")
    server = nb.start_mtlscore(d, upstream, runtime, source=source, label=f"-{mode}{'-compare' if source else ''}",
                               mode="auth" if mode == "auth" else "reject_invalid", wrap=wrap, deadline=STARTUP,
                               extra=('trusted_proxies = ["127.0.0.1/32"]\n' if mode == "auth" else "") + extra)
    try:
        ctx = nb.client_context(d)
        _run_units(mode, server.port, d, ctx, WARM[mode])
        pid = str(server.proc.pid)  # valgrind runs the interpreter in its own process
        _control("-i", "on", pid)
        _run_units(mode, server.port, d, ctx, units)
        _control("-i", "off", pid)
        _control("-d", pid)
    finally:
        nb.stop(server.proc)
    dumps = sorted(d.glob(f"{out.name}.{server.proc.pid}.*"))
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for {out.name}")
    for line in dumps[0].read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals line in {dumps[0]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--runtimes", default="asyncio,trio")
    p.add_argument("--units", type=int, default=0, help="units per count (default: 2000 requests, 200 connections)")
    p.add_argument("--compare", help="another checkout: its src/ is counted too")
    p.add_argument("--extra", default="", help="extra [server] lines for mtlscore (TOML), as nginx_bench.py's")
    args = p.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if unknown := [m for m in modes if m not in MODES]:
        p.error(f"--modes: unknown {unknown}; choose from {', '.join(MODES)}")
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"instructions.py: {tool} is not installed (Debian: apt-get install valgrind)")
    source = None
    if args.compare:
        source = str(pathlib.Path(args.compare).resolve() / "src")
        if not (pathlib.Path(source) / "mtlscore").is_dir():
            p.error(f"--compare {args.compare}: no src/mtlscore there")
    os.environ["PYTHONHASHSEED"] = "0"  # the same dict and set orders in every count
    with tempfile.TemporaryDirectory(prefix="mtlscore-instructions-") as tmp:
        d = pathlib.Path(tmp)
        nb.write_pki(d, "rsa")
        upstream = subprocess.Popen([sys.executable, __file__.replace("instructions.py", "nginx_bench.py"),
                                     "--upstream"], stdout=subprocess.PIPE)
        try:
            assert upstream.stdout is not None
            port = int(upstream.stdout.readline())
            print(f"{'mode':10s} {'runtime':8s} {'instructions per unit':>22s}"
                  + (f" {'compare':>14s} {'change':>8s}" if source else ""))
            for mode in modes:
                n = args.units or UNITS[mode]
                for runtime in [r for r in args.runtimes.split(",") if r]:
                    t0 = time.monotonic()
                    this = count(mode, runtime, n, None, d, port, args.extra) / n
                    line = f"{mode:10s} {runtime:8s} {this:22,.0f}"
                    if source:
                        other = count(mode, runtime, n, source, d, port, args.extra) / n
                        line += f" {other:14,.0f} {100 * (this - other) / other:+7.2f}%"
                    print(f"{line}   ({n} units, {time.monotonic() - t0:.0f} s)", flush=True)
        finally:
            nb.stop(upstream)


if __name__ == "__main__":
    main()
