"""Interoperability with libcoap (4.3) over UDP on loopback.

Two directions:

* libcoap's ``coap-client-notls`` talks to our server (the ``our_server``
  site of ``conftest.py``): every method, blockwise in both directions,
  observation, link format, errors, IPv6.
* our client talks to libcoap's ``coap-server-notls``: its built-in
  resources (``/``, ``/time``, ``/.well-known/core``), dynamic resources
  created by PUT (``-d``), blockwise, NON, observe, and a request to a closed
  port failing fast with :class:`aiocoap.error.NetworkError`.

The coap-client runs are subprocesses started with asyncio, so our server
keeps serving on the test's event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import pytest

from .conftest import (
    BIG_PAYLOAD,
    HELLO_PAYLOAD,
    closed_port,
    start_libcoap_server,
    stop_process,
)

pytestmark = pytest.mark.interop


def parse_link_format(text: str) -> dict:
    """Map each target of an RFC 6690 document to its attributes (a dict of
    attribute name to value, True for attributes without a value).

    Deliberately independent of the library's own link-format code."""
    links = {}
    # split at commas outside of <...> and "..."
    parts, current, quoted, in_target = [], [], False, False
    for char in text:
        if char == '"' and not in_target:
            quoted = not quoted
        elif char == "<" and not quoted:
            in_target = True
        elif char == ">" and not quoted:
            in_target = False
        if char == "," and not quoted and not in_target:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    for part in parts:
        part = part.strip()
        if not part:
            continue
        m = re.match(r"<([^>]*)>(.*)$", part, re.S)
        assert m is not None, f"not a link: {part!r} in {text!r}"
        attributes = {}
        for attribute in filter(None, (a.strip() for a in m[2].split(";"))):
            name, eq, value = attribute.partition("=")
            attributes[name] = value.strip('"') if eq else True
        links[m[1]] = attributes
    return links


# ======================================== libcoap client -> our server


async def test_get(our_server, coap_client):
    async with our_server as server:
        run = await coap_client(server.uri("/hello"))
    assert run.code == "2.05", run.describe()
    assert run.payload == HELLO_PAYLOAD
    assert run.responses[-1].mtype == "ACK", "CON request answered piggybacked"


async def test_get_non(our_server, coap_client):
    async with our_server as server:
        run = await coap_client(server.uri("/hello"), "-N")
    assert run.code == "2.05", run.describe()
    assert run.payload == HELLO_PAYLOAD
    assert run.responses[-1].mtype == "NON", "NON request answered with NON"


async def test_put_replaces(our_server, coap_client):
    async with our_server as server:
        put = await coap_client(server.uri("/store"), "-m", "put", "-e", "stored by libcoap")
        get = await coap_client(server.uri("/store"))
    assert put.code == "2.04", put.describe()
    assert server.state.store == b"stored by libcoap"
    assert get.code == "2.05", get.describe()
    assert get.payload == b"stored by libcoap"


async def test_delete(our_server, coap_client):
    async with our_server as server:
        delete = await coap_client(server.uri("/store"), "-m", "delete")
        get = await coap_client(server.uri("/store"))
    assert delete.code == "2.02", delete.describe()
    assert server.state.store is None
    assert get.code == "4.04", get.describe()


async def test_post_creates(our_server, coap_client):
    async with our_server as server:
        post = await coap_client(server.uri("/items"), "-m", "post", "-e", "first item")
        assert post.code == "2.01", post.describe()
        location = post.responses[-1].option_values("Location-Path")
        assert location == ["items", "1"], post.describe()
        get = await coap_client(server.uri("/" + "/".join(location)))
    assert server.state.items == {"1": b"first item"}
    assert get.code == "2.05", get.describe()
    assert get.payload == b"first item"


async def test_fetch_echoes(our_server, coap_client):
    async with our_server as server:
        run = await coap_client(
            server.uri("/echo"), "-m", "fetch", "-t", "0", "-e", "fetch me back"
        )
    assert run.code == "2.05", run.describe()
    assert run.payload == b"fetch me back"


async def test_not_found(our_server, coap_client):
    async with our_server as server:
        run = await coap_client(server.uri("/no/such/resource"))
    assert run.code == "4.04", run.describe()


async def test_method_not_allowed(our_server, coap_client):
    async with our_server as server:
        run = await coap_client(server.uri("/hello"), "-m", "post", "-e", "x")
    assert run.code == "4.05", run.describe()


async def test_unknown_critical_option_rejected(our_server, coap_client):
    # RFC 7252 5.4.1: an unrecognized critical (odd-numbered) option in a
    # CON request makes it 4.02 Bad Option; 9 and 2053 are unassigned
    async with our_server as server:
        runs = [await coap_client(server.uri("/hello"), "-O", f"{number},x")
                for number in (9, 2053)]
    for run in runs:
        assert run.code == "4.02", run.describe()


async def test_unknown_elective_option_ignored(our_server, coap_client):
    async with our_server as server:
        run = await coap_client(server.uri("/hello"), "-O", "4096,x")
    assert run.code == "2.05", run.describe()
    assert run.payload == HELLO_PAYLOAD


async def test_non_put(our_server, coap_client):
    async with our_server as server:
        run = await coap_client(server.uri("/store"), "-N", "-m", "put", "-e", "sent as NON")
    assert run.code == "2.04", run.describe()
    assert run.responses[-1].mtype == "NON"
    assert server.state.store == b"sent as NON"


async def test_well_known_core(our_server, coap_client):
    async with our_server as server:
        run = await coap_client(server.uri("/.well-known/core"))
    assert run.code == "2.05", run.describe()
    links = parse_link_format(run.payload.decode("utf-8"))
    for path in ("/hello", "/store", "/items", "/echo", "/big", "/counter"):
        assert path in links, f"{path} missing from {links}"
    assert links["/hello"].get("rt") == "x.hello"
    assert links["/hello"].get("ct") == "0"
    assert links["/items"].get("rt") == "x.collection"
    assert "obs" in links["/counter"], links["/counter"]


@pytest.mark.parametrize("block_size", [None, 64, 256])
async def test_block2_get(our_server, coap_client, block_size):
    assert len(BIG_PAYLOAD) > 1024
    args = ("-b", str(block_size)) if block_size else ()
    async with our_server as server:
        run = await coap_client(server.uri("/big"), *args)
    assert run.code == "2.05", run.describe()
    assert run.payload == BIG_PAYLOAD
    block_size = block_size or 1024
    blocks = -(-len(BIG_PAYLOAD) // block_size)
    assert len(run.responses) == blocks, run.describe()
    assert all(r.option_values("Block2") for r in run.responses)


async def test_block1_put(our_server, coap_client, tmp_path):
    body = secrets.token_hex(1500).encode()
    source = tmp_path / "body"
    source.write_bytes(body)
    async with our_server as server:
        run = await coap_client(server.uri("/big"), "-m", "put", "-b", "64", "-f", str(source))
    assert run.code == "2.04", run.describe()
    assert server.state.store == body
    assert run.payload == str(len(body)).encode()
    first_request = next(m for m in run.messages if m.code == "PUT")
    assert first_request.option_values("Block1") == ["0/M/64"], run.describe()


async def test_observe(our_server, coap_client):
    async with our_server as server:
        run = await coap_client(server.uri("/counter"), "-s", "2", wait=3)
        notifications = [r for r in run.responses if r.option_values("Observe")]
        assert len(notifications) >= 4, run.describe()
        values = [int(n.payload_text) for n in notifications]
        assert values == sorted(values) and len(set(values)) >= 4, run.describe()
        # the observation ends once coap-client is gone (it cancels, or
        # rejects / can not receive the next notification)
        deadline = time.monotonic() + 5
        while server.state.observers and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert server.state.observers == 0


async def test_concurrent_clients(our_server, coap_client):
    async with our_server as server:
        runs = await asyncio.gather(
            *(coap_client(server.uri("/hello"), *(("-N",) if i % 2 else ())) for i in range(8))
        )
    for run in runs:
        assert run.code == "2.05", run.describe()
        assert run.payload == HELLO_PAYLOAD


async def test_ipv6(our_server_v6, coap_client):
    async with our_server_v6 as server:
        assert server.base.startswith("coap://[::1]:")
        run = await coap_client(server.uri("/hello"))
    assert run.code == "2.05", run.describe()
    assert run.payload == HELLO_PAYLOAD


# ======================================== our client -> libcoap server


async def request(context, code, uri, timeout=10, **kwargs):
    import aiocoap

    message = aiocoap.Message(code=code, uri=uri, **kwargs)
    return await asyncio.wait_for(context.request(message).response, timeout)


async def test_client_get_root(libcoap_server, client_context):
    import aiocoap

    async with client_context() as ctx:
        response = await request(ctx, aiocoap.GET, libcoap_server.uri("/"))
    assert response.code == aiocoap.CONTENT
    assert b"libcoap" in response.payload


async def test_client_get_time(libcoap_server, client_context):
    import aiocoap

    async with client_context() as ctx:
        response = await request(ctx, aiocoap.GET, libcoap_server.uri("/time"))
    assert response.code == aiocoap.CONTENT
    assert re.match(rb"^\w{3} [ \d]\d \d\d:\d\d:\d\d", response.payload), response.payload


async def test_client_well_known_core(libcoap_server, client_context):
    import aiocoap

    async with client_context() as ctx:
        response = await request(ctx, aiocoap.GET, libcoap_server.uri("/.well-known/core"))
    assert response.code == aiocoap.CONTENT
    assert response.opt.content_format == 40
    links = parse_link_format(response.payload.decode("utf-8"))
    assert "/" in links and "/time" in links, links
    assert "obs" in links["/time"]


async def test_client_put_post_delete(libcoap_server, client_context):
    import aiocoap

    uri = libcoap_server.uri(f"/dyn-{secrets.token_hex(4)}")
    async with client_context() as ctx:
        created = await request(ctx, aiocoap.PUT, uri, payload=b"one")
        changed = await request(ctx, aiocoap.PUT, uri, payload=b"two")
        got = await request(ctx, aiocoap.GET, uri)
        deleted = await request(ctx, aiocoap.DELETE, uri)
        gone = await request(ctx, aiocoap.GET, uri)
        not_allowed = await request(ctx, aiocoap.POST, libcoap_server.uri("/"), payload=b"x")
    assert created.code == aiocoap.CREATED
    assert changed.code == aiocoap.CHANGED
    assert (got.code, got.payload) == (aiocoap.CONTENT, b"two")
    assert deleted.code == aiocoap.DELETED
    assert gone.code == aiocoap.NOT_FOUND
    assert not_allowed.code == aiocoap.METHOD_NOT_ALLOWED


async def test_client_blockwise(libcoap_server, client_context):
    import aiocoap

    uri = libcoap_server.uri(f"/dyn-big-{secrets.token_hex(4)}")
    body = secrets.token_hex(2500).encode()
    async with client_context() as ctx:
        created = await request(ctx, aiocoap.PUT, uri, payload=body)
        got = await request(ctx, aiocoap.GET, uri)
        await request(ctx, aiocoap.DELETE, uri)
    assert created.code == aiocoap.CREATED
    assert got.code == aiocoap.CONTENT
    assert got.payload == body


async def test_client_not_found(libcoap_server, client_context):
    import aiocoap

    async with client_context() as ctx:
        response = await request(ctx, aiocoap.GET, libcoap_server.uri("/no/such/thing"))
    assert response.code == aiocoap.NOT_FOUND


async def test_client_non(libcoap_server, client_context):
    import aiocoap

    async with client_context() as ctx:
        response = await request(ctx, aiocoap.GET, libcoap_server.uri("/"), transport_tuning=aiocoap.Unreliable)
    assert response.code == aiocoap.CONTENT
    assert response.mtype == aiocoap.NON
    assert b"libcoap" in response.payload


async def test_client_observe(libcoap_server, client_context):
    import aiocoap

    async with client_context() as ctx:
        message = aiocoap.Message(code=aiocoap.GET, uri=libcoap_server.uri("/time"), observe=0)
        pending = ctx.request(message)
        first = await asyncio.wait_for(pending.response, 10)
        assert first.code == aiocoap.CONTENT
        assert first.opt.observe is not None
        notifications = []

        async def collect():
            async for notification in pending.observation:
                notifications.append(notification)
                if len(notifications) == 2:
                    break

        await asyncio.wait_for(collect(), 5)
        pending.observation.cancel()
    assert all(n.code == aiocoap.CONTENT for n in notifications)
    assert notifications[0].opt.observe < notifications[1].opt.observe


async def test_client_many_concurrent(libcoap_server, client_context):
    import aiocoap

    async with client_context() as ctx:
        responses = await asyncio.gather(
            *(request(ctx, aiocoap.GET, libcoap_server.uri("/time")) for _ in range(50))
        )
    assert all(r.code == aiocoap.CONTENT for r in responses)


async def test_client_closed_port_fails_fast(client_context):
    import aiocoap
    from aiocoap import error

    port = closed_port("127.0.0.1")
    async with client_context() as ctx:
        started = time.monotonic()
        with pytest.raises(error.NetworkError):
            await request(ctx, aiocoap.GET, f"coap://127.0.0.1:{port}/x", timeout=20)
        elapsed = time.monotonic() - started
    # ICMP port unreachable arrives at once; without using it the request
    # would only fail after the CON retransmissions (about 93 s)
    assert elapsed < 5, f"took {elapsed:.1f} s"


async def test_client_ipv6(coap_server_bin, client_context, tmp_path):
    import socket

    import aiocoap

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback (::1) on this machine")
    server = start_libcoap_server(coap_server_bin, tmp_path, host="::1")
    try:
        async with client_context() as ctx:
            response = await request(ctx, aiocoap.GET, server.uri("/"))
    finally:
        stop_process(server.process)
    assert server.base.startswith("coap://[::1]:")
    assert response.code == aiocoap.CONTENT
    assert b"libcoap" in response.payload
