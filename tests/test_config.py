"""config.py: the TOML file of docs/reference.md#configuration-file ([trust], [policy], [revocation])."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mtlscore import ConfigError, Reason, pki
from mtlscore.config import load_config


def write(tmp: Path, text: str) -> Path:
    p = tmp / "mtlscore.toml"
    p.write_text(text)
    return p


@pytest.fixture
def pkidir(tmp_path: Path) -> tuple[Path, pki.Issued, pki.Issued]:
    root = pki.root()
    inter = root.intermediate()
    (tmp_path / "ca.pem").write_bytes(root.pem)
    (tmp_path / "inter.pem").write_bytes(inter.pem)
    return tmp_path, root, inter


def test_full_file(pkidir) -> None:
    tmp, root, inter = pkidir
    (tmp / "ca.crl").write_bytes(inter.crl())
    (tmp / "root.crl").write_bytes(root.crl())
    cfg = load_config(write(tmp, '''
[trust]
anchors = ["ca.pem", { path = "ca.pem", not_after = "2027-01-31T00:00:00Z", label = "old" }]
intermediates = ["inter.pem"]

[policy]
required_eku = "clientAuth"
require_leaf_eku = true
min_rsa_bits = 3072
curves = ["P-256"]
key_types = ["rsa", "ec"]
signature_hashes = ["sha256", "sha384"]
max_rsa_bits = 4096
max_intermediates = 3
clock_skew_seconds = 30

[revocation]
mode = "hard"
crls = ["ca.crl", "root.crl"]
fetch = false
max_age_seconds = 3600
mode_leaf = "hard"
mode_ca = "soft"
prefer = "crl"
ocsp_nonce = true
fetch_issuers = true
max_fetched_issuers = 2
max_fetch_bytes = 65536
'''))
    assert len(cfg.trust) == 2
    assert cfg.trust.anchors[1].not_after == datetime(2027, 1, 31, tzinfo=UTC)
    assert cfg.trust.anchors[1].label == "old"
    assert len(cfg.trust.intermediates) == 1
    p = cfg.policy
    assert (p.min_rsa_bits, p.max_rsa_bits, p.max_intermediates) == (3072, 4096, 3)
    assert p.curves == frozenset({"P-256"}) and p.clock_skew == timedelta(seconds=30)
    assert p.revocation == "hard" and p.max_revocation_age == timedelta(hours=1)
    assert len(cfg.crls) == 2
    assert (p.revocation_leaf, p.revocation_ca, p.revocation_prefer) == ("hard", "soft", "crl")
    assert (p.ocsp_nonce, p.fetch_issuers, p.max_fetched_issuers, p.max_fetch_bytes) == (True, True, 2, 65536)
    # The loaded configuration validates: the leaf is presented alone, the pool completes it.
    verdict = cfg.validator().validate(inter.leaf().pem, at=pki.NOW)
    assert verdict.ok, verdict.detail


def test_crl_from_config_is_used(pkidir) -> None:
    tmp, root, inter = pkidir
    leaf = inter.leaf()
    (tmp / "ca.crl").write_bytes(inter.crl(revoked=[leaf]))
    cfg = load_config(write(tmp, '[trust]\nanchors = ["ca.pem"]\n[revocation]\ncrls = ["ca.crl"]\n'))
    assert cfg.validator().validate(leaf.chain_pem, at=pki.NOW).reason is Reason.REVOKED


def test_the_files_a_config_names_are_listed_for_watching(pkidir) -> None:
    tmp, root, inter = pkidir
    (tmp / "ca.crl").write_bytes(inter.crl())
    (tmp / "sub").mkdir()
    (tmp / "sub" / "pinned.pem").write_bytes(inter.leaf().pem)
    cfg = load_config(write(tmp, f"""
[trust]
anchors = ["ca.pem", {{ path = "{tmp / 'ca.pem'}", label = "same file, absolute" }}]
intermediates = ["inter.pem"]
allowlisted = ["sub/pinned.pem"]
[revocation]
crls = ["ca.crl"]
"""))
    base = tmp.resolve()
    assert all(p.is_absolute() for p in cfg.files)
    assert {p.resolve() for p in cfg.files} == {base / "ca.pem", base / "inter.pem", base / "sub" / "pinned.pem",
                                                base / "ca.crl"}
    assert load_config(write(tmp, "[policy]\n")).files == ()


def test_files_given_as_single_strings_are_listed_too(pkidir) -> None:
    # Found by the config fuzz target: one file per key may be a string (the parsers
    # accept it), and the watch list read the raw value — a TypeError for intermediates,
    # and an anchor string taken apart into characters.
    tmp, root, inter = pkidir
    (tmp / "ca.crl").write_bytes(inter.crl())
    (tmp / "pinned.pem").write_bytes(inter.leaf().pem)
    cfg = load_config(write(tmp, """
[trust]
anchors = "ca.pem"
intermediates = "inter.pem"
allowlisted = "pinned.pem"
[revocation]
crls = ["ca.crl"]  # [revocation] keys are typed: a list
"""))
    base = tmp.resolve()
    assert {p.resolve() for p in cfg.files} == {base / "ca.pem", base / "inter.pem", base / "pinned.pem",
                                                base / "ca.crl"}
    one_table = load_config(write(tmp, '[trust]\nanchors = { path = "ca.pem", label = "one" }\n'))
    assert [p.resolve() for p in one_table.files] == [base / "ca.pem"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[trust]\nanchorz = []\n', "trust.anchorz"),
        ('[polcy]\n', "polcy"),
        ('[trust]\nanchors = ["missing.pem"]\n', "trust.anchors[0]"),
        ('[trust]\nanchors = [{ path = "ca.pem", not_after = "soon" }]\n', "trust.anchors[0].not_after"),
        ('[trust]\nanchors = [{ path = "ca.pem", not_after = 2027-01-31T00:00:00 }]\n', "trust.anchors[0].not_after"),
        ('[trust]\nanchors = [{ not_after = "2027-01-01T00:00:00Z" }]\n', "trust.anchors[0]"),
        ('[trust]\nanchors = [{ path = "ca.pem", colour = "red" }]\n', "trust.anchors[0].colour"),
        ('[policy]\nmin_rsa_bits = "2048"\n', "policy.min_rsa_bits"),
        ('[policy]\nmin_rsa_bits = true\n', "policy.min_rsa_bits"),
        ('[policy]\ncurves = ["P-999"]\n', "policy.curves"),
        ('[policy]\nkey_types = ["dsa"]\n', "policy.key_types"),
        ('[policy]\nrequired_eku = "clientAuthh"\n', "policy.required_eku"),
        ('[policy]\nmin_rsa_bits = 4096\nmax_rsa_bits = 2048\n', "policy.min_rsa_bits"),
        ('[revocation]\nmode = "sometimes"\n', "revocation.mode"),
        ('[revocation]\nmode_leaf = "never"\n', "revocation.mode_leaf"),
        ('[revocation]\nprefer = "ldap"\n', "revocation.prefer"),
        ('[revocation]\nmax_fetch_bytes = 0\n', "revocation.max_fetch_bytes"),
        ('[revocation]\nocsp_nonce = "yes"\n', "revocation.ocsp_nonce"),
        ('[revocation]\ncrls = ["ca.pem"]\n', "revocation.crls[0]"),
    ],
)
def test_errors_name_the_key(pkidir, text: str, key: str) -> None:
    tmp, _, _ = pkidir
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp, text))
    assert info.value.key == key, str(info.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[trust\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_bad_certificate_file_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[trust]\nanchors = ["junk.pem"]\n'))
    assert info.value.key == "trust.anchors[0]"


def test_rotation_window_from_config(tmp_path: Path) -> None:
    old, new = pki.root("Old CA"), pki.root("New CA")
    (tmp_path / "old.pem").write_bytes(old.pem)
    (tmp_path / "new.pem").write_bytes(new.pem)
    cutoff = pki.NOW + timedelta(days=10)
    cfg = load_config(write(tmp_path, f'''
[trust]
anchors = ["new.pem", {{ path = "old.pem", not_after = "{cutoff.isoformat()}" }}]
'''))
    v = cfg.validator()
    old_leaf, new_leaf = old.leaf(), new.leaf()
    assert v.validate(old_leaf.pem, at=pki.NOW).ok
    assert v.validate(new_leaf.pem, at=pki.NOW).ok
    late = pki.NOW + timedelta(days=11)
    assert v.validate(old_leaf.pem, at=late).reason is Reason.EXPIRED
    assert v.validate(new_leaf.pem, at=late).ok


# -- bound tokens need the jwt extra ------------------------------------------------


def _account_with_tokens(tmp: Path, account: str) -> Path:
    return write(tmp, f'''
[trust]
anchors = ["ca.pem"]

[[accounts]]
id = "partner-abc"
match = {{ cn = "partner-abc" }}
{account}
''')


TOKEN_ACCOUNTS = [
    ('jwks_uri = "https://issuer.example/jwks.json"', "accounts[0].jwks_uri"),
    ('token = { jwks = \'{"keys": []}\', audience = "api" }', "accounts[0].token.jwks"),
]


@pytest.mark.parametrize(("account", "key"), TOKEN_ACCOUNTS)
def test_bound_tokens_without_the_jwt_extra_are_refused_at_load(
    pkidir, monkeypatch: pytest.MonkeyPatch, account: str, key: str
) -> None:
    # An install without joserfc: the account's tokens could never be verified. Said once at load,
    # naming the key, instead of an error on every request of the account.
    import sys

    import mtlscore

    monkeypatch.setitem(sys.modules, "joserfc", None)  # ``import joserfc`` raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "mtlscore.jwt", raising=False)
    monkeypatch.delattr(mtlscore, "jwt", raising=False)
    tmp, _, _ = pkidir
    with pytest.raises(ConfigError) as info:
        load_config(_account_with_tokens(tmp, account))
    assert info.value.key == key
    assert "need the jwt extra" in str(info.value) and "pip install 'mtlscore[jwt]'" in str(info.value)


@pytest.mark.parametrize(("account", "key"), TOKEN_ACCOUNTS)
def test_bound_tokens_with_the_jwt_extra_load(pkidir, account: str, key: str) -> None:
    tmp, _, _ = pkidir
    accounts = load_config(_account_with_tokens(tmp, account)).accounts
    assert accounts is not None and [r.account for r in accounts.rules] == ["partner-abc"]


def test_serve_without_the_jwt_extra_names_the_file_and_the_key(pkidir) -> None:
    import subprocess
    import sys

    tmp, _, _ = pkidir
    config = _account_with_tokens(tmp, TOKEN_ACCOUNTS[0][0])
    config.write_text(config.read_text() + '\n[server]\ncertificate = "server.pem"\nkey = "server.key"\n')
    code = (
        "import sys\nsys.modules['joserfc'] = None\n"
        "from mtlscore.cli import main\n"
        f"sys.exit(main(['serve', '--config', {str(config)!r}, '--quiet']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"mtlscore serve: configuration error in {config}: accounts[0].jwks_uri: ")
    assert "pip install 'mtlscore[jwt]'" in proc.stderr and proc.stderr.count("\n") == 1
