"""RFC 8705: x5t#S256, cnf checks, tls_client_auth, self-signed JWKS, OAuth error mapping."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mtlscore import pki
from mtlscore.identity.binding import (
    OAuthError,
    TlsClientAuth,
    check_cnf,
    check_self_signed_tls_client_auth,
    check_tls_client_auth,
    cnf_claim,
    oauth_error,
    x5t_s256,
)
from mtlscore.reasons import CertificateRejected, ConfigError, Reason
from mtlscore.x509.cert import Certificate, parse_certificate
from mtlscore.x509.jwk import jwk_from_certificate, jwk_from_public_key


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.root("CN=OAuth Clients CA")


@pytest.fixture(scope="module")
def leaf(ca: pki.Issued) -> pki.Issued:
    return ca.leaf("CN=client-1,O=Acme", san_dns=["client.acme.example"], san_uri=["https://acme.example/c1"],
                   san_email=["ops@acme.example"], san_ip=["192.0.2.7"])


def c(issued: pki.Issued) -> Certificate:
    return parse_certificate(issued.der)


def rejected(reason: Reason, fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(CertificateRejected) as info:
        fn(*args, **kw)
    assert info.value.reason is reason
    return info.value.detail


def test_x5t_s256_independent(leaf: pki.Issued) -> None:
    want = base64.urlsafe_b64encode(hashlib.sha256(leaf.der).digest()).rstrip(b"=").decode()
    assert x5t_s256(c(leaf)) == want == x5t_s256(leaf.der) == x5t_s256(leaf.pem)
    assert cnf_claim(c(leaf)) == {"x5t#S256": want}
    rejected(Reason.MALFORMED, x5t_s256, b"\x30\x03junk")


def test_check_cnf(ca: pki.Issued, leaf: pki.Issued) -> None:
    cert = c(leaf)
    check_cnf({"cnf": cnf_claim(cert)}, cert)
    # Another certificate, even with the same name and key type, is not bound.
    other = c(ca.leaf("CN=client-1,O=Acme"))
    assert "not to the presented" in rejected(Reason.BINDING_MISMATCH, check_cnf, {"cnf": cnf_claim(other)}, cert)
    # A tampered thumbprint (one character changed) fails.
    t = cert.x5t_s256
    tampered = ("A" if t[0] != "A" else "B") + t[1:]
    rejected(Reason.BINDING_MISMATCH, check_cnf, {"cnf": {"x5t#S256": tampered}}, cert)
    for bad in ([t], t + "=", t[:-1], t.replace(t[5], "+"), 42):
        rejected(Reason.BINDING_MISMATCH, check_cnf, {"cnf": {"x5t#S256": bad}}, cert)
    rejected(Reason.BINDING_MISMATCH, check_cnf, {"cnf": "x"}, cert)
    rejected(Reason.BINDING_MISMATCH, check_cnf, {"cnf": cnf_claim(cert)}, None)


def test_missing_cnf_per_policy(leaf: pki.Issued) -> None:
    cert = c(leaf)
    assert "not bound" in rejected(Reason.BINDING_MISMATCH, check_cnf, {"sub": "x"}, cert)
    check_cnf({"sub": "x"}, cert, required=False)
    check_cnf({"cnf": {"jkt": "abc"}}, cert, required=False)  # another confirmation method
    rejected(Reason.BINDING_MISMATCH, check_cnf, {"cnf": {"jkt": "abc"}}, cert)
    # present x5t#S256 is always checked
    rejected(Reason.BINDING_MISMATCH, check_cnf, {"cnf": {"x5t#S256": "A" * 43}}, cert, required=False)


@pytest.mark.parametrize(
    ("param", "value", "ok"),
    [
        ("tls_client_auth_subject_dn", "o=acme, cn=client-1", False),
        ("tls_client_auth_subject_dn", "cn=CLIENT-1, o=acme", True),
        ("tls_client_auth_san_dns", "Client.Acme.Example", True),
        ("tls_client_auth_san_dns", "other.acme.example", False),
        ("tls_client_auth_san_uri", "https://acme.example/c1", True),
        ("tls_client_auth_san_uri", "https://acme.example/c2", False),
        ("tls_client_auth_san_ip", "192.0.2.7", True),
        ("tls_client_auth_san_ip", "::ffff:192.0.2.8", False),
        ("tls_client_auth_san_email", "ops@ACME.example", True),
        ("tls_client_auth_san_email", "dev@acme.example", False),
    ],
)
def test_tls_client_auth(leaf: pki.Issued, param: str, value: str, ok: bool) -> None:
    meta = {"client_id": "c1", "token_endpoint_auth_method": "tls_client_auth", param: value}
    if ok:
        check_tls_client_auth(meta, c(leaf))
    else:
        assert param in rejected(Reason.IDENTITY_UNMAPPED, check_tls_client_auth, meta, c(leaf))


@pytest.mark.parametrize(
    ("meta", "key"),
    [
        ({}, "tls_client_auth"),
        ({"tls_client_auth_san_dns": "a.example", "tls_client_auth_subject_dn": "CN=a"}, "tls_client_auth_san_dns"),
        ({"tls_client_auth_san_dns": "*.example.com"}, "tls_client_auth_san_dns"),
        ({"tls_client_auth_san_ip": "not-an-ip"}, "tls_client_auth_san_ip"),
        ({"tls_client_auth_subject_dn": "CN=a,,"}, "tls_client_auth_subject_dn"),
        ({"tls_client_auth_san_uri": 7}, "tls_client_auth_san_uri"),
        ({"token_endpoint_auth_method": "private_key_jwt", "tls_client_auth_san_dns": "a.example"},
         "token_endpoint_auth_method"),
    ],
)
def test_tls_client_auth_metadata_errors(meta: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        TlsClientAuth.from_metadata(meta)
    assert info.value.key == key


def test_self_signed_by_x5c_and_by_key_with_rotation() -> None:
    old = pki.root("CN=client-1 (2025)", key="rsa")
    new = pki.root("CN=client-1 (2026)")
    old_c, new_c = c(old), c(new)
    jwks = {"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},            # wrong key type: skipped
        {"kty": "EC", "crv": "P-256", "x": "bad", "y": "bad"},     # broken: skipped
        {"kty": "RSA", "kid": "rsa-old", **{k: v for k, v in jwk_from_certificate(old_c).items()
                                            if k in ("n", "e")}},  # by raw key
        {"kid": "new", "x5c": jwk_from_certificate(new_c)["x5c"]},  # by x5c only
    ]}
    assert check_self_signed_tls_client_auth(jwks, old_c)["kid"] == "rsa-old"
    assert check_self_signed_tls_client_auth(json.dumps(jwks), new_c)["kid"] == "new"
    # The same key in a re-issued certificate still matches the x5c entry by key.
    reissued = pki.make("CN=client-1 (2026 renewed)", key=new.key)
    assert check_self_signed_tls_client_auth(jwks, c(reissued))["kid"] == "new"
    stranger = c(pki.root("CN=someone else"))
    detail = rejected(Reason.NOT_ALLOWLISTED, check_self_signed_tls_client_auth, jwks, stranger)
    assert "4 registered" in detail and "unusable" in detail


def test_self_signed_inconsistent_x5c_is_skipped() -> None:
    a, b = pki.root("CN=a"), pki.root("CN=b")
    # x5c says certificate a, the key members say b's key (RFC 7517 §4.7 forbids this).
    bad = {**jwk_from_public_key(b.key), "x5c": jwk_from_certificate(c(a))["x5c"]}
    rejected(Reason.NOT_ALLOWLISTED, check_self_signed_tls_client_auth, {"keys": [bad]}, c(a))
    rejected(Reason.NOT_ALLOWLISTED, check_self_signed_tls_client_auth, {"keys": [bad]}, c(b))


def test_self_signed_wrong_curve_and_type_never_match() -> None:
    me = pki.root("CN=me")
    other_curve = jwk_from_public_key(ec.generate_private_key(ec.SECP384R1()))
    okp = jwk_from_public_key(pki.new_key("ed25519"))
    rejected(Reason.NOT_ALLOWLISTED, check_self_signed_tls_client_auth, {"keys": [other_curve, okp]}, c(me))


@pytest.mark.parametrize("jwks", ["not json", "[]", {"keys": "x"}, {"kty": "EC"}])
def test_self_signed_bad_jwks_is_config_error(jwks: Any) -> None:
    with pytest.raises(ConfigError) as info:
        check_self_signed_tls_client_auth(jwks, c(pki.root("CN=x")))
    assert info.value.key == "jwks"


def test_oauth_error_mapping() -> None:
    token = oauth_error(Reason.NOT_ALLOWLISTED, endpoint="token", detail="no key matches")
    assert (token.status, token.error) == (401, "invalid_client")
    assert token.body == {"error": "invalid_client", "error_description": "not_allowlisted: no key matches"}
    assert ("Cache-Control", "no-store") in token.headers
    grant = oauth_error("binding_mismatch", endpoint="token")
    assert (grant.status, grant.error) == (400, "invalid_grant")
    res = oauth_error(Reason.BINDING_MISMATCH, endpoint="resource", detail='bound to "x"\\y\n')
    assert (res.status, res.error) == (401, "invalid_token")
    challenge = dict(res.headers)["WWW-Authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="binding_mismatch: bound to ')
    # RFC 6750 §3: no quote, backslash or control character inside the description.
    inner = challenge.split('error_description="', 1)[1][:-1]
    assert all(" " <= ch <= "~" and ch not in '"\\' for ch in inner)
    assert json.loads(res.json_bytes())["error"] == "invalid_token"
    assert isinstance(res, OAuthError)
    with pytest.raises(ValueError):
        oauth_error(Reason.REVOKED, endpoint="authorize")  # type: ignore[arg-type]
