"""The rules of a CoRE Resource Directory (RFC 9176), without I/O.

:class:`Directory` validates and carries out registrations, updates,
removals and lookups; it answers from an in-memory
:class:`.index.SearchIndex` and writes every change through to a
:class:`.storage.Storage`. It never reads a clock and never sends anything:
every operation takes ``now`` (wall-clock seconds, because expiry times
are stored as absolute times and must keep counting across restarts), and
the one timer of the program that drives it is armed from
:meth:`Directory.next_deadline` and ends in :meth:`Directory.handle_timer`
-- in the shape of :class:`aiocoap.messagemanager.MessageLayer`. Expiry
costs no timer per registration: the index keeps the expiry times in a
heap, and every operation first removes what expired before it, so
nothing expired is ever served even if the timer runs late.

Failures are raised as :class:`aiocoap.error.RenderableError` subclasses
(the response the server sends), with a diagnostic payload that says what
was wrong.

Limits (:class:`Limits`), each with what happens when it is reached:

* ``max_registrations`` in total and ``max_per_source`` per source host: a
  new registration beyond them gets 5.03 Service Unavailable with Max-Age
  ``retry_after`` (re-registering an endpoint that is registered, and
  updates, are always allowed);
* ``max_payload`` bytes of link format per registration or update: 4.13
  Request Entity Too Large with Size1;
* ``max_attributes`` registration attributes beyond ep, d, lt and base,
  and ``max_filters`` search criteria per lookup: 4.00 Bad Request;
* endpoint and sector names longer than 63 bytes (RFC 9176 §5), lifetimes
  outside 1 ... 2**32-1 seconds: 4.00 Bad Request.

Logging: rejected requests are logged at DEBUG level one by one; a summary
of what was rejected is offered by :meth:`Directory.rejection_summary` at
most once per ``summary_interval`` for the program to log at a higher level,
so that no peer can flood the log.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import logging
import re
import secrets
from typing import Callable, Iterable, Optional, Sequence

from .. import error
from ..message import Message
from ..numbers.codes import Code
from ..numbers.contentformat import ContentFormat
from ..util.linkformat import LinkFormat, parse
from . import _uri
from .index import SearchIndex
from .model import (
    Entry,
    Filter,
    Registration,
    endpoint_link,
    index_links,
    registration_terms,
)
from .storage import Storage

__all__ = [
    "Directory",
    "Limits",
    "Source",
    "ServiceUnavailable",
    "PayloadTooLarge",
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "MAX_NAME_BYTES",
]

DEFAULT_LIFETIME = 90000
"""Lifetime of a registration that gives no ``lt`` (RFC 9176 §5: 25 hours)."""
MAX_LIFETIME = 0xFFFFFFFF
"""Longest lifetime RFC 9176 allows (seconds)."""
MAX_NAME_BYTES = 63
"""Longest endpoint or sector name (RFC 9176 §5), in bytes of UTF-8."""

_PARAMETERS = frozenset({"ep", "d", "lt", "base"})
_RESERVED = frozenset({"href", "anchor"})
_NAME_CHARS = re.compile(r"[A-Za-z0-9!#$&+\-.^_`|~*]+\Z")
_DIGITS = re.compile(r"[0-9]{1,10}\Z")
_BAD_URI_CHARS = re.compile(r'[\x00-\x20\x7f<>"{}|\\^`]')


@dataclasses.dataclass(frozen=True)
class Limits:
    """The caps a directory enforces (see the module description for what
    happens when one is reached)."""

    max_registrations: int = 100_000
    max_per_source: int = 1_000
    max_payload: int = 16_384
    max_attributes: int = 32
    max_filters: int = 16
    retry_after: int = 60
    """Max-Age (seconds) of the 5.03 responses to registrations beyond a cap"""
    summary_interval: float = 60.0
    """Seconds between two summaries of rejected requests"""


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a request came from: ``host`` is what the per-source limit
    counts (the address without port), ``base`` the endpoint's URI as the
    directory sees it (``coap://[2001:db8::1]:61616``), which is the
    default base of its registration, or None where it has none (the
    endpoint must then give ``base``)."""

    host: str
    base: Optional[str]


class ServiceUnavailable(error.ConstructionRenderableError):
    """5.03 with a Max-Age telling when to try again"""

    code = Code.SERVICE_UNAVAILABLE

    def __init__(self, message: str, max_age: int):
        super().__init__(message)
        self.max_age = max_age

    def to_message(self) -> Message:
        response = super().to_message()
        response.opt.max_age = self.max_age
        return response


class PayloadTooLarge(error.RequestEntityTooLarge):
    """4.13 with Size1 telling the largest payload accepted"""

    def __init__(self, message: str, size1: int):
        super().__init__(message)
        self.size1 = size1

    def to_message(self) -> Message:
        response = super().to_message()
        response.opt.size1 = self.size1
        return response


@dataclasses.dataclass
class _Parameters:
    ep: Optional[str] = None
    d: Optional[str] = None
    lt: Optional[int] = None
    base: Optional[str] = None
    attributes: list = dataclasses.field(default_factory=list)


def _bad(reason: str) -> error.BadRequest:
    return error.BadRequest(reason)


def _check_text(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{name}: not valid UTF-8") from None


def _parse_lifetime(value: str) -> int:
    if not _DIGITS.match(value):
        raise _bad(f"lt={value[:20]!r}: not a lifetime (a number of seconds from 1 to {MAX_LIFETIME})")
    lt = int(value)
    if not 1 <= lt <= MAX_LIFETIME:
        raise _bad(f"lt={lt}: the lifetime must be from 1 to {MAX_LIFETIME} seconds")
    return lt


def _parse_base(value: str) -> str:
    if not _uri.is_absolute(value) or _BAD_URI_CHARS.search(value) or "#" in value:
        raise _bad(f"base={value[:60]!r}: not an absolute URI without fragment")
    return value


def _parse_count(name: str, value: Optional[str]) -> int:
    if value is None or not _DIGITS.match(value):
        raise _bad(f"{name} must be a non-negative number")
    return int(value)


class Directory:
    """The resource directory's state and rules over a storage.

    The registrations are held in a :class:`.index.SearchIndex`, which
    answers every request; each change is written to ``storage`` first (so
    that what was answered is durable), and what ``storage`` holds is read
    back when the directory is created. Registrations that expired in the
    meantime are removed at the first operation.

    ``registration_path`` is where registration resources live (their
    Location-Path is that plus a generated name). ``on_change`` is called
    (without arguments) whenever what a lookup answers changed -- a new,
    changed, removed or expired registration, not a mere refresh --, e.g.
    to notify observers of the lookup resources. ``token_bytes`` makes the
    random names of registrations (:func:`secrets.token_bytes` by default).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        limits: Limits = Limits(),
        registration_path: Sequence[str] = ("reg",),
        on_change: Optional[Callable[[], None]] = None,
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
        log: Optional[logging.Logger] = None,
    ):
        self.storage = storage
        self.index = SearchIndex(lambda registration: self._entry(registration, registration.parsed_links()))
        self.limits = limits
        self.registration_path = tuple(registration_path)
        self._href_prefix = "/" + "".join(segment + "/" for segment in self.registration_path)
        self._on_change = on_change
        self._token_bytes = token_bytes
        self.log = log if log is not None else logging.getLogger("coap-server.rd")
        self._load()
        self._rejected: collections.Counter = collections.Counter()
        self._last_summary: Optional[float] = None

    # ------------------------------------------------------------ time

    def _load(self) -> None:
        broken = []
        for registration in self.storage.load():
            try:
                self.index.add(self._entry(registration, registration.parsed_links()))
            except ValueError as e:
                self.log.warning("Dropping stored registration %s that can not be used: %s", registration.name, e)
                broken.append(registration.name)
        if broken:
            self.storage.delete(broken)
        self.log.debug("Loaded %d registration(s)", len(self.index))

    def next_deadline(self) -> Optional[float]:
        """When :meth:`handle_timer` should run next (wall-clock seconds),
        or None if no registration exists."""
        return self.index.next_expiry()

    def handle_timer(self, now: float) -> int:
        """Remove the registrations that expired by ``now``; returns how
        many."""
        removed = self.index.expire(now)
        if removed:
            self.storage.delete(removed)
            self.log.debug("%d registration(s) expired", len(removed))
            self._changed()
        return len(removed)

    def _expire_due(self, now: float) -> None:
        deadline = self.index.next_expiry()
        if deadline is not None and now >= deadline:
            self.handle_timer(now)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    # ------------------------------------------------------- rejections

    def _reject(self, kind: str, exception: error.RenderableError) -> error.RenderableError:
        self._rejected[kind] += 1
        self.log.debug("Rejected a request (%s): %s", kind, exception)
        return exception

    def rejection_summary(self, now: float) -> Optional[str]:
        """A one-line account of the requests rejected since the last
        summary, if there were any and the last summary is at least
        ``limits.summary_interval`` old; else None."""
        if not self._rejected:
            return None
        if self._last_summary is not None and now - self._last_summary < self.limits.summary_interval:
            return None
        self._last_summary = now
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(self._rejected.items()))
        self._rejected.clear()
        return f"Rejected requests since the last summary: {parts}"

    # ------------------------------------------------------- parameters

    def _parse_parameters(self, query: Iterable[str], allowed: frozenset) -> _Parameters:
        params = _Parameters()
        seen: set = set()
        for item in query:
            if not item:
                continue
            name, eq, value = item.partition("=")
            _check_text("query", item)
            if not _NAME_CHARS.match(name):
                raise _bad(f"{name[:20]!r} is not a valid parameter name")
            name = name.lower()
            if name in _PARAMETERS:
                if name not in allowed:
                    raise _bad(f"{name} can not be given here")
                if name in seen:
                    raise _bad(f"{name} given more than once")
                if not eq:
                    raise _bad(f"{name} needs a value")
                seen.add(name)
                if name == "lt":
                    params.lt = _parse_lifetime(value)
                elif name == "base":
                    params.base = _parse_base(value)
                else:
                    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
                        raise _bad(f"{name}: longer than {MAX_NAME_BYTES} bytes")
                    setattr(params, name, value or None)
            elif name in _RESERVED or name in ("page", "count"):
                raise _bad(f"{name} is not a registration attribute")
            else:
                params.attributes.append((name, value if eq else None))
        if len(params.attributes) > self.limits.max_attributes:
            raise _bad(f"more than {self.limits.max_attributes} registration attributes")
        return params

    def _registration_parameters(self, query: Iterable[str], simple: bool = False) -> _Parameters:
        try:
            params = self._parse_parameters(query, _PARAMETERS - {"base"} if simple else _PARAMETERS)
            if not params.ep:
                raise _bad("ep (the endpoint name) is missing")
        except error.RenderableError as e:
            raise self._reject("bad query", e) from None
        return params

    def check_registration(self, now: float, query: Iterable[str], source: Source, *, simple: bool = False) -> None:
        """Raise what :meth:`register` would raise for this query from
        ``source`` before it looks at any payload: a bad query or a full
        directory. Simple registration (RFC 9176 §5.1), which takes no
        ``base``, calls this before it fetches the links."""
        self._expire_due(now)
        params = self._registration_parameters(query, simple)
        assert params.ep is not None
        self._check_capacity(self.index.get_by_key(params.ep, params.d), source.host)

    def _parse_links(self, payload: bytes, content_format: Optional[int]) -> LinkFormat:
        if len(payload) > self.limits.max_payload:
            raise self._reject(
                "payload too large",
                PayloadTooLarge(f"at most {self.limits.max_payload} bytes of links are accepted", self.limits.max_payload),
            )
        if content_format is not None and content_format != ContentFormat.LINKFORMAT:
            raise self._reject(
                "content format", error.UnsupportedContentFormat("links must be application/link-format (40)")
            )
        try:
            return parse(payload)
        except ValueError as e:
            raise self._reject("malformed link format", _bad(str(e))) from None

    def _entry(self, registration: Registration, links: LinkFormat) -> Entry:
        href = self._href_prefix + registration.name
        return Entry(registration, registration_terms(registration, href), index_links(links, registration.base))

    def _store(self, registration: Registration, links: LinkFormat) -> None:
        # durable first: what the index answers must survive a crash
        entry = self._entry(registration, links)
        self.storage.save(registration)
        self.index.add(entry)

    def _new_name(self) -> str:
        while True:
            name = base64.b32encode(self._token_bytes(5)).decode("ascii").lower()
            if self.index.get(name) is None:
                return name

    # ------------------------------------------------------- operations

    def register(
        self, now: float, query: Iterable[str], payload: bytes, content_format: Optional[int], source: Source
    ) -> tuple[str, ...]:
        """Register an endpoint (RFC 9176 §5) from the Uri-Query items and
        the link-format payload of the request; returns the Location-Path
        of the registration resource. An endpoint that is registered
        already (same ``ep`` and ``d``) is replaced, keeping its registration
        resource."""
        self._expire_due(now)
        params = self._registration_parameters(query)
        assert params.ep is not None
        base = params.base if params.base is not None else source.base
        if base is None:
            raise self._reject("bad query", _bad("base is needed: the source address can not be expressed as a URI"))
        existing = self.index.get_by_key(params.ep, params.d)
        self._check_capacity(existing, source.host)
        links = self._parse_links(payload, content_format)
        lt = params.lt if params.lt is not None else DEFAULT_LIFETIME
        registration = Registration(
            name=existing.name if existing is not None else self._new_name(),
            ep=params.ep,
            d=params.d,
            base=base,
            base_explicit=params.base is not None,
            lt=lt,
            expires=now + lt,
            source=source.host,
            attributes=tuple(params.attributes),
            links=payload.decode("utf-8"),
        )
        self._store(registration, links)
        self.log.debug(
            "%s %s (%d links) from %s", "Replaced" if existing else "Registered", registration.key, len(links), source.host
        )
        self._changed()
        return self.registration_path + (registration.name,)

    def _check_capacity(self, existing: Optional[Registration], host: str) -> None:
        limits = self.limits
        if existing is None and self.index.count() >= limits.max_registrations:
            raise self._reject(
                "directory full",
                ServiceUnavailable(f"the directory holds its maximum of {limits.max_registrations} registrations", limits.retry_after),
            )
        if (existing is None or existing.source != host) and self.index.count(host) >= limits.max_per_source:
            raise self._reject(
                "source over its limit",
                ServiceUnavailable(f"at most {limits.max_per_source} registrations per source", limits.retry_after),
            )

    def _get(self, name: str) -> Registration:
        registration = self.index.get(name)
        if registration is None:
            raise self._reject("unknown registration", error.NotFound("no such registration (it may have expired)"))
        return registration

    def update(
        self,
        now: float,
        name: str,
        query: Iterable[str],
        payload: bytes,
        content_format: Optional[int],
        source: Source,
    ) -> None:
        """Refresh or change a registration (RFC 9176 §5.3.1): its lifetime
        starts anew; ``lt``, ``base`` and further attributes given in the
        query replace the registration's (every value an attribute had is
        replaced by the values given now); a payload (or a Content-Format)
        replaces the links. A registration without explicit base follows
        its endpoint to a new source address."""
        self._expire_due(now)
        registration = self._get(name)
        try:
            params = self._parse_parameters(query, _PARAMETERS)
            for key in ("ep", "d"):
                given = getattr(params, key)
                if given is not None and given != getattr(registration, key):
                    raise _bad(f"{key} can not be changed by an update")
        except error.RenderableError as e:
            raise self._reject("bad query", e) from None
        links = self._parse_links(payload, content_format) if payload or content_format is not None else None

        lt = params.lt if params.lt is not None else registration.lt
        base, base_explicit = registration.base, registration.base_explicit
        if params.base is not None:
            base, base_explicit = params.base, True
        elif not base_explicit and source.base is not None:
            base = source.base
        attributes = registration.attributes
        if params.attributes:
            given = {n for n, _ in params.attributes}
            attributes = tuple([(n, v) for (n, v) in attributes if n not in given] + params.attributes)
        new_links = payload.decode("utf-8") if links is not None else registration.links

        expires = now + lt
        changed = dataclasses.replace(
            registration,
            lt=lt,
            base=base,
            base_explicit=base_explicit,
            attributes=attributes,
            links=new_links,
            expires=expires,
        )
        if changed == dataclasses.replace(registration, expires=expires):
            self.storage.refresh(name, expires)
            self.index.refresh(name, expires)
            return
        if links is None:
            links = changed.parsed_links()
        self._store(changed, links)
        self.log.debug("Updated %s", changed.key)
        self._changed()

    def remove(self, now: float, name: str) -> None:
        """Remove a registration (RFC 9176 §5.3.2)."""
        self._expire_due(now)
        self._get(name)
        self.storage.delete([name])
        self.index.remove(name)
        self.log.debug("Removed registration %s", name)
        self._changed()

    def read(self, now: float, name: str) -> str:
        """The links of a registration as they were registered."""
        self._expire_due(now)
        return self._get(name).links

    def _parse_lookup(self, query: Iterable[str]) -> tuple[list[Filter], int, Optional[int]]:
        filters = []
        page = count = None
        try:
            for item in query:
                if not item:
                    continue
                _check_text("query", item)
                key, eq, value = item.partition("=")
                if key in ("page", "count"):
                    if (page if key == "page" else count) is not None:
                        raise _bad(f"{key} given more than once")
                    number = _parse_count(key, value if eq else None)
                    if key == "page":
                        page = number
                    else:
                        count = number
                else:
                    filters.append(Filter.from_query(item))
            if page is not None and count is None:
                raise _bad("page needs count")
            if len(filters) > self.limits.max_filters:
                raise _bad(f"at most {self.limits.max_filters} search criteria are accepted")
        except error.RenderableError as e:
            raise self._reject("bad lookup", e) from None
        offset = page * count if page is not None and count is not None else 0
        return filters, offset, count

    def lookup_resources(self, now: float, query: Iterable[str]) -> str:
        """Resource lookup (RFC 9176 §6.1): the registered links that meet
        the query's search criteria, with their targets and anchors
        resolved, as link format (one page of them, if ``page``/``count``
        ask for that)."""
        self._expire_due(now)
        filters, offset, limit = self._parse_lookup(query)
        return ",".join(self.index.lookup_resources(filters, offset, limit))

    def lookup_endpoints(self, now: float, query: Iterable[str]) -> str:
        """Endpoint lookup (RFC 9176 §6.3): links to the registration
        resources that meet the query's search criteria, with the
        registration attributes, as link format."""
        self._expire_due(now)
        filters, offset, limit = self._parse_lookup(query)
        prefix = self._href_prefix
        return ",".join(
            str(endpoint_link(registration, prefix + registration.name))
            for registration in self.index.lookup_endpoints(filters, offset, limit)
        )
