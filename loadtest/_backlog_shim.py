"""``python loadtest/_backlog_shim.py BACKLOG serve --config FILE``: ``mtlscore`` with a larger listen backlog.

An experiment for ``loadtest/run.py --backlog N``: asyncio.start_server's default
backlog is 100, so a burst of 1,000 connects overflows the accept queue and
clients wait for TCP retransmits. This runs the unchanged gateway with another
default, to measure the difference.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from mtlscore.cli import main

_original = asyncio.start_server


async def _start_server(*args: Any, **kwargs: Any) -> asyncio.Server:
    kwargs.setdefault("backlog", int(sys.argv[1]))
    return await _original(*args, **kwargs)


if __name__ == "__main__":
    asyncio.start_server = _start_server
    sys.exit(main(sys.argv[2:]))
