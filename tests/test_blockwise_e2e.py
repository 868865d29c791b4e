"""Blockwise transfers between two Contexts over the in-memory network of
tests/memorynet.py: BlockwiseRequest on the client, BlockwiseServer on the
server, and the messages they exchange on the (sometimes lossy) link.

The examples' /other/block resource is exercised here in-process, and as
real processes over UDP where the UDP transport is available.
"""

import asyncio
import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiocoap import error, resource
from aiocoap.blockwise import BlockwiseRequest, ServerBlockwiseState
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.optiontypes import BlockOption
from aiocoap.protocol import Request

from memorynet import MemoryAddress, MemoryNet

BT = BlockOption.BlockwiseTuple
# The memory net delivers at once: with a second of ACK timeout nothing is
# retransmitted even on a busy machine, so message counts are exact.
CALM = TransportTuning(ACK_TIMEOUT=1.0, MAX_RETRANSMIT=2, EMPTY_ACK_DELAY=0.5, REQUEST_TIMEOUT=10)
# For the tests that wait for timeouts
QUICK = TransportTuning(ACK_TIMEOUT=0.05, MAX_RETRANSMIT=2, EMPTY_ACK_DELAY=0.02, REQUEST_TIMEOUT=0.3)
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def body_of(size, seed=0):
    return bytes((i * 31 + seed + i // 251) & 0xFF for i in range(size))


class Store(resource.Resource):
    """GET the stored body; PUT replaces it (answering its length); POST
    and FETCH answer with the body reversed; every received body is kept."""

    def __init__(self, content=b""):
        super().__init__()
        self.content = content
        self.received = []

    async def render_get(self, request):
        return Message(payload=self.content)

    async def render_put(self, request):
        self.received.append(request.payload)
        self.content = request.payload
        return Message(code=Code.CHANGED, payload=str(len(request.payload)).encode())

    async def render_post(self, request):
        self.received.append(request.payload)
        await asyncio.sleep(0)
        return Message(code=Code.CHANGED, payload=request.payload[::-1])

    async def render_fetch(self, request):
        return Message(payload=request.payload[::-1] * 3)


class Changing(resource.Resource):
    """Content changes on every rendering."""

    def __init__(self):
        super().__init__()
        self.renderings = 0

    async def render_get(self, request):
        self.renderings += 1
        return Message(payload=bytes([self.renderings]) * 3000)


class Picky(resource.Resource):
    """Does blockwise itself: refuses blocks above 256 bytes with 4.13 and
    a Block1 of its preferred size, and reassembles the rest with a core
    of its own."""

    def __init__(self):
        super().__init__()
        self.core = ServerBlockwiseState()
        self.bodies = []

    async def needs_blockwise_assembly(self, request):
        return False

    async def render(self, request):
        block1 = request.opt.block1
        if block1 is None and len(request.payload) > 256 or block1 is not None and block1.size_exponent > 4:
            return Message(code=Code.REQUEST_ENTITY_TOO_LARGE, block1=(0, False, 4))
        job = self.core.receive(request, 0)
        if isinstance(job, Message):
            return job
        self.bodies.append(job.request.payload)
        return self.core.respond(job, Message(code=Code.CHANGED, payload=b"stored"), 0)


class SelfSlicing(resource.Resource):
    """Cuts its own responses (needs no assembly), with an ETag that
    changes after the first block was served."""

    async def needs_blockwise_assembly(self, request):
        return False

    async def render_get(self, request):
        block = request.opt.block2 or BT(0, False, 6)
        etag = b"first" if block.block_number == 0 else b"second"
        size = block.size
        content = b"s" * 4000
        piece = content[block.block_number * size : (block.block_number + 1) * size]
        more = (block.block_number + 1) * size < len(content)
        return Message(payload=piece, etag=etag, block2=(block.block_number, more, block.size_exponent))


class BigClock(resource.ObservableResource):
    """Observable, with notifications larger than one block (which the
    observe code cuts with BlockwiseServer.slice_response)."""

    def __init__(self):
        super().__init__()
        self.value = 0

    def content(self):
        return (b"%d:" % self.value) * 1000

    async def render_get(self, request):
        return Message(payload=self.content())


def make_site():
    site = resource.Site()
    site.add_resource(["store"], Store(body_of(5000)))
    site.add_resource(["changing"], Changing())
    site.add_resource(["picky"], Picky())
    site.add_resource(["selfslicing"], SelfSlicing())
    site.add_resource(["clock"], BigClock())
    return site


def res(site, path):
    return site._resources[tuple(path)]


class Pair:
    def __init__(self, net, site, server, client):
        self.net, self.site, self.server, self.client = net, site, server, client

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.client.shutdown()
        await self.server.shutdown()

    def sent_by(self, name):
        return [Message.decode(d) for s, _, d in self.net.log if s == name]


async def pair(tuning=CALM, seed=0):
    net = MemoryNet(asyncio.get_running_loop(), seed=seed)
    site = make_site()
    server = await net.context("server", site, transport_tuning=tuning)
    client = await net.context("client", transport_tuning=tuning)
    # The message counts here are blockwise's own: the client counts as
    # shown to receive from the start, so no Echo round trip (tested in
    # test_amplification.py) comes first.
    server.amplification.note_reachable(MemoryAddress("client", None), server.loop.time())
    return Pair(net, site, server, client)


def uri(path):
    return "coap://server/" + path


SIZES = [0, 1, 15, 16, 1023, 1024, 1025, 64 * 1024, 1 << 20]


@pytest.mark.parametrize("size", SIZES)
async def test_put_and_get_every_size(size):
    async with await pair() as p:
        body = body_of(size, seed=size)
        put = p.client.request(Message(code=Code.PUT, uri=uri("store"), payload=body))
        assert isinstance(put, BlockwiseRequest)
        response = await put.response
        assert response.code == Code.CHANGED and response.payload == str(size).encode()
        assert res(p.site, ["store"]).received == [body]
        response = await p.client.request(Message(code=Code.GET, uri=uri("store"))).response
        assert response.code == Code.CONTENT
        assert response.payload == body
        assert response.opt.block2 is None
        assert response.get_request_uri() == uri("store")
        assert response.remote.hostinfo == "server"
        blocks = max(1, -(-size // 1024))
        requests = [m for m in p.sent_by("client") if m.code.is_request()]
        assert len(requests) == 2 * blocks
        uploads = [m.opt.request_tag for m in requests if m.code == Code.PUT]
        assert len(set(uploads)) == 1 and bool(uploads[0]) == (size > 1024)


async def test_small_request_is_one_plain_exchange():
    async with await pair() as p:
        request = Message(code=Code.POST, uri=uri("store"), payload=b"small")
        response = await p.client.request(request).response
        assert response.payload == b"llams"
        assert response.request is request
        assert [(m.code, m.opt.block1, m.opt.request_tag) for m in p.sent_by("client")] == [(Code.POST, None, ())]
        assert len(p.sent_by("server")) == 1


@pytest.mark.parametrize("szx", range(7))
async def test_every_block_size_on_the_wire(szx):
    async with await pair() as p:
        body = body_of(2500)
        size = 1 << (szx + 4)
        request = Message(code=Code.POST, uri=uri("store"), payload=body, block1=(0, False, szx), block2=(0, False, szx))
        response = await p.client.request(request).response
        assert response.payload == body[::-1]
        assert res(p.site, ["store"]).received == [body]
        for message in p.sent_by("client") + p.sent_by("server"):
            for block in (message.opt.block1, message.opt.block2):
                if block is not None:
                    assert block.size_exponent == szx
            block = message.opt.block1 if message.code.is_request() else message.opt.block2
            if block is not None and block.more:
                assert len(message.payload) == size
        requests = [m for m in p.sent_by("client")]
        assert len(requests) == 2 * -(-2500 // size) - 1


async def test_lossy_link_with_retransmissions():
    tuning = TransportTuning(ACK_TIMEOUT=0.01, ACK_RANDOM_FACTOR=1.2, MAX_RETRANSMIT=10, EMPTY_ACK_DELAY=0.005, REQUEST_TIMEOUT=5)
    async with await pair(tuning, seed=7) as p:
        p.net.loss = 0.2
        p.net.duplicate = 0.1
        body = body_of(20000)
        response = await p.client.request(Message(code=Code.PUT, uri=uri("store"), payload=body)).response
        assert response.code == Code.CHANGED
        assert res(p.site, ["store"]).received == [body]
        response = await p.client.request(Message(code=Code.GET, uri=uri("store"))).response
        assert response.payload == body
        requests = [m for m in p.sent_by("client") if m.code.is_request()]
        assert len(requests) > 2 * 20  # retransmissions happened
        assert len({(m.code, m.opt.block1, m.opt.block2) for m in requests}) == 2 * 20


async def test_concurrent_uploads_get_distinct_request_tags():
    async with await pair() as p:
        bodies = [body_of(3000 + 100 * i, seed=i) for i in range(6)]
        requests = [p.client.request(Message(code=Code.POST, uri=uri("store"), payload=b)) for b in bodies]
        responses = await asyncio.gather(*(r.response for r in requests))
        assert [r.payload for r in responses] == [b[::-1] for b in bodies]
        assert sorted(res(p.site, ["store"]).received) == sorted(bodies)
        tags = {m.opt.request_tag for m in p.sent_by("client") if m.opt.block1 is not None}
        assert len(tags) == 6


async def test_random_access_to_a_block():
    async with await pair() as p:
        request = Message(code=Code.GET, uri=uri("store"), block2=(7, False, 4))
        plain = p.client.request(request, handle_blockwise=False)
        assert isinstance(plain, Request)
        response = await plain.response
        assert response.opt.block2 == BT(7, True, 4)
        assert response.payload == body_of(5000)[7 * 256 : 8 * 256]


async def test_handle_blockwise_false_leaves_blocks_to_the_application():
    async with await pair() as p:
        response = await p.client.request(Message(code=Code.GET, uri=uri("store")), handle_blockwise=False).response
        assert response.opt.block2 == BT(0, True, 6) and len(response.payload) == 1024
        response = await p.client.request(
            Message(code=Code.PUT, uri=uri("store"), payload=b"x" * 1024, block1=(3, True, 6)),
            handle_blockwise=False,
        ).response
        assert response.code == Code.REQUEST_ENTITY_INCOMPLETE


async def test_resource_changed_between_blocks():
    async with await pair() as p:
        # Without the response cache every block is rendered afresh.
        p.server.blockwise.state.response_timeout = 0
        with pytest.raises(error.ResourceChanged):
            await p.client.request(Message(code=Code.GET, uri=uri("changing"))).response
        with pytest.raises(error.ResourceChanged):
            await p.client.request(Message(code=Code.GET, uri=uri("selfslicing"))).response


async def test_cached_representation_is_consistent():
    async with await pair() as p:
        response = await p.client.request(Message(code=Code.GET, uri=uri("changing"))).response
        assert response.payload == b"\x01" * 3000 and res(p.site, ["changing"]).renderings == 1


async def test_body_too_large():
    async with await pair() as p:
        p.server.blockwise.max_body_size = 4096
        request = p.client.request(Message(code=Code.PUT, uri=uri("store"), payload=body_of(10000)))
        response = await request.response
        assert response.code == Code.REQUEST_ENTITY_TOO_LARGE and response.opt.size1 == 4096
        with pytest.raises(error.ResponseWrappingError) as caught:
            await p.client.request(Message(code=Code.PUT, uri=uri("store"), payload=body_of(10000))).response_raising
        assert caught.value.coapmessage.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert res(p.site, ["store"]).received == []
        assert p.server.blockwise.state.reassembly_count == 0


async def test_413_makes_the_client_use_smaller_blocks():
    async with await pair() as p:
        body = body_of(3000)
        response = await p.client.request(Message(code=Code.PUT, uri=uri("picky"), payload=body)).response
        assert response.code == Code.CHANGED and response.payload == b"stored"
        assert res(p.site, ["picky"]).bodies == [body]
        uploads = [m.opt.block1 for m in p.sent_by("client")]
        assert uploads[0].size_exponent == 6 and {b.size_exponent for b in uploads[1:]} == {4}


async def test_large_fetch_with_large_response():
    async with await pair() as p:
        query = body_of(2500)
        response = await p.client.request(Message(code=Code.FETCH, uri=uri("store"), payload=query)).response
        assert response.code == Code.CONTENT and response.payload == query[::-1] * 3
        small = await p.client.request(Message(code=Code.FETCH, uri=uri("store"), payload=b"abc" * 200)).response
        assert small.payload == (b"abc" * 200)[::-1] * 3
        follow_ups = [m for m in p.sent_by("client") if m.opt.block2 is not None and m.opt.block1 is None]
        # after a blockwise FETCH body, follow-ups carry the tag; otherwise the body
        assert any(m.opt.request_tag and m.payload == b"" for m in follow_ups)
        assert any(not m.opt.request_tag and m.payload == b"abc" * 200 for m in follow_ups)


async def test_size2_on_request():
    async with await pair() as p:
        response = await p.client.request(Message(code=Code.GET, uri=uri("store"), size2=0)).response
        assert response.payload == body_of(5000) and response.opt.size2 == 5000


async def test_observation_with_blockwise_notifications():
    async with await pair() as p:
        clock = res(p.site, ["clock"])
        request = p.client.request(Message(code=Code.GET, uri=uri("clock"), observe=0))
        first = await request.response
        assert first.payload == clock.content() and first.opt.observe is not None
        assert first.request.opt.observe == 0
        seen = []
        request.observation.register_callback(lambda m: seen.append(m.payload))
        for value in (1, 2, 3):
            clock.value = value
            clock.updated_state()
            for _ in range(50):
                await asyncio.sleep(0.005)
                if len(seen) == value:
                    break
        assert seen == [(b"%d:" % v) * 1000 for v in (1, 2, 3)]
        follow_ups = [m for m in p.sent_by("client") if m.opt.block2 is not None]
        assert follow_ups and all(m.opt.observe is None for m in follow_ups)
        request.observation.cancel()
        await asyncio.sleep(0.02)
        assert clock._observations == {}


async def test_large_response_of_unobservable_resource():
    async with await pair() as p:
        request = p.client.request(Message(code=Code.GET, uri=uri("store"), observe=0))
        response = await request.response
        assert response.payload == body_of(5000)
        async for _ in request.observation:  # (simply ends)
            raise AssertionError("no notifications expected")


async def test_cancelling_the_response_stops_the_transfer():
    async with await pair() as p:
        res(p.site, ["store"]).content = body_of(200000)
        request = p.client.request(Message(code=Code.GET, uri=uri("store")))
        while len(p.sent_by("client")) < 5:
            await asyncio.sleep(0)
        request.response.cancel()
        await asyncio.sleep(0.02)
        count = len(p.sent_by("client"))
        await asyncio.sleep(0.05)
        assert len(p.sent_by("client")) == count < 20


async def test_timeout_mid_transfer():
    async with await pair(QUICK) as p:
        # the link breaks after the second block
        p.net.drop = lambda source, data, destination: len(p.sent_by("client")) > 2
        request = p.client.request(Message(code=Code.PUT, uri=uri("store"), payload=body_of(5000)))
        with pytest.raises(error.RequestTimedOut):
            await request.response
        with pytest.raises(error.RequestTimedOut):
            await request.response_raising
        # (as aiocoap 0.4.x: a failure that is no RenderableError becomes 5.00)
        assert (await request.response_nonraising).code == Code.INTERNAL_SERVER_ERROR


async def test_shutdown_mid_transfer():
    p = await pair()
    res(p.site, ["store"]).content = body_of(200000)
    request = p.client.request(Message(code=Code.GET, uri=uri("store")))
    while len(p.sent_by("client")) < 3:
        await asyncio.sleep(0)
    await p.client.shutdown()
    with pytest.raises(error.LibraryShutdown):
        await request.response
    await p.server.shutdown()


async def test_server_state_is_freed_by_its_timer():
    async with await pair() as p:
        p.server.blockwise.state.reassembly_timeout = 0.05
        p.server.blockwise.state.response_timeout = 0.05
        first_block = Message(code=Code.PUT, uri=uri("store"), payload=b"x" * 1024, block1=(0, True, 6))
        answer = await p.client.request(first_block, handle_blockwise=False).response
        assert answer.code == Code.CONTINUE and answer.opt.block1 == BT(0, True, 6)
        await p.client.request(Message(code=Code.GET, uri=uri("store")), handle_blockwise=False).response
        state = p.server.blockwise.state
        assert state.reassembly_count == 1 and state.response_count == 1
        await asyncio.sleep(0.15)
        assert state.reassembly_count == 0 and state.response_count == 0 and state.buffered_bytes == 0


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_example_block_resource_in_process():
    server_example = load_example("server")
    site, clock = server_example.build_site()
    net = MemoryNet(asyncio.get_running_loop())
    server = await net.context("server", site, transport_tuning=CALM)
    client = await net.context("client", transport_tuning=CALM)
    try:
        default = await client.request(Message(code=Code.GET, uri="coap://server/other/block")).response
        assert default.code == Code.CONTENT and len(default.payload) > 1024
        # what examples/clientPUT.py sends
        payload = b"The quick brown fox jumps over the lazy dog.\n" * 30
        response = await client.request(Message(code=Code.PUT, payload=payload, uri="coap://server/other/block")).response
        assert response.code == Code.CHANGED and response.payload == payload
        stored = await client.request(Message(code=Code.GET, uri="coap://server/other/block")).response
        assert stored.payload == payload
        assert any(m.opt.block1 for m in (Message.decode(d) for s, _, d in net.log if s == "client"))
    finally:
        clock.stop()
        await client.shutdown()
        await server.shutdown()


def _free_port():
    """A port free for UDP and TCP on 127.0.0.1 (the server binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def _answers(port):
    """Whether a CoAP server answers a CON GET (a raw datagram) on port."""
    ping = Message(code=Code.GET, _mtype=0, _mid=0x1234, _token=b"p")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.connect(("127.0.0.1", port))
            s.send(ping.encode())
            return Message.decode(s.recv(2048)).mid == 0x1234
        except OSError:
            return False


def test_examples_over_udp():
    """examples/server.py and examples/clientPUT.py as processes."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "server.py"), "--bind", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=EXAMPLES.parent,
    )
    try:
        deadline = time.monotonic() + 20
        while not _answers(port) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.poll() is None, server.stderr.read().decode()
        client = subprocess.run(
            [sys.executable, str(EXAMPLES / "clientPUT.py"), f"coap://127.0.0.1:{port}/other/block"],
            capture_output=True, timeout=60, cwd=EXAMPLES.parent,
        )
        assert client.returncode == 0, client.stderr.decode()
        assert client.stdout.startswith(b"Result: 2.04 Changed\n")
        assert client.stdout.count(b"The quick brown fox jumps over the lazy dog.") == 30
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stderr.close()


def test_blockwise_does_not_import_protocol():
    """The dependency goes one way: protocol builds on blockwise, and no
    module of blockwise imports protocol."""
    import ast
    from pathlib import Path

    import aiocoap.blockwise

    for path in Path(aiocoap.blockwise.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [alias.name for alias in node.names]
                assert not any(n == "protocol" or n.endswith(".protocol") for n in names), (path, names)


def test_blockwise_module_can_be_imported_first():
    code = (
        "import aiocoap.blockwise as b, aiocoap.protocol as p, asyncio\n"
        "assert p.BlockwiseRequest is b.BlockwiseRequest\n"
        "async def main():\n"
        "    ctx = p.Context()\n"
        "    request = ctx.request(b.Message(code=1))\n"
        "    assert type(request) is b.BlockwiseRequest, request\n"
        "    try:\n"
        "        await request.response\n"
        "    except b.error.MissingRemoteError:\n"
        "        print('ok')\n"
        "    await ctx.shutdown()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, cwd=EXAMPLES.parent)
    assert done.stdout.strip() == b"ok", done.stderr.decode()


async def test_progress_of_a_download_is_reported():
    async with await pair() as p:
        reports = []
        request = p.client.request(Message(code=Code.GET, uri=uri("store"), size2=0))
        request.on_progress(lambda received, total: reports.append((received, total)))
        response = await request.response
        assert len(response.payload) == 5000
        # one report per block that arrived before the last one
        assert reports == [(1024 * n, 5000) for n in range(1, 5)]
