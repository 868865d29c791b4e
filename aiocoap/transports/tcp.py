"""CoAP over TCP (RFC 8323): the ``coap+tcp`` scheme, as a server
(:class:`TCPServer`, transport name ``tcpserver``) and as a client with a
connection pool (:class:`TCPClient`, ``tcpclient``).

Each TCP connection is one :class:`TcpConnection`: the asyncio protocol of
the socket and, at the same time, the remote (an
:class:`aiocoap.interfaces.EndpointAddress`) of every message exchanged on
it. There is no message layer: messages have neither type nor message ID,
requests go to :meth:`TokenManager.process_request` and responses to
:meth:`TokenManager.process_response` as they arrive. Framing and signaling
are done by :mod:`aiocoap.transports.rfc8323common`; this module moves the
bytes and keeps per-connection state.

Rules enforced here:

* Each side's first message is its CSM. We send ours on connecting; requests
  wait (queued, bounded by the callers) until the peer's CSM arrived, and a
  peer that sends anything else first, sends no CSM within
  :attr:`TcpTuning.csm_timeout`, or breaks the framing gets a 7.05 Abort
  with a diagnostic and is disconnected.
* Max-Message-Size holds both ways: the parser rejects frames above the size
  we announced (:attr:`TcpTuning.max_message_size`), and nothing larger than
  the peer's announced size is sent (a request fails with
  :class:`aiocoap.error.NetworkError`, a response is replaced by a 5.00).
  Block-wise sizes derive from the peer's CSM
  (:attr:`TcpConnection.maximum_block_size_exp`, 7 meaning BERT).
* A partial frame that stalls for :attr:`TcpTuning.frame_timeout`, or is
  not complete :attr:`TcpTuning.frame_time_limit` after its first byte
  (slowloris), gets the connection aborted; other connections are
  unaffected.
* When a connection ends, every request pending on it fails at once with
  :class:`aiocoap.error.NetworkError` (the token manager's
  ``dispatch_error``), server-side observations on it end.
* Client connections are pooled per (host, port) of the URI, bounded in
  number (:attr:`TcpTuning.max_connections`; idle ones are evicted first)
  and closed after :attr:`TcpTuning.idle_timeout` without pending exchanges.
  A client connection object that was closed comes back to life when a
  request is sent to it again (routes cached by the Context keep working).
* A Release stops new requests from being routed to the connection; it is
  closed once its pending exchanges are done. A Hold-Off in it keeps us from
  reconnecting to that peer for the given time.
* Pings are answered with Pongs carrying the Ping's token (held back until
  earlier requests are answered when the Ping asks for custody). Keepalive
  Pings go out after :attr:`TcpTuning.ping_interval` of silence (off by
  default); no answer within :attr:`TcpTuning.ping_timeout` ends the
  connection.
* Outgoing frames of one event loop iteration are coalesced into one write.
  What is buffered for a connection is bounded by
  :attr:`TcpTuning.write_buffer_limit` (the socket's buffer included, so
  pause_writing from a peer that does not read is respected): a request
  beyond it fails, a response beyond it aborts the connection.

Log levels: debug for per-message events (unmatched responses, ignored
messages), info for connections opened/closed for protocol reasons, warning
for peers that violate the protocol or exceed limits.
"""

from __future__ import annotations

import asyncio
import functools
import math
import socket
import ssl
from dataclasses import dataclass
from typing import Callable, Optional

from .. import defaults, error, interfaces
from .generic_udp import split_hostinfo
from ..message import Message, UndecidedRemote
from ..numbers.codes import Code
from ..util import hostportjoin
from . import rfc8323common as rfc

__all__ = ["TcpConnection", "TCPServer", "TCPClient", "TcpTuning", "DEFAULT_TCP_TUNING"]


@dataclass(frozen=True)
class TcpTuning:
    """Limits and timers of the RFC 8323 transports (TCP and TLS).

    An interface reads its ``tuning`` attribute whenever it sets up a
    connection, so assigning a new instance to a running
    :class:`TCPServer` / :class:`TCPClient` affects the connections made
    after that (this is how tests shorten the timers)."""

    max_message_size: int = 1024 * 1024 + 128
    """Max-Message-Size we announce: the largest frame we accept (RFC 8323
    §5.3.1). Above 1152 and with block_wise_transfer, peers can send BERT
    blocks of up to 1 MiB. It is also the most a connection buffers of an
    incomplete frame, so memory held for peers stays below
    ``max_server_connections`` times this."""

    block_wise_transfer: bool = True
    """Announce Block-Wise-Transfer (and use BERT towards peers that do)."""

    connect_timeout: float = 20.0
    """Seconds to establish a TCP connection (and TLS handshake)."""

    csm_timeout: float = 10.0
    """Seconds after connecting within which the peer's CSM must arrive."""

    frame_timeout: float = 20.0
    """Seconds a partially received frame may stall (no bytes arriving)
    before the connection is aborted (protection against slowloris
    peers)."""

    frame_time_limit: float = 300.0
    """Seconds within which a frame must be complete once its first byte
    arrived, however steadily it trickles in."""

    idle_timeout: Optional[float] = 60.0
    """Seconds after which a client connection with no pending exchanges is
    closed (None: never)."""

    ping_interval: Optional[float] = None
    """Seconds of silence from the peer after which a keepalive Ping is sent
    (None: no keepalive)."""

    ping_timeout: float = 10.0
    """Seconds to wait for any answer to a keepalive Ping before giving the
    connection up."""

    max_connections: int = 64
    """Client connections open at the same time (per TCPClient)."""

    max_server_connections: int = 1000
    """Incoming connections a server keeps at the same time; more are
    answered with an Abort."""

    write_buffer_limit: int = 4 * 1024 * 1024
    """Bytes that may wait for a connection's socket to take them."""

    close_timeout: float = 2.0
    """Seconds a closing connection may take to flush before it is cut."""


DEFAULT_TCP_TUNING = TcpTuning()

_INF = math.inf

# Connection states
_CLOSED = 0  # no socket (never connected, or lost)
_CONNECTING = 1  # socket up (or being set up), the peer's CSM not yet seen
_OPEN = 2  # the peer's CSM arrived: requests flow

# Values of TcpConnection._outstanding: what is pending for a token we sent.
_PLAIN = 0  # a request waiting for its response
_OBSERVE = 1  # an observe registration waiting for its first response
_OBSERVING = 2  # a running observation (ends with a final notification)

_CODE_EMPTY = 0
_REQUEST_END = 32  # request codes are 0.01-0.31
_RESPONSE_START = 64  # response codes are 2.00-5.31
_RESPONSE_END = 192
_SUCCESS_END = 96
_SIGNALING_START = 224

_DEFAULT_PEER_CSM = rfc.CSM()


def _strip_mapped(host: str) -> str:
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


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


class TcpConnection(asyncio.Protocol, interfaces.EndpointAddress):
    """One RFC 8323 connection: the asyncio protocol of its socket, and the
    remote of the messages exchanged over it.

    Server side connections are created by :class:`TCPServer` for each
    accepted socket (``hostinfo`` None: the peer's address describes it);
    client side ones by :class:`TCPClient` for a URI authority
    (``hostinfo``). Applications get them as ``message.remote`` and compare
    them by identity."""

    is_multicast = False
    is_multicast_locally = False
    reliable_transport = True

    def __init__(self, ctx, log, loop, *, hostinfo=None):
        self._ctx = ctx
        self.log = log
        self.loop = loop
        self._hostinfo = hostinfo
        self._local_is_server = hostinfo is None
        # Set by TCPClient for connections it opens.
        self._key: tuple = ()
        self._host: Optional[str] = None
        self._port: Optional[int] = None
        self._connect_task: Optional[asyncio.Task] = None

        self._transport: Optional[asyncio.Transport] = None
        self._state = _CLOSED
        self._released = False
        self._tuning: TcpTuning = ctx.tuning
        self._parser: Optional[rfc.StreamParser] = None
        self._peer_csm: Optional[rfc.CSM] = None
        self._peername: Optional[tuple] = None
        self._sockname: Optional[tuple] = None
        self._ready: Optional[asyncio.Future] = None

        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flush_handle: Optional[asyncio.Handle] = None
        self._paused = False
        # Messages waiting for the peer's CSM: (message, monitor)
        self._queue: list[tuple[Message, Optional[Callable]]] = []
        self._outstanding: dict[bytes, int] = {}
        self._incoming: set[bytes] = set()
        # Custody Pongs held back: [tokens still unanswered, Ping token]
        self._held_pongs: list[list] = []

        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at = _INF
        self._connected_at = 0.0
        self._last_rx = 0.0
        self._quiet_since = 0.0
        self._frame_started: Optional[float] = None
        self._ping_deadline: Optional[float] = None

    # --- EndpointAddress ---------------------------------------------------------

    @property
    def scheme(self) -> str:
        return self._ctx._scheme

    def _format(self, sockaddr) -> str:
        if not sockaddr:
            return ""
        host, port = _strip_mapped(sockaddr[0]), sockaddr[1]
        return hostportjoin(host, None if port == self._ctx._default_port else port)

    @property
    def hostinfo(self) -> str:
        if self._hostinfo is not None:
            return self._hostinfo
        return self._format(self._peername)

    @property
    def hostinfo_local(self) -> str:
        return self._format(self._sockname)

    @property
    def uri_base(self) -> str:
        if self._local_is_server:
            raise error.AnonymousHost(
                f"The client side of a {self.scheme} connection can not be expressed as a URI"
            )
        return f"{self.scheme}://{self.hostinfo}"

    @property
    def uri_base_local(self) -> str:
        if not self._local_is_server:
            raise error.AnonymousHost(
                f"The local side of a {self.scheme} client connection (ephemeral port) "
                "can not be expressed as a URI"
            )
        return f"{self.scheme}://{self.hostinfo_local}"

    @property
    def maximum_block_size_exp(self) -> int:  # type: ignore[override]
        csm = self._peer_csm or _DEFAULT_PEER_CSM
        return rfc.maximum_block_size_exp(
            csm.max_message_size, csm.block_wise_transfer and self._tuning.block_wise_transfer
        )

    @property
    def maximum_payload_size(self) -> int:  # type: ignore[override]
        csm = self._peer_csm or _DEFAULT_PEER_CSM
        return rfc.maximum_payload_size(
            csm.max_message_size, csm.block_wise_transfer and self._tuning.block_wise_transfer
        )

    @property
    def peer_max_message_size(self) -> int:
        """The Max-Message-Size the peer announced (1152 until its CSM)."""
        return (self._peer_csm or _DEFAULT_PEER_CSM).max_message_size

    def __repr__(self):
        state = ("closed", "connecting", "open")[self._state]
        if self._released and self._state:
            state += ", released"
        if self._local_is_server:
            where = f"from {self.scheme}://{self.hostinfo} to {self.hostinfo_local}"
        else:
            where = f"to {self.scheme}://{self.hostinfo}"
        return f"<{type(self).__name__} {where}, {state}>"

    # --- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport) -> None:
        self._transport = transport
        self._state = _CONNECTING
        self._released = False
        tuning = self._tuning = self._ctx.tuning
        self._parser = rfc.StreamParser(tuning.max_message_size)
        self._peer_csm = None
        self._paused = False
        self._peername = transport.get_extra_info("peername")
        self._sockname = transport.get_extra_info("sockname")
        now = self.loop.time()
        self._connected_at = self._last_rx = self._quiet_since = now
        self._frame_started = None
        self._ping_deadline = None
        transport.write(self._ctx._csm_frame())
        self._arm(now + tuning.csm_timeout)
        self._ctx._connection_made(self)

    def connection_lost(self, exc) -> None:
        if self._transport is None:
            return
        where = self._describe()
        if exc is None and self._peer_csm is None:
            reason = error.NetworkError(
                f"Connection {where} was closed by the peer before it sent a CSM{self._ctx._early_close_hint}"
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

    def eof_received(self):
        if self._parser is not None and self._parser.buffered:
            self.log.info("Peer %s closed its side in the middle of a message", self._describe())
        # Returning None lets the transport close.
        return None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def data_received(self, data) -> None:
        parser = self._parser
        if parser is None:
            return
        now = self.loop.time()
        self._last_rx = now
        self._ping_deadline = None
        try:
            messages = parser.feed(data)
        except rfc.FramingError as e:
            for message in e.messages:
                if self._parser is not parser:
                    return
                self._process(message)
            if self._parser is parser:
                self._violation(rfc.Abort.from_error(e))
            return
        for message in messages:
            if self._parser is not parser:
                return  # closed while processing
            self._process(message)
        if parser.buffered:
            if messages or self._frame_started is None:
                self._frame_started = now
                self._arm(now + self._tuning.frame_timeout)
        else:
            self._frame_started = None

    # --- incoming messages -------------------------------------------------------

    def _process(self, message: Message) -> None:
        code: int = message.code  # type: ignore[assignment]  # decoded messages have one
        if self._peer_csm is None and code != Code.CSM:
            self._violation(rfc.Abort(diagnostic="first message was not a CSM"))
            return
        message.remote = self
        try:
            if code >= _SIGNALING_START:
                self._process_signaling(message)
            elif _CODE_EMPTY < code < _REQUEST_END:
                self._incoming.add(message.token)
                self._ctx._tman.process_request(message)
            elif _RESPONSE_START <= code < _RESPONSE_END:
                self._process_response(message)
            elif code == _CODE_EMPTY:
                pass  # RFC 8323 §3.4: empty messages are ignored
            else:
                self.log.debug("Ignoring message with unassigned code class: %r", message)
        except Exception:
            self.log.exception("Error processing %r", message)

    def _process_response(self, message: Message) -> None:
        token = message.token
        kind = self._outstanding.get(token)
        if kind:  # an observation
            code: int = message.code  # type: ignore[assignment]
            final = not (_RESPONSE_START <= code < _SUCCESS_END) or message.opt.observe is None
            if not final:
                self._outstanding[token] = _OBSERVING
            elif kind == _OBSERVING:
                self._forget(token)
            # A final first response is forgotten by the stop callable the
            # token manager calls.
        if not self._ctx._tman.process_response(message):
            self.log.debug("Dropping response that matches no request: %r", message)

    def _process_signaling(self, message: Message) -> None:
        try:
            signal = rfc.parse_signaling(message, self._peer_csm)
        except rfc.BadSignalingOption as e:
            self._violation(rfc.Abort.from_error(e))
            return
        if isinstance(signal, rfc.CSM):
            first = self._peer_csm is None
            self._peer_csm = signal
            if first:
                self._on_ready()
        elif isinstance(signal, rfc.Ping):
            if signal.custody and self._incoming:
                self._held_pongs.append([set(self._incoming), message.token])
            else:
                self._write_signal(rfc.Pong(custody=signal.custody).to_message(token=message.token))
        elif isinstance(signal, rfc.Pong):
            pass  # receiving it already counted as a sign of life
        elif isinstance(signal, rfc.Release):
            self._on_release(signal)
        elif isinstance(signal, rfc.Abort):
            text = f": {signal.diagnostic}" if signal.diagnostic else ""
            self.log.info("Peer %s aborted the connection%s", self._describe(), text)
            self._detach(error.NetworkError(f"Peer {self._describe()} aborted the connection{text}"))
        else:
            self.log.debug("Ignoring unknown signaling message %r", message)

    def _on_ready(self) -> None:
        self._state = _OPEN
        now = self.loop.time()
        self._quiet_since = now
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)
        queue, self._queue = self._queue, []
        for message, monitor in queue:
            if self._state != _OPEN:
                break
            self._send_now(message, monitor, tracked=True)
        tuning = self._tuning
        if tuning.ping_interval is not None:
            self._arm(self._last_rx + tuning.ping_interval)
        self._became_quiet()

    def _on_release(self, release: rfc.Release) -> None:
        self.log.info("Peer %s released the connection", self._describe())
        if release.hold_off:
            self._ctx._hold_off_peer(self, release.hold_off)
        self._released = True
        self._ctx._connection_released(self)
        self._became_quiet()

    # --- outgoing messages -------------------------------------------------------

    def _send(self, message: Message, monitor) -> Optional[Callable[[], None]]:
        """Send a message on this connection (the TokenInterface's
        send_message lands here)."""
        if self._state == _OPEN:
            return self._send_now(message, monitor)
        code: int = message.code  # type: ignore[assignment]  # the token layer sends none without
        is_request = _CODE_EMPTY < code < _REQUEST_END
        if self._state == _CLOSED and self._connect_task is None:
            if not is_request:
                self.log.debug("Dropping %r: connection %s is closed", message, self._describe())
                return None
            if not self._ctx._revive(self, monitor):
                return None
        self._queue.append((message, monitor))
        if is_request:
            return self._track(message)
        return None

    def _track(self, message: Message) -> Callable[[], None]:
        token = message.token
        self._outstanding[token] = _OBSERVE if message.opt.observe == 0 else _PLAIN
        return functools.partial(self._stopped, token)

    def _send_now(self, message: Message, monitor, tracked: bool = False) -> Optional[Callable[[], None]]:
        try:
            frame = rfc.encode_message(message)
        except (TypeError, ValueError) as e:
            self._refuse(message, monitor, f"Message can not be sent over {self.scheme}: {e}")
            return None
        code: int = message.code  # type: ignore[assignment]  # encode_message checked it
        is_request = _CODE_EMPTY < code < _REQUEST_END
        limit = (self._peer_csm or _DEFAULT_PEER_CSM).max_message_size
        if len(frame) > limit:
            if is_request:
                self._refuse(
                    message, monitor,
                    f"Message of {len(frame)} bytes exceeds the Max-Message-Size {limit} of {self._describe()}",
                )
                return None
            self.log.warning(
                "Response of %d bytes exceeds the Max-Message-Size %d of %s; sending 5.00 instead",
                len(frame), limit, self._describe(),
            )
            frame = rfc.encode_message(Message(
                code=Code.INTERNAL_SERVER_ERROR, token=message.token,
                payload=b"Response exceeds the client's Max-Message-Size",
            ))
        if not self._write(frame):
            if is_request:
                self._refuse(message, monitor, f"Send buffer of connection {self._describe()} is full")
                return None
            self.log.warning("Peer %s does not read what is sent to it; aborting", self._describe())
            self._detach(error.NetworkError(f"Peer {self._describe()} stopped reading"), hard=True)
            return None
        if is_request:
            return None if tracked else self._track(message)
        if self._incoming:
            self._answered(message.token)
        return None

    def _refuse(self, message: Message, monitor, text: str) -> None:
        if self._outstanding.pop(message.token, None) is not None and not self._outstanding:
            self._became_quiet()
        if monitor is not None:
            monitor(error.NetworkError(text))
        else:
            self.log.warning("Not sending %r: %s", message, text)
        return None

    def _answered(self, token: bytes) -> None:
        incoming = self._incoming
        if token not in incoming:
            return
        incoming.discard(token)
        if self._held_pongs:
            still_held = []
            for entry in self._held_pongs:
                entry[0].discard(token)
                if entry[0]:
                    still_held.append(entry)
                else:
                    self._write_signal(rfc.Pong(custody=True).to_message(token=entry[1]))
            self._held_pongs = still_held
        if not incoming:
            self._became_quiet()

    def _stopped(self, token: bytes) -> None:
        """The token manager needs no more of the request with ``token`` (it
        got a response, or the requester lost interest)."""
        if self._outstanding.get(token, _OBSERVING) != _OBSERVING:
            self._forget(token)

    def _forget(self, token: bytes) -> None:
        outstanding = self._outstanding
        if outstanding.pop(token, None) is not None and not outstanding:
            self._became_quiet()

    def _became_quiet(self) -> None:
        if self._outstanding or self._incoming or self._queue or self._transport is None:
            return
        if self._released:
            self._detach(None)
            return
        now = self.loop.time()
        self._quiet_since = now
        idle = self._tuning.idle_timeout
        if idle is not None and not self._local_is_server and self._state == _OPEN:
            self._arm(now + idle)

    def _write(self, frame: bytes) -> bool:
        """Queue a frame for the next flush; False if that would exceed the
        write buffer limit."""
        out_bytes = self._out_bytes + len(frame)
        limit = self._tuning.write_buffer_limit
        if out_bytes > limit or (
            self._paused
            and self._transport is not None
            and out_bytes + self._transport.get_write_buffer_size() > limit
        ):
            return False
        self._out.append(frame)
        self._out_bytes = out_bytes
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)
        return True

    def _write_signal(self, message: Message) -> None:
        if self._transport is None:
            return
        frame = rfc.encode_message(message)
        self._out.append(frame)
        self._out_bytes += len(frame)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        out = self._out
        if not out or self._transport is None:
            return
        self._out = []
        self._out_bytes = 0
        self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    # --- closing -----------------------------------------------------------------

    def _describe(self) -> str:
        return f"{self.scheme}://{self.hostinfo}"

    def abort(self, errormessage=None, bad_csm_option=None) -> None:
        """Send a 7.05 Abort (with the diagnostic ``errormessage`` and, if
        given, the Bad-CSM-Option) and close the connection. Pending requests
        fail with :class:`aiocoap.error.NetworkError`."""
        diagnostic = errormessage or ""
        if self._transport is None:
            return
        self._write_signal(rfc.Abort(bad_csm_option=bad_csm_option, diagnostic=diagnostic).to_message())
        self._detach(error.NetworkError(
            f"Connection {self._describe()} aborted locally" + (f": {diagnostic}" if diagnostic else "")
        ))

    def _violation(self, abort: rfc.Abort) -> None:
        """The peer broke the protocol: tell it why, and disconnect."""
        if self._transport is None:
            return
        self.log.warning("Aborting connection %s: %s", self._describe(), abort.diagnostic)
        self._write_signal(abort.to_message())
        self._detach(error.NetworkError(
            f"Connection {self._describe()} aborted: peer violated the protocol ({abort.diagnostic})"
        ))

    def _detach(self, reason: Optional[Exception], hard: bool = False) -> None:
        """End the connection from our side, now: the transport is handed to
        a :class:`_Closer` that flushes (unless ``hard``) and closes it,
        while this object becomes closed at once (and, on the client side,
        can be connected again)."""
        transport = self._transport
        if transport is None:
            return
        if hard:
            self._out = []
            self._out_bytes = 0
        else:
            self._flush()
        closer = _Closer(self._ctx, transport)
        transport.set_protocol(closer)
        if hard:
            transport.abort()
        else:
            transport.close()
            closer.arm(self._tuning.close_timeout)
        if reason is None:
            reason = error.NetworkError(f"Connection {self._describe()} was closed")
        self._lost(reason)

    def _lost(self, reason: Exception) -> None:
        """The connection is gone: fail what waited for it."""
        was_open = self._state == _OPEN
        self._state = _CLOSED
        self._transport = None
        self._parser = None
        self._out = []
        self._out_bytes = 0
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = _INF
        self._queue = []
        self._outstanding.clear()
        self._incoming.clear()
        self._held_pongs = []
        self._fail_ready(reason)
        if was_open:
            self.log.debug("Connection %r ended: %s", self, reason)
        self._ctx._connection_lost(self)
        self._ctx._tman.dispatch_error(reason, self)

    def _fail_ready(self, exc: Exception) -> None:
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_exception(exc)
            # Waiters retrieve it; an unawaited failure is not worth a log line.
            ready.exception()

    def _shutdown(self) -> None:
        reason = error.LibraryShutdown("Transport shut down")
        if self._connect_task is not None:
            self._connect_task.cancel()
        if self._transport is not None:
            self._detach(reason)
        else:
            self._fail_ready(reason)

    def _is_idle(self) -> bool:
        return not self._outstanding and not self._incoming and not self._queue

    # --- timers ------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        if when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = _INF
        if self._transport is None:
            return
        now = self.loop.time()
        tuning = self._tuning
        upcoming = _INF
        if self._peer_csm is None:
            deadline = self._connected_at + tuning.csm_timeout
            if now >= deadline:
                self._violation(rfc.Abort(diagnostic=f"no CSM received within {tuning.csm_timeout:g} s"))
                return
            upcoming = deadline
        if self._frame_started is not None:
            stalled = self._last_rx + tuning.frame_timeout
            limit = self._frame_started + tuning.frame_time_limit
            if now >= stalled:
                self._violation(rfc.Abort(diagnostic=f"message stalled for {tuning.frame_timeout:g} s"))
                return
            if now >= limit:
                self._violation(rfc.Abort(
                    diagnostic=f"message not completed within {tuning.frame_time_limit:g} s"
                ))
                return
            upcoming = min(upcoming, stalled, limit)
        if self._ping_deadline is not None:
            if now >= self._ping_deadline:
                self.log.info("Peer %s did not answer a Ping; closing", self._describe())
                self._detach(error.NetworkError(
                    f"Peer {self._describe()} did not answer a Ping within {tuning.ping_timeout:g} s"
                ), hard=True)
                return
            upcoming = min(upcoming, self._ping_deadline)
        elif tuning.ping_interval is not None and self._peer_csm is not None:
            deadline = self._last_rx + tuning.ping_interval
            if now >= deadline:
                self._write_signal(rfc.Ping().to_message())
                self._ping_deadline = deadline = now + tuning.ping_timeout
            upcoming = min(upcoming, deadline)
        if (
            tuning.idle_timeout is not None
            and not self._local_is_server
            and self._state == _OPEN
            and self._is_idle()
        ):
            deadline = self._quiet_since + tuning.idle_timeout
            if now >= deadline:
                self.log.debug("Closing idle connection %s", self._describe())
                self._ctx._connection_released(self)
                self._detach(None)
                return
            upcoming = min(upcoming, deadline)
        if upcoming < _INF:
            self._arm(upcoming)


class _Closer(asyncio.Protocol):
    """Takes over the transport of a connection we closed, until the socket
    is really gone; cuts it if flushing takes longer than allowed."""

    def __init__(self, ctx, transport):
        self._ctx = ctx
        self._transport = transport
        self._timer: Optional[asyncio.TimerHandle] = None
        ctx._closers.add(self)

    def arm(self, timeout: float) -> None:
        if self._transport is not None:
            self._timer = self._ctx.loop.call_later(timeout, self._cut)

    def _cut(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data) -> None:
        pass

    def eof_received(self):
        return None

    def connection_lost(self, exc) -> None:
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._ctx._closer_done(self)


class _TCPPooling:
    """What TCPServer and TCPClient share: the scheme, the tuning, the set of
    live connections, sending, and shutting down."""

    _scheme = rfc.SCHEME_TCP
    _default_port = rfc.DEFAULT_PORT_TCP
    _early_close_hint = ""

    def __init__(self, tman: interfaces.TokenManager, log, loop, tuning: Optional[TcpTuning] = None):
        self._tman = tman
        self.log = log
        self.loop = loop
        self.tuning = tuning or DEFAULT_TCP_TUNING
        self._connections: set[TcpConnection] = set()
        self._closers: set[_Closer] = set()
        self._shut = False
        self._csm_cache: tuple = (None, b"")
        self._drained: Optional[asyncio.Future] = None

    def _csm_frame(self) -> bytes:
        tuning = self.tuning
        key = (tuning.max_message_size, tuning.block_wise_transfer)
        if self._csm_cache[0] != key:
            csm = rfc.CSM(max_message_size=tuning.max_message_size, block_wise_transfer=tuning.block_wise_transfer)
            self._csm_cache = (key, rfc.encode_message(csm.to_message()))
        return self._csm_cache[1]

    # --- TokenInterface ----------------------------------------------------------

    def recognize_remote(self, remote) -> bool:
        return isinstance(remote, TcpConnection) and remote._ctx is self

    def send_message(self, message: Message, messageerror_monitor=None) -> Optional[Callable[[], None]]:
        return message.remote._send(message, messageerror_monitor)

    def no_response_for(self, remote, token: bytes) -> None:
        """The token manager's notice that a request will not be answered
        (No-Response); it no longer holds back custody Pongs."""
        if isinstance(remote, TcpConnection) and remote._incoming:
            remote._answered(token)

    # --- connection bookkeeping --------------------------------------------------

    def _connection_made(self, connection: TcpConnection) -> None:
        self._connections.add(connection)

    def _connection_lost(self, connection: TcpConnection) -> None:
        self._connections.discard(connection)
        self._check_drained()

    def _closer_done(self, closer: _Closer) -> None:
        self._closers.discard(closer)
        self._check_drained()

    def _check_drained(self) -> None:
        drained = self._drained
        if drained is not None and not self._connections and not self._closers and not drained.done():
            drained.set_result(None)

    def _connection_released(self, connection: TcpConnection) -> None:
        """The connection takes no new requests (peer's Release, idle)."""

    def _hold_off_peer(self, connection: TcpConnection, seconds: int) -> None:
        """The peer asked us not to reconnect for a while."""

    def _revive(self, connection: TcpConnection, monitor) -> bool:
        """A request was sent to a closed connection: reconnect it if this
        side can, else fail the request (False)."""
        if monitor is not None:
            monitor(error.NetworkError(f"Connection {connection._describe()} is closed"))
        return False

    async def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        for connection in list(self._connections):
            connection._shutdown()
        await self._wait_drained()

    async def _wait_drained(self) -> None:
        """Wait until every socket of ours is closed (each closing one is
        cut after the close timeout at the latest)."""
        if not self._connections and not self._closers:
            return
        self._drained = self.loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drained), self.tuning.close_timeout + 1.0)
        except asyncio.TimeoutError:
            self.log.warning(
                "%d socket(s) did not close on shutdown", len(self._connections) + len(self._closers)
            )


class TCPServer(_TCPPooling, interfaces.TokenInterface):
    """Accepts RFC 8323 connections and serves the requests arriving on them
    (transport name ``tcpserver``). Responses, notifications and requests of
    our own go out on the connection the remote names."""

    def __init__(self, tman, log, loop, tuning=None):
        super().__init__(tman, log, loop, tuning)
        self.server: Optional[asyncio.AbstractServer] = None

    def __repr__(self):
        where = ""
        if self.server is not None and self.server.sockets:
            where = " on " + ", ".join(self._format_sockname(s.getsockname()) for s in self.server.sockets)
        return f"<{type(self).__name__}{where} with {len(self._connections)} connection(s)>"

    @staticmethod
    def _format_sockname(sockname) -> str:
        return hostportjoin(_strip_mapped(sockname[0]), sockname[1])

    @classmethod
    async def create_server(cls, bind, tman: interfaces.TokenManager, log, loop, *, _server_context=None, tuning=None):
        """Listen on ``bind`` ((host, port); None for any address / the
        default port, port 0 for an ephemeral one). With ``_server_context``
        (an :class:`ssl.SSLContext`) connections are TLS."""
        self = cls(tman, log, loop, tuning)
        host, port = bind if bind is not None else (None, None)
        if port is None:
            port = self._default_port
        kwargs = {}
        if _server_context is not None:
            kwargs["ssl"] = _server_context
            kwargs["ssl_handshake_timeout"] = self.tuning.connect_timeout
        self.server = await loop.create_server(
            self._new_connection, host, port, reuse_address=True,
            reuse_port=defaults.has_reuse_port(), **kwargs
        )
        return self

    def _new_connection(self) -> TcpConnection:
        return TcpConnection(self, self.log, self.loop)

    def _connection_made(self, connection: TcpConnection) -> None:
        super()._connection_made(connection)
        if self._shut:
            connection.abort("server shutting down")
        elif len(self._connections) > self.tuning.max_server_connections:
            self.log.warning("Too many connections; refusing %s", connection._describe())
            connection.abort("too many connections")

    async def fill_or_recognize_remote(self, message: Message) -> bool:
        remote = message.remote
        return isinstance(remote, TcpConnection) and remote._ctx is self

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

    def __init__(self, tman, log, loop, tuning=None):
        super().__init__(tman, log, loop, tuning)
        self._pool: dict[tuple, TcpConnection] = {}
        self._hold_offs: dict[tuple, float] = {}
        self._connect_tasks: set[asyncio.Task] = set()

    def __repr__(self):
        return f"<{type(self).__name__} with {len(self._pool)} pooled connection(s)>"

    @classmethod
    async def create_client_transport(cls, tman: interfaces.TokenManager, log, loop, *, tuning=None):
        return cls(tman, log, loop, tuning)

    def _connection_kwargs(self, connection: TcpConnection, message: Optional[Message]) -> dict:
        """Extra arguments to loop.create_connection (TLS adds its own)."""
        return {}

    async def fill_or_recognize_remote(self, message: Message) -> bool:
        remote = message.remote
        if isinstance(remote, TcpConnection):
            return remote._ctx is self
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
                hostinfo=hostportjoin(host, None if port == self._default_port else port),
            )
            connection._key = key
            connection._host = host
            connection._port = port
            self._pool[key] = connection
            self._start_connecting(connection, message)
        if connection._state != _OPEN:
            assert connection._ready is not None
            await asyncio.shield(connection._ready)
        return connection

    def _check_hold_off(self, key) -> None:
        until = self._hold_offs.get(key)
        if until is not None:
            remaining = until - self.loop.time()
            if remaining > 0:
                raise error.NetworkError(
                    f"{self._scheme}://{hostportjoin(*key)} asked not to be contacted for another {remaining:.0f} s"
                )
            del self._hold_offs[key]

    def _make_room(self) -> None:
        live = len(self._connections) + len(self._connect_tasks)
        if live < self.tuning.max_connections:
            return
        idle = [c for c in self._connections if c._state == _OPEN and c._is_idle()]
        if not idle:
            raise error.NetworkError(
                f"Too many {self._scheme} connections open ({live}); none of them is idle"
            )
        victim = min(idle, key=lambda c: c._quiet_since)
        self.log.debug("Closing idle connection %r to make room", victim)
        self._connection_released(victim)
        victim._detach(None)

    def _start_connecting(self, connection: TcpConnection, message: Optional[Message]) -> None:
        connection._state = _CLOSED
        connection._ready = self.loop.create_future()
        task = self.loop.create_task(self._connect(connection, message), name=f"aiocoap {self._scheme} connect")
        connection._connect_task = task
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    async def _connect(self, connection: TcpConnection, message: Optional[Message]) -> None:
        try:
            try:
                kwargs = self._connection_kwargs(connection, message)
                await asyncio.wait_for(
                    self.loop.create_connection(lambda: connection, connection._host, connection._port, **kwargs),
                    self.tuning.connect_timeout,
                )
            except asyncio.TimeoutError:
                raise error.NetworkError(
                    f"Connecting to {connection.uri_base} timed out after {self.tuning.connect_timeout:g} s"
                ) from None
            except socket.gaierror as e:
                raise error.ResolutionError(
                    f"No address found for {connection._host}: {e.strerror or e}"
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
        finally:
            connection._connect_task = None

    def _connect_failed(self, connection: TcpConnection, exc: Exception) -> None:
        self.log.debug("Connecting %r failed: %s", connection, exc)
        if self._pool.get(connection._key) is connection:
            del self._pool[connection._key]
        connection._queue = []
        connection._outstanding.clear()
        connection._fail_ready(exc)
        self._tman.dispatch_error(exc, connection)

    def _revive(self, connection: TcpConnection, monitor) -> bool:
        if self._shut:
            if monitor is not None:
                monitor(error.LibraryShutdown("Transport shut down"))
            return False
        if connection._connect_task is not None:
            return True  # already reconnecting
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

    def _connection_lost(self, connection: TcpConnection) -> None:
        if self._pool.get(connection._key) is connection:
            del self._pool[connection._key]
        super()._connection_lost(connection)

    def _connection_released(self, connection: TcpConnection) -> None:
        if self._pool.get(connection._key) is connection:
            del self._pool[connection._key]

    def _hold_off_peer(self, connection: TcpConnection, seconds: int) -> None:
        now = self.loop.time()
        if len(self._hold_offs) > 1024:
            self._hold_offs = {k: v for k, v in self._hold_offs.items() if v > now}
        self._hold_offs[connection._key] = now + seconds

    async def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        tasks = list(self._connect_tasks)
        for task in tasks:
            task.cancel()
        for connection in list(self._connections):
            connection._shutdown()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._pool.clear()
        await self._wait_drained()


async def load(entry, setup) -> None:
    """Attach the client (``tcpclient``) or server (``tcpserver``) side to a
    context (see :data:`aiocoap.transports.TRANSPORTS`)."""
    if entry.server:
        interface = await TCPServer.create_server(setup.server_bind, setup.tokenmanager, setup.log, setup.loop)
    else:
        interface = await TCPClient.create_client_transport(setup.tokenmanager, setup.log, setup.loop)
    setup.add_token_interface(interface)
