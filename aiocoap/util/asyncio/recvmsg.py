"""A datagram transport that reads with ``recvmsg``, including the error queue.

asyncio's own datagram transports read with ``recvfrom``, which loses the
ancillary data a socket can attach to a datagram (the address it was sent
to, with ``IPV6_RECVPKTINFO``) and never looks at the socket's error queue
(where Linux puts ICMP errors when ``IPV6_RECVERR`` / ``IP_RECVERR`` are
set). :class:`RecvmsgSelectorDatagramTransport` drives a non-blocking socket
with ``loop.add_reader`` instead, and so works on every loop that implements
it: the default selector loops and uvloop (not the Windows proactor loop).

Rules this module enforces:

* Reception never stops because the socket reported an error. A received
  ICMP error shows up both as a pending socket error (returned by the next
  ``recvmsg`` or ``sendmsg``, whichever comes first) and as an entry in the
  error queue. The queue is drained whenever a pending error is seen or a
  wakeup brings no datagram, and its entries go to
  :meth:`RecvmsgDatagramProtocol.datagram_errqueue_received`. libuv (under
  uvloop) stops a poll handle for good when the kernel signals ``POLLERR``,
  so on loops other than asyncio's selector loops the queue is checked on
  every wakeup, and after every sign of an error the reader is registered
  anew.
* One wakeup reads at most :data:`BATCH` datagrams, so that a flood on one
  socket can not starve the rest of the loop, while a busy socket still
  needs only one wakeup per batch. While datagrams come one at a time
  (see :data:`QUIET_AFTER`), only the first is read at once and the others
  after what its delivery scheduled for the loop's next iteration (a
  server's render of the request), so that a peer with one request in
  flight does not wait for the failing read that finds no second one.
* Sending never raises :class:`BlockingIOError`: a datagram that does not
  fit into the socket's send buffer is dropped (UDP is lossy; the CoAP
  message layer retransmits what matters). Other errors are raised to the
  caller, except for a stale ICMP error of an earlier datagram that the
  kernel reports on this send: that one goes through the error queue to
  the protocol, and the datagram is sent again.
* Exceptions raised by the protocol's callbacks go to the loop's exception
  handler and do not stop reading.

Log levels: debug for dropped datagrams. Nothing is logged per datagram
received.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Callable, Optional, TypeVar

from .. import socknumbers

__all__ = [
    "RecvmsgDatagramProtocol",
    "RecvmsgSelectorDatagramTransport",
    "create_recvmsg_datagram_endpoint",
    "BATCH",
]

BATCH = 64
"""Maximum number of datagrams (or error queue entries) read per wakeup."""

QUIET_AFTER = 8
"""How many wakeups in a row that find at most one datagram make a socket
that had more pending count as one where datagrams come one at a time
again (then a wakeup reads one datagram and looks for more only after what
its delivery scheduled). A burst from a client with many requests in
flight often begins with a wakeup that finds one; switching at the first
such wakeup cost the core server benchmark a few percent."""

RECV_BUFSIZE = 65535
"""Receive buffer size: large enough for any UDP datagram (CPython shrinks
the resulting bytes object to the received length)."""

ANCBUFSIZE = 256
"""Room for ancillary data: an in6_pktinfo, or a sock_extended_err with
its offender address, with plenty to spare."""

_MSG_ERRQUEUE = socknumbers.MSG_ERRQUEUE

_log = logging.getLogger(__name__)


class RecvmsgDatagramProtocol(asyncio.DatagramProtocol):
    """Callback interface of :class:`RecvmsgSelectorDatagramTransport`.

    Besides the usual :class:`asyncio.DatagramProtocol` callbacks
    (``connection_made``, ``connection_lost``, ``error_received``), a
    protocol receives every datagram with its ancillary data."""

    def datagram_msg_received(self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, address: Any) -> None:
        """Called for every received datagram, with the ancillary data and
        flags as returned by :meth:`socket.socket.recvmsg`.

        The default implementation forwards to ``datagram_received``."""
        self.datagram_received(data, address)

    def datagram_errqueue_received(self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, address: Any) -> None:
        """Called for every entry read from the socket's error queue.

        ``data`` is (the start of) the datagram that caused the error,
        ``address`` the address it was sent to, and ``ancdata`` carries the
        ``sock_extended_err`` structure describing the error. The default
        implementation ignores the entry."""


class RecvmsgSelectorDatagramTransport(asyncio.DatagramTransport):
    """Datagram transport around a (typically unconnected) socket that is
    read with ``recvmsg``; see the module documentation.

    Use :func:`create_recvmsg_datagram_endpoint` to create one. With
    ``errqueue=True``, the socket's error queue is read as well (set
    ``IPV6_RECVERR``/``IP_RECVERR`` on the socket for it to be filled)."""

    max_size = RECV_BUFSIZE
    """The largest datagram read in full (the buffer size given to
    ``recvmsg``); longer ones are truncated by the kernel."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: RecvmsgDatagramProtocol,
        waiter: Optional[asyncio.Future[None]] = None,
        *,
        errqueue: bool = False,
        log: Optional[logging.Logger] = None,
    ):
        extra: dict[str, Any] = {"socket": sock}
        try:
            extra["sockname"] = sock.getsockname()
        except OSError:
            extra["sockname"] = None
        try:
            extra["peername"] = sock.getpeername()
        except OSError:
            extra["peername"] = None
        super().__init__(extra)
        sock.setblocking(False)
        self._loop = loop
        self._sock = sock
        self._fileno = sock.fileno()
        self._protocol = protocol
        self._errqueue = errqueue
        # Loops other than asyncio's selector loops may (libuv does) drop a
        # reader when the kernel signals POLLERR, which a wakeup that also
        # brought data can not tell; there, every wakeup checks the queue.
        self._check_errqueue_always = errqueue and not isinstance(loop, asyncio.SelectorEventLoop)
        self._log = log if log is not None else _log
        self._closing = False
        self._reading = False
        self._rearm_pending = False
        self._read_more_pending = False
        # (whether _read_more took datagrams since the last wakeup)
        self._read_ahead = False
        # (whether datagrams arrive faster than one per wakeup, and for how
        # many wakeups in a row they have not)
        self._busy = False
        self._single_wakeups = 0
        loop.call_soon(self._start, waiter)

    # --- lifecycle ---------------------------------------------------------

    def _start(self, waiter: Optional[asyncio.Future[None]]) -> None:
        if self._closing:
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionAbortedError("transport closed before it was started"))
            return
        try:
            self._protocol.connection_made(self)
            self._loop.add_reader(self._fileno, self._read_ready)
        except Exception as exc:
            self.close()
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
                return
            raise
        self._reading = True
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading, and close the socket in the next loop iteration
        (after which the protocol's ``connection_lost`` is called)."""
        if self._closing:
            return
        self._closing = True
        if self._reading:
            self._reading = False
            if not self._loop.is_closed():
                self._loop.remove_reader(self._fileno)
        if self._loop.is_closed():
            self._connection_lost(None)
        else:
            self._loop.call_soon(self._connection_lost, None)

    def abort(self) -> None:
        """Like :meth:`close`; there is no send buffer that could be lost."""
        self.close()

    def _connection_lost(self, exc: Optional[Exception]) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_write_buffer_size(self) -> int:
        return 0

    # --- receiving ---------------------------------------------------------

    def _read_ready(self) -> None:
        # While datagrams come one at a time, a wakeup reads one, and the
        # look for more waits until the loop ran what delivering it
        # scheduled (a server's render of the request, which sends the
        # response): for a peer with one request in flight that look is a
        # recvmsg that fails, and it would otherwise sit between every
        # request and its response. Once looks find more (many requests in
        # flight), wakeups read whole batches at once again.
        read_ahead = self._read_ahead
        self._read_ahead = False
        busy = self._busy
        received, trouble = self._receive(BATCH if busy else 1)
        if self._closing:
            return
        if busy:
            if received > 1:
                self._single_wakeups = 0
            else:
                self._single_wakeups += 1
                self._busy = self._single_wakeups < QUIET_AFTER
        elif received and not self._read_more_pending:
            self._read_more_pending = True
            self._loop.call_soon(self._read_more)
        # (a wakeup without data is explained if _read_more took the data it
        # was for; else the kernel signalled POLLERR for queued errors whose
        # pending flag a send has already consumed)
        unexplained = not received and not read_ahead
        if not trouble and (unexplained or self._check_errqueue_always):
            if self._drain_errqueue(False) or unexplained:
                trouble = True
        if trouble:
            self._schedule_rearm()

    def _read_more(self) -> None:
        self._read_more_pending = False
        if self._closing:
            return
        received, trouble = self._receive(BATCH - 1)
        if received:
            self._read_ahead = True
            self._busy = True
            self._single_wakeups = 0
        if trouble and not self._closing:
            self._schedule_rearm()

    def _receive(self, limit: int) -> "tuple[int, bool]":
        """Read and deliver up to ``limit`` datagrams; return how many, and
        whether the socket reported an error (whose queue was then read)."""
        recvmsg = self._sock.recvmsg
        max_size = self.max_size
        deliver = self._protocol.datagram_msg_received
        received = 0
        for _ in range(limit):
            try:
                data, ancdata, flags, address = recvmsg(max_size, ANCBUFSIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # A pending asynchronous error (typically from an ICMP
                # message); the error queue says whom it concerns.
                if not self._drain_errqueue(False):
                    self._call_protocol(self._protocol.error_received, exc)
                return received, True
            received += 1
            try:
                deliver(data, ancdata, flags, address)
            except Exception as exc:
                self._report(exc, "delivering a received datagram")
            if self._closing:
                break
        return received, False

    def _drain_errqueue(self, deferred: bool) -> bool:
        """Read all entries of the error queue and pass them to the protocol
        (right away, or in later loop iterations when called from within a
        send). Return whether there were any."""
        if not self._errqueue:
            return False
        recvmsg = self._sock.recvmsg
        any_entries = False
        for _ in range(BATCH):
            try:
                data, ancdata, flags, address = recvmsg(self.max_size, ANCBUFSIZE, _MSG_ERRQUEUE)
            except OSError:
                # EAGAIN: the queue is empty
                break
            any_entries = True
            if deferred:
                self._loop.call_soon(self._deliver_errqueue, data, ancdata, flags, address)
            else:
                self._deliver_errqueue(data, ancdata, flags, address)
        return any_entries

    def _deliver_errqueue(self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, address: Any) -> None:
        if self._closing:
            return
        self._call_protocol(self._protocol.datagram_errqueue_received, data, ancdata, flags, address)

    def _schedule_rearm(self) -> None:
        if not self._rearm_pending and not self._closing:
            self._rearm_pending = True
            self._loop.call_soon(self._rearm)

    def _rearm(self) -> None:
        # uvloop (libuv) has stopped and closed the poll handle if the
        # wakeup carried POLLERR; registering anew is harmless elsewhere.
        self._rearm_pending = False
        if self._closing:
            return
        self._loop.remove_reader(self._fileno)
        self._loop.add_reader(self._fileno, self._read_ready)

    def _call_protocol(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:
            self._report(exc, f"calling {callback.__name__}")

    def _report(self, exc: Exception, what: str) -> None:
        self._loop.call_exception_handler({
            "message": f"Exception in {type(self).__name__} when {what}",
            "exception": exc,
            "transport": self,
            "protocol": self._protocol,
        })

    # --- sending -----------------------------------------------------------

    def sendmsg(self, data: bytes, ancdata: Any = (), flags: int = 0, address: Any = None) -> None:
        """Send a datagram with ancillary data (e.g. an ``IPV6_PKTINFO``
        selecting the source address) to ``address``.

        Drops the datagram if the send buffer is full or the transport is
        closed; raises other :class:`OSError` from the socket."""
        if self._closing:
            self._log.debug("Dropping datagram to %s: transport is closed", address)
            return
        try:
            self._send_once(data, ancdata, flags, address)
        except OSError as exc:
            self.send_failed(exc, data, ancdata, flags, address)

    def send_failed(self, exc: OSError, data: bytes, ancdata: Any = (), flags: int = 0, address: Any = None) -> None:
        """What :meth:`sendmsg` does when sending on the socket raised
        ``exc``: for callers that made the first attempt on the socket
        themselves (``get_extra_info("socket")``, with the same arguments),
        so that the datagram is handled as :meth:`sendmsg` would."""
        if isinstance(exc, BlockingIOError):
            self._log.debug("Dropping datagram to %s: send buffer full", address)
            return
        # Linux reports a pending ICMP error of an earlier datagram on the
        # next send and refuses that send. If the error queue has the
        # details, they are that error's real report, and this datagram
        # deserves another attempt. (The reader is registered anew, as the
        # read that would have seen the error might not come on libuv.)
        self._schedule_rearm()
        if not self._drain_errqueue(True):
            raise exc
        try:
            self._send_once(data, ancdata, flags, address)
        except BlockingIOError:
            self._log.debug("Dropping datagram to %s: send buffer full", address)

    def _send_once(self, data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        if ancdata or flags:
            if address is None:
                self._sock.sendmsg((data,), ancdata, flags)
            else:
                self._sock.sendmsg((data,), ancdata, flags, address)
        elif address is None:
            self._sock.send(data)
        else:
            self._sock.sendto(data, address)

    def sendto(self, data: bytes, addr: Any = None) -> None:  # type: ignore[override]
        """The :class:`asyncio.DatagramTransport` way of sending; see
        :meth:`sendmsg`."""
        self.sendmsg(data, (), 0, addr)

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return f"<{type(self).__name__} fd={self._fileno} {state}>"


_P = TypeVar("_P", bound=RecvmsgDatagramProtocol)


async def create_recvmsg_datagram_endpoint(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], _P],
    sock: socket.socket,
    *,
    errqueue: bool = False,
    log: Optional[logging.Logger] = None,
) -> "tuple[RecvmsgSelectorDatagramTransport, _P]":
    """Wrap an already set-up (bound, options set) datagram socket in a
    :class:`RecvmsgSelectorDatagramTransport`, like
    ``loop.create_datagram_endpoint(factory, sock=sock)`` does for plain
    datagram transports.

    The socket belongs to the transport from then on, even if this fails.
    Raises NotImplementedError on loops without ``add_reader``."""
    protocol = factory()
    waiter = loop.create_future()
    transport = RecvmsgSelectorDatagramTransport(loop, sock, protocol, waiter, errqueue=errqueue, log=log)
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return transport, protocol
