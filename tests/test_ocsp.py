"""OCSP requests and responses (RFC 6960): authorisation, freshness, nonce, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from hypothesis import given, settings
from hypothesis import strategies as st
from ocsp_helpers import ocsp_responder, ocsp_response, openssl_ocsp_response

from mtlscore import Policy, Reason, TrustStore, Validator, pki
from mtlscore.revocation.ocsp import build_request, check_response
from mtlscore.x509.cert import parse_certificate

NOW = pki.NOW


@pytest.fixture(scope="module")
def ca() -> tuple[pki.Issued, pki.Issued, pki.Issued]:
    root = pki.root()
    inter = root.intermediate()
    return root, inter, inter.leaf()


def check(leaf: pki.Issued, inter: pki.Issued, data: bytes, **kw: object) -> tuple[str, str]:
    st_ = check_response(data, parse_certificate(leaf.der), parse_certificate(inter.der), at=kw.pop("at", NOW),
                         **kw)  # type: ignore[arg-type]
    return st_.status, st_.detail


def test_request_names_the_certificate(ca: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    _, inter, leaf = ca
    der = build_request(parse_certificate(leaf.der), parse_certificate(inter.der), nonce=b"n" * 16)
    req = ocsp.load_der_ocsp_request(der)
    assert req.serial_number == leaf.serial
    assert req.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 16


@pytest.mark.parametrize("status", ["good", "revoked", "unknown"])
def test_status_signed_by_the_ca(ca: tuple[pki.Issued, pki.Issued, pki.Issued], status: str) -> None:
    _, inter, leaf = ca
    got, detail = check(leaf, inter, ocsp_response(leaf, inter, status=status, reason=x509.ReasonFlags.key_compromise))
    assert got == status
    if status == "revoked":
        assert "keyCompromise" in detail


@pytest.mark.parametrize("by_name", [False, True])
def test_delegated_responder(ca: tuple[pki.Issued, pki.Issued, pki.Issued], by_name: bool) -> None:
    _, inter, leaf = ca
    responder = ocsp_responder(inter)
    assert check(leaf, inter, ocsp_response(leaf, inter, responder=responder, by_name=by_name))[0] == "good"


@pytest.mark.parametrize(
    "case,needle",
    [
        ("no_eku", "OCSPSigning"),
        ("other_ca", "not issued by"),
        ("expired", "validity"),
        ("not_included", "neither the issuing CA"),
        ("wrong_key", "does not verify"),
        ("sibling_leaf", "OCSPSigning"),
    ],
)
def test_unauthorised_signers_are_refused(
    ca: tuple[pki.Issued, pki.Issued, pki.Issued], case: str, needle: str
) -> None:
    root, inter, leaf = ca
    kw: dict[str, object] = {}
    if case == "no_eku":
        kw["responder"] = ocsp_responder(inter, eku=None)
    elif case == "other_ca":
        kw["responder"] = ocsp_responder(root)  # the root may not answer for the intermediate's leaves
    elif case == "expired":
        kw["responder"] = ocsp_responder(inter, not_after=NOW - timedelta(days=1))
    elif case == "not_included":
        kw["responder"] = ocsp_responder(inter)
        kw["include_responder"] = False
    elif case == "wrong_key":
        # Names the CA (by name), signed by another key with the same name.
        kw["responder"] = pki.root("CN=Test Intermediate CA")
        kw["by_name"] = True
        kw["include_responder"] = False
    elif case == "sibling_leaf":
        kw["responder"] = inter.leaf("CN=just another client")
    status, detail = check(leaf, inter, ocsp_response(leaf, inter, **kw))  # type: ignore[arg-type]
    assert status == "unusable"
    assert needle in detail, detail


@pytest.mark.parametrize(
    "kw,status,needle",
    [
        ({"this_update": NOW + timedelta(minutes=5)}, "unusable", "not valid until"),
        ({"next_update": NOW - timedelta(minutes=1)}, "unusable", "stale"),
        ({"next_update": None}, "good", ""),
        ({"next_update": None, "this_update": NOW - timedelta(days=2)}, "unusable", "older than"),
        ({"cert_id_hash": hashes.SHA256()}, "good", ""),
    ],
)
def test_freshness(ca: tuple[pki.Issued, pki.Issued, pki.Issued], kw: dict[str, object], status: str,
                   needle: str) -> None:
    _, inter, leaf = ca
    got, detail = check(leaf, inter, ocsp_response(leaf, inter, **kw), max_age=timedelta(days=1))  # type: ignore[arg-type]
    assert got == status and needle in detail


def test_clock_skew_admits_a_response_from_the_near_future(ca: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    _, inter, leaf = ca
    data = ocsp_response(leaf, inter, this_update=NOW + timedelta(seconds=30))
    assert check(leaf, inter, data)[0] == "unusable"
    assert check(leaf, inter, data, skew=timedelta(minutes=1))[0] == "good"


def test_nonce(ca: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    _, inter, leaf = ca
    assert check(leaf, inter, ocsp_response(leaf, inter, nonce=b"a" * 16), nonce=b"a" * 16)[0] == "good"
    assert check(leaf, inter, ocsp_response(leaf, inter, nonce=b"b" * 16), nonce=b"a" * 16)[0] == "unusable"
    status, detail = check(leaf, inter, ocsp_response(leaf, inter), nonce=b"a" * 16)
    assert status == "unusable" and "nonce" in detail


def test_a_response_about_another_certificate(ca: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    _, inter, leaf = ca
    other = inter.leaf("CN=other")
    assert check(leaf, inter, ocsp_response(other, inter))[0] == "unrelated"


@pytest.mark.parametrize("status", [ocsp.OCSPResponseStatus.TRY_LATER, ocsp.OCSPResponseStatus.UNAUTHORIZED])
def test_unsuccessful_responses(ca: tuple[pki.Issued, pki.Issued, pki.Issued], status: ocsp.OCSPResponseStatus) -> None:
    _, inter, leaf = ca
    got, detail = check(leaf, inter, ocsp_response(leaf, inter, response_status=status))
    assert got == "unusable" and status.name.lower() in detail


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=400))
def test_garbage_is_unusable_never_an_exception(data: bytes) -> None:
    root = pki.root("CN=G")
    leaf = root.leaf()
    assert check(leaf, root, data)[0] == "unusable"


def test_truncated_and_flipped_responses(ca: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    _, inter, leaf = ca
    good = ocsp_response(leaf, inter)
    for cut in (1, 10, len(good) // 2, len(good) - 1):
        assert check(leaf, inter, good[:cut])[0] == "unusable"
    flipped = bytearray(good)
    flipped[-5] ^= 0x01  # inside the signature
    assert check(leaf, inter, bytes(flipped))[0] == "unusable"


# -- stapled responses through the validator --------------------------------------------


@pytest.mark.parametrize("status,reason", [("good", None), ("revoked", Reason.REVOKED)])
def test_stapled_response_decides_in_hard_mode(ca: tuple[pki.Issued, pki.Issued, pki.Issued], status: str,
                                               reason: Reason | None) -> None:
    root, inter, leaf = ca
    v = Validator(TrustStore([root.pem]), Policy(revocation="hard", revocation_ca="off"))
    verdict = v.validate(leaf.chain_pem, at=NOW, ocsp_responses=[ocsp_response(leaf, inter, status=status)])
    assert verdict.reason is reason, verdict.detail


def test_bad_stapled_response_is_ignored_with_a_note(ca: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    root, inter, leaf = ca
    v = Validator(TrustStore([root.pem]), Policy(revocation_ca="off"))
    stale = ocsp_response(leaf, inter, next_update=NOW - timedelta(hours=1))
    verdict = v.validate(leaf.chain_pem, at=NOW, ocsp_responses=[stale])
    assert verdict.ok and any("stapled OCSP response was ignored" in n for n in verdict.notes)
    hard = Validator(TrustStore([root.pem]), Policy(revocation="hard", revocation_ca="off"))
    assert hard.validate(leaf.chain_pem, at=NOW, ocsp_responses=[stale]).reason is Reason.REVOCATION_UNAVAILABLE


# -- id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1) ------------------------------------------


@pytest.mark.parametrize("nocheck", [True, False])
def test_a_responder_without_nocheck_is_handed_back_for_checking(
    ca: tuple[pki.Issued, pki.Issued, pki.Issued], nocheck: bool
) -> None:
    _, inter, leaf = ca
    responder = ocsp_responder(inter, nocheck=nocheck)
    got = check_response(ocsp_response(leaf, inter, responder=responder), parse_certificate(leaf.der),
                         parse_certificate(inter.der), at=NOW)
    assert got.status == "good"
    assert got.responder == (None if nocheck else parse_certificate(responder.der))
    # The CA signing itself needs no such check.
    assert check_response(ocsp_response(leaf, inter), parse_certificate(leaf.der), parse_certificate(inter.der),
                          at=NOW).responder is None


# -- RSA-PSS-signed responses ---------------------------------------------------------------


# openssl stamps its answers with the real clock: these certificates are built around it.
REAL_NOW = datetime.now(UTC)


def check_real(leaf: pki.Issued, issuer: pki.Issued, data: bytes) -> tuple[str, str]:
    return check(leaf, issuer, data, at=datetime.now(UTC), skew=timedelta(minutes=1))


@pytest.fixture(scope="module")
def rsa_ca() -> tuple[pki.Issued, pki.Issued]:
    root = pki.root("CN=PSS Root", key="rsa", now=REAL_NOW)
    return root, root.leaf("CN=pss-leaf")


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("delegated", [False, True])
def test_rsa_pss_signed_responses_are_verified(rsa_ca: tuple[pki.Issued, pki.Issued], digest: str,
                                               delegated: bool) -> None:
    root, leaf = rsa_ca
    signer = ocsp_responder(root, key="rsa", nocheck=True) if delegated else None
    for status, expect in (("V", "good"), ("R", "revoked")):
        data = openssl_ocsp_response(leaf, root, signer=signer, status=status, digest=digest,
                                     options=("rsa_padding_mode:pss", "rsa_pss_saltlen:32"))
        assert ocsp.load_der_ocsp_response(data).signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10"
        assert check_real(leaf, root, data)[0] == expect, check_real(leaf, root, data)


def test_rsa_pss_responses_are_held_to_policy_and_signature(rsa_ca: tuple[pki.Issued, pki.Issued]) -> None:
    root, leaf = rsa_ca
    pss = ("rsa_padding_mode:pss", "rsa_pss_saltlen:32")
    # A hash policy does not allow.
    status, detail = check_real(leaf, root, openssl_ocsp_response(leaf, root, digest="sha1", options=pss))
    assert status == "unusable" and "SHA1" in detail
    # A signature that does not verify: the last octet (of the signature, before any certs) flipped.
    data = bytearray(openssl_ocsp_response(leaf, root, options=pss))
    sig = ocsp.load_der_ocsp_response(bytes(data)).signature
    at = bytes(data).index(sig) + len(sig) - 1
    data[at] ^= 1
    status, detail = check_real(leaf, root, bytes(data))
    assert status == "unusable" and "does not verify" in detail
    # The salt length is the one the parameters declare.
    other_salt = openssl_ocsp_response(leaf, root, options=("rsa_padding_mode:pss", "rsa_pss_saltlen:20"))
    assert check_real(leaf, root, other_salt)[0] == "good"
    # PKCS#1 v1.5 from the same responder still works.
    assert check_real(leaf, root, openssl_ocsp_response(leaf, root))[0] == "good"


# -- GET requests (RFC 6960 A.1) -------------------------------------------------------------


def test_get_url_for_small_requests(ca: tuple[pki.Issued, pki.Issued, pki.Issued]) -> None:
    import base64
    from urllib.parse import unquote

    from mtlscore.revocation.ocsp import get_url

    _, inter, leaf = ca
    der = build_request(parse_certificate(leaf.der), parse_certificate(inter.der))
    url = get_url("http://ocsp.example/path", der)
    assert url is not None and url.startswith("http://ocsp.example/path/")
    encoded = url.removeprefix("http://ocsp.example/path/")
    assert len(encoded) < 255 and not set(encoded) & set("+/=")
    assert base64.b64decode(unquote(encoded)) == der
    assert get_url("http://ocsp.example/", der) == "http://ocsp.example/" + encoded  # no doubled "/"
    # Over 254 encoded bytes, or a URL with a query to append to: POST.
    assert get_url("http://ocsp.example", der + b"\0" * 150) is None
    assert get_url("http://ocsp.example/?a=b", der) is None
