"""CoAP over UDP on one dual-stack socket, with everything Linux offers.

This module implements a MessageInterface for UDP based on a variation of
the asyncio DatagramProtocol (:mod:`aiocoap.util.asyncio.recvmsg`). One
AF_INET6 socket bound to ``::`` with ``IPV6_V6ONLY`` off serves IPv6 and
(as V4MAPPED addresses) IPv4 peers, clients and servers, unicast and
multicast alike, even when the host has several interfaces and addresses.
For that it uses:

* ``AI_V4MAPPED`` to address IPv4 peers through the IPv6 socket;
* ``IPV6_RECVPKTINFO`` to learn the address a datagram was sent to (was it
  multicast? which of several addresses?), and ``IPV6_PKTINFO`` on sending
  to answer from that very address;
* ``IPV6_RECVERR`` and ``IP_RECVERR`` with ``MSG_ERRQUEUE`` reads, so that
  ICMP errors (port unreachable, host unreachable) reach the message layer
  right away, even though the socket is not connected. The kernel reports
  each error with the address the failed datagram was sent to; that address
  is the remote the error is dispatched for, and it compares equal to the
  remote the request was sent to (equality ignores the local-address info);
* ``IPV6_JOIN_GROUP`` / ``IP_ADD_MEMBERSHIP`` to join multicast groups on
  servers bound to the unspecified address: the All-CoAP-Nodes groups
  (224.0.1.187, ff02::fd, ff05::fd) on every interface that allows it, and
  the groups the application asked for with the ``multicast`` argument of
  :meth:`~aiocoap.protocol.Context.create_server_context` (checked by
  :mod:`.multicast` before the transport loads). A server bound to one
  address does not receive datagrams sent to groups, so it joins none.

Little is done to fall back to limited behaviour when any of these is
missing: :func:`aiocoap.defaults.get_default_clienttransports` picks the
:mod:`.simple6` / :mod:`.simplesocketserver` transports on platforms where
this one does not work.

Log levels: debug for ignored conditions (All-CoAP-Nodes groups that an
interface can not join, ICMP "packet too big", datagrams dropped for a full
send buffer); warning for socket errors that can not be attributed to any
remote, for every requested group the kernel refuses to join (once per
group and interface, when the server is created; the server runs without
it), and for requested groups on a server bound to a single address.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from collections import namedtuple
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, cast

from .. import defaults, error, interfaces
from ..message import Message, UndecidedRemote
from ..numbers.constants import (
    COAP_PORT,
    MCAST_IPV4_ALLCOAPNODES,
    MCAST_IPV6_LINKLOCAL_ALLCOAPNODES,
    MCAST_IPV6_SITELOCAL_ALLCOAPNODES,
)
from ..util import hostportjoin
from ..util import socknumbers as _sn
from ..util.asyncio.recvmsg import (
    RecvmsgDatagramProtocol,
    RecvmsgSelectorDatagramTransport,
    create_recvmsg_datagram_endpoint,
)
from .generic_udp import SockaddrAddress, coap_destination, resolve

if TYPE_CHECKING:
    from . import TransportEntry, TransportSetup
    from .multicast import MulticastGroup

__all__ = ["UDP6EndpointAddress", "InterfaceOnlyPktinfo", "SockExtendedErr", "MessageInterfaceUDP6"]

_SOL_IPV6 = _sn.SOL_IPV6
_IPV6_PKTINFO = _sn.IPV6_PKTINFO
_IPV6_RECVERR = _sn.IPV6_RECVERR
_SOL_IP = _sn.SOL_IP
_IP_RECVERR = _sn.IP_RECVERR

_V4MAPPED_PREFIX_BYTES = bytes(10) + b"\xff\xff"
_ANY_PKTINFO_ADDRESS6 = bytes(16)
_ANY_PKTINFO_ADDRESS4 = _V4MAPPED_PREFIX_BYTES + bytes(4)

ALL_COAP_NODES = (MCAST_IPV4_ALLCOAPNODES, MCAST_IPV6_LINKLOCAL_ALLCOAPNODES, MCAST_IPV6_SITELOCAL_ALLCOAPNODES)
"""The multicast groups a server bound to all addresses joins on every
interface (RFC 7252 Section 12.8)."""

_ADDRESS_CACHE_SIZE = 512
_RCVBUF_SIZE = 1 << 20


def _zone_name(scope_id: int) -> str:
    try:
        return socket.if_indextoname(scope_id)
    except OSError:
        return str(scope_id)


def _plain_host(host: str, scope_id: int) -> str:
    """The host part of a URI authority for an address: V4MAPPED as plain
    IPv4, link-local and the like with their zone."""
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    if scope_id:
        return f"{host}%{_zone_name(scope_id)}"
    return host


class InterfaceOnlyPktinfo(bytes):
    """An ``in6_pktinfo`` (as bytes) that selects only the outgoing
    interface and leaves the source address to the kernel. It is used
    like any other pktinfo of a :class:`UDP6EndpointAddress`; the type only
    makes it recognizable in debug output.

    >>> InterfaceOnlyPktinfo.for_interface(2)
    InterfaceOnlyPktinfo(interface 2)
    """

    @classmethod
    def for_interface(cls, index: int, *, ipv4: bool = False) -> "InterfaceOnlyPktinfo":
        """The pktinfo to send through the interface with that index (from
        the unspecified IPv4 address as V4MAPPED if ``ipv4``)."""
        return cls((_ANY_PKTINFO_ADDRESS4 if ipv4 else _ANY_PKTINFO_ADDRESS6) + struct.pack("@I", index))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(interface {struct.unpack_from('@I', self, 16)[0]})"


class UDP6EndpointAddress(SockaddrAddress):
    """Remote address type for :class:`MessageInterfaceUDP6`. Remote address
    is stored in form of a socket address; local address can be roundtripped
    by opaque pktinfo data.

    >>> interface = type("FakeMessageInterface", (), {})
    >>> local = UDP6EndpointAddress(socket.getaddrinfo('127.0.0.1', 5683, type=socket.SOCK_DGRAM, family=socket.AF_INET6, flags=socket.AI_V4MAPPED)[0][-1], interface)
    >>> local.is_multicast
    False
    >>> local.hostinfo
    '127.0.0.1'
    >>> all_coap_site = UDP6EndpointAddress(socket.getaddrinfo('ff05:0:0:0:0:0:0:fd', 1234, type=socket.SOCK_DGRAM, family=socket.AF_INET6)[0][-1], interface)
    >>> all_coap_site.is_multicast
    True
    >>> all_coap_site.hostinfo
    '[ff05::fd]:1234'
    >>> all_coap4 = UDP6EndpointAddress(socket.getaddrinfo('224.0.1.187', 5683, type=socket.SOCK_DGRAM, family=socket.AF_INET6, flags=socket.AI_V4MAPPED)[0][-1], interface)
    >>> all_coap4.is_multicast
    True

    Equality and hash consider the peer's socket address and the interface,
    not the local address (a response to a multicast request comes from
    another local address than the request went to, but belongs to the same
    exchange):

    >>> local == UDP6EndpointAddress(local.sockaddr, interface, pktinfo=bytes(20))
    True
    >>> local
    <UDP6EndpointAddress [::ffff:127.0.0.1]:5683>
    """

    __slots__ = ("sockaddr", "interface", "pktinfo", "_hash", "is_multicast_locally")

    scheme = "coap"
    is_multicast_locally: bool

    def __init__(
        self, sockaddr: tuple[Any, ...], interface: MessageInterfaceUDP6, *, pktinfo: Optional[bytes] = None
    ) -> None:
        self._set_peer(sockaddr, interface)
        self.pktinfo = pktinfo
        # True if the local address is a multicast address. (Fixed with the
        # local address, and read for every message sent: not a property.)
        self.is_multicast_locally = pktinfo is not None and (
            pktinfo[0] == 0xFF or pktinfo.startswith(_V4MAPPED_PREFIX_BYTES) and 224 <= pktinfo[12] <= 239
        )

    def __repr__(self) -> str:
        host, port, _, scope_id = self.sockaddr
        if scope_id:
            host = f"{host}%{_zone_name(scope_id)}"
        pktinfo = self.pktinfo
        if pktinfo is None:
            local = ""
        elif type(pktinfo) is InterfaceOnlyPktinfo:
            local = f" via interface {_zone_name(struct.unpack_from('@I', pktinfo, 16)[0])}"
        else:
            local = " with local address"
        return f"<{type(self).__name__} {hostportjoin(host, port)}{local}>"

    # --- the peer ---------------------------------------------------------

    @property
    def hostinfo(self) -> str:
        """The authority component of URIs that this endpoint represents
        when requests are sent to it (IPv4 peers without V4MAPPED
        decoration, the port left out if it is the default one)."""
        host, port, _, scope_id = self.sockaddr
        return hostportjoin(_plain_host(host, scope_id), None if port == COAP_PORT else port)

    @property
    def netif(self) -> Optional[str]:
        """The name of the network interface of a link-local peer (the zone
        of its address, as given in a URI or reported for an incoming
        message), or None where the address has no zone."""
        scope_id = self.sockaddr[3]
        return _zone_name(scope_id) if scope_id else None

    @property
    def uri_base(self) -> str:
        """The base URI for the peer (``coap://`` plus :attr:`hostinfo`)."""
        return "coap://" + self.hostinfo

    @property
    def is_multicast(self) -> bool:
        """True if the remote address is a multicast address, otherwise
        false."""
        host = self.sockaddr[0]
        if host.startswith("::ffff:") and "." in host:
            first_octet = int(host[7:].split(".", 1)[0])
            return 224 <= first_octet <= 239
        return bool(host.startswith("ff"))

    # --- the local side ----------------------------------------------------

    def _local_address(self) -> "tuple[bytes, int]":
        if self.pktinfo is None:
            raise error.AnonymousHost(
                "The local address is only known for messages received by the udp6 transport"
            )
        return self.pktinfo[:16], struct.unpack_from("@I", self.pktinfo, 16)[0]

    @property
    def hostinfo_local(self) -> str:
        """The authority component of URIs that this endpoint represents
        when requests are sent from it: the address the datagram was
        received at, with the port of the socket.

        Raises :class:`aiocoap.error.AnonymousHost` on addresses of
        outgoing requests (whose local address is up to the kernel)."""
        packed, ifindex = self._local_address()
        if packed.startswith(_V4MAPPED_PREFIX_BYTES):
            host = socket.inet_ntop(socket.AF_INET, packed[12:])
        else:
            host = socket.inet_ntop(socket.AF_INET6, packed)
            link_local = packed[0] == 0xFE and packed[1] & 0xC0 == 0x80
            link_local_group = packed[0] == 0xFF and packed[1] & 0x0F == 0x02
            if ifindex and (link_local or link_local_group):
                host = f"{host}%{_zone_name(ifindex)}"
        port = self.interface.local_port
        return hostportjoin(host, None if port == COAP_PORT else port)

    @property
    def uri_base_local(self) -> str:
        """The base URI for the local side of this remote (``coap://`` plus
        :attr:`hostinfo_local`)."""
        return "coap://" + self.hostinfo_local

    def as_response_address(self) -> "UDP6EndpointAddress":
        """Address to be assigned to a response to messages that arrived
        with this message.

        For a request that was sent to a multicast address, the response
        goes out from a unicast address of the receiving interface that the
        kernel picks (a response must not come from a multicast address).
        Otherwise, this is the address itself."""
        pktinfo = self.pktinfo
        if pktinfo is None or not self.is_multicast_locally:
            return self
        any_address = _ANY_PKTINFO_ADDRESS4 if pktinfo.startswith(_V4MAPPED_PREFIX_BYTES) else _ANY_PKTINFO_ADDRESS6
        return type(self)(self.sockaddr, self.interface, pktinfo=InterfaceOnlyPktinfo(any_address + pktinfo[16:]))


_SockExtendedErr = namedtuple(
    "_SockExtendedErr", "ee_errno ee_origin ee_type ee_code ee_pad ee_info ee_data"
)


class SockExtendedErr(_SockExtendedErr):
    """A Linux ``struct sock_extended_err``, as found in the ancillary data
    of error queue entries (``IPV6_RECVERR`` / ``IP_RECVERR``).

    >>> SockExtendedErr.load(bytes([111, 0, 0, 0, 3, 1, 4, 0]) + bytes(8))
    SockExtendedErr(ee_errno=111, ee_origin=3, ee_type=1, ee_code=4, ee_pad=0, ee_info=0, ee_data=0)
    """

    __slots__ = ()
    _struct = struct.Struct("@IBBBBII")

    @classmethod
    def load(cls, data: bytes) -> "SockExtendedErr":
        """Parse the structure from the start of ``data`` (the offender
        address that follows it is ignored)."""
        return cls(*cls._struct.unpack_from(data))


def _join_group(sock: socket.socket, group: str, ifindex: int) -> None:
    """Make the dual-stack ``sock`` a member of the IPv4 or IPv6 multicast
    group ``group`` on the interface with index ``ifindex``."""
    if ":" in group:
        mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", ifindex)
        sock.setsockopt(_SOL_IPV6, _sn.IPV6_JOIN_GROUP, mreq)
    else:
        # struct ip_mreqn: group, local address (any), interface index
        mreqn = socket.inet_pton(socket.AF_INET, group) + bytes(4) + struct.pack("@i", ifindex)
        sock.setsockopt(_SOL_IP, _sn.IP_ADD_MEMBERSHIP, mreqn)


def _configure_socket(sock: socket.socket) -> None:
    sock.setsockopt(_SOL_IPV6, _sn.IPV6_V6ONLY, 0)
    sock.setsockopt(_SOL_IPV6, _sn.IPV6_RECVPKTINFO, 1)
    sock.setsockopt(_SOL_IPV6, _IPV6_RECVERR, 1)
    # ICMP errors for IPv4 traffic on the dual-stack socket are reported
    # only if the IPv4 flag is set too.
    sock.setsockopt(_SOL_IP, _IP_RECVERR, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_SIZE)
    except OSError:
        pass


class MessageInterfaceUDP6(RecvmsgDatagramProtocol, interfaces.MessageInterface):
    """The udp6 transport; see the module documentation.

    Create it with :meth:`create_client_transport_endpoint` or
    :meth:`create_server_transport_endpoint`."""

    ready: "Optional[asyncio.Future[bool]]" = None
    """Future that gets fulfilled by ``connection_made`` (ie. don't send
    before this is done; handled by ``create_..._context``)"""

    def __init__(self, ctx: interfaces.MessageManager, log: logging.Logger, loop: asyncio.AbstractEventLoop) -> None:
        self._message_manager = ctx
        self.log = log
        self.loop = loop
        self._transport: Optional[RecvmsgSelectorDatagramTransport] = None
        self.local_port: Optional[int] = None
        """The port the socket is bound to (once it is)."""
        self._sendmsg: Optional[Callable[..., int]] = None
        self._addresses: dict[tuple[Any, ...], UDP6EndpointAddress] = {}
        self.ready = loop.create_future()
        self._closed = loop.create_future()

    # --- creation ------------------------------------------------------------

    @classmethod
    async def _create_transport_endpoint(
        cls,
        sock: socket.socket,
        ctx: interfaces.MessageManager,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        *,
        join_multicast: bool,
        multicast: Sequence[MulticastGroup] = (),
    ) -> MessageInterfaceUDP6:
        transport, protocol = await create_recvmsg_datagram_endpoint(
            loop, lambda: cls(ctx, log, loop), sock, errqueue=True, log=log
        )
        if protocol.ready is not None:
            await protocol.ready
        if join_multicast:
            protocol._join_groups(sock, multicast)
        return protocol

    @classmethod
    async def create_client_transport_endpoint(
        cls, ctx: interfaces.MessageManager, log: logging.Logger, loop: asyncio.AbstractEventLoop
    ) -> "MessageInterfaceUDP6":
        """A transport on a socket with an ephemeral port, for sending
        requests (it answers requests too, but joins no groups)."""
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            _configure_socket(sock)
            sock.bind(("::", 0))
        except BaseException:
            sock.close()
            raise
        return await cls._create_transport_endpoint(sock, ctx, log, loop, join_multicast=False)

    @classmethod
    async def create_server_transport_endpoint(
        cls,
        ctx: interfaces.MessageManager,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        bind: Optional[tuple[Optional[str], Optional[int]]],
        multicast: Sequence[MulticastGroup] = (),
    ) -> "MessageInterfaceUDP6":
        """A transport bound to ``bind``, a ``(host, port)`` tuple: host None
        or ``::`` for all addresses (then the All-CoAP-Nodes groups and the
        ``multicast`` groups are joined too), port None for 5683."""
        host, port = bind if bind is not None else (None, None)
        if port is None:
            port = COAP_PORT
        if host in (None, "", "::"):
            sockaddr: tuple[Any, ...] = ("::", port, 0, 0)
            join_multicast = True
        else:
            sockaddr = await resolve(loop, host, port, socket.AF_INET6, flags=socket.AI_V4MAPPED | socket.AI_PASSIVE)
            join_multicast = False
            if multicast:
                log.warning(
                    "Not joining the requested multicast groups: the server is bound to %s only, which does not "
                    "receive datagrams sent to groups (bind to the unspecified address '::' to serve multicast)",
                    host,
                )
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if defaults.has_reuse_port():
                # several servers (worker processes) may share the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            _configure_socket(sock)
            sock.bind(sockaddr)
        except BaseException:
            sock.close()
            raise
        return await cls._create_transport_endpoint(
            sock, ctx, log, loop, join_multicast=join_multicast, multicast=multicast
        )

    def _join_groups(self, sock: socket.socket, requested: Sequence[MulticastGroup]) -> None:
        """Join the All-CoAP-Nodes groups on every interface and the
        ``requested`` groups, each group once per interface. Refusals are
        logged (see the module documentation for the levels); the server
        runs without the groups it could not join."""
        # (group, interface index) -> (interface name, whether requested)
        joins: dict[tuple[str, int], tuple[str, bool]] = {}
        try:
            interfaces_ = socket.if_nameindex()
        except OSError as e:
            self.log.debug("Could not list network interfaces to join multicast groups: %s", e)
            interfaces_ = []
        for ifindex, ifname in interfaces_:
            for group in ALL_COAP_NODES:
                joins[(group, ifindex)] = (ifname, False)
        for requested_group in requested:
            joins[(requested_group.address, requested_group.index)] = (requested_group.interface, True)
        for (group, ifindex), (ifname, is_requested) in joins.items():
            try:
                _join_group(sock, group, ifindex)
            except OSError as e:
                self.log.log(
                    logging.WARNING if is_requested else logging.DEBUG,
                    "Could not join multicast group %s on interface %s: %s", group, ifname, e,
                )

    # --- the asyncio protocol side ----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Implementation of the DatagramProtocol interface, called by the
        transport."""
        self._transport = cast(RecvmsgSelectorDatagramTransport, transport)
        self.local_port = transport.get_extra_info("sockname")[1]
        # (the first attempt of every send goes to the socket directly, as
        # the transport's send_failed documents; see send_bytes)
        self._sendmsg = transport.get_extra_info("socket").sendmsg
        ready = self.ready
        if ready is not None and not ready.done():
            ready.set_result(True)

    def datagram_msg_received(
        self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, address: tuple[Any, ...]
    ) -> None:
        """Implementation of the RecvmsgDatagramProtocol interface, called
        by the transport."""
        pktinfo = None
        for level, kind, value in ancdata:
            if kind == _IPV6_PKTINFO and level == _SOL_IPV6:
                pktinfo = value
        key = (address, pktinfo)
        addresses = self._addresses
        remote = addresses.get(key)
        if remote is None:
            remote = UDP6EndpointAddress(address, self, pktinfo=pktinfo)
            if len(addresses) >= _ADDRESS_CACHE_SIZE:
                del addresses[next(iter(addresses))]
            addresses[key] = remote
        self._message_manager.dispatch_datagram(data, remote)

    def datagram_errqueue_received(
        self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, address: tuple[Any, ...]
    ) -> None:
        """Called when some data is received from the error queue: an ICMP
        error (or a local one) for a datagram sent to ``address``."""
        for level, kind, value in ancdata:
            if not ((level == _SOL_IPV6 and kind == _IPV6_RECVERR) or (level == _SOL_IP and kind == _IP_RECVERR)):
                continue
            err = SockExtendedErr.load(value)
            if err.ee_errno == errno.EMSGSIZE:
                # Path MTU discovery: the kernel has learned the smaller MTU
                # and fragments the retransmission accordingly.
                self.log.debug("Path MTU to %s is smaller than a datagram sent (%r)", address, err)
                continue
            exc = OSError(err.ee_errno, os.strerror(err.ee_errno))
            self._message_manager.dispatch_error(exc, UDP6EndpointAddress(address, self))

    def error_received(self, exc: Exception) -> None:
        """Implementation of the DatagramProtocol interface, called by the
        transport for errors that came without details in the error
        queue."""
        self.log.warning("Socket error that can not be attributed to a remote: %s", exc)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        """Called when the connection is lost or closed.

        The argument is an exception object or None (the latter meaning a
        regular EOF is received or the connection was aborted or closed)."""
        self._addresses.clear()
        self._sendmsg = None
        if not self._closed.done():
            self._closed.set_result(None)

    # --- the MessageInterface side -----------------------------------------

    def send(self, message: Message) -> None:
        """Send a given Message object"""
        self.send_bytes(message.encode(), cast(UDP6EndpointAddress, message.remote))

    def send_bytes(self, data: bytes, remote: UDP6EndpointAddress) -> None:
        """Send an encoded message to a remote of this interface (the message
        layer's path: it has the bytes already)."""
        sendmsg = self._sendmsg
        if sendmsg is None:
            self.log.debug("Dropping datagram to %r: the transport is not open", remote)
            return
        pktinfo = remote.pktinfo
        ancdata = () if pktinfo is None else [(_SOL_IPV6, _IPV6_PKTINFO, pktinfo)]
        try:
            try:
                # (transport.sendmsg, without its checks and calls: this is
                # the path of every datagram sent)
                sendmsg((data,), ancdata, 0, remote.sockaddr)
            except OSError as first:
                assert self._transport is not None
                self._transport.send_failed(first, data, ancdata, 0, remote.sockaddr)
        except OSError as exc:
            self.loop.call_soon(self._dispatch_send_error, exc, remote)

    def _dispatch_send_error(self, exc: Exception, remote: UDP6EndpointAddress) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._message_manager.dispatch_error(exc, remote)

    def recognize_remote(self, remote: interfaces.EndpointAddress) -> bool:
        return isinstance(remote, UDP6EndpointAddress) and remote.interface is self

    async def determine_remote(self, request: Message) -> Optional[UDP6EndpointAddress]:
        """Return a value suitable for the message's remote property based
        on its ``.remote`` (an address of this transport, or an
        UndecidedRemote of the coap scheme) or, if it has none,
        ``.opt.uri_host``.

        May return None, which indicates that the MessageInterface can not
        transport the message (typically because it is of the wrong
        scheme)."""
        remote = request.remote
        if remote is not None and not isinstance(remote, UndecidedRemote):
            return cast(UDP6EndpointAddress, remote) if self.recognize_remote(remote) else None
        destination = coap_destination(request)
        if destination is None:
            return None
        host, port = destination
        sockaddr = await resolve(self.loop, host, port, socket.AF_INET6, flags=socket.AI_V4MAPPED)
        return UDP6EndpointAddress(sockaddr, self)

    async def shutdown(self) -> None:
        """Deactivate the complete transport, usually irrevertably. When the
        coroutine returns, the object must have made sure that it can be
        destructed by means of ref-counting or a garbage collector run."""
        if self._transport is None:
            return
        self._sendmsg = None
        self._transport.close()
        await self._closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on port {self.local_port}>"


async def load(entry: "TransportEntry", setup: "TransportSetup") -> None:
    """Attach this transport to a context (see :data:`aiocoap.transports.TRANSPORTS`)."""
    log, loop = setup.log, setup.loop
    if setup.server_bind is None:
        await setup.add_message_interface(
            lambda mm: MessageInterfaceUDP6.create_client_transport_endpoint(mm, log, loop)
        )
    else:
        bind, multicast = setup.server_bind, setup.multicast
        await setup.add_message_interface(
            lambda mm: MessageInterfaceUDP6.create_server_transport_endpoint(mm, log, loop, bind, multicast)
        )
