"""RFC 8705 §2.2 self-signed clients known by a registered key: matching, sans-IO fetching, config."""

from __future__ import annotations

import json
import pathlib
from datetime import timedelta

import pytest

from mtlscore import ConfigError, Reason, TrustStore, pki
from mtlscore.config import read_account_files
from mtlscore.identity.identity_map import Principal, accounts_from_config
from mtlscore.identity.jwks import JwksCache, NeedJwks
from mtlscore.identity.self_signed import SelfSignedClient, is_candidate, match
from mtlscore.reasons import CertificateRejected
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_certificate, jwk_from_public_key

NOW = pki.NOW
URL = "https://client.example/jwks"


def self_signed(cn: str = "CN=client", **kw: object) -> pki.Issued:
    return pki.root(cn, ca=False, eku=[pki.CLIENT_AUTH], **kw)  # type: ignore[arg-type]


def cert_of(issued: pki.Issued):  # type: ignore[no-untyped-def]
    return parse_certificate(issued.der)


def test_inline_registration_matches_by_key_and_refuses_others() -> None:
    me, stranger = self_signed(), self_signed()
    client = SelfSignedClient(Principal("acme"), jwks={"keys": [jwk_from_public_key(me.key, kid="me")]})
    found = match([client], cert_of(me), at=NOW, now=0, cache=None)
    assert not isinstance(found, NeedJwks) and found.client.principal.id == "acme" and found.jwk["kid"] == "me"
    with pytest.raises(CertificateRejected) as e:
        match([client], cert_of(stranger), at=NOW, now=0, cache=None)
    assert e.value.reason is Reason.NOT_ALLOWLISTED and "registered by no" in e.value.detail


def test_expired_self_signed_certificate_is_expired_even_with_a_registered_key() -> None:
    old = self_signed(not_before=NOW - timedelta(days=10), not_after=NOW - timedelta(days=1))
    client = SelfSignedClient(Principal("acme"), jwks={"keys": [jwk_from_certificate(cert_of(old))]})
    with pytest.raises(CertificateRejected) as e:
        match([client], cert_of(old), at=NOW, now=0, cache=None)
    assert e.value.reason is Reason.EXPIRED


def test_jwks_uri_asks_then_matches_and_refreshes_once_for_an_unknown_key() -> None:
    me, rotated = self_signed(), self_signed()
    client = SelfSignedClient(Principal("acme"), jwks_uri=URL)
    cache = JwksCache()
    need = match([client], cert_of(me), at=NOW, now=0, cache=cache)
    assert isinstance(need, NeedJwks) and need.url == URL
    cache.answer(need, status=200, body=json.dumps({"keys": [jwk_from_certificate(cert_of(me))]}).encode(),
                 cache_control=None, now=0)
    assert not isinstance(match([client], cert_of(me), at=NOW, now=1, cache=cache), NeedJwks)
    # A new key: one refresh is asked for (after refresh_interval), then not_allowlisted.
    assert isinstance(match([client], cert_of(rotated), at=NOW, now=100, cache=cache), NeedJwks)
    with pytest.raises(CertificateRejected):
        match([client], cert_of(rotated), at=NOW, now=101, cache=cache)


def test_candidates_are_single_self_issued_certificates() -> None:
    root = pki.root()
    assert is_candidate((cert_of(self_signed()),))
    assert not is_candidate((cert_of(root.leaf()),)) and not is_candidate(())


def test_accounts_config(tmp_path: pathlib.Path) -> None:
    me = self_signed()
    (tmp_path / "client.jwks").write_text(json.dumps({"keys": [jwk_from_certificate(cert_of(me))]}))
    root = pki.root()
    trust = TrustStore([root.pem])
    m = accounts_from_config([
        {"id": "file", "method": "self_signed_tls_client_auth", "jwks_file": "client.jwks", "groups": ["g"]},
        {"id": "url", "method": "self_signed_tls_client_auth", "jwks_uri": URL},
    ], trust=trust, files={"client.jwks": (tmp_path / "client.jwks").read_bytes()})
    file_client, url_client = m.self_signed_clients
    assert file_client.principal == Principal("file", ("g",)) and file_client.jwks is not None
    assert url_client.jwks_uri == URL
    for bad, key in [
        ({"id": "x", "method": "self_signed_tls_client_auth", "jwks_file": "missing.jwks"}, "accounts[0].jwks_file"),
        ({"id": "x", "method": "self_signed_tls_client_auth"}, "accounts[0].jwks"),
        ({"id": "x", "method": "self_signed_tls_client_auth", "jwks_uri": "nope"}, "accounts[0].jwks_uri"),
        ({"id": "x", "method": "self_signed_tls_client_auth", "jwks_file": "client.jwks", "jwks_uri": URL},
         "accounts[0].jwks_file"),
    ]:
        with pytest.raises(ConfigError) as e:
            accounts_from_config([bad], trust=trust, files=read_account_files([bad], tmp_path))
        assert e.value.key == key, (bad, e.value)


def test_identity_command_names_the_account_that_registered_the_key(tmp_path: pathlib.Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from mtlscore.cli.main import main

    me, stranger = self_signed("CN=fintech"), self_signed("CN=stranger")
    (tmp_path / "me.pem").write_bytes(me.pem)
    (tmp_path / "stranger.pem").write_bytes(stranger.pem)
    (tmp_path / "root.pem").write_bytes(pki.root().pem)
    (tmp_path / "c.jwks").write_text(json.dumps({"keys": [jwk_from_certificate(cert_of(me))]}))
    (tmp_path / "m.toml").write_text('[trust]\nanchors = ["root.pem"]\n\n[[accounts]]\nid = "fintech"\n'
                                     'method = "self_signed_tls_client_auth"\njwks_file = "c.jwks"\n\n'
                                     '[[accounts]]\nid = "remote"\nmethod = "self_signed_tls_client_auth"\n'
                                     f'jwks_uri = "{URL}"\n')
    assert main(["identity", str(tmp_path / "me.pem"), "--config", str(tmp_path / "m.toml")]) == 0
    out = capsys.readouterr().out
    assert "principal:    fintech" in out and "registered by account fintech" in out
    assert main(["identity", str(tmp_path / "stranger.pem"), "--config", str(tmp_path / "m.toml"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["principal"] is None and "does not fetch" in doc["mapping"]["note"]
