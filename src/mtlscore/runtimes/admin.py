"""The admin listener (plain HTTP on ``[server] admin_listen``): ``/metrics`` and ``/healthz``
and the other read-only views of the :class:`~mtlscore.runtimes.state.GatewayState`.

Written against the driver's ``Stream`` Protocol, like the connection loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Protocol

import h11

from ..gateway.metrics import Gauge
from .driver import Stream
from .state import GatewayState

__all__ = ["Workers", "serve_admin"]


class Workers(Protocol):
    """The worker processes the admin listener of their parent reports on (``[server] workers > 1``)."""

    def health(self) -> tuple[int, str]:
        """``/healthz``: (status, text)."""

    def gauges(self) -> tuple[Gauge, ...]:
        """Gauges about the workers, computed at scrape time."""


async def serve_admin(
    stream: Stream, state: GatewayState, clock: Callable[[], float] = time.monotonic, workers: Workers | None = None
) -> None:
    """Answer plain-HTTP requests for ``/metrics`` (Prometheus text), ``/certs`` (the expiry
    report as JSON, mtlscore.gateway.radar) and ``/healthz`` (with ``workers``: what
    :meth:`Workers.health` says, and their gauges in ``/metrics``).

    The gateway's own deadlines apply: ``keepalive_timeout`` for a request's first
    byte, then ``header_timeout`` for the whole request (a trickled head is cut).
    """
    server = state.snapshot.gateway.server
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=server.max_header_bytes)
    deadline = clock() + server.keepalive_timeout
    started = False  # this request's first byte has arrived
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                left = deadline - clock()
                data = await stream.recv(65536, left) if left > 0 else None
                if not data:
                    return
                if not started:
                    started, deadline = True, clock() + server.header_timeout
                conn.receive_data(data)
                continue
            if not isinstance(event, h11.Request):
                return
            path, _, query = event.target.partition(b"?")
            if path == b"/metrics":
                accept = b", ".join(v for k, v in event.headers if k == b"accept").decode("latin-1")
                ctype, body = state.render_metrics(accept, workers.gauges() if workers is not None else ())
                status = 200
            elif path == b"/certs":
                # The expiry report with the presented chains (`mtlscore preview` replays them);
                # ?chains=0 leaves them out (`mtlscore certs` prints a table without them).
                doc = state.certificates().to_json(chains=b"chains=0" not in query.split(b"&"))
                status, ctype, body = 200, "application/json", json.dumps(doc).encode()
            elif path == b"/healthz":
                status, text = workers.health() if workers is not None else (200, "ok")
                ctype, body = "text/plain", f"{text}\n".encode()
            else:
                status, ctype, body = 404, "text/plain", b"not found\n"
            headers = [("content-type", ctype), ("content-length", str(len(body)))]
            out = conn.send(h11.Response(status_code=status, headers=headers))
            out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
            await stream.send(out, 10.0)
            while conn.their_state is h11.SEND_BODY and conn.next_event() not in (h11.NEED_DATA,):
                pass
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
                started = bool(conn.trailing_data[0])
                deadline = clock() + (server.header_timeout if started else server.keepalive_timeout)
            else:
                return
    except (h11.ProtocolError, OSError):
        return
    finally:
        await stream.aclose()
