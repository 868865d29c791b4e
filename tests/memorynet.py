"""An in-memory datagram network for Context-level tests: transports that
pass bytes between contexts in the same event loop, optionally losing or
duplicating them. Addresses are names like ``"server"``; URIs use them as
hosts (``coap://server/path``)."""

from __future__ import annotations

import random

from aiocoap import interfaces
from aiocoap.message import UndecidedRemote
from aiocoap.protocol import Context


class MemoryAddress(interfaces.EndpointAddress):
    def __init__(self, name, interface, multicast=False):
        self.name = name
        self.interface = interface
        self._multicast = multicast

    def __repr__(self):
        return f"<MemoryAddress {self.name}>"

    def __hash__(self):
        return hash(self.name)

    def __eq__(self, other):
        return isinstance(other, MemoryAddress) and other.name == self.name

    hostinfo = property(lambda self: self.name)
    hostinfo_local = property(lambda self: self.interface.name)
    uri_base = property(lambda self: "coap://" + self.name)
    uri_base_local = property(lambda self: "coap://" + self.interface.name)
    is_multicast = property(lambda self: self._multicast)
    is_multicast_locally = False
    scheme = "coap"


class MemoryInterface(interfaces.MessageInterface):
    def __init__(self, manager, net, name, loop):
        self.manager = manager
        self.net = net
        self.name = name
        self.loop = loop
        net.interfaces[name] = self

    def __repr__(self):
        return f"<MemoryInterface {self.name}>"

    def send_bytes(self, data, remote):
        self.net.transmit(self.name, data, remote.name)

    def send(self, message):
        self.send_bytes(message.encode(), message.remote)

    def recognize_remote(self, remote):
        return isinstance(remote, MemoryAddress) and remote.interface is self

    async def determine_remote(self, message):
        target = message.remote
        if isinstance(target, UndecidedRemote) and target.scheme == "coap":
            return MemoryAddress(target.hostinfo, self)
        return None

    async def shutdown(self):
        self.net.interfaces.pop(self.name, None)


class MemoryNet:
    def __init__(self, loop, seed=0):
        self.loop = loop
        self.interfaces = {}
        self.rng = random.Random(seed)
        self.loss = 0.0
        self.duplicate = 0.0
        self.drop = None  # optional predicate (source, data, destination)
        self.log = []  # (source, destination, data) of every transmission

    def transmit(self, source, data, destination):
        self.log.append((source, destination, data))
        if self.drop is not None and self.drop(source, data, destination):
            return
        if self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            self.loop.call_soon(self._deliver, source, data, destination)

    def _deliver(self, source, data, destination):
        target = self.interfaces.get(destination)
        if target is None:
            return
        target.manager.dispatch_datagram(data, MemoryAddress(source, target))

    async def context(self, name, site=None, **kwargs) -> Context:
        ctx = Context(loop=self.loop, serversite=site, loggername=f"coap-{name}", **kwargs)
        await ctx._add_message_interface(lambda mm: _make(mm, self, name, self.loop))
        return ctx


async def _make(manager, net, name, loop):
    return MemoryInterface(manager, net, name, loop)
