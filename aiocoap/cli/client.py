"""aiocoap-client is a simple command-line tool for interacting with CoAP
servers

It sends one request (or, with ``--interactive``, one request per line typed
at its prompt) and shows the response. Output follows these rules:

* A successful (2.xx) response's payload goes to stdout. When stdout is not
  a terminal, the payload is written exactly as received (the notifications
  of an observation are each ended with a line feed); on a terminal (or
  with ``--pretty-print``), known content formats are reformatted (JSON
  indented, CBOR in diagnostic notation, binary data as a hex dump) and,
  with color, highlighted.
* Any other response code goes to stderr as ``4.04 Not Found``, followed by
  the diagnostic payload; a response with Location-* options gets the line
  ``Location options indicate new resource: /path`` on stderr.
* ``-v`` shows every message sent and received (code, peer address, type,
  message ID, token, options, payload size and a hex dump) and the
  retransmissions; ``-vv`` adds the library's information, ``-vvv`` its
  debug output.
* Failures that prevent getting a response (name resolution, timeouts,
  network errors, bad URIs or arguments, missing optional modules, URI
  schemes this version does not support) are one line on stderr, with a
  hint where one is known; ``-v`` adds the traceback.
* The exit status is 0 if the (last) response was successful, 2 for
  command line usage errors, and 1 for everything else. A request that is
  interrupted before its response arrived exits with 130 (SIGINT) or 143
  (SIGTERM); ending an established observation that way exits with 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shlex
import signal
import sys
import threading
from typing import Any, Callable, Optional, Sequence

from .. import error, meta
from ..numbers import Code, ContentFormat, TransportTuning
from ..proxy.client import ProxyForwarder
from ..util.cli import ActionNoYes
from . import common
from ._client_request import (
    PROG,
    build_request,
    proxy_address,
    describe_failure,
    fail,
    failure_text,
    missing_modules_text,
)
from ._client_output import (
    FirstVerbosityFilter,
    Output,
    Progress,
    isatty,
    log,
    log_message,
    pygments_missing,
    run_observe_exec,
)

__all__ = [
    "build_parser",
    "parse_commandline",
    "configure_logging",
    "single_request",
    "interactive",
    "sync_main",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
_EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

LIBRARY_LOGGER = "coap"
"""The logger of the client context (aiocoap's name for it)."""


# --- argument parsing --------------------------------------------------------


def _method(text: str) -> Code:
    """argparse type of --method: a request method name or number"""
    if text.isdigit():
        code = Code(int(text))
        # Request codes are class 0, details 1 to 31 (0.00 is Empty).
        if not 1 <= int(code) <= 31:
            raise argparse.ArgumentTypeError(
                f"{text} is not a request method number (those are 1 to 31)"
            )
        return code
    methods = {c.name.upper(): c for c in Code if c.is_request()}
    try:
        return methods[text.upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown method {text!r} (known: {', '.join(c.name for c in methods.values())})"
        ) from None


def _content_format(text: str) -> ContentFormat:
    """argparse type of --accept and --content-format: a media type or a
    Content-Format number"""
    if text.isdigit():
        number = int(text)
        if number > 0xFFFF:
            raise argparse.ArgumentTypeError(f"{text} is out of the Content-Format range (0 to 65535)")
        return ContentFormat(number)
    try:
        return ContentFormat.by_media_type(text)
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a media type with a registered Content-Format "
            "(give the number instead)"
        ) from None


def _size_exponent(text: str) -> int:
    """argparse type of --payload-initial-szx"""
    if not text.isdigit() or not 0 <= int(text) <= 6:
        raise argparse.ArgumentTypeError(f"{text!r} is not a block size exponent (0 to 6)")
    return int(text)


def _transport_tuning(text: str) -> TransportTuning:
    """argparse type of the hidden --transport-tuning option:
    ``NAME=VALUE[,NAME=VALUE...]`` with the attribute names of
    TransportTuning"""
    values: dict[str, Any] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {item!r}")
        try:
            values[name] = int(value) if value.strip().isdigit() else float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    try:
        return TransportTuning(**values)
    except TypeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (the usage is available
    through --help), as for every other failure of the tool"""

    def error(self, message):
        self.exit(EXIT_USAGE, common.format_error(f"{message} (see --help)", self.prog) + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of aiocoap-client (also used to document it)"""
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument(
        "--non",
        action="store_true",
        help="Send the request as a non-confirmable (NON) message",
    )
    p.add_argument(
        "-m",
        "--method",
        type=_method,
        default="GET",
        help='Name or number of the request method to use (default: "GET")',
    )
    p.add_argument(
        "--observe",
        action="store_true",
        help="Register an observation on the resource, and show every notification",
    )
    p.add_argument(
        "--observe-exec",
        metavar="CMD",
        help="Run the program CMD whenever the observed resource changes, "
        "with the new representation on its standard input (implies --observe)",
    )
    p.add_argument(
        "--accept",
        metavar="MIME",
        type=_content_format,
        help="Content format to request (media type or number)",
    )
    p.add_argument(
        "--proxy",
        metavar="HOST[:PORT]",
        help="Relay the CoAP request to a proxy for execution: HOST[:PORT] of a "
        "CoAP proxy, or a URI like coap+tcp://HOST:PORT; none (or -) for no proxy",
    )
    p.add_argument(
        "--payload",
        metavar="X",
        help="Send X as request payload (eg. with a PUT). If X starts with an '@', "
        "the rest is the name of a file to read the payload from; '@-' reads it "
        "from standard input. Payloads given directly may get converted, see "
        "--content-format.",
    )
    p.add_argument(
        "--payload-initial-szx",
        metavar="SZX",
        type=_size_exponent,
        help="Size exponent of the first block when the payload is sent in "
        "blocks: blocks of 2**(SZX+4) bytes, from 0 (16 bytes) to 6 (1024 bytes)",
    )
    p.add_argument(
        "--content-format",
        metavar="MIME",
        type=_content_format,
        help="Content format of the --payload data (media type or number). If "
        "it is a CBOR based format and --payload is not a file, the payload is "
        "read as CBOR diagnostic notation (JSON is a part of it) and sent as "
        "CBOR; a CBOR sequence is written as comma separated items, or as one "
        "array of them.",
    )
    p.add_argument(
        "--no-set-hostname",
        dest="set_hostname",
        action="store_false",
        help="Do not send the host name of the URL in a Uri-Host option (an IP "
        "address is never sent in it)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="Increase the debug output: -v shows the messages sent and received "
        "and the retransmissions, -vv the library's information, -vvv its "
        "debug output",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        help="Decrease the debug output",
    )
    p.add_argument(
        "--interactive",
        action="store_true",
        help="Enter interactive mode: one request per command line typed at a prompt",
    )
    p.add_argument(
        "--credentials",
        metavar="CREDENTIALS",
        help="Load credentials to use (for coaps://, OSCORE, ...) from the given JSON file",
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {meta.version}",
    )
    p.add_argument(
        "--color",
        action=ActionNoYes,
        default=None,
        help="Color the output (default: on if stdout is a terminal and all "
        "required modules, those of the prettyprint extra, are installed)",
    )
    p.add_argument(
        "--pretty-print",
        action=ActionNoYes,
        default=None,
        help="Pretty-print known content formats (default: on if stdout is a terminal)",
    )
    # For tests and experiments: shortens or lengthens the retransmission
    # timing of the request, eg. ACK_TIMEOUT=0.1,MAX_RETRANSMIT=1.
    p.add_argument(
        "--transport-tuning",
        type=_transport_tuning,
        help=argparse.SUPPRESS,
    )
    p.add_argument("url", nargs="?", help="CoAP address to fetch")
    return p


def parse_commandline(args: Sequence[str]) -> argparse.Namespace:
    """Parse the arguments of one aiocoap-client invocation (without the
    program name), and return them as a namespace.

    Usage errors end the program with exit status 2 after a one-line
    message (SystemExit)."""
    parser = build_parser()
    options = parser.parse_args(list(args))
    if options.interactive:
        defaults = vars(parser.parse_args(["--interactive"]))
        extra = [
            name
            for name, value in vars(options).items()
            if name not in ("verbose", "quiet", "color", "pretty_print") and value != defaults[name]
        ]
        if extra:
            parser.error(
                "with --interactive, URL and request options are given at the "
                "prompt, not on the command line"
            )
    elif options.url is None:
        parser.error("the following arguments are required: url")
    if options.observe_exec is not None:
        options.observe = True
    return options


def configure_logging(verbosity: int) -> None:
    """Set up logging to stderr for the given verbosity (number of -v minus
    number of -q), with aiocoap's levels: 0 shows warnings and errors, 1
    adds the client's own information (the messages it sends and receives)
    and the retransmissions, 2 the library's information, 3 its debug
    output; -1 shows only errors, -2 nothing."""
    handler = common.configure_logging(verbosity, tool_logger=log.name)
    library = logging.getLogger(LIBRARY_LOGGER)
    for existing in [f for f in handler.filters if isinstance(f, FirstVerbosityFilter)]:
        handler.removeFilter(existing)
    if verbosity == 1:
        # The retransmissions are debug output of the message layer.
        library.setLevel(logging.DEBUG)
        handler.addFilter(FirstVerbosityFilter())
    else:
        library.setLevel(logging.NOTSET)


# --- running requests --------------------------------------------------------


def _output_for(options: argparse.Namespace) -> Output:
    tty = isatty(sys.stdout)
    pretty = options.pretty_print if options.pretty_print is not None else tty
    color = options.color
    if color is None:
        color = tty and not pygments_missing()
    elif color and pretty and pygments_missing():
        fail(missing_modules_text("prettyprint", ["pygments"], "--color"))
    return Output(quiet=options.quiet > 0, pretty=pretty, color=color, observing=options.observe)


async def _request_main(
    options: argparse.Namespace,
    context,
    on_observing: Optional[Callable[[], None]] = None,
) -> int:
    """Run one request described by the parsed options; return the exit
    status, raise SystemExit for reported failures and CancelledError if
    interrupted before the (first) response"""
    output = _output_for(options)
    if options.credentials is not None:
        common.load_credentials_into(
            getattr(context, "client_credentials", None), options.credentials, prog=PROG
        )
    request_message = build_request(options)
    proxy = proxy_address(options)

    try:
        if proxy is not None:
            ProxyForwarder(proxy, context).rewrite(request_message)
        log_message(request_message, "to")
        request = context.request(request_message)
    except (error.Error, OSError, ValueError) as e:
        fail(failure_text(e, request_message))

    progress = Progress() if not options.quiet and isatty(sys.stderr) else None
    if progress is not None and hasattr(request, "on_progress"):
        request.on_progress(progress.update)
    try:
        response = await request.response
    except asyncio.CancelledError:
        if request.observation is not None:
            request.observation.cancel()
        raise
    except (error.Error, OSError, ValueError) as e:
        fail(failure_text(e, request_message))
    finally:
        if progress is not None:
            progress.clear()
    log_message(response, "from")

    if options.observe_exec is not None and Code(response.code).is_successful():
        await run_observe_exec(options.observe_exec, response, fail)
    else:
        output.present(response)
    if not Code(response.code).is_successful():
        return EXIT_FAILURE
    if not options.observe:
        return EXIT_OK

    if response.opt.observe is None:
        request.observation.cancel()
        fail(describe_failure(error.NotObservable()))
    return await _follow_observation(options, request, output, on_observing)


async def _follow_observation(options, request, output: Output, on_observing) -> int:
    observation = request.observation
    if on_observing is not None:
        on_observing()
    try:
        async for notification in observation:
            log_message(notification, "from")
            successful = Code(notification.code).is_successful()
            if options.observe_exec is not None and successful:
                await run_observe_exec(options.observe_exec, notification, fail)
            else:
                output.present(notification)
            if not successful:
                return EXIT_FAILURE
    except asyncio.CancelledError:
        # Interrupted by the user: that is how observations normally end.
        observation.cancel()
        return EXIT_OK
    except error.ObservationCancelled:
        output.info("(The server ended the observation)")
        return EXIT_OK
    except (error.Error, OSError) as e:
        observation.cancel()
        fail(describe_failure(e))
    output.info("(The observation ended)")
    return EXIT_OK


async def single_request(args, context) -> int:
    """Run one aiocoap-client request with the given command line arguments
    (a list of strings, without the program name) on the given context,
    presenting its result on stdout and stderr.

    Returns the exit status (0 for a successful response, see the module
    description); failures are reported on stderr and do not raise."""
    try:
        options = args if isinstance(args, argparse.Namespace) else parse_commandline(args)
        return await _request_main(options, context)
    except SystemExit as e:
        return _exit_status(e)


def _exit_status(e: SystemExit) -> int:
    if e.code is None:
        return EXIT_OK
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return EXIT_FAILURE


async def _create_context():
    from ..protocol import Context

    try:
        return await Context.create_client_context()
    except (error.Error, OSError) as e:
        fail(f"cannot create a CoAP client: {describe_failure(e)}")
    except ImportError as e:
        fail(f"cannot create a CoAP client: a module it needs is missing ({e})")


@contextlib.contextmanager
def _signals_cancel(task: asyncio.Task, received: list):
    """While active, SIGINT and SIGTERM cancel ``task`` (and are appended to
    ``received``) instead of raising KeyboardInterrupt or ending the
    process"""
    loop = asyncio.get_running_loop()
    installed = []

    def handler(signum):
        received.append(signum)
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, handler, signum)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _main_single(args: Sequence[str]) -> int:
    try:
        context = await _create_context()
    except SystemExit as e:
        return _exit_status(e)
    try:
        task = asyncio.create_task(single_request(args, context))
        received: list = []
        with _signals_cancel(task, received):
            try:
                return await task
            except asyncio.CancelledError:
                if not received:
                    raise
                return _EXIT_SIGNAL.get(received[0], EXIT_FAILURE)
    finally:
        await context.shutdown()


# --- interactive mode --------------------------------------------------------

INTERACTIVE_HELP = """\
Enter aiocoap-client command lines (without the program name), eg.:

  coap://localhost/.well-known/core
  -m PUT --payload hello coap://localhost/other/block
  --observe coap://localhost/time

Observations keep running in the background after their first response.
Ctrl-C interrupts a request that is waiting for its response.

Commands: help, cancel (end all running observations), exit (or Ctrl-D).
The request options are:
"""


class _PromptReader:
    """Reads lines from the terminal in a helper thread, so that the event
    loop keeps running (eg. observations) while the prompt waits.

    The thread is a daemon thread: if the program ends while it waits for
    input, it does not hold up the exit."""

    def __init__(self):
        import queue

        self._loop = asyncio.get_running_loop()
        self._queue: "queue.Queue" = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="aiocoap-client prompt", daemon=True)
        self._thread.start()

    def _work(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            prompt, future = item
            try:
                result: Any = input(prompt)
            except EOFError:
                result = None
            except BaseException as e:  # noqa: B036 (handed to the loop)
                result = e
            try:
                self._loop.call_soon_threadsafe(self._deliver, future, result)
            except RuntimeError:
                return

    @staticmethod
    def _deliver(future: asyncio.Future, result):
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    async def readline(self, prompt: str) -> Optional[str]:
        """The next line typed (without line end), or None at end of input"""
        future = self._loop.create_future()
        self._queue.put((prompt, future))
        return await future

    def close(self):
        self._queue.put(None)


def _setup_readline() -> None:
    try:
        import readline  # noqa: F401 (importing it enables line editing and history)
    except ImportError:
        return


@contextlib.contextmanager
def _terminal_restored():
    """Restore the terminal settings on exit, which the line editor may have
    changed if the program ends while the prompt is active"""
    try:
        import termios
    except ImportError:
        yield
        return
    try:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (termios.error, OSError, ValueError, AttributeError):
        # Not a terminal: nothing to restore
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError, termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def interactive() -> int:
    """Run aiocoap-client's interactive mode: a prompt at which aiocoap-client
    command lines are entered and run against one shared client context,
    until ``exit``, end of input, or SIGINT / SIGTERM while no request is
    waiting for its response. Returns the exit status (0: the failures of
    single requests are shown, but do not end the session)."""
    context = await _create_context()
    loop = asyncio.get_running_loop()
    observations: set = set()
    foreground: list = []
    quit_requested = asyncio.Event()

    def on_signal(signum):
        if foreground:
            foreground[-1].cancel()
        else:
            quit_requested.set()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(signum)

    _setup_readline()
    reader = _PromptReader()
    try:
        with _terminal_restored():
            while True:
                prompt_task = asyncio.ensure_future(reader.readline("aiocoap> "))
                quit_task = asyncio.ensure_future(quit_requested.wait())
                await asyncio.wait({prompt_task, quit_task}, return_when=asyncio.FIRST_COMPLETED)
                quit_task.cancel()
                if not prompt_task.done():
                    prompt_task.cancel()
                    print()
                    break
                line = prompt_task.result()
                if line is None:
                    print()
                    break
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if line in ("exit", "quit"):
                    break
                if line == "help":
                    print(INTERACTIVE_HELP + build_parser().format_help(), end="")
                    continue
                if line == "cancel":
                    for task in list(observations):
                        task.cancel()
                    continue
                try:
                    args = shlex.split(line)
                except ValueError as e:
                    print(common.format_error(f"cannot split the line: {e}", PROG), file=sys.stderr)
                    continue
                await _interactive_request(args, context, observations, foreground)
    finally:
        reader.close()
        for signum in installed:
            loop.remove_signal_handler(signum)
        for task in observations:
            task.cancel()
        if observations:
            await asyncio.gather(*observations, return_exceptions=True)
        await context.shutdown()
    return EXIT_OK


async def _interactive_request(args, context, observations: set, foreground: list) -> int:
    try:
        options = parse_commandline(args)
    except SystemExit as e:
        return _exit_status(e)
    if options.interactive:
        print(common.format_error("already in interactive mode", PROG), file=sys.stderr)
        return EXIT_USAGE

    observing = asyncio.Event()

    async def run() -> int:
        try:
            return await _request_main(options, context, on_observing=observing.set)
        except SystemExit as e:
            return _exit_status(e)

    task = asyncio.create_task(run())
    foreground.append(task)
    observing_task = asyncio.ensure_future(observing.wait())
    try:
        await asyncio.wait({task, observing_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        foreground.remove(task)
        observing_task.cancel()
    if task.done():
        if task.cancelled():
            print("(interrupted)", file=sys.stderr)
            return _EXIT_SIGNAL[signal.SIGINT]
        return task.result()
    observations.add(task)
    task.add_done_callback(observations.discard)
    if not options.quiet:
        print("(The observation goes on in the background; 'cancel' ends it)", file=sys.stderr)
    return EXIT_OK


# --- entry point -------------------------------------------------------------


def sync_main(args: Optional[Sequence[str]] = None) -> None:
    """Run aiocoap-client with the given arguments (by default, those of the
    process) and exit with its status"""
    if args is None:
        args = sys.argv[1:]
    args = list(args)
    options = parse_commandline(args)
    configure_logging(options.verbose - options.quiet)
    if options.interactive:
        coroutine = _main_interactive()
    else:
        coroutine = _main_single(args)
    try:
        status = asyncio.run(coroutine)
    except KeyboardInterrupt:
        status = _EXIT_SIGNAL[signal.SIGINT]
    sys.exit(status)


async def _main_interactive() -> int:
    try:
        return await interactive()
    except SystemExit as e:
        return _exit_status(e)


if __name__ == "__main__":
    sync_main()
