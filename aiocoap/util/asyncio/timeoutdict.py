"""A dictionary whose entries expire when they are not used for a while.

Expiry is coarse: an entry lives at least ``timeout`` seconds after it was
last set or read, and at most about twice that; one loop timer serves the
whole dictionary and only runs while it has entries.
"""

from __future__ import annotations

import asyncio
from typing import Generic, Iterator, Optional, TypeVar

__all__ = ["TimeoutDict", "K", "V"]

K = TypeVar("K")
V = TypeVar("V")


class TimeoutDict(Generic[K, V]):
    """A mapping of ``K`` to ``V`` whose items are dropped ``timeout`` to
    ``2 * timeout`` seconds after they were last set or read (with
    ``d[key]``; ``in`` and ``len`` do not count as use).

    It needs a running event loop when items are set. Changing
    :attr:`timeout` takes effect from the next expiry round on."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._items: dict[K, V] = {}
        # Keys used since the last expiry round; the others go at the next.
        self._used: set[K] = set()
        self._timer: Optional[asyncio.TimerHandle] = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} with {len(self._items)} item(s), timeout {self.timeout}s>"

    def __getitem__(self, key: K) -> V:
        value = self._items[key]
        self._used.add(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._items[key] = value
        self._used.add(key)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.timeout, self._expire)

    def __delitem__(self, key: K) -> None:
        del self._items[key]
        self._used.discard(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def get(self, key: K, default: Optional[V] = None) -> Optional[V]:
        if key in self._items:
            return self[key]
        return default

    def pop(self, key: K, *default: V) -> V:
        self._used.discard(key)
        return self._items.pop(key, *default)

    def clear(self) -> None:
        """Drop every item and the timer."""
        self._items.clear()
        self._used.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        used = self._used
        self._items = {k: v for k, v in self._items.items() if k in used}
        self._used = set()
        if self._items:
            self._timer = asyncio.get_running_loop().call_later(self.timeout, self._expire)
        else:
            self._timer = None
