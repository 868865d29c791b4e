"""The server connection caps (aiocoap.transports.connectiontable), without
sockets: admission, eviction of the longest idle connection, the bound on
bytes of incomplete messages; a hypothesis sweep checks the caps hold for
any sequence of events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aiocoap.transports.connectiontable import ConnectionTable


class Conn:
    def __init__(self, name, idle_since=None):
        self.name = name
        self.idle_since = idle_since

    def __repr__(self):
        return f"<Conn {self.name}>"


def table(**caps):
    caps = {"max_connections": 10, "max_per_host": 3, "max_buffered": 1000, **caps}
    return ConnectionTable(idle_since=lambda c: c.idle_since, **caps)


def test_admits_below_the_caps():
    t = table()
    a = Conn("a")
    admission = t.admit(a, "h1")
    assert admission.admitted and admission.close == []
    assert len(t) == 1 and t.from_host("h1") == 1


def test_per_host_cap_closes_that_hosts_longest_idle():
    t = table()
    conns = [Conn(i, idle_since=float(10 - i)) for i in range(3)]
    other = Conn("other", idle_since=0.0)  # idle longer, but another host
    t.admit(other, "h2")
    for c in conns:
        t.admit(c, "h1")
    new = Conn("new")
    admission = t.admit(new, "h1")
    assert admission.admitted and admission.close == [conns[2]]  # idle since 8.0
    assert t.from_host("h1") == 3 and t.from_host("h2") == 1


def test_per_host_cap_refuses_when_nothing_of_that_host_is_idle():
    t = table()
    for i in range(3):
        t.admit(Conn(i), "h1")
    admission = t.admit(Conn("new"), "h1")
    assert not admission.admitted and admission.close == []
    assert "from your address" in admission.reason
    assert t.from_host("h1") == 3


def test_global_cap_closes_the_longest_idle_of_anyone():
    t = table(max_connections=3, max_per_host=3)
    busy = Conn("busy")
    idle_late, idle_early = Conn("late", 50.0), Conn("early", 20.0)
    t.admit(busy, "h1")
    t.admit(idle_late, "h2")
    t.admit(idle_early, "h3")
    admission = t.admit(Conn("new"), "h4")
    assert admission.admitted and admission.close == [idle_early]
    assert len(t) == 3 and t.from_host("h3") == 0


def test_global_cap_refuses_when_nothing_is_idle():
    t = table(max_connections=2)
    t.admit(Conn(1), "h1")
    t.admit(Conn(2), "h2")
    admission = t.admit(Conn(3), "h3")
    assert not admission.admitted and admission.reason == "too many connections"


def test_buffered_bound_aborts_the_largest_holder():
    t = table(max_buffered=100)
    a, b, c = Conn("a"), Conn("b"), Conn("c")
    for conn in (a, b, c):
        t.admit(conn, "h")
    assert t.set_buffered(a, 40) is None
    assert t.set_buffered(b, 50) is None
    assert t.set_buffered(c, 20) is b  # 110 > 100: b holds most
    assert t.buffered == 60 and len(t) == 2
    assert t.set_buffered(a, 0) is None and t.buffered == 20
    t.remove(c)
    assert t.buffered == 0


def test_unknown_connections_are_ignored():
    t = table()
    assert t.set_buffered(Conn("x"), 5000) is None
    t.remove(Conn("x"))
    assert len(t) == 0 and t.buffered == 0


events = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.integers(0, 3), st.one_of(st.none(), st.floats(0, 100))),
        st.tuples(st.just("close"), st.integers(0, 40), st.none()),
        st.tuples(st.just("buffer"), st.integers(0, 40), st.integers(0, 400)),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_caps_hold_for_any_sequence(sequence):
    t = table(max_connections=6, max_per_host=3, max_buffered=500)
    live: list[Conn] = []
    for n, (kind, a, b) in enumerate(sequence):
        if kind == "open":
            conn = Conn(n, idle_since=b)
            admission = t.admit(conn, f"h{a}")
            for victim in admission.close:
                assert victim.idle_since is not None
                live.remove(victim)
            if admission.admitted:
                live.append(conn)
        elif live:
            conn = live[a % len(live)]
            if kind == "close":
                t.remove(conn)
                live.remove(conn)
            else:
                victim = t.set_buffered(conn, b)
                if victim is not None:
                    live.remove(victim)
        assert len(t) == len(live) <= 6
        assert all(t.from_host(f"h{h}") <= 3 for h in range(4))
        assert 0 <= t.buffered <= 500


def test_follow_takes_the_caps_of_a_tuning():
    from aiocoap.transports.rfc8323session import SessionTuning

    tuning = SessionTuning(max_server_connections=7, max_server_connections_per_host=3, max_server_buffered=1000)
    table = ConnectionTable(max_connections=0, max_per_host=0, max_buffered=0, idle_since=lambda c: None)
    assert table.follow(tuning) is table
    assert (table.max_connections, table.max_per_host, table.max_buffered) == (7, 3, 1000)
