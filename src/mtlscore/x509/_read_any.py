"""The general read of a certificate (:func:`read_any`): any form the one-pass read leaves,
with the declarative schemas of :mod:`.schema` (RFC 5280 §4.1) and ``cryptography`` for the rest;
it words every refusal (``malformed``).
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509 as cx509
from cryptography.hazmat import asn1

from . import _extensions, schema
from ._algorithms import key_of, named_curve_spki, signature_algorithm, signature_facts
from ._der import header_for, header_of, int_size, tlv_size, validity_size
from ._extensions import fast_extension, malformed, oid_text, shared_set, slow_extensions
from .certificate import NAME_KEYS, UNSET, Certificate, Unfrozen, _decoded, spki_der_of

# Bound by assignment, not by import: CPython (3.11) compiles a method call on a module-level
# name bound by an import as an attribute load and a call (a bound method made per call),
# not as a method call. These are the very tables of :mod:`._extensions`.
_FAST_OIDS = _extensions.FAST_OIDS


def _check_name(raw: bytes, what: str, x509_of: Callable[[], cx509.Certificate]) -> None:
    """Refuse an undecodable name now (``malformed``), not wherever it is first shown.

    A name already in the name-key cache was checked when it was stored. The
    RDNSequence is decoded declaratively (DER, SET OF order, no empty RDN, each
    value a PrintableString, UTF8String or IA5String checked as ``cryptography``
    checks it); a name the schema does not read (another string type, or a
    value it refuses) is decoded by ``cryptography`` itself, which decides.
    """
    if NAME_KEYS.peek(raw) is not None:
        return
    try:
        asn1.decode_der(schema.NameSchema, schema.wrap(raw))
    except Exception:  # noqa: BLE001 - any refusal: cryptography's Name decoder decides
        _decoded(lambda: getattr(x509_of(), what), what)


def _x509_loader(der: bytes) -> Callable[[], cx509.Certificate]:
    """``cryptography``'s certificate object for ``der``, loaded on the first call only (malformed when refused).

    The declarative read does not need it; the rarer forms do (extensions read by
    ``cryptography``, names with other string types, signature algorithms or keys
    not seen before), and they load it once.
    """
    box: list[cx509.Certificate] = []

    def x509_of() -> cx509.Certificate:
        if not box:
            try:
                box.append(cx509.load_der_x509_certificate(der))
            except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision
                raise malformed(f"certificate could not be parsed: {exc}") from None
        return box[0]

    return x509_of


def read_any(der: bytes, digest: bytes | None = None) -> Certificate:
    """Read ``der`` with the declarative schemas of :mod:`.schema` (RFC 5280 §4.1), ``cryptography`` for the rest."""
    try:
        outer = asn1.decode_der(schema.CertificateSchema, der)
        tbs_tlv = outer.tbs
        tbs = tbs_tlv.parse(schema.TBSCertificate)
    except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        raise malformed(f"certificate could not be parsed: {exc}") from None
    signature = outer.signature
    # RFC 5280 §4.1.1.3: the signatureValue is a whole number of octets. cryptography
    # hands over the bytes without the unused-bits octet, so a signature with unused
    # bits would verify as if they were not there: the same signature under another
    # encoding (another SHA-256, another x5t#S256). OpenSSL refuses it too.
    if signature.padding_bits() != 0:
        raise malformed("its signature BIT STRING declares unused bits (RFC 5280 §4.1.1.3: whole octets)")
    # cryptography reads v1 and v3 only (RFC 5280 §4.1.2.1; v2 certificates do not occur).
    version = tbs.version
    if version != 0 and version != 2:
        raise malformed(f"certificate could not be parsed: {version} is not a valid X509 version")
    # Where each field lies in the DER, from the decoded sizes: the decoder accepts only
    # DER, where a length has one encoding (X.690 §10.1) and an INTEGER one form
    # (§8.3.2), so the fields are sliced from the DER rather than re-encoded.
    tbs_start = header_of(len(der))
    tbs_len = len(tbs_tlv.data)
    pos = tbs_start + len(tbs_tlv.tag_bytes) + header_for(tbs_len) - 1
    tbs_end = pos + tbs_len
    if version:
        pos += 5  # [0] EXPLICIT INTEGER 2: A0 03 02 01 02
    pos += int_size(tbs.serial)
    # RFC 5280 §4.1.1.2: signatureAlgorithm MUST be the same AlgorithmIdentifier as the
    # TBS signature field. Only the TBS is signed, so a different outer encoding (say,
    # RSA parameters NULL vs absent) would be another certificate with the same signature.
    # The outer one lies between the TBS and the signature BIT STRING; the inner one
    # starts at ``pos``. Equal bytes over the outer one's size include equal tag and
    # length octets, so the inner one is exactly as long: the two are the same element.
    sig_bytes = signature.as_bytes()
    alg_size = len(der) - tbs_end - header_for(len(sig_bytes) + 1) - len(sig_bytes) - 1
    alg_end = pos + alg_size
    alg_der = der[tbs_end : tbs_end + alg_size]
    if alg_size <= 0 or not der.startswith(alg_der, pos):
        raise malformed(
            "its signatureAlgorithm is not the same AlgorithmIdentifier as the signature field inside "
            "tbsCertificate (RFC 5280 §4.1.1.2)"
        )
    issuer_end = alg_end + tlv_size(tbs.issuer)
    issuer_raw = der[alg_end:issuer_end]
    subject_start = issuer_end + validity_size(tbs.validity)
    if der[issuer_end + 1] + 2 == subject_start - issuer_end:
        subject_end = subject_start + tlv_size(tbs.subject)
        subject_raw = der[subject_start:subject_end]
        spki_raw = der[subject_end : subject_end + tlv_size(tbs.spki)]
    else:  # times in other forms: rebuilt from the decoded elements
        subject_raw = schema.tlv_bytes(tbs.subject)
        spki_raw = schema.tlv_bytes(tbs.spki)
    x509_of = _x509_loader(der)

    c = object.__new__(Unfrozen)
    c.is_ca = c.path_length = c.key_usage = c.eku = c._san = c.name_constraints = None
    c.ski = c.aki = c.policies = c.policy_controls = None
    c.crl_urls = c.ocsp_urls = c.ca_issuer_urls = ()
    exts = tbs.extensions or ()
    oids = [oid_text(e.extn_id) for e in exts]
    if len(set(oids)) != len(oids):
        # RFC 5280 §4.2: a certificate MUST NOT include more than one instance of an extension.
        raise malformed("certificate could not be parsed: duplicate extension")
    critical = [oid for oid, e in zip(oids, exts, strict=True) if e.critical]
    try:
        if not _FAST_OIDS.issuperset(oids):
            raise LookupError
        for oid, e in zip(oids, exts, strict=True):
            fast_extension(c, oid, e.extn_value)
    except Exception:  # noqa: BLE001 - LookupError, or a form this decoder refuses: cryptography decides
        # (and words the refusal, as it did when it read every extension).
        c.is_ca = c.path_length = c.key_usage = c.eku = c._san = c.ski = c.aki = c.policies = None
        c.crl_urls = c.ocsp_urls = c.ca_issuer_urls = ()
        oids, critical = slow_extensions(c, x509_of())

    _check_name(subject_raw, "subject", x509_of)
    _check_name(issuer_raw, "issuer", x509_of)
    sig_oid = signature_algorithm(alg_der, x509_of)
    sig_hash, sig_params = signature_facts(x509_of, sig_oid)
    key, key_type, key_bits, curve = key_of(spki_raw, x509_of)
    if key_type == "ec" and not named_curve_spki(spki_raw, curve) and spki_raw != spki_der_of(key, der):
        # The SPKI is not the namedCurve encoding of its key, so the curve was spelled
        # out as explicit parameters (RFC 5480 §2.1.1 forbids them).
        curve = "explicit"
    try:
        not_before = tbs.validity.not_before.as_datetime()
        not_after = tbs.validity.not_after.as_datetime()
    except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        raise malformed(f"certificate could not be parsed: {exc}") from None
    if not der.endswith(sig_bytes):  # pragma: no cover - DER: the signature's BIT STRING ends the certificate
        raise malformed("certificate could not be parsed: the signature does not end it")
    c.der = der
    c._sha256 = digest
    c._sig_start = len(der) - len(sig_bytes)
    c._x509 = UNSET  # not kept (see Certificate.x509): it would hold every decoded extension
    c.serial = tbs.serial
    c.version = 3 if version == 2 else 1
    c.not_before = not_before
    c.not_after = not_after
    c.extension_oids = shared_set(oids)
    c.critical_oids = shared_set(critical)
    c.public_key = key
    c.key_type = key_type
    c.key_bits = key_bits
    c.curve = curve
    c.signature_oid = sig_oid
    c.signature_hash = sig_hash
    c.signature_params = sig_params
    c._tbs_start = tbs_start
    c._tbs_end = tbs_end
    c._issuer_raw = issuer_raw
    c._subject_raw = subject_raw
    c._spki_raw = spki_raw
    c._spki_start = c._spki_end = 0
    c._spki_sha256 = None
    c._subject_text = None
    c._subject_key = UNSET
    c._issuer_key = UNSET
    c._self_issued = UNSET
    c.__class__ = Certificate  # type: ignore[assignment]  # frozen from here on
    return c
