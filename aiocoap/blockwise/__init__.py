"""Blockwise transfers (RFC 7959) with Request-Tag (RFC 9175): bodies larger
than one message, cut into blocks on the way out and reassembled on the
way in.

Two sans-I/O cores hold every protocol rule; they see messages and a
monotonic ``now`` and never touch the network or the event loop (their
modules, ``_client`` and ``_server``, do not import asyncio):

* :class:`ClientTransfer` plans the requests of one exchange (Block1
  upload, then Block2 download) and checks each response against them.
* :class:`ServerBlockwiseState` reassembles Block1 uploads, cuts large
  responses into Block2 blocks, and keeps both kinds of state bounded in
  count, bytes and time.

:class:`BlockwiseRequest` (what ``Context.request`` returns) and
:class:`BlockwiseServer` (``Context.blockwise``) are the asyncio glue;
:class:`Block1Spool` and :class:`Block2Cache` offer the server core to
resources that handle blocks themselves (aiocoap 0.4.x names). The
dependency goes one way: :mod:`aiocoap.protocol` builds on this package,
which uses the Context it is given and imports nothing from protocol.

Rules the client follows:

* A body that fits one block of the remote (``maximum_block_size_exp``,
  or ``maximum_payload_size`` for BERT) goes out as one plain request;
  anything larger is sent in Block1 blocks, starting at the smaller of the
  remote's size and an application's ``opt.block1`` size hint. Every such
  upload carries a Request-Tag of its own, so concurrent uploads never mix
  at a server; the first block announces the total size in Size1.
* The server may lower the block size in any Block1 or Block2 answer; the
  client continues at that size from the offset reached. It never raises
  the size by itself.
* A 4.13 answer with Size1 (or a smaller Block1) restarts the upload with
  blocks small enough, at most :data:`MAX_RESTARTS` times; a body larger
  than Size1 ends the exchange with that 4.13 as the response.
* A download is assembled in order. A later block with another ETag raises
  :class:`error.ResourceChanged`, a block at another offset
  :class:`error.UnexpectedBlock2`, a successful answer without Block2
  :class:`error.MissingBlock2Option`, and a Block1 answer that does not
  acknowledge what was sent :class:`error.UnexpectedBlock1Option`. An
  unsuccessful answer ends the exchange as its response.

What the server answers by itself (every other response comes from the
resource):

* 2.31 Continue, echoing the block number with M=1 and the block size the
  server prefers, for every non-final Block1 block.
* 4.00 Bad Request for a BERT size (szx 7) on a transport without BERT, a
  Block1 payload whose length contradicts its size and M bit, and a Block2
  number other than 0 next to a Block1 option.
* 4.02 Bad Option for a Block2 request starting beyond the end of the
  representation (RFC 7959 §2.2 treats an out-of-range block like any
  other unprocessable critical option). Block 0 of an empty body is valid.
* 4.08 Request Entity Incomplete for a Block1 block that does not continue
  a reassembly in progress (uploads are accepted in order only), and for a
  Block2 request beyond block 0 of a non-safe method whose response is no
  longer stored (re-running a POST to recreate it would repeat its action).
* 4.13 Request Entity Too Large with Size1 when a body (or the total size
  a client announced in Size1) exceeds ``max_body_size``.

Safe requests (GET, FETCH) may ask for any block directly: a block that is
not in the response cache is rendered afresh. Responses that get cut carry
an ETag (a hash of the body where the resource set none, on 2.05 only) so
clients notice when consecutive transfers see different representations.

The cores log nothing. The glue here logs at debug level, and at error
level (with the traceback) only for exceptions that are bugs.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Awaitable, Callable, Coroutine, Optional, Protocol

from .. import error, interfaces
from .._requestbase import BaseUnicastRequest, ClientObservation
from ..message import Message, UndecidedRemote
from ..numbers.constants import MAX_REGULAR_BLOCK_SIZE_EXP
from ..util.asyncio import Future
from ._client import MAX_RESTARTS, ClientTransfer, new_request_tag
from ._common import BERT_UNIT, BLOCK1, BLOCK2, CONTINUE, SIZE2, TOO_LARGE, remote_max_exp, single_message_limit
from ._server import DEFAULT_MAX_BODY_SIZE, RenderJob, ServerBlockwiseState, body_etag
from ._spools import Block1Spool, Block2Cache, ContinueException, IncompleteException


__all__ = [
    "BlockwiseRequest",
    "BlockwiseServer",
    "ClientTransfer",
    "ServerBlockwiseState",
    "RenderJob",
    "body_etag",
    "new_request_tag",
    "single_message_limit",
    "DEFAULT_MAX_BODY_SIZE",
    "MAX_RESTARTS",
    "BERT_UNIT",
    "Block1Spool",
    "Block2Cache",
    "ContinueException",
    "IncompleteException",
]


class _PlainRequest(Protocol):
    """What a BlockwiseRequest uses of the requests without blockwise
    handling it sends (protocol.Request; described here because blockwise
    does not import protocol)."""

    @property
    def response(self) -> Future: ...

    def stop_observing(self) -> None: ...


class _Requester(Protocol):
    """What a BlockwiseRequest uses of the Context that creates it."""

    @property
    def log(self) -> logging.Logger: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def spawn_task(self, coro: Coroutine[Any, Any, Any], name: Optional[str] = None) -> asyncio.Task[Any]: ...

    def plain_request(self, request_message: Message, observer: Any = None) -> _PlainRequest: ...

    async def find_remote_and_interface(self, message: Message) -> Any: ...


class BlockwiseServer:
    """Blockwise handling of a server Context (``Context.blockwise``).

    :meth:`render` wraps the site's render for every request of a
    resource that wants assembly; requests without block options whose
    response fits one block pass straight through. ``max_body_size`` (and
    the other limits of :class:`ServerBlockwiseState`) can be set as
    keyword arguments or changed on the object later."""

    def __init__(self, log: logging.Logger, *, max_body_size: int = DEFAULT_MAX_BODY_SIZE, **limits: Any) -> None:
        self.log = log
        self.state = ServerBlockwiseState(max_body_size=max_body_size, **limits)
        self._timer: Optional[asyncio.TimerHandle] = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state!r}>"

    @property
    def max_body_size(self) -> int:
        """The largest request body reassembled; larger ones get 4.13."""
        return self.state.max_body_size

    @max_body_size.setter
    def max_body_size(self, value: int) -> None:
        self.state.max_body_size = value

    async def render(self, request: Message, render: Callable[[Message], Awaitable[Message]]) -> Message:
        """Answer ``request`` by calling ``render`` (the site's render) on
        the reassembled request once all of its blocks are there, and cut
        the result into blocks."""
        options = request.opt
        if BLOCK1 not in options and BLOCK2 not in options and SIZE2 not in options:
            response = await render(request)
            if type(response) is not Message or len(response.payload) <= 1024 and remote_max_exp(request.remote) >= 6:
                return response
            return self._after(self.state.slice(request, response, asyncio.get_running_loop().time()))
        loop = asyncio.get_running_loop()
        job = self.state.receive(request, loop.time())
        if isinstance(job, Message):
            self._reschedule(loop)
            return job
        response = await render(job.request)
        return self._after(self.state.respond(job, response, loop.time()))

    def unsliced_limit(self, request: Message) -> int:
        """The payload length up to which :meth:`slice_response` returns
        responses to ``request`` unchanged (-1: it always has a look). Fixed
        for a request, so an observation asks once."""
        options = request.opt
        if BLOCK2 in options or SIZE2 in options:
            return -1
        return single_message_limit(request.remote)

    def slice_response(self, request: Message, response: Message) -> Message:
        """Cut ``response`` to the first block (or the block ``request``
        asks for) if it does not fit one message, and keep the rest for the
        client's follow-up requests; used for observe notifications."""
        if not self.state.needs_slicing(request, response):
            return response
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        now = loop.time() if loop is not None else 0.0
        result = self.state.slice(request, response, now)
        if loop is not None and result is not response:
            self._reschedule(loop)
        return result

    def cut_to_fit(
        self, request: Message, response: Message, fits: Callable[[Message], bool]
    ) -> Optional[Message]:
        """A smaller first message for ``response`` that ``fits(message)``,
        the rest kept for the client's Block2 follow-ups (see
        :meth:`ServerBlockwiseState.cut_to_fit`), or None."""
        loop = asyncio.get_running_loop()
        result = self.state.cut_to_fit(request, response, fits, loop.time())
        self._reschedule(loop)
        return result

    def shutdown(self) -> None:
        """Drop all state and the expiry timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.state.clear()

    def _after(self, message: Message) -> Message:
        self._reschedule(asyncio.get_running_loop())
        return message

    def _reschedule(self, loop: asyncio.AbstractEventLoop) -> None:
        wake = self.state.wake_up_at
        timer = self._timer
        if timer is not None:
            if timer.when() <= wake:
                return
            timer.cancel()
            self._timer = None
        if wake != float("inf"):
            self._timer = loop.call_at(max(wake, loop.time()), self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self.state.expire(loop.time())
        self._reschedule(loop)


class BlockwiseRequest(BaseUnicastRequest, interfaces.Request):
    """A request that sends and receives bodies of any size, using
    blockwise transfer (RFC 7959) where they do not fit one message.

    ``response`` is a future of the whole response, with ``request`` set
    to the application's request. For an observation, ``observation``
    delivers whole notifications: a notification that carries the first
    of several blocks is completed (by GET/FETCH requests for the further
    blocks) before it is passed on. Cancelling ``response`` stops the
    transfer."""

    # (thousands of these may be kept, one per observation)
    __slots__ = (
        "protocol", "log", "app_request", "response", "_task", "_sub", "_notification_task", "_relayed",
        "_held_error", "_mtype", "_target", "_progress_callbacks", "_size_hint", "observation", "_observation",
        "__weakref__",
    )

    def __init__(self, protocol: _Requester, app_request: Message) -> None:
        self.protocol = protocol
        self.log = protocol.log
        self.app_request = app_request
        self.response = Future(loop=protocol.loop)
        self._task: Optional[asyncio.Task[None]] = None
        self._sub: Optional[_PlainRequest] = None
        self._notification_task: Optional[asyncio.Task[None]] = None
        # The plain request whose notifications are relayed here (it reports
        # to a weak proxy of this object, see _send)
        self._relayed: Optional[_PlainRequest] = None
        self._held_error: Optional[BaseException] = None
        self._mtype = app_request.mtype
        # Later messages of the transfer go to the same target; for an IP
        # literal, leaving them unrouted lets the Context use its route
        # cache instead of routing each block (a task per block) again.
        target = app_request.remote
        self._target = target if isinstance(target, UndecidedRemote) and target.is_ip_literal else None
        self._progress_callbacks: Optional[list[Callable[[int, Optional[int]], None]]] = None
        # A smaller block size the application asked for on the remote
        # (``request.remote.maximum_block_size_exp = 4``, also on the
        # UndecidedRemote of a request not sent yet)
        hint = getattr(target, "maximum_block_size_exp", None)
        self._size_hint: Optional[int] = hint if hint is not None and hint < MAX_REGULAR_BLOCK_SIZE_EXP else None
        self.observation: Optional[ClientObservation] = None
        if app_request.opt.observe == 0:
            # (the relaying methods run only when there is an observation)
            self._observation = self.observation = ClientObservation(self)
        # (at once: a request cancelled before it went out is not sent)
        self.response.on_cancel = self._response_cancellation_handler

        options = app_request.opt
        if (
            BLOCK1 not in options
            and BLOCK2 not in options
            and self._size_hint is None
            and len(app_request.payload) <= _known_limit(app_request)
        ):
            sub = self._send(app_request)
            if self.observation is None:
                # (at once: the application's task wakes an iteration sooner)
                sub.response.call_on_outcome(self._first_response)
            else:
                # (after the plain request has passed on how the observation
                # ended, which _first_response then takes into account)
                sub.response.add_done_callback(self._first_response)
        else:
            self._task = protocol.spawn_task(self._run(None), name="aiocoap blockwise request")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.app_request!r}>"

    @property
    def request(self) -> Message:
        return self.app_request

    def _plain_request(self, message: Message, observer: Any = None) -> _PlainRequest:
        if self._target is not None and message is not self.app_request:
            message.remote = self._target
        return self.protocol.plain_request(message, observer)

    def _send(self, message: Message) -> _PlainRequest:
        if self.observation is not None and message.opt.observe == 0:
            # Its notifications come here, through a weak proxy: the plain
            # request (kept by this one) must not keep this one alive, or an
            # observation the application dropped would not end.
            sub = self._sub = self._relayed = self._plain_request(message, weakref.proxy(self))
            self._held_error = None
        else:
            sub = self._sub = self._plain_request(message)
        return sub

    def _first_response(self, future: asyncio.Future[Message]) -> None:
        if self.response.done() or future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.response.set_exception(exc)
            if self.observation is not None:
                self._end_observation(self._held_error or exc)
            return
        response = future.result()
        block2 = response.opt.block2
        code = response.code
        if (block2 is None or not block2.more and block2.block_number == 0) and code != TOO_LARGE and code != CONTINUE:
            self._set_response(response)
            return
        self._task = self.protocol.spawn_task(self._run(response), name="aiocoap blockwise request")

    async def _run(self, first_response: Optional[Message]) -> None:
        request = self.app_request
        try:
            message: Optional[Message]
            if first_response is None:
                if _undecided(request.remote):
                    await self.protocol.find_remote_and_interface(request)
                transfer = self._transfer()
                message = transfer.first_request()
            else:
                transfer = self._transfer()
                transfer.first_request()
                message = transfer.response_received(first_response)
                if message is not None and message.opt.block2 is not None:
                    self._report_progress(transfer)
            while message is not None:
                response = await self._send(message).response
                message = transfer.response_received(response)
                if message is not None and message.opt.block2 is not None:
                    self._report_progress(transfer)
            final = transfer.result
            final.request = request
            self._set_response(final)
        except asyncio.CancelledError:
            if not self.response.done():
                self.response.set_exception(error.LibraryShutdown())
            raise
        except Exception as e:
            if not isinstance(e, error.Error):
                self.log.error("Blockwise transfer of %r failed", request, exc_info=e)
            if not self.response.done():
                self.response.set_exception(e)
            if self.observation is not None:
                self.observation.error(e)
                if self._relayed is not None:
                    self._relayed.stop_observing()

    def on_progress(self, callback: Callable[[int, Optional[int]], None]) -> None:
        """Call ``callback(received, total)`` whenever another block of a
        blockwise response arrived (``total`` is the size the server
        announced with Size2, or None). For progress displays."""
        if self._progress_callbacks is None:
            self._progress_callbacks = []
        self._progress_callbacks.append(callback)

    def _report_progress(self, transfer: ClientTransfer) -> None:
        for callback in self._progress_callbacks or ():
            try:
                callback(transfer.received_size, transfer.expected_size)
            except Exception:
                self.log.exception("Error in a progress callback")

    def _set_response(self, response: Message) -> None:
        if not self.response.done():
            self.response.set_result(response)
        held, self._held_error = self._held_error, None
        if held is not None:
            self._end_observation(held)

    def _transfer(self) -> ClientTransfer:
        remote = self.app_request.remote
        max_exp = remote_max_exp(remote)
        hint = self._size_hint
        return ClientTransfer(
            self.app_request,
            max_exp=max_exp if hint is None else min(max_exp, hint),
            max_payload=getattr(remote, "maximum_payload_size", BERT_UNIT),
            mtype=self._mtype,
            block2_exp=hint,
        )

    def _response_cancellation_handler(self, future: asyncio.Future[Message]) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.observation is None and self._sub is not None:
            self._sub.response.cancel()

    # --- observations ------------------------------------------------------------

    def fail_from(self, sub: _PlainRequest, exception: BaseException) -> None:
        """The observation of the plain request ``sub`` ended (the observer
        interface of Context.plain_request)."""
        if self._relayed is not sub:
            return
        if self.response.done():
            self._end_observation(exception)
        else:
            # The response that ended it (4.13, a first block) may still
            # lead to a restart or be completed; decide when it is known.
            self._held_error = exception

    def notify_from(self, sub: _PlainRequest, message: Message) -> None:
        """A notification of the plain request ``sub`` (the observer
        interface of Context.plain_request)."""
        if self._relayed is sub:
            self._notification(message)

    def _notification(self, message: Message) -> None:
        if self._notification_task is not None:
            # A newer state supersedes the one still being completed.
            self._notification_task.cancel()
            self._notification_task = None
        if BLOCK2 not in message.opt:
            message.request = self.app_request
            self._observation.callback(message)
            return
        block2 = message.opt.block2
        if block2 is None or not block2.more and block2.block_number == 0:
            message.request = self.app_request
            self._observation.callback(message)
            return
        self._notification_task = self.protocol.spawn_task(
            self._complete_notification(message), name="aiocoap blockwise notification"
        )

    async def _complete_notification(self, first: Message) -> None:
        request = self.app_request
        transfer = self._transfer()
        try:
            message: Optional[Message] = transfer.continue_download(first)
            while message is not None:
                response = await self._plain_request(message).response
                message = transfer.response_received(response)
        except error.ResourceChanged:
            self.log.debug("Resource changed while completing a notification; waiting for the next one")
            return
        except Exception as e:
            if not isinstance(e, error.Error):
                self.log.error("Completing a notification of %r failed", request, exc_info=e)
            self._observation.error(e)
            if self._relayed is not None:
                self._relayed.stop_observing()
            return
        finally:
            if self._notification_task is asyncio.current_task():
                self._notification_task = None
        final = transfer.result
        final.request = request
        self._observation.callback(final)

    def _end_observation(self, exception: BaseException) -> None:
        if self._notification_task is not None:
            self._notification_task.cancel()
            self._notification_task = None
        self._observation.error(exception)

    def stop_observing(self) -> None:
        """The observation was cancelled: stop completing notifications and
        cancel the observation at the server."""
        if self._notification_task is not None:
            self._notification_task.cancel()
            self._notification_task = None
        if self._relayed is not None:
            self._relayed.stop_observing()


def _known_limit(message: Message) -> int:
    """The largest body that surely goes as one message to the message's
    destination (1024 bytes while the remote is not resolved yet)."""
    remote = message.remote
    return 1024 if _undecided(remote) else single_message_limit(remote)


def _undecided(remote: object) -> bool:
    """Whether a message with this remote still has to be routed."""
    return remote is None or isinstance(remote, UndecidedRemote)
