"""Cryptographically strong random values (the standard library's
:mod:`secrets`, under the name the 0.4b2 manual documents), and
:class:`RandomChunks` for code that needs many short ones."""

import os
import weakref
from secrets import choice, randbelow, randbits, token_bytes, token_hex, token_urlsafe  # noqa: F401
from typing import Callable

__all__ = ["choice", "randbelow", "randbits", "token_bytes", "token_hex", "token_urlsafe", "RandomChunks"]

DEFAULT_BATCH = 256
"""How many values a :class:`RandomChunks` draws at a time by default."""

_pools: "weakref.WeakSet[RandomChunks]" = weakref.WeakSet()


class RandomChunks:
    """Unpredictable byte strings of ``size`` bytes each (one per call),
    cut from ``random_bytes`` (default :func:`secrets.token_bytes`) drawn
    for ``batch`` values at a time: one system call for many tokens or
    masking keys instead of one for each, which costs more than the rest
    of making the value.

    A child process forked after values were drawn starts from fresh bytes,
    so it never hands out the values its parent does.

    >>> chunks = RandomChunks(4, random_bytes=lambda n: bytes(range(n)), batch=2)
    >>> chunks(), chunks(), chunks()
    (b'\\x00\\x01\\x02\\x03', b'\\x04\\x05\\x06\\x07', b'\\x00\\x01\\x02\\x03')
    """

    __slots__ = ("_size", "_random_bytes", "_draw", "_pool", "_next", "__weakref__")

    def __init__(
        self, size: int, random_bytes: Callable[[int], bytes] = token_bytes, batch: int = DEFAULT_BATCH
    ) -> None:
        self._size = size
        self._random_bytes = random_bytes
        self._draw = size * batch
        self._pool = b""
        self._next = 0
        _pools.add(self)

    def __call__(self) -> bytes:
        start = self._next
        if start >= len(self._pool):
            self._pool = self._random_bytes(self._draw)
            start = 0
        end = self._next = start + self._size
        return self._pool[start:end]

    def discard(self) -> None:
        """Forget the values drawn but not handed out yet."""
        self._pool = b""
        self._next = 0


def _discard_all() -> None:
    for pool in list(_pools):
        pool.discard()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_discard_all)
