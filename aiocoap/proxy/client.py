"""Sending requests through a CoAP forward proxy.

:class:`ProxyForwarder` stands in for a :class:`~aiocoap.protocol.Context`
where an application should reach its servers through a proxy: it rewrites
every request into the proxy form of RFC 7252 §5.10.2 (Proxy-Scheme plus
Uri-Host and Uri-Port, the path and query staying in their options) and
sends it to the proxy through the wrapped context. Blockwise transfers and
observations work as with the context itself, as every follow-up message
carries the same options.
"""

from __future__ import annotations

import warnings
from typing import Any

from .. import error, interfaces
from ..message import Message, UndecidedRemote
from ..util import hostportjoin, hostportsplit

__all__ = ["ProxyForwarder"]


class ProxyForwarder(interfaces.RequestProvider):
    """Object that behaves like a Context but only provides the request
    function and forwards all messages to a proxy.

    This is not a proxy itself, it is just the interface for an external
    one.

    ``proxy_address`` is the proxy's URI without path (``coap://host``,
    ``coap+tcp://[::1]:5683``; a bare ``host[:port]`` still means
    ``coap://`` but is deprecated); ``context`` the Context (or other
    RequestProvider) that carries the requests to the proxy."""

    def __init__(self, proxy_address: str, context: interfaces.RequestProvider) -> None:
        if "://" not in proxy_address:
            warnings.warn(
                "Proxy addresses without a scheme are deprecated; give them as "
                "coap://host, coap+tcp://host:port etc.",
                DeprecationWarning,
                stacklevel=2,
            )
            proxy_address = "coap://" + proxy_address
        self.proxy_address = UndecidedRemote.from_pathless_uri(proxy_address)
        self.context = context

    def __repr__(self) -> str:
        return f"<{type(self).__name__} via {self.proxy_address.uri_base} over {self.context!r}>"

    @property
    def proxy(self) -> UndecidedRemote:
        """The proxy requests are sent to (scheme and hostinfo)."""
        return self.proxy_address

    def request(self, message: Message, **kwargs: Any) -> interfaces.Request:  # type: ignore[override]  # (the manual's parameter name)
        """Send ``message`` (which must have its destination set through
        its URI, not a concrete remote) through the proxy; returns what the
        context's ``request`` returns, with the same keyword arguments."""
        return self.context.request(self.rewrite(message), **kwargs)

    def rewrite(self, message: Message) -> Message:
        """Put ``message`` into the proxy form and address it to the proxy
        (what :meth:`request` does before sending): its destination goes
        into Proxy-Scheme, Uri-Host and Uri-Port, path and query stay in
        their options. A message that already carries a Proxy-Uri and no
        destination is only addressed to the proxy.

        Raises ValueError for a message with a concrete remote (its
        destination must be given as a URI)."""
        target = message.remote
        if target is None and message.opt.proxy_uri is not None:
            message.remote = self.proxy_address
            return message
        if not isinstance(target, UndecidedRemote):
            raise ValueError(
                "The message already has a concrete remote; give its destination "
                "as a URI (uri=... or set_request_uri) to send it through a proxy"
            )
        try:
            host, port = hostportsplit(target.hostinfo)
        except ValueError as e:
            raise error.MalformedUrlError(f"Unusable destination {target.hostinfo!r}: {e}") from None
        if message.opt.uri_host is None:
            # An IP literal in Uri-Host has its brackets (RFC 7252 §6.5).
            message.opt.uri_host = hostportjoin(host) if ":" in host else host
        if port is not None and message.opt.uri_port is None:
            message.opt.uri_port = port
        message.opt.proxy_scheme = target.scheme
        message.remote = self.proxy_address
        return message
