"""Test helpers for revocation: OCSP responses built with cryptography, PKCS#7 bundles."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp

from mtlscore import pki
from mtlscore.verify.policy import OCSP_SIGNING

__all__ = ["ocsp_responder", "ocsp_response", "openssl_ocsp_response", "pkcs7_bundle"]


def ocsp_responder(ca: pki.Issued, *, nocheck: bool = False, **kw: Any) -> pki.Issued:
    """A delegated OCSP responder certificate issued by ``ca`` (RFC 6960 §4.2.2.2).

    ``nocheck``: with id-pkix-ocsp-nocheck (§4.2.2.2.1), so its own revocation is not checked.
    """
    kw.setdefault("eku", [OCSP_SIGNING])
    if nocheck:
        kw["extensions"] = [*kw.get("extensions", ()), (x509.OCSPNoCheck(), False)]
    return ca.leaf("OCSP Responder", **kw)


def openssl_ocsp_response(
    cert: pki.Issued, issuer: pki.Issued, *, signer: pki.Issued | None = None, status: str = "V",
    options: tuple[str, ...] = (), digest: str = "sha256",
) -> bytes:
    """The answer of ``openssl ocsp`` (a real responder) about ``cert``, signed by ``signer``
    (default: ``issuer``) with extra ``-rsigopt`` ``options`` (e.g. RSA-PSS padding)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        import pytest

        pytest.skip("openssl is not installed")
    signer = signer or issuer
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        exp = cert.cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        when = (issuer.now - timedelta(days=1)).strftime("%y%m%d%H%M%SZ") if status == "R" else ""
        (d / "index.txt").write_text(f"{status}\t{exp}\t{when}\t{cert.serial:X}\tunknown\t/CN=x\n")
        (d / "ca.pem").write_bytes(issuer.pem)
        (d / "signer.pem").write_bytes(signer.pem)
        (d / "key.pem").write_bytes(signer.key_pem)
        req = ocsp.OCSPRequestBuilder().add_certificate(cert.cert, issuer.cert, hashes.SHA1()).build()
        (d / "req.der").write_bytes(req.public_bytes(serialization.Encoding.DER))
        args = [openssl, "ocsp", "-index", "index.txt", "-CA", "ca.pem", "-rsigner", "signer.pem", "-rkey", "key.pem",
                "-reqin", "req.der", "-respout", "resp.der", "-rmd", digest, "-nmin", "60"]
        for opt in options:
            args += ["-rsigopt", opt]
        subprocess.run(args, cwd=d, capture_output=True, timeout=30, check=True)
        return (d / "resp.der").read_bytes()


def ocsp_response(
    cert: pki.Issued,
    issuer: pki.Issued,
    *,
    status: str = "good",
    responder: pki.Issued | None = None,
    this_update: datetime | None = None,
    next_update: datetime | str | None = "default",
    nonce: bytes | None = None,
    reason: x509.ReasonFlags | None = None,
    by_name: bool = False,
    include_responder: bool = True,
    cert_id_hash: hashes.HashAlgorithm | None = None,
    response_status: ocsp.OCSPResponseStatus | None = None,
) -> bytes:
    """A DER OCSP response about ``cert`` signed by ``issuer`` or by a delegated ``responder``."""
    if response_status is not None:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(response_status).public_bytes(serialization.Encoding.DER)
    now = issuer.now
    this_update = this_update or now - timedelta(minutes=10)
    if next_update == "default":
        next_update = now + timedelta(hours=1)
    cs = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
          "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=cert.cert,
        issuer=issuer.cert,
        algorithm=cert_id_hash or hashes.SHA1(),
        cert_status=cs,
        this_update=this_update,
        next_update=next_update if isinstance(next_update, datetime) else None,
        revocation_time=this_update - timedelta(days=1) if status == "revoked" else None,
        revocation_reason=reason if status == "revoked" else None,
    )
    signer = responder or issuer
    encoding = ocsp.OCSPResponderEncoding.NAME if by_name else ocsp.OCSPResponderEncoding.HASH
    b = b.responder_id(encoding, signer.cert)
    if responder is not None and include_responder:
        b = b.certificates([responder.cert])
    if nonce is not None:
        b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
    return b.sign(signer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def pkcs7_bundle(*certs: pki.Issued, pem: bool = False) -> bytes:
    """A certs-only PKCS#7 bundle (what caIssuers URLs often serve)."""
    enc = serialization.Encoding.PEM if pem else serialization.Encoding.DER
    return pkcs7.serialize_certificates([c.cert for c in certs], enc)
