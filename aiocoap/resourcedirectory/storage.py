"""Where the resource directory keeps its registrations durably.

The directory core (:mod:`.directory`) answers every request from its
in-memory :class:`.index.SearchIndex` and writes every change through to a
:class:`Storage`; at start, it reads the registrations back from there.
That is all a storage does, so another database is plugged in by
implementing these few methods. Two implementations come with the library:

* :class:`aiocoap.resourcedirectory.sqlite.SQLiteStorage`, which the
  ``aiocoap-rd`` program uses: an SQLite database (a file, or
  ``:memory:``);
* :class:`MemoryStorage`: a dictionary, for directories that need not
  survive their process.

Rules every storage follows:

* Every method call is atomic: after a crash, a registration is either
  stored completely (with all its links) or not at all.
* :meth:`Storage.load` returns the registrations in the order they were
  first saved (saving one under a name that exists replaces it and keeps
  its place).
* Times are the caller's: a storage never looks at a clock itself.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Iterator

from .model import Registration

__all__ = ["Storage", "MemoryStorage"]


class Storage(metaclass=abc.ABCMeta):
    """The interface between the directory core and a database."""

    @abc.abstractmethod
    def load(self) -> Iterator[Registration]:
        """Every stored registration, in the order they were first saved."""

    @abc.abstractmethod
    def save(self, registration: Registration) -> None:
        """Keep ``registration``, replacing the one of the same name."""

    @abc.abstractmethod
    def refresh(self, name: str, expires: float) -> None:
        """Set a new expiry time on a stored registration."""

    @abc.abstractmethod
    def delete(self, names: list[str]) -> None:
        """Remove the registrations of these names (all or none)."""

    def close(self) -> None:
        """Release the database; the storage is not used afterwards."""


class MemoryStorage(Storage):
    """Registrations in a dictionary, lost when the process ends."""

    def __init__(self) -> None:
        self._registrations: dict[str, Registration] = {}

    def load(self) -> Iterator[Registration]:
        return iter([dataclasses.replace(r) for r in self._registrations.values()])

    def save(self, registration: Registration) -> None:
        self._registrations[registration.name] = dataclasses.replace(registration)

    def refresh(self, name: str, expires: float) -> None:
        self._registrations[name].expires = expires

    def delete(self, names: list[str]) -> None:
        for name in names:
            self._registrations.pop(name, None)
