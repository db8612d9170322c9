"""RFC 5280 §6.1 path validation of one candidate path, plus mtlscore's policy.

A path is ``[leaf, intermediate…]`` plus the :class:`Anchor` that vouches for
its last element. It is processed from the anchor down, as §6.1 describes.
Each check is written once and applied by :class:`Role` (Go's
``isValid(certType)``, the Rust X.509 verifier's ``permits_basic`` /
``permits_ca`` / ``permits_ee``): :func:`check_basic` for every certificate,
:func:`check_ca` for the anchor and each intermediate that issues,
``_check_leaf`` for the end entity. Every check raises a :class:`PathFailure`
carrying a :class:`Reason`, the position of the certificate in the path
(leaf = 0; the anchor is ``len(path)``) and a detail that names the
certificate and the fix; :func:`check_path` returns it to the path builder."""

from __future__ import annotations

import enum
from dataclasses import replace
from datetime import datetime
from typing import NamedTuple

from cryptography.x509.oid import ExtensionOID

from ..reasons import Reason
from ..x509.cert import Certificate
from .failure import PathFailure, Who
from .name_constraints import NameConstraintState
from .plain import KEY_IDENTIFIERS, PROCESSED_EXTENSIONS, plain_ca, plain_end_entity
from .policy import ANY_EKU, EKU_NAMES, Policy
from .policy_graph import PolicyState
from .policy_graph import end_entity as _policy_end_entity
from .policy_graph import initial as _policy_initial
from .policy_graph import issuer as _policy_issuer
from .signature import check_signature_algorithm
from .trust import Anchor

__all__ = [
    "HandedDown",
    "PathFailure",
    "Role",
    "Who",
    "check_basic",
    "check_ca",
    "check_end_entity",
    "check_end_entity_fully",
    "check_issuers",
    "check_key",
    "check_path",
    "check_path_state",
    "check_validity",
    "issuers_window",
    "whole_seconds",
]

_OID_NAMES = {v: k for k, v in EKU_NAMES.items()}

# Extensions whose meaning this validator implements, and the key identifiers a certificate
# must not mark critical (RFC 5280 §4.2, §4.2.1.1-2): with the one-pass answers, in .plain.
_HANDLED = PROCESSED_EXTENSIONS
_MUST_NOT_BE_CRITICAL = KEY_IDENTIFIERS

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


class Role(enum.Enum):
    """The place of a certificate on a path, which decides what is checked of it (Go's ``certType``)."""

    ANCHOR = "trust anchor"  # an input of §6.1 (RFC 5280 §6.1.1 (d)), above the path
    INTERMEDIATE = "intermediate"  # a CA of the path (positions 1…n-1)
    END_ENTITY = "client certificate"  # the leaf (position 0)


# Module-level names for the members: an Enum member read off its class costs a descriptor
# call on Python 3.11, and the roles are compared on every certificate of every path.
_ANCHOR, _INTERMEDIATE, _END_ENTITY = Role.ANCHOR, Role.INTERMEDIATE, Role.END_ENTITY
_ANCHOR_LABEL = Role.ANCHOR.value


# The name-constraint state of a path without nameConstraints, shared: an empty state is never
# changed (check() returns before spending; add() is called only with constraints, on a state of its own).
_NO_CONSTRAINTS = NameConstraintState()


class HandedDown(NamedTuple):
    """What the anchor and the CAs of a path hand down to its leaf (see :func:`check_issuers`).

    Immutable (a tuple: made once per checked path, cheaper than a frozen dataclass).
    """

    names: NameConstraintState  # the name constraints the leaf must satisfy
    policies: PolicyState | None  # certificate-policy state; None when no certificate is processed
    issuer_spki: bytes = b""  # the leaf's issuer's SPKI DER (the strict CA profile's "self-signed")


def whole_seconds(at: datetime) -> datetime:
    """``at`` truncated to whole seconds, as certificate times are (RFC 5280 §4.1.2.5.1-2).

    ``at`` itself when it already is: the validator truncates once, and the
    checks it calls find nothing left to do.
    """
    return at.replace(microsecond=0) if at.microsecond else at


def check_key(cert: Certificate, policy: Policy, who: Who) -> None:
    """Key policy (docs/reference.md#defaults): key type, RSA size bounds, EC curve. Raises the failure of ``who``."""
    kt = cert.key_type
    if kt == "unknown" or cert.public_key is None:
        raise who.fail(Reason.UNSUPPORTED_KEY_ALGORITHM, f"{who}: its public key algorithm is not supported")
    if kt not in policy.key_types:
        raise who.fail(
            Reason.UNSUPPORTED_KEY_ALGORITHM,
            f"{who}: it has a {kt.upper()} key; policy allows {', '.join(sorted(policy.key_types))}",
        )
    if kt == "rsa":
        if cert.key_bits < policy.min_rsa_bits:
            raise who.fail(
                Reason.RSA_KEY_TOO_SMALL,
                f"{who}: its RSA key is {cert.key_bits} bits; at least {policy.min_rsa_bits} are required",
            )
        if cert.key_bits > policy.max_rsa_bits:
            raise who.fail(
                Reason.RSA_KEY_TOO_LARGE,
                f"{who}: its RSA key is {cert.key_bits} bits; at most {policy.max_rsa_bits} are allowed",
            )
        if cert.key_bits % 8:
            # A modulus that is not a whole number of bytes is a broken or hostile key generator.
            raise who.fail(
                Reason.UNSUPPORTED_KEY_ALGORITHM, f"{who}: its RSA modulus is {cert.key_bits} bits, not a multiple of 8"
            )
    if kt == "ec" and cert.curve not in policy.curves:
        raise who.fail(
            Reason.UNSUPPORTED_CURVE,
            f"{who}: its EC key is on {cert.curve}; policy allows {', '.join(sorted(policy.curves))}",
        )


def _malformed(who: Who, why: str) -> PathFailure:
    return who.fail(Reason.MALFORMED, f"{who}: {why}")


def _structure(cert: Certificate, role: Role, who: Who) -> None:
    """Encoding rules whose violation makes a certificate malformed (RFC 5280 §4.1, §4.2).

    A trust anchor is an input of §6.1, a name and a key (§6.1.1 (d)), not a
    certificate of the path: of these rules only the one about the extensions
    mtlscore takes from it (RFC 5937 §3) applies to it.
    """
    if role is not _ANCHOR:
        if cert.serial <= 0:
            raise _malformed(who, "its serial number is not a positive integer (RFC 5280 §4.1.2.2)")
        # RFC 5280 §4.1.2.2: users MUST handle serial numbers up to 20 octets long. That
        # bounds the value (160 bits), not its DER encoding: a 20-octet value with the top
        # bit set is encoded in 21 content octets (a leading zero keeps it positive).
        if cert.serial.bit_length() > 160:
            raise _malformed(who, "its serial number is longer than 20 octets (RFC 5280 §4.1.2.2)")
        # The name keys hold one entry per RDN and an RDN is never empty: an empty key is an empty name.
        if cert.issuer_empty:
            raise _malformed(who, "its issuer name is empty (RFC 5280 §4.1.2.4)")
        if cert.subject_empty:
            if role is not _END_ENTITY or cert.is_ca:
                raise _malformed(who, "it is a CA certificate with an empty subject (RFC 5280 §4.1.2.6)")
            san_critical = ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string in cert.critical_oids
            if not cert.san or not san_critical:
                raise _malformed(
                    who,
                    "its subject is empty, so subjectAltName must be present and critical (RFC 5280 §4.2.1.6)",
                )
    if not cert.critical_oids.isdisjoint(_MUST_NOT_BE_CRITICAL):
        bad = cert.critical_oids & _MUST_NOT_BE_CRITICAL
        raise _malformed(
            who, f"it marks key identifier extensions critical ({', '.join(sorted(bad))}; RFC 5280 §4.2.1.1-2)"
        )
    if role is not _ANCHOR and cert.version < 3 and cert.extension_oids:
        raise _malformed(who, "it is not version 3 but carries extensions (RFC 5280 §4.1.2.1)")


def _check_profile(cert: Certificate, who: Who, policy: Policy, *, issues: bool, self_signed: bool) -> None:
    """The "conforming CAs MUST" encoding rules of RFC 5280 §4.2 the default profile tolerates.

    Checked only under ``Policy.strict_ca_profile``. ``issues``: the certificate's key
    verifies a certificate of the path (the anchor above a path, every intermediate);
    ``self_signed``: its own key verifies it (a trust anchor that is self-issued).
    """
    if not policy.strict_ca_profile:
        return
    loose = cert.extension_oids - cert.critical_oids
    names = [text for oid, text in _MUST_BE_CRITICAL.items() if oid in loose and (oid != _BC or issues)]
    if names:
        raise _malformed(
            who, f"it carries {', '.join(names)} not marked critical; the strict CA profile requires it critical"
        )
    # §4.2.1.1: every certificate but a self-signed one carries an authorityKeyIdentifier.
    if cert.aki is None and not self_signed:
        raise _malformed(
            who, "it has no authorityKeyIdentifier (RFC 5280 §4.2.1.1), which the strict CA profile requires"
        )
    if issues:
        # §4.2.1.2: every CA certificate carries a subjectKeyIdentifier; §4.2.1.3: a
        # certificate whose key verifies certificates carries keyUsage.
        missing = "subjectKeyIdentifier (RFC 5280 §4.2.1.2)" if cert.ski is None else (
            "keyUsage (RFC 5280 §4.2.1.3)" if cert.key_usage is None else None
        )
        if missing is not None:
            raise _malformed(who, f"it is a CA certificate without {missing}, which the strict CA profile requires")


def _unhandled(cert: Certificate, who: Who) -> None:
    """RFC 5280 §4.2: a critical extension this validator does not process makes ``cert`` unusable."""
    if cert.critical_oids <= _HANDLED:
        return
    crit = ", ".join(sorted(cert.critical_oids - _HANDLED))
    raise who.fail(
        Reason.UNHANDLED_CRITICAL_EXTENSION, f"{who} has critical extension(s) mtlscore does not process: {crit}"
    )


def _eku_text(oids: frozenset[str] | None) -> str:
    if oids is None:
        return "no extendedKeyUsage"
    if not oids:
        return "an empty extendedKeyUsage"
    return "extendedKeyUsage " + ", ".join(sorted(_OID_NAMES.get(o, o) for o in oids))


def check_validity(
    cert: Certificate, at: datetime, policy: Policy, who: Who, window: tuple[datetime, datetime] | None = None
) -> None:
    """Validity at ``at`` with the policy's clock skew (the anchor passes its activation window).

    ``at`` must already be truncated to whole seconds, as certificate times are
    (check_path does it once per path).
    """
    not_before, not_after = window or (cert.not_before, cert.not_after)
    skew = policy.clock_skew
    # RFC 5280 §4.1.2.5: the validity period includes both notBefore and notAfter.
    if at + skew < not_before:
        raise who.fail(
            Reason.NOT_YET_VALID,
            f"{who} is not valid until {not_before.isoformat()} (validation time {at.isoformat()}); "
            "check the clock of whoever issued it, or wait",
        )
    if at - skew > not_after:
        # A trust anchor is configuration, not a credential the client holds: the fix is
        # in the trust config (replace the anchor or widen its activation window).
        fix = (
            "replace this trust anchor (or its not_after) in the trust configuration"
            if window is not None
            else "issue a new certificate"
        )
        raise who.fail(
            Reason.EXPIRED, f"{who} expired at {not_after.isoformat()} (validation time {at.isoformat()}); {fix}"
        )


def check_basic(
    cert: Certificate, role: Role, who: Who, at: datetime, policy: Policy,
    window: tuple[datetime, datetime] | None = None,
) -> None:
    """What every certificate passes, whatever its role (the Rust verifier's ``permits_basic``).

    Encoding, signature algorithm, validity at ``at`` (the anchor's: its
    activation ``window``), critical extensions, key policy. Raises the failure.
    """
    _structure(cert, role, who)
    if role is not _ANCHOR:
        # The anchor's own signature is not on the path (RFC 5280 §6.1.1 (d)): its algorithm is not judged.
        check_signature_algorithm(cert, policy, who)
    check_validity(cert, at, policy, who, window)
    _unhandled(cert, who)
    # The anchor's key verifies the first signature on the path: it is only as
    # strong as that key, so key policy applies to it too.
    check_key(cert, policy, who)


def check_ca(
    cert: Certificate, role: Role, who: Who, policy: Policy, subject: Certificate, max_path_length: int | None
) -> None:
    """Whether ``cert``, the anchor or an intermediate, may issue ``subject`` as a CA (the Rust verifier's
    ``permits_ca``, Go's ``isValid(certType)``). Raises the failure.

    ``max_path_length``: §6.1.4 (l)'s count of CAs an intermediate may still add
    (None for the anchor, which §6.1 does not count). One rule for both roles,
    with one difference the standards make: a v1/v2 anchor cannot carry
    basicConstraints and is grandfathered (below). The checks follow §6.1.4's
    order: (k), (l), (n), then the CA's extendedKeyUsage.
    """
    # §6.1.4 (k): an issuer must be a CA by basicConstraints. RFC 5280 §6.1.1 (d) makes
    # a trust anchor a name and a key, and RFC 5937 §3 lets a relying party also take an
    # anchor certificate's extensions as constraints: mtlscore does, so a v3 anchor needs
    # cA=TRUE as any CA certificate does (§4.2.1.9: conforming CAs MUST include it), as
    # pyca and x509-limbo do (OpenSSL accepts it with keyCertSign: docs/differences.md
    # "Trust anchor without basicConstraints"). A v1/v2 anchor, which cannot carry
    # extensions, is grandfathered; a v1/v2 intermediate is not (§6.1.4 (k)).
    if cert.is_ca is not True and not (role is _ANCHOR and cert.version < 3):
        why = "has basicConstraints cA=FALSE" if cert.is_ca is False else (
            "has no basicConstraints (RFC 5280 §4.2.1.9: a CA certificate MUST carry it with cA=TRUE)"
        )
        fix = (
            "configure the real CA certificate as the anchor, or reissue the root with basicConstraints critical, "
            "cA=TRUE" if role is _ANCHOR else "reissue it as a CA (basicConstraints critical, cA=TRUE)"
        )
        raise who.fail(Reason.ISSUER_NOT_CA, f"{who} issues {subject.describe()!r} but {why}; {fix}")
    # §6.1.4 (l): pathLenConstraint counts non-self-issued intermediates.
    if max_path_length is not None and max_path_length <= 0 and not cert.self_issued:
        raise who.fail(
            Reason.PATH_LENGTH_EXCEEDED,
            f"{who} is one CA too many below a pathLenConstraint; "
            "shorten the chain or raise the issuer's pathLenConstraint",
        )
    # §6.1.4 (n): an issuer's keyUsage, when present, must allow keyCertSign.
    if cert.key_usage is not None and not cert.key_usage.key_cert_sign:
        raise who.fail(
            Reason.ISSUER_KEY_USAGE, f"{who} has keyUsage without keyCertSign, so it may not sign certificates"
        )
    # A CA's extendedKeyUsage restricts its subordinates: not part of RFC 5280 §6.1, but
    # what OpenSSL and Windows do (Policy.check_ca_eku; docs/differences.md "A CA's
    # extendedKeyUsage"). anyExtendedKeyUsage (§4.2.1.12: "any purpose") allows it.
    required = policy.required_eku
    eku = cert.eku
    if required is not None and policy.check_ca_eku and eku is not None and required not in eku and ANY_EKU not in eku:
        raise who.fail(
            Reason.INVALID_EKU,
            f"{who} restricts its subordinates to {_eku_text(eku)}, "
            f"which excludes {_OID_NAMES.get(required, required)}",
        )


def check_path(
    path: list[Certificate], anchor: Anchor, *, at: datetime, policy: Policy
) -> PathFailure | None:
    """Validate one complete path (leaf first) ending under ``anchor``; None when valid, else its failure.

    Signatures are not checked here: the builder verified each link as it
    extended the path. Everything else of RFC 5280 §6.1 and the policy is. The
    checks raise :class:`PathFailure`; here it becomes the value the builder records.
    """
    return check_path_state(path, anchor, at=at, policy=policy)[0]


def check_path_state(
    path: list[Certificate], anchor: Anchor, *, at: datetime, policy: Policy
) -> tuple[PathFailure | None, HandedDown | None]:
    """:func:`check_path`, with what the issuers handed down when the path is valid.

    The builder keeps that state for the leaf's siblings (``KnownPaths.learn``)
    instead of running :func:`check_issuers` over the path a second time; the
    leaf's own check works on a copy of the name-constraint state (checking
    spends its work budget).
    """
    at = whole_seconds(at)
    try:
        handed = check_issuers(path, anchor, at=at, policy=policy)
        kept = handed if handed.names.empty else handed._replace(names=replace(handed.names))
        check_end_entity(path[0], handed, at=at, policy=policy)
    except PathFailure as failure:
        return failure, None
    return None, kept


def check_issuers(path: list[Certificate], anchor: Anchor, *, at: datetime, policy: Policy) -> HandedDown:
    """§6.1 for the anchor and the CAs of ``path`` (positions ``len(path)``…1): what they hand down.

    Raises the :class:`PathFailure` of the first certificate that fails. The
    result — the name constraints and the certificate-policy state the leaf
    is checked under — depends on the leaf only through the details of
    failures, and on ``at`` only through the CAs' validity (see
    :func:`issuers_window`), so an accepted result can be reused for another
    leaf under the same CAs and path length.
    """
    n = len(path)
    a = anchor.certificate
    # Certificate times have whole-second precision (RFC 5280 §4.1.2.5.1-2): so does
    # the comparison, or a validation at hh:mm:ss.005 would miss notAfter = hh:mm:ss.
    at = whole_seconds(at)
    who = Who(a, n, _ANCHOR_LABEL)
    # The anchor issues the top of the path, unless its certificate is that top (the
    # leaf or the last CA is itself configured as an anchor): then it is checked there.
    issues = a.sha256 != path[-1].sha256
    window = anchor.window()
    if not (issues and plain_ca(a, window, at, policy, None)):
        check_basic(a, _ANCHOR, who, at, policy, window)
        if issues:
            if policy.strict_ca_profile:
                _check_profile(a, who, policy, issues=True, self_signed=a.self_issued)
            check_ca(a, _ANCHOR, who, policy, path[-1], None)
    # §6.1.2 (k): max_path_length starts at n; an anchor's own pathLenConstraint applies.
    max_path_length = n
    if a.path_length is not None:
        max_path_length = min(max_path_length, a.path_length)
    # §6.1.4 (g): the state is made by the first certificate with nameConstraints (none
    # spends anything before): most paths have none, and hand down the shared empty state.
    nc: NameConstraintState | None = None
    if a.name_constraints is not None:
        nc = NameConstraintState(budget=policy.max_path_work * 64)
        nc.add(a, who)
    # Certificate policies: the anchor is an input of §6.1, not a certificate of the
    # path, so its own policy extensions are not processed (RFC 5280 §6.1.1 (d)).
    top = n if issues else n - 1
    policies = _policy_initial(top, policy) if top else None

    for pos in range(n - 1, 0, -1):
        cert = path[pos]
        who = Who(cert, pos)
        # The common CA passes check_basic and check_ca (and the strict profile is off): what
        # remains between them, the name constraints, cannot be preceded by their failures.
        plain = plain_ca(cert, None, at, policy, max_path_length)
        if not plain:
            check_basic(cert, _INTERMEDIATE, who, at, policy)
        if policy.strict_ca_profile:  # (the self-signed question compares name keys)
            above = path[pos + 1] if pos + 1 < n else a
            _check_profile(cert, who, policy, issues=True,
                           self_signed=cert.self_issued and above.spki_der == cert.spki_der)
        # §6.1.3 (b)-(c): name constraints apply to every certificate except
        # self-issued intermediates.
        if nc is not None and not cert.self_issued:
            nc.check(cert, who)
        if not plain:
            check_ca(cert, _INTERMEDIATE, who, policy, path[pos - 1], max_path_length)
        # §6.1.4 (l)-(m): a non-self-issued intermediate takes one from max_path_length; its
        # own pathLenConstraint may lower what is left.
        if not cert.self_issued:
            max_path_length -= 1
        if cert.path_length is not None and cert.path_length < max_path_length:
            max_path_length = cert.path_length
        if cert.name_constraints is not None:  # §6.1.4 (g)
            if nc is None:
                nc = NameConstraintState(budget=policy.max_path_work * 64)
            nc.add(cert, who)
        if policies is not None and pos < top:
            policies = _policy_issuer(policies, cert, who)
    return HandedDown(_NO_CONSTRAINTS if nc is None else nc, policies, (path[1] if n > 1 else a).spki_der)


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


def check_end_entity(cert: Certificate, handed: HandedDown, *, at: datetime, policy: Policy) -> None:
    """§6.1 for the certificate at position 0, under the state its CAs handed down. Raises the failure.

    ``at`` must already be truncated to whole seconds.
    """
    if plain_end_entity(cert, handed, at, policy):
        return
    check_end_entity_fully(cert, handed, at=at, policy=policy)


def check_end_entity_fully(cert: Certificate, handed: HandedDown, *, at: datetime, policy: Policy) -> None:
    """:func:`check_end_entity` without its one-pass answer for the common client certificate: every
    check in turn, raising the first failure."""
    who = Who(cert, 0)
    check_basic(cert, _END_ENTITY, who, at, policy)
    if policy.strict_ca_profile:
        # Only the strict profile asks whether the leaf is self-signed: the answer may
        # compare the names' matching keys, which a leaf's unique subject would build.
        _check_profile(cert, who, policy, issues=False,
                       self_signed=cert.self_issued and handed.issuer_spki == cert.spki_der)
    if not handed.names.empty:
        handed.names.check(cert, who, end_entity=True)  # §6.1.3 (b)-(c)
    if handed.policies is not None:
        _policy_end_entity(handed.policies, cert, who, policy.user_policies)
    _check_leaf(cert, policy, who)


def _check_leaf(cert: Certificate, policy: Policy, who: Who) -> None:
    """What only the end entity must satisfy (the Rust verifier's ``permits_ee``)."""
    ku = cert.key_usage
    if ku is not None:
        # RFC 5280 §4.2.1.3: keyCertSign only with basicConstraints cA=TRUE.
        if ku.key_cert_sign and cert.is_ca is not True:
            raise who.fail(Reason.LEAF_KEY_USAGE, f"{who} asserts keyCertSign without being a CA (RFC 5280 §4.2.1.3)")
        if policy.require_leaf_digital_signature and not ku.digital_signature:
            raise who.fail(
                Reason.LEAF_KEY_USAGE,
                f"{who} has keyUsage without digitalSignature, so it cannot sign a TLS handshake; "
                "reissue it with digitalSignature",
            )
    if cert.name_constraints is not None and cert.is_ca is not True:
        raise who.fail(
            Reason.NAME_CONSTRAINTS_VIOLATION,
            f"{who} carries nameConstraints, which only CA certificates may (RFC 5280 §4.2.1.10)",
        )
    required = policy.required_eku
    if required is not None:
        eku = cert.eku
        name = _OID_NAMES.get(required, required)
        if eku is None:
            if policy.require_leaf_eku:
                raise who.fail(
                    Reason.INVALID_EKU,
                    f"{who} has no extendedKeyUsage; it must list {name}. Reissue it with extendedKeyUsage={name}",
                )
        elif required not in eku and not (ANY_EKU in eku and not policy.require_leaf_eku):
            raise who.fail(
                Reason.INVALID_EKU,
                f"{who} has {_eku_text(eku)} but {name} is required; reissue it with extendedKeyUsage={name}",
            )
