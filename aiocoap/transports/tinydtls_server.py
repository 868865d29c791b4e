"""CoAP over DTLS (``coaps://``), server side, on tinydtls.

This module implements the MessageInterface of transport name
``tinydtls_server``: it accepts DTLS 1.2 sessions with pre-shared keys from
clients listed in the server credentials, and hands the decrypted messages
to the message layer, so ``coaps://`` requests are served by the same Site
as plain ones. It is enabled by credentials, not by an environment
variable: a server context whose ``server_credentials`` contain DTLS
entries listens for DTLS (with an explicit ``bind=(host, port)`` on the
port after the UDP one, else on 5684). A client entry is labelled with a
leading colon and found by the identity the client presents::

    {":client": {"dtls": {"psk": {"ascii": "secretPSK"},
                          "client-identity": {"ascii": "client_Identity"}}}}

A request that came over such a session has ``request.remote.authenticated_claims``
``== (":client",)`` (the label); over plain CoAP it is empty.

Rules (the session bookkeeping is :class:`~aiocoap.transports.dtls_sessions.SessionTable`'s,
this module moves datagrams):

* Nothing is kept for a client before it answered the cookie exchange
  (HelloVerifyRequest, RFC 6347 §4.2.1): a ClientHello without a valid
  cookie is answered from tinydtls' stateless cookie secret, anything else
  from an unknown address is dropped without being parsed further. A
  flood of ClientHellos from any number of source addresses costs one
  answer datagram each and no memory.
* At most :attr:`DTLSTuning.max_server_handshakes` handshakes and
  :attr:`DTLSTuning.max_server_sessions` sessions exist at a time; a new
  one beyond that closes the oldest handshake, or the session idle for the
  longest time. Handshakes not completed within
  :attr:`DTLSTuning.handshake_timeout` are dropped, sessions idle for
  :attr:`DTLSTuning.idle_timeout` are closed (with close_notify). Exchanges
  still running on a closed session (observations) end with the reason.
* A client that starts a new handshake from the address of an existing
  session (it restarted) gets a new session and a new remote; exchanges of
  the old one end (RFC 7252 §9.1.2).
* The server does not send requests of its own over DTLS (it has no
  session to send them on until a client opens one).
* Malformed, truncated, replayed or forged records are dropped (tinydtls
  checks them); a peer can make the server log nothing above debug: the
  drops are counted and summarized at info level at most once a minute.

Log levels: debug for sessions and for every dropped datagram; info for
the summary of dropped datagrams; warning for caps reached and unusable
credentials (at most once a minute).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any, Callable, Hashable, NoReturn, Optional, cast

from .. import error, interfaces
from ..credentials import DTLS, CredentialsMap
from ..message import Message, UndecidedRemote
from ..numbers.constants import COAPS_PORT, MAX_REGULAR_BLOCK_SIZE_EXP
from ..util import hostportjoin
from ..util.asyncio.recvmsg import RecvmsgDatagramProtocol
from .dtls_sessions import (
    CONTENT_HANDSHAKE,
    HANDSHAKE_CLIENT_HELLO,
    HANDSHAKE_SERVER_HELLO,
    CloseNotifyReceived,
    DTLSTuning,
    FatalDTLSError,
    Session,
    SessionClosed,
    SessionState,
    SessionTable,
    first_record,
)
from .simplesocketserver import MessageInterfaceSimpleServer
from .tinydtls import (
    CODE_CLOSE_NOTIFY,
    DTLS_CLOCK_OFFSET,
    DTLS_EVENT_CONNECT,
    DTLS_EVENT_CONNECTED,
    DTLS_TICKS_PER_SECOND,
    LEVEL_FATAL,
    LEVEL_NOALERT,
    MAX_IDENTITY_LENGTH,
    MAX_PLAINTEXT,
    MAX_PSK_LENGTH,
    DTLSSessionDriver,
    RateLimitedWarning,
    coaps_hostinfo,
    describe_event,
    loop_time_of_ticks,
    new_dtls_context,
    open_datagram_endpoint,
)

if TYPE_CHECKING:
    from . import TransportEntry, TransportSetup

__all__ = [
    "MessageInterfaceTinyDTLSServer", "GoingThroughMessageDecryption", "SecurityStore", "DTLSServerAddress",
    "COAPS_PORT", "CODE_CLOSE_NOTIFY", "DTLS_CLOCK_OFFSET", "DTLS_EVENT_CONNECT", "DTLS_EVENT_CONNECTED",
    "DTLS_TICKS_PER_SECOND", "LEVEL_FATAL", "LEVEL_NOALERT", "dtls_server_credentials",
]

MAX_CLIENT_HELLO = 1024
"""Datagrams from unknown addresses larger than this are not even shown to
tinydtls (a PSK ClientHello is about a hundred bytes)."""

_SUMMARY_INTERVAL = 60.0
_V4MAPPED = "::ffff:"


def dtls_server_credentials(server_credentials: Optional[CredentialsMap]) -> "dict[str, DTLS]":
    """The DTLS entries of ``server_credentials`` (by label) that a server
    accepts clients with."""
    if not server_credentials:
        return {}
    return {label: item for label, item in server_credentials.items() if isinstance(item, DTLS)}


class SecurityStore:
    """The pre-shared key store tinydtls asks during handshakes, over a
    server's credentials map: ``identity in store`` and
    ``store[identity]`` look the identity up with
    :meth:`aiocoap.credentials.CredentialsMap.find_dtls_psk`.

    The label of the entry found last is kept in :attr:`looked_up` (the
    transport assigns it to the session being handled: DTLSSocket does not
    say which session a lookup is for). Keys and identities longer than
    tinydtls takes are treated as absent."""

    def __init__(self, server_credentials: CredentialsMap) -> None:
        self._server_credentials = server_credentials
        #: (identity, label) of the last successful lookup, or None
        self.looked_up: Optional["tuple[bytes, str]"] = None

    def _find(self, identity: bytes) -> "tuple[bytes, str]":
        if len(identity) > MAX_IDENTITY_LENGTH:
            raise KeyError(identity)
        psk, label = self._server_credentials.find_dtls_psk(identity)
        if not psk or len(psk) > MAX_PSK_LENGTH:
            raise KeyError(identity)
        return psk, label

    def keys(self) -> "SecurityStore":
        return self

    def __contains__(self, identity: bytes) -> bool:
        try:
            self._find(identity)
        except (KeyError, TypeError):
            return False
        return True

    def __getitem__(self, identity: bytes) -> bytes:
        psk, label = self._find(identity)
        self.looked_up = (identity, label)
        return psk


class DTLSServerAddress(interfaces.EndpointAddress):
    """A client's DTLS session (one epoch of it) at the server: the remote
    of the requests that came over it. Two addresses are equal only if they
    are the same object."""

    scheme = "coaps"
    is_multicast = False
    is_multicast_locally = False
    maximum_block_size_exp = MAX_REGULAR_BLOCK_SIZE_EXP

    session_ended = False
    """True once the session is over; nothing is sent to it any more."""

    def __init__(self, sockaddr: tuple[Any, ...], interface: "MessageInterfaceTinyDTLSServer", dtls_session: Any):
        self.sockaddr = sockaddr
        self._interface = interface
        self._dtls_session = dtls_session
        self._session: Optional[Session] = None
        # how tinydtls names the peer: (IPv6 host, port)
        self._tinydtls_name = (dtls_session.addr, dtls_session.port)
        self._established = False
        # (identity, label) the handshake looked up
        self._looked_up: Optional["tuple[bytes, str]"] = None
        self.authenticated_claims: tuple[Any, ...] = ()
        #: the PSK identity the client authenticated with (once established)
        self.psk_identity: Optional[bytes] = None

    def __repr__(self) -> str:
        epoch = f" epoch {self._session.epoch}" if self._session is not None else ""
        return f"<{type(self).__name__} {self.hostinfo}{epoch} claims {self.authenticated_claims!r}>"

    def send_datagram(self, data: bytes) -> None:
        self._interface._engine.send(self, data)

    @property
    def hostinfo(self) -> str:
        return coaps_hostinfo(self.sockaddr)

    @property
    def uri_base(self) -> str:
        return "coaps://" + self.hostinfo

    @property
    def hostinfo_local(self) -> str:
        """The address the server is bound to."""
        return coaps_hostinfo(self._interface.sockname)

    @property
    def uri_base_local(self) -> str:
        return "coaps://" + self.hostinfo_local

    @property
    def blockwise_key(self) -> Hashable:
        return (self.sockaddr, self.authenticated_claims)


class GoingThroughMessageDecryption(DTLSSessionDriver):
    """Puts the datagrams of a :class:`MessageInterfaceTinyDTLSServer`
    through tinydtls: incoming ones are decrypted and their plaintext goes
    to the interface's message manager, outgoing messages are encrypted for
    their session. Holds the tinydtls context (one for the whole server, so
    that the cookie exchange is stateless), the sessions and the timer."""

    def __init__(self, plaintext_interface: "MessageInterfaceTinyDTLSServer"):
        self._interface = plaintext_interface
        self._log = plaintext_interface.log
        self._mman = plaintext_interface.message_manager
        self._store = SecurityStore(plaintext_interface._server_credentials)
        self._start_driver(plaintext_interface.loop, SessionTable(close=self._session_closed, log=self._log, server=True))
        self._dtls: Any = new_dtls_context(
            read=self._read, write=self._write, event=self._event,
            pskId=b"server", pskStore=self._store,
        )
        self._find = self._core.find
        # the socket's transport.sendto, once connected
        self._sendto: Optional[Callable[[bytes, Any], None]] = None
        # where tinydtls' writes go while it handles a datagram of this peer
        self._current: Optional[tuple[Any, ...]] = None
        self._server_hello = False
        self._inbox: list[bytes] = []
        self._events: list[tuple[int, int]] = []
        # (IPv6 host, port) as tinydtls names peers -> socket address, for
        # the retransmissions of handshakes (written outside of any call
        # with a current peer)
        self._handshake_targets: dict[tuple[str, int], tuple[Any, ...]] = {}
        self._dtls_deadline: Optional[float] = None
        self._dropped = 0
        self._last_summary = -1e9
        self._warn = RateLimitedWarning(self._log)

    # --- tinydtls callbacks (only from within calls into tinydtls) ----------------------
    #
    # They must not raise: tinydtls can not pass an exception on, and would
    # be left in the middle of what it was doing.

    def _read(self, sender: Any, data: bytes) -> int:
        self._inbox.append(data)
        return len(data)

    def _write(self, recipient: Any, data: bytes) -> int:
        sendto = self._sendto
        target = self._current
        if target is None:
            target = self._handshake_targets.get(recipient)
        if target is None or sendto is None:
            return len(data)
        if data[0] == CONTENT_HANDSHAKE and first_record(data) == (CONTENT_HANDSHAKE, 0, HANDSHAKE_SERVER_HELLO):
            self._server_hello = True
        try:
            sendto(data, target)
        except OSError as exc:
            self._log.debug("Can not send to %s: %s", target, exc)
        return len(data)

    def _event(self, level: int, code: int) -> None:
        self._events.append((level, code))

    # --- incoming -----------------------------------------------------------------------

    def datagram_received(self, data: bytes, sockaddr: tuple[Any, ...]) -> None:
        session = self._find(sockaddr)
        if session is None:
            self._from_unknown_peer(data, sockaddr)
            return
        address = session.handle
        self._current = sockaddr
        self._dtls.handleMessage(address._dtls_session, data)
        self._current = None
        inbox = self._inbox
        if inbox:
            self._inbox = []
            self._core.received(session, self._clock())
            dispatch = self._mman.dispatch_datagram
            for plaintext in inbox:
                dispatch(plaintext, address)
        if self._events or self._server_hello or session.state is SessionState.HANDSHAKE:
            self._after_handling(session, data)

    def _from_unknown_peer(self, data: bytes, sockaddr: tuple[Any, ...]) -> None:
        record = first_record(data)
        if record is None or record[2] != HANDSHAKE_CLIENT_HELLO or len(data) > MAX_CLIENT_HELLO:
            self._drop(sockaddr, "not a ClientHello from an address without a session")
            return
        from DTLSSocket import dtls

        host = sockaddr[0]
        if len(sockaddr) == 2:
            host = _V4MAPPED + host
        dtls_session = dtls.Session(host.partition("%")[0], sockaddr[1], 0, sockaddr[3] if len(sockaddr) == 4 else 0)
        self._current = sockaddr
        self._dtls.handleMessage(dtls_session, data)
        self._current = None
        if self._server_hello:
            self._server_hello = False
            self._start_session(sockaddr, dtls_session)
        self._events.clear()
        self._inbox.clear()

    def _start_session(self, sockaddr: tuple[Any, ...], dtls_session: Any) -> Session:
        address = DTLSServerAddress(sockaddr, self._interface, dtls_session)
        address._session = session = self._core.start(sockaddr, self._clock(), address)
        self._handshake_targets[address._tinydtls_name] = sockaddr
        self._log.debug("DTLS handshake with %s started", address.hostinfo)
        self._update_dtls_deadline()
        self._schedule()
        return session

    def _after_handling(self, session: Session, data: bytes) -> None:
        """Act on what tinydtls reported while it handled a datagram of
        ``session``'s peer."""
        address: DTLSServerAddress = session.handle
        if self._server_hello:
            # The client started over from the same address: a new epoch.
            # (tinydtls replaced its peer already; only ours is ended.)
            self._server_hello = False
            self._events.clear()
            self._end(address, SessionClosed(
                f"The DTLS client at {address.hostinfo} started a new session"
            ), tinydtls=False)
            self._start_session(address.sockaddr, address._dtls_session)
            return
        if self._store.looked_up is not None:
            # (lookups happen while tinydtls handles the ClientKeyExchange of
            # this very session)
            address._looked_up, self._store.looked_up = self._store.looked_up, None
        events, self._events = self._events, []
        for level, code in events:
            if level == LEVEL_NOALERT:
                if code == DTLS_EVENT_CONNECTED:
                    self._established(address)
                continue
            if code == CODE_CLOSE_NOTIFY:
                self._end(address, CloseNotifyReceived(f"The DTLS client at {address.hostinfo} closed the session"))
                return
            if level == LEVEL_FATAL:
                self._end(address, FatalDTLSError(
                    f"DTLS session with {address.hostinfo} failed: {describe_event(level, code)}",
                    level=level, code=code,
                ))
                return
            self._log.debug("DTLS %s from %s", describe_event(level, code), address.hostinfo)
        if session.state is SessionState.HANDSHAKE:
            self._update_dtls_deadline()

    def _established(self, address: DTLSServerAddress) -> None:
        session = address._session
        if session is None or session.state is not SessionState.HANDSHAKE:
            return
        if address._looked_up is not None:
            address.psk_identity, label = address._looked_up
            address.authenticated_claims = (label,)
        address._established = True
        self._core.established(session, self._clock())
        self._handshake_targets.pop(address._tinydtls_name, None)
        self._log.debug("DTLS session with %s established (%s)", address.hostinfo, address.authenticated_claims)
        self._schedule()

    def _drop(self, sockaddr: tuple[Any, ...], why: str) -> None:
        self._log.debug("Dropping datagram from %s: %s", sockaddr, why)
        self._dropped += 1
        now = self._clock()
        if now - self._last_summary >= _SUMMARY_INTERVAL:
            if self._last_summary > -1e9:
                self._log.info("Dropped %d unusable DTLS datagrams in the last %.0f s", self._dropped, now - self._last_summary)
                self._dropped = 0
            self._last_summary = now

    # --- outgoing -----------------------------------------------------------------------

    def send(self, address: DTLSServerAddress, data: bytes) -> None:
        """Encrypt ``data`` for the address' session and send it (dropped
        if the session is not established any more)."""
        session = address._session
        if session is None or session.state is not SessionState.ESTABLISHED:
            self._log.debug("Not sending to %r: its DTLS session is not established", address)
            return
        self._current = address.sockaddr
        written = self._dtls.write(address._dtls_session, data)
        self._current = None
        now = self._clock()
        if written < 0:
            self._warn(now, "Not sending a %d byte message to %s: a DTLS record carries at most %d bytes",
                       len(data), address.hostinfo, MAX_PLAINTEXT)
            return
        self._core.sent(session, now, False)  # (a server does not watch for silence: no deadline)

    # --- sessions ending ----------------------------------------------------------------

    def _session_closed(self, session: Session, exc: Exception) -> None:
        self._teardown(session.handle, exc, tinydtls=True)

    def _end(self, address: DTLSServerAddress, exc: Exception, *, tinydtls: bool = True) -> None:
        session = address._session
        if session is not None and self._core.end(session):
            self._log.debug("%s", exc)
            self._teardown(address, exc, tinydtls=tinydtls)

    def _teardown(self, address: DTLSServerAddress, exc: Exception, *, tinydtls: bool, dispatch: bool = True) -> None:
        was_established = address._established
        address.session_ended = True
        self._handshake_targets.pop(address._tinydtls_name, None)
        if tinydtls and self._dtls is not None:
            self._current = address.sockaddr
            if was_established and not isinstance(exc, (CloseNotifyReceived, FatalDTLSError)):
                self._dtls.close(address._dtls_session)
            self._dtls.resetPeer(address._dtls_session)
            self._current = None
            self._events.clear()
            self._update_dtls_deadline()
        if dispatch and was_established:
            self._mman.dispatch_error(exc, address)

    # --- tinydtls' retransmissions ---------------------------------------------------------

    def _update_dtls_deadline(self) -> None:
        if self._dtls is None:
            return
        self._dtls_deadline = loop_time_of_ticks(self._dtls.checkRetransmit(), self._clock())
        if self._dtls_deadline is not None:
            self._schedule(self._dtls_deadline)

    def _retransmission_deadline(self) -> Optional[float]:
        return self._dtls_deadline

    def _retransmit(self, now: float) -> None:
        if self._dtls_deadline is not None and self._dtls_deadline <= now:
            self._update_dtls_deadline()

    # --- shutdown -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Close every session (close_notify to established ones) while the
        socket is still open, then drop the tinydtls context."""
        if self._shut_down:
            return
        self._stop_driver()
        for session in list(self._core):
            if self._core.end(session):
                self._teardown(session.handle, error.LibraryShutdown("The DTLS server was shut down"),
                               tinydtls=True, dispatch=False)
        self._dtls = None
        self._sendto = None


class _DTLSServerProtocol(RecvmsgDatagramProtocol):
    def __init__(self, interface: "MessageInterfaceTinyDTLSServer"):
        self.interface = interface
        self.closed = interface.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.interface.connected(cast(asyncio.DatagramTransport, transport))

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.interface._engine.datagram_received(data, addr)

    def datagram_msg_received(
        self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, address: tuple[Any, ...]
    ) -> None:
        self.interface._engine.datagram_received(data, address)

    def error_received(self, exc: Exception) -> None:
        self.interface.log.debug("DTLS server socket error (not attributable to a session): %s", exc)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class MessageInterfaceTinyDTLSServer(MessageInterfaceSimpleServer):
    """The ``tinydtls_server`` transport: see the module documentation.
    Create it with :meth:`create_server`."""

    def __init__(self, mman: interfaces.MessageManager, log: logging.Logger, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(mman, log, loop)
        self._server_credentials: Any = None
        self._engine: GoingThroughMessageDecryption

    @classmethod
    async def create_server(  # type: ignore[override]
        cls,
        bind: Optional[tuple[Optional[str], Optional[int]]],
        ctx: interfaces.MessageManager,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        server_credentials: CredentialsMap,
    ) -> "MessageInterfaceTinyDTLSServer":
        """Listen for DTLS on ``bind`` (``(host, port)``; host None for all
        addresses, port None for 5684), accepting the clients that the DTLS
        entries of ``server_credentials`` describe."""
        self = cls(ctx, log, loop)
        self._server_credentials = server_credentials
        self._engine = GoingThroughMessageDecryption(self)
        host, port = bind if bind is not None else (None, None)
        if port is None:
            port = COAPS_PORT
        sock = await self._dtls_socket(host, port)
        # (a second socket, should the loop need one, takes the same address)
        family, sockname = sock.family, sock.getsockname()
        first = [sock]

        def make_socket() -> socket.socket:
            return first.pop() if first else self._socket(family, sockname, dualstack=family == socket.AF_INET6)

        _, self._protocol = await open_datagram_endpoint(loop, lambda: _DTLSServerProtocol(self), make_socket)
        return self

    async def _dtls_socket(self, host: Optional[str], port: int) -> socket.socket:
        if host is not None and "." in host and ":" not in host:
            # an IPv4 literal: bind its V4MAPPED form on a dual-stack socket
            # where possible, so that every peer address has the IPv6 form
            # tinydtls names peers with
            try:
                return self._socket(socket.AF_INET6, (_V4MAPPED + host, port, 0, 0), dualstack=True)
            except OSError:
                pass
        return await self._bound_socket(host, port)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on {hostportjoin(*self.sockname[:2])} with {len(self._engine.sessions)} session(s)>"

    def connected(self, transport: asyncio.DatagramTransport) -> None:
        super().connected(transport)
        self._engine._sendto = transport.sendto

    # The engine's view of the sessions, offered as the transport's own.
    @property
    def tuning(self) -> DTLSTuning:
        """The :class:`DTLSTuning` in effect (assignable)."""
        return self._engine.tuning

    @tuning.setter
    def tuning(self, value: DTLSTuning) -> None:
        self._engine.tuning = value

    @property
    def sessions(self) -> list[Any]:
        """The remotes of the sessions that exist (established or in their
        handshake)."""
        return self._engine.sessions

    @property
    def port(self) -> int:
        """The port the server listens on."""
        port: int = self.sockname[1]
        return port

    def recognize_remote(self, remote: interfaces.EndpointAddress) -> bool:
        return isinstance(remote, DTLSServerAddress) and remote._interface is self

    async def determine_remote(self, request: Message) -> Optional[interfaces.EndpointAddress]:
        """Only messages to sessions of this server go out through it (it
        does not open sessions of its own)."""
        remote = request.remote
        if remote is not None and not isinstance(remote, UndecidedRemote) and self.recognize_remote(remote):
            return cast(DTLSServerAddress, remote)
        return None

    async def _make_remote(self, host: str, port: int) -> NoReturn:
        raise error.NetworkError("A DTLS server can not start sessions of its own")

    async def _close_sockets(self) -> None:
        self._engine.shutdown()
        await super()._close_sockets()


async def load(entry: "TransportEntry", setup: "TransportSetup") -> None:
    """Attach the ``tinydtls_server`` transport to a server context (see
    :data:`aiocoap.transports.TRANSPORTS`) when its server credentials have
    DTLS entries; it listens next to the UDP port when that is explicit."""
    entries = dtls_server_credentials(setup.server_credentials)
    if not entries:
        return
    for label, item in entries.items():
        identity, psk = item.as_dtls_psk()
        if not psk or len(psk) > MAX_PSK_LENGTH or len(identity) > MAX_IDENTITY_LENGTH:
            setup.log.warning(
                "DTLS server credential %s can not be used: tinydtls takes keys of 1 to %d bytes "
                "and identities of up to %d bytes", label, MAX_PSK_LENGTH, MAX_IDENTITY_LENGTH,
            )
    bind = setup.secure_bind("udp6", "simplesocketserver")
    credentials = setup.server_credentials
    log, loop = setup.log, setup.loop
    await setup.add_message_interface(
        lambda mm: MessageInterfaceTinyDTLSServer.create_server(bind, mm, log, loop, credentials)
    )
