"""A stand-in for the message layer, for tests of datagram transports."""

import asyncio

from aiocoap import interfaces


class FakeManager(interfaces.MessageManager):
    """Records what a transport hands to the message layer."""

    def __init__(self):
        self.datagrams: list = []
        self.errors: list = []
        self.sending = False
        self.reentrant_errors = 0
        self._changed = asyncio.Event()

    def dispatch_message(self, message):
        raise AssertionError("datagram transports hand up datagrams, not messages")

    def dispatch_datagram(self, data, remote):
        self.datagrams.append((data, remote))
        self._changed.set()

    def dispatch_error(self, exception, remote):
        if self.sending:
            self.reentrant_errors += 1
        self.errors.append((exception, remote))
        self._changed.set()

    async def wait_for(self, predicate, timeout=2.0):
        async def waiter():
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(waiter(), timeout)


class CountingRemote:
    """A remote that counts how often it is compared: the work an error for
    one remote causes, measured without timing anything."""

    is_multicast = False
    reliable_transport = False
    comparisons = 0

    def __init__(self, name):
        self.name = name

    def as_response_address(self):
        return self

    def __hash__(self):
        return hash(self.name)

    def __eq__(self, other):
        CountingRemote.comparisons += 1
        return isinstance(other, CountingRemote) and other.name == self.name
