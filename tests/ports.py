"""Free ports on 127.0.0.1 for the tests that start real servers."""

import socket


def free_udp_port() -> int:
    """A port number that is free on 127.0.0.1 for UDP and for TCP (servers
    listen on both); taken from bind(0)"""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port is free for both UDP and TCP")
