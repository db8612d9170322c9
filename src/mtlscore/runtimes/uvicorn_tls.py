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
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["MtlsH11Protocol", "TLSExtensionMixin", "presented_chain", "tls_extension"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

# RFC 8446 §4.2.1 / RFC 5246 §6.2.1 wire versions, as the ASGI TLS extension wants them.
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# What CPython's private _ssl.Certificate.public_bytes() takes for DER.
_ENCODING_DER: int = getattr(ssl, "_ssl").ENCODING_DER  # noqa: B009 - private module


def _pem(der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def _as_der(item: Any) -> bytes:
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    # CPython 3.10–3.12 private _ssl.Certificate
    return bytes(item.public_bytes(_ENCODING_DER))


def presented_chain(ssl_object: Any) -> tuple[list[bytes], str]:
    """The DER chain the peer presented (leaf first) and how it was read.

    The second value is ``"chain"`` (the full presented chain), ``"leaf_only"`` (only
    the leaf was available) or ``"none"`` (no client certificate).
    """
    getters = (
        getattr(ssl_object, "get_unverified_chain", None),  # Python 3.13+
        getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None),  # 3.10–3.12
    )
    for getter in getters:
        if getter is None:
            continue
        try:
            chain = getter()
        except (ssl.SSLError, ValueError, AttributeError):
            chain = None
        # CPython (server side) puts the peer's certificate first, None when absent.
        chain = [c for c in chain or () if c is not None]
        if chain:
            return [_as_der(c) for c in chain], "chain"
        break
    try:
        leaf = ssl_object.getpeercert(binary_form=True)
    except (ssl.SSLError, ValueError, AttributeError):
        leaf = None
    if leaf:
        return [bytes(leaf)], "leaf_only"
    return [], "none"


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


def tls_extension(ssl_object: Any) -> dict[str, Any]:
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

    def __init__(self, app: ASGIApp, tls: dict[str, Any] | None, peer: Any) -> None:
        self.app = app
        self.tls = tls
        self.peer = peer

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            scope = dict(scope)
            ext = dict(scope.get("extensions") or {})
            if self.tls is not None:
                ext["tls"] = self.tls
            ext["mtlscore.peer"] = self.peer
            scope["extensions"] = ext
        await self.app(scope, receive, send)


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
