"""Differential: mtlscore's default policy against OpenSSL on seeded random PKIs.

``python fuzz/differential.py --seeds N [--start S] [--show K]`` generates N
PKIs (seed S, S+1, …): a root, 0-3 intermediates and a client certificate,
each certificate mutated at random (validity edges, basicConstraints,
keyUsage, EKU, name constraints of every form, wrong issuer keys, twins and
cross-signs, serial edge cases, empty subjects, AKI/SKI, SHA-1, critical
unknown extensions). Each chain is validated by mtlscore (default Policy) and
by OpenSSL through pyOpenSSL (X509Store + X509StoreContext, purpose
sslclient, the same fixed time, default flags). It prints the counts, and
exits 1 when a disagreement is not explained by :data:`ALLOWED`, each entry of
which names the docs/differences.md paragraph that explains it.

tests/test_differential.py runs a few hundred seeds of the same generator.
"""

from __future__ import annotations

import argparse
import ipaddress
import pathlib
import random
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from cryptography import x509  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402
from OpenSSL import crypto  # noqa: E402
from OpenSSL._util import lib as _ossl  # noqa: E402

from mtlscore import Reason, TrustStore, Validator, pki  # noqa: E402

NOW = pki.NOW
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string
SERVER = ExtendedKeyUsageOID.SERVER_AUTH.dotted_string
ANY_EKU = "2.5.29.37.0"
DOC = "docs/differences.md"

# -- the keys: made once per process, drawn without replacement inside one PKI -----------------

_POOL: dict[str, list[Any]] = {}
_KINDS = (("ec", 10), ("ec-p384", 4), ("rsa", 6))


def _pool() -> dict[str, list[Any]]:
    if not _POOL:
        for kind, n in _KINDS:
            _POOL[kind] = [pki.new_key(kind) for _ in range(n)]
    return _POOL


class _Keys:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.left = {k: list(v) for k, v in _pool().items()}
        for keys in self.left.values():
            rng.shuffle(keys)

    def take(self) -> Any:
        kind = self.rng.choice([k for k, _ in _KINDS if self.left[k]])
        return self.left[kind].pop()


# -- mutations --------------------------------------------------------------------------------
# name -> (roles it applies to, function(rng, keys) -> keyword changes for pki.make). The
# special keywords starting with "_" are handled by the generator (twins, cross-signs, names).


def _ku(*names: str) -> x509.KeyUsage:
    return pki.key_usage(*names)


def _raw_bc(value: str) -> tuple[x509.ExtensionType, bool]:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.19"), bytes.fromhex(value)), True


def _aki_of(key: Any) -> tuple[x509.ExtensionType, bool]:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False


UNKNOWN_CRITICAL = (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.4"), b"\x05\x00"), True)

# Name constraints of every form; the client certificate's names are drawn to fall in or out.
_SUBTREES: list[tuple[str, Callable[[], x509.GeneralName]]] = [
    ("dns", lambda: x509.DNSName("example.com")),
    ("dns", lambda: x509.DNSName("other.test")),
    ("dn", lambda: x509.DirectoryName(x509.Name.from_rfc4514_string("O=Diff Org"))),
    ("dn", lambda: x509.DirectoryName(x509.Name.from_rfc4514_string("O=Other Org"))),
    ("email", lambda: x509.RFC822Name("example.com")),
    ("ip", lambda: x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))),
    ("ip", lambda: x509.IPAddress(ipaddress.ip_network("192.0.2.0/24"))),
    ("uri", lambda: x509.UniformResourceIdentifier(".example.com")),
]


def _constraints(rng: random.Random, keys: _Keys) -> dict[str, Any]:
    subtrees = rng.sample(_SUBTREES, rng.randint(1, 2))
    if rng.random() < 0.6:
        return {"permitted": [f() for _, f in subtrees]}
    return {"excluded": [f() for _, f in subtrees]}


# RFC 5280 §4.1.2.2: up to 20 octets (2**159 and up take 21 octets of DER), positive.
_SERIALS_VALID = [1, 2**159, 2**159 + 1, 2**160 - 1]
_SERIALS_INVALID = [2**160, 2**168, 0, -1]

MUTATIONS: dict[str, tuple[tuple[str, ...], Callable[[random.Random, _Keys], dict[str, Any]]]] = {
    # validity, with the edges: the validation time equal to notBefore / notAfter
    "expired": (("root", "inter", "leaf"), lambda r, k: {"not_after": NOW - r.choice([SECOND, DAY, 300 * DAY]),
                                                                "not_before": NOW - 500 * DAY}),
    "not_yet_valid": (("root", "inter", "leaf"), lambda r, k: {"not_before": NOW + r.choice([SECOND, DAY]),
                                                                      "not_after": NOW + 500 * DAY}),
    "not_after_is_now": (("root", "inter", "leaf"), lambda r, k: {"not_after": NOW}),
    "not_before_is_now": (("root", "inter", "leaf"), lambda r, k: {"not_before": NOW}),
    # basicConstraints
    "ca_false": (("root", "inter"), lambda r, k: {"ca": False, "key_usage": _ku("key_cert_sign", "crl_sign")}),
    "no_bc": (("root", "inter"), lambda r, k: {"ca": None, "key_usage": r.choice(
        [_ku("key_cert_sign", "crl_sign"), None])}),
    "bc_not_critical": (("root", "inter"), lambda r, k: {"bc_critical": False}),
    "path_len_0": (("root", "inter"), lambda r, k: {"path_length": 0}),
    "path_len_1": (("root", "inter"), lambda r, k: {"path_length": 1}),
    "leaf_ca_true": (("leaf",), lambda r, k: {"ca": True, "eku": [CLIENT],
                                              "key_usage": _ku("digital_signature", "key_cert_sign")}),
    "leaf_ca_false_path_len": (("leaf",), lambda r, k: {"ca": None, "extensions": [_raw_bc("3003020100")]}),
    "leaf_no_bc": (("leaf",), lambda r, k: {"ca": None}),
    # keyUsage
    "no_ku": (("root", "inter", "leaf"), lambda r, k: {"key_usage": None}),
    "ca_ku_without_cert_sign": (("root", "inter"), lambda r, k: {"key_usage": _ku("crl_sign", "digital_signature")}),
    "leaf_ku_key_agreement": (("leaf",), lambda r, k: {"key_usage": _ku("key_agreement")}),
    "leaf_ku_cert_sign": (("leaf",), lambda r, k: {"key_usage": _ku("digital_signature", "key_cert_sign")}),
    "leaf_ku_encipherment": (("leaf",), lambda r, k: {"key_usage": _ku("key_encipherment")}),
    # extendedKeyUsage
    "leaf_eku_server": (("leaf",), lambda r, k: {"eku": [SERVER]}),
    "leaf_eku_any": (("leaf",), lambda r, k: {"eku": [ANY_EKU]}),
    "leaf_eku_client_any": (("leaf",), lambda r, k: {"eku": [CLIENT, ANY_EKU]}),
    "leaf_no_eku": (("leaf",), lambda r, k: {"eku": None}),
    "ca_eku_server": (("root", "inter"), lambda r, k: {"eku": [SERVER]}),
    "ca_eku_client": (("root", "inter"), lambda r, k: {"eku": [CLIENT]}),
    "ca_eku_any": (("root", "inter"), lambda r, k: {"eku": [ANY_EKU]}),
    # name constraints of every form, and the client certificate's names
    "name_constraints": (("root", "inter"), _constraints),
    "leaf_no_san": (("leaf",), lambda r, k: {"_names": "none"}),
    "leaf_cn_host": (("leaf",), lambda r, k: {"_names": r.choice(["cn:client.example.com", "cn:bank.test"])}),
    # The same, under an issuer constrained to dNSName example.com (the CN is checked as OpenSSL does).
    "leaf_cn_under_dns_constraint": (("leaf",), lambda r, k: {
        "_names": r.choice(["cn:client.example.com", "cn:bank.test"]), "_issuer_dns": "example.com"}),
    "leaf_san_forms": (("leaf",), lambda r, k: {"_names": "forms"}),
    "leaf_empty_subject": (("leaf",), lambda r, k: {"_names": r.choice(["empty", "empty-loose"])}),
    "ca_empty_subject": (("inter",), lambda r, k: {"_subject": x509.Name([])}),
    # signatures and keys
    "wrong_issuer_key": (("inter", "leaf"), lambda r, k: {"signer": k.take()}),
    "sha1": (("inter", "leaf"), lambda r, k: {"hash_alg": "sha1"}),
    "twin": (("inter",), lambda r, k: {"_twin": True}),
    "cross_signed": (("inter",), lambda r, k: {"_cross": True}),
    "missing_intermediate": (("inter",), lambda r, k: {"_missing": True}),
    # serial numbers
    "serial_edge": (("root", "inter", "leaf"), lambda r, k: {"serial": r.choice(_SERIALS_VALID)}),
    "serial_invalid": (("root", "inter", "leaf"), lambda r, k: {"serial": r.choice(_SERIALS_INVALID)}),
    # key identifiers
    "no_aki": (("inter", "leaf"), lambda r, k: {"aki": False}),
    "no_ski": (("root", "inter"), lambda r, k: {"ski": False}),
    "aki_mismatch": (("inter", "leaf"), lambda r, k: {"aki": False, "extensions": [_aki_of(k.take())]}),
    # unknown critical extensions
    "critical_unknown": (("root", "inter", "leaf"), lambda r, k: {"extensions": [UNKNOWN_CRITICAL]}),
}


# -- one generated case -----------------------------------------------------------------------


@dataclass
class Case:
    seed: int
    root: pki.Issued
    leaf: pki.Issued
    presented: list[pki.Issued]
    mutations: list[str] = field(default_factory=list)  # "name@role"

    @property
    def names(self) -> set[str]:
        return {m.split("@")[0] for m in self.mutations}


def _leaf_names(spec: str) -> dict[str, Any]:
    if spec == "none":
        return {"_subject": "CN=diff client,O=Diff Org", "san_dns": []}
    if spec.startswith("cn:"):
        return {"_subject": f"CN={spec[3:]},O=Diff Org", "san_dns": []}
    if spec == "forms":
        return {"_subject": "CN=diff client,O=Diff Org", "san_dns": ["client.example.com"],
                "san_email": ["ops@example.com"], "san_ip": ["10.1.2.3"], "san_uri": ["https://client.example.com/x"]}
    # An empty subject: RFC 5280 §4.2.1.6 wants the SAN then, marked critical.
    return {"_subject": x509.Name([]), "san_dns": ["client.example.com"], "san_critical": spec == "empty"}


def generate(seed: int, *, rate: float = 0.22) -> Case:
    """The PKI of ``seed``: each certificate draws a mutation with probability ``rate``."""
    rng = random.Random(seed)
    keys = _Keys(rng)
    depth = rng.randint(0, 3)
    roles = ["root", *["inter"] * depth, "leaf"]
    chosen: list[tuple[str, dict[str, Any]]] = []
    for role in roles:
        if rng.random() < rate:
            options = [n for n, (applies, _) in MUTATIONS.items() if role in applies]
            name = rng.choice(options)
            chosen.append((name, MUTATIONS[name][1](rng, keys)))
        else:
            chosen.append(("", {}))

    def base(level: int, role: str) -> dict[str, Any]:
        kw: dict[str, Any] = {"key": keys.take(), "hash_alg": rng.choice(["sha256", "sha256", "sha384", "sha512"])}
        kw["not_before"] = NOW - rng.randint(1, 400) * DAY
        kw["not_after"] = NOW + rng.randint(1, 400) * DAY
        if role == "leaf":
            kw["_subject"] = "CN=diff client,O=Diff Org"
            kw["san_dns"] = ["client.example.com"]
            kw["san_critical"] = False
        return kw

    nodes: list[pki.Issued] = []
    presented: list[pki.Issued] = []
    mutations: list[str] = []
    root_node: pki.Issued | None = None
    for level, role in enumerate(roles):
        kw = base(level, role)
        name, change = chosen[level]
        if name:
            mutations.append(f"{name}@{role}" if role != "inter" else f"{name}@inter{level}")
        change = dict(change)
        if "_names" in change:
            kw.update(_leaf_names(change.pop("_names")))
        kw.update(change)
        if role != "leaf" and level == len(roles) - 2 and (dns := chosen[-1][1].get("_issuer_dns")):
            kw["permitted"] = [*(kw.get("permitted") or []), x509.DNSName(dns)]
        subject = kw.pop("_subject", None)
        kw.pop("_issuer_dns", None)
        twin = kw.pop("_twin", False)
        cross = kw.pop("_cross", False)
        missing = kw.pop("_missing", False)
        if kw.get("hash_alg") == "sha1" and not _can_legacy(kw.get("signer") or (nodes[-1].key if nodes else None)):
            kw["hash_alg"] = "sha256"  # an Ed key cannot sign with SHA-1 (none are drawn; kept for safety)
        if role == "root":
            subject = f"CN=Diff Root {seed}" if subject is None else subject
            node = pki.root(subject, **kw)
            root_node = node
        elif role == "inter":
            subject = f"CN=Diff I{level}" if subject is None else subject
            node = nodes[-1].intermediate(subject, **kw)
            if not missing:
                presented.append(node)
            if twin:
                # Same name, another key, the same issuer: path building must pick by signature.
                presented.append(nodes[-1].intermediate(subject, key=keys.take()))
            if cross:
                # The same CA (name and key) also certified by an untrusted root.
                other = pki.root(f"CN=Other Root {seed}", key=keys.take())
                presented.append(other.intermediate(node.cert.subject, key=node.key))
        else:
            subject = "CN=diff client,O=Diff Org" if subject is None else subject
            node = nodes[-1].leaf(subject, **kw)
        nodes.append(node)
    assert root_node is not None
    rng.shuffle(presented)
    return Case(seed, root_node, nodes[-1], presented, mutations)


def _can_legacy(key: Any) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    return isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)


# -- the two validators -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    ok: bool
    why: str  # mtlscore: the reason value; OpenSSL: its error string
    detail: str = ""


def mtlscore(case: Case) -> Outcome:
    v = Validator(TrustStore(anchors=[case.root.pem])).validate(
        [case.leaf.der, *(c.der for c in case.presented)], at=NOW
    )
    return Outcome(v.ok, v.reason.value if v.reason else "", v.detail)


_OPENSSL_TIME = NOW.replace(tzinfo=None)


def openssl(case: Case) -> Outcome:
    """OpenSSL's verdict: the root trusted, purpose sslclient, time NOW, default flags."""
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(case.root.cert))
    store.set_time(_OPENSSL_TIME)
    # pyOpenSSL has no setter for the purpose: call OpenSSL's, on the store pyOpenSSL made.
    if _ossl.X509_STORE_set_purpose(store._store, _ossl.X509_PURPOSE_SSL_CLIENT) != 1:
        raise RuntimeError("X509_STORE_set_purpose failed")
    ctx = crypto.X509StoreContext(
        store,
        crypto.X509.from_cryptography(case.leaf.cert),
        chain=[crypto.X509.from_cryptography(c.cert) for c in case.presented],
    )
    try:
        ctx.verify_certificate()
    except crypto.X509StoreContextError as exc:
        code, depth, text = exc.errors[0], exc.errors[1], exc.errors[2]
        return Outcome(False, str(text), f"error {code} at depth {depth}")
    return Outcome(True, "")


# -- what is allowed to differ, and where it is explained --------------------------------------


@dataclass(frozen=True)
class Difference:
    """A deliberate difference: mtlscore refuses (with one of ``reasons``) what OpenSSL accepts,
    or accepts (``reasons`` empty) what OpenSSL refuses; explained at ``doc``."""

    reasons: frozenset[str]
    doc: str

    @property
    def mtlscore_accepts(self) -> bool:
        return not self.reasons


def _refuses(*reasons: Reason, doc: str) -> Difference:
    return Difference(frozenset(r.value for r in reasons), f"{DOC}#{doc}")


def _accepts(doc: str) -> Difference:
    return Difference(frozenset(), f"{DOC}#{doc}")


_NO_DIGITAL_SIGNATURE = "client-certificate-keyusage-without-digitalsignature"
_LEAF_PATH_LEN = "client-certificate-with-ca-false-and-a-pathlenconstraint"

# mutation name -> the difference it may produce.
ALLOWED: dict[str, Difference] = {
    "sha1": _refuses(Reason.WEAK_SIGNATURE_ALGORITHM, doc="sha-1-and-md5-signatures"),
    "serial_invalid": _refuses(Reason.MALFORMED, doc="serial-numbers"),
    "no_bc": _refuses(Reason.ISSUER_NOT_CA, doc="trust-anchor-without-basicconstraints"),
    "leaf_ku_key_agreement": _refuses(Reason.LEAF_KEY_USAGE, doc=_NO_DIGITAL_SIGNATURE),
    "leaf_no_eku": _refuses(Reason.INVALID_EKU, doc="client-certificate-without-extendedkeyusage"),
    "leaf_ku_cert_sign": _refuses(Reason.LEAF_KEY_USAGE, doc="keycertsign-on-a-client-certificate"),
    "leaf_ca_false_path_len": _refuses(Reason.MALFORMED, doc=_LEAF_PATH_LEN),
    "leaf_empty_subject": _refuses(Reason.MALFORMED, doc="empty-subjects"),
    "ca_empty_subject": _refuses(Reason.MALFORMED, doc="empty-subjects"),
    "ca_eku_any": _accepts(doc="a-cas-extendedkeyusage"),
    "aki_mismatch": _accepts(doc="authoritykeyidentifier-orders-candidates-it-does-not-decide"),
    # OpenSSL does not backtrack: it takes the first certificate that names the issuer
    # (and matches the AKI) and fails when that one leads nowhere.
    "cross_signed": _accepts(doc="path-building-backtracks"),
    "twin": _accepts(doc="path-building-backtracks"),
}


def explain(case: Case, ours: Outcome, theirs: Outcome) -> str | None:
    """The allow-list entry (mutation name) that explains a disagreement, or None."""
    for name in sorted(case.names):
        diff = ALLOWED.get(name)
        if diff is None:
            continue
        if diff.mtlscore_accepts and ours.ok and not theirs.ok:
            return name
        if not diff.mtlscore_accepts and not ours.ok and theirs.ok and ours.why in diff.reasons:
            return name
    return None


@dataclass
class Tally:
    cases: int = 0
    both_accept: int = 0
    both_reject: int = 0
    explained: Counter[str] = field(default_factory=Counter)
    unexplained: list[tuple[Case, Outcome, Outcome]] = field(default_factory=list)

    def add(self, case: Case, ours: Outcome, theirs: Outcome) -> None:
        self.cases += 1
        if ours.ok == theirs.ok:
            if ours.ok:
                self.both_accept += 1
            else:
                self.both_reject += 1
            return
        name = explain(case, ours, theirs)
        if name is None:
            self.unexplained.append((case, ours, theirs))
        else:
            self.explained[name] += 1

    def report(self, show: int = 10) -> str:
        lines = [
            f"{self.cases} cases: {self.both_accept} both accept, {self.both_reject} both reject, "
            f"{sum(self.explained.values())} explained differences, {len(self.unexplained)} unexplained",
        ]
        for name, n in sorted(self.explained.items()):
            lines.append(f"  {n:6d}  {name}: {ALLOWED[name].doc}")
        if self.unexplained:
            by = Counter(m.split("@")[0] for case, _, _ in self.unexplained for m in case.mutations)
            lines.append("  unexplained cases carry: " + ", ".join(f"{m} {n}" for m, n in by.most_common()))
        for case, ours, theirs in self.unexplained[:show]:
            lines.append(f"  UNEXPLAINED seed={case.seed} {case.mutations}: mtlscore {ours.ok} {ours.why} "
                         f"{ours.detail[:160]!r} / OpenSSL {theirs.ok} {theirs.why} {theirs.detail}")
        return "\n".join(lines)


def run(seeds: Sequence[int]) -> Tally:
    tally = Tally()
    with warnings.catch_warnings():
        # Non-positive serials are generated on purpose; cryptography warns when it reads them.
        warnings.simplefilter("ignore")
        for seed in seeds:
            case = generate(seed)
            tally.add(case, mtlscore(case), openssl(case))
    return tally


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1000, help="how many PKIs (default 1000)")
    ap.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--show", type=int, default=10, help="unexplained cases to print (default 10)")
    args = ap.parse_args(argv)
    tally = run(range(args.start, args.start + args.seeds))
    print(tally.report(args.show))
    return 1 if tally.unexplained else 0


if __name__ == "__main__":
    raise SystemExit(main())
