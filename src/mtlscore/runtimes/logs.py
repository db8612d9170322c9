"""The gateway's log lines: one JSON object per line, each with ``ts`` and ``level`` first.

The gateway logs through the ``mtlscore.gateway`` logger, one ``json.dumps``'d
object per record. :class:`JsonLineFormatter` puts an RFC 3339 UTC timestamp
(milliseconds, ``Z``) and the level in front of each, so every line is
self-describing for a log shipper; ``mtlscore serve`` installs it, an embedder
installs it with :func:`json_log_handler`. The schema is in docs/operations.md.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

__all__ = ["JsonLineFormatter", "json_log_handler", "shared_line_bytes"]


class JsonLineFormatter(logging.Formatter):
    """``{"ts": "2026-12-04T15:20:01.123Z", "level": "info", <the record's JSON object>}``.

    The record's message is already a JSON object (the gateway's lines): the two
    fields are spliced in front of it rather than parsed and dumped again, which
    keeps a decision line as cheap as before. Any other message becomes
    ``{"event": "log", "message": ...}``; an exception, a ``traceback`` field.

    ``fields`` follow ``level`` on every line: ``mtlscore serve`` with ``workers > 1``
    gives each worker's lines ``worker`` and ``pid`` (and the parent's, ``pid``), since
    the processes share one stderr.

    ``max_bytes``: no line is longer, its newline included. Processes sharing one stderr
    pipe need it: POSIX makes a write(2) to a pipe atomic only up to PIPE_BUF bytes, and a
    longer line from one worker can be split by another's, leaving two lines no parser
    reads. A client sets some of a line's text (a request target up to
    ``max_header_bytes``, names from its certificate in ``detail``), so it could otherwise
    hide its own decision lines that way. A longer line has its longest strings cut (a
    ``traceback`` keeps its end, anything else its start), each ending in ``...``, and
    their keys listed in ``truncated``.
    """

    def __init__(self, fields: Mapping[str, object] | None = None, *, max_bytes: int | None = None) -> None:
        super().__init__()
        self._fields = "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in (fields or {}).items())
        if max_bytes is not None and max_bytes < _MIN_LINE:
            raise ValueError(f"max_bytes must be at least {_MIN_LINE}")
        self._max_bytes = max_bytes

    def format(self, record: logging.LogRecord) -> str:
        # RFC 3339 §5.6, in UTC: what every log pipeline parses without configuration.
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        ts += f"{int(record.msecs):03d}Z"
        head = f'{{"ts": "{ts}", "level": "{record.levelname.lower()}"{self._fields}'
        message = record.getMessage()
        if not (message.startswith("{") and message.endswith("}")):
            message = json.dumps({"event": "log", "message": message})
        if record.exc_info:
            text = self.formatException(record.exc_info)
            message = message[:-1] + (", " if message != "{}" else "") + f'"traceback": {json.dumps(text)}}}'
        rest = message[1:].strip()
        line = head + ("}" if rest == "}" else ", " + rest)
        if self._max_bytes is not None and (len(line) >= self._max_bytes or not line.isascii()):
            return _fit(line, self._max_bytes - 1)  # the newline is the last byte
        return line


# Kept whole when a line is cut: who wrote it, when, and what happened.
_KEPT = frozenset({"ts", "level", "event", "worker", "pid", "truncated"})
_MIN_LINE = 512  # POSIX's smallest PIPE_BUF; room for the kept fields of any line
_SHORTEST = 16  # a string is not cut below this many characters


def _fit(line: str, limit: int) -> str:
    """``line`` (one JSON object) in at most ``limit`` bytes: its longest strings cut."""
    try:
        doc = json.loads(line)
    except ValueError:  # a record whose message looked like JSON but was not: cut as text
        doc = {"event": "log", "message": line}
    cut: list[str] = []
    for _ in range(64):  # each round shortens one string; a line has few
        text = json.dumps(doc)  # ASCII (\u escapes): a character is a byte
        over = len(text) - limit
        if over <= 0:
            return text
        longest = max(
            (k for k, v in doc.items() if k not in _KEPT and isinstance(v, str) and len(v) > _SHORTEST),
            key=lambda k: len(json.dumps(doc[k])), default=None,
        )
        if longest is None:
            break
        if longest not in cut:
            cut.append(longest)
            doc["truncated"] = cut
            over += len(f'"{longest}", ') + len(', "truncated": []')
        value: str = doc[longest]
        # Characters to keep, in proportion to their encoded size (an escaped one is 2 to 6
        # bytes); when the estimate is still over, the next round cuts again.
        size = len(json.dumps(value))
        keep = min(len(value) - 1, max(_SHORTEST, len(value) * max(size - over - 3, 0) // size))
        doc[longest] = "..." + value[-keep:] if longest == "traceback" else value[:keep] + "..."
    # Still too long (many fields, or long ones that are not strings): what is kept whole, and a mark.
    head = {k: v for k, v in doc.items() if k in _KEPT and k != "truncated" and len(json.dumps(v)) <= 64}
    return json.dumps({**head, "truncated": True, "line_bytes": len(line.encode())})


def json_log_handler(
    stream: TextIO | None = None, fields: Mapping[str, object] | None = None, *, max_bytes: int | None = None
) -> logging.Handler:
    """A handler writing the gateway's JSON lines to ``stream`` (default: stderr), with
    ``fields`` after ``ts`` and ``level`` on every line, each at most ``max_bytes`` long
    (:class:`JsonLineFormatter`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLineFormatter(fields, max_bytes=max_bytes))
    return handler


def shared_line_bytes() -> int:
    """The longest line several processes can write to one pipe without interleaving:
    PIPE_BUF (POSIX write(2); 4,096 on Linux, 512 on macOS)."""
    import select

    return max(_MIN_LINE, getattr(select, "PIPE_BUF", _MIN_LINE))
