"""The RFC 8323 session core (aiocoap.transports.rfc8323session), driven by
a virtual clock over an in-memory byte link: no sockets, no event loop, no
sleeping. Every timer of the protocol (CSM wait, keepalive Ping and its
answer, idle close, stalled and trickling frames) is checked here to the
virtual millisecond; tests/test_tcp.py only checks that the asyncio adapter
drives the session.

``Net.advance`` moves the clock from deadline to deadline of both ends, as
tests/test_messagemanager.py does for the message layer.
"""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from aiocoap import error
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import OpaqueOption
from aiocoap.transports import rfc8323common as rfc
from aiocoap.transports.rfc8323session import (
    RFC8323Session,
    SessionState,
    SessionTuning,
    StreamFramer,
    WebSocketFramer,
)

log = logging.getLogger("test-rfc8323session")

TUNING = SessionTuning()
START = 1000.0


class Remote(rfc.RFC8323Remote):
    """The remote incoming messages get: a named placeholder."""

    scheme = "coap+tcp"
    hostinfo_local = "local"

    def __init__(self, name, local_is_server):
        super().__init__(local_is_server=local_is_server)
        self.name = name

    @property
    def hostinfo(self):
        return self.name

    def __repr__(self):
        return f"<Remote {self.name}>"


class End:
    """One side of a connection: a session plus records of what it
    delivered, wrote and reported. Like the token layer, it calls
    request_done once a response without Observe arrived, unless
    ``token_layer`` does something else with responses."""

    def __init__(self, name, net, *, tuning=TUNING, idle_close=False, framer=StreamFramer):
        self.name = name
        self.net = net
        self.remote = Remote(name, local_is_server=not idle_close)
        self.written = []  # frames, in order
        self.requests = []
        self.responses = []
        self.closed = []  # (reason, hard)
        self.released = []
        self.ready = 0
        self.backlog = 0
        self.timer_at = math.inf
        self.accept_responses = True
        self.token_layer = None  # what is done with a response instead of request_done
        self.all_responses = []
        self.write_log = None  # a list that gets ("out", message) for each frame written
        self.framer = framer(tuning.max_message_size)
        self.session = RFC8323Session(
            framer=self.framer,
            write=self._write,
            backlog=lambda: self.backlog,
            deliver_request=self.requests.append,
            deliver_response=self._deliver_response,
            remote=self.remote,
            log=log,
            tuning=tuning,
            idle_close=idle_close,
            on_ready=self._on_ready,
            on_release=self.released.append,
            on_close=lambda reason, hard: self.closed.append((reason, hard)),
        )
        self.remote._session = self.session

    def _write(self, frame):
        assert type(frame) is bytes
        self.written.append(frame)
        if self.write_log is not None:
            (message,) = rfc.StreamParser(1 << 30).feed(frame)  # one frame per write
            self.write_log.append(("out", message))
        self.net.transmit(self, frame)

    def _on_ready(self):
        self.ready += 1

    def _deliver_response(self, message):
        if not self.accept_responses:
            return False
        self.responses.append(message)
        self.all_responses.append(message)
        if self.token_layer is not None:
            self.token_layer(message)
        elif message.opt.observe is None:
            self.session.request_done(message.token, self.net.now)
        return True

    def sent_messages(self):
        """What this end wrote, decoded."""
        if isinstance(self.framer, WebSocketFramer):
            return [rfc.decode_ws_message(frame) for frame in self.written]
        return rfc.StreamParser(1 << 30).feed(b"".join(self.written))

    def sent_codes(self):
        return [m.code for m in self.sent_messages()]

    def send(self, message, monitor=None):
        return self.session.send(message, self.net.now, monitor)

    def __repr__(self):
        return f"<End {self.name}>"


class Net:
    """Carries the bytes each end writes to the other, in order, at the
    current virtual time; ``cut`` drops what an end writes."""

    def __init__(self):
        self.now = START
        self.ends = []
        self.inbox = {}
        self.cut = set()

    def pair(self, client_tuning=TUNING, server_tuning=TUNING, framer=StreamFramer):
        client = End("client", self, tuning=client_tuning, idle_close=True, framer=framer)
        server = End("server", self, tuning=server_tuning, framer=framer)
        client.peer, server.peer = server, client
        self.ends = [client, server]
        self.inbox = {client: [], server: []}
        return client, server

    def raw(self, tuning=TUNING, idle_close=False):
        """One end whose peer is the test itself (``feed``)."""
        end = End("raw-peer", self, tuning=tuning, idle_close=idle_close)
        end.peer = None
        self.ends = [end]
        self.inbox = {end: []}
        return end

    def transmit(self, sender, frame):
        if sender in self.cut or sender.peer is None:
            return
        self.inbox[sender.peer].append(frame)

    def flush(self):
        moved = True
        while moved:
            moved = False
            for end in self.ends:
                box = self.inbox[end]
                while box:
                    moved = True
                    end.session.receive_data(box.pop(0), self.now)

    def exchange(self, client, server, token):
        """A GET from ``client`` answered by ``server``, each delivered at
        once."""
        client.send(get(token))
        self.flush()
        server.send(content(token))
        self.flush()

    def start(self):
        for end in self.ends:
            end.session.start(self.now)
        self.flush()

    def timer_of(self, end):
        """The time of the end's one timer, kept as the asyncio adapter
        keeps it: moved earlier only by take_added_deadline(), re-armed at
        next_deadline() when it fires. (Taking the added deadline late is
        the same as taking it after every call: it is the minimum of what
        was added.) Checks that it is never later than the session's
        deadline."""
        added = end.session.take_added_deadline()
        if added is not None and added < end.timer_at:
            end.timer_at = added
        deadline = end.session.next_deadline()
        assert deadline is None or end.timer_at <= deadline, "the driver's timer would be late"
        return end.timer_at

    def advance(self, seconds, network=None):
        """Move the clock forward, firing each end's timer on the way;
        ``network()`` (default: deliver everything) runs before each
        step."""
        network = network or self.flush
        end_time = self.now + seconds
        while True:
            network()
            due = min(self.timer_of(e) for e in self.ends)
            if due > end_time:
                break
            self.now = max(self.now, due)
            for e in self.ends:
                if e.timer_at <= self.now:
                    e.session.handle_timer(self.now)
                    deadline = e.session.next_deadline()
                    assert deadline is None or deadline > self.now, "handle_timer left due work undone"
                    e.session.take_added_deadline()  # superseded by the full computation
                    e.timer_at = math.inf if deadline is None else deadline
        self.now = end_time


def frame(message):
    return rfc.encode_message(message)


def csm(max_message_size=1152, block_wise_transfer=False):
    return frame(rfc.CSM(max_message_size, block_wise_transfer).to_message())


def get(token=b"t1", path="x", **kwargs):
    return Message(code=Code.GET, _token=token, uri_path=[path], **kwargs)


def content(token, payload=b"", **kwargs):
    return Message(code=Code.CONTENT, _token=token, payload=payload, **kwargs)


@pytest.fixture
def net():
    return Net()


# --- CSM exchange ---------------------------------------------------------------


def test_each_side_starts_with_its_csm_and_queued_requests_follow(net):
    client, server = net.pair()
    # sent before the connection is up: queued
    assert client.send(get(b"q1"))
    assert client.session.state is SessionState.CONNECTING and client.written == []
    net.start()
    assert client.ready == server.ready == 1
    assert client.session.state is server.session.state is SessionState.OPEN
    assert client.sent_codes() == [Code.CSM, Code.GET]
    assert server.sent_codes() == [Code.CSM]
    (request,) = server.requests
    assert request.token == b"q1" and request.remote is server.remote
    assert request.mtype is None and request.mid is None
    assert not server.send(content(b"q1", b"hello"))
    net.flush()
    assert [r.payload for r in client.responses] == [b"hello"]
    assert client.responses[0].remote is client.remote
    assert client.session.is_idle and server.session.is_idle


def test_our_csm_announces_the_framer_limit_and_block_wise_transfer(net):
    end = net.raw(tuning=SessionTuning(max_message_size=5000, block_wise_transfer=True))
    end.session.start(net.now)
    (announced,) = end.sent_messages()
    assert rfc.CSM.from_message(announced) == rfc.CSM(5000, True)


def test_block_sizes_follow_the_peer_csm(net):
    end = net.raw()
    assert (end.remote.maximum_block_size_exp, end.remote.peer_max_message_size) == (6, 1152)
    end.session.start(net.now)
    end.session.receive_data(csm(1 << 20, True), net.now)
    assert end.remote.maximum_block_size_exp == 7
    assert end.remote.maximum_payload_size == 1023 * 1024
    end.session.receive_data(csm(300), net.now)  # cumulative: BWT stays
    assert end.remote.peer_max_message_size == 300
    assert end.remote.maximum_block_size_exp == 3


def test_first_message_must_be_a_csm(net):
    end = net.raw()
    end.session.start(net.now)
    end.session.receive_data(frame(get()), net.now)
    assert end.requests == []
    assert end.sent_codes() == [Code.CSM, Code.ABORT]
    assert b"CSM" in end.sent_messages()[-1].payload
    ((reason, hard),) = end.closed
    assert isinstance(reason, error.NetworkError) and not hard
    assert "first message was not a CSM" in str(reason)
    assert end.session.state is SessionState.CLOSED


def test_csm_wait_times_out_exactly(net):
    end = net.raw(tuning=SessionTuning(csm_timeout=10.0))
    end.session.start(net.now)
    assert end.session.next_deadline() == START + 10.0
    net.advance(9.999)
    assert end.closed == []
    net.advance(0.001)
    assert end.sent_codes() == [Code.CSM, Code.ABORT]
    assert end.sent_messages()[-1].payload == b"no CSM received within 10 s"
    assert "no CSM" in str(end.closed[0][0])
    assert end.session.next_deadline() is None


def test_requests_wait_for_the_peer_csm_and_fail_when_it_never_comes(net):
    end = net.raw(idle_close=True)
    failures = []
    end.session.start(net.now)
    assert end.send(get(b"w"), failures.append)
    assert end.sent_codes() == [Code.CSM]
    assert end.session.pending_requests == 1
    net.advance(TUNING.csm_timeout)
    assert end.session.state is SessionState.CLOSED
    assert end.session.pending_requests == 0 and end.session.is_idle
    # the monitor is not called: the transport fails pending requests with
    # the reason handed to on_close
    assert failures == [] and "no CSM" in str(end.closed[0][0])


def test_unknown_critical_csm_option_is_named_in_the_abort(net):
    end = net.raw()
    end.session.start(net.now)
    bad = rfc.CSM().to_message()
    bad.opt.add_option(OpaqueOption(9, b""))
    end.session.receive_data(frame(bad), net.now)
    abort = rfc.Abort.from_message(end.sent_messages()[-1])
    assert abort.bad_csm_option == 9
    assert end.session.state is SessionState.CLOSED


# --- keepalive ------------------------------------------------------------------------


def test_keepalive_pings_are_answered_and_keep_the_connection(net):
    client, server = net.pair(
        client_tuning=SessionTuning(ping_interval=30.0, ping_timeout=10.0, idle_timeout=None),
        server_tuning=SessionTuning(server_idle_timeout=None),  # Pings are no requests
    )
    net.start()
    assert client.session.next_deadline() == START + 30.0
    net.advance(29.999)
    assert Code.PING not in client.sent_codes()
    net.advance(0.001)
    assert client.sent_codes().count(Code.PING) == 1
    assert server.sent_codes().count(Code.PONG) == 1
    net.advance(300)
    assert client.sent_codes().count(Code.PING) == 11  # every 30 s of silence
    assert client.session.state is SessionState.OPEN and client.closed == []


def test_keepalive_shorter_than_the_ping_timeout_keeps_its_rhythm(net):
    """The answer to a Ping clears the timer that waited for it; the next
    keepalive is due before that timer would have fired."""
    client, server = net.pair(client_tuning=SessionTuning(ping_interval=2.0, ping_timeout=5.0, idle_timeout=None))
    net.start()
    net.advance(10)
    assert client.sent_codes().count(Code.PING) == 5  # at 2, 4, 6, 8 and 10 s


def test_traffic_from_the_peer_postpones_the_keepalive(net):
    client, server = net.pair(client_tuning=SessionTuning(ping_interval=30.0))
    net.start()
    net.advance(20)
    net.exchange(client, server, b"a")
    assert client.session.next_deadline() == START + 50.0
    net.advance(29.9)
    assert Code.PING not in client.sent_codes()


def test_unanswered_ping_ends_the_connection_hard(net):
    client, server = net.pair(
        client_tuning=SessionTuning(ping_interval=30.0, ping_timeout=10.0, idle_timeout=None)
    )
    net.start()
    client.send(get(b"p"))
    net.flush()
    net.cut.add(server)  # the server's answers are lost from now on
    net.advance(30)
    assert client.sent_codes()[-1] == Code.PING
    assert client.session.next_deadline() == START + 40.0
    net.advance(9.999)
    assert client.closed == []
    net.advance(0.001)
    ((reason, hard),) = client.closed
    assert hard and "did not answer a Ping within 10 s" in str(reason)
    assert client.sent_codes()[-1] == Code.PING  # no Abort: the peer is gone


def test_no_keepalive_by_default(net):
    client, server = net.pair()
    net.start()
    client.send(get(b"busy"))
    net.flush()
    assert client.session.next_deadline() is None
    net.advance(100_000)
    assert Code.PING not in client.sent_codes() + server.sent_codes()


# --- idle close -------------------------------------------------------------------------


def test_idle_client_connection_closes_after_idle_timeout(net):
    client, server = net.pair(client_tuning=SessionTuning(idle_timeout=60.0))
    net.start()
    net.advance(5)
    net.exchange(client, server, b"i")
    assert client.session.is_idle
    assert client.session.next_deadline() == START + 65.0
    net.advance(59.999)
    assert client.closed == []
    net.advance(0.001)
    ((reason, hard),) = client.closed
    assert not hard and "was closed" in str(reason)
    assert Code.ABORT not in client.sent_codes() and Code.RELEASE not in client.sent_codes()
    assert server.closed == []  # servers do not close idle connections (idle_close)


def test_pending_exchanges_and_observations_keep_a_connection_busy(net):
    client, server = net.pair(client_tuning=SessionTuning(idle_timeout=60.0))
    net.start()
    client.send(get(b"obs", observe=0))
    client.send(get(b"slow"))
    net.flush()
    server.send(content(b"obs", b"0", observe=0))
    net.flush()
    net.advance(100)
    assert client.closed == [] and client.session.pending_requests == 2
    server.send(content(b"slow"))
    net.flush()
    assert client.session.pending_requests == 1  # the observation runs on
    net.advance(100)
    server.send(content(b"obs", b"1", observe=1))
    net.flush()
    net.advance(100)
    assert client.closed == []
    server.send(content(b"obs", b"final"))  # no Observe option: the end
    net.flush()
    assert client.session.pending_requests == 0
    net.advance(60)
    assert len(client.closed) == 1


def test_a_cancelled_request_lets_the_connection_become_idle(net):
    client, server = net.pair(client_tuning=SessionTuning(idle_timeout=60.0))
    net.start()
    client.send(get(b"c"))
    net.flush()
    net.advance(10)
    client.session.request_done(b"c", net.now)
    assert client.session.next_deadline() == net.now + 60.0
    # the server's request stays unanswered: a server does not close
    net.advance(1000)
    assert len(client.closed) == 1 and server.closed == []


def test_sessions_quiet_at_one_clock_tick_rank_in_the_order_they_went_quiet():
    """uvloop's clock counts milliseconds: three connections answered in
    one tick went idle at the same time, and the server's cap closed a
    recently busy one instead of the one quiet longest (CI failure of
    test_one_host_can_not_take_every_connection on uvloop)."""
    net = Net()
    pairs = []
    for _ in range(3):
        client, server = net.pair()
        net.start()
        client.send(get(b"q"))
        net.flush()
        pairs.append((client, server))
    for client, server in pairs:  # answered one after the other, same now
        net.ends, net.inbox = [client, server], {client: [], server: []}
        server.send(content(b"q"))
        net.flush()
        assert server.session.is_idle
    ranks = [server.session.idle_rank for _, server in pairs]
    assert len({quiet for quiet, _ in ranks}) == 1
    assert ranks == sorted(ranks) and len(set(ranks)) == 3


# --- partial frames ---------------------------------------------------------------------


def test_stalled_frame_is_aborted_after_frame_timeout(net):
    end = net.raw(tuning=SessionTuning(frame_timeout=20.0, frame_min_rate=None))
    end.session.start(net.now)
    data = csm() + frame(get(b"s"))
    end.session.receive_data(data[:-3], net.now)
    assert end.session.buffered
    net.advance(15)
    end.session.receive_data(data[-3:-2], net.now)  # a byte: the stall timer starts again
    assert end.session.next_deadline() == START + 35.0
    net.advance(19.999)
    assert end.closed == []
    net.advance(0.001)
    assert end.sent_messages()[-1].payload == b"message stalled for 20 s"
    assert end.requests == []


def test_trickling_frame_is_cut_at_the_frame_time_limit(net):
    end = net.raw(tuning=SessionTuning(frame_timeout=20.0, frame_time_limit=300.0, frame_min_rate=None))
    end.session.start(net.now)
    end.session.receive_data(csm(), net.now)
    data = frame(Message(code=Code.PUT, _token=b"t", uri_path=["x"], payload=b"p" * 200))
    for i, byte in enumerate(data[:-1]):
        end.session.receive_data(bytes([byte]), net.now)
        if end.closed:
            break
        net.advance(10)  # always within the stall limit
    assert end.sent_messages()[-1].payload == b"message not completed within 300 s"
    assert net.now == START + 300.0
    assert i == 30


def test_completed_frames_clear_the_frame_timer(net):
    end = net.raw(tuning=SessionTuning(frame_timeout=20.0))
    end.session.start(net.now)
    data = csm() + frame(get(b"a")) + frame(get(b"b"))
    end.session.receive_data(data[:-1], net.now)
    assert len(end.requests) == 1
    end.session.receive_data(data[-1:], net.now)
    assert len(end.requests) == 2 and not end.session.buffered
    assert end.session.next_deadline() is None
    net.advance(1000)
    assert end.closed == []


def test_frame_above_our_max_message_size_is_refused_from_its_header(net):
    end = net.raw(tuning=SessionTuning(max_message_size=2000))
    end.session.start(net.now)
    big = frame(Message(code=Code.PUT, _token=b"x", uri_path=["echo"], payload=b"z" * 3000))
    end.session.receive_data(csm() + big[:4], net.now)
    assert b"Max-Message-Size" in end.sent_messages()[-1].payload
    assert end.session.state is SessionState.CLOSED


def test_requests_before_a_framing_error_are_still_delivered(net):
    end = net.raw()
    end.session.start(net.now)
    end.session.receive_data(csm() + frame(get(b"ok")) + b"\x0f\x01garbage", net.now)
    assert [r.token for r in end.requests] == [b"ok"]
    assert b"token length" in end.sent_messages()[-1].payload
    # the response to it has nowhere to go any more
    assert not end.send(content(b"ok"))
    assert end.sent_codes() == [Code.CSM, Code.ABORT]


# --- signaling ---------------------------------------------------------------------------


def test_ping_gets_a_pong_with_its_token(net):
    end = net.raw()
    end.session.start(net.now)
    end.session.receive_data(csm() + frame(rfc.Ping().to_message(token=b"pt")), net.now)
    pong = end.sent_messages()[-1]
    assert (pong.code, pong.token) == (Code.PONG, b"pt")


def test_custody_pong_waits_for_earlier_requests(net):
    end = net.raw()
    end.session.start(net.now)
    end.session.receive_data(
        csm() + frame(get(b"r1")) + frame(get(b"r2")) + frame(rfc.Ping(custody=True).to_message(token=b"c1")),
        net.now,
    )
    assert end.sent_codes() == [Code.CSM]
    end.send(content(b"r2"))
    assert end.sent_codes() == [Code.CSM, Code.CONTENT]
    end.session.no_response_for(b"r1", net.now)  # answered by not answering
    pong = end.sent_messages()[-1]
    assert (pong.code, pong.token) == (Code.PONG, b"c1")
    assert rfc.Pong.from_message(pong).custody


def test_custody_ping_with_nothing_pending_is_answered_at_once(net):
    end = net.raw()
    end.session.start(net.now)
    end.session.receive_data(csm() + frame(rfc.Ping(custody=True).to_message(token=b"c")), net.now)
    assert end.sent_codes() == [Code.CSM, Code.PONG]


def test_release_routes_away_and_closes_when_quiet(net):
    client, server = net.pair()
    net.start()
    client.send(get(b"r"))
    net.flush()
    server.session.receive_data(b"", net.now)
    client.session.receive_data(frame(rfc.Release(hold_off=60).to_message()), net.now)
    assert client.released == [60]
    assert client.session.released and client.session.state is SessionState.OPEN
    server.send(content(b"r"))
    net.flush()
    ((reason, hard),) = client.closed
    assert not hard and "was closed" in str(reason)


def test_release_of_an_idle_connection_closes_it_at_once(net):
    end = net.raw(idle_close=True)
    end.session.start(net.now)
    end.session.receive_data(csm() + frame(rfc.Release().to_message()), net.now)
    assert end.released == [None]
    assert len(end.closed) == 1


def test_peer_abort_ends_the_connection_with_its_diagnostic(net):
    end = net.raw()
    end.session.start(net.now)
    end.session.receive_data(csm() + frame(rfc.Abort(diagnostic="go away").to_message()), net.now)
    ((reason, hard),) = end.closed
    assert "aborted the connection: go away" in str(reason) and not hard
    assert end.sent_codes() == [Code.CSM]  # no Abort in answer to an Abort


def test_empty_and_unknown_messages_are_ignored(net):
    end = net.raw()
    end.session.start(net.now)
    unknown_signal = Message(code=Code(230))
    reserved_class = Message(code=Code(0x25))  # 1.05
    end.session.receive_data(
        csm() + b"\x00\x00" + frame(unknown_signal) + frame(reserved_class) + frame(get(b"e")), net.now
    )
    assert [r.token for r in end.requests] == [b"e"]
    assert end.session.state is SessionState.OPEN


def test_unmatched_responses_are_dropped(net):
    end = net.raw()
    end.accept_responses = False
    end.session.start(net.now)
    end.session.receive_data(csm() + frame(content(b"nobody")), net.now)
    assert end.session.state is SessionState.OPEN


def test_local_abort(net):
    end = net.raw()
    end.session.abort("not yet started")  # nothing to write to
    assert end.written == [] and end.closed == []
    end.session.start(net.now)
    end.session.abort("enough", bad_csm_option=4)
    abort = rfc.Abort.from_message(end.sent_messages()[-1])
    assert (abort.diagnostic, abort.bad_csm_option) == ("enough", 4)
    assert "aborted locally: enough" in str(end.closed[0][0])
    end.session.abort("again")
    assert len(end.closed) == 1


# --- limits on sending -------------------------------------------------------------------


def test_peer_max_message_size_holds_for_what_we_send(net):
    end = net.raw(idle_close=True)
    end.session.start(net.now)
    end.session.receive_data(csm(300) + frame(get(b"big")), net.now)
    failures = []
    assert not end.send(Message(code=Code.POST, _token=b"L", uri_path=["x"], payload=b"L" * 400), failures.append)
    assert "exceeds the Max-Message-Size 300" in str(failures[0])
    assert end.session.pending_requests == 0
    end.send(content(b"big", b"B" * 400))
    replacement = end.sent_messages()[-1]
    assert (replacement.code, replacement.token) == (Code.INTERNAL_SERVER_ERROR, b"big")
    assert end.session.state is SessionState.OPEN


def test_full_write_buffer_refuses_requests_and_drops_a_peer_that_does_not_read(net):
    end = net.raw(tuning=SessionTuning(write_buffer_limit=1000), idle_close=True)
    end.session.start(net.now)
    end.session.receive_data(csm() + frame(get(b"r")), net.now)
    end.backlog = 995
    failures = []
    assert not end.send(get(b"mine"), failures.append)
    assert "Send buffer" in str(failures[0])
    assert end.session.state is SessionState.OPEN
    end.send(content(b"r", b"x" * 20))
    ((reason, hard),) = end.closed
    assert hard and "stopped reading" in str(reason)


def test_unencodable_messages_are_refused(net):
    end = net.raw(idle_close=True)
    end.session.start(net.now)
    end.session.receive_data(csm(), net.now)
    failures = []
    assert not end.send(get(b"123456789"), failures.append)  # token too long
    assert "can not be sent" in str(failures[0])


def test_ended_session_does_nothing_more(net):
    end = net.raw(idle_close=True)
    end.session.start(net.now)
    end.session.receive_data(csm(), net.now)
    end.send(get(b"x"))
    end.session.connection_lost(error.NetworkError("gone"))
    assert end.closed == []  # the transport ended it: no callback
    assert end.session.state is SessionState.CLOSED and end.session.is_idle
    written = list(end.written)
    failures = []
    end.session.receive_data(frame(get(b"late")), net.now)
    assert not end.send(get(b"y"), failures.append)
    assert not end.send(content(b"z"))
    end.session.handle_timer(net.now + 1e6)
    assert end.requests == [] and end.written == written
    assert "is closed" in str(failures[0])
    assert end.session.next_deadline() is None and end.session.take_added_deadline() is None


# --- the seam: the same session over WebSocket framing --------------------------------------


def test_session_over_websocket_framing(net):
    client, server = net.pair(framer=WebSocketFramer)
    net.start()
    client.send(get(b"ws", payload=b"data"))
    net.flush()
    server.send(content(b"ws", b"over websockets"))
    net.flush()
    assert [r.payload for r in client.responses] == [b"over websockets"]
    # one message per write, Len nibble 0 (RFC 8323 §4.2)
    assert all(frame[0] >> 4 == 0 for frame in client.written + server.written)
    assert client.written[1] == rfc.encode_ws_message(get(b"ws", payload=b"data"))
    assert not server.session.buffered


def test_websocket_framing_errors_abort(net):
    client, server = net.pair(framer=WebSocketFramer, server_tuning=SessionTuning(max_message_size=100))
    net.start()
    server.session.receive_data(rfc.encode_message(get(b"x" * 4, path="p" * 20)), net.now)  # with a Len
    assert server.sent_messages()[-1].code == Code.ABORT
    assert b"Len field" in server.sent_messages()[-1].payload

    client, server = net.pair(framer=WebSocketFramer, server_tuning=SessionTuning(max_message_size=100))
    net.start()
    server.session.receive_data(rfc.encode_ws_message(content(b"", b"p" * 200)), net.now)
    assert b"Max-Message-Size" in server.sent_messages()[-1].payload


class HeldBelow:
    """What a WebSocket layer holds of an incomplete message, as the
    ``pending`` of a WebSocketFramer."""

    def __init__(self):
        self.bytes = 0

    def framer(self, max_message_size):
        return WebSocketFramer(max_message_size, pending=lambda: self.bytes)


def test_message_stalling_in_the_websocket_layer_is_aborted(net):
    held = HeldBelow()
    tuning = SessionTuning(frame_timeout=5.0, frame_time_limit=12.0, frame_min_rate=None, server_idle_timeout=None)
    client, server = net.pair(framer=held.framer, server_tuning=tuning)
    net.start()
    assert server.session.next_deadline() is None
    # part of a WebSocket frame arrives, then nothing
    held.bytes = 100
    server.session.receive_partial(net.now)
    started = net.now
    net.advance(4.999)
    assert server.session.state is SessionState.OPEN
    net.advance(0.002)
    assert server.session.state is SessionState.CLOSED and net.now - started < 5.002
    assert b"stalled" in server.sent_messages()[-1].payload

    # trickling: every piece postpones the stall timer, not the time limit
    client, server = net.pair(framer=held.framer, server_tuning=tuning)
    net.start()
    held.bytes = 1
    started = net.now
    server.session.receive_partial(net.now)
    while server.session.state is SessionState.OPEN:
        net.advance(1.0)
        held.bytes += 1
        server.session.receive_partial(net.now)
    assert 12.0 <= net.now - started <= 13.0
    assert b"not completed" in server.sent_messages()[-1].payload


def test_completed_websocket_messages_and_control_frames_clear_the_frame_timer(net):
    held = HeldBelow()
    tuning = SessionTuning(frame_timeout=5.0, ping_interval=30.0, ping_timeout=3.0)
    client, server = net.pair(framer=held.framer, server_tuning=tuning)
    net.start()
    held.bytes = 50
    server.session.receive_partial(net.now)
    net.advance(4.0)
    held.bytes = 0  # the frame completed: the message is delivered
    server.session.receive_data(rfc.encode_ws_message(get(b"a")), net.now)
    assert server.requests[-1].token == b"a"
    server.send(content(b"a"))
    net.advance(20.0)
    assert server.session.state is SessionState.OPEN
    # a WebSocket control frame (no CoAP message) answers a keepalive Ping
    net.advance(10.5, network=lambda: None)
    assert server.sent_codes()[-1] == Code.PING
    server.session.receive_partial(net.now)
    net.advance(5.0, network=lambda: None)
    assert server.session.state is SessionState.OPEN


# --- a hypothesis state machine over both ends -----------------------------------------------


class StreamNet(Net):
    """Bytes in flight per receiver, delivered in pieces of any size."""

    def pair(self, **kwargs):
        client, server = super().pair(**kwargs)
        self.wire = {client: bytearray(), server: bytearray()}
        return client, server

    def transmit(self, sender, frame):
        if sender.peer is not None:
            self.wire[sender.peer] += frame


class SessionMachine(RuleBasedStateMachine):
    """A client and a server session over a byte stream delivered in
    arbitrary pieces, with requests, observations, cancellations, No-Response,
    Pings with and without Custody, Releases, garbage and time passing.

    Timers are driven as the asyncio adapter drives them: one timer per end,
    moved earlier only by take_added_deadline() and re-armed at
    next_deadline() after it fired. The invariants: that timer is never
    later than the session's real deadline, handle_timer leaves nothing due,
    a session ends at most once and holds nothing after that, the client's
    pending count matches what it asked for, responses arrive in the order
    they were sent, and a custody Pong never overtakes a response to an
    earlier request."""

    def __init__(self):
        super().__init__()
        self.ends = ()

    @initialize(prompt=st.booleans(), keepalive=st.sampled_from([None, 2.0, 10.0]))
    def connect(self, prompt, keepalive):
        """In half the runs, what is written arrives after every step (the
        exchanges get far); in the others only when ``deliver`` moves it,
        in pieces. Keepalive Pings run in most of them."""
        self.prompt_network = prompt
        self.net = StreamNet()
        tuning = SessionTuning(
            csm_timeout=5.0, frame_timeout=3.0, frame_time_limit=7.0, idle_timeout=50.0,
            ping_interval=keepalive, ping_timeout=5.0,
        )
        self.client, self.server = self.net.pair(client_tuning=tuning, server_tuning=tuning)
        self.client.token_layer = self.client_token_layer
        self.ends = (self.client, self.server)
        self.tokens = 0
        self.asked = {}  # token -> "plain", "observe", "observing" or "done"
        self.answered = set()  # server side: tokens finally answered (or not to be)
        self.server_log = []  # ("in", message) / ("out", message) / ("no-response", token)
        self.server_reader = rfc.StreamParser(1 << 30)
        self.sent_responses = []  # (token, payload) in the order the server sent them
        self.server.write_log = self.server_log
        for end in self.ends:
            end.session.start(self.net.now)
        self.deliver(to_server=True, size=100)
        self.deliver(to_server=False, size=100)


    def open(self, end):
        return end.session.state is not SessionState.CLOSED

    # --- rules ---------------------------------------------------------------------

    @rule(observe=st.booleans())
    def client_request(self, observe):
        self.tokens += 1
        token = b"%d" % self.tokens
        failures = []
        tracked = self.client.send(get(token, observe=0 if observe else None), failures.append)
        assert tracked == (self.open(self.client) and not failures)
        if tracked:
            self.asked[token] = "observe" if observe else "plain"

    @rule(data=st.data(), how=st.sampled_from(["final", "notification", "no-response"]))
    def server_answers(self, data, how):
        waiting = [r for r in self.server.requests if r.token not in self.answered]
        if not waiting or not self.open(self.server):
            return
        request = data.draw(st.sampled_from(waiting))
        token = request.token
        if how == "no-response":
            self.answered.add(token)
            self.server_log.append(("no-response", token))
            self.server.session.no_response_for(token, self.net.now)
        else:
            observing = how == "notification" and request.opt.observe == 0
            payload = b"%d" % len(self.sent_responses)
            response = content(token, payload, observe=len(self.sent_responses) if observing else None)
            if not observing:
                self.answered.add(token)
            self.sent_responses.append((token, payload))
            self.server.send(response)

    @rule(data=st.data())
    def client_loses_interest(self, data):
        live = [t for t, state in self.asked.items() if state != "done"]
        if not live:
            return
        token = data.draw(st.sampled_from(live))
        self.client.session.request_done(token, self.net.now)
        if self.asked[token] != "observing":
            self.asked[token] = "done"

    @rule(custody=st.booleans())
    def client_pings(self, custody):
        self.tokens += 1
        self.client.send(rfc.Ping(custody=custody).to_message(token=b"p%d" % self.tokens))

    @rule(hold_off=st.none() | st.integers(0, 100), rarely=st.integers(0, 9))
    def server_releases(self, hold_off, rarely):
        if rarely == 0:
            self.server.send(rfc.Release(hold_off=hold_off).to_message())

    @rule(garbage=st.binary(min_size=1, max_size=6), rarely=st.integers(0, 9))
    def garbage_to_the_server(self, garbage, rarely):
        """Bytes no client wrote, among the frames in flight: they may
        parse as anything (and be answered), or break the framing."""
        if rarely == 0:
            self.net.wire[self.server] += garbage

    @rule(to_server=st.booleans(), size=st.integers(1, 200) | st.just(1 << 20))
    def deliver(self, to_server, size):
        receiver = self.server if to_server else self.client
        wire = self.net.wire[receiver]
        piece = bytes(wire[:size])
        del wire[:size]
        if not piece:
            return
        if receiver is self.server and self.open(self.server):
            try:
                arrived = self.server_reader.feed(piece)
            except rfc.FramingError as e:
                arrived = e.messages
            self.server_log.extend(("in", message) for message in arrived)
        receiver.session.receive_data(piece, self.net.now)

    def deliver_everything(self):
        while any(self.net.wire.values()):
            self.deliver(to_server=True, size=1 << 20)
            self.deliver(to_server=False, size=1 << 20)

    @rule(
        seconds=st.one_of(st.floats(0, 2), st.floats(0, 2), st.floats(0, 2), st.sampled_from([6.0, 30.0])),
        network_keeps_up=st.booleans(),
    )
    def time_passes(self, seconds, network_keeps_up):
        """The clock moves on; if the network keeps up, what was written
        arrives before each timer fires."""
        self.net.advance(seconds, self.deliver_everything if network_keeps_up else lambda: None)

    def client_token_layer(self, response):
        """What the token layer does with a response the client session
        delivers (synchronously, as the real one does)."""
        state = self.asked.get(response.token)
        if state in ("plain", "observe") and response.opt.observe is None:
            self.asked[response.token] = "done"
            self.client.session.request_done(response.token, self.net.now)
        elif state == "observe":
            self.asked[response.token] = "observing"
        elif state == "observing" and response.opt.observe is None:
            self.asked[response.token] = "done"

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def network_delivers(self):
        if self.prompt_network:
            self.deliver_everything()

    @invariant()
    def timers_are_never_late(self):
        for end in self.ends:
            self.net.timer_of(end)

    @invariant()
    def ended_sessions_hold_nothing(self):
        for end in self.ends:
            assert len(end.closed) <= 1
            if not self.open(end):
                assert end.session.is_idle and end.session.pending_requests == 0
                assert end.session.next_deadline() is None

    @invariant()
    def client_pending_count_matches_what_it_asked(self):
        if self.open(self.client):
            live = sum(1 for state in self.asked.values() if state != "done")
            assert self.client.session.pending_requests == live

    @invariant()
    def responses_arrive_once_and_in_order(self):
        received = [(m.token, m.payload) for m in self.client.all_responses]
        assert received == self.sent_responses[: len(received)]

    @invariant()
    def custody_pongs_wait_for_earlier_requests(self):
        answered = set()
        requests_seen = set()
        owed = {}
        for kind, item in self.server_log:
            if kind == "in" and item.code == Code.GET:
                requests_seen.add(item.token)
            elif kind == "in" and item.code == Code.PING:
                owed[item.token] = set(requests_seen)
            elif kind == "no-response":
                answered.add(item)
            elif kind == "out" and item.code == Code.CONTENT:
                answered.add(item.token)
            elif kind == "out" and item.code == Code.PONG and rfc.Pong.from_message(item).custody:
                assert owed[item.token] <= answered


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
