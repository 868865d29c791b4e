"""CoAP over TLS (RFC 8323 §4): the ``coaps+tcp`` scheme (default port
5684), as a server (:class:`TLSServer`, transport name ``tlsserver``) and a
client (:class:`TLSClient`, ``tlsclient``), on Python's :mod:`ssl` module.

Everything above the TLS layer is the TCP transport of
:mod:`aiocoap.transports.tcp` (pooling, the asyncio adapter) and the RFC
8323 session below it (framing, CSM, signaling, timers); this module only
supplies the TLS contexts. Rules:

* Both sides offer the ALPN protocol ``coap`` (RFC 8323 §4.1), which is set
  on every context used here.
* The server uses the :class:`ssl.SSLContext` the application passed to
  ``Context.create_server_context(..., _ssl_context=...)``; whether client
  certificates are required is that context's decision.
* A client verifies the server against the certificate authorities of the
  context its credentials give for the request URI (``ssl_client_context(uri)``
  of ``client_credentials``), or against the system's default store. That
  context's certificate, if it has one, is presented to servers that ask.
  The host name of the URI is verified and sent as SNI; for IP literals
  the address is verified and no SNI is sent (the ssl module does that).
* A failed verification or handshake fails the request with
  :class:`aiocoap.error.NetworkError` saying why (``certificate verify
  failed: ...``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import interfaces
from ..message import Message
from ..numbers.constants import COAPS_PORT
from . import rfc8323common as rfc
from .rfc8323adapter import client_ssl_context
from .tcp import TCPClient, TcpConnection, TCPServer, TcpTuning

if TYPE_CHECKING:
    from . import TransportEntry, TransportSetup

__all__ = ["TLSServer", "TLSClient", "COAPS_PORT"]

ALPN_PROTOCOL = "coap"
"""The ALPN protocol ID of CoAP over TLS (RFC 8323 §8.6)."""


class _TLSMixin:
    _scheme = rfc.SCHEME_TLS
    _default_port = rfc.DEFAULT_PORT_TLS
    _early_close_hint = (
        " (a TLS server that requires client certificates does this when it got none it accepts)"
    )


class TLSServer(_TLSMixin, TCPServer):
    """Accepts CoAP-over-TLS connections (see :class:`TCPServer`)."""

    @classmethod
    async def create_server(  # type: ignore[override]  # the SSL context is required here
        cls,
        bind: Optional[tuple[Optional[str], Optional[int]]],
        tman: interfaces.TokenManager,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        server_context: ssl.SSLContext,
        *,
        tuning: Optional[TcpTuning] = None,
    ) -> "TLSServer":
        """Listen on ``bind`` ((host, port), None for any address / port
        5684) with the TLS settings of ``server_context`` (an
        :class:`ssl.SSLContext` with the server's certificate loaded)."""
        if not isinstance(server_context, ssl.SSLContext):
            raise TypeError("TLSServer needs an ssl.SSLContext as server_context")
        server_context.set_alpn_protocols([ALPN_PROTOCOL])
        _remember_sni(server_context)
        return await super().create_server(bind, tman, log, loop, _server_context=server_context, tuning=tuning)

    def connection_opened(self, connection: TcpConnection) -> None:
        # The host name the client asked for (SNI) names this side in the
        # URIs of its requests that carry no Uri-Host.
        name = getattr(connection.transport_info("ssl_object"), _SNI_ATTRIBUTE, None)
        if name:
            connection.set_local_name(name)
        super().connection_opened(connection)


_SNI_ATTRIBUTE = "_aiocoap_server_name"


SNICallback = Callable[[ssl.SSLObject, str, ssl.SSLContext], Optional[int]]


class _RememberSNI:
    """An SNI callback that notes the host name a client sent on the
    connection's SSL object, then calls the one it replaced (if any)."""

    def __init__(self, previous: Optional[SNICallback]) -> None:
        self.previous = previous

    def __call__(self, ssl_object: ssl.SSLObject, server_name: str, ssl_context: ssl.SSLContext) -> Optional[int]:
        if server_name:
            setattr(ssl_object, _SNI_ATTRIBUTE, server_name)
        previous = self.previous
        return previous(ssl_object, server_name, ssl_context) if previous is not None else None


def _remember_sni(context: ssl.SSLContext) -> None:
    """Make the server context note on each connection's SSL object the
    host name its client sent as SNI (keeping an SNI callback the
    application set; once per context, however many servers use it)."""
    if not isinstance(context.sni_callback, _RememberSNI):
        context.sni_callback = _RememberSNI(context.sni_callback)


class TLSClient(_TLSMixin, TCPClient):
    """Opens CoAP-over-TLS connections for ``coaps+tcp://`` URIs (see
    :class:`TCPClient`)."""

    # (created when a request needs it)
    _default_context: Optional[ssl.SSLContext] = None

    def _ssl_context(self, connection: TcpConnection, message: Optional[Message]) -> ssl.SSLContext:
        credentials = getattr(self.tokenmanager, "client_credentials", None)
        context = client_ssl_context(credentials, message, connection.uri_base + "/", ALPN_PROTOCOL)
        if context is not None:
            return context
        if self._default_context is None:
            self._default_context = ssl.create_default_context()
            self._default_context.set_alpn_protocols([ALPN_PROTOCOL])
        return self._default_context

    def _connection_kwargs(self, connection: TcpConnection, host: str, message: Optional[Message]) -> dict[str, Any]:
        return {
            "ssl": self._ssl_context(connection, message),
            "server_hostname": host,
            "ssl_handshake_timeout": self.tuning.connect_timeout,
        }


async def load(entry: "TransportEntry", setup: "TransportSetup") -> None:
    """Attach the client (``tlsclient``) or server (``tlsserver``) side to a
    context (see :data:`aiocoap.transports.TRANSPORTS`). The server listens
    only when the context was given an SSL context, next to the TCP port
    when that is explicit."""
    interface: TLSServer | TLSClient
    if entry.server:
        if setup.ssl_context is None:
            return
        interface = await TLSServer.create_server(
            setup.secure_bind("tcpserver"), setup.tokenmanager, setup.log, setup.loop, setup.ssl_context
        )
    else:
        interface = await TLSClient.create_client_transport(setup.tokenmanager, setup.log, setup.loop)
    setup.add_token_interface(interface)
