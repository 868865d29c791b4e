"""Proxying together with libcoap: libcoap's coap-client (``-P``) through
our forward proxy to libcoap's coap-server, and our ProxyForwarder through
libcoap's own proxy (``coap-server -P``) to our server."""

from __future__ import annotations

import asyncio

import pytest

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.proxy.client import ProxyForwarder
from aiocoap.proxy.server import ForwardProxyWithPooledObservations
from proxy_harness import BIG, client, proxy_server, upstream

from .conftest import start_libcoap_server, stop_process

pytestmark = pytest.mark.interop


async def test_libcoap_client_through_our_proxy(libcoap_server, coap_client):
    async with proxy_server(ForwardProxyWithPooledObservations) as (proxy, pp):
        via = ("-P", f"coap://127.0.0.1:{pp}")
        run = await coap_client(libcoap_server.uri("/"), *via)
        assert b"libcoap" in run.payload, run.describe()
        put = await coap_client(libcoap_server.uri("/proxied"), "-m", "put", "-e", "through the proxy", *via)
        assert put.code in ("2.01", "2.04"), put.describe()
        get = await coap_client(libcoap_server.uri("/proxied"), *via)
        assert get.payload == b"through the proxy", get.describe()
        assert proxy.statistics["forwarded"] >= 3


async def test_libcoap_client_observes_through_our_proxy(libcoap_server, coap_client):
    async with proxy_server(ForwardProxyWithPooledObservations) as (proxy, pp):
        run = await coap_client(libcoap_server.uri("/time"), "-s", "3", "-P", f"coap://127.0.0.1:{pp}", wait=4)
        notifications = [m for m in run.responses if m.code == "2.05" and m.option_values("Observe")]
        assert len(notifications) >= 2, run.describe()
        # The upstream observation ends once the client is gone.
        for _ in range(100):
            if not proxy._pool:
                break
            await asyncio.sleep(0.05)
        assert not proxy._pool


async def test_our_forwarder_through_libcoap_proxy(coap_server_bin, tmp_path):
    libcoap_proxy = start_libcoap_server(coap_server_bin, tmp_path, extra=("-P", ",libcoap-proxy"))
    try:
        async with upstream() as (origin, up), client() as c:
            forwarder = ProxyForwarder(f"coap://127.0.0.1:{libcoap_proxy.port}", c)
            response = await asyncio.wait_for(
                forwarder.request(Message(code=Code.GET, uri=f"coap://127.0.0.1:{up}/counter")).response, 10
            )
            assert response.payload == b"n=1", libcoap_proxy.log()
            response = await asyncio.wait_for(
                forwarder.request(Message(code=Code.GET, uri=f"coap://127.0.0.1:{up}/big")).response, 20
            )
            assert response.payload == BIG
            assert origin.counter.gets == 1
    finally:
        stop_process(libcoap_proxy.process)
