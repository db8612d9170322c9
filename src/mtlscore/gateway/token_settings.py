"""An account's token settings: which JWS algorithms, the FAPI 2.0 profile, its TLS rules.

Read by :class:`mtlscore.gateway.appauth.AccountAuth` from an ``[[accounts]]`` table;
the TLS engines use :data:`FAPI2_TLS12_CIPHERS` for ``[server] tls_profile = "fapi2"``.
"""

from __future__ import annotations

from ..identity.binding import METHODS
from ..identity.jwks import JwkSet, parse_jwks
from ..reasons import ConfigError

__all__ = [
    "DEFAULT_TOKEN_ALGORITHMS",
    "FAPI2_ALGORITHMS",
    "FAPI2_TLS12_CIPHERS",
    "METHODS",
    "PROFILES",
    "TOKEN_ALGORITHMS",
    "TOKEN_TABLE_KEYS",
    "fapi2_tls_problem",
    "jwks_value",
    "token_algorithms",
]

# The algorithms an account accepts by default; RS256 stays for compatibility, FAPI 2.0
# (Security Profile §5.4.1) allows only PS256, ES256 and EdDSA.
DEFAULT_TOKEN_ALGORITHMS = ("PS256", "ES256", "RS256")
FAPI2_ALGORITHMS = ("PS256", "ES256", "EdDSA")
TOKEN_ALGORITHMS = frozenset(
    {"PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "EdDSA"}
)
# FAPI 2.0 Security Profile §5.2.1 / RFC 9325 §4.2: TLS 1.2 only with these suites (OpenSSL
# names); TLS 1.3 suites are all acceptable.
FAPI2_TLS12_CIPHERS = frozenset({
    "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384",
})
PROFILES = ("fapi2",)
TOKEN_TABLE_KEYS = frozenset({"jwks", "jwks_uri", "algorithms", "issuer", "audience"})


def jwks_value(raw: object, key: str) -> JwkSet | None:
    """A token (or client) JWK Set given inline, or None; a URL here is a ConfigError naming ``key``."""
    if raw is None:
        return None
    if isinstance(raw, str) and raw.strip().lower().startswith(("http://", "https://")):
        raise ConfigError("is a URL; give it as jwks_uri (fetched and cached), not jwks", key=key)
    # An empty set is the verifier's to refuse (it names the token's kid); a broken one is ours.
    return parse_jwks(raw, key=key, allow_empty=True)


def token_algorithms(raw: object, profile: str | None, key: str) -> tuple[str, ...]:
    """The accepted JWS algorithms (asymmetric only, FAPI 2.0's under that profile); ConfigError naming ``key``."""
    if raw is None:
        return FAPI2_ALGORITHMS if profile == "fapi2" else DEFAULT_TOKEN_ALGORITHMS
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw):
        raise ConfigError("must be a non-empty list of JWS algorithm names", key=key)
    bad = [a for a in raw if a not in TOKEN_ALGORITHMS]
    if bad:
        # Asymmetric only: an HMAC alg would let anyone holding the public JWKS forge tokens.
        raise ConfigError(f"{bad[0]!r} is not allowed; choose from {', '.join(sorted(TOKEN_ALGORITHMS))}", key=key)
    if profile == "fapi2":
        outside = [a for a in raw if a not in FAPI2_ALGORITHMS]
        if outside:
            raise ConfigError(f"profile fapi2 allows only {', '.join(FAPI2_ALGORITHMS)}, not {outside[0]}", key=key)
    return tuple(dict.fromkeys(raw))


def fapi2_tls_problem(version: str, cipher: str) -> str:
    """Why a connection's TLS falls short of FAPI 2.0 ("" when it does not)."""
    # FAPI 2.0 Security Profile §5.2.1: TLS 1.2 or later; under 1.2 only the BCP 195 suites.
    if version == "TLSv1.3":
        return ""
    if version != "TLSv1.2":
        return f"{version} is below TLS 1.2"
    if cipher not in FAPI2_TLS12_CIPHERS:
        return f"cipher suite {cipher or 'unknown'} is not one FAPI 2.0 allows with TLS 1.2"
    return ""
