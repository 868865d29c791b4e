"""The pieces of aiocoap-fileserver without a network: the path resolver
against arbitrary request paths (hypothesis: whatever the segments, the
result is inside the root or a refusal), the upload table's caps and
expiry on a fake clock, the listing cache's bounds, content formats, and
the change watcher's reference counting.
"""

from __future__ import annotations

import asyncio
import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiocoap import error
from aiocoap.cli._fileserver_fs import (
    UPLOAD_PREFIX, ListingCache, NoSuchPath, PathForbidden, Root, check_segments, content_format_for,
)
from aiocoap.cli._fileserver_upload import UploadTable
from aiocoap.cli._fileserver_watch import ChangeWatcher


@pytest.fixture(scope="module")
def maze(tmp_path_factory):
    """A root full of links: inside, outside, chained, looping, to hidden
    names, absolute and relative; and a secret next to it."""
    base = tmp_path_factory.mktemp("maze")
    root = base / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "file").write_bytes(b"f")
    (root / "top").write_bytes(b"t")
    (root / ".hidden").write_bytes(b"h")
    (base / "secret").write_bytes(b"s")
    (base / "outdir").mkdir()
    links = {
        "in-rel": "a/b", "in-abs": str(root / "a"), "up": "..", "self": ".", "out-rel": "../secret",
        "out-abs": str(base / "secret"), "out-dir": "../outdir", "chain": "in-rel", "loop": "loop",
        "hid": ".hidden", "deep": "a/b/../../top", "root-abs": str(root), "escape": "a/../../root/top",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    (root / "a" / "back").symlink_to("..")
    (root / "a" / "b" / "sib").symlink_to("../../top")
    os.mkfifo(root / "fifo")
    return root


NAMES = st.sampled_from([
    "", ".", "..", "a", "b", "file", "top", ".hidden", "in-rel", "in-abs", "up", "self", "out-rel", "out-abs",
    "out-dir", "chain", "loop", "hid", "deep", "root-abs", "escape", "back", "sib", "fifo", "missing",
    "a/b", "/etc", "x\0y", UPLOAD_PREFIX + "1",
])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=st.lists(NAMES, max_size=8), hidden=st.booleans())
def test_resolution_stays_inside(maze, segments, hidden):
    root = Root(str(maze), hidden=hidden)
    real_root = os.path.realpath(maze)
    try:
        try:
            check_segments(segments, hidden=hidden)
            path = segments[:-1] if segments and segments[-1] == "" else segments
            with root.resolve(path) as target:
                here = os.path.join(real_root, *target.parts)
                assert os.path.commonpath([real_root, os.path.realpath(here)]) == real_root
                # the descriptors held are where the names say
                assert os.path.samestat(os.fstat(target.dir_fd), os.stat(os.path.dirname(here) if target.name else here))
                if target.exists and not target.is_dir:
                    fd, st_ = target.open_file()
                    os.close(fd)
                    assert os.path.samestat(st_, os.stat(here))
                if not hidden:
                    assert not any(part.startswith(".") for part in target.parts)
        except (NoSuchPath, PathForbidden):
            pass
    finally:
        root.close()


@pytest.mark.parametrize("segments, refusal", [
    (("..",), PathForbidden), (("a", "..", ".."), PathForbidden), (("out-rel",), PathForbidden),
    (("out-abs",), PathForbidden), (("out-dir", "x"), PathForbidden), (("loop",), PathForbidden),
    (("escape",), PathForbidden), (("hid",), NoSuchPath), (("top", "x"), NoSuchPath),
])
def test_resolution_refusals(maze, segments, refusal):
    root = Root(str(maze))
    try:
        with pytest.raises(refusal):
            root.resolve(segments).close()
    finally:
        root.close()


def test_resolution_through_links(maze):
    root = Root(str(maze))
    try:
        for segments, parts in [
            (("in-abs", "b", "file"), ("a", "b", "file")),
            (("chain", "file"), ("a", "b", "file")),
            (("deep",), ("top",)),
            (("a", "back", "top"), ("top",)),
            (("root-abs", "a", "b", "sib"), ("top",)),
        ]:
            with root.resolve(segments) as target:
                assert target.parts == parts
        with root.resolve(("self",)) as target:
            assert target.parts == () and target.is_dir
        with pytest.raises(PathForbidden):  # ".." of the root
            root.resolve(("up",)).close()
    finally:
        root.close()


def test_check_segments():
    check_segments(("a", "b", ""), hidden=False)
    with pytest.raises(NoSuchPath):
        check_segments(("a", "", "b"), hidden=False)
    with pytest.raises(NoSuchPath):
        check_segments((".git", "config"), hidden=False)
    check_segments((".git", "config"), hidden=True)
    with pytest.raises(NoSuchPath):
        check_segments((UPLOAD_PREFIX + "x",), hidden=True)
    for bad in ("..", ".", "a/b", "/etc", "a\0"):
        with pytest.raises(PathForbidden):
            check_segments(("x", bad), hidden=True)


def test_content_formats():
    assert content_format_for("x.txt") == 0
    assert content_format_for("x.JSON") == 50
    assert content_format_for("x.html") == 0  # text/* without a registered format
    assert content_format_for("x.png") == 23
    assert content_format_for("x.tar.gz") is None
    assert content_format_for("README") is None


def test_listing_cache_bounds():
    cache = ListingCache(max_entries=3, max_bytes=100)
    for i in range(5):
        cache.put(i, b"x" * 10, None)
    assert cache.get(0) is None and cache.get(1) is None
    assert cache.get(4) == (b"x" * 10, None)
    cache.put("big", b"x" * 90, None)
    assert cache._bytes <= 100 and len(cache._entries) <= 3
    cache.put("too big", b"x" * 101, None)
    assert cache.get("too big") is None


def test_upload_table_caps_and_expiry(tmp_path):
    table = UploadTable(max_uploads=3, max_per_peer=2, timeout=10.0)

    def start(key, peer, now):
        return table.start(key, peer, os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY), "target", str(tmp_path), now)

    start("a", "p1", now=0.0)
    start("b", "p1", now=1.0)
    with pytest.raises(error.ServiceUnavailable) as excinfo:
        start("c", "p1", now=2.0)
    assert excinfo.value.to_message().opt.max_age == 8  # the oldest of p1 expires at 10
    start("c", "p2", now=3.0)
    with pytest.raises(error.ServiceUnavailable):
        start("d", "p3", now=4.0)
    assert len(list(tmp_path.glob(UPLOAD_PREFIX + "*"))) == 3
    assert table.next_deadline() == 10.0
    # restarting an upload replaces it (and its temporary file)
    start("a", "p1", now=5.0)
    assert len(list(tmp_path.glob(UPLOAD_PREFIX + "*"))) == 3
    assert table.expire(11.5) == 1  # b
    assert table.next_deadline() == 13.0
    start("d", "p3", now=12.0)
    assert table.expire(100.0) == 3
    assert len(table) == 0
    assert list(tmp_path.glob(UPLOAD_PREFIX + "*")) == []


async def test_watcher_reference_counting(tmp_path):
    seen = []
    watcher = ChangeWatcher(lambda d, names: seen.append((d, names)), log=logging.getLogger("test"),
                            backend="poll", poll_interval=0.01)
    try:
        watcher.add(str(tmp_path))
        watcher.add(str(tmp_path))
        watcher.remove(str(tmp_path))
        assert watcher.directories == {str(tmp_path)}
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen and seen[0] == (str(tmp_path), None)
        watcher.remove(str(tmp_path))
        assert watcher.directories == frozenset()
        seen.clear()
        await asyncio.sleep(0.05)
        assert seen == []
    finally:
        await watcher.shutdown()
    with pytest.raises(ValueError):
        ChangeWatcher(lambda d, n: None, log=logging.getLogger("test"), backend="inotify-please")


async def test_listing_cache_and_coarse_time_stamps(tmp_path, monkeypatch):
    """Two changes of a directory within one tick of the file system's
    clock look alike in its stat: a fresh request still sees the second
    one (listings of recently changed directories are rendered anew for
    block 0), while later blocks continue the listing their transfer
    started with."""
    from aiocoap import Message
    from aiocoap.cli import fileserver
    from aiocoap.numbers.codes import Code

    monkeypatch.setattr(fileserver, "stat_signature", lambda st: "always the same")
    server = fileserver.FileServer(tmp_path)
    try:
        def get(**options):
            return server.render(Message(code=Code.GET, uri_path=("",), **options))

        (tmp_path / "one").touch()
        first = await get()
        assert b"</one>" in first.payload
        for i in range(60):
            (tmp_path / f"entry-{i:02d}-with-a-long-name").touch()
        fresh = await get()
        assert fresh.payload.startswith(b"</entry-00-with-a-long-name>")
        assert fresh.opt.block2.more and fresh.opt.etag != first.opt.etag
        (tmp_path / "zzz").touch()
        later = await get(block2=(1, False, 6))
        assert later.opt.etag == fresh.opt.etag  # continues the representation of block 0
        restart = await get(block2=(0, False, 6))
        assert restart.opt.etag != fresh.opt.etag  # a new transfer sees the new state
        fresh = restart
        # Once the directory is settled, the cache serves block 0 too.
        monkeypatch.setattr(fileserver, "settled", lambda st: True)
        assert (await get(block2=(0, False, 6))).opt.etag == fresh.opt.etag
    finally:
        await server.shutdown()
