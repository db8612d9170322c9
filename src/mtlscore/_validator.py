"""Validator: presented chain + time → :class:`Verdict`.

Data flows one way (STYLE.md §6): bytes → parsed certificates → candidate
paths → checked path → revocation → identity → principal.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ._cert import Certificate, parse_certificate, split_certificates
from ._checks import check_key
from ._crl import ParsedCRL, check_certificate, parse_crl
from ._identity import Identity
from ._path import build_path
from ._policy import Policy
from ._reasons import CertificateRejected, Reason
from ._signature import SIGNATURES, SignatureCache, check_signature_algorithm
from ._trust import TrustStore
from ._verdict import Verdict

__all__ = ["INTERNAL_ERROR", "Validator"]

INTERNAL_ERROR = "internal error while validating"


class Validator:
    """Validate presented client-certificate chains against a trust store and policy.

    ``identity_map`` (optional) maps an accepted identity to a principal; no
    match rejects with ``identity_unmapped``. ``crls`` are CRLs (DER or PEM)
    consulted on every validation, in addition to those passed per call.
    Construction raises :class:`ConfigError` for an unusable configuration.
    """

    def __init__(
        self,
        trust: TrustStore,
        policy: Policy | None = None,
        *,
        identity_map: Any = None,
        crls: Iterable[bytes] = (),
        signatures: SignatureCache | None = None,
    ) -> None:
        from ._reasons import ConfigError

        self.trust = trust
        self.policy = policy or Policy()
        self.identity_map = identity_map
        self.signatures = signatures or SIGNATURES
        self.crls: list[ParsedCRL] = []
        for i, data in enumerate(crls):
            try:
                self.crls.append(parse_crl(data))
            except ValueError as exc:
                raise ConfigError(str(exc), key=f"crls[{i}]") from None

    # -- the public entry point ------------------------------------------------

    def validate(self, chain: Any, *, at: datetime, crls: Iterable[bytes] = ()) -> Verdict:
        """Validate ``chain`` (PEM, DER, or a list of either / of Certificates; leaf first) at ``at``.

        Never raises for bad input: every rejection is a Verdict with a Reason.
        """
        try:
            return self._validate(chain, at=at, crls=crls)
        except CertificateRejected as exc:
            return Verdict.reject(exc.reason, exc.detail)
        except Exception as exc:  # noqa: BLE001 - the front door must answer, not crash
            # A bug, not a decision: fuzzing asserts this never happens.
            return Verdict.reject(Reason.MALFORMED, f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}")

    # -- steps -----------------------------------------------------------------

    def _parse(self, chain: Any) -> tuple[Certificate, list[Certificate], list[str]]:
        p = self.policy
        if chain is None:
            raise CertificateRejected(Reason.NOT_PROVIDED, "no client certificate was presented")
        items = split_certificates(
            chain,
            max_cert_bytes=p.max_cert_bytes,
            max_chain_bytes=p.max_chain_bytes,
            max_count=p.max_presented,
        )
        first = items[0]
        leaf = first if isinstance(first, Certificate) else parse_certificate(first, max_bytes=p.max_cert_bytes)
        notes: list[str] = []
        presented: list[Certificate] = []
        for i, item in enumerate(items[1:], start=1):
            if isinstance(item, Certificate):
                presented.append(item)
                continue
            try:
                presented.append(parse_certificate(item, max_bytes=p.max_cert_bytes))
            except CertificateRejected as exc:
                # A junk extra certificate must not change the verdict; it is ignored.
                notes.append(f"presented certificate #{i} ignored: {exc.detail}")
        return leaf, presented, notes

    def _allowlisted(self, leaf: Certificate, at: datetime) -> Verdict | None:
        if self.trust.allowlisted_match(leaf) is None:
            return None
        # Exact match is the trust decision (the self-signed method, RFC 8705 §2.2);
        # the validity window and key/signature policy still hold.
        p = self.policy
        who = f"allowlisted certificate {leaf.describe()!r}"
        if at + p.clock_skew < leaf.not_before:
            return Verdict.reject(Reason.NOT_YET_VALID, f"{who} is not valid until {leaf.not_before.isoformat()}", path=(leaf,), position=0)
        if at - p.clock_skew > leaf.not_after:
            return Verdict.reject(Reason.EXPIRED, f"{who} expired at {leaf.not_after.isoformat()}; register a new one", path=(leaf,), position=0)
        if (bad := check_key(leaf, p)) is not None:
            return Verdict.reject(bad[0], f"{who}: {bad[1]}", path=(leaf,), position=0)
        if (bad := check_signature_algorithm(leaf, p)) is not None and leaf.self_issued is False:
            return Verdict.reject(bad[0], f"{who}: {bad[1]}", path=(leaf,), position=0)
        return Verdict(True, path=(leaf,), notes=("accepted by exact match with an allowlisted certificate",))

    def _revocation(
        self, path: list[Certificate], anchor_cert: Certificate, at: datetime, extra: list[ParsedCRL]
    ) -> tuple[Verdict | None, list[str]]:
        p = self.policy
        notes: list[str] = []
        if p.revocation == "off":
            return None, notes
        crls = self.crls + extra
        issuers = path[1:] + [anchor_cert]
        for pos, (cert, issuer) in enumerate(zip(path, issuers, strict=True)):
            if cert.sha256 == anchor_cert.sha256:
                continue
            st = check_certificate(cert, issuer, crls, at=at, skew=p.clock_skew, max_age=p.max_revocation_age)
            if st.status == "revoked":
                return Verdict.reject(Reason.REVOKED, st.detail + "; the holder needs a new certificate",
                                      path=tuple(path), position=pos), notes
            if st.status == "unavailable":
                # A CRL that was given for this issuer but cannot be used is an
                # operator problem to fix, not a missing answer: it fails in soft mode too.
                return Verdict.reject(
                    Reason.REVOCATION_UNAVAILABLE,
                    f"no usable revocation data for {cert.describe()!r}: {st.detail}",
                    path=tuple(path), position=pos,
                ), notes
            if st.status == "uncovered":
                if p.revocation == "hard":
                    return Verdict.reject(
                        Reason.REVOCATION_UNAVAILABLE,
                        f"revocation is hard-fail and there is no CRL for {cert.describe()!r} "
                        f"(issuer {cert.issuer_text!r})",
                        path=tuple(path), position=pos,
                    ), notes
                if crls:
                    notes.append(f"revocation of {cert.describe()!r} not checked: no CRL for its issuer (soft-fail)")
        return None, notes

    def _validate(self, chain: Any, *, at: datetime, crls: Iterable[bytes]) -> Verdict:
        leaf, presented, notes = self._parse(chain)
        allow = self._allowlisted(leaf, at)
        if allow is not None:
            return self._finish(allow, leaf, None, notes)
        result = build_path(leaf, presented, self.trust, self.policy, at=at, signatures=self.signatures)
        if not result.ok:
            assert result.failure is not None
            f = result.failure
            return Verdict.reject(f.reason, f.detail, path=tuple(result.failure_path), position=f.position,
                                  notes=tuple(notes))
        assert result.anchor is not None
        extra: list[ParsedCRL] = []
        for data in crls:
            try:
                extra.append(parse_crl(data))
            except ValueError as exc:
                return Verdict.reject(Reason.MALFORMED, f"a CRL given for this validation is unusable: {exc}")
        rejected, rev_notes = self._revocation(result.path, result.anchor.certificate, at, extra)
        if rejected is not None:
            return rejected
        path = tuple(result.path)
        if path[-1].sha256 != result.anchor.certificate.sha256:
            path = path + (result.anchor.certificate,)
        verdict = Verdict(True, path=path, anchor=result.anchor, notes=tuple(notes + rev_notes))
        return self._finish(verdict, leaf, result.anchor, [])

    def _finish(self, verdict: Verdict, leaf: Certificate, anchor: Any, notes: list[str]) -> Verdict:
        identity = Identity.from_certificate(leaf, anchor)
        principal = None
        if self.identity_map is not None:
            try:
                principal = self.identity_map.resolve(identity)
            except CertificateRejected as exc:
                return Verdict(False, exc.reason, exc.detail, path=verdict.path, anchor=verdict.anchor,
                               identity=identity, notes=verdict.notes)
        return Verdict(True, None, "", path=verdict.path, anchor=verdict.anchor, identity=identity,
                       notes=verdict.notes + tuple(notes), principal=principal)
