"""What every command module shares with :mod:`mtlscore.cli.main`: commands as data.

A command module exports one :class:`Command` (its name, help, arguments and ``run``);
:func:`mtlscore.cli.main.build_parser` registers them all in one loop. Arguments that
several commands take with the same meaning (``--json``, ``--password``) are written
once here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypedDict, Unpack

__all__ = [
    "JSON",
    "CommandError",
    "PASSWORD",
    "PKCS12_PASSWORD_ENV",
    "Argument",
    "Command",
    "Group",
    "Options",
    "arg",
]


class CommandError(Exception):
    """Ends a command: ``main`` prints ``mtlscore COMMAND: <message>`` on stderr and exits ``code``.

    2 (the default) is a usage error: an unreadable file, a bad option value; 1 is the
    command's own "no" (a malformed certificate, an unmapped identity).
    """

    def __init__(self, message: str, *, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Options(TypedDict, total=False):
    """The keywords of ``ArgumentParser.add_argument`` the commands use."""

    action: str
    default: object
    type: Callable[[str], object]
    choices: Iterable[object]
    nargs: str
    required: bool
    metavar: str
    help: str


@dataclass(frozen=True, slots=True)
class Argument:
    """One ``add_argument`` call as data: its flags (or positional name) and keywords."""

    flags: tuple[str, ...]
    options: Options

    def add_to(self, parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
        parser.add_argument(*self.flags, **self.options)


def arg(*flags: str, **options: Unpack[Options]) -> Argument:
    """``arg("--json", action="store_true", help=...)``: spelled as ``add_argument`` is."""
    return Argument(flags, options)


@dataclass(frozen=True, slots=True)
class Group:
    """Arguments of which at most one (with ``required``, exactly one) may be given."""

    arguments: tuple[Argument, ...]
    required: bool = False

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_mutually_exclusive_group(required=self.required)
        for argument in self.arguments:
            argument.add_to(group)


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: ``mtlscore NAME``, its ``--help`` texts, its arguments, what runs it.

    ``run`` returns the exit code (0 ok or accepted, 1 rejected, 2 usage error).
    """

    name: str
    help: str
    description: str
    arguments: tuple[Argument | Group, ...]
    run: Callable[[argparse.Namespace], int]

    def register(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        parser = sub.add_parser(self.name, help=self.help, description=self.description)
        for argument in self.arguments:
            argument.add_to(parser)
        parser.set_defaults(func=self.run)


PKCS12_PASSWORD_ENV = "MTLSCORE_PKCS12_PASSWORD"  # noqa: S105 - the variable's name, not a password

JSON = arg("--json", action="store_true", help="print one JSON object")
PASSWORD = arg(
    "--password", metavar="PASSWORD",
    help=f"password of a PKCS#12 (.p12/.pfx) file (default: ${PKCS12_PASSWORD_ENV}, else none)",
)
