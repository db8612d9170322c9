"""Signature algorithm policy and verification (RFC 4055, RFC 5758, RFC 8410), with the link cache."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from mtlscore import Policy, Reason, TrustStore, Validator, pki
from mtlscore.verify.failure import PathFailure, Who
from mtlscore.verify.signature import SignatureCache, check_signature_algorithm, verify_link
from mtlscore.x509 import parse_certificate

NOW = pki.NOW
_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")  # OID 1.2.840.113549.1.1.11
_SHA1_RSA = bytes.fromhex("06092a864886f70d010105")  # OID 1.2.840.113549.1.1.5


def sha1_signed(issuer: pki.Issued, **kw: object) -> bytes:
    """DER of a leaf signed with sha1WithRSAEncryption by ``issuer`` (an RSA CA).

    cryptography no longer signs certificates with SHA-1, so the factory builds a
    SHA-256 one; we swap the algorithm OID (same length, in TBS and outer) and re-sign
    the new TBS with SHA-1 — an RSA signature keeps its length, so nothing else moves.
    """
    der = issuer.leaf(**kw).der
    assert der.count(_SHA256_RSA) == 2
    swapped = der.replace(_SHA256_RSA, _SHA1_RSA)
    cert = x509.load_der_x509_certificate(swapped)
    sig = issuer.key.sign(cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA1())
    assert len(sig) == len(cert.signature) and swapped.endswith(cert.signature)
    return swapped[: -len(sig)] + sig


@pytest.fixture(scope="module")
def rsa_root() -> pki.Issued:
    return pki.root("CN=RSA Root", key="rsa")


@pytest.fixture(scope="module")
def ec_root() -> pki.Issued:
    return pki.root("CN=EC Root")


def _alg(der: bytes, policy: Policy | None = None) -> Reason | None:
    cert = parse_certificate(der)
    try:
        check_signature_algorithm(cert, policy or Policy(), Who(cert, 0))
    except PathFailure as failure:
        assert failure.position == 0 and failure.detail.startswith("client certificate ")
        return failure.reason
    return None


@pytest.mark.parametrize("hash_alg", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("pss", [False, True])
def test_rsa_allowed_hashes(rsa_root, hash_alg: str, pss: bool) -> None:
    leaf = rsa_root.leaf(hash_alg=hash_alg, pss=pss)
    assert _alg(leaf.der) is None
    assert Validator(TrustStore(anchors=[rsa_root.pem])).validate(leaf.pem, at=NOW).ok


@pytest.mark.parametrize("hash_alg", ["sha256", "sha384", "sha512"])
def test_ecdsa_allowed_hashes(ec_root, hash_alg: str) -> None:
    leaf = ec_root.leaf(hash_alg=hash_alg)
    assert _alg(leaf.der) is None
    assert Validator(TrustStore(anchors=[ec_root.pem])).validate(leaf.pem, at=NOW).ok


def test_sha224_is_weak(rsa_root, ec_root) -> None:
    for root in (rsa_root, ec_root):
        leaf = root.leaf(hash_alg="sha224")
        assert _alg(leaf.der) is Reason.WEAK_SIGNATURE_ALGORITHM
        v = Validator(TrustStore(anchors=[root.pem])).validate(leaf.pem, at=NOW)
        assert v.reason is Reason.WEAK_SIGNATURE_ALGORITHM and "SHA224" in v.detail
    assert _alg(rsa_root.leaf(hash_alg="sha224", pss=True).der) is Reason.WEAK_SIGNATURE_ALGORITHM
    # ... unless policy allows it.
    assert _alg(ec_root.leaf(hash_alg="sha224").der, Policy(signature_hashes=["sha224", "sha256"])) is None


def test_sha1_is_weak(rsa_root) -> None:
    der = sha1_signed(rsa_root)
    cert = parse_certificate(der)
    assert cert.signature_hash == "sha1"
    assert verify_link(cert, parse_certificate(rsa_root.der))  # a genuine SHA-1 signature
    v = Validator(TrustStore(anchors=[rsa_root.pem])).validate(der, at=NOW)
    assert v.reason is Reason.WEAK_SIGNATURE_ALGORITHM and "SHA1" in v.detail
    legacy = Policy(signature_hashes=["sha1", "sha256"])
    assert Validator(TrustStore(anchors=[rsa_root.pem]), legacy).validate(der, at=NOW).ok


def test_weak_signature_on_an_intermediate(rsa_root) -> None:
    inter = rsa_root.intermediate(hash_alg="sha224", key="rsa")
    v = Validator(TrustStore(anchors=[rsa_root.pem])).validate(inter.leaf().chain_pem, at=NOW)
    assert v.reason is Reason.WEAK_SIGNATURE_ALGORITHM and v.position == 1


def test_eddsa_signatures_follow_key_types() -> None:
    root = pki.root("CN=Ed Root", key="ed25519")
    leaf = root.leaf()
    assert _alg(leaf.der) is Reason.WEAK_SIGNATURE_ALGORITHM
    ed_ok = Policy(key_types=["rsa", "ec", "ed25519"])
    assert _alg(leaf.der, ed_ok) is None
    assert Validator(TrustStore(anchors=[root.pem]), ed_ok).validate(leaf.pem, at=NOW).ok
    ed448 = pki.root("CN=Ed448 Root", key="ed448")
    assert _alg(ed448.leaf().der, ed_ok) is Reason.WEAK_SIGNATURE_ALGORITHM
    assert _alg(ed448.leaf().der, Policy(key_types=["ec", "ed448"])) is None


def test_verify_link(rsa_root, ec_root) -> None:
    for root in (rsa_root, ec_root):
        leaf = parse_certificate(root.leaf().der)
        assert verify_link(leaf, parse_certificate(root.der))
        assert not verify_link(leaf, parse_certificate(pki.root(key="rsa").der))
        assert not verify_link(leaf, parse_certificate(pki.root().der))
    pss = parse_certificate(rsa_root.leaf(pss=True).der)
    assert verify_link(pss, parse_certificate(rsa_root.der))
    forged = parse_certificate(rsa_root.leaf(signer=pki.new_key("rsa")).der)
    assert not verify_link(forged, parse_certificate(rsa_root.der))


def test_signature_cache_counts_and_bounds(ec_root) -> None:
    cache = SignatureCache(size=2)
    issuer = parse_certificate(ec_root.der)
    leaves = [parse_certificate(ec_root.leaf().der) for _ in range(3)]
    assert cache.verify(leaves[0], issuer) and cache.verify(leaves[0], issuer)
    assert (cache.hits, cache.misses, cache.verifications) == (1, 1, 1)
    for leaf in leaves:
        cache.verify(leaf, issuer)
    assert len(cache._items) == 2  # bounded LRU
    # A failure is cached too, keyed by the issuer's key: a different key is a new entry.
    other = parse_certificate(pki.root().der)
    assert not cache.verify(leaves[0], other) and not cache.verify(leaves[0], other)
    cache.clear()
    assert (cache.hits, cache.misses, len(cache._items)) == (0, 0, 0)


# -- legacy algorithms: the policy decides before any signature is verified ------------------

LEGACY = Policy(signature_hashes=["md5", "sha1", "sha256"])


@pytest.mark.parametrize("key", ["ec", "rsa"])
@pytest.mark.parametrize("hash_alg", ["sha1", "md5"])
@pytest.mark.parametrize("where", ["leaf", "intermediate"])
def test_legacy_hashes_are_refused_for_their_algorithm(key: str, hash_alg: str, where: str) -> None:
    # ECDSA-with-SHA1 used to be refused as bad_signature: cryptography hands out no
    # verify parameters for it, and the signature was verified before the policy ran.
    root = pki.root("CN=Legacy Root", key=key)
    if where == "leaf":
        inter = root.intermediate("CN=Legacy CA", key=key)
        leaf = inter.leaf("CN=legacy client", hash_alg=hash_alg)
    else:
        inter = root.intermediate("CN=Legacy CA", key=key, hash_alg=hash_alg)
        leaf = inter.leaf("CN=legacy client")
    chain = [leaf.der, inter.der]
    v = Validator(TrustStore(anchors=[root.pem])).validate(chain, at=NOW)
    assert v.reason is Reason.WEAK_SIGNATURE_ALGORITHM, v.detail
    assert v.position == (0 if where == "leaf" else 1)
    ecdsa_md5 = (key, hash_alg) == ("ec", "md5")  # X9.62 ecdsa-with-Specified: no verifier here has it
    assert ("not supported" if ecdsa_md5 else hash_alg.upper()) in v.detail
    # A policy that allows the hash verifies the genuine signature and accepts it...
    legacy = Validator(TrustStore(anchors=[root.pem]), LEGACY).validate(chain, at=NOW)
    assert legacy.ok is not ecdsa_md5, legacy.detail
    if ecdsa_md5:
        assert legacy.reason is Reason.WEAK_SIGNATURE_ALGORITHM and "not supported" in legacy.detail


@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_a_forged_legacy_signature_is_refused(key: str) -> None:
    root = pki.root("CN=Legacy Root", key=key)
    forged = root.leaf("CN=legacy client", hash_alg="sha1", signer=pki.new_key(key))
    # The default policy refuses the algorithm whoever signed; under a policy that allows
    # it, the signature is verified and fails.
    assert Validator(TrustStore(anchors=[root.pem])).validate(forged.der, at=NOW).reason is (
        Reason.WEAK_SIGNATURE_ALGORITHM
    )
    assert Validator(TrustStore(anchors=[root.pem]), LEGACY).validate(forged.der, at=NOW).reason is (
        Reason.BAD_SIGNATURE
    )
    genuine = parse_certificate(root.leaf(hash_alg="sha1").der)
    assert verify_link(genuine, parse_certificate(root.der))
    assert not verify_link(parse_certificate(forged.der), parse_certificate(root.der))


_PSS_SHA256_PARAMS = bytes.fromhex("3034a00f300d06096086480165030402010500a11c")


def test_pss_with_an_unknown_hash_is_weak_and_undecodable_parameters_are_malformed(rsa_root) -> None:
    der = rsa_root.leaf(pss=True).der
    assert der.count(_PSS_SHA256_PARAMS) == 2  # in the TBS and the outer signatureAlgorithm
    # hashAlgorithm 2.16.840.1.101.3.4.2.99 (no such hash): same length, so nothing else moves.
    unknown = der.replace(bytes.fromhex("0609608648016503040201"), bytes.fromhex("0609608648016503040263"))
    v = Validator(TrustStore(anchors=[rsa_root.pem])).validate(unknown, at=NOW)
    assert v.reason is Reason.WEAK_SIGNATURE_ALGORITHM and "RSASSA-PSS" in v.detail
    # [5] instead of [0] for hashAlgorithm: the parameters do not decode.
    broken = der.replace(_PSS_SHA256_PARAMS, bytes.fromhex("3034a50f") + _PSS_SHA256_PARAMS[4:])
    assert Validator(TrustStore(anchors=[rsa_root.pem])).validate(broken, at=NOW).reason is Reason.MALFORMED
