"""``mtlscore thumbprint FILE``: x5t#S256, SHA-256 and SPKI pin of a certificate (and its JWK)."""

from __future__ import annotations

import argparse
import json

from ..reasons import ConfigError
from .check import read_certificates
from .common import JSON, PASSWORD, Command, CommandError, arg

__all__ = ["COMMAND", "run"]


def run(args: argparse.Namespace) -> int:
    certs = read_certificates(args.file, args.password)
    cert = certs[0]
    jwk = None
    if args.jwk:
        from ..x509.jwk import default_algorithm, jwk_from_certificate

        try:
            jwk = jwk_from_certificate(cert, chain=certs[1:], use=args.use or None)
            # RFC 7517 §4.4: alg names the algorithm the key is meant for.
            alg = default_algorithm(jwk) if args.alg is None else args.alg
            if alg:
                jwk["alg"] = alg
        except ConfigError as exc:
            raise CommandError(f"{args.file}: {exc.message}", code=1) from None
    facts = {
        "subject": cert.subject_text,
        "x5t#S256": cert.x5t_s256,
        "sha256": cert.fingerprint_hex,
        "spki_sha256": cert.spki_pin,
    }
    if args.json:
        print(json.dumps({**facts, **({"jwk": jwk} if jwk is not None else {})}, indent=2))
    elif jwk is not None:
        print(json.dumps(jwk, indent=2))
    else:
        if len(certs) > 1:
            print(f"(first of {len(certs)} certificates in {args.file})")
        print(f"subject:     {cert.describe()}")
        print(f"x5t#S256:    {cert.x5t_s256}")
        print(f"sha256:      {cert.fingerprint_hex}")
        print(f"spki pin:    sha256/{cert.spki_pin}")
    return 0


COMMAND = Command(
    "thumbprint",
    help="print a certificate's x5t#S256, SHA-256 fingerprint and SPKI pin",
    description="Print the RFC 8705 x5t#S256, the SHA-256 fingerprint and the RFC 7469 SPKI pin "
    "of the first certificate in FILE (PEM, DER or PKCS#12; - for stdin). "
    "Exit 0 ok, 1 malformed certificate, 2 unreadable file.",
    arguments=(
        JSON,
        arg("--jwk", action="store_true",
            help="print the public key as a JWK with x5c (every certificate in FILE), x5t#S256, use and alg"),
        arg("--use", default="sig", help="the JWK's use member (default: sig; '' to omit)"),
        arg("--alg", default=None,
            help="the JWK's alg member (default: PS256 for RSA, ES256/ES384/ES512 by curve, EdDSA; '' to omit)"),
        PASSWORD,
        arg("file", metavar="FILE"),
    ),
    run=run,
)
