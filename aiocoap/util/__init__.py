"""Tools not directly related to CoAP that the API needs.

* :class:`ExtensibleIntEnum`: named integers whose value space is not fully
  known (option numbers, codes, content formats); unknown values are still
  usable and print sensibly.
* :func:`hostportjoin` / :func:`hostportsplit`: the ``host[:port]`` part of
  URIs, with IPv6 literals and zone identifiers.
* :func:`quote_nonascii`, :class:`Sentinel`.
* :func:`deprecation_getattr`: old module-level names that still work, with
  a DeprecationWarning.
"""

from __future__ import annotations

import enum
import urllib.parse
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional

__all__ = [
    "ExtensibleEnumMeta",
    "ExtensibleIntEnum",
    "hostportjoin",
    "hostportsplit",
    "quote_nonascii",
    "Sentinel",
    "deprecation_getattr",
]


class ExtensibleEnumMeta(type):
    """Metaclass of :class:`ExtensibleIntEnum`.

    It turns the integer class attributes of a class body into instances of
    that class (with their ``name`` set) and keeps a value -> instance map so
    that ``Cls(5)`` returns the one named instance for 5."""

    def __init__(  # noqa: A002 (dict: the documented name)
        cls, name: str, bases: tuple[type, ...], dict: Dict[str, Any]
    ) -> None:
        super().__init__(name, bases, dict)
        cls._value2member_map_: Dict[int, Any] = {}
        for base in bases:
            cls._value2member_map_.update(getattr(base, "_value2member_map_", {}))
        for key, value in list(dict.items()):
            if key.startswith("_") or type(value) is not int:
                continue
            member: Any = int.__new__(cls, value)  # type: ignore[arg-type]  # (cls: the int subclass being made)
            member._name = key
            setattr(cls, key, member)
            # The first name given to a value is its canonical name; later
            # names (aliases like UNSUPPORTED_MEDIA_TYPE) resolve to it.
            canonical = cls._value2member_map_.get(value)
            if canonical is None or type(canonical) is not cls:
                cls._value2member_map_[value] = member
            else:
                setattr(cls, key, canonical)

    def __call__(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return cls._value2member_map_[value]
        except (KeyError, TypeError):
            pass
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{cls.__name__} needs an int, not {value!r}")
        member: Any = int.__new__(cls, value)  # type: ignore[arg-type]  # (cls: the int subclass being made)
        member._name = None
        return member

    def __iter__(cls) -> Iterator[Any]:
        return iter(sorted(set(cls._value2member_map_.values())))

    def __contains__(cls, value: object) -> bool:
        return value in cls._value2member_map_


if TYPE_CHECKING:
    # Type checkers know IntEnum: members are instances of their class and
    # Cls(number) gives one. That is what the metaclass provides at run time
    # (plus instances for unknown numbers), so this is what they get to see.
    class ExtensibleIntEnum(enum.IntEnum):
        _name: Optional[str]

        def is_known(self) -> bool: ...

else:

    class ExtensibleIntEnum(int, metaclass=ExtensibleEnumMeta):
        """An integer with an optional name, like :class:`enum.IntEnum` but open.

        Class attributes that are plain ints become named members. Calling the
        class with any other int gives an unnamed member that behaves the same
        way (comparison, hashing, arithmetic as int) and prints its number.

        >>> class Color(ExtensibleIntEnum):
        ...     RED = 1
        >>> Color(1) is Color.RED, Color.RED.name
        (True, 'RED')
        >>> Color(7)
        <Color 7>
        """

        _name: Optional[str]

        def __repr__(self):
            if self._name is None:
                return f"<{type(self).__name__} {int(self)}>"
            return f'<{type(self).__name__} {int(self)} "{self._name}">'

        def __str__(self):
            return self._name if self._name is not None else str(int(self))

        def __format__(self, spec):
            return format(str(self), spec) if not spec else format(int(self), spec)

        def __reduce__(self):
            return (type(self), (int(self),))

        @property
        def name(self) -> str:
            """The constant name (for unknown values: the number as a string)."""
            return self._name if self._name is not None else str(int(self))

        @property
        def value(self) -> int:
            return int(self)

        def is_known(self) -> bool:
            """True if the value has a name in the registry this class models."""
            return self._name is not None


def hostportjoin(host: str, port: Optional[int] = None) -> str:
    """Join a host and optionally a port into a hostinfo-style host:port.

    IPv6 literals get brackets, and a zone identifier gets its ``%`` escaped
    as ``%25`` as RFC 6874 requires inside URIs.

    >>> hostportjoin('example.com')
    'example.com'
    >>> hostportjoin('example.com', 1234)
    'example.com:1234'
    >>> hostportjoin('2001:db8::1', 5683)
    '[2001:db8::1]:5683'
    >>> hostportjoin('fe80::1%eth0')
    '[fe80::1%25eth0]'
    """
    if ":" in host:
        host = "[" + host.replace("%", "%25") + "]"
    if port is None:
        return host
    return f"{host}:{port}"


def hostportsplit(hostport: str) -> tuple[str, Optional[int]]:
    """Like urllib.parse.splitport, but return port as int, and as None if not
    given. Also, it allows giving IPv6 addresses like a netloc:

    >>> hostportsplit('foo')
    ('foo', None)
    >>> hostportsplit('foo:5683')
    ('foo', 5683)
    >>> hostportsplit('[::1%eth0]:56830')
    ('::1%eth0', 56830)
    >>> hostportsplit('[fe80::1%25eth0]')
    ('fe80::1%eth0', None)

    Malformed input raises ValueError:

    >>> hostportsplit('[::1')
    Traceback (most recent call last):
    ...
    ValueError: unterminated IPv6 literal in '[::1'
    """
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise ValueError(f"unterminated IPv6 literal in {hostport!r}")
        host = hostport[1:close]
        rest = hostport[close + 1 :]
        if "%25" in host:
            host = host.replace("%25", "%", 1)
        if rest == "":
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"junk after IPv6 literal in {hostport!r}")
        portstr = rest[1:]
    else:
        host, sep, portstr = hostport.rpartition(":")
        if not sep:
            return hostport, None
        if ":" in host:
            raise ValueError(f"IPv6 address without brackets in {hostport!r}")
    if portstr == "":
        return host, None
    if not portstr.isdigit() or not portstr.isascii():
        raise ValueError(f"invalid port in {hostport!r}")
    port = int(portstr)
    if port > 65535:
        raise ValueError(f"port out of range in {hostport!r}")
    return host, port


def quote_nonascii(s: str) -> str:
    """Like urllib.parse.quote, but only escaping non-ASCII characters.

    >>> quote_nonascii('a b/ä')
    'a b/%C3%A4'
    """
    return "".join(
        c if c.isascii() else urllib.parse.quote(c, safe="") for c in s
    )


class Sentinel:
    """A marker object that is only compared by identity.

    Define one on module level and refer to that instance; its repr is its
    label in angle brackets.

    >>> Sentinel("NoResponse")
    <NoResponse>
    """

    __slots__ = ("_label",)

    def __init__(self, label: str):
        self._label = label

    def __repr__(self) -> str:
        return f"<{self._label}>"


def deprecation_getattr(_deprecated_aliases: dict[str, str], _globals: dict[str, Any]) -> Callable[[str], Any]:
    """Build a module-level ``__getattr__`` under which the old names (the
    keys of ``_deprecated_aliases``) still work: each access warns
    (DeprecationWarning) and returns the module global named by the value.

    >>> NEW_NAME = 42
    >>> __getattr__ = deprecation_getattr({"OLD_NAME": "NEW_NAME"}, globals())
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     __getattr__("OLD_NAME"), caught[0].category.__name__
    (42, 'DeprecationWarning')
    """
    module = _globals.get("__name__", "module")

    def __getattr__(name: str) -> Any:
        new = _deprecated_aliases.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} is deprecated, use {new} instead", DeprecationWarning, stacklevel=2)
        return _globals[new]

    return __getattr__
