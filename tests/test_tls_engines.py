"""The gateway's TLS engines (mtlscore.runtimes.tls) over memory BIOs, against a stdlib ``ssl`` client.

No sockets: the client's and the engine's bytes are carried by hand, so every path of
the byte moving (a flight cut into pieces, records, close_notify, an alert, garbage) is
driven exactly.
"""

from __future__ import annotations

import gc
import pathlib
import ssl
import weakref
from collections.abc import Callable, Sequence

import pytest
from bio_client import BioClient

from mtlscore import TrustStore, pki
from mtlscore.decision.verdict import Verdict
from mtlscore.identity.binding import x5t_s256
from mtlscore.reasons import Reason
from mtlscore.runtimes.tls import DeferredEngine, StdlibEngine, TLSEngine, TLSHandshakeError, server_context

pytest.importorskip("OpenSSL")


class Pki:
    def __init__(self, d: pathlib.Path) -> None:
        root = pki.root("CN=Engine Test Root")
        issuing = root.intermediate("CN=Engine Test Issuing")
        self.client = issuing.leaf("CN=engine-client")
        server = root.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"])
        self.trust = TrustStore([root.pem])
        self.chain = (self.client.der, issuing.der)
        self.server_pem, self.server_key = d / "s.pem", d / "s.key"
        self.server_pem.write_bytes(server.pem)
        self.server_key.write_bytes(server.key_pem)
        (d / "c.pem").write_bytes(self.client.chain_pem)
        (d / "c.key").write_bytes(self.client.key_pem)
        (d / "ca.pem").write_bytes(root.pem)
        self.dir = d

    def client_context(self, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.pem"))
        ctx.load_cert_chain(str(self.dir / "c.pem"), str(self.dir / "c.key"))
        ctx.minimum_version = ctx.maximum_version = version
        return ctx

    def engine(self, kind: str, judge: Callable[[Sequence[bytes]], Verdict | None] | None = None) -> TLSEngine:
        if kind == "ssl":
            return StdlibEngine(server_context(self.trust, certificate=self.server_pem, key=self.server_key))
        ctx = DeferredEngine.context(self.trust, certificate=self.server_pem, key=self.server_key,
                                     judge=kind == "judging")
        return DeferredEngine(ctx, judge if kind == "judging" else None)


class Client(BioClient):
    def step(self) -> None:
        self.handshake_step()


def handshake(client: Client, engine: TLSEngine, piece: int = 0) -> bool:
    """Carry the handshake's flights; ``piece`` > 0 feeds the engine that many bytes at a time."""
    server_done = False
    for _ in range(10):
        client.step()
        data = client.outgoing.read()
        chunks = [data[i:i + piece] for i in range(0, len(data), piece)] if piece and data else [data]
        for chunk in chunks:
            if chunk:
                engine.feed(chunk)
            server_done = engine.handshake()
        client.incoming.write(engine.outgoing())
        if client.done and server_done:
            return True
    return False


def exchange(client: Client, engine: TLSEngine) -> None:
    """One request and its answer over a completed handshake; the client reads all the engine sent."""
    client.tls.write(b"GET / HTTP/1.1\r\n\r\n")
    engine.feed(client.outgoing.read())
    assert engine.read() == b"GET / HTTP/1.1\r\n\r\n"
    engine.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    client.incoming.write(engine.outgoing())
    got = b""
    with pytest.raises(ssl.SSLWantReadError):
        while True:  # TLS 1.3: the session tickets come first, then the answer
            got += client.tls.read(100)
    assert got == b"HTTP/1.1 204 No Content\r\n\r\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("engines"))


def accept(chain: Sequence[bytes]) -> Verdict:
    return Verdict(ok=True)


KINDS = ["ssl", "deferred", "judging"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_handshake_records_and_close(env: Pki, kind: str, version: ssl.TLSVersion) -> None:
    engine = env.engine(kind, accept)
    # Before the ClientHello a server has nothing to do or say.
    assert engine.handshake() is False and engine.outgoing() == b""
    client = Client(env.client_context(version))
    assert handshake(client, engine)
    facts = engine.facts(("192.0.2.1", 4433))
    assert facts.chain == env.chain and facts.peer == ("192.0.2.1", 4433)
    assert facts.version == ("TLSv1.3" if version is ssl.TLSVersion.TLSv1_3 else "TLSv1.2") and facts.cipher
    assert engine.read() is None  # nothing sent yet: more bytes needed
    exchange(client, engine)
    # The client's close_notify ends the stream; the engine's reaches the client.
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.unwrap()
    engine.feed(client.outgoing.read())
    assert engine.read() == b""
    engine.close()
    client.incoming.write(engine.outgoing())
    client.tls.unwrap()  # completes (no SSLWantReadError): both close_notify alerts seen


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_a_session_from_an_earlier_connection_is_never_resumed(env: Pki, kind: str, version: ssl.TLSVersion) -> None:
    # A resumed session carries no certificate: the chain would not be presented, so not
    # validated against the trust config of now (a reload that removed its CA). Each engine
    # refuses resumption (no tickets, no session cache): the client offering its last
    # session gets a full handshake and presents its chain again, which is judged again.
    judged: list[Sequence[bytes]] = []

    def judge(chain: Sequence[bytes]) -> Verdict:
        judged.append(tuple(chain))
        return Verdict(ok=True)

    # One server context for both connections, as a gateway has one per configuration
    # snapshot (its ticket keys and session cache are the context's).
    if kind == "ssl":
        server = server_context(env.trust, certificate=env.server_pem, key=env.server_key)

        def new_engine() -> TLSEngine:
            return StdlibEngine(server)
    else:
        deferred = DeferredEngine.context(env.trust, certificate=env.server_pem, key=env.server_key,
                                          judge=kind == "judging")

        def new_engine() -> TLSEngine:
            return DeferredEngine(deferred, judge if kind == "judging" else None)

    ctx = env.client_context(version)  # one client context: its sessions are offered back
    first, engine = Client(ctx), new_engine()
    assert handshake(first, engine)
    exchange(first, engine)  # the client has read all the engine sent: TLS 1.3's tickets too
    session = first.tls.session
    assert session is not None
    second, engine = Client(ctx, session=session), new_engine()
    assert handshake(second, engine)
    exchange(second, engine)
    assert second.tls.session_reused is False
    assert engine.facts(("192.0.2.1", 4433)).chain == env.chain  # presented again, in full
    if kind == "judging":
        assert judged == [env.chain, env.chain]  # and judged again inside the handshake


@pytest.mark.parametrize("kind", KINDS)
def test_flights_fed_a_byte_at_a_time(env: Pki, kind: str) -> None:
    engine = env.engine(kind, accept)
    client = Client(env.client_context())
    assert handshake(client, engine, piece=1)
    assert engine.facts(("127.0.0.1", 1)).chain == env.chain
    client.tls.write(b"x" * 5000)
    record = client.outgoing.read()
    for i in range(len(record) - 1):
        engine.feed(record[i:i + 1])
        assert engine.read() is None
    engine.feed(record[-1:])
    assert engine.read() == b"x" * 5000


def test_judging_engine_fails_the_handshake_with_the_verdicts_alert(env: Pki) -> None:
    seen: list[tuple[bytes, ...]] = []

    def expired(chain: Sequence[bytes]) -> Verdict:
        seen.append(tuple(chain))
        return Verdict.reject(Reason.EXPIRED, "the leaf expired")

    engine = env.engine("judging", expired)
    client = Client(env.client_context())
    with pytest.raises(TLSHandshakeError) as caught:
        handshake(client, engine)
    assert seen == [env.chain]  # judged once, on the chain the client sent
    assert caught.value.code == "expired" and "certificate_expired" in caught.value.detail
    assert caught.value.thumbprint == x5t_s256(env.client.der)
    client.incoming.write(engine.outgoing())  # the alert
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_EXPIRED"):
        client.tls.read(100)


@pytest.mark.parametrize("kind", KINDS)
def test_an_engine_is_freed_when_its_connection_ends_without_the_garbage_collector(env: Pki, kind: str) -> None:
    # A cycle (the judging engine and its pyOpenSSL Connection, each holding the other) kept
    # OpenSSL's SSL object of every ended connection alive until the collector's next pass.
    engine = env.engine(kind, accept)
    assert handshake(Client(env.client_context()), engine)
    if kind == "judging":
        assert engine.verdict == Verdict(ok=True)  # the verify callback still found its engine
    gone = weakref.ref(engine)
    connection = weakref.ref(engine._conn) if isinstance(engine, DeferredEngine) else gone
    gc.disable()
    try:
        del engine
        assert gone() is None and connection() is None
    finally:
        gc.enable()


def test_an_undecided_chain_completes_the_handshake(env: Pki) -> None:
    # None: the verdict needs I/O; decided after the handshake, the engine has none.
    engine = env.engine("judging", lambda chain: None)
    assert handshake(Client(env.client_context()), engine)
    assert engine.verdict is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_broken_connection_leaves_the_others_unharmed(env: Pki, kind: str) -> None:
    # OpenSSL's error queue is per thread, and SSL_get_error reads it: errors a failure
    # left queued would fail the next handshake step or read of any other connection the
    # event loop serves. Each engine clears what its own failure queued.
    waiting = env.engine(kind, accept)  # established, waiting for the client's request
    waiting_client = Client(env.client_context())
    assert handshake(waiting_client, waiting)
    halfway = env.engine(kind, accept)  # ClientHello answered, the client's flight to come
    halfway_client = Client(env.client_context())
    halfway_client.step()
    halfway.feed(halfway_client.outgoing.read())
    assert halfway.handshake() is False
    halfway_client.incoming.write(halfway.outgoing())

    plain = env.engine(kind, accept)  # plain HTTP on the TLS port
    plain.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(TLSHandshakeError) as caught:
        plain.handshake()
    assert caught.value.code == "tls_protocol_error"
    tampered = env.engine(kind, accept)  # a record whose authentication tag does not verify
    client = Client(env.client_context())
    assert handshake(client, tampered)
    client.tls.write(b"hello")
    record = bytearray(client.outgoing.read())
    record[-1] ^= 1
    tampered.feed(bytes(record))
    assert tampered.read() == b""

    assert waiting.read() is None  # still waiting, not broken
    waiting_client.tls.write(b"request")
    waiting.feed(waiting_client.outgoing.read())
    assert waiting.read() == b"request"
    assert handshake(halfway_client, halfway)
    halfway_client.tls.write(b"after")
    halfway.feed(halfway_client.outgoing.read())
    assert halfway.read() == b"after"


@pytest.mark.parametrize("kind", KINDS)
def test_end_of_stream_mid_handshake(env: Pki, kind: str) -> None:
    engine = env.engine(kind, accept)
    client = Client(env.client_context())
    client.step()
    hello = client.outgoing.read()
    engine.feed(hello[:20])
    assert engine.handshake() is False
    engine.feed(b"")  # the client hung up
    with pytest.raises(TLSHandshakeError) as caught:
        engine.handshake()
    assert caught.value.code == "tls_protocol_error"
