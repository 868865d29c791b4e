"""Free ports on loopback for the tests that start real servers.

A port taken from ``bind(0)`` and released again comes from the kernel's
ephemeral range, the same range every client socket of every parallel test
worker draws its local port from: between the probe and the server's bind,
an outgoing connection can take it (CI saw ``EADDRINUSE`` that way). So the
ports handed out here come from below the ephemeral range, and each pytest
worker (``PYTEST_XDIST_WORKER``) draws from its own block of it, which
leaves only processes outside the test run to collide with; the port is
still probed before it is handed out.

A server bound to port P listens on P (UDP, TCP), P + 1 (DTLS, TLS; see
aiocoap.transports.SECURE_PORT_OFFSET) and P + 3000 / P + 3001 (CoAP over
WebSockets, plain and TLS; see aiocoap.transports.ws). The base ports are
the even numbers of bands 3000 wide, each followed by the 3002 ports their
neighbours fall in, so none of those neighbours is another test's base
port.
"""

import os
import random
import socket

# Offsets from a server's base port to the other ports it listens on.
_NEIGHBOURS = (0, 1, 3000, 3001)
_BAND = 3000
_FIRST_BAND = 2000
_BANDS = 5  # up to 32010, below the usual ephemeral range (32768 on Linux)
_REGION = [
    port
    for start in range(_FIRST_BAND, _FIRST_BAND + _BANDS * (2 * _BAND + 2), 2 * _BAND + 2)
    for port in range(start, start + _BAND, 2)
]
_EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


def _ephemeral_low() -> int:
    try:
        with open(_EPHEMERAL_RANGE) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # the Linux default


def _worker_block() -> list[int]:
    """This pytest worker's share of the base ports."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = len(_REGION) // max(count, 1)
    return _REGION[index * size : (index + 1) * size]


def _free(family: int, host: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(family, kind) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


def _free_from_kernel(family: int, host: str) -> int:
    """The fallback where the ephemeral range starts too low for the
    reserved region: whatever bind(0) gives that is free for TCP too."""
    for _ in range(100):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
        if _free(family, host, port):
            return port
    raise RuntimeError(f"no port is free for both UDP and TCP on {host}")


_block = _worker_block()
_next = random.randrange(len(_block)) if _block else 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port number that is free on ``host`` for UDP and TCP, with the
    secure and WebSocket ports that go with it free too (see the module
    docstring for where it comes from)."""
    global _next
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not _block or _REGION[-1] + max(_NEIGHBOURS) >= _ephemeral_low():
        return _free_from_kernel(family, host)
    for _ in range(len(_block)):
        port = _block[_next % len(_block)]
        _next += 1
        if all(_free(family, host, port + offset) for offset in _NEIGHBOURS):
            return port
    raise RuntimeError(f"none of the {len(_block)} ports from {_block[0]} is free on {host}")


def free_udp_port() -> int:
    """A free base port on 127.0.0.1 (the name most tests know it by)."""
    return free_port("127.0.0.1")
