"""Human explanations of reason codes: what it means and how to fix it.

The tone is a vendor's "common error messages" list: the client developer on the
other end reads this and must know what to change.
"""

from __future__ import annotations

from ..reasons import Reason

__all__ = ["EXPLANATIONS", "explain"]

# reason → (what it means, how to fix it)
EXPLANATIONS: dict[Reason, tuple[str, str]] = {
    Reason.NOT_PROVIDED: (
        "No client certificate was presented.",
        "Configure the client to send its certificate and key (curl: --cert/--key; "
        "Python: ssl_context.load_cert_chain(...)).",
    ),
    Reason.MALFORMED: (
        "The certificate (or the data around it) could not be parsed, or breaks an encoding rule.",
        "Send the certificate as PEM or DER exactly as the CA issued it; re-export it if it was "
        "edited, and check the CA software's RFC 5280 conformance.",
    ),
    Reason.EXPIRED: (
        "A certificate on the path is past its notAfter date.",
        "Renew the named certificate and deploy it (and its new intermediates) on the client.",
    ),
    Reason.NOT_YET_VALID: (
        "A certificate on the path is not valid yet (notBefore is in the future).",
        "Check the issuing system's clock and this server's clock; wait until notBefore, or "
        "configure a small clock skew tolerance.",
    ),
    Reason.UNTRUSTED: (
        "No path from the certificate to a trusted CA could be built (unknown issuer, missing "
        "intermediate, or a self-signed certificate that is not allowlisted).",
        "Send the full chain (leaf first, then intermediates), or add the issuing CA to the "
        "trust store / intermediates pool.",
    ),
    Reason.BAD_SIGNATURE: (
        "A certificate names a CA as issuer, but that CA's key does not verify its signature.",
        "The certificate was issued by a different key with the same name (a rotated CA or an "
        "impostor): trust the CA that really issued it, or reissue from the trusted one.",
    ),
    Reason.ISSUER_NOT_CA: (
        "A certificate that issued another one is not a CA (basicConstraints cA=TRUE is missing).",
        "Reissue the intermediate with basicConstraints critical, cA=TRUE.",
    ),
    Reason.PATH_LENGTH_EXCEEDED: (
        "The chain has more CA levels than a pathLenConstraint above them allows.",
        "Issue the client certificate from a CA higher up, or raise the pathLenConstraint.",
    ),
    Reason.ISSUER_KEY_USAGE: (
        "An issuing certificate's keyUsage does not include keyCertSign.",
        "Reissue the CA certificate with keyUsage keyCertSign (and cRLSign).",
    ),
    Reason.LEAF_KEY_USAGE: (
        "The client certificate's keyUsage does not allow TLS client authentication "
        "(digitalSignature is required).",
        "Reissue the client certificate with keyUsage digitalSignature.",
    ),
    Reason.INVALID_EKU: (
        "The certificate's Extended Key Usage does not allow client authentication "
        "(\"Unsupported certificate purpose\").",
        "Reissue it with extendedKeyUsage = clientAuth (TLS Web Client Authentication), from a "
        "CA whose own EKU, if any, allows clientAuth.",
    ),
    Reason.RSA_KEY_TOO_SMALL: (
        "An RSA key on the path is smaller than policy allows.",
        "Generate a new key of at least 2048 bits (3072 recommended) and reissue.",
    ),
    Reason.RSA_KEY_TOO_LARGE: (
        "An RSA key on the path is larger than policy allows (huge keys cost servers CPU).",
        "Use an RSA key of 2048–4096 bits, or ECDSA P-256.",
    ),
    Reason.UNSUPPORTED_CURVE: (
        "An EC key on the path uses a curve policy does not allow.",
        "Use ECDSA on P-256 or P-384 with the namedCurve encoding.",
    ),
    Reason.UNSUPPORTED_KEY_ALGORITHM: (
        "A key on the path is of a type policy does not allow.",
        "Use RSA (2048+) or ECDSA (P-256/P-384) keys.",
    ),
    Reason.WEAK_SIGNATURE_ALGORITHM: (
        "A certificate is signed with an algorithm policy does not allow (e.g. SHA-1).",
        "Reissue it signed with SHA-256 or stronger.",
    ),
    Reason.UNHANDLED_CRITICAL_EXTENSION: (
        "A certificate carries a critical extension this validator does not process, so it "
        "must not be accepted (RFC 5280 §4.2).",
        "Reissue it without that extension, or with the extension marked non-critical.",
    ),
    Reason.NAME_CONSTRAINTS_VIOLATION: (
        "A name in the certificate is outside what a CA on the path may issue for.",
        "Request a certificate whose names fall within the CA's permitted names, or have it "
        "issued by another CA.",
    ),
    Reason.NO_VALID_POLICY: (
        "The path is not valid for any certificate policy that is required: by policy "
        "(certificate_policies) or by a CA's policyConstraints (RFC 5280 §6.1).",
        "Issue the certificate (and its CAs) under a required policy (certificatePolicies), "
        "or change policy.certificate_policies to the policies your CA issues under.",
    ),
    Reason.CHAIN_TOO_LONG: (
        "Reaching a trusted CA needs more intermediates than policy allows.",
        "Shorten the chain, or raise policy.max_intermediates.",
    ),
    Reason.PKI_TOO_LARGE: (
        "The certificate or chain is larger than the size limits.",
        "Present only the leaf and the intermediates it needs; keep certificates small.",
    ),
    Reason.SEARCH_LIMIT_EXCEEDED: (
        "Building a path gave up after its work budget (too many candidate issuers).",
        "Present only the intended intermediates; remove unrelated or cross-signed extras.",
    ),
    Reason.REVOKED: (
        "A certificate on the path has been revoked by its issuer.",
        "The holder needs a new certificate; find out why the old one was revoked.",
    ),
    Reason.REVOCATION_UNAVAILABLE: (
        "Revocation status is required but could not be established (no fresh CRL/OCSP answer).",
        "Make the CRL / OCSP responder reachable and fresh, or change revocation mode.",
    ),
    Reason.NOT_ALLOWLISTED: (
        "The certificate is not one of the registered (allowlisted / pinned) certificates.",
        "Register this certificate (its x5t#S256 is shown) or present the registered one.",
    ),
    Reason.IDENTITY_UNMAPPED: (
        "The chain is valid, but no account rule matches this certificate's identity.",
        "Register the certificate's subject / SAN for the account, scoped to the CA that issued it.",
    ),
    Reason.BINDING_MISMATCH: (
        "The access token is bound to a different certificate (cnf x5t#S256 mismatch).",
        "Obtain a new token over a connection that uses this certificate (RFC 8705).",
    ),
    Reason.UNTRUSTED_PROXY: (
        "Certificate headers arrived from a peer that is not a configured trusted proxy.",
        "Send requests through the trusted proxy, or add the proxy to trusted_proxies.",
    ),
}


def explain(reason: Reason) -> tuple[str, str]:
    """(what it means, how to fix it) for a reason code."""
    return EXPLANATIONS[reason]
