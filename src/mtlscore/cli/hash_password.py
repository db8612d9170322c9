"""``mtlscore hash-password``: the scrypt hash a trusted proxy's ``password_hash`` stores."""

from __future__ import annotations

import argparse
import getpass
import hmac
import sys

from ..proxy.basic_auth import DEFAULT_SCRYPT_LN, MAX_SCRYPT_LN, MIN_SCRYPT_LN, hash_password
from .common import Subparsers

__all__ = ["register", "run"]


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "hash-password",
        help="print the scrypt hash of a password, for trusted_proxies password_hash",
        description="Read a password (twice from the terminal, or one line from stdin) and print its "
        "scrypt hash as a PHC string ($scrypt$ln=..,r=8,p=1$salt$key) for a trusted proxy's "
        "password_hash. The password itself never goes in the configuration. Exit 0 ok, 2 on a "
        "mismatch or empty password.",
    )
    p.add_argument("--ln", type=int, default=DEFAULT_SCRYPT_LN, choices=range(MIN_SCRYPT_LN, MAX_SCRYPT_LN + 1),
                   metavar=f"{MIN_SCRYPT_LN}..{MAX_SCRYPT_LN}",
                   help=f"log2 of scrypt's cost N (default {DEFAULT_SCRYPT_LN})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if not hmac.compare_digest(getpass.getpass("again: ").encode(), password.encode()):
            print("mtlscore hash-password: the two passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("mtlscore hash-password: empty password", file=sys.stderr)
        return 2
    print(hash_password(password, ln=args.ln))
    return 0
