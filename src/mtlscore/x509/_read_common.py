"""The one-pass read of a certificate in the common shape (:func:`read_common`).

One declarative decode; the names and the SPKI sliced from the DER at the extents the decoder
has validated; the extensions dispatched by their OID object. What it does not know it leaves
to :func:`mtlscore.x509._read_any.read_any` by returning None.
"""

from __future__ import annotations

from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import serialization

from . import _algorithms, _extensions, schema
from ._algorithms import facts_of_key, named_curve_spki
from ._der import header_for, int_size
from ._extensions import (
    BC,
    EKU,
    KU,
    SAN,
    SHARED_MAX,
    SKI,
    extension_sets,
    san_and_ski,
    san_names,
    shared_extension,
    store_shared,
)
from .certificate import NAME_KEYS, UNSET, Certificate, Unfrozen

# Bound by assignment, not by import: CPython (3.11) compiles a method call on a module-level
# name bound by an import as an attribute load and a call (a bound method made per call),
# not as a method call. These are the very tables of :mod:`._algorithms` and :mod:`._extensions`.
_ALGORITHMS = _algorithms.ALGORITHMS
_BY_OID = _algorithms.BY_OID
_FAST_OID_TEXTS = _extensions.FAST_OID_TEXTS
_SHARED_EXTENSIONS = _extensions.SHARED_EXTENSIONS


def _element(der: bytes, start: int) -> tuple[int, int]:
    """(start of the contents, end) of the element at ``start``, one whose tag is one octet.

    Only for elements the decoder has already read in ``der``: their length
    octets are DER's (X.690 §8.1.3: short form under 128, else the minimal long
    form), so they give the element's extent without any other reading.
    """
    n = der[start + 1]
    if n < 0x80:
        return start + 2, start + 2 + n
    if n == 0x81:
        return start + 3, start + 3 + der[start + 2]
    if n == 0x82:
        return start + 4, start + 4 + (der[start + 2] << 8 | der[start + 3])
    body = start + 2 + (n & 0x7F)
    return body, body + int.from_bytes(der[start + 2 : body], "big")


def _ends(der: bytes, start: int, count: int) -> list[int]:
    """The ends of ``count`` consecutive elements from ``start`` (as :func:`_element`, in one call)."""
    ends = []
    for _ in range(count):
        n = der[start + 1]
        if n < 0x80:
            start += 2 + n
        elif n == 0x81:
            start += 3 + der[start + 2]
        elif n == 0x82:
            start += 4 + (der[start + 2] << 8 | der[start + 3])
        else:
            body = start + 2 + (n & 0x7F)
            start = body + int.from_bytes(der[start + 2 : body], "big")
        ends.append(start)
    return ends


# Names already decoded (by the schema, or as a known CA's subject: NAME_KEYS), the
# issuers of client certificates (one per CA), by their DER, to one copy of that DER
# which every certificate naming that issuer keeps. Bounded like _SETS.
_CHECKED_NAMES: dict[bytes, bytes] = {}


def clear_checked_names() -> None:
    """Forget which issuer names the schema has decoded (they are decoded again when next met)."""
    _CHECKED_NAMES.clear()


def read_common(der: bytes, digest: bytes | None = None) -> Certificate | None:
    """The certificate in the common shape, or None for :func:`read_any` to read (and word any refusal).

    One declarative decode (:class:`schema.CommonCertificate`) reads the
    certificate, the TBS, the subject's values and the SPKI's shape; the
    names and the SPKI are sliced from ``der`` at the extents the decoder has
    validated. Everything :func:`read_any` checks is checked here, on the
    same facts; what is not known here (an extension outside
    :data:`FAST_OIDS`, a signature algorithm or issuer name not seen before,
    a key ``cryptography`` does not load, a form the schemas leave to
    ``cryptography``) returns None rather than being decided twice.
    """
    try:
        outer = asn1.decode_der(schema.CommonCertificate, der)
    except ValueError:
        return None
    tbs = outer.tbs
    signature = outer.signature
    version = tbs.version
    # RFC 5280 §4.1.1.3 whole-octet signature, §4.1.2.1 v1 or v3 (see read_any).
    if signature.padding_bits() != 0 or (version != 0 and version != 2):
        return None
    sig_bytes = signature.as_bytes()
    tbs_start = _element(der, 0)[0]
    body, tbs_end = _element(der, tbs_start)
    serial = tbs.serial
    pos = body + (5 if version else 0) + int_size(serial)  # [0] EXPLICIT INTEGER 2: A0 03 02 01 02
    # RFC 5280 §4.1.1.2: the outer signatureAlgorithm and the TBS signature field are the same
    # AlgorithmIdentifier, byte for byte (see read_any).
    alg_size = len(der) - tbs_end - header_for(len(sig_bytes) + 1) - len(sig_bytes) - 1
    alg_der = der[tbs_end : tbs_end + alg_size]
    issuer_start = pos + alg_size
    if alg_size <= 0 or not der.startswith(alg_der, pos) or tbs.issuer.tag_bytes != b"\x30":
        return None
    exts = tbs.extensions
    # issuer, Validity, subject, SPKI and (when present) the extensions ([3]), which end the TBS.
    ends = _ends(der, issuer_start, 4 if exts is None else 5)
    issuer_end, subject_start, subject_end, spki_end = ends[0], ends[1], ends[2], ends[3]
    # The extents add up to the TBS: the extensions ([3]) or nothing follow the SPKI.
    if ends[-1] != tbs_end or (exts is not None and der[spki_end] != 0xA3):
        return None
    issuer_raw = der[issuer_start:issuer_end]
    checked = _CHECKED_NAMES.get(issuer_raw)
    if checked is not None:
        issuer_raw = checked  # the one copy its CA's client certificates share
    else:
        if NAME_KEYS.peek(issuer_raw) is None:
            try:
                asn1.decode_der(schema.NameSchema, schema.wrap(issuer_raw))
            except ValueError:
                return None
        if len(_CHECKED_NAMES) < SHARED_MAX:
            _CHECKED_NAMES[issuer_raw] = issuer_raw
    sig_oid = _ALGORITHMS.get(alg_der)
    if sig_oid is None:
        return None
    known = _BY_OID.get(sig_oid)
    if known is None:
        return None
    spki_raw = der[subject_end:spki_end]
    if tbs.spki.algorithm.tag_bytes != b"\x30":
        return None
    try:
        key = serialization.load_der_public_key(spki_raw)
    except Exception:  # noqa: BLE001 - read_any decides what a key cryptography does not load means
        return None
    key, key_type, key_bits, curve = facts_of_key(key)
    if key_type == "ec" and not named_curve_spki(spki_raw, curve):
        return None
    validity = tbs.validity
    try:
        not_before = validity.not_before.as_datetime()
        not_after = validity.not_after.as_datetime()
    except ValueError:
        return None

    c = object.__new__(Unfrozen)
    c.is_ca = c.path_length = c.key_usage = c.eku = c._san = c.name_constraints = None
    c.ski = c.aki = c.policies = c.policy_controls = None
    c.crl_urls = c.ocsp_urls = c.ca_issuer_urls = ()
    oids: list[str] = []
    critical: list[str] = []
    san = ski = None
    try:
        for e in exts or ():
            oid = _FAST_OID_TEXTS.get(e.extn_id)
            if oid is None:
                return None
            oids.append(oid)
            if e.critical:
                critical.append(oid)
            value = e.extn_value
            if oid == SAN:
                san = value
            elif oid == SKI:
                ski = value
            else:
                facts = _SHARED_EXTENSIONS.get((oid, value))
                if facts is None:
                    facts = shared_extension(oid, value)
                if oid == BC:
                    c.is_ca, c.path_length = facts
                elif oid == KU:
                    c.key_usage = facts
                elif oid == EKU:
                    c.eku = facts
                else:
                    store_shared(c, oid, facts)
        extension_oids, critical_oids = extension_sets(oids, critical)
        if len(extension_oids) != len(oids):
            return None  # RFC 5280 §4.2: one instance of an extension (read_any words it)
        # subjectAltName's names are checked here and kept as the extension's value: the
        # decoded objects are made again if Certificate.san is read (identity, name constraints).
        if san is not None and ski is not None:
            c.ski = san_and_ski(san, ski)[1]
            c._san = san
        elif san is not None:
            san_names(san)
            c._san = san
        elif ski is not None:
            c.ski = asn1.decode_der(bytes, ski)
    except (LookupError, ValueError):
        return None
    c.der = der
    c._sha256 = digest
    # The signature ends the certificate (alg_size above counts on it) and the SPKI lies at
    # [subject_end, spki_end): both are sliced from ``der`` when read, not kept.
    c._sig_start = len(der) - len(sig_bytes)
    c._x509 = UNSET
    c.serial = serial
    c.version = 3 if version == 2 else 1
    c.not_before = not_before
    c.not_after = not_after
    c.extension_oids = extension_oids
    c.critical_oids = critical_oids
    c.public_key = key
    c.key_type = key_type
    c.key_bits = key_bits
    c.curve = curve
    c.signature_oid = sig_oid
    c.signature_hash, c.signature_params = known
    c._tbs_start = tbs_start
    c._tbs_end = tbs_end
    c._issuer_raw = issuer_raw
    c._subject_raw = der[subject_start:subject_end]
    c._spki_raw = None
    c._spki_start = subject_end
    c._spki_end = spki_end
    c._spki_sha256 = None
    c._subject_text = None
    c._subject_key = UNSET
    c._issuer_key = UNSET
    c._self_issued = UNSET
    c.__class__ = Certificate  # type: ignore[assignment]  # frozen from here on
    return c
