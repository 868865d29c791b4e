"""aiocoap-fileserver with libcoap 4.3's ``coap-client-notls`` over UDP on
loopback: downloading a file of many blocks (also from the middle), a
directory listing of many blocks, a small file with its Content-Format,
and (with writes enabled) uploading a file in Block1 blocks.
"""

from __future__ import annotations

import contextlib
import hashlib

import pytest

from .conftest import free_port, hostport

pytestmark = pytest.mark.interop

BODY = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(4000))  # 128 000 bytes


@contextlib.asynccontextmanager
async def file_server(root, **kwargs):
    """Our FileServer for ``root`` on a free port of 127.0.0.1; yields the
    base URI."""
    from aiocoap import Context
    from aiocoap.cli.fileserver import FileServer

    server = FileServer(root, **kwargs)
    context = None
    try:
        for attempt in range(3):
            port = free_port("127.0.0.1")
            try:
                context = await Context.create_server_context(server, bind=("127.0.0.1", port))
                break
            except OSError:
                if attempt == 2:
                    raise
        yield f"coap://{hostport('127.0.0.1', port)}"
    finally:
        if context is not None:
            await context.shutdown()
        await server.shutdown()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "body.bin").write_bytes(BODY)
    (root / "hello.txt").write_bytes(b"Hello from the file server")
    many = root / "many"
    many.mkdir()
    for i in range(300):
        (many / f"file-{i:03d}.json").write_bytes(b"{}")
    return root


async def test_libcoap_downloads_a_file(coap_client, tree):
    async with file_server(tree) as base:
        run = await coap_client(base + "/body.bin", "-b", "1024", wait=20)
        assert run.code == "2.05", run.describe()
        assert run.payload == BODY
        assert len(run.responses) == len(BODY) // 1024, run.describe()
        etags = {tuple(r.option_values("ETag")) for r in run.responses}
        assert len(etags) == 1 and etags != {()}
        small = await coap_client(base + "/hello.txt")
        assert small.code == "2.05", small.describe()
        assert small.payload == b"Hello from the file server"
        assert small.responses[-1].option_values("Content-Format") == ["text/plain"], small.describe()
        middle = await coap_client(base + "/body.bin", "-b", "9,256", wait=20)
        assert middle.payload == BODY[9 * 256:10 * 256], middle.describe()


async def test_libcoap_downloads_a_listing(coap_client, tree):
    from aiocoap.util import linkformat

    async with file_server(tree) as base:
        run = await coap_client(base + "/many/", "-b", "1024", wait=20)
        assert run.code == "2.05", run.describe()
        links = list(linkformat.parse(run.payload))
        assert [link.href for link in links] == [f"/many/file-{i:03d}.json" for i in range(300)]
        assert all(link.get("ct") == "50" for link in links)
        assert len(run.responses) > 1, "the listing came in blocks"
        missing = await coap_client(base + "/many")
        assert missing.code == "4.00", missing.describe()
        assert b"trailing slash" in missing.stdout.encode() or "trailing slash" in missing.stderr


async def test_libcoap_uploads_a_file(coap_client, tree, tmp_path):
    source = tmp_path / "upload"
    source.write_bytes(BODY[:50_000])
    async with file_server(tree, write=True) as base:
        run = await coap_client(base + "/uploaded.bin", "-m", "put", "-b", "1024", "-f", str(source), wait=20)
        assert run.code == "2.01", run.describe()
        assert (tree / "uploaded.bin").read_bytes() == BODY[:50_000]
        back = await coap_client(base + "/uploaded.bin", "-b", "1024", wait=20)
        assert back.payload == BODY[:50_000]
