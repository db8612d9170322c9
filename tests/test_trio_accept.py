"""The trio runtime's accept loop (mtlscore.runtimes.trio._accept_loop), with a scripted listener."""

from __future__ import annotations

import errno
from typing import Any

import trio
import trio.testing

from mtlscore.runtimes.trio import _accept_loop


class Socket:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class Stream:
    def __init__(self) -> None:
        self.socket = Socket()


class Listener:
    """accept() answers from a script: an OSError to raise or a stream to return."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.times: list[float] = []

    async def accept(self) -> Any:
        self.times.append(trio.current_time())
        item = self.script.pop(0)
        if isinstance(item, OSError):
            raise item
        return item


def _run(listener: Listener, on_client: Any) -> list[BaseException]:
    """Run the loop until the listener's script ends it; the errors that ended it."""
    errors: list[BaseException] = []

    async def main() -> None:
        try:
            async with trio.open_nursery() as conns:
                await _accept_loop(listener, conns, on_client)  # type: ignore[arg-type]
        except BaseExceptionGroup as group:
            errors.extend(group.exceptions)
        except Exception as exc:  # noqa: BLE001 - what ended the loop, inspected below
            errors.append(exc)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return errors


def test_out_of_descriptors_is_waited_out_other_errors_end_the_loop() -> None:
    first, second = Stream(), Stream()
    listener = Listener([OSError(errno.EMFILE, "Too many open files"), first,
                         OSError(errno.ENFILE, "File table overflow"), second,
                         OSError(errno.EBADF, "Bad file descriptor")])
    served: list[Stream] = []

    async def on_client(stream: Any) -> None:
        await trio.sleep(0)
        served.append(stream)

    errors = _run(listener, on_client)
    assert [type(e) for e in errors] == [OSError] and getattr(errors[0], "errno", None) == errno.EBADF
    # Each capacity error waited 0.1 s before the next accept; nothing else waited.
    gaps = [round(b - a, 3) for a, b in zip(listener.times, listener.times[1:], strict=False)]
    assert gaps == [0.1, 0.0, 0.1, 0.0]
    assert first.socket.closed == 1 and second.socket.closed == 1  # each had its task


def test_each_connection_socket_is_closed_when_its_task_ends() -> None:
    ok, failing = Stream(), Stream()

    async def on_client(stream: Any) -> None:
        await trio.sleep(0)
        if stream is failing:
            raise ValueError("a handler's bug")

    errors = _run(Listener([ok, failing, OSError(errno.EBADF, "Bad file descriptor")]), on_client)
    assert ok.socket.closed == 1 and failing.socket.closed == 1
    assert {type(e) for e in errors} <= {OSError, ValueError} and errors
