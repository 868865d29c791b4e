"""What the aiocoap-fileserver tests share: a :class:`FileServer` on a
loopback port of ::1 with a client context, both shut down on exit.

    async with serving(tmp_path, write=True) as s:
        response = await s.get("/file.txt")

Nothing sleeps for protocol timeouts: the server's change watcher can be
made to poll every few milliseconds (``watch="poll", poll_interval=...``).
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

from aiocoap import Context, Message
from aiocoap.cli.fileserver import FileServer
from aiocoap.numbers.codes import Code

import ports

# Server and client transports by URI scheme.
TRANSPORTS = {"coap": (["udp6"], ["udp6"]), "coap+tcp": (["tcpserver"], ["tcpclient"])}


def free_port(host: str = "::1") -> int:
    return ports.free_port(host)


class Serving:
    """A running file server and a client to talk to it."""

    def __init__(self, server: FileServer, context: Context, client: Context, port: int, scheme: str):
        self.server = server
        self.context = context
        self.client = client
        self.port = port
        self.scheme = scheme

    def uri(self, path: str) -> str:
        return f"{self.scheme}://[::1]:{self.port}{path}"

    def message(self, path: str, code=Code.GET, **kwargs) -> Message:
        return Message(code=code, uri=self.uri(path), **kwargs)

    async def request(self, path: str, code=Code.GET, *, blockwise: bool = True, **kwargs) -> Message:
        request = self.message(path, code, **kwargs)
        return await self.client.request(request, handle_blockwise=blockwise).response

    async def get(self, path: str, **kwargs) -> Message:
        return await self.request(path, Code.GET, **kwargs)

    async def put(self, path: str, payload: bytes, **kwargs) -> Message:
        return await self.request(path, Code.PUT, payload=payload, **kwargs)

    async def delete(self, path: str, **kwargs) -> Message:
        return await self.request(path, Code.DELETE, **kwargs)


@contextlib.asynccontextmanager
async def serving(root, *, scheme: str = "coap", **kwargs) -> AsyncIterator[Serving]:
    """Serve ``root`` with a FileServer made with ``kwargs``, over UDP
    (``scheme="coap"``) or TCP (``"coap+tcp"``)."""
    server_transports, client_transports = TRANSPORTS[scheme]
    server = FileServer(root, **kwargs)
    port = free_port()
    try:
        context = await Context.create_server_context(server, bind=("::1", port), transports=server_transports)
    except BaseException:
        await server.shutdown()
        raise
    client = await Context.create_client_context(transports=client_transports)
    try:
        yield Serving(server, context, client, port, scheme)
    finally:
        await client.shutdown()
        await context.shutdown()
        await server.shutdown()
