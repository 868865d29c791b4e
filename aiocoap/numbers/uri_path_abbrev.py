"""Values of the Uri-Path-Abbrev option (draft-ietf-core-uri-path-abbrev):
a number that stands for a whole well-known path, so that a request for
``/.well-known/core`` needs one byte of options instead of eighteen.

The option is critical: a server that gets a value it does not know, or the
option together with Uri-Path, answers 4.02 Bad Option (the Context does
this before the site sees the request; the site sees the expanded path).

>>> path_of(0)
('.well-known', 'core')
>>> value_of(('.well-known', 'rd'))
1
>>> path_of(4711) is None
True
"""

from __future__ import annotations

from typing import Optional

__all__ = ["path_of", "value_of"]

# The values the draft assigns, while there is no IANA registry yet.
_PATHS: dict[int, tuple[str, ...]] = {
    0: (".well-known", "core"),
    1: (".well-known", "rd"),
    2: (".well-known", "edhoc"),
    301: (".well-known", "est", "crts"),
    302: (".well-known", "est", "sen"),
    303: (".well-known", "est", "sren"),
    304: (".well-known", "est", "skg"),
    305: (".well-known", "est", "skc"),
    306: (".well-known", "est", "att"),
    401: (".well-known", "brski", "es"),
    402: (".well-known", "brski", "rv"),
    403: (".well-known", "brski", "vs"),
}

_VALUES: dict[tuple[str, ...], int] = {path: value for value, path in _PATHS.items()}


def path_of(value: int) -> Optional[tuple[str, ...]]:
    """The path (as Uri-Path segments) a Uri-Path-Abbrev value stands for,
    or None for a value that is not known."""
    return _PATHS.get(value)


def value_of(path: tuple[str, ...]) -> Optional[int]:
    """The Uri-Path-Abbrev value that stands for ``path`` (a tuple of
    segments), or None if there is none."""
    return _VALUES.get(tuple(path))
