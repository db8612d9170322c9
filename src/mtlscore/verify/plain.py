"""The common case in one pass: certificates that plainly pass the checks of :mod:`.checks`.

Nearly every certificate a validator sees is ordinary: a v3 certificate with a
positive serial, names, an allowed key and signature algorithm, only extensions
mtlscore processes, and (for a CA) basicConstraints cA=TRUE and keyCertSign.
:func:`plain_end_entity` and :func:`plain_ca` answer "passes" for those in one
pass; they answer "may not" (False) for anything else, and the full checks then
decide and word the failure. So each condition here is one of those checks or
stricter, never looser: True must imply that the full checks raise nothing
(``tests/test_fast_paths.py`` holds the two side by side over every defect the
suite can make, under several policies and times). A check added to
:mod:`.checks` needs its condition here too, or a False for what it covers.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.x509.oid import ExtensionOID

from ..x509.cert import Certificate
from .policy import ANY_EKU, Policy
from .signature import allowed_signature_oids

if TYPE_CHECKING:
    from .checks import HandedDown

__all__ = ["KEY_IDENTIFIERS", "PROCESSED_EXTENSIONS", "key_passes", "plain_ca", "plain_end_entity"]

# Extensions whose meaning this validator implements (RFC 5280 §4.2: a critical
# extension we do not process makes the certificate unusable).
PROCESSED_EXTENSIONS = frozenset(
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
        # Certificate policies: §6.1.3 (d)-(f), §6.1.4 (a)-(b), (h)-(j), §6.1.5 (see policy_graph).
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_MAPPINGS,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.INHIBIT_ANY_POLICY,
    )
)
# Key identifiers: a certificate MUST NOT mark them critical (RFC 5280 §4.2.1.1-2).
KEY_IDENTIFIERS = frozenset(
    oid.dotted_string
    for oid in (ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
)
# What a certificate may mark critical and pass both checks._unhandled and checks._structure's
# key-identifier rule.
_CRITICAL_OK = PROCESSED_EXTENSIONS - KEY_IDENTIFIERS


def key_passes(cert: Certificate, policy: Policy) -> bool:
    """Whether :func:`~.checks.check_key` passes ``cert``: its conditions, with no failure to word."""
    kt = cert.key_type
    if kt == "unknown" or cert.public_key is None or kt not in policy.key_types:
        return False
    if kt == "rsa":
        bits = cert.key_bits
        return policy.min_rsa_bits <= bits <= policy.max_rsa_bits and not bits % 8
    return kt != "ec" or cert.curve in policy.curves


def plain_ca(
    cert: Certificate, window: tuple[datetime, datetime] | None, at: datetime, policy: Policy,
    max_path_length: int | None,
) -> bool:
    """Whether ``cert`` is a common CA certificate that passes :func:`~.checks.check_basic` and
    :func:`~.checks.check_ca` as the anchor (``window``: its activation window) or as an
    intermediate (None), decided in one pass; False when it may not (those functions then
    decide, and word the failure).

    Each condition is one of theirs, or stricter: True must imply that both raise
    nothing (tests/test_fast_paths.py holds them side by side). The strict CA profile,
    a v1/v2 certificate, an empty name, RSASSA-PSS and a path length used up
    answer False. ``at`` is in whole seconds.
    """
    if policy.strict_ca_profile or cert.version < 3:
        return False
    if not cert.critical_oids <= _CRITICAL_OK:  # _structure's key identifiers, _unhandled (§4.2)
        return False
    skew = policy.clock_skew
    if window is None:
        # _structure (§4.1.2.2, §4.1.2.4, §4.1.2.6) and the signature algorithm: not for the
        # anchor, an input of §6.1 rather than a certificate of the path.
        serial = cert.serial
        if serial <= 0 or serial.bit_length() > 160 or cert.issuer_empty or cert.subject_empty:
            return False
        if cert.signature_oid not in allowed_signature_oids(policy):
            return False
        if at + skew < cert.not_before or at - skew > cert.not_after:
            return False
    elif at + skew < window[0] or at - skew > window[1]:
        return False
    if not key_passes(cert, policy):
        return False
    # check_ca: §6.1.4 (k), (l), (n) and the CA's extendedKeyUsage.
    if cert.is_ca is not True or (max_path_length is not None and max_path_length <= 0):
        return False
    ku = cert.key_usage
    if ku is not None and not ku.key_cert_sign:
        return False
    required = policy.required_eku
    eku = cert.eku
    return not (required is not None and policy.check_ca_eku and eku is not None
                and required not in eku and ANY_EKU not in eku)


def plain_end_entity(cert: Certificate, handed: HandedDown, at: datetime, policy: Policy) -> bool:
    """Whether ``cert`` is a common client certificate that passes every check of
    :func:`~.checks.check_end_entity_fully`, decided in one pass; False when it may not (that
    function then decides, and words the failure).

    Each condition below is one of those checks, in their order, or stricter:
    True must imply that the full checks raise nothing (tests/test_fast_paths.py holds
    the two side by side over every defect the suite can make). What it does not
    cover (the strict CA profile, name constraints, certificate policies on the
    leaf, RSASSA-PSS, a v1 leaf, an empty name) answers False.
    """
    if policy.strict_ca_profile or not handed.names.empty:
        return False
    state = handed.policies
    # policy_graph.end_entity's common leaf: no policy extensions, no explicit policy due.
    if state is not None and not (cert.policies is None and cert.policy_controls is None
                                  and state.explicit_policy > 1):
        return False
    # _structure (RFC 5280 §4.1.2.2, §4.1.2.4, §4.1.2.6, §4.2.1.1-2, §4.1.2.1).
    serial = cert.serial
    if serial <= 0 or serial.bit_length() > 160 or cert.version < 3:
        return False
    if cert.issuer_empty or cert.subject_empty:
        return False
    # _unhandled (§4.2) and the key identifiers' criticality: every critical extension is
    # one mtlscore processes and neither is a key identifier.
    if not cert.critical_oids <= _CRITICAL_OK:
        return False
    # check_signature_algorithm, check_validity (§4.1.2.5), check_key.
    if cert.signature_oid not in allowed_signature_oids(policy):
        return False
    skew = policy.clock_skew
    if at + skew < cert.not_before or at - skew > cert.not_after:
        return False
    if not key_passes(cert, policy):
        return False
    # _check_leaf (§4.2.1.3, §4.2.1.10, the policy's extendedKeyUsage).
    ku = cert.key_usage
    if ku is not None and ((ku.key_cert_sign and cert.is_ca is not True)
                           or (policy.require_leaf_digital_signature and not ku.digital_signature)):
        return False
    if cert.name_constraints is not None and cert.is_ca is not True:
        return False
    required = policy.required_eku
    if required is not None:
        eku = cert.eku
        if eku is None:
            return not policy.require_leaf_eku
        if required not in eku and not (ANY_EKU in eku and not policy.require_leaf_eku):
            return False
    return True
