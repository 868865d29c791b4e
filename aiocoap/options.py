"""The options of a CoAP message: the codec for the option part of the wire
format (RFC 7252 §3.1) and typed views on individual options.

Rules this module enforces:

* Option headers that violate the format (delta or length nibble 15 outside
  the payload marker, truncated values, a payload marker followed by nothing)
  raise :class:`aiocoap.error.UnparsableMessage`.
* Values that violate their option's format (wrong length for the registry,
  invalid UTF-8, ...) do not stop decoding; they are kept out of the regular
  options and listed in :attr:`Options.invalid_options`, so that a server can
  answer 4.02 for critical ones and ignore elective ones (RFC 7252 §5.4.3).
* Options nobody knows survive decode/encode unchanged (as opaque values).
"""

from __future__ import annotations

from typing import Iterable, Optional

from . import error
from .numbers.contentformat import ContentFormat
from .numbers.optionnumbers import OptionNumber, _FORMATS, _LENGTHS
from .optiontypes import BlockOption, OpaqueOption, OptionType, StringOption, UintOption

__all__ = ["Options"]

_option_number_of = OptionNumber._value2member_map_.get


def _lookup(number: int) -> OptionNumber:
    member = _option_number_of(number)
    return member if member is not None else OptionNumber(number)


def _read_extended(value: int, rawdata, pos: int, end: int) -> tuple[int, int]:
    if value < 13:
        return value, pos
    if value == 13:
        if pos >= end:
            raise error.UnparsableMessage("option header truncated")
        return rawdata[pos] + 13, pos + 1
    if value == 14:
        if pos + 1 >= end:
            raise error.UnparsableMessage("option header truncated")
        return ((rawdata[pos] << 8) | rawdata[pos + 1]) + 269, pos + 2
    raise error.UnparsableMessage("option delta or length nibble 15 is reserved")


def _write_extended(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    if value < 65805:
        return 14, (value - 269).to_bytes(2, "big")
    raise ValueError("option delta or length too large")


class Options:
    """Represent CoAP Header Options."""

    __slots__ = ("_options", "invalid_options")

    def __init__(self):
        self._options: dict[int, list[OptionType]] = {}
        self.invalid_options: list[tuple[OptionNumber, bytes]] = []
        """(number, raw value) of options whose value violated the option's
        format; they are not part of the regular options."""

    def __repr__(self):
        if not self._options:
            text = "(empty)"
        else:
            text = ", ".join(
                "%s: %s" % (_lookup(number).name, " / ".join(str(o) for o in opts))
                for number, opts in sorted(self._options.items())
            )
        return f"<aiocoap.options.Options at {id(self):#x}: {text}>"

    def __eq__(self, other):
        if not isinstance(other, Options):
            return NotImplemented
        return self.option_list() == other.option_list()

    __hash__ = None  # type: ignore[assignment]

    def decode(self, rawdata) -> bytes:
        """Passed a CoAP message body after the token as rawdata, fill self
        with the options starting at the beginning of rawdata, and return the
        rest of the message (the body)."""
        options = self._options
        pos = 0
        end = len(rawdata)
        number = 0
        while pos < end:
            header = rawdata[pos]
            pos += 1
            if header == 0xFF:
                if pos == end:
                    raise error.UnparsableMessage("payload marker without payload")
                return bytes(rawdata[pos:])
            delta, pos = _read_extended(header >> 4, rawdata, pos, end)
            length, pos = _read_extended(header & 0x0F, rawdata, pos, end)
            number += delta
            if pos + length > end:
                raise error.UnparsableMessage("option value truncated")
            raw = rawdata[pos : pos + length]
            pos += length

            fmt = _FORMATS.get(number)
            if fmt is None:
                option = OpaqueOption(_lookup(number), bytes(raw))
            else:
                minlen, maxlen = _LENGTHS[number]
                if not minlen <= length <= maxlen:
                    self.invalid_options.append((_lookup(number), bytes(raw)))
                    continue
                if fmt is UintOption:
                    option = UintOption(_lookup(number), int.from_bytes(raw, "big"))
                elif fmt is StringOption:
                    try:
                        option = StringOption(_lookup(number), str(raw, "utf-8"))
                    except UnicodeDecodeError:
                        self.invalid_options.append((_lookup(number), bytes(raw)))
                        continue
                elif fmt is OpaqueOption:
                    option = OpaqueOption(_lookup(number), bytes(raw))
                else:
                    option = fmt(_lookup(number))
                    try:
                        option.decode(bytes(raw))
                    except ValueError:
                        self.invalid_options.append((_lookup(number), bytes(raw)))
                        continue
            existing = options.get(number)
            if existing is None:
                options[number] = [option]
            else:
                existing.append(option)
        return b""

    def encode(self) -> bytes:
        """Encode all options in option header into string of bytes."""
        parts = []
        previous = 0
        for number in sorted(self._options):
            for option in self._options[number]:
                value = option.encode()
                delta, delta_ext = _write_extended(number - previous)
                length, length_ext = _write_extended(len(value))
                parts.append(bytes(((delta << 4) | length,)))
                if delta_ext:
                    parts.append(delta_ext)
                if length_ext:
                    parts.append(length_ext)
                parts.append(value)
                previous = number
        return b"".join(parts)

    def add_option(self, option: OptionType) -> None:
        """Add option into option header."""
        self._options.setdefault(int(option.number), []).append(option)

    def delete_option(self, number: int) -> None:
        """Delete option from option header."""
        self._options.pop(number, None)

    def get_option(self, number: int) -> list[OptionType]:
        """Get option with specified number."""
        return self._options.get(number, [])

    def option_list(self) -> list[OptionType]:
        """All options, sorted by number (repeated options in their order)."""
        return [o for number in sorted(self._options) for o in self._options[number]]

    def copy(self) -> "Options":
        new = Options()
        new._options = {k: list(v) for k, v in self._options.items()}
        new.invalid_options = list(self.invalid_options)
        return new

    def __contains__(self, number) -> bool:
        return number in self._options

    # Typed views are added below by the _*_view helpers.


def _single_value_view(number: OptionNumber, doc: str, wrap=None):
    fmt = number.format

    def _getter(self):
        options = self._options.get(number)
        if not options:
            return None
        value = options[0].value
        return wrap(value) if wrap is not None else value

    def _setter(self, value):
        if value is None:
            self._options.pop(number, None)
        else:
            self._options[number] = [fmt(number, value)]

    def _deleter(self):
        self._options.pop(number, None)

    return property(_getter, _setter, _deleter, doc)


def _items_view(number: OptionNumber, doc: str):
    fmt = number.format

    def _getter(self):
        return tuple(o.value for o in self._options.get(number, ()))

    def _setter(self, value: Iterable):
        if isinstance(value, (str, bytes)):
            raise TypeError(
                f"{number.name} is a repeatable option; assign a sequence, "
                f"not {type(value).__name__}"
            )
        values = [fmt(number, v) for v in value]
        if values:
            self._options[number] = values
        else:
            self._options.pop(number, None)

    def _deleter(self):
        self._options.pop(number, None)

    return property(_getter, _setter, _deleter, doc)


def _presence_view(number: OptionNumber, doc: str):
    def _getter(self):
        return number in self._options

    def _setter(self, value):
        if value:
            self._options[number] = [OpaqueOption(number, b"")]
        else:
            self._options.pop(number, None)

    return property(_getter, _setter, None, doc)


_O = OptionNumber
Options.uri_path = _items_view(_O.URI_PATH, "Iterable view on the URI_PATH option.")
Options.uri_query = _items_view(_O.URI_QUERY, "Iterable view on the URI_QUERY option.")
Options.location_path = _items_view(_O.LOCATION_PATH, "Iterable view on the LOCATION_PATH option.")
Options.location_query = _items_view(_O.LOCATION_QUERY, "Iterable view on the LOCATION_QUERY option.")
Options.block2 = _single_value_view(_O.BLOCK2, "Single-value view on the BLOCK2 option.")
Options.block1 = _single_value_view(_O.BLOCK1, "Single-value view on the BLOCK1 option.")
Options.q_block1 = _single_value_view(_O.Q_BLOCK1, "Single-value view on the Q_BLOCK1 option.")
Options.q_block2 = _single_value_view(_O.Q_BLOCK2, "Single-value view on the Q_BLOCK2 option.")
Options.content_format = _single_value_view(
    _O.CONTENT_FORMAT, "Single-value view on the CONTENT_FORMAT option.", ContentFormat
)
Options.etag = _single_value_view(_O.ETAG, "Single ETag as used in responses")
Options.etags = _items_view(_O.ETAG, "List of ETags as used in requests")
Options.if_none_match = _presence_view(_O.IF_NONE_MATCH, "Presence of the IF_NONE_MATCH option.")
Options.observe = _single_value_view(_O.OBSERVE, "Single-value view on the OBSERVE option.")
Options.accept = _single_value_view(_O.ACCEPT, "Single-value view on the ACCEPT option.", ContentFormat)
Options.uri_host = _single_value_view(_O.URI_HOST, "Single-value view on the URI_HOST option.")
Options.uri_port = _single_value_view(_O.URI_PORT, "Single-value view on the URI_PORT option.")
Options.proxy_uri = _single_value_view(_O.PROXY_URI, "Single-value view on the PROXY_URI option.")
Options.proxy_scheme = _single_value_view(_O.PROXY_SCHEME, "Single-value view on the PROXY_SCHEME option.")
Options.size1 = _single_value_view(_O.SIZE1, "Single-value view on the SIZE1 option.")
Options.size2 = _single_value_view(_O.SIZE2, "Single-value view on the SIZE2 option.")
Options.oscore = _single_value_view(_O.OSCORE, "Single-value view on the OSCORE option.")
Options.object_security = _single_value_view(
    _O.OBJECT_SECURITY, "Single-value view on the OBJECT_SECURITY option (old name of OSCORE)."
)
Options.max_age = _single_value_view(_O.MAX_AGE, "Single-value view on the MAX_AGE option.")
Options.if_match = _items_view(_O.IF_MATCH, "Iterable view on the IF_MATCH option.")
Options.no_response = _single_value_view(_O.NO_RESPONSE, "Single-value view on the NO_RESPONSE option.")
Options.echo = _single_value_view(_O.ECHO, "Single-value view on the ECHO option.")
Options.request_tag = _items_view(_O.REQUEST_TAG, "Iterable view on the REQUEST_TAG option.")
Options.hop_limit = _single_value_view(_O.HOP_LIMIT, "Single-value view on the HOP_LIMIT option.")
Options.edhoc = _presence_view(_O.EDHOC, "Presence of the EDHOC option.")
del _O

Options._view_names = frozenset(
    name for name, value in vars(Options).items() if isinstance(value, property)
)
