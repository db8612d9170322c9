"""Trust anchors, the intermediates pool and allowlisted certificates."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from ..reasons import CertificateRejected, ConfigError
from ..x509.cert import Certificate, ChainInput, load_certificates
from ..x509.names import NameKey

__all__ = ["Anchor", "TrustStore"]

_epochs = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Anchor:
    """A trust anchor: a (name, public key) pair taken from a configured certificate.

    ``not_before``/``not_after``, when given, replace the certificate's own
    validity: the activation window of a CA during rotation.
    """

    certificate: Certificate
    label: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None

    @property
    def subject_key(self) -> NameKey:
        return self.certificate.subject_key

    @property
    def spki_sha256(self) -> bytes:
        return self.certificate.spki_sha256

    @property
    def name(self) -> str:
        return self.label or self.certificate.describe()

    def window(self) -> tuple[datetime, datetime]:
        """The anchor's validity: its activation window where set, else the certificate's."""
        return (
            self.not_before or self.certificate.not_before,
            self.not_after or self.certificate.not_after,
        )


def _to_certs(item: ChainInput, what: str) -> list[Certificate]:
    if isinstance(item, str) and "-----BEGIN" not in item and len(item) < 4096:
        # The core reads no files: a path here is a mistake worth naming.
        raise ConfigError(
            f"{item!r} looks like a file name; pass the certificate's PEM/DER bytes "
            "(open(path, 'rb').read()), or load files with mtlscore.config",
            key=what,
        )
    try:
        return load_certificates(item, max_cert_bytes=1 << 20, max_chain_bytes=64 << 20)
    except CertificateRejected as exc:
        raise ConfigError(f"cannot read {what}: {exc.detail}", key=what) from None


@dataclass(slots=True)
class TrustStore:
    """Anchors, an intermediates pool (like GCP's intermediateCas) and allowlisted certificates.

    Lookups are by subject key and by key identifier. Each change starts a new
    ``epoch``, which caches key on. Bad certificates raise :class:`ConfigError`.
    """

    _anchors: list[Anchor] = field(default_factory=list)
    _by_subject: dict[NameKey, list[Anchor]] = field(default_factory=dict)
    _by_ski: dict[bytes, list[Anchor]] = field(default_factory=dict)
    _anchor_keys: set[bytes] = field(default_factory=set)
    _anchor_spkis: set[bytes] = field(default_factory=set)
    _pool: dict[bytes, Certificate] = field(default_factory=dict)
    _pool_by_subject: dict[NameKey, list[Certificate]] = field(default_factory=dict)
    _allowlisted: dict[bytes, Certificate] = field(default_factory=dict)
    epoch: int = field(default_factory=lambda: next(_epochs))

    def __init__(
        self,
        anchors: Iterable[Anchor | ChainInput] = (),
        intermediates: Iterable[ChainInput] = (),
        allowlisted: Iterable[ChainInput] = (),
    ) -> None:
        self._anchors = []
        self._by_subject = {}
        self._by_ski = {}
        self._anchor_keys = set()
        self._anchor_spkis = set()
        self._pool = {}
        self._pool_by_subject = {}
        self._allowlisted = {}
        self.epoch = next(_epochs)
        for a in anchors:
            if isinstance(a, Anchor):
                self._add_anchor(a)
            else:
                for cert in _to_certs(a, "anchors"):
                    self._add_anchor(Anchor(cert))
        for i in intermediates:
            self.add_intermediates(i)
        for c in allowlisted:
            self.add_allowlisted(c)

    # -- building ---------------------------------------------------------

    def _add_anchor(self, anchor: Anchor) -> None:
        if anchor.not_before and anchor.not_after and anchor.not_before >= anchor.not_after:
            raise ConfigError(f"anchor {anchor.name}: not_before is not before not_after", key="anchors")
        self._anchors.append(anchor)
        self._by_subject.setdefault(anchor.subject_key, []).append(anchor)
        self._anchor_keys.add(anchor.spki_sha256)
        self._anchor_spkis.add(anchor.certificate.spki_der)
        if anchor.certificate.ski:
            self._by_ski.setdefault(anchor.certificate.ski, []).append(anchor)
        self.epoch = next(_epochs)

    def add_anchor(
        self,
        certificate: ChainInput,
        *,
        label: str = "",
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> list[Anchor]:
        """Trust every certificate in ``certificate`` (PEM/DER/parsed) as an anchor."""
        added = []
        for cert in _to_certs(certificate, "anchors"):
            anchor = Anchor(cert, label=label, not_before=not_before, not_after=not_after)
            self._add_anchor(anchor)
            added.append(anchor)
        return added

    def add_intermediates(self, certificates: ChainInput) -> None:
        """Add certificates to the intermediates pool (used to complete presented chains)."""
        for cert in _to_certs(certificates, "intermediates"):
            if cert.sha256 not in self._pool:
                self._pool[cert.sha256] = cert
                self._pool_by_subject.setdefault(cert.subject_key, []).append(cert)
        self.epoch = next(_epochs)

    def restricted(self, anchor: Anchor) -> TrustStore:
        """A store with ``anchor`` as its only anchor and this store's intermediates pool (shared, not copied).

        For paths that must end at one given anchor, as a CRL signer's path must
        end at the certificate's (RFC 5280 §6.3.3 (f)).
        """
        view = TrustStore([anchor])
        view._pool = self._pool
        view._pool_by_subject = self._pool_by_subject
        return view

    def add_allowlisted(self, certificates: ChainInput) -> None:
        """Accept these exact certificates (the self-signed method), by DER match."""
        for cert in _to_certs(certificates, "allowlisted"):
            self._allowlisted[cert.sha256] = cert
        self.epoch = next(_epochs)

    # -- lookups ----------------------------------------------------------

    @property
    def anchors(self) -> tuple[Anchor, ...]:
        return tuple(self._anchors)

    @property
    def intermediates(self) -> tuple[Certificate, ...]:
        return tuple(self._pool.values())

    @property
    def allowlisted(self) -> tuple[Certificate, ...]:
        return tuple(self._allowlisted.values())

    @property
    def only_allowlisted(self) -> bool:
        """True when the store trusts nothing but exact certificates."""
        return bool(self._allowlisted) and not self._anchors

    def anchors_for(self, issuer_key: NameKey) -> list[Anchor]:
        return self._by_subject.get(issuer_key, [])

    def anchors_by_key_id(self, key_id: bytes) -> list[Anchor]:
        return self._by_ski.get(key_id, [])

    def pool_for(self, issuer_key: NameKey) -> list[Certificate]:
        return self._pool_by_subject.get(issuer_key, [])

    def allowlisted_match(self, cert: Certificate) -> Certificate | None:
        allowlisted = self._allowlisted
        # Without an allowlist, no digest of the certificate is asked for (it is made on first read).
        return allowlisted.get(cert.sha256) if allowlisted else None

    def has_anchor_key(self, spki_sha256: bytes) -> bool:
        """Whether some anchor has this public key (by SHA-256 of its SPKI)."""
        return spki_sha256 in self._anchor_keys

    def has_anchor_spki(self, spki_der: bytes) -> bool:
        """Whether some anchor has this public key (by its SPKI DER: no digest to compute)."""
        return spki_der in self._anchor_spkis

    def find_anchor(self, cert: Certificate) -> Anchor | None:
        """The anchor made from exactly this name and key, if any."""
        # The key first: a client certificate's own subject would otherwise need its
        # name key built (RFC 5280 §7.1) only to find nothing. Compared as SPKI DER
        # (what the SHA-256 digests stand for), so no digest of the client's key is made.
        spki = cert.spki_der
        if spki not in self._anchor_spkis:
            return None
        for anchor in self._by_subject.get(cert.subject_key, ()):
            if anchor.certificate.spki_der == spki:
                return anchor
        return None

    def __iter__(self) -> Iterator[Anchor]:
        return iter(self._anchors)

    def __len__(self) -> int:
        return len(self._anchors)
