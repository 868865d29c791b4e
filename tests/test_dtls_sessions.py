"""The DTLS session bookkeeping (aiocoap.transports.dtls_sessions), on a
virtual clock: epochs, handshake and idle timeouts, silent peers, caps, and
the record helpers the server uses before it keeps any state. No sockets,
no tinydtls, no sleeping."""

from __future__ import annotations

import logging

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aiocoap import error
from aiocoap.transports.dtls_sessions import (
    CloseNotifyReceived,
    DTLSTuning,
    FatalDTLSError,
    HandshakeTimeout,
    SessionClosed,
    SessionState,
    SessionTable,
    alert_name,
    first_record,
)

log = logging.getLogger("test-dtls-sessions")


class Clock:
    """A table with a virtual clock that fires the table's deadlines on
    the way when it advances, recording every session the table closed."""

    def __init__(self, *, server=False, **tuning):
        self.now = 1000.0
        self.closed = []  # (session, exception)
        self.table = SessionTable(
            close=lambda session, exc: self.closed.append((session, exc)),
            log=log, server=server, tuning=DTLSTuning(**tuning),
        )

    def advance(self, seconds):
        end = self.now + seconds
        while True:
            deadline = self.table.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.table.handle_timer(self.now)
        self.now = end

    def established(self, key):
        session = self.table.start(key, self.now)
        self.table.established(session, self.now)
        return session


def test_errors_are_network_errors():
    for cls in (FatalDTLSError, CloseNotifyReceived, HandshakeTimeout, SessionClosed):
        assert issubclass(cls, error.NetworkError)
    exc = FatalDTLSError("x", level=2, code=40)
    assert (exc.level, exc.code) == (2, 40)
    assert alert_name(40) == "handshake_failure (40)"


def test_every_handshake_is_a_new_epoch():
    c = Clock()
    first = c.established("peer")
    second = c.table.start("peer", c.now)
    assert second.epoch > first.epoch
    # the old epoch was ended and its owner told why
    assert first.state is SessionState.CLOSED
    assert [(s, type(e)) for s, e in c.closed] == [(first, SessionClosed)]
    assert "replaced by a new handshake" in str(c.closed[0][1])
    assert c.table.find("peer") is second
    # epochs never repeat, not even after the table forgot a key
    c.table.end(second)
    third = c.table.start("peer", c.now)
    assert third.epoch > second.epoch


def test_handshake_timeout():
    c = Clock(handshake_timeout=5.0)
    session = c.table.start("peer", c.now)
    assert c.table.next_deadline() == c.now + 5.0
    c.advance(4.9)
    assert not c.closed
    c.advance(0.2)
    assert [s for s, _ in c.closed] == [session]
    assert isinstance(c.closed[0][1], HandshakeTimeout)
    assert "check the PSK and the identity" in str(c.closed[0][1])
    assert len(c.table) == 0 and c.table.next_deadline() is None


def test_established_handshake_does_not_time_out():
    c = Clock(handshake_timeout=5.0, idle_timeout=None)
    c.established("peer")
    c.advance(100)
    assert not c.closed
    assert c.table.next_deadline() is None


def test_idle_expiry_follows_traffic_exactly():
    c = Clock(idle_timeout=60.0, silence_timeout=None)
    a = c.established("a")
    c.advance(10)
    b = c.established("b")
    c.advance(40)
    c.table.received(a, c.now)  # a active at 50
    c.advance(19)  # 69: b (idle since 10) is due at 70, a at 110
    assert not c.closed
    c.advance(1.5)
    assert [s for s, _ in c.closed] == [b]
    assert "60 s without traffic" in str(c.closed[0][1])
    c.advance(39)  # 109.5
    assert len(c.closed) == 1
    c.advance(1)
    assert [s for s, _ in c.closed] == [b, a]


def test_idle_order_repair_does_not_delay_a_quiet_session():
    """A session that took its place early but saw traffic must not hide
    a later session that stayed quiet: expiry is exact for both."""
    c = Clock(idle_timeout=100.0, silence_timeout=None)
    a = c.established("a")  # place at 0
    c.advance(1)
    c.table.sent(a, c.now, False)  # a last active at 1
    c.advance(2)
    b = c.established("b")  # place at 3, never active again
    c.advance(97.5)  # 100.5: a's place comes up, repaired to 1 -> due 101
    c.advance(0.6)  # 101.1
    assert [s for s, _ in c.closed] == [a]
    c.advance(1.8)  # 102.9
    assert len(c.closed) == 1
    c.advance(0.2)  # 103.1
    assert [s for s, _ in c.closed] == [a, b]


def test_silent_peer_closes_client_session():
    c = Clock(silence_timeout=10.0, idle_timeout=None)
    s = c.established("server")
    c.table.sent(s, c.now, False)  # an ACK: nothing expected back
    c.advance(50)
    assert not c.closed
    c.table.sent(s, c.now, True)  # a request
    c.advance(5)
    c.table.sent(s, c.now, True)  # another one: the clock runs from the first
    c.table.received(s, c.now)  # an answer: not silent any more
    c.advance(9)
    assert not c.closed
    c.table.sent(s, c.now, True)
    c.advance(9.9)
    assert not c.closed
    c.advance(0.2)
    assert [x for x, _ in c.closed] == [s]
    assert "the next request starts a new one" in str(c.closed[0][1])


def test_servers_do_not_watch_for_silence():
    c = Clock(server=True, silence_timeout=1.0, idle_timeout=None)
    s = c.established("client")
    c.table.sent(s, c.now, True)
    c.advance(100)
    assert not c.closed


def test_handshake_cap_drops_the_oldest_handshake():
    c = Clock(server=True, max_server_handshakes=3, max_server_sessions=100)
    handshakes = [c.table.start(("h", i), c.now + i) for i in range(3)]
    newest = c.table.start(("h", 3), c.now + 3)
    assert [s for s, _ in c.closed] == [handshakes[0]]
    assert "make room" in str(c.closed[0][1])
    assert c.table.handshakes == 3 and c.table.find(("h", 3)) is newest


def test_session_cap_drops_the_longest_idle_session_first():
    c = Clock(server=True, max_server_sessions=3, max_server_handshakes=3, idle_timeout=None)
    a = c.established("a")
    c.advance(1)
    b = c.established("b")
    c.advance(1)
    d = c.established("d")
    c.advance(1)
    c.table.received(a, c.now)  # a is the most recently active now
    c.table.start("e", c.now)
    assert [s for s, _ in c.closed] == [b]
    c.table.start("f", c.now)
    assert [s for s, _ in c.closed] == [b, d]
    # only handshakes left besides a: a goes, then the oldest handshake
    c.table.start("g", c.now)
    assert [s for s, _ in c.closed][-1] is a
    c.table.start("h", c.now)
    assert c.closed[-1][0].key == "e"
    assert len(c.table) == 3


def test_session_cap_orders_activity_within_one_clock_tick():
    """uvloop's clock has millisecond steps: sessions active within one
    step are still ordered by their activity (the CI found a server that
    closed the most recently active session instead of the idle one)."""
    c = Clock(server=True, max_server_sessions=2, max_server_handshakes=2, idle_timeout=None)
    a = c.established("a")
    b = c.established("b")
    c.table.received(a, c.now)
    c.table.sent(a, c.now, expects_answer=False)
    c.table.start("c", c.now)
    assert [s for s, _ in c.closed] == [b]


def test_client_cap():
    c = Clock(max_client_sessions=2, idle_timeout=None)
    first = c.established(1)
    c.established(2)
    c.established(3)
    assert [s for s, _ in c.closed] == [first]


def test_cap_warning_is_rate_limited(caplog):
    c = Clock(server=True, max_server_sessions=1, max_server_handshakes=1)
    with caplog.at_level(logging.DEBUG, logger=log.name):
        for i in range(50):
            c.table.start(i, c.now)
            c.now += 1
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1
        c.now += 60
        c.table.start("late", c.now)
        assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2


def test_end_and_close_all():
    c = Clock()
    a = c.established("a")
    b = c.table.start("b", c.now)
    assert c.table.end(a) is True
    assert c.table.end(a) is False
    assert not c.closed  # the transport ended it: no callback
    c.table.close_all(lambda: error.LibraryShutdown())
    assert [(s, type(e)) for s, e in c.closed] == [(b, error.LibraryShutdown)]
    assert len(c.table) == 0


def test_deadlines_of_events():
    """The rare events (start, established) are followed by the driver
    asking next_deadline(); the one on the path of every message (sent)
    says itself whether it added a deadline."""
    c = Clock(handshake_timeout=5.0, idle_timeout=50.0, silence_timeout=7.0)
    s = c.table.start("a", c.now)
    assert c.table.next_deadline() == c.now + 5.0
    c.table.established(s, c.now)
    assert c.table.next_deadline() == c.now + 50.0
    assert c.table.sent(s, c.now, False) is None  # nothing awaited: no new deadline
    assert c.table.sent(s, c.now, True) == c.now + 7.0
    assert c.table.next_deadline() == c.now + 7.0
    assert c.table.sent(s, c.now + 1, True) is None  # already waiting
    c.table.received(s, c.now + 2)
    assert c.table.next_deadline() == c.now + 50.0


def test_changing_the_tuning_applies_at_once():
    c = Clock(idle_timeout=1000.0)
    c.established("a")
    c.table.tuning = DTLSTuning(idle_timeout=5.0)
    c.advance(5.1)
    assert len(c.closed) == 1


class SessionMachine(RuleBasedStateMachine):
    """Random operations on a server table keep its invariants: caps
    hold, nothing outlives its deadline, every session ends exactly once,
    epochs never repeat."""

    def __init__(self):
        super().__init__()
        self.clock = Clock(
            server=True, max_server_sessions=5, max_server_handshakes=3,
            handshake_timeout=4.0, idle_timeout=10.0,
        )
        self.epochs = set()
        self.ended = []

    @rule(key=st.integers(0, 8))
    def start(self, key):
        session = self.clock.table.start(key, self.clock.now)
        assert session.epoch not in self.epochs
        self.epochs.add(session.epoch)

    @rule(key=st.integers(0, 8))
    def establish(self, key):
        session = self.clock.table.find(key)
        if session is not None:
            self.clock.table.established(session, self.clock.now)

    @rule(key=st.integers(0, 8))
    def traffic(self, key):
        session = self.clock.table.find(key)
        if session is not None and session.state is SessionState.ESTABLISHED:
            self.clock.table.received(session, self.clock.now)

    @precondition(lambda self: len(self.clock.table) > 0)
    @rule(key=st.integers(0, 8))
    def end(self, key):
        session = self.clock.table.find(key)
        if session is not None:
            assert self.clock.table.end(session)
            self.ended.append(session)

    @rule(seconds=st.floats(0, 15))
    def advance(self, seconds):
        self.clock.advance(seconds)

    @invariant()
    def caps_and_deadlines_hold(self):
        table = self.clock.table
        assert len(table) <= 5 and table.handshakes <= 3
        now = self.clock.now
        for session in table:
            assert session.state is not SessionState.CLOSED
            if session.state is SessionState.HANDSHAKE:
                assert session.started + 4.0 >= now
            else:
                assert session.last_activity + 10.0 >= now
        closed = [s for s, _ in self.clock.closed] + self.ended
        assert len(closed) == len({id(s) for s in closed})
        assert all(s.state is SessionState.CLOSED for s in closed)


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


# --- record helpers -----------------------------------------------------------------------

CLIENT_HELLO = bytes.fromhex(
    "16fefd000000000000000000" "4d"  # record header (length 0x4d)
    "010000410000000000000041"  # handshake header
    "fefd" + "11" * 32 + "00" "00"  # version, random, empty session id and cookie
) + bytes(10)


def test_first_record():
    assert first_record(CLIENT_HELLO) == (22, 0, 1)
    assert first_record(b"\x40\x01\x00\x01") is None  # plain CoAP
    assert first_record(b"\x16\xfe\xfd" + bytes(5)) is None  # truncated header
    assert first_record(b"\x18\xfe\xfd" + bytes(20)) is None  # unknown content type
    assert first_record(b"\x17\xfe\xfd\x00\x01" + bytes(20)) == (23, 1, None)


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_record_helpers_take_any_bytes(data):
    record = first_record(data)
    if record is not None:
        content, epoch, handshake = record
        assert 20 <= content <= 23 and 0 <= epoch < 65536
        assert handshake is None or 0 <= handshake < 256
