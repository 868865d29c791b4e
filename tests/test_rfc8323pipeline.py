"""A window of requests over one RFC 8323 stream connection keeps both
peers busy at once (issue 21), shown on a virtual clock.

Two single-threaded peers, each modelled as an event loop: an iteration
reads everything that has arrived, hands it to a real
:class:`~aiocoap.transports.rfc8323session.RFC8323Session`, spends a fixed
virtual time on each message it delivered (the server answers, the client
issues its next request), and writes through a real
:class:`~aiocoap.transports.rfc8323session.WriteBatcher` as the TCP
adapter does: full chunks at once, the rest at the end of the iteration.
The peers run in parallel (two cores) and the link has no delay.

When an iteration's frames are all joined into one write, the whole window
travels as one batch and the peers take turns: N requests take N x (client
cost + server cost). With chunked writes the peer starts on the first
chunk while the rest is still being produced, and N requests take about N x
the larger of the two costs. Real figures: benchmarks/README.md, "CoAP over
TCP".
"""

from __future__ import annotations

import logging
import math

import pytest

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.transports import rfc8323common as rfc
from aiocoap.transports.rfc8323session import RFC8323Session, StreamFramer, WriteBatcher

from test_rfc8323session import Remote

log = logging.getLogger("test-rfc8323pipeline")

ITERATION = 5.0  # virtual time of one event loop iteration's own work
SYSCALL = 3.0  # virtual time of one socket write
UNBOUNDED = dict(max_frames=math.inf, max_bytes=math.inf)


class Peer:
    """One side: a session, a write batcher and a virtual event loop."""

    def __init__(self, name: str, cost: float, client: bool, batcher: WriteBatcher) -> None:
        self.name = name
        self.cost = cost
        self.batcher = batcher
        self.inbox: list[tuple[float, bytes]] = []  # (arrival time, bytes)
        self.clock = 0.0
        self.free_at = 0.0
        self.busy = 0.0
        self.writes: list[int] = []  # bytes of each socket write
        self.work: list[Message] = []
        self.peer: Peer
        self.session = RFC8323Session(
            framer=StreamFramer(),
            write=self._write,
            backlog=lambda: self.batcher.bytes,
            deliver_request=self.work.append,
            deliver_response=self._deliver_response,
            remote=Remote(name, local_is_server=not client),
            log=log,
            idle_close=client,
        )

    def _deliver_response(self, message: Message) -> bool:
        self.work.append(message)
        return True

    def _write(self, frame: bytes) -> None:
        chunk = self.batcher.add(frame)
        if chunk is not None:
            self._send(chunk)

    def _send(self, chunk: bytes) -> None:
        self.clock += SYSCALL
        self.writes.append(len(chunk))
        self.peer.inbox.append((self.clock, chunk))

    def next_start(self) -> float:
        if not self.inbox:
            return math.inf
        return max(self.free_at, self.inbox[0][0])

    def iterate(self, start: float) -> None:
        """One event loop iteration: read what arrived by ``start``, handle
        each message, write the rest at the end."""
        self.clock = start + ITERATION
        arrived = [data for at, data in self.inbox if at <= start]
        del self.inbox[: len(arrived)]
        self.session.receive_data(b"".join(arrived), self.clock)
        work, self.work[:] = list(self.work), []
        for message in work:
            self.clock += self.cost
            self.handle(message)
        chunk = self.batcher.take()
        if chunk is not None:
            self._send(chunk)
        self.busy += self.clock - start
        self.free_at = self.clock

    def handle(self, message: Message) -> None:
        raise NotImplementedError


class Server(Peer):
    def handle(self, request: Message) -> None:
        response = Message(code=Code.CONTENT, _token=request.token, payload=b"Hello from the benchmark resource")
        self.session.send(response, self.clock)


class Client(Peer):
    def __init__(self, *args, total: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.total = total
        self.sent = 0
        self.completed = 0
        self.finished_at: float = math.nan

    def request(self) -> None:
        self.sent += 1
        message = Message(code=Code.GET, _token=self.sent.to_bytes(4, "big"), uri_path=["bench"])
        assert self.session.send(message, self.clock)

    def handle(self, response: Message) -> None:
        assert response.code == Code.CONTENT
        self.session.request_done(response.token, self.clock)
        self.completed += 1
        if self.completed == self.total:
            self.finished_at = self.clock
        elif self.sent < self.total:
            self.request()


def run(window: int, total: int, client_cost: float, server_cost: float, **limits) -> tuple[Client, Server]:
    """Run ``total`` requests with ``window`` in flight; returns both
    peers when the last response was handled."""
    client = Client("client", client_cost, True, WriteBatcher(**limits), total=total)
    server = Server("server", server_cost, False, WriteBatcher(**limits))
    client.peer, server.peer = server, client
    # First iteration of each: the CSM, and the client's application
    # opening its window (queued by the session until the server's CSM).
    server.session.start(0.0)
    server.iterate(0.0)
    client.session.start(0.0)
    for _ in range(window):
        client.request()
    client.iterate(0.0)
    while client.completed < total:
        peer = min((client, server), key=Peer.next_start)
        start = peer.next_start()
        assert start < math.inf, "both peers wait: requests were lost"
        peer.iterate(start)
    return client, server


COSTS = [
    pytest.param(45.0, 25.0, id="client-heavier"),
    pytest.param(30.0, 30.0, id="balanced"),
    pytest.param(20.0, 40.0, id="server-heavier"),
]


@pytest.mark.parametrize("client_cost, server_cost", COSTS)
def test_unbounded_batching_makes_the_peers_take_turns(client_cost, server_cost):
    """The failure mode: everything of an iteration in one write. The
    window of 100 moves as one batch and no request is ever worked on by
    both peers at once: the time is the sum of both costs."""
    total = 2000
    client, server = run(100, total, client_cost, server_cost, **UNBOUNDED)
    assert client.finished_at >= total * (client_cost + server_cost)
    # Every write of the server, after its CSM, carries the whole window.
    assert set(server.writes[1:]) == {server.writes[1]}
    assert len(server.writes) == 1 + total // 100


@pytest.mark.parametrize("client_cost, server_cost", COSTS)
@pytest.mark.parametrize("window", [32, 100, 1000])
def test_chunked_writes_keep_both_peers_busy(window, client_cost, server_cost):
    """With the batcher's default chunks, the slower peer is never left
    waiting: N requests take about N x its cost (the two peers work in
    parallel), at a few socket writes per window."""
    total = 20 * window
    client, server = run(window, total, client_cost, server_cost)
    bottleneck = max(client_cost, server_cost)
    assert client.finished_at <= total * bottleneck * 1.15
    slower = client if client_cost >= server_cost else server
    assert slower.busy >= client.finished_at * 0.85
    # Chunking costs few extra writes: at most one per 16 frames plus one
    # per iteration.
    for peer in (client, server):
        assert len(peer.writes) <= total / 16 + total / 2


def test_one_request_in_flight_is_not_delayed():
    """A lone request: one write each way, nothing waits for a chunk to
    fill."""
    client, server = run(1, 10, 40.0, 20.0)
    assert client.writes[1:] and len(client.writes) == 1 + 10
    assert client.finished_at == pytest.approx(10 * (40 + 20 + 2 * (ITERATION + SYSCALL)) + ITERATION + SYSCALL, rel=0.01)


# --- the batcher alone ---------------------------------------------------------------


def test_batcher_joins_until_the_iteration_ends():
    batcher = WriteBatcher()
    assert batcher.take() is None
    assert batcher.add(b"ab") is None
    assert batcher.add(b"cd") is None
    assert batcher.bytes == 4
    assert batcher.take() == b"abcd"
    assert batcher.bytes == 0 and batcher.take() is None


def test_batcher_hands_out_full_chunks():
    batcher = WriteBatcher(max_frames=3, max_bytes=100)
    assert [batcher.add(bytes([i])) for i in range(7)] == [None, None, b"\x00\x01\x02", None, None, b"\x03\x04\x05", None]
    assert batcher.take() == b"\x06"
    assert batcher.add(b"x" * 60) is None
    assert batcher.add(b"y" * 40) == b"x" * 60 + b"y" * 40


def test_batcher_passes_a_large_frame_alone_without_copying():
    batcher = WriteBatcher()
    frame = bytes(1 << 20)
    assert batcher.add(frame) is frame
    assert batcher.bytes == 0


def test_batcher_clear_drops_everything():
    batcher = WriteBatcher()
    batcher.add(b"abc")
    batcher.clear()
    assert batcher.bytes == 0 and batcher.take() is None
