"""Resource directory interoperability with libcoap (4.3) over UDP on
loopback.

* libcoap's ``coap-client-notls`` registers at our RD, reads the lookups
  (blockwise where they are long) and removes its registration.
* Our :class:`Registerer` registers at libcoap's ``coap-rd-notls``, a
  simple RD: it has the registration interface (``/rd``) and registration
  resources it lists in its ``/.well-known/core``, but no lookup
  interfaces, answers updates with 4.05 and (in 4.3.1) crashes on DELETE.
  The registration and its links are checked; shutting down must end in
  time whatever that RD does with the removal.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from aiocoap import Context, Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.resource import Resource, Site, WKCResource
from aiocoap.resourcedirectory.client.register import Registerer
from aiocoap.util.linkformat import parse
from rd_helpers import running_rd

from .conftest import free_port, start_libcoap_server, stop_process

pytestmark = pytest.mark.interop

RD_NAME = "coap-rd-notls"
QUICK = TransportTuning(ACK_TIMEOUT=0.1, MAX_RETRANSMIT=2)


@pytest.fixture
def coap_rd_bin() -> str:
    path = shutil.which(RD_NAME)
    if path is None:
        pytest.skip(f"libcoap's {RD_NAME} is not installed (Debian package libcoap3-bin)")
    return path


def _location(run) -> str:
    (created,) = [m for m in run.responses if m.code == "2.01"]
    return "/" + "/".join(created.option_values("Location-Path"))


async def test_libcoap_client_registers_at_our_rd(coap_client):
    async with running_rd() as (rd, uri):
        discovery = await coap_client(uri + "/.well-known/core?rt=core.rd*")
        assert {link.href for link in parse(discovery.payload)} == {"/rd", "/rd-lookup/ep", "/rd-lookup/res"}, discovery.describe()

        run = await coap_client(
            uri + "/rd?ep=libcoap-node&lt=600&et=tag:libcoap",
            "-m", "post", "-t", "40", "-e", '</sensors/temp>;rt="temperature-c";if="sensor",</light>;obs',
        )
        assert run.code == "2.01", run.describe()
        location = _location(run)
        assert location.startswith("/reg/")

        lookup = await coap_client(uri + "/rd-lookup/res?ep=libcoap-node")
        assert lookup.code == "2.05", lookup.describe()
        links = parse(lookup.payload).links
        # libcoap's client sends from its own ephemeral port: that is the base
        assert [link.href.rsplit("/", 1)[1] for link in links] == ["temp", "light"]
        assert all(link.href.startswith("coap://127.0.0.1:") for link in links)
        assert links[0].rt == "temperature-c"

        endpoints = await coap_client(uri + "/rd-lookup/ep?et=tag:libcoap")
        ((ep),) = parse(endpoints.payload).links
        assert (ep.href, ep.ep, ep.lt) == (location, "libcoap-node", "600")

        update = await coap_client(uri + location + "?lt=1200", "-m", "post")
        assert update.code == "2.04", update.describe()
        read = await coap_client(uri + location)
        assert [link.href for link in parse(read.payload)] == ["/sensors/temp", "/light"]

        bad = await coap_client(uri + "/rd?ep=x", "-m", "post", "-t", "40", "-e", "<broken")
        assert bad.code == "4.00" and "invalid link format" in bad.responses[-1].payload_text, bad.describe()

        removal = await coap_client(uri + location, "-m", "delete")
        assert removal.code == "2.02", removal.describe()
        assert (await coap_client(uri + "/rd-lookup/ep")).payload == b""


async def test_libcoap_client_reads_long_lookup_blockwise(coap_client):
    async with running_rd() as (rd, uri):
        for i in range(40):
            links = ",".join(f'</node{i}/sensor{j}>;rt="sensor";title="a long enough title"' for j in range(10))
            rd.directory.register(rd.clock(), [f"ep=node{i}", f"base=coap://[2001:db8::{i + 1:x}]"], links.encode(), 40, _source())
        expected = rd.directory.lookup_resources(rd.clock(), ["rt=sensor"]).encode()
        assert len(expected) > 10_000
        run = await coap_client(uri + "/rd-lookup/res?rt=sensor", "-b", "1024")
        assert run.code == "2.05", run.describe()
        assert run.payload == expected


def _source():
    from aiocoap.resourcedirectory.directory import Source

    return Source("2001:db8::ff", None)


class _Text(Resource):
    rt = "example.text"

    async def render_get(self, request):
        return Message(payload=b"hello")


class _QuickRegisterer(Registerer):
    retry_delay = 0.1
    request_timeout = 2.0


@pytest.fixture
def libcoap_rd(coap_rd_bin, tmp_path):
    server = start_libcoap_server(coap_rd_bin, tmp_path, extra=())
    try:
        yield server
    finally:
        stop_process(server.process)


async def test_registerer_at_libcoap_rd(libcoap_rd):
    server = libcoap_rd
    site = Site()
    site.add_resource([".well-known", "core"], WKCResource(site.get_resources_as_linkheader, impl_info=None))
    site.add_resource(["text"], _Text())
    port = free_port()
    context = await Context.create_server_context(site, bind=("127.0.0.1", port), transport_tuning=QUICK)
    try:
        registerer = _QuickRegisterer(context, server.base, registration_parameters={"ep": "aiocoap-node"})
        for _ in range(500):
            if registerer.state in ("registered", "failed"):
                break
            await asyncio.sleep(0.01)
        assert registerer.state == "registered", server.log()

        listing = await context.request(Message(code=Code.GET, uri=server.uri("/.well-known/core"))).response
        registrations = [link.href for link in parse(listing.payload) if link.href.startswith("/rd/")]
        assert len(registrations) == 1, listing.payload
        registered = await context.request(Message(code=Code.GET, uri=server.uri(registrations[0]))).response
        assert registered.code == Code.CONTENT
        assert parse(registered.payload) == site.get_resources_as_linkheader()

        await asyncio.wait_for(registerer.shutdown(), 10)
        assert registerer.state == "cancelled"
    finally:
        await context.shutdown()
