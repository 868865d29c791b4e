"""CoAP over TCP (aiocoap.transports.tcp) on loopback sockets: real Contexts
on both ends, and hand-made peers (raw sockets speaking RFC 8323 framing)
for what a well-behaved peer would never do.

Timers are shortened through :class:`TcpTuning`; no test waits for a
protocol timer at its default value. What the timers do, to the
millisecond, is tested on a virtual clock in tests/test_rfc8323session.py;
the timer tests here check that the asyncio adapter drives the session's
timer (with timers of a tenth of a second) and that other connections are
served meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiocoap import error, resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import OpaqueOption, UintOption
from aiocoap.protocol import Context
from aiocoap.transports import rfc8323common as rfc
from aiocoap.transports.rfc8323session import SessionState
from aiocoap.transports import tcp
from aiocoap.transports.tcp import DEFAULT_TCP_TUNING, TCPClient, TcpConnection, TCPServer, TcpTuning

pytestmark = pytest.mark.core

FAST = TcpTuning(
    connect_timeout=3.0, csm_timeout=0.1, frame_timeout=0.1, idle_timeout=5.0,
    ping_timeout=0.1, close_timeout=0.5,
)
TIMEOUT = 5.0


# --- resources ----------------------------------------------------------------


class Echo(resource.Resource):
    """Answers every method with what it got."""

    async def render_get(self, request):
        return Message(payload=b"GET " + request.payload)

    async def render_post(self, request):
        return Message(code=Code.CREATED, payload=request.payload[::-1])

    async def render_put(self, request):
        return Message(code=Code.CHANGED, payload=request.payload)

    async def render_delete(self, request):
        return Message(code=Code.DELETED)

    async def render_fetch(self, request):
        return Message(payload=b"FETCH " + request.payload)

    async def render_patch(self, request):
        return Message(code=Code.CHANGED, payload=b"PATCH " + request.payload)

    async def render_ipatch(self, request):
        return Message(code=Code.CHANGED, payload=b"iPATCH " + request.payload)


class Big(resource.Resource):
    def __init__(self, size):
        super().__init__()
        self.size = size

    async def needs_blockwise_assembly(self, request):
        return False

    async def render_get(self, request):
        return Message(payload=bytes(range(256)) * (self.size // 256) + b"x" * (self.size % 256))


class Slow(resource.Resource):
    def __init__(self, delay):
        super().__init__()
        self.delay = delay

    async def render_get(self, request):
        await asyncio.sleep(self.delay)
        return Message(payload=b"slow")


class Remotes(resource.Resource):
    """Records the remotes of the requests it gets."""

    def __init__(self):
        super().__init__()
        self.seen = []

    async def render_get(self, request):
        self.seen.append(request.remote)
        return Message(payload=request.remote.hostinfo.encode())


class Clock(resource.ObservableResource):
    def __init__(self):
        super().__init__()
        self.value = 0

    def tick(self):
        self.value += 1
        self.updated_state()

    async def render_get(self, request):
        return Message(payload=str(self.value).encode())


def make_site():
    """The site of the servers here; its resources are reachable as
    attributes of the site for the tests to look into."""
    site = resource.Site()
    site.remotes = Remotes()
    site.clock = Clock()
    site.add_resource(["echo"], Echo())
    site.add_resource(["big"], Big(30000))
    site.add_resource(["slow"], Slow(0.3))
    site.add_resource(["remotes"], site.remotes)
    site.add_resource(["clock"], site.clock)
    return site


# --- helpers --------------------------------------------------------------------


def tcp_interface(context, kind=(TCPServer, TCPClient)):
    for ti in context._tokenmanager.token_interfaces:
        if isinstance(ti, kind):
            return ti
    raise LookupError(f"no {kind} in {context!r}")


@contextlib.asynccontextmanager
async def tcp_server(site=None, tuning=FAST):
    context = await Context.create_server_context(
        site if site is not None else make_site(), bind=("127.0.0.1", 0), transports=["tcpserver"]
    )
    server = tcp_interface(context, TCPServer)
    server.tuning = tuning
    context.port = server.server.sockets[0].getsockname()[1]
    context.tcp = server
    try:
        yield context
    finally:
        await context.shutdown()


@contextlib.asynccontextmanager
async def tcp_client(tuning=FAST):
    context = await Context.create_client_context(transports=["tcpclient"])
    context.tcp = tcp_interface(context, TCPClient)
    context.tcp.tuning = tuning
    try:
        yield context
    finally:
        await context.shutdown()


async def request(context, **kwargs):
    handle_blockwise = kwargs.pop("handle_blockwise", True)
    message = Message(**kwargs)
    return await asyncio.wait_for(context.request(message, handle_blockwise=handle_blockwise).response, TIMEOUT)


def encode(message):
    return rfc.encode_message(message)


def csm(max_message_size=1152, block_wise_transfer=False):
    return encode(rfc.CSM(max_message_size, block_wise_transfer).to_message())


class RawPeer:
    """One end of a TCP connection driven by hand: frames in, frames out."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.parser = rfc.StreamParser(1 << 20)
        self.pending = []

    @classmethod
    async def connect(cls, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, data: bytes):
        self.writer.write(data)

    async def receive(self, timeout=TIMEOUT) -> Message:
        """The next message; raises EOFError when the peer closed."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), max(deadline - time.monotonic(), 0.01))
            if not data:
                raise EOFError
            self.pending.extend(self.parser.feed(data))
        return self.pending.pop(0)

    async def receive_until_closed(self, timeout=TIMEOUT) -> list:
        messages = []
        with contextlib.suppress(EOFError, ConnectionError):
            while True:
                messages.append(await self.receive(timeout))
        return messages

    async def close(self):
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_server(handler):
    """A TCP server on a free loopback port whose connections are handed to
    ``handler(RawPeer)``; yields (port, list of peers)."""
    peers = []
    tasks = set()

    async def on_connection(reader, writer):
        peer = RawPeer(reader, writer)
        peers.append(peer)
        task = asyncio.current_task()
        tasks.add(task)
        try:
            await handler(peer)
        except (EOFError, ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            tasks.discard(task)
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], peers
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def serve_requests(peer, mms=1152, bwt=False):
    """A minimal well-behaved server: CSM, then 2.05 echoing the request
    payload for every request (Pings get Pongs)."""
    peer.send(csm(mms, bwt))
    while True:
        message = await peer.receive()
        if message.code == Code.PING:
            peer.send(encode(rfc.Pong().to_message(token=message.token)))
        elif message.code.is_request():
            peer.send(encode(Message(code=Code.CONTENT, _token=message.token, payload=message.payload)))


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def until(condition, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --- requests and remotes ----------------------------------------------------------


async def test_every_method_roundtrips():
    async with tcp_server() as server, tcp_client() as client:
        base = f"coap+tcp://127.0.0.1:{server.port}/echo"
        cases = [
            (Code.GET, b"", Code.CONTENT, b"GET "),
            (Code.POST, b"abc", Code.CREATED, b"cba"),
            (Code.PUT, b"put", Code.CHANGED, b"put"),
            (Code.DELETE, b"", Code.DELETED, b""),
            (Code.FETCH, b"f", Code.CONTENT, b"FETCH f"),
            (Code.PATCH, b"p", Code.CHANGED, b"PATCH p"),
            (Code.iPATCH, b"i", Code.CHANGED, b"iPATCH i"),
        ]
        for method, payload, code, expected in cases:
            response = await request(client, code=method, uri=base, payload=payload)
            assert (response.code, response.payload) == (code, expected), method
            assert response.mtype is None and response.mid is None
        assert len(server.tcp._connections) == 1


async def test_remote_properties_on_both_sides():
    site = make_site()
    async with tcp_server(site) as server, tcp_client() as client:
        response = await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{server.port}/remotes")
        remote = response.remote
        assert isinstance(remote, TcpConnection)
        assert remote.scheme == "coap+tcp"
        assert remote.reliable_transport and not remote.is_multicast and not remote.is_multicast_locally
        assert remote.hostinfo == f"127.0.0.1:{server.port}"
        assert remote.uri_base == f"coap+tcp://127.0.0.1:{server.port}"
        assert remote.hostinfo_local.startswith("127.0.0.1:")
        with pytest.raises(error.AnonymousHost):
            remote.uri_base_local
        assert "coap+tcp://127.0.0.1" in repr(remote)

        (server_side,) = site.remotes.seen
        assert server_side in server.tcp._connections
        assert server_side.hostinfo == response.payload.decode() == remote.hostinfo_local
        assert server_side.uri_base_local == f"coap+tcp://127.0.0.1:{server.port}"
        with pytest.raises(error.AnonymousHost):
            server_side.uri_base
        assert response.request.get_request_uri() == f"coap+tcp://127.0.0.1:{server.port}/remotes"


async def test_default_port_is_left_out_of_hostinfo():
    async with tcp_client() as client:
        connection = TcpConnection(client.tcp, client.log, client.loop, hostinfo="example.com")
        assert connection.uri_base == "coap+tcp://example.com"
        assert connection.maximum_block_size_exp == 6  # before any CSM: 1152 bytes
        assert connection.maximum_payload_size == 1024


async def test_hundred_requests_in_flight_share_one_connection():
    async with tcp_server() as server, tcp_client() as client:
        uri = f"coap+tcp://127.0.0.1:{server.port}/echo"
        responses = await asyncio.gather(
            *(request(client, code=Code.POST, uri=uri, payload=b"%03d" % i) for i in range(100))
        )
        assert [r.payload for r in responses] == [(b"%03d" % i)[::-1] for i in range(100)]
        assert len(server.tcp._connections) == 1
        assert len({r.remote for r in responses}) == 1


async def test_unknown_host_is_a_resolution_error():
    async with tcp_client() as client:
        with pytest.raises(error.ResolutionError):
            await request(client, code=Code.GET, uri="coap+tcp://does-not-exist.invalid/x")


async def test_refused_connection_is_a_network_error():
    async with raw_server(serve_requests) as (port, _):
        pass  # the port is free again now
    async with tcp_client() as client:
        started = time.monotonic()
        with pytest.raises(error.NetworkError, match="connection refused"):
            await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{port}/x")
        assert time.monotonic() - started < 2


async def test_observation_over_tcp():
    site = make_site()
    clock = site.clock
    async with tcp_server(site) as server, tcp_client() as client:
        observed = client.request(Message(code=Code.GET, uri=f"coap+tcp://127.0.0.1:{server.port}/clock", observe=0))
        first = await asyncio.wait_for(observed.response, TIMEOUT)
        assert first.payload == b"0" and first.opt.observe is not None
        notifications = observed.observation.__aiter__()
        for expected in (b"1", b"2"):
            clock.tick()
            notification = await asyncio.wait_for(notifications.__anext__(), TIMEOUT)
            assert notification.payload == expected
        connection = first.remote
        assert connection._session.pending_requests == 1  # a running observation keeps the connection busy
        observed.observation.cancel()


# --- sizes ----------------------------------------------------------------------


async def test_bert_sizes_follow_the_csms():
    async with tcp_server() as server, tcp_client() as client:
        response = await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{server.port}/echo")
        assert response.remote.maximum_block_size_exp == 7
        assert response.remote.maximum_payload_size == 1024 * 1024
        assert response.remote.peer_max_message_size == DEFAULT_TCP_TUNING.max_message_size

    no_bert = TcpTuning(block_wise_transfer=False, max_message_size=1152)
    async with tcp_server(tuning=no_bert) as server, tcp_client() as client:
        response = await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{server.port}/echo")
        assert response.remote.maximum_block_size_exp == 6
        assert response.remote.maximum_payload_size == 1024


async def test_large_bodies_within_max_message_size():
    async with tcp_server() as server, tcp_client() as client:
        payload = os.urandom(60000)
        response = await request(client, code=Code.PUT, uri=f"coap+tcp://127.0.0.1:{server.port}/echo",
                                 payload=payload, handle_blockwise=False)
        assert response.payload == payload
        response = await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{server.port}/big",
                                 handle_blockwise=False)
        assert len(response.payload) == 30000


class Megabytes(resource.Resource):
    payload = bytes(range(256)) * 4096 * 3

    async def render_get(self, request):
        return Message(payload=self.payload)

    async def render_put(self, request):
        return Message(code=Code.CHANGED, payload=b"%d" % len(request.payload))


async def test_megabyte_bodies_use_bert_blocks():
    site = make_site()
    site.add_resource(["mb"], Megabytes())
    async with tcp_server(site) as server, tcp_client() as client:
        if server.blockwise is None:
            pytest.skip("no blockwise module in this build")
        arrived = []
        process_request = server._tokenmanager.process_request

        def counting(message, ti=None):
            arrived.append(message)
            process_request(message, ti)

        server._tokenmanager.process_request = counting
        uri = f"coap+tcp://127.0.0.1:{server.port}/mb"
        response = await request(client, code=Code.GET, uri=uri)
        assert response.payload == Megabytes.payload
        # 1 MiB BERT blocks: 3 exchanges instead of 3072 with 1 KiB blocks
        assert len(arrived) == 3
        assert arrived[-1].opt.block2.size_exponent == 7

        arrived.clear()
        client.tcp.tuning = TcpTuning(max_message_size=64 * 1024 + 128)
        server.tcp.tuning = TcpTuning(max_message_size=64 * 1024 + 128)
        await asyncio.sleep(0.01)
        for connection in list(client.tcp._connections):
            connection._detach(None)
        response = await request(client, code=Code.PUT, uri=uri + "?again", payload=bytes(300000))
        assert (response.code, response.payload) == (Code.CHANGED, b"300000")
        # 64 KiB BERT blocks, now that both sides announced 64 KiB + 128
        assert len(arrived) == 5
        assert all(m.opt.block1.size_exponent == 7 for m in arrived)


async def test_request_above_peer_max_message_size_is_refused_locally():
    async with raw_server(lambda peer: serve_requests(peer, mms=300)) as (port, peers):
        async with tcp_client() as client:
            uri = f"coap+tcp://127.0.0.1:{port}/x"
            response = await request(client, code=Code.POST, uri=uri, payload=b"s" * 100)
            assert response.payload == b"s" * 100
            assert response.remote.peer_max_message_size == 300
            assert response.remote.maximum_block_size_exp == 3  # 128 byte blocks fit into 300
            with pytest.raises(error.NetworkError, match="Max-Message-Size 300"):
                await request(client, code=Code.POST, uri=uri, payload=b"L" * 400, handle_blockwise=False)
            # the connection is still fine
            response = await request(client, code=Code.POST, uri=uri, payload=b"ok")
            assert response.payload == b"ok"
            assert len(peers) == 1


async def test_response_above_client_max_message_size_is_not_sent():
    async with tcp_server() as server:
        peer = await RawPeer.connect(server.port)
        peer.send(csm(max_message_size=400))
        peer.send(encode(Message(code=Code.GET, _token=b"b1", uri_path=["big"])))
        assert (await peer.receive()).code == Code.CSM
        response = await peer.receive()
        assert response.token == b"b1"
        assert len(encode(response)) <= 400
        # without blockwise a 5.00 explains it; with it, a first block comes
        assert response.code == Code.INTERNAL_SERVER_ERROR or response.opt.block2 is not None
        await peer.close()


async def test_frame_above_our_max_message_size_aborts():
    async with tcp_server(tuning=TcpTuning(max_message_size=2000)) as server:
        peer = await RawPeer.connect(server.port)
        peer.send(csm())
        peer.send(encode(Message(code=Code.PUT, _token=b"x", uri_path=["echo"], payload=b"z" * 3000)))
        messages = await peer.receive_until_closed()
        assert messages[0].code == Code.CSM
        assert rfc.CSM.from_message(messages[0]).max_message_size == 2000
        assert messages[-1].code == Code.ABORT
        assert b"Max-Message-Size" in messages[-1].payload
        await peer.close()


# --- signaling ---------------------------------------------------------------------


async def test_ping_is_answered_with_pong_with_the_same_token():
    async with tcp_server() as server:
        peer = await RawPeer.connect(server.port)
        peer.send(csm() + encode(rfc.Ping().to_message(token=b"pt")))
        assert (await peer.receive()).code == Code.CSM
        pong = await peer.receive()
        assert pong.code == Code.PONG and pong.token == b"pt"
        await peer.close()


async def test_custody_pong_waits_for_earlier_responses():
    async with tcp_server() as server:
        peer = await RawPeer.connect(server.port)
        peer.send(csm())
        peer.send(encode(Message(code=Code.GET, _token=b"s1", uri_path=["slow"])))
        peer.send(encode(rfc.Ping(custody=True).to_message(token=b"c1")))
        assert (await peer.receive()).code == Code.CSM
        first, second = await peer.receive(), await peer.receive()
        assert (first.code, first.token) == (Code.CONTENT, b"s1")
        assert (second.code, second.token) == (Code.PONG, b"c1")
        assert rfc.Pong.from_message(second).custody
        await peer.close()


async def test_keepalive_pings_keep_a_quiet_connection():
    pings = []

    async def counting_pings(peer):
        peer.send(csm())
        while True:
            message = await peer.receive()
            if message.code == Code.PING:
                pings.append(time.monotonic())
                peer.send(encode(rfc.Pong().to_message(token=message.token)))
            elif message.code.is_request():
                peer.send(encode(Message(code=Code.CONTENT, _token=message.token)))

    async with raw_server(counting_pings) as (port, _), tcp_client(TcpTuning(ping_interval=0.05, ping_timeout=0.3)) as client:
        response = await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{port}/x")
        connection = response.remote
        await until(lambda: len(pings) >= 3)  # several ping intervals, answered by Pongs
        assert connection.state is SessionState.OPEN and connection in client.tcp._connections


async def test_unanswered_keepalive_ping_fails_pending_requests():
    async def mute(peer):
        peer.send(csm())
        while True:
            await peer.receive()  # swallow everything, answer nothing

    async with raw_server(mute) as (port, _), tcp_client(TcpTuning(ping_interval=0.1, ping_timeout=0.2)) as client:
        started = time.monotonic()
        with pytest.raises(error.NetworkError, match="Ping"):
            await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{port}/x")
        assert time.monotonic() - started < 2


async def test_empty_messages_are_ignored():
    async with tcp_server() as server:
        peer = await RawPeer.connect(server.port)
        peer.send(csm() + b"\x00\x00" + encode(Message(code=Code.GET, _token=b"e", uri_path=["echo"])))
        assert (await peer.receive()).code == Code.CSM
        response = await peer.receive()
        assert (response.code, response.payload) == (Code.CONTENT, b"GET ")
        await peer.close()


async def test_unmatched_response_is_dropped():
    async def confused(peer):
        peer.send(csm())
        while True:
            message = await peer.receive()
            if message.code.is_request():
                peer.send(encode(Message(code=Code.CONTENT, _token=b"nobody", payload=b"stray")))
                peer.send(encode(Message(code=Code.CONTENT, _token=message.token, payload=b"real")))

    async with raw_server(confused) as (port, _), tcp_client() as client:
        response = await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{port}/x")
        assert response.payload == b"real"


async def test_release_moves_new_requests_to_a_new_connection():
    connections = []

    async def releasing(peer):
        connections.append(peer)
        peer.send(csm())
        if len(connections) == 1:
            message = await peer.receive()
            while not message.code.is_request():
                message = await peer.receive()
            peer.send(encode(Message(code=Code.CONTENT, _token=message.token, payload=b"first")))
            peer.send(encode(rfc.Release().to_message()))
        await serve_requests_after_csm(peer)

    async with raw_server(releasing) as (port, peers), tcp_client() as client:
        uri = f"coap+tcp://127.0.0.1:{port}/x"
        first = await request(client, code=Code.GET, uri=uri)
        assert first.payload == b"first"
        await until(lambda: first.remote.state is SessionState.CLOSED)  # closed once nothing was pending
        second = await request(client, code=Code.GET, uri=uri, payload=b"second")
        assert second.payload == b"second"
        assert len(peers) == 2


async def serve_requests_after_csm(peer):
    while True:
        message = await peer.receive()
        if message.code.is_request():
            peer.send(encode(Message(code=Code.CONTENT, _token=message.token, payload=message.payload)))


async def test_release_with_hold_off_keeps_us_away():
    async def releasing(peer):
        peer.send(csm())
        peer.send(encode(rfc.Release(hold_off=60).to_message()))
        await serve_requests_after_csm(peer)

    async with raw_server(releasing) as (port, peers), tcp_client() as client:
        uri = f"coap+tcp://127.0.0.1:{port}/x"
        with contextlib.suppress(error.NetworkError):
            await request(client, code=Code.GET, uri=uri)
        await until(lambda: not client.tcp._pool)
        with pytest.raises(error.NetworkError, match="not to be contacted"):
            await request(client, code=Code.GET, uri=uri)
        assert len(peers) == 1


async def test_peer_abort_fails_pending_requests():
    async def aborting(peer):
        peer.send(csm())
        while not (await peer.receive()).code.is_request():
            pass
        peer.send(encode(rfc.Abort(diagnostic="go away").to_message()))

    async with raw_server(aborting) as (port, _), tcp_client() as client:
        with pytest.raises(error.NetworkError, match="go away"):
            await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{port}/x")


async def test_server_sends_requests_to_the_client_on_its_connection():
    async with tcp_server() as server, tcp_client() as client:
        response = await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{server.port}/echo")
        (server_side,) = server.tcp._connections
        reverse = Message(code=Code.GET, uri_path=["anything"])
        reverse.remote = server_side
        answer = await asyncio.wait_for(server.request(reverse, handle_blockwise=False).response, TIMEOUT)
        assert answer.code == Code.NOT_FOUND  # the client context serves no resources
        assert answer.remote is server_side
        assert response.remote.state is SessionState.OPEN


# --- misbehaving peers ---------------------------------------------------------


async def test_garbage_gets_an_abort_and_the_server_keeps_serving():
    async with tcp_server() as server, tcp_client() as client:
        peer = await RawPeer.connect(server.port)
        peer.send(csm() + b"\x0f\x01garbage")  # token length 15 is reserved
        messages = await peer.receive_until_closed()
        assert [m.code for m in messages] == [Code.CSM, Code.ABORT]
        assert b"token length" in messages[1].payload
        await peer.close()
        response = await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{server.port}/echo")
        assert response.code == Code.CONTENT
        await until(lambda: len(server.tcp._connections) == 1)


async def test_first_message_must_be_a_csm():
    async with tcp_server() as server:
        peer = await RawPeer.connect(server.port)
        peer.send(encode(Message(code=Code.GET, _token=b"g", uri_path=["echo"])))
        messages = await peer.receive_until_closed()
        assert [m.code for m in messages] == [Code.CSM, Code.ABORT]
        assert b"CSM" in messages[1].payload
        await peer.close()


async def test_unknown_critical_csm_option_is_named_in_the_abort():
    async with tcp_server() as server:
        peer = await RawPeer.connect(server.port)
        bad = rfc.CSM().to_message()
        bad.opt.add_option(OpaqueOption(9, b""))
        peer.send(encode(bad))
        messages = await peer.receive_until_closed()
        assert messages[-1].code == Code.ABORT
        assert rfc.Abort.from_message(messages[-1]).bad_csm_option == 9
        await peer.close()


async def test_silent_peer_is_dropped_after_the_csm_timeout():
    async with tcp_server() as server:
        peer = await RawPeer.connect(server.port)
        started = time.monotonic()
        messages = await peer.receive_until_closed()
        assert [m.code for m in messages] == [Code.CSM, Code.ABORT]
        assert messages[-1].payload == b"no CSM received within 0.1 s"
        assert time.monotonic() - started < 2
        await peer.close()


async def test_server_without_csm_fails_the_request():
    async def mute(peer):
        while True:
            await peer.receive(timeout=10)

    async with raw_server(mute) as (port, _), tcp_client() as client:
        started = time.monotonic()
        with pytest.raises(error.NetworkError, match="no CSM"):
            await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{port}/x")
        assert time.monotonic() - started < 2


async def test_slowloris_is_closed_and_does_not_block_others():
    async with tcp_server() as server, tcp_client() as client:
        peer = await RawPeer.connect(server.port)
        frame = encode(Message(code=Code.GET, _token=b"slow", uri_path=["echo"]))
        peer.send(csm() + frame[:3])  # a partial frame, then nothing
        started = time.monotonic()
        # meanwhile, another client is served normally
        response = await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{server.port}/echo")
        assert response.code == Code.CONTENT
        messages = await peer.receive_until_closed()
        assert messages[-1].code == Code.ABORT
        assert b"stalled" in messages[-1].payload
        assert time.monotonic() - started < 2
        await peer.close()


async def test_trickling_frame_is_cut_at_the_frame_time_limit():
    async with tcp_server(tuning=TcpTuning(frame_timeout=0.2, frame_time_limit=0.3, frame_min_rate=None)) as server:
        peer = await RawPeer.connect(server.port)
        frame = encode(Message(code=Code.PUT, _token=b"t", uri_path=["echo"], payload=b"p" * 200))
        peer.send(csm())
        started = time.monotonic()
        receiving = asyncio.ensure_future(peer.receive_until_closed())
        for byte in frame[:-1]:
            if receiving.done():
                break
            peer.send(bytes([byte]))
            await asyncio.sleep(0.02)  # always within the stall limit
        messages = await receiving
        assert messages[-1].code == Code.ABORT
        assert b"not completed within 0.3 s" in messages[-1].payload
        assert time.monotonic() - started < 2
        await peer.close()


async def test_peer_that_does_not_read_is_cut_off():
    tuning = TcpTuning(write_buffer_limit=64 * 1024, close_timeout=0.2)
    async with tcp_server(tuning=tuning) as server, tcp_client() as client:
        peer = await RawPeer.connect(server.port)
        peer.writer.transport.pause_reading()
        peer.writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.send(csm(max_message_size=1 << 20))
        for i in range(400):
            peer.send(encode(Message(code=Code.GET, _token=b"%d" % i, uri_path=["big"])))
        await until(lambda: not server.tcp._connections and not server.tcp._closers)
        # others are still served
        response = await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{server.port}/echo")
        assert response.code == Code.CONTENT
        await peer.close()


# --- connection lifetime ------------------------------------------------------------


async def test_connection_loss_fails_the_pending_request_promptly():
    async def hangs_up(peer):
        peer.send(csm())
        while not (await peer.receive()).code.is_request():
            pass
        peer.writer.close()

    async with raw_server(hangs_up) as (port, _), tcp_client() as client:
        started = time.monotonic()
        with pytest.raises(error.NetworkError, match="closed by the peer"):
            await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{port}/x")
        assert time.monotonic() - started < 1


async def test_server_shutdown_fails_requests_in_flight():
    async with tcp_client() as client:
        async with tcp_server() as server:
            pending = client.request(Message(code=Code.GET, uri=f"coap+tcp://127.0.0.1:{server.port}/slow"))
            await until(lambda: len(server.tcp._connections) == 1)
            await asyncio.sleep(0.05)
        with pytest.raises(error.NetworkError):
            await asyncio.wait_for(pending.response, 1)


async def test_closed_connection_reconnects_for_cached_routes():
    async with tcp_server() as server, tcp_client(TcpTuning(idle_timeout=0.1)) as client:
        uri = f"coap+tcp://127.0.0.1:{server.port}/echo"
        first = await request(client, code=Code.GET, uri=uri)
        await until(lambda: first.remote.state is SessionState.CLOSED)  # idle close
        await until(lambda: not server.tcp._connections)
        second = await request(client, code=Code.GET, uri=uri)
        assert second.code == Code.CONTENT
        # and explicitly addressed to the closed connection object, too
        again = Message(code=Code.GET, uri_path=["echo"])
        first.remote._detach(None)
        again.remote = first.remote
        third = await asyncio.wait_for(client.request(again, handle_blockwise=False).response, TIMEOUT)
        assert third.code == Code.CONTENT


async def test_idle_connections_close_but_busy_ones_stay():
    async with tcp_server() as server, tcp_client(TcpTuning(idle_timeout=0.15)) as client:
        uri = f"coap+tcp://127.0.0.1:{server.port}"
        observed = client.request(Message(code=Code.GET, uri=uri + "/clock", observe=0))
        await asyncio.wait_for(observed.response, TIMEOUT)
        await asyncio.sleep(0.4)
        assert len(server.tcp._connections) == 1  # the observation holds it
        observed.observation.cancel()


async def test_pool_is_bounded():
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(tcp_server()) for _ in range(3)]
        client = await stack.enter_async_context(tcp_client(TcpTuning(max_connections=2)))
        for server in servers:
            response = await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{server.port}/echo")
            assert response.code == Code.CONTENT
            assert len(client.tcp._connections) <= 2
        # all busy: the third one can not be opened
        slow = [client.request(Message(code=Code.GET, uri=f"coap+tcp://127.0.0.1:{s.port}/slow")) for s in servers[1:]]
        await until(lambda: all(c._session.pending_requests for c in client.tcp._connections))
        with pytest.raises(error.NetworkError, match="Too many"):
            await request(client, code=Code.GET, uri=f"coap+tcp://127.0.0.1:{servers[0].port}/echo")
        for s in slow:
            await asyncio.wait_for(s.response, TIMEOUT)


async def test_thousand_sequential_connections_leak_no_descriptors():
    async with tcp_server() as server:
        peer_ports = set()
        for round_ in range(2):
            before = fd_count()
            for i in range(500):
                peer = await RawPeer.connect(server.port)
                peer.send(csm() + encode(Message(code=Code.GET, _token=b"t", uri_path=["echo"])))
                assert (await peer.receive()).code == Code.CSM
                assert (await peer.receive()).code == Code.CONTENT
                peer_ports.add(peer.writer.get_extra_info("sockname")[1])
                await peer.close()
            await until(lambda: not server.tcp._connections)
            assert fd_count() <= before + 2, round_
        assert len(peer_ports) > 100


async def test_client_contexts_come_and_go_without_leaks():
    async with tcp_server() as server:
        uri = f"coap+tcp://127.0.0.1:{server.port}/echo"
        before = fd_count()
        for _ in range(50):
            async with tcp_client() as client:
                assert (await request(client, code=Code.GET, uri=uri)).code == Code.CONTENT
        await until(lambda: not server.tcp._connections)
        assert fd_count() <= before + 2


async def test_shutdown_fails_requests_waiting_for_a_connection():
    async def mute(peer):
        while True:
            await peer.receive(timeout=10)

    async with raw_server(mute) as (port, _):
        client = await Context.create_client_context(transports=["tcpclient"])
        pending = client.request(Message(code=Code.GET, uri=f"coap+tcp://127.0.0.1:{port}/x"))
        await asyncio.sleep(0.1)
        await client.shutdown()
        with pytest.raises((error.LibraryShutdown, error.NetworkError)):
            await asyncio.wait_for(pending.response, 1)


async def test_options_of_signaling_do_not_confuse_requests():
    """A CSM's Max-Message-Size (option 2) is not mistaken for anything in
    a request, and Uint options of any length are read."""
    async with tcp_server() as server:
        peer = await RawPeer.connect(server.port)
        custom = Message(code=Code.CSM)
        custom.opt.add_option(UintOption(2, 0x0100_0000))
        peer.send(encode(custom) + encode(Message(code=Code.GET, _token=b"o", uri_path=["echo"])))
        assert (await peer.receive()).code == Code.CSM
        assert (await peer.receive()).payload == b"GET "
        (connection,) = server.tcp._connections
        assert connection.peer_max_message_size == 0x0100_0000
        await peer.close()


async def test_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback (::1) on this machine")
    context = await Context.create_server_context(make_site(), bind=("::1", 0), transports=["tcpserver"])
    try:
        server = tcp_interface(context, TCPServer)
        port = server.server.sockets[0].getsockname()[1]
        async with tcp_client() as client:
            response = await request(client, code=Code.GET, uri=f"coap+tcp://[::1]:{port}/echo")
            assert response.code == Code.CONTENT
            assert response.remote.hostinfo == f"[::1]:{port}"
            assert response.remote.hostinfo_local.startswith("[::1]:")
            (server_side,) = server._connections
            assert server_side.uri_base_local == f"coap+tcp://[::1]:{port}"
    finally:
        await context.shutdown()


# --- the framing helpers code written for aiocoap 0.4.17 imports ---------------------------


@settings(max_examples=100, deadline=None)
@given(
    code=st.sampled_from([Code.GET, Code.CONTENT, Code.CSM, Code.PING]),
    token=st.binary(max_size=8),
    payload=st.binary(max_size=70000) | st.sampled_from([b"x" * 12, b"x" * 268, b"x" * 65804]),
    path=st.lists(st.text(max_size=10), max_size=3),
)
def test_0_4_17_framing_helpers(code, token, payload, path):
    message = Message(code=code, _token=token, payload=payload, uri_path=path)
    frame = tcp._serialize(message)
    assert frame == rfc.encode_message(message)
    offset, tkl, length = tcp._extract_message_size(frame)
    assert (tkl, offset + tkl + length) == (len(token), len(frame))
    assert frame[offset - 1] == code and frame[offset : offset + tkl] == token
    nibble, extended = tcp._encode_length(length)
    assert frame[0] >> 4 == nibble and frame[1 : 1 + len(extended)] == extended
    assert tcp._extract_message_size(frame[: offset - 2]) is None or offset == 2
    decoded = tcp._decode_message(frame)
    assert (decoded.code, decoded.token, decoded.payload, decoded.opt.uri_path) == (code, token, payload, tuple(path))


def test_0_4_17_module_constants():
    from aiocoap.transports import tls

    assert (tcp.COAP_PORT, tls.COAPS_PORT) == (5683, 5684)
    assert issubclass(rfc.CloseConnection, Exception)
    assert issubclass(TcpConnection, rfc.RFC8323Remote)
