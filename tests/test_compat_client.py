"""aiocoap 0.4.x compatibility, client side: small programs in the style of
aiocoap's examples and tutorials (a server context and a client context on
127.0.0.1, real sockets), for what aiocoap 0.4.x users rely on."""

import asyncio
import contextlib

import pytest

import aiocoap
import aiocoap.resource as resource
from aiocoap import GET, PUT, Context, Message

from ports import free_udp_port

pytestmark = pytest.mark.core


class Recorder(resource.Resource):
    """Answers with the type the request came as, and keeps the raw
    requests (it does blocks itself, so it sees every block)."""

    def __init__(self, size=0):
        super().__init__()
        self.requests = []
        self.size = size

    async def needs_blockwise_assembly(self, request):
        return False

    async def render_get(self, request):
        self.requests.append(request)
        block2 = request.opt.block2
        body = bytes(range(256)) * (self.size // 256)
        if block2 is None:
            return Message(payload=str(request.mtype).encode() if not self.size else body)
        start = block2.start
        chunk = body[start:start + block2.size]
        response = Message(payload=chunk)
        response.opt.block2 = (block2.block_number, start + block2.size < len(body), block2.size_exponent)
        return response

    async def render_put(self, request):
        self.requests.append(request)
        block1 = request.opt.block1
        response = Message(code=aiocoap.CHANGED if block1 is None or not block1.more else aiocoap.CONTINUE)
        if block1 is not None:
            response.opt.block1 = block1
        return response


@contextlib.asynccontextmanager
async def server_and_client(**resources):
    site = resource.Site()
    for name, res in resources.items():
        site.add_resource([name], res)
    port = free_udp_port()
    server = await Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    client = await Context.create_client_context(transports=["udp6"])
    try:
        yield client, f"coap://127.0.0.1:{port}"
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_reliable_and_unreliable():
    rec = Recorder()
    async with server_and_client(rec=rec) as (client, base):
        plain = await client.request(Message(code=GET, uri=base + "/rec")).response
        non = await client.request(Message(code=GET, uri=base + "/rec", transport_tuning=aiocoap.Unreliable)).response
        con = await client.request(Message(code=GET, uri=base + "/rec", transport_tuning=aiocoap.Reliable)).response
    assert (plain.payload, non.payload, con.payload) == (b"CON", b"NON", b"CON")
    # the response to a NON request is NON
    assert non.mtype is aiocoap.NON and con.mtype is aiocoap.ACK


async def test_response_nonraising():
    async with server_and_client() as (client, base):
        not_found = await client.request(Message(code=GET, uri=base + "/nothing")).response_nonraising
        assert not_found.code == aiocoap.NOT_FOUND
        # a transport failure (the port is closed) becomes 5.00, as in aiocoap
        closed = f"coap://127.0.0.1:{free_udp_port()}/x"
        failed = await client.request(Message(code=GET, uri=closed)).response_nonraising
        assert failed.code == aiocoap.INTERNAL_SERVER_ERROR
        with pytest.raises(aiocoap.error.ResponseWrappingError):
            await client.request(Message(code=GET, uri=base + "/nothing")).response_raising


async def test_block_size_hint_for_uploads_and_the_first_block2_request():
    uploads, downloads = Recorder(), Recorder(size=1024)
    async with server_and_client(up=uploads, down=downloads) as (client, base):
        request = Message(code=PUT, uri=base + "/up", payload=bytes(1000))
        request.remote.maximum_block_size_exp = 4  # (on the UndecidedRemote of the unsent request)
        response = await client.request(request).response
        assert response.code == aiocoap.CHANGED
        assert {r.opt.block1.size_exponent for r in uploads.requests} == {4}
        assert len(uploads.requests) == 1000 // 256 + 1

        request = Message(code=GET, uri=base + "/down")
        request.remote.maximum_block_size_exp = 5
        response = await client.request(request).response
        assert response.payload == bytes(range(256)) * 4
        first = downloads.requests[0]
        assert first.opt.block2 is not None and first.opt.block2.size_exponent == 5
        assert {r.opt.block2.size_exponent for r in downloads.requests} == {5}


async def test_cancelled_request_is_not_sent():
    rec = Recorder()
    async with server_and_client(rec=rec) as (client, base):
        request = client.request(Message(code=GET, uri=base + "/rec"))
        request.response.cancel()
        await client.request(Message(code=GET, uri=base + "/rec")).response
        await asyncio.sleep(0.05)
    assert len(rec.requests) == 1


async def test_requested_scheme_over_the_network():
    rec = Recorder()
    async with server_and_client(rec=rec) as (client, base):
        port = int(base.rsplit(":", 1)[1])
        request = Message(code=GET, uri_host="127.0.0.1", uri_port=port, uri_path=["rec"])
        request.requested_scheme = "coap"
        response = await client.request(request).response
    assert response.payload == b"CON"
