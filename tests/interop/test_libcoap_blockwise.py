"""Blockwise transfers (RFC 7959, Request-Tag of RFC 9175) with libcoap 4.3
over UDP on loopback, with bodies of many blocks.

* libcoap's ``coap-client-notls -b 1024`` uploads a large body to our
  server (PUT, and POST whose response is large too) and downloads a large
  resource from it, also starting in the middle (``-b 7,64``).
* our client stores a large body on libcoap's ``coap-server-notls``
  (dynamic resources, ``-d``) and reads it back.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets

import pytest

from .conftest import free_port, hostport

pytestmark = pytest.mark.interop

LARGE = b"".join(b"%06d abcdefghijklmnopqrstuvwxyz\n" % i for i in range(8000))  # 272 000 bytes


class BlockServer:
    """Our server with resources for large bodies, on a free port of
    127.0.0.1, serving from the test's event loop.

    ``/large``   GET :data:`LARGE`; PUT stores a body and answers its SHA-256
    ``/stored``  GET the body stored last
    ``/reverse`` POST answers the body reversed (large in, large out)
    """

    def __init__(self):
        self.stored = b""
        self.context = None
        self.port = None

    def uri(self, path):
        return f"coap://{hostport('127.0.0.1', self.port)}{path}"

    async def __aenter__(self):
        import aiocoap
        from aiocoap import resource

        server = self

        class Large(resource.Resource):
            async def render_get(self, request):
                return aiocoap.Message(payload=LARGE)

            async def render_put(self, request):
                server.stored = request.payload
                return aiocoap.Message(code=aiocoap.CHANGED, payload=hashlib.sha256(request.payload).hexdigest().encode())

        class Stored(resource.Resource):
            async def render_get(self, request):
                return aiocoap.Message(payload=server.stored)

        class Reverse(resource.Resource):
            async def render_post(self, request):
                return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload[::-1])

        site = resource.Site()
        site.add_resource(["large"], Large())
        site.add_resource(["stored"], Stored())
        site.add_resource(["reverse"], Reverse())
        for attempt in range(3):
            self.port = free_port("127.0.0.1")
            try:
                self.context = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", self.port))
                break
            except OSError:
                if attempt == 2:
                    raise
        return self

    async def __aexit__(self, *exc):
        await self.context.shutdown()


async def test_libcoap_uploads_a_large_body(coap_client, tmp_path):
    body = secrets.token_hex(60000).encode()  # 120 000 bytes, 118 blocks
    source = tmp_path / "body"
    source.write_bytes(body)
    async with BlockServer() as server:
        run = await coap_client(server.uri("/large"), "-m", "put", "-b", "1024", "-f", str(source), wait=20)
        assert run.code == "2.04", run.describe()
        assert server.stored == body
        assert run.payload == hashlib.sha256(body).hexdigest().encode()
        # coap-client shows the first request and the final answer only
        first = next(m for m in run.messages if m.code == "PUT")
        assert first.option_values("Block1") == ["0/M/1024"], run.describe()
        assert first.option_values("Size1") == [str(len(body))]
        assert first.option_values("Request-Tag"), "libcoap tags its uploads"
        assert run.responses[-1].option_values("Block1") == [f"{len(body) // 1024}/_/1024"]
        # and what arrived is what is served
        back = await coap_client(server.uri("/stored"), "-b", "1024", wait=20)
        assert back.code == "2.05" and back.payload == body, back.describe()


async def test_libcoap_downloads_a_large_resource(coap_client):
    async with BlockServer() as server:
        run = await coap_client(server.uri("/large"), "-b", "1024", wait=20)
    assert run.code == "2.05", run.describe()
    assert run.payload == LARGE
    assert len(run.responses) == -(-len(LARGE) // 1024), run.describe()
    etags = {tuple(r.option_values("ETag")) for r in run.responses}
    assert len(etags) == 1 and etags != {()}, "one representation, marked by an ETag"


async def test_libcoap_starts_in_the_middle(coap_client):
    """Random access: the first request asks for block 7 (coap-client then
    stops after that one block)."""
    async with BlockServer() as server:
        run = await coap_client(server.uri("/large"), "-b", "7,64", wait=20)
    assert run.code == "2.05", run.describe()
    first = next(m for m in run.messages if m.code == "GET")
    assert first.option_values("Block2") == ["7/_/64"], run.describe()
    assert run.responses[0].option_values("Block2") == ["7/M/64"], run.describe()
    assert run.payload == LARGE[7 * 64 : 8 * 64]


async def test_libcoap_large_post_with_large_response(coap_client, tmp_path):
    body = secrets.token_hex(3000).encode()
    source = tmp_path / "body"
    source.write_bytes(body)
    async with BlockServer() as server:
        run = await coap_client(server.uri("/reverse"), "-m", "post", "-b", "256", "-f", str(source), wait=20)
    assert run.code == "2.04", run.describe()
    assert run.payload == body[::-1]


async def test_our_client_with_libcoap_server(libcoap_server, client_context):
    import aiocoap

    uri = libcoap_server.uri(f"/dyn-large-{secrets.token_hex(4)}")
    body = secrets.token_hex(50000).encode()  # 100 000 bytes
    async with client_context() as ctx:
        created = await asyncio.wait_for(ctx.request(aiocoap.Message(code=aiocoap.PUT, uri=uri, payload=body)).response, 60)
        assert created.code == aiocoap.CREATED, created
        got = await asyncio.wait_for(ctx.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response, 60)
        assert got.code == aiocoap.CONTENT
        assert got.payload == body
        small = await asyncio.wait_for(
            ctx.request(aiocoap.Message(code=aiocoap.GET, uri=uri, block2=(0, False, 2))).response, 60
        )
        assert small.payload == body
        await ctx.request(aiocoap.Message(code=aiocoap.DELETE, uri=uri)).response
