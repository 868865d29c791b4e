#!/usr/bin/env python3
"""Replace the content of the demo server's /other/block resource.

The payload is larger than 1 KiB, so the library sends it blockwise
(RFC 7959) without the application having to care. Usage:
``./clientPUT.py [URI]``, by default ``coap://localhost/other/block``."""

import asyncio
import logging
import os
import sys

# Run from a source checkout (./examples/NAME.py), the examples use the
# aiocoap next to them, so they work without installing it.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_CHECKOUT, "aiocoap", "__init__.py")):
    sys.path.insert(0, _CHECKOUT)

from aiocoap import PUT, Context, Message  # noqa: E402

logging.basicConfig(level=logging.INFO)


async def main(uri):
    context = await Context.create_client_context()
    try:
        payload = b"The quick brown fox jumps over the lazy dog.\n" * 30
        request = Message(code=PUT, payload=payload, uri=uri)
        response = await context.request(request).response
        print(f"Result: {response.code}\n{response.payload!r}")
    finally:
        await context.shutdown()


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "coap://localhost/other/block"
    try:
        asyncio.run(main(target))
    except KeyboardInterrupt:
        pass
