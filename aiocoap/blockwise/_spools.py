"""Blockwise helpers for resources that handle blocks themselves (their
``needs_blockwise_assembly`` returns False), under the names aiocoap 0.4.x
gives them: :class:`Block1Spool` reassembles uploads, :class:`Block2Cache`
keeps rendered responses for the follow-up block requests.

Both are thin faces of :class:`ServerBlockwiseState`, so they follow its
rules and limits (bounded count, bytes and lifetime of the state; see
:mod:`aiocoap.blockwise`). Time is read from :func:`time.monotonic`.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, NoReturn, Optional

from .. import error
from ..message import Message
from ..numbers.codes import Code
from ._common import BLOCK1, BlockwiseTuple
from ._server import RenderJob, ServerBlockwiseState

__all__ = ["Block1Spool", "Block2Cache", "ContinueException", "IncompleteException"]


class ContinueException(error.ConstructionRenderableError):
    """Raised (by :meth:`Block1Spool.feed_and_take`) for a block of an
    upload that is not the last one: not an error of the exchange, but the
    end of processing this request, which is answered with 2.31 Continue
    echoing the block (``block1``, a BlockwiseTuple; its size exponent may
    be lowered to the one the server prefers)."""

    code = Code.CONTINUE

    def __init__(self, block1: Optional[BlockwiseTuple]) -> None:
        super().__init__()
        self.block1 = block1

    def to_message(self) -> Message:
        message = super().to_message()
        message.opt.block1 = self.block1
        return message


class IncompleteException(error.ConstructionRenderableError):
    """4.08 Request Entity Incomplete: a block arrived that does not
    continue an upload in progress (it was lost, expired, or came out of
    order), or a later block of a response that is not stored any more."""

    code = Code.REQUEST_ENTITY_INCOMPLETE


class _Answer(error.RenderableError):
    """A response the blockwise state gave instead of a request to render
    (4.00, 4.13 with Size1, ...), raised so that it is sent as it is."""

    def __init__(self, response: Message):
        super().__init__(f"{response.code}")
        self.response = response

    def to_message(self) -> Message:
        return self.response


def _raise_for(answer: Message) -> NoReturn:
    code = answer.code
    if code == Code.CONTINUE:
        raise ContinueException(answer.opt.block1)
    if code == Code.REQUEST_ENTITY_INCOMPLETE:
        raise IncompleteException(answer.payload.decode("utf-8", "replace"))
    raise _Answer(answer)


class Block1Spool:
    """Reassembles the Block1 uploads of a resource.

    Use it in the resource's render method: ``request =
    self.spool.feed_and_take(request)`` gives the whole request once its
    last block arrived (still carrying that block's Block1 option, which
    the response is to echo), and raises :class:`ContinueException` for
    the earlier blocks and :class:`IncompleteException` (or another
    renderable error, like 4.13 for bodies beyond ``max_body_size``) for
    blocks that do not fit, which the library renders into the answers."""

    def __init__(self, **limits: Any) -> None:
        self._state = ServerBlockwiseState(**limits)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state!r}>"

    def feed_and_take(self, req: Message) -> Message:
        """Add a request block to its upload; see the class documentation.
        A request without Block1 is returned as it is."""
        block1 = req.opt.block1
        if block1 is None:
            return req
        result = self._state.receive(req, time.monotonic())
        if not isinstance(result, RenderJob):
            _raise_for(result)
        assembled = result.request
        assembled.opt.block1 = result.block1
        if req.opt.block2 is not None:
            assembled.opt.block2 = req.opt.block2
        return assembled


class Block2Cache:
    """Keeps the responses of a resource that are too large for one
    message, so that the requests for their further blocks are answered
    from the stored representation instead of rendering again (for
    resources whose rendering is expensive, not idempotent, or changes).

    ``await cache.extract_or_insert(request, render)`` returns the block
    the request asks for (block 0 when it asks for none): from the cache
    for later blocks, otherwise by awaiting ``render()`` (a function
    returning an awaitable of the whole response), storing the response if
    it needs more than one block. A later block of a non-safe request whose
    response is not stored any more comes back as 4.08."""

    def __init__(self, **limits: Any) -> None:
        self._state = ServerBlockwiseState(**limits)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state!r}>"

    async def extract_or_insert(self, req: Message, response_builder: Callable[[], Awaitable[Message]]) -> Message:
        request = req
        if BLOCK1 in req.opt:
            # (the upload is complete when this is called: only the answer
            # is sliced here)
            request = req.copy()
            request.opt.block1 = None
        job = self._state.receive(request, time.monotonic())
        if not isinstance(job, RenderJob):
            return job
        response = await response_builder()
        return self._state.respond(job, response, time.monotonic())
