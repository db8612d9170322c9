"""Identity extraction: DN and attributes, SANs by type, SPIFFE (X.509-SVID), pins, anchor."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mtlscore import pki
from mtlscore.identity.identity import AnchorRef, Identity
from mtlscore.verify.trust import TrustStore
from mtlscore.x509.cert import parse_certificate


def cert(issued: pki.Issued):  # type: ignore[no-untyped-def]
    return parse_certificate(issued.der)


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.root("CN=Partner X CA,O=Partner X")


def test_fields(ca: pki.Issued) -> None:
    leaf = ca.leaf(
        "CN=partner-abc+UID=7,OU=Risk,OU=Ops,O=PartnerABC,C=DE,DC=example,DC=com",
        san_dns=["api.partner.example"], san_uri=["https://partner.example/client"],
        san_email=["ops@Partner.example"], san_ip=["10.0.0.1", "::1"],
    )
    anchor = TrustStore([ca.pem]).anchors[0]
    ident = Identity.from_certificate(cert(leaf), anchor)
    # DER sorts the members of a SET OF, so a multi-valued RDN prints in encoding order.
    assert ident.subject_dn.endswith(",OU=Risk,OU=Ops,O=PartnerABC,C=DE,DC=example,DC=com")
    assert set(ident.subject[0]) == {("CN", "partner-abc"), ("UID", "7")}  # multi-valued RDN kept
    assert ident.values("ou") == ("Risk", "Ops")
    assert ident.values("DC") == ("example", "com")
    assert ident.common_name == "partner-abc"
    assert ident.issuer_dn == "CN=Partner X CA,O=Partner X"
    assert ident.serial == leaf.serial and ident.serial_hex == format(leaf.serial, "x")
    assert ident.san_dns == ("api.partner.example",)
    assert ident.san_uri == ("https://partner.example/client",)
    assert ident.san_email == ("ops@Partner.example",)
    assert ident.san_ip == ("10.0.0.1", "::1")
    assert ident.spiffe_id is None and ident.spiffe_problem is None
    assert ident.anchor is not None
    assert str(ident.anchor) == anchor.name
    assert ident.anchor.subject_dn == "CN=Partner X CA,O=Partner X"
    assert ident.anchor.spki_sha256 == anchor.spki_sha256.hex()


def test_pins_against_independent_computation(ca: pki.Issued) -> None:
    leaf = ca.leaf("CN=pinned")
    ident = Identity.from_certificate(cert(leaf))
    der = leaf.cert.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).digest()
    assert ident.x5t_s256 == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert "=" not in ident.x5t_s256 and len(ident.x5t_s256) == 43
    assert ident.sha256_hex == hashlib.sha256(der).hexdigest()
    spki = leaf.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert ident.spki_sha256 == base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert ident.spki_sha256_hex == hashlib.sha256(spki).hexdigest()


def test_directory_name_san(ca: pki.Issued) -> None:
    dn = x509.Name.from_rfc4514_string("CN=alt,O=Elsewhere")
    leaf = ca.leaf("CN=d", extensions=[(x509.SubjectAlternativeName([x509.DirectoryName(dn)]), False)])
    assert Identity.from_certificate(cert(leaf)).san_dirname == ("CN=alt,O=Elsewhere",)


@pytest.mark.parametrize(
    ("uris", "spiffe_id", "problem"),
    [
        (["spiffe://example.org/ns/prod/sa/web"], "spiffe://example.org/ns/prod/sa/web", None),
        (["spiffe://example.org"], "spiffe://example.org", None),
        (["spiffe://example.org/a", "spiffe://example.org/b"], None, "exactly one"),
        (["spiffe://example.org/a", "https://x.example/"], None, "exactly one"),
        (["spiffe://Example.org/a"], None, "trust domain"),
        (["spiffe://example.org/a/"], None, "trailing"),
        (["spiffe://example.org/a/../b"], None, "'..'"),
        (["spiffe://example.org:8443/a"], None, "port"),
        (["spiffe://user@example.org/a"], None, "userinfo"),
        (["spiffe://example.org/a?x=1"], None, "query"),
        (["spiffe:///a"], None, "empty"),
        (["https://example.org/a"], None, None),
    ],
)
def test_spiffe_svid_rules(ca: pki.Issued, uris: list[str], spiffe_id: str | None, problem: str | None) -> None:
    ident = Identity.from_certificate(cert(ca.leaf("CN=w", san_uri=uris)))
    assert ident.spiffe_id == spiffe_id
    if problem is None:
        assert ident.spiffe_problem is None
    else:
        assert ident.spiffe_problem is not None and problem in ident.spiffe_problem


def test_spiffe_ca_is_not_a_leaf_svid(ca: pki.Issued) -> None:
    inter = ca.intermediate("CN=I", san_uri=["spiffe://example.org/ca"])
    ident = Identity.from_certificate(cert(inter))
    assert ident.spiffe_id is None and "CA" in (ident.spiffe_problem or "")


def test_to_dict_is_json_and_complete(ca: pki.Issued) -> None:
    anchor = TrustStore([ca.pem]).anchors[0]
    ident = Identity.from_certificate(cert(ca.leaf("CN=j,O=Org", san_dns=["j.example"])), anchor)
    d = json.loads(json.dumps(ident.to_dict()))
    assert d["subject"] == {"CN": ["j"], "O": ["Org"]}
    assert d["x5t#S256"] == ident.x5t_s256
    assert d["anchor"]["subject_dn"] == "CN=Partner X CA,O=Partner X"
    assert d["san"]["dns"] == ["j.example"]


def test_identity_is_hashable_and_anchor_aware(ca: pki.Issued) -> None:
    c = cert(ca.leaf("CN=h"))
    a = Identity.from_certificate(c)
    b = a.with_anchor(TrustStore([ca.pem]).anchors[0])
    assert a != b
    assert b.with_anchor(None) == a
    assert AnchorRef.from_anchor(parse_certificate(ca.der)).scope_key == b.anchor.scope_key  # type: ignore[union-attr]


def test_docs_examples_run() -> None:
    """Every ```python block of docs/identity.md runs as written."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).parent.parent / "docs" / "identity.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "docs/identity.md", "exec"), {"__name__": "docs_example"})

