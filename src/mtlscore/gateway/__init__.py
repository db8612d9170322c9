"""The gateway (`mtlscore serve`) without I/O: the session and its events, forwarding, app-level auth,
[server] settings, metrics, deadlines, admission, request heads. Driven by :mod:`mtlscore.runtimes`.
Layers: docs/architecture.md.
"""
