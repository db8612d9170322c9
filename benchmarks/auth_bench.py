"""Auth-service mode (``[server] mode = "auth"``): decisions per second over one kept-alive
connection, against the same gateway answering its identity JSON in the same run.

- ``auth``: an edge's subrequests, the client certificate in RFC 9440 ``Client-Cert`` /
  ``Client-Cert-Chain`` from a trusted proxy (127.0.0.1/32); after the first request the
  verdict comes from the verdict cache, so this is header parse + cache + identity headers.
- ``identity``: the same client certificate in the TLS handshake (decided once per
  connection), each request answered with the identity JSON.

One connection each, requests one after another (like one nginx keepalive connection),
interleaved per repeat. ``python benchmarks/auth_bench.py [--requests N] [--repeats R]``.
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--runtime", choices=("asyncio", "trio"), default="asyncio")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mtlscore-auth-bench-") as tmp:
        d = pathlib.Path(tmp)
        auth_cfg, ident_cfg = _configs(d, args.runtime)
        auth = Server("auth", _gateway(auth_cfg, args.runtime))
        ident = Server("identity", _gateway(ident_cfg, args.runtime))
        try:
            chain = load_certificates((d / "client.pem").read_bytes())
            forwarded = [("Client-Cert", emit_client_cert(chain[0])),
                         ("Client-Cert-Chain", emit_client_cert_chain(chain[1:]))]
            edge = ssl.create_default_context(cafile=str(d / "server-ca.pem"))  # the edge: no client cert
            client = _client_context(d)
            rates: dict[str, list[float]] = {"auth": [], "identity": []}
            for _ in range(args.repeats):
                rates["auth"].append(args.requests / _keepalive(auth.port, edge, forwarded, args.requests))
                rates["identity"].append(args.requests / _keepalive(ident.port, client, [], args.requests))
        finally:
            auth.stop()
            ident.stop()
    a, i = statistics.median(rates["auth"]), statistics.median(rates["identity"])
    print(f"{args.runtime}: auth mode {a:,.0f} decisions/s (cached verdicts, one keep-alive connection); "
          f"identity JSON {i:,.0f} requests/s; auth = {a / i:.2f}x identity "
          f"(medians of {args.repeats} x {args.requests})")


if __name__ == "__main__":
    main()
