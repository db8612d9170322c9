"""Who may sign a CRL (RFC 5280 §6.3.3 (f)): the CRL issuer's own certification path.

A CRL is most often signed by the certificate's issuer with the key on the
validated path; :func:`mtlscore.revocation.crl.check_certificate` takes that case itself.
Otherwise (a CA that rolled its key, a separate CRL-signing key certified under
the CA's name, an indirect CRL from the cRLIssuer a distribution point names)
the signer is searched for here among the certificates at hand with the CRL
issuer's name: its key must verify the CRL, its keyUsage (when present) allow
cRLSign, its path be valid — built and checked by the path builder, to the
**same trust anchor** as the certificate — and every certificate on that path
not revoked, checked with the same CRLs (nested at most :data:`MAX_NESTING`
deep, a certificate never vouching for its own status).

The whole search of one validation — candidates examined and the path builder's
work — spends one budget, the policy's ``max_path_work`` less what building the
certificate's own path took: a hostile CRL set (many same-name signers, loops
through self-issued certificates) runs it out and the CRL counts as unusable
(``exhausted``), never a hang.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime

from ..reasons import Reason
from ..verify.path import build_path
from ..verify.policy import Policy, RevocationMode
from ..verify.signature import SignatureCache
from ..verify.trust import Anchor, TrustStore
from ..x509.cert import Certificate
from ..x509.names import NameKey
from .aia import http_url
from .crl import ParsedCRL, check_certificate

__all__ = ["MAX_NESTING", "Budget", "SignerContext", "SignerSearch"]

# A CRL signer's path is revocation-checked, which may need another signer's path, …:
# this many levels below the certificate's own check (OpenSSL allows one).
MAX_NESTING = 2


@dataclass(slots=True)
class Budget:
    """Work units left for CRL-signer searches (candidates examined + path-building work)."""

    left: int
    exhausted: bool = False

    def spend(self, n: int = 1) -> bool:
        """Take ``n`` units; False (and exhausted from then on) when there were not enough."""
        self.left -= n
        if self.left < 0:
            self.exhausted = True
        return not self.exhausted


class SignerContext:
    """What the CRL-signer searches of one validation share.

    ``certs``: every certificate at hand (the path, presented, fetched);
    ``given``: the CRLs given for the validation; :attr:`fetched` grows as CRLs
    are fetched. ``budget``: work units for the searches.
    """

    def __init__(
        self,
        *,
        trust: TrustStore,
        anchor: Anchor,
        policy: Policy,
        certs: list[Certificate],
        given: list[ParsedCRL],
        at: datetime,
        signatures: SignatureCache | None,
        budget: int,
    ) -> None:
        self.anchor = anchor
        self._trust = trust
        self._restricted: TrustStore | None = None
        self._policy: Policy | None = None
        self.base_policy = policy
        self.certs = certs
        self.given = given
        self.fetched: list[tuple[ParsedCRL, str]] = []
        # CRL locations of signer-path certificates whose status was unknown: fetched on request.
        self.wanted: dict[str, None] = {}
        self.at = at
        self.signatures = signatures
        self.budget = Budget(budget)
        self._by_name: dict[NameKey, list[Certificate]] | None = None
        self._memo: dict[tuple[int, frozenset[bytes], int], tuple[Certificate | str, tuple[str, ...]]] = {}

    # Made on first use: most validations never search for a signer.
    @property
    def trust(self) -> TrustStore:
        """§6.3.3 (f): the CRL signer's path ends at the certificate's trust anchor and no other."""
        if self._restricted is None:
            self._restricted = self._trust.restricted(self.anchor)
        return self._restricted

    @property
    def policy(self) -> Policy:
        """The signer is the end of its path but no TLS client: no EKU, digitalSignature or policy requirement."""
        if self._policy is None:
            self._policy = self.base_policy.evolve(required_eku=None, require_leaf_digital_signature=False,
                                                   certificate_policies=None, require_explicit_policy=None)
        return self._policy

    def named(self, name: NameKey) -> list[Certificate]:
        """Certificates at hand (and in the trust store's pool) whose subject is ``name``."""
        if self._by_name is None:
            self._by_name = {}
            for c in self.certs:
                self._by_name.setdefault(c.subject_key, []).append(c)
        out: list[Certificate] = []
        seen: set[bytes] = set()
        for c in [*self._by_name.get(name, ()), *self.trust.pool_for(name)]:
            if c.sha256 not in seen:
                seen.add(c.sha256)
                out.append(c)
        return out

    def to_fetch(self, asked: set[str]) -> list[str]:
        """CRL locations wanted for signer paths and not yet asked for or fetched."""
        have = {u for _, u in self.fetched}
        return [u for u in self.wanted if u not in asked and u not in have]

    def verified(self, crl: ParsedCRL) -> bool:
        """Whether a certificate at hand named as ``crl``'s issuer (or the anchor) has the key that signed it."""
        a = self.anchor.certificate
        named = self.named(crl.issuer_key) + ([a] if a.subject_key == crl.issuer_key else [])
        return any(crl.verifies_with(c) for c in named[:8])

    def search(self, cert: Certificate, mode: RevocationMode) -> SignerSearch:
        """A resolver for the CRLs of ``cert`` (checked in ``mode``)."""
        return SignerSearch(self, frozenset({cert.sha256}), mode, 0)


class SignerSearch:
    """A :class:`mtlscore.revocation.crl.SignerResolver` for one certificate's CRLs."""

    def __init__(self, ctx: SignerContext, visiting: frozenset[bytes], mode: RevocationMode, depth: int) -> None:
        self.ctx = ctx
        self.visiting = visiting
        self.mode = mode
        self.depth = depth
        self.notes: list[str] = []

    @property
    def exhausted(self) -> bool:
        return self.ctx.budget.exhausted

    def __call__(self, crl: ParsedCRL) -> Certificate | str:
        # Fetched CRLs can change the answer (a signer's own CRL): the memo holds per count.
        key = (id(crl), self.visiting, len(self.ctx.fetched))
        found = self.ctx._memo.get(key)
        if found is None:
            mark = len(self.notes)
            result = self._find(crl)
            found = (result, tuple(self.notes[mark:]))
            del self.notes[mark:]
            if not self.exhausted:
                self.ctx._memo[key] = found
        self.notes.extend(found[1])
        return found[0]

    def _find(self, crl: ParsedCRL) -> Certificate | str:
        ctx = self.ctx
        budget = ctx.budget
        anchor = ctx.anchor.certificate
        candidates = [anchor] if anchor.subject_key == crl.issuer_key else []
        candidates += [c for c in ctx.named(crl.issuer_key) if c.sha256 != anchor.sha256]
        if crl.aki is not None:
            candidates.sort(key=lambda c: c.ski != crl.aki)
        why: list[str] = []
        for cand in candidates:
            if not budget.spend():
                return "the search for its signer ran out of the work budget (max_path_work)"
            if not crl.verifies_with(cand):
                continue
            who = cand.describe()
            if cand.key_usage is not None and not cand.key_usage.crl_sign:
                why.append(f"signer {who!r} lacks keyUsage cRLSign (RFC 5280 §4.2.1.3)")
                continue
            if cand.sha256 == anchor.sha256:
                return cand  # the trust anchor itself: trusted as configured
            path = self._path(cand)
            if isinstance(path, str):
                why.append(path)
                if self.exhausted:
                    return path
                continue
            bad = self._revocation(path)
            if bad is not None:
                why.append(bad)
                if self.exhausted:
                    return bad
                continue
            return cand
        if not why:
            return (f"no certificate at hand named {crl.issuer_text!r} with a path to the trust anchor "
                    f"{ctx.anchor.name!r} carries the key that signed it (RFC 5280 §6.3.3 (f))")
        return "; ".join(why)

    def _path(self, cand: Certificate) -> list[Certificate] | str:
        """The validated path of ``cand`` to the anchor, anchor last; or why there is none."""
        ctx = self.ctx
        left = ctx.budget.left
        if left <= 0:
            ctx.budget.exhausted = True
            return "the search for its signer ran out of the work budget (max_path_work)"
        result = build_path(cand, ctx.certs, ctx.trust, ctx.policy.evolve(max_path_work=left),
                            at=ctx.at, signatures=ctx.signatures)
        ctx.budget.spend(result.work)
        if not result.ok:
            assert result.failure is not None
            if result.failure.reason is Reason.SEARCH_LIMIT_EXCEEDED:
                ctx.budget.exhausted = True
                return "the search for its signer ran out of the work budget (max_path_work)"
            f = result.failure
            if f.reason is Reason.UNTRUSTED and f.position == 0:
                # The builder's wording is for a client certificate (allowlists, sending the chain).
                why = f"no certificate at hand issued it (its issuer is {cand.issuer_text!r})"
            else:
                why = f.detail.replace("client certificate", "the signer's certificate", 1)
            return f"signer {cand.describe()!r} has no valid path to the trust anchor {ctx.anchor.name!r}: {why}"
        path = list(result.path)
        if path[-1].sha256 != ctx.anchor.certificate.sha256:
            path.append(ctx.anchor.certificate)
        return path

    def _revocation(self, path: list[Certificate]) -> str | None:
        """Why a certificate on the signer's ``path`` (anchor last) fails revocation; None when none does."""
        if self.mode == "off":
            return None
        ctx = self.ctx
        p = ctx.base_policy
        for cert, issuer in itertools.pairwise(path):
            who = cert.describe()
            if cert.sha256 in self.visiting:
                # The CRL would vouch for a certificate on its own signer's path.
                return (f"{who!r} is on the path of the CRL's own signer, so the CRL cannot decide its status")
            if self.depth >= MAX_NESTING:
                return f"the revocation of CRL signer path certificate {who!r} needs CRL signers nested too deep"
            child = SignerSearch(ctx, self.visiting | {cert.sha256}, self.mode, self.depth + 1)
            st = check_certificate(cert, issuer, ctx.given, fetched=ctx.fetched, at=ctx.at, skew=p.clock_skew,
                                   max_age=p.max_revocation_age, signers=child)
            self.notes.extend(child.notes)
            if st.status == "revoked":
                return f"CRL signer path certificate {who!r} is revoked: {st.detail}"
            if st.status == "good":
                continue
            if self.exhausted:
                return "the search for its signer ran out of the work budget (max_path_work)"
            detail = st.detail or "no CRL covers it"
            for url in cert.crl_urls:
                if http_url(url):
                    ctx.wanted[url] = None
            if self.mode == "hard":
                return f"the revocation status of CRL signer path certificate {who!r} is unknown: {detail}"
            self.notes.append(f"revocation of CRL signer path certificate {who!r} not checked (soft-fail): {detail}")
        return None
