"""a plain CoAP proxy that can work both as forward and as reverse proxy

Forward proxying (``--forward``) serves requests with Proxy-Uri or
Proxy-Scheme to any scheme this installation can send (coap, coap+tcp,
coaps+tcp, ... : the proxy bridges between them). Reverse proxying
(``--reverse``) sends requests on according to the rules, which are tried in
the order given. Responses are cached (RFC 7252 §5.6) unless ``--no-cache``
is given; cache statistics are logged at info level (``-v``) every minute
when they changed, and when the proxy stops.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Optional, Sequence

from ..util.cli import AsyncCLIDaemon
from .common import add_server_arguments, configure_logging, fail, server_context_from_arguments

__all__ = ["build_parser", "Main", "sync_main"]

STATISTICS_INTERVAL = 60.0
"""Seconds between two statistics log lines (only when something changed)."""

_log = logging.getLogger("coap-server.proxy")


class _TypedAppend(argparse.Action):
    """Collect the rule options in the order given, as (option, value)."""

    def __call__(self, parser, namespace, values, option_string=None):
        rules = getattr(namespace, self.dest, None)
        if rules is None:
            rules = []
            setattr(namespace, self.dest, rules)
        rules.append((option_string, values))


def _cache_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of entries, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("the cache needs room for at least one entry (use --no-cache instead)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiocoap-proxy", description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="count", default=0, help="Increase the debug output")
    p.add_argument("-q", "--quiet", action="count", default=0, help="Decrease the debug output")

    mode = p.add_argument_group("mode", "Required argument for setting the operation mode")
    mode.add_argument("--forward", help="Run as forward proxy", action="store_true")
    mode.add_argument("--reverse", help="Run as reverse proxy", action="store_true")

    add_server_arguments(p)
    details = p.add_argument_group("details", "Options that govern how requests go in and out")
    details.add_argument(
        "--proxy",
        help="Relay outgoing requests through yet another proxy",
        metavar="HOST[:PORT]",
    )
    details.add_argument(
        "--cache-size",
        help="How many responses the cache holds at most (default: %(default)s)",
        metavar="N",
        type=_cache_size,
        default=1000,
    )
    details.add_argument(
        "--no-cache",
        help="Do not cache responses; forward every request",
        action="store_true",
    )

    r = p.add_argument_group(
        "Rules",
        description="Sequence of forwarding rules that, if matched by a request, specify a "
        "forwarding destination. DEST is HOST[:PORT] (the scheme of the incoming request is "
        "kept) or SCHEME://HOST[:PORT]. Prefixed with '@', the destination is a forward "
        "proxy; prefixed with '!', its host name becomes the Uri-Host.",
    )
    r.add_argument("--namebased", help="If Uri-Host matches NAME, route to DEST", metavar="NAME:DEST", action=_TypedAppend, dest="rules")
    r.add_argument("--subdomainbased", help="If Uri-Host is anything.NAME, route to DEST", metavar="NAME:DEST", action=_TypedAppend, dest="rules")
    r.add_argument(
        "--pathbased",
        help="If a requested path starts with PATH, split that part off and route to DEST",
        metavar="PATH:DEST",
        action=_TypedAppend,
        dest="rules",
    )
    r.add_argument("--unconditional", help="Route all requests not previously matched to DEST", metavar="DEST", action=_TypedAppend, dest="rules")
    return p


def _destsplit(dest: str) -> tuple[str, bool, bool]:
    """DEST with its prefixes: (destination, rewrite_uri_host, use_as_proxy)."""
    rewrite_uri_host = use_as_proxy = False
    if dest.startswith("!"):
        dest, rewrite_uri_host = dest[1:], True
    if dest.startswith("@"):
        dest, use_as_proxy = dest[1:], True
    return dest, rewrite_uri_host, use_as_proxy


def _checked_destination(dest: str, option: str) -> str:
    from ..message import UndecidedRemote
    from ..util import hostportsplit

    try:
        if "://" in dest:
            UndecidedRemote.from_pathless_uri(dest)
        else:
            host, _ = hostportsplit(dest)
            if not host:
                raise ValueError("no host given")
    except Exception as e:
        fail(f"{option}: unusable destination {dest!r}: {e}")
    return dest


def build_redirectors(rules) -> list:
    """The :class:`~aiocoap.proxy.server.Redirector` objects for the rule
    options (as collected by the parser); mistakes end the program with a
    one-line message."""
    from ..proxy.server import NameBasedVirtualHost, SubdomainVirtualHost, SubresourceVirtualHost, UnconditionalRedirector

    redirectors: list = []
    for kind, data in rules or ():
        if kind in ("--namebased", "--subdomainbased"):
            name, sep, dest = data.partition(":")
            if not sep or not name or not dest:
                fail(f"{kind} needs NAME:DEST as argument, not {data!r}")
            dest, rewrite_uri_host, use_as_proxy = _destsplit(dest)
            dest = _checked_destination(dest, kind)
            if kind == "--namebased":
                redirectors.append(NameBasedVirtualHost(name, dest, rewrite_uri_host, use_as_proxy))
            else:
                if rewrite_uri_host:
                    fail("The flag '!' makes no sense for --subdomainbased: the subdomain would be lost")
                redirectors.append(SubdomainVirtualHost(name, dest, False, use_as_proxy))
        elif kind == "--pathbased":
            path, sep, dest = data.partition(":")
            if not sep or not dest:
                fail(f"--pathbased needs PATH:DEST as argument, not {data!r}")
            dest = _checked_destination(dest, kind)
            segments = [s for s in path.strip("/").split("/") if s]
            redirectors.append(SubresourceVirtualHost(segments, dest))
        else:
            dest, rewrite_uri_host, use_as_proxy = _destsplit(data)
            if rewrite_uri_host:
                fail("The flag '!' makes no sense for --unconditional: the host name would be lost")
            redirectors.append(UnconditionalRedirector(_checked_destination(dest, kind), use_as_proxy))
    return redirectors


class Main(AsyncCLIDaemon):
    """The aiocoap-proxy program (``Main(args).sync_main()`` style; see
    :class:`~aiocoap.util.cli.AsyncCLIDaemon`)."""

    async def start(self, args: Optional[Sequence[str]] = None) -> None:
        from ..interfaces import RequestProvider
        from ..protocol import Context
        from ..proxy.cache import ResponseCache
        from ..proxy.client import ProxyForwarder
        from ..proxy.server import ForwardProxyWithPooledObservations, ProxyWithPooledObservations

        self.outgoing_context = self.proxy_context = None
        self._stats_task: Optional[asyncio.Task] = None
        parser = build_parser()
        options = parser.parse_args(sys.argv[1:] if args is None else args)
        self.options = options
        configure_logging(options.verbose - options.quiet)
        if not options.forward and not options.reverse:
            parser.error("At least one of --forward and --reverse must be given.")
        redirectors = build_redirectors(options.rules)
        if options.reverse and not options.forward and not redirectors:
            parser.error("--reverse needs at least one rule (--namebased, --pathbased, ...)")

        self.outgoing_context = await Context.create_client_context()
        outgoing: RequestProvider = self.outgoing_context
        if options.proxy is not None:
            address = options.proxy if "://" in options.proxy else "coap://" + options.proxy
            try:
                outgoing = ProxyForwarder(address, self.outgoing_context)
            except Exception as e:
                await self.outgoing_context.shutdown()
                fail(f"invalid --proxy {options.proxy!r}: {e}")
        cache = False if options.no_cache else ResponseCache(max_entries=options.cache_size)
        factory = ForwardProxyWithPooledObservations if options.forward else ProxyWithPooledObservations
        self.proxy = factory(outgoing, cache=cache)
        for redirector in redirectors:
            self.proxy.add_redirector(redirector)
        try:
            self.proxy_context = await server_context_from_arguments(self.proxy, options)
        except SystemExit:
            await self.outgoing_context.shutdown()
            raise
        self._stats_task = asyncio.get_running_loop().create_task(self._log_statistics())

    async def _log_statistics(self) -> None:
        last = None
        while True:
            await asyncio.sleep(STATISTICS_INTERVAL)
            current = self.proxy.statistics
            if current != last:
                _log.info("Proxy statistics: %s", current)
                last = current

    async def shutdown(self) -> None:
        if self._stats_task is not None:
            self._stats_task.cancel()
            _log.info("Proxy statistics: %s", self.proxy.statistics)
        if self.proxy_context is not None:
            await self.proxy_context.shutdown()
        if self.outgoing_context is not None:
            await self.outgoing_context.shutdown()


def sync_main(args: Optional[Sequence[str]] = None) -> None:
    """Run aiocoap-proxy with ``args`` (the command line by default)."""
    Main.sync_main(args)


if __name__ == "__main__":
    sync_main()
