"""DER extents: the octets of elements the decoder has already read (X.690 §8.1.3, §8.3.2, §10.1).

A certificate's fields are sliced from its DER at these extents rather than re-encoded: DER
has one length encoding and one INTEGER form, so a decoded size gives the transmitted one.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat import asn1


def int_size(value: int) -> int:
    """Octets of the DER INTEGER ``value`` with its tag and length (X.690 §8.3.2: the minimal two's complement)."""
    content = (value if value >= 0 else ~value).bit_length() // 8 + 1
    return header_for(content) + content


def tlv_size(tlv: Any) -> int:
    """Octets of a decoded TLV field as transmitted (DER: one length encoding, X.690 §10.1)."""
    n = len(tlv.data)
    return len(tlv.tag_bytes) + (1 if n < 0x80 else 1 + (n.bit_length() + 7) // 8) + n


def validity_size(validity: Any) -> int:
    """Octets of the Validity when its times have the RFC 5280 §4.1.2.5.1-2 forms (UTCTime 13, GeneralizedTime 15)."""
    content = 0
    for t in (validity.not_before, validity.not_after):
        content += 15 if isinstance(t, asn1.UTCTime) else 17
    return 2 + content


def header_for(content: int) -> int:
    """Tag and length octets of a DER element with ``content`` octets (one-octet tag; X.690 §8.1.3)."""
    return 2 if content < 0x80 else 2 + (content.bit_length() + 7) // 8


def header_of(total: int) -> int:
    """Tag and length octets of a DER element ``total`` octets long in all (one-octet tag)."""
    for head in (2, 3, 4, 5, 6):
        if header_for(total - head) == head:
            return head
    raise ValueError("no DER length fits")
