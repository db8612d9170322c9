"""CRLs (RFC 5280 §5, §6.3): parse, check, and look up a certificate.

A CRL *covers* a certificate when its issuer name equals the certificate's
issuer name (direct CRLs only; indirect CRLs are refused). A covering CRL is
*usable* when it is signed by the certificate's issuer key, by an issuer whose
keyUsage (when present) allows cRLSign, carries a non-critical CRLNumber, has
no critical extension we do not process, is fresh at the validation time, and
its issuingDistributionPoint (when present) takes in this certificate: the
right kind (user/CA), all reasons, and a distribution point the certificate
names (or the URL the CRL was fetched from). A delta CRL (§5.2.4) is applied on
top of a usable complete CRL whose CRLNumber is at least the delta's
BaseCRLNumber; a delta alone is never an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from ._cert import Certificate
from ._names import NameKey, name_key

__all__ = ["CRLStatus", "ParsedCRL", "check_certificate", "parse_crl"]

_CRL_NUMBER = ExtensionOID.CRL_NUMBER.dotted_string
_DELTA = ExtensionOID.DELTA_CRL_INDICATOR.dotted_string
_IDP = ExtensionOID.ISSUING_DISTRIBUTION_POINT.dotted_string
_AKI = ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string
_HANDLED_CRL_EXTS = frozenset({_CRL_NUMBER, _AKI, _IDP, _DELTA})
_HANDLED_ENTRY_EXTS = frozenset(
    {
        CRLEntryExtensionOID.CRL_REASON.dotted_string,
        CRLEntryExtensionOID.INVALIDITY_DATE.dotted_string,
    }
)


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

    @property
    def is_delta(self) -> bool:
        return self.delta_base is not None


def parse_crl(data: bytes | str) -> ParsedCRL:
    """Parse one CRL (DER or PEM). Raises ValueError when it is not a CRL."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(raw)
        else:
            crl = x509.load_der_x509_crl(raw)
        exts = crl.extensions
        issuer = crl.issuer
        this_update = crl.last_update_utc
        next_update = crl.next_update_utc
    except Exception as exc:  # noqa: BLE001 - any parse failure
        raise ValueError(f"CRL could not be parsed: {exc}") from None
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
        der=raw,
        issuer_key=name_key(issuer),
        issuer_text=issuer.rfc4514_string(),
        this_update=this_update,
        next_update=next_update,
        problem=problem,
        number=number,
        delta_base=delta_base,
        idp=idp,
    )


@dataclass(frozen=True, slots=True)
class CRLStatus:
    """The revocation status of one certificate from the CRLs at hand."""

    status: Literal["good", "revoked", "unavailable", "uncovered"]
    detail: str = ""
    next_update: datetime | None = None


def _scope_excludes(crl: ParsedCRL, cert: Certificate, url: str | None) -> str | None:
    """RFC 5280 §5.2.5 / §6.3.3 (b)(2): an issuingDistributionPoint narrows what a CRL covers."""
    idp = crl.idp
    if idp is None:
        return None
    if idp.only_contains_user_certs and cert.is_ca:
        return "it only covers end-entity certificates"
    if idp.only_contains_ca_certs and not cert.is_ca:
        return "it only covers CA certificates"
    if idp.only_contains_attribute_certs:
        return "it only covers attribute certificates"
    if idp.only_some_reasons is not None:
        # Reason-partitioned CRLs need several CRLs to cover all reasons (§6.3.3 (d)).
        return "it only covers some revocation reasons (reason-partitioned CRLs are not supported)"
    if idp.indirect_crl:
        return "it is an indirect CRL, which mtlscore does not support"
    if idp.full_name:
        names = {g.value for g in idp.full_name if isinstance(g, x509.UniformResourceIdentifier)}
        # §6.3.3 (b)(2)(i): the IDP's distribution point must be one the certificate
        # names; the URL we fetched it from stands for the one the certificate named.
        wanted = set(cert.crl_urls) | ({url} if url else set())
        if names and wanted and not names & wanted:
            return "its distribution point is not one the certificate names"
    elif idp.relative_name is not None:
        return "its distribution point is a relative name, which mtlscore does not support"
    return None


def _unusable(
    crl: ParsedCRL,
    cert: Certificate,
    issuer: Certificate,
    *,
    at: datetime,
    skew: timedelta,
    max_age: timedelta | None,
    url: str | None,
) -> str | None:
    """Why ``crl`` cannot tell the status of ``cert``; None when it can."""
    why = crl.problem or _scope_excludes(crl, cert, url)
    if why is None and issuer.key_usage is not None and not issuer.key_usage.crl_sign:
        why = f"its issuer {issuer.describe()!r} lacks keyUsage cRLSign (RFC 5280 §4.2.1.3)"
    if why is None:
        try:
            if issuer.public_key is None or not crl.crl.is_signature_valid(issuer.public_key):
                why = f"its signature does not verify with {issuer.describe()!r}'s key"
        except Exception:  # noqa: BLE001 - unsupported algorithm
            why = "its signature algorithm is not supported"
    if why is None and crl.this_update > at + skew:
        why = f"it is not valid until {crl.this_update.isoformat()}"
    if why is None and crl.next_update is not None and crl.next_update < at - skew:
        why = f"it is stale: its nextUpdate was {crl.next_update.isoformat()}"
    if why is None and crl.next_update is None and max_age is not None and crl.this_update + max_age < at:
        why = f"it has no nextUpdate and is older than {max_age}"
    return why


def _lookup(crl: ParsedCRL, cert: Certificate, at: datetime, skew: timedelta) -> CRLStatus | str | None:
    """The entry for ``cert`` in ``crl``: None (not listed), a status, or a problem string."""
    entry = crl.crl.get_revoked_certificate_by_serial_number(cert.serial)
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
    # §5.3.1: removeFromCRL (in a delta) takes a certificate off hold.
    if reason == "removeFromCRL" or when > at + skew:
        return CRLStatus("good", next_update=crl.next_update)
    kind = "delta CRL" if crl.is_delta else "CRL"
    return CRLStatus(
        "revoked",
        f"{cert.describe()!r} (serial {cert.serial:x}) was revoked on {when.isoformat()} "
        f"by {crl.issuer_text!r} ({kind} #{crl.number}), reason {reason}",
        next_update=crl.next_update,
    )


def check_certificate(
    cert: Certificate,
    issuer: Certificate,
    crls: list[ParsedCRL],
    *,
    at: datetime,
    skew: timedelta = timedelta(0),
    max_age: timedelta | None = None,
    url: str | None = None,
) -> CRLStatus:
    """The status of ``cert`` (issued by ``issuer``) from ``crls``.

    ``url``: where the CRLs were fetched from (a distribution point), if fetched.
    Never raises on odd CRL content.
    """
    covering = [c for c in crls if c.issuer_key == cert.issuer_key]
    if not covering:
        return CRLStatus("uncovered")
    problems: list[str] = []
    deltas = [c for c in covering if c.is_delta]
    usable_deltas: list[ParsedCRL] = []
    for d in deltas:
        if (why := _unusable(d, cert, issuer, at=at, skew=skew, max_age=max_age, url=url)) is not None:
            problems.append(f"delta CRL from {d.issuer_text!r}: {why}")
        else:
            usable_deltas.append(d)
    complete = [c for c in covering if not c.is_delta]
    if not complete and deltas:
        problems.append("a delta CRL was given without its base CRL (RFC 5280 §5.2.4)")
    for crl in complete:
        why = _unusable(crl, cert, issuer, at=at, skew=skew, max_age=max_age, url=url)
        if why is not None:
            problems.append(f"CRL from {crl.issuer_text!r}: {why}")
            continue
        # §5.2.4: a delta applies to a complete CRL numbered at least its BaseCRLNumber,
        # and only if it is newer than that CRL.
        n = crl.number if crl.number is not None else -1
        fitting = [
            d for d in usable_deltas
            if d.delta_base is not None and d.delta_base <= n and (d.number or -1) > n
        ]
        delta = max(fitting, key=lambda d: d.number or -1, default=None)
        for source in ([delta] if delta is not None else []) + [crl]:
            found = _lookup(source, cert, at, skew)
            if isinstance(found, str):
                problems.append(f"CRL from {source.issuer_text!r}: {found}")
                break
            if found is not None:
                return found
        else:
            nxt = crl.next_update
            if delta is not None and delta.next_update is not None:
                nxt = min(nxt, delta.next_update) if nxt is not None else delta.next_update
            return CRLStatus("good", next_update=nxt)
    return CRLStatus("unavailable", "; ".join(problems))
