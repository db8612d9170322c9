"""Path building (RFC 4158 style): order, junk, pool, cross-signing, rotation, loops, limits."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import pytest
from cryptography import x509

from mtlscore import Policy, Reason, TrustStore, Validator, pki
from mtlscore.verify.path import BuildResult, build_path
from mtlscore.x509 import parse_certificate

NOW = pki.NOW
DAY = timedelta(days=1)


def build(
    leaf: pki.Issued,
    presented: Iterable[pki.Issued] = (),
    *,
    anchors: Iterable[pki.Issued] = (),
    pool: Iterable[pki.Issued] = (),
    trust: TrustStore | None = None,
    policy: Policy | None = None,
) -> BuildResult:
    store = trust or TrustStore(anchors=[a.pem for a in anchors], intermediates=[c.pem for c in pool])
    return build_path(
        parse_certificate(leaf.der),
        [parse_certificate(c.der) for c in presented],
        store,
        policy or Policy(),
        at=NOW,
    )


def names(result: BuildResult) -> list[str]:
    return [c.subject_text for c in result.path]


@pytest.fixture(scope="module")
def two_level() -> tuple[pki.Issued, pki.Issued, pki.Issued, pki.Issued]:
    root = pki.root()
    i1 = root.intermediate("CN=Inter 1")
    i2 = i1.intermediate("CN=Inter 2")
    return root, i1, i2, i2.leaf()


# -- presented chains: order, duplicates, junk ----------------------------------------


@pytest.mark.parametrize("order", [(1, 2), (2, 1)])
def test_presented_intermediates_in_any_order(two_level, order) -> None:
    root, i1, i2, leaf = two_level
    inters = {1: i1, 2: i2}
    r = build(leaf, [inters[k] for k in order], anchors=[root])
    assert r.ok, r.failure
    assert names(r) == ["CN=client.example", "CN=Inter 2", "CN=Inter 1"]
    assert r.anchor is not None and r.anchor.certificate.der == root.der


def test_duplicates_and_the_leaf_itself_are_ignored(two_level) -> None:
    root, i1, i2, leaf = two_level
    r = build(leaf, [leaf, i2, i1, i2, i1, leaf], anchors=[root])
    assert r.ok and len(r.path) == 3


def test_unrelated_certificates_are_ignored(two_level) -> None:
    root, i1, i2, leaf = two_level
    other = pki.root("CN=Other Root")
    junk = [other, other.intermediate("CN=Inter 1"), other.leaf(), pki.root("CN=Inter 2")]
    r = build(leaf, [*junk, i1, *junk, i2], anchors=[root])
    assert r.ok, r.failure
    assert [c.der for c in r.path] == [leaf.der, i2.der, i1.der]


def test_the_pool_completes_a_partial_chain(two_level) -> None:
    root, i1, i2, leaf = two_level
    assert build(leaf, [], anchors=[root], pool=[i1, i2]).ok
    assert build(leaf, [i2], anchors=[root], pool=[i1]).ok
    missing = build(leaf, [i2], anchors=[root])
    assert missing.failure is not None and missing.failure.reason is Reason.UNTRUSTED
    # The failure points at the certificate whose issuer is missing.
    assert missing.failure.position == 1 and "Inter 1" in missing.failure.detail


def test_an_intermediate_can_be_the_anchor(two_level) -> None:
    root, i1, i2, leaf = two_level
    r = build(leaf, [i2, i1], anchors=[i2])
    assert r.ok and names(r) == ["CN=client.example"]
    assert r.anchor is not None and r.anchor.certificate.der == i2.der


def test_the_leaf_itself_can_be_the_anchor() -> None:
    self_signed = pki.root("CN=pinned client", ca=False, eku=[pki.CLIENT_AUTH])
    r = build(self_signed, anchors=[self_signed])
    assert r.ok and r.work == 0 and r.paths_checked == 1


def test_a_self_signed_leaf_is_untrusted() -> None:
    self_signed = pki.root("CN=me", ca=False, eku=[pki.CLIENT_AUTH])
    r = build(self_signed, anchors=[pki.root()])
    assert r.failure is not None and r.failure.reason is Reason.UNTRUSTED
    assert "self-signed" in r.failure.detail


# -- multiple candidate issuers -------------------------------------------------------


def test_cross_signed_intermediate_reaches_either_root() -> None:
    old, new = pki.root("CN=Old Root"), pki.root("CN=New Root")
    x_old = old.intermediate("CN=Cross CA")
    x_new = pki.make("CN=Cross CA", issuer=new, key=x_old.key, ca=True)
    leaf = x_old.leaf()  # the leaf does not care which cross-certificate is used
    for anchors in ([old], [new], [old, new]):
        for presented in ([x_old, x_new], [x_new, x_old]):
            r = build(leaf, presented, anchors=anchors)
            assert r.ok, (anchors, r.failure)
    # Trusting only the new root, the builder backtracks from x_old (dead end) to x_new.
    r = build(leaf, [x_old, x_new], anchors=[new])
    assert [c.der for c in r.path] == [leaf.der, x_new.der]


def test_rotation_old_and_new_root_with_the_same_name_both_work() -> None:
    old = pki.root("CN=Partner Root")
    new = pki.root("CN=Partner Root")  # same name, new key
    old_leaf = old.intermediate("CN=Partner Issuing").leaf()
    new_leaf = new.intermediate("CN=Partner Issuing").leaf()
    for leaf in (old_leaf, new_leaf):
        r = build(leaf, [leaf.parent], anchors=[old, new])
        assert r.ok, r.failure
        assert r.anchor is not None and r.anchor.certificate.der == leaf.parent.parent.der
    # Both issuing CAs presented together (same name, different keys): still fine.
    both = [old_leaf.parent, new_leaf.parent]
    assert build(old_leaf, both, anchors=[new, old]).ok
    assert build(new_leaf, both[::-1], anchors=[old, new]).ok


def test_rotation_without_key_identifiers_decides_by_signature() -> None:
    old = pki.root("CN=Partner Root", ski=False, aki=False)
    new = pki.root("CN=Partner Root", ski=False, aki=False)
    for parent in (old, new):
        leaf = parent.leaf(aki=False, ski=False)
        r = build(leaf, anchors=[old, new])
        assert r.ok and r.anchor is not None and r.anchor.certificate.der == parent.der


def test_anchor_activation_windows_during_rotation() -> None:
    old, new = pki.root("CN=Partner Root"), pki.root("CN=Partner Root")
    old_leaf, new_leaf = old.leaf(), new.leaf()
    trust = TrustStore()
    trust.add_anchor(old.pem, label="old", not_after=NOW - DAY)  # retired yesterday
    trust.add_anchor(new.pem, label="new", not_before=NOW - DAY)
    assert build(new_leaf, trust=trust).ok
    r = build(old_leaf, trust=trust)
    assert r.failure is not None and r.failure.reason is Reason.EXPIRED
    assert "trust anchor" in r.failure.detail and r.failure.position == 1

    future = TrustStore()
    future.add_anchor(new.pem, not_before=NOW + DAY)  # announced, not yet active
    r = build(new_leaf, trust=future)
    assert r.failure is not None and r.failure.reason is Reason.NOT_YET_VALID


def test_backtracks_past_an_expired_intermediate() -> None:
    root = pki.root()
    expired = root.intermediate("CN=Issuing", not_after=NOW - DAY)
    renewed = pki.make("CN=Issuing", issuer=root, key=expired.key, ca=True)
    leaf = expired.leaf()
    for presented in ([expired, renewed], [renewed, expired]):
        r = build(leaf, presented, anchors=[root])
        assert r.ok, r.failure
        assert r.path[1].der == renewed.der
    # Expired one in the presented chain, renewed one only in the pool.
    assert build(leaf, [expired], anchors=[root], pool=[renewed]).ok


def test_reason_from_the_path_closest_to_an_anchor() -> None:
    root = pki.root()
    # Two issuers named "Issuing": one reaches the anchor but is expired, the other
    # reaches nothing. "expired" is the useful answer, whichever is tried first.
    expired = root.intermediate("CN=Issuing", not_after=NOW - DAY)
    stray = pki.root("CN=Elsewhere").intermediate("CN=Issuing", key=expired.key)
    leaf = expired.leaf()
    for presented in ([expired, stray], [stray, expired]):
        r = build(leaf, presented, anchors=[root])
        assert r.failure is not None and r.failure.reason is Reason.EXPIRED, r.failure
        assert r.failure.position == 1
        assert [c.der for c in r.failure_path] == [leaf.der, expired.der]


def test_a_complete_path_beats_a_deeper_dead_end() -> None:
    root = pki.root()
    leaf = root.leaf(eku=[pki.SERVER_AUTH])  # complete path, wrong EKU
    # A deeper candidate: a same-named CA (other key) certified by an unknown root.
    impostor_top = pki.root("CN=Unknown")
    deeper = pki.make("CN=Test Root CA", issuer=impostor_top, key=root.key, ca=True)
    r = build(leaf, [deeper], anchors=[root])
    assert r.failure is not None and r.failure.reason is Reason.INVALID_EKU


def test_same_name_wrong_key_is_bad_signature() -> None:
    root = pki.root()
    impostor = pki.root("CN=Test Root CA")  # same name, another key
    r = build(impostor.leaf(), anchors=[root])
    assert r.failure is not None and r.failure.reason is Reason.BAD_SIGNATURE
    inter = root.intermediate()
    fake = pki.make("CN=Test Intermediate CA", issuer=root, ca=True)  # same name, other key
    r = build(inter.leaf(signer=pki.new_key()), [fake], anchors=[root])
    assert r.failure is not None and r.failure.reason is Reason.BAD_SIGNATURE


def test_key_identifiers_only_order_candidates() -> None:
    root = pki.root()
    wrong_aki = x509.AuthorityKeyIdentifier(b"\x01" * 20, None, None)
    leaf = root.leaf(aki=False, extensions=[(wrong_aki, False)])
    assert build(leaf, anchors=[root]).ok


def test_loops_terminate_as_untrusted() -> None:
    a, b = pki.root("CN=A"), pki.root("CN=B")
    a_by_b = pki.make("CN=A", issuer=b, key=a.key, ca=True)
    b_by_a = pki.make("CN=B", issuer=a, key=b.key, ca=True)
    leaf = a.leaf()
    r = build(leaf, [a_by_b, b_by_a, a, b], anchors=[pki.root("CN=Real Root")])
    assert r.failure is not None and r.failure.reason is Reason.UNTRUSTED
    assert r.work < 20  # each (name, key) once per path: the search is tiny


# -- limits ---------------------------------------------------------------------------


def _ladder(root: pki.Issued, n: int, **kw) -> pki.Issued:
    node = root
    for k in range(n):
        node = node.intermediate(f"CN=Rung {k}", **kw)
    return node


def test_ten_intermediates_pass_eleven_are_too_long() -> None:
    root = pki.root()
    ten = _ladder(root, 10).leaf()
    assert build(ten, ten.chain[1:], anchors=[root]).ok
    eleven = _ladder(root, 11).leaf()
    r = build(eleven, eleven.chain[1:], anchors=[root])
    assert r.failure is not None and r.failure.reason is Reason.CHAIN_TOO_LONG


def test_max_intermediates_is_policy() -> None:
    root = pki.root()
    leaf = _ladder(root, 3).leaf()
    assert build(leaf, leaf.chain[1:], anchors=[root], policy=Policy(max_intermediates=3)).ok
    r = build(leaf, leaf.chain[1:], anchors=[root], policy=Policy(max_intermediates=2))
    assert r.failure is not None and r.failure.reason is Reason.CHAIN_TOO_LONG
    assert build(root.leaf(), anchors=[root], policy=Policy(max_intermediates=0)).ok


def test_self_issued_rollover_certificates_do_not_count_towards_depth() -> None:
    root = pki.root()
    inter = root.intermediate("CN=Issuing")
    # Key rollover: "Issuing" (new key) certified by "Issuing" (old key).
    rolled = pki.make("CN=Issuing", issuer=inter, ca=True)
    leaf = rolled.leaf()
    r = build(leaf, [rolled, inter], anchors=[root], policy=Policy(max_intermediates=1))
    assert r.ok, r.failure
    assert len(r.path) == 3


def _mesh(keys: int) -> tuple[pki.Issued, list[pki.Issued]]:
    """Same-subject CAs with distinct keys, each certified by every key: factorial paths."""
    holders = [pki.root("CN=Mesh CA") for _ in range(keys)]
    certs = [pki.make("CN=Mesh CA", issuer=s, key=h.key, ca=True) for h in holders for s in holders]
    return holders[0].leaf(), certs


@pytest.fixture(scope="module")
def mesh() -> tuple[pki.Issued, TrustStore]:
    leaf, certs = _mesh(6)
    return leaf, TrustStore(anchors=[pki.root("CN=Real Root").pem], intermediates=[c.pem for c in certs])


@pytest.mark.parametrize("budget", [50, 300, 1024])
def test_search_limit_is_a_work_budget(mesh, budget: int) -> None:
    leaf, trust = mesh
    r = build(leaf, trust=trust, policy=Policy(max_path_work=budget))
    assert r.failure is not None and r.failure.reason is Reason.SEARCH_LIMIT_EXCEEDED
    # Counted, not timed: exactly one examination over the budget stops the search.
    assert r.work == budget + 1
    verdict = Validator(trust, Policy(max_path_work=budget)).validate(leaf.pem, at=NOW)
    assert verdict.reason is Reason.SEARCH_LIMIT_EXCEEDED


def test_a_small_mesh_under_budget_is_just_untrusted() -> None:
    leaf, certs = _mesh(3)
    trust = TrustStore(anchors=[pki.root().pem], intermediates=[c.pem for c in certs])
    r = build(leaf, trust=trust, policy=Policy(max_path_work=10_000))
    # The whole space is explored and no anchor is found. (The deepest dead ends are
    # same-named siblings whose keys do not verify, so "bad_signature" is what is reported.)
    assert r.failure is not None
    assert r.failure.reason in (Reason.UNTRUSTED, Reason.BAD_SIGNATURE)
    assert 0 < r.work < 10_000


class _PublicOnly:
    """A stand-in private key with only a public half (the factory only calls public_key())."""

    def __init__(self, public: object) -> None:
        self._public = public

    def public_key(self) -> object:
        return self._public


def test_an_oversized_issuer_key_is_refused_before_verifying() -> None:
    import secrets

    from cryptography.hazmat.primitives.asymmetric import rsa

    n = secrets.randbits(8200) | (1 << 8199) | 1
    huge = _PublicOnly(rsa.RSAPublicNumbers(65537, n).public_key())
    root = pki.root()
    inter = root.intermediate(key=huge)
    # The leaf names the huge-key CA as issuer (its signature is by another key, but the
    # builder must refuse the key before spending CPU on it).
    leaf = pki.make("CN=client", issuer=inter, signer=pki.new_key(), ca=False)
    r = build(leaf, [inter], anchors=[root])
    assert r.failure is not None and r.failure.reason is Reason.RSA_KEY_TOO_LARGE
    assert r.failure.position == 1
