"""mtlscore.oauth: the RFC 8705 client registry, one authenticate call, cnf, server metadata."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mtlscore import ConfigError, Reason, TrustStore, Validator, pki
from mtlscore.identity.jwks import NeedJwks
from mtlscore.oauth import UNKNOWN_CLIENT, Client, ClientRegistry, authenticate, server_metadata
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_certificate

NOW = pki.NOW
ROOT = pki.root("CN=Partner Root")
DN = "CN=partner-abc,O=PartnerABC"
GOOD = ROOT.leaf(DN, san_dns=["api.partner.example"])
OTHER = ROOT.leaf("CN=someone-else,O=PartnerABC")
SELF = pki.root("CN=fintech", ca=False, eku=[pki.CLIENT_AUTH])
SELF_ROTATED = pki.root("CN=fintech", ca=False, eku=[pki.CLIENT_AUTH])
IMPOSTOR = pki.root(DN, ca=False, eku=[pki.CLIENT_AUTH])  # the right name, no CA behind it
VALIDATOR = Validator(TrustStore([ROOT.pem]))
URL = "https://fintech.example/jwks.json"


def registry() -> ClientRegistry:
    return ClientRegistry({
        "partner-abc": {"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": DN},
        "by-dns": {"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": "api.partner.example"},
        "fintech": {"token_endpoint_auth_method": "self_signed_tls_client_auth",
                    "jwks": {"keys": [jwk_from_certificate(parse_certificate(SELF.der))]}},
        "fintech-uri": {"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks_uri": URL},
    })


def auth(reg: ClientRegistry, client_id: str | None, who: pki.Issued | None, **kw: Any) -> Any:
    chain = [who.chain_pem] if who is not None else []
    verdict = VALIDATOR.validate(chain[0], at=NOW) if chain else None
    return reg.authenticate(client_id, certificate=who.der if who else None, verdict=verdict, at=NOW, **kw)


def test_pki_client_by_subject_dn_or_san() -> None:
    reg = registry()
    ok = auth(reg, "partner-abc", GOOD)
    assert ok.ok and ok.client.method == "tls_client_auth" and ok.cnf == {"x5t#S256": ok.certificate.x5t_s256}
    assert auth(reg, "by-dns", GOOD).ok
    wrong = auth(reg, "partner-abc", OTHER)
    assert (wrong.ok, wrong.reason) == (False, "identity_unmapped")
    err = wrong.error()
    assert (err.status, err.error) == (401, "invalid_client") and "identity_unmapped" in err.description


def test_impostor_with_the_registered_name_but_no_ca_is_refused() -> None:
    r = auth(registry(), "partner-abc", IMPOSTOR)
    assert not r.ok and r.reason == Reason.UNTRUSTED.value and r.error().error == "invalid_client"


def test_verdict_for_another_certificate_does_not_count() -> None:
    verdict = VALIDATOR.validate(GOOD.chain_pem, at=NOW)
    r = registry().authenticate("partner-abc", certificate=OTHER.der, verdict=verdict, at=NOW)
    assert not r.ok and "another certificate" in r.detail


def test_self_signed_by_registered_key() -> None:
    reg = registry()
    r = auth(reg, "fintech", SELF)
    assert r.ok and r.jwk is not None and r.cnf["x5t#S256"] == parse_certificate(SELF.der).x5t_s256
    bad = auth(reg, "fintech", SELF_ROTATED)
    assert (bad.reason, bad.error().status) == ("not_allowlisted", 401)
    # A PKI client's certificate does not authenticate a self-signed client either.
    assert auth(reg, "fintech", GOOD).reason == "not_allowlisted"


def test_unknown_client_no_certificate_and_method_filter() -> None:
    reg = registry()
    for cid in ("nobody", None):
        r = auth(reg, cid, GOOD)
        assert r.reason == UNKNOWN_CLIENT and r.error().error == "invalid_client"
    assert auth(reg, "partner-abc", None).reason == "not_provided"
    r = auth(reg, "fintech", SELF, methods=["tls_client_auth"])
    assert r.reason == "method_not_allowed"
    junk = reg.authenticate("partner-abc", certificate=b"not a certificate", verdict=None, at=NOW)
    assert junk.reason == "malformed"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_jwks_uri_client_is_fetched_through_the_callback(anyio_backend: str) -> None:
    reg = registry()
    first = auth(reg, "fintech-uri", SELF)
    assert first.need == NeedJwks(URL, reg.cache.limits.max_bytes, reg.cache.limits.timeout)
    body = json.dumps({"keys": [jwk_from_certificate(parse_certificate(SELF.der))]}).encode()
    calls: list[str] = []

    async def fetch(cache: Any, request: NeedJwks) -> None:
        calls.append(request.url)
        cache.answer(request, status=200, body=body, cache_control="max-age=600", now=0)

    r = await authenticate(reg, fetch, "fintech-uri", certificate=SELF.der, verdict=None, at=NOW)
    assert r.ok and calls == [URL]


@pytest.mark.parametrize(("meta", "key"), [
    ({"token_endpoint_auth_method": "client_secret_basic"}, "clients.c.token_endpoint_auth_method"),
    ({"token_endpoint_auth_method": "tls_client_auth"}, "clients.c.tls_client_auth"),
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": DN,
      "tls_client_auth_san_dns": "x.example"}, "clients.c.tls_client_auth_san_dns"),
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": DN, "jwks_uri": URL},
     "clients.c.jwks"),
    ({"token_endpoint_auth_method": "self_signed_tls_client_auth"}, "clients.c.jwks"),
    ({"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks_uri": URL, "jwks": {"keys": []}},
     "clients.c.jwks"),
    ({"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks_uri": "file:///etc/passwd"},
     "clients.c.jwks_uri"),
    ({"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks": "not json"}, "clients.c.jwks"),
    ({"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks_uri": URL,
      "tls_client_auth_subject_dn": DN}, "clients.c.tls_client_auth_subject_dn"),
])
def test_bad_metadata_names_the_member(meta: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        Client.from_metadata("c", meta)
    assert e.value.key == key


def test_server_metadata() -> None:
    meta = server_metadata("https://as.example", token_endpoint="https://as.example/token",
                           mtls_endpoint_aliases={"token_endpoint": "https://mtls.as.example/token"},
                           jwks_uri="https://as.example/jwks")
    assert meta["tls_client_certificate_bound_access_tokens"] is True
    assert meta["token_endpoint_auth_methods_supported"] == ["tls_client_auth", "self_signed_tls_client_auth"]
    assert meta["mtls_endpoint_aliases"] == {"token_endpoint": "https://mtls.as.example/token"}
    assert meta["jwks_uri"] == "https://as.example/jwks"
    with pytest.raises(ConfigError) as e:
        server_metadata("https://as.example", token_endpoint="https://as.example/token",
                        mtls_endpoint_aliases={"token_endpoint": "http://mtls.as.example/token"})
    assert e.value.key == "mtls_endpoint_aliases.token_endpoint"
