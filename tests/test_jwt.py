"""Certificate-bound JWT access tokens: joserfc verification, alg allowlist, claims, cnf."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import OctKey, RSAKey

from mtlscore import pki
from mtlscore.identity.binding import cnf_claim
from mtlscore.jwt import TokenInvalid, issue_bound_token, verify_bound_token
from mtlscore.reasons import CertificateRejected, ConfigError, MtlsError, Reason
from mtlscore.x509.cert import Certificate, parse_certificate
from mtlscore.x509.jwk import jwk_from_public_key

NOW = pki.NOW
EXP = int((NOW + timedelta(minutes=10)).timestamp())


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"ec": pki.new_key("ec"), "rsa": pki.new_key("rsa"), "old": pki.new_key("ec")}


@pytest.fixture(scope="module")
def jwks(keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": [
        {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "hmac"},  # must be ignored
        {"kty": "EC", "crv": "P-256", "x": "junk", "y": "junk", "kid": "broken"},
        jwk_from_public_key(keys["old"], kid="old"),
        jwk_from_public_key(keys["ec"], kid="ec-1"),
        jwk_from_public_key(keys["rsa"], kid="rsa-1"),
    ]}


@pytest.fixture(scope="module")
def cert() -> Certificate:
    return parse_certificate(pki.root().leaf("CN=client").der)


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": "https://as.example", "aud": "https://api.example", "sub": "client", "exp": EXP, **extra}


def test_round_trip_each_algorithm(keys: dict[str, Any], jwks: dict[str, Any], cert: Certificate) -> None:
    for alg, key, kid in (("ES256", keys["ec"], "ec-1"), ("RS256", keys["rsa"], "rsa-1"),
                          ("PS256", keys["rsa"], "rsa-1")):
        token = issue_bound_token(claims(), key, cert, algorithm=alg, kid=kid)
        out = verify_bound_token(token, jwks, cert, at=NOW, issuer="https://as.example",
                                 audience="https://api.example")
        assert out["sub"] == "client" and out["cnf"] == cnf_claim(cert)


def test_without_kid_tries_every_key_and_rotation(keys: dict[str, Any], jwks: dict[str, Any],
                                                  cert: Certificate) -> None:
    token = issue_bound_token(claims(), keys["ec"], cert)
    assert verify_bound_token(token, json.dumps(jwks), cert, at=NOW)["sub"] == "client"
    old = issue_bound_token(claims(), keys["old"], cert, kid="old")
    assert verify_bound_token(old, jwks, cert, at=NOW)["sub"] == "client"


def test_other_certificate_is_binding_mismatch(keys: dict[str, Any], jwks: dict[str, Any],
                                               cert: Certificate) -> None:
    token = issue_bound_token(claims(), keys["ec"], cert, kid="ec-1")
    thief = parse_certificate(pki.root().leaf("CN=client").der)
    with pytest.raises(CertificateRejected) as info:
        verify_bound_token(token, jwks, thief, at=NOW)
    assert info.value.reason is Reason.BINDING_MISMATCH
    unbound = joserfc_jwt.encode({"alg": "ES256", "kid": "ec-1"}, claims(),
                                 jwk_key(keys["ec"]), algorithms=["ES256"])
    with pytest.raises(CertificateRejected):
        verify_bound_token(unbound, jwks, cert, at=NOW)
    assert verify_bound_token(unbound, jwks, cert, at=NOW, require_cnf=False)["sub"] == "client"


def jwk_key(private: Any) -> Any:
    from joserfc.jwk import ECKey

    return ECKey.import_key(private)


def test_tampered_payload_fails(keys: dict[str, Any], jwks: dict[str, Any], cert: Certificate) -> None:
    token = issue_bound_token(claims(), keys["ec"], cert, kid="ec-1")
    h, p, s = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(p + "=="))
    body["sub"] = "admin"
    p2 = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenInvalid, match="signature"):
        verify_bound_token(f"{h}.{p2}.{s}", jwks, cert, at=NOW)


@pytest.mark.parametrize(
    ("mutate", "kw", "fragment"),
    [
        ({"exp": int(NOW.timestamp())}, {}, "expired"),
        ({"nbf": EXP - 60}, {}, "not acceptable"),
        ({"iss": "https://evil.example"}, {"issuer": "https://as.example"}, "not acceptable"),
        ({"aud": ["https://other.example"]}, {"audience": "https://api.example"}, "not acceptable"),
        ({"exp": None}, {}, "lacks"),
    ],
)
def test_claims(keys: dict[str, Any], jwks: dict[str, Any], cert: Certificate,
                mutate: dict[str, Any], kw: dict[str, Any], fragment: str) -> None:
    body = {k: v for k, v in {**claims(), **mutate}.items() if v is not None}
    token = issue_bound_token(body, keys["ec"], cert, kid="ec-1")
    with pytest.raises(TokenInvalid, match=fragment) as info:
        verify_bound_token(token, jwks, cert, at=NOW, **kw)
    assert isinstance(info.value, MtlsError) and info.value.error == "invalid_token"


def test_leeway(keys: dict[str, Any], jwks: dict[str, Any], cert: Certificate) -> None:
    token = issue_bound_token(claims(exp=int(NOW.timestamp()) - 5), keys["ec"], cert, kid="ec-1")
    assert verify_bound_token(token, jwks, cert, at=NOW, leeway_seconds=30)


def test_alg_allowlist(keys: dict[str, Any], jwks: dict[str, Any], cert: Certificate) -> None:
    # HS256 signed with the RSA public key bytes (the classic key-confusion attack).
    rsa_pub = jwks["keys"][4]
    hs = joserfc_jwt.encode({"alg": "HS256", "kid": "rsa-1"}, claims(cnf=cnf_claim(cert)),
                            OctKey.import_key(json.dumps(rsa_pub).encode()), algorithms=["HS256"])
    with pytest.raises(TokenInvalid, match="not allowed"):
        verify_bound_token(hs, jwks, cert, at=NOW)
    # Using the JWKS's own "oct" key also fails: it is never loaded.
    hs2 = joserfc_jwt.encode({"alg": "HS256", "kid": "hmac"}, claims(cnf=cnf_claim(cert)),
                             OctKey.import_key(base64.urlsafe_b64decode("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0")),
                             algorithms=["HS256"])
    with pytest.raises(TokenInvalid):
        verify_bound_token(hs2, jwks, cert, at=NOW)
    none_token = (base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode() + "."
                  + base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=").decode() + ".")
    with pytest.raises(TokenInvalid, match="not allowed"):
        verify_bound_token(none_token, jwks, cert, at=NOW)
    es = issue_bound_token(claims(), keys["ec"], cert, kid="ec-1")
    with pytest.raises(TokenInvalid, match="not allowed"):
        verify_bound_token(es, jwks, cert, at=NOW, algorithms=["RS256"])
    with pytest.raises(ConfigError):
        verify_bound_token(es, jwks, cert, at=NOW, algorithms=["HS256"])
    with pytest.raises(ConfigError):
        issue_bound_token(claims(), b"secret", cert, algorithm="HS256")


def test_kid_and_key_type_selection(keys: dict[str, Any], jwks: dict[str, Any], cert: Certificate) -> None:
    wrong_kid = issue_bound_token(claims(), keys["ec"], cert, kid="rsa-1")
    with pytest.raises(TokenInvalid, match="no ES256 key with kid"):
        verify_bound_token(wrong_kid, jwks, cert, at=NOW)
    unknown = issue_bound_token(claims(), keys["ec"], cert, kid="nope")
    with pytest.raises(TokenInvalid, match="kid"):
        verify_bound_token(unknown, jwks, cert, at=NOW)
    stranger = issue_bound_token(claims(), pki.new_key("ec"), cert)
    with pytest.raises(TokenInvalid, match="does not verify"):
        verify_bound_token(stranger, jwks, cert, at=NOW)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d.e", "!!!.e30.sig", "W10.e30.sig", "x" * 20000, 7])
def test_garbage_tokens(jwks: dict[str, Any], cert: Certificate, token: Any) -> None:
    with pytest.raises(TokenInvalid):
        verify_bound_token(token, jwks, cert, at=NOW)


@pytest.mark.parametrize("bad", ["nope", {"keys": "x"}, {"keys": [{"kty": "oct", "k": "AAAA"}]}])
def test_bad_jwks(cert: Certificate, bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        verify_bound_token("a.b.c", bad, cert, at=NOW)
    assert info.value.key == "jwks"


def test_naive_time_refused(jwks: dict[str, Any], cert: Certificate) -> None:
    with pytest.raises(ConfigError):
        verify_bound_token("a.b.c", jwks, cert, at=NOW.replace(tzinfo=None))


def test_rsa_private_jwk_signing(keys: dict[str, Any], jwks: dict[str, Any], cert: Certificate) -> None:
    private = RSAKey.import_key(keys["rsa"]).as_dict(private=True)
    token = issue_bound_token(claims(), private, cert, algorithm="PS256", kid="rsa-1")
    assert verify_bound_token(token, jwks, cert, at=NOW)["cnf"] == cnf_claim(cert)


def test_issue_with_a_joserfc_key_object(keys: dict[str, Any], jwks: dict[str, Any], cert: Certificate) -> None:
    # Issue #19 item 10: a joserfc key object used to fail with KeyError: 0.
    from joserfc.jwk import ECKey

    jkey = ECKey.import_key(keys["ec"])
    token = issue_bound_token(claims(), jkey, cert, kid="ec-1")
    assert verify_bound_token(token, jwks, cert, at=NOW)["sub"] == "client"
    with pytest.raises(ConfigError, match="public key cannot sign"):
        issue_bound_token(claims(), ECKey.import_key(keys["ec"].public_key()), cert)
    with pytest.raises(ConfigError, match="cannot sign PS256"):
        issue_bound_token(claims(), jkey, cert, algorithm="PS256")
    with pytest.raises(ConfigError, match="symmetric"):
        issue_bound_token(claims(), OctKey.generate_key(256), cert)
