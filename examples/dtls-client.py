#!/usr/bin/env python3
"""Fetch a resource over DTLS (coaps://) with a pre-shared key.

The client credentials map URI patterns to the identity and key to present;
the session that carries the request (and any later ones to that server)
is set up on the first request.

Usage: ``./dtls-client.py [URI]``, by default ``coaps://localhost/whoami``
(see dtls-server.py)."""

import asyncio
import logging
import sys
import urllib.parse

from aiocoap import GET, Context, Message


async def main(uri):
    authority = urllib.parse.urlsplit(uri).netloc
    context = await Context.create_client_context()
    context.client_credentials.load_from_dict({
        f"coaps://{authority}/*": {"dtls": {
            "psk": b"secretPSK",
            "client-identity": b"client_Identity",
        }},
    })
    try:
        response = await context.request(Message(code=GET, uri=uri)).response
    except Exception as e:
        print(f"Failed to fetch resource: {e}")
        return 1
    else:
        print(f"Result: {response.code}\n{response.payload.decode()}")
        return 0
    finally:
        await context.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "coaps://localhost/whoami")))
