"""CRLs (RFC 5280 §5, §6.3): signature, freshness, scope (IDP), distribution points, deltas."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlscore import Policy, Reason, TrustStore, Validator, pki
from mtlscore._cert import parse_certificate
from mtlscore._crl import CRLStatus, check_certificate, parse_crl

NOW = pki.NOW
URL = "http://127.0.0.1:1/inter.crl"


@pytest.fixture(scope="module")
def ca() -> tuple[pki.Issued, pki.Issued]:
    root = pki.root()
    return root, root.intermediate()


def status(leaf: pki.Issued, issuer: pki.Issued, *crls: bytes, url: str | None = None, **kw: object) -> CRLStatus:
    return check_certificate(parse_certificate(leaf.der), parse_certificate(issuer.der), [parse_crl(c) for c in crls],
                             at=kw.pop("at", NOW), url=url, **kw)  # type: ignore[arg-type]


def idp(**kw: object) -> tuple[x509.ExtensionType, bool]:
    args: dict[str, object] = {
        "full_name": None, "relative_name": None, "only_contains_user_certs": False,
        "only_contains_ca_certs": False, "only_some_reasons": None, "indirect_crl": False,
        "only_contains_attribute_certs": False,
    }
    args.update(kw)
    return x509.IssuingDistributionPoint(**args), True  # type: ignore[arg-type]


def delta(base: int) -> tuple[x509.ExtensionType, bool]:
    return x509.DeltaCRLIndicator(base), True


# -- basics ----------------------------------------------------------------------------


def test_good_revoked_and_uncovered(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf, bad = inter.leaf(), inter.leaf("CN=bad")
    crl = inter.crl(revoked=[(bad, x509.ReasonFlags.key_compromise)])
    assert status(leaf, inter, crl).status == "good"
    st_ = status(bad, inter, crl)
    assert st_.status == "revoked" and "keyCompromise" in st_.detail
    assert status(leaf, inter, root.crl()).status == "uncovered"


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"this_update": NOW + timedelta(hours=1), "next_update": NOW + timedelta(days=1)}, "not valid until"),
        ({"this_update": NOW - timedelta(days=2), "next_update": NOW - timedelta(days=1)}, "stale"),
        ({"signer": pki.new_key("ec")}, "signature does not verify"),
    ],
)
def test_unusable_crls(ca: tuple[pki.Issued, pki.Issued], kw: dict[str, object], needle: str) -> None:
    _, inter = ca
    st_ = status(inter.leaf(), inter, inter.crl(**kw))  # type: ignore[arg-type]
    assert st_.status == "unavailable" and needle in st_.detail


def test_issuer_without_crl_sign(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, _ = ca
    inter = root.intermediate("CN=No CRL Sign", key_usage=pki.key_usage("key_cert_sign"))
    st_ = status(inter.leaf(), inter, inter.crl())
    assert st_.status == "unavailable" and "cRLSign" in st_.detail


def test_revoked_intermediate_rejects_the_chain(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    v = Validator(TrustStore([root.pem]), Policy(), crls=[root.crl(revoked=[inter]), inter.crl()])
    verdict = v.validate(inter.leaf().chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOKED and verdict.position == 1


def test_remove_from_crl_is_not_revoked(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    leaf = inter.leaf()
    assert status(leaf, inter, inter.crl(revoked=[(leaf, x509.ReasonFlags.remove_from_crl)])).status == "good"


# -- issuingDistributionPoint and distribution points ------------------------------------


def test_idp_scope(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    users_only = root.crl(extensions=[idp(only_contains_user_certs=True)])
    st_ = status(inter, root, users_only)
    assert st_.status == "unavailable" and "end-entity" in st_.detail
    cas_only = inter.crl(extensions=[idp(only_contains_ca_certs=True)])
    assert "CA certificates" in status(inter.leaf(), inter, cas_only).detail
    reasons = inter.crl(extensions=[idp(only_some_reasons=frozenset({x509.ReasonFlags.key_compromise}))])
    assert "some revocation reasons" in status(inter.leaf(), inter, reasons).detail
    indirect = inter.crl(extensions=[idp(indirect_crl=True)])
    assert "indirect" in status(inter.leaf(), inter, indirect).detail


def test_idp_distribution_point_must_be_the_certificates(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    leaf = inter.leaf(crl_urls=[URL])
    mine = inter.crl(extensions=[idp(full_name=[x509.UniformResourceIdentifier(URL)])])
    other = inter.crl(extensions=[idp(full_name=[x509.UniformResourceIdentifier("http://127.0.0.1:1/p2.crl")])])
    assert status(leaf, inter, mine).status == "good"
    st_ = status(leaf, inter, other)
    assert st_.status == "unavailable" and "distribution point" in st_.detail
    # A certificate without a CRL DP, checked against a CRL fetched from the IDP's URL.
    plain = inter.leaf()
    assert status(plain, inter, mine, url=URL).status == "good"
    assert status(plain, inter, other, url=URL).status == "unavailable"


# -- delta CRLs (RFC 5280 §5.2.4) --------------------------------------------------------


def test_delta_revokes_what_the_base_does_not_list(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    leaf = inter.leaf()
    base = inter.crl(number=10)
    d = inter.crl(revoked=[leaf], number=11, extensions=[delta(10)])
    assert status(leaf, inter, base).status == "good"
    st_ = status(leaf, inter, base, d)
    assert st_.status == "revoked" and "delta CRL #11" in st_.detail


def test_delta_for_a_newer_base_is_not_applied(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    leaf = inter.leaf()
    base = inter.crl(number=10)
    d = inter.crl(revoked=[leaf], number=13, extensions=[delta(12)])  # needs base ≥ 12
    assert status(leaf, inter, base, d).status == "good"


def test_delta_alone_is_not_an_answer(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    st_ = status(inter.leaf(), inter, inter.crl(number=11, extensions=[delta(10)]))
    assert st_.status == "unavailable" and "without its base" in st_.detail


def test_delta_takes_a_certificate_off_hold(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    leaf = inter.leaf()
    base = inter.crl(revoked=[(leaf, x509.ReasonFlags.certificate_hold)], number=20)
    d = inter.crl(revoked=[(leaf, x509.ReasonFlags.remove_from_crl)], number=21, extensions=[delta(20)])
    assert status(leaf, inter, base).status == "revoked"
    assert status(leaf, inter, base, d).status == "good"


def test_stale_delta_is_ignored_base_still_answers(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    leaf = inter.leaf()
    base = inter.crl(number=10)
    d = inter.crl(revoked=[leaf], number=11, extensions=[delta(10)],
                  this_update=NOW - timedelta(days=3), next_update=NOW - timedelta(days=2))
    assert status(leaf, inter, base, d).status == "good"


def test_non_critical_delta_indicator_is_refused(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    d = parse_crl(inter.crl(number=11, extensions=[(x509.DeltaCRLIndicator(10), False)]))
    assert d.problem is not None and "DeltaCRLIndicator" in d.problem


# -- robustness ------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300))
def test_parse_crl_raises_only_value_error(data: bytes) -> None:
    try:
        parse_crl(data)
    except ValueError:
        pass


def test_given_crl_that_cannot_be_used_rejects_even_in_soft_mode(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    stale = inter.crl(this_update=NOW - timedelta(days=3), next_update=NOW - timedelta(days=2))
    v = Validator(TrustStore([root.pem]), Policy(revocation="soft"), crls=[stale])
    assert v.validate(inter.leaf().chain_pem, at=NOW).reason is Reason.REVOCATION_UNAVAILABLE
