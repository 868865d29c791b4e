"""CoRE Link Format (RFC 6690): a small model, its serializer and parser.

* :class:`Link`: one link-value, a target URI reference (``href``) plus an
  ordered list of ``(name, value)`` attribute pairs; a value of ``None`` is
  a bare flag such as ``obs``.
* :class:`LinkFormat`: an ordered collection of links, serialized as an
  ``application/link-format`` document by ``str()``.
* :func:`parse`: text (or UTF-8 bytes) to a :class:`LinkFormat`. Any input
  either parses or raises :class:`ValueError` with the position and reason.

This module needs no third-party package. The LinkHeader distribution (the
``linkheader`` extra, module ``link_header``) is not imported anywhere;
objects of its classes that applications hand to the library (for example a
``link_header.LinkHeader`` returned by a ``.well-known/core`` list
generator) are accepted through :meth:`LinkFormat.coerce`, which relies only
on their ``.links`` / ``.href`` / ``.attr_pairs`` attributes.

Serialization rules (RFC 6690 §2 and §3, RFC 7252 §7.2.1):

* no whitespace between link-values, parameters and their values;
* ``rel``, ``rev``, ``rt``, ``if``, ``anchor`` and ``title`` are always
  quoted strings;
* ``ct`` and ``sz`` are bare when they are a single cardinal number, else
  quoted (``ct="40 64"``);
* other attributes are bare when their value is a non-empty ptoken, else
  quoted;
* a value of ``None`` gives the bare parameter name (``obs``);
* inside quoted strings, ``"`` and ``\\`` are backslash-escaped.

Attribute names are case-insensitive and stored in lower case.
"""

from __future__ import annotations

import re
import string
from typing import Any, Iterable, Iterator, Optional, Union

__all__ = ["Link", "LinkFormat", "parse"]

AttrValue = Optional[str]

_ALWAYS_QUOTED = frozenset({"rel", "rev", "rt", "if", "anchor", "title"})
_CARDINAL_ATTRS = frozenset({"ct", "sz"})
SPACE_SEPARATED = frozenset({"rel", "rev", "rt", "if", "ct"})
"""Attributes whose value is a space separated list (RFC 6690 relation-types,
RFC 7252 ct). A sequence given for them to :class:`Link` becomes one value."""

_PTOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'()*+-./:<=>?@[]^_`{|}~")
# RFC 5987 token characters (parmname); '*' completes ext-name-star names.
_PARMNAME_CHARS = frozenset(string.ascii_letters + string.digits + "!#$&+-.^_`|~*")
_CARDINAL = re.compile(r"(?:0|[1-9][0-9]*)\Z")
_WHITESPACE = " \t\r\n"


def _is_ptoken(value: str) -> bool:
    return bool(value) and all(c in _PTOKEN_CHARS for c in value)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or not all(c in _PARMNAME_CHARS for c in name):
        raise ValueError(f"not a valid link attribute name: {name!r}")
    return name.lower()


def _bad_href_char(href: str) -> Optional[str]:
    for c in href:
        if c in "<>" or c <= " " or c == "\x7f":
            return c
    return None


def _check_href(href: str) -> str:
    if not isinstance(href, str):
        raise TypeError(f"a link's href must be a str, not {type(href).__name__}")
    bad = _bad_href_char(href)
    if bad is not None:
        raise ValueError(f"character {bad!r} is not allowed in a link's href {href!r}")
    return href


def _value_to_str(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # int() first: named numbers (ContentFormat) print their name
        return str(int(value))
    if isinstance(value, str):
        return value
    raise TypeError(f"link attribute values must be str, int or None, not {type(value).__name__}")


def _kwarg_pairs(name: str, value: Any) -> list[tuple[str, AttrValue]]:
    if value is None or value is True:
        return [(name, None)]
    if value is False:
        return []
    if isinstance(value, (list, tuple)):
        values = [_value_to_str(v) for v in value]
        if name in SPACE_SEPARATED:
            return [(name, " ".join(values))] if values else []
        return [(name, v) for v in values]
    return [(name, _value_to_str(value))]


class Link:
    """One link of a link-format document.

    ``Link(href, attr_pairs=None, **kwargs)``: ``attr_pairs`` is an iterable
    of ``(name, value)`` pairs taken as they are; keyword arguments are
    appended after them, where

    * a trailing underscore is dropped from the name (``if_=`` for ``if``,
      which can also be passed as ``**{"if": ...}``),
    * ``None`` or ``True`` make a bare flag (``obs=None`` gives ``;obs``),
      ``False`` omits the attribute,
    * ints are written in decimal (``ct=40``),
    * a list or tuple gives several values: one space separated value for
      ``rt``, ``if``, ``rel``, ``rev`` and ``ct``, repeated attributes for
      everything else.

    >>> str(Link("/sensors/temp", rt="temperature-c", if_="sensor", ct=0, obs=None))
    '</sensors/temp>;rt="temperature-c";if="sensor";ct=0;obs'
    >>> Link("/x", ct=[40, 64]).get("ct")
    '40 64'
    """

    __slots__ = ("href", "attr_pairs")

    def __init__(self, href: str, attr_pairs: Optional[Iterable[tuple[str, AttrValue]]] = None, **kwargs: Any):
        self.href = _check_href(href)
        pairs: list[tuple[str, AttrValue]] = []
        for pair in attr_pairs or ():
            if isinstance(pair, (str, bytes)):
                raise TypeError(f"attr_pairs entries must be (name, value) pairs, not {pair!r}")
            try:
                name, value = pair
            except (TypeError, ValueError):
                raise TypeError(f"attr_pairs entries must be (name, value) pairs, not {pair!r}") from None
            name = _check_name(name)
            if value is not None and not isinstance(value, str):
                value = _value_to_str(value)
            pairs.append((name, value))
        for key, value in kwargs.items():
            name = _check_name(key[:-1] if key.endswith("_") and len(key) > 1 else key)
            pairs.extend(_kwarg_pairs(name, value))
        self.attr_pairs = pairs

    def get_attributes(self, name: str) -> list[AttrValue]:
        """All values of the attribute ``name`` in order (``None`` for bare
        flags)."""
        name = name.lower()
        return [v for (n, v) in self.attr_pairs if n == name]

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of the attribute ``name``, or ``default`` if the
        link does not have it (a bare flag's value is ``None``)."""
        name = name.lower()
        for n, v in self.attr_pairs:
            if n == name:
                return v
        return default

    def __contains__(self, name: str) -> bool:
        name = name.lower()
        return any(n == name for (n, _) in self.attr_pairs)

    def __getattr__(self, name: str) -> Any:
        # Convenience like link.rt or link.if_; only reached for names that
        # are not slots or methods.
        if name.startswith("__") or name in ("href", "attr_pairs"):
            raise AttributeError(name)
        key = name[:-1] if name.endswith("_") and len(name) > 1 else name
        key = key.lower()
        for n, v in self.attr_pairs:
            if n == key:
                return v
        raise AttributeError(f"link {self.href!r} has no attribute {key!r}")

    def __str__(self) -> str:
        parts = ["<", self.href, ">"]
        for name, value in self.attr_pairs:
            parts.append(";")
            parts.append(name)
            if value is None:
                continue
            parts.append("=")
            if name in _ALWAYS_QUOTED:
                parts.append(_quote(value))
            elif name in _CARDINAL_ATTRS:
                parts.append(value if _CARDINAL.match(value) else _quote(value))
            elif _is_ptoken(value):
                parts.append(value)
            else:
                parts.append(_quote(value))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"<Link {str(self)}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Link):
            return NotImplemented
        return self.href == other.href and self.attr_pairs == other.attr_pairs

    __hash__ = None  # type: ignore[assignment]  # mutable


class LinkFormat:
    """An ordered collection of :class:`Link` objects; ``str()`` gives the
    ``application/link-format`` serialization.

    >>> lf = LinkFormat([Link("/time", obs=None), Link("/.well-known/core", ct=40)])
    >>> str(lf)
    '</time>;obs,</.well-known/core>;ct=40'
    >>> parse(str(lf)) == lf
    True
    """

    __slots__ = ("links",)

    def __init__(self, links: Optional[Iterable[Link]] = None):
        self.links: list[Link] = list(links) if links is not None else []

    @classmethod
    def coerce(cls, obj: Any) -> "LinkFormat":
        """Turn what an application hands over into a LinkFormat.

        Accepted are LinkFormat objects (returned as they are), text or
        UTF-8 bytes in link format (parsed), and objects shaped like the
        LinkHeader package's ``LinkHeader`` (anything with ``.links`` whose
        items have ``.href`` and ``.attr_pairs``), which are converted
        without importing that package."""
        if isinstance(obj, LinkFormat):
            return obj
        if isinstance(obj, (str, bytes, bytearray)):
            return parse(obj)
        links = getattr(obj, "links", None)
        if links is None:
            raise TypeError(f"can not use {type(obj).__name__} as a link format document")
        converted = []
        for link in links:
            if isinstance(link, Link):
                converted.append(link)
            else:
                converted.append(Link(link.href, [tuple(p) for p in getattr(link, "attr_pairs", ())]))
        return cls(converted)

    def links_by_attr_pairs(self, requested: Iterable[tuple[str, AttrValue]]) -> list[Link]:
        """The links that have every one of the given ``(name, value)``
        attribute pairs."""
        wanted = [(n.lower(), v) for (n, v) in requested]
        return [link for link in self.links if all(pair in link.attr_pairs for pair in wanted)]

    def __str__(self) -> str:
        return ",".join(str(link) for link in self.links)

    def __repr__(self) -> str:
        return f"<LinkFormat with {len(self.links)} link(s)>"

    def __iter__(self) -> Iterator[Link]:
        return iter(self.links)

    def __len__(self) -> int:
        return len(self.links)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LinkFormat):
            return NotImplemented
        return self.links == other.links

    __hash__ = None  # type: ignore[assignment]  # mutable


class _LinkFormatParser:
    """Recursive-descent parser over one string; every failure is a
    ValueError that names the offset."""

    __slots__ = ("text", "pos", "end")

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.end = len(text)

    def fail(self, reason: str) -> ValueError:
        return ValueError(f"invalid link format at offset {self.pos}: {reason}")

    def skip_ws(self) -> None:
        text, pos, end = self.text, self.pos, self.end
        while pos < end and text[pos] in _WHITESPACE:
            pos += 1
        self.pos = pos

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.end else ""

    def document(self) -> LinkFormat:
        links = []
        self.skip_ws()
        if self.pos == self.end:
            return LinkFormat()
        while True:
            links.append(self.link())
            self.skip_ws()
            c = self.peek()
            if not c:
                return LinkFormat(links)
            if c != ",":
                raise self.fail(f"expected ',' or ';', found {c!r}")
            self.pos += 1
            self.skip_ws()

    def link(self) -> Link:
        if self.peek() != "<":
            raise self.fail("expected '<' starting a link")
        close = self.text.find(">", self.pos + 1)
        if close == -1:
            raise self.fail("unterminated '<' (no '>')")
        href = self.text[self.pos + 1 : close]
        bad = _bad_href_char(href)
        if bad is not None:
            self.pos += 1 + href.index(bad)
            raise self.fail(f"character {bad!r} not allowed in a URI reference")
        self.pos = close + 1
        pairs = []
        while True:
            self.skip_ws()
            if self.peek() != ";":
                break
            self.pos += 1
            self.skip_ws()
            pairs.append(self.param())
        return Link(href, pairs)

    def param(self) -> tuple[str, AttrValue]:
        text, start = self.text, self.pos
        pos = start
        while pos < self.end and text[pos] in _PARMNAME_CHARS:
            pos += 1
        if pos == start:
            c = self.peek()
            raise self.fail(f"expected a parameter name, found {c!r}" if c else "expected a parameter name")
        name = text[start:pos].lower()
        self.pos = pos
        self.skip_ws()
        if self.peek() != "=":
            return (name, None)
        self.pos += 1
        self.skip_ws()
        if self.peek() == '"':
            return (name, self.quoted())
        start = pos = self.pos
        while pos < self.end and text[pos] in _PTOKEN_CHARS:
            pos += 1
        if pos == start:
            c = self.peek()
            raise self.fail(f"expected a value for {name!r}, found {c!r}" if c else f"expected a value for {name!r}")
        self.pos = pos
        return (name, text[start:pos])

    def quoted(self) -> str:
        text, end = self.text, self.end
        pos = self.pos + 1
        out: list[str] = []
        while pos < end:
            c = text[pos]
            if c == '"':
                self.pos = pos + 1
                return "".join(out)
            if c == "\\":
                pos += 1
                if pos == end:
                    break
                c = text[pos]
            out.append(c)
            pos += 1
        self.pos = end
        raise self.fail("unterminated quoted string")


def _char_class(chars: Iterable[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


_WS = r"[ \t\r\n]*"
_NAME = _char_class(_PARMNAME_CHARS) + "+"
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_TOKEN = "(" + _char_class(_PTOKEN_CHARS) + "+)"
# One link-value with its separator (or the end of the text) in one match;
# its parameters are captured as one piece and split by _FAST_PARAM.
_FAST_PARAM = re.compile(rf";{_WS}({_NAME})(?:{_WS}(=){_WS}(?:{_QUOTED}|{_TOKEN}))?", re.DOTALL)
_FAST_LINK = re.compile(
    rf"{_WS}<([^<>\x00-\x20\x7f]*)>{_WS}((?:{_FAST_PARAM.pattern}{_WS})*)(?:,|\Z)", re.DOTALL
)
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def _trusted_link(href: str, pairs: list[tuple[str, AttrValue]]) -> Link:
    # for values the parser has already checked
    link = Link.__new__(Link)
    link.href = href
    link.attr_pairs = pairs
    return link


def _parse_fast(text: str) -> Optional[LinkFormat]:
    """The common case of :func:`parse` in a few regular expression calls
    per link: a document that is well-formed everywhere. Returns None for
    anything else (including the empty document), which the exact parser
    then takes on; where this returns a result, it equals that parser's
    (tests/test_rd_linkformat.py checks this with arbitrary input)."""
    links = []
    pos, end = 0, len(text)
    match = _FAST_LINK.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            return None
        pairs: list[tuple[str, AttrValue]] = []
        params = m.group(2)
        if params:
            for name, equals, quoted, token in _FAST_PARAM.findall(params):
                if not equals:
                    value: AttrValue = None
                elif token:
                    value = token
                elif "\\" in quoted:
                    value = _ESCAPED.sub(r"\1", quoted)
                else:
                    value = quoted
                pairs.append((name.lower(), value))
        links.append(_trusted_link(m.group(1), pairs))
        pos = m.end()
        if pos == end and text[pos - 1] == ",":
            return None  # a trailing comma: the exact parser explains it
    return LinkFormat(links) if links else None


def parse(linkformat: Union[str, bytes, bytearray]) -> LinkFormat:
    """Parse an ``application/link-format`` document.

    Whitespace around separators is tolerated (as in HTTP Link headers);
    everything else must follow RFC 6690. Raises :class:`ValueError` for
    malformed input (including bytes that are not UTF-8).

    >>> doc = parse('</sensors/temp>;rt="temperature-c";if="sensor", </t>;obs')
    >>> [link.href for link in doc]
    ['/sensors/temp', '/t']
    >>> doc.links[0].rt, doc.links[1].get_attributes("obs")
    ('temperature-c', [None])
    >>> parse('</a>;rt=')
    Traceback (most recent call last):
    ...
    ValueError: invalid link format at offset 8: expected a value for 'rt'
    """
    if isinstance(linkformat, (bytes, bytearray)):
        try:
            linkformat = bytes(linkformat).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"link format document is not UTF-8: {e}") from None
    if not isinstance(linkformat, str):
        raise TypeError(f"parse() needs str or bytes, not {type(linkformat).__name__}")
    fast = _parse_fast(linkformat)
    if fast is not None:
        return fast
    return _LinkFormatParser(linkformat).document()
