#!/usr/bin/env python3
"""A CoAP server that also serves over DTLS (coaps://) to clients with a
pre-shared key.

The server credentials name the clients it accepts: each entry has a label
starting with a colon, the client's identity and its key. A request that
came over DTLS carries the label in ``request.remote.authenticated_claims``
(over plain CoAP, that is empty).

Run ``./dtls-server.py`` (all interfaces: CoAP on port 5683, DTLS on 5684)
or ``./dtls-server.py 127.0.0.1 5700`` (CoAP on 5700, DTLS on 5701); stop
it with Ctrl-C. Try it with ``./dtls-client.py``, or with libcoap's
``coap-client-openssl -k secretPSK -u client_Identity coaps://localhost/whoami``.
"""

import asyncio
import logging
import sys

import aiocoap
import aiocoap.resource as resource
from aiocoap.credentials import CredentialsMap

SERVER_CREDENTIALS = {
    ":client": {"dtls": {
        "psk": {"ascii": "secretPSK"},
        "client-identity": {"ascii": "client_Identity"},
    }},
}


class WhoAmI(resource.Resource):
    """Tells the client how it was authenticated."""

    async def render_get(self, request):
        claims = request.remote.authenticated_claims
        if claims:
            text = f"You are {', '.join(map(str, claims))}, connected over DTLS"
        else:
            text = "You are not authenticated"
        return aiocoap.Message(payload=text.encode(), content_format=0)


async def main(host=None, port=None):
    site = resource.Site()
    site.add_resource([".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader))
    site.add_resource(["whoami"], WhoAmI())

    credentials = CredentialsMap()
    credentials.load_from_dict(SERVER_CREDENTIALS)
    bind = (host, int(port)) if port is not None else (host, None)
    context = await aiocoap.Context.create_server_context(site, bind=bind, server_credentials=credentials)
    print("Serving", flush=True)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await context.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(main(*sys.argv[1:3]))
    except KeyboardInterrupt:
        pass
