"""Rejecting in the TLS handshake (``[server] reject_at = "handshake"``): which alert says why.

A load balancer in ``reject_invalid`` fails the handshake itself, with the TLS
alert that matches the reason; operators migrating from one expect the same.
This module is the decision half: the verdict a chain gets *without I/O*
(what the configured CRLs, the caches and stapled data can answer) and the
alert each reason is sent with. The TLS engine (mtlscore.runtimes.tls) runs it
inside OpenSSL's verify step and fails the handshake with that alert.

Revocation fetching needs I/O, which a verify callback cannot wait for (OpenSSL
3.0 has no way to suspend a handshake in verification). When the validation
asks for data it does not hold, :func:`handshake_verdict` answers None: the
handshake completes and the chain is decided after it, with fetching, and
refused with HTTP 403. The fetched CRL / OCSP answer then sits in the
revocation cache, so the next connection under that CA is decided in its
handshake. Likewise a self-signed certificate that may be an RFC 8705 §2.2 client
registered by key is decided after the handshake, by the session.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from ..decision.validator import Validator
from ..decision.verdict import Verdict
from ..identity.identity_map import IdentityMap
from ..identity.self_signed import is_candidate
from ..reasons import CertificateRejected, Reason
from ..x509.cert import parse_certificate

__all__ = ["DEFAULT_ALERT", "HANDSHAKE_ALERTS", "handshake_alert", "handshake_verdict"]

# RFC 8446 §6.2 (RFC 5246 §7.2.2 for TLS 1.2): the alert description for each reason.
#   certificate_expired      "A certificate has expired or is not currently valid."
#   certificate_revoked      "A certificate was revoked by its signer."
#   unknown_ca               "...the CA certificate could not be located or could not be
#                            matched with a known trust anchor."
#   unsupported_certificate  "A certificate was of an unsupported type."
#   bad_certificate          "A certificate was corrupt, contained signatures that did not
#                            verify correctly, etc."
#   certificate_unknown      "Some other (unspecified) issue arose in processing the
#                            certificate, rendering it unacceptable."
# A missing certificate is OpenSSL's own: certificate_required (TLS 1.3, RFC 8446 §4.4.2.4)
# or handshake_failure (TLS 1.2).
HANDSHAKE_ALERTS: dict[Reason, str] = {
    Reason.EXPIRED: "certificate_expired",
    Reason.NOT_YET_VALID: "certificate_expired",
    Reason.REVOKED: "certificate_revoked",
    # No path to an anchor, or the path's CAs are not CAs for it: the CA is not "known".
    Reason.UNTRUSTED: "unknown_ca",
    Reason.ISSUER_NOT_CA: "unknown_ca",
    Reason.PATH_LENGTH_EXCEEDED: "unknown_ca",
    Reason.ISSUER_KEY_USAGE: "unknown_ca",
    Reason.CHAIN_TOO_LONG: "unknown_ca",
    # The certificate is of a kind this server does not take (purpose, key type).
    Reason.INVALID_EKU: "unsupported_certificate",
    Reason.LEAF_KEY_USAGE: "unsupported_certificate",
    Reason.UNSUPPORTED_KEY_ALGORITHM: "unsupported_certificate",
    Reason.UNSUPPORTED_CURVE: "unsupported_certificate",
    # Nothing said against the certificate: its status could not be learnt.
    Reason.REVOCATION_UNAVAILABLE: "certificate_unknown",
}
# Every other reason (malformed, bad_signature, rsa_key_too_small, weak_signature_algorithm,
# name_constraints_violation, not_allowlisted, identity_unmapped, …): the certificate is bad.
DEFAULT_ALERT = "bad_certificate"


def handshake_alert(reason: Reason) -> str:
    """The TLS alert (RFC 8446 §6.2 name) a handshake refused for ``reason`` is failed with."""
    return HANDSHAKE_ALERTS.get(reason, DEFAULT_ALERT)


def handshake_verdict(
    validator: Validator, chain: Sequence[bytes], *, at: datetime, crls: Iterable[bytes] = ()
) -> Verdict | None:
    """The verdict for ``chain`` reachable without I/O, or None when it needs fetching.

    Without revocation fetching this is exactly :meth:`Validator.validate` (requests
    for data are declined, the caches and configured CRLs used). With fetching, the
    first request for data the validation makes means the verdict must wait for I/O:
    None, and the caller decides after the handshake.
    """
    if not chain:
        return Verdict.reject(Reason.NOT_PROVIDED, "the client sent no certificate")
    if not validator.policy.fetch:
        verdict = validator.validate(list(chain), at=at, crls=crls)
    else:
        # The machine steps on its own until it decides or asks; an ask is a CRL, an OCSP
        # answer or an issuer to fetch, which cannot happen inside a handshake.
        event = validator.start(list(chain), at=at, crls=crls).next_event()
        if not isinstance(event, Verdict):
            return None
        verdict = event
    if verdict.reason is Reason.UNTRUSTED and _self_signed_candidate(validator, chain):
        # RFC 8705 §2.2: a self-signed certificate no CA vouches for may be a client known
        # by its registered key, which the session matches after the handshake (keys behind
        # a jwks_uri may need fetching): decided there, accepted or not_allowlisted.
        return None
    return verdict


def _self_signed_candidate(validator: Validator, chain: Sequence[bytes]) -> bool:
    imap = validator.identity_map
    # Clients registered by key are [[accounts]] of an IdentityMap (method = self_signed_tls_client_auth).
    if not isinstance(imap, IdentityMap) or not imap.self_signed_clients:
        return False
    try:
        return is_candidate([parse_certificate(der, remember=False) for der in chain])
    except CertificateRejected:
        return False
