"""Interface base classes that separate the layers of the stack.

A datagram arriving on UDP travels: MessageInterface (transport) ->
MessageManager (message layer: dedup, ACK/RST) -> TokenManager (token
layer: request or response?) -> RequestProvider (the Context: render on the
site, or complete a request's pipe). Outgoing requests travel the other
way: Context.request -> RequestInterface (OSCORE, or the TokenManager) ->
TokenInterface (TCP/TLS, or the MessageManager) -> MessageInterface.

Every class here is abstract; concrete layers live in their own modules and
are wired at construction.
"""

from __future__ import annotations

import abc
import asyncio
from typing import TYPE_CHECKING, Any, Callable, Hashable, Optional, TypeVar

from .numbers.constants import DEFAULT_BLOCK_SIZE_EXP, MAX_REGULAR_BLOCK_SIZE_EXP

if TYPE_CHECKING:
    from .credentials import CredentialsMap
    from .message import Message
    from .pipe import Pipe
    from .protocol import ServerObservation

__all__ = [
    "MAX_REGULAR_BLOCK_SIZE_EXP",
    "MessageInterface", "EndpointAddress", "MessageManager",
    "TokenInterface", "TokenManager", "RequestInterface", "RequestProvider",
    "Request", "Resource", "ObservableResource", "renders_to_pipe", "dispatches_to_children",
]


class MessageInterface(metaclass=abc.ABCMeta):
    """A MessageInterface is an object that can exchange addressed messages
    over unreliable transports. Implementations send and receive messages
    with message type and message ID, and are driven by a MessageManager
    that deals with retransmission.

    Received datagrams are handed to the MessageManager's
    :meth:`MessageManager.dispatch_datagram` (or, already decoded, to
    :meth:`MessageManager.dispatch_message`); errors the operating system
    reports for a remote go to :meth:`MessageManager.dispatch_error`."""

    @abc.abstractmethod
    def send(self, message: "Message") -> None:
        """Send a given Message object (its ``remote`` was set by this
        interface's :meth:`determine_remote` or came from a received
        message)."""

    @abc.abstractmethod
    async def determine_remote(self, message: "Message") -> Optional["EndpointAddress"]:
        """Return a value suitable for the message's remote property based
        on its ``.remote`` (an UndecidedRemote), ``.opt.uri_host`` or
        ``.unresolved_remote``.

        May return None, which indicates that the MessageInterface can not
        transport the message (typically because it is of the wrong scheme).
        Raises error.ResolutionError if the host name does not resolve."""

    def recognize_remote(self, remote: EndpointAddress) -> bool:
        """True if ``remote`` is an address this interface created (so that
        a message with that remote goes out through this interface)."""
        return False

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """Deactivate the complete transport, usually irrevertably. When the
        coroutine returns, the object must have made sure that it can be
        destructed by means of ref-counting or a garbage collector run."""


class EndpointAddress(metaclass=abc.ABCMeta):
    """An address that is suitable for routing through the application to a
    remote endpoint.

    Incoming addresses must be hashable and hash-compare identically to
    requests from the same context (the same peer, eligible for
    request/response matching, blockwise and observation). Hash-identical
    objects also compare equal."""

    @property
    def uri(self) -> str:
        """Deprecated alias for uri_base"""
        return self.uri_base

    @property
    @abc.abstractmethod
    def hostinfo(self) -> str:
        """The authority component of URIs that this endpoint represents
        when requests are sent to it"""

    @property
    @abc.abstractmethod
    def hostinfo_local(self) -> str:
        """The authority component of URIs that this endpoint represents
        when requests are sent from it."""

    @property
    @abc.abstractmethod
    def uri_base(self) -> str:
        """The base URI for the peer (typically scheme plus .hostinfo).

        Raises error.AnonymousHost when the peer can not be expressed in a
        URI."""

    @property
    @abc.abstractmethod
    def uri_base_local(self) -> str:
        """The base URI for the local side of this remote.

        Raises error.AnonymousHost when the local side can not be expressed
        in a URI."""

    @property
    @abc.abstractmethod
    def is_multicast(self) -> bool:
        """True if the remote address is a multicast address, otherwise
        false."""

    @property
    @abc.abstractmethod
    def is_multicast_locally(self) -> bool:
        """True if the local address is a multicast address, otherwise
        false."""

    @property
    @abc.abstractmethod
    def scheme(self) -> str:
        """The URI scheme that is used with addresses of this kind"""

    maximum_block_size_exp = DEFAULT_BLOCK_SIZE_EXP
    """The maximum negotiated block size that can be sent to this remote."""

    maximum_payload_size = 1024
    """The maximum payload size that can be sent to this remote. Only
    relevant if maximum_block_size_exp is 7 (BERT). Divisible by 1024."""

    reliable_transport = False
    """True for transports (TCP, TLS) that need no message layer: no
    retransmission, no deduplication, no observe reordering."""

    session_ended = False
    """True for the address of a security session (DTLS) that is over:
    messages are not sent to it any more, and a route that remembered it
    has to be decided anew (the next session is a different address)."""

    route_per_uri = False
    """True where the address was chosen for the request's whole URI, not
    just its host and port (DTLS credentials can depend on the path): the
    Context then does not reuse it for other requests to the same host."""

    authenticated_claims: tuple[Any, ...] = ()
    """What the security layer (OSCORE, DTLS, TLS) established about the
    peer; empty for unprotected exchanges."""

    @property
    def blockwise_key(self) -> Hashable:
        """A hashable value that is the same exactly for remotes whose
        blocks may be combined into one blockwise transfer: the network
        peer and the security context it is protected with. By default the
        address itself (addresses compare equal for the same peer and
        security)."""
        return self

    def as_response_address(self) -> "EndpointAddress":
        """Address to be assigned to a response to messages that arrived
        with this message

        This can (and does, by default) return self, but gives the protocol
        the opportunity to react to create a modified copy to deal with
        variations from multicast."""
        return self


class MessageManager(metaclass=abc.ABCMeta):
    """The interface an entity that drives a MessageInterface provides
    towards the MessageInterface for callbacks and object acquisition."""

    @abc.abstractmethod
    def dispatch_message(self, message: "Message") -> None:
        """Callback to be invoked with an incoming message"""

    @abc.abstractmethod
    def dispatch_datagram(self, data: bytes, remote: "EndpointAddress") -> None:
        """Callback to be invoked with an incoming datagram (decoding and the
        handling of malformed input happen in the message layer)."""

    @abc.abstractmethod
    def dispatch_error(self, exception: Exception, remote: "EndpointAddress") -> None:
        """Callback to be invoked when the operating system indicated an
        error condition (an OSError, e.g. ECONNREFUSED from an ICMP port
        unreachable) from a particular remote."""

    @property
    def client_credentials(self) -> Optional[CredentialsMap]:
        """A CredentialsMap that transports should consult when trying to
        establish a security context"""
        return None


class TokenInterface(metaclass=abc.ABCMeta):
    """What the TokenManager sends messages through: the MessageManager for
    datagram transports, or a reliable transport (TCP, TLS) directly."""

    @abc.abstractmethod
    def send_message(self, message: "Message", messageerror_monitor: Optional[Callable[[Exception], None]] = None) -> Optional[Callable[[], None]]:
        """Send a message. If it returns a callable, the caller is asked to
        call it in case it no longer needs the message sent (a response
        arrived, the requester lost interest), so that retransmissions stop
        and state is freed.

        messageerror_monitor is called (at most once) with an exception when
        the layer learns that the message will not be processed: a Reset
        (error.ResetReceived), retransmissions exhausted
        (error.ConRetransmitsExceeded), no response to a NON request within
        the request timeout (error.RequestTimedOut), a network error
        (error.NetworkError), or shutdown (error.LibraryShutdown)."""

    def send_message_replacing(
        self,
        message: "Message",
        previous: Callable[[], None],
        messageerror_monitor: Optional[Callable[[Exception], None]] = None,
    ) -> Optional[Callable[[], None]]:
        """Send ``message`` in place of an earlier one, ``previous`` being
        what :meth:`send_message` returned for that (the token layer sends
        an observation's notifications this way, each replacing the one
        before). Returns what :meth:`send_message` returns.

        This implementation stops the earlier message and sends the new one
        on its own, which is right for reliable transports. The message
        layer of CoAP over UDP lets a replacement take over a confirmable
        exchange still in flight instead, with its retransmission counter
        and timeout (RFC 7641 §4.5.2), so that a peer that stopped
        answering is given up on even while new notifications keep
        coming."""
        previous()
        return self.send_message(message, messageerror_monitor)

    def recognize_remote(self, remote: EndpointAddress) -> bool:
        """True if ``remote`` is an address messages go out through this
        interface with."""
        return False

    @abc.abstractmethod
    async def fill_or_recognize_remote(self, message: "Message") -> bool:
        """Return True if the message is recognized to already have a
        .remote managed by this TokenInterface, or return True and set a
        .remote on message if it should (by its UndecidedRemote or Uri-*
        options) be routed through this TokenInterface, or return False
        otherwise."""

    async def shutdown(self) -> None:
        """Release all resources."""


class TokenManager(metaclass=abc.ABCMeta):
    """What TokenInterfaces deliver incoming messages to."""

    @abc.abstractmethod
    def process_request(self, request: "Message", ti: Optional["TokenInterface"] = None) -> None:
        """An incoming request (deduplicated by the layer below); ``ti`` is
        the TokenInterface it came through, if the caller knows it."""

    @abc.abstractmethod
    def process_response(self, response: "Message") -> bool:
        """An incoming response; return False if no request of ours matches
        (the message layer then RSTs a CON or drops a NON)."""

    @abc.abstractmethod
    def dispatch_error(self, exception: Exception, remote: "EndpointAddress") -> None:
        """Fail all exchanges with that remote with the given exception."""


class RequestInterface(metaclass=abc.ABCMeta):
    """Something that can carry a request (a Pipe) and report its response
    events back into the pipe: the TokenManager, or OSCORE on top of it."""

    @abc.abstractmethod
    def request(self, request: "Pipe") -> None:
        """Start processing the request in the pipe."""

    @abc.abstractmethod
    async def fill_or_recognize_remote(self, message: "Message") -> bool:
        """Like TokenInterface.fill_or_recognize_remote."""

    async def shutdown(self) -> None:
        """Release all resources."""


class RequestProvider(metaclass=abc.ABCMeta):
    """Something applications send requests with (a Context, a proxy
    forwarder)."""

    @abc.abstractmethod
    def request(self, request_message: "Message") -> "Request":
        """Create and act on a Request object that will be handled
        according to the provider's implementation."""


class Request(metaclass=abc.ABCMeta):
    """A CoAP request, initiated by sending a message. Typically, this is
    not instantiated directly, but generated by a RequestProvider.request()
    method."""

    __slots__ = ()

    response: "asyncio.Future[Message]" = None  # type: ignore[assignment]  # (set by every implementation)
    """A future that is present from the creation of the object and
    fulfilled with the response message.

    When legitimate errors occur, it holds an :class:`aiocoap.error.Error`
    (network failures, failed protection, protocol violations); any other
    exception is a bug of the library."""


class Resource(metaclass=abc.ABCMeta):
    """Interface that is expected by a protocol.Context to be present on the
    serversite, which renders all requests to that context."""

    renders_without_task: bool = False
    """Whether the Context may start renderings of this serversite outside
    of a task of their own (an extension of this library; aiocoap always
    starts a task).

    A serversite sets it to True when none of its renderings needs a task
    before it first waits for something: no ``asyncio.current_task()``, no
    ``asyncio.timeout()``, no task group in that first part. The Context
    then runs each rendering up to its first wait right where the request
    is delivered, and only one that waits is handed to a task (the rest of
    it runs there, cancelled when the requester loses interest). On Python
    3.11 that saves a turn of the event loop and a task per request;
    from 3.12 on, the default already answers a rendering that does not
    wait within the delivery of its request, in a task (see
    :func:`aiocoap.util.asyncio.stepping.start_task`). The file server
    sets it."""

    def __init__(self) -> None:
        super().__init__()

    async def render_to_pipe(self, pipe: "Pipe") -> None:
        """Feed the response(s) to the request in ``pipe`` into it.

        A resource that overrides this takes over the whole exchange: the
        Context calls it instead of :meth:`render`,
        :meth:`needs_blockwise_assembly` and ``add_observation`` (which still
        have to exist), and the resource adds any number of responses with
        ``pipe.add_response(message, is_last=...)`` (a proxy relaying an
        observation does that). Exceptions become error responses as they
        would from :meth:`render`.

        The default renders the request with :meth:`render` and adds its
        result as the only response (the Context does not call it, but does
        the same with blockwise and observation handling added)."""
        from .pipe import add_rendered, error_to_message

        try:
            response = await self.render(pipe.request)
        except Exception as e:
            response = error_to_message(pipe, e)
        add_rendered(pipe, response, is_last=True)


    @abc.abstractmethod
    async def needs_blockwise_assembly(self, request: "Message") -> bool:
        """Indicator about whether the library should assemble request
        blocks to a single request and extract the requested blocks from a
        complete-resource answer (True), or whether the resource will do
        that by itself (False)."""

    @abc.abstractmethod
    async def render(self, request: "Message") -> "Message":
        """Return a message that can be sent back to the requester.

        This does not need to set any low-level message options like remote,
        token or message type; it does however need to set a response code.

        A response returned may carry a no_response option (which is
        actually specified to apply to requests only); the underlying
        transports will decide based on that and its code whether to
        actually transmit the response.

        The aiocoap.message.NoResponse sentinel can be returned if the
        resource wishes to suppress an answer on the request/response layer
        (an empty ACK is sent to a CON request nevertheless)."""


class ObservableResource(Resource, metaclass=abc.ABCMeta):
    """Interface the protocol.ServerObservation uses to negotiate whether an
    observation can be established based on a request.

    This adds only functionality for registering and unregistering
    observations; the notification contents will be retrieved from the
    resource using the regular render() method from crafted (fake)
    requests."""

    @abc.abstractmethod
    async def add_observation(self, request: "Message", serverobservation: ServerObservation) -> None:
        """Before the incoming request is sent to render(), the
        add_observation() method is called. If the resource chooses to
        accept the observation, it has to call the
        serverobservation.accept(cb) with a callback that will be called
        when the observation ends. After accepting, the ObservableResource
        should call serverobservation.trigger() whenever it changes its
        state; the ServerObservation will then initiate notifications by
        having the request rendered again."""


_DISPATCHES = "_aiocoap_dispatches_to_children"
_Method = TypeVar("_Method", bound=Callable[..., Any])


def dispatches_to_children(render_to_pipe: _Method) -> _Method:
    """Mark a :meth:`Resource.render_to_pipe` that only hands exchanges on
    to other resources (as :class:`aiocoap.resource.Site`'s does), so that
    :func:`renders_to_pipe` counts its resource as rendering to pipes only
    through them."""
    setattr(render_to_pipe, _DISPATCHES, True)
    return render_to_pipe


def renders_to_pipe(resource: object) -> bool:
    """Whether ``resource`` takes over its exchanges with a
    :meth:`Resource.render_to_pipe` of its own (rather than the default one
    that calls ``render``; one marked :func:`dispatches_to_children`
    counts as such only through the resources it hands them to)."""
    method = getattr(type(resource), "render_to_pipe", None)
    return method is not None and method is not Resource.render_to_pipe and not getattr(method, _DISPATCHES, False)
