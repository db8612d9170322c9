"""The gateway session's vocabulary (STYLE.md §4): what the runtime tells the core
(:class:`TLSFacts`, :class:`Gateway`), what a request is decided on
(:class:`Evidence`) and what the core tells the runtime (the actions and
:class:`Decision`). Frozen dataclasses and enums; ``gateway/session.py`` re-exports them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..decision.validator import Validation, Validator
from ..decision.verdict import Verdict
from ..identity.identity import Identity
from ..identity.identity_map import Principal
from ..identity.jwks import JwksCache, NeedJwks
from ..proxy.headers import lb_error_name
from ..proxy.trusted import ClientAddress
from ..reasons import Reason
from ..types import JSONObject
from ..x509.cert import Certificate
from .appauth import AccountAuth, NeedRate, RateLimiter, TokenVerifier
from .forwarded_cache import ForwardedCache
from .identity_cache import IdentityCache
from .settings import ServerConfig
from .shared import SharedSettings

if TYPE_CHECKING:
    from .forwarding import IdentityFields  # forwarding imports this module

__all__ = [
    "IDEMPOTENT_METHODS",
    "Action",
    "CheckRate",
    "Close",
    "CloseUpstream",
    "Decision",
    "Evidence",
    "FetchJwks",
    "Gateway",
    "GatewayReason",
    "Log",
    "OpenUpstream",
    "Outcome",
    "ReadClient",
    "ReadUpstream",
    "ReleaseUpstream",
    "TLSFacts",
    "UpstreamFailure",
    "Validate",
    "WriteClient",
    "WriteUpstream",
    "handshake_decision",
]


# -- what the runtime tells the core ------------------------------------------


@dataclass(frozen=True, slots=True)
class TLSFacts:
    """What the TLS layer saw: the presented chain (DER, leaf first), SNI, peer."""

    chain: tuple[bytes, ...] = ()
    # True when the runtime could see only the leaf, not the intermediates sent.
    leaf_only: bool = False
    sni: str | None = None
    peer: tuple[str, int] = ("", 0)
    version: str = ""
    cipher: str = ""


@dataclass(frozen=True, slots=True)
class Gateway:
    """One configuration snapshot; a reload builds a new one, live sessions keep theirs."""

    validator: Validator
    server: ServerConfig
    crls: tuple[bytes, ...] = ()
    limiter: RateLimiter = field(default_factory=RateLimiter)
    verify_token: TokenVerifier | None = None
    # Maps a principal to its app-level requirements (None: certificate only).
    account_auth: Callable[[Principal | None], AccountAuth | None] | None = None
    # Keys fetched from jwks_uri values (token keys, self-signed clients' keys); the
    # runtime carries it over reloads like the limiter.
    jwks_cache: JwksCache = field(default_factory=JwksCache, compare=False)
    # [shared] (docs/shared-state.md): rate limits are taken in the shared store (CheckRate).
    shared: SharedSettings | None = None
    # Verdicts of certificates trusted proxies forwarded, by the exact header values
    # (gateway/forwarded_cache.py). Never carried over a reload: it starts empty.
    forwarded: ForwardedCache = field(default_factory=ForwardedCache, compare=False)
    # The identity fields forwarded for an accepted verdict (gateway/identity_cache.py),
    # kept across connections: a reconnecting client's are not rebuilt. Starts empty.
    identity_fields: IdentityCache[IdentityFields | None] = field(
        default_factory=IdentityCache, compare=False)


class UpstreamFailure(enum.StrEnum):
    """How reaching the upstream failed (``session.upstream_failed(kind)``)."""

    CONNECT = "connect"  # the connection could not be opened
    TIMEOUT = "timeout"  # a connect, write or read did not finish in time: 504
    ERROR = "error"  # the connection broke, or the upstream spoke invalid HTTP


# -- what a request is decided on ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    """Whose certificate one request is about, what validation made of it, and who sent it.

    The connection's own (its TLS handshake) or, behind a trusted proxy, what that
    proxy forwarded for this request. A request gets a whole new one, never a
    patched one: the verdict, the certificates, the account and the address
    always belong together. Build with :meth:`of`.
    """

    verdict: Verdict
    # The presented certificates, parsed, leaf first (the TLS chain or the forwarded one).
    presented: tuple[Certificate, ...]
    # The client's address for ip_allow and X-Forwarded-For: the peer's, or what a
    # trusted proxy reported in its configured header.
    address: ClientAddress
    # True when the certificate came from a trusted proxy's headers, not the TLS handshake.
    forwarded: bool
    account: str | None  # the principal's account id, when the verdict is ok and has one
    thumbprint: str | None  # x5t#S256 of the presented leaf

    @classmethod
    def of(
        cls,
        verdict: Verdict,
        presented: tuple[Certificate, ...],
        address: ClientAddress,
        *,
        forwarded: bool = False,
    ) -> Evidence:
        """The evidence for ``verdict``: its account is the principal's id (an accepted verdict's)."""
        principal = verdict.principal if verdict.ok else None
        return cls(
            verdict,
            presented,
            address,
            forwarded,
            principal.id if principal is not None else None,
            presented[0].x5t_s256 if presented else None,
        )

    @property
    def identity(self) -> Identity | None:
        return self.verdict.identity

    @property
    def principal(self) -> Principal | None:
        return self.verdict.principal

    @property
    def leaf(self) -> Certificate | None:
        return self.presented[0] if self.presented else None


# -- what the core tells the runtime ------------------------------------------


class Outcome(enum.StrEnum):
    """What happened to a request (or handshake); a stable label in logs and metrics."""

    FORWARD = "forward"  # sent to the upstream with identity headers
    ANSWER = "answer"  # answered by the gateway itself (the identity JSON)
    AUTHORIZE = "authorize"  # mode = "auth": the edge's question answered yes (200, identity headers)
    DENY = "deny"  # refused: the certificate, the mode or the account's checks
    ERROR = "error"  # the exchange failed (bad HTTP, timeouts, the upstream)


class GatewayReason(enum.StrEnum):
    """The gateway's own reason codes, beside the validator's :class:`Reason` and the
    app-level checks' (docs/gateway.md lists them all)."""

    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    PROTOCOL_ERROR = "protocol_error"
    BODY_TOO_LARGE = "body_too_large"
    ACCOUNT_CONFIG = "account_config"
    WRITE_TIMEOUT = "write_timeout"


@dataclass(frozen=True, slots=True)
class Decision:
    """One gateway decision: what happened to a request (or handshake) and why."""

    outcome: Outcome
    status: int | None
    reason: str | None
    detail: str
    account: str | None = None
    thumbprint: str | None = None
    peer: str = ""
    method: str = ""
    target: str = ""

    @property
    def lb_error(self) -> str:
        """The load balancer's name for :attr:`reason` (docs/gateway.md "Error names"), or ""."""
        return lb_error_name(self.reason)

    def as_log(self) -> JSONObject:
        """The decision as a flat dict for one structured log line."""
        return {
            "event": "mtls_decision",
            "outcome": self.outcome,
            "status": self.status,
            "reason": self.reason,
            "lb_error": self.lb_error or None,
            "account": self.account,
            "thumbprint": self.thumbprint,
            "peer": self.peer,
            "method": self.method,
            "target": self.target,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ReadClient:
    """Read from the client; ``timeout`` is what is left of the session's deadline.

    ``waiting_since``: while the session waits for a request (idle or a head under
    way), the monotonic time it started waiting (from accept, for a connection's
    first request); None while it reads a body. The runtime's admission sheds the
    connection that has waited longest when it needs a slot (mtlscore.gateway.admission).
    """

    timeout: float
    waiting_since: float | None = None


@dataclass(frozen=True, slots=True)
class WriteClient:
    """Send ``data`` to the client; not done within ``timeout`` -> ``session.client_write_timeout()``.

    ``status``: the HTTP status when ``data`` starts a response (for the responses counter).
    """

    data: bytes
    timeout: float
    status: int | None = None


# RFC 9110 §9.2.2: the idempotent request methods (the safe ones of §9.2.1, PUT and DELETE).
# Method names are case-sensitive (§9.1): "get" is not GET.
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


@dataclass(frozen=True, slots=True)
class OpenUpstream:
    """Connect to the upstream (or take a pooled connection) within ``timeout``.

    ``retry``: the request may be sent once more on a new connection when a pooled one
    turns out closed by the upstream before any byte of the response (RFC 9110 §9.2.2:
    its method is idempotent; ``runtimes/pool.py`` holds the rest of the rule).
    """

    host: str
    port: int
    timeout: float
    retry: bool = False


@dataclass(frozen=True, slots=True)
class WriteUpstream:
    """Send ``data`` upstream; not done within ``timeout`` -> ``session.upstream_failed("timeout")``."""

    data: bytes
    timeout: float


@dataclass(frozen=True, slots=True)
class ReadUpstream:
    timeout: float


@dataclass(frozen=True, slots=True)
class CloseUpstream:
    pass


@dataclass(frozen=True, slots=True)
class ReleaseUpstream:
    """The session is done with its upstream connection, which sits at a message boundary:
    every response read to its end, nothing unread, keep-alive on both sides. The runtime
    may keep it for another client connection's requests (``runtimes/pool.py``) or close it."""


@dataclass(frozen=True, slots=True)
class Validate:
    """Drive ``validation`` (a forwarded chain's :meth:`Validator.start`) to its verdict
    with the runtime's revocation fetcher, then call ``session.validated(verdict)``."""

    validation: Validation


@dataclass(frozen=True, slots=True)
class FetchJwks:
    """Fetch ``request`` (a JWK Set) and report it to ``cache`` (``runtimes.fetch.report_jwks``),
    then call ``session.keys_fetched()``; the request waiting on those keys goes on."""

    request: NeedJwks
    cache: JwksCache = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CheckRate:
    """Take one token of ``request.account``'s bucket in the shared store (``[shared]``),
    within its timeout, then call ``session.rate_checked(RateAnswer)`` (with ``error`` set
    when the store did not answer)."""

    request: NeedRate


@dataclass(frozen=True, slots=True)
class Log:
    """Log ``decision`` and count it. For an accepted certificate, ``chain`` (as presented)
    and ``verdict`` go to the expiry radar (mtlscore.gateway.radar)."""

    decision: Decision
    chain: tuple[Certificate, ...] = ()
    verdict: Verdict | None = None


@dataclass(frozen=True, slots=True)
class Close:
    # True when the client may still be sending a request body we answered early:
    # read and discard it for a bounded while before closing, so the client sees
    # the answer instead of a reset (RFC 9112 §9.6, "lingering close").
    linger: bool = False


Action = (
    ReadClient | WriteClient | OpenUpstream | WriteUpstream | ReadUpstream | CloseUpstream | ReleaseUpstream
    | Validate | FetchJwks | CheckRate | Log | Close
)


def handshake_decision(
    reason: Reason, detail: str, peer: tuple[str, int], *, thumbprint: str | None = None
) -> Decision:
    """The decision record for a TLS handshake the TLS layer refused."""
    return Decision(Outcome.DENY, None, reason.value, f"TLS handshake failed: {detail}", peer=_peer(peer),
                    thumbprint=thumbprint)


def _peer(peer: tuple[str, int]) -> str:
    return f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
