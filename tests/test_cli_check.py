"""`mtlscore check`: flags, exit codes, JSON shape, and every issue-2 reason via the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from mtlscore import Reason, pki
from mtlscore.cli import main

AT = pki.NOW.isoformat()


def _write(tmp: Path, name: str, data: bytes) -> str:
    p = tmp / name
    p.write_bytes(data)
    return str(p)


def run_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, dict]:
    code = main(["check", "--json", "--at", AT, *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.fixture(scope="module")
def ca() -> tuple[pki.Issued, pki.Issued]:
    root = pki.root()
    return root, root.intermediate()


def test_accepted_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str], ca) -> None:
    root, inter = ca
    leaf = inter.leaf(cn="partner-abc-prod-client")
    code, out = run_json(capsys, ["--trust", _write(tmp_path, "root.pem", root.pem),
                                  _write(tmp_path, "chain.pem", leaf.chain_pem)])
    assert code == 0
    assert out["verdict"] == "accepted" and out["reason"] is None
    assert [p["subject"] for p in out["path"]] == [
        "CN=partner-abc-prod-client", "CN=Test Intermediate CA", "CN=Test Root CA"]
    assert set(out["path"][0]) >= {"subject", "issuer", "serial", "sha256", "not_after"}
    assert out["path"][0]["sha256"] == leaf.cert.fingerprint(
        __import__("cryptography.hazmat.primitives.hashes", fromlist=["SHA256"]).SHA256()).hex()
    assert out["identity"]["subject_dn"] == "CN=partner-abc-prod-client"


def test_der_input_and_stdin(tmp_path: Path, ca) -> None:
    root, inter = ca
    leaf = inter.leaf()
    trust = _write(tmp_path, "root.pem", root.pem)
    inters = _write(tmp_path, "inter.pem", inter.pem)
    der = _write(tmp_path, "leaf.der", leaf.der)
    assert main(["check", "--at", AT, "--trust", trust, "--intermediates", inters, der]) == 0
    proc = subprocess.run(
        [sys.executable, "-m", "mtlscore", "check", "--json", "--at", AT, "--trust", trust, "-"],
        input=leaf.chain_pem, capture_output=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "accepted"


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], ca) -> None:
    root, inter = ca
    chain = _write(tmp_path, "chain.pem", inter.leaf().chain_pem)
    assert main(["check", "--trust", str(tmp_path / "missing.pem"), chain]) == 2
    assert main(["check", str(tmp_path / "missing.pem")]) == 2
    assert main(["check", "--at", "yesterday", chain]) == 2
    assert main(["check", "--bogus-flag", chain]) == 2
    bad_trust = _write(tmp_path, "bad.pem", b"not a certificate")
    assert main(["check", "--trust", bad_trust, chain]) == 2
    err = capsys.readouterr().err
    assert "missing.pem" in err


def test_human_output_explains_and_names_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str], ca) -> None:
    root, inter = ca
    leaf = inter.leaf(eku=[pki.SERVER_AUTH])
    code = main(["check", "--at", AT, "--trust", _write(tmp_path, "r.pem", root.pem),
                 _write(tmp_path, "c.pem", leaf.chain_pem)])
    out = capsys.readouterr().out
    assert code == 1
    assert "REJECTED: invalid_eku" in out
    assert "clientAuth" in out and "fix:" in out
    assert "<-- here" in out


def test_config_file_trust_and_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str], ca) -> None:
    root, inter = ca
    _write(tmp_path, "root.pem", root.pem)
    leaf = inter.leaf(eku=[pki.SERVER_AUTH])
    chain = _write(tmp_path, "c.pem", leaf.chain_pem)
    cfg = _write(tmp_path, "m.toml", b'[trust]\nanchors = ["root.pem"]\n[policy]\nrequired_eku = "serverAuth"\n')
    code, out = run_json(capsys, ["--config", cfg, chain])
    assert code == 0, out
    bad = _write(tmp_path, "bad.toml", b'[policy]\nmin_rsa_bitz = 1\n')
    assert main(["check", "--config", bad, chain]) == 2
    assert "policy.min_rsa_bitz" in capsys.readouterr().err


def _mesh(tmp: Path) -> tuple[list[str], bytes]:
    root = pki.root("Mesh Root")
    # Many same-name CAs with different keys: only the last one really signed the leaf.
    decoys = [root.intermediate("Mesh CA") for _ in range(6)]
    real = root.intermediate("Mesh CA")
    leaf = real.leaf(aki=False)  # no key identifier to point straight at the real issuer
    bundle = leaf.pem + b"".join(d.pem for d in decoys) + real.pem
    return ["--trust", _write(tmp, "mroot.pem", root.pem)], bundle


# Reason → builder returning (extra CLI args, chain bytes)
Scenario = Callable[[Path, pki.Issued, pki.Issued], tuple[list[str], bytes]]


def _trust(tmp: Path, root: pki.Issued) -> list[str]:
    return ["--trust", _write(tmp, "root.pem", root.pem)]


def _cfg(tmp: Path, root: pki.Issued, text: str) -> list[str]:
    _write(tmp, "root.pem", root.pem)
    return ["--config", _write(tmp, "c.toml", ('[trust]\nanchors = ["root.pem"]\n' + text).encode())]


SCENARIOS: dict[Reason, Scenario] = {
    Reason.NOT_PROVIDED: lambda t, r, i: (_trust(t, r), b""),
    Reason.MALFORMED: lambda t, r, i: (_trust(t, r), b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    Reason.EXPIRED: lambda t, r, i: (_trust(t, r), i.leaf(not_after=pki.NOW - timedelta(days=1)).chain_pem),
    Reason.NOT_YET_VALID: lambda t, r, i: (_trust(t, r), i.leaf(not_before=pki.NOW + timedelta(days=1)).chain_pem),
    Reason.UNTRUSTED: lambda t, r, i: (_trust(t, r), pki.root("Other").intermediate().leaf().chain_pem),
    Reason.BAD_SIGNATURE: lambda t, r, i: (_trust(t, r), i.leaf(signer=pki.new_key()).chain_pem),
    Reason.ISSUER_NOT_CA: lambda t, r, i: (_trust(t, r), r.intermediate("NotCA", ca=False).leaf().chain_pem),
    Reason.PATH_LENGTH_EXCEEDED: lambda t, r, i: (
        _trust(t, r), r.intermediate("P0", path_length=0).intermediate("P1").leaf().chain_pem),
    Reason.ISSUER_KEY_USAGE: lambda t, r, i: (
        _trust(t, r), r.intermediate("KU", key_usage=pki.key_usage("crl_sign")).leaf().chain_pem),
    Reason.LEAF_KEY_USAGE: lambda t, r, i: (
        _trust(t, r), i.leaf(key_usage=pki.key_usage("key_encipherment")).chain_pem),
    Reason.INVALID_EKU: lambda t, r, i: (_trust(t, r), i.leaf(eku=[pki.SERVER_AUTH]).chain_pem),
    Reason.RSA_KEY_TOO_SMALL: lambda t, r, i: (_trust(t, r), i.leaf(key="rsa-1024").chain_pem),
    Reason.RSA_KEY_TOO_LARGE: lambda t, r, i: (
        _cfg(t, r, "[policy]\nmax_rsa_bits = 2048\n"), i.leaf(key="rsa-3072").chain_pem),
    Reason.UNSUPPORTED_CURVE: lambda t, r, i: (_trust(t, r), i.leaf(key="ec-p521").chain_pem),
    Reason.UNSUPPORTED_KEY_ALGORITHM: lambda t, r, i: (_trust(t, r), i.leaf(key="ed25519").chain_pem),
    Reason.WEAK_SIGNATURE_ALGORITHM: lambda t, r, i: (_trust(t, r), i.leaf(hash_alg="sha224").chain_pem),
    Reason.UNHANDLED_CRITICAL_EXTENSION: lambda t, r, i: (_trust(t, r), i.leaf(extensions=[(
        x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"), True)]).chain_pem),
    Reason.NAME_CONSTRAINTS_VIOLATION: lambda t, r, i: (_trust(t, r), r.intermediate(
        "NC", permitted=[x509.DNSName("example.com")]).leaf(san_dns=["evil.test"]).chain_pem),
    Reason.NO_VALID_POLICY: lambda t, r, i: (
        _cfg(t, r, '[policy]\ncertificate_policies = ["1.3.6.1.4.1.55555.9.1"]\n'), i.leaf().chain_pem),
    Reason.CHAIN_TOO_LONG: lambda t, r, i: (
        _cfg(t, r, "[policy]\nmax_intermediates = 1\n"), r.intermediate("A").intermediate("B").leaf().chain_pem),
    Reason.PKI_TOO_LARGE: lambda t, r, i: (
        _cfg(t, r, "[policy]\nmax_chain_bytes = 600\n"), i.leaf().chain_pem),
    Reason.SEARCH_LIMIT_EXCEEDED: lambda t, r, i: (lambda m: (
        [*m[0], "--config", _write(t, "w.toml", b"[policy]\nmax_path_work = 3\n")], m[1]))(_mesh(t)),
    Reason.REVOKED: lambda t, r, i: (
        _trust(t, r) + ["--crl", _write(t, "i.crl", i.crl(revoked=[leaf := i.leaf()]))], leaf.chain_pem),
    Reason.REVOCATION_UNAVAILABLE: lambda t, r, i: (
        _trust(t, r) + ["--crl", _write(t, "stale.crl", i.crl(next_update=pki.NOW - timedelta(hours=1),
                                                               this_update=pki.NOW - timedelta(days=2)))],
        i.leaf().chain_pem),
    Reason.NOT_ALLOWLISTED: lambda t, r, i: (
        ["--allow", _write(t, "pinned.pem", pki.root("Pinned", ca=False, eku=[pki.CLIENT_AUTH]).pem)],
        pki.root("Someone else", ca=False, eku=[pki.CLIENT_AUTH]).pem),
}

# Reasons produced by layers other than `check` (identity, binding, proxy).
OTHER_LAYERS = {Reason.IDENTITY_UNMAPPED, Reason.BINDING_MISMATCH, Reason.UNTRUSTED_PROXY}


def test_scenarios_cover_every_check_reason() -> None:
    assert set(SCENARIOS) | OTHER_LAYERS == set(Reason)


@pytest.mark.parametrize("reason", list(SCENARIOS), ids=lambda r: r.value)
def test_reason_via_cli(reason: Reason, tmp_path: Path, capsys: pytest.CaptureFixture[str], ca) -> None:
    root, inter = ca
    args, chain = SCENARIOS[reason](tmp_path, root, inter)
    code, out = run_json(capsys, [*args, _write(tmp_path, "chain.pem", chain)])
    assert (code, out["verdict"], out["reason"]) == (1, "rejected", reason.value), out["detail"]
    assert out["detail"]
