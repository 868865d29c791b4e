"""Known values for CoAP option numbers.

The members correspond to the IANA "CoRE Parameters" sub-registry "CoAP
Option Numbers". Each known option also knows its value format (a class of
:mod:`aiocoap.optiontypes`) and the length range the registry allows; values
outside that range are treated as unrecognized options (RFC 7252 §5.4.3).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from ..util import ExtensibleIntEnum

__all__ = ["OptionNumber", "is_nocachekey_number"]


def is_nocachekey_number(number: int) -> bool:
    """Whether ``number`` (an :class:`OptionNumber` or a plain int) is a
    safe-to-forward option marked NoCacheKey (RFC 7252 §5.4.2), i.e. one
    that is not part of the cache key. False for every unsafe option (the
    NoCacheKey bit pattern implies the safe-to-forward bit).

    This is :meth:`OptionNumber.is_nocachekey` without the conversion to
    an OptionNumber and without the error for unsafe options, for loops
    over the options of every request (the blockwise transfer key).

    >>> is_nocachekey_number(OptionNumber.SIZE1), is_nocachekey_number(OptionNumber.URI_PATH)
    (True, False)
    >>> is_nocachekey_number(92)  # an unregistered NoCacheKey number
    True
    """
    # bits 1 to 4 of the number are 1110: NoCacheKey, and safe-to-forward
    return number & 0x1E == 0x1C


class OptionNumber(ExtensibleIntEnum):
    """A CoAP option number.

    As the option number contains information on whether the option is
    critical, and whether it is safe-to-forward, those properties can be
    queried using the ``is_*`` group of methods.

    Note that whether an option may be repeated or not does not only depend
    on the option, but also on the context, and is thus handled in the
    :class:`aiocoap.options.Options` object instead.

    >>> OptionNumber.URI_PATH
    <OptionNumber 11 "URI_PATH">
    >>> OptionNumber.URI_PATH.is_critical(), OptionNumber.URI_PATH.is_unsafe()
    (True, True)
    >>> OptionNumber(2048).is_elective()
    True
    """

    IF_MATCH = 1
    URI_HOST = 3
    ETAG = 4
    IF_NONE_MATCH = 5
    OBSERVE = 6
    URI_PORT = 7
    LOCATION_PATH = 8
    OSCORE = 9
    OBJECT_SECURITY = 9
    URI_PATH = 11
    CONTENT_FORMAT = 12
    URI_PATH_ABBREV = 13
    MAX_AGE = 14
    URI_QUERY = 15
    HOP_LIMIT = 16
    ACCEPT = 17
    Q_BLOCK1 = 19
    LOCATION_QUERY = 20
    EDHOC = 21
    BLOCK2 = 23
    BLOCK1 = 27
    SIZE2 = 28
    Q_BLOCK2 = 31
    PROXY_URI = 35
    PROXY_SCHEME = 39
    SIZE1 = 60
    NO_RESPONSE = 258
    REQUEST_TAG = 292
    REQUEST_HASH = 548
    OCF_ACCEPT_CONTENT_FORMAT_VERSION = 2049
    OCF_CONTENT_FORMAT_VERSION = 2053
    ECHO = 252

    def is_critical(self) -> bool:
        return bool(self & 0x01)

    def is_elective(self) -> bool:
        return not self & 0x01

    def is_unsafe(self) -> bool:
        return bool(self & 0x02)

    def is_safetoforward(self) -> bool:
        return not self & 0x02

    def is_nocachekey(self) -> bool:
        if self.is_unsafe():
            raise ValueError("NoCacheKey is only meaningful for safe options")
        return is_nocachekey_number(self)

    def is_cachekey(self) -> bool:
        return not self.is_nocachekey()

    @property
    def format(self) -> "type[_OptionType]":
        """The :class:`aiocoap.optiontypes.OptionType` subclass that
        represents values of this option (OpaqueOption for unknown ones);
        see :meth:`set_format`."""
        return _FORMATS.get(int(self), _OpaqueOption)

    @format.setter
    def format(self, value: "type[_OptionType]") -> None:
        self.set_format(value)

    def set_format(self, value: "type[_OptionType]") -> None:
        """Set the :class:`aiocoap.optiontypes.OptionType` subclass that
        represents values of this option, for every message of the program
        from now on (also possible by assigning to :attr:`format`).

        Meant for custom and experimental options; changing the format of an
        option that already has one warns, as that makes the program
        disagree with its peers on what the bytes mean."""
        number = int(self)
        old = _FORMATS.get(number)
        if old is not None and old is not value:
            warnings.warn(
                f"Altering the format of option {self.name} from {old.__name__} to "
                f"{value.__name__} makes this program disagree with its peers",
                stacklevel=2,
            )
        _FORMATS[number] = value
        for listener in _format_listeners:
            listener(number)

    @property
    def name_printable(self) -> str:
        """The name of the option as the registry writes it.

        >>> OptionNumber.URI_PATH.name_printable, OptionNumber.ETAG.name_printable
        ('Uri-Path', 'Etag')
        """
        return self.name.replace("_", " ").title().replace(" ", "-")

    @property
    def length_range(self) -> tuple[int, int]:
        """Minimum and maximum value length in bytes the registry allows."""
        return _LENGTHS.get(int(self), _ANY_LENGTH)

    def create_option(self, decode: bytes | None = None, value: Any = None) -> _OptionType:
        """Return an Option element of the appropriate class from this
        option number.

        An initial value may be set using the decode or value options, and
        will be fed to the resulting object's decode method or value
        property, respectively."""
        option = self.format(self)  # type: ignore[call-arg]  # (the concrete formats default the value)
        if decode is not None:
            option.decode(decode)
        if value is not None:
            option.value = value
        return option


from .. import optiontypes as _optiontypes  # noqa: E402
from ..optiontypes import (  # noqa: E402  (the formats need OptionNumber defined)
    BlockOption as _BlockOption,
    OptionType as _OptionType,
    OpaqueOption as _OpaqueOption,
    StringOption as _StringOption,
    UintOption as _UintOption,
)

_O = OptionNumber
_FORMATS: dict[int, type[_OptionType]] = {
    _O.IF_MATCH: _OpaqueOption,
    _O.URI_HOST: _StringOption,
    _O.ETAG: _OpaqueOption,
    _O.IF_NONE_MATCH: _OpaqueOption,
    _O.OBSERVE: _UintOption,
    _O.URI_PORT: _UintOption,
    _O.LOCATION_PATH: _StringOption,
    _O.OSCORE: _OpaqueOption,
    _O.URI_PATH: _StringOption,
    _O.CONTENT_FORMAT: _UintOption,
    _O.MAX_AGE: _UintOption,
    _O.URI_QUERY: _StringOption,
    _O.HOP_LIMIT: _UintOption,
    _O.ACCEPT: _UintOption,
    _O.Q_BLOCK1: _BlockOption,
    _O.LOCATION_QUERY: _StringOption,
    _O.EDHOC: _OpaqueOption,
    _O.BLOCK2: _BlockOption,
    _O.BLOCK1: _BlockOption,
    _O.SIZE2: _UintOption,
    _O.Q_BLOCK2: _BlockOption,
    _O.PROXY_URI: _StringOption,
    _O.PROXY_SCHEME: _StringOption,
    _O.SIZE1: _UintOption,
    _O.NO_RESPONSE: _UintOption,
    _O.REQUEST_TAG: _OpaqueOption,
    _O.ECHO: _OpaqueOption,
    _O.URI_PATH_ABBREV: _UintOption,
    _O.REQUEST_HASH: _OpaqueOption,
    _O.OCF_ACCEPT_CONTENT_FORMAT_VERSION: _UintOption,
    _O.OCF_CONTENT_FORMAT_VERSION: _UintOption,
}

# Value lengths from the registry (RFC 7252 §5.10 and the defining RFCs).
_LENGTHS: dict[int, tuple[int, int]] = {
    _O.IF_MATCH: (0, 8),
    _O.URI_HOST: (1, 255),
    _O.ETAG: (1, 8),
    _O.IF_NONE_MATCH: (0, 0),
    _O.OBSERVE: (0, 3),
    _O.URI_PORT: (0, 2),
    _O.LOCATION_PATH: (0, 255),
    _O.OSCORE: (0, 255),
    _O.URI_PATH: (0, 255),
    _O.CONTENT_FORMAT: (0, 2),
    _O.MAX_AGE: (0, 4),
    _O.URI_QUERY: (0, 255),
    _O.HOP_LIMIT: (1, 1),
    _O.ACCEPT: (0, 2),
    _O.Q_BLOCK1: (0, 3),
    _O.LOCATION_QUERY: (0, 255),
    _O.EDHOC: (0, 0),
    _O.BLOCK2: (0, 3),
    _O.BLOCK1: (0, 3),
    _O.SIZE2: (0, 4),
    _O.Q_BLOCK2: (0, 3),
    _O.PROXY_URI: (1, 1034),
    _O.PROXY_SCHEME: (1, 255),
    _O.SIZE1: (0, 4),
    _O.NO_RESPONSE: (0, 1),
    _O.REQUEST_TAG: (0, 8),
    _O.ECHO: (1, 40),
    _O.URI_PATH_ABBREV: (0, 4),
    _O.REQUEST_HASH: (0, 255),
    _O.OCF_ACCEPT_CONTENT_FORMAT_VERSION: (2, 2),
    _O.OCF_CONTENT_FORMAT_VERSION: (2, 2),
}
del _O

_ANY_LENGTH = (0, 65535 + 269)
"""The length range of options whose registry entry gives none."""

_format_listeners: list[Callable[[int], None]] = []


def add_format_listener(listener: Callable[[int], None]) -> None:
    """Have ``listener`` called with the option number whenever
    :meth:`OptionNumber.set_format` changed a format (for the package: the
    options codec keeps tables derived from the formats)."""
    _format_listeners.append(listener)

_optiontypes.UINT_MINIMUM_LENGTH.update(
    (number, minimum)
    for number, (minimum, _) in _LENGTHS.items()
    if _FORMATS[number] is _UintOption and minimum > 0
)
