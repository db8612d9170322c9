"""Proxy header formats: round trips (hypothesis), strictness, limits, hostile input."""

from __future__ import annotations

import base64
import urllib.parse

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlscore import CertificateRejected, Reason, Verdict, pki
from mtlscore.proxy import headers as h
from mtlscore.x509.cert import parse_certificate

ROOT = pki.root()
INTER = ROOT.intermediate()
LEAVES = [
    INTER.leaf("client.example", san_dns=["a.example", "b.example"], san_uri=["spiffe://td/ns/x"]),
    INTER.leaf(
        x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, 'We, "quote"; semi=colon\\'),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme+Co"),
            ]
        ),
        key="rsa",
    ),
    INTER.leaf("Müller ünïcode", san_uri=["https://x.example/a;b=c,d"]),
    ROOT.leaf("direct.example", key="ec-p384"),
]
POOL = [parse_certificate(c.der) for c in (ROOT, INTER, *LEAVES)]
L0 = parse_certificate(LEAVES[0].der)
I0 = parse_certificate(INTER.der)

certs = st.sampled_from(POOL)
chains = st.lists(certs, min_size=1, max_size=5)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rejected(reason: Reason):
    return pytest.raises(CertificateRejected, match=reason.value)


# --- round trips: emit → parse → same DER chain ------------------------------------------


@SETTINGS
@given(certs)
def test_rfc9440_client_cert_round_trip(cert):
    value = h.emit_client_cert(cert)
    assert value.startswith(":") and value.endswith(":")
    assert h.parse_client_cert(value).der == cert.der
    assert h.parse_client_cert(value.encode("latin-1")).der == cert.der


@SETTINGS
@given(chains)
def test_rfc9440_chain_round_trip(chain):
    assert [c.der for c in h.parse_client_cert_chain(h.emit_client_cert_chain(chain))] == [
        c.der for c in chain
    ]


@SETTINGS
@given(certs)
def test_nginx_escaped_round_trip(cert):
    value = h.emit_nginx_escaped_cert(cert)
    assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%")
    assert h.parse_nginx_escaped_cert(value).der == cert.der


def test_nginx_escaping_matches_urlencoding_of_pem():
    # nginx escapes with NGX_ESCAPE_URI_COMPONENT: everything except RFC 3986 unreserved.
    value = h.emit_nginx_escaped_cert(L0)
    assert value == urllib.parse.quote(L0.pem, safe="")
    assert urllib.parse.unquote(value) == L0.pem


@SETTINGS
@given(certs, st.sampled_from(["\n\t", " ", "\t", "\r\n\t"]))
def test_nginx_legacy_round_trip(cert, fold):
    value = h.emit_nginx_cert(cert)
    assert value.startswith("-----BEGIN CERTIFICATE-----\n\t")
    assert not value.endswith("\n")
    # As sent (obs-fold) and as servers unfold it.
    assert h.parse_nginx_cert(value.replace("\n\t", fold)).der == cert.der


@SETTINGS
@given(chains)
def test_alb_round_trip(chain):
    value = h.emit_alb_clientcert(chain)
    assert "%2B" not in value and "%2F" not in value and "%3D" not in value  # +=/ kept
    assert [c.der for c in h.parse_alb_clientcert(value)] == [c.der for c in chain]


@SETTINGS
@given(certs)
def test_alb_leaf_round_trip(cert):
    assert h.parse_alb_leaf(h.emit_alb_leaf(cert)).der == cert.der


@SETTINGS
@given(
    st.lists(
        st.tuples(chains, st.lists(st.text(max_size=20), max_size=2)),
        min_size=1,
        max_size=4,
    )
)
def test_xfcc_round_trip(hops):
    elements = [h.XfccElement.from_chain(chain, by=by) for chain, by in hops]
    parsed = h.parse_xfcc(h.emit_xfcc(elements))
    assert len(parsed) == len(elements)
    for got, want in zip(parsed, elements, strict=True):
        assert [c.der for c in got.presented] == [c.der for c in want.presented]
        assert got.hash == want.hash
        assert got.uri == want.uri
        assert got.dns == want.dns


def test_xfcc_subject_and_by_quoting_round_trip():
    leaf = parse_certificate(LEAVES[1].der)
    el = h.XfccElement.from_chain([leaf], by=['spiffe://a;b="c"', "plain"])
    text = h.emit_xfcc([el])
    assert 'Subject="' in text
    (got,) = h.parse_xfcc(text)
    assert got.subject == leaf.subject_text
    assert got.by == ('spiffe://a;b="c"', "plain")


def test_xfcc_envoy_documented_example():
    # From the Envoy docs (no Cert): By, Hash, Subject always quoted, URI.
    value = (
        "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;"
        'Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=spiffe://lyft.com/test-team'
    )
    (el,) = h.parse_xfcc(value)
    assert el.by == ("http://frontend.lyft.com",)
    assert el.subject == "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client"
    assert el.uri == ("spiffe://lyft.com/test-team",)
    assert el.presented == ()


def test_xfcc_quoted_cert_and_multiple_dns():
    value = f'Hash={L0.fingerprint_hex};Cert="{h.emit_nginx_escaped_cert(L0)}";DNS=a;DNS=b'
    (el,) = h.parse_xfcc(value)
    assert el.presented == (L0,)
    assert el.dns == ("a", "b")


def test_xfcc_several_hops_keep_order():
    a = h.XfccElement.from_chain([L0, I0])
    b = h.XfccElement.from_chain([parse_certificate(LEAVES[3].der)])
    first, last = h.parse_xfcc(h.emit_xfcc([a, b]))
    assert first.presented == (L0, I0)
    assert last.presented[0].der == LEAVES[3].der


# --- strictness -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        ":",
        "::",
        "MIIB",  # no colons
        ":not base64!:",
        ":AAAA:;param=1",  # RFC 9440: Client-Cert = sf-binary, no parameters
        '"string"',
        ":" + base64.b64encode(b"not a certificate").decode() + ":",
    ],
)
def test_client_cert_malformed(value):
    with rejected(Reason.MALFORMED):
        h.parse_client_cert(value)


def test_client_cert_without_padding_is_accepted():
    # RFC 8941 §4.2.7: parsers SHOULD NOT fail when "=" padding is not present.
    value = ":" + base64.b64encode(L0.der).decode().rstrip("=") + ":"
    assert h.parse_client_cert(value) == L0


@pytest.mark.parametrize("value", [":AAAA:,", ",:AAAA:", ":AAAA:,,:AAAA:", "(:AAAA:)"])
def test_client_cert_chain_malformed(value):
    with rejected(Reason.MALFORMED):
        h.parse_client_cert_chain(value)


def test_client_cert_chain_empty_is_empty():
    assert h.parse_client_cert_chain("") == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda v: v.replace("%0A", "%0", 1),  # truncated escape
        lambda v: v.replace("%0A", "%ZZ", 1),  # not hex (every PEM has a %0A; not every one a %2B)
        lambda v: v + "junk",
        lambda v: "junk" + v,
        lambda v: v.replace("CERTIFICATE", "PRIVATE KEY"),
        lambda v: v.replace("%0A", "%0A%21", 3),  # '!' inside base64
        lambda v: v.replace("M", "%00", 1),  # NUL inside the PEM
        lambda v: v + h.emit_nginx_escaped_cert(L0),  # two certificates where one belongs
        lambda v: v.replace("%0A", " ", 1),  # raw whitespace
    ],
)
def test_nginx_escaped_malformed(mutate):
    value = h.emit_nginx_escaped_cert(L0)
    assert mutate(value) != value  # the mutation applies to this certificate
    with rejected(Reason.MALFORMED):
        h.parse_nginx_escaped_cert(mutate(value))


def test_nginx_escaped_accepts_lowercase_hex_and_raw_safe_chars():
    value = h.emit_nginx_escaped_cert(L0).replace("%2F", "%2f").replace("%0A", "\n")
    # Raw LF is never accepted: that is header injection, not encoding.
    with rejected(Reason.MALFORMED):
        h.parse_nginx_escaped_cert(value)
    assert h.parse_nginx_escaped_cert(h.emit_nginx_escaped_cert(L0).replace("%2F", "/")) == L0


@pytest.mark.parametrize(
    "value",
    [
        "Cert=a=b",  # unquoted '='
        'Subject="unterminated',
        'Subject=""CN=x""',  # nested quotes
        'Subject="a"b',
        "Hash=1234",
        "By=a;;URI=b",
        "By=a,",
        ",By=a",
        "=value",
        "By",
        'Subject="\\"";Subject="x"',  # several Subject=
    ],
)
def test_xfcc_malformed(value):
    with rejected(Reason.MALFORMED):
        h.parse_xfcc(value)


def test_xfcc_several_cert_pairs_rejected():
    cert = h.emit_nginx_escaped_cert(L0)
    with rejected(Reason.MALFORMED):
        h.parse_xfcc(f"Cert={cert};Cert={cert}")


def test_xfcc_hash_must_match_cert():
    other = parse_certificate(LEAVES[3].der)
    with rejected(Reason.MALFORMED):
        h.parse_xfcc(f"Hash={other.fingerprint_hex};Cert={h.emit_nginx_escaped_cert(L0)}")


def test_xfcc_chain_must_start_with_cert():
    chain = "".join(c.pem for c in (I0, L0))
    with rejected(Reason.MALFORMED):
        h.parse_xfcc(f"Cert={h.emit_nginx_escaped_cert(L0)};Chain={urllib.parse.quote(chain, safe='')}")


def test_alb_leaf_with_two_certificates_rejected():
    with rejected(Reason.MALFORMED):
        h.parse_alb_leaf(h.emit_alb_clientcert([L0, I0]))


# --- hostile input: injection, size, no traceback ---------------------------------------


@pytest.mark.parametrize(
    "parse",
    [
        h.parse_client_cert,
        h.parse_client_cert_chain,
        h.parse_nginx_escaped_cert,
        h.parse_nginx_cert,
        h.parse_alb_clientcert,
        h.parse_alb_leaf,
        h.parse_xfcc,
    ],
)
@pytest.mark.parametrize("injection", ["\r\nX-Admin: 1", "\nHost: evil", "\x00", "\x7f", "é"])
def test_header_injection_rejected(parse, injection):
    good = {
        h.parse_client_cert: h.emit_client_cert(L0),
        h.parse_client_cert_chain: h.emit_client_cert_chain([L0]),
        h.parse_nginx_escaped_cert: h.emit_nginx_escaped_cert(L0),
        h.parse_nginx_cert: h.emit_nginx_cert(L0),
        h.parse_alb_clientcert: h.emit_alb_clientcert([L0]),
        h.parse_alb_leaf: h.emit_alb_leaf(L0),
        h.parse_xfcc: h.emit_xfcc([h.XfccElement.from_chain([L0])]),
    }[parse]
    value = good[:20] + injection + good[20:]
    with pytest.raises(CertificateRejected) as info:
        parse(value)
    assert info.value.reason == Reason.MALFORMED


@pytest.mark.parametrize(
    "parse", [h.parse_client_cert, h.parse_nginx_escaped_cert, h.parse_xfcc, h.parse_alb_clientcert]
)
def test_huge_header_is_pki_too_large(parse):
    huge = "A" * (h.DEFAULT_LIMITS.max_header_bytes + 1)
    with rejected(Reason.PKI_TOO_LARGE):
        parse(huge)
    with rejected(Reason.PKI_TOO_LARGE):
        parse(huge.encode())


def test_too_many_certificates_is_pki_too_large():
    with rejected(Reason.PKI_TOO_LARGE):
        h.parse_client_cert_chain(h.emit_client_cert_chain([L0] * 40))
    with rejected(Reason.PKI_TOO_LARGE):
        h.parse_alb_clientcert(h.emit_alb_clientcert([L0] * 40))


def test_chain_bytes_limit():
    limits = h.HeaderLimits(max_chain_bytes=len(L0.der) + 10)
    with rejected(Reason.PKI_TOO_LARGE):
        h.parse_client_cert_chain(h.emit_client_cert_chain([L0, I0]), limits=limits)


def test_xfcc_element_and_pair_limits():
    with rejected(Reason.PKI_TOO_LARGE):
        h.parse_xfcc(",".join(["By=a"] * 100))
    with rejected(Reason.PKI_TOO_LARGE):
        h.parse_xfcc(";".join(["URI=a"] * 100))


def test_deeply_nested_quotes_do_not_explode():
    value = "Subject=" + '"\\"' * 5000 + '"'
    with pytest.raises(CertificateRejected):
        h.parse_xfcc(value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_arbitrary_input_only_rejects(value):
    for parse in (
        h.parse_client_cert,
        h.parse_client_cert_chain,
        h.parse_nginx_escaped_cert,
        h.parse_nginx_cert,
        h.parse_alb_clientcert,
        h.parse_alb_leaf,
        h.parse_xfcc,
    ):
        try:
            parse(value)
        except CertificateRejected as exc:
            assert exc.reason in (Reason.MALFORMED, Reason.PKI_TOO_LARGE, Reason.NOT_PROVIDED)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(',;="\\ab= \t%')), max_size=60))
def test_xfcc_grammar_fuzz(value):
    try:
        h.parse_xfcc(value)
    except CertificateRejected as exc:
        assert exc.reason in (Reason.MALFORMED, Reason.PKI_TOO_LARGE)


# --- GCP-style emission ---------------------------------------------------------------------


def test_gcp_headers_not_present():
    out = dict(h.gcp_headers(None, present=False))
    assert list(out) == list(h.GCP_HEADER_NAMES)
    assert out["X-Client-Cert-Present"] == "false"
    assert out["X-Client-Cert-Chain-Verified"] == "false"
    assert out["X-Client-Cert-Error"] == "client_cert_not_provided"
    assert out["X-Client-Cert-Hash"] == ""


def test_gcp_headers_accepted():
    verdict = Verdict(True, path=(L0, I0))
    out = dict(h.gcp_headers(verdict, present=True))
    assert out["X-Client-Cert-Present"] == "true"
    assert out["X-Client-Cert-Chain-Verified"] == "true"
    assert out["X-Client-Cert-Error"] == ""
    assert base64.b64decode(out["X-Client-Cert-Hash"]) == L0.sha256
    assert int(out["X-Client-Cert-Serial-Number"], 16) == L0.serial
    assert out["X-Client-Cert-SPIFFE"] == "spiffe://td/ns/x"
    assert out["X-Client-Cert-URI-SANs"] == ""  # the SPIFFE ID has its own header
    assert [base64.b64decode(v).decode() for v in out["X-Client-Cert-DNSName-SANs"].split(",")] == [
        "a.example",
        "b.example",
    ]
    assert out["X-Client-Cert-Valid-Not-After"] == L0.not_after.isoformat()
    assert out["X-Client-Cert-Valid-Not-After"].endswith("+00:00")


@pytest.mark.parametrize(
    ("reason", "error", "verified"),
    [
        (Reason.INVALID_EKU, "client_cert_chain_invalid_eku", "false"),
        (Reason.EXPIRED, "client_cert_validation_failed", "false"),
        (Reason.PKI_TOO_LARGE, "client_cert_pki_too_large", "false"),
        (Reason.IDENTITY_UNMAPPED, "identity_unmapped", "true"),
    ],
)
def test_gcp_headers_rejected(reason, error, verified):
    out = dict(h.gcp_headers(Verdict.reject(reason, "x", path=(L0,)), present=True))
    assert out["X-Client-Cert-Error"] == error
    assert out["X-Client-Cert-Chain-Verified"] == verified
    assert out["X-Client-Cert-Hash"]  # the certificate is still described


def test_gcp_header_values_are_always_header_safe():
    weird = parse_certificate(LEAVES[2].der)  # non-ASCII subject, odd URI SAN
    for _, value in h.gcp_headers(Verdict(True, path=(weird,)), present=True):
        assert all(0x20 <= ord(c) <= 0x7E for c in value)


def test_identity_header_names_cover_everything_we_read_or_emit():
    names = h.IDENTITY_HEADER_NAMES
    assert all(n == n.lower() for n in names)
    assert {n.lower() for n in h.GCP_HEADER_NAMES} <= names
    assert h.CERT_HEADER_NAMES <= names
    assert "client-cert" in names and "x-forwarded-client-cert" in names


# --- base64 and PEM edge cases (issue 23: the libraries decode, the differential checked them) ---


def _cert_with_length_mod3(rest: int, name: str):
    """A certificate whose DER length is ``rest`` modulo 3 (0: its base64 has no '=' padding;
    2: exactly one '='). Made, not picked from POOL: a random pool need not hold one."""
    for i in range(64):
        leaf = INTER.leaf(f"{name}-{i}.example")
        if len(leaf.der) % 3 == rest:
            return parse_certificate(leaf.der)
    raise AssertionError(f"no certificate with a DER length of {rest} modulo 3")


WHOLE = _cert_with_length_mod3(0, "quanta")
ONE_PAD = _cert_with_length_mod3(2, "one-pad")
WHOLE_B64 = base64.b64encode(WHOLE.der).decode()


def _pem_lines(der: bytes, tail: str = "") -> str:
    body = base64.b64encode(der).decode() + tail
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("pad", ["=", "==", "==="])
def test_pem_padding_after_a_complete_base64_quantum_is_malformed(pad):
    # RFC 4648 §3.3/§4: '=' only completes a final quantum. Python's b64decode accepted
    # "AAAA==" and the old PEM splitter with it; cryptography's loader refuses it.
    assert "=" not in WHOLE_B64
    pem = _pem_lines(WHOLE.der, pad)
    with rejected(Reason.MALFORMED):
        h.parse_nginx_cert(pem.rstrip("\n").replace("\n", "\n\t"))
    with rejected(Reason.MALFORMED):
        h.parse_nginx_escaped_cert(urllib.parse.quote(pem, safe=""))
    with rejected(Reason.MALFORMED):
        h.parse_alb_clientcert(urllib.parse.quote(pem, safe="+=/"))
    with rejected(Reason.MALFORMED):
        h.parse_xfcc("Cert=" + urllib.parse.quote(pem, safe=""))
    # The same certificate without the stray padding is fine.
    assert h.parse_nginx_escaped_cert(urllib.parse.quote(_pem_lines(WHOLE.der), safe="")) == WHOLE


def test_client_cert_more_than_two_padding_characters_is_malformed():
    # RFC 8941 §4.2.7 / RFC 4648 §3.2: padding is at most two '='. The old parser re-padded
    # the body and let Python's b64decode drop the surplus, so ':AAAA===:' was a certificate.
    with rejected(Reason.MALFORMED):
        h.parse_client_cert(f":{WHOLE_B64}===:")
    with rejected(Reason.MALFORMED):
        h.parse_client_cert_chain(f":{WHOLE_B64}:, :{WHOLE_B64}===:")


@pytest.mark.parametrize("pad", ["", "=", "=="])
def test_client_cert_padding_up_to_two_is_normalised(pad):
    # A documented leniency (docs/proxy.md): http-sf strips up to two '=' and re-pads
    # (RFC 8941 §4.2.7: parsers SHOULD NOT fail on padding), so missing, short or surplus
    # padding decodes to the same bytes. The old parser refused ':…xyz==:' (one '=' too many).
    short = ONE_PAD  # its base64 ends in exactly one '='
    data = base64.b64encode(short.der).decode().rstrip("=")
    assert h.parse_client_cert(f":{data}{pad}:") == short
    assert h.parse_client_cert(f":{WHOLE_B64}{pad}:") == WHOLE
    assert h.parse_client_cert_chain(f":{data}{pad}:, :{WHOLE_B64}{pad}:") == [short, WHOLE]


def _bad_version(der: bytes) -> bytes:
    # TBSCertificate's "[0] EXPLICIT INTEGER 2" (v3) -> version 10: not a valid X.509 version.
    marker = bytes.fromhex("a003020102")
    assert marker in der
    return der.replace(marker, bytes.fromhex("a00302010a"), 1)


def test_a_pem_certificate_of_unknown_version_is_malformed_not_a_traceback():
    # cryptography raises x509.InvalidVersion (not a ValueError) from its PEM loader; found
    # by the header fuzz targets on the first cut of the loader-based parser.
    pem = _pem_lines(_bad_version(L0.der))
    with rejected(Reason.MALFORMED):
        h.parse_nginx_cert(pem)
    with rejected(Reason.MALFORMED):
        h.parse_nginx_escaped_cert(urllib.parse.quote(pem, safe=""))
    with rejected(Reason.MALFORMED):
        h.parse_xfcc("Cert=" + urllib.parse.quote(pem, safe=""))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.replace("CERTIFICATE", "X509 CERTIFICATE"),  # cryptography's loader takes it
        lambda p: p.replace("CERTIFICATE", "TRUSTED CERTIFICATE"),
        lambda p: p.replace("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1),  # RFC 1421 headers
        lambda p: p + "junk\n" + p,  # text between blocks (the loader skips it)
        lambda p: p + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",  # other block types
    ],
)
def test_pem_framing_stricter_than_the_loader(mutate):
    pem = _pem_lines(L0.der)
    with rejected(Reason.MALFORMED):
        h.parse_alb_clientcert(urllib.parse.quote(mutate(pem), safe="+=/"))
    with rejected(Reason.MALFORMED) as info:
        h.parse_nginx_cert(mutate(pem))
    assert "offset" in str(info.value)  # the first fault is located for the operator
