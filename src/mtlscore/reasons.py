"""Reason codes (docs/reference.md#reason-codes) and the two failure types (STYLE.md §7)."""

from __future__ import annotations

import enum

__all__ = ["CertificateRejected", "ConfigError", "MtlsError", "Reason"]


class Reason(enum.StrEnum):
    """Why a client certificate was rejected. The values are stable strings."""

    NOT_PROVIDED = "not_provided"
    MALFORMED = "malformed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNTRUSTED = "untrusted"
    BAD_SIGNATURE = "bad_signature"
    ISSUER_NOT_CA = "issuer_not_ca"
    PATH_LENGTH_EXCEEDED = "path_length_exceeded"
    ISSUER_KEY_USAGE = "issuer_key_usage"
    LEAF_KEY_USAGE = "leaf_key_usage"
    INVALID_EKU = "invalid_eku"
    RSA_KEY_TOO_SMALL = "rsa_key_too_small"
    RSA_KEY_TOO_LARGE = "rsa_key_too_large"
    UNSUPPORTED_CURVE = "unsupported_curve"
    UNSUPPORTED_KEY_ALGORITHM = "unsupported_key_algorithm"
    WEAK_SIGNATURE_ALGORITHM = "weak_signature_algorithm"
    UNHANDLED_CRITICAL_EXTENSION = "unhandled_critical_extension"
    NAME_CONSTRAINTS_VIOLATION = "name_constraints_violation"
    NO_VALID_POLICY = "no_valid_policy"
    CHAIN_TOO_LONG = "chain_too_long"
    PKI_TOO_LARGE = "pki_too_large"
    SEARCH_LIMIT_EXCEEDED = "search_limit_exceeded"
    REVOKED = "revoked"
    REVOCATION_UNAVAILABLE = "revocation_unavailable"
    NOT_ALLOWLISTED = "not_allowlisted"
    IDENTITY_UNMAPPED = "identity_unmapped"
    BINDING_MISMATCH = "binding_mismatch"
    UNTRUSTED_PROXY = "untrusted_proxy"


class MtlsError(Exception):
    """Base of the errors mtlscore raises on purpose."""


class CertificateRejected(MtlsError):
    """The peer's certificate (or what it presented with it) is not accepted.

    Carries a stable :class:`Reason` and a ``detail`` written for people.
    """

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class ConfigError(MtlsError):
    """The operator's configuration is wrong; ``key`` names the offending key or file."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message
