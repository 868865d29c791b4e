"""aiocoap.resourcedirectory.client.register.Registerer against our
resource directory over UDP on loopback: discovery, registration, refresh,
re-registration after the RD lost it or went away and came back, removal
at shutdown, third-party registration, refusal."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from aiocoap import Context
from aiocoap.numbers.constants import TransportTuning
from aiocoap.resource import Resource, Site, WKCResource
from aiocoap.resourcedirectory.client.register import Registerer
from aiocoap.resourcedirectory.sqlite import SQLiteStorage
from aiocoap.util.linkformat import parse
from rd_helpers import free_port, running_rd

pytestmark = pytest.mark.core

QUICK = TransportTuning(ACK_TIMEOUT=0.05, MAX_RETRANSMIT=2, EMPTY_ACK_DELAY=0.02)


class QuickRegisterer(Registerer):
    retry_delay = 0.05
    retry_delay_max = 0.2
    request_timeout = 2.0


class Text(Resource):
    rt = "example.text"

    async def render_get(self, request):
        from aiocoap import Message

        return Message(payload=b"hello")


@contextlib.asynccontextmanager
async def endpoint():
    site = Site()
    site.add_resource([".well-known", "core"], WKCResource(site.get_resources_as_linkheader, impl_info=None))
    site.add_resource(["text"], Text())
    site.add_resource(["sensors", "temp"], Text())
    port = free_port()
    context = await Context.create_server_context(site, bind=("127.0.0.1", port), transport_tuning=QUICK)
    try:
        yield context, f"coap://127.0.0.1:{port}"
    finally:
        await context.shutdown()


async def wait_for_state(registerer, state, timeout=5.0):
    async def poll():
        while registerer.state != state:
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        pytest.fail(f"{registerer!r} did not reach {state!r}")


async def wait_until(predicate, timeout=5.0):
    async def poll():
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def expiry(rd, link):
    return rd.directory.index.get(link.href.rsplit("/", 1)[1]).expires


def lookup(rd, kind="res", query=()):
    text = getattr(rd.directory, "lookup_resources" if kind == "res" else "lookup_endpoints")(rd.clock(), list(query))
    return parse(text).links


async def test_register_with_discovery_and_remove_at_shutdown():
    async with running_rd(transport_tuning=QUICK) as (rd, rd_uri), endpoint() as (context, ep_uri):
        registerer = Registerer(context, rd_uri, registration_parameters={"ep": "node1", "et": "tag:example"})
        assert registerer.state == "starting"
        await wait_for_state(registerer, "registered")
        assert "registered" in repr(registerer)
        hrefs = sorted(link.href for link in lookup(rd, query=["ep=node1"]))
        assert hrefs == [ep_uri + "/.well-known/core", ep_uri + "/sensors/temp", ep_uri + "/text"]
        (ep,) = lookup(rd, "ep")
        assert (ep.ep, ep.et, ep.base, ep.lt) == ("node1", "tag:example", ep_uri, "90000")
        await registerer.shutdown()
        assert registerer.state == "cancelled"
        assert lookup(rd, "ep") == []


async def test_register_at_explicit_registration_interface_and_refresh():
    async with running_rd(transport_tuning=QUICK) as (rd, rd_uri), endpoint() as (context, ep_uri):
        registerer = Registerer(context, rd_uri + "/rd", lt=1, registration_parameters={"ep": "n"})
        await wait_for_state(registerer, "registered")
        (first,) = lookup(rd, "ep")
        assert first.lt == "1"
        # refreshed at 3/4 of the lifetime: still there after three lifetimes
        await asyncio.sleep(3)
        assert [link.ep for link in lookup(rd, "ep")] == ["n"]
        assert lookup(rd, "ep")[0].href == first.href
        await registerer.shutdown()


async def test_endpoint_name_from_hostname():
    async with running_rd(transport_tuning=QUICK) as (rd, rd_uri), endpoint() as (context, ep_uri):
        registerer = Registerer(context, rd_uri)
        await wait_for_state(registerer, "registered")
        ep, _, d = socket.getfqdn().partition(".")
        (link,) = lookup(rd, "ep")
        assert link.ep == ep
        assert link.get("d") == (d or None)
        await registerer.shutdown()


async def test_commissioning_tool_registers_another_host():
    async with running_rd(transport_tuning=QUICK) as (rd, rd_uri), endpoint() as (_, ep_uri):
        tool = await Context.create_client_context(transport_tuning=QUICK)
        try:
            registerer = Registerer(tool, rd_uri, link_source=ep_uri, registration_parameters={"ep": "other"})
            await wait_for_state(registerer, "registered")
            (link,) = lookup(rd, "ep")
            assert link.base == ep_uri
            assert sorted(link.href for link in lookup(rd)) == [
                ep_uri + "/.well-known/core",
                ep_uri + "/sensors/temp",
                ep_uri + "/text",
            ]
            await registerer.shutdown()
            assert lookup(rd, "ep") == []
        finally:
            await tool.shutdown()


async def test_refused_registration_fails_for_good(caplog):
    async with running_rd(transport_tuning=QUICK) as (rd, rd_uri), endpoint() as (context, _):
        registerer = Registerer(context, rd_uri, registration_parameters={"ep": "x" * 100})
        await wait_for_state(registerer, "failed")
        assert "ep: longer than 63 bytes" in caplog.text
        await registerer.shutdown()


async def test_rd_that_forgets_and_comes_back():
    """The RD goes away (with everything it knew) and comes back on the same
    port: the registerer retries and registers anew."""
    port = free_port()
    async with endpoint() as (context, ep_uri):
        async with running_rd(port, transport_tuning=QUICK) as (rd, rd_uri):
            registerer = QuickRegisterer(context, rd_uri, lt=1, registration_parameters={"ep": "n"})
            await wait_for_state(registerer, "registered")
        # the RD is gone: the refresh fails, and the registerer keeps trying
        await wait_for_state(registerer, "waiting")
        async with running_rd(port, transport_tuning=QUICK) as (rd, rd_uri):
            await wait_for_state(registerer, "registered")
            assert [link.ep for link in lookup(rd, "ep")] == ["n"]
            await registerer.shutdown()
            assert lookup(rd, "ep") == []


async def test_rd_that_restarts_with_its_database(tmp_path):
    """The RD restarts with its database: the refresh after the restart
    finds the registration and keeps it (no new registration resource)."""
    port = free_port()
    path = str(tmp_path / "rd.sqlite3")
    async with endpoint() as (context, ep_uri):
        async with running_rd(port, SQLiteStorage(path), transport_tuning=QUICK) as (rd, rd_uri):
            registerer = QuickRegisterer(context, rd_uri, lt=2, registration_parameters={"ep": "n"})
            await wait_for_state(registerer, "registered")
            (before,) = lookup(rd, "ep")
        async with running_rd(port, SQLiteStorage(path), transport_tuning=QUICK) as (rd, rd_uri):
            (after,) = lookup(rd, "ep")
            assert after.href == before.href
            # the refresh (due 1.5 s after registering) reaches the new RD
            registered_until = expiry(rd, after)
            await wait_until(lambda: expiry(rd, after) > registered_until, timeout=3)
            assert [link.href for link in lookup(rd, "ep")] == [before.href]
            await registerer.shutdown()


async def test_rd_lost_registration_gets_404_then_reregistration():
    async with running_rd(transport_tuning=QUICK) as (rd, rd_uri), endpoint() as (context, _):
        registerer = QuickRegisterer(context, rd_uri, lt=1, registration_parameters={"ep": "n"})
        await wait_for_state(registerer, "registered")
        (link,) = lookup(rd, "ep")
        rd.directory.remove(rd.clock(), link.href.rsplit("/", 1)[1])
        assert lookup(rd, "ep") == []
        await wait_until(lambda: lookup(rd, "ep"), timeout=3)
        assert [link.ep for link in lookup(rd, "ep")] == ["n"]
        await registerer.shutdown()


async def test_shutdown_while_rd_is_unreachable():
    async with endpoint() as (context, _):
        registerer = QuickRegisterer(context, f"coap://127.0.0.1:{free_port()}", registration_parameters={"ep": "n"})
        await wait_for_state(registerer, "waiting")
        await registerer.shutdown()
        assert registerer.state == "cancelled"


async def test_simple_registration_over_the_network():
    """RFC 9176 §5.1 end to end: the endpoint POSTs to /.well-known/rd
    from its server context, the RD fetches the endpoint's
    /.well-known/core from the address the POST came from."""
    from aiocoap import Message
    from aiocoap.numbers.codes import Code

    async with running_rd(transport_tuning=QUICK) as (rd, rd_uri), endpoint() as (context, ep_uri):
        request = Message(code=Code.POST, uri=rd_uri + "/.well-known/rd?ep=simple&lt=600")
        response = await context.request(request).response
        assert response.code == Code.CHANGED, response.payload
        (link,) = lookup(rd, "ep")
        assert (link.ep, link.lt, link.base) == ("simple", "600", ep_uri)
        assert sorted(link.href for link in lookup(rd)) == [
            ep_uri + "/.well-known/core",
            ep_uri + "/sensors/temp",
            ep_uri + "/text",
        ]


def test_signature_is_that_of_aiocoap_0_4_17():
    """aiocoap-fileserver --register and applications written for aiocoap
    0.4.17 construct the Registerer with these parameters."""
    import inspect

    parameters = inspect.signature(Registerer).parameters.values()
    assert [(p.name, p.default, p.kind) for p in parameters] == [
        ("context", inspect.Parameter.empty, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("rd", None, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("lt", 90000, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("name_from_hostname", None, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("link_source", None, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("registration_parameters", {}, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("loggername", "coap-rd-registerer", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    ]
    assert inspect.iscoroutinefunction(Registerer.shutdown)
