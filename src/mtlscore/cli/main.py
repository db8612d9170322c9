"""The ``mtlscore`` command: check, thumbprint, identity, serve, demo, certs, preview.

Each subcommand lives in its own ``mtlscore.cli.<name>`` module exposing
``register(subparsers)``; this file only assembles them.
Exit codes: 0 accepted/ok, 1 rejected, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

_COMMANDS = ("check", "thumbprint", "identity", "serve", "demo", "certs", "preview")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtlscore",
        description="Explain, inspect and serve mTLS client-certificate decisions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"mtlscore.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mtlscore.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
