"""The response cache of the proxy (RFC 7252 §5.6 and §5.9), without I/O.

:class:`ResponseCache` stores upstream responses under a cache key and
answers lookups; the time is always an argument (``now``, a monotonic
clock reading in seconds), so the rules are tested on a fake clock. The
proxy resources in :mod:`aiocoap.proxy.server` drive it.

Rules it enforces:

* Keys come from :func:`cache_key`: the target (scheme and host) and
  :meth:`aiocoap.message.Message.get_cache_key` of the upstream request, so
  NoCacheKey options (Size1) never split entries. Options the proxy handles
  itself (Hop-Limit, Observe, ETag, which the cache validates) are left out
  as well; a FETCH request's payload is part of the key (RFC 8132 §2).
  :func:`request_signature` is the cheaper identity of a request as it
  reaches the proxy (before any rule rewrote it); the proxy remembers which
  cache key each signature led to, so a fresh hit needs no upstream request
  built at all.
* Cacheable are the responses to GET and FETCH with the codes RFC 7252
  calls cacheable: 2.05 Content and every 4.xx and 5.xx. A response is
  fresh for its Max-Age (60 seconds if absent); Max-Age 0 is not stored.
* A stale entry that has an ETag is kept for revalidation: the proxy asks
  upstream with that ETag, and a 2.03 Valid makes it fresh again for the
  2.03's Max-Age (:meth:`ResponseCache.refresh`). A stale entry without an
  ETag is dropped when it is looked up.
* A successful response to an unsafe method (POST, PUT, DELETE, PATCH,
  iPATCH) removes every entry of its resource
  (:meth:`ResponseCache.invalidate`), whatever its method and options.
* Bounds: at most ``max_entries`` entries and ``max_bytes`` bytes (payload,
  options and key, plus :data:`ENTRY_OVERHEAD` each); storing past either
  evicts the least recently used entries first. A response larger than the
  whole byte budget is not stored.
* :attr:`ResponseCache.statistics` counts hits, misses, revalidations,
  stores, evictions and invalidations for the operator.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, Hashable, Optional

from ..message import Message
from ..numbers.codes import Code
from ..numbers.optionnumbers import OptionNumber

__all__ = [
    "ResponseCache", "CacheEntry", "CacheStatistics", "cache_key", "resource_of", "request_signature",
    "DEFAULT_MAX_AGE", "DEFAULT_MAX_ENTRIES", "DEFAULT_MAX_BYTES", "ENTRY_OVERHEAD",
    "CACHEABLE_METHODS", "UNSAFE_METHODS",
]

DEFAULT_MAX_AGE = 60
"""Freshness of a response without Max-Age option (RFC 7252 §5.10.5)."""

DEFAULT_MAX_ENTRIES = 1000
"""Default bound on the number of cached responses."""

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
"""Default bound on the bytes of all cached responses together."""

ENTRY_OVERHEAD = 256
"""Bytes charged per entry on top of its payload, options and key, for the
bookkeeping objects (an estimate, so that many tiny entries count too)."""

CACHEABLE_METHODS = frozenset((Code.GET, Code.FETCH))
"""Request methods whose responses are stored."""

UNSAFE_METHODS = frozenset((Code.POST, Code.PUT, Code.DELETE, Code.PATCH, Code.iPATCH))
"""Request methods whose success invalidates the cached responses of their
resource."""

#: Options the proxy processes itself: not part of the cache key.
_HANDLED_OPTIONS = (OptionNumber.HOP_LIMIT, OptionNumber.OBSERVE, OptionNumber.ETAG)

#: Options a request signature leaves out: those the proxy handles itself,
#: No-Response, which it does not forward, and the one registered NoCacheKey
#: option (see request_signature for the others).
_SIGNATURE_SKIPPED = frozenset(int(o) for o in (*_HANDLED_OPTIONS, OptionNumber.NO_RESPONSE, OptionNumber.SIZE1))

#: Options that identify the resource (invalidation works on these).
_RESOURCE_OPTIONS = frozenset(
    int(o) for o in (OptionNumber.URI_HOST, OptionNumber.URI_PORT, OptionNumber.URI_PATH, OptionNumber.URI_QUERY)
)


def resource_of(request: Message, target: Any) -> tuple:
    """The identity of the resource a request addresses: its target
    (scheme and hostinfo, e.g. an :class:`~aiocoap.message.UndecidedRemote`)
    and the Uri-* options. Entries are invalidated per resource."""
    opt = request.opt
    return (tuple(target), opt.uri_host, opt.uri_port, opt.uri_path, opt.uri_query)


def cache_key(request: Message, target: Any) -> Optional[tuple]:
    """The cache key of an upstream ``request`` to ``target`` (scheme and
    hostinfo), or None if its responses are not cached (the method is not
    GET or FETCH).

    >>> from aiocoap.message import UndecidedRemote
    >>> target = UndecidedRemote("coap", "[::1]:1234")
    >>> a = Message(code=Code.GET, uri_path=["t"], hop_limit=3, size1=10)
    >>> b = Message(code=Code.GET, uri_path=["t"], hop_limit=15)
    >>> cache_key(a, target) == cache_key(b, target)
    True
    >>> cache_key(Message(code=Code.PUT), target) is None
    True
    """
    code = request.code
    if code not in CACHEABLE_METHODS:
        return None
    if code == Code.FETCH:
        return (tuple(target), request.get_cache_key(_HANDLED_OPTIONS), request.payload)
    return (tuple(target), request.get_cache_key(_HANDLED_OPTIONS))


def request_signature(request: Message, scheme: str) -> Optional[tuple]:
    """What identifies the response a ``request`` (as it reached the proxy
    over ``scheme``) asks for, before the proxy's rules turn it into an
    upstream request; None if its responses are not cached (as for
    :func:`cache_key`).

    It is made of the method, the payload and the option values as they
    were decoded (:meth:`~aiocoap.options.Options.values_except`, in the
    order they came), so it costs no option encoding and no sorting; Hop-Limit, Observe, ETag,
    No-Response and Size1 are left out. Two requests with the same
    signature become the same upstream request, as long as the proxy's rules
    decide by what the signature holds. (NoCacheKey options other than
    Size1 stay in: they only make it finer than the cache key, which costs
    a hit its shortcut, never its answer, and saves checking every number.)

    >>> a = Message(code=Code.GET, uri_path=["t"], proxy_scheme="coap", uri_host="h", hop_limit=3)
    >>> b = Message(code=Code.GET, uri_path=["t"], proxy_scheme="coap", uri_host="h", size1=10)
    >>> request_signature(a, "coap") == request_signature(b, "coap")
    True
    >>> request_signature(a, "coap") == request_signature(a, "coap+tcp")
    False
    >>> request_signature(Message(code=Code.POST), "coap") is None
    True
    """
    code = request.code
    if code not in CACHEABLE_METHODS:
        return None
    return (scheme, code, request.opt.values_except(_SIGNATURE_SKIPPED), request.payload)


def _key_size(key: Any) -> int:
    """A rough byte count of a key as built by :func:`cache_key`."""
    (scheme, hostinfo), (_code, options), *payload = key
    return len(scheme) + len(hostinfo) + sum(len(value) + 4 for _, value in options) + sum(map(len, payload))


def _response_size(response: Message) -> int:
    return len(response.payload) + sum(len(o.encode()) + 4 for o in response.opt.option_list())


def is_cacheable_response(response: Message) -> bool:
    """Whether RFC 7252 lets a cache store ``response`` (2.05, 4.xx, 5.xx;
    not with Max-Age 0)."""
    code = response.code
    if code != Code.CONTENT and not (code is not None and code >= 128):
        return False
    return response.opt.max_age != 0


@dataclasses.dataclass
class CacheEntry:
    """One stored response.

    ``response`` is the stored message (no token, message ID or remote);
    ``expires`` the ``now`` value at which it stops being fresh."""

    key: Hashable
    resource: tuple
    response: Message
    expires: float
    size: int
    _ready: Optional[Message] = dataclasses.field(default=None, repr=False, compare=False)
    """The response as last served (with the Max-Age it had then)."""

    @property
    def etag(self) -> Optional[bytes]:
        return self.response.opt.etag

    def is_fresh(self, now: float) -> bool:
        return now < self.expires

    def served(self, now: float) -> Message:
        """A copy of the stored response to send to a client: its Max-Age
        is what remains of the freshness (RFC 7252 §5.6.1).

        The copies are made from a response kept ready with the Max-Age of
        the previous one, which is made anew only once a second (when the
        remaining freshness changes) or after :meth:`ResponseCache.refresh`."""
        remaining = max(0, int(self.expires - now))
        ready = self._ready
        if ready is None or ready.opt.max_age != remaining:
            ready = self.response.copy()
            ready.opt.max_age = remaining
            self._ready = ready
        served = Message(payload=ready.payload)
        served.code = ready.code
        # (shallow: the views replace value lists, never change them, so
        # what a client's copy gets done to leaves the ready one alone)
        served.opt = ready.opt.copy_shallow()
        return served


@dataclasses.dataclass
class CacheStatistics:
    """Counters of a :class:`ResponseCache` since its creation."""

    hits: int = 0
    """Lookups answered from a fresh entry."""
    misses: int = 0
    """Lookups that found no usable entry."""
    stale: int = 0
    """Lookups that found a stale entry with an ETag to revalidate."""
    revalidations: int = 0
    """Stale entries made fresh again by a 2.03 Valid."""
    stores: int = 0
    """Responses stored."""
    evictions: int = 0
    """Entries removed to stay within the bounds."""
    invalidations: int = 0
    """Entries removed by an unsafe request to their resource."""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class ResponseCache:
    """A bounded LRU store of upstream responses (see the module
    description for the rules).

    Call :meth:`lookup` before asking upstream, :meth:`store` with the
    response of a cacheable request, :meth:`refresh` with a 2.03 Valid that
    answered a revalidation, and :meth:`invalidate` after a successful
    unsafe request."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("A cache needs room for at least one entry (use no cache instead)")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.statistics = CacheStatistics()
        self._entries: OrderedDict[Hashable, CacheEntry] = OrderedDict()
        self._by_resource: dict[tuple, set] = {}
        self._bytes = 0

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__}: {len(self._entries)}/{self.max_entries} entries, "
            f"{self._bytes}/{self.max_bytes} bytes, {self.statistics}>"
        )

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes charged for all entries together (at most ``max_bytes``)."""
        return self._bytes

    def fresh(self, key: Hashable, now: float) -> Optional[CacheEntry]:
        """The entry for ``key`` if it is fresh (counted as a hit and marked
        recently used), else None, counting nothing: the caller goes on with
        :meth:`lookup`, which counts the miss or the stale entry."""
        entry = self._entries.get(key)
        if entry is None or now >= entry.expires:
            return None
        self._entries.move_to_end(key)
        self.statistics.hits += 1
        return entry

    def lookup(self, key: Hashable, now: float) -> Optional[CacheEntry]:
        """The entry for ``key``: fresh (serve it), stale with an ETag
        (revalidate it), or None (ask upstream). Marks it recently used."""
        entry = self._entries.get(key)
        if entry is None:
            self.statistics.misses += 1
            return None
        if now < entry.expires:
            self._entries.move_to_end(key)
            self.statistics.hits += 1
            return entry
        if entry.etag is None:
            self._remove(entry)
            self.statistics.misses += 1
            return None
        self._entries.move_to_end(key)
        self.statistics.stale += 1
        return entry

    def store(self, key: Hashable, resource: tuple, response: Message, now: float) -> Optional[CacheEntry]:
        """Store ``response`` (to a request with cache key ``key`` on
        ``resource``), replacing what was stored under the key; returns the
        entry, or None if the response is not cacheable (then nothing stays
        stored under the key)."""
        old = self._entries.get(key)
        if old is not None:
            self._remove(old)
        if not is_cacheable_response(response):
            return None
        stored = Message(code=response.code, payload=response.payload)
        stored.opt = response.opt.copy()
        stored.opt.observe = None
        max_age = stored.opt.max_age
        size = _response_size(stored) + _key_size(key) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return None
        entry = CacheEntry(key, resource, stored, now + (DEFAULT_MAX_AGE if max_age is None else max_age), size)
        self._entries[key] = entry
        self._by_resource.setdefault(resource, set()).add(key)
        self._bytes += size
        self.statistics.stores += 1
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, oldest = next(iter(self._entries.items()))
            self._remove(oldest)
            self.statistics.evictions += 1
        return entry

    def refresh(self, key: Hashable, valid: Message, now: float) -> Optional[CacheEntry]:
        """Apply a 2.03 Valid response (``valid``) to the entry under
        ``key``: if its ETag is the entry's, the entry is fresh again for
        the 2.03's Max-Age (RFC 7252 §5.9.1.3) and is returned; otherwise
        nothing changes and None is returned."""
        entry = self._entries.get(key)
        if entry is None or valid.code != Code.VALID or valid.opt.etag != entry.etag:
            return None
        max_age = valid.opt.max_age
        if max_age is not None:
            entry.response.opt.max_age = max_age
        entry._ready = None
        entry.expires = now + (DEFAULT_MAX_AGE if max_age is None else max_age)
        self._entries.move_to_end(key)
        self.statistics.revalidations += 1
        return entry

    def invalidate(self, resource: tuple) -> int:
        """Remove every entry of ``resource``; returns how many there were."""
        keys = self._by_resource.get(resource)
        if not keys:
            return 0
        count = 0
        for key in list(keys):
            entry = self._entries.get(key)
            if entry is not None:
                self._remove(entry)
                count += 1
        self.statistics.invalidations += count
        return count

    def clear(self) -> None:
        """Remove every entry (the statistics stay)."""
        self._entries.clear()
        self._by_resource.clear()
        self._bytes = 0

    def _remove(self, entry: CacheEntry) -> None:
        del self._entries[entry.key]
        self._bytes -= entry.size
        keys = self._by_resource.get(entry.resource)
        if keys is not None:
            keys.discard(entry.key)
            if not keys:
                del self._by_resource[entry.resource]
