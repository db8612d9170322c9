"""I/O-free HTTP/1.1 helpers shared by the asyncio and trio fetchers (h11 does the protocol).

A fetcher turns a request of the asking validator (``NeedCRL``, ``NeedOCSP``,
``NeedIssuer``) into an :class:`HttpCall`, writes :meth:`Exchange.request_bytes`
to its own TCP (or TLS) stream, feeds what it reads to :meth:`Exchange.receive`
until a :class:`Response` comes back, and follows a redirect only to the same
scheme (:func:`redirect_target`). Limits: the response body (``max_bytes``),
the header block, and the number of redirects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import h11

from ..identity.jwks import JwksCache, NeedJwks
from ..verify.machine import NeedCRL, NeedIssuer, NeedOCSP, Request

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_REDIRECTS",
    "Exchange",
    "FetchError",
    "HttpCall",
    "Response",
    "Target",
    "call_for",
    "report_jwks",
    "parse_url",
    "redirect_target",
]

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_REDIRECTS = 3
_USER_AGENT = "mtlscore-fetch/0.1"


class FetchError(Exception):
    """The data could not be fetched (network, timeout, HTTP status, size, redirect)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect and what to ask for."""

    scheme: str  # "http" | "https"
    host: str
    port: int
    path: str  # origin-form request target, with the query
    url: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> Target:
    """The :class:`Target` of an http(s) URL. Raises FetchError for any other URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"bad URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(f"only http and https URLs are fetched, not {url!r}")
    if not parts.hostname:
        raise FetchError(f"URL {url!r} names no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80), path, url)


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One HTTP request to make for a validator's request."""

    method: str
    target: Target
    body: bytes = field(default=b"", repr=False)
    content_type: str | None = None
    accept: str = "*/*"


def call_for(request: Request | NeedJwks) -> HttpCall:
    """The HTTP call that answers ``request``. Raises FetchError for an unfetchable URL."""
    target = parse_url(request.url)
    if isinstance(request, NeedOCSP):
        # RFC 6960 Appendix A.1: GET when the core built a GET URL (small requests), else POST the DER.
        if request.get_url is not None:
            return HttpCall("GET", parse_url(request.get_url), accept="application/ocsp-response")
        return HttpCall("POST", target, request.request_der, "application/ocsp-request", "application/ocsp-response")
    if isinstance(request, NeedCRL):
        return HttpCall("GET", target, accept="application/pkix-crl, */*")
    if isinstance(request, NeedIssuer):
        return HttpCall("GET", target, accept="application/pkix-cert, application/pkcs7-mime, */*")
    if isinstance(request, NeedJwks):
        # RFC 7517 §8.5.1: application/jwk-set+json; most servers answer application/json.
        return HttpCall("GET", target, accept="application/jwk-set+json, application/json")
    raise FetchError(f"unknown request {request!r}")


@dataclass(frozen=True, slots=True)
class Response:
    """A complete HTTP response."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = field(repr=False)

    def header(self, name: bytes) -> bytes | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class Exchange:
    """One request/response over one connection, as bytes in and bytes out (sans-IO, h11)."""

    def __init__(self, call: HttpCall, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.call = call
        self.max_bytes = max_bytes
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._status = 0
        self._headers: tuple[tuple[bytes, bytes], ...] = ()
        self._body = bytearray()

    def request_bytes(self) -> bytes:
        """The bytes of the request, to write to the stream."""
        c = self.call
        headers = [
            ("Host", c.target.host_header),
            ("User-Agent", _USER_AGENT),
            ("Accept", c.accept),
            ("Connection", "close"),
        ]
        if c.method == "POST":
            headers += [("Content-Type", c.content_type or "application/octet-stream"),
                        ("Content-Length", str(len(c.body)))]
        out = self._conn.send(h11.Request(method=c.method, target=c.target.path, headers=headers)) or b""
        if c.body:
            out += self._conn.send(h11.Data(data=c.body)) or b""
        out += self._conn.send(h11.EndOfMessage()) or b""
        return out

    def receive(self, data: bytes) -> Response | None:
        """Feed bytes read from the stream (``b""`` at EOF); the response once complete.

        Raises FetchError on a protocol error, an early close or a body over the limit.
        """
        try:
            self._conn.receive_data(data)
            while True:
                event = self._conn.next_event()
                if event is h11.NEED_DATA:
                    if not data:
                        raise FetchError("the server closed the connection before answering in full")
                    return None
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    self._status = event.status_code
                    self._headers = tuple((bytes(k), bytes(v)) for k, v in event.headers)
                    length = next((v for k, v in self._headers if k == b"content-length"), None)
                    if length is not None and length.isdigit() and int(length) > self.max_bytes:
                        raise FetchError(f"the answer is {int(length)} bytes; the limit is {self.max_bytes}")
                elif isinstance(event, h11.Data):
                    self._body += event.data
                    if len(self._body) > self.max_bytes:
                        raise FetchError(f"the answer is over the limit of {self.max_bytes} bytes")
                elif isinstance(event, h11.EndOfMessage):
                    return Response(self._status, self._headers, bytes(self._body))
                elif isinstance(event, h11.ConnectionClosed):
                    raise FetchError("the server closed the connection before answering")
                else:  # pragma: no cover - h11 has no other client-side events
                    raise FetchError(f"unexpected HTTP event {type(event).__name__}")
        except h11.RemoteProtocolError as exc:
            raise FetchError(f"the server spoke broken HTTP: {exc}") from None


def redirect_target(current: Target, response: Response) -> Target | None:
    """Where a 3xx ``response`` points (None when it is not a redirect); raises FetchError otherwise.

    A redirect may not change the scheme (no https → http downgrade, no file: or ldap:).
    """
    if response.status not in (301, 302, 303, 307, 308):
        if response.status != 200:
            raise FetchError(f"{current.url} answered HTTP {response.status}")
        return None
    location = response.header(b"location")
    if not location:
        raise FetchError(f"{current.url} answered HTTP {response.status} without a Location")
    nxt = parse_url(urljoin(current.url, location.decode("latin-1")))
    if nxt.scheme != current.scheme:
        raise FetchError(f"{current.url} redirects to another scheme ({nxt.url}); not followed")
    return nxt


def report_jwks(cache: JwksCache, request: NeedJwks, outcome: Response | FetchError, *, now: float) -> str | None:
    """Tell ``cache`` what the fetch of ``request`` gave; None when the keys were replaced, else the error."""
    if isinstance(outcome, FetchError):
        cache.fail(request, str(outcome), now=now)
        return str(outcome)
    return cache.answer(request, status=outcome.status, body=outcome.body,
                        cache_control=outcome.header(b"cache-control"), now=now)
