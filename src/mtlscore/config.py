"""The configuration file (docs/reference.md#configuration-file): TOML read with tomllib.

One file serves ``check --config``, ``identity --config`` and ``serve``. Paths
are relative to the file. Unknown keys and bad values raise :class:`ConfigError`
naming the key (``policy.min_rsa_bits``, ``trust.anchors[1].not_after``…).
This module reads files, so it is outside the sans-IO core.
"""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .reasons import CertificateRejected, ConfigError
from .revocation.crl import parse_crl
from .verify.policy import Policy
from .verify.trust import TrustStore

if TYPE_CHECKING:
    from .decision.validator import Validator
    from .gateway.settings import ServerConfig
    from .gateway.shared import SharedSettings
    from .identity.identity_map import IdentityMap

__all__ = ["Config", "load_config", "parse_config", "parse_time", "read_account_files", "read_file"]

_SECTIONS = {"trust", "policy", "revocation", "accounts", "server", "shared"}
_TRUST_KEYS = {"anchors", "intermediates", "allowlisted"}
_ANCHOR_KEYS = {"path", "not_before", "not_after", "label"}
_POLICY_KEYS = {
    "required_eku": str,
    "require_leaf_eku": bool,
    "check_ca_eku": bool,
    "require_leaf_digital_signature": bool,
    "min_rsa_bits": int,
    "max_rsa_bits": int,
    "curves": list,
    "key_types": list,
    "signature_hashes": list,
    "max_intermediates": int,
    "max_cert_bytes": int,
    "max_chain_bytes": int,
    "max_presented": int,
    "max_path_work": int,
    "clock_skew_seconds": int,
    "certificate_policies": list,
    "require_explicit_policy": bool,
    "inhibit_policy_mapping": bool,
    "inhibit_any_policy": bool,
    "strict_ca_profile": bool,
}
_REVOCATION_KEYS = {
    "mode": str,
    "crls": list,
    "fetch": bool,
    "max_age_seconds": int,
    "mode_leaf": str,
    "mode_ca": str,
    "prefer": str,
    "ocsp_nonce": bool,
    "ocsp_get": bool,
    "failure_ttl_seconds": int,
    "fetch_issuers": bool,
    "max_fetched_issuers": int,
    "max_fetch_bytes": int,
}
# [revocation] key → Policy field, where the names differ.
_REVOCATION_FIELDS = {
    "mode": "revocation",
    "mode_leaf": "revocation_leaf",
    "mode_ca": "revocation_ca",
    "prefer": "revocation_prefer",
    "max_age_seconds": "max_revocation_age",
    "failure_ttl_seconds": "fetch_failure_ttl",
}


class GatewayConfig(Protocol):
    """What a runtime needs of a loaded configuration to serve it (:class:`Config` is one):
    ``mtlscore.runtimes.driver.build_snapshot`` and ``mtlscore.runtimes.startup.startup_warnings``
    take it."""

    @property
    def trust(self) -> TrustStore: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def server(self) -> ServerConfig | None: ...

    @property
    def accounts(self) -> IdentityMap | None: ...

    @property
    def shared(self) -> SharedSettings | None: ...

    @property
    def crls(self) -> Sequence[bytes]: ...

    @property
    def crl_files(self) -> Sequence[Path]: ...

    @property
    def files(self) -> Sequence[Path]: ...

    def validator(self) -> Validator: ...


@dataclass
class Config:
    """A loaded configuration: trust store, policy, CRLs, accounts and server settings."""

    path: Path | None
    base_dir: Path
    trust: TrustStore
    policy: Policy
    crls: list[bytes] = field(default_factory=list)
    accounts: IdentityMap | None = None  # from [[accounts]]
    server: ServerConfig | None = None  # from [server]
    raw: dict[str, object] = field(default_factory=dict)
    # The files the configuration names for [trust] and [revocation] (a gateway
    # watches them, so that replacing a CA bundle or a CRL reloads like editing the config).
    files: tuple[Path, ...] = ()
    # The files of ``crls``, in the same order (for the gateway's startup checks).
    crl_files: tuple[Path, ...] = ()
    shared: SharedSettings | None = None  # from [shared] (docs/shared-state.md)

    def validator(self) -> Validator:
        """A :class:`Validator` built from this configuration."""
        from .decision.validator import Validator

        return Validator(self.trust, self.policy, identity_map=self.accounts, crls=self.crls)


def _resolve(base_dir: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base_dir / path


def read_file(base_dir: Path, name: object, key: str) -> bytes:
    """Read a file named in the configuration, relative to ``base_dir``."""
    if not isinstance(name, str) or not name:
        raise ConfigError("must be a file name", key=key)
    path = _resolve(base_dir, name)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", key=key) from None


def read_account_files(items: object, base_dir: Path) -> dict[str, bytes]:
    """The contents of the files the ``[[accounts]]`` tables name (anchors, jwks_file), by name as
    written: what :func:`mtlscore.identity.identity_map.accounts_from_config` takes, so that the
    core opens no files. An unreadable one is a :class:`ConfigError` naming its key."""
    from .identity.identity_map import account_files

    return {name: read_file(base_dir, name, key) for key, name in account_files(items)}


def parse_time(value: object, key: str) -> datetime:
    """A timezone-aware datetime from a TOML datetime or an ISO 8601 string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{value!r} is not an ISO 8601 time", key=key) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, datetime):
        raise ConfigError("must be a date-time such as 2027-01-31T00:00:00Z", key=key)
    if value.tzinfo is None:
        raise ConfigError("needs a time zone (end it with Z for UTC)", key=key)
    return value.astimezone(UTC)


def _check_keys(table: object, allowed: set[str] | dict[str, type], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError("must be a table", key=where)
    for k in table:
        if k not in allowed:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(allowed))})", key=f"{where}.{k}")
    if isinstance(allowed, dict):
        for k, v in table.items():
            want = allowed[k]
            if (want is int and (isinstance(v, bool) or not isinstance(v, int))) or not isinstance(v, want):
                raise ConfigError(f"must be {want.__name__}, not {type(v).__name__}", key=f"{where}.{k}")
    return table


_MAX_SECONDS = 10 * 366 * 86400  # ten years: anything longer is a typo, and timedelta has limits


def _seconds(value: int, key: str) -> timedelta:
    if not 0 <= value <= _MAX_SECONDS:
        raise ConfigError(f"must be between 0 and {_MAX_SECONDS} seconds", key=key)
    return timedelta(seconds=value)


def _list(value: Any, key: str) -> list[Any]:
    if isinstance(value, str | dict):
        return [value]
    if not isinstance(value, list):
        raise ConfigError("must be a list", key=key)
    return value


def _trust(raw: object, base_dir: Path) -> TrustStore:
    table = _check_keys(raw, _TRUST_KEYS, "trust")
    store = TrustStore()
    for i, entry in enumerate(_list(table.get("anchors", []), "trust.anchors")):
        key = f"trust.anchors[{i}]"
        if isinstance(entry, dict):
            _check_keys(entry, _ANCHOR_KEYS, key)
            if "path" not in entry:
                raise ConfigError("an anchor table needs a path", key=key)
            data = read_file(base_dir, entry["path"], f"{key}.path")
            nb = parse_time(entry["not_before"], f"{key}.not_before") if "not_before" in entry else None
            na = parse_time(entry["not_after"], f"{key}.not_after") if "not_after" in entry else None
            label = entry.get("label", entry["path"])
            if not isinstance(label, str):
                raise ConfigError("must be a string", key=f"{key}.label")
            _add(store.add_anchor, data, key, label=label, not_before=nb, not_after=na)
        else:
            data = read_file(base_dir, entry, key)
            _add(store.add_anchor, data, key, label=str(entry))
    for i, entry in enumerate(_list(table.get("intermediates", []), "trust.intermediates")):
        key = f"trust.intermediates[{i}]"
        _add(store.add_intermediates, read_file(base_dir, entry, key), key)
    for i, entry in enumerate(_list(table.get("allowlisted", []), "trust.allowlisted")):
        key = f"trust.allowlisted[{i}]"
        _add(store.add_allowlisted, read_file(base_dir, entry, key), key)
    return store


def _add(method: Any, data: bytes, key: str, **kw: Any) -> None:
    try:
        method(data, **kw)
    except ConfigError as exc:
        raise ConfigError(exc.message, key=key) from None
    except CertificateRejected as exc:
        raise ConfigError(f"not a usable certificate: {exc.detail}", key=key) from None


def _policy(raw: object, revocation: dict[str, Any]) -> Policy:
    policy = _check_keys(raw, _POLICY_KEYS, "policy")
    kw: dict[str, Any] = {}
    for k, v in policy.items():
        if k == "clock_skew_seconds":
            kw["clock_skew"] = _seconds(v, "policy.clock_skew_seconds")
        elif isinstance(v, list):
            if not all(isinstance(x, str) for x in v):
                raise ConfigError("must be a list of strings", key=f"policy.{k}")
            kw[k] = frozenset(v)
        else:
            kw[k] = v
    for k, v in revocation.items():
        if k == "crls":
            continue
        if k in ("max_age_seconds", "failure_ttl_seconds"):
            v = _seconds(v, f"revocation.{k}")
        kw[_REVOCATION_FIELDS.get(k, k)] = v
    try:
        return Policy(**kw)
    except ConfigError as exc:
        section = "revocation" if exc.key and exc.key.startswith("revocation") else "policy"
        key = exc.key if exc.key and exc.key.startswith(section) else f"{section}.{exc.key}"
        raise ConfigError(exc.message, key=key) from None


def parse_config(data: dict[str, object], *, base_dir: Path, path: Path | None = None) -> Config:
    """Build a :class:`Config` from an already-parsed TOML document."""
    for k in data:
        if k not in _SECTIONS:
            raise ConfigError(f"unknown section (known: {', '.join(sorted(_SECTIONS))})", key=k)
    trust = _trust(data.get("trust", {}), base_dir)
    revocation = _check_keys(data.get("revocation", {}), _REVOCATION_KEYS, "revocation")
    policy = _policy(data.get("policy", {}), revocation)
    crls: list[bytes] = []
    crl_files: list[Path] = []
    for i, entry in enumerate(_list(revocation.get("crls", []), "revocation.crls")):
        key = f"revocation.crls[{i}]"
        blob = read_file(base_dir, entry, key)
        try:
            parse_crl(blob)
        except ValueError as exc:
            raise ConfigError(str(exc), key=key) from None
        crls.append(blob)
        crl_files.append(_resolve(base_dir, entry))
    accounts = None
    if "accounts" in data:
        from .identity.identity_map import accounts_from_config

        items = data["accounts"]
        if not isinstance(items, list):
            raise ConfigError("must be an array of tables ([[accounts]])", key="accounts")
        accounts = accounts_from_config(items, trust=trust, files=read_account_files(items, base_dir))
        _check_app_keys(items)
    server = None
    if "server" in data:
        from .gateway.settings import server_from_config

        server = server_from_config(data["server"], base_dir=base_dir)
    shared = _shared(data["shared"]) if "shared" in data else None
    return Config(
        path, base_dir, trust, policy, crls, accounts, server, data, _named_files(data, base_dir), tuple(crl_files),
        shared,
    )


def _shared(table: Any) -> SharedSettings:
    """``[shared]``: checked now, and the client it needs must be installed (the ``redis`` extra)."""
    from .gateway.shared import shared_from_config

    settings = shared_from_config(table)
    if importlib.util.find_spec("redis") is None:
        raise ConfigError("needs the Redis client: pip install 'mtlscore[redis]'", key="shared.redis")
    return settings


def _named_files(data: dict[str, Any], base_dir: Path) -> tuple[Path, ...]:
    """The trust and CRL files ``data`` names (already checked by the parsers above).

    Each key is read through :func:`_list`, as the parsers read it: a single
    file may be given as a string (or one anchor as a table).
    """
    trust = data.get("trust", {})
    revocation = data.get("revocation", {})
    names: list[Any] = []
    for entry in _list(trust.get("anchors", []), "trust.anchors"):
        names.append(entry["path"] if isinstance(entry, dict) else entry)
    names += _list(trust.get("intermediates", []), "trust.intermediates")
    names += _list(trust.get("allowlisted", []), "trust.allowlisted")
    names += _list(revocation.get("crls", []), "revocation.crls")
    return tuple(dict.fromkeys(_resolve(base_dir, n) for n in names))


def _check_app_keys(items: list[Any]) -> None:
    """The gateway's app-level keys of each account (tokens, algorithms, profile), checked at load:
    a mistake is a ConfigError naming ``accounts[n].<key>`` now, not a 500 at the first request."""
    from .gateway.appauth import AccountAuth
    from .identity.identity_map import APP_KEYS

    for n, table in enumerate(items):
        if not isinstance(table, dict) or "template" in table:
            continue
        account = str(table.get("id", ""))
        attrs = {k: table[k] for k in APP_KEYS if k in table}
        # A jwks_file was read and parsed by accounts_from_config: stand in an empty set for it.
        if "jwks_file" in table:
            attrs["jwks"] = {"keys": []}
        token = attrs.get("token")
        if isinstance(token, dict) and "jwks_file" in token:
            attrs["token"] = {**{k: v for k, v in token.items() if k != "jwks_file"}, "jwks": {"keys": []}}
        try:
            auth = AccountAuth.from_mapping(account, attrs)
        except ConfigError as exc:
            raise ConfigError(exc.message, key=(exc.key or "").replace(f"accounts.{account}", f"accounts[{n}]", 1)) \
                from None
        if auth.has_token_keys:
            _require_jwt_extra(f"accounts[{n}].{_token_key(table)}")


def _token_key(table: Mapping[str, object]) -> str:
    """Where an account's token keys are given: ``token.jwks``, ``jwks_uri``, ... (``profile`` for fapi2)."""
    token = table.get("token")
    names = ("jwks", "jwks_file", "jwks_uri")
    if isinstance(token, Mapping):
        for name in names:
            if name in token:
                return f"token.{name}"
    if table.get("method") != "self_signed_tls_client_auth":  # there jwks* are the client's own keys
        for name in names:
            if name in table:
                return name
    return "profile"


def _require_jwt_extra(key: str) -> None:
    """Bound tokens are verified with joserfc (the ``jwt`` extra): missing, say so now, naming the
    account's key, rather than answer every request of the account with an error."""
    try:
        from . import jwt  # noqa: F401 - it imports joserfc
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"certificate-bound tokens need the jwt extra ({exc.name} is not installed): "
            "pip install 'mtlscore[jwt]'",
            key=key,
        ) from None


def load_config(path: str | Path) -> Config:
    """Read and check a configuration file. Raises :class:`ConfigError`."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror or exc}", key=str(p)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", key=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"is not valid TOML: {exc}", key=str(p)) from None
    return parse_config(data, base_dir=p.resolve().parent, path=p)
