"""The RD's storages and index: a directory on SQLite and one on the
in-memory storage answer every sequence of operations (restarts included)
alike, and the index answers what a plain scan of all registrations
answers (hypothesis); SQLite keeps registrations across reopening with
their absolute expiry times, writes are atomic, a database file is used by
one directory at a time, and a flood of registrations from many sources
stays within the caps and bounded memory."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sqlite3
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from aiocoap import error
from aiocoap.numbers.codes import Code
from aiocoap.resourcedirectory.directory import Directory, Limits, Source
from aiocoap.resourcedirectory.model import Filter, term_matches
from aiocoap.resourcedirectory.sqlite import DatabaseInUse, SQLiteStorage
from aiocoap.resourcedirectory.storage import MemoryStorage

T0 = 1_700_000_000.0
LIMITS = Limits(max_registrations=6, max_per_source=4)


def _seeded_names(seed):
    rng = random.Random(seed)
    return lambda n: bytes(rng.getrandbits(8) for _ in range(n))


def _outcome(call):
    try:
        return ("ok", call())
    except error.RenderableError as e:
        return ("error", e.to_message().code, str(e))


def _scan(directory, query):
    """Resource and endpoint lookup by looking at every registration, the
    rules of aiocoap.resourcedirectory.index written out plainly."""
    filters, page, count = [], None, None
    for item in query:
        key, _, value = item.partition("=")
        if key == "page":
            page = int(value)
        elif key == "count":
            count = int(value)
        else:
            filters.append(Filter.from_query(item))
    links, registrations = [], []
    for entry in directory.index.entries():
        def meets(terms, inherited, f):
            return any(term_matches(t, f) for t in terms) or (
                f.name != "href" and any(term_matches(t, f) for ts in inherited for t in ts)
            )

        for link in entry.links:
            if all(meets(link.terms, [entry.terms], f) for f in filters):
                links.append(link.rendered)
        if all(meets(entry.terms, [link.terms for link in entry.links], f) for f in filters):
            registrations.append(entry.registration)
    start = (page or 0) * (count or 0)
    end = None if count is None else start + count
    return links[start:end], registrations[start:end]


_words = st.sampled_from(["temp", "temperature", "te", "light", "a b", "x", "", "t*"])
_attr_names = st.sampled_from(["rt", "if", "ct", "obs", "title", "et", "zz"])
_link = st.builds(
    lambda href, pairs: "<" + href + ">" + "".join(f";{n}" if v is None else f';{n}="{v}"' for n, v in pairs),
    st.sampled_from(["/a", "/a/b", "b", "../c", "coap://other/x", "http://example.com/d", "/"]),
    st.lists(st.tuples(_attr_names, st.one_of(st.none(), _words)), max_size=3),
)
_payload = st.lists(_link, max_size=4).map(lambda links: ",".join(links).encode())
_query_value = st.one_of(_words, st.sampled_from(["coap://[2001:db8::1]", "/reg/*", "coap://*", "n1", "n*", "90000"]))
_filter = st.builds(
    lambda name, value: name if value is None else f"{name}={value}",
    st.sampled_from(["rt", "if", "ct", "obs", "href", "anchor", "ep", "d", "et", "base", "lt", "title"]),
    st.one_of(st.none(), _query_value),
)


class SameAnswers(RuleBasedStateMachine):
    """Random operations, restarts among them, on two directories, one on
    an SQLite file and one on the in-memory storage: every answer must be
    the same, and every lookup must equal a plain scan."""

    def __init__(self):
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="rd-hypothesis-")
        self.path = os.path.join(self.tmp, "rd.sqlite3")
        self.names_sql, self.names_mem = _seeded_names(1), _seeded_names(1)
        self.sql = Directory(SQLiteStorage(self.path), limits=LIMITS, token_bytes=self.names_sql)
        self.mem = Directory(MemoryStorage(), limits=LIMITS, token_bytes=self.names_mem)
        self.now = T0
        self.names: list[str] = []

    def both(self, operation, *args):
        a = _outcome(lambda: getattr(self.sql, operation)(self.now, *args))
        b = _outcome(lambda: getattr(self.mem, operation)(self.now, *args))
        assert a == b, (operation, args)
        return a

    @rule(
        ep=st.sampled_from(["n1", "n2", "n3", "n4", "n5", "n6", "n7"]),
        d=st.sampled_from([None, "s1"]),
        lt=st.sampled_from([None, 1, 30, 100]),
        extra=st.lists(st.tuples(st.sampled_from(["et", "x"]), _words), max_size=2),
        base=st.sampled_from([None, "coap://[2001:db8::9]", "coap://h/p/"]),
        payload=_payload,
        host=st.sampled_from(["2001:db8::1", "2001:db8::2"]),
    )
    def register(self, ep, d, lt, extra, base, payload, host):
        query = [f"ep={ep}"]
        if d:
            query.append(f"d={d}")
        if lt:
            query.append(f"lt={lt}")
        if base:
            query.append(f"base={base}")
        query += [f"{n}={v}" for n, v in extra]
        result = self.both("register", query, payload, 40, Source(host, f"coap://[{host}]"))
        if result[0] == "ok":
            self.names.append(result[1][-1])

    @rule(
        index=st.integers(0, 20),
        lt=st.sampled_from([None, 5, 50]),
        payload=st.one_of(st.none(), _payload),
        base=st.sampled_from([None, "coap://[2001:db8::8]"]),
        host=st.sampled_from(["2001:db8::1", "2001:db8::3"]),
    )
    def update(self, index, lt, payload, base, host):
        if not self.names:
            return
        name = self.names[index % len(self.names)]
        query = []
        if lt:
            query.append(f"lt={lt}")
        if base:
            query.append(f"base={base}")
        self.both(
            "update", name, query, payload or b"", 40 if payload is not None else None, Source(host, f"coap://[{host}]")
        )

    @rule(index=st.integers(0, 20))
    def remove(self, index):
        if self.names:
            self.both("remove", self.names[index % len(self.names)])

    @rule(seconds=st.sampled_from([0.5, 1, 10, 29, 60]))
    def advance(self, seconds):
        self.now += seconds
        self.both("handle_timer")
        assert self.sql.next_deadline() == self.mem.next_deadline()

    @rule(
        filters=st.lists(_filter, max_size=3),
        page=st.one_of(st.none(), st.tuples(st.integers(0, 3), st.integers(0, 4))),
    )
    def lookup(self, filters, page):
        query = list(filters)
        if page is not None:
            query += [f"page={page[0]}", f"count={page[1]}"]
        resources = self.both("lookup_resources", query)
        endpoints = self.both("lookup_endpoints", query)
        if resources[0] == "ok":
            links, registrations = _scan(self.mem, query)
            assert resources[1] == ",".join(links)
            assert endpoints[1].count("</reg/") == len(registrations)

    @rule()
    def restart(self):
        self.sql.storage.close()
        self.sql = Directory(SQLiteStorage(self.path), limits=LIMITS, token_bytes=self.names_sql)
        self.mem = Directory(self.mem.storage, limits=LIMITS, token_bytes=self.names_mem)

    @invariant()
    def same_counts(self):
        assert self.sql.index.count() == self.mem.index.count()
        for host in ("2001:db8::1", "2001:db8::2", "2001:db8::3"):
            assert self.sql.index.count(host) == self.mem.index.count(host)

    def teardown(self):
        self.sql.storage.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TestSameAnswers = SameAnswers.TestCase
TestSameAnswers.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


def _register_some(directory, now, n=20):
    names = []
    for i in range(n):
        location = directory.register(
            now,
            [f"ep=node{i}", f"lt={100 + i}", "et=tag:x"],
            b",".join(b'</s/%d>;rt="temp";if=sensor' % j for j in range(3)),
            40,
            Source("2001:db8::1", f"coap://[2001:db8::{i + 1:x}]"),
        )
        names.append(location[-1])
    return names


def test_sqlite_keeps_registrations_across_reopening(tmp_path):
    path = str(tmp_path / "rd.sqlite3")
    first = Directory(SQLiteStorage(path))
    names = _register_some(first, T0)
    before = (first.lookup_resources(T0, []), first.lookup_endpoints(T0, []), first.lookup_resources(T0, ["ep=node3"]))
    expiries = {name: first.index.get(name).expires for name in names}
    first.storage.close()

    # reopened 50 seconds later: everything is there, expiry times unchanged
    later = T0 + 50
    second = Directory(SQLiteStorage(path))
    assert (second.lookup_resources(later, []), second.lookup_endpoints(later, []), second.lookup_resources(later, ["ep=node3"])) == before
    assert {name: second.index.get(name).expires for name in names} == expiries
    assert second.next_deadline() == T0 + 100
    # and the lifetimes keep running from where they were
    assert second.handle_timer(T0 + 105) == 6
    assert len(second.lookup_endpoints(T0 + 105, []).split(",")) == 14
    second.storage.close()


def test_sqlite_in_memory_database():
    directory = Directory(SQLiteStorage(":memory:"))
    _register_some(directory, T0, 3)
    assert directory.index.count() == 3
    directory.storage.close()


def test_sqlite_file_is_used_by_one_directory_at_a_time(tmp_path):
    path = str(tmp_path / "rd.sqlite3")
    first = SQLiteStorage(path)
    with pytest.raises(DatabaseInUse):
        SQLiteStorage(path)
    first.close()
    SQLiteStorage(path).close()


def test_sqlite_refuses_foreign_databases(tmp_path):
    other = tmp_path / "other.sqlite3"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE something (x)")
    db.commit()
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="something else"):
        SQLiteStorage(str(other))

    newer = tmp_path / "newer.sqlite3"
    SQLiteStorage(str(newer)).close()
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="version 99"):
        SQLiteStorage(str(newer))

    text = tmp_path / "text.sqlite3"
    text.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(sqlite3.DatabaseError):
        SQLiteStorage(str(text))


class _FailingConnection:
    """Wraps a connection and fails every statement that changes data."""

    def __init__(self, db):
        self.db = db

    def execute(self, sql, *args):
        if sql.startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("disk I/O error (simulated)")
        return self.db.execute(sql, *args)

    executemany = execute

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_failed_write_changes_nothing(tmp_path):
    """A write that fails leaves the directory as it was, in memory and on
    disk (the storage is written first, in one transaction)."""
    path = str(tmp_path / "rd.sqlite3")
    storage = SQLiteStorage(path)
    directory = Directory(storage)
    (name,) = _register_some(directory, T0, 1)

    def state(d):
        return d.lookup_resources(T0, []), d.lookup_endpoints(T0, []), d.index.count(), d.index.count("2001:db8::1")

    before = state(directory)
    source = Source("2001:db8::1", "coap://h")
    db = storage._db
    storage._db = _FailingConnection(db)
    for operation in (
        lambda: directory.update(T0, name, ["et=changed"], b"</only>", 40, source),  # a new entry
        lambda: directory.update(T0 + 1, name, [], b"", None, source),  # a refresh
        lambda: directory.register(T0, ["ep=new"], b"</x>,</y>", 40, source),
        lambda: directory.remove(T0, name),
    ):
        with pytest.raises(sqlite3.OperationalError):
            operation()
    storage._db = db
    assert state(directory) == before
    storage.close()
    assert state(Directory(SQLiteStorage(path))) == before


def test_unusable_stored_registration_is_dropped(tmp_path, caplog):
    path = str(tmp_path / "rd.sqlite3")
    directory = Directory(SQLiteStorage(path))
    names = _register_some(directory, T0, 2)
    directory.storage.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE registration SET links = '<broken' WHERE name = ?", (names[0],))
        db.commit()
    directory = Directory(SQLiteStorage(path))
    assert [r.name for r in directory.index.lookup_endpoints([])] == names[1:]
    assert "can not be used" in caplog.text
    directory.storage.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM registration").fetchone()[0] == 1


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_flood_from_many_sources_stays_within_caps_and_bounded_memory():
    """100 000 registrations from 20 000 sources against caps of 2 000 in
    total and 3 per source: the caps hold, everybody beyond them gets 5.03,
    and the memory of the process does not grow with the attempts."""
    limits = Limits(max_registrations=2000, max_per_source=3)
    directory = Directory(SQLiteStorage(), limits=limits)
    payload = b'</sensors/temp>;rt="temperature-c";if=sensor,</sensors/light>;rt=light-lux'
    refused = 0
    for i in range(100_000):
        j = (i // 5) % 20000
        host = f"10.{j // 256}.{j % 256}.1"
        try:
            directory.register(T0 + i * 1e-3, [f"ep=flood{i}", "lt=86400"], payload, 40, Source(host, f"coap://{host}"))
        except error.RenderableError as e:
            assert e.to_message().code == Code.SERVICE_UNAVAILABLE
            refused += 1
        if i == 10_000:
            baseline = _rss()
    grown = _rss() - baseline
    index = directory.index
    assert index.count() == 2000
    assert refused == 98_000
    assert max(index.count(f"10.{j // 256}.{j % 256}.1") for j in range(20000)) == 3
    # everything the directory holds was there after 10 000 attempts
    assert grown < 4_000_000, grown
    directory.storage.close()
