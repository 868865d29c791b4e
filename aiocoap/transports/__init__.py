"""Transports: the modular network backends of the library.

They move bytes and addresses and hold no CoAP logic; each one implements
one of the interfaces of :mod:`aiocoap.interfaces` (a MessageInterface under
the message layer, a TokenInterface under the token layer, or a
RequestInterface). Their classes are not part of the API: the descriptions
in the modules are for information, and applications select transports by
name only.

A Context can run several transports side by side. They are loaded in the
order :mod:`aiocoap.defaults` gives (overridable with the environment
variables ``AIOCOAP_CLIENT_TRANSPORT`` / ``AIOCOAP_SERVER_TRANSPORT``, a
colon separated list of names), and an outgoing message goes through the
first one that claims its remote or URI scheme; some transports claim every
address of their scheme, so not all combinations make sense.

The available transports are:

* ``udp6``: CoAP over UDP on one dual-stack socket (recvmsg, packet info,
  ICMP errors, multicast); Linux.
* ``simple6``: client-only UDP with one connected socket per peer; portable.
* ``simplesocketserver``: server-only UDP bound to one address; portable.
* ``generic_udp``: not a transport itself, the code the simple UDP
  transports share.
* ``tcp`` / ``tls``: CoAP over TCP and TLS (RFC 8323): asyncio adapters
  over the sans-I/O session of ``rfc8323session``, framing in
  ``rfc8323common``, what the adapters share in ``rfc8323adapter``.
* ``ws``: CoAP over WebSockets (RFC 8323 §4, coap+ws:// and coaps+ws://),
  client and server in one, on the same session core (needs the
  ``websockets`` package for the HTTP upgrade: ``aiocoap[ws]``); its
  connections are in ``wsconnection``, the WebSocket framing in
  ``wsframes``.
* ``tinydtls`` / ``tinydtls_server``: CoAP over DTLS (coaps://) with
  pre-shared keys; the server listens only when the server credentials
  have DTLS entries (next to the UDP port when that is explicit, else on
  5684).
* ``oscore``: OSCORE (RFC 8613) on top of any of the above.

Not transports themselves: ``generic_udp`` (see above), ``multicast`` (the
groups a server context is asked to join, checked before any transport
loads), ``connectiontable`` (the connection caps of RFC 8323 servers) and
``dtls_sessions`` (the session bookkeeping of the DTLS transports).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from ..credentials import CredentialsMap
    from ..numbers.constants import TransportTuning
    from ..interfaces import RequestInterface, TokenInterface
    from ..protocol import Context
    from ..tokenmanager import TokenManager
    from .multicast import MulticastGroup

__all__ = ["TransportSetup", "TransportEntry", "TRANSPORTS", "SECURE_PORT_OFFSET"]

SECURE_PORT_OFFSET = 1
"""How far from an explicitly bound port the secured variant of a transport
listens when its plain variant took that port (DTLS next to UDP, TLS next
to TCP), as aiocoap 0.4.x does."""


class TransportSetup:
    """What a transport loader gets from the Context it joins: the shared
    layers, the settings of the context, and the three ways of attaching a
    transport (below the message layer, below the token layer, or as a
    request interface).

    The Context builds one for every transport it loads; loaders use nothing
    else of the Context."""

    def __init__(
        self,
        *,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        tokenmanager: TokenManager,
        tuning: TransportTuning | type[TransportTuning],
        server_bind: Optional[Tuple[Optional[str], Optional[int]]],
        ssl_context: Optional[ssl.SSLContext],
        client_credentials: CredentialsMap,
        server_credentials: CredentialsMap,
        add_message_interface: Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[None]],
        add_token_interface: Callable[[TokenInterface], None],
        add_request_interface: Callable[[RequestInterface], None],
        request_provider: Context,
        loaded: Iterable[str] = frozenset(),
        multicast: Sequence[MulticastGroup] = (),
    ) -> None:
        self.log = log
        self.loop = loop
        self.tokenmanager = tokenmanager
        self.tuning = tuning
        #: (host, port) of a server context (either may be None), or None
        #: for a client context
        self.server_bind: Optional[Tuple[Optional[str], Optional[int]]] = server_bind
        self.ssl_context = ssl_context
        self.client_credentials = client_credentials
        self.server_credentials = server_credentials
        self.add_message_interface = add_message_interface
        self.add_token_interface = add_token_interface
        self.add_request_interface = add_request_interface
        #: the Context (as a RequestProvider), for request interfaces that
        #: send their own requests through the context (OSCORE)
        self.request_provider = request_provider
        #: names of the transports the context loaded before this one
        self.loaded = frozenset(loaded)
        #: the groups a server context was asked to join (checked already,
        #: see :mod:`.multicast`); for the transports whose
        #: :attr:`TransportEntry.multicast` is set
        self.multicast = tuple(multicast)

    def secure_bind(self, *plain: str) -> Optional[Tuple[Optional[str], Optional[int]]]:
        """The bind address of a secured listener: when one of the
        transports named ``plain`` already listens on an explicit port, the
        next port (:data:`SECURE_PORT_OFFSET`); otherwise the bind address
        as given (ephemeral and default ports stay as they are)."""
        if self.server_bind is None:
            return None
        host, port = self.server_bind
        if port and self.loaded.intersection(plain):
            return (host, port + SECURE_PORT_OFFSET)
        return (host, port)


@dataclass(frozen=True)
class TransportEntry:
    """One row of :data:`TRANSPORTS`."""

    name: str
    #: the module (relative to this package) whose ``load(setup)`` coroutine
    #: attaches the transport
    module: str
    #: URI schemes whose requests it can carry
    schemes: Tuple[str, ...]
    #: it sends requests
    client: bool
    #: it accepts requests (only loaded into server contexts)
    server: bool
    #: the setup.py extra its third-party modules come from, if any
    extra: Optional[str] = None
    #: it joins the groups of :attr:`TransportSetup.multicast`
    multicast: bool = False

    async def load(self, setup: TransportSetup) -> None:
        """Attach the transport to the context described by ``setup``. A
        server-only transport is skipped in a client context, as is one
        whose loader finds nothing to do (a TLS server without a
        certificate)."""
        if setup.server_bind is None and not self.client:
            return
        module = importlib.import_module(f"{__name__}.{self.module}")
        await module.load(self, setup)

    @property
    def missing_modules(self) -> list[str]:
        """The third-party modules the transport needs that are missing."""
        if self.extra is None:
            return []
        from .. import defaults

        return defaults.missing_modules_of_extra(self.extra)


def _entry(
    name: str,
    module: str,
    schemes: Iterable[str],
    *,
    client: bool,
    server: bool,
    extra: Optional[str] = None,
    multicast: bool = False,
) -> Tuple[str, TransportEntry]:
    return name, TransportEntry(name, module, tuple(schemes), client, server, extra, multicast)


TRANSPORTS = dict(
    (
        _entry("oscore", "oscore", ("coap", "coaps", "coap+tcp", "coaps+tcp", "coap+ws", "coaps+ws"),
               client=True, server=False, extra="oscore"),
        _entry("udp6", "udp6", ("coap",), client=True, server=True, multicast=True),
        _entry("simple6", "simple6", ("coap",), client=True, server=False),
        _entry("simplesocketserver", "simplesocketserver", ("coap",), client=False, server=True),
        _entry("tcpclient", "tcp", ("coap+tcp",), client=True, server=False),
        _entry("tcpserver", "tcp", ("coap+tcp",), client=False, server=True),
        _entry("tlsclient", "tls", ("coaps+tcp",), client=True, server=False),
        _entry("tlsserver", "tls", ("coaps+tcp",), client=False, server=True),
        _entry("tinydtls", "tinydtls", ("coaps",), client=True, server=False, extra="tinydtls"),
        _entry("tinydtls_server", "tinydtls_server", ("coaps",), client=False, server=True, extra="tinydtls"),
        _entry("ws", "ws", ("coap+ws", "coaps+ws"), client=True, server=True, extra="ws"),
    )
)
"""Every transport a Context can load, by the name applications use (in
``transports=`` and ``AIOCOAP_*_TRANSPORT``). A name's module provides
``async def load(entry, setup)``; :mod:`aiocoap.defaults` picks the names
loaded by default."""
