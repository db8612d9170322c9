"""The ``[server]`` table of the configuration file (docs/reference.md#configuration-file): the gateway's settings.

Pure: paths are joined to ``base_dir`` (config loading passes the configuration's
folder, already resolved) but not opened or resolved here (the runtime loads the
certificate and key and reports a missing file as a :class:`ConfigError` naming
``server.certificate`` / ``server.key``).
"""

from __future__ import annotations

import ipaddress
import math
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..identity.jwks import JwksLimits, limits_from_config
from ..proxy.trusted import ProxyPolicy, TrustedProxy, proxies_from_config
from ..reasons import ConfigError

__all__ = [
    "AUTH_CACHE_ENTRIES",
    "DEFAULT_STRIP_REQUEST_HEADERS",
    "MAX_AUTH_CACHE_ENTRIES",
    "FORWARD_FORMATS",
    "MAX_WORKERS",
    "MODES",
    "REJECT_AT",
    "REQUEST_TARGET_FORMS",
    "EVENT_LOOPS",
    "RESTART_KEYS",
    "TLS_ENGINES",
    "WORKERS_SOCKETS",
    "Address",
    "ForwardCertificate",
    "ServerConfig",
    "Upstream",
    "server_from_config",
]

Mode = Literal["reject_invalid", "allow_invalid_or_missing"]
MODES: tuple[Mode, ...] = get_args(Mode)  # the Literal's values, written once
# "ssl": stdlib ssl verifies at the TLS layer too; "deferred": a TLS engine that
# accepts any chain (pyOpenSSL) so the core decides every case; "auto": ssl for
# reject_invalid, deferred for allow_invalid_or_missing.
TLS_ENGINES: tuple[str, ...] = ("auto", "ssl", "deferred")
# Where reject_invalid refuses: in the TLS handshake, with the alert matching the reason
# (mtlscore.gateway.handshake; what load balancers do), or after it with a JSON 403 naming it.
REJECT_AT: tuple[str, ...] = ("handshake", "http")
RUNTIMES: tuple[str, ...] = ("asyncio", "trio")
# [server] event_loop, the asyncio runtime's loop: "auto" (uvloop when it is installed, else
# asyncio's own; the runtime looks, the core reads no OS state), "asyncio" or "uvloop".
EVENT_LOOPS: tuple[str, ...] = ("auto", "asyncio", "uvloop")
# Default connections at once per source address: strict handshake, lenient handshake.
ADDRESS_LIMIT = 256
LENIENT_ADDRESS_LIMIT = 64
# Keys a reload cannot apply: the listeners and the event loop exist once per process.
RESTART_KEYS: tuple[str, ...] = ("listen", "admin_listen", "runtime", "event_loop", "workers", "workers_socket")
# [server] workers: at most this many processes (a typo such as 1000 is a ConfigError, not a fork storm).
MAX_WORKERS = 256
# [server] auth_cache_entries: verdicts of forwarded certificates kept (gateway/forwarded_cache.py).
# Each entry holds at most 16 KiB of header bytes as its key plus the parsed chain; the cap
# keeps a typo (an extra zero or three) from promising gigabytes.
AUTH_CACHE_ENTRIES = 2048
MAX_AUTH_CACHE_ENTRIES = 1_000_000
# [server] workers_socket: how the workers share the port (mtlscore.runtimes.workers). "reuseport":
# one SO_REUSEPORT socket per worker, the kernel spreading connections by hash; "inherit": one
# socket bound by the parent, accepted on by every worker; "auto": reuseport where the kernel
# balances such a group (Linux; the runtime decides, the core reads no OS state), else inherit.
WORKERS_SOCKETS: tuple[str, ...] = ("auto", "reuseport", "inherit")
# RFC 9112 §3.2: the request-target forms a client may use. "origin" is always on;
# authority-form (CONNECT) never is: the gateway is not a tunnel.
REQUEST_TARGET_FORMS: tuple[str, ...] = ("origin", "absolute", "asterisk")

# [server] forward_certificate: how the client certificate travels to the upstream.
# format -> its default header. rfc9440: RFC 9440 Client-Cert (the leaf) with
# Client-Cert-Chain; nginx_escaped: URL-escaped PEM of the leaf, as nginx's
# $ssl_client_escaped_cert; pem_base64: the leaf's PEM text, base64 (one header line);
# xfcc: one Envoy x-forwarded-client-cert element (Hash, Cert, Chain, Subject, URI, DNS).
FORWARD_FORMATS: dict[str, str] = {
    "rfc9440": "Client-Cert",
    "nginx_escaped": "X-SSL-Client-Cert",
    "pem_base64": "X-Client-Cert-PEM",
    "xfcc": "X-Forwarded-Client-Cert",
}
# Headers a forward_certificate header may not take: the gateway's verdict headers,
# framing and routing, and the addresses it writes itself.
_RESERVED_FORWARD = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "trailer",
    "keep-alive", "proxy-connection", "expect", "authorization", "cookie",
    "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-real-ip",
    "x-client-cert-present", "x-client-cert-chain-verified", "x-client-cert-error", "x-client-cert-hash",
    "x-client-cert-serial-number", "x-client-cert-spiffe", "x-client-cert-uri-sans",
    "x-client-cert-dnsname-sans", "x-client-cert-valid-not-before", "x-client-cert-valid-not-after",
})


@dataclass(frozen=True, slots=True)
class ForwardCertificate:
    """One way the client certificate is sent upstream: a format under a header name.

    ``chain_header``: rfc9440 only, the header of the rest of the chain (RFC 9440
    ``Client-Cert-Chain``).
    """

    format: str
    header: str
    chain_header: str | None = None

    @property
    def headers(self) -> tuple[str, ...]:
        return (self.header, self.chain_header) if self.chain_header else (self.header,)


# Identity-looking and address-looking request headers removed from every client
# request (on top of the ones the gateway always owns, mtlscore.gateway.forwarding): what a
# proxy, a TLS terminator or an auth module sets, and so what an upstream may believe.
# "*" at the end matches a prefix; "_" and "-" are the same (CGI/WSGI merge them).
DEFAULT_STRIP_REQUEST_HEADERS: tuple[str, ...] = (
    "Forwarded",
    "X-Forwarded-*",
    "X-Real-IP",
    "X-Original-Forwarded-For",
    "True-Client-IP",
    "X-Cluster-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Client-*",
    "X-SSL-*",
    "SSL-Client-*",
    "X-ARR-ClientCert",
    "X-Amzn-Mtls-*",
    "Remote-User",
    "Remote-Addr",
    "X-Remote-User",
    "X-Remote-Addr",
    "X-Authenticated-User",
    "X-Original-URL",
    "X-Rewrite-URL",
)
_HEADER_PATTERN = re.compile(r"[!#$%&'+\-.^_`|~0-9A-Za-z]+\*?")

_HOSTPORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-_]+)):(?P<port>\d{1,5})$")
_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-_]+))"
    r"(?::(?P<port>\d{1,5}))?(?P<path>/[^?#]*)?$"
)


@dataclass(frozen=True, slots=True)
class Address:
    """A host and port to listen on or connect to (port 0: any free port)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where accepted requests go: HTTP/1.1 on a host and port, under a path prefix;
    ``tls``: over TLS (``https://``; the runtime checks the upstream's name against ``host``)."""

    host: str
    port: int
    prefix: str = ""
    tls: bool = False

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.tls else 80) else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the gateway needs beyond trust, policy and accounts.

    Timeouts are seconds; limits are bytes. Defaults suit a small API gateway.
    """

    certificate: pathlib.Path
    key: pathlib.Path
    listen: Address = Address("127.0.0.1", 8443)
    runtime: str = "asyncio"
    event_loop: str = "auto"
    mode: Mode = "reject_invalid"
    tls_engine: str = "auto"
    # reject_invalid only: "handshake" (the deferred engine fails the handshake with the
    # reason's alert) or "http" (403 JSON). Trusted proxies make it "http" (per request).
    reject_at: str = "handshake"
    upstream: Upstream | None = None
    # An https:// upstream: the CA bundle its certificate is verified with (None: the
    # system's), and the certificate (chain) and key the gateway presents to it.
    upstream_ca: pathlib.Path | None = None
    upstream_certificate: pathlib.Path | None = None
    upstream_key: pathlib.Path | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # The trusted proxies themselves (mtlscore.proxy.trusted): whose certificate headers the
    # gateway believes, per request, instead of the connection's own certificate.
    proxies: tuple[TrustedProxy, ...] = ()
    admin_listen: Address | None = None
    # Worker processes on the one listening socket (mtlscore.runtimes.workers): a number, or
    # "auto" (one per usable core, counted by the runtime: the core reads no OS state). 1: the
    # gateway is one process, no supervisor.
    workers: int | Literal["auto"] = 1
    # How the workers share the listening port (WORKERS_SOCKETS); ignored with one process.
    workers_socket: str = "auto"
    # Absolute deadlines (docs/hardening.md has the table). The TLS handshake, from accept.
    handshake_timeout: float = 10.0
    # The whole request head, from its first byte (a trickle does not extend it: slowloris).
    header_timeout: float = 15.0
    # The request body: this long from its start, plus one second per ``min_body_rate``
    # bytes received (Apache mod_reqtimeout's "body=…,MinRate=…").
    body_timeout: float = 30.0
    min_body_rate: int = 1024
    # Every send to the client or the upstream (a peer that does not read).
    write_timeout: float = 30.0
    # Waiting for a request's first byte: after the handshake and between keep-alive requests.
    keepalive_timeout: float = 15.0
    # After this age a connection closes after its current response (``Connection: close``),
    # so reloaded trust and CRLs reach long-lived keep-alive connections (0: no limit).
    max_connection_age: float = 3600.0
    upstream_connect_timeout: float = 5.0
    # Waiting for each piece of the upstream's response.
    upstream_timeout: float = 30.0
    # Idle upstream connections kept for the next request, whichever client sends it
    # (nginx's upstream ``keepalive``): at most this many per upstream (0: a new
    # connection per client connection), each closed after this long unused. Below the
    # keep-alive timeout of common upstream servers (uvicorn, Node: 5 s), so the gateway
    # lets a connection go before the upstream does.
    upstream_keepalive: int = 32
    upstream_keepalive_timeout: float = 4.0
    shutdown_grace: float = 10.0
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 10 * 1024 * 1024
    max_connections: int = 1024
    # Connections at once from one source address (None: 256, or 64 when the handshake is
    # lenient, see :attr:`address_limit`); trusted proxies' addresses are exempt.
    max_connections_per_address: int | None = None
    # Header carrying the mapped account to the upstream.
    account_header: str = "X-Mtls-Account"
    # RFC 9440 Client-Cert / Client-Cert-Chain towards the upstream.
    forward_client_cert: bool = True
    # The ten GCP-style X-Client-Cert-* headers describing the verdict (present, chain
    # verified, error, hash, serial, SANs, validity) towards the upstream.
    forward_verdict_headers: bool = True
    # forward_certificate: the formats and headers the certificate travels in (empty:
    # the RFC 9440 pair, as forward_client_cert says).
    forward_certificate: tuple[ForwardCertificate, ...] = ()
    # Seconds between checks of the config file's mtime (0: only SIGHUP reloads).
    reload_poll: float = 2.0
    # Client request headers removed before forwarding (names; "Prefix-*" patterns).
    strip_request_headers: tuple[str, ...] = DEFAULT_STRIP_REQUEST_HEADERS
    # The request-target forms accepted besides origin-form (RFC 9112 §3.2).
    request_target_forms: frozenset[str] = frozenset({"origin"})
    # The expiry radar (mtlscore.gateway.radar): how many certificates it remembers (least recently
    # seen go first), and how long before notAfter a certificate is warned about, once.
    radar_max_certificates: int = 10_000
    expiry_warning_days: float = 30.0
    # A certificate seen within ``radar_active`` seconds is in use: it counts in the expiry
    # gauges and for the reload guard (older ones stay in the record and in /certs).
    radar_active: float = 7 * 86400.0
    # A reload that would lock out an account active in that sense is refused
    # (mtlscore.gateway.preview); the running configuration's setting decides.
    reload_guard: bool = False
    # The cache of keys fetched from jwks_uri values (accounts' token keys, self-signed clients).
    jwks: JwksLimits = field(default_factory=JwksLimits)
    # "fapi2": the handshake itself offers only what FAPI 2.0 allows (TLS 1.2 with the
    # RFC 9325 §4.2 AEAD suites, or TLS 1.3); "default": the TLS library's defaults.
    tls_profile: str = "default"
    # Where the radar's record is kept across restarts: read at start, written at shutdown.
    radar_file: pathlib.Path | None = None
    # ``mode = "auth"``: an auth service for an edge (nginx auth_request, Envoy ext_authz,
    # Traefik ForwardAuth, Caddy forward_auth): every request is a question about the
    # certificate a trusted proxy forwarded, answered 200 with identity headers or 401/403
    # with the reason; nothing is forwarded. The certificate rules are reject_invalid's.
    auth_service: bool = False
    # The forwarded-certificate cache (gateway/forwarded_cache.py: auth mode, and proxy mode
    # behind trusted proxies): at most this many accepted verdicts, least recently used out
    # first; 0: none kept, every forwarded certificate is parsed and validated each time.
    auth_cache_entries: int = AUTH_CACHE_ENTRIES

    @property
    def effective_tls_engine(self) -> str:
        """``ssl`` or ``deferred``: what ``auto`` means for this mode.

        Deferred for allow mode, behind trusted proxies, and for rejecting in the
        handshake (stdlib ``ssl`` can neither let an invalid chain through nor run the
        validator inside the handshake). The runtime falls back to ``ssl`` with a
        warning when ``auto`` asks for deferred to reject and pyOpenSSL is missing.
        """
        if self.tls_engine != "auto":
            return self.tls_engine
        deferred = self.mode == "allow_invalid_or_missing" or self.proxies or self.rejects_in_handshake
        return "deferred" if deferred else "ssl"

    @property
    def rejects_in_handshake(self) -> bool:
        """Whether an invalid or missing client certificate fails the TLS handshake itself."""
        return (
            self.mode == "reject_invalid"
            and self.reject_at == "handshake"
            and not self.proxies
            and self.tls_engine != "ssl"
        )

    @property
    def address_limit(self) -> int:
        """Connections at once from one source address: the configured value, or the default.

        Tighter when the handshake is lenient (``handshake_mode``): there a connection
        costs nothing to open, a certificate is not needed to hold a slot.
        """
        if self.max_connections_per_address is not None:
            return self.max_connections_per_address
        return LENIENT_ADDRESS_LIMIT if self.handshake_mode == "allow_invalid_or_missing" else ADDRESS_LIMIT

    @property
    def handshake_mode(self) -> Mode:
        """The mode of the TLS handshake itself.

        With trusted proxies, a connection without a (valid) client certificate must
        still complete — a proxy speaks for its clients in headers — so the handshake
        is lenient and ``reject_invalid`` is enforced per request instead.
        """
        return "allow_invalid_or_missing" if self.proxies else self.mode

    @property
    def proxy_policy(self) -> ProxyPolicy | None:
        """Who may forward certificate headers (None: nobody; the gateway strips them)."""
        if not self.proxies:
            return None
        # From anyone else, such headers are dropped (they are stripped before forwarding).
        return ProxyPolicy(self.proxies, on_untrusted="ignore")


def parse_address(value: object, *, key: str) -> Address:
    """``"host:port"`` or ``"[v6]:port"`` as an :class:`Address`; raise ConfigError."""
    m = _HOSTPORT.match(value) if isinstance(value, str) else None
    if not m or int(m.group("port")) > 65535:
        raise ConfigError(f"expected 'host:port' (e.g. '127.0.0.1:8443'), not {value!r}", key=key)
    return Address(m.group("v6") or m.group("host"), int(m.group("port")))


def parse_upstream(value: object, *, key: str = "server.upstream") -> Upstream:
    """``http(s)://host[:port][/prefix]`` as an :class:`Upstream`; raise ConfigError."""
    m = _URL.match(value) if isinstance(value, str) else None
    if not m:
        raise ConfigError(f"expected a URL like 'http://127.0.0.1:8080', not {value!r}", key=key)
    scheme = m.group("scheme").lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"expected an http:// or https:// URL, not {scheme}://", key=key)
    tls = scheme == "https"
    port = int(m.group("port") or (443 if tls else 80))
    if not 0 < port <= 65535:
        raise ConfigError(f"port {port} out of range", key=key)
    return Upstream(m.group("v6") or m.group("host"), port, (m.group("path") or "").rstrip("/"), tls)


def _number(table: Mapping[str, Any], name: str, default: float, *, integer: bool = False) -> Any:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError("must be a number", key=f"server.{name}")
    if integer and not isinstance(value, int):
        raise ConfigError("must be an integer", key=f"server.{name}")
    if isinstance(value, float) and not math.isfinite(value):  # TOML allows inf/nan; a nan timeout never fires
        raise ConfigError("must be a finite number", key=f"server.{name}")
    if value < 0 or (value == 0 and name not in ("reload_poll_seconds", "max_connection_age_seconds",
                                                  "upstream_keepalive")):
        raise ConfigError("must be positive", key=f"server.{name}")
    return value


def _workers(table: Mapping[str, Any]) -> int | Literal["auto"]:
    value = table.get("workers", 1)
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise ConfigError(
            f'must be a whole number from 1 to {MAX_WORKERS}, or "auto" (one per usable core); got {value!r}',
            key="server.workers",
        )
    return value


def _auth_cache_entries(table: Mapping[str, Any]) -> int:
    value = table.get("auth_cache_entries", AUTH_CACHE_ENTRIES)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AUTH_CACHE_ENTRIES:
        raise ConfigError(
            f"must be a whole number from 0 (no cache) to {MAX_AUTH_CACHE_ENTRIES:,}; got {value!r}",
            key="server.auth_cache_entries",
        )
    return value


def _choice(table: Mapping[str, Any], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = table.get(name, default)
    if value not in choices:
        raise ConfigError(f"must be one of {', '.join(choices)}; got {value!r}", key=f"server.{name}")
    return str(value)


_KNOWN = {
    "listen",
    "certificate",
    "key",
    "runtime",
    "event_loop",
    "mode",
    "tls_engine",
    "reject_at",
    "upstream",
    "upstream_ca",
    "upstream_certificate",
    "upstream_key",
    "trusted_proxies",
    "admin_listen",
    "handshake_timeout_seconds",
    "header_timeout_seconds",
    "body_timeout_seconds",
    "min_body_bytes_per_second",
    "write_timeout_seconds",
    "keepalive_timeout_seconds",
    "max_connection_age_seconds",
    "upstream_connect_timeout_seconds",
    "upstream_timeout_seconds",
    "upstream_keepalive",
    "upstream_keepalive_timeout_seconds",
    "shutdown_grace_seconds",
    "max_header_bytes",
    "max_body_bytes",
    "max_connections",
    "max_connections_per_address",
    "account_header",
    "forward_client_cert",
    "forward_verdict_headers",
    "forward_certificate",
    "reload_poll_seconds",
    "strip_request_headers",
    "request_target_forms",
    "radar_max_certificates",
    "expiry_warning_days",
    "reload_guard",
    "radar_active_seconds",
    "jwks",
    "tls_profile",
    "radar_file",
    "workers",
    "workers_socket",
    "auth_cache_entries",
}


def _strip_request_headers(table: Mapping[str, Any]) -> tuple[str, ...]:
    value = table.get("strip_request_headers", list(DEFAULT_STRIP_REQUEST_HEADERS))
    if not isinstance(value, list):
        raise ConfigError("must be a list of header names ('X-Client-*' matches a prefix)",
                          key="server.strip_request_headers")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not _HEADER_PATTERN.fullmatch(name):
            raise ConfigError(
                f"must be a header name, or a prefix ending in '*' such as 'X-Client-*'; got {name!r}",
                key=f"server.strip_request_headers[{i}]",
            )
    return tuple(value)


def _target_forms(table: Mapping[str, Any]) -> frozenset[str]:
    value = table.get("request_target_forms", ["origin"])
    key = "server.request_target_forms"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"must be a list of {', '.join(REQUEST_TARGET_FORMS)}", key=key)
    for form in value:
        if form not in REQUEST_TARGET_FORMS:
            raise ConfigError(
                f"unknown form {form!r} (known: {', '.join(REQUEST_TARGET_FORMS)}; "
                "authority-form/CONNECT is never accepted)",
                key=key,
            )
    if "origin" not in value:
        raise ConfigError("must include 'origin' (RFC 9112 §3.2.1: every client uses it)", key=key)
    return frozenset(value)


def _forward_certificate(table: Mapping[str, Any], account_header: str) -> tuple[ForwardCertificate, ...]:
    """``forward_certificate``: one table or an array of tables ``{format, header[, chain_header]}``."""
    value = table.get("forward_certificate")
    if value is None:
        return ()
    if "forward_client_cert" in table:
        raise ConfigError("give forward_certificate or forward_client_cert, not both "
                          "(list {format = \"rfc9440\"} to keep Client-Cert)", key="server.forward_certificate")
    entries = [value] if isinstance(value, Mapping) else value
    if not isinstance(entries, list) or not entries:
        raise ConfigError("must be a table {format = …, header = …} or an array of them",
                          key="server.forward_certificate")
    out: list[ForwardCertificate] = []
    taken: dict[str, str] = {_normal_name(account_header): "server.account_header"}
    for i, entry in enumerate(entries):
        key = f"server.forward_certificate[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError("must be a table {format = …, header = …}", key=key)
        unknown = set(entry) - {"format", "header", "chain_header"}
        if unknown:
            raise ConfigError(f"unknown key {sorted(unknown)[0]!r} (known: format, header, chain_header)", key=key)
        fmt = entry.get("format")
        if fmt not in FORWARD_FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORWARD_FORMATS)}; got {fmt!r}", key=f"{key}.format")
        header = entry.get("header", FORWARD_FORMATS[fmt])
        chain = entry.get("chain_header")
        if chain is not None and fmt != "rfc9440":
            raise ConfigError("only for format rfc9440 (the other formats carry one header)",
                              key=f"{key}.chain_header")
        if fmt == "rfc9440" and chain is None:
            chain = "Client-Cert-Chain" if header == "Client-Cert" else f"{header}-Chain"
        for name, value in (("header", header), ("chain_header", chain)):
            if value is None:
                continue
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-]*", value):
                raise ConfigError(f"must be an HTTP header name (letters, digits, '-'); got {value!r}",
                                  key=f"{key}.{name}")
            normal = _normal_name(value)
            if normal in _RESERVED_FORWARD:
                raise ConfigError(f"{value} is the gateway's own (or HTTP framing): choose another name",
                                  key=f"{key}.{name}")
            if normal in taken:
                raise ConfigError(f"{value} is already used by {taken[normal]}", key=f"{key}.{name}")
            taken[normal] = f"{key}.{name}"
        out.append(ForwardCertificate(str(fmt), header, chain))
    return tuple(out)


def _normal_name(name: str) -> str:
    # As the request filter compares names: case-insensitive, "_" as "-".
    return name.lower().replace("_", "-")


def _upstream_files(
    table: Mapping[str, Any], upstream: Upstream | None, base_dir: pathlib.Path
) -> dict[str, pathlib.Path | None]:
    """``upstream_ca`` / ``upstream_certificate`` / ``upstream_key``, resolved (not opened:
    the runtime loads them and names the key and file when one cannot be used)."""
    out: dict[str, pathlib.Path | None] = {}
    for name in ("upstream_ca", "upstream_certificate", "upstream_key"):
        value = table.get(name)
        if value is None:
            out[name] = None
            continue
        if not isinstance(value, str) or not value:
            raise ConfigError("must be the path of a PEM file", key=f"server.{name}")
        if upstream is None or not upstream.tls:
            raise ConfigError("only for an https:// upstream", key=f"server.{name}")
        out[name] = base_dir / value
    if (out["upstream_certificate"] is None) != (out["upstream_key"] is None):
        missing = "upstream_key" if out["upstream_key"] is None else "upstream_certificate"
        raise ConfigError("required with the other: the gateway's client certificate and its key go together",
                          key=f"server.{missing}")
    return out


def server_from_config(table: object, *, base_dir: pathlib.Path) -> ServerConfig:
    """Build a :class:`ServerConfig` from the ``[server]`` table.

    Raises :class:`ConfigError` naming the key for unknown keys, missing
    ``certificate``/``key`` and bad values.
    """
    if not isinstance(table, Mapping):
        raise ConfigError("must be a table", key="server")
    for name in table:
        if name not in _KNOWN:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(_KNOWN))})", key=f"server.{name}")
    paths: dict[str, pathlib.Path] = {}
    for name in ("certificate", "key"):
        value = table.get(name)
        if not isinstance(value, str) or not value:
            raise ConfigError("required: the path of the server's PEM " + name, key=f"server.{name}")
        paths[name] = base_dir / value
    proxies = table.get("trusted_proxies", [])
    if not isinstance(proxies, list):
        raise ConfigError("must be a list of CIDR networks or proxy tables", key="server.trusted_proxies")
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    trusted: list[TrustedProxy] = []
    for i, p in enumerate(proxies):
        if isinstance(p, str):
            try:
                net = ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise ConfigError(f"{p!r} is not an IP network", key="server.trusted_proxies") from None
            nets.append(net)
            trusted.append(TrustedProxy(name=p, networks=(net,)))
            continue
        try:
            (proxy,) = proxies_from_config([p])
        except ConfigError as exc:
            sub = (exc.key or "trusted_proxies").replace("trusted_proxies[0]", f"trusted_proxies[{i}]")
            raise ConfigError(exc.message, key=f"server.{sub}") from None
        nets.extend(proxy.networks)
        trusted.append(proxy)
    runtime = _choice(table, "runtime", "asyncio", RUNTIMES)
    event_loop = _choice(table, "event_loop", "auto", EVENT_LOOPS)
    if runtime == "trio" and event_loop == "uvloop":
        raise ConfigError('uvloop is an asyncio event loop: with runtime = "trio", remove event_loop',
                          key="server.event_loop")
    account_header = table.get("account_header", "X-Mtls-Account")
    if not isinstance(account_header, str) or not re.fullmatch(r"[A-Za-z0-9\-]+", account_header):
        raise ConfigError("must be an HTTP header name", key="server.account_header")
    if _normal_name(account_header) in _RESERVED_FORWARD:
        # Framing, routing, credentials, the addresses and verdict headers the gateway writes:
        # the account there would break the request (a Content-Length of "partner-abc"), or
        # strip the client's own copy (Authorization) as a spoofed identity header.
        raise ConfigError(f"{account_header!r} is a header the gateway or HTTP reserves: name another "
                          "(the default is X-Mtls-Account)", key="server.account_header")
    forward = table.get("forward_client_cert", True)
    if not isinstance(forward, bool):
        raise ConfigError("must be true or false", key="server.forward_client_cert")
    verdict_headers = table.get("forward_verdict_headers", True)
    if not isinstance(verdict_headers, bool):
        raise ConfigError("must be true or false", key="server.forward_verdict_headers")
    mode = _choice(table, "mode", "reject_invalid", (*MODES, "auth"))
    auth_service = mode == "auth"
    if auth_service:
        mode = "reject_invalid"  # an auth service's answer is the decision: nothing is let through invalid
        if not trusted:
            # Only a trusted proxy's forwarded certificate is a question worth answering; a
            # client asking directly has nothing to be let into.
            raise ConfigError('mode = "auth" needs trusted_proxies: the edges whose certificate headers '
                              "are answered", key="server.mode")
        if table.get("upstream") is not None:
            raise ConfigError('mode = "auth" answers the edge and forwards nothing: remove upstream',
                              key="server.upstream")
    radar_file = table.get("radar_file")
    if radar_file is not None and (not isinstance(radar_file, str) or not radar_file):
        raise ConfigError("must be a file name (the radar's record, kept across restarts)", key="server.radar_file")
    guard = table.get("reload_guard", False)
    if not isinstance(guard, bool):
        raise ConfigError("must be true or false", key="server.reload_guard")
    tls_engine = _choice(table, "tls_engine", "auto", TLS_ENGINES)
    reject_at = _choice(table, "reject_at", "handshake", REJECT_AT)
    if "reject_at" in table and reject_at == "handshake":
        # Said explicitly: refuse what cannot be honoured rather than quietly answer 403s.
        if tls_engine == "ssl":
            raise ConfigError(
                'needs tls_engine "deferred" or "auto": stdlib ssl cannot run the validator inside '
                'the handshake (or set reject_at = "http")',
                key="server.reject_at",
            )
        if trusted:
            raise ConfigError(
                "a trusted proxy's connection carries other clients' requests, so rejection is per "
                'request: set reject_at = "http"',
                key="server.reject_at",
            )
    upstream = parse_upstream(table["upstream"]) if table.get("upstream") is not None else None
    admin = table.get("admin_listen")
    upstream_files = _upstream_files(table, upstream, base_dir)
    return ServerConfig(
        certificate=paths["certificate"],
        key=paths["key"],
        listen=parse_address(table.get("listen", "127.0.0.1:8443"), key="server.listen"),
        runtime=runtime,
        event_loop=event_loop,
        mode=mode,  # type: ignore[arg-type]
        tls_engine=tls_engine,
        reject_at=reject_at,
        upstream=upstream,
        **upstream_files,
        trusted_proxies=tuple(nets),
        proxies=tuple(trusted),
        admin_listen=parse_address(admin, key="server.admin_listen") if admin is not None else None,
        workers=_workers(table),
        workers_socket=_choice(table, "workers_socket", "auto", WORKERS_SOCKETS),
        handshake_timeout=_number(table, "handshake_timeout_seconds", 10.0),
        header_timeout=_number(table, "header_timeout_seconds", 15.0),
        body_timeout=_number(table, "body_timeout_seconds", 30.0),
        min_body_rate=_number(table, "min_body_bytes_per_second", 1024, integer=True),
        write_timeout=_number(table, "write_timeout_seconds", 30.0),
        keepalive_timeout=_number(table, "keepalive_timeout_seconds", 15.0),
        max_connection_age=_number(table, "max_connection_age_seconds", 3600.0),
        upstream_connect_timeout=_number(table, "upstream_connect_timeout_seconds", 5.0),
        upstream_timeout=_number(table, "upstream_timeout_seconds", 30.0),
        upstream_keepalive=_number(table, "upstream_keepalive", 32, integer=True),
        upstream_keepalive_timeout=_number(table, "upstream_keepalive_timeout_seconds", 4.0),
        shutdown_grace=_number(table, "shutdown_grace_seconds", 10.0),
        max_header_bytes=_number(table, "max_header_bytes", 16 * 1024, integer=True),
        max_body_bytes=_number(table, "max_body_bytes", 10 * 1024 * 1024, integer=True),
        max_connections=_number(table, "max_connections", 1024, integer=True),
        max_connections_per_address=(
            _number(table, "max_connections_per_address", 0, integer=True)
            if "max_connections_per_address" in table
            else None
        ),
        account_header=account_header,
        forward_client_cert=forward,
        forward_verdict_headers=verdict_headers,
        forward_certificate=_forward_certificate(table, account_header),
        reload_poll=_number(table, "reload_poll_seconds", 2.0),
        strip_request_headers=_strip_request_headers(table),
        request_target_forms=_target_forms(table),
        radar_max_certificates=_number(table, "radar_max_certificates", 10_000, integer=True),
        expiry_warning_days=_number(table, "expiry_warning_days", 30.0),
        reload_guard=guard,
        radar_active=_number(table, "radar_active_seconds", 7 * 86400.0),
        jwks=limits_from_config(table.get("jwks", {})),
        tls_profile=_choice(table, "tls_profile", "default", ("default", "fapi2")),
        radar_file=base_dir / radar_file if radar_file is not None else None,
        auth_service=auth_service,
        auth_cache_entries=_auth_cache_entries(table),
    )
