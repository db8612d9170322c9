"""``mtlscore serve --config FILE [--runtime asyncio|trio]``: run the mTLS gateway (docs/reference.md#command-line)."""

from __future__ import annotations

import argparse
import logging
import sys

from ..reasons import ConfigError
from .common import Subparsers

__all__ = ["register", "run"]


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "serve",
        help="run the mTLS gateway described by a config file's [server] table",
        description="Terminate mTLS, validate and map client certificates, enforce per-account "
        "credentials, and forward to the upstream (or answer with the identity as JSON). "
        "SIGHUP or a change to the config file reloads; SIGTERM/SIGINT shut down gracefully.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="configuration file (TOML)")
    p.add_argument("--runtime", choices=("asyncio", "trio"), help="overrides [server] runtime")
    p.add_argument("--quiet", action="store_true", help="do not print one JSON line per decision")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtimes import OnStarted, ServerInfo
    from ..runtimes.state import GatewayState

    if not args.quiet:
        from ..runtimes.logs import json_log_handler

        log = logging.getLogger("mtlscore.gateway")
        log.addHandler(json_log_handler(sys.stderr))
        log.setLevel(logging.INFO)
    try:
        state = GatewayState.from_config_file(args.config)
    except ConfigError as exc:
        # One line naming the file and the key (the ConfigError names the key).
        print(f"mtlscore serve: configuration error in {args.config}: {exc}", file=sys.stderr)
        return 2
    server = state.snapshot.gateway.server
    runtime = args.runtime or server.runtime

    def ready(info: ServerInfo) -> None:
        admin = f", metrics on http://{info.admin_address}/metrics" if info.admin_address else ""
        upstream = f"http://{server.upstream.authority}" if server.upstream else "identity JSON"
        if server.auth_service:
            upstream = "auth service (200 with identity headers, or 401/403 with X-Mtls-Reason)"
        print(
            f"mtlscore gateway ({runtime}, {server.mode}, TLS engine "
            f"{server.effective_tls_engine}) on https://{info.address} -> {upstream}{admin}",
            file=sys.stderr,
            flush=True,
        )

    status = OnStarted(ready)
    try:
        if runtime == "trio":
            try:
                import trio
            except ImportError:
                print('mtlscore serve: the trio runtime needs trio: pip install "mtlscore[trio]"', file=sys.stderr)
                return 2
            from ..runtimes import trio as trio_runtime

            trio.run(lambda: trio_runtime.serve(state, task_status=status))
        else:
            import asyncio

            from ..runtimes import asyncio as asyncio_runtime

            asyncio.run(asyncio_runtime.serve(state, task_status=status))
    except ConfigError as exc:
        # The listeners: server.listen / server.admin_listen taken or not of this machine.
        print(f"mtlscore serve: configuration error in {args.config}: {exc}", file=sys.stderr)
        return 2
    return 0

