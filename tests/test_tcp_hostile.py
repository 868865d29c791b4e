"""The caps of a TCP server against hostile clients (issue 20, weaknesses 1
and 5), driven from raw sockets on loopback with short tuning: idle
connections time out, one host can not hold all connections, idle ones make
room for new clients, incomplete messages can not pin unbounded memory or
trickle forever, and none of it floods the log.

The policy itself is tested on a virtual clock in
tests/test_rfc8323hostile.py and tests/test_connectiontable.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

import pytest

from aiocoap import resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.transports import rfc8323common as rfc

from test_tcp import FAST, TIMEOUT, RawPeer, csm, encode, make_site, tcp_server

pytestmark = pytest.mark.core


class Hang(resource.Resource):
    """Answers only once ``release`` is set: keeps requests in flight."""

    def __init__(self):
        super().__init__()
        self.release = asyncio.Event()

    async def render_get(self, request):
        await self.release.wait()
        return Message(payload=b"done")


def site_with_hang():
    site = make_site()
    site.hang = Hang()
    site.add_resource(["hang"], site.hang)
    return site


def tuned(**changes):
    return dataclasses.replace(FAST, **{"csm_timeout": 2.0, "frame_timeout": 2.0, **changes})


async def open_peer(port, *, ready=True):
    """A raw client that sent its CSM and read the server's."""
    peer = await RawPeer.connect(port)
    if ready:
        peer.send(csm())
        first = await peer.receive()
        assert first.code == Code.CSM
    return peer


async def get(peer, token, path):
    peer.send(encode(Message(code=Code.GET, _token=token, uri_path=[path])))


async def closed(peer, timeout=TIMEOUT):
    """The messages the server sent until it closed the connection."""
    return await peer.receive_until_closed(timeout)


async def still_open(peer, wait):
    """True if the server neither wrote nor closed within ``wait`` s."""
    try:
        await peer.receive(wait)
    except asyncio.TimeoutError:
        return True
    except (EOFError, ConnectionError):
        return False
    return True


async def busy_peers(port, count, opened):
    """``count`` raw clients, each with a request to /hang in flight."""
    busy = [await open_peer(port) for _ in range(count)]
    opened.extend(busy)
    for i, peer in enumerate(busy):
        await get(peer, bytes([i]), "hang")
    await asyncio.sleep(0.05)
    return busy


async def refused_messages(port, opened):
    """What the server sent a new raw client before closing on it."""
    refused = await open_peer(port, ready=False)
    opened.append(refused)
    return await closed(refused)


@contextlib.asynccontextmanager
async def peers():
    opened: list[RawPeer] = []
    try:
        yield opened
    finally:
        for peer in opened:
            await peer.close()


# --- idle connections ---------------------------------------------------------------


async def test_idle_server_connection_is_closed():
    async with tcp_server(tuning=tuned(server_idle_timeout=0.2)) as server, peers() as opened:
        peer = await open_peer(server.port)
        opened.append(peer)
        await get(peer, b"1", "echo")
        assert (await peer.receive()).code == Code.CONTENT
        assert [m.code for m in await closed(peer, 2.0)] == []  # closed, no Abort
        assert server.tcp._connections == set()


async def test_request_in_flight_keeps_the_connection():
    site = site_with_hang()
    async with tcp_server(site, tuning=tuned(server_idle_timeout=0.2)) as server, peers() as opened:
        peer = await open_peer(server.port)
        opened.append(peer)
        await get(peer, b"1", "hang")
        assert await still_open(peer, 0.5)
        site.hang.release.set()
        assert (await peer.receive()).payload == b"done"
        assert await closed(peer, 2.0) == []


async def test_observation_keeps_the_connection_until_it_ends():
    site = make_site()
    async with tcp_server(site, tuning=tuned(server_idle_timeout=0.2)) as server, peers() as opened:
        peer = await open_peer(server.port)
        opened.append(peer)
        peer.send(encode(Message(code=Code.GET, _token=b"o", uri_path=["clock"], observe=0)))
        first = await peer.receive()
        assert first.opt.observe is not None
        await asyncio.sleep(0.5)
        site.clock.tick()
        assert (await peer.receive()).opt.observe is not None  # still there after 2.5 idle timeouts
        # Deregistering ends the observation: then it is idle.
        peer.send(encode(Message(code=Code.GET, _token=b"o", uri_path=["clock"], observe=1)))
        assert (await peer.receive()).opt.observe is None
        assert await closed(peer, 2.0) == []


# --- caps ---------------------------------------------------------------------------------


async def test_one_host_can_not_take_every_connection():
    """A host at its cap with busy connections is refused; the same host's
    idle connections make room instead."""
    site = site_with_hang()
    tuning = tuned(max_server_connections_per_host=3, max_server_connections=100)
    async with tcp_server(site, tuning=tuning) as server, peers() as opened:
        busy = await busy_peers(server.port, 3, opened)
        messages = await refused_messages(server.port, opened)
        assert [m.code for m in messages] == [Code.CSM, Code.ABORT]
        assert b"too many connections from your address" in messages[-1].payload
        site.hang.release.set()
        for peer in busy:
            assert (await peer.receive()).payload == b"done"
        # Now all three are idle: a fourth closes the oldest of them.
        await asyncio.sleep(0.05)
        fourth = await open_peer(server.port)
        opened.append(fourth)
        assert await closed(busy[0], 2.0) == []
        assert await still_open(busy[1], 0.1) and await still_open(busy[2], 0.1)
        await get(fourth, b"4", "echo")
        assert (await fourth.receive()).code == Code.CONTENT


async def test_idle_connections_make_room_at_the_global_cap():
    """1 000 idle connections used to lock every new client out (7.05 too
    many connections); here, at a cap of 5, the oldest idle one is closed
    for each new client."""
    tuning = tuned(max_server_connections=5, max_server_connections_per_host=100)
    async with tcp_server(tuning=tuning) as server, peers() as opened:
        idle = []
        for _ in range(5):
            idle.append(await open_peer(server.port))
            await asyncio.sleep(0.01)  # distinct idle times
        opened.extend(idle)
        newcomer = await open_peer(server.port)
        opened.append(newcomer)
        await get(newcomer, b"n", "echo")
        assert (await newcomer.receive()).code == Code.CONTENT
        assert await closed(idle[0], 2.0) == []
        assert len(server.tcp._connections) == 5


async def test_busy_connections_at_the_global_cap_refuse_newcomers():
    site = site_with_hang()
    tuning = tuned(max_server_connections=2, max_server_connections_per_host=100)
    async with tcp_server(site, tuning=tuning) as server, peers() as opened:
        await busy_peers(server.port, 2, opened)
        messages = await refused_messages(server.port, opened)
        assert messages[-1].code == Code.ABORT and messages[-1].payload == b"too many connections"
        site.hang.release.set()


# --- incomplete messages ----------------------------------------------------------------


def partial_frame(total_length: int, sent: int) -> bytes:
    """The first ``sent`` bytes of a GET frame whose options and payload
    are ``total_length`` bytes long (Len with a 4-byte extension)."""
    header = bytes([0xF1]) + (total_length - 65805).to_bytes(4, "big") + bytes([Code.POST]) + b"t"
    body = bytes([0xB4]) + b"echo" + b"\xff" + b"x" * (total_length - 6)
    return (header + body)[:sent]


async def test_incomplete_messages_are_bounded_across_connections():
    """Connections each holding part of a large message: once they hold
    more than the bound together, the one holding most is aborted."""
    tuning = tuned(max_message_size=1 << 20, max_server_buffered=100_000)
    async with tcp_server(tuning=tuning) as server, peers() as opened:
        holders = [await open_peer(server.port) for _ in range(3)]
        opened.extend(holders)
        sizes = [40_000, 30_000, 35_000]  # 105 000 together
        for peer, size in zip(holders[:2], sizes):
            peer.send(partial_frame(500_000, size))
        await asyncio.sleep(0.2)
        assert await still_open(holders[0], 0.05) and await still_open(holders[1], 0.05)
        holders[2].send(partial_frame(500_000, sizes[2]))
        messages = await closed(holders[0])
        assert messages[-1].code == Code.ABORT
        assert b"incomplete" in messages[-1].payload
        assert await still_open(holders[1], 0.1) and await still_open(holders[2], 0.1)
        assert server.tcp._connection_table().buffered == 65_000


async def test_a_trickled_message_is_aborted():
    """The slowloris peer: a large message announced, then a few bytes at
    a time, never stalling long enough for the stall timeout."""
    tuning = tuned(max_message_size=1 << 20, frame_timeout=0.3, frame_min_rate=1000.0)
    async with tcp_server(tuning=tuning) as server, peers() as opened:
        peer = await open_peer(server.port)
        opened.append(peer)
        data = partial_frame(500_000, 400)
        peer.send(data[:50])
        sent = 50
        messages = []
        with contextlib.suppress(EOFError, ConnectionError):
            while sent < len(data):
                await asyncio.sleep(0.05)
                peer.send(data[sent:sent + 10])
                sent += 10
                with contextlib.suppress(asyncio.TimeoutError):
                    messages.append(await peer.receive(0.001))
                    break
        messages += await closed(peer)
        assert messages[-1].code == Code.ABORT
        assert b"slower than 1000 bytes/s" in messages[-1].payload
        assert sent < 400


# --- log flooding -------------------------------------------------------------------------


async def test_refused_connections_give_one_warning(caplog):
    caplog.set_level(logging.DEBUG, logger="coap-server")
    site = site_with_hang()
    tuning = tuned(max_server_connections=1, max_server_connections_per_host=100)
    async with tcp_server(site, tuning=tuning) as server, peers() as opened:
        await busy_peers(server.port, 1, opened)
        for _ in range(30):
            assert (await refused_messages(server.port, opened))[-1].code == Code.ABORT
        site.hang.release.set()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "Refusing" in r.getMessage()]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "Refusing" in r.getMessage()]
    assert len(warnings) == 1 and len(debug) == 29


async def test_a_tiny_max_message_size_is_aborted_at_once():
    async with tcp_server() as server, peers() as opened:
        peer = await RawPeer.connect(server.port)
        opened.append(peer)
        peer.send(csm(10) + encode(Message(code=Code.GET, _token=b"1", uri_path=["echo"])))
        messages = await closed(peer)
        assert [m.code for m in messages] == [Code.CSM, Code.ABORT]
        assert rfc.Abort.from_message(messages[-1]).bad_csm_option == rfc.CSM_MAX_MESSAGE_SIZE
