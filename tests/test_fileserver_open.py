"""The files aiocoap-fileserver keeps open between the blocks of a
transfer (``aiocoap.cli._fileserver_open``): the caps and expiry of
:class:`OpenFiles` on a fake clock, and over loopback what later blocks
see when the file changes in place, is replaced, or is written by the
server itself, and that every kept descriptor is closed in time.
"""

from __future__ import annotations

import asyncio
import os

from aiocoap.cli._fileserver_open import OpenFile, OpenFiles
from aiocoap.numbers.codes import Code
from aiocoap.options import Options
from aiocoap.optiontypes import BlockOption

from fileserver_support import serving
from test_fileserver_safety import open_descriptors

Block = BlockOption.BlockwiseTuple


def _entry(tmp_path, name: str, now: float, directory: str = "d") -> OpenFile:
    path = tmp_path / name
    path.write_bytes(b"x")
    return OpenFile(os.open(path, os.O_RDONLY), (), 1, None, Options(), directory, name, now)


def test_capacity_closes_least_recently_used(tmp_path):
    files = OpenFiles(max_entries=2, idle_timeout=5, lifetime=50)
    baseline = open_descriptors()
    files.put(("a",), _entry(tmp_path, "a", 0))
    files.put(("b",), _entry(tmp_path, "b", 0))
    assert files.get(("a",), 1) is not None  # (a is now the more recent)
    files.put(("c",), _entry(tmp_path, "c", 2))
    assert len(files) == 2
    assert files.get(("b",), 2) is None
    assert files.get(("a",), 2) is not None and files.get(("c",), 2) is not None
    files.put(("c",), _entry(tmp_path, "c2", 3))  # replacing closes the old one
    assert open_descriptors() == baseline + 2
    files.clear()
    assert len(files) == 0 and open_descriptors() == baseline


def test_idle_timeout_and_lifetime(tmp_path):
    files = OpenFiles(max_entries=8, idle_timeout=2, lifetime=10)
    baseline = open_descriptors()
    files.put(("busy",), _entry(tmp_path, "busy", 0))
    files.put(("idle",), _entry(tmp_path, "idle", 0))
    assert files.next_deadline() == 2
    for now in (1.5, 3, 4.5, 6, 7.5, 9):
        assert files.get(("busy",), now) is not None
    # (idle since 0: expired at 2, closed when asked for)
    assert files.get(("idle",), 2) is None
    assert open_descriptors() == baseline + 1
    # used every 1.5 s, but opened at 0: gone at 10 all the same
    assert files.next_deadline() == 10
    assert files.expire(9.9) == 0
    assert files.expire(10) == 1
    assert files.next_deadline() is None
    assert open_descriptors() == baseline


def test_discard_by_directory_and_name(tmp_path):
    files = OpenFiles()
    baseline = open_descriptors()
    files.put(("d", "a"), _entry(tmp_path, "a", 0, "/r/d"))
    files.put(("d", "b"), _entry(tmp_path, "b", 0, "/r/d"))
    files.put(("e", "a"), _entry(tmp_path, "a2", 0, "/r/e"))
    files.discard("/r/d", frozenset(("a",)))
    assert files.get(("d", "a"), 0) is None and files.get(("d", "b"), 0) is not None
    files.discard("/r/d", None)
    assert files.get(("d", "b"), 0) is None and files.get(("e", "a"), 0) is not None
    files.drop(("e", "a"))
    assert len(files) == 0 and open_descriptors() == baseline


async def _block(s, path: str, number: int):
    return await s.get(path, blockwise=False, block2=(number, False, 6))


async def test_later_blocks_follow_changes_in_place(tmp_path):
    """A file written in place between two blocks: the later block is read
    from the file as it is now, with its new ETag (never old ETag and new
    bytes)."""
    big = tmp_path / "big"
    big.write_bytes(b"a" * 8192)
    async with serving(tmp_path) as s:
        first = await _block(s, "/big", 0)
        assert len(s.server._open_files) == 1
        with open(big, "r+b") as f:
            f.seek(1024)
            f.write(b"b" * 2000)  # (larger than before: size and mtime change)
            f.seek(0, os.SEEK_END)
            f.write(b"c")
        second = await _block(s, "/big", 1)
        assert second.payload == b"b" * 1024
        assert second.opt.etag != first.opt.etag


async def test_replaced_or_deleted_file_is_not_served_from_the_old_one(tmp_path):
    """A file replaced by a rename or deleted between blocks: renaming over
    it or unlinking it changes its inode's ctime, so the later block comes
    from the new file (new ETag) or is 4.04."""
    (tmp_path / "big").write_bytes(b"a" * 8192)
    async with serving(tmp_path) as s:
        first = await _block(s, "/big", 0)
        (tmp_path / "new").write_bytes(b"n" * 8192)
        os.rename(tmp_path / "new", tmp_path / "big")
        second = await _block(s, "/big", 1)
        assert second.payload == b"n" * 1024 and second.opt.etag != first.opt.etag
        assert second.opt.block2 == Block(1, True, 6)
        assert len(s.server._open_files) == 1  # (the new one, opened for block 1)
        os.unlink(tmp_path / "big")
        assert (await _block(s, "/big", 2)).code == Code.NOT_FOUND
        assert len(s.server._open_files) == 0


async def test_moved_directory_served_fresh_after_lifetime(tmp_path):
    """A directory on the path replaced between blocks leaves the file
    itself unchanged: its later blocks come from the file the transfer
    started on until the entry's lifetime ends, then from the new one."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "big").write_bytes(b"a" * 8192)
    lifetime = 0.2
    async with serving(tmp_path, open_file_lifetime=lifetime) as s:
        first = await _block(s, "/d/big", 0)
        os.rename(tmp_path / "d", tmp_path / "old")
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "big").write_bytes(b"n" * 8192)
        second = await _block(s, "/d/big", 1)
        assert (second.payload, second.opt.etag) == (b"a" * 1024, first.opt.etag)
        await asyncio.sleep(lifetime * 1.5)
        assert len(s.server._open_files) == 0
        assert (await _block(s, "/d/big", 2)).payload == b"n" * 1024


async def test_own_writes_close_the_old_file(tmp_path):
    """A PUT or DELETE through the server closes what it kept open of that
    file: later blocks see the new file, or 4.04."""
    (tmp_path / "big").write_bytes(b"a" * 8192)
    async with serving(tmp_path, write=True) as s:
        await _block(s, "/big", 0)
        assert (await s.put("/big", b"p" * 4096)).code == Code.CHANGED
        assert len(s.server._open_files) == 0
        assert (await _block(s, "/big", 1)).payload == b"p" * 1024
        assert (await s.delete("/big")).code == Code.DELETED
        assert len(s.server._open_files) == 0
        assert (await _block(s, "/big", 2)).code == Code.NOT_FOUND


async def test_only_unfinished_transfers_keep_a_file_open(tmp_path):
    """Small files, and a last block asked for first, keep nothing open; a
    transfer keeps one descriptor per path, whatever the number of
    clients, until the idle timeout."""
    (tmp_path / "big").write_bytes(b"a" * 2048)
    (tmp_path / "small").write_bytes(b"s")
    idle = 0.2
    async with serving(tmp_path, open_file_idle_timeout=idle) as s:
        baseline = open_descriptors()
        assert (await s.get("/small")).payload == b"s"
        last = await _block(s, "/big", 1)
        assert not last.opt.block2.more
        assert len(s.server._open_files) == 0 and open_descriptors() == baseline
        for _ in range(3):
            assert (await s.get("/big")).payload == b"a" * 2048
        assert len(s.server._open_files) == 1 and open_descriptors() == baseline + 1
        await asyncio.sleep(idle * 2)
        assert len(s.server._open_files) == 0 and open_descriptors() == baseline


async def test_shutdown_closes_open_files(tmp_path):
    (tmp_path / "big").write_bytes(b"a" * 8192)
    baseline = open_descriptors()
    async with serving(tmp_path) as s:
        await _block(s, "/big", 0)
        assert len(s.server._open_files) == 1
    assert open_descriptors() <= baseline


async def test_small_files_from_memory_while_unchanged(tmp_path, monkeypatch):
    """A small file unchanged for a while is answered from memory, found by
    its path and state: a rewrite (new size, new times) is served at once,
    ETag validation still works, and no descriptor stays open."""
    import aiocoap.cli.fileserver as fileserver

    monkeypatch.setattr(fileserver, "settled", lambda st: True)  # (as if 2 s had passed)
    small = tmp_path / "small.txt"
    small.write_bytes(b"one")
    async with serving(tmp_path) as s:
        baseline = open_descriptors()
        first = await s.get("/small.txt")
        assert first.payload == b"one" and len(s.server._small_files._entries) == 1
        again = await s.get("/small.txt")
        assert (again.payload, again.opt.etag, again.opt.content_format) == (
            b"one", first.opt.etag, first.opt.content_format)
        assert (await s.get("/small.txt", etag=first.opt.etag)).code == Code.VALID
        small.write_bytes(b"two!")
        second = await s.get("/small.txt")
        assert second.payload == b"two!" and second.opt.etag != first.opt.etag
        assert open_descriptors() == baseline
