"""Exceptions raised by OSCORE processing.

Hierarchy::

    ValueError
    ├── NotAProtectedMessage     no OSCORE option: process the message as plain CoAP
    ├── ContextUnavailable       the context can not be used (locked, exhausted, unwritable)
    └── ProtectionInvalid        verification failed        -> 4.00 "Decryption failed"
        ├── DecodeError          OSCORE option or plaintext malformed -> 4.02 Bad Option
        ├── ReplayError          sequence number seen before -> 4.01 "Replay detected"
        └── ReplayErrorWithEcho  replay window lost (Appendix B.1.2): answer with
                                 the protected 4.01 + Echo of :meth:`to_message`

The arrows give the unprotected responses RFC 8613 §8.2 prescribes for a
server; a site wrapper maps the exceptions to them. Only
:class:`ReplayErrorWithEcho` is a :class:`aiocoap.error.RenderableError`,
because its response has to be protected with the context it carries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import error
from ..numbers.codes import Code

if TYPE_CHECKING:
    from ..message import Message

__all__ = [
    "NotAProtectedMessage",
    "ProtectionInvalid",
    "DecodeError",
    "ReplayError",
    "ReplayErrorWithEcho",
    "ContextUnavailable",
]


class NotAProtectedMessage(ValueError):
    """The message has no OSCORE option, so there is nothing to verify.

    :attr:`plain_message` is the message itself, for callers that go on to
    handle it as unprotected CoAP."""

    def __init__(self, message: str, plain_message: "Message"):
        super().__init__(message)
        self.plain_message = plain_message


class ProtectionInvalid(ValueError):
    """An OSCORE-protected message did not pass verification."""


class DecodeError(ProtectionInvalid):
    """Verification failed on malformed data: the OSCORE option value or the
    decrypted plaintext can not be parsed."""


class ReplayError(ProtectionInvalid):
    """Verification failed because the message's sequence number was seen
    before, or is too old to be told apart from one seen before."""


class ReplayErrorWithEcho(ProtectionInvalid, error.RenderableError):
    """An authentic request arrived while the replay window is unknown (after
    lost state), so it may be a replay and is not processed.

    The exception holds what the answer needs: ``secctx`` and ``request_id``
    to protect it with, and the ``echo`` value to challenge the client with.
    Protect :meth:`to_message` with ``secctx.protect(message, request_id)``
    and send it; a client that repeats its request carrying this Echo value
    proves the request fresh, which sets the replay window up again (RFC 8613
    Appendix B.1.2)."""

    def __init__(self, secctx: Any, request_id: Any, echo: bytes):
        super().__init__("Replay window uninitialized; Echo recovery needed")
        self.secctx = secctx
        self.request_id = request_id
        self.echo = echo

    def to_message(self) -> "Message":
        """The unprotected 4.01 Unauthorized answer carrying the Echo option;
        it still has to be protected before it is sent."""
        from ..message import Message

        return Message(code=Code.UNAUTHORIZED, echo=self.echo)


class ContextUnavailable(ValueError):
    """The security context can not be used now, or not any more: its
    sequence numbers are used up, it was shut down, another program holds
    it, or its state can not be written."""
