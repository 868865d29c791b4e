"""The RFC 8323 session: what one CoAP connection over TCP, TLS or
WebSockets does between its transport and the token layer, without I/O.

The seam between framing, session and transport::

    received bytes -> framer.feed -> messages -> RFC8323Session -> deliver_request / deliver_response
    token layer -> RFC8323Session.send -> framer.encode -> write(bytes) -> transport

* A *framer* (:class:`Framer`) turns received bytes into messages and a
  message into the bytes of one frame. :class:`StreamFramer` is the
  length-prefixed framing of RFC 8323 §3.2 for byte streams (TCP, TLS); it
  takes input in pieces of any size. :class:`WebSocketFramer` is the
  framing of §4.2: one message per WebSocket binary message, no Len field.
  The codecs themselves are in :mod:`aiocoap.transports.rfc8323common`.
* The session (:class:`RFC8323Session`) holds every rule that is the same
  for all of them (RFC 8323 §§3-5, listed below). It is fed received bytes
  (:meth:`~RFC8323Session.receive_data`) and outgoing messages
  (:meth:`~RFC8323Session.send`) together with the current (monotonic)
  time, writes frames through the ``write`` callable it was built with, and
  tells its next deadline (:meth:`~RFC8323Session.next_deadline`;
  :meth:`~RFC8323Session.handle_timer` does what is due). It never sleeps,
  reads no clock and imports no asyncio: the shape of
  :class:`aiocoap.messagemanager.MessageLayer`.
* The transport owns the socket. :class:`aiocoap.transports.tcp.TcpConnection`
  is the asyncio adapter for TCP and TLS: per connection it builds a
  :class:`StreamFramer` and a session, calls
  :meth:`~RFC8323Session.start` when the socket is up, hands over received
  bytes with ``loop.time()``, keeps one ``loop.call_at`` timer at the
  session's deadline, joins the frames written in one event loop iteration
  into one socket write, and closes the socket when the session says so
  (``on_close``).

A WebSockets transport (:mod:`aiocoap.transports.ws`) uses the same
session with a :class:`WebSocketFramer`: it passes each received binary
message to :meth:`~RFC8323Session.receive_data`, tells of input that
completed no message with :meth:`~RFC8323Session.receive_partial` (the
framer's ``pending`` callable reporting what the WebSocket layer holds of
an incomplete message), and its ``write`` callable sends each call's bytes
as one binary message (the session hands ``write`` exactly one encoded
message per call and never joins them; a stream transport may).

Rules the session enforces:

* Each side's first message is its CSM: ours is written by
  :meth:`~RFC8323Session.start`. Messages sent before the peer's CSM
  arrived wait in a queue (bounded by the callers: one entry per request
  the token layer sent) and go out in order when it arrives. A peer whose
  first message is not a CSM, that sends no CSM within
  :attr:`SessionTuning.csm_timeout`, that breaks the framing or that sends
  an unknown critical signaling option gets a 7.05 Abort with a diagnostic
  (naming the option in Bad-CSM-Option for a CSM), and the connection
  ends.
* Max-Message-Size holds both ways: the framer rejects frames above the
  size we announced; nothing larger than the peer's announced size is sent
  (a request fails through its monitor with
  :class:`aiocoap.error.NetworkError`, a response is replaced by a 5.00).
  A peer announcing less than :data:`MIN_PEER_MAX_MESSAGE_SIZE` is
  aborted (Bad-CSM-Option: Max-Message-Size).
* A partial frame that stalls for :attr:`SessionTuning.frame_timeout`, or
  that is not complete :attr:`SessionTuning.frame_time_limit` after it
  started, ends the connection with an Abort (slowloris). With a
  WebSocket framer, that is a message the WebSocket layer holds in part
  (:meth:`~RFC8323Session.receive_partial`).
* Pings are answered with Pongs carrying the Ping's token; a Ping with
  Custody gets its Pong only when every request received before it was
  answered (or will not be: :meth:`~RFC8323Session.no_response_for`).
  With :attr:`SessionTuning.ping_interval` set, a Ping goes out after that
  much silence from the peer; no byte from the peer within
  :attr:`SessionTuning.ping_timeout` after it ends the connection at once.
* A Release (§5.5) is reported (``on_release``, with its Hold-Off) so that
  no new requests are routed to the connection; the session ends once
  nothing is pending on it. An Abort ends it at once.
* With ``idle_close`` (connections this side opened), the session ends
  after :attr:`SessionTuning.idle_timeout` with nothing pending: no request
  waiting for a response, no running observation, no request of the peer
  unanswered.
* The bytes written but not yet taken by the peer (``backlog()``, reported
  by the transport) stay below :attr:`SessionTuning.write_buffer_limit`: a
  request beyond it fails through its monitor, a response beyond it ends
  the connection at once (the peer does not read). Signaling messages are
  small and always written.
* A session ends exactly once: when it decides to (Abort sent or received,
  timeout, Release, idle), it forgets everything pending and calls
  ``on_close(reason, hard)``, after which the transport closes the
  connection and fails what waited for it with ``reason``; when the
  transport ends it (:meth:`~RFC8323Session.connection_lost`), no callback
  is made. An ended session does nothing more; a new connection gets a new
  session.

Log levels: debug for per-message events (unmatched responses, ignored
messages) and for sessions ending. Everything a peer can cause is counted
in a :class:`PeerLog` (shared by all sessions of a transport): each event
at debug, and per kind at most one line a minute with the count of the
others, at info for connections ended by the peer or for lack of an
answer, at warning for peers that violate the protocol or exceed limits.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from .. import error, interfaces
from ..message import Message
from ..numbers.codes import Code
from ..util.logsummary import LogSummary
from . import rfc8323common as rfc

__all__ = [
    "SessionTuning",
    "DEFAULT_SESSION_TUNING",
    "Framer",
    "StreamFramer",
    "WriteBatcher",
    "WebSocketFramer",
    "SessionState",
    "PeerLog",
    "MIN_PEER_MAX_MESSAGE_SIZE",
    "RFC8323Session",
]


@dataclass(frozen=True)
class SessionTuning:
    """Limits and timers of RFC 8323 connections (TCP, TLS, WebSockets).

    The session reads the timers and limits of the protocol; the
    connection-level ones (``connect_timeout``, ``max_connections``,
    ``max_server_connections``, ``close_timeout``) are the transport's.
    Transports read their ``tuning`` attribute whenever they set up a
    connection, so assigning a new instance to a running interface affects
    the connections made after that (this is how tests shorten timers)."""

    max_message_size: int = 1024 * 1024 + 128
    """Max-Message-Size we announce: the largest frame we accept (RFC 8323
    §5.3.1). Above 1152 and with block_wise_transfer, peers can send BERT
    blocks of up to 1 MiB. It is also the most a stream connection buffers
    of an incomplete frame, so memory held for peers stays below
    ``max_server_connections`` times this."""

    block_wise_transfer: bool = True
    """Announce Block-Wise-Transfer (and use BERT towards peers that do)."""

    connect_timeout: float = 20.0
    """Seconds to establish a connection (and TLS handshake)."""

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
    """Client connections open at the same time (per client interface)."""

    max_server_connections: int = 1000
    """Incoming connections a server keeps at the same time. One more
    closes the connection that has been idle longest; if none is idle, the
    new one is answered with an Abort (see
    :mod:`aiocoap.transports.connectiontable`)."""

    max_server_connections_per_host: int = 100
    """Incoming connections from one host (address without port) a server
    keeps at the same time; one more closes that host's connection that has
    been idle longest, or is refused if none is."""

    max_server_buffered: int = 64 * 1024 * 1024
    """Bytes of incomplete messages all incoming connections of a server
    may hold together; above it, the connection holding most is aborted."""

    server_idle_timeout: Optional[float] = 120.0
    """Seconds after which a server connection with nothing pending (no
    request unanswered, no observation running, none of our requests out)
    is closed (None: never)."""

    frame_min_rate: Optional[float] = 1024.0
    """Bytes per second at which a message in progress must arrive on
    average once it is older than :attr:`frame_timeout` (None: any rate);
    slower ones end the connection with an Abort (slowloris)."""

    write_buffer_limit: int = 4 * 1024 * 1024
    """Bytes that may wait for a connection's peer to take them."""

    close_timeout: float = 2.0
    """Seconds a closing connection may take to flush before it is cut."""


DEFAULT_SESSION_TUNING = SessionTuning()


# --- framers -------------------------------------------------------------------


class Framer(Protocol):
    """What a session needs of the framing of its transport."""

    #: The largest Len (options, payload marker and payload) accepted; the
    #: session announces it as its Max-Message-Size.
    max_message_size: int

    def feed(self, data: rfc.BytesLike) -> list[Message]:
        """The messages completed by ``data`` (possibly none). Raises
        :class:`~aiocoap.transports.rfc8323common.FramingError` (with the
        messages completed before the error in its ``messages``) when the
        input is malformed; the session then aborts the connection."""

    @property
    def buffered(self) -> int:
        """Bytes held of a message that is not complete yet."""

    def discard(self) -> None:
        """Forget a message that is not complete yet (the session ended)."""

    def encode(self, message: Message) -> bytes:
        """The bytes of one frame carrying ``message``. Raises TypeError or
        ValueError for a message that can not be framed."""


class StreamFramer(rfc.StreamParser):
    """Length-prefixed framing of a byte stream (RFC 8323 §3.2, TCP and
    TLS): :class:`~aiocoap.transports.rfc8323common.StreamParser` for input,
    :func:`~aiocoap.transports.rfc8323common.encode_message` for output."""

    __slots__ = ()

    encode = staticmethod(rfc.encode_message)


class WriteBatcher:
    """Joins the frames a stream connection writes into few socket writes,
    without holding a whole window of them back.

    A stream transport :meth:`add`\\ s each frame the session writes and
    writes what :meth:`take` returns at the end of its event loop
    iteration, so that the frames of one iteration cost one system call
    instead of one each. But once a chunk holds :attr:`max_frames` frames
    or :attr:`max_bytes` bytes, :meth:`add` returns it to be written at
    once: joining everything of an iteration makes two peers with a window
    of requests between them take turns (each reads the other's whole
    batch, works on it while the other waits, and answers with one batch
    again), so together they never use more than one core however many
    they have. With chunks, the peer starts on the first ones while this
    side still produces the rest (measured in benchmarks/README.md, "CoAP
    over TCP"; tests/test_rfc8323pipeline.py shows it on a virtual
    clock)."""

    __slots__ = ("max_frames", "max_bytes", "_frames", "bytes")

    def __init__(self, max_frames: int = 16, max_bytes: int = 16 * 1024) -> None:
        self.max_frames = max_frames
        """Frames after which a chunk is written at once."""
        self.max_bytes = max_bytes
        """Bytes after which a chunk is written at once (a frame at least
        this large goes out alone, without being copied)."""
        self._frames: list[bytes] = []
        self.bytes = 0
        """Bytes added and not taken yet."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self._frames)} frame(s), {self.bytes} bytes pending>"

    def add(self, frame: bytes) -> Optional[bytes]:
        """Add a frame; returns the bytes to write now if the chunk is
        full (else None: write at the end of the iteration)."""
        frames = self._frames
        frames.append(frame)
        self.bytes += len(frame)
        if len(frames) >= self.max_frames or self.bytes >= self.max_bytes:
            return self.take()
        return None

    def take(self) -> Optional[bytes]:
        """All frames added since the last take, joined (None if none)."""
        frames = self._frames
        if not frames:
            return None
        self._frames = []
        self.bytes = 0
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def clear(self) -> None:
        """Drop what was not taken (the connection is cut)."""
        self._frames = []
        self.bytes = 0


class WebSocketFramer:
    """Framing of CoAP over WebSockets (RFC 8323 §4.2): every
    :meth:`feed` is one complete WebSocket binary message holding one CoAP
    message, so the framer itself never buffers anything.

    The WebSocket layer below it may hold part of a message (a WebSocket
    frame not received completely, or the fragments of a message so far);
    ``pending`` tells how many bytes that is, and is what :attr:`buffered`
    reports, so that the session's frame timers (slowloris protection)
    cover messages stalling there too (see
    :meth:`RFC8323Session.receive_partial`)."""

    encode = staticmethod(rfc.encode_ws_message)

    def __init__(
        self,
        max_message_size: int = rfc.DEFAULT_MAX_MESSAGE_SIZE,
        pending: Optional[Callable[[], int]] = None,
    ) -> None:
        self.max_message_size = max_message_size
        self._pending = pending

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held below (0 without a
        ``pending`` callable)."""
        pending = self._pending
        return 0 if pending is None else pending()

    def discard(self) -> None:
        """Nothing to do: partial messages are held by the WebSocket
        library, which drops them with the connection."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} max {self.max_message_size}>"

    def feed(self, data: rfc.BytesLike) -> list[Message]:
        """Decode one WebSocket message; raises
        :class:`~aiocoap.transports.rfc8323common.FramingError`
        (:class:`~aiocoap.transports.rfc8323common.MessageTooLarge` for one
        above ``max_message_size``, counted like the Len of a stream
        frame)."""
        if data:
            size = len(data) - 2 - (data[0] & 0x0F)
            if size > self.max_message_size:
                raise rfc.MessageTooLarge(size, self.max_message_size)
        return [rfc.decode_ws_message(data)]


# --- the session ---------------------------------------------------------------------


class PeerLog:
    """The log lines peers can cause, each kind rate-limited
    (:class:`~aiocoap.util.logsummary.LogSummary`: one line at its level
    per minute with the count of the others, every event at debug).

    A transport makes one for all its connections and passes it to each
    session, so that a thousand misbehaving connections give one line a
    minute per kind, not a thousand."""

    def __init__(self, log: logging.Logger) -> None:
        self.violation = LogSummary(log, logging.WARNING)
        """Protocol violations and exceeded limits that end a connection
        with an Abort (no CSM in time, broken framing, stalled or too slow
        messages, a Max-Message-Size below :data:`MIN_PEER_MAX_MESSAGE_SIZE`)."""
        self.oversized = LogSummary(log, logging.WARNING)
        """Responses larger than the peer's Max-Message-Size (replaced by a
        5.00)."""
        self.not_reading = LogSummary(log, logging.WARNING)
        """Peers that do not take what is written to them."""
        self.ended = LogSummary(log, logging.INFO)
        """Connections the peer released, aborted or let fall silent."""
        self.refused = LogSummary(log, logging.WARNING)
        """Connections a server refused or closed at its caps (the
        transport's)."""


MIN_PEER_MAX_MESSAGE_SIZE = 64
"""The smallest Max-Message-Size a peer may announce. RFC 8323 gives no
bound of its own; below this not even a response carrying the smallest
block (16 bytes, RFC 7959) with its options fits, and every response to
such a peer would be a 5.00: a peer announcing less is aborted with the
option in Bad-CSM-Option."""


class SessionState(enum.IntEnum):
    """Where a session is in its life."""

    CLOSED = 0
    """Ended; it does nothing more."""

    CONNECTING = 1
    """Waiting for the connection to come up (before
    :meth:`RFC8323Session.start`) or for the peer's CSM: messages sent are
    queued."""

    OPEN = 2
    """The peer's CSM arrived: messages flow."""


CLOSED, CONNECTING, OPEN = SessionState.CLOSED, SessionState.CONNECTING, SessionState.OPEN

# How a received message is handled, by code (indexed by the code's number);
# the ranges are those of the Code methods.
_REQUEST, _RESPONSE, _SIGNALING, _EMPTY, _UNASSIGNED = range(5)


def _handling(number: int) -> int:
    if number == Code.EMPTY:
        return _EMPTY
    if Code.is_request(number):  # type: ignore[arg-type]
        return _REQUEST
    if Code.is_response(number):  # type: ignore[arg-type]
        return _RESPONSE
    if Code.is_signalling(number):  # type: ignore[arg-type]
        return _SIGNALING
    return _UNASSIGNED


_HANDLING = tuple(_handling(number) for number in range(256))

# What a request we sent waits for (values of RFC8323Session._outstanding).
_AWAITING_RESPONSE = 0
_AWAITING_REGISTRATION = 1  # an observe registration, before its first response
_OBSERVING = 2  # a running observation: ends with a final notification

_INF = math.inf
_QUIET_ORDER = itertools.count(1)  # see RFC8323Session.idle_rank
_DEFAULT_PEER_CSM = rfc.CSM()

Monitor = Callable[[Exception], None]
"""What is told when a request can not be sent (the token layer's
``messageerror_monitor``)."""


class _HeldPong:
    """A Pong to a Ping with Custody, held until the requests that arrived
    before the Ping are answered."""

    __slots__ = ("unanswered", "token")

    def __init__(self, unanswered: set[bytes], token: bytes) -> None:
        self.unanswered = unanswered
        self.token = token


class RFC8323Session:
    """Sans-I/O core of one RFC 8323 connection (see the module
    documentation for the rules and the seam).

    :param framer: turns received bytes into messages and messages into
        frames (:class:`StreamFramer`, :class:`WebSocketFramer`); its
        ``max_message_size`` is what the session announces.
    :param write: ``write(frame: bytes)`` puts one frame on the connection.
    :param backlog: ``backlog() -> int``, the bytes written but not yet
        taken by the peer, as far as the transport holds them.
    :param deliver_request: ``deliver_request(message)`` for an incoming
        request (its ``remote`` set).
    :param deliver_response: ``deliver_response(message) -> bool`` for an
        incoming response; False means nobody waited for it.
    :param remote: the :class:`aiocoap.interfaces.EndpointAddress` that
        incoming messages get as their ``remote``.
    :param log: the logger.
    :param tuning: timers and limits.
    :param idle_close: whether :attr:`SessionTuning.idle_timeout` applies
        (connections this side opened).
    :param on_ready: ``on_ready()`` when the peer's first CSM arrived.
    :param on_release: ``on_release(hold_off)`` when the peer released the
        connection (``hold_off``: seconds not to reconnect, or None).
    :param on_close: ``on_close(reason, hard)`` when the session ended
        itself: the transport closes the connection (at once if ``hard``,
        else after writing what was written) and fails what waited for it
        with ``reason``.
    :param peer_log: where lines about the peer's misbehaviour go,
        rate-limited (shared by a transport's sessions; default: one of
        its own).
    """

    def __init__(
        self,
        *,
        framer: Framer,
        write: Callable[[bytes], None],
        backlog: Callable[[], int],
        deliver_request: Callable[[Message], None],
        deliver_response: Callable[[Message], bool],
        remote: interfaces.EndpointAddress,
        log: logging.Logger,
        tuning: SessionTuning = DEFAULT_SESSION_TUNING,
        idle_close: bool = False,
        on_ready: Callable[[], None] = lambda: None,
        on_release: Callable[[Optional[int]], None] = lambda hold_off: None,
        on_close: Callable[[Exception, bool], None] = lambda reason, hard: None,
        peer_log: Optional[PeerLog] = None,
    ) -> None:
        self._framer = framer
        self._encode = framer.encode
        self._write = write
        self._backlog = backlog
        self._deliver_request = deliver_request
        self._deliver_response = deliver_response
        self._remote = remote
        self.log = log
        self._peer_log = peer_log if peer_log is not None else PeerLog(log)
        self.tuning = tuning
        self._idle_timeout = tuning.idle_timeout if idle_close else tuning.server_idle_timeout
        self._on_ready = on_ready
        self._on_release = on_release
        self._on_close = on_close

        self.state: SessionState = CONNECTING
        """Where the session is in its life (only the session writes it)."""
        self._started = False
        self._released = False
        self._peer_csm: Optional[rfc.CSM] = None
        self.maximum_block_size_exp = 0
        """Block size exponent for messages to the peer (7: BERT), from the
        CSMs it sent and whether we use BERT (updated with each CSM)."""
        self.maximum_payload_size = 0
        """Largest payload of one message to the peer (see
        :func:`~aiocoap.transports.rfc8323common.maximum_payload_size`)."""
        self._set_block_sizes()
        # Messages waiting for the peer's CSM: (message, monitor)
        self._queue: list[tuple[Message, Optional[Monitor]]] = []
        # token -> what a request we sent waits for (_AWAITING_RESPONSE etc.)
        self._outstanding: dict[bytes, int] = {}
        # tokens of the peer's requests that are not answered yet
        self._incoming: set[bytes] = set()
        # tokens of the peer's observe registrations not answered yet, and
        # of the observations we serve (their last response had Observe)
        self._registering: set[bytes] = set()
        self._observed: set[bytes] = set()
        self._held_pongs: list[_HeldPong] = []

        self._connected_at = 0.0
        self._last_rx = 0.0
        self._quiet_since = 0.0
        self._quiet_order = 0
        self._frame_started: Optional[float] = None
        self._ping_deadline: Optional[float] = None
        self.added_deadline: Optional[float] = None
        """The earliest deadline added since :meth:`take_added_deadline`
        was last called (None if none). Drivers may read it to skip that
        call when there is nothing new; only the session writes it."""

    def __repr__(self) -> str:
        state = self.state.name.lower()
        if self._released and self.state is not CLOSED:
            state += ", released"
        return (
            f"<{type(self).__name__} with {rfc.describe_remote(self._remote)}, {state}, "
            f"{len(self._outstanding)} request(s) out, {len(self._incoming)} in>"
        )

    # --- what the transport and the remote read -------------------------------------

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called (the connection is up)."""
        return self._started

    @property
    def released(self) -> bool:
        """Whether the peer sent a Release."""
        return self._released

    @property
    def csm_received(self) -> bool:
        """Whether the peer's first CSM arrived."""
        return self._peer_csm is not None

    @property
    def peer_csm(self) -> rfc.CSM:
        """The peer's settings: its CSMs so far, on top of the defaults."""
        return self._peer_csm or _DEFAULT_PEER_CSM

    def _set_block_sizes(self) -> None:
        csm = self._peer_csm or _DEFAULT_PEER_CSM
        bert = csm.block_wise_transfer and self.tuning.block_wise_transfer
        self.maximum_block_size_exp = rfc.maximum_block_size_exp(csm.max_message_size, bert)
        self.maximum_payload_size = rfc.maximum_payload_size(csm.max_message_size, bert)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held by the framer."""
        return self._framer.buffered

    @property
    def is_idle(self) -> bool:
        """Nothing pending: no request of ours waiting for a response or
        notifications, none of the peer's unanswered, no observation of the
        peer's running, nothing queued, no message arriving."""
        return (
            not self._outstanding and not self._incoming and not self._queue and not self._observed
            and not self._framer.buffered
        )

    @property
    def quiet_since(self) -> float:
        """When the session last became idle."""
        return self._quiet_since

    @property
    def idle_rank(self) -> tuple[float, int]:
        """Sorts sessions by when they last became idle, earliest first:
        :attr:`quiet_since`, then the order in which that happened, since
        a coarse clock (uvloop's counts milliseconds) gives sessions that
        went quiet one after the other the same time."""
        return (self._quiet_since, self._quiet_order)

    def _mark_quiet(self, now: float) -> None:
        self._quiet_since = now
        self._quiet_order = next(_QUIET_ORDER)

    @property
    def pending_requests(self) -> int:
        """Requests of ours still waiting for a response or running as an
        observation."""
        return len(self._outstanding)

    # --- time ------------------------------------------------------------------------

    def _note(self, deadline: float) -> None:
        added = self.added_deadline
        if added is None or deadline < added:
            self.added_deadline = deadline

    def take_added_deadline(self) -> Optional[float]:
        """The earliest deadline added since the last call (None if none):
        a driver whose timer is armed no later than that needs no change.
        Deadlines only ever move later otherwise, so a timer that fires
        early just calls :meth:`handle_timer` and re-arms at
        :meth:`next_deadline`."""
        added, self.added_deadline = self.added_deadline, None
        return added

    def next_deadline(self) -> Optional[float]:
        """The earliest time at which :meth:`handle_timer` has work to do
        (None: none, as long as nothing else happens)."""
        if self.state is CLOSED or not self._started:
            return None
        tuning = self.tuning
        best = _INF
        if self._peer_csm is None:
            best = self._connected_at + tuning.csm_timeout
        if self._frame_started is not None:
            best = min(best, self._last_rx + tuning.frame_timeout, self._frame_started + tuning.frame_time_limit)
            slow = self._slow_frame_deadline()
            if slow is not None:
                best = min(best, slow)
        if self._ping_deadline is not None:
            best = min(best, self._ping_deadline)
        elif tuning.ping_interval is not None and self._peer_csm is not None:
            best = min(best, self._last_rx + tuning.ping_interval)
        idle = self._idle_deadline()
        if idle is not None:
            best = min(best, idle)
        return None if best == _INF else best

    def _slow_frame_deadline(self) -> Optional[float]:
        """When the message in progress falls below the minimum average
        rate (its bytes so far would have been due by then)."""
        rate = self.tuning.frame_min_rate
        if rate is None or self._frame_started is None:
            return None
        return self._frame_started + max(self.tuning.frame_timeout, self._framer.buffered / rate)

    def _idle_deadline(self) -> Optional[float]:
        if self._idle_timeout is None or self.state is not OPEN or not self.is_idle:
            return None
        return self._quiet_since + self._idle_timeout

    def handle_timer(self, now: float) -> None:
        """Do what is due at ``now``: abort a peer whose CSM or frame is
        late, send a keepalive Ping or give up on an unanswered one, close
        an idle connection."""
        if self.state is CLOSED or not self._started:
            return
        tuning = self.tuning
        try:
            if self._peer_csm is None and now >= self._connected_at + tuning.csm_timeout:
                raise self._violation(f"no CSM received within {tuning.csm_timeout:g} s", now)
            if self._frame_started is not None:
                if now >= self._last_rx + tuning.frame_timeout:
                    raise self._violation(f"message stalled for {tuning.frame_timeout:g} s", now)
                if now >= self._frame_started + tuning.frame_time_limit:
                    raise self._violation(f"message not completed within {tuning.frame_time_limit:g} s", now)
                slow = self._slow_frame_deadline()
                if slow is not None and now >= slow:
                    raise self._violation(f"message arriving slower than {tuning.frame_min_rate:g} bytes/s", now)
            if self._ping_deadline is not None:
                if now >= self._ping_deadline:
                    where = rfc.describe_remote(self._remote)
                    self._peer_log.ended.log(now, "Peer %s did not answer a Ping; closing", where)
                    raise rfc.CloseConnection(
                        error.NetworkError(f"Peer {where} did not answer a Ping within {tuning.ping_timeout:g} s"),
                        hard=True,
                    )
            elif (
                tuning.ping_interval is not None
                and self._peer_csm is not None
                and now >= self._last_rx + tuning.ping_interval
            ):
                self._write_signal(rfc.Ping().to_message())
                self._ping_deadline = now + tuning.ping_timeout
            idle = self._idle_deadline()
            if idle is not None and now >= idle:
                self.log.debug("Closing idle connection %s", rfc.describe_remote(self._remote))
                raise self._closed_locally()
        except rfc.CloseConnection as e:
            self._close(e)

    # --- lifecycle -------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The connection is up: write our CSM and start waiting for the
        peer's."""
        if self._started or self.state is CLOSED:
            return
        self._started = True
        self._connected_at = self._last_rx = now
        self._mark_quiet(now)
        framer = self._framer
        csm = rfc.CSM(max_message_size=framer.max_message_size, block_wise_transfer=self.tuning.block_wise_transfer)
        self._write(self._encode(csm.to_message()))
        self._note(now + self.tuning.csm_timeout)

    def abort(self, diagnostic: str = "", bad_csm_option: Optional[int] = None) -> None:
        """End the connection from this side with a 7.05 Abort carrying
        ``diagnostic`` (and the Bad-CSM-Option, if given); pending requests
        fail with :class:`aiocoap.error.NetworkError`. Does nothing before
        :meth:`start` or after the end."""
        if self.state is CLOSED or not self._started:
            return
        where = rfc.describe_remote(self._remote)
        self._close(rfc.CloseConnection(
            error.NetworkError(f"Connection {where} aborted locally" + (f": {diagnostic}" if diagnostic else "")),
            abort=rfc.Abort(bad_csm_option=bad_csm_option, diagnostic=diagnostic),
        ))

    def connection_lost(self, reason: Optional[Exception] = None) -> None:
        """The transport ended the connection (the peer closed it, or the
        transport closed it for reasons of its own): forget everything. No
        callback is made; the transport fails what waited with
        ``reason``."""
        self._end(reason)

    def _end(self, reason: Optional[Exception]) -> None:
        if self.state is CLOSED:
            return
        if self.state is OPEN:
            self.log.debug("Connection %r ended: %s", self._remote, reason)
        self.state = CLOSED
        self._queue = []
        self._outstanding.clear()
        self._incoming.clear()
        self._registering.clear()
        self._observed.clear()
        self._held_pongs = []
        self._framer.discard()
        self._frame_started = None
        self._ping_deadline = None
        self.added_deadline = None

    def _close(self, closing: rfc.CloseConnection) -> None:
        """End the session from this side: send the Abort, if any, forget
        everything and tell the transport."""
        if self.state is CLOSED:
            return
        if closing.abort is not None and not closing.hard:
            self._write_signal(closing.abort.to_message())
        self._end(closing.reason)
        self._on_close(closing.reason, closing.hard)

    def _violation(self, diagnostic: str, now: float, abort: Optional[rfc.Abort] = None) -> rfc.CloseConnection:
        """The peer broke the protocol: what to raise to tell it why, and
        disconnect."""
        where = rfc.describe_remote(self._remote)
        self._peer_log.violation.log(now, "Aborting connection %s: %s", where, diagnostic)
        return rfc.CloseConnection(
            error.NetworkError(f"Connection {where} aborted: peer violated the protocol ({diagnostic})"),
            abort=abort if abort is not None else rfc.Abort(diagnostic=diagnostic),
        )

    def _closed_locally(self) -> rfc.CloseConnection:
        return rfc.CloseConnection(error.NetworkError(f"Connection {rfc.describe_remote(self._remote)} was closed"))

    # --- incoming --------------------------------------------------------------------

    def _ping_answered(self, now: float) -> None:
        self._ping_deadline = None
        interval = self.tuning.ping_interval
        if interval is not None:
            # Answered: the next keepalive may be due before the timer
            # that waited for the answer.
            self._note(now + interval)

    def receive_partial(self, now: float) -> None:
        """Bytes arrived that completed no message: for a WebSocket
        transport, part of a WebSocket frame or a WebSocket control frame
        (a stream transport just calls :meth:`receive_data`). They are a
        sign of life of the peer like any input, and while the framer
        reports a message in progress (``buffered``), the frame timers
        (:attr:`SessionTuning.frame_timeout`,
        :attr:`SessionTuning.frame_time_limit`) run as for a partial stream
        frame."""
        if self.state is CLOSED:
            return
        self._last_rx = now
        if self._ping_deadline is not None:
            self._ping_answered(now)
        self._track_partial(now, completed=False)

    def _track_partial(self, now: float, completed: bool) -> None:
        if self._framer.buffered:
            if completed or self._frame_started is None:
                self._frame_started = now
                tuning = self.tuning
                self._note(now + min(tuning.frame_timeout, tuning.frame_time_limit))
        else:
            self._frame_started = None

    def receive_data(self, data: rfc.BytesLike, now: float) -> None:
        """Process bytes received on the connection (for a WebSocket
        framer: one complete WebSocket message)."""
        if self.state is CLOSED:
            return
        self._last_rx = now
        if self._ping_deadline is not None:
            self._ping_answered(now)
        framer = self._framer
        try:
            try:
                messages = framer.feed(data)
            except rfc.FramingError as e:
                for message in e.messages:
                    self._process(message, now)
                    if self.state is CLOSED:
                        return
                raise self._violation(e.diagnostic, now, rfc.Abort.from_error(e))
            for message in messages:
                self._process(message, now)
                if self.state is CLOSED:
                    return
        except rfc.CloseConnection as e:
            self._close(e)
            return
        if self._frame_started is not None or framer.buffered:
            self._track_partial(now, completed=bool(messages))

    def _process(self, message: Message, now: float) -> None:
        code: Code = message.code  # type: ignore[assignment]  # decoded messages have one
        if self._peer_csm is None and code != Code.CSM:
            raise self._violation("first message was not a CSM", now)
        message.remote = self._remote
        handling = _HANDLING[code]
        if handling == _REQUEST:
            token = message.token
            self._incoming.add(token)
            if message.opt.observe == 0:
                self._registering.add(token)
            elif self._observed:
                self._observed.discard(token)  # a new request with the token replaces the observation
            try:
                self._deliver_request(message)
            except Exception:
                self.log.exception("Error processing %r", message)
        elif handling == _RESPONSE:
            self._process_response(message, now)
        elif handling == _SIGNALING:
            try:
                self._process_signaling(message, now)
            except rfc.CloseConnection:
                raise
            except Exception:
                # (a failing on_ready / on_release callback)
                self.log.exception("Error processing %r", message)
        elif handling == _EMPTY:
            pass  # RFC 8323 §3.4: empty messages are ignored
        else:
            self.log.debug("Ignoring message with unassigned code class: %r", message)

    def _process_response(self, message: Message, now: float) -> None:
        token = message.token
        waiting = self._outstanding.get(token)
        if waiting is not None and waiting != _AWAITING_RESPONSE:
            code: Code = message.code  # type: ignore[assignment]
            if code.is_successful() and message.opt.observe is not None:
                self._outstanding[token] = _OBSERVING
            elif waiting == _OBSERVING:
                self._forget(token, now)
            # A final first response is forgotten by request_done, which the
            # token layer calls.
        try:
            delivered = self._deliver_response(message)
        except Exception:
            self.log.exception("Error processing %r", message)
            return
        if not delivered:
            self.log.debug("Dropping response that matches no request: %r", message)

    def _process_signaling(self, message: Message, now: float) -> None:
        try:
            signal = rfc.parse_signaling(message, self._peer_csm)
        except rfc.BadSignalingOption as e:
            raise self._violation(e.diagnostic, now, rfc.Abort.from_error(e))
        if isinstance(signal, rfc.CSM):
            if signal.max_message_size < MIN_PEER_MAX_MESSAGE_SIZE:
                diagnostic = (
                    f"Max-Message-Size {signal.max_message_size} is below {MIN_PEER_MAX_MESSAGE_SIZE}"
                )
                raise self._violation(
                    diagnostic, now, rfc.Abort(bad_csm_option=rfc.CSM_MAX_MESSAGE_SIZE, diagnostic=diagnostic)
                )
            first = self._peer_csm is None
            self._peer_csm = signal
            self._set_block_sizes()
            if first:
                self._became_ready(now)
        elif isinstance(signal, rfc.Ping):
            if signal.custody and self._incoming:
                self._held_pongs.append(_HeldPong(set(self._incoming), message.token))
            else:
                self._write_signal(rfc.Pong(custody=signal.custody).to_message(token=message.token))
        elif isinstance(signal, rfc.Pong):
            pass  # receiving it already counted as a sign of life
        elif isinstance(signal, rfc.Release):
            self._peer_log.ended.log(now, "Peer %s released the connection", rfc.describe_remote(self._remote))
            self._on_release(signal.hold_off or None)
            self._released = True
            self._became_quiet(now)
        elif isinstance(signal, rfc.Abort):
            where = rfc.describe_remote(self._remote)
            text = f": {signal.diagnostic}" if signal.diagnostic else ""
            self._peer_log.ended.log(now, "Peer %s aborted the connection%s", where, text)
            raise rfc.CloseConnection(error.NetworkError(f"Peer {where} aborted the connection{text}"))
        else:
            self.log.debug("Ignoring unknown signaling message %r", message)

    def _became_ready(self, now: float) -> None:
        self.state = OPEN
        self._mark_quiet(now)
        self._on_ready()
        queue, self._queue = self._queue, []
        for message, monitor in queue:
            if self.state is not OPEN:
                break
            self._send_now(message, now, monitor, tracked=True)
        if self.state is not OPEN:
            return
        if self.tuning.ping_interval is not None:
            self._note(self._last_rx + self.tuning.ping_interval)
        self._became_quiet(now)

    # --- outgoing --------------------------------------------------------------------

    def send(self, message: Message, now: float, monitor: Optional[Monitor] = None) -> bool:
        """Send a request, response or notification on the connection
        (queued until the peer's CSM arrived).

        Returns True if the message is a request the session now tracks:
        call :meth:`request_done` once no more responses to it are wanted.
        A request that can not be sent is reported to ``monitor`` (with
        :class:`aiocoap.error.NetworkError`)."""
        if self.state is OPEN:
            return self._send_now(message, now, monitor, tracked=False)
        code = message.code
        is_request = code is not None and _HANDLING[code] == _REQUEST
        if self.state is CLOSED:
            where = rfc.describe_remote(self._remote)
            if is_request:
                self._refuse(message, monitor, f"Connection {where} is closed", now)
            else:
                self.log.debug("Dropping %r: connection %s is closed", message, where)
            return False
        self._queue.append((message, monitor))
        if is_request:
            self._track(message)
        return is_request

    def _track(self, message: Message) -> None:
        self._outstanding[message.token] = (
            _AWAITING_REGISTRATION if message.opt.observe == 0 else _AWAITING_RESPONSE
        )

    def _send_now(self, message: Message, now: float, monitor: Optional[Monitor], tracked: bool) -> bool:
        try:
            frame = self._encode(message)
        except (TypeError, ValueError) as e:
            self._refuse(message, monitor, f"Message can not be sent over {self._remote.scheme}: {e}", now)
            return False
        is_request = _HANDLING[message.code] == _REQUEST  # type: ignore[index]  # encoding checked it
        limit = (self._peer_csm or _DEFAULT_PEER_CSM).max_message_size
        if len(frame) > limit:
            where = rfc.describe_remote(self._remote)
            if is_request:
                self._refuse(
                    message, monitor, f"Message of {len(frame)} bytes exceeds the Max-Message-Size {limit} of {where}", now
                )
                return False
            self._peer_log.oversized.log(
                now, "Response of %d bytes exceeds the Max-Message-Size %d of %s; sending 5.00 instead",
                len(frame), limit, where,
            )
            frame = self._encode(Message(
                code=Code.INTERNAL_SERVER_ERROR, _token=message.token,
                payload=b"Response exceeds the client's Max-Message-Size",
            ))
        if self._backlog() + len(frame) > self.tuning.write_buffer_limit:
            where = rfc.describe_remote(self._remote)
            if is_request:
                self._refuse(message, monitor, f"Send buffer of connection {where} is full", now)
                return False
            self._peer_log.not_reading.log(now, "Peer %s does not read what is sent to it; aborting", where)
            self._close(rfc.CloseConnection(error.NetworkError(f"Peer {where} stopped reading"), hard=True))
            return False
        self._write(frame)
        if is_request:
            if not tracked:
                self._track(message)
            return True
        if self._registering or self._observed:
            self._observation_answered(message, now)
        if self._incoming:
            self._answered(message.token, now)
        return False

    def _observation_answered(self, response: Message, now: float) -> None:
        """A response to the peer: it starts, continues or ends an
        observation we serve (a successful one with Observe keeps it
        running)."""
        token = response.token
        if token not in self._registering and token not in self._observed:
            return
        self._registering.discard(token)
        code: Code = response.code  # type: ignore[assignment]
        if code.is_successful() and response.opt.observe is not None:
            self._observed.add(token)
            return
        self._observed.discard(token)
        if not self._observed:
            self._became_quiet(now)

    def _refuse(self, message: Message, monitor: Optional[Monitor], text: str, now: float) -> None:
        if self._outstanding.pop(message.token, None) is not None and not self._outstanding:
            self._became_quiet(now)
        if monitor is not None:
            monitor(error.NetworkError(text))
        else:
            self.log.warning("Not sending %r: %s", message, text)

    def _write_signal(self, message: Message) -> None:
        self._write(self._encode(message))

    def request_done(self, token: bytes, now: float) -> None:
        """The token layer wants no more responses to the request with
        ``token`` (it got its response, or the requester lost interest)."""
        if self._outstanding.get(token, _OBSERVING) != _OBSERVING:
            self._forget(token, now)

    def no_response_for(self, token: bytes, now: float) -> None:
        """The peer's request with ``token`` will not be answered
        (No-Response): custody Pongs no longer wait for it."""
        if self._incoming:
            self._answered(token, now)

    def _answered(self, token: bytes, now: float) -> None:
        incoming = self._incoming
        if token not in incoming:
            return
        incoming.discard(token)
        if self._held_pongs:
            still_held = []
            for held in self._held_pongs:
                held.unanswered.discard(token)
                if held.unanswered:
                    still_held.append(held)
                else:
                    self._write_signal(rfc.Pong(custody=True).to_message(token=held.token))
            self._held_pongs = still_held
        if not incoming:
            self._became_quiet(now)

    def _forget(self, token: bytes, now: float) -> None:
        outstanding = self._outstanding
        if outstanding.pop(token, None) is not None and not outstanding:
            self._became_quiet(now)

    def _became_quiet(self, now: float) -> None:
        if self._outstanding or self._incoming or self._queue or self._observed or self.state is CLOSED or not self._started:
            return
        if self._released:
            self._close(self._closed_locally())
            return
        self._mark_quiet(now)
        if self._idle_timeout is not None and self.state is OPEN:
            self._note(now + self._idle_timeout)
