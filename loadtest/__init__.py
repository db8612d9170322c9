"""Load and fault test of the mTLS gateway (see loadtest/run.py and docs/hardening.md)."""
