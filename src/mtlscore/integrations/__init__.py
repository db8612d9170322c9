"""Integrations of mtlscore with other libraries (each an optional extra)."""
