"""Trusted proxies: headers believed only from configured peers (address and/or mTLS pin)."""

from __future__ import annotations

import pytest

from mtlscore import ConfigError, Reason, pki
from mtlscore.proxy import headers as h
from mtlscore.proxy.trusted import (
    ProxyPolicy,
    Reject,
    TrustedProxy,
    UseForwarded,
    UseTls,
    proxies_from_config,
)
from mtlscore.x509.cert import parse_certificate

ROOT = pki.root()
INTER = ROOT.intermediate()
CLIENT = parse_certificate(INTER.leaf("client.example").der)
CLIENT_INTER = parse_certificate(INTER.der)
PROXY_CERT = parse_certificate(ROOT.leaf("proxy.internal").der)
OTHER_CERT = parse_certificate(ROOT.leaf("someone-else").der)

NGINX = TrustedProxy(name="nginx", networks=("10.0.0.5/32",), format="nginx")
MESH = TrustedProxy(name="envoy", thumbprints=(PROXY_CERT.x5t_s256,), format="xfcc")


def rfc9440_headers(chain):
    out = [(b"client-cert", h.emit_client_cert(chain[0]).encode())]
    if len(chain) > 1:
        out.append((b"client-cert-chain", h.emit_client_cert_chain(chain[1:]).encode()))
    return out


def test_no_proxies_and_no_headers_uses_tls_chain():
    d = ProxyPolicy().decide(peer=("192.0.2.1", 5000), peer_chain=(CLIENT,), headers=[])
    assert d == UseTls((CLIENT,))


@pytest.mark.parametrize(
    "header",
    [
        (b"client-cert", h.emit_client_cert(CLIENT).encode()),
        (b"X-SSL-Client-Cert", h.emit_nginx_escaped_cert(CLIENT).encode()),
        ("x-forwarded-client-cert", h.emit_xfcc([h.XfccElement.from_chain([CLIENT])])),
        (b"x-amzn-mtls-clientcert", h.emit_alb_clientcert([CLIENT]).encode()),
        (b"x-client-cert-chain-verified", b"true"),
    ],
)
def test_spoofed_header_from_untrusted_peer_is_rejected(header):
    policy = ProxyPolicy((NGINX,))
    d = policy.decide(peer=("10.0.0.6", 1234), peer_chain=(), headers=[header])
    assert isinstance(d, Reject)
    assert d.reason == Reason.UNTRUSTED_PROXY
    assert "10.0.0.6" in d.detail


def test_spoofed_header_ignored_mode_validates_own_chain_and_records():
    policy = ProxyPolicy((NGINX,), on_untrusted="ignore")
    d = policy.decide(peer=("10.0.0.6", 1), peer_chain=(OTHER_CERT,), headers=rfc9440_headers([CLIENT]))
    assert isinstance(d, UseTls)
    assert d.chain == (OTHER_CERT,)  # never the header's certificate
    assert d.notes and d.notes[0].startswith("untrusted_proxy")


def test_custom_header_name_is_watched_too():
    proxy = TrustedProxy(networks=("10.0.0.5/32",), format="nginx", header="X-Example-Client-Public-Key")
    d = ProxyPolicy((proxy,)).decide(
        peer="10.0.0.9", headers=[(b"x-example-client-public-key", b"anything")]
    )
    assert isinstance(d, Reject) and d.reason == Reason.UNTRUSTED_PROXY


def test_trusted_by_address_reads_its_format():
    value = h.emit_nginx_escaped_cert(CLIENT)
    d = ProxyPolicy((NGINX,)).decide(peer=("10.0.0.5", 4444), headers=[(b"x-ssl-client-cert", value)])
    assert isinstance(d, UseForwarded)
    assert d.chain == (CLIENT,)
    assert d.proxy is NGINX and d.revalidate


def test_trusted_proxy_ignores_its_own_tls_chain():
    # The proxy's own certificate identifies the proxy; it is not the client's.
    d = ProxyPolicy((MESH,)).decide(peer="198.51.100.7", peer_chain=(PROXY_CERT,), headers=[])
    assert isinstance(d, UseForwarded)
    assert d.chain == ()


def test_trusted_by_mtls_pin():
    xfcc = h.emit_xfcc([h.XfccElement.from_chain([CLIENT, CLIENT_INTER])])
    policy = ProxyPolicy((MESH,))
    d = policy.decide(peer="198.51.100.7", peer_chain=(PROXY_CERT,), headers=[(b"x-forwarded-client-cert", xfcc)])
    assert isinstance(d, UseForwarded) and d.chain == (CLIENT, CLIENT_INTER)
    # Same header, different TLS certificate: not the proxy.
    d = policy.decide(peer="198.51.100.7", peer_chain=(OTHER_CERT,), headers=[(b"x-forwarded-client-cert", xfcc)])
    assert isinstance(d, Reject) and d.reason == Reason.UNTRUSTED_PROXY
    # No TLS certificate at all: not the proxy.
    d = policy.decide(peer="198.51.100.7", headers=[(b"x-forwarded-client-cert", xfcc)])
    assert isinstance(d, Reject) and d.reason == Reason.UNTRUSTED_PROXY


def test_spki_pin():
    proxy = TrustedProxy(spki_pins=(PROXY_CERT.spki_pin,), format="rfc9440")
    d = ProxyPolicy((proxy,)).decide(peer=None, peer_chain=(PROXY_CERT,), headers=rfc9440_headers([CLIENT]))
    assert isinstance(d, UseForwarded) and d.chain == (CLIENT,)


def test_address_and_pin_both_required_when_both_given():
    proxy = TrustedProxy(networks=("127.0.0.0/8",), thumbprints=(PROXY_CERT.x5t_s256,))
    policy = ProxyPolicy((proxy,))
    hdrs = rfc9440_headers([CLIENT])
    assert isinstance(policy.decide(peer="127.0.0.1", peer_chain=(PROXY_CERT,), headers=hdrs), UseForwarded)
    assert isinstance(policy.decide(peer="127.0.0.1", peer_chain=(OTHER_CERT,), headers=hdrs), Reject)
    assert isinstance(policy.decide(peer="10.1.1.1", peer_chain=(PROXY_CERT,), headers=hdrs), Reject)


@pytest.mark.parametrize("peer", ["::ffff:10.0.0.5", ("::ffff:10.0.0.5", 1, 0, 0)])
def test_ipv4_mapped_ipv6_peer(peer):
    d = ProxyPolicy((NGINX,)).decide(peer=peer, headers=[])
    assert isinstance(d, UseForwarded)


@pytest.mark.parametrize("peer", [None, "/run/app.sock", "not-an-ip", ("", 0), 12345])
def test_unusable_peer_is_never_trusted(peer):
    d = ProxyPolicy((NGINX,)).decide(peer=peer, headers=rfc9440_headers([CLIENT]))
    assert isinstance(d, Reject) and d.reason == Reason.UNTRUSTED_PROXY


def test_rfc9440_chain_and_split_field_lines():
    proxy = TrustedProxy(networks=("10.0.0.0/8",))
    other_inter = parse_certificate(ROOT.intermediate("Other CA").der)
    hdrs = [
        (b"client-cert", h.emit_client_cert(CLIENT).encode()),
        (b"client-cert-chain", h.emit_client_cert_chain([CLIENT_INTER]).encode()),
        (b"client-cert-chain", h.emit_client_cert_chain([other_inter]).encode()),
    ]
    d = ProxyPolicy((proxy,)).decide(peer="10.2.3.4", headers=hdrs)
    assert isinstance(d, UseForwarded)
    assert d.chain == (CLIENT, CLIENT_INTER, other_inter)


def test_rfc9440_chain_without_cert_is_malformed():
    proxy = TrustedProxy(networks=("10.0.0.0/8",))
    hdrs = [(b"client-cert-chain", h.emit_client_cert_chain([CLIENT_INTER]).encode())]
    d = ProxyPolicy((proxy,)).decide(peer="10.2.3.4", headers=hdrs)
    assert isinstance(d, Reject) and d.reason == Reason.MALFORMED


def test_duplicate_certificate_header_is_malformed():
    value = h.emit_nginx_escaped_cert(CLIENT)
    d = ProxyPolicy((NGINX,)).decide(
        peer="10.0.0.5", headers=[(b"x-ssl-client-cert", value), (b"X-SSL-Client-Cert", value)]
    )
    assert isinstance(d, Reject) and d.reason == Reason.MALFORMED


def test_bad_header_from_trusted_proxy_is_reason_not_traceback():
    d = ProxyPolicy((NGINX,)).decide(peer="10.0.0.5", headers=[(b"x-ssl-client-cert", b"%ZZ")])
    assert isinstance(d, Reject) and d.reason == Reason.MALFORMED
    assert "nginx" in d.detail
    huge = b"A" * 200_000
    d = ProxyPolicy((NGINX,)).decide(peer="10.0.0.5", headers=[(b"x-ssl-client-cert", huge)])
    assert isinstance(d, Reject) and d.reason == Reason.PKI_TOO_LARGE


@pytest.mark.parametrize(
    ("fmt", "name", "value"),
    [
        ("nginx_legacy", b"x-ssl-client-cert", h.emit_nginx_cert(CLIENT).replace("\n\t", " ")),
        ("alb", b"x-amzn-mtls-clientcert", h.emit_alb_clientcert([CLIENT, CLIENT_INTER])),
        ("alb_leaf", b"x-amzn-mtls-clientcert-leaf", h.emit_alb_leaf(CLIENT)),
    ],
)
def test_each_format(fmt, name, value):
    proxy = TrustedProxy(networks=("10.0.0.5/32",), format=fmt)
    d = ProxyPolicy((proxy,)).decide(peer="10.0.0.5", headers=[(name, value.encode())])
    assert isinstance(d, UseForwarded)
    assert d.chain[0] == CLIENT


def test_xfcc_element_selection():
    first = h.XfccElement.from_chain([CLIENT])
    last = h.XfccElement.from_chain([OTHER_CERT])
    value = h.emit_xfcc([first, last])
    for index, want in ((-1, OTHER_CERT), (0, CLIENT)):
        proxy = TrustedProxy(networks=("10.0.0.5/32",), format="xfcc", xfcc_element=index)
        d = ProxyPolicy((proxy,)).decide(peer="10.0.0.5", headers=[(b"x-forwarded-client-cert", value)])
        assert isinstance(d, UseForwarded) and d.chain == (want,)
    proxy = TrustedProxy(networks=("10.0.0.5/32",), format="xfcc", xfcc_element=5)
    d = ProxyPolicy((proxy,)).decide(peer="10.0.0.5", headers=[(b"x-forwarded-client-cert", value)])
    assert isinstance(d, Reject) and d.reason == Reason.MALFORMED


def test_accept_proxy_verdict_mode():
    proxy = TrustedProxy(
        networks=("10.0.0.5/32",), format="nginx", revalidate=False, verdict_header="X-SSL-Client-Verify"
    )
    cert = (b"x-ssl-client-cert", h.emit_nginx_escaped_cert(CLIENT).encode())
    ok = ProxyPolicy((proxy,)).decide(peer="10.0.0.5", headers=[cert, (b"x-ssl-client-verify", b"SUCCESS")])
    assert isinstance(ok, UseForwarded) and ok.revalidate is False and ok.proxy_verified is True
    bad = ProxyPolicy((proxy,)).decide(
        peer="10.0.0.5", headers=[cert, (b"x-ssl-client-verify", b"FAILED:unable to get issuer")]
    )
    assert isinstance(bad, UseForwarded) and bad.proxy_verified is False
    missing = ProxyPolicy((proxy,)).decide(peer="10.0.0.5", headers=[cert])
    assert isinstance(missing, UseForwarded) and missing.proxy_verified is False


def test_accept_proxy_verdict_without_header_means_presence():
    proxy = TrustedProxy(networks=("10.0.0.5/32",), format="alb_leaf", revalidate=False)
    d = ProxyPolicy((proxy,)).decide(
        peer="10.0.0.5", headers=[(b"x-amzn-mtls-clientcert-leaf", h.emit_alb_leaf(CLIENT).encode())]
    )
    assert isinstance(d, UseForwarded) and d.proxy_verified is True


def test_first_matching_proxy_wins():
    a = TrustedProxy(name="a", networks=("10.0.0.0/8",), format="nginx")
    b = TrustedProxy(name="b", networks=("10.0.0.5/32",), format="rfc9440")
    d = ProxyPolicy((a, b)).decide(peer="10.0.0.5", headers=[])
    assert isinstance(d, UseForwarded) and d.proxy.name == "a"


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"networks": ("10.0.0.1/8",)}, "trusted_proxies"),  # host bits set
        ({"networks": ("nonsense",)}, "trusted_proxies"),
        ({}, "trusted_proxies"),  # nothing to recognise it by
        ({"networks": ("10.0.0.0/8",), "format": "apache"}, "trusted_proxies.format"),
    ],
)
def test_bad_proxy_config(kwargs, key):
    with pytest.raises(ConfigError) as info:
        TrustedProxy(**kwargs)
    assert info.value.key == key


def test_proxies_from_config():
    proxies = proxies_from_config(
        [
            "127.0.0.1/32",
            {"name": "edge", "networks": ["10.0.0.0/8"], "format": "xfcc", "revalidate": False},
            {"thumbprints": [PROXY_CERT.x5t_s256], "format": "nginx", "header": "X-Client-PEM"},
        ]
    )
    assert proxies[0].format == "rfc9440" and str(proxies[0].networks[0]) == "127.0.0.1/32"
    assert proxies[1].name == "edge" and proxies[1].revalidate is False
    assert proxies[2].header_name == "x-client-pem"
    for bad, key in (
        ([{"networks": ["10.0.0.0/8"], "colour": "red"}], "trusted_proxies[0]"),
        ([42], "trusted_proxies[0]"),
        (["10.0.0.0/8", {"networks": ["10.0.0.0/8"], "revalidate": "yes"}], "trusted_proxies[1].revalidate"),
        (["300.0.0.0/8"], "trusted_proxies"),
    ):
        with pytest.raises(ConfigError) as info:
            proxies_from_config(bad)
        assert info.value.key == key


def test_client_address_from_the_configured_header_only():
    nets = ("10.0.0.0/8",)
    bare = TrustedProxy(name="lb", networks=nets)
    xff = TrustedProxy(name="lb", networks=nets, client_address_header="x_forwarded_for")
    real = TrustedProxy(name="lb", networks=nets, client_address_header="X-Real-IP")
    forged = [(b"x-forwarded-for", b"10.1.2.3"), (b"x-real-ip", b"10.1.2.3")]
    # Not configured: the proxy's own address, whatever the client wrote.
    got = bare.client_address("10.0.0.5", forged)
    assert got.address == "10.0.0.5" and "itself" in got.source
    assert xff.client_address_header == "x-forwarded-for"
    assert xff.client_address("10.0.0.5", [(b"X-Forwarded-For", b"6.6.6.6 , 10.1.2.3")]).address == "10.1.2.3"
    assert xff.client_address("10.0.0.5", [("x-forwarded-for", "::ffff:10.1.2.3")]).address == "10.1.2.3"
    assert real.client_address("10.0.0.5", forged).address == "10.1.2.3"
    for proxy, headers, why in (
        (xff, [], "has 0 entries"),
        (xff, [(b"x-forwarded-for", b"10.1.2.3, ")], "not an IP address"),
        (xff, [(b"x-forwarded-for", b"fe80::1%eth0")], "not an IP address"),
        (xff, [(b"x-forwarded-for", b"unknown")], "not an IP address"),
        (real, [(b"x-real-ip", b"10.1.2.3, 10.1.2.4")], "carries 2 values"),
        (real, [(b"x-real-ip", b"10.1.2.3"), (b"x-real-ip", b"10.1.2.3")], "carries 2 values"),
        (real, [], "carries 0 values"),
    ):
        got = proxy.client_address("10.0.0.5", headers)
        assert got.address is None and why in got.source, (headers, got)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"client_address_header": "X Forwarded"}, "trusted_proxies.client_address_header"),
        ({"client_address_header": 5}, "trusted_proxies.client_address_header"),
        ({"client_address_header": "X-Forwarded-For", "client_address_hop": 0}, "trusted_proxies.client_address_hop"),
        ({"client_address_header": "X-Forwarded-For", "client_address_hop": 33}, "trusted_proxies.client_address_hop"),
        ({"client_address_header": "X-Forwarded-For", "client_address_hop": "1"},
         "trusted_proxies.client_address_hop"),
        ({"client_address_hop": 2}, "trusted_proxies.client_address_hop"),  # a hop of no header
        ({"client_address_header": "X-Real-IP", "client_address_hop": 2}, "trusted_proxies.client_address_hop"),
    ],
)
def test_bad_client_address_config(kwargs, key):
    with pytest.raises(ConfigError) as info:
        TrustedProxy(networks=("10.0.0.0/8",), **kwargs)
    assert info.value.key == key


def test_on_untrusted_must_be_known():
    with pytest.raises(ConfigError):
        ProxyPolicy(on_untrusted="shrug")  # type: ignore[arg-type]
