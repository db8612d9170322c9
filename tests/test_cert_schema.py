"""The declarative read of a certificate (mtlscore/x509/schema.py) against cryptography's own.

Every fact the checks read is compared with what ``cryptography``'s
``x509.Certificate`` says of the same DER, for certificates whose extensions
are read by the schemas and for those handed to ``cryptography`` (other
extensions, other GeneralName forms, forms it refuses).
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
from datetime import timedelta

import pytest
from conformance import limbo
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from mtlscore import CertificateRejected, Policy, Reason, TrustStore, Validator, pki
from mtlscore.x509._extensions import SHARED_EXTENSIONS
from mtlscore.x509._read_any import read_any
from mtlscore.x509._read_common import clear_checked_names, read_common
from mtlscore.x509.cert import der_sequence, parse_certificate
from mtlscore.x509.certificate import Certificate

_ROOT = pki.root("CN=Schema Root")


def _ext(x: x509.Certificate, oid: x509.ObjectIdentifier) -> object:
    try:
        return x.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _agrees(der: bytes) -> None:
    c = parse_certificate(der, remember=False)
    x = x509.load_der_x509_certificate(der)
    bc = _ext(x, ExtensionOID.BASIC_CONSTRAINTS)
    assert c.is_ca == (bc.ca if isinstance(bc, x509.BasicConstraints) else None)
    assert c.path_length == (bc.path_length if isinstance(bc, x509.BasicConstraints) else None)
    assert c.key_usage == _ext(x, ExtensionOID.KEY_USAGE)
    eku = _ext(x, ExtensionOID.EXTENDED_KEY_USAGE)
    assert c.eku == (frozenset(o.dotted_string for o in eku) if isinstance(eku, x509.ExtendedKeyUsage) else None)
    san = _ext(x, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert c.san == (tuple(san) if isinstance(san, x509.SubjectAlternativeName) else None)
    ski = _ext(x, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    assert c.ski == (ski.digest if isinstance(ski, x509.SubjectKeyIdentifier) else None)
    aki = _ext(x, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    assert c.aki == (aki.key_identifier if isinstance(aki, x509.AuthorityKeyIdentifier) else None)
    dps = _ext(x, ExtensionOID.CRL_DISTRIBUTION_POINTS)
    assert c.crl_urls == tuple(n.value for dp in dps or () for n in dp.full_name or ()  # type: ignore[attr-defined]
                               if isinstance(n, x509.UniformResourceIdentifier))
    aia = _ext(x, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    for urls, method in ((c.ocsp_urls, AuthorityInformationAccessOID.OCSP),
                         (c.ca_issuer_urls, AuthorityInformationAccessOID.CA_ISSUERS)):
        assert urls == tuple(d.access_location.value for d in aia or ()  # type: ignore[attr-defined]
                             if d.access_method == method
                             and isinstance(d.access_location, x509.UniformResourceIdentifier))
    policies = _ext(x, ExtensionOID.CERTIFICATE_POLICIES)
    assert c.policies == (None if policies is None else frozenset(
        p.policy_identifier.dotted_string for p in policies))  # type: ignore[attr-defined]
    assert c.extension_oids == frozenset(e.oid.dotted_string for e in x.extensions)
    assert c.critical_oids == frozenset(e.oid.dotted_string for e in x.extensions if e.critical)
    assert (c.serial, c.not_before, c.not_after, c.signature) == (
        x.serial_number, x.not_valid_before_utc, x.not_valid_after_utc, x.signature)
    assert c.version == (3 if x.version is x509.Version.v3 else 1)
    assert c.tbs == x.tbs_certificate_bytes
    assert c.signature_oid == x.signature_algorithm_oid.dotted_string


@pytest.mark.parametrize(
    "kw",
    [
        {"san_dns": ["a.example", "b.example"]},
        {"san_uri": ["spiffe://example.org/ns/a/sa/b"], "san_email": ["a@example.org"]},
        {"san_ip": ["192.0.2.7", "2001:db8::7"]},
        {"eku": ["1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.1"], "eku_critical": True, "san_critical": True,
         "san_dns": ["c.example"]},
        {"key_usage": x509.KeyUsage(False, False, False, False, True, False, False, True, False),
         "san_dns": ["ka.example"]},
        {"ski": False, "aki": False, "eku": None, "key_usage": None},
        {"ca": True, "path_length": 3},
        {"ca": True, "path_length": 0, "bc_critical": False},
        # Read by cryptography: a SAN form the schema does not read, name constraints.
        {"extensions": [(x509.SubjectAlternativeName([x509.DirectoryName(x509.Name.from_rfc4514_string("CN=d"))]),
                         False)]},
        {"ca": True, "permitted": [x509.DNSName("example.org")]},
        {"crl_urls": ["http://127.0.0.1/ca.crl"], "san_dns": ["d.example"]},
    ],
)
def test_the_declarative_facts_are_cryptographys(kw: dict[str, object]) -> None:
    _agrees(pki.make("CN=schema", issuer=_ROOT, **kw).der)


def test_a_profile_s_shared_extensions_are_decoded_once_and_not_mixed() -> None:
    a = _ROOT.leaf("shared-a", san_dns=["a.example"])
    b = _ROOT.leaf("shared-b", san_dns=["b.example"])
    ca = pki.make("CN=schema ca", issuer=_ROOT, ca=True, path_length=1)
    for item in (a, b, ca):
        _agrees(item.der)
    bc = a.cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    assert (bc.oid.dotted_string, bc.value.public_bytes()) in SHARED_EXTENSIONS
    pa, pca = parse_certificate(a.der), parse_certificate(ca.der)
    assert pa.is_ca is False and pca.is_ca is True and pca.path_length == 1
    assert pa.san == (x509.DNSName("a.example"),)
    assert parse_certificate(b.der).san == (x509.DNSName("b.example"),)


def _with_extension(oid: x509.ObjectIdentifier, value: bytes) -> bytes:
    # The extension as raw bytes: a form the builder itself would not write.
    san = [] if oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME else ["r.example"]
    return pki.make("CN=raw", issuer=_ROOT, key_usage=None, san_dns=san,
                    extensions=[(x509.UnrecognizedExtension(oid, value), False)]).der


@pytest.mark.parametrize(
    ("oid", "value"),
    [
        # RFC 5280 §4.2.1.3: decipherOnly without keyAgreement (cryptography refuses it).
        (ExtensionOID.KEY_USAGE, bytes.fromhex("0303070080")),
        # §4.2.1.9: pathLenConstraint with cA FALSE.
        (ExtensionOID.BASIC_CONSTRAINTS, bytes.fromhex("3003020101")),
        # A SAN iPAddress of 5 octets.
        (ExtensionOID.SUBJECT_ALTERNATIVE_NAME, bytes.fromhex("3007870501020304 05".replace(" ", ""))),
        # Not DER: an encoded DEFAULT (cA FALSE).
        (ExtensionOID.BASIC_CONSTRAINTS, bytes.fromhex("30030101 00".replace(" ", ""))),
        # An OCSP responder, and a CRL distribution point, at an iPAddress of 5 octets.
        (ExtensionOID.AUTHORITY_INFORMATION_ACCESS, bytes.fromhex("3013301106082b0601050507300187050102030405")),
        (ExtensionOID.CRL_DISTRIBUTION_POINTS, bytes.fromhex("300d300ba009a00787050102030405")),
    ],
)
def test_what_cryptography_refuses_the_schemas_refuse(oid: x509.ObjectIdentifier, value: bytes) -> None:
    der = _with_extension(oid, value)
    with pytest.raises(Exception):  # noqa: B017 - cryptography's own refusal, whatever its type
        x509.load_der_x509_certificate(der).extensions  # noqa: B018
    with pytest.raises(CertificateRejected) as info:
        parse_certificate(der)
    assert info.value.reason is Reason.MALFORMED


def test_ip_addresses_are_cryptographys_objects() -> None:
    c = parse_certificate(pki.make("CN=ip", issuer=_ROOT, san_ip=["10.0.0.1", "::1"]).der)
    assert c.san == (x509.IPAddress(ipaddress.ip_address("10.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1")))


def _with_subject_value(tag: int, value: bytes) -> bytes:
    """A leaf whose subject CN is re-tagged ``tag`` with ``value`` (same length; its signature no longer verifies)."""
    cn = b"schema-name-x"
    der = _ROOT.leaf(cn.decode(), san_dns=["n.example"]).der
    old = b"\x0c" + bytes([len(cn)]) + cn
    assert der.count(old) == 1 and len(value) == len(cn)
    return der.replace(old, bytes([tag, len(cn)]) + value)


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        (0x13, b"schema@name-x"),  # PrintableString: '@' is outside its alphabet (X.680 §41.4)
        (0x0C, b"schema-name-\xff"),  # UTF8String: not UTF-8
        (0x16, b"schema-name-\xe9"),  # IA5String: 8 bits, and not UTF-8 either
    ],
)
def test_a_name_cryptography_refuses_is_malformed_whatever_was_parsed_before(tag: int, value: bytes) -> None:
    # A certificate with the same signature algorithm and issuer parsed first: nothing
    # about the bad one is loaded by cryptography for being new, the schema decides.
    parse_certificate(_ROOT.leaf("schema-name-ok").der, remember=False)
    der = _with_subject_value(tag, value)
    with pytest.raises(Exception):  # noqa: B017 - cryptography's own refusal, whatever its type
        x509.load_der_x509_certificate(der).subject  # noqa: B018
    with pytest.raises(CertificateRejected) as info:
        parse_certificate(der, remember=False)
    assert info.value.reason is Reason.MALFORMED


@pytest.mark.parametrize(("tag", "value"), [(0x13, b"Schema Name-x"), (0x0C, b"schema-n\xc3\xa9me-"),
                                            (0x16, b"schema-name-x"), (0x14, b"schema-name-x")])
def test_names_cryptography_reads_are_read(tag: int, value: bytes) -> None:
    # 0x14 (TeletexString) is not a type of the schema: cryptography reads that name.
    der = _with_subject_value(tag, value)
    c = parse_certificate(der, remember=False)
    assert c.subject == x509.load_der_x509_certificate(der).subject
    _agrees(der)


def test_a_bare_pkcs1_key_in_place_of_the_spki_is_malformed() -> None:
    # RFC 5280 §4.1.2.7: subjectPublicKeyInfo is an SPKI. load_der_public_key also takes a
    # bare PKCS #1 RSAPublicKey (RFC 8017 §A.1.1); cryptography's certificate refuses it.
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from mtlscore.x509.cert import der_sequence

    leaf = _ROOT.leaf("schema-pkcs1", key="rsa")
    parse_certificate(_ROOT.leaf("schema-pkcs1-ok", key="rsa").der, remember=False)  # the algorithm is known
    c = parse_certificate(leaf.der, remember=False)
    pkcs1 = c.public_key.public_bytes(Encoding.DER, PublicFormat.PKCS1)
    tbs = c.tbs
    header = 4 if tbs[1] == 0x82 else 3 if tbs[1] == 0x81 else 2
    assert tbs.count(c.spki_der) == 1
    new_tbs = der_sequence(tbs[header:].replace(c.spki_der, pkcs1))
    der = der_sequence(new_tbs + leaf.der[c._tbs_end :])  # the same signatureAlgorithm and signature
    with pytest.raises(Exception):  # noqa: B017 - cryptography's own refusal, whatever its type
        x509.load_der_x509_certificate(der)
    with pytest.raises(CertificateRejected) as info:
        parse_certificate(der, remember=False)
    assert info.value.reason is Reason.MALFORMED


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_whatever_cryptography_refuses_to_load_is_malformed() -> None:
    # The read loads no cryptography certificate for the common forms, so every
    # structure rule cryptography's loader enforces must hold without it: the
    # x509-limbo certificates and seeded random byte mutations of them, each parsed
    # after its unmutated original (the algorithm, names and extensions then known).

    rng = random.Random(17)
    refused = 0
    for original in limbo.certificates(every=4, trusted=False):
        if _loads(original):
            parse_certificate(original, remember=False)
        for _ in range(30):
            der = _mutant(rng, original)
            if _loads(der):
                continue
            refused += 1
            with pytest.raises(CertificateRejected) as info:
                parse_certificate(der, remember=False)
            assert info.value.reason is Reason.MALFORMED, der.hex()
    assert refused > 1000  # the mutations reach cryptography's refusals


def _mutant(rng: random.Random, original: bytes) -> bytes:
    """``original`` with one or two octets replaced (70 %) or one bit flipped in them."""
    der = bytearray(original)
    for _k in range(rng.choice((1, 1, 2))):
        p = rng.randrange(len(der))
        if rng.random() < 0.7:
            der[p] = rng.randrange(256)
        else:
            der[p] ^= 1 << rng.randrange(8)
    return bytes(der)


def _loads(der: bytes) -> bool:
    """Whether cryptography loads ``der`` and reads its names (what it refuses there is malformed)."""
    try:
        x = x509.load_der_x509_certificate(der)
        x.subject  # noqa: B018
        x.issuer  # noqa: B018
    except Exception:  # noqa: BLE001 - cryptography's own refusal, whatever its type
        return False
    return True


# -- the one-pass read (read_common) against the general one (read_any) ---------------------

_DNS_ONLY = bytes.fromhex("300b8209612e6578616d706c65")  # GeneralNames { dNSName "a.example" }

_COMPARED = [n for n in Certificate.__slots__ if n not in ("_x509", "_san", "_subject_key", "_issuer_key",
                                                            "_self_issued", "_spki_sha256", "_subject_text",
                                                            "_sha256", "_spki_raw", "_spki_start", "_spki_end")]


def _facts(c: Certificate) -> dict[str, object]:
    out = {n: getattr(c, n) for n in _COMPARED}
    out["san"], out["tbs"], out["spki_der"], out["sha256"] = c.san, c.tbs, c.spki_der, c.sha256
    out["signature"] = c.signature
    return out


def _same_read(der: bytes) -> bool:
    """Whether the one-pass read took ``der``; when it did, every fact is the general read's.

    Whatever the one-pass read returns, the general read returns too, with the same
    facts; what it leaves (None) the general read decides, refusals included.
    """
    digest = hashlib.sha256(der).digest()
    try:
        general: Certificate | None = read_any(der, digest)
    except CertificateRejected:
        general = None
    common = read_common(der, digest)
    if common is None:
        return False
    assert general is not None, f"the one-pass read took what the general read refuses: {der.hex()}"
    assert _facts(common) == _facts(general), der.hex()
    return True


_COMMON_SHAPES = [
    {"san_dns": ["a.example", "b.example"]},
    {"san_uri": ["spiffe://example.org/ns/a/sa/b"], "san_email": ["a@example.org"]},
    {"san_ip": ["192.0.2.7", "2001:db8::7"], "key": "rsa"},
    {"eku": ["1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.1"], "eku_critical": True, "san_critical": True,
     "san_dns": ["c.example"], "key": "ec-p384"},
    {"ski": False, "aki": False, "eku": None, "key_usage": None},
    {"ski": False, "san_dns": ["s.example"]},
    {"ca": True, "path_length": 3, "key": "rsa"},
    {"key": "ed25519", "san_dns": ["e.example"]},
    {"serial": 2**159 + 1, "san_dns": ["big.example"]},
    {"serial": 1, "not_after": pki.NOW + timedelta(days=365 * 80)},  # a GeneralizedTime notAfter
    # What certificates of public and enterprise CAs carry besides: CRL distribution points,
    # authority information access, certificate policies (with a CPS pointer or none).
    {"crl_urls": ["http://127.0.0.1/ca.crl", "http://127.0.0.2/ca.crl"], "ocsp_urls": ["http://127.0.0.1/ocsp"],
     "ca_issuers_urls": ["http://127.0.0.1/ca.cer"], "san_dns": ["p.example"], "extensions": [
         (x509.CertificatePolicies([
             x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"), None),
             x509.PolicyInformation(x509.ObjectIdentifier("1.3.6.1.4.1.99.1"), ["https://cps.example/"]),
         ]), False)]},
    {"ocsp_urls": ["http://127.0.0.1/ocsp"], "crl_dps": [x509.DistributionPoint(
        [x509.DNSName("not-a-uri.example")], None, None, None)], "ski": False},
]


@pytest.mark.parametrize("kw", _COMMON_SHAPES)
def test_the_one_pass_read_is_the_general_read(kw: dict[str, object]) -> None:
    der = pki.make("CN=one pass,O=Partner", issuer=_ROOT, **kw).der  # type: ignore[arg-type]
    parse_certificate(der, remember=False)  # the signature algorithm and the issuer become known
    assert _same_read(der)  # and the one-pass read took it


@pytest.mark.parametrize(
    "kw",
    [
        {"ca": True, "permitted": [x509.DNSName("example.org")]},  # an extension it leaves to the general read
        {"crl_dps": [x509.DistributionPoint([x509.UniformResourceIdentifier("http://127.0.0.1/a.crl"),
                                             x509.UniformResourceIdentifier("http://127.0.0.1/b.crl")],
                                            None, None, None)]},  # a fullName of two names
        {"crl_dps": [x509.DistributionPoint([x509.UniformResourceIdentifier("http://127.0.0.1/a.crl")], None,
                                            frozenset([x509.ReasonFlags.key_compromise]), None)]},  # reasons
        {"extensions": [(x509.CertificatePolicies([x509.PolicyInformation(
            x509.ObjectIdentifier("1.3.6.1.4.1.99.1"), [x509.UserNotice(None, "notice")])]), False)]},
        {"extensions": [(x509.SubjectAlternativeName([x509.DirectoryName(x509.Name.from_rfc4514_string("CN=d"))]),
                         False)]},  # a GeneralName form the schema does not read
        {"key": "ec-k256"},  # not a curve whose SPKI shape is known here
        {"pss": True, "issuer": pki.root("CN=Schema RSA Root", key="rsa")},  # an algorithm with parameters
    ],
)
def test_the_one_pass_read_leaves_the_rest(kw: dict[str, object]) -> None:
    der = pki.make("CN=leaves", **{"issuer": _ROOT, **kw}).der  # type: ignore[arg-type]
    parse_certificate(der, remember=False)
    assert not _same_read(der)
    assert parse_certificate(der, remember=False).der == der


def test_an_algorithm_not_seen_before_goes_to_the_general_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # cryptography's AlgorithmIdentifier decides which parameters an algorithm may carry;
    # the one-pass read trusts only encodings it has accepted before.
    from mtlscore.x509 import _algorithms, _read_common

    fresh: dict[bytes, str] = {}  # one table, as before the split: the general read fills what the one-pass read reads
    monkeypatch.setattr(_algorithms, "ALGORITHMS", fresh)
    monkeypatch.setattr(_read_common, "_ALGORITHMS", fresh)
    first, second = (_ROOT.leaf(n, san_dns=["f.example"]).der for n in ("first", "second"))
    assert read_common(first, hashlib.sha256(first).digest()) is None
    parse_certificate(first, remember=False)
    assert _same_read(second)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_the_one_pass_read_agrees_on_limbo_and_mutations() -> None:
    # x509-limbo's certificates and seeded byte mutations of them (each after its original,
    # which makes its algorithm and issuer known): whatever the one-pass read takes, the
    # general read takes with the same facts. Mutations of a certificate it takes test the
    # extents: a length changed anywhere must not shift a name, the SPKI or the TBS.

    rng = random.Random(1717)
    taken = mutated_taken = 0
    leaves = [_ROOT.leaf(f"mutant-{i}", san_dns=["m.example"], san_ip=["10.0.0.1"]).der for i in range(4)]
    for original in leaves + limbo.certificates(every=4, trusted=False):
        try:
            parse_certificate(original, remember=False)
        except CertificateRejected:
            pass
        taken += _same_read(original)
        for _ in range(60):
            mutated_taken += _same_read(_mutant(rng, original))
    assert taken > 50 and mutated_taken > 500  # both reads were compared, many times


def test_a_client_certificate_holds_its_der_once() -> None:
    # A client certificate stays in the verdict cache as long as its verdict: what it holds
    # besides its DER is what the checks read, not copies of the DER's parts. Its signature
    # and SPKI are sliced from the DER when read (the same bytes as cryptography's), and its
    # issuer name is the one copy every certificate of that CA shares.
    clear_checked_names()  # the reads above filled the bounded set of issuer names with limbo's
    inter = _ROOT.intermediate("CN=Schema Held Once")
    parse_certificate(inter.leaf("held-0").der, remember=False)  # the algorithm and the issuer become known
    ders = [inter.leaf(f"held-{i}").der for i in (1, 2)]
    assert all(read_common(d) is not None for d in ders)  # the one-pass read, as for every next client
    first, second = (parse_certificate(d, remember=False) for d in ders)
    for c in (first, second):
        x = x509.load_der_x509_certificate(c.der)
        assert c.signature == x.signature
        assert c.spki_der == x.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        held = [getattr(c, n) for n in Certificate.__slots__ if n != "der" and hasattr(c, n)]
        assert not any(isinstance(v, bytes) and v in (c.signature, c.spki_der) for v in held)
    assert first.issuer_der == second.issuer_der and first.issuer_der is second.issuer_der


def _with_san(san: bytes) -> bytes:
    return pki.make("CN=raw san", issuer=_ROOT, ski=False, extensions=[
        (x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, san), False),
    ]).der


@pytest.mark.parametrize(
    "san",
    [
        bytes.fromhex("30810b8209612e6578616d706c65"),  # not DER: a long-form length where the short form fits
        bytes.fromhex("3000"),  # GeneralNames is SIZE (1..MAX) (RFC 5280 §4.2.1.6)
        bytes.fromhex("30078705c0000207ff"),  # an iPAddress of 5 octets
        _DNS_ONLY + b"\x00",  # trailing data
    ],
    ids=["long-length", "empty", "ip-5-octets", "trailing"],
)
def test_a_subject_alt_name_without_key_identifier_is_checked_when_read(san: bytes) -> None:
    # The one-pass read keeps a SAN's value as bytes (its objects are made when Certificate.san
    # is read), so its check is the decode at reading time: what it refuses, the general read decides.
    well_formed = _with_san(_DNS_ONLY)
    parse_certificate(well_formed, remember=False)  # the algorithm and the issuer become known
    assert _same_read(well_formed)
    der = _with_san(san)
    assert read_common(der) is None
    try:
        general = read_any(der).san
    except CertificateRejected as exc:
        general = exc.reason
    try:
        got = parse_certificate(der, remember=False).san
    except CertificateRejected as exc:
        got = exc.reason
    assert got == general


def _with_san_and_ski(san: bytes, ski: bytes) -> bytes:
    return pki.make("CN=raw pair", issuer=_ROOT, ski=False, extensions=[
        (x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, san), False),
        (x509.UnrecognizedExtension(ExtensionOID.SUBJECT_KEY_IDENTIFIER, ski), False),
    ]).der


_DNS = _DNS_ONLY


@pytest.mark.parametrize(
    ("san", "ski"),
    [
        # Not DER: a long-form length where the short form fits (X.690 §10.1).
        (_DNS, bytes.fromhex("048103aabbcc")),
        (bytes.fromhex("30810b8209612e6578616d706c65"), bytes.fromhex("0403aabbcc")),
        # Each value alone is not one element, together they read as a SAN and an SKI:
        # the SAN's value carries the key identifier's first octets, the SKI's the rest.
        (_DNS + bytes.fromhex("0402aa"), bytes.fromhex("bb")),
        (_DNS + bytes.fromhex("0401aa"), b""),
        (_DNS, bytes.fromhex("0403aabbcc00")),  # trailing data
    ],
    ids=["ski-long-length", "san-long-length", "split-key-id", "split-empty-ski", "ski-trailing"],
)
def test_a_malformed_extension_value_is_refused_as_before(san: bytes, ski: bytes) -> None:
    der = _with_san_and_ski(san, ski)
    with pytest.raises(Exception):  # noqa: B017 - cryptography's own refusal, whatever its type
        x509.load_der_x509_certificate(der).extensions  # noqa: B018
    parse_certificate(_with_san_and_ski(_DNS, bytes.fromhex("0403aabbcc")), remember=False)  # the pair's form
    assert read_common(der, hashlib.sha256(der).digest()) is None
    with pytest.raises(CertificateRejected) as before:
        read_any(der, hashlib.sha256(der).digest())
    with pytest.raises(CertificateRejected) as info:
        parse_certificate(der, remember=False)
    assert (info.value.reason, info.value.detail) == (before.value.reason, before.value.detail)
    assert info.value.reason is Reason.MALFORMED
    # And so is the chain that carries it.
    verdict = Validator(TrustStore(anchors=[_ROOT.pem]), Policy(revocation="off")).validate(
        [der], at=pki.NOW)
    assert not verdict.ok and verdict.reason is Reason.MALFORMED


def test_the_pair_s_well_formed_values_are_read_together() -> None:
    der = _with_san_and_ski(_DNS, bytes.fromhex("0403aabbcc"))
    parse_certificate(der, remember=False)
    assert _same_read(der)
    c = parse_certificate(der, remember=False)
    assert c.san == (x509.DNSName("a.example"),) and c.ski == bytes.fromhex("aabbcc")


@pytest.mark.parametrize("email", [b"A <a@b.example>", b"", b"a@b.example"])
def test_san_emails_are_cryptographys_objects_when_read(email: bytes) -> None:
    # cryptography's RFC822Name() refuses a display name or an empty value, which its
    # reader makes without asking: such a SAN is read by cryptography, and .san never raises.
    value = der_sequence(bytes([0x81, len(email)]) + email)
    der = pki.make("CN=email", issuer=_ROOT, extensions=[
        (x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, value), False)]).der
    c = parse_certificate(der, remember=False)
    assert c.san == tuple(x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value)
    _agrees(der)
    _same_read(der)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_extensions_are_read_as_cryptography_reads_them(seed: int) -> None:
    # Byte mutations inside the extensions of certificates whose CRL distribution points,
    # AIA and policies the schemas read: what cryptography refuses to read is malformed,
    # what both read has cryptography's facts (x509-limbo has few such extensions).

    rng = random.Random(seed)
    shape = _COMMON_SHAPES[-2 + seed % 2]
    original = pki.make(f"CN=mutated {seed}", issuer=_ROOT, **shape).der  # type: ignore[arg-type]
    parsed = parse_certificate(original, remember=False)
    start = original.index(parsed.spki_der) + len(parsed.spki_der)
    refused = read = 0
    for _ in range(400):
        der = bytearray(original)
        for _k in range(rng.choice((1, 1, 2))):
            p = rng.randrange(start, parsed._tbs_end)
            if rng.random() < 0.7:
                der[p] = rng.randrange(256)
            else:
                der[p] ^= 1 << rng.randrange(8)
        mutant = bytes(der)
        try:
            x = x509.load_der_x509_certificate(mutant)
            x.extensions  # noqa: B018
        except Exception:  # noqa: BLE001 - cryptography's own refusal, whatever its type
            refused += 1
            with pytest.raises(CertificateRejected) as info:
                parse_certificate(mutant, remember=False)
            assert info.value.reason is Reason.MALFORMED, mutant.hex()
            continue
        try:
            parse_certificate(mutant, remember=False)
        except CertificateRejected:
            continue  # a rule of mtlscore's own (a bad Name, an iPAddress of 5 octets in the SAN, …)
        read += 1
        _agrees(mutant)
        _same_read(mutant)
    assert refused > 50 and read > 50
