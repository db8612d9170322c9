"""Drive the gateway's sans-IO :class:`Session` the way a runtime does, with fuzzed bytes."""

from __future__ import annotations

import functools
import ipaddress
import json
import pathlib
import tomllib
from dataclasses import replace

import h11

from mtlscore.config import parse_config
from mtlscore.decision.validator import Validator
from mtlscore.decision.verdict import Verdict
from mtlscore.gateway.events import (
    Close,
    CloseUpstream,
    Gateway,
    Log,
    OpenUpstream,
    ReadClient,
    ReadUpstream,
    ReleaseUpstream,
    TLSFacts,
    Validate,
    WriteClient,
    WriteUpstream,
)
from mtlscore.gateway.radar import Radar
from mtlscore.gateway.request_head import remove_dot_segments
from mtlscore.gateway.session import Session
from mtlscore.gateway.settings import Upstream
from mtlscore.pki import NOW
from mtlscore.proxy.headers import IDENTITY_HEADER_NAMES
from mtlscore.proxy.trusted import TrustedProxy

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


# Fields only the gateway may set upstream: once each (the first two), or never.
_ONCE = (b"x-forwarded-for", b"x-forwarded-proto")
_NEVER = frozenset({b"forwarded", b"x-real-ip", b"x-forwarded-host", b"x-forwarded-port", b"remote-user"})
PREFIX = b"/api"


class UpstreamOracle:
    """Parses what the gateway sends one upstream connection (h11, as a server would) and
    checks each request head: valid HTTP, framing never doubled, the target normalised
    under the prefix, forwarding headers the gateway's alone."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)

    def feed(self, data: bytes) -> None:
        from .targets import Crash

        self.conn.receive_data(data)
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise Crash(f"the gateway sent the upstream invalid HTTP: {exc}") from None
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                check_request(event)
            elif isinstance(event, h11.EndOfMessage):
                # Answer for the gateway's real upstream so the parser moves to the next request.
                self.conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                self.conn.send(h11.EndOfMessage())
                self.conn.start_next_cycle()


def check_request(request: h11.Request) -> None:
    """Issue 15's invariants on one request the gateway forwarded."""
    from .targets import Crash

    names = [k.replace(b"_", b"-") for k, _ in request.headers]
    for name in _ONCE:
        if names.count(name) != 1:
            raise Crash(f"{name!r} reached the upstream {names.count(name)} times: {request.headers!r}")
    if _NEVER & set(names):
        raise Crash(f"a client's forwarding header reached the upstream: {sorted(_NEVER & set(names))!r}")
    if b"content-length" in names and b"transfer-encoding" in names:
        raise Crash("the upstream got Content-Length and Transfer-Encoding")
    target = request.target
    if target == b"*":
        return
    path = target.partition(b"?")[0]
    if not path.startswith(PREFIX + b"/"):
        raise Crash(f"a target left the upstream prefix: {target!r}")
    if remove_dot_segments(path) != path or b"%2f" in path.lower() or b"\\" in path:
        raise Crash(f"an unnormalised target reached the upstream: {target!r}")


@functools.cache
def gateways() -> tuple[Gateway, Gateway, Gateway, Gateway]:
    """(answers with identity JSON, forwards to an upstream), then the same two behind a
    trusted proxy (the fuzzed peer is the proxy: its certificate headers decide each request;
    these fetch revocation data, so forwarded chains go through Validate actions)."""
    w = world()
    cfg = parse_config(tomllib.loads(config_toml(w, server=True)), base_dir=pathlib.Path(w.tmpdir))
    local = Gateway(validator=cfg.validator(), server=cfg.server)
    server = replace(cfg.server, upstream=Upstream("127.0.0.1", 9, PREFIX.decode()), max_header_bytes=4096)
    forward = Gateway(validator=cfg.validator(), server=server)
    # The proxies name their client-address header (X-Real-IP; X-Forwarded-For, hop 2).
    loopback = (ipaddress.ip_network("127.0.0.0/8"),)
    real_ip = (TrustedProxy(name="fuzz-lb", networks=loopback, client_address_header="X-Real-IP"),)
    xff = (TrustedProxy(name="fuzz-lb", networks=loopback, client_address_header="X-Forwarded-For",
                        client_address_hop=2),)
    fetching = cfg.policy.evolve(fetch=True)
    local_p = Gateway(validator=Validator(cfg.trust, fetching, identity_map=cfg.accounts),
                      server=replace(cfg.server, proxies=real_ip))
    every_form = frozenset({"origin", "absolute", "asterisk"})
    forward_p = Gateway(validator=Validator(cfg.trust, fetching, identity_map=cfg.accounts),
                        server=replace(server, proxies=xff, request_target_forms=every_form))
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
    oracle = UpstreamOracle()
    radar = Radar(max_certificates=2)
    # Issue 15's deadlines: the upstream answer's length picks how fast time runs between
    # actions (so head, body, idle and age deadlines pass mid-stream) and whether the
    # client or the upstream stops taking writes.
    mood = len(upstream) % 16
    step = (0.001, 0.7, 6.0, 400.0)[mood & 3]
    now = 0.0
    for _ in range(MAX_ACTIONS):
        now += step
        action = session.next_action(at=NOW, now=now)
        if isinstance(action, Close):
            return
        if isinstance(action, ReadClient | WriteClient | WriteUpstream) and not action.timeout > 0:
            raise Crash(f"an action with no time to run: {action!r}")
        if isinstance(action, ReadClient) and action.waiting_since is not None and action.waiting_since > now:
            raise Crash(f"waiting since the future: {action!r} at {now}")
        if isinstance(action, WriteClient) and mood & 4:
            session.client_write_timeout()
        elif isinstance(action, WriteUpstream) and mood & 8:
            session.upstream_failed("timeout", "fuzz: the upstream takes nothing")
        elif isinstance(action, ReadClient):
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
        elif isinstance(action, ReleaseUpstream) and oracle.conn.their_state is not h11.IDLE:
            raise Crash("an upstream connection handed back for reuse in the middle of a request")
        elif isinstance(action, CloseUpstream | ReleaseUpstream):
            # Closed, or handed back at a message boundary: the next OpenUpstream's connection
            # (a new one, or this one from the pool) starts a fresh exchange either way.
            answers = _chunks(upstream, max(1, size // 2))
            upstream_eof = False
            oracle.reset()
        elif isinstance(action, Log):
            line = json.dumps(action.decision.as_log())
            if "\n" in line:
                raise Crash(f"a log line spans lines: {line!r}")
            if action.verdict is not None:  # what the gateway hands its expiry radar
                if not action.verdict.ok or not action.chain:
                    raise Crash(f"a refused or empty chain for the radar: {action!r}")
                radar.observe(action.chain, action.verdict, account=action.decision.account, at=NOW)
        elif isinstance(action, WriteUpstream):
            check_upstream_head(action.data)
            oracle.feed(action.data)
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
