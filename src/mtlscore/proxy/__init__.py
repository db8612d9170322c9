"""Client certificates handed over by a proxy: header formats (RFC 9440, nginx, Envoy XFCC, AWS ALB),
their codec, and which proxies are trusted to set them. Sans-IO. Layers: docs/architecture.md.
"""
