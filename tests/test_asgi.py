"""The ASGI middleware, driven directly with scopes (no server): verdicts, statuses, state."""

from __future__ import annotations

import asyncio
import json
import ssl
from datetime import timedelta

import pytest

from mtlscore import ConfigError, Reason, TrustStore, Validator, pki
from mtlscore.asgi import BoundToken, MtlsMiddleware, status_for
from mtlscore.identity.identity_map import IdentityMap, Rule
from mtlscore.jwt import issue_bound_token
from mtlscore.proxy import headers as h
from mtlscore.proxy.trusted import TrustedProxy
from mtlscore.runtimes import tls
from mtlscore.runtimes.uvicorn_tls import presented_chain, tls_extension
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_public_key

ROOT = pki.root()
INTER = ROOT.intermediate()
GOOD = INTER.leaf("partner-abc", san_dns=["partner.example"])
UNMAPPED = INTER.leaf("stranger")
WRONG_EKU = INTER.leaf("partner-abc", eku=[pki.SERVER_AUTH])
EXPIRED = INTER.leaf("partner-abc", not_after=pki.NOW - timedelta(days=1))
ROGUE = pki.root("Rogue Root").leaf("partner-abc")
TRUST = TrustStore(anchors=[ROOT.pem])
IDMAP = IdentityMap([Rule.for_account("partner-abc", anchors=TRUST, cn="partner-abc")])
VALIDATOR = Validator(TRUST)
AS_KEY = pki.new_key("ec")
JWKS = {"keys": [jwk_from_public_key(AS_KEY.public_key(), kid="as1", alg="ES256", use="sig")]}
NGINX = TrustedProxy(name="nginx", networks=("10.0.0.5/32",), format="nginx")


def tls_scope(chain, *, client=("192.0.2.10", 5555), headers=(), source="chain"):
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": list(headers),
        "client": client,
        "state": {"from_lifespan": 1},
    }
    if chain is not None:
        scope["extensions"] = {
            "tls": {
                "client_cert_chain": [c.pem.decode() for c in chain],
                "mtlscore.chain_source": source,
            }
        }
    return scope


class Recorder:
    """The inner app: records the scope it was called with and answers 200."""

    def __init__(self):
        self.scope = None

    async def __call__(self, scope, receive, send):
        self.scope = scope
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def run(mw, scope):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(mw(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


def middleware(**kw):
    app = Recorder()
    kw.setdefault("clock", lambda: pki.NOW)
    return app, MtlsMiddleware(app, kw.pop("validator", VALIDATOR), **kw)


def test_accepts_tls_chain_and_sets_state():
    app, mw = middleware(identity_map=IDMAP)
    status, _, _ = run(mw, tls_scope([GOOD, INTER]))
    assert status == 200
    state = app.scope["state"]
    assert state["from_lifespan"] == 1  # existing state kept
    assert state["mtls_verdict"].ok
    assert state["mtls_principal"].id == "partner-abc"
    assert state["mtls_identity"].subject_dn == "CN=partner-abc"
    assert state["mtls_token_claims"] is None


def test_validator_identity_map_is_used_too():
    app, mw = middleware(validator=Validator(TRUST, identity_map=IDMAP))
    assert run(mw, tls_scope([GOOD, INTER]))[0] == 200
    assert app.scope["state"]["mtls_principal"].id == "partner-abc"


@pytest.mark.parametrize(
    ("chain", "status", "reason"),
    [
        (None, 401, Reason.NOT_PROVIDED),  # plain HTTP, no TLS extension
        ([], 401, Reason.NOT_PROVIDED),
        ([WRONG_EKU, INTER], 403, Reason.INVALID_EKU),
        ([EXPIRED, INTER], 403, Reason.EXPIRED),
        ([ROGUE], 403, Reason.UNTRUSTED),
        ([UNMAPPED, INTER], 403, Reason.IDENTITY_UNMAPPED),
    ],
)
def test_rejections_answer_json(chain, status, reason):
    app, mw = middleware(identity_map=IDMAP)
    got, headers, body = run(mw, tls_scope(chain))
    assert got == status == status_for(reason)
    assert headers[b"content-type"] == b"application/json"
    payload = json.loads(body)
    assert payload["error"] == reason.value
    assert payload["detail"]
    assert app.scope is None  # the app never ran


def test_expose_detail_false_hides_detail():
    _, mw = middleware(expose_detail=False)
    _, _, body = run(mw, tls_scope([ROGUE]))
    assert json.loads(body) == {"error": "untrusted"}


def test_allow_mode_passes_failed_verdict_on():
    app, mw = middleware(mode="allow", identity_map=IDMAP)
    status, _, _ = run(mw, tls_scope([WRONG_EKU, INTER]))
    assert status == 200
    verdict = app.scope["state"]["mtls_verdict"]
    assert not verdict.ok and verdict.reason == Reason.INVALID_EKU
    assert app.scope["state"]["mtls_principal"] is None


def test_clock_is_injected():
    _, late = middleware(clock=lambda: GOOD.cert.not_valid_after_utc + timedelta(seconds=1))
    status, _, body = run(late, tls_scope([GOOD, INTER]))
    assert status == 403 and json.loads(body)["error"] == "expired"


def test_garbage_in_tls_extension_is_malformed():
    _, mw = middleware()
    scope = tls_scope(None)
    scope["extensions"] = {"tls": {"client_cert_chain": ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]}}
    status, _, body = run(mw, scope)
    assert status == 403 and json.loads(body)["error"] == "malformed"


def test_leaf_only_chain_explains_missing_intermediates():
    _, mw = middleware()
    status, _, body = run(mw, tls_scope([GOOD], source="leaf_only"))
    payload = json.loads(body)
    assert status == 403 and payload["error"] == "untrusted"
    assert "only read the leaf" in payload["detail"]


def test_leaf_only_with_intermediates_configured_is_fine_and_noted():
    app, mw = middleware(validator=Validator(TrustStore(anchors=[ROOT.pem], intermediates=[INTER.pem])))
    assert run(mw, tls_scope([GOOD], source="leaf_only"))[0] == 200
    assert any("only read the leaf" in n for n in app.scope["state"]["mtls_verdict"].notes)


# --- proxies ---------------------------------------------------------------------------------


def nginx_header(issued):
    return (b"x-ssl-client-cert", h.emit_nginx_escaped_cert(parse_certificate(issued.der)).encode())


def test_trusted_proxy_header_validated():
    app, mw = middleware(
        validator=Validator(TrustStore(anchors=[ROOT.pem], intermediates=[INTER.pem])),
        proxies=[NGINX],
        identity_map=IDMAP,
    )
    status, _, _ = run(mw, tls_scope(None, client=("10.0.0.5", 40000), headers=[nginx_header(GOOD)]))
    assert status == 200
    assert app.scope["state"]["mtls_principal"].id == "partner-abc"


def test_trusted_proxy_header_revalidated_and_rejected():
    _, mw = middleware(proxies=[NGINX])
    status, _, body = run(mw, tls_scope(None, client=("10.0.0.5", 1), headers=[nginx_header(ROGUE)]))
    assert status == 403 and json.loads(body)["error"] == "untrusted"


def test_trusted_proxy_without_header_is_not_provided():
    _, mw = middleware(proxies=[NGINX])
    status, _, body = run(mw, tls_scope(None, client=("10.0.0.5", 1)))
    payload = json.loads(body)
    assert status == 401 and payload["error"] == "not_provided"
    assert "nginx" in payload["detail"]


def test_spoofed_header_straight_from_client_is_untrusted_proxy():
    app, mw = middleware(proxies=[NGINX])
    status, _, body = run(mw, tls_scope(None, client=("10.0.0.99", 1), headers=[nginx_header(GOOD)]))
    assert status == 403
    assert json.loads(body)["error"] == "untrusted_proxy"
    assert app.scope is None


def test_spoofed_header_over_direct_mtls_is_untrusted_proxy_even_with_good_cert():
    _, mw = middleware(proxies=[NGINX])
    scope = tls_scope([GOOD, INTER], headers=[nginx_header(GOOD)])
    assert json.loads(run(mw, scope)[2])["error"] == "untrusted_proxy"


def test_real_peer_extension_beats_rewritten_client():
    # uvicorn's proxy-header middleware rewrites scope["client"] from X-Forwarded-For;
    # our server hook records the transport's peer, which the middleware prefers.
    _, mw = middleware(proxies=[NGINX])
    scope = tls_scope(None, client=("10.0.0.5", 1), headers=[nginx_header(GOOD)])
    scope["extensions"] = {"mtlscore.peer": ("10.9.9.9", 1)}
    assert json.loads(run(mw, scope)[2])["error"] == "untrusted_proxy"


def test_accept_proxy_verdict():
    proxy = TrustedProxy(
        networks=("10.0.0.5/32",), format="nginx", revalidate=False, verdict_header="x-ssl-client-verify"
    )
    app, mw = middleware(proxies=[proxy])
    ok = [nginx_header(ROGUE), (b"x-ssl-client-verify", b"SUCCESS")]
    assert run(mw, tls_scope(None, client=("10.0.0.5", 1), headers=ok))[0] == 200
    verdict = app.scope["state"]["mtls_verdict"]
    assert verdict.ok and any("without re-validation" in n for n in verdict.notes)
    bad = [nginx_header(GOOD), (b"x-ssl-client-verify", b"FAILED:certificate has expired")]
    status, _, body = run(mw, tls_scope(None, client=("10.0.0.5", 1), headers=bad))
    assert status == 403 and json.loads(body)["error"] == "untrusted"


def test_lifespan_and_other_scopes_pass_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    mw = MtlsMiddleware(app, VALIDATOR)

    async def noop(*a):
        return {}

    asyncio.run(mw({"type": "lifespan"}, noop, noop))
    assert seen == ["lifespan"]


def test_websocket_rejected_with_close():
    _, mw = middleware()
    scope = tls_scope([ROGUE])
    scope["type"] = "websocket"
    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(m):
        sent.append(m)

    asyncio.run(mw(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "untrusted"}]


# --- certificate-bound tokens (RFC 8705 §3) --------------------------------------------------


def token_for(issued, **claims):
    base = {"iss": "https://as.example", "aud": "api", "exp": int((pki.NOW + timedelta(minutes=5)).timestamp())}
    base.update(claims)
    return issue_bound_token(base, AS_KEY, parse_certificate(issued.der), algorithm="ES256", kid="as1")


def bearer(token):
    return (b"authorization", f"Bearer {token}".encode())


def bound_mw(**kw):
    return middleware(
        bound_token=BoundToken(jwks=JWKS, issuer="https://as.example", audience="api", **kw)
    )


def test_bound_token_matching_certificate():
    app, mw = bound_mw()
    status, _, _ = run(mw, tls_scope([GOOD, INTER], headers=[bearer(token_for(GOOD))]))
    assert status == 200
    assert app.scope["state"]["mtls_token_claims"]["aud"] == "api"


def test_bound_token_for_another_certificate_is_401():
    other = INTER.leaf("partner-abc")
    _, mw = bound_mw()
    status, headers, body = run(mw, tls_scope([GOOD, INTER], headers=[bearer(token_for(other))]))
    assert status == 401
    assert json.loads(body)["error"] == "binding_mismatch"
    assert headers[b"www-authenticate"] == b'Bearer error="invalid_token"'


@pytest.mark.parametrize("auth", [None, b"Bearer not-a-jwt", b"Basic dXNlcjpwYXNz"])
def test_missing_or_bad_token_is_invalid_token(auth):
    _, mw = bound_mw()
    headers = [(b"authorization", auth)] if auth else []
    status, resp_headers, body = run(mw, tls_scope([GOOD, INTER], headers=headers))
    assert status == 401
    assert json.loads(body)["error"] == "invalid_token"
    assert resp_headers[b"www-authenticate"] == b'Bearer error="invalid_token"'


def test_bound_token_wrong_audience_is_invalid_token():
    _, mw = bound_mw()
    status, _, body = run(mw, tls_scope([GOOD, INTER], headers=[bearer(token_for(GOOD, aud="other"))]))
    assert status == 401 and json.loads(body)["error"] == "invalid_token"


def test_bound_token_optional():
    app, mw = bound_mw(required=False)
    assert run(mw, tls_scope([GOOD, INTER]))[0] == 200
    assert app.scope["state"]["mtls_token_claims"] is None


def test_bound_token_not_checked_when_certificate_fails():
    _, mw = bound_mw()
    status, _, body = run(mw, tls_scope([ROGUE], headers=[bearer(token_for(ROGUE))]))
    assert status == 403 and json.loads(body)["error"] == "untrusted"


def test_claims_callable_uses_check_cnf():
    good = {"cnf": {"x5t#S256": parse_certificate(GOOD.der).x5t_s256}}
    app, mw = middleware(bound_token=BoundToken(claims=lambda scope: good))
    assert run(mw, tls_scope([GOOD, INTER]))[0] == 200
    assert app.scope["state"]["mtls_token_claims"] is good
    _, mw = middleware(bound_token=BoundToken(claims=lambda scope: {"cnf": {"x5t#S256": "AAAA"}}))
    status, _, body = run(mw, tls_scope([GOOD, INTER]))
    assert status == 401 and json.loads(body)["error"] == "binding_mismatch"
    _, mw = middleware(bound_token=BoundToken(claims=lambda scope: None))
    assert run(mw, tls_scope([GOOD, INTER]))[0] == 401


def test_bound_token_config_errors():
    with pytest.raises(ConfigError):
        BoundToken()
    with pytest.raises(ConfigError):
        BoundToken(jwks=JWKS, claims=lambda s: None)
    with pytest.raises(ConfigError):
        MtlsMiddleware(Recorder(), VALIDATOR, mode="maybe")  # type: ignore[arg-type]


# --- the TLS-extension builder (server side, without a server) -------------------------------


class FakeSSLObject:
    def __init__(self, chain=None, private_chain=None, leaf=None):
        self._chain = chain
        self._leaf = leaf
        if private_chain is not None:
            self._sslobj = type("S", (), {"get_unverified_chain": lambda _self: private_chain})()

    def getpeercert(self, binary_form=False):
        return self._leaf

    def version(self):
        return "TLSv1.3"

    def cipher(self):
        return ("TLS_AES_256_GCM_SHA384", "TLSv1.3", 256)


def test_presented_chain_sources():
    g, i = GOOD.der, INTER.der

    class Public(FakeSSLObject):
        def get_unverified_chain(self):
            return [g, i]

    assert presented_chain(Public()) == ([g, i], "chain")

    class Private:
        def public_bytes(self, encoding):
            assert encoding == 2  # DER
            return g

    assert presented_chain(FakeSSLObject(private_chain=[Private()])) == ([g], "chain")
    assert presented_chain(FakeSSLObject(private_chain=None, leaf=g)) == ([g], "leaf_only")
    # CPython's server side reports a missing peer certificate as [None].
    assert presented_chain(FakeSSLObject(private_chain=[None])) == ([], "none")
    assert presented_chain(FakeSSLObject()) == ([], "none")


def test_the_gateway_reads_the_chain_as_the_asgi_hooks_do():
    # One reading of the presented chain for the gateway's engine and the uvicorn/hypercorn
    # hooks: a missing peer certificate reported as [None], a getter that raises, a leaf only.
    g, i = GOOD.der, INTER.der

    class Raising(FakeSSLObject):
        def get_unverified_chain(self):
            raise ssl.SSLError("no chain")

    assert tls.presented_chain(FakeSSLObject(private_chain=[None])) == ((), False)
    assert tls.presented_chain(FakeSSLObject(private_chain=[None], leaf=g)) == ((g,), True)
    assert tls.presented_chain(Raising(leaf=g)) == ((g,), True)
    assert tls.presented_chain(FakeSSLObject(private_chain=[g, i])) == ((g, i), False)
    assert presented_chain(Raising(leaf=g)) == ([g], "leaf_only")


def test_tls_extension_shape():
    ext = tls_extension(FakeSSLObject(leaf=GOOD.der))
    assert ext["client_cert_chain"] == [parse_certificate(GOOD.der).pem]
    assert ext["client_cert_name"] == "CN=partner-abc"
    assert ext["client_cert_error"] is None
    assert ext["tls_version"] == 0x0304
    assert ext["mtlscore.chain_source"] == "leaf_only"


def test_radar_records_accepted_certificates_with_their_account_and_warns_once(caplog):
    """The middleware feeds an expiry radar (mtlscore.gateway.radar): accepted chains only."""
    import logging

    from mtlscore.gateway.radar import Radar

    soon = INTER.leaf("partner-abc", not_after=pki.NOW + timedelta(days=3))
    radar = Radar(horizon=timedelta(days=30))
    mw = MtlsMiddleware(Recorder(), VALIDATOR, identity_map=IDMAP, radar=radar, clock=lambda: pki.NOW)
    caplog.set_level(logging.WARNING, logger="mtlscore.asgi")
    for chain in ([soon, INTER], [soon, INTER], [GOOD, INTER], [ROGUE], [UNMAPPED, INTER]):
        run(mw, tls_scope(chain))
    clients = sorted((r for r in radar.rows() if r.kind == "client"), key=lambda r: r.not_after)
    assert [(r.account, r.count) for r in clients] == [("partner-abc", 2), ("partner-abc", 1)]
    assert clients[0].chain == (soon.der, INTER.der)  # as presented, for mtlscore preview
    assert [r.subject for r in radar.rows() if r.kind == "intermediate"] == [parse_certificate(INTER.der).subject_text]
    warned = [json.loads(r.getMessage()) for r in caplog.records if "cert_expiry_warning" in r.getMessage()]
    assert [(w["kind"], w["serial"]) for w in warned] == [("client", format(soon.serial, "x"))]
