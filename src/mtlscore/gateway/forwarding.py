"""What the gateway sends on: request heads towards the upstream, response heads and
JSON answers towards the client.

The client's copies of identity headers are stripped (a client-supplied identity is
never believed), hop-by-hop fields are dropped, and the gateway's own identity headers
(GCP-style verdict, RFC 9440 ``Client-Cert``, the account) are added. Pure functions
over header lists; ``gateway/session.py`` drives them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import h11

from ..decision.verdict import Verdict
from ..identity.identity import Identity
from ..proxy.headers import (
    IDENTITY_HEADER_NAMES,
    XfccElement,
    emit_client_cert,
    emit_client_cert_chain,
    emit_nginx_escaped_cert,
    emit_xfcc,
    gcp_headers,
)
from ..x509.cert import Certificate
from .events import TLSFacts
from .settings import ForwardCertificate, ServerConfig

__all__ = [
    "GATEWAY_OWNED", "HOP_BY_HOP", "HeaderFilter", "IdentityFields", "identity_fields", "request_header_filter",
    "with_identity_lines",
]

# RFC 9110 §7.6.1: connection-specific fields, never forwarded (plus any the
# Connection field names). Framing is re-done by h11 on each side.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"content-length",
        b"expect",
        b"host",
    }
)
# Identity headers the gateway asserts; a client's copies are never believed.
_IDENTITY_PREFIXES = (b"x-client-cert-", b"x-mtls-")
_IDENTITY_EXACT = frozenset(n.encode() for n in IDENTITY_HEADER_NAMES)
# Fields that describe the connection as the gateway saw it: it writes X-Forwarded-For
# and X-Forwarded-Proto itself, and no client (nor a proxy, unless configured as its
# client_address_header) speaks for the others. Stripped whatever strip_request_headers says.
GATEWAY_OWNED = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-real-ip"}
)


def _normal(name: bytes) -> bytes:
    # h11 lower-cases names. CGI/WSGI and several frameworks map "_" and "-" to the
    # same variable (X_Mtls_Account and X-Mtls-Account both become HTTP_X_MTLS_ACCOUNT):
    # compare with underscores as dashes so a client's look-alike copy is stripped too.
    return name.lower().replace(b"_", b"-")


@dataclass(frozen=True, slots=True)
class HeaderFilter:
    """Which client request headers the gateway removes: exact names and name prefixes
    (lower-case, ``_`` as ``-``)."""

    exact: frozenset[bytes]
    prefixes: tuple[bytes, ...]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, bytes):
            return False
        name = _normal(name)
        return name in self.exact or name.startswith(self.prefixes)


# request_header_filter's answers by ServerConfig object (held, so its id is never
# another's): one per configuration snapshot, not one per connection. Bounded.
_FILTERS: dict[int, tuple[ServerConfig, HeaderFilter]] = {}
_FILTERS_SIZE = 16


def request_header_filter(server: ServerConfig) -> HeaderFilter:
    """Every client request header that never reaches the upstream as the client sent it:
    identity headers, what the gateway owns, each trusted proxy's certificate, verdict
    and client-address headers, the account header and ``strip_request_headers``."""
    hit = _FILTERS.get(id(server))
    if hit is not None and hit[0] is server:
        return hit[1]
    made = _header_filter(server)
    if len(_FILTERS) >= _FILTERS_SIZE:
        _FILTERS.clear()
    _FILTERS[id(server)] = (server, made)
    return made


def _header_filter(server: ServerConfig) -> HeaderFilter:
    exact = set(_IDENTITY_EXACT | GATEWAY_OWNED)
    exact.add(_normal(server.account_header.encode()))
    # The headers the certificate is forwarded in: every incoming copy goes first.
    for forward in server.forward_certificate:
        exact.update(_normal(h.encode("latin-1")) for h in forward.headers)
    for proxy in server.proxies:
        # The proxy's own basic credentials are for the gateway, never for the upstream.
        auth = proxy.auth_header if proxy.credentials is not None else None
        for field in (proxy.header_name, proxy.verdict_header, proxy.client_address_header, auth):
            if field:
                exact.add(_normal(field.encode("latin-1")))
    prefixes = list(_IDENTITY_PREFIXES)
    for pattern in server.strip_request_headers:
        name = _normal(pattern.encode("latin-1"))
        if name.endswith(b"*"):
            prefixes.append(name[:-1])
        else:
            exact.add(name)
    return HeaderFilter(frozenset(exact), tuple(prefixes))


# What the upstream's response is relayed without: the identity headers (an upstream
# does not assert identities to the client).
_RESPONSE_FILTER = HeaderFilter(_IDENTITY_EXACT, _IDENTITY_PREFIXES)


def _identity_headers(
    verdict: Verdict, presented: Sequence[Certificate], account: str | None, server: ServerConfig
) -> list[tuple[str, str]]:
    out = list(gcp_headers(verdict, present=bool(presented))) if server.forward_verdict_headers else []
    if presented:
        # The rest of the chain: the validated path when valid, else what was presented.
        # RFC 9440 §2.3: "The root certificate MAY be omitted from Client-Cert-Chain, provided
        # that the target origin server is known to possess the omitted trust anchor." One that
        # validates the chain does: RFC 5280 §6.1.1 (d) takes the trust anchor from the relying
        # party, never from the path. So a root anchor is not forwarded (~1 KB a request); an
        # intermediate configured as the anchor is (the upstream may trust only the root above it).
        path = verdict.path
        root = len(path) > 1 and path[-1].self_issued
        rest = list(path[1:-1] if root else path[1:]) if verdict.ok else list(presented[1:])
        forwards = server.forward_certificate or (
            (ForwardCertificate("rfc9440", "Client-Cert", "Client-Cert-Chain"),) if server.forward_client_cert else ()
        )
        for forward in forwards:
            out += _certificate_headers(forward, presented[0], rest)
    if account is not None and verdict.ok:
        out.append((server.account_header, account))
    return out


# Field names h11 acts on when it writes a request head: framing (Content-Length,
# Transfer-Encoding), keep-alive (Connection), protocol switches (Upgrade), 100-continue
# (Expect), and Host, which it writes first. Identity fields never carry these (settings.py
# reserves them for forward_certificate headers; account_header is any token): if one ever
# did, the fields would go through h11 with the rest of the head.
_H11_ACTS_ON = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect"})


@dataclass(frozen=True, slots=True)
class IdentityFields:
    """The identity headers as field lines: ``fields`` as h11 takes them (lower-case names,
    bytes); ``lines`` the same serialised as h11 writes a field line (``name: value``
    CRLF, in order), or None when they must go through h11 (a name h11 acts on)."""

    fields: tuple[tuple[bytes, bytes], ...]
    lines: bytes | None


def identity_fields(
    verdict: Verdict, presented: Sequence[Certificate], account: str | None, server: ServerConfig
) -> IdentityFields | None:
    """The identity headers, checked once by h11's own rules (RFC 9110 §5.1 names, §5.5
    values); None when h11 refuses one.

    Computed once per accepted verdict (gateway/identity_cache.py; per request only behind
    a trusted proxy, where each request has its own certificate), so a request does not
    rebuild and re-check them.
    """
    try:
        fields = tuple((k.lower().encode("latin-1"), v.encode("latin-1"))
                       for k, v in _identity_headers(verdict, presented, account, server))
        h11.Request(method="GET", target="/", headers=[(b"host", b"x"), *fields])
    except (h11.LocalProtocolError, UnicodeEncodeError):
        return None
    lines = None if any(k in _H11_ACTS_ON for k, _ in fields) else b"".join(b"%s: %s\r\n" % kv for kv in fields)
    return IdentityFields(fields, lines)


def with_identity_lines(head: bytes, lines: bytes) -> bytes:
    """``head`` (a request head as h11 wrote it: field lines, then the empty line) with the
    identity field ``lines`` after its own: the bytes h11 writes when they are among its fields
    (they are last of them), without h11 iterating ~15 field lines of kilobytes per request
    (its keep-alive, upgrade and 100-continue scans and its writer)."""
    if not head.endswith(b"\r\n\r\n"):  # h11 ends every head so: unreachable, but never spliced blind
        raise h11.LocalProtocolError("not a request head as h11 writes one")
    return b"".join((head[:-2], lines, b"\r\n"))


def _certificate_headers(
    forward: ForwardCertificate, leaf: Certificate, rest: Sequence[Certificate]
) -> list[tuple[str, str]]:
    """The header(s) carrying the client certificate in ``forward``'s format."""
    if forward.format == "rfc9440":
        # RFC 9440 §2: Client-Cert is the leaf; Client-Cert-Chain the rest, leaf excluded.
        out = [(forward.header, emit_client_cert(leaf))]
        if rest and forward.chain_header:
            out.append((forward.chain_header, emit_client_cert_chain(rest)))
        return out
    if forward.format == "nginx_escaped":
        return [(forward.header, emit_nginx_escaped_cert(leaf))]
    if forward.format == "pem_base64":
        return [(forward.header, base64.b64encode(leaf.pem.encode("ascii")).decode("ascii"))]
    # xfcc: the element an Envoy in front would have added (Hash, Cert, Chain, Subject, URI, DNS).
    return [(forward.header, emit_xfcc([XfccElement.from_chain([leaf, *rest])]))]


def _strip(headers: Iterable[tuple[bytes, bytes]], owned: HeaderFilter) -> list[tuple[bytes, bytes]]:
    headers = list(headers)
    named: set[bytes] = set()
    for k, v in headers:
        if k == b"connection":
            named |= {t.strip().lower() for t in v.split(b",")}
    # Every copy goes: a name sent twice (or spelt with "_") is still the gateway's.
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP and k not in named and k not in owned]


def _json(status: int, document: dict[str, Any]) -> tuple[int, bytes]:
    # One line, by the C encoder (json's pure-Python one, which indent= selects, costs ~0.1 ms per answer).
    return status, json.dumps(document, default=str, separators=(", ", ": ")).encode() + b"\n"


def _certificate_summary(cert: Certificate) -> dict[str, Any]:
    return {
        "subject": cert.subject_text,
        "issuer": cert.issuer_text,
        "serial": format(cert.serial, "x"),
        "sha256": cert.fingerprint_hex,
        "x5t#S256": cert.x5t_s256,
        "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(),
    }


def _identity_json(identity: Identity | None) -> dict[str, Any] | None:
    # Identity.to_dict: what `mtlscore identity --json` prints (hex serial, no internal
    # normalised-name keys), not the dataclass's fields.
    return identity.to_dict() if identity is not None else None



def _upstream_request_headers(
    headers: Sequence[tuple[bytes, bytes]],
    *,
    host: bytes,
    length: int | None,
    client_address: str,
    owned: HeaderFilter,
    identity: Sequence[tuple[bytes, bytes]],
    consumed: bytes | None = None,
) -> list[tuple[bytes, bytes]]:
    """The head forwarded upstream: the client's fields (``headers``, as h11 parsed them)
    minus hop-by-hop fields, the ``owned`` ones and the API key the gateway consumed
    (``consumed``: the header it came in), framing redone, then the gateway's
    X-Forwarded-For (``client_address``, the address the gateway decided with),
    X-Forwarded-Proto and identity fields (:func:`identity_fields`): one of each,
    whatever the client sent."""
    out: list[tuple[bytes, bytes]] = [(b"host", host)]
    out += [(k, v) for k, v in _strip(headers, owned) if k != consumed]
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    elif any(k == b"transfer-encoding" for k, _ in headers):
        out.append((b"transfer-encoding", b"chunked"))
    out.append((b"x-forwarded-for", client_address.encode("latin-1")))
    out.append((b"x-forwarded-proto", b"https"))
    out += identity
    return out


def _client_response_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream response's fields relayed to the client: hop-by-hop dropped, the
    Content-Length kept (h11 frames the body again from it)."""
    headers = list(headers)
    return _strip(headers, _RESPONSE_FILTER) + [(k, v) for k, v in headers if k == b"content-length"]


def _identity_document(
    verdict: Verdict,
    presented: Sequence[Certificate],
    account: str | None,
    credential: str | None,
    tls: TLSFacts,
    server: ServerConfig,
) -> dict[str, Any]:
    """The JSON identity answer: the verdict, the certificate, and what would go upstream."""
    v = verdict
    return {
        "verdict": "accepted" if v.ok else "rejected",
        "reason": v.reason.value if v.reason else None,
        "detail": v.detail,
        "account": account,
        "credential": credential or ("certificate" if v.ok else None),
        "certificate": _certificate_summary(presented[0]) if presented else None,
        "identity": _identity_json(v.identity),
        "notes": list(v.notes),
        "tls": {"sni": tls.sni, "version": tls.version, "cipher": tls.cipher},
        "upstream_headers": dict(_identity_headers(v, presented, account, server)),
    }
