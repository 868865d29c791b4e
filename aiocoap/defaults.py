"""What the library uses when the application does not say: which
transports a context loads, and which optional modules are present.

This module inspects the available modules and the platform to give sane
defaults. Applications override the transport choice with the environment
variables ``AIOCOAP_CLIENT_TRANSPORT`` / ``AIOCOAP_SERVER_TRANSPORT`` (a
colon separated list of transport names) or the ``transports`` argument of
the context constructors; the module itself is internal and not part of
the API.

The ``*_missing_modules`` functions tell what is reasonable to expect to
work. They look modules up without importing them, so they are cheap. They
can influence defaults, but the rest of the library should not use them for
feature checking (it should just raise the ImportError) unless the result
is directly user visible ("you configured OSCORE key material, but OSCORE
needs these unavailable modules"; use :func:`missing_module_message`) or in
the test suite, to decide which tests to skip.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import socket
import sys
from typing import Iterable, List, Optional

__all__ = [
    "get_default_clienttransports", "get_default_servertransports",
    "oscore_missing_modules", "linkheader_missing_modules",
    "prettyprint_missing_modules", "dtls_missing_modules", "ws_missing_modules",
    "missing_module_message", "missing_module_functions", "has_reuse_port",
]

_FEATURES = {
    "oscore": "OSCORE",
    "linkheader": "Link format handling",
    "prettyprint": "Pretty printing",
    "tinydtls": "CoAP over DTLS (coaps://)",
    "ws": "CoAP over WebSockets (coap+ws://, coaps+ws://)",
}


def _missing(modules: Iterable[str]) -> List[str]:
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            # ValueError: imported in an unusual way (no __spec__); it is there
            found = name in sys.modules
        if not found:
            missing.append(name)
    return missing


def oscore_missing_modules() -> List[str]:
    """Return a list of modules that are missing in order to use OSCORE, or
    a false value (an empty list) if everything is present."""
    return _missing(("cryptography", "cbor2", "filelock"))


def linkheader_missing_modules() -> List[str]:
    """Return a list of modules that are missing in order to use link-format
    functionality (eg. running a resource directory), or a false value if
    everything is present.

    The library's link-format support (aiocoap.util.linkformat) is
    self-contained, so nothing is ever missing; the ``linkheader`` extra
    only matters to applications that build LinkHeader objects themselves
    (which the library accepts)."""
    return []


def prettyprint_missing_modules() -> List[str]:
    """Return a list of modules that are missing in order to use pretty
    printing (ie. full aiocoap-client), or a false value if everything is
    present."""
    return _missing(("pygments", "cbor2"))


def dtls_missing_modules() -> List[str]:
    """Return a list of modules that are missing in order to use CoAP over
    DTLS (the tinydtls transports), or a false value if everything is
    present.

    The transport modules of this library are listed too, so the answer
    stays true in a build that does not contain them."""
    return _missing(("DTLSSocket", __package__ + ".transports.tinydtls"))


def ws_missing_modules() -> List[str]:
    """Return a list of modules that are missing in order to use CoAP over
    WebSockets, or a false value if everything is present."""
    return _missing(("websockets", __package__ + ".transports.ws"))


missing_module_functions = {
    "dtls": dtls_missing_modules,
    "oscore": oscore_missing_modules,
    "linkheader": linkheader_missing_modules,
    "prettyprint": prettyprint_missing_modules,
    "ws": ws_missing_modules,
}
"""The ``*_missing_modules`` functions by feature name (as aiocoap 0.4.x
names them), for applications and test suites that check them in a loop."""

_EXTRA_OF_FEATURE = {"dtls": "tinydtls"}


def missing_modules_of_extra(extra: str) -> List[str]:
    """The missing modules of the feature behind the setup.py extra
    ``extra`` (see the ``*_missing_modules`` functions)."""
    feature = {v: k for k, v in _EXTRA_OF_FEATURE.items()}.get(extra, extra)
    return missing_module_functions[feature]()


def missing_module_message(extra: Optional[str], modules: Iterable[str]) -> str:
    """A one-line message for users telling that the feature behind the
    setup.py extra ``extra`` needs ``modules`` and how to get them.

    >>> missing_module_message("oscore", ["cbor2", "filelock"])
    'OSCORE requires the optional module(s) cbor2, filelock; install aiocoap[oscore]'
    """
    feature = _FEATURES.get(extra or "", f"This feature ({extra})")
    return f"{feature} requires the optional module(s) {', '.join(modules)}; install aiocoap[{extra}]"


def has_reuse_port(*, use_env: bool = True) -> bool:
    """Whether the platform offers SO_REUSEPORT (several sockets bound to the
    same port, e.g. several servers of one multicast group on one host).
    The environment variable ``AIOCOAP_REUSE_PORT`` (``1`` or ``0``)
    overrides the answer unless ``use_env`` is false."""
    if use_env:
        setting = os.environ.get("AIOCOAP_REUSE_PORT")
        if setting:
            if setting not in ("0", "1"):
                raise ValueError(f"AIOCOAP_REUSE_PORT must be 0 or 1, not {setting!r}")
            return setting == "1"
    return hasattr(socket, "SO_REUSEPORT")


def _ssl_present() -> bool:
    return not _missing(("_ssl",))


@functools.lru_cache(maxsize=None)
def _udp6_works_on_platform() -> bool:
    """Whether the sockets the udp6 transport needs can be made here: a
    dual-stack IPv6 socket with packet info and error queue, on a host
    where IPv6 is enabled (its loopback address can be bound)."""
    if not sys.platform.startswith("linux") or not hasattr(socket.socket, "recvmsg"):
        return False
    from .util import socknumbers

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socknumbers.SOL_IPV6, socknumbers.IPV6_V6ONLY, 0)
            sock.setsockopt(socknumbers.SOL_IPV6, socknumbers.IPV6_RECVPKTINFO, 1)
            sock.setsockopt(socknumbers.SOL_IPV6, socknumbers.IPV6_RECVERR, 1)
            sock.setsockopt(socknumbers.SOL_IP, socknumbers.IP_RECVERR, 1)
            sock.bind(("::1", 0))
    except (OSError, AttributeError):
        return False
    return True


def _loop_type_has_add_reader(loop_type: type) -> Optional[bool]:
    if issubclass(loop_type, asyncio.SelectorEventLoop) or loop_type.__module__.split(".")[0] == "uvloop":
        return True
    proactor = getattr(asyncio, "ProactorEventLoop", None)
    if proactor is not None and issubclass(loop_type, proactor):
        return False
    return None


def _loop_has_add_reader(loop: Optional[asyncio.AbstractEventLoop]) -> bool:
    if loop is None:
        # The default loops on the platforms where udp6 works have it.
        return True
    known = _loop_type_has_add_reader(type(loop))
    if known is not None:
        return known
    a, b = socket.socketpair()
    try:
        loop.add_reader(a.fileno(), lambda: None)
    except NotImplementedError:
        return False
    else:
        loop.remove_reader(a.fileno())
        return True
    finally:
        a.close()
        b.close()


def _udp6_usable(loop: Optional[asyncio.AbstractEventLoop]) -> bool:
    return _udp6_works_on_platform() and _loop_has_add_reader(loop)


def _from_environment(variable: str) -> Optional[List[str]]:
    names = [n for n in os.environ.get(variable, "").split(":") if n.strip()]
    return names or None


def get_default_clienttransports(*, loop: Optional[asyncio.AbstractEventLoop] = None) -> List[str]:
    """Return a list of transports that should be connected when a client
    context is created.

    If an explicit ``AIOCOAP_CLIENT_TRANSPORT`` environment variable is set,
    it is read as a colon separated list of transport names.

    By default, OSCORE and a DTLS mechanism are picked if the required
    modules are available, TCP and TLS (if the ssl module is there) are
    always included, WebSockets (``ws``) where the ``websockets`` module
    is, and a UDP transport is selected depending on whether the full
    ``udp6`` transport is known to work (on this platform, and with the
    given event loop); ``simple6`` is the fallback."""
    explicit = _from_environment("AIOCOAP_CLIENT_TRANSPORT")
    if explicit is not None:
        return explicit
    names = []
    if not oscore_missing_modules():
        names.append("oscore")
    if not dtls_missing_modules():
        names.append("tinydtls")
    names.append("tcpclient")
    if _ssl_present():
        names.append("tlsclient")
    if not ws_missing_modules():
        names.append("ws")
    names.append("udp6" if _udp6_usable(loop) else "simple6")
    return names


def get_default_servertransports(*, loop: Optional[asyncio.AbstractEventLoop] = None) -> List[str]:
    """Return a list of transports that should be connected when a server
    context is created.

    If an explicit ``AIOCOAP_SERVER_TRANSPORT`` environment variable is set,
    it is read as a colon separated list of transport names.

    By default, the server and client sides of OSCORE, DTLS (if the
    required modules are available), TCP, TLS and WebSockets (where the
    ``websockets`` module is) are picked, and a UDP
    transport is selected depending on whether the full ``udp6`` transport
    is known to work. Both a ``simple6`` and a ``simplesocketserver`` are
    selected when ``udp6`` is not available, and the ``simple6`` is used for
    any outgoing requests, which the ``simplesocketserver`` could serve but
    is worse at.

    The DTLS server (``tinydtls_server``) comes after the UDP transport, so
    that it listens next to an explicitly bound UDP port; it only listens
    when the context's server credentials have DTLS entries (decided when
    the context loads it)."""
    explicit = _from_environment("AIOCOAP_SERVER_TRANSPORT")
    if explicit is not None:
        return explicit
    names = []
    if not oscore_missing_modules():
        names.append("oscore")
    dtls = not dtls_missing_modules()
    if dtls:
        names.append("tinydtls")
    names.extend(("tcpserver", "tcpclient"))
    if _ssl_present():
        names.extend(("tlsserver", "tlsclient"))
    if not ws_missing_modules():
        names.append("ws")
    if _udp6_usable(loop):
        names.append("udp6")
    else:
        names.extend(("simple6", "simplesocketserver"))
    if dtls:
        names.append("tinydtls_server")
    return names
