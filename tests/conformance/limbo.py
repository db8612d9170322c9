"""Run the x509-limbo vectors (tests/conformance/limbo.json.xz, vendored) through mtlscore.

Usable as a script (`python tests/conformance/limbo.py [PATH] [--verbose]`) and
from tests/conformance/test_limbo.py. Each case maps onto mtlscore's API:
trusted_certs → anchors, untrusted_intermediates → presented after the leaf,
validation_time → ``at``, max_chain_depth → ``Policy.max_intermediates``,
extended_key_usage (or serverAuth for SERVER, clientAuth for CLIENT cases) →
``Policy.required_eku``, crls → per-call CRLs, expected_peer_name(s) → the
RFC 6125 matcher :func:`mtlscore.x509.match_peer_name` on the accepted leaf.
"""

from __future__ import annotations

import json
import lzma
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mtlscore import Policy, TrustStore, Validator
from mtlscore.verify import CLIENT_AUTH, SERVER_AUTH
from mtlscore.verify.policy import EKU_NAMES
from mtlscore.x509 import match_peer_name

# Vendored (tests/conformance/README.md: source commit, licence): a plain clone runs every case.
DEFAULT_PATH = Path(__file__).resolve().parent / "limbo.json.xz"
# SHA-256 of the uncompressed JSON, as compiled from upstream (README.md here).
SHA256 = "09744f4ee05e87c6f234500217eb4c19e7d79fb55d22efd4223bf1c2dc3b4176"


def load_bytes(path: Path = DEFAULT_PATH) -> bytes:
    """The suite's JSON bytes; ``.xz`` files are decompressed (stdlib ``lzma``)."""
    data = path.read_bytes()
    return lzma.decompress(data) if path.suffix == ".xz" else data


def certificates(path: Path = DEFAULT_PATH, *, every: int = 1, trusted: bool = True) -> list[bytes]:
    """The distinct DER certificates of every ``every``-th case: its peer, its untrusted
    intermediates and, with ``trusted``, its trusted certificates; in the suite's order.

    What ``cryptography`` cannot load from PEM is left out (a few cases carry it on purpose).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    out: dict[bytes, None] = {}
    for case in json.loads(load_bytes(path))["testcases"][::every]:
        pems = [case.get("peer_certificate"), *case.get("untrusted_intermediates", [])]
        if trusted:
            pems += case.get("trusted_certs", [])
        for pem in pems:
            try:
                out[x509.load_pem_x509_certificate(str(pem).encode()).public_bytes(Encoding.DER)] = None
            except ValueError:
                continue
    return list(out)

# Cases whose expected result we deliberately do not share, each with why.
SKIPS: dict[str, str] = {
    # docs/reference.md#defaults: private PKIs omit key identifiers; chain building must not need them.
    "rfc5280::aki::leaf-missing-aki": "private-PKI interop: missing authorityKeyIdentifier accepted (docs/reference.md#defaults)",
    "rfc5280::aki::intermediate-missing-aki": "private-PKI interop: missing authorityKeyIdentifier accepted (docs/reference.md#defaults)",
    "rfc5280::aki::cross-signed-root-missing-aki": "private-PKI interop: missing authorityKeyIdentifier accepted (docs/reference.md#defaults)",
    "rfc5280::ski::root-missing-ski": "private-PKI interop: missing subjectKeyIdentifier accepted (docs/reference.md#defaults)",
    "rfc5280::ski::intermediate-missing-ski": "private-PKI interop: missing subjectKeyIdentifier accepted (docs/reference.md#defaults)",
    "webpki::aki::root-with-aki-missing-keyidentifier": "Web-PKI profile rule on a root's AKI; anchors are name+key (docs/reference.md#trust-anchors)",
    "webpki::aki::root-with-aki-authoritycertissuer": "Web-PKI profile rule on a root's AKI; anchors are name+key (docs/reference.md#trust-anchors)",
    "webpki::aki::root-with-aki-authoritycertserialnumber": "Web-PKI profile rule on a root's AKI; anchors are name+key (docs/reference.md#trust-anchors)",
    "webpki::aki::root-with-aki-all-fields": "Web-PKI profile rule on a root's AKI; anchors are name+key (docs/reference.md#trust-anchors)",
    "webpki::aki::root-with-aki-ski-mismatch": "Web-PKI profile rule on a root's AKI; anchors are name+key (docs/reference.md#trust-anchors)",
    "webpki::eku::ee-anyeku": "anyExtendedKeyUsage beside the required EKU is accepted (RFC 5280 §4.2.1.12); the CABF ban is an issuance rule",
    "webpki::eku::ee-critical-eku": "private-PKI interop: a critical EKU is accepted (docs/reference.md#defaults)",
    "webpki::eku::root-has-eku": "RFC 5280 allows EKU in a CA; it is honoured (EKU chaining), not forbidden",
    "webpki::ca-as-leaf": "conflicts with rfc5280::ca-as-leaf; RFC 5280 (private PKI) behaviour chosen",
    "webpki::ee-basicconstraints-ca": "RFC 5280 permits a leaf with cA=TRUE; the Web-PKI ban is not applied",
    "webpki::san::san-critical-with-nonempty-subject": "Web-PKI profile rule; RFC 5280 allows a critical SAN",
    "rfc5280::root-non-critical-basic-constraints": "private-PKI interop: a CA whose basicConstraints is not marked critical is still honoured",
    "webpki::cn::ipv4-hex-mismatch": "CABF BR 7.1.4.3 (the CN must repeat a SAN) is an issuance rule; names are matched against SANs only",
    "webpki::cn::ipv4-leading-zeros-mismatch": "CABF BR 7.1.4.3 (the CN must repeat a SAN) is an issuance rule; names are matched against SANs only",
    "webpki::cn::ipv6-uppercase-mismatch": "CABF BR 7.1.4.3 (the CN must repeat a SAN) is an issuance rule; names are matched against SANs only",
    "webpki::cn::ipv6-uncompressed-mismatch": "CABF BR 7.1.4.3 (the CN must repeat a SAN) is an issuance rule; names are matched against SANs only",
    "webpki::cn::ipv6-non-rfc5952-mismatch": "CABF BR 7.1.4.3 (the CN must repeat a SAN) is an issuance rule; names are matched against SANs only",
    "webpki::cn::punycode-not-in-san": "CABF BR 7.1.4.3 (the CN must repeat a SAN) is an issuance rule; names are matched against SANs only",
    "webpki::cn::utf8-vs-punycode-mismatch": "CABF BR 7.1.4.3 (the CN must repeat a SAN) is an issuance rule; names are matched against SANs only",
    "webpki::cn::not-in-san": "CABF BR 7.1.4.3 (the CN must repeat a SAN) is an issuance rule; names are matched against SANs only",
    "webpki::cn::case-mismatch": "CABF BR 7.1.4.3 (the CN must repeat a SAN) is an issuance rule; names are matched against SANs only",
    "rfc5280::nc::permitted-dns-match-noncritical": "conflicts with webpki::nc::permitted-dns-match-noncritical; non-critical name constraints are enforced, not refused",
    "rfc5280::pc::ica-noncritical-pc": "private-PKI interop: a non-critical policyConstraints is processed as if critical, as OpenSSL does (strict_ca_profile refuses it)",
}
# Policy.strict_ca_profile refuses the "conforming CAs MUST" encoding violations the
# default tolerates: the cases skipped for that tolerance are run, and those that
# expect the tolerance are skipped instead.
_STRICT_RUNS = {
    "rfc5280::aki::leaf-missing-aki",
    "rfc5280::aki::intermediate-missing-aki",
    "rfc5280::aki::cross-signed-root-missing-aki",
    "rfc5280::ski::root-missing-ski",
    "rfc5280::ski::intermediate-missing-ski",
    "rfc5280::root-non-critical-basic-constraints",
    "rfc5280::nc::permitted-dns-match-noncritical",
    "rfc5280::pc::ica-noncritical-pc",
}
STRICT_SKIPS: dict[str, str] = {
    **{k: v for k, v in SKIPS.items() if k not in _STRICT_RUNS},
    "webpki::nc::permitted-dns-match-noncritical": "conflicts with rfc5280::nc::permitted-dns-match-noncritical; the strict CA profile refuses non-critical name constraints (RFC 5280 §4.2.1.10)",
    "crl::issuer-no-keyusage-extension": "the strict CA profile refuses a CA certificate without keyUsage (RFC 5280 §4.2.1.3: conforming CAs MUST include it); the default profile accepts it",
    "cve::cve-2024-0567": "its trust anchor 'Root A' is issued by another CA yet has no authorityKeyIdentifier, which the strict CA profile refuses (RFC 5280 §4.2.1.1, as rfc5280::aki::cross-signed-root-missing-aki); the default profile runs the case",
}
FEATURE_SKIPS: dict[str, str] = {
    "pedantic-public-suffix-wildcard": "no Public Suffix List in mtlscore (wildcards under a public suffix are not refused)",
}


@dataclass
class Outcome:
    id: str
    expected: str
    actual: str | None  # None when skipped
    reason: str | None
    detail: str
    skip: str | None = None

    @property
    def kind(self) -> str:
        if self.skip is not None:
            return "skipped"
        if self.actual == self.expected:
            return "agreed"
        return "false_accept" if self.actual == "SUCCESS" else "false_reject"


def _time(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def run_case(case: dict[str, Any], *, strict: bool = False) -> Outcome:
    cid = case["id"]
    skip = (STRICT_SKIPS if strict else SKIPS).get(cid) or next(
        (FEATURE_SKIPS[f] for f in case.get("features") or () if f in FEATURE_SKIPS), None
    )
    if skip is not None:
        return Outcome(cid, case["expected_result"], None, None, "", skip)
    ekus = case.get("extended_key_usage") or []
    if ekus:
        required = EKU_NAMES.get(ekus[0], ekus[0])
    else:
        required = SERVER_AUTH if case["validation_kind"] == "SERVER" else CLIENT_AUTH
    # rfc5280:: cases test RFC 5280 itself: EKU absent means any (§4.2.1.12);
    # other prefixes use mtlscore's strict default. A leaf keyUsage is required
    # only when the case asks for one (TLS clients need digitalSignature, but
    # these vectors are profile-neutral).
    policy = Policy(
        required_eku=required,
        require_leaf_eku=cid.startswith("webpki::"),
        require_leaf_digital_signature="digitalSignature" in (case.get("key_usage") or []),
        max_intermediates=case["max_chain_depth"] if case.get("max_chain_depth") is not None else 10,
        strict_ca_profile=strict,
    )
    try:
        trust = TrustStore(anchors=list(case["trusted_certs"]))
    except Exception as exc:  # noqa: BLE001 - hostile or unsupported input must become a decision, not a crash
        return Outcome(cid, case["expected_result"], "FAILURE", "config", str(exc))
    validator = Validator(trust, policy)
    chain = [case["peer_certificate"], *case["untrusted_intermediates"]]
    verdict = validator.validate(chain, at=_time(case.get("validation_time")), crls=case.get("crls") or [])
    actual = "SUCCESS" if verdict.ok else "FAILURE"
    reason = verdict.reason.value if verdict.reason else None
    detail = verdict.detail
    names = case.get("expected_peer_names") or (
        [case["expected_peer_name"]] if case.get("expected_peer_name") else []
    )
    if verdict.ok and case["validation_kind"] == "SERVER" and names:
        leaf = verdict.path[0]
        for n in names:
            value = n["value"] if isinstance(n, dict) else n
            if not match_peer_name(leaf, value):
                actual, reason, detail = "FAILURE", "name_mismatch", f"{value!r} not in SAN"
                break
    return Outcome(cid, case["expected_result"], actual, reason, detail)


def run(path: Path = DEFAULT_PATH, *, strict: bool = False) -> list[Outcome]:
    data = json.loads(load_bytes(path))
    return [run_case(c, strict=strict) for c in data["testcases"]]


def summary(outcomes: list[Outcome]) -> str:
    counts = Counter(o.kind for o in outcomes)
    return (
        f"limbo: {len(outcomes)} cases: {counts['agreed']} agreed, {counts['false_accept']} false accept, "
        f"{counts['false_reject']} false reject, {counts['skipped']} skipped"
    )


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv and not argv[0].startswith("-") else DEFAULT_PATH
    strict = "--strict" in argv
    outcomes = run(path, strict=strict)
    verbose = "--verbose" in argv
    for o in outcomes:
        if o.kind in ("false_accept", "false_reject") or (verbose and o.kind == "skipped"):
            print(f"{o.kind:13} {o.id}: {o.reason or ''} {o.skip or o.detail[:150]}")
    print(summary(outcomes))
    return 1 if any(o.kind == "false_accept" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
