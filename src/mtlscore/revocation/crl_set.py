"""The CRLs at hand for one certificate's revocation check (RFC 5280 §6.3.3): given, cached, fetched.

A :class:`CRLSet` keeps what a :class:`mtlscore.revocation.checker.PositionCheck`
has gathered for its certificate — the CRLs given for the validation, those
taken from the cache and those fetched (shared by the validation's checks,
each with the URL it came from) — decides their status together
(:func:`mtlscore.revocation.crl.check_certificate`), says which further CRLs are worth
asking for (deltas named by FreshestCRL; the CRLs a CRL signer's path needs),
and puts the fetched CRLs that proved usable in the cache.
"""

from __future__ import annotations

from datetime import datetime

from ..verify.policy import Policy, RevocationMode
from ..x509.cert import Certificate
from .aia import http_url
from .cache import RevocationCache
from .crl import CRLStatus, ParsedCRL, check_certificate, freshest_urls
from .crl_signer import SignerContext

__all__ = ["CRLSet"]


class CRLSet:
    """The CRLs at hand for ``cert`` (issued by ``issuer``), checked in ``mode``."""

    def __init__(
        self, cert: Certificate, issuer: Certificate, *, mode: RevocationMode, policy: Policy,
        cache: RevocationCache, given: list[ParsedCRL], at: datetime, signers: SignerContext | None,
    ) -> None:
        self.cert = cert
        self.issuer = issuer
        self.mode = mode
        self.policy = policy
        self.cache = cache
        self.given = given
        self.at = at
        self.signers = signers
        # Shared by the validation's checks when there is a signer context.
        self.fetched: list[tuple[ParsedCRL, str]] = signers.fetched if signers is not None else []
        self.asked: set[str] = set()  # URLs asked for, or taken from the cache
        self._stored: set[str] = set()  # URLs whose CRL is in the cache already

    def status(self) -> CRLStatus:
        """RFC 5280 §6.3.3 over every CRL at hand."""
        p = self.policy
        search = self.signers.search(self.cert, self.mode) if self.signers is not None else None
        return check_certificate(self.cert, self.issuer, self.given, fetched=self.fetched, at=self.at,
                                 skew=p.clock_skew, max_age=p.max_revocation_age, signers=search)

    def has(self, url: str) -> bool:
        """Whether a CRL from ``url`` is at hand (fetched for another check of the validation, say)."""
        return any(u == url for _, u in self.fetched)

    def take_cached(self, url: str) -> bool:
        """Take the cached CRL from ``url``, if there is one."""
        crl = self.cache.get_crl(self.issuer, url, at=self.at)
        if crl is None:
            return False
        if all(c is not crl for c, _ in self.fetched):
            self.fetched.append((crl, url))
        self.asked.add(url)
        self._stored.add(url)
        return True

    def signer_urls(self) -> list[str]:
        """CRL locations a CRL signer's path needs (its status unknown so far), after taking cached ones."""
        ctx = self.signers
        if ctx is None or not self.policy.fetch:
            return []
        return [u for u in ctx.to_fetch(self.asked) if not self.take_cached(u)]

    def delta_urls(self, st: CRLStatus) -> list[str]:
        """FreshestCRL (RFC 5280 §4.2.1.15, §5.2.6): delta locations of the certificate and its complete CRLs."""
        if not self.policy.fetch:
            return []
        urls = list(freshest_urls(self.cert))
        # The complete CRLs used, and those of the certificate's issuer at hand (a stale one
        # is used with a current delta, RFC 5280 §6.3.3 (a)(1)(i)).
        for crl in [*st.used, *self.given, *(c for c, _ in self.fetched)]:
            if not crl.is_delta and (crl.issuer_key == self.cert.issuer_key or crl in st.used):
                urls.extend(crl.freshest)
        return [u for u in dict.fromkeys(urls) if http_url(u) and u not in self.asked and not self.has(u)]

    def settle(self) -> CRLStatus:
        """The status once the cached CRLs a signer's path needs are taken; usable fetched CRLs are cached."""
        while True:
            st = self.status()
            n = len(self.fetched)
            if st.status in ("good", "revoked") or st.exhausted:
                break
            self.signer_urls()
            if len(self.fetched) == n:
                break
        for crl, url in self.fetched:
            if url not in self._stored and any(used is crl for used in st.used):
                # Usable for this certificate: it verified under a validated signer (§6.3.3 (f)-(g)).
                self._store(crl, url)
        return st

    def add(self, crl: ParsedCRL, url: str) -> CRLStatus:
        """Take a CRL fetched from ``url``; the status with it."""
        self.fetched.append((crl, url))
        st = self.settle()
        ctx = self.signers
        if url not in self._stored and ctx is not None and url in ctx.wanted and ctx.verified(crl):
            self._store(crl, url)  # a signer path's CRL, signed by a key at hand under its issuer's name
        return st

    def _store(self, crl: ParsedCRL, url: str) -> None:
        self._stored.add(url)
        self.cache.put_crl(self.issuer, url, crl, at=self.at, max_age=self.policy.max_revocation_age)
