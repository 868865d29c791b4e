"""aiocoap-fileserver, writing (``write=True``): PUT creating and replacing
files atomically, in one message or in Block1 blocks spooled to disk,
DELETE, the preconditions of RFC 7252 §5.10.8, concurrent writers, and
what hostile uploads get: half-finished ones expire and free their
temporary files, the caps on unfinished uploads and on sizes hold.
"""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from aiocoap import Context, Message
from aiocoap.cli._fileserver_fs import UPLOAD_PREFIX
from aiocoap.numbers.codes import Code

from fileserver_support import serving
from test_fileserver import pattern

pytestmark = pytest.mark.core


def leftovers(root):
    return list(root.rglob(UPLOAD_PREFIX + "*"))


async def test_read_only_by_default(tmp_path):
    (tmp_path / "f").write_bytes(b"keep")
    async with serving(tmp_path) as s:
        for response in (await s.put("/f", b"new"), await s.put("/g", b"new"), await s.delete("/f")):
            assert response.code == Code.FORBIDDEN
            assert b"--write" in response.payload
    assert (tmp_path / "f").read_bytes() == b"keep"
    assert not (tmp_path / "g").exists()


async def test_put_creates_and_replaces(tmp_path):
    async with serving(tmp_path, write=True) as s:
        created = await s.put("/new.txt", b"first")
        assert created.code == Code.CREATED
        assert (tmp_path / "new.txt").read_bytes() == b"first"
        got = await s.get("/new.txt")
        assert got.opt.etag == created.opt.etag
        os.chmod(tmp_path / "new.txt", 0o600)
        changed = await s.put("/new.txt", b"second")
        assert changed.code == Code.CHANGED
        assert changed.opt.etag != created.opt.etag
        assert (tmp_path / "new.txt").read_bytes() == b"second"
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o600
        assert (await s.put("/empty", b"")).code == Code.CREATED
        assert (tmp_path / "empty").read_bytes() == b""
    assert leftovers(tmp_path) == []


async def test_put_in_blocks(tmp_path):
    body = pattern(200_000, seed=5)
    (tmp_path / "big").write_bytes(b"old")
    async with serving(tmp_path, write=True) as s:
        response = await s.put("/big", body)
        assert response.code == Code.CHANGED
        assert response.opt.block1 is not None and not response.opt.block1.more
        assert (tmp_path / "big").read_bytes() == body
        assert (await s.get("/big")).payload == body
        # Small blocks, requested by the client.
        response = await s.put("/small-blocks", body[:5000], block1=(0, True, 2))
        assert response.code == Code.CREATED
        assert (tmp_path / "small-blocks").read_bytes() == body[:5000]
    assert leftovers(tmp_path) == []


async def test_old_content_until_the_last_block(tmp_path):
    (tmp_path / "f").write_bytes(b"old content")
    body = pattern(3000, seed=6)
    async with serving(tmp_path, write=True) as s:
        for number in range(2):
            response = await s.request("/f", Code.PUT, payload=body[number * 1024:(number + 1) * 1024],
                                       block1=(number, True, 6), request_tag=[b"t"], blockwise=False)
            assert response.code == Code.CONTINUE
            assert (await s.get("/f")).payload == b"old content"
        assert len(leftovers(tmp_path)) == 1
        response = await s.request("/f", Code.PUT, payload=body[2048:], block1=(2, False, 6), request_tag=[b"t"],
                                   blockwise=False)
        assert response.code == Code.CHANGED
        assert (await s.get("/f")).payload == body
    assert leftovers(tmp_path) == []


async def test_preconditions(tmp_path):
    async with serving(tmp_path, write=True) as s:
        # If-None-Match: only if absent
        assert (await s.put("/f", b"one", if_none_match=True)).code == Code.CREATED
        refused = await s.put("/f", b"two", if_none_match=True)
        assert refused.code == Code.PRECONDITION_FAILED
        assert (tmp_path / "f").read_bytes() == b"one"
        etag = (await s.get("/f")).opt.etag
        # If-Match with the current ETag, then with the stale one
        updated = await s.put("/f", b"two", if_match=[etag])
        assert updated.code == Code.CHANGED
        assert (await s.put("/f", b"three", if_match=[etag])).code == Code.PRECONDITION_FAILED
        assert (tmp_path / "f").read_bytes() == b"two"
        assert (await s.put("/f", b"three", if_match=[b"nope", updated.opt.etag])).code == Code.CHANGED
        # An empty If-Match: "if it exists"
        assert (await s.put("/g", b"x", if_match=[b""])).code == Code.PRECONDITION_FAILED
        assert not (tmp_path / "g").exists()
        assert (await s.put("/f", b"four", if_match=[b""])).code == Code.CHANGED
        # DELETE honours them too
        stale = etag
        assert (await s.delete("/f", if_match=[stale])).code == Code.PRECONDITION_FAILED
        assert (await s.delete("/f", if_none_match=True)).code == Code.PRECONDITION_FAILED
        assert (tmp_path / "f").exists()
        current = (await s.get("/f")).opt.etag
        assert (await s.delete("/f", if_match=[current])).code == Code.DELETED
        assert not (tmp_path / "f").exists()
        # Block1 uploads are checked before the first block is stored and
        # again when the last one arrives.
        (tmp_path / "h").write_bytes(b"exists")
        refused = await s.put("/h", pattern(5000), if_none_match=True)
        assert refused.code == Code.PRECONDITION_FAILED
    assert leftovers(tmp_path) == []


async def test_precondition_checked_at_the_last_block(tmp_path):
    async with serving(tmp_path, write=True) as s:
        body = pattern(2048)
        first = await s.request("/f", Code.PUT, payload=body[:1024], block1=(0, True, 6), if_none_match=True,
                                blockwise=False)
        assert first.code == Code.CONTINUE
        # Somebody else creates the file meanwhile.
        (tmp_path / "f").write_bytes(b"theirs")
        last = await s.request("/f", Code.PUT, payload=body[1024:], block1=(1, False, 6), if_none_match=True,
                               blockwise=False)
        assert last.code == Code.PRECONDITION_FAILED
        assert (tmp_path / "f").read_bytes() == b"theirs"
    assert leftovers(tmp_path) == []


async def test_delete(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    async with serving(tmp_path, write=True) as s:
        assert (await s.delete("/f")).code == Code.DELETED
        assert (await s.delete("/f")).code == Code.NOT_FOUND
        assert (await s.get("/f")).code == Code.NOT_FOUND
        assert (await s.delete("/sub/")).code == Code.METHOD_NOT_ALLOWED
        assert (await s.delete("/sub")).code == Code.BAD_REQUEST
        assert (await s.delete("/")).code == Code.METHOD_NOT_ALLOWED
    assert (tmp_path / "sub").is_dir()


async def test_directories_are_not_written(tmp_path):
    (tmp_path / "sub").mkdir()
    async with serving(tmp_path, write=True) as s:
        assert (await s.put("/sub/", b"x")).code == Code.METHOD_NOT_ALLOWED
        assert (await s.put("/sub", b"x")).code == Code.BAD_REQUEST
        assert (await s.put("/", b"x")).code == Code.METHOD_NOT_ALLOWED
        assert (await s.put("/missing-dir/f", b"x")).code == Code.NOT_FOUND
        assert (await s.put("/sub/f", b"x")).code == Code.CREATED
    assert (tmp_path / "sub").is_dir()
    assert (tmp_path / "sub" / "f").read_bytes() == b"x"


async def test_concurrent_writers(tmp_path):
    """Eight clients write eight different large bodies to one file at
    once: all succeed, and the file ends up as exactly one of them."""
    bodies = [pattern(20_000, seed=100 + i) for i in range(8)]
    async with serving(tmp_path, write=True, max_uploads_per_peer=8) as s:
        clients = [await Context.create_client_context(transports=["udp6"]) for _ in range(4)]
        try:
            requests = [
                clients[i % 4].request(Message(code=Code.PUT, uri=s.uri("/shared"), payload=body)).response
                for i, body in enumerate(bodies)
            ]
            responses = await asyncio.gather(*requests)
        finally:
            for client in clients:
                await client.shutdown()
        assert sorted(r.code for r in responses).count(Code.CREATED) <= 1
        assert all(r.code in (Code.CREATED, Code.CHANGED) for r in responses)
        assert (tmp_path / "shared").read_bytes() in bodies
        assert (await s.get("/shared")).payload in bodies
    assert leftovers(tmp_path) == []


async def test_concurrent_creators_with_if_none_match(tmp_path):
    async with serving(tmp_path, write=True, max_uploads_per_peer=8) as s:
        responses = await asyncio.gather(*(
            s.put("/once", pattern(3000, seed=i), if_none_match=True) for i in range(6)
        ))
        codes = [r.code for r in responses]
        assert codes.count(Code.CREATED) == 1
        assert codes.count(Code.PRECONDITION_FAILED) == 5
        winner = codes.index(Code.CREATED)
        assert (tmp_path / "once").read_bytes() == pattern(3000, seed=winner)
    assert leftovers(tmp_path) == []


# -------------------------------------------------------- hostile uploads


async def put_block(s, path, number, more, payload, tag=b"", **kwargs):
    return await s.request(path, Code.PUT, payload=payload, block1=(number, more, 6), request_tag=[tag] if tag else [],
                           blockwise=False, **kwargs)


async def test_oversized_uploads(tmp_path):
    async with serving(tmp_path, write=True, max_upload_size=4096) as s:
        response = await s.put("/f", b"x" * 5000, blockwise=False)
        assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert response.opt.size1 == 4096
        # announced too large in Size1
        response = await put_block(s, "/f", 0, True, b"x" * 1024, size1=1 << 30)
        assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert response.opt.size1 == 4096
        # growing too large while it arrives
        for number in range(4):
            assert (await put_block(s, "/f", number, True, b"x" * 1024)).code == Code.CONTINUE
        response = await put_block(s, "/f", 4, True, b"x" * 1024)
        assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert leftovers(tmp_path) == []
        # through the client: it gives up with the 4.13
        response = await s.put("/f", b"y" * 10_000)
        assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
        # exactly the limit is fine
        assert (await s.put("/f", b"z" * 4096)).code == Code.CREATED
    assert not leftovers(tmp_path)


async def test_malformed_and_out_of_order_blocks(tmp_path):
    async with serving(tmp_path, write=True) as s:
        # a block that continues nothing
        assert (await put_block(s, "/f", 3, True, b"x" * 1024)).code == Code.REQUEST_ENTITY_INCOMPLETE
        assert (await put_block(s, "/f", 0, True, b"x" * 1024)).code == Code.CONTINUE
        # skipping a block
        assert (await put_block(s, "/f", 2, True, b"x" * 1024)).code == Code.REQUEST_ENTITY_INCOMPLETE
        # a repeated block is answered again, not appended twice
        assert (await put_block(s, "/f", 0, True, b"x" * 1024)).code == Code.CONTINUE
        assert (await put_block(s, "/f", 1, True, b"y" * 1024)).code == Code.CONTINUE
        assert (await put_block(s, "/f", 1, True, b"y" * 1024)).code == Code.CONTINUE
        # a short block with the More bit set
        assert (await put_block(s, "/f", 2, True, b"z" * 100)).code == Code.BAD_REQUEST
        # another upload with another Request-Tag does not mix in
        assert (await put_block(s, "/f", 0, True, b"q" * 1024, tag=b"other")).code == Code.CONTINUE
        assert (await put_block(s, "/f", 2, False, b"end")).code == Code.CREATED
        assert (tmp_path / "f").read_bytes() == b"x" * 1024 + b"y" * 1024 + b"end"
        # BERT sizes over UDP
        response = await s.request("/f", Code.PUT, payload=b"x" * 1024, block1=(0, True, 7), blockwise=False)
        assert response.code == Code.BAD_REQUEST
        s.server.uploads.clear()
    assert leftovers(tmp_path) == []


async def test_half_finished_uploads_expire_and_are_capped(tmp_path):
    async with serving(tmp_path, write=True, max_uploads=3, max_uploads_per_peer=2, upload_timeout=0.3) as s:
        fds_before = len(os.listdir("/proc/self/fd"))
        assert (await put_block(s, "/a", 0, True, b"x" * 1024, tag=b"1")).code == Code.CONTINUE
        assert (await put_block(s, "/b", 0, True, b"x" * 1024, tag=b"2")).code == Code.CONTINUE
        # the per-peer cap
        refused = await put_block(s, "/c", 0, True, b"x" * 1024, tag=b"3")
        assert refused.code == Code.SERVICE_UNAVAILABLE
        assert 1 <= refused.opt.max_age <= 1
        # another port of the same host does not get around the cap (the
        # total cap is tested in test_fileserver_units.py)
        other = await Context.create_client_context(transports=["udp6"])
        try:
            response = await other.request(Message(
                code=Code.PUT, uri=s.uri("/c"), payload=b"x" * 1024, block1=(0, True, 6)), handle_blockwise=False
            ).response
            assert response.code == Code.SERVICE_UNAVAILABLE
        finally:
            await other.shutdown()
        assert len(leftovers(tmp_path)) == 2
        assert len(os.listdir("/proc/self/fd")) <= fds_before + 2 * 2 + 2
        # nobody finishes: after the timeout, everything is gone
        for _ in range(100):
            if not leftovers(tmp_path):
                break
            await asyncio.sleep(0.02)
        assert leftovers(tmp_path) == []
        assert len(s.server.uploads) == 0
        assert (await put_block(s, "/a", 1, False, b"late", tag=b"1")).code == Code.REQUEST_ENTITY_INCOMPLETE
        assert (await put_block(s, "/c", 0, True, b"x" * 1024, tag=b"3")).code == Code.CONTINUE
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "a").exists()


async def test_shutdown_removes_unfinished_uploads(tmp_path):
    async with serving(tmp_path, write=True) as s:
        assert (await put_block(s, "/a", 0, True, b"x" * 1024)).code == Code.CONTINUE
        assert len(leftovers(tmp_path)) == 1
    assert leftovers(tmp_path) == []


async def test_observers_see_own_writes(tmp_path):
    (tmp_path / "f").write_bytes(b"one")
    # Polling only every 10 s: the notification comes from the write itself.
    async with serving(tmp_path, write=True, watch="poll", poll_interval=10) as s:
        request = s.client.request(s.message("/f", observe=0))
        assert (await request.response).payload == b"one"
        listing = s.client.request(s.message("/", observe=0))
        await listing.response
        files = request.observation.__aiter__()
        directory = listing.observation.__aiter__()
        assert (await s.put("/f", b"two")).code == Code.CHANGED
        assert (await asyncio.wait_for(files.__anext__(), 2)).payload == b"two"
        assert (await s.put("/g", b"new")).code == Code.CREATED
        assert b"</g>" in (await asyncio.wait_for(directory.__anext__(), 2)).payload
        assert (await s.delete("/g")).code == Code.DELETED
        assert b"</g>" not in (await asyncio.wait_for(directory.__anext__(), 2)).payload
        request.observation.cancel()
        listing.observation.cancel()
