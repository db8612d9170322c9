"""The result of a validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, overload

from ..identity.identity import Identity
from ..identity.identity_map import Principal
from ..reasons import CertificateRejected, Reason
from ..verify.trust import Anchor
from ..x509.cert import Certificate

__all__ = ["Verdict"]


class _Derive:
    def __repr__(self) -> str:
        return "<derived from the leaf and anchor on first read>"

    def __reduce__(self) -> str:
        return "DERIVE"  # unpickles as this module's one instance


# Passed as ``identity``: build it from ``path[0]`` and ``anchor`` when first read.
DERIVE: Final = _Derive()


class _IdentityField:
    """The ``identity`` field, computed on first read when it was given as :data:`DERIVE`.

    An accepted verdict always has an identity, but most callers of the hot path
    (a verdict cached for a reconnecting client, a gateway that only forwards
    the account) read it once or never: building it (DN texts, SANs by type,
    the SPIFFE ID, digests) is then done once, when wanted.
    """

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> None: ...

    @overload
    def __get__(self, obj: Verdict, owner: type | None = None) -> Identity | None: ...

    def __get__(self, obj: Verdict | None, owner: type | None = None) -> Identity | None:
        if obj is None:
            return None  # the dataclass default
        value: Identity | _Derive | None = obj.__dict__["_identity"]
        if isinstance(value, _Derive):
            value = Identity.from_certificate(obj.path[0], obj.anchor) if obj.path else None
            obj.__dict__["_identity"] = value
        return value

    def __set__(self, obj: Verdict, value: Identity | _Derive | None) -> None:
        obj.__dict__["_identity"] = value


@dataclass(frozen=True)
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
    # Given as an Identity, None or DERIVE; read as an Identity or None.
    identity: _IdentityField = _IdentityField()
    notes: tuple[str, ...] = ()
    # Index into ``path`` of the certificate the reason is about, when known.
    position: int | None = None
    # The identity map's answer for an accepted certificate (None: no identity map).
    principal: Principal | None = None

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

    @classmethod
    def derived(cls, path: tuple[Certificate, ...], anchor: Anchor) -> Verdict:
        """``Verdict(True, None, "", path, anchor, DERIVE)``: accepted, its identity built from
        ``path[0]`` and ``anchor`` when first read.

        The same object as that call makes (the same ``__dict__``), filled in one
        step: the validator makes one for every new client certificate, and the
        generated ``__init__`` of a frozen dataclass stores each field with a call.
        """
        verdict = object.__new__(cls)
        object.__setattr__(verdict, "__dict__", {
            "ok": True, "reason": None, "detail": "", "path": path, "anchor": anchor, "_identity": DERIVE,
            "notes": (), "position": None, "principal": None,
        })
        return verdict

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
