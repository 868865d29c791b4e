#!/usr/bin/env python3
"""Fetch a resource once and print the response.

Usage: ``./clientGET.py [URI]``, by default ``coap://localhost/time`` (the
demo server's clock, see server.py)."""

import asyncio
import logging
import os
import sys

# Run from a source checkout (./examples/NAME.py), the examples use the
# aiocoap next to them, so they work without installing it.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_CHECKOUT, "aiocoap", "__init__.py")):
    sys.path.insert(0, _CHECKOUT)

from aiocoap import GET, Context, Message  # noqa: E402

logging.basicConfig(level=logging.INFO)


async def main(uri):
    context = await Context.create_client_context()
    try:
        request = Message(code=GET, uri=uri)
        try:
            response = await context.request(request).response
        except Exception as e:
            print("Failed to fetch resource:")
            print(e)
            return 1
        else:
            print(f"Result: {response.code}\n{response.payload!r}")
            return 0
    finally:
        await context.shutdown()


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "coap://localhost/time"
    try:
        sys.exit(asyncio.run(main(target)))
    except KeyboardInterrupt:
        pass
