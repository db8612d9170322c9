"""Certificate-bound JWT access tokens (RFC 8705 §3 + RFC 9068), with joserfc.

Optional: needs the ``jwt`` extra (``pip install 'mtlscore[jwt]'``). The
signature, the ``alg`` allowlist and the registered claims are joserfc's work;
this module chooses the key, pins the time to ``at=`` and then checks ``cnf``
against the presented certificate with :func:`mtlscore.identity.binding.check_cnf`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc import jwt as _jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import ECKey, JWKRegistry, Key, OctKey, OKPKey, RSAKey

from .identity.binding import check_cnf, cnf_claim, jwks_members
from .reasons import ConfigError, MtlsError
from .x509.cert import Certificate

__all__ = [
    "ALLOWED_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "SigningKey",
    "TokenInvalid",
    "issue_bound_token",
    "verify_bound_token",
]

DEFAULT_ALGORITHMS = ("PS256", "ES256", "RS256")
# What issue_bound_token signs with: a cryptography private key, its PEM, a private JWK, or a joserfc key.
SigningKey = CertificateIssuerPrivateKeyTypes | str | bytes | Mapping[str, object] | Key
# Asymmetric only: an HMAC algorithm would let anyone holding the public JWKS forge tokens.
ALLOWED_ALGORITHMS = frozenset(
    {"PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "EdDSA"}
)
_KTY_FOR = {"PS": "RSA", "RS": "RSA", "ES": "EC", "Ed": "OKP"}
MAX_TOKEN_BYTES = 16 * 1024


class TokenInvalid(MtlsError):
    """The token is not acceptable (signature, alg, exp/nbf/iss/aud, syntax).

    ``error`` is the OAuth code to answer with (RFC 6750 §3.1). ``key_miss``: no
    key of the JWKS fits (unknown ``kid``, or no signature match) — the issuer may
    have rotated its keys, so a JWKS from a URL is worth refetching once.
    """

    error = "invalid_token"

    def __init__(self, detail: str, *, key_miss: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.key_miss = key_miss


def _algorithms(algorithms: Iterable[str]) -> list[str]:
    algs = list(algorithms)
    bad = [a for a in algs if a not in ALLOWED_ALGORITHMS]
    if bad or not algs:
        raise ConfigError(
            f"{bad or 'none'} not allowed; use asymmetric algorithms from {sorted(ALLOWED_ALGORITHMS)}",
            key="algorithms",
        )
    return algs


def _keys(jwks: Mapping[str, object] | str) -> list[tuple[str | None, Key]]:
    out: list[tuple[str | None, Key]] = []
    for raw in jwks_members(jwks):
        # Public-key types only; an "oct" entry would turn the JWKS into a shared secret.
        if not isinstance(raw, Mapping) or raw.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if raw.get("use") not in (None, "sig"):
            continue
        public = {k: v for k, v in raw.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth")}
        try:
            out.append((raw.get("kid"), JWKRegistry.import_key(public)))
        except (JoseError, ValueError, TypeError):
            continue
    if not out:
        raise ConfigError("holds no usable public signing key (RSA, EC or OKP)", key="jwks")
    return out


def _header(token: str) -> dict[str, Any]:
    # Read (not trust) the protected header to pick a key; joserfc verifies it.
    parts = token.split(".")
    if len(parts) == 5:
        raise TokenInvalid("encrypted (JWE) tokens are not supported")
    if len(parts) != 3:
        raise TokenInvalid("not a JWS compact token")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError):
        raise TokenInvalid("the token header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise TokenInvalid("the token header is not a JSON object")
    return header


def verify_bound_token(
    token: str,
    jwks: Mapping[str, object] | str,
    cert: Certificate | None,
    *,
    at: datetime,
    algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
    issuer: str | None = None,
    audience: str | None = None,
    leeway_seconds: int = 0,
    require_cnf: bool = True,
) -> dict[str, object]:
    """Verify a JWT access token with ``jwks`` at time ``at``, then its ``cnf`` against ``cert``.

    Returns the claims. Raises :class:`TokenInvalid` for a bad token (signature,
    ``alg`` not allowed, expired, not yet valid, wrong ``iss``/``aud``, no
    ``exp``), CertificateRejected(binding_mismatch) when it is bound to another
    certificate (or not bound, with ``require_cnf``), ConfigError for a bad
    ``jwks`` or ``algorithms``.
    """
    if at.tzinfo is None:
        raise ConfigError("must be timezone-aware", key="at")
    algs = _algorithms(algorithms)
    keys = _keys(jwks)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        raise TokenInvalid("the token is not a string of acceptable size")
    header = _header(token)
    alg = header.get("alg")
    if alg not in algs:
        raise TokenInvalid(f"alg {alg!r} is not allowed (allowed: {', '.join(algs)})")
    kid = header.get("kid")
    candidates = [k for kk, k in keys if kid is None or kk == kid]
    candidates = [k for k in candidates if k.key_type == _KTY_FOR.get(str(alg)[:2])]
    if not candidates:
        raise TokenInvalid(f"no {alg} key" + (f" with kid {kid!r}" if kid else "") + " in the JWKS", key_miss=True)
    claims: dict[str, object] | None = None
    for key in candidates:
        try:
            claims = dict(_jwt.decode(token, key, algorithms=[str(alg)]).claims)
            break
        except BadSignatureError:
            continue
        except JoseError as exc:
            raise TokenInvalid(f"the token is malformed: {exc}") from None
    if claims is None:
        raise TokenInvalid("the token's signature does not verify with any key of the JWKS", key_miss=True)
    options: dict[str, Any] = {"exp": {"essential": True}}
    if issuer is not None:
        options["iss"] = {"essential": True, "value": issuer}
    if audience is not None:
        options["aud"] = {"essential": True, "value": audience}
    registry = _jwt.JWTClaimsRegistry(now=int(at.timestamp()), leeway=leeway_seconds, **options)
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise TokenInvalid("the token has expired (exp)") from None
    except MissingClaimError as exc:
        raise TokenInvalid(f"the token lacks required claim(s): {exc.description}") from None
    except JoseError as exc:
        raise TokenInvalid(f"the token's claims are not acceptable: {exc}") from None
    check_cnf(claims, cert, required=require_cnf)
    return claims


def issue_bound_token(
    claims: Mapping[str, object],
    key: SigningKey,
    cert: Certificate,
    *,
    algorithm: str = "ES256",
    kid: str | None = None,
    typ: str = "at+jwt",
) -> str:
    """Sign ``claims`` plus ``cnf.x5t#S256`` of ``cert`` (RFC 8705 §3.1) as a JWT.

    ``key`` is a private key (cryptography object, PEM, private JWK dict, or a
    joserfc key object). Set ``exp``/``iat`` in ``claims`` yourself (time is
    yours). Raises ConfigError for an unusable key or algorithm.
    """
    _algorithms([algorithm])
    if isinstance(key, OctKey):
        raise ConfigError("a symmetric (oct) key cannot sign a token others verify with a JWKS", key="key")
    if isinstance(key, RSAKey | ECKey | OKPKey):
        # joserfc's registry does not re-import its own key objects (KeyError: 0): use it as is.
        if not key.is_private:
            raise ConfigError("a public key cannot sign; pass the private key", key="key")
        if key.key_type != _KTY_FOR.get(algorithm[:2]):
            raise ConfigError(f"a {key.key_type} key cannot sign {algorithm}", key="key")
        jkey: Key = key
    else:
        data: str | bytes | dict[str, str | list[str]]
        if isinstance(key, Mapping):
            # joserfc checks each member of the JWK as it imports it.
            data = cast("dict[str, str | list[str]]", dict(key))
            given_kty = key.get("kty")
            kty = given_kty if isinstance(given_kty, str) else None
        else:
            data = key if isinstance(key, str | bytes) else key.private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            kty = _KTY_FOR.get(algorithm[:2])
        try:
            jkey = JWKRegistry.import_key(data, kty)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"cannot use this signing key: {exc}", key="key") from None
    payload = dict(claims)
    given = payload.get("cnf")
    payload["cnf"] = {**(dict(given) if isinstance(given, Mapping) else {}), **cnf_claim(cert)}
    header: dict[str, Any] = {"alg": algorithm, "typ": typ}
    if kid:
        header["kid"] = kid
    try:
        return _jwt.encode(header, payload, jkey, algorithms=[algorithm])
    except JoseError as exc:
        raise ConfigError(f"cannot sign with {algorithm}: {exc}", key="algorithm") from None
