"""CoAP over WebSockets (RFC 8323 §4): the ``coap+ws`` and ``coaps+ws``
schemes, as a client and a server in one token interface (:class:`WSPool`,
transport name ``ws``), on the sans-I/O layer of the ``websockets``
package (install ``aiocoap[ws]``).

Layers of one connection, each without I/O of its own below the asyncio
protocol (:class:`WSRemote`) that moves the bytes::

    socket bytes -> websockets ServerProtocol / ClientProtocol (HTTP upgrade, WebSocket frames)
                 -> binary messages -> RFC8323Session (WebSocketFramer) -> token layer

The protocol rules of CoAP (CSM, Max-Message-Size, Ping/Pong, Release,
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
  (§4.2); fragmented messages are put together (within the size limit
  below). A text message aborts the connection (WebSocket close code
  1003). Each side's first message is its CSM; the client starts.
* Size: the Max-Message-Size we announce bounds what we accept, and
  websockets' ``max_size`` refuses a WebSocket message above it (plus the
  CoAP header and token) from its frame header, before any of its body is
  buffered (close code 1009, the connection ends). What the peer announced
  bounds what we send (see the session).
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
  on shutdown), cut after ``close_timeout``; when the peer closes the
  WebSocket or the socket, every request pending on it fails at once with
  :class:`aiocoap.error.NetworkError` and observations on it end.
* Client connections are pooled per :class:`PoolKey` (scheme and
  authority, default ports 80 and 443 left out): one WebSocket per peer,
  shared by all requests to it, at most ``max_connections`` of them (idle
  ones are evicted first, else the request fails). A closed one is
  reconnected when a request is sent to it again. A peer's Release takes
  it out of the pool; its Hold-Off keeps us from reconnecting for that
  time.
* A server keeps at most ``max_server_connections`` accepted connections
  (handshakes in progress included) and at most
  :attr:`WSTuning.max_server_connections_per_host` from one address; a
  connection beyond either is reset at once, before anything is read from
  it.

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
import http
import logging
import socket
import ssl
import sys
from collections import namedtuple
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Union, cast

from ..defaults import missing_module_message

try:
    from websockets.client import ClientProtocol
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Request, Response
    from websockets.protocol import SEND_EOF, State
    from websockets.server import ServerProtocol
    from websockets.uri import parse_uri
except ImportError as _e:  # pragma: no cover (the extra is installed in CI)
    raise ImportError(missing_module_message("ws", ["websockets"])) from _e

from .. import error, interfaces
from ..message import Message, UndecidedRemote
from ..util import hostportjoin, hostportsplit
from ..util.asyncio import clock_of
from ..util.asyncio.timer import DeadlineTimer
from . import rfc8323common as rfc
from .generic_udp import split_hostinfo
from .rfc8323adapter import DriverInterface, HoldOffs, SessionDriver, client_ssl_context, idle_victim, strip_mapped
from .rfc8323session import OPEN, RFC8323Session, SessionTuning, WebSocketFramer

if TYPE_CHECKING:
    from . import TransportEntry, TransportSetup

__all__ = [
    "WSPool", "WSRemote", "PoolKey", "WSTuning", "DEFAULT_WS_TUNING", "is_pyodide",
    "SCHEME_WS", "SCHEME_WSS", "DEFAULT_PORTS", "SUBPROTOCOL", "RESOURCE_PATH",
    "SERVER_PORT", "SERVER_PORT_OFFSET",
]

SCHEME_WS = "coap+ws"
SCHEME_WSS = "coaps+ws"
DEFAULT_PORTS = {SCHEME_WS: 80, SCHEME_WSS: 443}
"""The port a URI of the scheme means when it names none (RFC 8323 §8.3)."""

SUBPROTOCOL = "coap"
"""The WebSocket subprotocol of CoAP (RFC 8323 §11.5)."""

RESOURCE_PATH = "/.well-known/coap"
"""Where CoAP over WebSockets is served (RFC 8323 §4.1)."""

SERVER_PORT = 8683
"""The port a server listens on for ``coap+ws`` when not bound explicitly
(``coaps+ws``: the next one), as aiocoap 0.4.x does."""

SERVER_PORT_OFFSET = 3000
"""How far from an explicitly bound port P the WebSocket server listens
(P + 3000, with TLS P + 3001), as aiocoap 0.4.x does."""

_WS_SCHEMES = {SCHEME_WS: "ws", SCHEME_WSS: "wss"}
_HTTP_ALPN = "http/1.1"
# Bytes of a WebSocket message beyond what a CSM's Max-Message-Size counts:
# the TKL byte, the code and up to 8 bytes of token.
_HEADER_AND_TOKEN = 2 + 8

is_pyodide = sys.platform == "emscripten"
"""Whether this runs in a browser (Pyodide); see the module description."""

PoolKey = namedtuple("PoolKey", ("scheme", "hostinfo"))
"""What client connections are pooled by: the URI scheme (``coap+ws`` or
``coaps+ws``) and the authority (lower case, default port left out)."""


@dataclass(frozen=True)
class WSTuning(SessionTuning):
    """Limits and timers of CoAP over WebSockets: those of the RFC 8323
    session (:class:`~aiocoap.transports.rfc8323session.SessionTuning`)
    and one more cap of the server."""

    max_server_connections_per_host: int = 64
    """Connections a server accepts from one IP address at the same time;
    more are reset at once."""


DEFAULT_WS_TUNING = WSTuning()

Monitor = Callable[[Exception], None]
SockAddr = tuple[Any, ...]
HostInfo = Union[str, tuple[str, Optional[int]], None]

_WS_OPEN = State.OPEN
_BINARY, _CONT, _TEXT, _CLOSE = Opcode.BINARY, Opcode.CONT, Opcode.TEXT, Opcode.CLOSE
_NORMAL_CLOSURE, _GOING_AWAY, _UNSUPPORTED_DATA = 1000, 1001, 1003


# --- helpers ------------------------------------------------------------------------


def _as_hostinfo(value: HostInfo) -> Optional[str]:
    """0.4.x passes (host, port) tuples where we keep hostinfo strings."""
    if value is None or isinstance(value, str):
        return value
    return hostportjoin(*value)


def _host_header_hostinfo(request: Request) -> Optional[str]:
    """The authority a client addressed (its Host header), normalized; None
    if it has none that is usable."""
    try:
        host, port = hostportsplit(request.headers.get("Host", ""))
    except (ValueError, KeyError):
        return None
    if not host:
        return None
    return hostportjoin(host.lower(), port)


def _put(transport: asyncio.Transport, chunks: list[bytes]) -> None:
    """Write what a websockets protocol produced (``data_to_send()``);
    its end-of-stream marker half-closes the connection (closes it where
    that is not possible, as with TLS)."""
    if SEND_EOF in chunks:
        for chunk in chunks:
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()
                return
    elif chunks:
        transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))


def _describe_failure(exc: BaseException) -> str:
    """A short text for why connecting failed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message or exc.reason or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


class _WebSocketsLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """What websockets logs about single connections (open, closed,
    rejected: info to it) is debug detail here; its warnings and errors
    stay what they are."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(level if level >= logging.WARNING else logging.DEBUG, msg, *args, **kwargs)


class _Troubles:
    """Counts refused connections and peers that broke the WebSocket
    protocol: each one at debug level, a summary at most every
    ``interval`` seconds (warning if the caps refused connections in it,
    else info), so that no peer can flood the log."""

    def __init__(self, log: logging.Logger, clock: Callable[[], float], interval: float = 10.0) -> None:
        self.log = log
        self._clock = clock
        self.interval = interval
        self._counts: dict[str, int] = {}
        self._capped = False
        self._last = -float("inf")

    def note(self, kind: str, capped: bool, detail: str, *args: Any) -> None:
        self.log.debug(detail, *args)
        self._counts[kind] = self._counts.get(kind, 0) + 1
        self._capped = self._capped or capped
        now = self._clock()
        if now - self._last < self.interval:
            return
        counts = ", ".join(f"{n} {what}" for what, n in self._counts.items())
        self.log.log(
            logging.WARNING if self._capped else logging.INFO,
            "CoAP over WebSockets, since the last summary: %s", counts,
        )
        self._counts = {}
        self._capped = False
        self._last = now


# --- one connection -----------------------------------------------------------------------


class WSRemote(SessionDriver, asyncio.Protocol):
    """One CoAP-over-WebSockets connection: the asyncio protocol of its
    socket, the remote of every message exchanged on it, and the driver of
    its websockets protocol (``connection``: a ``ServerProtocol`` on the
    side that accepted the connection, a ``ClientProtocol`` on the side that
    opened it) and of its
    :class:`~aiocoap.transports.rfc8323session.RFC8323Session`.

    ``local_hostinfo`` / ``remote_hostinfo`` name the ends where the socket
    addresses are not what a URI should say (the authority a client
    connects to; the Host header a server was addressed with). Client
    connections are made by :class:`WSPool` per :class:`PoolKey` and come
    back to life (with a new ``connection`` and session) when a request is
    sent on them after they closed. Applications get them as
    ``message.remote`` and compare them by identity."""

    scheme: str = SCHEME_WS  # (per instance)

    def __init__(
        self,
        pool: "WSPool",
        connection: Union[ServerProtocol, ClientProtocol],
        loop: asyncio.AbstractEventLoop,
        log: logging.Logger,
        *,
        scheme: str,
        local_hostinfo: HostInfo = None,
        remote_hostinfo: HostInfo = None,
    ) -> None:
        SessionDriver.__init__(self, local_is_server=isinstance(connection, ServerProtocol))
        self._pool = pool
        self._connection = connection
        self.loop = loop
        self.log = log
        self.scheme = scheme
        self._local_hostinfo = _as_hostinfo(local_hostinfo)
        self._remote_hostinfo = _as_hostinfo(remote_hostinfo)
        self._poolkey = PoolKey(scheme, self._remote_hostinfo)
        self._clock = pool._clock

        self._transport: Optional[asyncio.Transport] = None
        self._peername: Optional[SockAddr] = None
        self._sockname: Optional[SockAddr] = None
        # the address counted against the server's per-host cap, while counted
        self._counted_host: Optional[str] = None
        self._ready: Optional[asyncio.Future[None]] = None
        self._connect_task: Optional[asyncio.Task[None]] = None
        self._close_code = _NORMAL_CLOSURE

        # fragments of a binary message so far
        self._fragments: list[Union[bytes, bytearray, memoryview]] = []
        self._fragment_bytes = 0
        # bytes handed to the websockets protocol since the last write
        self._out_bytes = 0
        self._flush_handle: Optional[asyncio.Handle] = None
        self._paused = False
        self._timer = DeadlineTimer(loop, self._on_timer)

    # --- EndpointAddress ---------------------------------------------------------

    @property
    def _uri_default_port(self) -> int:
        return DEFAULT_PORTS[self.scheme]

    @property
    def hostinfo(self) -> str:
        if self._remote_hostinfo is not None:
            return self._remote_hostinfo
        return self._format(self._peername)

    @property
    def hostinfo_local(self) -> str:
        if self._local_hostinfo is not None:
            return self._local_hostinfo
        return self._format(self._sockname)

    def _state_text(self) -> str:
        if self._session is None and self._transport is not None:
            return "handshaking"
        return super()._state_text()

    # --- the session -------------------------------------------------------------

    def _new_session(self) -> RFC8323Session:
        pool = self._pool
        tuning = pool.tuning
        framer = WebSocketFramer(tuning.max_message_size, pending=self._pending)
        return self._open_session(framer, self._write, pool, pool._tman, tuning, self._session_closed)

    def _pending(self) -> int:
        """Bytes held of a CoAP message not received completely: part of a
        WebSocket frame (in websockets' reader) or fragments so far."""
        return len(self._connection.reader.buffer) + self._fragment_bytes

    def _session_released(self, hold_off: Optional[int]) -> None:
        self._pool._released(self, hold_off)

    def _session_closed(self, reason: Exception, hard: bool) -> None:
        self._detach(reason, hard, self._close_code)

    def _on_timer(self) -> None:
        session = self._session
        if self._transport is not None and (session is None or not session.started):
            self._handshake_failed(f"WebSocket handshake not done within {self._pool.tuning.connect_timeout:g} s")
            return
        self._drive_timer()

    # --- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._paused = False
        self._fragments = []
        self._fragment_bytes = 0
        self._peername = transport.get_extra_info("peername")
        self._sockname = transport.get_extra_info("sockname")
        pool = self._pool
        if self._local_is_server and not pool._admit(self):
            self._transport = None
            transport.abort()
            return
        self._timer.set(self._clock() + pool.tuning.connect_timeout)
        pool._connections.add(self)
        if not self._local_is_server:
            connection = cast(ClientProtocol, self._connection)
            connection.send_request(connection.connect())
            self._flush()

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        connection = self._connection
        connection.receive_data(data)
        events = connection.events_received()
        now = self._clock()
        session = self._session
        delivered = False
        for event in events:
            if type(event) is Frame:
                assert session is not None
                if event.opcode is _BINARY and event.fin and not self._fragments:
                    session.receive_data(event.data, now)
                    delivered = True
                else:
                    delivered = self._frame_received(session, event, now) or delivered
            elif type(event) is Request:
                session = self._request_received(event, now)
            else:
                session = self._response_received(cast(Response, event), now)
            if self._transport is None:
                return
        if connection.parser_exc is not None or connection.handshake_exc is not None:
            self._connection_failed()
            return
        if session is None or not session.started:
            return
        if not delivered:
            session.receive_partial(now)
        if session.added_deadline is not None:
            self._rearm(session)
        if self._flush_handle is None:
            self._flush()

    def _frame_received(self, session: RFC8323Session, frame: Frame, now: float) -> bool:
        """Handle a WebSocket frame other than a whole binary message;
        True if it completed a message."""
        opcode = frame.opcode
        if opcode is _BINARY or opcode is _CONT:
            self._fragments.append(frame.data)
            self._fragment_bytes += len(frame.data)
            if not frame.fin:
                return False
            data = b"".join(self._fragments)
            self._fragments = []
            self._fragment_bytes = 0
            session.receive_data(data, now)
            return True
        if opcode is _TEXT:
            self._close_code = _UNSUPPORTED_DATA
            session.abort("text frame received; CoAP messages are binary")
        elif opcode is _CLOSE:
            close = self._connection.close_rcvd
            code = f" (WebSocket close code {close.code}{': ' + close.reason if close.reason else ''})" if close else ""
            self._detach(
                error.NetworkError(f"Connection {rfc.describe_remote(self)} was closed by the peer{code}"),
                hard=False, close_code=None,
            )
        # Ping and Pong frames: websockets answers pings; both are signs of
        # life, which receive_partial notes.
        return False

    def _request_received(self, request: Request, now: float) -> Optional[RFC8323Session]:
        """The opening handshake of a client (server side)."""
        connection = cast(ServerProtocol, self._connection)
        path = request.path.partition("?")[0]
        if path != RESOURCE_PATH:
            response = connection.reject(
                http.HTTPStatus.NOT_FOUND, f"CoAP over WebSockets is served at {RESOURCE_PATH}\n"
            )
        else:
            response = connection.accept(request)
        connection.send_response(response)
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            self._pool._troubles.note(
                "refused handshakes", False, "Refused WebSocket handshake from %s: %d %s (path %r)",
                self.hostinfo, response.status_code, response.reason_phrase, request.path[:100],
            )
            self._detach(None, hard=False, close_code=None)
            return None
        hostinfo = _host_header_hostinfo(request)
        if hostinfo is not None:
            self._local_hostinfo = hostinfo
        session = self._new_session()
        self._start(session, now)
        return session

    def _response_received(self, response: Response, now: float) -> Optional[RFC8323Session]:
        """The server's answer to our opening handshake (client side)."""
        connection = self._connection
        session = self._session
        if connection.handshake_exc is not None or session is None:
            return session  # (data_received reports the failure)
        if connection.subprotocol != SUBPROTOCOL:
            self._handshake_failed(f"the server did not select the {SUBPROTOCOL!r} subprotocol")
            return session
        self._start(session, now)
        return session

    def _start(self, session: RFC8323Session, now: float) -> None:
        self._timer.cancel()
        session.start(now)
        self._rearm(session)
        self.log.debug("WebSocket connection %r is open", self)

    def _connection_failed(self) -> None:
        """The websockets protocol gave up: a malformed handshake, or a
        peer that broke the WebSocket protocol or sent a message above
        max_size (websockets has queued its answer)."""
        connection = self._connection
        if connection.parser_exc is not None:
            exc: BaseException = connection.parser_exc
            self._pool._troubles.note(
                "peers that broke the WebSocket protocol", False, "WebSocket connection %r failed: %s", self, exc,
            )
            reason = error.NetworkError(f"Connection {rfc.describe_remote(self)} failed: {exc}")
            reason.__cause__ = exc
            self._detach(reason, hard=False, close_code=None)
            return
        exc = cast(BaseException, connection.handshake_exc)
        if isinstance(connection, ServerProtocol):
            chunks = connection.data_to_send()
            if chunks == [SEND_EOF]:
                # websockets closes without a word on a request it can not
                # parse; an HTTP client deserves a status line.
                response = connection.reject(http.HTTPStatus.BAD_REQUEST, "Not a valid HTTP request\n")
                chunks = [response.serialize(), SEND_EOF]
            if self._transport is not None:
                _put(self._transport, chunks)
            self._pool._troubles.note(
                "refused handshakes", False, "Refused WebSocket handshake from %s: %s", self.hostinfo, exc,
            )
            self._detach(None, hard=False, close_code=None)
        else:
            self._handshake_failed(str(exc))

    def _handshake_failed(self, text: str) -> None:
        if self._local_is_server:
            self._pool._troubles.note("stalled handshakes", False, "WebSocket handshake from %s: %s", self.hostinfo, text)
            self._detach(None, hard=True, close_code=None)
            return
        reason = error.NetworkError(f"Connecting to {self.uri_base}{RESOURCE_PATH} failed: {text}")
        self._detach(reason, hard=True, close_code=None)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._transport is None:
            return
        where = rfc.describe_remote(self)
        session = self._session
        if exc is not None:
            text = f"lost: {_describe_failure(exc)}"
        elif session is None or not session.started:
            text = "closed by the peer during the WebSocket handshake"
        elif not session.csm_received:
            text = "closed by the peer before it sent a CSM"
        else:
            text = "closed by the peer"
        reason = error.NetworkError(f"Connection {where} {text}")
        if exc is not None:
            reason.__cause__ = exc
        self._pool._socket_gone(self._counted_host)
        self._counted_host = None
        self._lost(reason)

    def eof_received(self) -> Optional[bool]:
        # The peer ended its side without the WebSocket closing handshake;
        # returning None lets the transport close (connection_lost follows).
        return None

    # --- sending -------------------------------------------------------------------

    def _revive(self, monitor: Optional[Monitor]) -> bool:
        return self._pool._revive(self, monitor)

    def _write(self, message: bytes) -> None:
        """Send one CoAP message as a binary WebSocket message, written at
        the end of this loop iteration together with what else is due."""
        connection = self._connection
        if self._transport is None or connection.state is not _WS_OPEN:
            return
        connection.send_binary(message)
        self._out_bytes += len(message)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._out_bytes = 0
        chunks = self._connection.data_to_send()
        transport = self._transport
        if not chunks or transport is None:
            return
        _put(transport, chunks)
        if self._paused and transport.get_write_buffer_size() > self._pool.tuning.write_buffer_limit:
            # What the session writes is held against the limit before it is
            # written; this catches what websockets answers on its own (Pongs
            # to a flood of Pings from a peer that reads nothing).
            self._pool._troubles.note(
                "peers that did not read", False, "Peer %s does not read what is sent to it", self.hostinfo,
            )
            self._detach(
                error.NetworkError(f"Peer {rfc.describe_remote(self)} stopped reading"), hard=True, close_code=None,
            )

    # --- closing -----------------------------------------------------------------

    def _detach(self, reason: Optional[Exception], hard: bool, close_code: Optional[int]) -> None:
        """End the connection from our side, now: the socket goes to a
        :class:`_Closing` that finishes the WebSocket closing handshake
        (with ``close_code``, unless the closing handshake is under way
        already or the connection is cut ``hard``) and then closes it, while
        this object becomes closed at once (a client one can connect
        again). ``reason`` is what pending requests fail with."""
        transport = self._transport
        if transport is None:
            return
        connection = self._connection
        if not hard and close_code is not None and connection.state is _WS_OPEN:
            connection.send_close(close_code)
        closing = _Closing(self._pool, transport, connection, self._counted_host)
        self._counted_host = None
        transport.set_protocol(closing)
        if hard:
            transport.abort()
        else:
            closing.start(self._pool.tuning.close_timeout)
        if reason is None:
            reason = error.NetworkError(f"Connection {rfc.describe_remote(self)} was closed")
        self._lost(reason)

    def _lost(self, reason: Exception) -> None:
        """The connection is gone: fail what waited for it."""
        session = self._session
        if session is not None:
            session.connection_lost(reason)
        self._transport = None
        self._out_bytes = 0
        self._fragments = []
        self._fragment_bytes = 0
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._timer.cancel()
        self._fail_ready(reason)
        self._pool._connection_lost(self)
        if session is not None:
            self._pool._tman.dispatch_error(reason, self)

    def _shutdown(self) -> None:
        reason = error.LibraryShutdown("Transport shut down")
        if self._connect_task is not None:
            self._connect_task.cancel()
        if self._transport is not None:
            self._detach(reason, hard=False, close_code=_GOING_AWAY)
        else:
            self._fail_ready(reason)


class _Closing(asyncio.Protocol):
    """Takes over the socket of a connection we ended, runs the rest of the
    WebSocket closing handshake (websockets knows it: what to answer, when
    to half-close) and closes the socket; cuts it after the close timeout."""

    def __init__(
        self,
        pool: "WSPool",
        transport: asyncio.Transport,
        connection: Union[ServerProtocol, ClientProtocol],
        counted_host: Optional[str],
    ) -> None:
        self._pool = pool
        self._transport: Optional[asyncio.Transport] = transport
        self._connection = connection
        self._counted_host = counted_host
        self._timer: Optional[asyncio.TimerHandle] = None
        pool._closers.add(self)

    def start(self, timeout: float) -> None:
        self._write_out()
        if self._transport is not None:
            self._timer = self._pool.loop.call_later(timeout, self._cut)

    def _write_out(self) -> None:
        transport = self._transport
        if transport is None:
            return
        connection = self._connection
        _put(transport, connection.data_to_send())
        if connection.state is State.CLOSED or (connection.state is State.CONNECTING and connection.eof_sent):
            transport.close()

    def _cut(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        connection = self._connection
        if connection.reader.eof:
            return
        connection.receive_data(data)
        connection.events_received()
        self._write_out()

    def eof_received(self) -> Optional[bool]:
        self._connection.receive_eof()
        self._write_out()
        return None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pool._socket_gone(self._counted_host)
        self._counted_host = None
        self._pool._closer_done(self)


# --- the token interface ---------------------------------------------------------------


class WSPool(DriverInterface):
    """The ``ws`` transport: CoAP over WebSockets as a client (a pool of
    connections, one per :class:`PoolKey`) and, in a server context, as a
    server (see the module description for the ports). Create it with
    :meth:`create_transport`."""

    def __init__(self, tman: interfaces.TokenManager, log: logging.Logger, loop: asyncio.AbstractEventLoop) -> None:
        self._tman = tman
        self.log = log
        self.loop = loop
        self._clock = clock_of(loop)
        self.tuning: WSTuning = DEFAULT_WS_TUNING
        """Timers and limits; connections read it when they are set up (a
        new instance affects later connections)."""
        self.servers: dict[str, asyncio.Server] = {}
        """The listening servers by scheme (``coap+ws``, ``coaps+ws``)."""
        self._client_credentials: Any = None
        self._default_ssl_context: Optional[ssl.SSLContext] = None
        self._pool: dict[PoolKey, WSRemote] = {}
        self._hold_offs = HoldOffs(self._clock)
        self._connect_tasks: set[asyncio.Task[None]] = set()
        # remotes with a socket, and sockets in their closing handshake
        self._connections: set[WSRemote] = set()
        self._closers: set[_Closing] = set()
        # accepted sockets still open, in total and by peer address
        self._accepted = 0
        self._per_host: dict[str, int] = {}
        self._troubles = _Troubles(log, self._clock)
        self._ws_log = _WebSocketsLog(log, {})
        self._shut = False
        self._drained: Optional[asyncio.Future[None]] = None

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
            max_size=self.tuning.max_message_size + _HEADER_AND_TOKEN,
            logger=self._ws_log,
        )
        return WSRemote(self, protocol, self.loop, self.log, scheme=scheme)

    def _admit(self, remote: WSRemote) -> bool:
        """Count a connection the server accepted against the caps; False
        (after noting why) if it is one too many."""
        peer = remote._peername
        host = strip_mapped(peer[0]) if peer else ""
        tuning = self.tuning
        if self._shut:
            why = "server shutting down"
        elif self._accepted >= tuning.max_server_connections:
            why = f"{self._accepted} connections open"
        elif self._per_host.get(host, 0) >= tuning.max_server_connections_per_host:
            why = f"{self._per_host[host]} connections open from that address"
        else:
            self._accepted += 1
            self._per_host[host] = self._per_host.get(host, 0) + 1
            remote._counted_host = host
            return True
        self._troubles.note("connections refused for the caps", True, "Refused connection from %s: %s", host, why)
        return False

    def _socket_gone(self, counted_host: Optional[str]) -> None:
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
        return isinstance(remote, WSRemote) and remote._pool is self

    async def fill_or_recognize_remote(self, message: Message) -> bool:
        remote = message.remote
        if isinstance(remote, WSRemote):
            return remote._pool is self
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
            assert remote._ready is not None
            await asyncio.shield(remote._ready)
        return remote

    def _client_protocol(self, key: PoolKey) -> ClientProtocol:
        uri = parse_uri(f"{_WS_SCHEMES[key.scheme]}://{key.hostinfo}{RESOURCE_PATH}")
        return ClientProtocol(
            uri,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            max_size=self.tuning.max_message_size + _HEADER_AND_TOKEN,
            logger=self._ws_log,
        )

    def _make_room(self) -> None:
        """Close the connection idle the longest if the pool is full; fail
        if none is idle."""
        clients = [r for r in self._connections if not r._local_is_server]
        live = len(clients) + len(self._connect_tasks)
        if live < self.tuning.max_connections:
            return
        victim = idle_victim(clients)
        if victim is None:
            raise error.NetworkError(f"Too many WebSocket connections open ({live}); none of them is idle")
        self.log.debug("Closing idle connection %r to make room", victim)
        self._unpool(victim)
        victim._detach(None, hard=False, close_code=_NORMAL_CLOSURE)

    def _start_connecting(self, remote: WSRemote, message: Optional[Message]) -> None:
        remote._new_session()
        remote._ready = self.loop.create_future()
        task = self.loop.create_task(self._connect(remote, message), name=f"aiocoap {remote.scheme} connect")
        remote._connect_task = task
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    def _client_ssl_context(self, remote: WSRemote, message: Optional[Message]) -> ssl.SSLContext:
        context = client_ssl_context(self._client_credentials, message, remote.uri_base + "/", _HTTP_ALPN)
        if context is not None:
            return context
        if self._default_ssl_context is None:
            self._default_ssl_context = ssl.create_default_context()
            self._default_ssl_context.set_alpn_protocols([_HTTP_ALPN])
        return self._default_ssl_context

    async def _connect(self, remote: WSRemote, message: Optional[Message]) -> None:
        scheme, hostinfo = remote._poolkey
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
            await asyncio.wait_for(self.loop.create_connection(lambda: remote, host, port, **kwargs), timeout)
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
                f"Connecting to {where} failed: {_describe_failure(e)}"
            )
            failure.__cause__ = e
            self._connect_failed(remote, failure)
        finally:
            remote._connect_task = None

    def _connect_failed(self, remote: WSRemote, exc: Exception) -> None:
        self.log.debug("Connecting %r failed: %s", remote, exc)
        self._unpool(remote)
        if remote._session is not None:
            remote._session.connection_lost(exc)
        remote._fail_ready(exc)
        self._tman.dispatch_error(exc, remote)

    def _revive(self, remote: WSRemote, monitor: Optional[Monitor]) -> bool:
        """A request was sent on a closed connection: reconnect it if it is
        one of ours, else fail the request (False)."""
        try:
            if self._shut:
                raise error.LibraryShutdown("Transport shut down")
            if remote._local_is_server:
                raise error.NetworkError(f"Connection {rfc.describe_remote(remote)} is closed")
            self._hold_offs.check(remote._poolkey, remote.uri_base)
            self._make_room()
        except error.Error as e:
            if monitor is not None:
                monitor(e)
            return False
        self._pool.setdefault(remote._poolkey, remote)
        remote._connection = self._client_protocol(remote._poolkey)
        self._start_connecting(remote, None)
        return True

    def _unpool(self, remote: WSRemote) -> None:
        if self._pool.get(remote._poolkey) is remote:
            del self._pool[remote._poolkey]

    def _released(self, remote: WSRemote, hold_off: Optional[int]) -> None:
        """The peer released the connection: no new requests go to it."""
        if remote._local_is_server:
            return
        self._unpool(remote)
        if hold_off:
            self._hold_offs.add(remote._poolkey, hold_off)

    # --- bookkeeping and shutdown ------------------------------------------------------

    def _connection_lost(self, remote: WSRemote) -> None:
        self._connections.discard(remote)
        if not remote._local_is_server:
            self._unpool(remote)
        self._check_drained()

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
            remote._shutdown()
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
