"""What an attacker would try on a proxy listener: floods from many
sources and from one, slow upstreams, oversized input, and Proxy-Uri
tricks. Every test checks that the proxy keeps its caps, frees its slots
and still serves a well-behaved client afterwards."""

import asyncio
import socket
import struct

import pytest

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.proxy.server import ForwardProxy, ForwardProxyWithPooledObservations
from proxy_harness import client, proxy_server, upstream

pytestmark = pytest.mark.core


class RawPeer(asyncio.DatagramProtocol):
    """One UDP socket of an attacker, collecting what comes back."""

    def __init__(self):
        self.received = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        try:
            message = Message.decode(data)
        except Exception:
            return
        self.received.append(message)
        if message.mtype == Type.CON:
            ack = Message(mtype=Type.ACK, mid=message.mid, code=Code.EMPTY)
            self.transport.sendto(ack.encode())

    def final_codes(self):
        return [m.code for m in self.received if m.code != Code.EMPTY]


async def raw_peers(count, port):
    loop = asyncio.get_running_loop()
    peers = []
    for _ in range(count):
        _, peer = await loop.create_datagram_endpoint(RawPeer, remote_addr=("127.0.0.1", port))
        peers.append(peer)
    return peers


def raw_request(mid, proxy_uri, mtype=Type.CON):
    message = Message(mtype=mtype, mid=mid, code=Code.GET, token=struct.pack("!H", mid))
    message.opt.proxy_uri = proxy_uri
    return message.encode()


async def wait_until(condition, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def still_serves(pp, up):
    async with client() as c:
        message = Message(code=Code.GET, uri=f"coap://127.0.0.1:{pp}")
        message.opt.proxy_uri = f"coap://127.0.0.1:{up}/counter"
        response = await asyncio.wait_for(c.request(message).response, 5)
        assert response.code == Code.CONTENT


async def test_flood_from_many_sources_hits_the_global_cap():
    def configure(proxy):
        proxy.max_upstream_total = 20
        proxy.upstream_timeout = 0.5

    async with upstream() as (origin, up), proxy_server(ForwardProxy, configure=configure) as (proxy, pp):
        peers = await raw_peers(150, pp)
        try:
            for i, peer in enumerate(peers):
                peer.transport.sendto(raw_request(i, f"coap://127.0.0.1:{up}/slow"))
            await wait_until(lambda: all(p.final_codes() for p in peers))
            codes = [p.final_codes()[0] for p in peers]
            assert codes.count(Code.SERVICE_UNAVAILABLE) == 130
            assert codes.count(Code.GATEWAY_TIMEOUT) == 20
            assert origin.slow.started == 20
            unavailable = next(m for p in peers for m in p.received if m.code == Code.SERVICE_UNAVAILABLE)
            assert unavailable.opt.max_age is not None
            await wait_until(lambda: proxy.statistics["upstream_in_flight"] == 0)
            assert proxy.statistics["rejected_total"] == 130
        finally:
            for peer in peers:
                peer.transport.close()
        await still_serves(pp, up)


async def test_flood_from_one_source_hits_the_per_client_cap():
    def configure(proxy):
        proxy.max_upstream_per_client = 5
        proxy.upstream_timeout = 0.5

    async with upstream() as (origin, up), proxy_server(ForwardProxy, configure=configure) as (proxy, pp):
        (peer,) = await raw_peers(1, pp)
        try:
            for i in range(40):
                # Distinct queries: nothing in the cache helps.
                peer.transport.sendto(raw_request(i, f"coap://127.0.0.1:{up}/slow?{i}"))
            await wait_until(lambda: len(peer.final_codes()) == 40)
            codes = peer.final_codes()
            assert codes.count(Code.TOO_MANY_REQUESTS) == 35
            assert codes.count(Code.GATEWAY_TIMEOUT) == 5
            # Another client was never limited by this one.
            await still_serves(pp, up)
        finally:
            peer.transport.close()
        await wait_until(lambda: proxy.statistics["upstream_in_flight"] == 0)
        assert not proxy._upstream_by_client


async def test_slow_upstream_observations_do_not_accumulate():
    def configure(proxy):
        proxy.upstream_timeout = 0.3

    async with upstream() as (origin, up), proxy_server(ForwardProxyWithPooledObservations, configure=configure) as (proxy, pp), client() as c:
        requests = []
        for i in range(10):
            message = Message(code=Code.GET, uri=f"coap://127.0.0.1:{pp}", observe=0)
            message.opt.proxy_uri = f"coap://127.0.0.1:{up}/slow?{i}"
            requests.append(c.request(message))
        responses = await asyncio.wait_for(asyncio.gather(*(r.response for r in requests)), 10)
        assert {r.code for r in responses} == {Code.GATEWAY_TIMEOUT}
        assert not proxy._pool


@pytest.mark.parametrize(
    "proxy_uri, code",
    [
        ("http://127.0.0.1/x", Code.PROXYING_NOT_SUPPORTED),
        ("file:///etc/passwd", Code.PROXYING_NOT_SUPPORTED),
        ("javascript:alert(1)", Code.PROXYING_NOT_SUPPORTED),
        ("coap://user:pass@127.0.0.1/x", Code.BAD_REQUEST),
        ("coap://127.0.0.1/x#fragment", Code.BAD_REQUEST),
        ("/relative/only", Code.BAD_REQUEST),
        ("coap:///no-host", Code.BAD_REQUEST),
        ("coap://[::1/x", Code.BAD_REQUEST),
        ("coap://127.0.0.1:99999/x", Code.BAD_REQUEST),
        ("coap://%ff%fe/x", Code.BAD_REQUEST),
        ("coap://127.0.0.1/%ff", Code.BAD_REQUEST),
    ],
)
async def test_proxy_uri_tricks(proxy_uri, code):
    async with proxy_server(ForwardProxy) as (proxy, pp), client() as c:
        message = Message(code=Code.GET, uri=f"coap://127.0.0.1:{pp}")
        message.opt.proxy_uri = proxy_uri
        response = await asyncio.wait_for(c.request(message).response, 5)
        assert response.code == code
        assert proxy.statistics["forwarded"] == 0


async def test_proxy_uri_to_itself_is_no_loop():
    async with proxy_server(ForwardProxy) as (proxy, pp), client() as c:
        message = Message(code=Code.GET, uri=f"coap://127.0.0.1:{pp}")
        message.opt.proxy_uri = f"coap://127.0.0.1:{pp}/"
        response = await asyncio.wait_for(c.request(message).response, 5)
        # The proxy asks itself once; that plain request matches no rule.
        assert response.code == Code.BAD_REQUEST
        assert proxy.statistics["forwarded"] == 1


async def test_oversized_options_and_unknown_unsafe_options():
    async with upstream() as (origin, up), proxy_server(ForwardProxy) as (proxy, pp):
        (peer,) = await raw_peers(1, pp)
        try:
            # A Proxy-Uri beyond the option's 1034 bytes.
            peer.transport.sendto(raw_request(1, f"coap://127.0.0.1:{up}/" + "a" * 3000))
            # An unsafe elective option the proxy does not know (number 2014).
            unknown = Message(mtype=Type.CON, mid=2, code=Code.GET, token=b"\x00\x02")
            unknown.opt.proxy_uri = f"coap://127.0.0.1:{up}/counter"
            from aiocoap.optiontypes import OpaqueOption

            unknown.opt.add_option(OpaqueOption(2014, b"x"))
            peer.transport.sendto(unknown.encode())
            # A datagram that is no CoAP at all.
            peer.transport.sendto(b"\xff" * 1500)
            await wait_until(lambda: len(peer.final_codes()) >= 2)
            await asyncio.sleep(0.1)
            codes = sorted(peer.final_codes())
            assert codes == [Code.BAD_OPTION, Code.BAD_OPTION]
            assert origin.counter.gets == 0
        finally:
            peer.transport.close()
        await still_serves(pp, up)


async def test_oversized_upload_is_refused():
    async with upstream() as (origin, up), proxy_server(ForwardProxy) as (proxy, pp), client() as c:
        message = Message(code=Code.PUT, uri=f"coap://127.0.0.1:{pp}", payload=bytes(2 * 1024 * 1024))
        message.opt.proxy_uri = f"coap://127.0.0.1:{up}/big"
        response = await asyncio.wait_for(c.request(message).response, 20)
        assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert origin.big.uploaded == b""


async def test_upstream_errors_stay_with_their_client():
    from proxy_harness import free_port

    dead = free_port()
    async with upstream() as (origin, up), proxy_server(ForwardProxy, cache=False) as (proxy, pp), client() as a, client() as b:
        bad = Message(code=Code.GET, uri=f"coap://127.0.0.1:{pp}")
        bad.opt.proxy_uri = f"coap+tcp://127.0.0.1:{dead}/x"
        good = [Message(code=Code.GET, uri=f"coap://127.0.0.1:{pp}") for _ in range(5)]
        for m in good:
            m.opt.proxy_uri = f"coap://127.0.0.1:{up}/counter"
        results = await asyncio.wait_for(
            asyncio.gather(a.request(bad).response, *(b.request(m).response for m in good)), 10
        )
        assert results[0].code == Code.BAD_GATEWAY
        assert [r.code for r in results[1:]] == [Code.CONTENT] * 5
        assert proxy.statistics["bad_gateway"] == 1
