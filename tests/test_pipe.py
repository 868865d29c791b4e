"""Tests of aiocoap.pipe: the events of a Pipe, its listeners and their
return values, interest and its end (on_interest_end, stop_interest,
discard_interest_end), the error log of broken callbacks, and
run_driving_pipe / error_to_message / add_rendered."""

import asyncio
import logging

import pytest

from aiocoap import error
from aiocoap.message import Message, NoResponse
from aiocoap.numbers.codes import Code
from aiocoap.pipe import Event, Pipe, add_rendered, error_to_message, run_driving_pipe

LOG = logging.getLogger("test-pipe")


def new_pipe() -> Pipe:
    return Pipe(Message(code=Code.GET, uri_path=["x"]), LOG)


class Recorder:
    """A listener that records events and keeps listening while ``keep``."""

    def __init__(self, keep=True):
        self.events = []
        self.keep = keep

    def __call__(self, event):
        self.events.append(event)
        return self.keep


def test_event_defaults_and_immutability():
    event = Event()
    assert event == (None, None, True)
    with pytest.raises(AttributeError):
        event.is_last = False


def test_responses_reach_every_listener_in_order():
    pipe = new_pipe()
    first, second = Recorder(), Recorder()
    pipe.on_event(first)
    pipe.on_event(second)
    one, two = Message(code=Code.CONTENT), Message(code=Code.CONTENT)
    pipe.add_response(one)
    pipe.add_response(two, is_last=True)
    for recorder in (first, second):
        assert [e.message for e in recorder.events] == [one, two]
        assert [e.is_last for e in recorder.events] == [False, True]
    assert not pipe.is_interested


def test_a_final_event_ends_interest_and_later_events_are_dropped(caplog):
    pipe = new_pipe()
    recorder = Recorder()
    ended = []
    pipe.on_event(recorder)
    pipe.on_interest_end(lambda: ended.append(True))
    pipe.add_exception(error.NetworkError("gone"))
    assert ended == [True]
    assert isinstance(recorder.events[0].exception, error.NetworkError)
    assert recorder.events[0].is_last
    with caplog.at_level(logging.DEBUG, logger=LOG.name):
        pipe.add_response(Message(code=Code.CONTENT))
        pipe.add_exception(error.NetworkError("late"))
    assert len(recorder.events) == 1
    assert ended == [True], "interest ends once"
    assert "late error" in caplog.text


def test_listener_returning_false_unregisters_and_the_last_one_ends_interest():
    pipe = new_pipe()
    once, always = Recorder(keep=False), Recorder()
    pipe.on_event(once)
    pipe.on_event(always)
    pipe.add_response(Message(code=Code.CONTENT))
    pipe.add_response(Message(code=Code.CONTENT))
    assert len(once.events) == 1 and len(always.events) == 2
    assert pipe.is_interested
    always.keep = False
    ended = []
    pipe.on_interest_end(lambda: ended.append(True))
    pipe.add_response(Message(code=Code.CONTENT))
    assert ended == [True] and not pipe.is_interested


def test_removing_the_last_listener_ends_interest():
    pipe = new_pipe()
    ended = []
    pipe.on_interest_end(lambda: ended.append(True))
    remove_one = pipe.on_event(Recorder())
    remove_two = pipe.on_event(Recorder())
    assert "2 listener(s)" in repr(pipe)
    remove_one()
    remove_one()  # (a second call changes nothing)
    assert ended == [] and pipe.is_interested
    assert "1 listener(s)" in repr(pipe)
    remove_two()
    assert ended == [True] and not pipe.is_interested
    assert "ended" in repr(pipe)


def test_a_pipe_without_listener_is_not_interested():
    pipe = new_pipe()
    assert not pipe.is_interested
    pipe.on_event(Recorder())
    assert pipe.is_interested


def test_stop_interest_tells_the_responder_once_and_drops_listeners():
    pipe = new_pipe()
    recorder = Recorder()
    pipe.on_event(recorder)
    ended = []
    pipe.on_interest_end(lambda: ended.append("a"))
    pipe.on_interest_end(lambda: ended.append("b"))
    pipe.stop_interest()
    pipe.stop_interest()
    assert ended == ["a", "b"]
    pipe.add_response(Message(code=Code.CONTENT), is_last=True)
    assert recorder.events == []


def test_on_interest_end_after_the_end_runs_at_once():
    pipe = new_pipe()
    pipe.stop_interest()
    ended = []
    pipe.on_interest_end(lambda: ended.append(True))
    assert ended == [True]


def test_discard_interest_end():
    pipe = new_pipe()
    ended = []

    def hook():
        ended.append(True)

    pipe.on_interest_end(hook)
    pipe.discard_interest_end(hook)
    pipe.discard_interest_end(hook)  # (not registered any more: no error)
    pipe.stop_interest()
    assert ended == []


def test_broken_callbacks_are_logged_and_do_not_stop_the_others(caplog):
    pipe = new_pipe()

    def broken_listener(event):
        raise RuntimeError("listener")

    def broken_hook():
        raise RuntimeError("hook")

    recorder = Recorder()
    ended = []
    pipe.on_event(broken_listener)
    pipe.on_event(recorder)
    pipe.on_interest_end(broken_hook)
    pipe.on_interest_end(lambda: ended.append(True))
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        pipe.add_response(Message(code=Code.CONTENT))
        assert len(recorder.events) == 1
        assert pipe.is_interested, "the broken listener is dropped, the other stays"
        pipe.add_response(Message(code=Code.CONTENT))
        assert len(recorder.events) == 2
        pipe.stop_interest()
    assert ended == [True]
    assert "Error in event callback" in caplog.text
    assert "Error in interest-end callback" in caplog.text


def test_listener_added_while_an_event_is_delivered():
    pipe = new_pipe()
    late = Recorder()

    def adding(event):
        pipe.on_event(late)
        return False

    pipe.on_event(adding)
    pipe.add_response(Message(code=Code.CONTENT))
    assert pipe.is_interested, "the listener added during delivery stays"
    pipe.add_response(Message(code=Code.CONTENT))
    assert len(late.events) == 1


def test_add_rendered_delivers_what_render_returned():
    pipe, recorder = new_pipe(), Recorder()
    pipe.on_event(recorder)
    notification = Message(payload=b"1")
    add_rendered(pipe, notification, is_last=False)
    assert recorder.events == [Event(message=notification, is_last=False)]
    assert notification.code == Code.CONTENT  # the default code of a response
    deleted = Message(code=Code.DELETED)
    add_rendered(pipe, deleted, is_last=True)
    assert recorder.events[-1] == Event(message=deleted, is_last=True) and deleted.code == Code.DELETED
    assert not pipe.is_interested


def test_add_rendered_noresponse_ends_without_a_message():
    pipe, recorder = new_pipe(), Recorder()
    pipe.on_event(recorder)
    add_rendered(pipe, NoResponse, is_last=False)
    assert recorder.events == [Event(message=None, is_last=True)]


def test_add_rendered_rejects_what_is_not_a_message():
    pipe, recorder = new_pipe(), Recorder()
    pipe.on_event(recorder)
    with pytest.raises(TypeError, match="Resource returned bytes instead of a Message"):
        add_rendered(pipe, b"payload", is_last=True)
    assert recorder.events == [] and pipe.is_interested


def test_error_to_message(caplog):
    pipe = new_pipe()
    assert error_to_message(pipe, error.NotFound()).code == Code.NOT_FOUND
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        assert error_to_message(pipe, ValueError("bug")).code == Code.INTERNAL_SERVER_ERROR
    assert "ValueError" in caplog.text


async def test_run_driving_pipe_turns_an_exception_into_a_response(caplog):
    pipe = new_pipe()
    recorder = Recorder()
    pipe.on_event(recorder)

    async def failing():
        raise error.BadRequest("no")

    task = run_driving_pipe(pipe, failing())
    with pytest.raises(error.BadRequest):
        await task
    await asyncio.sleep(0)  # (the done callback runs soon after)
    assert recorder.events[-1].message.code == Code.BAD_REQUEST
    assert recorder.events[-1].is_last


async def test_run_driving_pipe_is_cancelled_when_interest_ends():
    pipe = new_pipe()
    pipe.on_event(Recorder())
    started = asyncio.Event()

    async def forever():
        started.set()
        await asyncio.sleep(3600)

    task = run_driving_pipe(pipe, forever())
    await started.wait()
    pipe.stop_interest()
    with pytest.raises(asyncio.CancelledError):
        await task
