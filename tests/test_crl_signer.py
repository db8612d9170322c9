"""Who may sign a CRL (RFC 5280 §6.3.3 (f)): key rollover, separate CRL keys, the same anchor, the budget."""

from __future__ import annotations

import pytest

from mtlscore import Policy, Reason, TrustStore, Validator, pki

NOW = pki.NOW


def hard(anchors: list[pki.Issued], *crls: bytes, pool: tuple[pki.Issued, ...] = (), **kw: object) -> Validator:
    return Validator(TrustStore([a.pem for a in anchors], [c.pem for c in pool]),
                     Policy(revocation="hard", **kw), crls=list(crls))  # type: ignore[arg-type]


# -- key rollover (RFC 4210 §4.4 style self-issued certificates) --------------------------------


def test_rollover_anchor_old_key_crl_signed_by_new_key() -> None:
    # The relying party trusts the old root key; the CA rolled to a new key (new-with-old,
    # self-issued) and now signs its CRLs with it. A certificate issued under the old key is
    # covered by a CRL whose signer is found through the new-with-old certificate.
    root = pki.root("CN=Rollover Root")
    new_with_old = root.rollover()
    issued_old, other = root.leaf("CN=old-key leaf"), root.leaf("CN=another")
    new_crl = new_with_old.crl(revoked=[issued_old], number=2)
    old_crl = root.crl(number=1)  # the old key's last CRL covers the new-with-old certificate
    v = hard([root], new_crl, old_crl, pool=(new_with_old,))
    assert v.validate(issued_old.chain_pem, at=NOW).reason is Reason.REVOKED
    assert v.validate(other.chain_pem, at=NOW).ok
    # Without the old key's CRL, new-with-old's own status is unknown (its CRL would vouch for
    # itself), so the new CRL cannot be used under hard-fail.
    only_new = hard([root], new_with_old.crl(number=2), pool=(new_with_old,))
    verdict = only_new.validate(other.chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "own signer" in verdict.detail


def test_rollover_anchor_new_key_certificate_under_old_key() -> None:
    # The relying party trusts the new root key; a certificate issued under the old key
    # reaches it through old-with-new. The CRL is signed by the new key: the anchor itself.
    old = pki.root("CN=Rollover Root")
    new = pki.root("CN=Rollover Root")
    old_with_new = pki.make(old.cert.subject, issuer=new, key=old.key, ca=True)
    leaf = old_with_new.leaf("CN=issued under the old key")
    other = old_with_new.leaf("CN=another")
    crl = new.crl(revoked=[leaf])
    v = hard([new], crl)
    assert v.validate(leaf.chain_pem, at=NOW).reason is Reason.REVOKED
    verdict = v.validate(other.chain_pem, at=NOW)
    assert verdict.ok and [c.subject_text for c in verdict.path][1:] == ["CN=Rollover Root"] * 2


# -- a separate CRL-signing key ------------------------------------------------------------------


@pytest.fixture(scope="module")
def separate() -> tuple[pki.Issued, pki.Issued, pki.Issued]:
    root = pki.root("CN=Separate Keys Root")
    inter = root.intermediate("CN=Separate Keys CA", key_usage=pki.key_usage("key_cert_sign"))
    return root, inter, inter.crl_signer()


def test_separate_crl_signing_key(separate: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    root, inter, signer = separate
    leaf, other = inter.leaf(), inter.leaf("CN=other")
    crl = inter.crl(revoked=[leaf], signer=signer)
    v = hard([root], crl, root.crl(), pool=(signer,))
    assert v.validate(leaf.chain_pem, at=NOW).reason is Reason.REVOKED
    assert v.validate(other.chain_pem, at=NOW).ok
    # Presented with the chain instead of configured: also at hand.
    v = hard([root], crl, root.crl())
    assert v.validate([other.der, inter.der, signer.der], at=NOW).ok
    # Not at hand at all: no signer, no status.
    assert hard([root], crl, root.crl()).validate(other.chain_pem, at=NOW).reason is Reason.REVOCATION_UNAVAILABLE


def test_crl_signing_key_with_a_revoked_certificate(separate: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    root, inter, signer = separate
    other = inter.leaf("CN=other")
    crl = inter.crl(signer=signer)
    verdict = hard([root], crl, root.crl(revoked=[signer]), pool=(signer,)).validate(other.chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "is revoked" in verdict.detail
    # Its revocation is checked like any certificate's: no CRL for it under hard-fail is no signer.
    verdict = hard([root], crl, pool=(signer,), revocation_ca="off").validate(other.chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "CRL signer path" in verdict.detail
    # Soft-fail: the unknown status of the signer is noted, the CRL used.
    soft = Validator(TrustStore([root.pem], [signer.pem]), Policy(revocation="soft"), crls=[crl, root.crl()])
    assert soft.validate(other.chain_pem, at=NOW).ok


def test_signer_without_crl_sign_is_refused(separate: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    root, inter, _ = separate
    wrong = inter.crl_signer(key_usage=pki.key_usage("digital_signature"))
    crl = inter.crl(signer=wrong)
    verdict = hard([root], crl, root.crl(), pool=(wrong,)).validate(inter.leaf().chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "cRLSign" in verdict.detail


def test_signer_must_chain_to_the_same_anchor(separate: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    # §6.3.3 (f): another trusted root certifying a key under the CA's name signs no CRL for it.
    root, inter, _ = separate
    elsewhere = pki.root("CN=Other Trusted Root")
    impostor = inter.crl_signer(by=elsewhere)
    leaf = inter.leaf()
    crl = inter.crl(signer=impostor)  # lists nothing: accepting it would hide revocations
    v = hard([root, elsewhere], crl, root.crl(), elsewhere.crl(), pool=(impostor,))
    verdict = v.validate(leaf.chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "Separate Keys Root" in verdict.detail


# -- the budget -----------------------------------------------------------------------------------


@pytest.mark.timeout(120)  # a hang guard, not a speed claim
def test_hostile_crl_set_ends_within_the_budget() -> None:
    # Many certificates carry the CRL's issuer name and the key that signed it, each through
    # a mesh of self-issued certificates under an untrusted name: every candidate verifies
    # the CRL and needs a path search. The work budget ends it.
    root = pki.root("CN=Hostile Root")
    inter = root.intermediate("CN=Busy CA")
    leaf = inter.leaf()
    signing = pki.new_key("ec")
    loop = [pki.root("CN=Loop CA") for _ in range(6)]
    mesh = [pki.make("CN=Loop CA", issuer=a, key=b.key, ca=True) for a in loop for b in loop if a is not b]
    twins = [pki.make("CN=Busy CA", issuer=loop[i % len(loop)], key=signing, ca=True) for i in range(40)]
    crl = inter.crl(signer=signing)
    v = Validator(TrustStore([root.pem], [c.pem for c in mesh + twins]), Policy(revocation="hard", max_path_work=300),
                  crls=[crl, root.crl()])
    verdict = v.validate(leaf.chain_pem, at=NOW)
    assert verdict.reason in (Reason.SEARCH_LIMIT_EXCEEDED, Reason.REVOCATION_UNAVAILABLE)
    assert verdict.reason is Reason.SEARCH_LIMIT_EXCEEDED and "max_path_work" in verdict.detail
    # Soft-fail: a given CRL that cannot be used, as any other.
    soft = Validator(v.trust, Policy(revocation="soft", max_path_work=300), crls=[crl, root.crl()])
    verdict = soft.validate(leaf.chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "max_path_work" in verdict.detail


def test_signer_path_must_pass_validation(separate: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    from datetime import timedelta

    root, inter, _ = separate
    expired = inter.crl_signer(not_after=NOW - timedelta(days=1))
    crl = inter.crl(signer=expired)
    verdict = hard([root], crl, root.crl(), pool=(expired,)).validate(inter.leaf().chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "no valid path" in verdict.detail
    assert "expired" in verdict.detail and "client certificate" not in verdict.detail
    # A signer whose issuer is not at hand: said so, not in a client certificate's words.
    orphan = inter.crl_signer(by=pki.root("CN=Separate Keys Root"))  # same name, another key
    verdict = hard([root], inter.crl(signer=orphan), root.crl(), pool=(orphan,)).validate(inter.leaf().chain_pem,
                                                                                         at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE
    assert "no valid path" in verdict.detail and "client certificate" not in verdict.detail


def test_signer_paths_crl_is_fetched_when_fetching() -> None:
    # Hard-fail with fetching and no CRL given: the leaf's CRL is signed by a separate key whose
    # own status is on the root's CRL; that CRL is asked for (NeedCRL), then both are used.
    from mtlscore import Verdict
    from mtlscore.verify.machine import NeedCRL

    inter_url, root_url = "http://127.0.0.1:1/inter.crl", "http://127.0.0.1:1/root.crl"
    root = pki.root("CN=Fetching Root")
    inter = root.intermediate("CN=Fetching CA", crl_urls=[root_url])
    signer = inter.crl_signer(crl_urls=[root_url])
    leaf = inter.leaf(crl_urls=[inter_url])
    v = Validator(TrustStore([root.pem], [signer.pem]), Policy(revocation="hard", fetch=True, revocation_prefer="crl"))

    def run(root_crl: bytes) -> tuple[list[str], Verdict]:
        validation = v.start(leaf.chain_pem, at=NOW)
        asked = []
        while not isinstance(event := validation.next_event(), Verdict):
            assert isinstance(event, NeedCRL)
            asked.append(event.url)
            validation.send(event, inter.crl(signer=signer) if event.url == inter_url else root_crl)
        return asked, event

    asked, verdict = run(root.crl())
    assert verdict.ok and asked == [inter_url, root_url]
    v.cache.clear()
    asked, verdict = run(root.crl(revoked=[signer]))
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "is revoked" in verdict.detail
    # The root's CRL verified under a certificate at hand: cached, so the next validation asks nothing.
    v.cache.clear()
    run(root.crl())
    assert isinstance(v.start(leaf.chain_pem, at=NOW).next_event(), Verdict)


def test_nested_signer_paths_are_bounded() -> None:
    # Each CRL signer's status is on a CRL signed by the next separate key: the recursion stops
    # at MAX_NESTING levels below the certificate's own check.
    from mtlscore.revocation.crl_signer import MAX_NESTING

    root = pki.root("CN=Nesting Root")
    inter = root.intermediate("CN=Nesting CA")
    urls = [f"http://127.0.0.1:1/n{i}.crl" for i in range(MAX_NESTING + 1)]
    signers = [inter.crl_signer(crl_urls=[urls[0]])]
    signers += [root.crl_signer(by=root, crl_urls=[u]) for u in urls[1:]]
    leaf = inter.leaf()

    def crls(depth: int) -> list[bytes]:
        # signers[i]'s status is on a root CRL for urls[i], signed by signers[i + 1] (the root at ``depth``).
        out = [inter.crl(signer=signers[0])]
        for i in range(depth):
            nxt = signers[i + 1] if i + 1 < depth else None
            out.append(root.crl(signer=nxt, idp=pki.idp(uri=urls[i]), number=10 + i))
        return out

    v = hard([root], *crls(MAX_NESTING), pool=tuple(signers), revocation_ca="off")
    assert v.validate(leaf.chain_pem, at=NOW).ok
    verdict = hard([root], *crls(MAX_NESTING + 1), pool=tuple(signers), revocation_ca="off").validate(
        leaf.chain_pem, at=NOW)
    assert verdict.reason is Reason.REVOCATION_UNAVAILABLE and "nested too deep" in verdict.detail
