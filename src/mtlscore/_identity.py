"""The identity a certificate asserts (minimal; extended by the identity module work)."""

from __future__ import annotations

from dataclasses import dataclass

from ._cert import Certificate
from ._trust import Anchor

__all__ = ["Identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the leaf certificate says it is."""

    subject_dn: str
    issuer_dn: str
    serial: int
    x5t_s256: str
    sha256_hex: str
    spki_sha256: str
    anchor: str | None = None

    @classmethod
    def from_certificate(cls, cert: Certificate, anchor: Anchor | None = None) -> Identity:
        return cls(
            subject_dn=cert.subject_text,
            issuer_dn=cert.issuer_text,
            serial=cert.serial,
            x5t_s256=cert.x5t_s256,
            sha256_hex=cert.fingerprint_hex,
            spki_sha256=cert.spki_pin,
            anchor=anchor.name if anchor else None,
        )
