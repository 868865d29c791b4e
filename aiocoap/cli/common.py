"""What the command line tools share: server arguments, server context
creation, logging setup and error reporting.

Rules the tools follow through these helpers:

* A failure the user can do something about (bad argument, unreachable
  host, missing optional module, ...) is reported as one line on stderr
  (``PROG: error: MESSAGE``) and ends the program with a non-zero status.
  The traceback is shown only when the program runs verbosely (``-v``).
* Verbosity counts up from 0 (warnings and errors are shown); each ``-v``
  adds detail (1: info, 2 and more: debug), each ``-q`` removes some
  (-1: only errors, -2 and less: nothing). A tool that has a logger of its
  own gets aiocoap's staging instead (see :func:`configure_logging`): the
  first ``-v`` shows the tool's information, the second the library's, the
  third the library's debug output.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import traceback
from typing import Any, NoReturn, Optional

from ..util import hostportjoin, hostportsplit

__all__ = [
    "add_server_arguments",
    "server_context_from_arguments",
    "extract_server_arguments",
    "configure_logging",
    "verbosity_to_level",
    "library_level",
    "fail",
    "load_credentials_file",
    "load_credentials_into",
    "BIND_HELP",
]

BIND_HELP = """\
--bind tells on which address and port the server waits for requests.

  --bind HOST         the CoAP default port (5683) on the given address
  --bind HOST:PORT    the given address and port
  --bind :PORT        all addresses, given port
  --bind [IPV6]:PORT  an IPv6 address needs brackets when a port follows

HOST can be an IP address or a host name; "::" (the default) stands for all
IPv6 and IPv4 addresses, "0.0.0.0" for all IPv4 addresses only, and a zone
can be given to link-local addresses as in [fe80::1%eth0]:5683.

Without --bind, the server listens on all addresses on the default ports.

Secured and WebSocket transports take ports next to PORT: CoAP over TLS
(with --tls-server-certificate) PORT+1; CoAP over WebSockets (where the
websockets module is installed) PORT+3000, with a certificate also secure
WebSockets on PORT+3001. Without a port they use 5684 (TLS), 8683 and 8684
(WebSockets); the HTTP ports 80 and 443 that coap+ws:// and coaps+ws://
URIs imply usually belong to a web server, which can forward
/.well-known/coap to the WebSocket port."""

_verbosity = 0


def verbosity_to_level(verbosity: int) -> int:
    """The logging level that corresponds to a number of -v minus -q."""
    if verbosity <= -2:
        return logging.CRITICAL + 1
    if verbosity == -1:
        return logging.ERROR
    if verbosity == 0:
        return logging.WARNING
    if verbosity == 1:
        return logging.INFO
    return logging.DEBUG


def library_level(verbosity: int) -> int:
    """The logging level of the library (everything but the tool's own
    logger) for a tool with a logger of its own: as :func:`verbosity_to_level`
    gives it, but one step behind for positive verbosities (1: warnings,
    2: info, 3 and more: debug)."""
    return verbosity_to_level(verbosity - 1 if verbosity > 0 else verbosity)


def configure_logging(
    verbosity: int, *, name: Optional[str] = None, tool_logger: Optional[str] = None
) -> logging.Handler:
    """Set up logging for a command line tool.

    Messages go to stderr as ``LEVEL:logger:message``. Without
    ``tool_logger``, the level of the logger ``name`` (by default the root
    logger) follows :func:`verbosity_to_level`. With it, everything gets
    :func:`library_level`, except that the tool's own logger of that name
    shows its information from verbosity 1 on (so ``-v`` shows what the
    tool says, ``-vv`` what the library says as well, ``-vvv`` all debug
    output).

    The verbosity is also remembered for :func:`fail`, which shows
    tracebacks only when it is positive. Returns the handler that writes to
    stderr (installed once, however often this is called)."""
    global _verbosity
    _verbosity = verbosity
    root = logging.getLogger(name)
    for handler in root.handlers:
        if getattr(handler, "_aiocoap_cli", False):
            break
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s: %(message)s"))
        handler._aiocoap_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if tool_logger is None:
        root.setLevel(verbosity_to_level(verbosity))
        return handler
    else:
        level = library_level(verbosity)
        root.setLevel(level)
        logging.getLogger(tool_logger).setLevel(min(level, logging.INFO) if verbosity > 0 else level)
    return handler


def _prog() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "aiocoap"


def format_error(message: Any, prog: Optional[str] = None) -> str:
    """The one-line form of an error message, ``PROG: error: MESSAGE``"""
    text = " ".join(str(message).split()) or "unknown error"
    return f"{prog or _prog()}: error: {text}"


def fail(
    message: Any,
    *,
    exitcode: int = 1,
    prog: Optional[str] = None,
    verbose: Optional[bool] = None,
) -> NoReturn:
    """Print a one-line error message on stderr and end the program.

    Call this from an ``except`` block to have the traceback of the handled
    exception shown above the message when running verbosely (``verbose``,
    by default: whether :func:`configure_logging` got a positive
    verbosity). It raises SystemExit with ``exitcode``."""
    if verbose is None:
        verbose = _verbosity > 0
    if verbose and sys.exc_info()[0] is not None:
        traceback.print_exc()
    print(format_error(message, prog), file=sys.stderr)
    sys.stdout.flush()
    raise SystemExit(exitcode)


class _HelpBindAction(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(BIND_HELP)
        parser.exit()


def add_server_arguments(
    parser: argparse.ArgumentParser, *, credentials: bool = False
) -> None:
    """Add the arguments that :func:`server_context_from_arguments` reads
    (``--bind``, ``--help-bind``, ``--tls-server-certificate``,
    ``--tls-server-key``, and with ``credentials=True`` also
    ``--server-credentials``) to a parser, as an argument group."""
    group = parser.add_argument_group("server", "Where and how to accept requests")
    group.add_argument(
        "--bind",
        metavar="BIND",
        help="Host and/or port to bind to (see --help-bind for details)",
        type=_bind_type,
        default=None,
    )
    group.add_argument(
        "--help-bind",
        action=_HelpBindAction,
        help="Show the formats --bind accepts and exit",
    )
    group.add_argument(
        "--tls-server-certificate",
        metavar="CRT",
        help="TLS certificate (chain) to present to connecting clients (in PEM format)",
    )
    group.add_argument(
        "--tls-server-key",
        metavar="KEY",
        help="TLS key to load that supports the server certificate",
    )
    if credentials:
        group.add_argument(
            "--server-credentials",
            metavar="FILE",
            help="JSON file with credentials (OSCORE contexts, DTLS keys) the server accepts",
        )


def _bind_type(text: str) -> tuple[Optional[str], Optional[int]]:
    try:
        host, port = hostportsplit(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"{e} (expected HOST, HOST:PORT, :PORT or [IPV6]:PORT; see --help-bind)"
        ) from None
    return (host or None, port)


def extract_server_arguments(namespace: argparse.Namespace) -> argparse.Namespace:
    """Move the arguments added by :func:`add_server_arguments` out of
    ``namespace`` into a new namespace, which is returned.

    This helps programs that pass their remaining options on as keyword
    arguments."""
    server = argparse.Namespace()
    for name in ("bind", "tls_server_certificate", "tls_server_key", "server_credentials"):
        if hasattr(namespace, name):
            setattr(server, name, getattr(namespace, name))
            delattr(namespace, name)
    return server


def load_credentials_file(path: str, *, prog: Optional[str] = None) -> Any:
    """Read a credentials file (JSON) and return the parsed data.

    Errors (missing file, bad JSON) end the program with a one-line message
    through :func:`fail`."""
    import json

    try:
        with open(path, "rb") as f:
            return json.load(f)
    except OSError as e:
        fail(f"cannot read credentials file {path!r}: {e.strerror or e}", prog=prog)
    except ValueError as e:
        fail(f"credentials file {path!r} is not valid JSON: {e}", prog=prog)


def load_credentials_into(
    store, filename: str, option: str = "--credentials", *, prog: Optional[str] = None
) -> None:
    """Load the credentials file ``filename`` into ``store`` (a
    :class:`aiocoap.credentials.CredentialsMap`, eg. a context's
    ``client_credentials``); file names inside are taken relative to the
    file's directory.

    Every problem ends the program with a one-line message through
    :func:`fail`; ``option`` names the option the file came from."""
    data = load_credentials_file(filename, prog=prog)
    if store is None or not hasattr(store, "load_from_dict"):
        fail(
            f"{option} can not be used: this installation of aiocoap has no credentials support",
            prog=prog,
        )
    kwargs = {}
    try:
        if "base_directory" in inspect.signature(store.load_from_dict).parameters:
            kwargs["base_directory"] = os.path.dirname(os.path.abspath(filename))
    except (TypeError, ValueError):
        pass
    try:
        store.load_from_dict(data, **kwargs)
    except (ValueError, TypeError, KeyError) as e:
        fail(f"invalid credentials in {filename!r}: {e}", prog=prog)
    except ImportError as e:
        fail(f"the credentials in {filename!r} need a module that is not installed: {e}", prog=prog)


def _ssl_context_from(certificate: Optional[str], key: Optional[str]):
    if certificate is None:
        if key is not None:
            fail("--tls-server-key needs --tls-server-certificate")
        return None
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile=certificate, keyfile=key)
    except (OSError, ssl.SSLError) as e:
        files = repr(certificate) if key is None else f"{certificate!r} with key {key!r}"
        fail(f"cannot load TLS certificate {files}: {e.strerror or e}")
    # RFC 8323 Section 8.2 registers "coap" as the ALPN protocol ID for TLS.
    context.set_alpn_protocols(["coap"])
    return context


async def server_context_from_arguments(site, namespace: argparse.Namespace, **kwargs):
    """Create a server context (see
    :meth:`aiocoap.protocol.Context.create_server_context`) serving ``site``
    as the arguments added by :func:`add_server_arguments` say.

    Further keyword arguments are passed to ``create_server_context``. Bad
    input (unusable address, unreadable certificate, ...) ends the program
    with a one-line error."""
    from .. import error
    from ..protocol import Context

    bind = getattr(namespace, "bind", None)
    if isinstance(bind, str):
        try:
            bind = _bind_type(bind)
        except argparse.ArgumentTypeError as e:
            fail(f"invalid --bind value: {e}")

    ssl_context = _ssl_context_from(
        getattr(namespace, "tls_server_certificate", None),
        getattr(namespace, "tls_server_key", None),
    )
    if ssl_context is not None:
        kwargs["_ssl_context"] = ssl_context

    credentials_path = getattr(namespace, "server_credentials", None)
    if credentials_path is not None:
        # Read before any socket is opened, so that a bad file does not
        # leave a half-started server behind.
        load_credentials_file(credentials_path)

    if bind is not None:
        host, port = bind
        kwargs["bind"] = (host if host is not None else "::", port)

    try:
        context = await Context.create_server_context(site, **kwargs)
    except error.NetworkError as e:
        fail(f"cannot start the server: {e}")
    except OSError as e:
        where = "" if bind is None else " on " + hostportjoin(*kwargs["bind"])
        fail(f"cannot start the server{where}: {e.strerror or e}")

    if credentials_path is not None:
        try:
            load_credentials_into(
                getattr(context, "server_credentials", None), credentials_path, "--server-credentials"
            )
        except SystemExit:
            await context.shutdown()
            raise
    return context
