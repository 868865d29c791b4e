"""Session bookkeeping of the CoAP-over-DTLS transports, without I/O.

:mod:`.tinydtls` (client) and :mod:`.tinydtls_server` drive the tinydtls
library (through the DTLSSocket package) from a UDP socket. Which DTLS
sessions exist, how long they may live and how many there may be is decided
here, in :class:`SessionTable`: it is told about handshakes, established
sessions and traffic together with the current (monotonic) time, closes
sessions through a callback given at construction, and names its next
deadline; it never sleeps and imports neither asyncio nor DTLSSocket. The
module also holds the pure helpers both transports share: a look at the
first DTLS record of a datagram, the names of TLS alerts, and the errors
requests fail with.

Rules enforced here:

* Every session belongs to one *epoch*: a handshake at a peer key (the
  client's host, port and credentials; the server's client address) starts
  a new epoch with a number never used before in the table, and the
  transports give every epoch its own :class:`aiocoap.interfaces.EndpointAddress`
  object. A session that ends is never revived, so a response from a later
  session can never match a request of an earlier one (RFC 7252 §9.1.2).
  A new handshake at a key that has a session ends that session first.
* A handshake not completed within :attr:`DTLSTuning.handshake_timeout` is
  given up (:class:`HandshakeTimeout`).
* An established session without traffic for
  :attr:`DTLSTuning.idle_timeout` is closed (:class:`SessionClosed`).
* A client session on which datagrams that expect an answer were sent, but
  nothing arrived for :attr:`DTLSTuning.silence_timeout` since the first of
  them, is considered lost (the server restarted or went away) and closed;
  the next request starts a new session.
* At most ``max_sessions`` sessions (handshakes included) and
  ``max_handshakes`` handshakes exist at a time. Starting one more closes
  the session idle for the longest time (or, if every session is still in
  its handshake, the oldest handshake); a handshake beyond
  ``max_handshakes`` closes the oldest handshake. A warning is logged at
  most once a minute while caps are being hit.

Time complexity: traffic on a session costs one attribute store (plus one
dict operation when a client starts or stops waiting for an answer); the
idle order is a heap of the times sessions took their place in it, repaired
lazily (a session that saw traffic since is pushed again when it comes
up), so expiry and eviction are exact and cost O(log n) each.

Log levels: debug for every session the table closes (with the reason);
warning, at most once a minute, while caps are being hit.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, Iterator, Optional

from .. import error

__all__ = [
    "DTLSTuning", "DEFAULT_DTLS_TUNING", "SessionState", "Session", "SessionTable",
    "DTLSError", "FatalDTLSError", "CloseNotifyReceived", "HandshakeTimeout", "SessionClosed",
    "alert_name", "first_record",
    "CONTENT_CHANGE_CIPHER_SPEC", "CONTENT_ALERT", "CONTENT_HANDSHAKE", "CONTENT_APPLICATION_DATA",
    "HANDSHAKE_CLIENT_HELLO", "HANDSHAKE_SERVER_HELLO", "HANDSHAKE_HELLO_VERIFY_REQUEST",
    "RECORD_HEADER_LENGTH",
]


# --- tuning --------------------------------------------------------------------------


@dataclass(frozen=True)
class DTLSTuning:
    """Limits and timers of the DTLS transports.

    A transport reads its ``tuning`` attribute whenever it needs one of
    these, so assigning a new instance to a running
    :class:`~aiocoap.transports.tinydtls.MessageInterfaceTinyDTLS` or
    :class:`~aiocoap.transports.tinydtls_server.MessageInterfaceTinyDTLSServer`
    affects it from then on (this is how tests shorten the timers)."""

    handshake_timeout: float = 20.0
    """Seconds within which a handshake must complete (tinydtls retransmits
    its flights after 2, 4 and 8 seconds within that time). A client's
    waiting requests then fail with :class:`HandshakeTimeout`; a server
    forgets the half-finished handshake."""

    idle_timeout: Optional[float] = 300.0
    """Seconds without a datagram either way after which a session is
    closed (None: never). Exchanges still waiting on it (an observation
    whose resource did not change in that time) fail with
    :class:`SessionClosed`."""

    silence_timeout: Optional[float] = 45.0
    """Client side: seconds after sending a datagram that expects an answer
    (a CON message or a request) without receiving anything on the session,
    after which the session is considered lost and closed (None: never).
    This is how a client notices a server that restarted and lost the
    session; the next request starts a new one."""

    max_client_sessions: int = 64
    """Sessions a client keeps at the same time (one socket each)."""

    max_server_sessions: int = 1000
    """Sessions (handshakes included) a server keeps at the same time."""

    max_server_handshakes: int = 100
    """Handshakes in progress a server keeps at the same time (after the
    cookie exchange, which costs the server no state)."""


DEFAULT_DTLS_TUNING = DTLSTuning()


# --- errors ----------------------------------------------------------------------------


class DTLSError(error.NetworkError):
    """A DTLS session could not be established or ended; requests that
    were waiting on it fail with a subclass of this."""


class FatalDTLSError(DTLSError):
    """The DTLS session a request was sent on raised a fatal error: the
    peer (or the local DTLS stack) sent a fatal alert. ``level`` and
    ``code`` are the alert's (RFC 5246 §7.2)."""

    def __init__(self, message: str, *, level: int = 2, code: Optional[int] = None):
        super().__init__(message)
        self.level = level
        self.code = code


class CloseNotifyReceived(DTLSError):
    """The DTLS session a request was sent on was closed by the peer
    (close_notify alert) while the request was being processed."""


class HandshakeTimeout(DTLSError):
    """No DTLS handshake completed in time: the peer does not answer, does
    not speak DTLS there, or silently rejects the credentials."""


class SessionClosed(DTLSError):
    """The DTLS session was closed locally: idle for too long, the peer
    went silent, or closed to make room for other sessions."""


_ALERTS = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
    21: "decryption_failed", 22: "record_overflow", 30: "decompression_failure",
    40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
    44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
    47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
    51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security",
    80: "internal_error", 90: "user_canceled", 100: "no_renegotiation",
    110: "unsupported_extension", 115: "unknown_psk_identity",
}


def alert_name(code: int) -> str:
    """The name of a TLS alert description (RFC 5246 §7.2, RFC 4279 §2).

    >>> alert_name(51)
    'decrypt_error (51)'
    >>> alert_name(250)
    'alert 250'
    """
    name = _ALERTS.get(code)
    return f"{name} ({code})" if name is not None else f"alert {code}"


# --- the record layer, as far as session bookkeeping needs it ---------------------------

CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23

HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_SERVER_HELLO = 2
HANDSHAKE_HELLO_VERIFY_REQUEST = 3

RECORD_HEADER_LENGTH = 13
"""Content type (1), version (2), epoch (2), sequence number (6), length
(2): RFC 6347 §4.1."""

_DTLS_MAJOR = 0xFE


def first_record(data: bytes) -> Optional["tuple[int, int, Optional[int]]"]:
    """Content type, epoch and (for a handshake record of epoch 0, whose
    body is readable) the handshake message type of the first DTLS record
    in ``data``, or None if ``data`` does not start with a DTLS record
    header.

    >>> first_record(bytes.fromhex('16fefd 0000 000000000000 000c 01') + bytes(11))
    (22, 0, 1)
    >>> first_record(bytes.fromhex('17fefd 0001 000000000005 0010') + bytes(16))
    (23, 1, None)
    >>> first_record(b'\\x40\\x01\\x12\\x34') is None
    True
    """
    if len(data) < RECORD_HEADER_LENGTH or data[1] != _DTLS_MAJOR:
        return None
    content = data[0]
    if not CONTENT_CHANGE_CIPHER_SPEC <= content <= CONTENT_APPLICATION_DATA:
        return None
    epoch = (data[3] << 8) | data[4]
    handshake = None
    if content == CONTENT_HANDSHAKE and epoch == 0 and len(data) > RECORD_HEADER_LENGTH:
        handshake = data[RECORD_HEADER_LENGTH]
    return content, epoch, handshake


# --- sessions ------------------------------------------------------------------------


class SessionState(enum.IntEnum):
    HANDSHAKE = 1
    ESTABLISHED = 2
    CLOSED = 3


class Session:
    """One epoch of a DTLS session with one peer, as the table sees it.

    ``handle`` is whatever the transport attaches (its EndpointAddress)."""

    __slots__ = ("key", "epoch", "state", "started", "last_activity", "_activity", "_lru_place", "waiting_since", "handle")

    def __init__(self, key: Hashable, epoch: int, now: float, handle: Any):
        self.key = key
        self.epoch = epoch
        self.state = SessionState.HANDSHAKE
        self.started = now
        self.last_activity = now
        # Order of activity (a sequence number of the table, increasing
        # with every datagram): times alone can not order sessions active
        # within one tick of a coarse clock (uvloop's has milliseconds).
        self._activity = 0
        # the sequence number with which the session took its place in the
        # idle order
        self._lru_place = 0
        # client: since when an answer is awaited (None: nothing awaited)
        self.waiting_since: Optional[float] = None
        self.handle = handle

    def __repr__(self) -> str:
        return f"<Session {self.key!r} epoch {self.epoch} {self.state.name}>"


class SessionTable:
    """Sans-I/O core of the DTLS transports' session management.

    :param close: ``close(session, exc)`` is called when the table ends a
        session on its own (timeouts, caps); the transport tears the
        session down and fails what waits on it with ``exc``. The session
        is already removed from the table then.
    :param server: whether this is a server's table (which caps apply, and
        whether silent peers are looked for).
    :param tuning: a :class:`DTLSTuning`; reassign :attr:`tuning` to change
        it later.
    """

    def __init__(self, *, close: Callable[[Session, Exception], None], log: logging.Logger, server: bool,
                 tuning: DTLSTuning = DEFAULT_DTLS_TUNING) -> None:
        self._close = close
        self.log = log
        self.server = server
        self.tuning = tuning
        self._sessions: Dict[Hashable, Session] = {}
        # established sessions: heap of (time it took its place, seq, session),
        # lazily repaired; entries of ended sessions are dropped when they
        # come up (or when the heap is compacted)
        self._idle: list[tuple[float, int, Session]] = []
        self._seq = itertools.count()
        # sessions in their handshake, in order of their start
        self._handshakes: "OrderedDict[Hashable, Session]" = OrderedDict()
        # client sessions waiting for an answer, in order of waiting_since
        self._waiting: "OrderedDict[Hashable, Session]" = OrderedDict()
        self._epochs = itertools.count(1)
        self._last_cap_warning = -1e9
        #: the session lookup (by key); None if there is none
        self.find: Callable[[Hashable], Optional[Session]] = self._sessions.get

    # --- introspection ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    @property
    def handshakes(self) -> int:
        """Number of sessions in their handshake."""
        return len(self._handshakes)

    @property
    def max_sessions(self) -> int:
        t = self.tuning
        return t.max_server_sessions if self.server else t.max_client_sessions

    @property
    def max_handshakes(self) -> int:
        t = self.tuning
        return t.max_server_handshakes if self.server else t.max_client_sessions

    # --- time ---------------------------------------------------------------------------

    def next_deadline(self) -> Optional[float]:
        """The earliest time at which :meth:`handle_timer` has work to do
        (it may find nothing to do then: idle order is repaired lazily).
        It only looks at the head of each queue, so drivers call it after
        every event that may have added a deadline."""
        tuning = self.tuning
        best = None
        if self._handshakes:
            best = next(iter(self._handshakes.values())).started + tuning.handshake_timeout
        if self._idle and tuning.idle_timeout is not None:
            candidate = self._idle[0][0] + tuning.idle_timeout
            if best is None or candidate < best:
                best = candidate
        if self._waiting and tuning.silence_timeout is not None:
            first = next(iter(self._waiting.values())).waiting_since
            assert first is not None
            candidate = first + tuning.silence_timeout
            if best is None or candidate < best:
                best = candidate
        return best

    def handle_timer(self, now: float) -> None:
        """Close everything that is due at ``now``: handshakes that took too
        long, idle sessions, client sessions whose peer went silent."""
        tuning = self.tuning
        # the two queues kept in the order of their deadlines
        for queue, timeout, since, error_of in (
            (self._handshakes, tuning.handshake_timeout, "started", self._handshake_timed_out),
            (self._waiting, tuning.silence_timeout, "waiting_since", self._peer_silent),
        ):
            while queue and timeout is not None:
                session = next(iter(queue.values()))
                if getattr(session, since) + timeout > now:
                    break
                self._end_and_close(session, error_of(session))
        if tuning.idle_timeout is not None:
            while True:
                oldest = self._least_recently_active()
                if oldest is None or oldest.last_activity + tuning.idle_timeout > now:
                    break
                self._end_and_close(oldest, SessionClosed(
                    f"DTLS session with {self._describe(oldest)} closed after "
                    f"{tuning.idle_timeout:g} s without traffic"
                ))

    def _handshake_timed_out(self, session: Session) -> Exception:
        return HandshakeTimeout(
            f"No DTLS handshake with {self._describe(session)} completed within "
            f"{self.tuning.handshake_timeout:g} s (no answer, or the peer rejected the "
            "credentials without telling: check the PSK and the identity)"
        )

    def _peer_silent(self, session: Session) -> Exception:
        return SessionClosed(
            f"No answer on the DTLS session with {self._describe(session)} for "
            f"{self.tuning.silence_timeout:g} s; the session is considered lost (the "
            "peer may have restarted) and the next request starts a new one"
        )

    def _least_recently_active(self) -> Optional[Session]:
        """The established session idle for the longest time (at the top of
        the heap when this returns), after dropping stale entries and
        pushing again the sessions that saw traffic since they took their
        place."""
        idle = self._idle
        while idle:
            _, place, session = idle[0]
            if session.state is not SessionState.ESTABLISHED or place != session._lru_place:
                heapq.heappop(idle)
                continue
            if session._activity == place:
                return session
            session._lru_place = session._activity
            heapq.heapreplace(idle, (session.last_activity, session._activity, session))
        return None

    # --- events ---------------------------------------------------------------------------

    def start(self, key: Hashable, now: float, handle: Any = None) -> Session:
        """A handshake begins at ``key`` (the client starts one, or a
        server saw a client's cookie-verified ClientHello): a new epoch.
        An existing session at the key is ended (closed with ``replaced``
        semantics: the transport is told through the close callback), and
        sessions are evicted as the caps demand."""
        old = self._sessions.get(key)
        if old is not None:
            self._end_and_close(old, SessionClosed(
                f"DTLS session with {self._describe(old)} replaced by a new handshake"
            ))
        if len(self._handshakes) >= self.max_handshakes:
            self._cap_reached(now, "handshakes", self.max_handshakes)
            oldest = next(iter(self._handshakes.values()))
            self._end_and_close(oldest, SessionClosed(
                f"DTLS handshake with {self._describe(oldest)} dropped to make room for newer ones"
            ))
        while len(self._sessions) >= self.max_sessions:
            self._cap_reached(now, "sessions", self.max_sessions)
            victim = self._least_recently_active()
            if victim is None:
                victim = next(iter(self._handshakes.values()))
            self._end_and_close(victim, SessionClosed(
                f"DTLS session with {self._describe(victim)} closed to make room for newer ones"
            ))
        session = Session(key, next(self._epochs), now, handle)
        self._sessions[key] = session
        self._handshakes[key] = session
        return session

    def established(self, session: Session, now: float) -> None:
        """The session's handshake completed."""
        if session.state is not SessionState.HANDSHAKE:
            return
        session.state = SessionState.ESTABLISHED
        del self._handshakes[session.key]
        session.last_activity = now
        session._activity = session._lru_place = next(self._seq)
        idle = self._idle
        if len(idle) > 2 * len(self._sessions) + 64:
            idle[:] = [e for e in idle if e[2].state is SessionState.ESTABLISHED and e[1] == e[2]._lru_place]
            heapq.heapify(idle)
        heapq.heappush(idle, (now, session._activity, session))

    def received(self, session: Session, now: float) -> None:
        """A datagram arrived on the session."""
        session.last_activity = now
        session._activity = next(self._seq)
        if session.waiting_since is not None:
            session.waiting_since = None
            del self._waiting[session.key]

    def sent(self, session: Session, now: float, expects_answer: bool) -> Optional[float]:
        """A datagram was sent on the session; ``expects_answer`` if the
        peer is supposed to react to it (clients watch for silence).
        Returns the deadline this added, if any (the only event on the
        path of every message that can add one)."""
        session.last_activity = now
        session._activity = next(self._seq)
        if expects_answer and session.waiting_since is None and not self.server:
            session.waiting_since = now
            self._waiting[session.key] = session
            silence = self.tuning.silence_timeout
            if silence is not None:
                return now + silence
        return None

    def end(self, session: Session) -> bool:
        """Forget the session (the transport closed it: an alert, an error,
        shutdown). Returns False if it was not in the table any more."""
        if self._sessions.get(session.key) is not session:
            return False
        del self._sessions[session.key]
        self._handshakes.pop(session.key, None)
        if session.waiting_since is not None:
            self._waiting.pop(session.key, None)
            session.waiting_since = None
        session.state = SessionState.CLOSED
        return True

    def close_all(self, exc_factory: Callable[[], Exception]) -> None:
        """End every session through the close callback (shutdown)."""
        for session in list(self._sessions.values()):
            self._end_and_close(session, exc_factory())

    # --- helpers -------------------------------------------------------------------------

    def _end_and_close(self, session: Session, exc: Exception) -> None:
        if self.end(session):
            self.log.debug("%s", exc)
            self._close(session, exc)

    def _cap_reached(self, now: float, what: str, cap: int) -> None:
        if now - self._last_cap_warning >= 60:
            self._last_cap_warning = now
            self.log.warning("DTLS %s cap (%d) reached; closing the oldest to make room", what, cap)

    @staticmethod
    def _describe(session: Session) -> str:
        handle = session.handle
        if handle is not None:
            return str(getattr(handle, "hostinfo", handle))
        return repr(session.key)
