"""The resource directory site (aiocoap.resourcedirectory.server) driven
request by request, without network, on a fake clock: the examples of RFC
9176, lifetimes, paging, filtering, concurrent updates, bad input and
caps."""

from __future__ import annotations

import asyncio

import pytest

from aiocoap import error
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.resourcedirectory.directory import Limits
from aiocoap.util.linkformat import parse

from rd_helpers import AnonymousRemote, Clock, Remote, hrefs, links_of, make_rd, rfc_example_links, send

GET, POST, DELETE, PUT = Code.GET, Code.POST, Code.DELETE, Code.PUT
LF = 40

RFC_PAYLOAD = (
    b'</sensors/temp>;rt="temperature-c";if="sensor",'
    b'<http://www.example.com/sensors/temp>;anchor="/sensors/temp";rel="describedby"'
)


async def register(rd, query, payload=b"", remote_=None, content_format=LF):
    response = await send(rd, POST, "rd", query, payload, content_format, remote_)
    assert response.code == Code.CREATED, (response, response.payload)
    return "/" + "/".join(response.opt.location_path)


# --- RFC 9176 examples ---------------------------------------------------------


async def test_discovery_rfc9176_section_4_3():
    rd = make_rd()
    response = await send(rd, GET, ".well-known/core", ["rt=core.rd*"])
    assert response.code == Code.CONTENT
    assert response.opt.content_format == LF
    found = {link.href: link for link in parse(response.payload)}
    assert set(found) == {"/rd", "/rd-lookup/ep", "/rd-lookup/res"}
    assert found["/rd"].rt == "core.rd"
    assert found["/rd-lookup/ep"].rt == "core.rd-lookup-ep"
    assert found["/rd-lookup/res"].rt == "core.rd-lookup-res"
    assert all(link.ct == "40" for link in found.values())
    # and each rt on its own, as an endpoint looking for one would ask
    for rt in ("core.rd", "core.rd-lookup-ep", "core.rd-lookup-res"):
        response = await send(rd, GET, ".well-known/core", [f"rt={rt}"])
        assert [link.rt for link in parse(response.payload)] == [rt]
    await rd.shutdown()


async def test_registration_rfc9176_section_5():
    rd = make_rd()
    ep = Remote("2001:db8:3::123", 61616)
    response = await send(rd, POST, "rd", ["ep=node1"], RFC_PAYLOAD, LF, ep)
    assert response.code == Code.CREATED
    location = response.opt.location_path
    assert len(location) == 2 and location[0] == "reg"

    # RFC 9176 §6.1: resolved targets, anchor resolved where one was given
    lookup = await send(rd, GET, "rd-lookup/res", ["ep=node1"])
    assert lookup.code == Code.CONTENT and lookup.opt.content_format == LF
    assert links_of(lookup) == rfc_example_links("coap://[2001:db8:3::123]:61616")
    await rd.shutdown()


async def test_registration_with_base_rfc9176_section_5():
    rd = make_rd()
    await register(rd, ["ep=node1", "base=http://[2001:db8:1::1]"], RFC_PAYLOAD)
    lookup = await send(rd, GET, "rd-lookup/res", ["rt=temperature-c"])
    assert hrefs(lookup) == ["http://[2001:db8:1::1]/sensors/temp"]
    await rd.shutdown()


class _FakeRequest:
    def __init__(self, future):
        self.response = future


class FakeContext:
    """Answers the RD's own requests (simple registration) with canned
    responses and records them."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = []

    def request(self, message):
        self.requests.append(message)
        future = asyncio.get_running_loop().create_future()
        if isinstance(self.answer, Exception):
            future.set_exception(self.answer)
        elif self.answer is not None:
            future.set_result(self.answer)
        return _FakeRequest(future)


async def test_simple_registration_rfc9176_section_5_1():
    context = FakeContext(Message(code=Code.CONTENT, payload=b"</sen/temp>", content_format=LF))
    rd = make_rd(context=context)
    ep = Remote("2001:db8:2::1", 5683)
    response = await send(rd, POST, ".well-known/rd", ["lt=6000", "ep=node1"], remote_=ep)
    assert response.code == Code.CHANGED
    assert not response.opt.location_path

    (fetch,) = context.requests
    assert fetch.code == Code.GET
    assert fetch.opt.uri_path == (".well-known", "core")
    assert fetch.opt.accept == LF
    assert fetch.remote is ep

    lookup = await send(rd, GET, "rd-lookup/ep", ["ep=node1"])
    (link,) = parse(lookup.payload)
    assert link.lt == "6000"
    assert link.base == "coap://[2001:db8:2::1]"
    assert hrefs(await send(rd, GET, "rd-lookup/res", ["ep=node1"])) == ["coap://[2001:db8:2::1]/sen/temp"]
    await rd.shutdown()


@pytest.mark.parametrize(
    "answer, code",
    [
        (Message(code=Code.NOT_FOUND), Code.BAD_GATEWAY),
        (Message(code=Code.CONTENT, payload=b"{}", content_format=50), Code.BAD_GATEWAY),
        (error.NetworkError("unreachable"), Code.BAD_GATEWAY),
        (Message(code=Code.CONTENT, payload=b"<broken", content_format=LF), Code.BAD_REQUEST),
    ],
)
async def test_simple_registration_fetch_failures(answer, code):
    rd = make_rd(context=FakeContext(answer))
    response = await send(rd, POST, ".well-known/rd", ["ep=node1"])
    assert response.code == code
    assert response.payload
    assert (await send(rd, GET, "rd-lookup/ep")).payload == b""
    await rd.shutdown()


async def test_simple_registration_rejects_before_fetching():
    context = FakeContext(Message(code=Code.CONTENT, payload=b"</a>", content_format=LF))
    rd = make_rd(context=context)
    for query, payload in [(["ep=n", "base=coap://x"], b""), (["lt=5"], b""), (["ep=n"], b"</a>")]:
        response = await send(rd, POST, ".well-known/rd", query, payload)
        assert response.code == Code.BAD_REQUEST
    response = await send(rd, POST, ".well-known/rd", ["ep=n"], remote_=AnonymousRemote("x"))
    assert response.code == Code.BAD_REQUEST
    assert context.requests == []
    await rd.shutdown()


async def test_simple_registration_limits_fetches_per_host():
    context = FakeContext(None)  # never answers
    rd = make_rd(context=context)
    ep = Remote("2001:db8:2::1", 5683)
    first = asyncio.ensure_future(send(rd, POST, ".well-known/rd", ["ep=a"], remote_=ep))
    await asyncio.sleep(0)
    second = await send(rd, POST, ".well-known/rd", ["ep=b"], remote_=Remote("2001:db8:2::1", 5684))
    assert second.code == Code.SERVICE_UNAVAILABLE
    assert second.opt.max_age is not None
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await rd.shutdown()


async def test_simple_registration_without_context_is_not_implemented():
    rd = make_rd()
    response = await send(rd, POST, ".well-known/rd", ["ep=n"])
    assert response.code == Code.NOT_IMPLEMENTED
    await rd.shutdown()


async def test_update_rfc9176_section_5_3_1():
    clock = Clock()
    rd = make_rd(clock)
    ep = Remote("2001:db8:3::123", 61616)
    location = await register(rd, ["ep=endpoint1", "lt=100"], RFC_PAYLOAD, ep)

    clock.advance(90)
    response = await send(rd, POST, location, remote_=ep)
    assert response.code == Code.CHANGED
    clock.advance(90)  # 180 s after registration, 90 after the update
    assert (await send(rd, GET, "rd-lookup/ep")).payload

    response = await send(rd, POST, location, ["base=coaps://[2001:db8:1::2]"], remote_=ep)
    assert response.code == Code.CHANGED
    lookup = await send(rd, GET, "rd-lookup/res", ["ep=endpoint1"])
    assert links_of(lookup) == rfc_example_links("coaps://[2001:db8:1::2]")
    await rd.shutdown()


async def test_update_changes_lifetime_and_attributes():
    clock = Clock()
    rd = make_rd(clock)
    location = await register(rd, ["ep=n", "lt=100", "et=one", "x=1"], b"</a>")
    assert (await send(rd, POST, location, ["lt=1000", "et=two"])).code == Code.CHANGED
    (link,) = parse((await send(rd, GET, "rd-lookup/ep")).payload)
    assert link.lt == "1000"
    assert link.get_attributes("et") == ["two"]
    assert link.x == "1"
    clock.advance(999)
    assert (await send(rd, GET, "rd-lookup/ep")).payload
    clock.advance(1)
    assert (await send(rd, GET, "rd-lookup/ep")).payload == b""
    await rd.shutdown()


async def test_update_with_payload_replaces_links():
    rd = make_rd()
    location = await register(rd, ["ep=n"], b"</a>,</b>")
    assert (await send(rd, POST, location, [], b"</c>;rt=new", LF)).code == Code.CHANGED
    assert [link.href for link in parse((await send(rd, GET, location)).payload)] == ["/c"]
    lookup = await send(rd, GET, "rd-lookup/res")
    assert [h.rsplit("/", 1)[1] for h in hrefs(lookup)] == ["c"]
    # without payload, the links stay
    assert (await send(rd, POST, location, ["lt=5000"])).code == Code.CHANGED
    assert [link.href for link in parse((await send(rd, GET, location)).payload)] == ["/c"]
    await rd.shutdown()


async def test_update_can_not_change_endpoint_name():
    rd = make_rd()
    location = await register(rd, ["ep=n", "d=s"], b"</a>")
    assert (await send(rd, POST, location, ["ep=n", "d=s"])).code == Code.CHANGED
    response = await send(rd, POST, location, ["ep=other"])
    assert response.code == Code.BAD_REQUEST and b"ep" in response.payload
    await rd.shutdown()


async def test_removal_rfc9176_section_5_3_2():
    rd = make_rd()
    location = await register(rd, ["ep=node1"], RFC_PAYLOAD)
    response = await send(rd, DELETE, location)
    assert response.code == Code.DELETED
    assert (await send(rd, GET, "rd-lookup/res")).payload == b""
    for method in (DELETE, POST, GET):
        response = await send(rd, method, location)
        assert response.code == Code.NOT_FOUND
    await rd.shutdown()


async def test_read_registration_resource():
    rd = make_rd()
    location = await register(rd, ["ep=node1"], RFC_PAYLOAD)
    response = await send(rd, GET, location)
    assert response.code == Code.CONTENT and response.opt.content_format == LF
    assert parse(response.payload) == parse(RFC_PAYLOAD)
    assert (await send(rd, GET, location, accept=50)).code == Code.NOT_ACCEPTABLE
    assert (await send(rd, PUT, location)).code == Code.METHOD_NOT_ALLOWED
    assert (await send(rd, GET, location + "/deeper")).code == Code.NOT_FOUND
    assert (await send(rd, GET, "reg")).code == Code.NOT_FOUND
    await rd.shutdown()


async def _rfc_lookup_fixture(rd):
    """The registrations the lookup examples of RFC 9176 §6 assume."""
    await register(
        rd,
        ["ep=node1", "et=tag:example.com,2020:platform", "lt=600"],
        b'</temp>;rt="tag:example.org,2020:temperature",</light/left>;rt="tag:example.org,2020:light";ct=0',
        Remote("2001:db8:3::123", 61616),
    )
    await register(
        rd,
        ["ep=node5", "et=tag:example.com,2020:platform", "lt=60"],
        b'</light/right>;rt="tag:example.org,2020:light";if="tag:example.net,2020:actuator"',
        Remote("2001:db8:3::127", 61616),
    )
    await register(rd, ["ep=node9", "d=other", "lt=600"], b"</x>", Remote("2001:db8:3::129", 61616))


async def test_resource_lookup_rfc9176_section_6_3():
    rd = make_rd()
    await _rfc_lookup_fixture(rd)
    lookup = await send(rd, GET, "rd-lookup/res", ["rt=tag:example.org,2020:temperature"])
    assert lookup.code == Code.CONTENT
    assert links_of(lookup) == {
        ("coap://[2001:db8:3::123]:61616/temp", (("rt", "tag:example.org,2020:temperature"),))
    }
    lookup = await send(rd, GET, "rd-lookup/res", ["rt=tag:example.org,2020:light"])
    assert hrefs(lookup) == [
        "coap://[2001:db8:3::123]:61616/light/left",
        "coap://[2001:db8:3::127]:61616/light/right",
    ]
    lookup = await send(rd, GET, "rd-lookup/res", ["if=tag:example.net,2020:actuator"])
    assert hrefs(lookup) == ["coap://[2001:db8:3::127]:61616/light/right"]
    await rd.shutdown()


async def test_endpoint_lookup_rfc9176_section_6_3():
    rd = make_rd()
    await _rfc_lookup_fixture(rd)
    lookup = await send(rd, GET, "rd-lookup/ep", ["et=tag:example.com,2020:platform"])
    links = parse(lookup.payload).links
    assert [(link.ep, link.base, link.lt, link.et) for link in links] == [
        ("node1", "coap://[2001:db8:3::123]:61616", "600", "tag:example.com,2020:platform"),
        ("node5", "coap://[2001:db8:3::127]:61616", "60", "tag:example.com,2020:platform"),
    ]
    assert all(link.href.startswith("/reg/") for link in links)
    lookup = await send(rd, GET, "rd-lookup/ep", ["d=other"])
    ((link),) = parse(lookup.payload).links
    assert (link.ep, link.d) == ("node9", "other")
    await rd.shutdown()


# --- lifetimes -------------------------------------------------------------------


async def test_expiry_on_fake_clock():
    clock = Clock()
    rd = make_rd(clock)
    await register(rd, ["ep=short", "lt=60"], b"</a>")
    await register(rd, ["ep=long", "lt=120"], b"</b>")
    await register(rd, ["ep=default"], b"</c>")
    assert rd.directory.next_deadline() == clock.now + 60

    clock.advance(59.9)
    assert len(parse((await send(rd, GET, "rd-lookup/ep")).payload)) == 3
    clock.advance(0.1)
    eps = [link.ep for link in parse((await send(rd, GET, "rd-lookup/ep")).payload)]
    assert eps == ["long", "default"]
    # what the timer does: expire and give the next deadline
    clock.advance(60)
    assert rd.directory.handle_timer(clock.now) == 1
    assert rd.directory.next_deadline() == clock.now - 120 + 90000
    clock.advance(90000)
    assert rd.directory.handle_timer(clock.now) == 1
    assert rd.directory.next_deadline() is None
    await rd.shutdown()


async def test_timer_fires_on_the_event_loop():
    """The one timer of the site: armed from the next deadline, it removes
    expired registrations without any request coming in."""
    clock = Clock()
    rd = make_rd(clock)
    await register(rd, ["ep=a", "lt=1"], b"</a>")
    await register(rd, ["ep=b", "lt=2"], b"</b>")
    assert rd.directory.index.count() == 2
    clock.advance(1)
    await asyncio.sleep(1.05)
    assert rd.directory.index.count() == 1
    await rd.shutdown()


async def test_expired_registration_can_not_be_updated():
    clock = Clock()
    rd = make_rd(clock)
    location = await register(rd, ["ep=n", "lt=10"], b"</a>")
    clock.advance(10)
    assert (await send(rd, POST, location)).code == Code.NOT_FOUND
    await rd.shutdown()


# --- base, replacement ---------------------------------------------------------------


async def test_source_address_is_default_base_and_follows_the_endpoint():
    rd = make_rd()
    location = await register(rd, ["ep=n"], b"</a>", Remote("2001:db8::1", 7000))
    assert hrefs(await send(rd, GET, "rd-lookup/res")) == ["coap://[2001:db8::1]:7000/a"]
    # an update from a new address (NAT rebinding) moves an implicit base
    await send(rd, POST, location, remote_=Remote("2001:db8::2", 7001))
    assert hrefs(await send(rd, GET, "rd-lookup/res")) == ["coap://[2001:db8::2]:7001/a"]
    # an explicit base stays where it was put
    await send(rd, POST, location, ["base=coap://example.com"], remote_=Remote("2001:db8::2", 7001))
    await send(rd, POST, location, remote_=Remote("2001:db8::3", 7002))
    assert hrefs(await send(rd, GET, "rd-lookup/res")) == ["coap://example.com/a"]
    await rd.shutdown()


async def test_ipv4_and_tcp_sources():
    rd = make_rd()
    await register(rd, ["ep=v4"], b"</a>", Remote("192.0.2.1", 5683))
    await register(rd, ["ep=tcp"], b"</a>", Remote("192.0.2.2", 40000, scheme="coap+tcp"))
    assert hrefs(await send(rd, GET, "rd-lookup/res")) == [
        "coap://192.0.2.1/a",
        "coap+tcp://192.0.2.2:40000/a",
    ]
    await rd.shutdown()


async def test_anonymous_source_needs_base():
    rd = make_rd()
    response = await send(rd, POST, "rd", ["ep=n"], b"</a>", LF, AnonymousRemote("x"))
    assert response.code == Code.BAD_REQUEST and b"base" in response.payload
    await register(rd, ["ep=n", "base=coap://[2001:db8::7]"], b"</a>", AnonymousRemote("x"))
    await rd.shutdown()


async def test_same_endpoint_replaces_registration():
    rd = make_rd()
    first = await register(rd, ["ep=n", "et=old"], b"</old>", Remote("2001:db8::1"))
    await register(rd, ["ep=other"], b"</x>")
    second = await register(rd, ["ep=n", "et=new"], b"</new>", Remote("2001:db8::2"))
    assert first == second
    eps = parse((await send(rd, GET, "rd-lookup/ep")).payload).links
    assert [(link.ep, link.get("et")) for link in eps] == [("n", "new"), ("other", None)]
    assert [h.rsplit("/", 1)[1] for h in hrefs(await send(rd, GET, "rd-lookup/res", ["ep=n"]))] == ["new"]
    # a different sector is a different endpoint
    third = await register(rd, ["ep=n", "d=elsewhere"], b"</z>")
    assert third != first
    assert rd.directory.index.count() == 3
    await rd.shutdown()


# --- paging and filtering --------------------------------------------------------------


async def test_paging():
    rd = make_rd()
    for i in range(3):
        await register(rd, [f"ep=n{i}"], ",".join(f"</r{i}-{j}>" for j in range(9)).encode())
    everything = hrefs(await send(rd, GET, "rd-lookup/res"))
    assert len(everything) == 27
    pages = [hrefs(await send(rd, GET, "rd-lookup/res", [f"page={p}", "count=10"])) for p in range(4)]
    assert [len(p) for p in pages] == [10, 10, 7, 0]
    assert sum(pages, []) == everything
    assert hrefs(await send(rd, GET, "rd-lookup/res", ["count=4"])) == everything[:4]
    assert hrefs(await send(rd, GET, "rd-lookup/res", ["count=0"])) == []
    # endpoint lookup pages the same way
    eps = [[link.ep for link in parse((await send(rd, GET, "rd-lookup/ep", [f"page={p}", "count=2"])).payload)] for p in range(2)]
    assert eps == [["n0", "n1"], ["n2"]]
    # paging after filtering
    assert hrefs(await send(rd, GET, "rd-lookup/res", ["ep=n1", "page=1", "count=5"])) == everything[14:18]
    for bad in (["page=1"], ["count=-1"], ["count=x"], ["page=0", "page=1", "count=1"], ["count"], ["count=" + "9" * 11]):
        response = await send(rd, GET, "rd-lookup/res", bad)
        assert response.code == Code.BAD_REQUEST, bad
        assert response.payload
    await rd.shutdown()


async def test_filtering():
    rd = make_rd()
    await register(
        rd,
        ["ep=sensor1", "d=floor1", "et=tag:example.com,2020:platform oven"],
        b'</temp>;rt="temperature-c celsius";if=sensor;obs,</hum>;rt=humidity;ct="0 60",'
        b'<http://example.com/doc>;anchor="/temp";rel=describedby',
        Remote("2001:db8::1", 5683),
    )
    await register(rd, ["ep=sensor2", "d=floor2"], b"</temp>;rt=temperature-f", Remote("2001:db8::2", 5683))

    async def res(*query):
        return hrefs(await send(rd, GET, "rd-lookup/res", query))

    async def ep(*query):
        return [link.ep for link in parse((await send(rd, GET, "rd-lookup/ep", query)).payload)]

    h1 = "coap://[2001:db8::1]"
    h2 = "coap://[2001:db8::2]"
    # exact, prefix, space separated values one by one
    assert await res("rt=temperature-c") == [h1 + "/temp"]
    assert await res("rt=celsius") == [h1 + "/temp"]
    assert await res("rt=celsius temperature-c") == []
    assert await res("rt=temperature-c celsius") == [h1 + "/temp"]
    assert await res("rt=temp*") == [h1 + "/temp", h2 + "/temp"]
    assert await res("rt=*") == [h1 + "/temp", h1 + "/hum", h2 + "/temp"]
    assert await res("ct=60") == [h1 + "/hum"]
    # flags
    assert await res("obs") == [h1 + "/temp"]
    assert await res("obs=*") == [h1 + "/temp"]
    # href and anchor match the resolved URIs
    assert await res(f"href={h2}/temp") == [h2 + "/temp"]
    assert await res("href=coap://[2001:db8::1]*") == [h1 + "/temp", h1 + "/hum"]
    assert await res("href=/temp") == []
    assert await res(f"anchor={h1}/temp") == ["http://example.com/doc"]
    # registration attributes select the links of their registrations
    assert await res("ep=sensor2") == [h2 + "/temp"]
    assert await res("d=floor1", "rt=humidity") == [h1 + "/hum"]
    assert await res("et=oven") == [h1 + "/temp", h1 + "/hum", "http://example.com/doc"]
    assert await res("ep=sensor*", "rt=temperature-f") == [h2 + "/temp"]
    # all criteria must hold
    assert await res("ep=sensor1", "rt=temperature-f") == []
    assert await res("nonexistent=1") == []

    assert await ep() == ["sensor1", "sensor2"]
    assert await ep("d=floor2") == ["sensor2"]
    assert await ep("et=tag:example.com,2020:platform") == ["sensor1"]
    assert await ep("ep=sensor*") == ["sensor1", "sensor2"]
    # link attributes select the endpoints that registered such a link
    assert await ep("rt=humidity") == ["sensor1"]
    assert await ep("rt=temperature-f") == ["sensor2"]
    # href in endpoint lookup is the registration resource's
    (first,) = parse((await send(rd, GET, "rd-lookup/ep", ["ep=sensor1"])).payload)
    assert await ep(f"href={first.href}") == ["sensor1"]
    assert await ep("href=/reg/*") == ["sensor1", "sensor2"]
    assert await ep(f"href={h1}/temp") == []
    # base and lt are registration attributes too
    assert await ep(f"base={h2}") == ["sensor2"]
    assert await ep("lt=90000") == ["sensor1", "sensor2"]
    await rd.shutdown()


async def test_lookup_accept_and_multicast():
    rd = make_rd()
    assert (await send(rd, GET, "rd-lookup/res", accept=50)).code == Code.NOT_ACCEPTABLE
    assert (await send(rd, GET, "rd-lookup/res", accept=LF)).code == Code.CONTENT
    response = await send(rd, GET, "rd-lookup/res", ["rt=x"], remote_=Remote("ff02::fe", multicast_locally=True))
    assert response.opt.no_response == 0x02
    assert (await send(rd, POST, "rd-lookup/res")).code == Code.METHOD_NOT_ALLOWED
    await rd.shutdown()


# --- concurrency -----------------------------------------------------------------------


async def test_concurrent_updates_of_one_registration():
    """Many updates of one registration at once: each is applied whole,
    and the registration ends in the state one of them left it in."""
    rd = make_rd()
    location = await register(rd, ["ep=n"], b"</start>")
    ep = Remote("2001:db8::1", 5683)

    async def update(i):
        return await send(rd, POST, location, [f"base=coap://host{i}", f"lt={100 + i}", f"k={i}"], f"</r{i}>;n={i}".encode(), LF, ep)

    responses = await asyncio.gather(*(update(i) for i in range(50)), send(rd, GET, "rd-lookup/res"))
    assert all(r.code == Code.CHANGED for r in responses[:-1])
    (link,) = parse((await send(rd, GET, "rd-lookup/ep")).payload)
    i = int(link.k)
    assert (link.base, link.lt) == (f"coap://host{i}", str(100 + i))
    assert hrefs(await send(rd, GET, "rd-lookup/res")) == [f"coap://host{i}/r{i}"]
    assert parse((await send(rd, GET, location)).payload).links[0].n == str(i)
    assert rd.directory.index.count() == 1
    await rd.shutdown()


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"<", b"</a>;", b"</a>,", b"</a> </b>", b'</a>;rt="x', b"</a>;=x", b"\xff\xfe", b"no link", b"</a b>"],
)
async def test_malformed_link_format_is_400_with_diagnostic(payload):
    rd = make_rd()
    response = await send(rd, POST, "rd", ["ep=n"], payload, LF)
    assert response.code == Code.BAD_REQUEST
    assert response.payload, "a diagnostic payload says what is wrong"
    assert rd.directory.index.count() == 0
    location = await register(rd, ["ep=n"], b"</good>")
    response = await send(rd, POST, location, [], payload, LF)
    assert response.code == Code.BAD_REQUEST and response.payload
    assert hrefs(await send(rd, GET, "rd-lookup/res"))[0].endswith("/good")
    await rd.shutdown()


@pytest.mark.parametrize(
    "lt", ["0", "-1", "4294967296", "99999999999999999999", "1e9", "0x10", " 5", "+5", "", "5.5", "٣"]
)
async def test_absurd_lifetimes(lt):
    rd = make_rd()
    response = await send(rd, POST, "rd", ["ep=n", f"lt={lt}"], b"</a>", LF)
    assert response.code == Code.BAD_REQUEST
    assert b"lt" in response.payload
    location = await register(rd, ["ep=n"], b"</a>")
    assert (await send(rd, POST, location, [f"lt={lt}"])).code == Code.BAD_REQUEST
    await rd.shutdown()


async def test_longest_lifetime_is_accepted():
    clock = Clock()
    rd = make_rd(clock)
    await register(rd, ["ep=n", "lt=4294967295"], b"</a>")
    await register(rd, ["ep=m", "lt=1"], b"</a>")
    assert rd.directory.next_deadline() == clock.now + 1
    clock.advance(4294967294)
    assert [link.ep for link in parse((await send(rd, GET, "rd-lookup/ep")).payload)] == ["n"]
    await rd.shutdown()


@pytest.mark.parametrize(
    "query",
    [
        [],
        ["d=x"],
        ["ep="],
        ["ep"],
        ["ep=a", "ep=b"],
        ["ep=" + "x" * 64],
        ["ep=" + "\u00e4" * 32],
        ["ep=n", "d=" + "y" * 64],
        ["ep=n", "base=/relative"],
        ["ep=n", "base=coap://x/#frag"],
        ["ep=n", "base=coap://a b"],
        ["ep=n", "base"],
        ["ep=n", "href=/x"],
        ["ep=n", "page=1"],
        ["ep=n", "bad name=1"],
        ["ep=n"] + [f"a{i}=1" for i in range(33)],
    ],
)
async def test_bad_registration_queries(query):
    rd = make_rd()
    response = await send(rd, POST, "rd", query, b"</a>", LF)
    assert response.code == Code.BAD_REQUEST, query
    assert response.payload
    await rd.shutdown()


async def test_names_at_the_length_limit():
    rd = make_rd()
    await register(rd, ["ep=" + "x" * 63, "d=" + "\u00e4" * 31], b"</a>")
    await rd.shutdown()


async def test_content_format_and_payload_size():
    rd = make_rd(limits=Limits(max_payload=100))
    response = await send(rd, POST, "rd", ["ep=n"], b"</a>", 50)
    assert response.code == Code.UNSUPPORTED_CONTENT_FORMAT
    big = b",".join(b"</%d>" % i for i in range(40))
    response = await send(rd, POST, "rd", ["ep=n"], big, LF)
    assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert response.opt.size1 == 100
    # no Content-Format is taken as link format
    await register(rd, ["ep=n"], b"</a>", content_format=None)
    await rd.shutdown()


async def test_too_many_search_criteria():
    rd = make_rd()
    response = await send(rd, GET, "rd-lookup/res", [f"a{i}=x" for i in range(17)])
    assert response.code == Code.BAD_REQUEST
    assert (await send(rd, GET, "rd-lookup/res", [f"a{i}=x" for i in range(16)])).code == Code.CONTENT
    await rd.shutdown()


async def test_caps_per_source_and_total():
    rd = make_rd(limits=Limits(max_registrations=10, max_per_source=3, retry_after=42))
    host_a = [Remote("2001:db8::a", 1000 + i) for i in range(5)]
    for i in range(3):
        await register(rd, [f"ep=a{i}"], b"</a>", host_a[i])
    # other ports of the same host count as the same source
    response = await send(rd, POST, "rd", ["ep=a3"], b"</a>", LF, host_a[3])
    assert response.code == Code.SERVICE_UNAVAILABLE
    assert response.opt.max_age == 42
    assert response.payload
    # re-registering and updating stay possible
    location = await register(rd, ["ep=a0", "et=again"], b"</b>", host_a[4])
    assert (await send(rd, POST, location, ["lt=5"], remote_=host_a[4])).code == Code.CHANGED

    for i in range(7):
        await register(rd, [f"ep=b{i}"], b"</a>", Remote(f"2001:db8::b{i}"))
    response = await send(rd, POST, "rd", ["ep=c"], b"</a>", LF, Remote("2001:db8::c"))
    assert response.code == Code.SERVICE_UNAVAILABLE
    assert rd.directory.index.count() == 10
    # taking one away makes room again
    await send(rd, DELETE, location)
    await register(rd, ["ep=c"], b"</a>", Remote("2001:db8::c"))
    await rd.shutdown()


async def test_rejections_are_summarized_at_most_once_per_interval(caplog):
    clock = Clock()
    rd = make_rd(clock, limits=Limits(summary_interval=60))
    with caplog.at_level("WARNING", logger="resource-directory"):
        for _ in range(100):
            await send(rd, POST, "rd", ["lt=0"], b"</a>", LF)
        clock.advance(61)
        await send(rd, GET, "rd-lookup/res", ["page=1"])
    summaries = [r for r in caplog.records if r.name == "resource-directory" and r.levelname == "WARNING"]
    assert len(summaries) == 2
    assert "99 bad query" in summaries[1].getMessage() or "bad lookup" in summaries[1].getMessage()
    await rd.shutdown()


@pytest.mark.parametrize(
    "path",
    ["reg/..", "reg/.", "reg/%2e%2e", "reg//x", "reg/x/y", "reg/" + "z" * 300, "rd/x", "rd-lookup", "rd-lookup/res/x"],
)
async def test_path_tricks_find_nothing(path):
    rd = make_rd()
    location = await register(rd, ["ep=n"], b"</a>")
    for method in (GET, POST, DELETE):
        response = await send(rd, method, path)
        assert response.code in (Code.NOT_FOUND, Code.METHOD_NOT_ALLOWED), (method, path, response)
    # a path segment is a name, never a path: "/reg/x/y" does not reach "/reg/y"
    name = location.rsplit("/", 1)[1]
    assert (await send(rd, GET, f"reg/x/{name}")).code == Code.NOT_FOUND
    assert (await send(rd, GET, location)).code == Code.CONTENT
    await rd.shutdown()
