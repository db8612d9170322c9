"""The one failure type of the verifier, and how a detail names the certificate at fault.

Every check of a path (structure, signature algorithm, validity, key policy,
the CA and end-entity rules, name constraints, the policy graph) raises a
:class:`PathFailure`: the :class:`Reason`, a detail for people and the position
of the certificate at fault (leaf = 0; the anchor is ``len(path)``). Go's
``CertificateInvalidError{Cert, Reason, Detail}`` and the Rust X.509 verifier's
``ValidationError { kind, cert }`` are the models. The path builder records a
failure as a value (:func:`~mtlscore.verify.checks.check_path` returns it), so it
compares and hashes by its fields.
"""

from __future__ import annotations

from ..reasons import Reason
from ..x509.cert import Certificate

__all__ = ["PathFailure", "Who"]


class PathFailure(Exception):
    """Why one candidate path failed: ``reason``, ``detail`` and ``position``.

    Not frozen as a dataclass (an exception's ``__traceback__`` is assigned while
    it propagates), but treated as immutable: nothing assigns its fields after
    construction.
    """

    __slots__ = ("detail", "position", "reason")

    def __init__(self, reason: Reason, detail: str, position: int) -> None:
        super().__init__(reason, detail, position)
        self.reason = reason
        self.detail = detail
        self.position = position

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PathFailure):
            return NotImplemented
        return (self.reason, self.detail, self.position) == (other.reason, other.detail, other.position)

    def __hash__(self) -> int:
        return hash((self.reason, self.detail, self.position))

    def __repr__(self) -> str:
        return f"PathFailure(reason={self.reason!r}, detail={self.detail!r}, position={self.position!r})"

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


class Who:
    """A certificate and its position, as a detail names it; the name is written only if a detail is.

    ``label`` names its role ("trust anchor", "allowlisted certificate"); by
    default the position does (0: "client certificate", else "intermediate #n").
    The hot path never writes a detail, so it never formats one.
    """

    __slots__ = ("cert", "label", "position")

    def __init__(self, cert: Certificate, position: int, label: str | None = None) -> None:
        self.cert = cert
        self.position = position
        self.label = label

    def __str__(self) -> str:
        if self.label is not None:
            role = self.label
        elif self.position == 0:
            role = "client certificate"
        else:
            role = f"intermediate #{self.position}"
        return f"{role} {self.cert.describe()!r}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def fail(self, reason: Reason, detail: str) -> PathFailure:
        """The failure of this certificate: ``reason`` with ``detail`` (already naming it, or not)."""
        return PathFailure(reason, detail, self.position)
