"""h11 as the gateway drives it: the client-facing connection without a second check of
each response it sends.

h11's ``Connection.send(Response)`` runs the response through
``_clean_up_response_headers_for_sending``, which adds the framing and
``Connection: close`` headers the connection needs and then builds the event again
from its fields — checking every header name and value against RFC 9110's grammar a
second time, whatever it changed. The gateway's responses were checked when they were
made: its own answers when built (the auth-mode head once per verdict, kept in the
forwarded cache), a relayed response by h11's parse of the upstream's bytes (its
fields kept as parsed, ``_parsed=True``). In auth mode that second pass is a regular
expression over the certificate headers of every answer (kilobytes of base64).

:class:`ServerConnection` skips the rebuild only when h11's own cleanup would change
nothing: the response carries ``Content-Length`` and no ``Transfer-Encoding`` (so its
framing is a length whatever the request method), and the connection stays alive (no
``Connection: close`` to add). Then the cleaned response *is* the response, and h11
writes it as it would have. Every other response goes through h11's cleanup as before.
``tests/test_http11.py`` checks the bytes and states against a plain ``h11.Connection``.
"""

from __future__ import annotations

import h11

__all__ = ["ServerConnection"]


class ServerConnection(h11.Connection):
    """``h11.Connection(h11.SERVER)`` that does not check a response twice (see the module)."""

    def __init__(self, *, max_incomplete_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)

    def _clean_up_response_headers_for_sending(self, response: h11.Response) -> h11.Response:
        state = getattr(self, "_cstate", None)
        if type(response) is h11.Response and state is not None and state.keep_alive is True:
            names = {name.lower() for name, _ in response.headers.raw_items()}
            if b"content-length" in names and b"transfer-encoding" not in names:
                # h11 would build an equal Response (same fields, nothing added): keep this one.
                return response
        cleaned: h11.Response = super()._clean_up_response_headers_for_sending(response)
        return cleaned
