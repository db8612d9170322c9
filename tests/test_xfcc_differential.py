"""The fast proxy-header parsers against the old ones (tests/proxy_oracle.py), and the edge
cases the XFCC rewrite touched: quoting, escapes, several elements, a Chain that repeats
Cert, the percent-decoding and PEM fast paths and their fallbacks."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Callable
from typing import Any

import proxy_oracle as old
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlscore import CertificateRejected, Reason, pki
from mtlscore.proxy import header_codec
from mtlscore.proxy import headers as h
from mtlscore.x509.cert import parse_certificate

ROOT = pki.root()
INTER = ROOT.intermediate()
LEAVES = [
    INTER.leaf("client.example", san_dns=["a.example"], san_uri=["spiffe://td/ns/x"]),
    INTER.leaf(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'We, "quote"; semi=colon\\')]),
        key="rsa",
    ),
    ROOT.leaf("direct.example", key="ec-p384"),
]
POOL = [parse_certificate(c.der) for c in (ROOT, INTER, *LEAVES)]
L0, L1, L2 = (parse_certificate(c.der) for c in LEAVES)
I0 = parse_certificate(INTER.der)

# Values that need quoting or escaping, and the characters the grammar is made of.
TRICKY = st.text(alphabet=st.sampled_from(list('ab,;="\\ \t=%+/:')), max_size=12)
NOISE = list(',;="\\ \t=%+/-abAZ09\x01\x1c\x7f') + ["%0A", "%0a", "%2f", "%3D", "%0D", "%0B", "%1C", "%%", "%0A%0A"]


@st.composite
def elements(draw: st.DrawFn) -> h.XfccElement:
    chain = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=3))
    el = h.XfccElement.from_chain(chain, by=draw(st.lists(TRICKY, max_size=2)))
    return h.XfccElement(
        cert=el.cert if draw(st.booleans()) else None,
        chain=el.chain if draw(st.booleans()) else (),
        hash=el.hash if draw(st.booleans()) else None,
        subject=draw(st.none() | TRICKY | st.just(el.subject or "")),
        by=el.by,
        uri=tuple(draw(st.lists(TRICKY, max_size=2))),
        dns=el.dns,
    )


@st.composite
def mutated(draw: st.DrawFn, value: str) -> str:
    """``value`` with up to three edits where parsers go wrong: inserted grammar characters
    and escapes, cuts, case-changed escapes, doubled or swapped pairs."""
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["insert", "delete", "lower", "dup", "swap", "escape"]))
        pos = draw(st.integers(0, len(value)))
        if kind == "insert":
            value = value[:pos] + draw(st.sampled_from(NOISE)) + value[pos:]
        elif kind == "delete":
            value = value[:pos] + value[pos + draw(st.integers(1, 4)) :]
        elif kind == "lower":
            value = value.replace("%2F", "%2f", 1).replace("%0A", "%0a", 1)
        elif kind == "escape":
            # Re-escape one character the fast path decodes, or add one it never sees.
            src, dst = draw(st.sampled_from([("%0A", "%0D%0A"), ("%0A", "%0A%0A"), ("%2B", "+"),
                                             ("%3D", "="), ("%20", "%2520"), ("M", "%4D")]))
            value = value.replace(src, dst, 1)
        else:
            parts = value.split(";")
            i = draw(st.integers(0, len(parts) - 1))
            if kind == "dup":
                parts.insert(i, parts[i])
            else:
                parts[0], parts[i] = parts[i], parts[0]
            value = ";".join(parts)
    return value


def outcome(parse: Callable[[Any], Any], value: str) -> tuple[str, Any]:
    try:
        return ("accepted", parse(value))
    except CertificateRejected as exc:
        return ("rejected", exc.reason)


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(elements(), min_size=1, max_size=3).map(h.emit_xfcc).flatmap(mutated))
def test_parse_xfcc_agrees_with_the_old_parser(value):
    assert outcome(h.parse_xfcc, value) == outcome(old.parse_xfcc, value)


@SETTINGS
@given(
    st.sampled_from(
        [
            (h.parse_nginx_escaped_cert, old.parse_nginx_escaped_cert, lambda cs: h.emit_nginx_escaped_cert(cs[0])),
            (h.parse_alb_clientcert, old.parse_alb_clientcert, h.emit_alb_clientcert),
            (h.parse_nginx_cert, old.parse_nginx_cert, lambda cs: h.emit_nginx_cert(cs[0])),
        ]
    ),
    st.lists(st.sampled_from(POOL), min_size=1, max_size=3),
    st.data(),
)
def test_pem_header_formats_agree_with_the_old_parsers(parsers, chain, data):
    new, reference, emit = parsers
    value = data.draw(mutated(emit(chain)))
    assert outcome(new, value) == outcome(reference, value)


# --- edge cases of the rewrite, each checked against the oracle too ------------------------


def both(value: str) -> tuple[h.XfccElement, ...]:
    got = h.parse_xfcc(value)
    assert got == old.parse_xfcc(value)
    return got


def test_quoted_commas_and_semicolons_stay_in_their_value():
    value = 'By="spiffe://a,b;c=d";URI="https://x.example/p;q=1,2";DNS=plain.example,By=next'
    first, second = both(value)
    assert first.by == ("spiffe://a,b;c=d",)
    assert first.uri == ("https://x.example/p;q=1,2",)
    assert first.dns == ("plain.example",)
    assert second.by == ("next",)


def test_escaped_quotes_and_backslashes_inside_subject():
    el = h.XfccElement.from_chain([L1])
    assert '"' in el.subject and "\\" in el.subject
    (got,) = both(h.emit_xfcc([el]))
    assert got.subject == el.subject
    # A backslash before anything but '"' or '\' is literal (Envoy does not escape it).
    (got,) = both('Subject="CN=a\\,b";By=x')
    assert got.subject == "CN=a\\,b"


def test_several_elements_keep_order_and_by():
    a = h.XfccElement.from_chain([L0, I0], by=["spiffe://edge"])
    b = h.XfccElement.from_chain([L2], by=["spiffe://mesh", "spiffe://mesh2"])
    first, second = both(h.emit_xfcc([a, b]))
    assert (first.by, first.presented) == (("spiffe://edge",), (L0, I0))
    assert (second.by, second.presented) == (("spiffe://mesh", "spiffe://mesh2"), (L2,))


def test_whitespace_around_separators_and_bare_values():
    cert = h.emit_nginx_escaped_cert(L0)
    (got,) = both(f"By= a b \t; Cert={cert} ;\tDNS=x.example ")
    assert got.by == ("a b",) and got.cert == L0 and got.dns == ("x.example",)


def test_a_chain_that_repeats_cert_reuses_it_and_one_that_does_not_is_decoded_whole():
    el = h.XfccElement.from_chain([L0, I0])
    (got,) = both(h.emit_xfcc([el]))
    assert got.chain == (L0, I0) and got.cert == L0
    # Chain first, then Cert: no reuse, the same answer.
    cert = h.emit_nginx_escaped_cert(L0)
    chain = cert + h.emit_nginx_escaped_cert(I0)
    (got,) = both(f"Chain={chain};Cert={cert}")
    assert got.chain == (L0, I0)
    # The Chain's text starts with Cert's, but its rest is no certificate: refused, and
    # the whole value names the fault (the fallback), as the old parser did.
    with pytest.raises(CertificateRejected, match="malformed") as info:
        h.parse_xfcc(f"Cert={cert};Chain={cert}junk")
    assert "offset" in str(info.value)
    # A Chain that starts with another certificate than Cert.
    with pytest.raises(CertificateRejected, match="Chain does not start with Cert"):
        both(f"Cert={cert};Chain={h.emit_nginx_escaped_cert(I0)}{cert}")


@pytest.mark.parametrize(
    "value",
    [
        'By="unterminated',
        "By=a;",
        "By=a,",
        'By=a"b',
        "By=a=b",
        'By="a" x',
        "By",
        "=x",
        " ;By=a",
    ],
)
def test_grammar_faults_keep_their_messages(value):
    with pytest.raises(CertificateRejected) as new_info:
        h.parse_xfcc(value)
    with pytest.raises(CertificateRejected) as old_info:
        old.parse_xfcc(value)
    assert new_info.value.reason is old_info.value.reason is Reason.MALFORMED
    assert str(new_info.value) == str(old_info.value)


def test_lower_case_and_other_escapes_take_the_checked_path():
    value = h.emit_nginx_escaped_cert(L0)
    for variant in (value.replace("%2F", "%2f"), value.replace("M", "%4D", 1), value.replace("%0A", "%0D%0A")):
        assert variant != value
        assert h.parse_nginx_escaped_cert(variant) == L0
    with pytest.raises(CertificateRejected, match="not followed by two hex digits"):
        h.parse_nginx_escaped_cert(value.replace("%0A", "%0", 1))
    # %25 decodes to '%' once, never twice.
    with pytest.raises(CertificateRejected, match="malformed"):
        h.parse_nginx_escaped_cert(value.replace("%2F", "%252F"))


def _pem(body: str) -> str:
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def test_pem_body_whitespace_is_rfc7468_w_and_base64_must_be_canonical():
    b64 = base64.b64encode(L0.der).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    # Any W between base64 characters, empty lines included (the documented deviation).
    for sep in ("\n", "\r\n", "\n\n", " ", "\t", "\v", "\f", "\n \n"):
        assert h.parse_nginx_escaped_cert(urllib.parse.quote(_pem(sep.join(lines)), safe="")) == L0
    # \x1c-\x1f are whitespace to str.split and \s, not to RFC 7468.
    with pytest.raises(CertificateRejected, match="malformed"):
        h.parse_nginx_escaped_cert(urllib.parse.quote(_pem("\x1c".join(lines)), safe=""))
    assert b64.endswith("=") or len(L0.der) % 3 == 0
    # Non-zero pad bits: the same length, another last character.
    if len(L0.der) % 3:
        keep = 4 - b64.count("=") - 1
        last = b64[-4:][keep]
        other = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        twisted = b64[:-4] + b64[-4:][:keep] + other[other.index(last) + 1] + b64[-4:][keep + 1 :]
        assert base64.b64decode(twisted) == L0.der  # Python's decoder drops the bits...
        with pytest.raises(CertificateRejected, match="canonical"):  # ...we do not
            h.parse_nginx_escaped_cert(urllib.parse.quote(_pem(twisted), safe=""))


def test_percent_fast_path_never_decodes_twice():
    # A direct check of the shortcut: whatever the escapes, the result is unquote's or a refusal.
    for text in ("a%0Ab", "%252F", "%%0A", "%0A%", "%2F%2f%2B", "%3D%3d=", "x%20%0a"):
        try:
            got = header_codec._percent_decode(text, "t")
        except CertificateRejected:
            assert "%" in text
            continue
        assert got == urllib.parse.unquote(text)
