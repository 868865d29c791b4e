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
"""

import asyncio
import time
from typing import Callable

__all__ = ["clock_of"]


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
