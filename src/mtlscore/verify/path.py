"""Path building (RFC 4158 style): from the leaf to a trust anchor, with backtracking.

Depth-first over candidate issuers: anchors first (shortest paths), then
presented intermediates, then the configured pool; within each, candidates whose
subjectKeyIdentifier matches the child's authorityKeyIdentifier come first (key
identifiers only order candidates — names and signatures decide, so a private
PKI without key identifiers builds the same paths). Each link's signature is
verified as the path grows (cached), and each complete path is validated by
:func:`check_path`; a failing path is abandoned and the search backtracks
(cross-signed CAs, rotated roots). Loops are impossible: a (subject, key) pair
may appear once per path (RFC 4158 §5.2). Work is bounded by
``Policy.max_path_work`` candidate examinations and depth by
``Policy.max_intermediates``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import NamedTuple

from ..reasons import Reason
from ..x509.cert import Certificate
from ..x509.lru import BoundedLRU
from ..x509.names import NameKey
from .checks import (
    HandedDown,
    Role,
    check_end_entity,
    check_issuers,
    check_key,
    check_path,
    check_path_state,
    issuers_window,
    whole_seconds,
)
from .failure import PathFailure, Who
from .plain import key_passes
from .policy import Policy
from .signature import SIGNATURES, SignatureCache, allowed_signature_oids, check_signature_algorithm, verify_link
from .trust import Anchor, TrustStore

__all__ = ["BuildResult", "KnownPath", "KnownPaths", "build_path"]

_ANCHOR_LABEL = Role.ANCHOR.value  # read once: an Enum member off its class is a descriptor call


@dataclass(slots=True)
class BuildResult:
    """The outcome of building: a validated path and its anchor, or the best failure."""

    path: list[Certificate] = field(default_factory=list)
    anchor: Anchor | None = None
    failure: PathFailure | None = None
    failure_path: list[Certificate] = field(default_factory=list)
    work: int = 0
    paths_checked: int = 0
    # True when the path is the first the search tried: at every step the first
    # candidate in order was taken and nothing failed on the way. Another leaf
    # with the same issuer name, key identifier and presented certificates would
    # be searched in the same order, so it may reuse the path (KnownPaths).
    straight: bool = False
    # What the path's issuers handed down to its leaf (check_issuers), kept from
    # checking the accepted path so that KnownPaths.learn need not check it again.
    handed_down: HandedDown | None = None

    @property
    def ok(self) -> bool:
        return self.anchor is not None


@dataclass(slots=True)
class _Search:
    trust: TrustStore
    policy: Policy
    at: datetime
    presented: dict[NameKey, list[Certificate]]
    sigs: SignatureCache | None
    work: int = 0
    paths_checked: int = 0
    best: tuple[tuple[int, int, int], PathFailure, list[Certificate]] | None = None
    exhausted: bool = False
    straight: bool = True
    handed_down: HandedDown | None = None

    def record(self, tier: int, path: list[Certificate], failure: PathFailure) -> None:
        # "Closest to an anchor" (docs/reference.md#reason-codes): complete paths beat incomplete
        # ones, deeper beats shallower, a specific reason beats plain "untrusted".
        score = (tier, len(path), 0 if failure.reason is Reason.UNTRUSTED else 1)
        if self.best is None or score > self.best[0]:
            self.best = (score, failure, list(path))

    def would_record(self, tier: int, path: list[Certificate], reason: Reason) -> bool:
        """Whether :meth:`record` would keep such a failure: its detail need not be written otherwise."""
        score = (tier, len(path), 0 if reason is Reason.UNTRUSTED else 1)
        return self.best is None or score > self.best[0]

    def spend(self) -> bool:
        self.work += 1
        if self.work > self.policy.max_path_work:
            self.exhausted = True
            return False
        return True

    def candidates(self, cert: Certificate) -> tuple[Sequence[Anchor], Sequence[Certificate]]:
        return _candidates(self.trust, self.presented, cert)


def _candidates(
    trust: TrustStore, presented: dict[NameKey, list[Certificate]], cert: Certificate
) -> tuple[Sequence[Anchor], Sequence[Certificate]]:
    """The anchors, then the intermediates (presented first, then the pool's, each once) named as
    ``cert``'s issuer, those whose subjectKeyIdentifier is ``cert``'s AKI first (a stable sort)."""
    key = cert.issuer_key
    anchors: Sequence[Anchor] = trust.anchors_for(key)
    shown = presented.get(key)
    pool = trust.pool_for(key)
    inters: Sequence[Certificate]
    if shown and pool:
        merged: list[Certificate] = []
        seen: set[bytes] = set()
        for c in (*shown, *pool):
            if c.sha256 not in seen:
                seen.add(c.sha256)
                merged.append(c)
        inters = merged
    else:
        # Each list holds a certificate once (build_path, TrustStore): nothing to merge.
        inters = shown or pool
    aki = cert.aki
    if aki is not None:
        # One candidate is its own order (and the lists are the store's: sorted copies).
        if len(anchors) > 1:
            anchors = sorted(anchors, key=lambda a: a.certificate.ski != aki)
        if len(inters) > 1:
            inters = sorted(inters, key=lambda c: c.ski != aki)
    return anchors, inters


def _link_key_failure(issuer: Certificate, pos: int, policy: Policy, *, is_anchor: bool) -> PathFailure | None:
    # Check the issuer's key size before using it: a huge RSA key is a CPU attack.
    if key_passes(issuer, policy):
        return None
    try:
        check_key(issuer, policy, Who(issuer, pos, _ANCHOR_LABEL if is_anchor else None))
    except PathFailure as failure:
        if failure.reason in (Reason.RSA_KEY_TOO_LARGE, Reason.UNSUPPORTED_KEY_ALGORITHM):
            return failure
    return None


def build_path(
    leaf: Certificate,
    presented: list[Certificate],
    trust: TrustStore,
    policy: Policy,
    *,
    at: datetime,
    signatures: SignatureCache | None = None,
) -> BuildResult:
    """Find and validate a path from ``leaf`` to an anchor of ``trust``."""
    by_subject: dict[NameKey, list[Certificate]] = {}
    seen: set[bytes] = {leaf.sha256}
    for c in presented:
        if c.sha256 not in seen:
            seen.add(c.sha256)
            by_subject.setdefault(c.subject_key, []).append(c)
    # The leaf may itself be a configured anchor (the same name and key).
    own = trust.find_anchor(leaf)
    if own is None:
        first = _first_descent(leaf, by_subject, trust, policy, at, signatures)
        if first is not None:
            return first
    s = _Search(trust, policy, at, by_subject, signatures)
    if own is not None:
        s.straight = False
        s.paths_checked += 1
        failure = check_path([leaf], own, at=at, policy=policy)
        if failure is None:
            return BuildResult([leaf], own, work=0, paths_checked=1)
        s.record(2, [leaf], failure)

    path = [leaf]
    result = _extend(s, path)
    if result is not None:
        return BuildResult(result[0], result[1], work=s.work, paths_checked=s.paths_checked,
                           straight=s.straight and s.best is None, handed_down=s.handed_down)
    if s.exhausted:
        return BuildResult(
            failure=PathFailure(
                Reason.SEARCH_LIMIT_EXCEEDED,
                f"path building gave up after examining {policy.max_path_work} candidate issuers; "
                "present the intended intermediates and remove unrelated ones",
                0,
            ),
            failure_path=s.best[2] if s.best else [leaf],
            work=s.work,
            paths_checked=s.paths_checked,
        )
    if s.best is None:
        return BuildResult(
            failure=_untrusted(leaf, trust), failure_path=[leaf], work=s.work, paths_checked=s.paths_checked
        )
    return BuildResult(failure=s.best[1], failure_path=s.best[2], work=s.work, paths_checked=s.paths_checked)


def _first_descent(
    leaf: Certificate, presented: dict[NameKey, list[Certificate]], trust: TrustStore, policy: Policy,
    at: datetime, sigs: SignatureCache | None,
) -> BuildResult | None:
    """The result of the search when its first try holds: the first candidate taken at every step
    (the first anchor when there is one, else the first intermediate) and nothing failing on the way.

    The same steps as :func:`_extend`'s first descent, in its order, without its bookkeeping
    (a client certificate under known CAs, presented with its intermediates, is nearly
    always this), and the same result: the path, its anchor, one candidate examined per
    step, one path checked, straight, and what the CAs hand down. At the first thing that
    would make the search do anything else — record a failure, skip a candidate, go on to
    another, give up — this answers None and the search runs from the start; the
    signature cache holds the links verified so far, so it repeats no verification.
    Not for a leaf that is itself an anchor (the search begins with that).
    """
    path = [leaf]
    cert = leaf
    logical = 0  # intermediates on the path that are not self-issued (RFC 5280 §6.1.4 (l))
    allowed = allowed_signature_oids(policy)
    limit = policy.max_intermediates
    while True:
        pos = len(path)  # the search's work count once it examines this step's candidate
        if pos > policy.max_path_work:
            return None
        anchors, inters = _candidates(trust, presented, cert)
        # The search judges the signature algorithm before any candidate; an allowed one passes.
        if cert.signature_oid not in allowed:
            return None
        if anchors:
            anchor = anchors[0]
            # An issuer key check_key refuses is a failure the search records (or verifies through).
            if not key_passes(anchor.certificate, policy) or not verify_link(cert, anchor.certificate, sigs):
                return None
            failure, handed = check_path_state(path, anchor, at=at, policy=policy)
            if failure is not None:
                return None
            return BuildResult(path, anchor, work=pos, paths_checked=1, straight=True, handed_down=handed)
        if not inters or pos > 2 * limit + 2:
            return None
        cand = inters[0]
        if _on_path(cand, path) or (logical >= limit and not cand.self_issued):
            return None
        if not key_passes(cand, policy) or not verify_link(cert, cand, sigs):
            return None
        path.append(cand)
        if not cand.self_issued:
            logical += 1
        cert = cand


def _untrusted(cert: Certificate, trust: TrustStore) -> PathFailure:
    if trust.only_allowlisted:
        return PathFailure(
            Reason.NOT_ALLOWLISTED,
            f"client certificate {cert.describe()!r} (x5t#S256 {cert.x5t_s256}) is not one of the "
            "registered certificates; register it or present the registered one",
            0,
        )
    if cert.self_issued:
        return PathFailure(
            Reason.UNTRUSTED,
            f"client certificate {cert.describe()!r} is self-signed and not allowlisted; "
            "have it issued by a trusted CA, or allowlist this exact certificate",
            0,
        )
    return PathFailure(
        Reason.UNTRUSTED,
        f"no trusted issuer for {cert.describe()!r}: issuer {cert.issuer_text!r} is neither a "
        "trust anchor nor a presented or configured intermediate; send the full chain or add "
        "the issuing CA to the trust store",
        0,
    )


def _on_path(cand: Certificate, path: list[Certificate]) -> bool:
    """RFC 4158 §5.2: whether a (subject name, key) pair of ``path`` is ``cand``'s (a loop).

    The keys are compared first: a name's matching key is built only for a
    certificate of the path with ``cand``'s key (a client certificate's unique
    subject never needs one).
    """
    spki = cand.spki_der  # the key as its SPKI DER, which the SHA-256 digests stand for
    return any(c.spki_der == spki and c.subject_key == cand.subject_key for c in path)


def _extend(s: _Search, path: list[Certificate]) -> tuple[list[Certificate], Anchor] | None:
    cert = path[-1]
    pos = len(path)  # position the issuer would take
    anchors, inters = s.candidates(cert)
    if not anchors and not inters:
        # In a mesh of cross-certificates most dead ends lose to an earlier one: skip writing their details.
        if len(path) > 1 and s.would_record(0, path, Reason.UNTRUSTED):
            s.record(0, path, _untrusted_at(cert, pos - 1))
        return None
    # The signature-algorithm policy decides before any signature is verified: an
    # algorithm the policy does not allow, or one mtlscore cannot verify, is that
    # certificate's defect whichever issuer signed it, not a signature that fails.
    # (An issuer's own unusable key is still reported first: it is the cause.)
    weak: PathFailure | None = None
    if cert.signature_oid not in allowed_signature_oids(s.policy):  # else it passes: nothing to word
        try:
            check_signature_algorithm(cert, s.policy, Who(cert, pos - 1))
        except PathFailure as exc:
            weak = exc

    for i, anchor in enumerate(anchors):
        if not s.spend():
            return None
        a = anchor.certificate
        if (bad := _link_key_failure(a, pos, s.policy, is_anchor=True)) is not None:
            s.record(1, path, bad)
            continue
        if weak is not None:
            s.record(1, path, weak)
            continue
        if not verify_link(cert, a, s.sigs):
            s.record(
                1,
                path,
                PathFailure(
                    Reason.BAD_SIGNATURE,
                    f"{Who(cert, pos - 1)} names trust anchor {anchor.name!r} as "
                    "issuer, but the anchor's key does not verify its signature; it was issued by "
                    "another key with the same name (a rotated or impostor CA)",
                    pos - 1,
                ),
            )
            continue
        s.paths_checked += 1
        failure, s.handed_down = check_path_state(path, anchor, at=s.at, policy=s.policy)
        if failure is None:
            if i:
                s.straight = False
            return list(path), anchor
        s.record(2, path, failure)

    if not inters:
        return None
    # Depth counts intermediates that are not self-issued (key rollover certificates
    # do not count, as for pathLenConstraint, RFC 5280 §6.1.4 (l)); the physical
    # length is capped as well so that recursion stays shallow.
    logical = sum(1 for c in path[1:] if not c.self_issued)
    if len(path) > 2 * s.policy.max_intermediates + 2:
        s.record(1, path, _too_long(s.policy, pos))
        return None

    for j, cand in enumerate(inters):
        if s.exhausted:
            return None
        if _on_path(cand, path):
            continue  # RFC 4158 §5.2: a loop
        if logical >= s.policy.max_intermediates and not cand.self_issued:
            s.record(1, path, _too_long(s.policy, pos))
            continue
        if not s.spend():
            return None
        if (bad := _link_key_failure(cand, pos, s.policy, is_anchor=False)) is not None:
            s.record(0, path + [cand], bad)
            continue
        if weak is not None:
            s.record(0, path + [cand], weak)
            continue
        if not verify_link(cert, cand, s.sigs):
            s.record(
                0,
                path + [cand],
                PathFailure(
                    Reason.BAD_SIGNATURE,
                    f"{Who(cert, pos - 1)} is not signed by the key of "
                    f"{cand.describe()!r}, the certificate that carries its issuer's name",
                    pos - 1,
                ),
            )
            continue
        path.append(cand)
        found = _extend(s, path)
        path.pop()
        if found is not None:
            if j or anchors:
                s.straight = False
            return found
    return None


def _too_long(policy: Policy, pos: int) -> PathFailure:
    return PathFailure(
        Reason.CHAIN_TOO_LONG,
        f"the chain needs more than {policy.max_intermediates} intermediates to reach an "
        "anchor; policy max_intermediates caps it",
        pos,
    )


def _untrusted_at(cert: Certificate, pos: int) -> PathFailure:
    return PathFailure(
        Reason.UNTRUSTED,
        f"{Who(cert, pos)} was issued by {cert.issuer_text!r}, which is neither a "
        "trust anchor nor a known intermediate; add that CA to the trust store or present it",
        pos,
    )


# -- reusing a path for the next leaf under the same CAs ----------------------------------


class KnownPath(NamedTuple):
    """A path found on the builder's first try, for the next leaf under the same CAs (:class:`KnownPaths`).

    Immutable (a tuple: made for every first path under new CAs, cheaper than a frozen dataclass).
    """

    tail: tuple[Certificate, ...]  # the CAs above the leaf, its issuer first
    anchor: Anchor
    handed_down: HandedDown  # what the CAs constrain the leaf to (check_issuers)
    # The CAs all pass their validity checks for whole-second validation times in
    # [earliest, latest] (their latest notBefore - skew, earliest notAfter + skew).
    earliest: datetime
    latest: datetime
    keys: frozenset[bytes]  # SPKI DER of the tail's keys: a leaf with one of them is a loop
    issuer: Certificate  # whose key signs the leaf: the tail's first CA, or the anchor's certificate
    # What an accepted verdict's path holds after the leaf (the tail, then the anchor's
    # certificate), and [latest notBefore, earliest notAfter] over those certificates and
    # the anchor's window: with the leaf's own validity, the window the verdict cache
    # keeps the verdict for (mtlscore.decision.cache).
    suffix: tuple[Certificate, ...]
    suffix_lo: datetime
    suffix_hi: datetime


class KnownPaths(BoundedLRU[Hashable, KnownPath]):
    """Paths the builder found on its first try, reused for the next leaf under the same CAs.

    Thousands of client certificates share an issuer. The builder's search for
    one of them depends on the leaf only through its issuer name, its
    authorityKeyIdentifier and the certificates presented with it (the order of
    candidates), and on the leaf's own signature and checks. So when a search
    took the first candidate at every step and nothing failed, the next leaf with
    the same (issuer name, AKI, presented certificates) under the same trust and
    policy epochs would be searched along the same path: :meth:`build` verifies
    only its signature and runs only its own checks (RFC 5280 §6.1 for position
    0, under the state the CAs handed down, recorded by :func:`check_issuers`).
    Anything that differs — a signature that does not verify, a check that
    fails, a validation time outside the CAs' validity, a leaf whose key is an
    anchor's or on the tail — returns None and the caller runs the full search,
    which then decides exactly as it always does.
    """

    def __init__(self, size: int = 1024) -> None:
        super().__init__(size)

    @staticmethod
    def key(leaf: Certificate, presented: list[Certificate], trust: TrustStore, policy: Policy) -> Hashable:
        """What the builder's search for ``leaf`` depends on besides the leaf itself (see the class).

        The issuer name by its DER when it was sliced out (equal bytes are the same name, so the
        same matching key, and no key is looked up for it): a sibling whose issuer is encoded
        otherwise has another key, and its first search is learnt in turn. Else its matching key
        (a tuple, never equal to bytes).
        """
        issuer = leaf.issuer_der
        return (leaf.issuer_key if issuer is None else issuer, leaf.aki, tuple([c.sha256 for c in presented]),
                trust.epoch, policy.epoch)

    def learn(
        self, leaf: Certificate, presented: list[Certificate], result: BuildResult, trust: TrustStore,
        policy: Policy, *, at: datetime, key: Hashable | None = None,
    ) -> KnownPath | None:
        """Remember ``result`` (a straight, accepted search for ``leaf``) for the leaf's siblings; the
        known path, or None when ``result`` is not one to remember.

        ``key``: :meth:`key` of the same arguments, when the caller has it already.
        """
        anchor = result.anchor
        if not result.straight or anchor is None or len(result.path) < 1:
            return None
        if key is None:
            key = self.key(leaf, presented, trust, policy)
        known = self.peek(key)
        if known is not None:
            return known
        state = result.handed_down
        if state is None:
            try:
                state = check_issuers(result.path, anchor, at=at, policy=policy)
            except PathFailure:  # pragma: no cover - the search accepted this path at ``at``
                return None
        tail = tuple(result.path[1:])
        first, last = issuers_window(result.path, anchor)
        skew = policy.clock_skew
        a = anchor.certificate
        # The verdict's path ends with the anchor's certificate unless the path already does;
        # its window adds that certificate's own validity to the CAs' and the anchor's.
        suffix = tail if tail and tail[-1].sha256 == a.sha256 else (*tail, a)
        lo = a.not_before if a.not_before > first else first
        hi = a.not_after if a.not_after < last else last
        known = KnownPath(tail, anchor, state, first - skew, last + skew, frozenset(c.spki_der for c in tail),
                          tail[0] if tail else a, suffix, lo, hi)
        self.store(key, known)
        return known

    def accept(
        self, key: Hashable, leaf: Certificate, trust: TrustStore, policy: Policy, *,
        at: datetime, signatures: SignatureCache | None = None,
    ) -> KnownPath | None:
        """The known path stored under ``key`` (:meth:`key` of ``leaf``) when ``leaf`` is valid along it, or None:
        run :func:`build_path`."""
        known = self.peek(key)
        if known is None:
            self.misses += 1
            return None
        at = whole_seconds(at)
        if at < known.earliest or at > known.latest:
            return None
        spki = leaf.spki_der
        if spki in known.keys or trust.has_anchor_spki(spki):
            return None
        if not (SIGNATURES if signatures is None else signatures).verify_once(leaf, known.issuer):
            return None
        state = known.handed_down
        if not state.names.empty:
            state = state._replace(names=replace(state.names))  # checking spends its own work budget
        try:
            check_end_entity(leaf, state, at=at, policy=policy)
        except PathFailure:
            return None
        self.hit(key)
        return known

    def build(
        self, leaf: Certificate, presented: list[Certificate], trust: TrustStore, policy: Policy, *,
        at: datetime, signatures: SignatureCache | None = None,
    ) -> BuildResult | None:
        """The accepted path for ``leaf`` along a known one, or None: run :func:`build_path`."""
        known = self.accept(self.key(leaf, presented, trust, policy), leaf, trust, policy, at=at,
                            signatures=signatures)
        if known is None:
            return None
        return BuildResult([leaf, *known.tail], known.anchor, work=len(known.tail) + 1, paths_checked=1,
                           straight=True)
