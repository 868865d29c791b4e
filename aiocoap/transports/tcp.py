"""CoAP over TCP (RFC 8323): the ``coap+tcp`` scheme, as a server
(:class:`TCPServer`, transport name ``tcpserver``) and as a client with a
connection pool (:class:`TCPClient`, ``tcpclient``).

Each TCP connection is one :class:`TcpConnection`: the asyncio protocol of
the socket, the remote (an :class:`aiocoap.interfaces.EndpointAddress`) of
every message exchanged on it, and the asyncio adapter of the
:class:`~aiocoap.transports.rfc8323session.RFC8323Session` that holds the
protocol rules (CSM, Max-Message-Size, Ping/Pong, Release, Abort, the
timers; listed in :mod:`aiocoap.transports.rfc8323session`). There is no
message layer: messages have neither type nor message ID, requests go to
:meth:`TokenManager.process_request` and responses to
:meth:`TokenManager.process_response` as they arrive.

What this module does beside the session:

* It moves the bytes: received data goes to the session with
  ``loop.time()``; the frames the session writes in one event loop
  iteration are joined into socket writes of up to 16 frames
  (:class:`~aiocoap.transports.rfc8323session.WriteBatcher`: few system
  calls, but the peer starts on the first frames while later ones are
  still being produced). Its ``backlog`` (frames not
  yet handed to the socket, plus the socket's buffer while the peer makes
  asyncio pause writing) is what the session holds against
  :attr:`TcpTuning.write_buffer_limit`.
* One ``loop.call_at`` timer per connection, at the session's next
  deadline.
* When a connection ends, every request pending on it fails at once with
  :class:`aiocoap.error.NetworkError` (the token manager's
  ``dispatch_error``), server-side observations on it end. A socket closed
  from our side may flush for :attr:`TcpTuning.close_timeout` before it is
  cut.
* Client connections are pooled per (host, port) of the URI, bounded in
  number (:attr:`TcpTuning.max_connections`; idle ones are evicted first).
  A client connection object that was closed comes back to life (with a new
  session) when a request is sent to it again, so routes cached by the
  Context keep working. A peer's Release takes the connection out of the
  pool; a Hold-Off in it keeps us from reconnecting to that peer for the
  given time.
* A server's connections are capped by a
  :class:`~aiocoap.transports.connectiontable.ConnectionTable`: at most
  :attr:`TcpTuning.max_server_connections` in all and
  :attr:`TcpTuning.max_server_connections_per_host` per host, where one
  more first closes the connection idle longest (of that host, or of
  anyone) and is answered with an Abort only if none is idle; at most
  :attr:`TcpTuning.max_server_buffered` bytes of incomplete messages
  together, above which the connection holding most is aborted. Idle
  server connections close after :attr:`TcpTuning.server_idle_timeout`,
  and messages trickling in slower than :attr:`TcpTuning.frame_min_rate`
  are aborted (both by the session).

The framing helpers of aiocoap's ``transports.tcp`` module
(:func:`_extract_message_size`, :func:`_decode_message`,
:func:`_encode_length`, :func:`_serialize`) are kept for code that imports
them; they are thin wrappers around :mod:`aiocoap.transports.rfc8323common`.

Log levels: debug for per-message events; what peers cause (violations,
refused or evicted connections, connections they end) through the
interface's rate-limited
:class:`~aiocoap.transports.rfc8323session.PeerLog`: debug for each, one
line a minute per kind at info or warning.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, cast

from .. import defaults, error, interfaces
from ..message import Message, UndecidedRemote
from ..numbers.constants import COAP_PORT
from ..util import hostportjoin
from ..util.asyncio import clock_of, result_within
from . import rfc8323common as rfc
from .generic_udp import split_hostinfo
from .connectiontable import ConnectionTable
from .rfc8323adapter import DriverInterface, HoldOffs, SessionDriver, idle_victim, strip_mapped
from .rfc8323session import (
    CLOSED,
    DEFAULT_SESSION_TUNING,
    OPEN,
    RFC8323Session,
    SessionTuning,
    StreamFramer,
    WriteBatcher,
)

if TYPE_CHECKING:
    from . import TransportEntry, TransportSetup

__all__ = ["TcpConnection", "TCPServer", "TCPClient", "TcpTuning", "DEFAULT_TCP_TUNING", "COAP_PORT"]

TcpTuning = SessionTuning
"""Limits and timers of the RFC 8323 transports (TCP and TLS): the
:class:`~aiocoap.transports.rfc8323session.SessionTuning` of their
sessions."""

DEFAULT_TCP_TUNING = DEFAULT_SESSION_TUNING

Monitor = Callable[[Exception], None]
SockAddr = tuple[Any, ...]
PoolKey = tuple[str, int]
ServerT = TypeVar("ServerT", bound="TCPServer")
ClientT = TypeVar("ClientT", bound="TCPClient")


# --- the framing helpers aiocoap's transports.tcp module has -------------------------


def _extract_message_size(data: bytes) -> Optional[tuple[int, int, int]]:
    """Where the parts of the RFC 8323 frame at the start of ``data`` are:
    ``(token offset, TKL, Len)``, or None while ``data`` is too short to
    tell. The token starts at ``token offset`` (after the length bytes and
    the Code); the frame is ``token offset + TKL + Len`` bytes long.

    >>> _extract_message_size(bytes.fromhex("c2 01 1234 bb") + b"temperature")
    (2, 2, 12)
    >>> _extract_message_size(bytes.fromhex("d1 10 45 01"))
    (3, 1, 29)
    >>> _extract_message_size(b"\\xd1") is None
    True
    """
    header = rfc.read_frame_header(data)
    if header is None:
        return None
    length_bytes, tkl, length = header
    return length_bytes + 1, tkl, length


def _decode_message(data: bytes) -> Message:
    """Decode one complete RFC 8323 frame; raises
    :class:`aiocoap.error.UnparsableMessage` if it is not exactly one.

    >>> message = _decode_message(bytes.fromhex("c2 01 1234 bb") + b"temperature")
    >>> message.code, message.token, message.opt.uri_path
    (<Request Code 1 "GET">, b'\\x124', ('temperature',))
    """
    return rfc.decode_message(data)


def _encode_length(length: int) -> tuple[int, bytes]:
    """The Len nibble and extended length bytes announcing ``length``.

    >>> _encode_length(5), _encode_length(100), _encode_length(70000)
    ((5, b''), (13, b'W'), (15, b'\\x00\\x00\\x10c'))
    """
    return rfc.encode_length(length)


def _serialize(msg: Message) -> bytes:
    """Encode a message as one RFC 8323 frame (its type and message ID are
    not part of it).

    >>> from aiocoap.numbers.codes import Code
    >>> _serialize(Message(code=Code.CONTENT, _token=b"\\x01", payload=b"hi")).hex()
    '314501ff6869'
    """
    return rfc.encode_message(msg)


# --- connections ------------------------------------------------------------------------


def _describe_oserror(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    return exc.strerror or str(exc) or type(exc).__name__


def _describe_ssl_error(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return f"certificate verify failed: {detail}"
    reason = exc.reason or str(exc) or type(exc).__name__
    return reason.replace("_", " ").lower() if reason.isupper() else reason


class TcpConnection(SessionDriver, asyncio.Protocol):
    """One RFC 8323 connection: the asyncio protocol of its socket, the
    remote of the messages exchanged over it, and the driver of its
    :class:`~aiocoap.transports.rfc8323session.RFC8323Session`.

    Server side connections are created by :class:`TCPServer` for each
    accepted socket (``hostinfo`` None: the peer's address describes it);
    client side ones by :class:`TCPClient` for a URI authority
    (``hostinfo``), with a new session each time they (re)connect.
    Applications get them as ``message.remote`` and compare them by
    identity."""

    def __init__(
        self,
        interface: "_TCPPooling",
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        *,
        hostinfo: Optional[str] = None,
        key: PoolKey = ("", 0),
    ) -> None:
        SessionDriver.__init__(self, loop, log, interface.clock, local_is_server=hostinfo is None)
        self._interface = interface
        self._remote_hostinfo = hostinfo
        # (host, port) a client connection connects to, its key in the pool
        self._key = key
        self._batch = WriteBatcher()
        # what the interface was last told the framer holds of an incomplete message
        self._reported_buffered = 0

    # --- EndpointAddress ---------------------------------------------------------

    @property
    def scheme(self) -> str:
        return self._interface._scheme

    @property
    def _uri_default_port(self) -> int:
        return self._interface._default_port

    def set_local_name(self, name: str) -> None:
        """Name the local side of this (server side) connection by the host
        name the client asked for, e.g. the TLS SNI: request URIs of
        requests without Uri-Host then carry that host."""
        port = self._sockname[1] if self._sockname else None
        self._local_hostinfo = hostportjoin(name, None if port == self._uri_default_port else port)

    def transport_info(self, name: str, default: Any = None) -> Any:
        """The asyncio transport's extra info ``name`` (``"ssl_object"``,
        ``"peercert"``, ...), or ``default`` while there is no transport."""
        transport = self._transport
        return default if transport is None else transport.get_extra_info(name, default)

    # --- the session -------------------------------------------------------------

    def _new_session(self) -> RFC8323Session:
        interface = self._interface
        return self._open_session(
            StreamFramer(interface.tuning.max_message_size), self._write, interface, self._detach
        )

    def _session_released(self, hold_off: Optional[int]) -> None:
        self._interface.connection_released(self, hold_off)

    def _on_timer(self) -> None:
        self._drive_timer()

    # --- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._paused = False
        self._peername = transport.get_extra_info("peername")
        self._sockname = transport.get_extra_info("sockname")
        session = self._session
        if session is None or session.started or session.state is CLOSED:
            session = self._new_session()
        session.start(self._clock())
        self._rearm(session)
        self._interface.connection_opened(self)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._transport is None:
            return
        where = rfc.describe_remote(self)
        session = self._session
        if exc is None and (session is None or not session.csm_received):
            reason = error.NetworkError(
                f"Connection {where} was closed by the peer before it sent a CSM{self._interface._early_close_hint}"
            )
        elif exc is None:
            reason = error.NetworkError(f"Connection {where} was closed by the peer")
        elif isinstance(exc, ssl.SSLError):
            reason = error.NetworkError(f"TLS connection {where} failed: {_describe_ssl_error(exc)}")
        elif isinstance(exc, OSError):
            reason = error.NetworkError(f"Connection {where} lost: {_describe_oserror(exc)}")
        else:
            reason = error.NetworkError(f"Connection {where} lost: {exc!r}")
        if exc is not None:
            reason.__cause__ = exc
        self._lost(reason)

    def eof_received(self) -> None:
        session = self._session
        if session is not None and session.buffered:
            self.log.info("Peer %s closed its side in the middle of a message", rfc.describe_remote(self))
        # Returning None lets the transport close.
        return None

    def data_received(self, data: bytes) -> None:
        session = self._session
        if self._transport is None or session is None:
            return
        session.receive_data(data, self._clock())
        if session.added_deadline is not None:
            self._rearm(session)
        buffered = session.buffered
        if buffered or self._reported_buffered:
            self._reported_buffered = buffered
            self._interface.buffered_changed(self, buffered)

    # --- sending -------------------------------------------------------------------

    def _revive(self, monitor: Optional[Monitor]) -> bool:
        return self._interface.revive(self, monitor)

    def _write(self, frame: bytes) -> None:
        """Write a frame: with the others of this loop iteration at its
        end, or at once with those before it when they fill a chunk (see
        :class:`~aiocoap.transports.rfc8323session.WriteBatcher`)."""
        transport = self._transport
        if transport is None:
            return
        batch = self._batch
        chunk = batch.add(frame)
        self._out_bytes = batch.bytes
        if chunk is not None:
            transport.write(chunk)
        elif self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._transport is not None:
            chunk = self._batch.take()
            self._out_bytes = 0
            if chunk is not None:
                self._transport.write(chunk)

    # --- closing -----------------------------------------------------------------

    def close(self, reason: Optional[Exception] = None) -> None:
        self._detach(reason)

    def _detach(self, reason: Optional[Exception], hard: bool = False) -> None:
        """End the connection from our side, now: the transport is handed to
        a :class:`_Closer` that flushes (unless ``hard``) and closes it,
        while this object becomes closed at once (and, on the client side,
        can be connected again). This is the session's ``on_close``."""
        transport = self._transport
        if transport is None:
            return
        if hard:
            self._batch.clear()
            self._out_bytes = 0
        else:
            self._flush()
        closer = _Closer(self._interface, transport)
        transport.set_protocol(closer)
        if hard:
            transport.abort()
        else:
            transport.close()
            closer.arm(self._interface.tuning.close_timeout)
        if reason is None:
            reason = error.NetworkError(f"Connection {rfc.describe_remote(self)} was closed")
        self._lost(reason)

    def _lost(self, reason: Exception) -> None:
        """The connection is gone: fail what waited for it."""
        if self._session is not None:
            self._session.connection_lost(reason)
        self._transport = None
        self._batch.clear()
        self._out_bytes = 0
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._timer.cancel()
        self._fail_ready(reason)
        self._interface.connection_closed(self)
        self._interface.tokenmanager.dispatch_error(reason, self)

    def close_for_shutdown(self) -> None:
        reason = error.LibraryShutdown("Transport shut down")
        if self._connect_task is not None:
            self._connect_task.cancel()
        if self._transport is not None:
            self._detach(reason)
        else:
            self._fail_ready(reason)


class _Closer(asyncio.Protocol):
    """Takes over the transport of a connection we closed, until the socket
    is really gone; cuts it if flushing takes longer than allowed."""

    def __init__(self, interface: "_TCPPooling", transport: asyncio.Transport) -> None:
        self._interface = interface
        self._transport: Optional[asyncio.Transport] = transport
        self._timer: Optional[asyncio.TimerHandle] = None
        interface.closing_started(self)

    def arm(self, timeout: float) -> None:
        if self._transport is not None:
            self._timer = self._interface.loop.call_later(timeout, self._cut)

    def _cut(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        return None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._interface.closing_done(self)


class _TCPPooling(DriverInterface[TcpConnection]):
    """What TCPServer and TCPClient share: the scheme, the tuning, the set of
    live connections, sending, and shutting down."""

    _scheme = rfc.SCHEME_TCP
    _default_port = rfc.DEFAULT_PORT_TCP
    _early_close_hint = ""

    def __init__(
        self,
        tman: interfaces.TokenManager,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        tuning: Optional[TcpTuning] = None,
    ) -> None:
        self.tokenmanager = tman
        self.log = log
        self.loop = loop
        self.clock = clock_of(loop)
        self.tuning = tuning or DEFAULT_TCP_TUNING
        self._connections: set[TcpConnection] = set()
        self._closers: set[asyncio.BaseProtocol] = set()
        self._shut = False
        self._drained: Optional[asyncio.Future[None]] = None

    # --- TokenInterface ----------------------------------------------------------

    def recognize_remote(self, remote: object) -> bool:
        return isinstance(remote, TcpConnection) and remote._interface is self

    async def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        for connection in list(self._connections):
            connection.close_for_shutdown()
        await self._wait_drained()


class TCPServer(_TCPPooling, interfaces.TokenInterface):
    """Accepts RFC 8323 connections and serves the requests arriving on them
    (transport name ``tcpserver``). Responses, notifications and requests of
    our own go out on the connection the remote names."""

    server: Optional[asyncio.Server] = None
    """The listening server (set by :meth:`create_server`)."""

    def __repr__(self) -> str:
        where = ""
        if self.server is not None and self.server.sockets:
            where = " on " + ", ".join(self._format_sockname(s.getsockname()) for s in self.server.sockets)
        return f"<{type(self).__name__}{where} with {len(self._connections)} connection(s)>"

    @staticmethod
    def _format_sockname(sockname: SockAddr) -> str:
        return hostportjoin(strip_mapped(sockname[0]), sockname[1])

    @classmethod
    async def create_server(
        cls: type[ServerT],
        bind: Optional[tuple[Optional[str], Optional[int]]],
        tman: interfaces.TokenManager,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        *,
        _server_context: Optional[ssl.SSLContext] = None,
        tuning: Optional[TcpTuning] = None,
    ) -> ServerT:
        """Listen on ``bind`` ((host, port); None for any address / the
        default port, port 0 for an ephemeral one). With ``_server_context``
        (an :class:`ssl.SSLContext`) connections are TLS."""
        self = cls(tman, log, loop, tuning)
        host, port = bind if bind is not None else (None, None)
        if port is None:
            port = self._default_port
        kwargs: dict[str, Any] = {}
        if _server_context is not None:
            kwargs["ssl"] = _server_context
            kwargs["ssl_handshake_timeout"] = self.tuning.connect_timeout
        self.server = await loop.create_server(
            self._new_connection, host, port, reuse_address=True,
            reuse_port=defaults.has_reuse_port(), **kwargs
        )
        return self

    _table: Optional[ConnectionTable[TcpConnection]] = None

    def _new_connection(self) -> TcpConnection:
        return TcpConnection(self, self.log, self.loop)

    def _connection_table(self) -> ConnectionTable[TcpConnection]:
        """The table of connections, with the caps of the current tuning."""
        table = self._table
        if table is None:
            table = self._table = ConnectionTable(
                max_connections=0, max_per_host=0, max_buffered=0, idle_since=TcpConnection.idle_rank
            )
        return table.follow(self.tuning)

    def connection_opened(self, connection: TcpConnection) -> None:
        super().connection_opened(connection)
        if self._shut:
            connection.abort("server shutting down")
            return
        peername = connection.peername
        host = strip_mapped(peername[0]) if peername else ""
        admission = self._connection_table().admit(connection, host)
        now = self.clock()
        for victim in admission.close:
            self.peer_log.refused.log(
                now, "Closing idle connection %s to make room for %s",
                rfc.describe_remote(victim), rfc.describe_remote(connection),
            )
            victim.close(error.NetworkError(f"Connection {rfc.describe_remote(victim)} closed to make room"))
        if not admission.admitted:
            self.peer_log.refused.log(now, "Refusing %s: %s", rfc.describe_remote(connection), admission.reason)
            connection.abort(admission.reason)

    def connection_closed(self, connection: TcpConnection) -> None:
        if self._table is not None:
            self._table.remove(connection)
        super().connection_closed(connection)

    def buffered_changed(self, connection: TcpConnection, nbytes: int) -> None:
        victim = self._connection_table().set_buffered(connection, nbytes)
        if victim is not None:
            self.peer_log.violation.log(
                self.clock(), "Aborting connection %s: it holds the most of %d bytes of incomplete messages",
                rfc.describe_remote(victim), self.tuning.max_server_buffered,
            )
            victim.abort("too much of incomplete messages buffered")

    async def fill_or_recognize_remote(self, message: Message) -> bool:
        remote = message.remote
        return isinstance(remote, TcpConnection) and remote._interface is self

    async def shutdown(self) -> None:
        if self._shut:
            return
        if self.server is not None:
            self.server.close()
        await super().shutdown()
        if self.server is not None:
            await self.server.wait_closed()


class TCPClient(_TCPPooling, interfaces.TokenInterface):
    """Opens RFC 8323 connections for requests to ``coap+tcp://`` URIs
    (transport name ``tcpclient``) and keeps them in a pool: one usable
    connection per (host, port), reused by later requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool: dict[PoolKey, TcpConnection] = {}
        self._hold_offs = HoldOffs(self.clock)
        self._connect_tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} with {len(self._pool)} pooled connection(s)>"

    @classmethod
    async def create_client_transport(
        cls: type[ClientT],
        tman: interfaces.TokenManager,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        *,
        tuning: Optional[TcpTuning] = None,
    ) -> ClientT:
        return cls(tman, log, loop, tuning)

    def _connection_kwargs(self, connection: TcpConnection, host: str, message: Optional[Message]) -> dict[str, Any]:
        """Extra arguments to loop.create_connection for a connection to
        ``host`` (TLS adds its own)."""
        return {}

    async def fill_or_recognize_remote(self, message: Message) -> bool:
        remote = message.remote
        if isinstance(remote, TcpConnection):
            return remote._interface is self
        if not isinstance(remote, UndecidedRemote) or remote.scheme != self._scheme:
            return False
        connection = await self._connection_for(remote.hostinfo, message)
        message.remote = connection
        return True

    async def _connection_for(self, hostinfo: str, message: Optional[Message] = None) -> TcpConnection:
        if self._shut:
            raise error.LibraryShutdown("Transport shut down")
        host, port = split_hostinfo(hostinfo, self._default_port)
        host = host.lower()
        key = (host, port)
        connection = self._pool.get(key)
        if connection is None:
            self._check_hold_off(key)
            self._make_room()
            connection = TcpConnection(
                self, self.log, self.loop,
                hostinfo=hostportjoin(host, None if port == self._default_port else port), key=key,
            )
            self._pool[key] = connection
            self._start_connecting(connection, message)
        if connection.state is not OPEN:
            await connection.wait_ready()
        return connection

    def _check_hold_off(self, key: PoolKey) -> None:
        self._hold_offs.check(key, f"{self._scheme}://{hostportjoin(*key)}")

    def _make_room(self) -> None:
        live = len(self._connections) + len(self._connect_tasks)
        if live < self.tuning.max_connections:
            return
        victim = idle_victim(self._connections)
        if victim is None:
            raise error.NetworkError(
                f"Too many {self._scheme} connections open ({live}); none of them is idle"
            )
        self.log.debug("Closing idle connection %r to make room", victim)
        self._unpool(victim)
        victim.close()

    def _start_connecting(self, connection: TcpConnection, message: Optional[Message]) -> None:
        task = connection.start_connecting(self._connect(connection, message), f"aiocoap {self._scheme} connect")
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    async def _connect(self, connection: TcpConnection, message: Optional[Message]) -> None:
        host, port = connection._key
        try:
            try:
                kwargs = self._connection_kwargs(connection, host, message)
                await result_within(
                    self.loop.create_connection(lambda: connection, host, port, **kwargs),
                    self.tuning.connect_timeout,
                )
            except asyncio.TimeoutError:
                raise error.NetworkError(
                    f"Connecting to {connection.uri_base} timed out after {self.tuning.connect_timeout:g} s"
                ) from None
            except socket.gaierror as e:
                raise error.ResolutionError(
                    f"No address found for {host}: {e.strerror or e}"
                ) from e
            except ssl.SSLError as e:
                raise error.NetworkError(
                    f"TLS connection to {connection.uri_base} failed: {_describe_ssl_error(e)}"
                ) from e
            except OSError as e:
                raise error.NetworkError(
                    f"Connection to {connection.uri_base} failed: {_describe_oserror(e)}"
                ) from e
        except asyncio.CancelledError:
            self._connect_failed(connection, error.LibraryShutdown("Transport shut down"))
            raise
        except Exception as e:
            if not isinstance(e, error.Error):
                wrapped = error.NetworkError(f"Connection to {connection.uri_base} failed: {e}")
                wrapped.__cause__ = e
                e = wrapped
            self._connect_failed(connection, e)

    def _connect_failed(self, connection: TcpConnection, exc: Exception) -> None:
        self.log.debug("Connecting %r failed: %s", connection, exc)
        self._unpool(connection)
        connection.connecting_failed(exc)
        self.tokenmanager.dispatch_error(exc, connection)

    def revive(self, connection: TcpConnection, monitor: Optional[Monitor]) -> bool:
        if self._shut:
            if monitor is not None:
                monitor(error.LibraryShutdown("Transport shut down"))
            return False
        try:
            self._check_hold_off(connection._key)
            self._make_room()
        except error.Error as e:
            if monitor is not None:
                monitor(e)
            return False
        if connection._key not in self._pool:
            self._pool[connection._key] = connection
        self._start_connecting(connection, None)
        return True

    def _unpool(self, connection: TcpConnection) -> None:
        """No new requests go to ``connection``."""
        if self._pool.get(connection._key) is connection:
            del self._pool[connection._key]

    def connection_closed(self, connection: TcpConnection) -> None:
        self._unpool(connection)
        super().connection_closed(connection)

    def connection_released(self, connection: TcpConnection, hold_off: Optional[int]) -> None:
        self._unpool(connection)
        if hold_off:
            self._hold_offs.add(connection._key, hold_off)

    async def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        tasks = list(self._connect_tasks)
        for task in tasks:
            task.cancel()
        for connection in list(self._connections):
            connection.close_for_shutdown()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._pool.clear()
        await self._wait_drained()


async def load(entry: "TransportEntry", setup: "TransportSetup") -> None:
    """Attach the client (``tcpclient``) or server (``tcpserver``) side to a
    context (see :data:`aiocoap.transports.TRANSPORTS`)."""
    interface: TCPServer | TCPClient
    if entry.server:
        interface = await TCPServer.create_server(setup.server_bind, setup.tokenmanager, setup.log, setup.loop)
    else:
        interface = await TCPClient.create_client_transport(setup.tokenmanager, setup.log, setup.loop)
    setup.add_token_interface(interface)
