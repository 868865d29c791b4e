"""The resource directory's registrations in an SQLite database (module
:mod:`sqlite3` of the standard library).

:class:`SQLiteStorage` implements :class:`.storage.Storage`: one row per
registration, holding the registration parameters and the registered
links as text, from which the directory rebuilds everything else when it
starts.

Durability: every change is one transaction (``BEGIN IMMEDIATE`` ...
``COMMIT``), so a process killed at any moment leaves each registration
either complete or absent. The database runs in write-ahead-log mode with
``synchronous=NORMAL``: a crash of the process loses nothing that was
committed; a power loss may lose the last transactions, never consistency.
A database file is opened exclusively (a second directory on the same
file fails with :class:`DatabaseInUse`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from typing import Iterator

from .model import Registration
from .storage import Storage

__all__ = ["SQLiteStorage", "DatabaseInUse", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
"""Version of the database layout (kept in ``PRAGMA user_version``)."""

_SCHEMA = """
CREATE TABLE registration (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    ep TEXT NOT NULL,
    d TEXT NOT NULL,
    base TEXT NOT NULL,
    base_explicit INTEGER NOT NULL,
    lt INTEGER NOT NULL,
    expires REAL NOT NULL,
    source TEXT NOT NULL,
    attributes TEXT NOT NULL,
    links TEXT NOT NULL,
    UNIQUE (ep, d)
);
"""

_COLUMNS = "name, ep, d, base, base_explicit, lt, expires, source, attributes, links"


class DatabaseInUse(sqlite3.OperationalError):
    """The database file is held by another process (another directory)."""


def _registration_from_row(row) -> Registration:
    name, ep, d, base, base_explicit, lt, expires, source, attributes, links = row
    return Registration(
        name=name,
        ep=ep,
        d=d or None,
        base=base,
        base_explicit=bool(base_explicit),
        lt=lt,
        expires=expires,
        source=source,
        attributes=tuple((n, v) for n, v in json.loads(attributes)),
        links=links,
    )


class SQLiteStorage(Storage):
    """Registrations in the SQLite database at ``path`` (created if it does
    not exist; ``":memory:"`` for one that lives as long as the object).

    Raises :class:`DatabaseInUse` if another process has the file open,
    and :class:`sqlite3.DatabaseError` for a file that is not a database of
    this layout."""

    def __init__(self, path: str = ":memory:"):
        self.path = path
        # A short busy timeout: the only other user of the file can be
        # another directory, which holds it for as long as it runs.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=0.2)
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise

    def _setup(self) -> None:
        db = self._db
        if self.path != ":memory:":
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            try:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                # takes the exclusive lock right away
                db.execute("BEGIN IMMEDIATE")
                db.execute("COMMIT")
            except sqlite3.OperationalError as e:
                if "locked" in str(e):
                    raise DatabaseInUse("it is in use by another process") from None
                raise
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise sqlite3.DatabaseError(f"{self.path!r} is a database of something else than a resource directory")
            try:
                db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        elif version != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"{self.path!r} has resource directory data of layout version {version}, "
                f"this version of aiocoap reads version {SCHEMA_VERSION}"
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def load(self) -> Iterator[Registration]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM registration ORDER BY id").fetchall()
        return (_registration_from_row(row) for row in rows)

    def save(self, registration: Registration) -> None:
        r = registration
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO registration ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET ep = excluded.ep, d = excluded.d, base = excluded.base, "
                "base_explicit = excluded.base_explicit, lt = excluded.lt, expires = excluded.expires, "
                "source = excluded.source, attributes = excluded.attributes, links = excluded.links",
                (
                    r.name,
                    r.ep,
                    r.d or "",
                    r.base,
                    int(r.base_explicit),
                    r.lt,
                    r.expires,
                    r.source,
                    json.dumps(r.attributes),
                    r.links,
                ),
            )

    def refresh(self, name: str, expires: float) -> None:
        with self._transaction() as db:
            db.execute("UPDATE registration SET expires = ? WHERE name = ?", (expires, name))

    def delete(self, names: list[str]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM registration WHERE name = ?", [(name,) for name in names])

    def close(self) -> None:
        self._db.close()
