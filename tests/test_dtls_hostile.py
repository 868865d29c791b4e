"""The DTLS server under attack: random datagrams and broken records by the
hundred thousand, ClientHello floods from ten thousand source ports,
half-finished and slow handshakes, clients restarting from the same port,
oversized input. The server must not crash, must not log per packet above
debug, must keep no state for peers that did not answer the cookie
exchange, and must keep serving its real client.

Most floods are put into the server's datagram protocol directly (with
made-up source addresses, as many as an attacker likes, at the speed of
the code rather than the kernel); one goes through a real socket."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import socket
import tracemalloc

import pytest

pytest.importorskip("DTLSSocket")

import aiocoap  # noqa: E402
from aiocoap.numbers.constants import TransportTuning  # noqa: E402
from aiocoap.transports.dtls_sessions import DTLSTuning, first_record  # noqa: E402

from dtls_support import (  # noqa: E402
    RawDTLSClient,
    client_credentials_for,
    dtls_client,
    dtls_server,
    get,
)

pytestmark = pytest.mark.core
QUICK = TransportTuning(ACK_TIMEOUT=0.2, MAX_RETRANSMIT=4)


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def client_hello() -> bytes:
    """A real first ClientHello (no cookie), as tinydtls sends it."""
    from DTLSSocket import dtls

    sent = []
    context = dtls.DTLS(read=lambda a, d: len(d), write=lambda a, d: (sent.append(d), len(d))[1],
                        event=lambda level, code: None, pskId=b"x", pskStore={b"x": b"y"})
    connection = context.connect("::1", 5684)
    context.resetPeer(connection)
    del connection, context
    hello = sent[0]
    assert first_record(hello) == (22, 0, 1)
    return hello


class Tap:
    """Counts what the server sends, by handshake message type."""

    def __init__(self, server):
        self.engine = server.interface._engine
        self.original = self.engine._sendto
        self.counts: dict = {}
        self.engine._sendto = self

    def __call__(self, data, addr):
        record = first_record(data)
        key = record[2] if record is not None and record[2] is not None else "other"
        self.counts[key] = self.counts.get(key, 0) + 1
        if addr[1] >= 1024:  # (the made-up low ports would only produce ICMP noise)
            self.original(data, addr)


def inject(server, data, sockaddr):
    server.interface._protocol.datagram_received(data, sockaddr)


def flip_one_bit(data: bytes, rng: random.Random) -> bytes:
    garbled = bytearray(data)
    garbled[rng.randrange(len(garbled))] ^= 1 << rng.randrange(8)
    return bytes(garbled)


def made_up_address(i: int) -> tuple:
    return (f"::ffff:10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 1 + (i % 1000), 0, 0)


class LoudRecords(logging.Handler):
    """Enables debug logging on the contexts' loggers (so that the debug
    paths run) but keeps only the records above debug: the floods must
    produce none. The records do not travel on to the root logger, where
    the test runner would keep every one of them."""

    LOGGERS = ("coap-server", "coap")

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.loud: list = []
        self.seen = 0

    def emit(self, record):
        self.seen += 1
        if record.levelno > logging.DEBUG:
            self.loud.append(record.getMessage())

    def __enter__(self):
        self._saved = []
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level, logger.propagate))
            logger.addHandler(self)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
        return self

    def __exit__(self, *exc):
        for logger, level, propagate in self._saved:
            logger.removeHandler(self)
            logger.setLevel(level)
            logger.propagate = propagate


# --- floods -----------------------------------------------------------------------------


async def test_hundred_thousand_random_datagrams_and_broken_records():
    rng = random.Random(7)
    hello = client_hello()
    async with dtls_server() as server, dtls_client(client_credentials_for(server)) as client:
        assert (await get(client, server.uri("/hello"))).code == aiocoap.CONTENT
        (real,) = server.interface.sessions
        # a record of the real session, to garble and truncate
        sample = []
        tap_engine = server.interface._engine
        original = tap_engine._sendto
        tap_engine._sendto = lambda data, addr: (sample.append(data), original(data, addr))
        await get(client, server.uri("/hello"))
        tap_engine._sendto = original
        record = sample[0]
        assert first_record(record)[0] == 23

        def junk(i):
            kind = i % 8
            if kind == 0:
                return os.urandom(rng.randrange(0, 300))
            if kind == 1:
                return hello[:rng.randrange(len(hello))]
            if kind == 2:
                return flip_one_bit(hello, rng)
            if kind == 3:
                return bytes([rng.choice((20, 21, 22, 23)), 0xFE, 0xFD, 0, rng.randrange(3)]) + os.urandom(rng.randrange(8, 200))
            if kind == 4:
                return record[:rng.randrange(len(record))]
            if kind == 5:
                return flip_one_bit(record, rng)
            if kind == 6:
                return record  # a replay
            return os.urandom(2000)  # oversized

        def flood(start, stop):
            for i in range(start, stop):
                # half of it at the real session's address (spoofed), half from everywhere
                address = real.sockaddr if i % 2 else made_up_address(i)
                inject(server, junk(i), address)

        with LoudRecords() as logs:
            flood(0, 20_000)  # warm-up: caches, free lists, the allocator's arenas
            gc.collect()
            rss_before = rss_kb()
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            flood(20_000, 40_000)
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            await asyncio.sleep(0)
            flood(40_000, 100_000)
            gc.collect()
        assert logs.seen > 0 and not logs.loud, logs.loud[:5]
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert grown < 64 * 1024, grown
        assert rss_kb() - rss_before < 2 * 1024
        # nothing became a session, and the real one still works
        assert server.interface.sessions == [real]
        response = await get(client, server.uri("/hello"))
        assert response.payload == b"(':client',)" and response.remote._session.epoch == 1


async def test_flood_through_a_real_socket():
    async with dtls_server() as server, dtls_client(client_credentials_for(server), transport_tuning=QUICK) as client:
        await get(client, server.uri("/hello"))
        hello = client_hello()
        attackers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
        try:
            for s in attackers:
                s.setblocking(False)
            rng = random.Random(1)
            during = asyncio.ensure_future(asyncio.gather(*(get(client, server.uri("/hello")) for _ in range(20))))
            for i in range(5000):
                data = hello[:rng.randrange(1, len(hello) + 1)] if i % 2 else os.urandom(rng.randrange(1, 1500))
                try:
                    attackers[i % 8].sendto(data, ("127.0.0.1", server.port))
                except BlockingIOError:
                    pass
                if i % 100 == 0:
                    await asyncio.sleep(0)
            responses = await during
        finally:
            for s in attackers:
                s.close()
        assert all(r.code == aiocoap.CONTENT for r in responses)
        assert (await get(client, server.uri("/hello"))).code == aiocoap.CONTENT
        assert len(server.interface.sessions) == 1


async def test_client_hello_flood_from_ten_thousand_ports_keeps_no_state():
    hello = client_hello()
    async with dtls_server() as server:
        tap = Tap(server)
        rss_before = rss_kb()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        with LoudRecords() as logs:
            for port in range(10_000):
                inject(server, hello, ("::ffff:127.0.0.1", 20000 + port, 0, 0))
                if port % 1000 == 0:
                    await asyncio.sleep(0)
        assert not logs.loud, logs.loud[:5]
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        # every hello got one HelloVerifyRequest (type 3) and nothing else
        assert tap.counts == {3: 10_000}
        assert server.interface.sessions == []
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert grown < 64 * 1024, grown
        # (tinydtls keeps about 1 KB per peer it knows: 10 000 would show)
        assert rss_kb() - rss_before < 4 * 1024


# --- half-finished, slow and restarting peers ---------------------------------------------


async def test_half_finished_handshakes_are_capped_and_expire():
    tuning = DTLSTuning(handshake_timeout=0.6, idle_timeout=None, silence_timeout=None,
                        max_server_handshakes=3, max_server_sessions=10)
    async with dtls_server(tuning=tuning) as server:
        clients = []
        try:
            for _ in range(6):
                # processes the HelloVerifyRequest, answers it, and then
                # ignores the ServerHello flight
                raw = await RawDTLSClient(stop_after=1).open(server.port)
                raw.connect()
                clients.append(raw)
            await asyncio.sleep(0.2)
            assert 0 < len(server.interface.sessions) <= 3
            assert all(not a._established for a in server.interface.sessions)
            await asyncio.sleep(0.8)
            assert server.interface.sessions == []
        finally:
            for raw in clients:
                raw.close()
        # a proper client still gets in
        async with dtls_client(client_credentials_for(server)) as client:
            assert (await get(client, server.uri("/hello"))).code == aiocoap.CONTENT


async def test_slow_handshake_flight_after_the_deadline_creates_nothing():
    tuning = DTLSTuning(handshake_timeout=0.3, idle_timeout=None, silence_timeout=None)
    async with dtls_server(tuning=tuning) as server:
        raw = await RawDTLSClient(stop_after=1).open(server.port)
        try:
            raw.connect()
            await asyncio.sleep(0.1)
            assert len(server.interface.sessions) == 1
            await asyncio.sleep(0.5)
            assert server.interface.sessions == []
            # now the slow client goes on: its flight is no ClientHello and
            # comes from an address without a session
            raw.stop_after = None
            await asyncio.sleep(2.5)  # tinydtls retransmits its flight after 2 s
            assert server.interface.sessions == []
            assert not raw.connected
        finally:
            raw.close()


async def test_client_restarting_from_the_same_port_gets_a_new_epoch():
    async with dtls_server() as server:
        raw = await RawDTLSClient().open(server.port)
        try:
            raw.connect()
            await asyncio.wait_for(_until(lambda: raw.connected), 5)
            (first,) = server.interface.sessions
            raw.abandon()
            raw.connect()  # same socket, same port
            await asyncio.wait_for(_until(lambda: raw.connected), 5)
            (second,) = server.interface.sessions
            assert second is not first and second != first
            assert first.session_ended and not second.session_ended
            assert second.sockaddr == first.sockaddr
            assert second._session.epoch > first._session.epoch
            assert second.authenticated_claims == (":client",)
            # a CoAP request over the new session is answered on it
            raw.send(bytes([0x40, 0x01, 0x12, 0x34, 0xB5]) + b"hello")
            await asyncio.wait_for(_until(lambda: raw.received), 5)
            assert raw.received[-1][:4] == bytes([0x60, 0x45, 0x12, 0x34])
            assert server.site.seen_remotes[-1] is second
        finally:
            raw.close()


async def test_oversized_and_empty_datagrams_on_a_session():
    async with dtls_server() as server, dtls_client(client_credentials_for(server)) as client:
        await get(client, server.uri("/hello"))
        (real,) = server.interface.sessions
        with LoudRecords() as logs:
            for data in (b"", os.urandom(65000), bytes([23, 0xFE, 0xFD, 0, 1]) + bytes(8) + b"\xff\xff" + bytes(100)):
                inject(server, data, real.sockaddr)
                inject(server, data, made_up_address(1))
        assert logs.seen > 0 and not logs.loud, logs.loud
        assert server.interface.sessions == [real]
        assert (await get(client, server.uri("/hello"))).code == aiocoap.CONTENT


async def _until(predicate):
    while not predicate():
        await asyncio.sleep(0.01)
