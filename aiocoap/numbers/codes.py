"""Values of the CoAP Code field.

The members correspond to the IANA "CoRE Parameters" sub-registries "CoAP
Method Codes", "CoAP Response Codes" and "CoAP Signaling Codes" (RFC 8323).
Unknown codes are still usable: ``Code(0x5f)`` works and prints its number.
"""

from __future__ import annotations

from ..util import ExtensibleIntEnum

__all__ = ["Code"]  # (and the constants at the end)

# Printable names that title-casing the constant name would get wrong.
_PRINTABLE = {7: "iPATCH"}

# The ranges of the code classes (RFC 7252 §12.1, RFC 8323 §11.1), as
# half-open intervals of the code's integer value. The Code methods below
# test them; code on a per-message path compares plain ints against these
# names directly (``REQUEST_START <= code < REQUEST_END``), which saves the
# method call.
REQUEST_START, REQUEST_END = 1, 32  # 0.01 .. 0.31
RESPONSE_START, RESPONSE_END = 64, 192  # 2.00 .. 5.31
SUCCESSFUL_END = 96  # 2.00 .. 2.31 (starting at RESPONSE_START)
SIGNALING_START = 224  # 7.00 .. 7.31


class Code(ExtensibleIntEnum):
    """Value for the CoAP "Code" field.

    As the number range for the code values is separated, the rough meaning
    of a code can be determined using :meth:`is_request`, :meth:`is_response`,
    :meth:`is_signalling` and :meth:`is_successful`.

    >>> Code.CONTENT
    <Successful Response Code 69 "2.05 Content">
    >>> Code.CONTENT.class_
    2
    >>> Code.BAD_GATEWAY
    <Response Code 162 "5.02 Bad Gateway">
    >>> Code.BAD_GATEWAY.class_
    5
    >>> Code(0x45) is Code.CONTENT
    True
    """

    EMPTY = 0
    GET = 1
    POST = 2
    PUT = 3
    DELETE = 4
    FETCH = 5
    PATCH = 6
    iPATCH = 7
    CREATED = 65
    DELETED = 66
    VALID = 67
    CHANGED = 68
    CONTENT = 69
    CONTINUE = 95
    BAD_REQUEST = 128
    UNAUTHORIZED = 129
    BAD_OPTION = 130
    FORBIDDEN = 131
    NOT_FOUND = 132
    METHOD_NOT_ALLOWED = 133
    NOT_ACCEPTABLE = 134
    REQUEST_ENTITY_INCOMPLETE = 136
    CONFLICT = 137
    PRECONDITION_FAILED = 140
    REQUEST_ENTITY_TOO_LARGE = 141
    UNSUPPORTED_MEDIA_TYPE = 143
    UNSUPPORTED_CONTENT_FORMAT = 143
    UNPROCESSABLE_ENTITY = 150
    TOO_MANY_REQUESTS = 157
    INTERNAL_SERVER_ERROR = 160
    NOT_IMPLEMENTED = 161
    BAD_GATEWAY = 162
    SERVICE_UNAVAILABLE = 163
    GATEWAY_TIMEOUT = 164
    PROXYING_NOT_SUPPORTED = 165
    HOP_LIMIT_REACHED = 168
    CSM = 225
    PING = 226
    PONG = 227
    RELEASE = 228
    ABORT = 229

    def is_request(self) -> bool:
        """True if the code is in the request code range"""
        return REQUEST_START <= self < REQUEST_END

    def is_response(self) -> bool:
        """True if the code is in the response code range"""
        return RESPONSE_START <= self < RESPONSE_END

    def is_signalling(self) -> bool:
        """True if the code is in the signaling (7.xx, RFC 8323) range"""
        return self >= SIGNALING_START

    def is_successful(self) -> bool:
        """True if the code is in the successful subrange of the response code range"""
        return RESPONSE_START <= self < SUCCESSFUL_END

    def can_have_payload(self) -> bool:
        """True if a message with that code can carry a payload. This is not
        checked for strictly, but used as an indicator."""
        return self.is_response() or self in (
            Code.POST, Code.PUT, Code.FETCH, Code.PATCH, Code.iPATCH,
        )

    @property
    def class_(self) -> int:
        """The class of a code (2 for successful responses, 4 for client
        errors, ...)."""
        return self >> 5

    @property
    def dotted(self) -> str:
        """The numeric value in three-decimal-digits (c.dd) form"""
        return f"{self >> 5}.{self & 0x1F:02d}"

    @property
    def name_printable(self) -> str:
        """The name of the code in human-readable form"""
        if self._name is None:
            return "Unknown Request" if self.is_request() else "Unknown"
        special = _PRINTABLE.get(int(self))
        if special is not None:
            return special
        return self._name.replace("_", " ").title()

    def __str__(self) -> str:
        if self._name is not None and (self.is_request() or self == 0):
            return self._name
        return f"{self.dotted} {self.name_printable}"

    def __repr__(self) -> str:
        if self.is_request():
            kind = "Request Code"
        elif self.is_successful():
            kind = "Successful Response Code"
        elif self.is_response():
            kind = "Response Code"
        else:
            kind = "Code"
        return f'<{kind} {int(self)} "{self}">'


# Every code is also a module-level constant (``codes.GET``; through
# :mod:`aiocoap.numbers` and the package root also ``aiocoap.GET``). Spelled
# out so that static checkers see them.
EMPTY = Code.EMPTY
GET = Code.GET
POST = Code.POST
PUT = Code.PUT
DELETE = Code.DELETE
FETCH = Code.FETCH
PATCH = Code.PATCH
iPATCH = Code.iPATCH
CREATED = Code.CREATED
DELETED = Code.DELETED
VALID = Code.VALID
CHANGED = Code.CHANGED
CONTENT = Code.CONTENT
CONTINUE = Code.CONTINUE
BAD_REQUEST = Code.BAD_REQUEST
UNAUTHORIZED = Code.UNAUTHORIZED
BAD_OPTION = Code.BAD_OPTION
FORBIDDEN = Code.FORBIDDEN
NOT_FOUND = Code.NOT_FOUND
METHOD_NOT_ALLOWED = Code.METHOD_NOT_ALLOWED
NOT_ACCEPTABLE = Code.NOT_ACCEPTABLE
REQUEST_ENTITY_INCOMPLETE = Code.REQUEST_ENTITY_INCOMPLETE
CONFLICT = Code.CONFLICT
PRECONDITION_FAILED = Code.PRECONDITION_FAILED
REQUEST_ENTITY_TOO_LARGE = Code.REQUEST_ENTITY_TOO_LARGE
UNSUPPORTED_MEDIA_TYPE = Code.UNSUPPORTED_MEDIA_TYPE
UNSUPPORTED_CONTENT_FORMAT = Code.UNSUPPORTED_CONTENT_FORMAT
UNPROCESSABLE_ENTITY = Code.UNPROCESSABLE_ENTITY
TOO_MANY_REQUESTS = Code.TOO_MANY_REQUESTS
INTERNAL_SERVER_ERROR = Code.INTERNAL_SERVER_ERROR
NOT_IMPLEMENTED = Code.NOT_IMPLEMENTED
BAD_GATEWAY = Code.BAD_GATEWAY
SERVICE_UNAVAILABLE = Code.SERVICE_UNAVAILABLE
GATEWAY_TIMEOUT = Code.GATEWAY_TIMEOUT
PROXYING_NOT_SUPPORTED = Code.PROXYING_NOT_SUPPORTED
HOP_LIMIT_REACHED = Code.HOP_LIMIT_REACHED
CSM = Code.CSM
PING = Code.PING
PONG = Code.PONG
RELEASE = Code.RELEASE
ABORT = Code.ABORT

__all__ += [
    "EMPTY", "GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH", "CREATED",
    "DELETED", "VALID", "CHANGED", "CONTENT", "CONTINUE", "BAD_REQUEST", "UNAUTHORIZED",
    "BAD_OPTION", "FORBIDDEN", "NOT_FOUND", "METHOD_NOT_ALLOWED", "NOT_ACCEPTABLE",
    "REQUEST_ENTITY_INCOMPLETE", "CONFLICT", "PRECONDITION_FAILED",
    "REQUEST_ENTITY_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE", "UNSUPPORTED_CONTENT_FORMAT",
    "UNPROCESSABLE_ENTITY", "TOO_MANY_REQUESTS", "INTERNAL_SERVER_ERROR",
    "NOT_IMPLEMENTED", "BAD_GATEWAY", "SERVICE_UNAVAILABLE", "GATEWAY_TIMEOUT",
    "PROXYING_NOT_SUPPORTED", "HOP_LIMIT_REACHED", "CSM", "PING", "PONG", "RELEASE",
    "ABORT",
]
