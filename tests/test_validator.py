"""Validator.validate end to end: inputs, verdicts, interop, EKU, clock, allowlist, CRLs as data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509

from mtlscore import ConfigError, Policy, Reason, TrustStore, Validator, Verdict, load_certificates, pki
from mtlscore.verify import ANY_EKU, CLIENT_AUTH, SERVER_AUTH

NOW = pki.NOW
DAY = timedelta(days=1)
SEC = timedelta(seconds=1)


def validate(anchors: list[pki.Issued], chain: Any, policy: Policy | None = None, *,
             at: Any = NOW, crls: Any = (), **kw: Any) -> Verdict:
    return Validator(TrustStore(anchors=[a.pem for a in anchors]), policy, **kw).validate(
        chain, at=at, crls=crls
    )


@pytest.fixture(scope="module")
def pki3() -> tuple[pki.Issued, pki.Issued, pki.Issued]:
    root = pki.root()
    inter = root.intermediate()
    return root, inter, inter.leaf(san_dns=["client.example"])


# -- the accepted verdict -------------------------------------------------------------


def test_accepted_verdict_carries_path_anchor_and_identity(pki3) -> None:
    root, inter, leaf = pki3
    v = validate([root], leaf.chain_pem)
    assert v.ok and v.reason is None and v.detail == ""
    assert [c.der for c in v.path] == [leaf.der, inter.der, root.der]  # leaf → anchor
    assert v.anchor is not None and v.anchor.certificate.der == root.der
    assert v.leaf is not None and v.leaf.der == leaf.der
    assert v.identity is not None and "client.example" in v.identity.subject_dn


@pytest.mark.parametrize(
    "form",
    ["pem_bytes", "pem_str", "der_list", "pem_list", "parsed", "x509_objects", "single_der"],
)
def test_every_input_form_is_accepted(form: str) -> None:
    root = pki.root()
    leaf = root.intermediate().leaf()
    chain = {
        "pem_bytes": lambda: leaf.chain_pem,
        "pem_str": lambda: leaf.chain_pem.decode(),
        "der_list": lambda: leaf.chain_der,
        "pem_list": lambda: [c.pem for c in leaf.chain],
        "parsed": lambda: load_certificates(leaf.chain_pem),
        "x509_objects": lambda: [c.cert for c in leaf.chain],
        "single_der": lambda: leaf.der,
    }[form]()
    trust = [root] if form != "single_der" else [leaf.parent]
    assert validate(trust, chain).ok


@pytest.mark.parametrize("chain", [None, [], b"", "", b"   \n", ()])
def test_nothing_presented_is_not_provided(chain: Any) -> None:
    v = validate([pki.root()], chain)
    assert v.reason is Reason.NOT_PROVIDED


@pytest.mark.parametrize(
    "chain",
    [
        b"garbage",
        b"\x30\x03\x02\x01",  # truncated DER
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        [b"\x30\x00"],
        12345,
    ],
)
def test_garbage_is_malformed_never_an_exception(chain: Any) -> None:
    v = validate([pki.root()], chain)
    assert not v.ok and v.reason is Reason.MALFORMED
    assert "internal error" not in v.detail


def test_a_junk_presented_certificate_is_ignored_with_a_note(pki3) -> None:
    root, inter, leaf = pki3
    v = validate([root], [leaf.der, b"\x30\x03junk", inter.der])
    assert v.ok
    assert any("ignored" in n for n in v.notes)


def test_size_limits_are_pki_too_large(pki3) -> None:
    root, inter, leaf = pki3
    assert validate([root], [leaf.der] * 33).reason is Reason.PKI_TOO_LARGE
    assert validate([root], leaf.chain_der, Policy(max_presented=1)).reason is Reason.PKI_TOO_LARGE
    assert validate([root], leaf.chain_der, Policy(max_cert_bytes=200)).reason is Reason.PKI_TOO_LARGE
    small = Policy(max_chain_bytes=len(leaf.der) + 10)
    assert validate([root], leaf.chain_der, small).reason is Reason.PKI_TOO_LARGE
    huge = pki.root().leaf(san_dns=[f"host{i}.example.com" for i in range(1200)])
    assert len(huge.der) > 16 * 1024
    assert validate([root], huge.der).reason is Reason.PKI_TOO_LARGE


def test_rejection_detail_names_the_certificate_and_position(pki3) -> None:
    root, inter, _ = pki3
    leaf = inter.leaf(cn="partner-abc-client", not_after=NOW - DAY)
    v = validate([root], leaf.chain_pem)
    assert v.reason is Reason.EXPIRED and v.position == 0
    assert "partner-abc-client" in v.detail and "client certificate" in v.detail
    bad_inter = root.intermediate("CN=Stale Issuing", not_after=NOW - DAY)
    v = validate([root], bad_inter.leaf().chain_pem)
    assert v.reason is Reason.EXPIRED and v.position == 1 and "Stale Issuing" in v.detail


# -- private-PKI interop (docs/reference.md#defaults) -----------------------------------------------


def test_private_pki_interop_all_at_once() -> None:
    root = pki.root(ski=False, aki=False)
    inter = root.intermediate(ski=False, aki=False, eku=None)  # CA without EKU
    leaf = inter.leaf(ski=False, aki=False, eku_critical=True)  # critical EKU, no SAN
    parsed = load_certificates(leaf.chain_pem)
    assert all(c.ski is None and c.aki is None for c in parsed)
    assert parsed[0].san is None and parsed[1].eku is None
    v = validate([root], leaf.chain_pem)
    assert v.ok, v.detail


@pytest.mark.parametrize(
    "kw",
    [{"ski": False}, {"aki": False}, {"eku_critical": True}, {"ski": False, "aki": False}],
)
def test_private_pki_interop_each(kw: dict[str, Any]) -> None:
    root = pki.root()
    assert validate([root], root.leaf(**kw).pem).ok


def test_a_non_critical_basic_constraints_ca_is_honoured() -> None:
    root = pki.root()
    inter = root.intermediate(bc_critical=False)
    assert validate([root], inter.leaf().chain_pem).ok


# -- EKU ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ca_eku", "ok"),
    [
        (None, True),
        ([CLIENT_AUTH], True),
        ([CLIENT_AUTH, SERVER_AUTH], True),
        ([ANY_EKU], True),
        ([SERVER_AUTH], False),
        (["1.3.6.1.5.5.7.3.4"], False),
    ],
)
def test_eku_chaining_on_intermediates(ca_eku: list[str] | None, ok: bool) -> None:
    root = pki.root()
    inter = root.intermediate(eku=ca_eku)
    v = validate([root], inter.leaf().chain_pem)
    assert v.ok is ok
    if not ok:
        assert v.reason is Reason.INVALID_EKU and v.position == 1


def test_eku_chaining_on_the_anchor_and_the_opt_out() -> None:
    root = pki.root(eku=[SERVER_AUTH])
    leaf = root.leaf()
    assert validate([root], leaf.pem).reason is Reason.INVALID_EKU
    assert validate([root], leaf.pem, Policy(check_ca_eku=False)).ok
    inter = pki.root().intermediate(eku=[SERVER_AUTH])
    assert validate([inter.parent], inter.leaf().chain_pem, Policy(check_ca_eku=False)).ok


def test_eku_chaining_follows_the_required_eku() -> None:
    root = pki.root()
    inter = root.intermediate(eku=[SERVER_AUTH])
    server_leaf = inter.leaf(eku=[SERVER_AUTH])
    assert validate([root], server_leaf.chain_pem, Policy(required_eku="serverAuth")).ok
    assert validate([root], server_leaf.chain_pem).reason is Reason.INVALID_EKU


@pytest.mark.parametrize(
    ("leaf_eku", "policy", "expected"),
    [
        ([CLIENT_AUTH], Policy(), None),
        ([SERVER_AUTH, CLIENT_AUTH], Policy(), None),
        ([SERVER_AUTH], Policy(), Reason.INVALID_EKU),
        ([], Policy(), Reason.MALFORMED),  # RFC 5280 §4.2.1.12: SIZE (1..MAX)
        (None, Policy(), Reason.INVALID_EKU),
        ([ANY_EKU], Policy(), Reason.INVALID_EKU),  # strict default: clientAuth itself
        (None, Policy(require_leaf_eku=False), None),  # RFC 5280: absent means any
        ([ANY_EKU], Policy(require_leaf_eku=False), None),
        ([SERVER_AUTH], Policy(require_leaf_eku=False), Reason.INVALID_EKU),
        ([SERVER_AUTH], Policy(required_eku=SERVER_AUTH), None),
        ([CLIENT_AUTH], Policy(required_eku="serverAuth"), Reason.INVALID_EKU),
        (["1.2.3.4.5"], Policy(required_eku="1.2.3.4.5"), None),
        (["1.2.3.4.5"], Policy(required_eku=None), None),
        (None, Policy(required_eku=None), None),
    ],
)
def test_leaf_eku_policy(leaf_eku: list[str] | None, policy: Policy, expected: Reason | None) -> None:
    root = pki.root()
    v = validate([root], root.leaf(eku=leaf_eku).pem, policy)
    assert v.reason is expected, v.detail


# -- clock ----------------------------------------------------------------------------


def test_validity_bounds_are_inclusive_and_second_precise() -> None:
    root = pki.root()
    nb, na = NOW - DAY, NOW + DAY
    leaf = root.leaf(not_before=nb, not_after=na)
    assert validate([root], leaf.pem, at=nb).ok
    assert validate([root], leaf.pem, at=na).ok
    assert validate([root], leaf.pem, at=na + timedelta(microseconds=999_999)).ok
    assert validate([root], leaf.pem, at=na + SEC).reason is Reason.EXPIRED
    assert validate([root], leaf.pem, at=nb - SEC).reason is Reason.NOT_YET_VALID


def test_clock_skew_tolerance() -> None:
    root = pki.root()
    early = root.leaf(not_before=NOW + timedelta(seconds=30))
    late = root.leaf(not_after=NOW - timedelta(seconds=30))
    assert validate([root], early.pem).reason is Reason.NOT_YET_VALID
    assert validate([root], late.pem).reason is Reason.EXPIRED
    skew = Policy(clock_skew=timedelta(seconds=60))
    assert validate([root], early.pem, skew).ok
    assert validate([root], late.pem, skew).ok
    assert validate([root], late.pem, Policy(clock_skew=10)).reason is Reason.EXPIRED


def test_an_expired_root_is_expired_at_the_anchor() -> None:
    root = pki.root(not_after=NOW - DAY)
    v = validate([root], root.leaf().pem)
    assert v.reason is Reason.EXPIRED and "trust anchor" in v.detail
    # The fix is on the trust configuration, not a certificate the client could renew.
    assert "trust configuration" in v.detail and "issue a new certificate" not in v.detail
    current = pki.root()
    leaf_expired = validate([current], current.leaf(not_after=NOW - DAY).pem)
    assert leaf_expired.reason is Reason.EXPIRED and "issue a new certificate" in leaf_expired.detail


# -- allowlisted certificates ---------------------------------------------------------


def _self_signed(cn: str = "CN=Self Client", **kw: Any) -> pki.Issued:
    return pki.root(cn, ca=False, eku=[CLIENT_AUTH], **kw)


def test_allowlisted_certificate_is_accepted_on_exact_match() -> None:
    me = _self_signed()
    v = Validator(TrustStore(allowlisted=[me.pem])).validate(me.pem, at=NOW)
    assert v.ok and [c.der for c in v.path] == [me.der] and v.anchor is None
    assert v.identity is not None


def test_allowlisting_is_exact_not_by_name_or_key() -> None:
    me = _self_signed()
    # Same name and key, different certificate (new serial): not the registered one.
    twin = pki.make("CN=Self Client", key=me.key, ca=False, eku=[CLIENT_AUTH])
    v = Validator(TrustStore(allowlisted=[me.pem])).validate(twin.pem, at=NOW)
    assert v.reason is Reason.NOT_ALLOWLISTED
    assert twin.der != me.der


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"not_after": NOW - DAY}, Reason.EXPIRED),
        ({"not_before": NOW + DAY}, Reason.NOT_YET_VALID),
        ({"key": "rsa-1024"}, Reason.RSA_KEY_TOO_SMALL),
        ({"key": "ed25519"}, Reason.UNSUPPORTED_KEY_ALGORITHM),
    ],
)
def test_allowlisted_certificates_still_obey_time_and_key_policy(kw: dict[str, Any], reason: Reason) -> None:
    me = _self_signed(**kw)
    v = Validator(TrustStore(allowlisted=[me.pem])).validate(me.pem, at=NOW)
    assert v.reason is reason


def test_not_allowlisted_only_when_the_store_is_allowlist_only() -> None:
    registered, stranger = _self_signed(), _self_signed("CN=Stranger")
    only = TrustStore(allowlisted=[registered.pem])
    assert Validator(only).validate(stranger.pem, at=NOW).reason is Reason.NOT_ALLOWLISTED
    root = pki.root()
    mixed = TrustStore(anchors=[root.pem], allowlisted=[registered.pem])
    assert Validator(mixed).validate(stranger.pem, at=NOW).reason is Reason.UNTRUSTED
    assert Validator(mixed).validate(registered.pem, at=NOW).ok
    assert Validator(mixed).validate(root.leaf().pem, at=NOW).ok


# -- CRLs given as data (RFC 5280 §6.3) -----------------------------------------------


@pytest.fixture(scope="module")
def crl_pki() -> tuple[pki.Issued, pki.Issued, pki.Issued]:
    root = pki.root()
    inter = root.intermediate()
    return root, inter, inter.leaf()


def test_revoked_leaf(crl_pki) -> None:
    root, inter, leaf = crl_pki
    crl = inter.crl(revoked=[(leaf, x509.ReasonFlags.key_compromise)])
    v = validate([root], leaf.chain_pem, crls=[crl])
    assert v.reason is Reason.REVOKED and v.position == 0
    assert "keyCompromise" in v.detail


def test_revoked_intermediate(crl_pki) -> None:
    root, inter, leaf = crl_pki
    v = validate([root], leaf.chain_pem, crls=[root.crl(revoked=[inter]), inter.crl()])
    assert v.reason is Reason.REVOKED and v.position == 1


def test_crl_that_does_not_list_the_certificate(crl_pki) -> None:
    root, inter, leaf = crl_pki
    other = inter.leaf()
    assert validate([root], leaf.chain_pem, crls=[inter.crl(revoked=[other])]).ok


def test_pem_crl_and_constructor_crls(crl_pki) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import load_der_x509_crl

    root, inter, leaf = crl_pki
    der = inter.crl(revoked=[leaf])
    pem = load_der_x509_crl(der).public_bytes(Encoding.PEM)
    assert validate([root], leaf.chain_pem, crls=[pem]).reason is Reason.REVOKED
    assert validate([root], leaf.chain_pem, crls=[der]).reason is Reason.REVOKED
    v = Validator(TrustStore(anchors=[root.pem]), crls=[der]).validate(leaf.chain_pem, at=NOW)
    assert v.reason is Reason.REVOKED


def test_remove_from_crl_is_not_revoked(crl_pki) -> None:
    root, inter, leaf = crl_pki
    crl = inter.crl(revoked=[(leaf, x509.ReasonFlags.remove_from_crl)])
    assert validate([root], leaf.chain_pem, crls=[crl]).ok


@pytest.mark.parametrize(
    "make_crl",
    [
        pytest.param(lambda i: i.crl(this_update=NOW - 10 * DAY, next_update=NOW - DAY), id="stale"),
        pytest.param(lambda i: i.crl(this_update=NOW + DAY, next_update=NOW + 2 * DAY), id="future"),
        pytest.param(lambda i: i.crl(signer=pki.new_key()), id="wrong-signer"),
        pytest.param(
            lambda i: i.crl(extensions=[(x509.DeltaCRLIndicator(1), True)]), id="delta-crl"
        ),
        pytest.param(
            lambda i: i.crl(
                extensions=[
                    (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.9"), b"\x05\x00"), True)
                ]
            ),
            id="unknown-critical",
        ),
    ],
)
def test_unusable_crl_is_revocation_unavailable(crl_pki, make_crl) -> None:
    root, inter, leaf = crl_pki
    v = validate([root], leaf.chain_pem, crls=[make_crl(inter)])
    assert v.reason is Reason.REVOCATION_UNAVAILABLE, v.detail


def test_crl_issuer_without_crl_sign_is_unusable() -> None:
    root = pki.root()
    inter = root.intermediate(key_usage=pki.key_usage("key_cert_sign"))
    leaf = inter.leaf()
    v = validate([root], leaf.chain_pem, crls=[inter.crl(revoked=[leaf])])
    assert v.reason is Reason.REVOCATION_UNAVAILABLE


def test_revocation_modes(crl_pki) -> None:
    root, inter, leaf = crl_pki
    revoked = inter.crl(revoked=[leaf])
    assert validate([root], leaf.chain_pem, Policy(revocation="off"), crls=[revoked]).ok
    # Soft: a certificate no CRL covers passes, with a note saying so.
    v = validate([root], leaf.chain_pem, crls=[inter.crl()])
    assert v.ok and any("not checked" in n for n in v.notes)
    # Hard: every non-anchor certificate needs a covering CRL.
    hard = Policy(revocation="hard")
    assert validate([root], leaf.chain_pem, hard).reason is Reason.REVOCATION_UNAVAILABLE
    assert validate([root], leaf.chain_pem, hard, crls=[inter.crl()]).reason is (
        Reason.REVOCATION_UNAVAILABLE
    )
    assert validate([root], leaf.chain_pem, hard, crls=[inter.crl(), root.crl()]).ok


def test_a_crl_for_another_issuer_does_not_apply(crl_pki) -> None:
    root, inter, leaf = crl_pki
    stranger = pki.root("CN=Elsewhere")
    crl = stranger.crl(revoked=[leaf.serial])  # same serial, other issuer
    assert validate([root], leaf.chain_pem, crls=[crl]).ok


def test_bad_crl_bytes(crl_pki) -> None:
    root, _, leaf = crl_pki
    assert validate([root], leaf.chain_pem, crls=[b"not a crl"]).reason is Reason.MALFORMED
    with pytest.raises(ConfigError) as exc:
        Validator(TrustStore(anchors=[root.pem]), crls=[b"not a crl"])
    assert exc.value.key == "crls[0]"


def test_revocation_is_checked_only_after_the_path_validates(crl_pki) -> None:
    root, inter, leaf = crl_pki
    # The expiry is the reason, not the (valid, covering) CRL.
    expired = inter.leaf(not_after=NOW - DAY)
    v = validate([root], expired.chain_pem, crls=[inter.crl(revoked=[expired])])
    assert v.reason is Reason.EXPIRED


# -- identity mapping hook ------------------------------------------------------------


def test_identity_map_principal_and_unmapped() -> None:
    from mtlscore.identity.identity_map import IdentityMap, Rule

    root = pki.root()
    trust = TrustStore(anchors=[root.pem])
    rules = IdentityMap([Rule.for_account("partner-abc", anchors=trust, cn="partner-abc-client")])
    validator = Validator(trust, identity_map=rules)
    v = validator.validate(root.leaf(cn="partner-abc-client").pem, at=NOW)
    assert v.ok and v.principal is not None and v.principal.id == "partner-abc"
    v = validator.validate(root.leaf(cn="someone-else").pem, at=NOW)
    assert v.reason is Reason.IDENTITY_UNMAPPED
    assert v.identity is not None  # who it was, for the log


def test_validate_does_not_depend_on_call_history(pki3) -> None:
    # Caches (parse, signatures) must not change verdicts: same input, same answer.
    root, inter, leaf = pki3
    validator = Validator(TrustStore(anchors=[root.pem]))
    first = [validator.validate(c, at=NOW).reason for c in (leaf.chain_pem, leaf.pem, leaf.chain_pem)]
    assert first == [None, Reason.UNTRUSTED, None]


# -- validate() decides a first-seen chain as the machine does --------------------------


def _by_machine(v: Validator, chain: Any) -> Verdict:
    """The sans-IO machine's verdict, every request declined as validate() declines it."""
    run = v.start(chain, at=NOW)
    event = run.next_event()
    while not isinstance(event, Verdict):
        run.decline(event, "not fetched: validate() does no I/O")
        event = run.next_event()
    return event


def _facts(v: Verdict) -> tuple[Any, ...]:
    ident = v.identity.to_dict() if v.identity is not None else None
    return (v.ok, v.reason, v.detail, v.position, tuple(c.sha256 for c in v.path),
            v.anchor.spki_sha256 if v.anchor else None, v.notes, ident)


def test_validate_searches_a_first_seen_chain_as_the_machine_does() -> None:
    # validate() searches a leaf without a known path itself when revocation can only
    # accept silently (no revocation plan); the verdict must be the machine's, accepted
    # or not, whatever the machine would have asked for.
    root = pki.root("CN=Direct Root")
    other = pki.root("CN=Direct Other Root")
    inter = root.intermediate("CN=Direct Intermediate")
    allowed = pki.root("CN=direct-allowlisted")
    lonely = inter.leaf("no-chain", ca_issuers_urls=["http://127.0.0.1:9/inter.cer"])
    registered = inter.leaf("allowlisted-and-issued")  # a path exists, but the exact match decides
    chains: list[Any] = [
        inter.leaf("ok").chain_der,
        inter.leaf("expired", not_after=NOW - timedelta(days=1)).chain_der,
        inter.leaf("server", eku=[SERVER_AUTH]).chain_der,
        other.intermediate("CN=Direct Intermediate").leaf("impostor").chain_der,  # same names, other keys
        [lonely.der],  # its issuer is missing: the machine asks for it (caIssuers), validate() declines
        [inter.leaf("junk-extra").der, b"\x30\x03\x02\x01\x00", inter.der],
        [allowed.der],
        registered.chain_der,
        [root.der],  # the anchor itself
    ]
    policies = [Policy(revocation="off"), Policy(revocation="off", fetch_issuers=True),
                Policy(revocation="soft"), Policy(revocation="off", strict_ca_profile=True)]
    for policy in policies:
        for chain in chains:
            trust = TrustStore(anchors=[root.der], allowlisted=[allowed.der, registered.der])
            direct = Validator(trust, policy).validate(chain, at=NOW)
            machine = _by_machine(Validator(trust, policy), chain)
            assert _facts(direct) == _facts(machine), (policy, chain)
