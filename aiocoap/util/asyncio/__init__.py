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
"""

import asyncio
import time
from typing import Callable, Optional

__all__ = ["clock_of", "Future"]


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


class Future(asyncio.Future):
    """An :class:`asyncio.Future` that calls ``on_cancel(future)`` (if set)
    within :meth:`cancel` itself, before the done callbacks, which asyncio
    runs only in a later loop iteration: a request cancelled right after it
    was created is then never sent.

    The owner of the future removes ``on_cancel`` once the future is done
    otherwise, so that the future does not keep it alive. (It is called
    Future so that it looks like one in reprs.)"""

    __slots__ = ("on_cancel",)

    on_cancel: Optional[Callable[["Future"], None]]

    def cancel(self, msg=None) -> bool:
        cancelled = super().cancel(msg)
        if cancelled:
            on_cancel = getattr(self, "on_cancel", None)
            if on_cancel is not None:
                self.on_cancel = None
                on_cancel(self)
        return cancelled
