"""Human-readable rendering of message payloads, as aiocoap-client shows them.

:func:`pretty_print` turns a message into information lines, a syntax hint
and a text: JSON is re-indented, CBOR (and CBOR sequences) are shown in
diagnostic notation, link-format gets one link per line, text is shown as
it is and everything else as a hex dump. :func:`colorize` then adds
terminal colors for the hint.

Rules this module keeps:

* It never raises on payload content: whatever does not parse as its
  declared format becomes an information line plus a hex dump.
* The optional modules (``cbor2`` for CBOR, ``pygments`` for colors) are
  imported only when needed; without them the output is plain (CBOR then
  falls back to the hex dump), and importing this module works regardless.
* Control characters other than tab, line feed and carriage return never
  reach the output unescaped, so a peer can not send terminal escape
  sequences through it.
"""

from __future__ import annotations

import io
import json
import math
import re
import zlib
from collections.abc import Mapping
from typing import Any, Callable, Optional

from ..numbers.contentformat import ContentFormat

__all__ = ["pretty_print", "lexer_for", "colorize", "hexdump"]

# Hints that are not pygments lexer names but implemented here.
LINK_FORMAT_HINT = "link-format"
CBOR_DIAG_HINT = "cbor-diag"
HEXDUMP_HINT = "hexdump"

# Upper bound for inflating deflate-coded payloads (protects against
# decompression bombs).
MAX_INFLATED_SIZE = 16 * 1024 * 1024

# Deeper CBOR nesting is shown as a hex dump rather than risking the
# interpreter's recursion limit.
_MAX_CBOR_DEPTH = 200

# Tags that cbor2 would turn into Python objects (dates, decimals, UUIDs,
# sets, ...); they are kept as plain tags so that the output shows what was
# on the wire. Bignums (2, 3) stay integers, and the string-reference and
# shared-value tags (25, 256, 28, 29) are left to cbor2 because they affect
# decoding itself.
_RAW_TAGS = (0, 1, 4, 5, 30, 35, 36, 37, 52, 54, 100, 258, 260, 261, 1004, 55799)

_TEXT_HINTS = {
    "text/css": "css",
    "text/html": "html",
    "application/javascript": "javascript",
}

_CBOR_SUBTYPES = frozenset(
    {"cbor", "cwt", "cose", "cose-key", "cose-key-set", "multipart-core"}
)


class _NotDecodable(Exception):
    """The payload does not parse as the format it is declared to be in."""


class _MissingModule(Exception):
    """An optional module needed for the rendering is not installed."""


def pretty_print(message: Any) -> tuple[list[str], str, str]:
    """Render a message's payload for display.

    Returns ``(info, hint, text)``: lines about the rendering itself (eg.
    that the payload was not valid JSON), a pygments lexer name (or one of
    the extra names :func:`lexer_for` knows, or ``""``) suitable for
    :func:`colorize`, and the text to show.

    >>> from aiocoap import Message
    >>> pretty_print(Message(payload=b'{"a":[1,2]}', content_format=50))
    ([], 'json', '{\\n  "a": [\\n    1,\\n    2\\n  ]\\n}')
    """
    try:
        payload = bytes(message.payload or b"")
    except Exception as e:
        return [f"Payload is not available ({type(e).__name__})"], "", ""
    try:
        content_format = message.opt.content_format
        return _render(payload, content_format)
    except Exception as e:
        # Everything expected is handled below; this keeps an unforeseen
        # failure from taking the client down with it.
        return (
            [f"Payload could not be pretty-printed ({type(e).__name__}: {e})"],
            HEXDUMP_HINT,
            hexdump(payload),
        )


def _render(payload: bytes, content_format: Optional[int]) -> tuple[list[str], str, str]:
    if not payload:
        return [], "", ""
    if content_format is None:
        return _render_unlabelled(payload)
    cf = ContentFormat(content_format)
    if not cf.is_known():
        return [f"Unknown Content-Format {int(cf)}, showing raw bytes"], HEXDUMP_HINT, hexdump(payload)

    info: list[str] = []
    if cf.encoding == "deflate":
        try:
            inflated = _inflate(payload)
        except _NotDecodable as e:
            return [f"Payload is not valid deflate data ({e})"], HEXDUMP_HINT, hexdump(payload)
        info.append(f"Inflated {len(payload)} bytes of deflate-coded payload to {len(inflated)} bytes")
        payload = inflated
    elif cf.encoding != "identity":
        return (
            [f"Content coding {cf.encoding!r} is not supported, showing raw bytes"],
            HEXDUMP_HINT,
            hexdump(payload),
        )

    media_type = cf.media_type
    assert media_type is not None
    full_type = media_type.split(";", 1)[0].strip().lower()
    main, _, subtype = full_type.partition("/")

    renderer: Callable[[bytes], tuple[str, str]]
    if full_type == "application/link-format":
        renderer, label = _render_link_format, "link-format"
    elif subtype == "json" or subtype.endswith("+json"):
        renderer, label = _render_json, "JSON"
    elif subtype == "cbor-seq" or subtype.endswith("+cbor-seq"):
        renderer, label = _render_cbor_seq, "a CBOR sequence"
    elif subtype in _CBOR_SUBTYPES or subtype.endswith("+cbor"):
        renderer, label = _render_cbor, "CBOR"
    elif main == "text" or subtype in ("xml", "javascript") or subtype.endswith("+xml"):
        text_hint = _TEXT_HINTS.get(full_type, "xml" if subtype.endswith("xml") else "")
        renderer, label = (lambda data: (text_hint, _render_text(data))), "text"
    else:
        return info, HEXDUMP_HINT, hexdump(payload)

    try:
        hint, text = renderer(payload)
    except _NotDecodable as e:
        info.append(f"Payload is not valid {label} ({e}), showing raw bytes")
        return info, HEXDUMP_HINT, hexdump(payload)
    except _MissingModule as e:
        info.append(f"Module {e} is not installed, showing raw bytes")
        return info, HEXDUMP_HINT, hexdump(payload)
    return info, hint, text


def _render_unlabelled(payload: bytes) -> tuple[list[str], str, str]:
    """Without a Content-Format, readable text is shown as text."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return [], HEXDUMP_HINT, hexdump(payload)
    if _UNSAFE_CONTROL.search(text):
        return [], HEXDUMP_HINT, hexdump(payload)
    return [], "", text


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


def _json_string(text: str) -> str:
    """A JSON string literal of text that is safe to print (json.dumps
    escapes C0 controls already; DEL and C1 get escaped here)."""
    return _defang(json.dumps(text, ensure_ascii=False), "\\u{:04x}")


def _render_text(payload: bytes) -> str:
    return _defang(_decode_utf8(payload))


def _render_json(payload: bytes) -> tuple[str, str]:
    text = _decode_utf8(payload)
    try:
        value = json.loads(text)
    except ValueError as e:
        raise _NotDecodable(str(e)) from None
    except RecursionError:
        raise _NotDecodable("nested too deeply") from None
    return "json", _defang(json.dumps(value, indent=2, ensure_ascii=False), "\\u{:04x}")


# Link-format (RFC 6690 §2): links separated by commas, each a URI reference
# in angle brackets followed by ;-separated parameters whose values may be
# quoted strings (which can contain commas and semicolons).
_LINK_RE = re.compile(
    r"""\s*<[^<>]*>
        (?:\s*;\s*[^\s;=,"<>]+(?:\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^\s;,"<>]*))?)*
        \s*""",
    re.VERBOSE | re.DOTALL,
)


def _render_link_format(payload: bytes) -> tuple[str, str]:
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
    return LINK_FORMAT_HINT, _defang(",\n".join(links))


def _cbor_items(payload: bytes, sequence: bool) -> list[Any]:
    try:
        import cbor2
    except ImportError:
        raise _MissingModule("cbor2") from None

    stream = io.BytesIO(payload)
    raw_tags = {tag: (lambda value, *_, tag=tag: cbor2.CBORTag(tag, value)) for tag in _RAW_TAGS}
    try:
        decoder = cbor2.CBORDecoder(stream, semantic_decoders=raw_tags)
    except TypeError:
        # cbor2 before 6 can not be told to leave tags alone; its Python
        # objects are rendered as well as possible instead.
        decoder = cbor2.CBORDecoder(stream)

    items = []
    while stream.tell() < len(payload):
        try:
            items.append(decoder.decode())
        except RecursionError:
            raise _NotDecodable("nested too deeply") from None
        except Exception as e:
            # cbor2 reports malformed input through CBORDecodeError, but
            # also lets ValueError/TypeError/OverflowError out of semantic
            # decoding.
            raise _NotDecodable(str(e)) from None
        if not sequence:
            break
    trailing = len(payload) - stream.tell()
    if trailing:
        raise _NotDecodable(f"{trailing} byte(s) of trailing data")
    return items


def _render_cbor(payload: bytes) -> tuple[str, str]:
    (item,) = _cbor_items(payload, sequence=False)
    return CBOR_DIAG_HINT, _diagnostic(item)


def _render_cbor_seq(payload: bytes) -> tuple[str, str]:
    items = _cbor_items(payload, sequence=True)
    return CBOR_DIAG_HINT, ",\n".join(_diagnostic(item) for item in items)


def _diagnostic(item: Any) -> str:
    """Show a decoded CBOR item in diagnostic notation (RFC 8949 §8),
    indented like JSON."""
    out: list[str] = []
    _write_diagnostic(item, out, 0, 0)
    return "".join(out)


def _write_diagnostic(item: Any, out: list[str], depth: int, nesting: int) -> None:
    # depth is the indentation level; nesting also counts tags, which do
    # not indent.
    if nesting > _MAX_CBOR_DEPTH:
        raise _NotDecodable("nested too deeply")
    import cbor2  # present: the item came from it

    indent = "\n" + "  " * (depth + 1)
    # cbor2's own types first: depending on the version, simple values are
    # tuples and tags or frozen maps may look like other containers.
    if isinstance(item, cbor2.CBORTag):
        out.append(f"{item.tag}(")
        _write_diagnostic(item.value, out, depth, nesting + 1)
        out.append(")")
    elif isinstance(item, cbor2.CBORSimpleValue):
        out.append(f"simple({item.value})")
    elif item is cbor2.undefined:
        out.append("undefined")
    elif item is None:
        out.append("null")
    elif item is True or item is False:
        out.append("true" if item else "false")
    elif isinstance(item, int):
        out.append(str(int(item)))
    elif isinstance(item, float):
        if math.isnan(item):
            out.append("NaN")
        elif math.isinf(item):
            out.append("Infinity" if item > 0 else "-Infinity")
        else:
            out.append(repr(item))
    elif isinstance(item, str):
        out.append(_json_string(item))
    elif isinstance(item, (bytes, bytearray, memoryview)):
        out.append(f"h'{bytes(item).hex()}'")
    elif isinstance(item, (list, tuple)):
        if not item:
            out.append("[]")
            return
        out.append("[")
        for i, element in enumerate(item):
            out.append(indent if i == 0 else "," + indent)
            _write_diagnostic(element, out, depth + 1, nesting + 1)
        out.append("\n" + "  " * depth + "]")
    elif isinstance(item, Mapping):
        if not item:
            out.append("{}")
            return
        out.append("{")
        for i, (key, value) in enumerate(item.items()):
            out.append(indent if i == 0 else "," + indent)
            _write_diagnostic(key, out, depth + 1, nesting + 1)
            out.append(": ")
            _write_diagnostic(value, out, depth + 1, nesting + 1)
        out.append("\n" + "  " * depth + "}")
    elif isinstance(item, (set, frozenset)):
        out.append("258(")
        _write_diagnostic(list(item), out, depth, nesting + 1)
        out.append(")")
    else:
        _write_legacy_object(item, out, depth, nesting)


def _write_legacy_object(item: Any, out: list[str], depth: int, nesting: int) -> None:
    """Render the Python objects an older cbor2 makes of well-known tags
    back into tag form, as far as that can be told from the object."""
    import datetime
    import uuid

    if isinstance(item, datetime.datetime):
        out.append(f'0("{item.isoformat()}")')
    elif isinstance(item, datetime.date):
        out.append(f'1004("{item.isoformat()}")')
    elif isinstance(item, uuid.UUID):
        out.append(f"37(h'{item.bytes.hex()}')")
    else:
        # No better representation is known; a comment names the type.
        out.append(f"/{type(item).__name__}/ ")
        _write_diagnostic(str(item), out, depth, nesting)


def hexdump(data: bytes) -> str:
    """Show bytes like ``hexdump -C`` does: offset, 16 bytes in hex, and
    the printable ASCII characters among them.

    >>> print(hexdump(b"Hello, CoAP world!"))
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
        lines.append(f"{offset:08x}  {left:<23}  {right:<23}  |{printable}|")
    lines.append(f"{len(data):08x}")
    return "\n".join(lines)


_custom_lexer_classes: Optional[dict[str, type]] = None


def _custom_lexers() -> dict[str, type]:
    """Build (once) the pygments lexers for the hints pygments lacks."""
    global _custom_lexer_classes
    if _custom_lexer_classes is not None:
        return _custom_lexer_classes

    from pygments.lexer import RegexLexer, bygroups
    from pygments.token import (
        Comment, Keyword, Name, Number, Operator, Punctuation, String, Text, Whitespace,
    )

    quoted = r'"(?:[^"\\]|\\.)*"'

    class LinkFormatLexer(RegexLexer):
        """RFC 6690 link-format, as printed one link per line."""

        name = "CoRE link format"
        aliases = [LINK_FORMAT_HINT]
        tokens = {
            "root": [
                (r"<[^>]*>", Name.Tag),
                (r"(;)(\s*)([^;=,\s]+)", bygroups(Punctuation, Whitespace, Name.Attribute)),
                (rf"(=)(\s*)({quoted})", bygroups(Operator, Whitespace, String.Double)),
                (r"(=)(\s*)([^;,\s]*)", bygroups(Operator, Whitespace, String)),
                (r",", Punctuation),
                (r"\s+", Whitespace),
                (r".", Text),
            ]
        }

    class CborDiagLexer(RegexLexer):
        """CBOR diagnostic notation as produced by :func:`pretty_print`."""

        name = "CBOR diagnostic notation"
        aliases = [CBOR_DIAG_HINT]
        tokens = {
            "root": [
                (r"\s+", Whitespace),
                (rf"({quoted})(\s*)(:)", bygroups(Name.Tag, Whitespace, Punctuation)),
                (quoted, String.Double),
                (r"h'[0-9a-fA-F]*'", String.Other),
                (r"/[^/]*/", Comment),
                (r"\d+(?=\()", Name.Decorator),
                (r"simple(?=\()", Keyword),
                (r"(?:true|false|null|undefined)\b", Keyword.Constant),
                (r"-?Infinity\b|NaN\b", Number.Float),
                (r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)", Number.Float),
                (r"-?\d+\.\d+", Number.Float),
                (r"-?\d+", Number.Integer),
                (r"[{}\[\](),:]", Punctuation),
                (r".", Text),
            ]
        }

    _custom_lexer_classes = {LINK_FORMAT_HINT: LinkFormatLexer, CBOR_DIAG_HINT: CborDiagLexer}
    return _custom_lexer_classes


def lexer_for(content_type_hint: str) -> Optional[Any]:
    """Return a pygments lexer for a hint from :func:`pretty_print`.

    None if the hint is empty, names no lexer, or pygments is not
    installed."""
    if not content_type_hint:
        return None
    try:
        from pygments.lexers import get_lexer_by_name
        from pygments.util import ClassNotFound
    except ImportError:
        return None
    custom = _custom_lexers().get(content_type_hint)
    if custom is not None:
        return custom()
    try:
        return get_lexer_by_name(content_type_hint)
    except ClassNotFound:
        return None


def colorize(text: str, lexer_name: str, color: bool = True) -> str:
    """Add terminal (256 color) highlighting to text from
    :func:`pretty_print`.

    Returns the text unchanged if ``color`` is false, there is no lexer for
    the hint, or pygments is not installed."""
    if not color or not text:
        return text
    lexer = lexer_for(lexer_name)
    if lexer is None:
        return text
    try:
        from pygments import highlight
        from pygments.formatters import Terminal256Formatter
    except ImportError:
        return text
    result = highlight(text, lexer, Terminal256Formatter())
    # pygments terminates the last line; keep the caller's line structure.
    if not text.endswith("\n") and result.endswith("\n"):
        result = result[:-1]
    return result
