"""The tests an attacker would write against the CoAP-over-WebSockets
server (aiocoap.transports.ws): floods of connections from many source
addresses (127.0.0.2 and up are loopback too), half-finished handshakes,
slow and non-reading peers, oversized input at every layer (HTTP request,
WebSocket frame, fragmented message) and path tricks.

The peers here are raw TCP sockets that write the HTTP upgrade and the
WebSocket frames byte by byte (client frames masked with the all-zero
key, which RFC 6455 allows), so that they can stop anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest

pytest.importorskip("websockets")

from test_ws import (  # noqa: E402
    TIMEOUT,
    csm,
    decode,
    encode,
    raw_http,
    request,
    until,
    upgrade_request,
    ws_client,
    ws_server,
)

from aiocoap.message import Message  # noqa: E402
from aiocoap.numbers.codes import Code  # noqa: E402
from aiocoap.transports.ws import WSTuning  # noqa: E402

pytestmark = pytest.mark.core

BINARY, TEXT, CONT, CLOSE, PING = 0x2, 0x1, 0x0, 0x8, 0x9


def frame_header(opcode, length, fin=True):
    """The header of a masked client frame (mask key 0: data unchanged)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + b"\0\0\0\0"


def ws_frame(opcode, payload, fin=True):
    return frame_header(opcode, len(payload), fin) + payload


class RawPeer:
    """A TCP connection that speaks WebSocket by hand."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port, source="127.0.0.1"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(reader, writer)

    @classmethod
    async def upgraded(cls, port, our_csm=csm()):
        peer = await cls.connect(port)
        peer.writer.write(upgrade_request())
        head = await asyncio.wait_for(peer.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101 ")
        peer.send(BINARY, our_csm)
        return peer

    def send(self, opcode, payload, fin=True):
        self.writer.write(ws_frame(opcode, payload, fin))

    async def read_frame(self):
        """(opcode, payload) of the next frame from the server (unmasked)."""
        head = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
        length = head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return head[0] & 0x0F, await self.reader.readexactly(length)

    async def messages_until_closed(self):
        """CoAP messages until the server's close frame (returned last as
        its close code) or the end of the stream."""
        messages = []
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionResetError):
            while True:
                opcode, payload = await self.read_frame()
                if opcode == CLOSE:
                    messages.append(struct.unpack("!H", payload[:2])[0] if payload else None)
                    break
                if opcode == BINARY:
                    messages.append(decode(payload))
        return messages

    async def closed_by_server(self, timeout=TIMEOUT):
        """Whether the server ends the stream within ``timeout``."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except asyncio.TimeoutError:
            return False
        except ConnectionResetError:
            pass
        return True

    async def close(self):
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def echo_works(server):
    async with ws_client() as client:
        response = await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{server.port}/echo")
        assert response.code == Code.CONTENT


# --- floods ------------------------------------------------------------------------


async def test_connection_flood_from_many_sources_is_capped():
    tuning = WSTuning(
        connect_timeout=0.5, max_server_connections=30, max_server_connections_per_host=4, close_timeout=0.3
    )
    async with ws_server(tuning=tuning) as server:
        peers = []
        for source in range(2, 12):  # ten source addresses, eight connections each
            for _ in range(8):
                peers.append(await RawPeer.connect(server.port, source=f"127.0.0.{source}"))
        await until(lambda: server.ws._accepted == 30)
        assert server.ws._accepted == 30
        assert max(server.ws._per_host.values()) <= 4
        # the ones beyond the caps were reset at once
        resets = await asyncio.gather(*(p.closed_by_server(timeout=0.2) for p in peers))
        assert sum(resets) == len(peers) - 30
        # the admitted ones never finish their handshake: cut at the timeout
        assert all(await asyncio.gather(*(p.closed_by_server() for p in peers)))
        for p in peers:
            await p.close()
        await until(lambda: server.ws._accepted == 0 and not server.ws._per_host)
        await echo_works(server)


async def test_one_host_can_not_take_all_connections():
    tuning = WSTuning(connect_timeout=5.0, max_server_connections_per_host=5, close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        hogs = [await RawPeer.connect(server.port, source="127.0.0.9") for _ in range(20)]
        await until(lambda: server.ws._per_host.get("127.0.0.9") == 5)
        # everybody else is still served, at once
        await echo_works(server)
        for hog in hogs:
            await hog.close()
        await until(lambda: "127.0.0.9" not in server.ws._per_host)


async def test_many_websocket_clients_at_once():
    async with ws_server() as server:
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(ws_client()) for _ in range(20)]
            responses = await asyncio.gather(*(
                request(c, code=Code.POST, uri=f"coap+ws://127.0.0.1:{server.port}/echo", payload=b"%d" % i)
                for i, c in enumerate(clients)
            ))
            assert [r.payload for r in responses] == [(b"%d" % i)[::-1] for i in range(20)]
            assert len(server.ws._connections) == 20
        await until(lambda: server.ws._accepted == 0)


# --- half-finished handshakes and slow peers ------------------------------------------------


@pytest.mark.parametrize("partial", [
    b"",
    b"GET /.well-known/coap HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr",
    b"GET /.well-known/co",
])
async def test_half_finished_handshake_is_cut_at_the_timeout(partial):
    tuning = WSTuning(connect_timeout=0.4, close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.connect(server.port)
        peer.writer.write(partial)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await until(lambda: server.ws._accepted == 1)
        await echo_works(server)  # served meanwhile
        assert await peer.closed_by_server()
        assert 0.3 < loop.time() - started < 2.0
        await peer.close()
        await until(lambda: server.ws._accepted == 0)


async def test_trickling_handshake_is_cut_at_the_timeout_too():
    tuning = WSTuning(connect_timeout=0.5, close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.connect(server.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        request_bytes = upgrade_request()
        for i in range(len(request_bytes)):
            if peer.writer.is_closing() or peer.reader.at_eof():
                break
            with contextlib.suppress(OSError):
                peer.writer.write(request_bytes[i:i + 1])
            await asyncio.sleep(0.05)
            if server.ws._accepted == 0:
                break
        assert loop.time() - started < 1.5
        await peer.close()


async def test_stalled_frame_is_aborted_after_frame_timeout():
    tuning = WSTuning(frame_timeout=0.2, frame_time_limit=5.0, close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.upgraded(server.port)
        message = encode(Message(code=Code.PUT, _token=b"s", uri_path=["echo"], payload=b"z" * 1000))
        peer.writer.write(frame_header(BINARY, len(message)) + message[:100])
        loop = asyncio.get_running_loop()
        started = loop.time()
        messages = await peer.messages_until_closed()
        assert messages[0].code == Code.CSM
        assert messages[-2].code == Code.ABORT and b"stalled" in messages[-2].payload
        assert messages[-1] == 1000
        assert loop.time() - started < 1.0
        await peer.close()
        await until(lambda: server.ws._accepted == 0)


async def test_trickling_frame_is_cut_at_the_frame_time_limit():
    tuning = WSTuning(frame_timeout=0.3, frame_time_limit=0.8, close_timeout=0.3, frame_min_rate=None)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.upgraded(server.port)
        message = encode(Message(code=Code.PUT, _token=b"t", uri_path=["echo"], payload=b"z" * 1000))
        data = frame_header(BINARY, len(message)) + message
        loop = asyncio.get_running_loop()
        started = loop.time()
        reading = asyncio.ensure_future(peer.messages_until_closed())
        for i in range(len(data)):
            if reading.done():
                break
            peer.writer.write(data[i:i + 1])
            await asyncio.sleep(0.1)
        messages = await reading
        assert messages[-2].code == Code.ABORT and b"not completed" in messages[-2].payload
        assert 0.7 < loop.time() - started < 2.0
        await peer.close()


async def test_slow_fragments_count_as_one_partial_message():
    tuning = WSTuning(frame_timeout=0.3, frame_time_limit=0.8, close_timeout=0.3, frame_min_rate=None)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.upgraded(server.port)
        message = encode(Message(code=Code.PUT, _token=b"f", uri_path=["echo"], payload=b"z" * 100))
        reading = asyncio.ensure_future(peer.messages_until_closed())
        loop = asyncio.get_running_loop()
        started = loop.time()
        peer.send(BINARY, message[:1], fin=False)
        for i in range(1, len(message)):
            if reading.done():
                break
            await asyncio.sleep(0.1)
            peer.send(CONT, message[i:i + 1], fin=False)
        messages = await reading
        assert messages[-2].code == Code.ABORT and b"not completed" in messages[-2].payload
        assert loop.time() - started < 2.0
        await peer.close()


async def test_peer_that_does_not_read_is_cut_off(caplog):
    tuning = WSTuning(write_buffer_limit=512 * 1024, close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.upgraded(server.port, our_csm=csm(2 * 1024 * 1024, True))
        peer.writer.transport.pause_reading()
        for i in range(40):  # 40 MiB of responses asked for, none read
            peer.send(BINARY, encode(Message(code=Code.GET, _token=b"%d" % i, uri_path=["mb"])))
        await until(lambda: server.ws._accepted == 0)
        assert "does not read" in caplog.text
        await echo_works(server)
        await peer.close()


async def test_ping_flood_without_reading_is_cut_off(caplog):
    caplog.set_level("DEBUG")
    tuning = WSTuning(write_buffer_limit=64 * 1024, close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.upgraded(server.port)
        peer.writer.transport.pause_reading()
        burst = ws_frame(PING, b"p" * 125) * 1000
        for _ in range(50):
            if server.ws._accepted == 0:
                break
            with contextlib.suppress(OSError):
                peer.writer.write(burst)
            await asyncio.sleep(0.02)
        await until(lambda: server.ws._accepted == 0)
        assert "does not read" in caplog.text
        await peer.close()


async def test_peer_that_ignores_our_close_is_cut_after_the_close_timeout():
    tuning = WSTuning(close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.upgraded(server.port)
        peer.send(TEXT, b"not binary")
        await until(lambda: server.ws._closers or not server.ws._accepted)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # (never answering the close frame)
        await until(lambda: server.ws._accepted == 0)
        assert loop.time() - started < 1.5
        await peer.close()


# --- oversized input --------------------------------------------------------------------


async def test_huge_frame_is_refused_from_its_header():
    tuning = WSTuning(max_message_size=4096, close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.upgraded(server.port)
        peer.writer.write(frame_header(BINARY, 1 << 40))  # a terabyte announced, nothing sent
        messages = await peer.messages_until_closed()
        assert messages[-1] == 1009  # message too big
        await peer.close()
        await until(lambda: server.ws._accepted == 0)


async def test_fragments_above_the_limit_are_refused():
    tuning = WSTuning(max_message_size=4096, close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.upgraded(server.port)
        peer.send(BINARY, b"\x00\x01", fin=False)
        for _ in range(10):
            peer.send(CONT, b"x" * 1000, fin=False)
        messages = await peer.messages_until_closed()
        assert messages[-1] == 1009
        await peer.close()


async def test_oversized_http_requests_get_http_errors():
    async with ws_server() as server:
        answer = await raw_http(server.port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 414 ") or answer.startswith(b"HTTP/1.1 400 ")
        many = "".join(f"X-{i}: {i}\r\n" for i in range(500))
        answer = await raw_http(server.port, upgrade_request(extra=many))
        assert answer.startswith(b"HTTP/1.1 431 ")
        long_header = "X-Long: " + "b" * 20000 + "\r\n"
        answer = await raw_http(server.port, upgrade_request(extra=long_header))
        assert answer.startswith(b"HTTP/1.1 431 ")
        await until(lambda: server.ws._accepted == 0)
        await echo_works(server)


async def test_garbage_after_the_handshake_gets_an_abort():
    tuning = WSTuning(close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.upgraded(server.port)
        peer.send(BINARY, b"\xf0\x01\x02")  # a Len nibble in a WebSocket message
        messages = await peer.messages_until_closed()
        assert messages[-2].code == Code.ABORT and b"Len" in messages[-2].payload
        await peer.close()
        # and bytes that are no WebSocket frame at all (unmasked, reserved bits)
        peer = await RawPeer.upgraded(server.port)
        peer.writer.write(b"\x7f\x05hello")
        messages = await peer.messages_until_closed()
        assert messages[-1] == 1002  # protocol error
        await peer.close()
        await until(lambda: server.ws._accepted == 0)


# --- path tricks -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/.well-known/coap/", "/.well-known/coap/../coap", "//.well-known/coap", "/.WELL-KNOWN/coap",
    "/.well-known/%63oap", "/.well-known/coap%00", "/.well-known/coap;x", "*", "http://x/.well-known/coap",
])
async def test_only_the_exact_path_is_served(path):
    async with ws_server() as server:
        answer = await raw_http(server.port, upgrade_request(path=path))
        assert answer.startswith(b"HTTP/1.1 404 ") or answer.startswith(b"HTTP/1.1 400 "), (path, answer[:40])


async def test_a_query_does_not_change_the_resource():
    async with ws_server() as server:
        peer = await RawPeer.connect(server.port)
        peer.writer.write(upgrade_request(path="/.well-known/coap?x=1"))
        head = await asyncio.wait_for(peer.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101 ")
        await peer.close()


# --- the WebSocket protocol after the upgrade -------------------------------------------


async def test_frames_in_the_same_write_as_the_upgrade_are_read():
    # (RFC 6455 has a client wait for the 101, but bytes it sends early are
    # frames all the same: the server gives websockets only the HTTP head)
    async with ws_server() as server:
        peer = await RawPeer.connect(server.port)
        get = encode(Message(code=Code.GET, _token=b"e", uri_path=["echo"]))
        peer.writer.write(upgrade_request() + ws_frame(BINARY, csm()) + ws_frame(BINARY, get))
        head = await asyncio.wait_for(peer.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101 ")
        opcode, payload = await peer.read_frame()
        assert decode(payload).code == Code.CSM
        opcode, payload = await peer.read_frame()
        assert decode(payload).token == b"e" and decode(payload).code.is_response()
        await peer.close()


async def test_ping_gets_a_pong_and_a_close_gets_its_answer():
    tuning = WSTuning(close_timeout=5.0)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.upgraded(server.port)
        opcode, payload = await peer.read_frame()
        assert decode(payload).code == Code.CSM
        peer.send(PING, b"are you there")
        assert await peer.read_frame() == (0xA, b"are you there")
        peer.send(CLOSE, struct.pack("!H", 4000) + b"done")
        assert await peer.read_frame() == (CLOSE, struct.pack("!H", 4000))
        # and the server closes the TCP connection first (RFC 6455 §7.1.1)
        assert await peer.closed_by_server(timeout=2.0)
        await peer.close()
        await until(lambda: server.ws._accepted == 0)


async def test_unmasked_client_frame_fails_the_connection():
    tuning = WSTuning(close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        peer = await RawPeer.upgraded(server.port)
        peer.writer.write(b"\x82\x02\x00\x01")  # a good frame header, but not masked
        messages = await peer.messages_until_closed()
        assert messages[0].code == Code.CSM and messages[-1] == 1002
        assert await peer.closed_by_server()
        await peer.close()
        await until(lambda: server.ws._accepted == 0)


async def test_at_the_cap_an_idle_connection_makes_room():
    tuning = WSTuning(max_server_connections_per_host=2, close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        idle = [await RawPeer.upgraded(server.port) for _ in range(2)]
        for peer in idle:
            opcode, payload = await peer.read_frame()
            assert decode(payload).code == Code.CSM
        # both are idle (nothing pending): the third client is served, and
        # the one idle longest is closed for it
        await echo_works(server)
        assert (await idle[0].messages_until_closed())[-1] == 1000
        await until(lambda: server.ws._per_host.get("127.0.0.1", 0) <= 2)
        for peer in idle:
            await peer.close()


async def test_incomplete_messages_are_capped_across_connections():
    tuning = WSTuning(max_server_buffered=2500, close_timeout=0.3)
    async with ws_server(tuning=tuning) as server:
        small, large = await RawPeer.upgraded(server.port), await RawPeer.upgraded(server.port)
        message = encode(Message(code=Code.PUT, _token=b"b", uri_path=["echo"], payload=b"z" * 3000))
        # about 1000 bytes held for one, 1600 for the other (fragments and
        # part of a frame): together above the cap
        small.writer.write(frame_header(BINARY, len(message)) + message[:1000])
        large.send(BINARY, message[:1], fin=False)
        large.send(CONT, message[1:1000], fin=False)
        large.writer.write(frame_header(CONT, len(message) - 1000) + message[1000:1600])
        messages = await large.messages_until_closed()
        assert messages[-2].code == Code.ABORT and b"buffered" in messages[-2].payload
        small.writer.write(message[1000:])
        opcode, payload = await small.read_frame()
        assert decode(payload).code == Code.CSM
        opcode, payload = await small.read_frame()
        assert decode(payload).token == b"b"
        await small.close()
        await large.close()
