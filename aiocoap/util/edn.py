"""CBOR diagnostic notation (EDN, RFC 8949 Section 8 and RFC 8610
Appendix G) to CBOR and back, without third-party modules.

* :func:`edn_to_cbor` turns text like ``{"temp": 21.5, 1: h'cafe'}`` into
  the CBOR encoding of that item (or, with ``sequence=True``, of a CBOR
  sequence written as comma separated items). aiocoap-client uses it for
  ``--payload`` data of CBOR based content formats.
* :func:`cbor_to_edn` shows CBOR data in diagnostic notation, as the
  pretty printer of aiocoap-client does.

The two are inverse to each other on the wire: every well-formed CBOR
item comes back from ``edn_to_cbor(cbor_to_edn(data))`` byte for byte
(except NaNs with a payload, which EDN can not express; their bits are
shown in a comment).
Encodings that are not the preferred serialization (an integer in more
bytes than needed, a double that would fit in half precision, an
indefinite-length string) are shown with RFC 8949's encoding indicators
(``1.5_3``, ``23_0``, ``[_ 1, 2]``, ``(_ h'01', h'02')``), which the parser
honours; without an indicator the parser produces the preferred (shortest)
serialization.

What the parser accepts besides plain JSON: integers in any size (beyond
64 bits they become bignums, tags 2 and 3), ``0x``/``0o``/``0b`` integers,
``NaN``/``Infinity``/``-Infinity``, byte strings (``h'..'``, ``b64'..'``
in either base64 alphabet, ``b32'..'``, ``h32'..'``, and ``'text'`` for
the UTF-8 bytes of a text), concatenation of adjacent strings of the same
kind, tags ``N(item)``, ``simple(N)``, ``undefined``, embedded CBOR
``<<item, ...>>``, encoding indicators, ``/comments/`` and ``# comments``
to the end of a line, and a trailing comma in arrays and maps.

Limits: nesting deeper than :data:`MAX_DEPTH` is refused both ways (so no
input can exhaust the interpreter's stack). Errors are :class:`EDNError`
(text that is not diagnostic notation, with line and column) and
:class:`CBORError` (bytes that are not well-formed CBOR, with the offset),
both ValueErrors; nothing else is raised for any input.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from typing import Callable, Optional

__all__ = ["edn_to_cbor", "cbor_to_edn", "cbor_array_elements", "EDNError", "CBORError", "MAX_DEPTH"]

MAX_DEPTH = 256
"""Deepest nesting of arrays, maps, tags and embedded CBOR handled."""

# One-line forms of containers up to this length are kept on one line by
# cbor_to_edn; longer ones get one item per line.
_LINE_WIDTH = 72
_INDENT = "    "

# Major types (RFC 8949 Section 3.1)
_UINT, _NINT, _BYTES, _TEXT, _ARRAY, _MAP, _TAG, _SIMPLE = range(8)
_INDEFINITE = 31
_BREAK = 0xFF
_FALSE, _TRUE, _NULL, _UNDEFINED = 20, 21, 22, 23
_KEYWORDS = {_FALSE: "false", _TRUE: "true", _NULL: "null", _UNDEFINED: "undefined"}
# Additional information 24..27: the argument follows in 1, 2, 4 or 8 bytes;
# the encoding indicator _0.._3 names these (RFC 8949 Section 8.1).
_WIDTHS = (1, 2, 4, 8)
_FLOAT_FORMATS = {1: ">e", 2: ">f", 3: ">d"}  # indicator -> struct format


class EDNError(ValueError):
    """The text is not CBOR diagnostic notation this module understands."""


class CBORError(ValueError):
    """The bytes are not well-formed CBOR (or nest deeper than MAX_DEPTH)."""


# --- encoding ------------------------------------------------------------------


def _head(major: int, value: int, indicator: Optional[int] = None) -> bytes:
    """The initial byte(s) of an item; the argument in the shortest form, or
    in the width of the encoding indicator (which must be wide enough)."""
    if indicator is None:
        if value < 24:
            return bytes((major << 5 | value,))
        indicator = next(i for i, w in enumerate(_WIDTHS) if value < 1 << (8 * w))
    width = _WIDTHS[indicator]
    if value >= 1 << (8 * width):
        raise ValueError(f"{value} does not fit into {width} byte(s) (encoding indicator _{indicator})")
    return bytes((major << 5 | (24 + indicator),)) + value.to_bytes(width, "big")


def _encode_int(value: int, indicator: Optional[int]) -> bytes:
    major, argument = (_UINT, value) if value >= 0 else (_NINT, -1 - value)
    if argument < 1 << 64:
        return _head(major, argument, indicator)
    if indicator is not None:
        raise ValueError(f"{value} is too large for an encoding indicator")
    # Bignum (RFC 8949 Section 3.4.3)
    magnitude = argument.to_bytes((argument.bit_length() + 7) // 8, "big")
    return _head(_TAG, 2 if major == _UINT else 3) + _head(_BYTES, len(magnitude)) + magnitude


def _encode_float(value: float, indicator: Optional[int]) -> bytes:
    if indicator is not None:
        if indicator == 0:
            raise ValueError("floating point numbers have no encoding indicator _0")
        fmt = _FLOAT_FORMATS[indicator]
        try:
            packed = struct.pack(fmt, value)
        except (OverflowError, struct.error):
            raise ValueError(f"{value!r} does not fit into encoding indicator _{indicator}") from None
        if not math.isnan(value) and struct.unpack(fmt, packed)[0] != value:
            raise ValueError(f"{value!r} can not be represented exactly with encoding indicator _{indicator}")
        return bytes((0xF8 + indicator,)) + packed
    if math.isnan(value):
        return b"\xf9\x7e\x00"
    for indicator, fmt in _FLOAT_FORMATS.items():
        try:
            packed = struct.pack(fmt, value)
        except (OverflowError, struct.error):
            continue
        if struct.unpack(fmt, packed)[0] == value:
            return bytes((0xF8 + indicator,)) + packed
    raise AssertionError("every float fits into a double")  # pragma: no cover


# --- parsing (EDN -> CBOR) --------------------------------------------------------

_NUMBER = re.compile(
    r"""-?(?:
        0[xX][0-9a-fA-F]+ | 0[oO][0-7]+ | 0[bB][01]+ |
        (?:[0-9]+(?P<fraction>\.[0-9]+)?(?P<exponent>[eE][+-]?[0-9]+)?)
    )""",
    re.VERBOSE,
)
_INDICATOR = re.compile(r"_([0-3i])?")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")
_STRING_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "'": "'"}


class _Parser:
    """Recursive descent over the text; every parse method returns the
    encoded item."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    # -- helpers --

    def error(self, message: str, pos: Optional[int] = None) -> EDNError:
        pos = self.pos if pos is None else pos
        line = self.text.count("\n", 0, pos) + 1
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return EDNError(f"{message} (line {line}, column {column})")

    def skip_space(self) -> None:
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif c == "/":
                end = text.find("/", self.pos + 1)
                if end < 0:
                    raise self.error("comment is not closed")
                self.pos = end + 1
            elif c == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            else:
                return

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos : self.pos + 1]

    def expect(self, token: str) -> None:
        self.skip_space()
        if not self.text.startswith(token, self.pos):
            found = self.text[self.pos : self.pos + 1]
            raise self.error(f"expected {token!r}, found {found!r}" if found else f"expected {token!r} at the end")
        self.pos += len(token)

    def indicator(self) -> Optional[int]:
        """An encoding indicator right here (no space before it): its number,
        7 for the indefinite-length ``_``, None for none (or ``_i``)"""
        match = _INDICATOR.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        digit = match.group(1)
        if digit is None:
            return 7
        return None if digit == "i" else int(digit)

    # -- grammar --

    def sequence(self, end: str, depth: int) -> list[bytes]:
        """Comma separated items up to ``end`` (not consumed; "" for the end
        of the text), a trailing comma allowed"""
        items: list[bytes] = []
        while self.peek() != end:
            items.append(self.item(depth))
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != end:
                raise self.error(f"expected ',' or {end!r}" if end else "expected ',' or the end")
        return items

    def item(self, depth: int) -> bytes:
        if depth > MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH} levels")
        c = self.peek()
        start = self.pos
        if not c:
            raise self.error("expected an item, found the end")
        if c == "[":
            return self.container("[", "]", _ARRAY, depth)
        if c == "{":
            return self.container("{", "}", _MAP, depth)
        if c == "<" and self.text.startswith("<<", self.pos):
            self.pos += 2
            content = b"".join(self.sequence(">", depth + 1))
            self.expect(">>")
            return _head(_BYTES, len(content)) + content
        if c == "(" and self.text.startswith("(_", self.pos):
            return self.indefinite_string(depth)
        if c == '"' or c == "'":
            return self.strings()
        if c == "-" or c.isdigit():
            return self.number(depth)
        word = _WORD.match(self.text, self.pos)
        if word is None:
            raise self.error(f"unexpected {c!r}")
        name = word.group()
        if self.text.startswith("'", word.end()):
            return self.strings()
        self.pos = word.end()
        if name in ("false", "true", "null", "undefined"):
            return bytes((0xE0 | {v: k for k, v in _KEYWORDS.items()}[name],))
        if name in ("NaN", "Infinity"):
            return self.encode_here(lambda i: _encode_float(math.nan if name == "NaN" else math.inf, i), start)
        if name == "simple":
            self.expect("(")
            self.skip_space()
            number = _NUMBER.match(self.text, self.pos)
            if number is None or number.group("fraction") or number.group("exponent"):
                raise self.error("expected the number of a simple value")
            value = int(number.group(), 0)
            self.pos = number.end()
            self.expect(")")
            if not 0 <= value <= 255 or 24 <= value <= 31:
                raise self.error(f"simple({value}) does not exist (0 to 23 and 32 to 255 do)", start)
            return bytes((0xE0 | value,)) if value < 24 else bytes((0xF8, value))
        raise self.error(f"unknown word {name!r}", start)

    def encode_here(self, encode: Callable[[Optional[int]], bytes], start: int) -> bytes:
        """Read an encoding indicator and encode with it, turning the
        encoder's complaints into errors at ``start``"""
        indicator = self.indicator()
        if indicator == 7:
            raise self.error("'_' (indefinite length) is only possible for strings, arrays and maps")
        try:
            return encode(indicator)
        except ValueError as e:
            raise self.error(str(e), start) from None

    def number(self, depth: int) -> bytes:
        start = self.pos
        if self.text.startswith("-Infinity", start):
            self.pos += len("-Infinity")
            return self.encode_here(lambda i: _encode_float(-math.inf, i), start)
        match = _NUMBER.match(self.text, start)
        if match is None:
            raise self.error("expected a number")
        literal = match.group()
        self.pos = match.end()
        if self.text.startswith("(", self.pos) or (
            self.text.startswith("_", self.pos) and "(" == self.text[self.pos + 2 : self.pos + 3]
        ):
            return self.tag(literal, start, depth)
        if match.group("fraction") or match.group("exponent"):
            try:
                value = float(literal)
            except OverflowError:  # pragma: no cover (float() gives inf)
                raise self.error("number out of range", start) from None
            if math.isinf(value):
                raise self.error(f"{literal} is out of the range of floating point numbers", start)
            return self.encode_here(lambda i: _encode_float(value, i), start)
        integer = int(literal, 0) if literal.lstrip("-")[1:2] in ("x", "X", "o", "O", "b", "B") else int(literal)
        return self.encode_here(lambda i: _encode_int(integer, i), start)

    def tag(self, literal: str, start: int, depth: int) -> bytes:
        if literal.startswith("-") or not literal.isdigit():
            raise self.error("a tag number is a plain unsigned integer", start)
        number = int(literal)
        indicator = self.indicator()
        if indicator == 7:
            raise self.error("tags have no indefinite length", start)
        self.expect("(")
        content = self.item(depth + 1)
        self.expect(")")
        if number >= 1 << 64:
            raise self.error("tag number out of range", start)
        try:
            return _head(_TAG, number, indicator) + content
        except ValueError as e:
            raise self.error(str(e), start) from None

    def container(self, opening: str, closing: str, major: int, depth: int) -> bytes:
        start = self.pos
        self.pos += 1
        indicator = self.indicator()
        parts: list[bytes] = []
        count = 0
        while self.peek() != closing:
            parts.append(self.item(depth + 1))
            if major == _MAP:
                self.expect(":")
                parts.append(self.item(depth + 1))
            count += 1
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != closing:
                raise self.error(f"expected ',' or {closing!r}")
        self.pos += 1
        if indicator == 7:
            return bytes((major << 5 | _INDEFINITE,)) + b"".join(parts) + bytes((_BREAK,))
        try:
            return _head(major, count, indicator) + b"".join(parts)
        except ValueError as e:
            raise self.error(str(e), start) from None

    def indefinite_string(self, depth: int) -> bytes:
        start = self.pos
        self.pos += 2
        chunks: list[tuple[int, bytes]] = []
        while self.peek() != ")":
            chunk_start = self.pos
            chunks.append((chunk_start, self.strings()))
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != ")":
                raise self.error("expected ',' or ')'")
        self.pos += 1
        if not chunks:
            # Without chunks the kind can not be told: a byte string then
            # (an empty indefinite-length text string is written ""_).
            return bytes((_BYTES << 5 | _INDEFINITE, _BREAK))
        majors = {chunk[0] >> 5 for _, chunk in chunks}
        if len(majors) != 1:
            raise self.error("the chunks of an indefinite-length string must all be text or all bytes", start)
        (major,) = majors
        return bytes((major << 5 | _INDEFINITE,)) + b"".join(chunk for _, chunk in chunks) + bytes((_BREAK,))

    def strings(self) -> bytes:
        """One string or several adjacent ones (concatenated), with an
        optional encoding indicator after the last"""
        start = self.pos
        kind, value = self.string()
        while True:
            indicator = self.indicator()
            if indicator is not None or self.peek() not in ('"', "'") and not self.word_string_follows():
                break
            _, more = self.string()
            if isinstance(value, str) and isinstance(more, str):
                value += more
            elif isinstance(value, bytes) and isinstance(more, bytes):
                value += more
            else:
                raise self.error("text and byte strings can not be concatenated", start)
        if indicator == 7:
            # ''_ and ""_ are the empty indefinite-length strings; with
            # content, they are written (_ chunk, chunk).
            if value:
                raise self.error("indefinite-length strings are written (_ chunk, chunk)", start)
            return bytes((kind << 5 | _INDEFINITE, _BREAK))
        try:
            data = value.encode("utf-8") if isinstance(value, str) else value
        except UnicodeEncodeError:
            # lone surrogates: bytes of a command line that are not UTF-8
            raise self.error("string is not valid UTF-8", start) from None
        try:
            return _head(kind, len(data), indicator) + data
        except ValueError as e:
            raise self.error(str(e), start) from None

    def word_string_follows(self) -> bool:
        word = _WORD.match(self.text, self.pos)
        return word is not None and self.text.startswith("'", word.end())

    def string(self) -> tuple[int, str | bytes]:
        """(major type, str or bytes) of the string literal here"""
        self.skip_space()
        start = self.pos
        if self.text.startswith('"', start):
            return _TEXT, self.quoted('"')
        if self.text.startswith("'", start):
            try:
                return _BYTES, self.quoted("'").encode("utf-8")
            except UnicodeEncodeError:
                raise self.error("lone surrogate in a string", start) from None
        word = _WORD.match(self.text, start)
        if word is None or not self.text.startswith("'", word.end()):
            raise self.error("expected a string")
        prefix = word.group()
        self.pos = word.end() + 1
        end = self.text.find("'", self.pos)
        if end < 0:
            raise self.error("string is not closed", start)
        body = self.text[self.pos : end]
        self.pos = end + 1
        return _BYTES, self.decode_prefixed(prefix, body, start)

    def decode_prefixed(self, prefix: str, body: str, start: int) -> bytes:
        if prefix == "h":
            # Whitespace and /comments/ may be used inside
            digits = "".join(re.sub(r"/[^/]*/", "", body).split())
            if _HEX_DIGITS.fullmatch(digits) is None or len(digits) % 2:
                raise self.error("h'...' needs an even number of hexadecimal digits", start)
            return bytes.fromhex(digits)
        compact = "".join(body.split())
        try:
            if prefix == "b64":
                compact = compact.replace("-", "+").replace("_", "/").rstrip("=")
                return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
            if prefix in ("b32", "h32"):
                compact = compact.upper().rstrip("=")
                padded = compact + "=" * (-len(compact) % 8)
                return base64.b32decode(padded) if prefix == "b32" else base64.b32hexdecode(padded)
        except (binascii.Error, ValueError) as e:
            raise self.error(f"invalid {prefix}'...' data: {e}", start) from None
        raise self.error(f"unknown string prefix {prefix!r}", start)

    def quoted(self, quote: str) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        text = self.text
        while True:
            end = self.pos
            while end < len(text) and text[end] not in (quote, "\\"):
                end += 1
            out.append(text[self.pos : end])
            if end >= len(text):
                raise self.error("string is not closed", start)
            self.pos = end + 1
            if text[end] == quote:
                break
            escape = text[self.pos : self.pos + 1]
            if escape in _STRING_ESCAPES:
                out.append(_STRING_ESCAPES[escape])
                self.pos += 1
            elif escape == "u":
                out.append(self.unicode_escape())
            else:
                raise self.error(f"unknown escape \\{escape}", end)
        return "".join(out)

    def unicode_escape(self) -> str:
        """A \\uXXXX escape (self.pos at the u), surrogate pairs combined"""
        start = self.pos - 1
        code = self.hex4()
        if 0xD800 <= code < 0xDC00:
            if self.text.startswith("\\u", self.pos):
                self.pos += 1
                low = self.hex4()
                if 0xDC00 <= low < 0xE000:
                    return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
            raise self.error("high surrogate escape without a low one", start)
        if 0xDC00 <= code < 0xE000:
            raise self.error("low surrogate escape without a high one", start)
        return chr(code)

    def hex4(self) -> int:
        digits = self.text[self.pos + 1 : self.pos + 5]
        if len(digits) != 4 or _HEX_DIGITS.fullmatch(digits) is None:
            raise self.error("\\u needs four hexadecimal digits")
        self.pos += 5
        return int(digits, 16)


def edn_to_cbor(text: str, *, sequence: bool = False) -> bytes:
    """Encode the item written in diagnostic notation in ``text`` as CBOR.

    With ``sequence=True``, the text holds any number of comma separated
    items, and the result is their CBOR sequence (RFC 8742).

    >>> edn_to_cbor('{"temp": 21.5, 1: [h\\'cafe\\', true]}').hex()
    'a26474656d70f94d60018242cafef5'
    >>> edn_to_cbor("1, 2, 3", sequence=True).hex()
    '010203'

    Raises :class:`EDNError` if the text is not diagnostic notation."""
    parser = _Parser(text)
    if sequence:
        items = parser.sequence("", 0)
    else:
        items = [parser.item(0)]
        if parser.peek():
            raise parser.error(f"unexpected {parser.peek()!r} after the item")
    return b"".join(items)


# --- rendering (CBOR -> EDN) ------------------------------------------------------


def _text_literal(text: str) -> str:
    """A double quoted string literal; control characters (C0, DEL and C1)
    are escaped, so the result is safe to show on a terminal."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"' or char == "\\":
            out.append("\\" + char)
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}.get(char, f"\\u{code:04x}"))
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _float_literal(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


class _Decoder:
    """Reads well-formed CBOR and writes diagnostic notation, with the
    encoding indicators needed to get the same bytes back."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def error(self, message: str, pos: Optional[int] = None) -> CBORError:
        return CBORError(f"{message} (at byte {self.pos if pos is None else pos})")

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise self.error(f"data ends {self.pos + count - len(self.data)} byte(s) too early")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def head(self) -> tuple[int, int, Optional[int], str]:
        """(major type, argument, None or additional information 31,
        encoding indicator text) of the item here"""
        start = self.pos
        (initial,) = self.take(1)
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, None, ""
        if info == _INDEFINITE:
            if major in (_UINT, _NINT, _TAG):
                raise self.error("indefinite length for a type that has none", start)
            return major, 0, _INDEFINITE, ""
        if info > 27:
            raise self.error(f"reserved additional information {info}", start)
        indicator = info - 24
        argument = int.from_bytes(self.take(_WIDTHS[indicator]), "big")
        if major == _SIMPLE:
            return major, argument, info, ""
        preferred = argument >= 24 and (indicator == 0 or argument >= 1 << (8 * _WIDTHS[indicator - 1]))
        return major, argument, None, "" if preferred else f"_{indicator}"

    def item(self, depth: int, level: int) -> str:
        """The item here as text; ``level`` is the indentation depth"""
        if depth > MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH} levels")
        start = self.pos
        major, argument, info, indicator = self.head()
        if major == _UINT:
            return f"{argument}{indicator}"
        if major == _NINT:
            return f"{-1 - argument}{indicator}"
        if major in (_BYTES, _TEXT):
            if info == _INDEFINITE:
                return self.indefinite_string(major, start)
            return self.string(major, argument, start) + indicator
        if major in (_ARRAY, _MAP):
            return self.container(major, argument, info == _INDEFINITE, indicator, depth, level)
        if major == _TAG:
            if argument in (2, 3) and not indicator:
                bignum = self.bignum(argument == 3)
                if bignum is not None:
                    return bignum
            return f"{argument}{indicator}({self.item(depth + 1, level)})"
        return self.simple_or_float(argument, info, start)

    def bignum(self, negative: bool) -> Optional[str]:
        """The decimal form of the bignum content here, if it is in the form
        the parser makes of that number (else None, and nothing is read)"""
        start = self.pos
        major, length, info, indicator = self.head()
        if major == _BYTES and info is None and not indicator and length <= len(self.data) - self.pos:
            magnitude = self.data[self.pos : self.pos + length]
            value = int.from_bytes(magnitude, "big")
            if value >= 1 << 64 and magnitude[0] != 0:
                self.pos += length
                return str(-1 - value if negative else value)
        self.pos = start
        return None

    def string(self, major: int, length: int, start: int) -> str:
        data = self.take(length)
        if major == _BYTES:
            return f"h'{data.hex()}'"
        try:
            return _text_literal(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise self.error("text string is not UTF-8", start) from None

    def indefinite_string(self, major: int, start: int) -> str:
        chunks = []
        while True:
            if self.pos >= len(self.data):
                raise self.error("data ends inside an indefinite-length string")
            if self.data[self.pos] == _BREAK:
                self.pos += 1
                break
            chunk_start = self.pos
            chunk_major, length, info, indicator = self.head()
            if chunk_major != major or info is not None:
                raise self.error("chunk of an indefinite-length string of another kind", chunk_start)
            chunks.append(self.string(major, length, chunk_start) + indicator)
        if not chunks:
            return "''_" if major == _BYTES else '""_'
        return f"(_ {', '.join(chunks)})"

    def container(self, major: int, count: int, indefinite: bool, indicator: str, depth: int, level: int) -> str:
        if not indefinite and count > len(self.data) - self.pos:
            # Every entry takes at least a byte: a huge count can not be
            # satisfied, and is refused before looping over it.
            raise self.error(f"{count} entries announced, but only {len(self.data) - self.pos} byte(s) left")
        entries = []
        index = 0
        while True:
            if indefinite:
                if self.pos >= len(self.data):
                    raise self.error("data ends inside an indefinite-length container")
                if self.data[self.pos] == _BREAK:
                    self.pos += 1
                    break
            elif index == count:
                break
            entry = self.item(depth + 1, level + 1)
            if major == _MAP:
                entry += ": " + self.item(depth + 1, level + 1)
            entries.append(entry)
            index += 1
        opening, closing = ("[", "]") if major == _ARRAY else ("{", "}")
        prefix = opening + ("_ " if indefinite else (indicator + " " if indicator else ""))
        one_line = prefix + ", ".join(entries) + closing
        if len(one_line) + len(_INDENT) * level <= _LINE_WIDTH and "\n" not in one_line:
            return one_line
        inner = "\n" + _INDENT * (level + 1)
        return prefix.rstrip() + inner + ("," + inner).join(entries) + "\n" + _INDENT * level + closing

    def simple_or_float(self, argument: int, info: Optional[int], start: int) -> str:
        if info is None:
            return _KEYWORDS.get(argument, f"simple({argument})")
        if info == 24:
            if argument < 32:
                raise self.error(f"simple value {argument} in two bytes", start)
            return f"simple({argument})"
        if info == _INDEFINITE:
            raise self.error("break outside of an indefinite-length item", start)
        indicator = info - 24
        fmt = _FLOAT_FORMATS[indicator]
        (value,) = struct.unpack(fmt, self.data[start + 1 : self.pos])
        text = _float_literal(value)
        if _encode_float(value, None) == self.data[start : self.pos]:
            return text
        if math.isnan(value) and self.data[start : self.pos] != _encode_float(value, indicator):
            # A NaN with a payload or sign other than the usual one; EDN can
            # not write those, so the bits are given in a comment.
            return f"{text}_{indicator} /{self.data[start + 1 : self.pos].hex()}/"
        return f"{text}_{indicator}"


def cbor_to_edn(data: bytes, *, sequence: bool = False) -> str:
    """Show CBOR data in diagnostic notation.

    Short arrays and maps stay on one line; longer ones get one entry per
    line, indented by four spaces. With ``sequence=True``, the data is a
    CBOR sequence, shown as comma separated items (one per line).

    >>> print(cbor_to_edn(bytes.fromhex("a26474656d70f94d60018242cafef5")))
    {"temp": 21.5, 1: [h'cafe', true]}

    Raises :class:`CBORError` if the data is not well-formed CBOR, or if
    ``sequence`` is false and it is not exactly one item."""
    data = bytes(data)
    decoder = _Decoder(data)
    items: list[str] = []
    while decoder.pos < len(data) or not (sequence or items):
        items.append(decoder.item(0, 0))
        if not sequence and decoder.pos < len(data):
            raise decoder.error(f"{len(data) - decoder.pos} byte(s) after the item")
    return ",\n".join(items)


def cbor_array_elements(data: bytes) -> Optional[list[bytes]]:
    """The encoded elements of ``data`` if it is a single CBOR array (of
    any length encoding), else None.

    This turns an array into the CBOR sequence of its elements, which is how
    aiocoap-client reads a CBOR sequence given as one array.

    >>> cbor_array_elements(edn_to_cbor('[1, "a", [2]]'))
    [b'\\x01', b'aa', b'\\x81\\x02']
    >>> cbor_array_elements(edn_to_cbor('{1: 2}')) is None
    True

    Raises :class:`CBORError` if the data is not well-formed CBOR."""
    data = bytes(data)
    decoder = _Decoder(data)
    major, count, info, _ = decoder.head()
    if major != _ARRAY:
        return None
    elements: list[bytes] = []
    while (decoder.pos < len(data) and data[decoder.pos] != _BREAK) if info == _INDEFINITE else len(elements) < count:
        start = decoder.pos
        decoder.item(1, 0)
        elements.append(data[start : decoder.pos])
    if info == _INDEFINITE:
        decoder.take(1)
    if decoder.pos != len(data):
        raise decoder.error(f"{len(data) - decoder.pos} byte(s) after the array")
    return elements
