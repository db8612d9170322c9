"""mtlscore: decide whether a TLS client certificate may in, and who it is.

The core is sans-IO: it takes bytes, times and configuration and returns
decisions (:class:`Verdict`) or requests for data. Runtimes in
``mtlscore.runtimes`` drive it with real sockets.
"""

from ._cert import Certificate, load_certificates, parse_certificate
from ._hostname import dns_name_matches, match_peer_name
from ._identity import Identity
from ._policy import ANY_EKU, CLIENT_AUTH, SERVER_AUTH, Policy
from ._reasons import CertificateRejected, ConfigError, MtlsError, Reason
from ._trust import Anchor, TrustStore
from ._validator import Validator
from ._verdict import Verdict

__version__ = "0.1.0"

__all__ = [
    "ANY_EKU",
    "CLIENT_AUTH",
    "SERVER_AUTH",
    "Anchor",
    "Certificate",
    "CertificateRejected",
    "ConfigError",
    "Identity",
    "MtlsError",
    "Policy",
    "Reason",
    "TrustStore",
    "Validator",
    "Verdict",
    "dns_name_matches",
    "load_certificates",
    "match_peer_name",
    "parse_certificate",
    "x5t_s256",
]


def x5t_s256(cert: "Certificate | bytes | str") -> str:
    """RFC 8705 ``x5t#S256`` of a certificate (parsed, DER or PEM).

    Raises :class:`CertificateRejected` (``malformed``) when it is not a certificate.
    """
    if isinstance(cert, Certificate):
        return cert.x5t_s256
    return load_certificates(cert, max_count=1)[0].x5t_s256
