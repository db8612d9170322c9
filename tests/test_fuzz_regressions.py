"""Every crash the fuzzers found, replayed; and a smoke run of every fuzz target through the runner's API."""

from __future__ import annotations

import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fuzz import run as fuzz_run  # noqa: E402
from fuzz.targets import TARGETS  # noqa: E402
from mtlscore import CertificateRejected, ConfigError  # noqa: E402
from mtlscore.x509.dn import attribute_oid, parse_dn  # noqa: E402

REPRODUCERS = sorted(fuzz_run.CRASHES.glob("*--*")) if fuzz_run.CRASHES.is_dir() else []


@pytest.mark.parametrize("path", REPRODUCERS, ids=[p.name[:40] for p in REPRODUCERS])
def test_saved_reproducer_no_longer_crashes(path: pathlib.Path) -> None:
    fuzz_run.replay(path)


def test_every_reproducer_names_a_target() -> None:
    for path in REPRODUCERS:
        assert path.name.split("--", 1)[0] in TARGETS, path.name


# -- the crashes, as plain tests of the module that had the bug --------------------------


@pytest.mark.parametrize("oid", ["1.23406.113549.1.9.1", "3.1", "0.40", "2.5.4.3.٣", "1.99999999999999999999999999999"])
def test_dn_with_an_impossible_dotted_oid_is_a_config_error(oid: str) -> None:
    # Found by fuzz target "dn": X.660 arcs out of range made cryptography raise ValueError.
    assert attribute_oid(oid) is None
    with pytest.raises(ConfigError, match="unknown attribute type"):
        parse_dn(f"{oid}=x,CN=y")


@pytest.mark.parametrize("dn", ["CN=a+CN=a", "OU=Ops+CN=x+OU=Ops", "cn=a+CN=a"])
def test_dn_with_a_duplicate_attribute_in_one_rdn_is_a_config_error(dn: str) -> None:
    # Found by fuzz target "dn": cryptography refuses duplicate attributes in an RDN (ValueError).
    with pytest.raises(ConfigError, match="multi-valued RDN"):
        parse_dn(dn)


@pytest.mark.parametrize("kty", [["EC"], {"a": 1}, 7, None])
def test_a_jwk_whose_kty_is_not_a_string_is_skipped(kty: object) -> None:
    # Found by fuzz target "jwks": a list as "kty" raised TypeError (unhashable) in
    # public_key_from_jwk; RFC 7517 §4.1 makes kty a string. A registered JWKS may come
    # from dynamic client registration (RFC 7591): it is untrusted input.
    from mtlscore import Reason, pki
    from mtlscore.identity.binding import check_self_signed_tls_client_auth
    from mtlscore.x509.cert import parse_certificate

    cert = parse_certificate(pki.root().leaf().der)
    with pytest.raises(CertificateRejected) as exc:
        check_self_signed_tls_client_auth({"keys": [{"kty": kty, "crv": "P-256", "x": "AA", "y": "AA"}]}, cert)
    assert exc.value.reason is Reason.NOT_ALLOWLISTED


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_server_timeouts_must_be_finite(value: float, tmp_path: pathlib.Path) -> None:
    # Found while fuzzing config: TOML's nan/inf passed the "positive" check; a nan
    # handshake timeout is never reached, so stalled handshakes would be kept forever.
    from mtlscore.gateway.settings import server_from_config

    with pytest.raises(ConfigError, match="finite") as exc:
        server_from_config({"certificate": "a", "key": "b", "handshake_timeout_seconds": value}, base_dir=tmp_path)
    assert exc.value.key == "server.handshake_timeout_seconds"


@pytest.mark.parametrize(
    "doc",
    [{"policy": {"clock_skew_seconds": 10**20}}, {"revocation": {"max_age_seconds": 10**14}}],
    ids=["clock_skew_seconds", "max_age_seconds"],
)
def test_huge_seconds_in_config_are_a_config_error(doc: dict, tmp_path: pathlib.Path) -> None:
    from mtlscore.config import parse_config

    with pytest.raises(ConfigError) as exc:
        parse_config(doc, base_dir=tmp_path)
    assert exc.value.key in ("policy.clock_skew_seconds", "revocation.max_age_seconds")


# -- smoke: every target runs through the runner's API --------------------------------


@pytest.mark.parametrize("name", list(TARGETS))
def test_each_target_runs_briefly_without_a_crash(name: str, tmp_path: pathlib.Path) -> None:
    r = fuzz_run.run_target(name, 0.5, engine="hypothesis", crashes=tmp_path, isolate=False)
    assert r.ok, f"{r.reproducer}\n{r.crash}"
    assert r.execs > 0


@pytest.mark.skipif(not fuzz_run.atheris_available(), reason="atheris is not installed")
def test_the_atheris_engine_runs_a_target(tmp_path: pathlib.Path) -> None:
    r = fuzz_run.run_target("dn", 1, engine="atheris", crashes=tmp_path)
    assert r.ok, r.crash
    assert r.execs > 100


def test_the_runner_reports_a_crash_with_a_reproducer(tmp_path: pathlib.Path, monkeypatch) -> None:
    def broken(data: bytes) -> None:
        if b"=" in data:
            raise KeyError("boom")

    monkeypatch.setitem(TARGETS, "dn", broken)
    r = fuzz_run.run_target("dn", 5, engine="hypothesis", crashes=tmp_path, isolate=False)
    assert not r.ok and "KeyError" in (r.crash or "")
    saved = pathlib.Path(r.reproducer or "")
    assert saved.parent == tmp_path and saved.name.startswith("dn--crash-")
    assert b"=" in saved.read_bytes()
