"""The client's re-registration timer (RFC 7641 §3.3.1) on a virtual clock:
one timer per observation whose deadline every notification moves, and
which re-arms itself when it fires before the moved deadline."""

import heapq
import itertools
import logging

import pytest

from aiocoap import error

import aiocoap.tokenmanager as tm
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.pipe import Pipe

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


class FakeTI:
    def __init__(self):
        self.sent = []
        self.pipes = []

    def recognize_remote(self, remote):
        return True

    def send_message(self, message, monitor):
        self.sent.append(message)
        return lambda: None


@pytest.fixture
def setup():
    loop = FakeLoop()
    manager = tm.TokenManager(lambda pipe: None, logging.getLogger("test"), loop)
    ti = FakeTI()
    manager.token_interfaces.append(ti)
    remote = Remote()
    request = Message(code=Code.GET, observe=0, mtype=Type.NON)
    request.remote = remote
    pipe = Pipe(request, logging.getLogger("test"))
    events = []
    pipe.on_event(lambda event: events.append(event) or True)
    manager.request(pipe)
    ti.pipes.append(pipe)
    return loop, manager, ti, remote, request, events


def notify(manager, request, remote, seq, max_age=None, code=Code.CONTENT):
    response = Message(code=code, mtype=Type.NON, token=request.token, payload=str(seq).encode())
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
    for t in manager._outgoing.values():
        t.pipe.stop_interest()
        break
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
    late = Message(code=Code.CONTENT, mtype=Type.NON, token=request.token)
    late.remote = remote
    assert not manager.process_response(late)
