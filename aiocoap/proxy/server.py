"""CoAP-CoAP proxying: resources that forward the requests they get.

A proxy is a resource (usually the whole site of a server context) that
sends each request on through an *outgoing* context and renders the answer:

* :class:`ForwardProxy` serves requests that name their target themselves,
  with Proxy-Uri or with Proxy-Scheme plus Uri-Host (RFC 7252 §5.7). The
  target can use any scheme the outgoing context can send (coap, coaps,
  coap+tcp, coaps+tcp, coap+ws, ...), so a proxy bridges UDP clients to
  TCP servers and back. Schemes it can not reach are answered with 5.05.
* :class:`Proxy` on its own (:class:`ReverseProxy` is its old name) is a
  reverse proxy: :class:`Redirector` rules added with
  :meth:`Proxy.add_redirector` pick the upstream server by Uri-Host
  (:class:`NameBasedVirtualHost`, :class:`SubdomainVirtualHost`), by path
  prefix (:class:`SubresourceVirtualHost`, whose responses get their
  Location-Path prefixed again) or unconditionally
  (:class:`UnconditionalRedirector`). A forward proxy applies the same
  rules to requests that have no proxy options.
* The ``...WithPooledObservations`` variants also accept observations and
  keep one upstream observation per resource for all their observers.

What every proxy here does (the attributes named are per instance):

* **Hop-Limit** (RFC 8768): a request without the option is forwarded with
  ``initial_hop_limit`` (16); one with it is forwarded with the value
  decreased by one, or answered 5.08 Hop Limit Reached when it is 1 (or 0),
  so a forwarding loop ends after a bounded number of hops.
* **Caching** (RFC 7252 §5.6): see :mod:`aiocoap.proxy.cache`. Fresh
  responses to GET and FETCH are served without asking upstream, stale ones
  with an ETag are revalidated, and successful unsafe requests invalidate
  their resource. ``cache=False`` at construction turns it off;
  :attr:`Proxy.statistics` has the counters. A fresh hit is served without
  building an upstream request: the proxy remembers which cache key each
  :func:`~aiocoap.proxy.cache.request_signature` led to (as many as the
  cache has room for entries), so :class:`Redirector` rules must decide by
  what a signature holds (the method, the payload, the scheme the request
  came in with and its options other than Observe, ETag and Size1), as all
  rules here do.
* **Caps**: at most ``max_upstream_per_client`` (32) upstream requests at a
  time for one client (more are answered 4.29 Too Many Requests with
  Max-Age :data:`RETRY_AFTER`) and ``max_upstream_total`` (1024) for all
  clients (more are answered 5.03 Service Unavailable, with the same
  Max-Age). A pooled proxy holds at most ``max_pooled_observations``
  (1024) upstream observations; observe requests beyond that are served as
  plain requests.
* **Upstream failures** become responses and never end the proxy: 5.04
  Gateway Timeout when upstream does not answer within
  ``upstream_timeout`` seconds (or the outgoing context gives up), 5.05
  Proxying Not Supported for schemes no transport serves, 5.02 Bad Gateway
  for everything else (unreachable host, unresolvable name, reset, a
  response with an unsafe option the proxy does not know). They are logged
  at debug level only; a client can not make the proxy's log grow.
* **Options**: an unsafe option the proxy does not know is answered with
  4.02 (RFC 7252 §5.7.1); safe-to-forward options travel unchanged, the
  critical ones (OSCORE, EDHOC) included. No-Response is processed by the
  proxy and not forwarded.
* **Blockwise**: with ``interpret_block_options`` (True here, unlike
  0.4.x, because a proxy between transports of different message sizes
  must re-slice), request bodies are reassembled by the server context and
  responses assembled by the outgoing context, so each side uses the block
  size of its own link. Set it to False for transparent block forwarding.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from typing import Any, Iterable, Optional, Union, cast

from .. import error, interfaces
from ..message import Message, UndecidedRemote
from ..numbers.codes import Code
from ..numbers.optionnumbers import OptionNumber
from ..util import hostportsplit
from .cache import UNSAFE_METHODS, ResponseCache, cache_key, request_signature, resource_of

__all__ = [
    "CanNotRedirect", "NoUriSplitting", "IncompleteProxyUri", "NotAForwardProxy",
    "NoSuchHostname", "CanNotRedirectBecauseOfUnsafeOptions", "raise_unless_safe",
    "Proxy", "ProxyWithPooledObservations", "ForwardProxy", "ForwardProxyWithPooledObservations",
    "ReverseProxy", "ReverseProxyWithPooledObservations", "Redirector", "NameBasedVirtualHost",
    "SubdomainVirtualHost", "UnconditionalRedirector", "SubresourceVirtualHost",
    "DEFAULT_HOP_LIMIT", "COAP_SCHEMES",
]

DEFAULT_HOP_LIMIT = 16
"""Hop-Limit given to requests that arrive without one (RFC 8768 §3)."""

DEFAULT_UPSTREAM_TIMEOUT = 60.0
"""Seconds a proxy waits for an upstream response before answering 5.04;
shorter than a client's own patience for a confirmable request (93 s), so
the client still gets the answer."""

RETRY_AFTER = 2
"""Max-Age (seconds) of the 4.29 / 5.03 answers given when a cap is full."""

COAP_SCHEMES = frozenset(("coap", "coaps", "coap+tcp", "coaps+tcp", "coap+ws", "coaps+ws"))
"""URI schemes a forward proxy tries to reach; any other is answered 5.05."""

_O = OptionNumber
_URI_OPTIONS = (_O.URI_HOST, _O.URI_PORT, _O.URI_PATH, _O.URI_QUERY)
#: Unsafe options every proxy here processes.
_PROXY_KNOWN = frozenset((*_URI_OPTIONS, _O.BLOCK1, _O.BLOCK2, _O.OBSERVE, _O.NO_RESPONSE))
#: Unsafe options a forward proxy processes in addition.
_FORWARD_KNOWN = frozenset((_O.PROXY_URI, _O.PROXY_SCHEME))
#: Unsafe options of responses the proxy understands.
_RESPONSE_KNOWN = frozenset((_O.MAX_AGE, _O.OBSERVE, _O.BLOCK1, _O.BLOCK2))


class CanNotRedirect(error.ConstructionRenderableError):
    """A request can not be forwarded; renders as the error it names."""

    message = "Proxy redirection failed"


class NoUriSplitting(CanNotRedirect):
    """Kept for compatibility: proxies here do split Proxy-Uri."""

    code = Code.NOT_IMPLEMENTED
    message = "URI splitting not implemented, please use Proxy-Scheme."


class IncompleteProxyUri(CanNotRedirect):
    """The request does not say where to forward it (4.00)."""

    code = Code.BAD_REQUEST
    message = "Proxying requires Proxy-Scheme and Uri-Host"


class NotAForwardProxy(CanNotRedirect):
    """A reverse proxy got a request with Proxy-Uri or Proxy-Scheme (5.05)."""

    code = Code.PROXYING_NOT_SUPPORTED
    message = "This is a reverse proxy, not a forward one."


class NoSuchHostname(CanNotRedirect):
    """No rule knows the requested host name (4.04)."""

    code = Code.NOT_FOUND
    message = ""


class CanNotRedirectBecauseOfUnsafeOptions(CanNotRedirect):
    """The request has unsafe options the proxy does not know (4.02)."""

    code = Code.BAD_OPTION

    def __init__(self, options: Iterable[Any]) -> None:
        self.options = list(options)
        super().__init__(
            "Unsafe options in request: " + ", ".join(str(int(o.number)) for o in self.options)
        )


def raise_unless_safe(request: Message, known_options: Iterable[int]) -> None:
    """Raise a BAD_OPTION CanNotRedirect unless all options in request are
    safe to forward or known

    Known are the options in ``known_options`` and those every proxy
    handles (Uri-Host, Uri-Port, Uri-Path, Uri-Query, Block1, Block2,
    Observe, No-Response)."""
    known = _PROXY_KNOWN.union(int(o) for o in known_options)
    unsafe = [
        o for o in request.opt.option_list() if o.number & 2 and int(o.number) not in known
    ]
    if unsafe:
        raise CanNotRedirectBecauseOfUnsafeOptions(unsafe)


class _Outgoing:
    """A request prepared for upstream, and what the proxy needs to know
    about it afterwards."""

    __slots__ = ("message", "target", "redirector", "no_response")

    def __init__(self, message: Message, target: UndecidedRemote, redirector: Optional["Redirector"], no_response):
        self.message = message
        self.target = target
        self.redirector = redirector
        self.no_response = no_response


@dataclasses.dataclass
class _Statistics:
    """Counters of a proxy (see :attr:`Proxy.statistics`)."""

    forwarded: int = 0
    cache_served: int = 0
    timeouts: int = 0
    bad_gateway: int = 0
    not_supported: int = 0
    hop_limit_reached: int = 0
    rejected_per_client: int = 0
    rejected_total: int = 0


class Proxy(interfaces.Resource):
    """A reverse proxy resource: forwards requests according to the
    :class:`Redirector` rules added with :meth:`add_redirector` through
    ``outgoing_context`` (any :class:`~aiocoap.interfaces.RequestProvider`,
    usually a client Context). See the module description for the caps,
    the cache and the error mapping.

    ``cache`` is True for a new :class:`~aiocoap.proxy.cache.ResponseCache`
    with the default bounds, a ResponseCache to use (or share), or False
    for none."""

    interpret_block_options = True
    """Have the contexts assemble and slice blockwise transfers (True), or
    forward each block as a request of its own (False)."""

    #: Critical options that are safe to forward and are forwarded without
    #: being understood (the server context would refuse them otherwise).
    recognized_critical_options = frozenset((int(_O.OSCORE), int(_O.EDHOC)))

    def __init__(
        self,
        outgoing_context: interfaces.RequestProvider,
        logger: Optional[logging.Logger] = None,
        *,
        cache: Union[bool, ResponseCache, None] = True,
    ) -> None:
        super().__init__()
        self.outgoing_context = outgoing_context
        self.log = logger or logging.getLogger("coap-server.proxy")
        self._redirectors: list[Redirector] = []
        if cache is True:
            cache = ResponseCache()
        # (an empty cache is falsy: it has a length)
        self.cache: Optional[ResponseCache] = cache if isinstance(cache, ResponseCache) else None
        self.initial_hop_limit = DEFAULT_HOP_LIMIT
        self.upstream_timeout = DEFAULT_UPSTREAM_TIMEOUT
        self.max_upstream_per_client = 32
        self.max_upstream_total = 1024
        self._upstream_by_client: dict[Any, int] = {}
        self._upstream_total = 0
        self._statistics = _Statistics()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        # request signature -> (cache key, rule) of the upstream request
        # it became (see _remember_signature)
        self._signatures: dict[tuple, tuple[Any, Optional[Redirector]]] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} with {len(self._redirectors)} rule(s), cache {self.cache!r}>"

    @property
    def statistics(self) -> dict:
        """Counters for the operator: requests forwarded, served from the
        cache, upstream timeouts and failures, requests refused by the
        Hop-Limit or a cap, upstream requests in flight, and (with a cache)
        the cache's counters, entry count and bytes."""
        result = dataclasses.asdict(self._statistics)
        result["upstream_in_flight"] = self._upstream_total
        cache = self.cache
        if cache is not None:
            result["cache"] = dict(cache.statistics.as_dict(), entries=len(cache), bytes=cache.size_bytes)
        return result

    # --- rules ---------------------------------------------------------------------

    def add_redirector(self, redirector: "Redirector") -> None:
        """Add a rule; rules are tried in the order they were added."""
        self._redirectors.append(redirector)
        # (what requests became may change with the new rule)
        self._signatures.clear()

    def apply_redirection(self, request: Message) -> Optional[Message]:
        """The request to send upstream for ``request`` (a message the
        method may modify), or None if no rule applies. Raises
        :class:`CanNotRedirect` for requests that can not be forwarded."""
        redirected, _ = self._redirect(request)
        return redirected

    def _redirect(self, request: Message):
        if request.opt.proxy_uri is not None or request.opt.proxy_scheme is not None:
            raise NotAForwardProxy()
        return self._apply_rules(request)

    def _apply_rules(self, request: Message):
        for redirector in self._redirectors:
            result = redirector.apply_redirection(request)
            if result is not None:
                return result, redirector
        return None, None

    def _known_options(self) -> frozenset:
        return _PROXY_KNOWN

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        """Indicator to the server context about whether it should assemble
        request blocks to a single request and extract the requested blocks
        from a complete-resource answer (True), or whether the resource will
        do that by itself (False): :attr:`interpret_block_options`."""
        return self.interpret_block_options

    # --- forwarding ----------------------------------------------------------------

    def _prepare(self, request: Message) -> _Outgoing:
        """The upstream request for ``request``, or a RenderableError."""
        hop_limit = request.opt.hop_limit
        if hop_limit is None:
            hop_limit = self.initial_hop_limit
        elif hop_limit <= 1:
            self._statistics.hop_limit_reached += 1
            raise error.HopLimitReached("Hop-Limit reached")
        else:
            hop_limit -= 1
        known = self._known_options()
        if _O.PROXY_URI not in known and (request.opt.proxy_uri is not None or request.opt.proxy_scheme is not None):
            raise NotAForwardProxy()
        raise_unless_safe(request, known)

        outgoing = Message(code=request.code, payload=request.payload)
        opt = outgoing.opt = request.opt.copy()
        no_response = opt.no_response
        opt.no_response = None
        opt.hop_limit = None
        outgoing.remote = UndecidedRemote(_scheme_of(request), "")
        redirected, redirector = self._redirect(outgoing)
        if redirected is None:
            raise IncompleteProxyUri("No matching proxy rule")
        target = redirected.remote
        if not isinstance(target, UndecidedRemote) or not target.hostinfo:
            raise IncompleteProxyUri("No matching proxy rule")
        redirected.opt.hop_limit = hop_limit
        return _Outgoing(redirected, target, redirector, no_response)

    async def render(self, request: Message):
        """Return a message that can be sent back to the requester.

        Forwards the request upstream (or answers it from the cache) and
        returns the upstream response, with everything that only concerns
        the upstream exchange removed; errors are rendered as responses
        (see the module description)."""
        signature = request_signature(request, _scheme_of(request)) if self.cache is not None else None
        response = self._local_answer(request, signature)
        if response is not None:
            return response
        try:
            outgoing = self._prepare(request)
        except error.RenderableError as e:
            return e.to_message()
        outgoing.message.opt.observe = None
        return await self._forward(request, outgoing, signature)

    def _local_answer(self, request: Message, signature: Optional[tuple]) -> Optional[Message]:
        """An answer to ``request`` (whose signature is ``signature``, None
        without a cache) that needs no upstream request: here a fresh cache
        hit; None if there is none."""
        if signature is None:
            return None
        known = self._signatures.get(signature)
        if known is None:
            return None
        key, redirector = known
        opt = request.opt
        hop_limit = opt.hop_limit
        if hop_limit is not None and hop_limit <= 1:
            return None  # (the refusal is _prepare's)
        now = self._get_loop().time()
        entry = self.cache.fresh(key, now)  # type: ignore[union-attr]
        if entry is None:
            return None
        self._statistics.cache_served += 1
        return self._finish(self._from_entry(entry, request, now), redirector, opt.no_response)

    def _remember_signature(self, signature: tuple, key: Any, redirector: Optional["Redirector"]) -> None:
        """Note that requests with ``signature`` become upstream requests
        with cache key ``key`` through ``redirector``; bounded by the
        cache's entry count (forgotten all at once when full)."""
        signatures = self._signatures
        if signature not in signatures and len(signatures) >= self.cache.max_entries:  # type: ignore[union-attr]
            signatures.clear()
        signatures[signature] = (key, redirector)

    async def _forward(self, request: Message, outgoing: _Outgoing, signature: Optional[tuple] = None) -> Message:
        message = outgoing.message
        cache = self.cache
        key = cache_key(message, outgoing.target) if cache is not None else None
        entry = None
        if key is not None:
            if signature is not None:
                self._remember_signature(signature, key, outgoing.redirector)
            now = self._get_loop().time()
            entry = cache.lookup(key, now)  # type: ignore[union-attr]
            if entry is not None:
                if entry.is_fresh(now):
                    self._statistics.cache_served += 1
                    return self._finish(self._from_entry(entry, request, now), outgoing.redirector, outgoing.no_response)
                etags = message.opt.etags
                etag = entry.etag
                if etag is not None and etag not in etags:
                    message.opt.etags = (*etags, etag)

        response, genuine = await self._upstream(request, outgoing)
        if not genuine:
            # The proxy's own answer (a cap, a timeout, a failure): nothing
            # upstream said may be cached or invalidated.
            return self._finish(response, outgoing.redirector, outgoing.no_response)

        code = response.code
        if key is not None:
            now = self._get_loop().time()
            if code == Code.VALID:
                refreshed = cache.refresh(key, response, now) if entry is not None else None  # type: ignore[union-attr]
                if refreshed is not None:
                    return self._finish(self._from_entry(refreshed, request, now), outgoing.redirector, outgoing.no_response)
            else:
                cache.store(key, resource_of(message, outgoing.target), response, now)  # type: ignore[union-attr]
        elif cache is not None and message.code in UNSAFE_METHODS and code is not None and code.is_successful():
            cache.invalidate(resource_of(message, outgoing.target))
        return self._finish(response, outgoing.redirector, outgoing.no_response)

    @staticmethod
    def _from_entry(entry, request: Message, now: float) -> Message:
        """Answer ``request`` from a fresh cache entry: 2.03 Valid if the
        client already has that representation, else the stored one."""
        etags = request.opt.etags
        etag = entry.etag if etags else None
        if etag is not None and etag in etags:
            served = entry.served(now)
            return Message(code=Code.VALID, etag=etag, max_age=served.opt.max_age)
        return entry.served(now)

    @staticmethod
    def _finish(response: Message, redirector: Optional["Redirector"], no_response: Optional[int]) -> Message:
        """``response`` as it goes to the client of a request that went
        through ``redirector`` and had the No-Response value ``no_response``."""
        if redirector is not None:
            redirector.adjust_response(response)
        if no_response is not None:
            response.opt.no_response = no_response
        return response

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    async def _upstream(self, request: Message, outgoing: _Outgoing) -> tuple[Message, bool]:
        """Send the prepared request upstream within the caps and the
        timeout; return the response as it can go downstream and True, or
        the error response that stands for the failure and False."""
        client = request.remote
        per_client = self._upstream_by_client.get(client, 0)
        if per_client >= self.max_upstream_per_client:
            self._statistics.rejected_per_client += 1
            return Message(code=Code.TOO_MANY_REQUESTS, max_age=RETRY_AFTER, payload=b"Too many concurrent requests"), False
        if self._upstream_total >= self.max_upstream_total:
            self._statistics.rejected_total += 1
            return Message(code=Code.SERVICE_UNAVAILABLE, max_age=RETRY_AFTER, payload=b"Proxy busy"), False
        self._upstream_by_client[client] = per_client + 1
        self._upstream_total += 1
        self._statistics.forwarded += 1
        try:
            return await self._exchange(outgoing)
        finally:
            self._upstream_total -= 1
            remaining = self._upstream_by_client[client] - 1
            if remaining:
                self._upstream_by_client[client] = remaining
            else:
                del self._upstream_by_client[client]

    async def _exchange(self, outgoing: _Outgoing) -> tuple[Message, bool]:
        message = outgoing.message
        if outgoing.target.scheme not in COAP_SCHEMES:
            self._statistics.not_supported += 1
            return error.ProxyingNotSupported(f"Scheme {outgoing.target.scheme!r} is not supported").to_message(), False
        loop = self._get_loop()
        try:
            upstream = self.outgoing_context.request(  # type: ignore[call-arg]
                message, handle_blockwise=self.interpret_block_options
            )
        except error.Error as e:
            return self._failure(e, message), False
        future = upstream.response
        expired = []

        def expire():
            expired.append(True)
            future.cancel()

        timer = loop.call_later(self.upstream_timeout, expire)
        try:
            response = await future
        except asyncio.CancelledError:
            if not expired:
                raise
            self._statistics.timeouts += 1
            self.log.debug("No response from upstream to %r in time", message)
            return error.GatewayTimeout("Upstream did not answer in time").to_message(), False
        except error.Error as e:
            return self._failure(e, message), False
        finally:
            timer.cancel()
        downstream = self._downstream(response)
        if downstream is None:
            return error.BadGateway("Upstream response has unsafe options").to_message(), False
        return downstream, True

    def _failure(self, exception: error.Error, message: Message) -> Message:
        self.log.debug("Upstream request %r failed: %r", message, exception)
        if isinstance(exception, error.NoRequestInterface):
            self._statistics.not_supported += 1
            scheme = message.remote.scheme if message.remote is not None else None
            return error.ProxyingNotSupported(f"No transport for scheme {scheme!r}").to_message()
        if isinstance(exception, error.RequestTimedOut):
            self._statistics.timeouts += 1
            return error.GatewayTimeout("Upstream did not answer in time").to_message()
        self._statistics.bad_gateway += 1
        if isinstance(exception, error.ResolutionError):
            return error.BadGateway("Upstream host name could not be resolved").to_message()
        if isinstance(exception, (error.MalformedUrlError, error.IncompleteUrlError)):
            return error.BadGateway("Upstream URI unusable").to_message()
        return error.BadGateway("Upstream unreachable").to_message()

    def _downstream(self, response: Message) -> Optional[Message]:
        """The response to send to the client for an upstream response: the
        same code, options and payload, without anything of the upstream
        exchange (token, message ID, type, remote, Observe); None if it has
        unsafe options the proxy does not know (RFC 7252 §5.7.1)."""
        try:
            raise_unless_safe(response, _RESPONSE_KNOWN)
        except CanNotRedirectBecauseOfUnsafeOptions as e:
            self._statistics.bad_gateway += 1
            self.log.debug("Upstream response has unknown unsafe options: %s", e)
            return None
        result = Message(code=response.code, payload=response.payload)
        opt = result.opt = response.opt.copy()
        opt.observe = None
        return result


class ProxyWithPooledObservations(Proxy, interfaces.ObservableResource):
    """A :class:`Proxy` that accepts observations: all downstream observers
    of one resource share a single upstream observation, whose
    notifications go to every observer (and refresh the cache). The
    upstream observation ends when its last observer leaves; an upstream
    error or end ends all of them with that response."""

    def __init__(self, outgoing_context, logger=None, **kwargs) -> None:
        super().__init__(outgoing_context, logger, **kwargs)
        self.max_pooled_observations = 1024
        self._pool: dict[Any, _PooledObservation] = {}

    async def add_observation(self, request: Message, serverobservation) -> None:
        """As ``Proxy`` is intended to be just the proxy's interface toward
        the ``Context``, accepting observations is handled here: the
        observation is accepted once the (shared) upstream observation is
        established; otherwise the request is rendered as a plain one."""
        try:
            outgoing = self._prepare(request)
        except error.RenderableError:
            return  # rendering will answer with the error
        key = cache_key(outgoing.message, outgoing.target)
        if key is None:
            return
        pooled = self._pool.get(key)
        if pooled is None:
            if len(self._pool) >= self.max_pooled_observations:
                self.log.info("Cap of %d pooled observations reached", self.max_pooled_observations)
                return
            pooled = self._pool[key] = _PooledObservation(self, key, outgoing)
        try:
            established = await asyncio.shield(pooled.established)
        except asyncio.CancelledError:
            pooled.consider_dropping()
            raise
        if not established or pooled.ended:
            pooled.consider_dropping()
            return
        pooled.users.add(serverobservation)
        serverobservation.accept(functools.partial(pooled.remove_user, serverobservation))

    def _local_answer(self, request: Message, signature: Optional[tuple]) -> Optional[Message]:
        """For an observe request of an established pooled observation
        (rendered because the observation was not accepted), its latest
        notification; else as :meth:`Proxy._local_answer`."""
        if request.opt.observe == 0 and self._pool:
            try:
                outgoing = self._prepare(request)
            except error.RenderableError as e:
                return e.to_message()
            pooled = self._pool.get(cache_key(outgoing.message, outgoing.target))
            if pooled is not None and pooled.latest is not None and not pooled.ended:
                return self._finish(pooled.downstream_copy(), outgoing.redirector, outgoing.no_response)
        return super()._local_answer(request, signature)

    def _pool_remove(self, pooled: "_PooledObservation") -> None:
        if self._pool.get(pooled.key) is pooled:
            del self._pool[pooled.key]


class _PooledObservation:
    """One upstream observation and its downstream observers."""

    def __init__(self, proxy: ProxyWithPooledObservations, key, outgoing: _Outgoing) -> None:
        self.proxy = proxy
        self.key = key
        self.outgoing = outgoing
        self.users: set = set()
        self.latest: Optional[Message] = None
        self.ended = False
        loop = proxy._get_loop()
        self.established: asyncio.Future = loop.create_future()
        message = outgoing.message
        message.opt.observe = 0
        proxy._statistics.forwarded += 1
        self.request: Any = None
        try:
            self.request = proxy.outgoing_context.request(message)
        except error.Error as e:
            self._fail(e)
            return
        self._timer = loop.call_later(proxy.upstream_timeout, self._expire)
        self.request.response.add_done_callback(self._first)
        observation = self.request.observation
        if observation is not None:
            observation.register_callback(self._notification)
            observation.register_errback(self._error)

    def __repr__(self) -> str:
        return f"<_PooledObservation {self.key!r} with {len(self.users)} observer(s)>"

    def _expire(self) -> None:
        if not self.established.done():
            self.proxy.log.debug("Upstream observation %r: no response in time", self.outgoing.message)
            self._end(error.GatewayTimeout("Upstream did not answer in time").to_message())

    def _first(self, future: asyncio.Future) -> None:
        self._timer.cancel()
        if future.cancelled():
            self._end(None)
            return
        exception = future.exception()
        if exception is not None:
            self._fail(exception)
            return
        response = future.result()
        self._store(response)
        observed = response.code is not None and response.code.is_successful() and response.opt.observe is not None
        if not self.established.done():
            self.established.set_result(observed)
        if not observed:
            self._end(None)

    def _store(self, response: Message) -> None:
        latest = self.proxy._downstream(response)
        if latest is None:
            self.latest = error.BadGateway("Upstream response has unsafe options").to_message()
            return
        self.latest = latest
        cache = self.proxy.cache
        if cache is not None:
            plain = self.outgoing.message.copy(observe=None)
            cache.store(
                cache_key(plain, self.outgoing.target),
                resource_of(plain, self.outgoing.target),
                self.latest,
                self.proxy._get_loop().time(),
            )

    def downstream_copy(self) -> Message:
        latest = self.latest
        assert latest is not None
        copy = Message(code=latest.code, payload=latest.payload)
        copy.opt = latest.opt.copy()
        return copy

    def _notification(self, response: Message) -> None:
        if self.ended:
            return
        self._store(response)
        latest = self.latest
        assert latest is not None
        if latest.code is None or not latest.code.is_successful():
            self._end(latest)
            return
        for user in list(self.users):
            user.trigger(latest)

    def _error(self, exception: BaseException) -> None:
        if self.ended:
            return
        if isinstance(exception, (error.ObservationCancelled, error.NotObservable)):
            self._end(None)
        else:
            self._fail(exception)

    def _fail(self, exception: BaseException) -> None:
        if isinstance(exception, error.Error):
            response = self.proxy._failure(exception, self.outgoing.message)
        else:
            self.proxy.log.debug("Upstream observation failed: %r", exception)
            response = error.BadGateway("Upstream failed").to_message()
        self._end(response)

    def _end(self, response: Optional[Message]) -> None:
        """End the upstream observation and all downstream ones; those get
        ``response`` as their last message (the latest one if None)."""
        if self.ended:
            return
        self.ended = True
        if not self.established.done():
            self.established.set_result(False)
        self.proxy._pool_remove(self)
        final = response if response is not None else self.latest
        for user in list(self.users):
            if final is not None:
                user.trigger(final, is_last=True)
            else:
                user.deregister()
        self.users.clear()
        request = self.request
        if request is not None and request.observation is not None:
            request.observation.cancel()
        elif request is not None and not request.response.done():
            request.response.cancel()

    def remove_user(self, serverobservation) -> None:
        self.users.discard(serverobservation)
        if not self.users:
            # Another observer may be joining (its add_observation runs
            # after this callback); decide once that had its chance.
            self.proxy._get_loop().call_soon(self.consider_dropping)

    def consider_dropping(self) -> None:
        if not self.users and (self.established.done() or self.ended):
            if not self.ended:
                self.proxy.log.debug("Last observer of %r left; ending the upstream observation", self.key)
            self._end(None)


class ForwardProxy(Proxy):
    """A forward proxy: forwards requests to the target their Proxy-Uri, or
    Proxy-Scheme with Uri-Host (and Uri-Port), names; requests without
    either go through the :class:`Redirector` rules like at a
    :class:`Proxy`."""

    #: How many Proxy-Scheme / Uri-Host / Uri-Port combinations the proxy
    #: remembers the parsed target of (cleared when full).
    authority_memo_size = 256

    def __init__(self, outgoing_context, logger=None, **kwargs) -> None:
        super().__init__(outgoing_context, logger, **kwargs)
        self._authority_memo: dict = {}

    def _known_options(self) -> frozenset:
        return _PROXY_KNOWN | _FORWARD_KNOWN

    def _authority(self, scheme: str, host: Optional[str], port: Optional[int]) -> tuple:
        """The upstream remote and Uri-Host for the Proxy-Scheme form: the
        request URI the options stand for (RFC 7252 §6.5), split again the
        way a client would (§6.4), so an IP literal goes into the remote
        rather than a Uri-Host."""
        memo_key = (scheme, host, port)
        memo = self._authority_memo
        known = memo.get(memo_key)
        if known is not None:
            return known
        scheme = scheme.lower()
        if not host:
            raise IncompleteProxyUri()
        if scheme not in COAP_SCHEMES:
            raise error.ProxyingNotSupported(f"Scheme {scheme!r} is not supported")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # (an IP literal as RFC 7252 §6.5 writes it)
        scratch = Message(uri_host=host, uri_port=port)
        scratch.remote = UndecidedRemote(scheme, "")
        try:
            scratch.set_request_uri(scratch.get_request_uri())
        except (ValueError, error.MalformedUrlError, error.IncompleteUrlError) as e:
            raise IncompleteProxyUri(f"Unusable Uri-Host or Uri-Port: {e}") from None
        if len(memo) >= self.authority_memo_size:
            memo.clear()
        result = memo[memo_key] = (scratch.remote, scratch.opt.uri_host)
        return result

    def apply_redirection(self, request: Message) -> Optional[Message]:
        """The request to send upstream for ``request``, or None if it has
        no proxy options and no rule applies."""
        redirected, _ = self._redirect(request)
        return redirected

    def _redirect(self, request: Message):
        opt = request.opt
        proxy_uri = opt.proxy_uri
        if proxy_uri is not None:
            opt.proxy_uri = None
            opt.proxy_scheme = None
            for number in _URI_OPTIONS:
                opt.delete_option(number)
            scheme, colon, _ = proxy_uri.partition(":")
            if colon and scheme and scheme.lower() not in COAP_SCHEMES:
                raise error.ProxyingNotSupported(f"Scheme {scheme.lower()!r} is not supported")
            try:
                request.set_request_uri(proxy_uri)
            except (error.MalformedUrlError, error.IncompleteUrlError) as e:
                raise IncompleteProxyUri(f"Unusable Proxy-Uri: {e}") from None
        elif opt.proxy_scheme is not None:
            target, uri_host = self._authority(opt.proxy_scheme, opt.uri_host, opt.uri_port)
            opt.proxy_scheme = None
            opt.uri_port = None
            opt.uri_host = uri_host
            request.remote = target
        else:
            return self._apply_rules(request)
        # A rule may know the requested host name better (e.g. send it to
        # a particular server or through yet another proxy).
        redirected, redirector = self._apply_rules(request)
        if redirected is not None:
            return redirected, redirector
        return request, None


class ForwardProxyWithPooledObservations(ForwardProxy, ProxyWithPooledObservations):
    """A :class:`ForwardProxy` with pooled observations (see
    :class:`ProxyWithPooledObservations`)."""


class ReverseProxy(Proxy):
    """Old name of a reverse :class:`Proxy` (a Proxy with rules is one)."""


class ReverseProxyWithPooledObservations(ReverseProxy, ProxyWithPooledObservations):
    """Old name of a reverse :class:`ProxyWithPooledObservations`."""


def _scheme_of(request: Message) -> str:
    """The scheme a request came in with (coap if its remote does not say)."""
    return getattr(request.remote, "scheme", None) or "coap"


def _target_remote(target: str, request: Message) -> UndecidedRemote:
    """The remote a rule's destination stands for: ``scheme://host[:port]``
    as given, or ``host[:port]`` with the scheme the request came in
    with."""
    if "://" in target:
        return UndecidedRemote.from_pathless_uri(target)
    remote = request.remote
    scheme = getattr(remote, "scheme", None) or "coap"
    return UndecidedRemote(scheme, target)


class Redirector:
    """A rule of a :class:`Proxy`: decides whether (and where) a request is
    forwarded."""

    def apply_redirection(self, request: Message) -> Optional[Message]:
        """Return the request (modified to go to its destination) if this
        rule applies to it, else None.

        The decision must follow from the request's method, payload, scheme
        and options other than ETag, Observe and Size1: the proxy remembers
        it for the requests it answers from its cache."""
        return None

    def adjust_response(self, response: Message) -> None:
        """Adapt a response to a request this rule forwarded before it goes
        to the client (nothing by default)."""


class NameBasedVirtualHost(Redirector):
    """Forward requests whose Uri-Host is ``match_name`` to ``target``
    (``host[:port]``, or ``scheme://host[:port]`` to change the scheme).

    With ``rewrite_uri_host``, the Uri-Host becomes the target's host; with
    ``use_as_proxy``, the target is a forward proxy (the request gets a
    Proxy-Scheme)."""

    def __init__(self, match_name: str, target: str, rewrite_uri_host: bool = False, use_as_proxy: bool = False) -> None:
        self.match_name = match_name
        self.target = target
        self.rewrite_uri_host = rewrite_uri_host
        self.use_as_proxy = use_as_proxy

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.match_name!r} -> {self.target!r}>"

    def apply_redirection(self, request: Message) -> Optional[Message]:
        host = request.opt.uri_host
        if host is None or not self._matches(host):
            return None
        return _send_to(request, self.target, self.use_as_proxy, self.rewrite_uri_host)

    def _matches(self, hostname: str) -> bool:
        return hostname == self.match_name


class SubdomainVirtualHost(NameBasedVirtualHost):
    """Forward requests to any host name below ``match_name``
    (``anything.match_name``) to the target; arguments as for
    :class:`NameBasedVirtualHost` (except ``rewrite_uri_host``, which would
    lose the subdomain)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.rewrite_uri_host:
            raise TypeError("rewrite_uri_host makes no sense with subdomain virtual hosting")

    def _matches(self, hostname: str) -> bool:
        return hostname.endswith("." + self.match_name)


class UnconditionalRedirector(Redirector):
    """Forward every request to ``target`` (as a forward proxy with
    ``use_as_proxy``)."""

    def __init__(self, target: str, use_as_proxy: bool = False) -> None:
        self.target = target
        self.use_as_proxy = use_as_proxy

    def __repr__(self) -> str:
        return f"<{type(self).__name__} -> {self.target!r}>"

    def apply_redirection(self, request: Message) -> Optional[Message]:
        return _send_to(request, self.target, self.use_as_proxy, False)


class SubresourceVirtualHost(Redirector):
    """Forward requests whose path starts with ``path`` (a sequence of
    segments) to ``target``, with that part of the path removed; Location-Path
    options of the responses get it added again, so clients stay on the
    proxy."""

    def __init__(self, path: Iterable[str], target: str) -> None:
        self.path = tuple(path)
        self.target = target

    def __repr__(self) -> str:
        return f"<{type(self).__name__} /{'/'.join(self.path)} -> {self.target!r}>"

    def apply_redirection(self, request: Message) -> Optional[Message]:
        path = request.opt.uri_path
        if path[: len(self.path)] != self.path:
            return None
        request.opt.uri_path = path[len(self.path):]
        return _send_to(request, self.target, False, False)

    def adjust_response(self, response: Message) -> None:
        location = response.opt.location_path
        if location:
            response.opt.location_path = self.path + tuple(location)


def _send_to(request: Message, target: str, use_as_proxy: bool, rewrite_uri_host: bool) -> Message:
    remote = _target_remote(target, request)
    if use_as_proxy:
        request.opt.proxy_scheme = cast(interfaces.EndpointAddress, request.remote).scheme
    if rewrite_uri_host:
        host, _ = hostportsplit(remote.hostinfo)
        request.opt.uri_host = host
    request.remote = remote
    return request
