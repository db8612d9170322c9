"""``mtlscore identity FILE [--config F]``: the leaf's identity and the principal the rules give.

This command does not judge the chain; it only uses validation to learn which
anchor vouches for the leaf, because every mapping rule is scoped to anchors.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..identity.identity import Identity
from ..reasons import CertificateRejected, Reason
from ..x509.cert import Certificate
from .check import parse_at, read_certificates
from .common import JSON, PASSWORD, Command, arg

if TYPE_CHECKING:
    from ..config import Config
    from ..identity.identity_map import Principal

__all__ = ["COMMAND", "run"]


def _mapping(
    config: Config, certs: list[Certificate], at: datetime
) -> tuple[Identity, dict[str, Any], Principal | None]:
    """Validate (without the rules) to find the anchor, then explain the rules."""
    from ..decision.validator import Validator

    verdict = Validator(config.trust, config.policy, crls=config.crls).validate(certs, at=at)
    anchor = verdict.anchor if verdict.ok else None
    identity = Identity.from_certificate(certs[0], anchor)
    chain = {
        "verdict": "accepted" if verdict.ok else "rejected",
        "reason": verdict.reason.value if verdict.reason else None,
        "detail": verdict.detail,
        "anchor": anchor.name if anchor is not None else None,
    }
    if config.accounts is None:
        return identity, {"chain": chain, "rules": False, "scope_evaluated": False,
                          "detail": "the configuration has no [[accounts]] rules"}, None
    res = config.accounts.explain(identity)
    mapping = {
        "chain": chain,
        "rules": True,
        "scope_evaluated": anchor is not None,
        "detail": res.detail,
        "matched": list(res.matched),
        "out_of_scope": list(res.out_of_scope),
    }
    if res.principal is None and not verdict.ok and verdict.reason is Reason.UNTRUSTED:
        found = _self_signed(config, certs, at)
        if found is not None and found[0] is not None:
            mapping["detail"] = found[1]
            mapping["self_signed"] = True
            return identity, mapping, found[0]
        if found is not None:
            mapping["note"] = found[1]
            return identity, mapping, None
    if anchor is None:
        mapping["note"] = (
            "the chain did not validate to an anchor, so the rules' anchor scoping could not be "
            "evaluated; rules that match by name are listed in out_of_scope"
            if not verdict.ok else "the certificate is allowlisted (no anchor): only rules with "
            'anchors = "any" apply'
        )
    return identity, mapping, res.principal


def _self_signed(config: Config, certs: list[Certificate], at: datetime) -> tuple[Principal | None, str] | None:
    """RFC 8705 §2.2: the self_signed_tls_client_auth account that registered this certificate's
    key (registrations given inline or as files; a jwks_uri is not fetched by this command)."""
    from ..identity.self_signed import SelfSignedMatch, is_candidate, match

    clients = config.accounts.self_signed_clients if config.accounts is not None else ()
    if not clients or not is_candidate(certs[:1]):
        return None
    inline = [c for c in clients if c.jwks is not None]
    remote = [c.jwks_uri for c in clients if c.jwks_uri is not None]
    try:
        found = match(inline, certs[0], at=at, now=0.0, cache=None) if inline else None
    except CertificateRejected as exc:
        if exc.reason is not Reason.NOT_ALLOWLISTED:
            return None
        found = None
    if isinstance(found, SelfSignedMatch):
        return found.client.principal, (
            f"self_signed_tls_client_auth: key {found.jwk.get('kid') or certs[0].x5t_s256} is registered by "
            f"account {found.client.principal.id}"
        )
    if remote:
        return None, (f"{len(remote)} self_signed_tls_client_auth account(s) register keys at a jwks_uri "
                      f"({remote[0]}{', …' if len(remote) > 1 else ''}), which this command does not fetch")
    return None


def _scope_of(config: Config | None, rule_name: str) -> str:
    for rule in config.accounts.rules if config is not None and config.accounts is not None else ():
        if rule.name == rule_name:
            return f"only {rule.describe_scope()} may vouch for it"
    return "its anchors did not vouch for this certificate"


def _text(
    identity: Identity, mapping: dict[str, Any] | None, principal: Principal | None, config: Config | None = None
) -> str:
    lines = [f"subject:      {identity.subject_dn or '(empty)'}"]
    for rdn in identity.subject:
        lines.append("                " + " + ".join(f"{k}={v}" for k, v in rdn))
    lines += [f"issuer:       {identity.issuer_dn}", f"serial:       {identity.serial_hex}"]
    for kind, values in identity.san_by_kind().items():
        for v in values:
            lines.append(f"san {kind + ':':9} {v}")
    if identity.spiffe_id:
        lines.append(f"spiffe id:    {identity.spiffe_id}")
    elif identity.spiffe_problem:
        lines.append(f"spiffe id:    none ({identity.spiffe_problem})")
    lines += [f"x5t#S256:     {identity.x5t_s256}", f"sha256:       {identity.sha256_hex}",
              f"spki pin:     sha256/{identity.spki_sha256}"]
    if mapping is None:
        return "\n".join(lines)
    chain = mapping["chain"]
    if chain["verdict"] == "accepted":
        lines.append(f"anchor:       {chain['anchor'] or '(allowlisted certificate, no anchor)'}")
    elif mapping.get("self_signed"):
        lines.append("anchor:       none — a self-signed client known by its registered key (RFC 8705 §2.2)")
    else:
        lines.append(f"anchor:       none — the chain is rejected ({chain['reason']}: {chain['detail']})")
    if principal is not None:
        lines.append(f"principal:    {principal.id}" + (f"  groups={list(principal.groups)}"
                                                         if principal.groups else ""))
        lines.append(f"              ({mapping['detail']})")
    else:
        lines.append(f"principal:    none — {mapping['detail']}")
    for name in mapping.get("out_of_scope", ()):
        # Rules whose names match but whose anchors did not vouch for this certificate.
        lines.append(f"out of scope: {name} (matches by name; {_scope_of(config, name)})")
    if mapping.get("note"):
        lines.append(f"note:         {mapping['note']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    at = parse_at(args.at)
    certs = read_certificates(args.file, args.password)
    config = None
    if args.config:
        from ..config import load_config

        config = load_config(args.config)
    mapping = principal = None
    if config is not None:
        identity, mapping, principal = _mapping(config, certs, at)
    else:
        identity = Identity.from_certificate(certs[0])
    if args.json:
        out: dict[str, Any] = {"identity": identity.to_dict()}
        if mapping is not None:
            out["principal"] = principal.to_dict() if principal is not None else None
            out["mapping"] = mapping
        print(json.dumps(out, indent=2))
    else:
        print(_text(identity, mapping, principal, config))
    if mapping is not None and mapping["rules"] and principal is None:
        return 1
    return 0


COMMAND = Command(
    "identity",
    help="print the identity a certificate asserts (and the principal a config maps it to)",
    description="Print the identity of the first certificate in FILE (PEM, DER or PKCS#12; - for stdin); "
    "further certificates are the presented chain. With --config, also the principal the "
    "[[accounts]] rules give, or why none matched. Exit 0 ok, 1 malformed or unmapped, 2 usage error.",
    arguments=(
        arg("--config", metavar="FILE", help="configuration file with [trust] and [[accounts]]"),
        arg("--at", metavar="ISO8601", help="time to validate the chain at, to find its anchor"),
        JSON,
        PASSWORD,
        arg("file", metavar="FILE"),
    ),
    run=run,
)
