"""Certificates and keys ↔ JWK (joserfc), x5c and x5t#S256."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlscore import pki
from mtlscore.reasons import ConfigError
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import (
    jwk_from_certificate,
    jwk_from_public_key,
    jwk_matches_certificate,
    jwk_thumbprint,
    public_key_from_jwk,
    x5c_certificates,
)


def spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


_CURVES = {"P-256": (ec.SECP256R1(), 2**256 - 2**224), "P-384": (ec.SECP384R1(), 2**384 - 2**300),
           "P-521": (ec.SECP521R1(), 2**520)}
_RSA = [pki.new_key("rsa") for _ in range(3)] + [pki.new_key("rsa-3072")]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(_CURVES)), st.integers(min_value=1, max_value=2**255))
def test_ec_round_trip(curve: str, scalar: int) -> None:
    key = ec.derive_private_key(scalar % (_CURVES[curve][1] - 1) + 1, _CURVES[curve][0]).public_key()
    jwk = jwk_from_public_key(key)
    assert jwk["kty"] == "EC" and jwk["crv"] == curve and "d" not in jwk
    assert spki(public_key_from_jwk(jwk)) == spki(key)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=57, max_size=57), st.booleans())
def test_okp_round_trip(seed25519: bytes, seed448: bytes, use448: bool) -> None:
    key = (ed448.Ed448PrivateKey.from_private_bytes(seed448) if use448
           else ed25519.Ed25519PrivateKey.from_private_bytes(seed25519)).public_key()
    jwk = jwk_from_public_key(key)
    assert jwk["kty"] == "OKP" and jwk["crv"] == ("Ed448" if use448 else "Ed25519")
    assert spki(public_key_from_jwk(jwk)) == spki(key)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(_RSA), st.text(min_size=1, max_size=10))
def test_rsa_round_trip_and_extra_members(key: Any, kid: str) -> None:
    jwk = jwk_from_public_key(key, kid=kid, use="sig")
    assert jwk["kty"] == "RSA" and jwk["kid"] == kid and "d" not in jwk and "p" not in jwk
    assert spki(public_key_from_jwk(jwk)) == spki(key.public_key())


def test_certificate_jwk_has_x5c_and_x5t() -> None:
    root = pki.root()
    inter = root.intermediate()
    leaf = inter.leaf("CN=jwk")
    cert, chain = parse_certificate(leaf.der), [parse_certificate(inter.der)]
    jwk = jwk_from_certificate(cert, chain=chain)
    # RFC 7517 §4.7: standard base64 (not url-safe) DER, leaf first.
    assert [base64.b64decode(x) for x in jwk["x5c"]] == [leaf.der, inter.der]
    assert jwk["x5t#S256"] == base64.urlsafe_b64encode(hashlib.sha256(leaf.der).digest()).rstrip(b"=").decode()
    assert jwk["kid"] == jwk_thumbprint(jwk)  # RFC 7638 by default
    assert x5c_certificates(jwk)[0] == cert
    assert jwk_matches_certificate(jwk, cert)
    assert not jwk_matches_certificate(jwk, parse_certificate(inter.der))
    assert jwk_from_certificate(cert, kid="k1")["kid"] == "k1"


def test_rfc7638_thumbprint_example() -> None:
    # RFC 7638 §3.1 example key and thumbprint.
    jwk = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29", "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
        "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdA"
        "ZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-"
        "kEgU8awapJzKnqDKgw")}
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("jwk", "fragment"),
    [
        ({"kty": "oct", "k": "c2VjcmV0"}, "not a public-key type"),
        ({"kty": "RSA", "n": "AQAB"}, "lacks e"),
        ({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, "bad EC JWK"),
        ({"kty": "EC", "crv": "P-999", "x": "AA", "y": "AA"}, "bad EC JWK"),
        ({"kty": "OKP", "crv": "X25519"}, "lacks x"),
        ("not a mapping", "JSON object"),
    ],
)
def test_bad_jwk(jwk: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        public_key_from_jwk(jwk, key="jwks.keys[3]")
    assert info.value.key == "jwks.keys[3]" and fragment in str(info.value)


def test_bad_x5c() -> None:
    with pytest.raises(ConfigError) as info:
        x5c_certificates({"x5c": ["bm90IGEgY2VydA=="]}, key="jwks.keys[0]")
    assert info.value.key == "jwks.keys[0].x5c[0]"
    with pytest.raises(ConfigError):
        x5c_certificates({"x5c": "MIIB"})


def test_unsupported_key_types() -> None:
    with pytest.raises(ConfigError):
        jwk_from_public_key(dsa.generate_private_key(1024).public_key())


@pytest.mark.parametrize(("spec", "alg"), [("ec", "ES256"), ("ec-p384", "ES384"), ("ec-p521", "ES512"),
                                           ("rsa", "PS256"), ("ed25519", "EdDSA"), ("ec-k256", None)])
def test_default_algorithm(spec: str, alg: str | None) -> None:
    from mtlscore.x509.jwk import default_algorithm

    assert default_algorithm(jwk_from_public_key(pki.new_key(spec))) == alg
