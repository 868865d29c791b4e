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

from typing import Any, Hashable, NoReturn

__all__ = ["KeyIndex"]

_ABSENT = object()


class _Keys(dict[Any, None]):
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
        self._groups: dict[Any, Any] = {}

    def __len__(self) -> int:
        """The number of groups with keys."""
        return len(self._groups)

    def add(self, group: Hashable, key: Hashable) -> None:
        groups = self._groups
        found = groups.get(group, _ABSENT)
        if found is _ABSENT:
            groups[group] = key
        elif type(found) is _Keys:
            found[key] = None
        elif found != key:
            groups[group] = _Keys(((found, None), (key, None)))

    def discard(self, group: Hashable, key: Hashable) -> None:
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

    def pop(self, group: Hashable) -> list[Any]:
        """The keys of ``group``, which is forgotten."""
        found = self._groups.pop(group, _ABSENT)
        if found is _ABSENT:
            return []
        if type(found) is _Keys:
            return list(found)
        return [found]

    def clear(self) -> None:
        self._groups.clear()


class GroupedDict(dict[Any, Any]):
    """A dict with tuple keys whose keys are also indexed by one of their
    items (the remote of a (token, remote) key, say), so that
    :meth:`pop_group` takes all entries of one group without a scan.

    Item assignment, ``del``, :meth:`pop` and :meth:`clear` keep the index;
    the other ways of changing a dict (``update``, ``setdefault``,
    ``popitem``) would not, and are refused.

    >>> table = GroupedDict(group_at=1)
    >>> table[("t1", "a")] = 1; table[("t2", "a")] = 2; table[("t1", "b")] = 3
    >>> sorted(table.pop_group("a")), dict(table)
    ([(('t1', 'a'), 1), (('t2', 'a'), 2)], {('t1', 'b'): 3})
    """

    __slots__ = ("_index", "_group_at")

    def __init__(self, *, group_at: int):
        super().__init__()
        self._index = KeyIndex()
        self._group_at = group_at

    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self._index.add(key[self._group_at], key)

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self, key)
        self._index.discard(key[self._group_at], key)

    _MISSING = object()

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        if key in self:
            self._index.discard(key[self._group_at], key)
            return dict.pop(self, key)
        if default is GroupedDict._MISSING:
            raise KeyError(key)
        return default

    def clear(self) -> None:
        dict.clear(self)
        self._index.clear()

    def pop_group(self, group: Hashable) -> list[tuple[Any, Any]]:
        """Remove the entries of ``group``; return them as (key, value)
        pairs."""
        return [(key, dict.pop(self, key)) for key in self._index.pop(group)]

    def _refused(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("GroupedDict keeps its index through item assignment, del, pop and clear only")

    update = setdefault = popitem = _refused
