"""Policy: the defaults of docs/reference.md#defaults, overrides, and ConfigError on nonsense."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mtlscore import ConfigError, Policy
from mtlscore.verify import ANY_EKU, CLIENT_AUTH, SERVER_AUTH


def test_defaults_are_design_section_5() -> None:
    p = Policy()
    assert p.required_eku == CLIENT_AUTH and p.require_leaf_eku and p.check_ca_eku
    assert (p.min_rsa_bits, p.max_rsa_bits) == (2048, 8192)
    assert p.curves == {"P-256", "P-384"}
    assert p.key_types == {"rsa", "ec"}
    assert p.signature_hashes == {"sha256", "sha384", "sha512"}
    assert p.max_intermediates == 10
    assert (p.max_cert_bytes, p.max_chain_bytes) == (16 * 1024, 64 * 1024)
    assert p.revocation == "soft" and p.clock_skew == timedelta(0)
    assert not p.fetch


@pytest.mark.parametrize(
    ("given", "oid"),
    [("clientAuth", CLIENT_AUTH), ("serverAuth", SERVER_AUTH), ("anyExtendedKeyUsage", ANY_EKU),
     ("1.3.6.1.5.5.7.3.2", CLIENT_AUTH), ("1.2.3.4", "1.2.3.4")],
)
def test_required_eku_by_name_or_oid(given: str, oid: str) -> None:
    assert Policy(required_eku=given).required_eku == oid
    assert Policy(required_eku=None).required_eku is None


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"required_eku": "clientauth"}, "required_eku"),
        ({"required_eku": "1"}, "required_eku"),
        ({"curves": "P-256"}, "curves"),
        ({"curves": ["P-999"]}, "curves"),
        ({"key_types": ["dsa"]}, "key_types"),
        ({"signature_hashes": ["sha3"]}, "signature_hashes"),
        ({"min_rsa_bits": 0}, "min_rsa_bits"),
        ({"min_rsa_bits": 4096, "max_rsa_bits": 2048}, "min_rsa_bits"),
        ({"max_path_work": 0}, "max_path_work"),
        ({"max_cert_bytes": -1}, "max_cert_bytes"),
        ({"max_intermediates": -1}, "max_intermediates"),
        ({"clock_skew": -5}, "clock_skew_seconds"),
        ({"revocation": "maybe"}, "revocation.mode"),
    ],
)
def test_nonsense_is_a_config_error_naming_the_key(kw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Policy(**kw)
    assert exc.value.key == key


def test_lists_become_frozensets_and_seconds_become_timedelta() -> None:
    p = Policy(curves=["P-256"], key_types=("ec",), signature_hashes=["sha384"], clock_skew=30)
    assert p.curves == frozenset({"P-256"}) and isinstance(p.key_types, frozenset)
    assert p.clock_skew == timedelta(seconds=30)
    hash(p)  # frozen and hashable


def test_evolve_changes_fields_and_epoch() -> None:
    p = Policy()
    q = p.evolve(min_rsa_bits=3072)
    assert q.min_rsa_bits == 3072 and p.min_rsa_bits == 2048
    assert q.epoch != p.epoch
    assert q == Policy(min_rsa_bits=3072)  # epoch does not take part in equality
    with pytest.raises(ConfigError):
        p.evolve(min_rsa_bits=-1)
