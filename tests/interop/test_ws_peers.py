"""Interoperability of CoAP over WebSockets (RFC 8323 §4) with peers that
are not this library.

* libcoap's ``coap-client-notls`` talks ``coap+ws://`` to our server where
  its build has WebSockets support (libcoap 4.3.1 of Debian 12 has not: it
  calls such URIs invalid; the test is skipped saying so).
* A hand-written client on the ``websockets`` package's asyncio API, which
  encodes and decodes the RFC 8323 §4.2 messages itself (no aiocoap codec:
  the bytes below are written out from the RFC), talks to our server: the
  CSM exchange, requests with options, an observation, Ping/Pong, an
  Abort, and a close.
* A hand-written server of the same kind answers our client.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest

pytest.importorskip("websockets")

import websockets.asyncio.client  # noqa: E402
import websockets.asyncio.server  # noqa: E402

from .conftest import HELLO_PAYLOAD, SiteState, build_site, run_coap_client  # noqa: E402

pytestmark = pytest.mark.interop

TIMEOUT = 5.0

# Codes (class << 5 | detail) and option numbers, from RFC 7252 / 7641 / 8323
GET, POST = 0x01, 0x02
CONTENT, CHANGED, NOT_FOUND = 0x45, 0x44, 0x84
CSM, PING, PONG, RELEASE, ABORT = 0xE1, 0xE2, 0xE3, 0xE4, 0xE5
OBSERVE, URI_PATH, CONTENT_FORMAT = 6, 11, 12
MAX_MESSAGE_SIZE, BLOCK_WISE_TRANSFER = 2, 4


def option_bytes(options):
    """Encode (number, value bytes) pairs, sorted, as RFC 7252 §3.1 says."""
    out = bytearray()
    previous = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        parts = []
        for field in (number - previous, len(value)):
            if field < 13:
                parts.append((field, b""))
            elif field < 269:
                parts.append((13, bytes((field - 13,))))
            else:
                parts.append((14, struct.pack("!H", field - 269)))
        (delta, delta_ext), (length, length_ext) = parts
        out.append(delta << 4 | length)
        out += delta_ext + length_ext + value
        previous = number
    return bytes(out)


def ws_message(code, token=b"", options=(), payload=b""):
    """One RFC 8323 §4.2 message: Len nibble 0, TKL, Code, Token, Options,
    0xFF and payload."""
    return bytes((len(token), code)) + token + option_bytes(options) + (b"\xff" + payload if payload else b"")


def parse(data):
    """(code, token, [(number, value)], payload) of a §4.2 message."""
    assert data[0] >> 4 == 0, "Len must be 0 over WebSockets"
    tkl, code = data[0] & 0x0F, data[1]
    token = data[2:2 + tkl]
    pos, number, options = 2 + tkl, 0, []
    while pos < len(data) and data[pos] != 0xFF:
        head = data[pos]
        pos += 1
        fields = []
        for nibble in (head >> 4, head & 0x0F):
            if nibble == 13:
                fields.append(data[pos] + 13)
                pos += 1
            elif nibble == 14:
                fields.append(struct.unpack("!H", data[pos:pos + 2])[0] + 269)
                pos += 2
            else:
                fields.append(nibble)
        number += fields[0]
        options.append((number, data[pos:pos + fields[1]]))
        pos += fields[1]
    payload = data[pos + 1:] if pos < len(data) else b""
    return code, token, options, payload


def uint(value):
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


@contextlib.asynccontextmanager
async def our_ws_server():
    import aiocoap

    state = SiteState()
    context = await aiocoap.Context.create_server_context(build_site(state), bind=("127.0.0.1", 0), transports=["ws"])
    try:
        (pool,) = context._tokenmanager.token_interfaces
        yield state, pool.servers["coap+ws"].sockets[0].getsockname()[1]
    finally:
        if state.ticker is not None:
            state.ticker.cancel()
        await context.shutdown()


async def recv(connection):
    return parse(await asyncio.wait_for(connection.recv(), TIMEOUT))


# --- libcoap ---------------------------------------------------------------------------


async def test_libcoap_client_over_websockets(coap_client_bin, tmp_path):
    async with our_ws_server() as (state, port):
        run = await run_coap_client(coap_client_bin, f"coap+ws://127.0.0.1:{port}/hello", workdir=tmp_path)
        if "invalid CoAP URI" in run.stdout + run.stderr:
            pytest.skip("this build of libcoap's coap-client has no WebSockets support")
        assert run.payload == HELLO_PAYLOAD, run.describe()


# --- a hand-written client -------------------------------------------------------------


async def test_hand_written_client_against_our_server():
    async with our_ws_server() as (state, port):
        async with websockets.asyncio.client.connect(
            f"ws://127.0.0.1:{port}/.well-known/coap", subprotocols=["coap"], ping_interval=None, open_timeout=TIMEOUT,
        ) as connection:
            assert connection.subprotocol == "coap"
            await connection.send(ws_message(CSM, options=[(MAX_MESSAGE_SIZE, uint(1152))]))
            code, token, options, payload = await recv(connection)
            assert code == CSM and token == b""
            announced = dict(options)
            assert int.from_bytes(announced[MAX_MESSAGE_SIZE], "big") > 1152
            assert BLOCK_WISE_TRANSFER in announced

            await connection.send(ws_message(GET, b"\x01\x02", [(URI_PATH, b"hello")]))
            code, token, options, payload = await recv(connection)
            assert (code, token, payload) == (CONTENT, b"\x01\x02", HELLO_PAYLOAD)

            await connection.send(ws_message(GET, b"\x07", [(URI_PATH, b"nonexistent")]))
            code, token, _, _ = await recv(connection)
            assert (code, token) == (NOT_FOUND, b"\x07")

            await connection.send(ws_message(PING, b"pi"))
            assert (await recv(connection))[:2] == (PONG, b"pi")

            await connection.send(ws_message(GET, b"ob", [(OBSERVE, b""), (URI_PATH, b"counter")]))
            code, token, options, first = await recv(connection)
            assert (code, token) == (CONTENT, b"ob") and OBSERVE in dict(options)
            code, token, options, second = await recv(connection)
            assert (code, token) == (CONTENT, b"ob") and second != first

            # an Abort ends it; the server closes the WebSocket
            await connection.send(ws_message(ABORT, payload=b"done"))
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                while True:
                    await asyncio.wait_for(connection.recv(), TIMEOUT)


async def test_hand_written_client_without_the_subprotocol_is_refused():
    async with our_ws_server() as (state, port):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await websockets.asyncio.client.connect(f"ws://127.0.0.1:{port}/.well-known/coap", open_timeout=TIMEOUT)
        assert refused.value.response.status_code == 400


# --- a hand-written server ----------------------------------------------------------------


async def test_our_client_against_a_hand_written_server():
    import aiocoap

    seen = []

    async def serve(connection):
        await connection.send(ws_message(CSM, options=[(MAX_MESSAGE_SIZE, uint(1152))]))
        async for data in connection:
            code, token, options, payload = parse(data)
            seen.append((code, options))
            if code in (GET, POST):
                path = b"/".join(v for n, v in options if n == URI_PATH)
                answer = payload[::-1] if code == POST else b"got " + path
                await connection.send(
                    ws_message(CONTENT if code == GET else CHANGED, token, [(CONTENT_FORMAT, b"")], answer)
                )

    server = await websockets.asyncio.server.serve(serve, "127.0.0.1", 0, subprotocols=["coap"], ping_interval=None)
    client = await aiocoap.Context.create_client_context(transports=["ws"])
    try:
        port = server.sockets[0].getsockname()[1]
        request = aiocoap.Message(code=aiocoap.GET, uri=f"coap+ws://127.0.0.1:{port}/a/b")
        response = await asyncio.wait_for(client.request(request).response, TIMEOUT)
        assert response.code == aiocoap.CONTENT and response.payload == b"got a/b"
        request = aiocoap.Message(code=aiocoap.POST, uri=f"coap+ws://127.0.0.1:{port}/x", payload=b"abc")
        response = await asyncio.wait_for(client.request(request).response, TIMEOUT)
        assert response.code == aiocoap.CHANGED and response.payload == b"cba"
        # our CSM came first and said what we accept
        assert seen[0][0] == CSM
        assert int.from_bytes(dict(seen[0][1])[MAX_MESSAGE_SIZE], "big") > 1152
    finally:
        await client.shutdown()
        server.close()
        await server.wait_closed()
