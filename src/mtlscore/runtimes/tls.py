"""TLS termination for the runtimes: the server context, the presented chain, handshake reasons.

Three things, usable on their own (e.g. with uvicorn/hypercorn/aiohttp):

* :func:`server_context` — an ``ssl.SSLContext`` that asks for a client
  certificate and trusts what a :class:`TrustStore` trusts.
* :func:`presented_chain` — the chain the client sent, leaf first, as DER.
* :func:`handshake_reason` — an ``ssl`` handshake failure as a reason code.

And the TLS engines the gateway drives over memory BIOs (so both runtimes share
one byte-moving loop): :class:`StdlibEngine` (``ssl``) and
:class:`DeferredEngine` (pyOpenSSL with a verify callback that accepts any
chain, so the core decides every case — stdlib ``ssl`` has no such callback).
"""

from __future__ import annotations

import contextlib
import pathlib
import ssl
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..decision.verdict import Verdict
from ..gateway.events import TLSFacts
from ..gateway.handshake import handshake_alert
from ..gateway.settings import ServerConfig
from ..gateway.token_settings import FAPI2_TLS12_CIPHERS
from ..identity.binding import x5t_s256
from ..reasons import CertificateRejected, ConfigError, Reason
from ..verify.trust import TrustStore

if TYPE_CHECKING:
    from OpenSSL import SSL  # the gateway extra: imported where a deferred engine is made

__all__ = [
    "TLS_PROTOCOL_ERROR",
    "DeferredEngine",
    "Judge",
    "StdlibEngine",
    "TLSEngine",
    "TLSHandshakeError",
    "check_server_files",
    "engine_factory",
    "handshake_reason",
    "pem_label",
    "presented_chain",
    "server_context",
]

# OpenSSL X509_V_FLAG_NO_CHECK_TIME (x509_vfy.h): skip validity-period checks.
# The core checks time itself, with clock skew and anchor activation windows
# (CA rotation) that OpenSSL does not know about.
X509_V_FLAG_NO_CHECK_TIME = 0x200000
# A handshake failure that is not about the certificate (no shared cipher,
# plain HTTP on the TLS port, client hung up…).
TLS_PROTOCOL_ERROR = "tls_protocol_error"

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) -> the nearest reason (docs/reference.md#reason-codes).
_VERIFY_CODES: dict[int, Reason] = {
    2: Reason.UNTRUSTED,  # UNABLE_TO_GET_ISSUER_CERT
    7: Reason.BAD_SIGNATURE,  # CERT_SIGNATURE_FAILURE
    9: Reason.NOT_YET_VALID,  # CERT_NOT_YET_VALID
    10: Reason.EXPIRED,  # CERT_HAS_EXPIRED
    13: Reason.MALFORMED,  # ERROR_IN_CERT_NOT_BEFORE_FIELD
    14: Reason.MALFORMED,  # ERROR_IN_CERT_NOT_AFTER_FIELD
    18: Reason.UNTRUSTED,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: Reason.UNTRUSTED,  # SELF_SIGNED_CERT_IN_CHAIN
    20: Reason.UNTRUSTED,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: Reason.UNTRUSTED,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    22: Reason.CHAIN_TOO_LONG,  # CERT_CHAIN_TOO_LONG
    23: Reason.REVOKED,  # CERT_REVOKED
    24: Reason.ISSUER_NOT_CA,  # INVALID_CA
    25: Reason.PATH_LENGTH_EXCEEDED,  # PATH_LENGTH_EXCEEDED
    26: Reason.INVALID_EKU,  # INVALID_PURPOSE
    27: Reason.UNTRUSTED,  # CERT_UNTRUSTED
    28: Reason.UNTRUSTED,  # CERT_REJECTED
    32: Reason.ISSUER_KEY_USAGE,  # KEYUSAGE_NO_CERTSIGN
    34: Reason.UNHANDLED_CRITICAL_EXTENSION,  # UNHANDLED_CRITICAL_EXTENSION
    42: Reason.MALFORMED,  # INVALID_POLICY_EXTENSION
    43: Reason.NO_VALID_POLICY,  # NO_EXPLICIT_POLICY
    47: Reason.NAME_CONSTRAINTS_VIOLATION,  # PERMITTED_VIOLATION
    48: Reason.NAME_CONSTRAINTS_VIOLATION,  # EXCLUDED_VIOLATION
    51: Reason.NAME_CONSTRAINTS_VIOLATION,  # UNSUPPORTED_NAME_SYNTAX
    66: Reason.RSA_KEY_TOO_SMALL,  # EE_KEY_TOO_SMALL
    67: Reason.RSA_KEY_TOO_SMALL,  # CA_KEY_TOO_SMALL
    68: Reason.WEAK_SIGNATURE_ALGORITHM,  # CA_MD_TOO_WEAK
}
# OpenSSL library reason strings (SSLError.reason) that are about the certificate.
_SSL_REASONS: dict[str, Reason] = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": Reason.NOT_PROVIDED,
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": Reason.NOT_PROVIDED,
    "EE_KEY_TOO_SMALL": Reason.RSA_KEY_TOO_SMALL,
    "CA_KEY_TOO_SMALL": Reason.RSA_KEY_TOO_SMALL,
    "CA_MD_TOO_WEAK": Reason.WEAK_SIGNATURE_ALGORITHM,
}


# The TLS alert (RFC 8446 §6.2 name, mtlscore.gateway.handshake) -> the X509_V_ERR_* code whose
# alert OpenSSL sends when verification fails with it (ssl_x509err2alert, statem_lib.c).
# OpenSSL picks the alert from the store context's error: setting one of these is how a
# verify callback chooses it.
_ALERT_CODES: dict[str, int] = {
    "certificate_expired": 10,  # X509_V_ERR_CERT_HAS_EXPIRED
    "certificate_revoked": 23,  # X509_V_ERR_CERT_REVOKED
    "unknown_ca": 20,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    "unsupported_certificate": 26,  # X509_V_ERR_INVALID_PURPOSE
    "bad_certificate": 28,  # X509_V_ERR_CERT_REJECTED
    # X509_V_ERR_OCSP_CERT_UNKNOWN: not in the table, so its fallback, certificate_unknown
    # (X509_V_OK would not do: a failed verification "without an error" is internal_error).
    "certificate_unknown": 75,
}

# Decides a presented chain (DER, leaf first) inside the handshake: its verdict, or None
# when that needs I/O (then it is decided after the handshake). mtlscore.gateway.handshake.
Judge = Callable[[Sequence[bytes]], Verdict | None]


class TLSHandshakeError(Exception):
    """The TLS handshake failed; ``code`` is a reason value or :data:`TLS_PROTOCOL_ERROR`."""

    def __init__(self, code: str, detail: str, *, thumbprint: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.thumbprint = thumbprint


def handshake_reason(exc: BaseException) -> tuple[str, str]:
    """An ``ssl`` (or pyOpenSSL) handshake error as (reason code, detail) for logs and metrics."""
    code = getattr(exc, "verify_code", None)
    if isinstance(code, int) and code in _VERIFY_CODES:
        message = getattr(exc, "verify_message", "") or str(exc)
        return _VERIFY_CODES[code].value, f"certificate verify failed: {message}"
    name = getattr(exc, "reason", None)
    text = str(exc)
    if isinstance(name, str) and name in _SSL_REASONS:
        return _SSL_REASONS[name].value, text
    for key, reason in _SSL_REASONS.items():
        if key.lower().replace("_", " ") in text.lower() or key in text:
            return reason.value, text
    if "certificate verify failed" in text.lower():
        return Reason.UNTRUSTED.value, text
    return TLS_PROTOCOL_ERROR, text or type(exc).__name__


def check_server_files(certificate: str | pathlib.Path, key: str | pathlib.Path) -> None:
    """Raise :class:`ConfigError` naming ``server.certificate`` or ``server.key``, the file and
    what is wrong, when the pair cannot serve TLS; return None when it can.

    OpenSSL's own messages for these mistakes ("[SSL] PEM lib", a ``None`` file name)
    name neither the key nor the defect, so the files are read and parsed here first,
    with ``cryptography``, in the order an operator fixes them: present, PEM, a
    certificate, a private key, unencrypted, the certificate's key.
    """
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    blobs: dict[str, bytes] = {}
    for name, path in (("certificate", certificate), ("key", key)):
        try:
            blobs[name] = pathlib.Path(path).read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file", key=f"server.{name}") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a directory, not a PEM file", key=f"server.{name}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}", key=f"server.{name}") from None
    try:
        certs = x509.load_pem_x509_certificates(blobs["certificate"])
    except ValueError:
        what = pem_label(blobs["certificate"])
        found = f"it holds a {what} block" if what else "not a PEM file"
        raise ConfigError(
            f"{certificate}: no PEM CERTIFICATE ({found}); give the server's certificate, "
            "then its intermediates, as PEM",
            key="server.certificate",
        ) from None
    try:
        private = serialization.load_pem_private_key(blobs["key"], password=None)
    except TypeError:
        # cryptography: "Password was not given but private key is encrypted".
        raise ConfigError(
            f"{key}: the private key is encrypted and mtlscore takes no passphrase; store it "
            "decrypted with mode 600 (openssl pkey -in KEY -out KEY.plain)",
            key="server.key",
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        what = pem_label(blobs["key"])
        found = f"it holds a {what} block" if what else "not a PEM file"
        raise ConfigError(
            f"{key}: no PEM private key ({found}): {type(exc).__name__}", key="server.key"
        ) from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*spki) != certs[0].public_key().public_bytes(*spki):
        raise ConfigError(
            f"{key}: this private key does not match the certificate in {certificate} "
            f"(subject {certs[0].subject.rfc4514_string() or '(empty)'})",
            key="server.key",
        )


def pem_label(data: bytes) -> str | None:
    """The label of the first PEM block in ``data`` (``PRIVATE KEY``, ``CERTIFICATE REQUEST``…)."""
    start = data.find(b"-----BEGIN ")
    if start < 0:
        return None
    end = data.find(b"-----", start + 11)
    label = data[start + 11 : end] if end > 0 else b""
    return label.decode("ascii", "replace") or None


def server_context(
    trust: TrustStore,
    *,
    certificate: str | pathlib.Path,
    key: str | pathlib.Path,
    mode: str = "reject_invalid",
    check_time: bool = False,
) -> ssl.SSLContext:
    """A TLS 1.2+ server context that asks for a client certificate and trusts ``trust``.

    Anchors, pool intermediates and allowlisted certificates are loaded, with
    partial-chain verification so that an intermediate (or an allowlisted leaf)
    is an anchor by itself. ``reject_invalid`` → ``CERT_REQUIRED``; otherwise
    ``CERT_OPTIONAL`` (a missing certificate passes; an invalid one is still
    refused by ``ssl``). ``check_time=False`` leaves validity periods to the
    core. The TLS layer is a first filter: run the core's validation on the
    presented chain as well. Raises :class:`ConfigError` when the certificate or
    key cannot be loaded.
    """
    check_server_files(certificate, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(certificate), str(key))
    except (ssl.SSLError, OSError) as exc:  # checked above: only what cryptography accepts and OpenSSL not
        raise ConfigError(f"{certificate}, {key}: OpenSSL cannot load them: {exc}", key="server.certificate") from None
    ctx.verify_mode = ssl.CERT_REQUIRED if mode == "reject_invalid" else ssl.CERT_OPTIONAL
    pems = [a.certificate.pem for a in trust.anchors]
    pems += [c.pem for c in trust.intermediates] + [c.pem for c in trust.allowlisted]
    if pems:
        ctx.load_verify_locations(cadata="".join(_text(p) for p in pems))
    flags = ctx.verify_flags | ssl.VERIFY_X509_PARTIAL_CHAIN
    if not check_time:
        flags |= X509_V_FLAG_NO_CHECK_TIME
    ctx.verify_flags = flags
    # No resumption: a resumed session carries no fresh chain to validate, and a
    # reloaded trust config must apply to every new connection (RFC 8446 §2.2).
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0
    ctx.sni_callback = _remember_sni
    return ctx


def _text(pem: Any) -> str:
    return pem.decode("ascii") if isinstance(pem, bytes) else str(pem)


def _remember_sni(obj: Any, name: str | None, ctx: ssl.SSLContext) -> None:
    try:
        obj.mtlscore_sni = name
    except AttributeError:
        pass


def presented_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[tuple[bytes, ...], bool]:
    """The chain the peer presented (DER, leaf first) and whether only the leaf was visible.

    Python 3.13 has ``get_unverified_chain()``; 3.10-3.12 have it on the private
    ``_sslobj``. Elsewhere only ``getpeercert(binary_form=True)`` (the leaf).
    Accepts an ``ssl.SSLObject``/``SSLSocket`` or asyncio's ``ssl_object`` extra. No
    certificate is ``((), False)``; what the ssl module cannot answer counts as none.
    """
    for holder in (ssl_object, getattr(ssl_object, "_sslobj", None)):
        get = getattr(holder, "get_unverified_chain", None)
        if get is None:
            continue
        try:
            chain = get()
        except (ssl.SSLError, ValueError, AttributeError):
            chain = None
        # CPython (server side) puts the peer's certificate first, None when absent.
        ders = tuple(_der(c) for c in chain or () if c is not None)
        if ders:
            return ders, False
        break
    try:
        leaf = ssl_object.getpeercert(binary_form=True)
    except (ssl.SSLError, ValueError, AttributeError):
        leaf = None
    return ((bytes(leaf),), True) if leaf else ((), False)


def _der(cert: Any) -> bytes:
    if isinstance(cert, bytes | bytearray):
        return bytes(cert)
    return bytes(cert.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]


# -- engines: TLS over memory BIOs -----------------------------------------------


class TLSEngine(Protocol):
    """TLS as a byte transformer: feed network bytes in, take network bytes out."""

    def feed(self, data: bytes) -> None:
        """Network bytes from the peer (``b""`` at end of stream)."""

    def handshake(self) -> bool:
        """Advance the handshake: True when done; raises :class:`TLSHandshakeError`."""

    def outgoing(self) -> bytes:
        """Network bytes to send to the peer now."""

    def read(self) -> bytes | None:
        """Application bytes: None when more network bytes are needed, ``b""`` at close."""

    def write(self, data: bytes) -> None:
        """Encrypt application bytes (then send :meth:`outgoing`)."""

    def close(self) -> None:
        """Queue close_notify."""

    def facts(self, peer: tuple[str, int]) -> TLSFacts:
        """What the handshake established, for the session core."""

    @property
    def verdict(self) -> Verdict | None:
        """The chain's verdict when it was reached inside the handshake, else None."""


class StdlibEngine:
    """Stdlib ``ssl`` over memory BIOs."""

    verdict: Verdict | None = None  # stdlib ssl runs no validator in the handshake

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(self._in, self._out, server_side=True)
        self._fed = False  # nothing to do before the ClientHello's first bytes

    def feed(self, data: bytes) -> None:
        self._fed = True
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()

    def handshake(self) -> bool:
        if not self._fed:
            return False  # a server has nothing to say before the ClientHello
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except (ssl.SSLError, OSError) as exc:
            raise TLSHandshakeError(*handshake_reason(exc)) from None
        return True

    def outgoing(self) -> bytes:
        return self._out.read()

    def read(self) -> bytes | None:
        try:
            return self._obj.read(65536)
        except ssl.SSLWantReadError:
            return b"" if self._in.eof else None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""
        except ssl.SSLError:
            return b""

    def write(self, data: bytes) -> None:
        self._obj.write(data)

    def close(self) -> None:
        try:
            self._obj.unwrap()
        except (ssl.SSLError, OSError):
            pass

    def facts(self, peer: tuple[str, int]) -> TLSFacts:
        chain, leaf_only = presented_chain(self._obj)
        cipher = self._obj.cipher()
        return TLSFacts(
            chain=chain,
            leaf_only=leaf_only,
            sni=getattr(self._obj, "mtlscore_sni", None),
            peer=peer,
            version=self._obj.version() or "",
            cipher=cipher[0] if cipher else "",
        )


class DeferredEngine:
    """pyOpenSSL over memory BIOs, where mtlscore (not OpenSSL) decides the client chain.

    Without a ``judge``, OpenSSL's verify callback returns 1 for every certificate,
    so the handshake completes and the session core decides — the only way to let
    "allow invalid" through, since stdlib ``ssl`` exposes no verify callback. With a
    ``judge`` (``reject_at = "handshake"``, from a context made with ``judge=True``),
    the callback hands the chain to it and fails the handshake with the alert of the
    verdict's reason (mtlscore.gateway.handshake); a chain it cannot decide without I/O
    completes the handshake and is decided after it.

    The byte moving (handshake steps, BIO reads and writes, records) calls OpenSSL
    through the cffi binding pyOpenSSL itself uses, as its ``Connection`` methods do,
    minus a Python exception for every "want more bytes" (each flight, each record);
    every other outcome goes through pyOpenSSL's own error handling, so its errors,
    and the OpenSSL error queue it clears, are exactly pyOpenSSL's.
    """

    def __init__(self, ctx: SSL.Context, judge: Judge | None = None) -> None:
        from OpenSSL import SSL

        _load_binding()
        self._ssl = SSL
        self._conn = SSL.Connection(ctx, None)
        self._conn.set_accept_state()
        self._ptr = self._conn._ssl
        self._fed = False  # nothing to do before the ClientHello's first bytes
        self._judge = judge
        self._judged = False
        self.verdict: Verdict | None = None
        self._thumbprint: str | None = None
        if judge is not None:
            # Found again from the verify callback. A weak reference: the engine holds the
            # Connection, and a strong one back made a cycle that kept both (and OpenSSL's
            # SSL object, its buffers) alive after the connection ended, until the garbage
            # collector's next pass freed them (a gen-0 pass every ~60 connections).
            self._conn.set_app_data(weakref.ref(self))

    def _decide(self, store: Any) -> int:
        """The X509_V_ERR code to fail verification with, or -1 to let it pass (verify callback)."""
        if not self._judged:
            self._judged = True
            chain = _store_chain(store)
            self.verdict = self._judge(chain) if self._judge is not None and chain else None
            verdict = self.verdict
            if verdict is not None and not verdict.ok:
                with contextlib.suppress(CertificateRejected):  # the log line's, nothing more
                    self._thumbprint = x5t_s256(chain[0])
        verdict = self.verdict
        if verdict is None or verdict.ok or verdict.reason is None:
            return -1
        return _ALERT_CODES[handshake_alert(verdict.reason)]

    @staticmethod
    def context(
        trust: TrustStore,
        *,
        certificate: str | pathlib.Path,
        key: str | pathlib.Path,
        judge: bool = False,
    ) -> SSL.Context:
        """A pyOpenSSL server context for TLS 1.2+.

        ``judge=False``: verification always succeeds (the core decides after the
        handshake). ``judge=True``: a client certificate is required and each
        connection's engine judges the chain inside the handshake (give the engine a
        ``judge``).
        """
        try:
            from OpenSSL import SSL
        except ImportError:
            raise ConfigError(
                'tls_engine "deferred" (the default for allow_invalid_or_missing) needs pyOpenSSL: '
                'pip install "mtlscore[gateway]", or set tls_engine = "ssl"',
                key="server.tls_engine",
            ) from None
        check_server_files(certificate, key)
        _load_binding()
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        try:
            ctx.use_certificate_chain_file(str(certificate))
            ctx.use_privatekey_file(str(key))
            ctx.check_privatekey()
        except (SSL.Error, OSError) as exc:
            raise ConfigError(
                f"{certificate}, {key}: OpenSSL cannot load them: {exc}", key="server.certificate"
            ) from None
        if judge:
            # No certificate: OpenSSL's own alert (certificate_required in TLS 1.3).
            _set_judging_verify(ctx, SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
        else:
            # VERIFY_PEER without FAIL_IF_NO_PEER_CERT: ask, accept anything, decide later.
            _set_accepting_verify(ctx, SSL.VERIFY_PEER)
        ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        return ctx

    def feed(self, data: bytes) -> None:
        self._fed = True
        if data:
            # A memory BIO takes all of it (BIO_s_mem(3)); pyOpenSSL's bio_write, unchecked.
            _lib.BIO_write(self._conn._into_ssl, data, len(data))
        else:
            self._conn.bio_shutdown()

    def handshake(self) -> bool:
        if not self._fed:
            return False  # a server has nothing to say before the ClientHello
        result = _lib.SSL_do_handshake(self._ptr)
        if result == 1:
            return True
        if _lib.SSL_get_error(self._ptr, result) == _lib.SSL_ERROR_WANT_READ:
            return False
        try:
            self._conn._raise_ssl_error(self._ptr, result)  # pyOpenSSL's exception for it
        except self._ssl.WantReadError:
            return False
        except (self._ssl.Error, OSError) as exc:
            verdict = self.verdict
            if verdict is not None and not verdict.ok and verdict.reason is not None:
                detail = f"{verdict.detail} (alert {handshake_alert(verdict.reason)})"
                raise TLSHandshakeError(verdict.reason.value, detail, thumbprint=self._thumbprint) from None
            raise TLSHandshakeError(*handshake_reason(exc)) from None
        return True

    def outgoing(self) -> bytes:
        bio = self._conn._from_ssl
        size = _lib.BIO_get_mem_data(bio, _ffi.NULL)  # what is queued (BIO_s_mem(3))
        if size <= 0:
            return b""
        buf = _RAW(size)
        got = _lib.BIO_read(bio, buf, size)
        return _ffi.buffer(buf, got)[:] if got > 0 else b""

    def read(self) -> bytes | None:
        buf = _RAW(_RECORD)
        result = _lib.SSL_read(self._ptr, buf, _RECORD)
        if result > 0:
            data: bytes = _ffi.buffer(buf, result)[:]
            return data
        if _lib.SSL_get_error(self._ptr, result) == _lib.SSL_ERROR_WANT_READ:
            return None
        try:
            self._conn._raise_ssl_error(self._ptr, result)  # clears OpenSSL's error queue
        except self._ssl.WantReadError:
            return None
        except (self._ssl.ZeroReturnError, self._ssl.SysCallError, self._ssl.Error):
            pass
        return b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            # A memory BIO takes every record (SSL_write(3) returns all of it or fails).
            sent = _lib.SSL_write(self._ptr, _ffi.from_buffer(view), len(view))
            if sent <= 0:
                try:
                    self._conn._raise_ssl_error(self._ptr, sent)  # pyOpenSSL's error, queue cleared
                    raise self._ssl.Error("SSL_write wrote nothing")
                except self._ssl.Error as exc:
                    # The peer has gone (EOF or alert seen): report it as stdlib ssl does, an
                    # OSError, which the driver treats as "the client went away". Found by
                    # loadtest/run.py: clients that disconnect mid-request crashed the trio gateway.
                    raise OSError(f"TLS write failed: {exc!r}") from None
            view = view[sent:]

    def close(self) -> None:
        try:
            self._conn.shutdown()
        except (self._ssl.Error, OSError):
            pass

    def facts(self, peer: tuple[str, int]) -> TLSFacts:
        chain = _peer_chain(self._ptr)
        name = self._conn.get_servername()
        return TLSFacts(
            chain=chain,
            sni=name.decode("idna") if name else None,
            peer=peer,
            version=self._conn.get_protocol_version_name(),
            cipher=self._conn.get_cipher_name() or "",
        )


# -- OpenSSL through pyOpenSSL's cffi binding ---------------------------------------------
#
# Bound by _load_binding() when the first deferred context or engine is made (pyOpenSSL is
# the gateway extra: this module imports without it); the functions below run only after.

_RECORD = 65536  # bytes asked of SSL_read at once (four TLS records at most)
_ffi: Any = None
_lib: Any = None
_RAW: Callable[[int], Any] = bytearray
_CONNECTIONS: Any = None  # pyOpenSSL's SSL pointer -> Connection map


def _load_binding() -> None:
    global _ffi, _lib, _RAW, _CONNECTIONS
    if _lib is None:
        from OpenSSL import SSL
        from OpenSSL._util import ffi, lib

        # Not zero-filled: OpenSSL writes the bytes that are read back (as pyOpenSSL's recv).
        raw = ffi.new_allocator(should_clear_after_alloc=False)
        _ffi, _lib, _RAW, _CONNECTIONS = ffi, lib, lambda n: raw("char[]", n), SSL.Connection._reverse_mapping


def _x509_der(x509: Any) -> bytes:
    """The DER of an OpenSSL ``X509 *`` (i2d_X509_bio into a memory BIO, as pyOpenSSL's
    ``dump_certificate(FILETYPE_ASN1)``), without a Python object per certificate."""
    bio = _lib.BIO_new(_lib.BIO_s_mem())
    if bio == _ffi.NULL:
        raise MemoryError("BIO_new")
    try:
        if _lib.i2d_X509_bio(bio, x509) != 1:
            raise ValueError("i2d_X509_bio failed")
        data = _ffi.new("char **")
        size = _lib.BIO_get_mem_data(bio, data)
        der: bytes = _ffi.buffer(data[0], size)[:]
        return der
    finally:
        _lib.BIO_free(bio)


def _peer_chain(ssl_ptr: Any) -> tuple[bytes, ...]:
    """The certificates the client sent (DER, leaf first), as OpenSSL kept them."""
    chain: list[bytes] = []
    stack = _lib.SSL_get_peer_cert_chain(ssl_ptr)  # borrowed: freed with the connection
    if stack != _ffi.NULL:
        chain = [_x509_der(_lib.sk_X509_value(stack, i)) for i in range(_lib.sk_X509_num(stack))]
    leaf = _lib.SSL_get_peer_certificate(ssl_ptr)  # a new reference
    if leaf != _ffi.NULL:
        try:
            leaf_der = _x509_der(leaf)
        finally:
            _lib.X509_free(leaf)
        # Server side, OpenSSL's peer chain may omit the leaf (SSL_get_peer_cert_chain(3)).
        if not chain or chain[0] != leaf_der:
            chain.insert(0, leaf_der)
    return tuple(chain)


# -- the judging verify callback ------------------------------------------------------
#
# pyOpenSSL's set_verify callback can accept or refuse a certificate but cannot set the
# store context's error, and OpenSSL picks the alert from that error. So the judging
# context installs its own callback through the cffi binding pyOpenSSL itself uses (the
# same calls as pyOpenSSL's _VerifyHelper): one callback for the process, which finds
# the connection's engine from the SSL pointer.

_VERIFY_CALLBACK: Any = None


_ACCEPT_CALLBACK: Any = None


def _set_judging_verify(ctx: Any, mode: int) -> None:
    global _VERIFY_CALLBACK
    if _VERIFY_CALLBACK is None:
        _VERIFY_CALLBACK = _ffi.callback("int (*)(int, X509_STORE_CTX *)", _judging_verify)
    _lib.SSL_CTX_set_verify(ctx._context, mode, _VERIFY_CALLBACK)


def _set_accepting_verify(ctx: Any, mode: int) -> None:
    """Every certificate passes, as pyOpenSSL's ``set_verify`` with a callback answering True
    does, without the certificate and store objects its helper builds at each call."""
    global _ACCEPT_CALLBACK
    if _ACCEPT_CALLBACK is None:
        _ACCEPT_CALLBACK = _ffi.callback("int (*)(int, X509_STORE_CTX *)", _accepting_verify)
    _lib.SSL_CTX_set_verify(ctx._context, mode, _ACCEPT_CALLBACK)


def _accepting_verify(ok: int, store: Any) -> int:
    if not ok:
        _lib.X509_STORE_CTX_set_error(store, _lib.X509_V_OK)
    return 1


def _judging_verify(ok: int, store: Any) -> int:
    """OpenSSL's verify callback: called per certificate; the first call judges the chain."""
    if ok:
        # A certificate OpenSSL found nothing against: nothing to judge or change. The first
        # call always reports a fault (no anchor is loaded, so building the chain fails
        # first: x509_vfy.c verify_chain); the chain is judged there. Were it ever not,
        # the engine would hold no verdict and the session would decide after the handshake.
        return 1
    try:
        ssl_ptr = _lib.X509_STORE_CTX_get_ex_data(store, _lib.SSL_get_ex_data_X509_STORE_CTX_idx())
        conn = _CONNECTIONS.get(ssl_ptr)
        ref = conn.get_app_data() if conn is not None else None
        engine = ref() if isinstance(ref, weakref.ref) else None
        code = engine._decide(store) if isinstance(engine, DeferredEngine) else -1
    except Exception:  # noqa: BLE001 - never unwind through OpenSSL; decided after the handshake
        code = -1
    if code < 0:
        # OpenSSL's own verdict (no anchors are loaded: "unable to get local issuer") is
        # not ours: pass, as the non-judging context does.
        _lib.X509_STORE_CTX_set_error(store, _lib.X509_V_OK)
        return 1
    _lib.X509_STORE_CTX_set_error(store, code)
    return 0


def _store_chain(store: Any) -> tuple[bytes, ...]:
    """The chain OpenSSL built from what the client sent (DER, leaf first).

    The certificates the client sent that link up from its leaf; unrelated extras
    are not in it (OpenSSL 3.0's binding has no X509_STORE_CTX_get0_untrusted).
    """
    stack = _lib.X509_STORE_CTX_get1_chain(store)
    if stack == _ffi.NULL:
        return ()
    try:
        members = [_lib.sk_X509_value(stack, i) for i in range(_lib.sk_X509_num(stack))]
        try:
            return tuple(_x509_der(x) for x in members)
        finally:
            for x in members:  # get1: each member's reference is ours
                _lib.X509_free(x)
    finally:
        _lib.sk_X509_free(stack)


def deferred_available() -> bool:
    """Whether pyOpenSSL (the deferred engine) can be imported."""
    try:
        import OpenSSL.SSL  # noqa: F401
    except ImportError:
        return False
    return True


def engine_factory(server: ServerConfig, trust: TrustStore, judge: Judge | None = None) -> Callable[[], TLSEngine]:
    """A maker of fresh engines for ``server``'s TLS engine and mode; raises ConfigError.

    ``judge`` decides chains in the handshake when ``server.rejects_in_handshake``.
    ``tls_engine = "auto"`` asking for the deferred engine only to reject in the
    handshake falls back to stdlib ``ssl`` when pyOpenSSL is missing (startup warns).
    """
    # FAPI 2.0 Security Profile §5.2.1: TLS 1.2 only with the RFC 9325 §4.2 suites; TLS 1.3 as is
    # (its suites are not set by the cipher list). Accounts with profile = "fapi2" check it too.
    fapi = ":".join(sorted(FAPI2_TLS12_CIPHERS)) if server.tls_profile == "fapi2" else None
    engine = server.effective_tls_engine
    fallback = (
        server.tls_engine == "auto"
        and server.mode == "reject_invalid"
        and not server.proxies
        and not deferred_available()
    )
    if engine == "deferred" and not fallback:
        judging = server.rejects_in_handshake and judge is not None
        dctx = DeferredEngine.context(trust, certificate=server.certificate, key=server.key, judge=judging)
        if fapi is not None:
            dctx.set_cipher_list(fapi.encode("ascii"))
        if judging:
            return lambda: DeferredEngine(dctx, judge)
        return lambda: DeferredEngine(dctx)
    sctx = server_context(trust, certificate=server.certificate, key=server.key, mode=server.handshake_mode)
    if fapi is not None:
        sctx.minimum_version = ssl.TLSVersion.TLSv1_2
        sctx.set_ciphers(fapi)
    return lambda: StdlibEngine(sctx)
