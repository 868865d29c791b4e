"""Helpers of the DTLS tests: a server context serving a small site over
DTLS on loopback, client contexts with DTLS credentials, and access to the
DTLS interfaces inside them.

Everything binds port 0 (or a port it was given) on 127.0.0.1 / ::1; the
tuning is shortened so that no test waits for default timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import AsyncIterator, Optional

import aiocoap
from aiocoap import resource
from aiocoap.credentials import CredentialsMap
from aiocoap.transports.dtls_sessions import DTLSTuning
from aiocoap.transports.tinydtls import MessageInterfaceTinyDTLS
from aiocoap.transports.tinydtls_server import MessageInterfaceTinyDTLSServer

PSK = b"secretPSK"
IDENTITY = b"client_Identity"
SERVER_CREDENTIALS = {
    ":client": {"dtls": {"psk": {"ascii": PSK.decode()}, "client-identity": {"ascii": IDENTITY.decode()}}},
    ":other": {"dtls": {"psk": b"otherPSK", "client-identity": b"other"}},
}
#: short timers, no idle expiry or silence detection unless a test asks
FAST = DTLSTuning(handshake_timeout=3.0, idle_timeout=None, silence_timeout=None)
BIG = bytes(range(256)) * 400  # 102 400 bytes


class DemoSite:
    """``/hello`` answers the claims of the requester; ``/store`` GET/PUT;
    ``/big`` GET :data:`BIG`, PUT stores anything and answers its length;
    ``/counter`` is observable (:meth:`tick` changes it)."""

    def __init__(self):
        self.store = b"initial"
        self.seen_remotes: list = []
        site = resource.Site()
        outer = self

        class Hello(resource.Resource):
            async def render_get(self, request):
                outer.seen_remotes.append(request.remote)
                return aiocoap.Message(payload=repr(request.remote.authenticated_claims).encode())

        class Store(resource.Resource):
            async def render_get(self, request):
                return aiocoap.Message(payload=outer.store)

            async def render_put(self, request):
                outer.store = request.payload
                return aiocoap.Message(code=aiocoap.CHANGED)

        class Big(resource.Resource):
            async def render_get(self, request):
                return aiocoap.Message(payload=BIG)

            async def render_put(self, request):
                outer.store = request.payload
                return aiocoap.Message(code=aiocoap.CHANGED, payload=str(len(request.payload)).encode())

        class Counter(resource.ObservableResource):
            value = 0

            async def render_get(self, request):
                return aiocoap.Message(payload=str(self.value).encode())

        self.counter = Counter()
        site.add_resource(("hello",), Hello())
        site.add_resource(("store",), Store())
        site.add_resource(("big",), Big())
        site.add_resource(("counter",), self.counter)
        self.site = site

    def tick(self):
        self.counter.value += 1
        self.counter.updated_state()


def server_interface(context) -> MessageInterfaceTinyDTLSServer:
    (found,) = [
        ti.message_interface for ti in context._tokenmanager.token_interfaces
        if isinstance(getattr(ti, "message_interface", None), MessageInterfaceTinyDTLSServer)
    ]
    return found


def client_interface(context) -> MessageInterfaceTinyDTLS:
    (found,) = [
        ti.message_interface for ti in context._tokenmanager.token_interfaces
        if isinstance(getattr(ti, "message_interface", None), MessageInterfaceTinyDTLS)
    ]
    return found


class DTLSServer:
    """A running server context; ``uri(path)`` names its resources."""

    def __init__(self, context, host: str, site: DemoSite):
        self.context = context
        self.host = host
        self.site = site
        self.interface = server_interface(context)

    @property
    def port(self) -> int:
        return self.interface.port

    def uri(self, path: str = "/hello") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"coaps://{host}:{self.port}{path}"


@contextlib.asynccontextmanager
async def dtls_server(
    host: str = "127.0.0.1", port: int = 0, *, credentials=SERVER_CREDENTIALS,
    tuning: DTLSTuning = FAST, site: Optional[DemoSite] = None, transports=("tinydtls_server",),
) -> AsyncIterator[DTLSServer]:
    site = site or DemoSite()
    server_credentials = CredentialsMap()
    server_credentials.load_from_dict(credentials)
    context = await aiocoap.Context.create_server_context(
        site.site, bind=(host, port), server_credentials=server_credentials, transports=list(transports),
    )
    try:
        server = DTLSServer(context, host, site)
        server.interface.tuning = tuning
        yield server
    finally:
        await context.shutdown()


def client_credentials_for(server: DTLSServer, psk: bytes = PSK, identity: bytes = IDENTITY) -> dict:
    return {server.uri("/*"): {"dtls": {"psk": psk, "client-identity": identity}}}


@contextlib.asynccontextmanager
async def dtls_client(credentials: Optional[dict] = None, *, tuning: DTLSTuning = FAST, transports=("tinydtls",),
                      transport_tuning=None):
    kwargs = {"transport_tuning": transport_tuning} if transport_tuning is not None else {}
    context = await aiocoap.Context.create_client_context(transports=list(transports), **kwargs)
    try:
        if credentials:
            context.client_credentials.load_from_dict(credentials)
        client_interface(context).tuning = tuning
        yield context
    finally:
        await context.shutdown()


async def get(context, uri: str, timeout: float = 10.0, **kwargs) -> aiocoap.Message:
    message = aiocoap.Message(code=kwargs.pop("code", aiocoap.GET), uri=uri, **kwargs)
    return await asyncio.wait_for(context.request(message).response, timeout)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class RawDTLSClient(asyncio.DatagramProtocol):
    """A DTLS client made of nothing but DTLSSocket and a socket, to play
    peers our client would never be: one that stops in the middle of the
    handshake (``stop_after``: number of server datagrams it processes),
    one that restarts from the same port, one that sends garbage on an
    established session. ``received`` collects decrypted data."""

    def __init__(self, psk: bytes = PSK, identity: bytes = IDENTITY, stop_after: Optional[int] = None):
        self.psk, self.identity, self.stop_after = psk, identity, stop_after
        self.received: list = []
        self.events: list = []
        self.handled = 0
        self.transport = None
        self.dtls = None
        self.connection = None
        self.muted = False

    async def open(self, server_port: int, host: str = "127.0.0.1", local_port: int = 0):
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(host, local_port), remote_addr=(host, server_port)
        )
        return self

    @property
    def local_port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def connect(self):
        from DTLSSocket import dtls

        self.events.clear()
        self.dtls = dtls.DTLS(
            read=self._read, write=self._write, event=self._event,
            pskId=self.identity, pskStore={self.identity: self.psk},
        )
        self.connection = self.dtls.connect("::ffff:127.0.0.1", 5684)

    def _read(self, sender, data):
        self.received.append(data)
        return len(data)

    def _write(self, recipient, data):
        if not self.muted and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)
        return len(data)

    def _event(self, level, code):
        self.events.append((level, code))

    @property
    def connected(self) -> bool:
        return (0, 0x1DE) in self.events

    def datagram_received(self, data, addr):
        if self.stop_after is not None and self.handled >= self.stop_after:
            return
        self.handled += 1
        if self.dtls is not None:
            self.dtls.handleMessage(self.connection, data)

    def send(self, plaintext: bytes):
        self.dtls.write(self.connection, plaintext)

    def abandon(self):
        """Forget the session without telling the server (a crash)."""
        self.muted = True
        self.dtls.resetPeer(self.connection)
        self.dtls = self.connection = None
        self.muted = False

    def close(self):
        if self.dtls is not None:
            self.abandon()
        if self.transport is not None:
            self.transport.close()
