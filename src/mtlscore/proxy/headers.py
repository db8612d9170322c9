"""Proxy hand-off headers, both directions: parse what a TLS-terminating proxy forwards, emit it.

Formats (grammar quoted from each spec where the code implements it):

* RFC 9440 ``Client-Cert`` / ``Client-Cert-Chain``: RFC 8941 Byte Sequences of DER.
* nginx ``$ssl_client_escaped_cert`` (URL-encoded PEM) and the legacy
  ``$ssl_client_cert`` (PEM with every line but the first prefixed by a tab).
* Envoy ``x-forwarded-client-cert`` (XFCC): elements, key=value pairs, quoting
  (in ``proxy/xfcc.py``, re-exported here; shared limits and codecs in ``proxy/header_codec.py``).
* AWS ALB ``X-Amzn-Mtls-Clientcert`` (passthrough: the whole chain) and
  ``X-Amzn-Mtls-Clientcert-Leaf`` (verify mode: the leaf), URL-encoded PEM.
* GCP-style ``X-Client-Cert-*`` verdict headers (emit only).

Every parser is strict and size-limited: bad input raises
:class:`CertificateRejected` with ``malformed`` (``pki_too_large`` over the
limits), never another exception. Whether a header may be believed at all is
``proxy/trusted.py``'s business, not this module's.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast
from urllib.parse import quote as percent_encode

import http_sf
from cryptography import x509

from ..reasons import CertificateRejected, Reason
from ..x509.cert import Certificate
from .header_codec import (
    _ALB_SAFE,
    _NGINX_SAFE,
    _VALUE_CHARS,
    DEFAULT_LIMITS,
    HeaderLimits,
    _der_list,
    _malformed,
    _one,
    _pem,
    _pem_ders,
    _text,
    _urlpem_certs,
)
from .xfcc import XfccElement, emit_xfcc, parse_xfcc

if TYPE_CHECKING:
    from ..decision.verdict import Verdict

__all__ = [
    "CERT_HEADER_NAMES",
    "DEFAULT_LIMITS",
    "GCP_HEADER_NAMES",
    "IDENTITY_HEADER_NAMES",
    "HeaderLimits",
    "XfccElement",
    "emit_alb_clientcert",
    "emit_alb_leaf",
    "emit_client_cert",
    "emit_client_cert_chain",
    "emit_nginx_cert",
    "emit_nginx_escaped_cert",
    "emit_xfcc",
    "gcp_error",
    "gcp_headers",
    "lb_error_name",
    "parse_alb_clientcert",
    "parse_alb_leaf",
    "parse_client_cert",
    "parse_client_cert_chain",
    "parse_nginx_cert",
    "parse_nginx_escaped_cert",
    "parse_xfcc",
]


# Headers that carry a client certificate in one of the formats above (lower case).
CERT_HEADER_NAMES = frozenset(
    {
        "client-cert",
        "client-cert-chain",
        "x-forwarded-client-cert",
        "x-amzn-mtls-clientcert",
        "x-amzn-mtls-clientcert-leaf",
        "x-ssl-client-cert",
        "ssl-client-cert",
        "x-client-cert",
    }
)

GCP_HEADER_NAMES = (
    "X-Client-Cert-Present",
    "X-Client-Cert-Chain-Verified",
    "X-Client-Cert-Error",
    "X-Client-Cert-Hash",
    "X-Client-Cert-Serial-Number",
    "X-Client-Cert-SPIFFE",
    "X-Client-Cert-URI-SANs",
    "X-Client-Cert-DNSName-SANs",
    "X-Client-Cert-Valid-Not-Before",
    "X-Client-Cert-Valid-Not-After",
)

# Every header a gateway must strip from a client's request before it adds its own:
# an upstream that believes any of these from the client is the classic breach.
IDENTITY_HEADER_NAMES = (
    CERT_HEADER_NAMES
    | frozenset(n.lower() for n in GCP_HEADER_NAMES)
    | frozenset(
        {
            "x-amzn-mtls-clientcert-serial-number",
            "x-amzn-mtls-clientcert-issuer",
            "x-amzn-mtls-clientcert-subject",
            "x-amzn-mtls-clientcert-validity",
            "x-ssl-client-verify",
            "x-ssl-client-s-dn",
            "x-ssl-client-i-dn",
        }
    )
)


# --- RFC 8941 byte sequences and lists (parsed by http-sf) ---------------------------


def _sf_parse(text: str, tltype: str, what: str) -> http_sf.StructuredType:
    try:
        # The value is ASCII already (_text refused anything else).
        return http_sf.parse(text.encode("ascii"), tltype=tltype)
    except http_sf.StructuredFieldError as exc:
        raise _malformed(f"{what}: not an RFC 8941 {tltype}: {exc}") from None


def _sf_binary(member: object, what: str) -> bytes:
    # RFC 9440 §2.2: "Client-Cert = sf-binary" (§2.3: the chain's members likewise). No
    # parameters are defined and the grammar admits none, so an item with parameters,
    # an inner list or any other bare item type is not this header.
    if not (isinstance(member, tuple) and isinstance(member[0], bytes) and not member[1]):
        raise _malformed(f"{what}: expected an RFC 8941 byte sequence ':<base64>:' without parameters")
    if not member[0]:
        raise _malformed(f"{what}: empty byte sequence")
    return member[0]


def parse_client_cert(value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS) -> Certificate:
    """The leaf from an RFC 9440 ``Client-Cert`` value (``:<base64 DER>:``).

    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    text = _text(value, "Client-Cert", limits)
    item = _sf_parse(text, "item", "Client-Cert")
    return _der_list([_sf_binary(item, "Client-Cert")], "Client-Cert", limits)[0]


def parse_client_cert_chain(
    value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS
) -> list[Certificate]:
    """The certificates of an RFC 9440 ``Client-Cert-Chain`` value (the leaf is not in it).

    RFC 9440 §2.3: a List of Byte Sequences, each a DER certificate, in TLS order.
    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    text = _text(value, "Client-Cert-Chain", limits)
    if not text:
        return []
    # RFC 8941 §4.2.1: members separated by OWS "," OWS; a trailing comma fails parsing.
    # http-sf returns a list for tltype="list" (its StructuredType union does not say so).
    members = cast("http_sf.ListType", _sf_parse(text, "list", "Client-Cert-Chain"))
    if len(members) > limits.max_certs:
        raise CertificateRejected(
            Reason.PKI_TOO_LARGE,
            f"Client-Cert-Chain has {len(members)} members; the limit is {limits.max_certs}",
        )
    return _der_list(
        [_sf_binary(m, "Client-Cert-Chain") for m in members], "Client-Cert-Chain", limits
    )


def emit_client_cert(cert: Certificate) -> str:
    """An RFC 9440 ``Client-Cert`` value for ``cert`` (RFC 8941 §4.1.8 serialisation)."""
    return http_sf.ser((cert.der, {}))


def emit_client_cert_chain(certs: Iterable[Certificate]) -> str:
    """An RFC 9440 ``Client-Cert-Chain`` value (pass the chain without the leaf)."""
    return http_sf.ser([(c.der, {}) for c in certs]) if (certs := list(certs)) else ""


# --- nginx and AWS ALB: URL-encoded or folded PEM ------------------------------------


def parse_nginx_escaped_cert(
    value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS
) -> Certificate:
    """The leaf from nginx ``$ssl_client_escaped_cert`` ("the client certificate in the PEM
    format (urlencoded)", nginx ≥ 1.13.5).

    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    return _one(
        _urlpem_certs(value, "nginx escaped certificate", limits), "nginx escaped certificate"
    )


def emit_nginx_escaped_cert(cert: Certificate) -> str:
    """What nginx puts in ``$ssl_client_escaped_cert`` for ``cert``."""
    return percent_encode(_pem(cert.der), safe=_NGINX_SAFE)


def parse_nginx_cert(value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS) -> Certificate:
    """The leaf from nginx's legacy ``$ssl_client_cert``.

    nginx: "returns the client certificate in the PEM format ... with each line except
    the first prepended with the tab character". Sent as a header that is an obs-fold
    (RFC 9112 §5.2), which servers replace with spaces; both forms are accepted.
    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    text = _text(value, "nginx certificate", limits, folded=True)
    return _one(
        _der_list(_pem_ders(text, "nginx certificate", limits), "nginx certificate", limits),
        "nginx certificate",
    )


def emit_nginx_cert(cert: Certificate) -> str:
    """nginx's legacy ``$ssl_client_cert`` form: LF+TAB between lines, no final newline."""
    return _pem(cert.der).rstrip("\n").replace("\n", "\n\t")


def parse_alb_clientcert(
    value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS
) -> list[Certificate]:
    """The presented chain from AWS ALB ``X-Amzn-Mtls-Clientcert`` (mTLS passthrough).

    AWS: "URL-encoded PEM format, with +=/ as safe characters", leaf first.
    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    return _urlpem_certs(value, "X-Amzn-Mtls-Clientcert", limits)


def parse_alb_leaf(value: str | bytes, *, limits: HeaderLimits = DEFAULT_LIMITS) -> Certificate:
    """The leaf from AWS ALB ``X-Amzn-Mtls-Clientcert-Leaf`` (mTLS verify mode).

    Raises :class:`CertificateRejected` (``malformed``, ``pki_too_large``).
    """
    what = "X-Amzn-Mtls-Clientcert-Leaf"
    return _one(_urlpem_certs(value, what, limits), what)


def emit_alb_clientcert(certs: Iterable[Certificate]) -> str:
    """An ``X-Amzn-Mtls-Clientcert`` value: the chain as URL-encoded PEM, ``+=/`` kept."""
    return percent_encode("".join(_pem(c.der) for c in certs), safe=_ALB_SAFE)


def emit_alb_leaf(cert: Certificate) -> str:
    """An ``X-Amzn-Mtls-Clientcert-Leaf`` value."""
    return emit_alb_clientcert([cert])


# --- GCP-style verdict headers ---------------------------------------------------------

# docs/reference.md#reason-codes: the nearest GCP load-balancer error for each reason; the rest keep our code.
_GCP_ERRORS = {
    Reason.NOT_PROVIDED: "client_cert_not_provided",
    Reason.INVALID_EKU: "client_cert_chain_invalid_eku",
    Reason.RSA_KEY_TOO_SMALL: "client_cert_invalid_rsa_key_size",
    Reason.RSA_KEY_TOO_LARGE: "client_cert_invalid_rsa_key_size",
    Reason.UNSUPPORTED_CURVE: "client_cert_unsupported_elliptic_curve_key",
    Reason.UNSUPPORTED_KEY_ALGORITHM: "client_cert_unsupported_key_algorithm",
    Reason.CHAIN_TOO_LONG: "client_cert_chain_exceeded_limit",
    Reason.PKI_TOO_LARGE: "client_cert_pki_too_large",
    Reason.SEARCH_LIMIT_EXCEEDED: "client_cert_validation_search_limit_exceeded",
    Reason.IDENTITY_UNMAPPED: "identity_unmapped",
    Reason.BINDING_MISMATCH: "binding_mismatch",
    Reason.UNTRUSTED_PROXY: "untrusted_proxy",
}
# Reasons that say nothing against the chain itself.
_CHAIN_OK_REASONS = frozenset({Reason.IDENTITY_UNMAPPED, Reason.BINDING_MISMATCH})


def gcp_error(reason: Reason) -> str:
    """The GCP load balancer's ``client_cert_error`` value nearest to ``reason``."""
    return _GCP_ERRORS.get(reason, "client_cert_validation_failed")


def lb_error_name(code: str | None) -> str:
    """The load balancer's error name for a decision's reason code: the GCP
    ``client_cert_error`` of a certificate reason (:func:`gcp_error`), ``""`` for
    an accepted certificate and for codes that are not about the certificate
    (``credential_missing``, ``rate_limited``, ``upstream_timeout``, …: the load
    balancer's client-certificate vocabulary has no name for them)."""
    if code is None or code not in _REASON_CODES:
        return ""
    return gcp_error(Reason(code))


_REASON_CODES = frozenset(r.value for r in Reason)


def _b64_list(values: Iterable[str]) -> str:
    return ",".join(base64.b64encode(v.encode("utf-8")).decode("ascii") for v in values)


def gcp_headers(verdict: Verdict | None, *, present: bool) -> list[tuple[str, str]]:
    """GCP-style ``X-Client-Cert-*`` headers describing ``verdict`` (all ten, always).

    Values follow the GCP load balancer's mTLS custom-header variables: ``true``/``false``
    flags, base64 SHA-256 fingerprint, hex serial, SANs as comma-separated base64 (the
    SPIFFE ID in its own header), RFC 3339 validity times. Never raises.
    """
    leaf = verdict.path[0] if verdict is not None and verdict.path else None
    if not present:
        error = gcp_error(Reason.NOT_PROVIDED)
        verified = False
    elif verdict is None:
        error, verified = "client_cert_validation_failed", False
    else:
        verified = verdict.ok or verdict.reason in _CHAIN_OK_REASONS
        error = "" if verdict.ok or verdict.reason is None else gcp_error(verdict.reason)
    values = {name: "" for name in GCP_HEADER_NAMES}
    values["X-Client-Cert-Present"] = "true" if present else "false"
    values["X-Client-Cert-Chain-Verified"] = "true" if verified else "false"
    values["X-Client-Cert-Error"] = error
    if present and leaf is not None:
        uris = [n.value for n in leaf.san or () if isinstance(n, x509.UniformResourceIdentifier)]
        spiffe = [u for u in uris if u.lower().startswith("spiffe://")]
        dns = [n.value for n in leaf.san or () if isinstance(n, x509.DNSName)]
        values["X-Client-Cert-Hash"] = base64.b64encode(leaf.sha256).decode("ascii")
        values["X-Client-Cert-Serial-Number"] = format(leaf.serial, "x")
        # A SPIFFE ID is only meaningful when exactly one is present (SPIFFE X.509-SVID §2).
        values["X-Client-Cert-SPIFFE"] = (
            spiffe[0] if len(spiffe) == 1 and spiffe[0].isascii() else ""
        )
        values["X-Client-Cert-URI-SANs"] = _b64_list(u for u in uris if u not in spiffe)
        values["X-Client-Cert-DNSName-SANs"] = _b64_list(dns)
        values["X-Client-Cert-Valid-Not-Before"] = leaf.not_before.isoformat()
        values["X-Client-Cert-Valid-Not-After"] = leaf.not_after.isoformat()
    # Defence in depth: nothing outside visible ASCII ever reaches a header value.
    return [(k, v if _VALUE_CHARS.search(v) is None else "") for k, v in values.items()]
