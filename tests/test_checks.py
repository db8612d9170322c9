"""RFC 5280 §6.1 checks of one candidate path (``check_path``) and key policy (``check_key``).

Each test builds its certificates with the PKI factory; the defect is the one keyword.
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import timedelta
from typing import Annotated, Any

import pytest
from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mtlscore import Policy, Reason, pki
from mtlscore.verify import Anchor
from mtlscore.verify.checks import PathFailure, Role, Who, check_ca, check_key, check_path
from mtlscore.verify.policy import SERVER_AUTH
from mtlscore.x509 import parse_certificate

NOW = pki.NOW
DAY = timedelta(days=1)
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")


def check(leaf: pki.Issued, *inters: pki.Issued, anchor: pki.Issued | Anchor | None = None,
          policy: Policy | None = None, at: Any = NOW) -> PathFailure | None:
    """check_path over [leaf, *inters] under ``anchor`` (default: the top's issuer)."""
    top = inters[-1] if inters else leaf
    if anchor is None:
        anchor = top.parent if top.parent is not None else top
    if not isinstance(anchor, Anchor):
        anchor = Anchor(parse_certificate(anchor.der))
    path = [parse_certificate(c.der) for c in (leaf, *inters)]
    return check_path(path, anchor, at=at, policy=policy or Policy())


def reason(failure: PathFailure | None) -> Reason | None:
    return failure.reason if failure else None


class _PublicOnly:
    def __init__(self, public: Any) -> None:
        self._public = public

    def public_key(self) -> Any:
        return self._public


def rsa_public_only(bits: int) -> _PublicOnly:
    """An RSA public key of exactly ``bits`` bits, without prime generation."""
    n = secrets.randbits(bits) | (1 << (bits - 1)) | 1
    return _PublicOnly(rsa.RSAPublicNumbers(65537, n).public_key())


@pytest.fixture(scope="module")
def root() -> pki.Issued:
    return pki.root()


def test_a_good_path_passes(root) -> None:
    inter = root.intermediate()
    assert check(inter.leaf(), inter) is None
    assert check(root.leaf()) is None


# -- validity (RFC 5280 §4.1.2.5, §6.1.3 (a)(2)) --------------------------------------


@pytest.mark.parametrize(
    ("where", "kw", "expected", "position"),
    [
        ("leaf", {"not_after": NOW - DAY}, Reason.EXPIRED, 0),
        ("leaf", {"not_before": NOW + DAY}, Reason.NOT_YET_VALID, 0),
        ("inter", {"not_after": NOW - DAY}, Reason.EXPIRED, 1),
        ("inter", {"not_before": NOW + DAY}, Reason.NOT_YET_VALID, 1),
        ("root", {"not_after": NOW - DAY}, Reason.EXPIRED, 2),
        ("root", {"not_before": NOW + DAY}, Reason.NOT_YET_VALID, 2),
    ],
)
def test_validity_of_every_certificate(where: str, kw: dict[str, Any], expected: Reason,
                                       position: int) -> None:
    r = pki.root(**(kw if where == "root" else {}))
    inter = r.intermediate(**(kw if where == "inter" else {}))
    leaf = inter.leaf(**(kw if where == "leaf" else {}))
    failure = check(leaf, inter)
    assert failure is not None and failure.reason is expected and failure.position == position


def test_anchor_window_overrides_the_certificates_own_validity() -> None:
    old = pki.root(not_after=NOW - DAY)  # expired certificate, still a configured anchor
    leaf = old.leaf()
    extended = Anchor(parse_certificate(old.der), not_after=NOW + DAY)
    assert check(leaf, anchor=extended) is None
    current = pki.root()
    retired = Anchor(parse_certificate(current.der), not_after=NOW - DAY)
    assert reason(check(current.leaf(), anchor=retired)) is Reason.EXPIRED
    pending = Anchor(parse_certificate(current.der), not_before=NOW + DAY)
    assert reason(check(current.leaf(), anchor=pending)) is Reason.NOT_YET_VALID


# -- basicConstraints and pathLenConstraint (§6.1.4 (k)-(m)) ---------------------------


@pytest.mark.parametrize("kw", [{"ca": False}, {"ca": None}])
def test_issuer_must_be_a_ca(root, kw: dict[str, Any]) -> None:
    inter = root.intermediate(**kw, key_usage=pki.key_usage("key_cert_sign"))
    failure = check(inter.leaf(), inter)
    assert failure is not None and failure.reason is Reason.ISSUER_NOT_CA and failure.position == 1


def test_anchor_that_is_not_a_ca_cannot_issue() -> None:
    not_ca = pki.root(ca=False, key_usage=pki.key_usage("key_cert_sign"))
    failure = check(not_ca.leaf())
    assert failure is not None and failure.reason is Reason.ISSUER_NOT_CA and failure.position == 1


@pytest.mark.parametrize(
    ("root_len", "inter_len", "depth", "ok"),
    [
        (0, None, 0, True),   # root pathLen 0 may issue leaves
        (0, None, 1, False),  # ... but not an intermediate
        (1, None, 1, True),
        (1, None, 2, False),
        (None, 0, 1, True),   # intermediate pathLen 0 issues the leaf
        (None, 0, 2, False),
        (5, 1, 2, True),
        (5, 1, 3, False),     # the tighter constraint wins
    ],
)
def test_path_length_constraint(root_len: int | None, inter_len: int | None, depth: int, ok: bool) -> None:
    r = pki.root(path_length=root_len)
    chain: list[pki.Issued] = []
    node = r
    for k in range(depth):
        node = node.intermediate(f"CN=I{k}", path_length=inter_len if k == 0 else None)
        chain.append(node)
    failure = check(node.leaf(), *reversed(chain), anchor=r)
    assert (failure is None) is ok, failure
    if not ok:
        assert failure is not None and failure.reason is Reason.PATH_LENGTH_EXCEEDED


def test_self_issued_intermediates_do_not_count_for_path_length() -> None:
    r = pki.root(path_length=0)
    rolled = pki.make("CN=Test Root CA", issuer=r, ca=True)  # self-issued key rollover
    assert check(rolled.leaf(), rolled, anchor=r) is None


# -- keyUsage (§4.2.1.3, §6.1.4 (n)) ---------------------------------------------------


def test_issuer_key_usage_needs_key_cert_sign(root) -> None:
    inter = root.intermediate(key_usage=pki.key_usage("digital_signature", "crl_sign"))
    failure = check(inter.leaf(), inter)
    assert failure is not None and failure.reason is Reason.ISSUER_KEY_USAGE and failure.position == 1
    assert check(root.intermediate(key_usage=None).leaf(), root.intermediate(key_usage=None)) is None


def test_issuer_without_key_usage_is_fine(root) -> None:
    inter = root.intermediate(key_usage=None)
    assert check(inter.leaf(), inter) is None


def test_anchor_key_usage_needs_key_cert_sign() -> None:
    r = pki.root(key_usage=pki.key_usage("crl_sign"))
    assert reason(check(r.leaf())) is Reason.ISSUER_KEY_USAGE


@pytest.mark.parametrize(
    ("ku", "policy", "expected"),
    [
        (pki.key_usage("digital_signature"), Policy(), None),
        (pki.key_usage("digital_signature", "key_encipherment"), Policy(), None),
        (None, Policy(), None),  # absent keyUsage: no restriction
        (pki.key_usage("key_encipherment"), Policy(), Reason.LEAF_KEY_USAGE),
        (pki.key_usage("key_agreement"), Policy(), Reason.LEAF_KEY_USAGE),
        (pki.key_usage("key_encipherment"), Policy(require_leaf_digital_signature=False), None),
        (pki.key_usage("digital_signature", "key_cert_sign"), Policy(), Reason.LEAF_KEY_USAGE),
    ],
)
def test_leaf_key_usage(root, ku: x509.KeyUsage | None, policy: Policy, expected: Reason | None) -> None:
    assert reason(check(root.leaf(key_usage=ku), policy=policy)) is expected


# -- EKU (§4.2.1.12) -------------------------------------------------------------------


def test_leaf_and_ca_eku(root) -> None:
    assert reason(check(root.leaf(eku=[SERVER_AUTH]))) is Reason.INVALID_EKU
    inter = root.intermediate(eku=[SERVER_AUTH])
    failure = check(inter.leaf(), inter)
    assert failure is not None and failure.reason is Reason.INVALID_EKU and failure.position == 1
    assert "serverAuth" in failure.detail and "clientAuth" in failure.detail


def test_an_anchor_that_is_the_leaf_is_not_eku_chained() -> None:
    # The anchor's EKU restricts what it *issues*; a self-anchored leaf is checked as a leaf.
    me = pki.root("CN=me", ca=False, eku=[pki.CLIENT_AUTH])
    assert check(me, anchor=me) is None


# -- critical extensions (§4.2) --------------------------------------------------------


@pytest.mark.parametrize("where", ["leaf", "inter", "root"])
def test_unknown_critical_extension(where: str) -> None:
    ext = [(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), True)]
    r = pki.root(extensions=ext if where == "root" else ())
    inter = r.intermediate(extensions=ext if where == "inter" else ())
    leaf = inter.leaf(extensions=ext if where == "leaf" else ())
    failure = check(leaf, inter)
    assert failure is not None and failure.reason is Reason.UNHANDLED_CRITICAL_EXTENSION
    assert failure.position == {"leaf": 0, "inter": 1, "root": 2}[where]
    assert UNKNOWN_OID.dotted_string in failure.detail


def test_unknown_non_critical_extension_is_ignored(root) -> None:
    ext = [(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), False)]
    assert check(root.leaf(extensions=ext)) is None


def test_critical_certificate_policies_are_processed(root) -> None:
    policies = x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"), None)])
    assert check(root.leaf(extensions=[(policies, True)])) is None


@pytest.mark.parametrize("critical", [True, False])
def test_require_explicit_policy_is_evaluated(critical: bool) -> None:
    # Certificate policies have their own tests (test_policies.py); here only how
    # check_path reports them: processed whether critical or not (the default profile),
    # malformed when not critical under the strict CA profile.
    pc = x509.PolicyConstraints(require_explicit_policy=0, inhibit_policy_mapping=None)
    r = pki.root()
    inter = r.intermediate(extensions=[(pc, critical)])
    failure = check(inter.leaf(), inter)
    assert failure is not None and (failure.reason, failure.position) == (Reason.NO_VALID_POLICY, 0)
    failure = check(inter.leaf(), inter, policy=Policy(strict_ca_profile=True))
    assert failure is not None
    assert (failure.reason, failure.position) == ((Reason.NO_VALID_POLICY, 0) if critical else (Reason.MALFORMED, 1))


# -- the strict CA profile (Policy.strict_ca_profile) -----------------------------------

STRICT = Policy(strict_ca_profile=True)
_NC = x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None)


def _defect(name: str) -> tuple[str, dict[str, Any], str]:
    """(where, make() keywords, the rule the detail cites) for one strict-profile violation."""
    return {
        "ca-bc-non-critical": ("inter", {"bc_critical": False}, "basicConstraints (RFC 5280 §4.2.1.9)"),
        "root-bc-non-critical": ("root", {"bc_critical": False}, "basicConstraints (RFC 5280 §4.2.1.9)"),
        "nc-non-critical": ("inter", {"extensions": [(_NC, False)]}, "nameConstraints (RFC 5280 §4.2.1.10)"),
        "root-nc-non-critical": ("root", {"extensions": [(_NC, False)]}, "nameConstraints (RFC 5280 §4.2.1.10)"),
        "pc-non-critical": (
            "inter",
            {"extensions": [(x509.PolicyConstraints(require_explicit_policy=5, inhibit_policy_mapping=None), False)]},
            "policyConstraints (RFC 5280 §4.2.1.11)",
        ),
        "iap-non-critical": ("inter", {"extensions": [(x509.InhibitAnyPolicy(5), False)]},
                             "inhibitAnyPolicy (RFC 5280 §4.2.1.14)"),
        "leaf-no-aki": ("leaf", {"aki": False}, "§4.2.1.1"),
        "inter-no-aki": ("inter", {"aki": False}, "§4.2.1.1"),
        "inter-no-ski": ("inter", {"ski": False}, "§4.2.1.2"),
        "root-no-ski": ("root", {"ski": False}, "§4.2.1.2"),
        "inter-no-key-usage": ("inter", {"key_usage": None}, "§4.2.1.3"),
        "root-no-key-usage": ("root", {"key_usage": None}, "§4.2.1.3"),
    }[name]


@pytest.mark.parametrize("name", [
    "ca-bc-non-critical", "root-bc-non-critical", "nc-non-critical", "root-nc-non-critical", "pc-non-critical",
    "iap-non-critical", "leaf-no-aki", "inter-no-aki", "inter-no-ski", "root-no-ski", "inter-no-key-usage",
    "root-no-key-usage",
])
def test_the_strict_ca_profile_refuses_what_the_default_tolerates(name: str) -> None:
    where, kw, rule = _defect(name)
    r = pki.root("CN=Strict Root", **(kw if where == "root" else {}))
    inter = r.intermediate("CN=Strict CA", **(kw if where == "inter" else {}))
    leaf = inter.leaf(san_dns=["a.example.com"], **(kw if where == "leaf" else {}))
    assert check(leaf, inter) is None  # the default profile tolerates it
    failure = check(leaf, inter, policy=STRICT)
    assert failure is not None and failure.reason is Reason.MALFORMED, failure
    assert failure.position == {"leaf": 0, "inter": 1, "root": 2}[where]
    assert rule in failure.detail and "strict CA profile" in failure.detail
    assert {"leaf": "client certificate", "inter": "intermediate #1", "root": "trust anchor"}[where] in failure.detail


def test_the_strict_ca_profile_accepts_a_conforming_path(root) -> None:
    inter = root.intermediate(extensions=[(_NC, True), (x509.InhibitAnyPolicy(5), True)])
    assert check(inter.leaf(san_dns=["a.example.com"]), inter, policy=STRICT) is None
    # A self-signed certificate needs no authorityKeyIdentifier; a leaf needs no SKI or keyUsage.
    bare = pki.root("CN=Bare Root", aki=False)
    assert check(bare.leaf(ski=False, key_usage=None), policy=STRICT) is None
    # A leaf's non-critical basicConstraints verifies no certificate: not the rule's concern.
    assert check(root.leaf(ca=False, bc_critical=False), policy=STRICT) is None
    # A self-anchored, self-signed leaf without AKI.
    me = pki.root("CN=me", ca=False, aki=False, eku=[pki.CLIENT_AUTH])
    assert check(me, anchor=me, policy=STRICT) is None


def test_a_self_issued_certificate_signed_by_another_key_needs_an_aki(root) -> None:
    # Key rollover: same name, another key. Not self-signed, so §4.2.1.1 applies.
    rolled = pki.make(root.cert.subject, issuer=root, ca=True, aki=False)
    leaf = rolled.leaf()
    assert check(leaf, rolled) is None
    failure = check(leaf, rolled, policy=STRICT)
    assert failure is not None and failure.position == 1 and "§4.2.1.1" in failure.detail


# -- encoding rules that make a certificate malformed (§4.1, §4.2) --------------------


def test_critical_key_identifiers_are_malformed(root) -> None:
    key = pki.new_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    leaf = root.leaf(key=key, ski=False, extensions=[(ski, True)])
    assert reason(check(leaf)) is Reason.MALFORMED
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key())
    leaf = root.leaf(aki=False, extensions=[(aki, True)])
    assert reason(check(leaf)) is Reason.MALFORMED


def test_empty_subject_needs_a_critical_san(root) -> None:
    empty = x509.Name([])
    assert reason(check(root.leaf(empty))) is Reason.MALFORMED
    assert reason(check(root.leaf(empty, san_dns=["a.example"]))) is Reason.MALFORMED
    assert check(root.leaf(empty, san_dns=["a.example"], san_critical=True)) is None


def test_ca_with_empty_subject_is_malformed(root) -> None:
    inter = root.intermediate(x509.Name([]), san_dns=["ca.example"], san_critical=True)
    assert reason(check(inter.leaf(), inter)) is Reason.MALFORMED


def test_empty_issuer_is_malformed(root) -> None:
    # pki.make(issuer_name=x509.Name([])) falls back to the issuer's subject (an empty
    # Name is falsy), so this one certificate is built by hand.
    from cryptography.hazmat.primitives import hashes

    key = pki.new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=client"))
        .issuer_name(x509.Name([]))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .sign(root.key, hashes.SHA256())
    )
    leaf = pki.Issued(cert=cert, key=key, parent=root)
    assert reason(check(leaf, anchor=root)) is Reason.MALFORMED


# -- key policy (docs/reference.md#defaults) ---------------------------------------------------------


def _key(spec: Any) -> Any:
    return parse_certificate(pki.root().leaf(key=spec).der)


def key_failure(cert: Any, policy: Policy) -> PathFailure | None:
    try:
        check_key(cert, policy, Who(cert, 0))
    except PathFailure as failure:
        return failure
    return None


@pytest.mark.parametrize(
    ("spec", "policy", "expected"),
    [
        ("ec", Policy(), None),
        ("ec-p384", Policy(), None),
        ("rsa", Policy(), None),
        ("rsa-1024", Policy(), Reason.RSA_KEY_TOO_SMALL),
        ("rsa", Policy(min_rsa_bits=3072), Reason.RSA_KEY_TOO_SMALL),
        ("rsa-3072", Policy(max_rsa_bits=2048), Reason.RSA_KEY_TOO_LARGE),
        ("ec-p521", Policy(), Reason.UNSUPPORTED_CURVE),
        ("ec-p521", Policy(curves=["P-256", "P-384", "P-521"]), None),
        ("ec-k256", Policy(curves=["P-256", "P-384", "P-521"]), Reason.UNSUPPORTED_CURVE),
        ("ec-p384", Policy(curves=["P-256"]), Reason.UNSUPPORTED_CURVE),
        ("ed25519", Policy(), Reason.UNSUPPORTED_KEY_ALGORITHM),
        ("ed25519", Policy(key_types=["rsa", "ec", "ed25519"]), None),
        ("ed448", Policy(key_types=["rsa", "ec", "ed25519"]), Reason.UNSUPPORTED_KEY_ALGORITHM),
        ("ed448", Policy(key_types=["ed448"]), None),
        ("rsa", Policy(key_types=["ec"]), Reason.UNSUPPORTED_KEY_ALGORITHM),
        ("ec", Policy(key_types=["rsa"]), Reason.UNSUPPORTED_KEY_ALGORITHM),
    ],
)
def test_check_key(spec: str, policy: Policy, expected: Reason | None) -> None:
    assert reason(key_failure(_key(spec), policy)) is expected


def test_rsa_size_bounds_are_inclusive_and_odd_sizes_refused() -> None:
    assert key_failure(_key(rsa_public_only(8192)), Policy()) is None
    bad = key_failure(_key(rsa_public_only(8200)), Policy())
    assert bad is not None and bad.reason is Reason.RSA_KEY_TOO_LARGE and "8200" in bad.detail
    bad = key_failure(_key(rsa_public_only(2052)), Policy())
    assert bad is not None and bad.reason is Reason.UNSUPPORTED_KEY_ALGORITHM


@pytest.mark.parametrize(("where", "position"), [("leaf", 0), ("inter", 1), ("root", 2)])
def test_key_policy_applies_along_the_path(where: str, position: int) -> None:
    weak = "rsa-1024"
    r = pki.root(key=weak if where == "root" else "ec")
    inter = r.intermediate(key=weak if where == "inter" else "ec")
    leaf = inter.leaf(key=weak if where == "leaf" else "ec")
    failure = check(leaf, inter)
    # The anchor too: its key verifies the first signature (limbo webpki::forbidden-weak-rsa-key-in-root).
    assert failure is not None and failure.reason is Reason.RSA_KEY_TOO_SMALL
    assert failure.position == position


# -- the order of checks: the first failing certificate from the anchor down wins -------


def test_the_certificate_nearest_the_anchor_is_reported_first() -> None:
    r = pki.root()
    inter = r.intermediate(not_after=NOW - DAY)
    leaf = inter.leaf(eku=[SERVER_AUTH])
    failure = check(leaf, inter)
    assert failure is not None and failure.reason is Reason.EXPIRED and failure.position == 1


def test_strict_ca_profile_from_the_config_file_reaches_validation(tmp_path) -> None:
    from mtlscore import ConfigError, TrustStore, Validator
    from mtlscore.config import parse_config

    assert parse_config({}, base_dir=tmp_path).policy.strict_ca_profile is False
    cfg = parse_config({"policy": {"strict_ca_profile": True}}, base_dir=tmp_path)
    assert cfg.policy.strict_ca_profile is True
    with pytest.raises(ConfigError) as exc:
        parse_config({"policy": {"strict_ca_profile": "yes"}}, base_dir=tmp_path)
    assert exc.value.key == "policy.strict_ca_profile"
    # Through the validator, including a sibling leaf checked along a known path.
    r = pki.root("CN=Config Root")
    inter = r.intermediate("CN=Config CA")
    validator = Validator(TrustStore([r.der]), cfg.policy.evolve(revocation="off"))
    assert validator.validate([inter.leaf().der, inter.der], at=NOW).ok
    v = validator.validate([inter.leaf(aki=False).der, inter.der], at=NOW)
    assert v.reason is Reason.MALFORMED and v.position == 0 and "authorityKeyIdentifier" in v.detail


# -- one CA check for the anchor and the intermediate (check_ca, check_basic by role) -----
#
# Go's isValid(certType) and the Rust verifier's permits_ca over permits_basic: a defect
# of a CA certificate is the same defect whether the certificate is configured as the
# trust anchor or presented as an intermediate, except where the standards say otherwise.

_CRITICAL_SKI = (x509.SubjectKeyIdentifier(b"\x01" * 20), True)
_UNKNOWN_CRITICAL = (x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), True)

CA_DEFECTS = {
    # §6.1.4 (k), §4.2.1.9: a CA certificate MUST carry basicConstraints cA=TRUE.
    "ca_false": ({"ca": False, "key_usage": pki.key_usage("key_cert_sign")}, Reason.ISSUER_NOT_CA),
    "no_basic_constraints": ({"ca": None, "key_usage": pki.key_usage("key_cert_sign")}, Reason.ISSUER_NOT_CA),
    # §6.1.4 (n): keyUsage, when present, must allow keyCertSign.
    "no_key_cert_sign": ({"key_usage": pki.key_usage("crl_sign", "digital_signature")}, Reason.ISSUER_KEY_USAGE),
    # A CA's extendedKeyUsage restricts its subordinates (Policy.check_ca_eku).
    "eku_server_only": ({"eku": [SERVER_AUTH]}, Reason.INVALID_EKU),
    # §4.2.1.1-2: conforming CAs MUST mark key identifiers non-critical.
    "critical_ski": ({"ski": False, "extensions": [_CRITICAL_SKI]}, Reason.MALFORMED),
    # §4.2: a critical extension the validator does not process.
    "unknown_critical": ({"extensions": [_UNKNOWN_CRITICAL]}, Reason.UNHANDLED_CRITICAL_EXTENSION),
    "expired": ({"not_after": NOW - DAY, "not_before": NOW - 30 * DAY}, Reason.EXPIRED),
    "weak_key": ({"key": "rsa-1024"}, Reason.RSA_KEY_TOO_SMALL),
}


def _as_anchor(defect: dict[str, Any]) -> PathFailure | None:
    """The defective CA is the configured trust anchor and issues the leaf: position 1."""
    ca = pki.root("CN=Defective CA", **defect)
    return check(ca.leaf(), anchor=ca)


def _as_intermediate(defect: dict[str, Any]) -> PathFailure | None:
    """The same defect on an intermediate under a sound root: position 1 as well."""
    ca = pki.root("CN=Sound Root").intermediate("CN=Defective CA", **defect)
    return check(ca.leaf(), ca)


@pytest.mark.parametrize("name", sorted(CA_DEFECTS))
def test_a_ca_defect_is_the_same_failure_as_anchor_and_as_intermediate(name: str) -> None:
    defect, expected = CA_DEFECTS[name]
    anchor, intermediate = _as_anchor(defect), _as_intermediate(defect)
    assert anchor is not None and intermediate is not None, (anchor, intermediate)
    assert (anchor.reason, anchor.position) == (expected, 1), anchor
    assert (intermediate.reason, intermediate.position) == (expected, 1), intermediate
    assert anchor.detail.startswith("trust anchor 'CN=Defective CA'"), anchor.detail
    assert intermediate.detail.startswith("intermediate #1 'CN=Defective CA'"), intermediate.detail
    # Past the role that names the certificate, both say the same (the fix may differ: below).
    assert anchor.detail.split("'CN=Defective CA'", 1)[1][:40] == intermediate.detail.split("'CN=Defective CA'", 1)[1][:40]


def test_check_ca_names_the_fix_for_the_role() -> None:
    ca = parse_certificate(pki.root("CN=Not A CA", ca=None, key_usage=pki.key_usage("key_cert_sign")).der)
    leaf = parse_certificate(pki.root().leaf().der)
    with pytest.raises(PathFailure) as as_anchor:
        check_ca(ca, Role.ANCHOR, Who(ca, 1, Role.ANCHOR.value), Policy(), leaf, None)
    with pytest.raises(PathFailure) as as_intermediate:
        check_ca(ca, Role.INTERMEDIATE, Who(ca, 1), Policy(), leaf, 3)
    for exc in (as_anchor, as_intermediate):
        assert exc.value.reason is Reason.ISSUER_NOT_CA and exc.value.position == 1
        assert "has no basicConstraints (RFC 5280 §4.2.1.9" in exc.value.detail
    assert "configure the real CA certificate as the anchor" in as_anchor.value.detail
    assert "reissue it as a CA" in as_intermediate.value.detail


@asn1.sequence
class _Tbs:  # RFC 5280 §4.1 for a certificate without extensions; version v1 is the DEFAULT, omitted
    version: Annotated[int | None, asn1.Explicit(0)]
    serial: asn1.TLV
    signature: asn1.TLV
    issuer: asn1.TLV
    validity: asn1.TLV
    subject: asn1.TLV
    spki: asn1.TLV


@asn1.sequence
class _Cert:
    tbs: _Tbs
    signature_algorithm: asn1.TLV
    signature: asn1.BitString


def _v1(node: pki.Issued, signer: Any) -> bytes:
    """``node`` (built without extensions) re-encoded as a v1 certificate and signed by ``signer`` (an EC key)."""
    tbs = dataclasses.replace(asn1.decode_der(_Tbs, node.cert.tbs_certificate_bytes), version=None)
    sig = signer.sign(asn1.encode_der(tbs), ec.ECDSA(hashes.SHA256()))
    return asn1.encode_der(_Cert(tbs=tbs, signature_algorithm=tbs.signature, signature=asn1.BitString(sig, 0)))


_BARE = {"ca": None, "key_usage": None, "eku": None, "ski": False, "aki": False}


def test_a_v1_ca_is_grandfathered_as_anchor_not_as_intermediate() -> None:
    # A v1 certificate cannot carry basicConstraints. As a trust anchor it is a name and a
    # key (RFC 5280 §6.1.1 (d)): it may issue. As an intermediate, §6.1.4 (k) requires
    # basicConstraints cA=TRUE, which it cannot have.
    node = pki.root("CN=V1 CA", **_BARE)
    v1 = parse_certificate(_v1(node, node.key))
    assert v1.version == 1 and v1.is_ca is None
    leaf = node.leaf()
    assert check(leaf, anchor=Anchor(v1)) is None
    parsed_leaf = parse_certificate(leaf.der)
    check_ca(v1, Role.ANCHOR, Who(v1, 1, Role.ANCHOR.value), Policy(), parsed_leaf, None)
    with pytest.raises(PathFailure) as exc:
        check_ca(v1, Role.INTERMEDIATE, Who(v1, 1), Policy(), parsed_leaf, 3)
    assert exc.value.reason is Reason.ISSUER_NOT_CA and exc.value.position == 1
    # The same v1 CA presented as an intermediate under a root.
    root = pki.root("CN=Above V1")
    inter = root.issue("CN=V1 Intermediate", **_BARE, key="ec")
    inter_v1 = _v1(inter, root.key)
    below = inter.leaf()
    path = [parse_certificate(below.der), parse_certificate(inter_v1)]
    failure = check_path(path, Anchor(parse_certificate(root.der)), at=NOW, policy=Policy())
    assert failure is not None and failure.reason is Reason.ISSUER_NOT_CA and failure.position == 1


def test_the_anchor_signature_algorithm_is_not_judged_an_intermediates_is() -> None:
    # The anchor's self-signature is not on the path (§6.1.1 (d)); an intermediate's is.
    legacy = pki.root("CN=SHA-1 Root", key="rsa", hash_alg="sha1")
    assert check(legacy.leaf(), anchor=legacy) is None
    inter = pki.root("CN=Root", key="rsa").intermediate("CN=SHA-1 CA", key="rsa", hash_alg="sha1")
    failure = check(inter.leaf(), inter)
    assert failure is not None and failure.reason is Reason.WEAK_SIGNATURE_ALGORITHM and failure.position == 1


def test_path_length_counts_intermediates_not_the_anchor() -> None:
    ca = parse_certificate(pki.root("CN=Above").intermediate("CN=CA").der)
    leaf = parse_certificate(pki.root().leaf().der)
    check_ca(ca, Role.ANCHOR, Who(ca, 1, Role.ANCHOR.value), Policy(), leaf, None)
    check_ca(ca, Role.INTERMEDIATE, Who(ca, 1), Policy(), leaf, 1)
    with pytest.raises(PathFailure) as exc:
        check_ca(ca, Role.INTERMEDIATE, Who(ca, 1), Policy(), leaf, 0)
    assert exc.value.reason is Reason.PATH_LENGTH_EXCEEDED and exc.value.position == 1
    # §6.1.4 (l): a self-issued intermediate (a key rollover certificate) does not count.
    rollover = parse_certificate(pki.root("CN=CA").der)
    assert rollover.self_issued
    check_ca(rollover, Role.INTERMEDIATE, Who(rollover, 1), Policy(), leaf, 0)


def test_a_ca_over_the_path_length_without_key_cert_sign_is_reported_for_the_path_length() -> None:
    # RFC 5280 §6.1.4 processes (l) before (n): one CA too many under a pathLenConstraint is
    # reported before its keyUsage, as it was before check_ca existed.
    r = pki.root(path_length=0)
    inter = r.intermediate("CN=Too Deep", key_usage=pki.key_usage("crl_sign", "digital_signature"))
    failure = check(inter.leaf(), inter)
    assert failure is not None and failure.reason is Reason.PATH_LENGTH_EXCEEDED and failure.position == 1
    inter = r.intermediate("CN=Too Deep", eku=[SERVER_AUTH])
    failure = check(inter.leaf(), inter)
    assert failure is not None and failure.reason is Reason.PATH_LENGTH_EXCEEDED and failure.position == 1
