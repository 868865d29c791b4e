"""Several server processes on one port (aiocoap.workers, SO_REUSEPORT):
both workers serve, a client's retransmission reaches the worker that
answered the original, TCP connections are spread too, and the platform
switch AIOCOAP_REUSE_PORT is honoured. Clients are raw sockets, so what
is tested is what the kernel and the workers do with datagrams and
connections."""

from __future__ import annotations

import os
import random
import socket
import struct

import pytest

from aiocoap import defaults, resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.transports import rfc8323common as rfc8323
from aiocoap.workers import ServerWorkers, WorkersError

HOST = "127.0.0.1"
TIMEOUT = 10.0

pytestmark = pytest.mark.skipif(not defaults.has_reuse_port(use_env=False), reason="needs SO_REUSEPORT")


class Who(resource.Resource):
    """Answers with the worker's process ID and how often it rendered."""

    def __init__(self):
        super().__init__()
        self.renders = 0

    async def render_get(self, request):
        self.renders += 1
        return Message(payload=f"{os.getpid()} {self.renders}".encode())

    async def render_post(self, request):
        return await self.render_get(request)


def make_site():
    site = resource.Site()
    site.add_resource(["who"], Who())
    return site


def _request(mid: int, token: bytes, code: int = Code.GET) -> bytes:
    # CON, Uri-Path "who"
    return struct.pack("!BBH", 0x40 | len(token), code, mid) + token + b"\xb3who"


def _udp_exchange(sock: socket.socket, datagram: bytes) -> bytes:
    sock.send(datagram)
    while True:
        answer = sock.recv(2048)
        if answer[2:4] == datagram[2:4]:
            return answer


def _payload(answer: bytes) -> bytes:
    return answer.split(b"\xff", 1)[1]


@pytest.fixture(scope="module")
def workers():
    group = ServerWorkers(make_site, (HOST, 0), 2, transports=["udp6", "tcpserver"])
    with group:
        yield group


def test_two_workers_both_serve_udp(workers):
    assert len(set(workers.pids)) == 2
    seen = set()
    # 40 source ports: that all land on one worker has probability 2**-39
    for _ in range(40):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect((HOST, workers.port))
            answer = _udp_exchange(sock, _request(random.getrandbits(16), b"\x01"))
            assert answer[1] == Code.CONTENT
            seen.add(int(_payload(answer).split()[0]))
    assert seen == set(workers.pids)


def test_retransmission_reaches_the_same_worker(workers):
    """The kernel hashes the 4-tuple, so a retransmitted CON POST reaches
    the worker that processed the original, whose deduplication answers
    it again without rendering it a second time."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect((HOST, workers.port))
            original = _request(random.getrandbits(16), b"\x02\x03", Code.POST)
            first = _udp_exchange(sock, original)
            again = _udp_exchange(sock, original)
            assert again == first
            pid, renders = _payload(first).split()
            follow_up = _udp_exchange(sock, _request((struct.unpack("!H", original[2:4])[0] + 1) & 0xFFFF, b"\x04"))
            assert _payload(follow_up).split()[0] == pid
            assert int(_payload(follow_up).split()[1]) > int(renders)


def _tcp_who(port: int) -> int:
    """Open a connection, exchange CSMs, GET /who; the answering pid."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        sock.sendall(rfc8323.encode_message(rfc8323.CSM().to_message()))
        sock.sendall(rfc8323.encode_message(Message(code=Code.GET, token=b"\x07", uri_path=["who"])))
        parser = rfc8323.StreamParser()
        while True:
            data = sock.recv(4096)
            assert data, "connection closed before the response"
            for message in parser.feed(data):
                if message.code == Code.CONTENT:
                    return int(message.payload.split()[0])


def test_tcp_connections_are_spread(workers):
    seen = {_tcp_who(workers.port) for _ in range(32)}
    assert seen == set(workers.pids)


def test_a_failing_worker_fails_the_start():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        # a socket without SO_REUSEPORT keeps the workers from binding
        taken.bind((HOST, 0))
        group = ServerWorkers(make_site, (HOST, taken.getsockname()[1]), 2, transports=["udp6"])
        with pytest.raises(WorkersError, match="Worker . failed: .*Address already in use"):
            group.start()
        assert group.pids == []


def test_workers_need_reuse_port(monkeypatch):
    monkeypatch.setenv("AIOCOAP_REUSE_PORT", "0")
    with pytest.raises(WorkersError, match="SO_REUSEPORT"):
        ServerWorkers(make_site, (HOST, 0), 2)
    # one worker is just a server in a process of its own
    ServerWorkers(make_site, (HOST, 0), 1)


def test_has_reuse_port(monkeypatch):
    monkeypatch.delenv("AIOCOAP_REUSE_PORT", raising=False)
    assert defaults.has_reuse_port() is hasattr(socket, "SO_REUSEPORT")
    monkeypatch.setenv("AIOCOAP_REUSE_PORT", "0")
    assert defaults.has_reuse_port() is False
    assert defaults.has_reuse_port(use_env=False) is hasattr(socket, "SO_REUSEPORT")
    monkeypatch.setenv("AIOCOAP_REUSE_PORT", "1")
    assert defaults.has_reuse_port() is True
    monkeypatch.setenv("AIOCOAP_REUSE_PORT", "yes")
    with pytest.raises(ValueError, match="AIOCOAP_REUSE_PORT"):
        defaults.has_reuse_port()
