"""Change watching for :mod:`aiocoap.cli.fileserver`: tells the server
which of the directories it watches had something change in them.

Two backends, picked by :class:`ChangeWatcher`:

* ``watchfiles`` (the ``fileserver`` extra): one file system notification
  watcher (inotify on Linux) over all watched directories, not recursive,
  running in one thread. When a directory joins the set, the watcher is
  restarted with the new set; directories that left it are dropped at the
  next restart. After every (re)start, every watched directory is reported
  as "anything may have changed" once, since changes between the
  registration and the start (or during a restart) leave no event.
* ``poll``: every ``poll_interval`` seconds, every watched directory is
  reported as "anything may have changed"; the server then compares the
  state of what is observed in it. One timer for all directories.

Either way there is one watch per directory, however many observations
and files in it there are: a directory is added once and reference
counted. The callback gets the directory and the set of names that
changed in it (None: anything may have changed, check everything).

Logging (logger passed in): restarts and failures of the notification
backend at debug, the backend in use at info once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable, Optional

from ..util.asyncio import result_within

__all__ = ["ChangeWatcher", "watchfiles_available"]

OnChange = Callable[[str, Optional[frozenset]], None]


def watchfiles_available() -> bool:
    """True if the ``watchfiles`` package can be imported."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True


class ChangeWatcher:
    """Watches directories and reports changes in them to ``on_change``.

    ``backend`` is ``"watchfiles"``, ``"poll"`` or ``"auto"`` (watchfiles
    where installed, else polling). ``step`` (seconds) is how long
    watchfiles waits for further changes before reporting a group of them,
    and how quickly a restart takes effect."""

    def __init__(
        self,
        on_change: OnChange,
        *,
        log: logging.Logger,
        backend: str = "auto",
        poll_interval: float = 2.0,
        step: float = 0.05,
    ):
        if backend == "auto":
            backend = "watchfiles" if watchfiles_available() else "poll"
        if backend not in ("watchfiles", "poll"):
            raise ValueError(f"unknown change watching backend {backend!r}")
        self.backend = backend
        self.poll_interval = poll_interval
        self.step = step
        self._on_change = on_change
        self._log = log
        self._counts: dict[str, int] = {}
        self._watching: frozenset = frozenset()
        self._wakeup = asyncio.Event()
        self._stop: Optional[asyncio.Event] = None
        self._closing = False
        self._task: Optional[asyncio.Task] = None

    def __repr__(self):
        return f"<{type(self).__name__} {self.backend}, {len(self._counts)} directories>"

    @property
    def directories(self) -> frozenset:
        """The directories currently asked for."""
        return frozenset(self._counts)

    def add(self, directory: str) -> None:
        """Start watching ``directory`` (or count one more user of it)."""
        count = self._counts.get(directory, 0)
        self._counts[directory] = count + 1
        if count:
            return
        if self._task is None:
            if self.backend == "poll":
                self._log.info(
                    "Looking for changes every %g s (install aiocoap[fileserver] for change notification)",
                    self.poll_interval,
                )
            else:
                self._log.info("Watching for changes through watchfiles")
            run = self._run_watchfiles if self.backend == "watchfiles" else self._run_polling
            self._task = asyncio.get_running_loop().create_task(run(), name="fileserver change watcher")
        if directory not in self._watching:
            # (the polling backend never sets _stop; it sees the new set at
            # its next round)
            if self._stop is not None:
                self._stop.set()
            self._wakeup.set()

    def remove(self, directory: str) -> None:
        """Undo one :meth:`add`."""
        count = self._counts.get(directory, 0) - 1
        if count > 0:
            self._counts[directory] = count
        else:
            self._counts.pop(directory, None)

    async def shutdown(self) -> None:
        """Stop watching; returns once the watcher thread (if any) ended."""
        self._closing = True
        self._counts.clear()
        if self._stop is not None:
            self._stop.set()
        self._wakeup.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            # The notification thread checks its stop event every step.
            await asyncio.wait_for(asyncio.shield(task), 5 + 4 * self.step)
        except asyncio.TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _report(self, directory: str, names: Optional[frozenset]) -> None:
        if directory not in self._counts:
            return
        try:
            self._on_change(directory, names)
        except Exception:
            self._log.exception("Handling a change in %s failed", directory)

    def _report_all(self) -> None:
        for directory in list(self._counts):
            self._report(directory, None)

    async def _idle(self, timeout: Optional[float]) -> None:
        """Wait until the set of directories changes (or ``timeout``)."""
        self._wakeup.clear()
        try:
            await result_within(self._wakeup.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def _run_polling(self) -> None:
        while not self._closing:
            await self._idle(self.poll_interval)
            if not self._closing:
                self._report_all()

    async def _run_watchfiles(self) -> None:
        import watchfiles

        while not self._closing:
            present = frozenset(d for d in self._counts if os.path.isdir(d))
            self._watching = present
            if not present:
                if self._counts:
                    # Everything watched vanished: the server's checks end
                    # those observations; look again later in any case.
                    self._report_all()
                    await self._idle(self.poll_interval)
                else:
                    await self._idle(None)
                continue
            stop = self._stop = asyncio.Event()
            self._wakeup.clear()
            self._log.debug("Starting change notification for %d directories", len(present))
            changes_seen = watchfiles.awatch(
                *sorted(present),
                watch_filter=None,
                stop_event=stop,
                recursive=False,
                step=max(1, round(self.step * 1000)),
                debounce=max(100, round(self.step * 20000)),
                rust_timeout=1000,
                ignore_permission_denied=True,
            )
            # Runs once the watcher exists (its first step creates it).
            asyncio.get_running_loop().call_soon(self._report_all)
            try:
                async for changes in changes_seen:
                    self._dispatch(changes)
            except Exception as e:
                # Typically a directory vanished while the watcher started.
                self._log.debug("Change notification failed (%r), restarting", e)
                await self._idle(self.poll_interval)
            finally:
                self._stop = None
                await changes_seen.aclose()

    def _dispatch(self, changes) -> None:
        by_directory: dict[str, Optional[set]] = {}
        for _, path in changes:
            if path in self._counts:
                # The watched directory itself changed (removed, renamed).
                by_directory[path] = None
                continue
            directory, name = os.path.split(path)
            names = by_directory.setdefault(directory, set())
            if names is not None:
                names.add(name)
        for directory, names in by_directory.items():
            self._report(directory, None if names is None else frozenset(names))
