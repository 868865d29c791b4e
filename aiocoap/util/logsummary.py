"""Log lines about things peers cause, limited in rate.

A peer must not be able to flood the log: an event that a peer can cause
at will is logged at the level it deserves at most once per interval, with
the number of further events since the last line; the others go to the
debug level only.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["LogSummary"]


class LogSummary:
    """Logs one kind of event at ``level`` at most once per ``interval``
    seconds (the time is passed in: this does not read a clock), and the
    rest at debug level; the next line at ``level`` tells how many were
    not shown at that level.

    >>> import logging
    >>> summary = LogSummary(logging.getLogger("example"), logging.WARNING, interval=60)
    >>> summary.log(0.0, "Ignoring unparsable message from %s", "a")   # at WARNING
    >>> summary.log(1.0, "Ignoring unparsable message from %s", "b")   # at DEBUG
    >>> summary.suppressed
    1
    """

    __slots__ = ("logger", "level", "interval", "_next", "suppressed")

    def __init__(self, logger: logging.Logger, level: int, interval: float = 60.0):
        self.logger = logger
        self.level = level
        self.interval = interval
        self._next = float("-inf")
        self.suppressed = 0
        """Events logged at debug level only since the last line at ``level``."""

    def log(self, now: float, msg: str, *args: Any) -> None:
        if now < self._next:
            self.suppressed += 1
            self.logger.debug(msg, *args)
            return
        self._next = now + self.interval
        suppressed, self.suppressed = self.suppressed, 0
        if suppressed:
            msg += " (and %d more like it since the last report)"
            args += (suppressed,)
        self.logger.log(self.level, msg, *args)
