"""The multicast groups a server context joins, as the application names
them in the ``multicast`` argument of
:meth:`aiocoap.protocol.Context.create_server_context`.

:func:`multicast_groups` checks that argument and resolves it to
:class:`MulticastGroup` entries before any transport is loaded, so that a
mistake in it (an unknown interface, an address that is not a multicast
address, an entry of the wrong shape) is a ``ValueError`` naming the entry
when the context is created. The transports that can join groups (only
:mod:`.udp6`) get the result through
:attr:`aiocoap.transports.TransportSetup.multicast`; whether the kernel
accepts a group is only known when the transport joins it (see there).

Accepted entries, as in aiocoap 0.4.x:

* ``(address, interface name)``: join the multicast group ``address`` (IPv4
  or IPv6, without a zone) on that interface. Interfaces are selected by
  name only; the IPv4 style of selecting one by a local address is not
  supported.
* ``interface name`` alone: join all of :data:`aiocoap.numbers.constants.MCAST_ALL`
  on it, i.e. the All-CoAP-Nodes groups of IPv4 and of IPv6 with scopes 2
  and 5 (link-local and site-local), and IPv6's All-Nodes groups with the
  same scopes.

>>> groups = multicast_groups([("224.0.1.187", "lo"), ("FF02:0::FD", "lo")])
>>> [(g.address, g.interface) for g in groups]
[('224.0.1.187', 'lo'), ('ff02::fd', 'lo')]
>>> [g.address for g in multicast_groups(["lo"])]
['224.0.1.187', 'ff02::1', 'ff02::fd', 'ff05::1', 'ff05::fd']
>>> multicast_groups([("10.0.0.1", "lo")])
Traceback (most recent call last):
  ...
ValueError: multicast entry ('10.0.0.1', 'lo'): 10.0.0.1 is not a multicast address
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Iterable, Optional, Union

from ..numbers.constants import MCAST_ALL

__all__ = ["MulticastGroup", "MulticastSpec", "multicast_groups"]

MulticastSpec = Iterable[Union[str, tuple[str, str]]]
"""The type of the ``multicast`` argument: interface names and
``(address, interface name)`` tuples."""


@dataclass(frozen=True)
class MulticastGroup:
    """One group to join on one interface."""

    #: the group address in its normal text form (no zone)
    address: str
    #: the interface name as the application gave it
    interface: str
    #: the interface index the name stood for when the context was created
    index: int

    @property
    def is_ipv6(self) -> bool:
        """Whether this is an IPv6 group (else IPv4)."""
        return ":" in self.address


def _interface(entry: object, name: object) -> tuple[str, int]:
    """The name and index of the interface ``name``."""
    if not isinstance(name, str):
        raise ValueError(
            f"multicast entry {entry!r}: the interface must be given by its name (a string), not {name!r}"
        )
    try:
        return name, socket.if_nametoindex(name)
    except (OSError, ValueError):
        hint = ""
        try:
            ipaddress.ip_address(name)
            hint = " (interfaces are selected by name; selecting one by a local address is not supported)"
        except ValueError:
            pass
        raise ValueError(f"multicast entry {entry!r}: there is no network interface named {name!r}{hint}") from None


def _group_address(entry: object, address: object) -> str:
    if not isinstance(address, str):
        raise ValueError(f"multicast entry {entry!r}: the group address must be a string, not {address!r}")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"multicast entry {entry!r}: {address!r} is not an IP address") from None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.scope_id is not None:
        raise ValueError(
            f"multicast entry {entry!r}: give the interface as the second element of the tuple, not as a zone"
        )
    if not parsed.is_multicast:
        raise ValueError(f"multicast entry {entry!r}: {address} is not a multicast address")
    return str(parsed)


def multicast_groups(spec: Optional[MulticastSpec]) -> tuple[MulticastGroup, ...]:
    """The groups that the ``multicast`` argument ``spec`` (None or an
    iterable of the entries of the module documentation) asks for, in the
    order given and each once. Raises ValueError, naming the first entry
    that is not acceptable."""
    if spec is None:
        return ()
    if isinstance(spec, (str, bytes)):
        raise ValueError(
            f"multicast must be a list of interface names and (address, interface name) tuples, not {spec!r}"
        )
    groups: dict[tuple[str, int], MulticastGroup] = {}
    for entry in spec:
        pairs: Iterable[tuple[str, object]]
        if isinstance(entry, str):
            pairs = ((address, entry) for address in MCAST_ALL)
        elif isinstance(entry, (tuple, list)) and len(entry) == 2:
            pairs = ((_group_address(entry, entry[0]), entry[1]),)
        else:
            raise ValueError(
                f"multicast entry {entry!r} is neither an interface name nor an (address, interface name) tuple"
            )
        for address, interface_name in pairs:
            interface, index = _interface(entry, interface_name)
            groups.setdefault((address, index), MulticastGroup(address, interface, index))
    return tuple(groups.values())
