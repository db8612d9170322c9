"""Keys and signature algorithms of certificates: a key's kind, size and curve, the hash and
parameters of a signature by its OID, the AlgorithmIdentifiers ``cryptography`` has accepted,
and the namedCurve SubjectPublicKeyInfo shapes (RFC 5480).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography import x509 as cx509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

from . import schema
from ._extensions import SHARED_MAX, oid_text
from .certificate import Certificate, _decoded


def _key_kind(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa"
    return "unknown"


# Key classes → kind: isinstance against the abstract classes once per class, not per certificate.
_KEY_KINDS: dict[type, str] = {}
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def key_kind(key: object) -> str:
    """``rsa``, ``ec``, ``ed25519``, ``ed448``, ``dsa`` or ``unknown``: the kind of a public key."""
    kind = _KEY_KINDS.get(type(key))
    if kind is None:
        kind = _KEY_KINDS[type(key)] = _key_kind(key)
    return kind


def _key_facts(cert: cx509.Certificate) -> tuple[Any, str, int, str | None]:
    """(key, kind, bits, curve) of the certificate's key (kind ``unknown`` when ``cryptography`` cannot load it)."""
    try:
        key: Any = cert.public_key()
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return None, "unknown", 0, None
    return facts_of_key(key)


def facts_of_key(key: Any) -> tuple[Any, str, int, str | None]:
    kind = key_kind(key)
    if kind == "rsa" or kind == "dsa":
        return key, kind, key.key_size, None
    if kind == "ec":
        name = key.curve.name
        return key, "ec", key.curve.key_size, _CURVES.get(name, name)
    if kind == "ed25519":
        return key, kind, 256, None
    if kind == "ed448":
        return key, kind, 456, None
    return key, "unknown", 0, None


# One parameters object per algorithm, shared by every certificate that uses it.
_PKCS1 = padding.PKCS1v15()
_HASHES: dict[str, hashes.HashAlgorithm] = {
    h.name: h for h in (hashes.SHA224(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512())
}
_ECDSA = {name: ec.ECDSA(h) for name, h in _HASHES.items()}
_RSA_PKCS1_OIDS = frozenset(
    ["1.2.840.113549.1.1.4", "1.2.840.113549.1.1.5", "1.2.840.113549.1.1.14", "1.2.840.113549.1.1.11",
     "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13"]
)
_ECDSA_OIDS = frozenset(
    ["1.2.840.10045.4.1", "1.2.840.10045.4.3.1", "1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"]
)


# The common signature algorithms name their hash in the OID: (hash name, parameters) without asking.
BY_OID: dict[str, tuple[str, Any]] = {
    "1.2.840.113549.1.1.14": ("sha224", _PKCS1),
    "1.2.840.113549.1.1.11": ("sha256", _PKCS1),
    "1.2.840.113549.1.1.12": ("sha384", _PKCS1),
    "1.2.840.113549.1.1.13": ("sha512", _PKCS1),
    "1.2.840.10045.4.3.1": ("sha224", _ECDSA["sha224"]),
    "1.2.840.10045.4.3.2": ("sha256", _ECDSA["sha256"]),
    "1.2.840.10045.4.3.3": ("sha384", _ECDSA["sha384"]),
    "1.2.840.10045.4.3.4": ("sha512", _ECDSA["sha512"]),
}


def signature_facts(x509_of: Callable[[], cx509.Certificate], oid: str) -> tuple[str | None, Any]:
    """(hash name, parameters object for verify) of the certificate's signature algorithm.

    The common algorithms are known by their OID; any other is asked of
    ``cryptography``'s certificate object (made by ``x509_of`` only then).
    """
    known = BY_OID.get(oid)
    if known is not None:
        return known
    cert = x509_of()  # malformed when cryptography refuses the certificate
    try:
        alg = cert.signature_hash_algorithm
        name = alg.name if alg is not None else None
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return "unknown", None
    if name is not None and name in _HASHES:
        if oid in _RSA_PKCS1_OIDS:
            return name, _PKCS1
        if oid in _ECDSA_OIDS:
            return name, _ECDSA[name]
    try:
        return name, cert.signature_algorithm_parameters
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return name, None


def signature_hash_algorithm(cert: Certificate) -> hashes.HashAlgorithm | None:
    """The hash object of ``cert``'s signature (shared instances for the common hashes)."""
    name = cert.signature_hash
    if name is not None and name in _HASHES:
        return _HASHES[name]
    try:
        return cert.x509.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return None



# The fixed head of a namedCurve SPKI with an uncompressed point (RFC 5480 §2.1.1, §2.2),
# up to the point, and the SPKI's whole length: a raw SPKI that starts so and is that long
# is the namedCurve encoding (cryptography has decoded the point itself), with no need to
# re-encode the key to compare.
NAMED_CURVE_SPKI = {
    "P-256": (bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200"), 91),
    "P-384": (bytes.fromhex("3076301006072a8648ce3d020106052b81040022036200"), 120),
    "P-521": (bytes.fromhex("30819b301006072a8648ce3d020106052b8104002303818600"), 158),
}


def named_curve_spki(spki: bytes | None, curve: str | None) -> bool:
    shape = NAMED_CURVE_SPKI.get(curve or "")
    return spki is not None and shape is not None and len(spki) == shape[1] and spki.startswith(shape[0])


# Signature algorithms' dotted OIDs by their AlgorithmIdentifier bytes: a handful of
# distinct values, shared by every certificate. An encoding enters only once
# ``cryptography``'s typed AlgorithmIdentifier has accepted it (see signature_algorithm).
ALGORITHMS: dict[bytes, str] = {}


def signature_algorithm(alg_der: bytes, x509_of: Callable[[], cx509.Certificate]) -> str:
    """The signature algorithm's dotted OID: PKCS #1 (NULL parameters) and ECDSA/EdDSA (none) read here.

    An encoding not seen before is also checked by ``cryptography`` (``x509_of``
    loads the certificate; malformed when it refuses): its AlgorithmIdentifier
    knows which parameters each algorithm may carry (say, none for Ed25519).
    Whether it accepts depends on the AlgorithmIdentifier's bytes alone, so the
    answer is kept by them.
    """
    found = ALGORITHMS.get(alg_der)
    if found is not None:
        return found
    x509_of()
    for shape in (schema.AlgorithmNull, schema.AlgorithmOid):
        try:
            found = oid_text(asn1.decode_der(shape, alg_der).algorithm)  # type: ignore[attr-defined]
        except ValueError:
            continue
        if len(ALGORITHMS) < SHARED_MAX:
            ALGORITHMS[alg_der] = found
        return found
    return _decoded(lambda: oid_text(x509_of().signature_algorithm_oid), "signature algorithm")


def key_of(spki_raw: bytes, x509_of: Callable[[], cx509.Certificate]) -> tuple[Any, str, int, str | None]:
    """(key, kind, bits, curve) of the SubjectPublicKeyInfo.

    ``load_der_public_key`` reads the SPKI with the same typed structure as
    ``cryptography``'s certificate (its AlgorithmIdentifier parameters
    included). When it refuses, the certificate decides as before: a structure
    it refuses makes the certificate malformed; a key it cannot load (an
    unsupported algorithm, a point not on its curve) is an unsupported key.
    """
    try:
        # An SPKI (an AlgorithmIdentifier SEQUENCE and a BIT STRING), not the bare PKCS #1
        # RSAPublicKey load_der_public_key would also take.
        spki = asn1.decode_der(schema.SubjectPublicKeyInfo, spki_raw)
        if spki.algorithm.tag_bytes != b"\x30":
            raise ValueError("not an AlgorithmIdentifier")
        key = serialization.load_der_public_key(spki_raw)
    except Exception:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return _key_facts(x509_of())
    return facts_of_key(key)
