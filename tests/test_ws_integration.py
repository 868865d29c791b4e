"""CoAP over WebSockets with the rest of the library: OSCORE protected
requests and observations over coap+ws, our proxy forwarding a UDP client's
requests to a coap+ws server, ``aiocoap-client coap+ws://...`` and
``aiocoap-fileserver --bind`` as programs, and a default server context
that serves WebSockets next to UDP and TCP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

pytest.importorskip("websockets")

from test_ws import TIMEOUT, Megabytes, make_site, pool_of, request, ws_client, ws_server  # noqa: E402

from aiocoap import resource  # noqa: E402
from aiocoap.credentials import CredentialsMap  # noqa: E402
from aiocoap.message import Message  # noqa: E402
from aiocoap.numbers.codes import Code  # noqa: E402
from aiocoap.protocol import Context  # noqa: E402
from aiocoap.transports.ws import WSRemote  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.core


# --- OSCORE ----------------------------------------------------------------------------


async def test_oscore_over_websockets(tmp_path):
    pytest.importorskip("cryptography")
    pytest.importorskip("cbor2")
    from test_oscore_transport import context_pair

    from aiocoap.transports.oscore import OSCOREAddress

    client_dir, server_dir = context_pair(tmp_path)
    server_credentials = CredentialsMap()
    server_credentials.load_from_dict({":client": {"oscore": {"contextfile": server_dir}}})
    site = make_site()
    server = await Context.create_server_context(
        site, bind=("127.0.0.1", 0), server_credentials=server_credentials, transports=["oscore", "ws"]
    )
    client = await Context.create_client_context(transports=["oscore", "ws"])
    try:
        port = pool_of(server).servers["coap+ws"].sockets[0].getsockname()[1]
        base = f"coap+ws://127.0.0.1:{port}"
        client.client_credentials.load_from_dict({base + "/*": {"oscore": {"contextfile": client_dir}}})
        response = await request(client, code=Code.POST, uri=base + "/echo", payload=b"secret")
        assert (response.code, response.payload) == (Code.CREATED, b"terces")
        assert isinstance(response.remote, OSCOREAddress) and response.remote.scheme == "coap+ws"
        # blockwise inside OSCORE (outer blocks of the protected message)
        response = await request(client, code=Code.PUT, uri=base + "/echo", payload=b"x" * 5000)
        assert (response.code, response.payload) == (Code.CHANGED, b"x" * 5000)
        observed = client.request(Message(code=Code.GET, uri=base + "/clock", observe=0))
        first = await asyncio.wait_for(observed.response, TIMEOUT)
        assert first.payload == b"0"
        notifications = observed.observation.__aiter__()
        site.clock.tick()
        assert (await asyncio.wait_for(notifications.__anext__(), TIMEOUT)).payload == b"1"
        observed.observation.cancel()
    finally:
        await client.shutdown()
        await server.shutdown()


# --- the proxy --------------------------------------------------------------------------


async def test_proxy_forwards_a_udp_clients_requests_to_a_websocket_server():
    from aiocoap.proxy.server import ForwardProxyWithPooledObservations

    from ports import free_udp_port

    site = make_site()
    async with ws_server(site) as upstream:
        outgoing = await Context.create_client_context(transports=["udp6", "ws"])
        port = free_udp_port()
        proxy = await Context.create_server_context(
            ForwardProxyWithPooledObservations(outgoing), bind=("127.0.0.1", port), transports=["udp6"]
        )
        client = await Context.create_client_context(transports=["udp6"])
        try:
            target = f"coap+ws://127.0.0.1:{upstream.port}"

            def via_proxy(path, **kwargs):
                message = Message(uri=f"coap://127.0.0.1:{port}", **kwargs)
                message.opt.proxy_uri = target + path
                return message

            response = await asyncio.wait_for(
                client.request(via_proxy("/echo", code=Code.POST, payload=b"via proxy")).response, TIMEOUT
            )
            assert (response.code, response.payload) == (Code.CREATED, b"yxorp aiv")
            response = await asyncio.wait_for(client.request(via_proxy("/mb", code=Code.GET)).response, TIMEOUT)
            assert response.payload == Megabytes.payload
            observed = client.request(via_proxy("/clock", code=Code.GET, observe=0))
            assert (await asyncio.wait_for(observed.response, TIMEOUT)).payload == b"0"
            notifications = observed.observation.__aiter__()
            site.clock.tick()
            assert (await asyncio.wait_for(notifications.__anext__(), TIMEOUT)).payload == b"1"
            observed.observation.cancel()
            # the proxy's upstream requests shared one WebSocket
            assert len(upstream.ws._connections) == 1
        finally:
            await client.shutdown()
            await proxy.shutdown()
            await outgoing.shutdown()


# --- default contexts ---------------------------------------------------------------------


async def test_default_server_context_serves_websockets_next_to_udp_and_tcp(monkeypatch):
    monkeypatch.delenv("AIOCOAP_SERVER_TRANSPORT", raising=False)
    monkeypatch.delenv("AIOCOAP_CLIENT_TRANSPORT", raising=False)
    from ports import free_udp_port

    port = free_udp_port()
    site = make_site()
    server = await Context.create_server_context(site, bind=("127.0.0.1", port))
    client = await Context.create_client_context()
    try:
        for uri in (f"coap://127.0.0.1:{port}/echo", f"coap+tcp://127.0.0.1:{port}/echo",
                    f"coap+ws://127.0.0.1:{port + 3000}/echo"):
            response = await request(client, code=Code.GET, uri=uri)
            assert response.code == Code.CONTENT, uri
        assert isinstance(response.remote, WSRemote)
    finally:
        await client.shutdown()
        await server.shutdown()


# --- the programs ---------------------------------------------------------------------------


async def run(program, *args, timeout=20.0):
    process = await asyncio.create_subprocess_exec(
        sys.executable, os.path.join(ROOT, program), *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        out, err = await process.communicate()
        pytest.fail(f"{program} {args} did not finish: {out!r} {err!r}")
    return process.returncode, out, err.decode()


async def test_aiocoap_client_speaks_coap_over_websockets():
    site = make_site()

    class Text(resource.Resource):
        async def render_get(self, request):
            return Message(payload=b"hello over WebSockets", content_format=0)

    site.add_resource(["text"], Text())
    async with ws_server(site) as server:
        code, out, err = await run("aiocoap-client", f"coap+ws://127.0.0.1:{server.port}/text")
        assert (code, out.rstrip(b"\n")) == (0, b"hello over WebSockets"), err
        code, out, err = await run(
            "aiocoap-client", "-m", "POST", "--payload", "abc", f"coap+ws://127.0.0.1:{server.port}/echo"
        )
        assert code == 0 and out.rstrip(b"\n") == b"cba", err
        # a refused connection is one line, no traceback
        async with ws_server() as gone:
            closed_port = gone.port
        code, out, err = await run("aiocoap-client", f"coap+ws://127.0.0.1:{closed_port}/text")
        assert code == 1 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("aiocoap-client: error:")


async def test_fileserver_bind_serves_websockets_on_port_plus_3000(tmp_path):
    from ports import free_udp_port

    (tmp_path / "hello.txt").write_bytes(b"Hello over WebSockets")
    port = free_udp_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, os.path.join(ROOT, "aiocoap-fileserver"), "--bind", f"127.0.0.1:{port}", str(tmp_path),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with ws_client() as client:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while True:
                assert process.returncode is None, "the file server ended early"
                try:
                    response = await request(client, code=Code.GET, uri=f"coap+ws://127.0.0.1:{port + 3000}/hello.txt")
                    break
                except Exception:
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            assert response.payload == b"Hello over WebSockets"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0 and "Traceback" not in stderr.decode()

