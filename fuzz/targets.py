"""One fuzz target per public entry point that takes untrusted bytes.

Each target takes ``bytes`` and returns None. It lets through only the
outcomes its entry point documents (a :class:`Verdict`, a
:class:`CertificateRejected`, a :class:`ConfigError`, the module's own typed
error); anything else escaping, or a verdict whose detail says the validator
hit an internal error, is a crash (:class:`Crash`, or the raw exception).
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args, get_type_hints

from mtlscore import CertificateRejected, ConfigError, Reason, Verdict
from mtlscore.config import parse_config
from mtlscore.decision.validator import INTERNAL_ERROR
from mtlscore.identity.binding import check_cnf, check_self_signed_tls_client_auth
from mtlscore.identity.identity import Identity
from mtlscore.jwt import TokenInvalid, verify_bound_token
from mtlscore.pki import NOW
from mtlscore.proxy import headers as hdr
from mtlscore.proxy.trusted import ProxyPolicy, Reject, TrustedProxy, UseForwarded, UseTls
from mtlscore.revocation.crl import CRLStatus, check_certificate, parse_crl
from mtlscore.revocation.ocsp import OCSPStatus, check_response
from mtlscore.x509 import dns_name_matches, match_peer_name
from mtlscore.x509.cert import load_certificates
from mtlscore.x509.dn import dn_equal, format_dn, parse_dn

from ._world import World, config_toml, crl_world, world

__all__ = ["CHAIN_SEPARATOR", "TARGETS", "UPSTREAM_SEPARATOR", "Crash", "Target"]

Target = Callable[[bytes], None]
TARGETS: dict[str, Target] = {}

# Splits one fuzz input into several DER blobs (chain_der) or client/upstream bytes (session).
CHAIN_SEPARATOR = b"\x00--MTLS-CHAIN--\x00"
UPSTREAM_SEPARATOR = b"\x00--MTLS-UPSTREAM--\x00"


class Crash(AssertionError):
    """An undocumented outcome: the entry point broke its contract."""


# Bugs found by fuzzing in modules this fuzz suite does not own, each pinned by a strict
# xfail regression test in tests/test_fuzz_regressions.py. While listed here a target
# tolerates them, so that CI keeps failing only on new findings; delete the entry when
# the bug is fixed (the xfail test turns into a failure as a reminder).
# (config.py's timedelta overflow on huge *_seconds was listed here until 9dfa02d fixed it.)
KNOWN_BUGS: dict[str, tuple[tuple[type[BaseException], str], ...]] = {}


def known_bug(name: str, exc: BaseException) -> bool:
    """True when ``exc`` raised by target ``name`` is a listed, not yet fixed bug."""
    return any(isinstance(exc, t) and text in str(exc) for t, text in KNOWN_BUGS.get(name, ()))


def target(name: str) -> Callable[[Target], Target]:
    def register(fn: Target) -> Target:
        TARGETS[name] = fn
        return fn

    return register


def _check_verdict(v: object, where: str) -> None:
    if not isinstance(v, Verdict):
        raise Crash(f"{where} returned {type(v).__name__}, not a Verdict")
    if v.ok:
        if v.reason is not None:
            raise Crash(f"{where}: accepted verdict with reason {v.reason}")
        if not v.path:
            raise Crash(f"{where}: accepted verdict with an empty path")
        return
    if not isinstance(v.reason, Reason):
        raise Crash(f"{where}: rejected verdict without a Reason ({v.reason!r})")
    if v.detail.startswith(INTERNAL_ERROR):
        raise Crash(f"{where}: {v.detail}")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _exercise_certificate(w: World, certs: list[Any]) -> None:
    # What the gateway and CLI do with any parsed certificate: describe it, take its
    # identity, emit it to an upstream. None of this may raise on a parsed certificate.
    for c in certs:
        c.describe()
        _ = (c.x5t_s256, c.spki_pin, c.fingerprint_hex, c.pem, c.issuer_text)
        Identity.from_certificate(c, None)
        hdr.emit_client_cert(c)
        hdr.emit_nginx_escaped_cert(c)
        hdr.emit_xfcc([hdr.XfccElement.from_chain([c])])
        hdr.gcp_headers(Verdict(False, Reason.UNTRUSTED, "x", path=(c,)), present=True)
        # RFC 6125 matching against the certificate's (untrusted) SANs.
        for reference in ("client.fuzz.example", "127.0.0.1", "[::1]", "a.b.example"):
            match_peer_name(c, reference)
        for n in c.san or ():
            if isinstance(n.value, str):
                dns_name_matches(n.value, "client.fuzz.example")


# -- certificates and chains ---------------------------------------------------------


@target("certificate")
def fuzz_certificate(data: bytes) -> None:
    """load_certificates (DER or PEM) then everything done with a parsed certificate."""
    w = world()
    try:
        certs = load_certificates(data)
    except CertificateRejected:
        return
    _exercise_certificate(w, certs)


@target("chain_der")
def fuzz_chain_der(data: bytes) -> None:
    """Validator.validate on a list of DER blobs (the shape a TLS stack hands over)."""
    w = world()
    ders = [d for d in data.split(CHAIN_SEPARATOR)][:40]
    v = w.validator.validate(ders, at=NOW)
    _check_verdict(v, "validate(list of DER)")


@target("chain_pem")
def fuzz_chain_pem(data: bytes) -> None:
    """Validator.validate on one blob: PEM text (several blocks) or one DER certificate."""
    w = world()
    v = w.validator.validate(data, at=NOW)
    _check_verdict(v, "validate(bytes)")
    v = w.validator.validate(_text(data), at=NOW + timedelta(days=400))
    _check_verdict(v, "validate(str)")


# -- proxy headers ------------------------------------------------------------------

_HEADER_PARSERS: dict[str, Callable[[Any], Any]] = {
    "header_rfc9440": hdr.parse_client_cert,
    "header_rfc9440_chain": hdr.parse_client_cert_chain,
    "header_nginx_escaped": hdr.parse_nginx_escaped_cert,
    "header_nginx": hdr.parse_nginx_cert,
    "header_alb": hdr.parse_alb_clientcert,
    "header_alb_leaf": hdr.parse_alb_leaf,
    "header_xfcc": hdr.parse_xfcc,
}


def _header_target(parse: Callable[[Any], Any]) -> Target:
    def run(data: bytes) -> None:
        w = world()
        # Header values reach us as bytes (h11, ASGI) or str (other frameworks): try both.
        for value in (data, _text(data)):
            try:
                out = parse(value)
            except CertificateRejected as exc:
                if exc.reason not in (Reason.MALFORMED, Reason.PKI_TOO_LARGE):
                    raise Crash(f"{parse.__name__} rejected with {exc.reason}") from None
                continue
            certs: list[Any] = []
            if isinstance(out, tuple):  # XFCC elements
                for el in out:
                    certs.extend(el.presented)
            elif isinstance(out, list):
                certs = out
            else:
                certs = [out]
            _exercise_certificate(w, certs)
            if certs:
                _check_verdict(w.validator.validate(certs, at=NOW), f"validate({parse.__name__})")

    run.__name__ = f"fuzz_{parse.__name__}"
    return run


for _name, _parse in _HEADER_PARSERS.items():
    TARGETS[_name] = _header_target(_parse)


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


_PROXY = ProxyPolicy(
    (
        TrustedProxy("rfc9440", networks=_nets("127.0.0.1/32"), format="rfc9440"),
        TrustedProxy("envoy", networks=_nets("127.0.0.2/32"), format="xfcc"),
        TrustedProxy(
            "nginx",
            networks=_nets("127.0.0.3/32"),
            format="nginx",
            revalidate=False,
            verdict_header="x-ssl-client-verify",
        ),
        TrustedProxy("alb", networks=_nets("127.0.0.4/32"), format="alb"),
    )
)


@target("proxy_decide")
def fuzz_proxy_decide(data: bytes) -> None:
    """ProxyPolicy.decide on fuzzed header lists from trusted and untrusted peers."""
    # Input: lines "name: value"; the first byte picks the peer.
    peer = f"127.0.0.{data[0] % 6}" if data else "10.0.0.1"
    headers: list[tuple[bytes, bytes]] = []
    for line in data[1:].split(b"\n")[:64]:
        name, _, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    d = _PROXY.decide(peer=(peer, 443), headers=headers)
    if isinstance(d, Reject):
        if not isinstance(d.reason, Reason):
            raise Crash(f"decide rejected without a Reason: {d!r}")
    elif not isinstance(d, UseTls | UseForwarded):
        raise Crash(f"decide returned {type(d).__name__}")


def _asgi_middlewares() -> tuple[Any, ...]:
    from mtlscore.asgi import BoundToken, MtlsMiddleware

    w = world()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return tuple(
        MtlsMiddleware(app, w.validator, proxies=_PROXY, mode=mode, bound_token=token, clock=lambda: NOW)
        for mode in ("reject", "allow")
        for token in (None, BoundToken(jwks=w.token_jwks, required=False))
    )


@target("asgi")
def fuzz_asgi(data: bytes) -> None:
    """MtlsMiddleware on a fuzzed request: peer, headers (proxy certificates, bearer token), TLS chain."""
    if not hasattr(fuzz_asgi, "middlewares"):
        fuzz_asgi.middlewares = _asgi_middlewares()  # type: ignore[attr-defined]
    w = world()
    mode = data[0] if data else 0
    headers: list[tuple[bytes, bytes]] = []
    for line in data[1:].split(b"\n")[:64]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": headers,
        "client": (f"127.0.0.{mode % 6}", 5555),
        "state": {},
    }
    if mode & 8:
        scope["extensions"] = {"tls": {"client_cert_chain": [w.leaf.pem.decode(), w.inter.pem.decode()]}}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = fuzz_asgi.middlewares[(mode >> 4) % 4]  # type: ignore[attr-defined]
    coro = middleware(scope, receive, send)
    try:
        coro.send(None)
    except StopIteration:
        pass
    else:
        coro.close()
        raise Crash("the middleware waited on something that never comes")
    if not sent or sent[0].get("type") != "http.response.start" or not isinstance(sent[0].get("status"), int):
        raise Crash(f"no response started: {sent!r}")
    if sent[0]["status"] != 200:
        body = b"".join(m.get("body", b"") for m in sent[1:])
        doc = json.loads(body)
        if not isinstance(doc, dict) or "error" not in doc:
            raise Crash(f"error body is not a JSON error object: {body[:200]!r}")


# -- names, keys and tokens -----------------------------------------------------------


@target("dn")
def fuzz_dn(data: bytes) -> None:
    """parse_dn (RFC 4514 text from configuration and headers) and its round trip."""
    text = _text(data)
    try:
        name = parse_dn(text, key="fuzz")
    except ConfigError:
        return
    printed = format_dn(name)
    # The printed form must read back as the same name (RFC 4514 §2.4 escaping).
    try:
        again = parse_dn(printed)
    except ConfigError as exc:
        raise Crash(f"format_dn output {printed!r} does not parse: {exc}") from None
    if not dn_equal(name, again):
        raise Crash(f"{text!r} -> {printed!r} -> a different name")


@target("jwks")
def fuzz_jwks(data: bytes) -> None:
    """check_self_signed_tls_client_auth: a registered JWKS document against a certificate."""
    w = world()
    try:
        check_self_signed_tls_client_auth(_text(data), w.leaf_cert)
    except CertificateRejected as exc:
        if exc.reason is not Reason.NOT_ALLOWLISTED:
            raise Crash(f"JWKS matching rejected with {exc.reason}") from None
    except ConfigError:
        pass


@target("jwks_fetched")
def fuzz_jwks_fetched(data: bytes) -> None:
    """A fetched jwks_uri answer (body, Cache-Control) through JwksCache, then self-signed matching."""
    from mtlscore.identity.identity_map import Principal
    from mtlscore.identity.jwks import JwksCache, JwksLimits, JwksUnavailable, NeedJwks, ttl_from_cache_control
    from mtlscore.identity.self_signed import SelfSignedClient, SelfSignedMatch, match

    w = world()
    header, _, body = data.partition(b"\n")
    limits = JwksLimits(max_bytes=64 * 1024)
    ttl = ttl_from_cache_control(header, limits)
    if not limits.min_ttl <= ttl <= limits.max_ttl:
        raise Crash(f"Cache-Control {header!r} gave a TTL {ttl} outside the bounds")
    cache = JwksCache(limits)
    url = "https://client.example/jwks"
    error = cache.answer(NeedJwks(url), status=200, body=body, cache_control=header, now=0)
    try:
        keys = cache.keys(url, now=1)
    except JwksUnavailable:
        if error is None:
            raise Crash("an accepted answer left no keys") from None
        return
    if error is not None or not isinstance(keys.get("keys"), list):
        raise Crash(f"a refused answer ({error}) replaced the keys")
    client = SelfSignedClient(Principal("fuzz"), jwks_uri=url)
    try:
        found = match([client], w.leaf_cert, at=NOW, now=1, cache=cache)
    except CertificateRejected as exc:
        if exc.reason not in (Reason.NOT_ALLOWLISTED, Reason.EXPIRED, Reason.NOT_YET_VALID):
            raise Crash(f"self-signed matching rejected with {exc.reason}") from None
        return
    if not isinstance(found, SelfSignedMatch | NeedJwks):
        raise Crash(f"self-signed matching answered {found!r}")


@target("proxy_basic_auth")
def fuzz_proxy_basic_auth(data: bytes) -> None:
    """ProxyCredentials.check on a fuzzed Proxy-Authorization value (never raises, refuses all but one)."""
    from mtlscore.proxy.basic_auth import PasswordHash, ProxyCredentials

    creds = ProxyCredentials("edge", PasswordHash.parse(_PROXY_HASH))
    if creds.check(data) is None:
        raise Crash(f"{data!r} passed the basic auth of user 'edge'")


# The cheapest accepted scrypt cost (ln=14), a fixed salt and a key no password derives to
# (all zero bits): every input must be refused, with a reason, without raising.
_PROXY_HASH = "$scrypt$ln=14,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43


@target("oauth_client")
def fuzz_oauth_client(data: bytes) -> None:
    """ClientRegistry.authenticate with a fuzzed client_id and certificate bytes: only its documented reasons."""
    from mtlscore.oauth import ClientRegistry

    w = world()
    registry = ClientRegistry({
        "pki": {"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": "client.example"},
        "self": {"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks": w.token_jwks},
    })
    client_id, _, cert = data.partition(b"\x00")
    result = registry.authenticate(client_id.decode("utf-8", "replace"), certificate=cert or None, verdict=None,
                                   at=NOW)
    if result.ok or result.need is not None:
        raise Crash(f"{data[:64]!r} authenticated ({result})")
    if result.error().error != "invalid_client":
        raise Crash(f"a refusal answered {result.error().error}")


@target("bound_token")
def fuzz_bound_token(data: bytes) -> None:
    """verify_bound_token (a bearer token from the Authorization header) and check_cnf."""
    w = world()
    try:
        verify_bound_token(_text(data), w.token_jwks, w.leaf_cert, at=NOW)
    except (TokenInvalid, CertificateRejected, ConfigError):
        pass
    try:
        claims = json.loads(data)
    except (ValueError, RecursionError):
        return
    if isinstance(claims, dict):
        try:
            check_cnf(claims, w.leaf_cert)
        except CertificateRejected as exc:
            if exc.reason is not Reason.BINDING_MISMATCH:
                raise Crash(f"check_cnf rejected with {exc.reason}") from None


# -- revocation data ------------------------------------------------------------------


_CRL_STATUSES = frozenset(get_args(get_type_hints(CRLStatus)["status"]))


@target("crl")
def fuzz_crl(data: bytes) -> None:
    """parse_crl + check_certificate, and a CRL handed to Validator.validate."""
    w = world()
    try:
        crl = parse_crl(data)
    except ValueError:
        crl = None
    if crl is not None:
        st = check_certificate(w.leaf_cert, w.inter_cert, [crl], at=NOW, skew=timedelta(0), max_age=timedelta(days=1))
        if st.status not in _CRL_STATUSES:
            raise Crash(f"check_certificate status {st.status!r}")
    v = w.validator.validate(w.leaf.chain_pem, at=NOW, crls=[data])
    _check_verdict(v, "validate(crls=[fuzzed])")


@target("crl_set")
def fuzz_crl_set(data: bytes) -> None:
    """Validator.validate on a certificate chain plus a set of CRLs (RFC 5280 §6.3.3 over all of them).

    Input: a selector byte, then DER blobs split by CHAIN_SEPARATOR: the first
    1-4 (selector bits 0-1) are the presented chain, the rest CRLs. Only a
    Verdict (never an internal error) and the documented CRL statuses are allowed;
    a hostile set (many same-name signers) must end within the work budget.
    """
    w = crl_world()
    sel = data[0] if data else 0
    parts = data[1:].split(CHAIN_SEPARATOR)
    n = 1 + (sel & 3)
    chain, blobs = [p for p in parts[:n] if p], parts[n:]
    crls = []
    for blob in blobs:
        try:
            crls.append(parse_crl(blob))
        except ValueError:
            continue
    validator = w.validators[(sel >> 2) % len(w.validators)]
    # Selector bit 7: pass every blob (one that does not parse makes the verdict malformed).
    given = blobs if sel & 0x80 else [c.der for c in crls]
    v = validator.validate(chain or [w.leaf.der], at=NOW, crls=given)
    _check_verdict(v, "validate(chain, crls=[fuzzed...])")
    st = check_certificate(w.leaf_cert, w.inter_cert, crls, at=NOW, max_age=timedelta(days=1))
    if st.status not in _CRL_STATUSES:
        raise Crash(f"check_certificate status {st.status!r}")


_OCSP_STATUSES = frozenset(get_args(get_type_hints(OCSPStatus)["status"]))


@target("ocsp")
def fuzz_ocsp(data: bytes) -> None:
    """check_response: an OCSP answer from a (possibly hostile) responder. Never raises."""
    w = world()
    for nonce in (None, b"0123456789abcdef"):
        st = check_response(data, w.leaf_cert, w.inter_cert, at=NOW, nonce=nonce, max_age=timedelta(days=1))
        if st.status not in _OCSP_STATUSES:
            raise Crash(f"check_response status {st.status!r}")


@target("revocation_fetch")
def fuzz_revocation_fetch(data: bytes) -> None:
    """The asking validator (Validator.start): every CRL/OCSP/issuer request answered with fuzzed bytes."""
    from mtlscore.verify.machine import NeedCRL, NeedIssuer, NeedOCSP

    w = world()
    mode = data[0] if data else 0
    validator = w.fetching[mode % len(w.fetching)]
    chain = [w.leaf.der] if mode & 4 else [w.leaf.der, w.inter.der]
    answers = data[1:].split(CHAIN_SEPARATOR)
    validation = validator.start(chain, at=NOW)
    for _ in range(64):
        event = validation.next_event()
        if isinstance(event, Verdict):
            _check_verdict(event, "Validation.next_event")
            return
        if not isinstance(event, NeedCRL | NeedOCSP | NeedIssuer):
            raise Crash(f"next_event returned {type(event).__name__}")
        answer = answers.pop(0) if answers else None
        if answer:
            validation.send(event, answer)
        else:
            validation.fail(event, "fuzz: no answer")
    raise Crash("the validation asked more than 64 questions")


# -- configuration ----------------------------------------------------------------------


def _safe_paths(value: Any) -> bool:
    # The operator's config may name any file; the fuzzer must not read /dev/zero or the
    # host's files, so only plain names inside the fixture directory are let through.
    if isinstance(value, str):
        return not (value.startswith(("/", "~", "\\")) or ".." in value or ":" in value[:3])
    if isinstance(value, dict):
        return all(_safe_paths(v) for v in value.values())
    if isinstance(value, list):
        return all(_safe_paths(v) for v in value)
    return True


@target("config")
def fuzz_config(data: bytes) -> None:
    """TOML text -> tomllib -> parse_config in the fixture directory: a Config or a ConfigError."""
    w = world()
    try:
        doc = tomllib.loads(_text(data))
    except (tomllib.TOMLDecodeError, RecursionError):
        return  # load_config turns this into a ConfigError naming the file
    if not _safe_paths(doc):
        return
    try:
        cfg = parse_config(doc, base_dir=Path(w.tmpdir))
    except ConfigError:
        return
    except OverflowError as exc:
        if known_bug("config", exc):
            return
        raise
    v = cfg.validator().validate(w.leaf.chain_pem, at=NOW)
    _check_verdict(v, "validate(config)")


# -- the gateway's HTTP session ------------------------------------------------------------


@target("session")
def fuzz_session(data: bytes) -> None:
    """The gateway's sans-IO session: fuzzed client bytes (and upstream bytes) must never raise."""
    from ._session_driver import drive

    client, _, upstream = data.partition(UPSTREAM_SEPARATOR)
    drive(client, upstream)


# Seeds and a valid configuration for the config target's corpus.
SEED_CONFIG = config_toml
