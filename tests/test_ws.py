"""CoAP over WebSockets (aiocoap.transports.ws) on loopback: real Contexts
on both ends over ws:// and wss://, and hand-made peers on the
``websockets`` package's own asyncio client and server (independent of the
sans-I/O layer the transport uses) for what a well-behaved peer would never
do.

Timers are shortened through :class:`WSTuning`; what the session's timers
do to the millisecond is tested on a virtual clock in
tests/test_rfc8323session.py. The attacker's tests (floods, half-finished
handshakes, slow peers, oversized input) are in tests/test_ws_hostile.py,
which uses the helpers here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl

import pytest

pytest.importorskip("websockets")

import websockets.asyncio.client  # noqa: E402
import websockets.asyncio.server  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from aiocoap import error, resource  # noqa: E402
from aiocoap.message import Message  # noqa: E402
from aiocoap.numbers.codes import Code  # noqa: E402
from aiocoap.protocol import Context  # noqa: E402
from aiocoap.transports import rfc8323common as rfc  # noqa: E402
from aiocoap.transports import ws  # noqa: E402
from aiocoap.transports.rfc8323session import SessionState  # noqa: E402
from aiocoap.transports.ws import PoolKey, WSPool, WSRemote, WSTuning  # noqa: E402

# the resources of the TCP tests serve here too
from test_tcp import Clock, Echo, Megabytes  # noqa: E402

pytestmark = pytest.mark.core

FAST = WSTuning(
    connect_timeout=2.0, csm_timeout=0.3, frame_timeout=0.2, frame_time_limit=1.0,
    idle_timeout=5.0, ping_timeout=0.2, close_timeout=0.5,
)
TIMEOUT = 5.0


# --- resources ----------------------------------------------------------------


class Slow(resource.Resource):
    def __init__(self):
        super().__init__()
        self.started = asyncio.Event()

    async def render_get(self, request):
        self.started.set()
        await asyncio.sleep(30)
        return Message(payload=b"late")


class Remotes(resource.Resource):
    def __init__(self):
        super().__init__()
        self.seen = []

    async def render_get(self, request):
        self.seen.append(request.remote)
        return Message(payload=request.remote.hostinfo.encode())


class Located(resource.Resource):
    """Its answer is large in options, which blocks can not split."""

    async def render_post(self, request):
        return Message(code=Code.CREATED, location_path=["x" * 250, "y" * 250])


def make_site():
    site = resource.Site()
    site.slow = Slow()
    site.remotes = Remotes()
    site.clock = Clock()
    site.add_resource(["echo"], Echo())
    site.add_resource(["slow"], site.slow)
    site.add_resource(["remotes"], site.remotes)
    site.add_resource(["clock"], site.clock)
    site.add_resource(["mb"], Megabytes())
    site.add_resource(["located"], Located())
    return site


# --- contexts -------------------------------------------------------------------


def pool_of(context) -> WSPool:
    (pool,) = [ti for ti in context._tokenmanager.token_interfaces if isinstance(ti, WSPool)]
    return pool


@contextlib.asynccontextmanager
async def ws_server(site=None, tuning=FAST, ssl_context=None, bind=("127.0.0.1", 0)):
    """A server context with only the ws transport; its ``port`` (and
    ``secure_port`` with an SSL context) and ``ws`` (the pool) are set."""
    site = site if site is not None else make_site()
    context = await Context.create_server_context(site, bind=bind, transports=["ws"], _ssl_context=ssl_context)
    pool = pool_of(context)
    pool.tuning = tuning
    context.ws = pool
    context.site = site
    context.port = pool.servers["coap+ws"].sockets[0].getsockname()[1]
    if "coaps+ws" in pool.servers:
        context.secure_port = pool.servers["coaps+ws"].sockets[0].getsockname()[1]
    try:
        yield context
    finally:
        await context.shutdown()


@contextlib.asynccontextmanager
async def ws_client(tuning=FAST):
    context = await Context.create_client_context(transports=["ws"])
    context.ws = pool_of(context)
    context.ws.tuning = tuning
    try:
        yield context
    finally:
        await context.shutdown()


async def request(context, **kwargs):
    handle_blockwise = kwargs.pop("handle_blockwise", True)
    message = Message(**kwargs)
    return await asyncio.wait_for(context.request(message, handle_blockwise=handle_blockwise).response, TIMEOUT)


async def until(condition, timeout=TIMEOUT):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --- hand-made peers on websockets' own asyncio API ------------------------------------


def encode(message):
    return rfc.encode_ws_message(message)


def decode(data):
    return rfc.decode_ws_message(data)


def csm(max_message_size=1152, block_wise_transfer=False):
    return encode(rfc.CSM(max_message_size, block_wise_transfer).to_message())


@contextlib.asynccontextmanager
async def raw_client(port, subprotocols=("coap",), path=ws.RESOURCE_PATH, **kwargs):
    """A WebSocket client that is not aiocoap: the test sends and reads
    CoAP messages itself."""
    connection = await websockets.asyncio.client.connect(
        f"ws://127.0.0.1:{port}{path}", subprotocols=list(subprotocols) or None,
        ping_interval=None, max_size=None, open_timeout=TIMEOUT, **kwargs,
    )
    try:
        yield connection
    finally:
        await connection.close()


async def receive(connection):
    return decode(await asyncio.wait_for(connection.recv(), TIMEOUT))


async def receive_until(connection, code):
    while True:
        message = await receive(connection)
        if message.code == code:
            return message


@contextlib.asynccontextmanager
async def raw_server(handler, subprotocols=("coap",)):
    """A WebSocket server that is not aiocoap; ``handler(connection)`` plays
    the CoAP server. Yields its port."""
    server = await websockets.asyncio.server.serve(
        handler, "127.0.0.1", 0, subprotocols=list(subprotocols), ping_interval=None, max_size=None,
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def serve_coap(connection, mms=1152, bwt=False, close_after=None):
    """Play a minimal CoAP server: CSM, then every GET/POST is answered
    with its payload (``close_after`` requests: close the WebSocket instead
    of answering the last one)."""
    await connection.send(csm(mms, bwt))
    answered = 0
    with contextlib.suppress(ConnectionClosed):
        async for data in connection:
            message = decode(data)
            if not message.code.is_request():
                continue
            if close_after is not None and answered + 1 >= close_after:
                await connection.close(1000, "going")
                return
            answered += 1
            await connection.send(encode(Message(code=Code.CONTENT, _token=message.token, payload=message.payload)))


async def raw_http(port, data: bytes) -> bytes:
    """Send ``data`` on a plain TCP connection and read until the server
    closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def upgrade_request(path=ws.RESOURCE_PATH, protocol="coap", extra=""):
    lines = [
        f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
    ]
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


# --- requests between Contexts ---------------------------------------------------------


async def test_every_method_roundtrips():
    async with ws_server() as server, ws_client() as client:
        base = f"coap+ws://127.0.0.1:{server.port}/echo"
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
        assert len(server.ws._connections) == 1


async def test_remote_properties_on_both_sides():
    async with ws_server() as server, ws_client() as client:
        uri = f"coap+ws://127.0.0.1:{server.port}/remotes"
        response = await request(client, code=Code.GET, uri=uri)
        remote = response.remote
        assert isinstance(remote, WSRemote) and remote.scheme == "coap+ws"
        assert remote.reliable_transport and not remote.is_multicast and not remote.is_multicast_locally
        assert remote.hostinfo == f"127.0.0.1:{server.port}"
        assert remote.uri_base == f"coap+ws://127.0.0.1:{server.port}"
        assert remote._poolkey == PoolKey("coap+ws", f"127.0.0.1:{server.port}")
        with pytest.raises(error.AnonymousHost):
            remote.uri_base_local
        assert repr(remote) == f"<WSRemote to coap+ws://127.0.0.1:{server.port}, open>"
        assert response.request.get_request_uri() == uri

        (server_side,) = server.site.remotes.seen
        assert server_side.scheme == "coap+ws"
        assert server_side.hostinfo == response.payload.decode() == remote.hostinfo_local
        # the server side is named by the Host header the client sent
        assert server_side.uri_base_local == f"coap+ws://127.0.0.1:{server.port}"
        with pytest.raises(error.AnonymousHost):
            server_side.uri_base
        assert "from coap+ws://127.0.0.1:" in repr(server_side)


async def test_hundred_requests_share_one_websocket():
    async with ws_server() as server, ws_client() as client:
        uri = f"coap+ws://127.0.0.1:{server.port}/echo"
        responses = await asyncio.gather(
            *(request(client, code=Code.POST, uri=uri, payload=b"%03d" % i) for i in range(100))
        )
        assert [r.payload for r in responses] == [(b"%03d" % i)[::-1] for i in range(100)]
        assert len({r.remote for r in responses}) == 1
        assert len(server.ws._connections) == 1 and len(client.ws._pool) == 1
        # host names are case-insensitive, default ports left out
        assert client.ws._pool.keys() == {PoolKey("coap+ws", f"127.0.0.1:{server.port}")}


async def test_client_writes_the_requests_of_one_iteration_in_one_go():
    """The connecting side joins the frames of a loop iteration into one
    write (the accepting side writes its first at once, see
    WSRemote._put_frame): fewer system calls at both ends."""
    async with ws_server() as server, ws_client() as client:
        uri = f"coap+ws://127.0.0.1:{server.port}/echo"
        remote = (await request(client, code=Code.POST, uri=uri, payload=b"x")).remote
        # (a stand-in that counts the writes: uvloop's transports do not
        # let their methods be replaced)
        counting = WriteCounter(remote._transport)
        remote._transport = counting
        try:
            responses = await asyncio.gather(
                *(request(client, code=Code.POST, uri=uri, payload=b"%d" % i) for i in range(3))
            )
        finally:
            remote._transport = counting.inner
        assert [r.payload for r in responses] == [b"0", b"1", b"2"]
        assert len(counting.writes) == 1


class WriteCounter:
    """An asyncio transport's stand-in that notes what is written."""

    def __init__(self, inner):
        self.inner = inner
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))
        self.inner.write(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


async def test_observation():
    async with ws_server() as server, ws_client() as client:
        observed = client.request(Message(code=Code.GET, uri=f"coap+ws://127.0.0.1:{server.port}/clock", observe=0))
        first = await asyncio.wait_for(observed.response, TIMEOUT)
        assert first.payload == b"0" and first.opt.observe is not None
        notifications = observed.observation.__aiter__()
        for expected in (b"1", b"2", b"3"):
            server.site.clock.tick()
            notification = await asyncio.wait_for(notifications.__anext__(), TIMEOUT)
            assert notification.payload == expected
        assert first.remote._session.pending_requests == 1  # the observation keeps it busy
        observed.observation.cancel()
        await until(lambda: first.remote._session.pending_requests == 0)


def requests_arriving(server):
    """The list of the requests the server's token manager gets from now on."""
    arrived = []
    process_request = server._tokenmanager.process_request

    def counting(message, ti=None):
        arrived.append(message)
        process_request(message, ti)

    server._tokenmanager.process_request = counting
    return arrived


async def test_megabyte_bodies_use_bert_blocks():
    async with ws_server() as server, ws_client() as client:
        arrived = requests_arriving(server)
        uri = f"coap+ws://127.0.0.1:{server.port}/mb"
        response = await request(client, code=Code.GET, uri=uri)
        assert response.payload == Megabytes.payload
        assert response.remote.maximum_block_size_exp == 7
        # 1 MiB BERT blocks: 3 exchanges instead of 3072 with 1 KiB blocks
        assert len(arrived) == 3 and arrived[-1].opt.block2.size_exponent == 7


    # 64 KiB BERT blocks where both announce 64 KiB + 128
    smaller = WSTuning(max_message_size=64 * 1024 + 128)
    async with ws_server(tuning=smaller) as server, ws_client(smaller) as client:
        arrived = requests_arriving(server)
        uri = f"coap+ws://127.0.0.1:{server.port}/mb"
        response = await request(client, code=Code.PUT, uri=uri, payload=bytes(300000))
        assert (response.code, response.payload) == (Code.CHANGED, b"300000")
        assert len(arrived) == 5 and all(m.opt.block1.size_exponent == 7 for m in arrived)


async def test_classic_blocks_towards_a_peer_without_bert():
    no_bert = WSTuning(block_wise_transfer=False, max_message_size=1152)
    async with ws_server(tuning=no_bert) as server, ws_client() as client:
        uri = f"coap+ws://127.0.0.1:{server.port}/mb"
        response = await request(client, code=Code.GET, uri=uri)
        assert response.payload == Megabytes.payload
        assert response.remote.maximum_block_size_exp == 6
        response = await request(client, code=Code.PUT, uri=uri, payload=bytes(5000))
        assert response.payload == b"5000"


async def test_request_above_peer_max_message_size_is_refused_locally():
    async with raw_server(lambda c: serve_coap(c, mms=300)) as port, ws_client() as client:
        uri = f"coap+ws://127.0.0.1:{port}/x"
        response = await request(client, code=Code.POST, uri=uri, payload=b"s" * 100)
        assert response.payload == b"s" * 100
        assert response.remote.peer_max_message_size == 300
        with pytest.raises(error.NetworkError, match="Max-Message-Size 300"):
            await request(client, code=Code.POST, uri=uri, payload=b"L" * 400, handle_blockwise=False)
        assert (await request(client, code=Code.POST, uri=uri, payload=b"ok")).payload == b"ok"


async def test_response_above_client_max_message_size_becomes_5_00():
    async with ws_server() as server, raw_client(server.port) as peer:
        await peer.send(csm(max_message_size=400))
        assert (await receive(peer)).code == Code.CSM
        # a large body comes in blocks that fit
        await peer.send(encode(Message(code=Code.GET, _token=b"b1", uri_path=["echo"], payload=b"x" * 600)))
        response = await receive(peer)
        assert (response.token, response.code) == (b"b1", Code.CONTENT)
        assert response.opt.block2 is not None and len(encode(response)) <= 400
        # large options can not be split: a 5.00 explains it
        await peer.send(encode(Message(code=Code.POST, _token=b"b2", uri_path=["located"])))
        response = await receive(peer)
        assert (response.token, response.code) == (b"b2", Code.INTERNAL_SERVER_ERROR)
        assert b"Max-Message-Size" in response.payload


async def test_message_above_our_max_size_is_refused_by_the_websocket_layer():
    tuning = WSTuning(max_message_size=2000, close_timeout=0.5)
    async with ws_server(tuning=tuning) as server, raw_client(server.port) as peer:
        await peer.send(csm())
        csm_message = await receive(peer)
        assert rfc.CSM.from_message(csm_message).max_message_size == 2000
        # within the limit (the limit counts options and payload)
        await peer.send(encode(Message(code=Code.PUT, _token=b"ok", uri_path=["echo"], payload=b"y" * 1900)))
        assert (await receive(peer)).code == Code.CHANGED
        await peer.send(encode(Message(code=Code.PUT, _token=b"big", uri_path=["echo"], payload=b"x" * 5000)))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(peer)
        assert closed.value.rcvd.code == 1009  # message too big
        await until(lambda: not server.ws._connections)


async def test_fragmented_messages_are_put_together():
    async with ws_server() as server, raw_client(server.port) as peer:
        await peer.send(csm())
        await receive(peer)
        data = encode(Message(code=Code.POST, _token=b"fr", uri_path=["echo"], payload=b"abcdef"))
        await peer.send([data[:3], data[3:7], data[7:]])  # an iterable: one message in fragments
        response = await receive(peer)
        assert (response.token, response.payload) == (b"fr", b"fedcba")


# --- signaling -------------------------------------------------------------------


async def test_ping_gets_a_pong_with_its_token_and_custody_waits():
    async with ws_server() as server, raw_client(server.port) as peer:
        await peer.send(csm())
        await receive(peer)
        await peer.send(encode(rfc.Ping().to_message(token=b"p1")))
        pong = await receive(peer)
        assert (pong.code, pong.token) == (Code.PONG, b"p1")
        # a custody Ping is answered after the request that came before it
        await peer.send(encode(Message(code=Code.GET, _token=b"sl", uri_path=["slow"])))
        await asyncio.wait_for(server.site.slow.started.wait(), TIMEOUT)
        await peer.send(encode(rfc.Ping(custody=True).to_message(token=b"p2")))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(peer.recv(), 0.3)


async def test_first_message_must_be_a_csm():
    async with ws_server() as server, raw_client(server.port) as peer:
        await peer.send(encode(Message(code=Code.GET, _token=b"x", uri_path=["echo"])))
        abort = await receive_until(peer, Code.ABORT)
        assert b"CSM" in abort.payload
        with pytest.raises(ConnectionClosed):
            await receive(peer)


async def test_silent_client_is_dropped_after_the_csm_timeout():
    async with ws_server() as server, raw_client(server.port) as peer:
        assert (await receive(peer)).code == Code.CSM
        abort = await receive(peer)
        assert abort.code == Code.ABORT and b"no CSM" in abort.payload
        await until(lambda: not server.ws._connections)


async def test_text_frame_aborts_with_close_code_1003():
    async with ws_server() as server, raw_client(server.port) as peer:
        await peer.send(csm())
        await receive(peer)
        await peer.send("hello")
        abort = await receive_until(peer, Code.ABORT)
        assert b"text" in abort.payload
        with pytest.raises(ConnectionClosed) as closed:
            await receive(peer)
        assert closed.value.rcvd.code == 1003


async def test_release_moves_new_requests_to_a_new_websocket():
    connections = []

    async def releasing(connection):
        connections.append(connection)
        await connection.send(csm())
        async for data in connection:
            message = decode(data)
            if message.code.is_request():
                await connection.send(encode(Message(code=Code.CONTENT, _token=message.token, payload=b"%d" % len(connections))))
                if len(connections) == 1:
                    await connection.send(encode(rfc.Release().to_message()))

    async with raw_server(releasing) as port, ws_client() as client:
        uri = f"coap+ws://127.0.0.1:{port}/x"
        first = await request(client, code=Code.GET, uri=uri)
        assert first.payload == b"1"
        await until(lambda: first.remote.state is SessionState.CLOSED)
        second = await request(client, code=Code.GET, uri=uri)
        assert second.payload == b"2" and len(connections) == 2  # a new WebSocket


async def test_release_with_hold_off_keeps_us_away():
    async def releasing(connection):
        await connection.send(csm())
        await connection.send(encode(rfc.Release(hold_off=60).to_message()))
        await connection.wait_closed()

    async with raw_server(releasing) as port, ws_client() as client:
        uri = f"coap+ws://127.0.0.1:{port}/x"
        with contextlib.suppress(error.NetworkError):
            await request(client, code=Code.GET, uri=uri)
        await until(lambda: not client.ws._pool)
        with pytest.raises(error.NetworkError, match="asked not to be contacted"):
            await request(client, code=Code.GET, uri=uri)


async def test_idle_connections_close_and_reconnect():
    async with ws_server() as server, ws_client(WSTuning(idle_timeout=0.2, close_timeout=0.5)) as client:
        uri = f"coap+ws://127.0.0.1:{server.port}/echo"
        first = await request(client, code=Code.GET, uri=uri)
        await until(lambda: first.remote.state is SessionState.CLOSED)
        await until(lambda: not server.ws._connections)
        # the route the context cached brings the same remote back to life
        second = await request(client, code=Code.GET, uri=uri)
        assert second.remote is first.remote and second.remote.state is SessionState.OPEN


async def test_reverse_request_over_the_same_websocket():
    async with ws_server() as server, ws_client() as client:
        client.serversite = resource.Site()
        client.serversite.add_resource(["back"], Echo())
        await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{server.port}/remotes")
        (server_side,) = server.site.remotes.seen
        message = Message(code=Code.POST, uri_path=["back"], payload=b"olleh")
        message.remote = server_side
        response = await asyncio.wait_for(server.request(message).response, TIMEOUT)
        assert response.payload == b"hello"
        assert len(server.ws._connections) == 1


# --- connections ending ----------------------------------------------------------


async def test_server_shutdown_mid_request_fails_it_promptly():
    site = make_site()
    async with ws_client() as client:
        async with ws_server(site) as server:
            pending = asyncio.ensure_future(request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{server.port}/slow"))
            await asyncio.wait_for(site.slow.started.wait(), TIMEOUT)
            loop = asyncio.get_running_loop()
            started = loop.time()
        with pytest.raises(error.NetworkError, match="closed by the peer.*1001"):
            await pending
        assert loop.time() - started < 2


async def test_client_shutdown_mid_request():
    site = make_site()
    async with ws_server(site) as server:
        client = await Context.create_client_context(transports=["ws"])
        pool_of(client).tuning = FAST
        pending = client.request(Message(code=Code.GET, uri=f"coap+ws://127.0.0.1:{server.port}/slow"))
        await asyncio.wait_for(site.slow.started.wait(), TIMEOUT)
        await client.shutdown()
        with pytest.raises(error.LibraryShutdown):
            await asyncio.wait_for(pending.response, TIMEOUT)
        # the server saw the WebSocket close and forgot the connection
        await until(lambda: not server.ws._connections and not server.ws._closers)
        assert server.ws._accepted == 0


async def test_peer_closing_the_websocket_fails_pending_requests():
    async with raw_server(lambda c: serve_coap(c, close_after=2)) as port, ws_client() as client:
        uri = f"coap+ws://127.0.0.1:{port}/x"
        assert (await request(client, code=Code.POST, uri=uri, payload=b"one")).payload == b"one"
        with pytest.raises(error.NetworkError, match=r"closed by the peer \(WebSocket close code 1000: going\)"):
            await request(client, code=Code.POST, uri=uri, payload=b"two")
        # a new request gets a new WebSocket
        assert (await request(client, code=Code.POST, uri=uri, payload=b"three")).payload == b"three"


async def test_client_closing_its_websocket_ends_the_server_side():
    async with ws_server() as server:
        async with raw_client(server.port) as peer:
            await peer.send(csm())
            await receive(peer)
            await until(lambda: len(server.ws._connections) == 1)
            (remote,) = server.ws._connections
        await until(lambda: not server.ws._connections and not server.ws._closers)
        assert remote.state is SessionState.CLOSED and server.ws._accepted == 0


async def test_socket_lost_without_closing_handshake():
    async with ws_server() as server, raw_client(server.port) as peer:
        await peer.send(csm())
        await receive(peer)
        await until(lambda: len(server.ws._connections) == 1)
        peer.transport.abort()
        await until(lambda: not server.ws._connections)


async def test_refused_connection_and_unknown_host():
    async with raw_server(serve_coap) as port:
        pass  # free again
    async with ws_client() as client:
        with pytest.raises(error.NetworkError, match="connection refused"):
            await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{port}/x")
        with pytest.raises(error.ResolutionError):
            await request(client, code=Code.GET, uri="coap+ws://does-not-exist.invalid/x")


async def test_pool_is_bounded():
    tuning = WSTuning(max_connections=2, idle_timeout=60.0, close_timeout=0.5)
    async with ws_server() as a, ws_server() as b, ws_server() as c, ws_client(tuning) as client:
        for server in (a, b):
            await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{server.port}/echo")
        assert len(client.ws._pool) == 2
        # the one idle the longest makes room
        await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{c.port}/echo")
        assert len(client.ws._pool) == 2 and PoolKey("coap+ws", f"127.0.0.1:{a.port}") not in client.ws._pool
        # none idle: the request fails
        observed = [
            client.request(Message(code=Code.GET, uri=f"coap+ws://127.0.0.1:{s.port}/clock", observe=0))
            for s in (b, c)
        ]
        for o in observed:
            await asyncio.wait_for(o.response, TIMEOUT)
        with pytest.raises(error.NetworkError, match="none of them is idle"):
            await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{a.port}/echo")
        for o in observed:
            o.observation.cancel()


# --- the handshake ------------------------------------------------------------------


async def test_non_coap_subprotocol_and_paths_are_refused_with_http_errors():
    async with ws_server() as server:
        with pytest.raises(InvalidStatus) as refused:
            async with raw_client(server.port, subprotocols=["chat"]):
                pass
        assert refused.value.response.status_code == 400
        with pytest.raises(InvalidStatus) as refused:
            async with raw_client(server.port, subprotocols=[]):
                pass
        assert refused.value.response.status_code == 400
        with pytest.raises(InvalidStatus) as refused:
            async with raw_client(server.port, path="/"):
                pass
        assert refused.value.response.status_code == 404
        # the server goes on serving
        async with ws_client() as client:
            assert (await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{server.port}/echo")).code == Code.CONTENT


async def test_plain_http_requests_get_clean_http_errors():
    async with ws_server() as server:
        answer = await raw_http(server.port, b"GET /.well-known/coap HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 426 ") and b"Upgrade: websocket" in answer
        answer = await raw_http(server.port, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 404 ")
        answer = await raw_http(server.port, upgrade_request().replace(b"GET", b"PUT", 1))
        assert answer.startswith(b"HTTP/1.1 400 ") or answer.startswith(b"HTTP/1.1 405 ")
        answer = await raw_http(server.port, b"\x16\x03\x01 not http at all\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")
        answer = await raw_http(server.port, upgrade_request(protocol="mqtt"))
        assert answer.startswith(b"HTTP/1.1 400 ") and b"subprotocol" in answer
        answer = await raw_http(server.port, b"GET /.well-known/coap HTTP/1.0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 505 ")
        await until(lambda: not server.ws._connections and not server.ws._closers)
        assert server.ws._accepted == 0


async def test_server_that_does_not_speak_coap_fails_the_request():
    async with raw_server(serve_coap, subprotocols=("chat",)) as port, ws_client() as client:
        with pytest.raises(error.NetworkError, match="400"):
            await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{port}/x")

    # a server that upgrades without selecting a subprotocol
    async with raw_server(serve_coap, subprotocols=()) as port, ws_client() as client:
        with pytest.raises(error.NetworkError, match="did not select the 'coap' subprotocol"):
            await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{port}/x")

    # an HTTP server without WebSockets
    async def http_only(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    http_server = await asyncio.start_server(http_only, "127.0.0.1", 0)
    try:
        port = http_server.sockets[0].getsockname()[1]
        async with ws_client() as client:
            with pytest.raises(error.NetworkError, match="HTTP 404"):
                await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{port}/x")
    finally:
        http_server.close()
        await http_server.wait_closed()


async def test_the_handshake_the_client_sends():
    seen = []

    async def record(connection):
        seen.append(connection.request)
        await serve_coap(connection)

    async with raw_server(record) as port, ws_client() as client:
        await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{port}/x")
    (handshake,) = seen
    assert handshake.path == "/.well-known/coap"
    assert handshake.headers["Sec-WebSocket-Protocol"] == "coap"
    assert handshake.headers["Host"] == f"127.0.0.1:{port}"
    assert "Sec-WebSocket-Extensions" not in handshake.headers


# --- ports ----------------------------------------------------------------------------


async def test_default_uri_ports_are_80_and_443(monkeypatch):
    async with ws_client() as client:
        pool = client.ws
        targets = []

        async def refuse(factory, host, port, **kwargs):
            targets.append((host, port, "ssl" in kwargs))
            raise ConnectionRefusedError()

        monkeypatch.setattr(pool.loop, "create_connection", refuse)
        for uri in ("coap+ws://Example.COM/x", "coaps+ws://example.com/x", "coap+ws://example.com:8080/x"):
            with pytest.raises(error.NetworkError, match="connection refused"):
                await request(client, code=Code.GET, uri=uri)
        assert targets == [("example.com", 80, False), ("example.com", 443, True), ("example.com", 8080, False)]


async def test_server_ports_follow_the_0_4_x_convention(monkeypatch):
    from ports import free_udp_port

    port = free_udp_port()
    async with ws_server(bind=("127.0.0.1", port)) as server:
        assert server.port == port + 3000
    # without a port: 8683 (here replaced by a free one, as 8683 may be taken)
    monkeypatch.setattr(ws, "SERVER_PORT", port + 3000)
    async with ws_server(bind=("127.0.0.1", None)) as server:
        assert server.port == port + 3000


# --- TLS (coaps+ws) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    pytest.importorskip("cryptography")
    from test_tls import PKI

    return PKI(tmp_path_factory.mktemp("pki"))


def tls_server_context(pki):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*pki.server)
    context.sni_seen = []
    context.sni_callback = lambda sslobj, name, ctx: context.sni_seen.append(name)
    return context


async def test_secure_websockets_with_a_trusted_ca(pki):
    async with ws_server(ssl_context=tls_server_context(pki)) as server, ws_client() as client:
        assert server.secure_port not in (0, server.port)
        authority = f"127.0.0.1:{server.secure_port}"
        client.client_credentials.load_from_dict({f"coaps+ws://{authority}/*": {"tls": {"ca-file": pki.ca}}})
        response = await request(client, code=Code.POST, uri=f"coaps+ws://{authority}/echo", payload=b"abc")
        assert response.payload == b"cba"
        remote = response.remote
        assert remote.scheme == "coaps+ws" and remote.uri_base == f"coaps+ws://{authority}"
        assert remote._transport.get_extra_info("ssl_object").selected_alpn_protocol() in (None, "http/1.1")
        # BERT over TLS too
        response = await request(client, code=Code.GET, uri=f"coaps+ws://{authority}/mb")
        assert response.payload == Megabytes.payload
        # the plain server goes on
        assert (await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{server.port}/echo")).code == Code.CONTENT


async def test_secure_websockets_verify_the_server(pki):
    async with ws_server(ssl_context=tls_server_context(pki)) as server, ws_client() as client:
        authority = f"127.0.0.1:{server.secure_port}"
        with pytest.raises(error.NetworkError, match="certificate verify failed"):
            await request(client, code=Code.GET, uri=f"coaps+ws://{authority}/echo")
        client.client_credentials.load_from_dict({f"coaps+ws://{authority}/*": {"tls": {"ca-file": pki.other_ca}}})
        with pytest.raises(error.NetworkError, match="certificate verify failed"):
            await request(client, code=Code.GET, uri=f"coaps+ws://{authority}/echo")
        # plain WebSockets to the TLS port: a clean failure, the server unharmed
        with pytest.raises(error.NetworkError):
            await request(client, code=Code.GET, uri=f"coap+ws://{authority}/echo")
        client.client_credentials.load_from_dict({f"coaps+ws://{authority}/*": {"tls": {"ca-file": pki.ca}}})
        assert (await request(client, code=Code.GET, uri=f"coaps+ws://{authority}/echo")).code == Code.CONTENT


async def test_host_names_are_verified_and_sent_as_sni(pki):
    context = tls_server_context(pki)
    async with ws_server(ssl_context=context) as server, ws_client() as client:
        authority = f"localhost:{server.secure_port}"
        client.client_credentials.load_from_dict({f"coaps+ws://{authority}/*": {"tls": {"ca-file": pki.ca}}})
        response = await request(client, code=Code.GET, uri=f"coaps+ws://{authority}/remotes")
        assert response.code == Code.CONTENT
        assert context.sni_seen == ["localhost"]
        (server_side,) = server.site.remotes.seen
        assert server_side.uri_base_local == f"coaps+ws://localhost:{server.secure_port}"


async def test_tcp_tls_and_websocket_servers_side_by_side(pki):
    from ports import free_udp_port

    port = free_udp_port()
    site = make_site()
    server = await Context.create_server_context(
        site, bind=("127.0.0.1", port), transports=["tcpserver", "tlsserver", "ws"],
        _ssl_context=tls_server_context(pki),
    )
    try:
        pool = pool_of(server)
        assert pool.servers["coap+ws"].sockets[0].getsockname()[1] == port + 3000
        assert pool.servers["coaps+ws"].sockets[0].getsockname()[1] == port + 3001
        async with ws_client() as client:
            client.client_credentials.load_from_dict(
                {f"coaps+ws://127.0.0.1:{port + 3001}/*": {"tls": {"ca-file": pki.ca}}}
            )
            for uri in (f"coap+ws://127.0.0.1:{port + 3000}/echo", f"coaps+ws://127.0.0.1:{port + 3001}/echo"):
                assert (await request(client, code=Code.GET, uri=uri)).code == Code.CONTENT
    finally:
        await server.shutdown()


# --- lifecycle -----------------------------------------------------------------------------


async def test_contexts_come_and_go_without_leaks():
    def fds():
        return len(os.listdir("/proc/self/fd"))

    async with ws_server() as server:
        for _ in range(3):
            async with ws_client() as client:
                await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{server.port}/echo")
        before = fds()
        for _ in range(20):
            async with ws_client() as client:
                await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{server.port}/echo")
        await until(lambda: not server.ws._connections and not server.ws._closers)
        assert fds() <= before + 2
        assert server.ws._accepted == 0 and not server.ws._per_host


# --- aiocoap 0.4.17's names ----------------------------------------------------------------


def test_0_4_17_names_and_signatures():
    import inspect

    assert list(inspect.signature(WSPool).parameters) == ["tman", "log", "loop"]
    parameters = inspect.signature(WSRemote).parameters
    assert list(parameters) == ["pool", "connection", "loop", "log", "scheme", "local_hostinfo", "remote_hostinfo"]
    assert parameters["scheme"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["local_hostinfo"].default is None and parameters["remote_hostinfo"].default is None
    assert PoolKey._fields == ("scheme", "hostinfo")
    assert ws.is_pyodide is False
    creating = inspect.signature(WSPool.create_transport).parameters
    assert {"client_credentials", "server_bind", "server_context"} <= set(creating)
    from aiocoap import defaults

    assert defaults.ws_missing_modules() == []


async def test_remote_made_the_0_4_x_way_with_address_tuples():
    async with ws_client() as client:
        pool = client.ws
        remote = WSRemote(
            pool, pool._client_protocol(PoolKey("coap+ws", "example.com")), pool.loop, pool.log,
            scheme="coap+ws", remote_hostinfo=("example.com", None),
        )
        assert remote.hostinfo == "example.com" and remote.uri_base == "coap+ws://example.com"
        assert remote.maximum_block_size_exp == 6  # before any CSM: 1152 bytes
        assert repr(remote) == "<WSRemote to coap+ws://example.com, closed>"
