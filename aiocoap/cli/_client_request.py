"""Turning aiocoap-client's options into a request, and its failures into
one line of text (part of :mod:`aiocoap.cli.client`, internal).

* URLs are checked before they are used: a missing scheme gets aiocoap's
  "Must start with a scheme", a URL that was probably mistyped a "did you
  mean" with a URL that is usable (:func:`url_suggestion`), a scheme that is
  not CoAP a hint at ``--proxy``, and a CoAP scheme this installation can
  not send exactly that (:func:`unsupported_scheme`: not in this version of
  aiocoap, or which extra to install).
* ``--proxy`` sends the request through
  :class:`aiocoap.proxy.client.ProxyForwarder` (:func:`proxy_address`):
  Proxy-Scheme, Uri-Host and Uri-Port name the target.
* Payloads of CBOR based content formats are written in CBOR diagnostic
  notation (:mod:`aiocoap.util.edn`).
* :func:`network_hint` explains network errors from the operating system's
  error behind them (closed port, unreachable host or network -- "lack of
  IPv6 connectivity" --, refused broadcast).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import re
import sys
from typing import Any, NoReturn, Optional, Sequence

from .. import error
from ..message import Message, UndecidedRemote
from ..numbers import ContentFormat
from ..numbers.types import CON, NON
from ..optiontypes import BlockOption
from ..util import contenttype, edn, hostportsplit
from . import common

PROG = "aiocoap-client"

COAP_SCHEMES = ("coap", "coaps", "coap+tcp", "coaps+tcp", "coap+ws", "coaps+ws")

# What a CoAP URI scheme needs beyond the core: (feature in
# aiocoap.defaults.missing_module_functions, setup.py extra, description)
_SCHEME_FEATURES = {
    "coaps": ("dtls", "tinydtls", "CoAP over DTLS"),
    "coap+ws": ("ws", "ws", "CoAP over WebSockets"),
    "coaps+ws": ("ws", "ws", "CoAP over secure WebSockets"),
}

_NO_PROXY = ("none", "", "-")


def fail(message: Any, *, exitcode: int = 1) -> NoReturn:
    """Report a failure of aiocoap-client in one line and end (SystemExit)"""
    common.fail(message, exitcode=exitcode, prog=PROG)


def missing_modules_text(extra: str, modules: Sequence[str], feature: str) -> str:
    try:
        from ..defaults import missing_module_message
    except ImportError:
        return (
            f"{feature} needs the module(s) {', '.join(modules)}; "
            f"install aiocoap[{extra}]"
        )
    return missing_module_message(extra, modules)


def unsupported_scheme(scheme: str) -> Optional[str]:
    """Why requests with the URI scheme ``scheme`` can not be made with
    this installation (None if they can)"""
    if scheme not in _SCHEME_FEATURES:
        return None
    feature, extra, description = _SCHEME_FEATURES[scheme]
    from .. import defaults

    functions = getattr(defaults, "missing_module_functions", {})
    if feature not in functions:
        return f"{scheme}:// ({description}) is not supported by this version of aiocoap"
    missing = list(functions[feature]() or ())
    package = __name__.split(".")[0]
    if any(m == package or m.startswith(package + ".") for m in missing):
        # The transport is not part of this version: no extra can help.
        return f"{scheme}:// ({description}) is not supported by this version of aiocoap"
    if missing:
        return f"{scheme}:// needs {description}: " + missing_modules_text(extra, missing, description)
    return None


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)
_SCHEME_WITHOUT_COLON = re.compile(r"^(coaps?(?:\+(?:tcp|ws))?)//(.+)$", re.DOTALL | re.IGNORECASE)


def _usable(url: str) -> bool:
    try:
        Message().set_request_uri(url)
    except (ValueError, error.Error):
        return False
    return True


def url_suggestion(url: str) -> Optional[str]:
    """The URL that was probably meant when ``url`` is not a usable CoAP
    URI, if that is clear (None otherwise)

    >>> url_suggestion("localhost/time"), url_suggestion("coap:/localhost/time")
    ('coap://localhost/time', 'coap://localhost/time')
    >>> url_suggestion("[::1]:5683/x"), url_suggestion("coap:///path")
    ('coap://[::1]:5683/x', None)
    """
    candidate = None
    match = _SCHEME.match(url)
    without_colon = _SCHEME_WITHOUT_COLON.match(url)
    if match is not None and match.group(1).lower() in COAP_SCHEMES:
        scheme, rest = match.group(1).lower(), match.group(2)
        after_slashes = rest.lstrip("/")
        if len(rest) - len(after_slashes) < 2 and after_slashes:
            candidate = f"{scheme}://{after_slashes}"
    elif without_colon is not None:
        candidate = f"{without_colon.group(1).lower()}://{without_colon.group(2)}"
    elif match is not None:
        # "host:port/path": what looks like a scheme is a host name
        if re.match(r"^[0-9]+(?:[/?]|$)", match.group(2)):
            candidate = "coap://" + url
    elif url.startswith("//"):
        candidate = "coap:" + url
    elif url and not url.startswith("/"):
        candidate = "coap://" + url
    if candidate is not None and candidate != url and _usable(candidate):
        return candidate
    return None


def _with_suggestion(text: str, url: str) -> str:
    suggestion = url_suggestion(url)
    return f"{text} (did you mean {suggestion}?)" if suggestion else text


def _set_url(request: Message, url: str, *, proxied: bool, set_hostname: bool) -> None:
    """Set the request URI, or fail with a one-line message that says what
    is wrong with it (and what was probably meant)"""
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if match is None or (scheme not in COAP_SCHEMES and not proxied and url_suggestion(url)):
        fail(_with_suggestion(f"URL {url!r} incomplete: Must start with a scheme (eg. coap://)", url))
    if scheme not in COAP_SCHEMES and not proxied:
        fail(
            f"{url!r} is not a CoAP URI ({scheme}: is not a CoAP scheme); such a "
            "URI can only be requested through a proxy that translates it (see --proxy)"
        )
    if not proxied:
        unsupported = unsupported_scheme(scheme)
        if unsupported:
            fail(unsupported)
    try:
        request.set_request_uri(url, set_uri_host=set_hostname)
    except (ValueError, error.Error) as e:
        text = str(e)
        if url not in text:
            text = f"invalid URL {url!r}: {text}"
        if isinstance(e, error.IncompleteUrlError):
            text = "URL incomplete: " + text
        fail(_with_suggestion(text, url))


def _proxy_remote(proxy: str) -> Optional[UndecidedRemote]:
    """The remote of the --proxy argument (None: no proxy)"""
    if proxy.strip().lower() in _NO_PROXY:
        return None
    if "://" in proxy:
        try:
            remote = UndecidedRemote.from_pathless_uri(proxy)
        except ValueError as e:
            fail(f"invalid --proxy: {e}")
    else:
        try:
            host, _port = hostportsplit(proxy)
        except ValueError as e:
            fail(f"invalid --proxy {proxy!r}: {e}")
        if not host:
            fail(f"invalid --proxy {proxy!r}: no host given")
        remote = UndecidedRemote("coap", proxy)
    unsupported = unsupported_scheme(remote.scheme)
    if unsupported:
        fail(f"invalid --proxy {proxy!r}: {unsupported}")
    if remote.scheme not in COAP_SCHEMES:
        fail(f"invalid --proxy {proxy!r}: {remote.scheme}: is not a CoAP scheme")
    return remote


def proxy_address(options: argparse.Namespace) -> Optional[str]:
    """The URI of the proxy given with --proxy (None: no proxy); fails with
    a one-line message for an unusable one"""
    if options.proxy is None:
        return None
    remote = _proxy_remote(options.proxy)
    return None if remote is None else remote.uri_base


def _edn_payload(text: str, cf: ContentFormat, sequence: bool) -> bytes:
    """The CBOR (sequence) written in diagnostic notation in ``text``"""
    try:
        data = edn.edn_to_cbor(text, sequence=sequence)
        if sequence:
            # One array stands for the sequence of its elements (as aiocoap
            # reads it); [[1, 2]] is the sequence of just the array [1, 2].
            elements = edn.cbor_array_elements(data) if text.strip().startswith("[") else None
            if elements is not None and edn.edn_to_cbor(text, sequence=False) == data:
                data = b"".join(elements)
    except (edn.EDNError, edn.CBORError) as e:
        fail(
            f"--payload is not CBOR diagnostic notation, in which {cf.media_type} "
            f"payloads are written ({e}); mind that the shell removes quotation "
            "marks unless they are quoted themselves, or give the payload as @FILE "
            "to send it unconverted"
        )
    return data


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
            fail(f"cannot read payload file {filename!r}: {e.strerror or e}")
    cf = options.content_format
    if cf is not None and cf.is_known() and cf.encoding == "identity":
        category = contenttype.categorize(cf.media_type or "")
        if category in ("cbor", "cbor-seq"):
            return _edn_payload(spec, cf, category == "cbor-seq")
    # The bytes as given on the command line, also where they are not UTF-8
    # (Python decoded them with surrogateescape).
    return spec.encode("utf-8", "surrogateescape")


def build_request(options: argparse.Namespace) -> Message:
    request = Message(
        code=options.method,
        mtype=NON if options.non else CON,
        transport_tuning=options.transport_tuning,
    )
    _set_url(request, options.url, proxied=proxy_address(options) is not None, set_hostname=options.set_hostname)

    if options.accept is not None:
        request.opt.accept = options.accept
    if options.content_format is not None:
        request.opt.content_format = options.content_format
    payload = _read_payload(options)
    if payload is not None:
        request.payload = payload
    if options.payload_initial_szx is not None:
        # A Block1 option on the request is the size hint of the blockwise
        # layer: it starts an upload at that size (and sends a payload that
        # fits without it).
        request.opt.block1 = BlockOption.BlockwiseTuple(0, False, options.payload_initial_szx)
    if options.observe:
        request.opt.observe = 0
    return request



def describe_failure(e: BaseException) -> str:
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


def _os_error_behind(e: BaseException) -> Optional[OSError]:
    """The operating system's error that caused e, if there is one"""
    seen = 0
    current: Optional[BaseException] = e
    while current is not None and seen < 10:
        if isinstance(current, OSError) and current.errno is not None:
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _ip_version(request: Message) -> str:
    """"IPv4 " or "IPv6 " if the request went to an IP address, else "" """
    hostinfo = getattr(request.remote, "hostinfo", None)
    if not hostinfo:
        return ""
    try:
        host, _ = hostportsplit(hostinfo)
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return "IPv6 "
    return "IPv4 "


def network_hint(e: BaseException, request: Message) -> Optional[str]:
    """Advice on a network error of a request, from the operating system's
    error behind it (None if there is none to give, or if the library's
    error already gives it)"""
    if not isinstance(e, error.NetworkError):
        return None
    extra_help = getattr(e, "extra_help", None)
    try:
        if callable(extra_help) and extra_help():
            return None
    except Exception:  # noqa: BLE001 (advice is optional)
        pass
    cause = _os_error_behind(e)
    if cause is None:
        return None
    if cause.errno == errno.ECONNREFUSED:
        return (
            "the host was reached, but it reported that the port is not open: is a "
            "CoAP server running there, and on that port?"
        )
    if cause.errno == errno.EHOSTUNREACH:
        return (
            "no way to reach the host was found: it may be offline or behind a "
            "firewall (ping or traceroute can tell more)"
        )
    if cause.errno == errno.ENETUNREACH:
        return (
            "no route to the host's network was found: this may be due to a lack of "
            f"{_ip_version(request)}connectivity, or of a route into a private network "
            "(ping or traceroute can tell more)"
        )
    if cause.errno == errno.EACCES:
        return (
            "the operating system refused to send the request, as it does eg. for "
            "broadcast addresses (use multicast addresses instead)"
        )
    return None


def failure_text(e: BaseException, request: Message) -> str:
    text = describe_failure(e)
    hint = network_hint(e, request)
    return f"{text} ({hint})" if hint else text


