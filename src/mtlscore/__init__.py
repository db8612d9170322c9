"""mtlscore: decide whether a TLS client certificate may in, and who it is.

The core is sans-IO: it takes bytes, times and configuration and returns
decisions (:class:`Verdict`) or requests for data. Runtimes in
``mtlscore.runtimes`` drive it with real sockets; ``mtlscore.asgi`` embeds it
in ASGI apps; ``mtlscore.config`` reads the TOML configuration file.
"""

from .decision.cache import CacheStats, VerdictCache
from .decision.cache import stats as cache_stats
from .decision.validator import Validation, Validator
from .decision.verdict import Verdict
from .identity.binding import (
    OAuthError,
    TlsClientAuth,
    check_cnf,
    check_self_signed_tls_client_auth,
    check_tls_client_auth,
    cnf_claim,
    oauth_error,
    x5t_s256,
)
from .identity.identity import AnchorRef, Identity
from .identity.identity_map import IdentityMap, Principal, Resolution, Rule, accounts_from_config
from .proxy.headers import (
    IDENTITY_HEADER_NAMES,
    emit_client_cert,
    emit_client_cert_chain,
    gcp_headers,
    parse_alb_clientcert,
    parse_alb_leaf,
    parse_client_cert,
    parse_client_cert_chain,
    parse_nginx_escaped_cert,
    parse_xfcc,
)
from .proxy.trusted import ProxyPolicy, TrustedProxy
from .reasons import CertificateRejected, ConfigError, MtlsError, Reason
from .revocation.cache import RevocationCache
from .verify.machine import MachineError, NeedCRL, NeedIssuer, NeedOCSP
from .verify.policy import ANY_EKU, CLIENT_AUTH, SERVER_AUTH, Policy
from .verify.trust import Anchor, TrustStore
from .x509.cert import Certificate, load_certificates, parse_certificate
from .x509.dn import dn_equal, format_dn, parse_dn
from .x509.hostname import dns_name_matches, match_peer_name
from .x509.jwk import jwk_from_certificate, jwk_from_public_key, jwk_thumbprint, public_key_from_jwk

__version__ = "0.1.0"

__all__ = [
    "ANY_EKU",
    "CLIENT_AUTH",
    "IDENTITY_HEADER_NAMES",
    "SERVER_AUTH",
    "Anchor",
    "CacheStats",
    "AnchorRef",
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
    "OAuthError",
    "Policy",
    "Principal",
    "ProxyPolicy",
    "Reason",
    "Resolution",
    "RevocationCache",
    "Rule",
    "TlsClientAuth",
    "TrustStore",
    "TrustedProxy",
    "Validation",
    "Validator",
    "Verdict",
    "VerdictCache",
    "accounts_from_config",
    "cache_stats",
    "check_cnf",
    "check_self_signed_tls_client_auth",
    "check_tls_client_auth",
    "cnf_claim",
    "dn_equal",
    "dns_name_matches",
    "emit_client_cert",
    "emit_client_cert_chain",
    "format_dn",
    "gcp_headers",
    "jwk_from_certificate",
    "jwk_from_public_key",
    "jwk_thumbprint",
    "load_certificates",
    "match_peer_name",
    "oauth_error",
    "parse_alb_clientcert",
    "parse_alb_leaf",
    "parse_certificate",
    "parse_client_cert",
    "parse_client_cert_chain",
    "parse_dn",
    "parse_nginx_escaped_cert",
    "parse_xfcc",
    "public_key_from_jwk",
    "x5t_s256",
]
