"""The aiocoap package is a library that implements CoAP, the Constrained
Application Protocol (RFC 7252 and its companions), on asyncio.

This root module re-exports the most commonly used classes: :class:`Context`,
:class:`Message` and the numeric constants of :mod:`aiocoap.numbers`
(``GET``, ``CONTENT``, ``CON``, ...), so ``from aiocoap import *`` gives what
a typical application needs."""

from .numbers import *  # noqa: F401,F403
from .numbers import __all__ as _numbers_all
from .message import Message, NoResponse
from .protocol import Context

# Applications written for aiocoap reach these as attributes of the package
# after a plain ``import aiocoap`` (aiocoap.interfaces.Resource, ...).
from . import credentials, defaults, error, interfaces, protocol  # noqa: F401,E402

__all__ = list(_numbers_all) + ["Message", "NoResponse", "Context"]
