"""mtlscore: decide whether a TLS client certificate may in, and who it is.

The core is sans-IO: it takes bytes, times and configuration and returns
decisions (:class:`Verdict`) or requests for data. Runtimes in
``mtlscore.runtimes`` drive it with real sockets; ``mtlscore.asgi`` embeds it
in ASGI apps; ``mtlscore.config`` reads the TOML configuration file.

This namespace holds what an embedder needs to validate a client certificate
and map it to an account. Helpers live in their layer's package
(docs/architecture.md): header parsers and emitters in :mod:`mtlscore.proxy`,
DN, hostname and JWK helpers in :mod:`mtlscore.x509`, RFC 8705 binding in
:mod:`mtlscore.identity`, EKU constants in :mod:`mtlscore.verify`. Their old
names here still resolve, with a DeprecationWarning naming the new home.
"""

from __future__ import annotations

import importlib
import warnings

from .decision.cache import VerdictCache
from .decision.validator import Validation, Validator
from .decision.verdict import Verdict
from .identity.identity import Identity
from .identity.identity_map import IdentityMap, Principal, Rule
from .proxy.trusted import ProxyPolicy, TrustedProxy
from .reasons import CertificateRejected, ConfigError, MtlsError, Reason
from .revocation.cache import RevocationCache
from .verify.machine import MachineError, NeedCRL, NeedIssuer, NeedOCSP
from .verify.policy import Policy
from .verify.trust import TrustStore
from .x509.cert import Certificate, load_certificates

__version__ = "0.1.0"

__all__ = [
    "Certificate",
    "CertificateRejected",
    "ConfigError",
    "Identity",
    "IdentityMap",
    "MachineError",
    "MtlsError",
    "NeedCRL",
    "NeedIssuer",
    "NeedOCSP",
    "Policy",
    "Principal",
    "ProxyPolicy",
    "Reason",
    "RevocationCache",
    "Rule",
    "TrustStore",
    "TrustedProxy",
    "Validation",
    "Validator",
    "Verdict",
    "VerdictCache",
    "load_certificates",
]

# Names this namespace exported before the layered layout, and where they live now.
MOVED = {
    **dict.fromkeys(("ANY_EKU", "CLIENT_AUTH", "SERVER_AUTH", "Anchor"), "mtlscore.verify"),
    **dict.fromkeys(
        ("AnchorRef", "OAuthError", "Resolution", "TlsClientAuth", "accounts_from_config", "check_cnf",
         "check_self_signed_tls_client_auth", "check_tls_client_auth", "cnf_claim", "oauth_error", "x5t_s256"),
        "mtlscore.identity",
    ),
    **dict.fromkeys(("CacheStats", "cache_stats"), "mtlscore.decision"),
    **dict.fromkeys(
        ("dn_equal", "dns_name_matches", "format_dn", "jwk_from_certificate", "jwk_from_public_key",
         "jwk_thumbprint", "match_peer_name", "parse_certificate", "parse_dn", "public_key_from_jwk"),
        "mtlscore.x509",
    ),
    **dict.fromkeys(
        ("IDENTITY_HEADER_NAMES", "emit_client_cert", "emit_client_cert_chain", "gcp_headers",
         "parse_alb_clientcert", "parse_alb_leaf", "parse_client_cert", "parse_client_cert_chain",
         "parse_nginx_escaped_cert", "parse_xfcc"),
        "mtlscore.proxy",
    ),
}


def __getattr__(name: str) -> object:
    # PEP 562: old top-level names keep working for one release, with a warning that says where they went.
    home = MOVED.get(name)
    if home is None:
        raise AttributeError(f"module 'mtlscore' has no attribute {name!r}")
    warnings.warn(
        f"mtlscore.{name} moved to {home}.{name} (from {home} import {name})", DeprecationWarning, stacklevel=2
    )
    return getattr(importlib.import_module(home), name)
