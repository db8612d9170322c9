"""Differential: mtlscore against pyca's ``cryptography.x509.verification`` ClientVerifier, and OpenSSL.

The OpenSSL half (at the end) runs fuzz/differential.py's seeded random PKIs
through both validators; ``python fuzz/differential.py --seeds N`` is the long run.

Chains are generated inside the profile both verifiers support (AKI/SKI
present, critical basicConstraints and keyUsage on CAs, clientAuth EKU and a
SAN on the leaf, P-256/P-384/RSA-2048 keys, SHA-2 signatures incl. RSA-PSS),
then optionally given exactly one defect that both must reject. Both must
reach the same verdict, and that verdict must be the expected one.

Known profile differences are kept out of the generated space on purpose
(docs/reference.md#defaults): pyca accepts P-521 CA keys and a leaf keyUsage without
digitalSignature (mtlscore does not); pyca rejects CAs without keyUsage or with
a non-critical basicConstraints and leaves without SAN (mtlscore accepts).
"""

from __future__ import annotations

import pathlib
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlscore import Reason, TrustStore, Validator, pki
from mtlscore.verify.policy import CLIENT_AUTH, SERVER_AUTH

NOW = pki.NOW
DAY = timedelta(days=1)
UNKNOWN_CRITICAL = (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.4"), b"\x05\x00"), True)


def pyca_accepts(root: pki.Issued, leaf: pki.Issued, presented: list[pki.Issued]) -> tuple[bool, str]:
    verifier = PolicyBuilder().store(Store([root.cert])).time(NOW).build_client_verifier()
    try:
        verifier.verify(leaf.cert, [c.cert for c in presented])
    except VerificationError as exc:
        return False, str(exc)
    return True, ""


def mtlscore_accepts(root: pki.Issued, leaf: pki.Issued, presented: list[pki.Issued]) -> tuple[bool, str]:
    v = Validator(TrustStore(anchors=[root.pem])).validate([leaf.der, *(c.der for c in presented)], at=NOW)
    return v.ok, f"{v.reason}: {v.detail}"


# -- the generated chain ----------------------------------------------------------------

DEFECTS: dict[str, tuple[tuple[str, ...], Any]] = {
    # name: (levels it applies to (0 = root, depth + 1 = leaf, "ca"/"signed"), factory keywords)
    "expired": (("any",), lambda: {"not_after": NOW - DAY, "not_before": NOW - 30 * DAY}),
    "not_yet_valid": (("any",), lambda: {"not_before": NOW + DAY}),
    "bad_signature": (("signed",), lambda: {"signer": pki.new_key()}),
    "sha224": (("signed",), lambda: {"hash_alg": "sha224"}),
    "issuer_ku": (("ca",), lambda: {"key_usage": pki.key_usage("crl_sign")}),
    "not_ca": (("intermediate",), lambda: {"ca": False, "key_usage": pki.key_usage("key_cert_sign")}),
    "ca_eku": (("ca",), lambda: {"eku": [SERVER_AUTH]}),
    "leaf_eku": (("leaf",), lambda: {"eku": [SERVER_AUTH]}),
    "critical_ext": (("any",), lambda: {"extensions": [UNKNOWN_CRITICAL]}),
    "weak_ca_key": (("ca",), lambda: {"key": "rsa-1024"}),
    "name_constraints": (("ca",), lambda: {"permitted": [x509.DNSName("partner.example")]}),
    "path_len": (("ca",), lambda: {"path_length": 0}),  # only a defect with a CA below it
    "missing_intermediate": (("intermediate",), dict),
    "unknown_root": (("root",), dict),
}


@dataclass
class Generated:
    root: pki.Issued
    leaf: pki.Issued
    presented: list[pki.Issued]
    description: str


def _applies(kind: str, level: int, depth: int) -> bool:
    leaf_level = depth + 1
    return {
        "any": True,
        "signed": level > 0,
        "ca": level <= depth,
        "intermediate": 0 < level <= depth,
        "leaf": level == leaf_level,
        "root": level == 0,
    }[kind]


@st.composite
def chains(draw: st.DrawFn, *, with_defect: bool | None = None) -> Generated:
    depth = draw(st.integers(min_value=0, max_value=3))
    defect: str | None = None
    level = -1
    if with_defect is not False:
        options = [
            (name, lv)
            for name, (kinds, _) in DEFECTS.items()
            for lv in range(depth + 2)
            if any(_applies(k, lv, depth) for k in kinds)
            and not (name == "path_len" and lv >= depth)  # needs a CA below it
        ]
        if with_defect or draw(st.booleans()):
            defect, level = draw(st.sampled_from(options))
    bad = DEFECTS[defect][1]() if defect else {}

    def kw(lv: int, *, ca: bool) -> dict[str, Any]:
        key = draw(st.sampled_from(["ec", "ec-p384", "rsa"]))
        out: dict[str, Any] = {"key": key, "hash_alg": draw(st.sampled_from(["sha256", "sha384", "sha512"]))}
        out["not_before"] = NOW - draw(st.integers(min_value=1, max_value=400)) * DAY
        out["not_after"] = NOW + draw(st.integers(min_value=1, max_value=400)) * DAY
        if ca:
            remaining = depth - lv  # intermediates below this CA
            out["path_length"] = draw(st.one_of(st.none(), st.integers(min_value=remaining, max_value=5)))
            out["eku"] = draw(st.sampled_from([None, [CLIENT_AUTH], [CLIENT_AUTH, SERVER_AUTH]]))
        else:
            out["eku"] = draw(st.sampled_from([[CLIENT_AUTH], [CLIENT_AUTH, SERVER_AUTH]]))
            out["key_usage"] = draw(st.sampled_from(["default", None]))
            out["san_dns"] = ["client.example"]
        if lv == level:
            out.update(bad)
        return out

    root = pki.root("CN=Diff Root", **kw(0, ca=True))
    nodes = [root]
    for lv in range(1, depth + 1):
        parent_kw = kw(lv, ca=True)
        # PSS is drawn for children of RSA issuers only (the issuer's key type decides).
        issuer_key = nodes[-1].key
        rsa_issuer = (
            isinstance(issuer_key, type(pki.new_key("rsa")))
            and issuer_key.key_size >= 2048
            and "signer" not in parent_kw
        )
        if rsa_issuer and draw(st.booleans()):
            parent_kw["pss"] = True
        nodes.append(nodes[-1].intermediate(f"CN=Diff I{lv}", **parent_kw))
    leaf = nodes[-1].leaf("CN=diff client", **kw(depth + 1, ca=False))
    presented = nodes[1:][::-1]
    anchor = root
    if defect == "missing_intermediate":
        presented = [c for c in presented if c is not nodes[level]]
    if defect == "unknown_root":
        anchor = pki.root("CN=Diff Root")  # same name, other key
    presented = draw(st.permutations(presented))
    return Generated(anchor, leaf, list(presented), f"depth={depth} defect={defect}@{level}")


SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(g=chains())
def test_verdicts_agree_with_pyca(g: Generated) -> None:
    ours, ours_why = mtlscore_accepts(g.root, g.leaf, g.presented)
    theirs, theirs_why = pyca_accepts(g.root, g.leaf, g.presented)
    expected = "defect=None" in g.description
    assert (ours, theirs) == (expected, expected), (g.description, ours_why, theirs_why)


@SETTINGS
@given(g=chains(with_defect=False))
def test_clean_chains_are_accepted_by_both(g: Generated) -> None:
    assert mtlscore_accepts(g.root, g.leaf, g.presented)[0], g.description
    assert pyca_accepts(g.root, g.leaf, g.presented)[0], g.description


# -- a fixed table of single defects both reject --------------------------------------------


def _chain(**at: dict[str, Any]) -> tuple[pki.Issued, pki.Issued, list[pki.Issued]]:
    root = pki.root("CN=Table Root", **at.get("root", {}))
    inter = root.intermediate("CN=Table Issuing", **at.get("inter", {}))
    leaf = inter.leaf("CN=table client", san_dns=["client.example"], **at.get("leaf", {}))
    return root, leaf, [inter]


TABLE: dict[str, tuple[dict[str, dict[str, Any]], Reason]] = {
    "leaf expired": ({"leaf": {"not_after": NOW - DAY}}, Reason.EXPIRED),
    "intermediate expired": ({"inter": {"not_after": NOW - DAY}}, Reason.EXPIRED),
    "leaf not yet valid": ({"leaf": {"not_before": NOW + DAY}}, Reason.NOT_YET_VALID),
    "leaf serverAuth only": ({"leaf": {"eku": [SERVER_AUTH]}}, Reason.INVALID_EKU),
    "intermediate serverAuth only": ({"inter": {"eku": [SERVER_AUTH]}}, Reason.INVALID_EKU),
    "intermediate not a CA": ({"inter": {"ca": False, "key_usage": pki.key_usage("key_cert_sign")}},
                              Reason.ISSUER_NOT_CA),
    "intermediate without keyCertSign": ({"inter": {"key_usage": pki.key_usage("crl_sign")}},
                                         Reason.ISSUER_KEY_USAGE),
    "root pathLen 0": ({"root": {"path_length": 0}}, Reason.PATH_LENGTH_EXCEEDED),
    "leaf SHA-224": ({"leaf": {"hash_alg": "sha224"}}, Reason.WEAK_SIGNATURE_ALGORITHM),
    "intermediate RSA-1024": ({"inter": {"key": "rsa-1024"}}, Reason.RSA_KEY_TOO_SMALL),
    "leaf unknown critical": ({"leaf": {"extensions": [UNKNOWN_CRITICAL]}},
                              Reason.UNHANDLED_CRITICAL_EXTENSION),
    "name constraints": ({"inter": {"permitted": [x509.DNSName("partner.example")]}},
                         Reason.NAME_CONSTRAINTS_VIOLATION),
}


@pytest.mark.parametrize("name", list(TABLE))
def test_single_defects_both_reject(name: str) -> None:
    at, reason = TABLE[name]
    root, leaf, presented = _chain(**at)
    assert not pyca_accepts(root, leaf, presented)[0]
    v = Validator(TrustStore(anchors=[root.pem])).validate([leaf.der, *(c.der for c in presented)], at=NOW)
    assert v.reason is reason, v.detail


def test_the_clean_table_chain_is_accepted_by_both() -> None:
    root, leaf, presented = _chain()
    assert pyca_accepts(root, leaf, presented)[0]
    assert mtlscore_accepts(root, leaf, presented)[0]


# -- OpenSSL on seeded random PKIs (fuzz/differential.py) -----------------------------------------

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fuzz import differential  # noqa: E402

OPENSSL_SEEDS = range(600)


@pytest.fixture(scope="module")
def openssl_tally() -> differential.Tally:
    return differential.run(OPENSSL_SEEDS)


def test_openssl_agrees_but_for_the_documented_differences(openssl_tally: differential.Tally) -> None:
    t = openssl_tally
    print("\n" + t.report())
    assert not t.unexplained, t.report()
    # Both outcomes well represented, and the mutations reach the differences.
    assert t.cases == len(OPENSSL_SEEDS)
    assert t.both_accept >= 0.4 * t.cases, t.report()
    assert t.both_reject >= 0.15 * t.cases, t.report()
    assert sum(t.explained.values()) >= 0.04 * t.cases, t.report()
    assert len(t.explained) >= 8, t.report()


def _anchors(markdown: str) -> set[str]:
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return out


def test_every_allowed_difference_points_at_its_paragraph() -> None:
    for name, diff in differential.ALLOWED.items():
        path, _, anchor = diff.doc.partition("#")
        assert name in differential.MUTATIONS
        assert anchor in _anchors((REPO / path).read_text()), (name, diff.doc)


def test_a_difference_is_explained_only_in_its_direction_and_with_its_reason() -> None:
    case = differential.generate(0)
    case.mutations = ["sha1@leaf"]
    ours_weak = differential.Outcome(False, Reason.WEAK_SIGNATURE_ALGORITHM.value)
    ours_other = differential.Outcome(False, Reason.EXPIRED.value)
    accepted, refused = differential.Outcome(True, ""), differential.Outcome(False, "certificate has expired")
    assert differential.explain(case, ours_weak, accepted) == "sha1"
    assert differential.explain(case, ours_other, accepted) is None  # another reason: not this difference
    assert differential.explain(case, accepted, refused) is None  # the other direction
    case.mutations = ["twin@inter1"]
    assert differential.explain(case, accepted, refused) == "twin"
    assert differential.explain(case, ours_weak, accepted) is None


def test_the_generator_is_seeded() -> None:
    a, b = differential.generate(12345), differential.generate(12345)
    assert a.mutations == b.mutations
    assert [c.cert.subject for c in a.presented] == [c.cert.subject for c in b.presented]
    assert differential.mtlscore(a).ok == differential.mtlscore(b).ok
    assert differential.openssl(a).ok == differential.openssl(b).ok
