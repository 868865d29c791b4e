"""What the asyncio adapters of the RFC 8323 session share: CoAP over TCP
and TLS (:mod:`aiocoap.transports.tcp`) and over WebSockets
(:mod:`aiocoap.transports.ws`) move their bytes differently, but drive
their :class:`~aiocoap.transports.rfc8323session.RFC8323Session` the same
way.

* :class:`SessionDriver` is the base of their connection objects (each the
  asyncio protocol of its socket and the remote of its messages): one
  :class:`~aiocoap.util.asyncio.timer.DeadlineTimer` kept at the session's
  deadline, sending through the session (reviving a closed client
  connection), the future a client waits on until the peer's CSM arrived,
  the write backlog the session holds against its limit, and when the
  connection became idle.
* :class:`DriverInterface` is the base of their token interfaces: sending
  through the connection a message's remote names, keeping the set of
  connections with a socket, and waiting on shutdown until every socket
  is closed.
* :class:`HoldOffs` remembers the peers that asked (in a Release) not to
  be contacted for a while, bounded in number.
* :func:`idle_victim` picks the connection to close when a client pool is
  full.
* :func:`client_ssl_context` finds the TLS settings the client
  credentials give for a request (coaps+tcp, coaps+ws).

The two talk to each other only through the methods each documents for
the other (its "for the interface" / "for the connections" sections), not
through private attributes: the interface starts, awaits, fails and closes
a connection; a connection tells its interface when it opened, closed,
was released or buffers part of a message, and asks it to reconnect.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from typing import Any, Callable, Coroutine, Generic, Hashable, Iterable, Optional, TypeVar, cast

from .. import error, interfaces
from ..message import Message
from ..util import hostportjoin
from ..util.asyncio.timer import DeadlineTimer
from . import rfc8323common as rfc
from .connectiontable import longest_idle
from .rfc8323session import CLOSED, OPEN, Framer, PeerLog, RFC8323Session, SessionState, SessionTuning

__all__ = ["SessionDriver", "DriverInterface", "HoldOffs", "idle_victim", "strip_mapped", "client_ssl_context"]

Monitor = Callable[[Exception], None]
SockAddr = tuple[Any, ...]
Driver = TypeVar("Driver", bound="SessionDriver")


def strip_mapped(host: str) -> str:
    """An IPv4 address as itself rather than in its IPv4-mapped IPv6 form.

    >>> strip_mapped("::ffff:127.0.0.1"), strip_mapped("::1")
    ('127.0.0.1', '::1')
    """
    return host[7:] if host.startswith("::ffff:") and "." in host else host


class SessionDriver(rfc.RFC8323Remote):
    """The session-driving half of an RFC 8323 connection object.

    The attributes it keeps for its subclass (set up by ``__init__``):
    ``loop``, ``log``, ``_clock`` (the loop's clock), ``_timer`` (a
    :class:`DeadlineTimer` calling the subclass's ``_on_timer``),
    ``_transport`` (the asyncio transport while connected), ``_peername``
    / ``_sockname`` (the socket's addresses, None before connecting),
    ``_paused`` (asyncio paused writing), ``_out_bytes`` (bytes written but
    not yet handed to the transport, which the subclass counts),
    ``_flush_handle`` (the subclass's pending write), ``_ready`` (a future
    while a client connection is being set up) and ``_connect_task``. The
    subclass keeps its session in ``_session`` and provides
    :meth:`_new_session`, :meth:`_revive`, :meth:`close` and
    :meth:`close_for_shutdown`. It names this class before
    :class:`asyncio.Protocol` among its bases, so that the flow control
    methods here are the ones asyncio calls."""

    log: logging.Logger
    _peername: Optional[SockAddr]
    _sockname: Optional[SockAddr]
    _clock: Callable[[], float]
    _timer: DeadlineTimer
    _transport: Optional[asyncio.Transport]
    _paused: bool
    _out_bytes: int
    _ready: Optional["asyncio.Future[None]"]

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        log: logging.Logger,
        clock: Callable[[], float],
        *,
        local_is_server: bool,
    ) -> None:
        rfc.RFC8323Remote.__init__(self, local_is_server=local_is_server)
        self.loop = loop
        self.log = log
        self._clock = clock
        self._transport = None
        self._peername = None
        self._sockname = None
        self._paused = False
        self._out_bytes = 0
        self._flush_handle: Optional[asyncio.Handle] = None
        self._ready = None
        self._connect_task: Optional["asyncio.Task[None]"] = None
        self._timer = DeadlineTimer(loop, self._on_timer)
        # what the ends are called where the socket addresses are not the
        # names to use (the authority a client connects to, ...)
        self._remote_hostinfo: Optional[str] = None
        self._local_hostinfo: Optional[str] = None

    def _on_timer(self) -> None:
        raise NotImplementedError

    @property
    def state(self) -> SessionState:
        """The state of the current session (CLOSED when there is none)."""
        session = self._session
        return CLOSED if session is None else session.state

    @property
    def peername(self) -> Optional[SockAddr]:
        """The peer's socket address (None before the socket is connected)."""
        return self._peername

    # --- for the interface -------------------------------------------------------------

    def start_connecting(self, connect: Coroutine[Any, Any, None], name: str) -> "asyncio.Task[None]":
        """Set this (client side) connection up again: a new session, and
        ``connect`` (which opens the socket with this object as its
        protocol) run as the task returned, named ``name``. Until the peer's
        CSM arrives, :meth:`wait_ready` waits; :meth:`close_for_shutdown`
        cancels the task."""
        self._new_session()
        self._ready = self.loop.create_future()
        task = self.loop.create_task(connect, name=name)
        self._connect_task = task
        task.add_done_callback(self._connect_done)
        return task

    def _connect_done(self, task: "asyncio.Task[None]") -> None:
        if self._connect_task is task:
            self._connect_task = None

    async def wait_ready(self) -> None:
        """Wait until the connection :meth:`start_connecting` began is open
        (the peer's CSM arrived); raises what made it fail
        (:meth:`connecting_failed`, or the connection ending first)."""
        if self.state is OPEN:
            return
        ready = self._ready
        assert ready is not None, "wait_ready() on a connection that is not being set up"
        await asyncio.shield(ready)

    def connecting_failed(self, exc: Exception) -> None:
        """Opening the socket for :meth:`start_connecting` failed with
        ``exc``: the session ends (what was queued on it fails) and
        :meth:`wait_ready` raises ``exc``."""
        session = self._session
        if session is not None:
            session.connection_lost(exc)
        self._fail_ready(exc)

    def close(self, reason: Optional[Exception] = None) -> None:
        """End the connection from our side, now, flushing what was
        written: requests pending on it fail with ``reason`` (a
        :class:`aiocoap.error.NetworkError` saying it was closed if None).
        A client side connection connects again when a request is sent to
        it."""
        raise NotImplementedError

    def close_for_shutdown(self) -> None:
        """End the connection because its transport shuts down: a connect
        in progress is cancelled, and what waits on the connection fails
        with :class:`aiocoap.error.LibraryShutdown`."""
        raise NotImplementedError

    # --- naming ------------------------------------------------------------------------

    @property
    def _uri_default_port(self) -> int:
        """The port a URI of this connection's scheme means when it names
        none."""
        raise NotImplementedError

    def _format(self, sockaddr: Optional[SockAddr]) -> str:
        """A socket address as hostinfo (default port left out)."""
        if not sockaddr:
            return ""
        port = sockaddr[1]
        return hostportjoin(strip_mapped(sockaddr[0]), None if port == self._uri_default_port else port)

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
        session = self._session
        state = self.state.name.lower()
        if session is not None and session.released and session.state is not CLOSED:
            state += ", released"
        return state

    def __repr__(self) -> str:
        if self._local_is_server:
            where = f"from {self.scheme}://{self.hostinfo} to {self.hostinfo_local}"
        else:
            where = f"to {self.scheme}://{self.hostinfo}"
        return f"<{type(self).__name__} {where}, {self._state_text()}>"

    # --- the session -------------------------------------------------------------------

    def _new_session(self) -> RFC8323Session:
        """Start a new session (with :meth:`_open_session`)."""
        raise NotImplementedError

    def _open_session(
        self,
        framer: Framer,
        write: Callable[[bytes], None],
        interface: "DriverInterface[Any]",
        on_close: Callable[[Exception, bool], None],
    ) -> RFC8323Session:
        """A new session for this connection (kept in ``_session``), with
        the interface's tuning: requests go to its token manager as having
        come through ``interface``, a client side one closes when idle;
        lines about the peer go to the interface's
        :attr:`DriverInterface.peer_log`. The subclass provides
        ``_session_released(hold_off)``."""
        tman = interface.tokenmanager
        self._session = RFC8323Session(
            framer=framer,
            write=write,
            backlog=self._backlog,
            deliver_request=functools.partial(tman.process_request, ti=interface),
            deliver_response=tman.process_response,
            remote=self,
            log=self.log,
            tuning=interface.tuning,
            idle_close=not self._local_is_server,
            on_ready=self._session_ready,
            on_release=self._session_released,
            on_close=on_close,
            peer_log=interface.peer_log,
        )
        return self._session

    def _session_released(self, hold_off: Optional[int]) -> None:
        raise NotImplementedError

    # --- the timer -------------------------------------------------------------------

    def _rearm(self, session: RFC8323Session) -> None:
        """Move the timer earlier if the session added an earlier deadline
        (callers check ``session.added_deadline`` first: mostly there is
        none)."""
        self._timer.arm_before(session.take_added_deadline())

    def _drive_timer(self) -> None:
        """Let the session do what is due, and re-arm the timer at its next
        deadline (the ``_on_timer`` of a connection with nothing else to
        time)."""
        session = self._session
        if session is None:
            return
        session.handle_timer(self._clock())
        session.take_added_deadline()  # superseded by the full computation
        if self._session is session:
            self._timer.set(session.next_deadline())

    # --- session callbacks -------------------------------------------------------------

    def _session_ready(self) -> None:
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    def _fail_ready(self, exc: Exception) -> None:
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_exception(exc)
            # Waiters retrieve it; an unawaited failure is not worth a log line.
            ready.exception()

    # --- sending -----------------------------------------------------------------------

    def _revive(self, monitor: Optional[Monitor]) -> bool:
        """A request is to be sent on this closed connection: start a new
        session and connect again if this side can (True), else tell
        ``monitor`` why not (False)."""
        raise NotImplementedError

    def _send(self, message: Message, monitor: Optional[Monitor]) -> Optional[Callable[[], None]]:
        """Send a message on this connection (the TokenInterface's
        send_message lands here); returns the stop callable of a request."""
        session = self._session
        if session is None or session.state is CLOSED:
            code = message.code
            if code is None or not code.is_request():
                self.log.debug("Dropping %r: connection %s is closed", message, rfc.describe_remote(self))
                return None
            if not self._revive(monitor):
                return None
            session = self._session
            assert session is not None
        tracked = session.send(message, self._clock(), monitor)
        if session.added_deadline is not None:
            self._rearm(session)
        if tracked:
            return functools.partial(self._request_done, session, message.token)
        return None

    def _request_done(self, session: RFC8323Session, token: bytes) -> None:
        session.request_done(token, self._clock())
        if session.added_deadline is not None and session is self._session:
            self._rearm(session)

    def _no_response(self, token: bytes) -> None:
        session = self._session
        if session is not None:
            session.no_response_for(token, self._clock())
            if session.added_deadline is not None:
                self._rearm(session)

    def _backlog(self) -> int:
        """What the session holds against its write buffer limit: bytes not
        yet handed to the transport, and the transport's buffer while the
        peer makes asyncio pause writing."""
        if self._paused and self._transport is not None:
            return self._out_bytes + self._transport.get_write_buffer_size()
        return self._out_bytes

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    # --- pooling -----------------------------------------------------------------------

    def idle_rank(self) -> Optional[tuple[float, int]]:
        """Since when the connection is open with nothing pending, as the
        session's :attr:`~.RFC8323Session.idle_rank` (None if it is not
        idle)."""
        session = self._session
        if session is None or session.state is not OPEN or not session.is_idle:
            return None
        return session.idle_rank


class DriverInterface(interfaces.TokenInterface, Generic[Driver]):
    """The token interface side of an RFC 8323 transport, whose
    connections are ``Driver`` objects.

    A subclass keeps ``loop``, ``log``, ``clock``, ``tokenmanager``,
    ``tuning``, ``_connections`` (the connections with a socket, kept by
    :meth:`connection_opened` and :meth:`connection_closed`), ``_closers``
    (sockets finishing their close after their connection ended, kept by
    :meth:`closing_started` and :meth:`closing_done`) and ``_drained``
    (None)."""

    loop: asyncio.AbstractEventLoop
    log: logging.Logger
    clock: Callable[[], float]
    """The loop's clock, the ``now`` of the connections' sessions."""
    tokenmanager: interfaces.TokenManager
    """Where the connections' sessions deliver what arrives, and errors
    of a connection are dispatched."""
    tuning: SessionTuning
    _connections: set[Driver]
    _closers: set[asyncio.BaseProtocol]
    _drained: Optional["asyncio.Future[None]"]
    _peer_log: Optional[PeerLog] = None

    @property
    def peer_log(self) -> PeerLog:
        """The rate-limited log lines about peers, shared by all
        connections of this interface (made on first use)."""
        if self._peer_log is None:
            self._peer_log = PeerLog(self.log)
        return self._peer_log

    def send_message(
        self, message: Message, messageerror_monitor: Optional[Monitor] = None
    ) -> Optional[Callable[[], None]]:
        return cast(SessionDriver, message.remote)._send(message, messageerror_monitor)

    def no_response_for(self, remote: object, token: bytes) -> None:
        """The token manager's notice that a request will not be answered
        (No-Response); it no longer holds back custody Pongs."""
        if isinstance(remote, SessionDriver):
            remote._no_response(token)

    # --- for the connections -----------------------------------------------------------

    def connection_opened(self, connection: Driver) -> None:
        """``connection`` has a socket now."""
        self._connections.add(connection)

    def connection_closed(self, connection: Driver) -> None:
        """``connection`` has no socket any more (what is left of a socket
        we closed is a closer's, see :meth:`closing_started`)."""
        self._connections.discard(connection)
        self._check_drained()

    def connection_released(self, connection: Driver, hold_off: Optional[int]) -> None:
        """``connection`` takes no new requests (a Release of the peer, with
        the seconds of its Hold-Off if it gave one, or an idle client
        connection closing)."""

    def buffered_changed(self, connection: Driver, nbytes: int) -> None:
        """``connection`` holds ``nbytes`` of incomplete messages (told
        when that changes and on the way back to 0)."""

    def revive(self, connection: Driver, monitor: Optional[Monitor]) -> bool:
        """A request is to be sent on ``connection``, which is closed:
        connect it again (:meth:`SessionDriver.start_connecting`) and return
        True if this side can, else tell ``monitor`` why not and return
        False (as here, where connections are accepted ones)."""
        if monitor is not None:
            monitor(error.NetworkError(f"Connection {rfc.describe_remote(connection)} is closed"))
        return False

    def closing_started(self, closer: asyncio.BaseProtocol) -> None:
        """``closer`` took over a socket to close it; shutdown waits until
        :meth:`closing_done`."""
        self._closers.add(closer)

    def closing_done(self, closer: asyncio.BaseProtocol) -> None:
        """The socket ``closer`` closed is gone."""
        self._closers.discard(closer)
        self._check_drained()

    def _check_drained(self) -> None:
        drained = self._drained
        if drained is not None and not self._connections and not self._closers and not drained.done():
            drained.set_result(None)

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


def idle_victim(connections: Iterable[Driver]) -> Optional[Driver]:
    """The connection that has been idle the longest (None if none is
    idle): the one a full client pool closes to make room."""
    return longest_idle(connections, lambda connection: connection.idle_rank())


class HoldOffs:
    """Peers that asked not to be contacted for a while (the Hold-Off of a
    Release, RFC 8323 §5.5), by pool key; at most ``limit`` of them are
    remembered beyond the expired ones."""

    def __init__(self, clock: Callable[[], float], limit: int = 1024) -> None:
        self._clock = clock
        self._until: dict[Hashable, float] = {}
        self.limit = limit

    def __len__(self) -> int:
        return len(self._until)

    def add(self, key: Hashable, seconds: float) -> None:
        now = self._clock()
        if len(self._until) >= self.limit:
            self._until = {k: v for k, v in self._until.items() if v > now}
            if len(self._until) >= self.limit:
                self._until.pop(min(self._until, key=self._until.__getitem__))
        self._until[key] = now + seconds

    def check(self, key: Hashable, name: str) -> None:
        """Raise :class:`aiocoap.error.NetworkError` if the peer ``key``
        (called ``name`` in the message) is still to be left alone."""
        until = self._until.get(key)
        if until is None:
            return
        remaining = until - self._clock()
        if remaining <= 0:
            del self._until[key]
            return
        raise error.NetworkError(f"{name} asked not to be contacted for another {remaining:.0f} s")


def client_ssl_context(
    credentials: Any, message: Optional[Message], fallback_uri: str, alpn: str
) -> Optional[ssl.SSLContext]:
    """The :class:`ssl.SSLContext` that ``credentials`` (a client
    credentials map, or None) give for ``message``'s URI (``fallback_uri``
    where there is no message, or its URI can not be told), offering the
    ALPN protocol ``alpn``; None if they give none (the caller uses the
    system's defaults)."""
    lookup = getattr(credentials, "ssl_client_context", None)
    if lookup is None:
        return None
    uri = None
    if message is not None:
        try:
            uri = message.get_request_uri()
        except (ValueError, TypeError):
            uri = None
    context: Optional[ssl.SSLContext] = lookup(uri or fallback_uri)
    if context is not None:
        context.set_alpn_protocols([alpn])
    return context
