"""Running a coroutine's first step by hand, so that many short coroutines
can be run one after the other in one task without scheduling a task for
each.

:func:`first_step` runs a coroutine until it finishes or first suspends;
:func:`finish` (awaited from the task that ran the first step) drives a
suspended one to its end exactly as a task would have: it waits for the
futures the coroutine waits for, and passes a cancellation of the task on
to the coroutine. Because the coroutine keeps running in the same task,
``asyncio.current_task()``, ``asyncio.timeout()`` and everything else that
belongs to the task behave as if the coroutine had been awaited directly.

The server uses this to render the notifications of one update for all
observers in one task (see ``aiocoap.protocol.Context._render_observations``):
one coroutine awaits the renderings one after the other, and its first step
usually runs them all; when one suspends, the remaining ones are handed to
a new task and this one only finishes the suspended rendering.

The server also starts the rendering of each incoming request with
:func:`start_task`: where asyncio can run a task's first step at once
(Python 3.12 and later), a rendering that does not wait for anything is
answered within the delivery of its request, without a turn of the event
loop in between.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Coroutine, Optional

__all__ = ["DONE", "first_step", "finish", "continue_in_task", "start_task", "STARTS_EAGERLY"]

DONE = object()
"""Returned as the second element by :func:`first_step` when the coroutine
finished (the first element is then its result)."""


def first_step(coro: Coroutine[Any, Any, Any]) -> "tuple[Any, Any]":
    """Run ``coro`` until it finishes or suspends.

    Returns ``(result, DONE)`` if it finished, ``(None, yielded)`` if it
    suspended (``yielded`` is what it waits for: a future, or None for a
    bare yield as in ``asyncio.sleep(0)``; pass it to :func:`finish`).
    Exceptions of the coroutine propagate."""
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value, DONE
    return None, yielded


async def finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Drive a coroutine that :func:`first_step` left suspended on
    ``yielded`` to its end, from within the same task, and return its
    result (or raise its exception)."""
    while True:
        throw: Any = None
        if yielded is None:
            try:
                await asyncio.sleep(0)
            except BaseException as e:  # the task is being cancelled
                throw = e
        elif getattr(yielded, "_asyncio_future_blocking", None) is not None:
            # The coroutine marked it as blocking when yielding it (for the
            # task to see); awaiting it here marks it again.
            yielded._asyncio_future_blocking = False
            try:
                await yielded
            except BaseException as e:
                if not _is_outcome_of(yielded, e):
                    # The task was cancelled while the future was already
                    # done: pass the cancellation on.
                    throw = e
                # else the coroutine sees the outcome itself when resumed
                # (its await of the future reads the result).
        else:
            throw = RuntimeError(f"Coroutine yielded {yielded!r}, which is not an asyncio future")
        try:
            if throw is None:
                yielded = coro.send(None)
            else:
                yielded = coro.throw(throw)
        except StopIteration as stop:
            return stop.value


def continue_in_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], yielded: Any, name: Optional[str] = None
) -> "asyncio.Task[Any]":
    """Hand a coroutine that :func:`first_step` left suspended on
    ``yielded`` to a new task that drives it to its end (see
    :func:`finish`), and return the task.

    Cancelling the task cancels the coroutine, also before the task's
    first step: a task cancelled that early never runs its coroutine, so
    the cancellation is then thrown into ``coro`` here (after cancelling
    the future it waits for, as a task would). Should the coroutine catch
    it and wait again, it goes on in another task, which nothing cancels
    any more."""
    started = False

    async def drive() -> Any:
        nonlocal started
        started = True
        return await finish(coro, yielded)

    def cancelled_early(task: "asyncio.Task[Any]") -> None:
        if started or not task.cancelled():
            return
        cancel = getattr(yielded, "cancel", None)
        if cancel is not None:
            cancel()
        try:
            again = coro.throw(asyncio.CancelledError())
        except (StopIteration, asyncio.CancelledError):
            return
        continue_in_task(loop, coro, again, name)

    task = loop.create_task(drive(), name=name)
    task.add_done_callback(cancelled_early)
    return task


def _is_outcome_of(future: "asyncio.Future[Any]", exception: BaseException) -> bool:
    if not future.done():
        return False
    if future.cancelled():
        return isinstance(exception, asyncio.CancelledError)
    return future.exception() is exception


STARTS_EAGERLY = sys.version_info >= (3, 12)
"""Whether :func:`start_task` runs a task's first step at once."""

_START_TASK_DOC = """Run ``coro`` as a task whose first step runs before this returns
    where asyncio offers that (:data:`STARTS_EAGERLY`), else in the loop's
    next turn like any new task.

    Either way the coroutine runs in a task of its own, so
    ``asyncio.current_task()``, ``asyncio.timeout()`` and task groups work
    from its first line on (running the first step by hand, as
    :func:`first_step` does outside a task, would break them). The
    returned task may be done already."""

if sys.version_info >= (3, 12):
    _eager_task_factory = asyncio.create_eager_task_factory(asyncio.Task)

    def start_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], name: Optional[str] = None
    ) -> "asyncio.Task[Any]":
        return _eager_task_factory(loop, coro, name=name)

else:

    def start_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], name: Optional[str] = None
    ) -> "asyncio.Task[Any]":
        return loop.create_task(coro, name=name)


start_task.__doc__ = _START_TASK_DOC
