"""SPIFFE IDs (SPIFFE-ID spec) and the X.509-SVID rules for finding one in a leaf."""

from __future__ import annotations

import string
from dataclasses import dataclass

from cryptography import x509

from ..reasons import ConfigError
from .cert import Certificate

__all__ = ["SpiffeId", "parse_spiffe_id", "spiffe_id_problem", "svid_spiffe_id"]

MAX_SPIFFE_ID_BYTES = 2048  # SPIFFE-ID §2.3
MAX_TRUST_DOMAIN_CHARS = 255  # SPIFFE-ID §2.1 (a DNS-name-sized label set)
_TD_CHARS = frozenset(string.ascii_lowercase + string.digits + ".-_")
_PATH_CHARS = frozenset(string.ascii_letters + string.digits + ".-_")


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A valid SPIFFE ID: ``spiffe://<trust_domain><path>``."""

    trust_domain: str
    path: str  # "" or "/seg/seg"

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}{self.path}"

    def has_prefix(self, prefix: SpiffeId) -> bool:
        """True if ``prefix`` names this ID or an ancestor path, segment-wise, in the same domain."""
        if self.trust_domain != prefix.trust_domain:
            return False
        if not prefix.path:
            return True
        return self.path == prefix.path or self.path.startswith(prefix.path + "/")


def spiffe_id_problem(text: str) -> str | None:
    """Why ``text`` is not a valid SPIFFE ID (SPIFFE-ID §2), or None if it is."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SPIFFE_ID_BYTES:
        return f"longer than {MAX_SPIFFE_ID_BYTES} bytes"
    if not text.startswith("spiffe://"):
        return "the scheme must be 'spiffe://' (lower case)"
    rest = text[len("spiffe://") :]
    td, slash, path = rest.partition("/")
    if not td:
        return "the trust domain is empty"
    if "@" in td:
        return "userinfo is not allowed"
    if ":" in td:
        return "a port is not allowed"
    if len(td) > MAX_TRUST_DOMAIN_CHARS:
        return "the trust domain is too long"
    if not set(td) <= _TD_CHARS:
        return "the trust domain may only hold lower-case letters, digits, '.', '-' and '_'"
    if not slash:
        return None
    if "?" in path or "#" in path:
        return "a query or fragment is not allowed"
    for segment in path.split("/"):
        if not segment:
            return "the path has an empty segment or a trailing '/'"
        if segment in (".", ".."):
            return "the path may not contain '.' or '..' segments"
        if not set(segment) <= _PATH_CHARS:
            return "path segments may only hold letters, digits, '.', '-' and '_'"
    return None


def _split(text: str) -> SpiffeId:
    rest = text[len("spiffe://") :]
    td, slash, path = rest.partition("/")
    return SpiffeId(td, slash + path)


def parse_spiffe_id(text: str, *, key: str | None = None, allow_bare_domain: bool = False) -> SpiffeId:
    """Parse a configured SPIFFE ID; raises :class:`ConfigError` naming ``key`` when invalid.

    With ``allow_bare_domain``, ``example.org`` is read as ``spiffe://example.org``.
    """
    if not isinstance(text, str):
        raise ConfigError(f"a SPIFFE ID must be a string, not {type(text).__name__}", key=key)
    if allow_bare_domain and "://" not in text:
        text = "spiffe://" + text
    problem = spiffe_id_problem(text)
    if problem:
        raise ConfigError(f"{text!r} is not a SPIFFE ID: {problem}", key=key)
    return _split(text)


def svid_spiffe_id(cert: Certificate) -> tuple[str | None, str | None]:
    """The SPIFFE ID of an X.509-SVID leaf, and why there is none (id, problem).

    X.509-SVID §2: exactly one URI SAN, a valid SPIFFE ID; §4.1-§4.3: a leaf
    SVID is not a CA, has digitalSignature and lacks keyCertSign/cRLSign.
    """
    uris = [n.value for n in cert.san or () if isinstance(n, x509.UniformResourceIdentifier)]
    spiffe = [u for u in uris if u.lower().startswith("spiffe:")]
    if not spiffe:
        return None, None
    if len(uris) != 1:
        return None, f"{len(uris)} URI SANs; an X.509-SVID carries exactly one"
    problem = spiffe_id_problem(spiffe[0])
    if problem:
        return None, f"{spiffe[0]!r} is not a valid SPIFFE ID: {problem}"
    if cert.is_ca:
        return None, "a CA certificate is not a leaf SVID"
    ku = cert.key_usage
    if ku is not None and (not ku.digital_signature or ku.key_cert_sign or ku.crl_sign):
        return None, "a leaf SVID's keyUsage must have digitalSignature and not keyCertSign/cRLSign"
    return spiffe[0], None
