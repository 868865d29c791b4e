"""Option value formats: the translation between an option's bytes on the
wire and its Python value.

Each class implements :meth:`OptionType.encode` / :meth:`OptionType.decode`.
``decode`` raises :class:`ValueError` for bytes that violate the format (bad
UTF-8, an oversized block number); the options codec turns that into an
"invalid option" that servers answer with 4.02 when it is critical and
ignore when it is elective (RFC 7252 §5.4.3).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .numbers.contentformat import ContentFormat

__all__ = [
    "OptionType",
    "StringOption",
    "OpaqueOption",
    "UintOption",
    "TypedOption",
    "BlockOption",
    "ContentFormatOption",
]


UINT_MINIMUM_LENGTH: dict[int, int] = {}
"""Option number -> minimum value length for the uint options whose registry
entry does not allow the empty value (for the package: filled in by
:mod:`aiocoap.numbers.optionnumbers`, which owns the registry; the options
codec encodes the other uint options without looking them up)."""


def _encode_uint(value: int) -> bytes:
    if value < 0:
        raise ValueError("uint options can not be negative")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


class OptionType:
    """Interface for decoding and encoding option values

    Instances are collected in a :class:`aiocoap.options.Options` object and
    translate between the octets on the wire (:meth:`encode` /
    :meth:`decode`) and the interpreted ``value``. Applications rarely handle
    them: read and set options through the properties of ``Message.opt``."""

    __slots__ = ("number", "value")

    value: Any

    def __init__(self, number: int, value: Any) -> None:
        self.number = number
        self.value = value

    def encode(self) -> bytes:
        """Return the option's value in serialized form"""
        raise NotImplementedError

    def decode(self, rawdata: bytes) -> None:
        """Set the option's value from the bytes in rawdata"""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.encode())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OptionType):
            return NotImplemented
        return self.number == other.number and self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash((self.number, self.encode()))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.number!r}: {self.value!r}>"

    def __str__(self) -> str:
        return str(self.value)


class StringOption(OptionType):
    """String CoAP option - used to represent string options. Always encoded
    in UTF8 per CoAP specification."""

    __slots__ = ()

    def __init__(self, number: int, value: str = "") -> None:
        self.number = number
        self.value = value

    def encode(self) -> bytes:
        encoded: bytes = self.value.encode()
        return encoded

    def decode(self, rawdata: bytes) -> None:
        try:
            self.value = rawdata.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"option is not valid UTF-8: {e}") from None


class OpaqueOption(OptionType):
    """Opaque CoAP option - used to represent options that just have their
    uninterpreted bytes as value."""

    __slots__ = ()

    def __init__(self, number: int, value: bytes = b"") -> None:
        self.number = number
        self.value = value

    def encode(self) -> bytes:
        return bytes(self.value)

    def decode(self, rawdata: bytes) -> None:
        self.value = bytes(rawdata)

    def __str__(self) -> str:
        return bytes(self.value).hex()


class UintOption(OptionType):
    """Uint CoAP option - used to represent integer options."""

    __slots__ = ()

    def __init__(self, number: int, value: int = 0) -> None:
        self.number = number
        self.value = value

    def encode(self) -> bytes:
        value: int = self.value
        if value < 0:
            raise ValueError("uint options can not be negative")
        length = (value.bit_length() + 7) // 8
        if length < 2:
            # As short as possible (RFC 7252 §3.2), but not shorter than the
            # registry allows (Hop-Limit is always 1 byte, for example).
            minimum = UINT_MINIMUM_LENGTH.get(self.number)
            if minimum is not None and minimum > length:
                length = minimum
        return value.to_bytes(length, "big")

    def decode(self, rawdata: bytes) -> None:
        self.value = int.from_bytes(rawdata, "big")


class TypedOption(OptionType):
    """An option whose value is of one Python type (:attr:`type`): values
    assigned to it are converted (or checked) on assignment, so a wrong
    value fails where it is set rather than when the message is encoded.

    Subclasses set ``type`` and may override :meth:`_set_from_opt_value`
    to accept more than instances of it."""

    __slots__ = ("_value",)

    type: Any = object
    """The type of the option's value."""

    def __init__(self, number: int, value: Any = None) -> None:
        self.number = number
        self._value: Any = None
        if value is not None:
            self.value = value

    # (a checked attribute instead of the plain slot)
    @property
    def value(self) -> Any:
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        self._set_from_opt_value(value)

    def _set_from_opt_value(self, value: object) -> None:
        """Store a value assigned to the option (the default: instances of
        :attr:`type` only; anything else raises ValueError)."""
        if not isinstance(value, self.type):
            raise ValueError(f"A {type(self).__name__} takes {self.type.__name__} values, not {type(value).__name__}")
        self._value = value


class ContentFormatOption(TypedOption):
    """A uint option whose value is a Content-Format number (Content-Format
    and Accept have these semantics); its value is a
    :class:`~aiocoap.numbers.contentformat.ContentFormat`."""

    __slots__ = ()

    type = ContentFormat

    def encode(self) -> bytes:
        return _encode_uint(int(self._value))

    def decode(self, rawdata: bytes) -> None:
        self._value = ContentFormat(int.from_bytes(rawdata, "big"))

    def _set_from_opt_value(self, value: object) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"Content-Format values are integers, not {type(value).__name__}")
        self._value = ContentFormat(value)


class _BlockwiseTuple(NamedTuple):
    block_number: int
    more: bool
    size_exponent: int


class BlockOption(TypedOption):
    """Block CoAP option - special option used only for Block1 and Block2
    options (and Q-Block1/Q-Block2). Its value is a :class:`BlockwiseTuple`
    (plain 3-tuples assigned to it are converted).

    The structure covers the block options of RFC 7959 and the BERT
    extension of RFC 8323 (size exponent 7)."""

    __slots__ = ()

    class BlockwiseTuple(_BlockwiseTuple):
        """(block_number, more, size_exponent) of a block option.

        >>> t = BlockOption.BlockwiseTuple(2, True, 4)
        >>> t.size, t.start, t.is_bert
        (256, 512, False)
        """

        __slots__ = ()

        @property
        def size(self) -> int:
            return 1 << (min(self.size_exponent, 6) + 4)

        @property
        def start(self) -> int:
            """The byte offset in the body indicated by block number and size.

            Note that this calculation is only valid for descriptive use and
            Block2 control use. The semantics of block_number and size in
            Block1 control use are unrelated (indicating the acknowledged
            block number in the request Block1 size and the server's
            preferred block size), and must not be calculated using this
            property in that case."""
            return self.block_number * self.size

        @property
        def is_bert(self) -> bool:
            """True if the exponent is recognized to signal a BERT message."""
            return self.size_exponent == 7

        def is_valid_for_payload_size(self, payloadsize: int) -> bool:
            """Whether a payload of that size fits this block: exactly one
            block size unless it is the last, and (BERT) a multiple of
            1024."""
            if self.is_bert:
                if self.more:
                    return payloadsize > 0 and payloadsize % 1024 == 0
                return True
            if self.more:
                return payloadsize == self.size
            return payloadsize <= self.size

        def reduced_to(self, maximum_exponent: int) -> "BlockOption.BlockwiseTuple":
            """Return a BlockwiseTuple whose exponent is capped to the given
            maximum_exponent

            >>> initial = BlockOption.BlockwiseTuple(10, 0, 5)
            >>> initial == initial.reduced_to(6)
            True
            >>> initial.reduced_to(3)
            BlockwiseTuple(block_number=40, more=0, size_exponent=3)
            """
            if maximum_exponent >= self.size_exponent:
                return self
            if self.is_bert and maximum_exponent == 6:
                return type(self)(self.block_number, self.more, 6)
            factor = 1 << (min(self.size_exponent, 6) - maximum_exponent)
            return type(self)(self.block_number * factor, self.more, maximum_exponent)

        def __repr__(self) -> str:
            return (
                f"BlockwiseTuple(block_number={self.block_number}, "
                f"more={self.more!r}, size_exponent={self.size_exponent})"
            )

    type = BlockwiseTuple

    def _set_from_opt_value(self, value: object) -> None:
        if value is not None and not isinstance(value, self.BlockwiseTuple):
            value = self.BlockwiseTuple(*value)  # type: ignore[misc]
        self._value = value

    def encode(self) -> bytes:
        number, more, szx = self._value
        if not 0 <= szx <= 7:
            raise ValueError("block size exponent out of range")
        if not 0 <= number < 1 << 20:
            raise ValueError("block number out of range")
        return _encode_uint((number << 4) | (bool(more) << 3) | szx)

    def decode(self, rawdata: bytes) -> None:
        if len(rawdata) > 3:
            raise ValueError("block option longer than 3 bytes")
        as_integer = int.from_bytes(rawdata, "big")
        # (block number, more, size exponent; tuple.__new__ because a named
        # tuple's own constructor is a Python function, and this is decoded
        # for every block of a transfer)
        self._value = tuple.__new__(self.BlockwiseTuple, (as_integer >> 4, bool(as_integer & 0x08), as_integer & 0x07))
