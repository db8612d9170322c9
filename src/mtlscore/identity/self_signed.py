"""RFC 8705 §2.2 clients that registered a key, not a name under a CA: the gateway's matching.

An account with ``method = "self_signed_tls_client_auth"`` registers a JWK Set
(``jwks``, inline or from a file) or a ``jwks_uri``. A client that presents a
self-signed certificate no CA vouches for is that account when the
certificate's public key is in the set: the TLS handshake proved it holds the
private key, and the registration says whose key it is. Anything else is
``not_allowlisted``.

Sans-IO: keys behind a URL come from a :class:`~mtlscore.identity.jwks.JwksCache`; when
it has none (or a key is unknown and a refetch is allowed) :func:`match` answers
with the :class:`~mtlscore.identity.jwks.NeedJwks` to fetch first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ..reasons import CertificateRejected, ConfigError, Reason
from ..x509.cert import Certificate
from .binding import check_self_signed_tls_client_auth
from .jwks import JwksCache, JwksUnavailable, NeedJwks

if TYPE_CHECKING:
    from .identity_map import Principal

__all__ = ["SelfSignedClient", "SelfSignedMatch", "match"]


@dataclass(frozen=True, slots=True)
class SelfSignedClient:
    """One registered client: its principal and its keys (exactly one of ``jwks``, ``jwks_uri``)."""

    principal: Principal
    jwks: Mapping[str, object] | None = field(default=None, compare=False)
    jwks_uri: str | None = None

    def __post_init__(self) -> None:
        if (self.jwks is None) == (self.jwks_uri is None):
            raise ConfigError("give the client's jwks or jwks_uri (one of them)", key="jwks")


@dataclass(frozen=True, slots=True)
class SelfSignedMatch:
    """The client whose registered key the certificate carries, and that JWK."""

    client: SelfSignedClient
    jwk: Mapping[str, object] = field(compare=False)


def is_candidate(chain: Sequence[Certificate]) -> bool:
    """Whether a presented chain can be a self-signed client: one self-issued certificate."""
    return len(chain) == 1 and chain[0].self_issued


def match(
    clients: Sequence[SelfSignedClient],
    cert: Certificate,
    *,
    at: datetime,
    now: float,
    cache: JwksCache | None,
) -> SelfSignedMatch | NeedJwks:
    """The registered client ``cert`` is, or the JWK Set to fetch before deciding.

    Raises CertificateRejected: ``expired`` / ``not_yet_valid`` outside the
    certificate's own validity (a registered key is no licence to present a
    stale container), ``not_allowlisted`` when no client registered its key.
    """
    # RFC 5280 §4.1.2.5: the validity period includes both ends.
    if at < cert.not_before:
        raise CertificateRejected(Reason.NOT_YET_VALID,
                                  f"self-signed {cert.describe()} is not valid until {cert.not_before.isoformat()}")
    if at > cert.not_after:
        raise CertificateRejected(Reason.EXPIRED, f"self-signed {cert.describe()} expired at "
                                  f"{cert.not_after.isoformat()}; register the key of a current certificate")
    unavailable: list[str] = []
    for client in clients:
        jwks = client.jwks
        if client.jwks_uri is not None:
            if cache is None:
                unavailable.append(f"{client.jwks_uri}: no JWKS cache")
                continue
            due = cache.due(client.jwks_uri, now=now)
            if due is not None:
                return due
            try:
                jwks = cache.keys(client.jwks_uri, now=now)
            except JwksUnavailable as exc:
                unavailable.append(f"{exc.url}: {exc.detail}")
                continue
        assert jwks is not None
        try:
            return SelfSignedMatch(client, check_self_signed_tls_client_auth(jwks, cert))
        except (CertificateRejected, ConfigError):
            pass
    # No registered key: a client may have rotated its key at its jwks_uri.
    if cache is not None:
        for client in clients:
            if client.jwks_uri is not None and (again := cache.refresh(client.jwks_uri, now=now)) is not None:
                return again
    detail = (f"self-signed {cert.describe()} (x5t#S256={cert.x5t_s256}): its key is registered by no "
              "self_signed_tls_client_auth account")
    if unavailable:
        detail += "; keys unavailable: " + "; ".join(unavailable[:3])
    raise CertificateRejected(Reason.NOT_ALLOWLISTED, detail)
