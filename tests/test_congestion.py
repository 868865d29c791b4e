"""Congestion control (RFC 7252 §4.7): the CoCoA RTO estimator of
aiocoap/congestion.py, and NSTART as Contexts see it over the in-memory
network of tests/memorynet.py (the message layer's own timing is tested on
the virtual clock of tests/test_messagemanager.py)."""

import asyncio

import pytest
from hypothesis import given, strategies as st

from aiocoap import error, resource
from aiocoap.congestion import RtoEstimator
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import Type

from memorynet import MemoryNet

QUICK = TransportTuning(ACK_TIMEOUT=0.05, MAX_RETRANSMIT=3, EMPTY_ACK_DELAY=0.02)


class Hello(resource.Resource):
    def __init__(self):
        super().__init__()
        self.count = 0

    async def render_get(self, request):
        self.count += 1
        return Message(payload=b"hello")


def in_flight_on_the_wire(log, sender, receiver):
    """The most CON messages from ``sender`` to ``receiver`` in the
    memory net's log that were sent and not yet answered by an ACK or RST
    at the same time."""
    outstanding: set = set()
    most = 0
    for source, destination, data in log:
        message = Message.decode(data)
        if (source, destination) == (sender, receiver) and message.mtype is Type.CON:
            outstanding.add(message.mid)
            most = max(most, len(outstanding))
        elif (source, destination) == (receiver, sender) and message.mtype in (Type.ACK, Type.RST):
            outstanding.discard(message.mid)
    return most


async def pair(site, **tunings):
    net = MemoryNet(asyncio.get_running_loop())
    server = await net.context("server", site, transport_tuning=tunings.get("server", QUICK))
    client = await net.context("client", transport_tuning=tunings.get("client", QUICK))
    return net, server, client


async def test_thousand_concurrent_requests_one_con_outstanding():
    site = resource.Site()
    hello = Hello()
    site.add_resource(["hello"], hello)
    net, server, client = await pair(site)
    try:
        requests = [client.request(Message(code=Code.GET, uri="coap://server/hello")) for _ in range(1000)]
        responses = await asyncio.gather(*(r.response for r in requests))
        assert [r.payload for r in responses] == [b"hello"] * 1000
        assert hello.count == 1000
        assert in_flight_on_the_wire(net.log, "client", "server") == 1
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_nstart_raised_through_the_context_tuning():
    site = resource.Site()
    site.add_resource(["hello"], Hello())
    tuning = TransportTuning(ACK_TIMEOUT=0.05, MAX_RETRANSMIT=3, EMPTY_ACK_DELAY=0.02, NSTART=4)
    net, server, client = await pair(site, client=tuning)
    try:
        requests = [client.request(Message(code=Code.GET, uri="coap://server/hello")) for _ in range(100)]
        await asyncio.gather(*(r.response for r in requests))
        assert in_flight_on_the_wire(net.log, "client", "server") == 4
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_queue_drains_with_loss():
    site = resource.Site()
    site.add_resource(["hello"], Hello())
    net, server, client = await pair(site)
    net.loss = 0.15
    try:
        requests = [client.request(Message(code=Code.GET, uri="coap://server/hello")) for _ in range(100)]
        results = await asyncio.gather(*(r.response for r in requests), return_exceptions=True)
        answered = [r for r in results if isinstance(r, Message)]
        failed = [r for r in results if not isinstance(r, Message)]
        assert all(isinstance(f, error.ConRetransmitsExceeded) for f in failed)
        assert len(answered) > 90
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_cancelled_before_sending_is_not_sent():
    site = resource.Site()
    hello = Hello()
    site.add_resource(["hello"], hello)
    net, server, client = await pair(site)
    try:
        first = client.request(Message(code=Code.GET, uri="coap://server/hello"))
        second = client.request(Message(code=Code.GET, uri="coap://server/hello?second"))
        await asyncio.sleep(0)  # (routed, and waiting for its turn)
        second.response.cancel()
        await first.response
        await asyncio.sleep(0.05)
        assert hello.count == 1
        sent = [Message.decode(d) for s, _, d in net.log if s == "client"]
        assert not any(m.opt.uri_query == ("second",) for m in sent)
    finally:
        await client.shutdown()
        await server.shutdown()


# --- the RTO estimator ---------------------------------------------------------------


def test_strong_and_weak_samples():
    est = RtoEstimator(initial=2.0)
    est.sample(1.0, transmissions=2, now=0.0)  # weak: 1 + 1 * 0.5, a quarter of it
    assert est.rto(0.0) == pytest.approx(0.25 * 1.5 + 0.75 * 2.0)
    before = est.rto(0.0)
    est.sample(5.0, transmissions=4, now=0.0)  # too many retransmissions: ignored
    assert est.rto(0.0) == before


def test_backoff_factor_depends_on_the_rto():
    assert [RtoEstimator.backoff_factor(r) for r in (0.5, 1.0, 2.0, 3.0, 3.5)] == [3.0, 2.0, 2.0, 2.0, 1.5]


def test_ageing_moves_towards_the_initial_value():
    est = RtoEstimator(initial=2.0)
    for i in range(20):
        est.sample(0.01, transmissions=1, now=i * 0.01)
    small = est.rto(0.2)
    assert small < 0.5
    assert est.rto(0.2 + 16 * small + 1) == pytest.approx(min(2 * small, 2.0))
    large = RtoEstimator(initial=2.0)
    for i in range(30):
        large.sample(10.0, transmissions=1, now=i)
    value = large.rto(30)
    assert value > 3.0
    assert large.rto(30 + 4 * value + 1) == pytest.approx((2.0 + value) / 2)


@given(st.lists(st.tuples(st.floats(0, 1000), st.integers(1, 6)), max_size=50))
def test_rto_stays_within_its_bounds(samples):
    est = RtoEstimator(initial=2.0)
    now = 0.0
    for rtt, transmissions in samples:
        now += 1
        est.sample(rtt, transmissions, now)
        assert RtoEstimator.MIN_RTO <= est.rto(now) <= RtoEstimator.MAX_RTO


async def test_cancelled_while_routing_is_not_sent():
    site = resource.Site()
    hello = Hello()
    site.add_resource(["hello"], hello)
    net, server, client = await pair(site)
    try:
        # (a host name: routing takes a task, and the request is cancelled
        # before that ran)
        request = client.request(Message(code=Code.GET, uri="coap://server/hello"))
        request.response.cancel()
        await asyncio.sleep(0.05)
        assert hello.count == 0
        assert [s for s, _, _ in net.log] == []
    finally:
        await client.shutdown()
        await server.shutdown()
