"""Signature checks: algorithm policy and verification, with a verified-link cache.

A link (issuer key → subject certificate) is verified once: the result is
cached by (SHA-256 of the issuer's SPKI, SHA-256 of the subject's DER), which
determines it completely. Thousands of client certificates share two or three
intermediates, so the intermediate→anchor signature is checked once, not per client.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from ..reasons import Reason
from ..x509.cert import Certificate, key_kind, signature_hash_algorithm
from ..x509.lru import BoundedLRU
from .failure import Who
from .policy import Policy

__all__ = ["SignatureCache", "allowed_signature_oids", "check_signature_algorithm", "verify_link"]

# RFC 4055 / RFC 5758 / RFC 8410 signature algorithm OIDs → (key type, hash name).
_SIG_ALGS: dict[str, tuple[str, str | None]] = {
    "1.2.840.113549.1.1.4": ("rsa", "md5"),
    "1.2.840.113549.1.1.5": ("rsa", "sha1"),
    "1.2.840.113549.1.1.14": ("rsa", "sha224"),
    "1.2.840.113549.1.1.11": ("rsa", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa", "sha384"),
    "1.2.840.113549.1.1.13": ("rsa", "sha512"),
    "1.2.840.113549.1.1.10": ("rsa", None),  # RSASSA-PSS: hash from the parameters
    "1.2.840.10045.4.1": ("ec", "sha1"),
    "1.2.840.10045.4.3.1": ("ec", "sha224"),
    "1.2.840.10045.4.3.2": ("ec", "sha256"),
    "1.2.840.10045.4.3.3": ("ec", "sha384"),
    "1.2.840.10045.4.3.4": ("ec", "sha512"),
    "1.3.101.112": ("ed25519", None),
    "1.3.101.113": ("ed448", None),
}


# The hashes a fixed-hash algorithm of _SIG_ALGS names, as objects for verify. ``cryptography``
# hands no parameters out for SHA-1 or MD5 signatures, so they are made here from the OID.
# They verify only what Policy.signature_hashes allows (check_signature_algorithm runs first).
_HASH_OBJECTS: dict[str, hashes.HashAlgorithm] = {
    h.name: h
    for h in (
        hashes.MD5(),  # noqa: S303 - legacy, verified only when the policy allows it
        hashes.SHA1(),  # noqa: S303 - legacy, verified only when the policy allows it
        hashes.SHA224(),
        hashes.SHA256(),
        hashes.SHA384(),
        hashes.SHA512(),
    )
}


def check_signature_algorithm(cert: Certificate, policy: Policy, who: Who) -> None:
    """Raise the :class:`PathFailure` of ``cert`` (named by ``who``) if policy does not allow its signature algorithm.

    This decision comes before any signature is verified (the path builder asks it
    first): a certificate signed with an algorithm the policy does not allow, or one
    mtlscore cannot verify, is refused for its algorithm, never as a bad signature.
    """
    alg = _SIG_ALGS.get(cert.signature_oid)
    if alg is None:
        raise who.fail(
            Reason.WEAK_SIGNATURE_ALGORITHM, f"{who}: signature algorithm {cert.signature_oid} is not supported"
        )
    kind, hash_name = alg
    if kind in ("ed25519", "ed448"):
        if kind not in policy.key_types:
            raise who.fail(Reason.WEAK_SIGNATURE_ALGORITHM, f"{who}: {kind} signatures are not allowed by policy")
        return
    if hash_name is None:  # PSS
        hash_name = cert.signature_hash
        if hash_name in (None, "unknown") or cert.signature_params is None:
            # RFC 4055 §3.1: the parameters name the hash. Parameters that cannot be
            # decoded at all made the certificate malformed when it was parsed.
            raise who.fail(
                Reason.WEAK_SIGNATURE_ALGORITHM,
                f"{who}: its RSASSA-PSS parameters name a hash or mask generation mtlscore does not support",
            )
    if hash_name not in policy.signature_hashes:
        raise who.fail(
            Reason.WEAK_SIGNATURE_ALGORITHM,
            f"{who}: signed with {(hash_name or 'an unknown hash').upper()}, which policy does not allow "
            f"(allowed: {', '.join(sorted(policy.signature_hashes))})",
        )


# allowed_signature_oids by the two policy fields it reads (a handful of policies per process). Keyed
# by their values, not Policy.epoch: a copy made with dataclasses.replace keeps the epoch.
_ALLOWED: dict[tuple[frozenset[str], frozenset[str]], frozenset[str]] = {}


def allowed_signature_oids(policy: Policy) -> frozenset[str]:
    """The signature algorithm OIDs :func:`check_signature_algorithm` allows under ``policy`` whatever the
    certificate's parameters: those with a fixed hash (or EdDSA) that the policy allows.

    RSASSA-PSS is not among them (its hash is in its parameters): a certificate with a
    signature algorithm outside this set is for :func:`check_signature_algorithm` to judge.
    """
    key = (policy.signature_hashes, policy.key_types)
    found = _ALLOWED.get(key)
    if found is None:
        found = frozenset(
            oid for oid, (kind, hash_name) in _SIG_ALGS.items()
            if (kind in policy.key_types if kind in ("ed25519", "ed448")
                else hash_name is not None and hash_name in policy.signature_hashes)
        )
        if len(_ALLOWED) >= 64:
            _ALLOWED.clear()
        _ALLOWED[key] = found
    return found


_PKCS1 = padding.PKCS1v15()
# One ECDSA parameters object per hash, shared by every verification.
_ECDSA = {name: ec.ECDSA(h) for name, h in _HASH_OBJECTS.items()}


def _verify(cert: Certificate, key: Any) -> bool:
    alg = _SIG_ALGS.get(cert.signature_oid)
    if alg is None or key is None:
        return False
    kind = alg[0]
    # The issuer's key must be of the signature algorithm's kind (no RSA key for an ECDSA signature).
    if key_kind(key) != kind:
        return False
    hash_name = alg[1]
    try:
        if kind == "rsa":
            if hash_name is None:  # PSS: padding and hash from the decoded parameters
                params = cert.signature_params
                hash_alg = signature_hash_algorithm(cert)
                if not isinstance(params, padding.PSS) or hash_alg is None:
                    return False
                key.verify(cert.signature, cert.tbs, params, hash_alg)
            else:
                key.verify(cert.signature, cert.tbs, _PKCS1, _HASH_OBJECTS[hash_name])
        elif kind == "ec":
            assert hash_name is not None
            key.verify(cert.signature, cert.tbs, _ECDSA[hash_name])
        else:  # ed25519, ed448
            key.verify(cert.signature, cert.tbs)
    except InvalidSignature:
        return False
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return False
    return True


class SignatureCache(BoundedLRU[tuple[bytes, bytes], bool]):
    """Bounded LRU of verified links: (issuer SPKI digest, subject DER digest) → bool."""

    def __init__(self, size: int = 65536) -> None:
        super().__init__(size)
        self.verifications = 0

    def verify(self, subject: Certificate, issuer: Certificate) -> bool:
        key = (issuer.spki_sha256, subject.sha256)
        found = self.lookup(key)
        if found is not None:
            return found
        self.verifications += 1
        result = _verify(subject, issuer.public_key)
        self.store(key, result)
        return result

    def verify_once(self, subject: Certificate, issuer: Certificate) -> bool:
        """Like :meth:`verify`, neither looked up nor stored: for a link that is asked about once.

        A client certificate's own signature is verified once per first
        connection (a reconnecting client hits the verdict cache), so storing it
        would only push the shared CA links out of this cache, and looking it up
        would cost its certificate a SHA-256 of the DER (the key) for a link
        that is almost never there.
        """
        self.verifications += 1
        return _verify(subject, issuer.public_key)

    def clear(self) -> None:
        super().clear()
        self.verifications = 0


SIGNATURES = SignatureCache()


def verify_link(subject: Certificate, issuer: Certificate, cache: SignatureCache | None = None) -> bool:
    """Whether ``issuer``'s key verifies ``subject``'s signature (cached)."""
    return (cache or SIGNATURES).verify(subject, issuer)
