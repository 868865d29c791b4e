"""The caps of an RFC 8323 server's connections, without I/O: which new
connection to admit, which old one to close for it, and which to abort when
incomplete messages hold too much memory.

A server transport (TCP and TLS in :mod:`aiocoap.transports.tcp`; a
WebSockets server can use it the same way) keeps one
:class:`ConnectionTable` and tells it

* :meth:`~ConnectionTable.admit` for each accepted connection, with the
  peer's host (its address without the port). The answer says whether to
  keep it and which connections to close first (:class:`Admission`);
* :meth:`~ConnectionTable.set_buffered` after each read, with the bytes the
  connection holds of a message that is not complete yet; the answer is a
  connection to abort, if the total went above the limit;
* :meth:`~ConnectionTable.remove` when a connection ended.

The rules (limits from :class:`~aiocoap.transports.rfc8323session.SessionTuning`):

* At most ``max_per_host`` connections from one host: one more first closes
  that host's connection that has been idle longest (nothing in flight, no
  observation: the session's ``is_idle``); if none of them is idle, the new
  one is refused.
* At most ``max_connections`` in all: one more first closes the connection
  that has been idle longest, whoever's it is; if none is idle, the new one
  is refused. So idle connections can not lock new clients out.
* At most ``max_buffered`` bytes of incomplete messages over all
  connections: above it, the connection holding the most is aborted.

Idle connections also close by themselves after
:attr:`~aiocoap.transports.rfc8323session.SessionTuning.server_idle_timeout`
(the session's timer); the table only decides at the caps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Iterable, Optional, TypeVar

__all__ = ["Admission", "ConnectionTable", "longest_idle"]

C = TypeVar("C", bound=Hashable)
T = TypeVar("T")


def longest_idle(candidates: Iterable[T], idle_since: Callable[[T], Optional[Any]]) -> Optional[T]:
    """The candidate idle longest: the one whose ``idle_since`` is smallest,
    leaving out those for which it is None (not idle). The values need only
    be comparable, e.g. a time with a sequence number for ties."""
    best: Optional[T] = None
    best_since: Any = None
    for candidate in candidates:
        since = idle_since(candidate)
        if since is not None and (best is None or since < best_since):
            best, best_since = candidate, since
    return best


@dataclass
class Admission(Generic[C]):
    """What to do with a new connection."""

    admitted: bool
    """Keep it (else: refuse it, with an Abort giving ``reason``)."""
    close: list[C] = field(default_factory=list)
    """Idle connections to close first to make room."""
    reason: str = ""
    """Why it was refused."""


class ConnectionTable(Generic[C]):
    """Connections of one server by host, and the bytes of incomplete
    messages they hold (see the module documentation for the rules).

    :param idle_since: ``idle_since(connection)``: since when the
        connection has had nothing pending (any comparable value, earlier
        is smaller), or None if it has something.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        max_per_host: int,
        max_buffered: int,
        idle_since: Callable[[C], Optional[Any]],
    ) -> None:
        self.max_connections = max_connections
        self.max_per_host = max_per_host
        self.max_buffered = max_buffered
        self._idle_since = idle_since
        self._host: dict[C, str] = {}
        self._by_host: dict[str, set[C]] = {}
        self._buffered: dict[C, int] = {}
        self.buffered = 0
        """Bytes of incomplete messages held by all connections."""

    def follow(self, tuning: Any) -> "ConnectionTable[C]":
        """Take the caps from a :class:`~.rfc8323session.SessionTuning`
        (``max_server_connections``, ``..._per_host``,
        ``max_server_buffered``), which may have changed since; returns the
        table itself."""
        self.max_connections = tuning.max_server_connections
        self.max_per_host = tuning.max_server_connections_per_host
        self.max_buffered = tuning.max_server_buffered
        return self

    def __len__(self) -> int:
        return len(self._host)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {len(self._host)} connection(s) from {len(self._by_host)} host(s), "
            f"{self.buffered} bytes buffered>"
        )

    def from_host(self, host: str) -> int:
        """Connections from ``host``."""
        return len(self._by_host.get(host, ()))

    def _longest_idle(self, candidates: Iterable[C]) -> Optional[C]:
        return longest_idle(candidates, self._idle_since)

    def admit(self, connection: C, host: str) -> Admission[C]:
        """A new connection from ``host``: keep it, and close which others
        for it? Connections to close are taken out of the table here; an
        admitted one is put in."""
        close: list[C] = []
        same_host = self._by_host.get(host, set())
        if len(same_host) >= self.max_per_host:
            victim = self._longest_idle(same_host)
            if victim is None:
                return Admission(False, reason="too many connections from your address")
            close.append(victim)
            self.remove(victim)
        if len(self._host) >= self.max_connections:
            victim = self._longest_idle(self._host)
            if victim is None:
                return Admission(False, close, reason="too many connections")
            close.append(victim)
            self.remove(victim)
        self._host[connection] = host
        self._by_host.setdefault(host, set()).add(connection)
        return Admission(True, close)

    def remove(self, connection: C) -> None:
        """The connection ended (or is being closed)."""
        host = self._host.pop(connection, None)
        if host is None:
            return
        same_host = self._by_host[host]
        same_host.discard(connection)
        if not same_host:
            del self._by_host[host]
        self.buffered -= self._buffered.pop(connection, 0)

    def set_buffered(self, connection: C, nbytes: int) -> Optional[C]:
        """The connection now holds ``nbytes`` of an incomplete message.
        Returns the connection to abort if all together hold more than
        ``max_buffered`` (the one holding most; it is taken out of the
        table), else None."""
        if connection not in self._host:
            return None
        old = self._buffered.get(connection, 0)
        if nbytes == old:
            return None
        if nbytes:
            self._buffered[connection] = nbytes
        else:
            del self._buffered[connection]
        self.buffered += nbytes - old
        if self.buffered <= self.max_buffered:
            return None
        victim = max(self._buffered, key=self._buffered.__getitem__)
        self.remove(victim)
        return victim
