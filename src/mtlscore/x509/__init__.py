"""X.509 certificates as data: the certificate model and its parsing, names and DNs, hostnames, SPIFFE IDs, JWKs.

The lowest layer above :mod:`mtlscore.reasons`: it knows certificates, not trust.
Sans-IO (tests/test_core_imports.py). Layers: docs/architecture.md.
"""

from .cert import Certificate, load_certificates, parse_certificate
from .dn import dn_equal, format_dn, parse_dn
from .hostname import dns_name_matches, match_peer_name
from .jwk import jwk_from_certificate, jwk_from_public_key, jwk_thumbprint, public_key_from_jwk

__all__ = [
    "Certificate",
    "dn_equal",
    "dns_name_matches",
    "format_dn",
    "jwk_from_certificate",
    "jwk_from_public_key",
    "jwk_thumbprint",
    "load_certificates",
    "match_peer_name",
    "parse_certificate",
    "parse_dn",
    "public_key_from_jwk",
]
