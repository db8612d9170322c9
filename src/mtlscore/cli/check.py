"""``mtlscore check``: validate a presented chain and explain the verdict (DESIGN.md §6)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..decision.verdict import Verdict
from ..reasons import CertificateRejected, ConfigError
from .explain import explain

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="validate a client certificate chain and explain the verdict",
        description="Validate CHAIN (a PEM file, leaf first, or one DER certificate; - for stdin). "
        "Exit 0 accepted, 1 rejected, 2 usage error.",
    )
    p.add_argument("--trust", action="append", default=[], metavar="FILE", help="trust anchor(s), PEM/DER")
    p.add_argument("--intermediates", action="append", default=[], metavar="FILE",
                   help="intermediates pool used to complete the chain")
    p.add_argument("--allow", action="append", default=[], metavar="FILE",
                   help="allowlisted certificate(s), accepted on exact match")
    p.add_argument("--crl", action="append", default=[], metavar="FILE",
                   help="CRL(s); every certificate whose issuer one covers is checked")
    p.add_argument("--fetch", action="store_true",
                   help="fetch CRLs, OCSP answers and missing issuers named in the certificates (HTTP)")
    p.add_argument("--fetch-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="timeout of one fetch (default 5)")
    p.add_argument("--ocsp-response", action="append", default=[], metavar="FILE",
                   help="a DER OCSP response for a certificate of the chain (e.g. saved from a stapled handshake)")
    p.add_argument("--config", metavar="FILE", help="configuration file ([trust], [policy], [revocation])")
    p.add_argument("--at", metavar="ISO8601", help="validation time (default: now)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("chain", metavar="CHAIN")
    p.set_defaults(func=run)


class UsageError(Exception):
    pass


def read_input(name: str) -> bytes:
    """Bytes of a file, or of standard input for ``-``. Raises UsageError."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None


def parse_at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {value!r} is not an ISO 8601 time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def build_validator(args: argparse.Namespace) -> Any:
    from ..config import Config, load_config
    from ..decision.validator import Validator
    from ..verify.trust import TrustStore

    if args.config:
        config = load_config(args.config)
    else:
        from ..verify.policy import Policy

        config = Config(None, Path.cwd(), TrustStore(), Policy())
    store = config.trust
    for name in args.trust:
        _add(store.add_anchor, read_input(name), name, label=name)
    for name in args.intermediates:
        _add(store.add_intermediates, read_input(name), name)
    for name in args.allow:
        _add(store.add_allowlisted, read_input(name), name)
    crls = list(config.crls)
    for name in args.crl:
        from ..revocation.crl import parse_crl

        data = read_input(name)
        try:
            parse_crl(data)
        except ValueError as exc:
            raise UsageError(f"{name}: {exc}") from None
        crls.append(data)
    policy = config.policy.evolve(fetch=True, fetch_issuers=True) if args.fetch else config.policy
    return Validator(store, policy, identity_map=config.accounts, crls=crls)


def _add(method: Any, data: bytes, name: str, **kw: Any) -> None:
    try:
        method(data, **kw)
    except (ConfigError, CertificateRejected) as exc:
        msg = exc.message if isinstance(exc, ConfigError) else exc.detail
        raise UsageError(f"{name}: {msg}") from None


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    """The JSON object of DESIGN.md §6."""
    return {
        "verdict": "accepted" if verdict.ok else "rejected",
        "reason": verdict.reason.value if verdict.reason else None,
        "detail": verdict.detail,
        "path": [
            {
                "subject": c.subject_text,
                "issuer": c.issuer_text,
                "serial": format(c.serial, "x"),
                "sha256": c.fingerprint_hex,
                "not_after": c.not_after.isoformat(),
            }
            for c in verdict.path
        ],
        "identity": verdict.identity.to_dict() if verdict.identity is not None else None,
        "anchor": verdict.anchor.name if verdict.anchor is not None else None,
        "principal": _principal(verdict.principal),
        "notes": list(verdict.notes),
    }


def _principal(principal: Any) -> Any:
    if principal is None:
        return None
    to_dict = getattr(principal, "to_dict", None)
    return to_dict() if callable(to_dict) else str(principal)


def explain_text(verdict: Verdict) -> str:
    """The verdict explained to a person."""
    lines: list[str] = []
    if verdict.ok:
        lines.append("ACCEPTED")
        if verdict.anchor is not None:
            lines.append(f"  trusted via anchor: {verdict.anchor.name}")
    else:
        assert verdict.reason is not None
        what, fix = explain(verdict.reason)
        lines.append(f"REJECTED: {verdict.reason.value}")
        lines.append(f"  what:   {what}")
        lines.append(f"  why:    {verdict.detail}")
        lines.append(f"  fix:    {fix}")
    if verdict.path:
        lines.append("  path (leaf first):" if verdict.ok else "  closest path tried (leaf first):")
        for i, c in enumerate(verdict.path):
            mark = " <-- here" if verdict.position == i and not verdict.ok else ""
            lines.append(f"    [{i}] {c.describe()}{mark}")
            lines.append(f"        issuer {c.issuer_text}; serial {c.serial:x}; "
                         f"valid {c.not_before:%Y-%m-%d} .. {c.not_after:%Y-%m-%d}")
            lines.append(f"        sha256 {c.fingerprint_hex}")
    if verdict.identity is not None:
        ident = verdict.identity
        lines.append(f"  identity: {ident.subject_dn or '(empty subject)'}  x5t#S256={ident.x5t_s256}")
    if verdict.principal is not None:
        lines.append(f"  principal: {_principal(verdict.principal)}")
    for note in verdict.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        at = parse_at(args.at)
        validator = build_validator(args)
        chain = read_input(args.chain)
        ocsp = [read_input(name) for name in args.ocsp_response]
    except UsageError as exc:
        print(f"mtlscore check: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"mtlscore check: configuration error: {exc}", file=sys.stderr)
        return 2
    if not len(validator.trust) and not validator.trust.allowlisted and not args.json:
        print("mtlscore check: warning: no trust anchors given (--trust, --allow or --config); "
              "nothing can be accepted", file=sys.stderr)
    if args.fetch:
        from ..runtimes.fetch_asyncio import validate_with_fetch

        verdict = validate_with_fetch(validator, chain, at=at, timeout=args.fetch_timeout, ocsp_responses=ocsp)
    else:
        verdict = validator.validate(chain, at=at, ocsp_responses=ocsp)
    if args.json:
        print(json.dumps(verdict_json(verdict), indent=2))
    else:
        print(explain_text(verdict))
    return 0 if verdict.ok else 1
