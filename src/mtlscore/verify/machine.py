"""The asking validator's vocabulary: requests for data, states, and the transitions table.

A validation in progress (:class:`mtlscore.Validation`) pauses to ask its caller
for bytes it cannot get itself (the core owns no I/O, STYLE.md §1). Each request
is a frozen event (wsproto ``events.py``); the states and the moves between
them are data (h11 ``_state.py``): a move that the table does not list raises
:class:`MachineError` naming the state, so a caller that answers a question
never asked finds out at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..reasons import MtlsError

__all__ = [
    "TRANSITIONS",
    "MachineError",
    "Move",
    "NeedCRL",
    "NeedIssuer",
    "NeedOCSP",
    "Request",
    "State",
    "transition",
]


@dataclass(frozen=True, slots=True)
class NeedCRL:
    """Fetch the CRL at ``url`` (HTTP GET) and :meth:`~Validation.send` its bytes."""

    url: str


@dataclass(frozen=True, slots=True)
class NeedOCSP:
    """Ask the OCSP responder at ``url`` and send the response bytes.

    With ``get_url`` set, GET it (RFC 6960 A.1: the request, base64 and URL-encoded,
    appended to ``url``; the core sets it when that is under 255 bytes); otherwise
    POST ``request_der`` as ``application/ocsp-request`` to ``url``.
    """

    url: str
    request_der: bytes = field(repr=False)
    get_url: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class NeedIssuer:
    """Fetch the issuer certificate(s) at the caIssuers ``url`` (DER, PEM or PKCS#7)."""

    url: str


Request = NeedCRL | NeedOCSP | NeedIssuer


class State(enum.Enum):
    """Where a validation is."""

    BUILDING = "building"  # parsing the chain and looking for a path
    AWAITING_ISSUER = "awaiting_issuer"  # a NeedIssuer is out
    CHECKING_REVOCATION = "checking_revocation"  # walking the path's certificates
    AWAITING_REVOCATION = "awaiting_revocation"  # a NeedCRL / NeedOCSP is out
    DONE = "done"  # the verdict is known


class Move(enum.Enum):
    """What can happen to a validation."""

    ASK_ISSUER = "ask_issuer"
    PATH_FOUND = "path_found"
    ASK_REVOCATION = "ask_revocation"
    ANSWERED = "answered"  # send() or fail() on the outstanding request
    DECIDED = "decided"


TRANSITIONS: dict[State, dict[Move, State]] = {
    State.BUILDING: {
        Move.ASK_ISSUER: State.AWAITING_ISSUER,
        Move.PATH_FOUND: State.CHECKING_REVOCATION,
        Move.DECIDED: State.DONE,
    },
    State.AWAITING_ISSUER: {Move.ANSWERED: State.BUILDING},
    State.CHECKING_REVOCATION: {
        Move.ASK_REVOCATION: State.AWAITING_REVOCATION,
        Move.DECIDED: State.DONE,
    },
    State.AWAITING_REVOCATION: {Move.ANSWERED: State.CHECKING_REVOCATION},
    State.DONE: {},
}


class MachineError(MtlsError):
    """The caller drove a validation in a way its current state does not allow.

    A programming error in the caller (like h11's ``LocalProtocolError``), never
    a verdict about a certificate.
    """

    def __init__(self, message: str, state: State) -> None:
        super().__init__(message)
        self.state = state


def transition(state: State, move: Move) -> State:
    """The state after ``move`` from ``state``. Raises :class:`MachineError` if not allowed."""
    try:
        return TRANSITIONS[state][move]
    except KeyError:
        raise MachineError(f"cannot {move.value} in state {state.value}", state) from None
