"""The request layer: the :class:`Context` applications talk to, the
request objects it hands out, and the server-side rendering of requests on
a resource tree.

* :class:`Context` is the application's entry point to the network. It owns
  the transports (chosen by :mod:`aiocoap.defaults`), sends requests
  (:meth:`Context.request`) and renders incoming requests on its site.
* :class:`Request` (from ``Context.request``) carries the ``response``
  future, ``response_raising`` / ``response_nonraising``, and the
  ``observation`` of an observe request.
* :class:`MulticastRequest` collects every response to a multicast request
  until a timeout.
* :class:`ClientObservation` / :class:`ServerObservation` are the two ends
  of RFC 7641 observations.
* :class:`BlockwiseRequest` (what ``Context.request`` returns by default)
  and the server's blockwise state come from :mod:`aiocoap.blockwise`; the
  base classes both kinds of request share (:class:`BaseRequest`,
  :class:`BaseUnicastRequest`, :class:`ClientObservation`) from
  ``aiocoap._requestbase``. Both are re-exported here, and neither imports
  this module.

Errors reach applications only as :mod:`aiocoap.error` exceptions; an
exception inside a resource becomes a 5.00 response and one log line with
the traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Coroutine, Optional, Sequence, Union, cast

from . import error, interfaces
from .message import Message, NoResponse, UndecidedRemote
from .numbers.codes import RESPONSE_START, SUCCESSFUL_END, Code
from .numbers.constants import DEFAULT_TUNING, SHUTDOWN_TIMEOUT, TransportTuning
from .numbers import uri_path_abbrev
from .numbers.optionnumbers import OptionNumber
from .numbers.types import Type
from .pipe import Event, Pipe, add_rendered, error_to_message
from ._requestbase import BaseRequest, BaseUnicastRequest, ClientObservation
from .amplification import AmplificationGate, AmplificationLimit
from .blockwise import BlockwiseRequest, BlockwiseServer
from .credentials import CredentialsMap
from .tokenmanager import TokenManager
from .util import hostportsplit
from .util.asyncio import Future, stepping
from .util.logsummary import LogSummary

if TYPE_CHECKING:
    import ssl

    from .messagemanager import MessageManager
    from .transports.multicast import MulticastGroup, MulticastSpec

__all__ = [
    "Context", "BaseRequest", "BaseUnicastRequest", "Request", "BlockwiseRequest",
    "MulticastRequest", "ClientObservation", "ServerObservation",
]

# Critical options the library itself processes (RFC 7252 §5.4.1); any other
# critical option in a request is answered with 4.02 Bad Option.
RECOGNIZED_CRITICAL_OPTIONS = frozenset(
    int(o)
    for o in (
        OptionNumber.IF_MATCH,
        OptionNumber.URI_HOST,
        OptionNumber.IF_NONE_MATCH,
        OptionNumber.URI_PORT,
        OptionNumber.URI_PATH,
        OptionNumber.URI_QUERY,
        OptionNumber.ACCEPT,
        OptionNumber.BLOCK2,
        OptionNumber.BLOCK1,
        OptionNumber.PROXY_URI,
        OptionNumber.PROXY_SCHEME,
        OptionNumber.URI_PATH_ABBREV,
    )
)

NOTIFICATION_CON_INTERVAL = 20
"""Every this many notifications of an observation, one is confirmable
(the others are NON), so a vanished client is noticed (RFC 7641 §4.5)."""

NOTIFICATION_CON_MAX_AGE = 24 * 3600.0
"""A notification is confirmable at least once in this many seconds."""

NOTIFICATION_SLICE = 0.001
"""Default of :attr:`Context.notification_slice` (with 10 000 observers of
a 10 Hz resource, 1 ms slices gave a plain GET half the p99 latency of
2 ms ones at the same notification rate: benchmarks/README.md)."""

_SLICE_CHECK_EVERY = 16
"""Notifications between two readings of the clock against the slice."""

MAX_OBSERVATIONS_PER_PEER = 1024
"""Default of :attr:`Context.max_observations_per_peer`."""

MAX_OBSERVATIONS_PER_HOST = 4096
"""Default of :attr:`Context.max_observations_per_host`: a few peers' worth,
so that one host can not take a resource's whole share by registering from
many ports, while clients behind one NAT still get room."""

MAX_OBSERVATIONS_PER_RESOURCE = 16384
"""Default of :attr:`Context.max_observations_per_resource`."""

MULTICAST_REQUEST_TIMEOUT = 5.5
"""How long a MulticastRequest collects responses by default: the default
leisure (5 s) plus a margin for the round trip."""


class Context(interfaces.RequestProvider):
    """Applications' entry point to the network

    A Context coordinates one or more network transports and dispatches data
    between them and the application. The application can start requests
    with :meth:`request`, and set a ``resource.Site`` (``serversite``) that
    answers requests directed to it as a server.

    A typical application creates one context (a server context if it acts
    as a server at all) and uses it for the process lifetime; a context that
    is not used any more must be shut down with :meth:`shutdown`."""

    def __init__(
        self,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        serversite: Optional[interfaces.Resource] = None,
        loggername: str = "coap",
        client_credentials: Optional[CredentialsMap] = None,
        server_credentials: Optional[CredentialsMap] = None,
        *,
        transport_tuning: TransportTuning = DEFAULT_TUNING,
    ) -> None:
        self.log = logging.getLogger(loggername)
        self.loop = loop or asyncio.get_event_loop()
        self.serversite = serversite
        self.transport_tuning = transport_tuning
        self.recognized_critical_options = RECOGNIZED_CRITICAL_OPTIONS
        if client_credentials is None:
            client_credentials = CredentialsMap()
        self.client_credentials = client_credentials
        self.server_credentials = server_credentials or CredentialsMap()
        self.request_interfaces: list[interfaces.RequestInterface] = []
        self._tokenmanager = TokenManager(
            self.render_to_pipe, self.log, self.loop, client_credentials=self.client_credentials
        )
        self.request_interfaces.append(self._tokenmanager)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ssl_context: Optional[ssl.SSLContext] = None
        self._loaded_transports: list[str] = []
        self._route_cache: dict[Any, Any] = {}
        self._route_cache_generation = getattr(self.client_credentials, "generation", 0)
        self._shutdown = False
        self.blockwise = BlockwiseServer(self.log)
        """Server-side blockwise state (request reassembly, response
        slicing)."""
        self.amplification = AmplificationLimit()
        """What a server sends to plain-UDP peers that have not shown that
        they receive (RFC 9175 Echo challenges, see
        :mod:`aiocoap.amplification`); ``amplification.factor = None``
        switches the limit off."""
        self.max_observations_per_peer = MAX_OBSERVATIONS_PER_PEER
        """How many observations one peer (an address and port) may hold;
        a registration beyond it is answered like a plain GET."""
        self.max_observations_per_host = MAX_OBSERVATIONS_PER_HOST
        """How many observations one host may hold over all its ports."""
        self.max_observations_per_resource = MAX_OBSERVATIONS_PER_RESOURCE
        """How many observations one resource (path) may have."""
        self.notification_con_interval = NOTIFICATION_CON_INTERVAL
        self.notification_slice = NOTIFICATION_SLICE
        """Seconds of rendering and sending notifications after which the
        rest waits for the loop's next turns, so that requests (and
        everything else) keep their latency while thousands of observers
        are notified: a request arriving during a slice is read and
        answered before the next slice starts. Observations still waiting
        when their resource changes again get one notification of the
        newest state, not two (RFC 7641 §4.5.1: a server that can not keep
        up skips intermediate states); each observation waits its turn in
        the order it was triggered."""
        self._observation_cap_log = LogSummary(self.log, logging.INFO)
        self._observations_by_peer: dict[Any, int] = {}
        self._observations_by_host: dict[str, int] = {}
        self._observations_by_path: dict[Any, int] = {}
        # Observations with work queued (ServerObservation.trigger), each
        # once, in the order triggered; taken in slices by worker tasks
        # (see _render_observations), of which at most one waits to start.
        self._render_queue: deque[ServerObservation] = deque()
        self._render_worker_pending = False

    def __repr__(self) -> str:
        kind = "server" if self.serversite is not None else "client"
        transports = ", ".join(repr(t) for t in self._tokenmanager.token_interfaces)
        return f"<{type(self).__name__} ({kind}) with {transports or 'no transports'}>"

    # --- creation and destruction -----------------------------------------------

    async def _add_message_interface(
        self, factory: Callable[[MessageManager], Awaitable[interfaces.MessageInterface]]
    ) -> None:
        from .messagemanager import MessageManager

        mman = await MessageManager.create(
            self._tokenmanager, self.log, self.loop, factory, tuning=self.transport_tuning,
            reachable=self.amplification.note_reachable,
        )
        self._tokenmanager.token_interfaces.append(mman)

    def _add_request_interface(self, interface: interfaces.RequestInterface) -> None:
        # Request transports (OSCORE) claim requests before the plain token
        # layer does.
        self.request_interfaces.insert(0, interface)

    async def _load_transport(
        self,
        name: str,
        *,
        server_bind: Optional[tuple[Optional[str], Optional[int]]] = None,
        multicast: Sequence[MulticastGroup] = (),
        explicit: bool,
    ) -> None:
        """Load the transport ``name`` of :data:`aiocoap.transports.TRANSPORTS`.

        A name the application gave explicitly must load (an unknown name or
        missing third-party modules raise); a default one that can not load
        here is skipped with a debug message."""
        from . import defaults
        from .transports import TRANSPORTS, TransportSetup

        entry = TRANSPORTS.get(name)
        if entry is None:
            if explicit:
                raise ValueError(f"Unknown transport {name!r} requested")
            self.log.debug("Transport %r is not known; skipping", name)
            return
        missing = entry.missing_modules
        if missing:
            if explicit:
                raise ImportError(defaults.missing_module_message(entry.extra, missing))
            self.log.debug("Transport %r is not available (missing %s); skipping", name, ", ".join(missing))
            return
        setup = TransportSetup(
            log=self.log,
            loop=self.loop,
            tokenmanager=self._tokenmanager,
            tuning=self.transport_tuning,
            server_bind=server_bind,
            ssl_context=self._ssl_context,
            client_credentials=self.client_credentials,
            server_credentials=self.server_credentials,
            add_message_interface=self._add_message_interface,
            add_token_interface=self._tokenmanager.token_interfaces.append,
            add_request_interface=self._add_request_interface,
            request_provider=self,
            loaded=self._loaded_transports,
            multicast=multicast,
        )
        await entry.load(setup)
        self._loaded_transports.append(name)

    @classmethod
    async def create_client_context(
        cls,
        *,
        loggername: str = "coap",
        loop: Optional[asyncio.AbstractEventLoop] = None,
        transports: Optional[list[str]] = None,
        transport_tuning: TransportTuning = DEFAULT_TUNING,
    ) -> Context:
        """Create a context bound to all addresses on a random listening
        port.

        This is the easiest way to get a context suitable for sending client
        requests."""
        from . import defaults

        if loop is None:
            loop = asyncio.get_running_loop()
        self = cls(loop=loop, serversite=None, loggername=loggername, transport_tuning=transport_tuning)
        explicit = transports is not None or bool(os.environ.get("AIOCOAP_CLIENT_TRANSPORT"))
        names = transports if transports is not None else defaults.get_default_clienttransports(loop=loop)
        try:
            for name in names:
                await self._load_transport(name, explicit=explicit)
        except BaseException:
            await self.shutdown()
            raise
        return self

    @classmethod
    async def create_server_context(
        cls,
        site: Optional[interfaces.Resource],
        bind: Optional[tuple[Optional[str], Optional[int]]] = None,
        *,
        loggername: str = "coap-server",
        loop: Optional[asyncio.AbstractEventLoop] = None,
        _ssl_context: Optional[ssl.SSLContext] = None,
        multicast: Optional[MulticastSpec] = (),
        server_credentials: Optional[CredentialsMap] = None,
        transports: Optional[list[str]] = None,
        transport_tuning: TransportTuning = DEFAULT_TUNING,
    ) -> Context:
        """Create a context, bound to all addresses on the CoAP port (unless
        otherwise specified in the ``bind`` argument, a (host, port) tuple).

        UDP and TCP listen on the given port (5683 by default); CoAP over TLS
        (when ``_ssl_context`` is given) on 5684 by default, and with an
        explicitly given port on the port after it if TCP already listens
        on that one.

        If ``multicast`` is given, it needs to be a list of (multicast
        address, interface name) tuples, which will all be joined. (The IPv4
        style of selecting the interface by a local address is not
        supported.) As a shortcut, the list may also contain interface names
        alone. Those will be joined for the 'all CoAP nodes' groups of IPv4
        and IPv6 (with scopes 2 and 5) as well as the respective 'all nodes'
        groups in IPv6 (:data:`aiocoap.numbers.constants.MCAST_ALL`). An
        entry that names no interface or no multicast address raises
        ValueError here; a group the kernel refuses to join is logged as a
        warning and left out. Only the ``udp6`` transport joins groups (a
        warning says so when it is not loaded), and only when bound to all
        addresses; bound that way, it joins the All-CoAP-Nodes groups on
        every interface in any case.

        This is the easiest way to get a context suitable both for sending
        client and accepting server requests."""
        from . import defaults
        from .transports import TRANSPORTS
        from .transports.multicast import multicast_groups

        groups = multicast_groups(multicast)

        if loop is None:
            loop = asyncio.get_running_loop()
        self = cls(
            loop=loop,
            serversite=site,
            loggername=loggername,
            server_credentials=server_credentials,
            transport_tuning=transport_tuning,
        )
        self._ssl_context = _ssl_context
        if server_credentials is not None:
            self._wrap_site_for_oscore()
        explicit = transports is not None or bool(os.environ.get("AIOCOAP_SERVER_TRANSPORT"))
        names = transports if transports is not None else defaults.get_default_servertransports(loop=loop)
        server_bind = bind if bind is not None else (None, None)
        try:
            for name in names:
                await self._load_transport(name, server_bind=server_bind, multicast=groups, explicit=explicit)
        except BaseException:
            await self.shutdown()
            raise
        if groups and not any(TRANSPORTS[name].multicast for name in self._loaded_transports):
            self.log.warning(
                "Multicast groups were requested, but no transport that joins them (%s) is loaded (%s)",
                ", ".join(name for name, entry in TRANSPORTS.items() if entry.multicast),
                ", ".join(self._loaded_transports) or "no transports",
            )
        return self

    def _wrap_site_for_oscore(self) -> None:
        """Serve OSCORE automatically when the server credentials contain
        OSCORE contexts: the site gets wrapped so that protected requests
        are unprotected, rendered and their responses protected."""
        from .oscore_sitewrapper import wrap_site_if_configured

        wrapped = wrap_site_if_configured(self.serversite, self.server_credentials, self)
        if wrapped is not self.serversite:
            self.serversite = wrapped
            self.recognized_critical_options = self.recognized_critical_options | {int(OptionNumber.OSCORE)}

    async def shutdown(self) -> None:
        """Take down any listening sockets and stop all related timers.

        Every request still in flight fails with error.LibraryShutdown.
        After this coroutine terminates, and once all external references to
        the object are dropped, it is garbage-collectable."""
        if self._shutdown:
            return
        self._shutdown = True
        # What is logged from here on carries text, not the objects it is
        # about: a handler that keeps records must not keep the context's
        # parts alive (see _TextOnly).
        text_only = _TextOnly()
        self.log.addFilter(text_only)
        try:
            self.log.debug("Shutting down context")
            for task in list(self._tasks):
                task.cancel()
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(ri.shutdown() for ri in self.request_interfaces),
                    return_exceptions=True,
                ),
                SHUTDOWN_TIMEOUT,
            )
            for result in results:
                if isinstance(result, BaseException):
                    self.log.warning("Error while shutting down a transport: %r", result)
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=SHUTDOWN_TIMEOUT)
            self._route_cache.clear()
            self.blockwise.shutdown()
            self.amplification.forget()
        finally:
            self.log.removeFilter(text_only)

    # --- client side ---------------------------------------------------------------

    def spawn_task(self, coro: Coroutine[Any, Any, Any], name: Optional[str] = None) -> asyncio.Task[Any]:
        """Run ``coro`` as a task that ends with the context (it is
        cancelled at shutdown); for the request objects built on the
        context, such as :class:`BlockwiseRequest`."""
        task = self.loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def request(self, request_message: Message, handle_blockwise: bool = True) -> Union[BlockwiseRequest, Request]:
        """Create and act on a Request object that will be handled according
        to the provider's implementation.

        The returned object's ``response`` is a future of the response;
        ``observation`` is set when the request message has Observe: 0."""
        if request_message.transport_tuning is None and self.transport_tuning is not DEFAULT_TUNING:
            request_message.transport_tuning = self.transport_tuning
        if handle_blockwise:
            return BlockwiseRequest(self, request_message)
        return self.plain_request(request_message)

    def plain_request(self, request_message: Message, observer: Any = None) -> "Request":
        """Send a request without blockwise handling (what :meth:`request`
        does with ``handle_blockwise=False``). The notifications and the
        end of an observation go to ``observer`` if one is given (an object
        with ``notify_from(request, message)`` and ``fail_from(request,
        exception)``, as a ClientObservation has; a BlockwiseRequest relays
        them this way) instead of to an observation of the request's own."""
        pipe = Pipe(request_message, self.log)
        result = Request(pipe, self.loop, self.log, observer)
        if self._shutdown:
            pipe.add_exception(error.LibraryShutdown())
            return result
        self._start_pipe(pipe)
        return result

    def _start_pipe(self, pipe: Pipe) -> None:
        """Route the pipe's request to the first request interface that
        takes it, resolving its remote on the way."""
        message = pipe.request
        generation = getattr(self.client_credentials, "generation", 0)
        if generation != self._route_cache_generation:
            # Credentials decide the route (OSCORE takes the requests it has
            # a security context for): routes chosen before a change are stale.
            self._route_cache.clear()
            self._route_cache_generation = generation
        target = message.remote
        cached = self._route_cache.get(target) if isinstance(target, UndecidedRemote) else None
        if cached is not None:
            ri, remote = cached
            if not remote.session_ended:
                message.remote = remote
                ri.request(pipe)
                return
            # (a security session ended: the next one is a new remote)
            del self._route_cache[target]
        self.spawn_task(self._route(pipe), name="aiocoap request routing")

    async def _route(self, pipe: Pipe) -> None:
        message = pipe.request
        target = message.remote
        try:
            for ri in self.request_interfaces:
                if await ri.fill_or_recognize_remote(message):
                    if (
                        isinstance(target, UndecidedRemote)
                        and target.is_ip_literal
                        and not cast(interfaces.EndpointAddress, message.remote).route_per_uri
                    ):
                        if len(self._route_cache) > 1024:
                            self._route_cache.clear()
                        self._route_cache[target] = (ri, message.remote)
                    if pipe.is_interested:
                        # (not sent at all if the requester gave up meanwhile)
                        ri.request(pipe)
                    return
            if message.remote is None:
                raise error.MissingRemoteError()
            raise error.NoRequestInterface(f"No transport can send to {message.remote!r}")
        except asyncio.CancelledError:
            pipe.add_exception(error.LibraryShutdown())
            raise
        except error.Error as e:
            pipe.add_exception(e)
        except Exception as e:
            self.log.debug("Routing %r failed", message, exc_info=True)
            wrapped = error.NetworkError(str(e) or type(e).__name__)
            wrapped.__cause__ = e
            pipe.add_exception(wrapped)

    async def find_remote_and_interface(self, message: Message) -> interfaces.RequestInterface:
        """Return the request interface that will carry ``message`` (after
        filling in its remote); raise error.NetworkError if none does."""
        for ri in self.request_interfaces:
            if await ri.fill_or_recognize_remote(message):
                return ri
        if message.remote is None:
            raise error.MissingRemoteError()
        raise error.NoRequestInterface(f"No transport can send to {message.remote!r}")

    # --- server side ---------------------------------------------------------------

    def render_to_pipe(self, pipe: Pipe) -> None:
        """Satisfy an incoming request (in ``pipe``) from the site: render
        it, and feed the response (or notifications) into the pipe."""
        request = pipe.request
        limit = self.amplification
        if limit.applies_to(request.remote):
            pipe = self._limit_unverified(pipe, limit)
        # (where asyncio can, or where the site says its renderings need no
        # task, a rendering runs at once and answers within the delivery
        # of its request: no task is left to look after unless it waits for
        # something)
        if getattr(self.serversite, "renders_without_task", False):
            coro = self._render(pipe)
            try:
                _, yielded = stepping.first_step(coro)
            except asyncio.CancelledError:
                # (as a task that was cancelled: nothing to answer)
                return
            if yielded is stepping.DONE:
                return
            task = stepping.continue_in_task(self.loop, coro, yielded)
        else:
            task = stepping.start_task(self.loop, self._render(pipe))
            if task.done():
                return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # Only a running render needs cancelling when interest ends; once it
        # finished (e.g. an observation's first render) nothing of it stays
        # with the pipe, which may live on for a long time.
        pipe.on_interest_end(task.cancel)
        task.add_done_callback(lambda task: pipe.discard_interest_end(task.cancel))

    render_to_plumbing_request = render_to_pipe

    def _limit_unverified(self, pipe: Pipe, limit: AmplificationLimit) -> Pipe:
        """The pipe to render a plain-UDP request into: ``pipe`` itself for
        a verified peer (an Echo value of ours in the request verifies it,
        and is removed), else one whose answers pass an
        :class:`~aiocoap.amplification.AmplificationGate`."""
        request = pipe.request
        remote = request.remote
        now = self.loop.time()
        echo = request.opt.echo
        if echo is not None:
            if limit.accept_echo(remote, echo, now):
                # (it was for us: not for the resource, nor for a proxy to
                # pass on)
                request.opt.echo = None
                return pipe
            self.log.debug("Echo value of %r is not (or no longer) ours", request)
        if limit.is_verified(remote, now):
            return pipe
        return AmplificationGate(pipe, limit, self.loop.time, self.blockwise.cut_to_fit)

    async def _render(self, pipe: Pipe) -> None:
        try:
            await self._render_inner(pipe)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            pipe.add_response(error_to_message(pipe, e), is_last=True)

    async def _render_inner(self, pipe: Pipe) -> None:
        request = pipe.request
        site = self.serversite
        if site is None:
            raise error.NotFound("This endpoint serves no resources")
        bad = request.opt.unprocessable_critical(self.recognized_critical_options)
        if bad is not None:
            # A site can process critical options itself (the OSCORE site
            # wrapper does the OSCORE option).
            extra = getattr(site, "recognized_critical_options", None)
            if extra:
                bad = request.opt.unprocessable_critical(self.recognized_critical_options | extra)
        if bad is not None:
            raise error.BadOption(f"Unsupported critical option {OptionNumber(bad).name}")
        if _URI_PATH_ABBREV in request.opt:
            _expand_uri_path_abbrev(request)

        # A resource with a render_to_pipe of its own takes over the whole
        # exchange (a proxy relaying an observation, say).
        if interfaces.renders_to_pipe(site):
            await site.render_to_pipe(pipe)
            return
        pipe_renderer_for = getattr(site, "pipe_renderer_for", None)
        if pipe_renderer_for is not None:
            found = pipe_renderer_for(request)
            if found is not None:
                child, pipe.request = found
                await child.render_to_pipe(pipe)
                return

        if (
            request.opt.observe == 0
            and isinstance(site, interfaces.ObservableResource)
            and request.code in (Code.GET, Code.FETCH)
            and self._observation_allowed(request)
        ):
            observation = ServerObservation(self, pipe)
            observation._site = site
            await site.add_observation(request, observation)
            if observation._accepted:
                self._count_observation(request, +1)
                observation._counted = True
                await observation._first_render(site)
                return

        if await site.needs_blockwise_assembly(request):
            response = await self.blockwise.render(request, site.render)
        else:
            response = await site.render(request)
        add_rendered(pipe, response, is_last=True)

    def _observation_allowed(self, request: Message) -> bool:
        """Whether the caps leave room for another observation (else the
        request is answered like a plain GET)."""
        # (a peer can hit the caps at will: one line a minute at info)
        refused = self._observation_cap_log
        if self._observations_by_peer.get(request.remote, 0) >= self.max_observations_per_peer:
            refused.log(self.loop.time(), "Observation cap per peer reached for %r", request.remote)
            return False
        host = _host_of(cast(interfaces.EndpointAddress, request.remote))
        if self._observations_by_host.get(host, 0) >= self.max_observations_per_host:
            refused.log(self.loop.time(), "Observation cap per host reached for %s", host)
            return False
        if self._observations_by_path.get(request.opt.uri_path, 0) >= self.max_observations_per_resource:
            refused.log(self.loop.time(), "Observation cap reached for /%s", "/".join(request.opt.uri_path))
            return False
        return True

    def _count_observation(self, request: Message, delta: int) -> None:
        tables: tuple[tuple[dict[Any, int], Any], ...] = (
            (self._observations_by_peer, request.remote),
            (self._observations_by_host, _host_of(cast(interfaces.EndpointAddress, request.remote))),
            (self._observations_by_path, request.opt.uri_path),
        )
        for table, key in tables:
            count = table.get(key, 0) + delta
            if count > 0:
                table[key] = count
            else:
                table.pop(key, None)

    def _queue_rendering(self, observation: ServerObservation) -> None:
        """Queue an observation that has work to do (see
        :meth:`ServerObservation.trigger`); a worker task takes it in turn."""
        self._render_queue.append(observation)
        if not self._render_worker_pending:
            self._render_worker_pending = True
            self._spawn_render_worker()

    def _spawn_render_worker(self) -> None:
        if not self._shutdown:
            self.spawn_task(self._render_observations(), name="aiocoap notifications")

    def _continue_rendering(self) -> None:
        """Have the next slice start after two turns of the loop: in the
        first, what arrived during this slice is read (a request's
        rendering becomes a task), and in the second, those renderings run
        (and answer, unless they wait for something) before the next slice
        takes the loop again. Requests are thus answered after the slice
        running when they arrive, rather than after the next one as well."""
        self._render_worker_pending = True
        # (a task's first step comes one turn after its creation)
        self.loop.call_soon(self.loop.call_soon, self._spawn_render_worker)

    async def _render_observations(self) -> None:
        """Render the queued observations and send their notifications, for
        one slice of :attr:`notification_slice` seconds (a new task
        continues after the loop's turn).

        The renderings are awaited one after the other by one coroutine
        (:meth:`_render_batch`), which is stepped by hand: as long as no
        rendering suspends, the whole slice completes in one step. When one
        does suspend, a new task goes on with the queue and this task only
        finishes that rendering, so a slow resource only delays its own
        notification."""
        self._render_worker_pending = False
        progress = _BatchProgress()
        coro = self._render_batch(progress)
        _, yielded = stepping.first_step(coro)
        if yielded is not stepping.DONE:
            progress.handed_over = True
        if self._render_queue and not self._render_worker_pending:
            self._continue_rendering()
        if yielded is stepping.DONE:
            return
        observation = progress.observation
        assert observation is not None, "a suspended rendering has its observation"
        observation._render_task = asyncio.current_task()
        try:
            await stepping.finish(coro, yielded)
        finally:
            observation._render_task = None
        pending, observation._pending_trigger = observation._pending_trigger, None
        if pending is not None:
            observation.trigger(is_last=pending)

    async def _render_batch(self, progress: "_BatchProgress") -> None:
        """The renderings of :meth:`_render_observations`, taken from the
        queue until it is empty or the slice is used up; after the one in
        progress when it was handed over (``progress.handed_over``), it
        stops."""
        # One reading of the clock for the slice (it only decides when a
        # notification has to be confirmable, see _deliver).
        now = self.loop.time()
        # (not the loop's clock, which may stand still during a step)
        slice_end = time.perf_counter() + self.notification_slice
        queue = self._render_queue
        done = 0
        while queue:
            if done and not done % _SLICE_CHECK_EVERY and time.perf_counter() >= slice_end:
                return
            done += 1
            observation = queue.popleft()
            work, observation._queued_work = observation._queued_work, None
            if work is None or observation._ended:
                continue
            progress.observation = observation
            if type(work) is tuple:
                # A response given to trigger(): the latest given since the
                # observation was queued
                response, is_last = work
                observation._deliver_safely(response, is_last, now)
                continue
            is_last = work
            try:
                response = await observation._render()
            except asyncio.CancelledError:
                if progress.handed_over:
                    raise  # the observation ended while its rendering was suspended
                continue  # the rendering gave up on its own
            except Exception as e:
                response = error_to_message(observation._pipe, e)
            if progress.handed_over:
                observation._deliver_safely(response, is_last)
                return
            try:
                observation._deliver(response, is_last, now)
            except Exception:
                self.log.exception("Sending a notification for %r failed", observation._pipe.request)


_new_tuple = tuple.__new__
_URI_PATH_ABBREV = OptionNumber.URI_PATH_ABBREV


class _TextOnly(logging.Filter):
    """Turns a record's message and arguments into the final text (and its
    exception into the formatted traceback) when it is created, so that a
    handler keeping records keeps no objects alive. Installed on a
    context's logger while the context shuts down (records of other
    contexts logged at that time are merely formatted early)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = ()
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return True


def _host_of(remote: interfaces.EndpointAddress) -> str:
    """The host part of a remote (its address without the port), which the
    per-host observation cap counts by."""
    hostinfo = remote.hostinfo
    try:
        return hostportsplit(hostinfo)[0]
    except ValueError:
        return hostinfo


def _expand_uri_path_abbrev(request: Message) -> None:
    """Replace a request's Uri-Path-Abbrev by the Uri-Path it stands for,
    so that the site sees the path; 4.02 for a value that is not known or
    that comes with a Uri-Path as well."""
    value = request.opt.uri_path_abbrev
    assert value is not None, "only called for requests with the option"
    if request.opt.uri_path:
        raise error.BadOption("Uri-Path-Abbrev can not be combined with Uri-Path")
    path = uri_path_abbrev.path_of(value)
    if path is None:
        raise error.BadOption(f"Unknown Uri-Path-Abbrev value {value}")
    request.opt.uri_path_abbrev = None
    request.opt.uri_path = path
CON, NON = Type.CON, Type.NON


class _BatchProgress:
    """What :meth:`Context._render_batch` and the task stepping it share:
    the observation whose rendering is in progress, and whether the rest of
    the queue was handed to another task (then the batch ends after it)."""

    __slots__ = ("observation", "handed_over")

    def __init__(self) -> None:
        self.observation: Optional[ServerObservation] = None
        self.handed_over = False


class Request(interfaces.Request, BaseUnicastRequest):
    """A request sent through a Context; ``response`` is a future of the
    response message (with ``.request`` set to the request message).

    For an observe request, ``observation`` is its :class:`ClientObservation`
    -- or, for one that reports to an ``observer`` (the BlockwiseRequest
    wrapping it), None. The pipe refers to the request only weakly: once
    the application holds neither the request nor its observation (nor
    what wraps them), the observation ends and is cancelled at the
    server."""

    # (thousands of these may be kept, one per observation)
    __slots__ = ("_pipe", "log", "response", "observation", "_observer", "__weakref__")

    observation: Optional[ClientObservation]
    response: Future

    def __init__(self, pipe: Pipe, loop: asyncio.AbstractEventLoop, log: logging.Logger, observer: Any = None) -> None:
        self._pipe = pipe
        self.log = log
        self.response = response = Future(loop=loop)
        # (at once: a request cancelled before it went out is not sent)
        response.on_cancel = self._response_cancellation_handler
        if pipe.request.opt.observe == 0:
            if observer is None:
                observer = self.observation = ClientObservation(self)
            else:
                self.observation = None
            # Where notifications and the end go (see ClientObservation.notify_from)
            self._observer = observer
            pipe.on_event(_WeakListener(self, pipe, loop))
        else:
            self.observation = None
            self._observer = None
            pipe.on_event(self._process_event)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self._pipe.request!r}>"

    @property
    def request(self) -> Message:
        return self._pipe.request

    def _response_cancellation_handler(self, response_future: Future) -> None:
        if self._observer is None:
            self._pipe.stop_interest()

    def stop_observing(self) -> None:
        """End the observation (its observer was cancelled): the server
        gets a cancellation."""
        self._pipe.stop_interest()

    def _process_event(self, event: Event) -> bool:
        response = self.response
        observer = self._observer
        if observer is not None and not event.is_last and event.exception is None and response.done():
            # A notification (the hot path of an observation): as below
            message = event.message
            code = message.code  # type: ignore[union-attr]  # (an event without exception has a message)
            if code is not None and RESPONSE_START <= code < SUCCESSFUL_END and message.opt.observe is not None:  # type: ignore[union-attr]
                observer.notify_from(self, message)
            return True
        if event.exception is not None:
            if not response.done():
                response.set_exception(event.exception)
            if observer is not None:
                observer.fail_from(self, event.exception)
            return False

        message = event.message
        assert message is not None, "an event without exception carries a message"
        successful = message.code is not None and message.code.is_successful()
        if not response.done():
            response.set_result(message)
            if observer is None:
                return False
            if event.is_last:
                if successful:
                    observer.fail_from(self, error.NotObservable())
                else:
                    observer.fail_from(self, error.ObservationCancelled())
                return False
            return True

        if observer is None:
            return False
        if successful and (message.opt.observe is not None or event.is_last):
            # (a final notification from trigger(is_last=True) carries no
            # Observe option, and is still a notification)
            observer.notify_from(self, message)
        if event.is_last:
            observer.fail_from(self, error.ObservationCancelled())
            return False
        return True


class _WeakListener(weakref.ref[Request]):
    """The event listener of an observe request's pipe: refers to the
    request weakly and passes the events on while it lives; when it dies,
    the observation ends (the server gets a cancellation). One small
    object where a closure, a weak reference and a finalizer would be
    three."""

    __slots__ = ("pipe", "loop")

    pipe: Pipe
    loop: asyncio.AbstractEventLoop

    def __new__(cls, request: Request, pipe: Pipe, loop: asyncio.AbstractEventLoop) -> _WeakListener:
        self = super().__new__(cls, request, _forgotten_observation)
        self.pipe = pipe
        self.loop = loop
        return self

    def __init__(self, request: Request, pipe: Pipe, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(request, _forgotten_observation)  # type: ignore[call-arg]

    def __call__(self, event: Event) -> bool:  # type: ignore[override]  # (a listener, not a dereference)
        request = weakref.ref.__call__(self)
        return False if request is None else request._process_event(event)


def _forgotten_observation(listener: _WeakListener) -> None:
    # Runs from the garbage collector: defer the actual work to the loop.
    pipe, loop = listener.pipe, listener.loop
    if pipe.is_interested and not loop.is_closed():
        loop.call_soon(pipe.stop_interest)


class MulticastRequest(BaseRequest):
    """A request to a multicast address that collects every response.

    ``responses`` is an async iterator over the response messages; it ends
    when ``timeout`` seconds have passed since sending."""

    def __init__(self, protocol: Context, request_message: Message, timeout: float = MULTICAST_REQUEST_TIMEOUT):
        self._pipe = Pipe(request_message, protocol.log)
        self._queue: asyncio.Queue[Optional[Event]] = asyncio.Queue()
        self._pipe.on_event(self._on_event)
        protocol._start_pipe(self._pipe)
        self._timer = protocol.loop.call_later(timeout, self._pipe.stop_interest)
        self._pipe.on_interest_end(self._finish)

    def _on_event(self, event: Event) -> bool:
        self._queue.put_nowait(event)
        return event.exception is None

    def _finish(self) -> None:
        self._timer.cancel()
        self._queue.put_nowait(None)

    @property
    def responses(self) -> AsyncIterator[Optional[Message]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Optional[Message]]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            if event.exception is not None:
                raise event.exception
            yield event.message


class ServerObservation:
    """The server side of one observation: created when a request with
    Observe: 0 arrives, offered to the resource's add_observation, and (if
    accepted) sending a notification whenever :meth:`trigger` is called."""

    __slots__ = (
        "_context", "_pipe", "_accepted", "_cancellation_callback", "_seq", "_site", "_child", "_remainder", "_unsliced",
        "_render_task", "_pending_trigger", "_queued_work", "_ended", "_counted", "_since_con", "_last_con",
        "__weakref__",
    )

    def __init__(self, context: Context, pipe: Pipe):
        self._context = context
        self._pipe = pipe
        self._accepted = False
        self._cancellation_callback: Optional[Callable[[], None]] = None
        self._seq = 0
        # The site that renders the notifications, and (see
        # route_notifications) the
        # resource it found for them.
        self._site: Any = None
        self._child: Any = None
        self._remainder: Any = None
        # (BlockwiseServer.unsliced_limit of the request, once known)
        self._unsliced: Optional[int] = None
        self._render_task: Optional[asyncio.Task[Any]] = None
        self._pending_trigger: Optional[bool] = None
        # What the next turn in the render queue does (None: not queued):
        # render (True if as the last notification, else False), or send a
        # given response ((response, is_last))
        self._queued_work: Any = None
        self._ended = False
        self._counted = False
        self._since_con = 0
        self._last_con = context.loop.time()

    def accept(self, cancellation_callback: Callable[[], None]) -> None:
        """Called by the resource to take the observation; the callback runs
        when the observation ends."""
        self._accepted = True
        self._cancellation_callback = cancellation_callback

    def deregister(self, reason: Optional[BaseException] = None) -> None:
        """End the observation from the server side (the client gets a final
        response when ``reason`` is an error to render, else the
        observation just stops). Called before the first response went out
        (during add_observation or the first rendering), the observation
        ends at once and that response goes out as a plain one, without
        Observe."""
        if self._ended:
            return
        if reason is not None:
            self._context.log.debug("Ending observation: %s", reason)
        if self._seq == 0:
            self._end()  # (the first response is completed by _first_render)
            return
        self._pipe.stop_interest()

    def route_notifications(
        self, site: interfaces.Resource, child: interfaces.Resource, remainder: Optional[tuple[str, ...]]
    ) -> None:
        """Called by a :class:`~aiocoap.resource.Site` that found the
        observed resource ``child`` for the path ``remainder``: if the
        notifications are rendered through that site, ``child`` renders them
        directly, with the request stripped as the site would strip it,
        instead of the site looking the resource up again for each one."""
        if site is self._site:
            self._child = child
            self._remainder = remainder

    def _render(self) -> Any:
        """A coroutine rendering the observed request again."""
        request = self._pipe.request
        child = self._child
        if child is not None:
            return child.render(self._site.stripped_request(request, self._remainder))
        return self._site.render(request)

    async def _first_render(self, site: interfaces.Resource) -> None:
        self._site = site
        self._pipe.on_interest_end(self._end)
        response = await self._render()
        if self._ended:
            # Deregistered before this went out: a plain response (if the
            # client still listens)
            if isinstance(response, Message):
                response.opt.observe = None
            add_rendered(self._pipe, response, is_last=True)
            return
        self._deliver(response, is_last=False)

    def _deliver(self, response: object, is_last: bool, now: Optional[float] = None) -> None:
        """Send ``response`` as the next notification (or as the last
        response). ``now`` is the loop time if the caller has it at hand."""
        if self._ended:
            return
        if response is NoResponse or not isinstance(response, Message):
            add_rendered(self._pipe, response, is_last=True)
            return
        code = response.code
        if code is None:
            code = response.code = Code.CONTENT
        if not RESPONSE_START <= code < SUCCESSFUL_END or is_last:
            response.opt.observe = None
            self._pipe.add_response(response, is_last=True)
            return
        seq = self._seq = (self._seq + 1) & 0xFFFFFF
        response.opt.observe = seq
        context = self._context
        limit = self._unsliced
        if limit is None:
            limit = self._unsliced = context.blockwise.unsliced_limit(self._pipe.request)
        if len(response.payload) > limit:
            response = context.blockwise.slice_response(self._pipe.request, response)
        if seq > 1 and response.mtype is None:
            if now is None:
                now = context.loop.time()
            self._since_con += 1
            if (
                self._since_con >= context.notification_con_interval
                or now - self._last_con >= NOTIFICATION_CON_MAX_AGE
            ):
                response.mtype = CON
                self._since_con = 0
                self._last_con = now
            else:
                response.mtype = NON
        # (add_response, inlined; a named tuple's constructor is a Python
        # function, tuple.__new__ is not)
        self._pipe.add_event(_new_tuple(Event, (response, None, False)))

    def trigger(self, response: Optional[Message] = None, *, is_last: bool = False) -> None:
        """Send an updated response; if None is given, the observed
        resource's rendering will be invoked to produce one.

        is_last can be set to True to indicate that no more responses will
        be sent. Note that an unsuccessful response will be the last no
        matter what is_last says, as such a message always terminates a CoAP
        observation."""
        if self._ended or not self._accepted:
            return
        queued = self._queued_work
        if response is not None:
            if isinstance(response, Message):
                # A copy: the message is filled in for this observer (token,
                # Observe, message ID), and updated_state() gives the same
                # one to every observer.
                response = response.copy()
            # Sent at the observation's turn in the render queue: a newer
            # state given before then replaces it (only the latest goes
            # out), and a last rendering queued stays the last.
            if queued is True and not is_last:
                return
            self._queued_work = (response, is_last)
        else:
            if self._render_task is not None:
                # Coalesce: one more render after the running one, not a queue.
                self._pending_trigger = is_last or bool(self._pending_trigger)
                return
            # Rendered at the observation's turn, together with every other
            # observation queued before it, by one task
            # (Context._render_observations): one update of a resource with
            # a thousand observers makes one task, not a thousand; and an
            # observation still waiting when the resource changes again is
            # rendered once, with the newest state.
            if queued is True and not is_last:
                return
            self._queued_work = is_last
        if queued is None:
            self._context._queue_rendering(self)

    def _deliver_safely(self, response: object, is_last: bool, now: Optional[float] = None) -> None:
        try:
            self._deliver(response, is_last=is_last, now=now)
        except Exception:
            self._context.log.exception("Sending a notification for %r failed", self._pipe.request)

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._counted:
            self._context._count_observation(self._pipe.request, -1)
        if self._render_task is not None:
            # (only ever set while a suspended rendering is being finished;
            # that task has nothing else to do)
            self._render_task.cancel()
        self._queued_work = None  # (its entry in the render queue is skipped)
        callback, self._cancellation_callback = self._cancellation_callback, None
        if callback is not None:
            try:
                callback()
            except Exception:
                self._context.log.exception("Error in an observation's cancellation callback")
