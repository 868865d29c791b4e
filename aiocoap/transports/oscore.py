"""OSCORE (RFC 8613) as a request transport: requests to URIs for which the
client credentials hold an OSCORE security context are protected here and
sent through the transports below; their responses are verified before the
application sees them.

This transport has no URI scheme of its own. It claims a request when
``context.client_credentials.find_oscore(request)`` names a security
context, resolves the underlying remote through the other request
interfaces of the forward context (UDP, TCP, ...), and gives the request an
:class:`OSCOREAddress` that wraps the security context and that remote.

What happens to a request, in order:

* The plain request is protected (a new sender sequence number each time)
  and the protected request travels through its own pipe to the token layer
  of the transport that recognized the underlying remote. Blockwise
  transfer happens above, on the plain messages (inner blockwise, RFC 8613
  §4.1.3.4.1); the protected messages are never split again.
* Every response and notification is verified with the request's
  identifiers and delivered with ``remote`` set to the OSCOREAddress, so
  ``response.remote.authenticated_claims`` shows the security context.
* A protected 4.01 Unauthorized carrying an Echo option (a server
  recovering its replay window, Appendix B.1.2) makes the request go out
  once more with that Echo value, without the application noticing.
* An unprotected 4.01 carrying an Echo option (a server limiting what it
  sends to an address not yet shown to receive, RFC 9175 §2.3, see
  :mod:`aiocoap.amplification`) makes the request go out once more,
  protected anew, with that Echo value as an outer option.
* A response that is not protected, or fails verification, ends the
  request with :class:`UnprotectedResponse` or
  :class:`ResponseVerificationFailed` (both :class:`OSCOREError`, an
  :class:`aiocoap.error.NetworkError`). For an established observation, a
  notification failing verification is dropped and the observation goes on.
* Observations are re-registered with a freshly protected request when no
  notification arrived for the freshness of the last one (at most
  :data:`MAX_REREGISTRATION_INTERVAL` seconds, so that this happens before
  the token layer would repeat the protected registration verbatim, which
  the server would reject as a replay).
* When the application loses interest, the protected request ends too.

Logging: notifications dropped for failed verification are logged at INFO,
everything else per message at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, cast

from .. import error, interfaces, oscore
from ..message import Message
from ..numbers.codes import Code
from ..numbers.constants import MAX_REGULAR_BLOCK_SIZE_EXP
from ..pipe import Event, Pipe
from ..util.echo import echo_challenge, repeat_with_echo

if TYPE_CHECKING:
    from . import TransportEntry, TransportSetup
    from ..protocol import Context

__all__ = [
    "OSCOREAddress",
    "TransportOSCORE",
    "OSCOREError",
    "UnprotectedResponse",
    "ResponseVerificationFailed",
    "SecurityContextUnavailable",
]

MAX_REREGISTRATION_INTERVAL = 60.0
"""Longest time an observation waits for a notification before it is
registered anew (shorter when the last notification's Max-Age is)."""

REREGISTRATION_MARGIN = 1.0
"""Seconds added to a notification's Max-Age before re-registering."""

_UNAUTHORIZED = Code.UNAUTHORIZED


class OSCOREError(error.NetworkError):
    """An OSCORE-protected request failed for a reason of its protection."""


class UnprotectedResponse(OSCOREError):
    """The server answered a protected request without protection, typically
    with 4.01 (unknown security context, replay), 4.00 (decryption failed)
    or 4.02 (malformed OSCORE option). ``response`` is that answer; nothing
    in it is authenticated."""

    def __init__(self, response: Message):
        self.response = response
        detail = f"{response.code}"
        if response.payload:
            detail += f" {response.payload[:80].decode('utf-8', 'replace')!r}"
        super().__init__(f"Server sent an unprotected response to an OSCORE request: {detail}")

    def extra_help(self, hints: Any = None) -> Optional[str]:
        if self.response.code == _UNAUTHORIZED:
            return "the server does not know this security context (sender ID, ID context) or saw a replay"
        if self.response.code == Code.BAD_REQUEST:
            return "the server could not decrypt the request; do both sides use the same keys?"
        return None


class ResponseVerificationFailed(OSCOREError):
    """A response claimed OSCORE protection but did not pass verification
    (wrong key, tampered with, replayed, or malformed)."""


class SecurityContextUnavailable(OSCOREError):
    """The security context for a request can not be used: it could not be
    loaded (missing, malformed, locked by another program) or can not
    protect any more (shut down, sequence numbers exhausted, state not
    writable)."""


class _OSCOREAddress(NamedTuple):
    security_context: Any
    underlying_address: interfaces.EndpointAddress


class OSCOREAddress(_OSCOREAddress, interfaces.EndpointAddress):
    """Remote address type for :class:`TransportOSCORE`: a security context
    together with the address of the underlying transport the protected
    messages travel through.

    The URI properties, scheme and size limits are those of the underlying
    address; ``authenticated_claims`` holds the security context. Two
    addresses are equal when they have the same security context (the very
    object) and equal underlying addresses."""

    via: Optional[interfaces.RequestInterface] = None
    """The request interface that carries the protected messages, when this
    address came out of :meth:`TransportOSCORE.fill_or_recognize_remote`;
    not part of the address' identity."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} via {self.underlying_address!r} with {self.security_context!r}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = _OSCOREAddress.__hash__

    @property
    def hostinfo(self) -> str:
        return self.underlying_address.hostinfo

    @property
    def hostinfo_local(self) -> str:
        return self.underlying_address.hostinfo_local

    @property
    def uri_base(self) -> str:
        return self.underlying_address.uri_base

    @property
    def uri_base_local(self) -> str:
        return self.underlying_address.uri_base_local

    @property
    def scheme(self) -> str:
        return self.underlying_address.scheme

    is_multicast = False
    is_multicast_locally = False

    @property
    def maximum_block_size_exp(self) -> int:  # type: ignore[override]
        # (Blocks of the protected inner message are never BERT: a BERT
        # block's size is that of the outer transport's message.)
        return min(self.underlying_address.maximum_block_size_exp, MAX_REGULAR_BLOCK_SIZE_EXP)

    @property
    def maximum_payload_size(self) -> int:  # type: ignore[override]
        underlying = self.underlying_address.maximum_payload_size
        return min(underlying, _largest_protectable_payload(self.security_context.alg_aead))

    @property
    def reliable_transport(self) -> bool:  # type: ignore[override]
        return getattr(self.underlying_address, "reliable_transport", False)

    @property
    def session_ended(self) -> bool:  # type: ignore[override]
        return getattr(self.underlying_address, "session_ended", False)

    @property
    def authenticated_claims(self) -> tuple[Any, ...]:  # type: ignore[override]
        """The security context the exchange was protected with"""
        return (self.security_context,)

    def as_response_address(self) -> "OSCOREAddress":
        underlying = self.underlying_address.as_response_address()
        if underlying is self.underlying_address:
            return self
        return type(self)(self.security_context, underlying)


def _largest_protectable_payload(algorithm: object) -> int:
    """The largest payload (in whole 1024 byte units, for BERT) whose
    plaintext, with code and inner options, the algorithm can encrypt in
    one message: AES-CCM with a 13 byte nonce stops short of 64 KiB."""
    if isinstance(algorithm, oscore.AES_CCM):
        length_bytes = 15 - algorithm.iv_bytes
        if length_bytes < 8:
            return ((1 << (8 * length_bytes)) - 1024) // 1024 * 1024
    return 1 << 62


def _is_oscore_transport(ri: object) -> bool:
    return isinstance(ri, TransportOSCORE)


class TransportOSCORE(interfaces.RequestProvider, interfaces.RequestInterface):
    """The OSCORE request interface of a Context.

    ``context`` is the Context whose ``client_credentials`` say which
    requests to protect; ``forward_context`` is the Context whose other
    request interfaces carry the protected messages (usually both are the
    same Context)."""

    def __init__(self, context: Context, forward_context: Context) -> None:
        self._context = context
        self._forward_context = forward_context
        self.log: logging.Logger = context.log
        self.loop: asyncio.AbstractEventLoop = context.loop
        self._observations: set[_Exchange] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._used_contexts: dict[int, Any] = {}
        self._shut_down = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} with {len(self._observations)} observation(s)>"

    async def fill_or_recognize_remote(self, message: Message) -> bool:
        """Claim the message if it already has an OSCOREAddress, or if the
        client credentials hold a security context for its URI; in that
        case, resolve the underlying remote through the forward context's
        other request interfaces and set an OSCOREAddress as remote.

        A request that the credentials say to protect but that no transport
        can carry raises error.NetworkError, so it can never go out
        unprotected by accident."""
        if isinstance(message.remote, OSCOREAddress):
            return True
        credentials = self._context.client_credentials
        if credentials is None:
            return False
        try:
            secctx = credentials.find_oscore(message)
        except Exception as e:
            raise SecurityContextUnavailable(f"The OSCORE security context can not be loaded: {e}") from e
        if secctx is None:
            return False
        for ri in self._forward_context.request_interfaces:
            if _is_oscore_transport(ri):
                continue
            if await ri.fill_or_recognize_remote(message):
                address = OSCOREAddress(secctx, cast(interfaces.EndpointAddress, message.remote))
                address.via = ri
                message.remote = address
                self._used_contexts[id(secctx)] = secctx
                return True
        raise error.NetworkError(
            f"No transport can carry the OSCORE-protected request to {message.remote!r}"
        )

    def request(self, request: Pipe) -> None:  # type: ignore[override]
        """Protect the pipe's request, send it on, and feed the verified
        responses into the pipe."""
        address = request.request.remote
        if not isinstance(address, OSCOREAddress):
            request.add_exception(error.NetworkError(f"Not an OSCORE remote: {address!r}"))
            return
        if self._shut_down:
            request.add_exception(error.LibraryShutdown())
            return
        _Exchange(self, request, address).start()

    @property
    def shut_down(self) -> bool:
        """True once :meth:`shutdown` was called."""
        return self._shut_down

    def observation_started(self, exchange: "_Exchange") -> None:
        """Keep track of an observation (so that shutdown stops it)."""
        self._observations.add(exchange)

    def observation_ended(self, exchange: "_Exchange") -> None:
        self._observations.discard(exchange)

    def route_protected(self, outer_pipe: Pipe) -> None:
        """Send a protected request whose address did not come from
        :meth:`fill_or_recognize_remote` (so no interface is known yet)."""
        task = self.loop.create_task(self._route_async(outer_pipe), name="aiocoap OSCORE routing")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _route_async(self, outer_pipe: Pipe) -> None:
        outer = outer_pipe.request
        try:
            for ri in self._forward_context.request_interfaces:
                if _is_oscore_transport(ri):
                    continue
                if await ri.fill_or_recognize_remote(outer):
                    ri.request(outer_pipe)
                    return
            raise error.NetworkError(f"No transport can carry the protected request to {outer.remote!r}")
        except asyncio.CancelledError:
            outer_pipe.add_exception(error.LibraryShutdown())
            raise
        except error.Error as e:
            outer_pipe.add_exception(e)
        except Exception as e:
            wrapped = error.NetworkError(str(e) or type(e).__name__)
            wrapped.__cause__ = e
            outer_pipe.add_exception(wrapped)

    async def shutdown(self) -> None:
        """Stop re-registering observations, and shut down (persist) the
        security contexts this transport used, and those of the Context's
        OSCORE site wrapper if it has one."""
        if self._shut_down:
            return
        self._shut_down = True
        for exchange in list(self._observations):
            exchange.cancel_timer()
        self._observations.clear()
        for task in list(self._tasks):
            task.cancel()
        # Let the token layer fail the requests in flight first; their
        # errors do not need the contexts any more.
        await asyncio.sleep(0)
        contexts, self._used_contexts = list(self._used_contexts.values()), {}
        for secctx in contexts:
            _shutdown_security_context(secctx, self.log)
        from ..oscore_sitewrapper import OscoreSiteWrapper

        site = getattr(self._context, "serversite", None)
        if isinstance(site, OscoreSiteWrapper):
            await site.shutdown()


def _shutdown_security_context(secctx: Any, log: logging.Logger) -> None:
    try:
        secctx.shutdown()
    except Exception:
        log.exception("Shutting down security context %r failed", secctx)


class _Exchange:
    """One application request carried through OSCORE: its current protected
    request (a new one after an Echo challenge or a re-registration) and
    the observation state."""

    __slots__ = (
        "transport", "pipe", "address", "observing", "outer", "request_id",
        "echo_retried", "outer_echo_retried", "established", "timer",
    )

    def __init__(self, transport: TransportOSCORE, pipe: Pipe, address: OSCOREAddress):
        self.transport = transport
        self.pipe = pipe
        self.address = address
        self.observing = pipe.request.opt.observe == 0
        self.outer: Optional[Pipe] = None
        self.request_id: Any = None
        self.echo_retried = False
        self.outer_echo_retried = False
        self.established = False
        self.timer: Optional[asyncio.TimerHandle] = None

    def start(self) -> None:
        self.pipe.on_interest_end(self._interest_ended)
        if self.observing:
            self.transport.observation_started(self)
        self._send(self.pipe.request)

    def _send(self, plain: Message, outer_echo: Optional[bytes] = None) -> None:
        secctx = self.address.security_context
        try:
            outer, request_id = secctx.protect(plain)
        except oscore.ContextUnavailable as e:
            self._fail(SecurityContextUnavailable(str(e)))
            return
        except ValueError as e:
            self._fail(OSCOREError(f"The request can not be protected: {e}"))
            return
        if outer_echo is not None:
            outer.opt.echo = outer_echo
        outer.remote = self.address.underlying_address
        if plain.transport_tuning is not None:
            outer.transport_tuning = plain.transport_tuning
        outer_pipe = Pipe(outer, self.pipe.log)
        previous = self.outer
        self.outer = outer_pipe
        self.request_id = request_id

        def on_event(event: Event) -> bool:
            return self._on_outer_event(outer_pipe, request_id, event)

        outer_pipe.on_event(on_event)
        if previous is not None:
            previous.stop_interest()
        via = self.address.via
        if via is None:
            self.transport.route_protected(outer_pipe)
        else:
            via.request(outer_pipe)

    def _on_outer_event(self, outer_pipe: Pipe, request_id: Any, event: Event) -> bool:
        if outer_pipe is not self.outer:
            return False
        if event.exception is not None:
            self.outer = None
            self._fail(event.exception)
            return False
        protected = event.message
        assert protected is not None  # (an Event has a message or an exception)
        secctx = self.address.security_context
        failure: Optional[OSCOREError] = None
        try:
            plain, _ = secctx.unprotect(protected, request_id)
        except oscore.NotAProtectedMessage:
            echo = None if self.outer_echo_retried else echo_challenge(protected)
            if echo is not None:
                self.pipe.log.debug("Repeating the request with the outer Echo value of a 4.01 response")
                self.outer_echo_retried = True
                self._send(self.pipe.request, outer_echo=echo)
                return False
            failure = UnprotectedResponse(protected)
        except oscore.ProtectionInvalid as e:
            failure = ResponseVerificationFailed(f"Response failed OSCORE verification: {e}")
            failure.__cause__ = e
        except oscore.ContextUnavailable as e:
            failure = SecurityContextUnavailable(str(e))
        if failure is not None:
            if self.established and not event.is_last:
                self.pipe.log.info("Dropping a notification: %s", failure)
                return True
            self.outer = None
            self._fail(failure)
            return False

        code = plain.code
        again = None if self.echo_retried else repeat_with_echo(self.pipe.request, plain)
        if again is not None:
            # RFC 8613 Appendix B.1.2: the server lost its replay window and
            # needs the request again with this Echo value to prove it fresh.
            self.pipe.log.debug("Repeating the request with the Echo value of a 4.01 response")
            self.echo_retried = True
            self._send(again)
            return False

        plain.remote = self.address
        plain.request = self.pipe.request
        if (
            event.is_last
            or not self.observing
            or plain.opt.observe is None
            or not code.is_successful()
        ):
            self.outer = None
            self.cancel_timer()
            self.pipe.add_response(plain, is_last=True)
            return False
        self.established = True
        self._arm_timer(plain.opt.max_age)
        self.pipe.add_response(plain, is_last=False)
        return True

    def _fail(self, exception: BaseException) -> None:
        self.cancel_timer()
        self.pipe.add_exception(exception)

    # --- observation upkeep ------------------------------------------------------

    def _arm_timer(self, max_age: Optional[int]) -> None:
        if self.timer is not None:
            self.timer.cancel()
        freshness = MAX_REREGISTRATION_INTERVAL if max_age is None else min(max_age, MAX_REREGISTRATION_INTERVAL)
        self.timer = self.transport.loop.call_later(freshness + REREGISTRATION_MARGIN, self._reregister)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _reregister(self) -> None:
        self.timer = None
        if not self.pipe.is_interested or self.transport.shut_down:
            return
        self.pipe.log.debug("No notification within its freshness; registering the observation anew")
        self.echo_retried = False
        self.outer_echo_retried = False
        self._send(self.pipe.request)

    def _interest_ended(self) -> None:
        self.cancel_timer()
        self.transport.observation_ended(self)
        outer, self.outer = self.outer, None
        if outer is not None:
            outer.stop_interest()


async def load(entry: "TransportEntry", setup: "TransportSetup") -> None:
    """Attach OSCORE to a context (see :data:`aiocoap.transports.TRANSPORTS`):
    it claims requests before the plain token layer does."""
    setup.add_request_interface(TransportOSCORE(setup.request_provider, setup.request_provider))
