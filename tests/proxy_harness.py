"""Upstream servers, proxies and clients on loopback for the proxy tests.

* :func:`upstream` serves an :class:`Origin` site (resources that count
  what reaches them) over UDP and TCP on 127.0.0.1.
* :func:`proxy_server` runs a proxy resource in a server context (UDP and
  TCP) with its own outgoing client context.
* :func:`client` is a client context that is shut down on exit.

Ports come from the OS (bind to port 0, then reused for UDP and TCP); every
context is shut down when its ``async with`` block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Optional

from aiocoap import resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.protocol import Context
from interop.conftest import free_port  # noqa: F401  (also used by the tests)

QUICK = TransportTuning(ACK_TIMEOUT=0.1, MAX_RETRANSMIT=2, EMPTY_ACK_DELAY=0.02, REQUEST_TIMEOUT=0.5)

BIG = b"".join(b"%05d-abcdefghijklmnopqrstuvwxyz\n" % i for i in range(400))  # 13 KB

SERVER_TRANSPORTS = ["udp6", "tcpserver", "tcpclient"]
CLIENT_TRANSPORTS = ["udp6", "tcpclient"]


class Counter(resource.Resource):
    """GET answers ``n=<count>`` with the configured Max-Age."""

    def __init__(self, max_age: Optional[int] = 60) -> None:
        super().__init__()
        self.gets = 0
        self.max_age = max_age
        self.last_request: Optional[Message] = None

    async def render_get(self, request):
        self.gets += 1
        self.last_request = request
        return Message(payload=b"n=%d" % self.gets, max_age=self.max_age)

    async def render_fetch(self, request):
        self.gets += 1
        return Message(payload=request.payload.upper(), max_age=self.max_age)


class Tagged(resource.Resource):
    """A representation with an ETag and a short Max-Age; counts full and
    2.03 answers."""

    def __init__(self) -> None:
        super().__init__()
        self.etag = b"v1"
        self.body = b"version 1"
        self.full = 0
        self.valid = 0
        self.max_age = 1

    async def render_get(self, request):
        if self.etag in request.opt.etags:
            self.valid += 1
            return Message(code=Code.VALID, etag=self.etag, max_age=self.max_age)
        self.full += 1
        return Message(payload=self.body, etag=self.etag, max_age=self.max_age)


class Store(resource.Resource):
    """GET returns the stored payload (Max-Age 60); PUT, POST and DELETE
    change it."""

    def __init__(self) -> None:
        super().__init__()
        self.value = b"initial"
        self.gets = 0

    async def render_get(self, request):
        self.gets += 1
        return Message(payload=self.value, max_age=60)

    async def render_put(self, request):
        self.value = request.payload
        return Message(code=Code.CHANGED)

    async def render_post(self, request):
        self.value += request.payload
        return Message(code=Code.CREATED, location_path=["store", "new"])

    async def render_delete(self, request):
        self.value = b""
        return Message(code=Code.DELETED)


class Observed(resource.ObservableResource):
    """An observable value; ``observers`` is the number of observations
    currently registered here."""

    def __init__(self) -> None:
        super().__init__()
        self.value = 0
        self.observers = 0
        self.registrations = 0

    def update_observation_count(self, newcount):
        if newcount > self.observers:
            self.registrations += 1
        self.observers = newcount

    def change(self) -> None:
        self.value += 1
        self.updated_state()

    async def render_get(self, request):
        return Message(payload=b"value %d" % self.value, max_age=60)


class Big(resource.Resource):
    def __init__(self) -> None:
        super().__init__()
        self.uploaded = b""

    async def render_get(self, request):
        return Message(payload=BIG)

    async def render_put(self, request):
        self.uploaded = request.payload
        return Message(code=Code.CHANGED, payload=b"%d" % len(request.payload))


class Slow(resource.Resource):
    """Never answers (until the test ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = 0

    async def render_get(self, request):
        self.started += 1
        await asyncio.sleep(3600)
        return Message()


class Echo(resource.Resource):
    """Answers with what the request looked like (options the proxy
    changes)."""

    async def render_get(self, request):
        return Message(
            payload=repr((request.opt.uri_host, request.opt.hop_limit)).encode(),
            max_age=0,
        )


class Many(resource.Resource, resource.PathCapable):
    """Any path below it is a resource of its own (``/many/<anything>``)."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def render_get(self, request):
        self.gets += 1
        return Message(payload=("/".join(request.opt.uri_path)).encode() * 4, max_age=60)


class Origin(resource.Site):
    def __init__(self) -> None:
        super().__init__()
        self.counter = Counter()
        self.uncached = Counter(max_age=0)
        self.tagged = Tagged()
        self.store = Store()
        self.observed = Observed()
        self.big = Big()
        self.slow = Slow()
        self.add_resource(["counter"], self.counter)
        self.add_resource(["uncached"], self.uncached)
        self.add_resource(["tagged"], self.tagged)
        self.add_resource(["store"], self.store)
        self.add_resource(["obs"], self.observed)
        self.add_resource(["big"], self.big)
        self.add_resource(["slow"], self.slow)
        self.add_resource(["echo"], Echo())
        self.many = Many()
        self.add_resource(["many"], self.many)


@contextlib.asynccontextmanager
async def serving(site, transports=SERVER_TRANSPORTS, tuning: TransportTuning = QUICK) -> AsyncIterator[tuple]:
    """A server context for ``site`` on 127.0.0.1; yields (context, port)."""
    last: Optional[Exception] = None
    for _ in range(5):
        port = free_port()
        try:
            context = await Context.create_server_context(
                site, bind=("127.0.0.1", port), transports=transports, transport_tuning=tuning
            )
        except OSError as e:
            last = e
            continue
        try:
            yield context, port
        finally:
            await context.shutdown()
        return
    raise RuntimeError(f"could not bind: {last}")


@contextlib.asynccontextmanager
async def upstream(transports=SERVER_TRANSPORTS) -> AsyncIterator[tuple]:
    """Yields (origin site, port)."""
    origin = Origin()
    async with serving(origin, transports) as (_, port):
        yield origin, port


@contextlib.asynccontextmanager
async def client(tuning: TransportTuning = QUICK, transports=CLIENT_TRANSPORTS) -> AsyncIterator[Context]:
    context = await Context.create_client_context(transports=transports, transport_tuning=tuning)
    try:
        yield context
    finally:
        await context.shutdown()


@contextlib.asynccontextmanager
async def proxy_server(factory, *, configure=None, outgoing_tuning: TransportTuning = QUICK, **kwargs) -> AsyncIterator[tuple]:
    """A proxy made by ``factory(outgoing_context, **kwargs)`` serving on
    127.0.0.1; ``configure(proxy)`` runs before it serves. Yields (proxy,
    port)."""
    async with client(outgoing_tuning) as outgoing:
        proxy = factory(outgoing, **kwargs)
        if configure is not None:
            configure(proxy)
        async with serving(proxy) as (_, port):
            yield proxy, port
