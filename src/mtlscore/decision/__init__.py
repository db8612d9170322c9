"""The decision: the Validator runs path validation, revocation and identity and returns a Verdict;
the verdict cache. The top of the sans-IO core. Layers: docs/architecture.md.
"""
