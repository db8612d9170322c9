"""Who the client is: the identity read from a validated certificate, mapping rules, the identity map,
and RFC 8705 certificate-bound tokens. Sans-IO. Layers: docs/architecture.md.
"""
