"""The resource directory as CoAP resources: a :class:`aiocoap.resource.Site`
around a :class:`.directory.Directory`, and the one timer that drives it.

Paths (those of the examples in RFC 9176; clients find them through
``/.well-known/core?rt=core.rd*``):

=========================  ==========================================
``/.well-known/core``      discovery: ``rt=core.rd``,
                           ``core.rd-lookup-ep``, ``core.rd-lookup-res``
``/rd``                    registration interface (POST)
``/reg/NAME``              registration resources: update (POST),
                           removal (DELETE), read (GET)
``/rd-lookup/ep``          endpoint lookup (GET, observable)
``/rd-lookup/res``         resource lookup (GET, observable)
``/.well-known/rd``        simple registration (POST, RFC 9176 §5.1)
=========================  ==========================================

Simple registration makes the directory send a request of its own (GET
``/.well-known/core`` to the registering address); as that address may be
forged, at most :data:`MAX_PENDING_FETCHES` such requests run at once and at
most one per host, each for at most :data:`FETCH_TIMEOUT` seconds; beyond
that the directory answers 5.03 with a Max-Age.

Logging goes to the ``resource-directory`` logger: single rejected requests
at DEBUG level, rate-limited summaries of them at WARNING level.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Optional

from .. import error
from ..message import Message
from ..numbers.codes import Code
from ..numbers.contentformat import ContentFormat
from ..resource import ObservableResource, PathCapable, Resource, Site, WKCResource
from ..util import hostportsplit
from ..util.asyncio import result_within
from .directory import Directory, Limits, ServiceUnavailable, Source
from .storage import MemoryStorage, Storage

__all__ = ["StandaloneResourceDirectory", "FETCH_TIMEOUT", "MAX_PENDING_FETCHES"]

FETCH_TIMEOUT = 30.0
"""Seconds simple registration waits for the endpoint's /.well-known/core."""
MAX_PENDING_FETCHES = 32
"""Simple registrations whose links are being fetched at the same time."""
LONGEST_TIMER = 3600.0
"""The timer wakes up at least this often (seconds), so that a wall clock
that was set forward is noticed within that time."""

_LINKFORMAT = ContentFormat.LINKFORMAT
# RFC 7967 bit for "not interested in 2.xx responses"
_NO_RESPONSE_SUCCESS = 0x02


def source_of(remote: Any) -> Source:
    """The :class:`.directory.Source` of a request from ``remote``: the
    host of its hostinfo, and its base URI where it has one."""
    try:
        base: Optional[str] = remote.uri_base
    except error.AnonymousHost:
        base = None
    try:
        host = hostportsplit(remote.hostinfo)[0]
    except (error.AnonymousHost, ValueError):
        host = repr(remote)
    return Source(host, base)


class _DirectoryResource(Resource):
    def __init__(self, rd: "StandaloneResourceDirectory"):
        super().__init__()
        self.rd = rd


class RegistrationInterface(_DirectoryResource):
    """``/rd``: POST registers an endpoint (2.01 Created, Location-Path of
    its registration resource)."""

    rt = "core.rd"
    ct = _LINKFORMAT

    async def render_post(self, request: Message) -> Message:
        rd = self.rd
        location = rd.directory.register(
            rd.clock(), request.opt.uri_query, request.payload, request.opt.content_format, source_of(request.remote)
        )
        rd.rearm()
        return Message(code=Code.CREATED, location_path=location)


class RegistrationResources(_DirectoryResource, PathCapable):
    """``/reg/NAME``: the registration resources (RFC 9176 §5.3)."""

    def _name(self, request: Message) -> str:
        path = request.opt.uri_path
        if len(path) != 1 or not path[0]:
            raise error.NotFound()
        return path[0]

    async def render_get(self, request: Message) -> Message:
        _check_accept(request)
        links = self.rd.directory.read(self.rd.clock(), self._name(request))
        return Message(payload=links.encode("utf-8"), content_format=_LINKFORMAT)

    async def render_post(self, request: Message) -> Message:
        rd = self.rd
        rd.directory.update(
            rd.clock(),
            self._name(request),
            request.opt.uri_query,
            request.payload,
            request.opt.content_format,
            source_of(request.remote),
        )
        rd.rearm()
        return Message(code=Code.CHANGED)

    async def render_delete(self, request: Message) -> Message:
        self.rd.directory.remove(self.rd.clock(), self._name(request))
        return Message(code=Code.DELETED)


def _check_accept(request: Message) -> None:
    accept = request.opt.accept
    if accept is not None and accept != _LINKFORMAT:
        raise error.NotAcceptable("only application/link-format (40) is served")


class _Lookup(ObservableResource):
    ct = _LINKFORMAT

    def __init__(self, rd: "StandaloneResourceDirectory", lookup: Callable[[float, Any], str]):
        super().__init__()
        self.rd = rd
        self.lookup = lookup

    async def render_get(self, request: Message) -> Message:
        _check_accept(request)
        payload = self.lookup(self.rd.clock(), request.opt.uri_query)
        response = Message(payload=payload.encode("utf-8"), content_format=_LINKFORMAT)
        if not payload and getattr(request.remote, "is_multicast_locally", False):
            # nothing to say to a multicast query (as RFC 6690 §4.1 has it
            # for .well-known/core)
            response.opt.no_response = _NO_RESPONSE_SUCCESS
        return response


class EndpointLookup(_Lookup):
    """``/rd-lookup/ep`` (RFC 9176 §6.3)"""

    rt = "core.rd-lookup-ep"


class ResourceLookup(_Lookup):
    """``/rd-lookup/res`` (RFC 9176 §6.1)"""

    rt = "core.rd-lookup-res"


class SimpleRegistration(_DirectoryResource):
    """``/.well-known/rd``: simple registration (RFC 9176 §5.1). The
    directory fetches the endpoint's ``/.well-known/core`` and registers
    that, then answers 2.04 Changed."""

    def get_link_description(self) -> Optional[dict]:
        return None  # well-known resources are not listed

    async def render_post(self, request: Message) -> Message:
        rd = self.rd
        if request.payload:
            raise error.BadRequest("simple registration takes no payload")
        source = source_of(request.remote)
        query = request.opt.uri_query
        rd.directory.check_registration(rd.clock(), query, source, simple=True)
        if source.base is None:
            raise error.BadRequest("the registering address can not be expressed as a URI")
        links = await rd.fetch_links(request.remote, source)
        rd.directory.register(rd.clock(), query, links, _LINKFORMAT, source)
        rd.rearm()
        return Message(code=Code.CHANGED)


class StandaloneResourceDirectory(Site):
    """A site with every interface of a resource directory (see the module
    description for the paths).

    ``context`` is the context the site is served by (simple registration
    sends its requests through it; without one, simple registration
    answers 5.01). ``storage`` keeps the registrations (a
    :class:`.storage.MemoryStorage` by default, which does not survive the
    process; ``aiocoap-rd`` uses :class:`.sqlite.SQLiteStorage`); ``limits`` are the caps of
    :class:`.directory.Limits`. ``clock`` gives wall-clock seconds.

    Call :meth:`shutdown` when done: it stops the timer and closes the
    storage."""

    def __init__(
        self,
        context: Any = None,
        *,
        storage: Optional[Storage] = None,
        limits: Limits = Limits(),
        log: Optional[logging.Logger] = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__()
        if storage is None:
            storage = MemoryStorage()
        self.context = context
        self.clock = clock
        self.log = log if log is not None else logging.getLogger("resource-directory")
        self.directory = Directory(storage, limits=limits, on_change=self._changed, log=self.log)
        self._endpoint_lookup = EndpointLookup(self, self.directory.lookup_endpoints)
        self._resource_lookup = ResourceLookup(self, self.directory.lookup_resources)
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_due: Optional[float] = None
        self._fetching: set = set()

        self.add_resource([".well-known", "core"], WKCResource(self.get_resources_as_linkheader))
        self.add_resource(["rd"], RegistrationInterface(self))
        self.add_resource(["rd-lookup", "ep"], self._endpoint_lookup)
        self.add_resource(["rd-lookup", "res"], self._resource_lookup)
        self.add_resource(list(self.directory.registration_path), RegistrationResources(self))
        self.add_resource([".well-known", "rd"], SimpleRegistration(self))
        self.rearm()

    async def render(self, request: Message):
        try:
            return await super().render(request)
        except error.RenderableError:
            summary = self.directory.rejection_summary(self.clock())
            if summary is not None:
                self.log.warning("%s", summary)
            raise

    def _changed(self) -> None:
        self._endpoint_lookup.updated_state()
        self._resource_lookup.updated_state()

    # ------------------------------------------------------------ timer

    def rearm(self) -> None:
        """Make sure the timer runs no later than the directory's next
        deadline (called after every operation that may have added one)."""
        deadline = self.directory.next_deadline()
        if deadline is None or (self._timer_due is not None and self._timer_due <= deadline):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # armed by the first request (or timer) on a loop
        if self._timer is not None:
            self._timer.cancel()
        delay = min(max(deadline - self.clock(), 0.0), LONGEST_TIMER)
        self._timer_due = deadline if delay < LONGEST_TIMER else self.clock() + delay
        self._timer = loop.call_at(loop.time() + delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_due = None
        self.directory.handle_timer(self.clock())
        self.rearm()

    # ------------------------------------------------ simple registration

    async def fetch_links(self, remote: Any, source: Source) -> bytes:
        """The link-format document at ``/.well-known/core`` of ``remote``
        (for simple registration), or the error to answer with."""
        if self.context is None:
            raise error.NotImplementedResponse("simple registration is not available on this directory")
        retry = self.directory.limits.retry_after
        if source.host in self._fetching:
            raise ServiceUnavailable("a simple registration from this host is already in progress", retry)
        if len(self._fetching) >= MAX_PENDING_FETCHES:
            raise ServiceUnavailable("too many simple registrations in progress", retry)
        request = Message(code=Code.GET, uri_path=[".well-known", "core"], accept=_LINKFORMAT)
        request.remote = remote
        self._fetching.add(source.host)
        try:
            response = await result_within(self.context.request(request).response, FETCH_TIMEOUT)
        except asyncio.TimeoutError:
            raise _GatewayTimeout("no answer from the endpoint's /.well-known/core") from None
        except error.Error as e:
            self.log.debug("Fetching the links of %s failed: %s", source.host, e)
            raise _BadGateway(f"fetching the endpoint's /.well-known/core failed: {e}") from None
        finally:
            self._fetching.discard(source.host)
        if response.code != Code.CONTENT:
            raise _BadGateway(f"the endpoint's /.well-known/core answered {response.code}")
        if response.opt.content_format not in (None, _LINKFORMAT):
            raise _BadGateway("the endpoint's /.well-known/core is not in link format")
        return response.payload

    async def shutdown(self) -> None:
        """Stop the timer and close the storage."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.directory.storage.close()


class _BadGateway(error.ConstructionRenderableError):
    code = Code.BAD_GATEWAY


class _GatewayTimeout(error.ConstructionRenderableError):
    code = Code.GATEWAY_TIMEOUT


__all__ += ["RegistrationInterface", "RegistrationResources", "EndpointLookup", "ResourceLookup", "SimpleRegistration"]
