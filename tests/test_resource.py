"""Tests of aiocoap.resource: render dispatch, Site routing, .well-known/core
and its RFC 6690 §4.1 filters, hashing_etag and ObservableResource
bookkeeping. Everything runs on Message objects; no network."""

import argparse
import asyncio
import hashlib
import importlib.util
import pathlib

import pytest

from aiocoap import error, interfaces, meta
from aiocoap.message import Message, NoResponse
from aiocoap.numbers import ContentFormat
from aiocoap.numbers.codes import Code
from aiocoap.resource import (
    ObservableResource,
    PathCapable,
    Resource,
    Site,
    WKCResource,
    hashing_etag,
    link_format_to_message,
)
from aiocoap.util.linkformat import Link, LinkFormat, parse

ALL_METHODS = {
    Code.GET: "render_get",
    Code.POST: "render_post",
    Code.PUT: "render_put",
    Code.DELETE: "render_delete",
    Code.FETCH: "render_fetch",
    Code.PATCH: "render_patch",
    Code.iPATCH: "render_ipatch",
}


class Recorder(Resource):
    """Answers every method with the handler's name and no code."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def _answer(self, name, request):
        self.seen.append((name, request))
        return Message(payload=name.encode())

    async def render_get(self, request):
        return self._answer("render_get", request)

    async def render_post(self, request):
        return self._answer("render_post", request)

    async def render_put(self, request):
        return self._answer("render_put", request)

    async def render_delete(self, request):
        return self._answer("render_delete", request)

    async def render_fetch(self, request):
        return self._answer("render_fetch", request)

    async def render_patch(self, request):
        return self._answer("render_patch", request)

    async def render_ipatch(self, request):
        return self._answer("render_ipatch", request)


class GetOnly(Resource):
    def __init__(self, payload=b"get-only"):
        self.payload = payload

    async def render_get(self, request):
        return Message(payload=self.payload)


class FakeServerObservation:
    """Implements the ServerObservation contract of aiocoap.protocol:
    accept(cb), deregister(reason=None), trigger(response=None, *, is_last=False)."""

    def __init__(self, fail_on_trigger=False):
        self.accepted = False
        self._cancellation_callback = None
        self.triggered = []
        self.fail_on_trigger = fail_on_trigger

    def accept(self, cancellation_callback):
        self.accepted = True
        self._cancellation_callback = cancellation_callback

    def deregister(self, reason=None):
        callback, self._cancellation_callback = self._cancellation_callback, None
        if callback is not None:
            callback()

    def trigger(self, response=None, *, is_last=False):
        if self.fail_on_trigger:
            raise RuntimeError("broken observation")
        self.triggered.append((response, is_last))


class MulticastRemote:
    is_multicast = True
    is_multicast_locally = True


class UnicastRemote:
    is_multicast = False
    is_multicast_locally = False


def request(code=Code.GET, path=(), query=(), **kwargs):
    return Message(code=code, uri_path=path, uri_query=query, **kwargs)


# --- Resource.render -------------------------------------------------------------


@pytest.mark.parametrize("code, name", list(ALL_METHODS.items()))
async def test_render_dispatches_by_method(code, name):
    resource = Recorder()
    req = request(code)
    response = await resource.render(req)
    assert response.payload == name.encode()
    assert resource.seen == [(name, req)]


@pytest.mark.parametrize(
    "code, expected",
    [
        (Code.GET, Code.CONTENT),
        (Code.FETCH, Code.CONTENT),
        (Code.DELETE, Code.DELETED),
        (Code.PUT, Code.CHANGED),
        (Code.POST, Code.CHANGED),
        (Code.PATCH, Code.CHANGED),
        (Code.iPATCH, Code.CHANGED),
    ],
)
async def test_default_response_codes(code, expected):
    response = await Recorder().render(request(code))
    assert response.code == expected


async def test_explicit_code_is_kept():
    class Creates(Resource):
        async def render_post(self, request):
            return Message(code=Code.CREATED, location_path=["new"])

    response = await Creates().render(request(Code.POST))
    assert response.code == Code.CREATED
    assert response.opt.location_path == ("new",)


@pytest.mark.parametrize("code", [c for c in ALL_METHODS if c != Code.GET])
async def test_missing_handler_is_405(code):
    with pytest.raises(error.UnallowedMethod) as excinfo:
        await GetOnly().render(request(code))
    assert excinfo.value.to_message().code == Code.METHOD_NOT_ALLOWED


async def test_unknown_request_code_is_405():
    with pytest.raises(error.MethodNotAllowed):
        await Recorder().render(request(Code(17)))


async def test_plain_resource_allows_nothing():
    with pytest.raises(error.UnallowedMethod):
        await Resource().render(request(Code.GET))


async def test_no_response_copied_from_request():
    response = await GetOnly().render(request(no_response=26))
    assert response.opt.no_response == 26


async def test_no_response_of_response_is_kept():
    class Own(Resource):
        async def render_get(self, request):
            return Message(no_response=2)

    response = await Own().render(request(no_response=26))
    assert response.opt.no_response == 2


async def test_no_response_absent_stays_absent():
    response = await GetOnly().render(request())
    assert response.opt.no_response is None


async def test_noresponse_sentinel_passes_through():
    class Silent(Resource):
        async def render_get(self, request):
            return NoResponse

    assert await Silent().render(request(no_response=26)) is NoResponse


async def test_handler_returning_non_message_is_a_type_error():
    class Broken(Resource):
        async def render_get(self, request):
            return b"raw bytes"

    with pytest.raises(TypeError, match="render_get of Broken returned"):
        await Broken().render(request())


async def test_plain_function_handler_is_accepted():
    class Sync(Resource):
        def render_get(self, request):
            return Message(payload=b"sync")

    response = await Sync().render(request())
    assert (response.code, response.payload) == (Code.CONTENT, b"sync")


async def test_renderable_error_propagates():
    class Picky(Resource):
        async def render_put(self, request):
            raise error.UnsupportedContentFormat()

    with pytest.raises(error.UnsupportedContentFormat):
        await Picky().render(request(Code.PUT))


async def test_needs_blockwise_assembly():
    assert await Resource().needs_blockwise_assembly(request()) is True


# --- link descriptions -----------------------------------------------------------


def test_link_description_of_plain_resource_is_empty():
    assert Resource().get_link_description() == {}


def test_link_description_attributes():
    class Described(Resource):
        ct = ContentFormat.LINKFORMAT
        rt = "temperature-c"
        if_ = ["sensor", "core.s"]
        title = "Temperature"

    assert Described().get_link_description() == {
        "ct": "40",
        "rt": "temperature-c",
        "if": "sensor core.s",
        "title": "Temperature",
    }


@pytest.mark.parametrize("ct, text", [(0, "0"), ("40 64 504", "40 64 504"), ([0, 50], "0 50")])
def test_link_description_ct_forms(ct, text):
    resource = Resource()
    resource.ct = ct
    assert resource.get_link_description() == {"ct": text}


def test_observable_link_description_has_obs():
    class Clock(ObservableResource):
        rt = "clock"

    assert Clock().get_link_description() == {"rt": "clock", "obs": None}


# --- ObservableResource ------------------------------------------------------------


class CountingObservable(ObservableResource):
    def __init__(self):
        super().__init__()
        self.counts = []

    def update_observation_count(self, newcount):
        self.counts.append(newcount)

    async def render_get(self, request):
        return Message(payload=b"state")


async def test_observations_are_accepted_and_counted():
    resource = CountingObservable()
    first, second = FakeServerObservation(), FakeServerObservation()
    await resource.add_observation(request(observe=0), first)
    await resource.add_observation(request(observe=0), second)
    assert first.accepted and second.accepted
    assert resource.counts == [1, 2]

    first.deregister()
    assert resource.counts == [1, 2, 1]
    first.deregister()  # a second cancellation changes nothing
    assert resource.counts == [1, 2, 1]
    second.deregister()
    assert resource.counts == [1, 2, 1, 0]


async def test_cancellation_callback_is_idempotent():
    resource = CountingObservable()
    observation = FakeServerObservation()
    await resource.add_observation(request(observe=0), observation)
    callback = observation._cancellation_callback
    callback()
    callback()
    assert resource.counts == [1, 0]


async def test_updated_state_triggers_every_observation():
    resource = CountingObservable()
    observations = [FakeServerObservation() for _ in range(3)]
    for observation in observations:
        await resource.add_observation(request(observe=0), observation)

    resource.updated_state()
    notification = Message(code=Code.CONTENT, payload=b"pushed")
    resource.updated_state(notification)
    for observation in observations:
        assert observation.triggered == [(None, False), (notification, False)]

    observations[1].deregister()
    resource.updated_state()
    assert len(observations[0].triggered) == 3
    assert len(observations[1].triggered) == 2
    assert len(observations[2].triggered) == 3


async def test_updated_state_survives_a_failing_observation(caplog):
    resource = CountingObservable()
    broken, healthy = FakeServerObservation(fail_on_trigger=True), FakeServerObservation()
    await resource.add_observation(request(observe=0), broken)
    await resource.add_observation(request(observe=0), healthy)
    resource.updated_state()
    assert healthy.triggered == [(None, False)]
    assert "broken observation" in caplog.text


async def test_observation_cancelled_during_trigger():
    resource = CountingObservable()

    class SelfCancelling(FakeServerObservation):
        def trigger(self, response=None, *, is_last=False):
            super().trigger(response, is_last=is_last)
            self.deregister()

    quitter, stayer = SelfCancelling(), FakeServerObservation()
    await resource.add_observation(request(observe=0), quitter)
    await resource.add_observation(request(observe=0), stayer)
    resource.updated_state()
    assert quitter.triggered and stayer.triggered
    assert resource.counts == [1, 2, 1]


async def test_updated_state_without_observers_is_harmless():
    CountingObservable().updated_state()


async def test_observable_without_init_call():
    class Lazy(ObservableResource):
        def __init__(self):
            pass

    resource = Lazy()
    observation = FakeServerObservation()
    await resource.add_observation(request(observe=0), observation)
    resource.updated_state()
    assert observation.triggered == [(None, False)]


async def test_observable_renders_like_a_resource():
    response = await CountingObservable().render(request())
    assert (response.code, response.payload) == (Code.CONTENT, b"state")


# --- Site ----------------------------------------------------------------------


def build_site():
    site = Site()
    site.add_resource([], GetOnly(b"root"))
    site.add_resource(["time"], GetOnly(b"time"))
    site.add_resource(["other", "block"], GetOnly(b"block"))
    batch = Site()
    batch.add_resource(["light1"], GetOnly(b"light1"))
    batch.add_resource([], GetOnly(b"batch-root"))
    site.add_resource(["batch"], batch)
    return site


@pytest.mark.parametrize(
    "path, payload",
    [
        ((), b"root"),
        (("time",), b"time"),
        (("other", "block"), b"block"),
        (("batch", "light1"), b"light1"),
        (("batch", ""), b"batch-root"),
    ],
)
async def test_site_routes_by_path(path, payload):
    response = await build_site().render(request(path=path))
    assert (response.code, response.payload) == (Code.CONTENT, payload)


@pytest.mark.parametrize(
    "path",
    [("nothing",), ("time", "more"), ("other",), ("other", "block", "x"), ("batch",), ("batch", "light2"), ("",)],
)
async def test_site_unknown_path_is_404(path):
    with pytest.raises(error.NotFound) as excinfo:
        await build_site().render(request(path=path))
    assert excinfo.value.to_message().code == Code.NOT_FOUND


async def test_site_strips_path_for_children():
    leaf, pathcapable_seen = Recorder(), []

    class Catchall(Resource, PathCapable):
        async def render_get(self, request):
            pathcapable_seen.append(request.opt.uri_path)
            return Message(payload=b"catchall")

    site = Site()
    site.add_resource(["a", "b"], leaf)
    site.add_resource(["files"], Catchall())
    original = request(path=("a", "b"), query=("q=1",))
    await site.render(original)
    (_, seen), = leaf.seen
    assert seen.opt.uri_path == ()
    assert seen.opt.uri_query == ("q=1",)
    assert original.opt.uri_path == ("a", "b")

    await site.render(request(path=("files", "dir", "x.txt")))
    await site.render(request(path=("files", "")))
    assert pathcapable_seen == [("dir", "x.txt"), ()]


async def test_site_root_mounted_pathcapable():
    seen = []

    class Catchall(Resource, PathCapable):
        async def render_get(self, request):
            seen.append(request.opt.uri_path)
            return Message()

    site = Site()
    site.add_resource([], Catchall())
    await site.render(request(path=()))
    await site.render(request(path=("x", "y")))
    assert seen == [(), ("x", "y")]


async def test_site_longest_prefix_wins():
    outer, inner = Site(), Site()
    outer.add_resource(["x"], GetOnly(b"outer-x"))
    inner.add_resource(["x"], GetOnly(b"inner-x"))
    site = Site()
    site.add_resource(["a"], outer)
    site.add_resource(["a", "b"], inner)
    assert (await site.render(request(path=("a", "x")))).payload == b"outer-x"
    assert (await site.render(request(path=("a", "b", "x")))).payload == b"inner-x"


async def test_site_leaf_next_to_subsite():
    site = build_site()
    site.add_resource(["batch"], GetOnly(b"batch-itself"))
    assert (await site.render(request(path=("batch",)))).payload == b"batch-itself"
    assert (await site.render(request(path=("batch", "light1")))).payload == b"light1"


async def test_site_method_errors_come_from_the_resource():
    with pytest.raises(error.UnallowedMethod):
        await build_site().render(request(Code.PUT, path=("time",)))


async def test_site_remove_resource():
    site = build_site()
    site.remove_resource(["time"])
    with pytest.raises(error.NotFound):
        await site.render(request(path=("time",)))
    site.remove_resource(("batch",))
    with pytest.raises(error.NotFound):
        await site.render(request(path=("batch", "light1")))
    assert (await site.render(request(path=("other", "block")))).payload == b"block"
    with pytest.raises(KeyError, match="/time"):
        site.remove_resource(["time"])


def test_site_rejects_str_paths():
    site = Site()
    with pytest.raises(TypeError, match=r"list of segments.*\['other', 'block'\]"):
        site.add_resource("/other/block", Resource())
    with pytest.raises(TypeError, match="list of segments"):
        site.add_resource(b"time", Resource())
    with pytest.raises(TypeError, match="list of segments"):
        site.remove_resource("time")
    with pytest.raises(TypeError, match="segments must be str"):
        site.add_resource(["a", 1], Resource())
    with pytest.raises(TypeError, match="list of str segments"):
        site.add_resource(None, Resource())


async def test_site_needs_blockwise_assembly_delegates():
    class DoesItsOwnBlocks(Resource):
        async def needs_blockwise_assembly(self, request):
            return False

    site = Site()
    site.add_resource(["raw"], DoesItsOwnBlocks())
    site.add_resource(["plain"], Resource())
    assert await site.needs_blockwise_assembly(request(path=("raw",))) is False
    assert await site.needs_blockwise_assembly(request(path=("plain",))) is True
    assert await site.needs_blockwise_assembly(request(path=("unknown",))) is True


async def test_site_add_observation_delegates():
    clock = CountingObservable()
    inner = Site()
    inner.add_resource(["clock"], clock)
    site = Site()
    site.add_resource(["nested"], inner)
    site.add_resource(["static"], GetOnly())

    observation = FakeServerObservation()
    await site.add_observation(request(path=("nested", "clock"), observe=0), observation)
    assert observation.accepted
    assert clock.counts == [1]

    for path in (("static",), ("unknown",)):
        refused = FakeServerObservation()
        await site.add_observation(request(path=path, observe=0), refused)
        assert not refused.accepted


def test_site_is_observable_and_pathcapable():
    site = Site()
    assert isinstance(site, interfaces.ObservableResource)
    assert isinstance(site, interfaces.Resource)
    assert isinstance(site, PathCapable)
    assert isinstance(ObservableResource(), interfaces.ObservableResource)


# --- listing ---------------------------------------------------------------------


class Titled(GetOnly):
    def get_link_description(self):
        return dict(**super().get_link_description(), title="A large resource")


class Hidden(GetOnly):
    def get_link_description(self):
        return None


def demo_site():
    root = Site()
    root.add_resource([".well-known", "core"], WKCResource(root.get_resources_as_linkheader))
    clock = CountingObservable()
    clock.ct = 0
    root.add_resource(["time"], clock)
    root.add_resource(["other", "block"], GetOnly())
    root.add_resource(["other", "separate"], Titled())
    sensors = Site()
    temp = GetOnly()
    temp.rt = "temperature-c"
    temp.if_ = "sensor"
    temp.ct = 0
    light = GetOnly()
    light.rt = ["light-lux", "core.light"]
    light.if_ = "sensor"
    sensors.add_resource(["temp"], temp)
    sensors.add_resource(["light"], light)
    sensors.add_resource([], GetOnly())
    root.add_resource(["sensors"], sensors)
    root.add_resource(["secret"], Hidden())
    return root


def test_get_resources_as_linkheader():
    listing = demo_site().get_resources_as_linkheader()
    assert isinstance(listing, LinkFormat)
    assert str(listing) == (
        '</.well-known/core>;ct="40 64 504",'
        "</time>;ct=0;obs,"
        "</other/block>,"
        '</other/separate>;title="A large resource",'
        '</sensors/temp>;ct=0;rt="temperature-c";if="sensor",'
        '</sensors/light>;rt="light-lux core.light";if="sensor",'
        "</sensors/>"
    )


def test_listing_quotes_path_segments_and_skips_undescribed():
    class Undescribed:
        async def render(self, request):
            return Message()

        async def needs_blockwise_assembly(self, request):
            return True

    site = Site()
    site.add_resource(["a b", "c/d", "ü"], Resource())
    site.add_resource(["raw"], Undescribed())
    assert str(site.get_resources_as_linkheader()) == "</a%20b/c%2Fd/%C3%BC>"


def test_listing_of_deeply_nested_sites():
    innermost = Site()
    innermost.add_resource(["leaf"], Resource())
    middle = Site()
    middle.add_resource(["in"], innermost)
    root = Site()
    root.add_resource(["mid"], middle)
    root.add_resource([], Resource())
    assert [link.href for link in root.get_resources_as_linkheader()] == ["/", "/mid/in/leaf"]


# --- .well-known/core ----------------------------------------------------------


async def wkc(query=(), accept=None, remote=None, no_response=None, impl_info=meta.library_uri, site=None):
    site = site or demo_site()
    req = request(path=(".well-known", "core"), query=query)
    if accept is not None:
        req.opt.accept = accept
    if no_response is not None:
        req.opt.no_response = no_response
    if remote is not None:
        req.remote = remote
    if impl_info is not meta.library_uri:
        site.add_resource([".well-known", "core"], WKCResource(site.get_resources_as_linkheader, impl_info=impl_info))
    return await site.render(req)


def hrefs(response):
    return [link.href for link in parse(response.payload.decode("utf-8"))]


async def test_wkc_full_listing():
    response = await wkc()
    assert response.code == Code.CONTENT
    assert response.opt.content_format == ContentFormat.LINKFORMAT
    text = response.payload.decode("utf-8")
    assert text.startswith('</.well-known/core>;ct="40 64 504",</time>;ct=0;obs,')
    assert text.endswith(f',<{meta.library_uri}>;rel="impl-info"')
    assert "secret" not in text
    assert len(parse(text)) == 8


async def test_wkc_impl_info_override_and_disable():
    custom = await wkc(impl_info="https://example.com/my-server")
    assert custom.payload.decode().endswith(',<https://example.com/my-server>;rel="impl-info"')
    none = await wkc(impl_info=None)
    assert "impl-info" not in none.payload.decode()
    assert hrefs(none)[-1] == "/sensors/"


@pytest.mark.parametrize(
    "query, expected",
    [
        (["href=/time"], ["/time"]),
        (["href=/sensors/*"], ["/sensors/temp", "/sensors/light", "/sensors/"]),
        (["href=/other*"], ["/other/block", "/other/separate"]),
        (["href=/nothing"], []),
        (["rt=temperature-c"], ["/sensors/temp"]),
        (["rt=temperature"], []),
        (["rt=temp*"], ["/sensors/temp"]),
        (["rt=core.light"], ["/sensors/light"]),
        (["rt=light-lux"], ["/sensors/light"]),
        (["rt=light-lux core.light"], ["/sensors/light"]),
        (["if=sensor"], ["/sensors/temp", "/sensors/light"]),
        (["if=sens*"], ["/sensors/temp", "/sensors/light"]),
        (["ct=0"], ["/time", "/sensors/temp"]),
        (["ct=40"], ["/.well-known/core"]),
        (["ct=504"], ["/.well-known/core"]),
        (["ct=4*"], ["/.well-known/core"]),
        (["title=A large resource"], ["/other/separate"]),
        (["title=A*"], ["/other/separate"]),
        (["title=large"], []),
        (["rel=impl-info"], [meta.library_uri]),
        (["obs"], ["/time"]),
        (["obs=*"], ["/time"]),
        (["unknown=x"], []),
        (["unknown*"], []),
        (["RT=temperature-c"], ["/sensors/temp"]),
        (["rt=*"], ["/sensors/temp", "/sensors/light"]),
        (["if=sensor", "ct=0"], ["/sensors/temp"]),
        (["if=sensor", "href=/sensors/l*"], ["/sensors/light"]),
        (["if=sensor", "rt=nothing"], []),
        (["href=*"], None),
        ([""], None),
    ],
)
async def test_wkc_filters(query, expected):
    response = await wkc(query=query)
    assert response.code == Code.CONTENT
    if expected is None:
        expected = hrefs(await wkc())
    assert hrefs(response) == expected


async def test_wkc_filter_on_repeated_attribute():
    site = Site()
    both = Resource()
    site.add_resource(["both"], both)
    both.get_link_description = lambda: {"foo": ["one", "two"]}
    site.add_resource([".well-known", "core"], WKCResource(site.get_resources_as_linkheader, impl_info=None))
    for value in ("one", "two", "t*"):
        response = await site.render(request(path=(".well-known", "core"), query=[f"foo={value}"]))
        assert response.payload == b"</both>;foo=one;foo=two"
    response = await site.render(request(path=(".well-known", "core"), query=["foo=three"]))
    assert response.payload == b""


async def test_wkc_unicast_no_match_is_empty_content():
    response = await wkc(query=["rt=nothing"], remote=UnicastRemote())
    assert response.code == Code.CONTENT
    assert response.payload == b""
    assert response.opt.no_response is None


async def test_wkc_multicast_no_match_is_not_answered():
    response = await wkc(query=["rt=nothing"], remote=MulticastRemote())
    assert response.code == Code.CONTENT
    # RFC 7967: not interested in 2.xx -- the response is suppressed
    assert response.opt.no_response & 0x02


async def test_wkc_multicast_match_is_answered():
    response = await wkc(query=["rt=temperature-c"], remote=MulticastRemote())
    assert response.opt.no_response is None
    assert hrefs(response) == ["/sensors/temp"]


async def test_wkc_multicast_respects_explicit_no_response():
    response = await wkc(query=["rt=nothing"], remote=MulticastRemote(), no_response=0)
    assert response.opt.no_response == 0


async def test_wkc_remote_without_multicast_attributes():
    class BareRemote:
        pass

    response = await wkc(query=["rt=nothing"], remote=BareRemote())
    assert response.opt.no_response is None


@pytest.mark.parametrize("accept", [ContentFormat.TEXT, ContentFormat.JSON, 64, 504, 9999])
async def test_wkc_unsupported_accept_is_406(accept):
    response = await wkc(accept=accept)
    assert response.code == Code.NOT_ACCEPTABLE
    assert response.payload == b""


async def test_wkc_accept_link_format():
    response = await wkc(accept=ContentFormat.LINKFORMAT)
    assert response.code == Code.CONTENT
    assert response.opt.content_format == 40


async def test_wkc_allows_only_get():
    with pytest.raises(error.UnallowedMethod):
        await demo_site().render(request(Code.POST, path=(".well-known", "core")))


async def test_wkc_accepts_foreign_link_header_objects():
    class ForeignLink:
        def __init__(self, href, attr_pairs):
            self.href, self.attr_pairs = href, attr_pairs

    class ForeignHeader:
        links = [ForeignLink("/x", [["rt", "r"]]), ForeignLink("/y", [])]

    resource = WKCResource(lambda: ForeignHeader(), impl_info=None)
    response = await resource.render(request(query=["rt=r"]))
    assert response.payload == b'</x>;rt="r"'


async def test_wkc_accepts_text_listing():
    resource = WKCResource(lambda: '</a>;ct=0,</b>', impl_info=None)
    response = await resource.render(request(query=["href=/b"]))
    assert response.payload == b"</b>"


def test_wkc_documented_ct():
    assert WKCResource.ct == "40 64 504"
    assert WKCResource(lambda: LinkFormat()).impl_info == meta.library_uri


def test_link_format_to_message():
    doc = LinkFormat([Link("/a", ct=0)])
    response = link_format_to_message(request(), doc)
    assert (response.code, response.payload, response.opt.content_format) == (Code.CONTENT, b"</a>;ct=0", 40)
    response = link_format_to_message(request(accept=40), doc)
    assert response.payload == b"</a>;ct=0"
    assert link_format_to_message(request(accept=0), doc).code == Code.NOT_ACCEPTABLE
    assert link_format_to_message(request(), doc, default_ct=504).code == Code.NOT_ACCEPTABLE


# --- hashing_etag ---------------------------------------------------------------


def etag_of(payload):
    return hashlib.sha1(payload).digest()[:8]


def test_hashing_etag_sets_etag():
    response = Message(code=Code.CONTENT, payload=b"hello")
    hashing_etag(request(), response)
    assert response.opt.etag == b"\xaa\xf4\xc6\x1d\xdc\xc5\xe8\xa2" == etag_of(b"hello")
    assert (response.code, response.payload) == (Code.CONTENT, b"hello")


def test_hashing_etag_valid_when_known():
    req = request(etags=[b"other", etag_of(b"hello")])
    response = Message(code=Code.CONTENT, payload=b"hello")
    hashing_etag(req, response)
    assert (response.code, response.payload, response.opt.etag) == (Code.VALID, b"", etag_of(b"hello"))


def test_hashing_etag_not_matching():
    response = Message(code=Code.CONTENT, payload=b"hello")
    hashing_etag(request(etags=[etag_of(b"bye")]), response)
    assert (response.code, response.payload) == (Code.CONTENT, b"hello")


def test_hashing_etag_acts_on_codeless_responses():
    response = Message(payload=b"hello")
    hashing_etag(request(etags=[etag_of(b"hello")]), response)
    assert response.code == Code.VALID


@pytest.mark.parametrize("code", [Code.CHANGED, Code.NOT_FOUND, Code.VALID])
def test_hashing_etag_ignores_other_codes(code):
    response = Message(code=code, payload=b"hello")
    hashing_etag(request(etags=[etag_of(b"hello")]), response)
    assert (response.code, response.payload, response.opt.etag) == (code, b"hello", None)


async def test_hashing_etag_in_a_resource():
    class Etagged(Resource):
        async def render_get(self, request):
            response = Message(payload=b"content")
            hashing_etag(request, response)
            return response

    first = await Etagged().render(request())
    assert first.code == Code.CONTENT
    again = await Etagged().render(request(etags=[first.opt.etag]))
    assert (again.code, again.payload) == (Code.VALID, b"")


# --- the demo server of examples/ --------------------------------------------------


def load_demo_server():
    path = pathlib.Path(__file__).parent.parent / "examples" / "server.py"
    spec = importlib.util.spec_from_file_location("demo_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_demo_server_tree():
    demo = load_demo_server()
    root, clock = demo.build_site()

    listing = await root.render(request(path=(".well-known", "core")))
    assert hrefs(listing) == [
        "/.well-known/core", "/time", "/other/block", "/other/separate", "/whoami", meta.library_uri,
    ]
    assert parse(listing.payload.decode()).links[1].get_attributes("obs") == [None]

    block = await root.render(request(path=("other", "block")))
    assert len(block.payload) > 1024
    put = await root.render(request(Code.PUT, path=("other", "block"), payload=b"fox " * 300))
    assert put.code == Code.CHANGED
    assert (await root.render(request(path=("other", "block")))).payload == b"fox " * 300

    class Remote:
        hostinfo = "[2001:db8::1]:61616"
        uri_base = "coap://[2001:db8::1]:61616"

    whoami = request(path=("whoami",))
    whoami.remote = Remote()
    answer = (await root.render(whoami)).payload.decode()
    assert "[2001:db8::1]:61616" in answer and "coap://[2001:db8::1]:61616" in answer

    time = await root.render(request(path=("time",)))
    assert time.code == Code.CONTENT and time.payload
    clock.stop()


async def test_demo_server_clock_runs_only_while_observed():
    demo = load_demo_server()
    root, clock = demo.build_site()
    clock.interval = 0.01
    observation = FakeServerObservation()
    await root.add_observation(request(path=("time",), observe=0), observation)
    assert clock.handle is not None
    await asyncio.sleep(0.05)
    assert observation.triggered
    observation.deregister()
    assert clock.handle is None
    seen = len(observation.triggered)
    await asyncio.sleep(0.03)
    assert len(observation.triggered) == seen


def test_demo_server_bind_argument():
    demo = load_demo_server()
    assert demo.parse_bind("localhost") == ("localhost", 5683)
    assert demo.parse_bind("[::1]:5700") == ("::1", 5700)
    assert demo.parse_bind("::1") == ("::1", 5683)
    assert demo.parse_bind(":5700") == (None, 5700)
    with pytest.raises(argparse.ArgumentTypeError):
        demo.parse_bind("host:port")


@pytest.mark.parametrize("proxy", [dict(proxy_uri="coap://example.com/time"), dict(proxy_scheme="coap")])
async def test_site_answers_proxy_requests_with_5_05(proxy):
    """RFC 7252 §5.7.2: an endpoint unwilling to act as a forward proxy
    answers 5.05. A site used to serve its own /time to a Proxy-Scheme
    request for someone else's /time."""
    site = demo_site()
    req = request(path=("time",), **proxy)
    with pytest.raises(error.ProxyingNotSupported):
        await site.render(req)
    assert await site.needs_blockwise_assembly(req) is True

    class Observation:
        accepted = False

        def accept(self, callback):
            self.accepted = True

    observation = Observation()
    await site.add_observation(request(path=("time",), observe=0, **proxy), observation)
    assert not observation.accepted
    assert (await site.render(request(path=("time",)))).code == Code.CONTENT


def test_renders_to_pipe_tells_own_pipe_renderers_from_dispatchers():
    class Streaming(Resource):
        async def render_to_pipe(self, pipe):
            pass

    class Dispatcher(Streaming):
        @interfaces.dispatches_to_children
        async def render_to_pipe(self, pipe):
            pass

    assert interfaces.renders_to_pipe(Streaming())
    assert not interfaces.renders_to_pipe(Dispatcher())
    assert not interfaces.renders_to_pipe(Site())
    assert not interfaces.renders_to_pipe(WKCResource(lambda: []))
