"""Exceptions of the library.

Hierarchy (see the docstrings for when each is raised)::

    Error
    ├── RenderableError                  a resource can raise these; they become a response
    │   ├── ConstructionRenderableError   (code and message from class attributes)
    │   │   ├── BadRequest, BadOption, Unauthorized, Forbidden, NotFound (NoResource),
    │   │   │   MethodNotAllowed (UnallowedMethod, UnsupportedMethod), NotAcceptable,
    │   │   │   Conflict, RequestEntityIncomplete, PreconditionFailed,
    │   │   │   RequestEntityTooLarge, UnsupportedContentFormat (= UnsupportedMediaType),
    │   │   │   UnprocessableEntity, TooManyRequests, InternalServerError,
    │   │   │   NotImplemented (5.01, also NotImplementedResponse), BadGateway,
    │   │   │   ServiceUnavailable, GatewayTimeout, CommunicationKilled,
    │   │   │   ProxyingNotSupported, HopLimitReached
    │   │   └── NoRequestInterface        (5.05, and a NetworkError) no transport for the request
    ├── ResponseWrappingError            an unsuccessful response, raised by response_raising
    ├── ResourceChanged, ResponseTooLarge, UnexpectedBlock1Option, UnexpectedBlock2,
    │   MissingBlock2Option, NotObservable, ObservationCancelled, UnparsableMessage,
    │   LibraryShutdown, AnonymousHost
    ├── HelpfulError                     errors that can say what the user can do about them
    │   ├── MalformedUrlError, IncompleteUrlError (also ValueErrors)
    │   ├── ConToMulticast               a confirmable message to a multicast address
    │   ├── MissingRemoteError           a request without destination
    │   └── NetworkError                 something went wrong sending or receiving
    │       ├── ResolutionError          a host name could not be resolved
    │       ├── MessageError             the peer rejected a message (ResetReceived: with a Reset)
    │       ├── RemoteServerShutdown     the peer closed the connection
    │       ├── SendQueueFull            too many messages wait for their turn to a peer
    │       └── TimeoutError             no answer in time: RequestTimedOut
    │                                    (ConRetransmitsExceeded), WaitingForClientTimedOut

Where aiocoap 0.4.x and the 0.4b2 manual disagree on a class' place, it has
both: RequestTimedOut is a TimeoutError (0.4.x) and ConRetransmitsExceeded
still a RequestTimedOut (0.4b2); NotImplemented renders as 5.01 (0.4.x) and
is still an Error to catch (0.4b2).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Optional

from .numbers.codes import Code

if TYPE_CHECKING:
    from .message import Message

_NO_HINTS: Mapping[str, Any] = MappingProxyType({})

__all__ = [
    "Error", "HelpfulError", "RenderableError", "ResponseWrappingError",
    "ConstructionRenderableError", "BadRequest", "BadOption", "Unauthorized",
    "Forbidden", "NotFound", "MethodNotAllowed", "NotAcceptable", "Conflict",
    "UnprocessableEntity", "BadGateway", "GatewayTimeout", "HopLimitReached",
    "RequestEntityIncomplete", "PreconditionFailed", "RequestEntityTooLarge",
    "UnsupportedContentFormat", "UnsupportedMediaType", "TooManyRequests",
    "InternalServerError", "NotImplementedResponse", "ServiceUnavailable",
    "ProxyingNotSupported", "NoResource", "UnallowedMethod",
    "UnsupportedMethod", "NotImplemented", "RequestTimedOut",
    "ConRetransmitsExceeded", "WaitingForClientTimedOut", "ResourceChanged",
    "ResponseTooLarge", "UnexpectedBlock1Option", "UnexpectedBlock2", "MissingBlock2Option",
    "NotObservable", "ObservationCancelled", "UnparsableMessage",
    "CommunicationKilled", "LibraryShutdown", "AnonymousHost",
    "MalformedUrlError", "IncompleteUrlError", "NetworkError",
    "ResolutionError", "ResetReceived", "MessageError", "RemoteServerShutdown",
    "TimeoutError", "NoRequestInterface", "MissingRemoteError", "ConToMulticast",
    "SendQueueFull",
]


class Error(Exception):
    """Base exception for all exceptions that indicate a failed request"""


class HelpfulError(Error):
    """An error that can say in one line what went wrong and, where known,
    what the user can do about it (used by the command line tools)."""

    def __str__(self) -> str:
        base = super().__str__()
        hint = self.extra_help()
        return f"{base} ({hint})" if base and hint else (base or hint or type(self).__name__)

    def extra_help(self, hints: Mapping[str, Any] = _NO_HINTS) -> Optional[str]:
        """A sentence of advice for the user (printed by aiocoap-client and
        similar tools), or None.

        ``hints`` may carry what the caller knows: ``original_uri`` (the URI
        the user gave) and ``request`` (the message that was built); an
        implementation copes with either missing."""
        return None


class RenderableError(Error):
    """Exception that can meaningfully be represented in a CoAP response"""

    def to_message(self) -> Message:
        """Create a CoAP message that should be sent when this exception is
        rendered"""
        from .message import Message

        return Message(code=Code.INTERNAL_SERVER_ERROR)


class ResponseWrappingError(Error):
    """An exception that is raised due to an unsuccessful but received
    response."""

    def __init__(self, coapmessage: Message) -> None:
        super().__init__(coapmessage)
        self.coapmessage = coapmessage

    def to_message(self) -> Message:
        return self.coapmessage

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.coapmessage.code} {self.coapmessage.payload!r}>"

    def __str__(self) -> str:
        payload = self.coapmessage.payload
        text = payload.decode("utf-8", "replace") if payload else ""
        return f"{self.coapmessage.code}" + (f": {text}" if text else "")


class ConstructionRenderableError(RenderableError):
    """RenderableError that is constructed from class attributes :attr:`code`
    and :attr:`message` (where the can be overridden in the constructor)."""

    code = Code.INTERNAL_SERVER_ERROR
    """Code assigned to messages built from it"""
    message = ""
    """Text sent in the built message's payload"""

    def __init__(self, message: Optional[str] = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)

    def to_message(self) -> Message:
        from .message import Message

        return Message(code=self.code, payload=self.message.encode("utf-8"))


class BadRequest(ConstructionRenderableError):
    """4.00 Bad Request: the request was malformed."""

    code = Code.BAD_REQUEST


class BadOption(ConstructionRenderableError):
    """4.02 Bad Option: an unrecognized or malformed critical option."""

    code = Code.BAD_OPTION


class Unauthorized(ConstructionRenderableError):
    """4.01 Unauthorized: the client is not authorized for the request."""

    code = Code.UNAUTHORIZED


class Forbidden(ConstructionRenderableError):
    """4.03 Forbidden: the request is not allowed whoever asks."""

    code = Code.FORBIDDEN


class NotFound(ConstructionRenderableError):
    """4.04 Not Found: there is no resource at the requested URI."""

    code = Code.NOT_FOUND


class MethodNotAllowed(ConstructionRenderableError):
    """4.05 Method Not Allowed for the resource."""

    code = Code.METHOD_NOT_ALLOWED


class NotAcceptable(ConstructionRenderableError):
    """4.06 Not Acceptable: no representation matches the Accept option."""

    code = Code.NOT_ACCEPTABLE


class Conflict(ConstructionRenderableError):
    """4.09 Conflict with the resource's current state (RFC 8132)."""

    code = Code.CONFLICT


class RequestEntityIncomplete(ConstructionRenderableError):
    """4.08 Request Entity Incomplete: blocks of a blockwise request are missing (RFC 7959)."""

    code = Code.REQUEST_ENTITY_INCOMPLETE


class PreconditionFailed(ConstructionRenderableError):
    """4.12 Precondition Failed: If-Match or If-None-Match did not hold."""

    code = Code.PRECONDITION_FAILED


class RequestEntityTooLarge(ConstructionRenderableError):
    """4.13 Request Entity Too Large for the server."""

    code = Code.REQUEST_ENTITY_TOO_LARGE


class UnsupportedContentFormat(ConstructionRenderableError):
    """4.15 Unsupported Content-Format of the request payload."""

    code = Code.UNSUPPORTED_CONTENT_FORMAT


UnsupportedMediaType = UnsupportedContentFormat
"""Old name of :class:`UnsupportedContentFormat`."""


class UnprocessableEntity(ConstructionRenderableError):
    """4.22 Unprocessable Entity: well-formed but semantically wrong payload (RFC 8132)."""

    code = Code.UNPROCESSABLE_ENTITY


class TooManyRequests(ConstructionRenderableError):
    """4.29 Too Many Requests (RFC 8516)."""

    code = Code.TOO_MANY_REQUESTS


class InternalServerError(ConstructionRenderableError):
    """5.00 Internal Server Error."""

    code = Code.INTERNAL_SERVER_ERROR


class NotImplemented(ConstructionRenderableError):  # noqa: A001 (the documented name)
    """5.01 Not Implemented: the request is correct, but uses a feature the
    library or the resource does not implement (for example non-sequential
    blockwise transfers)."""

    code = Code.NOT_IMPLEMENTED


NotImplementedResponse = NotImplemented
"""Another name of :class:`NotImplemented` (that does not shadow the
builtin)."""


class BadGateway(ConstructionRenderableError):
    """5.02 Bad Gateway: a proxy got no usable response from upstream."""

    code = Code.BAD_GATEWAY


class ServiceUnavailable(ConstructionRenderableError):
    """5.03 Service Unavailable (temporarily)."""

    code = Code.SERVICE_UNAVAILABLE


class GatewayTimeout(ConstructionRenderableError):
    """5.04 Gateway Timeout: a proxy got no response from upstream in time."""

    code = Code.GATEWAY_TIMEOUT


class ProxyingNotSupported(ConstructionRenderableError):
    """5.05 Proxying Not Supported for the requested URI."""

    code = Code.PROXYING_NOT_SUPPORTED


class HopLimitReached(ConstructionRenderableError):
    """5.08 Hop Limit Reached: a proxy loop was detected (RFC 8768)."""

    code = Code.HOP_LIMIT_REACHED


class NoResource(NotFound):
    """Raised when resource is not found."""

    message = "Error: Resource not found!"

    def __init__(self, message: Optional[str] = None) -> None:
        super().__init__(message)


class UnallowedMethod(MethodNotAllowed):
    """Raised by a resource when request method is understood by the server
    but not allowed for that particular resource."""

    message = "Error: Method not allowed!"


class UnsupportedMethod(MethodNotAllowed):
    """Raised when request method is not understood by the server at all."""

    message = "Error: Method not recognized!"


class CommunicationKilled(ConstructionRenderableError):
    """The communication process has been aborted by request of the
    application."""

    code = Code.SERVICE_UNAVAILABLE




class ResourceChanged(Error):
    """The requested resource was modified during the request and could
    therefore not be received in a consistent state."""


class ResponseTooLarge(Error):
    """A blockwise response grew (or announced with Size2 that it would
    grow) beyond the size the client is willing to assemble in memory."""


class UnexpectedBlock1Option(Error):
    """Raised when a server responds with block1 options that just don't
    match."""


class UnexpectedBlock2(Error):
    """Raised when a server responds with another block2 than expected."""


class MissingBlock2Option(Error):
    """Raised when response with Block2 option is expected (previous response
    had Block2 option with More flag set), but response without Block2 option
    is received."""


class NotObservable(Error):
    """The server did not accept the request to observe the resource."""


class ObservationCancelled(Error):
    """The server claimed that it will no longer sustain the observation."""


class UnparsableMessage(Error):
    """An incoming message does not look like CoAP.

    Where the fixed header could be read, ``mtype`` and ``mid`` are set on the
    exception (else None), so that a confirmable message with a format error
    can be answered with a Reset (RFC 7252 §4.2)."""

    def __init__(self, message: str = "", *, mtype: Optional[int] = None, mid: Optional[int] = None) -> None:
        super().__init__(message)
        self.mtype = mtype
        self.mid = mid


class LibraryShutdown(Error):
    """The library or a transport registered with it was requested to shut
    down; this error is raised in all outstanding requests."""


class AnonymousHost(Error):
    """This is raised when it is attempted to express as a reference a (base)
    URI of a host or a resource that can not be reached by any process other
    than this.

    Typically, this happens when trying to serialize a link to a resource
    that is hosted on a CoAP-over-TCP or -WebSockets client: Such resources
    can be accessed for as long as the connection is active, but can not be
    used any more once it is closed or even by another system."""


class MalformedUrlError(ValueError, HelpfulError):
    """A URI given to the library could not be parsed or is not usable as a
    CoAP request URI."""

    def __str__(self) -> str:
        return Exception.__str__(self)


class IncompleteUrlError(MalformedUrlError):
    """A URI was given that lacks a scheme or host."""


class NetworkError(HelpfulError):
    """Base class for all "something went wrong with name resolution, sending
    or receiving packages".

    Errors of these kinds are raised towards client callers when things went
    wrong network-side, or at context creation. They are often raised from
    socket.gaierror or similar classes, but these are wrapped in order to
    make catching them possible independently of the underlying transport.

    (The advice for the operating system's errors behind a NetworkError,
    like a missing route, is given by the command line tools, which know
    the request.)"""


class ResolutionError(NetworkError):
    """Resolving the host component of a URI to a usable transport address
    was not possible"""


class MessageError(NetworkError):
    """The peer rejected a message on the message level (typically with a
    Reset)."""


class ResetReceived(MessageError):
    """The peer answered a confirmable message with a Reset: it could not
    (or would not) process it."""


class RemoteServerShutdown(NetworkError):
    """The peer of a connection (TCP, TLS, WebSockets) closed it while a
    request was waiting for its response."""


class TimeoutError(NetworkError):  # noqa: A001 (the aiocoap name)
    """No answer (neither a response nor an error) came in time. As with any
    NetworkError, the request may or may not have reached the server."""


class RequestTimedOut(TimeoutError):
    """Raised when request is timed out."""


class WaitingForClientTimedOut(TimeoutError):
    """Raised when server expects some client action:

    - sending next PUT/POST request with block1 or block2 option
    - sending next GET request with block2 option

    but client does nothing."""


class ConRetransmitsExceeded(RequestTimedOut):
    """A confirmable message was sent MAX_RETRANSMIT + 1 times and never
    acknowledged; ``transmissions`` and ``waited`` (seconds) tell how often
    and how long."""

    def __init__(
        self,
        message: str = "No acknowledgement received",
        *,
        transmissions: Optional[int] = None,
        waited: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.transmissions = transmissions
        self.waited = waited


class SendQueueFull(NetworkError):
    """Too many confirmable messages wait for their turn to one peer (the
    message layer keeps at most NSTART exchanges outstanding per peer, RFC
    7252 §4.7, and queues the rest up to a bound). The message was not
    sent."""


class NoRequestInterface(ConstructionRenderableError, NetworkError, RuntimeError):
    """No transport of the context can carry the request (its scheme is not
    served, or the transport is not loaded); rendered by a proxy as 5.05."""

    code = Code.PROXYING_NOT_SUPPORTED
    message = "No CoAP transport available for this request"

    def extra_help(self, hints: Mapping[str, Any] = _NO_HINTS) -> Optional[str]:
        return "more transports may be available with optional dependencies installed, or through a CoAP proxy"


class MissingRemoteError(HelpfulError):
    """A request is sent that has no destination: neither a remote nor a
    CoAP URI (a request with only a Proxy-Uri needs a proxy as its
    remote)."""

    def __init__(self, message: str = "The request has no destination (no CoAP URI and no remote)"):
        super().__init__(message)

    def extra_help(self, hints: Mapping[str, Any] = _NO_HINTS) -> Optional[str]:
        request = hints.get("request")
        if request is not None and (request.opt.proxy_uri is not None or request.opt.proxy_scheme is not None):
            uri = hints.get("original_uri")
            if uri:
                return f"the request is set up for a proxy ({uri!r} is not a CoAP URI), but no proxy was set"
            return "the request is set up for a proxy, but no proxy was set"
        return None


class ConToMulticast(ValueError, HelpfulError):
    """A confirmable message was to be sent to a multicast address, which
    RFC 7252 §8.1 forbids."""

    def __init__(self, message: str = "Confirmable messages can not be sent to a multicast address"):
        super().__init__(message)

    def extra_help(self, hints: Mapping[str, Any] = _NO_HINTS) -> Optional[str]:
        return "send to a single peer, or send the request non-confirmable (transport_tuning=aiocoap.Unreliable)"
