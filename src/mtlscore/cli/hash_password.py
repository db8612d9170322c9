"""``mtlscore hash-password``: the scrypt hash a trusted proxy's ``password_hash`` stores."""

from __future__ import annotations

import argparse
import getpass
import hmac
import sys

from ..proxy.basic_auth import DEFAULT_SCRYPT_LN, MAX_SCRYPT_LN, MIN_SCRYPT_LN, hash_password
from .common import Command, CommandError, arg

__all__ = ["COMMAND", "run"]


def run(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if not hmac.compare_digest(getpass.getpass("again: ").encode(), password.encode()):
            raise CommandError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("empty password")
    print(hash_password(password, ln=args.ln))
    return 0


COMMAND = Command(
    "hash-password",
    help="print the scrypt hash of a password, for trusted_proxies password_hash",
    description="Read a password (twice from the terminal, or one line from stdin) and print its "
    "scrypt hash as a PHC string ($scrypt$ln=..,r=8,p=1$salt$key) for a trusted proxy's "
    "password_hash. The password itself never goes in the configuration. Exit 0 ok, 2 on a "
    "mismatch or empty password.",
    arguments=(
        arg("--ln", type=int, default=DEFAULT_SCRYPT_LN, choices=range(MIN_SCRYPT_LN, MAX_SCRYPT_LN + 1),
            metavar=f"{MIN_SCRYPT_LN}..{MAX_SCRYPT_LN}", help=f"log2 of scrypt's cost N (default {DEFAULT_SCRYPT_LN})"),
    ),
    run=run,
)
