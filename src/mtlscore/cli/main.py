"""The ``mtlscore`` command: check, thumbprint, identity, serve, demo, certs, preview.

Each subcommand lives in its own ``mtlscore.cli.<name>`` module exporting its ``COMMAND``
(name, help, arguments as data, ``run``); this file registers them in one loop, and turns a missing
optional dependency into one line naming the extra to install.
Exit codes: 0 accepted/ok, 1 rejected, 2 usage error (or a missing extra).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..reasons import ConfigError
from . import certs, check, demo, hash_password, identity, preview, serve, thumbprint
from .common import CommandError

__all__ = ["main"]

# In the order ``mtlscore --help`` lists them. Plain imports: a command module that cannot be
# imported is a broken install and fails loudly, never a command that silently disappears.
COMMANDS = tuple(module.COMMAND for module in (check, thumbprint, identity, serve, demo, certs, preview, hash_password))

# Optional packages a command imports only when it runs, and the extra that brings each
# (pyproject.toml [project.optional-dependencies]).
EXTRAS = {
    "joserfc": "jwt",
    "trio": "trio",
    "OpenSSL": "gateway",
    "uvicorn": "asgi",
    "starlette": "asgi",
    "hypercorn": "asgi",
    "authlib": "authlib",
}


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
    for command in COMMANDS:
        command.register(sub)
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
    except CommandError as exc:
        print(f"mtlscore {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"mtlscore {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in EXTRAS:
            raise  # not an optional dependency: a bug or a broken install, keep the traceback
        print(f"mtlscore {args.command}: needs {missing}, which is not installed: "
              f'pip install "mtlscore[{EXTRAS[missing]}]"', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
