"""Tests of aiocoap.tokenmanager, the token layer, on fakes (a virtual
clock for the loop, a recording TokenInterface; no network):

* tokens: 4 random bytes, unique per remote among the requests in flight;
* matching responses by (token, remote), and multicast responses by token;
* observe routing of client observations, with the re-registration timer
  (RFC 7641 §3.3.1: one timer per observation whose deadline every
  notification moves, re-arming itself when it fires early) and active
  cancellation (a GET with Observe: 1 whose answer is accepted quietly);
* error dispatch (monitor errors, send failures, network errors for a
  remote, also while a cancellation is in flight) and shutdown;
* the server side: responses and notifications sent back through the
  TokenInterface they came from, re-registration and deregistration of
  incoming observations, and their end on a rejected notification.
"""

import heapq
import itertools
import logging
import os

import pytest

from aiocoap import error

import aiocoap.tokenmanager as tm
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.pipe import Event, Pipe
from transport_fakes import CountingRemote

MARGIN = tm.REREGISTRATION_MARGIN


class FakeHandle:
    def __init__(self, when, callback, args):
        self._when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def when(self):
        return self._when

    def cancel(self):
        self.cancelled = True


class FakeLoop:
    """The part of an event loop the token layer uses, on a virtual clock."""

    def __init__(self):
        self.now = 100.0
        self.heap = []
        self.seq = itertools.count()
        self.armed = 0

    def time(self):
        return self.now

    def call_at(self, when, callback, *args):
        handle = FakeHandle(when, callback, args)
        heapq.heappush(self.heap, (when, next(self.seq), handle))
        self.armed += 1
        return handle

    def call_later(self, delay, callback, *args):
        return self.call_at(self.now + delay, callback, *args)

    def pending(self):
        return sorted(h.when() for _, _, h in self.heap if not h.cancelled)

    def advance_to(self, when):
        while self.heap and self.heap[0][0] <= when:
            at, _, handle = heapq.heappop(self.heap)
            if handle.cancelled:
                continue
            self.now = at
            handle.callback(*handle.args)
        self.now = when


class Remote:
    is_multicast = False
    reliable_transport = False

    def as_response_address(self):
        return self


class FakeTI:
    """Records what the token layer sends, with the monitor it gave and
    whether the returned stop function was called."""

    def __init__(self):
        self.sent = []
        self.monitors = []
        self.stopped = []
        self.pipes = []
        self.fail_with = None
        self.unanswered = []

    def recognize_remote(self, remote):
        return True

    def send_message(self, message, monitor):
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(message)
        self.monitors.append(monitor)
        index = len(self.sent) - 1
        return lambda: self.stopped.append(index)

    def send_message_replacing(self, message, previous, monitor):
        # (what interfaces.TokenInterface does for transports without
        # retransmissions)
        previous()
        return self.send_message(message, monitor)

    def no_response_for(self, remote, token):
        self.unanswered.append((remote, token))

    async def shutdown(self):
        pass


@pytest.fixture
def setup():
    loop = FakeLoop()
    manager = tm.TokenManager(lambda pipe: None, logging.getLogger("test"), loop)
    ti = FakeTI()
    manager.token_interfaces.append(ti)
    remote = Remote()
    request = Message(code=Code.GET, observe=0, _mtype=Type.NON)
    request.remote = remote
    pipe = Pipe(request, logging.getLogger("test"))
    events = []
    pipe.on_event(lambda event: events.append(event) or True)
    manager.request(pipe)
    ti.pipes.append(pipe)
    return loop, manager, ti, remote, request, events


def notify(manager, request, remote, seq, max_age=None, code=Code.CONTENT):
    response = Message(code=code, _mtype=Type.NON, _token=request.token, payload=str(seq).encode())
    if seq is not None:
        response.opt.observe = seq
    if max_age is not None:
        response.opt.max_age = max_age
    response.remote = remote
    assert manager.process_response(response)


def reregistrations(ti, request):
    return [m for m in ti.sent[1:] if m.token == request.token and m.opt.observe == 0]


def test_notifications_move_the_deadline_without_new_timers(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 1, max_age=10)
    assert loop.pending() == [100 + 10 + MARGIN]
    armed = loop.armed
    for i in range(2, 20):
        loop.advance_to(100 + i * 0.5)
        notify(manager, request, remote, i, max_age=10)
    assert loop.armed == armed, "no timer per notification"
    assert len(events) == 19
    last = 100 + 19 * 0.5
    # the original timer fires, finds the deadline moved, and re-arms for it
    loop.advance_to(100 + 10 + MARGIN)
    assert reregistrations(ti, request) == []
    assert loop.pending() == [last + 10 + MARGIN]
    loop.advance_to(last + 10 + MARGIN - 0.01)
    assert reregistrations(ti, request) == []
    loop.advance_to(last + 10 + MARGIN)
    again = reregistrations(ti, request)
    assert len(again) == 1
    assert again[0].code == Code.GET and again[0].mtype == Type.NON
    assert loop.pending() == []


def test_shorter_max_age_arms_the_timer_earlier(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 1, max_age=60)
    loop.advance_to(110)
    notify(manager, request, remote, 2, max_age=1)
    assert loop.pending() == [110 + 1 + MARGIN]
    loop.advance_to(110 + 1 + MARGIN)
    assert len(reregistrations(ti, request)) == 1


def test_default_max_age_is_60(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 1)
    assert loop.pending() == [100 + 60 + MARGIN]


def test_reregistration_then_notifications_arm_again(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 5, max_age=1)
    loop.advance_to(100 + 1 + MARGIN)
    assert len(reregistrations(ti, request)) == 1
    # the server may restart its sequence after a re-registration
    notify(manager, request, remote, 1, max_age=1)
    assert [e.message.payload for e in events] == [b"5", b"1"]
    assert loop.pending() == [loop.now + 1 + MARGIN]


def test_stale_notification_does_not_move_the_deadline(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 10, max_age=5)
    loop.advance_to(104)
    notify(manager, request, remote, 9, max_age=5)  # older: dropped
    assert len(events) == 1
    loop.advance_to(100 + 5 + MARGIN)
    assert len(reregistrations(ti, request)) == 1


def test_switching_reregistration_off_cancels_the_timer(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 1, max_age=5)
    manager.reregister_observations = False
    notify(manager, request, remote, 2, max_age=5)
    assert loop.pending() == []
    loop.advance_to(1000)
    assert reregistrations(ti, request) == []


def test_final_response_and_lost_interest_cancel_the_timer(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 1, max_age=5)
    notify(manager, request, remote, None)  # no Observe: the observation ends
    assert events[-1].is_last
    assert loop.pending() == []


def test_cancelled_observation_is_not_reregistered(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 1, max_age=5)
    loop.advance_to(103)
    notify(manager, request, remote, 2, max_age=5)
    pipe_request = request
    # the requester loses interest: the deregistration goes out, the timer stops
    ti.pipes[0].stop_interest()
    assert loop.pending() == []
    loop.advance_to(1000)
    assert reregistrations(ti, pipe_request) == []
    assert ti.sent[-1].opt.observe == 1


def test_network_error_during_active_cancellation(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 1, max_age=5)
    pipe = ti.pipes[0]
    pipe.stop_interest()  # established: a GET with Observe: 1 goes out
    assert ti.sent[-1].opt.observe == 1
    manager.dispatch_error(error.NetworkError("unreachable"), remote)
    # the cancellation is over: its late answer is not ours any more
    late = Message(code=Code.CONTENT, _mtype=Type.NON, _token=request.token)
    late.remote = remote
    assert not manager.process_response(late)


# --- client side: tokens, matching, errors -------------------------------------


@pytest.fixture
def client():
    loop = FakeLoop()
    manager = tm.TokenManager(lambda pipe: None, logging.getLogger("test"), loop)
    ti = FakeTI()
    manager.token_interfaces.append(ti)
    return loop, manager, ti


def send(manager, remote, **options):
    request = Message(code=Code.GET, _mtype=Type.CON, **options)
    request.remote = remote
    pipe = Pipe(request, logging.getLogger("test"))
    events = []
    pipe.on_event(lambda event: events.append(event) or True)
    manager.request(pipe)
    return pipe, events


def response_to(request, remote, code=Code.CONTENT, **options):
    response = Message(code=code, _mtype=Type.ACK, _token=request.token, **options)
    response.remote = remote
    return response


def test_tokens_are_random_and_unique_per_remote_in_flight(client, monkeypatch):
    loop, manager, ti = client
    a, b = Remote(), Remote()
    pipe, _ = send(manager, a)
    assert len(pipe.request.token) == 4
    taken = pipe.request.token
    candidates = iter([taken, taken, b"\x00\x00\x00\x01"])
    monkeypatch.setattr(manager, "next_token", lambda: next(candidates))
    # another remote may get the same token; the same remote may not
    other, _ = send(manager, b)
    assert other.request.token == taken
    again, _ = send(manager, a)
    assert again.request.token == b"\x00\x00\x00\x01"


def test_tokens_take_few_draws_from_the_system_random_source(client, monkeypatch):
    """A system call for each request's token took 4 % of the client's
    CPU time per request (bench_ws.py): tokens come from bigger draws."""
    loop, manager, ti = client
    draws = []
    draw = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: draws.append(n) or draw(n))
    remote = Remote()
    tokens = {send(manager, remote)[0].request.token for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(token) == tm.TOKEN_LENGTH for token in tokens)
    assert len(draws) <= 1


def test_response_matches_by_token_and_remote(client):
    loop, manager, ti = client
    a, b = Remote(), Remote()
    pipe, events = send(manager, a)
    assert not manager.process_response(response_to(pipe.request, b))
    wrong_token = response_to(pipe.request, a)
    wrong_token.token = bytes(4 - len(pipe.request.token)) + b"x" * len(pipe.request.token)
    assert not manager.process_response(wrong_token)
    assert events == []
    response = response_to(pipe.request, a)
    assert manager.process_response(response)
    assert ti.stopped == [0], "a response ends retransmission"
    assert [e.message for e in events] == [response] and events[0].is_last
    assert response.request is pipe.request
    assert not manager.process_response(response_to(pipe.request, a)), "answered once"


def test_multicast_responses_are_accepted_from_any_member(client):
    loop, manager, ti = client
    group = Remote()
    group.is_multicast = True
    pipe, events = send(manager, group)
    assert pipe.request.mtype == Type.NON
    for _ in range(3):
        assert manager.process_response(response_to(pipe.request, Remote()))
    assert len(events) == 3 and not any(e.is_last for e in events)
    pipe.stop_interest()
    assert not manager.process_response(response_to(pipe.request, Remote()))


def test_no_transport_for_the_remote(client):
    loop, manager, ti = client
    manager.token_interfaces.clear()
    pipe, events = send(manager, Remote())
    assert isinstance(events[0].exception, error.NetworkError)


def test_monitor_error_reaches_the_requester_and_frees_the_token(client):
    loop, manager, ti = client
    remote = Remote()
    pipe, events = send(manager, remote)
    ti.monitors[0](error.ConRetransmitsExceeded("no ACK"))
    assert isinstance(events[0].exception, error.ConRetransmitsExceeded)
    assert not manager.process_response(response_to(pipe.request, remote))


def test_send_failure_becomes_a_network_error(client):
    loop, manager, ti = client
    ti.fail_with = OSError("unreachable")
    pipe, events = send(manager, Remote())
    assert isinstance(events[0].exception, error.NetworkError)
    assert isinstance(events[0].exception.__cause__, OSError)
    ti.fail_with = error.LibraryShutdown()
    pipe, events = send(manager, Remote())
    assert isinstance(events[0].exception, error.LibraryShutdown)


def test_network_error_fails_the_exchanges_with_that_remote_only(client):
    loop, manager, ti = client
    a, b = Remote(), Remote()
    pipe_a, events_a = send(manager, a)
    pipe_b, events_b = send(manager, b)
    manager.dispatch_error(error.NetworkError("unreachable"), a)
    assert isinstance(events_a[0].exception, error.NetworkError)
    assert events_b == []
    assert ti.stopped == [0]
    assert manager.process_response(response_to(pipe_b.request, b))


def test_requester_losing_interest_stops_the_exchange(client):
    loop, manager, ti = client
    remote = Remote()
    pipe, events = send(manager, remote)
    pipe.stop_interest()
    assert ti.stopped == [0]
    assert not manager.process_response(response_to(pipe.request, remote))


# --- client side: observations ----------------------------------------------------


def test_notifications_keep_the_observation_and_a_plain_response_ends_it(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 1)
    notify(manager, request, remote, 2)
    assert [e.is_last for e in events] == [False, False]
    notify(manager, request, remote, 3, code=Code.NOT_FOUND)
    assert events[-1].is_last, "an unsuccessful notification is the last"
    assert not ti.pipes[0].is_interested


def test_not_observing_request_ends_with_its_first_response(client):
    loop, manager, ti = client
    remote = Remote()
    pipe, events = send(manager, remote)
    assert manager.process_response(response_to(pipe.request, remote, observe=5))
    assert events[0].is_last


def test_stale_notifications_are_dropped_unless_the_transport_is_reliable(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 10)
    notify(manager, request, remote, 9)
    assert len(events) == 1
    remote.reliable_transport = True
    notify(manager, request, remote, 8)
    assert len(events) == 2


def test_active_cancellation_accepts_its_answer_quietly(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 1)
    ti.pipes[0].stop_interest()
    cancellation = ti.sent[-1]
    assert cancellation.token == request.token and cancellation.opt.observe == 1
    assert cancellation.code == Code.GET and cancellation.mtype == Type.NON
    delivered = len(events)
    notify(manager, request, remote, 2)  # crossed the cancellation: accepted
    last = Message(code=Code.CONTENT, _mtype=Type.NON, _token=request.token)
    last.remote = remote
    assert manager.process_response(last)  # the answer: accepted, ends it
    assert len(events) == delivered, "nothing reaches the former requester"
    late = Message(code=Code.CONTENT, _mtype=Type.NON, _token=request.token)
    late.remote = remote
    assert not manager.process_response(late)


def test_unestablished_observation_is_not_cancelled_actively(setup):
    loop, manager, ti, remote, request, events = setup
    ti.pipes[0].stop_interest()
    assert len(ti.sent) == 1, "no notification seen: nothing to cancel"


# (test_network_error_during_active_cancellation, above the client fixture,
# reproduced the AttributeError of the error dispatch.)


def test_monitor_error_during_active_cancellation_is_quiet(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 1)
    ti.pipes[0].stop_interest()
    delivered = len(events)
    ti.monitors[-1](error.ConRetransmitsExceeded("no ACK"))
    assert len(events) == delivered
    late = Message(code=Code.CONTENT, _mtype=Type.NON, _token=request.token)
    late.remote = remote
    assert not manager.process_response(late)


async def test_shutdown_fails_requests_and_skips_cancellations(setup):
    loop, manager, ti, remote, request, events = setup
    notify(manager, request, remote, 1, max_age=5)
    other = Remote()
    pipe, other_events = send(manager, other)
    await manager.shutdown()
    assert isinstance(other_events[0].exception, error.LibraryShutdown)
    assert isinstance(events[-1].exception, error.LibraryShutdown)
    assert all(m.opt.observe != 1 for m in ti.sent), "no cancellation while shutting down"
    assert loop.pending() == []


# --- server side ----------------------------------------------------------------------


@pytest.fixture
def server():
    loop = FakeLoop()
    rendered = []
    manager = tm.TokenManager(rendered.append, logging.getLogger("test"), loop)
    ti = FakeTI()
    manager.token_interfaces.append(ti)
    return manager, ti, rendered


def incoming(manager, ti, remote, token=b"tk", mtype=Type.CON, code=Code.GET, **options):
    request = Message(code=code, _mtype=mtype, _mid=1, _token=token, **options)
    request.remote = remote
    manager.process_request(request, ti)
    return request


def test_response_goes_back_with_token_and_remote(server):
    manager, ti, rendered = server
    remote = Remote()
    request = incoming(manager, ti, remote)
    (pipe,) = rendered
    assert pipe.request is request
    pipe.add_response(Message(code=Code.CONTENT, payload=b"hi"), is_last=True)
    (sent,) = ti.sent
    assert sent.token == b"tk" and sent.remote is remote and sent.mtype is None
    assert ti.monitors == [None]


def test_non_request_gets_a_non_response(server):
    manager, ti, rendered = server
    incoming(manager, ti, Remote(), mtype=Type.NON)
    rendered[0].add_response(Message(code=Code.CONTENT), is_last=True)
    assert ti.sent[0].mtype == Type.NON


def test_no_response_and_render_errors(server, caplog):
    manager, ti, rendered = server
    remote = Remote()
    incoming(manager, ti, remote, token=b"a")
    rendered[0].add_event(Event(message=None, is_last=True))
    assert ti.unanswered == [(remote, b"a")] and ti.sent == []
    incoming(manager, ti, remote, token=b"b")
    with caplog.at_level(logging.ERROR):
        rendered[1].add_exception(RuntimeError("bug"))
    assert ti.sent[0].code == Code.INTERNAL_SERVER_ERROR
    assert "Error rendering" in caplog.text


def test_notifications_supersede_each_other(server):
    manager, ti, rendered = server
    incoming(manager, ti, Remote(), observe=0)
    (pipe,) = rendered
    for seq in range(3):
        pipe.add_response(Message(code=Code.CONTENT, observe=seq + 1))
    assert ti.stopped == [0, 1], "each notification stops the previous one's retransmission"
    assert all(m is not None for m in ti.monitors)
    pipe.add_response(Message(code=Code.CONTENT), is_last=True)
    assert ti.stopped == [0, 1, 2] and ti.monitors[-1] is None


def test_rejected_notification_ends_the_observation(server):
    manager, ti, rendered = server
    remote = Remote()
    incoming(manager, ti, remote, observe=0)
    (pipe,) = rendered
    pipe.add_response(Message(code=Code.CONTENT, observe=1))
    ti.monitors[0](error.ResetReceived("RST"))
    assert not pipe.is_interested
    # the observation is forgotten: a new registration starts afresh
    incoming(manager, ti, remote, observe=0)
    assert len(rendered) == 2 and rendered[1].is_interested


def test_reregistration_replaces_and_deregistration_ends(server):
    manager, ti, rendered = server
    remote = Remote()
    incoming(manager, ti, remote, observe=0)
    incoming(manager, ti, remote, observe=0)
    first, second = rendered
    assert not first.is_interested and second.is_interested
    incoming(manager, ti, remote, observe=1)
    third = rendered[2]
    assert not second.is_interested
    assert third.request.opt.observe is None, "answered like a plain GET"
    # an observation of another remote with the same token is another one
    incoming(manager, ti, remote, observe=0)
    incoming(manager, ti, Remote(), observe=0)
    assert rendered[3].is_interested and rendered[4].is_interested


def test_ended_observation_leaves_no_entry_behind(server):
    manager, ti, rendered = server
    remote = Remote()
    incoming(manager, ti, remote, observe=0)
    rendered[0].stop_interest()
    # with the entry gone, a network error for the remote touches nothing
    incoming(manager, ti, remote, token=b"other", observe=0)
    manager.dispatch_error(error.NetworkError("gone"), remote)
    assert not rendered[1].is_interested


async def test_shutdown_sends_observers_a_final_503(server):
    manager, ti, rendered = server
    incoming(manager, ti, Remote(), observe=0)
    await manager.shutdown()
    final = ti.sent[-1]
    assert final.code == Code.SERVICE_UNAVAILABLE and final.mtype == Type.NON
    assert not rendered[0].is_interested


def test_network_errors_for_many_remotes_cost_each_remotes_work_only(server):
    """5000 observers (and 5000 servers we sent requests to) vanish
    together: each error ends that remote's observations and requests
    without looking at everyone else's (before: 5000 x 10000 comparisons)."""
    manager, ti, rendered = server
    remotes = [CountingRemote(i) for i in range(5000)]
    outcomes = []
    for remote in remotes:
        incoming(manager, ti, remote, observe=0)
        request = Message(code=Code.GET, _mtype=Type.CON)
        request.remote = remote
        pipe = Pipe(request, logging.getLogger("test"))
        pipe.on_event(lambda event: outcomes.append(type(event.exception)) and False)
        manager.request(pipe)
    assert all(p.is_interested for p in rendered)
    CountingRemote.comparisons = 0
    for remote in remotes[:-1]:
        manager.dispatch_error(error.NetworkError("port unreachable"), remote)
    assert CountingRemote.comparisons < 20 * len(remotes)
    assert outcomes == [error.NetworkError] * 4999
    assert [p.is_interested for p in rendered] == [False] * 4999 + [True]
    # the survivor still gets its response
    survivor = remotes[-1]
    response = Message(code=Code.CONTENT, _mtype=Type.ACK, _token=ti.sent[-1].token)
    response.remote = survivor
    assert manager.process_response(response)
    assert outcomes[-1] is type(None)


def test_deadline_a_rounding_error_past_its_bucket_reregisters_instead_of_spinning(setup, monkeypatch):
    """On a millisecond clock (uvloop), a notification at 163.93 with
    Max-Age 0 has its deadline at 163.93 + 0.05 = 163.98000000000002, and
    with buckets of 0.01 s its bucket's time is 163.98: when that bucket
    came due at 163.98, the state was "not due yet" and filed into the
    same bucket again, for ever (the loop hung)."""
    monkeypatch.setattr(tm, "REREGISTRATION_MARGIN", 0.05)
    monkeypatch.setattr(tm, "REREGISTRATION_GRANULARITY", 0.01)
    loop, manager, ti, remote, request, events = setup
    loop.now = 163.93
    notify(manager, request, remote, 1, max_age=0)
    loop.advance_to(163.98)
    assert len(reregistrations(ti, request)) == 1
