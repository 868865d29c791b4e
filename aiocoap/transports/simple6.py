"""A client-only UDP transport that works on any asyncio loop.

This module implements a MessageInterface for UDP based on the asyncio
DatagramProtocol.

This is a simple version that works only for clients (by creating a
dedicated unbound but connected socket for each communication partner) and
probably not with multicast (it is assumed to be unsafe for multicast),
which can be expected to work even on platforms where the :mod:`.udp6`
module can not be made to work (Android, OSX, Windows for missing
``recvmsg`` and socket options, or any event loops that don't have an
``add_reader`` method).

Nothing in it is IPv6 specific despite the name: each socket has the
address family of the first address the peer's name resolves to.

Because a connected socket only talks to one peer, remotes are identified
by the name and port they were requested with, not by IP literals: a
response from ``coap://localhost`` appears to come from ``localhost``.

Rules:

* At most :data:`MAX_SOCKETS` sockets are open; opening another one closes
  the least recently used. An address whose socket was closed keeps
  working: the next message to it opens a socket anew (to the address it
  was resolved to before).
* ICMP errors arrive on a connected socket as errors of its reads and
  writes; they are dispatched to the message layer for that socket's
  remote, always from a loop iteration of their own.

Log levels: debug for sockets opened and closed.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Optional, cast

from .. import error, interfaces
from ..numbers.constants import COAP_PORT
from ..util import hostportjoin
from .generic_udp import GenericMessageInterface, resolve

if TYPE_CHECKING:
    from . import TransportEntry, TransportSetup

__all__ = ["MessageInterfaceSimple6", "Simple6EndpointAddress", "MAX_SOCKETS"]

MAX_SOCKETS = 64
"""How many connected sockets (peers) are kept open at most."""


class Simple6EndpointAddress(interfaces.EndpointAddress):
    """A peer of :class:`MessageInterfaceSimple6`: the host and port it was
    requested with, and the socket address that resolved to.

    Two addresses are equal if they name the same host and port on the same
    interface."""

    scheme = "coap"

    def __init__(self, host: str, port: int, sockaddr: tuple[Any, ...], interface: "MessageInterfaceSimple6"):
        self._host = host
        self._port = port
        self.sockaddr = sockaddr
        self.interface = interface
        self.peer_key = (host, port)
        """(host, port) as requested: what the interface keys its sockets by."""
        self._hash = hash(self.peer_key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Simple6EndpointAddress):
            return NotImplemented
        return self.peer_key == other.peer_key and self.interface is other.interface

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {hostportjoin(self._host, self._port)}>"

    def send_datagram(self, data: bytes) -> None:
        self.interface.send_to(self, data)

    @property
    def hostinfo(self) -> str:
        """The host and port the peer was requested with (the port left
        out if it is the default one)."""
        return hostportjoin(self._host, None if self._port == COAP_PORT else self._port)

    @property
    def uri_base(self) -> str:
        return "coap://" + self.hostinfo

    @property
    def hostinfo_local(self) -> str:
        """The local address and port of the socket that talks to this
        peer.

        Raises :class:`aiocoap.error.AnonymousHost` while no socket is
        open."""
        sockname = self.interface.sockname_towards(self)
        if sockname is None:
            raise error.AnonymousHost("No socket is open towards this peer")
        host = sockname[0]
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        return hostportjoin(host, sockname[1])

    @property
    def uri_base_local(self) -> str:
        return "coap://" + self.hostinfo_local

    @property
    def is_multicast(self) -> bool:
        try:
            return ipaddress.ip_address(self.sockaddr[0].partition("%")[0]).is_multicast
        except ValueError:
            return False

    is_multicast_locally = False


class _PeerProtocol(asyncio.DatagramProtocol):
    """The protocol of one connected socket."""

    transport: asyncio.DatagramTransport
    """Set by connection_made, before the protocol is used."""

    def __init__(self, interface: "MessageInterfaceSimple6", remote: Simple6EndpointAddress):
        self.interface = interface
        self.remote = remote
        self.closed = interface.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.interface.message_manager.dispatch_datagram(data, self.remote)

    def error_received(self, exc: Exception) -> None:
        # asyncio calls this from within sendto() too; never re-enter the
        # message layer from its own send call.
        self.interface.loop.call_soon(self.interface.report_error, exc, self.remote)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.interface.socket_closed(self)
        if not self.closed.done():
            self.closed.set_result(None)


class MessageInterfaceSimple6(GenericMessageInterface):
    """The simple6 transport; see the module documentation. Create it with
    :meth:`create_client_transport_endpoint`."""

    def __init__(self, ctx: interfaces.MessageManager, log: logging.Logger, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(ctx, log, loop)
        # (host, port) -> _PeerProtocol, least recently used first
        self._sockets: "OrderedDict[tuple[Any, ...], _PeerProtocol]" = OrderedDict()
        # (host, port) -> task opening a socket
        self._opening: "dict[tuple[Any, ...], asyncio.Task[_PeerProtocol]]" = {}
        # (host, port) -> datagrams waiting for a socket being reopened
        self._waiting: "dict[tuple[Any, ...], list[bytes]]" = {}
        self._all_protocols: "set[_PeerProtocol]" = set()

    @classmethod
    async def create_client_transport_endpoint(
        cls, ctx: interfaces.MessageManager, log: logging.Logger, loop: asyncio.AbstractEventLoop
    ) -> "MessageInterfaceSimple6":
        """Create the transport; sockets are only opened when requests are
        sent."""
        return cls(ctx, log, loop)

    def recognize_remote(self, remote: interfaces.EndpointAddress) -> bool:
        return isinstance(remote, Simple6EndpointAddress) and remote.interface is self

    async def _make_remote(self, host: str, port: int) -> Simple6EndpointAddress:
        key = (host, port)
        existing = self._sockets.get(key)
        if existing is not None:
            self._sockets.move_to_end(key)
            return existing.remote
        sockaddr = await resolve(self.loop, host, port, 0)
        remote = Simple6EndpointAddress(host, port, sockaddr, self)
        try:
            protocol = await self._connect(remote)
        except OSError as e:
            raise error.NetworkError(f"Can not send to {remote.hostinfo}: {e}") from e
        return protocol.remote

    # --- the socket pool ------------------------------------------------------

    async def _connect(self, remote: Simple6EndpointAddress) -> _PeerProtocol:
        """The open socket to ``remote``, opening one if needed; concurrent
        calls for the same peer share one socket."""
        return await asyncio.shield(self._start_opening(remote))

    def _start_opening(self, remote: Simple6EndpointAddress) -> asyncio.Task[_PeerProtocol]:
        task = self._opening.get(remote.peer_key)
        if task is None:
            task = self.loop.create_task(self._open(remote))
            self._opening[remote.peer_key] = task
            task.add_done_callback(functools.partial(self._opened, remote))
        return task

    async def _open(self, remote: Simple6EndpointAddress) -> _PeerProtocol:
        if self._shut_down:
            raise error.LibraryShutdown("The transport was shut down")
        existing = self._sockets.get(remote.peer_key)
        if existing is not None:
            return existing
        family = socket.AF_INET6 if len(remote.sockaddr) == 4 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(remote.sockaddr)
            _, protocol = await self.loop.create_datagram_endpoint(
                lambda: _PeerProtocol(self, remote), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        self._all_protocols.add(protocol)
        if self._shut_down:
            protocol.transport.close()
            raise error.LibraryShutdown("The transport was shut down")
        self._sockets[remote.peer_key] = protocol
        self.log.debug("Opened socket for %r", remote)
        while len(self._sockets) > MAX_SOCKETS:
            _, oldest = self._sockets.popitem(last=False)
            self.log.debug("Closing least recently used socket for %r", oldest.remote)
            oldest.transport.close()
        return protocol

    def _opened(self, remote: Simple6EndpointAddress, task: asyncio.Task[_PeerProtocol]) -> None:
        del self._opening[remote.peer_key]
        waiting = self._waiting.pop(remote.peer_key, ())
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if waiting and isinstance(exc, Exception):
                self.report_error(exc, remote)
            return
        protocol = task.result()
        for data in waiting:
            self._send_on(protocol, data)

    def socket_closed(self, protocol: _PeerProtocol) -> None:
        """A peer's socket closed (called by its protocol)."""
        self._all_protocols.discard(protocol)
        key = protocol.remote.peer_key
        if self._sockets.get(key) is protocol:
            del self._sockets[key]

    def sockname_towards(self, remote: Simple6EndpointAddress) -> Optional[tuple[Any, ...]]:
        """The local address of the socket open towards ``remote`` (None
        while there is none)."""
        protocol = self._sockets.get(remote.peer_key)
        if protocol is None:
            return None
        sockname: tuple[Any, ...] = protocol.transport.get_extra_info("sockname")
        return sockname

    # --- sending -------------------------------------------------------------

    def send_to(self, remote: Simple6EndpointAddress, data: bytes) -> None:
        """Send a datagram to one of this interface's addresses (opening its
        socket first if needed)."""
        key = remote.peer_key
        protocol = self._sockets.get(key)
        if protocol is not None:
            self._sockets.move_to_end(key)
            self._send_on(protocol, data)
            return
        if self._shut_down:
            return
        # The socket was closed to make room for others: open it again.
        self._waiting.setdefault(key, []).append(data)
        self._start_opening(remote)

    @staticmethod
    def _send_on(protocol: _PeerProtocol, data: bytes) -> None:
        # Errors are reported by the asyncio transport to error_received.
        protocol.transport.sendto(data)

    async def _close_sockets(self) -> None:
        opening = list(self._opening.values())
        for task in opening:
            task.cancel()
        if opening:
            await asyncio.gather(*opening, return_exceptions=True)
        self._waiting.clear()
        protocols = list(self._all_protocols)
        for protocol in protocols:
            protocol.transport.close()
        if protocols:
            await asyncio.gather(*(p.closed for p in protocols))
        self._sockets.clear()



async def load(entry: "TransportEntry", setup: "TransportSetup") -> None:
    """Attach this transport to a context (see :data:`aiocoap.transports.TRANSPORTS`)."""
    log, loop = setup.log, setup.loop
    await setup.add_message_interface(
        lambda mm: MessageInterfaceSimple6.create_client_transport_endpoint(mm, log, loop)
    )
