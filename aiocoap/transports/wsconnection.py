"""One CoAP-over-WebSockets connection (the connection objects of
:mod:`aiocoap.transports.ws`, which describes the rules): :class:`WSRemote`
drives a websockets sans-I/O protocol (the HTTP upgrade), then the
WebSocket frames (:mod:`aiocoap.transports.wsframes`) and an
:class:`~aiocoap.transports.rfc8323session.RFC8323Session` (the CoAP
rules) over one socket; :class:`Closing` finishes the WebSocket closing
handshake of a connection that ended. The constants of the
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
    from websockets.http11 import Request, Response
    from websockets.protocol import SEND_EOF
    from websockets.server import ServerProtocol
except ImportError as _e:  # pragma: no cover (the extra is installed in CI)
    raise ImportError(missing_module_message("ws", ["websockets"])) from _e

from .. import error
from ..util import hostportjoin, hostportsplit
from . import rfc8323common as rfc
from .rfc8323adapter import SessionDriver
from .rfc8323session import RFC8323Session, WebSocketFramer, WriteBatcher
from .wsframes import (
    GOING_AWAY,
    NORMAL_CLOSURE,
    OP_CLOSE,
    OP_PONG,
    Close,
    FrameDecoder,
    FrameEncoder,
    FrameError,
    Ping,
    Pong,
    UnsupportedData,
)

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

# where the head of an HTTP request or response ends
_END_OF_HEAD = b"\r\n\r\n"


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
    its websockets protocol for the opening handshake (``connection``: a
    ``ServerProtocol`` on the side that accepted the connection, a
    ``ClientProtocol`` on the side that opened it), of the WebSocket frames
    after it (a :class:`~aiocoap.transports.wsframes.FrameDecoder` and
    :class:`~aiocoap.transports.wsframes.FrameEncoder`) and of its
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
        SessionDriver.__init__(self, loop, log, pool.clock, local_is_server=isinstance(connection, ServerProtocol))
        self.pool = pool
        """The transport this connection belongs to (not to be changed)."""
        self._connection = connection
        self.scheme = scheme
        self._local_hostinfo = _as_hostinfo(local_hostinfo)
        self._remote_hostinfo = _as_hostinfo(remote_hostinfo)
        self._poolkey = PoolKey(scheme, self._remote_hostinfo)
        # what the pool was last told the decoder holds of incomplete messages
        self._reported_buffered = 0
        # the address counted against the server's per-host cap, while counted
        self._counted_host: Optional[str] = None
        self._close_code = NORMAL_CLOSURE
        # the WebSocket frames once the opening handshake is done
        self._decoder: Optional[FrameDecoder] = None
        self._encoder = FrameEncoder()
        self._batch = WriteBatcher()
        # Whether the first frame of a loop iteration goes out at once (see
        # _put_frame): the side that answers writes its first response
        # right away, so that the requester starts on it while the rest is
        # produced; the requesting side writes each iteration's requests in
        # one go, which took less CPU at both ends and gave more requests
        # per second (benchmarks/README.md, "WebSockets", 2026-12-05).
        self._first_frame_at_once = self._local_is_server
        # where the handshake is: the last bytes given to websockets (the
        # end of the HTTP head may be split between reads), and whether
        # the head was all given
        self._head_tail = b""
        self._head_done = False

    # --- EndpointAddress ---------------------------------------------------------

    @property
    def pool_key(self) -> PoolKey:
        """What a client side connection is pooled by (for an accepted one,
        its scheme and None)."""
        return self._poolkey

    @property
    def _uri_default_port(self) -> int:
        return DEFAULT_PORTS[self.scheme]

    def _state_text(self) -> str:
        if self._session is None and self._transport is not None:
            return "handshaking"
        return super()._state_text()

    # --- the session -------------------------------------------------------------

    def _new_session(self) -> RFC8323Session:
        pool = self.pool
        tuning = pool.tuning
        framer = WebSocketFramer(tuning.max_message_size, pending=self._pending)
        return self._open_session(framer, self._write, pool, self._session_closed)

    def _pending(self) -> int:
        """Bytes held of a CoAP message not received completely: part of a
        WebSocket frame or fragments so far."""
        decoder = self._decoder
        return 0 if decoder is None else decoder.buffered

    def _session_released(self, hold_off: Optional[int]) -> None:
        self.pool.connection_released(self, hold_off)

    def _session_closed(self, reason: Exception, hard: bool) -> None:
        self._detach(reason, hard, self._close_code)

    def _on_timer(self) -> None:
        session = self._session
        if self._transport is not None and (session is None or not session.started):
            self._handshake_failed(f"WebSocket handshake not done within {self.pool.tuning.connect_timeout:g} s")
            return
        self._drive_timer()

    # --- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._paused = False
        self._decoder = None
        self._head_tail = b""
        self._head_done = False
        self._reported_buffered = 0
        self._peername = transport.get_extra_info("peername")
        self._sockname = transport.get_extra_info("sockname")
        pool = self.pool
        if self._local_is_server:
            self._counted_host = pool.admit(self)
            if self._counted_host is None:
                self._transport = None
                transport.abort()
                return
        self._timer.set(self._clock() + pool.tuning.connect_timeout)
        pool.connection_opened(self)
        if not self._local_is_server:
            connection = cast(ClientProtocol, self._connection)
            connection.send_request(connection.connect())
            _put(transport, connection.data_to_send())

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        decoder = self._decoder
        if decoder is None:
            data = self._handshake_received(data)
            decoder = self._decoder
            if decoder is None or not data or self._transport is None:
                return
        events = decoder.feed(data)
        session = cast(RFC8323Session, self._session)
        now = self._clock()
        delivered = False
        for event in events:
            if isinstance(event, bytes):
                session.receive_data(event, now)
                delivered = True
            else:
                self._control_received(event)
            if self._transport is None:
                return
        if decoder.failure is not None:
            self._frame_failure(session, decoder.failure)
            return
        if not delivered:
            session.receive_partial(now)
        if session.added_deadline is not None:
            self._rearm(session)
        buffered = decoder.buffered
        if (buffered or self._reported_buffered) and self._local_is_server:
            self._reported_buffered = buffered
            self.pool.buffered_changed(self, buffered)

    def _control_received(self, event: Union[Ping, Pong, Close]) -> None:
        if type(event) is Ping:
            self._put_frame(self._encoder.frame(OP_PONG, event.payload))
        elif type(event) is Close:
            code = f" (WebSocket close code {event.code}{': ' + event.reason if event.reason else ''})" if event.code else ""
            self._detach(
                error.NetworkError(f"Connection {rfc.describe_remote(self)} was closed by the peer{code}"),
                hard=False, close_code=None,
            )
        # Pongs (and Pings) are signs of life, which receive_partial notes.

    def _frame_failure(self, session: RFC8323Session, failure: FrameError) -> None:
        """The peer broke the WebSocket protocol (or sent text): fail the
        connection with the failure's close code."""
        if isinstance(failure, UnsupportedData):
            self._close_code = failure.close_code
            session.abort("text frame received; CoAP messages are binary")
            return
        self.pool.troubles.note(
            "peers that broke the WebSocket protocol", False, "WebSocket connection %r failed: %s", self, failure,
        )
        reason = error.NetworkError(f"Connection {rfc.describe_remote(self)} failed: {failure}")
        reason.__cause__ = failure
        self._detach(reason, hard=False, close_code=None)

    # --- the opening handshake ------------------------------------------------------

    def _handshake_received(self, data: bytes) -> bytes:
        """Give websockets the bytes of the HTTP upgrade (request or
        response), and no more: what follows the head once the connection
        is open is WebSocket frames, which are returned for our decoder."""
        connection = self._connection
        while True:
            if self._head_done:
                head, rest = data, b""
            else:
                tail = self._head_tail
                end = (tail + data).find(_END_OF_HEAD)
                if end < 0:
                    head, rest = data, b""
                    self._head_tail = (tail + data)[-len(_END_OF_HEAD) + 1:]
                else:
                    cut = end + len(_END_OF_HEAD) - len(tail)
                    head, rest = data[:cut], data[cut:]
                    self._head_done = True
            connection.receive_data(head)
            for event in connection.events_received():
                now = self._clock()
                if type(event) is Request:
                    self._request_received(event, now)
                else:
                    self._response_received(cast(Response, event), now)
                if self._transport is None:
                    return b""
            if connection.parser_exc is not None or connection.handshake_exc is not None:
                self._connection_failed()
                return b""
            if self._decoder is not None or not rest:
                return rest
            # (a refused upgrade: the response body follows its head)
            data = rest

    def _request_received(self, request: Request, now: float) -> None:
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
            self.pool.troubles.note(
                "refused handshakes", False, "Refused WebSocket handshake from %s: %d %s (path %r)",
                self.hostinfo, response.status_code, response.reason_phrase, request.path[:100],
            )
            self._detach(None, hard=False, close_code=None)
            return
        assert self._transport is not None
        _put(self._transport, connection.data_to_send())
        hostinfo = _host_header_hostinfo(request)
        if hostinfo is not None:
            self._local_hostinfo = hostinfo
        self._start(self._new_session(), now)

    def _response_received(self, response: Response, now: float) -> None:
        """The server's answer to our opening handshake (client side)."""
        connection = self._connection
        session = self._session
        if connection.handshake_exc is not None or session is None:
            return  # (_handshake_received reports the failure)
        if connection.subprotocol != SUBPROTOCOL:
            self._handshake_failed(f"the server did not select the {SUBPROTOCOL!r} subprotocol")
            return
        self._start(session, now)

    def _start(self, session: RFC8323Session, now: float) -> None:
        """The upgrade is done: WebSocket frames from here on."""
        self._timer.cancel()
        server = self._local_is_server
        self._decoder = FrameDecoder(
            masked=server, max_message_size=self.pool.tuning.max_message_size + HEADER_AND_TOKEN
        )
        self._encoder = FrameEncoder(None if server else self.pool.mask_keys)
        session.start(now)
        self._rearm(session)
        self.log.debug("WebSocket connection %r is open", self)

    def _connection_failed(self) -> None:
        """The websockets protocol gave up on the opening handshake: a
        malformed request or response (websockets has queued its answer)."""
        connection = self._connection
        exc = cast(BaseException, connection.parser_exc or connection.handshake_exc)
        if isinstance(connection, ServerProtocol):
            chunks = connection.data_to_send()
            if chunks == [SEND_EOF]:
                # websockets closes without a word on a request it can not
                # parse; an HTTP client deserves a status line.
                response = connection.reject(http.HTTPStatus.BAD_REQUEST, "Not a valid HTTP request\n")
                chunks = [response.serialize(), SEND_EOF]
            if self._transport is not None:
                _put(self._transport, chunks)
            self.pool.troubles.note(
                "refused handshakes", False, "Refused WebSocket handshake from %s: %s", self.hostinfo, exc,
            )
            self._detach(None, hard=False, close_code=None)
        else:
            self._handshake_failed(str(exc))

    def _handshake_failed(self, text: str) -> None:
        if self._local_is_server:
            self.pool.troubles.note("stalled handshakes", False, "WebSocket handshake from %s: %s", self.hostinfo, text)
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
        self.pool.socket_gone(self._counted_host)
        self._counted_host = None
        self._lost(reason)

    def eof_received(self) -> Optional[bool]:
        # The peer ended its side without the WebSocket closing handshake;
        # returning None lets the transport close (connection_lost follows).
        return None

    # --- sending -------------------------------------------------------------------

    def _revive(self, monitor: Optional[Monitor]) -> bool:
        return self.pool.revive(self, monitor)

    def new_handshake(self, connection: ClientProtocol) -> None:
        """The websockets protocol for the opening handshake of the next
        connection of this client side object (each handshake needs a new
        one)."""
        self._connection = connection

    def _write(self, message: bytes) -> None:
        """Send one CoAP message as a binary WebSocket message."""
        if self._transport is None or self._decoder is None:
            return
        self._put_frame(self._encoder.binary(message))

    def _put_frame(self, frame: bytes) -> None:
        """Write a frame: on the accepting side, the first of a loop
        iteration at once, those that follow in the same iteration joined
        (see :class:`~aiocoap.transports.rfc8323session.WriteBatcher`) at
        its end; on the connecting side all of them joined. Joining saves
        system calls and parsing at the peer, while the server's first
        frame lets the client start on its work without waiting for the
        whole batch (joining at both ends would keep the two taking turns
        rather than working at the same time)."""
        transport = cast(asyncio.Transport, self._transport)
        if self._flush_handle is None:
            # (the flush also checks whether the peer reads what it gets)
            self._flush_handle = self.loop.call_soon(self._flush)
            if self._first_frame_at_once:
                transport.write(frame)
                return
        batch = self._batch
        chunk = batch.add(frame)
        self._out_bytes = batch.bytes
        if chunk is not None:
            transport.write(chunk)

    def _flush(self) -> None:
        self._flush_handle = None
        chunk = self._batch.take()
        self._out_bytes = 0
        transport = self._transport
        if transport is None:
            return
        if chunk is not None:
            transport.write(chunk)
        if self._paused and transport.get_write_buffer_size() > self.pool.tuning.write_buffer_limit:
            # What the session writes is held against the limit before it is
            # written; this catches what we answer on our own (Pongs to a
            # flood of Pings from a peer that reads nothing).
            self.pool.troubles.note(
                "peers that did not read", False, "Peer %s does not read what is sent to it", self.hostinfo,
            )
            self._detach(
                error.NetworkError(f"Peer {rfc.describe_remote(self)} stopped reading"), hard=True, close_code=None,
            )

    # --- closing -----------------------------------------------------------------

    def close(self, reason: Optional[Exception] = None) -> None:
        self._detach(reason, hard=False, close_code=NORMAL_CLOSURE)

    def _detach(self, reason: Optional[Exception], hard: bool, close_code: Optional[int]) -> None:
        """End the connection from our side, now: the socket goes to a
        :class:`Closing` that finishes the WebSocket closing handshake and
        then closes it (unless the connection is cut ``hard``), while this
        object becomes closed at once (a client one can connect again).

        What is sent: during the opening handshake, what websockets has to
        say (a refusal); after a protocol violation of the peer, our Close
        frame with its close code, and the socket is closed at once; after
        the peer's Close, ours in answer; else our Close with
        ``close_code``. ``reason`` is what pending requests fail with."""
        transport = self._transport
        if transport is None:
            return
        decoder = self._decoder
        if not hard and decoder is not None:
            self._flush()
            if self._transport is None:
                return  # (the flush found a peer that does not read)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        closing = Closing(self.pool, transport, decoder, is_server=self._local_is_server, counted_host=self._counted_host)
        self._counted_host = None
        transport.set_protocol(closing)
        if hard:
            transport.abort()
        elif decoder is None:
            _put(transport, self._connection.data_to_send())
            transport.close()
        elif decoder.failure is not None:
            transport.write(self._encoder.close(decoder.failure.close_code, str(decoder.failure)))
            transport.close()
        else:
            received = decoder.close_received
            if received is None:
                transport.write(self._encoder.close(NORMAL_CLOSURE if close_code is None else close_code))
            elif received.code is None:
                transport.write(self._encoder.frame(OP_CLOSE, b""))
            else:
                transport.write(self._encoder.close(received.code))
            closing.start(self.pool.tuning.close_timeout)
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
        self._batch.clear()
        if self._decoder is not None:
            self._decoder.discard()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._timer.cancel()
        self._fail_ready(reason)
        self.pool.connection_closed(self)
        if session is not None:
            self.pool.tokenmanager.dispatch_error(reason, self)

    def close_for_shutdown(self) -> None:
        reason = error.LibraryShutdown("Transport shut down")
        if self._connect_task is not None:
            self._connect_task.cancel()
        if self._transport is not None:
            self._detach(reason, hard=False, close_code=GOING_AWAY)
        else:
            self._fail_ready(reason)


class Closing(asyncio.Protocol):
    """Takes over the socket of a connection we ended and closes it: at
    once where the caller closed it already (a refused handshake, a peer
    that broke the protocol), else once the WebSocket closing handshake is
    done (RFC 6455 §7.1: the peer's Close frame is in, and the server closes
    the TCP connection first, so a client waits for it to); cuts it after
    the close timeout."""

    def __init__(
        self,
        pool: "WSPool",
        transport: asyncio.Transport,
        decoder: Optional[FrameDecoder],
        *,
        is_server: bool,
        counted_host: Optional[str],
    ) -> None:
        self._pool = pool
        self._transport: Optional[asyncio.Transport] = transport
        self._decoder = decoder
        self._is_server = is_server
        self._counted_host = counted_host
        self._timer: Optional[asyncio.TimerHandle] = None
        pool.closing_started(self)

    def start(self, timeout: float) -> None:
        """Our Close frame is written: wait for the rest of the closing
        handshake, at most ``timeout`` seconds."""
        if self._decoder is not None and self._decoder.done:
            self._handshake_done()
        if self._transport is not None and not self._transport.is_closing():
            self._timer = self._pool.loop.call_later(timeout, self._cut)

    def _handshake_done(self) -> None:
        transport = self._transport
        if transport is not None and self._is_server:
            transport.close()

    def _cut(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        decoder = self._decoder
        if decoder is None or decoder.done:
            return
        decoder.feed(data)  # (only the Close frame matters now)
        if decoder.close_received is not None:
            self._handshake_done()
        elif decoder.failure is not None and self._transport is not None:
            self._transport.close()

    def eof_received(self) -> Optional[bool]:
        return None  # (the transport closes)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pool.socket_gone(self._counted_host)
        self._counted_host = None
        self._pool.closing_done(self)
