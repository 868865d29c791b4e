"""An index of a table's keys by group, for tables whose entries must be
found by something other than their key: the message and token layers
find every exchange and observation of one remote this way when the
network reports an error for it, at a cost that grows with what that
remote has rather than with what everyone has (when many observers
vanish together, a scan of everything per error would add up to N x N).

>>> index = KeyIndex()
>>> index.add("a", ("a", 1)); index.add("a", ("a", 2)); index.add("b", ("b", 1))
>>> sorted(index.pop("a")), index.pop("a"), len(index)
([('a', 1), ('a', 2)], [], 1)
>>> index.discard("b", ("b", 1)); len(index)
0
"""

from __future__ import annotations

__all__ = ["KeyIndex"]

_ABSENT = object()


class _Keys(dict):
    """The keys of a group that has more than one (a type of its own, so
    that it is never taken for a single key; a dict, which CPython keeps
    more compact than a set)."""

    __slots__ = ()


class KeyIndex:
    """Keys by group. A group with a single key (the common case: one
    exchange or observation per remote) holds it bare, so an index of many
    such groups costs a dict slot per group and no container."""

    __slots__ = ("_groups",)

    def __init__(self) -> None:
        self._groups: dict = {}

    def __len__(self) -> int:
        """The number of groups with keys."""
        return len(self._groups)

    def add(self, group, key) -> None:
        groups = self._groups
        found = groups.get(group, _ABSENT)
        if found is _ABSENT:
            groups[group] = key
        elif type(found) is _Keys:
            found[key] = None
        elif found != key:
            groups[group] = _Keys(((found, None), (key, None)))

    def discard(self, group, key) -> None:
        groups = self._groups
        found = groups.get(group, _ABSENT)
        if found is _ABSENT:
            return
        if type(found) is _Keys:
            found.pop(key, None)
            if not found:
                del groups[group]
        elif found == key:
            del groups[group]

    def pop(self, group) -> list:
        """The keys of ``group``, which is forgotten."""
        found = self._groups.pop(group, _ABSENT)
        if found is _ABSENT:
            return []
        if type(found) is _Keys:
            return list(found)
        return [found]

    def clear(self) -> None:
        self._groups.clear()
