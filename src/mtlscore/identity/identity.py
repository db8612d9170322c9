"""The identity a leaf certificate asserts, and the anchor that vouched for it.

An :class:`Identity` is plain, hashable and JSON-friendly data (strings, ints
and tuples only), so it can be logged, compared, forwarded in headers and
printed by the CLI. Matching rules (:mod:`mtlscore.identity.identity_map`) read it; they
never go back to the certificate.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

from cryptography import x509

from ..types import JSONObject
from ..verify.trust import Anchor
from ..x509.cert import Certificate
from ..x509.dn import attribute_name, dn_key_text, format_dn
from ..x509.spiffe import svid_spiffe_id

__all__ = ["AnchorRef", "Identity"]

# (attribute short name, value) pairs of one RDN; several for a multi-valued RDN.
RDN = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AnchorRef:
    """Which trust anchor vouched for an identity: its label, subject and key.

    Rules are scoped by (``subject_key``, ``spki_sha256``): the anchor's
    normalised name and its public key, never by the label alone.
    ``str(ref)`` is the label (or the subject when there is none).
    """

    name: str
    subject_dn: str
    spki_sha256: str  # hex SHA-256 of the anchor's SubjectPublicKeyInfo
    subject_key: str = field(repr=False, default="")  # canonical normalised DN (dn_key_text)

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_anchor(cls, anchor: Anchor | Certificate | AnchorRef) -> AnchorRef:
        """A reference to a configured :class:`Anchor` (or a CA certificate used as one)."""
        if isinstance(anchor, AnchorRef):
            return anchor
        return _anchor_ref(anchor)

    @classmethod
    def _build(cls, anchor: Anchor | Certificate) -> AnchorRef:
        cert = anchor.certificate if isinstance(anchor, Anchor) else anchor
        name = anchor.name if isinstance(anchor, Anchor) else cert.describe()
        return cls(
            name=name,
            subject_dn=format_dn(cert.subject),
            spki_sha256=cert.spki_sha256.hex(),
            subject_key=dn_key_text(cert.subject_key),
        )

    @property
    def scope_key(self) -> tuple[str, str]:
        """What a rule's anchor scope compares: (normalised subject, SPKI SHA-256)."""
        return (self.subject_key, self.spki_sha256)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "subject_dn": self.subject_dn, "spki_sha256": self.spki_sha256}


@functools.lru_cache(maxsize=1024)
def _anchor_ref(anchor: Anchor | Certificate) -> AnchorRef:
    # Anchors are few and long-lived; every accepted leaf refers to one.
    return AnchorRef._build(anchor)


def _rdns(name: x509.Name) -> tuple[RDN, ...]:
    out = []
    for rdn in reversed(name.rdns):  # RFC 4514 order: most specific first, as printed
        pairs = []
        for attr in rdn:
            value = attr.value
            text = "#" + value.hex() if isinstance(value, bytes) else value
            pairs.append((attribute_name(attr.oid), text))
        out.append(tuple(pairs))
    return tuple(out)


def _sans(cert: Certificate) -> dict[str, tuple[str, ...]]:
    by: dict[str, list[str]] = {"dns": [], "uri": [], "email": [], "ip": [], "dirname": []}
    for gn in cert.san or ():
        if isinstance(gn, x509.DNSName):
            by["dns"].append(gn.value)
        elif isinstance(gn, x509.UniformResourceIdentifier):
            by["uri"].append(gn.value)
        elif isinstance(gn, x509.RFC822Name):
            by["email"].append(gn.value)
        elif isinstance(gn, x509.IPAddress):
            by["ip"].append(str(gn.value))
        elif isinstance(gn, x509.DirectoryName):
            by["dirname"].append(format_dn(gn.value))
    return {k: tuple(v) for k, v in by.items()}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a leaf certificate says it is, and which anchor vouched for it.

    ``subject`` holds the subject's RDNs in RFC 4514 order (most specific
    first), each a tuple of (attribute, value) pairs so multi-valued RDNs are
    kept. ``spiffe_id`` is set only for a valid X.509-SVID; otherwise
    ``spiffe_problem`` says why a ``spiffe:`` URI was not taken.
    """

    subject_dn: str
    issuer_dn: str
    serial: int
    x5t_s256: str
    sha256_hex: str
    spki_sha256: str  # RFC 7469 pin: base64 SHA-256 of the SubjectPublicKeyInfo
    anchor: AnchorRef | None = None
    subject: tuple[RDN, ...] = ()
    san_dns: tuple[str, ...] = ()
    san_uri: tuple[str, ...] = ()
    san_email: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    san_dirname: tuple[str, ...] = ()
    spiffe_id: str | None = None
    spiffe_problem: str | None = None
    spki_sha256_hex: str = ""
    subject_key: str = field(default="", repr=False)  # dn_key_text of the subject
    issuer_key: str = field(default="", repr=False)

    @classmethod
    def from_certificate(
        cls, cert: Certificate, anchor: Anchor | AnchorRef | Certificate | None = None
    ) -> Identity:
        """The identity of ``cert``, vouched for by ``anchor`` (None: not (yet) known)."""
        sans = _sans(cert)
        spiffe_id, spiffe_problem = svid_spiffe_id(cert)
        subject = cert.subject  # decoded on each read: read once
        return cls(
            subject_dn=format_dn(subject),
            issuer_dn=format_dn(cert.issuer),
            serial=cert.serial,
            x5t_s256=cert.x5t_s256,
            sha256_hex=cert.fingerprint_hex,
            spki_sha256=cert.spki_pin,
            anchor=AnchorRef.from_anchor(anchor) if anchor is not None else None,
            subject=_rdns(subject),
            san_dns=sans["dns"],
            san_uri=sans["uri"],
            san_email=sans["email"],
            san_ip=sans["ip"],
            san_dirname=sans["dirname"],
            spiffe_id=spiffe_id,
            spiffe_problem=spiffe_problem,
            spki_sha256_hex=cert.spki_sha256.hex(),
            subject_key=dn_key_text(cert.subject_key),
            issuer_key=dn_key_text(cert.issuer_key),
        )

    def values(self, attribute: str) -> tuple[str, ...]:
        """Every value of a subject attribute (``"CN"``, ``"OU"``, …), most specific first."""
        want = attribute.upper()
        return tuple(v for rdn in self.subject for name, v in rdn if name.upper() == want)

    @property
    def common_name(self) -> str | None:
        """The most specific CN, or None."""
        cns = self.values("CN")
        return cns[0] if cns else None

    @property
    def serial_hex(self) -> str:
        """The serial number as lower-case hex, the one format every output uses."""
        return format(self.serial, "x")

    def with_anchor(self, anchor: Anchor | AnchorRef | Certificate | None) -> Identity:
        """The same identity, vouched for by another anchor (or none)."""
        return replace(self, anchor=AnchorRef.from_anchor(anchor) if anchor is not None else None)

    def san_by_kind(self) -> dict[str, list[str]]:
        """The subject alternative names by kind (``dns``, ``uri``, ``email``, ``ip``, ``dirname``)."""
        return {"dns": list(self.san_dns), "uri": list(self.san_uri), "email": list(self.san_email),
                "ip": list(self.san_ip), "dirname": list(self.san_dirname)}

    def to_dict(self) -> JSONObject:
        """A JSON-ready dict (field names as in docs/reference.md#command-line: ``x5t#S256`` spelled out)."""
        attrs: dict[str, list[str]] = {}
        for rdn in self.subject:
            for name, value in rdn:
                attrs.setdefault(name, []).append(value)
        return {
            "subject_dn": self.subject_dn,
            "subject": attrs,
            "subject_rdns": [[list(p) for p in rdn] for rdn in self.subject],
            "issuer_dn": self.issuer_dn,
            "serial": self.serial_hex,
            "san": self.san_by_kind(),
            "spiffe_id": self.spiffe_id,
            **({"spiffe_problem": self.spiffe_problem} if self.spiffe_problem else {}),
            "x5t#S256": self.x5t_s256,
            "sha256": self.sha256_hex,
            "spki_sha256": self.spki_sha256,
            "anchor": self.anchor.to_dict() if self.anchor else None,
        }
