"""The token layer: tokens for outgoing requests, matching responses to
requests, and turning incoming requests into pipes for the Context.

Rules enforced here:

* Tokens are 4 random bytes from :mod:`secrets` (RFC 7252 §5.3.1 asks for
  at least 32 random bits on unsecured transports), unique among the
  requests in flight to the same remote. They are cut from random bytes
  drawn for many tokens at a time (:class:`aiocoap.util.secrets.RandomChunks`).
* A response matches a request by (token, remote); responses to a multicast
  request are accepted from any member of the group.
* A response nobody waits for is reported as unmatched, so the message
  layer can RST a CON (or drop a NON).
* A NON request gets NON responses, unless the response's
  ``transport_tuning.reliability`` says otherwise.
* A client's observation stays registered for as long as notifications are
  successful and carry Observe; anything else is its last event.
* Notifications older than the newest one seen are dropped (RFC 7641 §3.4:
  24-bit sequence comparison with the 128 s freshness window) unless the
  transport is reliable (RFC 8323 §7.1).
* When the requester loses interest in an established observation, a GET
  with Observe: 1 and the same token goes out (active cancellation); its
  answer and stray notifications are accepted quietly until then, and
  rejected afterwards.
* When the freshness (Max-Age) of the latest notification runs out without a
  new one, the request is sent again with the same token (re-registration);
  only a failure of that is reported.
* On shutdown, observers of this server get a final 5.03 notification.
* A 4.01 Unauthorized with an Echo option (RFC 9175: a server that wants
  the request proven fresh or its sender reachable, see
  :mod:`aiocoap.amplification`) makes the request go out once more with
  that Echo value and the same token, without the requester noticing; a
  second challenge to the same request is its response. A challenge to a
  multicast request makes it go to that server once more by unicast (to
  at most :data:`MAX_MULTICAST_ECHO_REPEATS` servers per request); the
  answer counts among the multicast request's responses.
* An incoming request with the token and remote of a running observation
  replaces it (re-registration), and ends it when it is a GET without
  Observe or with Observe: 1 (RFC 7641 §3.6, §4.1).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from typing import Any, Callable, Hashable, Optional, cast

from . import error, interfaces
from .message import Message
from .numbers.codes import RESPONSE_START, SUCCESSFUL_END, Code
from .numbers.optionnumbers import OptionNumber
from .numbers.types import Type
from .pipe import Event, Pipe
from .util.echo import repeat_with_echo
from .util.asyncio import clock_of
from .util.asyncio.timer import DeadlineTimer
from .util.keyindex import GroupedDict
from .util.secrets import RandomChunks

__all__ = ["TokenManager"]

NON = Type.NON
_UNAUTHORIZED = Code.UNAUTHORIZED
_OSCORE = OptionNumber.OSCORE
_new_tuple = tuple.__new__

OBSERVE_FRESHNESS = 128.0
"""Seconds after which any notification counts as newer (RFC 7641 §3.4)."""

REREGISTRATION_MARGIN = 2.0
"""Seconds to wait past a notification's Max-Age before re-registering."""

MAX_MULTICAST_ECHO_REPEATS = 64
"""To how many servers that challenged it a multicast request is repeated
by unicast with their Echo value."""

TOKEN_LENGTH = 4
"""Bytes of the tokens of requests we send (RFC 7252 §5.3.1 asks for at
least 32 random bits)."""

REREGISTRATION_GRANULARITY = 0.25
"""Re-registrations go out at most this many seconds after they are due
(their timing is shared in buckets of this width)."""


def notification_is_fresher(old_seq: int, old_time: float, new_seq: int, new_time: float) -> bool:
    """RFC 7641 §3.4: is the notification (new_seq, new_time) newer than the
    one seen as (old_seq, old_time)?

    >>> notification_is_fresher(5, 0.0, 6, 1.0), notification_is_fresher(6, 0.0, 5, 1.0)
    (True, False)
    >>> notification_is_fresher(0xFFFFFF, 0.0, 2, 1.0)  # wrapped around
    True
    >>> notification_is_fresher(6, 0.0, 5, 200.0)  # too old to compare
    True
    """
    return (
        (old_seq < new_seq and new_seq - old_seq < 1 << 23)
        or (old_seq > new_seq and old_seq - new_seq > 1 << 23)
        or new_time > old_time + OBSERVE_FRESHNESS
    )


class _OutgoingRequest:
    """Book-keeping of one request we sent. ``pipe`` is None for the
    cancellation of an observation (a GET with Observe: 1), whose answer is
    only accepted, not delivered."""

    __slots__ = (
        "pipe", "stop", "observing", "established", "last_seq", "last_time", "timer_at", "deadline", "ti", "key",
        "echo_retried", "echo_repeated_to",
    )

    def __init__(self, pipe: Optional[Pipe], observing: bool, ti: interfaces.TokenInterface):
        self.pipe = pipe
        self.stop: Optional[Callable[[], None]] = None
        self.observing = observing
        self.established = False
        self.last_seq = 0
        self.last_time = 0.0
        # The re-registration bucket the state is filed in (0: none); it may
        # come due before ``deadline`` (a later notification moved that),
        # and the state is filed again then (see TokenManager).
        self.timer_at = 0
        self.key: Any = None
        self.deadline = 0.0
        self.ti = ti
        self.echo_retried = False
        # (multicast requests: the servers it was repeated to with their
        # Echo value)
        self.echo_repeated_to: Optional[set[Any]] = None


# An incoming request is served by up to three small objects, one per
# callback the lower and upper layers want: the pipe's event sink
# (_ResponseSender), and for an observation the monitor of its notifications
# (_NotificationMonitor) and the hook that removes it from the table when
# interest ends (_ObservationEntry). Separate slotted objects are smaller
# than bound methods, and an observation keeps them for its whole life.


class _NotificationMonitor:
    """The message layer's monitor of an observation's notifications: when
    one fails (a Reset, retransmissions exhausted), the observer is gone,
    and the observation ends. Also holds the function that stops the latest
    notification's delivery, which the next one supersedes."""

    __slots__ = ("pipe", "stop_latest")

    def __init__(self, pipe: Pipe):
        self.pipe = pipe
        self.stop_latest: Optional[Callable[[], None]] = None

    def __call__(self, exc: Exception) -> None:
        pipe = self.pipe
        pipe.log.debug("Observation by %r ends: %r", pipe.request.remote, exc)
        pipe.stop_interest()


class _ObservationEntry:
    """Ends what the token layer keeps of an incoming observation when its
    pipe's interest ends: removes it from the table (unless a newer
    registration took its place), and stops its latest notification, so
    that nothing of the observation waits in the message layer for a
    Reset or an acknowledgement that would change nothing any more."""

    # (the key is recomputed when it is needed, rather than kept: this
    # object lives as long as the observation)
    __slots__ = ("table", "pipe", "monitor")

    def __init__(self, table: dict[Any, Pipe], pipe: Pipe, monitor: _NotificationMonitor):
        self.table = table
        self.pipe = pipe
        self.monitor = monitor

    def __call__(self) -> None:
        request = self.pipe.request
        key = (request.token, request.remote)
        table = self.table
        if table.get(key) is self.pipe:
            del table[key]
        monitor = self.monitor
        stop, monitor.stop_latest = monitor.stop_latest, None
        if stop is not None:
            stop()


class _ResponseSender:
    """The event sink of an incoming request's pipe: sends what the Context
    renders (the response, or an observation's notifications) back through
    the TokenInterface the request came from."""

    __slots__ = ("pipe", "ti", "response_remote", "monitor")

    def __init__(self, pipe: Pipe, ti: interfaces.TokenInterface, monitor: Optional[_NotificationMonitor]):
        self.pipe = pipe
        self.ti = ti
        self.response_remote: Optional[interfaces.EndpointAddress] = None
        self.monitor = monitor

    def __call__(self, event: Event) -> bool:
        request = self.pipe.request
        message = event.message
        if message is None:
            if event.exception is not None:
                self.pipe.log.error("Error rendering %r: %r", request, event.exception)
                message = Message(code=Code.INTERNAL_SERVER_ERROR)
            else:
                no_response = getattr(self.ti, "no_response_for", None)
                if no_response is not None:
                    no_response(request.remote, request.token)
                return False
        message.token = request.token
        if message.code is None:
            # (as for what a resource's render returns: a response added
            # to the pipe directly, by a render_to_pipe, may leave it out)
            message.code = Code.CONTENT
        remote = self.response_remote
        if remote is None:
            remote = self.response_remote = cast(interfaces.EndpointAddress, request.remote).as_response_address()
        message.remote = remote
        if request.mtype is NON and message.mtype is None:
            tuning = message.transport_tuning
            if tuning is None or tuning.reliability is None:
                # (a tuning that asks for reliability or not decides alone,
                # in the message layer)
                message.mtype = NON
        monitor = self.monitor
        previous = None
        if monitor is not None:
            previous, monitor.stop_latest = monitor.stop_latest, None
        if previous is not None:
            # A newer notification supersedes the previous one: it takes
            # over a confirmable one's retransmission (RFC 7641 §4.5.2),
            # and a Reset to the previous one is not listened for any more.
            assert monitor is not None, "only notifications have a previous one"
            if event.is_last:
                self.ti.send_message_replacing(message, previous, None)
                return False
            monitor.stop_latest = self.ti.send_message_replacing(message, previous, monitor)
            return True
        if event.is_last:
            self.ti.send_message(message, None)
            return False
        stop = self.ti.send_message(message, monitor)
        if monitor is not None:
            monitor.stop_latest = stop
        return True


class _RequestEnd:
    """The interest-end callback of a request we sent (smaller than a
    closure, and kept for the whole life of an observation). Its
    :meth:`poke` (see :meth:`Pipe.poke`) re-registers an observation."""

    __slots__ = ("manager", "table", "state")

    def __init__(self, manager: "TokenManager", table: dict[Any, _OutgoingRequest], state: _OutgoingRequest):
        self.manager = manager
        self.table = table
        self.state = state

    def __call__(self) -> None:
        state = self.state
        self.manager._interest_ended(state.key, self.table, state)

    def poke(self) -> None:
        state = self.state
        if state.observing and self.table is self.manager._outgoing:
            self.manager._reregister(state.key, state)


class TokenManager(interfaces.RequestInterface, interfaces.TokenManager):
    """Serves the Context as a RequestInterface and the TokenInterfaces
    (message managers, reliable transports) as their TokenManager.

    :param render_to_pipe: called with a :class:`Pipe` for every incoming
        request; the Context renders it and feeds the response events into
        it."""

    client_credentials = None
    """The CredentialsMap the transports below consult (the Context's
    client credentials)."""

    def __init__(
        self,
        render_to_pipe: Callable[[Pipe], None],
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        client_credentials: Any = None,
    ) -> None:
        self._render_to_pipe = render_to_pipe
        self.log = log
        self.loop = loop
        self._clock = clock_of(loop)  # (loop.time, read for every notification)
        self.client_credentials = client_credentials
        self.token_interfaces: list[interfaces.TokenInterface] = []
        # (token, remote) -> _OutgoingRequest; both tables keyed by (token,
        # remote) are indexed by remote, so that an error for a remote ends
        # its requests and observations without a scan of everyone's
        self._outgoing: GroupedDict = GroupedDict(group_at=1)
        self._outgoing_multicast: dict[Any, _OutgoingRequest] = {}  # token -> _OutgoingRequest
        # (token, remote) -> Pipe of an incoming observation
        self._observations: GroupedDict = GroupedDict(group_at=1)
        self.reregister_observations = True
        """Re-register client observations whose freshness ran out."""
        # Re-registration timing (see _arm_reregistration): bucket (a whole
        # second) -> states, the buckets in time order, one timer for all
        self._rereg_buckets: dict[int, list[_OutgoingRequest]] = {}
        self._rereg_order: list[int] = []
        self._rereg_filed = 0  # states filed (live entries)
        self._rereg_timer = DeadlineTimer(loop, self._reregistrations_due)
        self._shutting_down = False
        self._random_tokens = RandomChunks(TOKEN_LENGTH)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} with {len(self.token_interfaces)} transport(s)>"

    def _interface_for(self, remote: interfaces.EndpointAddress) -> Optional[interfaces.TokenInterface]:
        for ti in self.token_interfaces:
            if ti.recognize_remote(remote):
                return ti
        return None

    # --- RequestInterface (towards the Context) -------------------------------------

    async def fill_or_recognize_remote(self, message: Message) -> bool:
        for ti in self.token_interfaces:
            if await ti.fill_or_recognize_remote(message):
                return True
        return False

    def next_token(self) -> bytes:
        """A fresh token: :data:`TOKEN_LENGTH` random bytes from
        :mod:`secrets`. Requests get one that is also unique among those
        in flight to their remote."""
        return self._random_tokens()

    def _new_token(self, remote: interfaces.EndpointAddress) -> bytes:
        while True:
            token = self.next_token()
            if (token, remote) not in self._outgoing and token not in self._outgoing_multicast:
                return token

    def request(self, pipe: Pipe) -> None:
        message = pipe.request
        remote = cast(interfaces.EndpointAddress, message.remote)  # (routed by the Context)
        ti = self._interface_for(remote)
        if ti is None:
            pipe.add_exception(error.NetworkError(f"No transport available for {remote!r}"))
            return
        multicast = getattr(remote, "is_multicast", False)
        if multicast:
            message.mtype = NON
        token = self._new_token(remote)
        message.token = token
        state = _OutgoingRequest(pipe, message.opt.observe == 0, ti)
        key: object
        if multicast:
            key = token
            table = self._outgoing_multicast
        else:
            key = (token, remote)
            table = self._outgoing
        table[key] = state
        state.key = key

        pipe.on_interest_end(_RequestEnd(self, table, state))
        self._send(state, key, table, message)

    def _interest_ended(self, key: Hashable, table: dict[Any, _OutgoingRequest], state: _OutgoingRequest) -> None:
        if table.get(key) is state:
            del table[key]
        if state.stop is not None:
            state.stop()
            state.stop = None
        self._unfile(state)
        if state.established and not self._shutting_down:
            self._deregister(key, state)

    def _send(
        self, state: _OutgoingRequest, key: Hashable, table: dict[Any, _OutgoingRequest], message: Message
    ) -> None:
        pipe = state.pipe

        def monitor(exc: Exception) -> None:
            if table.get(key) is state:
                del table[key]
            if pipe is not None:
                pipe.add_exception(exc)

        try:
            state.stop = state.ti.send_message(message, monitor)
        except Exception as e:
            self.log.debug("Sending %r failed: %r", message, e)
            if not isinstance(e, error.Error):
                wrapped = error.NetworkError(str(e) or type(e).__name__)
                wrapped.__cause__ = e
                e = wrapped
            monitor(e)

    def _deregister(self, key: Hashable, old: _OutgoingRequest) -> None:
        """Send a GET with Observe: 1 for an observation nobody wants any
        more, accepting its answer (and late notifications) quietly."""
        assert old.pipe is not None, "only established observations are cancelled"
        request = old.pipe.request
        cancellation = request.copy(mid=None, mtype=None if request.mtype is not NON else NON, observe=1)
        sink = _OutgoingRequest(None, False, old.ti)
        self._outgoing[key] = sink
        self.log.debug("Cancelling observation of %r", request)
        self._send(sink, key, self._outgoing, cancellation)

    def _reregister(self, key: Hashable, state: _OutgoingRequest) -> None:
        self._unfile(state)
        if self._outgoing.get(key) is not state or state.pipe is None or not state.pipe.is_interested:
            return
        if state.stop is not None:
            state.stop()
        request = state.pipe.request
        again = request.copy(mid=None, mtype=None if request.mtype is not NON else NON)
        state.established = False  # the server may restart its sequence
        state.echo_retried = False
        self.log.debug("Re-registering observation of %r", request)
        self._send(state, key, self._outgoing, again)

    def _arm_reregistration(self, key: Hashable, state: _OutgoingRequest) -> None:
        """File the observation for re-registration at ``state.deadline``.

        The observations share one timer and buckets of
        :data:`REREGISTRATION_GRANULARITY` seconds (a list slot each,
        where a timer handle per observation would cost a few hundred
        bytes), so a re-registration goes out up to that much after its
        deadline. A state whose deadline moved on by the time its bucket
        comes due is filed again; one whose ``timer_at`` no longer names
        the bucket was cancelled or filed elsewhere, and is skipped."""
        bucket = math.ceil(state.deadline / REREGISTRATION_GRANULARITY)
        if not state.timer_at:
            self._rereg_filed += 1
        state.timer_at = bucket
        entries = self._rereg_buckets.get(bucket)
        if entries is None:
            entries = self._rereg_buckets[bucket] = []
            heapq.heappush(self._rereg_order, bucket)
            self._rereg_timer.arm_before(bucket * REREGISTRATION_GRANULARITY)
        entries.append(state)

    def _unfile(self, state: _OutgoingRequest) -> None:
        """Take an observation out of re-registration timing."""
        if not state.timer_at:
            return
        state.timer_at = 0
        self._rereg_filed -= 1
        if not self._rereg_filed:
            # (no live entry left: the buckets hold only stale ones)
            self._rereg_timer.cancel()
            self._rereg_buckets.clear()
            self._rereg_order.clear()

    def _reregistrations_due(self) -> None:
        now = self._clock()
        order, buckets = self._rereg_order, self._rereg_buckets
        while order and order[0] * REREGISTRATION_GRANULARITY <= now:
            bucket = heapq.heappop(order)
            for state in buckets.pop(bucket):
                if state.timer_at != bucket:
                    continue
                # (by bucket numbers, not by time: a deadline a rounding
                # error past ``now`` may still belong to this very bucket,
                # and filing it there again would never end)
                if math.ceil(state.deadline / REREGISTRATION_GRANULARITY) > bucket:
                    state.timer_at = -1  # (filed again at once, still counted)
                    self._arm_reregistration(state.key, state)
                else:
                    self._reregister(state.key, state)
        self._rereg_timer.set(order[0] * REREGISTRATION_GRANULARITY if order else None)

    # --- TokenManager (towards the transports) ---------------------------------------

    def process_response(self, response: Message) -> bool:
        key = (response.token, response.remote)
        state = self._outgoing.get(key)
        is_multicast = False
        if state is None:
            state = self._outgoing_multicast.get(response.token)
            if state is None:
                return False
            is_multicast = True
        if state.stop is not None:
            # The response implies the request arrived: no retransmissions
            # (and no NON timeout) any more.
            state.stop()
            state.stop = None
        if state.pipe is None:
            # The answer to a deregistration, or a notification that crossed
            # it: accepted, not delivered; the first non-notification ends it.
            if response.opt.observe is None:
                del self._outgoing[key]
            return True
        code = response.code
        assert code is not None, "decoded messages always have a code"
        if code == _UNAUTHORIZED and is_multicast and self._repeat_to_member(state, response):
            return True
        if code == _UNAUTHORIZED and not is_multicast and not state.echo_retried and _OSCORE not in state.pipe.request.opt:
            # (an OSCORE request can not go out again as it is: the server
            # saw its sequence number; the OSCORE transport protects it anew)
            request = state.pipe.request
            again = repeat_with_echo(request, response, mid=None, mtype=None if request.mtype is not NON else NON)
            if again is not None:
                self.log.debug("Repeating %r with the Echo value of a 4.01 response", request)
                state.echo_retried = True
                state.established = False  # (a new observation may start a new sequence)
                self._send(state, key, self._outgoing, again)
                return True
        options = response.opt
        seq = options.observe
        if is_multicast:
            is_last = False
        elif seq is not None and state.observing and RESPONSE_START <= code < SUCCESSFUL_END:
            is_last = False
            now = self._clock()
            last_seq = state.last_seq
            if (
                state.established
                # (the common case of notification_is_fresher first)
                and not last_seq < seq < last_seq + 0x800000
                and not getattr(response.remote, "reliable_transport", False)
                and not notification_is_fresher(last_seq, state.last_time, seq, now)
            ):
                self.log.debug("Dropping stale notification %d (have %d)", seq, last_seq)
                return True
            state.established = True
            # (a later challenge, when the server forgot us, is answered again)
            state.echo_retried = False
            state.last_seq = seq
            state.last_time = now
            if self.reregister_observations:
                # Every notification moves the deadline. Re-creating the
                # timer each time would dominate the cost of a notification,
                # so a timer armed for earlier is kept, and re-arms itself
                # when it fires (_reregistration_due).
                max_age = options.max_age
                deadline = state.deadline = now + (60 if max_age is None else max_age) + REREGISTRATION_MARGIN
                if not state.timer_at or state.timer_at * REREGISTRATION_GRANULARITY > deadline + REREGISTRATION_GRANULARITY:
                    self._arm_reregistration(key, state)
            else:
                self._unfile(state)
        else:
            is_last = True
            del self._outgoing[key]
            self._unfile(state)
            state.established = False
        pipe = state.pipe
        request = response.request = pipe.request
        # (the request's token object, equal to the response's: one
        # bytes object less to keep with a response that is kept)
        response.token = request.token
        # (pipe.add_response, inlined; tuple.__new__ as a named tuple's own
        # constructor is a Python function)
        pipe.add_event(_new_tuple(Event, (response, None, is_last)))
        return True

    def _repeat_to_member(self, state: _OutgoingRequest, response: Message) -> bool:
        """Send a multicast request once more, by unicast, to the server
        whose answer ``response`` is an Echo challenge; False if it is none
        or that server (or too many) had its repetition already."""
        assert state.pipe is not None, "multicast requests have a pipe"
        request = state.pipe.request
        remote = response.remote
        repeated = state.echo_repeated_to
        if repeated is None:
            repeated = state.echo_repeated_to = set()
        if remote in repeated or len(repeated) >= MAX_MULTICAST_ECHO_REPEATS:
            return False
        again = repeat_with_echo(request, response, mid=None, mtype=NON)
        if again is None:
            return False
        repeated.add(remote)
        again.remote = remote
        self.log.debug("Repeating %r to %r with the Echo value of its 4.01 response", request, remote)
        try:
            # (its answer comes back with the token, to the multicast
            # request; a failure only concerns this one server)
            state.ti.send_message(again, None)
        except Exception as e:
            self.log.debug("Repeating %r to %r failed: %r", request, remote, e)
        return True

    def process_request(self, request: Message, ti: Optional[interfaces.TokenInterface] = None) -> None:
        """An incoming request; ``ti`` is the TokenInterface it came through
        (looked up by its remote if not given)."""
        remote = cast(interfaces.EndpointAddress, request.remote)
        if ti is None:
            ti = self._interface_for(remote)
        if ti is None:
            self.log.warning("Request %r arrived on an unknown transport; dropping", request)
            return
        key = (request.token, remote)
        if self._observations:
            old = self._observations.pop(key, None)
            if old is not None:
                old.stop_interest()
        observe = request.opt.observe
        if request.code == Code.GET and observe == 1:
            # Deregistration: answered like a plain GET after the
            # observation above was ended.
            request.opt.observe = None
            observe = None

        pipe = Pipe(request, self.log)
        if observe is None:
            pipe.on_event(_ResponseSender(pipe, ti, None))
        else:
            monitor = _NotificationMonitor(pipe)
            pipe.on_event(_ResponseSender(pipe, ti, monitor))
            self._observations[key] = pipe
            pipe.on_interest_end(_ObservationEntry(self._observations, pipe, monitor))
        self._render_to_pipe(pipe)

    def dispatch_error(self, exception: Exception, remote: interfaces.EndpointAddress) -> None:
        for _, state in self._outgoing.pop_group(remote):
            if state.stop is not None:
                state.stop()
                state.stop = None
            if state.pipe is not None:  # (not the cancellation of an observation)
                state.pipe.add_exception(exception)
        for _, pipe in self._observations.pop_group(remote):
            pipe.stop_interest()

    async def shutdown(self) -> None:
        self._shutting_down = True
        for table in (self._outgoing, self._outgoing_multicast):
            states = list(table.values())
            table.clear()
            for state in states:
                self._unfile(state)
                if state.pipe is not None:
                    state.pipe.add_exception(error.LibraryShutdown())
        observations = list(self._observations.values())
        self._observations.clear()
        for pipe in observations:
            # Tell the observer instead of leaving it waiting for Max-Age.
            pipe.add_response(
                Message(code=Code.SERVICE_UNAVAILABLE, _mtype=NON, payload=b"Server shutting down"),
                is_last=True,
            )
        for ti in self.token_interfaces:
            await ti.shutdown()
