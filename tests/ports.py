"""Free ports on 127.0.0.1 for the tests that start real servers."""

import socket


# A server bound to port P also listens for CoAP over WebSockets on P + 3000
# (and P + 3001 with TLS); see aiocoap.transports.ws.
_WEBSOCKET_PORTS = (3000, 3001)


def _tcp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        try:
            tcp.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_udp_port() -> int:
    """A port number that is free on 127.0.0.1 for UDP and for TCP (servers
    listen on both), with the WebSocket ports that go with it free too;
    taken from bind(0)"""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            if _tcp_free(port) and all(
                port + offset > 0xFFFF or _tcp_free(port + offset) for offset in _WEBSOCKET_PORTS
            ):
                return port
    raise RuntimeError("no port is free for both UDP and TCP")
