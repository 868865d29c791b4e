"""Numeric socket constants that the :mod:`socket` module does not expose.

The udp6 transport needs a handful of Linux socket options and flags
(``IPV6_RECVERR``, ``MSG_ERRQUEUE``, the ``SO_EE_ORIGIN_*`` values of
``struct sock_extended_err``, ...) that Python's :mod:`socket` module only
exposes on some versions and platforms. Each name here is taken from
:mod:`socket` when it is there and otherwise falls back to the value from
the Linux UAPI headers (``<linux/in6.h>``, ``<linux/in.h>``,
``<linux/errqueue.h>``, ``<linux/socket.h>``).

The fallbacks are only meaningful on Linux; code that uses them on other
platforms has to expect ``setsockopt`` to fail, which is how
:func:`aiocoap.defaults.get_default_clienttransports` finds out whether the
udp6 transport can be used at all.
"""

from __future__ import annotations

import socket as _socket
import sys as _sys

__all__ = [
    "SOL_IP", "SOL_IPV6", "IPV6_RECVERR", "IP_RECVERR", "IPV6_PKTINFO",
    "IPV6_RECVPKTINFO", "IP_PKTINFO", "IPV6_V6ONLY", "IPV6_JOIN_GROUP",
    "IPV6_LEAVE_GROUP", "IPV6_MULTICAST_IF", "IPV6_MULTICAST_LOOP",
    "IP_ADD_MEMBERSHIP", "IP_DROP_MEMBERSHIP", "IP_MULTICAST_IF",
    "IP_MULTICAST_LOOP", "MSG_ERRQUEUE", "SO_EE_ORIGIN_NONE",
    "SO_EE_ORIGIN_LOCAL", "SO_EE_ORIGIN_ICMP", "SO_EE_ORIGIN_ICMP6",
    "HAS_RECVERR",
]


def _get(name: str, linux_value: int) -> int:
    return int(getattr(_socket, name, linux_value))


SOL_IP = _get("SOL_IP", 0)
SOL_IPV6 = _get("IPPROTO_IPV6", 41)
"""The option level of IPv6 socket options (Linux calls it SOL_IPV6; Python
only has IPPROTO_IPV6, which has the same value)."""

IPV6_RECVERR = _get("IPV6_RECVERR", 25)
IP_RECVERR = _get("IP_RECVERR", 11)
IPV6_PKTINFO = _get("IPV6_PKTINFO", 50)
IPV6_RECVPKTINFO = _get("IPV6_RECVPKTINFO", 49)
IP_PKTINFO = _get("IP_PKTINFO", 8)
IPV6_V6ONLY = _get("IPV6_V6ONLY", 26)
IPV6_JOIN_GROUP = _get("IPV6_JOIN_GROUP", 20)
IPV6_LEAVE_GROUP = _get("IPV6_LEAVE_GROUP", 21)
IPV6_MULTICAST_IF = _get("IPV6_MULTICAST_IF", 17)
IPV6_MULTICAST_LOOP = _get("IPV6_MULTICAST_LOOP", 19)
IP_ADD_MEMBERSHIP = _get("IP_ADD_MEMBERSHIP", 35)
IP_DROP_MEMBERSHIP = _get("IP_DROP_MEMBERSHIP", 36)
IP_MULTICAST_IF = _get("IP_MULTICAST_IF", 32)
IP_MULTICAST_LOOP = _get("IP_MULTICAST_LOOP", 34)

MSG_ERRQUEUE = _get("MSG_ERRQUEUE", 0x2000)

# Values of sock_extended_err.ee_origin (<linux/errqueue.h>)
SO_EE_ORIGIN_NONE = _get("SO_EE_ORIGIN_NONE", 0)
SO_EE_ORIGIN_LOCAL = _get("SO_EE_ORIGIN_LOCAL", 1)
SO_EE_ORIGIN_ICMP = _get("SO_EE_ORIGIN_ICMP", 2)
SO_EE_ORIGIN_ICMP6 = _get("SO_EE_ORIGIN_ICMP6", 3)

HAS_RECVERR = _sys.platform.startswith("linux") or (
    hasattr(_socket, "IP_RECVERR") and hasattr(_socket, "MSG_ERRQUEUE")
)
"""Whether the platform reports ICMP errors through the socket error queue
(``IPV6_RECVERR`` / ``IP_RECVERR`` with ``recvmsg(..., MSG_ERRQUEUE)``), so
that the values above are more than fallbacks."""
