"""Who gets a connection slot (mtlscore.gateway.admission, issue 15 finding 5)."""

from __future__ import annotations

import ipaddress
import pathlib
from dataclasses import replace

from mtlscore.gateway.admission import MAX_CONNECTIONS, MAX_PER_ADDRESS, Admission, Ticket
from mtlscore.gateway.settings import ServerConfig

SERVER = ServerConfig(pathlib.Path("s.pem"), pathlib.Path("s.key"), max_connections=5, max_connections_per_address=2)


def take(a: Admission, ip: str, now: float = 0.0, server: ServerConfig = SERVER) -> Ticket | str:
    got = a.admit((ip, 1000), server, now=now)
    if isinstance(got, Ticket):
        got.shed = lambda: shed.append(got)  # type: ignore[union-attr]
    return got


shed: list[Ticket] = []


def busy(t: Ticket | str) -> Ticket:
    assert isinstance(t, Ticket)
    t.waiting_since = None  # busy with a request
    return t


def test_per_address_then_total_refuse_when_nobody_waits() -> None:
    a = Admission()
    first = busy(take(a, "10.0.0.1"))
    busy(take(a, "10.0.0.1"))
    assert take(a, "10.0.0.1") == MAX_PER_ADDRESS
    for i in (2, 3, 4):
        busy(take(a, f"10.0.0.{i}"))
    assert a.total == 5 and take(a, "10.0.0.9") == MAX_CONNECTIONS
    a.release(first)
    assert a.open_from("10.0.0.1") == 1 and isinstance(take(a, "10.0.0.1"), Ticket)


def test_when_full_the_longest_waiting_connection_is_shed() -> None:
    shed.clear()
    a = Admission()
    tickets = [take(a, f"10.0.0.{i}", now=float(i)) for i in range(1, 6)]
    assert all(isinstance(t, Ticket) for t in tickets)
    busy(tickets[0])  # the oldest is busy with a request: never shed
    tickets[2].waiting_since = 0.5  # type: ignore[union-attr]  # waiting longest (e.g. an idle keep-alive)
    new = take(a, "10.0.0.9", now=10.0)
    assert isinstance(new, Ticket) and shed == [tickets[2]]
    assert a.total == 5 and a.open_from("10.0.0.3") == 0
    a.release(tickets[2])  # the shed connection's own release frees nothing more
    assert a.total == 5
    assert isinstance(take(a, "10.0.0.8", now=11.0), Ticket) and shed[-1] is tickets[1]


def test_limits_are_read_per_call_so_a_reload_changes_them() -> None:
    a = Admission()
    busy(take(a, "10.0.0.1"))
    busy(take(a, "10.0.0.1"))
    assert take(a, "10.0.0.1") == MAX_PER_ADDRESS
    assert isinstance(take(a, "10.0.0.1", server=replace(SERVER, max_connections_per_address=3)), Ticket)


def test_trusted_proxies_are_exempt_from_the_per_address_limit() -> None:
    proxied = replace(SERVER, trusted_proxies=(ipaddress.ip_network("10.9.0.0/16"),), max_connections=100)
    a = Admission()
    assert all(isinstance(take(a, "10.9.0.7", server=proxied), Ticket) for _ in range(50))
    assert isinstance(take(a, "10.0.0.1", server=proxied), Ticket)
    assert isinstance(take(a, "10.0.0.1", server=proxied), Ticket)
    assert take(a, "10.0.0.1", server=proxied) == MAX_PER_ADDRESS
    assert isinstance(take(a, "not an address", server=proxied), Ticket)  # counted as its own address
