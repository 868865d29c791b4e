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
    """Send, and return the answer with the same message ID and token."""
    sock.send(datagram)
    request = Message.decode(datagram)
    while True:
        answer = sock.recv(2048)
        response = Message.decode(answer)
        if (response.mid, response.token) == (request.mid, request.token):
            return answer


def _payload(answer: bytes) -> bytes:
    return Message.decode(answer).payload


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
            answer = _udp_exchange(sock, _request(random.getrandbits(16), random.randbytes(4)))
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
            original = _request(random.getrandbits(16), random.randbytes(4), Code.POST)
            first = _udp_exchange(sock, original)
            again = _udp_exchange(sock, original)
            assert again == first
            pid, renders = _payload(first).split()
            follow_up = _udp_exchange(
                sock, _request((struct.unpack("!H", original[2:4])[0] + 1) & 0xFFFF, random.randbytes(4))
            )
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


def test_one_worker_ending_stops_the_group():
    import signal

    group = ServerWorkers(make_site, (HOST, 0), 2, transports=["udp6"])
    group.start()
    first, second = group.pids
    os.kill(first, signal.SIGKILL)
    assert group.wait() == -signal.SIGKILL
    assert group.pids == []
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)


def test_serve_until_sigterm(tmp_path):
    """serve() in a program of its own: SIGTERM ends it (status 0) and its
    workers."""
    import signal
    import subprocess
    import sys
    import time

    program = (
        "import sys, test_workers\n"
        "from aiocoap.workers import serve\n"
        f"sys.exit(serve(test_workers.make_site, ({HOST!r}, 0), 2, transports=['udp6']))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__)] + sys.path))
    process = subprocess.Popen([sys.executable, "-c", program], env=env)
    try:
        deadline = time.monotonic() + TIMEOUT
        children: list = []
        while len(children) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            with open(f"/proc/{process.pid}/task/{process.pid}/children") as f:
                children = f.read().split()
        assert len(children) == 2
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
        for child in children:
            with pytest.raises(ProcessLookupError):
                os.kill(int(child), 0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
