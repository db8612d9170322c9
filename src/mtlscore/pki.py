"""A throwaway PKI for tests, demos and benchmarks (trustme's idea, with defects on demand).

Each certificate is one call; each defect is one keyword::

    root = pki.root()
    inter = root.intermediate()
    leaf = inter.leaf(cn="client", eku=[SERVER_AUTH])          # wrong EKU
    leaf = inter.leaf(not_after=pki.NOW - timedelta(days=1))   # expired

CRLs state their shape in one line too::

    inter.crl(revoked=[leaf], idp=pki.idp(uri=URL, reasons=["keyCompromise"]))  # partitioned
    inter.crl(signer=inter.crl_signer())                  # a separate CRL-signing key
    root.rollover().crl(revoked=[old])                    # signed by the CA's next key
    issuer.crl(revoked=[pki.entry(leaf, issuer=inter)], idp=pki.idp(indirect=True))
    inter.crl(revoked=[leaf], number=8, delta_of=7)       # a delta over CRL #7
    inter.leaf(crl_dps=[pki.dp(uri=URL, crl_issuer=issuer, reasons=[...])], freshest=[DELTA_URL])

Keys: ``"ec"`` (P-256, the default), ``"ec-p384"``, ``"ec-p521"``, ``"ec-k256"``,
``"rsa"`` (2048), ``"rsa-1024"``, ``"rsa-3072"``, ``"rsa-4096"``, ``"ed25519"``, ``"ed448"``.
Not for production: keys are generated quickly and RSA keys are reused from a pool.

What ``cryptography``'s builder refuses to write is written anyway, for tests that
need it: ``hash_alg="sha1"`` or ``"md5"`` (RSA PKCS#1 or ECDSA; ECDSA with MD5 as
X9.62 ecdsa-with-Specified), and serials of 160 bits and more, zero or negative.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeAlias, TypedDict, Unpack

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from .x509.cert import der_sequence, encode_policy_mappings

__all__ = ["NOW", "Issued", "Revoked", "dp", "entry", "idp", "new_key", "root"]

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH.dotted_string

# A key that signs certificates and CRLs (RSA, EC, Ed25519, Ed448, DSA), and how one is asked for:
# by a spec name ("ec", "rsa-2048", ... see the module docstring) or given as the key itself.
PrivateKey: TypeAlias = CertificateIssuerPrivateKeyTypes
KeySpec: TypeAlias = str | PrivateKey

_RSA_POOL: dict[int, list[rsa.RSAPrivateKey]] = {}
_RSA_NEXT: dict[int, int] = {}
_RSA_POOL_SIZE = 24


def new_key(spec: KeySpec = "ec") -> PrivateKey:
    """A private key by spec name (see the module docstring), or ``spec`` itself if a key."""
    if not isinstance(spec, str):
        return spec
    if spec in ("ec", "ec-p256"):
        return ec.generate_private_key(ec.SECP256R1())
    if spec == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if spec == "ec-p521":
        return ec.generate_private_key(ec.SECP521R1())
    if spec == "ec-k256":
        return ec.generate_private_key(ec.SECP256K1())
    if spec == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if spec == "ed448":
        return ed448.Ed448PrivateKey.generate()
    if spec.startswith("rsa"):
        bits = int(spec.split("-")[1]) if "-" in spec else 2048
        pool = _RSA_POOL.setdefault(bits, [])
        if len(pool) < _RSA_POOL_SIZE:
            key = rsa.generate_private_key(65537, bits)
            pool.append(key)
            return key
        i = _RSA_NEXT.get(bits, 0)
        _RSA_NEXT[bits] = (i + 1) % _RSA_POOL_SIZE
        return pool[i]
    raise ValueError(f"unknown key spec {spec!r}")


def _name(subject: str | x509.Name) -> x509.Name:
    if isinstance(subject, x509.Name):
        return subject
    if "=" in subject:
        return x509.Name.from_rfc4514_string(subject)
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])


_HASHES: dict[str, Any] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "md5": hashes.MD5,
}


@dataclass
class Issued:
    """A certificate with its private key and its issuer (None for a self-signed root)."""

    cert: x509.Certificate
    key: PrivateKey
    parent: Issued | None = None
    now: datetime = NOW
    _serial: list[int] = field(default_factory=lambda: [1000])

    # -- encodings ----------------------------------------------------------

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    @property
    def chain(self) -> list[Issued]:
        """This certificate and its issuers up to, not including, the root."""
        out = [self]
        node = self.parent
        while node is not None and node.parent is not None:
            out.append(node)
            node = node.parent
        return out

    @property
    def chain_pem(self) -> bytes:
        """PEM of :attr:`chain`: what a client presents (leaf first)."""
        return b"".join(c.pem for c in self.chain)

    @property
    def chain_der(self) -> list[bytes]:
        return [c.der for c in self.chain]

    @property
    def serial(self) -> int:
        return int(self.cert.serial_number)

    # -- issuing ------------------------------------------------------------

    def issue(self, cn: str | x509.Name = "leaf", *, key: KeySpec = "ec", **kw: Unpack[CertOptions]) -> Issued:
        """A certificate signed by this one; keywords as :func:`make`."""
        return make(cn, issuer=self, key=key, **kw)

    def intermediate(
        self, cn: str | x509.Name = "Test Intermediate CA", *, key: KeySpec = "ec", **kw: Unpack[CertOptions]
    ) -> Issued:
        kw.setdefault("ca", True)
        return make(cn, issuer=self, key=key, **kw)

    def leaf(self, cn: str | x509.Name = "client.example", *, key: KeySpec = "ec", **kw: Unpack[CertOptions]) -> Issued:
        kw.setdefault("ca", False)
        return make(cn, issuer=self, key=key, **kw)

    def rollover(self, key: KeySpec = "ec", **kw: Unpack[CertOptions]) -> Issued:
        """The CA's next key, certified by its current one: a self-issued "new-with-old" certificate.

        Certificates and CRLs issued through the result are signed with the new key
        under the same name (RFC 4210 §4.4 key update; RFC 5280 §6.1: self-issued).
        """
        kw.setdefault("ca", True)
        return make(self.cert.subject, issuer=self, key=key, **kw)

    def crl_signer(self, key: KeySpec = "ec", *, by: Issued | None = None, **kw: Unpack[CertOptions]) -> Issued:
        """A separate CRL-signing key for this CA: same name, keyUsage cRLSign only.

        Certified by ``by`` (default: this CA's issuer, or the CA itself for a
        root). Pass the result as ``signer=`` to :meth:`crl`.
        """
        kw.setdefault("key_usage", key_usage("crl_sign"))
        kw.setdefault("eku", None)
        return make(self.cert.subject, issuer=by or self.parent or self, key=key, **kw)

    def crl(
        self,
        revoked: Iterable[Issued | int | Revoked | tuple[Issued | int, x509.ReasonFlags | None]] = (),
        *,
        this_update: datetime | None = None,
        next_update: datetime | None = None,
        hash_alg: str = "sha256",
        signer: PrivateKey | None = None,
        number: int = 1,
        extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
        idp: x509.IssuingDistributionPoint | None = None,
        delta_of: int | None = None,
        freshest: Sequence[str] = (),
        unused_bits: bool = False,
    ) -> bytes:
        """A DER CRL issued by this CA (its name) listing ``revoked`` (certificates, serials or :func:`entry`).

        ``signer``: another :class:`Issued` (a rolled-over or separate CRL-signing
        key; its key signs and its SKI is the CRL's AKI) or a bare private key.
        ``idp``: an issuingDistributionPoint (see :func:`idp`), added critical.
        ``delta_of``: make it a delta CRL over base CRL number ``delta_of``.
        ``freshest``: FreshestCRL URIs. ``unused_bits``: re-encode the signature
        BIT STRING declaring 1 unused bit (a defect).
        """
        this_update = this_update or self.now - timedelta(hours=1)
        next_update = next_update or self.now + timedelta(days=1)
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(this_update)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        key_cert = signer.cert if isinstance(signer, Issued) else self.cert
        try:
            ski = key_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            b = b.add_extension(
                x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False
            )
        except x509.ExtensionNotFound:
            pass
        if idp is not None:
            b = b.add_extension(idp, critical=True)
        if delta_of is not None:
            b = b.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
        if freshest:
            b = b.add_extension(x509.FreshestCRL([dp(uri=freshest)]), critical=False)
        for ext, critical in extensions:
            b = b.add_extension(ext, critical=critical)
        for item in revoked:
            if not isinstance(item, Revoked):
                reason = None
                if isinstance(item, tuple):
                    item, reason = item
                item = entry(item, reason)
            rb = (
                x509.RevokedCertificateBuilder()
                .serial_number(item.serial)
                .revocation_date(item.date or this_update - timedelta(minutes=5))
            )
            if item.reason is not None:
                rb = rb.add_extension(x509.CRLReason(item.reason), critical=False)
            if item.issuer is not None:
                # RFC 5280 §5.3.3: always critical.
                rb = rb.add_extension(x509.CertificateIssuer([x509.DirectoryName(item.issuer)]), critical=True)
            b = b.add_revoked_certificate(rb.build())
        key = signer.key if isinstance(signer, Issued) else signer if signer is not None else self.key
        alg = None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else _HASHES[hash_alg]()
        der = b.sign(key, alg).public_bytes(serialization.Encoding.DER)
        # DER wants the declared unused bits to be zero: sign again until the last bit is (ECDSA is randomised).
        for _ in range(64):
            if not (unused_bits and der[-1] & 1):
                break
            der = b.sign(key, alg).public_bytes(serialization.Encoding.DER)
        else:
            raise ValueError("unused_bits needs a randomised signature (an EC key) ending in a 0 bit")
        return _with_unused_bit(der) if unused_bits else der


@dataclass(frozen=True)
class Revoked:
    """One CRL entry for :meth:`Issued.crl` (see :func:`entry`)."""

    serial: int
    reason: x509.ReasonFlags | None = None
    issuer: x509.Name | None = None  # certificateIssuer (indirect CRLs, RFC 5280 §5.3.3)
    date: datetime | None = None


def entry(
    cert: Issued | int, reason: x509.ReasonFlags | str | None = None, *, issuer: Issued | str | x509.Name | None = None,
    date: datetime | None = None,
) -> Revoked:
    """A CRL entry: ``cert`` (or a serial), its reason, and a certificateIssuer for indirect CRLs.

    In an indirect CRL an entry without ``issuer`` belongs to the previous entry's issuer.
    """
    serial = cert.serial if isinstance(cert, Issued) else int(cert)
    name = issuer.cert.subject if isinstance(issuer, Issued) else _name(issuer) if issuer is not None else None
    flag = x509.ReasonFlags(reason) if isinstance(reason, str) else reason
    return Revoked(serial, flag, name, date)


def _reasons(reasons: Iterable[x509.ReasonFlags | str] | None) -> frozenset[x509.ReasonFlags] | None:
    if reasons is None:
        return None
    return frozenset(r if isinstance(r, x509.ReasonFlags) else x509.ReasonFlags(r) for r in reasons)


def _dp_names(
    uri: Sequence[str] | str, dirname: Sequence[str | x509.Name] | str | x509.Name
) -> list[x509.GeneralName] | None:
    uris = [uri] if isinstance(uri, str) else list(uri)
    dns = [dirname] if isinstance(dirname, str | x509.Name) else list(dirname)
    names = _general_names(uri=uris, dirnames=dns)
    return names or None


def _rdn(relative: str | x509.RelativeDistinguishedName | None) -> x509.RelativeDistinguishedName | None:
    if relative is None or isinstance(relative, x509.RelativeDistinguishedName):
        return relative
    return _name(relative).rdns[0]


def idp(
    *,
    uri: Sequence[str] | str = (),
    dirname: Sequence[str | x509.Name] | str | x509.Name = (),
    relative: str | x509.RelativeDistinguishedName | None = None,
    reasons: Iterable[x509.ReasonFlags | str] | None = None,
    indirect: bool = False,
    users: bool = False,
    cas: bool = False,
) -> x509.IssuingDistributionPoint:
    """An issuingDistributionPoint for :meth:`Issued.crl` (``idp=``), RFC 5280 §5.2.5.

    ``uri`` / ``dirname``: the distribution point's full names; ``relative``: a
    nameRelativeToCRLIssuer RDN (``"CN=Part 2"``); ``reasons``: onlySomeReasons
    (``"keyCompromise"`` …); ``indirect``: indirectCRL; ``users`` / ``cas``:
    onlyContainsUser/CACerts.
    """
    return x509.IssuingDistributionPoint(
        full_name=_dp_names(uri, dirname),
        relative_name=_rdn(relative),
        only_contains_user_certs=users,
        only_contains_ca_certs=cas,
        only_some_reasons=_reasons(reasons),
        indirect_crl=indirect,
        only_contains_attribute_certs=False,
    )


def dp(
    *,
    uri: Sequence[str] | str = (),
    dirname: Sequence[str | x509.Name] | str | x509.Name = (),
    relative: str | x509.RelativeDistinguishedName | None = None,
    reasons: Iterable[x509.ReasonFlags | str] | None = None,
    crl_issuer: Issued | str | x509.Name | None = None,
) -> x509.DistributionPoint:
    """A cRLDistributionPoints entry for :func:`make` (``crl_dps=``), RFC 5280 §4.2.1.13.

    ``crl_issuer``: the CA that issues the (indirect) CRL for this point.
    """
    issuer = None
    if crl_issuer is not None:
        name = crl_issuer.cert.subject if isinstance(crl_issuer, Issued) else _name(crl_issuer)
        issuer = [x509.DirectoryName(name)]
    return x509.DistributionPoint(_dp_names(uri, dirname), _rdn(relative), _reasons(reasons), issuer)


def _with_unused_bit(der: bytes) -> bytes:
    """``der`` (a signed structure) with its final signature BIT STRING declaring 1 unused bit."""
    crl = x509.load_der_x509_crl(der)
    sig = crl.signature
    assert der[-len(sig) - 1] == 0
    return der[: -len(sig) - 1] + b"\x01" + sig


def _default_key_usage(ca: bool | None) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=bool(ca),
        crl_sign=bool(ca),
        encipher_only=False,
        decipher_only=False,
    )


def certificate_policies(*oids: str, critical: bool = False) -> tuple[x509.ExtensionType, bool]:
    """A certificatePolicies extension (dotted OIDs; 2.5.29.32.0 is anyPolicy) for ``extensions=``."""
    return x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(o), None) for o in oids]), critical


def policy_mappings(*pairs: tuple[str, str], critical: bool = True) -> tuple[x509.ExtensionType, bool]:
    """A policyMappings extension of (issuerDomainPolicy, subjectDomainPolicy) pairs, for ``extensions=``.

    ``cryptography`` has no class for it: the value is encoded with its ASN.1 encoder.
    """
    value = encode_policy_mappings(pairs)
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.33"), value), critical


def key_usage(*names: str) -> x509.KeyUsage:
    """A KeyUsage with exactly these bits (``"digital_signature"``, ``"key_cert_sign"``, …)."""
    bits = {
        n: False
        for n in (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        )
    }
    for n in names:
        bits[n] = True
    return x509.KeyUsage(**bits)


def _general_names(
    dns: Sequence[str] = (),
    uri: Sequence[str] = (),
    email: Sequence[str] = (),
    ip: Sequence[str] = (),
    dirnames: Sequence[str | x509.Name] = (),
) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    out += [x509.UniformResourceIdentifier(u) for u in uri]
    out += [x509.RFC822Name(e) for e in email]
    out += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip]
    out += [x509.DirectoryName(_name(d)) for d in dirnames]
    return out


class CertOptions(TypedDict, total=False):
    """The keywords of :func:`make` that :func:`root` and :class:`Issued`'s issuing methods pass on."""

    ca: bool | None
    path_length: int | None
    bc_critical: bool
    not_before: datetime | None
    not_after: datetime | None
    eku: Sequence[str] | str | None
    eku_critical: bool
    key_usage: x509.KeyUsage | str | None
    san_dns: Sequence[str]
    san_uri: Sequence[str]
    san_email: Sequence[str]
    san_ip: Sequence[str]
    san_critical: bool
    permitted: Sequence[x509.GeneralName] | None
    excluded: Sequence[x509.GeneralName] | None
    crl_urls: Sequence[str]
    crl_dps: Sequence[x509.DistributionPoint]
    freshest: Sequence[str]
    ocsp_urls: Sequence[str]
    ca_issuers_urls: Sequence[str]
    hash_alg: str
    pss: bool
    ski: bool
    aki: bool
    serial: int | None
    signer: PrivateKey | None
    issuer_name: x509.Name | None
    extensions: Sequence[tuple[x509.ExtensionType, bool]]
    now: datetime | None


def make(
    subject: str | x509.Name,
    *,
    issuer: Issued | None = None,
    key: KeySpec = "ec",
    ca: bool | None = None,
    path_length: int | None = None,
    bc_critical: bool = True,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    eku: Sequence[str] | str | None = "default",
    eku_critical: bool = False,
    key_usage: x509.KeyUsage | str | None = "default",
    san_dns: Sequence[str] = (),
    san_uri: Sequence[str] = (),
    san_email: Sequence[str] = (),
    san_ip: Sequence[str] = (),
    san_critical: bool = False,
    permitted: Sequence[x509.GeneralName] | None = None,
    excluded: Sequence[x509.GeneralName] | None = None,
    crl_urls: Sequence[str] = (),
    crl_dps: Sequence[x509.DistributionPoint] = (),
    freshest: Sequence[str] = (),
    ocsp_urls: Sequence[str] = (),
    ca_issuers_urls: Sequence[str] = (),
    hash_alg: str = "sha256",
    pss: bool = False,
    ski: bool = True,
    aki: bool = True,
    serial: int | None = None,
    signer: PrivateKey | None = None,
    issuer_name: x509.Name | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    now: datetime | None = None,
) -> Issued:
    """Build one certificate. Defaults: a valid clientAuth leaf (or CA when ``ca=True``)."""
    now = now or (issuer.now if issuer else NOW)
    priv = new_key(key)
    pub = priv.public_key()
    if issuer is None:
        sign_key = signer if signer is not None else priv
        iss_name = issuer_name if issuer_name is not None else _name(subject)
        iss_pub = pub
    else:
        sign_key = signer if signer is not None else issuer.key
        iss_name = issuer_name if issuer_name is not None else issuer.cert.subject
        iss_pub = issuer.key.public_key()
    if serial is None:
        serial = x509.random_serial_number()
    # cryptography's builder refuses serials of 160 bits and more (and zero or negative
    # ones): those are written into the TBS after it is built.
    wide_serial = serial <= 0 or serial.bit_length() >= 160
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(iss_name)
        .public_key(pub)
        .serial_number(1 if wide_serial else serial)
        .not_valid_before(not_before or now - timedelta(days=30))
        .not_valid_after(not_after or now + timedelta(days=365))
    )
    if ca is not None:
        b = b.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=bc_critical
        )
    if key_usage == "default":
        key_usage = _default_key_usage(ca)
    if key_usage is not None:
        assert not isinstance(key_usage, str)
        b = b.add_extension(key_usage, critical=True)
    if eku == "default":
        eku = None if ca else [CLIENT_AUTH]
    if eku is not None:
        b = b.add_extension(
            x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in eku]), critical=eku_critical
        )
    names = _general_names(san_dns, san_uri, san_email, san_ip)
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=san_critical)
    if permitted is not None or excluded is not None:
        b = b.add_extension(
            x509.NameConstraints(
                permitted_subtrees=list(permitted) if permitted is not None else None,
                excluded_subtrees=list(excluded) if excluded is not None else None,
            ),
            critical=True,
        )
    if ski:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
    if aki:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(iss_pub), critical=False
        )
    if crl_urls or crl_dps:
        b = b.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
                    for u in crl_urls
                ]
                + list(crl_dps)
            ),
            critical=False,
        )
    if freshest:
        b = b.add_extension(x509.FreshestCRL([dp(uri=freshest)]), critical=False)
    aia = [
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u))
        for u in ocsp_urls
    ] + [
        x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u)
        )
        for u in ca_issuers_urls
    ]
    if aia:
        b = b.add_extension(x509.AuthorityInformationAccess(aia), critical=False)
    for ext, critical in extensions:
        b = b.add_extension(ext, critical=critical)
    if isinstance(sign_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        cert = b.sign(sign_key, None)
    elif pss:
        h = _HASHES[hash_alg]()
        cert = b.sign(
            sign_key, h, rsa_padding=padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        )
    elif hash_alg in _LEGACY or wide_serial:
        cert = _resigned(b.sign(sign_key, hashes.SHA256()), sign_key, hash_alg, serial if wide_serial else None)
    else:
        cert = b.sign(sign_key, _HASHES[hash_alg]())
    return Issued(cert=cert, key=priv, parent=issuer, now=now)


# -- what cryptography's builder will not write ----------------------------------------------
# It refuses to sign with SHA-1 or MD5, has no ECDSA-with-MD5 at all, and refuses serial
# numbers of 160 bits and more, zero and negative ones. Tests need such certificates (to see
# what a validator makes of them), so the TBSCertificate is re-encoded by ``cryptography``'s
# ASN.1 encoder with the legacy AlgorithmIdentifier or the serial, and signed with the
# hazmat primitives.

_LEGACY = frozenset({"sha1", "md5"})
# (key kind, hash) → signature algorithm OID. ECDSA with MD5 has no OID of its own: it is
# ANSI X9.62 ecdsa-with-Specified, whose parameters name the hash (an algorithm no
# verifier here supports).
_LEGACY_OIDS = {
    ("rsa", "md5"): "1.2.840.113549.1.1.4",
    ("rsa", "sha1"): "1.2.840.113549.1.1.5",
    ("ec", "sha1"): "1.2.840.10045.4.1",
    ("ec", "md5"): "1.2.840.10045.4.3",
}
_MD5_OID = "1.2.840.113549.2.5"


@asn1.sequence
class _AlgNoParams:
    algorithm: x509.ObjectIdentifier


@asn1.sequence
class _AlgNull:
    algorithm: x509.ObjectIdentifier
    parameters: asn1.Null


@asn1.sequence
class _AlgHash:
    algorithm: x509.ObjectIdentifier
    parameters: _AlgNoParams


@asn1.sequence
class _Tbs:
    version: Annotated[int, asn1.Explicit(0)]
    serial: asn1.TLV
    signature: asn1.TLV
    issuer: asn1.TLV
    validity: asn1.TLV
    subject: asn1.TLV
    spki: asn1.TLV
    extensions: Annotated[asn1.TLV, asn1.Explicit(3)]


@asn1.sequence
class _Cert:
    tbs: _Tbs
    signature_algorithm: asn1.TLV
    signature: asn1.BitString


@asn1.sequence
class _One:
    value: asn1.TLV


def _tlv_of(der: bytes) -> Any:
    """One DER element as a TLV field value (the decoder makes them; the encoder writes them back)."""
    return asn1.decode_der(_One, der_sequence(der)).value


def _resigned(cert: x509.Certificate, key: Any, hash_alg: str, serial: int | None) -> x509.Certificate:
    """``cert`` re-signed by ``key`` with ``hash_alg`` (SHA-1 and MD5 too), with another serial if given."""
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"no re-signing with {type(key).__name__}")
    kind = "rsa" if isinstance(key, rsa.RSAPrivateKey) else "ec"
    t = asn1.decode_der(_Tbs, cert.tbs_certificate_bytes)
    alg_tlv = t.signature  # the builder's own (SHA-256) algorithm, unless a legacy one replaces it
    if hash_alg in _LEGACY:
        oid = x509.ObjectIdentifier(_LEGACY_OIDS[kind, hash_alg])
        alg: Any
        if kind == "rsa":
            alg = _AlgNull(algorithm=oid, parameters=asn1.Null())
        elif hash_alg == "md5":
            alg = _AlgHash(algorithm=oid, parameters=_AlgNoParams(algorithm=x509.ObjectIdentifier(_MD5_OID)))
        else:
            alg = _AlgNoParams(algorithm=oid)
        alg_tlv = _tlv_of(asn1.encode_der(alg))
    tbs = _Tbs(
        version=t.version,
        serial=t.serial if serial is None else _tlv_of(asn1.encode_der(serial)),
        signature=alg_tlv, issuer=t.issuer, validity=t.validity,
        subject=t.subject, spki=t.spki, extensions=t.extensions,
    )
    tbs_der = asn1.encode_der(tbs)
    h = _HASHES[hash_alg if hash_alg in _LEGACY else "sha256"]()
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(tbs_der, padding.PKCS1v15(), h)
    else:
        sig = key.sign(tbs_der, ec.ECDSA(h))
    der = asn1.encode_der(_Cert(tbs=tbs, signature_algorithm=alg_tlv, signature=asn1.BitString(sig, 0)))
    return x509.load_der_x509_certificate(der)


def root(cn: str | x509.Name = "Test Root CA", *, key: KeySpec = "ec", **kw: Unpack[CertOptions]) -> Issued:
    """A self-signed CA certificate (basicConstraints cA=TRUE, keyCertSign)."""
    kw.setdefault("ca", True)
    return make(cn, key=key, **kw)
