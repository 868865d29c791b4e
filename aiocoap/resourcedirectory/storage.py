"""Where the resource directory keeps its registrations.

The directory core (:mod:`.directory`) talks to its storage only through
:class:`Storage`, a small synchronous interface: another database is
plugged in by implementing it. Two implementations come with the library:

* :class:`aiocoap.resourcedirectory.sqlite.SQLiteStorage`, the one the
  ``aiocoap-rd`` program uses: registrations in an SQLite database (a file,
  or ``:memory:``), searched through indices;
* :class:`MemoryStorage`, plain Python containers without persistence, a
  short reference of the semantics that the tests run side by side with the
  SQLite storage.

Rules every storage follows:

* Every method call is atomic: after a crash, a registration is either
  stored completely (with all its links and terms) or not at all.
* Registrations are ordered by the time they were first stored; replacing
  a registration (:meth:`Storage.store` with a name that exists) keeps its
  place. Lookups return results in that order, links of one registration
  in registered order; ``offset`` and ``limit`` cut a page out of it.
* Matching is by search terms only (see :mod:`.model`): in resource
  lookups, a link meets a filter if one of its own terms matches or (for
  any filter but ``href``) one of its registration's terms; in endpoint
  lookups, a registration meets a filter if one of its own terms matches
  or (for any filter but ``href``) a term of one of its links. All filters
  must be met.
* Expiry is driven by the caller's clock: :meth:`Storage.expire` removes
  what expired at ``now``; a storage never looks at a clock itself.
"""

from __future__ import annotations

import abc
import heapq
from typing import Optional, Sequence

from .model import Entry, Filter, Registration, term_matches

__all__ = ["Storage", "MemoryStorage"]


class Storage(metaclass=abc.ABCMeta):
    """The interface between the directory core and a database."""

    @abc.abstractmethod
    def store(self, entry: Entry) -> None:
        """Keep ``entry``, replacing the registration of the same name (if
        any) with everything that belonged to it."""

    @abc.abstractmethod
    def refresh(self, name: str, expires: float) -> bool:
        """Set a new expiry time on a registration; False if it does not
        exist."""

    @abc.abstractmethod
    def get(self, name: str) -> Optional[Registration]:
        """The registration of that name, or None."""

    @abc.abstractmethod
    def get_by_key(self, ep: str, d: Optional[str]) -> Optional[Registration]:
        """The registration of the endpoint ``ep`` in sector ``d``, or
        None."""

    @abc.abstractmethod
    def delete(self, name: str) -> bool:
        """Remove a registration; False if it did not exist."""

    @abc.abstractmethod
    def expire(self, now: float) -> int:
        """Remove every registration whose expiry time is ``now`` or
        earlier; return how many there were."""

    @abc.abstractmethod
    def next_expiry(self) -> Optional[float]:
        """The earliest expiry time of all registrations (None if there are
        none)."""

    @abc.abstractmethod
    def count(self, source: Optional[str] = None) -> int:
        """How many registrations there are in total, or from ``source``."""

    @abc.abstractmethod
    def lookup_resources(self, filters: Sequence[Filter], offset: int = 0, limit: Optional[int] = None) -> list[str]:
        """The rendered links that meet all filters (one page of them)."""

    @abc.abstractmethod
    def lookup_endpoints(
        self, filters: Sequence[Filter], offset: int = 0, limit: Optional[int] = None
    ) -> list[Registration]:
        """The registrations that meet all filters (one page of them)."""

    def close(self) -> None:
        """Release the database; the storage is not used afterwards."""


def _page(items, offset: int, limit: Optional[int]) -> list:
    result = []
    for item in items:
        if offset:
            offset -= 1
            continue
        if limit is not None and len(result) >= limit:
            break
        result.append(item)
    return result


class MemoryStorage(Storage):
    """Registrations in Python containers, lost when the process ends.

    Lookups scan every registration; this storage is the executable
    statement of the matching rules more than a fast database."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._sources: dict[str, int] = {}
        # (expires, name) of every stored expiry time; outdated pairs are
        # skipped when they come up
        self._expiry: list[tuple[float, str]] = []

    def _forget(self, name: str) -> Optional[Entry]:
        entry = self._entries.pop(name, None)
        if entry is not None:
            registration = entry.registration
            del self._by_key[registration.key]
            left = self._sources[registration.source] - 1
            if left:
                self._sources[registration.source] = left
            else:
                del self._sources[registration.source]
        return entry

    def store(self, entry: Entry) -> None:
        registration = entry.registration
        old = self._entries.get(registration.name)
        if old is not None:
            del self._by_key[old.registration.key]
            self._sources[old.registration.source] -= 1
            if not self._sources[old.registration.source]:
                del self._sources[old.registration.source]
        owner = self._by_key.get(registration.key)
        if owner is not None and owner != registration.name:
            raise ValueError(f"endpoint {registration.key} is already registered as {owner!r}")
        self._entries[registration.name] = entry
        self._by_key[registration.key] = registration.name
        self._sources[registration.source] = self._sources.get(registration.source, 0) + 1
        heapq.heappush(self._expiry, (registration.expires, registration.name))

    def refresh(self, name: str, expires: float) -> bool:
        entry = self._entries.get(name)
        if entry is None:
            return False
        entry.registration.expires = expires
        heapq.heappush(self._expiry, (expires, name))
        return True

    def get(self, name: str) -> Optional[Registration]:
        entry = self._entries.get(name)
        return entry.registration if entry is not None else None

    def get_by_key(self, ep: str, d: Optional[str]) -> Optional[Registration]:
        name = self._by_key.get((ep, d or ""))
        return self._entries[name].registration if name is not None else None

    def delete(self, name: str) -> bool:
        return self._forget(name) is not None

    def _drop_outdated(self) -> None:
        heap = self._expiry
        while heap:
            expires, name = heap[0]
            entry = self._entries.get(name)
            if entry is not None and entry.registration.expires == expires:
                return
            heapq.heappop(heap)

    def expire(self, now: float) -> int:
        removed = 0
        while True:
            self._drop_outdated()
            if not self._expiry or self._expiry[0][0] > now:
                return removed
            _, name = heapq.heappop(self._expiry)
            self._forget(name)
            removed += 1

    def next_expiry(self) -> Optional[float]:
        self._drop_outdated()
        return self._expiry[0][0] if self._expiry else None

    def count(self, source: Optional[str] = None) -> int:
        if source is None:
            return len(self._entries)
        return self._sources.get(source, 0)

    def lookup_resources(self, filters: Sequence[Filter], offset: int = 0, limit: Optional[int] = None) -> list[str]:
        def hits():
            for entry in self._entries.values():
                for link in entry.links:
                    if all(
                        any(term_matches(t, f) for t in link.terms)
                        or (f.name != "href" and any(term_matches(t, f) for t in entry.terms))
                        for f in filters
                    ):
                        yield link.rendered

        return _page(hits(), offset, limit)

    def lookup_endpoints(
        self, filters: Sequence[Filter], offset: int = 0, limit: Optional[int] = None
    ) -> list[Registration]:
        def hits():
            for entry in self._entries.values():
                if all(
                    any(term_matches(t, f) for t in entry.terms)
                    or (f.name != "href" and any(term_matches(t, f) for link in entry.links for t in link.terms))
                    for f in filters
                ):
                    yield entry.registration

        return _page(hits(), offset, limit)
