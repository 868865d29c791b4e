"""Tests of the ``multicast`` argument of Context.create_server_context and
of aiocoap.transports.multicast, which checks it.

Requests really sent to groups: IPv4 on the loopback interface ``lo`` of
the test machine (Linux delivers IPv4 multicast there with
IP_MULTICAST_LOOP); IPv6 in a network namespace of its own on a veth
interface, because IPv6 multicast over ``lo`` does not work on Linux: the
interface has no MULTICAST flag (sending to ff02::fd through it fails with
ENETUNREACH), and even with the flag and a multicast route added in a
namespace, datagrams sent to a group joined on ``lo`` are not delivered.
Joining a group on ``lo`` does work for IPv6 too, which the error-free
creation of a context joining ("ff02::fd", "lo") shows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct

import pytest
from netns import SKIP_EXIT_CODE, run_in_network_namespace

from aiocoap import resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import MCAST_ALL, TransportTuning
from aiocoap.numbers.types import Type
from aiocoap.protocol import Context
from aiocoap.transports.multicast import MulticastGroup, multicast_groups

pytestmark = pytest.mark.core

LOOPBACK = "lo"
# Responses to multicast requests wait a random part of the leisure (5 s by
# default, RFC 7252 §8.2).
QUICK_LEISURE = TransportTuning(DEFAULT_LEISURE=0.01)
# an administratively scoped group (RFC 2365) that nothing joins by default
IPV4_TEST_GROUP = "239.255.83.1"


def lo_index() -> int:
    return socket.if_nametoindex(LOOPBACK)


class Hello(resource.Resource):
    async def render_get(self, request):
        return Message(payload=b"hello")


def site() -> resource.Site:
    root = resource.Site()
    root.add_resource(["hello"], Hello())
    return root


def free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::", 0))
        return s.getsockname()[1]


# --- checking the argument ---------------------------------------------------


def test_tuples_and_interface_names():
    index = lo_index()
    groups = multicast_groups([("224.0.1.187", LOOPBACK), [IPV4_TEST_GROUP, LOOPBACK], ("FF02::00FD", LOOPBACK)])
    assert groups == (
        MulticastGroup("224.0.1.187", LOOPBACK, index),
        MulticastGroup(IPV4_TEST_GROUP, LOOPBACK, index),
        MulticastGroup("ff02::fd", LOOPBACK, index),
    )
    assert [g.is_ipv6 for g in groups] == [False, False, True]
    shortcut = multicast_groups([LOOPBACK])
    assert [g.address for g in shortcut] == list(MCAST_ALL)
    assert {g.interface for g in shortcut} == {LOOPBACK}


def test_each_group_once_in_the_order_given():
    groups = multicast_groups([("ff05::fd", LOOPBACK), LOOPBACK, ("ff05::fd", LOOPBACK)])
    assert [g.address for g in groups] == ["ff05::fd"] + [a for a in MCAST_ALL if a != "ff05::fd"]


def test_nothing_requested():
    assert multicast_groups(None) == ()
    assert multicast_groups([]) == ()


@pytest.mark.parametrize(
    "spec,message",
    [
        (["no-such-interface0"], "multicast entry 'no-such-interface0': there is no network interface named"),
        ([("224.0.1.187", "no-such-interface0")], "there is no network interface named 'no-such-interface0'"),
        ([("224.0.1.187", "127.0.0.1")], "selecting one by a local address is not supported"),
        ([("224.0.1.187", 1)], "the interface must be given by its name"),
        ([("127.0.0.1", LOOPBACK)], "multicast entry ('127.0.0.1', 'lo'): 127.0.0.1 is not a multicast address"),
        ([("fe80::1", LOOPBACK)], "fe80::1 is not a multicast address"),
        ([("all-coap-nodes", LOOPBACK)], "'all-coap-nodes' is not an IP address"),
        ([("ff02::fd%lo", LOOPBACK)], "give the interface as the second element of the tuple, not as a zone"),
        ([(b"\xe0\x00\x01\xbb", LOOPBACK)], "the group address must be a string"),
        ([("224.0.1.187", LOOPBACK, 5683)], "is neither an interface name nor an (address, interface name) tuple"),
        ([("224.0.1.187",)], "multicast entry ('224.0.1.187',) is neither"),
        ([None], "multicast entry None is neither"),
        (LOOPBACK, "multicast must be a list of interface names and (address, interface name) tuples, not 'lo'"),
    ],
)
def test_bad_entries_are_named(spec, message):
    with pytest.raises(ValueError) as info:
        multicast_groups(spec)
    assert message in str(info.value)


async def test_bad_entries_fail_context_creation_before_anything_binds():
    port = free_port()
    with pytest.raises(ValueError, match="there is no network interface named 'no-such-interface0'"):
        await Context.create_server_context(
            site(), bind=("::", port), multicast=[LOOPBACK, "no-such-interface0"], transports=["udp6"]
        )
    # nothing was bound (and left bound) on the way
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::", port))


# --- warnings ------------------------------------------------------------------


async def test_warning_without_a_transport_that_joins_groups(caplog):
    caplog.set_level(logging.WARNING, logger="coap-server")
    context = await Context.create_server_context(
        site(), bind=("127.0.0.1", 0), multicast=[LOOPBACK], transports=["simplesocketserver"]
    )
    await context.shutdown()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Multicast groups were requested, but no transport that joins them (udp6) is loaded (simplesocketserver)"
    ]


async def test_no_warning_without_groups(caplog):
    caplog.set_level(logging.WARNING, logger="coap-server")
    context = await Context.create_server_context(site(), bind=("127.0.0.1", 0), transports=["simplesocketserver"])
    await context.shutdown()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_warning_when_bound_to_a_single_address(caplog):
    caplog.set_level(logging.WARNING, logger="coap-server")
    context = await Context.create_server_context(
        site(), bind=("127.0.0.1", 0), multicast=[(IPV4_TEST_GROUP, LOOPBACK)], transports=["udp6"]
    )
    await context.shutdown()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Not joining the requested multicast groups: the server is bound to 127.0.0.1 only" in warnings[0]


def _igmp_max_memberships() -> int:
    try:
        with open("/proc/sys/net/ipv4/igmp_max_memberships") as f:
            return int(f.read())
    except OSError:
        pytest.skip("no /proc/sys/net/ipv4/igmp_max_memberships to make the kernel refuse a group")


async def test_groups_the_kernel_refuses_are_warned_about_once_each(caplog):
    # A socket may join at most igmp_max_memberships IPv4 groups (ENOBUFS
    # beyond that): a refusal that every Linux produces.
    limit = _igmp_max_memberships()
    if limit > 200:
        pytest.skip(f"igmp_max_memberships is {limit}: too many groups to join to reach it")
    groups = [(f"239.255.84.{n}", LOOPBACK) for n in range(limit + 5)]
    caplog.set_level(logging.DEBUG, logger="coap-server")
    context = await Context.create_server_context(
        site(), bind=("::", free_port()), multicast=groups + groups[::-1], transports=["udp6"]
    )
    await context.shutdown()
    refused = [
        r.args[0] for r in caplog.records
        if r.levelno == logging.WARNING and r.msg.startswith("Could not join multicast group")
    ]
    assert len(refused) >= 5
    assert len(set(refused)) == len(refused)
    assert set(refused) <= {address for address, _ in groups}


# --- requests sent to groups ---------------------------------------------------


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple]] = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.received.put_nowait((data, addr))


async def ask_ipv4_group(group: str, port: int, token: bytes) -> Message | None:
    """Send a NON GET /hello to ``group`` through ``lo`` from a plain
    socket; return the response, None if none came within a second."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    # struct ip_mreqn: (group), local address, interface index
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, struct.pack("@4s4si", bytes(4), bytes(4), lo_index()))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(_Collector, sock=sock)
    try:
        request = Message(code=Code.GET, _mtype=Type.NON, _mid=0x4D43, _token=token, uri_path=["hello"])
        transport.sendto(request.encode(), (group, port))
        try:
            data, _ = await asyncio.wait_for(collector.received.get(), 1.0)
        except asyncio.TimeoutError:
            return None
        return Message.decode(data)
    finally:
        transport.close()


@pytest.mark.parametrize("group", ["224.0.1.187", IPV4_TEST_GROUP])
async def test_ipv4_group_on_loopback_is_answered(group):
    port = free_port()
    context = await Context.create_server_context(
        site(), bind=("::", port), multicast=[(group, LOOPBACK), ("ff02::fd", LOOPBACK)],
        transports=["udp6"], transport_tuning=QUICK_LEISURE,
    )
    try:
        response = await ask_ipv4_group(group, port, b"mc4")
    finally:
        await context.shutdown()
    assert response is not None, f"no response to a request sent to {group}"
    assert (response.code, response.mtype, response.token, response.payload) == (
        Code.CONTENT, Type.NON, b"mc4", b"hello"
    )


async def test_ipv4_group_not_requested_is_not_answered():
    port = free_port()
    context = await Context.create_server_context(
        site(), bind=("::", port), transports=["udp6"], transport_tuning=QUICK_LEISURE
    )
    try:
        assert await ask_ipv4_group(IPV4_TEST_GROUP, port, b"mc4") is None
    finally:
        await context.shutdown()


_IPV6_SCRIPT = r'''
import asyncio, json, os, socket
from aiocoap import resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import Type
from aiocoap.protocol import Context

class Hello(resource.Resource):
    async def render_get(self, request):
        return Message(payload=b"hello")

class Collector(asyncio.DatagramProtocol):
    def __init__(self):
        self.received = asyncio.Queue()
    def datagram_received(self, data, addr):
        self.received.put_nowait(data)

async def main():
    root = resource.Site()
    root.add_resource(["hello"], Hello())
    index = socket.if_nametoindex("mc0")
    context = await Context.create_server_context(
        root, bind=("::", 5683), multicast=__MULTICAST__, transports=["udp6"],
        transport_tuning=TransportTuning(DEFAULT_LEISURE=0.01),
    )
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
    sock.bind(("::", 0))
    transport, collector = await asyncio.get_running_loop().create_datagram_endpoint(Collector, sock=sock)
    answered = {}
    for n, group in enumerate(__GROUPS__):
        token = b"mc6-%d" % n
        request = Message(code=Code.GET, _mtype=Type.NON, _mid=n, _token=token, uri_path=["hello"])
        transport.sendto(request.encode(), (group, 5683, 0, index))
        answered[group] = None
        # (a request is received twice, through mc0 and through its peer
        # mc1 where the default groups are joined too: the responses to
        # earlier requests are skipped by their token)
        try:
            while answered[group] is None:
                response = Message.decode(await asyncio.wait_for(collector.received.get(), 1.0))
                if response.token == token:
                    answered[group] = [str(response.code), response.token.decode(), response.payload.decode()]
        except asyncio.TimeoutError:
            pass
    transport.close()
    await context.shutdown()
    print(json.dumps(answered))

if os.environ.get("AIOCOAP_TEST_LOOP") == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
'''

_VETH_SETUP = f"""
    ip link set lo up
    sysctl -qw net.ipv6.conf.default.accept_dad=0
    ip link add mc0 type veth peer name mc1 || exit {SKIP_EXIT_CODE}
    ip link set mc0 up
    ip link set mc1 up
"""


def run_ipv6_script(multicast, groups):
    script = _IPV6_SCRIPT.replace("__MULTICAST__", repr(multicast)).replace("__GROUPS__", repr(groups))
    result = run_in_network_namespace(_VETH_SETUP, script)
    if result.returncode == SKIP_EXIT_CODE:
        pytest.skip(f"no veth interfaces in this kernel: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ipv6_groups_on_a_veth_interface_are_answered():
    groups = ["ff02::fd", "ff05::fd", "ff05::1", "ff15::c0a9:1"]
    answered = run_ipv6_script(["mc0", ("ff15::c0a9:1", "mc0"), ("ff02::fd", LOOPBACK)], groups)
    for n, group in enumerate(groups):
        assert answered[group] == ["2.05 Content", f"mc6-{n}", "hello"], group


def test_ipv6_groups_not_requested_are_not_answered():
    # the All-CoAP-Nodes groups are joined by default, the others are not
    answered = run_ipv6_script([], ["ff05::fd", "ff05::1", "ff15::c0a9:1"])
    assert answered["ff05::fd"] is not None
    assert answered["ff05::1"] is None and answered["ff15::c0a9:1"] is None
