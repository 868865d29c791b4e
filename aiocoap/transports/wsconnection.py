"""One CoAP-over-WebSockets connection (the connection objects of
:mod:`aiocoap.transports.ws`, which describes the rules): :class:`WSRemote`
drives a websockets sans-I/O protocol (the HTTP upgrade and the WebSocket
frames) and an :class:`~aiocoap.transports.rfc8323session.RFC8323Session`
(the CoAP rules) over one socket; :class:`Closing` finishes the WebSocket
closing handshake of a connection that ended. The constants of the
transport live here too; :mod:`aiocoap.transports.ws` exports them.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
import sys
from collections import namedtuple
from typing import TYPE_CHECKING, Any, Callable, Optional, Union, cast

from ..defaults import missing_module_message

try:
    from websockets.client import ClientProtocol
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Request, Response
    from websockets.protocol import SEND_EOF, State
    from websockets.server import ServerProtocol
except ImportError as _e:  # pragma: no cover (the extra is installed in CI)
    raise ImportError(missing_module_message("ws", ["websockets"])) from _e

from .. import error
from ..util import hostportjoin, hostportsplit
from . import rfc8323common as rfc
from .rfc8323adapter import SessionDriver
from .rfc8323session import RFC8323Session, WebSocketFramer

if TYPE_CHECKING:
    from .ws import WSPool

__all__ = [
    "WSRemote", "PoolKey", "is_pyodide", "SCHEME_WS", "SCHEME_WSS", "DEFAULT_PORTS", "SUBPROTOCOL",
    "RESOURCE_PATH", "SERVER_PORT", "SERVER_PORT_OFFSET",
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

WS_SCHEMES = {SCHEME_WS: "ws", SCHEME_WSS: "wss"}
HTTP_ALPN = "http/1.1"
# Bytes of a WebSocket message beyond what a CSM's Max-Message-Size counts:
# the TKL byte, the code and up to 8 bytes of token.
HEADER_AND_TOKEN = 2 + 8

is_pyodide = sys.platform == "emscripten"
"""Whether this runs in a browser (Pyodide); see the module description."""

PoolKey = namedtuple("PoolKey", ("scheme", "hostinfo"))
"""What client connections are pooled by: the URI scheme (``coap+ws`` or
``coaps+ws``) and the authority (lower case, default port left out)."""


Monitor = Callable[[Exception], None]
SockAddr = tuple[Any, ...]
HostInfo = Union[str, tuple[str, Optional[int]], None]

_WS_OPEN = State.OPEN
_BINARY, _CONT, _TEXT, _CLOSE = Opcode.BINARY, Opcode.CONT, Opcode.TEXT, Opcode.CLOSE
# WebSocket close codes (RFC 6455 §7.4.1)
NORMAL_CLOSURE, _GOING_AWAY, _UNSUPPORTED_DATA = 1000, 1001, 1003


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


def describe_failure(exc: BaseException) -> str:
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


class WebSocketsLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """What websockets logs about single connections (open, closed,
    rejected: info to it) is debug detail here; its warnings and errors
    stay what they are."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(level if level >= logging.WARNING else logging.DEBUG, msg, *args, **kwargs)


class Troubles:
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
        SessionDriver.__init__(self, loop, log, pool._clock, local_is_server=isinstance(connection, ServerProtocol))
        self._pool = pool
        self._connection = connection
        self.scheme = scheme
        self._local_hostinfo = _as_hostinfo(local_hostinfo)
        self._remote_hostinfo = _as_hostinfo(remote_hostinfo)
        self._poolkey = PoolKey(scheme, self._remote_hostinfo)
        # the address counted against the server's per-host cap, while counted
        self._counted_host: Optional[str] = None
        self._close_code = NORMAL_CLOSURE
        # fragments of a binary message so far
        self._fragments: list[Union[bytes, bytearray, memoryview]] = []
        self._fragment_bytes = 0

    # --- EndpointAddress ---------------------------------------------------------

    @property
    def _uri_default_port(self) -> int:
        return DEFAULT_PORTS[self.scheme]

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
            text = f"lost: {describe_failure(exc)}"
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
        """Send one CoAP message as a binary WebSocket message.

        The first message of a loop iteration is written at once, those
        that follow in the same iteration together at its end: joining
        them saves system calls and parsing at the peer, while the first
        one lets the peer start on its work without waiting for the whole
        batch (which would keep the two ends taking turns rather than
        working at the same time)."""
        connection = self._connection
        if self._transport is None or connection.state is not _WS_OPEN:
            return
        connection.send_binary(message)
        if self._flush_handle is None:
            _put(self._transport, connection.data_to_send())
            # (the flush also checks whether the peer reads what it gets)
            self._flush_handle = self.loop.call_soon(self._flush)
        else:
            self._out_bytes += len(message)

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
        :class:`Closing` that finishes the WebSocket closing handshake
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
        closing = Closing(self._pool, transport, connection, self._counted_host)
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


class Closing(asyncio.Protocol):
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
