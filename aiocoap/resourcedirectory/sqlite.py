"""The resource directory's registrations in an SQLite database (module
:mod:`sqlite3` of the standard library).

:class:`SQLiteStorage` implements :class:`.storage.Storage`. The database
holds, per registration, one row of parameters (with the registered links
as text, from which everything else can be derived again), one row per
link as resource lookup serves it, and one row per search term; an index
over the terms lets lookups touch only what they find, and an index over
the expiry times gives the next expiry without a scan. Counters kept by
triggers give the number of registrations in total and per source in
constant time.

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
from typing import Iterator, Optional, Sequence

from .model import Entry, Filter, Registration
from .storage import Storage

__all__ = ["SQLiteStorage", "DatabaseInUse", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
"""Version of the database layout (kept in ``PRAGMA user_version``)."""

# position of the registration's own terms in the term table
_REGISTRATION = -1

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
CREATE INDEX registration_expiry ON registration (expires);
CREATE TABLE link (
    registration INTEGER NOT NULL REFERENCES registration (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    rendered TEXT NOT NULL,
    PRIMARY KEY (registration, position)
) WITHOUT ROWID;
CREATE TABLE term (
    registration INTEGER NOT NULL REFERENCES registration (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (registration, position, name, value)
) WITHOUT ROWID;
CREATE INDEX term_search ON term (name, value);
CREATE TABLE source (
    source TEXT PRIMARY KEY,
    registrations INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE total (registrations INTEGER NOT NULL);
INSERT INTO total VALUES (0);
CREATE TRIGGER registration_added AFTER INSERT ON registration BEGIN
    INSERT INTO source VALUES (new.source, 1)
        ON CONFLICT (source) DO UPDATE SET registrations = registrations + 1;
    UPDATE total SET registrations = registrations + 1;
END;
CREATE TRIGGER registration_removed AFTER DELETE ON registration BEGIN
    UPDATE source SET registrations = registrations - 1 WHERE source = old.source;
    DELETE FROM source WHERE source = old.source AND registrations = 0;
    UPDATE total SET registrations = registrations - 1;
END;
CREATE TRIGGER registration_moved AFTER UPDATE OF source ON registration
WHEN old.source != new.source BEGIN
    UPDATE source SET registrations = registrations - 1 WHERE source = old.source;
    DELETE FROM source WHERE source = old.source AND registrations = 0;
    INSERT INTO source VALUES (new.source, 1)
        ON CONFLICT (source) DO UPDATE SET registrations = registrations + 1;
END;
"""

_COLUMNS = "name, ep, d, base, base_explicit, lt, expires, source, attributes, links"


class DatabaseInUse(sqlite3.OperationalError):
    """The database file is held by another process (another directory)."""


def _successor(prefix: str) -> Optional[str]:
    """The smallest string greater than every string that starts with
    ``prefix`` (None if there is none), in code point order, which is
    SQLite's order of UTF-8 text.

    >>> _successor("temp"), _successor("a\\U0010ffff"), _successor("")
    ('temq', 'b', None)
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if 0xD800 <= code <= 0xDFFF:
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


def _value_condition(f: Filter, column: str) -> tuple[str, list]:
    if f.value is None:
        return "", []
    if not f.prefix:
        return f" AND {column} = ?", [f.value]
    upper = _successor(f.value)
    if upper is None:
        return "", []
    return f" AND {column} >= ? AND {column} < ?", [f.value, upper]


def _link_hits(f: Filter) -> tuple[str, list]:
    """SQL for the (registration, position) of the links meeting ``f``."""
    condition, values = _value_condition(f, "value")
    own = f"SELECT registration, position FROM term WHERE name = ? AND position >= 0{condition}"
    if f.name == "href":
        return own, [f.name, *values]
    inherited_condition, _ = _value_condition(f, "term.value")
    inherited = (
        "SELECT link.registration, link.position FROM term JOIN link ON link.registration = term.registration "
        f"WHERE term.name = ? AND term.position = {_REGISTRATION}{inherited_condition}"
    )
    return f"SELECT * FROM ({own} UNION {inherited})", [f.name, *values, f.name, *values]


def _registration_hits(f: Filter) -> tuple[str, list]:
    """SQL for the ids of the registrations meeting ``f``."""
    condition, values = _value_condition(f, "value")
    if f.name == "href":
        return f"SELECT registration FROM term WHERE name = ? AND position = {_REGISTRATION}{condition}", [
            f.name,
            *values,
        ]
    return f"SELECT registration FROM term WHERE name = ?{condition}", [f.name, *values]


def _intersection(parts: list[tuple[str, list]]) -> tuple[str, list]:
    sql = " INTERSECT ".join(part for part, _ in parts)
    values = [v for _, part_values in parts for v in part_values]
    return sql, values


def _limit(offset: int, limit: Optional[int]) -> tuple[str, list]:
    return " LIMIT ? OFFSET ?", [-1 if limit is None else limit, offset]


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
        db.execute("PRAGMA foreign_keys = ON")
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

    def store(self, entry: Entry) -> None:
        r = entry.registration
        values = (
            r.ep,
            r.d or "",
            r.base,
            int(r.base_explicit),
            r.lt,
            r.expires,
            r.source,
            json.dumps(r.attributes),
            r.links,
        )
        with self._transaction() as db:
            row = db.execute("SELECT id FROM registration WHERE name = ?", (r.name,)).fetchone()
            if row is None:
                cursor = db.execute(
                    f"INSERT INTO registration ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.name, *values),
                )
                rid = cursor.lastrowid
            else:
                rid = row[0]
                db.execute(
                    "UPDATE registration SET ep = ?, d = ?, base = ?, base_explicit = ?, lt = ?, expires = ?, "
                    "source = ?, attributes = ?, links = ? WHERE id = ?",
                    (*values, rid),
                )
                db.execute("DELETE FROM link WHERE registration = ?", (rid,))
                db.execute("DELETE FROM term WHERE registration = ?", (rid,))
            db.executemany(
                "INSERT INTO link VALUES (?, ?, ?)",
                [(rid, position, link.rendered) for position, link in enumerate(entry.links)],
            )
            terms = [(rid, _REGISTRATION, name, value) for name, value in entry.terms]
            for position, link in enumerate(entry.links):
                terms.extend((rid, position, name, value) for name, value in link.terms)
            db.executemany("INSERT INTO term VALUES (?, ?, ?, ?)", terms)

    def refresh(self, name: str, expires: float) -> bool:
        with self._transaction() as db:
            return db.execute("UPDATE registration SET expires = ? WHERE name = ?", (expires, name)).rowcount > 0

    def get(self, name: str) -> Optional[Registration]:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM registration WHERE name = ?", (name,)).fetchone()
        return _registration_from_row(row) if row is not None else None

    def get_by_key(self, ep: str, d: Optional[str]) -> Optional[Registration]:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM registration WHERE ep = ? AND d = ?", (ep, d or "")
        ).fetchone()
        return _registration_from_row(row) if row is not None else None

    def delete(self, name: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM registration WHERE name = ?", (name,)).rowcount > 0

    def expire(self, now: float) -> int:
        with self._transaction() as db:
            return db.execute("DELETE FROM registration WHERE expires <= ?", (now,)).rowcount

    def next_expiry(self) -> Optional[float]:
        return self._db.execute("SELECT min(expires) FROM registration").fetchone()[0]

    def count(self, source: Optional[str] = None) -> int:
        if source is None:
            return self._db.execute("SELECT registrations FROM total").fetchone()[0]
        row = self._db.execute("SELECT registrations FROM source WHERE source = ?", (source,)).fetchone()
        return row[0] if row is not None else 0

    def lookup_resources(self, filters: Sequence[Filter], offset: int = 0, limit: Optional[int] = None) -> list[str]:
        page, page_values = _limit(offset, limit)
        if not filters:
            sql = "SELECT rendered FROM link ORDER BY registration, position" + page
            values = page_values
        else:
            hits, values = _intersection([_link_hits(f) for f in filters])
            sql = (
                f"SELECT link.rendered FROM ({hits}) AS hit JOIN link "
                "ON link.registration = hit.registration AND link.position = hit.position "
                "ORDER BY link.registration, link.position" + page
            )
            values = values + page_values
        return [row[0] for row in self._db.execute(sql, values)]

    def lookup_endpoints(
        self, filters: Sequence[Filter], offset: int = 0, limit: Optional[int] = None
    ) -> list[Registration]:
        page, page_values = _limit(offset, limit)
        if not filters:
            sql = f"SELECT {_COLUMNS} FROM registration ORDER BY id" + page
            values = page_values
        else:
            hits, values = _intersection([_registration_hits(f) for f in filters])
            sql = f"SELECT {_COLUMNS} FROM registration WHERE id IN ({hits}) ORDER BY id" + page
            values = values + page_values
        return [_registration_from_row(row) for row in self._db.execute(sql, values)]

    def close(self) -> None:
        self._db.close()
