"""TrustStore: anchors (name + key), activation windows, the pool, allowlisted certificates."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mtlscore import ConfigError, TrustStore, pki
from mtlscore.verify import Anchor
from mtlscore.x509 import parse_certificate

NOW = pki.NOW
DAY = timedelta(days=1)


def test_anchors_from_every_form() -> None:
    a, b, c, d = (pki.root(f"CN=Root {i}") for i in range(4))
    store = TrustStore(anchors=[a.pem, b.der, parse_certificate(c.der), Anchor(parse_certificate(d.der), "D")])
    assert len(store) == 4 and len(store.anchors) == 4
    assert [x.certificate.der for x in store] == [a.der, b.der, c.der, d.der]
    bundle = TrustStore(anchors=[a.pem + b.pem])
    assert len(bundle) == 2


def test_lookup_by_subject_key_id_and_exact_anchor() -> None:
    root = pki.root("CN=Partner Root")
    store = TrustStore(anchors=[root.pem])
    cert = parse_certificate(root.der)
    leaf = parse_certificate(root.leaf().der)
    assert [x.certificate for x in store.anchors_for(leaf.issuer_key)] == [cert]
    assert [x.certificate for x in store.anchors_by_key_id(leaf.aki)] == [cert]
    assert store.find_anchor(cert) is not None
    # Same name, other key: not this anchor (an anchor is name + key).
    impostor = parse_certificate(pki.root("CN=Partner Root").der)
    assert store.find_anchor(impostor) is None
    # Same key, other certificate (re-issued root): the same anchor.
    reissued = parse_certificate(pki.make("CN=Partner Root", key=root.key, ca=True).der)
    assert store.find_anchor(reissued) is not None


def test_anchor_name_and_window() -> None:
    root = pki.root("CN=Partner Root")
    cert = parse_certificate(root.der)
    plain = Anchor(cert)
    assert plain.name == "CN=Partner Root" and plain.window() == (cert.not_before, cert.not_after)
    windowed = Anchor(cert, "old partner CA", not_before=NOW - DAY, not_after=NOW + DAY)
    assert windowed.name == "old partner CA" and windowed.window() == (NOW - DAY, NOW + DAY)
    assert windowed.subject_key == cert.subject_key and windowed.spki_sha256 == cert.spki_sha256


def test_add_anchor_with_a_window() -> None:
    root = pki.root()
    store = TrustStore()
    epoch = store.epoch
    (anchor,) = store.add_anchor(root.pem, label="new", not_before=NOW)
    assert anchor.not_before == NOW and anchor.label == "new" and store.epoch != epoch
    with pytest.raises(ConfigError) as exc:
        store.add_anchor(root.pem, not_before=NOW, not_after=NOW - DAY)
    assert exc.value.key == "anchors"


def test_pool_deduplicates_and_is_found_by_subject() -> None:
    inter = pki.root().intermediate("CN=Issuing")
    store = TrustStore(intermediates=[inter.pem, inter.der])
    store.add_intermediates(inter.pem)
    assert len(store.intermediates) == 1
    leaf = parse_certificate(inter.leaf().der)
    assert [c.der for c in store.pool_for(leaf.issuer_key)] == [inter.der]
    assert len(store) == 0  # the pool is not trusted


def test_allowlisted() -> None:
    me = pki.root("CN=me", ca=False)
    store = TrustStore(allowlisted=[me.pem])
    assert store.only_allowlisted
    assert store.allowlisted_match(parse_certificate(me.der)) is not None
    assert store.allowlisted_match(parse_certificate(pki.root("CN=me", ca=False).der)) is None
    store.add_anchor(pki.root().pem)
    assert not store.only_allowlisted
    assert not TrustStore().only_allowlisted


@pytest.mark.parametrize(
    ("kw", "key"),
    [({"anchors": [b"not a certificate"]}, "anchors"),
     ({"intermediates": [b"\x30\x00"]}, "intermediates"),
     ({"allowlisted": ["-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----"]}, "allowlisted")],
)
def test_bad_certificates_are_config_errors(kw: dict[str, list[object]], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        TrustStore(**kw)  # type: ignore[arg-type]
    assert exc.value.key == key
