"""The data of the resource directory: registrations, search terms and
filters, shared by the directory core and every storage.

* :class:`Registration` is one endpoint's registration as the storage
  keeps it: the registration parameters plus the links exactly as they
  were registered (relative references unresolved).
* :class:`Entry` is what the core hands a storage to keep: the
  registration plus everything lookups need, precomputed once per change
  (the links as resource lookup serves them, and the search terms).
* :class:`Filter` is one search criterion of a lookup, and
  :func:`term_matches` the one rule by which a storage matches it.

Search terms are ``(name, value)`` pairs. The core derives them so that a
storage needs no knowledge of link format: a link has a term for every
attribute (a flag such as ``obs`` has the value ``""``), one more per
item of space separated values (``rt="a b"`` gives ``("rt", "a b")``,
``("rt", "a")`` and ``("rt", "b")``), and ``href`` and ``anchor`` with
the fully resolved URIs. A registration has terms for ``ep``, ``d`` (if
set), ``base``, ``lt``, every further registration attribute (``et``,
...), and ``href`` with the path of its registration resource.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from ..util.linkformat import SPACE_SEPARATED, Link, LinkFormat, parse
from . import _uri

__all__ = ["Registration", "Entry", "IndexedLink", "Filter", "Term", "term_matches"]

Term = tuple[str, str]

TOKENIZED = SPACE_SEPARATED | {"et"}
"""Attributes whose space separated values are also searchable one by one
(the RFC 6690 relation types, ``ct``, and RFC 9176's endpoint type)."""


@dataclasses.dataclass(slots=True)
class Registration:
    """One endpoint's registration, as it is stored.

    ``expires`` is an absolute time on the wall clock (seconds since the
    epoch), so that a registration read back after a restart keeps its
    remaining lifetime. ``base_explicit`` tells whether ``base`` was given
    by the endpoint (or else derived from its source address, and then
    updated when the endpoint's address changes). ``attributes`` are the
    registration attributes beyond ``ep``, ``d``, ``lt`` and ``base`` (such
    as ``et``), in order, a value of None standing for a bare flag.
    ``links`` is the registered link-format document. ``source`` is the host
    the registration came from (what the per-source limit counts)."""

    name: str
    ep: str
    d: Optional[str]
    base: str
    base_explicit: bool
    lt: int
    expires: float
    source: str
    attributes: tuple[tuple[str, Optional[str]], ...]
    links: str

    @property
    def key(self) -> tuple[str, str]:
        """What makes an endpoint unique in the directory: its name and
        sector (RFC 9176 §5: a registration with the same pair replaces the
        old one)."""
        return (self.ep, self.d or "")

    def parsed_links(self) -> LinkFormat:
        """The registered links as a :class:`LinkFormat`."""
        return parse(self.links)

    def registration_attributes(self) -> list[tuple[str, Optional[str]]]:
        """The registration's attributes as endpoint lookup lists them:
        ``ep``, ``d`` (if set), ``base``, ``lt``, then the others."""
        pairs: list[tuple[str, Optional[str]]] = [("ep", self.ep)]
        if self.d:
            pairs.append(("d", self.d))
        pairs.append(("base", self.base))
        pairs.append(("lt", str(self.lt)))
        pairs.extend(self.attributes)
        return pairs


@dataclasses.dataclass
class IndexedLink:
    """One registered link prepared for resource lookup: ``rendered`` is
    the link as lookup serves it (target and anchor resolved against the
    registration's base), ``terms`` what filters match against."""

    rendered: str
    terms: frozenset


@dataclasses.dataclass
class Entry:
    """What a storage keeps for one registration: the registration, its
    own search terms, and its links prepared for lookup (in registered
    order)."""

    registration: Registration
    terms: frozenset
    links: list[IndexedLink]


@dataclasses.dataclass(frozen=True)
class Filter:
    """One search criterion of a lookup (``name=value``, ``name=prefix*``,
    or ``name`` alone, which asks only for the presence of the attribute:
    ``value`` None)."""

    name: str
    value: Optional[str] = None
    prefix: bool = False

    @classmethod
    def from_query(cls, query: str) -> "Filter":
        """The filter a Uri-Query item stands for.

        >>> Filter.from_query("rt=temp*")
        Filter(name='rt', value='temp', prefix=True)
        >>> Filter.from_query("obs")
        Filter(name='obs', value=None, prefix=False)
        """
        name, eq, value = query.partition("=")
        name = name.lower()
        if not eq:
            return cls(name)
        if value.endswith("*"):
            return cls(name, value[:-1], True)
        return cls(name, value)


def term_matches(term: Term, f: Filter) -> bool:
    """Whether a search term satisfies a filter: same name, and the value
    equal (or starting with the filter's value for prefix filters, or
    anything for presence filters).

    >>> term_matches(("rt", "temperature"), Filter("rt", "temp", True))
    True
    """
    if term[0] != f.name:
        return False
    if f.value is None:
        return True
    return term[1].startswith(f.value) if f.prefix else term[1] == f.value


def _attribute_terms(name: str, value: Optional[str], into: set) -> None:
    if value is None:
        into.add((name, ""))
        return
    into.add((name, value))
    if name in TOKENIZED and " " in value:
        for item in value.split():
            into.add((name, item))


def registration_terms(registration: Registration, href: str) -> frozenset:
    """The search terms of a registration whose resource is at ``href``."""
    terms: set = {("href", href)}
    for name, value in registration.registration_attributes():
        _attribute_terms(name, value, terms)
    return frozenset(terms)


def index_links(links: LinkFormat, base: str) -> list[IndexedLink]:
    """The links prepared for resource lookup: RFC 9176 §6.1 asks for the
    submitted links with the target (and the anchor, where one was given)
    fully resolved against the registration's base URI; everything else
    stays as it was registered.

    The links are resolved in place: pass a document that is not used
    otherwise (a freshly parsed one)."""
    resolve = _uri.Resolver(base)
    indexed = []
    for link in links:
        href = link.href = resolve(link.href)
        terms: set = {("href", href)}
        pairs = link.attr_pairs
        for i, (name, value) in enumerate(pairs):
            if name == "anchor" and value is not None:
                value = resolve(value)
                pairs[i] = (name, value)
            _attribute_terms(name, value, terms)
        indexed.append(IndexedLink(str(link), frozenset(terms)))
    return indexed


def endpoint_link(registration: Registration, href: str) -> Link:
    """The link endpoint lookup serves for a registration."""
    return Link(href, registration.registration_attributes())

