"""``[server] forward_certificate``: the client certificate reaches the upstream in the
configured formats and headers, and the client's own copies of those headers never do
(forged copies, in other cases and with ``_`` for ``-``, are stripped first). Both runtimes."""

from __future__ import annotations

import base64
import json

import pytest
from test_gateway import (  # noqa: F401 - fixtures
    Env,
    Upstream,
    anyio_backend,
    bearer,
    call,
    env,
    gateway,
    request,
    upstream,
)

from mtlscore import load_certificates
from mtlscore.proxy.headers import parse_client_cert, parse_client_cert_chain, parse_nginx_escaped_cert, parse_xfcc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

FORWARDS = [
    {"format": "nginx_escaped", "header": "X-Partner-Cert"},
    {"format": "pem_base64", "header": "X-Cert-B64"},
    {"format": "xfcc"},
    {"format": "rfc9440"},
]
FORGED = [
    ("X-Partner-Cert", "-----BEGIN%20CERTIFICATE-----forged"),
    ("x-partner-cert", "second-copy"),
    ("X_Partner_Cert", "underscore-copy"),
    ("X-Cert-B64", "Zm9yZ2Vk"),
    ("X-Forwarded-Client-Cert", "Hash=00;Subject=\"CN=admin\""),
    ("Client-Cert", ":AAAA:"),
    ("Client-Cert-Chain", ":AAAA:"),
]


def forged_request(e: Env, port: int) -> int:
    """GET /fwd with every forged header, each pair sent as given (duplicates included)."""
    import http.client

    conn = http.client.HTTPSConnection("localhost", port, context=e.client_context("good"), timeout=10)
    try:
        conn.putrequest("GET", "/fwd")
        for name, value in [*FORGED, *bearer(e).items()]:
            conn.putheader(name, value)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def seen_headers(u: Upstream) -> list[tuple[str, str]]:
    return [(k, v) for k, v in u.seen[-1]["headers"]]


@pytest.mark.anyio
async def test_every_configured_format_once_and_forged_copies_stripped(
    env: Env, upstream: Upstream, anyio_backend: str  # noqa: F811
) -> None:
    config = env.config(f"fwd-{anyio_backend}.toml", upstream=f"http://127.0.0.1:{upstream.port}", reject_at="http")
    tables = ", ".join("{" + ", ".join(f'{k} = "{v}"' for k, v in f.items()) + "}" for f in FORWARDS)
    config.write_text(config.read_text() + f"forward_certificate = [{tables}]\n")  # [server] is the last table
    async with gateway(config, anyio_backend) as info:
        assert await call(forged_request, env, info.address.port) == 200
    headers = seen_headers(upstream)
    names = [k for k, _ in headers]
    values = dict(headers)
    for name in ("x-partner-cert", "x-cert-b64", "x-forwarded-client-cert", "client-cert", "client-cert-chain"):
        assert names.count(name) == 1, (name, names)
    assert "x_partner_cert" not in names
    for _, forged in FORGED:
        assert forged not in values.values()
    leaf, *rest = load_certificates(env.dir.joinpath("good.pem").read_bytes())
    assert parse_nginx_escaped_cert(values["x-partner-cert"]).der == leaf.der
    pem = base64.b64decode(values["x-cert-b64"], validate=True)
    assert load_certificates(pem)[0].der == leaf.der and pem.startswith(b"-----BEGIN CERTIFICATE-----")
    [element] = parse_xfcc(values["x-forwarded-client-cert"])
    assert element.cert is not None and element.cert.der == leaf.der
    assert element.hash == leaf.fingerprint_hex and element.subject == leaf.subject_text
    assert parse_client_cert(values["client-cert"]).der == leaf.der
    # The rest of the chain is the validated path without its root anchor (RFC 9440 §2.3: the
    # origin holds its own; here the presented intermediate alone), the same in XFCC's Chain
    # as in RFC 9440's Client-Cert-Chain.
    path_rest = [c.der for c in parse_client_cert_chain(values["client-cert-chain"])]
    assert rest and path_rest == [c.der for c in rest]
    assert [c.der for c in element.chain] == [leaf.der, *path_rest]


@pytest.mark.anyio
async def test_default_is_rfc9440_only(env: Env, upstream: Upstream, anyio_backend: str) -> None:  # noqa: F811
    config = env.config(f"fwd-default-{anyio_backend}.toml", upstream=f"http://127.0.0.1:{upstream.port}",
                        reject_at="http")
    async with gateway(config, anyio_backend) as info:
        status, _, body = await call(request, env, info.address.port, "good", headers={
            **bearer(env), "X-Partner-Cert": "kept: not a configured header"})
    assert status == 200
    names = [k for k, _ in seen_headers(upstream)]
    assert names.count("client-cert") == 1 and names.count("client-cert-chain") == 1
    assert "x-forwarded-client-cert" not in names and "x-cert-b64" not in names
    # A header the operator did not configure is the client's, passed on as sent.
    assert json.loads(body)["headers"]["x-partner-cert"] == "kept: not a configured header"


@pytest.mark.anyio
async def test_an_intermediate_anchor_is_forwarded_a_root_is_not(
    env: Env, upstream: Upstream, anyio_backend: str  # noqa: F811
) -> None:
    # RFC 9440 §2.3 lets the root go (the origin is known to hold it: it validates with its
    # own); an intermediate configured as the anchor stays, the origin may trust only the root.
    (env.dir / "issuing.pem").write_bytes(env.issuing.pem)
    config = env.config(f"fwd-anchor-{anyio_backend}.toml", anchors="issuing.pem",
                        upstream=f"http://127.0.0.1:{upstream.port}", reject_at="http", tls_engine="deferred")
    async with gateway(config, anyio_backend) as info:
        status, _, _ = await call(request, env, info.address.port, "good", headers=bearer(env))
    assert status == 200
    values = dict(seen_headers(upstream))
    _, *rest = load_certificates(env.dir.joinpath("good.pem").read_bytes())
    assert [c.der for c in parse_client_cert_chain(values["client-cert-chain"])] == [c.der for c in rest]
    assert [c.subject_text for c in rest] == ["CN=Partner Issuing,O=PartnerABC"]
