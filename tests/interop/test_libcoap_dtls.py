"""Interoperability with libcoap (4.3) over DTLS with pre-shared keys, on
loopback, in both directions:

* ``coap-client-openssl`` and ``coap-client-gnutls`` (``-k KEY -u
  IDENTITY coaps://...``) against our server: GET with the identity seen by
  the resource, PUT, observe, 100 KB blockwise both ways, and a wrong key
  that gets nothing;
* our client against ``coap-server-openssl -k KEY``: GET, PUT (dynamic
  resources), observe ``/time``, a 100 KB body stored and read back
  blockwise, and a wrong key failing with a DTLS error.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil

import pytest

pytest.importorskip("DTLSSocket")

from dtls_support import BIG, IDENTITY, PSK, dtls_client, dtls_server, get  # noqa: E402

from .conftest import run_coap_client, start_libcoap_server, stop_process  # noqa: E402

pytestmark = pytest.mark.interop

CLIENTS = ["coap-client-openssl", "coap-client-gnutls"]


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"libcoap's {name} is not installed (Debian package libcoap3-bin)")
    return path


async def libcoap_client(name, uri, *args, workdir, key=PSK, identity=IDENTITY, wait=5.0):
    return await run_coap_client(
        binary(name), uri, "-k", key.decode(), "-u", identity.decode(), *args, workdir=workdir, wait=wait
    )


# ====================================== libcoap clients -> our server


@pytest.mark.parametrize("client", CLIENTS)
async def test_get_sees_the_identity(client, tmp_path):
    async with dtls_server() as server:
        run = await libcoap_client(client, server.uri("/hello"), workdir=tmp_path)
    assert run.code == "2.05", run.describe()
    assert run.payload == b"(':client',)"
    (remote,) = server.site.seen_remotes
    assert remote.psk_identity == IDENTITY


@pytest.mark.parametrize("client", CLIENTS)
async def test_put(client, tmp_path):
    async with dtls_server() as server:
        run = await libcoap_client(client, server.uri("/store"), "-m", "put", "-e", "from libcoap", workdir=tmp_path)
        assert run.code == "2.04", run.describe()
        assert server.site.store == b"from libcoap"


@pytest.mark.parametrize("client", CLIENTS)
async def test_observe(client, tmp_path):
    async with dtls_server() as server:
        async def ticker():
            while True:
                await asyncio.sleep(0.2)
                server.site.tick()

        ticking = asyncio.ensure_future(ticker())
        try:
            run = await libcoap_client(client, server.uri("/counter"), "-s", "2", workdir=tmp_path, wait=3)
        finally:
            ticking.cancel()
            await asyncio.gather(ticking, return_exceptions=True)
    notifications = [r for r in run.responses if r.option_values("Observe")]
    assert len(notifications) >= 4, run.describe()
    values = [int(n.payload_text) for n in notifications]
    assert values == sorted(values), run.describe()


@pytest.mark.parametrize("client", CLIENTS)
async def test_blockwise_100k_both_ways(client, tmp_path):
    body = secrets.token_bytes(100 * 1024)
    source = tmp_path / "body"
    source.write_bytes(body)
    async with dtls_server() as server:
        run = await libcoap_client(client, server.uri("/big"), "-b", "1024", workdir=tmp_path, wait=20)
        assert run.code == "2.05", run.describe()
        assert run.payload == BIG
        run = await libcoap_client(client, server.uri("/big"), "-m", "put", "-b", "1024", "-f", str(source),
                                   workdir=tmp_path, wait=20)
        assert run.code == "2.04", run.describe()
        assert server.site.store == body
        # all of it over one session
        assert len(server.interface.sessions) <= 1


@pytest.mark.parametrize("client", CLIENTS)
async def test_wrong_key_gets_nothing(client, tmp_path):
    async with dtls_server() as server:
        run = await libcoap_client(client, server.uri("/hello"), key=b"wrongPSK", workdir=tmp_path, wait=2)
    assert run.code is None, run.describe()
    assert server.site.seen_remotes == []


# ====================================== our client -> libcoap's server


@pytest.fixture(scope="module")
def libcoap_dtls_server(tmp_path_factory):
    server = start_libcoap_server(
        binary("coap-server-openssl"), tmp_path_factory.mktemp("libcoap-dtls"), extra=("-d", "50", "-k", PSK.decode())
    )
    try:
        yield server
    finally:
        stop_process(server.process)


def dtls_uri(server, path: str) -> str:
    # libcoap listens for DTLS on the port after the UDP one
    return f"coaps://{server.host}:{server.port + 1}{path}"


def credentials(server, key: bytes = PSK) -> dict:
    return {dtls_uri(server, "/*"): {"dtls": {"psk": key, "client-identity": IDENTITY}}}


async def test_client_get(libcoap_dtls_server):
    async with dtls_client(credentials(libcoap_dtls_server)) as ctx:
        response = await get(ctx, dtls_uri(libcoap_dtls_server, "/"))
    assert response.code.is_successful()
    assert b"libcoap" in response.payload


async def test_client_put_and_get(libcoap_dtls_server):
    import aiocoap

    uri = dtls_uri(libcoap_dtls_server, f"/dyn-{secrets.token_hex(4)}")
    async with dtls_client(credentials(libcoap_dtls_server)) as ctx:
        created = await get(ctx, uri, code=aiocoap.PUT, payload=b"over dtls")
        got = await get(ctx, uri)
        await get(ctx, uri, code=aiocoap.DELETE)
    assert created.code == aiocoap.CREATED
    assert got.payload == b"over dtls"


async def test_client_observe(libcoap_dtls_server):
    import aiocoap

    async with dtls_client(credentials(libcoap_dtls_server)) as ctx:
        pending = ctx.request(aiocoap.Message(code=aiocoap.GET, uri=dtls_uri(libcoap_dtls_server, "/time"), observe=0))
        first = await asyncio.wait_for(pending.response, 10)
        assert first.opt.observe is not None
        # /time notifies every second
        updates = pending.observation.__aiter__()
        notifications = [await asyncio.wait_for(updates.__anext__(), 5) for _ in range(2)]
        pending.observation.cancel()
    assert notifications[0].opt.observe < notifications[1].opt.observe
    assert all(n.remote is first.remote for n in notifications)


async def test_client_blockwise_100k(libcoap_dtls_server):
    import aiocoap

    uri = dtls_uri(libcoap_dtls_server, f"/dyn-big-{secrets.token_hex(4)}")
    body = secrets.token_hex(50 * 1024).encode()  # 100 KiB
    async with dtls_client(credentials(libcoap_dtls_server)) as ctx:
        created = await get(ctx, uri, code=aiocoap.PUT, payload=body, timeout=30)
        got = await get(ctx, uri, timeout=30)
        await get(ctx, uri, code=aiocoap.DELETE)
    assert created.code == aiocoap.CREATED
    assert got.payload == body


async def test_client_wrong_key(libcoap_dtls_server):
    from aiocoap.transports.dtls_sessions import DTLSError, DTLSTuning

    tuning = DTLSTuning(handshake_timeout=2.0, idle_timeout=None, silence_timeout=None)
    async with dtls_client(credentials(libcoap_dtls_server, key=b"wrongPSK"), tuning=tuning) as ctx:
        with pytest.raises(DTLSError):
            await get(ctx, dtls_uri(libcoap_dtls_server, "/"))
