"""Client certificates handed over by a proxy: header formats (RFC 9440, nginx, Envoy XFCC, AWS ALB),
their codec, and which proxies are trusted to set them. Sans-IO. Layers: docs/architecture.md.
"""

from .headers import (
    IDENTITY_HEADER_NAMES,
    emit_client_cert,
    emit_client_cert_chain,
    gcp_headers,
    parse_alb_clientcert,
    parse_alb_leaf,
    parse_client_cert,
    parse_client_cert_chain,
    parse_nginx_escaped_cert,
    parse_xfcc,
)
from .trusted import ProxyPolicy, TrustedProxy

__all__ = [
    "IDENTITY_HEADER_NAMES",
    "ProxyPolicy",
    "TrustedProxy",
    "emit_client_cert",
    "emit_client_cert_chain",
    "gcp_headers",
    "parse_alb_clientcert",
    "parse_alb_leaf",
    "parse_client_cert",
    "parse_client_cert_chain",
    "parse_nginx_escaped_cert",
    "parse_xfcc",
]
