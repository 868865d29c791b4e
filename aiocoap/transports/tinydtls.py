"""CoAP over DTLS (``coaps://``, RFC 7252 §9), client side, on tinydtls.

This module implements a MessageInterface (transport name ``tinydtls``)
that carries the messages of the message layer over DTLS 1.2 sessions with
pre-shared keys (cipher suite TLS_PSK_WITH_AES_128_CCM_8, as CoAP's
PreSharedKey mode demands), using the tinydtls library wrapped by the
``DTLSSocket`` package (the ``tinydtls`` extra). Everything above it --
retransmission, deduplication, blockwise, observe, OSCORE -- works over it
unchanged. The server side is :mod:`.tinydtls_server`.

Credentials come from the context's ``client_credentials``, by request URI::

    {"coaps://localhost/*": {"dtls": {
        "psk": {"ascii": "secretPSK"},
        "client-identity": {"ascii": "client_Identity"}}}}

(in Python, byte strings can be given directly: ``"psk": b"secretPSK"``;
``{"hex": "..."}`` works too). ``aiocoap-client --credentials FILE`` loads
such a file. tinydtls takes keys of at most 16 and identities of at most 32
bytes.

Rules:

* One DTLS session per (host, port, identity, key), shared by every request
  and observation to that peer. Each session has a UDP socket of its own
  (connected to the peer) and is its own
  :class:`aiocoap.interfaces.EndpointAddress`: a :class:`DTLSClientConnection`.
  A session that ended is never reused (its ``session_ended`` is true); the
  next request opens a new one, so a response from a new session can not
  match a request of the old one (RFC 7252 §9.1.2).
* Requests wait for the handshake while their route is being decided;
  tinydtls retransmits the handshake flights. If the handshake does not
  complete within :attr:`DTLSTuning.handshake_timeout` the requests fail
  with :class:`HandshakeTimeout`; a fatal alert fails them with
  :class:`FatalDTLSError` (a wrong PSK or identity shows as one of these,
  depending on the server), an ICMP error (nothing listening) with
  :class:`aiocoap.error.NetworkError` at once. All are
  :class:`aiocoap.error.NetworkError` subclasses.
* Sessions close after :attr:`DTLSTuning.idle_timeout` without traffic,
  when the peer went silent for :attr:`DTLSTuning.silence_timeout` while we
  waited for an answer (a server that restarted has forgotten the session
  and drops what we send), when the peer sends an alert, and to keep at
  most :attr:`DTLSTuning.max_client_sessions` (the one idle longest goes
  first). Exchanges still running on a closed session fail with the reason
  (:class:`SessionClosed`, :class:`CloseNotifyReceived`,
  :class:`FatalDTLSError`).
* A CoAP message must fit one DTLS record: at most :data:`MAX_PLAINTEXT`
  bytes (tinydtls' buffer). The remotes announce a block size of 1024
  bytes, so blockwise transfers stay below that; a larger message is not
  sent (a warning, at most one a minute) and its exchange times out.
* On shutdown every session is closed with a close_notify alert, every
  socket is closed and nothing keeps running.

The session bookkeeping (epochs, timeouts, caps) lives in the sans-I/O
:class:`~aiocoap.transports.dtls_sessions.SessionTable`; this module moves
datagrams between the sockets, tinydtls and the message layer, and drives
one timer per transport for the table's deadlines and tinydtls'
retransmissions.

Log levels: debug for sessions opened and closed and for anything a peer
sends that is dropped; warning for local problems (messages too large,
caps reached), at most once a minute each.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, Callable, Hashable, Optional, TypeVar, cast

from .. import error, interfaces
from ..credentials import CredentialsMissingError
from ..message import Message, UndecidedRemote
from ..numbers.constants import COAPS_PORT, MAX_REGULAR_BLOCK_SIZE_EXP
from ..util import hostportjoin
from ..util.asyncio import clock_of
from ..util.asyncio.recvmsg import RecvmsgDatagramProtocol, create_recvmsg_datagram_endpoint
from .dtls_sessions import (
    DEFAULT_DTLS_TUNING,
    CloseNotifyReceived,
    DTLSError,
    DTLSTuning,
    FatalDTLSError,
    HandshakeTimeout,
    Session,
    SessionClosed,
    SessionState,
    SessionTable,
    alert_name,
)
from .generic_udp import resolve, split_hostinfo

if TYPE_CHECKING:
    from . import TransportEntry, TransportSetup

__all__ = [
    "MessageInterfaceTinyDTLS", "DTLSClientConnection",
    "COAPS_PORT", "DTLS_EVENT_CONNECT", "DTLS_EVENT_CONNECTED", "DTLS_EVENT_RENEGOTIATE",
    "LEVEL_NOALERT", "LEVEL_WARNING", "LEVEL_FATAL", "CODE_CLOSE_NOTIFY",
    "DTLS_TICKS_PER_SECOND", "DTLS_CLOCK_OFFSET", "MAX_PLAINTEXT", "MAX_PSK_LENGTH", "MAX_IDENTITY_LENGTH",
    "DTLSError", "FatalDTLSError", "CloseNotifyReceived", "HandshakeTimeout", "SessionClosed",
    "DTLSTuning", "DEFAULT_DTLS_TUNING",
]

# Events tinydtls reports through the event callback with LEVEL_NOALERT
DTLS_EVENT_CONNECT = 0x01DC
"""A handshake was started."""
DTLS_EVENT_CONNECTED = 0x01DE
"""A handshake completed: the session can carry data."""
DTLS_EVENT_RENEGOTIATE = 0x01DF
"""The peer started a new handshake on a session."""

LEVEL_NOALERT = 0
"""Level of tinydtls' own events (not alerts)."""
LEVEL_WARNING = 1
"""Alert level ``warning`` (RFC 5246 §7.2)."""
LEVEL_FATAL = 2
"""Alert level ``fatal`` (RFC 5246 §7.2)."""
CODE_CLOSE_NOTIFY = 0
"""Alert description ``close_notify``: the peer ends the session."""

DTLS_TICKS_PER_SECOND = 1000
"""tinydtls counts time in milliseconds."""
DTLS_CLOCK_OFFSET = time.time()
"""The wall-clock time at which this module was imported. tinydtls counts
its ticks from a whole second of wall-clock time that it resets whenever a
DTLS context is created; the transports track that themselves (see
:func:`new_dtls_context`)."""

MAX_PLAINTEXT = 1371
"""The largest message tinydtls puts into one record (its 1400-byte buffer
minus record header, explicit nonce and the 8-byte CCM tag)."""
MAX_PSK_LENGTH = 16
"""The longest pre-shared key tinydtls (as built in DTLSSocket) accepts."""
MAX_IDENTITY_LENGTH = 32
"""The longest PSK identity tinydtls (as built in DTLSSocket) accepts."""

_MIN_RETRANSMIT_DELAY = 0.1
_WARNING_INTERVAL = 60.0


# --- tinydtls' clock -------------------------------------------------------------------

_clock_offset = int(DTLS_CLOCK_OFFSET)


def new_dtls_context(**kwargs: Any) -> Any:
    """A ``DTLSSocket.dtls.DTLS`` context created with ``kwargs`` (read,
    write, event, pskId, pskStore), with the base of tinydtls' clock noted.

    Creating a context restarts tinydtls' clock at the current whole second
    of wall-clock time (for every context in the process); the second is
    only certain if it did not change during the call, so the call is
    repeated until it did not."""
    from DTLSSocket import dtls

    global _clock_offset
    while True:
        before = time.time()
        context = dtls.DTLS(**kwargs)
        after = time.time()
        if int(before) == int(after):
            _clock_offset = int(after)
            return context


def loop_time_of_ticks(ticks: int, loop_now: float) -> Optional[float]:
    """The loop time at which tinydtls' next retransmission, due at tick
    ``ticks`` (as ``checkRetransmit()`` returns it; 0 for none), should be
    checked; at least a little after ``loop_now``."""
    if not ticks:
        return None
    wall = _clock_offset + ticks / DTLS_TICKS_PER_SECOND
    return loop_now + max(wall - time.time(), _MIN_RETRANSMIT_DELAY)


def coaps_hostinfo(sockaddr: tuple[Any, ...]) -> str:
    """The URI authority of a socket address as a ``coaps://`` URI has it
    (IPv4 without its V4MAPPED prefix, the port left out if it is 5684).

    >>> coaps_hostinfo(('::ffff:127.0.0.1', 5684, 0, 0))
    '127.0.0.1'
    >>> coaps_hostinfo(('::1', 61616, 0, 0))
    '[::1]:61616'
    """
    host, port = sockaddr[0], sockaddr[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:"):]
    return hostportjoin(host, None if port == COAPS_PORT else port)


def describe_event(level: int, code: int) -> str:
    """A readable name of an alert tinydtls reported."""
    kind = {LEVEL_WARNING: "warning", LEVEL_FATAL: "fatal"}.get(level, f"level {level}")
    return f"{kind} alert {alert_name(code)}"


def expects_answer(data: bytes) -> bool:
    """Whether an encoded CoAP message is one the peer reacts to (a CON
    message, or a NON request); ACKs, RSTs and NON responses are not.

    >>> expects_answer(bytes([0x40, 0x01, 0, 1]))  # CON GET
    True
    >>> expects_answer(bytes([0x60, 0x45, 0, 1]))  # ACK 2.05
    False
    """
    mtype = (data[0] >> 4) & 3
    return mtype == 0 or (mtype == 1 and 1 <= data[1] < 32)


_Protocol = TypeVar("_Protocol", bound=RecvmsgDatagramProtocol)


async def open_datagram_endpoint(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], _Protocol],
    make_socket: Callable[[], socket.socket],
) -> tuple[asyncio.DatagramTransport, _Protocol]:
    """An asyncio datagram transport for a socket from ``make_socket()``
    that reads many datagrams per wakeup where the loop allows
    (:mod:`aiocoap.util.asyncio.recvmsg`; the request window of a busy
    session comes in bursts), else asyncio's own (one per wakeup)."""
    try:
        return await create_recvmsg_datagram_endpoint(loop, factory, make_socket())
    except NotImplementedError:
        pass
    sock = make_socket()
    try:
        return await loop.create_datagram_endpoint(factory, sock=sock)
    except BaseException:
        sock.close()
        raise


class RateLimitedWarning:
    """Logs a warning at most once a minute."""

    __slots__ = ("_log", "_last")

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._last = -1e9

    def __call__(self, now: float, msg: str, *args: object) -> None:
        if now - self._last >= _WARNING_INTERVAL:
            self._last = now
            self._log.warning(msg, *args)


# --- what client and server share ----------------------------------------------------


class DTLSSessionDriver:
    """Drives a :class:`~aiocoap.transports.dtls_sessions.SessionTable`
    and tinydtls' retransmissions on an asyncio loop with one
    ``loop.call_at`` timer: the base of the client transport and of the
    server's :class:`~aiocoap.transports.tinydtls_server.GoingThroughMessageDecryption`.

    Subclasses provide ``_retransmission_deadline()`` (the loop time at
    which tinydtls wants to be asked to retransmit, or None) and
    ``_retransmit(now)`` (asking it), and call :meth:`_schedule` after
    anything that may have added a deadline."""

    _loop: asyncio.AbstractEventLoop
    _core: SessionTable

    def _start_driver(self, loop: asyncio.AbstractEventLoop, core: SessionTable) -> None:
        self._loop = loop
        self._clock = clock_of(loop)
        self._core = core
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at: Optional[float] = None
        self._shut_down = False

    @property
    def tuning(self) -> DTLSTuning:
        """The :class:`DTLSTuning` in effect (assignable)."""
        return self._core.tuning

    @tuning.setter
    def tuning(self, value: DTLSTuning) -> None:
        self._core.tuning = value
        self._schedule()

    @property
    def sessions(self) -> list[Any]:
        """The remotes of the sessions that exist (established or in their
        handshake)."""
        return [s.handle for s in self._core]

    def _retransmission_deadline(self) -> Optional[float]:
        raise NotImplementedError

    def _retransmit(self, now: float) -> None:
        raise NotImplementedError

    def _schedule(self, deadline: Optional[float] = None) -> None:
        """Make the timer fire no later than ``deadline`` (by default, the
        next deadline of the table and of tinydtls)."""
        if deadline is None:
            deadline = self._core.next_deadline()
            retransmission = self._retransmission_deadline()
            if retransmission is not None and (deadline is None or retransmission < deadline):
                deadline = retransmission
            if deadline is None:
                return
        if self._shut_down or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self._clock()
        self._retransmit(now)
        self._core.handle_timer(now)
        self._schedule()

    def _stop_driver(self) -> None:
        self._shut_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None


# --- the client ------------------------------------------------------------------------


class DTLSClientConnection(interfaces.EndpointAddress):
    """One DTLS session (one epoch of it) from this client to a server, and
    the remote of every message exchanged over it.

    Created by :class:`MessageInterfaceTinyDTLS` when a request needs a
    session; two connections are equal only if they are the same object."""

    scheme = "coaps"
    is_multicast = False
    is_multicast_locally = False
    maximum_block_size_exp = MAX_REGULAR_BLOCK_SIZE_EXP

    session_ended = False
    """True once the session is over (closed, failed or never established):
    messages with this remote are not sent any more, and routes that
    remember it must be decided anew."""

    route_per_uri = False
    """True if the client credentials name different DTLS credentials for
    different paths on this host: then requests are not routed by host
    alone (the context does not remember this remote as the route to the
    host), as the path decides which session a request goes to."""

    def __init__(self, host: str, port: int, pskId: bytes, psk: bytes, coaptransport: "MessageInterfaceTinyDTLS"):
        self._host = host
        self._port = port
        self._pskId = pskId
        self._psk = psk
        self.coaptransport = coaptransport
        self._hostinfo = hostportjoin(host, None if port == COAPS_PORT else port)
        self._session: Optional[Session] = None
        self._transport: Optional[asyncio.DatagramTransport] = None
        self._protocol: Optional["DTLSClientConnection.SingleConnection"] = None
        self._dtls: Any = None
        self._connection: Any = None
        self._opening: Optional[asyncio.Task[None]] = None
        self._established: asyncio.Future[DTLSClientConnection] = coaptransport._loop.create_future()
        # a value retrieved here counts as retrieved, also if nobody waits
        self._established.add_done_callback(_retrieve)
        self._inbox: list[bytes] = []
        self._pending_close: Optional[Exception] = None
        self._retransmit_at: Optional[float] = None
        self._closed = False
        self._is_established = False
        # the socket's send, while it is open
        self._sendto: Optional[Callable[[bytes], None]] = None

    def __repr__(self) -> str:
        if self._session is not None:
            state = self._session.state.name.lower()
            epoch = f" epoch {self._session.epoch}"
        else:
            state, epoch = "new", ""
        return f"<{type(self).__name__} {self.uri_base} identity {self._pskId!r}{epoch} {state}>"

    @property
    def log(self) -> logging.Logger:
        return self.coaptransport.log

    @property
    def hostinfo(self) -> str:
        """The host and port the session was requested with (the port left
        out if it is 5684)."""
        return self._hostinfo

    @property
    def uri_base(self) -> str:
        return "coaps://" + self._hostinfo

    @property
    def hostinfo_local(self) -> str:
        """The local address and port of this session's socket.

        Raises :class:`aiocoap.error.AnonymousHost` while it has none."""
        sockname = self._transport.get_extra_info("sockname") if self._transport is not None else None
        if not sockname:
            raise error.AnonymousHost("The DTLS session has no socket (yet)")
        return coaps_hostinfo(sockname)

    @property
    def uri_base_local(self) -> str:
        return "coaps://" + self.hostinfo_local

    @property
    def blockwise_key(self) -> Hashable:
        return (self._host, self._port, self._pskId, self._psk)

    # --- opening ---------------------------------------------------------------------

    async def _wait_established(self) -> "DTLSClientConnection":
        return await asyncio.shield(self._established)

    async def _open(self) -> None:
        """Resolve the host, open the socket and send the ClientHello."""
        transport = self.coaptransport
        loop = transport._loop
        try:
            sockaddr = await resolve(loop, self._host, self._port, 0)
            family = socket.AF_INET6 if len(sockaddr) == 4 else socket.AF_INET

            def make_socket() -> socket.socket:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    sock.setblocking(False)
                    sock.connect(sockaddr)
                except BaseException:
                    sock.close()
                    raise
                return sock

            self._transport, self._protocol = await open_datagram_endpoint(
                loop, self.SingleConnection.factory(self), make_socket
            )
            transport._protocols.add(self._protocol)
            if self._closed:
                self._transport.close()
                return
            self._sendto = self._transport.sendto
            # tinydtls wants an IPv6 literal for its session; it is not used
            # for sending (the socket is connected)
            v6 = sockaddr[0] if family == socket.AF_INET6 else "::ffff:" + sockaddr[0]
            self._dtls = new_dtls_context(
                read=self._read, write=self._write, event=self._event,
                pskId=self._pskId, pskStore={self._pskId: self._psk},
            )
            self.log.debug("Starting DTLS handshake with %s", self.uri_base)
            self._connection = self._dtls.connect(v6.partition("%")[0], self._port)
            if not self._connection:
                raise DTLSError(f"tinydtls could not start a handshake with {self.uri_base}")
            self._after_dtls_call()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if not isinstance(e, error.Error):
                wrapped = error.NetworkError(f"Can not open a DTLS session with {self.uri_base}: {e}")
                wrapped.__cause__ = e
                e = wrapped
            self._fail(e)

    # --- tinydtls callbacks (only ever called from within a call into tinydtls) -------
    #
    # They must not raise: tinydtls can not pass an exception on, and would
    # be left in the middle of what it was doing.

    def _read(self, sender: Any, data: bytes) -> int:
        self._inbox.append(data)
        return len(data)

    def _write(self, recipient: Any, data: bytes) -> int:
        sendto = self._sendto
        if sendto is not None:
            try:
                sendto(data)
            except OSError as exc:
                # (a pending ICMP error: nobody listens there any more)
                self.coaptransport._loop.call_soon(self._socket_error, exc)
        return len(data)

    def _event(self, level: int, code: int) -> None:
        try:
            self._note_event(level, code)
        except Exception:
            self.log.exception("Error handling DTLS event %d/%d", level, code)

    def _note_event(self, level: int, code: int) -> None:
        if level == LEVEL_NOALERT:
            if code == DTLS_EVENT_CONNECTED:
                self.coaptransport._established(self)
            elif code == DTLS_EVENT_RENEGOTIATE:
                self.log.debug("Peer %s renegotiates the DTLS session", self.uri_base)
            return
        if self._pending_close is not None:
            return
        if code == CODE_CLOSE_NOTIFY:
            self._pending_close = CloseNotifyReceived(f"The DTLS session with {self.uri_base} was closed by the peer")
        elif level == LEVEL_FATAL:
            hint = ""
            if self._session is not None and self._session.state is SessionState.HANDSHAKE:
                hint = " during the handshake (wrong PSK or identity?)"
            self._pending_close = FatalDTLSError(
                f"DTLS session with {self.uri_base} failed: {describe_event(level, code)}{hint}",
                level=level, code=code,
            )
        else:
            self.log.debug("DTLS %s from %s", describe_event(level, code), self.uri_base)

    def _after_dtls_call(self) -> None:
        """Act on what tinydtls reported during the call that just returned
        (the callbacks only take notes, so that nothing re-enters it)."""
        exc = self._pending_close
        if exc is not None:
            self._pending_close = None
            self.log.debug("%s", exc)
            self._fail(exc, notify=False)
            return
        session = self._session
        if session is not None and session.state is SessionState.HANDSHAKE and self._dtls is not None:
            self.coaptransport._set_retransmit(self, self._dtls.checkRetransmit())

    # --- datagrams -------------------------------------------------------------------

    def _datagram_received(self, data: bytes) -> None:
        dtls = self._dtls
        if dtls is None:
            return
        dtls.handleMessage(self._connection, data)
        inbox = self._inbox
        session = self._session
        if inbox:
            self._inbox = []
            transport = self.coaptransport
            if session is not None:
                transport._core.received(session, transport._clock())
            dispatch = transport._message_manager.dispatch_datagram
            for plaintext in inbox:
                dispatch(plaintext, self)
        if self._pending_close is not None or (session is not None and session.state is SessionState.HANDSHAKE):
            self._after_dtls_call()

    def send(self, message: bytes) -> None:
        """Encrypt an encoded message and send it over the session (dropped
        if the session is not established any more)."""
        transport = self.coaptransport
        session = self._session
        if self._connection is None or session is None or session.state is not SessionState.ESTABLISHED:
            self.log.debug("Not sending on DTLS session %r: it is not established", self)
            return
        if self._dtls.write(self._connection, message) < 0:
            transport._too_large(self, len(message))
            return
        deadline = transport._core.sent(session, transport._clock(), expects_answer(message))
        if deadline is not None:
            transport._schedule(deadline)

    # --- closing ---------------------------------------------------------------------

    def shutdown(self) -> None:
        """Close the session (with a close_notify alert to the peer); what
        still waits on it fails with :class:`SessionClosed`."""
        self._fail(SessionClosed(f"The DTLS session with {self.uri_base} was shut down"))

    def _fail(self, exc: Exception, *, notify: bool = True, dispatch: bool = True) -> None:
        """End the session: tell the table, tear down tinydtls and the
        socket, fail the handshake waiters, and (if ``dispatch``) every
        exchange on the session with ``exc``. ``notify`` sends the peer a
        close_notify if the session was established."""
        if self._closed:
            return
        self._closed = True
        self.session_ended = True
        transport = self.coaptransport
        session = self._session
        was_established = self._is_established
        if session is not None:
            transport._core.end(session)
        transport._set_retransmit(self, 0)
        if self._opening is not None and not self._opening.done() and self._opening is not asyncio.current_task():
            self._opening.cancel()
        dtls, connection = self._dtls, self._connection
        self._dtls = self._connection = None
        if connection is not None:
            if notify and was_established:
                dtls.close(connection)
            dtls.resetPeer(connection)
        # (dropping the context and the connection here, with the socket
        # still open, lets tinydtls' destructors write what they write)
        del dtls, connection
        self._sendto = None
        if self._transport is not None:
            self._transport.close()
        if not self._established.done():
            self._established.set_exception(exc)
        if was_established and dispatch:
            transport._message_manager.dispatch_error(exc, self)

    class SingleConnection(RecvmsgDatagramProtocol):
        """The asyncio protocol of a session's socket."""

        parent: "DTLSClientConnection"
        """The DTLSClientConnection the socket belongs to."""

        transport: asyncio.DatagramTransport

        @classmethod
        def factory(cls, parent: "DTLSClientConnection") -> Callable[[], "DTLSClientConnection.SingleConnection"]:
            return functools.partial(cls, parent)

        def __init__(self, parent: "DTLSClientConnection"):
            self.parent = parent
            self.closed = parent.coaptransport._loop.create_future()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.DatagramTransport, transport)

        def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
            self.parent._datagram_received(data)

        def datagram_msg_received(
            self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, address: tuple[Any, ...]
        ) -> None:
            self.parent._datagram_received(data)

        def error_received(self, exc: Exception) -> None:
            # (asyncio calls this from within sendto, which runs inside
            # tinydtls: act on it later)
            self.parent.coaptransport._loop.call_soon(self.parent._socket_error, exc)

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self.parent.coaptransport._protocols.discard(self)
            if not self.closed.done():
                self.closed.set_result(None)

    def _socket_error(self, exc: Exception) -> None:
        if self._closed:
            return
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        wrapped = error.NetworkError(f"DTLS session with {self.uri_base} failed: {reason}")
        wrapped.__cause__ = exc
        self.log.debug("%s", wrapped)
        self._fail(wrapped, notify=False)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class MessageInterfaceTinyDTLS(DTLSSessionDriver, interfaces.MessageInterface):
    """The ``tinydtls`` transport: see the module documentation. Create it
    with :meth:`create_client_transport_endpoint`."""

    def __init__(self, ctx: interfaces.MessageManager, log: logging.Logger, loop: asyncio.AbstractEventLoop) -> None:
        self._message_manager = ctx
        self.log = log
        self.loop = loop
        self._start_driver(loop, SessionTable(close=self._session_closed, log=log, server=False))
        self._protocols: "set[DTLSClientConnection.SingleConnection]" = set()
        self._retransmitting: "set[DTLSClientConnection]" = set()
        self._warn = RateLimitedWarning(log)

    @classmethod
    async def create_client_transport_endpoint(
        cls, ctx: interfaces.MessageManager, log: logging.Logger, loop: asyncio.AbstractEventLoop
    ) -> "MessageInterfaceTinyDTLS":
        """Create the transport; sessions are opened when requests need
        them."""
        from DTLSSocket import dtls  # noqa: F401 (fail early if it is missing)

        return cls(ctx, log, loop)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} with {len(self._core)} session(s)>"

    # --- MessageInterface ------------------------------------------------------------------

    def recognize_remote(self, remote: interfaces.EndpointAddress) -> bool:
        return isinstance(remote, DTLSClientConnection) and remote.coaptransport is self and not remote.session_ended

    async def determine_remote(self, request: Message) -> Optional[DTLSClientConnection]:
        """The session (established, or failing with the reason) for a
        ``coaps://`` request; None for other schemes."""
        remote = request.remote
        if not isinstance(remote, UndecidedRemote):
            if remote is not None and self.recognize_remote(remote):
                return cast(DTLSClientConnection, remote)
            return None
        if remote.scheme != "coaps":
            return None
        if self._shut_down:
            raise error.LibraryShutdown("The DTLS transport was shut down")
        host, port = split_hostinfo(remote.hostinfo, COAPS_PORT)
        identity, psk = self._credentials_for(request)
        per_uri = self._credentials_differ_by_path(remote)
        key = (host, port, identity, psk)
        session = self._core.find(key)
        if session is None:
            connection = DTLSClientConnection(host, port, identity, psk, self)
            connection._session = self._core.start(key, self._clock(), connection)
            connection._opening = self._loop.create_task(connection._open(), name="DTLS session opening")
            self._schedule()
        else:
            connection = session.handle
        connection.route_per_uri = per_uri
        return await connection._wait_established()

    def _credentials_differ_by_path(self, remote: UndecidedRemote) -> bool:
        credentials = getattr(self._message_manager, "client_credentials", None) or ()
        prefix = f"{remote.scheme}://{remote.hostinfo}/"
        return any(pattern.startswith(prefix) and pattern != prefix + "*" for pattern in credentials)

    def _credentials_for(self, request: Message) -> "tuple[bytes, bytes]":
        credentials = getattr(self._message_manager, "client_credentials", None)
        try:
            uri = request.get_request_uri()
        except ValueError as e:
            raise CredentialsMissingError(f"No DTLS credentials can be found for this request: {e}") from None
        found = credentials.find_dtls_client_psk(uri) if credentials is not None else None
        if found is None:
            raise CredentialsMissingError(
                f"No DTLS credentials configured for {uri} (client credentials need an entry like "
                '{"coaps://host/*": {"dtls": {"psk": ..., "client-identity": ...}}})'
            )
        identity, psk = found
        if len(psk) > MAX_PSK_LENGTH or len(identity) > MAX_IDENTITY_LENGTH or not psk:
            raise DTLSError(
                f"The DTLS credentials for {uri} can not be used: tinydtls takes keys of 1 to "
                f"{MAX_PSK_LENGTH} bytes and identities of up to {MAX_IDENTITY_LENGTH} bytes "
                f"(this key has {len(psk)}, this identity {len(identity)})"
            )
        return identity, psk

    def send(self, message: Message) -> None:
        """Send a message over its remote's session."""
        cast(DTLSClientConnection, message.remote).send(message.encode())

    def send_bytes(self, data: bytes, remote: DTLSClientConnection) -> None:
        """Send an encoded message over the remote's session."""
        remote.send(data)

    # --- sessions ------------------------------------------------------------------------

    def _established(self, connection: DTLSClientConnection) -> None:
        session = connection._session
        if session is None or connection._closed:
            return
        self._core.established(session, self._clock())
        connection._is_established = True
        self._set_retransmit(connection, 0)
        self.log.debug("DTLS session with %s established", connection.uri_base)
        if not connection._established.done():
            connection._established.set_result(connection)
        self._schedule()

    def _session_closed(self, session: Session, exc: Exception) -> None:
        session.handle._fail(exc)

    def _too_large(self, connection: DTLSClientConnection, size: int) -> None:
        self._warn(
            self._clock(),
            "Not sending a %d byte message to %s: a DTLS record carries at most %d bytes",
            size, connection.uri_base, MAX_PLAINTEXT,
        )

    # --- tinydtls' retransmissions ---------------------------------------------------------

    def _set_retransmit(self, connection: DTLSClientConnection, ticks: int) -> None:
        at = loop_time_of_ticks(ticks, self._clock()) if not connection._closed else None
        connection._retransmit_at = at
        if at is None:
            self._retransmitting.discard(connection)
            return
        self._retransmitting.add(connection)
        self._schedule(at)

    def _retransmission_deadline(self) -> Optional[float]:
        return min((c._retransmit_at for c in self._retransmitting if c._retransmit_at is not None), default=None)

    def _retransmit(self, now: float) -> None:
        for connection in [c for c in self._retransmitting if c._retransmit_at is not None and c._retransmit_at <= now]:
            if connection._dtls is not None:
                self._set_retransmit(connection, connection._dtls.checkRetransmit())

    # --- shutdown ------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Close every session (with close_notify) and socket; fail what
        still waits for a handshake with :class:`aiocoap.error.LibraryShutdown`."""
        if self._shut_down:
            return
        self._stop_driver()
        opening = []
        for session in list(self._core):
            connection = session.handle
            if connection._opening is not None and not connection._opening.done():
                opening.append(connection._opening)
            connection._fail(error.LibraryShutdown("The DTLS transport was shut down"), dispatch=False)
        if opening:
            await asyncio.gather(*opening, return_exceptions=True)
        protocols = list(self._protocols)
        for protocol in protocols:
            protocol.transport.close()
        if protocols:
            await asyncio.gather(*(p.closed for p in protocols))
        self._retransmitting.clear()


async def load(entry: "TransportEntry", setup: "TransportSetup") -> None:
    """Attach the ``tinydtls`` client transport to a context (see
    :data:`aiocoap.transports.TRANSPORTS`)."""
    log, loop = setup.log, setup.loop
    await setup.add_message_interface(
        lambda mm: MessageInterfaceTinyDTLS.create_client_transport_endpoint(mm, log, loop)
    )
