"""The file system side of :mod:`aiocoap.cli.fileserver`: turning request
paths into files and directories below the served root without ever
leaving it, ETags, content formats and directory listings.

Rules enforced here (the response code in brackets):

* A request path is a sequence of Uri-Path segments. Segments ``.`` and
  ``..``, segments containing ``/`` (an encoded slash, ``%2F``) or NUL, and
  empty segments anywhere but at the end are refused [4.03 for the first
  three, 4.04 for empty ones]. A trailing empty segment asks for a
  directory.
* Names starting with a dot are neither served nor listed nor writable
  unless the root was opened with ``hidden=True`` [4.04]. Names starting
  with :data:`UPLOAD_PREFIX` (the server's own unfinished uploads) never
  are, whatever ``hidden`` says.
* Paths are walked one component at a time from a descriptor of the root
  (``openat`` with ``O_NOFOLLOW``), never as strings, so a directory
  swapped for a symbolic link while a request is being served can not lead
  outside. Symbolic links are followed only while their target stays below
  the root (relative targets, and absolute ones that start with the root's
  real path); anything else is refused [4.03], as are link chains longer
  than :data:`MAX_SYMLINKS` [4.03].
* Only regular files and directories are served: device files, sockets
  and FIFOs are refused [4.03] before they are opened (and files are opened
  with ``O_NONBLOCK``, so a file swapped for a FIFO in between can not
  stall the server).
* File system errors map to codes: missing [4.04], permission denied
  [4.03], anything else [5.00, logged].

Open descriptors: the root's, plus, while a path is being resolved, one per
directory component of it; :class:`Resolved` closes them (use it as a
context manager). Nothing here awaits, so those descriptors never outlive
one step of the event loop.
"""

from __future__ import annotations

import errno
import hashlib
import mimetypes
import os
import stat
import struct
import time
from collections import OrderedDict
from functools import lru_cache
from typing import Optional

from .. import error
from ..numbers.contentformat import ContentFormat
from ..util.linkformat import Link, LinkFormat
from ..util.uri import quote_factory, sub_delims, unreserved

__all__ = [
    "UPLOAD_PREFIX",
    "MAX_SYMLINKS",
    "Root",
    "Resolved",
    "content_format_for",
    "stat_etag",
    "body_etag",
    "fs_error",
]

UPLOAD_PREFIX = ".aiocoap-upload."
"""Name prefix of the temporary files unfinished uploads are spooled to."""

MAX_SYMLINKS = 40
"""How many symbolic links one path may pass through (as Linux' ELOOP)."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

# Media types the CoAP Content-Format registry knows under file name
# extensions that Python's mimetypes table lacks (RFC 8949 registers
# ".cbor", RFC 6690 ".wlnk").
_EXTRA_TYPES = {
    ".cbor": "application/cbor",
    ".wlnk": "application/link-format",
}

_quote_segment = quote_factory(unreserved + sub_delims + ":@")


class PathForbidden(error.Forbidden):
    """4.03: the path is not one the server will serve."""

    message = "Forbidden path"


class NoSuchPath(error.NotFound):
    """4.04 with the reason in the payload."""

    message = "File not found"


def fs_error(exc: OSError, what: str = "path") -> error.RenderableError:
    """The renderable error a file system error becomes (see the module
    description); the caller logs where the result is a 5.00."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
        return NoSuchPath()
    if exc.errno in (errno.EACCES, errno.EPERM, errno.ELOOP, errno.EROFS):
        return PathForbidden(f"Access to the {what} is not permitted")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return error.RequestEntityTooLarge("No space left on the server")
    return error.InternalServerError(f"File system error: {exc.strerror or exc}")


def check_segments(segments, *, hidden: bool) -> None:
    """Refuse request paths that try to leave their directory or name
    hidden files (see the module description)."""
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if not segment:
            if index != last:
                raise NoSuchPath("Empty path segment")
            continue
        if segment in (".", "..") or "/" in segment or "\0" in segment:
            raise PathForbidden("Path segments . and .. and ones containing / are not served")
        if segment[0] == "." and (not hidden or segment.startswith(UPLOAD_PREFIX)):
            raise NoSuchPath()


class Resolved:
    """A request path resolved below the root: the directories walked
    (``stack``, as (name, descriptor) pairs, the root not included) and the
    final component (``name`` and its ``lstat`` result ``st``, None if it
    does not exist). With ``name`` None, the path ended in a directory, the
    last one on the stack (or the root itself).

    Close it (or use it as a context manager) to release the descriptors."""

    __slots__ = ("root", "stack", "name", "st")

    def __init__(self, root: "Root", stack: list, name: Optional[str], st: Optional[os.stat_result]):
        self.root = root
        self.stack = stack
        self.name = name
        self.st = st

    def __enter__(self) -> "Resolved":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        stack, self.stack = self.stack, []
        for _, fd in stack:
            os.close(fd)

    @property
    def dir_fd(self) -> int:
        """The directory the final component is in (or, with ``name``
        None, the directory the path ended in)."""
        return self.stack[-1][1] if self.stack else self.root.fd

    @property
    def is_dir(self) -> bool:
        return self.name is None or (self.st is not None and stat.S_ISDIR(self.st.st_mode))

    @property
    def exists(self) -> bool:
        return self.name is None or self.st is not None

    @property
    def parts(self) -> tuple:
        """The real path below the root, as a tuple of names."""
        names = tuple(name for name, _ in self.stack)
        return names if self.name is None else names + (self.name,)

    def directory_path(self) -> str:
        """The real path of the directory to watch for changes of the
        target: the target itself for directories, else its parent."""
        parts = self.parts if self.is_dir else self.parts[:-1]
        return os.path.join(self.root.real, *parts)

    def open_directory(self) -> int:
        """A new descriptor of the target directory (the caller closes it)."""
        if self.name is None:
            return os.dup(self.dir_fd)
        return os.open(self.name, _DIR_FLAGS, dir_fd=self.dir_fd)

    def open_file(self) -> tuple[int, os.stat_result]:
        """Open the target regular file for reading; returns the descriptor
        (the caller closes it) and its ``fstat``."""
        if self.name is None:
            raise PathForbidden("Only regular files and directories are served")
        fd = os.open(self.name, _FILE_FLAGS, dir_fd=self.dir_fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise PathForbidden("Only regular files and directories are served")
        except BaseException:
            os.close(fd)
            raise
        return fd, st


class Root:
    """The served directory, held open by a descriptor.

    ``hidden`` allows names starting with a dot (see the module
    description)."""

    def __init__(self, path: str, *, hidden: bool = False):
        self.path = path
        self.hidden = hidden
        self.fd = os.open(path, _DIR_FLAGS & ~os.O_NOFOLLOW)
        self.real = os.path.realpath(path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _name_allowed(self, name: str) -> bool:
        return name[0] != "." or (self.hidden and not name.startswith(UPLOAD_PREFIX))

    def resolve(self, segments, *, follow_last: bool = True) -> Resolved:
        """Walk ``segments`` (already checked by :func:`check_segments`,
        trailing empty segment removed) from the root.

        Raises the renderable errors of the module description for paths
        that leave the root, pass through something that is not a
        directory, or name a hidden file. A missing final component is not
        an error (``st`` is None then); a missing directory on the way is.
        With ``follow_last`` false, a symbolic link as the final component
        is returned as it is (``st`` then describes the link)."""
        stack: list = []
        todo = list(reversed(segments))
        hops = 0
        try:
            while todo:
                name = todo.pop()
                if name in ("", "."):
                    continue
                if name == "..":
                    if not stack:
                        raise PathForbidden("Path leads outside the served directory")
                    os.close(stack.pop()[1])
                    continue
                if not self._name_allowed(name):
                    raise NoSuchPath()
                here = stack[-1][1] if stack else self.fd
                try:
                    st = os.stat(name, dir_fd=here, follow_symlinks=False)
                except OSError as e:
                    if todo or e.errno not in (errno.ENOENT,):
                        raise fs_error(e) from None
                    return Resolved(self, stack, name, None)
                if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
                    hops += 1
                    if hops > MAX_SYMLINKS:
                        raise PathForbidden("Too many levels of symbolic links")
                    target = os.readlink(name, dir_fd=here)
                    if target.startswith("/"):
                        inside = self._inside(target)
                        for _, fd in stack:
                            os.close(fd)
                        stack = []
                        todo.extend(reversed(inside))
                    else:
                        todo.extend(reversed(target.split("/")))
                    continue
                if not todo:
                    return Resolved(self, stack, name, st)
                if not stat.S_ISDIR(st.st_mode):
                    raise NoSuchPath()
                stack.append((name, os.open(name, _DIR_FLAGS, dir_fd=here)))
            return Resolved(self, stack, None, None)
        except BaseException as e:
            for _, fd in stack:
                os.close(fd)
            if isinstance(e, OSError):
                # (a component changed between its stat and its opening)
                raise fs_error(e) from None
            raise

    def _inside(self, target: str) -> list:
        """The components of an absolute symlink target below the root."""
        real = self.real.rstrip("/")
        if target == real or target.startswith(real + "/"):
            return target[len(real):].split("/")
        raise PathForbidden("Symbolic link leads outside the served directory")

    def list_directory(self, resolved: Resolved, href_segments, max_entries: int) -> bytes:
        """The link-format listing of the directory ``resolved`` stands for:
        files as ``</path/name>`` (with ``ct`` where known), directories as
        ``</path/name/>;ct=40``, in name order, hrefs built from the
        request path ``href_segments``. Symbolic links are listed as what
        they lead to if that is inside the root; other entries (device
        files, sockets, links leading out, and names that are not UTF-8,
        which no Uri-Path can name) are left out.

        More than ``max_entries`` entries raise a 5.00 error."""
        prefix = "/" + "".join(_quote_segment(s) + "/" for s in href_segments)
        fd = resolved.open_directory()
        entries: list[tuple[str, str]] = []
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    name = entry.name
                    if not self._name_allowed(name) or not _is_utf8(name):
                        continue
                    if len(entries) >= max_entries:
                        raise error.InternalServerError(
                            f"Directory has more than {max_entries} entries, too many to list"
                        )
                    if entry.is_symlink():
                        kind = self._link_kind(resolved.parts + (name,))
                    elif entry.is_dir(follow_symlinks=False):
                        kind = "dir"
                    elif entry.is_file(follow_symlinks=False):
                        kind = "file"
                    else:
                        kind = None
                    if kind is not None:
                        entries.append((name, kind))
        finally:
            os.close(fd)
        entries.sort()
        links = []
        for name, kind in entries:
            href = prefix + _quote_segment(name)
            if kind == "dir":
                links.append(Link(href + "/", ct=ContentFormat.LINKFORMAT))
            else:
                ct = content_format_for(name)
                links.append(Link(href) if ct is None else Link(href, ct=ct))
        return str(LinkFormat(links)).encode("utf-8")

    def _link_kind(self, parts: tuple) -> Optional[str]:
        try:
            with self.resolve(parts) as target:
                if target.is_dir:
                    return "dir"
                if target.st is not None and stat.S_ISREG(target.st.st_mode):
                    return "file"
        except (error.RenderableError, OSError):
            pass
        return None


def _is_utf8(name: str) -> bool:
    """False for names with bytes that are not UTF-8 (which Python keeps
    as surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@lru_cache(maxsize=512)
def content_format_for(name: str) -> Optional[ContentFormat]:
    """The Content-Format a file of that name is served with, guessed from
    its extension (Python's :mod:`mimetypes` and a few registrations of
    CoAP's registry), or None if nothing fits.

    >>> content_format_for("data.json")
    <ContentFormat 50, media_type='application/json'>
    >>> content_format_for("x.cbor").name, content_format_for("notes.txt").name
    ('CBOR', 'TEXT')
    >>> content_format_for("archive.json.gz") is None
    True

    A ``text/*`` type the registry does not list is served as text/plain
    (0), as aiocoap 0.4 did; compressed files (``.gz``, ...) get none, as
    their content codings have no Content-Format."""
    _, extension = os.path.splitext(name)
    media_type = _EXTRA_TYPES.get(extension.lower())
    encoding = None
    if media_type is None:
        media_type, encoding = mimetypes.guess_type(name, strict=False)
    if media_type is None or encoding is not None:
        return None
    try:
        return ContentFormat.by_media_type(media_type)
    except KeyError:
        pass
    if media_type.startswith("text/"):
        return ContentFormat.TEXT
    return None


_STAT_LAYOUT = struct.Struct("<QQqqq")


def stat_etag(st: os.stat_result, length: int) -> Optional[bytes]:
    """The ETag of a file: a hash of its identity (device and inode) and of
    what changes when it is written (size, modification and change time),
    cut to ``length`` bytes (0: no ETags, None is returned)."""
    if not length:
        return None
    data = _STAT_LAYOUT.pack(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return hashlib.blake2b(data, digest_size=8).digest()[:length]


def body_etag(body: bytes, length: int) -> Optional[bytes]:
    """The ETag of a generated representation (a listing): a hash of it."""
    if not length:
        return None
    return hashlib.blake2b(body, digest_size=8).digest()[:length]


def stat_signature(st: os.stat_result) -> tuple:
    """What identifies one state of a directory for the listing cache."""
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def settled(st: os.stat_result, margin_ns: int = 2_000_000_000) -> bool:
    """True if the last change of ``st`` is so long ago that another change
    would get a different time stamp (file systems stamp with the coarse
    kernel clock, so two changes within one tick look alike)."""
    return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > margin_ns


class ListingCache:
    """Bodies with their ETags by the state of what they were made from (see
    :func:`stat_signature`): rendered directory listings, and the contents
    of small files. The least recently used are dropped first beyond
    ``max_entries`` bodies or ``max_bytes`` bytes."""

    def __init__(self, max_entries: int = 64, max_bytes: int = 8 << 20):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict = OrderedDict()
        self._bytes = 0

    def get(self, key) -> Optional[tuple]:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key, body: bytes, etag: Optional[bytes]) -> None:
        if len(body) > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old[0])
        self._entries[key] = (body, etag)
        self._bytes += len(body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (dropped, _) = self._entries.popitem(last=False)
            self._bytes -= len(dropped)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
