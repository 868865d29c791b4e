"""Name resolution that only returns addresses this host can reach.

``getaddrinfo`` with ``AI_ADDRCONFIG`` only asks for IPv6 addresses when
the host has some IPv6 address at all; it still returns a global IPv6
address to a host whose only IPv6 address is a link-local or ULA one, and
sending there fails with "network unreachable". :func:`getaddrinfo_routechecked`
asks the kernel whether there is a route (connecting a UDP socket sends
nothing) and leaves out what can not be reached.
"""

from __future__ import annotations

import errno
import socket
import asyncio
import logging
from typing import Any, AsyncIterator

__all__ = ["getaddrinfo_routechecked"]


def _routable(sockaddr: tuple[Any, ...]) -> bool:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as probe:
        try:
            probe.connect(sockaddr)
        except OSError as e:
            if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
                return False
            raise
    return True


async def getaddrinfo_routechecked(
    loop: asyncio.AbstractEventLoop, log: logging.Logger, host: str, port: int
) -> AsyncIterator[tuple[Any, ...]]:
    """Resolve ``host`` and yield the IPv6 socket addresses (IPv4 results
    as V4MAPPED ones, after the IPv6 results) of UDP port ``port`` that
    this host has a route to.

    Addresses given literally are yielded without a route check. When the
    lookup finds nothing (or nothing routable), :class:`socket.gaierror`
    is raised, as by getaddrinfo. Results of other address families are
    skipped with a debug message on ``log``.

    It is an asynchronous generator, so that the route of an address is
    only checked when the caller asks for it."""
    infos = await loop.getaddrinfo(
        host, port, family=socket.AF_UNSPEC, type=socket.SOCK_DGRAM,
        proto=socket.IPPROTO_UDP, flags=socket.AI_ADDRCONFIG,
    )
    v6: list[tuple[Any, ...]] = []
    v4: list[tuple[Any, ...]] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family == socket.AF_INET6:
            v6.append(sockaddr)
        elif family == socket.AF_INET:
            v4.append(("::ffff:" + str(sockaddr[0]), sockaddr[1], 0, 0))
        else:
            log.debug("Ignoring an address of family %r for %r", family, host)
    found = 0
    for sockaddr in v6 + v4:
        literal = sockaddr[0] == host or sockaddr[0] == "::ffff:" + host
        if not literal and not _routable(sockaddr):
            log.debug("No route to %r (an address of %r); skipping it", sockaddr[0], host)
            continue
        found += 1
        yield sockaddr
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, f"No routable address for {host!r}")
