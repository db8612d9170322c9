"""Every Reason (docs/reference.md#reason-codes) is reached by a scenario through a public API.

``SCENARIOS`` maps each Reason to a builder that constructs the situation in a
line or two with the PKI factory and returns the reason the API produced. The
parametrisation runs over ``Reason`` itself, so adding a member without a
scenario fails here.
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from mtlscore import Policy, Reason, TrustStore, Validator, Verdict, pki
from mtlscore.reasons import CertificateRejected, ConfigError, MtlsError
from mtlscore.verify.path import build_path
from mtlscore.verify.policy import SERVER_AUTH
from mtlscore.x509 import parse_certificate

NOW = pki.NOW
DAY = timedelta(days=1)


def _verdict(anchors: list[Any], chain: Any, policy: Policy | None = None, *,
             crls: list[bytes] = (), trust: TrustStore | None = None, **kw: Any) -> Verdict:
    store = trust if trust is not None else TrustStore(anchors=[a.pem for a in anchors])
    return Validator(store, policy, **kw).validate(chain, at=NOW, crls=crls)


def _reject(anchors: list[Any], chain: Any, policy: Policy | None = None, **kw: Any) -> Reason | None:
    v = _verdict(anchors, chain, policy, **kw)
    assert not v.ok
    assert v.detail, "a rejection must explain itself"
    return v.reason


class _PublicOnly:
    """Stands in for a private key whose public half is all a certificate needs."""

    def __init__(self, public: Any) -> None:
        self._public = public

    def public_key(self) -> Any:
        return self._public


def huge_rsa_key(bits: int = 8200) -> _PublicOnly:
    """An RSA public key of ``bits`` bits without generating primes (seconds → microseconds)."""
    n = secrets.randbits(bits) | (1 << (bits - 1)) | 1
    return _PublicOnly(rsa.RSAPublicNumbers(65537, n).public_key())


def _mesh(keys: int) -> tuple[pki.Issued, list[pki.Issued]]:
    """Same-subject CAs with distinct keys, each cross-signed by every other: n! paths, no anchor."""
    holders = [pki.root("Mesh CA") for _ in range(keys)]
    certs = [pki.make("Mesh CA", issuer=signer, key=h.key, ca=True) for h in holders for signer in holders]
    return holders[0].leaf(), certs


# -- scenarios: each returns the Reason the public API produced ---------------------


def s_not_provided() -> Reason | None:
    return _reject([pki.root()], None)


def s_malformed() -> Reason | None:
    return _reject([pki.root()], b"\x30\x82\x01\x00 truncated DER")


def s_expired() -> Reason | None:
    r = pki.root()
    return _reject([r], r.leaf(not_after=NOW - DAY).pem)


def s_not_yet_valid() -> Reason | None:
    r = pki.root()
    return _reject([r], r.leaf(not_before=NOW + DAY).pem)


def s_untrusted() -> Reason | None:
    return _reject([pki.root()], pki.root("Other Root").leaf().pem)


def s_bad_signature() -> Reason | None:
    r = pki.root()
    return _reject([r], r.leaf(signer=pki.new_key()).pem)


def s_issuer_not_ca() -> Reason | None:
    r = pki.root()
    i = r.intermediate(ca=False, key_usage=pki.key_usage("key_cert_sign"))
    return _reject([r], [i.leaf().pem, i.pem])


def s_path_length_exceeded() -> Reason | None:
    r = pki.root(path_length=0)
    i = r.intermediate()
    return _reject([r], [i.leaf().pem, i.pem])


def s_issuer_key_usage() -> Reason | None:
    r = pki.root()
    i = r.intermediate(key_usage=pki.key_usage("crl_sign"))
    return _reject([r], [i.leaf().pem, i.pem])


def s_leaf_key_usage() -> Reason | None:
    r = pki.root()
    return _reject([r], r.leaf(key_usage=pki.key_usage("key_encipherment")).pem)


def s_invalid_eku() -> Reason | None:
    r = pki.root()
    return _reject([r], r.leaf(eku=[SERVER_AUTH]).pem)


def s_rsa_key_too_small() -> Reason | None:
    r = pki.root()
    return _reject([r], r.leaf(key="rsa-1024").pem)


def s_rsa_key_too_large() -> Reason | None:
    r = pki.root()
    return _reject([r], r.leaf(key=huge_rsa_key(8200)).pem)


def s_unsupported_curve() -> Reason | None:
    r = pki.root()
    return _reject([r], r.leaf(key="ec-k256").pem)


def s_unsupported_key_algorithm() -> Reason | None:
    r = pki.root()
    return _reject([r], r.leaf(key="ed25519").pem)


def s_weak_signature_algorithm() -> Reason | None:
    r = pki.root()
    return _reject([r], r.leaf(hash_alg="sha224").pem)


def s_unhandled_critical_extension() -> Reason | None:
    r = pki.root()
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    return _reject([r], r.leaf(extensions=[(ext, True)]).pem)


def s_name_constraints_violation() -> Reason | None:
    r = pki.root(permitted=[x509.DNSName("partner.example")])
    return _reject([r], r.leaf(san_dns=["evil.example"]).pem)


def s_no_valid_policy() -> Reason | None:
    r = pki.root()
    policy = Policy(certificate_policies=["1.3.6.1.4.1.55555.9.1"])
    return _reject([r], r.leaf().pem, policy)


def s_chain_too_long() -> Reason | None:
    r = pki.root()
    node = r
    for n in range(11):
        node = node.intermediate(f"Intermediate {n}")
    return _reject([r], node.leaf().chain_pem)


def s_pki_too_large() -> Reason | None:
    r = pki.root()
    leaf = r.leaf()
    return _reject([r], [leaf.der] * (Policy().max_presented + 1))


def s_search_limit_exceeded() -> Reason | None:
    leaf, mesh = _mesh(keys=6)
    trust = TrustStore(anchors=[pki.root().pem], intermediates=[c.pem for c in mesh])
    policy = Policy(max_path_work=200)
    # The budget, not the clock, stops the search: the work counter is exact.
    result = build_path(parse_certificate(leaf.der), [], trust, policy, at=NOW)
    assert result.work == policy.max_path_work + 1
    return _reject([], leaf.pem, policy, trust=trust)


def s_revoked() -> Reason | None:
    r = pki.root()
    leaf = r.leaf()
    return _reject([r], leaf.pem, crls=[r.crl(revoked=[leaf])])


def s_revocation_unavailable() -> Reason | None:
    r = pki.root()
    stale = r.crl(this_update=NOW - 10 * DAY, next_update=NOW - DAY)
    return _reject([r], r.leaf().pem, crls=[stale])


def s_not_allowlisted() -> Reason | None:
    registered = pki.root("Registered Client", ca=False, eku=[pki.CLIENT_AUTH])
    other = pki.root("Other Client", ca=False, eku=[pki.CLIENT_AUTH])
    return _reject([], other.pem, trust=TrustStore(allowlisted=[registered.pem]))


def s_identity_unmapped() -> Reason | None:
    from mtlscore.identity.identity_map import IdentityMap, Rule

    r = pki.root()
    trust = TrustStore(anchors=[r.pem])
    rules = IdentityMap([Rule.for_account("partner-abc", anchors=trust, cn="partner-abc-client")])
    return _reject([], r.leaf(cn="someone-else").pem, trust=trust, identity_map=rules)


def s_binding_mismatch() -> Reason | None:
    from mtlscore.identity.binding import check_cnf  # type: ignore[import-not-found]
    from mtlscore.x509.cert import load_certificates

    cert = load_certificates(pki.root().leaf().pem)[0]
    other = load_certificates(pki.root().leaf().pem)[0]
    with pytest.raises(CertificateRejected) as exc:
        check_cnf({"cnf": {"x5t#S256": other.x5t_s256}}, cert)
    return exc.value.reason


def s_untrusted_proxy() -> Reason | None:
    from mtlscore.proxy.trusted import ProxyPolicy, Reject, TrustedProxy

    leaf = pki.root().leaf()
    policy = ProxyPolicy(proxies=(TrustedProxy(name="lb", networks=("10.0.0.0/8",)),))
    decision = policy.decide(
        peer=("127.0.0.1", 50000), headers=[(b"client-cert", b":" + leaf.der.hex().encode() + b":")]
    )
    assert isinstance(decision, Reject)
    return decision.reason


SCENARIOS: dict[Reason, Callable[[], Reason | None]] = {
    Reason.NOT_PROVIDED: s_not_provided,
    Reason.MALFORMED: s_malformed,
    Reason.EXPIRED: s_expired,
    Reason.NOT_YET_VALID: s_not_yet_valid,
    Reason.UNTRUSTED: s_untrusted,
    Reason.BAD_SIGNATURE: s_bad_signature,
    Reason.ISSUER_NOT_CA: s_issuer_not_ca,
    Reason.PATH_LENGTH_EXCEEDED: s_path_length_exceeded,
    Reason.ISSUER_KEY_USAGE: s_issuer_key_usage,
    Reason.LEAF_KEY_USAGE: s_leaf_key_usage,
    Reason.INVALID_EKU: s_invalid_eku,
    Reason.RSA_KEY_TOO_SMALL: s_rsa_key_too_small,
    Reason.RSA_KEY_TOO_LARGE: s_rsa_key_too_large,
    Reason.UNSUPPORTED_CURVE: s_unsupported_curve,
    Reason.UNSUPPORTED_KEY_ALGORITHM: s_unsupported_key_algorithm,
    Reason.WEAK_SIGNATURE_ALGORITHM: s_weak_signature_algorithm,
    Reason.UNHANDLED_CRITICAL_EXTENSION: s_unhandled_critical_extension,
    Reason.NAME_CONSTRAINTS_VIOLATION: s_name_constraints_violation,
    Reason.NO_VALID_POLICY: s_no_valid_policy,
    Reason.CHAIN_TOO_LONG: s_chain_too_long,
    Reason.PKI_TOO_LARGE: s_pki_too_large,
    Reason.SEARCH_LIMIT_EXCEEDED: s_search_limit_exceeded,
    Reason.REVOKED: s_revoked,
    Reason.REVOCATION_UNAVAILABLE: s_revocation_unavailable,
    Reason.NOT_ALLOWLISTED: s_not_allowlisted,
    Reason.IDENTITY_UNMAPPED: s_identity_unmapped,
    Reason.BINDING_MISMATCH: s_binding_mismatch,
    Reason.UNTRUSTED_PROXY: s_untrusted_proxy,
}

# Scenarios whose producing module is another helper's and may not exist yet.
_NEEDS_MODULE = {
    Reason.IDENTITY_UNMAPPED: "mtlscore.identity.identity_map",
    Reason.BINDING_MISMATCH: "mtlscore.identity.binding",
    Reason.UNTRUSTED_PROXY: "mtlscore.proxy.trusted",
}


def _param(reason: Reason) -> Any:
    module = _NEEDS_MODULE.get(reason)
    if module is not None and importlib.util.find_spec(module) is None:
        return pytest.param(reason, marks=pytest.mark.skip(reason=f"{module} does not exist yet"),
                            id=reason.value)
    return pytest.param(reason, id=reason.value)


@pytest.mark.parametrize("reason", [_param(r) for r in Reason])
def test_every_reason_is_reached(reason: Reason) -> None:
    scenario = SCENARIOS.get(reason)
    assert scenario is not None, f"Reason.{reason.name} has no scenario in tests/test_reasons.py"
    assert scenario() is reason


def test_scenarios_cover_exactly_the_reasons() -> None:
    assert set(SCENARIOS) == set(Reason)


def test_reason_values_are_stable_strings() -> None:
    # docs/reference.md#reason-codes: the value is the code; the name is its upper-case spelling.
    for r in Reason:
        assert r.value == r.name.lower()
        assert str(r) == r.value
    assert Reason("invalid_eku") is Reason.INVALID_EKU


def test_certificate_rejected_carries_reason_and_detail() -> None:
    exc = CertificateRejected(Reason.EXPIRED, "leaf expired")
    assert isinstance(exc, MtlsError)
    assert (exc.reason, exc.detail) == (Reason.EXPIRED, "leaf expired")
    assert str(exc) == "expired: leaf expired"
    assert str(CertificateRejected(Reason.UNTRUSTED)) == "untrusted"


def test_config_error_names_the_key() -> None:
    exc = ConfigError("must be positive", key="min_rsa_bits")
    assert isinstance(exc, MtlsError) and not isinstance(exc, CertificateRejected)
    assert exc.key == "min_rsa_bits" and str(exc) == "min_rsa_bits: must be positive"


def test_verdict_raise_for_reason() -> None:
    r = pki.root()
    ok = _verdict([r], r.leaf().pem)
    assert ok.raise_for_reason() is ok and bool(ok)
    bad = _verdict([r], r.leaf(eku=[SERVER_AUTH]).pem)
    assert not bad
    with pytest.raises(CertificateRejected) as exc:
        bad.raise_for_reason()
    assert exc.value.reason is Reason.INVALID_EKU
