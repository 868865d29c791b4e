"""Shared pieces of the resource directory tests: a fake clock, fake
remotes, and a way to send a request to a site without any network."""

from __future__ import annotations

import contextlib
import itertools

from aiocoap import error
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.resourcedirectory.directory import Limits
from aiocoap.resourcedirectory.server import StandaloneResourceDirectory
from aiocoap.util import hostportjoin
from aiocoap.util.linkformat import parse
from ports import free_udp_port


class Clock:
    """A wall clock that moves only when told to."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Remote:
    """What the RD reads of a request's remote."""

    def __init__(self, host: str, port: int = 61616, scheme: str = "coap", multicast_locally: bool = False):
        self.host = host
        self.port = port
        self.scheme = scheme
        self.is_multicast_locally = multicast_locally

    @property
    def hostinfo(self) -> str:
        # the default port left out, as udp6 does
        return hostportjoin(self.host, None if self.port == 5683 else self.port)

    @property
    def uri_base(self) -> str:
        return f"{self.scheme}://{self.hostinfo}"

    def __repr__(self):
        return f"<Remote {self.uri_base}>"


class AnonymousRemote(Remote):
    @property
    def uri_base(self) -> str:
        raise error.AnonymousHost()


_ports = itertools.count(40000)


def remote(host: str = "2001:db8:3::123", port=None) -> Remote:
    return Remote(host, next(_ports) if port is None else port)


async def send(site, method, path, query=(), payload=b"", content_format=None, remote_=None, accept=None):
    """Render one request on ``site`` as the server would, turning
    RenderableErrors into their responses."""
    request = Message(code=method, uri_path=[s for s in path.split("/") if s], payload=payload)
    request.opt.uri_query = list(query)
    if content_format is not None:
        request.opt.content_format = content_format
    if accept is not None:
        request.opt.accept = accept
    request.remote = remote_ if remote_ is not None else remote()
    try:
        response = await site.render(request)
    except error.RenderableError as e:
        response = e.to_message()
    return response


def links_of(response) -> set:
    """The links of a link-format response as a set of (href, sorted
    attributes), for comparisons that ignore order."""
    return {(link.href, tuple(sorted(link.attr_pairs, key=lambda p: (p[0], p[1] or "")))) for link in parse(response.payload)}


def hrefs(response) -> list:
    return [link.href for link in parse(response.payload)]


def make_rd(clock=None, limits=Limits(), storage=None, context=None):
    return StandaloneResourceDirectory(context, storage=storage, limits=limits, clock=clock or Clock())


def free_port() -> int:
    """A port of 127.0.0.1 free for UDP and TCP right now."""
    return free_udp_port()


@contextlib.asynccontextmanager
async def running_rd(port=None, storage=None, **context_args):
    """Our RD served on 127.0.0.1 (a free port unless given): yields the
    site and its base URI."""
    from aiocoap import Context

    port = port or free_port()
    context = await Context.create_server_context(None, bind=("127.0.0.1", port), **context_args)
    rd = StandaloneResourceDirectory(context, storage=storage)
    context.serversite = rd
    try:
        yield rd, f"coap://127.0.0.1:{port}"
    finally:
        await context.shutdown()
        await rd.shutdown()


def rfc_example_links(base: str) -> set:
    """What resource lookup answers for the registration example of RFC
    9176 §5 (in the form of :func:`links_of`), with the links resolved
    against ``base``."""
    return {
        (base + "/sensors/temp", (("if", "sensor"), ("rt", "temperature-c"))),
        ("http://www.example.com/sensors/temp", (("anchor", base + "/sensors/temp"), ("rel", "describedby"))),
    }


__all__ = [
    "free_port",
    "running_rd",
    "rfc_example_links","Clock", "Remote", "AnonymousRemote", "remote", "send", "links_of", "hrefs", "make_rd", "Code"]
