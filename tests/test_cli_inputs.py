"""What the CLI reads and prints (issue 18, items 6 and 7), by subprocess.

Item 7: `check`, `thumbprint` and `identity` open PKCS#12 files (with --password or
$MTLSCORE_PKCS12_PASSWORD) and name a private key, a CSR, a CRL given by mistake.
Item 6: one serial format, a readable principal, the rules out of scope, and
``Policy(...)`` type errors as ConfigError naming the field.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from mtlscore import ConfigError, Policy, pki

DN = "CN=partner-abc-prod-client,O=PartnerABC"


def mtlscore(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "MTLSCORE_PKCS12_PASSWORD"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "mtlscore", *args], capture_output=True, text=True,
                          timeout=60, env=full_env)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("inputs")
    root = pki.root("CN=Input Root", now=pki.NOW)
    other = pki.root("CN=Other Root", now=pki.NOW)
    issuing = root.intermediate("CN=Input Issuing")
    leaf = issuing.leaf(DN)
    forged = other.leaf(DN)  # the same name under a CA the account is not scoped to
    key = serialization.load_pem_private_key(leaf.key_pem, None)
    cert = x509.load_pem_x509_certificate(leaf.pem)
    ca = x509.load_pem_x509_certificate(issuing.pem)
    out = {name: d / name for name in ("root.pem", "other.pem", "leaf.pem", "leaf.key", "forged.pem",
                                       "secret.p12", "open.p12", "leaf.csr", "leaf.csr.der", "leaf.key.der",
                                       "root.crl", "mtls.toml")}
    out["root.pem"].write_bytes(root.pem)
    out["other.pem"].write_bytes(other.pem)
    out["leaf.pem"].write_bytes(leaf.chain_pem)
    out["forged.pem"].write_bytes(forged.chain_pem)
    out["leaf.key"].write_bytes(leaf.key_pem)
    out["secret.p12"].write_bytes(pkcs12.serialize_key_and_certificates(
        b"client", key, cert, [ca], serialization.BestAvailableEncryption(b"s3cret")))  # type: ignore[arg-type]
    out["open.p12"].write_bytes(pkcs12.serialize_key_and_certificates(
        b"client", key, cert, [ca], serialization.NoEncryption()))  # type: ignore[arg-type]
    csr = x509.CertificateSigningRequestBuilder().subject_name(cert.subject).sign(key, hashes.SHA256())  # type: ignore[arg-type]
    out["leaf.csr"].write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    out["leaf.csr.der"].write_bytes(csr.public_bytes(serialization.Encoding.DER))
    out["leaf.key.der"].write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    out["root.crl"].write_bytes(root.crl())
    out["mtls.toml"].write_text(
        '[trust]\nanchors = ["root.pem", "other.pem"]\n\n'
        f'[[accounts]]\nid = "partner-abc"\nanchors = ["root.pem"]\nmatch = {{ subject_dn = "{DN}" }}\n'
        'groups = ["payments"]\napi_key_sha256 = ["' + "ab" * 32 + '"]\n'
    )
    out["serial"] = d / str(leaf.serial)  # not a file: the expected serial, carried along
    return out


AT = pki.NOW.isoformat()


# -- item 7 ----------------------------------------------------------------------


def test_check_opens_a_pkcs12_file_with_password_or_env(files: dict[str, pathlib.Path]) -> None:
    args = ("check", "--json", "--at", AT, "--trust", str(files["root.pem"]))
    flag = mtlscore(*args, "--password", "s3cret", str(files["secret.p12"]))
    env = mtlscore(*args, str(files["secret.p12"]), env={"MTLSCORE_PKCS12_PASSWORD": "s3cret"})
    for result in (flag, env):
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["verdict"] == "accepted"
        # The keyed certificate first, then the bundle's CA: the path a client presents.
        assert [p["subject"] for p in out["path"]][:2] == [DN, "CN=Input Issuing"]
    unencrypted = mtlscore(*args, str(files["open.p12"]))
    assert unencrypted.returncode == 0 and json.loads(unencrypted.stdout)["verdict"] == "accepted"


def test_a_pkcs12_file_without_password_says_what_to_do(files: dict[str, pathlib.Path]) -> None:
    for cmd in (("check", "--trust", str(files["root.pem"])), ("thumbprint",), ("identity",)):
        result = mtlscore(*cmd, str(files["secret.p12"]))
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr and "ParseError" not in result.stderr
        assert "is PKCS#12" in result.stderr and "--password" in result.stderr
        assert f"openssl pkcs12 -in {files['secret.p12']} -nokeys" in result.stderr
    wrong = mtlscore("thumbprint", "--password", "nope", str(files["secret.p12"]))
    assert wrong.returncode == 2 and "the password given does not open it" in wrong.stderr


def test_thumbprint_of_a_pkcs12_file_is_its_certificate(files: dict[str, pathlib.Path]) -> None:
    from_p12 = mtlscore("thumbprint", "--json", "--password", "s3cret", str(files["secret.p12"]))
    from_pem = mtlscore("thumbprint", "--json", str(files["leaf.pem"]))
    assert from_p12.returncode == 0 and json.loads(from_p12.stdout) == json.loads(from_pem.stdout)


@pytest.mark.parametrize(("name", "says"), [
    ("leaf.key", "is a private key, not a certificate"),
    ("leaf.key.der", "is a private key, not a certificate"),
    ("leaf.csr", "is a certificate signing request (CSR), not a certificate"),
    ("leaf.csr.der", "is a certificate signing request (CSR), not a certificate"),
    ("root.crl", "is a CRL, not a certificate: pass it with --crl"),
])
def test_a_key_csr_or_crl_given_by_mistake_is_named(files: dict[str, pathlib.Path], name: str, says: str) -> None:
    for cmd in (("check", "--trust", str(files["root.pem"])), ("thumbprint",)):
        result = mtlscore(*cmd, str(files[name]))
        assert result.returncode == 2, result
        assert result.stderr.startswith(f"mtlscore {cmd[0]}: {files[name]} {says}")
        assert len(result.stderr.splitlines()) == 1 and "malformed" not in result.stderr


# -- item 6 ----------------------------------------------------------------------


def test_one_serial_format_in_check_and_identity(files: dict[str, pathlib.Path]) -> None:
    serial = format(int(files["serial"].name), "x")
    check = mtlscore("check", "--json", "--at", AT, "--config", str(files["mtls.toml"]), str(files["leaf.pem"]))
    ident = mtlscore("identity", "--json", "--at", AT, "--config", str(files["mtls.toml"]), str(files["leaf.pem"]))
    text = mtlscore("identity", "--at", AT, str(files["leaf.pem"]))
    check_out, ident_out = json.loads(check.stdout), json.loads(ident.stdout)
    assert check_out["path"][0]["serial"] == serial
    assert check_out["identity"]["serial"] == serial
    assert ident_out["identity"]["serial"] == serial
    assert f"serial:       {serial}\n" in text.stdout
    for document in (check_out["identity"], ident_out["identity"]):
        assert not {"subject_key", "issuer_key"} & set(document)


def test_check_prints_the_principal_as_text(files: dict[str, pathlib.Path]) -> None:
    result = mtlscore("check", "--at", AT, "--config", str(files["mtls.toml"]), str(files["leaf.pem"]))
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("principal:"))
    assert line.strip() == "principal: partner-abc (groups: payments; mapped by accounts[0])"
    assert "{" not in line and "api_key" not in result.stdout


def test_identity_text_shows_the_rules_out_of_scope(files: dict[str, pathlib.Path]) -> None:
    result = mtlscore("identity", "--at", AT, "--config", str(files["mtls.toml"]), str(files["forged.pem"]))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    scoped = [x for x in lines if x.startswith("out of scope:")]
    assert scoped == ["out of scope: accounts[0] (matches by name; only root.pem may vouch for it)"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_rsa_bits": "x"}, "min_rsa_bits: must be an integer, not 'x' (str)"),
    ({"max_intermediates": True}, "max_intermediates: must be an integer, not True (bool)"),
    ({"fetch": "yes"}, "fetch: must be true or false, not 'yes' (str)"),
    ({"clock_skew": "5"}, "clock_skew: must be a number of seconds or a timedelta, not '5' (str)"),
    ({"required_eku": 5}, "required_eku: must be a string, not 5 (int)"),
    ({"curves": ["P-256", 1]}, "curves: must be a list of names; 1 (int) is not a name"),
    ({"key_types": 3}, "key_types: must be a list of names, not 3 (int)"),
])
def test_policy_type_errors_are_config_errors_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Policy(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_policy_still_takes_what_it_documents() -> None:
    from datetime import timedelta

    p = Policy(required_eku=None, clock_skew=5, max_revocation_age=timedelta(hours=1),
               require_explicit_policy=None, curves={"P-256"})
    assert p.clock_skew == timedelta(seconds=5) and p.curves == frozenset({"P-256"})
