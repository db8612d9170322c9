"""Trusted proxies: whose certificate headers may be believed, and what to validate.

A certificate header is only as good as whoever set it. An app that believes a
``Client-Cert`` header sent by the client itself has no authentication at all.
So headers are read only from the immediate peer when it is a configured proxy,
recognised by its address (CIDR) and/or by its own mTLS certificate (pinned);
from anyone else, their presence is recorded as ``untrusted_proxy``.

:meth:`ProxyPolicy.decide` is sans-IO: peer address, the peer's TLS chain and
the request headers in, one of :class:`UseTls`, :class:`UseForwarded` or
:class:`Reject` out.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from ..decision.verdict import Verdict
from ..identity.identity import Identity
from ..identity.identity_map import IdentityResolver
from ..reasons import CertificateRejected, ConfigError, Reason
from ..x509.cert import Certificate
from . import headers as h
from .basic_auth import PasswordHash, ProxyCredentials

__all__ = [
    "DEFAULT_HEADER_NAMES",
    "ClientAddress",
    "FromProxy",
    "HeaderFormat",
    "ProxyPolicy",
    "Reject",
    "TrustedProxy",
    "UseForwarded",
    "UseTls",
    "decision_verdict",
    "map_identity",
    "peer_address",
    "proxies_from_config",
]

HeaderFormat = Literal["rfc9440", "nginx", "nginx_legacy", "xfcc", "alb", "alb_leaf"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The header each format is read from unless the proxy names another.
DEFAULT_HEADER_NAMES: Mapping[str, str] = {
    "rfc9440": "client-cert",
    "nginx": "x-ssl-client-cert",
    "nginx_legacy": "x-ssl-client-cert",
    "xfcc": "x-forwarded-client-cert",
    "alb": "x-amzn-mtls-clientcert",
    "alb_leaf": "x-amzn-mtls-clientcert-leaf",
}


# RFC 9110 §5.1: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Enough for any real chain of proxies; a larger hop is a typo.
MAX_CLIENT_ADDRESS_HOP = 32


def _network(value: Any) -> IPNetwork:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        raise ConfigError(
            f"not an address or CIDR network: {value!r} ({exc})", key="trusted_proxies"
        ) from None


@dataclass(frozen=True, slots=True)
class TrustedProxy:
    """A proxy whose certificate headers are believed.

    Recognised by ``networks`` (the immediate peer's address) and/or by its own TLS
    client certificate (``thumbprints``: x5t#S256 values; ``spki_pins``: base64
    SHA-256 of the SubjectPublicKeyInfo), and/or by HTTP basic authentication
    (``username`` + ``password_hash``, a scrypt PHC string, sent in ``auth_header``,
    default ``Proxy-Authorization``). Every kind given must hold.
    ``revalidate`` (default) re-validates the forwarded chain with mtlscore; when
    False the proxy's verdict is accepted: ``verdict_header`` must carry one of
    ``verdict_ok`` (e.g. nginx ``$ssl_client_verify`` = ``SUCCESS``), or, without a
    verdict header, a forwarded certificate means the proxy verified it.
    Construction raises :class:`ConfigError` on a bad value.
    """

    name: str = "proxy"
    networks: tuple[IPNetwork, ...] = ()
    thumbprints: frozenset[str] = frozenset()
    spki_pins: frozenset[str] = frozenset()
    format: HeaderFormat = "rfc9440"
    header: str | None = None
    revalidate: bool = True
    verdict_header: str | None = None
    verdict_ok: frozenset[str] = frozenset({"SUCCESS", "true"})
    # XFCC: which element describes the client (-1: the one the nearest proxy appended).
    xfcc_element: int = -1
    # The header this proxy writes the client's address into (None: the proxy's own
    # address is the client's), and for X-Forwarded-For which entry, counted from the right.
    client_address_header: str | None = None
    client_address_hop: int = 1
    # RFC 7617 basic authentication of the proxy itself (never the plain password).
    username: str | None = None
    password_hash: str | None = None
    auth_header: str = "proxy-authorization"
    credentials: ProxyCredentials | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.networks, str):
            object.__setattr__(self, "networks", (self.networks,))
        object.__setattr__(self, "networks", tuple(_network(n) for n in self.networks))
        for name in ("thumbprints", "spki_pins", "verdict_ok"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, frozenset(value))
        if self.format not in get_args(HeaderFormat):
            raise ConfigError(
                f"unknown header format {self.format!r}; "
                f"known: {', '.join(get_args(HeaderFormat))}",
                key="trusted_proxies.format",
            )
        self._check_credentials()
        if not self.networks and not self.thumbprints and not self.spki_pins:
            if self.credentials is not None:
                # Basic auth alone would let every client make the gateway derive scrypt
                # (32 MiB, tens of ms on the event loop) per guessed password: a CPU and memory
                # lever in anyone's hands. The operator names who may try, even if that is
                # everyone ("0.0.0.0/0", "::/0"), so the exposure is a visible choice.
                raise ConfigError(
                    f"proxy {self.name!r} has basic auth but no networks or certificate pin: "
                    'name the addresses that may try it (networks = ["0.0.0.0/0", "::/0"] for any)',
                    key="trusted_proxies.networks",
                )
            raise ConfigError(
                f"proxy {self.name!r} needs networks and/or a certificate pin to be recognised",
                key="trusted_proxies",
            )
        if self.header is not None:
            object.__setattr__(self, "header", self.header.lower())
        if self.verdict_header is not None:
            object.__setattr__(self, "verdict_header", self.verdict_header.lower())
        self._check_client_address()

    def _check_credentials(self) -> None:
        if self.username is None and self.password_hash is None:
            return
        if not isinstance(self.username, str) or not self.username or ":" in self.username:
            # RFC 7617 §2: the user-id cannot contain a colon.
            raise ConfigError("must be a non-empty user name without ':' (with password_hash)",
                              key="trusted_proxies.username")
        parsed = PasswordHash.parse(self.password_hash, key="trusted_proxies.password_hash")
        header = self.auth_header
        if not isinstance(header, str) or not _TOKEN.fullmatch(header):
            raise ConfigError(f"must be an HTTP header name, not {header!r}", key="trusted_proxies.auth_header")
        header = header.lower().replace("_", "-")
        object.__setattr__(self, "auth_header", header)
        object.__setattr__(self, "credentials", ProxyCredentials(self.username, parsed, header))

    def _check_client_address(self) -> None:
        header, hop = self.client_address_header, self.client_address_hop
        if header is not None:
            if not isinstance(header, str) or not _TOKEN.fullmatch(header):
                raise ConfigError(
                    f"must be an HTTP header name such as X-Forwarded-For or X-Real-IP, not {header!r}",
                    key="trusted_proxies.client_address_header",
                )
            header = header.lower().replace("_", "-")
            object.__setattr__(self, "client_address_header", header)
        if isinstance(hop, bool) or not isinstance(hop, int) or not 1 <= hop <= MAX_CLIENT_ADDRESS_HOP:
            raise ConfigError(
                f"must be an integer from 1 (the entry the proxy appended) to {MAX_CLIENT_ADDRESS_HOP}, not {hop!r}",
                key="trusted_proxies.client_address_hop",
            )
        if hop != 1 and header != "x-forwarded-for":
            raise ConfigError(
                "only X-Forwarded-For is a list of hops; any other client_address_header carries one address",
                key="trusted_proxies.client_address_hop",
            )

    def client_address(self, peer: str, headers: Iterable[tuple[bytes | str, bytes | str]]) -> ClientAddress:
        """The client's address for a request this proxy forwarded (``peer``: the proxy's own).

        Without ``client_address_header`` the proxy's address is the client's: a header
        the proxy does not set is whatever the client wrote. With it, the configured
        entry, or an unknown address (refused by any ``ip_allow``) when it is missing or
        not an IP address. Never raises on the request's bytes.
        """
        header = self.client_address_header
        if header is None:
            return ClientAddress(
                peer,
                f"that is trusted proxy {self.name!r} itself: without a client_address_header "
                "no forwarded address is believed",
            )
        values = [_as_text(v) for k, v in headers if _as_text(k).lower().replace("_", "-") == header]
        hop = self.client_address_hop
        if header == "x-forwarded-for":
            # RFC 9110 §5.3: the field lines of a list combine, in order, with ",". Each
            # proxy appends the address it saw ($proxy_add_x_forwarded_for), so the entries
            # a client wrote come first: count from the right; hop 1 is this proxy's entry.
            entries = [e.strip() for v in values for e in v.split(",")] if values else []
            if len(entries) < hop:
                return ClientAddress(
                    None,
                    f"{header} from trusted proxy {self.name!r} has {len(entries)} entries; "
                    f"client_address_hop is {hop}",
                )
            raw = entries[-hop]
            where = f"{header} entry {hop} from the right, set by trusted proxy {self.name!r}"
        else:
            # A one-address header sent twice (a client's copy the proxy did not replace)
            # is refused rather than guessed at.
            if len(values) != 1 or "," in values[0]:
                count = len(values) if len(values) != 1 else len(values[0].split(","))
                return ClientAddress(
                    None, f"{header} from trusted proxy {self.name!r} carries {count} values; one was expected"
                )
            raw = values[0].strip()
            where = f"{header} set by trusted proxy {self.name!r}"
        address = peer_address(raw)
        if address is None or "%" in raw:
            return ClientAddress(None, f"{where} is not an IP address: {raw[:64]!r}")
        return ClientAddress(str(address), where)

    @property
    def header_name(self) -> str:
        """The (lower-case) header this proxy's certificate arrives in."""
        return self.header or DEFAULT_HEADER_NAMES[self.format]

    @property
    def read_headers(self) -> tuple[str, ...]:
        """Every (lower-case) header the forwarded decision reads: the certificate's, RFC
        9440's chain header, and the verdict header when the proxy's verdict stands."""
        names = [self.header_name]
        if self.format == "rfc9440":
            names.append("client-cert-chain" if self.header is None else self.header_name + "-chain")
        if not self.revalidate and self.verdict_header is not None:
            names.append(self.verdict_header)
        return tuple(names)

    def matches(
        self,
        peer: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
        peer_leaf: Certificate | None,
        headers: Mapping[str, list[bytes | str]] | None = None,
    ) -> bool:
        """Whether the immediate peer is this proxy (``headers``: the request's, by lower-case name)."""
        return self.mismatch(peer, peer_leaf, headers) is None

    def mismatch(
        self,
        peer: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
        peer_leaf: Certificate | None,
        headers: Mapping[str, list[bytes | str]] | None = None,
    ) -> str | None:
        """None when the immediate peer is this proxy; else why not ("" when not even its address/pin)."""
        if not self._matches_transport(peer, peer_leaf):
            return ""
        if self.credentials is not None:
            values = (headers or {}).get(self.auth_header) or []
            if len(values) > 1:
                return f"the {self.auth_header} header appears {len(values)} times"
            why = self.credentials.check(values[0] if values else None)
            if why is not None:
                return f"it failed the basic authentication of trusted proxy {self.name!r}: {why}"
        return None

    def _matches_transport(
        self,
        peer: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
        peer_leaf: Certificate | None,
    ) -> bool:
        if self.networks and (peer is None or not any(peer in net for net in self.networks)):
            return False
        if self.thumbprints or self.spki_pins:
            if peer_leaf is None:
                return False
            # Constant-time compares: the pins are secrets of a kind (STYLE.md §11).
            x5t = peer_leaf.x5t_s256
            spki = peer_leaf.spki_pin
            hit = False
            for t in self.thumbprints:
                hit |= hmac.compare_digest(t, x5t)
            for p in self.spki_pins:
                hit |= hmac.compare_digest(p, spki)
            return hit
        return True


@dataclass(frozen=True, slots=True)
class ClientAddress:
    """The client's address as the gateway determined it, and where it came from.

    ``address`` None: unknown (a configured header was missing or bad); ``source``
    says why, for the ``ip_allow`` denial.
    """

    address: str | None
    source: str


@dataclass(frozen=True, slots=True)
class UseTls:
    """Validate the chain the peer presented in its own TLS handshake."""

    chain: tuple[Certificate, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UseForwarded:
    """A trusted proxy forwarded ``chain`` (leaf first; empty: the client sent none).

    ``revalidate`` False means the proxy's verdict stands: ``proxy_verified``.
    """

    chain: tuple[Certificate, ...]
    proxy: TrustedProxy
    revalidate: bool
    proxy_verified: bool | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reject:
    """The request's certificate evidence is refused before validation."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class FromProxy:
    """A trusted proxy speaks for this request (:meth:`ProxyPolicy.identify`).

    ``values`` holds, for each of ``proxy.read_headers``, every copy the request carried
    in order: all that :meth:`ProxyPolicy.forwarded` reads, so ``(index, values)``
    keys a cache of what it decides. ``index`` is the proxy's position in the policy.
    """

    proxy: TrustedProxy
    index: int
    values: tuple[tuple[bytes | str, ...], ...]


Decision = UseTls | UseForwarded | Reject

# The immediate peer: an address ("203.0.113.7", or parsed), an ASGI ``client`` pair (host, port), or None.
Peer = str | ipaddress.IPv4Address | ipaddress.IPv6Address | Sequence[object] | None


def peer_address(peer: Peer) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's IP address (an IPv4-mapped IPv6 address as IPv4), or None when it is none."""
    if isinstance(peer, tuple | list) and peer:
        peer = peer[0]
    if peer is None:
        return None
    if isinstance(peer, ipaddress.IPv4Address | ipaddress.IPv6Address):
        addr = peer  # parsed once per connection by the caller
    else:
        try:
            addr = ipaddress.ip_address(str(peer).split("%", 1)[0])
        except ValueError:
            return None  # a unix socket path or garbage: never a trusted address
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _header_map(headers: Iterable[tuple[bytes | str, bytes | str]]) -> dict[str, list[bytes | str]]:
    out: dict[str, list[bytes | str]] = {}
    for name, value in headers:
        key = name.decode("latin-1") if isinstance(name, bytes | bytearray) else str(name)
        out.setdefault(key.lower(), []).append(value)
    return out


def _single(values: list[bytes | str] | None, name: str) -> bytes | str | None:
    if not values:
        return None
    if len(values) > 1:
        # Two copies: the client's and the proxy's, or a smuggling attempt. Neither is safe.
        raise CertificateRejected(
            Reason.MALFORMED, f"the {name} header appears {len(values)} times"
        )
    return values[0]


def _as_text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else value


@dataclass(frozen=True, slots=True)
class ProxyPolicy:
    """The configured trusted proxies and what to do with headers from anyone else.

    ``on_untrusted``: ``"reject"`` (default) refuses a request that carries certificate
    headers from a peer that is not a trusted proxy; ``"ignore"`` drops them, validates
    the peer's own TLS chain and records ``untrusted_proxy`` in the notes.
    """

    proxies: tuple[TrustedProxy, ...] = ()
    on_untrusted: Literal["reject", "ignore"] = "reject"
    limits: h.HeaderLimits = field(default=h.DEFAULT_LIMITS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "proxies", tuple(self.proxies))
        if self.on_untrusted not in ("reject", "ignore"):
            raise ConfigError("must be reject or ignore", key="on_untrusted")

    @property
    def watched_headers(self) -> frozenset[str]:
        """Header names whose presence from an untrusted peer is recorded."""
        names = set(h.IDENTITY_HEADER_NAMES)
        for p in self.proxies:
            names.add(p.header_name)
            if p.verdict_header:
                names.add(p.verdict_header)
        return frozenset(names)

    def find(
        self,
        peer: Peer,
        peer_chain: Sequence[Certificate] = (),
        headers: Iterable[tuple[bytes | str, bytes | str]] = (),
    ) -> TrustedProxy | None:
        """The trusted proxy the immediate peer is, or None (``headers`` for basic auth)."""
        index, _ = self._find(peer, peer_chain, _header_map(headers))
        return self.proxies[index] if index >= 0 else None

    def _find(
        self, peer: Peer, peer_chain: Sequence[Certificate], hmap: Mapping[str, list[bytes | str]]
    ) -> tuple[int, str]:
        """The index of the first proxy the peer is (-1: none), and why the others did not match."""
        addr = peer_address(peer)
        leaf = peer_chain[0] if peer_chain else None
        why = ""
        for index, proxy in enumerate(self.proxies):
            miss = proxy.mismatch(addr, leaf, hmap)
            if miss is None:
                return index, ""
            why = why or miss
        return -1, why

    def decide(
        self,
        *,
        peer: Peer,
        peer_chain: Sequence[Certificate] = (),
        headers: Iterable[tuple[bytes | str, bytes | str]] = (),
    ) -> Decision:
        """Decide which chain to validate for one request. Never raises on bad input.

        ``peer`` is the immediate peer's address (a string or an ASGI ``(host, port)``),
        ``peer_chain`` what it presented in TLS (leaf first), ``headers`` the request's.
        :meth:`identify` then :meth:`forwarded`.
        """
        found = self.identify(peer=peer, peer_chain=peer_chain, headers=headers)
        return self.forwarded(found) if isinstance(found, FromProxy) else found

    def identify(
        self,
        *,
        peer: Peer,
        peer_chain: Sequence[Certificate] = (),
        headers: Iterable[tuple[bytes | str, bytes | str]] = (),
    ) -> UseTls | Reject | FromProxy:
        """Who speaks for this request: the peer itself (:class:`UseTls`), nobody
        (:class:`Reject`), or a trusted proxy (:class:`FromProxy`, its headers not yet
        parsed). Never raises on bad input."""
        hmap = _header_map(headers)
        index, why = self._find(peer, peer_chain, hmap)
        if index < 0:
            present = sorted(n for n in self.watched_headers if n in hmap)
            if not present:
                return UseTls(tuple(peer_chain))
            detail = (
                f"certificate header(s) {', '.join(present)} came from "
                f"{peer_address(peer) or 'an unknown peer'}, "
                + (f"which is not a trusted proxy: {why}" if why else "which is not a trusted proxy")
                + "; they are not believed"
            )
            # A peer at a proxy's address (or with its pin) that fails the proxy's basic
            # auth is refused even under "ignore": it is not an ordinary client that
            # happened to send such a header, it is a proxy with the wrong credentials.
            if self.on_untrusted == "reject" or why:
                return Reject(Reason.UNTRUSTED_PROXY, detail)
            return UseTls(tuple(peer_chain), notes=(f"{Reason.UNTRUSTED_PROXY.value}: {detail}",))
        proxy = self.proxies[index]
        values = tuple(tuple(hmap.get(name, ())) for name in proxy.read_headers)
        return FromProxy(proxy, index, values)

    def forwarded(self, found: FromProxy) -> UseForwarded | Reject:
        """What ``found``'s proxy forwarded: its headers parsed (from ``found.values``
        alone). Never raises on bad input."""
        proxy = found.proxy
        try:
            chain = self._forwarded_chain(proxy, found.values)
            verified: bool | None = None
            if not proxy.revalidate:
                if proxy.verdict_header is not None:
                    raw = _single(list(found.values[-1]), proxy.verdict_header)
                    verdict = _as_text(raw).strip() if raw is not None else ""
                    verified = any(hmac.compare_digest(verdict, ok) for ok in proxy.verdict_ok)
                else:
                    verified = bool(chain)
        except CertificateRejected as exc:
            return Reject(exc.reason, f"from trusted proxy {proxy.name!r}: {exc.detail}")
        return UseForwarded(chain, proxy, proxy.revalidate, verified)

    def _forwarded_chain(
        self, proxy: TrustedProxy, values: tuple[tuple[bytes | str, ...], ...]
    ) -> tuple[Certificate, ...]:
        # values[i]: every copy of proxy.read_headers[i].
        name = proxy.header_name
        limits = self.limits
        fmt = proxy.format
        if fmt == "rfc9440":
            raw = _single(list(values[0]), name)
            chain_name = proxy.read_headers[1]
            rest = values[1]
            if raw is None:
                if rest:
                    # RFC 9440 §2.3: Client-Cert-Chain MUST NOT be sent without Client-Cert.
                    raise CertificateRejected(Reason.MALFORMED, f"{chain_name} without {name}")
                return ()
            leaf = h.parse_client_cert(raw, limits=limits)
            # RFC 9440 §2.3 / RFC 9110 §5.3: several field lines of a list combine with ",".
            more = (
                h.parse_client_cert_chain(", ".join(_as_text(v) for v in rest), limits=limits)
                if rest
                else []
            )
            return (leaf, *more)
        raw = _single(list(values[0]), name)
        if raw is None or not _as_text(raw).strip():
            return ()
        if fmt == "nginx":
            return (h.parse_nginx_escaped_cert(raw, limits=limits),)
        if fmt == "nginx_legacy":
            return (h.parse_nginx_cert(raw, limits=limits),)
        if fmt == "alb":
            return tuple(h.parse_alb_clientcert(raw, limits=limits))
        if fmt == "alb_leaf":
            return (h.parse_alb_leaf(raw, limits=limits),)
        elements = h.parse_xfcc(raw, limits=limits)
        try:
            element = elements[proxy.xfcc_element]
        except IndexError:
            raise CertificateRejected(
                Reason.MALFORMED,
                f"x-forwarded-client-cert has {len(elements)} element(s); "
                f"element {proxy.xfcc_element} was configured",
            ) from None
        return element.presented


_PROXY_KEYS = frozenset(
    {
        "name",
        "networks",
        "thumbprints",
        "spki_pins",
        "format",
        "header",
        "revalidate",
        "verdict_header",
        "verdict_ok",
        "xfcc_element",
        "client_address_header",
        "client_address_hop",
        "username",
        "password_hash",
        "auth_header",
    }
)


def proxies_from_config(items: Sequence[object]) -> tuple[TrustedProxy, ...]:
    """Trusted proxies from config: CIDR strings (RFC 9440 headers) or tables of
    :class:`TrustedProxy` fields. Raises :class:`ConfigError` naming the key."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append(TrustedProxy(name=item, networks=(_network(item),)))
            continue
        if not isinstance(item, Mapping):
            raise ConfigError(
                "each entry must be a CIDR string or a table", key=f"trusted_proxies[{i}]"
            )
        unknown = set(item) - _PROXY_KEYS
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", key=f"trusted_proxies[{i}]")
        kw = dict(item)
        for k in ("networks", "thumbprints", "spki_pins", "verdict_ok"):
            if k in kw and isinstance(kw[k], list):
                kw[k] = tuple(kw[k])
        if "revalidate" in kw and not isinstance(kw["revalidate"], bool):
            raise ConfigError("must be true or false", key=f"trusted_proxies[{i}].revalidate")
        try:
            out.append(TrustedProxy(**kw))
        except TypeError as exc:
            raise ConfigError(str(exc), key=f"trusted_proxies[{i}]") from None
        except ConfigError as exc:
            # Name the entry: trusted_proxies.format -> trusted_proxies[2].format.
            key = (exc.key or "trusted_proxies").replace("trusted_proxies", f"trusted_proxies[{i}]", 1)
            raise ConfigError(exc.message, key=key) from None
    return tuple(out)


# -- from the decision to a verdict (shared by the ASGI middleware and the gateway) --------


def decision_verdict(
    decision: Decision,
    validate: Callable[[tuple[Certificate, ...]], Verdict],
    identity_map: IdentityResolver | None = None,
) -> Verdict:
    """The verdict for one request's certificate evidence, as :meth:`ProxyPolicy.decide` chose it.

    ``validate`` validates a chain (leaf first). A trusted proxy whose verdict
    stands (``revalidate = false``) is believed as it reported, and its leaf
    is then mapped through ``identity_map`` here (no anchor vouched for it, so
    only rules not scoped to an anchor can match).
    """
    if isinstance(decision, Reject):
        return Verdict.reject(decision.reason, decision.detail)
    notes = decision.notes
    chain = decision.chain
    if not chain:
        where = (
            f"trusted proxy {decision.proxy.name!r} forwarded"
            if isinstance(decision, UseForwarded)
            else "the TLS handshake carried"
        )
        return Verdict.reject(Reason.NOT_PROVIDED, f"no client certificate: {where} none", notes=notes)
    if isinstance(decision, UseForwarded) and not decision.revalidate:
        verdict = _proxy_verdict(decision)
    else:
        verdict = validate(chain)
    if notes:
        verdict = replace(verdict, notes=verdict.notes + notes)
    if verdict.ok and identity_map is not None and verdict.principal is None:
        verdict = map_identity(verdict, identity_map)
    return verdict


def _proxy_verdict(decision: UseForwarded) -> Verdict:
    leaf = decision.chain[0]
    note = f"accepted the verdict of trusted proxy {decision.proxy.name!r} without re-validation"
    if not decision.proxy_verified:
        return Verdict.reject(
            Reason.UNTRUSTED,
            f"trusted proxy {decision.proxy.name!r} reported that {leaf.describe()} failed its verification",
            path=decision.chain,
        )
    return Verdict(True, path=decision.chain, identity=Identity.from_certificate(leaf, None), notes=(note,))


def map_identity(verdict: Verdict, identity_map: IdentityResolver) -> Verdict:
    """``verdict`` with its leaf's identity resolved to a principal (or rejected as unmapped)."""
    leaf = verdict.path[0]
    identity = verdict.identity or Identity.from_certificate(leaf, verdict.anchor)
    try:
        principal = identity_map.resolve(identity)
    except CertificateRejected as exc:
        return replace(verdict, ok=False, reason=exc.reason, detail=exc.detail, identity=identity, position=0)
    return replace(verdict, identity=identity, principal=principal)
