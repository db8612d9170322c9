"""CRLs (RFC 5280 §5, §6.3): signature, freshness, scope (IDP), distribution points, deltas."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlscore import Policy, Reason, TrustStore, Validator, pki
from mtlscore.revocation.crl import CRLStatus, check_certificate, parse_crl
from mtlscore.x509.cert import parse_certificate

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
    # RFC 5280 §6.3.3 (b)(2)(ii)-(iii): out of scope, so no CRL covers the certificate (not a broken one).
    users_only = root.crl(extensions=[idp(only_contains_user_certs=True)])
    st_ = status(inter, root, users_only)
    assert st_.status == "uncovered" and "end-entity" in st_.detail
    cas_only = inter.crl(extensions=[idp(only_contains_ca_certs=True)])
    assert "CA certificates" in status(inter.leaf(), inter, cas_only).detail
    # onlySomeReasons: used, covering only those reasons (§6.3.3 (d)).
    reasons = inter.crl(extensions=[idp(only_some_reasons=frozenset({x509.ReasonFlags.key_compromise}))])
    assert status(inter.leaf(), inter, reasons).status == "partial"
    # An indirect CRL from the certificate's own issuer covers it like a direct one.
    indirect = inter.crl(extensions=[idp(indirect_crl=True)])
    assert status(inter.leaf(), inter, indirect).status == "good"


def test_idp_distribution_point_must_be_the_certificates(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    leaf = inter.leaf(crl_urls=[URL])
    mine = inter.crl(extensions=[idp(full_name=[x509.UniformResourceIdentifier(URL)])])
    other = inter.crl(extensions=[idp(full_name=[x509.UniformResourceIdentifier("http://127.0.0.1:1/p2.crl")])])
    assert status(leaf, inter, mine).status == "good"
    assert status(leaf, inter, mine, url=URL).status == "good"
    st_ = status(leaf, inter, other)
    assert st_.status == "uncovered" and "distribution point" in st_.detail


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


# -- RFC 5280 §6.3.3 in full (issue 14) --------------------------------------------------

U1 = "http://127.0.0.1:1/part1.crl"
U2 = "http://127.0.0.1:1/part2.crl"
ALL = [r.value for r in x509.ReasonFlags if r.value not in ("unspecified", "removeFromCRL")]
FIRST, REST = ALL[:3], ALL[3:]


def hard(root: pki.Issued, *crls: bytes, pool: tuple[pki.Issued, ...] = (), **kw: object) -> Validator:
    """A hard-fail validator for the leaf only (intermediates' revocation is not under test)."""
    return Validator(TrustStore([root.pem], [c.pem for c in pool]),
                     Policy(revocation="hard", revocation_ca="off", **kw), crls=list(crls))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "dp_kw,idp_kw,covered",
    [
        ({"uri": U1}, {"uri": U1}, True),
        ({"uri": U1}, {"uri": U2}, False),
        # directoryName compared by RFC 5280 §7.1 rules (case, spacing), not by bytes.
        ({"dirname": "CN=Part 1,O=Example"}, {"dirname": "CN=part  1,O=EXAMPLE"}, True),
        ({"dirname": "CN=Part 1,O=Example"}, {"dirname": "CN=Part 2,O=Example"}, False),
        # nameRelativeToCRLIssuer: the issuer's DN plus the RDN, on both sides (§4.2.1.13, §5.2.5).
        ({"relative": "CN=Part 1"}, {"relative": "CN=Part 1"}, True),
        ({"relative": "CN=Part 1"}, {"relative": "CN=Part 2"}, False),
        ({"dirname": "CN=Part 1,CN=Test Intermediate CA"}, {"relative": "CN=Part 1"}, True),
        ({"relative": "CN=Part 1"}, {"dirname": "CN=Part 1,CN=Test Intermediate CA"}, True),
        ({"relative": "CN=Part 1"}, {"dirname": "CN=Part 1"}, False),
    ],
)
def test_idp_names_against_the_certificates_distribution_point(
    ca: tuple[pki.Issued, pki.Issued], dp_kw: dict[str, str], idp_kw: dict[str, str], covered: bool
) -> None:
    # RFC 5280 §6.3.3 (b)(2)(i): one IDP name must match one DP name, any GeneralName form.
    _, inter = ca
    leaf = inter.leaf(crl_dps=[pki.dp(**dp_kw)])  # type: ignore[arg-type]
    crl = inter.crl(revoked=[leaf], idp=pki.idp(**idp_kw))  # type: ignore[arg-type]
    st_ = status(leaf, inter, crl)
    if covered:
        assert st_.status == "revoked"
    else:
        assert st_.status == "uncovered" and "distribution point" in st_.detail


def test_certificate_without_dp_is_not_covered_by_a_dp_scoped_crl(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf()  # no cRLDistributionPoints
    scoped = inter.crl(idp=pki.idp(uri=U1))
    st_ = status(leaf, inter, scoped, url=U1)
    assert st_.status == "uncovered" and "names none" in st_.detail
    verdict = hard(root, scoped).validate(leaf.chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "names none" in verdict.detail
    # Soft-fail: accepted, and the note says why the CRL given did not count.
    soft = Validator(TrustStore([root.pem]), Policy(revocation_ca="off"), crls=[scoped]).validate(leaf.chain_pem, at=NOW)
    assert soft.ok and any("no CRL in scope" in n and "names none" in n for n in soft.notes)
    # The implicit distribution point is the issuer's DN: an IDP naming it covers the certificate.
    by_dn = inter.crl(revoked=[leaf], idp=pki.idp(dirname=inter.cert.subject))
    assert status(leaf, inter, by_dn).status == "revoked"


def test_implicit_dp_is_named_by_issuer_alt_name_too(ca: tuple[pki.Issued, pki.Issued]) -> None:
    # §6.3.3: without cRLDistributionPoints the DP's names are the issuer field and issuerAltName.
    _, inter = ca
    ian = (x509.IssuerAlternativeName([x509.UniformResourceIdentifier(U2)]), False)
    leaf = inter.leaf(extensions=[ian])
    assert status(leaf, inter, inter.crl(revoked=[leaf], idp=pki.idp(uri=U2))).status == "revoked"
    assert status(leaf, inter, inter.crl(revoked=[leaf], idp=pki.idp(uri=U1))).status == "uncovered"


def test_dp_with_only_a_crl_issuer_matches_idp_against_it(ca: tuple[pki.Issued, pki.Issued]) -> None:
    # §6.3.3 (b)(2)(i): a DP without a name has its IDP matched against its cRLIssuer.
    root, inter = ca
    issuer = root.intermediate("CN=CRL Issuer DP")
    leaf = inter.leaf(crl_dps=[pki.dp(crl_issuer=issuer)])
    named = issuer.crl(revoked=[pki.entry(leaf, issuer=inter)], idp=pki.idp(dirname=issuer.cert.subject, indirect=True))
    other = issuer.crl(revoked=[pki.entry(leaf, issuer=inter)], idp=pki.idp(uri=U1, indirect=True))
    assert hard(root, named, root.crl(), pool=(issuer,)).validate(leaf.chain_pem, at=NOW).reason is Reason.REVOKED
    v = hard(root, other, root.crl(), pool=(issuer,)).validate(leaf.chain_pem, at=NOW)
    assert v.reason is Reason.REVOCATION_UNAVAILABLE


def test_any_usable_crl_listing_the_serial_revokes(ca: tuple[pki.Issued, pki.Issued]) -> None:
    _, inter = ca
    leaf = inter.leaf()
    clean, listing = inter.crl(number=1), inter.crl(revoked=[leaf], number=2)
    assert status(leaf, inter, clean, listing).status == "revoked"
    assert status(leaf, inter, listing, clean).status == "revoked"
    assert status(leaf, inter, clean, inter.crl(number=3)).status == "good"


@pytest.mark.parametrize("where", ["idp", "dp"])
def test_reasons_split_across_two_crls(ca: tuple[pki.Issued, pki.Issued], where: str) -> None:
    # §6.3.3 (d), (j): onlySomeReasons (IDP) or the DP's reasons; good only once all reasons are covered.
    root, inter = ca
    if where == "idp":
        leaf = inter.leaf()
        first = inter.crl(idp=pki.idp(reasons=FIRST), number=1)
        rest_clean = inter.crl(idp=pki.idp(reasons=REST), number=2)
        rest_listing = inter.crl(revoked=[leaf], idp=pki.idp(reasons=REST), number=3)
    else:
        leaf = inter.leaf(crl_dps=[pki.dp(uri=U1, reasons=FIRST), pki.dp(uri=U2, reasons=REST)])
        first = inter.crl(idp=pki.idp(uri=U1), number=1)
        rest_clean = inter.crl(idp=pki.idp(uri=U2), number=2)
        rest_listing = inter.crl(revoked=[leaf], idp=pki.idp(uri=U2), number=3)
    assert status(leaf, inter, first, rest_clean).status == "good"
    assert status(leaf, inter, first, rest_listing).status == "revoked"
    part = status(leaf, inter, first)
    assert part.status == "partial" and REST[0] in part.detail
    assert hard(root, first, rest_clean).validate(leaf.chain_pem, at=NOW).ok
    verdict = hard(root, first).validate(leaf.chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "do not cover the reasons" in verdict.detail
    soft = Validator(TrustStore([root.pem]), Policy(revocation="soft", revocation_ca="off"), crls=[first])
    verdict = soft.validate(leaf.chain_pem, at=NOW)
    assert verdict.ok and any("do not cover the reasons" in n for n in verdict.notes)


# -- indirect CRLs (§5.2.5 indirectCRL, §5.3.3 certificateIssuer, §4.2.1.13 cRLIssuer) ---


@pytest.fixture(scope="module")
def indirect() -> tuple[pki.Issued, pki.Issued, pki.Issued, pki.Issued]:
    root = pki.root("CN=Indirect Root")
    return root, root.intermediate("CN=CA One"), root.intermediate("CN=CA Two"), root.intermediate("CN=CRL Issuer")


def test_indirect_crl_entries_and_carry_over(indirect: tuple[pki.Issued, ...]) -> None:
    root, one, two, issuer = indirect
    dps = [pki.dp(uri=U1, crl_issuer=issuer)]
    a, b, c, d = (one.leaf(f"CN={n}", crl_dps=dps) for n in "abcd")
    twin = two.leaf("CN=twin", crl_dps=[pki.dp(uri=U1, crl_issuer=issuer)], serial=d.serial)
    crl = issuer.crl(
        revoked=[
            pki.entry(d),  # before any certificateIssuer: the CRL issuer's own certificate
            pki.entry(a, issuer=one),
            pki.entry(b),  # carries "CA One" over from the previous entry
            pki.entry(twin, issuer=two),
        ],
        idp=pki.idp(uri=U1, indirect=True),
    )
    v = hard(root, crl, root.crl(), pool=(issuer,))
    assert v.validate(a.chain_pem, at=NOW).reason is Reason.REVOKED
    assert v.validate(b.chain_pem, at=NOW).reason is Reason.REVOKED
    assert v.validate(c.chain_pem, at=NOW).ok
    assert v.validate(d.chain_pem, at=NOW).ok  # its serial is listed, but under other issuers
    assert v.validate(twin.chain_pem, at=NOW).reason is Reason.REVOKED


def test_indirect_crl_needs_the_dp_to_name_its_issuer(indirect: tuple[pki.Issued, ...]) -> None:
    root, one, _, issuer = indirect
    leaf = one.leaf(crl_urls=[U1])  # a DP without cRLIssuer: only CA One's own CRLs
    crl = issuer.crl(revoked=[pki.entry(leaf, issuer=one)], idp=pki.idp(uri=U1, indirect=True))
    assert hard(root, crl, root.crl(), pool=(issuer,)).validate(leaf.chain_pem, at=NOW).reason is \
        Reason.REVOCATION_UNAVAILABLE
    # A CRL from the named cRLIssuer that is not marked indirect is not in scope either (§6.3.3 (b)(1)).
    leaf = one.leaf(crl_dps=[pki.dp(uri=U1, crl_issuer=issuer)])
    direct = issuer.crl(revoked=[pki.entry(leaf, issuer=one)], idp=pki.idp(uri=U1))
    st_ = status(leaf, one, direct)
    assert st_.status == "uncovered" and "not marked indirect" in st_.detail


def test_indirect_crl_issuer_must_be_valid_and_not_revoked(indirect: tuple[pki.Issued, ...]) -> None:
    root, one, _, issuer = indirect
    leaf = one.leaf(crl_dps=[pki.dp(uri=U1, crl_issuer=issuer)])
    crl = issuer.crl(revoked=[pki.entry(leaf, issuer=one)], idp=pki.idp(uri=U1, indirect=True))
    # The CRL issuer's certificate is not at hand: no path, no signer.
    v = hard(root, crl, root.crl())
    assert v.validate(leaf.chain_pem, at=NOW).reason is Reason.REVOCATION_UNAVAILABLE
    # The CRL issuer is revoked by the root: its CRL cannot be used.
    v = hard(root, crl, root.crl(revoked=[issuer]), pool=(issuer,))
    verdict = v.validate(leaf.chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "is revoked" in verdict.detail


def test_indirect_index_is_built_once_per_parsed_crl(indirect: tuple[pki.Issued, ...]) -> None:
    _, one, _, issuer = indirect
    leaves = [one.leaf(f"CN=n{i}") for i in range(3)]
    crl = parse_crl(issuer.crl(revoked=[pki.entry(x, issuer=one) for x in leaves], idp=pki.idp(indirect=True)))
    assert crl.entry(parse_certificate(leaves[0].der)) is not None
    scan = crl._memo["scan"]
    assert crl.entry(parse_certificate(leaves[2].der)) is not None
    assert crl.entry(parse_certificate(one.leaf("CN=not listed").der)) is None
    assert crl._memo["scan"] is scan  # the same index: not rebuilt per lookup


# -- deltas: scope (§6.3.3 (c)) -------------------------------------------------------------


def test_delta_applies_only_with_the_same_scope(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    leaf = inter.leaf(crl_urls=[U1])
    base = inter.crl(number=10, idp=pki.idp(uri=U1))
    same = inter.crl(revoked=[leaf], number=11, delta_of=10, idp=pki.idp(uri=U1))
    assert status(leaf, inter, base, same).status == "revoked"
    for other in (
        inter.crl(revoked=[leaf], number=11, delta_of=10),  # no IDP over a scoped base
        inter.crl(revoked=[leaf], number=11, delta_of=10, idp=pki.idp(uri=U2)),
        inter.crl(revoked=[leaf], number=11, delta_of=10, idp=pki.idp(uri=U1, users=True)),
    ):
        assert status(leaf, inter, base, other).status == "good"
    # The delta must come from the base's issuer and be signed by the base's key.
    stranger = root.intermediate("CN=Test Intermediate CA")  # same name, other key
    forged = stranger.crl(revoked=[leaf], number=11, delta_of=10, idp=pki.idp(uri=U1))
    assert status(leaf, inter, base, forged).status == "good"


def test_delta_over_base_signed_by_a_separate_key(ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, inter = ca
    signer = inter.crl_signer()
    leaf = inter.leaf()
    base = inter.crl(number=5, signer=signer)
    d = inter.crl(revoked=[leaf], number=6, delta_of=5, signer=signer)
    assert hard(root, base, root.crl(), pool=(signer,)).validate(leaf.chain_pem, at=NOW).ok
    assert hard(root, base, d, root.crl(), pool=(signer,)).validate(leaf.chain_pem, at=NOW).reason is Reason.REVOKED
    # A delta signed by the CA's own key over a base signed by the CRL key: another key, not applied (§6.3.3 (h)).
    d_other_key = inter.crl(revoked=[leaf], number=6, delta_of=5)
    assert hard(root, base, d_other_key, root.crl(), pool=(signer,)).validate(leaf.chain_pem, at=NOW).ok


def test_crl_signature_with_unused_bits_is_refused(ca: tuple[pki.Issued, pki.Issued]) -> None:
    # RFC 5280 §5.1.1.3, as for certificates (x509/cert.py): same signature, another encoding.
    _, inter = ca
    with pytest.raises(ValueError, match="unused bits"):
        parse_crl(inter.crl(unused_bits=True))
    parse_crl(inter.crl())


def test_direct_crl_serial_index_answers_like_the_scan(ca: tuple[pki.Issued, pki.Issued]) -> None:
    # The serials are indexed in one pass on first use (cryptography scans); answers stay the same.
    _, inter = ca
    listed, clean = inter.leaf("CN=listed"), inter.leaf("CN=clean")
    crl = parse_crl(inter.crl(revoked=[listed, *range(1, 200)]))
    got = [(crl.entry(parse_certificate(listed.der)) is not None, crl.entry(parse_certificate(clean.der)))
           for _ in range(4)]
    assert got == [(True, None)] * 4
    serials = crl._memo["scan"][1]
    assert listed.serial in serials and clean.serial not in serials


def _with_critical_entry(inter: pki.Issued, *listed: pki.Issued, number: int = 1, delta_of: int | None = None) -> bytes:
    # An entry for another serial carries a critical extension mtlscore does not process.
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.7"), b"\x05\x00")
    other = (x509.RevokedCertificateBuilder().serial_number(12345).revocation_date(NOW - timedelta(hours=2))
             .add_extension(unknown, critical=True).build())
    b = (x509.CertificateRevocationListBuilder().issuer_name(inter.cert.subject)
         .last_update(NOW - timedelta(hours=1)).next_update(NOW + timedelta(days=1))
         .add_extension(x509.CRLNumber(number), critical=False).add_revoked_certificate(other))
    if delta_of is not None:
        b = b.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
    for leaf in listed:
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(leaf.serial)
                                      .revocation_date(NOW - timedelta(hours=2)).build())
    return b.sign(inter.key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_critical_entry_extension_on_any_entry_makes_the_crl_unusable(ca: tuple[pki.Issued, pki.Issued]) -> None:
    # RFC 5280 §5.3: such a CRL is not used for ANY certificate (crldiff finding F-11:35).
    root, inter = ca
    leaf = inter.leaf("CN=bystander")
    st_ = status(leaf, inter, _with_critical_entry(inter))
    assert st_.status == "unavailable" and "55555.7" in st_.detail and "§5.3" in st_.detail
    assert hard(root, _with_critical_entry(inter)).validate(leaf.chain_pem, at=NOW).reason is \
        Reason.REVOCATION_UNAVAILABLE
    # Listed on it: not "revoked" from a CRL that must not be used.
    assert status(leaf, inter, _with_critical_entry(inter, leaf)).status == "unavailable"
    # Beside a clean usable CRL: the clean one answers.
    assert status(leaf, inter, _with_critical_entry(inter, leaf), inter.crl(number=2)).status == "good"
    # In a delta: the delta is not applied (a plain one listing the certificate would be).
    base = inter.crl(number=7)
    assert status(leaf, inter, base, inter.crl(revoked=[leaf], number=8, delta_of=7)).status == "revoked"
    assert status(leaf, inter, base, _with_critical_entry(inter, leaf, number=8, delta_of=7)).status == "good"


def test_stale_complete_crl_with_a_current_delta(ca: tuple[pki.Issued, pki.Issued]) -> None:
    # §6.3.3 (a)(1)(i): past its nextUpdate, a complete CRL that announces deltas (FreshestCRL on it or
    # on the certificate) is used with a current delta over it (crldiff finding F-11:45).
    _, inter = ca
    leaf = inter.leaf()
    old = {"this_update": NOW - timedelta(days=3), "next_update": NOW - timedelta(days=1)}
    base = inter.crl(number=40, freshest=[U2], **old)  # type: ignore[arg-type]
    clean, listing = inter.crl(number=45, delta_of=40), inter.crl(revoked=[leaf], number=45, delta_of=40)
    good = status(leaf, inter, base, clean)
    assert good.status == "good" and good.next_update == parse_crl(clean).next_update
    assert status(leaf, inter, base, listing).status == "revoked"
    st_ = status(leaf, inter, base)
    assert st_.status == "unavailable" and "stale" in st_.detail and "no current delta" in st_.detail
    # A stale delta does not revive it; nor does a delta when nobody announced deltas.
    stale_delta = inter.crl(number=45, delta_of=40, **old)  # type: ignore[arg-type]
    assert status(leaf, inter, base, stale_delta).status == "unavailable"
    unannounced = inter.crl(number=40, **old)  # type: ignore[arg-type]
    assert status(leaf, inter, unannounced, clean).status == "unavailable"
    assert status(inter.leaf(freshest=[U2]), inter, unannounced, clean).status == "good"  # announced by the certificate
