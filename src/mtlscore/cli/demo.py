"""``mtlscore demo``: a throwaway PKI, the gateway on loopback, good and bad clients, a table.

Everything runs in one process on 127.0.0.1 with a fresh PKI in a temporary
directory: the gateway (asyncio runtime, ``reject_invalid``, stdlib ``ssl``)
and one Python ``ssl`` client per case. Exit 0 only when every case got the
outcome it should.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import socket
import ssl
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypedDict

import h11

from ..gateway.events import Decision
from .common import Command, arg

__all__ = ["CASES", "COMMAND", "Case", "DemoFiles", "Row", "run", "write_demo_files"]



class Row(TypedDict):
    """One client's line of the demo's table (and of ``--json``)."""

    case: str
    what: str
    expected: str
    got: str
    why: str
    detail: str
    ok: bool


@dataclass(frozen=True, slots=True)
class Case:
    """One demo client: its files, and the reason the gateway must give (None: accepted)."""

    name: str
    cert: str | None
    token: str | None
    expect: str | None
    what: str


CASES: tuple[Case, ...] = (
    Case("good", "good", "good", None, "valid chain, mapped account, token bound to it"),
    Case("expired", "expired", None, "expired", "leaf expired yesterday"),
    Case("wrong EKU", "wrong-eku", None, "invalid_eku", "leaf has serverAuth, not clientAuth"),
    Case("RSA-1024", "rsa1024", None, "rsa_key_too_small", "leaf key is RSA 1024 bits"),
    Case("unknown CA", "unknown-ca", None, "untrusted", "issued by a CA the gateway doesn't know"),
    Case("revoked", "revoked", None, "revoked", "leaf listed on the issuing CA's CRL"),
    Case("wrong bound token", "good", "other", "binding_mismatch", "token bound to another cert"),
    Case("no certificate", None, None, "not_provided", "client sends no certificate"),
)


@dataclass(frozen=True, slots=True)
class DemoFiles:
    """What :func:`write_demo_files` wrote: the folder, the tokens by name, the config to run,
    when the tokens expire."""

    dir: pathlib.Path
    tokens: dict[str, str]
    config: pathlib.Path
    expires: int


def write_demo_files(directory: pathlib.Path, now: datetime, *, tls_engine: str = "ssl") -> DemoFiles:
    """Write the demo PKI, CRL, JWKS and ``mtlscore.toml`` into ``directory``; return paths and tokens.

    Uses real time ``now`` for every validity period.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from .. import pki
    from ..jwt import issue_bound_token
    from ..x509.cert import parse_certificate
    from ..x509.jwk import jwk_from_public_key

    d = directory
    root = pki.root("CN=PartnerABC Root CA,O=PartnerABC", now=now)
    issuing = root.intermediate("CN=PartnerABC Issuing CA,O=PartnerABC")
    dn = "CN=partner-abc-prod-client,OU=RiskOSIntegration,O=PartnerABC"
    leaves = {
        "good": issuing.leaf(dn),
        "expired": issuing.leaf(dn, not_before=now - timedelta(days=400), not_after=now - timedelta(days=1)),
        "wrong-eku": issuing.leaf(dn, eku=[pki.SERVER_AUTH]),
        "rsa1024": issuing.leaf(dn, key="rsa-1024"),
        "revoked": issuing.leaf(dn),
        "unknown-ca": pki.root("CN=Someone Else Root CA,O=Elsewhere", now=now).leaf(dn),
        "other": issuing.leaf(dn),
    }
    server_ca = pki.root("CN=Demo Gateway Server CA", now=now)
    server = server_ca.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"], san_ip=["127.0.0.1"])
    (d / "partner-root.pem").write_bytes(root.pem)
    (d / "issuing.crl").write_bytes(issuing.crl(revoked=[leaves["revoked"]]))
    (d / "server-ca.pem").write_bytes(server_ca.pem)
    (d / "server.pem").write_bytes(server.pem)
    (d / "server.key").write_bytes(server.key_pem)
    (d / "server.key").chmod(0o600)  # a private key: the gateway warns otherwise
    for name, leaf in leaves.items():
        (d / f"{name}.pem").write_bytes(leaf.chain_pem)  # leaf + issuing CA, as a client presents
        (d / f"{name}.key").write_bytes(leaf.key_pem)
    signer = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": [jwk_from_public_key(signer.public_key(), kid="demo-as", use="sig", alg="ES256")]}
    expires = int((now + timedelta(hours=1)).timestamp())
    claims = {"iss": "https://as.demo", "sub": "partner-abc", "iat": int(now.timestamp()), "exp": expires}
    tokens = {
        name: issue_bound_token(claims, signer, parse_certificate(leaves[name].der), kid="demo-as")
        for name in ("good", "other")
    }
    # What replaying a client with curl needs: the tokens, and the key that signs new ones
    # (they expire after an hour; README.txt has the command).
    (d / "token-signer.key").write_bytes(signer.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    (d / "token-signer.key").chmod(0o600)
    (d / "jwks.json").write_text(json.dumps(jwks, indent=2) + "\n")
    for name, token in tokens.items():
        (d / f"{name}.token").write_text(token + "\n")
    config = _config_text(dn=dn, jwks=jwks, tls_engine=tls_engine)
    # mtlscore.toml listens on a fixed port for `mtlscore serve` (README.txt); the demo's
    # own run uses a copy on port 0, so a busy 8443 never stops the demo.
    (d / "mtlscore.toml").write_text(config.replace("{listen}", f"127.0.0.1:{REPLAY_PORT}"))
    (d / "demo-run.toml").write_text(config.replace("{listen}", "127.0.0.1:0"))
    return DemoFiles(d, tokens, d / "demo-run.toml", expires)


REPLAY_PORT = 8443


def _config_text(*, dn: str, jwks: Mapping[str, object], tls_engine: str) -> str:
    """The demo's configuration; ``{listen}`` is left for the caller to fill in."""
    return (
        f"""# Written by `mtlscore demo`.
[trust]
anchors = ["partner-root.pem"]

[revocation]
mode = "soft"
crls = ["issuing.crl"]

[[accounts]]
id = "partner-abc"
anchors = ["partner-root.pem"]
match = {{ subject_dn = "{dn}" }}
jwks = '{json.dumps(jwks)}'
token_issuer = "https://as.demo"

[server]
listen = "{{listen}}"
certificate = "server.pem"
key = "server.key"
runtime = "asyncio"
mode = "reject_invalid"
tls_engine = "{tls_engine}"
{'reject_at = "http"' if tls_engine == "deferred" else ""}
reload_poll_seconds = 0
"""
    )


@dataclass(slots=True)
class Outcome:
    got: str = ""
    status: int | None = None
    body: dict[str, object] | None = None


def _client(port: int, files: DemoFiles, case: Case) -> tuple[Outcome, int]:
    """One client connection with Python ssl; returns what it saw and its local port."""
    d = files.dir
    ctx = ssl.create_default_context(cafile=str(d / "server-ca.pem"))
    # Let the client offer what the gateway must refuse (OpenSSL's own security level
    # would stop a 1024-bit key on the client side already).
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if case.cert:
        ctx.load_cert_chain(str(d / f"{case.cert}.pem"), str(d / f"{case.cert}.key"))
    out = Outcome()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    local_port = sock.getsockname()[1]
    try:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            headers = [("Host", "localhost")]
            if case.token:
                headers.append(("Authorization", f"Bearer {files.tokens[case.token]}"))
            conn = h11.Connection(h11.CLIENT)
            tls.sendall(conn.send(h11.Request(method="GET", target="/whoami", headers=headers)))
            tls.sendall(conn.send(h11.EndOfMessage()))
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(tls.recv(65536))
                elif isinstance(event, h11.Response):
                    out.status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                else:
                    break
            out.got = f"HTTP {out.status}"
            out.body = json.loads(body) if body else None
    except ssl.SSLError as exc:
        out.got = f"TLS alert: {exc.reason or exc}".lower().replace("_", " ")
    except (OSError, h11.ProtocolError) as exc:
        out.got = f"connection closed ({type(exc).__name__})"
    return out, local_port


async def _run_cases(config: pathlib.Path, files: DemoFiles) -> list[Row]:
    from ..runtimes import OnStarted, ServerInfo
    from ..runtimes import asyncio as runtime
    from ..runtimes.state import GatewayState

    decisions: dict[int, Decision] = {}

    def remember(decision: Decision) -> None:
        port = int(decision.peer.rsplit(":", 1)[1]) if decision.peer else 0
        decisions.setdefault(port, decision)

    state = GatewayState.from_config_file(config, on_decision=remember)
    started: asyncio.Future[ServerInfo] = asyncio.get_running_loop().create_future()
    status = OnStarted(started.set_result)
    task = asyncio.create_task(runtime.serve(state, task_status=status, handle_signals=False))
    info = await asyncio.wait_for(started, 10)
    rows: list[Row] = []
    try:
        for case in CASES:
            outcome, local_port = await asyncio.wait_for(asyncio.to_thread(_client, info.address.port, files, case), 10)
            for _ in range(50):  # the decision is logged as the answer is sent: let the loop run
                if local_port in decisions:
                    break
                await asyncio.sleep(0.01)
            rows.append(_row(case, outcome, decisions.get(local_port)))
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    return rows


def _row(case: Case, outcome: Outcome, decision: Decision | None) -> Row:
    reason = decision.reason if decision is not None else None
    account = outcome.body.get("account") if outcome.body and outcome.status == 200 else None
    if case.expect is None:
        ok = outcome.status == 200 and account == "partner-abc"
        why = f"account {account}" if account else (reason or "")
    else:
        refused = outcome.status != 200
        ok = refused and reason == case.expect
        why = reason or "?"
    detail = decision.detail if decision is not None and case.expect else ""
    return {
        "case": case.name,
        "what": case.what,
        "expected": case.expect or "accepted",
        "got": outcome.got,
        "why": why,
        "detail": detail,
        "ok": ok,
    }


def _print_table(rows: list[Row], write: Callable[[str], object]) -> None:
    cols: list[tuple[Literal["case", "expected", "got", "why", "ok"], str]] = [
        ("case", "client"), ("expected", "expected"), ("got", "got"), ("why", "gateway says"), ("ok", "result")]
    width = {k: max(len(title), *(len(str(r[k] if k != "ok" else "PASS")) for r in rows)) for k, title in cols}
    write("  ".join(title.ljust(width[k]) for k, title in cols).rstrip())
    write("  ".join("-" * width[k] for k, _ in cols))
    for r in rows:
        cells = [str(r[k]) if k != "ok" else ("PASS" if r["ok"] else "FAIL") for k, _ in cols]
        write("  ".join(c.ljust(width[k]) for c, (k, _) in zip(cells, cols, strict=True)).rstrip())


def run(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="mtlscore-demo-") as tmp:
        directory = pathlib.Path(args.keep or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        # joserfc missing (the demo issues a bound token): mtlscore.cli.main names the extra.
        files = write_demo_files(directory, now, tls_engine=args.tls_engine)
        rows = asyncio.run(_run_cases(files.config, files))
        if args.keep:
            (directory / "README.txt").write_text(replay_instructions(directory, rows, files.expires))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            f"mtlscore demo: gateway on 127.0.0.1 (asyncio, reject_invalid, TLS engine "
            f"{args.tls_engine}); PKI in {directory}\n"
        )
        _print_table(rows, print)
        print()
        for r in rows:
            if r["detail"]:
                print(f"  {r['case']}: {r['detail']}")
        passed = sum(r["ok"] for r in rows)
        print(f"\n{passed}/{len(rows)} clients got the expected outcome.")
    return 0 if all(r["ok"] for r in rows) else 1


def curl_command(case: Case, port: int = REPLAY_PORT) -> str:
    """The curl command line that replays ``case`` from the kept directory."""
    if case.cert == "rsa1024":
        # curl's OpenSSL refuses to load a 1024-bit key at its default security level, before
        # any connection; openssl s_client applies SECLEVEL=0 first and shows the gateway's alert.
        return (f"printf 'GET /whoami HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' | "
                f"openssl s_client -quiet -connect 127.0.0.1:{port} -servername localhost -CAfile server-ca.pem "
                f"-cert {case.cert}.pem -key {case.cert}.key -cipher 'DEFAULT:@SECLEVEL=0'")
    args = ["curl -sS --cacert server-ca.pem"]
    if case.cert:
        args.append(f"--cert {case.cert}.pem --key {case.cert}.key")
    if case.token:
        args.append(f'-H "Authorization: Bearer $(cat {case.token}.token)"')
    args.append(f"https://localhost:{port}/whoami")
    return " ".join(args)


def replay_instructions(directory: pathlib.Path, rows: Sequence[Row], expires: int) -> str:
    """DIR/README.txt: how to run the gateway on the kept files and replay each client with curl."""
    until = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Written by `mtlscore demo --keep {directory}`: a throwaway PKI, the gateway's",
        "configuration, and one file set per client. Everything here is for testing only.",
        "",
        "1. Start the gateway (in this directory; it listens on https://127.0.0.1:"
        f"{REPLAY_PORT}, see [server] listen):",
        "",
        "    mtlscore serve --config mtlscore.toml",
        "",
        "2. In another terminal, in this directory, replay each client (curl; openssl s_client for",
        "   the RSA-1024 key, which curl's OpenSSL will not load):",
        "",
    ]
    for case, row in zip(CASES, rows, strict=True):
        lines.append(f"# {case.name}: {case.what}. Expected: {row['expected']}; the demo saw: {row['got']} "
                     f"({row['why']}).")
        lines.append(curl_command(case))
        lines.append("")
    lines += [
        "With tls_engine = \"ssl\" (the demo's default) OpenSSL refuses some bad certificates during",
        "the handshake: curl then prints a TLS alert instead of an HTTP answer, and the gateway logs",
        "the decision with its reason. `mtlscore demo --tls-engine deferred --keep DIR` writes a",
        "configuration where every rejection is an HTTP 403 with a JSON reason.",
        "",
        f"Tokens: good.token is bound to good.pem, other.token to other.pem; both expire at {until}.",
        "A new one, signed with token-signer.key (its public key is jwks.json, in mtlscore.toml):",
        "",
        "    python -c 'import time; from cryptography.hazmat.primitives.serialization import "
        "load_pem_private_key as k; from mtlscore import load_certificates as c; from mtlscore.jwt "
        "import issue_bound_token as t; n = int(time.time()); print(t({\"iss\": \"https://as.demo\", "
        "\"sub\": \"partner-abc\", \"iat\": n, \"exp\": n + 3600}, k(open(\"token-signer.key\", \"rb\")"
        ".read(), None), c(open(\"good.pem\", \"rb\").read())[0], kid=\"demo-as\"))' > good.token",
        "",
        "Files: partner-root.pem (the trusted CA), issuing.crl (revokes revoked.pem), server.pem/.key",
        "and server-ca.pem (the gateway's TLS identity and the CA curl checks it with), NAME.pem/.key",
        "(each client's chain and key), NAME.token, token-signer.key, jwks.json, mtlscore.toml",
        "(demo-run.toml: the same on port 0, what the demo itself ran).",
        "",
    ]
    return "\n".join(lines)


COMMAND = Command(
    "demo",
    help="build a throwaway PKI, run the gateway on loopback, try good and bad clients",
    description="Builds a PKI in a temporary directory, starts the mTLS gateway on "
    "127.0.0.1, connects one good and several bad clients with Python ssl, and prints "
    "what each got and why. Exit 0 when every client got its expected outcome.",
    arguments=(
        arg("--keep", metavar="DIR", help="write the PKI and config to DIR and keep them"),
        arg("--json", action="store_true", help="print the results as JSON"),
        arg("--tls-engine", choices=("ssl", "deferred"), default="ssl",
            help="ssl (stdlib; some bad certificates get a TLS alert) or deferred (pyOpenSSL; "
            "every bad certificate reaches the core and gets a JSON 403)"),
    ),
    run=run,
)
