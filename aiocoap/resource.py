"""Basic resource implementations

A resource in URL / CoAP / REST terminology is the thing identified by a
URI. Here, a :class:`Resource` is the place where server functionality is
implemented: usually one persistent object per location (a
``TimeResource()`` serving ``/time``). A server context takes exactly one
resource as its site, typically a :class:`Site` that dispatches by Uri-Path
to the resources added to it.

Write resources by deriving from :class:`Resource` and implementing
``render_get``, ``render_put`` and the like as coroutines. They take the
request message and return an :class:`aiocoap.Message` (the code may be left
out), or raise an :class:`aiocoap.error.RenderableError` such as
``error.UnsupportedContentFormat()``.

Rules this module enforces:

* A method without a ``render_<method>`` handler is answered 4.05 (Method
  Not Allowed); a path a :class:`Site` does not know is answered 4.04.
* Responses without a code get 2.05 Content (GET, FETCH), 2.02 Deleted
  (DELETE) or 2.04 Changed (everything else), and inherit the request's
  No-Response option unless they carry their own.
* ``.well-known/core`` (:class:`WKCResource`) serves RFC 6690 link format
  with the query filtering of RFC 6690 §4.1, and stays silent towards
  multicast requests whose filter matched nothing.

Link format is produced by :mod:`aiocoap.util.linkformat`, which needs no
third-party package; ``link_header.LinkHeader`` objects returned by list
generators of applications are accepted as well.

Logging (logger ``coap-server.resource``): errors in observation callbacks
are logged at ERROR level with their traceback and do not stop other
observers from being notified.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import types
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, cast

from . import error, interfaces, meta
from .message import Message, NoResponse
from .numbers.codes import Code
from .numbers.contentformat import ContentFormat
from .numbers.optionnumbers import OptionNumber
from .util.linkformat import SPACE_SEPARATED, Link, LinkFormat
from .util.uri import quote_factory, sub_delims, unreserved

__all__ = [
    "hashing_etag",
    "Resource",
    "ObservableResource",
    "link_format_to_message",
    "WKCResource",
    "PathCapable",
    "Site",
]

if TYPE_CHECKING:
    from .pipe import Pipe
    from .protocol import ServerObservation

_log = logging.getLogger("coap-server.resource")

_HANDLER_NAMES: dict[Any, str] = {
    Code.GET: "render_get",
    Code.POST: "render_post",
    Code.PUT: "render_put",
    Code.DELETE: "render_delete",
    Code.FETCH: "render_fetch",
    Code.PATCH: "render_patch",
    Code.iPATCH: "render_ipatch",
}

# Typed loosely: to mypy, ExtensibleIntEnum members look like plain ints.
_COROUTINE = types.CoroutineType
_URI_PATH = OptionNumber.URI_PATH
_NO_RESPONSE = OptionNumber.NO_RESPONSE

_CODE_FOR_EMPTY: dict[Any, Any] = {
    Code.GET: Code.CONTENT,
    Code.FETCH: Code.CONTENT,
    Code.DELETE: Code.DELETED,
}

_quote_segment = quote_factory(unreserved + sub_delims + ":@")

# RFC 7967 bit for "not interested in 2.xx responses"
_NO_RESPONSE_SUCCESS = 0x02


def hashing_etag(request: Message, response: Message) -> None:
    """Helper function for render_get handlers that allows them to use ETags
    based on the payload's hash value

    Run this on your request and response before returning from
    render_get; it is safe to use this function with all kinds of
    responses, it will only act on 2.05 Content messages (and those with no
    code set, which defaults to that for GET requests). The hash used are
    the first 8 bytes of the sha1 sum of the payload.

    When the request already lists that ETag, the response is turned into
    a 2.03 Valid with an empty payload.

    Hashing the full payload is not the cheapest way of producing an ETag
    (a file server could hash its ``stat()`` result instead), but it saves
    bandwidth in the simple cases.

    >>> from aiocoap import *
    >>> req = Message(code=GET)
    >>> hash_of_hello = b'\\xaa\\xf4\\xc6\\x1d\\xdc\\xc5\\xe8\\xa2'
    >>> req.opt.etags = [hash_of_hello]
    >>> resp = Message(code=CONTENT)
    >>> resp.payload = b'hello'
    >>> hashing_etag(req, resp)
    >>> resp                                     # doctest: +ELLIPSIS
    <aiocoap.Message at ... 2.03 Valid ... 1 option(s)>
    """
    if response.code is not None and response.code != Code.CONTENT:
        return
    etag = hashlib.sha1(response.payload).digest()[:8]
    if etag in request.opt.etags:
        response.code = Code(Code.VALID)
        response.payload = b""
    response.opt.etag = etag


def _ct_text(ct: Any) -> str:
    if isinstance(ct, int) and not isinstance(ct, bool):
        return str(int(ct))
    if isinstance(ct, (list, tuple)):
        return " ".join(_ct_text(c) for c in ct)
    return str(ct)


def _space_joined(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


class _ExposesWellknownAttributes:
    """Provides :meth:`get_link_description` from the ``ct``, ``rt``,
    ``if_`` and ``title`` attributes of a resource (where set)."""

    def get_link_description(self) -> Optional[dict[str, Any]]:
        """The attributes this resource is listed with in .well-known/core,
        as a dict suitable for ``Link(href, **description)``.

        Override and extend it (``dict(**super().get_link_description(),
        title=...)``) to publish more; return None to keep the resource out
        of the listing."""
        description: dict[str, Any] = {}
        ct = getattr(self, "ct", None)
        if ct is not None:
            description["ct"] = _ct_text(ct)
        rt = getattr(self, "rt", None)
        if rt is not None:
            description["rt"] = _space_joined(rt)
        if_ = getattr(self, "if_", None)
        if if_ is not None:
            description["if"] = _space_joined(if_)
        title = getattr(self, "title", None)
        if title is not None:
            description["title"] = str(title)
        return description


class Resource(_ExposesWellknownAttributes, interfaces.Resource):
    """Simple base implementation of the :class:`interfaces.Resource`
    interface

    The render method delegates content creation to ``render_$method``
    methods (``render_get``, ``render_put`` etc), and responds
    appropriately to unsupported methods. Those methods may return messages
    without a response code; the default render method then sets an
    appropriate successful code ("Content" for GET/FETCH, "Deleted" for
    DELETE, "Changed" for anything else). The render method will also fill
    in the request's no_response code into the response (see
    :meth:`interfaces.Resource.render`) if none was set.

    Moreover, this class provides a ``get_link_description`` method as used
    by .well-known/core to expose a resource's ``.ct``, ``.rt``, ``.if_``
    (alternative name for ``if`` as that's a Python keyword) and ``.title``
    attributes.
    """

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        """Indicator to the protocol about whether it should assemble
        request blocks to a single request and extract the requested blocks
        from a complete-resource answer (True), or whether the resource
        will do that by itself (False). This implementation always lets the
        library do it."""
        return True

    async def render(self, request: Message) -> Message:
        """Return a message that can be sent back to the requester.

        Dispatches to the ``render_<method>`` coroutine for the request's
        code (raising :class:`error.UnallowedMethod`, 4.05, if there is
        none), then fills in a default code and the No-Response option as
        described in the class documentation."""
        name = _HANDLER_NAMES.get(request.code)
        handler = getattr(self, name, None) if name is not None else None
        if handler is None:
            raise error.UnallowedMethod()

        response = handler(request)
        if type(response) is _COROUTINE or inspect.isawaitable(response):
            response = await response

        if response is NoResponse:
            # (NoResponse stands in for a Message, see interfaces.Resource.render)
            return cast(Message, response)
        if not isinstance(response, Message):
            raise TypeError(f"{name} of {type(self).__name__} returned {response!r}, not a Message")

        if response.code is None:
            response.code = _CODE_FOR_EMPTY.get(request.code, Code.CHANGED)
        if _NO_RESPONSE in request.opt and response.opt.no_response is None:
            response.opt.no_response = request.opt.no_response
        return response


class ObservableResource(Resource, interfaces.ObservableResource):
    """A :class:`Resource` that accepts every observation request.

    Call :meth:`updated_state` whenever the resource changed; every
    observer then gets a notification (rendered by the library through
    :meth:`render`, unless a response is passed). Override
    :meth:`update_observation_count` to learn when observers come and go,
    e.g. to stop polling a sensor while nobody listens.
    """

    def __init__(self) -> None:
        super().__init__()
        self._observations: dict[ServerObservation, bool] = {}

    def _observation_registry(self) -> dict[ServerObservation, bool]:
        # Subclasses that forget super().__init__() still work.
        try:
            return self._observations
        except AttributeError:
            self._observations = {}
            return self._observations

    async def add_observation(self, request: Message, serverobservation: ServerObservation) -> None:
        """Before the incoming request is sent to :meth:`render`, the
        add_observation() method is called. If the resource chooses to
        accept the observation, it has to call the
        ``serverobservation.accept(cb)`` with a callback that will be called
        when the observation ends. After accepting, the ObservableResource
        should call ``serverobservation.trigger()`` whenever it changes its
        state; the ServerObservation will then initiate notifications by
        having the request rendered again.

        This implementation accepts every observation."""
        registry = self._observation_registry()
        serverobservation.accept(_ObservationEnded(self, serverobservation))
        if serverobservation not in registry:
            registry[serverobservation] = True
            self.update_observation_count(len(registry))

    def update_observation_count(self, newcount: int) -> None:
        """Hook into this method to be notified when the number of
        observations on the resource changes."""

    def updated_state(self, response: Optional[Message] = None) -> None:
        """Call this whenever the resource was updated, and a notification
        should be sent to observers.

        With a ``response``, that message is sent as the notification
        instead of having the request rendered again."""
        for observation in list(self._observation_registry()):
            try:
                observation.trigger(response)
            except Exception:
                _log.exception("Triggering observation %r failed", observation)

    def get_link_description(self) -> Optional[dict[str, Any]]:
        """Like :meth:`Resource.get_link_description`, plus the ``obs``
        flag."""
        description = super().get_link_description()
        if description is not None:
            description["obs"] = None
        return description


class _ObservationEnded:
    """The cancellation callback :meth:`ObservableResource.add_observation`
    gives to an observation it accepts: forgets it and updates the count.
    (An object with two slots rather than a closure: a server keeps one per
    established observation.)"""

    __slots__ = ("resource", "observation")

    def __init__(self, resource: ObservableResource, observation: ServerObservation) -> None:
        self.resource = resource
        self.observation = observation

    def __call__(self) -> None:
        registry = self.resource._observation_registry()
        if registry.pop(self.observation, None) is not None:
            self.resource.update_observation_count(len(registry))


def link_format_to_message(
    request: Message,
    linkformat: LinkFormat,
    default_ct: int = ContentFormat.LINKFORMAT,
) -> Message:
    """Given a LinkFormat object, render it to a response message, picking
    a suitable content format from a given request.

    It returns a Not Acceptable response if something unsupported was
    queried; the only format served is application/link-format (40). With
    no Accept option, ``default_ct`` is used.

    It makes no attempt to modify the URI reference literals encoded in the
    LinkFormat object; they have to be suitably prepared by the caller."""
    accept = request.opt.accept
    ct = default_ct if accept is None else accept
    if ct != ContentFormat.LINKFORMAT:
        return Message(code=Code.NOT_ACCEPTABLE)
    return Message(
        code=Code.CONTENT,
        payload=str(LinkFormat.coerce(linkformat)).encode("utf-8"),
        content_format=ContentFormat.LINKFORMAT,
    )


def _parse_filters(queries: Iterable[str]) -> list[tuple[str, Optional[str], bool]]:
    """RFC 6690 §4.1 filter-queries as (name, pattern, is_prefix); a query
    without '=' has pattern None and asks only for the attribute's
    presence."""
    filters: list[tuple[str, Optional[str], bool]] = []
    for query in queries:
        if not query:
            continue
        name, eq, pattern = query.partition("=")
        name = name.lower()
        if not eq:
            filters.append((name, None, False))
        elif pattern.endswith("*"):
            filters.append((name, pattern[:-1], True))
        else:
            filters.append((name, pattern, False))
    return filters


def _value_matches(value: str, pattern: str, is_prefix: bool) -> bool:
    return value.startswith(pattern) if is_prefix else value == pattern


def _link_matches(link: Link, name: str, pattern: Optional[str], is_prefix: bool) -> bool:
    if name == "href":
        if pattern is None:
            return True
        return _value_matches(link.href, pattern, is_prefix)
    values = link.get_attributes(name)
    if not values:
        return False
    if pattern is None:
        return True
    for value in values:
        if value is None:
            value = ""
        if _value_matches(value, pattern, is_prefix):
            return True
        if name in SPACE_SEPARATED:
            for item in value.split():
                if _value_matches(item, pattern, is_prefix):
                    return True
    return False


class WKCResource(Resource):
    """Read-only dynamic resource list, suitable as .well-known/core.

    This resource renders a link format document (a :class:`LinkFormat`,
    or a ``link_header.LinkHeader``) which describes a collection of
    resources, as application/link-format (RFC 6690).

    The list to be rendered is obtained from a function passed into the
    constructor; typically, that function would be a bound
    :meth:`Site.get_resources_as_linkheader` method.

    Query parameters filter the list as in RFC 6690 §4.1: ``?rt=temp``,
    ``?if=sensor``, ``?ct=40``, ``?href=/sensors/*`` or any other
    attribute; a trailing ``*`` matches prefixes, space separated values
    match individually, and several queries must all match.

    This resource also provides the server's implementation information
    link (``rel="impl-info"``); server authors are invited to override this
    by passing an own URI as the ``impl_info`` parameter, and can disable it
    by passing None.
    """

    ct = "40 64 504"

    def __init__(
        self,
        listgenerator: Callable[[], Any],
        impl_info: Optional[str] = meta.library_uri,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.listgenerator = listgenerator
        self.impl_info = impl_info

    async def render_get(self, request: Message) -> Message:
        links = list(LinkFormat.coerce(self.listgenerator()).links)
        if self.impl_info is not None:
            links.append(Link(self.impl_info, rel="impl-info"))

        filters = _parse_filters(request.opt.uri_query)
        if filters:
            links = [
                link
                for link in links
                if all(_link_matches(link, name, pattern, is_prefix) for (name, pattern, is_prefix) in filters)
            ]

        response = link_format_to_message(request, LinkFormat(links))

        if (
            not links
            and request.opt.no_response is None
            and getattr(request.remote, "is_multicast_locally", False)
        ):
            # RFC 6690 §4.1: a multicast query that matched nothing gets no
            # answer; expressed as "not interested in 2.xx" (RFC 7967).
            response.opt.no_response = _NO_RESPONSE_SUCCESS
        return response


class PathCapable:
    """Class that indicates that a resource promises to parse the uri_path
    option, and can thus be given requests for :meth:`render`-ing that
    contain a uri_path"""


def _as_path(path: Any, method: str) -> tuple[str, ...]:
    if isinstance(path, (str, bytes)):
        text = path if isinstance(path, str) else path.decode("utf-8", "replace")
        example = [segment for segment in text.split("/") if segment]
        raise TypeError(
            f"Site.{method} needs the path as a list of segments, "
            f"e.g. {example!r} rather than {path!r}"
        )
    try:
        segments = tuple(path)
    except TypeError:
        raise TypeError(f"Site.{method} needs the path as a list of str segments, not {path!r}") from None
    for segment in segments:
        if not isinstance(segment, str):
            raise TypeError(f"path segments must be str, not {type(segment).__name__} ({segment!r})")
    return segments


def _not_found(request: Message) -> error.RenderableError:
    """What a site answers for a request it has no resource for."""
    opt = request.opt
    if OptionNumber.PROXY_URI in opt or OptionNumber.PROXY_SCHEME in opt:
        return error.ProxyingNotSupported()
    return error.NotFound()


class Site(interfaces.ObservableResource, PathCapable):
    """Typical root element that gets passed to a Context and contains all
    the resources that can be found when the endpoint gets accessed as a
    server.

    This provides easy registration of statical resources. Add resources at
    absolute locations using the :meth:`add_resource` method.

    For example, the site at

    >>> site = Site()
    >>> site.add_resource(["hello"], Resource())

    will have requests to </hello> rendered by the new resource.

    You can add another Site (or another instance of :class:`PathCapable`)
    as well, those will be nested and integrally reported in a
    :class:`WKCResource`. The path of a site should not end with an empty
    string (ie. a slash in the URI) -- the child site's own root resource
    will then have the trailing slash address. Subsites can not have
    link-header attributes on their own (eg. ``rt``) and will never respond
    to a request that does not at least contain a single slash after the
    given path part.

    For example,

    >>> batch = Site()
    >>> batch.add_resource(["light1"], Resource())
    >>> batch.add_resource(["light2"], Resource())
    >>> batch.add_resource([], Resource())
    >>> s = Site()
    >>> s.add_resource(["batch"], batch)

    will have the three created resources rendered at </batch/light1>,
    </batch/light2> and </batch/>.

    >>> print(s.get_resources_as_linkheader())
    </batch/light1>,</batch/light2>,</batch/>

    If it is necessary to respond to requests to </batch> or report its
    attributes in .well-known/core in addition to the above, a
    non-PathCapable resource can be added with the same path. This is
    usually considered an odd design, not fully supported, and for example
    doesn't support removal of resources from the site (removing that path
    removes the nested site first).

    Resources that are not PathCapable only receive requests for exactly
    their path (/spam/eggs does not reach a resource at /spam). Every
    resource sees the request with the path components of its own position
    stripped.
    """

    def __init__(self) -> None:
        self._resources: dict[tuple[str, ...], interfaces.Resource] = {}
        self._subsites: dict[tuple[str, ...], interfaces.Resource] = {}
        # Whether a child (or nested site) may take over exchanges with a
        # render_to_pipe of its own (see pipe_renderer_for)
        self._pipe_renderers = False

    def _locate(self, request: Message) -> tuple[Optional[interfaces.Resource], Optional[tuple[str, ...]]]:
        """The child responsible for a request and the path remainder it is
        to see (None: the request's path unchanged), or (None, None).
        A proxy request (Proxy-Uri or Proxy-Scheme) has none: a site is no
        proxy (:meth:`render` answers 5.05)."""
        opt = request.opt
        if OptionNumber.PROXY_URI in opt or OptionNumber.PROXY_SCHEME in opt:
            return None, None
        path = opt.uri_path
        resource = self._resources.get(path)
        if resource is not None:
            return resource, (() if path else None)
        subsites = self._subsites
        if subsites:
            if not path:
                # "/" is the root site's slash: a PathCapable mounted at the
                # root gets it as its own root.
                site = subsites.get(path)
                return (site, None) if site is not None else (None, None)
            # Longest registered prefix wins; a nested site needs at least
            # one more segment (possibly empty, for its root).
            for cut in range(len(path) - 1, -1, -1):
                site = subsites.get(path[:cut])
                if site is not None:
                    remainder = path[cut:]
                    if remainder == ("",):
                        remainder = ()
                    return site, remainder
        return None, None

    @staticmethod
    def stripped_request(request: Message, remainder: Optional[tuple[str, ...]]) -> Message:
        """The request as a child sees it: a copy with the path replaced by
        ``remainder`` (the request itself if that is None). Also used for
        the notifications of an observation routed through the site (see
        ServerObservation.route_notifications). Only the path changes, so the copy shares the other options' value
        lists with the original (the views assign new lists, never mutate
        them)."""
        if remainder is None:
            return request
        # (This runs for every notification: the message copy is written
        # out.)
        new = Message.__new__(Message)
        attributes = new.__dict__
        attributes.update(request.__dict__)
        opt, paths = request.opt.split_off(_URI_PATH)
        if "_original_uri_path" not in attributes:
            if not paths:
                attributes["_original_uri_path"] = ()
            elif len(paths) == 1:
                attributes["_original_uri_path"] = (paths[0].value,)
            else:
                attributes["_original_uri_path"] = tuple([o.value for o in paths])
        if remainder:
            opt.uri_path = remainder
        attributes["opt"] = opt
        return new



    async def needs_blockwise_assembly(self, request: Message) -> bool:
        """Indicator to the protocol about whether it should assemble
        request blocks to a single request and extract the requested blocks
        from a complete-resource answer (True), or whether the resource
        will do that by itself (False). Asks the resource at the request's
        path; True for unknown paths."""
        child, remainder = self._locate(request)
        if child is None:
            return True
        if type(child).needs_blockwise_assembly is Resource.needs_blockwise_assembly:
            return True  # the default answer; no need to build the child's view
        return await child.needs_blockwise_assembly(self.stripped_request(request, remainder))

    async def render(self, request: Message) -> Message:
        """Return a message that can be sent back to the requester, as
        rendered by the resource at the request's path; raises
        :class:`error.NotFound` (4.04) where there is none, and
        :class:`error.ProxyingNotSupported` (5.05) for a proxy request
        (RFC 7252 §5.7.2)."""
        child, remainder = self._locate(request)
        if child is None:
            raise _not_found(request)
        return await child.render(self.stripped_request(request, remainder))

    @interfaces.dispatches_to_children
    async def render_to_pipe(self, request: "Pipe") -> None:
        """Feed the response(s) of the resource at the request's path into
        the pipe (``request``, named as in aiocoap): a child with a
        render_to_pipe of its own gets the pipe, its request stripped to
        the child's part of the path; any other child is rendered with
        ``render``. Raises :class:`error.NotFound` where there is no
        resource.

        The Context uses this only for children that render to pipes
        (see :meth:`pipe_renderer_for`); requests to other children take the
        usual way, with blockwise handling and observations."""
        pipe = request
        child, remainder = self._locate(pipe.request)
        if child is None:
            raise _not_found(pipe.request)
        stripped = self.stripped_request(pipe.request, remainder)
        if interfaces.renders_to_pipe(child) or isinstance(child, Site):
            pipe.request = stripped
            await child.render_to_pipe(pipe)
            return
        await interfaces.Resource.render_to_pipe(_Rendering(child, stripped), pipe)  # type: ignore[arg-type]  # (duck)

    def pipe_renderer_for(self, request: Message) -> Optional[tuple[interfaces.Resource, Message]]:
        """The child (possibly in a nested site) that takes over the
        exchange of ``request`` with a render_to_pipe of its own, and the
        request as it sees it, as a pair; None for requests that go the
        usual way. Cheap while no such child was added."""
        if not self._pipe_renderers:
            return None
        child, remainder = self._locate(request)
        if child is None:
            return None
        stripped = self.stripped_request(request, remainder)
        if isinstance(child, Site):
            return child.pipe_renderer_for(stripped)
        if interfaces.renders_to_pipe(child):
            return child, stripped
        return None

    async def add_observation(self, request: Message, serverobservation: ServerObservation) -> None:
        """Before the incoming request is sent to :meth:`render`, the
        add_observation() method is called. If the resource chooses to
        accept the observation, it has to call the
        ``serverobservation.accept(cb)`` with a callback that will be called
        when the observation ends. After accepting, the ObservableResource
        should call ``serverobservation.trigger()`` whenever it changes its
        state; the ServerObservation will then initiate notifications by
        having the request rendered again.

        A site passes the observation on to the resource at the request's
        path if that is observable, and otherwise leaves it unaccepted."""
        child, remainder = self._locate(request)
        if child is None:
            return
        add_observation = getattr(child, "add_observation", None)
        if add_observation is None:
            return
        route = getattr(serverobservation, "route_notifications", None)
        if route is not None:
            # (a ServerObservation of the library, not an application's
            # stand-in)
            route(self, child, remainder)
        await add_observation(self.stripped_request(request, remainder), serverobservation)

    def add_resource(self, path: Iterable[str], resource: interfaces.Resource) -> None:
        """Make ``resource`` available at ``path``, a list (or tuple) of
        path segments: ``["time"]`` for /time, ``[".well-known", "core"]``
        for /.well-known/core, ``[]`` for the root.

        PathCapable resources (like nested sites) serve everything below
        that path; other resources serve exactly that path."""
        segments = _as_path(path, "add_resource")
        if interfaces.renders_to_pipe(resource) or isinstance(resource, Site):
            self._pipe_renderers = True
        if isinstance(resource, PathCapable):
            self._subsites[segments] = resource
        else:
            self._resources[segments] = resource

    def remove_resource(self, path: Iterable[str]) -> None:
        """Remove what was added at ``path``; raises KeyError if nothing
        was."""
        segments = _as_path(path, "remove_resource")
        if segments in self._subsites:
            del self._subsites[segments]
        elif segments in self._resources:
            del self._resources[segments]
        else:
            raise KeyError(f"no resource at {'/' + '/'.join(segments)!r}")

    def get_resources_as_linkheader(self) -> LinkFormat:
        """A :class:`LinkFormat` listing every resource of the site (and of
        nested sites, with their paths prefixed) that has a
        ``get_link_description`` method, with the attributes it describes.
        Suitable as the list generator of a :class:`WKCResource`."""
        links = []
        for path, resource in self._resources.items():
            describe = getattr(resource, "get_link_description", None)
            if describe is None:
                continue
            description = describe()
            if description is None:
                continue
            links.append(Link(_href(path), **description))
        for path, site in self._subsites.items():
            listing = getattr(site, "get_resources_as_linkheader", None)
            if listing is None:
                continue
            prefix = _href(path) if path else ""
            for link in LinkFormat.coerce(listing()).links:
                href = link.href
                if href.startswith("/"):
                    href = prefix + href
                links.append(Link(href, link.attr_pairs))
        return LinkFormat(links)


class _Rendering:
    """A child and the request as it sees it, rendered the default way by
    Site.render_to_pipe."""

    __slots__ = ("child", "request")

    def __init__(self, child: interfaces.Resource, request: Message) -> None:
        self.child = child
        self.request = request

    async def render(self, request: Message) -> Message:
        return await self.child.render(self.request)


def _href(path: tuple[str, ...]) -> str:
    return "/" + "/".join(_quote_segment(segment) for segment in path)
