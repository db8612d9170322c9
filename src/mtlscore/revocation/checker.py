"""Revocation of one certificate on a validated path (the cache is mtlscore.revocation.cache).

Sources, in order (RFC 5280 §6.3, RFC 6960): CRLs the operator gave; OCSP
responses the caller has (stapled); the cache of fetched answers; and then, when
``Policy.fetch`` is on, requests for the certificate's OCSP responders and CRL
distribution points (preferred kind first). The first definite answer (good or
revoked) decides. When none comes, the position's mode decides: ``soft``
accepts and records why on the verdict's notes; ``hard`` rejects with
``revocation_unavailable``.

A CRL *given* for the issuer that cannot be used is an operator problem and
rejects even in soft mode (the core validator's rule); a *fetched* answer that
cannot be used is merely no answer.

An OCSP "good" signed by a delegated responder whose certificate lacks
id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1) is believed only once the
responder's own status is known to be good: from the CRLs at hand (given or
cached for the CA), else — with ``fetch`` — from at most
:data:`MAX_RESPONDER_CRLS` of the responder's own CRL distribution points
(never OCSP: a responder does not vouch for itself). Until then it is no
answer. A fetch that failed is remembered for ``Policy.fetch_failure_ttl``
(the cache's negative entries) and its URL is not asked again meanwhile.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ..reasons import Reason
from ..verify.machine import NeedCRL, NeedOCSP, Request
from ..verify.policy import Policy
from ..x509.cert import Certificate
from .aia import http_url
from .cache import RevocationCache
from .crl import CRLStatus, ParsedCRL, check_certificate, parse_crl
from .crl_set import CRLSet
from .crl_signer import SignerContext
from .ocsp import OCSPStatus, build_request, check_response, get_url

__all__ = ["MAX_RESPONDER_CRLS", "Outcome", "PositionCheck", "RevocationCache", "Source", "plan_sources"]

# CRL distribution points of a delegated OCSP responder asked for its own status, per response.
MAX_RESPONDER_CRLS = 2


@dataclass(frozen=True, slots=True)
class Source:
    """Where revocation status for a certificate can be fetched."""

    kind: Literal["ocsp", "crl"]
    url: str


def plan_sources(cert: Certificate, policy: Policy) -> tuple[list[Source], list[str]]:
    """The fetchable sources for ``cert``, preferred kind first, and notes on skipped ones."""
    notes: list[str] = []
    by_kind: dict[str, list[Source]] = {"ocsp": [], "crl": []}
    for kind, urls in (("ocsp", cert.ocsp_urls), ("crl", cert.crl_urls)):
        for url in dict.fromkeys(urls):
            if http_url(url):
                by_kind[kind].append(Source(kind, url))  # type: ignore[arg-type]
            else:
                # RFC 5280 §4.2.1.13 allows LDAP and others; runtimes speak HTTP only.
                notes.append(f"{kind.upper()} location {url!r} of {cert.describe()!r} skipped: only http(s) is fetched")
    first, second = ("ocsp", "crl") if policy.revocation_prefer == "ocsp" else ("crl", "ocsp")
    return by_kind[first] + by_kind[second], notes


# -- one certificate -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """The revocation decision for one certificate: accept (``reason`` None) or reject."""

    reason: Reason | None
    detail: str = ""
    notes: tuple[str, ...] = ()


class PositionCheck:
    """The revocation check of the certificate at ``position`` on a validated path.

    Local sources are consulted on construction; :meth:`next_request` then asks
    for what is still missing, one request at a time, until :attr:`outcome` is set.
    CRLs are decided together (RFC 5280 §6.3.3): every CRL at hand — given,
    cached, fetched — counts, and a good status needs their reasons to add up to
    all reasons. ``signers`` (one per validation) finds CRL signers other than
    ``issuer`` (§6.3.3 (f)); without it only ``issuer``'s key signs CRLs.
    """

    def __init__(
        self,
        cert: Certificate,
        issuer: Certificate,
        position: int,
        *,
        policy: Policy,
        cache: RevocationCache,
        given: list[ParsedCRL],
        stapled: list[bytes],
        at: datetime,
        signers: SignerContext | None = None,
    ) -> None:
        self.cert = cert
        self.issuer = issuer
        self.position = position
        self.policy = policy
        self.cache = cache
        self.at = at
        self.mode = policy.revocation_mode(position)
        self.outcome: Outcome | None = None
        self.notes: list[str] = []
        self.failures: list[str] = []
        self.sources: list[Source] = []
        self.tried = 0
        self._nonce: bytes | None = None
        self._given = given
        # An OCSP "good" waiting for its delegated responder's own status (RFC 6960
        # §4.2.2.2.1): the status, where it came from, and the responder's CRL sources left.
        self._held: tuple[OCSPStatus, str | None] | None = None
        self._responder_sources: list[Source] = []
        self._responder_request: NeedCRL | None = None
        self._crls = CRLSet(cert, issuer, mode=self.mode, policy=policy, cache=cache, given=given, at=at,
                            signers=signers)
        self._good: CRLStatus | None = None  # good, but a FreshestCRL delta is still to be asked for
        self._given_problem: str | None = None  # why a given CRL in scope cannot be used
        self._local(given, stapled)

    # -- deciding ----------------------------------------------------------

    def _accept(self) -> None:
        self.outcome = Outcome(None, "", tuple(self.notes))

    def _reject(self, reason: Reason, detail: str) -> None:
        self.outcome = Outcome(reason, detail, tuple(self.notes))

    def _revoked(self, detail: str) -> None:
        self._reject(Reason.REVOKED, detail + "; the holder needs a new certificate")

    def _give_up(self, *, had_sources: bool) -> None:
        if self._given_problem is not None:
            self._reject(Reason.REVOCATION_UNAVAILABLE,
                         f"no usable revocation data for {self.cert.describe()!r}: {self._given_problem}")
            return
        if self._good is not None:
            # The complete CRLs answered; only the delta named by FreshestCRL could not be had.
            why = "; ".join(self.failures) or "no answer"
            self.notes.append(f"revocation of {self.cert.describe()!r} decided without a delta CRL: {why}")
            self._accept()
            return
        if not had_sources and not self.failures:
            if self.mode == "hard":
                self._reject(
                    Reason.REVOCATION_UNAVAILABLE,
                    f"revocation is hard-fail and there is no CRL for {self.cert.describe()!r} "
                    f"(issuer {self.cert.issuer_text!r})"
                    + ("" if not self.policy.fetch else " and it names no fetchable CRL or OCSP location"),
                )
            else:
                if self.policy.fetch:
                    self.notes.append(
                        f"revocation of {self.cert.describe()!r} not checked: it names no CRL or OCSP location"
                    )
                self._accept()
            return
        who = self.cert.describe()
        why = "; ".join(self.failures) or "no answer"
        if self.mode == "hard":
            self._reject(Reason.REVOCATION_UNAVAILABLE,
                         f"revocation is hard-fail and no fresh status for {who!r} could be had: {why}")
        else:
            self.notes.append(f"revocation of {who!r} not checked (soft-fail): {why}")
            self._accept()

    def _exhausted(self, st: CRLStatus) -> None:
        self._reject(Reason.SEARCH_LIMIT_EXCEEDED,
                     f"the revocation of {self.cert.describe()!r} could not be decided within the work budget "
                     f"(max_path_work): {st.detail}; remove unrelated CRLs or certificates")

    def _delta_sources(self, st: CRLStatus) -> list[Source]:
        return [Source("crl", u) for u in self._crls.delta_urls(st)]

    def _signer_sources(self) -> list[Source]:
        return [Source("crl", u) for u in self._crls.signer_urls()]

    def _more_sources(self, st: CRLStatus) -> list[Source]:
        """CRLs that may still settle an open status: a CRL signer path's; deltas over a stale complete CRL."""
        out = self._signer_sources()
        if st.status == "unavailable":
            out += [d for d in self._delta_sources(st) if d not in out]
        return out

    def _decide(self, st: CRLStatus, *, where: str | None = None) -> bool:
        """Act on a CRL status; True once :attr:`outcome` is set."""
        self.notes.extend(n for n in st.notes if n not in self.notes)
        if st.status == "revoked":
            self._revoked(st.detail)
            return True
        if st.exhausted and self.mode == "hard":
            self._exhausted(st)
            return True
        if st.status == "good":
            pending = self._delta_sources(st)
            if any([self._from_cache(d, decide=False) for d in pending]):
                return self._decide(self._crls.settle(), where=where)  # with the cached delta(s)
            if pending:
                # Good by the complete CRLs; ask for the deltas FreshestCRL names before deciding.
                self._good = st
                self.sources = pending
                return False
            self._good = None
            self._accept()
            return True
        if where is not None:
            if st.status == "uncovered" and not st.detail.strip():
                self.failures.append(f"the CRL at {where} does not cover {self.cert.describe()!r}")
            elif st.status == "uncovered" and "another name" in st.detail:
                self.failures.append(f"the CRL at {where} is issued by another name, not by {self.cert.issuer_text!r}")
            elif st.status == "uncovered":
                self.failures.append(f"the CRL at {where} does not cover {self.cert.describe()!r}: {st.detail}")
            else:
                self.failures.append(f"the CRL at {where} leaves the status open: {st.detail}")
        return False

    def _local(self, given: list[ParsedCRL], stapled: list[bytes]) -> None:
        p = self.policy
        if self.mode == "off":
            self._accept()
            return
        if self.mode == "soft" and not given and not stapled and not p.fetch and not len(self.cache):
            # Soft-fail with nothing to consult: the answer is "accept" with nothing to note.
            self._accept()
            return
        st = self._crls.settle()
        if self._decide(st):
            return
        if self._good is not None:
            return  # a delta CRL is asked for first
        wanted = self._more_sources(st)
        if st.status == "unavailable":
            # A CRL given for this issuer that cannot be used fails in soft mode too — once
            # the CRLs its signer's path needs (RFC 5280 §6.3.3 (f)) have been asked for.
            self._given_problem = st.detail
            if wanted:
                self.sources = wanted
            else:
                self._give_up(had_sources=True)
            return
        if st.status == "partial" or (st.status == "uncovered" and st.detail and self.mode == "hard"):
            # Hard-fail says why the CRLs at hand did not answer (reasons left, out of scope).
            self.failures.append(st.detail if st.status == "partial" else f"no CRL at hand in scope: {st.detail}")
        for data in stapled:
            o = self._ocsp_status(data, nonce=None)
            if o.status in ("good", "revoked"):
                if self._take_ocsp(o, None) or self._held is not None:
                    break
            elif o.status != "unrelated":
                self.notes.append(f"a stapled OCSP response was ignored: {o.detail}")
        if self.outcome is not None:
            return
        sources, skipped = plan_sources(self.cert, p)
        self.notes.extend(skipped)
        for src in sources:
            if self._from_cache(src):
                return
        if self._good is not None:
            return
        if p.fetch and (sources or wanted or self._responder_sources):
            self.sources = wanted + sources
            return
        if given and not p.fetch and self.mode == "soft" and st.status == "uncovered":
            why = f": {st.detail}" if st.detail else ""
            self.notes.append(f"revocation of {self.cert.describe()!r} not checked: no CRL in scope for it "
                              f"(soft-fail){why}")
        self._give_up(had_sources=(p.fetch and bool(sources)) or bool(self.failures))

    def _from_cache(self, src: Source, *, decide: bool = True) -> bool:
        """Take ``src``'s cached answer; True when it decided (or, ``decide`` off, when there was one)."""
        if src.kind == "crl":
            if not self._crls.take_cached(src.url):
                return False
            return True if not decide else self._decide(self._crls.settle())
        status = self.cache.get_ocsp(self.issuer, src.url, self.cert.serial, at=self.at)
        if status is None or (status.this_update is not None and status.this_update > self.at + self.policy.clock_skew):
            return False
        if status.status == "revoked":
            self._revoked(status.detail)
            return True
        if status.status == "good":
            self._accept()
            return True
        return False

    def _crl_status(self, crl: ParsedCRL, url: str) -> bool:
        st = self._crls.add(crl, url)
        if self._given_problem is not None:
            self._given_problem = st.detail if st.status == "unavailable" else None
        if self._decide(st, where=url):
            return True
        if self._good is None and (more := self._more_sources(st)):
            self.sources = more + [s for s in self.sources if s not in more]
        return False

    def _ocsp_status(self, data: bytes, *, nonce: bytes | None) -> OCSPStatus:
        p = self.policy
        return check_response(data, self.cert, self.issuer, at=self.at, skew=p.clock_skew,
                              max_age=p.max_revocation_age, nonce=nonce, allowed_hashes=p.signature_hashes)

    # -- OCSP answers and their responders ---------------------------------

    def _take_ocsp(self, o: OCSPStatus, url: str | None) -> bool:
        """Act on a good/revoked OCSP status (fetched from ``url``, or stapled); True when it decided."""
        p = self.policy
        if o.status == "good" and o.responder is not None:
            # RFC 6960 §4.2.2.2.1: no id-pkix-ocsp-nocheck, so the responder's own status counts.
            responder = self._responder_status(o.responder)
            if responder == "revoked":
                self.failures.append(self._responder_text(o.responder, url, "is itself revoked"))
                return False
            if responder != "good":
                self._held = (o, url)
                self._responder_sources = (
                    [Source("crl", u) for u in dict.fromkeys(o.responder.crl_urls) if http_url(u)][:MAX_RESPONDER_CRLS]
                    if p.fetch else []
                )
                if not self._responder_sources:
                    self._unconfirmed()
                return False
        if url is not None:
            self.cache.put_ocsp(self.issuer, url, self.cert.serial, o, at=self.at, max_age=p.max_revocation_age)
        # A "revoked" is believed whoever signed it for the CA: refusing is the safe side.
        if o.status == "revoked":
            self._revoked(o.detail)
        else:
            self._accept()
        return True

    def _responder_text(self, responder: Certificate, url: str | None, what: str) -> str:
        where = f"{url}: the OCSP response" if url else "a stapled OCSP response"
        return (f"{where} is signed by delegated responder {responder.describe()!r}, which has no "
                f"id-pkix-ocsp-nocheck and {what} (RFC 6960 §4.2.2.2.1)")

    def _responder_status(self, responder: Certificate) -> str:
        """The responder's status from the CRLs at hand: given ones, then those cached for its DPs."""
        p = self.policy
        found = [(self._given, None)] + [
            ([crl], u) for u in responder.crl_urls if (crl := self.cache.get_crl(self.issuer, u, at=self.at))
        ]
        for crls, url in found:
            st = check_certificate(responder, self.issuer, crls, at=self.at, skew=p.clock_skew,
                                   max_age=p.max_revocation_age, url=url)
            if st.status in ("good", "revoked"):
                return st.status
        return "unknown"

    def _unconfirmed(self) -> None:
        """The held response's responder status could not be had: the response is no answer."""
        assert self._held is not None
        o, url = self._held
        self._held = None
        self._responder_sources = []
        assert o.responder is not None
        self.failures.append(self._responder_text(o.responder, url, "whose own revocation status is unknown"))

    def _responder_answer(self, request: NeedCRL, data: bytes) -> None:
        assert self._held is not None
        o, url = self._held
        responder = o.responder
        assert responder is not None
        p = self.policy
        try:
            crl = parse_crl(bytes(data))
        except ValueError as exc:
            self.failures.append(f"{request.url}: {exc}")
            return
        st = check_certificate(responder, self.issuer, [crl], at=self.at, skew=p.clock_skew,
                               max_age=p.max_revocation_age, url=request.url)
        if st.status in ("good", "revoked"):
            self.cache.put_crl(self.issuer, request.url, crl, at=self.at, max_age=p.max_revocation_age)
        if st.status == "good":
            self._held = None
            self._responder_sources = []
            self._take_ocsp(OCSPStatus(o.status, o.detail, o.this_update, o.next_update), url)
        elif st.status == "revoked":
            self._held = None
            self._responder_sources = []
            self.failures.append(self._responder_text(responder, url, "is itself revoked"))
        else:
            self.failures.append(f"{request.url}: no status for the OCSP responder: {st.detail or st.status}")

    # -- asking ------------------------------------------------------------

    def _recently_failed(self, src: Source) -> bool:
        until = self.cache.failed_until(src.kind, src.url, at=self.at)
        if until is None:
            return False
        self.failures.append(f"{src.url}: a fetch failed recently; not asked again until {until.isoformat()}")
        return True

    def next_request(self) -> Request | None:
        """The next request to make, or None once :attr:`outcome` is set."""
        while self.outcome is None:
            if self._held is not None:
                if not self._responder_sources:
                    self._unconfirmed()
                    continue
                src = self._responder_sources.pop(0)
                if self._recently_failed(src):
                    continue
                self._responder_request = NeedCRL(src.url)
                return self._responder_request
            if not self.sources:
                self._give_up(had_sources=True)
                return None
            src = self.sources.pop(0)
            if src.kind == "crl" and src.url in self._crls.asked:
                continue
            if src.kind == "crl" and self._crls.has(src.url):
                # Fetched meanwhile for another check of this validation (a CRL signer's path).
                self._crls.asked.add(src.url)
                self._decide(self._crls.settle(), where=src.url)
                continue
            if self._from_cache(src) or self._recently_failed(src):
                continue  # answered meanwhile (e.g. by a responder's CRL), or failing
            if src.kind == "crl" and src.url in self._crls.asked:
                continue  # taken from the cache without deciding
            self.tried += 1
            if src.kind == "crl":
                self._crls.asked.add(src.url)
                return NeedCRL(src.url)
            self._nonce = secrets.token_bytes(16) if self.policy.ocsp_nonce else None
            try:
                der = build_request(self.cert, self.issuer, nonce=self._nonce)
            except Exception as exc:  # noqa: BLE001 - a certificate the OCSP encoder refuses
                self.failures.append(f"no OCSP request could be built for {src.url}: {exc}")
                continue
            return NeedOCSP(src.url, der, get_url(src.url, der) if self.policy.ocsp_get else None)
        return None

    def answer(self, request: Request, data: bytes) -> None:
        """Take the bytes fetched for ``request``. Never raises on bad bytes."""
        p = self.policy
        responder = request == self._responder_request
        self._responder_request = None
        if len(data) > p.max_fetch_bytes:
            self.failures.append(f"{request.url}: the answer is over {p.max_fetch_bytes} bytes")
            return
        if responder and isinstance(request, NeedCRL):
            self._responder_answer(request, data)
            return
        if isinstance(request, NeedCRL):
            try:
                crl = parse_crl(bytes(data))
            except ValueError as exc:
                self.failures.append(f"{request.url}: {exc}")
                return
            self._crl_status(crl, request.url)
            return
        if isinstance(request, NeedOCSP):
            o = self._ocsp_status(bytes(data), nonce=self._nonce)
            if o.status in ("good", "revoked"):
                self._take_ocsp(o, request.url)
                return
            self.failures.append(f"{request.url}: {o.detail}")

    def fail(self, request: Request, why: str, *, remember: bool = True) -> None:
        """Record that ``request`` could not be answered.

        ``remember``: a fetch that was tried and failed; its URL is then not asked
        again for ``Policy.fetch_failure_ttl`` (False: it was not tried at all).
        """
        self._responder_request = None
        self.failures.append(f"{request.url}: {why or 'unavailable'}")
        if remember and isinstance(request, NeedCRL | NeedOCSP):
            kind = "crl" if isinstance(request, NeedCRL) else "ocsp"
            self.cache.note_failure(kind, request.url, at=self.at, ttl=self.policy.fetch_failure_ttl)
