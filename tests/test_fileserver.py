"""aiocoap-fileserver, reading: files of every size class (Block2 served
from file ranges, memory bounded), ETags, directory listings (up to 10 000
entries, paged by Block2), observation of files and directories while they
change, over real loopback sockets.

Path safety is in test_fileserver_safety.py, writes in
test_fileserver_write.py, the command line in test_fileserver_cli.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc

import pytest

from aiocoap import Message, error
from aiocoap.cli._fileserver_watch import watchfiles_available
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat
from aiocoap.util import linkformat

from fileserver_support import serving

pytestmark = pytest.mark.core

WATCHERS = ["poll", pytest.param("watchfiles", marks=pytest.mark.skipif(
    not watchfiles_available(), reason="watchfiles is not installed (aiocoap[fileserver])"))]


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic content that differs in every block."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


@pytest.mark.parametrize("size", [0, 1, 1024, 1025, 5000])
async def test_file_sizes(tmp_path, size):
    body = pattern(size)
    (tmp_path / "f.bin").write_bytes(body)
    async with serving(tmp_path) as s:
        response = await s.get("/f.bin")
        assert response.code == Code.CONTENT
        assert response.payload == body
        assert response.opt.content_format == ContentFormat.OCTETSTREAM
        assert len(response.opt.etag) == 8
        first = await s.get("/f.bin", blockwise=False)
        if size <= 1024:
            assert first.opt.block2 is None
            assert first.payload == body
        else:
            assert first.opt.block2 == (0, True, 6)
            assert first.opt.size2 == size
            assert first.payload == body[:1024]


async def test_content_formats(tmp_path):
    files = {"a.txt": ContentFormat.TEXT, "b.json": ContentFormat.JSON, "c.cbor": ContentFormat.CBOR,
             "d.css": ContentFormat.TEXT_CSS, "e.unknownext": None, "f.json.gz": None}
    for name in files:
        (tmp_path / name).write_bytes(b"x")
    async with serving(tmp_path) as s:
        for name, ct in files.items():
            response = await s.get("/" + name)
            assert response.code == Code.CONTENT, name
            assert response.opt.content_format == ct, name


async def test_ten_mebibytes_in_blocks_memory_bounded(tmp_path):
    """A 10 MiB file fetched block by block: every block is right, the ETag
    stays, and the server never holds much more than a block (the client
    here keeps nothing but a running hash).

    Over TCP: over UDP, the message layer keeps every reply for
    deduplication for EXCHANGE_LIFETIME, which is the message layer's
    (bounded) memory, not the file server's."""
    size = 10 << 20
    body = pattern(size, seed=10)
    (tmp_path / "big").write_bytes(body)
    expected = hashlib.sha256(body).hexdigest()
    del body
    async with serving(tmp_path, scheme="coap+tcp") as s:
        digest = hashlib.sha256()
        etag = None
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            number = 0
            while True:
                response = await s.request("/big", block2=(number, False, 6), blockwise=False)
                assert response.code == Code.CONTENT
                etag = etag or response.opt.etag
                assert response.opt.etag == etag
                digest.update(response.payload)
                if not response.opt.block2.more:
                    break
                assert len(response.payload) == 1024
                number += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert number == size // 1024 - 1
        assert digest.hexdigest() == expected
        assert peak < 1 << 20, f"peak traced memory {peak} bytes for a 10 MiB transfer"


async def test_large_file_through_the_blockwise_client(tmp_path):
    body = pattern(300_000, seed=3)
    (tmp_path / "large.bin").write_bytes(body)
    async with serving(tmp_path) as s:
        response = await s.get("/large.bin")
        assert response.payload == body


async def test_random_access_and_block_sizes(tmp_path):
    body = pattern(10_000, seed=4)
    (tmp_path / "f").write_bytes(body)
    async with serving(tmp_path) as s:
        response = await s.request("/f", block2=(5, False, 4), blockwise=False)  # 256 byte blocks
        assert response.opt.block2 == (5, True, 4)
        assert response.payload == body[1280:1536]
        response = await s.request("/f", block2=(39, False, 4), blockwise=False)
        assert response.opt.block2 == (39, False, 4)
        assert response.payload == body[9984:]
        response = await s.request("/f", block2=(40, False, 4), blockwise=False)
        assert response.code == Code.BAD_OPTION
        small = await s.get("/f", block2=(0, False, 0))  # 16 byte blocks through the client
        assert small.payload == body
        response = await s.request("/f", block2=(0, False, 7), blockwise=False)
        assert response.code == Code.BAD_REQUEST  # no BERT over UDP


async def test_etag_validation(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"one")
    async with serving(tmp_path) as s:
        first = await s.get("/f.txt")
        etag = first.opt.etag
        valid = await s.get("/f.txt", etags=[b"other", etag])
        assert valid.code == Code.VALID
        assert valid.opt.etag == etag
        assert valid.payload == b""
        path.write_bytes(b"two!")
        changed = await s.get("/f.txt", etags=[etag])
        assert changed.code == Code.CONTENT
        assert changed.payload == b"two!"
        assert changed.opt.etag != etag
        # A replacement by rename is a new file even with equal size and times.
        replacement = tmp_path / "g.txt"
        replacement.write_bytes(b"two!")
        stat = path.stat()
        os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        os.replace(replacement, path)
        renamed = await s.get("/f.txt", etags=[changed.opt.etag])
        assert renamed.code == Code.CONTENT
        # Blocks of a listing validate too.
        listing = await s.get("/")
        assert (await s.get("/", etags=[listing.opt.etag])).code == Code.VALID


@pytest.mark.parametrize("length", [0, 3, 8])
async def test_etag_length(tmp_path, length):
    (tmp_path / "f").write_bytes(b"x")
    async with serving(tmp_path, etag_length=length) as s:
        response = await s.get("/f")
        if length:
            assert len(response.opt.etag) == length
            assert (await s.get("/f", etags=[response.opt.etag])).code == Code.VALID
        else:
            assert response.opt.etag is None


def make_tree(root):
    (root / "readme.txt").write_text("hello")
    (root / "data.json").write_text("{}")
    (root / "noext").write_bytes(b"\0")
    (root / "sub").mkdir()
    (root / "sub" / "inner.cbor").write_bytes(b"\xa0")
    (root / ".hidden").write_text("secret")
    (root / ".hiddendir").mkdir()
    (root / "with space & ü:colon").write_text("odd name")
    (root / "link-to-sub").symlink_to("sub")
    (root / "link-to-readme").symlink_to("readme.txt")
    (root / "link-out").symlink_to("/etc")
    (root / "dangling").symlink_to("nothing-here")
    (root / os.fsdecode(b"latin1-\xe4")).write_bytes(b"not UTF-8 named")
    os.mkfifo(root / "fifo")


async def test_listing(tmp_path):
    make_tree(tmp_path)
    async with serving(tmp_path) as s:
        response = await s.get("/")
        assert response.code == Code.CONTENT
        assert response.opt.content_format == ContentFormat.LINKFORMAT
        links = {link.href: link for link in linkformat.parse(response.payload)}
        assert set(links) == {
            "/readme.txt", "/data.json", "/noext", "/sub/", "/with%20space%20&%20%C3%BC:colon",
            "/link-to-sub/", "/link-to-readme",
        }
        assert links["/readme.txt"].get("ct") == "0"
        assert links["/data.json"].get("ct") == "50"
        assert "ct" not in links["/noext"]
        assert links["/sub/"].get("ct") == "40"
        sub = await s.get("/sub/")
        assert [link.href for link in linkformat.parse(sub.payload)] == ["/sub/inner.cbor"]
        via_link = await s.get("/link-to-sub/")
        assert [link.href for link in linkformat.parse(via_link.payload)] == ["/link-to-sub/inner.cbor"]
        odd = await s.get("/with space & ü:colon")
        assert odd.payload == b"odd name"
        assert (await s.get("/link-to-readme")).payload == b"hello"


async def test_listing_with_hidden_files(tmp_path):
    make_tree(tmp_path)
    (tmp_path / ".aiocoap-upload.0123").write_text("an unfinished upload")
    async with serving(tmp_path, hidden=True) as s:
        hrefs = {link.href for link in linkformat.parse((await s.get("/")).payload)}
        assert {"/.hidden", "/.hiddendir/"} <= hrefs
        assert "/.aiocoap-upload.0123" not in hrefs
        assert (await s.get("/.hidden")).payload == b"secret"
        assert (await s.get("/.aiocoap-upload.0123")).code == Code.NOT_FOUND


async def test_listing_of_ten_thousand_entries(tmp_path):
    directory = tmp_path / "many"
    directory.mkdir()
    for i in range(10_000):
        (directory / f"entry-{i:05d}.txt").touch()
    async with serving(tmp_path) as s:
        first = await s.get("/many/", blockwise=False)
        assert first.opt.block2 == (0, True, 6)
        total = first.opt.size2
        assert total > 250_000
        response = await s.get("/many/")
        assert len(response.payload) == total
        links = list(linkformat.parse(response.payload))
        assert len(links) == 10_000
        assert links[0].href == "/many/entry-00000.txt"
        assert links[-1].href == "/many/entry-09999.txt"
        assert all(link.get("ct") == "0" for link in links)
        # Later blocks come from the cached listing and keep its ETag.
        block = await s.get("/many/", block2=(150, False, 6), blockwise=False)
        assert block.opt.etag == first.opt.etag
        assert block.payload == response.payload[150 * 1024:151 * 1024]


async def test_directory_and_file_slashes(tmp_path):
    make_tree(tmp_path)
    async with serving(tmp_path) as s:
        response = await s.get("/sub")
        assert response.code == Code.BAD_REQUEST
        assert b"trailing slash" in response.payload
        response = await s.get("/readme.txt/")
        assert response.code == Code.BAD_REQUEST
        assert b"remove the trailing slash" in response.payload
        assert (await s.get("/missing")).code == Code.NOT_FOUND
        assert (await s.get("/missing/")).code == Code.NOT_FOUND
        assert (await s.get("/missing/deeper")).code == Code.NOT_FOUND


async def test_accept(tmp_path):
    make_tree(tmp_path)
    async with serving(tmp_path) as s:
        assert (await s.get("/", accept=ContentFormat.JSON)).code == Code.NOT_ACCEPTABLE
        assert (await s.get("/", accept=ContentFormat.LINKFORMAT)).code == Code.CONTENT
        assert (await s.get("/data.json", accept=ContentFormat.JSON)).code == Code.CONTENT
        assert (await s.get("/data.json", accept=ContentFormat.TEXT)).code == Code.NOT_ACCEPTABLE
        unknown = await s.get("/noext", accept=ContentFormat.OCTETSTREAM)
        assert unknown.code == Code.CONTENT
        assert unknown.opt.content_format == ContentFormat.OCTETSTREAM


async def test_well_known_core_and_methods(tmp_path):
    async with serving(tmp_path) as s:
        response = await s.get("/.well-known/core")
        (link,) = linkformat.parse(response.payload)
        assert link.href == "/"
        assert link.get("rt") == "tag:chrysn@fsfe.org,2022:fileserver"
        assert (await s.request("/", Code.POST)).code == Code.METHOD_NOT_ALLOWED
        assert (await s.request("/x", Code.FETCH)).code == Code.METHOD_NOT_ALLOWED


# ------------------------------------------------------------------ observe


async def next_notification(iterator, timeout=5.0) -> Message:
    return await asyncio.wait_for(iterator.__anext__(), timeout)


@pytest.mark.parametrize("watch", WATCHERS)
async def test_observe_file_while_rewritten(tmp_path, watch):
    path = tmp_path / "log.txt"
    path.write_bytes(b"version 0")
    async with serving(tmp_path, watch=watch, poll_interval=0.05) as s:
        request = s.client.request(s.message("/log.txt", observe=0))
        first = await request.response
        assert first.payload == b"version 0"
        assert first.opt.observe is not None
        notifications = request.observation.__aiter__()
        for version in range(1, 4):
            # Same length every time: only the state of the file tells.
            path.write_bytes(b"version %d" % version)
            while True:
                notification = await next_notification(notifications)
                if notification.payload == b"version %d" % version:
                    break
                assert notification.payload == b"version %d" % (version - 1)
        # A replacement by rename (as editors and our PUT do) is seen too.
        (tmp_path / "new").write_bytes(b"replaced")
        os.replace(tmp_path / "new", path)
        while (await next_notification(notifications)).payload != b"replaced":
            pass
        assert s.server._watcher.directories == {str(tmp_path.resolve())}
        # Once the file is gone, the observation ends (with a 4.04, which
        # the client reports as the end of the observation).
        path.unlink()
        with pytest.raises(error.ObservationCancelled):
            while True:
                await next_notification(notifications)
        assert s.server._watched == {}


@pytest.mark.parametrize("watch", WATCHERS)
async def test_observe_directory(tmp_path, watch):
    (tmp_path / "a").write_bytes(b"a")
    async with serving(tmp_path, watch=watch, poll_interval=0.05) as s:
        request = s.client.request(s.message("/", observe=0))
        first = await request.response
        assert [link.href for link in linkformat.parse(first.payload)] == ["/a"]
        notifications = request.observation.__aiter__()
        (tmp_path / "b").write_bytes(b"b")
        (tmp_path / "c").write_bytes(b"c")
        while True:
            notification = await next_notification(notifications)
            if [link.href for link in linkformat.parse(notification.payload)] == ["/a", "/b", "/c"]:
                break
        # A change of a file's content does not change the listing: no
        # notification for that.
        (tmp_path / "a").write_bytes(b"longer content")
        with pytest.raises(asyncio.TimeoutError):
            await next_notification(notifications, timeout=0.5)
        request.observation.cancel()


async def test_observe_large_file_notifies_first_block(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(pattern(5000, seed=1))
    async with serving(tmp_path, watch="poll", poll_interval=0.05) as s:
        request = s.client.request(s.message("/big", observe=0))
        first = await request.response
        assert first.payload == pattern(5000, seed=1)
        notifications = request.observation.__aiter__()
        path.write_bytes(pattern(6000, seed=2))
        while (notification := await next_notification(notifications)).payload != pattern(6000, seed=2):
            pass
        request.observation.cancel()


async def test_one_watch_per_directory_and_caps(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a", "b", "sub/c"):
        (tmp_path / name).write_bytes(b"x")
    async with serving(tmp_path, watch="poll", poll_interval=0.05, max_observations=5) as s:
        requests = []
        for path in ("/a", "/a", "/b", "/", "/sub/c"):
            request = s.client.request(s.message(path, observe=0))
            assert (await request.response).opt.observe is not None
            requests.append(request)
        watcher = s.server._watcher
        assert watcher.directories == {str(tmp_path.resolve()), str((tmp_path / "sub").resolve())}
        assert len(s.server._watched) == 4  # /a is one watched path with two observers
        # The sixth is served, but not observed.
        extra = await s.get("/b", observe=0)
        assert extra.code == Code.CONTENT
        assert extra.opt.observe is None
        for request in requests:
            request.observation.cancel()
        for _ in range(100):
            if not s.server._watched:
                break
            await asyncio.sleep(0.01)
        assert s.server._watched == {}
        assert watcher.directories == frozenset()


async def test_observe_refused_for_missing_and_mismatched(tmp_path):
    (tmp_path / "sub").mkdir()
    async with serving(tmp_path, watch="poll") as s:
        assert (await s.get("/missing", observe=0)).code == Code.NOT_FOUND
        assert (await s.get("/sub", observe=0)).code == Code.BAD_REQUEST
        assert (await s.get("/../x", observe=0)).code == Code.FORBIDDEN
        assert s.server._watched == {}


@pytest.mark.parametrize("watch", WATCHERS)
async def test_watch_grows_and_directories_vanish(tmp_path, watch):
    """A directory joining the watch (which restarts the notification
    backend) is watched from then on without losing the others; an
    observed directory that is removed ends its observation."""
    (tmp_path / "a").write_bytes(b"a0")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c").write_bytes(b"c0")
    (tmp_path / "gone").mkdir()
    async with serving(tmp_path, watch=watch, poll_interval=0.05) as s:
        observations = {}
        for path in ("/a", "/sub/c", "/gone/"):
            request = s.client.request(s.message(path, observe=0))
            await request.response
            observations[path] = (request, request.observation.__aiter__())
        for path, new in (("sub/c", b"c1"), ("a", b"a1"), ("sub/c", b"c2")):
            (tmp_path / path).write_bytes(new)
            iterator = observations["/" + path][1]
            while (await next_notification(iterator)).payload != new:
                pass
        (tmp_path / "gone").rmdir()
        with pytest.raises(error.ObservationCancelled):
            while True:
                await next_notification(observations["/gone/"][1])
        for request, _ in observations.values():
            request.observation.cancel()
