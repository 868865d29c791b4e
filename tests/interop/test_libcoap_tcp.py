"""Interoperability with libcoap (4.3) over TCP and TLS (RFC 8323) on
loopback.

* libcoap's ``coap-client-notls`` talks ``coap+tcp://`` to our TCP server
  (the site of ``conftest.py``): every method, a large body, link format,
  observation, and a small Max-Message-Size announced with ``-X``.
* our client talks ``coap+tcp://`` to ``coap-server-notls`` (which listens on
  TCP on the same port as on UDP): its resources, dynamic resources, BERT
  negotiation, observation.
* TLS both ways with ``coap-client-openssl`` / ``coap-server-openssl``
  (``coaps+tcp://``; libcoap serves TLS on its port + 1) and certificates
  made for the test: verification, a wrong CA, client certificates.

Binaries that are not installed skip their tests, naming the package.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import time

import pytest

from .conftest import (
    BIG_PAYLOAD,
    HELLO_PAYLOAD,
    SiteState,
    _find_binary,
    build_site,
    free_port,
    run_coap_client,
    start_libcoap_server,
    stop_process,
)

pytestmark = pytest.mark.interop

TIMEOUT = 5.0


# --- our side -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def our_tcp_server(transport="tcpserver", ssl_context=None):
    """Serve the interop site over TCP (or TLS) on a free loopback port;
    yields (context, state, port)."""
    import aiocoap

    state = SiteState()
    site = build_site(state)
    for attempt in range(3):
        port = free_port()
        try:
            context = await aiocoap.Context.create_server_context(
                site, bind=("127.0.0.1", port), transports=[transport], _ssl_context=ssl_context
            )
            break
        except OSError:
            if attempt == 2:
                raise
    try:
        yield context, state, port
    finally:
        if state.ticker is not None:
            state.ticker.cancel()
        await context.shutdown()


@contextlib.asynccontextmanager
async def our_client(transport="tcpclient"):
    import aiocoap

    context = await aiocoap.Context.create_client_context(transports=[transport])
    try:
        yield context
    finally:
        await context.shutdown()


async def fetch(context, uri, **kwargs):
    import aiocoap

    message = aiocoap.Message(code=kwargs.pop("code", aiocoap.GET), uri=uri, **kwargs)
    return await asyncio.wait_for(context.request(message).response, TIMEOUT)


# --- libcoap side ------------------------------------------------------------------


@pytest.fixture(scope="module")
def libcoap_tcp_server(tmp_path_factory):
    binary = _find_binary("coap-server-notls")
    server = start_libcoap_server(binary, tmp_path_factory.mktemp("libcoap-tcp"))
    try:
        yield server
    finally:
        stop_process(server.process)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    pytest.importorskip("cryptography")
    from test_tls import PKI

    return PKI(tmp_path_factory.mktemp("pki"))


def wait_for_tcp(port, process, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def libcoap_tls_server(pki, logdir, *extra):
    """``coap-server-openssl`` with the test server certificate; yields the
    TLS port (its base port + 1)."""
    binary = _find_binary("coap-server-openssl")
    for _ in range(3):
        port = free_port()
        tls_port = port + 1
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", tls_port)) == 0:
                continue
        log_path = logdir / f"coap-server-openssl-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [binary, "-A", "127.0.0.1", "-p", str(port), "-c", pki.server[0], "-j", pki.server[1], *extra],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        if wait_for_tcp(tls_port, process):
            try:
                yield tls_port
            finally:
                stop_process(process)
            return
        stop_process(process)
    raise RuntimeError(f"{binary} did not start; log:\n{log_path.read_text(errors='replace')}")


# ======================================== libcoap client -> our TCP server


async def test_libcoap_client_every_method(coap_client):
    async with our_tcp_server() as (context, state, port):
        base = f"coap+tcp://127.0.0.1:{port}"
        get = await coap_client(base + "/hello")
        assert get.code == "2.05", get.describe()
        assert get.payload == HELLO_PAYLOAD

        put = await coap_client(base + "/store", "-m", "put", "-e", "over tcp")
        assert put.code == "2.04", put.describe()
        assert state.store == b"over tcp"

        post = await coap_client(base + "/items", "-m", "post", "-e", "an item")
        assert post.code == "2.01", post.describe()
        assert post.responses[-1].option_values("Location-Path") == ["items", "1"]

        fetched = await coap_client(base + "/echo", "-m", "fetch", "-t", "0", "-e", "fetched back")
        assert fetched.code == "2.05", fetched.describe()
        assert fetched.payload == b"fetched back"

        delete = await coap_client(base + "/store", "-m", "delete")
        assert delete.code == "2.02", delete.describe()
        assert state.store is None

        missing = await coap_client(base + "/no/such/thing")
        assert missing.code == "4.04", missing.describe()


async def test_libcoap_client_large_body_and_link_format(coap_client):
    async with our_tcp_server() as (context, state, port):
        big = await coap_client(f"coap+tcp://127.0.0.1:{port}/big")
        assert big.code == "2.05", big.describe()
        assert big.payload == BIG_PAYLOAD
        wkc = await coap_client(f"coap+tcp://127.0.0.1:{port}/.well-known/core")
        assert wkc.code == "2.05", wkc.describe()
        assert b"</hello>" in wkc.payload and b"</counter>" in wkc.payload


async def test_libcoap_client_with_small_max_message_size(coap_client):
    """libcoap announces -X 600: nothing bigger may come from us; the large
    resource arrives blockwise, or is refused with 5.00 where the server
    can not slice it."""
    async with our_tcp_server() as (context, state, port):
        run = await coap_client(f"coap+tcp://127.0.0.1:{port}/big", "-X", "600")
        assert run.code in ("2.05", "5.00"), run.describe()
        if run.code == "2.05":
            assert run.payload == BIG_PAYLOAD
        hello = await coap_client(f"coap+tcp://127.0.0.1:{port}/hello", "-X", "600")
        assert hello.payload == HELLO_PAYLOAD


async def test_libcoap_client_observes(coap_client):
    async with our_tcp_server() as (context, state, port):
        run = await coap_client(f"coap+tcp://127.0.0.1:{port}/counter", "-s", "1", wait=3)
        notifications = [m for m in run.responses if m.code == "2.05"]
        assert len(notifications) >= 3, run.describe()
        values = [int(m.payload_text) for m in notifications]
        assert values == sorted(values) and values[-1] > values[0]


# ======================================== our client -> libcoap TCP server


async def test_our_client_against_libcoap_over_tcp(libcoap_tcp_server):
    base = f"coap+tcp://127.0.0.1:{libcoap_tcp_server.port}"
    async with our_client() as client:
        root = await fetch(client, base + "/")
        assert root.code.is_successful() and b"libcoap" in root.payload
        assert root.remote.scheme == "coap+tcp"
        # libcoap announces Block-Wise-Transfer and a large Max-Message-Size
        assert root.remote.maximum_block_size_exp == 7
        time_ = await fetch(client, base + "/time")
        assert time_.code.is_successful() and time_.payload
        wkc = await fetch(client, base + "/.well-known/core")
        assert b"</time>" in wkc.payload
        assert time_.remote is root.remote  # one pooled connection


async def test_our_client_creates_resources_on_libcoap_over_tcp(libcoap_tcp_server):
    import aiocoap

    base = f"coap+tcp://127.0.0.1:{libcoap_tcp_server.port}"
    payload = bytes(range(256)) * 20  # 5 KiB: one message with libcoap's limits
    async with our_client() as client:
        created = await fetch(client, base + "/tcp-dynamic", code=aiocoap.PUT, payload=payload)
        assert created.code in (aiocoap.CREATED, aiocoap.CHANGED)
        back = await fetch(client, base + "/tcp-dynamic")
        assert back.payload == payload
        deleted = await fetch(client, base + "/tcp-dynamic", code=aiocoap.DELETE)
        assert deleted.code == aiocoap.DELETED


async def test_our_client_observes_libcoap_time_over_tcp(libcoap_tcp_server):
    import aiocoap

    uri = f"coap+tcp://127.0.0.1:{libcoap_tcp_server.port}/time"
    async with our_client() as client:
        request = client.request(aiocoap.Message(code=aiocoap.GET, uri=uri, observe=0))
        first = await asyncio.wait_for(request.response, TIMEOUT)
        assert first.opt.observe is not None
        notification = await asyncio.wait_for(request.observation.__aiter__().__anext__(), 3)
        assert notification.code.is_successful()
        request.observation.cancel()


# ======================================== TLS


def tls_server_context(pki, require_client_cert=False):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*pki.server)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return context


async def run_tls_client(uri, *args, workdir):
    binary = _find_binary("coap-client-openssl")
    return await run_coap_client(binary, uri, *args, workdir=workdir)


async def test_libcoap_tls_client_against_our_tls_server(pki, tmp_path):
    async with our_tcp_server("tlsserver", tls_server_context(pki)) as (context, state, port):
        uri = f"coaps+tcp://127.0.0.1:{port}/hello"
        run = await run_tls_client(uri, "-R", pki.ca, workdir=tmp_path)
        assert run.code == "2.05", run.describe()
        assert run.payload == HELLO_PAYLOAD
        distrusting = await run_tls_client(uri, "-R", pki.other_ca, workdir=tmp_path)
        assert distrusting.code is None, distrusting.describe()
        big = await run_tls_client(f"coaps+tcp://127.0.0.1:{port}/big", "-R", pki.ca, workdir=tmp_path)
        assert big.payload == BIG_PAYLOAD, big.describe()


async def test_libcoap_tls_client_presents_a_client_certificate(pki, tmp_path):
    async with our_tcp_server("tlsserver", tls_server_context(pki, require_client_cert=True)) as (context, state, port):
        uri = f"coaps+tcp://127.0.0.1:{port}/hello"
        anonymous = await run_tls_client(uri, "-R", pki.ca, workdir=tmp_path)
        assert anonymous.code is None, anonymous.describe()
        identified = await run_tls_client(
            uri, "-R", pki.ca, "-c", pki.client[0], "-j", pki.client[1], workdir=tmp_path
        )
        assert identified.code == "2.05", identified.describe()
        assert identified.payload == HELLO_PAYLOAD


async def test_our_tls_client_against_libcoap_tls_server(pki, tmp_path):
    with libcoap_tls_server(pki, tmp_path) as tls_port:
        authority = f"127.0.0.1:{tls_port}"
        async with our_client("tlsclient") as client:
            client.client_credentials.load_from_dict(
                {f"coaps+tcp://{authority}/*": {"tls": {"ca-file": pki.ca}}}
            )
            response = await fetch(client, f"coaps+tcp://{authority}/time")
            assert response.code.is_successful() and response.payload
            assert response.remote.scheme == "coaps+tcp"
            ssl_object = response.remote._transport.get_extra_info("ssl_object")
            assert ssl_object.selected_alpn_protocol() == "coap"

        import aiocoap

        async with our_client("tlsclient") as client:
            client.client_credentials.load_from_dict(
                {f"coaps+tcp://{authority}/*": {"tls": {"ca-file": pki.other_ca}}}
            )
            with pytest.raises(aiocoap.error.NetworkError, match="certificate verify failed"):
                await fetch(client, f"coaps+tcp://{authority}/time")
