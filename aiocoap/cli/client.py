"""aiocoap-client is a simple command-line tool for interacting with CoAP
servers

It sends one request (or, with ``--interactive``, one request per line typed
at its prompt) and shows the response. Output follows these rules:

* A successful (2.xx) response's payload goes to stdout. When stdout is not
  a terminal, the payload is written exactly as received; on a terminal (or
  with ``--pretty-print``), known content formats are reformatted (eg. CBOR
  shown in a JSON-like notation) and, with color, highlighted.
* Any other response code goes to stderr as ``4.04 Not Found``, followed by
  the diagnostic payload.
* Failures that prevent getting a response (name resolution, timeouts,
  network errors, bad URIs or arguments, missing optional modules) are one
  line on stderr; ``-v`` adds the traceback.
* The exit status is 0 if the (last) response was successful, 2 for
  command line usage errors, and 1 for everything else. A request that is
  interrupted before its response arrived exits with 130 (SIGINT) or 143
  (SIGTERM); ending an established observation that way exits with 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import shlex
import signal
import sys
import threading
from typing import Any, Callable, Optional, Sequence

from .. import error, meta
from ..message import Message, UndecidedRemote
from ..numbers import Code, ContentFormat, TransportTuning
from ..numbers.types import CON, NON
from ..util import hostportsplit
from ..util.cli import ActionNoYes
from . import common

__all__ = [
    "build_parser",
    "parse_commandline",
    "configure_logging",
    "single_request",
    "interactive",
    "sync_main",
]

log = logging.getLogger("aiocoap-client")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
_EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

PROG = "aiocoap-client"


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
        help='Request method to use, by name or number (default: "GET")',
    )
    p.add_argument(
        "--observe",
        action="store_true",
        help="Register an observation on the resource and show every notification",
    )
    p.add_argument(
        "--observe-exec",
        metavar="CMD",
        help="Run the shell command CMD whenever the observed resource changes, "
        "with the new representation on its standard input (implies --observe)",
    )
    p.add_argument(
        "--accept",
        metavar="MIME",
        type=_content_format,
        help="Content format to ask for (media type or number)",
    )
    p.add_argument(
        "--proxy",
        metavar="HOST[:PORT]",
        help="Send the request to this forward proxy, which relays it to the URL",
    )
    p.add_argument(
        "--payload",
        metavar="X",
        help="Send X as request payload (eg. with a PUT). An X of the form @FILE "
        "sends the content of FILE; @- reads the payload from standard input. "
        "Payloads given directly may get converted, see --content-format.",
    )
    p.add_argument(
        "--content-format",
        metavar="MIME",
        type=_content_format,
        help="Content format of the --payload data (media type or number). If it "
        "is CBOR-based and the payload is not a file, the payload is read as JSON "
        "and sent as CBOR.",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="Show more diagnostic output (repeat for even more)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        help="Show less diagnostic output",
    )
    p.add_argument(
        "--interactive",
        action="store_true",
        help="Enter interactive mode: read one command line per request from a prompt",
    )
    p.add_argument(
        "--credentials",
        metavar="CREDENTIALS",
        help="Load credentials (for coaps://, OSCORE, ...) from the given JSON file",
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
        help="Color the output (default: on if stdout is a terminal and the "
        "modules of the prettyprint extra are installed)",
    )
    p.add_argument(
        "--pretty-print",
        action=ActionNoYes,
        default=None,
        help="Reformat known content formats for reading (default: on if stdout "
        "is a terminal and the modules of the prettyprint extra are installed)",
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
    number of -q; 0 shows warnings and errors)."""
    common.configure_logging(verbosity)


# --- building the request ----------------------------------------------------


def _fail(message: Any, *, exitcode: int = EXIT_FAILURE):
    common.fail(message, exitcode=exitcode, prog=PROG)


def _is_cbor_based(cf: ContentFormat) -> bool:
    media_type = cf.media_type
    if media_type is None or cf.encoding != "identity":
        return False
    base = media_type.split(";", 1)[0]
    return base == "application/cbor" or base.endswith("+cbor")


def _read_payload(options: argparse.Namespace) -> Optional[bytes]:
    spec = options.payload
    if spec is None:
        return None
    if spec.startswith("@"):
        filename = spec[1:]
        if filename == "-":
            return sys.stdin.buffer.read()
        try:
            with open(filename, "rb") as f:
                return f.read()
        except OSError as e:
            _fail(f"cannot read payload file {filename!r}: {e.strerror or e}")
    # The bytes as given on the command line, also where they are not UTF-8
    # (Python decoded them with surrogateescape).
    data = spec.encode("utf-8", "surrogateescape")
    cf = options.content_format
    if cf is not None and _is_cbor_based(cf):
        try:
            import cbor2
        except ImportError:
            _fail(_missing_modules_text("prettyprint", ["cbor2"], "JSON to CBOR conversion"))
        try:
            value = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as e:
            reason = e if isinstance(e, ValueError) else "nested too deeply"
            _fail(
                f"--payload is not valid JSON ({reason}), which is needed for the "
                f"conversion to {cf.media_type}; give it as @FILE to send it unconverted"
            )
        data = cbor2.dumps(value)
    return data


def _missing_modules_text(extra: str, modules: Sequence[str], feature: str) -> str:
    try:
        from ..defaults import missing_module_message
    except ImportError:
        return (
            f"{feature} needs the module(s) {', '.join(modules)}; "
            f"install aiocoap[{extra}]"
        )
    return missing_module_message(extra, modules)


def _build_request(options: argparse.Namespace) -> Message:
    request = Message(
        code=options.method,
        mtype=NON if options.non else CON,
        transport_tuning=options.transport_tuning,
    )
    try:
        request.set_request_uri(options.url)
    except ValueError as e:
        text = str(e)
        if options.url not in text:
            text = f"invalid URI {options.url!r}: {text}"
        if isinstance(e, error.IncompleteUrlError) and "://" not in options.url:
            text += f" (did you mean coap://{options.url}?)"
        _fail(text)

    if options.proxy is not None:
        # The proxy gets the whole target URI in Proxy-Uri (RFC 7252
        # Section 5.10.2), so the Uri-* options must not be sent along.
        request.opt.uri_host = None
        request.opt.uri_port = None
        request.opt.uri_path = ()
        request.opt.uri_query = ()
        request.opt.proxy_uri = options.url
        request.remote = _proxy_remote(options.proxy)

    if options.accept is not None:
        request.opt.accept = options.accept
    if options.content_format is not None:
        request.opt.content_format = options.content_format
    payload = _read_payload(options)
    if payload is not None:
        request.payload = payload
    if options.observe:
        request.opt.observe = 0
    return request


def _proxy_remote(proxy: str) -> UndecidedRemote:
    if "://" in proxy:
        try:
            return UndecidedRemote.from_pathless_uri(proxy)
        except ValueError as e:
            _fail(f"invalid --proxy: {e}")
    try:
        host, _port = hostportsplit(proxy)
    except ValueError as e:
        _fail(f"invalid --proxy {proxy!r}: {e}")
    if not host:
        _fail(f"invalid --proxy {proxy!r}: no host given")
    return UndecidedRemote("coap", proxy)


# --- presenting responses ----------------------------------------------------

_ANSI = {"red": "\x1b[31m", "green": "\x1b[32m"}
_ANSI_RESET = "\x1b[0m"


class _Output:
    """How responses are shown (decided once per request from the options
    and whether stdout is a terminal)"""

    def __init__(self, options: argparse.Namespace):
        self.quiet = options.quiet > 0
        tty = _isatty(sys.stdout)
        missing = _prettyprint_missing()
        self.pretty = options.pretty_print
        if self.pretty is None:
            self.pretty = tty and not missing
        elif self.pretty and missing:
            _fail(_missing_modules_text("prettyprint", missing, "--pretty-print"))
        self.color = options.color
        if self.color is None:
            self.color = tty and not missing
        elif self.color and self.pretty and missing:
            _fail(_missing_modules_text("prettyprint", missing, "--color"))

    def colored(self, text: str, color: str) -> str:
        if not self.color:
            return text
        return _ANSI[color] + text + _ANSI_RESET

    def info(self, text: str) -> None:
        """A line of information about the response (stderr, not if quiet)"""
        if not self.quiet:
            _flush_stdout()
            print(self.colored(text, "green"), file=sys.stderr, flush=True)

    def present(self, message: Message) -> None:
        """Show a successful message's payload on stdout, or an unsuccessful
        one's code and diagnostic payload on stderr."""
        diagnostic = message.code is not None and not Code(message.code).is_successful()
        if diagnostic:
            _flush_stdout()
            print(self.colored(str(message.code), "red"), file=sys.stderr, flush=True)
            file = sys.stderr
        else:
            file = sys.stdout
            if not message.payload and _isatty(file):
                self.info(f"({message.code}, no payload)")
        if not message.payload:
            return

        payload = message.payload
        if self.pretty:
            infos, lexer, text = _pretty_print(message)
            for line in infos:
                self.info(line)
            ends_with_newline = text.endswith("\n")
            # Only a payload shown as it is can be said to lack a newline;
            # reformatted output just gets its line ended.
            verbatim = text.encode("utf-8", "surrogateescape") == payload
            if self.color:
                text = _colorize(text, lexer)
            file.write(text)
            file.flush()
        elif diagnostic:
            # Meant to be UTF-8 text for humans (RFC 7252 Section 5.5.2);
            # whatever else it holds must not reach the terminal as control
            # sequences.
            text = _defang(payload.decode("utf-8", "backslashreplace"))
            ends_with_newline = text.endswith("\n")
            verbatim = True
            file.write(text)
            file.flush()
        else:
            ends_with_newline = payload.endswith(b"\n")
            verbatim = True
            buffer = getattr(file, "buffer", None)
            if buffer is not None:
                file.flush()
                buffer.write(payload)
                buffer.flush()
            else:
                file.write(payload.decode("utf-8", "replace"))
                file.flush()

        if ends_with_newline:
            return
        if diagnostic:
            # An error description for humans: always a complete line
            file.write("\n")
            file.flush()
        elif _isatty(file):
            # Keep the shell prompt (or the next notification) from starting
            # mid-line.
            file.write("\n")
            file.flush()
            if verbatim and not self.quiet:
                print("(No newline at end of message)", file=sys.stderr, flush=True)


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _defang(text: str) -> str:
    """Escape the control characters of text (but line feeds and tabs)"""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class _Progress:
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


def _isatty(file) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False


def _flush_stdout() -> None:
    with contextlib.suppress(ValueError, OSError):
        sys.stdout.flush()


def _prettyprint_missing() -> list:
    try:
        from ..defaults import prettyprint_missing_modules
    except ImportError:
        return ["aiocoap.defaults"]
    return list(prettyprint_missing_modules() or [])


def _pretty_print(message: Message):
    from ..util.prettyprint import pretty_print

    return pretty_print(message)


def _colorize(text: str, lexer: str) -> str:
    from ..util.prettyprint import colorize

    return colorize(text, lexer, color=True)


async def _run_observe_exec(command: str, message: Message) -> None:
    """Run --observe-exec's command with the message payload on its stdin,
    waiting for it to finish (so notifications are handled in order)"""
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
        _fail(f"cannot run --observe-exec command {command!r}: {e.strerror or e}")
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


# --- running requests --------------------------------------------------------


def _describe_failure(e: BaseException) -> str:
    """The one-line description of an exception that ended a request"""
    text = str(e)
    if isinstance(e, error.ResolutionError):
        return f"name resolution failed: {text}" if text else "name resolution failed"
    if isinstance(e, error.RequestTimedOut):
        return f"request timed out ({text})" if text else "request timed out"
    if isinstance(e, error.NetworkError):
        return f"network error: {text}" if text else "network error"
    if isinstance(e, error.NotObservable):
        return "the server did not accept the observation"
    if isinstance(e, error.LibraryShutdown):
        return "the client was shut down before a response arrived"
    if isinstance(e, error.Error):
        return f"{type(e).__name__}: {text}" if text else type(e).__name__
    if isinstance(e, OSError):
        return f"system error: {e.strerror or e}"
    return f"unexpected {type(e).__name__}: {text}" if text else f"unexpected {type(e).__name__}"


def _scheme_hint(request: Message, e: BaseException) -> str:
    """Extra advice for a request that could not be sent because the
    transport for its URI scheme is missing"""
    if not isinstance(e, error.NetworkError) or isinstance(e, error.ResolutionError):
        return ""
    scheme = getattr(request.remote, "scheme", None)
    if scheme == "coaps":
        try:
            from ..defaults import dtls_missing_modules
        except ImportError:
            return ""
        missing = dtls_missing_modules()
        if missing:
            return " (" + _missing_modules_text("tinydtls", missing, "coaps://") + ")"
    elif scheme not in ("coap", "coaps", "coap+tcp", "coaps+tcp", "coap+ws", "coaps+ws"):
        return f" ({scheme}:// is not a CoAP URI scheme)"
    return ""


async def _request_main(
    options: argparse.Namespace,
    context,
    on_observing: Optional[Callable[[], None]] = None,
) -> int:
    """Run one request described by the parsed options; return the exit
    status, raise SystemExit for reported failures and CancelledError if
    interrupted before the (first) response"""
    output = _Output(options)
    if options.credentials is not None:
        common.load_credentials_into(
            getattr(context, "client_credentials", None), options.credentials, prog=PROG
        )
    request_message = _build_request(options)
    log.info("Sending request %r", request_message)

    try:
        request = context.request(request_message)
    except (error.Error, OSError, ValueError) as e:
        _fail(_describe_failure(e))

    progress = _Progress() if not options.quiet and _isatty(sys.stderr) else None
    if progress is not None and hasattr(request, "on_progress"):
        request.on_progress(progress.update)
    try:
        response = await request.response
    except asyncio.CancelledError:
        if request.observation is not None:
            request.observation.cancel()
        raise
    except (error.Error, OSError, ValueError) as e:
        _fail(_describe_failure(e) + _scheme_hint(request_message, e))
    finally:
        if progress is not None:
            progress.clear()
    log.info("Received response %r", response)

    if options.observe_exec is not None and Code(response.code).is_successful():
        await _run_observe_exec(options.observe_exec, response)
    else:
        output.present(response)
    if not Code(response.code).is_successful():
        return EXIT_FAILURE
    if not options.observe:
        return EXIT_OK

    if response.opt.observe is None:
        request.observation.cancel()
        _fail(_describe_failure(error.NotObservable()))
    return await _follow_observation(options, request, output, on_observing)


async def _follow_observation(options, request, output: _Output, on_observing) -> int:
    observation = request.observation
    if on_observing is not None:
        on_observing()
    try:
        async for notification in observation:
            log.info("Received notification %r", notification)
            successful = Code(notification.code).is_successful()
            if options.observe_exec is not None and successful:
                await _run_observe_exec(options.observe_exec, notification)
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
        _fail(_describe_failure(e))
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
        _fail(f"cannot create a CoAP client: {_describe_failure(e)}")
    except ImportError as e:
        _fail(f"cannot create a CoAP client: a module it needs is missing ({e})")


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
