"""Content-Format numbers (IANA "CoAP Content-Formats" registry).

Preliminary subset; the full registry is being filled in.
"""

from __future__ import annotations

from ..util import ExtensibleIntEnum

__all__ = ["ContentFormat"]


class ContentFormat(ExtensibleIntEnum):
    """A CoAP Content-Format number."""

    TEXT = 0
    LINKFORMAT = 40
    XML = 41
    OCTETSTREAM = 42
    EXI = 47
    JSON = 50
    CBOR = 60
