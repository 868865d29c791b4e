"""Extensions to asyncio and workarounds around its shortcomings.

* :mod:`.recvmsg`: a datagram transport that reads with ``recvmsg`` (so
  that ancillary data like the destination address of a datagram, and the
  socket's error queue with ICMP errors, are available) and that works on
  every event loop that implements ``add_reader`` (the default selector
  loops and uvloop).
* :mod:`.stepping`: running many short coroutines in one task.
* :mod:`.timeoutdict`: a dictionary whose unused entries expire.
* :mod:`.getaddrinfo_addrconfig`: name resolution that leaves out
  addresses without a route.
* :func:`clock_of`: the loop's clock as a function that is cheap to call.
* :class:`Future`: a future that reacts to its cancellation at once.
* :func:`result_within`: ``wait_for`` that never loses a cancellation.
"""

import asyncio
import time
from typing import Any, Awaitable, Callable, Optional, TypeVar

__all__ = ["clock_of", "Future", "result_within"]

_T = TypeVar("_T")


def clock_of(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """A function returning ``loop.time()``.

    asyncio's own loops implement ``time()`` as a Python method around
    :func:`time.monotonic`; for them, this is :func:`time.monotonic`
    itself, which is several times cheaper to call (code that reads the
    clock for every message notices). Any other loop (uvloop, or a test's
    virtual clock) gets its own ``time`` method. Read the clock only
    through the result if the loop's ``time`` can be replaced later."""
    if getattr(type(loop), "time", None) is asyncio.BaseEventLoop.time and "time" not in getattr(loop, "__dict__", ()):
        return time.monotonic
    return loop.time


class Future(asyncio.Future[Any]):
    """An :class:`asyncio.Future` that calls ``on_cancel(future)`` (if set)
    within :meth:`cancel` itself, before the done callbacks, which asyncio
    runs only in a later loop iteration: a request cancelled right after it
    was created is then never sent.

    It drops ``on_cancel`` when it gets a result or an exception instead,
    so it does not keep the handler (and what that refers to) alive, and
    its owner needs no done callback to drop it: that would cost a loop
    iteration's callback per request.

    For an owner that passes the result on to a future of its own,
    :meth:`call_on_outcome` is the synchronous counterpart of a done
    callback. (It is called Future so that it looks like one in reprs.)"""

    __slots__ = ("on_cancel", "_on_outcome")

    on_cancel: Optional[Callable[["Future"], None]]
    _on_outcome: Optional[Callable[["Future"], None]]

    def call_on_outcome(self, callback: Callable[["Future"], None]) -> None:
        """Call ``callback(future)`` once the future has a result or an
        exception: at once if it has, else within :meth:`set_result` or
        :meth:`set_exception` (so whatever the callback sets wakes its
        awaiter in the next loop iteration, not one later as from a done
        callback). Not when the future is cancelled: that is
        ``on_cancel``'s. One callback at a time."""
        if self.done():
            if not self.cancelled():
                callback(self)
            return
        self._on_outcome = callback

    def cancel(self, msg: Any = None) -> bool:
        cancelled = super().cancel(msg)
        if cancelled:
            self._on_outcome = None
            on_cancel = getattr(self, "on_cancel", None)
            if on_cancel is not None:
                self.on_cancel = None
                on_cancel(self)
        return cancelled

    def set_result(self, result: Any) -> None:
        self.on_cancel = None
        super().set_result(result)
        self._outcome_known()

    def set_exception(self, exception: Any) -> None:
        self.on_cancel = None
        super().set_exception(exception)
        self._outcome_known()

    def _outcome_known(self) -> None:
        on_outcome = getattr(self, "_on_outcome", None)
        if on_outcome is not None:
            self._on_outcome = None
            on_outcome(self)


async def result_within(awaitable: Awaitable[_T], timeout: Optional[float]) -> _T:
    """The result of ``awaitable``, or :class:`asyncio.TimeoutError` after
    ``timeout`` seconds (the awaitable's future is then cancelled; None
    waits as long as it takes).

    Unlike :func:`asyncio.wait_for` before Python 3.12, this never loses a
    cancellation of the caller: when the awaited result arrives in the same
    loop iteration in which the caller is cancelled, ``wait_for`` returns
    the result and the task that was asked to stop runs on (a Registerer's
    refresh loop that never ended its ``shutdown()``)."""
    future: "asyncio.Future[Any]" = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait((future,), timeout=timeout)
    except asyncio.CancelledError:
        future.cancel()
        raise
    if not done:
        future.cancel()
        raise asyncio.TimeoutError()
    result: _T = future.result()
    return result
