"""Helpers for creating server-style applications in aiocoap

Note that these are not particular to aiocoap, but are used at different
places in aiocoap and thus shared here.

* :class:`ActionNoYes` gives argparse a ``--foo`` / ``--no-foo`` pair that
  sets one destination to True or False (or leaves a default of None, so
  the program can tell "not given" apart and decide by itself, eg. by
  whether its output is a terminal).
* :class:`AsyncCLIDaemon` runs a long-lived asyncio program from a
  synchronous ``main``: start, run until stopped or signalled, shut down,
  exit with a status code -- without tracebacks for Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any, NoReturn, Optional, Sequence

__all__ = ["ActionNoYes", "AsyncCLIDaemon"]

_log = logging.getLogger("aiocoap.util.cli")


class ActionNoYes(argparse.Action):
    """Simple action that automatically manages ``--{no-}something`` style
    options

    Register it with the positive spelling only; the negative one is added
    automatically, and both show up in the help text:

    >>> p = argparse.ArgumentParser()
    >>> _ = p.add_argument('--color', action=ActionNoYes, default=None)
    >>> p.parse_args([]).color is None
    True
    >>> p.parse_args(['--no-color']).color
    False
    >>> p.parse_args(['--no-color', '--color']).color
    True
    """

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        default: Optional[bool] = True,
        required: bool = False,
        help: Optional[str] = None,
    ):
        if len(option_strings) != 1 or not option_strings[0].startswith("--"):
            raise ValueError(
                "ActionNoYes takes exactly one long option (like --color), "
                f"not {list(option_strings)!r}"
            )
        name = option_strings[0][2:]
        if name.startswith("no-"):
            raise ValueError(
                f"Give ActionNoYes the positive option --{name[3:]}, "
                "the --no- variant is added automatically"
            )
        super().__init__(
            ["--" + name, "--no-" + name],
            dest,
            nargs=0,
            const=None,
            default=default,
            required=required,
            help=help,
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: Optional[str] = None,
    ) -> None:
        setattr(namespace, self.dest, not (option_string or "").startswith("--no-"))

    def format_usage(self) -> str:
        # Shown in the usage line; argparse would otherwise only show the
        # first spelling.
        return " | ".join(self.option_strings)


class AsyncCLIDaemon:
    """Helper for creating daemon-style CLI programs.

    Note that this currently doesn't create a Daemon in the sense of doing a
    daemon-fork; that could be added on demand, though.

    Subclass this and implement the :meth:`start` method as an async
    function; it will be passed all the constructor's arguments.

    When all setup is complete and the program is operational, return from
    the start method.

    Implement the :meth:`shutdown` coroutine and to do cleanup; what actually
    runs your program will, if possible, call that and await its return.

    Typical application for this is running ``MyClass.sync_main()`` in the
    program's ``if __name__ == "__main__":`` section.

    The program ends when :meth:`stop` is called (its argument becomes the
    process exit status), or on SIGINT (Ctrl-C) or SIGTERM, which end it
    with status 0 as a requested, orderly stop. A second signal while
    :meth:`shutdown` runs aborts the shutdown.

    Instances need an event loop; created outside a running loop (which
    :meth:`sync_main` avoids), they use the thread's current event loop.
    Inside a running loop, a program can be driven without
    :meth:`sync_main` by awaiting :attr:`initializing` and then
    :meth:`wait_for_stop`, and calling :meth:`shutdown` itself.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        self.__exitcode: asyncio.Future[int] = loop.create_future()
        self.initializing: asyncio.Task[None] = loop.create_task(
            self.start(*args, **kwargs),
            name=f"{type(self).__name__}.start",
        )
        """The task running :meth:`start`"""

    async def start(self, *args: Any, **kwargs: Any) -> None:
        """Set the program up (open sockets, create contexts, ...), and
        return once it is operational. Override this in subclasses."""
        raise NotImplementedError(f"{type(self).__name__} must implement start()")

    async def shutdown(self) -> None:
        """Undo what :meth:`start` did. Override this in subclasses."""
        raise NotImplementedError(f"{type(self).__name__} must implement shutdown()")

    def stop(self, exitcode: int) -> None:
        """Stop the operation (and exit sync_main) at the next convenience."""
        if not self.__exitcode.done():
            self.__exitcode.set_result(exitcode)

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called (or a signal asked to stop)"""
        return self.__exitcode.done()

    async def wait_for_stop(self) -> int:
        """Wait until :meth:`stop` is called, and return its exit code."""
        return await asyncio.shield(self.__exitcode)

    def _signalled(self, signum: int, main_task: asyncio.Task[int]) -> None:
        name = signal.Signals(signum).name
        if not self.initializing.done():
            _log.info("Received %s during startup, aborting", name)
            self.stop(0)
            self.initializing.cancel()
        elif not self.stopped:
            _log.info("Received %s, shutting down", name)
            self.stop(0)
        else:
            _log.warning("Received %s again, aborting the shutdown", name)
            main_task.cancel()

    async def _run(self) -> int:
        """Body of :meth:`sync_main` once the instance exists"""
        try:
            await self.initializing
        except asyncio.CancelledError:
            if not self.stopped:
                raise
            # Interrupted during startup: there is nothing complete to shut
            # down, and what start() had set up is left to process exit.
            return await self.wait_for_stop()
        exitcode = await self.wait_for_stop()
        await self.shutdown()
        return exitcode

    @classmethod
    async def _async_main(cls, *args: Any, **kwargs: Any) -> int:
        loop = asyncio.get_running_loop()
        self = cls(*args, **kwargs)
        main_task = asyncio.current_task()
        assert main_task is not None  # (run by asyncio.run)
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._signalled, signum, main_task)
            except (NotImplementedError, RuntimeError, ValueError):
                # Not on this platform or not in the main thread; Ctrl-C then
                # arrives as KeyboardInterrupt, handled in sync_main.
                continue
            installed.append(signum)
        try:
            return await self._run()
        except asyncio.CancelledError:
            if self.stopped:
                return await self.wait_for_stop()
            raise
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    @classmethod
    def sync_main(cls, *args: Any, **kwargs: Any) -> NoReturn:
        """Run the application in an AsyncIO main loop, shutting down cleanly
        on keyboard interrupt.

        This does not return: it ends the process with the code passed to
        :meth:`stop` (0 after SIGINT or SIGTERM)."""
        try:
            exitcode = asyncio.run(cls._async_main(*args, **kwargs))
        except KeyboardInterrupt:
            # Only reached where the loop could not take over SIGINT.
            exitcode = 0
        sys.exit(exitcode)
