"""A server-only UDP transport that works on any asyncio loop.

This module implements a MessageInterface for UDP based on the asyncio
DatagramProtocol.

This is a simple version that works only for servers bound to a single
unicast address. It provides a server backend in situations when
:mod:`.udp6` is unavailable and :mod:`.simple6` needs to be used for
clients.

While it is in theory capable of sending requests too, it should not be
used like that, because it won't receive ICMP errors (see below).

Shortcomings:

* This implementation does not receive ICMP errors. This violates the CoAP
  standard and can lead to unnecessary network traffic, bad user
  experience (when used for client requests) or even network attack
  amplification.
* Responses go out from whichever address the kernel picks; when bound to
  the unspecified address on a host with several addresses, that need not
  be the address the request was sent to.

Log levels: debug for socket errors (which can not be attributed to a
remote on an unconnected socket with plain asyncio transports).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any, Optional, Protocol, cast

from .. import defaults, interfaces
from ..numbers.constants import COAP_PORT
from ..util import hostportjoin
from .generic_udp import GenericMessageInterface, SockaddrAddress, resolve

if TYPE_CHECKING:
    from . import TransportEntry, TransportSetup

__all__ = ["MessageInterfaceSimpleServer", "SimpleServerEndpointAddress"]


def _plain(host: str) -> str:
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


class SimpleServerEndpointAddress(SockaddrAddress):
    """A peer of :class:`MessageInterfaceSimpleServer`, identified by its
    socket address."""

    scheme = "coap"
    is_multicast = False
    is_multicast_locally = False

    def __init__(self, sockaddr: tuple[Any, ...], interface: "MessageInterfaceSimpleServer"):
        self._set_peer(sockaddr, interface)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {hostportjoin(self.sockaddr[0], self.sockaddr[1])}>"

    def send_datagram(self, data: bytes) -> None:
        self.interface.sendto(data, self.sockaddr)

    @property
    def hostinfo(self) -> str:
        port = self.sockaddr[1]
        return hostportjoin(_plain(self.sockaddr[0]), None if port == COAP_PORT else port)

    @property
    def uri_base(self) -> str:
        return "coap://" + self.hostinfo

    @property
    def hostinfo_local(self) -> str:
        """The address the server is bound to (which is only meaningful if
        it was bound to a single address)."""
        host, port = self.interface.sockname[:2]
        return hostportjoin(_plain(host), None if port == COAP_PORT else port)

    @property
    def uri_base_local(self) -> str:
        return "coap://" + self.hostinfo_local


class _ClosingProtocol(Protocol):
    """What shutting down waits for on the protocol of the server's socket
    (this module's, or a subclass' own)."""

    closed: asyncio.Future[None]


class _ServerProtocol(asyncio.DatagramProtocol):
    def __init__(self, interface: "MessageInterfaceSimpleServer"):
        self.interface = interface
        self.closed = interface.loop.create_future()
        self._remotes: dict[tuple[Any, ...], SimpleServerEndpointAddress] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.interface.connected(cast(asyncio.DatagramTransport, transport))

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        remotes = self._remotes
        remote = remotes.get(addr)
        if remote is None:
            remote = SimpleServerEndpointAddress(addr, self.interface)
            if len(remotes) >= 512:
                del remotes[next(iter(remotes))]
            remotes[addr] = remote
        self.interface.message_manager.dispatch_datagram(data, remote)

    def error_received(self, exc: Exception) -> None:
        self.interface.log.debug("Socket error (not attributable to a remote): %s", exc)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._remotes.clear()
        if not self.closed.done():
            self.closed.set_result(None)


class MessageInterfaceSimpleServer(GenericMessageInterface):
    """The simplesocketserver transport; see the module documentation.
    Create it with :meth:`create_server`."""

    _transport: asyncio.DatagramTransport
    """Set by the protocol's connection_made, before the server is used."""

    def __init__(self, ctx: interfaces.MessageManager, log: logging.Logger, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(ctx, log, loop)
        self._protocol: Optional[_ClosingProtocol] = None
        self.sockname: tuple[Any, ...] = ("::", 0)
        """The address the socket is bound to (once it is)."""

    def connected(self, transport: asyncio.DatagramTransport) -> None:
        """The socket is up (called by its protocol's connection_made)."""
        self._transport = transport
        self.sockname = transport.get_extra_info("sockname")

    def sendto(self, data: bytes, sockaddr: tuple[Any, ...]) -> None:
        """Put a datagram on the wire (for this interface's addresses);
        raises OSError like the socket does."""
        self._transport.sendto(data, sockaddr)

    @classmethod
    async def create_server(
        cls,
        bind: Optional[tuple[Optional[str], Optional[int]]],
        ctx: interfaces.MessageManager,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
    ) -> "MessageInterfaceSimpleServer":
        """Create a server bound to ``bind``, a ``(host, port)`` tuple; host
        None (or ``::``) binds to all addresses (IPv6 and IPv4 if the
        platform allows, else IPv4 only), port None means 5683."""
        self = cls(ctx, log, loop)
        host, port = bind if bind is not None else (None, None)
        if port is None:
            port = COAP_PORT
        sock = await self._bound_socket(host, port)
        try:
            _, self._protocol = await loop.create_datagram_endpoint(lambda: _ServerProtocol(self), sock=sock)
        except BaseException:
            sock.close()
            raise
        return self

    async def _bound_socket(self, host: Optional[str], port: int) -> socket.socket:
        if host in (None, "", "::"):
            try:
                return self._socket(socket.AF_INET6, ("::", port, 0, 0), dualstack=True)
            except OSError as e:
                if host == "::":
                    raise
                self.log.debug("No IPv6 socket available (%s); serving IPv4 only", e)
                return self._socket(socket.AF_INET, ("0.0.0.0", port), dualstack=False)
        sockaddr = await resolve(self.loop, host, port, 0, flags=socket.AI_PASSIVE)
        family = socket.AF_INET6 if len(sockaddr) == 4 else socket.AF_INET
        return self._socket(family, sockaddr, dualstack=False)

    @staticmethod
    def _socket(family: int, sockaddr: tuple[Any, ...], *, dualstack: bool) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if defaults.has_reuse_port():
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if dualstack:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(sockaddr)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def recognize_remote(self, remote: interfaces.EndpointAddress) -> bool:
        return isinstance(remote, SimpleServerEndpointAddress) and remote.interface is self

    async def _make_remote(self, host: str, port: int) -> SimpleServerEndpointAddress:
        if len(self.sockname) == 4:
            sockaddr = await resolve(self.loop, host, port, socket.AF_INET6, flags=socket.AI_V4MAPPED)
        else:
            sockaddr = await resolve(self.loop, host, port, socket.AF_INET)
        return SimpleServerEndpointAddress(sockaddr, self)

    async def _close_sockets(self) -> None:
        protocol = self._protocol
        if protocol is not None:
            self._transport.close()
            await protocol.closed


async def load(entry: "TransportEntry", setup: "TransportSetup") -> None:
    """Attach this transport to a context (see :data:`aiocoap.transports.TRANSPORTS`)."""
    log, loop, bind = setup.log, setup.loop, setup.server_bind
    await setup.add_message_interface(
        lambda mm: MessageInterfaceSimpleServer.create_server(bind, mm, log, loop)
    )
