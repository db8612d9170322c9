"""Validation policy: key, signature, EKU, limits, revocation and clock skew (docs/reference.md#defaults)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Literal

from ..reasons import ConfigError

__all__ = [
    "ANY_EKU",
    "CLIENT_AUTH",
    "EKU_NAMES",
    "SERVER_AUTH",
    "Policy",
    "RevocationMode",
]

CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
ANY_EKU = "2.5.29.37.0"
OCSP_SIGNING = "1.3.6.1.5.5.7.3.9"
EKU_NAMES = {
    "clientAuth": CLIENT_AUTH,
    "serverAuth": SERVER_AUTH,
    "codeSigning": "1.3.6.1.5.5.7.3.3",
    "emailProtection": "1.3.6.1.5.5.7.3.4",
    "timeStamping": "1.3.6.1.5.5.7.3.8",
    "OCSPSigning": OCSP_SIGNING,
    "anyExtendedKeyUsage": ANY_EKU,
}

KEY_TYPES = frozenset({"rsa", "ec", "ed25519", "ed448"})
CURVES = frozenset({"P-256", "P-384", "P-521"})
HASHES = frozenset({"sha1", "md5", "sha224", "sha256", "sha384", "sha512"})

RevocationMode = Literal["off", "soft", "hard"]

_epochs = itertools.count(1)


def eku_oid(value: str) -> str:
    """An EKU given by name (``clientAuth``) or dotted OID, as a dotted OID."""
    if value in EKU_NAMES:
        return EKU_NAMES[value]
    parts = value.split(".")
    if len(parts) >= 2 and all(p.isdigit() for p in parts):
        return value
    raise ConfigError(f"unknown extended key usage {value!r}", key="required_eku")


ANY_POLICY = "2.5.29.32.0"


def policy_oid(value: object) -> str:
    """A certificate policy given as a dotted OID (or ``anyPolicy``), as a dotted OID."""
    if value == "anyPolicy":
        return ANY_POLICY
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) >= 2 and all(p.isdigit() for p in parts) and parts[0] in ("0", "1", "2"):
        return str(value)
    raise ConfigError(f"{value!r} is not a dotted policy OID (e.g. 2.23.140.1.2.1) or anyPolicy",
                      key="certificate_policies")


_INT_FIELDS = (
    "min_rsa_bits", "max_rsa_bits", "max_intermediates", "max_cert_bytes", "max_chain_bytes",
    "max_presented", "max_path_work", "max_fetched_issuers", "max_fetch_bytes",
)
_BOOL_FIELDS = (
    "require_leaf_eku", "check_ca_eku", "require_leaf_digital_signature", "fetch", "ocsp_nonce",
    "ocsp_get", "fetch_issuers", "require_explicit_policy", "inhibit_policy_mapping",
    "inhibit_any_policy", "strict_ca_profile",
)
_DURATION_FIELDS = ("clock_skew", "max_revocation_age", "fetch_failure_ttl")
_STR_FIELDS = ("required_eku", "revocation", "revocation_leaf", "revocation_ca", "revocation_prefer")
# Fields whose None means "not set" (documented on the field).
_OPTIONAL = frozenset({"required_eku", "revocation_leaf", "revocation_ca", "require_explicit_policy"})


def _kind(value: object) -> str:
    text = repr(value)
    return f"{text if len(text) <= 40 else text[:37] + '...'} ({type(value).__name__})"


@dataclass(frozen=True, slots=True)
class Policy:
    """What a certificate path must satisfy beyond RFC 5280 itself.

    Every field has the default of docs/reference.md#defaults. Construction raises
    :class:`ConfigError` on values that make no sense.
    """

    # EKU (RFC 5280 §4.2.1.12). None: no EKU requirement at all.
    required_eku: str | None = CLIENT_AUTH
    # False: a leaf without an EKU extension is accepted ("absent means any").
    require_leaf_eku: bool = True
    # A CA certificate whose EKU is present must allow the required EKU (or anyEKU).
    check_ca_eku: bool = True
    # The leaf's keyUsage, when present, must carry digitalSignature.
    require_leaf_digital_signature: bool = True
    # Keys: applied to every certificate on the path except the anchor.
    min_rsa_bits: int = 2048
    max_rsa_bits: int = 8192
    curves: frozenset[str] = frozenset({"P-256", "P-384"})
    key_types: frozenset[str] = frozenset({"rsa", "ec"})
    # Signatures: RSA PKCS#1 v1.5, RSA-PSS and ECDSA with these hashes; EdDSA
    # signatures are allowed when the signing key's type is in key_types.
    signature_hashes: frozenset[str] = frozenset({"sha256", "sha384", "sha512"})
    # Limits.
    max_intermediates: int = 10
    max_cert_bytes: int = 16 * 1024
    max_chain_bytes: int = 64 * 1024
    max_presented: int = 32
    # Path-building work budget: candidate issuers examined, in total.
    max_path_work: int = 1024
    clock_skew: timedelta = timedelta(0)
    # Revocation (RFC 5280 §6.3, RFC 6960).
    revocation: RevocationMode = "soft"
    max_revocation_age: timedelta = timedelta(days=1)
    fetch: bool = False
    # Per-position revocation mode (None: ``revocation``): the leaf, and the CAs above it.
    revocation_leaf: RevocationMode | None = None
    revocation_ca: RevocationMode | None = None
    # Which source to ask first when a certificate names both: "ocsp" or "crl".
    revocation_prefer: Literal["ocsp", "crl"] = "ocsp"
    # RFC 8954: send a nonce in OCSP requests and require the response to echo it.
    ocsp_nonce: bool = False
    # RFC 6960 A.1: ask with GET when the encoded request is under 255 bytes (else POST).
    ocsp_get: bool = True
    # A CRL / OCSP URL whose fetch just failed is not asked again for this long (a
    # negative cache entry; zero turns it off).
    fetch_failure_ttl: timedelta = timedelta(seconds=30)
    # AIA caIssuers (RFC 5280 §4.2.2.1): ask for a missing intermediate; off by default.
    fetch_issuers: bool = False
    max_fetched_issuers: int = 3
    # Largest fetched answer (CRL, OCSP response, issuer) that is accepted, in bytes.
    max_fetch_bytes: int = 4 * 1024 * 1024
    # Certificate policies (RFC 5280 §6.1.1 (c), (e)-(g)): the user-initial-policy-set
    # (dotted OIDs; None or "anyPolicy": any policy), whether the path must be valid for
    # one of them (None: exactly when certificate_policies is set), and the initial
    # inhibit flags for policy mapping and anyPolicy.
    certificate_policies: frozenset[str] | None = None
    require_explicit_policy: bool | None = None
    inhibit_policy_mapping: bool = False
    inhibit_any_policy: bool = False
    # The strict CA profile: refuse (as malformed) the RFC 5280 "conforming CAs MUST"
    # encoding violations that are otherwise tolerated because real CAs commit them:
    # basicConstraints (on a CA), nameConstraints, policyConstraints or inhibitAnyPolicy
    # not marked critical, a missing authorityKeyIdentifier (all but self-signed
    # certificates), a CA certificate without subjectKeyIdentifier or keyUsage.
    strict_ca_profile: bool = False
    # Unique per Policy value; caches key on it.
    epoch: int = field(default_factory=lambda: next(_epochs), compare=False)

    def __post_init__(self) -> None:
        self._check_types()
        if self.required_eku is not None:
            object.__setattr__(self, "required_eku", eku_oid(self.required_eku))
        for name in ("curves", "key_types", "signature_hashes"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ConfigError("must be a list of names, not a string", key=name)
            object.__setattr__(self, name, frozenset(value))
        if unknown := self.key_types - KEY_TYPES:
            raise ConfigError(f"unknown key types {sorted(unknown)}; known: {sorted(KEY_TYPES)}", key="key_types")
        if unknown := self.curves - CURVES:
            raise ConfigError(f"unknown curves {sorted(unknown)}; known: {sorted(CURVES)}", key="curves")
        if unknown := self.signature_hashes - HASHES:
            raise ConfigError(
                f"unknown hashes {sorted(unknown)}; known: {sorted(HASHES)}", key="signature_hashes"
            )
        for name in ("min_rsa_bits", "max_rsa_bits", "max_cert_bytes", "max_chain_bytes", "max_path_work"):
            if getattr(self, name) <= 0:
                raise ConfigError("must be positive", key=name)
        if self.max_intermediates < 0:
            raise ConfigError("must not be negative", key="max_intermediates")
        if self.min_rsa_bits > self.max_rsa_bits:
            raise ConfigError("min_rsa_bits is above max_rsa_bits", key="min_rsa_bits")
        if isinstance(self.clock_skew, int | float):
            object.__setattr__(self, "clock_skew", timedelta(seconds=self.clock_skew))
        if self.clock_skew < timedelta(0):
            raise ConfigError("must not be negative", key="clock_skew_seconds")
        for name in ("revocation", "revocation_leaf", "revocation_ca"):
            value = getattr(self, name)
            if value not in ("off", "soft", "hard") and not (value is None and name != "revocation"):
                key = {"revocation": "revocation.mode", "revocation_leaf": "revocation.mode_leaf"}.get(
                    name, "revocation.mode_ca"
                )
                raise ConfigError(f"must be off, soft or hard, not {value!r}", key=key)
        if self.revocation_prefer not in ("ocsp", "crl"):
            raise ConfigError(f"must be ocsp or crl, not {self.revocation_prefer!r}", key="revocation.prefer")
        if self.max_fetched_issuers < 0:
            raise ConfigError("must not be negative", key="revocation.max_fetched_issuers")
        if self.max_fetch_bytes <= 0:
            raise ConfigError("must be positive", key="revocation.max_fetch_bytes")
        if isinstance(self.fetch_failure_ttl, int | float):
            object.__setattr__(self, "fetch_failure_ttl", timedelta(seconds=self.fetch_failure_ttl))
        if self.fetch_failure_ttl < timedelta(0):
            raise ConfigError("must not be negative", key="revocation.failure_ttl_seconds")
        if self.certificate_policies is not None:
            if isinstance(self.certificate_policies, str):
                raise ConfigError("must be a list of policy OIDs, not a string", key="certificate_policies")
            oids = frozenset(policy_oid(v) for v in self.certificate_policies)
            if not oids:
                raise ConfigError("names no policy; leave it out to accept any policy", key="certificate_policies")
            object.__setattr__(self, "certificate_policies", oids)

    def _check_types(self) -> None:
        """A wrong type is a :class:`ConfigError` naming the field, before any comparison
        (``Policy(min_rsa_bits="x")`` was a bare ``TypeError`` from ``<=``)."""
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if type(value) is not int:  # bool is an int subclass, and no count
                raise ConfigError(f"must be an integer, not {_kind(value)}", key=name)
        for name in _BOOL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bool) and not (value is None and name in _OPTIONAL):
                raise ConfigError(f"must be true or false, not {_kind(value)}", key=name)
        for name in _DURATION_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
                raise ConfigError(f"must be a number of seconds or a timedelta, not {_kind(value)}", key=name)
        for name in _STR_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) and not (value is None and name in _OPTIONAL):
                raise ConfigError(f"must be a string, not {_kind(value)}", key=name)
        for name in ("curves", "key_types", "signature_hashes", "certificate_policies"):
            value = getattr(self, name)
            if value is None and name == "certificate_policies":
                continue
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise ConfigError(f"must be a list of names, not {_kind(value)}", key=name)
            if bad := [v for v in value if not isinstance(v, str)]:
                raise ConfigError(f"must be a list of names; {_kind(bad[0])} is not a name", key=name)

    @property
    def user_policies(self) -> frozenset[str] | None:
        """RFC 5280's user-initial-policy-set; None is any-policy."""
        oids = self.certificate_policies
        return None if oids is None or ANY_POLICY in oids else oids

    @property
    def explicit_policy(self) -> bool:
        """RFC 5280's initial-explicit-policy: the path must be valid for a policy of ``user_policies``."""
        if self.require_explicit_policy is not None:
            return self.require_explicit_policy
        return self.certificate_policies is not None

    def revocation_mode(self, position: int) -> RevocationMode:
        """The revocation mode for the certificate at ``position`` (0 = the leaf)."""
        own = self.revocation_leaf if position == 0 else self.revocation_ca
        return own if own is not None else self.revocation

    def evolve(self, **changes: object) -> Policy:
        """A copy with some fields changed (and a new epoch)."""
        changes.setdefault("epoch", next(_epochs))
        return replace(self, **changes)  # type: ignore[arg-type]
