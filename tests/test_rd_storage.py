"""The RD's storages: SQLite and the in-memory reference answer every
sequence of operations alike (hypothesis), SQLite keeps registrations
across reopening with their absolute expiry times, writes are atomic,
a database file is used by one directory at a time, and a flood of
registrations from many sources stays within the caps and bounded memory."""

from __future__ import annotations

import random
import sqlite3

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from aiocoap import error
from aiocoap.numbers.codes import Code
from aiocoap.resourcedirectory.directory import Directory, Limits, Source
from aiocoap.resourcedirectory.sqlite import DatabaseInUse, SQLiteStorage, _successor
from aiocoap.resourcedirectory.storage import MemoryStorage

T0 = 1_700_000_000.0


def _seeded_names(seed):
    rng = random.Random(seed)
    return lambda n: bytes(rng.getrandbits(8) for _ in range(n))


def _pair(limits=Limits()):
    return (
        Directory(SQLiteStorage(), limits=limits, token_bytes=_seeded_names(1)),
        Directory(MemoryStorage(), limits=limits, token_bytes=_seeded_names(1)),
    )


def _outcome(call):
    try:
        return ("ok", call())
    except error.RenderableError as e:
        return ("error", e.to_message().code, str(e))


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
    """Random operations on two directories, one on SQLite and one on the
    in-memory storage: every answer must be the same."""

    def __init__(self):
        super().__init__()
        self.sql, self.mem = _pair(Limits(max_registrations=6, max_per_source=4))
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
        self.both("lookup_resources", query)
        self.both("lookup_endpoints", query)

    @invariant()
    def same_counts(self):
        assert self.sql.storage.count() == self.mem.storage.count()
        for host in ("2001:db8::1", "2001:db8::2", "2001:db8::3"):
            assert self.sql.storage.count(host) == self.mem.storage.count(host)

    def teardown(self):
        self.sql.storage.close()


TestSameAnswers = SameAnswers.TestCase
TestSameAnswers.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


@pytest.mark.parametrize(
    "prefix, inside, outside",
    [
        ("temp", ["temp", "temperature", "temp\U0010ffff"], ["tem", "temq", "tenp"]),
        ("a\U0010ffff", ["a\U0010ffff", "a\U0010ffffz"], ["b", "a"]),
        ("\ud7ff", ["\ud7ff", "\ud7ffx"], ["\ue000"]),
    ],
)
def test_prefix_successor(prefix, inside, outside):
    upper = _successor(prefix)
    for value in inside:
        assert prefix <= value and (upper is None or value < upper)
    for value in outside:
        assert not (prefix <= value and (upper is None or value < upper))


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
    expiries = {name: first.storage.get(name).expires for name in names}
    first.storage.close()

    # reopened 50 seconds later: everything is there, expiry times unchanged
    later = T0 + 50
    second = Directory(SQLiteStorage(path))
    assert (second.lookup_resources(later, []), second.lookup_endpoints(later, []), second.lookup_resources(later, ["ep=node3"])) == before
    assert {name: second.storage.get(name).expires for name in names} == expiries
    assert second.next_deadline() == T0 + 100
    # and the lifetimes keep running from where they were
    assert second.handle_timer(T0 + 105) == 6
    assert len(second.lookup_endpoints(T0 + 105, []).split(",")) == 14
    second.storage.close()


def test_sqlite_in_memory_database():
    storage = SQLiteStorage(":memory:")
    directory = Directory(storage)
    _register_some(directory, T0, 3)
    assert storage.count() == 3
    storage.close()


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
    """Wraps a connection and fails the n-th executemany (to break a write
    in the middle)."""

    def __init__(self, db, fail_at):
        self.db = db
        self.fail_at = fail_at

    def executemany(self, sql, rows):
        self.fail_at -= 1
        if self.fail_at == 0:
            raise sqlite3.OperationalError("disk I/O error (simulated)")
        return self.db.executemany(sql, rows)

    def __getattr__(self, name):
        return getattr(self.db, name)


@pytest.mark.parametrize("fail_at", [1, 2])
def test_sqlite_write_is_all_or_nothing(tmp_path, fail_at):
    storage = SQLiteStorage(str(tmp_path / "rd.sqlite3"))
    directory = Directory(storage)
    (name,) = _register_some(directory, T0, 1)
    before = directory.lookup_resources(T0, []), directory.lookup_endpoints(T0, [])

    db = storage._db
    storage._db = _FailingConnection(db, fail_at)
    with pytest.raises(sqlite3.OperationalError):
        directory.update(T0, name, ["et=changed"], b"</only>", 40, Source("2001:db8::1", None))
    storage._db = _FailingConnection(db, fail_at)
    with pytest.raises(sqlite3.OperationalError):
        directory.register(T0, ["ep=new"], b"</x>,</y>", 40, Source("2001:db8::1", "coap://h"))
    storage._db = db
    assert (directory.lookup_resources(T0, []), directory.lookup_endpoints(T0, [])) == before
    assert storage.count() == 1 and storage.count("2001:db8::1") == 1
    storage.close()


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
    storage = directory.storage
    assert storage.count() == 2000
    assert refused == 98_000
    assert max(storage.count(f"10.{j // 256}.{j % 256}.1") for j in range(20000)) == 3
    # everything the directory holds was there after 10 000 attempts
    assert grown < 4_000_000, grown
    storage.close()
