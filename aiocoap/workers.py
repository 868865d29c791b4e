"""Several server processes on one port: use more than one core.

A Python process runs its CoAP server on one core. On platforms with
``SO_REUSEPORT`` (Linux, the BSDs) several processes can listen on the same
UDP and TCP port, and the kernel spreads the peers over them. Server
contexts set that option on their listening sockets whenever
:func:`aiocoap.defaults.has_reuse_port` is true (as aiocoap 0.4.17 does),
so the plain recipe is to start the same server N times with the same,
explicit port. :class:`ServerWorkers` (and :func:`serve`, its blocking
form) does that for a site: it starts N processes that each build the site
with a factory and serve it through :meth:`Context.create_server_context
<aiocoap.protocol.Context.create_server_context>`.

Where state lives, and what follows from it:

* The kernel picks the worker of a UDP datagram by a hash of its source and
  destination address and port (the 4-tuple); a TCP connection goes to one
  worker for its lifetime. So all datagrams of one client endpoint reach
  the same worker, including its retransmissions, which that worker's
  deduplication answers from its cache; an observation, a blockwise
  transfer and an OSCORE replay window stay within the one worker that
  serves the client endpoint.
* Each worker has its own state: resources' data, observations, the
  deduplication cache and the per-peer limits are per worker. Resources
  whose state must be shared between workers keep it outside the process
  (a file, a database). A client using several source ports (or
  addresses) may reach different workers with them.
* The mapping holds while the set of workers stays the same. When a worker
  ends, the kernel re-spreads the peers over the others: a retransmission
  may then reach a worker that has not seen the original (a non-idempotent
  request may be executed twice) and observations of the ended worker are
  gone (clients re-register). Therefore, when one worker ends, this class
  stops the others too; restarting the group is left to the service
  manager.
* Multicast requests reach every worker (each socket on the port receives
  them), so a multicast client gets one response per worker.
* All workers must run as the same user (a Linux rule for SO_REUSEPORT,
  which keeps other users from taking over the port), and no unrelated
  server may use the port with SO_REUSEPORT at the same time, or it would
  get a share of the requests. With ``AIOCOAP_REUSE_PORT=0`` servers do
  not share ports, and more than one worker is refused.

Bound to port 0, the workers share one ephemeral port: the port is reserved
(UDP, and TCP on the same number) before they start and released once they
listen; :attr:`ServerWorkers.port` tells which one it is.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from typing import Any, Callable, Optional, cast

from . import defaults
from .numbers.constants import COAP_PORT

__all__ = ["ServerWorkers", "serve", "WorkersError"]

_RESERVE_ATTEMPTS = 20


class WorkersError(RuntimeError):
    """The workers could not be started (the message says which worker
    failed and why), or workers are not possible on this platform."""


def _reserve_port(host: Optional[str]) -> tuple[int, list]:
    """A port number free for UDP and TCP on ``host``, held by sockets with
    SO_REUSEPORT set (so that the workers can bind it too) until they are
    closed. Returns the port and those sockets."""
    udp_host = "::" if host in (None, "") else host
    for _ in range(_RESERVE_ATTEMPTS):
        held: list = []
        try:
            udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            held.append(udp)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            udp_address = socket.getaddrinfo(
                udp_host, 0, socket.AF_INET6, socket.SOCK_DGRAM, 0, socket.AI_V4MAPPED | socket.AI_PASSIVE
            )[0][4]
            udp.bind(udp_address)
            port = udp.getsockname()[1]
            # the TCP listeners bind what asyncio's create_server binds
            for family, kind, proto, _, address in socket.getaddrinfo(
                host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
            ):
                tcp = socket.socket(family, kind, proto)
                held.append(tcp)
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                tcp.bind(address)
        except OSError:
            for sock in held:
                sock.close()
            continue
        return port, held
    raise WorkersError(f"Could not find a port free for UDP and TCP on {host or 'any address'}")


def _worker_main(site_factory, bind, context_kwargs, connection, inherited: list) -> None:
    """Body of a worker process: serve until SIGTERM or SIGINT.

    ``inherited`` are the sockets reserving the port, which a forked worker
    has copies of: closed right away, as a socket in the port's group that
    nobody reads from would swallow its share of the datagrams."""
    for sock in inherited:
        sock.close()
    try:
        asyncio.run(_serve_one(site_factory, bind, context_kwargs, connection))
    except KeyboardInterrupt:
        pass
    finally:
        connection.close()


async def _serve_one(site_factory, bind, context_kwargs, connection) -> None:
    from .protocol import Context

    loop = asyncio.get_running_loop()
    stopped = loop.create_future()

    def stop() -> None:
        if not stopped.done():
            stopped.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    try:
        context = await Context.create_server_context(site_factory(), bind, **context_kwargs)
    except Exception as e:
        connection.send(("failed", f"{type(e).__name__}: {e}"))
        return
    try:
        connection.send(("ready", os.getpid()))
        await stopped
    finally:
        await context.shutdown()


class ServerWorkers:
    """``workers`` processes, each serving ``site_factory()`` on the same
    port (see the module documentation for what that means).

    ``site_factory`` is called once in each worker and returns the site to
    serve (a :class:`aiocoap.resource.Site` or any other resource); with a
    start method other than fork it must be picklable, e.g. a module level
    function. ``bind`` is as for :meth:`Context.create_server_context
    <aiocoap.protocol.Context.create_server_context>` (default: all
    addresses, port 5683); further keyword arguments go to that method in
    every worker. ``workers`` defaults to the number of CPUs.
    ``start_method`` picks the :mod:`multiprocessing` start method (default:
    the platform's).

    :meth:`start` returns once every worker listens; :meth:`stop` ends them
    (SIGTERM, then after ``timeout`` SIGKILL). Used as a context manager, it
    starts and stops the workers around the block."""

    def __init__(
        self,
        site_factory: Callable[[], Any],
        bind: Optional[tuple] = None,
        workers: Optional[int] = None,
        *,
        start_method: Optional[str] = None,
        ready_timeout: float = 30.0,
        **context_kwargs: Any,
    ) -> None:
        if workers is None:
            workers = os.cpu_count() or 1
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if workers > 1 and not defaults.has_reuse_port():
            raise WorkersError(
                "Several workers need SO_REUSEPORT, which this platform does not offer "
                "or AIOCOAP_REUSE_PORT=0 turned off"
            )
        self.site_factory = site_factory
        self.bind = bind
        self.workers = workers
        self.ready_timeout = ready_timeout
        self.context_kwargs = context_kwargs
        self._mp: Any = multiprocessing.get_context(start_method)
        self._processes: list = []
        self._port: Optional[int] = None

    def __repr__(self) -> str:
        running = sum(1 for p in self._processes if p.is_alive())
        return f"<{type(self).__name__} {running}/{self.workers} running on port {self._port}>"

    @property
    def port(self) -> Optional[int]:
        """The port the workers listen on (known once started)."""
        return self._port

    @property
    def pids(self) -> list:
        """Process IDs of the workers."""
        return [p.pid for p in self._processes]

    def start(self) -> None:
        """Start the workers and wait until each of them listens; raises
        WorkersError (after stopping those that did start) if one fails."""
        if self._processes:
            raise RuntimeError("The workers were started already")
        host, port = self.bind if self.bind is not None else (None, None)
        held: list = []
        if port == 0:
            port, held = _reserve_port(host)
        self._port = port if port is not None else COAP_PORT
        bind = (host, port)
        # only forked children have copies of the reserving sockets
        inherited = held if self._mp.get_start_method() == "fork" else []
        pending: dict = {}
        try:
            for index in range(self.workers):
                receiving, sending = self._mp.Pipe(duplex=False)
                process = self._mp.Process(
                    target=_worker_main,
                    args=(self.site_factory, bind, self.context_kwargs, sending, inherited),
                    name=f"aiocoap-worker-{index}",
                    daemon=True,
                )
                process.start()
                sending.close()
                self._processes.append(process)
                pending[receiving] = index
            deadline = time.monotonic() + self.ready_timeout
            while pending:
                remaining = deadline - time.monotonic()
                ready = multiprocessing.connection.wait(list(pending), max(remaining, 0))
                if not ready:
                    raise WorkersError(f"{len(pending)} worker(s) did not start listening in {self.ready_timeout} s")
                for answered in ready:
                    index = pending.pop(answered)
                    connection = cast(multiprocessing.connection.Connection, answered)
                    try:
                        kind, detail = connection.recv()
                    except EOFError:
                        kind, detail = "failed", "exited before listening"
                    connection.close()
                    if kind != "ready":
                        raise WorkersError(f"Worker {index} failed: {detail}")
        except BaseException:
            for receiving in pending:
                receiving.close()
            self.stop()
            raise
        finally:
            for sock in held:
                sock.close()

    def stop(self, timeout: float = 10.0) -> None:
        """End the workers (SIGTERM, so that each shuts its context down;
        SIGKILL for those still running after ``timeout`` seconds)."""
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in self._processes:
            process.join(max(deadline - time.monotonic(), 0))
            if process.is_alive():
                process.kill()
                process.join()
        self._processes = []

    def wait(self) -> int:
        """Block until a worker ends, then stop the others (see the module
        documentation for why); return the exit code of the first one that
        ended (negative: the number of the signal that ended it)."""
        sentinels = {p.sentinel: p for p in self._processes}
        if not sentinels:
            return 0
        ended = sentinels[multiprocessing.connection.wait(list(sentinels))[0]]
        ended.join()
        self.stop()
        return ended.exitcode

    def __enter__(self) -> "ServerWorkers":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def serve(
    site_factory: Callable[[], Any],
    bind: Optional[tuple] = None,
    workers: Optional[int] = None,
    **kwargs: Any,
) -> int:
    """Run :class:`ServerWorkers` until SIGINT or SIGTERM arrives or a
    worker ends; return the exit status for the program: 0 after a signal,
    else that of the worker that ended (128 plus the signal number if a
    signal killed it).

    For example, in the main module of a server::

        def make_site():
            site = aiocoap.resource.Site()
            site.add_resource(["hello"], Hello())
            return site

        if __name__ == "__main__":
            sys.exit(aiocoap.workers.serve(make_site, ("::", 5683), workers=4))
    """
    group = ServerWorkers(site_factory, bind, workers, **kwargs)
    received: list = []

    def on_signal(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        group.start()
        code = group.wait()
        return code if code >= 0 else 128 - code
    except KeyboardInterrupt:
        if not received:
            raise
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        group.stop()
