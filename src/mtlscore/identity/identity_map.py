"""IdentityMap: ordered rules that turn a vouched-for identity into a principal.

Every rule is scoped to the trust anchors allowed to vouch for it
(docs/identity.md "Mapping rules"): a certificate from partner Y's CA that carries partner X's exact DN does
not map to X. Account rules are all evaluated; exactly one account may match
(two is ambiguous and rejected, or refused at load time when it can be seen).
Template rules (Kubernetes style: CN → user, O → groups) are consulted, in
order, only when no account matched.

Lookups hash the identity's names, pins and SANs into an index, so resolving
costs the same with ten accounts or a hundred thousand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..reasons import CertificateRejected, ConfigError, Reason
from ..verify.trust import Anchor, TrustStore
from ..x509.cert import Certificate, load_certificates
from .identity import AnchorRef, Identity
from .rules import SELECTIVITY, Condition, _index_key, _parent, identity_keys, parse_condition

if TYPE_CHECKING:
    from .self_signed import SelfSignedClient

__all__ = [
    "ANY_ANCHOR", "IdentityMap", "IdentityResolver", "Principal", "Resolution", "Rule", "account_files",
    "accounts_from_config",
]

ANY_ANCHOR: Literal["any"] = "any"
AnchorLike = Anchor | AnchorRef | Certificate
# App-level account keys read by mtlscore.gateway.appauth.AccountAuth; carried in Principal.attributes.
APP_KEYS = frozenset({"api_key_sha256", "ip_allow", "rate_limit", "jwks", "token_issuer", "token_audience",
                      "jwks_uri", "token_algorithms", "profile", "method", "token"})
_RULE_KEYS = frozenset({"id", "anchors", "match", "template", "id_prefix", "groups", "attributes"})
_PIN_KINDS = frozenset({"thumbprint", "spki"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who the caller is: an account id, its groups, and the account's attributes.

    Equality is by ``id`` and ``groups``; ``attributes`` (read-only) carries the
    account's other configured keys (rate_limit, ip_allow, …) and ``rule`` names
    the rule that produced it.
    """

    id: str
    groups: tuple[str, ...] = ()
    attributes: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)
    rule: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "groups": list(self.groups), "rule": self.rule,
                "attributes": dict(self.attributes)}


class IdentityResolver(Protocol):
    """What the validator, the proxy layer and the ASGI middleware need of an identity map
    (:class:`IdentityMap` is one): the principal for an accepted identity.

    ``resolve`` raises :class:`CertificateRejected` (``identity_unmapped``) when no
    rule yields a principal; the verdict then rejects with that reason.
    """

    def resolve(self, identity: Identity) -> Principal: ...


@dataclass(frozen=True, slots=True)
class Rule:
    """One mapping rule: conditions (all must hold), an anchor scope, and what it yields.

    Build with :meth:`for_account` or :meth:`kubernetes`. ``scope`` is a set of
    (normalised subject, SPKI SHA-256) anchor keys, or ``"any"`` (only allowed
    with a thumbprint or SPKI pin, which no other CA can satisfy for a peer
    that proved possession of the key).
    """

    account: str  # "" for a template rule
    conditions: tuple[Condition, ...]
    scope: frozenset[tuple[str, str]] | Literal["any"]
    name: str = ""
    groups: tuple[str, ...] = ()
    attributes: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)
    template: str = ""  # "" or "kubernetes"
    id_prefix: str = ""
    scope_names: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def for_account(
        cls,
        account: str,
        *,
        anchors: Iterable[AnchorLike] | TrustStore | Literal["any"],
        groups: Sequence[str] = (),
        attributes: Mapping[str, object] | None = None,
        name: str = "",
        **match: object,
    ) -> Rule:
        """Map certificates vouched for by ``anchors`` and matching every ``match`` key to ``account``.

        Match keywords are the config keys (``subject_dn=``, ``cn=``, ``san_dns=``,
        ``thumbprint=``, …; a list means any of). Raises :class:`ConfigError`.
        """
        if not isinstance(account, str) or not account:
            raise ConfigError("an account id must be a non-empty string", key=f"{name or 'rule'}.id")
        label = name or f"account {account!r}"
        if not match:
            raise ConfigError("give at least one match key", key=f"{label}.match")
        conditions = _conditions(match, f"{label}.match")
        scope, names = _scope(anchors, conditions, f"{label}.anchors")
        return cls(account, conditions, scope, label, tuple(groups), _freeze(attributes), "",
                   "", names)

    @classmethod
    def kubernetes(
        cls,
        *,
        anchors: Iterable[AnchorLike] | TrustStore,
        id_prefix: str = "",
        name: str = "",
        attributes: Mapping[str, object] | None = None,
        **match: object,
    ) -> Rule:
        """Kubernetes-style template: principal id = ``id_prefix`` + CN, groups = the O values.

        Optional ``match`` keys narrow which certificates it applies to.
        """
        label = name or "kubernetes template"
        conditions = _conditions(match, f"{label}.match") if match else ()
        scope, names = _scope(anchors, conditions, f"{label}.anchors")
        if scope == ANY_ANCHOR:
            raise ConfigError("a template must name its anchors", key=f"{label}.anchors")
        return cls("", conditions, scope, label, (), _freeze(attributes), "kubernetes", id_prefix,
                   names)

    def in_scope(self, identity: Identity) -> bool:
        if self.scope == ANY_ANCHOR:
            return True
        return identity.anchor is not None and identity.anchor.scope_key in self.scope

    def names_match(self, identity: Identity) -> bool:
        return all(c.holds(identity) for c in self.conditions)

    def index_condition(self) -> Condition | None:
        """The most selective condition, whose values file this rule in the index."""
        if not self.conditions:
            return None
        return min(self.conditions, key=lambda c: SELECTIVITY.index(c.kind))

    def describe_scope(self) -> str:
        return "any anchor" if self.scope == ANY_ANCHOR else ", ".join(self.scope_names)


def _freeze(attributes: Mapping[str, object] | None) -> Mapping[str, object]:
    return MappingProxyType(dict(attributes or {}))


def _conditions(match: Mapping[str, object], prefix: str) -> tuple[Condition, ...]:
    return tuple(parse_condition(k, v, key=f"{prefix}.{k}") for k, v in match.items())


def _scope(
    anchors: Iterable[AnchorLike] | TrustStore | str,
    conditions: tuple[Condition, ...],
    key: str,
) -> tuple[frozenset[tuple[str, str]] | Literal["any"], tuple[str, ...]]:
    if isinstance(anchors, str):
        if anchors != ANY_ANCHOR:
            raise ConfigError('must be a list of anchors or "any"', key=key)
        if not any(c.kind in _PIN_KINDS for c in conditions):
            raise ConfigError(
                '"any" is only allowed with a thumbprint or spki pin; otherwise any CA you trust '
                "could vouch for this account — name its anchors",
                key=key,
            )
        return ANY_ANCHOR, ()
    refs = [AnchorRef.from_anchor(a) for a in anchors]
    if not refs:
        raise ConfigError("name at least one anchor allowed to vouch for this rule", key=key)
    return frozenset(r.scope_key for r in refs), tuple(dict.fromkeys(r.name for r in refs))


@dataclass(frozen=True, slots=True)
class Resolution:
    """What the rules say about one identity: a principal, or why not (``detail``)."""

    principal: Principal | None
    detail: str
    matched: tuple[str, ...] = ()  # rules whose names matched and whose scope held
    out_of_scope: tuple[str, ...] = ()  # rules whose names matched but whose scope did not


class IdentityMap:
    """Ordered rules mapping an :class:`Identity` to a :class:`Principal`.

    Raises :class:`ConfigError` at construction when two accounts would match
    the same certificate in a way visible from the rules alone.
    """

    def __init__(
        self, rules: Iterable[Rule], *, check_conflicts: bool = True, self_signed: Iterable[SelfSignedClient] = ()
    ) -> None:
        self._rules: tuple[Rule, ...] = tuple(rules)
        # RFC 8705 §2.2 clients known by a registered key (mtlscore.identity.self_signed.SelfSignedClient):
        # matched by the gateway when no CA vouches for a self-signed certificate.
        self.self_signed_clients: tuple[SelfSignedClient, ...] = tuple(self_signed)
        self._index: dict[tuple[str, ...], list[int]] = {}
        self._templates: list[int] = []
        self._accounts = frozenset(r.account for r in self._rules if not r.template)
        for i, rule in enumerate(self._rules):
            cond = rule.index_condition()
            if rule.template or cond is None:
                self._templates.append(i)
                continue
            for k in dict.fromkeys(cond.index_keys()):
                self._index.setdefault(k, []).append(i)
        if check_conflicts:
            self._check_conflicts()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    def __len__(self) -> int:
        return len(self._rules)

    # -- load-time ambiguity ----------------------------------------------

    def _check_conflicts(self) -> None:
        for j, b in enumerate(self._rules):
            if b.template:
                continue
            probes = {k for c in b.conditions for v in c.values for k in _probe_keys(c, v)}
            seen: set[int] = set()
            for k in probes:
                for i in self._index.get(k, ()):
                    if i == j or i in seen:
                        continue
                    seen.add(i)
                    a = self._rules[i]
                    if a.account == b.account or not _scopes_meet(a, b):
                        continue
                    # Every certificate that satisfies b satisfies a: both accounts would match.
                    if all(any(ca.implied_by(cb) for cb in b.conditions) for ca in a.conditions):
                        first, later = sorted((a, b), key=self._rules.index)
                        raise ConfigError(
                            f"{first.name} ({first.account!r}) and {later.name} ({later.account!r}) "
                            f"both match every certificate with "
                            f"{'; '.join(c.describe() for c in b.conditions)} through "
                            f"{a.describe_scope() if a.scope == ANY_ANCHOR else b.describe_scope()}; "
                            "make the rules disjoint (add a key) or scope them to different anchors",
                            key=later.conditions[0].key,
                        )

    # -- resolving --------------------------------------------------------

    def explain(self, identity: Identity) -> Resolution:
        """Evaluate the rules for ``identity`` without raising."""
        candidates: set[int] = set()
        for k in identity_keys(identity):
            candidates.update(self._index.get(k, ()))
        matched: list[Rule] = []
        out_of_scope: list[Rule] = []
        for i in sorted(candidates):
            rule = self._rules[i]
            if rule.names_match(identity):
                (matched if rule.in_scope(identity) else out_of_scope).append(rule)
        accounts = list(dict.fromkeys(r.account for r in matched))
        if len(accounts) > 1:
            names = " and ".join(f"{r.account!r} ({r.name})" for r in matched)
            return Resolution(None, f"the certificate {identity.subject_dn!r} matches accounts {names}; "
                              "a certificate must map to exactly one account",
                              tuple(r.name for r in matched), tuple(r.name for r in out_of_scope))
        if matched:
            rule = matched[0]
            principal = Principal(rule.account, rule.groups, rule.attributes, rule.name)
            return Resolution(principal, f"mapped by {rule.name}", (rule.name,),
                              tuple(r.name for r in out_of_scope))
        return self._templates_or_none(identity, out_of_scope)

    def _templates_or_none(self, identity: Identity, out_of_scope: list[Rule]) -> Resolution:
        skipped = [r.name for r in out_of_scope]
        for i in self._templates:
            rule = self._rules[i]
            if not rule.names_match(identity):
                continue
            if not rule.in_scope(identity):
                out_of_scope.append(rule)
                continue
            cn = identity.common_name
            if not cn:
                continue
            pid = rule.id_prefix + cn
            if pid in self._accounts:
                # A template must not mint the id of an explicit account: that account's
                # own rule (and its anchor scope) did not accept this certificate.
                return Resolution(None, f"{rule.name} would name the certificate {pid!r}, which is an "
                                  "explicit account that this certificate does not match",
                                  (), tuple(skipped))
            groups = tuple(dict.fromkeys(identity.values("O")))
            return Resolution(Principal(pid, groups, rule.attributes, rule.name),
                              f"mapped by {rule.name}", (rule.name,), tuple(skipped))
        anchor = identity.anchor
        if out_of_scope:
            scoped = "; ".join(f"{r.name} ({r.account or 'template'}) is scoped to "
                               f"{r.describe_scope()}" for r in out_of_scope)
            via = f"was vouched for by {anchor}" if anchor else "has no known anchor"
            detail = f"the certificate {identity.subject_dn!r} matches by name but {via}: {scoped}"
        else:
            detail = f"no account rule matches the certificate {identity.subject_dn!r}"
        return Resolution(None, detail, (), tuple(r.name for r in out_of_scope))

    def resolve(self, identity: Identity) -> Principal:
        """The principal for ``identity``; raises CertificateRejected(identity_unmapped) otherwise."""
        res = self.explain(identity)
        if res.principal is None:
            raise CertificateRejected(Reason.IDENTITY_UNMAPPED, res.detail)
        return res.principal


def _probe_keys(c: Condition, v: Any) -> list[tuple[str, ...]]:
    """Index keys of rules whose conditions this value may imply (for the conflict check)."""
    keys = [_index_key(c, v)]
    if c.kind == "subject_dn":
        keys += [("attr", name, value) for name, value in v[2]]
    elif c.kind == "san_dns" and not v.startswith("*"):
        keys.append(("san_dns_wild", _parent(v)))
    elif c.kind == "spiffe_id":
        keys.append(("spiffe_td", v[len("spiffe://") :].partition("/")[0]))
    return keys


def _scopes_meet(a: Rule, b: Rule) -> bool:
    if a.scope == ANY_ANCHOR or b.scope == ANY_ANCHOR:
        return True
    return bool(a.scope & b.scope)


# -- configuration -------------------------------------------------------------


def _config_anchors(
    raw: Any, key: str, trust: TrustStore, files: Mapping[str, bytes]
) -> list[Anchor] | Literal["any"]:
    if raw is None:
        if len(trust.anchors) == 1:
            return list(trust.anchors)
        raise ConfigError(
            f"required because [trust] has {len(trust.anchors)} anchors: name the CA file(s) allowed "
            'to vouch for this account (or "any" with a thumbprint/spki pin)',
            key=key,
        )
    if raw == ANY_ANCHOR:
        return ANY_ANCHOR
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ConfigError("must be a non-empty list of certificate files", key=key)
    out: list[Anchor] = []
    for n, item in enumerate(raw):
        k = f"{key}[{n}]"
        path_text = item.get("path") if isinstance(item, dict) else item
        if not isinstance(path_text, str):
            raise ConfigError("must be a file name", key=k)
        data = _contents(files, path_text, k)
        try:
            certs = load_certificates(data, max_cert_bytes=1 << 20, max_chain_bytes=64 << 20)
        except CertificateRejected as exc:
            raise ConfigError(f"{path_text}: {exc.detail}", key=k) from None
        for cert in certs:
            anchor = trust.find_anchor(cert)
            if anchor is None:
                hint = (' (it is allowlisted: use anchors = "any" with a thumbprint pin)'
                        if trust.allowlisted_match(cert) else "")
                raise ConfigError(
                    f"{path_text} ({cert.describe()}) is not one of the [trust] anchors{hint}", key=k)
            out.append(anchor)
    return out


def _strings(raw: Any, key: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ConfigError("must be a list of strings", key=key)
    return tuple(raw)


def account_files(items: object) -> list[tuple[str, str]]:
    """The files the ``[[accounts]]`` tables name, as ``(key, name)``: ``anchors`` certificate
    files and ``jwks_file`` / ``token.jwks_file`` key sets.

    Config loading reads them (relative to the configuration's folder) and hands their
    contents to :func:`accounts_from_config`: the core opens no files. Entries of the
    wrong type are left to :func:`accounts_from_config` to name.
    """
    out: list[tuple[str, str]] = []
    for n, table in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(table, dict):
            continue
        p = f"accounts[{n}]"
        anchors = table.get("anchors")
        for i, item in enumerate([anchors] if isinstance(anchors, str) and anchors != ANY_ANCHOR else
                                 anchors if isinstance(anchors, list) else ()):
            name = item.get("path") if isinstance(item, dict) else item
            if isinstance(name, str):
                out.append((f"{p}.anchors[{i}]", name))
        for where, holder in (("", table), ("token.", table.get("token"))):
            if isinstance(holder, dict) and isinstance(holder.get("jwks_file"), str):
                out.append((f"{p}.{where}jwks_file", holder["jwks_file"]))
    return out


def _contents(files: Mapping[str, bytes], name: str, key: str) -> bytes:
    data = files.get(name)
    if data is None:  # config loading reads every file account_files() names
        raise ConfigError(f"cannot read {name}: its contents were not given", key=key)
    return data


def accounts_from_config(
    items: object,
    *,
    trust: TrustStore,
    files: Mapping[str, bytes] | None = None,
) -> IdentityMap:
    """The IdentityMap of the ``[[accounts]]`` tables of docs/reference.md#configuration-file.

    ``anchors`` names certificate files that must be [trust] anchors; omitted, it
    means the only anchor when there is exactly one. ``files`` holds the contents of
    the files the tables name (:func:`account_files`), by name as written:
    :func:`mtlscore.config.read_account_files` reads them. Raises :class:`ConfigError`
    naming the key (``accounts[2].match.cn``) on a bad entry, a duplicate id, or two
    accounts that match one certificate.
    """
    files = files or {}
    if not isinstance(items, list):
        raise ConfigError("must be an array of tables ([[accounts]])", key="accounts")
    rules: list[Rule] = []
    self_signed: list[Any] = []
    ids: dict[str, str] = {}
    for n, table in enumerate(items):
        p = f"accounts[{n}]"
        if not isinstance(table, dict):
            raise ConfigError("must be a table", key=p)
        unknown = sorted(set(table) - _RULE_KEYS - APP_KEYS - {"jwks_file"})
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r}", key=f"{p}.{unknown[0]}")
        table = _inline_jwks_files(table, p, files)
        match = table.get("match", {})
        if not isinstance(match, dict):
            raise ConfigError("must be a table of match keys", key=f"{p}.match")
        extra = {k: table[k] for k in APP_KEYS if k in table}
        attrs = table.get("attributes", {})
        if not isinstance(attrs, dict):
            raise ConfigError("must be a table", key=f"{p}.attributes")
        attributes = {**attrs, **extra}
        template = table.get("template")
        anchors_raw = table.get("anchors")
        if template is not None:
            if template != "kubernetes":
                raise ConfigError(f"unknown template {template!r} (known: 'kubernetes')", key=f"{p}.template")
            if "id" in table or "groups" in table:
                raise ConfigError("a template takes the id from CN and groups from O", key=f"{p}.id")
            prefix = table.get("id_prefix", "")
            if not isinstance(prefix, str):
                raise ConfigError("must be a string", key=f"{p}.id_prefix")
            anchors = _config_anchors(anchors_raw, f"{p}.anchors", trust, files)
            if anchors == ANY_ANCHOR:
                raise ConfigError("a template must name its anchors", key=f"{p}.anchors")
            rules.append(Rule.kubernetes(anchors=anchors, id_prefix=prefix, name=p,
                                         attributes=attributes, **match))
            continue
        account = table.get("id")
        if not isinstance(account, str) or not account:
            raise ConfigError("every account needs a non-empty string id", key=f"{p}.id")
        if account in ids:
            raise ConfigError(f"{account!r} is already defined by {ids[account]}; list alternative "
                              "values (anchors, pins, names) in one entry", key=f"{p}.id")
        ids[account] = p
        if "id_prefix" in table:
            raise ConfigError("only a template takes id_prefix", key=f"{p}.id_prefix")
        groups = _strings(table.get("groups", []), f"{p}.groups")
        if table.get("method") == "self_signed_tls_client_auth":
            self_signed.append(_self_signed_client(account, groups, attributes, p))
            if not match:
                continue  # known by its registered key alone
        if not match:
            raise ConfigError("give at least one match key", key=f"{p}.match")
        conditions = _conditions(match, f"{p}.match")
        anchors = _config_anchors(anchors_raw, f"{p}.anchors", trust, files)
        scope, names = _scope(anchors, conditions, f"{p}.anchors")
        rules.append(Rule(account, conditions, scope, p, groups, _freeze(attributes), "", "", names))
    return IdentityMap(rules, self_signed=self_signed)


def _inline_jwks_files(table: dict[str, Any], p: str, files: Mapping[str, bytes]) -> dict[str, Any]:
    """``jwks_file`` (and ``token.jwks_file``) replaced by ``jwks``, the file's contents."""
    out = dict(table)
    for where, holder in (("", out), ("token.", out.get("token"))):
        if not isinstance(holder, dict) or "jwks_file" not in holder:
            continue
        key = f"{p}.{where}jwks_file"
        name = holder["jwks_file"]
        if "jwks" in holder or "jwks_uri" in holder:
            raise ConfigError("give one of jwks, jwks_file, jwks_uri", key=key)
        if not isinstance(name, str):
            raise ConfigError("must be a file name", key=key)
        data = _contents(files, name, key)
        holder = dict(holder)
        del holder["jwks_file"]
        holder["jwks"] = data.decode("utf-8", "replace")
        if where:
            out["token"] = holder
        else:
            out = holder
    return out


def _self_signed_client(account: str, groups: tuple[str, ...], attributes: dict[str, Any], p: str) -> Any:
    """The RFC 8705 §2.2 registration of an account: its own jwks (text or table) or jwks_uri."""
    from .jwks import check_jwks_uri, parse_jwks
    from .self_signed import SelfSignedClient

    raw, uri = attributes.get("jwks"), attributes.get("jwks_uri")
    if (raw is None) == (uri is None):
        raise ConfigError("self_signed_tls_client_auth needs the client's jwks or jwks_uri (one of them)",
                          key=f"{p}.jwks")
    if isinstance(raw, str) and raw.strip().lower().startswith(("http://", "https://")):
        raise ConfigError("is a URL; give it as jwks_uri (fetched and cached), not jwks", key=f"{p}.jwks")
    jwks = parse_jwks(raw, key=f"{p}.jwks") if raw is not None else None
    jwks_uri = check_jwks_uri(uri, key=f"{p}.jwks_uri") if uri is not None else None
    principal = Principal(account, groups, _freeze(attributes), p)
    return SelfSignedClient(principal, jwks, jwks_uri)
