"""What every command module shares with :mod:`mtlscore.cli.main`."""

from __future__ import annotations

import argparse
from typing import TypeAlias

__all__ = ["Subparsers"]

# What each command's ``register(sub)`` receives: ``parser.add_subparsers()``.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
