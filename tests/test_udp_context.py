"""Client and server Contexts over real UDP sockets on loopback (127.0.0.1
and ::1, ports chosen by the OS)."""

import asyncio
import os
import random
import socket
import time
import warnings

import pytest

from aiocoap import error, resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import Type
from aiocoap.protocol import Context

import ports

pytestmark = pytest.mark.core

TRANSPORTS = ["udp6"]


def free_port(family=socket.AF_INET6, host="::1"):
    return ports.free_port(host)


class Counting(resource.Resource):
    def __init__(self):
        super().__init__()
        self.posts = 0

    async def render_get(self, request):
        return Message(payload=b"hello " + request.remote.hostinfo.encode())

    async def render_post(self, request):
        self.posts += 1
        return Message(code=Code.CHANGED, payload=b"post %d" % self.posts)

    async def render_put(self, request):
        return Message(payload=request.payload)

    async def render_delete(self, request):
        return Message()

    async def render_fetch(self, request):
        return Message(payload=request.payload.upper())


async def server_and_client(host="::"):
    site = resource.Site()
    counting = Counting()
    site.add_resource(["r"], counting)
    port = free_port()
    server = await Context.create_server_context(site, bind=(host, port), transports=TRANSPORTS)
    client = await Context.create_client_context(transports=TRANSPORTS)
    return server, client, port, counting


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
async def test_methods_over_both_families(host):
    server, client, port, counting = await server_and_client()
    try:
        uri = f"coap://{host}:{port}/r"
        response = await client.request(Message(code=Code.GET, uri=uri)).response
        assert response.code == Code.CONTENT
        assert response.payload.startswith(b"hello ")
        assert response.get_request_uri() == uri
        assert response.remote.hostinfo == f"{host}:{port}"
        for code, payload, expected in [
            (Code.POST, b"", Code.CHANGED),
            (Code.PUT, b"x", Code.CHANGED),
            (Code.DELETE, b"", Code.DELETED),
            (Code.FETCH, b"abc", Code.CONTENT),
        ]:
            response = await client.request(Message(code=code, payload=payload, uri=uri)).response
            assert response.code == expected
        assert response.payload == b"ABC"
        response = await client.request(Message(code=Code.GET, _mtype=Type.NON, uri=uri)).response
        assert response.mtype is Type.NON
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_replayed_datagram_answered_from_cache():
    server, client, port, counting = await server_and_client()
    try:
        request = Message(_mtype=Type.CON, _mid=4711, code=Code.POST, _token=b"abcd", uri_path=["r"])
        data = request.encode()

        def exchange_twice():
            # blocking, so in a thread: the server runs on this test's loop
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                s.sendto(data, ("127.0.0.1", port))
                first = s.recv(1500)
                s.sendto(data, ("127.0.0.1", port))
                return first, s.recv(1500)

        first, second = await asyncio.get_running_loop().run_in_executor(None, exchange_twice)
        assert first == second
        assert Message.decode(first).payload == b"post 1"
        assert counting.posts == 1
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_icmp_error_fails_fast():
    client = await Context.create_client_context(transports=TRANSPORTS)
    try:
        port = free_port(socket.AF_INET, "127.0.0.1")  # nothing listens there now
        start = time.monotonic()
        with pytest.raises(error.NetworkError):
            await client.request(Message(code=Code.GET, uri=f"coap://127.0.0.1:{port}/")).response
        assert time.monotonic() - start < 1
        # and the context still works afterwards
        with pytest.raises(error.NetworkError):
            await client.request(Message(code=Code.GET, uri=f"coap://[::1]:{port}/")).response
    finally:
        await client.shutdown()


async def test_timeout_with_short_tuning():
    # A socket that swallows everything: no ICMP error, no answer.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        port = sink.getsockname()[1]
        client = await Context.create_client_context(transports=TRANSPORTS)
        try:
            tuning = TransportTuning(ACK_TIMEOUT=0.05, MAX_RETRANSMIT=2)
            start = time.monotonic()
            with pytest.raises(error.RequestTimedOut):
                await client.request(
                    Message(code=Code.GET, uri=f"coap://127.0.0.1:{port}/", transport_tuning=tuning)
                ).response
            assert time.monotonic() - start < tuning.MAX_TRANSMIT_WAIT + 0.5
        finally:
            await client.shutdown()


async def test_unknown_host_is_a_resolution_error():
    client = await Context.create_client_context(transports=TRANSPORTS)
    try:
        with pytest.raises(error.ResolutionError):
            await client.request(Message(code=Code.GET, uri="coap://nonexistent.invalid/")).response
    finally:
        await client.shutdown()


async def test_server_survives_random_datagrams():
    server, client, port, counting = await server_and_client()
    try:
        rng = random.Random(42)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            for i in range(10000):
                length = rng.randrange(0, 64)
                s.sendto(bytes(rng.randrange(256) for _ in range(length)), ("::1", port))
                if i % 500 == 0:
                    await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        response = await client.request(Message(code=Code.GET, uri=f"coap://[::1]:{port}/r")).response
        assert response.code == Code.CONTENT
    finally:
        await client.shutdown()
        await server.shutdown()


def _fd_count():
    return len(os.listdir("/proc/self/fd"))


async def test_create_shutdown_cycles_leave_nothing_behind():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        await (await Context.create_client_context(transports=TRANSPORTS)).shutdown()
        before = _fd_count()
        for _ in range(100):
            ctx = await Context.create_client_context(transports=TRANSPORTS)
            await ctx.shutdown()
        for _ in range(20):
            ctx = await Context.create_server_context(resource.Site(), bind=("::1", 0), transports=TRANSPORTS)
            await ctx.shutdown()
        assert _fd_count() <= before
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_shutdown_fails_pending_with_library_shutdown():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        client = await Context.create_client_context(transports=TRANSPORTS)
        pending = client.request(Message(code=Code.GET, uri=f"coap://127.0.0.1:{sink.getsockname()[1]}/"))
        await asyncio.sleep(0.05)
        await client.shutdown()
        with pytest.raises(error.LibraryShutdown):
            await pending.response
