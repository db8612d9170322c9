"""Who the client is: the identity read from a validated certificate, mapping rules, the identity map,
and RFC 8705 certificate-bound tokens. Sans-IO. Layers: docs/architecture.md.
"""

from . import binding
from .binding import *  # noqa: F403 - RFC 8705's names are the package's too, listed once in binding.__all__
from .identity import AnchorRef, Identity
from .identity_map import IdentityMap, IdentityResolver, Principal, Resolution, Rule, accounts_from_config

__all__ = ["AnchorRef", "Identity", "IdentityMap", "IdentityResolver", "Principal", "Resolution", "Rule",
           "accounts_from_config"]
__all__ += binding.__all__
