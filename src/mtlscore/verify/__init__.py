"""RFC 5280 path validation: policy settings, trust store, signatures, per-certificate checks,
name constraints, the certificate-policy graph, path building, and the asking machine's vocabulary.

Imports only :mod:`mtlscore.x509` and :mod:`mtlscore.reasons`. Sans-IO. Layers: docs/architecture.md.
"""

from .policy import ANY_EKU, CLIENT_AUTH, SERVER_AUTH, Policy
from .trust import Anchor, TrustStore

__all__ = ["ANY_EKU", "CLIENT_AUTH", "SERVER_AUTH", "Anchor", "Policy", "TrustStore"]
