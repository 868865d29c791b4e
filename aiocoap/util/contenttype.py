"""Properties of content types (media types with their parameters, as in
``application/senml+cbor`` or ``text/plain; charset=utf-8``) given as text.

Only what the library needs is here: :func:`categorize` tells which of the
formats the tools understand a content type is, or is built on.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["categorize"]


def categorize(contenttype: str) -> Optional[str]:
    """Return ``"cbor"``, ``"cbor-seq"``, ``"json"`` or ``"link-format"``
    when the content type is that format or declares itself based on it
    through a structured syntax suffix (RFC 6838 Section 4.2.8, eg.
    ``+cbor``), and None for anything else.

    Parameters are ignored, and the comparison is case-insensitive.

    >>> categorize("application/senml+cbor")
    'cbor'
    >>> categorize("application/json; charset=utf-8")
    'json'
    >>> categorize("application/link-format")
    'link-format'
    >>> categorize("text/plain") is None
    True
    """
    media_type = contenttype.split(";", 1)[0].strip().lower()
    _, _, subtype = media_type.partition("/")
    for category in ("cbor-seq", "cbor", "json"):
        if subtype == category or subtype.endswith("+" + category):
            return category
    if media_type == "application/link-format":
        return "link-format"
    return None
