"""A pygments lexer for the CoRE link format (RFC 6690), as aiocoap-client
shows it: one link per line, ``<target>`` then ``;name=value`` attributes.

This module is a pygments plug-in and needs pygments (the ``prettyprint``
extra); importing it without pygments raises an ImportError that says so.
:func:`aiocoap.util.prettyprint.lexer_for_mime` finds the lexer for
``application/link-format`` without registering anything globally.
"""

from __future__ import annotations

try:
    from pygments.lexer import RegexLexer, bygroups
    from pygments.token import Name, Operator, Punctuation, String, Text, Whitespace
except ImportError as e:  # pragma: no cover (depends on the installation)
    raise ImportError(
        f"aiocoap.util.linkformat_pygments needs pygments ({e}); install aiocoap[prettyprint]"
    ) from e

__all__ = ["LinkFormatLexer"]

_QUOTED = r'"(?:[^"\\]|\\.)*"'


class LinkFormatLexer(RegexLexer):
    """Highlights link targets, attribute names and values of
    ``application/link-format`` text; it tolerates the whitespace and line
    breaks the pretty printer adds between links and attributes."""

    name = "CoRE Link Format"
    aliases = ["link-format"]
    mimetypes = ["application/link-format"]

    tokens = {
        "root": [
            (r"<[^>]*>", Name.Label),
            (r"(;)(\s*)([^;=,\s]+)", bygroups(Punctuation, Whitespace, Name.Attribute)),
            (rf"(=)(\s*)({_QUOTED})", bygroups(Operator, Whitespace, String.Double)),
            (r"(=)(\s*)([^;,\s]*)", bygroups(Operator, Whitespace, String.Symbol)),
            (r",", Punctuation),
            (r"\s+", Whitespace),
            (r".", Text),
        ]
    }
