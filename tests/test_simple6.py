"""Tests for the portable UDP transports, aiocoap.transports.simple6
(client, one connected socket per peer) and .simplesocketserver (server
bound to one address), over real sockets on the loopback interfaces with a
fake message layer."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time

import pytest

from aiocoap import error
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.transports import simple6
from aiocoap.transports.simple6 import MessageInterfaceSimple6, Simple6EndpointAddress
from aiocoap.transports.simplesocketserver import MessageInterfaceSimpleServer, SimpleServerEndpointAddress

log = logging.getLogger("test-simple6")


def _ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


LOOPBACKS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param("::1", id="ipv6", marks=pytest.mark.skipif(not _ipv6_loopback_works(), reason="no IPv6 loopback")),
]


from transport_fakes import FakeManager  # noqa: E402  (shared with test_udp6)


def uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def request(uri: str, mid: int = 1, payload: bytes = b"") -> Message:
    return Message(code=Code.GET, mtype=Type.CON, mid=mid, token=mid.to_bytes(2, "big"), uri=uri, payload=payload)


async def send(interface, manager, uri, mid=1, payload=b""):
    message = request(uri, mid, payload)
    message.remote = await interface.determine_remote(message)
    manager.sending = True
    try:
        interface.send(message)
    finally:
        manager.sending = False
    return message


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start(bind_host):
    loop = asyncio.get_running_loop()
    server_manager, client_manager = FakeManager(), FakeManager()
    server = await MessageInterfaceSimpleServer.create_server((bind_host, 0), server_manager, log, loop)
    client = await MessageInterfaceSimple6.create_client_transport_endpoint(client_manager, log, loop)
    return server, server_manager, client, client_manager


@pytest.mark.core
@pytest.mark.parametrize("host", LOOPBACKS)
async def test_request_and_response(host):
    server, server_manager, client, client_manager = await start(host)
    try:
        port = server.sockname[1]
        sent = await send(client, client_manager, f"coap://{uri_host(host)}:{port}/x", payload=b"ping")
        assert isinstance(sent.remote, Simple6EndpointAddress)
        assert sent.remote.hostinfo == f"{uri_host(host)}:{port}"
        assert sent.remote.uri_base == f"coap://{uri_host(host)}:{port}"
        assert client.recognize_remote(sent.remote) and not server.recognize_remote(sent.remote)

        await server_manager.wait_for(lambda: server_manager.datagrams)
        data, remote = server_manager.datagrams[0]
        assert Message.decode(data).payload == b"ping"
        assert isinstance(remote, SimpleServerEndpointAddress) and server.recognize_remote(remote)
        assert remote.hostinfo_local == f"{uri_host(host)}:{port}"
        assert remote.hostinfo == f"{uri_host(host)}:{sent.remote.hostinfo_local.rsplit(':', 1)[1]}"
        assert not remote.is_multicast and not remote.is_multicast_locally

        response = Message(code=Code.CONTENT, mtype=Type.ACK, mid=1, token=b"\x00\x01", payload=b"pong")
        response.remote = remote
        server.send(response)
        await client_manager.wait_for(lambda: client_manager.datagrams)
        data, response_remote = client_manager.datagrams[0]
        assert Message.decode(data).payload == b"pong"
        assert response_remote == sent.remote

        # a second request to the same peer uses the same socket
        again = await send(client, client_manager, f"coap://{uri_host(host)}:{port}/x", mid=2)
        assert again.remote is sent.remote
        await server_manager.wait_for(lambda: len(server_manager.datagrams) == 2)
        assert server_manager.datagrams[1][1] == remote
        assert not server_manager.errors and not client_manager.errors
    finally:
        await client.shutdown()
        await server.shutdown()


@pytest.mark.core
async def test_names_stay_names():
    server, server_manager, client, client_manager = await start("127.0.0.1")
    try:
        port = server.sockname[1]
        by_name = await send(client, client_manager, f"coap://localhost:{port}/")
        assert by_name.remote.hostinfo == f"localhost:{port}"
        by_literal = await client.determine_remote(request(f"coap://127.0.0.1:{port}/"))
        # different names are different peers, each with its own socket
        assert by_name.remote != by_literal
        assert repr(by_name.remote) == f"<Simple6EndpointAddress localhost:{port}>"
        await server_manager.wait_for(lambda: server_manager.datagrams)
    finally:
        await client.shutdown()
        await server.shutdown()


@pytest.mark.core
async def test_port_unreachable():
    server, server_manager, client, client_manager = await start("127.0.0.1")
    try:
        nowhere = closed_port()
        for round_ in range(2):
            started = time.monotonic()
            sent = await send(client, client_manager, f"coap://127.0.0.1:{nowhere}/", mid=round_)
            await client_manager.wait_for(lambda: len(client_manager.errors) == round_ + 1, timeout=1.0)
            assert time.monotonic() - started < 1.0
            exc, remote = client_manager.errors[round_]
            assert isinstance(exc, ConnectionRefusedError) and remote == sent.remote
        assert client_manager.reentrant_errors == 0

        # other peers are not affected
        port = server.sockname[1]
        await send(client, client_manager, f"coap://127.0.0.1:{port}/", mid=9)
        await server_manager.wait_for(lambda: server_manager.datagrams)
        response = Message(code=Code.CONTENT, mtype=Type.ACK, mid=9)
        response.remote = server_manager.datagrams[0][1]
        server.send(response)
        await client_manager.wait_for(lambda: client_manager.datagrams)
    finally:
        await client.shutdown()
        await server.shutdown()


@pytest.mark.core
async def test_determine_remote():
    server, server_manager, client, client_manager = await start("127.0.0.1")
    try:
        assert await client.determine_remote(request("coap+tcp://127.0.0.1/")) is None
        assert await client.determine_remote(request("coaps://127.0.0.1/")) is None
        assert await client.determine_remote(Message(code=Code.GET)) is None
        bare = Message(code=Code.GET, uri_host="127.0.0.1", uri_port=server.sockname[1])
        remote = await client.determine_remote(bare)
        assert remote.hostinfo == f"127.0.0.1:{server.sockname[1]}"
        bare.remote = remote
        assert await client.determine_remote(bare) is remote
        assert await server.determine_remote(bare) is None

        started = time.monotonic()
        with pytest.raises(error.ResolutionError, match="nothing-here.invalid"):
            await client.determine_remote(request("coap://nothing-here.invalid/"))
        assert time.monotonic() - started < 1.0

        # the server can send requests too (without ICMP errors)
        server_side = await server.determine_remote(request("coap://127.0.0.1:9/"))
        assert server_side.hostinfo == "127.0.0.1:9" and server.recognize_remote(server_side)
    finally:
        await client.shutdown()
        await server.shutdown()


@pytest.mark.core
async def test_concurrent_lookups_share_a_socket():
    server, server_manager, client, client_manager = await start("127.0.0.1")
    try:
        uri = f"coap://127.0.0.1:{server.sockname[1]}/"
        remotes = await asyncio.gather(*(client.determine_remote(request(uri)) for _ in range(5)))
        assert all(r is remotes[0] for r in remotes)
        assert len(client._sockets) == 1
    finally:
        await client.shutdown()
        await server.shutdown()


@pytest.mark.core
async def test_socket_pool_is_bounded_and_evicted_peers_still_work():
    server, server_manager, client, client_manager = await start("127.0.0.1")
    try:
        port = server.sockname[1]
        first = await send(client, client_manager, f"coap://127.0.0.1:{port}/", mid=1)
        # Other peers (127.0.0.0/8 is all loopback) push it out of the pool.
        for i in range(simple6.MAX_SOCKETS + 5):
            await client.determine_remote(request(f"coap://127.0.0.{2 + i}:{port}/"))
        assert len(client._sockets) == simple6.MAX_SOCKETS
        assert first.remote.peer_key not in client._sockets
        await server_manager.wait_for(lambda: len(server_manager.datagrams) == 1)

        # Sending to the evicted peer opens a socket again.
        again = request(f"coap://127.0.0.1:{port}/", mid=2, payload=b"again")
        again.remote = first.remote
        client.send(again)
        client.send(again)
        await server_manager.wait_for(lambda: len(server_manager.datagrams) == 3)
        assert Message.decode(server_manager.datagrams[2][0]).payload == b"again"
        response = Message(code=Code.CONTENT, mtype=Type.ACK, mid=2)
        response.remote = server_manager.datagrams[2][1]
        server.send(response)
        await client_manager.wait_for(lambda: client_manager.datagrams)
        assert client_manager.datagrams[0][1] == first.remote
        assert len(client._sockets) <= simple6.MAX_SOCKETS
    finally:
        await client.shutdown()
        await server.shutdown()


@pytest.mark.core
async def test_dual_stack_server():
    loop = asyncio.get_running_loop()
    manager = FakeManager()
    server = await MessageInterfaceSimpleServer.create_server((None, 0), manager, log, loop)
    client = await MessageInterfaceSimple6.create_client_transport_endpoint(FakeManager(), log, loop)
    try:
        port = server.sockname[1]
        hosts = ["127.0.0.1"] + (["[::1]"] if _ipv6_loopback_works() else [])
        for i, host in enumerate(hosts):
            await send(client, client.message_manager, f"coap://{host}:{port}/", mid=i)
            await manager.wait_for(lambda: len(manager.datagrams) == i + 1)
            assert manager.datagrams[i][1].hostinfo.startswith(host + ":")
    finally:
        await client.shutdown()
        await server.shutdown()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.core
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to count file descriptors")
async def test_shutdown_releases_everything(no_warnings):
    server, server_manager, client, client_manager = await start("127.0.0.1")
    port = server.sockname[1]
    await send(client, client_manager, f"coap://127.0.0.1:{port}/")
    await client.shutdown()
    await server.shutdown()
    gc.collect()
    before = _open_fds()
    for i in range(100):
        server, server_manager, client, client_manager = await start("127.0.0.1")
        port = server.sockname[1]
        sent = await send(client, client_manager, f"coap://127.0.0.1:{port}/")
        if i % 2:
            # a socket being reopened while shutting down
            client._sockets.pop(sent.remote.peer_key).transport.close()
            client.send(sent)
        await client.shutdown()
        await server.shutdown()
        await client.shutdown()
        # sending after shutdown is a quiet no-op
        client.send(sent)
    gc.collect()
    await asyncio.sleep(0)
    assert _open_fds() <= before
    assert not client._all_protocols and not client._opening
