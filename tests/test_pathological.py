"""Pathological PKIs: every case ends within the path-building work budget, with a stated reason.

The budget is counted, not timed: ``build_path(...).work`` is the number of
candidate issuers examined. When the search gives up, the counter includes the
one examination that was refused (tests/test_path.py pins ``work == budget + 1``),
so "examined" below subtracts it.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ObjectIdentifier

from mtlscore import Policy, Reason, TrustStore, Validator, pki
from mtlscore.verify.path import BuildResult, build_path
from mtlscore.x509.cert import parse_certificate

NOW = pki.NOW


def build(
    leaf: pki.Issued,
    presented: list[pki.Issued] = (),  # type: ignore[assignment]
    *,
    trust: TrustStore,
    policy: Policy | None = None,
) -> BuildResult:
    """build_path with the budget asserted, and the Validator agreeing on the outcome."""
    policy = policy or Policy()
    r = build_path(parse_certificate(leaf.der), [parse_certificate(p.der) for p in presented], trust, policy, at=NOW)
    gave_up = r.failure is not None and r.failure.reason is Reason.SEARCH_LIMIT_EXCEEDED
    examined = r.work - (1 if gave_up else 0)
    assert examined <= policy.max_path_work, (r.work, policy.max_path_work)
    v = Validator(trust, policy).validate([leaf.der, *(p.der for p in presented)], at=NOW)
    assert v.ok is r.ok
    if not r.ok:
        assert r.failure is not None and v.reason is r.failure.reason, (v.reason, r.failure)
    return r


def reason(r: BuildResult) -> Reason | None:
    return None if r.ok else r.failure.reason  # type: ignore[union-attr]


# -- many issuers with one name ------------------------------------------------------------


@pytest.fixture(scope="module")
def same_name_pool() -> dict[str, Any]:
    root = pki.root("CN=Pool Root")
    real = root.intermediate("CN=Shared Issuing CA")
    # 300 impostors: same subject, different keys, properly signed by the root.
    fakes = [root.intermediate("CN=Shared Issuing CA") for _ in range(300)]
    # Without key identifiers the builder cannot guess: it must try them in turn.
    leaf_no_aki = pki.make("CN=client", issuer=real, ca=False, aki=False)
    leaf_aki = real.leaf("CN=client-aki")
    orphan = pki.make("CN=orphan", issuer=pki.root("CN=Shared Issuing CA"), ca=False, aki=False)
    return {
        "root": root,
        "real": real,
        "fakes": fakes,
        "leaf_no_aki": leaf_no_aki,
        "leaf_aki": leaf_aki,
        "orphan": orphan,
    }


def test_hundreds_of_same_subject_pool_intermediates_real_one_last(same_name_pool) -> None:
    p = same_name_pool
    trust = TrustStore([p["root"].pem], intermediates=[f.pem for f in p["fakes"]] + [p["real"].pem])
    r = build(p["leaf_no_aki"], trust=trust)
    # 301 candidates, each one signature check: within the default budget of 1024, found.
    assert r.ok, r.failure
    assert r.path[1].sha256 == parse_certificate(p["real"].der).sha256
    assert 300 <= r.work <= 302


def test_hundreds_of_same_subject_pool_intermediates_aki_goes_straight_there(same_name_pool) -> None:
    p = same_name_pool
    trust = TrustStore([p["root"].pem], intermediates=[f.pem for f in p["fakes"]] + [p["real"].pem])
    r = build(p["leaf_aki"], trust=trust)
    assert r.ok, r.failure
    assert r.work <= 2  # AKI/SKI ordering: the matching key first, then the root


def test_hundreds_of_same_subject_pool_intermediates_none_signs_the_leaf(same_name_pool) -> None:
    p = same_name_pool
    trust = TrustStore([p["root"].pem], intermediates=[f.pem for f in p["fakes"]])
    r = build(p["orphan"], trust=trust)
    assert reason(r) is Reason.BAD_SIGNATURE
    assert r.work == 300


def test_hundreds_of_same_subject_candidates_over_a_small_budget(same_name_pool) -> None:
    p = same_name_pool
    trust = TrustStore([p["root"].pem], intermediates=[f.pem for f in p["fakes"]] + [p["real"].pem])
    r = build(p["leaf_no_aki"], trust=trust, policy=Policy(max_path_work=100))
    assert reason(r) is Reason.SEARCH_LIMIT_EXCEEDED


def test_hundreds_of_same_subject_anchors(same_name_pool) -> None:
    p = same_name_pool
    # The impostors as anchors, the real CA last: anchors are examined like candidates.
    trust = TrustStore([f.pem for f in p["fakes"][:200]] + [p["real"].pem])
    r = build(p["leaf_no_aki"], trust=trust)
    assert r.ok, r.failure
    assert len(r.path) == 1 and r.work == 201


def test_presenting_hundreds_of_certificates_is_too_large(same_name_pool) -> None:
    p = same_name_pool
    trust = TrustStore([p["root"].pem])
    chain = [p["leaf_no_aki"].der, *(f.der for f in p["fakes"][:100]), p["real"].der]
    v = Validator(trust).validate(chain, at=NOW)
    assert v.reason is Reason.PKI_TOO_LARGE


def test_presented_junk_up_to_the_limit_does_not_change_the_verdict(same_name_pool) -> None:
    p = same_name_pool
    trust = TrustStore([p["root"].pem])
    junk = p["fakes"][:30]  # 30 + leaf + real = 32 = Policy.max_presented
    r = build(p["leaf_no_aki"], [*junk, p["real"]], trust=trust)
    assert r.ok, r.failure
    assert r.work <= 32


def test_two_levels_of_same_name_fan_out_hit_the_budget() -> None:
    # 30 "Level B" keys each certified by 30 "Level A" keys (900 same-name certificates),
    # the 30 self-signed "Level A" CAs in the pool too, none reaching an anchor: each B that
    # verifies fans out over the 30 A's again - thousands of examinations; the budget ends it.
    tops = [pki.root("CN=Level A") for _ in range(30)]
    holders = [pki.root("CN=Level B") for _ in range(30)]
    mids = [pki.make("CN=Level B", issuer=t, key=h.key, ca=True, aki=False) for h in holders for t in tops]
    leaf = pki.make("CN=client", issuer=holders[-1], ca=False, aki=False)
    pool = [m.pem for m in mids] + [t.pem for t in tops]
    trust = TrustStore([pki.root("CN=Unrelated Root").pem], intermediates=pool)
    r = build(leaf, trust=trust)
    assert reason(r) is Reason.SEARCH_LIMIT_EXCEEDED
    # Without the upper level the space is small: every B is examined once.
    r = build(leaf, trust=TrustStore([pki.root("CN=Unrelated Root").pem], intermediates=[m.pem for m in mids]))
    # 870 siblings fail their signature check, 30 verify and dead-end; the specific
    # reason (bad_signature) beats plain "untrusted" at the same depth (docs/reference.md#reason-codes).
    assert reason(r) is Reason.BAD_SIGNATURE
    assert r.work == 900


# -- cross-signing meshes and loops ----------------------------------------------------


def _named_mesh(n: int) -> list[pki.Issued]:
    """n CAs with distinct names and keys, each certified by every other (a full cross-signing mesh)."""
    holders = [pki.root(f"CN=Mesh {i}") for i in range(n)]
    return [
        pki.make(f"CN=Mesh {i}", issuer=holders[j], key=holders[i].key, ca=True)
        for i in range(n)
        for j in range(n)
        if i != j
    ] + holders


@pytest.fixture(scope="module")
def named_mesh() -> tuple[list[pki.Issued], pki.Issued]:
    certs = _named_mesh(8)
    leaf = certs[-8].leaf("CN=mesh client")  # issued by "Mesh 0"
    return certs, leaf


def test_cross_signing_mesh_without_an_anchor_gives_up_within_budget(named_mesh) -> None:
    certs, leaf = named_mesh
    trust = TrustStore([pki.root("CN=Elsewhere").pem], intermediates=[c.pem for c in certs])
    r = build(leaf, trust=trust)
    # 8 CAs, 64 certificates, paths up to 10 deep without repeating a (name, key): far
    # more than 1024 candidate examinations, so the budget ends it.
    assert reason(r) is Reason.SEARCH_LIMIT_EXCEEDED


def test_cross_signing_mesh_with_an_anchor_inside_is_accepted(named_mesh) -> None:
    certs, leaf = named_mesh
    anchor = certs[-3]  # the self-signed "Mesh 5"
    trust = TrustStore([anchor.pem], intermediates=[c.pem for c in certs])
    r = build(leaf, trust=trust)
    assert r.ok, r.failure
    assert r.anchor is not None and r.anchor.certificate.subject_key == parse_certificate(anchor.der).subject_key


def test_cross_signing_mesh_with_a_root_certifying_one_member() -> None:
    certs = _named_mesh(6)
    root = pki.root("CN=Mesh Root")
    entry = pki.make("CN=Mesh 4", issuer=root, key=certs[-2].key, ca=True)
    leaf = certs[-6].leaf("CN=mesh client")
    trust = TrustStore([root.pem], intermediates=[entry.pem] + [c.pem for c in certs])
    r = build(leaf, trust=trust)
    assert r.ok, r.failure
    assert r.path[-1].issuer_key == parse_certificate(root.der).subject_key


@pytest.mark.parametrize("length", [2, 3, 7])
def test_issuer_loops_terminate(length: int) -> None:
    # CA 0 <- CA 1 <- ... <- CA n-1 <- CA 0: a ring of distinct names, no anchor in it.
    holders = [pki.root(f"CN=Ring {i}") for i in range(length)]
    ring = [
        pki.make(f"CN=Ring {i}", issuer=holders[(i + 1) % length], key=holders[i].key, ca=True) for i in range(length)
    ]
    leaf = holders[0].leaf("CN=ring client")
    for trust, presented in (
        (TrustStore([pki.root("CN=Other").pem], intermediates=[c.pem for c in ring]), []),
        (TrustStore([pki.root("CN=Other").pem]), ring),
    ):
        r = build(leaf, presented, trust=trust)
        assert reason(r) is Reason.UNTRUSTED
        assert r.work == length  # each ring member examined once, then the loop is refused


def test_self_issued_but_not_self_signed_loop() -> None:
    # "CN=Loop" certified by "CN=Loop" with another key, and back: RFC 4158 §5.2 loop.
    a, b = pki.root("CN=Loop"), pki.root("CN=Loop")
    ab = pki.make("CN=Loop", issuer=b, key=a.key, ca=True)
    ba = pki.make("CN=Loop", issuer=a, key=b.key, ca=True)
    leaf = pki.make("CN=client", issuer=a, ca=False)
    r = build(leaf, [ab, ba], trust=TrustStore([pki.root("CN=Other").pem]))
    # leaf <- ab <- ba, then ab again is refused as a loop; the only recorded failure is
    # the same-named sibling whose key does not verify the leaf.
    assert reason(r) is Reason.BAD_SIGNATURE
    assert r.work == 3


# -- very deep chains -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def deep() -> tuple[pki.Issued, list[pki.Issued]]:
    root = pki.root("CN=Deep Root")
    chain: list[pki.Issued] = []
    parent = root
    for i in range(60):
        parent = parent.intermediate(f"CN=Deep {i}")
        chain.append(parent)
    return root, chain


@pytest.mark.parametrize("depth", [10, 11, 60])
def test_deep_chains_from_the_pool(deep, depth: int) -> None:
    root, chain = deep
    leaf = chain[depth - 1].leaf("CN=deep client")
    trust = TrustStore([root.pem], intermediates=[c.pem for c in chain[:depth]])
    r = build(leaf, trust=trust)
    if depth <= Policy().max_intermediates:
        assert r.ok, r.failure
        assert len(r.path) == depth + 1
    else:
        assert reason(r) is Reason.CHAIN_TOO_LONG
    assert r.work <= Policy().max_intermediates + 2


def test_a_very_deep_presented_chain_is_too_large(deep) -> None:
    root, chain = deep
    leaf = chain[-1].leaf("CN=deep client")
    v = Validator(TrustStore([root.pem])).validate([leaf.der, *(c.der for c in reversed(chain))], at=NOW)
    assert v.reason is Reason.PKI_TOO_LARGE  # 61 certificates > Policy.max_presented


def test_a_deep_presented_chain_within_the_count_limit_is_too_long(deep) -> None:
    root, chain = deep
    leaf = chain[24].leaf("CN=deep client")
    r = build(leaf, list(reversed(chain[:25])), trust=TrustStore([root.pem]))
    assert reason(r) is Reason.CHAIN_TOO_LONG


def test_a_long_key_rollover_chain_is_capped() -> None:
    # 40 self-issued rollover certificates ("CN=Rolling", each key certifying the next):
    # they do not count towards max_intermediates, but the physical length is capped.
    root = pki.root("CN=Rolling Root")
    node = root.intermediate("CN=Rolling")
    pool = [node]
    for _ in range(40):
        node = pki.make("CN=Rolling", issuer=node, ca=True)
        pool.append(node)
    leaf = node.leaf("CN=rolled client")
    r = build(leaf, trust=TrustStore([root.pem], intermediates=[c.pem for c in pool]))
    assert reason(r) is Reason.CHAIN_TOO_LONG
    # Every level re-examines the same-named siblings (one verifies): quadratic in the
    # rollover count, so it is the work budget, not the depth cap, that bounds it.
    assert r.work > 2 * Policy().max_intermediates


# -- giant certificates and extensions ---------------------------------------------------


def test_a_certificate_over_the_size_limit_is_too_large() -> None:
    root = pki.root()
    leaf = root.leaf("CN=big", san_dns=[f"host-{i:05d}.very-long-subdomain.example.com" for i in range(600)])
    assert len(leaf.der) > Policy().max_cert_bytes
    v = Validator(TrustStore([root.pem])).validate(leaf.der, at=NOW)
    assert v.reason is Reason.PKI_TOO_LARGE


def test_thousands_of_unknown_extensions_just_under_the_limit() -> None:
    root = pki.root()
    exts = [
        (x509.UnrecognizedExtension(ObjectIdentifier(f"1.3.6.1.4.1.99999.{i}"), b"\x05\x00"), False) for i in range(850)
    ]
    leaf = root.leaf("CN=many extensions", extensions=exts)
    assert len(leaf.der) <= Policy().max_cert_bytes
    r = build(leaf, trust=TrustStore([root.pem]))
    assert r.ok, r.failure
    critical = root.leaf(
        "CN=one critical",
        extensions=[
            *exts[:50],
            (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.99999"), b"\x05\x00"), True),
        ],
    )
    assert reason(build(critical, trust=TrustStore([root.pem]))) is Reason.UNHANDLED_CRITICAL_EXTENSION


def test_name_constraints_with_many_subtrees_against_many_sans() -> None:
    root = pki.root()
    permitted = [x509.DNSName(f"zone{i}.example") for i in range(250)]
    ca = root.intermediate("CN=Constrained", permitted=permitted)
    ok_leaf = ca.leaf("CN=ok", san_dns=[f"h{i}.zone{i}.example" for i in range(200)])
    bad_leaf = ca.leaf("CN=bad", san_dns=[f"h{i}.zone{i}.example" for i in range(199)] + ["evil.example"])
    trust = TrustStore([root.pem])
    assert build(ok_leaf, [ca], trust=trust).ok
    assert reason(build(bad_leaf, [ca], trust=trust)) is Reason.NAME_CONSTRAINTS_VIOLATION


def test_a_huge_rsa_key_is_refused_before_any_signature_work() -> None:
    class PublicOnly:
        def __init__(self, public: object) -> None:
            self._public = public

        def public_key(self) -> object:
            return self._public

    n = secrets.randbits(16384) | (1 << 16383) | 1
    huge = PublicOnly(rsa.RSAPublicNumbers(65537, n).public_key())
    root = pki.root()
    # Many huge-key CAs with the issuer's name: each is refused on its key size alone.
    cas = [root.intermediate("CN=Huge", key=huge) for _ in range(20)]
    leaf = pki.make("CN=client", issuer=cas[0], signer=pki.new_key(), ca=False, aki=False)
    r = build(leaf, cas[:10], trust=TrustStore([root.pem], intermediates=[c.pem for c in cas[10:]]))
    assert reason(r) is Reason.RSA_KEY_TOO_LARGE
    assert r.work == 20
