"""The shared connection loop (mtlscore.runtimes.driver) around the TLS handshake, over an
in-memory stream with a stdlib ``ssl`` client: what goes out in which send.

No sockets and no event loop: the fake stream answers at once, so ``serve_connection``
runs to its end in one ``send(None)`` of its coroutine.
"""

from __future__ import annotations

import pathlib
import ssl
import time
from typing import Any

import pytest
from bio_client import BioClient

from mtlscore import pki
from mtlscore.decision.validator import Validation
from mtlscore.decision.verdict import Verdict
from mtlscore.runtimes.driver import serve_connection
from mtlscore.runtimes.state import GatewayState

pytest.importorskip("OpenSSL")

DN = "CN=driver-client,O=Driver"
REQUEST = b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def _state(d: pathlib.Path, engine: str, *, fetch: bool = False) -> GatewayState:
    root = pki.root("CN=Driver Root")
    client = root.intermediate("CN=Driver Issuing").leaf(DN)
    server = root.leaf("localhost", eku=[pki.SERVER_AUTH], san_dns=["localhost"])
    for name, data in {"root.pem": root.pem, "s.pem": server.pem, "s.key": server.key_pem,
                       "c.pem": client.chain_pem, "c.key": client.key_pem}.items():
        (d / name).write_bytes(data)
    (d / "s.key").chmod(0o600)
    (d / "m.toml").write_text(f"""[trust]
anchors = ["root.pem"]

[revocation]
mode = "off"
fetch = {"true" if fetch else "false"}

[[accounts]]
id = "driver"
match = {{ subject_dn = "{DN}" }}

[server]
certificate = "s.pem"
key = "s.key"
mode = "reject_invalid"
tls_engine = "{engine}"
""")
    return GatewayState.from_config_file(d / "m.toml")


class Client(BioClient):
    """A stdlib ``ssl`` client behind the driver's Stream: each ``recv`` hands over what the
    client has written (None when it has nothing: the driver's wait would time out)."""

    def __init__(self, d: pathlib.Path, version: ssl.TLSVersion, *, early: bool) -> None:
        ctx = ssl.create_default_context(cafile=str(d / "root.pem"))
        ctx.load_cert_chain(str(d / "c.pem"), str(d / "c.key"))
        ctx.minimum_version = ctx.maximum_version = version
        super().__init__(ctx)
        self.early = early  # the request goes with the client's Finished
        self.sent = self.closed = False
        self.sends: list[bytes] = []
        self.stall_after: int | None = None  # sends taken before the client stops reading
        self.answer = b""
        self.step()

    def step(self) -> None:
        if not self.done:
            if not self.handshake_step():
                return
            if self.early:
                self.tls.write(REQUEST)
                self.sent = True
        try:
            while chunk := self.tls.read(65536):
                self.answer += chunk
            self.closed = True  # b"": the server's close_notify
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self.closed = True  # the server's close_notify

    async def recv(self, max_bytes: int, timeout: float) -> bytes | None:
        if self.done and not self.sent:
            self.tls.write(REQUEST)
            self.sent = True
        return self.outgoing.read() or None

    async def send(self, data: bytes, timeout: float) -> None:
        if self.stall_after is not None and len(self.sends) >= self.stall_after:
            raise TimeoutError("the client reads nothing")
        self.sends.append(data)
        self.incoming.write(data)
        self.step()

    async def aclose(self) -> None:
        pass

    async def stale(self) -> bool:
        return False


async def _no_upstream(host: str, port: int, timeout: float) -> Any:
    raise OSError("no upstream here")


def _serve(state: GatewayState, client: Client, resolve: Any = None) -> None:
    coro = serve_connection(client, ("127.0.0.1", 40000), state, _no_upstream, time.monotonic, resolve)
    with pytest.raises(StopIteration):
        coro.send(None)


@pytest.mark.parametrize("engine", ["deferred", "ssl"])
def test_a_request_sent_with_the_finished_is_answered_in_one_send(tmp_path: pathlib.Path, engine: str) -> None:
    state = _state(tmp_path, engine)
    client = Client(tmp_path, ssl.TLSVersion.TLSv1_3, early=True)
    _serve(state, client)
    assert client.answer.startswith(b"HTTP/1.1 200 ") and b'"account": "driver"' in client.answer
    # The server's flight; then, in one send, the session tickets the handshake's last step
    # wrote, the answer and close_notify (the session closes after it: Connection: close).
    assert len(client.sends) == 2 and client.closed


def test_a_last_answer_the_client_does_not_take_is_a_write_timeout(tmp_path: pathlib.Path) -> None:
    # The last answer waits for close_notify; when that send times out (a client that does
    # not read), the session still learns it: its write_timeout decision is logged, no crash.
    state = _state(tmp_path, "deferred")
    client = Client(tmp_path, ssl.TLSVersion.TLSv1_3, early=True)
    client.stall_after = 1  # takes the server's flight, then reads nothing
    _serve(state, client)
    assert client.answer == b"" and len(client.sends) == 1
    assert state.metrics.get("mtlscore_decisions_total", reason="write_timeout") == 1
    assert state.metrics.get("mtlscore_connection_errors_total") == 0


@pytest.mark.parametrize("engine", ["deferred", "ssl"])
def test_the_handshakes_last_bytes_go_out_before_the_gateway_waits(tmp_path: pathlib.Path, engine: str) -> None:
    # TLS 1.2: the client sends nothing before the server's Finished, which the handshake's
    # last step writes; waiting for the request without sending it would wait forever.
    state = _state(tmp_path, engine)
    client = Client(tmp_path, ssl.TLSVersion.TLSv1_2, early=False)
    _serve(state, client)
    assert client.done and client.answer.startswith(b"HTTP/1.1 200 ")


def test_a_fetch_after_the_handshake_waits_for_nothing_of_the_clients(tmp_path: pathlib.Path) -> None:
    # Revocation fetching after the handshake may take seconds: the client's handshake
    # completes first (its Finished from the server is sent), so no client handshake
    # timeout runs while the gateway fetches.
    state = _state(tmp_path, "ssl", fetch=True)
    client = Client(tmp_path, ssl.TLSVersion.TLSv1_2, early=False)
    seen: list[bool] = []

    async def resolve(validation: Validation) -> Verdict:
        seen.append(client.done)
        while not isinstance(event := validation.next_event(), Verdict):
            validation.fail(event, "no fetching in this test")
        return event

    _serve(state, client, resolve)
    assert seen == [True] and client.answer.startswith(b"HTTP/1.1 200 ")
