"""aiocoap 0.4.x compatibility, server side: resources written the way
aiocoap's examples and users write them (render methods, observable
resources, render_to_pipe, their own blockwise handling with Block1Spool
and Block2Cache), served on 127.0.0.1 over real sockets."""

import asyncio
import contextlib
import logging

import pytest

import aiocoap
import aiocoap.resource as resource
from aiocoap import GET, PUT, Context, Message
from aiocoap.blockwise import Block1Spool, Block2Cache

from ports import free_udp_port

pytestmark = pytest.mark.core


@contextlib.asynccontextmanager
async def serving(site):
    port = free_udp_port()
    server = await Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    client = await Context.create_client_context(transports=["udp6"])
    try:
        yield client, f"coap://127.0.0.1:{port}", server
    finally:
        await client.shutdown()
        await server.shutdown()


async def get(client, uri, **options):
    return await asyncio.wait_for(client.request(Message(code=GET, uri=uri, **options)).response, 10)


class BrokenError(aiocoap.error.RenderableError):
    def to_message(self):
        raise RuntimeError("cannot render myself")


class Broken(resource.Resource):
    async def render_get(self, request):
        raise BrokenError()


async def test_error_whose_to_message_fails_gives_5_00(caplog):
    site = resource.Site()
    site.add_resource(["broken"], Broken())
    async with serving(site) as (client, base, _):
        with caplog.at_level(logging.ERROR):
            response = await get(client, base + "/broken")
    assert response.code == aiocoap.INTERNAL_SERVER_ERROR and response.payload == b""
    lines = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and "cannot render myself" in lines[0].getMessage()


async def test_uri_path_abbrev_is_served():
    site = resource.Site()
    site.add_resource([".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader))
    async with serving(site) as (client, base, _):
        ok = await get(client, base, uri_path_abbrev=0)
        unknown = await get(client, base, uri_path_abbrev=4242)
        both = await get(client, base + "/x", uri_path_abbrev=0)
    assert ok.code == aiocoap.CONTENT and b"</.well-known/core>" in ok.payload
    assert unknown.code == both.code == aiocoap.BAD_OPTION


class Streaming(resource.ObservableResource):
    """Writes its answers into the pipe itself (a proxy relaying an
    observation does this)."""

    async def render_to_pipe(self, pipe):
        pipe.add_response(Message(payload=b"first", observe=0), is_last=False)
        await asyncio.sleep(0.01)
        pipe.add_response(Message(payload=b"second", observe=1), is_last=False)
        await asyncio.sleep(0.01)
        pipe.add_response(Message(payload=b"done"), is_last=True)

    async def render_get(self, request):  # (not called: render_to_pipe takes over)
        raise AssertionError("render_get was called")


async def test_render_to_pipe_takes_over():
    site = resource.Site()
    site.add_resource(["stream"], Streaming())
    async with serving(site) as (client, base, _):
        request = client.request(Message(code=GET, uri=base + "/stream", observe=0))
        first = await request.response
        seen = []
        with pytest.raises(aiocoap.error.ObservationCancelled):  # (the server ended it)
            async for notification in request.observation:
                seen.append(notification.payload)
    assert first.payload == b"first"
    assert seen == [b"second", b"done"]


class Uploads(resource.Resource):
    """Handles its blocks itself, as aiocoap resources do with the spools."""

    def __init__(self):
        super().__init__()
        self.spool = Block1Spool()
        self.cache = Block2Cache()
        self.renders = 0
        self.body = b""

    async def needs_blockwise_assembly(self, request):
        return False

    async def render_put(self, request):
        request = self.spool.feed_and_take(request)
        self.body = request.payload
        response = Message(code=aiocoap.CHANGED)
        response.opt.block1 = request.opt.block1
        return response

    async def render_get(self, request):
        async def build():
            self.renders += 1
            return Message(payload=self.body)

        return await self.cache.extract_or_insert(request, build)


async def test_block1spool_and_block2cache():
    site = resource.Site()
    uploads = Uploads()
    site.add_resource(["up"], uploads)
    body = bytes(range(256)) * 12
    async with serving(site) as (client, base, _):
        put = await client.request(Message(code=PUT, uri=base + "/up", payload=body)).response
        assert put.code == aiocoap.CHANGED and uploads.body == body
        got = await get(client, base + "/up")
        assert got.payload == body
        # Rendered for the first block, which was too large for a client not
        # yet shown to receive (aiocoap.amplification: an Echo challenge),
        # and again for its repetition; the later blocks came from the cache.
        assert uploads.renders == 2
        # a block out of order: 4.08
        stray = Message(code=PUT, uri=base + "/up", payload=bytes(64), block1=(5, True, 2))
        answer = await client.request(stray, handle_blockwise=False).response
        assert answer.code == aiocoap.REQUEST_ENTITY_INCOMPLETE


class Observed(resource.ObservableResource):
    def __init__(self):
        super().__init__()
        self.value = 0
        self.deregister_first = False

    async def add_observation(self, request, serverobservation):
        await super().add_observation(request, serverobservation)
        if self.deregister_first:
            serverobservation.deregister("not now")

    async def render_get(self, request):
        return Message(payload=b"%d" % self.value)


async def test_observations_as_aiocoap_users_rely_on():
    site = resource.Site()
    observed = Observed()
    site.add_resource(["obs"], observed)
    site.add_resource(["plain"], resource.WKCResource(site.get_resources_as_linkheader))
    async with serving(site) as (client, base, _):
        request = client.request(Message(code=GET, uri=base + "/obs", observe=0))
        await request.response
        # two updates without a yield in between: only the latest goes out
        observed.updated_state(Message(payload=b"one"))
        observed.updated_state(Message(payload=b"two"))
        # and it is not lost although nobody iterates yet
        await asyncio.sleep(0.1)
        iterator = request.observation.__aiter__()
        assert (await asyncio.wait_for(iterator.__anext__(), 5)).payload == b"two"
        request.observation.cancel()
        await iterator.aclose()

        # deregistered before the first response: a plain 2.05
        observed.deregister_first = True
        request = client.request(Message(code=GET, uri=base + "/obs", observe=0))
        response = await asyncio.wait_for(request.response, 5)
        assert response.code == aiocoap.CONTENT and response.opt.observe is None

        # observing what is not observable: the loop simply ends
        request = client.request(Message(code=GET, uri=base + "/plain", observe=0))
        assert (await request.response).code == aiocoap.CONTENT
        async for _ in request.observation:
            raise AssertionError("no notifications")
