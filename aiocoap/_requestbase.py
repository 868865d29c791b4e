"""What the client's request objects have in common: the
``response_raising`` / ``response_nonraising`` alternatives to the
``response`` future (:class:`BaseUnicastRequest`), and the
:class:`ClientObservation` through which an observe request delivers its
notifications.

Both :mod:`aiocoap.protocol` (Request, MulticastRequest) and
:mod:`aiocoap.blockwise` (BlockwiseRequest) build on these, so they live
below both; applications find them in :mod:`aiocoap.protocol`, which
re-exports them.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from . import error
from .message import Message
from .numbers.codes import Code

__all__ = ["BaseRequest", "BaseUnicastRequest", "ClientObservation"]


class BaseRequest:
    """Common mechanisms of :class:`Request` and :class:`MulticastRequest`"""


class BaseUnicastRequest(BaseRequest):
    """Offers the ``response_raising`` and ``response_nonraising``
    alternatives to waiting for the ``response`` future, whose error states
    are presented either as an unsuccessful response (eg. 4.04) or an
    exception."""

    response: asyncio.Future

    @property
    def response_raising(self):
        """An awaitable that returns if a response comes in and is
        successful, otherwise raises generic network exception or a
        error.ResponseWrappingError for unsuccessful responses."""
        return self._response_raising()

    async def _response_raising(self):
        response = await self.response
        if not response.code.is_successful():
            raise error.ResponseWrappingError(response)
        return response

    @property
    def response_nonraising(self):
        """An awaitable that rather returns a 500ish fabricated message (as a
        proxy would return) instead of raising an exception."""
        return self._response_nonraising()

    async def _response_nonraising(self):
        try:
            return await self.response
        except error.RenderableError as e:
            return e.to_message()
        except error.RequestTimedOut:
            return Message(code=Code.GATEWAY_TIMEOUT)
        except error.Error:
            return Message(code=Code.SERVICE_UNAVAILABLE)


class ClientObservation:
    """An interface to observe notification updates arriving on a request.

    It is populated with notifications and errors (including the end of the
    observation) by its Request, and offers them through callbacks and
    ``async for``."""

    def __init__(self, request=None):
        # (kept so that the request, whose lifetime decides the
        # observation's, lives as long as the application holds this)
        self._request = request
        self.callbacks: list = []
        self.errbacks: list = []
        self.cancelled = False
        self._on_cancel: list = []
        self._latest_error: Optional[BaseException] = None
        self._queues: list = []

    def __repr__(self):
        state = "cancelled" if self.cancelled else (
            f"ended with {self._latest_error!r}" if self._latest_error is not None else "active"
        )
        return f"<{type(self).__name__} {state}>"

    def register_callback(self, callback) -> None:
        """Call the callback whenever a response to the message comes in, and
        pass the response to it."""
        if self.cancelled:
            return
        self.callbacks.append(callback)

    def register_errback(self, callback) -> None:
        """Call the callback whenever something goes wrong with the
        observation, and pass an exception to the callback. After such a
        callback is called, no more callbacks will be issued."""
        if self.cancelled:
            return
        if self._latest_error is not None:
            callback(self._latest_error)
            return
        self.errbacks.append(callback)

    def callback(self, response) -> None:
        """Notify all listeners of an incoming response"""
        for c in self.callbacks:
            c(response)
        for q in self._queues:
            q.put_nowait(("response", response))

    def error(self, exception) -> None:
        """Notify registered listeners that the observation went wrong. This
        can only be called once."""
        if self._latest_error is not None:
            return
        self._latest_error = exception
        for c in self.errbacks:
            c(exception)
        for q in self._queues:
            q.put_nowait(("error", exception))
        self.callbacks = []
        self.errbacks = []

    def cancel(self) -> None:
        """Cease to generate observation or error events. This will not
        generate an error by itself."""
        if self.cancelled:
            return
        self.cancelled = True
        self.callbacks = []
        self.errbacks = []
        for q in self._queues:
            q.put_nowait(("cancelled", None))
        callbacks, self._on_cancel = self._on_cancel, []
        for c in callbacks:
            c()

    def on_cancel(self, callback) -> None:
        """Call ``callback()`` when the observation is cancelled (at once if
        it already was)."""
        if self.cancelled:
            callback()
        else:
            self._on_cancel.append(callback)

    def __aiter__(self):
        queue: asyncio.Queue = asyncio.Queue()
        if self._latest_error is not None:
            queue.put_nowait(("error", self._latest_error))
        elif self.cancelled:
            queue.put_nowait(("cancelled", None))
        self._queues.append(queue)
        return self._iterate(queue)

    async def _iterate(self, queue):
        try:
            while True:
                kind, value = await queue.get()
                if kind == "response":
                    yield value
                elif kind == "cancelled":
                    return
                else:
                    if isinstance(value, error.ObservationCancelled) and self.cancelled:
                        return
                    raise value
        finally:
            if queue in self._queues:
                self._queues.remove(queue)
