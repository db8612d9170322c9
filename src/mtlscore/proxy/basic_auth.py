"""HTTP basic authentication of a trusted proxy (RFC 7617), against a scrypt hash.

Some proxies cannot present a TLS client certificate; they can send a fixed
``Proxy-Authorization: Basic …`` header. The configuration stores only a
scrypt hash (RFC 7914) of the password, written as a PHC string::

    $scrypt$ln=15,r=8,p=1$<salt, base64 no padding>$<key, base64 no padding>

``ln`` is log2 of scrypt's N. Make one with ``mtlscore hash-password`` (reads
the password from the terminal or stdin; see docs/proxy.md).

Checking is constant-time (``hmac.compare_digest``, and the key is derived
whether the user name matches or not). scrypt is deliberately slow, so a
credential that verified is remembered by its SHA-256 (a few entries): the
proxy pays the derivation once, and a wrong password pays it every time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

from ..reasons import ConfigError

__all__ = [
    "DEFAULT_SCRYPT_LN",
    "PasswordHash",
    "ProxyCredentials",
    "hash_password",
]

DEFAULT_SCRYPT_LN = 15  # N = 32768, r = 8: 32 MiB and tens of milliseconds (RFC 7914 §2 guidance)
# Bounds on the parameters a config may ask for: below, the hash is cheap to brute-force;
# above, one wrong password costs seconds of CPU or gigabytes of memory.
MIN_SCRYPT_LN, MAX_SCRYPT_LN = 14, 20
MAX_SCRYPT_R, MAX_SCRYPT_P = 16, 4
MAX_AUTHORIZATION_BYTES = 1024  # a Basic header longer than this is not a proxy's
REMEMBERED_CREDENTIALS = 8

_PHC = re.compile(r"^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d)\$([A-Za-z0-9+/]{16,88})\$([A-Za-z0-9+/]{43,88})$")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(password: bytes, salt: bytes, ln: int, r: int, p: int, length: int) -> bytes:
    n = 1 << ln
    # RFC 7914 §6: memory is 128 * r * N bytes (plus p blocks); allow it explicitly.
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=length, maxmem=256 * r * n * p + (1 << 20))


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A parsed scrypt PHC string. :meth:`parse` raises ConfigError naming ``key``."""

    ln: int
    r: int
    p: int
    salt: bytes = field(repr=False)
    key: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: object, *, key: str = "password_hash") -> PasswordHash:
        """Read ``$scrypt$ln=…,r=…,p=…$salt$key``; a plain password or other scheme is a ConfigError."""
        m = _PHC.match(text) if isinstance(text, str) else None
        if m is None:
            raise ConfigError(
                "must be a scrypt hash '$scrypt$ln=15,r=8,p=1$<salt>$<key>' (make one with "
                "`mtlscore hash-password`), never the password itself",
                key=key,
            )
        ln, r, p = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if not (MIN_SCRYPT_LN <= ln <= MAX_SCRYPT_LN and 1 <= r <= MAX_SCRYPT_R and 1 <= p <= MAX_SCRYPT_P):
            raise ConfigError(
                f"scrypt parameters ln={ln},r={r},p={p} are outside ln {MIN_SCRYPT_LN}-{MAX_SCRYPT_LN}, "
                f"r 1-{MAX_SCRYPT_R}, p 1-{MAX_SCRYPT_P}",
                key=key,
            )
        try:
            salt, derived = _unb64(m.group(4)), _unb64(m.group(5))
        except (binascii.Error, ValueError):
            raise ConfigError("the salt or key is not base64", key=key) from None
        if len(salt) < 16 or len(derived) < 32:
            raise ConfigError("the salt must be at least 16 bytes and the key 32", key=key)
        return cls(ln, r, p, salt, derived)

    def verify(self, password: bytes) -> bool:
        """Whether ``password`` derives to the stored key (constant-time compare)."""
        return hmac.compare_digest(_derive(password, self.salt, self.ln, self.r, self.p, len(self.key)), self.key)

    def __str__(self) -> str:
        return f"$scrypt$ln={self.ln},r={self.r},p={self.p}${_b64(self.salt)}${_b64(self.key)}"


def hash_password(password: str | bytes, *, ln: int = DEFAULT_SCRYPT_LN, salt: bytes | None = None) -> str:
    """The scrypt PHC string of ``password`` for a ``password_hash`` key (random 16-byte salt)."""
    pw = password.encode("utf-8") if isinstance(password, str) else password
    salt = secrets.token_bytes(16) if salt is None else salt
    return str(PasswordHash(ln, 8, 1, salt, _derive(pw, salt, ln, 8, 1, 32)))


@dataclass(frozen=True, slots=True)
class ProxyCredentials:
    """The user name and password hash a trusted proxy must send in ``header`` (Basic, RFC 7617)."""

    username: str
    password_hash: PasswordHash
    header: str = "proxy-authorization"
    # Credentials that verified, by SHA-256 of the header value (most recent last).
    _verified: OrderedDict[bytes, None] = field(default_factory=OrderedDict, compare=False, repr=False)

    def check(self, value: bytes | str | None) -> str | None:
        """None when ``value`` (the header's value) carries these credentials, else why not.

        Never raises on the request's bytes.
        """
        if value is None:
            return f"no {self.header} header"
        raw = value.encode("latin-1", "replace") if isinstance(value, str) else bytes(value)
        if len(raw) > MAX_AUTHORIZATION_BYTES:
            return f"the {self.header} header is over {MAX_AUTHORIZATION_BYTES} bytes"
        memo = hashlib.sha256(raw).digest()
        if memo in self._verified:
            self._verified.move_to_end(memo)
            return None
        # RFC 7617 §2: credentials = "Basic" 1*SP token68 (base64 of user-id ":" password);
        # RFC 9110 §11.1: the scheme is case-insensitive.
        scheme, _, rest = raw.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return f"the {self.header} header is not Basic credentials"
        try:
            decoded = base64.b64decode(rest.strip(), validate=True)
        except (binascii.Error, ValueError):
            return f"the {self.header} Basic credentials are not base64"
        user, sep, password = decoded.partition(b":")
        if not sep:
            return f"the {self.header} Basic credentials have no ':'"
        # Derive even when the user is wrong: the time does not tell which part failed.
        user_ok = hmac.compare_digest(user, self.username.encode("utf-8"))
        password_ok = self.password_hash.verify(password)
        if not (user_ok and password_ok):
            return f"the {self.header} credentials are not the configured ones"
        self._verified[memo] = None
        while len(self._verified) > REMEMBERED_CREDENTIALS:
            self._verified.popitem(last=False)
        return None
