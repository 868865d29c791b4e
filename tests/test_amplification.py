"""Amplification mitigation (RFC 9175 §2.3 item 3, RFC 7252 §11.3): what a
server sends to a plain-UDP peer that has not shown that it receives, the
Echo round trip our client does by itself, and the bounds of the state
behind it (aiocoap/amplification.py)."""

import asyncio
import logging
import socket

import pytest

from aiocoap import resource
from aiocoap.amplification import AmplificationGate, AmplificationLimit, datagram_size
from aiocoap.message import Message
from aiocoap.pipe import Event
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.protocol import Context

from memorynet import MemoryNet
from ports import free_udp_port

pytestmark = pytest.mark.core

LARGE = bytes(range(256)) * 8  # 2048 bytes: blockwise, 1 KiB blocks
SMALL = b"hi"


class Fixed(resource.Resource):
    def __init__(self, payload):
        super().__init__()
        self.payload = payload
        self.renders = 0

    async def render_get(self, request):
        self.renders += 1
        return Message(payload=self.payload)


class Clock(resource.ObservableResource):
    def __init__(self):
        super().__init__()
        self.value = 0

    async def render_get(self, request):
        return Message(payload=b"%d" % self.value)


def make_site():
    site = resource.Site()
    site.add_resource(["big"], Fixed(LARGE))
    site.add_resource(["s"], Fixed(SMALL))
    site.add_resource(["clock"], Clock())
    return site


class Peer:
    """Stands for a remote in unit tests (what the limit reads of one)."""

    def __init__(self, host, scheme="coap"):
        self.hostinfo = host
        self.scheme = scheme

    def __hash__(self):
        return hash(self.hostinfo)

    def __eq__(self, other):
        return isinstance(other, Peer) and other.hostinfo == self.hostinfo


# --- the limit itself (sans-I/O, fake time) -------------------------------------


def test_echo_value_is_bound_to_peer_and_time():
    limit = AmplificationLimit(echo_validity=2.0)
    alice, mallory = Peer("[2001:db8::1]:40000"), Peer("[2001:db8::2]:40000")
    value = limit.challenge(alice, 100.0)
    assert len(value) == 12
    assert not limit.accept_echo(mallory, value, 100.5)
    assert not limit.accept_echo(alice, value[:-1] + bytes([value[-1] ^ 1]), 100.5)
    assert not limit.accept_echo(alice, value, 102.1)  # expired
    assert not limit.is_verified(alice, 100.5)
    assert limit.accept_echo(alice, value, 101.9)
    assert limit.is_verified(alice, 101.9)
    # another limit (another server context) has another key
    assert not AmplificationLimit().accept_echo(alice, value, 100.5)


def test_echo_time_wraps_around():
    limit = AmplificationLimit(echo_validity=2.0)
    alice = Peer("a")
    before_wrap = (1 << 32) / 1000 - 0.5
    value = limit.challenge(alice, before_wrap)
    assert limit.accept_echo(alice, value, before_wrap + 1.0)


def test_verification_expires():
    limit = AmplificationLimit(verified_lifetime=10.0)
    alice = Peer("a")
    limit.note_reachable(alice, 0.0)
    assert limit.is_verified(alice, 9.9)
    assert not limit.is_verified(alice, 10.0)
    assert limit.verified_count == 0


def test_verified_peers_are_bounded_in_count_and_time():
    limit = AmplificationLimit(max_verified=100, verified_lifetime=10.0)
    for i in range(1000):
        limit.note_reachable(Peer(f"p{i}"), i * 0.001)
    assert limit.verified_count == 100
    assert limit.is_verified(Peer("p999"), 1.0)
    assert not limit.is_verified(Peer("p0"), 1.0)  # forgotten first
    # expired entries go when the next peer comes, not only at the cap
    limit.note_reachable(Peer("late"), 20.0)
    assert limit.verified_count == 1


def test_only_plain_udp_is_limited():
    limit = AmplificationLimit()
    assert limit.applies_to(Peer("a"))
    for scheme in ("coaps", "coap+tcp", "coaps+tcp", "coap+ws", "coaps+ws"):
        assert not limit.applies_to(Peer("a", scheme))
    limit.note_reachable(Peer("a", "coaps"), 0.0)
    assert limit.verified_count == 0
    limit.factor = None
    assert not limit.applies_to(Peer("a"))


def test_datagram_size_matches_encoding():
    message = Message(code=Code.CONTENT, payload=b"x" * 40, content_format=0, etag=b"1234")
    encoded = message.copy(mid=1, mtype=Type.ACK, token=b"abcd")
    assert datagram_size(message, 4) == len(encoded.encode())
    assert datagram_size(Message(code=Code.GET), 0) == 4


class _Outer:
    """The request's own pipe, as far as a gate uses it."""

    def __init__(self, request):
        self.request = request
        self.log = logging.getLogger("test_amplification")
        self.events = []

    def add_event(self, event):
        self.events.append(event)

    def add_response(self, response, is_last=False):
        self.events.append(Event(response, None, is_last))


def test_gate_measures_the_request_as_received_not_as_reencoded():
    # 13 bytes received (Uri-Port 0 in two bytes), 11 when encoded again:
    # a 39 byte answer is within 3x of what the peer sent, not of 11 bytes.
    raw = bytes((0x44, 0x01, 0x00, 0x01)) + b"abcd" + bytes((0x72, 0, 0, 0x41)) + b"s"
    request = Message.decode(raw, Peer("a"))
    outer = _Outer(request)
    gate = AmplificationGate(outer, AmplificationLimit(), lambda: 0.0, lambda *args: None)
    answer = Message(code=Code.CONTENT, payload=b"x" * 30, _mtype=Type.ACK)
    assert datagram_size(answer, 4) == 39
    gate.add_event(Event(answer, None, True))
    assert [event.message for event in outer.events] == [answer]


# --- a server over real UDP, and a raw-socket client ------------------------------


def _raw_get(path, mid, token=b"", echo=None):
    message = Message(code=Code.GET, _mtype=Type.CON, _mid=mid, _token=token, uri_path=[path])
    if echo is not None:
        message.opt.echo = echo
    return message.encode()


def _free_port():
    return free_udp_port()


async def _udp_server():
    port = _free_port()
    server = await Context.create_server_context(make_site(), bind=("127.0.0.1", port), transports=["udp6"])
    return server, port


async def _exchange(port, datagrams):
    """Send each datagram from one socket and collect one reply each."""

    def run():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            replies = []
            for data in datagrams:
                if callable(data):
                    data = data(replies)
                s.sendto(data, ("127.0.0.1", port))
                replies.append(s.recv(4096))
            return replies

    return await asyncio.get_running_loop().run_in_executor(None, run)


async def test_raw_client_gets_at_most_three_times_then_content_with_echo():
    server, port = await _udp_server()
    try:
        request = _raw_get("big", 1)
        assert len(request) == 8

        def repeat(replies):
            challenge = Message.decode(replies[0])
            return _raw_get("big", 2, echo=challenge.opt.echo)

        first, second = await _exchange(port, [request, repeat])
        assert len(first) <= 3 * len(request)
        challenge = Message.decode(first)
        assert challenge.code == Code.UNAUTHORIZED
        assert challenge.opt.echo is not None
        answer = Message.decode(second)
        assert answer.code == Code.CONTENT
        assert answer.opt.block2.block_number == 0 and answer.opt.block2.more
        assert answer.payload == LARGE[:1024]
    finally:
        await server.shutdown()


async def test_raw_client_small_resource_needs_no_echo():
    server, port = await _udp_server()
    try:
        (reply,) = await _exchange(port, [_raw_get("s", 7, token=b"tok")])
        answer = Message.decode(reply)
        assert answer.code == Code.CONTENT and answer.payload == SMALL
    finally:
        await server.shutdown()


async def test_foreign_or_stale_echo_is_challenged_again():
    server, port = await _udp_server()
    try:
        server.amplification.echo_validity = 0.0
        reply_for_forged, = await _exchange(port, [_raw_get("big", 3, echo=b"\x00" * 12)])
        assert Message.decode(reply_for_forged).code == Code.UNAUTHORIZED

        def repeat(replies):
            return _raw_get("big", 5, echo=Message.decode(replies[0]).opt.echo)

        first, second = await _exchange(port, [_raw_get("big", 4), repeat])
        # the value expired at once (validity 0 with millisecond stamps may
        # still accept it within the same millisecond: then it is content)
        assert Message.decode(second).code in (Code.UNAUTHORIZED, Code.CONTENT)
    finally:
        await server.shutdown()


async def test_context_client_fetches_large_resource_transparently_over_udp():
    server, port = await _udp_server()
    client = await Context.create_client_context(transports=["udp6"])
    try:
        uri = f"coap://127.0.0.1:{port}/big"
        response = await client.request(Message(code=Code.GET, uri=uri)).response
        assert response.code == Code.CONTENT
        assert response.payload == LARGE
    finally:
        await client.shutdown()
        await server.shutdown()


# --- in memory: counting what goes over the wire --------------------------------------


def _codes(net, source, destination):
    out = []
    for src, dst, data in net.log:
        if src == source and dst == destination and len(data) > 4:
            out.append(Message.decode(data).code)
    return out


async def test_context_client_echo_once_then_verified():
    net = MemoryNet(asyncio.get_running_loop())
    site = make_site()
    server = await net.context("server", site)
    client = await net.context("client")
    try:
        response = await client.request(Message(code=Code.GET, uri="coap://server/big")).response
        assert response.payload == LARGE
        assert _codes(net, "server", "client").count(Code.UNAUTHORIZED) == 1
        sent = [Message.decode(d) for s, _, d in net.log if s == "client" and len(d) > 4]
        assert sum(1 for m in sent if m.opt.echo is not None) == 1

        net.log.clear()
        response = await client.request(Message(code=Code.GET, uri="coap://server/big")).response
        assert response.payload == LARGE
        assert Code.UNAUTHORIZED not in _codes(net, "server", "client")
        assert all(Message.decode(d).opt.echo is None for s, _, d in net.log if s == "client" and len(d) > 4)
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_limit_can_be_switched_off():
    net = MemoryNet(asyncio.get_running_loop())
    server = await net.context("server", make_site())
    client = await net.context("client")
    server.amplification.factor = None
    try:
        response = await client.request(Message(code=Code.GET, uri="coap://server/big")).response
        assert response.payload == LARGE
        assert Code.UNAUTHORIZED not in _codes(net, "server", "client")
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_second_challenge_is_the_response():
    """A server that keeps challenging (here: it accepts no Echo value at
    all) does not make the client loop: the second 4.01 is the response."""
    net = MemoryNet(asyncio.get_running_loop())
    server = await net.context("server", make_site())
    client = await net.context("client")
    server.amplification.echo_validity = -1.0
    try:
        response = await client.request(Message(code=Code.GET, uri="coap://server/big")).response
        assert response.code == Code.UNAUTHORIZED
        assert _codes(net, "server", "client").count(Code.UNAUTHORIZED) == 2
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_notifications_to_unverified_observer_are_confirmable_until_acked():
    net = MemoryNet(asyncio.get_running_loop())
    site = make_site()
    clock = Clock()
    site.add_resource(["clock2"], clock)
    server = await net.context("server", site)
    client = await net.context("client")
    try:
        request = client.request(Message(code=Code.GET, uri="coap://server/clock2", observe=0))
        await request.response
        received = []
        request.observation.register_callback(received.append)
        for value in (1, 2, 3):
            clock.value = value
            clock.updated_state()
            while len(received) < value:
                await asyncio.sleep(0.001)
        notifications = [
            Message.decode(d) for s, dst, d in net.log
            if s == "server" and dst == "client" and len(d) > 4 and Message.decode(d).opt.observe is not None
        ]
        # registration response (piggybacked), then the first notification
        # is CON; its ACK verified the client, so the pacing is the usual one
        assert notifications[0].mtype is Type.ACK
        assert notifications[1].mtype is Type.CON
        assert all(n.mtype is Type.NON for n in notifications[2:])
        request.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


class Poster(resource.Resource):
    """An unsafe method with a large answer: must run once per request."""

    def __init__(self):
        super().__init__()
        self.runs = 0

    async def render_post(self, request):
        self.runs += 1
        return Message(code=Code.CHANGED, payload=LARGE)


async def test_large_answer_to_unsafe_request_comes_in_small_blocks_not_run_twice():
    net = MemoryNet(asyncio.get_running_loop())
    site = make_site()
    poster = Poster()
    site.add_resource(["post"], poster)
    server = await net.context("server", site)
    client = await net.context("client")
    try:
        response = await client.request(Message(code=Code.POST, uri="coap://server/post", payload=b"x")).response
        assert response.code == Code.CHANGED and response.payload == LARGE
        assert poster.runs == 1
        for source, _, data in net.log:
            if source == "server" and len(data) > 4:
                answer = Message.decode(data)
                assert answer.code != Code.UNAUTHORIZED
        # every answer within 3x of the request it answered
        requests = {}
        for source, _, data in net.log:
            message = Message.decode(data)
            if source == "client" and message.code.is_request():
                requests[message.token] = len(data)
            elif source == "server" and message.code.is_response():
                assert len(data) <= 3 * requests[message.token]
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_multicast_request_is_repeated_by_unicast_to_challenging_servers():
    """(The memory net has no groups: the client's request is fanned out to
    every server, as test_protocol's multicast test does.)"""
    from aiocoap.protocol import MulticastRequest
    from memorynet import MemoryAddress

    net = MemoryNet(asyncio.get_running_loop())
    servers = [await net.context(f"s{i}", make_site()) for i in range(3)]
    client = await net.context("client")
    original = net.transmit

    def fan_out(source, data, destination):
        for target in [f"s{i}" for i in range(3)] if destination == "group" else [destination]:
            original(source, data, target)

    net.transmit = fan_out
    try:
        message = Message(code=Code.GET, uri_path=["big"], block2=(0, False, 6))
        message.remote = MemoryAddress("group", net.interfaces["client"], multicast=True)
        multicast = MulticastRequest(client, message, timeout=0.3)
        answers = [(r.remote.hostinfo, r.code, r.payload) async for r in multicast.responses]
        assert sorted(answers) == [(f"s{i}", Code.CONTENT, LARGE[:1024]) for i in range(3)]
        sent = [(dst, Message.decode(d)) for s, dst, d in net.log if s == "client"]
        repeats = [(dst, m) for dst, m in sent if m.opt.echo is not None]
        assert sorted(dst for dst, _ in repeats) == ["s0", "s1", "s2"]  # one each
        assert all(m.mtype is Type.NON for _, m in repeats)
        assert len(sent) == 6  # (the request fanned out, and the repetitions)
    finally:
        await client.shutdown()
        for server in servers:
            await server.shutdown()
