"""``mtlscore serve --config FILE [--runtime asyncio|trio]``: run the mTLS gateway (docs/reference.md#command-line)."""

from __future__ import annotations

import argparse
import logging
import sys

from ..reasons import ConfigError
from .common import Command, CommandError, arg

__all__ = ["COMMAND", "run"]


def run(args: argparse.Namespace) -> int:
    try:
        return _serve(args)
    except ConfigError as exc:
        # One line naming the file and the key (the ConfigError names the key): the file
        # itself, or the listeners (server.listen / server.admin_listen taken or not of
        # this machine).
        raise CommandError(f"configuration error in {args.config}: {exc}") from None


def _serve(args: argparse.Namespace) -> int:
    from ..runtimes import OnStarted, ServerInfo
    from ..runtimes.state import GatewayState

    if not args.quiet:
        from ..runtimes.logs import json_log_handler

        log = logging.getLogger("mtlscore.gateway")
        log.addHandler(json_log_handler(sys.stderr))
        log.setLevel(logging.INFO)
    state = GatewayState.from_config_file(args.config)
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
    if runtime == "trio":
        try:
            import trio
        except ImportError:
            raise CommandError('the trio runtime needs trio: pip install "mtlscore[trio]"') from None
        from ..runtimes import trio as trio_runtime

        trio.run(lambda: trio_runtime.serve(state, task_status=status))
    else:
        import asyncio

        from ..runtimes import asyncio as asyncio_runtime

        asyncio.run(asyncio_runtime.serve(state, task_status=status))
    return 0


COMMAND = Command(
    "serve",
    help="run the mTLS gateway described by a config file's [server] table",
    description="Terminate mTLS, validate and map client certificates, enforce per-account "
    "credentials, and forward to the upstream (or answer with the identity as JSON). "
    "SIGHUP or a change to the config file reloads; SIGTERM/SIGINT shut down gracefully.",
    arguments=(
        arg("--config", required=True, metavar="FILE", help="configuration file (TOML)"),
        arg("--runtime", choices=("asyncio", "trio"), help="overrides [server] runtime"),
        arg("--quiet", action="store_true", help="do not print one JSON line per decision"),
    ),
    run=run,
)
