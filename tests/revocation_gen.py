"""Random PKIs with CRLs for the revocation differential (mtlscore against ``openssl verify``).

``generate(seed)`` builds one case from ``random.Random(seed)``: a root, 0–2
intermediates and a clientAuth leaf (P-256 keys, SHA-256, inside the default
``Policy``), plus the CRLs covering every link. One link of the path — the
*feature link*, a CA ``X`` and the certificate ``C`` it issued — gets one of the
RFC 5280 §5 / §6.3 features below; the other links get a plain CRL from their
issuer (which revokes the child now and then). Each case carries a category
(``feature:variant``) so disagreements are counted by kind, not one by one.

Features (see ``FEATURES``): several CRLs from one issuer; a separate
CRL-signing key certified under the CA's name; key rollover with self-issued
certificates; issuingDistributionPoint names (URI, directoryName,
nameRelativeToCRLIssuer) against the certificate's distribution points (or
none); onlySomeReasons partitions in the IDP and reasons in the DP; indirect
CRLs with certificateIssuer entries (and carry-over); delta CRLs; user/CA-only
CRLs; stale and not-yet-valid CRLs; unknown critical CRL and entry extensions;
and, on plain CRLs, certificateHold / removeFromCRL entries and issuer names
spelt differently under RFC 5280 §7.1.

Everything is built with ``cryptography``'s builders directly (not
``mtlscore.pki``), so the generator shares no code with the library under
test. Keys come from a pool made once per process: the pool is not seeded, but
nothing a verifier decides depends on the key values, so a seed reproduces the
same case structure and the same verdicts.

The openssl side runs ``openssl verify -crl_check_all -extended_crl -use_deltas
-purpose sslclient -attime T``; the mtlscore side a ``Validator`` with
``Policy(revocation="hard")`` and the CRLs given, at the same T. Both are
reduced to a class: ``ok``, ``revoked``, ``unavailable`` or ``other``.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

T = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_POOL_SIZE = 12
_POOL: list[ec.EllipticCurvePrivateKey] = []

URI_A = "http://crl.example/part-a.crl"
URI_B = "http://crl.example/part-b.crl"
URI_Z = "http://crl.example/indirect.crl"
URI_DELTA = "http://crl.example/delta.crl"
DIR_A = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Diff"),
                   x509.NameAttribute(NameOID.COMMON_NAME, "CRL Partition A")])
DIR_B = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Diff"),
                   x509.NameAttribute(NameOID.COMMON_NAME, "CRL Partition B")])
RDN_A = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "partition-a")])
RDN_B = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "partition-b")])
R = x509.ReasonFlags
ALL_REASONS = frozenset({R.key_compromise, R.ca_compromise, R.affiliation_changed, R.superseded,
                         R.cessation_of_operation, R.certificate_hold, R.privilege_withdrawn, R.aa_compromise})
# A partition of the reasons into two halves (onlySomeReasons).
PART_1 = frozenset({R.key_compromise, R.ca_compromise, R.aa_compromise, R.certificate_hold})
PART_2 = ALL_REASONS - PART_1


def _keys() -> list[ec.EllipticCurvePrivateKey]:
    if not _POOL:
        _POOL.extend(ec.generate_private_key(ec.SECP256R1()) for _ in range(_POOL_SIZE))
    return _POOL


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Diff"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def respell(n: x509.Name, how: str) -> x509.Name:
    """``n`` with the same meaning under RFC 5280 §7.1 but other bytes (or ``n`` for "same")."""
    if how == "same":
        return n
    attrs = []
    for a in n:
        v = str(a.value)
        if how == "recased":
            attrs.append(x509.NameAttribute(a.oid, v.swapcase()))
        elif how == "spaced":
            attrs.append(x509.NameAttribute(a.oid, "  " + v.replace(" ", "   ") + " "))
        else:
            attrs.append(x509.NameAttribute(a.oid, v, _type=_ASN1Type.PrintableString))
    return x509.Name(attrs)


def _ski(key: Any) -> bytes:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest


@dataclass
class Node:
    """A certificate and the private key of its subject."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def name(self) -> x509.Name:
        return self.cert.subject

    @property
    def serial(self) -> int:
        return int(self.cert.serial_number)


def ku(*bits: str) -> x509.KeyUsage:
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
    flags.update(dict.fromkeys(bits, True))
    return x509.KeyUsage(**flags)


def certificate(
    rng: random.Random,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer_name: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    key_usage: x509.KeyUsage | None = None,
    dps: Sequence[x509.DistributionPoint] = (),
    leaf: bool = False,
    serial: int | None = None,
    not_after: datetime = T + 365 * DAY,
) -> Node:
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else rng.randrange(1, 1 << 63))
        .not_valid_before(T - 30 * DAY)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(key_usage or (ku("key_cert_sign", "crl_sign") if ca else ku("digital_signature")),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier(_ski(key)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(_ski(signer), None, None), critical=False)
    )
    if leaf:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("client.example")]), critical=False)
    if dps:
        b = b.add_extension(x509.CRLDistributionPoints(list(dps)), critical=False)
    return Node(b.sign(signer, hashes.SHA256()), key)


@dataclass
class Entry:
    serial: int
    reason: x509.ReasonFlags | None = None
    cert_issuer: x509.Name | None = None  # certificateIssuer entry extension (indirect CRLs)
    extra: list[tuple[x509.ExtensionType, bool]] = field(default_factory=list)  # more entry extensions


def crl(
    issuer_name: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    entries: Sequence[Entry] = (),
    *,
    number: int = 1,
    this_update: datetime = T - HOUR,
    next_update: datetime | None = T + DAY,
    idp: x509.IssuingDistributionPoint | None = None,
    delta_base: int | None = None,
    freshest: bool = False,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> bytes:
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_name)
        .last_update(this_update)
        .next_update(next_update if next_update is not None else this_update + DAY)
        .add_extension(x509.CRLNumber(number), critical=False)
        # RFC 5280 §5.2.1: names the signing key; OpenSSL picks the CRL signer by it.
        .add_extension(x509.AuthorityKeyIdentifier(_ski(signer), None, None), critical=False)
    )
    if idp is not None:
        b = b.add_extension(idp, critical=True)
    if delta_base is not None:
        b = b.add_extension(x509.DeltaCRLIndicator(delta_base), critical=True)
    if freshest:
        b = b.add_extension(x509.FreshestCRL([_dp(full=[x509.UniformResourceIdentifier(URI_DELTA)])]),
                            critical=False)
    for ext, critical in extra:
        b = b.add_extension(ext, critical=critical)
    for e in entries:
        rb = x509.RevokedCertificateBuilder().serial_number(e.serial).revocation_date(this_update - HOUR)
        for ext, critical in e.extra:
            rb = rb.add_extension(ext, critical=critical)
        if e.reason is not None:
            rb = rb.add_extension(x509.CRLReason(e.reason), critical=False)
        if e.cert_issuer is not None:
            rb = rb.add_extension(x509.CertificateIssuer([x509.DirectoryName(e.cert_issuer)]), critical=True)
        b = b.add_revoked_certificate(rb.build())
    return b.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _dp(
    *,
    full: Sequence[x509.GeneralName] | None = None,
    relative: x509.RelativeDistinguishedName | None = None,
    reasons: frozenset[x509.ReasonFlags] | None = None,
    crl_issuer: Sequence[x509.GeneralName] | None = None,
) -> x509.DistributionPoint:
    return x509.DistributionPoint(list(full) if full else None, relative, reasons,
                                  list(crl_issuer) if crl_issuer else None)


def _idp(
    *,
    full: Sequence[x509.GeneralName] | None = None,
    relative: x509.RelativeDistinguishedName | None = None,
    user: bool = False,
    ca: bool = False,
    reasons: frozenset[x509.ReasonFlags] | None = None,
    indirect: bool = False,
) -> x509.IssuingDistributionPoint:
    return x509.IssuingDistributionPoint(list(full) if full else None, relative, user, ca, reasons, indirect, False)


# -- a case ----------------------------------------------------------------------------


@dataclass
class Case:
    seed: int
    category: str  # feature:variant, and "|plain-revoked" when another link's plain CRL revokes its child
    link: int  # the feature link: 0 = the root issues the next certificate down
    anchor: bytes
    chain: list[bytes]  # leaf first, then the intermediates the client presents
    extra: list[bytes]  # other certificates the operator has (CRL signers, self-issued rollover certs)
    crls: list[bytes]
    notes: list[str] = field(default_factory=list)


@dataclass
class _Link:
    """What one feature produced for the link X → C."""

    crls: list[bytes] = field(default_factory=list)
    extra: list[Node] = field(default_factory=list)
    # Nodes that must go into the presented chain, above C (rollover: the old-with-new cert).
    presented: list[Node] = field(default_factory=list)
    # Serials of CRL-path certificates that the parent link's CRL should list.
    revoke_above: list[int] = field(default_factory=list)


class _Builder:
    """One case: the path is built top-down, each link's feature deciding the child's DPs."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        keys = _keys()
        self.keys = self.rng.sample(keys, len(keys))
        self._next_key = 0

    def key(self) -> ec.EllipticCurvePrivateKey:
        k = self.keys[self._next_key % len(self.keys)]
        self._next_key += 1
        return k


FEATURES: dict[str, tuple[str, ...]] = {
    # feature: the links it may go on ("root": the root's link, "ca": an intermediate's link)
    "plain": ("root", "ca"),
    "multi": ("root", "ca"),
    "stale": ("root", "ca"),
    "rollover": ("root", "ca"),
    "signer": ("ca",),
    "idp": ("ca",),
    "reasons": ("ca",),
    "indirect": ("ca",),
    "delta": ("ca",),
    "scope": ("ca",),
    "critical": ("root", "ca"),
}
FEATURE_WEIGHTS = {"plain": 1, "multi": 2, "stale": 1, "rollover": 2, "signer": 3, "idp": 4, "reasons": 3,
                   "indirect": 3, "delta": 3, "scope": 1, "critical": 1}


def generate(seed: int) -> Case:
    """One random case from ``seed`` (deterministic up to key values)."""
    b = _Builder(seed)
    rng = b.rng
    # The feature first (the ones that need an intermediate's link are drawn more often), then a link for it.
    feature = rng.choices(list(FEATURES), weights=[FEATURE_WEIGHTS[f] for f in FEATURES])[0]
    depth = rng.choice((0, 1, 1, 2, 2, 2)) if "root" in FEATURES[feature] else rng.choice((1, 2))
    links = [lv for lv in range(depth + 1) if ("root" if lv == 0 else "ca") in FEATURES[feature]]
    link = rng.choice(links)
    # The root, unless the feature rolls its key.
    root_key = b.key()
    root_name = name("Diff Root")
    anchor = certificate(rng, root_name, root_key, root_name, root_key, ca=True)
    cas = [anchor]
    link_out = _Link()
    notes: list[str] = []
    chain_nodes: list[Node] = []  # presented, above the leaf
    extras: list[Node] = []
    crls: list[bytes] = []
    plain_above: dict[int, list[int]] = {}  # link index -> extra serials its CRL lists
    # Build downwards; the feature link decides its child's distribution points.
    made_child: list[Node] = []
    feature_state: dict[str, Any] = {}
    for level in range(depth + 1):
        x = cas[level]
        is_leaf = level == depth
        child_name = name("client") if is_leaf else name(f"Diff CA {level + 1}")
        child_key = b.key()
        if level == link:
            dps, feature_state = _plan(feature, rng, x, level, is_leaf, b)
        else:
            dps = [_dp(full=[x509.UniformResourceIdentifier(URI_A)])] if rng.random() < 0.3 else []
        signer_for_child = x.key
        issuer_name = x.name
        if level == link and feature == "rollover" and feature_state.get("child_under_new"):
            signer_for_child = feature_state["k2"]
        child = certificate(rng, child_name, child_key, issuer_name, signer_for_child, ca=not is_leaf,
                            dps=dps, leaf=is_leaf)
        made_child.append(child)
        if level == link:
            link_out = _finish(feature, feature_state, rng, x, child, cas[level - 1] if level else None, b)
            if link_out.revoke_above:
                plain_above.setdefault(level - 1, []).extend(link_out.revoke_above)
            extras.extend(link_out.extra)
            chain_nodes.extend(link_out.presented)
            crls.extend(link_out.crls)
            if feature == "rollover" and feature_state.get("anchor"):
                anchor = feature_state["anchor"]
        if not is_leaf:
            cas.append(child)
            chain_nodes.append(child)
    leaf = made_child[-1]
    # A separate CRL key one link up as well: the CRL signer's own status then comes from a CRL that
    # needs a signer path of its own (nested signer paths).
    nested = feature == "signer" and link >= 2 and feature_state["variant"].startswith("by-parent") \
        and rng.random() < 0.4
    # Plain CRLs for every other link: the issuer's own key, revoking the child now and then.
    for level in range(depth + 1):
        if level == link:
            continue
        x = cas[level]
        child = made_child[level]
        entries = [Entry(s, R.key_compromise) for s in plain_above.get(level, [])]
        if rng.random() < 0.12:
            entries.append(Entry(child.serial, R.ca_compromise if level < depth else R.key_compromise))
            notes.append(f"plain CRL of link {level} revokes {child.name.rfc4514_string()}")
        signer = x.key
        if nested and level == link - 1:
            signer = b.key()
            extras.append(certificate(rng, x.name, signer, cas[level - 1].name, cas[level - 1].key, ca=False,
                                      key_usage=ku("crl_sign")))
            feature_state["variant"] += ",nested"
        crls.append(crl(x.name, signer, entries, number=rng.randrange(1, 50)))
    rng.shuffle(crls)
    return Case(
        seed=seed,
        category=(f"{feature}:{feature_state['variant']}" if feature_state.get("variant") else feature)
        + ("|plain-revoked" if notes else ""),
        link=link,
        anchor=anchor.cert.public_bytes(serialization.Encoding.DER),
        chain=[leaf.cert.public_bytes(serialization.Encoding.DER)]
        + [n.cert.public_bytes(serialization.Encoding.DER) for n in reversed(chain_nodes)],
        extra=[n.cert.public_bytes(serialization.Encoding.DER) for n in extras],
        crls=crls,
        notes=notes + feature_state.get("notes", []),
    )


def _plan(
    feature: str, rng: random.Random, x: Node, level: int, is_leaf: bool, b: _Builder
) -> tuple[list[x509.DistributionPoint], dict[str, Any]]:
    """The child's distribution points for ``feature``, and what ``_finish`` needs."""
    st: dict[str, Any] = {"variant": "", "notes": []}
    uri_a = x509.UniformResourceIdentifier(URI_A)
    uri_b = x509.UniformResourceIdentifier(URI_B)
    if feature == "idp":
        cert_dp = rng.choice(["none", "uri-a", "uri-b", "dir-a", "rel-a", "dir-rel-a", "crlissuer-only",
                              "uri-b+dir-a", "two-dps"])
        spelling = rng.choice(["same", "same", "recased", "spaced"])  # §7.1: the same name either way
        idp_form = rng.choice(["uri-a", "dir-a", "rel-a", "rel-b", "uri-b", "uri-a+dir-b"])
        st["idp_form"] = idp_form
        st["variant"] = f"dp={cert_dp},idp={idp_form}"
        dps = {
            "none": [],
            "uri-a": [_dp(full=[uri_a])],
            "uri-b": [_dp(full=[uri_b])],
            "dir-a": [_dp(full=[x509.DirectoryName(DIR_A)])],
            "rel-a": [_dp(relative=RDN_A)],
            # the full name spelt out: the issuer's name plus the RDN (§5.2.5 / §4.2.1.13)
            "dir-rel-a": [_dp(full=[x509.DirectoryName(x509.Name([*respell(x.name, spelling).rdns, RDN_A]))])],
            "crlissuer-only": [_dp(crl_issuer=[x509.DirectoryName(x.name)])],
            # one DP with two names; two DPs
            "uri-b+dir-a": [_dp(full=[uri_b, x509.DirectoryName(DIR_A)])],
            "two-dps": [_dp(full=[uri_b]), _dp(relative=RDN_A)],
        }[cert_dp]
        return dps, st
    if feature == "reasons":
        form = rng.choice(["idp-both", "idp-one", "dp-split", "dp-split-one", "idp-and-dp"])
        st["form"] = form
        st["variant"] = form
        if form in ("dp-split", "dp-split-one"):
            return [_dp(full=[uri_a], reasons=PART_1), _dp(full=[uri_b], reasons=PART_2)], st
        if form == "idp-and-dp":
            return [_dp(full=[uri_a], reasons=PART_1)], st
        return ([_dp(full=[uri_a])] if rng.random() < 0.5 else []), st
    if feature == "indirect":
        form = rng.choice(["dp-crlissuer", "dp-crlissuer+uri", "no-dp"])
        st["form"] = form
        z_name = name("Diff Indirect CRL Issuer")
        st["z_name"] = z_name
        if form == "no-dp":
            return [], st
        full = [x509.UniformResourceIdentifier(URI_Z)] if form == "dp-crlissuer+uri" else None
        return [_dp(full=full, crl_issuer=[x509.DirectoryName(z_name)])], st
    if feature == "delta":
        return ([_dp(full=[uri_a])] if rng.random() < 0.3 else []), st
    if feature == "rollover":
        st["k2"] = b.key()
        st["anchor_new"] = rng.random() < 0.5
        st["crl_key"] = rng.choice(["new", "old"])
        # An intermediate that rolled its key may already issue with the new one (RFC 4210 §4.4).
        st["child_under_new"] = level > 0 and rng.random() < 0.5
        return [], st
    return [], st


def _finish(
    feature: str, st: dict[str, Any], rng: random.Random, x: Node, c: Node, parent: Node | None, b: _Builder
) -> _Link:
    """The CRLs (and extra certificates) of the feature link X → C."""
    out = _Link()
    listed = rng.random() < 0.45
    reason = rng.choice([R.key_compromise, R.superseded, R.cessation_of_operation, None])
    entry = Entry(c.serial, reason)
    others = [Entry(rng.randrange(1, 1 << 63), R.superseded) for _ in range(rng.randrange(0, 3))]
    uri_a = x509.UniformResourceIdentifier(URI_A)
    uri_b = x509.UniformResourceIdentifier(URI_B)

    def entries(listing: bool) -> list[Entry]:
        e = list(others)
        if listing:
            e.insert(rng.randrange(len(e) + 1), entry)
        return e

    if feature == "plain":
        # The CRL's issuer name spelt as the CA's name or in another case, spacing and string type:
        # RFC 5280 §7.1 compares names after case folding and whitespace folding, as OpenSSL does.
        spelling = rng.choice(["same", "same", "recased", "spaced", "printable"])
        # certificateHold revokes (§5.3.1); removeFromCRL belongs in delta CRLs only
        entry.reason = rng.choice([entry.reason, entry.reason, R.certificate_hold, R.remove_from_crl])
        st["variant"] = spelling + (f":listed-{entry.reason.name if entry.reason else 'no-reason'}" if listed
                                    else ":unlisted")
        out.crls.append(crl(respell(x.name, spelling), x.key, entries(listed), number=rng.randrange(1, 50)))
    elif feature == "multi":
        n = rng.choice((2, 3))
        which = rng.randrange(n) if listed else None
        # CRL i issued i×10 minutes before the newest one (i = 0 is the newest).
        for i in range(n):
            out.crls.append(crl(x.name, x.key, entries(which == i), number=100 - i,
                                this_update=T - HOUR - i * timedelta(minutes=10)))
        st["variant"] = "none-lists" if which is None else ("newest-lists" if which == 0 else "older-lists")
    elif feature == "critical":
        # RFC 5280 §5.2 / §5.3: a CRL with a critical extension (on the CRL or on any entry) that the
        # verifier does not process must not be used for any certificate.
        form = rng.choice(["crl-ext", "entry-ext", "entry-ext-other", "crl-ext+clean", "entry-ext+clean",
                           "entry-ext-other+clean"])
        unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.7"), b"\x05\x00")
        ents = entries(listed)
        base, clean = form.split("+")[0], form.endswith("+clean")
        if base.startswith("entry-ext"):
            # the unknown critical extension on the certificate's own entry, or on another entry
            target = Entry(c.serial, R.key_compromise) if base == "entry-ext" else Entry(rng.randrange(1, 1 << 63))
            ents = [e for e in ents if e.serial != target.serial] + [target]
            target.extra = [(unknown, True)]
            out.crls.append(crl(x.name, x.key, ents, number=61))
        else:
            out.crls.append(crl(x.name, x.key, ents, number=61, extra=[(unknown, True)]))
        if clean:
            out.crls.append(crl(x.name, x.key, entries(False), number=62))
        st["variant"] = form + (":listed" if listed or base == "entry-ext" else "")
    elif feature == "stale":
        form = rng.choice(["stale", "not-yet", "stale+fresh", "not-yet+fresh"])
        st["variant"] = form + (":listed" if listed else "")
        bad = ({"this_update": T - 3 * DAY, "next_update": T - DAY} if form.startswith("stale")
               else {"this_update": T + HOUR, "next_update": T + 2 * DAY})
        out.crls.append(crl(x.name, x.key, entries(listed), number=5, **bad))
        if "+fresh" in form:
            out.crls.append(crl(x.name, x.key, entries(False), number=6))
    elif feature == "signer":
        assert parent is not None
        form = rng.choice(["by-parent", "by-parent", "by-parent-revoked", "by-parent-no-crlsign", "self-issued",
                           "self-issued+own", "by-sibling", "by-other-root", "by-parent-expired"])
        st["variant"] = form + (":listed" if listed else "")
        sk = b.key()
        if form == "by-sibling":
            # a sibling CA under the same parent certifies a key under X's name: a path to the same
            # anchor, so §6.3.3 (f) is met by the letter
            sib_key = b.key()
            sib = certificate(rng, name("Diff Sibling CA"), sib_key, parent.name, parent.key, ca=True)
            out.extra.append(sib)
            out.crls.append(crl(sib.name, sib_key, [], number=1))  # the sibling's own (empty) CRL
            s = certificate(rng, x.name, sk, sib.name, sib_key, ca=False, key_usage=ku("crl_sign"))
        elif form == "by-other-root":
            # X's name certified under a root that is not trusted: no path to the anchor
            other_key = b.key()
            other = certificate(rng, name("Diff Root"), other_key, name("Diff Root"), other_key, ca=True)
            out.extra.append(other)
            s = certificate(rng, x.name, sk, other.name, other_key, ca=False, key_usage=ku("crl_sign"))
        elif form.startswith("by-parent"):
            usage = ku("digital_signature") if form == "by-parent-no-crlsign" else ku("crl_sign")
            # by-parent-expired: the signer's certificate expired before the validation time
            s = certificate(rng, x.name, sk, parent.name, parent.key, ca=False, key_usage=usage,
                            not_after=T - DAY if form == "by-parent-expired" else T + 365 * DAY)
            if form == "by-parent-revoked":
                out.revoke_above.append(s.serial)
        else:
            # self-issued by the CA: X's name on both sides, signed by X's key
            s = certificate(rng, x.name, sk, x.name, x.key, ca=False, key_usage=ku("crl_sign"))
            if form == "self-issued+own":
                # and a CRL from X's own key (which covers the signer certificate too)
                out.crls.append(crl(x.name, x.key, [], number=7))
        out.extra.append(s)
        out.crls.append(crl(x.name, sk, entries(listed), number=8))
    elif feature == "rollover" and parent is not None:
        # An intermediate X rolls from K1 (certified by its parent) to K2: new-with-old links K2 to X's
        # path; the child is issued under K1 or K2, the CRLs signed with either.
        k1, k2 = x.key, st["k2"]
        nwo = certificate(rng, x.name, k2, x.name, k1, ca=True)
        own = certificate(rng, x.name, k1, x.name, k2, ca=True)
        (out.presented if st["child_under_new"] else out.extra).append(nwo)
        out.extra.append(own)
        old_ca_crl = rng.random() < 0.6
        nwo_revoked = old_ca_crl and rng.random() < 0.25
        if old_ca_crl:
            # the self-issued certificates' own status, from the old key (CA certificates only)
            out.crls.append(crl(x.name, k1, [Entry(nwo.serial, R.superseded)] if nwo_revoked else [], number=3,
                                idp=_idp(ca=True)))
        crl_key = rng.choice(["new", "old"])
        out.crls.append(crl(x.name, k2 if crl_key == "new" else k1, entries(listed), number=9))
        st["variant"] = (f"ca,{'child-new' if st['child_under_new'] else 'child-old'},crl-{crl_key}"
                         + (",old-ca-crl" if old_ca_crl else "") + (",nwo-revoked" if nwo_revoked else "")
                         + (":listed" if listed else ""))
    elif feature == "rollover":
        # RFC 4210 §4.4: the root rolls from K1 (the anchor's key) to K2 with self-issued certificates.
        k1, k2 = x.key, st["k2"]
        nwo = certificate(rng, x.name, k2, x.name, k1, ca=True)  # new key, signed with the old
        own = certificate(rng, x.name, k1, x.name, k2, ca=True)  # old key, signed with the new
        new_root = certificate(rng, x.name, k2, x.name, k2, ca=True)
        form_anchor = "anchor-new" if st["anchor_new"] else "anchor-old"
        crl_key = k2 if st["crl_key"] == "new" else k1
        if st["anchor_new"]:
            st["anchor"] = new_root
            out.presented.append(own)  # the path runs C → old-with-new → new root
        else:
            out.extra.append(nwo)
        old_ca_crl = rng.random() < 0.6 and st["crl_key"] == "new" and not st["anchor_new"]
        if old_ca_crl:
            # the self-issued certificate's own status from the old key (PKITS keeps one such CRL)
            out.crls.append(crl(x.name, k1, [], number=3, idp=_idp(ca=True)))
        st["variant"] = f"{form_anchor},crl-{st['crl_key']}" + (",old-ca-crl" if old_ca_crl else "") + (
            ":listed" if listed else "")
        out.crls.append(crl(x.name, crl_key, entries(listed), number=9))
    elif feature == "idp":
        form = st["idp_form"]
        idp = {
            "uri-a": _idp(full=[uri_a]),
            "uri-b": _idp(full=[uri_b]),
            "dir-a": _idp(full=[x509.DirectoryName(DIR_A)]),
            "rel-a": _idp(relative=RDN_A),
            "rel-b": _idp(relative=RDN_B),
            "uri-a+dir-b": _idp(full=[uri_a, x509.DirectoryName(DIR_B)]),
        }[form]
        out.crls.append(crl(x.name, x.key, entries(listed), number=11, idp=idp))
        if rng.random() < 0.35:
            # a second partition that does not list the certificate
            other = _idp(full=[uri_b]) if form != "uri-b" else _idp(full=[uri_a])
            out.crls.append(crl(x.name, x.key, entries(False), number=12, idp=other))
            st["variant"] += ",second"
        st["variant"] += ":listed" if listed else ""
    elif feature == "reasons":
        form = st["form"]
        p1, p2 = _idp(reasons=PART_1), _idp(reasons=PART_2)
        in1 = rng.random() < 0.5
        e1 = Entry(c.serial, R.key_compromise) if listed and in1 else None
        e2 = Entry(c.serial, R.superseded) if listed and not in1 else None
        if form == "idp-both":
            out.crls += [crl(x.name, x.key, [e1] if e1 else [], number=21, idp=p1),
                         crl(x.name, x.key, [e2] if e2 else [], number=22, idp=p2)]
        elif form == "idp-one":
            out.crls += [crl(x.name, x.key, [e1] if e1 else [], number=21, idp=p1)]
        elif form in ("dp-split", "dp-split-one"):
            out.crls.append(crl(x.name, x.key, [e1] if e1 else [], number=23, idp=_idp(full=[uri_a])))
            if form == "dp-split":
                out.crls.append(crl(x.name, x.key, [e2] if e2 else [], number=24, idp=_idp(full=[uri_b])))
        else:  # idp-and-dp: the DP takes PART_1 from URI_A; a full CRL for PART_2 from the issuer
            out.crls.append(crl(x.name, x.key, [e1] if e1 else [], number=25, idp=_idp(full=[uri_a])))
            if rng.random() < 0.6:
                out.crls.append(crl(x.name, x.key, [e2] if e2 else [], number=26, idp=p2))
                st["variant"] += "+p2"
        st["variant"] += (":listed-p1" if e1 else ":listed-p2" if e2 else "")
    elif feature == "indirect":
        z_name = st["z_name"]
        zk = b.key()
        # Z is certified by X's issuer (same trust anchor), or by X itself
        z_by_issuer = rng.random() < 0.3
        certifier = x if z_by_issuer or parent is None else parent
        z_dps = [_dp(full=[x509.UniformResourceIdentifier(URI_B)])] if z_by_issuer else []
        z = certificate(rng, z_name, zk, certifier.name, certifier.key, ca=False, key_usage=ku("crl_sign"),
                        dps=z_dps)
        out.extra.append(z)
        other_ca = name("Diff Other CA")
        layout = rng.choice(["issuer-entry", "carried-from-issuer", "carried-from-other", "no-issuer-ext",
                             "not-indirect"])
        x_named = respell(x.name, rng.choice(["same", "same", "recased", "spaced", "printable"]))
        e: list[Entry] = [Entry(rng.randrange(1, 1 << 63), R.superseded, other_ca)]
        if layout == "issuer-entry":
            # the entry names X; listed or not
            e.append(Entry(c.serial if listed else rng.randrange(1, 1 << 63), R.key_compromise, x_named))
        elif layout == "carried-from-issuer":
            e = [Entry(rng.randrange(1, 1 << 63), R.superseded, x_named)]
            e.append(Entry(c.serial if listed else rng.randrange(1, 1 << 63), R.key_compromise))  # X carried over
        elif layout == "carried-from-other":
            e.append(Entry(c.serial, R.key_compromise))  # Other CA carried over: not C
        elif layout == "no-issuer-ext":
            e = [Entry(c.serial, R.key_compromise)] + e  # first entry: the CRL issuer Z, not X
        full = [x509.UniformResourceIdentifier(URI_Z)] if st["form"] == "dp-crlissuer+uri" else None
        idp = _idp(full=full, indirect=True) if layout != "not-indirect" else (_idp(full=full) if full else None)
        out.crls.append(crl(z_name, zk, e, number=31, idp=idp))
        z_revoked = rng.random() < 0.15
        if z_by_issuer:
            # Z's own status then comes from X's CRL for the distribution point Z names
            out.crls.append(crl(x.name, x.key, [Entry(z.serial, R.key_compromise)] if z_revoked else [],
                                number=33, idp=_idp(full=[x509.UniformResourceIdentifier(URI_B)])))
        elif z_revoked:
            out.revoke_above.append(z.serial)
        direct = rng.random() < 0.3
        if direct:
            # the CA's own full CRL beside it
            out.crls.append(crl(x.name, x.key, [], number=32))
        st["variant"] = f"{st['form']},{layout}" + (",z-by-issuer" if z_by_issuer else "") + (
            ",z-revoked" if z_revoked else "") + (
            ",direct" if direct else "") + (":listed" if listed and layout in ("issuer-entry", "carried-from-issuer")
                                            else "")
    elif feature == "delta":
        form = rng.choice(["fits", "fits", "base-too-old", "hold-removed", "scope-mismatch", "stale-delta",
                           "no-freshest", "delta-only", "stale-base", "older-delta", "two-deltas", "scoped-both",
                           "hold-in-delta"])
        fresh = form != "no-freshest"
        base_n = 40
        base_entries = entries(False)
        if form == "hold-removed":
            base_entries.append(Entry(c.serial, R.certificate_hold))
        delta_entries: list[Entry] = []
        if form == "hold-removed":
            delta_entries.append(Entry(c.serial, R.remove_from_crl))
        elif listed:
            delta_entries.append(Entry(c.serial, R.key_compromise))
        base_listed = listed and rng.random() < 0.3 and form != "hold-removed"
        if base_listed:
            base_entries.append(Entry(c.serial, R.superseded))
        if form in ("hold-in-delta", "two-deltas") and delta_entries:
            delta_entries[0].reason = R.certificate_hold  # on hold since the base: revoked (§5.3.1)
        # scoped-both: base and delta carry the same IDP (the certificate's DP may or may not name it)
        bidp = _idp(full=[uri_a]) if form == "scoped-both" else None
        if form != "delta-only":
            btimes = ({"this_update": T - 3 * DAY, "next_update": T - DAY} if form == "stale-base"
                      else {"this_update": T - 2 * HOUR})
            out.crls.append(crl(x.name, x.key, base_entries, number=base_n, freshest=fresh, idp=bidp,
                                **btimes))  # type: ignore[arg-type]
        dbase = base_n + 2 if form == "base-too-old" else base_n - rng.randrange(0, 3)
        didp = _idp(full=[uri_a]) if form in ("scope-mismatch", "scoped-both") else None
        dtimes = {"this_update": T - 3 * DAY, "next_update": T - DAY} if form == "stale-delta" else {}
        # older-delta: numbered at or below the complete CRL, so older than it (§5.2.4)
        dnum = base_n - 1 if form == "older-delta" else base_n + 5
        if form == "older-delta":
            dbase = base_n - 3
        out.crls.append(crl(x.name, x.key, delta_entries, number=dnum, delta_base=dbase, idp=didp,
                            **dtimes))  # type: ignore[arg-type]
        if form == "two-deltas":
            # a newer delta over the same base (deltas are cumulative, §5.2.4): still on hold, or released
            released = bool(delta_entries) and rng.random() < 0.5
            later = [Entry(c.serial, R.remove_from_crl if released else R.certificate_hold)] if delta_entries else []
            out.crls.append(crl(x.name, x.key, later, number=base_n + 7, delta_base=dbase,
                                this_update=T - HOUR + timedelta(minutes=5)))
            form += ",later-releases" if released else ""
        st["variant"] = form + (":listed" if delta_entries and form != "hold-removed" else "") + (
            ":base-listed" if base_listed else "")
    elif feature == "scope":
        child_is_ca = bool(c.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        form = rng.choice(["user-only", "ca-only", "both"])
        if form == "user-only":
            out.crls.append(crl(x.name, x.key, entries(listed), number=51, idp=_idp(user=True)))
        elif form == "ca-only":
            out.crls.append(crl(x.name, x.key, entries(listed), number=52, idp=_idp(ca=True)))
        else:
            in_user = rng.random() < 0.5
            out.crls.append(crl(x.name, x.key, entries(listed and in_user), number=53, idp=_idp(user=True)))
            out.crls.append(crl(x.name, x.key, entries(listed and not in_user), number=54, idp=_idp(ca=True)))
            form += ",in-user" if in_user else ",in-ca"
        st["variant"] = form + (",child-ca" if child_is_ca else ",child-leaf") + (":listed" if listed else "")
    return out


# -- the two verifiers -------------------------------------------------------------------------

OPENSSL = shutil.which("openssl")
# The first error line is the first failure: `openssl verify`'s callback carries on after some
# errors (an expired CRL, a CRL path's purpose, …) that stop X509_verify_cert without it.
_ERR = re.compile(r"^(\[CRL path\] )?error (\d+) at (\d+) depth lookup: .*$", re.MULTILINE)
# X509_V_ERR_* codes that mean "no usable revocation information".
_UNAVAILABLE = {
    3,  # unable to get certificate CRL
    8,  # CRL signature failure
    11,  # CRL is not yet valid
    12,  # CRL has expired
    15, 16,  # format error in CRL's lastUpdate / nextUpdate field
    33,  # unable to get CRL issuer certificate
    35,  # key usage does not include CRL signing
    36,  # unhandled critical CRL extension
    44,  # different CRL scope
    54,  # CRL path validation error
}


@dataclass(frozen=True)
class Outcome:
    cls: str  # ok / revoked / unavailable / other
    detail: str
    depth: int | None = None


def _pem(der: bytes, kind: str) -> bytes:
    import base64
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN " + kind.encode() + b"-----\n" + b"\n".join(lines) + b"\n-----END " + kind.encode() + b"-----\n"


def write_case(case: Case, d: Path) -> list[str]:
    """Write the case's files into ``d``; the ``openssl verify`` command line for it."""
    (d / "ca.pem").write_bytes(_pem(case.anchor, "CERTIFICATE"))
    (d / "untrusted.pem").write_bytes(b"".join(_pem(c, "CERTIFICATE") for c in case.chain[1:] + case.extra))
    (d / "crls.pem").write_bytes(b"".join(_pem(c, "X509 CRL") for c in case.crls))
    (d / "leaf.pem").write_bytes(_pem(case.chain[0], "CERTIFICATE"))
    cmd = [OPENSSL or "openssl", "verify", "-crl_check_all", "-extended_crl", "-use_deltas",
           "-purpose", "sslclient", "-attime", str(int(T.timestamp())), "-CAfile", str(d / "ca.pem")]
    if case.chain[1:] or case.extra:
        cmd += ["-untrusted", str(d / "untrusted.pem")]
    return [*cmd, "-CRLfile", str(d / "crls.pem"), str(d / "leaf.pem")]


def openssl_verdict(case: Case, workdir: Path | None = None) -> Outcome:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        cmd = write_case(case, Path(tmp))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    out = (r.stdout + r.stderr).strip()
    if r.returncode == 0 and out.endswith("OK"):
        return Outcome("ok", out)
    m = _ERR.search(out)
    if not m:
        return Outcome("other", out)
    code, depth = int(m.group(2)), int(m.group(3))
    if m.group(1):
        # Any failure on a CRL issuer's path: the CRL is unusable (X509_V_ERR_CRL_PATH_VALIDATION_ERROR).
        return Outcome("unavailable", m.group(0), None)
    cls = "revoked" if code == 23 else "unavailable" if code in _UNAVAILABLE else "other"
    return Outcome(cls, m.group(0), depth)


def mtlscore_verdict(case: Case) -> Outcome:
    from mtlscore import Policy, Reason, TrustStore, Validator

    # Both ways of giving CRLs (the Validator's, as `mtlscore check --crl` does, or per call) and of
    # having the extra certificates (the trust store's pool, or sent by the client after its chain),
    # by the seed's low bits: the verdict must not depend on them.
    per_call, presented = bool(case.seed & 1), bool(case.seed & 2)
    trust = TrustStore(anchors=[case.anchor], intermediates=[] if presented else case.extra)
    chain = case.chain + case.extra if presented else case.chain
    policy = Policy(revocation="hard")
    if per_call:
        v = Validator(trust, policy).validate(chain, at=T, crls=case.crls)
    else:
        v = Validator(trust, policy, crls=case.crls).validate(chain, at=T)
    if v.ok:
        return Outcome("ok", "accepted")
    cls = {Reason.REVOKED: "revoked", Reason.REVOCATION_UNAVAILABLE: "unavailable"}.get(v.reason, "other")
    return Outcome(cls, f"{v.reason.value if v.reason else None}: {v.detail}", v.position)
