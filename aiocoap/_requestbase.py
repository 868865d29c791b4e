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
from typing import Any, Optional

from . import error
from .message import Message
from .numbers.codes import Code

__all__ = ["BaseRequest", "BaseUnicastRequest", "ClientObservation"]


class BaseRequest:
    """Common mechanisms of :class:`Request` and :class:`MulticastRequest`"""

    __slots__ = ()


class BaseUnicastRequest(BaseRequest):
    """Offers the ``response_raising`` and ``response_nonraising``
    alternatives to waiting for the ``response`` future, whose error states
    are presented either as an unsuccessful response (eg. 4.04) or an
    exception."""

    __slots__ = ()

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
        proxy would return) instead of raising an exception: a
        RenderableError as the response it renders to, any other failure
        (timeouts, network errors) as 5.00 Internal Server Error, as aiocoap
        0.4.x does."""
        return self._response_nonraising()

    async def _response_nonraising(self):
        try:
            return await self.response
        except error.RenderableError as e:
            try:
                return e.to_message()
            except Exception:
                return Message(code=Code.INTERNAL_SERVER_ERROR)
        except Exception:
            return Message(code=Code.INTERNAL_SERVER_ERROR)


class ClientObservation:
    """An interface to observe notification updates arriving on a request.

    It is populated with notifications and errors (including the end of the
    observation) by its Request, and offers them through callbacks and
    ``async for``.

    ``async for`` yields the notifications after the first response (which
    is the request's ``response``); the latest notification that arrived
    while nobody listened (no callback registered, no iteration running) is
    the first one it yields, so none is lost between the first response and
    the start of the loop. The loop ends when the observation is cancelled,
    or when the server refuses it (the resource is not observable; the
    first response is still the request's), as in aiocoap 0.4.x; when the
    server ends an observation it raises ObservationCancelled (after a
    successful final response, which it yields), and other errors
    (network errors, say) are raised from it as well."""

    # (An application may hold thousands of these: the containers are
    # created when first needed.)
    __slots__ = ("_request", "_callbacks", "_errbacks", "cancelled", "_on_cancel", "_latest_error", "_queues", "_unheard")

    def __init__(self, request: Any = None) -> None:
        # (kept so that the request, whose lifetime decides the
        # observation's, lives as long as the application holds this)
        self._request = request
        self._callbacks: Optional[list] = None
        self._errbacks: Optional[list] = None
        self.cancelled = False
        self._on_cancel: Optional[list] = None
        self._latest_error: Optional[BaseException] = None
        self._queues: Optional[list] = None
        # The latest notification nobody heard (see the class documentation)
        self._unheard: Optional[Message] = None

    def __repr__(self):
        state = "cancelled" if self.cancelled else (
            f"ended with {self._latest_error!r}" if self._latest_error is not None else "active"
        )
        return f"<{type(self).__name__} {state}>"

    @property
    def callbacks(self) -> list:
        """The registered callbacks (see :meth:`register_callback`)."""
        if self._callbacks is None:
            self._callbacks = []
        return self._callbacks

    @callbacks.setter
    def callbacks(self, value: list) -> None:
        self._callbacks = value

    @property
    def errbacks(self) -> list:
        """The registered errbacks (see :meth:`register_errback`)."""
        if self._errbacks is None:
            self._errbacks = []
        return self._errbacks

    @errbacks.setter
    def errbacks(self, value: list) -> None:
        self._errbacks = value

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

    def notify_from(self, request, response) -> None:
        """A notification of ``request`` (the observer interface of
        :meth:`aiocoap.protocol.Context.plain_request`)."""
        self.callback(response)

    def fail_from(self, request, exception) -> None:
        """The end of ``request``'s observation (the observer interface of
        :meth:`aiocoap.protocol.Context.plain_request`)."""
        self.error(exception)

    def callback(self, response) -> None:
        """Notify all listeners of an incoming response"""
        callbacks, queues = self._callbacks, self._queues
        if not callbacks and not queues:
            self._unheard = response
            return
        if callbacks:
            for c in callbacks:
                c(response)
        if queues:
            for q in queues:
                q.put_nowait(("response", response))

    def error(self, exception) -> None:
        """Notify registered listeners that the observation went wrong. This
        can only be called once."""
        if self._latest_error is not None:
            return
        self._latest_error = exception
        for c in self._errbacks or ():
            c(exception)
        for q in self._queues or ():
            q.put_nowait(("error", exception))
        self._callbacks = None
        self._errbacks = None

    def cancel(self) -> None:
        """Cease to generate observation or error events. This will not
        generate an error by itself."""
        if self.cancelled:
            return
        self.cancelled = True
        self._callbacks = None
        self._errbacks = None
        self._unheard = None
        for q in self._queues or ():
            q.put_nowait(("cancelled", None))
        callbacks, self._on_cancel = self._on_cancel, None
        for c in callbacks or ():
            c()
        request = self._request
        if request is not None:
            request.stop_observing()

    def on_cancel(self, callback) -> None:
        """Call ``callback()`` when the observation is cancelled (at once if
        it already was)."""
        if self.cancelled:
            callback()
        elif self._on_cancel is None:
            self._on_cancel = [callback]
        else:
            self._on_cancel.append(callback)

    def __aiter__(self):
        queue: asyncio.Queue = asyncio.Queue()
        unheard, self._unheard = self._unheard, None
        if unheard is not None:
            queue.put_nowait(("response", unheard))
        if self._latest_error is not None:
            queue.put_nowait(("error", self._latest_error))
        elif self.cancelled:
            queue.put_nowait(("cancelled", None))
        if self._queues is None:
            self._queues = []
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
                    if isinstance(value, error.NotObservable):
                        return  # (the first response is all there is)
                    if isinstance(value, error.ObservationCancelled) and self.cancelled:
                        return
                    raise value
        finally:
            queues = self._queues
            if queues is not None and queue in queues:
                queues.remove(queue)
