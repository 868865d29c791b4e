"""Code shared by the UDP transports.

:class:`GenericMessageInterface` is not a transport by itself: it implements
everything of a :class:`aiocoap.interfaces.MessageInterface` between the
message layer and "some bound UDP sockets" (sending, finding the remote of
a request, shutting down), and leaves the sockets to its subclasses in
:mod:`.simple6` and :mod:`.simplesocketserver`.

The module also holds the host name handling every UDP transport (udp6
included) shares:

* IP literals (``127.0.0.1``, ``::1``, ``fe80::1%eth0``) never go to DNS;
* names under ``.invalid`` fail at once (RFC 6761 reserves them to never
  resolve), so that tests and typos need not wait for a DNS timeout;
* everything else goes through ``loop.getaddrinfo``, and failure is an
  :class:`aiocoap.error.ResolutionError` naming the host.

Rules: errors the OS reports for a send are handed to the message layer's
``dispatch_error`` in a later loop iteration, never from within ``send``
(the message layer may be in the middle of its bookkeeping then).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Optional

from .. import error, interfaces
from ..message import Message, UndecidedRemote
from ..numbers.constants import COAP_PORT
from ..util import hostportsplit

__all__ = ["GenericMessageInterface", "split_hostinfo", "coap_destination", "literal_sockaddr", "resolve"]

_V4MAPPED_PREFIX = "::ffff:"



class SockaddrAddress(interfaces.EndpointAddress):
    """Base of the UDP transports' peer addresses: a peer is identified by
    its socket address (without the IPv6 flow label, which is no part of
    its identity) and the interface it talks to; hash and equality use
    only those, so a local address or other details may differ."""

    __slots__ = ()

    def _set_peer(self, sockaddr: tuple[Any, ...], interface: Any) -> None:
        if len(sockaddr) == 4 and sockaddr[2]:
            sockaddr = (sockaddr[0], sockaddr[1], 0, sockaddr[3])
        self.sockaddr = sockaddr
        self.interface = interface
        self._hash = hash(sockaddr)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        # (No isinstance check first: this runs for most messages received.
        # Addresses of the same interface are of the same class.)
        try:
            return self.interface is other.interface and self.sockaddr == other.sockaddr  # type: ignore[attr-defined]
        except AttributeError:
            return NotImplemented


def split_hostinfo(hostinfo: str, default_port: int = COAP_PORT) -> "tuple[str, int]":
    """Split a URI authority into host and port (defaulting to 5683, or to
    ``default_port``); every transport parses authorities this way.

    >>> split_hostinfo('[::1]')
    ('::1', 5683)
    >>> split_hostinfo('example.com:61616')
    ('example.com', 61616)
    """
    try:
        host, port = hostportsplit(hostinfo)
    except ValueError as e:
        raise error.MalformedUrlError(f"Unusable host in {hostinfo!r}: {e}") from None
    if not host:
        raise error.IncompleteUrlError(f"No host given in {hostinfo!r}")
    return host, default_port if port is None else port


def coap_destination(request: Message) -> "Optional[tuple[str, int]]":
    """Host and port a request that has no EndpointAddress yet is to be
    sent to over coap:// (from its UndecidedRemote, or, if it has none, from
    its Uri-Host and Uri-Port options), or None if it is not for coap://."""
    remote = request.remote
    if remote is None:
        host = request.opt.uri_host
        if host is None:
            return None
        return host, request.opt.uri_port or COAP_PORT
    if remote.scheme != "coap":
        return None
    return split_hostinfo(remote.hostinfo)


def _zone_index(zone: str, host: str) -> int:
    if zone.isdigit():
        return int(zone)
    try:
        return socket.if_nametoindex(zone)
    except OSError:
        raise error.ResolutionError(f"Unknown network interface {zone!r} in address {host!r}") from None


def literal_sockaddr(host: str, port: int, family: int) -> Optional[tuple[Any, ...]]:
    """The socket address for an IP literal ``host`` (possibly with a
    ``%zone``), or None if ``host`` is not an IP literal.

    For ``family=socket.AF_INET6``, IPv4 literals become V4MAPPED
    addresses; for ``family=socket.AF_INET``, IPv6 literals raise
    :class:`aiocoap.error.ResolutionError`; ``family=0`` keeps the literal's
    own family. Addresses come out in the canonical form ``recvmsg`` reports
    them in, so they compare equal to those of received datagrams.

    >>> literal_sockaddr('127.0.0.1', 5683, socket.AF_INET6)
    ('::ffff:127.0.0.1', 5683, 0, 0)
    >>> literal_sockaddr('2001:DB8:0::1', 1234, socket.AF_INET6)
    ('2001:db8::1', 1234, 0, 0)
    >>> literal_sockaddr('example.com', 5683, socket.AF_INET6) is None
    True
    """
    address, _, zone = host.partition("%")
    try:
        packed = socket.inet_pton(socket.AF_INET6, address)
    except (OSError, ValueError):
        pass
    else:
        if family == socket.AF_INET:
            raise error.ResolutionError(f"Can not reach IPv6 address {host!r} over IPv4")
        scope = _zone_index(zone, host) if zone else 0
        return (socket.inet_ntop(socket.AF_INET6, packed), port, 0, scope)
    try:
        packed = socket.inet_pton(socket.AF_INET, address)
    except (OSError, ValueError):
        return None
    if zone:
        raise error.ResolutionError(f"IPv4 address {host!r} can not have a zone identifier")
    canonical = socket.inet_ntop(socket.AF_INET, packed)
    if family == socket.AF_INET6:
        return (_V4MAPPED_PREFIX + canonical, port, 0, 0)
    return (canonical, port)


def _is_invalid_name(host: str) -> bool:
    host = host.rstrip(".").lower()
    return host == "invalid" or host.endswith(".invalid")


async def resolve(
    loop: asyncio.AbstractEventLoop, host: str, port: int, family: int, *, flags: int = 0
) -> tuple[Any, ...]:
    """Find the socket address to send to ``host``/``port`` in ``family``
    (0 for any); see the module documentation for the rules.

    With ``family=socket.AF_INET6`` and ``flags=socket.AI_V4MAPPED``, IPv4
    results come as V4MAPPED addresses."""
    literal = literal_sockaddr(host, port, family)
    if literal is not None:
        return literal
    if _is_invalid_name(host):
        raise error.ResolutionError(
            f"No address information found for requests to {host!r}: "
            "names under .invalid never resolve (RFC 6761)"
        )
    try:
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM, flags=flags)
    except OSError as e:
        raise error.ResolutionError(
            f"No address information found for requests to {host!r}: {e.strerror or e}"
        ) from e
    except (UnicodeError, ValueError) as e:
        raise error.ResolutionError(f"Host name {host!r} can not be looked up: {e}") from e
    if not infos:
        raise error.ResolutionError(f"No address information found for requests to {host!r}")
    sockaddr: tuple[Any, ...] = infos[0][4]
    return sockaddr


class GenericMessageInterface(interfaces.MessageInterface):
    """Everything of a MessageInterface between the message layer and "some
    bound UDP sockets".

    Subclasses provide :meth:`recognize_remote`, ``_make_remote(host,
    port)`` (an awaitable giving the EndpointAddress for a host and port)
    and ``_close_sockets()`` (an awaitable that closes everything).
    Their addresses have a ``send_datagram(data)`` method that raises OSError on
    failure."""

    def __init__(self, ctx: interfaces.MessageManager, log: logging.Logger, loop: asyncio.AbstractEventLoop) -> None:
        self.message_manager = ctx
        """The message layer this interface reports to."""
        self.log = log
        self.loop = loop
        self._shut_down = False

    def send(self, message: Message) -> None:
        """Send a given Message object (to its ``remote``, which this
        interface created)."""
        self.send_bytes(message.encode(), message.remote)

    def send_bytes(self, data: bytes, remote: Any) -> None:
        """Send an encoded message to a remote of this interface."""
        if self._shut_down:
            return
        try:
            remote.send_datagram(data)
        except OSError as exc:
            self.loop.call_soon(self.report_error, exc, remote)

    def report_error(self, exc: Exception, remote: Any) -> None:
        """Hand an error for ``remote`` to the message layer (unless shut
        down); the transport's protocols call it soon rather than from
        within a send."""
        if not self._shut_down:
            self.message_manager.dispatch_error(exc, remote)

    async def determine_remote(self, request: Message) -> Optional[interfaces.EndpointAddress]:
        """Return a value suitable for the message's remote property based
        on its ``.remote`` (an UndecidedRemote of the coap scheme) or, if it
        has none, its ``.opt.uri_host`` and ``.opt.uri_port``.

        May return None, which indicates that the MessageInterface can not
        transport the message (typically because it is of the wrong
        scheme)."""
        remote = request.remote
        if remote is not None and not isinstance(remote, UndecidedRemote):
            return remote if self.recognize_remote(remote) else None
        destination = coap_destination(request)
        if destination is None:
            return None
        return await self._make_remote(*destination)

    async def _make_remote(self, host: str, port: int) -> interfaces.EndpointAddress:
        raise NotImplementedError

    async def _close_sockets(self) -> None:
        raise NotImplementedError

    async def shutdown(self) -> None:
        """Deactivate the complete transport, usually irrevertably. When the
        coroutine returns, the object must have made sure that it can be
        destructed by means of ref-counting or a garbage collector run."""
        if self._shut_down:
            return
        self._shut_down = True
        await self._close_sockets()
