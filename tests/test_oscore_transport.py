"""OSCORE end to end (aiocoap.transports.oscore and aiocoap.oscore_sitewrapper):
real client and server Contexts on loopback over UDP and TCP, with a
recording UDP relay between them where the test looks at the wire.

Covered: methods, plain requests next to protected ones, resources that
require OSCORE, blockwise inside OSCORE, observations (Partial IVs,
cancellation, re-registration, large notifications), the RFC 8613 §8.2
error answers (replay, tampering, unknown kid, wrong key, kid context),
Echo recovery of a lost replay window (Appendix B.1.2) including a server
process killed with SIGKILL, and exclusive use of context directories.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("cbor2")
pytest.importorskip("filelock")

from aiocoap import error, oscore, resource  # noqa: E402
from aiocoap._oscore.encoding import OscoreOptionValue, decode_partial_iv  # noqa: E402
from aiocoap.credentials import CredentialsMap  # noqa: E402
from aiocoap.message import Message  # noqa: E402
from aiocoap.numbers.codes import Code  # noqa: E402
from aiocoap.numbers.constants import TransportTuning  # noqa: E402
from aiocoap.numbers.types import Type  # noqa: E402
from aiocoap.optiontypes import OpaqueOption  # noqa: E402
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper, RequireOSCORE, security_context_of  # noqa: E402
from aiocoap.protocol import Context  # noqa: E402
from aiocoap.transports import oscore as oscore_transport  # noqa: E402
from aiocoap.transports.oscore import (  # noqa: E402
    OSCOREAddress,
    ResponseVerificationFailed,
    SecurityContextUnavailable,
    UnprotectedResponse,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGTEST = os.path.join(REPO, "contrib", "oscore-plugtest")
QUICK = TransportTuning(ACK_TIMEOUT=0.05, MAX_RETRANSMIT=3, EMPTY_ACK_DELAY=0.02)
TIMEOUT = 5.0
SECRET = {"hex": "0102030405060708090a0b0c0d0e0f10"}
SALT = {"hex": "9e7ca92223786340"}


# --- security contexts ------------------------------------------------------------


def write_context(directory, sender, recipient, secret=SECRET, id_context=None, sequence=None):
    os.makedirs(directory, exist_ok=True)
    settings = {"sender-id": {"ascii": sender}, "recipient-id": {"ascii": recipient}}
    if id_context is not None:
        settings["id-context"] = {"ascii": id_context}
    with open(os.path.join(directory, "settings.json"), "w") as f:
        json.dump(settings, f)
    with open(os.path.join(directory, "secrets.json"), "w") as f:
        json.dump({"secret": secret, "salt": SALT}, f)
    if sequence is not None:
        with open(os.path.join(directory, "sequence.json"), "w") as f:
            json.dump(sequence, f)
    return str(directory)


def context_pair(tmp_path, name="", id_context=None):
    """Directories of a fresh server context and its client peer: client
    sender ID "cli<name>", server sender ID "srv"."""
    client = write_context(tmp_path / f"client{name}", f"cli{name}", "srv", id_context=id_context)
    server = write_context(tmp_path / f"server{name}", "srv", f"cli{name}", id_context=id_context)
    return client, server


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- resources -------------------------------------------------------------------


def who(request) -> bytes:
    secctx = security_context_of(request)
    if secctx is None:
        return b"plain"
    return os.path.basename(secctx.basedir).encode()


class Store(resource.ObservableResource):
    """GET the value, PUT it, POST to append, DELETE to clear, FETCH for
    the value in upper case; observable. Responses to GET say who asked."""

    def __init__(self, value=b"hello"):
        super().__init__()
        self.value = value
        self.seen = []
        self.max_age = None
        self.counts = []

    def update_observation_count(self, count):
        self.counts.append(count)

    async def render_get(self, request):
        self.seen.append(request)
        response = Message(payload=who(request) + b":" + self.value)
        if self.max_age is not None:
            response.opt.max_age = self.max_age
        return response

    async def render_put(self, request):
        self.value = request.payload
        return Message(code=Code.CHANGED, payload=b"%d" % len(request.payload))

    async def render_post(self, request):
        self.value += request.payload
        return Message(code=Code.CHANGED)

    async def render_delete(self, request):
        self.value = b""
        return Message(code=Code.DELETED)

    async def render_fetch(self, request):
        return Message(payload=self.value.upper() + request.payload)


class Big(resource.ObservableResource):
    def __init__(self, size):
        super().__init__()
        self.generation = 0
        self.size = size
        self.uploads = []

    def body(self):
        return (b"%d:" % self.generation + bytes(range(256)) * (self.size // 256 + 1))[: self.size]

    async def render_get(self, request):
        return Message(payload=self.body())

    async def render_put(self, request):
        self.uploads.append(request.payload)
        return Message(code=Code.CHANGED, payload=b"%d" % len(request.payload))


class Secret(RequireOSCORE, resource.ObservableResource):
    async def render_get(self, request):
        return Message(payload=b"secret for " + who(request))


def make_site():
    site = resource.Site()
    store = Store()
    site.add_resource(["store"], store)
    big = Big(5000)
    site.add_resource(["big"], big)
    site.add_resource(["secret"], Secret())
    site.store = store
    site.big = big
    return site


# --- the recording relay ----------------------------------------------------------


class Relay(asyncio.DatagramProtocol):
    """Forwards datagrams between one client and a server port, recording
    them as ("up" | "down", bytes); ``mangle(direction, data)`` may replace
    a datagram (or drop it by returning None)."""

    def __init__(self, server_port):
        self.server_port = server_port
        self.log = []
        self.client = None
        self.mangle = None
        self.transport = None
        self.upstream = None

    async def start(self):
        loop = asyncio.get_running_loop()
        relay = self

        class Upstream(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                relay._forward("down", data)

        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.upstream, _ = await loop.create_datagram_endpoint(
            Upstream, remote_addr=("127.0.0.1", self.server_port)
        )
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    def datagram_received(self, data, addr):
        self.client = addr
        self._forward("up", data)

    def _forward(self, direction, data):
        if self.mangle is not None:
            data = self.mangle(direction, data)
            if data is None:
                return
        self.log.append((direction, data))
        if direction == "up":
            self.upstream.sendto(data)
        elif self.client is not None:
            self.transport.sendto(data, self.client)

    def close(self):
        self.transport.close()
        self.upstream.close()

    def messages(self, direction=None):
        for d, data in self.log:
            if direction is None or d == direction:
                yield d, Message.decode(data)

    def protected(self, direction):
        """(message, OSCORE option value) of the protected messages sent
        in that direction"""
        return [(m, OscoreOptionValue.decode(m.opt.oscore)) for _, m in self.messages(direction) if m.opt.oscore is not None]


def assert_no_nonce_reuse(relay):
    """Every (sender, Partial IV) on the wire carries one ciphertext only
    (a repeated datagram is a retransmission, not a reuse)."""
    seen = {}
    for direction in ("up", "down"):
        for message, option in relay.protected(direction):
            if option.partial_iv is None:
                continue
            key = (direction, option.kid, decode_partial_iv(option.partial_iv))
            previous = seen.setdefault(key, message.payload)
            assert previous == message.payload, f"sequence number reused: {key}"
    return seen


async def raw_exchange(port, data, timeout=TIMEOUT):
    """Send one datagram from a fresh socket and return the decoded answer
    (skipping empty ACKs)."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            queue.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(data)
        while True:
            answer = Message.decode(await asyncio.wait_for(queue.get(), timeout))
            if answer.code != Code.EMPTY:
                if answer.mtype == Type.CON:
                    transport.sendto(bytes((0x60, 0, answer.mid >> 8, answer.mid & 0xFF)))
                return answer
    finally:
        transport.close()


# --- set-ups ---------------------------------------------------------------------


class Setup:
    """A server Context serving make_site() with OSCORE, and a client
    Context with credentials for it (through a relay over UDP)."""

    def __init__(self, tmp_path, transport="udp", relay=True, id_context=None):
        self.tmp_path = tmp_path
        self.transport = transport
        self.use_relay = relay and transport == "udp"
        self.client_dir, self.server_dir = context_pair(tmp_path, id_context=id_context)
        self.relay = None

    async def __aenter__(self):
        self.site = make_site()
        self.server_credentials = CredentialsMap()
        self.server_credentials.load_from_dict({":client": {"oscore": {"contextfile": self.server_dir}}})
        if self.transport == "udp":
            self.port = free_port()
            server_transports, client_transports, scheme = ["oscore", "udp6"], ["oscore", "udp6"], "coap"
        else:
            self.port = free_port(socket.SOCK_STREAM)
            server_transports, client_transports, scheme = ["oscore", "tcpserver"], ["oscore", "tcpclient"], "coap+tcp"
        self.server = await Context.create_server_context(
            self.site, bind=("127.0.0.1", self.port), server_credentials=self.server_credentials,
            transports=server_transports, transport_tuning=QUICK,
        )
        target = self.port
        if self.use_relay:
            self.relay = await Relay(self.port).start()
            target = self.relay.port
        self.base = f"{scheme}://127.0.0.1:{target}"
        self.client = await Context.create_client_context(transports=client_transports, transport_tuning=QUICK)
        self.client.client_credentials.load_from_dict({self.base + "/*": {"oscore": {"contextfile": self.client_dir}}})
        self.plain_client = await Context.create_client_context(transports=client_transports, transport_tuning=QUICK)
        return self

    async def __aexit__(self, *exc):
        await self.client.shutdown()
        await self.plain_client.shutdown()
        await self.server.shutdown()
        if self.relay is not None:
            self.relay.close()

    async def request(self, code=Code.GET, path="store", client=None, **kwargs):
        client = client or self.client
        message = Message(code=code, uri=f"{self.base}/{path}", **kwargs)
        return await asyncio.wait_for(client.request(message).response, TIMEOUT)

    def client_security_context(self):
        return self.client.client_credentials.find_oscore(Message(code=Code.GET, uri=self.base + "/store"))


class Again(Setup):
    """A Setup on the context directories of an earlier one (started after
    that one ended)"""

    def __init__(self, earlier):
        self.tmp_path = earlier.tmp_path
        self.transport = earlier.transport
        self.use_relay = True
        self.client_dir, self.server_dir = earlier.client_dir, earlier.server_dir
        self.relay = None


async def settle(seconds=0.05):
    await asyncio.sleep(seconds)


# --- basics ------------------------------------------------------------------------


async def test_methods_over_udp(tmp_path):
    async with Setup(tmp_path) as s:
        response = await s.request()
        assert response.code == Code.CONTENT
        assert response.payload == b"server:hello"
        assert isinstance(response.remote, OSCOREAddress)
        assert response.remote.authenticated_claims == (s.client_security_context(),)
        assert response.remote.hostinfo == f"127.0.0.1:{s.relay.port}"
        assert response.remote.scheme == "coap"
        assert response.get_request_uri() == f"{s.base}/store"

        for code, payload, expected in [
            (Code.PUT, b"new secret value", Code.CHANGED),
            (Code.POST, b"!", Code.CHANGED),
            (Code.FETCH, b"?", Code.CONTENT),
            (Code.DELETE, b"", Code.DELETED),
        ]:
            response = await s.request(code, payload=payload)
            assert response.code == expected
            if code == Code.FETCH:
                assert response.payload == b"NEW SECRET VALUE!?"
        assert s.site.store.value == b""

        # On the wire, every request and response is protected and nothing
        # of the payloads or paths is visible.
        up = list(s.relay.messages("up"))
        assert up and all(m.opt.oscore is not None for _, m in up if m.code.is_request())
        assert {m.code for _, m in up if m.code.is_request()} == {Code.POST}
        assert all(not m.opt.uri_path for _, m in up)
        down = [m for _, m in s.relay.messages("down") if m.code != Code.EMPTY]
        assert down and all(m.opt.oscore is not None for m in down)
        assert all(b"secret" not in data for _, data in s.relay.log)
        assert_no_nonce_reuse(s.relay)


async def test_methods_over_tcp(tmp_path):
    async with Setup(tmp_path, transport="tcp") as s:
        response = await s.request()
        assert (response.code, response.payload) == (Code.CONTENT, b"server:hello")
        assert isinstance(response.remote, OSCOREAddress)
        assert response.remote.scheme == "coap+tcp"
        assert response.remote.reliable_transport
        response = await s.request(Code.PUT, payload=b"x" * 3000)
        assert (response.code, response.payload) == (Code.CHANGED, b"3000")
        response = await s.request(Code.POST, payload=b"y")
        assert response.code == Code.CHANGED
        assert s.site.store.value == b"x" * 3000 + b"y"
        response = await s.request(Code.DELETE)
        assert response.code == Code.DELETED


async def test_plain_requests_pass_through(tmp_path):
    async with Setup(tmp_path) as s:
        response = await s.request(client=s.plain_client)
        assert (response.code, response.payload) == (Code.CONTENT, b"plain:hello")
        assert not isinstance(response.remote, OSCOREAddress)
        assert response.remote.authenticated_claims == ()
        assert s.site.store.seen[-1].remote.authenticated_claims == ()

        response = await s.request(client=s.plain_client, path="secret")
        assert response.code == Code.UNAUTHORIZED
        response = await s.request(path="secret")
        assert (response.code, response.payload) == (Code.CONTENT, b"secret for server")

        # The protecting client talks plain CoAP where it has no security
        # context (here: directly to the server rather than via the relay).
        direct = Message(code=Code.GET, uri=f"coap://127.0.0.1:{s.port}/store")
        response = await asyncio.wait_for(s.client.request(direct).response, TIMEOUT)
        assert response.payload == b"plain:hello"

        # A plain observation of a resource requiring OSCORE is not admitted
        request = s.plain_client.request(Message(code=Code.GET, observe=0, uri=f"{s.base}/secret"))
        response = await asyncio.wait_for(request.response, TIMEOUT)
        assert response.code == Code.UNAUTHORIZED
        with pytest.raises(error.ObservationCancelled):
            await asyncio.wait_for(request.observation.__aiter__().__anext__(), TIMEOUT)


async def test_resource_errors_are_protected(tmp_path):
    async with Setup(tmp_path) as s:
        response = await s.request(path="nonexistent")
        assert response.code == Code.NOT_FOUND
        assert isinstance(response.remote, OSCOREAddress)
        response = await s.request(Code.iPATCH)
        assert response.code == Code.METHOD_NOT_ALLOWED
        # An unknown critical option inside the protection is rejected
        # with a protected 4.02.
        message = Message(code=Code.GET, uri=f"{s.base}/store")
        message.opt.add_option(OpaqueOption(2049, b"x"))
        response = await asyncio.wait_for(s.client.request(message).response, TIMEOUT)
        assert response.code == Code.BAD_OPTION
        assert isinstance(response.remote, OSCOREAddress)


# --- blockwise ---------------------------------------------------------------------


async def test_blockwise_inside_oscore(tmp_path):
    async with Setup(tmp_path) as s:
        body = bytes(range(256)) * 30
        response = await s.request(Code.PUT, path="big", payload=body)
        assert (response.code, response.payload) == (Code.CHANGED, b"7680")
        big = s.site.big
        assert big.uploads == [body]

        response = await s.request(path="big")
        assert response.code == Code.CONTENT
        assert response.payload == big.body()

        # Blockwise happened inside: the outer messages carry no block
        # options, and each fits a UDP datagram of CoAP's recommended size.
        protected = s.relay.protected("up") + s.relay.protected("down")
        assert len(s.relay.protected("up")) >= 8 + 5
        for message, _ in protected:
            assert message.opt.block1 is None and message.opt.block2 is None
        assert max(len(data) for _, data in s.relay.log) <= 1152
        assert_no_nonce_reuse(s.relay)


async def test_blockwise_inside_oscore_over_tcp(tmp_path):
    async with Setup(tmp_path, transport="tcp") as s:
        big = s.site.big
        big.size = 300_000
        response = await s.request(path="big")
        assert response.payload == big.body()
        response = await s.request(Code.PUT, path="big", payload=b"u" * 200_000)
        assert response.payload == b"200000"


# --- observe -----------------------------------------------------------------------


async def test_observe(tmp_path):
    async with Setup(tmp_path) as s:
        store = s.site.store
        request = s.client.request(Message(code=Code.GET, observe=0, uri=f"{s.base}/store"))
        first = await asyncio.wait_for(request.response, TIMEOUT)
        assert first.payload == b"server:hello"
        assert first.opt.observe is not None
        assert store.counts == [1]

        notifications = []
        request.observation.register_callback(notifications.append)
        for value in (b"a", b"b", b"c"):
            store.value = value
            store.updated_state()
            await settle()
        store.updated_state(Message(payload=b"given"))
        await settle()
        assert [n.payload for n in notifications] == [b"server:a", b"server:b", b"server:c", b"given"]
        assert all(isinstance(n.remote, OSCOREAddress) for n in notifications)
        assert all(n.opt.observe is not None for n in notifications)

        # Each notification has a Partial IV of its own, increasing.
        down = [o for m, o in s.relay.protected("down") if m.opt.observe is not None]
        pivs = [decode_partial_iv(o.partial_iv) for o in down]
        assert len(pivs) >= 5 and pivs == sorted(set(pivs))

        request.observation.cancel()
        for _ in range(40):
            if store.counts[-1] == 0:
                break
            await settle()
        assert store.counts[-1] == 0
        assert_no_nonce_reuse(s.relay)


async def test_observe_ended_by_server(tmp_path):
    async with Setup(tmp_path) as s:
        store = s.site.store
        request = s.client.request(Message(code=Code.GET, observe=0, uri=f"{s.base}/store"))
        await asyncio.wait_for(request.response, TIMEOUT)
        store.updated_state(Message(code=Code.NOT_FOUND, payload=b"gone"))
        with pytest.raises(error.ObservationCancelled):
            async for _ in request.observation:
                pass
        assert store.counts[-1] == 0
        # The final message is protected too, and is no notification.
        last, option = s.relay.protected("down")[-1]
        assert last.opt.observe is None and option.partial_iv is not None


async def test_observe_over_tcp(tmp_path):
    async with Setup(tmp_path, transport="tcp") as s:
        store = s.site.store
        request = s.client.request(Message(code=Code.GET, observe=0, uri=f"{s.base}/store"))
        await asyncio.wait_for(request.response, TIMEOUT)
        iterator = request.observation.__aiter__()
        store.value = b"tcp"
        store.updated_state()
        notification = await asyncio.wait_for(iterator.__anext__(), TIMEOUT)
        assert notification.payload == b"server:tcp"
        request.observation.cancel()


async def test_large_notifications(tmp_path):
    async with Setup(tmp_path) as s:
        big = s.site.big
        request = s.client.request(Message(code=Code.GET, observe=0, uri=f"{s.base}/big"))
        first = await asyncio.wait_for(request.response, TIMEOUT)
        assert first.payload == big.body()
        iterator = request.observation.__aiter__()
        big.generation = 1
        big.updated_state()
        notification = await asyncio.wait_for(iterator.__anext__(), TIMEOUT)
        assert notification.payload == big.body()
        request.observation.cancel()
        for message, _ in s.relay.protected("down"):
            assert message.opt.block2 is None
        assert max(len(data) for _, data in s.relay.log) <= 1152


async def test_observation_reregistered_when_silent(tmp_path, monkeypatch):
    monkeypatch.setattr(oscore_transport, "REREGISTRATION_MARGIN", 0.1)
    async with Setup(tmp_path) as s:
        store = s.site.store
        store.max_age = 0
        request = s.client.request(Message(code=Code.GET, observe=0, uri=f"{s.base}/store"))
        await asyncio.wait_for(request.response, TIMEOUT)
        iterator = request.observation.__aiter__()
        registrations = len(store.seen)
        await asyncio.sleep(0.35)
        # Registered anew (each time a fresh protected request), and the
        # server only keeps the newest registrations.
        assert len(store.seen) > registrations
        store.max_age = None
        store.value = b"later"
        await asyncio.sleep(0.15)
        store.updated_state()
        notification = await asyncio.wait_for(iterator.__anext__(), TIMEOUT)
        while notification.payload != b"server:later":
            notification = await asyncio.wait_for(iterator.__anext__(), TIMEOUT)
        request.observation.cancel()
        assert_no_nonce_reuse(s.relay)


async def test_cancelled_request_ends_the_protected_exchange(tmp_path):
    class Slow(resource.Resource):
        async def render_get(self, request):
            await asyncio.sleep(0.3)
            return Message(payload=b"late")

    async with Setup(tmp_path) as s:
        s.site.add_resource(["slow"], Slow())
        request = s.client.request(Message(code=Code.GET, uri=f"{s.base}/slow"))
        await asyncio.sleep(0.1)
        request.response.cancel()
        await asyncio.sleep(0.4)
        # The late (protected, confirmable) response matched no request any
        # more and was rejected.
        late = [m for _, m in s.relay.messages("down") if m.opt.oscore is not None]
        assert late and late[-1].mtype == Type.CON
        assert any(m.mtype == Type.RST and m.mid == late[-1].mid for _, m in s.relay.messages("up"))
        assert (await s.request()).payload == b"server:hello"


async def test_lost_datagrams_are_retransmitted_not_replayed(tmp_path):
    """A lost protected request or response is retransmitted by the message
    layer (the same datagram, answered from the server's deduplication), so
    it is never taken for a replay."""
    async with Setup(tmp_path) as s:
        dropped = []

        def mangle(direction, data):
            message = Message.decode(data)
            if message.opt.oscore is not None and len(dropped) < 4 and (direction, message.mid) not in dropped:
                dropped.append((direction, message.mid))
                return None
            return data

        s.relay.mangle = mangle
        for payload in (b"1", b"2", b"3"):
            response = await s.request(Code.POST, payload=payload)
            assert response.code == Code.CHANGED
        assert s.site.store.value == b"hello123"
        assert len(dropped) == 4
        assert_no_nonce_reuse(s.relay)


# --- verification failures ------------------------------------------------------------


async def test_replayed_request_rejected(tmp_path):
    async with Setup(tmp_path) as s:
        await s.request(Code.POST, payload=b"+")
        assert s.site.store.value == b"hello+"
        captured = next(data for d, data in s.relay.log if d == "up" and Message.decode(data).code == Code.POST)

        answer = await raw_exchange(s.port, captured)
        assert answer.code == Code.UNAUTHORIZED
        assert answer.opt.oscore is None
        assert answer.payload == b"Replay detected"
        assert answer.opt.max_age == 0
        assert s.site.store.value == b"hello+"

        # The server keeps serving the client.
        response = await s.request()
        assert response.payload == b"server:hello+"


async def test_tampered_request_rejected(tmp_path):
    async with Setup(tmp_path) as s:
        secctx = s.client_security_context()
        outer, _ = secctx.protect(Message(code=Code.POST, uri=f"{s.base}/store", payload=b"evil"))
        outer.mtype, outer.mid, outer.token = Type.CON, 0x1234, b"tamp"
        data = bytearray(outer.encode())
        data[-1] ^= 0x01
        answer = await raw_exchange(s.port, bytes(data))
        assert (answer.code, answer.payload) == (Code.BAD_REQUEST, b"Decryption failed")
        assert answer.opt.oscore is None
        assert s.site.store.value == b"hello"

        # Garbage in the OSCORE option: 4.02
        outer.opt.oscore = b"\xff\xff"
        outer.mid = 0x1235
        answer = await raw_exchange(s.port, outer.encode())
        assert answer.code == Code.BAD_OPTION

        response = await s.request()
        assert response.payload == b"server:hello"


async def test_tampered_response_rejected(tmp_path):
    async with Setup(tmp_path) as s:
        def mangle(direction, data):
            message = Message.decode(data)
            if direction == "down" and message.opt.oscore is not None:
                message.payload = bytes([message.payload[0] ^ 1]) + message.payload[1:]
                return message.encode()
            return data

        s.relay.mangle = mangle
        with pytest.raises(ResponseVerificationFailed) as info:
            await s.request()
        assert isinstance(info.value, error.NetworkError)
        assert isinstance(info.value.__cause__, oscore.ProtectionInvalid)
        s.relay.mangle = None
        assert (await s.request()).payload == b"server:hello"


async def test_unknown_kid(tmp_path):
    async with Setup(tmp_path) as s:
        stranger = write_context(tmp_path / "stranger", "who", "srv")
        client = await Context.create_client_context(transports=["oscore", "udp6"], transport_tuning=QUICK)
        client.client_credentials.load_from_dict({s.base + "/*": {"oscore": {"contextfile": stranger}}})
        try:
            with pytest.raises(UnprotectedResponse) as info:
                await s.request(client=client)
            assert info.value.response.code == Code.UNAUTHORIZED
            assert info.value.response.payload == b"Security context not found"
            assert "security context" in str(info.value)
        finally:
            await client.shutdown()


async def test_wrong_key(tmp_path):
    async with Setup(tmp_path) as s:
        forger = write_context(tmp_path / "forger", "cli", "srv", secret={"ascii": "not the secret"})
        client = await Context.create_client_context(transports=["oscore", "udp6"], transport_tuning=QUICK)
        client.client_credentials.load_from_dict({s.base + "/*": {"oscore": {"contextfile": forger}}})
        try:
            with pytest.raises(UnprotectedResponse) as info:
                await s.request(client=client)
            assert info.value.response.code == Code.BAD_REQUEST
        finally:
            await client.shutdown()
        # The forged request did not advance the real client's window.
        assert (await s.request()).code == Code.CONTENT


async def test_kid_context(tmp_path):
    """Two server contexts share the recipient ID and differ in the ID
    context; the kid context picks the right one."""
    client_one, server_one = context_pair(tmp_path / "one", id_context="ctx-one")
    client_two, server_two = context_pair(tmp_path / "two", id_context="ctx-two")
    credentials = CredentialsMap()
    credentials.load_from_dict({
        ":one": {"oscore": {"contextfile": server_one}},
        ":two": {"oscore": {"contextfile": server_two}},
    })
    port = free_port()
    server = await Context.create_server_context(
        make_site(), bind=("127.0.0.1", port), server_credentials=credentials,
        transports=["oscore", "udp6"], transport_tuning=QUICK,
    )
    base = f"coap://127.0.0.1:{port}"
    try:
        for client_dir, expected in [(client_one, b"server:hello"), (client_two, b"server:hello")]:
            client = await Context.create_client_context(transports=["oscore", "udp6"], transport_tuning=QUICK)
            client.client_credentials.load_from_dict({base + "/*": {"oscore": {"contextfile": client_dir}}})
            try:
                response = await asyncio.wait_for(
                    client.request(Message(code=Code.GET, uri=base + "/store")).response, TIMEOUT
                )
                assert response.payload == expected
                served_by = server.serversite.inner_site.store.seen[-1].remote.security_context
                assert served_by.basedir == client_dir.replace("client", "server")
            finally:
                await client.shutdown()

        wrong = write_context(tmp_path / "wrong", "cli", "srv", id_context="ctx-three")
        client = await Context.create_client_context(transports=["oscore", "udp6"], transport_tuning=QUICK)
        client.client_credentials.load_from_dict({base + "/*": {"oscore": {"contextfile": wrong}}})
        try:
            with pytest.raises(UnprotectedResponse) as info:
                await asyncio.wait_for(client.request(Message(code=Code.GET, uri=base + "/store")).response, TIMEOUT)
            assert info.value.response.code == Code.UNAUTHORIZED
        finally:
            await client.shutdown()
    finally:
        await server.shutdown()


async def test_server_without_oscore(tmp_path):
    client_dir, _ = context_pair(tmp_path)
    port = free_port()
    server = await Context.create_server_context(
        make_site(), bind=("127.0.0.1", port), transports=["oscore", "udp6"], transport_tuning=QUICK
    )
    assert not isinstance(server.serversite, OscoreSiteWrapper)
    client = await Context.create_client_context(transports=["oscore", "udp6"], transport_tuning=QUICK)
    client.client_credentials.load_from_dict({f"coap://127.0.0.1:{port}/*": {"oscore": {"contextfile": client_dir}}})
    try:
        with pytest.raises(UnprotectedResponse) as info:
            await asyncio.wait_for(
                client.request(Message(code=Code.GET, uri=f"coap://127.0.0.1:{port}/store")).response, TIMEOUT
            )
        assert info.value.response.code == Code.BAD_OPTION
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_missing_context_directory_is_a_clear_error(tmp_path):
    client = await Context.create_client_context(transports=["oscore", "udp6"], transport_tuning=QUICK)
    client.client_credentials.load_from_dict(
        {"coap://127.0.0.1/*": {"oscore": {"contextfile": str(tmp_path / "nonexistent")}}}
    )
    try:
        with pytest.raises(SecurityContextUnavailable) as info:
            await asyncio.wait_for(client.request(Message(code=Code.GET, uri="coap://127.0.0.1/x")).response, TIMEOUT)
        assert "nonexistent" in str(info.value)
    finally:
        await client.shutdown()


# --- Echo recovery (RFC 8613 Appendix B.1.2) ---------------------------------------------


async def test_echo_recovery_after_lost_state(tmp_path):
    """The server context starts as after a crash (its replay window not
    stored); the client's first request is challenged with Echo and
    repeated transparently."""
    async with Setup(tmp_path) as s:
        pass
    # The server context was opened and shut down cleanly; now make its
    # stored state look like after a crash.
    path = os.path.join(s.server_dir, "sequence.json")
    with open(path) as f:
        state = json.load(f)
    state["recipient-replay-window"] = None
    with open(path, "w") as f:
        json.dump(state, f)

    async with Again(s) as s2:
        response = await s2.request(Code.POST, payload=b"!")
        assert response.code == Code.CHANGED
        assert s2.site.store.value == b"hello!"
        up = [o for m, o in s2.relay.protected("up") if m.code == Code.POST]
        assert len(up) == 2 and up[0].partial_iv != up[1].partial_iv
        challenge = [(m, o) for m, o in s2.relay.protected("down") if m.code != Code.EMPTY][0]
        assert challenge[1].partial_iv is not None  # a fresh nonce for the challenge
        # Only the repeated request was executed.
        assert s2.site.store.value == b"hello!"
        assert_no_nonce_reuse(s2.relay)


async def test_clean_shutdown_stores_state(tmp_path):
    async with Setup(tmp_path) as s:
        await s.request()
        await s.request()
    with open(os.path.join(s.server_dir, "sequence.json")) as f:
        server_state = json.load(f)
    with open(os.path.join(s.client_dir, "sequence.json")) as f:
        client_state = json.load(f)
    assert server_state["recipient-replay-window"] is not None
    assert client_state["next-unused-sender-sequence-number"] == 2
    # ... so a restart needs no Echo round trip.
    async with Again(s) as s2:
        await s2.request()
        assert len([m for m, _ in s2.relay.protected("up") if m.code == Code.POST]) == 1


# --- processes ----------------------------------------------------------------------


def start_plugtest_server(contextdir, port):
    process = subprocess.Popen(
        [sys.executable, os.path.join(PLUGTEST, "plugtest-server"), "--bind", f"127.0.0.1:{port}",
         "--contextdir", contextdir, "--notify-interval", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return process


async def wait_listening(process, timeout=20.0):
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout)
    if "listening" not in line:
        process.kill()
        raise AssertionError(f"server did not start: {line!r} {process.stderr.read()!r}")


def stop_process(process, sig=signal.SIGTERM):
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    process.stdout.close()
    process.stderr.close()


@pytest.fixture
def plugtest_contexts(tmp_path):
    target = tmp_path / "contexts"
    shutil.copytree(os.path.join(PLUGTEST, "common-context"), target)
    return str(target)


async def test_recovery_after_server_killed(plugtest_contexts):
    """RFC 8613 Appendix B.1: the server process is killed with SIGKILL and
    restarted from its files. No sequence number is used twice by either
    side, and the client gets through (via Echo) without doing anything."""
    port = free_port()
    server = start_plugtest_server(plugtest_contexts, port)
    relay = None
    client = None
    try:
        await wait_listening(server)
        relay = await Relay(port).start()
        base = f"coap://127.0.0.1:{relay.port}/oscore"
        client = await Context.create_client_context(transports=["oscore", "udp6"], transport_tuning=QUICK)
        client.client_credentials.load_from_dict(
            {f"coap://127.0.0.1:{relay.port}/*": {"oscore": {"contextfile": os.path.join(plugtest_contexts, "client-a")}}}
        )

        async def get(path="hello/1"):
            return await asyncio.wait_for(client.request(Message(code=Code.GET, uri=f"{base}/{path}")).response, TIMEOUT)

        async def observe_to_end():
            request = client.request(Message(code=Code.GET, observe=0, uri=f"{base}/observe2"))
            payloads = [(await asyncio.wait_for(request.response, TIMEOUT)).payload]
            with pytest.raises(error.ObservationCancelled):
                async for notification in request.observation:
                    payloads.append(notification.payload)
            return payloads

        for _ in range(3):
            assert (await get()).payload == b"Hello World!"
        assert await observe_to_end() == [b"one", b"two", b"three"]
        before = len(relay.log)
        server_pivs_before = [decode_partial_iv(o.partial_iv) for _, o in relay.protected("down") if o.partial_iv]
        assert server_pivs_before
        first_request = next(data for d, data in relay.log if d == "up" and Message.decode(data).code == Code.POST)

        server.kill()
        server.wait()
        stop_process(server)
        server = start_plugtest_server(plugtest_contexts, port)
        await wait_listening(server)

        assert (await get()).payload == b"Hello World!"
        after = relay.log[before:]
        requests = [Message.decode(d) for direction, d in after if direction == "up"]
        requests = [m for m in requests if m.code == Code.POST]
        assert len(requests) == 2, "the first request after the restart is repeated once (with Echo)"
        challenge = [Message.decode(d) for direction, d in after if direction == "down"]
        challenge = [m for m in challenge if m.opt.oscore is not None][0]
        challenge_piv = decode_partial_iv(OscoreOptionValue.decode(challenge.opt.oscore).partial_iv)
        assert challenge_piv > max(server_pivs_before)

        assert await observe_to_end() == [b"one", b"two", b"three"]
        assert (await get("hello/coap")).payload == b"Hello World!"

        # An old request replayed after the recovery is still rejected.
        answer = await raw_exchange(port, first_request)
        assert (answer.code, answer.opt.oscore) == (Code.UNAUTHORIZED, None)

        seen = assert_no_nonce_reuse(relay)
        server_pivs = sorted(k[2] for k in seen if k[0] == "down")
        assert len(server_pivs) >= 2 * len(server_pivs_before)
    finally:
        if client is not None:
            await client.shutdown()
        if relay is not None:
            relay.close()
        stop_process(server)


async def test_context_directory_used_by_two_processes(plugtest_contexts):
    port = free_port()
    first = start_plugtest_server(plugtest_contexts, port)
    try:
        await wait_listening(first)
        second = start_plugtest_server(plugtest_contexts, free_port())
        try:
            out, err = await asyncio.to_thread(second.communicate, timeout=20)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        assert second.returncode == 2
        assert "in use by another program" in err
        assert "listening" not in out

        # The same holds inside one process: the context can not be opened.
        credentials = CredentialsMap()
        credentials.load_from_dict(
            {":a": {"oscore": {"contextfile": os.path.join(plugtest_contexts, "server-a")}}}
        )
        with pytest.raises(oscore.FilesystemSecurityContext.Locked):
            await Context.create_server_context(
                make_site(), bind=("127.0.0.1", free_port()), server_credentials=credentials,
                transports=["oscore", "udp6"],
            )
    finally:
        stop_process(first)
    # Once the first server is gone, the directory can be used again.
    second = start_plugtest_server(plugtest_contexts, free_port())
    try:
        await wait_listening(second)
    finally:
        stop_process(second)


# --- routing --------------------------------------------------------------------------


async def test_credentials_loaded_after_a_plain_request(tmp_path):
    async with Setup(tmp_path, relay=False) as s:
        client = s.plain_client
        response = await s.request(client=client)
        assert response.payload == b"plain:hello"
        client.client_credentials.load_from_dict({s.base + "/*": {"oscore": {"contextfile": s.client_dir}}})
        await s.client.shutdown()  # releases the context directory
        response = await s.request(client=client)
        assert response.payload == b"server:hello"


async def test_serversite_still_works_as_the_site(tmp_path):
    """context.serversite is the wrapper now; what applications do with
    their site through it keeps working."""
    async with Setup(tmp_path) as s:
        wrapper = s.server.serversite
        assert isinstance(wrapper, OscoreSiteWrapper)
        assert wrapper.inner_site is s.site
        wrapper.add_resource(["late"], Store(b"late"))
        assert "</late>" in str(wrapper.get_resources_as_linkheader())
        response = await s.request(path="late")
        assert response.payload == b"server:late"
        # Wrapping twice does not happen.
        from aiocoap.oscore_sitewrapper import wrap_site_if_configured

        assert wrap_site_if_configured(wrapper, s.server_credentials, s.server) is wrapper


async def test_failing_add_observation_is_served_as_plain_get(tmp_path):
    class Grumpy(resource.ObservableResource):
        async def add_observation(self, request, serverobservation):
            raise RuntimeError("no observers today")

        async def render_get(self, request):
            return Message(payload=b"grumpy")

    async with Setup(tmp_path) as s:
        s.site.add_resource(["grumpy"], Grumpy())
        request = s.client.request(Message(code=Code.GET, observe=0, uri=f"{s.base}/grumpy"))
        response = await asyncio.wait_for(request.response, TIMEOUT)
        assert response.payload == b"grumpy"
        assert response.opt.observe is None


async def test_site_wrapped_by_hand(tmp_path):
    client_dir, server_dir = context_pair(tmp_path)
    credentials = CredentialsMap()
    credentials.load_from_dict({":client": {"oscore": {"contextfile": server_dir}}})
    site = make_site()
    port = free_port()
    server = await Context.create_server_context(
        OscoreSiteWrapper(site, credentials), bind=("127.0.0.1", port), transports=["oscore", "udp6"],
        transport_tuning=QUICK,
    )
    client = await Context.create_client_context(transports=["oscore", "udp6"], transport_tuning=QUICK)
    client.client_credentials.load_from_dict({f"coap://127.0.0.1:{port}/*": {"oscore": {"contextfile": client_dir}}})
    try:
        response = await asyncio.wait_for(
            client.request(Message(code=Code.GET, uri=f"coap://127.0.0.1:{port}/store")).response, TIMEOUT
        )
        assert response.payload == b"server:hello"
    finally:
        await client.shutdown()
        await server.shutdown()


async def test_request_to_an_address_made_elsewhere(tmp_path):
    """An OSCOREAddress that did not come from the client's routing (here:
    put together by the application from a response's parts) is routed when
    the request is sent."""
    async with Setup(tmp_path) as s:
        first = await s.request()
        address = OSCOREAddress(first.remote.security_context, first.remote.underlying_address)
        assert address == first.remote and address.via is None
        message = Message(code=Code.GET, uri_path=["store"])
        message.remote = address
        response = await asyncio.wait_for(s.client.request(message).response, TIMEOUT)
        assert response.payload == b"server:hello"
        assert response.remote == address


def test_address_semantics():
    a = oscore.SecurityContext(sender_id=b"a", recipient_id=b"b", master_secret=b"s")
    b = oscore.SecurityContext(sender_id=b"a", recipient_id=b"b", master_secret=b"s")
    from aiocoap.message import UndecidedRemote

    class Underlying(UndecidedRemote):
        hostinfo_local = "local"
        uri_base_local = "coap://local"
        maximum_block_size_exp = 4
        maximum_payload_size = 256
        is_multicast_locally = False

        def as_response_address(self):
            return self

    u = Underlying("coap", "h:1")
    x = OSCOREAddress(a, u)
    assert x == OSCOREAddress(a, Underlying("coap", "h:1"))
    assert hash(x) == hash(OSCOREAddress(a, Underlying("coap", "h:1")))
    assert x != OSCOREAddress(b, u)
    assert x != (a, u)
    assert (x.hostinfo, x.hostinfo_local, x.uri_base, x.uri_base_local, x.scheme) == (
        "h:1", "local", "coap://h:1", "coap://local", "coap",
    )
    assert (x.maximum_block_size_exp, x.maximum_payload_size) == (4, 256)
    assert x.authenticated_claims == (a,)
    assert not x.is_multicast
    assert x.as_response_address() is x
    assert "OSCOREAddress" in repr(x)
