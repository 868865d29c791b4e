"""The options of a CoAP message: the codec for the option part of the wire
format (RFC 7252 §3.1) and typed views on individual options.

Rules this module enforces:

* Option headers that violate the format (delta or length nibble 15 outside
  the payload marker, truncated values, a payload marker followed by nothing,
  option numbers beyond the 16 bits of the registry) raise
  :class:`aiocoap.error.UnparsableMessage`.
* Values that violate their option's format (wrong length for the registry,
  invalid UTF-8, ...) do not stop decoding; they are kept out of the regular
  options and listed in :attr:`Options.invalid_options`, so that a server can
  answer 4.02 for critical ones and ignore elective ones (RFC 7252 §5.4.3).
* Options nobody knows survive decode/encode unchanged (as opaque values).
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Container, Generic, Iterable, KeysView, Optional, TypeVar, Union, overload

from . import error
from .numbers.contentformat import ContentFormat
from .numbers.optionnumbers import OptionNumber, add_format_listener
from .optiontypes import UINT_MINIMUM_LENGTH, BlockOption, OpaqueOption, OptionType, StringOption, UintOption

__all__ = ["Options"]

_option_number_of: Callable[[int], Optional[OptionNumber]] = (
    OptionNumber._value2member_map_.get  # type: ignore[assignment]
)

# Decoding is table driven: per known option number, the OptionNumber member,
# the value kind and the length range allowed by the registry.
_OPAQUE, _UINT, _STRING, _OTHER = range(4)
_KIND_OF_FORMAT = {OpaqueOption: _OPAQUE, UintOption: _UINT, StringOption: _STRING}


def _spec_for(number: int) -> tuple[OptionNumber, int, type[OptionType], int, int]:
    option = OptionNumber(number)
    fmt = option.format
    minimum, maximum = option.length_range
    return (option, _KIND_OF_FORMAT.get(fmt, _OTHER), fmt, minimum, maximum)


_SPECS: dict[int, tuple[OptionNumber, int, type[OptionType], int, int]] = {
    int(number): _spec_for(int(number)) for number in OptionNumber
}


def _lookup(number: int) -> OptionNumber:
    member = _option_number_of(number)
    return member if member is not None else OptionNumber(number)


_ONE_BYTE_EXTENDED = 13
"""The header nibble announcing one more byte for a delta or length, and
the value that byte counts from (RFC 7252 §3.1)."""
_TWO_BYTES_NIBBLE = 14
_TWO_BYTES_EXTENDED = 269
"""The nibble announcing two more bytes (:data:`_TWO_BYTES_NIBBLE`), and
the value they count from."""


def _extended_header(nibble: int, value: int) -> bytes:
    """The extended delta or length bytes that go with a header ``nibble``."""
    if nibble == _ONE_BYTE_EXTENDED:
        return bytes((value - _ONE_BYTE_EXTENDED,))
    if nibble == _TWO_BYTES_NIBBLE:
        return (value - _TWO_BYTES_EXTENDED).to_bytes(2, "big")
    return b""


def _read_extended(nibble: int, data: bytes, pos: int, what: str) -> tuple[int, int]:
    """The option delta or length (``what``) that a header ``nibble`` of
    13 or more announces, read from the extended bytes at ``data[pos:]``;
    returns it with the position after them. Raises UnparsableMessage for
    the nibble 15 and for truncated data."""
    if nibble == 13:
        if pos >= len(data):
            raise error.UnparsableMessage(f"option {what} truncated")
        return data[pos] + 13, pos + 1
    if nibble == 14:
        if pos + 2 > len(data):
            raise error.UnparsableMessage(f"option {what} truncated")
        return (data[pos] << 8 | data[pos + 1]) + 269, pos + 2
    if nibble == 15:
        if what == "delta":
            raise error.UnparsableMessage("option delta nibble 15 outside a payload marker")
        raise error.UnparsableMessage(f"option {what} nibble 15 is reserved")
    return nibble, pos


def _read_extended_field_value(value: int, rawdata: bytes) -> tuple[int, bytes]:
    """Decode an option delta or length whose header nibble is ``value``
    from the bytes ``rawdata`` that follow the header byte: returns the
    full value and the bytes after its extended part (the function code
    written for aiocoap imports, e.g. to size RFC 8323 frames).

    >>> _read_extended_field_value(13, bytes([2, 0xAA]))
    (15, b'\\xaa')
    >>> _read_extended_field_value(5, b'rest')
    (5, b'rest')
    """
    if not 0 <= value <= 15:
        raise ValueError("an option header nibble is between 0 and 15")
    if value < 13:
        return value, rawdata
    full, pos = _read_extended(value, rawdata, 0, "field")
    return full, rawdata[pos:]


def _nibble(value: int) -> int:
    if value < 13:
        return value
    if value < 269:
        return 13
    if value < 65805:
        return 14
    raise ValueError("option delta or length too large")


_Get = TypeVar("_Get")
_Set = TypeVar("_Set")


class _SingleValueView(Generic[_Get, _Set]):
    """Descriptor giving the value of the first option with the number (None
    if absent); assigning replaces all of them, assigning None removes
    them."""

    def __init__(self, number: OptionNumber, doc: str, wrap: Optional[Callable[[Any], _Get]] = None):
        self._number = number
        self._format = number.format
        self._wrap = wrap
        self.__doc__ = doc

    @overload
    def __get__(self, instance: None, owner: type) -> "_SingleValueView[_Get, _Set]": ...
    @overload
    def __get__(self, instance: "Options", owner: type) -> Optional[_Get]: ...

    def __get__(self, instance: Options | None, owner: Any = None) -> Any:
        if instance is None:
            return self
        options = instance._options.get(self._number)
        if not options:
            return None
        value = options[0].value
        return value if self._wrap is None else self._wrap(value)

    def __set__(self, instance: "Options", value: Optional[_Set]) -> None:
        if value is None:
            instance._options.pop(self._number, None)
        else:
            instance._options[self._number] = [self._format(self._number, value)]

    def __delete__(self, instance: "Options") -> None:
        instance._options.pop(self._number, None)


class _ItemsView(Generic[_Get]):
    """Descriptor giving the values of all options with the number as a
    tuple (in their order); assigning an iterable replaces them."""

    def __init__(self, number: OptionNumber, doc: str):
        self._number = number
        self._format = number.format
        self.__doc__ = doc

    @overload
    def __get__(self, instance: None, owner: type) -> "_ItemsView[_Get]": ...
    @overload
    def __get__(self, instance: "Options", owner: type) -> tuple[_Get, ...]: ...

    def __get__(self, instance: Options | None, owner: Any = None) -> Any:
        if instance is None:
            return self
        options = instance._options.get(self._number)
        if not options:
            return ()
        if len(options) == 1:
            return (options[0].value,)
        return tuple([o.value for o in options])

    def __set__(self, instance: "Options", value: Iterable[_Get]) -> None:
        if isinstance(value, (str, bytes)):
            raise TypeError(
                f"{self._number.name} is a repeatable option; assign a sequence, "
                f"not {type(value).__name__}"
            )
        number, fmt = self._number, self._format
        values = [fmt(number, v) for v in value]
        if values:
            instance._options[number] = values
        else:
            instance._options.pop(number, None)

    def __delete__(self, instance: "Options") -> None:
        instance._options.pop(self._number, None)


class _PresenceView:
    """Descriptor telling whether an (empty) option is present; assigning a
    true value adds it, a false one removes it."""

    def __init__(self, number: OptionNumber, doc: str):
        self._number = number
        self.__doc__ = doc

    @overload
    def __get__(self, instance: None, owner: type) -> "_PresenceView": ...
    @overload
    def __get__(self, instance: "Options", owner: type) -> bool: ...

    def __get__(self, instance: Options | None, owner: Any = None) -> Any:
        if instance is None:
            return self
        return self._number in instance._options

    def __set__(self, instance: "Options", value: bool) -> None:
        if value:
            instance._options[self._number] = [OpaqueOption(self._number, b"")]
        else:
            instance._options.pop(self._number, None)

    def __delete__(self, instance: "Options") -> None:
        instance._options.pop(self._number, None)


_O = OptionNumber
_Block = BlockOption.BlockwiseTuple
_BlockLike = Union[_Block, tuple[int, bool, int]]


class _NoInvalidOptions(list[tuple[OptionNumber, bytes]]):
    """The ``invalid_options`` of every Options object that has none: one
    shared empty list instead of one per message, and therefore read-only."""

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("this empty invalid_options list is shared and read-only")

    append = extend = insert = __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only  # type: ignore[assignment]


_NO_INVALID_OPTIONS: list[tuple[OptionNumber, bytes]] = _NoInvalidOptions()


class Options:
    """Represent CoAP Header Options."""

    __slots__ = ("_options", "_invalid")

    def __init__(self) -> None:
        self._options: dict[int, list[OptionType]] = {}
        self._invalid: Optional[list[tuple[OptionNumber, bytes]]] = None

    @property
    def invalid_options(self) -> list[tuple[OptionNumber, bytes]]:
        """(number, raw value) of options whose value violated the option's
        format; they are not part of the regular options."""
        invalid = self._invalid
        return _NO_INVALID_OPTIONS if invalid is None else invalid

    @invalid_options.setter
    def invalid_options(self, value: list[tuple[OptionNumber, bytes]]) -> None:
        self._invalid = None if value is _NO_INVALID_OPTIONS else value

    def _add_invalid(self, number: OptionNumber, raw: bytes) -> None:
        invalid = self._invalid
        if invalid is None:
            self._invalid = [(number, raw)]
        else:
            invalid.append((number, raw))

    def __repr__(self) -> str:
        if not self._options:
            text = "(empty)"
        else:
            text = ", ".join(
                "%s: %s" % (_lookup(number).name, " / ".join(str(o) for o in opts))
                for number, opts in sorted(self._options.items())
            )
        return f"<aiocoap.options.Options at {id(self):#x}: {text}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Options):
            return NotImplemented
        return self.option_list() == other.option_list()

    __hash__ = None  # type: ignore[assignment]

    def decode(self, rawdata: bytes | bytearray | memoryview) -> bytes:
        """Passed a CoAP message body after the token as rawdata, fill self
        with the options starting at the beginning of rawdata, and return the
        rest of the message (the body)."""
        if type(rawdata) is not bytes:
            rawdata = bytes(rawdata)
        return self.decode_at(rawdata, 0)

    def decode_at(self, rawdata: bytes, pos: int) -> bytes:
        """:meth:`decode` of ``rawdata[pos:]``, without copying it first
        (the message codec starts the options after the header and token)."""
        options = self._options
        specs = _SPECS
        end = len(rawdata)
        number = 0
        while pos < end:
            header = rawdata[pos]
            pos += 1
            if header == 0xFF:
                if pos == end:
                    raise error.UnparsableMessage("payload marker without payload")
                return rawdata[pos:]
            delta = header >> 4
            length = header & 0x0F
            if delta == _ONE_BYTE_EXTENDED and pos < end:
                # (the common extended case: numbers 13 to 268 after a
                # small one, e.g. Max-Age, Accept or Proxy-Scheme)
                delta = rawdata[pos] + _ONE_BYTE_EXTENDED
                pos += 1
            elif delta > 12:
                delta, pos = _read_extended(delta, rawdata, pos, "delta")
            if length > 12:
                length, pos = _read_extended(length, rawdata, pos, "length")
            number += delta
            if number > 0xFFFF:
                raise error.UnparsableMessage("option number beyond 65535")
            stop = pos + length
            if stop > end:
                raise error.UnparsableMessage("option value truncated")
            raw = rawdata[pos:stop]
            pos = stop

            option: OptionType
            spec = specs.get(number)
            if spec is None:
                option = OpaqueOption(_lookup(number), raw)
            else:
                optnumber, kind, fmt, minlen, maxlen = spec
                if length < minlen or length > maxlen:
                    self._add_invalid(optnumber, raw)
                    continue
                if kind == _STRING:
                    try:
                        option = StringOption(optnumber, raw.decode("utf-8"))
                    except UnicodeDecodeError:
                        self._add_invalid(optnumber, raw)
                        continue
                elif kind == _UINT:
                    option = UintOption(optnumber, int.from_bytes(raw, "big"))
                elif kind == _OPAQUE:
                    option = OpaqueOption(optnumber, raw)
                else:
                    option = fmt(optnumber, None)
                    try:
                        option.decode(raw)
                    except ValueError:
                        self._add_invalid(optnumber, raw)
                        continue
            existing = options.get(number)
            if existing is None:
                options[number] = [option]
            else:
                existing.append(option)
        return b""

    def encode(self) -> bytes:
        """Encode all options in option header into string of bytes."""
        out = bytearray()
        self.encode_into(out)
        return bytes(out)

    def encode_into(self, out: bytearray) -> None:
        """Append the encoded options to ``out`` (what :meth:`encode`
        returns, without the copy)."""
        options = self._options
        # (a single option needs no sorting)
        numbers = sorted(options) if len(options) > 1 else options
        previous = 0
        for number in numbers:
            if number > 0xFFFF:
                # (A negative number fails below, as a negative header byte.)
                raise ValueError("option numbers are 16-bit unsigned integers")
            delta = number - previous
            for option in options[number]:
                if type(option) is UintOption and number not in UINT_MINIMUM_LENGTH:
                    # (UintOption.encode, inlined for the common options
                    # such as Observe and Content-Format)
                    uint = option.value
                    if uint < 0:
                        raise ValueError("uint options can not be negative")
                    value = uint.to_bytes((uint.bit_length() + 7) // 8, "big")
                else:
                    value = option.encode()
                length = len(value)
                if delta < _ONE_BYTE_EXTENDED and length < _ONE_BYTE_EXTENDED:
                    out.append(delta << 4 | length)
                elif delta < _TWO_BYTES_EXTENDED and length < _ONE_BYTE_EXTENDED:
                    # (the common extended case: numbers 13 to 268 after a
                    # small one, e.g. Max-Age)
                    out.append(_ONE_BYTE_EXTENDED << 4 | length)
                    out.append(delta - _ONE_BYTE_EXTENDED)
                else:
                    delta_nibble = _nibble(delta)
                    length_nibble = _nibble(length)
                    out.append(delta_nibble << 4 | length_nibble)
                    out += _extended_header(delta_nibble, delta)
                    out += _extended_header(length_nibble, length)
                out += value
                delta = 0
            previous = number

    def add_option(self, option: OptionType) -> None:
        """Add option into option header."""
        number = int(option.number)
        # A new list rather than append: value lists may be shared between
        # copies (see copy_shallow).
        self._options[number] = self._options.get(number, []) + [option]

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
        new._invalid = None if self._invalid is None else list(self._invalid)
        return new

    def copy_shallow(self) -> "Options":
        """A copy whose option table is new but whose per-option value lists
        are shared: cheap, and safe because neither the views nor
        add_option ever mutate a value list in place."""
        new = Options.__new__(Options)
        new._options = dict(self._options)
        new._invalid = self._invalid
        return new

    def __contains__(self, number: object) -> bool:
        return number in self._options

    def values_except(self, skipped: Container[int]) -> tuple[tuple[int, Any], ...]:
        """(number, value) of every option whose number is not in
        ``skipped``, in the order the options are held: ascending numbers
        for a decoded message, the order of assignment for one built here.
        A hashable fingerprint of what a message asks for that costs no
        sorting and no encoding (equal options held in another order give
        another tuple, so use it where that only costs a shortcut, as for a
        proxy's request signatures).

        >>> opts = Options()
        >>> opts.uri_path = ["a", "b"]
        >>> opts.size1 = 10
        >>> opts.values_except({60}) == ((11, "a"), (11, "b"))
        True
        """
        return tuple([
            (number, option.value)
            for number, options in self._options.items()
            if number not in skipped
            for option in options
        ])

    def numbers(self) -> KeysView[int]:
        """The numbers of the options present, in no particular order (for
        checks over all options, e.g. for unknown critical ones)."""
        return self._options.keys()

    def unprocessable_critical(self, recognized: "Collection[int]") -> Optional[int]:
        """The number of a critical option that makes the message
        unprocessable (RFC 7252 §5.4.1): one whose value violated its
        format, or one not in ``recognized``; None if there is none."""
        invalid = self._invalid
        if invalid:
            for bad, _ in invalid:
                if bad & 1:
                    return int(bad)
        for number in self._options:
            if number & 1 and number not in recognized:
                return number
        return None

    def split_off(self, number: int) -> "tuple[Options, list[OptionType]]":
        """A shallow copy (see :meth:`copy_shallow`) without the options of
        ``number``, and those options: for handing a message on with one
        option rewritten (a site strips the path its child sees)."""
        new = Options.__new__(Options)
        options = new._options = dict(self._options)
        new._invalid = self._invalid
        return new, options.pop(number, [])

    # --- typed views ---------------------------------------------------------

    uri_path: _ItemsView[str] = _ItemsView(_O.URI_PATH, "Iterable view on the URI_PATH option.")
    uri_query: _ItemsView[str] = _ItemsView(_O.URI_QUERY, "Iterable view on the URI_QUERY option.")
    location_path: _ItemsView[str] = _ItemsView(
        _O.LOCATION_PATH, "Iterable view on the LOCATION_PATH option."
    )
    location_query: _ItemsView[str] = _ItemsView(
        _O.LOCATION_QUERY, "Iterable view on the LOCATION_QUERY option."
    )
    block2: _SingleValueView[_Block, _BlockLike] = _SingleValueView(
        _O.BLOCK2, "Single-value view on the BLOCK2 option."
    )
    block1: _SingleValueView[_Block, _BlockLike] = _SingleValueView(
        _O.BLOCK1, "Single-value view on the BLOCK1 option."
    )
    q_block1: _SingleValueView[_Block, _BlockLike] = _SingleValueView(
        _O.Q_BLOCK1, "Single-value view on the Q_BLOCK1 option."
    )
    q_block2: _SingleValueView[_Block, _BlockLike] = _SingleValueView(
        _O.Q_BLOCK2, "Single-value view on the Q_BLOCK2 option."
    )
    content_format: _SingleValueView[ContentFormat, int] = _SingleValueView(
        _O.CONTENT_FORMAT, "Single-value view on the CONTENT_FORMAT option.", ContentFormat
    )
    etag: _SingleValueView[bytes, bytes] = _SingleValueView(
        _O.ETAG, "Single ETag as used in responses"
    )
    etags: _ItemsView[bytes] = _ItemsView(_O.ETAG, "List of ETags as used in requests")
    if_none_match = _PresenceView(_O.IF_NONE_MATCH, "Presence of the IF_NONE_MATCH option.")
    observe: _SingleValueView[int, int] = _SingleValueView(
        _O.OBSERVE, "Single-value view on the OBSERVE option."
    )
    accept: _SingleValueView[ContentFormat, int] = _SingleValueView(
        _O.ACCEPT, "Single-value view on the ACCEPT option.", ContentFormat
    )
    uri_host: _SingleValueView[str, str] = _SingleValueView(
        _O.URI_HOST, "Single-value view on the URI_HOST option."
    )
    uri_port: _SingleValueView[int, int] = _SingleValueView(
        _O.URI_PORT, "Single-value view on the URI_PORT option."
    )
    proxy_uri: _SingleValueView[str, str] = _SingleValueView(
        _O.PROXY_URI, "Single-value view on the PROXY_URI option."
    )
    proxy_scheme: _SingleValueView[str, str] = _SingleValueView(
        _O.PROXY_SCHEME, "Single-value view on the PROXY_SCHEME option."
    )
    size1: _SingleValueView[int, int] = _SingleValueView(
        _O.SIZE1, "Single-value view on the SIZE1 option."
    )
    size2: _SingleValueView[int, int] = _SingleValueView(
        _O.SIZE2, "Single-value view on the SIZE2 option."
    )
    oscore: _SingleValueView[bytes, bytes] = _SingleValueView(
        _O.OSCORE, "Single-value view on the OSCORE option."
    )
    object_security: _SingleValueView[bytes, bytes] = _SingleValueView(
        _O.OBJECT_SECURITY, "Single-value view on the OBJECT_SECURITY option (old name of OSCORE)."
    )
    max_age: _SingleValueView[int, int] = _SingleValueView(
        _O.MAX_AGE, "Single-value view on the MAX_AGE option."
    )
    if_match: _ItemsView[bytes] = _ItemsView(_O.IF_MATCH, "Iterable view on the IF_MATCH option.")
    no_response: _SingleValueView[int, int] = _SingleValueView(
        _O.NO_RESPONSE, "Single-value view on the NO_RESPONSE option."
    )
    echo: _SingleValueView[bytes, bytes] = _SingleValueView(
        _O.ECHO, "Single-value view on the ECHO option."
    )
    request_tag: _ItemsView[bytes] = _ItemsView(
        _O.REQUEST_TAG, "Iterable view on the REQUEST_TAG option."
    )
    hop_limit: _SingleValueView[int, int] = _SingleValueView(
        _O.HOP_LIMIT, "Single-value view on the HOP_LIMIT option."
    )
    edhoc = _PresenceView(_O.EDHOC, "Presence of the EDHOC option.")
    uri_path_abbrev: _SingleValueView[int, int] = _SingleValueView(
        _O.URI_PATH_ABBREV,
        "Single-value view on the URI_PATH_ABBREV option: a number standing for a "
        "well-known path (0 is /.well-known/core; see aiocoap.numbers.uri_path_abbrev).",
    )
    request_hash: _SingleValueView[bytes, bytes] = _SingleValueView(
        _O.REQUEST_HASH, "Single-value view on the REQUEST_HASH option."
    )


VIEW_NAMES = frozenset(
    name
    for name, value in vars(Options).items()
    if isinstance(value, (_SingleValueView, _ItemsView, _PresenceView))
)
"""Names of the typed views of :class:`Options`; they are also the option
keyword arguments of the Message constructor."""

_VIEWS_BY_NUMBER: dict[int, list[Union[_SingleValueView[Any, Any], _ItemsView[Any]]]] = {}
for _view in vars(Options).values():
    if isinstance(_view, (_SingleValueView, _ItemsView)):
        _VIEWS_BY_NUMBER.setdefault(int(_view._number), []).append(_view)
del _view


def _format_changed(number: int) -> None:
    """Follow OptionNumber.set_format: decode and the views use the new
    format from now on."""
    _SPECS[number] = _spec_for(number)
    for view in _VIEWS_BY_NUMBER.get(number, ()):
        view._format = OptionNumber(number).format


add_format_listener(_format_changed)

del _O
