"""Put the client's certificate chain into the ASGI scope when uvicorn terminates TLS.

uvicorn 0.54 does not fill the ASGI TLS extension (encode/uvicorn #745, #400, PR #1119
open since 2021), so an app served directly over mTLS cannot see who connected. These
HTTP protocol classes add ``scope["extensions"]["tls"]`` as the ASGI TLS extension
specifies (``client_cert_chain``: PEM strings, client certificate first), plus
``scope["extensions"]["mtlscore.peer"]``: the transport's real peer address, which
uvicorn's X-Forwarded-For handling cannot rewrite::

    uvicorn.run(app, http=MtlsH11Protocol, ssl_certfile=..., ssl_keyfile=...,
                ssl_ca_certs="clients-ca.pem", ssl_cert_reqs=ssl.CERT_OPTIONAL)

The presented chain comes from ``SSLObject.get_unverified_chain()`` (Python 3.13+) or
the private ``_sslobj.get_unverified_chain()`` (3.10–3.12); failing both (or on a
resumed session, where OpenSSL keeps only the leaf), the leaf from
``getpeercert(binary_form=True)`` with ``"mtlscore.chain_source": "leaf_only"``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import pathlib
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from uvicorn.protocols.http.h11_impl import H11Protocol

from ..types import ASGIApp, JSONObject, Receive, Scope, Send

if TYPE_CHECKING:
    from OpenSSL import SSL
    from uvicorn.config import Config
    from uvicorn.server import ServerState

from ..proxy.headers import lb_error_name
from .tls import presented_chain as tls_presented_chain

__all__ = [
    "DeferredTLSProtocol",
    "MtlsH11Protocol",
    "deferred_extension",
    "TLSExtensionMixin",
    "presented_chain",
    "tls_extension",
    "uvicorn_tls",
    "with_connection_facts",
]


# RFC 8446 §4.2.1 / RFC 5246 §6.2.1 wire versions, as the ASGI TLS extension wants them.
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def _pem(der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def presented_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[list[bytes], str]:
    """The DER chain the peer presented (leaf first) and how it was read (the gateway's
    :func:`mtlscore.runtimes.tls.presented_chain`, in the ASGI TLS extension's words).

    The second value is ``"chain"`` (the full presented chain), ``"leaf_only"`` (only
    the leaf was available) or ``"none"`` (no client certificate).
    """
    chain, leaf_only = tls_presented_chain(ssl_object)
    return list(chain), ("leaf_only" if leaf_only else "chain") if chain else "none"


def _cipher_suite(ssl_object: Any) -> int | None:
    try:
        name = ssl_object.cipher()[0]
        for c in ssl_object.context.get_ciphers():
            if c.get("name") == name:
                # OpenSSL cipher ids are 0x0300XXXX; the IANA code is the low 16 bits.
                return int(c["id"]) & 0xFFFF
    except (TypeError, AttributeError, KeyError, IndexError, ssl.SSLError):
        pass
    return None


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> JSONObject:
    """The ASGI TLS extension dict for a finished handshake (``ssl.SSLObject``/``SSLSocket``)."""
    ders, source = presented_chain(ssl_object)
    name: str | None = None
    if ders:
        try:
            from cryptography import x509

            name = x509.load_der_x509_certificate(ders[0]).subject.rfc4514_string()
        except Exception:  # noqa: BLE001 - a name is informative only; validation decides
            name = None
    return {
        "server_cert": None,
        "client_cert_chain": [_pem(d) for d in ders],
        "client_cert_name": name,
        # The handshake completed, so stdlib ssl found no error with what it checked.
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": _cipher_suite(ssl_object),
        "mtlscore.chain_source": source,
    }


class _WithConnectionInfo:
    """An ASGI app wrapper adding one connection's TLS extension and real peer to each scope."""

    __slots__ = ("app", "peer", "tls")

    def __init__(self, app: ASGIApp, tls: JSONObject | None, peer: object) -> None:
        self.app = app
        self.tls = tls
        self.peer = peer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(with_connection_facts(scope, self.tls, self.peer), receive, send)


def with_connection_facts(scope: Scope, tls: JSONObject | None, peer: object) -> Scope:
    """``scope`` with the connection's ASGI TLS extension and its real peer (``mtlscore.peer``)
    in ``extensions`` (http and websocket scopes; a lifespan scope passes unchanged)."""
    if scope.get("type") not in ("http", "websocket"):
        return scope
    given = scope.get("extensions")
    ext = dict(given) if isinstance(given, Mapping) else {}
    if tls is not None:
        ext["tls"] = tls
    ext["mtlscore.peer"] = peer
    return {**scope, "extensions": ext}


class TLSExtensionMixin:
    """Mix into a uvicorn HTTP protocol: wrap its app with this connection's TLS facts.

    asyncio calls ``connection_made`` after the TLS handshake, so the chain is known
    once per connection and shared by every request on it.
    """

    app: ASGIApp

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        ssl_object = transport.get_extra_info("ssl_object")
        tls = tls_extension(ssl_object) if ssl_object is not None else None
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple | list) and len(peer) >= 2:
            peer = (str(peer[0]), int(peer[1]))
        else:
            peer = None
        self.app = _WithConnectionInfo(self.app, tls, peer)


class MtlsH11Protocol(TLSExtensionMixin, H11Protocol):
    """uvicorn's h11 protocol plus the ASGI TLS extension (pass as ``http=``)."""


try:  # httptools is optional in uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:  # pragma: no cover - httptools is not installed in the test environment

    class MtlsHttpToolsProtocol(TLSExtensionMixin, HttpToolsProtocol):
        """uvicorn's httptools protocol plus the ASGI TLS extension."""

    __all__ += ["MtlsHttpToolsProtocol"]


# -- TLS terminated by mtlscore inside uvicorn: every client certificate reaches the app ----------

_embed_log = logging.getLogger(__name__)  # "mtlscore.runtimes.uvicorn_tls"

# What the ASGI TLS extension's client_cert_error says when the TLS layer accepted any chain.
NOT_VERIFIED_AT_TLS = "not verified at the TLS layer (mtlscore deferred TLS): the application validates it"


def uvicorn_tls(
    *, certificate: str | pathlib.Path, key: str | pathlib.Path, handshake_timeout: float = 10.0
) -> dict[str, type[asyncio.Protocol]]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``: mtlscore terminates TLS.

    uvicorn's own TLS (``ssl_certfile``, ``ssl_ca_certs``, ``ssl_cert_reqs``) is stdlib
    ``ssl``, which has no verify callback: OpenSSL aborts the handshake for an expired,
    wrong-EKU, unknown-CA or leaf-only chain before the app runs, and the client sees
    "Empty reply from server" with nothing logged. Here uvicorn listens on plain TCP and
    the HTTP protocol it runs does TLS itself with the gateway's deferred engine
    (pyOpenSSL over memory BIOs, a verify callback that accepts any chain), so every
    handshake with a certificate completes and the app (:class:`mtlscore.asgi.MtlsMiddleware`)
    answers each bad certificate with its JSON reason. The scope carries the ASGI TLS
    extension (``client_cert_chain``, leaf first). Handshakes that fail anyway (no shared
    version or cipher, plain HTTP on the TLS port, a timeout) are logged as one JSON line
    on this module's logger (``mtlscore.runtimes.uvicorn_tls``) with their reason. Do not pass uvicorn ``ssl_*``
    settings as well. Raises :class:`~mtlscore.ConfigError` naming the file for a bad
    certificate or key. Needs pyOpenSSL (``pip install "mtlscore[gateway]"``)."""
    from ..verify.trust import TrustStore
    from .tls import DeferredEngine

    context = DeferredEngine.context(TrustStore(), certificate=certificate, key=key)
    protocol = type(
        "MtlsDeferredTLSProtocol", (DeferredTLSProtocol,), {"context": context, "handshake_timeout": handshake_timeout}
    )
    return {"http": protocol}


class _TLSTransport(asyncio.Transport):
    """What uvicorn's HTTP protocol writes to: plaintext in, TLS records out on the socket."""

    def __init__(self, outer: DeferredTLSProtocol) -> None:
        super().__init__()
        self._outer = outer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        outer = self._outer
        if outer.raw.is_closing():
            return
        try:
            outer.engine.write(bytes(data))
        except OSError:  # the peer has gone (alert or EOF seen)
            outer.raw.abort()
            return
        outer.flush()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        outer = self._outer
        if not outer.raw.is_closing():
            outer.engine.close()  # close_notify
            outer.flush()
            outer.raw.close()

    def abort(self) -> None:
        self._outer.raw.abort()

    def is_closing(self) -> bool:
        return self._outer.raw.is_closing()

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":  # uvicorn: scope["scheme"] = "https"
            return self._outer.context
        if name in ("ssl_object", "peercert", "cipher", "compression"):
            return default  # not stdlib ssl: the chain is in the ASGI TLS extension
        return self._outer.raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._outer.raw.pause_reading()

    def resume_reading(self) -> None:
        self._outer.raw.resume_reading()

    def is_reading(self) -> bool:
        return self._outer.raw.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._outer.inner = protocol  # uvicorn hands the connection to its websocket protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._outer.inner

    def get_write_buffer_size(self) -> int:
        return self._outer.raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._outer.raw.set_write_buffer_limits(high, low)


class DeferredTLSProtocol(asyncio.Protocol):
    """uvicorn's h11 protocol behind a TLS handshake mtlscore runs (see :func:`uvicorn_tls`).

    Built by :func:`uvicorn_tls`, which sets ``context`` (a pyOpenSSL context from
    ``DeferredEngine.context``) and ``handshake_timeout``.
    """

    context: SSL.Context | None = None
    handshake_timeout: float = 10.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        from .tls import DeferredEngine

        self.inner: asyncio.BaseProtocol = H11Protocol(config, server_state, app_state, _loop)
        if self.context is None:
            raise TypeError("DeferredTLSProtocol is made by uvicorn_tls(), which gives it its TLS context")
        self.engine = DeferredEngine(self.context)
        self.raw: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.peer: tuple[str, int] | None = None
        self.ready = False
        self._timer: asyncio.TimerHandle | None = None

    def flush(self) -> None:
        out = self.engine.outgoing()
        if out and not self.raw.is_closing():
            self.raw.write(out)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport. Not checked with isinstance: uvloop's (uvicorn's loop whenever
        # uvloop is installed, as uvicorn[standard] does) is no subclass of asyncio.Transport.
        self.raw = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple | list) and len(peer) >= 2 else None
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.handshake_timeout, self._timed_out)

    def _timed_out(self) -> None:
        if not self.ready:
            self._failed("tls_protocol_error", f"no TLS handshake within {self.handshake_timeout:g} s")

    def _failed(self, code: str, detail: str) -> None:
        # Where OpenSSL decides, the rejection is logged with its reason (else it is silent).
        if _embed_log.isEnabledFor(logging.WARNING):
            peer = f"{self.peer[0]}:{self.peer[1]}" if self.peer else ""
            # lb_error: the load balancer's name for the reason (docs/gateway.md "Error names").
            _embed_log.warning(json.dumps({"event": "tls_handshake_failed", "peer": peer, "reason": code,
                                           "lb_error": lb_error_name(code) or None, "detail": detail}))
        self.flush()  # the alert, so the client learns why
        self.raw.close()

    def data_received(self, data: bytes) -> None:
        from .tls import TLSHandshakeError

        self.engine.feed(data)
        if not self.ready:
            try:
                done = self.engine.handshake()
            except TLSHandshakeError as exc:
                self._failed(exc.code, exc.detail)
                return
            self.flush()
            if not done:
                return
            self._start()
        self._pump()

    def _start(self) -> None:
        self.ready = True
        if self._timer is not None:
            self._timer.cancel()
        facts = self.engine.facts(self.peer or ("", 0))
        tls = deferred_extension(facts.chain, facts.version)
        inner = self.inner
        assert isinstance(inner, H11Protocol)
        inner.connection_made(_TLSTransport(self))
        inner.app = _WithConnectionInfo(inner.app, tls, self.peer)

    def _pump(self) -> None:
        while not self.raw.is_closing():
            plain = self.engine.read()
            if plain is None:
                break
            if not plain:
                if isinstance(self.inner, asyncio.Protocol):
                    self.inner.eof_received()
                break
            assert isinstance(self.inner, asyncio.Protocol)
            self.inner.data_received(plain)
        self.flush()

    def eof_received(self) -> bool | None:
        self.engine.feed(b"")
        if self.ready:
            self._pump()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.ready:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.ready:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.ready:
            self.inner.resume_writing()


def deferred_extension(chain: tuple[bytes, ...], version: str) -> JSONObject:
    """The ASGI TLS extension for a handshake the deferred engine ran (nothing verified yet)."""
    name: str | None = None
    if chain:
        try:
            from cryptography import x509

            name = x509.load_der_x509_certificate(chain[0]).subject.rfc4514_string()
        except ValueError:  # a name is informative only; validation decides
            name = None
    return {
        "server_cert": None,
        "client_cert_chain": [_pem(d) for d in chain],
        "client_cert_name": name,
        "client_cert_error": NOT_VERIFIED_AT_TLS if chain else None,
        "tls_version": _TLS_VERSIONS.get(version),
        "cipher_suite": None,
        "mtlscore.chain_source": "chain" if chain else "none",
    }
