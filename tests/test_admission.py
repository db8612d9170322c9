"""Who gets a connection slot (mtlscore._admission, issue 15 finding 5)."""

from __future__ import annotations

import ipaddress
import pathlib
from dataclasses import replace

from mtlscore._admission import MAX_CONNECTIONS, MAX_PER_ADDRESS, Admission
from mtlscore._gateway_config import ServerConfig

SERVER = ServerConfig(pathlib.Path("s.pem"), pathlib.Path("s.key"), max_connections=5, max_connections_per_address=2)


def test_per_address_then_total() -> None:
    a = Admission()
    assert [a.admit("10.0.0.1", SERVER) for _ in range(3)] == [None, None, MAX_PER_ADDRESS]
    assert [a.admit(f"10.0.0.{i}", SERVER) for i in (2, 3, 4)] == [None, None, None]
    assert a.total == 5 and a.admit("10.0.0.9", SERVER) == MAX_CONNECTIONS
    a.release("10.0.0.1")
    assert a.open_from("10.0.0.1") == 1 and a.admit("10.0.0.1", SERVER) is None
    for ip in ("10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"):
        a.release(ip)
    assert a.total == 0 and a.open_from("10.0.0.1") == 0


def test_limits_are_read_per_call_so_a_reload_changes_them() -> None:
    a = Admission()
    assert a.admit("10.0.0.1", SERVER) is None and a.admit("10.0.0.1", SERVER) is None
    assert a.admit("10.0.0.1", SERVER) == MAX_PER_ADDRESS
    assert a.admit("10.0.0.1", replace(SERVER, max_connections_per_address=3)) is None


def test_trusted_proxies_are_exempt_from_the_per_address_limit() -> None:
    proxied = replace(SERVER, trusted_proxies=(ipaddress.ip_network("10.9.0.0/16"),), max_connections=100)
    a = Admission()
    assert all(a.admit("10.9.0.7", proxied) is None for _ in range(50))
    assert a.admit("10.0.0.1", proxied) is None and a.admit("10.0.0.1", proxied) is None
    assert a.admit("10.0.0.1", proxied) == MAX_PER_ADDRESS
    assert a.admit("not an address", proxied) is None  # counted as its own address
