"""A stdlib ``ssl`` client on a pair of memory BIOs: the TLS peer of the engine and driver tests.

The test carries the bytes: it reads what the client wrote from ``outgoing`` and
writes the server's bytes into ``incoming``.
"""

from __future__ import annotations

import ssl


class BioClient:
    def __init__(self, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None) -> None:
        """``session``: offer this session from an earlier connection (resumption)."""
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost", session=session)
        self.done = False

    def handshake_step(self) -> bool:
        """Take the handshake as far as the bytes in ``incoming`` allow; True when it just completed."""
        if self.done:
            return False
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        self.done = True
        return True
