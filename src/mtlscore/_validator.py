"""Validator: the public entry point (being written; interface fixed)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ._policy import Policy
from ._trust import TrustStore
from ._verdict import Verdict

__all__ = ["Validator"]


class Validator:
    """Validate presented client-certificate chains against a trust store and policy."""

    def __init__(self, trust: TrustStore, policy: Policy | None = None, *, identity_map: Any = None) -> None:
        self.trust = trust
        self.policy = policy or Policy()
        self.identity_map = identity_map

    def validate(self, chain: Any, *, at: datetime, crls: Iterable[bytes] = ()) -> Verdict:
        raise NotImplementedError
