"""X.509 certificates as data: the certificate model and its parsing, names and DNs, hostnames, SPIFFE IDs, JWKs.

The lowest layer above :mod:`mtlscore.reasons`: it knows certificates, not trust.
Sans-IO (tests/test_core_imports.py). Layers: docs/architecture.md.
"""
