"""The one timer of an asyncio adapter over a sans-I/O protocol core.

A core (like :class:`aiocoap.transports.rfc8323session.RFC8323Session`)
tells the earliest deadline it added since it was last asked
(``take_added_deadline()``) and, after its ``handle_timer(now)``, its next
deadline (``next_deadline()``). Deadlines otherwise only move later, so the
adapter keeps one :class:`DeadlineTimer`: moved earlier by
:meth:`~DeadlineTimer.arm_before` whenever the core added an earlier
deadline, and set anew by :meth:`~DeadlineTimer.set` when it fired. A timer
that fires early just finds nothing due.
"""

from __future__ import annotations

import asyncio
import math
from typing import Callable, Optional

__all__ = ["DeadlineTimer"]


class DeadlineTimer:
    """One ``loop.call_at`` handle that calls ``callback()`` at the time it
    is armed for (``when``; infinity while disarmed)."""

    __slots__ = ("_loop", "_callback", "_handle", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: Optional[asyncio.TimerHandle] = None
        self.when = math.inf

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {self.when}>"

    def arm_before(self, deadline: Optional[float]) -> None:
        """Make sure the timer fires no later than ``deadline`` (None:
        nothing new)."""
        if deadline is not None and deadline < self.when:
            self.set(deadline)

    def set(self, deadline: Optional[float]) -> None:
        """Fire at ``deadline`` (None: not at all), whatever was armed
        before."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if deadline is None:
            self.when = math.inf
            return
        self.when = deadline
        self._handle = self._loop.call_at(deadline, self._fire)

    def cancel(self) -> None:
        self.set(None)

    def _fire(self) -> None:
        self._handle = None
        self.when = math.inf
        self._callback()
