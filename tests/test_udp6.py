"""Tests for aiocoap.transports.udp6 (and the recvmsg transport under it),
over real sockets on the loopback interfaces, driven by a fake message
layer that records what the transport hands up.

Covered: datagrams both ways over IPv4 (V4MAPPED) and IPv6; answering from
the address a request was sent to (packet info); ICMP port unreachable
turned into dispatch_error for the right remote, without reception
stopping (on uvloop, libuv drops a poll handle on POLLERR); stale ICMP
errors reported by the kernel on a later send; name resolution; zone
identifiers; a flood of random datagrams; clean shutdown; the
EndpointAddress properties.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import json
import random
import select
import socket
import struct
import time

import pytest

from aiocoap import error
from aiocoap.message import Message, UndecidedRemote
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.transports.generic_udp import literal_sockaddr
from aiocoap.transports.udp6 import MessageInterfaceUDP6, SockExtendedErr, UDP6EndpointAddress
from netns import SKIP_EXIT_CODE, run_in_network_namespace
from aiocoap.util.asyncio.recvmsg import (
    RecvmsgDatagramProtocol,
    create_recvmsg_datagram_endpoint,
)

log = logging.getLogger("test-udp6")


def _ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback_works(), reason="IPv6 loopback (::1) is not available here")

LOOPBACKS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param("::1", id="ipv6", marks=needs_ipv6),
]


from transport_fakes import FakeManager  # noqa: E402  (shared with test_simple6)


def collect_loop_exceptions() -> list:
    exceptions: list = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: exceptions.append(context))
    return exceptions


def uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def request(uri: str, mid: int = 1, payload: bytes = b"") -> Message:
    return Message(code=Code.GET, _mtype=Type.CON, _mid=mid, _token=mid.to_bytes(2, "big"), uri=uri, payload=payload)


async def start_pair():
    loop = asyncio.get_running_loop()
    server_manager, client_manager = FakeManager(), FakeManager()
    server = await MessageInterfaceUDP6.create_server_transport_endpoint(server_manager, log, loop, ("::", 0))
    client = await MessageInterfaceUDP6.create_client_transport_endpoint(client_manager, log, loop)
    return server, server_manager, client, client_manager


async def send_request(client, client_manager, host, port, mid=1, payload=b""):
    message = request(f"coap://{uri_host(host)}:{port}/path", mid, payload)
    message.remote = await client.determine_remote(message)
    client_manager.sending = True
    try:
        client.send(message)
    finally:
        client_manager.sending = False
    return message


def closed_port(family=socket.AF_INET6) -> int:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        return s.getsockname()[1]


# --- exchanging datagrams ------------------------------------------------------


@pytest.mark.core
@pytest.mark.parametrize("host", LOOPBACKS)
async def test_request_and_response(host):
    exceptions = collect_loop_exceptions()
    server, server_manager, client, client_manager = await start_pair()
    try:
        port = server.local_port
        sent = await send_request(client, client_manager, host, port, payload=b"ping")
        await server_manager.wait_for(lambda: server_manager.datagrams)
        data, remote = server_manager.datagrams[0]
        incoming = Message.decode(data, remote)
        assert incoming.payload == b"ping" and incoming.opt.uri_path == ("path",)
        assert remote.interface is server and server.recognize_remote(remote)
        assert not client.recognize_remote(remote)
        assert remote.hostinfo == f"{uri_host(host)}:{client.local_port}"
        assert remote.hostinfo_local == f"{uri_host(host)}:{port}"
        assert remote.uri_base_local == f"coap://{uri_host(host)}:{port}"
        assert not remote.is_multicast and not remote.is_multicast_locally
        assert remote.as_response_address() is remote
        # Determining the remote of a message that already has one of ours
        assert await server.determine_remote(incoming) is remote

        response = Message(code=Code.CONTENT, _mtype=Type.ACK, _mid=incoming.mid, _token=incoming.token, payload=b"pong")
        response.remote = remote.as_response_address()
        server.send(response)
        await client_manager.wait_for(lambda: client_manager.datagrams)
        data, response_remote = client_manager.datagrams[0]
        assert Message.decode(data).payload == b"pong"
        # The response's remote is the one the request was sent to, so the
        # token layer can match them.
        assert response_remote == sent.remote and hash(response_remote) == hash(sent.remote)
        assert response_remote.uri_base == f"coap://{uri_host(host)}:{port}"
        assert not server_manager.errors and not client_manager.errors
    finally:
        await client.shutdown()
        await server.shutdown()
    assert not exceptions


@pytest.mark.core
async def test_response_from_the_address_the_request_went_to():
    # The whole of 127.0.0.0/8 is on the loopback interface; the kernel would
    # answer the client at 127.0.0.1 from 127.0.0.1 by itself.
    server, server_manager, client, client_manager = await start_pair()
    try:
        port = server.local_port
        sent = await send_request(client, client_manager, "127.0.0.2", port)
        await server_manager.wait_for(lambda: server_manager.datagrams)
        data, remote = server_manager.datagrams[0]
        assert remote.hostinfo == f"127.0.0.1:{client.local_port}"
        assert remote.hostinfo_local == f"127.0.0.2:{port}"
        assert repr(remote) == f"<UDP6EndpointAddress [::ffff:127.0.0.1]:{client.local_port} with local address>"

        response = Message(code=Code.CONTENT, _mtype=Type.ACK, _mid=1, _token=b"\x00\x01")
        response.remote = remote.as_response_address()
        server.send(response)
        await client_manager.wait_for(lambda: client_manager.datagrams)
        assert client_manager.datagrams[0][1].sockaddr == ("::ffff:127.0.0.2", port, 0, 0)
        assert client_manager.datagrams[0][1] == sent.remote

        # Control: without packet info, the kernel picks 127.0.0.1, so the
        # check above really tested the packet info round trip.
        response.remote = UDP6EndpointAddress(remote.sockaddr, server)
        server.send(response)
        await client_manager.wait_for(lambda: len(client_manager.datagrams) == 2)
        assert client_manager.datagrams[1][1].sockaddr == ("::ffff:127.0.0.1", port, 0, 0)
    finally:
        await client.shutdown()
        await server.shutdown()


# --- ICMP errors -----------------------------------------------------------------


@pytest.mark.core
@pytest.mark.parametrize("host", LOOPBACKS)
async def test_port_unreachable_is_dispatched_and_reception_goes_on(host):
    exceptions = collect_loop_exceptions()
    server, server_manager, client, client_manager = await start_pair()
    try:
        port = server.local_port
        nowhere = closed_port()
        for round_ in range(3):
            started = time.monotonic()
            sent = await send_request(client, client_manager, host, nowhere, mid=round_)
            await client_manager.wait_for(lambda: len(client_manager.errors) == round_ + 1, timeout=1.0)
            assert time.monotonic() - started < 1.0
            exc, remote = client_manager.errors[round_]
            assert isinstance(exc, ConnectionRefusedError)
            assert remote == sent.remote and remote.interface is client

            # Both directions keep working on the socket that got the error.
            await send_request(client, client_manager, host, port, mid=100 + round_)
            await server_manager.wait_for(lambda: len(server_manager.datagrams) == round_ + 1)
            _, client_address = server_manager.datagrams[round_]
            response = Message(code=Code.CONTENT, _mtype=Type.ACK, _mid=100 + round_)
            response.remote = client_address
            server.send(response)
            await client_manager.wait_for(lambda: len(client_manager.datagrams) == round_ + 1)
        assert client_manager.reentrant_errors == 0
        assert not server_manager.errors
    finally:
        await client.shutdown()
        await server.shutdown()
    assert not exceptions


@pytest.mark.core
async def test_stale_icmp_error_reported_on_a_later_send():
    """Linux reports a pending ICMP error on the next send and refuses that
    send; the error still reaches the right remote, and the refused
    datagram goes out anyway."""
    server, server_manager, client, client_manager = await start_pair()
    try:
        nowhere = closed_port()
        failing = await send_request(client, client_manager, "127.0.0.1", nowhere, mid=1)
        # Wait (without giving the loop a chance to read) until the error is
        # pending on the socket.
        poller = select.poll()
        poller.register(client._transport.get_extra_info("socket").fileno(), 0)
        assert poller.poll(1000), "no ICMP error arrived"

        await send_request(client, client_manager, "127.0.0.1", server.local_port, mid=2, payload=b"after")
        await server_manager.wait_for(lambda: server_manager.datagrams)
        assert Message.decode(server_manager.datagrams[0][0]).payload == b"after"
        await client_manager.wait_for(lambda: client_manager.errors)
        assert len(client_manager.errors) == 1
        assert client_manager.errors[0][1] == failing.remote
        assert client_manager.reentrant_errors == 0

        # and the client still receives
        response = Message(code=Code.CONTENT, _mtype=Type.ACK, _mid=2)
        response.remote = server_manager.datagrams[0][1]
        server.send(response)
        await client_manager.wait_for(lambda: client_manager.datagrams)
    finally:
        await client.shutdown()
        await server.shutdown()


@pytest.mark.core
async def test_queued_error_alongside_data():
    """An error queue entry whose pending flag is gone (here: read through
    SO_ERROR) makes the kernel signal POLLERR next to the incoming data; on
    uvloop, that ends the poll handle, which must not end reception."""
    server, server_manager, client, client_manager = await start_pair()
    try:
        sock = client._transport.get_extra_info("socket")
        failing = await send_request(client, client_manager, "127.0.0.1", closed_port(), mid=1)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        assert poller.poll(1000), "no ICMP error arrived"
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 111
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            target = ("127.0.0.1", client.local_port)
            sender.sendto(b"first", target)
            assert poller.poll(1000)
            await client_manager.wait_for(lambda: client_manager.datagrams and client_manager.errors)
            assert client_manager.errors[0][1] == failing.remote
            for payload in (b"second", b"third"):
                sender.sendto(payload, target)
                await client_manager.wait_for(lambda: client_manager.datagrams[-1][0] == payload)
    finally:
        await client.shutdown()
        await server.shutdown()


@pytest.mark.core
async def test_send_error_is_dispatched_later():
    loop = asyncio.get_running_loop()
    manager = FakeManager()
    client = await MessageInterfaceUDP6.create_client_transport_endpoint(manager, log, loop)
    try:
        # Linux refuses to send to port 0 (EINVAL) right in the send call.
        message = request("coap://127.0.0.1:0/")
        message.remote = await client.determine_remote(message)
        manager.sending = True
        client.send(message)
        manager.sending = False
        assert not manager.errors
        await manager.wait_for(lambda: manager.errors)
        exc, remote = manager.errors[0]
        assert isinstance(exc, OSError) and remote is message.remote
    finally:
        await client.shutdown()


def test_sock_extended_err():
    raw = struct.pack("@IBBBBII", 111, 2, 3, 3, 0, 0, 0) + bytes(16)
    err = SockExtendedErr.load(raw)
    assert err.ee_errno == 111 and err.ee_origin == 2 and (err.ee_type, err.ee_code) == (3, 3)
    with pytest.raises(struct.error):
        SockExtendedErr.load(b"\x00" * 4)


# --- the recvmsg transport under it ---------------------------------------------


class _FullSocket(socket.socket):
    """A socket whose send buffer is always full."""

    def sendto(self, *args):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    def sendmsg(self, *args):
        raise BlockingIOError(11, "Resource temporarily unavailable")


@pytest.mark.core
async def test_full_send_buffer_drops_quietly(caplog):
    loop = asyncio.get_running_loop()
    sock = _FullSocket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.bind(("::1" if _ipv6_loopback_works() else "::", 0))
    transport, protocol = await create_recvmsg_datagram_endpoint(loop, RecvmsgDatagramProtocol, sock, errqueue=True)
    try:
        with caplog.at_level(logging.DEBUG):
            transport.sendmsg(b"x", (), 0, ("::1", 9, 0, 0))
            transport.sendto(b"x", ("::1", 9, 0, 0))
        assert sum("send buffer full" in r.getMessage() for r in caplog.records) == 2
    finally:
        transport.close()
        await asyncio.sleep(0)
    assert sock.fileno() == -1


@pytest.mark.core
async def test_protocol_exception_does_not_stop_reading():
    loop = asyncio.get_running_loop()
    exceptions = collect_loop_exceptions()
    received = []
    all_there = asyncio.Event()

    class Grumpy(RecvmsgDatagramProtocol):
        def datagram_msg_received(self, data, ancdata, flags, address):
            received.append(data)
            if len(received) == 4:
                all_there.set()
            if data == b"bad":
                raise ValueError("grumpy")

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    transport, _ = await create_recvmsg_datagram_endpoint(loop, Grumpy, sock)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for payload in (b"bad", b"good", b"bad", b"fine"):
            sender.sendto(payload, sock.getsockname())
        await asyncio.wait_for(all_there.wait(), 2)
    transport.close()
    await asyncio.sleep(0)
    assert received == [b"bad", b"good", b"bad", b"fine"]
    assert [type(c["exception"]) for c in exceptions] == [ValueError, ValueError]


@pytest.mark.core
async def test_work_a_datagram_starts_runs_before_the_look_for_more(monkeypatch):
    """A wakeup delivers one datagram and reads the others only after the
    loop ran what that delivery scheduled (a server's render, which sends
    the response): with one request in flight, the read that finds nothing
    more is then no longer between the request and its response. The data
    read ahead like this does not make the wakeup that was for it look
    like an error wakeup (which would register the reader anew)."""
    loop = asyncio.get_running_loop()
    order = []
    all_there = asyncio.Event()

    class Scheduling(RecvmsgDatagramProtocol):
        def datagram_msg_received(self, data, ancdata, flags, address):
            order.append(data)
            loop.call_soon(order.append, b"work for " + data)
            if data == b"3":
                loop.call_soon(all_there.set)

    reregistered = []
    original_remove_reader = loop.remove_reader
    monkeypatch.setattr(loop, "remove_reader", lambda fd: reregistered.append(fd) or original_remove_reader(fd))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    transport, _ = await create_recvmsg_datagram_endpoint(loop, Scheduling, sock)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for payload in (b"1", b"2", b"3"):
                sender.sendto(payload, sock.getsockname())
            await asyncio.wait_for(all_there.wait(), 2)
        assert order == [b"1", b"work for 1", b"2", b"3", b"work for 2", b"work for 3"]
        assert reregistered == []
    finally:
        transport.close()
        await asyncio.sleep(0)


@pytest.mark.core
async def test_a_socket_with_bursts_reads_whole_batches_at_once():
    """Once a look for more datagrams found some (a client with many
    requests in flight), wakeups read whole batches at once again, and
    only QUIET_AFTER wakeups in a row with at most one datagram each bring
    back the one-at-a-time reading."""
    from aiocoap.util.asyncio.recvmsg import QUIET_AFTER

    loop = asyncio.get_running_loop()
    order = []
    arrived = asyncio.Event()

    class Scheduling(RecvmsgDatagramProtocol):
        def datagram_msg_received(self, data, ancdata, flags, address):
            order.append(data)
            loop.call_soon(order.append, b"work for " + data)
            if data.endswith(b"last"):
                loop.call_soon(arrived.set)

    async def burst(*payloads):
        order.clear()
        arrived.clear()
        for payload in payloads:
            sender.sendto(payload, sock.getsockname())
        await asyncio.wait_for(arrived.wait(), 2)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    transport, _ = await create_recvmsg_datagram_endpoint(loop, Scheduling, sock)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            await burst(b"1", b"2", b"3last")
            assert order[:3] == [b"1", b"work for 1", b"2"]
            await burst(b"4", b"5", b"6last")
            assert order[:4] == [b"4", b"5", b"6last", b"work for 4"]
            for i in range(QUIET_AFTER):
                await burst(b"%dlast" % i)
            await burst(b"7", b"8last")
            assert order[:3] == [b"7", b"work for 7", b"8last"]
    finally:
        transport.close()
        await asyncio.sleep(0)


# --- name resolution -------------------------------------------------------------


@pytest.mark.core
async def test_determine_remote():
    loop = asyncio.get_running_loop()
    manager = FakeManager()
    client = await MessageInterfaceUDP6.create_client_transport_endpoint(manager, log, loop)
    other = await MessageInterfaceUDP6.create_client_transport_endpoint(FakeManager(), log, loop)
    try:
        literal = await client.determine_remote(request("coap://127.0.0.1/"))
        assert literal.sockaddr == ("::ffff:127.0.0.1", 5683, 0, 0)
        assert literal.hostinfo == "127.0.0.1" and literal.uri_base == "coap://127.0.0.1"
        assert client.recognize_remote(literal) and not other.recognize_remote(literal)

        named = await client.determine_remote(request("coap://localhost:61616/"))
        assert named.sockaddr[0] in ("::ffff:127.0.0.1", "::1")
        assert named.sockaddr[1] == 61616

        # Without a URI remote, the Uri-Host and Uri-Port options say where.
        bare = Message(code=Code.GET, uri_host="127.0.0.1", uri_port=1234)
        assert (await client.determine_remote(bare)).sockaddr == ("::ffff:127.0.0.1", 1234, 0, 0)
        assert await client.determine_remote(Message(code=Code.GET)) is None

        # Not ours: other schemes, other transports' addresses
        assert await client.determine_remote(request("coap+tcp://127.0.0.1/")) is None
        assert await client.determine_remote(request("coaps://127.0.0.1/")) is None
        foreign = request("coap://127.0.0.1/")
        foreign.remote = literal
        assert await other.determine_remote(foreign) is None
        assert await client.determine_remote(foreign) is literal
        unrouted = Message(code=Code.GET)
        unrouted.remote = UndecidedRemote("coap", "[::1]:99")
        assert (await client.determine_remote(unrouted)).sockaddr == ("::1", 99, 0, 0)
    finally:
        await client.shutdown()
        await other.shutdown()


@pytest.mark.core
async def test_unknown_host_fails_quickly():
    loop = asyncio.get_running_loop()
    client = await MessageInterfaceUDP6.create_client_transport_endpoint(FakeManager(), log, loop)
    try:
        started = time.monotonic()
        with pytest.raises(error.ResolutionError) as caught:
            await client.determine_remote(request("coap://no-such-host.invalid/"))
        assert time.monotonic() - started < 1.0
        assert "no-such-host.invalid" in str(caught.value)
        assert isinstance(caught.value, error.NetworkError)
    finally:
        await client.shutdown()


@pytest.mark.core
async def test_zone_identifiers():
    loop = asyncio.get_running_loop()
    lo_index = socket.if_nametoindex("lo")
    assert literal_sockaddr("fe80::1%lo", 5683, socket.AF_INET6) == ("fe80::1", 5683, 0, lo_index)
    assert literal_sockaddr("fe80::1%7", 5683, socket.AF_INET6) == ("fe80::1", 5683, 0, 7)
    with pytest.raises(error.ResolutionError, match="no-such-if0"):
        literal_sockaddr("fe80::1%no-such-if0", 5683, socket.AF_INET6)

    client = await MessageInterfaceUDP6.create_client_transport_endpoint(FakeManager(), log, loop)
    try:
        remote = await client.determine_remote(request("coap://[fe80::1%25lo]:1234/"))
        assert remote.sockaddr == ("fe80::1", 1234, 0, lo_index)
        assert remote.hostinfo == "[fe80::1%25lo]:1234"
        assert remote.uri_base == "coap://[fe80::1%25lo]:1234"
        assert repr(remote) == "<UDP6EndpointAddress [fe80::1%25lo]:1234>"
        # the same address without zone is a different peer
        plain = await client.determine_remote(request("coap://[fe80::1]:1234/"))
        assert plain != remote
    finally:
        await client.shutdown()


# --- robustness ------------------------------------------------------------------


@pytest.mark.core
async def test_random_datagrams_are_all_delivered():
    exceptions = collect_loop_exceptions()
    server, server_manager, client, client_manager = await start_pair()
    rng = random.Random(7683)
    sent = []
    try:
        target = ("127.0.0.1", server.local_port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for chunk in range(100):
                for _ in range(100):
                    length = rng.choice((0, 1, 4, rng.randrange(1500), rng.randrange(9000)))
                    data = rng.randbytes(length)
                    sender.sendto(data, target)
                    sent.append(data)
                # Paced, so that the kernel has no reason to drop any.
                await server_manager.wait_for(lambda: len(server_manager.datagrams) == len(sent))
        assert [d for d, _ in server_manager.datagrams] == sent
        assert len({remote for _, remote in server_manager.datagrams}) == 1

        # the socket keeps working for regular traffic
        await send_request(client, client_manager, "127.0.0.1", server.local_port, payload=b"still there")
        await server_manager.wait_for(lambda: len(server_manager.datagrams) == len(sent) + 1)
        assert Message.decode(server_manager.datagrams[-1][0]).payload == b"still there"
    finally:
        await client.shutdown()
        await server.shutdown()
    assert not exceptions
    assert not server_manager.errors


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.core
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to count file descriptors")
async def test_shutdown_releases_everything(no_warnings):
    loop = asyncio.get_running_loop()
    # one warm-up round, so lazily created loop resources are not counted
    first = await MessageInterfaceUDP6.create_client_transport_endpoint(FakeManager(), log, loop)
    await first.shutdown()
    gc.collect()
    before = _open_fds()
    for i in range(100):
        manager = FakeManager()
        if i % 2:
            transport = await MessageInterfaceUDP6.create_client_transport_endpoint(manager, log, loop)
        else:
            transport = await MessageInterfaceUDP6.create_server_transport_endpoint(manager, log, loop, ("127.0.0.1", 0))
        sock = transport._transport.get_extra_info("socket")
        await transport.shutdown()
        await transport.shutdown()  # idempotent
        assert sock.fileno() == -1
        # Sending after shutdown is a quiet no-op.
        message = request("coap://127.0.0.1:9/")
        message.remote = UDP6EndpointAddress(("::ffff:127.0.0.1", 9, 0, 0), transport)
        transport.send(message)
    gc.collect()
    assert _open_fds() <= before


@pytest.mark.core
async def test_server_bound_to_a_single_address():
    loop = asyncio.get_running_loop()
    manager = FakeManager()
    server = await MessageInterfaceUDP6.create_server_transport_endpoint(manager, log, loop, ("127.0.0.1", 0))
    client = await MessageInterfaceUDP6.create_client_transport_endpoint(FakeManager(), log, loop)
    try:
        sockname = server._transport.get_extra_info("sockname")
        assert sockname[0] == "::ffff:127.0.0.1"
        await send_request(client, client._message_manager, "127.0.0.1", sockname[1])
        await manager.wait_for(lambda: manager.datagrams)
    finally:
        await client.shutdown()
        await server.shutdown()
    with pytest.raises(error.ResolutionError):
        await MessageInterfaceUDP6.create_server_transport_endpoint(manager, log, loop, ("nowhere.invalid", 0))


# --- addresses -------------------------------------------------------------------


def _pktinfo(address: str, ifindex: int = 0) -> bytes:
    if ":" in address:
        packed = socket.inet_pton(socket.AF_INET6, address)
    else:
        packed = bytes(10) + b"\xff\xff" + socket.inet_pton(socket.AF_INET, address)
    return packed + struct.pack("@I", ifindex)


class _Interface:
    local_port = 5683


def test_address_properties():
    interface = _Interface()
    v4 = UDP6EndpointAddress(("::ffff:192.0.2.1", 5683, 0, 0), interface, pktinfo=_pktinfo("192.0.2.2"))
    assert v4.hostinfo == "192.0.2.1" and v4.hostinfo_local == "192.0.2.2"
    assert v4.uri == v4.uri_base == "coap://192.0.2.1"
    assert v4.uri_base_local == "coap://192.0.2.2"
    assert v4.scheme == "coap"
    assert repr(v4) == "<UDP6EndpointAddress [::ffff:192.0.2.1]:5683 with local address>"

    v6 = UDP6EndpointAddress(("2001:db8::1", 61616, 0, 0), interface)
    assert v6.hostinfo == "[2001:db8::1]:61616"
    with pytest.raises(error.AnonymousHost):
        v6.hostinfo_local
    with pytest.raises(error.AnonymousHost):
        v6.uri_base_local
    assert repr(v6) == "<UDP6EndpointAddress [2001:db8::1]:61616>"

    # equality ignores the local address and the flow label, not the interface
    assert v6 == UDP6EndpointAddress(("2001:db8::1", 61616, 1234, 0), interface, pktinfo=_pktinfo("::1"))
    assert hash(v6) == hash(UDP6EndpointAddress(("2001:db8::1", 61616, 0, 0), interface, pktinfo=_pktinfo("::1")))
    assert v6 != UDP6EndpointAddress(("2001:db8::1", 61616, 0, 0), _Interface())
    assert v6 != UDP6EndpointAddress(("2001:db8::1", 61617, 0, 0), interface)
    assert v6 != "coap://[2001:db8::1]:61616"


def test_multicast_addresses():
    interface = _Interface()
    for group in ("ff02::fd", "ff05::fd"):
        request_remote = UDP6EndpointAddress(("fe80::2", 40000, 0, 3), interface, pktinfo=_pktinfo(group, 3))
        assert request_remote.is_multicast_locally and not request_remote.is_multicast
        response_remote = request_remote.as_response_address()
        assert response_remote == request_remote
        assert response_remote.pktinfo == _pktinfo("::", 3)
        assert not response_remote.is_multicast_locally

    request4 = UDP6EndpointAddress(("::ffff:192.0.2.7", 40000, 0, 0), interface, pktinfo=_pktinfo("224.0.1.187", 2))
    assert request4.is_multicast_locally
    # an IPv4 source must stay V4MAPPED, or the kernel refuses the send
    assert request4.as_response_address().pktinfo == _pktinfo("0.0.0.0", 2)

    assert UDP6EndpointAddress(("::ffff:239.255.255.255", 5683, 0, 0), interface).is_multicast
    assert not UDP6EndpointAddress(("::ffff:240.0.0.1", 5683, 0, 0), interface).is_multicast
    assert not UDP6EndpointAddress(("::ffff:223.255.255.255", 5683, 0, 0), interface).is_multicast
    assert not UDP6EndpointAddress(("fe80::1", 5683, 0, 1), interface).is_multicast


def test_link_local_local_address():
    interface = _Interface()
    lo_index = socket.if_nametoindex("lo")
    remote = UDP6EndpointAddress(("fe80::2", 40000, 0, lo_index), interface, pktinfo=_pktinfo("fe80::1", lo_index))
    assert remote.hostinfo == "[fe80::2%25lo]:40000"
    assert remote.hostinfo_local == "[fe80::1%25lo]"


# --- multicast, in a network namespace of its own -----------------------------

_MULTICAST_SCRIPT = r'''
import asyncio, json, logging, os, sys
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.transports.udp6 import MessageInterfaceUDP6

class Manager:
    def __init__(self):
        self.datagrams = []
        self.event = asyncio.Event()
    def dispatch_datagram(self, data, remote):
        self.datagrams.append((data, remote))
        self.event.set()
    def dispatch_error(self, exc, remote):
        print("unexpected error", exc, remote, file=sys.stderr)

async def next_datagram(manager):
    await asyncio.wait_for(manager.event.wait(), 2)
    manager.event.clear()
    return manager.datagrams[-1]

async def main():
    loop = asyncio.get_running_loop()
    log = logging.getLogger("multicast")
    server_manager, client_manager = Manager(), Manager()
    # the default bind: all addresses, port 5683, groups joined
    server = await MessageInterfaceUDP6.create_server_transport_endpoint(server_manager, log, loop, (None, None))
    client = await MessageInterfaceUDP6.create_client_transport_endpoint(client_manager, log, loop)
    results = {"server_port": server.local_port}
    for uri in sys.argv[1:]:
        request = Message(code=Code.GET, _mtype=Type.NON, _mid=1, _token=b"t", uri=uri)
        request.remote = await client.determine_remote(request)
        client.send(request)
        _, remote = await next_datagram(server_manager)
        response = Message(code=Code.CONTENT, _mtype=Type.NON, _mid=2, _token=b"t")
        response.remote = remote.as_response_address()
        server.send(response)
        _, responder = await next_datagram(client_manager)
        results[uri] = {
            "request_is_multicast": request.remote.is_multicast,
            "received_locally_multicast": remote.is_multicast_locally,
            "received_at": remote.hostinfo_local,
            "response_address_multicast": response.remote.is_multicast_locally,
            "responder_multicast": responder.is_multicast,
            "responder": responder.hostinfo,
        }
    await client.shutdown()
    await server.shutdown()
    print(json.dumps(results))

if os.environ.get("AIOCOAP_TEST_LOOP") == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
'''


@pytest.mark.core
def test_multicast_request_and_unicast_response():
    setup = """
        ip link set lo multicast on
        ip link set lo up
        ip route add 224.0.0.0/4 dev lo src 127.0.0.1
        sysctl -qw net.ipv6.conf.default.accept_dad=0
        ip link add mc0 type veth peer name mc1 || exit 77
        ip link set mc0 up
        ip link set mc1 up
    """
    uris = ["coap://224.0.1.187/", "coap://[ff02::fd%25mc0]/", "coap://[ff05::fd%25mc0]/"]
    script = _MULTICAST_SCRIPT.replace("sys.argv[1:]", repr(uris))
    result = run_in_network_namespace(setup, script)
    if result.returncode == SKIP_EXIT_CODE:
        pytest.skip(f"no veth interfaces in this kernel: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert results["server_port"] == 5683
    for uri in uris:
        outcome = results[uri]
        assert outcome["request_is_multicast"], uri
        assert outcome["received_locally_multicast"], uri
        assert not outcome["response_address_multicast"], uri
        assert not outcome["responder_multicast"], uri
    assert results[uris[0]]["received_at"] == "224.0.1.187"
    assert results[uris[0]]["responder"] == "127.0.0.1"
    assert results[uris[1]]["received_at"].startswith("[ff02::fd%25mc")
    assert results[uris[1]]["responder"].startswith("[fe80::")
