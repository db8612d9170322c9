"""Secrets and side channels: constant-time compares, hashed API keys, nothing secret in logs,
error bodies that never echo attacker input unescaped."""

from __future__ import annotations

import ast
import base64
import hmac
import json
import logging
import pathlib
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from mtlscore import ConfigError, pki
from mtlscore.config import parse_config
from mtlscore.gateway.appauth import AccountAuth, RateLimiter, authorize, hash_api_key
from mtlscore.gateway.events import Close, Gateway, Log, ReadClient, TLSFacts, WriteClient
from mtlscore.gateway.session import Session
from mtlscore.identity.binding import check_cnf, oauth_error
from mtlscore.jwt import issue_bound_token
from mtlscore.proxy.trusted import TrustedProxy
from mtlscore.x509.cert import parse_certificate
from mtlscore.x509.jwk import jwk_from_certificate, jwk_matches_certificate

NOW = pki.NOW
SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "mtlscore"
API_KEY = "sk_live_DO-NOT-LOG-4f1c2a9b7e"


# -- constant-time compares -------------------------------------------------------------


@pytest.fixture
def compare_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


@pytest.fixture(scope="module")
def leaf() -> pki.Issued:
    return pki.root().intermediate().leaf("CN=secret-test", san_dns=["a.example"])


def test_api_keys_are_compared_in_constant_time(compare_spy, leaf) -> None:
    auth = AccountAuth(
        "acct", api_key_sha256=(bytes.fromhex(hash_api_key("other")), bytes.fromhex(hash_api_key(API_KEY)))
    )
    ok = authorize(
        auth,
        headers=[(b"x-api-key", API_KEY.encode())],
        peer_ip="127.0.0.1",
        cert=parse_certificate(leaf.der),
        at=NOW,
        now=0.0,
        limiter=RateLimiter(),
    )
    assert ok.ok
    # Every registered hash is compared (no early exit), digest against digest.
    assert len(compare_spy) == 2 and all(len(a) == len(b) == 32 for a, b in compare_spy)


def test_cnf_thumbprints_are_compared_in_constant_time(compare_spy, leaf) -> None:
    cert = parse_certificate(leaf.der)
    check_cnf({"cnf": {"x5t#S256": cert.x5t_s256}}, cert)
    assert compare_spy


def test_proxy_pins_are_compared_in_constant_time(compare_spy, leaf) -> None:
    cert = parse_certificate(leaf.der)
    proxy = TrustedProxy("p", thumbprints=(cert.x5t_s256,), spki_pins=("AAAA",))
    assert proxy.matches(None, cert)
    assert len(compare_spy) == 2  # both pins examined, whichever matched


def test_registered_jwk_keys_are_compared_in_constant_time(compare_spy, leaf) -> None:
    cert = parse_certificate(leaf.der)
    assert jwk_matches_certificate(jwk_from_certificate(cert), cert)
    assert compare_spy


SECRET_WORDS = ("api_key", "apikey", "x5t", "thumbprint", "spki_pin", "pin", "nonce", "token", "secret", "password")


def _secret_compares() -> Iterator[str]:
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare) or not any(isinstance(o, ast.Eq | ast.NotEq) for o in node.ops):
                continue
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) or (isinstance(o, ast.Name) and o.id.isupper()) for o in operands):
                continue  # comparing with a literal or a module constant (an OID, a kind): no secret
            names = " ".join(ast.unparse(o).lower() for o in operands)
            if any(w in names for w in SECRET_WORDS):
                yield f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}"


def test_no_secret_is_compared_with_equals() -> None:
    # Thumbprints, pins, keys, nonces and tokens go through hmac.compare_digest (STYLE.md §11).
    assert list(_secret_compares()) == []


# -- API keys only stored hashed ------------------------------------------------------------


def test_an_account_table_refuses_a_plaintext_api_key() -> None:
    with pytest.raises(ConfigError, match="hex SHA-256") as exc:
        AccountAuth.from_mapping("acct", {"api_key_sha256": [API_KEY]})
    assert exc.value.key == "accounts.acct.api_key_sha256"


def test_an_account_keeps_only_digests() -> None:
    auth = AccountAuth.from_mapping("acct", {"api_key_sha256": [hash_api_key(API_KEY)]})
    assert auth.api_key_sha256 == (bytes.fromhex(hash_api_key(API_KEY)),)
    assert API_KEY not in repr(auth)


def test_a_plain_api_key_config_key_is_refused(tmp_path: pathlib.Path) -> None:
    root = pki.root()
    (tmp_path / "ca.pem").write_bytes(root.pem)
    doc = {"trust": {"anchors": ["ca.pem"]}, "accounts": [{"id": "a", "match": {"cn": "x"}, "api_key": API_KEY}]}
    with pytest.raises(ConfigError) as exc:
        parse_config(doc, base_dir=tmp_path)
    assert "api_key" in (exc.value.key or "")


# -- a gateway's decisions: logs and error bodies ------------------------------------------


class World:
    def __init__(self, tmp: pathlib.Path) -> None:
        self.root = pki.root("CN=Secret Root")
        self.inter = self.root.intermediate("CN=Secret Issuing")
        self.leaf = self.inter.leaf("CN=client,O=Acme")
        self.other = self.inter.leaf("CN=other,O=Acme")
        self.signer = pki.root("CN=Token Issuer")
        server = self.root.leaf("localhost", eku=[pki.SERVER_AUTH])
        for name, data in {"ca.pem": self.root.pem, "server.pem": server.pem, "server.key": server.key_pem}.items():
            (tmp / name).write_bytes(data)
        self.keys = [self.leaf.key, server.key, self.signer.key]
        jwks = {"keys": [{**jwk_from_certificate(parse_certificate(self.signer.der)), "kid": "k1", "use": "sig"}]}
        claims = {"iss": "https://as", "exp": int((NOW + timedelta(hours=1)).timestamp()), "sub": "client"}
        self.token = issue_bound_token(claims, self.signer.key, parse_certificate(self.leaf.der), kid="k1")
        self.wrong_token = issue_bound_token(claims, self.signer.key, parse_certificate(self.other.der), kid="k1")
        toml = f"""
[trust]
anchors = ["ca.pem"]
[[accounts]]
id = "acme"
match = {{ o = "Acme" }}
api_key_sha256 = ["{hash_api_key(API_KEY)}"]
jwks = '{json.dumps(jwks)}'
[server]
listen = "127.0.0.1:0"
certificate = "server.pem"
key = "server.key"
"""
        cfg = parse_config(tomllib.loads(toml), base_dir=tmp)
        self.gateway = Gateway(validator=cfg.validator(), server=cfg.server)

    def exchange(self, request: bytes, *, chain: tuple[bytes, ...] | None = None) -> tuple[bytes, list[Log]]:
        """One connection through the sans-IO session: (bytes written to the client, log actions)."""
        chain = chain if chain is not None else (self.leaf.der, self.inter.der)
        s = Session(self.gateway, TLSFacts(chain=chain, peer=("127.0.0.1", 5000)), at=NOW)
        out, logs, fed = b"", [], False
        for _ in range(1000):
            a = s.next_action(at=NOW, now=1.0)
            if isinstance(a, Close):
                break
            if isinstance(a, ReadClient):
                s.receive_client(b"" if fed else request)
                fed = True
            elif isinstance(a, WriteClient):
                out += a.data
            elif isinstance(a, Log):
                logs.append(a)
        return out, logs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("secrets"))


def _request(target: str = "/", **headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: gw", "Connection: close"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


def _log_lines(world: World, logs: list[Log], caplog: pytest.LogCaptureFixture) -> str:
    from mtlscore.runtimes.state import GatewayState, Snapshot

    state = GatewayState(Snapshot(world.gateway, lambda: None))  # type: ignore[arg-type, return-value]
    with caplog.at_level(logging.INFO, logger="mtlscore.gateway"):
        for log in logs:
            state.record(log.decision)
    return "\n".join(r.getMessage() for r in caplog.records)


def _secrets(world: World) -> list[str]:
    out = [API_KEY, world.token, world.wrong_token, "PRIVATE KEY"]
    out += [t.split(".")[2] for t in (world.token, world.wrong_token)]  # the signatures alone
    for key in world.keys:  # the private scalars, in every encoding a log could carry
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        out += [scalar.hex(), base64.b64encode(scalar).decode()[:40], base64.urlsafe_b64encode(scalar).decode()[:40]]
    return out


@pytest.mark.parametrize(
    "case",
    ["api_key_ok", "api_key_wrong", "token_ok", "token_wrong_cert", "token_garbage", "no_credential", "bad_cert"],
)
def test_decision_logs_carry_no_secret(world: World, caplog: pytest.LogCaptureFixture, case: str) -> None:
    headers = {
        "api_key_ok": {"X_Api_Key": API_KEY},
        "api_key_wrong": {"X_Api_Key": API_KEY + "x"},
        "token_ok": {"Authorization": f"Bearer {world.token}"},
        "token_wrong_cert": {"Authorization": f"Bearer {world.wrong_token}"},
        "token_garbage": {"Authorization": f"Bearer {world.token[:-10]}{API_KEY}"},
        "no_credential": {},
        "bad_cert": {"X_Api_Key": API_KEY},
    }[case]
    chain = (pki.root().leaf("CN=stranger").der,) if case == "bad_cert" else None
    response, logs = world.exchange(_request("/x", **headers), chain=chain)
    assert logs, "every request is logged"
    text = _log_lines(world, logs, caplog) + "\n" + response.decode("latin-1")
    leaked = [s[:24] for s in _secrets(world) if s in text]
    assert leaked == [], text
    status = _split(response)[0]
    assert (status == 200) is (case in ("api_key_ok", "token_ok")), response


HOSTILE = '"><script>alert(1)</script>\\"\x7f\u00e9'


@pytest.mark.parametrize(
    "request_bytes",
    [
        _request("/%22%3E%3Cscript%3E?q=" + "x" * 3000),
        _request("/", Authorization="Bearer " + HOSTILE.encode("utf-8").decode("latin-1")),
        _request("/", Authorization='Bearer a.b.c"\\<tag>'),
        _request("/", X_Api_Key=HOSTILE.encode("utf-8").decode("latin-1")),
        b"GET /\x01\x02 HTTP/1.1\r\nHost: gw\r\n\r\n",
        b'GET / HTTP/1.1\r\nHost: gw\r\nBad Header<script>: "x"\r\n\r\n',
        b"\x16\x03\x01garbage that is not HTTP <b>at all</b>\r\n\r\n",
    ],
    ids=["target", "bearer-hostile", "bearer-quotes", "api-key-hostile", "control-chars", "bad-header", "not-http"],
)
def test_error_bodies_never_echo_attacker_input_unescaped(world: World, request_bytes: bytes) -> None:
    response, _ = world.exchange(request_bytes)
    status, headers, body = _split(response)
    assert status >= 400
    assert headers.get("content-type") == "application/json"
    doc = json.loads(body)  # valid JSON: whatever the attacker sent is JSON-escaped inside strings
    assert isinstance(doc, dict) and "error" in doc
    # Nothing the attacker sent appears raw in the bytes: quotes, backslashes and
    # control characters would have to be escaped to be there at all.
    for raw in (b'"><script>', b'c"\\<tag>', b"\x01\x02", b"\x7f"):
        assert raw not in body
    for name, value in headers.items():
        assert all(0x20 <= ord(ch) <= 0x7E for ch in value), (name, value)
    challenge = headers.get("www-authenticate", "")
    if "error_description=" in challenge:
        description = challenge.split('error_description="', 1)[1]
        assert description.count('"') == 1 and "\\" not in description, challenge  # only the closing quote


def test_oauth_error_descriptions_are_quotable(leaf) -> None:
    err = oauth_error("binding_mismatch", endpoint="resource", detail=HOSTILE + "\r\nSet-Cookie: x=1")
    challenge = dict(err.headers)["WWW-Authenticate"]
    assert "\r" not in challenge and "\n" not in challenge
    description = challenge.split('error_description="', 1)[1]
    assert description.count('"') == 1 and "\\" not in description
    assert json.loads(err.json_bytes())["error"] == "invalid_token"


def test_a_gateway_log_line_is_one_json_object_per_decision(world: World, caplog: pytest.LogCaptureFixture) -> None:
    # A hostile target with CR/LF-looking bytes cannot forge a second log line.
    target = '/a%0d%0a{"event":"forged"}'
    response, logs = world.exchange(_request(target, X_Api_Key=API_KEY))
    lines = _log_lines(world, logs, caplog).splitlines()
    assert len(lines) == len(logs) >= 1
    for line in lines:
        assert json.loads(line)["event"] == "mtls_decision"


def test_decision_detail_does_not_carry_the_token_on_a_base64_error(world: World, caplog) -> None:
    token = "eyJ" + base64.urlsafe_b64encode(b'{"alg":"none"').decode() + "." + API_KEY + ".sig"
    response, logs = world.exchange(_request("/", Authorization=f"Bearer {token}"))
    text = _log_lines(world, logs, caplog) + response.decode("latin-1")
    assert API_KEY not in text and token not in text


def test_server_config_does_not_hold_key_material(world: World) -> None:
    # The [server] table names the key file; the key itself is read by the TLS layer only.
    text = repr(replace(world.gateway.server))
    assert "PRIVATE KEY" not in text


def _upstream_request(world: World, request: bytes) -> bytes:
    """What a forwarding gateway writes to its upstream for ``request``."""
    from mtlscore.gateway.events import OpenUpstream, ReadUpstream, WriteUpstream
    from mtlscore.gateway.settings import Upstream

    gateway = replace(world.gateway, server=replace(world.gateway.server, upstream=Upstream("127.0.0.1", 9)))
    s = Session(gateway, TLSFacts(chain=(world.leaf.der, world.inter.der), peer=("127.0.0.1", 5000)), at=NOW)
    written, fed = b"", False
    for _ in range(1000):
        a = s.next_action(at=NOW, now=1.0)
        if isinstance(a, Close):
            break
        if isinstance(a, ReadClient):
            s.receive_client(b"" if fed else request)
            fed = True
        elif isinstance(a, OpenUpstream):
            s.upstream_connected()
        elif isinstance(a, WriteUpstream):
            written += a.data
        elif isinstance(a, ReadUpstream):
            s.receive_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    return written


@pytest.mark.parametrize(
    "name",
    [
        "X-Mtls-Account",
        "X_Mtls_Account",
        "x_mtls_account",
        "X-Client-Cert-Present",
        "X_Client_Cert_Present",
        "X-Client-Cert_Hash",
        "Client-Cert",
        "Client_Cert",
        "X-Forwarded-Client-Cert",
        "X_Forwarded_Client_Cert",
    ],
)
def test_client_identity_headers_and_look_alikes_never_reach_the_upstream(world: World, name: str) -> None:
    # CGI/WSGI map "_" to "-": X_Mtls_Account would arrive as HTTP_X_MTLS_ACCOUNT, the
    # gateway's own identity header (found by review while fuzzing the session).
    head = _upstream_request(world, _request("/x", X_Api_Key=API_KEY, **{name: "attacker-spoof"}))
    assert head.startswith(b"GET "), head
    assert b"attacker-spoof" not in head
    assert b"x-mtls-account: acme" in head.lower()
