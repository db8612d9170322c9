"""Request-head checks (mtlscore.gateway.request_head): RFC 9112 §6.1 framing, RFC 9112 §3.2
target forms and RFC 3986 §5.2.4 dot-segment removal. The session-level behaviour
(400s, the upstream prefix) is in test_session.py."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtlscore.gateway.request_head import (
    INVALID_FRAMING,
    INVALID_TARGET,
    Refused,
    Target,
    _checked_target,
    framing_problem,
    remove_dot_segments,
    request_target,
)


@pytest.mark.parametrize(
    ("path", "want"),
    [
        # RFC 3986 §5.2.4's own examples, and §5.4.1's absolute-path ones.
        (b"/a/b/c/./../../g", b"/a/g"),
        (b"/b/c/./g", b"/b/c/g"),
        (b"/b/c/.", b"/b/c/"),
        (b"/b/c/./", b"/b/c/"),
        (b"/b/c/..", b"/b/"),
        (b"/b/c/../", b"/b/"),
        (b"/b/c/../g", b"/b/g"),
        (b"/b/c/../..", b"/"),
        (b"/b/c/../../g", b"/g"),
        (b"/b/c/g.", b"/b/c/g."),
        (b"/b/c/.g", b"/b/c/.g"),
        (b"/b/c/g..", b"/b/c/g.."),
        (b"/b/c/..g", b"/b/c/..g"),
        (b"/b/c/./../g", b"/b/g"),
        (b"/b/c/g/.", b"/b/c/g/"),
        (b"/a//../b", b"/a/b"),
        (b"/a/%2E/b", b"/a/b"),
        # Where the RFC clamps at the root ("/../g" is "/g"), the gateway refuses.
        (b"/../g", None),
        (b"/b/c/../../../g", None),
        (b"/%2e%2e", None),
    ],
)
def test_remove_dot_segments(path: bytes, want: bytes | None) -> None:
    assert remove_dot_segments(path) == want


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "%2e", "%2E%2e", "", "c.d"]), max_size=8))
def test_normalised_paths_have_no_dot_segments_and_are_stable(segments: list[str]) -> None:
    path = ("/" + "/".join(segments)).encode()
    out = remove_dot_segments(path)
    if out is None:
        return
    assert out.startswith(b"/")
    inner = out[1:].split(b"/")
    assert not any(s.lower().replace(b"%2e", b".") in (b".", b"..") for s in inner)
    assert remove_dot_segments(out) == out


def _request(headers: list[tuple[str, str]], version: str = "1.1") -> h11.Request:
    return h11.Request(method="POST", target="/", headers=[("Host", "x"), *headers], http_version=version)


def test_framing() -> None:
    assert framing_problem(_request([("Content-Length", "3")])) is None
    assert framing_problem(_request([("Transfer-Encoding", "chunked")])) is None
    both = framing_problem(_request([("Content-Length", "3"), ("Transfer-Encoding", "chunked")]))
    assert isinstance(both, Refused) and both.reason == INVALID_FRAMING and "§6.1" in both.detail
    old = framing_problem(_request([("Transfer-Encoding", "chunked")], version="1.0"))
    assert isinstance(old, Refused) and "HTTP/1.0" in old.detail


@given(st.lists(st.sampled_from([b"a", b"/", b"?", b"=", b"%", b"%2e", b"%2F", b"\\", b";", b".", b"..", b"#", b"~"]),
                max_size=12))
def test_the_plain_target_shortcut_agrees_with_every_check(parts: list[bytes]) -> None:
    # request_target answers most targets from one regex; whatever it answers must be what
    # the full walk of checks answers for the same target.
    forms = frozenset({"origin"})
    for target in (b"/" + b"".join(parts), b"/a/" + b"".join(parts)):
        assert request_target(b"GET", target, forms) == _checked_target(b"GET", target, forms), target


def test_target_forms() -> None:
    origin = frozenset({"origin"})
    every = frozenset({"origin", "absolute", "asterisk"})
    assert request_target(b"GET", b"/a?b", origin) == Target(b"/a?b")
    assert request_target(b"GET", b"http://h:1", every) == Target(b"/", b"h:1")
    assert request_target(b"GET", b"https://h?q", every) == Target(b"/?q", b"h")
    assert request_target(b"GET", b"http://[::1]:8/x", every) == Target(b"/x", b"[::1]:8")
    assert request_target(b"OPTIONS", b"*", every) == Target(b"*")
    for method, target, forms in (
        (b"OPTIONS", b"*", origin),
        (b"GET", b"*", every),
        (b"GET", b"http://h/x", origin),
        (b"GET", b"http://u:p@h/x", every),
        (b"GET", b"http:///x", every),
        (b"GET", b"file://h/x", every),
        (b"GET", b"h:443", every),
        (b"CONNECT", b"h:443", every),
        (b"GET", b"/a?b#c", origin),
    ):
        got = request_target(method, target, forms)
        assert isinstance(got, Refused) and got.reason == INVALID_TARGET, (method, target)
