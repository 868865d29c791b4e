"""aiocoap-fileserver, safety: every way of naming something outside the
served directory (or something that is not a plain file or directory) is
refused, for reading and for writing, whatever form the path takes on the
wire; and what a hostile client can do (floods of requests for missing
files, path tricks) leaves the server answering, its open descriptors
where they were, and its log quiet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import stat
import struct

import pytest

from aiocoap.cli import _fileserver_fs
from aiocoap.numbers.codes import Code

from fileserver_support import serving

pytestmark = pytest.mark.core

SECRET = b"outside the root"


@pytest.fixture
def tree(tmp_path):
    """root/ with a file, a subdirectory and links of every kind, and a
    secret file next to the root."""
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "outside-dir").mkdir()
    (tmp_path / "outside-dir" / "file").write_bytes(SECRET)
    (root / "public.txt").write_bytes(b"public")
    (root / "sub").mkdir()
    (root / "sub" / "file").write_bytes(b"in sub")
    (root / ".env").write_bytes(b"hidden")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(b"hidden too")
    (root / "abs-out").symlink_to(tmp_path / "secret.txt")
    (root / "rel-out").symlink_to("../secret.txt")
    (root / "dir-out").symlink_to("../outside-dir")
    (root / "sub" / "deep-out").symlink_to("../../secret.txt")
    (root / "sub" / "up-and-in").symlink_to("../public.txt")
    (root / "abs-in").symlink_to(root / "public.txt")
    (root / "to-hidden").symlink_to(".env")
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    (root / "to-root").symlink_to(".")
    (root / "etc").symlink_to("/etc")
    os.mkfifo(root / "fifo")
    try:
        # a character device (the numbers of /dev/null); needs CAP_MKNOD
        os.mknod(root / "device", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except OSError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(root / "socket"))
    yield root
    sock.close()


# Uri-Path segments as they arrive (the URI parser of a client would
# normalize some of these away, so they are set as options directly).
FORBIDDEN_SEGMENTS = [
    ("..", "secret.txt"),
    ("sub", "..", "..", "secret.txt"),
    (".", "public.txt"),
    ("..",),
    ("../secret.txt",),  # an encoded slash: %2E%2E%2Fsecret.txt
    ("sub%2F..%2F..%2Fsecret.txt".replace("%2F", "/"),),
    ("/etc/passwd",),  # an absolute path as one segment
    ("sub", "/etc/passwd"),
    ("public.txt\0.png",),
    ("abs-out",),
    ("rel-out",),
    ("dir-out", "file"),
    ("dir-out", ""),
    ("sub", "deep-out"),
    ("loop-a",),
    ("etc", "passwd"),
    ("fifo",),
    ("socket",),
]

NOT_FOUND_SEGMENTS = [
    (".env",),
    (".git", "config"),
    (".git", ""),
    ("to-hidden",),
    ("sub", "", "file"),  # an empty segment in the middle
    ("", "public.txt"),
    ("missing", "file"),
    ("public.txt", "below-a-file"),
]
LONG_NAME = ("x" * 255,)  # the longest name a Uri-Path option can carry


def short(segments) -> str:
    text = "/".join(segments)
    return text if len(text) < 40 else text[:20] + "..."


async def request_with_segments(s, code, segments, **kwargs):
    message = s.message("/", code, **kwargs)
    message.opt.uri_path = segments
    return await s.client.request(message).response


@pytest.mark.parametrize("segments", FORBIDDEN_SEGMENTS, ids=short)
async def test_forbidden_reads(tree, segments):
    async with serving(tree) as s:
        response = await request_with_segments(s, Code.GET, segments)
        assert response.code == Code.FORBIDDEN, response
        assert SECRET not in response.payload


async def test_device_files_are_refused(tree):
    if not (tree / "device").exists():
        pytest.skip("creating a device file needs CAP_MKNOD")
    async with serving(tree, write=True) as s:
        assert (await s.get("/device")).code == Code.FORBIDDEN
        assert (await s.put("/device", b"x")).code == Code.FORBIDDEN
        assert (await s.delete("/device")).code == Code.FORBIDDEN
        listing = (await s.get("/")).payload
        assert b"device" not in listing and b"fifo" not in listing and b"socket" not in listing
    assert stat.S_ISCHR((tree / "device").lstat().st_mode)


@pytest.mark.parametrize("segments", NOT_FOUND_SEGMENTS + [LONG_NAME], ids=short)
async def test_not_found_reads(tree, segments):
    async with serving(tree) as s:
        response = await request_with_segments(s, Code.GET, segments)
        assert response.code == Code.NOT_FOUND, response


async def test_links_inside_the_root_work(tree):
    async with serving(tree) as s:
        assert (await s.get("/abs-in")).payload == b"public"
        assert (await s.get("/sub/up-and-in")).payload == b"public"
        assert (await s.get("/to-root/to-root/public.txt")).payload == b"public"
        listing = (await s.get("/to-root/")).payload
        assert b"</to-root/public.txt>" in listing


async def test_encoded_forms_through_the_uri_parser(tree):
    async with serving(tree) as s:
        for path in ("/%2E%2E/secret.txt", "/..%2Fsecret.txt", "/sub%2F..%2F..%2Fsecret.txt", "/%2Fetc%2Fpasswd"):
            response = await s.get(path)
            assert response.code in (Code.FORBIDDEN, Code.NOT_FOUND), path
            assert SECRET not in response.payload


@pytest.mark.parametrize("segments", FORBIDDEN_SEGMENTS + NOT_FOUND_SEGMENTS, ids=short)
async def test_refused_writes(tree, segments):
    before = {p: p.read_bytes() for p in tree.parent.rglob("*") if p.is_file() and not p.is_symlink() and not p.is_fifo() and not p.is_socket()}
    async with serving(tree, write=True) as s:
        for code in (Code.PUT, Code.DELETE):
            payload = b"overwritten" if code == Code.PUT else b""
            response = await request_with_segments(s, code, segments, payload=payload)
            assert response.code in (Code.FORBIDDEN, Code.NOT_FOUND, Code.METHOD_NOT_ALLOWED), (code, response)
    after = {p: p.read_bytes() for p in before}
    assert after == before
    assert not list(tree.parent.rglob(_fileserver_fs.UPLOAD_PREFIX + "*"))


async def test_writes_do_not_replace_links(tree):
    async with serving(tree, write=True) as s:
        response = await s.put("/abs-in", b"through a link")
        assert response.code == Code.FORBIDDEN
        assert (tree / "abs-in").is_symlink()
        assert (tree / "public.txt").read_bytes() == b"public"
        assert (await s.delete("/abs-in")).code == Code.FORBIDDEN
        # Writing below a linked directory that stays inside is fine.
        assert (await s.put("/to-root/sub/new", b"new")).code == Code.CREATED
        assert (tree / "sub" / "new").read_bytes() == b"new"


async def test_hidden_flag_does_not_open_the_way_out(tree):
    async with serving(tree, hidden=True, write=True) as s:
        assert (await s.get("/.env")).payload == b"hidden"
        assert (await s.get("/to-hidden")).payload == b"hidden"
        assert (await request_with_segments(s, Code.GET, ("..", "secret.txt"))).code == Code.FORBIDDEN
        response = await s.put("/" + _fileserver_fs.UPLOAD_PREFIX + "x", b"no")
        assert response.code == Code.NOT_FOUND


async def test_a_fifo_swapped_in_does_not_stall(tree):
    """A FIFO that appears where a file was checked is opened without
    blocking (O_NONBLOCK) and refused."""
    async with serving(tree) as s:
        with s.server.root.resolve(("fifo",)) as target:
            with pytest.raises(_fileserver_fs.PathForbidden):
                target.open_file()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_flood_of_missing_files_from_many_sources(tree, caplog):
    """500 CON GETs for random missing or forbidden paths from 20 source
    ports: every one is answered, no descriptor stays open, nothing above
    INFO is logged, and a regular request is served right after."""
    caplog.set_level(logging.DEBUG, logger="fileserver")
    async with serving(tree) as s:
        baseline = open_descriptors()
        loop = asyncio.get_running_loop()
        rng = random.Random(7)
        socks = []
        for _ in range(20):
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(("::1", s.port))
            socks.append(sock)
        try:
            answered = 0
            for round_ in range(25):
                for index, sock in enumerate(socks):
                    mid = round_ * 20 + index
                    options = b""
                    previous = 0
                    kind = rng.choice(["missing", "dotdot", "deep"])
                    segments = {
                        "missing": [b"nope-%d" % rng.randrange(10**6)],
                        "dotdot": [b"..", b"secret.txt"],
                        "deep": [b"a"] * 30,
                    }[kind]
                    for segment in segments:
                        delta = 11 - previous
                        previous = 11
                        options += bytes([(delta << 4) | len(segment)]) + segment
                    sock.send(struct.pack("!BBH", 0x41, 0x01, mid) + b"\x07" + options)
                for sock in socks:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
                    # 4.04, 4.03, or where the diagnostic text would make
                    # the answer more than 3x the request, the Echo
                    # challenge of aiocoap.amplification (4.01)
                    assert data[1] in (0x84, 0x83, 0x81)
                    answered += 1
            assert answered == 500
        finally:
            for sock in socks:
                sock.close()
        assert open_descriptors() <= baseline
        assert (await s.get("/public.txt")).payload == b"public"
    loud = [r for r in caplog.records if r.name.startswith("fileserver") and r.levelno > logging.INFO]
    assert loud == []


async def test_abandoned_downloads_leave_nothing_behind(tree):
    """Block2 keeps no per-transfer state, only the file open per path:
    200 transfers from 10 clients that stop after one block leave one
    descriptor open, closed after the idle timeout, and nothing stored for
    them; repeated listings are one cached listing."""
    (tree / "big").write_bytes(os.urandom(200_000))
    idle = 0.2
    async with serving(tree, open_file_idle_timeout=idle) as s:
        baseline = open_descriptors()
        from aiocoap import Context

        clients = [await Context.create_client_context(transports=["udp6"]) for _ in range(10)]
        try:
            for round_ in range(20):
                for client in clients:
                    message = s.message("/big", block2=(round_, False, 4))
                    response = await client.request(message, handle_blockwise=False).response
                    assert response.code == Code.CONTENT
                    assert response.opt.block2.more
                    assert (await client.request(s.message("/")).response).code == Code.CONTENT
        finally:
            for client in clients:
                await client.shutdown()
        assert open_descriptors() <= baseline + 1
        await asyncio.sleep(idle * 2)
        assert open_descriptors() <= baseline
        assert len(s.server.uploads) == 0
        assert s.server._watched == {}
        assert len(s.server._listings._entries) <= 1
