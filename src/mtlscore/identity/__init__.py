"""Who the client is: the identity read from a validated certificate, mapping rules, the identity map,
and RFC 8705 certificate-bound tokens. Sans-IO. Layers: docs/architecture.md.
"""

from .binding import (
    OAuthError,
    TlsClientAuth,
    check_cnf,
    check_self_signed_tls_client_auth,
    check_tls_client_auth,
    cnf_claim,
    oauth_error,
    x5t_s256,
)
from .identity import AnchorRef, Identity
from .identity_map import IdentityMap, IdentityResolver, Principal, Resolution, Rule, accounts_from_config

__all__ = [
    "AnchorRef",
    "Identity",
    "IdentityMap",
    "IdentityResolver",
    "OAuthError",
    "Principal",
    "Resolution",
    "Rule",
    "TlsClientAuth",
    "accounts_from_config",
    "check_cnf",
    "check_self_signed_tls_client_auth",
    "check_tls_client_auth",
    "cnf_claim",
    "oauth_error",
    "x5t_s256",
]
