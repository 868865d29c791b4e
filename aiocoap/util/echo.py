"""The client's side of an Echo challenge (RFC 9175 §2.3): a server that
wants a request proven fresh, or its sender proven reachable, answers 4.01
Unauthorized with an Echo option, and the client sends the request again
carrying that value. One rule for the two places that do this: the token
layer (a plain server's amplification limit, :mod:`aiocoap.amplification`)
and the OSCORE transport (a server recovering its replay window, RFC 8613
Appendix B.1.2), each at most once per request.

>>> from aiocoap import Message, GET, UNAUTHORIZED
>>> request = Message(code=GET, uri_path=["large"])
>>> again = repeat_with_echo(request, Message(code=UNAUTHORIZED, echo=b"\\x01\\x02"))
>>> again.opt.echo, again.opt.uri_path
(b'\\x01\\x02', ('large',))
>>> repeat_with_echo(request, Message(code=UNAUTHORIZED)) is None
True
"""

from __future__ import annotations

from typing import Any, Optional

from ..message import Message
from ..numbers.codes import Code

__all__ = ["echo_challenge", "repeat_with_echo"]

_UNAUTHORIZED = Code.UNAUTHORIZED


def echo_challenge(response: Message) -> Optional[bytes]:
    """The Echo value ``response`` challenges its request with (it is a
    4.01 with an Echo option), or None."""
    if response.code != _UNAUTHORIZED:
        return None
    return response.opt.echo


def repeat_with_echo(request: Message, response: Message, **changes: Any) -> Optional[Message]:
    """If ``response`` is an Echo challenge (see :func:`echo_challenge`),
    the request to send instead of ``request``: a copy carrying the Echo
    value (and ``changes``, as :meth:`Message.copy` takes them); else None.
    The caller sends it at most once per request: a second challenge is the
    response."""
    echo = echo_challenge(response)
    if echo is None:
        return None
    return request.copy(echo=echo, **changes)
