"""`mtlscore identity` and `mtlscore thumbprint`: text, JSON, exit codes, config mapping."""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import subprocess
import sys

import pytest

from mtlscore import pki
from mtlscore.cli import main

DN_X = "CN=partner-abc-prod-client,OU=RiskOSIntegration,O=PartnerABC"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("cli")
    x, y = pki.root("CN=Partner X CA"), pki.root("CN=Partner Y CA")
    files = {
        "x": x.pem, "y": y.pem,
        "good": x.leaf(DN_X, san_dns=["abc.partner.example"]).chain_pem,
        "forged": y.leaf(DN_X).chain_pem,
        "stranger": pki.root("CN=Z").leaf(DN_X).chain_pem,
        "bad": b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    }
    out = {}
    for name, data in files.items():
        out[name] = d / f"{name}.pem"
        out[name].write_bytes(data)
    out["config"] = d / "mtls.toml"
    out["config"].write_text(
        '[trust]\nanchors = ["x.pem", "y.pem"]\n\n'
        f'[[accounts]]\nid = "partner-abc"\nanchors = ["x.pem"]\nmatch = {{ subject_dn = "{DN_X}" }}\n'
        'rate_limit = "100/s"\n'
    )
    out["badconfig"] = d / "bad.toml"
    out["badconfig"].write_text('[trust]\nanchors = ["x.pem"]\n\n[[accounts]]\nid = "a"\nmatch = { cn = 1 }\n')
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_thumbprint_text_and_json(world: dict[str, pathlib.Path], capsys: pytest.CaptureFixture[str]) -> None:
    from mtlscore import load_certificates

    leaf = load_certificates(world["good"].read_bytes())[0]
    der = leaf.der
    x5t = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    code, out, _ = run(capsys, "thumbprint", str(world["good"]))
    assert code == 0 and x5t in out and hashlib.sha256(der).hexdigest() in out and "sha256/" in out
    code, out, _ = run(capsys, "thumbprint", "--json", str(world["good"]))
    d = json.loads(out)
    assert code == 0 and d["x5t#S256"] == x5t and d["sha256"] == hashlib.sha256(der).hexdigest()
    assert d["spki_sha256"] == leaf.spki_pin and "jwk" not in d
    code, out, _ = run(capsys, "thumbprint", "--jwk", str(world["good"]))
    jwk = json.loads(out)
    assert jwk["x5t#S256"] == x5t and base64.b64decode(jwk["x5c"][0]) == der and len(jwk["x5c"]) == 1
    assert jwk["kty"] == "EC" and "d" not in jwk
    # RFC 7517 §4.2 / §4.4: registered for self_signed_tls_client_auth, the key says what it is for.
    assert jwk["use"] == "sig" and jwk["alg"] == "ES256"
    code, out, _ = run(capsys, "thumbprint", "--jwk", "--alg", "ES384", "--use", "", str(world["good"]))
    jwk = json.loads(out)
    assert code == 0 and jwk["alg"] == "ES384" and "use" not in jwk
    code, out, _ = run(capsys, "thumbprint", "--json", "--jwk", str(world["good"]))
    assert json.loads(out)["jwk"]["x5t#S256"] == x5t


def test_thumbprint_exit_codes(world: dict[str, pathlib.Path], capsys: pytest.CaptureFixture[str],
                               tmp_path: pathlib.Path) -> None:
    code, _, err = run(capsys, "thumbprint", str(tmp_path / "missing.pem"))
    assert code == 2 and "cannot read" in err
    code, _, err = run(capsys, "thumbprint", str(world["bad"]))
    assert code == 1 and "malformed" in err
    (tmp_path / "junk").write_bytes(b"hello")
    code, _, err = run(capsys, "thumbprint", str(tmp_path / "junk"))
    assert code == 1 and "malformed" in err


def test_identity_without_config(world: dict[str, pathlib.Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "identity", "--json", str(world["good"]))
    d = json.loads(out)
    assert code == 0 and d["identity"]["subject_dn"] == DN_X
    assert d["identity"]["san"]["dns"] == ["abc.partner.example"] and d["identity"]["anchor"] is None
    assert "principal" not in d
    code, out, _ = run(capsys, "identity", str(world["good"]))
    assert code == 0 and "OU=RiskOSIntegration" in out and "x5t#S256" in out


def test_identity_with_config_maps(world: dict[str, pathlib.Path], capsys: pytest.CaptureFixture[str]) -> None:
    at = pki.NOW.isoformat()
    code, out, _ = run(capsys, "identity", "--json", "--at", at, "--config", str(world["config"]), str(world["good"]))
    d = json.loads(out)
    assert code == 0, out
    assert d["principal"]["id"] == "partner-abc" and d["principal"]["attributes"]["rate_limit"] == "100/s"
    assert d["mapping"]["chain"]["anchor"] == "x.pem" and d["mapping"]["scope_evaluated"]
    assert d["identity"]["anchor"]["subject_dn"] == "CN=Partner X CA"
    code, out, _ = run(capsys, "identity", "--at", at, "--config", str(world["config"]), str(world["good"]))
    assert code == 0 and "principal:    partner-abc" in out


def test_identity_cross_anchor_and_unvalidated(world: dict[str, pathlib.Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    at = pki.NOW.isoformat()
    code, out, _ = run(capsys, "identity", "--json", "--at", at, "--config", str(world["config"]), str(world["forged"]))
    d = json.loads(out)
    assert code == 1 and d["principal"] is None
    assert d["mapping"]["chain"]["anchor"] == "y.pem"  # config labels anchors by file
    assert d["identity"]["anchor"]["subject_dn"] == "CN=Partner Y CA"
    assert d["mapping"]["out_of_scope"] == ["accounts[0]"] and "scoped to" in d["mapping"]["detail"]
    code, out, _ = run(capsys, "identity", "--at", at, "--config", str(world["config"]), str(world["stranger"]))
    assert code == 1 and "could not be evaluated" in out and "untrusted" in out


def test_identity_errors(world: dict[str, pathlib.Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "identity", "--config", str(world["badconfig"]), str(world["good"]))
    assert code == 2 and "accounts[0].match.cn" in err
    code, _, err = run(capsys, "identity", str(world["bad"]))
    assert code == 1 and "malformed" in err
    code, _, err = run(capsys, "identity", "/nonexistent/file.pem")
    assert code == 2


def test_subprocess_json_and_stdin(world: dict[str, pathlib.Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mtlscore", "identity", "--json", "-"],
        input=world["good"].read_bytes(), capture_output=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["identity"]["subject"]["CN"] == ["partner-abc-prod-client"]
    proc = subprocess.run(
        [sys.executable, "-m", "mtlscore", "thumbprint", "--json", str(world["good"])],
        capture_output=True, timeout=60, check=False,
    )
    assert proc.returncode == 0 and len(json.loads(proc.stdout)["x5t#S256"]) == 43
