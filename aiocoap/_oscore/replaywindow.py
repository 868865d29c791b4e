"""The recipient's replay window (RFC 8613 §7.4).

A window only answers "was this sequence number seen, or is it too old";
when the window may be trusted at all (initialized empty for a new key,
restored from persistence, or recovered through Echo after state loss) is
decided by the security context that owns it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = ["ReplayWindow"]


class ReplayWindow:
    """Sliding window of fixed size over the peer's sequence numbers.

    The state is the lowest number still acceptable (the index) and an
    integer used as bitmap, in which bit *i* is set once ``index + i`` was
    seen. Numbers below the index are rejected; numbers beyond the window
    are accepted, and striking them out moves the window up:

    >>> w = ReplayWindow(32, lambda: None)
    >>> w.initialize_empty()
    >>> w.strike_out(5)
    >>> w.is_valid(3)
    True
    >>> w.is_valid(5)
    False
    >>> w.strike_out(0)
    >>> w.strike_out(1)
    >>> w.strike_out(2)
    >>> w.is_valid(1)
    False

    Once the newest seen number is a full window size ahead, older unseen
    numbers are rejected too:

    >>> w.is_valid(4)
    True
    >>> w.strike_out(35)
    >>> w.is_valid(4)
    True
    >>> w.strike_out(36)
    >>> w.is_valid(4)
    False

    Starting empty is only correct the first time a key is used; later runs
    must continue from :meth:`persist` output (or recover through Echo).
    ``strike_out_callback`` runs after every change, for owners that want to
    save each change durably (which costs a write per message).

    The class serves the :class:`SecurityContext` implementations; its
    interface may still change.
    """

    def __init__(self, size: int, strike_out_callback: Callable[[], Any]):
        if size < 1:
            raise ValueError("replay window size must be positive")
        self._size = size
        self.strike_out_callback = strike_out_callback
        self._index: Optional[int] = None
        self._entries = 0

    def __repr__(self) -> str:
        if self._index is None:
            return f"<{type(self).__name__} size {self._size}, uninitialized>"
        return (
            f"<{type(self).__name__} size {self._size}, lowest acceptable "
            f"{self._index}, seen bitfield {self._entries:#x}>"
        )

    @property
    def size(self) -> int:
        return self._size

    def is_initialized(self) -> bool:
        return self._index is not None

    def initialize_empty(self) -> None:
        """Start a window in which no number was seen yet (only for a key
        that was never used before)."""
        self._index = 0
        self._entries = 0

    def initialize_from_persisted(self, persisted: dict[str, Any]) -> None:
        """Restore the state :meth:`persist` returned; ValueError if it does
        not describe a window of this size."""
        try:
            index = persisted["index"]
            entries = persisted["entries"]
        except (KeyError, TypeError):
            raise ValueError("persisted replay window needs 'index' and 'entries'") from None
        for name, value in (("index", index), ("entries", entries)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"persisted replay window: {name} must be a non-negative integer")
        if entries >> self._size:
            raise ValueError("persisted replay window: entries exceed the window size")
        self._index = index
        self._entries = entries

    def initialize_from_freshlyseen(self, seen: int) -> None:
        """Set the window up from the sequence number of a message known to
        be fresh, i.e. sent by the peer after this side lost its state: that
        number and all below count as seen, all above as new."""
        self._index = seen + 1
        self._entries = 0
        self.strike_out_callback()

    def _require_initialized(self) -> int:
        if self._index is None:
            raise RuntimeError("replay window is not initialized")
        return self._index

    def is_valid(self, number: int) -> bool:
        index = self._require_initialized()
        if number < index:
            return False
        offset = number - index
        if offset >= self._size:
            return True
        return not (self._entries >> offset) & 1

    def strike_out(self, number: int) -> None:
        """Mark ``number`` as seen; it must be :meth:`is_valid`."""
        if not self.is_valid(number):
            raise ValueError(f"sequence number {number} is not valid in the replay window")
        index = self._index
        assert index is not None
        offset = number - index
        if offset >= self._size:
            # Move the window so that ``number`` is its newest entry.
            shift = offset - self._size + 1
            self._entries >>= shift
            self._index = index + shift
            offset -= shift
        self._entries |= 1 << offset
        self.strike_out_callback()

    def persist(self) -> dict[str, Any]:
        """The state as JSON-compatible dict, to be restored later with
        :meth:`initialize_from_persisted`."""
        self._require_initialized()
        return {"index": self._index, "entries": self._entries}
