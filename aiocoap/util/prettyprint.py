"""Human-readable rendering of message payloads, as aiocoap-client shows them.

:func:`pretty_print` turns a message into information lines, a media type
for syntax highlighting and a text: JSON is indented by four spaces, CBOR
(and CBOR sequences) are shown in diagnostic notation
(:mod:`aiocoap.util.edn`), link-format gets one link per line, text is
shown as it is and everything else as a hex dump (media type
:data:`MEDIATYPE_HEXDUMP`). :func:`lexer_for_mime` finds the pygments lexer
for such a media type, and :func:`colorize` applies it for a terminal.

Rules this module keeps:

* It never raises on payload content: what does not parse as its declared
  format is shown as text with an information line if it is text, else as
  a hex dump.
* Rendering needs no optional module. Only the colors need pygments (the
  ``prettyprint`` extra), which is imported when they are asked for.
* Control characters other than tab, line feed and carriage return never
  reach the output unescaped, so a peer can not send terminal escape
  sequences through it.
* The content format is the message's own, or (as aiocoap does) the
  Accept option of the request it answers if it has none.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any, Callable, Optional

from ..numbers.contentformat import ContentFormat
from . import contenttype, edn

__all__ = [
    "pretty_print",
    "lexer_for_mime",
    "colorize",
    "hexdump",
    "MEDIATYPE_HEXDUMP",
    "MEDIATYPE_CBOR_DIAGNOSTIC",
]

MEDIATYPE_HEXDUMP = "text/vnd.aiocoap.hexdump"
"""Media type :func:`pretty_print` gives for a hex dump (lines as
``hexdump -C`` prints them)."""

MEDIATYPE_CBOR_DIAGNOSTIC = "application/cbor-diagnostic"
"""Media type :func:`pretty_print` gives for CBOR shown in diagnostic
notation."""

# Upper bound for inflating deflate-coded payloads (protects against
# decompression bombs).
MAX_INFLATED_SIZE = 16 * 1024 * 1024

_JSON_INDENT = 4


class _NotDecodable(Exception):
    """The payload does not parse as the format it is declared to be in."""


def pretty_print(message: Any) -> tuple[list[str], str, str]:
    """Render a message's payload for display.

    Returns ``(infos, mime, text)``: lines about the rendering itself (eg.
    that the payload was not valid JSON), the media type of ``text`` for
    syntax highlighting (see :func:`lexer_for_mime`; it tells how the text
    looks, not what the payload was), and the text to show.

    >>> from aiocoap import Message
    >>> pretty_print(Message(payload=b'{"a":[1,2]}', content_format=50))
    ([], 'application/json', '{\\n    "a": [\\n        1,\\n        2\\n    ]\\n}')
    """
    try:
        payload = bytes(message.payload or b"")
    except Exception as e:
        return [f"Payload is not available ({type(e).__name__})"], "text/plain", ""
    try:
        return _render(payload, _content_format_of(message))
    except Exception as e:
        # Everything expected is handled below; this keeps an unforeseen
        # failure from taking the client down with it.
        return (
            [f"Payload could not be pretty-printed ({type(e).__name__}: {e})"],
            MEDIATYPE_HEXDUMP,
            hexdump(payload),
        )


def _content_format_of(message: Any) -> Optional[int]:
    content_format: Optional[int] = message.opt.content_format
    if content_format is None:
        request = getattr(message, "request", None)
        if request is not None:
            content_format = request.opt.accept
    return content_format


def _render(payload: bytes, content_format: Optional[int]) -> tuple[list[str], str, str]:
    if not payload:
        return [], "text/plain", ""
    if content_format is None:
        return _render_unlabelled(payload)
    cf = ContentFormat(content_format)
    if not cf.is_known():
        return [f"Unknown Content-Format {int(cf)}, showing raw bytes"], MEDIATYPE_HEXDUMP, hexdump(payload)

    info: list[str] = []
    if cf.encoding == "deflate":
        try:
            inflated = _inflate(payload)
        except _NotDecodable as e:
            return [f"Payload is not valid deflate data ({e})"], MEDIATYPE_HEXDUMP, hexdump(payload)
        info.append(f"Inflated {len(payload)} bytes of deflate-coded payload to {len(inflated)} bytes")
        payload = inflated
    elif cf.encoding != "identity":
        return (
            [f"Content coding {cf.encoding!r} is not supported, showing raw bytes"],
            MEDIATYPE_HEXDUMP,
            hexdump(payload),
        )

    media_type = cf.media_type
    assert media_type is not None
    full_type = media_type.split(";", 1)[0].strip().lower()
    main, _, subtype = full_type.partition("/")
    category = contenttype.categorize(full_type)

    renderer: Callable[[bytes], str]
    if category == "link-format":
        renderer, mime, label = _render_link_format, "application/link-format", "link-format"
    elif category == "json":
        renderer, mime, label = _render_json, "application/json", "JSON"
    elif category == "cbor-seq":
        renderer, mime, label = _render_cbor_seq, MEDIATYPE_CBOR_DIAGNOSTIC, "a CBOR sequence"
    elif category == "cbor" or subtype in ("cwt", "cose", "cose-key", "cose-key-set", "multipart-core"):
        renderer, mime, label = _render_cbor, MEDIATYPE_CBOR_DIAGNOSTIC, "CBOR"
    elif main == "text" or subtype in ("xml", "javascript") or subtype.endswith("+xml"):
        renderer, mime, label = _render_text, full_type, "text"
    else:
        return info, MEDIATYPE_HEXDUMP, hexdump(payload)

    try:
        return info, mime, renderer(payload)
    except _NotDecodable as e:
        problem = f"Payload is not valid {label} ({e})"
    if mime != MEDIATYPE_CBOR_DIAGNOSTIC:
        # Text that is merely malformed is more readable as it is than dumped.
        try:
            return info + [problem + ", shown as it is"], "text/plain", _render_text(payload)
        except _NotDecodable:
            pass
    return info + [problem + ", showing raw bytes"], MEDIATYPE_HEXDUMP, hexdump(payload)


def _render_unlabelled(payload: bytes) -> tuple[list[str], str, str]:
    """Without a Content-Format, readable text is shown as text."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return [], MEDIATYPE_HEXDUMP, hexdump(payload)
    if _UNSAFE_CONTROL.search(text):
        return [], MEDIATYPE_HEXDUMP, hexdump(payload)
    return [], "text/plain", text


def _inflate(payload: bytes) -> bytes:
    """Undo the "deflate" content coding (a zlib stream, RFC 9110 §8.4.1.2;
    a bare deflate stream as some peers send it is accepted too)."""
    try:
        decompressor = zlib.decompressobj(zlib.MAX_WBITS)
        result = decompressor.decompress(payload, MAX_INFLATED_SIZE)
    except zlib.error as e:
        try:
            decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
            result = decompressor.decompress(payload, MAX_INFLATED_SIZE)
        except zlib.error:
            raise _NotDecodable(str(e)) from None
    if decompressor.unconsumed_tail:
        raise _NotDecodable(f"inflates to more than {MAX_INFLATED_SIZE} bytes")
    if not decompressor.eof:
        raise _NotDecodable("truncated stream")
    if decompressor.unused_data:
        raise _NotDecodable(f"{len(decompressor.unused_data)} bytes after the end of the stream")
    return result


def _decode_utf8(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _NotDecodable(f"not UTF-8: {e.reason} at byte {e.start}") from None


_UNSAFE_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _defang(text: str, escape: str = "\\x{:02x}") -> str:
    """Escape control characters (except tab and line breaks) that a
    terminal could interpret, using the ``escape`` format."""
    return _UNSAFE_CONTROL.sub(lambda m: escape.format(ord(m.group())), text)


def _render_text(payload: bytes) -> str:
    return _defang(_decode_utf8(payload))


def _render_json(payload: bytes) -> str:
    text = _decode_utf8(payload)
    try:
        value = json.loads(text)
    except ValueError as e:
        raise _NotDecodable(str(e)) from None
    except RecursionError:
        raise _NotDecodable("nested too deeply") from None
    try:
        formatted = json.dumps(value, indent=_JSON_INDENT, ensure_ascii=False)
    except RecursionError:
        raise _NotDecodable("nested too deeply") from None
    # json.dumps escapes C0 controls already; DEL and C1 get escaped here.
    return _defang(formatted, "\\u{:04x}")


# Link-format (RFC 6690 §2): links separated by commas, each a URI reference
# in angle brackets followed by ;-separated parameters whose values may be
# quoted strings (which can contain commas and semicolons).
_LINK_RE = re.compile(
    r"""\s*<[^<>]*>
        (?:\s*;\s*[^\s;=,"<>]+(?:\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^\s;,"<>]*))?)*
        \s*""",
    re.VERBOSE | re.DOTALL,
)


def _render_link_format(payload: bytes) -> str:
    text = _decode_utf8(payload)
    links = []
    pos = 0
    while True:
        match = _LINK_RE.match(text, pos)
        if match is None:
            raise _NotDecodable(f"no link at character {pos}")
        links.append(match.group().strip())
        pos = match.end()
        if pos == len(text):
            break
        if text[pos] != ",":
            raise _NotDecodable(f"unexpected {text[pos]!r} at character {pos}")
        pos += 1
    return _defang(",\n".join(links))


def _render_cbor(payload: bytes) -> str:
    try:
        return edn.cbor_to_edn(payload)
    except edn.CBORError as e:
        raise _NotDecodable(str(e)) from None


def _render_cbor_seq(payload: bytes) -> str:
    try:
        return edn.cbor_to_edn(payload, sequence=True)
    except edn.CBORError as e:
        raise _NotDecodable(str(e)) from None


def hexdump(data: bytes) -> str:
    """Show bytes like ``hexdump -C`` does: offset, 16 bytes in hex, and
    the printable ASCII characters among them, then the total length; every
    line ends with a line feed.

    >>> print(hexdump(b"Hello, CoAP world!"), end="")
    00000000  48 65 6c 6c 6f 2c 20 43  6f 41 50 20 77 6f 72 6c  |Hello, CoAP worl|
    00000010  64 21                                             |d!|
    00000012
    """
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hexes = [f"{b:02x}" for b in chunk]
        left = " ".join(hexes[:8])
        right = " ".join(hexes[8:])
        printable = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {left:<23}  {right:<23}  |{printable}|\n")
    lines.append(f"{len(data):08x}\n")
    return "".join(lines)


_cbor_diag_lexer_class: Optional[type] = None


def _cbor_diag_lexer() -> type:
    """Build (once) the pygments lexer for diagnostic notation, which
    pygments lacks."""
    global _cbor_diag_lexer_class
    if _cbor_diag_lexer_class is not None:
        return _cbor_diag_lexer_class

    from pygments.lexer import RegexLexer, bygroups
    from pygments.token import (
        Comment, Keyword, Name, Number, Operator, Punctuation, String, Whitespace,
    )

    quoted = r'"(?:[^"\\]|\\.)*"'
    indicator = r"(?:_[0-3i]?)?"

    class CborDiagLexer(RegexLexer):
        """CBOR diagnostic notation as produced by :mod:`aiocoap.util.edn`."""

        name = "CBOR diagnostic notation"
        aliases = ["cbor-diag", "edn"]
        mimetypes = [MEDIATYPE_CBOR_DIAGNOSTIC]
        tokens = {
            "root": [
                (r"\s+", Whitespace),
                (r"/[^/]*/", Comment),
                (r"#[^\n]*", Comment.Single),
                (rf"({quoted}{indicator})(\s*)(:)", bygroups(Name.Tag, Whitespace, Punctuation)),
                (quoted + indicator, String.Double),
                (r"(?:h|b64|b32|h32)?'[^']*'" + indicator, String.Other),
                (r"\d+" + indicator + r"(?=\()", Name.Decorator),
                (r"simple(?=\()", Keyword),
                (r"(?:true|false|null|undefined)\b", Keyword.Constant),
                (r"-?Infinity" + indicator + r"|NaN" + indicator, Number.Float),
                (r"-?\d+(?:\.\d+)?[eE][+-]?\d+" + indicator, Number.Float),
                (r"-?\d+\.\d+" + indicator, Number.Float),
                (r"-?\d+" + indicator, Number.Integer),
                (r"[\[{(]_[0-3]?|<<|>>", Operator),
                (r"[{}\[\](),:]", Punctuation),
            ]
        }

    _cbor_diag_lexer_class = CborDiagLexer
    return CborDiagLexer


def lexer_for_mime(mime: str) -> Any:
    """Return a pygments lexer for text of the media type ``mime`` (as
    :func:`pretty_print` gives it).

    Besides the media types pygments knows, this covers
    :data:`MEDIATYPE_HEXDUMP`, :data:`MEDIATYPE_CBOR_DIAGNOSTIC`,
    ``application/link-format`` and types with a structured syntax suffix
    (``application/senml+json`` is highlighted as JSON). Parameters are
    ignored.

    Raises ``pygments.util.ClassNotFound`` if there is no lexer for it (also
    for plain text, which is not highlighted), and ImportError (naming the
    extra to install) if pygments is not installed."""
    try:
        from pygments.lexers import HexdumpLexer, get_lexer_for_mimetype
        from pygments.util import ClassNotFound
    except ImportError as e:
        raise ImportError(f"Syntax highlighting needs pygments ({e}); install aiocoap[prettyprint]") from e

    base = mime.split(";", 1)[0].strip().lower()
    if base == MEDIATYPE_HEXDUMP:
        return HexdumpLexer()
    if base == MEDIATYPE_CBOR_DIAGNOSTIC:
        return _cbor_diag_lexer()()
    if base == "application/link-format":
        from .linkformat_pygments import LinkFormatLexer

        return LinkFormatLexer()
    if base == "text/plain":
        raise ClassNotFound("plain text is not highlighted")
    try:
        return get_lexer_for_mimetype(base)
    except ClassNotFound:
        main, _, subtype = base.partition("/")
        if "+" not in subtype:
            raise
        suffix = subtype.rsplit("+", 1)[1]
        return get_lexer_for_mimetype(f"{main}/{suffix}")


def colorize(text: str, mime: str, color: bool = True) -> str:
    """Add terminal (256 color) highlighting to text of the media type
    ``mime`` (eg. from :func:`pretty_print`).

    Returns the text unchanged if ``color`` is false, there is no lexer for
    the media type, or pygments is not installed. The line structure is
    kept: a text without a final line feed gets none."""
    if not color or not text:
        return text
    try:
        from pygments import highlight
        from pygments.formatters import Terminal256Formatter
        from pygments.util import ClassNotFound
    except ImportError:
        return text
    try:
        lexer = lexer_for_mime(mime)
    except ClassNotFound:
        return text
    result: str = highlight(text, lexer, Terminal256Formatter())
    # pygments terminates the last line; keep the caller's line structure.
    if not text.endswith("\n") and result.endswith("\n"):
        result = result[:-1]
    return result
