"""RFC 5280 §6.1 path validation of one candidate path, plus mtlscore's policy.

A path is ``[leaf, intermediate…]`` plus the :class:`Anchor` that vouches for
its last element. It is processed from the anchor down, as §6.1 describes.
Every failure is a :class:`PathFailure` carrying a :class:`Reason`, the position
of the certificate in the path (leaf = 0; the anchor is ``len(path)``) and a
detail that names the certificate and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography.x509.oid import ExtensionOID

from ..reasons import Reason
from ..x509.cert import Certificate
from .name_constraints import ConstraintFailure, NameConstraintState
from .policy import ANY_EKU, EKU_NAMES, Policy
from .policy_graph import PolicyFailure, PolicyState
from .policy_graph import end_entity as _policy_end_entity
from .policy_graph import initial as _policy_initial
from .policy_graph import issuer as _policy_issuer
from .signature import check_signature_algorithm
from .trust import Anchor

__all__ = [
    "HandedDown",
    "PathFailure",
    "check_end_entity",
    "check_issuers",
    "check_key",
    "check_path",
    "check_validity",
    "issuers_window",
]

_OID_NAMES = {v: k for k, v in EKU_NAMES.items()}

# Extensions whose meaning this validator implements (RFC 5280 §4.2: a critical
# extension we do not process makes the certificate unusable).
_HANDLED = frozenset(
    oid.dotted_string
    for oid in (
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        # Certificate policies: §6.1.3 (d)-(f), §6.1.4 (a)-(b), (h)-(j), §6.1.5 (see _policies).
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_MAPPINGS,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.INHIBIT_ANY_POLICY,
    )
)
_MUST_NOT_BE_CRITICAL = frozenset(
    oid.dotted_string
    for oid in (ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
)

# Extensions a conforming CA MUST mark critical (RFC 5280 §4.2.1.9-11, §4.2.1.14), or relying
# parties that skip them would accept more. By default they are processed whatever their
# criticality, as OpenSSL does; Policy.strict_ca_profile refuses them when not critical.
_MUST_BE_CRITICAL = {
    ExtensionOID.BASIC_CONSTRAINTS.dotted_string: "basicConstraints (RFC 5280 §4.2.1.9)",
    ExtensionOID.NAME_CONSTRAINTS.dotted_string: "nameConstraints (RFC 5280 §4.2.1.10)",
    ExtensionOID.POLICY_CONSTRAINTS.dotted_string: "policyConstraints (RFC 5280 §4.2.1.11)",
    ExtensionOID.INHIBIT_ANY_POLICY.dotted_string: "inhibitAnyPolicy (RFC 5280 §4.2.1.14)",
}
_BC = ExtensionOID.BASIC_CONSTRAINTS.dotted_string


@dataclass(frozen=True, slots=True)
class HandedDown:
    """What the anchor and the CAs of a path hand down to its leaf (see :func:`check_issuers`)."""

    names: NameConstraintState  # the name constraints the leaf must satisfy
    policies: PolicyState | None  # certificate-policy state; None when no certificate is processed
    issuer_spki: bytes = b""  # SHA-256 of the leaf's issuer's SPKI (the strict CA profile's "self-signed")


@dataclass(frozen=True, slots=True)
class PathFailure:
    """Why one candidate path failed."""

    reason: Reason
    detail: str
    position: int


class _Who:
    """The name of a certificate in a detail, built only if a detail is written (the hot path never does)."""

    __slots__ = ("anchor", "cert", "position")

    def __init__(self, cert: Certificate, position: int, *, anchor: bool = False) -> None:
        self.cert = cert
        self.position = position
        self.anchor = anchor

    def __str__(self) -> str:
        return _who(self.cert, self.position, anchor=self.anchor)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _who(cert: Certificate, position: int, *, anchor: bool = False) -> str:
    if anchor:
        role = "trust anchor"
    elif position == 0:
        role = "client certificate"
    else:
        role = f"intermediate #{position}"
    return f"{role} {cert.describe()!r}"


def check_key(cert: Certificate, policy: Policy) -> tuple[Reason, str] | None:
    """Key policy (DESIGN.md §5): key type, RSA size bounds, EC curve."""
    kt = cert.key_type
    if kt == "unknown" or cert.public_key is None:
        return Reason.UNSUPPORTED_KEY_ALGORITHM, "its public key algorithm is not supported"
    if kt not in policy.key_types:
        return Reason.UNSUPPORTED_KEY_ALGORITHM, (
            f"it has a {kt.upper()} key; policy allows {', '.join(sorted(policy.key_types))}"
        )
    if kt == "rsa":
        if cert.key_bits < policy.min_rsa_bits:
            return Reason.RSA_KEY_TOO_SMALL, (
                f"its RSA key is {cert.key_bits} bits; at least {policy.min_rsa_bits} are required"
            )
        if cert.key_bits > policy.max_rsa_bits:
            return Reason.RSA_KEY_TOO_LARGE, (
                f"its RSA key is {cert.key_bits} bits; at most {policy.max_rsa_bits} are allowed"
            )
        if cert.key_bits % 8:
            # A modulus that is not a whole number of bytes is a broken or hostile key generator.
            return Reason.UNSUPPORTED_KEY_ALGORITHM, (
                f"its RSA modulus is {cert.key_bits} bits, not a multiple of 8"
            )
    if kt == "ec" and cert.curve not in policy.curves:
        return Reason.UNSUPPORTED_CURVE, (
            f"its EC key is on {cert.curve}; policy allows {', '.join(sorted(policy.curves))}"
        )
    return None


def _structure(cert: Certificate, is_leaf: bool) -> str | None:
    """Encoding rules whose violation makes a certificate malformed (RFC 5280 §4.1, §4.2)."""
    if cert.serial <= 0:
        return "its serial number is not a positive integer (RFC 5280 §4.1.2.2)"
    # RFC 5280 §4.1.2.2: users MUST handle serial numbers up to 20 octets long. That
    # bounds the value (160 bits), not its DER encoding: a 20-octet value with the top
    # bit set is encoded in 21 content octets (a leading zero keeps it positive).
    if cert.serial.bit_length() > 160:
        return "its serial number is longer than 20 octets (RFC 5280 §4.1.2.2)"
    # The name keys hold one entry per RDN and an RDN is never empty: an empty key is an empty name.
    if cert.issuer_empty:
        return "its issuer name is empty (RFC 5280 §4.1.2.4)"
    if cert.subject_empty:
        if not is_leaf or cert.is_ca:
            return "it is a CA certificate with an empty subject (RFC 5280 §4.1.2.6)"
        san_critical = ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string in cert.critical_oids
        if not cert.san or not san_critical:
            return (
                "its subject is empty, so subjectAltName must be present and critical "
                "(RFC 5280 §4.2.1.6)"
            )
    if not cert.critical_oids.isdisjoint(_MUST_NOT_BE_CRITICAL):
        bad = cert.critical_oids & _MUST_NOT_BE_CRITICAL
        return f"it marks key identifier extensions critical ({', '.join(sorted(bad))}; RFC 5280 §4.2.1.1-2)"
    if cert.version < 3 and cert.extension_oids:
        return "it is not version 3 but carries extensions (RFC 5280 §4.1.2.1)"
    return None


def _strict_profile(cert: Certificate, *, issues: bool, self_signed: bool) -> str | None:
    """The "conforming CAs MUST" encoding rules of RFC 5280 §4.2 the default profile tolerates.

    Checked only under ``Policy.strict_ca_profile``. ``issues``: the certificate's key
    verifies a certificate of the path (the anchor above a path, every intermediate);
    ``self_signed``: its own key verifies it (a trust anchor that is self-issued).
    """
    loose = cert.extension_oids - cert.critical_oids
    names = [text for oid, text in _MUST_BE_CRITICAL.items() if oid in loose and (oid != _BC or issues)]
    if names:
        return f"it carries {', '.join(names)} not marked critical; the strict CA profile requires it critical"
    # §4.2.1.1: every certificate but a self-signed one carries an authorityKeyIdentifier.
    if cert.aki is None and not self_signed:
        return "it has no authorityKeyIdentifier (RFC 5280 §4.2.1.1), which the strict CA profile requires"
    if issues:
        # §4.2.1.2: every CA certificate carries a subjectKeyIdentifier; §4.2.1.3: a
        # certificate whose key verifies certificates carries keyUsage.
        missing = "subjectKeyIdentifier (RFC 5280 §4.2.1.2)" if cert.ski is None else (
            "keyUsage (RFC 5280 §4.2.1.3)" if cert.key_usage is None else None
        )
        if missing is not None:
            return f"it is a CA certificate without {missing}, which the strict CA profile requires"
    return None


def _strict_failure(cert: Certificate, who: _Who, pos: int, *, issues: bool, self_signed: bool) -> PathFailure | None:
    if (msg := _strict_profile(cert, issues=issues, self_signed=self_signed)) is not None:
        return PathFailure(Reason.MALFORMED, f"{who}: {msg}", pos)
    return None


def _unhandled_failure(cert: Certificate, who: _Who, pos: int) -> PathFailure | None:
    """RFC 5280 §4.2: a critical extension this validator does not process makes ``cert`` unusable."""
    if cert.critical_oids <= _HANDLED:
        return None
    crit = ", ".join(sorted(cert.critical_oids - _HANDLED))
    return PathFailure(
        Reason.UNHANDLED_CRITICAL_EXTENSION, f"{who} has critical extension(s) mtlscore does not process: {crit}", pos
    )


def _eku_text(oids: frozenset[str] | None) -> str:
    if oids is None:
        return "no extendedKeyUsage"
    if not oids:
        return "an empty extendedKeyUsage"
    return "extendedKeyUsage " + ", ".join(sorted(_OID_NAMES.get(o, o) for o in oids))


def check_validity(
    cert: Certificate, at: datetime, policy: Policy, who: _Who | str, window: tuple[datetime, datetime] | None = None
) -> tuple[Reason, str] | None:
    """Validity at ``at`` with the policy's clock skew (the anchor passes its activation window).

    ``at`` must already be truncated to whole seconds, as certificate times are
    (check_path does it once per path).
    """
    not_before, not_after = window or (cert.not_before, cert.not_after)
    skew = policy.clock_skew
    # RFC 5280 §4.1.2.5: the validity period includes both notBefore and notAfter.
    if at + skew < not_before:
        return Reason.NOT_YET_VALID, (
            f"{who} is not valid until {not_before.isoformat()} (validation time {at.isoformat()}); "
            "check the clock of whoever issued it, or wait"
        )
    if at - skew > not_after:
        return Reason.EXPIRED, (
            f"{who} expired at {not_after.isoformat()} (validation time {at.isoformat()}); "
            "issue a new certificate"
        )
    return None


def check_path(
    path: list[Certificate], anchor: Anchor, *, at: datetime, policy: Policy
) -> PathFailure | None:
    """Validate one complete path (leaf first) ending under ``anchor``; None when valid.

    Signatures are not checked here: the builder verified each link as it
    extended the path. Everything else of RFC 5280 §6.1 and the policy is.
    """
    at = at.replace(microsecond=0)
    state = check_issuers(path, anchor, at=at, policy=policy)
    if isinstance(state, PathFailure):
        return state
    return check_end_entity(path[0], state, at=at, policy=policy)


def _policy_failure(exc: PolicyFailure, pos: int) -> PathFailure:
    if exc.budget:
        return PathFailure(Reason.SEARCH_LIMIT_EXCEEDED, exc.detail, pos)
    return PathFailure(Reason.MALFORMED if exc.malformed else Reason.NO_VALID_POLICY, exc.detail, pos)


def check_issuers(
    path: list[Certificate], anchor: Anchor, *, at: datetime, policy: Policy
) -> HandedDown | PathFailure:
    """§6.1 for the anchor and the CAs of ``path`` (positions ``len(path)``…1): what they hand down.

    The result — the name constraints and the certificate-policy state the leaf
    is checked under — depends on the leaf only through the details of
    failures, and on ``at`` only through the CAs' validity (see
    :func:`issuers_window`), so an accepted result can be reused for another
    leaf under the same CAs and path length.
    """
    n = len(path)
    a = anchor.certificate
    a_pos = n
    # Certificate times have whole-second precision (RFC 5280 §4.1.2.5.1-2): so does
    # the comparison, or a validation at hh:mm:ss.005 would miss notAfter = hh:mm:ss.
    at = at.replace(microsecond=0)
    who = _Who(a, a_pos, anchor=True)

    if (bad := check_validity(a, at, policy, who, anchor.window())) is not None:
        return PathFailure(bad[0], bad[1], a_pos)
    if bad_ki := a.critical_oids & _MUST_NOT_BE_CRITICAL:
        return PathFailure(
            Reason.MALFORMED,
            f"{who} marks key identifier extensions critical ({', '.join(sorted(bad_ki))}; "
            "RFC 5280 §4.2.1.1-2)",
            a_pos,
        )
    if (failure := _unhandled_failure(a, who, a_pos)) is not None:
        return failure
    if (
        policy.strict_ca_profile
        and a.sha256 != path[-1].sha256
        and (failure := _strict_failure(a, who, a_pos, issues=True, self_signed=a.self_issued)) is not None
    ):
        return failure
    # The anchor's key verifies the first signature on the path: it is only as
    # strong as that key, so key policy applies to it too.
    if (bad := check_key(a, policy)) is not None:
        return PathFailure(bad[0], f"{who}: {bad[1]}", a_pos)
    if a.sha256 != path[-1].sha256:
        # The anchor issues the top of the path, so it must be a CA. RFC 5280 §6.1.1 (d)
        # makes a trust anchor a name and a key, and RFC 5937 §3 lets a relying party
        # also take an anchor certificate's extensions as constraints: mtlscore does, so a
        # v3 anchor needs basicConstraints cA=TRUE as any CA certificate does (§4.2.1.9:
        # conforming CAs MUST include it), as pyca and x509-limbo do (OpenSSL accepts it
        # with keyCertSign: docs/differences.md "Trust anchor without basicConstraints").
        # A v1/v2 anchor, which cannot carry extensions, is grandfathered.
        if a.version >= 3 and a.is_ca is not True:
            return PathFailure(
                Reason.ISSUER_NOT_CA,
                f"{who} issues {path[-1].describe()!r} but "
                + ("has basicConstraints cA=FALSE" if a.is_ca is False else
                   "has no basicConstraints (RFC 5280 §4.2.1.9: a CA certificate MUST carry it with cA=TRUE)")
                + "; configure the real CA certificate as the anchor, or reissue the root with "
                "basicConstraints critical, cA=TRUE",
                a_pos,
            )
        if a.key_usage is not None and not a.key_usage.key_cert_sign:
            return PathFailure(
                Reason.ISSUER_KEY_USAGE,
                f"{who} has keyUsage without keyCertSign, so it may not sign certificates",
                a_pos,
            )
    # §6.1.2 (k): max_path_length starts at n; an anchor's own pathLenConstraint applies.
    max_path_length = n
    if a.path_length is not None:
        max_path_length = min(max_path_length, a.path_length)
    nc = NameConstraintState(budget=policy.max_path_work * 64)
    try:
        nc.add(a)
    except ConstraintFailure as exc:
        return PathFailure(Reason.NAME_CONSTRAINTS_VIOLATION, f"{who}: {exc.detail}", a_pos)
    # Certificate policies: the anchor is an input of §6.1, not a certificate of the
    # path, so its own policy extensions are not processed (RFC 5280 §6.1.1 (d)).
    top = n - 1 if a.sha256 == path[-1].sha256 else n
    policies = None
    if top:
        policies = _policy_initial(top, policy)
    required = policy.required_eku
    if (
        required is not None
        and policy.check_ca_eku
        and a.eku is not None
        and a.sha256 != path[-1].sha256
        and required not in a.eku
        and ANY_EKU not in a.eku
    ):
        return PathFailure(
            Reason.INVALID_EKU,
            f"{who} restricts its subordinates to {_eku_text(a.eku)}, "
            f"which excludes {_OID_NAMES.get(required, required)}",
            a_pos,
        )

    for pos in range(n - 1, 0, -1):
        cert = path[pos]
        who = _Who(cert, pos)
        if (failure := _check_certificate(cert, pos, who, at, policy)) is not None:
            return failure
        if policy.strict_ca_profile:
            above = path[pos + 1] if pos + 1 < n else a
            self_signed = cert.self_issued and above.spki_sha256 == cert.spki_sha256
            if (failure := _strict_failure(cert, who, pos, issues=True, self_signed=self_signed)) is not None:
                return failure
        # §6.1.3 (b)-(c): name constraints apply to every certificate except
        # self-issued intermediates.
        if not cert.self_issued and (failure := _names_allowed(nc, cert, pos)) is not None:
            return failure
        # §6.1.4 (k): an issuer must be a CA by basicConstraints.
        if cert.is_ca is not True:
            return PathFailure(
                Reason.ISSUER_NOT_CA,
                f"{who} issues {path[pos - 1].describe()!r} but "
                + ("has no basicConstraints" if cert.is_ca is None else "has basicConstraints cA=FALSE")
                + "; reissue it as a CA (basicConstraints critical, cA=TRUE)",
                pos,
            )
        # §6.1.4 (l)-(m): pathLenConstraint counts non-self-issued intermediates.
        if not cert.self_issued:
            if max_path_length <= 0:
                return PathFailure(
                    Reason.PATH_LENGTH_EXCEEDED,
                    f"{who} is one CA too many below a pathLenConstraint; "
                    "shorten the chain or raise the issuer's pathLenConstraint",
                    pos,
                )
            max_path_length -= 1
        if cert.path_length is not None and cert.path_length < max_path_length:
            max_path_length = cert.path_length
        # §6.1.4 (n): an issuer's keyUsage, when present, must allow keyCertSign.
        if cert.key_usage is not None and not cert.key_usage.key_cert_sign:
            return PathFailure(
                Reason.ISSUER_KEY_USAGE,
                f"{who} has keyUsage without keyCertSign, so it may not sign certificates",
                pos,
            )
        try:
            nc.add(cert)
        except ConstraintFailure as exc:
            return PathFailure(Reason.NAME_CONSTRAINTS_VIOLATION, f"{who}: {exc.detail}", pos)
        if policies is not None and pos < top:
            try:
                policies = _policy_issuer(policies, cert, who)
            except PolicyFailure as exc:
                return _policy_failure(exc, pos)
        if (
            required is not None
            and policy.check_ca_eku
            and cert.eku is not None
            and required not in cert.eku
            and ANY_EKU not in cert.eku
        ):
            return PathFailure(
                Reason.INVALID_EKU,
                f"{who} restricts its subordinates to {_eku_text(cert.eku)}, "
                f"which excludes {_OID_NAMES.get(required, required)}",
                pos,
            )
    return HandedDown(nc, policies, (path[1] if n > 1 else a).spki_sha256)


def issuers_window(path: list[Certificate] | tuple[Certificate, ...], anchor: Anchor) -> tuple[datetime, datetime]:
    """(latest notBefore, earliest notAfter) over the CAs of ``path`` (not ``path[0]``) and the anchor's window.

    :func:`check_issuers` answers the same for every whole-second ``at`` with
    ``at + skew >= first`` and ``at - skew <= last``.
    """
    lo, hi = anchor.window()
    for cert in path[1:]:
        if cert.not_before > lo:
            lo = cert.not_before
        if cert.not_after < hi:
            hi = cert.not_after
    return lo, hi


def check_end_entity(
    cert: Certificate, handed: HandedDown, *, at: datetime, policy: Policy
) -> PathFailure | None:
    """§6.1 for the certificate at position 0, under the state its CAs handed down.

    ``at`` must already be truncated to whole seconds.
    """
    who = _Who(cert, 0)
    if (failure := _check_certificate(cert, 0, who, at, policy)) is not None:
        return failure
    if policy.strict_ca_profile:
        self_signed = cert.self_issued and handed.issuer_spki == cert.spki_sha256
        if (failure := _strict_failure(cert, who, 0, issues=False, self_signed=self_signed)) is not None:
            return failure
    nc = handed.names
    if not nc.empty and (failure := _names_allowed(nc, cert, 0)) is not None:
        return failure
    if handed.policies is not None:
        try:
            _policy_end_entity(handed.policies, cert, who, policy.user_policies)
        except PolicyFailure as exc:
            return _policy_failure(exc, 0)
    return _check_leaf(cert, policy, who)


def _names_allowed(nc: NameConstraintState, cert: Certificate, pos: int) -> PathFailure | None:
    """§6.1.3 (b)-(c): the certificate's names against the constraints handed down to it."""
    try:
        nc.check(cert, end_entity=pos == 0)
    except ConstraintFailure as exc:
        reason = Reason.SEARCH_LIMIT_EXCEEDED if exc.budget else Reason.NAME_CONSTRAINTS_VIOLATION
        return PathFailure(reason, exc.detail, pos)
    return None


def _check_certificate(cert: Certificate, pos: int, who: _Who, at: datetime, policy: Policy) -> PathFailure | None:
    """The checks every certificate on a path passes, whatever its position."""
    if (msg := _structure(cert, pos == 0)) is not None:
        return PathFailure(Reason.MALFORMED, f"{who}: {msg}", pos)
    if (bad := check_signature_algorithm(cert, policy)) is not None:
        return PathFailure(bad[0], f"{who}: {bad[1]}", pos)
    if (bad := check_validity(cert, at, policy, who)) is not None:
        return PathFailure(bad[0], bad[1], pos)
    if (failure := _unhandled_failure(cert, who, pos)) is not None:
        return failure
    if (bad := check_key(cert, policy)) is not None:
        return PathFailure(bad[0], f"{who}: {bad[1]}", pos)
    return None


def _check_leaf(cert: Certificate, policy: Policy, who: _Who) -> PathFailure | None:
    ku = cert.key_usage
    if ku is not None:
        # RFC 5280 §4.2.1.3: keyCertSign only with basicConstraints cA=TRUE.
        if ku.key_cert_sign and cert.is_ca is not True:
            return PathFailure(
                Reason.LEAF_KEY_USAGE,
                f"{who} asserts keyCertSign without being a CA (RFC 5280 §4.2.1.3)",
                0,
            )
        if policy.require_leaf_digital_signature and not ku.digital_signature:
            return PathFailure(
                Reason.LEAF_KEY_USAGE,
                f"{who} has keyUsage without digitalSignature, so it cannot sign a TLS handshake; "
                "reissue it with digitalSignature",
                0,
            )
    if cert.name_constraints is not None and cert.is_ca is not True:
        return PathFailure(
            Reason.NAME_CONSTRAINTS_VIOLATION,
            f"{who} carries nameConstraints, which only CA certificates may (RFC 5280 §4.2.1.10)",
            0,
        )
    required = policy.required_eku
    if required is not None:
        eku = cert.eku
        name = _OID_NAMES.get(required, required)
        if eku is None:
            if policy.require_leaf_eku:
                return PathFailure(
                    Reason.INVALID_EKU,
                    f"{who} has no extendedKeyUsage; it must list {name}. Reissue it with "
                    f"extendedKeyUsage={name}",
                    0,
                )
        elif required not in eku and not (ANY_EKU in eku and not policy.require_leaf_eku):
            return PathFailure(
                Reason.INVALID_EKU,
                f"{who} has {_eku_text(eku)} but {name} is required; reissue it with "
                f"extendedKeyUsage={name}",
                0,
            )
    return None
