"""Shared by the gateway's integration tests: the gateway on the backend under test, and
a loopback HTTP server for the files it fetches (CRLs, JWK Sets)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import AsyncIterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from mtlscore.runtimes import ServerInfo
from mtlscore.runtimes.state import GatewayState

# anyio's backend for the asyncio runtime on uvloop (the default event_loop where it is installed).
UVLOOP = ("asyncio", {"use_uvloop": True})
Backend = str | tuple[str, dict[str, Any]]


def backend_name(backend: Backend) -> str:
    """"asyncio", "trio" or "uvloop": for file names and messages."""
    return "uvloop" if backend == UVLOOP else str(backend if isinstance(backend, str) else backend[0])


@contextlib.asynccontextmanager
async def gateway(config: Path, backend: Backend, **state_kw: Any) -> AsyncIterator[ServerInfo]:
    """``mtlscore serve`` of ``config`` on ``backend`` (anyio's: "asyncio", "trio", or
    ``UVLOOP``) in this event loop, without signal handlers; cancelled when the block ends."""
    from mtlscore.runtimes import asyncio as asyncio_runtime
    from mtlscore.runtimes import trio as trio_runtime

    runtime = trio_runtime if backend == "trio" else asyncio_runtime
    state = GatewayState.from_config_file(config, **state_kw)
    async with anyio.create_task_group() as tg:
        info = await tg.start(partial(runtime.serve, state, handle_signals=False))
        yield info
        tg.cancel_scope.cancel()


class FileServer:
    """Serves ``files[path]`` on loopback with ``headers`` on every answer; counts requests
    per path in ``hits``."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []
        outer, extra = self, dict(headers or {})

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.hits.append(self.path)
                body = outer.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body or b"")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
