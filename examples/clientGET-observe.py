#!/usr/bin/env python3
"""Observe a resource (RFC 7641) and print every notification.

Usage: ``./clientGET-observe.py [URI]``, by default
``coap://localhost/time`` (the demo server sends a notification every few
seconds). Stop with Ctrl-C."""

import asyncio
import logging
import os
import sys

# Run from a source checkout (./examples/NAME.py), the examples use the
# aiocoap next to them, so they work without installing it.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_CHECKOUT, "aiocoap", "__init__.py")):
    sys.path.insert(0, _CHECKOUT)

from aiocoap import GET, Context, Message, error  # noqa: E402

logging.basicConfig(level=logging.INFO)


async def main(uri):
    context = await Context.create_client_context()
    try:
        request = context.request(Message(code=GET, uri=uri, observe=0))

        response = await request.response
        print(f"First response: {response.code}\n{response.payload!r}")
        if response.opt.observe is None:
            print("The server did not accept the observation.")
            return

        try:
            async for notification in request.observation:
                print(f"Notification: {notification.code}\n{notification.payload!r}")
        except error.ObservationCancelled:
            print("The server ended the observation.")
        except error.Error as e:
            print(f"The observation failed: {e}")
        else:
            print("The observation ended.")
    finally:
        await context.shutdown()


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "coap://localhost/time"
    try:
        asyncio.run(main(target))
    except KeyboardInterrupt:
        pass
