"""RFC 8705: certificate thumbprints, cnf-bound tokens, and mTLS client authentication.

- ``x5t_s256`` and ``cnf_claim``: what an authorization server puts in a token.
- :func:`check_cnf`: a resource server's check that a token is bound to the
  presented certificate (§3.1), compared in constant time.
- :class:`TlsClientAuth`: PKI method (§2.1): the validated certificate must
  carry the one name registered for the client.
- :func:`check_self_signed_tls_client_auth`: self-signed method (§2.2): the
  certificate must match a key of the client's registered JWKS.
- :func:`oauth_error`: how these failures are answered (one definition for
  every HTTP layer).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from ..reasons import CertificateRejected, ConfigError, Reason
from ..x509.cert import Certificate, load_certificates
from ..x509.jwk import jwk_matches_certificate
from .identity import Identity
from .rules import Condition, parse_condition

__all__ = [
    "METHODS",
    "TLS_CLIENT_AUTH_KEYS",
    "Method",
    "OAuthError",
    "TlsClientAuth",
    "check_cnf",
    "check_self_signed_tls_client_auth",
    "check_tls_client_auth",
    "cnf_claim",
    "oauth_error",
    "x5t_s256",
]

# RFC 8705 §2: the two mutual-TLS client authentication methods (token_endpoint_auth_method).
Method = Literal["tls_client_auth", "self_signed_tls_client_auth"]
METHODS: tuple[Method, ...] = get_args(Method)

# RFC 8705 §2.1.2 client metadata → our match key.
TLS_CLIENT_AUTH_KEYS = {
    "tls_client_auth_subject_dn": "subject_dn",
    "tls_client_auth_san_dns": "san_dns",
    "tls_client_auth_san_uri": "san_uri",
    "tls_client_auth_san_ip": "san_ip",
    "tls_client_auth_san_email": "san_email",
}
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


def x5t_s256(cert: Certificate | bytes | str) -> str:
    """RFC 8705 §3.1 ``x5t#S256`` of a certificate (parsed, DER or PEM).

    Raises :class:`CertificateRejected` (``malformed``) when it is not a certificate.
    """
    if isinstance(cert, Certificate):
        return cert.x5t_s256
    return load_certificates(cert, max_count=1)[0].x5t_s256


def cnf_claim(cert: Certificate) -> dict[str, str]:
    """The ``cnf`` claim binding a token to ``cert`` (RFC 8705 §3.1)."""
    return {"x5t#S256": cert.x5t_s256}


def check_cnf(claims: Mapping[str, object], cert: Certificate | None, *, required: bool = True) -> None:
    """Check that a token's ``cnf.x5t#S256`` is the thumbprint of the presented certificate.

    A token without ``cnf`` (or with another confirmation method) passes only
    when ``required`` is False. Raises CertificateRejected(binding_mismatch).
    """
    cnf = claims.get("cnf") if isinstance(claims, Mapping) else None
    if cnf is None or (isinstance(cnf, Mapping) and "x5t#S256" not in cnf):
        if required:
            raise CertificateRejected(
                Reason.BINDING_MISMATCH,
                "the token is not bound to a certificate (no cnf.x5t#S256 claim)",
            )
        return
    if not isinstance(cnf, Mapping):
        raise CertificateRejected(Reason.BINDING_MISMATCH, "the token's cnf claim is not an object")
    want = cnf["x5t#S256"]
    # RFC 8705 §3.1: base64url, no padding, of the 32-byte SHA-256 of the DER.
    if not isinstance(want, str) or not _B64URL.match(want) or len(want) != 43:
        raise CertificateRejected(
            Reason.BINDING_MISMATCH, "the token's cnf.x5t#S256 is not a base64url SHA-256 thumbprint"
        )
    if cert is None:
        raise CertificateRejected(
            Reason.BINDING_MISMATCH, "the token is certificate-bound but no client certificate was presented"
        )
    try:
        digest = base64.urlsafe_b64decode(want + "=")
    except (binascii.Error, ValueError):  # pragma: no cover - the regex rules this out
        digest = b""
    if not hmac.compare_digest(digest, cert.sha256):
        raise CertificateRejected(
            Reason.BINDING_MISMATCH,
            f"the token is bound to certificate x5t#S256={want}, not to the presented "
            f"{cert.describe()} (x5t#S256={cert.x5t_s256})",
        )


@dataclass(frozen=True, slots=True)
class TlsClientAuth:
    """A client's RFC 8705 §2.1 ``tls_client_auth`` registration: exactly one expected name."""

    parameter: str  # e.g. "tls_client_auth_san_dns"
    value: str
    condition: Condition

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, object]) -> TlsClientAuth:
        """Read the registration from client metadata (other members are ignored).

        Raises :class:`ConfigError` unless exactly one of the five parameters is
        given with a valid value, or when ``token_endpoint_auth_method`` says otherwise.
        """
        method = metadata.get("token_endpoint_auth_method")
        if method is not None and method != "tls_client_auth":
            raise ConfigError(f"is {method!r}, not 'tls_client_auth'", key="token_endpoint_auth_method")
        given = [k for k in TLS_CLIENT_AUTH_KEYS if metadata.get(k) is not None]
        if len(given) != 1:
            raise ConfigError(
                f"tls_client_auth needs exactly one of {', '.join(TLS_CLIENT_AUTH_KEYS)}; "
                f"got {', '.join(given) if given else 'none'} (RFC 8705 §2.1.2)",
                key=given[1] if len(given) > 1 else "tls_client_auth",
            )
        param = given[0]
        value = metadata[param]
        if not isinstance(value, str):
            raise ConfigError("must be a string", key=param)
        if param == "tls_client_auth_san_dns" and "*" in value:
            raise ConfigError("RFC 8705 expects the exact dNSName, not a wildcard", key=param)
        return cls(param, value, parse_condition(TLS_CLIENT_AUTH_KEYS[param], value, key=param))

    def check(self, cert: Certificate) -> None:
        """Raise CertificateRejected(identity_unmapped) unless ``cert`` carries the registered name.

        The certificate's chain must already be validated (RFC 8705 §2.1).
        """
        if not self.condition.holds(Identity.from_certificate(cert)):
            raise CertificateRejected(
                Reason.IDENTITY_UNMAPPED,
                f"{cert.describe()} does not carry the registered {self.parameter} {self.value!r}",
            )


def check_tls_client_auth(metadata: Mapping[str, object], cert: Certificate) -> None:
    """:meth:`TlsClientAuth.from_metadata` then :meth:`TlsClientAuth.check`."""
    TlsClientAuth.from_metadata(metadata).check(cert)


def jwks_members(jwks: Mapping[str, object] | str) -> list[object]:
    """The raw members of a JWK Set given as a mapping or JSON text (each still to be checked: the
    set's publisher wrote them). Raises ConfigError (key ``jwks``)."""
    found: object = jwks
    if isinstance(found, str | bytes):
        try:
            found = json.loads(found)
        except ValueError:
            raise ConfigError("is not JSON", key="jwks") from None
    keys = found.get("keys") if isinstance(found, Mapping) else None
    if not isinstance(keys, list):
        raise ConfigError('must be a JWK Set {"keys": [...]} (RFC 7517 §5)', key="jwks")
    return list(keys)


def check_self_signed_tls_client_auth(jwks: Mapping[str, object] | str, cert: Certificate) -> dict[str, object]:
    """Return the registered JWK that ``cert`` matches (RFC 8705 §2.2).

    Keys match by their ``x5c`` certificate or by public key (RSA n/e, EC
    crv/x/y, OKP); several keys allow rotation, unusable ones (``oct``, bad
    members) are skipped. Raises CertificateRejected(not_allowlisted) when none
    matches, ConfigError when ``jwks`` is not a JWK Set.
    """
    keys = jwks_members(jwks)
    skipped: list[str] = []
    for i, jwk in enumerate(keys):
        if not isinstance(jwk, Mapping):
            skipped.append(f"jwks.keys[{i}]: a JWK must be a JSON object")
            continue
        try:
            if jwk_matches_certificate(jwk, cert, key=f"jwks.keys[{i}]"):
                return dict(jwk)
        except ConfigError as exc:
            skipped.append(str(exc))
    detail = (
        f"{cert.describe()} (x5t#S256={cert.x5t_s256}) matches none of the "
        f"{len(keys)} registered key(s)"
    )
    if skipped:
        detail += f"; {len(skipped)} unusable: " + "; ".join(skipped[:3])
    raise CertificateRejected(Reason.NOT_ALLOWLISTED, detail)


@dataclass(frozen=True, slots=True)
class OAuthError:
    """An OAuth error answer: status, ``error`` code, description and headers to send."""

    status: int
    error: str
    description: str
    headers: tuple[tuple[str, str], ...]

    @property
    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}

    def json_bytes(self) -> bytes:
        return json.dumps(self.body).encode()


def _quotable(text: str) -> str:
    # RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)[:300]


def oauth_error(
    reason: Reason | str, *, endpoint: Literal["token", "resource"], detail: str = ""
) -> OAuthError:
    """The OAuth answer for a rejection at the token endpoint or a resource server.

    Token endpoint (RFC 6749 §5.2): ``invalid_client``, 401 — except a binding
    mismatch of a presented grant, ``invalid_grant``, 400. Resource server
    (RFC 6750 §3, RFC 8705 §3): ``invalid_token``, 401 with a Bearer challenge.
    """
    # A Reason, or another stable code (e.g. "invalid_token" for a bad JWT).
    code = reason.value if isinstance(reason, Reason) else str(reason)
    description = _quotable(f"{code}: {detail}" if detail else code)
    json_headers = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))
    if endpoint == "token":
        if code == Reason.BINDING_MISMATCH.value:
            return OAuthError(400, "invalid_grant", description, json_headers)
        return OAuthError(401, "invalid_client", description, json_headers)
    if endpoint == "resource":
        challenge = f'Bearer error="invalid_token", error_description="{description}"'
        return OAuthError(401, "invalid_token", description, (("WWW-Authenticate", challenge), *json_headers))
    raise ValueError(f"endpoint must be 'token' or 'resource', not {endpoint!r}")
