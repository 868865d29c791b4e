"""Context, requests and server rendering, between contexts connected by
the in-memory network of tests/memorynet.py (no sockets, real event loop).
"""

import asyncio
import logging

import pytest

from aiocoap import error, resource
from aiocoap.message import Message, NoResponse
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import Type
from aiocoap.protocol import Context, MulticastRequest

from memorynet import MemoryNet

QUICK = TransportTuning(ACK_TIMEOUT=0.05, MAX_RETRANSMIT=2, EMPTY_ACK_DELAY=0.02, REQUEST_TIMEOUT=0.3)


class Echo(resource.Resource):
    def __init__(self):
        super().__init__()
        self.calls = []

    async def render_get(self, request):
        self.calls.append(request)
        return Message(payload=b"get:" + "/".join(request.opt.uri_path).encode())

    async def render_post(self, request):
        self.calls.append(request)
        return Message(code=Code.CREATED, payload=request.payload[::-1])

    async def render_put(self, request):
        self.calls.append(request)
        return Message(payload=request.payload)

    async def render_delete(self, request):
        self.calls.append(request)
        return Message()

    async def render_fetch(self, request):
        return Message(payload=b"fetched " + request.payload)

    async def render_patch(self, request):
        return Message(code=Code.CHANGED)

    async def render_ipatch(self, request):
        return Message(code=Code.CHANGED)


class Slow(resource.Resource):
    def __init__(self, delay):
        super().__init__()
        self.delay = delay

    async def render_get(self, request):
        await asyncio.sleep(self.delay)
        return Message(payload=b"slow")


class Broken(resource.Resource):
    async def render_get(self, request):
        raise KeyError("oops")


class Forbidden(resource.Resource):
    async def render_get(self, request):
        raise error.Forbidden("not for you")


class Silent(resource.Resource):
    async def render_get(self, request):
        return NoResponse


class Counter(resource.ObservableResource):
    def __init__(self):
        super().__init__()
        self.value = 0

    async def render_get(self, request):
        return Message(payload=str(self.value).encode())


def make_site():
    site = resource.Site()
    site.add_resource(["echo"], Echo())
    site.add_resource(["slow"], Slow(0.1))
    site.add_resource(["broken"], Broken())
    site.add_resource(["forbidden"], Forbidden())
    site.add_resource(["silent"], Silent())
    site.add_resource(["counter"], Counter())
    return site


@pytest.fixture
def site():
    return make_site()


async def pair(site, **kwargs):
    net = MemoryNet(asyncio.get_running_loop())
    server = await net.context("server", site, transport_tuning=QUICK)
    client = await net.context("client", transport_tuning=QUICK)
    return net, server, client


async def test_every_method(site):
    net, server, client = await pair(site)
    try:
        cases = [
            (Code.GET, b"", Code.CONTENT, b"get:"),
            (Code.POST, b"abc", Code.CREATED, b"cba"),
            (Code.PUT, b"xyz", Code.CHANGED, b"xyz"),
            (Code.DELETE, b"", Code.DELETED, b""),
            (Code.FETCH, b"q", Code.CONTENT, b"fetched q"),
            (Code.PATCH, b"p", Code.CHANGED, b""),
            (Code.iPATCH, b"p", Code.CHANGED, b""),
        ]
        for code, payload, expected_code, expected_payload in cases:
            response = await client.request(Message(code=code, payload=payload, uri="coap://server/echo")).response
            assert response.code == expected_code, code
            assert response.payload == expected_payload
            assert response.request.code == code
            assert response.get_request_uri() == "coap://server/echo"
            assert response.remote.hostinfo == "server"
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_separate_response(site):
    net, server, client = await pair(site)
    try:
        response = await client.request(Message(code=Code.GET, uri="coap://server/slow")).response
        assert response.payload == b"slow"
        messages = [Message.decode(d) for s, dst, d in net.log if s == "server"]
        assert [(m.mtype, m.code) for m in messages] == [(Type.ACK, Code.EMPTY), (Type.CON, Code.CONTENT)]
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_errors_render(site, caplog):
    net, server, client = await pair(site)
    try:
        with caplog.at_level(logging.ERROR):
            broken = await client.request(Message(code=Code.GET, uri="coap://server/broken")).response
        assert broken.code == Code.INTERNAL_SERVER_ERROR
        assert any("KeyError" in r.getMessage() or r.exc_info for r in caplog.records)
        forbidden = await client.request(Message(code=Code.GET, uri="coap://server/forbidden")).response
        assert forbidden.code == Code.FORBIDDEN and forbidden.payload == b"not for you"
        missing = await client.request(Message(code=Code.GET, uri="coap://server/nothing")).response
        assert missing.code == Code.NOT_FOUND
        bad = Message(code=Code.GET, uri="coap://server/echo")
        from aiocoap.optiontypes import OpaqueOption
        from aiocoap.numbers.optionnumbers import OptionNumber

        bad.opt.add_option(OpaqueOption(OptionNumber(2049 + 2), b"x"))  # unknown critical
        response = await client.request(bad).response
        assert response.code == Code.BAD_OPTION
        with pytest.raises(error.ResponseWrappingError):
            await client.request(Message(code=Code.GET, uri="coap://server/nothing")).response_raising
        fabricated = await client.request(Message(code=Code.GET, uri="coap://server/nothing")).response_nonraising
        assert fabricated.code == Code.NOT_FOUND
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_no_response_option_and_noresponse_sentinel(site):
    net, server, client = await pair(site)
    try:
        silent = client.request(Message(code=Code.GET, uri="coap://server/silent", transport_tuning=TransportTuning(ACK_TIMEOUT=0.05, MAX_RETRANSMIT=1, REQUEST_TIMEOUT=0.2)))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(silent.response), 0.3)
        silent.response.cancel()
        # the CON was acknowledged (empty ACK), so no retransmission failure
        acks = [Message.decode(d) for s, dst, d in net.log if s == "server"]
        assert [(m.mtype, m.code) for m in acks] == [(Type.ACK, Code.EMPTY)]

        net.log.clear()
        suppressed = client.request(Message(code=Code.GET, uri="coap://server/echo", no_response=2, _mtype=Type.NON))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(suppressed.response), 0.1)
        suppressed.response.cancel()
        assert [s for s, dst, d in net.log if s == "server"] == []
        # errors still come through with no_response=2
        response = await client.request(Message(code=Code.GET, uri="coap://server/none", no_response=2)).response
        assert response.code == Code.NOT_FOUND
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_non_request_gets_non_response(site):
    net, server, client = await pair(site)
    try:
        response = await client.request(Message(code=Code.GET, _mtype=Type.NON, uri="coap://server/echo")).response
        assert response.mtype is Type.NON
        assert response.payload == b"get:"
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_retransmission_over_lossy_link(site):
    net, server, client = await pair(site)
    try:
        dropped = []

        def drop_first_requests(source, data, destination):
            if source == "client" and len(dropped) < 2:
                dropped.append(data)
                return True
            return False

        net.drop = drop_first_requests
        response = await client.request(Message(code=Code.GET, uri="coap://server/echo")).response
        assert response.payload == b"get:"
        assert len(dropped) == 2
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_post_runs_once_despite_lost_ack(site):
    net, server, client = await pair(site)
    echo = site._resources[("echo",)] if hasattr(site, "_resources") else None
    try:
        lost = []

        def drop_first_response(source, data, destination):
            if source == "server" and not lost:
                lost.append(data)
                return True
            return False

        net.drop = drop_first_response
        response = await client.request(Message(code=Code.POST, payload=b"once", uri="coap://server/echo")).response
        assert response.payload == b"ecno"
        assert len(lost) == 1
        posts = [m for s, d, m in net.log if s == "client"]
        assert len(posts) == 2  # original and one retransmission
        if echo is not None:
            assert len([c for c in echo.calls if c.code == Code.POST]) == 1
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_timeout(site):
    net, server, client = await pair(site)
    try:
        net.drop = lambda *a: True
        with pytest.raises(error.RequestTimedOut):
            await client.request(Message(code=Code.GET, uri="coap://server/echo")).response
        with pytest.raises(error.RequestTimedOut):
            await client.request(Message(code=Code.GET, _mtype=Type.NON, uri="coap://server/echo")).response
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_observation(site):
    net, server, client = await pair(site)
    counter = None
    try:
        request = client.request(Message(code=Code.GET, observe=0, uri="coap://server/counter"))
        first = await request.response
        assert first.payload == b"0" and first.opt.observe is not None
        counter = next(r for r in _resources(site) if isinstance(r, Counter))
        seen = []
        request.observation.register_callback(lambda m: seen.append(m.payload))
        for value in (1, 2, 3):
            counter.value = value
            counter.updated_state()
            await asyncio.sleep(0.01)
        assert seen == [b"1", b"2", b"3"]
        request.observation.cancel()
        await asyncio.sleep(0.01)
        counter.value = 4
        counter.updated_state()
        await asyncio.sleep(0.01)
        assert seen == [b"1", b"2", b"3"]
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_observation_async_iteration(site):
    net, server, client = await pair(site)
    try:
        request = client.request(Message(code=Code.GET, observe=0, uri="coap://server/counter"))
        await request.response
        counter = next(r for r in _resources(site) if isinstance(r, Counter))

        async def produce():
            for value in (5, 6):
                await asyncio.sleep(0.01)
                counter.value = value
                counter.updated_state()

        producer = asyncio.ensure_future(produce())
        received = []
        async for notification in request.observation:
            received.append(notification.payload)
            if len(received) == 2:
                request.observation.cancel()
        await producer
        assert received == [b"5", b"6"]
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_not_observable(site):
    net, server, client = await pair(site)
    try:
        request = client.request(Message(code=Code.GET, observe=0, uri="coap://server/echo"))
        response = await request.response
        assert response.opt.observe is None
        # (as in aiocoap 0.4.x, the loop simply ends; errbacks still learn why)
        async for _ in request.observation:
            raise AssertionError("no notifications expected")
        reasons = []
        request.observation.register_errback(reasons.append)
        assert [type(r) for r in reasons] == [error.NotObservable]
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_shutdown_fails_pending_requests(site):
    net, server, client = await pair(site)
    net.drop = lambda *a: True
    pending = client.request(Message(code=Code.GET, uri="coap://server/echo"))
    await asyncio.sleep(0.01)
    await client.shutdown()
    with pytest.raises(error.LibraryShutdown):
        await pending.response
    after = client.request(Message(code=Code.GET, uri="coap://server/echo"))
    with pytest.raises(error.LibraryShutdown):
        await after.response
    await server.shutdown()


async def test_server_shutdown_with_slow_render(site):
    net, server, client = await pair(site)
    request = client.request(Message(code=Code.GET, uri="coap://server/slow"))
    await asyncio.sleep(0.03)
    await server.shutdown()
    await client.shutdown()
    with pytest.raises(error.LibraryShutdown):
        await request.response


async def test_unknown_destination(site):
    net, server, client = await pair(site)
    try:
        with pytest.raises(error.NoRequestInterface):  # (a NetworkError)
            await client.request(Message(code=Code.GET, uri="coap+tcp://server/echo")).response
        with pytest.raises(error.MissingRemoteError):
            await client.request(Message(code=Code.GET)).response
        with pytest.raises(error.MissingRemoteError):  # needs a proxy as remote
            await client.request(Message(code=Code.GET, uri="http://server/echo")).response
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_multicast_request_collects_responses(site):
    net = MemoryNet(asyncio.get_running_loop())
    servers = [await net.context(f"s{i}", make_site(), transport_tuning=QUICK) for i in range(3)]
    client = await net.context("client", transport_tuning=QUICK)
    try:
        # The memory net has no group addresses: fan the client's request
        # out to all servers and mark the destination as multicast.
        from memorynet import MemoryAddress

        iface = net.interfaces["client"]
        group = MemoryAddress("group", iface, multicast=True)
        original = net.transmit

        def fan_out(source, data, destination):
            if destination == "group":
                for i in range(3):
                    original(source, data, f"s{i}")
            else:
                original(source, data, destination)

        net.transmit = fan_out
        msg = Message(code=Code.GET, uri_path=["echo"])
        msg.remote = group
        multicast = MulticastRequest(client, msg, timeout=0.3)
        payloads = [r.payload async for r in multicast.responses]
        assert payloads == [b"get:"] * 3
        assert {m.mtype for s, d, m in [(s, d, Message.decode(x)) for s, d, x in net.log if s == "client"]} == {Type.NON}
    finally:
        await client.shutdown()
        for s in servers:
            await s.shutdown()


def _resources(site):
    found = []
    stack = [site]
    while stack:
        node = stack.pop()
        for value in vars(node).values():
            if isinstance(value, dict):
                for v in value.values():
                    if isinstance(v, resource.Site):
                        stack.append(v)
                    elif isinstance(v, resource.Resource):
                        found.append(v)
    return found


class WhereAmI(resource.Resource):
    async def render_get(self, request):
        return Message(payload=request.get_request_uri(local_is_server=True).encode())


async def test_request_uri_on_the_server_keeps_the_full_path(site):
    inner = resource.Site()
    inner.add_resource(["leaf"], WhereAmI())
    site.add_resource(["where"], WhereAmI())
    site.add_resource(["nested"], inner)
    net, server, client = await pair(site)
    try:
        response = await client.request(Message(code=Code.GET, uri="coap://server/where?q=1")).response
        assert response.payload == b"coap://server/where?q=1"
        response = await client.request(Message(code=Code.GET, uri="coap://server/nested/leaf")).response
        assert response.payload == b"coap://server/nested/leaf"
        # the deprecated unresolved_remote still answers on received messages
        assert response.unresolved_remote == "server"
    finally:
        await client.shutdown()
        await server.shutdown()


class InTask(resource.Resource):
    """Answers with whether its rendering runs in a task, and uses what
    needs one (a timeout scope) before it first waits."""

    async def render_get(self, request):
        in_task = asyncio.current_task() is not None
        if hasattr(asyncio, "timeout"):  # (Python 3.11 on)
            async with asyncio.timeout(5):
                pass
        return Message(payload=b"in task" if in_task else b"no task")


def _render_directly(server, path, events):
    from aiocoap.pipe import Pipe

    pipe = Pipe(Message(code=Code.GET, uri_path=path), logging.getLogger("test"))
    pipe.on_event(lambda event: events.append(event) or True)
    server.render_to_pipe(pipe)
    return pipe


async def test_render_that_does_not_wait_answers_at_once_where_asyncio_can():
    """Where asyncio runs a task's first step at once (Python 3.12 on), an
    incoming request whose rendering does not wait is answered before
    render_to_pipe returns: no turn of the event loop between request and
    response (which is what a peer with one request in flight waits for).
    The rendering still runs in a task of its own: current_task() and
    asyncio.timeout() work from its first line on."""
    from aiocoap.util.asyncio import stepping

    site = resource.Site()
    site.add_resource(["intask"], InTask())
    net, server, client = await pair(site)
    try:
        events = []
        _render_directly(server, ("intask",), events)
        if stepping.STARTS_EAGERLY:
            assert [e.message.payload for e in events] == [b"in task"]
        else:
            assert events == []
        for _ in range(3):
            await asyncio.sleep(0)
        assert [(e.message.code, e.message.payload, e.is_last) for e in events] == [(Code.CONTENT, b"in task", True)]
    finally:
        await client.shutdown()
        await server.shutdown()


class Waiting(resource.Resource):
    """Sets ``started`` when its rendering begins, then waits; sets
    ``cancelled`` when that wait is cancelled."""

    def __init__(self, started, cancelled):
        super().__init__()
        self.started, self.cancelled = started, cancelled

    async def render_get(self, request):
        self.started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return Message(payload=b"late")


async def test_render_that_waits_is_cancelled_when_interest_ends(site):
    """A rendering that suspends in its first step is left to its task, and
    that task is cancelled when the requester loses interest (and at
    shutdown, see test_server_shutdown_with_slow_render)."""
    started, cancelled = asyncio.Event(), asyncio.Event()
    site.add_resource(["waiting"], Waiting(started, cancelled))
    net, server, client = await pair(site)
    try:
        events = []
        pipe = _render_directly(server, ("waiting",), events)
        await asyncio.wait_for(started.wait(), 1)
        assert events == []
        pipe.stop_interest()
        await asyncio.wait_for(cancelled.wait(), 1)
    finally:
        await client.shutdown()
        await server.shutdown()


class TasklessSite(resource.Site):
    """A site whose renderings say they need no task (as the file
    server's do)."""

    renders_without_task = True


async def test_site_without_tasks_answers_within_delivery():
    """With ``renders_without_task``, a rendering that does not wait runs
    outside any task and is answered before render_to_pipe returns, on
    every Python version."""
    site = TasklessSite()
    site.add_resource(["intask"], InTaskLess())
    net, server, client = await pair(site)
    try:
        events = []
        _render_directly(server, ("intask",), events)
        # (called from the test's task here, which the rendering sees)
        assert [(e.message.code, e.is_last) for e in events] == [(Code.CONTENT, True)]
        response = await client.request(Message(code=Code.GET, uri="coap://server/intask")).response
        assert response.payload == b"no task"
    finally:
        await client.shutdown()
        await server.shutdown()


class InTaskLess(resource.Resource):
    async def render_get(self, request):
        return Message(payload=b"in task" if asyncio.current_task() is not None else b"no task")


async def test_site_without_tasks_hands_a_waiting_rendering_to_a_task():
    """A rendering that waits continues in a task (where it now is), its
    answer arrives, and its errors become error responses."""

    class Waits(resource.Resource):
        async def render_get(self, request):
            before = asyncio.current_task()
            await asyncio.sleep(0.01)
            after = asyncio.current_task()
            return Message(payload=b"%d %d" % (before is not None, after is not None))

        async def render_post(self, request):
            await asyncio.sleep(0)
            raise RuntimeError("broken after waiting")

        async def render_put(self, request):
            raise RuntimeError("broken at once")

    site = TasklessSite()
    site.add_resource(["waits"], Waits())
    net, server, client = await pair(site)
    try:
        uri = "coap://server/waits"
        response = await client.request(Message(code=Code.GET, uri=uri)).response
        assert (response.code, response.payload) == (Code.CONTENT, b"0 1")
        response = await client.request(Message(code=Code.POST, uri=uri)).response
        assert response.code == Code.INTERNAL_SERVER_ERROR
        response = await client.request(Message(code=Code.PUT, uri=uri)).response
        assert response.code == Code.INTERNAL_SERVER_ERROR
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_site_without_tasks_cancels_a_waiting_rendering_when_interest_ends():
    started, cancelled = asyncio.Event(), asyncio.Event()
    site = TasklessSite()
    site.add_resource(["waiting"], Waiting(started, cancelled))
    net, server, client = await pair(site)
    try:
        events = []
        pipe = _render_directly(server, ("waiting",), events)
        assert started.is_set()  # (its first step ran at once)
        assert events == []
        pipe.stop_interest()
        await asyncio.wait_for(cancelled.wait(), 1)
        assert events == []
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_site_without_tasks_and_a_rendering_that_raises_cancellation():
    """A rendering that raises CancelledError in its first step ends as a
    cancelled task would: no answer, nothing raised into the transport."""

    class Cancels(resource.Resource):
        async def render_get(self, request):
            raise asyncio.CancelledError()

    site = TasklessSite()
    site.add_resource(["cancels"], Cancels())
    net, server, client = await pair(site)
    try:
        events = []
        _render_directly(server, ("cancels",), events)
        await asyncio.sleep(0)
        assert events == []
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_sites_need_tasks_by_default():
    assert resource.Site().renders_without_task is False
    from aiocoap.cli.fileserver import FileServer

    assert FileServer.renders_without_task is True
