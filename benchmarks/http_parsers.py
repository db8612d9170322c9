"""What HTTP/1.1 costs the gateway per proxied request in h11, beside a C parser, and
where the two parsers disagree: the data for the question docs/performance.md leaves
to the project ("h11 or a faster HTTP/1.1 reader on the proxied path").

    python benchmarks/http_parsers.py [--requests N]

1. h11's four operations of one proxied keep-alive exchange, as the gateway runs them
   (mtlscore.gateway.http11.ServerConnection towards the client, an h11 client
   connection towards the upstream): parse the client's request, write the upstream
   request, parse the upstream's response, write the response to the client, and start
   both connections' next cycle. Thread CPU time, medians of 5.
2. The same request and response parsed by httptools (llhttp, the parser uvicorn uses
   and Node.js is built on), where it is installed (the ``bench`` extra installs it; it
   is not a dependency of mtlscore).
3. A probe of request heads a smuggling attempt or a sloppy client sends: which parser
   accepts each (and how many messages it read) and which refuses it.

Prints figures; asserts nothing. In-process parsing, not the gateway: read it beside
``nginx_bench.py`` (the whole keep-alive request) and ``instructions.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import h11

from mtlscore.gateway.http11 import ServerConnection

REQUEST = b"GET /api/orders?page=2 HTTP/1.1\r\nHost: api.example\r\nUser-Agent: bench/1\r\nAccept: */*\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
            b"Date: Sat, 05 Dec 2026 12:00:00 GMT\r\n\r\n{\"ok\":true}")

# Request heads, each a known difference between HTTP/1.1 implementations or a classic of
# request smuggling (RFC 9112 §6.1 and §11.2, RFC 9110 §5.5).
PROBES: dict[str, bytes] = {
    "plain GET": b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "Content-Length and Transfer-Encoding": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                                             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "two different Content-Length": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "two equal Content-Length": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "Content-Length: 3, 3": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
    "Content-Length: +3": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
    "Transfer-Encoding: gzip, chunked": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                                         b"0\r\n\r\n"),
    "Transfer-Encoding: chunked, gzip": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc",
    "Transfer-Encoding twice": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "chunk size 0x3": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
    "chunk without its CRLF": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "bare LF line ends": b"GET / HTTP/1.1\nHost: a\n\n",
    "bare CR in a value": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
    "NUL in a value": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    "control byte 0x01 in a value": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
    "DEL in a value": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
    "obs-text (0xff) in a value": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\xffb\r\n\r\n",
    "no Host (HTTP/1.1)": b"GET / HTTP/1.1\r\n\r\n",
    "two Host fields": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "HTTP/2.0 in the request line": b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "lower-case method": b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
    "unregistered method": b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n",
    "leading empty line": b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "whitespace before the first field": b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
    "Upgrade: websocket": b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
}


def _median_us(fn: Callable[[], None], n: int, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        for _ in range(n):
            fn()
        times.append((time.thread_time() - t0) / n * 1e6)
    return statistics.median(times)


def h11_exchange(n: int) -> dict[str, float]:
    """Microseconds per proxied exchange for each of h11's operations in it."""
    server = ServerConnection(max_incomplete_event_size=16384)
    client = h11.Connection(h11.CLIENT)
    parts = {"parse the request": 0.0, "write the upstream request": 0.0, "parse the response": 0.0,
             "write the response": 0.0, "next cycle": 0.0}
    clock = time.thread_time

    def one(record: bool) -> None:
        t0 = clock()
        server.receive_data(REQUEST)
        request = server.next_event()
        server.next_event()  # EndOfMessage
        assert isinstance(request, h11.Request)
        t1 = clock()
        headers = [(name, value) for name, value in request.headers.raw_items()]
        client.send(h11.Request(method=request.method, target=request.target, headers=headers, _parsed=True))
        client.send(h11.EndOfMessage())
        t2 = clock()
        client.receive_data(RESPONSE)
        response = client.next_event()
        body = client.next_event()
        client.next_event()  # EndOfMessage
        assert isinstance(response, h11.Response) and isinstance(body, h11.Data)
        t3 = clock()
        server.send(h11.Response(status_code=response.status_code, headers=list(response.headers.raw_items()),
                                 reason=response.reason, _parsed=True))
        server.send(h11.Data(data=body.data))
        server.send(h11.EndOfMessage())
        t4 = clock()
        server.start_next_cycle()
        client.start_next_cycle()
        server.next_event()  # NEED_DATA, as the gateway's next read asks
        t5 = clock()
        if record:
            for name, (a, b) in zip(parts, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)), strict=True):
                parts[name] += b - a

    for _ in range(n // 10):
        one(False)
    for _ in range(n):
        one(True)
    return {name: total / n * 1e6 for name, total in parts.items()}


class _Collect:
    """httptools' callbacks, keeping what the gateway would need of a message."""

    def __init__(self) -> None:
        self.messages = 0
        self.fields: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.messages += 1


def httptools_parse(httptools: Any, n: int) -> dict[str, float]:
    collect = _Collect()
    requests = httptools.HttpRequestParser(collect)
    responses = httptools.HttpResponseParser(collect)

    def request() -> None:
        collect.fields = []
        requests.feed_data(REQUEST)
        requests.get_method()
        requests.should_keep_alive()

    def response() -> None:
        collect.fields = []
        collect.body = []
        responses.feed_data(RESPONSE)
        responses.get_status_code()

    return {"parse the request": _median_us(request, n), "parse the response": _median_us(response, n)}


def h11_verdict(data: bytes) -> str:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    events = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            events.append(type(event).__name__)
            if isinstance(event, h11.EndOfMessage):
                break
    except h11.RemoteProtocolError as exc:
        return f"refused ({exc})"
    return "accepted: " + ", ".join(events) if "EndOfMessage" in events else "incomplete: " + ", ".join(events)


def httptools_verdict(httptools: Any, data: bytes) -> str:
    collect = _Collect()
    parser = httptools.HttpRequestParser(collect)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        return "accepted, as an upgrade (the caller decides)"
    except httptools.HttpParserError as exc:
        return f"refused ({exc})"
    return f"accepted: {collect.messages} message(s)" if collect.messages else "incomplete"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20_000)
    args = p.parse_args()
    n = args.requests
    try:
        import httptools  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        httptools = None

    runs = [h11_exchange(n) for _ in range(5)]
    h11_parts = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    fast = httptools_parse(httptools, n) if httptools is not None else {}
    print(f"Per proxied exchange, µs of thread CPU (medians of 5 x {n:,}; Python {sys.version.split()[0]}, "
          f"h11 {h11.__version__}" + (f", httptools {httptools.__version__})" if httptools else ")"))
    print(f"{'operation':30s} {'h11':>8s} {'httptools':>10s}")
    for name, us in h11_parts.items():
        other = f"{fast[name]:10.2f}" if name in fast else f"{'-':>10s}"
        print(f"{name:30s} {us:8.2f} {other}")
    print(f"{'all of h11':30s} {sum(h11_parts.values()):8.2f}")
    if httptools is None:
        print("(httptools is not installed: pip install httptools for its column and the probe)")
        return
    print()
    print("Request heads: what each parser does with them")
    differ = 0
    for name, data in PROBES.items():
        a, b = h11_verdict(data), httptools_verdict(httptools, data)
        same = a.split(" ")[0] == b.split(" ")[0].rstrip(",")
        differ += not same
        print(f"{'  ' if same else '≠ '}{name:38s} h11: {a[:60]:62s} httptools: {b[:60]}")
    print(f"{differ} of {len(PROBES)} heads are taken differently (≠).")


if __name__ == "__main__":
    main()
