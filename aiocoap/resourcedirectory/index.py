"""The resource directory's working set: every current registration, with
inverted indices over its search terms, in memory.

:class:`SearchIndex` answers lookups (RFC 9176 §6) by set operations on the
indices instead of scanning registrations, keeps the count of
registrations per source for the limits, and orders expiry times in a
heap, so that the next expiry is known without a scan and without a timer
per registration. The durable copy of the registrations lives in a
:class:`.storage.Storage`; the index is rebuilt from it at start.

Matching rules (the search terms are described in :mod:`.model`):

* in resource lookups, a link meets a filter if one of its own terms
  matches, or (for any filter but ``href``) a term of its registration;
* in endpoint lookups, a registration meets a filter if one of its own
  terms matches, or (for any filter but ``href``) a term of one of its
  links;
* all filters must be met. Results come in the order the registrations
  were first made (replacing one keeps its place), links in registered
  order; ``offset`` and ``limit`` cut a page out of that.

Cost: an exact filter is a dictionary lookup; a prefix or presence filter
looks at every distinct value the attribute has (not at every link).

Memory: per registration, the index keeps the registration and its links
as lookup serves them, plus one reference per search term in the inverted
indices; the search terms themselves are not kept but derived again (by the
function given at construction) when a registration is removed.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Callable, Iterable, Iterator, Optional, Sequence

from .model import Entry, Filter, Registration

__all__ = ["SearchIndex"]

_LinkId = tuple  # (registration sequence number, link position)


# The inverted indices map an attribute name to a dict of its values, and
# each value to what has it: the one item itself while there is only one
# (most hrefs are unique, and a set per link would cost more than the link),
# else a set of them.


def _as_set(found) -> set:
    return found if type(found) is set else {found}


def _matching(values: Optional[dict], f: Filter) -> Iterator:
    """What is stored under the values of one attribute that meet ``f``."""
    if not values:
        return
    if f.value is None:
        yield from values.values()
    elif not f.prefix:
        hit = values.get(f.value)
        if hit is not None:
            yield hit
    else:
        prefix = f.value
        for value, hit in values.items():
            if value.startswith(prefix):
                yield hit


def _add(index: dict, terms: Iterable, item) -> None:
    for name, value in terms:
        values = index.get(name)
        if values is None:
            values = index[name] = {}
        items = values.get(value)
        if items is None:
            values[value] = item
        elif type(items) is set:
            items.add(item)
        elif items != item:
            values[value] = {items, item}


def _discard(index: dict, terms: Iterable, item) -> None:
    for name, value in terms:
        values = index[name]
        items = values[value]
        if type(items) is set:
            items.discard(item)
            if len(items) > 1:
                continue
            if items:
                values[value] = next(iter(items))
                continue
        elif items != item:
            continue
        del values[value]
        if not values:
            del index[name]


def _page(ordered: Iterable, offset: int, limit: Optional[int]) -> list:
    return list(itertools.islice(ordered, offset, None if limit is None else offset + limit))


class _Stored:
    __slots__ = ("registration", "rendered")

    def __init__(self, registration: Registration, rendered: tuple):
        self.registration = registration
        self.rendered = rendered


class SearchIndex:
    """Registrations by name, by endpoint and by search term.

    ``terms_of`` gives the :class:`.model.Entry` of a registration again
    (the same one it was added with); it is called when one is removed."""

    def __init__(self, terms_of: Callable[[Registration], Entry]) -> None:
        self._terms_of = terms_of
        self._by_name: dict[str, int] = {}
        # insertion order is registration order: a replaced entry keeps its
        # key, new entries get higher numbers
        self._by_seq: dict[int, _Stored] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._sources: dict[str, int] = {}
        self._link_terms: dict[str, dict[str, set]] = {}
        self._registration_terms: dict[str, dict[str, set]] = {}
        self._expiry: list[tuple[float, str]] = []
        self._next_seq = itertools.count()

    # ------------------------------------------------------- contents

    def __len__(self) -> int:
        return len(self._by_seq)

    def entries(self) -> Iterator[Entry]:
        """The entries of every registration (derived anew), in
        registration order."""
        return iter([self._terms_of(stored.registration) for stored in self._by_seq.values()])

    def get(self, name: str) -> Optional[Registration]:
        """The registration of that name, or None."""
        seq = self._by_name.get(name)
        return self._by_seq[seq].registration if seq is not None else None

    def get_by_key(self, ep: str, d: Optional[str]) -> Optional[Registration]:
        """The registration of endpoint ``ep`` in sector ``d``, or None."""
        name = self._by_key.get((ep, d or ""))
        return self.get(name) if name is not None else None

    def count(self, source: Optional[str] = None) -> int:
        """How many registrations there are in total, or from ``source``."""
        if source is None:
            return len(self._by_seq)
        return self._sources.get(source, 0)

    def add(self, entry: Entry) -> None:
        """Index ``entry``, replacing the registration of the same name
        (keeping its place in the order)."""
        registration = entry.registration
        owner = self._by_key.get(registration.key)
        if owner is not None and owner != registration.name:
            raise ValueError(f"endpoint {registration.key} is registered as {owner!r} already")
        seq = self._by_name.get(registration.name)
        if seq is None:
            seq = self._by_name[registration.name] = next(self._next_seq)
        else:
            self._unindex(seq)
        self._by_seq[seq] = _Stored(registration, tuple(link.rendered for link in entry.links))
        self._by_key[registration.key] = registration.name
        self._sources[registration.source] = self._sources.get(registration.source, 0) + 1
        _add(self._registration_terms, entry.terms, seq)
        for position, link in enumerate(entry.links):
            _add(self._link_terms, link.terms, (seq, position))
        heapq.heappush(self._expiry, (registration.expires, registration.name))

    def _unindex(self, seq: int) -> None:
        registration = self._by_seq[seq].registration
        entry = self._terms_of(registration)
        del self._by_key[registration.key]
        left = self._sources[registration.source] - 1
        if left:
            self._sources[registration.source] = left
        else:
            del self._sources[registration.source]
        _discard(self._registration_terms, entry.terms, seq)
        for position, link in enumerate(entry.links):
            _discard(self._link_terms, link.terms, (seq, position))

    def remove(self, name: str) -> bool:
        """Forget a registration; False if there was none of that name."""
        seq = self._by_name.pop(name, None)
        if seq is None:
            return False
        self._unindex(seq)
        del self._by_seq[seq]
        return True

    # --------------------------------------------------------- expiry

    def refresh(self, name: str, expires: float) -> None:
        """Give a registration a new expiry time."""
        seq = self._by_name[name]
        self._by_seq[seq].registration.expires = expires
        heapq.heappush(self._expiry, (expires, name))

    def _drop_outdated(self) -> None:
        # heap items of registrations that were refreshed, replaced or
        # removed since they were pushed
        heap = self._expiry
        while heap:
            expires, name = heap[0]
            registration = self.get(name)
            if registration is not None and registration.expires == expires:
                return
            heapq.heappop(heap)

    def next_expiry(self) -> Optional[float]:
        """The earliest expiry time (None without registrations)."""
        self._drop_outdated()
        return self._expiry[0][0] if self._expiry else None

    def expire(self, now: float) -> list[str]:
        """Remove the registrations that expired by ``now``; their names."""
        removed: list[str] = []
        while True:
            self._drop_outdated()
            if not self._expiry or self._expiry[0][0] > now:
                return removed
            _, name = heapq.heappop(self._expiry)
            self.remove(name)
            removed.append(name)

    # -------------------------------------------------------- lookups

    def _links_meeting(self, f: Filter) -> set:
        hits: set = set()
        for found in _matching(self._link_terms.get(f.name), f):
            hits |= _as_set(found)
        if f.name != "href":
            by_seq = self._by_seq
            for found in _matching(self._registration_terms.get(f.name), f):
                for seq in _as_set(found):
                    hits.update((seq, position) for position in range(len(by_seq[seq].rendered)))
        return hits

    def _registrations_meeting(self, f: Filter) -> set:
        hits: set = set()
        for found in _matching(self._registration_terms.get(f.name), f):
            hits |= _as_set(found)
        if f.name != "href":
            for found in _matching(self._link_terms.get(f.name), f):
                hits.update(seq for seq, _ in _as_set(found))
        return hits

    @staticmethod
    def _intersection(sets: list) -> set:
        sets.sort(key=len)
        result = sets[0]
        for other in sets[1:]:
            result = result & other
            if not result:
                break
        return result

    def lookup_resources(self, filters: Sequence[Filter], offset: int = 0, limit: Optional[int] = None) -> list[str]:
        """The rendered links that meet all filters (one page of them)."""
        by_seq = self._by_seq
        if not filters:
            everything = (rendered for stored in by_seq.values() for rendered in stored.rendered)
            return _page(everything, offset, limit)
        hits = self._intersection([self._links_meeting(f) for f in filters])
        return [by_seq[seq].rendered[position] for seq, position in _page(sorted(hits), offset, limit)]

    def lookup_endpoints(
        self, filters: Sequence[Filter], offset: int = 0, limit: Optional[int] = None
    ) -> list[Registration]:
        """The registrations that meet all filters (one page of them)."""
        by_seq = self._by_seq
        if not filters:
            return _page((stored.registration for stored in by_seq.values()), offset, limit)
        hits = self._intersection([self._registrations_meeting(f) for f in filters])
        return [by_seq[seq].registration for seq in _page(sorted(hits), offset, limit)]
