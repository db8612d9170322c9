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

__all__ = ["JsonLineFormatter", "json_log_handler"]


class JsonLineFormatter(logging.Formatter):
    """``{"ts": "2026-12-04T15:20:01.123Z", "level": "info", <the record's JSON object>}``.

    The record's message is already a JSON object (the gateway's lines): the two
    fields are spliced in front of it rather than parsed and dumped again, which
    keeps a decision line as cheap as before. Any other message becomes
    ``{"event": "log", "message": ...}``; an exception, a ``traceback`` field.

    ``fields`` follow ``level`` on every line: ``mtlscore serve`` with ``workers > 1``
    gives each worker's lines ``worker`` and ``pid`` (and the parent's, ``pid``), since
    the processes share one stderr.
    """

    def __init__(self, fields: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self._fields = "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in (fields or {}).items())

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
        return head + ("}" if rest == "}" else ", " + rest)


def json_log_handler(stream: TextIO | None = None, fields: Mapping[str, object] | None = None) -> logging.Handler:
    """A handler writing the gateway's JSON lines to ``stream`` (default: stderr), with
    ``fields`` after ``ts`` and ``level`` on every line."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLineFormatter(fields))
    return handler
