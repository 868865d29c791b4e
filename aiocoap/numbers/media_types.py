"""Legacy dictionaries between Content-Format numbers and media types.

Prefer :class:`aiocoap.numbers.contentformat.ContentFormat` in new code
(``ContentFormat(n).media_type``, ``ContentFormat.by_media_type(s)``); the
dictionaries here are derived from it and hold only the formats without a
content coding, so that the two directions are inverse to each other (up to
the deprecated ``"text/plain"`` key, which maps to 0 as well).

>>> media_types[50]
'application/json'
>>> media_types_rev["text/plain"], media_types_rev["text/plain;charset=utf-8"]
(0, 0)
"""

from __future__ import annotations

from .contentformat import ContentFormat

__all__ = ["media_types", "media_types_rev"]

media_types: dict[int, str] = {
    int(cf): cf.media_type
    for cf in ContentFormat
    if cf.media_type is not None and cf.encoding == "identity"
}

media_types_rev: dict[str, int] = {v: k for k, v in media_types.items()}
media_types_rev["text/plain"] = 0
