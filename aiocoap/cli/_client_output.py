"""How aiocoap-client shows what it receives (part of
:mod:`aiocoap.cli.client`, internal).

* Payloads of successful responses go to stdout, everything about them
  (codes of unsuccessful responses and their diagnostic payload, the
  location of a created resource, notes of the pretty printer) to stderr.
* Without a terminal on stdout, a single response's payload is written
  exactly as received. Notifications of an observation are each ended with
  a line feed if they lack one, so that a script can read one notification
  per line (as long as the payloads are single lines of text).
* On a terminal, a payload without a final line feed gets one, and the
  remark "(No newline at end of message)" once per run.
* :func:`describe_message` is the text ``-v`` logs for each message sent or
  received: code, peer address, type, message ID and token, every option,
  the payload size and a hex dump of the payload's first
  :data:`VERBOSE_DUMP_LIMIT` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import urllib.parse
from typing import Any, Optional

from ..numbers import Code, ContentFormat
from ..numbers.optionnumbers import OptionNumber
from ..util.prettyprint import hexdump

log = logging.getLogger("coap.aiocoap-client")

VERBOSE_DUMP_LIMIT = 256
"""How many payload bytes ``-v`` shows as a hex dump per message."""

NO_NEWLINE_REMARK = "(No newline at end of message)"

_ANSI = {"red": "\x1b[31m", "green": "\x1b[32m", "grey": "\x1b[90m"}
_ANSI_RESET = "\x1b[0m"

# Characters that stay unencoded in a path segment (RFC 3986 pchar) and in a
# query argument (there, "&" separates arguments)
_PCHAR_SAFE = "!$&'()*+,;=:@"
_QUERY_SAFE = "!$'()*+,;=:@/?"


def isatty(file) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False


def flush_stdout() -> None:
    with contextlib.suppress(ValueError, OSError):
        sys.stdout.flush()


def pygments_missing() -> bool:
    """Whether colors can not be had (pygments, from the prettyprint extra,
    is not installed)"""
    import importlib.util

    try:
        return importlib.util.find_spec("pygments") is None
    except (ImportError, ValueError):
        return "pygments" not in sys.modules


def location_reference(message) -> Optional[str]:
    """The relative reference (``/path?query``) the Location-Path and
    Location-Query options of a message make up, or None without them

    >>> from aiocoap import Message
    >>> location_reference(Message(location_path=["a b", "c/d"], location_query=["x=1", "y&z"]))
    '/a%20b/c%2Fd?x=1&y%26z'
    """
    path = message.opt.location_path
    query = message.opt.location_query
    if not path and not query:
        return None
    reference = "/" + "/".join(urllib.parse.quote(segment, safe=_PCHAR_SAFE) for segment in path)
    if query:
        reference += "?" + "&".join(urllib.parse.quote(argument, safe=_QUERY_SAFE) for argument in query)
    return reference


def _option_name(number) -> str:
    printable = getattr(number, "name_printable", None)
    if printable:
        return printable
    name = getattr(number, "name", None)
    if not name:
        return "Option"
    return "-".join(part.capitalize() for part in name.split("_"))


def _option_value(option) -> str:
    value = option.value
    if option.number in (OptionNumber.CONTENT_FORMAT, OptionNumber.ACCEPT) and isinstance(value, int):
        media_type = ContentFormat(value).media_type
        if media_type is not None:
            return f"{int(value)} ({media_type})"
    return repr(value)


def _remote_text(remote) -> str:
    if remote is None:
        return "(no address)"
    scheme = getattr(remote, "scheme", None)
    hostinfo = getattr(remote, "hostinfo", None)
    if scheme and hostinfo:
        return f"{scheme}://{hostinfo}"
    return repr(remote)


def describe_message(message, direction: str) -> list[str]:
    """Lines that describe a message for ``-v``; direction is "to" for
    messages sent and "from" for messages received."""
    details = []
    if message.mtype is not None:
        details.append(getattr(message.mtype, "name", str(message.mtype)))
    if message.mid is not None:
        details.append(f"MID {message.mid}")
    if message.token:
        details.append(f"token {message.token.hex()}")
    head = f"{message.code} {direction} {_remote_text(message.remote)}"
    lines = [head + (f" ({', '.join(details)})" if details else "")]
    for option in message.opt.option_list():
        lines.append(f"- {_option_name(option.number)} ({int(option.number)}): {_option_value(option)}")
    payload = bytes(message.payload)
    if not payload:
        lines.append("No payload")
        return lines
    shown = payload[:VERBOSE_DUMP_LIMIT]
    if len(shown) < len(payload):
        lines.append(f"Payload: {len(payload)} bytes, the first {len(shown)} of them:")
    else:
        lines.append(f"Payload: {len(payload)} byte{'s' if len(payload) != 1 else ''}:")
    lines.extend("  " + line for line in hexdump(shown).splitlines())
    return lines


def log_message(message, direction: str) -> None:
    """Log the description of a message at info level (shown with -v)"""
    if log.isEnabledFor(logging.INFO):
        for line in describe_message(message, direction):
            log.info("%s", line)


class FirstVerbosityFilter(logging.Filter):
    """What ``-v`` shows (as a filter of the handler, while the library
    logs at debug level): the tool's own information, the library's
    warnings and errors, and of the library's debug output only the
    retransmissions."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or record.name == log.name:
            return True
        return isinstance(record.msg, str) and record.msg.startswith("Retransmitting")


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def defang(text: str) -> str:
    """Escape the control characters of text (but line feeds and tabs)"""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class Output:
    """How responses are shown (decided once per request from the options
    and whether stdout is a terminal)"""

    def __init__(self, quiet: bool, pretty: bool, color: bool, observing: bool):
        self.quiet = quiet
        self.pretty = pretty
        self.color = color
        self.observing = observing
        self.remarked_no_newline = False

    def colored(self, text: str, color: str) -> str:
        if not self.color:
            return text
        return _ANSI[color] + text + _ANSI_RESET

    def info(self, text: str, color: str = "green") -> None:
        """A line of information about the response (stderr, not if quiet)"""
        if not self.quiet:
            flush_stdout()
            print(self.colored(text, color), file=sys.stderr, flush=True)

    def present(self, message) -> None:
        """Show a successful message's payload on stdout, or an unsuccessful
        one's code and diagnostic payload on stderr; tell where a created
        resource is."""
        diagnostic = message.code is not None and not Code(message.code).is_successful()
        location = location_reference(message)
        if location is not None:
            self.info(f"Location options indicate new resource: {location}")
        if diagnostic:
            flush_stdout()
            print(self.colored(str(message.code), "red"), file=sys.stderr, flush=True)
            file = sys.stderr
        else:
            file = sys.stdout
            if not message.payload and isatty(file):
                self.info(f"({message.code}, no payload)")
        if not message.payload:
            if self.observing and not diagnostic and not isatty(file):
                self._write_text(file, "\n")
            return

        payload = bytes(message.payload)
        if self.pretty:
            from ..util.prettyprint import colorize, pretty_print

            infos, mime, text = pretty_print(message)
            for line in infos:
                self.info("# " + line, "grey")
            ends_with_newline = text.endswith("\n")
            # Only a payload shown as it is can be said to lack a newline;
            # reformatted output just gets its line ended.
            verbatim = text.encode("utf-8", "surrogateescape") == payload
            if self.color:
                text = colorize(text, mime)
            self._write_text(file, text)
        elif diagnostic:
            # Meant to be UTF-8 text for humans (RFC 7252 Section 5.5.2);
            # whatever else it holds must not reach the terminal as control
            # sequences.
            text = defang(payload.decode("utf-8", "backslashreplace"))
            ends_with_newline = text.endswith("\n")
            verbatim = True
            self._write_text(file, text)
        else:
            ends_with_newline = payload.endswith(b"\n")
            verbatim = True
            buffer = getattr(file, "buffer", None)
            if buffer is not None:
                file.flush()
                buffer.write(payload)
                buffer.flush()
            else:
                self._write_text(file, payload.decode("utf-8", "replace"))

        if ends_with_newline:
            return
        if diagnostic or self.observing:
            # An error description for humans, or one of many notifications:
            # always complete lines
            self._write_text(file, "\n")
        elif isatty(file):
            # Keep the shell prompt from starting mid-line.
            self._write_text(file, "\n")
        else:
            return
        if isatty(file) and verbatim and not self.quiet and not self.remarked_no_newline:
            self.remarked_no_newline = True
            print(NO_NEWLINE_REMARK, file=sys.stderr, flush=True)

    @staticmethod
    def _write_text(file, text: str) -> None:
        file.write(text)
        file.flush()


class Progress:
    """A one-line display of a blockwise download's progress on stderr
    (only used when that is a terminal)."""

    def __init__(self):
        self.shown = False

    def update(self, received: int, total: Optional[int]) -> None:
        text = f"{received} of {total} bytes" if total else f"{received} bytes"
        if total:
            text += f" ({100 * received // total} %)"
        print(f"\r\x1b[Kreceiving: {text}", end="", file=sys.stderr, flush=True)
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)
            self.shown = False


async def run_observe_exec(command: str, message: Any, fail) -> None:
    """Run --observe-exec's command with the message payload on its stdin,
    waiting for it to finish (so notifications are handled in order);
    ``fail`` reports a command that can not be started."""
    # Creating the process is not interrupted by cancellation: asyncio (as
    # of Python 3.11) can wait forever for a process whose creation was
    # cancelled. A cancellation takes effect once the process exists.
    creation = asyncio.ensure_future(
        asyncio.create_subprocess_shell(command, stdin=asyncio.subprocess.PIPE)
    )
    try:
        process = await asyncio.shield(creation)
    except asyncio.CancelledError:
        while not creation.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(creation)
        if not creation.cancelled() and creation.exception() is None:
            await _stop_process(creation.result())
        raise
    except OSError as e:
        fail(f"cannot run --observe-exec command {command!r}: {e.strerror or e}")
    try:
        await process.communicate(message.payload)
    except asyncio.CancelledError:
        await _stop_process(process)
        raise
    if process.returncode:
        log.warning("--observe-exec command exited with status %d", process.returncode)


async def _stop_process(process) -> None:
    """End a command started for --observe-exec early"""
    # Closing our end of its stdin first matters: commands started by the
    # shell may still read from it, and (on some Python versions) waiting
    # for the process only ends once all its pipes are closed.
    process.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 2)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
