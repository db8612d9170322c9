"""CRLs given as data (RFC 5280 §5, §6.3): parse, check, and look up a certificate.

A CRL *covers* a certificate when its issuer name equals the certificate's
issuer name. A covering CRL is *usable* when it is a complete (non-delta) CRL,
signed by the certificate's issuer key, by an issuer whose keyUsage (when
present) allows cRLSign, carries a non-critical CRLNumber, has no critical
extension we do not process, and is fresh at the validation time.
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
    oids = {e.oid.dotted_string: e for e in exts}
    crl_number = oids.get(_CRL_NUMBER)
    if crl_number is None:
        problem = "it has no CRLNumber (RFC 5280 §5.2.3 requires one)"
    elif crl_number.critical:
        problem = "its CRLNumber is marked critical (RFC 5280 §5.2.3 forbids it)"
    elif _DELTA in oids:
        problem = "it is a delta CRL, which needs its base CRL"
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
    )


@dataclass(frozen=True, slots=True)
class CRLStatus:
    """The revocation status of one certificate from the CRLs at hand."""

    status: Literal["good", "revoked", "unavailable", "uncovered"]
    detail: str = ""
    next_update: datetime | None = None


def _scope_excludes(crl: ParsedCRL, cert: Certificate) -> str | None:
    """RFC 5280 §5.2.5: an issuingDistributionPoint narrows what a CRL covers."""
    try:
        idp = crl.crl.extensions.get_extension_for_oid(ExtensionOID.ISSUING_DISTRIBUTION_POINT).value
    except x509.ExtensionNotFound:
        return None
    if idp.only_contains_user_certs and cert.is_ca:
        return "it only covers end-entity certificates"
    if idp.only_contains_ca_certs and not cert.is_ca:
        return "it only covers CA certificates"
    if idp.only_contains_attribute_certs:
        return "it only covers attribute certificates"
    if idp.only_some_reasons is not None:
        return "it only covers some revocation reasons"
    if idp.indirect_crl:
        return "it is an indirect CRL, which mtlscore does not support"
    if idp.full_name and cert.crl_urls:
        names = {g.value for g in idp.full_name if isinstance(g, x509.UniformResourceIdentifier)}
        if names and not names & set(cert.crl_urls):
            return "its distribution point is not one the certificate names"
    return None


def check_certificate(
    cert: Certificate,
    issuer: Certificate,
    crls: list[ParsedCRL],
    *,
    at: datetime,
    skew: timedelta = timedelta(0),
    max_age: timedelta | None = None,
) -> CRLStatus:
    """The status of ``cert`` (issued by ``issuer``) from ``crls``."""
    covering = [c for c in crls if c.issuer_key == cert.issuer_key]
    if not covering:
        return CRLStatus("uncovered")
    problems: list[str] = []
    for crl in covering:
        why = crl.problem or _scope_excludes(crl, cert)
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
        if why is not None:
            problems.append(f"CRL from {crl.issuer_text!r}: {why}")
            continue
        entry = crl.crl.get_revoked_certificate_by_serial_number(cert.serial)
        if entry is None:
            return CRLStatus("good", next_update=crl.next_update)
        try:
            entry_exts = list(entry.extensions)
            when = entry.revocation_date_utc
        except Exception:  # noqa: BLE001 - undecodable entry extensions
            problems.append(f"CRL from {crl.issuer_text!r}: the entry for this serial could not be decoded")
            continue
        if any(e.critical and e.oid.dotted_string not in _HANDLED_ENTRY_EXTS for e in entry_exts):
            problems.append(f"CRL from {crl.issuer_text!r}: the entry has an unsupported critical extension")
            continue
        reason = next(
            (e.value.reason.value for e in entry_exts if isinstance(e.value, x509.CRLReason)),
            "unspecified",
        )
        if reason == "removeFromCRL" or when > at + skew:
            return CRLStatus("good", next_update=crl.next_update)
        return CRLStatus(
            "revoked",
            f"{cert.describe()!r} (serial {cert.serial:x}) was revoked on {when.isoformat()} "
            f"by {crl.issuer_text!r}, reason {reason}",
            next_update=crl.next_update,
        )
    return CRLStatus("unavailable", "; ".join(problems))
