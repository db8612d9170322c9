"""Validator: presented chain + time → :class:`Verdict`, as a machine that can ask for data.

Data flows one way (STYLE.md §6): bytes → parsed certificates → candidate
paths → checked path → revocation → identity → principal. The sans-IO form
(:meth:`Validator.start` → :class:`Validation`) pauses where data is missing —
an issuer at a caIssuers URL, a CRL, an OCSP response — and resumes when the
caller answers; its states and moves are the table in :mod:`mtlscore.verify.machine`.
:meth:`Validator.validate` runs the same machine and answers every request
with "unavailable".
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from datetime import UTC, datetime
from typing import Any

from ..identity.identity import Identity
from ..identity.identity_map import IdentityResolver
from ..reasons import CertificateRejected, Reason
from ..revocation.aia import http_url, parse_issuers
from ..revocation.cache import RevocationCache
from ..revocation.checker import PositionCheck
from ..revocation.crl import ParsedCRL, parse_crl
from ..revocation.crl_signer import SignerContext
from ..verify import policy_graph
from ..verify.checks import check_key, check_validity, whole_seconds
from ..verify.failure import PathFailure, Who
from ..verify.machine import MachineError, Move, NeedIssuer, Request, State, transition
from ..verify.path import BuildResult, KnownPath, KnownPaths, build_path
from ..verify.policy import Policy
from ..verify.signature import SIGNATURES, SignatureCache, check_signature_algorithm
from ..verify.trust import Anchor, TrustStore
from ..x509.cert import Certificate, ChainInput, parse_certificate, split_certificates
from .cache import VerdictCache
from .verdict import DERIVE, Verdict

__all__ = ["INTERNAL_ERROR", "Validation", "Validator"]

INTERNAL_ERROR = "internal error while validating"
# More steps than any legal validation takes (issuers + sources per position).
_MAX_STEPS = 1000
# reuse_window's answer when nothing bounds a verdict's reuse beyond its path.
_UNBOUNDED: tuple[datetime | None, datetime | None] = (None, None)


def _aware(at: datetime) -> datetime:
    """A naive ``at`` is UTC, as in cryptography's verifier; anything else is converted to UTC."""
    if not isinstance(at, datetime):
        raise TypeError(f"at must be a datetime, not {type(at).__name__}")
    tz = at.tzinfo
    if tz is UTC:
        return at
    return at.replace(tzinfo=UTC) if tz is None else at.astimezone(UTC)


class Validator:
    """Validate presented client-certificate chains against a trust store and policy.

    ``identity_map`` (optional) maps an accepted identity to a principal; no
    match rejects with ``identity_unmapped``. ``crls`` are CRLs (DER or PEM)
    consulted on every validation, in addition to those passed per call.
    ``cache`` holds fetched revocation answers across validations (one is made
    when not given; pass one to share it between validators). ``verdict_cache``
    holds accepted verdicts of :meth:`validate` (a per-validator one when not given).
    Construction raises :class:`ConfigError` for an unusable configuration.
    """

    def __init__(
        self,
        trust: TrustStore,
        policy: Policy | None = None,
        *,
        identity_map: IdentityResolver | None = None,
        crls: Iterable[bytes] = (),
        signatures: SignatureCache | None = None,
        cache: RevocationCache | None = None,
        verdict_cache: VerdictCache | None = None,
        known_paths: KnownPaths | None = None,
    ) -> None:
        from ..reasons import ConfigError

        self.trust = trust
        self.policy = policy or Policy()
        self.identity_map = identity_map
        self.signatures = signatures or SIGNATURES
        self.cache = cache if cache is not None else RevocationCache()
        # Accepted verdicts of validate(), by presented bytes × trust/policy epoch (mtlscore.decision.cache).
        self.verdict_cache = verdict_cache if verdict_cache is not None else VerdictCache()
        # Paths reused for the next client certificate under the same CAs (mtlscore.verify.path.KnownPaths).
        self.known_paths = known_paths if known_paths is not None else KnownPaths()
        # In every key: a shared verdict cache never hands one validator's verdict
        # (its identity map, its CRLs) to another.
        self._cache_token = object()
        self.crls: list[ParsedCRL] = []
        for i, data in enumerate(crls):
            try:
                self.crls.append(parse_crl(data))
            except ValueError as exc:
                raise ConfigError(str(exc), key=f"crls[{i}]") from None

    # -- the public entry points -----------------------------------------------

    def validate(
        self,
        chain: ChainInput | None,
        *,
        at: datetime,
        crls: Iterable[bytes] = (),
        ocsp_responses: Iterable[bytes] = (),
    ) -> Verdict:
        """Validate ``chain`` (PEM, DER, or a list of either / of Certificates; leaf first) at ``at``.

        Runs the same machine as :meth:`start` and answers every request for
        data with "unavailable" (given CRLs, stapled OCSP responses and the
        cache are still used). Never raises for bad input: every rejection is
        a Verdict with a Reason.
        """
        try:
            at = _aware(at)
            p = self.policy
            # The common call (nothing per call, nothing fetched, no configured CRLs): what
            # reuse_window and _revocation_silent answer for it, without their calls.
            plain = not crls and not ocsp_responses and not self.crls and not p.fetch and not len(self.cache)
            window = _UNBOUNDED if plain else self.reuse_window(crls=crls, ocsp_responses=ocsp_responses)
            key = None
            if window is not None:
                key = self.verdict_cache.key(chain, self.trust.epoch, p.epoch, self._cache_token)
                if key is not None:
                    hit = self.verdict_cache.get(key, at)
                    if hit is not None:
                        return hit
            parsed = self._parse_plain(chain)
            tried_known = False
            built: BuildResult | None = None
            if parsed is not None:
                chain = parsed
                if ("hard" not in (p.revocation_mode(0), p.revocation_mode(1)) if plain
                        else self._revocation_silent(crls, ocsp_responses)):
                    tried_known = True
                    # The revocation cache is not touched on the way: ``window`` still holds.
                    quick, built = self._quick(parsed, at, key, window)
                    if quick is not None:
                        return quick
            # When the known path was just tried and did not hold, the machine goes
            # straight to the full search (not verifying the leaf's signature again);
            # when the search was just run and failed, the machine starts from its result.
            run = Validation(self, chain, at=at, crls=crls, ocsp_responses=ocsp_responses,
                             reuse_paths=not tried_known, built=built)
            for _ in range(_MAX_STEPS):
                event = run.next_event()
                if isinstance(event, Verdict):
                    if key is not None and event.ok:
                        self._remember(key, event, at)
                    return event
                run.decline(event, "not fetched: validate() does no I/O")
        except CertificateRejected as exc:
            return Verdict.reject(exc.reason, exc.detail)
        except Exception as exc:  # noqa: BLE001 - the front door must answer, not crash
            return Verdict.reject(Reason.MALFORMED, f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}")
        return Verdict.reject(Reason.MALFORMED, f"{INTERNAL_ERROR}: the validation did not finish")

    # -- the hot path: a new client certificate under CAs seen before ----------------

    def _parse_plain(self, chain: ChainInput | None) -> list[Certificate] | None:
        """A list/tuple of DER certificates (what TLS stacks hand over) within limits, parsed; else None.

        None also when anything does not parse: the machine then reports it as it always does.
        """
        if type(chain) is not list and type(chain) is not tuple:
            return None
        p = self.policy
        if not chain or (p.max_presented is not None and len(chain) > p.max_presented):
            return None
        total = 0
        for item in chain:
            if type(item) is not bytes or item[:1] != b"\x30" or len(item) > p.max_cert_bytes:
                return None
            total += len(item)
        if total > p.max_chain_bytes:
            return None
        try:
            # The leaf stays out of the parse cache (see parse()); the CAs go in.
            leaf = parse_certificate(chain[0], max_bytes=p.max_cert_bytes, remember=False)
            return [leaf, *[parse_certificate(d, max_bytes=p.max_cert_bytes) for d in chain[1:]]]
        except CertificateRejected:
            return None

    def _revocation_silent(self, crls: Iterable[bytes], ocsp_responses: Iterable[bytes]) -> bool:
        """Whether revocation checking can only accept, noting nothing (see PositionCheck._local)."""
        p = self.policy
        leaf_mode, ca_mode = p.revocation_mode(0), p.revocation_mode(1)
        if leaf_mode == "off" and ca_mode == "off":
            return True
        if "hard" in (leaf_mode, ca_mode):
            return False
        # Soft-fail with nothing to consult accepts without a note.
        return not (crls or ocsp_responses or self.crls or p.fetch or len(self.cache))

    def _quick(
        self, certs: list[Certificate], at: datetime, key: Hashable | None,
        window: tuple[datetime | None, datetime | None] | None,
    ) -> tuple[Verdict | None, BuildResult | None]:
        """The verdict the machine would give for a parsed chain, where revocation can only accept silently.

        Then the verdict is the path, its anchor and the identity, as the machine
        builds it: along the leaf's known path (KnownPaths) when it holds, else
        from the full search. (verdict, None) when a path is found, remembered
        under ``key`` (None: not cached) within the revocation ``window``
        (:meth:`reuse_window`); (None, result) when none is: the machine starts
        from that result (asking for issuers, wording the rejection). (None,
        None) for an allowlisted leaf, which the machine decides.
        """
        leaf = certs[0]
        trust, policy = self.trust, self.policy
        if trust.allowlisted_match(leaf) is not None:
            return None, None
        presented = certs[1:]
        known_paths = self.known_paths
        path_key = known_paths.key(leaf, presented, trust, policy)
        # The checks compare whole seconds (they would each truncate ``at``); the verdict cache takes ``at``.
        when = whole_seconds(at)
        known = known_paths.accept(path_key, leaf, trust, policy, at=when, signatures=self.signatures)
        if known is not None:
            return self._along(leaf, known, key, at, window), None
        result = build_path(leaf, presented, trust, policy, at=when, signatures=self.signatures)
        if result.straight:
            known = known_paths.learn(leaf, presented, result, trust, policy, at=when, key=path_key)
            if known is not None and result.anchor is known.anchor and result.path[1:] == list(known.tail):
                return self._along(leaf, known, key, at, window), None
        if result.anchor is None:
            return None, result
        return self._accepted(leaf, result.path, result.anchor, key, at, window), None

    def _along(
        self, leaf: Certificate, known: KnownPath, key: Hashable | None, at: datetime,
        window: tuple[datetime | None, datetime | None] | None,
    ) -> Verdict:
        """The verdict of ``leaf`` accepted along ``known`` (see :meth:`_accepted`)."""
        if self.identity_map is not None:
            return self._accepted(leaf, [leaf, *known.tail], known.anchor, key, at, window)
        verdict = Verdict.derived((leaf, *known.suffix), known.anchor)  # what finish() makes of it
        if key is not None and window is not None:
            # The verdict cache's window over the path (VerdictCache.put), from the leaf and the known suffix.
            lo, hi = known.suffix_lo, known.suffix_hi
            if leaf.not_before > lo:
                lo = leaf.not_before
            if leaf.not_after < hi:
                hi = leaf.not_after
            self.verdict_cache.put_within(key, verdict, at=at, lo=lo, hi=hi, valid_from=window[0],
                                          valid_until=window[1])
        return verdict

    def _accepted(
        self, leaf: Certificate, found: list[Certificate], anchor: Anchor, key: Hashable | None, at: datetime,
        window: tuple[datetime | None, datetime | None] | None,
    ) -> Verdict:
        """The verdict of an accepted path when revocation accepts silently (the path, its anchor and the
        identity), remembered under ``key`` within ``window``."""
        path = tuple(found)
        if path[-1].sha256 != anchor.certificate.sha256:
            path = path + (anchor.certificate,)
        if self.identity_map is None:
            verdict = Verdict.derived(path, anchor)  # what finish() makes of it
        else:
            verdict = self.finish(Verdict(True, path=path, anchor=anchor), leaf, anchor, [])
        if key is not None and window is not None and verdict.ok:
            self.verdict_cache.put(key, verdict, at=at, valid_from=window[0], valid_until=window[1])
        return verdict

    def reuse_window(
        self, *, crls: Iterable[bytes] = (), ocsp_responses: Iterable[bytes] = ()
    ) -> tuple[datetime | None, datetime | None] | None:
        """Whether an accepted verdict of :meth:`validate` with these per-call inputs may be
        reused, and the bounds its revocation data puts on that: ``(valid_from,
        valid_until)`` (None: no bound beyond the path's validity), or None when it may
        not be reused at all.

        A verdict depends on the chain, the trust store and policy (their epochs), this
        validator's own CRLs and the time. Not reusable when it also depends on per-call
        data (``crls``, ``ocsp_responses``) or on fetched answers (``policy.fetch``, or a
        revocation cache filled by :meth:`start`) whose expiry the verdict does not carry.
        """
        p = self.policy
        if crls or ocsp_responses or p.fetch or len(self.cache):
            return None
        if self.crls and not (p.revocation == "off" and p.revocation_leaf in (None, "off")
                              and p.revocation_ca in (None, "off")):
            # The given CRLs decided revocation: reuse only while all of them are current.
            return (max(c.this_update for c in self.crls),
                    min(c.next_update or c.this_update + p.max_revocation_age for c in self.crls))
        return None, None

    def _remember(self, key: Any, verdict: Verdict, at: datetime) -> None:
        window = self.reuse_window()
        if window is not None:
            self.verdict_cache.put(key, verdict, at=at, valid_from=window[0], valid_until=window[1])

    def start(
        self,
        chain: ChainInput | None,
        *,
        at: datetime,
        crls: Iterable[bytes] = (),
        ocsp_responses: Iterable[bytes] = (),
    ) -> Validation:
        """Begin validating ``chain`` at ``at``: the sans-IO form that can ask for data.

        Step with :meth:`Validation.next_event` until it returns a :class:`Verdict`,
        answering each request (``NeedCRL``, ``NeedOCSP``, ``NeedIssuer``) with
        :meth:`Validation.send` or :meth:`Validation.fail`. ``ocsp_responses``
        are OCSP responses (DER) the caller already has, e.g. stapled ones.
        Never raises for bad input (the chain is read on the first step).
        """
        return Validation(self, chain, at=_aware(at), crls=crls, ocsp_responses=ocsp_responses)

    # -- steps -----------------------------------------------------------------

    def parse(self, chain: ChainInput | None) -> tuple[Certificate, list[Certificate], list[str]]:
        """The leaf, the presented extras and notes on ignored junk. Raises CertificateRejected."""
        p = self.policy
        if chain is None:
            raise CertificateRejected(Reason.NOT_PROVIDED, "no client certificate was presented")
        items = split_certificates(
            chain,
            max_cert_bytes=p.max_cert_bytes,
            max_chain_bytes=p.max_chain_bytes,
            max_count=p.max_presented,
        )
        first = items[0]
        # Client certificates are not added to the parse cache: most are seen once (a
        # reconnecting client hits the verdict cache before parsing), and a stream of
        # new ones must not push out the intermediates everyone shares.
        leaf = first if isinstance(first, Certificate) else parse_certificate(
            first, max_bytes=p.max_cert_bytes, remember=False
        )
        notes: list[str] = []
        presented: list[Certificate] = []
        for i, item in enumerate(items[1:], start=1):
            if isinstance(item, Certificate):
                presented.append(item)
                continue
            try:
                presented.append(parse_certificate(item, max_bytes=p.max_cert_bytes))
            except CertificateRejected as exc:
                # A junk extra certificate must not change the verdict; it is ignored.
                notes.append(f"presented certificate #{i} ignored: {exc.detail}")
        return leaf, presented, notes

    def allowlisted(self, leaf: Certificate, at: datetime) -> Verdict | None:
        """The verdict for an allowlisted leaf, or None when it is not allowlisted."""
        if self.trust.allowlisted_match(leaf) is None:
            return None
        # Exact match is the trust decision (the self-signed method, RFC 8705 §2.2);
        # the validity window and key/signature policy still hold.
        p = self.policy
        who = Who(leaf, 0, "allowlisted certificate")
        try:
            check_validity(leaf, at.replace(microsecond=0), p, who)
            check_key(leaf, p, who)
            if leaf.self_issued is False:
                check_signature_algorithm(leaf, p, who)
        except PathFailure as failure:
            return Verdict.reject(failure.reason, failure.detail, path=(leaf,), position=failure.position)
        return Verdict(True, path=(leaf,), notes=("accepted by exact match with an allowlisted certificate",))

    def valid_policies(self, verdict: Verdict) -> frozenset[str]:
        """The certificate policies an accepted ``verdict``'s path is valid for, under this validator's policy.

        RFC 5280 §6.1.5 (g), named as the trust anchor's domain names them (a
        policy mapped on the way is reported as the one it maps from): those of
        ``Policy.certificate_policies`` the path is valid for, or without them
        every policy valid down to the leaf (``2.5.29.32.0``, anyPolicy, among
        them means any). Empty for a rejection, a path without policies, or a
        leaf that is itself the anchor. Computed from the path when asked
        (validation only decides whether the set may be empty).
        """
        if not verdict.ok or verdict.anchor is None:
            return frozenset()
        path = list(verdict.path)
        if path and path[-1].sha256 == verdict.anchor.certificate.sha256:
            path.pop()
        if not path:
            return frozenset()
        p = self.policy
        state = policy_graph.initial(len(path), p)
        try:
            for pos in range(len(path) - 1, 0, -1):
                state = policy_graph.issuer(state, path[pos], Who(path[pos], pos))
            return policy_graph.end_entity(state, path[0], Who(path[0], 0), p.user_policies)
        except PathFailure:
            return frozenset()  # not under this policy (it changed since), or over the budget

    def finish(self, verdict: Verdict, leaf: Certificate, anchor: Anchor | None, notes: list[str]) -> Verdict:
        """Attach the identity (and principal, through the identity map) to an accepted verdict."""
        if self.identity_map is None:
            # The identity is built from the leaf and anchor when first read (Verdict.identity).
            derived = verdict.path and leaf is verdict.path[0] and anchor is verdict.anchor
            return Verdict(True, None, "", path=verdict.path, anchor=verdict.anchor,
                           identity=DERIVE if derived else Identity.from_certificate(leaf, anchor),
                           notes=verdict.notes + tuple(notes))
        identity = Identity.from_certificate(leaf, anchor)
        principal = None
        if self.identity_map is not None:
            try:
                principal = self.identity_map.resolve(identity)
            except CertificateRejected as exc:
                return Verdict(False, exc.reason, exc.detail, path=verdict.path, anchor=verdict.anchor,
                               identity=identity, notes=verdict.notes)
        return Verdict(True, None, "", path=verdict.path, anchor=verdict.anchor, identity=identity,
                       notes=verdict.notes + tuple(notes), principal=principal)


class Validation:
    """One validation in progress: the asking validator (sans-IO).

    Call :meth:`next_event` until it returns the :class:`Verdict`; when it
    returns a request instead, answer exactly that request with :meth:`send`
    (the fetched bytes), :meth:`fail` (why they could not be had) or
    :meth:`decline` (they were not fetched at all). Answering
    in any other state raises :class:`MachineError`; bad bytes never raise.
    """

    def __init__(
        self,
        validator: Validator,
        chain: ChainInput | None,
        *,
        at: datetime,
        crls: Iterable[bytes] = (),
        ocsp_responses: Iterable[bytes] = (),
        reuse_paths: bool = True,
        built: BuildResult | None = None,
    ) -> None:
        self.validator = validator
        self._reuse_paths = reuse_paths
        self._built = built  # a search already run for this chain (Validator.validate), used once
        self.at = at
        self.state = State.BUILDING
        self._chain = chain
        self._crl_input = list(crls)
        self._stapled = [bytes(r) for r in ocsp_responses if isinstance(r, bytes | bytearray | memoryview)]
        self._leaf: Certificate | None = None
        self._presented: list[Certificate] = []
        self._fetched: list[Certificate] = []
        self._asked_issuers: list[str] = []
        self._notes: list[str] = []
        self._result: BuildResult | None = None
        self._checks: list[PositionCheck] = []
        self._position = 0
        self._pending: Request | None = None
        self._verdict: Verdict | None = None

    # -- the caller's side -------------------------------------------------------

    @property
    def verdict(self) -> Verdict | None:
        """The verdict once the state is DONE, else None."""
        return self._verdict

    @property
    def pending(self) -> Request | None:
        """The outstanding request, if one is."""
        return self._pending

    def next_event(self) -> Request | Verdict:
        """The next request for data, or the verdict. Repeats the outstanding request if unanswered."""
        if self._pending is not None:
            return self._pending
        if self._verdict is not None:
            return self._verdict
        try:
            return self._advance()
        except Exception as exc:  # noqa: BLE001 - a bug, not a decision: answer, do not crash
            return self._internal_error(exc)

    def send(self, request: Request, data: bytes) -> None:
        """Answer ``request`` with the bytes fetched for it. Raises MachineError if it is not outstanding."""
        self._answer(request)
        try:
            if isinstance(request, NeedIssuer):
                self._take_issuers(request, data)
            else:
                self._checks[self._position].answer(request, data)
        except Exception as exc:  # noqa: BLE001 - hostile bytes must not crash the caller
            self._internal_error(exc)

    def fail(self, request: Request, why: str = "unavailable") -> None:
        """Answer ``request`` with a failure (``why`` goes to the notes).

        Raises MachineError if ``request`` is not outstanding.
        """
        self._answer(request)
        if isinstance(request, NeedIssuer):
            self._notes.append(f"issuer at {request.url} could not be fetched: {why}")
        else:
            self._checks[self._position].fail(request, why)

    def decline(self, request: Request, why: str = "not fetched") -> None:
        """Answer ``request`` as not tried at all: like :meth:`fail`, but the URL is not
        remembered as failing (the negative cache is for fetches that failed).

        Raises MachineError if ``request`` is not outstanding.
        """
        self._answer(request)
        if isinstance(request, NeedIssuer):
            self._notes.append(f"issuer at {request.url} could not be fetched: {why}")
        else:
            self._checks[self._position].fail(request, why, remember=False)

    # -- moves -------------------------------------------------------------------

    def _move(self, move: Move) -> None:
        self.state = transition(self.state, move)

    def _answer(self, request: Request) -> None:
        if self._pending is None or request != self._pending:
            what = "nothing is outstanding" if self._pending is None else f"the outstanding one is {self._pending!r}"
            raise MachineError(f"cannot answer {request!r} in state {self.state.value}: {what}", self.state)
        self._move(Move.ANSWERED)
        self._pending = None

    def _ask(self, move: Move, request: Request) -> Request:
        self._move(move)
        self._pending = request
        return request

    def _internal_error(self, exc: Exception) -> Verdict:
        # A bug, not a decision about the certificate: fuzzing asserts it never happens.
        self._pending = None
        return self._decide(Verdict.reject(Reason.MALFORMED, f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}"))

    def _decide(self, verdict: Verdict) -> Verdict:
        if self.state is not State.DONE:
            self._move(Move.DECIDED)
        self._verdict = verdict
        return verdict

    def _advance(self) -> Request | Verdict:
        if self.state is State.BUILDING:
            step = self._build()
            if step is not None:
                return step
        assert self.state is State.CHECKING_REVOCATION, self.state
        return self._check_revocation()

    # -- building ----------------------------------------------------------------

    def _build(self) -> Request | Verdict | None:
        v = self.validator
        if self._leaf is None:
            try:
                self._leaf, self._presented, self._notes = v.parse(self._chain)
            except CertificateRejected as exc:
                return self._decide(Verdict.reject(exc.reason, exc.detail))
            allow = v.allowlisted(self._leaf, self.at)
            if allow is not None:
                # A rejected allowlisted certificate (expired, weak key, ...) stays rejected:
                # finish() attaches identity to accepted verdicts only.
                return self._decide(v.finish(allow, self._leaf, None, self._notes) if allow.ok else allow)
        leaf = self._leaf
        candidates = self._presented + self._fetched
        result = None
        if self._built is not None:
            result, self._built = self._built, None
        elif self._reuse_paths:
            result = v.known_paths.build(leaf, candidates, v.trust, v.policy, at=self.at, signatures=v.signatures)
        if result is None:
            result = build_path(leaf, candidates, v.trust, v.policy, at=self.at, signatures=v.signatures)
            if result.straight:
                v.known_paths.learn(leaf, candidates, result, v.trust, v.policy, at=self.at)
        if not result.ok:
            assert result.failure is not None
            url = self._issuer_to_ask(result)
            if url is not None:
                self._asked_issuers.append(url)
                return self._ask(Move.ASK_ISSUER, NeedIssuer(url))
            f = result.failure
            return self._decide(Verdict.reject(f.reason, f.detail, path=tuple(result.failure_path),
                                               position=f.position, notes=tuple(self._notes)))
        assert result.anchor is not None
        given = list(v.crls)
        for data in self._crl_input:
            try:
                given.append(parse_crl(data))
            except ValueError as exc:
                return self._decide(
                    Verdict.reject(Reason.MALFORMED, f"a CRL given for this validation is unusable: {exc}")
                )
        self._result = result
        self._move(Move.PATH_FOUND)
        anchor_cert = result.anchor.certificate
        path = result.path
        # RFC 5280 §6.3.3 (f): CRL signers other than a certificate's issuer are searched
        # among the certificates at hand, within what is left of the path-building budget.
        signers = SignerContext(trust=v.trust, anchor=result.anchor, policy=v.policy,
                                certs=[*path, *self._presented, *self._fetched], given=given, at=self.at,
                                signatures=v.signatures, budget=max(v.policy.max_path_work - result.work, 0))
        for pos, (cert, issuer) in enumerate(zip(path, path[1:] + [anchor_cert], strict=True)):
            if cert.sha256 == anchor_cert.sha256:
                continue
            self._checks.append(PositionCheck(cert, issuer, pos, policy=v.policy, cache=v.cache, given=given,
                                              stapled=self._stapled, at=self.at, signers=signers))
        return None

    def _issuer_to_ask(self, result: BuildResult) -> str | None:
        p = self.validator.policy
        f = result.failure
        if not p.fetch_issuers or f is None or f.reason is not Reason.UNTRUSTED:
            return None
        if len(self._asked_issuers) >= p.max_fetched_issuers:
            return None
        # The certificate nearest the anchor is the one whose issuer is missing.
        assert self._leaf is not None
        for cert in reversed(result.failure_path or [self._leaf]):
            if cert.self_issued:
                continue
            for url in cert.ca_issuer_urls:
                if http_url(url) and url not in self._asked_issuers:
                    return url
        return None

    def _take_issuers(self, request: NeedIssuer, data: bytes) -> None:
        try:
            certs = parse_issuers(data, self.validator.policy)
        except ValueError as exc:
            self._notes.append(f"issuer at {request.url} unusable: {exc}")
            return
        known = {c.sha256 for c in self._presented + self._fetched}
        for cert in certs:
            if cert.sha256 not in known:
                known.add(cert.sha256)
                self._fetched.append(cert)
                self._notes.append(f"intermediate {cert.describe()!r} fetched from {request.url} (AIA caIssuers)")

    # -- revocation --------------------------------------------------------------

    def _check_revocation(self) -> Request | Verdict:
        assert self._result is not None and self._leaf is not None
        result = self._result
        anchor = result.anchor
        assert anchor is not None
        rev_notes: list[str] = []
        while self._position < len(self._checks):
            check = self._checks[self._position]
            if check.outcome is None:
                request = check.next_request()
                if request is not None:
                    return self._ask(Move.ASK_REVOCATION, request)
            outcome = check.outcome
            assert outcome is not None
            if outcome.reason is not None:
                return self._decide(Verdict.reject(outcome.reason, outcome.detail, path=tuple(result.path),
                                                   position=check.position))
            self._position += 1
        for check in self._checks:
            assert check.outcome is not None
            rev_notes.extend(check.outcome.notes)
        path = tuple(result.path)
        if path[-1].sha256 != anchor.certificate.sha256:
            path = path + (anchor.certificate,)
        verdict = Verdict(True, path=path, anchor=anchor, notes=tuple(self._notes + rev_notes))
        return self._decide(self.validator.finish(verdict, self._leaf, anchor, []))
