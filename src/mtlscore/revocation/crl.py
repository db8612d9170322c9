"""CRLs (RFC 5280 §5, §6.3): parse, scope, and decide the status of one certificate.

:func:`check_certificate` is the §6.3.3 algorithm over every CRL at hand:

- A complete CRL is *in scope* for a distribution point (DP) of the
  certificate when its issuer is the certificate's issuer — or, for a DP that
  names a cRLIssuer, that issuer with the CRL marked indirect — and its
  issuingDistributionPoint (IDP), when it names a distribution point, names
  one the DP names (§6.3.3 (b)). A certificate without a cRLDistributionPoints
  extension has one implicit DP, named by its issuer's DN and with no reasons
  field (§6.3.3, last paragraph), so a CRL scoped to a named distribution
  point does not cover it.
- An in-scope CRL is *usable* when it is current, has no critical extension we
  do not process, and is signed by a key whose certification path is valid to
  the certificate's own trust anchor (§6.3.3 (f), (g): the certificate's
  issuer on the path, or a signer found by a :class:`SignerResolver`).
- Each usable CRL covers the reasons its IDP's onlySomeReasons and the DP's
  reasons field leave (§6.3.3 (d)); the certificate is *good* only when the
  covered reasons add up to all reasons (§6.3.3 (i)-(j)), and *revoked* as soon
  as any usable CRL in scope lists it — never "the first clean CRL wins".
- A delta CRL (§5.2.4) is applied over a usable complete CRL when it has the
  same issuer, the same IDP and the same signing key, a BaseCRLNumber at most
  the complete CRL's number and a higher CRLNumber (§6.3.3 (c), (h)).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from ..x509.cert import Certificate
from ..x509.lru import BoundedLRU
from ..x509.names import NameKey, name_key

__all__ = [
    "ALL_REASONS",
    "CRLStatus",
    "DistributionPoint",
    "ParsedCRL",
    "SignerResolver",
    "check_certificate",
    "distribution_points",
    "freshest_urls",
    "parse_crl",
]

_CRL_NUMBER = ExtensionOID.CRL_NUMBER.dotted_string
_DELTA = ExtensionOID.DELTA_CRL_INDICATOR.dotted_string
_IDP = ExtensionOID.ISSUING_DISTRIBUTION_POINT.dotted_string
_AKI = ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string
_FRESHEST = ExtensionOID.FRESHEST_CRL.dotted_string
# Extensions whose meaning CRL processing implements; RFC 5280 §5.2: a CRL with
# another critical extension cannot be used.
_HANDLED_CRL_EXTS = frozenset({_CRL_NUMBER, _AKI, _IDP, _DELTA, _FRESHEST,
                               ExtensionOID.ISSUER_ALTERNATIVE_NAME.dotted_string})
_CERT_ISSUER = CRLEntryExtensionOID.CERTIFICATE_ISSUER.dotted_string
_HANDLED_ENTRY_EXTS = frozenset(
    {
        CRLEntryExtensionOID.CRL_REASON.dotted_string,
        CRLEntryExtensionOID.INVALIDITY_DATE.dotted_string,
        _CERT_ISSUER,
    }
)

# RFC 5280 §4.2.1.13 ReasonFlags bits 1-8 (bit 0 "unused" and removeFromCRL are no reasons to cover).
ALL_REASONS: frozenset[str] = frozenset(
    r.value for r in x509.ReasonFlags if r not in (x509.ReasonFlags.unspecified, x509.ReasonFlags.remove_from_crl)
)

# A GeneralName in comparable form: ("dn", NameKey) for a directoryName (RFC 5280 §7.1
# rules), else (type name, value) compared exactly, as OpenSSL's GENERAL_NAME_cmp does.
GNKey = tuple[str, Hashable]
_SIGNING_KEYS = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | dsa.DSAPublicKey
)


def _gn_key(name: x509.GeneralName) -> GNKey:
    if isinstance(name, x509.DirectoryName):
        return ("dn", name_key(name.value))
    if isinstance(name, x509.OtherName):
        return ("other", (name.type_id.dotted_string, name.value))
    return (type(name).__name__, name.value)


def _dn_with(base: x509.Name, rdn: x509.RelativeDistinguishedName) -> GNKey:
    # RFC 5280 §4.2.1.13, §5.2.5: a nameRelativeToCRLIssuer is appended to the issuer's DN.
    return ("dn", name_key(x509.Name([*base.rdns, rdn])))


@dataclass(frozen=True, slots=True, eq=False)
class ParsedCRL:
    """A parsed CRL with the facts checking needs."""

    crl: x509.CertificateRevocationList
    der: bytes
    issuer_key: NameKey
    issuer_text: str
    this_update: datetime
    next_update: datetime | None
    problem: str | None  # why it cannot be used at all, whatever the issuer
    number: int | None = None
    # RFC 5280 §5.2.4: set on a delta CRL, the CRLNumber of the base it builds on.
    delta_base: int | None = None
    idp: x509.IssuingDistributionPoint | None = None
    aki: bytes | None = None
    # http(s) locations of the CRL's FreshestCRL extension (§5.2.6): where its deltas are.
    freshest: tuple[str, ...] = ()
    # Computed once on first use: verified signer keys, the indirect-CRL entry index.
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def is_delta(self) -> bool:
        return self.delta_base is not None

    @property
    def indirect(self) -> bool:
        return self.idp is not None and self.idp.indirect_crl

    def verifies_with(self, signer: Certificate) -> bool:
        """Whether ``signer``'s key verifies this CRL's signature (remembered per key)."""
        key = ("sig", signer.spki_sha256)
        found = self._memo.get(key)
        if found is None:
            try:
                issuer_key = signer.public_key
                # An issuer's key signs (X25519/X448 keys only agree): the kinds a CRL can be signed with.
                found = isinstance(issuer_key, _SIGNING_KEYS) and bool(
                    self.crl.is_signature_valid(issuer_key))
            except Exception:  # noqa: BLE001 - unsupported algorithm or key: it does not verify
                found = False
            if len(self._memo) < 64:
                self._memo[key] = found
        return bool(found)

    def idp_names(self) -> frozenset[GNKey]:
        """The IDP's distribution point names; a relative name is resolved against the CRL issuer (§5.2.5)."""
        found = self._memo.get("idp_names")
        if found is None:
            idp = self.idp
            names: set[GNKey] = set()
            if idp is not None and idp.full_name:
                names.update(_gn_key(g) for g in idp.full_name)
            elif idp is not None and idp.relative_name is not None:
                names.add(_dn_with(self.crl.issuer, idp.relative_name))
            found = self._memo["idp_names"] = frozenset(names)
        return found

    def entries_problem(self) -> str | None:
        """Why the entries make the CRL unusable (RFC 5280 §5.3: an unprocessed critical entry
        extension on *any* entry), scanned once; None when they do not."""
        return self._scan()[0]

    def entry(self, cert: Certificate) -> x509.RevokedCertificate | None:
        """The entry listing ``cert``, or None when it is not listed.

        A direct CRL is looked up by serial. In an indirect CRL (§5.3.3) each
        entry belongs to the issuer its certificateIssuer names, or the
        previous entry's, or the CRL issuer for the first entries. Both are
        indexed in one pass over the entries, on first use (cryptography scans
        the entries for a serial): a certificate not listed costs one lookup.
        """
        _, serials, index = self._scan()
        if index is not None:
            return index.get((cert.issuer_key, cert.serial))
        if serials is not None and cert.serial not in serials:
            return None
        return self.crl.get_revoked_certificate_by_serial_number(cert.serial)

    def _scan(self) -> _Scan:
        found = self._memo.get("scan")
        if found is None:
            found = self._memo["scan"] = _scan(self)
        return found


# (why the entries make the CRL unusable, a direct CRL's serials, an indirect CRL's index)
_Scan = tuple[str | None, frozenset[int] | None, dict[tuple[NameKey, int], x509.RevokedCertificate] | None]


def _scan(crl: ParsedCRL) -> _Scan:
    index: dict[tuple[NameKey, int], x509.RevokedCertificate] = {}
    serials: set[int] = set()
    current: NameKey | None = crl.issuer_key
    indirect = crl.indirect
    try:
        for entry in crl.crl:
            for ext in entry.extensions:
                oid = ext.oid.dotted_string
                if ext.critical and oid not in _HANDLED_ENTRY_EXTS:
                    return (f"an entry has the critical extension {oid}, which mtlscore does not process "
                            "(RFC 5280 §5.3: such a CRL is not used for any certificate)", None, None)
                if indirect and isinstance(ext.value, x509.CertificateIssuer):
                    dns = [g.value for g in ext.value if isinstance(g, x509.DirectoryName)]
                    # An issuer named only by other name forms matches no certificate's issuer DN.
                    current = name_key(dns[0]) if dns else None
            if not indirect:
                serials.add(entry.serial_number)
            elif current is not None:
                index.setdefault((current, entry.serial_number), entry)
    except Exception as exc:  # noqa: BLE001 - undecodable entries: the CRL cannot be read
        return f"its entries could not be decoded ({exc})", None, None
    return None, (None if indirect else frozenset(serials)), (index if indirect else None)


def parse_crl(data: bytes | str) -> ParsedCRL:
    """Parse one CRL (DER or PEM). Raises ValueError when it is not a CRL."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(raw)
            der = crl.public_bytes(Encoding.DER)
        else:
            crl = x509.load_der_x509_crl(raw)
            der = raw
        exts = crl.extensions
        issuer = crl.issuer
        this_update = crl.last_update_utc
        next_update = crl.next_update_utc
        signature = crl.signature
    except Exception as exc:  # noqa: BLE001 - any parse failure
        raise ValueError(f"CRL could not be parsed: {exc}") from None
    # RFC 5280 §5.1.1.3: the signature is a whole number of octets. The BIT STRING's
    # first content octet counts the unused bits; cryptography drops it, so a
    # signature with unused bits would verify as if they were not there (as _cert
    # refuses for certificates).
    if len(signature) >= len(der) or der[-len(signature) - 1] != 0:
        raise ValueError("CRL refused: its signature BIT STRING declares unused bits (RFC 5280 §5.1.1.3)")
    problem = None
    number: int | None = None
    delta_base: int | None = None
    idp: x509.IssuingDistributionPoint | None = None
    oids = {e.oid.dotted_string: e for e in exts}
    crl_number = oids.get(_CRL_NUMBER)
    if crl_number is not None and isinstance(crl_number.value, x509.CRLNumber):
        number = crl_number.value.crl_number
    delta = oids.get(_DELTA)
    if delta is not None and isinstance(delta.value, x509.DeltaCRLIndicator):
        delta_base = delta.value.crl_number
    found_idp = oids.get(_IDP)
    if found_idp is not None and isinstance(found_idp.value, x509.IssuingDistributionPoint):
        idp = found_idp.value
    found_aki = oids.get(_AKI)
    aki = found_aki.value.key_identifier if found_aki is not None and isinstance(
        found_aki.value, x509.AuthorityKeyIdentifier) else None
    found_fresh = oids.get(_FRESHEST)
    freshest = tuple(_dp_urls(found_fresh.value)) if found_fresh is not None else ()
    if crl_number is None:
        problem = "it has no CRLNumber (RFC 5280 §5.2.3 requires one)"
    elif crl_number.critical:
        problem = "its CRLNumber is marked critical (RFC 5280 §5.2.3 forbids it)"
    elif delta is not None and not delta.critical:
        problem = "its DeltaCRLIndicator is not critical (RFC 5280 §5.2.4 requires it)"
    else:
        unknown = [o for o, e in oids.items() if e.critical and o not in _HANDLED_CRL_EXTS]
        if unknown:
            problem = f"it has unsupported critical extension(s) {', '.join(unknown)}"
    return ParsedCRL(
        crl=crl,
        der=der,
        issuer_key=name_key(issuer),
        issuer_text=issuer.rfc4514_string(),
        this_update=this_update,
        next_update=next_update,
        problem=problem,
        number=number,
        delta_base=delta_base,
        idp=idp,
        aki=aki,
        freshest=freshest,
    )


# -- the certificate's distribution points ---------------------------------------------


@dataclass(frozen=True, slots=True)
class DistributionPoint:
    """One of a certificate's CRL distribution points (RFC 5280 §4.2.1.13) in matchable form."""

    names: frozenset[GNKey] | None  # the distributionPoint names; None when the field is absent
    reasons: frozenset[str] | None  # None: all reasons
    crl_issuer: frozenset[GNKey] | None  # cRLIssuer; None when absent
    urls: tuple[str, ...] = ()
    implicit: bool = False  # the DP §6.3.3 assumes for CRLs no DP names: the issuer's DN

    def issuer_dns(self) -> frozenset[NameKey]:
        # _gn_key keys a directoryName ("dn", NameKey).
        return frozenset(cast(NameKey, v) for k, v in self.crl_issuer or () if k == "dn")


def _dp_urls(dps: Iterable[x509.DistributionPoint]) -> list[str]:
    return [g.value for dp in dps for g in dp.full_name or () if isinstance(g, x509.UniformResourceIdentifier)]


def _dp(dp: x509.DistributionPoint, cert: Certificate) -> DistributionPoint:
    crl_issuer = frozenset(_gn_key(g) for g in dp.crl_issuer) if dp.crl_issuer else None
    names: frozenset[GNKey] | None = None
    if dp.full_name:
        names = frozenset(_gn_key(g) for g in dp.full_name)
    elif dp.relative_name is not None:
        # §4.2.1.13: appended to the cRLIssuer's DN when present, else to the certificate issuer's.
        bases = [g.value for g in dp.crl_issuer or () if isinstance(g, x509.DirectoryName)] or [cert.issuer]
        names = frozenset(_dn_with(b, dp.relative_name) for b in bases)
    reasons = frozenset(r.value for r in dp.reasons) & ALL_REASONS if dp.reasons else None
    return DistributionPoint(names, reasons, crl_issuer, tuple(_dp_urls([dp])))


_DPS: BoundedLRU[bytes, tuple[tuple[DistributionPoint, ...], tuple[str, ...]]] = BoundedLRU(4096)
_IAN = ExtensionOID.ISSUER_ALTERNATIVE_NAME.dotted_string


def _cert_dps(cert: Certificate) -> tuple[tuple[DistributionPoint, ...], tuple[str, ...]]:
    found = _DPS.peek(cert.sha256)
    if found is not None:
        return found
    dps: list[DistributionPoint] = []
    fresh: list[str] = []
    if cert.crl_urls or ExtensionOID.CRL_DISTRIBUTION_POINTS.dotted_string in cert.extension_oids:
        ext = cert.x509.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        dps = [_dp(dp, cert) for dp in ext]
    if _FRESHEST in cert.extension_oids:
        fresh = _dp_urls(cert.x509.extensions.get_extension_for_class(x509.FreshestCRL).value)
    # §6.3.3: CRLs no DP names are processed under a DP named by the certificate issuer
    # field and its issuerAltName extension, with no reasons and no cRLIssuer.
    names: set[GNKey] = {("dn", cert.issuer_key)}
    if _IAN in cert.extension_oids:
        names.update(_gn_key(g) for g in cert.x509.extensions.get_extension_for_class(x509.IssuerAlternativeName).value)
    dps.append(DistributionPoint(frozenset(names), None, None, implicit=True))
    found = (tuple(dps), tuple(fresh))
    _DPS.store(cert.sha256, found)
    return found


def distribution_points(cert: Certificate) -> tuple[DistributionPoint, ...]:
    """The certificate's DPs, then the implicit one §6.3.3 assumes (issuer DN and issuerAltName, all reasons)."""
    return _cert_dps(cert)[0]


def freshest_urls(cert: Certificate) -> tuple[str, ...]:
    """The URIs of the certificate's FreshestCRL extension (§4.2.1.15): where delta CRLs are."""
    return _cert_dps(cert)[1]


# -- deciding --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CRLStatus:
    """The revocation status of one certificate from the CRLs at hand.

    ``partial``: usable CRLs were found but their reasons do not add up to all
    reasons; ``unavailable``: a CRL in scope could not be used; ``uncovered``:
    no CRL is in scope. ``exhausted``: the CRL-signer search hit the work budget.
    """

    status: Literal["good", "revoked", "unavailable", "partial", "uncovered"]
    detail: str = ""
    next_update: datetime | None = None
    notes: tuple[str, ...] = ()
    used: tuple[ParsedCRL, ...] = ()
    exhausted: bool = False


class SignerResolver(Protocol):
    """Finds the validated certificate whose key signed ``crl`` (RFC 5280 §6.3.3 (f)).

    Returns the signer (its path to the certificate's trust anchor valid, its
    keyUsage allowing cRLSign, its own revocation checked, its key verifying
    the CRL), or why none could be found.
    """

    def __call__(self, crl: ParsedCRL) -> Certificate | str: ...

    @property
    def exhausted(self) -> bool: ...

    @property
    def notes(self) -> list[str]: ...


def _scope(crl: ParsedCRL, cert: Certificate, dps: Sequence[DistributionPoint]) -> frozenset[str] | str:
    """§6.3.3 (b), (d): the reasons ``crl`` covers for ``cert`` over the DPs it is in scope of; or why none."""
    idp = crl.idp
    if idp is not None:
        # §6.3.3 (b)(2)(ii)-(iv).
        if idp.only_contains_user_certs and cert.is_ca:
            return "it only covers end-entity certificates"
        if idp.only_contains_ca_certs and not cert.is_ca:
            return "it only covers CA certificates"
        if idp.only_contains_attribute_certs:
            return "it only covers attribute certificates"
    named = idp is not None and (bool(idp.full_name) or idp.relative_name is not None)
    idp_reasons = ALL_REASONS
    if idp is not None and idp.only_some_reasons:
        idp_reasons = frozenset(r.value for r in idp.only_some_reasons) & ALL_REASONS
    covered: set[str] = set()
    matched = False
    why = "it is issued by another name than the certificate's issuer"
    for dp in dps:
        # §6.3.3 (b)(1): a DP naming a cRLIssuer takes only that issuer's indirect CRLs;
        # otherwise the CRL issuer is the certificate issuer.
        if dp.crl_issuer is not None:
            if crl.issuer_key not in dp.issuer_dns():
                why = "its issuer is not the cRLIssuer the certificate's distribution point names"
                continue
            if not crl.indirect:
                why = "it is issued by the distribution point's cRLIssuer but not marked indirect (RFC 5280 §5.2.5)"
                continue
        elif crl.issuer_key != cert.issuer_key:
            continue
        # §6.3.3 (b)(2)(i): an IDP name must match the DP's name, or its cRLIssuer when it has no name.
        if named:
            dp_names = dp.names if dp.names is not None else dp.crl_issuer or frozenset()
            if not crl.idp_names() & dp_names:
                why = ("its distribution point is not one the certificate names" if not dp.implicit or len(dps) > 1
                       else "it is scoped to a distribution point and the certificate names none")
                continue
        matched = True
        # §6.3.3 (d): interim_reasons_mask = onlySomeReasons ∩ the DP's reasons.
        covered |= idp_reasons & (dp.reasons if dp.reasons is not None else ALL_REASONS)
    return frozenset(covered) if matched else why


def _current(crl: ParsedCRL, at: datetime, skew: timedelta, max_age: timedelta | None) -> str | None:
    """§6.3.3 (a): why ``crl`` is not current at ``at``; None when it is."""
    if crl.this_update > at + skew:
        return f"it is not valid until {crl.this_update.isoformat()}"
    if crl.next_update is not None and crl.next_update < at - skew:
        return f"it is stale: its nextUpdate was {crl.next_update.isoformat()}"
    if crl.next_update is None and max_age is not None and crl.this_update + max_age < at:
        return f"it has no nextUpdate and is older than {max_age}"
    return None


def _direct_signer(crl: ParsedCRL, issuer: Certificate) -> Certificate | str | None:
    """The certificate's issuer on the validated path as the CRL signer; None when its key did not sign."""
    if crl.issuer_key != issuer.subject_key or not crl.verifies_with(issuer):
        return None
    if issuer.key_usage is not None and not issuer.key_usage.crl_sign:
        return f"its issuer {issuer.describe()!r} lacks keyUsage cRLSign (RFC 5280 §4.2.1.3)"
    return issuer


def _lookup(crl: ParsedCRL, cert: Certificate, at: datetime, skew: timedelta) -> CRLStatus | str | None:
    """The entry for ``cert`` in ``crl``: None (not listed), a status, or a problem string."""
    entry = crl.entry(cert)
    if entry is None:
        return None
    try:
        entry_exts = list(entry.extensions)
        when = entry.revocation_date_utc
    except Exception:  # noqa: BLE001 - undecodable entry extensions
        return "the entry for this serial could not be decoded"
    if any(e.critical and e.oid.dotted_string not in _HANDLED_ENTRY_EXTS for e in entry_exts):
        return "the entry has an unsupported critical extension"
    reason = next(
        (e.value.reason.value for e in entry_exts if isinstance(e.value, x509.CRLReason)),
        "unspecified",
    )
    # §5.3.1, §6.3.3 (k): removeFromCRL (in a delta) takes a certificate off hold.
    if reason == "removeFromCRL" or when > at + skew:
        return CRLStatus("good", next_update=crl.next_update)
    kind = "delta CRL" if crl.is_delta else "CRL"
    return CRLStatus(
        "revoked",
        f"{cert.describe()!r} (serial {cert.serial:x}) was revoked on {when.isoformat()} "
        f"by {crl.issuer_text!r} ({kind} #{crl.number}), reason {reason}",
        next_update=crl.next_update,
    )


def _delta_for(
    crl: ParsedCRL, signer: Certificate, deltas: list[ParsedCRL], at: datetime, skew: timedelta,
    max_age: timedelta | None, problems: list[str],
) -> ParsedCRL | None:
    """§6.3.3 (c), (h): the newest usable delta that applies over the complete ``crl``."""
    n = crl.number if crl.number is not None else -1
    best: ParsedCRL | None = None
    for d in deltas:
        if d.issuer_key != crl.issuer_key or d.delta_base is None or d.delta_base > n or (d.number or -1) <= n:
            continue
        # §6.3.3 (c): the same scope as the complete CRL, from the same CRL issuer and key.
        if d.idp != crl.idp:
            problems.append(f"delta CRL #{d.number} from {d.issuer_text!r}: its issuingDistributionPoint "
                            f"differs from that of CRL #{crl.number} (RFC 5280 §6.3.3 (c))")
            continue
        if d.aki is not None and crl.aki is not None and d.aki != crl.aki:
            problems.append(f"delta CRL #{d.number} from {d.issuer_text!r}: "
                            f"another authority key than CRL #{crl.number}")
            continue
        why = d.problem or _current(d, at, skew, max_age) or d.entries_problem()
        if why is None and not d.verifies_with(signer):
            why = f"its signature does not verify with the key of {signer.describe()!r}, which signed its base CRL"
        if why is not None:
            problems.append(f"delta CRL #{d.number} from {d.issuer_text!r}: {why}")
            continue
        if best is None or (d.number or -1) > (best.number or -1):
            best = d
    return best


def check_certificate(
    cert: Certificate,
    issuer: Certificate,
    crls: Sequence[ParsedCRL],
    *,
    at: datetime,
    skew: timedelta = timedelta(0),
    max_age: timedelta | None = None,
    url: str | None = None,
    fetched: Sequence[tuple[ParsedCRL, str]] = (),
    signers: SignerResolver | None = None,
) -> CRLStatus:
    """The status of ``cert`` (issued by ``issuer`` on a validated path) from every CRL at hand.

    ``fetched``: CRLs with the URL each was fetched from; such a CRL stands for
    the certificate's distribution point that names the URL (``url`` applies to
    all of ``crls``). ``signers`` finds CRL signers other than ``issuer``
    (§6.3.3 (f)); without it only ``issuer``'s key is tried. Never raises on odd
    CRL content.
    """
    all_dps = distribution_points(cert)
    items = [(c, url) for c in crls] + list(fetched)
    deltas = [c for c, _ in items if c.is_delta]
    problems: list[str] = []
    out_of_scope: list[str] = []
    covered: set[str] = set()
    used: list[ParsedCRL] = []
    notes: list[str] = []
    nxt: datetime | None = None
    seen: set[int] = set()
    for crl, src in items:
        if crl.is_delta or id(crl) in seen:
            continue
        seen.add(id(crl))
        dps: Sequence[DistributionPoint] = all_dps
        if src is not None:
            # The URL a CRL was fetched from stands for the DP that names it.
            dps = [dp for dp in all_dps if src in dp.urls] or all_dps
        scope = _scope(crl, cert, dps)
        if isinstance(scope, str):
            out_of_scope.append(f"CRL from {crl.issuer_text!r}: {scope}")
            continue
        why = crl.problem or crl.entries_problem()
        stale = None
        if why is None and (why := _current(crl, at, skew, max_age)) is not None and crl.next_update is not None \
                and crl.next_update < at - skew and (crl.freshest or freshest_urls(cert)):
            # §6.3.3 (a)(1)(i): past its nextUpdate, a complete CRL announcing deltas (FreshestCRL
            # on it or the certificate) is still used together with a current delta over it.
            stale, why = why, None
        if why is not None:
            problems.append(f"CRL from {crl.issuer_text!r}: {why}")
            continue
        # §6.3.3 (f)-(g): a key validated to the same trust anchor signed it.
        signer = _direct_signer(crl, issuer) if crl.issuer_key == cert.issuer_key else None
        if signer is None:
            if signers is None:
                signer = f"its signature does not verify with {issuer.describe()!r}'s key"
            else:
                signer = signers(crl)
        if isinstance(signer, str):
            problems.append(f"CRL from {crl.issuer_text!r}: {signer}")
            continue
        delta = _delta_for(crl, signer, deltas, at, skew, max_age, problems)
        if stale is not None and delta is None:
            problems.append(f"CRL from {crl.issuer_text!r}: {stale}, and no current delta CRL over it is at hand")
            continue
        used.append(crl)
        found: CRLStatus | str | None = None
        # §6.3.3 (i)-(j): the delta's entry first, then the complete CRL's.
        for source in ([delta] if delta is not None else []) + [crl]:
            found = _lookup(source, cert, at, skew)
            if found is not None:
                break
        if isinstance(found, str):
            problems.append(f"CRL from {crl.issuer_text!r}: {found}")
            used.pop()
            continue
        if found is not None and found.status == "revoked":
            # Any usable CRL in scope that lists the certificate decides.
            if signers is not None:
                notes.extend(signers.notes)
            return CRLStatus("revoked", found.detail, found.next_update, tuple(notes),
                             (crl,) if delta is None else (crl, delta))
        for d in (crl if stale is None else None, delta):
            if d is not None and d.next_update is not None:
                nxt = d.next_update if nxt is None else min(nxt, d.next_update)
        if delta is not None:
            used.append(delta)
        covered |= scope
    if signers is not None:
        notes.extend(signers.notes)
    exhausted = signers is not None and signers.exhausted
    if covered >= ALL_REASONS:
        return CRLStatus("good", next_update=nxt, notes=tuple(notes), used=tuple(used))
    missing = ", ".join(sorted(ALL_REASONS - covered))
    if deltas and not used and not problems and not out_of_scope:
        problems.append("a delta CRL was given without its base CRL (RFC 5280 §5.2.4)")
    if problems:
        detail = "; ".join(problems)
        if covered:
            detail = f"reasons {missing} are not covered: " + detail
        return CRLStatus("unavailable", detail, notes=tuple(notes), used=tuple(used), exhausted=exhausted)
    if covered:
        return CRLStatus("partial", f"the usable CRLs do not cover the reasons {missing} (RFC 5280 §6.3.3 (d))",
                         nxt, tuple(notes), tuple(used))
    return CRLStatus("uncovered", "; ".join(out_of_scope), notes=tuple(notes))
