"""Typed seams (issue 16 item 4): where one layer hands an object to another, a type or a
Protocol says what it must be — no ``Any`` there, no ``getattr`` guessing behind it."""

from __future__ import annotations

import collections
import inspect
import re
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import pytest

from mtlscore import IdentityMap, Principal, Reason, Rule, TrustStore, Validator, Verdict, pki
from mtlscore.asgi import MtlsMiddleware
from mtlscore.cli.check import build_validator
from mtlscore.config import Config
from mtlscore.decision.cache import chain_key
from mtlscore.gateway.events import Evidence, Gateway
from mtlscore.gateway.preview import Replayer, account_of
from mtlscore.gateway.session import default_account_auth
from mtlscore.identity.identity import Identity
from mtlscore.proxy.trusted import ProxyPolicy, decision_verdict, map_identity
from mtlscore.reasons import CertificateRejected
from mtlscore.runtimes.fetch_asyncio import AsyncioFetcher, validate_with_fetch
from mtlscore.runtimes.fetch_trio import TrioFetcher
from mtlscore.runtimes.startup import startup_warnings
from mtlscore.runtimes.state import build_snapshot

NOW = pki.NOW
ROOT = pki.root()
LEAF = ROOT.intermediate().leaf("CN=partner-abc")
INTER_DER = LEAF.chain_der[1]

# The seams the issue names (identity map, principal, fetcher, config, build_validator)
# and the chain every entry point takes.
SEAMS: list[Callable[..., Any]] = [
    Validator.__init__, Validator.validate, Validator.start, Validator.parse, Validator.finish,
    MtlsMiddleware.__init__, decision_verdict, map_identity, ProxyPolicy.decide, ProxyPolicy.find,
    build_snapshot, startup_warnings, build_validator, Config.validator, default_account_auth, account_of,
    Evidence.of, AsyncioFetcher.validate, TrioFetcher.validate, validate_with_fetch, Replayer.validate,
    TrustStore.__init__, TrustStore.add_anchor, TrustStore.add_intermediates, TrustStore.add_allowlisted,
    chain_key,
]
_ANY = re.compile(r"\bAny\b")


@pytest.mark.parametrize("seam", SEAMS, ids=lambda f: f.__qualname__)
def test_no_any_in_a_seam_signature(seam: Callable[..., Any]) -> None:
    sig = inspect.signature(seam)
    annotations = [p.annotation for p in sig.parameters.values() if p.name != "self"]
    assert all(a is not inspect.Parameter.empty for a in annotations), sig
    assert not [a for a in [*annotations, sig.return_annotation] if _ANY.search(str(a))], sig


def test_no_any_in_the_seam_fields() -> None:
    types = {(cls.__name__, f.name): str(f.type) for cls in (Verdict, Config, Gateway, Evidence) for f in fields(cls)}
    assert types[("Verdict", "principal")] == "Principal | None"
    assert types[("Config", "accounts")] == "IdentityMap | None"
    assert "Principal | None" in types[("Gateway", "account_auth")]
    assert [k for k in (("Verdict", "principal"), ("Config", "accounts"), ("Config", "server"),
                        ("Gateway", "account_auth")) if _ANY.search(types[k])] == []


class Directory:
    """An identity resolver that is not an IdentityMap: the IdentityResolver Protocol is the contract."""

    def __init__(self) -> None:
        self.asked: list[Identity] = []

    def resolve(self, identity: Identity) -> Principal:
        self.asked.append(identity)
        if identity.common_name != "partner-abc":
            raise CertificateRejected(Reason.IDENTITY_UNMAPPED, f"{identity.subject_dn} is not in the directory")
        return Principal("acct-7", ("partners",), {"rate_limit": "5/s"})


def test_any_identity_resolver_maps_through_the_validator_and_the_gateway() -> None:
    directory = Directory()
    verdict = Validator(TrustStore([ROOT.pem]), identity_map=directory).validate(LEAF.chain_der, at=NOW)
    assert verdict.ok and verdict.principal == Principal("acct-7", ("partners",))
    assert directory.asked and directory.asked[0].common_name == "partner-abc"
    assert account_of(verdict.principal) == "acct-7"
    auth = default_account_auth(verdict.principal)
    assert auth is not None and auth.account == "acct-7" and auth.rate_limit is not None
    stranger = ROOT.intermediate().leaf("CN=someone")
    refused = Validator(TrustStore([ROOT.pem]), identity_map=directory).validate(stranger.chain_der, at=NOW)
    assert (refused.ok, refused.reason) == (False, Reason.IDENTITY_UNMAPPED)
    assert default_account_auth(None) is None and account_of(None) is None


def test_an_identity_map_is_an_identity_resolver() -> None:
    imap = IdentityMap([Rule.for_account("partner-abc", anchors=TrustStore([ROOT.pem]), cn="partner-abc")])
    verdict = Validator(TrustStore([ROOT.pem]), identity_map=imap).validate(LEAF.chain_der, at=NOW)
    assert verdict.ok and verdict.principal is not None and verdict.principal.id == "partner-abc"


def test_a_chain_may_be_any_sequence_of_certificates() -> None:
    # ChainInput says "a sequence"; a deque of DER is validated as the list is, not refused as malformed.
    validator = Validator(TrustStore([ROOT.pem]))
    as_list = validator.validate(list(LEAF.chain_der), at=NOW)
    as_deque = validator.validate(collections.deque(LEAF.chain_der), at=NOW)
    assert as_list.ok and as_deque.ok and as_deque.path == as_list.path
    assert not validator.validate(collections.deque([b"\x30\x03junk"]), at=NOW).ok
    assert chain_key(collections.deque(LEAF.chain_der)) is None  # not cached, still validated
    assert validator.validate(None, at=NOW).reason is Reason.NOT_PROVIDED
