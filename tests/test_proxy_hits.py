"""The cache-hit path of the proxy resources, driven directly (no sockets):
a fresh hit is answered without building an upstream request, yet with the
same rules, Hop-Limit refusal, No-Response and statistics as before; plus
the pieces it is made of (:func:`request_signature`,
:meth:`ResponseCache.fresh`, the ready response of a cache entry) on a fake
clock."""

import asyncio

from aiocoap.message import Message, UndecidedRemote
from aiocoap.numbers.codes import Code
from aiocoap.proxy.cache import ResponseCache, cache_key, request_signature, resource_of
from aiocoap.proxy.server import ForwardProxy, NameBasedVirtualHost, Proxy, SubresourceVirtualHost, UnconditionalRedirector

CLIENT = UndecidedRemote("coap", "192.0.2.7:5683")
TARGET = UndecidedRemote("coap", "198.51.100.1")


class _Exchange:
    """What a client context's ``request`` returns, already answered."""

    def __init__(self, response: Message) -> None:
        self.response = asyncio.get_running_loop().create_future()
        self.response.set_result(response)
        self.observation = None


class FakeUpstream:
    """An outgoing context that answers every request at once with
    ``Message(payload=b"n=<count>", **options)`` and keeps the requests."""

    def __init__(self, **options) -> None:
        self.requests: list = []
        self.options = options

    def request(self, message, handle_blockwise=True):
        self.requests.append(message)
        return _Exchange(Message(code=Code.CONTENT, payload=b"n=%d" % len(self.requests), **self.options))


class CountingRule(UnconditionalRedirector):
    """An unconditional rule that counts how often it is asked."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.asked = 0

    def apply_redirection(self, request):
        self.asked += 1
        return super().apply_redirection(request)


def get(path="r", **options) -> Message:
    """A GET as a server context hands it to its site."""
    message = Message(code=Code.GET, uri_path=[path], **options)
    message.remote = CLIENT
    return message


async def test_fresh_hit_builds_no_upstream_request():
    upstream = FakeUpstream(max_age=60)
    proxy = Proxy(upstream)
    rule = CountingRule("198.51.100.1")
    proxy.add_redirector(rule)
    for _ in range(10):
        response = await proxy.render(get())
        assert (response.code, response.payload) == (Code.CONTENT, b"n=1")
        assert 59 <= response.opt.max_age <= 60
    # The rule decided once: the hits did not prepare an upstream request.
    assert rule.asked == 1
    assert len(upstream.requests) == 1
    stats = proxy.statistics
    assert (stats["cache_served"], stats["forwarded"]) == (9, 1)
    assert (stats["cache"]["hits"], stats["cache"]["misses"], stats["cache"]["stores"]) == (9, 1, 1)


async def test_hits_are_independent_copies_with_rule_and_no_response_applied():
    upstream = FakeUpstream(max_age=60, location_path=["x"])
    proxy = Proxy(upstream)
    proxy.add_redirector(SubresourceVirtualHost(["p"], "198.51.100.1"))
    first = await proxy.render(get("p", no_response=26))
    assert first.opt.location_path == ("p", "x")
    for _ in range(3):
        response = await proxy.render(get("p", no_response=26))
        # The rule adjusted this copy only: the prefix is not added twice.
        assert response.opt.location_path == ("p", "x")
        assert response.opt.no_response == 26
        response.opt.max_age = 1  # (what the server context may do to it)
    response = await proxy.render(get("p"))
    assert response.opt.no_response is None
    assert response.opt.max_age > 1
    assert len(upstream.requests) == 1
    # No-Response never went upstream either.
    assert upstream.requests[0].opt.no_response is None


async def test_hop_limit_one_is_refused_even_when_cached():
    upstream = FakeUpstream(max_age=60)
    proxy = Proxy(upstream)
    proxy.add_redirector(UnconditionalRedirector("198.51.100.1"))
    await proxy.render(get())
    response = await proxy.render(get(hop_limit=1))
    assert response.code == Code.HOP_LIMIT_REACHED
    assert proxy.statistics["hop_limit_reached"] == 1
    response = await proxy.render(get(hop_limit=5))
    assert (response.code, response.payload) == (Code.CONTENT, b"n=1")
    assert len(upstream.requests) == 1


async def test_etag_of_the_client_gets_2_03_on_a_hit():
    upstream = FakeUpstream(max_age=60, etag=b"t1")
    proxy = Proxy(upstream)
    proxy.add_redirector(UnconditionalRedirector("198.51.100.1"))
    await proxy.render(get())
    response = await proxy.render(get(etags=[b"t0", b"t1"]))
    assert (response.code, response.opt.etag, response.payload) == (Code.VALID, b"t1", b"")
    assert 59 <= response.opt.max_age <= 60
    response = await proxy.render(get(etag=b"t0"))
    assert (response.code, response.payload) == (Code.CONTENT, b"n=1")
    assert len(upstream.requests) == 1


async def test_rule_added_later_applies_to_requests_seen_before():
    upstream = FakeUpstream(max_age=60)
    proxy = ForwardProxy(upstream)
    request = lambda: get(proxy_uri="coap://a.example/x")  # noqa: E731
    await proxy.render(request())
    await proxy.render(request())
    assert [m.remote.hostinfo for m in upstream.requests] == ["a.example"]
    # The new rule knows better where a.example is: a different upstream
    # request, hence a different cache entry.
    proxy.add_redirector(NameBasedVirtualHost("a.example", "b.example"))
    response = await proxy.render(request())
    assert response.payload == b"n=2"
    assert [m.remote.hostinfo for m in upstream.requests] == ["a.example", "b.example"]


async def test_remembered_signatures_stay_within_the_cache_size():
    upstream = FakeUpstream(max_age=60)
    proxy = Proxy(upstream, cache=ResponseCache(max_entries=8))
    proxy.add_redirector(UnconditionalRedirector("198.51.100.1"))
    for i in range(50):
        await proxy.render(get(str(i)))
        assert len(proxy._signatures) <= 8
    # Forgetting costs a slow hit, not a wrong answer.
    response = await proxy.render(get("49"))
    assert response.payload == b"n=50"
    assert len(upstream.requests) == 50


async def test_unsafe_request_ends_fast_hits():
    upstream = FakeUpstream(max_age=60)
    proxy = Proxy(upstream)
    proxy.add_redirector(UnconditionalRedirector("198.51.100.1"))
    await proxy.render(get())
    upstream.options = {}
    put = get()
    put.code = Code.PUT
    await proxy.render(put)
    upstream.options = {"max_age": 60}
    response = await proxy.render(get())
    assert response.payload == b"n=3"
    assert proxy.statistics["cache"]["invalidations"] == 1


def test_signature_leaves_out_what_the_cache_key_does():
    base = request_signature(get(), "coap")
    assert base is not None
    same = [get(hop_limit=3), get(etag=b"x"), get(observe=0), get(no_response=26), get(size1=10)]
    for message in same:
        assert request_signature(message, "coap") == base
    different = [get("s"), get(accept=50), get(uri_query=["q"]), get(proxy_scheme="coap")]
    for message in different:
        assert request_signature(message, "coap") != base
    assert request_signature(get(), "coap+tcp") != base
    with_payload = get()
    with_payload.payload = b"p"
    assert request_signature(with_payload, "coap") != base
    ordered = Message(code=Code.GET, uri_path=["a", "b"])
    assert request_signature(ordered, "coap") != request_signature(Message(code=Code.GET, uri_path=["b", "a"]), "coap")
    hash(base)
    assert request_signature(Message(code=Code.POST), "coap") is None


def _stored(cache, now, **options):
    request = Message(code=Code.GET, uri_path=["r"])
    key = cache_key(request, TARGET)
    cache.store(key, resource_of(request, TARGET), Message(code=Code.CONTENT, payload=b"x", **options), now)
    return key


def test_fresh_counts_hits_only():
    cache = ResponseCache()
    key = _stored(cache, 100.0, max_age=10, etag=b"e")
    assert cache.fresh(key, 105.0) is not None
    assert cache.statistics.hits == 1
    # Stale or absent: nothing counted, lookup counts it once.
    assert cache.fresh(key, 110.0) is None
    assert cache.fresh(("no", "such"), 105.0) is None
    assert (cache.statistics.hits, cache.statistics.misses, cache.statistics.stale) == (1, 0, 0)
    assert cache.lookup(key, 110.0) is not None
    assert (cache.statistics.hits, cache.statistics.misses, cache.statistics.stale) == (1, 0, 1)


def test_fresh_marks_recently_used():
    cache = ResponseCache(max_entries=2)
    first = _stored(cache, 0.0, max_age=60)
    request = Message(code=Code.GET, uri_path=["s"])
    cache.store(cache_key(request, TARGET), resource_of(request, TARGET), Message(code=Code.CONTENT), 0.0)
    cache.fresh(first, 1.0)
    request = Message(code=Code.GET, uri_path=["t"])
    cache.store(cache_key(request, TARGET), resource_of(request, TARGET), Message(code=Code.CONTENT), 2.0)
    assert cache.fresh(first, 3.0) is not None


def test_served_max_age_counts_down_across_the_ready_response():
    cache = ResponseCache()
    key = _stored(cache, 100.0, max_age=30, content_format=0)
    entry = cache.lookup(key, 100.0)
    ages = [entry.served(now).opt.max_age for now in (100.0, 100.2, 100.99, 101.0, 115.5, 129.99)]
    assert ages == [30, 29, 29, 29, 14, 0]
    one = entry.served(101.0)
    two = entry.served(101.0)
    assert one is not two and one.opt is not two.opt
    one.opt.max_age = 5
    one.opt.observe = 3
    one.payload = b"changed"
    assert two.opt.max_age == 29 and two.opt.observe is None
    assert entry.served(101.0).payload == b"x"
    assert entry.served(101.0).opt.content_format == 0
    # The stored response keeps the origin's Max-Age.
    assert entry.response.opt.max_age == 30


def test_refresh_renews_the_ready_response():
    cache = ResponseCache()
    key = _stored(cache, 0.0, max_age=10, etag=b"e")
    entry = cache.lookup(key, 0.0)
    assert entry.served(5.0).opt.max_age == 5
    cache.refresh(key, Message(code=Code.VALID, etag=b"e", max_age=5), 5.0)
    # Same remaining seconds as before, but from the refreshed entry.
    served = entry.served(5.0)
    assert served.opt.max_age == 5
    assert served.opt.etag == b"e"
    assert entry.served(6.5).opt.max_age == 3
