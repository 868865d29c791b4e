"""The proxy resources of aiocoap.proxy.server over real loopback sockets:
forward (Proxy-Uri, Proxy-Scheme) and reverse proxying, transport bridging,
Hop-Limit, the cache, pooled observations and upstream failures."""

import asyncio

import pytest

from aiocoap import error
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.proxy.client import ProxyForwarder
from aiocoap.proxy.server import (
    ForwardProxy,
    ForwardProxyWithPooledObservations,
    NameBasedVirtualHost,
    Proxy,
    ProxyWithPooledObservations,
    SubdomainVirtualHost,
    SubresourceVirtualHost,
    UnconditionalRedirector,
)
from proxy_harness import BIG, client, proxy_server, upstream

pytestmark = pytest.mark.core


def via_uri(proxy_port, target, **kwargs):
    """A request for ``target`` sent to the proxy with Proxy-Uri."""
    message = Message(code=kwargs.pop("code", Code.GET), uri=f"coap://127.0.0.1:{proxy_port}", **kwargs)
    message.opt.proxy_uri = target
    return message


def via_scheme(proxy_port, scheme, upstream_port, path, **kwargs):
    """A request for ``scheme://127.0.0.1:upstream_port/path`` sent to the
    proxy with Proxy-Scheme and Uri-Host/Uri-Port."""
    message = Message(code=kwargs.pop("code", Code.GET), uri=f"coap://127.0.0.1:{proxy_port}/{path}", **kwargs)
    message.opt.proxy_scheme = scheme
    message.opt.uri_host = "127.0.0.1"
    message.opt.uri_port = upstream_port
    return message


async def test_forward_get_put_via_proxy_uri():
    async with upstream() as (origin, up), proxy_server(ForwardProxy) as (proxy, pp), client() as c:
        response = await c.request(via_uri(pp, f"coap://127.0.0.1:{up}/counter")).response
        assert response.code == Code.CONTENT
        assert response.payload == b"n=1"
        response = await c.request(
            via_uri(pp, f"coap://127.0.0.1:{up}/store", code=Code.PUT, payload=b"new")
        ).response
        assert response.code == Code.CHANGED
        assert origin.store.value == b"new"
        response = await c.request(via_uri(pp, f"coap://127.0.0.1:{up}/nonexistent")).response
        assert response.code == Code.NOT_FOUND


async def test_forward_get_via_proxy_scheme():
    async with upstream() as (origin, up), proxy_server(ForwardProxy) as (proxy, pp), client() as c:
        response = await c.request(via_scheme(pp, "coap", up, "counter")).response
        assert response.code == Code.CONTENT
        assert response.payload == b"n=1"
        # The IP literal went into the remote, not into an upstream Uri-Host.
        assert origin.counter.last_request.opt.uri_host is None


@pytest.mark.parametrize("scheme", ["coap", "coap+tcp"])
async def test_blockwise_both_directions(scheme):
    async with upstream() as (origin, up), proxy_server(ForwardProxy) as (proxy, pp), client() as c:
        response = await c.request(via_uri(pp, f"{scheme}://127.0.0.1:{up}/big")).response
        assert response.payload == BIG
        upload = BIG[::-1]
        response = await c.request(
            via_uri(pp, f"{scheme}://127.0.0.1:{up}/big", code=Code.PUT, payload=upload)
        ).response
        assert response.code == Code.CHANGED
        assert origin.big.uploaded == upload


async def test_udp_client_to_tcp_server_and_back():
    async with upstream(["tcpserver"]) as (origin, up), proxy_server(ForwardProxy) as (proxy, pp):
        async with client(transports=["udp6"]) as c:
            response = await c.request(via_uri(pp, f"coap+tcp://127.0.0.1:{up}/big")).response
            assert response.payload == BIG
        async with upstream(["udp6"]) as (origin2, up2), client(transports=["tcpclient"]) as c:
            message = Message(code=Code.GET, uri=f"coap+tcp://127.0.0.1:{pp}")
            message.opt.proxy_uri = f"coap://127.0.0.1:{up2}/big"
            response = await c.request(message).response
            assert response.payload == BIG


async def test_proxy_forwarder_get_observe_blockwise():
    async with upstream() as (origin, up), proxy_server(ForwardProxyWithPooledObservations) as (proxy, pp), client() as c:
        forwarder = ProxyForwarder(f"coap://127.0.0.1:{pp}", c)
        response = await forwarder.request(Message(code=Code.GET, uri=f"coap://127.0.0.1:{up}/big")).response
        assert response.payload == BIG
        request = forwarder.request(Message(code=Code.GET, uri=f"coap+tcp://127.0.0.1:{up}/obs", observe=0))
        response = await request.response
        assert response.payload == b"value 0"
        notifications = request.observation.__aiter__()
        origin.observed.change()
        notification = await asyncio.wait_for(notifications.__anext__(), 5)
        assert notification.payload == b"value 1"
        request.observation.cancel()


async def test_reverse_proxy_rules_and_location_rewriting():
    async with upstream() as (origin, up):
        def configure(proxy):
            proxy.add_redirector(NameBasedVirtualHost("named.example", f"127.0.0.1:{up}"))
            proxy.add_redirector(SubdomainVirtualHost("sub.example", f"coap+tcp://127.0.0.1:{up}"))
            proxy.add_redirector(SubresourceVirtualHost(["app"], f"127.0.0.1:{up}"))

        async with proxy_server(Proxy, configure=configure) as (proxy, pp), client() as c:
            base = f"coap://127.0.0.1:{pp}"
            response = await c.request(Message(code=Code.GET, uri=base + "/echo", uri_host="named.example")).response
            # Uri-Host stays the virtual host name; the Hop-Limit was added.
            assert response.payload == repr(("named.example", 16)).encode()
            response = await c.request(Message(code=Code.GET, uri=base + "/echo", uri_host="a.sub.example")).response
            assert response.payload == repr(("a.sub.example", 16)).encode()
            response = await c.request(Message(code=Code.GET, uri=base + "/app/echo")).response
            assert response.payload == repr((None, 16)).encode()
            response = await c.request(Message(code=Code.GET, uri=base + "/app/counter")).response
            assert response.payload == b"n=1"
            response = await c.request(Message(code=Code.POST, uri=base + "/app/store", payload=b"x")).response
            assert response.code == Code.CREATED
            assert response.opt.location_path == ("app", "store", "new")
            response = await c.request(Message(code=Code.GET, uri=base + "/other")).response
            assert response.code == Code.BAD_REQUEST
            # A reverse proxy refuses forward proxy requests.
            response = await c.request(via_uri(pp, f"coap://127.0.0.1:{up}/counter")).response
            assert response.code == Code.PROXYING_NOT_SUPPORTED


async def test_unconditional_and_rewritten_host():
    async with upstream() as (origin, up):
        def configure(proxy):
            proxy.add_redirector(NameBasedVirtualHost("rewrite.example", f"localhost:{up}", rewrite_uri_host=True))
            proxy.add_redirector(UnconditionalRedirector(f"127.0.0.1:{up}"))

        async with proxy_server(Proxy, configure=configure) as (proxy, pp), client() as c:
            base = f"coap://127.0.0.1:{pp}"
            response = await c.request(Message(code=Code.GET, uri=base + "/echo", uri_host="rewrite.example")).response
            assert response.payload == repr(("localhost", 16)).encode()
            response = await c.request(Message(code=Code.GET, uri=base + "/counter")).response
            assert response.payload == b"n=1"


async def test_hop_limit_loop_through_itself_as_next_proxy():
    """A forward proxy whose next proxy is itself: every pass adds another
    proxy hop, until the Hop-Limit ends it."""
    async with upstream() as (origin, up), proxy_server(ForwardProxy, cache=False) as (proxy, pp), client() as c:
        proxy.outgoing_context = ProxyForwarder(f"coap://127.0.0.1:{pp}", proxy.outgoing_context)
        response = await asyncio.wait_for(c.request(via_uri(pp, f"coap://127.0.0.1:{up}/counter")).response, 10)
        assert response.code == Code.HOP_LIMIT_REACHED
        assert origin.counter.gets == 0
        stats = proxy.statistics
        assert stats["hop_limit_reached"] == 1
        # 16 (added) down to 1 (refused): 16 forwarding passes.
        assert stats["forwarded"] == 16
        assert stats["upstream_in_flight"] == 0


async def test_hop_limit_loop_of_reverse_rule_to_itself():
    async with proxy_server(Proxy, cache=False) as (proxy, pp), client() as c:
        proxy.add_redirector(UnconditionalRedirector(f"127.0.0.1:{pp}"))
        response = await asyncio.wait_for(c.request(Message(code=Code.GET, uri=f"coap://127.0.0.1:{pp}/x")).response, 10)
        assert response.code == Code.HOP_LIMIT_REACHED
        assert proxy.statistics["forwarded"] == 16
        await asyncio.sleep(0.05)
        assert proxy.statistics["upstream_in_flight"] == 0


async def test_hop_limit_decremented_and_exhausted():
    async with upstream() as (origin, up), proxy_server(ForwardProxy, cache=False) as (proxy, pp), client() as c:
        response = await c.request(via_uri(pp, f"coap://127.0.0.1:{up}/echo", hop_limit=5)).response
        assert response.payload == repr((None, 4)).encode()
        response = await c.request(via_uri(pp, f"coap://127.0.0.1:{up}/echo", hop_limit=1)).response
        assert response.code == Code.HOP_LIMIT_REACHED


async def test_cache_hit_counts_on_upstream():
    async with upstream() as (origin, up), proxy_server(ForwardProxy) as (proxy, pp), client() as c:
        target = f"coap://127.0.0.1:{up}/counter"
        for _ in range(10):
            response = await c.request(via_uri(pp, target)).response
            assert response.payload == b"n=1"
            assert 0 < response.opt.max_age <= 60
        # The same resource through Proxy-Scheme has the same cache key.
        response = await c.request(via_scheme(pp, "coap", up, "counter")).response
        assert response.payload == b"n=1"
        assert origin.counter.gets == 1
        # Max-Age 0 is never stored.
        for _ in range(3):
            await c.request(via_uri(pp, f"coap://127.0.0.1:{up}/uncached")).response
        assert origin.uncached.gets == 3
        stats = proxy.statistics
        assert stats["cache"]["hits"] == 10
        assert stats["cache_served"] == 10


async def test_cache_off_forwards_everything():
    async with upstream() as (origin, up), proxy_server(ForwardProxy, cache=False) as (proxy, pp), client() as c:
        for _ in range(3):
            await c.request(via_uri(pp, f"coap://127.0.0.1:{up}/counter")).response
        assert origin.counter.gets == 3
        assert "cache" not in proxy.statistics


async def test_etag_revalidation():
    async with upstream() as (origin, up), proxy_server(ForwardProxy) as (proxy, pp), client() as c:
        target = f"coap://127.0.0.1:{up}/tagged"
        origin.tagged.max_age = 1
        response = await c.request(via_uri(pp, target)).response
        assert response.payload == b"version 1"
        assert origin.tagged.full == 1
        proxy.cache._entries[next(iter(proxy.cache._entries))].expires = 0  # make it stale
        response = await c.request(via_uri(pp, target)).response
        assert response.code == Code.CONTENT
        assert response.payload == b"version 1"
        assert (origin.tagged.full, origin.tagged.valid) == (1, 1)
        assert proxy.statistics["cache"]["revalidations"] == 1
        # A client that has the representation gets 2.03 from the cache.
        response = await c.request(via_uri(pp, target, etag=b"v1")).response
        assert response.code == Code.VALID
        assert response.payload == b""
        assert (origin.tagged.full, origin.tagged.valid) == (1, 1)


@pytest.mark.slow
async def test_cache_stays_bounded_under_10000_distinct_resources():
    from aiocoap.proxy.cache import ResponseCache

    cache = ResponseCache(max_entries=500, max_bytes=200_000)
    async with upstream() as (origin, up), proxy_server(ForwardProxy, cache=cache) as (proxy, pp), client() as c:
        async def fetch(i):
            response = await c.request(via_uri(pp, f"coap://127.0.0.1:{up}/many/r{i}")).response
            assert response.payload == b"r%d" % i * 4

        window = 32  # (the per-client cap)
        for start in range(0, 10_000, window):
            await asyncio.gather(*(fetch(i) for i in range(start, min(start + window, 10_000))))
            assert len(cache) <= 500 and cache.size_bytes <= 200_000
        assert origin.many.gets == 10_000
        stats = proxy.statistics["cache"]
        assert stats["stores"] == 10_000
        assert stats["evictions"] == 10_000 - len(cache)
        # The most recent ones are still there.
        await fetch(9_999)
        assert origin.many.gets == 10_000


@pytest.mark.parametrize("method", [Code.PUT, Code.POST, Code.DELETE])
async def test_invalidation_by_unsafe_methods(method):
    async with upstream() as (origin, up), proxy_server(ForwardProxy) as (proxy, pp), client() as c:
        target = f"coap://127.0.0.1:{up}/store"
        assert (await c.request(via_uri(pp, target)).response).payload == b"initial"
        assert (await c.request(via_uri(pp, target)).response).payload == b"initial"
        assert origin.store.gets == 1
        response = await c.request(via_uri(pp, target, code=method, payload=b"X")).response
        assert response.code.is_successful()
        after = await c.request(via_uri(pp, target)).response
        assert after.payload == origin.store.value
        assert origin.store.gets == 2
        assert proxy.statistics["cache"]["invalidations"] == 1


async def test_pooled_observation_one_upstream_for_100_observers():
    async with upstream() as (origin, up), proxy_server(ForwardProxyWithPooledObservations) as (proxy, pp), client() as c:
        target = f"coap://127.0.0.1:{up}/obs"
        requests = [c.request(via_uri(pp, target, observe=0)) for _ in range(100)]
        responses = await asyncio.gather(*(r.response for r in requests))
        assert all(r.payload == b"value 0" for r in responses)
        assert all(r.opt.observe is not None for r in responses)
        assert origin.observed.observers == 1
        assert origin.observed.registrations == 1
        iterators = [r.observation.__aiter__() for r in requests]
        origin.observed.change()
        notifications = await asyncio.wait_for(asyncio.gather(*(i.__anext__() for i in iterators)), 10)
        assert all(n.payload == b"value 1" for n in notifications)
        # The notification refreshed the cache: a plain GET does not go upstream.
        response = await c.request(via_uri(pp, target)).response
        assert response.payload == b"value 1"
        for r in requests:
            r.observation.cancel()
        for _ in range(100):
            if origin.observed.observers == 0:
                break
            await asyncio.sleep(0.02)
        assert origin.observed.observers == 0
        assert not proxy._pool


async def test_pooled_observation_of_unobservable_resource():
    async with upstream() as (origin, up), proxy_server(ForwardProxyWithPooledObservations) as (proxy, pp), client() as c:
        request = c.request(via_uri(pp, f"coap://127.0.0.1:{up}/counter", observe=0))
        response = await request.response
        assert response.code == Code.CONTENT
        assert response.opt.observe is None
        assert not proxy._pool


async def test_upstream_down():
    from proxy_harness import free_port

    dead = free_port()
    async with proxy_server(ForwardProxyWithPooledObservations) as (proxy, pp), client() as c:
        response = await asyncio.wait_for(c.request(via_uri(pp, f"coap://127.0.0.1:{dead}/x")).response, 5)
        assert response.code in (Code.BAD_GATEWAY, Code.GATEWAY_TIMEOUT)
        response = await asyncio.wait_for(c.request(via_uri(pp, f"coap+tcp://127.0.0.1:{dead}/x")).response, 5)
        assert response.code == Code.BAD_GATEWAY
        request = c.request(via_uri(pp, f"coap+tcp://127.0.0.1:{dead}/x", observe=0))
        response = await asyncio.wait_for(request.response, 5)
        assert response.code == Code.BAD_GATEWAY
        assert not proxy._pool
        response = await asyncio.wait_for(c.request(via_uri(pp, "coap://unresolvable.invalid/x")).response, 10)
        assert response.code == Code.BAD_GATEWAY
        assert proxy.statistics["upstream_in_flight"] == 0


async def test_upstream_timeout_is_5_04():
    async with upstream() as (origin, up):
        def configure(proxy):
            proxy.upstream_timeout = 0.3

        async with proxy_server(ForwardProxy, configure=configure) as (proxy, pp), client() as c:
            response = await asyncio.wait_for(c.request(via_uri(pp, f"coap://127.0.0.1:{up}/slow")).response, 5)
            assert response.code == Code.GATEWAY_TIMEOUT
            response = await asyncio.wait_for(c.request(via_uri(pp, f"coap+tcp://127.0.0.1:{up}/slow")).response, 5)
            assert response.code == Code.GATEWAY_TIMEOUT
            assert proxy.statistics["timeouts"] == 2
            assert proxy.statistics["upstream_in_flight"] == 0


async def test_unsupported_schemes_are_5_05():
    async with proxy_server(ForwardProxy) as (proxy, pp), client() as c:
        for target in ["http://127.0.0.1/x", "coaps+ws://127.0.0.1/x", "coap+ws://127.0.0.1/x"]:
            response = await c.request(via_uri(pp, target)).response
            assert response.code == Code.PROXYING_NOT_SUPPORTED, target
        request = via_scheme(pp, "https", 80, "x")
        response = await c.request(request).response
        assert response.code == Code.PROXYING_NOT_SUPPORTED


async def test_proxy_scheme_with_host_names_and_bracketed_literals():
    async with upstream() as (origin, up), proxy_server(ForwardProxy, cache=False) as (proxy, pp), client() as c:
        request = via_scheme(pp, "coap", up, "echo")
        request.opt.uri_host = "localhost"
        response = await c.request(request).response
        assert response.code == Code.CONTENT
        assert response.payload == repr(("localhost", 16)).encode()
        request = via_scheme(pp, "coap", up, "echo")
        request.opt.uri_host = "[127.0.0.1"
        assert (await c.request(request).response).code == Code.BAD_REQUEST


async def test_upstream_response_with_unknown_unsafe_option_is_5_02():
    from aiocoap import resource
    from aiocoap.optiontypes import OpaqueOption
    from proxy_harness import serving

    class Odd(resource.Resource):
        async def render_get(self, request):
            response = Message(payload=b"odd")
            response.opt.add_option(OpaqueOption(2014, b"x"))
            return response

    site = resource.Site()
    site.add_resource(["odd"], Odd())
    async with serving(site) as (_, up), proxy_server(ForwardProxy) as (proxy, pp), client() as c:
        response = await c.request(via_uri(pp, f"coap://127.0.0.1:{up}/odd")).response
        assert response.code == Code.BAD_GATEWAY
        assert len(proxy.cache) == 0
