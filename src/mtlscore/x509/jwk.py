"""Certificates and public keys as JWKs (RFC 7517), and back. JOSE is joserfc's.

A JWK made from a certificate carries ``x5c`` (RFC 7517 §4.7: standard
base64 DER, leaf first) and ``x5t#S256`` (§4.9), which is what a client
registers for RFC 8705 ``self_signed_tls_client_auth``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, CertificatePublicKeyTypes

from ..reasons import CertificateRejected, ConfigError
from ..types import JSONObject, JSONValue
from .cert import Certificate, load_certificates

__all__ = [
    "default_algorithm",
    "jwk_from_certificate",
    "jwk_from_public_key",
    "jwk_matches_certificate",
    "jwk_thumbprint",
    "public_key_from_jwk",
    "x5c_certificates",
]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
_KEY_PARAMS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
_PRIVATE_PARAMS = ("d", "p", "q", "dp", "dq", "qi", "k")


def _joserfc() -> Any:
    try:
        from joserfc import jwk
    except ImportError:  # pragma: no cover - joserfc is in the jwt and test extras
        raise ConfigError("JWK support needs joserfc: pip install 'mtlscore[jwt]'", key="jwks") from None
    return jwk


def jwk_from_public_key(
    key: CertificatePublicKeyTypes | CertificateIssuerPrivateKeyTypes | None, **params: JSONValue
) -> JSONObject:
    """The public JWK of a cryptography public (or private) key; extra members from ``params``.

    Raises :class:`ConfigError` for a key type JOSE cannot express (e.g. DSA).
    """
    jwk = _joserfc()
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                  | ed448.Ed448PrivateKey):
        key = key.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        cls = jwk.RSAKey
    elif isinstance(key, ec.EllipticCurvePublicKey):
        cls = jwk.ECKey
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        cls = jwk.OKPKey
    else:
        raise ConfigError(f"a {type(key).__name__} cannot be written as a JWK", key="jwk")
    try:
        out: JSONObject = dict(cls.import_key(key).as_dict(private=False))
    except Exception as exc:  # noqa: BLE001 - e.g. an EC curve JOSE has no name for
        raise ConfigError(f"cannot express this key as a JWK: {exc}", key="jwk") from None
    out.update({k: v for k, v in params.items() if v is not None})
    return out


# RFC 7518 §3.1 / RFC 8037 §3.1: the JWS algorithm that goes with each key. RSA is
# PS256 (RSASSA-PSS), what TLS 1.3 and FAPI 2.0 allow, rather than PKCS#1 v1.5.
_DEFAULT_ALG = {("EC", "P-256"): "ES256", ("EC", "P-384"): "ES384", ("EC", "P-521"): "ES512",
                ("OKP", "Ed25519"): "EdDSA", ("OKP", "Ed448"): "EdDSA"}


def default_algorithm(jwk: Mapping[str, object]) -> str | None:
    """The JWS ``alg`` for a public JWK: PS256 for RSA, ES256/384/512 by curve, EdDSA; None if unknown."""
    kty = jwk.get("kty")
    if kty == "RSA":
        return "PS256"
    return _DEFAULT_ALG.get((str(kty), str(jwk.get("crv"))))


def jwk_thumbprint(jwk: Mapping[str, object]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url). Raises ConfigError on a bad JWK."""
    kty = jwk.get("kty") if isinstance(jwk, Mapping) else None
    required = {"oct": ("k",), **_KEY_PARAMS}.get(str(kty))
    if required is None or any(not isinstance(jwk.get(p), str) for p in required):
        raise ConfigError(f"cannot compute the thumbprint of a {kty!r} JWK", key="jwk")
    # RFC 7638 §3.2: only the required members, nothing else.
    try:
        return str(_joserfc().thumbprint({"kty": kty, **{p: jwk[p] for p in required}}))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"cannot compute the JWK thumbprint: {exc}", key="jwk") from None


def jwk_from_certificate(
    cert: Certificate, *, chain: Sequence[Certificate] = (), kid: str | None = None, **params: JSONValue
) -> JSONObject:
    """The certificate's public key as a JWK with ``x5c`` (cert, then ``chain``) and ``x5t#S256``.

    ``kid`` defaults to the RFC 7638 thumbprint. Raises :class:`ConfigError`
    when the key cannot be a JWK.
    """
    out = jwk_from_public_key(cert.public_key, **params)
    out["kid"] = kid or jwk_thumbprint(out)
    out["x5c"] = [base64.b64encode(c.der).decode("ascii") for c in (cert, *chain)]
    out["x5t#S256"] = cert.x5t_s256
    return out


def public_key_from_jwk(jwk: Mapping[str, object], *, key: str = "jwk") -> PublicKey:
    """The public key a JWK describes (RSA n/e, EC crv/x/y, OKP crv/x).

    Symmetric (``oct``) and unknown key types, and broken parameters, raise
    :class:`ConfigError` naming ``key``.
    """
    if not isinstance(jwk, Mapping):
        raise ConfigError("a JWK must be a JSON object", key=key)
    kty = jwk.get("kty")
    if not isinstance(kty, str) or kty not in _KEY_PARAMS:  # a JSON array/object is unhashable
        raise ConfigError(f"kty {kty!r} is not a public-key type (RSA, EC, OKP)", key=key)
    missing = [p for p in _KEY_PARAMS[kty] if not isinstance(jwk.get(p), str)]
    if missing:
        raise ConfigError(f"{kty} JWK lacks {', '.join(missing)}", key=key)
    public = {p: jwk[p] for p in _KEY_PARAMS[kty]}
    public["kty"] = kty
    try:
        imported = _joserfc().JWKRegistry.import_key(public)
        native = imported.public_key
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - joserfc raises several types for bad members
        raise ConfigError(f"bad {kty} JWK: {exc}", key=key) from None
    if not isinstance(native, PublicKey):
        raise ConfigError(f"unsupported {kty} key", key=key)
    return native


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def x5c_certificates(jwk: Mapping[str, object], *, key: str = "jwk") -> list[Certificate]:
    """The certificates of a JWK's ``x5c`` (RFC 7517 §4.7: standard base64 DER, not base64url)."""
    raw = jwk.get("x5c")
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
        raise ConfigError("x5c must be a non-empty array of base64 strings", key=f"{key}.x5c")
    certs = []
    for i, item in enumerate(raw):
        try:
            der = base64.b64decode(item, validate=True)
            certs.extend(load_certificates(der, max_count=1))
        except (binascii.Error, ValueError, CertificateRejected):
            raise ConfigError("is not a base64 DER certificate", key=f"{key}.x5c[{i}]") from None
    return certs


def jwk_matches_certificate(jwk: Mapping[str, object], cert: Certificate, *, key: str = "jwk") -> bool:
    """Whether a registered JWK names ``cert``: by its ``x5c`` leaf or by the same public key.

    Raises :class:`ConfigError` for a JWK that is unusable (bad parameters, or an
    ``x5c`` whose leaf key differs from the JWK's key: RFC 7517 §4.7).
    """
    has_params = isinstance(jwk, Mapping) and any(p in jwk for p in ("n", "x"))
    certs = x5c_certificates(jwk, key=key) if isinstance(jwk, Mapping) else []
    if certs and has_params:
        if not hmac.compare_digest(_spki(public_key_from_jwk(jwk, key=key)), certs[0].spki_der):
            raise ConfigError("the x5c certificate's key is not the JWK's key (RFC 7517 §4.7)", key=key)
    if certs and hmac.compare_digest(certs[0].sha256, cert.sha256):
        return True
    if certs and not has_params:
        # Key by the x5c leaf: a re-issued certificate for the same key still matches.
        return hmac.compare_digest(certs[0].spki_der, cert.spki_der)
    return hmac.compare_digest(_spki(public_key_from_jwk(jwk, key=key)), cert.spki_der)
