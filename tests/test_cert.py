"""Certificate input (DER, PEM, bundles) and the facts parsed once per certificate."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from mtlscore import CertificateRejected, Reason, TrustStore, Validator, load_certificates, pki
from mtlscore.identity import x5t_s256
from mtlscore.verify.policy import CLIENT_AUTH, SERVER_AUTH
from mtlscore.x509 import parse_certificate
from mtlscore.x509.cert import PARSE_CACHE, split_certificates


@pytest.fixture(scope="module")
def chain() -> pki.Issued:
    return pki.root().intermediate("CN=Issuing").leaf(
        "CN=client,O=Partner", san_dns=["client.example"], san_uri=["spiffe://td/w"],
        san_email=["ops@partner.example"], san_ip=["10.0.0.1"],
        crl_urls=["http://crl.example/ca.crl"], ocsp_urls=["http://ocsp.example"],
        ca_issuers_urls=["http://ca.example/ca.cer"], eku=[CLIENT_AUTH, SERVER_AUTH],
    )


def test_facts_of_a_leaf(chain) -> None:
    c = parse_certificate(chain.der)
    assert c.der == chain.der and c.sha256 == hashlib.sha256(chain.der).digest()
    assert c.subject_text == "CN=client,O=Partner" and c.issuer_text == "CN=Issuing"
    assert c.serial == chain.serial and c.version == 3
    assert c.not_before < pki.NOW < c.not_after
    assert c.is_ca is False and c.path_length is None and not c.self_issued
    assert c.eku == frozenset({CLIENT_AUTH, SERVER_AUTH})
    assert c.key_usage is not None and c.key_usage.digital_signature
    assert c.san is not None and len(c.san) == 4
    assert c.crl_urls == ("http://crl.example/ca.crl",)
    assert c.ocsp_urls == ("http://ocsp.example",) and c.ca_issuer_urls == ("http://ca.example/ca.cer",)
    assert c.ski is not None and c.aki == parse_certificate(chain.parent.der).ski
    assert (c.key_type, c.key_bits, c.curve) == ("ec", 256, "P-256")
    assert c.signature_hash == "sha256"


def test_facts_of_a_ca() -> None:
    root = parse_certificate(pki.root(path_length=2).der)
    assert root.is_ca is True and root.path_length == 2 and root.self_issued and root.eku is None
    assert root.describe() == "CN=Test Root CA"


@pytest.mark.parametrize(
    ("spec", "facts"),
    [
        ("ec-p384", ("ec", 384, "P-384")),
        ("ec-p521", ("ec", 521, "P-521")),
        ("ec-k256", ("ec", 256, "secp256k1")),
        ("rsa", ("rsa", 2048, None)),
        ("ed25519", ("ed25519", 256, None)),
        ("ed448", ("ed448", 456, None)),
    ],
)
def test_key_facts(spec: str, facts: tuple[object, ...]) -> None:
    c = parse_certificate(pki.root().leaf(key=spec).der)
    assert (c.key_type, c.key_bits, c.curve) == facts


def test_thumbprints(chain) -> None:
    c = parse_certificate(chain.der)
    digest = hashlib.sha256(chain.der).digest()
    assert c.x5t_s256 == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert c.fingerprint_hex == digest.hex()
    assert c.spki_pin == base64.b64encode(hashlib.sha256(c.spki_der).digest()).decode()
    assert x5t_s256(chain.pem) == x5t_s256(chain.der) == x5t_s256(c) == c.x5t_s256


def test_pem_round_trip_and_equality(chain) -> None:
    c = parse_certificate(chain.der)
    again = load_certificates(c.pem)[0]
    assert again == c and hash(again) == hash(c) and again.der == chain.der
    assert c != parse_certificate(chain.parent.der)
    assert "CN=client" in repr(c)


def test_empty_subject_is_described_by_serial() -> None:
    c = parse_certificate(pki.root().leaf(x509.Name([]), san_dns=["a.example"], san_critical=True).der)
    assert c.describe() == f"serial {c.serial:x}"


def test_parse_cache_returns_the_same_object(chain) -> None:
    first = parse_certificate(chain.der)
    hits = PARSE_CACHE.hits
    assert parse_certificate(bytes(chain.der)) is first
    assert PARSE_CACHE.hits == hits + 1


def test_bundle_forms_keep_order(chain) -> None:
    ders = chain.chain_der
    assert [c.der for c in load_certificates(chain.chain_pem)] == ders
    assert [c.der for c in load_certificates(chain.chain_pem.decode())] == ders
    assert [c.der for c in load_certificates(ders)] == ders
    assert [c.der for c in load_certificates([chain.pem, chain.parent.der])] == ders
    assert [c.der for c in load_certificates(chain.cert)] == [chain.der]
    between = chain.pem + b"\n# Issuer: CN=Issuing\n" + chain.parent.pem
    assert [c.der for c in load_certificates(between)] == ders
    trusted = chain.pem.replace(b"BEGIN CERTIFICATE", b"BEGIN TRUSTED CERTIFICATE").replace(
        b"END CERTIFICATE", b"END TRUSTED CERTIFICATE")
    assert load_certificates(trusted)[0].der == chain.der


def test_text_before_the_first_pem_block_is_allowed(chain) -> None:
    # RFC 7468 §2: data before the encapsulation boundary must not make parsing fail.
    data = b"subject=CN=client\nissuer=CN=Issuing\n" + chain.chain_pem
    assert [c.der for c in load_certificates(data)] == chain.chain_der
    with pytest.raises(CertificateRejected) as exc:
        load_certificates(b"some text\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert exc.value.reason is Reason.MALFORMED


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", Reason.NOT_PROVIDED),
        (b"  \n ", Reason.NOT_PROVIDED),
        ([], Reason.NOT_PROVIDED),
        (b"hello", Reason.MALFORMED),
        (b"\x30\x82\xff\xff\x00", Reason.MALFORMED),
        (b"\x30\x00", Reason.MALFORMED),
        (b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----", Reason.MALFORMED),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", Reason.MALFORMED),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", Reason.MALFORMED),
        (42, Reason.MALFORMED),
        (b"\x30" + b"\x00" * (200 * 1024), Reason.PKI_TOO_LARGE),
    ],
)
def test_bad_input(data: object, reason: Reason) -> None:
    with pytest.raises(CertificateRejected) as exc:
        load_certificates(data)  # type: ignore[arg-type]
    assert exc.value.reason is reason and exc.value.detail


def test_truncated_certificates_are_malformed(chain) -> None:
    for cut in (1, 10, len(chain.der) // 2, len(chain.der) - 1):
        with pytest.raises(CertificateRejected) as exc:
            parse_certificate(chain.der[:cut])
        assert exc.value.reason is Reason.MALFORMED


def test_limits(chain) -> None:
    with pytest.raises(CertificateRejected) as exc:
        parse_certificate(chain.der, max_bytes=100)
    assert exc.value.reason is Reason.PKI_TOO_LARGE
    with pytest.raises(CertificateRejected) as exc:
        load_certificates(chain.chain_der, max_count=1)
    assert exc.value.reason is Reason.PKI_TOO_LARGE
    with pytest.raises(CertificateRejected) as exc:
        load_certificates(chain.chain_pem, max_chain_bytes=len(chain.der))
    assert exc.value.reason is Reason.PKI_TOO_LARGE
    # Splitting does not parse: the limits apply before any DER is decoded.
    assert split_certificates([b"\x30\x00"]) == [b"\x30\x00"]


# -- compact certificates: what is decoded when ------------------------------------


def _bad_utf8(where: str) -> bytes:
    """A certificate whose subject (or issuer) CN is a UTF8String holding invalid UTF-8."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zzqq", _type=_ASN1Type.UTF8String)])
    root = pki.root("CN=Bad UTF-8 Root")
    cert = pki.make(name, issuer=root, ca=False) if where == "subject" else pki.make(
        "CN=fine", issuer=root, ca=False, issuer_name=name)
    der = cert.der
    i = der.index(b"zzqq")
    return der[:i] + b"z\xffqq" + der[i + 4 :]


@pytest.mark.parametrize("where", ["subject", "issuer"])
def test_an_undecodable_name_is_malformed_when_parsed_not_later(where: str) -> None:
    der = _bad_utf8(where)
    x509.load_der_x509_certificate(der)  # cryptography itself only fails when the name is read
    with pytest.raises(CertificateRejected) as info:
        parse_certificate(der)
    assert info.value.reason is Reason.MALFORMED and where in info.value.detail


def test_certificates_are_immutable_and_reload_their_cryptography_object() -> None:
    leaf = pki.root("CN=Frozen").der
    c = parse_certificate(leaf)
    with pytest.raises(AttributeError):
        c.der = b""  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del c.serial
    assert not hasattr(c, "__dict__")
    x = c.x509
    assert x is c.x509 and x.public_bytes(serialization.Encoding.DER) == leaf
    assert c.tbs == x.tbs_certificate_bytes


@pytest.mark.parametrize("key", ["rsa", "ec", "ec-p384", "ed25519"])
def test_spki_is_the_transmitted_bytes(key: str) -> None:
    c = parse_certificate(pki.root("CN=SPKI", key=key).der)
    encoded = c.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert c.spki_der == encoded and c.spki_der in c.tbs
    assert c.spki_sha256 == hashlib.sha256(encoded).digest()


def test_self_issued_compares_names_not_bytes() -> None:
    # The issuer spells the subject's name in another case and string type: the same name (RFC 5280 §7.1).
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SELF  Issued", _type=_ASN1Type.PrintableString)])
    c = parse_certificate(pki.make("CN=self issued", ca=True, issuer_name=issuer).der)
    assert c._issuer_raw != c._subject_raw
    assert c.self_issued and c.subject_key == c.issuer_key
    other = parse_certificate(pki.root("CN=Other").der)
    assert other.self_issued
    assert not parse_certificate(pki.root("CN=R2").leaf("CN=leaf").der).self_issued


@pytest.mark.parametrize("key", ["rsa", "ec"])
@pytest.mark.parametrize("hash_alg", ["sha224", "sha256", "sha384", "sha512"])
def test_signature_facts_by_oid_agree_with_cryptography(key: str, hash_alg: str) -> None:
    from mtlscore.x509._algorithms import BY_OID

    c = parse_certificate(pki.root("CN=Sig", key=key, hash_alg=hash_alg).der)
    x = x509.load_der_x509_certificate(c.der)
    assert c.signature_oid in BY_OID
    assert x.signature_hash_algorithm is not None
    assert c.signature_hash == x.signature_hash_algorithm.name == hash_alg
    assert type(c.signature_params) is type(x.signature_algorithm_parameters)


def test_certificates_pickle_and_copy_as_their_der() -> None:
    import copy
    import pickle

    c = parse_certificate(pki.root("CN=Pickled").der)
    for again in (pickle.loads(pickle.dumps(c)), copy.copy(c), copy.deepcopy(c)):
        assert again == c and again.serial == c.serial and again.subject_key == c.subject_key
        assert type(again) is type(c)


@pytest.mark.parametrize("key", ["ec", "ec-p384", "ec-p521"])
def test_the_named_curve_spki_shapes_are_cryptographys(key: str) -> None:
    from mtlscore.x509._algorithms import NAMED_CURVE_SPKI, named_curve_spki

    c = parse_certificate(pki.root("CN=Curve", key=key).der)
    encoded = c.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    head, size = NAMED_CURVE_SPKI[c.curve or ""]
    assert encoded.startswith(head) and len(encoded) == size
    assert named_curve_spki(c.spki_der, c.curve) and c.curve != "explicit"
    # The same key spelled with another head (or length) is not taken for the named form.
    assert not named_curve_spki(b"\x30" + c.spki_der[1:-1], c.curve)


def test_a_signature_with_unused_bits_is_malformed() -> None:
    # Found by test_properties' one-byte mutations: setting the signatureValue's
    # unused-bits octet to 1 (when the last signature bit is 0, so the BIT STRING is
    # still DER) gave a second encoding that the same signature verified.
    root = pki.root()
    for _ in range(64):
        leaf = root.leaf()
        if leaf.cert.signature[-1] % 2 == 0:
            break
    der = bytearray(leaf.der)
    at = len(der) - len(leaf.cert.signature) - 1
    assert der[at] == 0
    der[at] = 1
    with pytest.raises(CertificateRejected) as exc:
        parse_certificate(bytes(der))
    assert exc.value.reason is Reason.MALFORMED and "unused bits" in exc.value.detail
    v = Validator(TrustStore([root.der])).validate([bytes(der)], at=pki.NOW)
    assert v.reason is Reason.MALFORMED
    assert Validator(TrustStore([root.der])).validate([leaf.der], at=pki.NOW).ok


def test_a_signature_algorithm_unlike_the_tbs_one_is_malformed() -> None:
    # RFC 5280 §4.1.1.2. The outer AlgorithmIdentifier is not signed: dropping the NULL
    # parameters of sha256WithRSAEncryption there gave another encoding (another
    # thumbprint) that cryptography loads and the same signature verified.
    root = pki.root(key="rsa")
    leaf = root.leaf(key="rsa")
    with_null = bytes.fromhex("300d06092a864886f70d01010b0500")
    der = leaf.der
    at = der.rindex(with_null)
    assert at > len(leaf.cert.tbs_certificate_bytes)  # the outer one, after the TBS
    body = der[4:at] + bytes.fromhex("300b06092a864886f70d01010b") + der[at + len(with_null):]
    assert der[:2] == b"\x30\x82"
    changed = b"\x30\x82" + len(body).to_bytes(2, "big") + body
    assert x509.load_der_x509_certificate(changed).signature_algorithm_oid == leaf.cert.signature_algorithm_oid
    with pytest.raises(CertificateRejected) as exc:
        parse_certificate(changed)
    assert exc.value.reason is Reason.MALFORMED and "4.1.1.2" in exc.value.detail
    assert Validator(TrustStore([root.der])).validate([changed], at=pki.NOW).reason is Reason.MALFORMED
    assert Validator(TrustStore([root.der])).validate([leaf.der], at=pki.NOW).ok


def test_forget_certificates_leaves_nothing_learned_from_them() -> None:
    # The cold benchmark's promise (a chain seen for the first time): after forget_certificates
    # no table holds anything read from a certificate's contents, and reading it again
    # learns it all again.
    from mtlscore.x509 import _extensions, _read_common
    from mtlscore.x509.cert import forget_certificates
    from mtlscore.x509.certificate import NAME_KEYS

    issued = pki.root("CN=Forget Root").intermediate("CN=Forget CA").leaf(
        "CN=forget", san_dns=["forget.example"])

    def learned() -> dict[str, int]:
        c = parse_certificate(issued.der)
        assert c.issuer_key and c.subject_key and c.eku  # what validation reads: name keys, the EKU set
        return {"parsed": len(PARSE_CACHE), "name keys": len(NAME_KEYS),
                "extension values": len(_extensions.SHARED_EXTENSIONS),
                "issuer names": len(_read_common._CHECKED_NAMES), "oid texts": len(_extensions._OID_TEXTS),
                "sets": len(_extensions._SETS), "extension sets": len(_extensions._EXTENSION_SETS)}

    parse_certificate(issued.der, remember=False)  # its signature algorithm known: the one-pass read takes it
    forget_certificates()
    first = learned()
    assert all(first.values()), first
    forget_certificates()
    assert not any((len(PARSE_CACHE), len(NAME_KEYS), len(_extensions.SHARED_EXTENSIONS),
                    len(_read_common._CHECKED_NAMES), len(_extensions._OID_TEXTS), len(_extensions._SETS),
                    len(_extensions._EXTENSION_SETS)))
    assert learned() == first
