#!/usr/bin/env python3
"""Demo CoAP server, the one the guided tour talks to.

Resources:

* ``/.well-known/core``: the list of everything below (RFC 6690)
* ``/time``: the current time; observable, with a notification every few
  seconds while someone observes it
* ``/other/separate``: answers only after 3 seconds (so the client first
  gets an empty ACK and the answer as a separate response)
* ``/other/block``: content larger than one block; PUT replaces it
* ``/whoami``: tells the client which address the request came from

Run ``./server.py`` (all interfaces, port 5683) or ``./server.py --bind
[::1]:5700``; stop it with Ctrl-C. Try it with ``./clientGET.py``,
``./clientPUT.py``, ``./clientGET-observe.py`` or ``aiocoap-client``.
"""

import argparse
import asyncio
import datetime
import ipaddress
import logging
import os
import sys

# Run from a source checkout (./examples/NAME.py), the examples use the
# aiocoap next to them, so they work without installing it.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_CHECKOUT, "aiocoap", "__init__.py")):
    sys.path.insert(0, _CHECKOUT)

import aiocoap  # noqa: E402
import aiocoap.resource as resource  # noqa: E402
from aiocoap.numbers.contentformat import ContentFormat  # noqa: E402
from aiocoap.util import hostportjoin, hostportsplit  # noqa: E402

DEFAULT_PORT = 5683


class BlockResource(resource.Resource):
    """GET returns content too large for a single message (so it travels
    blockwise); PUT replaces it."""

    def __init__(self):
        super().__init__()
        self.set_content(
            b"This is the default content of this resource. Digits are "
            b"appended until it is long enough to need blockwise transfer.\n"
        )

    def set_content(self, content):
        while len(content) <= 1024:
            content += b"0123456789\n"
        self.content = content

    async def render_get(self, request):
        return aiocoap.Message(payload=self.content)

    async def render_put(self, request):
        print(f"PUT payload: {request.payload!r}")
        self.set_content(request.payload)
        return aiocoap.Message(code=aiocoap.CHANGED, payload=self.content)


class SeparateLargeResource(resource.Resource):
    """GET takes 3 seconds, standing in for a slow sensor or disk; the
    library meanwhile acknowledges the request, and the answer follows as
    a separate response."""

    def get_link_description(self):
        # Also publish a title in .well-known/core
        return dict(**super().get_link_description(), title="A large resource")

    async def render_get(self, request):
        await asyncio.sleep(3)
        payload = (
            "Three rings for the elven kings under the sky, seven rings for "
            "the dwarven lords in their halls of stone, nine rings for mortal "
            "men doomed to die, one ring for the dark lord on his dark throne."
        )
        return aiocoap.Message(payload=payload.encode("ascii"))


class TimeResource(resource.ObservableResource):
    """The current time, observable: while anyone observes it, a timer
    calls updated_state() every few seconds, which notifies all observers.
    Without observers, the timer is stopped."""

    interval = 5

    def __init__(self):
        super().__init__()
        self.handle = None

    def notify(self):
        self.updated_state()
        self.reschedule()

    def reschedule(self):
        self.handle = asyncio.get_running_loop().call_later(self.interval, self.notify)

    def stop(self):
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def update_observation_count(self, count):
        if count and self.handle is None:
            print("Starting the clock")
            self.reschedule()
        if count == 0 and self.handle is not None:
            print("Stopping the clock")
            self.stop()

    async def render_get(self, request):
        payload = datetime.datetime.now().strftime("%Y-%m-%d %H:%M").encode("ascii")
        return aiocoap.Message(payload=payload, content_format=ContentFormat.TEXT)


class WhoAmI(resource.Resource):
    """Tells the client the address its request came from."""

    async def render_get(self, request):
        lines = [f"Your address is {request.remote.hostinfo}"]
        try:
            lines.append(f"You can be reached at {request.remote.uri_base}")
        except aiocoap.error.AnonymousHost:
            lines.append("Your address can not be expressed as a URI")
        claims = getattr(request.remote, "authenticated_claims", ())
        if claims:
            lines.append(f"You are authenticated as {', '.join(map(str, claims))}")
        return aiocoap.Message(payload="\n".join(lines).encode("utf-8"), content_format=ContentFormat.TEXT)


def build_site():
    """The resource tree of the demo server, and its TimeResource (which
    has a timer to stop at shutdown)."""
    root = resource.Site()
    root.add_resource([".well-known", "core"], resource.WKCResource(root.get_resources_as_linkheader))
    clock = TimeResource()
    root.add_resource(["time"], clock)
    root.add_resource(["other", "block"], BlockResource())
    root.add_resource(["other", "separate"], SeparateLargeResource())
    root.add_resource(["whoami"], WhoAmI())
    return root, clock


def parse_bind(text):
    """``HOST``, ``HOST:PORT``, ``V6ADDR``, ``[V6ADDR]:PORT`` or ``:PORT`` to a
    (host, port) tuple; a missing host means all interfaces."""
    try:
        host, port = hostportsplit(text)
    except ValueError as e:
        try:
            # A bare IPv6 address is unambiguous without brackets
            host, port = str(ipaddress.IPv6Address(text)), None
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid address {text!r}: {e}") from None
    if port == 0:
        # The server could not tell which port the system picked.
        raise argparse.ArgumentTypeError("give a port number other than 0")
    return (host or None, DEFAULT_PORT if port is None else port)


def where(bind):
    """Where the server listens, and a first URI to try, for people"""
    host, port = bind if bind is not None else (None, DEFAULT_PORT)
    if host in (None, "::", "0.0.0.0"):
        addresses = "all addresses" if host != "0.0.0.0" else "all IPv4 addresses"
        try_host = "localhost"
    else:
        addresses = host
        try_host = host
    try_uri = f"coap://{hostportjoin(try_host, None if port == DEFAULT_PORT else port)}/.well-known/core"
    return f"port {port} (UDP and TCP) of {addresses}", try_uri


async def main(bind):
    root, clock = build_site()
    context = await aiocoap.Context.create_server_context(root, bind=bind)
    listening, try_uri = where(bind)
    print(f"The demo server listens on {listening}. Try: ./aiocoap-client {try_uri}", flush=True)
    print("Stop it with Ctrl-C.", flush=True)
    try:
        # Serve until cancelled (Ctrl-C)
        await asyncio.get_running_loop().create_future()
    finally:
        clock.stop()
        await context.shutdown()


def sync_main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bind",
        metavar="HOST[:PORT]",
        type=parse_bind,
        default=None,
        help=f"address to serve on (default: all interfaces, port {DEFAULT_PORT})",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO)
    logging.getLogger("coap-server").setLevel(logging.DEBUG)

    try:
        asyncio.run(main(args.bind))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sync_main()
