"""aiocoap 0.4.x compatibility: what a context logs (the levels and texts
aiocoap users filter and look for), limited so that a peer can not flood
the log, and what remains of a context after shutdown (nothing: the log
records of the shutdown keep no objects alive)."""

import asyncio
import gc
import logging
import socket
import weakref

import pytest

import aiocoap
import aiocoap.resource as resource
from aiocoap import GET, Context, Message

from ports import free_udp_port

pytestmark = pytest.mark.core


class Hello(resource.ObservableResource):
    async def render_get(self, request):
        return Message(payload=b"hello")


class Slow(resource.Resource):
    async def render_get(self, request):
        await asyncio.sleep(60)


async def server_at(port):
    site = resource.Site()
    site.add_resource(["hello"], Hello())
    site.add_resource(["slow"], Slow())
    return await Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])


async def test_incoming_messages_unparsable_and_unmatched(caplog):
    port = free_udp_port()
    server = await server_at(port)
    client = await Context.create_client_context(transports=["udp6"])
    try:
        with caplog.at_level(logging.DEBUG):
            await client.request(Message(code=GET, uri=f"coap://127.0.0.1:{port}/hello")).response
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                for _ in range(5):
                    peer.sendto(b"\x4f\x01\x00\x01garbage", ("127.0.0.1", port))  # (token length 15)
                peer.sendto(bytes((0x60, 0, 0x77, 0x77)), ("127.0.0.1", port))  # an ACK nobody waits for
                await asyncio.sleep(0.1)
    finally:
        await client.shutdown()
        await server.shutdown()
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert any(level == logging.DEBUG and text.startswith("Incoming message <aiocoap.Message") for _, level, text in messages)
    unparsable = [(level, text) for _, level, text in messages if text.startswith("Ignoring unparsable message from")]
    # one warning, the rest at debug level only (a minute must pass for the next)
    assert [level for level, _ in unparsable] == [logging.WARNING] + [logging.DEBUG] * 4
    unmatched = [level for _, level, text in messages if "could not match it to a running exchange" in text]
    assert unmatched == [logging.INFO]


async def test_context_is_garbage_after_shutdown():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger("coap"), logging.getLogger("coap-server")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        # (only this test's handler sees them: pytest's would keep records
        # of the time before the shutdown, which may show live objects)
        logger.propagate = False
    try:
        port = free_udp_port()
        server = await server_at(port)
        client = await Context.create_client_context(transports=["udp6"])
        observation = client.request(Message(code=GET, uri=f"coap://127.0.0.1:{port}/hello", observe=0))
        await observation.response
        plain = client.request(Message(code=GET, uri=f"coap://127.0.0.1:{port}/hello"))
        await plain.response
        # (a request the server is still working on at shutdown)
        pending = client.request(Message(code=GET, uri=f"coap://127.0.0.1:{port}/slow"))
        await asyncio.sleep(0.05)
        refs = [weakref.ref(o) for o in (client, server, observation, plain, pending)]
        for context in (client, server):
            for ri in context.request_interfaces:
                refs.append(weakref.ref(ri))
                for ti in getattr(ri, "token_interfaces", ()):
                    refs.append(weakref.ref(ti))
                    if getattr(ti, "message_interface", None) is not None:
                        refs.append(weakref.ref(ti.message_interface))
        records.clear()  # (what was logged before the shutdown may refer to live objects)
        await client.shutdown()
        await server.shutdown()
        shutdown_records = list(records)
        del client, server, observation, plain, pending, context, ri
        ti = None  # noqa: F841 (drop the loop variable's reference)
        await asyncio.sleep(0)
        for _ in range(3):
            gc.collect()
        assert shutdown_records, "the shutdown logs something at debug level"
        for record in shutdown_records:
            for arg in record.args or ():
                assert isinstance(arg, (str, int, float, type(None))), (record.msg, type(arg))
            assert record.exc_info is None
        assert [r for r in refs if r() is not None] == []
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = True
