"""Pipes: one request travelling down the stack and the events (responses,
notifications, an error) that answer it travelling back up.

A pipe has two ends. The *requester* (a client's Request, or the token
layer for an incoming request) registers interest with :meth:`Pipe.on_event`.
The *responder* (the token layer for an outgoing request, or the Context
rendering an incoming one) feeds events with :meth:`Pipe.add_response` /
:meth:`Pipe.add_exception` and learns through :meth:`Pipe.on_interest_end`
when nobody cares any more (so it can cancel work and release state).

Rules: a final event (``is_last`` or any exception) is delivered once and
then every callback is released; events after that are programming errors
and are logged, not delivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, AsyncIterator, Callable, Coroutine, NamedTuple, Optional, Union

from .message import Message, NoResponse
from .numbers.codes import Code

__all__ = ["Pipe", "Event", "IterablePipe", "run_driving_pipe", "error_to_message", "add_rendered"]

_new_tuple = tuple.__new__


class Event(NamedTuple):
    """A response (``message``) or an error (``exception``) arriving in a
    pipe. ``is_last`` tells whether more events can follow (observations
    produce several). Immutable (a named tuple: one is created for every
    response and notification, and tuples are the cheapest to create)."""

    message: Optional[Message] = None
    exception: Optional[BaseException] = None
    is_last: bool = True


class Pipe:
    """One request and the events answering it."""

    # (no __weakref__ and no flag of its own for the end: every slot counts,
    # see _listeners)
    __slots__ = ("request", "log", "_listeners", "_end_callbacks")

    def __init__(self, request: Message, log: logging.Logger) -> None:
        self.request = request
        self.log = log
        # The event callbacks: None, the one callback (a pipe nearly always
        # has exactly one requester), or a tuple of two or more. An
        # observation keeps its pipe for its whole life, and a tuple for a
        # single callback would cost 48 bytes more per observation.
        self._listeners: Union[None, Callable[[Event], bool], tuple[Callable[[Event], bool], ...]] = None
        # The interest-end callbacks (a tuple: usually one or two); None once
        # interest ended.
        self._end_callbacks: Optional[tuple[Callable[[], object], ...]] = ()

    def __repr__(self) -> str:
        state = "ended" if self._end_callbacks is None else f"{len(self._listener_tuple())} listener(s)"
        return f"<{type(self).__name__} for {self.request!r}, {state}>"

    def _listener_tuple(self) -> tuple[Callable[[Event], bool], ...]:
        listeners = self._listeners
        if listeners is None:
            return ()
        if isinstance(listeners, tuple):
            return listeners
        return (listeners,)

    @property
    def is_interested(self) -> bool:
        """True while a requester still listens."""
        return self._listeners is not None and self._end_callbacks is not None

    def on_event(self, callback: Callable[[Event], bool]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event. The callback returns
        True to stay registered, False to unregister itself. Returns a
        function that unregisters the callback (ending the interest if it
        was the last one)."""
        listeners = self._listeners
        if listeners is None:
            self._listeners = callback
        else:
            self._listeners = self._listener_tuple() + (callback,)

        def remove() -> None:
            if not self._discard_callback(callback):
                return
            if self._listeners is None:
                self._end_interest()

        return remove

    def _discard_callback(self, callback: Callable[[Event], bool]) -> bool:
        listeners = list(self._listener_tuple())
        try:
            listeners.remove(callback)
        except ValueError:
            return False
        if not listeners:
            self._listeners = None
        elif len(listeners) == 1:
            self._listeners = listeners[0]
        else:
            self._listeners = tuple(listeners)
        return True

    def on_interest_end(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when no requester listens any more (after
        a final event, or when the last listener unregistered). Runs at once
        if that already happened."""
        if self._end_callbacks is None:
            callback()
        else:
            self._end_callbacks += (callback,)

    def discard_interest_end(self, callback: Callable[[], object]) -> None:
        """Undo :meth:`on_interest_end` (if the callback is still
        registered)."""
        if self._end_callbacks is None:
            return
        callbacks = list(self._end_callbacks)
        try:
            callbacks.remove(callback)
        except ValueError:
            return
        self._end_callbacks = tuple(callbacks)

    def _end_interest(self) -> None:
        callbacks = self._end_callbacks
        if callbacks is None:
            return
        self._end_callbacks = None
        self._listeners = None
        for cb in callbacks:
            try:
                cb()
            except Exception:
                self.log.exception("Error in interest-end callback of %r", self)

    def add_event(self, event: Event) -> None:
        if self._end_callbacks is None:
            if event.exception is not None:
                self.log.debug("Dropping late error for ended %r: %r", self, event.exception)
            return
        listeners = self._listeners
        if listeners is None:
            callbacks: tuple[Callable[[Event], bool], ...] = ()
        elif isinstance(listeners, tuple):
            callbacks = listeners
        else:
            callbacks = (listeners,)
        is_last = event.is_last
        for cb in callbacks:
            try:
                keep = cb(event)
            except Exception:
                self.log.exception("Error in event callback of %r", self)
                keep = False
            if not keep and not is_last:
                # (after a last event, ending the interest drops them all)
                self._discard_callback(cb)
        if is_last or self._listeners is None:
            self._end_interest()

    def add_response(self, response: Message, is_last: bool = False) -> None:
        # (tuple.__new__: a named tuple's own constructor is a Python function)
        self.add_event(_new_tuple(Event, (response, None, is_last)))

    def add_exception(self, exception: BaseException) -> None:
        self.add_event(Event(None, exception, True))

    def stop_interest(self) -> None:
        """The requester gives up: drop every listener and tell the
        responder."""
        self._end_interest()

    def poke(self) -> None:
        """Ask the responder for a sign of life. What it does is up to the
        responder: the token layer sends an observation's request again
        (re-registration), a responder that can not be gone (the local
        library rendering a resource) does nothing. Nothing is reported to
        the caller; if what the responder does fails, the pipe gets the
        error as its final event."""
        for callback in self._end_callbacks or ():
            poke = getattr(callback, "poke", None)
            if poke is not None:
                poke()

    def on_poke(self, handler: Callable[[], object]) -> None:
        """Set what :meth:`poke` does (the responder calls this). A
        responder's interest-end callback can instead offer a ``poke()``
        method of its own; both are kept among the interest-end callbacks,
        which costs the pipe no slot."""
        self.on_interest_end(_PokeHandler(handler))


# (aiocoap 0.4.x offers the event type as Pipe.Event; set here, outside the
# class bodies, where the name Event is the class for annotations)
Pipe.Event = Event  # type: ignore[attr-defined]


class _PokeHandler:
    """What :meth:`Pipe.poke` calls; kept in the pipe's interest-end
    callbacks, where it does nothing when interest ends."""

    __slots__ = ("poke",)

    def __init__(self, handler: Callable[[], object]):
        self.poke = handler

    def __call__(self) -> None:
        pass


def error_to_message(old_pipe: Pipe, exception: BaseException) -> Message:
    """The response a server sends when rendering raised ``exception``:
    the error's own message for RenderableErrors, 5.00 with an empty
    payload otherwise, and also when the error's ``to_message()`` fails
    (then with one log line and the traceback)."""
    from . import error
    from .numbers.codes import Code

    if isinstance(exception, error.RenderableError):
        try:
            message = exception.to_message()
            if not isinstance(message, Message):
                raise TypeError(f"to_message() returned {type(message).__name__}, not a Message")
            return message
        except Exception as failure:
            # (5.00 with an empty payload, as for any other failure)
            old_pipe.log.error(
                "Rendering the error %r into a response failed: %r", exception, failure, exc_info=failure
            )
            return Message(code=Code.INTERNAL_SERVER_ERROR)
    old_pipe.log.error(
        "An exception occurred while rendering a resource: %r", exception, exc_info=exception
    )
    return Message(code=Code.INTERNAL_SERVER_ERROR)


def add_rendered(pipe: Pipe, rendered: object, *, is_last: bool) -> None:
    """Add what a resource's ``render`` returned to ``pipe`` as its next
    response: a Message (2.05 Content if it has no code yet), or, for
    :data:`aiocoap.message.NoResponse`, a final event without a message
    (nothing is sent). Anything else raises TypeError, which the caller
    turns into an error response like any failure of the resource.

    This is how the Context and :meth:`aiocoap.interfaces.Resource.render_to_pipe`
    deliver render results."""
    if rendered is NoResponse:
        pipe.add_event(Event(message=None, is_last=True))
        return
    if not isinstance(rendered, Message):
        raise TypeError(f"Resource returned {type(rendered).__name__} instead of a Message")
    if rendered.code is None:
        rendered.code = Code.CONTENT
    pipe.add_response(rendered, is_last=is_last)


def run_driving_pipe(
    pipe: Pipe, coroutine: Coroutine[Any, Any, None], name: Optional[str] = None
) -> asyncio.Task[None]:
    """Run ``coroutine`` (which feeds ``pipe``) as a task, cancel it when
    the pipe's interest ends, and turn an exception it raises into an error
    response (RenderableError) or 5.00 with a log line."""
    task = asyncio.get_running_loop().create_task(coroutine, name=name)

    def on_end() -> None:
        if not task.done():
            task.cancel()

    pipe.on_interest_end(on_end)

    def done(t: asyncio.Task[None]) -> None:
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            pipe.add_response(error_to_message(pipe, exc), is_last=True)

    task.add_done_callback(done)
    return task


class IterablePipe:
    """A stand-in for a :class:`Pipe` whose requesting side iterates over
    the events (``async for event in pipe``) instead of registering
    callbacks; the responding side uses it like a Pipe (``request``,
    :meth:`add_response`, :meth:`add_exception`, :meth:`on_interest_end`).

    Iteration ends after the final event; leaving the loop early (or
    dropping the iterator) ends the interest, which the responder learns
    through its on_interest_end callbacks. It can be iterated over once.

    Events wait in a queue until they are taken; a responder that produces
    faster than the consumer takes loses the oldest non-final events beyond
    :attr:`max_queued` (for observations the newest state is what counts),
    so the queue is bounded."""

    max_queued = 64

    def __init__(self, request: Message):
        self.request = request
        self._queue: deque[Event] = deque()
        self._end_callbacks: list[Callable[[], object]] = []
        self._iterating = False
        self._ended = False
        self._wakeup: Optional[asyncio.Future[None]] = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.request!r}, {len(self._queue)} event(s) queued>"

    @property
    def is_interested(self) -> bool:
        return not self._ended

    def on_interest_end(self, callback: Callable[[], object]) -> None:
        if self._ended:
            callback()
        else:
            self._end_callbacks.append(callback)

    def add_event(self, event: Event) -> None:
        if self._ended:
            return
        queue = self._queue
        queue.append(event)
        if len(queue) > self.max_queued:
            for index, queued in enumerate(queue):
                if not queued.is_last:
                    del queue[index]
                    break
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def add_response(self, response: Message, is_last: bool = False) -> None:
        self.add_event(_new_tuple(Event, (response, None, is_last)))

    def add_exception(self, exception: BaseException) -> None:
        self.add_event(Event(None, exception, True))

    def __aiter__(self) -> AsyncIterator[Event]:
        if self._iterating:
            raise RuntimeError("An IterablePipe can only be iterated over once")
        self._iterating = True
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        try:
            while True:
                while not self._queue:
                    self._wakeup = asyncio.get_running_loop().create_future()
                    await self._wakeup
                    self._wakeup = None
                event = self._queue.popleft()
                yield event
                if event.is_last:
                    return
        finally:
            self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._queue.clear()
        callbacks, self._end_callbacks = self._end_callbacks, []
        for callback in callbacks:
            callback()


IterablePipe.Event = Event  # type: ignore[attr-defined]
