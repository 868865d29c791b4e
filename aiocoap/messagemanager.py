"""The message layer of CoAP over UDP (RFC 7252 §4): message IDs,
confirmable retransmission, deduplication, ACK / RST / empty ACK, pings.

The rules live in :class:`MessageLayer`, a sans-I/O core: it is fed
datagrams and outgoing messages together with the current (monotonic) time,
sends bytes and delivers messages through callbacks given at construction,
and tells its next deadline; it never sleeps and imports no asyncio.
:class:`MessageManager` is its asyncio driver (one ``loop.call_at`` timer)
and the TokenInterface the token layer sends through.

Rules enforced here:

* Incoming CON and NON messages are deduplicated by (remote, MID) for
  EXCHANGE_LIFETIME / NON_LIFETIME. A duplicate of a request that was
  answered gets the remembered reply again (so a POST runs once); one still
  being processed gets an empty ACK if one was already sent, else nothing.
* The dedup memory is compact (the remembered reply's bytes plus a dict
  slot and a key tuple) and hard-capped at ``max_dedup_entries`` entries
  and ``max_dedup_bytes`` bytes of remembered replies (32 MiB by default:
  a piggybacked response can be over a kilobyte); when either cap is
  reached the oldest entries are forgotten early (a duplicate that arrives
  after that is processed again, as if it came after EXCHANGE_LIFETIME)
  and a warning is logged once per minute.
* A request that the application answers within EMPTY_ACK_DELAY gets a
  piggybacked response; otherwise an empty ACK goes out and the response
  follows as a separate CON (NON for NON requests).
* CON messages are retransmitted after ACK_TIMEOUT x random[1,
  ACK_RANDOM_FACTOR], doubling, MAX_RETRANSMIT times; then the sender's
  monitor gets error.ConRetransmitsExceeded. With
  ``TransportTuning.ADAPTIVE_RTO`` the initial timeout and the backoff
  factor come from each peer's measured round trips instead
  (:class:`aiocoap.congestion.RtoEstimator`, CoCoA).
* Congestion control (RFC 7252 §4.7): at most NSTART confirmable exchanges
  (requests, separate responses, notifications alike) are outstanding to a
  peer, NSTART being that of the layer's tuning (1 by default). Further
  CON messages to it wait in order and go out as acknowledgements (or
  Resets, or timeouts) end the outstanding ones; NON messages, ACKs and
  RSTs are never held back. At most ``max_queued_per_peer`` messages wait
  per peer (beyond: the sender's monitor gets error.SendQueueFull at
  once); a waiting message has no deadline of its own (as in aiocoap): it
  waits for the exchanges ahead of it, each of which ends within
  MAX_TRANSMIT_WAIT, so the queue drains even towards a peer that stopped
  answering. A message whose sender loses interest while it waits is never
  sent.
* The type of a message the application left open follows its
  ``transport_tuning.reliability``: True gives CON, False NON, None CON
  (responses to NON requests get NON from the token layer). A CON to a
  multicast address raises error.ConToMulticast.
* A CON ping (empty CON) is answered with RST; a CON response nobody waits
  for is answered with RST, a NON one dropped; a CON with a format error is
  answered with RST, anything else malformed is dropped (RFC 7252 §4.2,
  §4.3).
* Responses to multicast requests are NON, never errors, and are delayed by
  a random time within DEFAULT_LEISURE (RFC 7252 §8.2). The one error that
  does go out is an Echo challenge (4.01 with an Echo option, RFC 9175
  §2.3): a server limiting what it sends to an unverified requester (see
  :mod:`aiocoap.amplification`) answers it instead of the response.
* A NON response sent with a monitor (an observe notification) is
  remembered for EXCHANGE_LIFETIME so that a Reset to it reaches the
  monitor (RFC 7641 §3.6: that is how clients reject notifications); a NON
  notification nobody wants is answered with a Reset. The next NON
  notification of the same observation (sent replacing it) takes that
  memory over, so a server allocates nothing per notification that lives
  until the next one.
* A notification sent replacing the previous one of its observation
  (``send_message_replacing``) while that one is a confirmable exchange in
  flight takes the exchange over (RFC 7641 §4.5.2): it goes out
  confirmable with a MID of its own and keeps the retransmission counter
  and the running timeout, so an observer that never acknowledges is given
  up on after MAX_RETRANSMIT (its monitor gets
  error.ConRetransmitsExceeded) however fast notifications follow.
* Per-peer state (next MID) is bounded (``max_peers``; the peer first
  sent to is forgotten first, and starts at a random MID again).

Logging: debug for per-message events (``Incoming message %r`` for every
message received), info for the responses, acknowledgements and resets
that match nothing (as aiocoap logs them), warning for unparsable
datagrams (``Ignoring unparsable message from ...``) and for policy
decisions (caps reached). Lines about what a peer can cause at will
(unmatched and unparsable messages) are written at most once a minute
(:class:`aiocoap.util.logsummary.LogSummary`; the rest at debug, counted
in the next line), so a peer can not flood the log.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Union

from . import error, interfaces
from .congestion import PeerExchanges, RtoEstimator
from .message import Message, UndecidedRemote
from .numbers.codes import REQUEST_END, REQUEST_START, RESPONSE_END, RESPONSE_START, Code
from .numbers.constants import DEFAULT_TUNING, TransportTuning
from .numbers.optionnumbers import OptionNumber
from .numbers.types import Type
from .util.asyncio import clock_of
from .util.keyindex import KeyIndex
from .util.logsummary import LogSummary

if TYPE_CHECKING:
    import asyncio

    from .credentials import CredentialsMap

__all__ = ["MessageLayer", "MessageManager", "no_response_suppresses"]

CON, NON, ACK, RST = Type.CON, Type.NON, Type.ACK, Type.RST
_NO_RESPONSE = OptionNumber.NO_RESPONSE
EMPTY = Code.EMPTY

# States of a remembered incoming exchange (values of MessageLayer._dedup).
# bytes values are the reply to resend to a duplicate.
_PROCESSING = 0  # request handed up, nothing sent yet
_EMPTY_ACKED = 1  # empty ACK sent, separate response pending or sent
_NOTHING = 2  # NON request being processed or answered without a reply


# RFC 7967 §2.1: the No-Response bit that suppresses each response class.
_NO_RESPONSE_BITS = {2: 0x02, 4: 0x08, 5: 0x10}


def no_response_suppresses(no_response: Optional[int], code: int) -> bool:
    """Whether a request's No-Response option value (RFC 7967) says that a
    response with this code must not be sent."""
    if not no_response:
        return False
    return bool(no_response & _NO_RESPONSE_BITS.get(Code(code).class_, 0))


def _is_echo_challenge(message: Message) -> bool:
    return message.code == Code.UNAUTHORIZED and OptionNumber.ECHO in message.opt


def _empty(mtype: Type, mid: Any) -> bytes:
    return bytes((0x40 | (mtype << 4), 0, (mid >> 8) & 0xFF, mid & 0xFF))


# Kinds of _OutgoingMessage
_RETRANSMITTED = 0  # retransmitted until ACK/RST
_AWAITING_RESPONSE = 1  # waits for its response; times out with RequestTimedOut
_WAITING = 2  # a CON waiting for its turn (NSTART); no deadline of its own

_NOW = float("-inf")
"""The deadline of work that is due at once (see MessageLayer._releasable)."""
_NEVER = float("inf")
"""The deadline of a message waiting for its turn: it has none of its own."""


class _Tracked:
    """A NON notification we sent, remembered so that a Reset to it reaches
    its monitor; expires silently. Kept apart from :class:`_OutgoingMessage`
    because a server holds one per observation for EXCHANGE_LIFETIME: it
    is small, has no timer of its own (coarse expiry buckets), and is
    itself the function that stops the tracking (what
    :meth:`MessageLayer.send_message` returns).

    The next NON notification of the observation (sent replacing this
    one) takes the same object over with its own MID and expiry, so that a
    busy server does not leave an object per notification behind: each
    would live until the next notification, long enough for the cyclic
    garbage collector to move it to its oldest generation and run full
    collections over all observations for it."""

    __slots__ = ("remote", "mid", "monitor", "layer", "expiry")

    def __init__(
        self, remote: Any, mid: int, monitor: Optional[Callable[[Exception], None]], layer: MessageLayer, expiry: float
    ):
        self.remote = remote
        # (None once stopped; the handle may then stay in an expiry bucket
        # for a while, and keeps nothing alive)
        self.mid: Optional[int] = mid
        self.monitor = monitor
        self.layer = layer
        self.expiry = expiry

    def __call__(self) -> None:
        if self.mid is not None:
            self.layer._untrack(self)


class _TrackedMids(dict[int, _Tracked]):
    """The tracked notifications of a peer that has more than one, by MID
    (a type of its own, so that it is never taken for a single one)."""

    __slots__ = ()


def _handles(found: Union[_Tracked, _TrackedMids, None]) -> list[_Tracked]:
    """The tracked notifications in a peer's entry of MessageLayer._tracked."""
    if found is None:
        return []
    if isinstance(found, _Tracked):
        return [found]
    return list(found.values())


class _OutgoingMessage:
    """A message we sent and still care about (see the kinds above)."""

    __slots__ = (
        "data", "remote", "transmissions", "timeout", "monitor", "deadline", "start", "tuning", "kind",
        "key", "backoff", "taken_over",
    )

    def __init__(
        self,
        data: Any,
        remote: Any,
        timeout: float,
        monitor: Optional[Callable[[Exception], None]],
        deadline: float,
        start: float,
        tuning: TransportTuning,
        kind: int = _RETRANSMITTED,
        key: Any = None,
    ) -> None:
        self.data = data
        self.remote = remote
        self.transmissions = 1
        self.timeout = timeout
        self.monitor = monitor
        self.deadline = deadline
        self.start = start
        self.tuning = tuning
        self.kind = kind
        self.key = key
        self.backoff = 2.0  # (the timeout's growth per retransmission)
        # A newer message took over the exchange (see MessageLayer._take_over):
        # its round trip is not measured from ``start``.
        self.taken_over = False


class _Stop:
    """What :meth:`MessageLayer.send_message` returns for a message it keeps
    state for: calling it stops the message (retransmissions, the NON
    request timeout, the wait for its turn); a later response can be sent
    replacing it."""

    __slots__ = ("layer", "state")

    def __init__(self, layer: MessageLayer, state: _OutgoingMessage) -> None:
        self.layer = layer
        self.state = state

    def __call__(self) -> None:
        self.layer._stop(self.state)


class MessageLayer:
    """Sans-I/O core of the message layer.

    :param send: ``send(data: bytes, remote)`` puts a datagram on the wire.
    :param deliver_request: ``deliver_request(message)`` for an incoming,
        deduplicated request.
    :param deliver_response: ``deliver_response(message) -> bool`` for an
        incoming response; False means nobody waited for it.
    :param tuning: the default TransportTuning (a message's own
        ``transport_tuning`` takes precedence for its exchange).
    :param rng: source of randomness for retransmission jitter, initial MIDs
        and leisure delays (inject a seeded one in tests).
    :param wakeup: ``wakeup()`` asks the driver to call :meth:`handle_timer`
        soon: a confirmable exchange ended outside a call that carries the
        time (its sender stopped it), and waiting messages can go out.
    :param max_queued_per_peer: how many CON messages may wait for their
        turn to one peer (see the module documentation).
    :param reachable: ``reachable(remote, now)`` when ``remote`` showed that
        it receives what we send: it acknowledged or reset a confirmable
        message of ours, or answered a request of ours (what
        :class:`aiocoap.amplification.AmplificationLimit` counts as proof).
    """

    def __init__(
        self,
        *,
        send: Callable[[bytes, object], None],
        deliver_request: Callable[[Message], None],
        deliver_response: Callable[[Message], bool],
        log: logging.Logger,
        tuning: TransportTuning = DEFAULT_TUNING,
        rng: Optional[random.Random] = None,
        max_dedup_entries: int = 200_000,
        max_dedup_bytes: int = 32 << 20,
        max_peers: int = 10_000,
        wakeup: Optional[Callable[[], None]] = None,
        max_queued_per_peer: int = 10_000,
        reachable: Optional[Callable[[Any, float], None]] = None,
    ) -> None:
        self._send = send
        self._deliver_request = deliver_request
        self._deliver_response = deliver_response
        self.log = log
        self.tuning = tuning
        self._rng = rng or random.Random()
        self.max_dedup_entries = max_dedup_entries
        self.max_dedup_bytes = max_dedup_bytes
        self.max_peers = max_peers
        self._wakeup = wakeup
        self.max_queued_per_peer = max_queued_per_peer
        self._reachable = reachable

        # (remote, mid) -> state (see _PROCESSING etc.) or reply bytes
        self._dedup: dict[tuple[Any, Any], Union[int, bytes]] = {}
        self._dedup_bytes = 0  # (the bytes values in it, together)
        # Expiry in coarse time buckets: deques of [expiry, [keys...]].
        # Lifetimes are constant per kind, so each deque is sorted by expiry,
        # and an entry costs one list slot instead of an (expiry, key) tuple.
        self._dedup_expiry_con: deque[list[Any]] = deque()
        self._dedup_expiry_non: deque[list[Any]] = deque()
        self._last_cap_warning = -1e9

        # (remote, token) -> mid of a CON request we have not ACKed yet
        self._pending_ack: dict[tuple[Any, bytes], Optional[int]] = {}
        # (deadline, (remote, mid)) for empty ACKs; constant delay -> FIFO
        self._empty_ack_queue: deque[tuple[float, tuple[Any, Any]]] = deque()

        # (remote, mid) -> _OutgoingMessage
        self._outgoing: dict[tuple[Any, Any], _OutgoingMessage] = {}
        # remote -> its _Tracked (or its _TrackedMids if there are several:
        # one per observation, the common case, needs no table), and their
        # expiry buckets (as for dedup)
        self._tracked: dict[Any, Union[_Tracked, _TrackedMids]] = {}
        self._tracked_count = 0
        # remote -> the keys of _outgoing for it, so that an error for a
        # remote touches its own exchanges only
        self._keys_by_remote = KeyIndex()
        self._tracked_expiry: deque[list[Any]] = deque()
        self._tracked_slots = 0  # entries in the buckets, live or stopped
        # heap of (deadline, seq, key) with lazy deletion
        self._heap: list[tuple[float, int, tuple[Any, Any]]] = []
        self._seq = itertools.count()

        # delayed sends (multicast leisure): heap of (deadline, seq, data, remote)
        self._delayed: list[tuple[float, int, bytes, Any]] = []

        # remote -> [next MID] (a list: updated without another lookup)
        self._mids: dict[Any, list[int]] = {}

        # remote -> PeerExchanges, for peers with outstanding or waiting
        # CON messages (NSTART bookkeeping)
        self._exchanges: dict[Any, PeerExchanges] = {}
        # Peers whose outstanding exchanges ended outside a call that has
        # the time (a stop function): their waiting messages go out at the
        # next handle_timer.
        self._releasable: set[Any] = set()
        # remote -> RtoEstimator, while adaptive RTOs are on (bounded like
        # _mids)
        self._rtos: dict[Any, RtoEstimator] = {}

        # Lines about what peers cause, at most once a minute each
        self._unparsable_log = LogSummary(log, logging.WARNING)
        self._unmatched_log = LogSummary(log, logging.INFO)

        self.added_deadline: Optional[float] = None
        """The earliest deadline added since :meth:`take_added_deadline` was
        last called. A driver reads it after each call into the core: while
        it is None (as after most messages), the timer needs no change, and
        reading it costs less than a call."""

    # --- introspection for tests and for the memory benchmark ----------------

    @property
    def dedup_size(self) -> int:
        return len(self._dedup)

    @property
    def dedup_bytes(self) -> int:
        """Bytes of the replies the deduplication cache remembers."""
        return self._dedup_bytes

    @property
    def outgoing_size(self) -> int:
        return len(self._outgoing)

    @property
    def tracked_size(self) -> int:
        """How many NON notifications are tracked (listened to for a
        Reset)."""
        return self._tracked_count

    def outstanding_to(self, remote: Any) -> int:
        """How many confirmable exchanges with ``remote`` are outstanding."""
        peer = self._exchanges.get(remote)
        return 0 if peer is None else peer.active

    def waiting_for(self, remote: Any) -> int:
        """How many confirmable messages to ``remote`` wait for their turn."""
        peer = self._exchanges.get(remote)
        return 0 if peer is None else peer.waiting

    # --- time ---------------------------------------------------------------------

    def _note(self, deadline: float) -> None:
        added = self.added_deadline
        if added is None or deadline < added:
            self.added_deadline = deadline

    def take_added_deadline(self) -> Optional[float]:
        """The earliest deadline added since the last call (None if none):
        a driver whose timer is armed no later than that needs no change."""
        added, self.added_deadline = self.added_deadline, None
        return added

    def replace_send(self, send: Callable[[bytes, object], None]) -> None:
        """Put datagrams on the wire through ``send`` from now on: for a
        driver whose transport exists only after the core does."""
        self._send = send

    def next_deadline(self) -> Optional[float]:
        """The earliest time at which :meth:`handle_timer` has work to do
        (minus infinity: at once)."""
        if self._releasable:
            return _NOW
        best = None
        for queue in (
            self._heap, self._empty_ack_queue, self._dedup_expiry_con, self._dedup_expiry_non,
            self._delayed, self._tracked_expiry,
        ):
            if queue:
                candidate = queue[0][0]
                if best is None or candidate < best:
                    best = candidate
        return best

    def handle_timer(self, now: float) -> None:
        """Do everything that is due at ``now``: retransmissions, timeouts,
        empty ACKs, delayed multicast responses, dedup expiry, and sending
        messages whose turn came."""
        if self._releasable:
            releasable, self._releasable = self._releasable, set()
            for remote in releasable:
                peer = self._exchanges.get(remote)
                if peer is not None:
                    self._drain(remote, peer, now)
        # Entries of requests answered meanwhile go too, due or not, so that
        # the next deadline is that of one still unanswered (else a server
        # answering a request at a time would wake for each one's).
        queue = self._empty_ack_queue
        dedup = self._dedup
        while queue:
            deadline, key = queue[0]
            processing = dedup.get(key) == _PROCESSING
            if processing and deadline > now:
                break
            queue.popleft()
            if processing:
                remote, mid = key
                dedup[key] = _EMPTY_ACKED
                self._send(_empty(ACK, mid), remote)

        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            state = self._outgoing.get(key)
            if state is None or state.deadline != deadline:
                continue  # answered or rescheduled since
            self._on_outgoing_deadline(key, state, now)

        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, _, data, remote = heapq.heappop(delayed)
            self._send(data, remote)

        for buckets in (self._dedup_expiry_con, self._dedup_expiry_non):
            while buckets and buckets[0][0] <= now:
                self._forget_bucket(buckets.popleft())

        tracked_expiry = self._tracked_expiry
        while tracked_expiry and tracked_expiry[0][0] <= now:
            expired = tracked_expiry.popleft()[1]
            self._tracked_slots -= len(expired)
            for handle in expired:
                if handle.mid is None:
                    continue
                if handle.expiry > now:
                    self._file_tracked(handle)  # (taken over by a later notification)
                else:
                    self._untrack(handle)

    def _on_outgoing_deadline(self, key: tuple[Any, Any], state: _OutgoingMessage, now: float) -> None:
        if state.kind == _AWAITING_RESPONSE:
            # A NON request whose response never came.
            self._drop_outgoing(key)
            self._notify(state.monitor, error.RequestTimedOut(
                "No response to the non-confirmable request within %.3g s" % (now - state.start)
            ))
            return
        if state.transmissions > state.tuning.MAX_RETRANSMIT:
            self._drop_outgoing(key)
            self._exchange_ended(state.remote, now)
            self._notify(state.monitor, error.ConRetransmitsExceeded(
                "No acknowledgement received after %d transmissions in %.3g s"
                % (state.transmissions, now - state.start),
                transmissions=state.transmissions,
                waited=now - state.start,
            ))
            return
        state.transmissions += 1
        state.timeout *= state.backoff
        state.deadline = now + state.timeout
        heapq.heappush(self._heap, (state.deadline, next(self._seq), key))
        self._note(state.deadline)
        self.log.debug("Retransmitting MID %d to %r (transmission %d)", key[1], state.remote, state.transmissions)
        self._send(state.data, state.remote)

    def _notify(self, monitor: Optional[Callable[[Exception], None]], exc: Exception) -> None:
        if monitor is not None:
            try:
                monitor(exc)
            except Exception:
                self.log.exception("Error in a message error monitor")

    # --- incoming -------------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Any, now: float) -> None:
        """Process one datagram from ``remote``."""
        try:
            message = Message.decode(data, remote)
        except error.UnparsableMessage as e:
            self._unparsable_log.log(now, "Ignoring unparsable message from %r: %s", remote, e)
            if e.mtype is CON and e.mid is not None:
                self._send(_empty(RST, e.mid), remote)
            return
        self.receive_message(message, now)

    def receive_message(self, message: Message, now: float) -> None:
        """Process one decoded message (its ``remote`` set)."""
        self.log.debug("Incoming message %r", message)
        mtype = message.mtype
        if mtype is ACK or mtype is RST:
            self._receive_ack_or_rst(message, now)
            return

        code = message.code
        assert code is not None, "decoded messages always have a code"
        remote = message.remote
        key = (remote, message.mid)
        if code == EMPTY:
            if mtype is CON:
                self.log.debug("Answering CoAP ping from %r", remote)
                self._send(_empty(RST, message.mid), remote)
            return

        known = self._dedup.get(key)
        if known is not None:
            self._answer_duplicate(key, known)
            return

        # (code.is_request() and code.is_response(), inlined: this is the
        # path of every message)
        if REQUEST_START <= code < REQUEST_END:
            self._remember(key, _PROCESSING if mtype is CON else _NOTHING, mtype, now)
            if mtype is not CON:
                self._deliver_request(message)
                return
            self._pending_ack[(remote, message.token)] = message.mid
            try:
                self._deliver_request(message)
            finally:
                # Only a request not answered within its delivery (most are,
                # piggybacked) waits for an empty ACK; the deadline counts
                # from its arrival all the same.
                if self._dedup.get(key) == _PROCESSING:
                    deadline = now + self._tuning_of(message).EMPTY_ACK_DELAY
                    self._empty_ack_queue.append((deadline, key))
                    self._note(deadline)
            return

        if RESPONSE_START <= code < RESPONSE_END:
            if mtype is CON:
                ack = _empty(ACK, message.mid)
                self._remember(key, ack, CON, now)
                if self._deliver_response(message):
                    self._send(ack, remote)
                    if self._reachable is not None:
                        self._reachable(remote, now)
                else:
                    self._unmatched_log.log(now, "Response %r not recognized; sending RST", message)
                    rst = _empty(RST, message.mid)
                    self._dedup[key] = rst  # (as long as the ACK it replaces)
                    self._send(rst, remote)
            else:
                self._remember(key, _NOTHING, NON, now)
                if self._deliver_response(message):
                    if self._reachable is not None:
                        self._reachable(remote, now)
                else:
                    if message.opt.observe is not None:
                        self._unmatched_log.log(now, "Notification %r not recognized; sending RST", message)
                        rst = _empty(RST, message.mid)
                        self._dedup[key] = rst
                        self._dedup_bytes += len(rst)
                        self._send(rst, remote)
                    else:
                        self._unmatched_log.log(now, "Ignoring unknown response %r (which is not a CON)", message)
            return

        # Signalling codes or reserved classes have no business over UDP.
        if mtype is CON:
            self._send(_empty(RST, message.mid), remote)

    def _answer_duplicate(self, key: tuple[Any, Any], known: Union[int, bytes]) -> None:
        remote = key[0]
        if type(known) is bytes:
            self.log.debug("Answering duplicate MID %d from %r from cache", key[1], remote)
            self._send(known, remote)
        elif known == _EMPTY_ACKED:
            self._send(_empty(ACK, key[1]), remote)
        else:
            self.log.debug("Ignoring duplicate MID %d from %r (still processing)", key[1], remote)

    _BUCKET = 0.5
    """Width of a dedup expiry bucket in seconds: entries are kept between
    their lifetime and their lifetime plus this."""

    def _remember(self, key: tuple[Any, Any], state: Union[int, bytes], mtype: Optional[Type], now: float) -> None:
        dedup = self._dedup
        if len(dedup) >= self.max_dedup_entries:
            self._evict_oldest(now)
        dedup[key] = state
        if type(state) is bytes:
            self._dedup_bytes += len(state)
        if mtype is CON:
            buckets = self._dedup_expiry_con
            lifetime = self.tuning.EXCHANGE_LIFETIME
        else:
            buckets = self._dedup_expiry_non
            lifetime = self.tuning.NON_LIFETIME
        expiry = now + lifetime
        if buckets and buckets[-1][0] >= expiry:
            buckets[-1][1].append(key)
        else:
            buckets.append([expiry + self._BUCKET, [key]])
            self._note(expiry + self._BUCKET)

    def _evict_oldest(self, now: float) -> None:
        if now - self._last_cap_warning > 60:
            self._last_cap_warning = now
            self.log.warning(
                "Deduplication cache full (%d exchanges, %d bytes of replies; caps %d and %d); "
                "forgetting the oldest early",
                len(self._dedup), self._dedup_bytes, self.max_dedup_entries, self.max_dedup_bytes,
            )
        # Drop the oldest bucket (of whichever kind was created first) so the
        # eviction cost is amortized over many entries.
        con, non = self._dedup_expiry_con, self._dedup_expiry_non
        if con and (not non or con[0][0] - self.tuning.EXCHANGE_LIFETIME <= non[0][0] - self.tuning.NON_LIFETIME):
            bucket = con.popleft()
        elif non:
            bucket = non.popleft()
        else:
            return
        self._forget_bucket(bucket)

    def _evict_for_bytes(self, now: float) -> None:
        """Forget the oldest entries until the remembered replies fit
        ``max_dedup_bytes`` again."""
        while self._dedup_bytes > self.max_dedup_bytes and (self._dedup_expiry_con or self._dedup_expiry_non):
            self._evict_oldest(now)

    def _forget_bucket(self, bucket: list[Any]) -> None:
        dedup = self._dedup
        for key in bucket[1]:
            state = dedup.pop(key, None)
            if type(state) is bytes:
                self._dedup_bytes -= len(state)

    def _receive_ack_or_rst(self, message: Message, now: float) -> None:
        remote = message.remote
        key = (remote, message.mid)
        state = self._outgoing.get(key)
        if state is None and message.mtype is RST:
            tracked = self._tracked_at(remote, message.mid)
            if tracked is not None:
                monitor = tracked.monitor
                self._untrack(tracked)
                self._notify(monitor, error.ResetReceived("The peer answered with a Reset"))
                return
        if state is None or state.kind != _RETRANSMITTED:
            self._unmatched_log.log(
                now, "Received %s from %r, but could not match it to a running exchange (MID %d)",
                message.mtype, remote, message.mid,
            )
            return
        self._drop_outgoing(key)
        if self._reachable is not None:
            self._reachable(remote, now)
        if self.tuning.ADAPTIVE_RTO and not state.taken_over:
            self._rto_of(remote).sample(now - state.start, state.transmissions, now)
        self._exchange_ended(remote, now)
        if message.mtype is RST:
            self._notify(state.monitor, error.ResetReceived("The peer answered with a Reset"))
            return
        code = message.code
        if code == EMPTY:
            return  # separate response will follow
        if code is not None and code.is_response():
            self._deliver_response(message)

    # --- outgoing ---------------------------------------------------------------------

    def _tuning_of(self, message: Message) -> TransportTuning:
        return message.transport_tuning or self.tuning

    def _next_mid(self, remote: Any) -> int:
        mids = self._mids
        entry = mids.get(remote)
        if entry is None:
            mid = self._rng.randrange(0x10000)
            if len(mids) >= self.max_peers:
                # The peer we first sent to among those remembered (not
                # necessarily the least recently used one: keeping that
                # order would cost on every message). A forgotten peer
                # starts again at a random MID.
                del mids[next(iter(mids))]
            entry = mids[remote] = [mid]
        else:
            mid = entry[0]
        outgoing = self._outgoing
        tracked = self._tracked.get(remote)
        for _ in range(0x10000):
            if (not outgoing or (remote, mid) not in outgoing) and (
                tracked is None
                or (tracked.mid != mid if isinstance(tracked, _Tracked) else mid not in tracked)
            ):
                break
            mid = (mid + 1) & 0xFFFF
        else:
            raise error.Error("All 65536 message IDs to this peer are in use")
        entry[0] = (mid + 1) & 0xFFFF
        return mid

    def send_message(
        self,
        message: Message,
        now: float,
        monitor: Optional[Callable[[Exception], None]] = None,
        replacing: Optional[Callable[[], None]] = None,
    ) -> Optional[Callable[[], None]]:
        """Send a request or response; fill in type and MID as needed.

        Returns a function that stops retransmissions (and the NON request
        timeout) for the message, or None if there is nothing to stop.
        ``monitor(exc)`` is called when the message will not be processed
        (see interfaces.TokenInterface.send_message). A response sent
        ``replacing`` an earlier one (what this returned for it) takes over
        the earlier one's confirmable exchange if that is still in flight
        (see :meth:`_take_over`), takes its tracking over if both are NON
        notifications, and stops it in any case."""
        remote = message.remote
        recycled = None
        code = message.code
        if code is None:
            raise ValueError("Can not send a message without a code")
        # (code.is_response() and .is_request(), inlined here: this is the
        # path of every message sent)
        is_request = REQUEST_START <= code < REQUEST_END
        if RESPONSE_START <= code < RESPONSE_END:
            # (most responses to be sent are notifications, with no request
            # waiting for its ACK at all)
            request_mid = self._pending_ack.pop((remote, message.token), None) if self._pending_ack else None
            if getattr(remote, "is_multicast_locally", False):
                return self._send_multicast_response(message, request_mid, now)
            if request_mid is not None:
                dedup_key = (remote, request_mid)
                if self._dedup.get(dedup_key) == _PROCESSING:
                    if message.mtype is None or message.mtype is ACK:
                        message.mtype = ACK
                        message.mid = request_mid
                        data = message.encode()
                        self._dedup[dedup_key] = data
                        self._dedup_bytes += len(data)
                        if self._dedup_bytes > self.max_dedup_bytes:
                            self._evict_for_bytes(now)
                        self._send(data, remote)
                        return None
                elif message.mtype is ACK:
                    message.mtype = None
            if type(replacing) is _Tracked and replacing.layer is self:
                recycled = replacing  # (see below)
            elif replacing is not None:
                taken = self._take_over(replacing, message, monitor, now)
                if taken is not None:
                    return taken
        tuning = message.transport_tuning or self.tuning
        mtype = message.mtype
        if mtype is None:
            # (requests to multicast addresses are NON by the token layer)
            mtype = message.mtype = NON if tuning.reliability is False else CON
        if recycled is not None and (mtype is not NON or monitor is None or recycled.remote != remote):
            recycled()
            recycled = None
        if mtype is CON and getattr(remote, "is_multicast", False):
            raise error.ConToMulticast()
        if message.mid is None:
            message.mid = self._next_mid(remote)
        data = message.encode()
        key = (remote, message.mid)

        if mtype is NON and monitor is not None and not is_request:
            return self._send_tracked(data, remote, message.mid, monitor, now + tuning.EXCHANGE_LIFETIME, recycled)
        if mtype is CON:
            state = _OutgoingMessage(data, remote, 0.0, monitor, 0.0, now, tuning, _WAITING, key)
            peer = self._exchanges.get(remote)
            if peer is None:
                peer = self._exchanges[remote] = PeerExchanges()
            if peer.waiting >= self.max_queued_per_peer:
                self._forget_if_idle(remote, peer)
                self._notify(monitor, error.SendQueueFull(
                    "%d confirmable messages already wait for their turn to %r" % (peer.waiting, remote)
                ))
                return None
            self._add_outgoing(key, state)
            if peer.active < self.tuning.NSTART and not peer.waiting:
                self._start_exchange(state, peer, now)
            else:
                self.log.debug("Message to %r waits for its turn (%d outstanding)", remote, peer.active)
                peer.queue.append(state)
                peer.waiting += 1
                state.deadline = _NEVER
        elif mtype is NON and is_request:
            deadline = now + tuning.request_timeout
            state = _OutgoingMessage(None, remote, 0.0, monitor, deadline, now, tuning, _AWAITING_RESPONSE, key)
            self._add_outgoing(key, state)
            self._schedule(state)
            self._send(data, remote)
        else:
            self._send(data, remote)
            return None
        return _Stop(self, state)

    def _stop(self, state: _OutgoingMessage) -> None:
        """The sender lost interest in ``state`` (see :class:`_Stop`)."""
        key = state.key
        if self._outgoing.get(key) is not state:
            return
        self._drop_outgoing(key)
        remote = state.remote
        if state.kind == _RETRANSMITTED:
            self._exchange_ended(remote, None)
        elif state.kind == _WAITING:
            peer = self._exchanges[remote]
            peer.waiting -= 1
            self._forget_if_idle(remote, peer)

    def _take_over(
        self,
        previous: Callable[[], None],
        message: Message,
        monitor: Optional[Callable[[Exception], None]],
        now: float,
    ) -> Optional[Callable[[], None]]:
        """Send the response ``message`` in place of the earlier one that
        ``previous`` (what :meth:`send_message` returned for it) stops.

        While the earlier one is a confirmable exchange still in flight,
        the new one takes it over (RFC 7641 §4.5.2): it goes out
        confirmable with a message ID of its own (the peer must not take it
        for a duplicate), and keeps the retransmission counter and the
        running timeout, so that a peer that never acknowledges is given up
        on after MAX_RETRANSMIT however often notifications replace each
        other. One still waiting for its turn (NSTART) is replaced where it
        waits. Returns the handle of the exchange, or None if there was
        nothing to take over (the caller then sends as usual)."""
        state = previous.state if type(previous) is _Stop and previous.layer is self else None
        if state is None or self._outgoing.get(state.key) is not state or state.kind == _AWAITING_RESPONSE \
                or state.remote != message.remote:
            previous()
            return None
        message.mtype = CON
        if state.kind == _WAITING:
            # (never sent: its message ID can go to the replacement)
            message.mid = state.key[1]
        else:
            self._drop_outgoing(state.key)
            message.mid = self._next_mid(state.remote)
            state.key = (state.remote, message.mid)
            state.taken_over = True
            self._add_outgoing(state.key, state)
            self._schedule(state)
        state.data = message.encode()
        state.monitor = monitor
        if state.kind == _RETRANSMITTED:
            self._send(state.data, state.remote)
        return previous

    def _schedule(self, state: _OutgoingMessage) -> None:
        heap = self._heap
        if len(heap) > 2 * len(self._outgoing) + 1024:
            self._compact_heap()
        heapq.heappush(heap, (state.deadline, next(self._seq), state.key))
        self._note(state.deadline)

    def _start_exchange(self, state: _OutgoingMessage, peer: PeerExchanges, now: float) -> None:
        """Put a CON on the wire for the first time: it becomes one of the
        peer's outstanding exchanges, with its retransmission schedule."""
        tuning = state.tuning
        if self.tuning.ADAPTIVE_RTO:
            rto = self._rto_of(state.remote).rto(now)
            state.backoff = RtoEstimator.backoff_factor(rto)
        else:
            rto = tuning.ACK_TIMEOUT
        timeout = rto * self._rng.uniform(1, tuning.ACK_RANDOM_FACTOR)
        state.kind = _RETRANSMITTED
        state.timeout = timeout
        state.start = now
        state.deadline = now + timeout
        peer.active += 1
        self._schedule(state)
        self._send(state.data, state.remote)

    def _exchange_ended(self, remote: Any, now: Optional[float]) -> None:
        """One of the outstanding CON exchanges with ``remote`` ended: let
        waiting messages go out (now, or at the next handle_timer if the
        time is not known here)."""
        peer = self._exchanges[remote]
        peer.active -= 1
        if not peer.waiting:
            self._forget_if_idle(remote, peer)
        elif now is not None:
            self._drain(remote, peer, now)
        else:
            self._releasable.add(remote)
            self._note(_NOW)
            if self._wakeup is not None:
                self._wakeup()

    def _drain(self, remote: Any, peer: PeerExchanges, now: float) -> None:
        """Send waiting messages to ``remote`` while NSTART allows."""
        queue = peer.queue
        outgoing = self._outgoing
        nstart = self.tuning.NSTART
        while peer.waiting and peer.active < nstart:
            state: _OutgoingMessage = queue.popleft()
            if outgoing.get(state.key) is not state or state.kind != _WAITING:
                continue  # (its sender lost interest, or it timed out)
            peer.waiting -= 1
            self._start_exchange(state, peer, now)
        if not peer.waiting:
            queue.clear()
        self._forget_if_idle(remote, peer)

    def _forget_if_idle(self, remote: Any, peer: PeerExchanges) -> None:
        if peer.idle and self._exchanges.get(remote) is peer:
            del self._exchanges[remote]

    def _rto_of(self, remote: Any) -> RtoEstimator:
        rtos = self._rtos
        estimator = rtos.get(remote)
        if estimator is None:
            if len(rtos) >= self.max_peers:
                del rtos[next(iter(rtos))]  # (as for _mids)
            estimator = rtos[remote] = RtoEstimator(self.tuning.ACK_TIMEOUT)
        return estimator

    def _send_tracked(
        self,
        data: bytes,
        remote: Any,
        mid: int,
        monitor: Callable[[Exception], None],
        expiry: float,
        recycled: Optional[_Tracked],
    ) -> _Tracked:
        """Send a NON notification and remember it until ``expiry`` so that
        a Reset to it reaches ``monitor``; ``recycled``, the tracking of the
        notification this one replaces (still live), is taken over."""
        if recycled is not None and recycled.mid is not None:
            handle = recycled
            self._untrack(handle)
            # (it stays in its expiry bucket, which files it again when it
            # comes due before the new expiry)
            handle.mid = mid
            handle.monitor = monitor
            handle.expiry = expiry
            self._track(handle)
        else:
            handle = _Tracked(remote, mid, monitor, self, expiry)
            self._track(handle)
            if self._tracked_slots > 2 * self._tracked_count + 1024:
                self._compact_tracked()
            self._file_tracked(handle)
        self._send(data, remote)
        return handle

    def _file_tracked(self, handle: _Tracked) -> None:
        """Put ``handle`` into the expiry bucket of its expiry."""
        expiry = handle.expiry
        self._tracked_slots += 1
        buckets = self._tracked_expiry
        if buckets and buckets[-1][0] >= expiry:
            buckets[-1][1].append(handle)
        else:
            # Later lifetimes only ever join or follow the last bucket, so a
            # shorter one (another tuning) is at worst kept a little longer.
            expiry += self._BUCKET
            buckets.append([expiry, [handle]])
            self._note(expiry)

    def _tracked_at(self, remote: Any, mid: Optional[int]) -> Optional[_Tracked]:
        found = self._tracked.get(remote)
        if found is None:
            return None
        if isinstance(found, _Tracked):
            return found if found.mid == mid else None
        return found.get(mid) if mid is not None else None

    def _track(self, handle: _Tracked) -> None:
        """Track ``handle`` (live) under its remote and MID."""
        mid = handle.mid
        assert mid is not None, "only a live handle is tracked"
        tracked = self._tracked
        remote = handle.remote
        found = tracked.get(remote)
        if found is None:
            tracked[remote] = handle
        elif isinstance(found, _Tracked):
            tracked[remote] = _TrackedMids(((found.mid, found), (mid, handle)))  # type: ignore[arg-type]
        else:
            found[mid] = handle
        self._tracked_count += 1

    def _untrack(self, handle: _Tracked) -> None:
        """Stop tracking ``handle`` (live; its expiry came, a Reset to it
        came, or its sender stopped it); its MID and monitor are
        forgotten."""
        mid = handle.mid
        assert mid is not None, "only a live handle is untracked"
        tracked = self._tracked
        remote = handle.remote
        found = tracked.get(remote)
        if found is handle:
            del tracked[remote]
        elif isinstance(found, _TrackedMids) and found.get(mid) is handle:
            del found[mid]
            if not found:
                del tracked[remote]
        handle.mid = handle.monitor = None
        self._tracked_count -= 1

    def _add_outgoing(self, key: tuple[Any, Any], state: _OutgoingMessage) -> None:
        self._outgoing[key] = state
        self._keys_by_remote.add(key[0], key)

    def _drop_outgoing(self, key: tuple[Any, Any]) -> None:
        del self._outgoing[key]
        self._keys_by_remote.discard(key[0], key)

    def _compact_tracked(self) -> None:
        """Drop stopped handles from the expiry buckets: a notification that
        a newer one superseded stops being tracked at once, but its bucket
        slot would otherwise keep it alive until its expiry."""
        slots = 0
        for bucket in self._tracked_expiry:
            live = [h for h in bucket[1] if h.mid is not None]
            bucket[1] = live
            slots += len(live)
        self._tracked_slots = slots

    def _compact_heap(self) -> None:
        """Drop the heap entries of exchanges that ended early (ACKed,
        stopped, replaced notifications): entries are deleted lazily, and
        without this their number would grow with the message rate times
        the longest deadline rather than with the exchanges alive."""
        heap = [(s.deadline, next(self._seq), k) for k, s in self._outgoing.items() if s.kind != _WAITING]
        heapq.heapify(heap)
        self._heap[:] = heap

    def _send_multicast_response(
        self, message: Message, request_mid: Optional[int], now: float
    ) -> Optional[Callable[[], None]]:
        if message.code is None or not message.code.is_successful() and not _is_echo_challenge(message):
            self.log.debug("Not sending error response %s to a multicast request", message.code)
            if request_mid is not None:
                self._dedup[(message.remote, request_mid)] = _NOTHING
            return None
        message.mtype = NON
        if message.mid is None:
            message.mid = self._next_mid(message.remote)
        data = message.encode()
        delay = self._rng.uniform(0, self._tuning_of(message).DEFAULT_LEISURE)
        heapq.heappush(self._delayed, (now + delay, next(self._seq), data, message.remote))
        self._note(now + delay)
        return None

    def no_response_for(self, remote: Any, token: bytes) -> None:
        """The request (remote, token) will not be answered (its response was
        suppressed by No-Response or the resource returned NoResponse): a
        CON gets its empty ACK now, and a duplicate gets the same."""
        request_mid = self._pending_ack.pop((remote, token), None)
        if request_mid is None:
            return
        key = (remote, request_mid)
        if self._dedup.get(key) == _PROCESSING:
            ack = _empty(ACK, request_mid)
            self._dedup[key] = ack
            self._dedup_bytes += len(ack)
            self._send(ack, remote)

    # --- errors and shutdown -----------------------------------------------------------

    def fail_remote(self, remote: Any, exc: Exception) -> None:
        """The network reported an error for ``remote``: stop every exchange
        with it and tell the senders."""
        self._exchanges.pop(remote, None)
        self._releasable.discard(remote)
        outgoing = self._outgoing
        for key in self._keys_by_remote.pop(remote):
            state = outgoing.pop(key, None)
            if state is not None:
                self._notify(state.monitor, exc)
        for handle in _handles(self._tracked.get(remote)):
            monitor = handle.monitor
            self._untrack(handle)
            self._notify(monitor, exc)

    def shutdown(self) -> None:
        """Fail everything in flight with error.LibraryShutdown and forget
        all state."""
        outgoing, self._outgoing = self._outgoing, {}
        self._keys_by_remote.clear()
        self._exchanges.clear()
        self._releasable.clear()
        self._rtos.clear()
        for state in outgoing.values():
            self._notify(state.monitor, error.LibraryShutdown())
        tracked, self._tracked = self._tracked, {}
        self._tracked_count = 0
        for found in tracked.values():
            for handle in _handles(found):
                monitor = handle.monitor
                handle.mid = handle.monitor = None
                self._notify(monitor, error.LibraryShutdown())
        self._tracked_expiry.clear()
        self._tracked_slots = 0
        self._heap.clear()
        self._delayed.clear()
        self._empty_ack_queue.clear()
        self._pending_ack.clear()
        self._dedup.clear()
        self._dedup_bytes = 0
        self._dedup_expiry_con.clear()
        self._dedup_expiry_non.clear()
        self._mids.clear()


class MessageManager(interfaces.TokenInterface, interfaces.MessageManager):
    """Drives a :class:`MessageLayer` on an asyncio loop for one
    MessageInterface (a UDP transport), and serves as the TokenInterface the
    token layer sends through."""

    def __init__(
        self,
        token_manager: interfaces.TokenManager,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        tuning: TransportTuning = DEFAULT_TUNING,
        **core_args: Any,
    ) -> None:
        self.token_manager = token_manager
        self.log = log
        self.loop = loop
        self.message_interface: Optional[interfaces.MessageInterface] = None
        self._raw_send: Callable[[bytes, object], None] = self._send_decoded
        self._clock = clock_of(loop)  # (loop.time, read for every message)
        self._timer: Optional[asyncio.Handle] = None
        self._timer_at: Any = None  # (the deadline, a float, while _timer is set)
        process_request = token_manager.process_request
        self._core = MessageLayer(
            send=self._send_datagram,
            deliver_request=lambda message: process_request(message, self),
            deliver_response=token_manager.process_response,
            log=log,
            tuning=tuning,
            wakeup=self._wakeup,
            **core_args,
        )

    @classmethod
    async def create(
        cls,
        token_manager: interfaces.TokenManager,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        interface_factory: Callable[[MessageManager], Awaitable[interfaces.MessageInterface]],
        **kwargs: Any,
    ) -> "MessageManager":
        """Build the manager and its transport: ``await
        interface_factory(manager)`` must return the MessageInterface that
        reports to this manager."""
        self = cls(token_manager, log, loop, **kwargs)
        self.message_interface = await interface_factory(self)
        send_bytes = getattr(self.message_interface, "send_bytes", None)
        if send_bytes is not None:
            self._raw_send = send_bytes
            # (the message layer sends through it directly: one call less
            # for every message)
            self._core.replace_send(send_bytes)
        return self

    @property
    def client_credentials(self) -> Optional[CredentialsMap]:
        return getattr(self.token_manager, "client_credentials", None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.message_interface!r}>"

    # --- timer ---------------------------------------------------------------------

    def _rearm(self) -> None:
        core = self._core
        if core.added_deadline is None:
            return  # (most messages add no deadline)
        deadline = core.take_added_deadline()
        assert deadline is not None
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        self._timer_at = deadline
        if deadline == _NOW:
            self._timer = self.loop.call_soon(self._on_timer)
        else:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _wakeup(self) -> None:
        # (the core has work due at once, found outside a call of ours)
        if self._timer is not None:
            if self._timer_at == _NOW:
                return
            self._timer.cancel()
        self._arm(_NOW)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        core = self._core
        core.handle_timer(self._clock())
        core.take_added_deadline()  # superseded by the full computation
        deadline = core.next_deadline()
        if deadline is not None:
            self._arm(deadline)

    # --- transport side (interfaces.MessageManager) ---------------------------------------

    def _send_datagram(self, data: bytes, remote: Any) -> None:
        self._raw_send(data, remote)

    def _send_decoded(self, data: bytes, remote: Any) -> None:
        # Transports that only implement the documented send(message) get
        # the message rebuilt; ours offer send_bytes (see create()).
        assert self.message_interface is not None
        self.message_interface.send(Message.decode(data, remote))

    def dispatch_datagram(self, data: bytes, remote: Any) -> None:
        core = self._core
        core.receive_datagram(data, remote, self._clock())
        if core.added_deadline is not None:
            self._rearm()

    def dispatch_message(self, message: Message) -> None:
        self._core.receive_message(message, self._clock())
        self._rearm()

    def dispatch_error(self, exception: Exception, remote: Any) -> None:
        wrapped: error.Error
        if not isinstance(exception, error.Error):
            wrapped = error.NetworkError(str(exception) or type(exception).__name__)
            wrapped.__cause__ = exception
        else:
            wrapped = exception
        self.log.debug("Network error for %r: %s", remote, exception)
        self._core.fail_remote(remote, wrapped)
        self.token_manager.dispatch_error(wrapped, remote)

    # --- token layer side (interfaces.TokenInterface) -----------------------------------

    def send_message(
        self, message: Message, messageerror_monitor: Optional[Callable[[Exception], None]] = None
    ) -> Optional[Callable[[], None]]:
        return self._send_message(message, messageerror_monitor, None)

    def send_message_replacing(
        self, message: Message, previous: Callable[[], None], messageerror_monitor: Optional[Callable[[Exception], None]] = None
    ) -> Optional[Callable[[], None]]:
        """As :meth:`send_message`; a confirmable exchange of ``previous``
        still in flight is taken over (see :meth:`MessageLayer._take_over`)."""
        return self._send_message(message, messageerror_monitor, previous)

    def _send_message(
        self,
        message: Message,
        messageerror_monitor: Optional[Callable[[Exception], None]],
        previous: Optional[Callable[[], None]],
    ) -> Optional[Callable[[], None]]:
        if _NO_RESPONSE in message.opt and message.code is not None and message.code.is_response():
            # On a response, the option carries the request's wish (RFC 7967);
            # it is acted upon here and never sent.
            suppress = no_response_suppresses(message.opt.no_response, message.code)
            message.opt.no_response = None
            if suppress:
                if previous is not None:
                    previous()
                self._core.no_response_for(message.remote, message.token)
                self._rearm()
                return None
        core = self._core
        stop = core.send_message(message, self._clock(), messageerror_monitor, previous)
        if core.added_deadline is not None:
            self._rearm()
        return stop

    def no_response_for(self, remote: Any, token: bytes) -> None:
        """Tell the message layer that a request will not be answered."""
        self._core.no_response_for(remote, token)
        self._rearm()

    def recognize_remote(self, remote: Any) -> bool:
        return self.message_interface is not None and self.message_interface.recognize_remote(remote)

    async def fill_or_recognize_remote(self, message: Message) -> bool:
        if self.message_interface is None:
            return False
        remote = message.remote
        if (
            remote is not None
            and not isinstance(remote, UndecidedRemote)
            and self.message_interface.recognize_remote(remote)
        ):
            return True
        resolved = await self.message_interface.determine_remote(message)
        if resolved is None:
            return False
        message.remote = resolved
        return True

    async def shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._core.shutdown()
        if self.message_interface is not None:
            await self.message_interface.shutdown()
