"""Checks on a client's request head before the gateway acts on it: the message
framing (RFC 9112 §6) and the request target (RFC 9112 §3.2, RFC 3986 §5.2.4).

h11 parses; these decide what the gateway is willing to forward. A head that
two HTTP implementations could read differently (request smuggling, a path an
upstream would resolve above its prefix) is refused with a 400 rather than
repaired by guessing. Pure functions over h11's parsed request.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import h11

__all__ = ["INVALID_FRAMING", "INVALID_TARGET", "Refused", "Target", "framing_problem", "request_target"]

# The session's local error reasons for these 400s (as PROTOCOL_ERROR is h11's).
INVALID_FRAMING = "invalid_framing"
INVALID_TARGET = "invalid_target"

# RFC 3986 §3.1 scheme, §3.2 authority (no "/", "?", "#"), then the rest.
_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)", re.DOTALL)
# RFC 3986 §3.2.2 host (IP-literal or reg-name, percent-encoding not allowed here) and §3.2.3 port.
_AUTHORITY = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_~!$&'()*+,;=]+)(:[0-9]{0,5})?")
_PCT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# Percent-encoded bytes refused in a path: "/" (%2F) and "\" (%5C) would be separators
# to some upstreams and data to others; NUL (%00) ends strings in C-based ones.
_ENCODED_REFUSED = re.compile(rb"%(2[Ff]|5[Cc]|00)")
# An origin-form target none of request_target's checks can refuse or change (see there).
_PLAIN = re.compile(rb"[^%\\;.#]*")


@dataclass(frozen=True, slots=True)
class Target:
    """What to forward: ``path`` is the normalised origin-form (path and query) or
    ``b"*"``; ``host`` the authority of an absolute-form target (it replaces Host)."""

    path: bytes
    host: bytes | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """The head is refused with 400: ``reason`` (``INVALID_FRAMING``/``INVALID_TARGET``) and why."""

    reason: str
    detail: str


def framing_problem(request: h11.Request, fields: Sequence[tuple[bytes, bytes]] | None = None) -> Refused | None:
    """Why the request's body framing is ambiguous, or None.

    h11 already refuses conflicting Content-Length values, a Transfer-Encoding other
    than ``chunked`` and Transfer-Encoding sent twice; it merges identical
    Content-Length copies into one (RFC 9110 §8.6 allows that) and unfolds obs-fold
    lines into the previous value (RFC 9112 §5.2). What it lets through is refused here.
    ``fields``: the request's fields as (lower-case name, value), when the caller has them.
    """
    names = [k for k, _ in (request.headers if fields is None else fields)]
    if b"transfer-encoding" not in names:
        return None
    if b"content-length" in names:
        # RFC 9112 §6.1: a sender MUST NOT send Content-Length with Transfer-Encoding;
        # such a message "might indicate an attempt to perform request smuggling" and a
        # server MAY reject it. Two readers of it disagree on where the body ends.
        return Refused(
            INVALID_FRAMING,
            "Content-Length together with Transfer-Encoding (RFC 9112 §6.1); send only one",
        )
    if request.http_version == b"1.0":
        # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
        return Refused(INVALID_FRAMING, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)")
    return None


def request_target(method: bytes, target: bytes, forms: Collection[str]) -> Target | Refused:
    """The target to forward, normalised, or why it is refused.

    ``forms``: the RFC 9112 §3.2 forms accepted besides origin-form (``"absolute"``,
    ``"asterisk"``). Dot-segments are resolved (RFC 3986 §5.2.4) with ``%2E`` read as
    ``.``; a path that would climb above ``/`` (and so above the upstream's prefix) is
    refused, as is ``%2F``, ``%5C``, ``%00``, a backslash or a bad ``%`` escape in
    the path. The query is passed on as it came.
    """
    if method == b"CONNECT":
        return Refused(INVALID_TARGET, "CONNECT (authority-form, RFC 9112 §3.2.3): the gateway is not a tunnel")
    if target.startswith(b"/") and _PLAIN.fullmatch(target):
        # None of the checks (_checked_target) can refuse or change an origin-form target
        # without '%', '\\', ';', '.' or '#': no escapes, no dot-segments, no fragment.
        # Most targets are such: one regex, not the whole walk.
        return Target(target)
    return _checked_target(method, target, forms)


def _checked_target(method: bytes, target: bytes, forms: Collection[str]) -> Target | Refused:
    """request_target's checks, all of them (CONNECT aside)."""
    if target == b"*":
        # RFC 9112 §3.2.4: asterisk-form is only for a server-wide OPTIONS.
        if method == b"OPTIONS" and "asterisk" in forms:
            return Target(b"*")
        return Refused(INVALID_TARGET, "asterisk-form '*' is not accepted here (request_target_forms)")
    host: bytes | None = None
    if not target.startswith(b"/"):
        m = _ABSOLUTE.fullmatch(target)
        if m is None:
            return Refused(INVALID_TARGET, "the target must start with '/' (origin-form, RFC 9112 §3.2.1)")
        if "absolute" not in forms:
            return Refused(INVALID_TARGET, "absolute-form targets are not accepted (request_target_forms)")
        scheme, host, rest = m.group(1).lower(), m.group(2), m.group(3)
        if scheme not in (b"http", b"https"):
            return Refused(INVALID_TARGET, f"scheme {scheme.decode('latin-1')!r} is not http or https")
        # RFC 9110 §4.2.4: userinfo is deprecated and a recipient SHOULD treat it as an error.
        if not _AUTHORITY.fullmatch(host):
            return Refused(INVALID_TARGET, "the target's authority is not host[:port] (userinfo is refused)")
        # RFC 9112 §3.2.2: the origin server uses the target's host, not the Host field.
        target = rest if rest.startswith(b"/") else b"/" + rest
    path, sep, query = target.partition(b"?")
    if b"#" in target:
        return Refused(INVALID_TARGET, "a fragment ('#') is not part of a request target (RFC 9112 §3.2.1)")
    if _PCT.search(path):
        return Refused(INVALID_TARGET, "a '%' in the path is not followed by two hex digits (RFC 3986 §2.1)")
    if b"\\" in path or _ENCODED_REFUSED.search(path):
        return Refused(
            INVALID_TARGET, "an encoded '/' (%2F), a backslash (raw or %5C) or %00 in the path is refused"
        )
    if any(b";" in seg and _dots(seg) for seg in path.split(b"/")):
        # Tomcat and others drop ";params" and then climb; others keep "..;x" as a name.
        return Refused(INVALID_TARGET, "a dot-segment with parameters ('..;') in the path is ambiguous")
    resolved = remove_dot_segments(path)
    if resolved is None:
        return Refused(INVALID_TARGET, "the path climbs above '/' with '..' (RFC 3986 §5.2.4)")
    return Target(resolved + sep + query, host)


def _dots(segment: bytes) -> bytes | None:
    """``.`` or ``..`` when the segment is a dot-segment (%2E read as '.'), else None;
    ``;parameters`` are ignored (the caller refuses those)."""
    name = segment.split(b";", 1)[0].lower().replace(b"%2e", b".")
    return name if name in (b".", b"..") else None


def remove_dot_segments(path: bytes) -> bytes | None:
    """RFC 3986 §5.2.4 over an absolute path, or None when ``..`` would climb above the root
    (where the RFC keeps the root, the gateway refuses: the upstream's prefix is a boundary)."""
    out: list[bytes] = []
    segments = path[1:].split(b"/")
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        dots = _dots(segment)
        if dots is None:
            out.append(segment)
            continue
        if dots == b"..":
            if not out:
                return None
            out.pop()
        if i == last:
            out.append(b"")  # "/a/.." is "/", "/a/." is "/a/": the trailing "/" stays
    return b"/" + b"/".join(out)
