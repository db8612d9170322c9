"""The result of a validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._cert import Certificate
from ._reasons import CertificateRejected, Reason
from ._trust import Anchor

if TYPE_CHECKING:
    from ._identity import Identity

__all__ = ["Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Accepted or rejected, why, and (when accepted) the path, anchor and identity.

    ``reason`` is None exactly when ``ok``. ``detail`` is written for people:
    which certificate, what is wrong, how to fix it. ``path`` runs leaf → anchor
    certificate when accepted (the best attempt when rejected, possibly empty).
    ``notes`` records facts a caller may want to log (e.g. revocation soft-fail).
    """

    ok: bool
    reason: Reason | None = None
    detail: str = ""
    path: tuple[Certificate, ...] = ()
    anchor: Anchor | None = None
    identity: Identity | None = None
    notes: tuple[str, ...] = ()
    # Index into ``path`` of the certificate the reason is about, when known.
    position: int | None = None
    principal: Any = None

    @classmethod
    def reject(
        cls,
        reason: Reason,
        detail: str,
        *,
        path: tuple[Certificate, ...] = (),
        position: int | None = None,
        notes: tuple[str, ...] = (),
    ) -> Verdict:
        return cls(False, reason, detail, path=path, position=position, notes=notes)

    @property
    def leaf(self) -> Certificate | None:
        return self.path[0] if self.path else None

    def raise_for_reason(self) -> Verdict:
        """Return self when accepted; raise :class:`CertificateRejected` otherwise."""
        if not self.ok:
            assert self.reason is not None
            raise CertificateRejected(self.reason, self.detail)
        return self

    def __bool__(self) -> bool:
        return self.ok
