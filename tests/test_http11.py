"""The gateway's client-facing h11 connection (mtlscore.gateway.http11): what it writes and
where it ends up are h11's own, for every kind of exchange, without the second check."""

from __future__ import annotations

import h11
import pytest

from mtlscore.gateway.http11 import ServerConnection

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
EXCHANGES: list[tuple[str, bytes, list[tuple[int, list[tuple[str, str]], bytes]]]] = [
    ("keep-alive, length", GET * 2, [(200, [("Content-Length", "2"), ("X-A", "b")], b"ok")] * 2),
    ("HEAD", b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", [(200, [("Content-Length", "9")], b"")]),
    ("204", GET, [(204, [("Content-Length", "0")], b"")]),
    ("HTTP/1.0 client", b"GET / HTTP/1.0\r\n\r\n", [(200, [("Content-Length", "2")], b"ok")]),
    ("client asks to close", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
     [(200, [("Content-Length", "2")], b"ok")]),
    ("answer closes", GET, [(200, [("Content-Length", "2"), ("Connection", "close")], b"ok")]),
    ("no length: chunked", GET, [(200, [("X-A", "b")], b"ok")]),
    ("no length, HTTP/1.0 client", b"GET / HTTP/1.0\r\n\r\n", [(200, [], b"ok")]),
    ("chunked given", GET, [(200, [("Transfer-Encoding", "chunked")], b"ok")]),
    ("length and chunked given", GET, [(200, [("Content-Length", "2"), ("Transfer-Encoding", "chunked")], b"ok")]),
]


def _run(conn: h11.Connection, incoming: bytes,
         answers: list[tuple[int, list[tuple[str, str]], bytes]]) -> list[object]:
    seen: list[object] = []
    conn.receive_data(incoming)
    for status, headers, body in answers:
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            assert event is not h11.NEED_DATA
        out = conn.send(h11.Response(status_code=status, headers=headers))
        out = (out or b"") + (conn.send(h11.Data(data=body)) or b"" if body else b"")
        out += conn.send(h11.EndOfMessage()) or b""
        seen += [out, conn.our_state, conn.their_state]
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            seen.append("next")
    return seen


@pytest.mark.parametrize(("name", "incoming", "answers"), EXCHANGES, ids=[e[0] for e in EXCHANGES])
def test_writes_what_h11_writes(name: str, incoming: bytes,
                                answers: list[tuple[int, list[tuple[str, str]], bytes]]) -> None:
    ours = _run(ServerConnection(max_incomplete_event_size=16384), incoming, answers)
    plain = _run(h11.Connection(h11.SERVER, max_incomplete_event_size=16384), incoming, answers)
    assert ours == plain


def test_h11_still_has_the_hook() -> None:
    # The override is an h11 method of that name; if h11 drops it, ServerConnection would
    # silently be a plain connection again (correct, only slower): say so here.
    assert callable(getattr(h11.Connection, "_clean_up_response_headers_for_sending", None))


def test_a_kept_alive_response_with_a_length_is_not_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    real = h11.Connection._clean_up_response_headers_for_sending

    def spy(self: h11.Connection, response: h11.Response) -> h11.Response:
        out: h11.Response = real(self, response)  # type: ignore[misc]
        built.append(out)
        return out

    monkeypatch.setattr(h11.Connection, "_clean_up_response_headers_for_sending", spy)
    conn = ServerConnection(max_incomplete_event_size=16384)
    _run(conn, GET * 2, [(200, [("Content-Length", "0")], b""), (200, [("X-A", "b")], b"ok")])
    assert len(built) == 1  # only the chunked one went through h11's rebuild
