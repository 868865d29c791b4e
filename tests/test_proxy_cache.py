"""The I/O-free response cache of the proxy, on a fake clock (the ``now``
arguments), plus a property test of its bounds."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiocoap.message import Message, UndecidedRemote
from aiocoap.numbers.codes import Code
from aiocoap.proxy.cache import (
    DEFAULT_MAX_AGE,
    ENTRY_OVERHEAD,
    ResponseCache,
    cache_key,
    is_cacheable_response,
    resource_of,
)

TARGET = UndecidedRemote("coap", "198.51.100.1")


def request(path="r", code=Code.GET, **options):
    return Message(code=code, uri_path=[path], **options)


def key_and_resource(message, target=TARGET):
    return cache_key(message, target), resource_of(message, target)


def store(cache, message, response, now):
    key, res = key_and_resource(message)
    return cache.store(key, res, response, now)


def test_key_ignores_nocachekey_and_handled_options():
    base = cache_key(request(), TARGET)
    assert cache_key(request(size1=5), TARGET) == base
    assert cache_key(request(hop_limit=3, observe=0, etag=b"x"), TARGET) == base
    assert cache_key(request(accept=50), TARGET) != base
    assert cache_key(request(uri_query=["a"]), TARGET) != base
    assert cache_key(request(), UndecidedRemote("coap+tcp", "198.51.100.1")) != base
    fetch_a = cache_key(request(code=Code.FETCH, payload=b"a"), TARGET)
    assert fetch_a != cache_key(request(code=Code.FETCH, payload=b"b"), TARGET)
    for method in (Code.POST, Code.PUT, Code.DELETE):
        assert cache_key(request(code=method), TARGET) is None


@pytest.mark.parametrize(
    "response, cacheable",
    [
        (Message(code=Code.CONTENT), True),
        (Message(code=Code.CONTENT, max_age=0), False),
        (Message(code=Code.NOT_FOUND), True),
        (Message(code=Code.SERVICE_UNAVAILABLE), True),
        (Message(code=Code.CHANGED), False),
        (Message(code=Code.CREATED), False),
        (Message(code=Code.VALID), False),
    ],
)
def test_cacheable_codes(response, cacheable):
    assert is_cacheable_response(response) is cacheable


def test_freshness_follows_max_age():
    cache = ResponseCache()
    store(cache, request(), Message(code=Code.CONTENT, payload=b"x", max_age=10), now=100.0)
    key, _ = key_and_resource(request())
    entry = cache.lookup(key, 105.0)
    assert entry.is_fresh(105.0)
    served = entry.served(105.0)
    assert served.payload == b"x" and served.opt.max_age == 5
    # Stale and without ETag: dropped.
    assert cache.lookup(key, 110.0) is None
    assert len(cache) == 0
    assert cache.statistics.hits == 1 and cache.statistics.misses == 1


def test_default_max_age():
    cache = ResponseCache()
    entry = store(cache, request(), Message(code=Code.CONTENT), now=0.0)
    assert entry.expires == DEFAULT_MAX_AGE


def test_stale_with_etag_is_revalidated_by_2_03():
    cache = ResponseCache()
    store(cache, request(), Message(code=Code.CONTENT, payload=b"x", etag=b"e1", max_age=10), now=0.0)
    key, _ = key_and_resource(request())
    entry = cache.lookup(key, 20.0)
    assert entry is not None and not entry.is_fresh(20.0)
    assert cache.statistics.stale == 1
    # A 2.03 for another ETag changes nothing.
    assert cache.refresh(key, Message(code=Code.VALID, etag=b"e2"), 20.0) is None
    refreshed = cache.refresh(key, Message(code=Code.VALID, etag=b"e1", max_age=30), 20.0)
    assert refreshed is entry and entry.is_fresh(49.0) and not entry.is_fresh(50.0)
    assert entry.served(20.0).opt.max_age == 30
    assert cache.statistics.revalidations == 1


def test_store_replaces_and_uncacheable_removes():
    cache = ResponseCache()
    store(cache, request(), Message(code=Code.CONTENT, payload=b"1"), 0.0)
    store(cache, request(), Message(code=Code.CONTENT, payload=b"2"), 0.0)
    assert len(cache) == 1
    key, _ = key_and_resource(request())
    assert cache.lookup(key, 1.0).response.payload == b"2"
    assert store(cache, request(), Message(code=Code.CONTENT, max_age=0), 1.0) is None
    assert len(cache) == 0 and cache.size_bytes == 0


def test_observe_option_not_stored():
    cache = ResponseCache()
    entry = store(cache, request(), Message(code=Code.CONTENT, observe=5), 0.0)
    assert entry.response.opt.observe is None


def test_invalidate_removes_every_entry_of_the_resource():
    cache = ResponseCache()
    store(cache, request(), Message(code=Code.CONTENT), 0.0)
    store(cache, request(accept=0), Message(code=Code.CONTENT), 0.0)
    store(cache, request(code=Code.FETCH, payload=b"q"), Message(code=Code.CONTENT), 0.0)
    store(cache, request("other"), Message(code=Code.CONTENT), 0.0)
    _, resource = key_and_resource(request(code=Code.PUT))
    assert cache.invalidate(resource) == 3
    assert len(cache) == 1
    assert cache.invalidate(resource) == 0
    assert cache.statistics.invalidations == 3


def test_lru_entry_bound():
    cache = ResponseCache(max_entries=3)
    for i in range(3):
        store(cache, request(str(i)), Message(code=Code.CONTENT), 0.0)
    cache.lookup(cache_key(request("0"), TARGET), 1.0)  # 0 is now the most recent
    store(cache, request("3"), Message(code=Code.CONTENT), 1.0)
    assert cache.lookup(cache_key(request("1"), TARGET), 1.0) is None
    assert cache.lookup(cache_key(request("0"), TARGET), 1.0) is not None
    assert len(cache) == 3 and cache.statistics.evictions == 1


def test_byte_bound_and_oversized_response():
    cache = ResponseCache(max_bytes=3 * (ENTRY_OVERHEAD + 200))
    for i in range(10):
        store(cache, request(str(i)), Message(code=Code.CONTENT, payload=bytes(100)), 0.0)
    assert cache.size_bytes <= cache.max_bytes
    assert len(cache) == 3
    assert store(cache, request("huge"), Message(code=Code.CONTENT, payload=bytes(10_000)), 0.0) is None
    assert len(cache) == 3


def test_constructor_rejects_empty_bounds():
    with pytest.raises(ValueError):
        ResponseCache(max_entries=0)


operations = st.lists(
    st.tuples(
        st.sampled_from(["store", "lookup", "invalidate", "refresh"]),
        st.integers(0, 30),  # resource
        st.integers(0, 2000),  # payload size
        st.floats(0, 5),  # time step
        st.sampled_from([None, 0, 1, 60]),  # Max-Age
    ),
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(operations, st.integers(1, 10), st.integers(300, 20_000))
def test_bounds_hold_under_any_sequence(ops, max_entries, max_bytes):
    cache = ResponseCache(max_entries=max_entries, max_bytes=max_bytes)
    now = 0.0
    for op, n, size, step, max_age in ops:
        now += step
        message = request(str(n))
        key, resource = key_and_resource(message)
        if op == "store":
            cache.store(key, resource, Message(code=Code.CONTENT, payload=bytes(size), max_age=max_age, etag=b"%d" % n), now)
        elif op == "lookup":
            entry = cache.lookup(key, now)
            assert entry is None or entry.is_fresh(now) or entry.etag is not None
        elif op == "invalidate":
            cache.invalidate(resource)
            assert cache.lookup(key, now) is None
        else:
            cache.refresh(key, Message(code=Code.VALID, etag=b"%d" % n, max_age=max_age), now)
        assert len(cache) <= max_entries
        assert cache.size_bytes <= max_bytes
        assert cache.size_bytes == sum(e.size for e in cache._entries.values())
        assert sum(len(keys) for keys in cache._by_resource.values()) == len(cache)
