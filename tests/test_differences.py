"""The edges of RFC 5280 where validators differ (docs/differences.md), each on both sides.

Every deliberate difference from OpenSSL or pyca that docs/differences.md
describes is pinned here: what mtlscore accepts and what it refuses around it.
"""

from __future__ import annotations

import pytest
from cryptography import x509

from mtlscore import Reason, TrustStore, Validator, pki

NOW = pki.NOW


def validate(anchor: pki.Issued, leaf: pki.Issued, *presented: pki.Issued, **kw: object):  # type: ignore[no-untyped-def]
    return Validator(TrustStore(anchors=[anchor.pem]), **kw).validate(  # type: ignore[arg-type]
        [leaf.der, *(c.der for c in presented)], at=NOW
    )


@pytest.fixture(scope="module")
def root() -> pki.Issued:
    return pki.root("CN=Differences Root")


# -- serial numbers: RFC 5280 §4.1.2.2 ----------------------------------------------------------


def _serial_content_octets(cert: pki.Issued) -> int:
    tbs = cert.cert.tbs_certificate_bytes
    # tbsCertificate: SEQUENCE (long form, 2 length octets), [0] version (5 octets), then the INTEGER.
    assert tbs[0] == 0x30 and tbs[1] == 0x82 and tbs[4:9] == bytes.fromhex("a003020102") and tbs[9] == 0x02
    return tbs[10]


@pytest.mark.parametrize("serial", [1, 2**159 - 1, 2**159, 2**159 + 12345, 2**160 - 1])
def test_serials_up_to_20_octets_are_accepted(root: pki.Issued, serial: int) -> None:
    # "Users MUST be able to handle serialNumber values up to 20 octets": a 20-octet
    # value with the top bit set is 21 content octets of DER (a leading zero).
    leaf = root.leaf("CN=serial client", serial=serial)
    assert leaf.serial == serial
    if serial >= 2**159:
        assert _serial_content_octets(leaf) == 21
    v = validate(root, leaf)
    assert v.ok, v.detail


@pytest.mark.parametrize(
    ("serial", "words"),
    [(2**160, "longer than 20 octets"), (2**168 + 1, "longer than 20 octets"), (0, "not a positive"),
     (-1, "not a positive")],
)
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_serials_over_20_octets_and_non_positive_ones_are_malformed(root: pki.Issued, serial: int, words: str) -> None:
    leaf = root.leaf("CN=serial client", serial=serial)
    v = validate(root, leaf)
    assert v.reason is Reason.MALFORMED and words in v.detail and "§4.1.2.2" in v.detail


def test_a_ca_with_a_21_octet_encoded_serial_issues(root: pki.Issued) -> None:
    inter = root.intermediate("CN=Wide Serial CA", serial=2**160 - 7)
    assert validate(root, inter.leaf("CN=client"), inter).ok


# -- a v3 trust anchor without basicConstraints: RFC 5280 §6.1.1, RFC 5937 -----------------------


@pytest.mark.parametrize("ku", [("key_cert_sign", "crl_sign"), None])
def test_a_v3_anchor_without_basic_constraints_is_refused_in_plain_words(ku: tuple[str, ...] | None) -> None:
    # ca=None: no basicConstraints at all; keyUsage keyCertSign+cRLSign or none.
    # OpenSSL accepts the first (keyCertSign makes it a CA there); pyca and limbo refuse both.
    anchor = pki.make("CN=Anchor Without BC", ca=None, key_usage=pki.key_usage(*ku) if ku else None)
    assert anchor.cert.version is x509.Version.v3
    v = validate(anchor, anchor.leaf("CN=client"))
    assert v.reason is Reason.ISSUER_NOT_CA and v.position == 1
    assert "has no basicConstraints" in v.detail and "§4.2.1.9" in v.detail
    # The same key and name as a CA certificate is a fine anchor.
    ca = pki.make("CN=Anchor Without BC", key=anchor.key, ca=True)
    assert validate(ca, anchor.leaf("CN=client")).ok


def test_an_anchor_that_says_it_is_not_a_ca_cannot_issue() -> None:
    anchor = pki.make("CN=Not A CA", ca=False, key_usage=pki.key_usage("key_cert_sign"))
    v = validate(anchor, anchor.leaf("CN=client"))
    assert v.reason is Reason.ISSUER_NOT_CA and "cA=FALSE" in v.detail


# -- a leaf with cA=FALSE and a pathLenConstraint: RFC 5280 §4.2.1.9 -----------------------------

_BC_OID = x509.ObjectIdentifier("2.5.29.19")


def _leaf_with_raw_basic_constraints(root: pki.Issued, value: bytes) -> pki.Issued:
    # cryptography's builder refuses pathLenConstraint with cA=FALSE: the DER is written here.
    return root.leaf("CN=client", ca=None, extensions=[(x509.UnrecognizedExtension(_BC_OID, value), True)])


@pytest.mark.parametrize(("value", "length"), [("3003020100", 0), ("3003020107", 7)])
def test_a_leaf_with_ca_false_and_a_path_length_is_refused_in_plain_words(
    root: pki.Issued, value: str, length: int
) -> None:
    # OpenSSL accepts it (without -x509_strict); pyca and OpenSSL -x509_strict refuse it.
    # cryptography cannot read the certificate's extensions at all, so nothing else of it
    # could be checked: it stays malformed, with the reason in words instead of the parser's.
    v = validate(root, _leaf_with_raw_basic_constraints(root, bytes.fromhex(value)))
    assert v.reason is Reason.MALFORMED
    assert f"cA=FALSE with pathLenConstraint={length}" in v.detail and "§4.2.1.9" in v.detail
    assert "must be None" not in v.detail


def test_a_leaf_with_ca_true_and_a_path_length_is_fine(root: pki.Issued) -> None:
    # The same extension with cA=TRUE is well formed (RFC 5280 allows a CA certificate as a client).
    assert validate(root, _leaf_with_raw_basic_constraints(root, bytes.fromhex("30060101ff020100"))).ok


# -- a leaf's CN and DNS name constraints (OpenSSL's rule; RFC 5280 §4.2.1.10 covers SANs only) ---

def _federation() -> tuple[pki.Issued, pki.Issued, TrustStore]:
    # One shared root; a partner CA constrained to its own domain.
    fed = pki.root("CN=Federation Root")
    partner = fed.intermediate("CN=Partner Y CA", permitted=[x509.DNSName("partner-y.example")])
    return fed, partner, TrustStore(anchors=[fed.pem])


def _bank_map(trust: TrustStore):  # type: ignore[no-untyped-def]
    from mtlscore import IdentityMap, Rule

    return IdentityMap([Rule.for_account("bank", anchors=trust.anchors, cn="bank.test")])


def test_a_constrained_ca_cannot_mint_a_cn_outside_its_dns_constraint() -> None:
    fed, partner, trust = _federation()
    forged = partner.leaf("CN=bank.test")  # no SAN: the CN is the only name
    v = Validator(trust, identity_map=_bank_map(trust)).validate([forged.der, partner.der], at=NOW)
    assert v.reason is Reason.NAME_CONSTRAINTS_VIOLATION and v.position == 0
    assert "commonName 'bank.test'" in v.detail and "partner-y.example" in v.detail
    # An excluded subtree catches it as well.
    excluding = fed.intermediate("CN=Partner Z CA", excluded=[x509.DNSName("bank.test")])
    v = Validator(trust).validate([excluding.leaf("CN=api.bank.test").der, excluding.der], at=NOW)
    assert v.reason is Reason.NAME_CONSTRAINTS_VIOLATION and "excluded" in v.detail


def test_the_cn_rule_still_maps_what_it_should() -> None:
    fed, partner, trust = _federation()
    accounts = _bank_map(trust)
    # Without a DNS constraint on the path, the CN is an identity like any other.
    bank = fed.intermediate("CN=Bank CA").leaf("CN=bank.test")
    v = Validator(trust, identity_map=accounts).validate([bank.der, bank.parent.der], at=NOW)  # type: ignore[union-attr]
    assert v.ok and v.principal is not None and v.principal.id == "bank"
    # Inside the constraint: accepted.
    assert Validator(trust).validate([partner.leaf("CN=api.partner-y.example").der, partner.der], at=NOW).ok
    # A dNSName SAN takes the CN's place (as in OpenSSL): the SAN is constrained, the CN is not.
    with_san = partner.leaf("CN=bank.test", san_dns=["api.partner-y.example"])
    assert Validator(trust).validate([with_san.der, partner.der], at=NOW).ok
    # A CN that is not a host name is not in the DNS namespace at all.
    for cn in ("Partner Y client", "single-label", "-bad.example", "a..b", "a.-b", "trailing."):
        assert Validator(trust).validate([partner.leaf(f"CN={cn}").der, partner.der], at=NOW).ok, cn
    # Only the client certificate's CN: a CA's CN is a name of the CA, not a host.
    sub = partner.intermediate("CN=ca.other.example")
    assert Validator(trust).validate([sub.leaf("CN=x.partner-y.example").der, sub.der, partner.der], at=NOW).ok
