"""Checks of a loaded configuration that need the clock or the file system (issue 15, finding 8).

Run by the gateway at start and at every reload, before the new configuration
is used. A problem the operator must fix but that still lets the gateway serve
is a warning (one JSON log line naming the file); one that would refuse every
client is a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from datetime import datetime

from ..config import GatewayConfig
from ..reasons import ConfigError
from ..revocation.crl import parse_crl

__all__ = ["listen_error", "startup_warnings"]

# What an operator can do about each bind(2)/getaddrinfo(3) failure.
_BIND_ERRORS: dict[int, str] = {
    errno.EADDRINUSE: "is already in use (another process listens there: stop it or pick another port)",
    errno.EADDRNOTAVAIL: "is not an address of this machine (use one of its addresses, or 0.0.0.0)",
    errno.EACCES: "needs privileges (ports below 1024: run with CAP_NET_BIND_SERVICE or pick a port >= 1024)",
    errno.EPERM: "is not permitted here",
}


def listen_error(key: str, address: object, exc: OSError) -> ConfigError:
    """A failed bind/listen on ``address`` as a one-line :class:`ConfigError` naming ``key``.

    ``server.listen: 127.0.0.1:8443 is already in use`` instead of a traceback
    ending in ``OSError: [Errno 98]`` (asyncio and trio word it differently).
    """
    if isinstance(exc, socket.gaierror):
        return ConfigError(f"{address}: the host name does not resolve ({exc.strerror})", key=key)
    why = _BIND_ERRORS.get(exc.errno or 0)
    if why is None:
        why = f"cannot listen: {exc.strerror or exc}"
    return ConfigError(f"{address} {why}", key=key)


def startup_warnings(config: GatewayConfig, *, at: datetime) -> list[dict[str, str]]:
    """Warnings about ``config`` (a ``mtlscore.config.Config``) at time ``at``.

    A configured CRL that is stale (nextUpdate passed) or not yet valid
    (thisUpdate ahead) cannot be used (RFC 5280 §6.3.3 (a)), so the revocation
    status of what it covers is unavailable: a warning, or :class:`ConfigError`
    when the revocation mode is hard (every such client would be refused). A
    server private key readable by group or others: a warning.
    """
    warnings: list[dict[str, str]] = []
    policy = config.policy
    hard = "hard" in (policy.revocation_mode(0), policy.revocation_mode(1))
    skew = policy.clock_skew
    for i, (path, blob) in enumerate(zip(config.crl_files, config.crls, strict=False)):
        crl = parse_crl(blob)  # already checked by the config parser
        next_update = crl.next_update.isoformat() if crl.next_update is not None else "none"
        if crl.this_update > at + skew:
            why = f"the CRL is not valid yet: its thisUpdate is {crl.this_update.isoformat()}"
        elif crl.next_update is not None and crl.next_update < at - skew:
            why = f"the CRL is stale: its nextUpdate was {next_update}"
        elif crl.next_update is None and crl.this_update + policy.max_revocation_age < at:
            age = policy.max_revocation_age
            why = f"the CRL has no nextUpdate and is older than revocation.max_age_seconds ({age})"
        else:
            continue
        key = f"revocation.crls[{i}]"
        if hard:
            raise ConfigError(
                f"{path}: {why}; under hard revocation mode every certificate it covers would be "
                "refused (revocation_unavailable): replace the file",
                key=key,
            )
        warnings.append({
            "key": key,
            "file": str(path),
            "next_update": next_update,
            "detail": f"{why}; the certificates it covers get revocation_unavailable (soft mode: "
            "accepted with a note) until the file is replaced",
        })
    server = config.server
    if server is not None and server.rejects_in_handshake and server.tls_engine == "auto":
        from .tls import deferred_available

        if not deferred_available():
            warnings.append({
                "key": "server.reject_at",
                "detail": "rejecting in the handshake needs pyOpenSSL (pip install \"mtlscore[gateway]\"); "
                "without it stdlib ssl refuses only what OpenSSL checks at the TLS layer, and every other "
                "invalid certificate (expired, revoked, ...) gets an HTTP 403",
            })
    if server is not None:
        try:
            mode = stat.S_IMODE(os.stat(server.key).st_mode)
        except OSError:
            mode = 0  # unreadable: the TLS engine reports it as a ConfigError
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append({
                "key": "server.key",
                "file": str(server.key),
                "mode": f"{mode:04o}",
                "detail": f"the server's private key is readable by group or others (mode {mode:04o}): chmod 600",
            })
    return warnings
