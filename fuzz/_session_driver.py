"""Drive the gateway's sans-IO :class:`Session` the way a runtime does, with fuzzed bytes."""

from __future__ import annotations

import functools
import ipaddress
import json
import pathlib
import tomllib
from dataclasses import replace

from mtlscore._gateway_config import Upstream
from mtlscore._headers import IDENTITY_HEADER_NAMES
from mtlscore._proxy import TrustedProxy
from mtlscore._session import (
    Close,
    CloseUpstream,
    Gateway,
    Log,
    OpenUpstream,
    ReadClient,
    ReadUpstream,
    Session,
    TLSFacts,
    Validate,
    WriteClient,
    WriteUpstream,
)
from mtlscore._validator import Validator
from mtlscore._verdict import Verdict
from mtlscore.config import parse_config
from mtlscore.pki import NOW

from ._world import config_toml, world

MAX_ACTIONS = 20_000
_PREFIXES = (b"x-client-cert-", b"x-mtls-")
_EXACT = frozenset(n.encode() for n in IDENTITY_HEADER_NAMES)


def check_upstream_head(data: bytes) -> None:
    """A request head sent upstream carries each identity header once, spelled as the gateway spells it."""
    from .targets import Crash

    first, _, rest = data.partition(b"\r\n")
    if not first.endswith(b" HTTP/1.1") or b"\r\n\r\n" not in data:
        return
    seen: dict[bytes, int] = {}
    for line in rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        raw = line.partition(b":")[0].strip().lower()
        name = raw.replace(b"_", b"-")
        if name in _EXACT or name.startswith(_PREFIXES):
            if raw != name:
                raise Crash(f"a look-alike identity header reached the upstream: {line!r}")
            seen[name] = seen.get(name, 0) + 1
    twice = [n for n, k in seen.items() if k > 1]
    if twice:
        raise Crash(f"identity header(s) {twice!r} reached the upstream twice: a client copy survived")


@functools.cache
def gateways() -> tuple[Gateway, Gateway, Gateway, Gateway]:
    """(answers with identity JSON, forwards to an upstream), then the same two behind a
    trusted proxy (the fuzzed peer is the proxy: its certificate headers decide each request;
    these fetch revocation data, so forwarded chains go through Validate actions)."""
    w = world()
    cfg = parse_config(tomllib.loads(config_toml(w, server=True)), base_dir=pathlib.Path(w.tmpdir))
    local = Gateway(validator=cfg.validator(), server=cfg.server)
    server = replace(cfg.server, upstream=Upstream("127.0.0.1", 9, "/api"), max_header_bytes=4096)
    forward = Gateway(validator=cfg.validator(), server=server)
    proxy = (TrustedProxy(name="fuzz-lb", networks=(ipaddress.ip_network("127.0.0.0/8"),)),)
    fetching = cfg.policy.evolve(fetch=True)
    local_p = Gateway(validator=Validator(cfg.trust, fetching, identity_map=cfg.accounts),
                      server=replace(cfg.server, proxies=proxy))
    forward_p = Gateway(validator=Validator(cfg.trust, fetching, identity_map=cfg.accounts),
                        server=replace(server, proxies=proxy))
    return local, forward, local_p, forward_p


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or []


def drive(client: bytes, upstream: bytes) -> None:
    """Run one session over ``client`` (then EOF) with ``upstream`` as the upstream's answer.

    Raises :class:`fuzz.targets.Crash` when the session does not close or logs garbage;
    any exception from the session itself escapes (a crash).
    """
    from .targets import Crash

    w = world()
    selector = client[0] if client else 0
    gw = gateways()[(selector & 1) | (selector >> 2 & 2)]
    chain = (w.leaf.der, w.inter.der) if selector & 2 == 0 else (w.leaf.der[: 40 + selector],)
    session = Session(gw, TLSFacts(chain=chain, peer=("127.0.0.1", 40000)), at=NOW, fetch=True)
    size = 1 + (selector >> 2) * 7
    reads = _chunks(client[1:], size)
    answers = _chunks(upstream, max(1, size // 2))
    client_eof = upstream_eof = False
    now = 0.0
    for _ in range(MAX_ACTIONS):
        now += 0.001
        action = session.next_action(at=NOW, now=now)
        if isinstance(action, Close):
            return
        if isinstance(action, ReadClient):
            if reads:
                session.receive_client(reads.pop(0))
            elif not client_eof:
                client_eof = True
                session.receive_client(b"")
            else:
                session.client_timeout()
        elif isinstance(action, OpenUpstream):
            if not upstream:
                session.upstream_failed("connect", "fuzz: no upstream")
            else:
                session.upstream_connected()
        elif isinstance(action, ReadUpstream):
            if answers:
                session.receive_upstream(answers.pop(0))
            elif not upstream_eof:
                upstream_eof = True
                session.receive_upstream(b"")
            else:
                session.upstream_failed("timeout", "fuzz: upstream silent")
        elif isinstance(action, CloseUpstream):
            answers = _chunks(upstream, max(1, size // 2))
            upstream_eof = False
        elif isinstance(action, Log):
            line = json.dumps(action.decision.as_log())
            if "\n" in line:
                raise Crash(f"a log line spans lines: {line!r}")
        elif isinstance(action, WriteUpstream):
            check_upstream_head(action.data)
        elif isinstance(action, Validate):
            session.validated(_unavailable(action.validation))
        elif not isinstance(action, WriteClient):
            raise Crash(f"unknown action {action!r}")
    raise Crash(f"the session did not close within {MAX_ACTIONS} actions")


def _unavailable(run: object) -> Verdict:
    """Drive a forwarded chain's Validation answering every request for data "unavailable"."""
    from .targets import Crash

    for _ in range(64):
        event = run.next_event()  # type: ignore[attr-defined]
        if isinstance(event, Verdict):
            return event
        run.fail(event, "fuzz: not fetched")  # type: ignore[attr-defined]
    raise Crash("a Validation did not finish within 64 requests")
