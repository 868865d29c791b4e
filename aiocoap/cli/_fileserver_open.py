"""Files held open between the blocks of a Block2 transfer, for
:mod:`aiocoap.cli.fileserver`.

A download of a large file is thousands of requests for one block each.
Resolving the path, opening the file and hashing its ETag again for every
one of them would cost more than reading the block, so the first block
(and every request without a Block2 option, or for block 0) resolves the
path afresh and leaves the opened file here; later blocks of the same path
are read from it.

Rules enforced here:

* An entry is used for a later block only while its file is unchanged:
  the caller compares ``fstat`` of the open descriptor with the state it
  was opened in (size, modification and change time). Writing the file,
  renaming another one over it and deleting it all change that state (the
  last two the change time, as the link count drops), so such a file is
  resolved afresh. What the check can not see is a directory on the path
  renamed or replaced: then later blocks come from the file the path named
  when the entry was made, until the entry expires.
* At most ``max_entries`` files are open at a time (least recently used
  closed first); an entry is closed ``idle_timeout`` seconds after its
  last use and ``lifetime`` seconds after it was opened, whichever comes
  first, so the case above lasts ``lifetime`` seconds at most.
* :meth:`OpenFiles.discard` closes the entries of a file the server saw
  changing (its own writes, the change watcher's reports).

Sans-I/O but for closing descriptors: time is an argument; the caller arms
one timer at :meth:`OpenFiles.next_deadline` and calls
:meth:`OpenFiles.expire`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Optional

from ..options import Options

__all__ = ["OpenFile", "OpenFiles"]


class OpenFile:
    """One open file: its descriptor (owned by the :class:`OpenFiles` it is
    in), the ``fstat`` signature it was opened with, the size, the response
    options every block carries (``template``: ETag and Content-Format),
    where it is (``directory``, ``name``, for :meth:`OpenFiles.discard`),
    and when it was opened and last used."""

    __slots__ = ("fd", "signature", "size", "etag", "template", "directory", "name", "opened", "used")

    def __init__(self, fd: int, signature: tuple, size: int, etag: Optional[bytes], template: Options,
                 directory: str, name: str, now: float):
        self.fd = fd
        self.signature = signature
        self.size = size
        self.etag = etag
        self.template = template
        self.directory = directory
        self.name = name
        self.opened = now
        self.used = now


class OpenFiles:
    """The open files by request path (see the module description)."""

    def __init__(self, max_entries: int = 16, idle_timeout: float = 2.0, lifetime: float = 10.0):
        self.max_entries = max_entries
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self._entries: OrderedDict[tuple, OpenFile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple, now: float) -> Optional[OpenFile]:
        """The live entry of ``key`` (marked as used at ``now``), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._expired(entry, now):
            self._close(key)
            return None
        entry.used = now
        self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple, entry: OpenFile) -> None:
        """Keep ``entry`` (its descriptor is closed by this object from now
        on), replacing any older one of ``key``."""
        if key in self._entries:
            self._close(key)
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            self._close(next(iter(self._entries)))

    def drop(self, key: tuple) -> None:
        """Close the entry of ``key``, if any (its file changed)."""
        if key in self._entries:
            self._close(key)

    def discard(self, directory: str, names: Optional[frozenset] = None) -> None:
        """Close the entries of files in ``directory`` (only those named in
        ``names``, unless that is None)."""
        for key, entry in list(self._entries.items()):
            if entry.directory == directory and (names is None or entry.name in names):
                self._close(key)

    def _expired(self, entry: OpenFile, now: float) -> bool:
        return now >= entry.used + self.idle_timeout or now >= entry.opened + self.lifetime

    def _deadline(self, entry: OpenFile) -> float:
        return min(entry.used + self.idle_timeout, entry.opened + self.lifetime)

    def next_deadline(self) -> Optional[float]:
        """When :meth:`expire` next has something to close (None: never)."""
        if not self._entries:
            return None
        return min(self._deadline(entry) for entry in self._entries.values())

    def expire(self, now: float) -> int:
        """Close the entries expired at ``now``; returns how many."""
        expired = [key for key, entry in self._entries.items() if self._expired(entry, now)]
        for key in expired:
            self._close(key)
        return len(expired)

    def clear(self) -> None:
        """Close everything (at shutdown)."""
        while self._entries:
            self._close(next(iter(self._entries)))

    def _close(self, key: tuple) -> None:
        os.close(self._entries.pop(key).fd)
