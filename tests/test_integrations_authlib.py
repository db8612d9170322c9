"""mtlscore.integrations.authlib without a server: the two client-auth methods and cnf in JWT access tokens."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("authlib")

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload

from mtlscore import TrustStore, Validator, pki
from mtlscore.identity.jwks import NeedJwks
from mtlscore.integrations.authlib import (
    BoundClient,
    MtlsClientAuth,
    MtlsEvidence,
    MtlsJWTBearerTokenGenerator,
    attach,
)
from mtlscore.oauth import ClientAuthResult, ClientRegistry
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_certificate

NOW = pki.NOW
ROOT = pki.root("CN=CA")
GOOD = ROOT.leaf("CN=partner-abc")
SELF = pki.root("CN=fintech", ca=False, eku=[pki.CLIENT_AUTH])
REGISTRY = ClientRegistry({
    "partner-abc": {"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "CN=partner-abc"},
    "fintech": {"token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks": {"keys": [jwk_from_certificate(parse_certificate(SELF.der))]}},
    "remote": {"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks_uri": "https://x.example/jwks"},
})
VERDICT = Validator(TrustStore([ROOT.pem])).validate(GOOD.chain_pem, at=NOW)


class Model:
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id

    def get_client_id(self) -> str:
        return self.client_id

    def get_allowed_scope(self, scope: str) -> str:
        return scope


def request(client_id: str, evidence: MtlsEvidence | None) -> OAuth2Request:
    r = OAuth2Request("POST", "https://as.example/token")
    r.payload = BasicOAuth2Payload({"client_id": client_id, "grant_type": "client_credentials"})
    return attach(r, evidence) if evidence is not None else r


def query(client_id: str) -> Model | None:
    return Model(client_id) if REGISTRY.get(client_id) else None


AUTH = MtlsClientAuth(REGISTRY, clock=lambda: NOW)


def test_each_method_authenticates_its_own_clients_and_leaves_the_others() -> None:
    tls, self_signed = AUTH.method("tls_client_auth"), AUTH.method("self_signed_tls_client_auth")
    client = tls(query, request("partner-abc", MtlsEvidence(GOOD.der, VERDICT)))
    assert isinstance(client, BoundClient) and client.get_client_id() == "partner-abc"
    assert client.mtls.ok and client.mtls.cnf["x5t#S256"] == parse_certificate(GOOD.der).x5t_s256
    assert self_signed(query, request("partner-abc", MtlsEvidence(GOOD.der, VERDICT))) is None
    assert tls(query, request("fintech", MtlsEvidence(SELF.der))) is None
    assert self_signed(query, request("fintech", MtlsEvidence(SELF.der))).mtls.ok


@pytest.mark.parametrize(("client_id", "evidence", "fragment"), [
    ("partner-abc", None, "not_provided"),
    ("partner-abc", MtlsEvidence(SELF.der), "untrusted"),
    ("fintech", MtlsEvidence(GOOD.der, VERDICT), "not_allowlisted"),
    ("nobody", MtlsEvidence(GOOD.der, VERDICT), "unknown_client"),
    ("remote", MtlsEvidence(SELF.der), "not fetched yet"),
    ("partner-abc", MtlsEvidence(GOOD.der, VERDICT, ClientAuthResult(True, "fintech")), "another client"),
])
def test_refusals_are_401_invalid_client_with_the_reason(client_id: str, evidence: Any, fragment: str) -> None:
    method = "self_signed_tls_client_auth" if client_id in ("fintech", "remote") else "tls_client_auth"
    with pytest.raises(InvalidClientError) as e:
        AUTH.method(method)(query, request(client_id, evidence))
    assert e.value.status_code == 401 and fragment in e.value.description


def test_a_precomputed_result_is_used() -> None:
    result = REGISTRY.authenticate("fintech", certificate=SELF.der, verdict=None, at=NOW)
    client = AUTH.method("self_signed_tls_client_auth")(query, request("fintech", MtlsEvidence(None, None, result)))
    assert client.mtls is result
    need = REGISTRY.authenticate("remote", certificate=SELF.der, verdict=None, at=NOW)
    assert isinstance(need.need, NeedJwks)


def test_jwt_access_tokens_carry_cnf() -> None:
    from joserfc import jwt
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256")

    class Tokens(MtlsJWTBearerTokenGenerator):
        def get_jwks(self) -> Any:
            return key

        def get_audiences(self, client: Any, user: Any, scope: Any) -> str:
            return "https://api.example"

    client = AUTH.method("tls_client_auth")(query, request("partner-abc", MtlsEvidence(GOOD.der, VERDICT)))
    token = Tokens("https://as.example", alg="ES256")(grant_type="client_credentials", client=client, user=None,
                                                     scope="score", include_refresh_token=False)
    claims = jwt.decode(token["access_token"], key).claims
    assert claims["cnf"] == {"x5t#S256": parse_certificate(GOOD.der).x5t_s256}
    plain = Tokens("https://as.example", alg="ES256")(grant_type="client_credentials", client=Model("x"),
                                                    user=None, scope="", include_refresh_token=False)
    assert "cnf" not in jwt.decode(plain["access_token"], key).claims
