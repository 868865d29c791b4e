"""aiocoap-rd: a CoRE Resource Directory (RFC 9176) that keeps its
registrations in an SQLite database, so that they survive a restart with
their remaining lifetimes.

The interfaces are those of :mod:`aiocoap.resourcedirectory.server`
(registration at ``/rd``, lookups at ``/rd-lookup/ep`` and
``/rd-lookup/res``, simple registration at ``/.well-known/rd``, all
announced in ``/.well-known/core``). Caps on the number of registrations,
in total and per source host, and on the size of a registration keep a
flood of registrations from exhausting the machine.

Known caveats: no security is implemented (anybody can register, update and
remove any registration), and nothing group related.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from typing import Optional, Sequence

from .. import meta
from ..resourcedirectory.directory import Limits
from ..resourcedirectory.server import StandaloneResourceDirectory
from ..resourcedirectory.sqlite import SQLiteStorage
from ..util.cli import AsyncCLIDaemon
from .common import add_server_arguments, configure_logging, fail, server_context_from_arguments

__all__ = ["build_parser", "default_database", "Main", "sync_main", "StandaloneResourceDirectory"]


_DESCRIPTION = """\
A CoRE Resource Directory (RFC 9176). Registrations are kept in an SQLite
database and survive a restart with their remaining lifetimes.

Interfaces: registration at /rd, registration resources at /reg/NAME,
lookups at /rd-lookup/res and /rd-lookup/ep, simple registration at
/.well-known/rd. No security is implemented: anybody can register, update
and remove any registration."""


def default_database() -> str:
    """Where the registrations are kept when ``--database`` is not given:
    ``rd.sqlite3`` in the ``aiocoap`` folder of the user's state directory
    (``$XDG_STATE_HOME``, by default ``~/.local/state``)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "aiocoap", "rd.sqlite3")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of aiocoap-rd."""
    defaults = Limits()
    p = argparse.ArgumentParser(
        prog="aiocoap-rd",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_arguments(p)
    p.add_argument(
        "--database",
        metavar="PATH",
        help="SQLite file to keep the registrations in (created if missing; ':memory:' keeps them "
        "only while the program runs; default: rd.sqlite3 in $XDG_STATE_HOME/aiocoap, which is "
        "~/.local/state/aiocoap unless XDG_STATE_HOME is set)",
    )
    limits = p.add_argument_group("limits")
    limits.add_argument(
        "--max-registrations", metavar="N", type=_positive, default=defaults.max_registrations,
        help="Registrations kept at most in total (default: %(default)s)",
    )
    limits.add_argument(
        "--max-per-source", metavar="N", type=_positive, default=defaults.max_per_source,
        help="Registrations kept at most from one source host (default: %(default)s)",
    )
    limits.add_argument(
        "--max-payload", metavar="BYTES", type=_positive, default=defaults.max_payload,
        help="Largest link-format document accepted in a registration (default: %(default)s)",
    )
    p.add_argument("--version", action="version", version="%(prog)s " + meta.version)
    p.add_argument("-v", "--verbose", action="count", default=0, help="Show more log output (repeat for debug)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="Show less log output")
    return p


def open_storage(path: Optional[str]) -> SQLiteStorage:
    """The storage for ``--database`` (the default location when None);
    problems end the program with a one-line message."""
    if path is None:
        path = default_database()
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        except OSError as e:
            fail(f"cannot create the directory of the database {path!r}: {e.strerror or e}")
    try:
        return SQLiteStorage(path)
    except sqlite3.Error as e:
        fail(f"cannot use the database {path!r}: {e}")


class Main(AsyncCLIDaemon):
    """The aiocoap-rd program: ``Main.sync_main(args)`` runs it."""

    async def start(self, args: Optional[Sequence[str]] = None) -> None:
        options = build_parser().parse_args(sys.argv[1:] if args is None else list(args))
        configure_logging(options.verbose - options.quiet)
        storage = open_storage(options.database)
        limits = Limits(
            max_registrations=options.max_registrations,
            max_per_source=options.max_per_source,
            max_payload=options.max_payload,
        )
        try:
            self.context = await server_context_from_arguments(None, options)
        except BaseException:
            storage.close()
            raise
        self.site = StandaloneResourceDirectory(self.context, storage=storage, limits=limits)
        self.context.serversite = self.site

    async def shutdown(self) -> None:
        await self.context.shutdown()
        await self.site.shutdown()


def sync_main(args: Optional[Sequence[str]] = None) -> None:
    """Run aiocoap-rd with the given arguments (by default, those of the
    process) until it is stopped."""
    Main.sync_main(args)


if __name__ == "__main__":
    sync_main()
