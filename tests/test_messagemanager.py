"""The message layer core (aiocoap.messagemanager.MessageLayer), driven by a
virtual clock over an in-memory link that can drop and duplicate datagrams.
No sockets, no sleeping: RFC 7252 timing is checked against the fake clock.
"""

import logging
import random

import pytest

from aiocoap import error
from aiocoap.message import Message
from aiocoap.messagemanager import MessageLayer, no_response_suppresses
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import Type
from transport_fakes import CountingRemote

log = logging.getLogger("test-messagemanager")


class Peer:
    """One endpoint: a MessageLayer plus records of what it delivered."""

    def __init__(self, name, net, tuning=None, **kwargs):
        self.name = name
        self.net = net
        self.requests = []
        self.responses = []
        self.accept_responses = True
        self.core = MessageLayer(
            send=lambda data, remote: net.transmit(self, data, remote),
            deliver_request=self.requests.append,
            deliver_response=self._deliver_response,
            log=log,
            tuning=tuning or TransportTuning(),
            rng=random.Random(name),
            **kwargs,
        )

    def _deliver_response(self, message):
        if not self.accept_responses:
            return False
        self.responses.append(message)
        return True

    def __repr__(self):
        return f"<Peer {self.name}>"


class Net:
    """Delivers datagrams between peers at the current virtual time; the
    ``drop`` predicate can lose some."""

    def __init__(self):
        self.now = 1000.0
        self.peers = {}
        self.sent = []  # (sender, data, remote)
        self.drop = lambda sender, data, remote: False
        self.queue = []

    def add(self, name, **kwargs):
        peer = Peer(name, self, **kwargs)
        self.peers[name] = peer
        return peer

    def transmit(self, sender, data, remote):
        self.sent.append((sender, data, remote))
        if self.drop(sender, data, remote):
            return
        self.queue.append((self.peers[remote], data, sender.name))

    def flush(self):
        while self.queue:
            peer, data, source = self.queue.pop(0)
            peer.core.receive_datagram(data, source, self.now)

    def advance(self, seconds):
        """Move the clock forward, firing every deadline on the way."""
        end = self.now + seconds
        while True:
            deadlines = [p.core.next_deadline() for p in self.peers.values()]
            deadlines = [d for d in deadlines if d is not None and d <= end]
            if not deadlines:
                break
            self.now = max(self.now, min(deadlines))
            for p in self.peers.values():
                p.core.handle_timer(self.now)
            self.flush()
        self.now = end


def request(code=Code.GET, mtype=None, token=b"tk", path=("x",), remote="server", **kwargs):
    m = Message(code=code, _mtype=mtype, _token=token, uri_path=path, **kwargs)
    m.remote = remote
    return m


def response_to(req, code=Code.CONTENT, payload=b"hello", remote="client"):
    m = Message(code=code, payload=payload, _token=req.token)
    m.remote = remote
    return m


@pytest.fixture
def net():
    return Net()


def test_piggybacked_response(net):
    client, server = net.add("client"), net.add("server")
    failures = []
    client.core.send_message(request(), net.now, failures.append)
    net.flush()
    assert len(server.requests) == 1
    incoming = server.requests[0]
    assert incoming.mtype is Type.CON
    server.core.send_message(response_to(incoming), net.now)
    net.flush()
    assert [r.payload for r in client.responses] == [b"hello"]
    assert client.responses[0].mtype is Type.ACK
    assert client.responses[0].mid == incoming.mid
    # nothing outstanding, no retransmission later
    net.advance(100)
    assert failures == []
    assert client.core.outgoing_size == 0
    assert sum(1 for s, _, _ in net.sent if s is client) == 1


def test_separate_response_after_empty_ack(net):
    client, server = net.add("client"), net.add("server")
    client.core.send_message(request(), net.now)
    net.flush()
    incoming = server.requests[0]
    net.advance(0.2)  # > EMPTY_ACK_DELAY
    empty_acks = [d for s, d, _ in net.sent if s is server]
    assert len(empty_acks) == 1 and Message.decode(empty_acks[0]).code == Code.EMPTY
    assert client.core.outgoing_size == 0  # the empty ACK stopped retransmission
    server.core.send_message(response_to(incoming), net.now)
    net.flush()
    assert len(client.responses) == 1
    separate = client.responses[0]
    assert separate.mtype is Type.CON and separate.mid != incoming.mid
    # the client ACKed the separate response, so the server stops too
    assert server.core.outgoing_size == 0


def _answering_inline(net, name="server", fail=False):
    """A peer whose requests are answered (piggybacked) within their
    delivery, as a server whose render finishes at once does; with
    ``fail`` the delivery raises after nothing was sent."""
    peer = net.add(name)

    def deliver(message):
        if fail:
            raise RuntimeError("delivery failed")
        response = response_to(message)
        peer.core.send_message(response, net.now)

    peer.core = MessageLayer(
        send=lambda data, remote: net.transmit(peer, data, remote),
        deliver_request=deliver,
        deliver_response=peer._deliver_response,
        log=log,
        tuning=TransportTuning(),
        rng=random.Random(name),
    )
    return peer


def test_request_answered_within_its_delivery_leaves_no_empty_ack_deadline(net):
    """A CON request answered while it is delivered needs no empty ACK:
    nothing is queued for one, so a server answering one request at a
    time has no timer to wake for (only the dedup expiry, much later)."""
    client, server = net.add("client"), _answering_inline(net)
    client.core.send_message(request(), net.now)
    net.flush()
    assert [m.mtype for m in client.responses] == [Type.ACK]
    assert server.core.take_added_deadline() > net.now + TransportTuning().EXCHANGE_LIFETIME - 1
    assert server.core.next_deadline() > net.now + 1
    net.advance(0.2)  # past EMPTY_ACK_DELAY: no empty ACK follows
    assert sum(1 for s, _, _ in net.sent if s is server) == 1


def test_request_whose_delivery_fails_still_gets_its_empty_ack(net):
    """If handing a CON request up raises, the request still counts as
    being processed: its empty ACK goes out after EMPTY_ACK_DELAY (and
    stops the client's retransmissions)."""
    client, server = net.add("client"), _answering_inline(net, fail=True)
    client.core.send_message(request(), net.now)
    with pytest.raises(RuntimeError):
        net.flush()
    assert server.core.next_deadline() <= net.now + TransportTuning().EMPTY_ACK_DELAY
    net.advance(0.2)
    empty_acks = [Message.decode(d) for s, d, _ in net.sent if s is server]
    assert [(m.mtype, m.code) for m in empty_acks] == [(Type.ACK, Code.EMPTY)]
    assert client.core.outgoing_size == 0


def test_retransmission_schedule_and_timeout(net):
    tuning = TransportTuning(ACK_TIMEOUT=2.0, ACK_RANDOM_FACTOR=1.5, MAX_RETRANSMIT=4)
    client = net.add("client", tuning=tuning)
    net.add("server")
    net.drop = lambda sender, data, remote: True
    failures = []
    start = net.now
    client.core.send_message(request(), net.now, failures.append)
    times = []
    original = net.transmit

    def recording(sender, data, remote):
        times.append(net.now - start)
        original(sender, data, remote)

    net.transmit = recording
    net.advance(200)
    # 4 retransmissions at doubling intervals
    assert len(times) == 4
    intervals = [times[0]] + [b - a for a, b in zip(times, times[1:])]
    first = intervals[0]
    assert 2.0 <= first <= 3.0
    for previous, current in zip(intervals, intervals[1:]):
        assert current == pytest.approx(previous * 2)
    assert len(failures) == 1
    assert isinstance(failures[0], error.ConRetransmitsExceeded)
    assert isinstance(failures[0], error.RequestTimedOut)
    assert failures[0].transmissions == 5
    # total wait: timeout * (2**5 - 1) after the first transmission
    assert failures[0].waited == pytest.approx(first * 31)
    assert failures[0].waited <= tuning.MAX_TRANSMIT_WAIT


def test_lossy_link_recovers_with_retransmission(net):
    tuning = TransportTuning(ACK_TIMEOUT=0.5)
    client, server = net.add("client", tuning=tuning), net.add("server", tuning=tuning)
    dropped = []

    def drop_first_two(sender, data, remote):
        if sender is client and len(dropped) < 2:
            dropped.append(data)
            return True
        return False

    net.drop = drop_first_two
    failures = []
    client.core.send_message(request(), net.now, failures.append)
    net.advance(3)
    assert len(server.requests) == 1
    server.core.send_message(response_to(server.requests[0]), net.now)
    net.flush()
    assert len(client.responses) == 1 and failures == []


def test_duplicate_con_request_answered_from_cache(net):
    """A lost ACK makes the client retransmit; the server must not run the
    request again but resend its response (RFC 7252 §4.5)."""
    tuning = TransportTuning(ACK_TIMEOUT=0.5)
    client, server = net.add("client", tuning=tuning), net.add("server", tuning=tuning)
    lost = []

    def drop_first_response(sender, data, remote):
        if sender is server and not lost:
            lost.append(data)
            return True
        return False

    net.drop = drop_first_response
    client.core.send_message(request(code=Code.POST), net.now)
    net.flush()
    server.core.send_message(response_to(server.requests[0], code=Code.CHANGED), net.now)
    net.flush()
    assert client.responses == []
    net.advance(2)
    assert len(server.requests) == 1, "the POST must be processed once"
    assert len(client.responses) == 1
    assert client.responses[0].code == Code.CHANGED
    # the resent reply is byte-identical to the lost one
    assert [d for s, d, _ in net.sent if s is server][-1] == lost[0]


def test_duplicate_while_processing_after_empty_ack(net):
    client, server = net.add("client"), net.add("server")
    raw = request()
    raw.mtype = Type.CON
    raw.mid = 0x1234
    data = raw.encode()
    server.core.receive_datagram(data, "client", net.now)
    server.core.receive_datagram(data, "client", net.now)
    assert len(server.requests) == 1
    assert [d for s, d, _ in net.sent if s is server] == []  # still processing, within delay
    net.advance(0.2)
    server.core.receive_datagram(data, "client", net.now)
    acks = [Message.decode(d) for s, d, _ in net.sent if s is server]
    assert [(m.mtype, m.mid, m.code) for m in acks] == [(Type.ACK, 0x1234, Code.EMPTY)] * 2


def test_non_request_dedup_and_non_response(net):
    client, server = net.add("client"), net.add("server")
    req = request(mtype=Type.NON)
    req.mid = 7
    data = req.encode()
    for _ in range(3):
        server.core.receive_datagram(data, "client", net.now)
    assert len(server.requests) == 1
    response = response_to(server.requests[0])
    response.mtype = Type.NON
    server.core.send_message(response, net.now)
    sent = Message.decode(net.sent[-1][1])
    assert sent.mtype is Type.NON and sent.code == Code.CONTENT


def test_non_request_times_out(net):
    tuning = TransportTuning(REQUEST_TIMEOUT=5.0)
    client = net.add("client", tuning=tuning)
    net.add("server")
    net.drop = lambda *a: True
    failures = []
    client.core.send_message(request(mtype=Type.NON), net.now, failures.append)
    net.advance(4.9)
    assert failures == []
    net.advance(0.2)
    assert len(failures) == 1 and type(failures[0]) is error.RequestTimedOut


def test_stop_cancels_retransmission(net):
    client = net.add("client")
    net.add("server")
    net.drop = lambda *a: True
    failures = []
    stop = client.core.send_message(request(), net.now, failures.append)
    stop()
    net.advance(300)
    assert failures == []
    assert len(net.sent) == 1


def test_ping_answered_with_rst(net):
    server = net.add("server")
    net.add("client")
    ping = Message(_mtype=Type.CON, _mid=99, code=Code.EMPTY)
    server.core.receive_datagram(ping.encode(), "client", net.now)
    rst = Message.decode(net.sent[-1][1])
    assert (rst.mtype, rst.mid, rst.code) == (Type.RST, 99, Code.EMPTY)
    assert server.requests == []


def test_rst_fails_request(net):
    client, server = net.add("client"), net.add("server")
    failures = []
    client.core.send_message(request(), net.now, failures.append)
    mid = Message.decode(net.sent[-1][1]).mid
    client.core.receive_datagram(Message(_mtype=Type.RST, _mid=mid, code=Code.EMPTY).encode(), "server", net.now)
    assert len(failures) == 1 and isinstance(failures[0], error.ResetReceived)
    net.queue.clear()
    net.advance(300)
    assert len(failures) == 1


def test_unexpected_con_response_rst_non_dropped(net):
    client = net.add("client")
    net.add("server")
    client.accept_responses = False
    con = Message(_mtype=Type.CON, _mid=5, code=Code.CONTENT, _token=b"zz")
    client.core.receive_datagram(con.encode(), "server", net.now)
    reply = Message.decode(net.sent[-1][1])
    assert (reply.mtype, reply.mid) == (Type.RST, 5)
    count = len(net.sent)
    non = Message(_mtype=Type.NON, _mid=6, code=Code.CONTENT, _token=b"zz")
    client.core.receive_datagram(non.encode(), "server", net.now)
    assert len(net.sent) == count


@pytest.mark.parametrize(
    "data,answer",
    [
        (bytes([0x49, 0x01, 0x00, 0x01]) + b"12345678", "rst"),  # CON, TKL 9
        (bytes([0x40, 0x01, 0x00, 0x02, 0xF0]), "rst"),  # CON, nibble 15
        (bytes([0x40, 0x00, 0x00, 0x03, 0xFF]), "rst"),  # CON empty with bytes
        (bytes([0x59, 0x01, 0x00, 0x04]) + b"12345678", None),  # NON, TKL 9
        (bytes([0x81, 0x01, 0x00, 0x05]), None),  # version 2
        (b"\x40", None),  # too short
    ],
)
def test_malformed_input(net, data, answer):
    server = net.add("server")
    net.add("client")
    server.core.receive_datagram(data, "client", net.now)
    assert server.requests == []
    if answer is None:
        assert net.sent == []
    else:
        rst = Message.decode(net.sent[-1][1])
        assert rst.mtype is Type.RST and rst.mid == int.from_bytes(data[2:4], "big")


def test_dedup_expires_after_exchange_lifetime(net):
    tuning = TransportTuning()
    server = net.add("server", tuning=tuning)
    net.add("client")
    raw = request()
    raw.mtype, raw.mid = Type.CON, 1
    server.core.receive_datagram(raw.encode(), "client", net.now)
    assert server.core.dedup_size == 1
    net.advance(tuning.EXCHANGE_LIFETIME - 1)
    assert server.core.dedup_size == 1
    net.advance(2)
    assert server.core.dedup_size == 0
    server.core.receive_datagram(raw.encode(), "client", net.now)
    assert len(server.requests) == 2


def test_dedup_cache_is_capped(net):
    server = net.add("server", max_dedup_entries=1000)
    net.add("client")
    for mid in range(5000):
        raw = Message(_mtype=Type.NON, _mid=mid, code=Code.GET, _token=b"t")
        server.core.receive_datagram(raw.encode(), "client", net.now)
    assert 900 <= server.core.dedup_size <= 1000
    assert len(server.requests) == 5000
    # the newest exchanges are the ones remembered
    raw = Message(_mtype=Type.NON, _mid=4999, code=Code.GET, _token=b"t")
    server.core.receive_datagram(raw.encode(), "client", net.now)
    assert len(server.requests) == 5000


def test_message_ids_unique_per_peer_and_skip_in_flight(net):
    # (NSTART raised so that all 500 go out at once)
    client = net.add("client", tuning=TransportTuning(NSTART=1000))
    net.add("server")
    net.add("other")
    net.drop = lambda *a: True
    mids = set()
    for _ in range(500):
        client.core.send_message(request(), net.now)
        mids.add(Message.decode(net.sent[-1][1]).mid)
    assert len(mids) == 500
    client.core.send_message(request(remote="other"), net.now)
    assert client.core.outgoing_size == 501


def test_no_response_for_con_sends_empty_ack(net):
    server = net.add("server")
    net.add("client")
    raw = request(no_response=26)
    raw.mtype, raw.mid = Type.CON, 77
    server.core.receive_datagram(raw.encode(), "client", net.now)
    server.core.no_response_for("client", raw.token)
    ack = Message.decode(net.sent[-1][1])
    assert (ack.mtype, ack.mid, ack.code) == (Type.ACK, 77, Code.EMPTY)
    # a duplicate gets the same empty ACK, and no second delivery
    server.core.receive_datagram(raw.encode(), "client", net.now)
    assert len(server.requests) == 1
    assert Message.decode(net.sent[-1][1]).mid == 77


def test_no_response_suppression_rules():
    assert no_response_suppresses(2, Code.CONTENT)
    assert not no_response_suppresses(2, Code.NOT_FOUND)
    assert no_response_suppresses(8, Code.NOT_FOUND)
    assert no_response_suppresses(16, Code.INTERNAL_SERVER_ERROR)
    assert no_response_suppresses(26, Code.CHANGED)
    assert not no_response_suppresses(0, Code.CONTENT)
    assert not no_response_suppresses(None, Code.CONTENT)


def test_fail_remote_and_shutdown(net):
    client = net.add("client")
    net.add("server")
    net.add("other")
    net.drop = lambda *a: True
    failures = []
    client.core.send_message(request(), net.now, failures.append)
    client.core.send_message(request(remote="other"), net.now, failures.append)
    client.core.fail_remote("server", error.NetworkError("port unreachable"))
    assert [type(f) for f in failures] == [error.NetworkError]
    client.core.shutdown()
    assert [type(f) for f in failures] == [error.NetworkError, error.LibraryShutdown]
    assert client.core.next_deadline() is None


def test_dedup_cache_is_capped_in_bytes(net, caplog):
    """Large piggybacked replies count against max_dedup_bytes: at the cap
    the oldest exchanges are forgotten early (their duplicates are
    processed again), the newest keep their replies, and one warning says
    so."""
    server = net.add("server", max_dedup_bytes=100_000)
    net.add("client")
    payload = b"x" * 1000
    with caplog.at_level(logging.WARNING):
        for mid in range(1000):
            raw = Message(_mtype=Type.CON, _mid=mid, code=Code.GET, _token=b"t%d" % mid)
            server.core.receive_datagram(raw.encode(), "client", net.now)
            server.core.send_message(response_to(server.requests[-1], payload=payload), net.now)
            assert server.core.dedup_bytes <= 100_000
            net.now += 0.01  # (a new expiry bucket now and then)
    assert 50 <= server.core.dedup_size <= 100  # (forgotten in buckets of half a second)
    assert len([r for r in caplog.records if "Deduplication cache full" in r.getMessage()]) == 1
    sent_before = len(net.sent)
    newest = Message(_mtype=Type.CON, _mid=999, code=Code.GET, _token=b"t999")
    server.core.receive_datagram(newest.encode(), "client", net.now)
    assert len(server.requests) == 1000  # answered from the cache
    assert Message.decode(net.sent[-1][1]).payload == payload and len(net.sent) == sent_before + 1
    oldest = Message(_mtype=Type.CON, _mid=0, code=Code.GET, _token=b"t0")
    server.core.receive_datagram(oldest.encode(), "client", net.now)
    assert len(server.requests) == 1001  # forgotten: processed again
    # expiry gives the bytes back
    net.advance(TransportTuning().EXCHANGE_LIFETIME + 1)
    assert server.core.dedup_size == 0 and server.core.dedup_bytes == 0


def test_dedup_memory_per_exchange_is_compact(net):
    """Each remembered exchange (here: a piggybacked 2.05 with a short
    payload) costs well under 256 bytes of Python heap."""
    import tracemalloc

    server = net.add("server", max_dedup_entries=10**6)
    net.add("client")
    remote = "client"
    requests = []
    # Many more than the 2000 tuples CPython keeps on its free list, whose
    # recycled memory would otherwise be counted against us.
    for n in range(20000):
        raw = Message(_mtype=Type.CON, _mid=n & 0xFFFF, code=Code.GET, _token=n.to_bytes(3, "big"))
        requests.append(raw.encode())
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for data in requests:
        server.core.receive_datagram(data, remote, net.now)
        incoming = server.requests.pop()
        resp = Message(code=Code.CONTENT, payload=b"22.3 C", _token=incoming.token)
        resp.remote = remote
        server.core.send_message(resp, net.now)
    net.sent.clear()
    net.queue.clear()
    # The empty-ACK queue holds an entry only for EMPTY_ACK_DELAY.
    net.advance(0.2)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    per_exchange = growth / len(requests)
    assert server.core.dedup_size == 20000
    assert per_exchange < 256, per_exchange


def test_heap_stays_bounded_by_live_exchanges(net):
    """Tracked NON notifications that are superseded (stopped) and CONs
    that are acknowledged leave stale heap entries; they are compacted away
    instead of piling up for EXCHANGE_LIFETIME."""
    server = net.add("server")
    net.add("client")
    net.drop = lambda *a: True
    for i in range(20000):
        m = Message(code=Code.CONTENT, _mtype=Type.NON, _token=b"t", payload=b"%d" % i, observe=i)
        m.remote = "client"
        stop = server.core.send_message(m, net.now, lambda exc: None)
        stop()
    assert server.core.outgoing_size == 0
    assert server.core._tracked == {}
    assert len(server.core._heap) <= 1024 + 2
    assert server.core._tracked_slots <= 1024 + 2
    assert sum(len(bucket[1]) for bucket in server.core._tracked_expiry) == server.core._tracked_slots


def _notification(i, remote="client"):
    m = Message(code=Code.CONTENT, _mtype=Type.NON, _token=b"t", payload=b"%d" % i, observe=i)
    m.remote = remote
    return m


def test_reset_to_tracked_non_notification_reaches_monitor(net):
    server = net.add("server")
    net.add("client")
    failures = []
    server.core.send_message(_notification(1), net.now, failures.append)
    mid = Message.decode(net.sent[-1][1]).mid
    # An ACK is no answer to a NON: ignored, still tracked
    server.core.receive_datagram(Message(_mtype=Type.ACK, _mid=mid, code=Code.EMPTY).encode(), "client", net.now)
    assert failures == []
    server.core.receive_datagram(Message(_mtype=Type.RST, _mid=mid, code=Code.EMPTY).encode(), "client", net.now)
    assert len(failures) == 1 and isinstance(failures[0], error.ResetReceived)
    # once only
    server.core.receive_datagram(Message(_mtype=Type.RST, _mid=mid, code=Code.EMPTY).encode(), "client", net.now)
    assert len(failures) == 1


def test_tracked_non_notification_expires_after_exchange_lifetime(net):
    tuning = TransportTuning()
    server = net.add("server", tuning=tuning)
    net.add("client")
    failures = []
    server.core.send_message(_notification(1), net.now, failures.append)
    mid = Message.decode(net.sent[-1][1]).mid
    net.advance(tuning.EXCHANGE_LIFETIME - 1)
    assert len(server.core._tracked) == 1
    net.advance(2 + server.core._BUCKET)
    assert server.core._tracked == {} and server.core._tracked_slots == 0
    assert server.core.next_deadline() is None
    server.core.receive_datagram(Message(_mtype=Type.RST, _mid=mid, code=Code.EMPTY).encode(), "client", net.now)
    assert failures == []


def test_stopped_tracked_notification_ignores_reset(net):
    server = net.add("server")
    net.add("client")
    failures = []
    stop = server.core.send_message(_notification(1), net.now, failures.append)
    mid = Message.decode(net.sent[-1][1]).mid
    stop()
    stop()  # idempotent
    server.core.receive_datagram(Message(_mtype=Type.RST, _mid=mid, code=Code.EMPTY).encode(), "client", net.now)
    assert failures == []


def test_tracked_mids_are_not_reused(net):
    server = net.add("server")
    net.add("client")
    server.core.send_message(_notification(0), net.now, lambda exc: None)
    first = Message.decode(net.sent[-1][1]).mid
    # Wrap the MID counter around: the tracked MID is skipped
    server.core._mids["client"] = [first]
    server.core.send_message(_notification(1), net.now, None)
    assert Message.decode(net.sent[-1][1]).mid == (first + 1) & 0xFFFF


def test_tracked_notifications_fail_on_network_error_and_shutdown(net):
    server = net.add("server")
    net.add("client")
    net.add("other")
    failures = []
    server.core.send_message(_notification(1), net.now, failures.append)
    server.core.send_message(_notification(2, "other"), net.now, failures.append)
    server.core.fail_remote("client", error.NetworkError("unreachable"))
    assert [type(f) for f in failures] == [error.NetworkError]
    server.core.shutdown()
    assert [type(f) for f in failures] == [error.NetworkError, error.LibraryShutdown]
    assert server.core._tracked == {} and server.core.next_deadline() is None


def test_tracked_notification_memory_is_small(net):
    """A server keeps the latest NON notification of every observation
    tracked for EXCHANGE_LIFETIME: that must stay a few hundred bytes."""
    import tracemalloc

    server = net.add("server")
    net.add("client")
    server.core._send = lambda data, remote: None  # (the test net records what is sent)
    monitors = [(lambda exc: None) for _ in range(5000)]
    messages = [_notification(i) for i in range(5000)]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    stops = [server.core.send_message(m, net.now, mon) for m, mon in zip(messages, monitors)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per = sum(s.size_diff for s in after.compare_to(before, "filename")) / len(stops)
    assert server.core.tracked_size == 5000
    # (175 bytes measured: they are kept by remote, which is also how a
    # network error for a remote finds that remote's entries without a scan)
    assert per < 240, per


def test_per_peer_mid_state_is_bounded(net):
    server = net.add("server", max_peers=3)
    for i in range(10):
        net.add(f"c{i}")
        m = Message(code=Code.CONTENT, _mtype=Type.NON, _token=b"t")
        m.remote = f"c{i}"
        server.core.send_message(m, net.now)
    assert len(server.core._mids) == 3
    assert list(server.core._mids) == ["c7", "c8", "c9"]


# --- congestion control (RFC 7252 §4.7) ------------------------------------------


class _Wire:
    """Records every transmission of a Net with its time and fate, and
    tells how many CON messages from one peer to another were in flight at
    once: from their first transmission until an ACK or RST for them
    arrived (was not lost), or until the sender gave up on them (``gave_up``:
    token -> time)."""

    def __init__(self, net):
        self.net = net
        self.records = []  # (time, sender, data, destination, delivered)

        def recording(sender, data, remote):
            dropped = net.drop(sender, data, remote)
            self.records.append((net.now, sender, data, remote, not dropped))
            if not dropped:
                net.queue.append((net.peers[remote], data, sender.name))
            net.sent.append((sender, data, remote))

        net.transmit = recording

    def most_in_flight(self, sender, receiver, gave_up=None):
        gave_up = gave_up or {}
        in_flight: dict = {}  # mid -> token
        most = 0
        for time, source, data, destination, delivered in self.records:
            for mid, token in list(in_flight.items()):
                if gave_up.get(token, float("inf")) <= time:
                    del in_flight[mid]
            message = Message.decode(data)
            if source is sender and destination == receiver.name and message.mtype is Type.CON:
                in_flight[message.mid] = message.token
                most = max(most, len(in_flight))
            elif source is receiver and delivered and message.mtype in (Type.ACK, Type.RST):
                in_flight.pop(message.mid, None)
        return most


class _AnsweringPeer:
    """Answers every request delivered to ``peer`` with a piggybacked
    response at once."""

    def __init__(self, net, peer):
        self.count = 0
        original = peer.core._deliver_request

        def deliver(message):
            original(message)
            self.count += 1
            response = Message(code=Code.CONTENT, payload=b"%d" % self.count, _token=message.token)
            response.remote = message.remote
            peer.core.send_message(response, net.now)

        peer.core._deliver_request = deliver


def _tokens(n):
    return [i.to_bytes(2, "big") for i in range(n)]


def test_nstart_one_thousand_concurrent_requests_one_outstanding(net):
    client, server = net.add("client"), net.add("server")
    _AnsweringPeer(net, server)
    wire = _Wire(net)
    failures = []
    for token in _tokens(1000):
        client.core.send_message(request(token=token), net.now, failures.append)
    # only the first is on the wire; the rest wait their turn
    assert len(net.sent) == 1
    assert client.core.outstanding_to("server") == 1
    assert client.core.waiting_for("server") == 999
    net.flush()
    net.advance(1)
    assert failures == []
    assert len(client.responses) == 1000
    assert sorted(r.token for r in client.responses) == _tokens(1000)
    assert wire.most_in_flight(client, server) == 1
    # all state is gone once the queue is drained
    assert client.core.outstanding_to("server") == 0 and client.core._exchanges == {}


def test_nstart_queue_drains_over_a_lossy_link(net):
    tuning = TransportTuning(ACK_TIMEOUT=0.5)
    client, server = net.add("client", tuning=tuning), net.add("server", tuning=tuning)
    _AnsweringPeer(net, server)
    wire = _Wire(net)
    rng = random.Random(4)
    net.drop = lambda sender, data, remote: rng.random() < 0.2
    failures = []
    gave_up = {}
    for token in _tokens(300):
        def failed(exc, token=token):
            failures.append(exc)
            gave_up[token] = net.now
        client.core.send_message(request(token=token), net.now, failed)
    net.flush()
    net.advance(3000)
    # every request got its answer, or (after all retransmissions were
    # lost) an error; nothing is left waiting
    assert len({r.token for r in client.responses}) + len(failures) == 300
    assert all(isinstance(f, error.ConRetransmitsExceeded) for f in failures)
    assert len(client.responses) > 250
    assert client.core._exchanges == {} and client.core.outgoing_size == 0
    assert wire.most_in_flight(client, server, gave_up) == 1


def test_nstart_two_peers_served_independently(net):
    client = net.add("client")
    slow, fast = net.add("slow"), net.add("fast")
    _AnsweringPeer(net, fast)  # the slow one answers nothing
    net.drop = lambda sender, data, remote: remote == "slow"
    failures = []
    for token in _tokens(5):
        client.core.send_message(request(token=token, remote="slow"), net.now, failures.append)
        client.core.send_message(request(token=token, remote="fast"), net.now, failures.append)
    net.flush()
    # the fast peer's five exchanges complete while the slow one's first
    # is still being retransmitted
    assert len(client.responses) == 5
    assert client.core.outstanding_to("slow") == 1 and client.core.waiting_for("slow") == 4
    assert client.core.outstanding_to("fast") == 0


def test_nstart_from_tuning_allows_more(net):
    client = net.add("client", tuning=TransportTuning(NSTART=3))
    net.add("server")
    net.drop = lambda *a: True
    for token in _tokens(10):
        client.core.send_message(request(token=token), net.now)
    assert len(net.sent) == 3
    assert client.core.outstanding_to("server") == 3 and client.core.waiting_for("server") == 7


def test_non_and_acks_are_not_held_back(net):
    client = net.add("client")
    net.add("server")
    net.drop = lambda *a: True
    client.core.send_message(request(token=b"c1"), net.now)
    client.core.send_message(request(token=b"c2"), net.now)
    client.core.send_message(request(token=b"n1", mtype=Type.NON), net.now)
    assert [Message.decode(d).token for _, d, _ in net.sent] == [b"c1", b"n1"]


def test_waiting_message_whose_sender_stopped_is_never_sent(net):
    client, server = net.add("client"), net.add("server")
    _AnsweringPeer(net, server)
    client.core.send_message(request(token=b"a"), net.now)
    stop_b = client.core.send_message(request(token=b"b"), net.now)
    client.core.send_message(request(token=b"c"), net.now)
    stop_b()
    assert client.core.waiting_for("server") == 1
    net.flush()
    net.advance(1)
    assert [r.token for r in client.responses] == [b"a", b"c"]
    assert b"b" not in [Message.decode(d).token for _, d, _ in net.sent]


def test_stopping_an_outstanding_exchange_lets_the_next_go(net):
    woken = []
    client = net.add("client", wakeup=lambda: woken.append(True))
    net.add("server")
    net.drop = lambda *a: True
    stop_a = client.core.send_message(request(token=b"a"), net.now)
    client.core.send_message(request(token=b"b"), net.now)
    assert len(net.sent) == 1
    stop_a()  # (outside any call that has the time: the driver is woken)
    assert woken == [True]
    assert client.core.next_deadline() == float("-inf")
    net.advance(0)
    assert [Message.decode(d).token for _, d, _ in net.sent] == [b"a", b"b"]


def test_queue_bound_fails_clearly(net):
    client = net.add("client", max_queued_per_peer=3)
    net.add("server")
    net.drop = lambda *a: True
    failures = []
    for token in _tokens(6):
        client.core.send_message(request(token=token), net.now, failures.append)
    assert client.core.waiting_for("server") == 3
    assert len(failures) == 2
    assert all(isinstance(f, error.SendQueueFull) for f in failures)
    assert "wait for their turn" in str(failures[0])


def test_waiting_messages_fail_on_network_error_and_shutdown(net):
    client = net.add("client")
    net.add("server")
    failures = []
    for token in _tokens(3):
        client.core.send_message(request(token=token), net.now, failures.append)
    client.core.fail_remote("server", error.NetworkError("unreachable"))
    assert [type(f) for f in failures] == [error.NetworkError] * 3
    assert client.core._exchanges == {}
    for token in _tokens(3):
        client.core.send_message(request(token=token), net.now, failures.append)
    client.core.shutdown()
    assert [type(f) for f in failures[3:]] == [error.LibraryShutdown] * 3


def test_server_separate_responses_obey_nstart(net):
    """Separate CON responses (and CON notifications) to one client are
    congestion controlled just like requests."""
    tuning = TransportTuning(EMPTY_ACK_DELAY=0.01)
    client, server = net.add("client", tuning=tuning, max_peers=10), net.add("server", tuning=tuning)
    wire = _Wire(net)
    for token in _tokens(20):
        client.core.send_message(request(token=token), net.now)
    net.flush()
    net.advance(1)  # all requests got their empty ACKs, one after the other
    assert len(server.requests) == 20
    client.accept_responses = True
    net.drop = lambda sender, data, remote: sender is client  # the client's ACKs get lost for now
    for incoming in server.requests:
        server.core.send_message(response_to(incoming), net.now)
    net.flush()
    assert server.core.outstanding_to("client") == 1 and server.core.waiting_for("client") == 19
    net.drop = lambda *a: False
    net.advance(200)
    assert len({r.token for r in client.responses}) == 20
    assert wire.most_in_flight(server, client) == 1


def test_reliability_of_the_tuning_picks_the_type(net):
    from aiocoap.numbers.constants import Reliable, Unreliable

    client = net.add("client")
    net.add("server")
    for tuning, expected in ((Unreliable, Type.NON), (Reliable, Type.CON), (None, Type.CON), (Unreliable(), Type.NON)):
        message = request(token=b"%d" % len(net.sent))
        message.transport_tuning = tuning
        client.core.send_message(message, net.now)
        net.flush()
        assert Message.decode(net.sent[-1][1]).mtype is expected, tuning
    # an explicit type wins
    message = request(token=b"x", mtype=Type.CON)
    message.transport_tuning = Unreliable
    client.core.send_message(message, net.now)
    assert message.mtype is Type.CON


def test_con_to_multicast_is_refused(net):
    client = net.add("client")

    class Group(str):
        is_multicast = True

    message = request(remote=Group("server"), mtype=Type.CON)
    with pytest.raises(error.ConToMulticast):
        client.core.send_message(message, net.now)


# --- adaptive retransmission timeouts (CoCoA) ----------------------------------


def test_adaptive_rto_learns_a_fast_path(net):
    tuning = TransportTuning(ADAPTIVE_RTO=True)
    client, server = net.add("client", tuning=tuning), net.add("server", tuning=tuning)
    wire = _Wire(net)

    def answer(message):
        response = Message(code=Code.CONTENT, _token=message.token)
        response.remote = message.remote
        net.now += 0.05  # the round trip of this path
        server.core.send_message(response, net.now)

    server.core._deliver_request = answer
    for token in _tokens(20):
        client.core.send_message(request(token=token), net.now)
        net.flush()
    assert len(client.responses) == 20
    rto = client.core._rtos["server"].rto(net.now)
    assert 0.05 < rto < 0.5
    # A lost request is now retransmitted after about that RTO (not the 2
    # to 3 s of ACK_TIMEOUT), and the backoff factor for RTOs below 1 s is 3
    lost = []
    net.drop = lambda sender, data, remote: sender is client and len(lost) < 2 and not lost.append(data)
    client.core.send_message(request(token=b"lost"), net.now)
    net.advance(10)
    assert client.responses[-1].token == b"lost"
    times = [t for t, sender, data, _, _ in wire.records if sender is client and Message.decode(data).token == b"lost"]
    assert len(times) == 3
    first, second = times[1] - times[0], times[2] - times[1]
    assert rto <= first <= rto * tuning.ACK_RANDOM_FACTOR
    assert second == pytest.approx(3 * first)


def test_adaptive_rto_is_off_by_default(net):
    client, server = net.add("client"), net.add("server")
    _AnsweringPeer(net, server)
    client.core.send_message(request(), net.now)
    net.flush()
    assert client.core._rtos == {}


def test_unparsable_datagrams_are_reported_once_a_minute(net, caplog):
    server = net.add("server")
    net.add("peer")
    garbage = b"\x4f\x01\x00\x01"  # (token length 15)
    with caplog.at_level(logging.DEBUG, logger=log.name):
        for _ in range(3):
            server.core.receive_datagram(garbage, "peer", net.now)
        server.core.receive_datagram(garbage, "peer", net.now + 61)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "unparsable" in r.getMessage()]
    assert [level for level, _ in lines] == [logging.WARNING, logging.DEBUG, logging.DEBUG, logging.WARNING]
    assert lines[0][1].startswith("Ignoring unparsable message from 'peer'")
    assert lines[-1][1].endswith("(and 2 more like it since the last report)")


def test_reachable_is_reported_for_acks_and_answers(net):
    """What aiocoap.amplification counts as proof that a peer receives: it
    acknowledged our CON, or answered our request; a request of its own
    proves nothing."""
    proofs = []
    client = net.add("client", reachable=lambda remote, now: proofs.append(remote))
    server = net.add("server", reachable=lambda remote, now: proofs.append(("server saw", remote)))
    client.core.send_message(request(), net.now)
    net.flush()
    assert proofs == []  # the server got a request: no proof of anything
    server.core.send_message(response_to(server.requests[0]), net.now)
    net.flush()
    assert proofs == ["server"]  # the piggybacked answer (an ACK)
    notification = Message(code=Code.CONTENT, payload=b"n", _token=b"tk", observe=2)
    notification.remote = "client"
    server.core.send_message(notification, net.now, lambda exc: None)
    net.flush()
    assert ("server saw", "client") in proofs  # its ACK to our CON


def test_multicast_request_gets_echo_challenge_but_no_other_error(net):
    """RFC 7252 §8.2: no error responses to multicast requests; the Echo
    challenge of an amplification limit (RFC 9175 §2.3) is the exception."""

    class ToGroup(str):
        is_multicast_locally = True

    server = net.add("server")
    net.add("client")
    raw = Message(_mtype=Type.NON, _mid=1, code=Code.GET, _token=b"g1")
    server.core.receive_datagram(raw.encode(), ToGroup("client"), net.now)
    raw = Message(_mtype=Type.NON, _mid=2, code=Code.GET, _token=b"g2")
    server.core.receive_datagram(raw.encode(), ToGroup("client"), net.now)
    error_answer = Message(code=Code.NOT_FOUND, _token=b"g1")
    error_answer.remote = ToGroup("client")
    server.core.send_message(error_answer, net.now)
    challenge = Message(code=Code.UNAUTHORIZED, _token=b"g2", echo=b"e" * 12)
    challenge.remote = ToGroup("client")
    server.core.send_message(challenge, net.now)
    net.advance(TransportTuning().DEFAULT_LEISURE + 1)
    sent = [Message.decode(data) for sender, data, _ in net.sent if sender is server]
    assert [(m.code, m.mtype, m.opt.echo) for m in sent] == [(Code.UNAUTHORIZED, Type.NON, b"e" * 12)]


def _con_notification(i, remote="client"):
    m = _notification(i, remote)
    m.mtype = Type.CON
    return m


def test_replacing_notification_takes_over_retransmission_counter_and_timeout(net):
    """RFC 7641 §4.5.2: a notification replacing a confirmable one in flight
    goes out confirmable at once, with a MID of its own, and keeps the
    counter and the running timeout; a peer that never acknowledges fails
    the exchange after MAX_RETRANSMIT, however often it is replaced."""
    tuning = TransportTuning(ACK_TIMEOUT=2.0, ACK_RANDOM_FACTOR=1.5, MAX_RETRANSMIT=4)
    server = net.add("server", tuning=tuning)
    net.add("client")
    net.drop = lambda sender, data, remote: True
    failures = []
    start = net.now
    handle = server.core.send_message(_con_notification(0), net.now, failures.append)
    i = 0
    while net.now < start + 200:
        net.advance(0.5)  # well below ACK_TIMEOUT
        if failures:
            break
        i += 1
        handle = server.core.send_message(_notification(i), net.now, failures.append, replacing=handle)
    sent = [Message.decode(d) for s, d, _ in net.sent if s.name == "server"]
    assert all(m.mtype is Type.CON for m in sent)
    assert len({m.mid for m in sent}) == i + 1  # one MID per notification
    assert len(failures) == 1 and isinstance(failures[0], error.ConRetransmitsExceeded)
    assert failures[0].transmissions == tuning.MAX_RETRANSMIT + 1
    assert net.now - start <= tuning.MAX_TRANSMIT_WAIT + 0.5
    # retransmissions (a payload sent twice) happened, of the latest one each time
    payloads = [m.payload for m in sent]
    assert len(payloads) - len(set(payloads)) == tuning.MAX_RETRANSMIT
    assert server.core.outgoing_size == 0 and server.core.outstanding_to("client") == 0
    # once failed, a replacement is a message of its own again
    server.core.send_message(_notification(i + 1), net.now, failures.append, replacing=handle)
    assert Message.decode(net.sent[-1][1]).mtype is Type.NON


def test_replacement_acknowledged_ends_the_exchange(net):
    server, client = net.add("server"), net.add("client")
    client.accept_responses = True
    failures = []
    handle = server.core.send_message(_con_notification(0), net.now, failures.append)
    handle = server.core.send_message(_notification(1), net.now, failures.append, replacing=handle)
    net.flush()  # both arrive; the client ACKs both; the first ACK matches nothing any more
    assert [r.payload for r in client.responses] == [b"0", b"1"]
    assert server.core.outgoing_size == 0 and server.core.outstanding_to("client") == 0
    net.advance(100)
    assert failures == []


def test_replacing_a_waiting_notification_reuses_its_place(net):
    server = net.add("server")
    net.add("client")
    net.drop = lambda sender, data, remote: True
    server.core.send_message(request(token=b"r1", remote="client"), net.now)  # outstanding (NSTART 1)
    handle = server.core.send_message(_con_notification(0), net.now, None)
    assert server.core.waiting_for("client") == 1
    again = server.core.send_message(_notification(1), net.now, None, replacing=handle)
    assert server.core.waiting_for("client") == 1 and server.core.outgoing_size == 2
    assert len(net.sent) == 1  # nothing new on the wire while it waits
    again()
    assert server.core.waiting_for("client") == 0


def test_network_error_for_a_remote_costs_that_remotes_work_only(net):
    """5000 observers vanish together (an ICMP error for each): failing one
    remote looks at its own exchanges and tracked notifications, not at
    everyone's, so the whole storm is linear (it was 5000 x 10000
    comparisons); and only that remote's exchanges fail."""
    server = net.add("server")
    sent = []
    server.core.replace_send(lambda data, remote: sent.append(remote))
    remotes = [CountingRemote(i) for i in range(5000)]
    failures = {}
    for remote in remotes:
        for message in (_notification(1, remote), _con_notification(2, remote)):
            server.core.send_message(message, net.now, lambda exc, r=remote: failures.setdefault(r.name, []).append(exc))
    assert server.core.outgoing_size == 5000
    CountingRemote.comparisons = 0
    for remote in remotes[:-1]:
        server.core.fail_remote(remote, error.NetworkError("port unreachable"))
    assert CountingRemote.comparisons < 20 * len(remotes)
    assert len(failures) == 4999 and all(len(f) == 2 for f in failures.values())
    assert remotes[-1].name not in failures
    assert server.core.outgoing_size == 1 and server.core.outstanding_to(remotes[-1]) == 1
    server.core.fail_remote(remotes[-1], error.NetworkError("port unreachable"))
    assert len(failures[remotes[-1].name]) == 2
    assert server.core.outgoing_size == 0 and server.core.next_deadline() is not None  # (expiry buckets)


# --- NON notifications replacing each other (one observation) -------------------


def test_replaced_non_notifications_leave_no_objects_behind(net):
    """An observation's NON notifications replace each other many times a
    second on a busy server: the tracking of the latest one must not leave
    an object per notification alive until some later expiry or
    compaction. Each would outlive the young generations of the cyclic
    garbage collector and make it run full collections (tens of
    milliseconds with 10 000 observations, during which no request is
    answered)."""
    import gc

    server = net.add("server")
    net.add("client")
    failures = []
    handle = server.core.send_message(_notification(0), net.now, failures.append)
    handle = server.core.send_message(_notification(1), net.now, failures.append, replacing=handle)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(2, 502):
        handle = server.core.send_message(_notification(i), net.now, failures.append, replacing=handle)
    net.sent.clear()
    net.queue.clear()
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert grown < 50, grown
    assert server.core.tracked_size == 1


def test_replaced_non_notification_is_tracked_for_its_own_lifetime(net):
    """The tracking handed on from notification to notification expires
    EXCHANGE_LIFETIME after the latest one: a Reset to it then still
    reaches the monitor, and one to an earlier one does not."""
    tuning = TransportTuning()
    server = net.add("server", tuning=tuning)
    net.add("client")
    failures = []
    handle = server.core.send_message(_notification(0), net.now, failures.append)
    first = Message.decode(net.sent[-1][1]).mid
    net.advance(tuning.EXCHANGE_LIFETIME / 2)
    handle = server.core.send_message(_notification(1), net.now, failures.append, replacing=handle)
    latest = Message.decode(net.sent[-1][1]).mid
    net.advance(tuning.EXCHANGE_LIFETIME / 2 + 2 * server.core._BUCKET)
    assert server.core.tracked_size == 1
    server.core.receive_datagram(Message(_mtype=Type.RST, _mid=first, code=Code.EMPTY).encode(), "client", net.now)
    assert failures == []
    server.core.receive_datagram(Message(_mtype=Type.RST, _mid=latest, code=Code.EMPTY).encode(), "client", net.now)
    assert len(failures) == 1 and isinstance(failures[0], error.ResetReceived)
    assert server.core.tracked_size == 0
    handle()  # (stopping it afterwards changes nothing)
    net.advance(tuning.EXCHANGE_LIFETIME)
    assert server.core.next_deadline() is None


def test_replaced_non_notification_expires_after_exchange_lifetime(net):
    tuning = TransportTuning()
    server = net.add("server", tuning=tuning)
    net.add("client")
    failures = []
    handle = server.core.send_message(_notification(0), net.now, failures.append)
    net.advance(10)
    server.core.send_message(_notification(1), net.now, failures.append, replacing=handle)
    latest = Message.decode(net.sent[-1][1]).mid
    net.advance(tuning.EXCHANGE_LIFETIME + 2 * server.core._BUCKET)
    assert server.core.tracked_size == 0 and server.core.next_deadline() is None
    server.core.receive_datagram(Message(_mtype=Type.RST, _mid=latest, code=Code.EMPTY).encode(), "client", net.now)
    assert failures == []


def test_non_notifications_of_many_observations_of_one_peer(net):
    """Several observations of one peer: each one's latest NON notification
    is tracked apart (a Reset ends that observation only), across
    replacements, network errors and shutdown."""
    server = net.add("server")
    net.add("client")
    failures = {}
    handles = {}
    mids = {}
    for round in range(3):
        for n in range(4):
            monitor = lambda exc, n=n: failures.setdefault(n, []).append(exc)
            handles[n] = server.core.send_message(
                _notification(round), net.now, monitor, replacing=handles.get(n)
            )
            mids[n] = Message.decode(net.sent[-1][1]).mid
    assert server.core.tracked_size == 4
    server.core.receive_datagram(Message(_mtype=Type.RST, _mid=mids[2], code=Code.EMPTY).encode(), "client", net.now)
    assert list(failures) == [2] and server.core.tracked_size == 3
    handles[0]()
    assert server.core.tracked_size == 2
    server.core.fail_remote("client", error.NetworkError("unreachable"))
    assert sorted(failures) == [1, 2, 3] and isinstance(failures[3][0], error.NetworkError)
    assert server.core.tracked_size == 0


def test_answered_requests_cost_no_timer_wakeups(net):
    """Requests answered at once (piggybacked), one every millisecond: the
    layer's timer does not fire for each one's expired empty-ACK deadline,
    only about once per EMPTY_ACK_DELAY (answered entries are dropped
    when it does), and a request still unanswered then gets its empty ACK
    on time."""
    server = net.add("server")
    client = net.add("client")
    delay = server.core.tuning.EMPTY_ACK_DELAY
    count = 1000
    wakeups = 0
    for n in range(count):
        client.core.send_message(request(token=n.to_bytes(2, "big")), net.now)
        net.flush()
        server.core.send_message(response_to(server.requests.pop()), net.now)
        net.flush()
        net.now += 0.001
        deadline = server.core.next_deadline()
        if deadline is not None and deadline <= net.now:
            wakeups += 1
            server.core.handle_timer(net.now)
    assert len(client.responses) == count
    assert wakeups <= count * 0.001 / delay + 2
    net.sent.clear()
    client.core.send_message(request(token=b"late"), net.now)
    net.flush()
    net.advance(delay * 1.01)
    empty_acks = [d for s, d, _ in net.sent if s is server]
    assert len(empty_acks) == 1 and Message.decode(empty_acks[0]).code == Code.EMPTY
