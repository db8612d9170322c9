"""The shared fetch loop against a scripted HttpClient: all it needs of a runtime is that Protocol.

The real runtimes (asyncio, trio) with real HTTP servers are in tests/integration/test_fetch.py.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

import pytest

from mtlscore.runtimes.fetch import FetchError, Target
from mtlscore.runtimes.fetcher import Fetcher, HttpStream
from mtlscore.verify.machine import NeedCRL


class ScriptedStream:
    def __init__(self, answer: bytes, client: ScriptedClient) -> None:
        self.answer, self.client, self.sent = answer, client, b""

    async def send_all(self, data: bytes) -> None:
        self.sent += data

    async def receive_some(self, max_bytes: int) -> bytes:
        await asyncio.sleep(0)  # let other validations run (and join this fetch)
        if self.client.fail_reads:
            raise ConnectionResetError("reset by peer")
        out, self.answer = self.answer[:max_bytes], self.answer[max_bytes:]
        return out

    async def aclose(self) -> None:
        self.client.closed += 1


class ScriptedClient:
    """Answers by URL path; counts connections and closes."""

    def __init__(self, answers: dict[str, bytes], *, fail_reads: bool = False) -> None:
        self.answers, self.fail_reads = answers, fail_reads
        self.opened: list[str] = []
        self.closed = 0

    async def connect(self, target: Target, ssl_context: object) -> HttpStream:
        self.opened.append(target.url)
        return ScriptedStream(self.answers[target.path], self)

    def time_limit(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)

    def limiter(self, concurrent: int) -> AbstractAsyncContextManager[object]:
        return asyncio.Semaphore(concurrent)

    def event(self) -> asyncio.Event:
        return asyncio.Event()


def http(status: int, body: bytes = b"", **headers: str) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


def test_redirects_concurrency_and_every_stream_closed() -> None:
    client = ScriptedClient({"/a.crl": http(302, location="/b.crl"), "/b.crl": http(200, b"CRL")})
    fetcher = Fetcher(client)

    async def main() -> list[bytes]:
        return await asyncio.gather(*(fetcher.fetch(NeedCRL("http://ca.test/a.crl")) for _ in range(3)))

    assert asyncio.run(main()) == [b"CRL"] * 3
    assert fetcher.fetches == 1 and fetcher.joined == 2  # one fetch, two validations joined it
    assert client.opened == ["http://ca.test/a.crl", "http://ca.test/b.crl"]
    assert client.closed == 2


def test_a_stream_error_is_a_fetch_error_shared_with_joiners_and_the_stream_is_closed() -> None:
    client = ScriptedClient({"/a.crl": http(200, b"CRL")}, fail_reads=True)
    fetcher = Fetcher(client)

    async def main() -> list[object]:
        return await asyncio.gather(
            *(fetcher.fetch(NeedCRL("http://ca.test/a.crl")) for _ in range(2)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert all(isinstance(r, FetchError) and "reset by peer" in str(r) for r in results)
    assert client.closed == 1


def test_the_time_limit_is_the_clients_and_names_the_limit() -> None:
    class Slow(ScriptedClient):
        async def connect(self, target: Target, ssl_context: object) -> HttpStream:
            await asyncio.sleep(10)
            raise AssertionError("not reached")

    fetcher = Fetcher(Slow({}), timeout=0.01)
    with pytest.raises(FetchError, match=r"timed out after 0\.01 s"):
        asyncio.run(fetcher.fetch(NeedCRL("http://ca.test/a.crl")))
