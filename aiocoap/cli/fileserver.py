"""A simple file server that serves the contents of a given directory via
CoAP: read-only by default, with writes behind ``--write``. It provides
directory listings, guesses the media type of files it serves, and lets
clients observe files and directories.

What it answers:

* ``GET /path/file``: the file, with a Content-Format guessed from its name
  (where one fits) and an ETag made from the file's identity and its last
  change. Files larger than one message go out in Block2 blocks; every
  block is read from the file on its own (``pread`` of that range), so
  neither a transfer nor a client asking for any block makes the server
  read or hold the whole file. The file stays open from one block to the
  next for a few seconds, so the later blocks of a transfer skip resolving
  the path again (see ``aiocoap.cli._fileserver_open``: a file written,
  replaced or deleted meanwhile is noticed at once, a directory on its
  path renamed within 10 s). A request carrying the current ETag gets
  2.03 Valid. Files of up to 1 KiB that have not changed for two seconds
  are answered from memory (256 of them at most, found by their path and
  state: a change is seen by the ``stat`` every request makes anyway).
* ``GET /path/dir/`` (and ``GET /``): the directory as
  ``application/link-format``: ``</path/dir/name>`` for files (with ``ct``
  where known) and ``</path/dir/sub/>;ct=40`` for subdirectories, sorted by
  name, cut into Block2 blocks when large. Its ETag is a hash of the
  listing.
* A directory requested without the trailing slash is answered 4.00 with
  the hint to add it, and a file requested with one 4.00 with the hint to
  remove it (as aiocoap 0.4 does; CoAP has no redirects).
* ``GET`` with Observe on a file or directory: a notification whenever it
  changes (see ``aiocoap.cli._fileserver_watch``); once it is gone, the
  observation ends with 4.04.
* ``/.well-known/core``: the root, as a file service
  (``rt="tag:chrysn@fsfe.org,2022:fileserver"``, as aiocoap 0.4 advertises
  it).
* With ``--write``: ``PUT`` creates or replaces a file atomically (2.01
  Created, 2.04 Changed; see ``aiocoap.cli._fileserver_upload``), in Block1
  blocks where large; ``DELETE`` removes a file (2.02). ``If-Match`` and
  ``If-None-Match`` are honoured (4.12 Precondition Failed), and bodies
  above ``--max-upload-size`` are refused with 4.13 and Size1. Directories
  are neither created nor removed (4.05). Without ``--write``, PUT and
  DELETE get 4.03.

Safety (details in ``aiocoap.cli._fileserver_fs``): nothing outside the root can be
read or written. ``..`` and ``.`` segments, encoded slashes and symbolic
links leading outside are refused with 4.03, as are device files, sockets
and FIFOs; hidden files (names starting with a dot) are 4.04 unless
``--hidden`` is given.

Caps, and what happens when they are reached:

* ``max_observations`` (1024) observations at a time, on at most
  ``max_watched_directories`` (256) directories: a further observation
  request is answered like a plain GET (without Observe), as RFC 7641
  allows.
* ``max_upload_size`` (16 MiB) per upload: 4.13 with Size1.
* ``max_uploads`` (16) unfinished uploads at a time, 4 per client host
  (``max_uploads_per_peer``), each dropped 60 s after its last block:
  5.03 with Max-Age. A client that keeps sending blocks keeps its slot.
* ``max_listing_entries`` (100 000) entries per directory: a larger one is
  not listed (5.00). Rendered listings are cached up to 8 MiB, small
  files up to 256 KiB.
* Open files: the root's descriptor, two per unfinished upload, up to
  ``max_open_files`` (16) files of transfers in progress (each closed
  ``open_file_idle_timeout`` (2) seconds after its last block,
  ``open_file_lifetime`` (10) seconds after it was opened at the latest), and while one request is being
  handled (nothing is awaited in between), one per directory on its path
  and the file itself.

Logging: the logger ``fileserver``; notifications sent at debug, refused
observations and uploads at debug with a summary at info at most every 10
seconds, file system errors that are not the client's fault at error.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from .. import error, interfaces, meta
from ..blockwise import BERT_UNIT, single_message_limit
from ..message import Message
from ..numbers.codes import Code
from ..numbers.contentformat import ContentFormat
from ..optiontypes import BlockOption
from ..options import Options
from ..resource import PathCapable, Resource
from ..util import hostportsplit
from ..util.cli import AsyncCLIDaemon
from ..util.linkformat import Link, LinkFormat
from . import common
from ._fileserver_open import OpenFile, OpenFiles
from ._fileserver_fs import (
    ListingCache,
    NoSuchPath,
    PathForbidden,
    Root,
    body_etag,
    check_segments,
    content_format_for,
    fs_error,
    settled,
    stat_etag,
    stat_signature,
)
from ._fileserver_upload import UploadTable, discard_temporary, replace_atomically, write_temporary
from ._fileserver_watch import ChangeWatcher

__all__ = ["FileServer", "FileServerProgram", "build_parser", "sync_main"]

_WELL_KNOWN_CORE = (".well-known", "core")
_FILESERVER_RT = "tag:chrysn@fsfe.org,2022:fileserver"
_BlockwiseTuple = BlockOption.BlockwiseTuple

DEFAULT_MAX_UPLOAD_SIZE = 16 << 20

SMALL_FILE_SIZE = 1024
"""Files up to this size are kept in memory (256 of them at most) once
they have been unchanged for a while (see ``settled()``)."""


class TrailingSlashMissing(error.BadRequest):
    message = "Not a file (add a trailing slash to list the directory)"


class TrailingSlashAbundant(error.BadRequest):
    message = "Not a directory (remove the trailing slash)"


def _host_of(remote) -> str:
    """The host part of a remote endpoint (without the port)."""
    try:
        return hostportsplit(remote.hostinfo)[0]
    except ValueError:
        return remote.hostinfo


class _RefusalSummary:
    """Logs each refusal at debug level, and how many there were at info
    level at most once per ``interval`` seconds, so that no client can
    flood the log."""

    def __init__(self, log: logging.Logger, what: str, interval: float = 10.0):
        self.log = log
        self.what = what
        self.interval = interval
        self._count = 0
        self._since = -float("inf")

    def note(self, detail: str, *args: Any) -> None:
        self.log.debug(detail, *args)
        self._count += 1
        now = time.monotonic()
        if now - self._since >= self.interval:
            self.log.info("%d %s in the last %.0f s", self._count, self.what, min(now - self._since, self.interval))
            self._count = 0
            self._since = now


class _Watched:
    """What is known about one observed path: its observations, where the
    watcher looks for its changes, and the state last notified."""

    __slots__ = ("segments", "directory", "name", "is_dir", "signature", "observations")

    def __init__(self, segments: tuple, directory: str, name: Optional[str], signature: Any):
        self.segments = segments
        self.directory = directory
        self.name = name  # None for a directory's listing
        self.is_dir = name is None
        self.signature = signature
        self.observations: set = set()


class FileServer(Resource, interfaces.ObservableResource, PathCapable):
    """The resource serving a directory tree (see the module description).

    ``root`` is the directory served; ``log`` a logger. ``write`` enables
    PUT and DELETE, ``hidden`` serves names starting with a dot,
    ``etag_length`` (0 to 8) the ETag length (0: none), ``watch`` the
    change watching backend (``"auto"``, ``"watchfiles"``, ``"poll"``).
    The caps are keyword arguments as well; see the module description.

    Call :meth:`shutdown` after the server context's shutdown: it stops
    the change watcher and deletes unfinished uploads."""

    #: (no rendering of the file server needs a task before it first waits:
    #: reads and listings answer within the delivery of their request)
    renders_without_task = True

    def __init__(
        self,
        root,
        log: Optional[logging.Logger] = None,
        *,
        write: bool = False,
        etag_length: int = 8,
        hidden: bool = False,
        max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE,
        max_uploads: int = 16,
        max_uploads_per_peer: int = 4,
        upload_timeout: float = 60.0,
        max_observations: int = 1024,
        max_watched_directories: int = 256,
        max_listing_entries: int = 100_000,
        watch: str = "auto",
        poll_interval: float = 2.0,
        max_open_files: int = 16,
        open_file_idle_timeout: float = 2.0,
        open_file_lifetime: float = 10.0,
    ):
        super().__init__()
        if not 0 <= etag_length <= 8:
            raise ValueError("etag_length must be between 0 and 8")
        self.root = Root(os.fspath(root), hidden=hidden)
        self.log = log if log is not None else logging.getLogger("fileserver")
        self.write = write
        self.etag_length = etag_length
        self.max_upload_size = max_upload_size
        self.max_observations = max_observations
        self.max_watched_directories = max_watched_directories
        self.max_listing_entries = max_listing_entries
        self.uploads = UploadTable(max_uploads=max_uploads, max_per_peer=max_uploads_per_peer, timeout=upload_timeout)
        self._upload_timer: Optional[asyncio.TimerHandle] = None
        self._listings = ListingCache()
        self._small_files = ListingCache(max_entries=256, max_bytes=SMALL_FILE_SIZE * 256)
        self._open_files = OpenFiles(max_open_files, open_file_idle_timeout, open_file_lifetime)
        self._open_files_timer: Optional[asyncio.TimerHandle] = None
        self._watched: dict[tuple, _Watched] = {}
        self._by_directory: dict[str, dict[tuple, _Watched]] = {}
        self._observation_count = 0
        self._watch_backend = watch
        self._poll_interval = poll_interval
        self._watcher: Optional[ChangeWatcher] = None
        self._refused_observations = _RefusalSummary(self.log, "observations refused (caps reached)")
        self._refused_uploads = _RefusalSummary(self.log, "uploads refused or dropped")

    def __repr__(self):
        mode = "read-write" if self.write else "read-only"
        return f"<{type(self).__name__} {self.root.path!r} {mode}>"

    async def shutdown(self) -> None:
        """Stop watching, drop unfinished uploads (deleting their temporary
        files) and close the root."""
        if self._watcher is not None:
            await self._watcher.shutdown()
            self._watcher = None
        if self._upload_timer is not None:
            self._upload_timer.cancel()
            self._upload_timer = None
        self.uploads.clear()
        self._listings.clear()
        self._small_files.clear()
        if self._open_files_timer is not None:
            self._open_files_timer.cancel()
            self._open_files_timer = None
        self._open_files.clear()
        self.root.close()

    # ------------------------------------------------------------ dispatch

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        """Never: Block2 is served from the files directly, Block1 uploads
        are spooled to disk block by block."""
        return False

    def get_resources_as_linkheader(self) -> LinkFormat:
        """The listing of ``/.well-known/core``: the root as a file service."""
        return LinkFormat([Link("/", ct=ContentFormat.LINKFORMAT, rt=_FILESERVER_RT, obs=None)])

    def get_link_description(self) -> dict:
        return dict(super().get_link_description() or {}, ct=int(ContentFormat.LINKFORMAT), rt=_FILESERVER_RT, obs=None)

    def _split(self, request: Message) -> tuple[tuple, bool]:
        """The request's path segments without a trailing empty one, and
        whether there was one (or the path is the root)."""
        segments = request.opt.uri_path
        check_segments(segments, hidden=self.root.hidden)
        if not segments:
            return (), True
        if segments[-1] == "":
            return segments[:-1], True
        return segments, False

    # ------------------------------------------------------------- reading

    async def render_get(self, request: Message) -> Message:
        block2 = request.opt.block2
        if block2 is not None and block2.block_number:
            try:
                response = self._continue_transfer(request, block2)
            except OSError as e:
                raise self._fs_error(e, request) from None
            if response is not None:
                return response
        if request.opt.uri_path == _WELL_KNOWN_CORE:
            return Message(
                payload=str(self.get_resources_as_linkheader()).encode("utf-8"),
                content_format=ContentFormat.LINKFORMAT,
            )
        segments, want_dir = self._split(request)
        try:
            with self.root.resolve(segments) as target:
                if not target.exists:
                    raise NoSuchPath()
                if target.is_dir:
                    if not want_dir:
                        raise TrailingSlashMissing()
                    return self._render_listing(request, target, segments)
                if want_dir:
                    raise TrailingSlashAbundant()
                return self._render_file(request, target, segments)
        except OSError as e:
            raise self._fs_error(e, request) from None

    def _fs_error(self, exc: OSError, request: Message) -> error.RenderableError:
        result = fs_error(exc)
        if isinstance(result, error.InternalServerError):
            self.log.error("File system error on /%s: %s", "/".join(request.opt.uri_path), exc)
        return result

    def _render_file(self, request: Message, target, segments: tuple) -> Message:
        if not stat.S_ISREG(target.st.st_mode):
            raise PathForbidden("Only regular files and directories are served")
        content_format = content_format_for(target.name)
        accept = request.opt.accept
        if accept is not None and accept != content_format:
            if content_format is None and accept == ContentFormat.OCTETSTREAM:
                content_format = ContentFormat.OCTETSTREAM
            else:
                raise error.NotAcceptable()
        small = target.st.st_size <= SMALL_FILE_SIZE and request.opt.block2 is None and settled(target.st)
        if small:
            cached = self._small_files.get((stat_signature(target.st), segments))
            if cached is not None and target.st.st_size <= single_message_limit(request.remote):
                payload, etag = cached
                if etag is not None and etag in request.opt.etags:
                    return Message(code=Code.VALID, etag=etag)
                return Message(code=Code.CONTENT, payload=payload, content_format=content_format, etag=etag)
        fd, st = target.open_file()
        kept = False
        try:
            etag = stat_etag(st, self.etag_length)
            if etag is not None and etag in request.opt.etags:
                return Message(code=Code.VALID, etag=etag)
            block = self._plan_block(request, st.st_size)
            if block is None:
                payload = os.pread(fd, st.st_size, 0) if st.st_size else b""
                if small and len(payload) == st.st_size:
                    self._small_files.put((stat_signature(st), segments), payload, etag)
                return Message(code=Code.CONTENT, payload=payload, content_format=content_format, etag=etag)
            offset, length, block2 = block
            payload = os.pread(fd, min(length, st.st_size - offset), offset) if offset < st.st_size else b""
            if block2.size_exponent != 7 and offset + len(payload) < st.st_size:
                # (more blocks to come: keep the file open for them)
                self._keep_open(segments, target, fd, st, etag, content_format)
                kept = True
        finally:
            if not kept:
                os.close(fd)
        return self._block_response(request, payload, offset, st.st_size, block2, content_format, etag)

    def _keep_open(self, segments: tuple, target, fd: int, st: os.stat_result, etag, content_format) -> None:
        """Hand the open file of a transfer's block to the open files, for
        the blocks after it (see ``aiocoap.cli._fileserver_open``)."""
        template = Options()
        template.content_format = content_format
        template.etag = etag
        loop = asyncio.get_running_loop()
        entry = OpenFile(fd, stat_signature(st), st.st_size, etag, template,
                         target.directory_path(), target.name, loop.time())
        self._open_files.put(segments, entry)
        if self._open_files_timer is None:
            self._schedule_open_files_expiry(loop)

    def _schedule_open_files_expiry(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = self._open_files.next_deadline()
        if deadline is not None:
            self._open_files_timer = loop.call_at(deadline, self._expire_open_files, loop)

    def _expire_open_files(self, loop: asyncio.AbstractEventLoop) -> None:
        self._open_files_timer = None
        self._open_files.expire(loop.time())
        self._schedule_open_files_expiry(loop)

    def _continue_transfer(self, request: Message, block2: _BlockwiseTuple) -> Optional[Message]:
        """A later block of a file transfer served from the file kept open
        since its first block, or None where that does not apply (nothing
        kept open, the file changed, or the request asks for more than a
        plain block: then the full path answers it)."""
        opt = request.opt
        entry = self._open_files.get(opt.uri_path, asyncio.get_running_loop().time())
        if entry is None:
            return None
        number, _, szx = block2
        if (
            szx > getattr(request.remote, "maximum_block_size_exp", 6)
            or szx == 7
            or opt.etags
            or opt.accept is not None
        ):
            return None
        fd = entry.fd
        if stat_signature(os.fstat(fd)) != entry.signature:
            self._open_files.drop(opt.uri_path)
            return None
        size = entry.size
        block_size = block2.size
        offset = number * block_size
        if offset >= size:
            return None
        payload = os.pread(fd, min(block_size, size - offset), offset)
        response = Message(code=Code.CONTENT, payload=payload)
        options = response.opt = entry.template.copy_shallow()
        options.block2 = _BlockwiseTuple(number, offset + len(payload) < size, szx)
        if opt.size2 is not None:
            options.size2 = size
        return response

    def _render_listing(self, request: Message, target, segments: tuple) -> Message:
        accept = request.opt.accept
        if accept is not None and accept != ContentFormat.LINKFORMAT:
            raise error.NotAcceptable()
        block2 = request.opt.block2
        body, etag = self._listing(target, segments, continuing=block2 is not None and block2.block_number > 0)
        if etag is not None and etag in request.opt.etags:
            return Message(code=Code.VALID, etag=etag)
        block = self._plan_block(request, len(body))
        if block is None:
            return Message(code=Code.CONTENT, payload=body, content_format=ContentFormat.LINKFORMAT, etag=etag)
        offset, length, block2 = block
        payload = body[offset:offset + length]
        return self._block_response(request, payload, offset, len(body), block2, ContentFormat.LINKFORMAT, etag)

    def _listing(self, target, segments: tuple, *, continuing: bool = False) -> tuple[bytes, Optional[bytes]]:
        """The listing of a resolved directory and its ETag. Listings are
        cached by directory state; a cached one is used only where that
        state can be told apart from later ones (see ``settled()``) or
        for the later blocks of a transfer, which have to continue the
        representation they started on anyway."""
        st = target.st if target.name is not None else os.fstat(target.dir_fd)
        key = (stat_signature(st), segments)
        if continuing or settled(st):
            cached = self._listings.get(key)
            if cached is not None:
                return cached
        body = self.root.list_directory(target, segments, self.max_listing_entries)
        etag = body_etag(body, self.etag_length)
        self._listings.put(key, body, etag)
        return body, etag

    @staticmethod
    def _plan_block(request: Message, size: int) -> Optional[tuple[int, int, _BlockwiseTuple]]:
        """Which part of a representation of ``size`` bytes to send: None
        for all of it in one message, else (offset, length, Block2)."""
        remote = request.remote
        max_exp = getattr(remote, "maximum_block_size_exp", 6)
        block2 = request.opt.block2
        if block2 is None:
            if size <= single_message_limit(remote):
                return None
            block2 = _BlockwiseTuple(0, False, 7 if max_exp >= 7 else min(max_exp, 6))
        elif block2.size_exponent == 7:
            if max_exp < 7:
                raise error.BadRequest("BERT blocks need a transport that supports them")
        elif block2.size_exponent > max_exp:
            block2 = block2.reduced_to(max_exp)
        offset = block2.start
        if block2.size_exponent == 7:
            capacity = getattr(remote, "maximum_payload_size", BERT_UNIT)
            length = max(BERT_UNIT, capacity - capacity % BERT_UNIT)
        else:
            length = block2.size
        if offset >= size and offset > 0:
            raise error.BadOption("Block2 starts beyond the end of the representation")
        return offset, length, block2

    @staticmethod
    def _block_response(request, payload, offset, size, block2, content_format, etag) -> Message:
        more = offset + len(payload) < size
        response = Message(
            code=Code.CONTENT,
            payload=payload,
            content_format=content_format,
            etag=etag,
            block2=_BlockwiseTuple(block2.block_number, more, block2.size_exponent),
        )
        if block2.block_number == 0 or request.opt.size2 is not None:
            response.opt.size2 = size
        return response

    # ------------------------------------------------------------- observe

    async def add_observation(self, request: Message, serverobservation) -> None:
        """Accept observations of files and directories that exist, within
        the caps (see the module description)."""
        if request.code != Code.GET or request.opt.uri_path == _WELL_KNOWN_CORE:
            return
        try:
            segments, want_dir = self._split(request)
            with self.root.resolve(segments) as target:
                if not target.exists or target.is_dir != want_dir:
                    return
                directory = target.directory_path()
                name = None if target.is_dir else target.name
                key = (segments, want_dir)
                entry = self._watched.get(key)
                if entry is None:
                    if self._observation_count >= self.max_observations or (
                        directory not in self._by_directory
                        and len(self._by_directory) >= self.max_watched_directories
                    ):
                        self._refused_observations.note("Observation of /%s refused: caps reached", "/".join(segments))
                        return
                    entry = _Watched(segments, directory, name, self._signature_of(target, segments))
                    self._add_watched(key, entry)
                elif self._observation_count >= self.max_observations:
                    self._refused_observations.note("Observation of /%s refused: caps reached", "/".join(segments))
                    return
        except (error.RenderableError, OSError):
            return  # the rendering tells the client why
        entry.observations.add(serverobservation)
        self._observation_count += 1
        serverobservation.accept(functools.partial(self._observation_ended, key, entry, serverobservation))

    def _add_watched(self, key: tuple, entry: _Watched) -> None:
        self._watched[key] = entry
        self._by_directory.setdefault(entry.directory, {})[key] = entry
        if self._watcher is None:
            self._watcher = ChangeWatcher(
                self._changed, log=self.log, backend=self._watch_backend, poll_interval=self._poll_interval
            )
        self._watcher.add(entry.directory)

    def _observation_ended(self, key: tuple, entry: _Watched, serverobservation) -> None:
        if serverobservation not in entry.observations:
            return
        entry.observations.discard(serverobservation)
        self._observation_count -= 1
        if entry.observations or self._watched.get(key) is not entry:
            return
        del self._watched[key]
        siblings = self._by_directory[entry.directory]
        del siblings[key]
        if not siblings:
            del self._by_directory[entry.directory]
        if self._watcher is not None:
            self._watcher.remove(entry.directory)

    def _signature_of(self, target, segments: tuple) -> Any:
        """What changes when the observed thing changes: the file's state,
        or the directory's listing."""
        if target.is_dir:
            return body_etag(self._listing(target, segments)[0], 8)
        return stat_signature(target.st)

    def _current_signature(self, entry: _Watched) -> Any:
        try:
            with self.root.resolve(entry.segments) as target:
                if not target.exists or target.is_dir != entry.is_dir:
                    return None
                return self._signature_of(target, entry.segments)
        except (error.RenderableError, OSError):
            return None

    def _changed(self, directory: str, names: Optional[frozenset]) -> None:
        """Called by the change watcher (and after own writes): notify the
        observers of what changed in ``directory`` (``names``: the entries
        that changed, None: anything may have)."""
        self._open_files.discard(directory, names)
        for entry in list(self._by_directory.get(directory, {}).values()):
            named = names is not None and not entry.is_dir and entry.name in names
            if names is not None and not entry.is_dir and not named:
                continue
            signature = self._current_signature(entry)
            # A file the watcher saw written is notified even if its state
            # looks the same: two writes within one clock tick do.
            if signature == entry.signature and not named:
                continue
            entry.signature = signature
            self.log.debug("/%s changed, notifying %d observer(s)", "/".join(entry.segments), len(entry.observations))
            for observation in list(entry.observations):
                observation.trigger()

    # ------------------------------------------------------------- writing

    def _writable_target(self, request: Message):
        """Resolve the target of a PUT or DELETE (a file, not following a
        final symbolic link)."""
        if not self.write:
            raise error.Forbidden("This server is read-only (start it with --write to allow writes)")
        segments, want_dir = self._split(request)
        if want_dir:
            raise error.MethodNotAllowed("Directories can not be written or deleted")
        target = self.root.resolve(segments, follow_last=False)
        try:
            if target.name is None or target.is_dir:
                raise TrailingSlashMissing("Is a directory; directories can not be written or deleted")
            if target.st is not None and not stat.S_ISREG(target.st.st_mode):
                raise PathForbidden("Only regular files can be written or deleted")
        except BaseException:
            target.close()
            raise
        return target

    def _check_preconditions(self, request: Message, st: Optional[os.stat_result]) -> None:
        """RFC 7252 §5.10.8: If-Match (a listed ETag, or the empty one for
        "exists") and If-None-Match ("does not exist")."""
        if_match = request.opt.if_match
        if if_match:
            if st is None:
                raise error.PreconditionFailed("The file does not exist")
            if b"" not in if_match and stat_etag(st, self.etag_length) not in if_match:
                raise error.PreconditionFailed("The file has changed")
        if request.opt.if_none_match and st is not None:
            raise error.PreconditionFailed("The file exists")

    @staticmethod
    def _current_state(dir_fd: int, name: str) -> Optional[os.stat_result]:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise PathForbidden("Only regular files can be written or deleted")
        return st

    async def render_put(self, request: Message) -> Message:
        block1 = request.opt.block1
        try:
            if block1 is not None:
                return self._put_block(request, block1)
            if len(request.payload) > self.max_upload_size:
                self._refused_uploads.note("Upload to /%s too large", "/".join(request.opt.uri_path))
                return self._too_large()
            with self._writable_target(request) as target:
                self._check_preconditions(request, target.st)
                temp_name, fd = write_temporary(target.dir_fd, request.payload)
                return self._commit(request, target.dir_fd, target.name, temp_name, fd, target.directory_path())
        except OSError as e:
            raise self._fs_error(e, request) from None

    def _commit(
        self, request: Message, dir_fd: int, name: str, temp_name: str, fd: int, directory: str, **options
    ) -> Message:
        """Check the preconditions against the file as it is now and put the
        temporary file in its place (nothing is awaited in between, so no
        other request of this server can come between the two)."""
        try:
            before = self._current_state(dir_fd, name)
            self._check_preconditions(request, before)
        except BaseException:
            discard_temporary(dir_fd, temp_name, fd)
            raise
        st = replace_atomically(dir_fd, temp_name, fd, name)
        self._written(directory, name)
        code = Code.CREATED if before is None else Code.CHANGED
        return Message(code=code, etag=stat_etag(st, self.etag_length), **options)

    def _written(self, directory: str, name: str) -> None:
        """Notify observers of a change made by this server right away
        (rather than when the watcher reports it)."""
        self._open_files.discard(directory, frozenset((name,)))
        if directory in self._by_directory:
            self._changed(directory, frozenset((name,)))

    def _too_large(self) -> Message:
        return Message(
            code=Code.REQUEST_ENTITY_TOO_LARGE,
            payload=b"Request body too large",
            size1=self.max_upload_size,
        )

    def _put_block(self, request: Message, block1: _BlockwiseTuple) -> Message:
        """One block of a Block1 upload (RFC 7959 §2.5): appended to the
        upload's temporary file, answered 2.31 Continue until the last one,
        which puts the file in place."""
        remote = request.remote
        szx = block1.size_exponent
        if szx == 7 and getattr(remote, "maximum_block_size_exp", 6) < 7:
            raise error.BadRequest("BERT blocks need a transport that supports them")
        payload = request.payload
        size = block1.size
        if block1.more and (len(payload) != size if szx != 7 else (not payload or len(payload) % BERT_UNIT)):
            raise error.BadRequest("Block1 payload does not match the block size")
        if szx != 7 and len(payload) > size:
            raise error.BadRequest("Block1 payload exceeds the block size")
        key = (remote, request.opt.uri_path, tuple(request.opt.request_tag))
        loop = asyncio.get_running_loop()
        now = loop.time()
        offset = block1.start
        if block1.block_number == 0:
            size1 = request.opt.size1
            if (size1 is not None and size1 > self.max_upload_size) or len(payload) > self.max_upload_size:
                self.uploads.drop(key)
                self._refused_uploads.note("Upload to /%s announced too large", "/".join(request.opt.uri_path))
                return self._too_large()
            with self._writable_target(request) as target:
                self._check_preconditions(request, target.st)
                try:
                    upload = self.uploads.start(
                        key, _host_of(remote), os.dup(target.dir_fd), target.name, target.directory_path(), now
                    )
                except error.ServiceUnavailable:
                    self._refused_uploads.note("Upload to /%s refused: too many uploads", "/".join(request.opt.uri_path))
                    raise
        else:
            found = self.uploads.get(key)
            if block1.more and found is not None and found.last == (offset, len(payload)):
                # A repeated block (its answer got lost): answer it again.
                found.seen = now
                return self._continue(block1)
            if found is None or offset != found.received:
                self._refused_uploads.note("Block %d to /%s does not continue an upload", block1.block_number, "/".join(request.opt.uri_path))
                raise error.RequestEntityIncomplete("This block does not continue an upload in progress")
            upload = found
        if offset + len(payload) > self.max_upload_size:
            self.uploads.drop(key)
            self._refused_uploads.note("Upload to /%s too large", "/".join(request.opt.uri_path))
            return self._too_large()
        try:
            upload.append(offset, payload, now)
        except BaseException:
            self.uploads.drop(key)
            raise
        self._schedule_upload_expiry(loop)
        if block1.more:
            return self._continue(block1)
        self.uploads.finish(key)
        try:
            return self._commit(
                request, upload.dir_fd, upload.target, upload.temp_name, upload.fd, upload.directory,
                block1=_BlockwiseTuple(block1.block_number, False, szx),
            )
        finally:
            os.close(upload.dir_fd)

    @staticmethod
    def _continue(block1: _BlockwiseTuple) -> Message:
        return Message(code=Code.CONTINUE, block1=_BlockwiseTuple(block1.block_number, True, block1.size_exponent))

    def _schedule_upload_expiry(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = self.uploads.next_deadline()
        timer = self._upload_timer
        if timer is not None:
            if deadline is not None and timer.when() <= deadline:
                return
            timer.cancel()
            self._upload_timer = None
        if deadline is not None:
            self._upload_timer = loop.call_at(deadline, self._expire_uploads, loop)

    def _expire_uploads(self, loop: asyncio.AbstractEventLoop) -> None:
        self._upload_timer = None
        dropped = self.uploads.expire(loop.time())
        if dropped:
            self._refused_uploads.note("%d unfinished upload(s) timed out", dropped)
        self._schedule_upload_expiry(loop)

    async def render_delete(self, request: Message) -> Message:
        try:
            with self._writable_target(request) as target:
                if target.st is None:
                    raise NoSuchPath()
                self._check_preconditions(request, target.st)
                os.unlink(target.name, dir_fd=target.dir_fd)
                self._written(target.directory_path(), target.name)
        except OSError as e:
            raise self._fs_error(e, request) from None
        return Message(code=Code.DELETED)


# ------------------------------------------------------------------ program


def _upload_size(text: str) -> int:
    """argparse type of --max-upload-size: bytes, with an optional k/M/G
    (binary) suffix"""
    factors = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    number, factor = text, 1
    if text and text[-1].lower() in factors:
        number, factor = text[:-1], factors[text[-1].lower()]
    try:
        value = int(number) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (like 65536, 64k or 16M)") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the size can not be negative")
    return value


class FileServerProgram(AsyncCLIDaemon):
    """The ``aiocoap-fileserver`` program: a :class:`FileServer` on a
    server context, optionally registered at a Resource Directory."""

    server: Optional[FileServer] = None
    context: Any = None
    registerer: Any = None

    async def start(self, args: Optional[Sequence[str]] = None) -> None:
        parser = self.build_parser()
        options = parser.parse_args(args)
        server_options = common.extract_server_arguments(options)
        await self.start_with_options(**vars(options), server_opts=server_options)

    @staticmethod
    def build_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(
            prog="aiocoap-fileserver",
            description=(
                "A simple file server that serves the contents of a given directory via CoAP, read-only "
                "unless --write is given. It provides directory listings, guesses the media type of files "
                "it serves, and lets clients observe files and directories."
            ),
        )
        parser.add_argument("--version", action="version", version="%(prog)s " + meta.version)
        parser.add_argument(
            "-v", "--verbose", help="Be more verbose (repeat to debug)", action="count", dest="verbosity", default=0,
        )
        parser.add_argument(
            "--register", help="Register with a Resource directory", metavar="RD-URI", nargs="?", default=False,
        )
        parser.add_argument(
            "--etag-length",
            help="Length of the ETags, 0 to 8 (0 disables them, for files that never change; default: 8)",
            metavar="LENGTH",
            default=8,
            type=int,
            choices=range(0, 9),
        )
        parser.add_argument("--write", help="Allow writes (PUT and DELETE) by any client", action="store_true")
        parser.add_argument(
            "--max-upload-size",
            help="Largest file a PUT may write, in bytes (k, M, G suffixes allowed; default: 16M)",
            metavar="SIZE",
            type=_upload_size,
            default=DEFAULT_MAX_UPLOAD_SIZE,
        )
        parser.add_argument(
            "--hidden", help="Serve and list hidden files (names starting with a dot)", action="store_true",
        )
        parser.add_argument("path", help="Root directory of the server", nargs="?", default=".", type=Path)
        common.add_server_arguments(parser)
        return parser

    async def start_with_options(
        self,
        path,
        verbosity: int = 0,
        register: Any = False,
        server_opts: Optional[argparse.Namespace] = None,
        write: bool = False,
        etag_length: int = 8,
        max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE,
        hidden: bool = False,
        **server_kwargs: Any,
    ) -> None:
        """Start serving ``path``. ``server_kwargs`` go to
        :meth:`aiocoap.protocol.Context.create_server_context` (e.g.
        ``bind`` where no ``server_opts`` are given)."""
        common.configure_logging(verbosity)
        self.log = logging.getLogger("fileserver")
        if not os.path.isdir(path):
            common.fail(f"{os.fspath(path)!r} is not a directory")
        try:
            server = FileServer(
                path, self.log, write=write, etag_length=etag_length, hidden=hidden, max_upload_size=max_upload_size,
            )
        except OSError as e:
            common.fail(f"cannot serve {os.fspath(path)!r}: {e.strerror or e}")
        try:
            if server_opts is None:
                from ..protocol import Context

                self.context = await Context.create_server_context(server, **server_kwargs)
            else:
                self.context = await common.server_context_from_arguments(server, server_opts, **server_kwargs)
        except BaseException:
            await server.shutdown()
            raise
        self.server = server
        self.log.info("Serving %s (%s)", os.fspath(path), "read-write" if write else "read-only")
        if register is not False:
            await self._register(register)

    async def _register(self, rd: Optional[str]) -> None:
        try:
            from ..resourcedirectory.client.register import Registerer
        except ImportError:
            await self.shutdown()
            common.fail("--register is not available: this aiocoap has no resource directory client")
        if rd is not None and rd.count("/") != 2:
            self.log.warning("Resource directory %r does not look like a host-only CoAP URI", rd)
        self.registerer = Registerer(self.context, rd=rd, lt=60)

    async def shutdown(self) -> None:
        if self.registerer is not None:
            await self.registerer.shutdown()
            self.registerer = None
        if self.context is not None:
            await self.context.shutdown()
            self.context = None
        if self.server is not None:
            await self.server.shutdown()
            self.server = None


build_parser = FileServerProgram.build_parser


def sync_main(args: Optional[Sequence[str]] = None) -> None:
    """Run aiocoap-fileserver with the given arguments (by default, those
    of the process) until interrupted."""
    FileServerProgram.sync_main(args)


if __name__ == "__main__":
    sync_main()
