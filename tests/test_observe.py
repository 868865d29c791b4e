"""Observe (RFC 7641) end to end over the in-memory network: notification
ordering, active cancellation, re-registration, Reset handling, caps,
shutdown and garbage collection of forgotten observations."""

import asyncio
import gc
import logging
import tracemalloc

import pytest

from aiocoap import error, resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import Type
from aiocoap.tokenmanager import notification_is_fresher

from memorynet import MemoryAddress, MemoryNet

QUICK = TransportTuning(ACK_TIMEOUT=0.05, MAX_RETRANSMIT=2, EMPTY_ACK_DELAY=0.02, REQUEST_TIMEOUT=0.3)


class Counter(resource.ObservableResource):
    def __init__(self, max_age=None):
        super().__init__()
        self.value = 0
        self.counts = []
        self.max_age = max_age

    def update_observation_count(self, count):
        self.counts.append(count)

    async def render_get(self, request):
        m = Message(payload=str(self.value).encode())
        if self.max_age is not None:
            m.opt.max_age = self.max_age
        return m

    async def render_fetch(self, request):
        return Message(payload=b"fetch " + request.payload + b" " + str(self.value).encode())


async def setup(counter=None, **client_kwargs):
    net = MemoryNet(asyncio.get_running_loop())
    site = resource.Site()
    counter = counter or Counter()
    site.add_resource(["counter"], counter)
    server = await net.context("server", site, transport_tuning=QUICK)
    client = await net.context("client", transport_tuning=QUICK, **client_kwargs)
    return net, server, client, counter


async def settle():
    for _ in range(5):
        await asyncio.sleep(0.005)


def observe_msg(**kwargs):
    return Message(code=Code.GET, observe=0, uri="coap://server/counter", **kwargs)


async def test_notifications_and_active_cancellation():
    net, server, client, counter = await setup()
    try:
        request = client.request(observe_msg())
        assert (await request.response).payload == b"0"
        seen = []
        request.observation.register_callback(lambda m: seen.append(m.payload))
        for v in (1, 2):
            counter.value = v
            counter.updated_state()
            await settle()
        assert seen == [b"1", b"2"]
        assert counter.counts[-1] == 1
        request.observation.cancel()
        await settle()
        # the server learned about it at once
        assert counter.counts[-1] == 0
        deregistrations = [
            Message.decode(d) for s, dst, d in net.log if s == "client" and Message.decode(d).opt.observe == 1
        ]
        assert len(deregistrations) == 1
        assert deregistrations[0].token == request.request.token
        counter.value = 3
        counter.updated_state()
        await settle()
        assert seen == [b"1", b"2"]
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_observe_with_fetch():
    net, server, client, counter = await setup()
    try:
        request = client.request(Message(code=Code.FETCH, observe=0, payload=b"q", uri="coap://server/counter"))
        assert (await request.response).payload == b"fetch q 0"
        seen = []
        request.observation.register_callback(lambda m: seen.append(m.payload))
        counter.value = 1
        counter.updated_state()
        await settle()
        assert seen == [b"fetch q 1"]
        request.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_notifications_are_mostly_non_with_periodic_con():
    net, server, client, counter = await setup()
    server.notification_con_interval = 3
    try:
        request = client.request(observe_msg())
        await request.response
        for v in range(1, 8):
            counter.value = v
            counter.updated_state()
            await settle()
        types = [
            Message.decode(d).mtype
            for s, dst, d in net.log
            if s == "server" and Message.decode(d).code == Code.CONTENT
        ]
        # first response piggybacked, then NON NON CON NON NON CON ...,
        # except that the first notification to a client not yet shown to
        # receive is CON (aiocoap.amplification); its ACK shows that
        assert types[0] is Type.ACK
        assert types[1:] == [Type.CON, Type.NON, Type.CON, Type.NON, Type.NON, Type.CON, Type.NON]
        request.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_a_notification_is_confirmable_at_least_every_24_hours():
    """RFC 7641 §4.5: however rarely every N-th is reached, a notification
    goes out confirmable once the last confirmable one is a day old."""
    from aiocoap.protocol import NOTIFICATION_CON_MAX_AGE

    net, server, client, counter = await setup()
    try:
        request = client.request(observe_msg())
        await request.response
        for v in (1, 2):
            counter.value = v
            counter.updated_state()
            await settle()
        (observation,) = counter._observations
        observation._last_con -= NOTIFICATION_CON_MAX_AGE  # a day passed since
        for v in (3, 4):
            counter.value = v
            counter.updated_state()
            await settle()
        types = [
            Message.decode(d).mtype
            for s, dst, d in net.log
            if s == "server" and Message.decode(d).code == Code.CONTENT
        ]
        # (the first one CON as in the test above)
        assert types[1:] == [Type.CON, Type.NON, Type.CON, Type.NON]
        request.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_error_response_ends_observation():
    net, server, client, counter = await setup()
    try:
        request = client.request(observe_msg())
        await request.response
        received = []
        errors = []
        request.observation.register_callback(lambda m: received.append(m.code))
        request.observation.register_errback(errors.append)
        counter.updated_state(Message(code=Code.NOT_FOUND, payload=b"gone"))
        await settle()
        assert errors and isinstance(errors[0], error.ObservationCancelled)
        assert counter.counts[-1] == 0
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_server_shutdown_ends_observation_with_error():
    net, server, client, counter = await setup()
    try:
        request = client.request(observe_msg())
        await request.response
        await server.shutdown()
        with pytest.raises(error.ObservationCancelled):
            async with asyncio.timeout(1) if hasattr(asyncio, "timeout") else _null():
                async for _ in request.observation:
                    pass
    finally:
        await client.shutdown()


class _null:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *a):
        return False


async def test_client_shutdown_ends_iteration():
    net, server, client, counter = await setup()
    request = client.request(observe_msg())
    await request.response
    await client.shutdown()
    with pytest.raises(error.LibraryShutdown):
        async for _ in request.observation:
            pass
    await server.shutdown()


async def test_reregistration_when_freshness_runs_out():
    counter = Counter(max_age=0)
    net, server, client, counter = await setup(counter)
    import aiocoap.tokenmanager as tm

    old_margin, old_granularity = tm.REREGISTRATION_MARGIN, tm.REREGISTRATION_GRANULARITY
    tm.REREGISTRATION_MARGIN = 0.05
    tm.REREGISTRATION_GRANULARITY = 0.01
    try:
        request = client.request(observe_msg())
        await request.response
        await asyncio.sleep(0.2)
        gets = [Message.decode(d) for s, dst, d in net.log if s == "client" and Message.decode(d).code == Code.GET]
        assert len(gets) >= 2, "the client re-registered"
        assert {g.token for g in gets} == {request.request.token}
        assert all(g.opt.observe == 0 for g in gets)
        # still one observation at the server (re-registration replaced it;
        # for the moment between the old one's end and the new one's
        # acceptance, the count is 0: looked at again then)
        for _ in range(20):
            if counter.counts[-1] == 1:
                break
            await asyncio.sleep(0.002)
        assert counter.counts[-1] == 1 and max(counter.counts) == 1
        seen = []
        request.observation.register_callback(lambda m: seen.append(m.payload))
        counter.value = 9
        counter.updated_state()
        await settle()
        assert b"9" in seen
        request.observation.cancel()
    finally:
        tm.REREGISTRATION_MARGIN, tm.REREGISTRATION_GRANULARITY = old_margin, old_granularity
        await client.shutdown()
        await server.shutdown()


async def test_forgotten_observation_is_cancelled():
    net, server, client, counter = await setup()
    try:
        request = client.request(observe_msg())
        await request.response
        assert counter.counts[-1] == 1
        del request
        gc.collect()
        await settle()
        assert counter.counts[-1] == 0
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_thousand_observers():
    net, server, client, counter = await setup()
    try:
        requests = [client.request(observe_msg()) for _ in range(1000)]
        await asyncio.gather(*(r.response for r in requests))
        assert counter.counts[-1] == 1000
        seen = []
        for r in requests:
            r.observation.register_callback(lambda m: seen.append(m.payload))
        counter.value = 1
        counter.updated_state()
        for _ in range(50):
            await asyncio.sleep(0.01)
            if len(seen) == 1000:
                break
        assert seen == [b"1"] * 1000
        for r in requests:
            r.observation.cancel()
        # The cancellations are CON requests to one peer: congestion control
        # (NSTART 1) sends them one after the other.
        for _ in range(500):
            await asyncio.sleep(0.01)
            if counter.counts[-1] == 0:
                break
        assert counter.counts[-1] == 0
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_observation_cap_per_peer():
    net, server, client, counter = await setup()
    server.max_observations_per_peer = 3
    try:
        requests = [client.request(observe_msg()) for _ in range(5)]
        responses = await asyncio.gather(*(r.response for r in requests))
        assert [r.opt.observe is not None for r in responses] == [True] * 3 + [False] * 2
        assert all(r.code == Code.CONTENT for r in responses)
        for r in requests:
            r.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


class RawPeer:
    """A hand-driven endpoint on the memory net."""

    def __init__(self, net, name):
        self.net = net
        self.name = name
        self.received = []
        net.interfaces[name] = self
        self.manager = self

    def dispatch_datagram(self, data, remote):
        self.received.append(Message.decode(data))

    def send(self, message, to):
        self.net.transmit(self.name, message.encode(), to)


async def test_reordered_and_duplicate_notifications_are_dropped():
    net = MemoryNet(asyncio.get_running_loop())
    raw = RawPeer(net, "server")
    client = await net.context("client", transport_tuning=QUICK)
    try:
        request = client.request(observe_msg())
        await settle()
        get = raw.received[-1]
        seen = []

        def notify(seq, payload, mtype=Type.NON, mid=None):
            m = Message(_mtype=mtype, _mid=mid if mid is not None else 1000 + seq, code=Code.CONTENT,
                        _token=get.token, payload=payload, observe=seq)
            raw.send(m, "client")

        raw.send(Message(_mtype=Type.ACK, _mid=get.mid, code=Code.CONTENT, _token=get.token, payload=b"first", observe=10), "client")
        await settle()
        request.observation.register_callback(lambda m: seen.append(m.payload))
        notify(12, b"twelve")
        notify(11, b"eleven (late)")
        notify(13, b"thirteen")
        notify(13, b"thirteen again", mid=5000)
        notify(12, b"twelve (dup)")
        await settle()
        assert seen == [b"twelve", b"thirteen"]
        # 2**24-1 after 13 is older by the wrap-around rule, so it is dropped
        notify(0xFFFFFF, b"big", mid=6000)
        await settle()
        assert seen == [b"twelve", b"thirteen"]
        request.observation.cancel()
        await settle()
    finally:
        await client.shutdown()


async def test_unwanted_non_notification_gets_rst_and_ends_server_observation():
    net, server, client, counter = await setup()
    raw = RawPeer(net, "raw")
    # (a peer not shown to receive would get CON notifications, see
    # aiocoap.amplification)
    server.amplification.note_reachable(MemoryAddress("raw", None), server.loop.time())
    try:
        raw.send(Message(_mtype=Type.CON, _mid=1, code=Code.GET, _token=b"abcd", observe=0, uri_path=["counter"]), "server")
        await settle()
        assert raw.received[-1].opt.observe is not None
        assert counter.counts[-1] == 1
        counter.value = 5
        counter.updated_state()
        await settle()
        notification = raw.received[-1]
        assert notification.mtype is Type.NON and notification.payload == b"5"
        raw.send(Message(_mtype=Type.RST, _mid=notification.mid, code=Code.EMPTY), "server")
        await settle()
        assert counter.counts[-1] == 0
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_client_rejects_notification_for_unknown_token():
    net = MemoryNet(asyncio.get_running_loop())
    raw = RawPeer(net, "server")
    client = await net.context("client", transport_tuning=QUICK)
    try:
        raw.send(Message(_mtype=Type.NON, _mid=77, code=Code.CONTENT, _token=b"nope", observe=3), "client")
        await settle()
        rst = raw.received[-1]
        assert (rst.mtype, rst.mid) == (Type.RST, 77)
    finally:
        await client.shutdown()


async def test_deregistration_get_observe_1_from_raw_client():
    net, server, client, counter = await setup()
    raw = RawPeer(net, "raw")
    try:
        raw.send(Message(_mtype=Type.CON, _mid=1, code=Code.GET, _token=b"tok1", observe=0, uri_path=["counter"]), "server")
        await settle()
        assert counter.counts[-1] == 1
        raw.send(Message(_mtype=Type.CON, _mid=2, code=Code.GET, _token=b"tok1", observe=1, uri_path=["counter"]), "server")
        await settle()
        assert counter.counts[-1] == 0
        assert raw.received[-1].opt.observe is None and raw.received[-1].code == Code.CONTENT
        # and a GET without Observe on the token ends it as well
        raw.send(Message(_mtype=Type.CON, _mid=3, code=Code.GET, _token=b"tok2", observe=0, uri_path=["counter"]), "server")
        await settle()
        assert counter.counts[-1] == 1
        raw.send(Message(_mtype=Type.CON, _mid=4, code=Code.GET, _token=b"tok2", uri_path=["counter"]), "server")
        await settle()
        assert counter.counts[-1] == 0
    finally:
        await client.shutdown()
        await server.shutdown()


def test_freshness_rule():
    assert notification_is_fresher(1, 0, 2, 0)
    assert not notification_is_fresher(2, 0, 2, 0)
    assert not notification_is_fresher(2, 0, 1, 0)
    assert notification_is_fresher((1 << 24) - 1, 0, 0, 0)
    assert not notification_is_fresher(0, 0, (1 << 24) - 1, 0)
    assert notification_is_fresher(100, 0, 1, 129)


class Capturing(Counter):
    """Remembers its ServerObservations so a test can end them."""

    def __init__(self):
        super().__init__()
        self.server_observations = []

    async def add_observation(self, request, serverobservation):
        self.server_observations.append(serverobservation)
        await super().add_observation(request, serverobservation)


async def test_final_notification_reaches_the_callback():
    """trigger(response, is_last=True) sends a last notification without
    Observe; the client delivers it before ending the observation."""
    net, server, client, counter = await setup(Capturing())
    try:
        request = client.request(observe_msg())
        await request.response
        seen, errors = [], []
        request.observation.register_callback(lambda m: seen.append(m.payload))
        request.observation.register_errback(errors.append)
        counter.updated_state(Message(payload=b"last"))
        await settle()
        (server_observation,) = counter.server_observations
        server_observation.trigger(Message(payload=b"final"), is_last=True)
        await settle()
        assert seen == [b"last", b"final"]
        assert len(errors) == 1 and isinstance(errors[0], error.ObservationCancelled)
        assert counter.counts[-1] == 0
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_established_observations_hold_no_finished_render_tasks():
    """An observation's first render task is done after the first response;
    the observation (which lives on) must not keep it alive."""
    net, server, client, counter = await setup()
    try:
        requests = [client.request(observe_msg()) for _ in range(50)]
        await asyncio.gather(*(r.response for r in requests))
        await settle()
        gc.collect()
        finished = [
            o for o in gc.get_objects()
            if isinstance(o, asyncio.Task) and o.done() and "_render" in repr(o.get_coro())
        ]
        assert finished == []
        for r in requests:
            r.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


class Gated(Counter):
    """A counter whose rendering waits for a gate for chosen tokens."""

    def __init__(self):
        super().__init__()
        self.slow_tokens = set()
        self.gate = asyncio.Event()
        self.renders = []
        self.cancelled = 0
        self.fail_tokens = set()

    async def render_get(self, request):
        self.renders.append(request.token)
        if request.token in self.fail_tokens:
            raise RuntimeError("rendering failed on purpose")
        if request.token in self.slow_tokens:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return await super().render_get(request)


async def observe_many(client, n):
    requests = [client.request(observe_msg()) for _ in range(n)]
    await asyncio.gather(*(r.response for r in requests))
    seen = [[] for _ in requests]
    for r, s in zip(requests, seen):
        r.observation.register_callback(lambda m, s=s: s.append(m.payload))
    return requests, seen


async def test_one_update_renders_all_observers_in_one_task():
    net, server, client, counter = await setup()
    try:
        requests, seen = await observe_many(client, 200)
        counter.value = 1
        counter.updated_state()
        named = [t for t in asyncio.all_tasks() if t.get_name() == "aiocoap notifications"]
        assert len(named) == 1
        await settle()
        assert seen == [[b"1"]] * 200
        for r in requests:
            r.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_slow_rendering_delays_only_its_own_notification():
    net, server, client, counter = await setup(Gated())
    try:
        requests, seen = await observe_many(client, 5)
        counter.slow_tokens = {requests[1].request.token, requests[3].request.token}
        counter.value = 1
        counter.updated_state()
        await settle()
        assert seen == [[b"1"], [], [b"1"], [], [b"1"]]
        counter.gate.set()
        await settle()
        assert seen == [[b"1"]] * 5
        for r in requests:
            r.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_failing_notification_rendering_ends_only_that_observation(caplog):
    net, server, client, counter = await setup(Gated())
    try:
        requests, seen = await observe_many(client, 3)
        errors = []
        requests[0].observation.register_errback(errors.append)
        counter.fail_tokens = {requests[0].request.token}
        counter.value = 1
        counter.updated_state()
        await settle()
        assert seen[1:] == [[b"1"], [b"1"]]
        # the 5.00 ends the observation; the client sees it as the last notification
        assert len(errors) == 1
        assert counter.counts[-1] == 2
        assert "rendering failed on purpose" in caplog.text
        counter.value = 2
        counter.updated_state()
        await settle()
        assert seen[1:] == [[b"1", b"2"], [b"1", b"2"]]
        for r in requests[1:]:
            r.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_triggers_during_a_suspended_rendering_are_coalesced():
    net, server, client, counter = await setup(Gated())
    try:
        requests, seen = await observe_many(client, 1)
        token = requests[0].request.token
        counter.slow_tokens = {token}
        counter.renders.clear()
        for v in range(1, 6):
            counter.value = v
            counter.updated_state()
            await settle()
        assert counter.renders == [token]  # one rendering, waiting
        counter.slow_tokens = set()
        counter.gate.set()
        await settle()
        # the waiting one finished (with the state at that time), then one
        # more for all the triggers meanwhile -- not five
        assert len(counter.renders) == 2
        assert seen[0][-1] == b"5"
        requests[0].observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_ending_an_observation_cancels_its_suspended_rendering():
    net, server, client, counter = await setup(Gated())
    try:
        requests, seen = await observe_many(client, 2)
        counter.slow_tokens = {requests[0].request.token}
        counter.value = 1
        counter.updated_state()
        await settle()
        requests[0].observation.cancel()
        await settle()
        assert counter.cancelled == 1
        assert counter.counts[-1] == 1
        assert seen == [[], [b"1"]]
        requests[1].observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_notification_rendering_runs_in_a_task():
    """Renderings may use what needs a current task (asyncio.timeout,
    current_task()) also when they do not suspend first."""

    class UsesTask(Counter):
        async def render_get(self, request):
            assert asyncio.current_task() is not None
            if hasattr(asyncio, "timeout"):
                async with asyncio.timeout(1):
                    await asyncio.sleep(0)
            return await super().render_get(request)

    net, server, client, counter = await setup(UsesTask())
    try:
        requests, seen = await observe_many(client, 3)
        counter.value = 1
        counter.updated_state()
        await settle()
        assert seen == [[b"1"]] * 3
        for r in requests:
            r.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


class PathEcho(resource.ObservableResource, resource.PathCapable):
    """Observable below a nested site: answers with the path it sees."""

    def __init__(self):
        super().__init__()
        self.value = 0

    async def render_get(self, request):
        return Message(payload=("%s %d" % ("/".join(request.opt.uri_path), self.value)).encode())


class CountingSite(resource.Site):
    def __init__(self):
        super().__init__()
        self.lookups = 0

    def _locate(self, request):
        self.lookups += 1
        return super()._locate(request)


async def test_notifications_see_the_request_as_the_first_rendering_did():
    """Notifications are rendered by the resource the site found for the
    registration, without looking it up again, and with the same path
    stripped as for the first response (here through a nested site)."""
    net = MemoryNet(asyncio.get_running_loop())
    echo = PathEcho()
    inner = resource.Site()
    inner.add_resource(["deep"], echo)
    outer = CountingSite()
    outer.add_resource(["outer"], inner)
    server = await net.context("server", outer, transport_tuning=QUICK)
    client = await net.context("client", transport_tuning=QUICK)
    try:
        request = client.request(Message(code=Code.GET, observe=0, uri="coap://server/outer/deep/x/y"))
        assert (await request.response).payload == b"x/y 0"
        lookups = outer.lookups
        seen = []
        request.observation.register_callback(lambda m: seen.append(m.payload))
        for v in (1, 2, 3):
            echo.value = v
            echo.updated_state()
            await settle()
        assert seen == [b"x/y 1", b"x/y 2", b"x/y 3"]
        assert outer.lookups == lookups
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_given_response_reaches_every_observer():
    """updated_state(response) sends that response to every observer, each
    with its own token, Observe number and message ID (it once went out
    with the first observer's message ID to all, and the client dropped
    the others as duplicates)."""
    net, server, client, counter = await setup()
    try:
        requests = [client.request(observe_msg()) for _ in range(3)]
        for request in requests:
            await request.response
        seen = [[] for _ in requests]
        for i, request in enumerate(requests):
            request.observation.register_callback(lambda m, i=i: seen[i].append(m.payload))
        for n in range(4):
            given = Message(payload=b"given%d" % n)
            counter.updated_state(given)
            await settle()
        assert seen == [[b"given0", b"given1", b"given2", b"given3"]] * 3
        # the message handed in is left as it was
        assert given.mid is None and given.token == b"" and given.opt.observe is None
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_server_memory_per_observation_is_bounded():
    """A regression guard for the memory target (<= 2 KB per server-side
    observation, measured as RSS by benchmarks/bench_observe.py): Python
    allocations of the server per established NON observation, here
    including the memory net's per-datagram address objects and the
    registration's deduplication entry."""
    net = MemoryNet(asyncio.get_running_loop())
    site = resource.Site()
    counter = Counter()
    site.add_resource(["counter"], counter)
    server = await net.context("server", site, transport_tuning=QUICK)
    server.max_observations_per_peer = 2000
    raw = RawPeer(net, "raw")
    # (established NON observations: those of a peer that has not shown
    # that it receives are CON until it does, see aiocoap.amplification)
    server.amplification.note_reachable(MemoryAddress("raw", None), server.loop.time())

    def register(first, count):
        for i in range(first, first + count):
            raw.send(Message(_mtype=Type.NON, _mid=i, code=Code.GET, _token=i.to_bytes(4, "big"),
                             observe=0, uri_path=["counter"]), "server")

    def forget_traffic():
        raw.received.clear()
        net.log.clear()
        gc.collect()

    try:
        register(0, 50)  # (lazily created tables exist before measuring)
        await settle()
        counter.updated_state()
        await settle()
        forget_traffic()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            n = 1000
            for first in range(1000, 1000 + n, 100):
                register(first, 100)
                await settle()
            counter.updated_state()  # each has a notification in flight
            await settle()
            forget_traffic()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        assert counter.counts[-1] == n + 50
        per_observation = sum(s.size_diff for s in after.compare_to(before, "filename")) / n
        assert per_observation < 2400, per_observation
    finally:
        await server.shutdown()


async def test_silent_observer_is_dropped_after_max_retransmit():
    """RFC 7641 §4.5.2: a notification that replaces a confirmable one
    still in flight takes over its retransmission counter and timeout. An
    observer that never acknowledges is then dropped once MAX_RETRANSMIT
    retransmissions are used up, however fast the resource changes (here
    five times per ACK_TIMEOUT), and gets nothing after that."""
    net = MemoryNet(asyncio.get_running_loop())
    site = resource.Site()
    counter = Counter()
    site.add_resource(["counter"], counter)
    server = await net.context("server", site, transport_tuning=QUICK)
    server.notification_con_interval = 3
    silent = RawPeer(net, "silent")
    loop = asyncio.get_running_loop()
    try:
        silent.send(Message(_mtype=Type.NON, _mid=1, code=Code.GET, _token=b"mute", observe=0,
                            uri_path=["counter"]), "server")
        await settle()
        assert counter.counts[-1] == 1
        first_con = ended = None
        deadline = loop.time() + 5 * QUICK.MAX_TRANSMIT_WAIT
        while loop.time() < deadline:
            counter.value += 1
            counter.updated_state()
            await asyncio.sleep(QUICK.ACK_TIMEOUT / 5)
            if first_con is None and any(m.mtype is Type.CON for m in silent.received):
                first_con = loop.time()
            if counter.counts[-1] == 0:
                ended = loop.time()
                break
        assert first_con is not None
        assert ended is not None, "the silent observer was never dropped"
        # (the last retransmission timeout fires MAX_TRANSMIT_WAIT after the
        # first transmission at the latest; the margin is for the loop)
        assert ended - first_con < QUICK.MAX_TRANSMIT_WAIT + 0.2
        # The replacements went out confirmable (taking over the exchange)
        # until the end.
        after_first_con = [m for m in silent.received if m.mtype is Type.CON]
        assert after_first_con[-1] is silent.received[-1]
        sent_before = len(silent.received)
        for _ in range(5):
            counter.value += 1
            counter.updated_state()
            await asyncio.sleep(QUICK.ACK_TIMEOUT)
        assert len(silent.received) == sent_before
        assert server._tokenmanager._observations == {}
    finally:
        await server.shutdown()


async def test_observation_cap_per_host_counts_every_port(caplog):
    """One host registering from many ports (each a peer of its own) is held
    to ``max_observations_per_host`` together; the refusals are logged at
    info once a minute, not once each."""
    caplog.set_level(logging.DEBUG, logger="coap-server")
    net = MemoryNet(asyncio.get_running_loop())
    site = resource.Site()
    counter = Counter()
    site.add_resource(["counter"], counter)
    server = await net.context("server", site, transport_tuning=QUICK)
    server.max_observations_per_peer = 2
    server.max_observations_per_host = 5
    # (memory addresses name a host and a port as "host:port")
    peers = [RawPeer(net, "attacker:%d" % port) for port in range(1, 5)]
    other = RawPeer(net, "neighbour:1")
    try:
        for n, peer in enumerate(peers + [other]):
            for i in range(2):
                peer.send(Message(_mtype=Type.NON, _mid=i, code=Code.GET, _token=b"t%d" % i, observe=0,
                                  uri_path=["counter"]), "server")
            await settle()
        accepted = [sum(m.opt.observe is not None for m in peer.received) for peer in peers]
        assert accepted == [2, 2, 1, 0]
        assert [m.opt.observe is not None for m in other.received] == [True, True]
        assert all(m.code == Code.CONTENT for peer in peers for m in peer.received)
        refusals = [r for r in caplog.records if "Observation cap" in r.getMessage()]
        assert len(refusals) == 3 and [r.levelname for r in refusals].count("INFO") == 1
        # ending one frees room for that host again
        first = peers[0].received[-1]
        peers[0].send(Message(_mtype=Type.RST, _mid=first.mid, code=Code.EMPTY), "server")
        counter.updated_state()
        await settle()
        peers[0].send(Message(_mtype=Type.NON, _mid=9, code=Code.GET, _token=b"again", observe=0,
                              uri_path=["counter"]), "server")
        await settle()
        assert peers[0].received[-1].opt.observe is not None
    finally:
        await server.shutdown()


async def test_ended_observation_state_is_freed_at_once():
    """When observations end (here: the observer rejects a NON notification
    with a Reset), what the server kept for them is freed right away, not
    after EXCHANGE_LIFETIME (where a late Reset would have found it)."""
    net = MemoryNet(asyncio.get_running_loop())
    site = resource.Site()
    counter = Counter()
    site.add_resource(["counter"], counter)
    server = await net.context("server", site, transport_tuning=QUICK)
    server.max_observations_per_peer = 2000
    server.max_observations_per_host = 2000
    # (the peer never ACKs, so as an unverified one it would get CON
    # notifications, RFC 9175 §2.4; this test is about NON ones)
    server.amplification.factor = None
    raw = RawPeer(net, "raw")
    n = 500

    def register(first, count):
        for i in range(first, first + count):
            raw.send(Message(_mtype=Type.NON, _mid=i, code=Code.GET, _token=i.to_bytes(4, "big"),
                             observe=0, uri_path=["counter"]), "server")

    def forget_traffic():
        raw.received.clear()
        net.log.clear()
        gc.collect()

    try:
        register(0, 50)  # (lazily created tables exist before measuring)
        await settle()
        counter.updated_state()
        await settle()
        forget_traffic()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for first in range(1000, 1000 + n, 100):
                register(first, 100)
                await settle()
            raw.received.clear()
            counter.updated_state()
            for _ in range(200):  # (sent in slices: under tracemalloc, many)
                await settle()
                if len(raw.received) >= n + 50:
                    break
            notifications = [m for m in raw.received if int.from_bytes(m.token, "big") >= 1000]
            assert all(m.mtype is Type.NON for m in notifications)
            assert len(notifications) == n
            mids = [m.mid for m in notifications]
            del notifications
            forget_traffic()
            established = tracemalloc.take_snapshot()
            for mid in mids:
                raw.send(Message(_mtype=Type.RST, _mid=mid, code=Code.EMPTY), "server")
            await settle()
            assert counter.counts[-1] == 50
            forget_traffic()
            ended = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        # No pipe of an ended observation is alive (they were, until
        # EXCHANGE_LIFETIME, through their latest notification's tracking).
        from aiocoap.pipe import Pipe

        assert sum(isinstance(o, Pipe) for o in gc.get_objects()) == 50
        held = sum(s.size_diff for s in established.compare_to(before, "filename")) / n
        left = sum(s.size_diff for s in ended.compare_to(before, "filename")) / n
        # What stays (a third of it; it was five sixths): the deduplication
        # memory of the registrations (EXCHANGE_LIFETIME, as for any
        # request), two stopped handles of a few dozen bytes in expiry
        # buckets, and the tables' grown capacity (and on uvloop, some of
        # its own).
        assert left < held / 2, (held, left)
    finally:
        await server.shutdown()


async def test_requests_are_served_between_slices_of_a_large_fan_out():
    """Notifying many observers is done in slices of
    ``notification_slice`` seconds with the loop's turn in between, so a
    plain request arriving with an update is answered long before the last
    notification goes out (it used to wait for all of them)."""
    net, server, client, counter = await setup()
    server.notification_slice = 0  # (the smallest slice: the clock is read every few notifications)
    try:
        requests, seen = await observe_many(client, 400)
        net.log.clear()
        counter.value = 1
        counter.updated_state()
        plain = client.request(Message(code=Code.GET, uri="coap://server/counter"))
        response = await plain.response
        assert response.payload == b"1"
        for _ in range(100):
            await asyncio.sleep(0.01)
            if all(s == [b"1"] for s in seen):
                break
        assert seen == [[b"1"]] * 400
        answers = [Message.decode(d) for s, dst, d in net.log if s == "server"]
        notifications = [i for i, m in enumerate(answers) if m.opt.observe is not None]
        answer = next(i for i, m in enumerate(answers) if m.token == plain.request.token and m.code == Code.CONTENT)
        assert len(notifications) == 400
        # (it goes out after a slice or two, not after all 400)
        assert answer < notifications[100], (answer, notifications[100])
        for r in requests:
            r.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_observations_waiting_for_their_slice_get_the_newest_state_once():
    """An observation whose notification waits for a later slice when its
    resource changes again gets one notification, of the newest state."""
    net, server, client, counter = await setup()
    server.notification_slice = 0
    try:
        requests, seen = await observe_many(client, 200)
        counter.value = 1
        counter.updated_state()
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # (the first slice or two went out)
        counter.value = 2
        counter.updated_state()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if all(s and s[-1] == b"2" for s in seen):
                break
        assert all(s[-1] == b"2" for s in seen)
        both = sum(1 for s in seen if s == [b"1", b"2"])
        only_newest = sum(1 for s in seen if s == [b"2"])
        assert both + only_newest == 200
        assert only_newest > 100, "waiting observations were coalesced"
        for r in requests:
            r.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_request_arriving_during_a_fan_out_is_answered_before_the_next_slice():
    """A request that arrives while a large fan-out is going out is read
    and answered in the loop's turns between two slices: no notification
    goes out between the request and its answer (before, the slice
    after the one it arrived in went first, and another one while its
    rendering waited for its task's first step)."""
    net = MemoryNet(asyncio.get_running_loop())
    site = resource.Site()
    counter = Counter()
    site.add_resource(["counter"], counter)
    server = await net.context("server", site, transport_tuning=QUICK)
    server.max_observations_per_peer = server.max_observations_per_host = 1000
    server.amplification.factor = None  # (the raw peers never ACK; this is about NON notifications)
    server.notification_slice = 0  # (the smallest slice: the clock is read every few notifications)
    observers, asker = RawPeer(net, "observers"), RawPeer(net, "asker")
    n = 400
    try:
        for i in range(n):
            observers.send(Message(_mtype=Type.NON, _mid=i, code=Code.GET, _token=i.to_bytes(4, "big"),
                                   observe=0, uri_path=["counter"]), "server")
        await settle()
        assert len(observers.received) == n
        net.log.clear()

        get = Message(_mtype=Type.CON, _mid=1, code=Code.GET, _token=b"plain", uri_path=["counter"])
        receive = observers.dispatch_datagram

        def ask_during_the_first_slice(data, remote):
            receive(data, remote)
            if len(observers.received) == n + 1:
                asker.send(get, "server")

        observers.dispatch_datagram = ask_during_the_first_slice
        counter.value = 1
        counter.updated_state()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(observers.received) == 2 * n:
                break
        assert len(observers.received) == 2 * n and asker.received[0].code == Code.CONTENT
        log = [(source, destination) for source, destination, _ in net.log]
        asked = log.index(("asker", "server"))
        answered = log.index(("server", "asker"))
        notified = log.count(("server", "observers"))
        assert notified == n
        between = log[asked:answered].count(("server", "observers"))
        assert between == 0, between
    finally:
        await server.shutdown()


async def test_updates_faster_than_the_fan_out_are_coalesced_fairly():
    """A resource changing on every turn of the loop while its observers
    can only be notified a slice at a time: the server skips
    intermediate states (RFC 7641 §4.5.1) rather than queueing them; each
    observer gets states in order, no state twice, and the newest one in
    the end, and they take turns (none is starved while others get
    several)."""
    net, server, client, counter = await setup()
    server.notification_slice = 0
    try:
        requests, seen = await observe_many(client, 200)
        for value in range(1, 41):
            counter.value = value
            counter.updated_state()
            await asyncio.sleep(0)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if all(s and s[-1] == b"40" for s in seen):
                break
        states = [[int(p) for p in s] for s in seen]
        assert all(s[-1] == 40 for s in states)
        assert all(all(a < b for a, b in zip(s, s[1:])) for s in states)
        counts = sorted(len(s) for s in states)
        assert counts[-1] < 40, "intermediate states were skipped"
        assert counts[-1] - counts[0] <= 2, counts
        for r in requests:
            r.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()
