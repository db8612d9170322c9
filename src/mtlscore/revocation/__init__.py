"""Revocation: CRLs (sets, indirect signers), OCSP, AIA URLs, the per-position checks and the revocation cache.

Sits on :mod:`mtlscore.verify` (a CRL signer's path is validated like any other). Sans-IO: it builds
requests and parses answers; the runtimes fetch. Layers: docs/architecture.md.
"""

from .cache import RevocationCache

__all__ = ["RevocationCache"]
