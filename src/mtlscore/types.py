"""Types every layer shares: JSON values, and ASGI's scopes and events.

JSON reaches mtlscore from outside (JWKs and JWK Sets, token claims, client
metadata; TOML tables hold the same kinds of values, plus dates): a function that
takes it declares ``Mapping[str, object]`` and narrows each member with
``isinstance`` before use, since the sender controls every member. What mtlscore
builds to be serialised (JWKs, ``to_dict()``, log lines) is a :data:`JSONObject`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import TypeAlias

__all__ = ["ASGIApp", "JSONObject", "JSONValue", "Message", "Receive", "Scope", "Send"]

# RFC 8259 §3: a JSON value. Recursive: an array or object holds JSON values. Written with the
# read-only (covariant) Sequence and Mapping so that a list[str] or a dict[str, list[str]] is one.
JSONValue: TypeAlias = "bool | int | float | str | Sequence[JSONValue] | Mapping[str, JSONValue] | None"
# A JSON object being built (members may be added): a JWK, a to_dict(), a log line.
JSONObject: TypeAlias = "dict[str, JSONValue]"

# ASGI 3 (asgiref's specification): a scope or an event is a dict whose members depend on its
# "type". The server fills it; the middleware and the server hooks read the members they need
# and check their types (object, not Any).
Scope: TypeAlias = "MutableMapping[str, object]"
Message: TypeAlias = "MutableMapping[str, object]"
Receive: TypeAlias = "Callable[[], Awaitable[Message]]"
Send: TypeAlias = "Callable[[Message], Awaitable[None]]"
ASGIApp: TypeAlias = "Callable[[Scope, Receive, Send], Awaitable[None]]"
