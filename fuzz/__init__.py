"""Fuzz targets for mtlscore's untrusted-input entry points (see docs/hardening.md)."""
