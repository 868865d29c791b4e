"""CoAP over WebSockets (RFC 8323 §4): the ``coap+ws`` and ``coaps+ws``
schemes, as a client and a server in one token interface (:class:`WSPool`,
transport name ``ws``). The HTTP upgrade is done by the sans-I/O layer of
the ``websockets`` package (install ``aiocoap[ws]``), the WebSocket frames
after it by :mod:`aiocoap.transports.wsframes` (written for the one use
CoAP makes of them, at a fraction of the cost per message).

Layers of one connection, each without I/O of its own below the asyncio
protocol (:class:`WSRemote`) that moves the bytes::

    socket bytes -> websockets ServerProtocol / ClientProtocol (HTTP upgrade, up to the end of its head)
                 -> wsframes FrameDecoder / FrameEncoder (WebSocket frames)
                 -> binary messages -> RFC8323Session (WebSocketFramer) -> token layer

:class:`WSRemote` (the connection, in
:mod:`aiocoap.transports.wsconnection`) drives both layers for one socket;
:class:`WSPool` (here) keeps the connections, listens and pools. The
protocol rules of CoAP (CSM, Max-Message-Size, Ping/Pong, Release,
Abort, the timers) are those of
:class:`~aiocoap.transports.rfc8323session.RFC8323Session`, which the TCP
and TLS transports share; this module adds what is particular to
WebSockets:

* The opening handshake asks for ``GET /.well-known/coap`` with the
  WebSocket subprotocol ``coap`` (RFC 8323 §4.1, §8.4). A server answers
  any other path with 404, a request without the ``coap`` subprotocol with
  400, a plain HTTP request (no upgrade) with 426 and a malformed one with
  400; then it closes the connection. A client fails the request with
  :class:`aiocoap.error.NetworkError` when the server does not upgrade or
  does not select ``coap``. No WebSocket extension (compression) is
  offered or accepted.
* Every CoAP message is one binary WebSocket message without the Len field
  (§4.2), sent as one frame (masked by a client); fragmented messages are
  put together (within the size limit below). A text message aborts the
  connection (WebSocket close code 1003), a frame that breaks RFC 6455
  fails it (1002; the rules are :mod:`~aiocoap.transports.wsframes`'s).
  Each side's first message is its CSM; the client starts.
* Size: the Max-Message-Size we announce bounds what we accept: a
  WebSocket message above it (plus the CoAP header and token) is refused
  from its frame header, before any of its body is buffered (close code
  1009, the connection ends). What the peer announced bounds what we send
  (see the session).
* Time: the opening handshake (TCP, TLS and HTTP upgrade) must be done
  within :attr:`~aiocoap.transports.rfc8323session.SessionTuning.connect_timeout`;
  a WebSocket frame that arrives in part stalls at most ``frame_timeout``
  and takes at most ``frame_time_limit`` (slowloris), as a partial stream
  frame does over TCP; connections this side opened close when idle for
  ``idle_timeout``. WebSocket pings from the peer are answered; we keep
  connections alive with CoAP Pings (``ping_interval``), not WebSocket
  ones.
* Closing: a connection the session ends (Abort, Release, idle) or that
  shuts down gets the WebSocket closing handshake (close code 1000, 1001
  on shutdown; the server closes the TCP connection once both Close frames
  are through, a client waits for it to), cut after ``close_timeout``; a
  peer's Close is answered with ours. When the peer closes the
  WebSocket or the socket, every request pending on it fails at once with
  :class:`aiocoap.error.NetworkError` and observations on it end.
* Client connections are pooled per :class:`PoolKey` (scheme and
  authority, default ports 80 and 443 left out): one WebSocket per peer,
  shared by all requests to it, at most ``max_connections`` of them (idle
  ones are evicted first, else the request fails). A closed one is
  reconnected when a request is sent to it again. A peer's Release takes
  it out of the pool; its Hold-Off keeps us from reconnecting for that
  time.
* A server's connections are capped by a
  :class:`~aiocoap.transports.connectiontable.ConnectionTable`, as those
  of the TCP server: at most ``max_server_connections`` accepted
  connections (handshakes in progress included) and at most
  :attr:`WSTuning.max_server_connections_per_host` from one address,
  where one more first closes the connection idle longest (of that
  address, or of anyone; a handshake in progress is not idle) and is
  reset at once, before anything is read from it, if none is idle; at
  most ``max_server_buffered`` bytes of incomplete messages together,
  above which the connection holding most is aborted.

Ports: a ``coap+ws://`` URI without a port means 80, ``coaps+ws://`` 443.
A server, as with aiocoap 0.4.x, listens on 8683 (and 8684 with TLS) when
not told otherwise, since the HTTP ports need privileges and usually
belong to a web server that can forward ``/.well-known/coap`` to it; bound
to an explicit port P (``bind=(host, P)``, ``--bind``), it listens on
P + 3000 (and P + 3001 with TLS); port 0 gives ephemeral ports.

TLS (``coaps+ws``) uses the :mod:`ssl` module: the server the
``_ssl_context`` given to ``create_server_context`` (as for coaps+tcp), the
client the context its credentials give for the URI
(``ssl_client_context`` of the client credentials, as for coaps+tcp) or
the system's default trust store; the host name of the URI is verified and
sent as SNI. The ALPN protocol offered is ``http/1.1`` (WebSockets run over
HTTP; ``coap`` is the ALPN of coaps+tcp only).

:data:`is_pyodide` is true when running in a browser (Pyodide), where
sockets are not available; this implementation offers no browser back-end
for that case.

Log levels: debug for per-connection events (handshakes, refusals, peers
that break the WebSocket protocol), summarized at most every 10 seconds at
info (warning when connections were refused for the caps); the session's
own levels otherwise. websockets' own log lines go to this module's logger
(the context's) at debug level.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .wsconnection import (  # (first: it raises a clear ImportError without websockets)
    DEFAULT_PORTS,
    HTTP_ALPN,
    RESOURCE_PATH,
    SCHEME_WS,
    SCHEME_WSS,
    SERVER_PORT,
    SERVER_PORT_OFFSET,
    SUBPROTOCOL,
    WS_SCHEMES,
    Closing,
    Monitor,
    PoolKey,
    Troubles,
    WebSocketsLog,
    WSRemote,
    describe_failure,
    is_pyodide,
)

from websockets.client import ClientProtocol  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

from .. import error, interfaces  # noqa: E402
from ..message import Message, UndecidedRemote  # noqa: E402
from ..util import hostportjoin  # noqa: E402
from ..util.asyncio import clock_of, result_within  # noqa: E402
from . import rfc8323common as rfc  # noqa: E402
from .generic_udp import split_hostinfo  # noqa: E402
from .rfc8323adapter import DriverInterface, HoldOffs, client_ssl_context, idle_victim, strip_mapped  # noqa: E402
from .connectiontable import ConnectionTable  # noqa: E402
from .rfc8323session import OPEN, SessionTuning  # noqa: E402
from .wsframes import MaskKeys  # noqa: E402

if TYPE_CHECKING:
    from . import TransportEntry, TransportSetup

__all__ = [
    "WSPool", "WSRemote", "PoolKey", "WSTuning", "DEFAULT_WS_TUNING", "is_pyodide",
    "SCHEME_WS", "SCHEME_WSS", "DEFAULT_PORTS", "SUBPROTOCOL", "RESOURCE_PATH",
    "SERVER_PORT", "SERVER_PORT_OFFSET",
]


@dataclass(frozen=True)
class WSTuning(SessionTuning):
    """Limits and timers of CoAP over WebSockets: those of the RFC 8323
    session (:class:`~aiocoap.transports.rfc8323session.SessionTuning`)
    and one more cap of the server."""

    max_server_connections_per_host: int = 64
    """Connections a server accepts from one IP address at the same time;
    more are reset at once."""


DEFAULT_WS_TUNING = WSTuning()


# --- the token interface ---------------------------------------------------------------


class WSPool(DriverInterface[WSRemote]):
    """The ``ws`` transport: CoAP over WebSockets as a client (a pool of
    connections, one per :class:`PoolKey`) and, in a server context, as a
    server (see the module description for the ports). Create it with
    :meth:`create_transport`."""

    def __init__(self, tman: interfaces.TokenManager, log: logging.Logger, loop: asyncio.AbstractEventLoop) -> None:
        self.tokenmanager = tman
        self.log = log
        self.loop = loop
        self.clock = clock_of(loop)
        self.tuning: WSTuning = DEFAULT_WS_TUNING
        """Timers and limits; connections read it when they are set up (a
        new instance affects later connections)."""
        self.servers: dict[str, asyncio.Server] = {}
        """The listening servers by scheme (``coap+ws``, ``coaps+ws``)."""
        self._client_credentials: Any = None
        self._default_ssl_context: Optional[ssl.SSLContext] = None
        self._pool: dict[PoolKey, WSRemote] = {}
        self._hold_offs = HoldOffs(self.clock)
        self._connect_tasks: set[asyncio.Task[None]] = set()
        # remotes with a socket, and sockets in their closing handshake
        self._connections: set[WSRemote] = set()
        self._closers: set[asyncio.BaseProtocol] = set()
        # accepted sockets still open, in total and by peer address
        self._accepted = 0
        self._per_host: dict[str, int] = {}
        self.troubles = Troubles(log, self.clock)
        """Where connections note what peers do wrong (rate-limited log
        lines)."""
        self._ws_log = WebSocketsLog(log, {})
        self.mask_keys = MaskKeys()
        """Where client connections take the masking keys of their frames."""
        self._shut = False
        self._drained: Optional[asyncio.Future[None]] = None
        # the server's connections against its caps (made on first use)
        self._table: Optional[ConnectionTable[WSRemote]] = None

    def __repr__(self) -> str:
        where = "".join(
            f" {scheme} on {', '.join(hostportjoin(strip_mapped(s.getsockname()[0]), s.getsockname()[1]) for s in server.sockets)}"
            for scheme, server in self.servers.items()
        )
        return f"<{type(self).__name__}{where} with {len(self._connections)} connection(s)>"

    @classmethod
    async def create_transport(
        cls,
        tman: interfaces.TokenManager,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        *,
        client_credentials: Any = None,
        server_bind: Optional[tuple[Optional[str], Optional[int]]] = None,
        server_context: Optional[ssl.SSLContext] = None,
        tuning: Optional[WSTuning] = None,
    ) -> "WSPool":
        """A pool that sends requests to ``coap+ws://`` and ``coaps+ws://``
        URIs (TLS as ``client_credentials`` say) and, with ``server_bind``
        ((host, port), either may be None), listens for WebSocket
        connections (with ``server_context``, an :class:`ssl.SSLContext`,
        also for secure ones); see the module description for the ports."""
        self = cls(tman, log, loop)
        if tuning is not None:
            self.tuning = tuning
        self._client_credentials = (
            client_credentials if client_credentials is not None else getattr(tman, "client_credentials", None)
        )
        if server_bind is not None:
            try:
                await self._listen(server_bind, server_context)
            except BaseException:
                await self.shutdown()
                raise
        return self

    async def _listen(
        self, bind: tuple[Optional[str], Optional[int]], server_context: Optional[ssl.SSLContext]
    ) -> None:
        host, port = bind
        if port is None:
            port = SERVER_PORT
        elif port != 0:
            port += SERVER_PORT_OFFSET
        secure_port = port + 1 if port else 0
        if (secure_port if server_context is not None else port) > 0xFFFF:
            self.log.warning(
                "Not serving CoAP over WebSockets: the port for bound port %d would be %d", bind[1], port
            )
            return
        self.servers[SCHEME_WS] = await self.loop.create_server(
            functools.partial(self._accept, SCHEME_WS), host, port, reuse_address=True
        )
        if server_context is not None:
            if not isinstance(server_context, ssl.SSLContext):
                raise TypeError("the server context of coaps+ws must be an ssl.SSLContext")
            self.servers[SCHEME_WSS] = await self.loop.create_server(
                functools.partial(self._accept, SCHEME_WSS), host, secure_port, reuse_address=True,
                ssl=server_context, ssl_handshake_timeout=self.tuning.connect_timeout,
            )

    def _accept(self, scheme: str) -> WSRemote:
        protocol = ServerProtocol(
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]  # (a str is what it is)
            logger=self._ws_log,
        )
        return WSRemote(self, protocol, self.loop, self.log, scheme=scheme)

    # --- for the connections -----------------------------------------------------------

    def admit(self, remote: WSRemote) -> Optional[str]:
        """Count a connection the server accepted against the caps: the
        host it is counted for (to be given back to :meth:`socket_gone`
        when its socket is closed), or None (after noting why) if it is one
        too many."""
        peer = remote.peername
        host = strip_mapped(peer[0]) if peer else ""
        if self._shut:
            why = "server shutting down"
        else:
            admission = self._connection_table().admit(remote, host)
            for victim in admission.close:
                self.troubles.note(
                    "idle connections closed for the caps", True, "Closing idle connection %r to make room for %s",
                    victim, host,
                )
                victim.close(error.NetworkError(f"Connection {rfc.describe_remote(victim)} closed to make room"))
            if admission.admitted:
                self._accepted += 1
                self._per_host[host] = self._per_host.get(host, 0) + 1
                return host
            why = admission.reason
        self.troubles.note("connections refused for the caps", True, "Refused connection from %s: %s", host, why)
        return None

    def _connection_table(self) -> ConnectionTable[WSRemote]:
        """The table of accepted connections, with the caps of the current
        tuning."""
        table = self._table
        if table is None:
            table = self._table = ConnectionTable(
                max_connections=0, max_per_host=0, max_buffered=0, idle_since=WSRemote.idle_rank
            )
        return table.follow(self.tuning)

    def buffered_changed(self, remote: WSRemote, nbytes: int) -> None:
        """The server connection ``remote`` holds ``nbytes`` of incomplete
        messages; the one holding most is aborted when all together hold
        more than the tuning's ``max_server_buffered``."""
        victim = self._connection_table().set_buffered(remote, nbytes)
        if victim is not None:
            self.troubles.note(
                "connections aborted for buffering too much", True,
                "Aborting connection %r: it holds the most of %d bytes of incomplete messages",
                victim, self.tuning.max_server_buffered,
            )
            victim.abort("too much of incomplete messages buffered")

    def socket_gone(self, counted_host: Optional[str]) -> None:
        """A socket :meth:`admit` counted for ``counted_host`` (None: one it
        did not count) is closed."""
        if counted_host is None:
            return
        self._accepted -= 1
        left = self._per_host[counted_host] - 1
        if left:
            self._per_host[counted_host] = left
        else:
            del self._per_host[counted_host]

    # --- TokenInterface ----------------------------------------------------------

    def recognize_remote(self, remote: object) -> bool:
        return isinstance(remote, WSRemote) and remote.pool is self

    async def fill_or_recognize_remote(self, message: Message) -> bool:
        remote = message.remote
        if isinstance(remote, WSRemote):
            return remote.pool is self
        if not isinstance(remote, UndecidedRemote) or remote.scheme not in DEFAULT_PORTS:
            return False
        message.remote = await self._connection_for(remote.scheme, remote.hostinfo, message)
        return True

    # --- client connections ---------------------------------------------------------

    async def _connection_for(self, scheme: str, hostinfo: str, message: Optional[Message] = None) -> WSRemote:
        if self._shut:
            raise error.LibraryShutdown("Transport shut down")
        host, port = split_hostinfo(hostinfo, DEFAULT_PORTS[scheme])
        key = PoolKey(scheme, hostportjoin(host.lower(), None if port == DEFAULT_PORTS[scheme] else port))
        remote = self._pool.get(key)
        if remote is None:
            self._hold_offs.check(key, f"{key.scheme}://{key.hostinfo}")
            self._make_room()
            remote = WSRemote(self, self._client_protocol(key), self.loop, self.log, scheme=scheme, remote_hostinfo=key.hostinfo)
            self._pool[key] = remote
            self._start_connecting(remote, message)
        if remote.state is not OPEN:
            await remote.wait_ready()
        return remote

    def _client_protocol(self, key: PoolKey) -> ClientProtocol:
        uri = parse_uri(f"{WS_SCHEMES[key.scheme]}://{key.hostinfo}{RESOURCE_PATH}")
        return ClientProtocol(
            uri,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            logger=self._ws_log,
        )

    def _make_room(self) -> None:
        """Close the connection idle the longest if the pool is full; fail
        if none is idle."""
        clients = [r for r in self._connections if not r.local_is_server]
        live = len(clients) + len(self._connect_tasks)
        if live < self.tuning.max_connections:
            return
        victim = idle_victim(clients)
        if victim is None:
            raise error.NetworkError(f"Too many WebSocket connections open ({live}); none of them is idle")
        self.log.debug("Closing idle connection %r to make room", victim)
        self._unpool(victim)
        victim.close()

    def _start_connecting(self, remote: WSRemote, message: Optional[Message]) -> None:
        task = remote.start_connecting(self._connect(remote, message), f"aiocoap {remote.scheme} connect")
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    def _client_ssl_context(self, remote: WSRemote, message: Optional[Message]) -> ssl.SSLContext:
        context = client_ssl_context(self._client_credentials, message, remote.uri_base + "/", HTTP_ALPN)
        if context is not None:
            return context
        if self._default_ssl_context is None:
            self._default_ssl_context = ssl.create_default_context()
            self._default_ssl_context.set_alpn_protocols([HTTP_ALPN])
        return self._default_ssl_context

    async def _connect(self, remote: WSRemote, message: Optional[Message]) -> None:
        scheme, hostinfo = remote.pool_key
        host, port = split_hostinfo(hostinfo, DEFAULT_PORTS[scheme])
        where = f"{remote.uri_base}{RESOURCE_PATH}"
        timeout = self.tuning.connect_timeout
        try:
            kwargs: dict[str, Any] = {}
            if scheme == SCHEME_WSS:
                kwargs.update(
                    ssl=self._client_ssl_context(remote, message), server_hostname=host,
                    ssl_handshake_timeout=timeout,
                )
            await result_within(self.loop.create_connection(lambda: remote, host, port, **kwargs), timeout)
        except asyncio.CancelledError:
            self._connect_failed(remote, error.LibraryShutdown("Transport shut down"))
            raise
        except asyncio.TimeoutError:
            self._connect_failed(remote, error.NetworkError(f"Connecting to {where} timed out after {timeout:g} s"))
        except socket.gaierror as e:
            failure: error.Error = error.ResolutionError(f"No address found for {host}: {e.strerror or e}")
            failure.__cause__ = e
            self._connect_failed(remote, failure)
        except Exception as e:
            failure = e if isinstance(e, error.Error) else error.NetworkError(
                f"Connecting to {where} failed: {describe_failure(e)}"
            )
            failure.__cause__ = e
            self._connect_failed(remote, failure)

    def _connect_failed(self, remote: WSRemote, exc: Exception) -> None:
        self.log.debug("Connecting %r failed: %s", remote, exc)
        self._unpool(remote)
        remote.connecting_failed(exc)
        self.tokenmanager.dispatch_error(exc, remote)

    def revive(self, remote: WSRemote, monitor: Optional[Monitor]) -> bool:
        try:
            if self._shut:
                raise error.LibraryShutdown("Transport shut down")
            if remote.local_is_server:
                raise error.NetworkError(f"Connection {rfc.describe_remote(remote)} is closed")
            self._hold_offs.check(remote.pool_key, remote.uri_base)
            self._make_room()
        except error.Error as e:
            if monitor is not None:
                monitor(e)
            return False
        self._pool.setdefault(remote.pool_key, remote)
        remote.new_handshake(self._client_protocol(remote.pool_key))
        self._start_connecting(remote, None)
        return True

    def _unpool(self, remote: WSRemote) -> None:
        if self._pool.get(remote.pool_key) is remote:
            del self._pool[remote.pool_key]

    def connection_released(self, remote: WSRemote, hold_off: Optional[int]) -> None:
        if remote.local_is_server:
            return
        self._unpool(remote)
        if hold_off:
            self._hold_offs.add(remote.pool_key, hold_off)

    def connection_closed(self, remote: WSRemote) -> None:
        if self._table is not None:
            self._table.remove(remote)
        if not remote.local_is_server:
            self._unpool(remote)
        super().connection_closed(remote)

    # --- shutdown ------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop listening, close every connection (WebSocket close code
        1001) and wait until their sockets are closed; requests pending on
        them fail with :class:`aiocoap.error.LibraryShutdown`."""
        if self._shut:
            return
        self._shut = True
        for server in self.servers.values():
            server.close()
        tasks = list(self._connect_tasks)
        for task in tasks:
            task.cancel()
        for remote in list(self._connections):
            remote.close_for_shutdown()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._pool.clear()
        await self._wait_drained()
        for server in self.servers.values():
            await server.wait_closed()


async def load(entry: "TransportEntry", setup: "TransportSetup") -> None:
    """Attach the ``ws`` transport to a context (see
    :data:`aiocoap.transports.TRANSPORTS`): a client in every context, and
    in a server context also the servers (``coaps+ws`` when the context was
    given an SSL context)."""
    pool = await WSPool.create_transport(
        setup.tokenmanager, setup.log, setup.loop,
        client_credentials=setup.client_credentials,
        server_bind=setup.server_bind,
        server_context=setup.ssl_context,
    )
    setup.add_token_interface(pool)
