"""Property-based tests (hypothesis) of the validator's verdict.

- Presentation never matters: shuffling and duplicating the presented
  intermediates and adding unrelated certificates (or junk bytes) leaves the
  verdict unchanged — for the valid chain and for every defective one.
- Exactly one injected defect is rejected with exactly that defect's reason.
- No byte string makes ``validate`` raise, and no one-byte mutation of a
  valid leaf is accepted.

Certificates are built once per (defect, level) and cached, so hypothesis only
chooses among them and their presentation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlscore import Reason, TrustStore, Validator, Verdict, pki
from mtlscore.verify.policy import SERVER_AUTH

NOW = pki.NOW
DAY = timedelta(days=1)
LEVELS = ("root", "i1", "i2", "leaf")
UNKNOWN_CRITICAL = (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.3"), b"\x05\x00"), True)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Defect:
    """One defect: factory keywords at a level, the reason it must produce, where it applies."""

    kw: Callable[[], dict[str, Any]]
    reason: Reason
    levels: tuple[str, ...]


ALL, CAS, BELOW_ROOT = LEVELS, ("root", "i1", "i2"), ("i1", "i2", "leaf")

DEFECTS: dict[str, Defect] = {
    "expired": Defect(lambda: {"not_after": NOW - DAY}, Reason.EXPIRED, ALL),
    "not_yet_valid": Defect(lambda: {"not_before": NOW + DAY}, Reason.NOT_YET_VALID, ALL),
    "bad_signature": Defect(lambda: {"signer": pki.new_key()}, Reason.BAD_SIGNATURE, BELOW_ROOT),
    "weak_signature": Defect(lambda: {"hash_alg": "sha224"}, Reason.WEAK_SIGNATURE_ALGORITHM, BELOW_ROOT),
    "small_rsa": Defect(lambda: {"key": "rsa-1024"}, Reason.RSA_KEY_TOO_SMALL, ALL),
    "curve": Defect(lambda: {"key": "ec-p521"}, Reason.UNSUPPORTED_CURVE, ALL),
    "ed25519": Defect(lambda: {"key": "ed25519"}, Reason.UNSUPPORTED_KEY_ALGORITHM, ALL),
    "critical_ext": Defect(lambda: {"extensions": [UNKNOWN_CRITICAL]},
                           Reason.UNHANDLED_CRITICAL_EXTENSION, ALL),
    "not_ca": Defect(lambda: {"ca": False, "key_usage": pki.key_usage("key_cert_sign")},
                     Reason.ISSUER_NOT_CA, CAS),
    "issuer_ku": Defect(lambda: {"key_usage": pki.key_usage("crl_sign")}, Reason.ISSUER_KEY_USAGE, CAS),
    "ca_eku": Defect(lambda: {"eku": [SERVER_AUTH]}, Reason.INVALID_EKU, CAS),
    "path_len": Defect(lambda: {"path_length": 0}, Reason.PATH_LENGTH_EXCEEDED, ("root", "i1")),
    "name_constraints": Defect(lambda: {"permitted": [x509.DNSName("partner.example")]},
                               Reason.NAME_CONSTRAINTS_VIOLATION, CAS),
    "leaf_eku": Defect(lambda: {"eku": [SERVER_AUTH]}, Reason.INVALID_EKU, ("leaf",)),
    "leaf_ku": Defect(lambda: {"key_usage": pki.key_usage("key_encipherment")},
                      Reason.LEAF_KEY_USAGE, ("leaf",)),
    # Not keywords: handled in scenario().
    "revoked": Defect(dict, Reason.REVOKED, BELOW_ROOT),
    "missing_intermediate": Defect(dict, Reason.UNTRUSTED, ("i1", "i2")),
}
CASES = [(name, level) for name, d in DEFECTS.items() for level in d.levels]


@dataclass
class Scenario:
    trust: TrustStore
    leaf: bytes
    intermediates: list[bytes]
    crls: list[bytes] = field(default_factory=list)

    def validate(self, presented: list[bytes]) -> Verdict:
        return Validator(self.trust).validate([self.leaf, *presented], at=NOW, crls=self.crls)


@functools.cache
def scenario(defect: str | None = None, level: str | None = None) -> Scenario:
    """root → i1 → i2 → leaf, with ``defect`` (if any) injected at ``level``."""
    kw = DEFECTS[defect].kw() if defect and defect not in ("revoked", "missing_intermediate") else {}
    at = {level: kw} if level else {}
    root = pki.root("CN=Prop Root", **at.get("root", {}))
    i1 = root.intermediate("CN=Prop I1", **at.get("i1", {}))
    i2 = i1.intermediate("CN=Prop I2", **at.get("i2", {}))
    leaf = i2.leaf("CN=prop client", san_dns=["client.example"], **at.get("leaf", {}))
    inters = [i2, i1]
    crls: list[bytes] = []
    if defect == "revoked":
        target = {"leaf": leaf, "i2": i2, "i1": i1}[level or "leaf"]
        assert target.parent is not None
        crls = [target.parent.crl(revoked=[target])]
    if defect == "missing_intermediate":
        inters = [c for c in inters if c is not {"i1": i1, "i2": i2}[level or "i1"]]
    return Scenario(TrustStore(anchors=[root.pem]), leaf.der, [c.der for c in inters], crls)


@functools.cache
def junk() -> list[bytes]:
    """Certificates unrelated to the scenario PKI (other names, other keys) and junk bytes."""
    other = pki.root("CN=Unrelated Root")
    o1 = other.intermediate("CN=Unrelated Issuing")
    certs = [other, o1, o1.leaf(), other.leaf("CN=prop client"), pki.root("CN=Another Root"),
             o1.intermediate("CN=Unrelated Sub")]
    return [c.der for c in certs] + [b"\x30\x03\x02\x01\x00"]


def summary(v: Verdict) -> tuple[Any, ...]:
    return (v.ok, v.reason, v.position, tuple(c.der for c in v.path) if v.ok else None)


def test_the_base_chain_is_valid() -> None:
    s = scenario()
    v = s.validate(s.intermediates)
    assert v.ok, v.detail
    assert len(v.path) == 4


@pytest.mark.parametrize(("defect", "level"), CASES, ids=[f"{d}@{lv}" for d, lv in CASES])
def test_each_defect_alone(defect: str, level: str) -> None:
    s = scenario(defect, level)
    v = s.validate(s.intermediates)
    assert v.reason is DEFECTS[defect].reason, v.detail


presentations = st.tuples(
    st.lists(st.integers(min_value=0, max_value=5), max_size=4),  # duplicates (by index)
    st.lists(st.integers(min_value=0, max_value=len(junk()) - 1), max_size=6),  # junk
    st.randoms(use_true_random=False),
)


def present(s: Scenario, choice: tuple[list[int], list[int], Any]) -> list[bytes]:
    dups, extra, rnd = choice
    items = list(s.intermediates)
    if items:
        items += [s.intermediates[i % len(s.intermediates)] for i in dups]
    items += [junk()[i] for i in extra]
    rnd.shuffle(items)
    return items


@SETTINGS
@given(
    case=st.one_of(st.just((None, None)), st.sampled_from(CASES)),
    choice=presentations,
)
def test_presentation_never_changes_the_verdict(case: tuple[str | None, str | None], choice: Any) -> None:
    s = scenario(*case)
    canonical = summary(s.validate(s.intermediates))
    assert summary(s.validate(present(s, choice))) == canonical


@SETTINGS
@given(case=st.sampled_from(CASES), choice=presentations)
def test_one_injected_defect_gives_its_reason(case: tuple[str, str], choice: Any) -> None:
    defect, level = case
    s = scenario(defect, level)
    v = s.validate(present(s, choice))
    assert not v.ok and v.reason is DEFECTS[defect].reason, (case, v.detail)


@SETTINGS
@given(data=st.one_of(st.binary(max_size=2048), st.text(max_size=512)))
def test_no_bytes_make_validate_raise(data: bytes | str) -> None:
    s = scenario()
    v = Validator(s.trust).validate(data, at=NOW)
    assert not v.ok
    assert v.reason in (Reason.MALFORMED, Reason.NOT_PROVIDED, Reason.PKI_TOO_LARGE)
    assert "internal error" not in v.detail


@SETTINGS
@given(index=st.integers(min_value=0), xor=st.integers(min_value=1, max_value=255))
def test_no_one_byte_mutation_of_the_leaf_is_accepted(index: int, xor: int) -> None:
    s = scenario()
    der = bytearray(s.leaf)
    der[index % len(der)] ^= xor
    v = Validator(s.trust).validate([bytes(der), *s.intermediates], at=NOW)
    assert not v.ok
    assert "internal error" not in v.detail
