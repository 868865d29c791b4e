"""Writing files for :mod:`aiocoap.cli.fileserver`: atomic replacement
and the bookkeeping of unfinished blockwise (Block1) uploads.

Every write goes to a new temporary file in the target's directory (named
with ``UPLOAD_PREFIX`` of ``aiocoap.cli._fileserver_fs``, so it is never served or
listed), which is flushed to disk and then renamed over the target: readers
see the old file or the new one, never a mix, and concurrent writers
replace each other's files whole (the last rename wins).

Unfinished uploads are bounded (:class:`UploadTable`):

* at most ``max_uploads`` at a time, and ``max_per_peer`` per peer (the
  server passes the client's host, so that one host can not take all
  slots through many ports); one more is refused with 5.03 Service Unavailable and a
  Max-Age telling when the oldest one will have expired;
* each one is dropped (its temporary file deleted) ``timeout`` seconds
  after its last block arrived;
* each holds two descriptors (its directory and its temporary file), so
  the server holds at most ``2 * max_uploads`` for uploads.

The size limit per upload is checked by the server (4.13 with Size1).
"""

from __future__ import annotations

import math
import os
import secrets
import stat
from typing import Optional

from .. import error
from ..message import Message
from ..numbers.codes import Code
from ._fileserver_fs import UPLOAD_PREFIX

__all__ = ["Upload", "UploadTable", "write_temporary", "replace_atomically", "discard_temporary"]

_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def new_temporary(dir_fd: int) -> tuple[str, int]:
    """Create an empty temporary file in the directory ``dir_fd``; returns
    its name and a descriptor open for writing."""
    while True:
        name = UPLOAD_PREFIX + secrets.token_hex(8)
        try:
            return name, os.open(name, _TEMP_FLAGS, 0o666, dir_fd=dir_fd)
        except FileExistsError:
            continue


def discard_temporary(dir_fd: int, name: str, fd: int) -> None:
    """Close and delete a temporary file (errors are ignored: it may be
    gone already)."""
    os.close(fd)
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def write_temporary(dir_fd: int, body: bytes) -> tuple[str, int]:
    """A temporary file holding ``body``, as :func:`new_temporary`."""
    name, fd = new_temporary(dir_fd)
    try:
        view = memoryview(body)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except BaseException:
        discard_temporary(dir_fd, name, fd)
        raise
    return name, fd


def replace_atomically(dir_fd: int, temp_name: str, fd: int, target: str) -> os.stat_result:
    """Flush the temporary file to disk and rename it to ``target`` (in the
    same directory); keeps the permission bits of a file it replaces.
    Returns the new file's ``fstat``. Closes ``fd`` in any case, and
    deletes the temporary file if the rename failed."""
    try:
        try:
            old = os.stat(target, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISREG(old.st_mode):
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
        os.fsync(fd)
        os.rename(temp_name, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        discard_temporary(dir_fd, temp_name, fd)
        raise
    try:
        # (The rename changed the change time: stat after it.)
        result = os.fstat(fd)
        os.fsync(dir_fd)
    finally:
        os.close(fd)
    return result


class Upload:
    """One unfinished Block1 upload: where it goes, its temporary file,
    how much arrived, and when its last block came."""

    __slots__ = ("key", "peer", "dir_fd", "target", "directory", "temp_name", "fd", "received", "last", "seen")

    def __init__(self, key, peer, dir_fd: int, target: str, directory: str, now: float):
        self.key = key
        self.peer = peer
        self.dir_fd = dir_fd
        self.target = target
        self.directory = directory
        self.temp_name, self.fd = new_temporary(dir_fd)
        self.received = 0
        self.last: Optional[tuple[int, int]] = None
        self.seen = now

    def append(self, offset: int, payload: bytes, now: float) -> None:
        """Write the next block (at ``offset``, which must be what arrived
        so far)."""
        view = memoryview(payload)
        position = offset
        while view:
            written = os.pwrite(self.fd, view, position)
            view = view[written:]
            position += written
        self.received = offset + len(payload)
        self.last = (offset, len(payload))
        self.seen = now

    def discard(self) -> None:
        """Delete the temporary file and release the descriptors."""
        discard_temporary(self.dir_fd, self.temp_name, self.fd)
        os.close(self.dir_fd)


class UploadTable:
    """The unfinished uploads of a server, bounded as the module
    description says. Time is passed in (``now``, monotonic seconds)."""

    def __init__(self, *, max_uploads: int = 16, max_per_peer: int = 4, timeout: float = 60.0):
        self.max_uploads = max_uploads
        self.max_per_peer = max_per_peer
        self.timeout = timeout
        self._uploads: dict = {}
        self._per_peer: dict = {}

    def __len__(self) -> int:
        return len(self._uploads)

    def get(self, key) -> Optional[Upload]:
        return self._uploads.get(key)

    def start(self, key, peer, dir_fd: int, target: str, directory: str, now: float) -> Upload:
        """Begin an upload (replacing one with the same key) of the file
        ``target`` in the directory ``dir_fd`` (whose path is
        ``directory``); takes over ``dir_fd`` (closed when the upload ends).
        Raises 5.03 (and closes ``dir_fd``) when the table is full even
        after expiring what is due."""
        self.drop(key)
        self.expire(now)
        if len(self._uploads) >= self.max_uploads:
            competing = list(self._uploads.values())
        elif self._per_peer.get(peer, 0) >= self.max_per_peer:
            competing = [u for u in self._uploads.values() if u.peer == peer]
        else:
            competing = []
        if competing:
            os.close(dir_fd)
            oldest = min(u.seen for u in competing)
            raise _TooManyUploads(max(1, math.ceil(oldest + self.timeout - now)))
        try:
            upload = Upload(key, peer, dir_fd, target, directory, now)
        except BaseException:
            os.close(dir_fd)
            raise
        self._uploads[key] = upload
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        return upload

    def _forget(self, key) -> Optional[Upload]:
        upload = self._uploads.pop(key, None)
        if upload is not None:
            count = self._per_peer[upload.peer] - 1
            if count:
                self._per_peer[upload.peer] = count
            else:
                del self._per_peer[upload.peer]
        return upload

    def drop(self, key) -> None:
        """End an upload without writing anything."""
        upload = self._forget(key)
        if upload is not None:
            upload.discard()

    def finish(self, key) -> Upload:
        """Take a complete upload out of the table; the caller now owns its
        descriptors (and passes them to :func:`replace_atomically`)."""
        upload = self._forget(key)
        assert upload is not None
        return upload

    def next_deadline(self) -> Optional[float]:
        """When the next upload times out (None: no uploads)."""
        if not self._uploads:
            return None
        return min(u.seen for u in self._uploads.values()) + self.timeout

    def expire(self, now: float) -> int:
        """Drop every upload idle for ``timeout``; returns how many."""
        due = [k for k, u in self._uploads.items() if u.seen + self.timeout <= now]
        for key in due:
            self.drop(key)
        return len(due)

    def clear(self) -> None:
        for key in list(self._uploads):
            self.drop(key)


class _TooManyUploads(error.ServiceUnavailable):
    message = "Too many unfinished uploads, try again later"

    def __init__(self, wait: int):
        super().__init__()
        self.wait = wait

    def to_message(self) -> Message:
        return Message(code=Code.SERVICE_UNAVAILABLE, payload=self.message.encode(), max_age=self.wait)
