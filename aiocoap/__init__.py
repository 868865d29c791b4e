"""The aiocoap package is a library that implements CoAP, the Constrained
Application Protocol (RFC 7252 and its companions), on asyncio.

This root module re-exports the most commonly used classes: :class:`Context`,
:class:`Message` and the numeric constants of :mod:`aiocoap.numbers`
(``GET``, ``CONTENT``, ``CON``, ...), so ``from aiocoap import *`` gives what
a typical application needs."""

from .numbers import *  # noqa: F401,F403
from .numbers import __all__ as _numbers_all
from .message import Message, NoResponse

__all__ = list(_numbers_all) + ["Message", "NoResponse", "Context"]


def __getattr__(name):
    # Context pulls in the whole protocol stack; load it on first use so
    # that codec-only users (and the test suite's codec tests) stay light.
    if name == "Context":
        from .protocol import Context

        globals()["Context"] = Context
        return Context
    raise AttributeError(f"module 'aiocoap' has no attribute {name!r}")
