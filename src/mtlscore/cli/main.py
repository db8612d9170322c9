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

_COMMANDS = ("check", "thumbprint", "identity", "serve", "demo", "certs", "preview", "hash-password")


def version_text() -> str:
    """``mtlscore X (cryptography Y, OpenSSL Z; Python ssl: OpenSSL W)``: what a bug report needs.

    Two OpenSSL builds can be in one process: the one inside ``cryptography``'s wheel
    (certificate parsing and signatures) and the one Python's ``ssl`` links (the
    gateway's TLS handshakes); they often differ, so both are printed.
    """
    import ssl

    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    from .. import __version__

    return (
        f"mtlscore {__version__} (cryptography {cryptography.__version__}, "
        f"{backend.openssl_version_text()}; Python ssl: {ssl.OPENSSL_VERSION})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtlscore",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the version line is not re-wrapped
        description="Explain, inspect and serve mTLS client-certificate decisions.",
    )
    parser.add_argument(
        "-V",
        "--version",
        action="version",
        version=version_text(),
        help="print the mtlscore, cryptography and OpenSSL versions and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"mtlscore.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mtlscore.cli.{name.replace('-', '_')}":
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
