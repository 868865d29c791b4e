"""Reference resolution (RFC 3986 §5.2) for any URI scheme.

:func:`urllib.parse.urljoin` resolves only for the schemes it knows
(``coap`` and friends are not among them), so the RD brings its own: the
registered links are resolved against a registration's base URI with the
rules of RFC 3986, whatever the scheme. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

__all__ = ["resolve", "split", "is_absolute", "Resolver"]

# RFC 3986 Appendix B, with the groups numbered as there.
_SPLIT = re.compile(r"^(([^:/?#]+):)?(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?")

_Parts = Tuple[Optional[str], Optional[str], str, Optional[str], Optional[str]]


def split(uri: str) -> _Parts:
    """``(scheme, authority, path, query, fragment)`` of a URI reference;
    absent components are None (an empty path is ``""``).

    >>> split("coap://[::1]:61616/temp?x#f")
    ('coap', '[::1]:61616', '/temp', 'x', 'f')
    >>> split("/temp")
    (None, None, '/temp', None, None)
    """
    m = _SPLIT.match(uri)
    assert m is not None  # the expression matches every string
    return (m.group(2), m.group(4), m.group(5), m.group(7), m.group(9))


def is_absolute(uri: str) -> bool:
    """True for a URI with a scheme (RFC 3986 §4.3 absolute-URI, fragments
    allowed).

    >>> is_absolute("coap://host"), is_absolute("/path"), is_absolute("a:b")
    (True, False, True)
    """
    scheme = split(uri)[0]
    return scheme is not None and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) is not None


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 §5.2.4, working on the segments rather than the string
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    absolute = path.startswith("/")
    if absolute:
        segments = segments[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    return "/" + result if absolute else result


def _merge(base_authority: Optional[str], base_path: str, ref_path: str) -> str:
    # RFC 3986 §5.2.3
    if base_authority is not None and base_path == "":
        return "/" + ref_path
    return base_path[: base_path.rfind("/") + 1] + ref_path


def _join(scheme, authority, path, query, fragment) -> str:
    # RFC 3986 §5.3
    parts = []
    if scheme is not None:
        parts.append(scheme + ":")
    if authority is not None:
        parts.append("//" + authority)
    parts.append(path)
    if query is not None:
        parts.append("?" + query)
    if fragment is not None:
        parts.append("#" + fragment)
    return "".join(parts)


def resolve(base: str, reference: str) -> str:
    """The target URI of ``reference`` resolved against the absolute URI
    ``base`` (RFC 3986 §5.2.2, strict parser).

    >>> resolve("coap://[2001:db8::1]:61616", "/sensors/temp")
    'coap://[2001:db8::1]:61616/sensors/temp'
    >>> resolve("coap://h/a/b", "../c")
    'coap://h/c'
    >>> resolve("coap://h/a", "http://example.com/x")
    'http://example.com/x'
    """
    r_scheme, r_authority, r_path, r_query, r_fragment = split(reference)
    if r_scheme is not None:
        return _join(r_scheme, r_authority, _remove_dot_segments(r_path), r_query, r_fragment)
    b_scheme, b_authority, b_path, b_query, _ = split(base)
    if r_authority is not None:
        return _join(b_scheme, r_authority, _remove_dot_segments(r_path), r_query, r_fragment)
    if r_path == "":
        return _join(b_scheme, b_authority, b_path, r_query if r_query is not None else b_query, r_fragment)
    if r_path.startswith("/"):
        path = _remove_dot_segments(r_path)
    else:
        path = _remove_dot_segments(_merge(b_authority, b_path, r_path))
    return _join(b_scheme, b_authority, path, r_query, r_fragment)


class Resolver:
    """:func:`resolve` against one base, for many references: the base is
    split once, and absolute paths without dot segments (the common case
    in link format) are joined without further parsing.

    >>> r = Resolver("coap://[2001:db8::1]:61616")
    >>> r("/sensors/temp"), r("//other/x"), r("./a/../b")
    ('coap://[2001:db8::1]:61616/sensors/temp', 'coap://other/x', 'coap://[2001:db8::1]:61616/b')
    """

    __slots__ = ("base", "_prefix")

    def __init__(self, base: str):
        self.base = base
        scheme, authority, _, _, _ = split(base)
        self._prefix = None
        if scheme is not None and authority is not None:
            self._prefix = f"{scheme}://{authority}"

    def __call__(self, reference: str) -> str:
        prefix = self._prefix
        if (
            prefix is not None
            and reference.startswith("/")
            and not reference.startswith("//")
            and "/." not in reference
            and "?" not in reference
            and "#" not in reference
        ):
            return prefix + reference
        return resolve(self.base, reference)
