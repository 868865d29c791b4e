"""The client side of a blockwise exchange, without I/O: which requests to
send (Block1 upload, then Block2 download) and whether each answer fits
them. The rules are listed in the documentation of :mod:`aiocoap.blockwise`."""

from __future__ import annotations

import itertools
import secrets
from typing import Any, Callable, Optional

from .. import error
from ..message import Message
from ..numbers.codes import Code
from ..numbers.types import Type
from ._common import (
    BERT_UNIT, CONTINUE, TOO_LARGE, BlockwiseTuple,
    block_start, block_unit, successful,
)

__all__ = ["ClientTransfer", "new_request_tag", "MAX_RESTARTS"]

MAX_RESTARTS = 3
"""How often a client starts an upload again with smaller blocks after 4.13."""

_UNSET: Any = object()  # (Any: it stands in for a parameter of any type)


def _new_request_tag_counter() -> Callable[[], bytes]:
    # A counter from a random start: tags of one process never repeat
    # within 2**32 uploads, and a restarted client does not pick up where
    # an earlier incarnation left stale state on a server.
    counter = itertools.count(secrets.randbits(32))
    return lambda: (next(counter) & 0xFFFFFFFF).to_bytes(4, "big")


new_request_tag = _new_request_tag_counter()
"""Return a fresh Request-Tag value (4 bytes) for a blockwise upload."""


DEFAULT_MAX_RESPONSE_SIZE = 64 * 1024 * 1024
"""The largest response body a client assembles (a server could otherwise
make it buffer up to 2**20 blocks of BERT size)."""


class ClientTransfer:
    """The requests and checks of one blockwise exchange, as the client
    sees it (sans-I/O).

    Call :meth:`first_request` for the message to send, then feed every
    answer to :meth:`response_received`, which returns the next message to
    send, or None once :attr:`response` holds the whole (assembled)
    response. Protocol violations of the server raise the
    :mod:`aiocoap.error` exceptions listed in the module documentation.

    ``max_exp`` and ``max_payload`` describe the remote (its
    ``maximum_block_size_exp`` and ``maximum_payload_size``);
    ``block2_exp`` is the largest size exponent the application wants for
    the response's blocks: the request that completes the body asks for it
    with Block2 (early negotiation, RFC 7959 §2.4), and later blocks are
    never asked for larger;
    ``request_tag`` makes the Request-Tag values of uploads;
    ``max_response_size`` bounds the assembled response body
    (error.ResponseTooLarge beyond it)."""

    def __init__(
        self,
        request: Message,
        *,
        max_exp: int = 6,
        max_payload: int = BERT_UNIT,
        request_tag: Callable[[], bytes] = new_request_tag,
        mtype: Optional[Type] = _UNSET,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        block2_exp: Optional[int] = None,
    ) -> None:
        self.request = request
        self.max_response_size = max_response_size
        self.expected_size: Optional[int] = None
        """The response size the server announced (Size2), if it did."""
        # Sending fills in type, MID and token of the message sent first;
        # later messages are derived with the type the application gave
        # (``mtype``, when the request was sent before this was created).
        self._mtype = request.mtype if mtype is _UNSET else mtype
        self._new_tag = request_tag
        self._own_tag = not request.opt.request_tag
        self._tag: Optional[bytes] = None
        self._bert_chunk = max(BERT_UNIT, max_payload - max_payload % BERT_UNIT)
        szx = 7 if max_exp >= 7 else max(0, max_exp)
        hint = request.opt.block1
        if hint is not None:
            szx = min(szx, hint.size_exponent)
        self._szx1 = szx
        self._offset = 0
        # Block1 option and payload length of the last block sent
        self._sent: tuple[BlockwiseTuple, int] = (BlockwiseTuple(0, False, 0), 0)
        self._blocked_upload = False
        self._template1: Optional[Message] = None  # for non-final Block1 requests
        self._template2: Optional[Message] = None  # for Block2 follow-ups
        self._restarts = 0
        self._phase = "new"
        hint2 = request.opt.block2
        self._expected2 = block_start(hint2) if hint2 is not None else 0
        self._first = request  # the first response block, once there is one
        self._body2 = bytearray()
        self._etag: Optional[bytes] = None
        self._block2_exp = block2_exp
        self._szx2 = 6 if block2_exp is None else min(6, block2_exp)
        self.response: Optional[Message] = None
        """The complete response, once :meth:`response_received` returned None."""

    @property
    def result(self) -> Message:
        """:attr:`response`, for callers that know the exchange is complete."""
        if self.response is None:
            raise RuntimeError("the exchange is not complete")
        return self.response

    def __repr__(self) -> str:
        return f"<{type(self).__name__} in phase {self._phase!r} at offset {self._offset}>"

    # --- building requests ------------------------------------------------

    def _chunk(self) -> int:
        return self._bert_chunk if self._szx1 == 7 else 1 << (self._szx1 + 4)

    def _derive(self, payload: bytes) -> Message:
        msg = self.request.copy()
        msg.mid = None
        msg.token = b""
        msg.mtype = self._mtype
        msg.payload = payload
        if self._tag is not None:
            msg.opt.request_tag = (self._tag,)
        return msg

    def _request_tags(self) -> tuple[bytes, ...]:
        return (self._tag,) if self._tag is not None else self.request.opt.request_tag

    def _wants_block2(self) -> bool:
        """Whether the request completing the body asks for small response
        blocks (the application's hint, where it gave no Block2 itself)."""
        return self._block2_exp is not None and self._block2_exp < 6 and self.request.opt.block2 is None

    @property
    def received_size(self) -> int:
        """How many bytes of a blockwise response have arrived so far."""
        return len(self._body2)

    def first_request(self) -> Message:
        """The message to send first: the application's request itself when
        its body fits one message and it carries no size hint."""
        body = self.request.payload
        if len(body) <= self._chunk():
            self._phase = "single"
            wants_block2 = self._wants_block2()
            if self.request.opt.block1 is None and not wants_block2:
                return self.request
            msg = self._derive(body)
            msg.opt.block1 = None
            if wants_block2:
                msg.opt.block2 = (0, False, self._szx2)
            return msg
        self._phase = "block1"
        return self._block1_request()

    def _block1_request(self) -> Message:
        body = self.request.payload
        szx = self._szx1
        offset = self._offset
        payload = body[offset : offset + self._chunk()]
        more = offset + len(payload) < len(body)
        if self._tag is None and self._own_tag:
            self._tag = self._new_tag()
        if more:
            template = self._template1
            if template is None or template.opt.request_tag != self._request_tags():
                template = self._template1 = self._derive(b"")
                # Observation and response size negotiation belong to the
                # request that completes the body.
                template.opt.observe = None
                template.opt.block2 = None
            msg = template.copy()
            msg.payload = payload
        else:
            msg = self._derive(payload)
            if self._wants_block2():
                msg.opt.block2 = (0, False, self._szx2)
        block = BlockwiseTuple(offset // block_unit(szx), more, szx)
        msg.opt.block1 = block
        if offset == 0:
            msg.opt.size1 = len(body)
        self._sent = (block, len(payload))
        self._blocked_upload = True
        return msg

    def _block2_request(self) -> Message:
        offset = self._expected2 + len(self._body2)
        szx = self._szx2
        request = self.request
        # FETCH bodies select the representation: repeat them, unless they
        # went blockwise (the server has them under the Request-Tag then).
        template = self._template2
        if template is None:
            repeat = request.code == Code.FETCH and not self._blocked_upload
            template = self._template2 = self._derive(request.payload if repeat else b"")
            opts = template.opt
            opts.block1 = None
            opts.size1 = None
            opts.observe = None
        msg = template.copy()
        msg.opt.block2 = BlockwiseTuple(offset // block_unit(szx), False, szx)
        return msg

    # --- processing responses -----------------------------------------------

    def response_received(self, response: Message) -> Optional[Message]:
        """Check ``response`` and return the next message to send, or None
        when the exchange is complete (see :attr:`response`)."""
        phase = self._phase
        if phase == "block2":
            return self._next_block2(response)
        if phase in ("single", "block1"):
            return self._upload_answered(response)
        raise RuntimeError(f"response_received in phase {phase!r}")

    def _upload_answered(self, response: Message) -> Optional[Message]:
        code = response.code
        if code == TOO_LARGE:
            return self._too_large(response)
        if self._phase == "single":
            if code == CONTINUE:
                raise error.UnexpectedBlock1Option("2.31 Continue to a request without Block1")
            return self.continue_download(response)

        sent, _ = self._sent
        answer = response.opt.block1
        if code == CONTINUE or (sent.more and successful(code)):
            # 2.31, or a 2.xx of a server that acts on every block
            if not sent.more:
                raise error.UnexpectedBlock1Option(f"{code} in response to the last block")
            if answer is None or answer.block_number != sent.block_number:
                raise error.UnexpectedBlock1Option(
                    f"{code} acknowledges block {answer and answer.block_number} instead of {sent.block_number}"
                )
            self._offset += self._sent[1]
            if answer.size_exponent < self._szx1:
                self._szx1 = answer.size_exponent
            return self._block1_request()
        if not sent.more and answer is not None and answer.block_number != sent.block_number:
            raise error.UnexpectedBlock1Option(
                f"the final response acknowledges block {answer.block_number} instead of {sent.block_number}"
            )
        return self.continue_download(response)

    def _too_large(self, response: Message) -> Optional[Message]:
        body_length = len(self.request.payload)
        size1 = response.opt.size1
        answer = response.opt.block1
        sent_length = self._sent[1] if self._phase == "block1" else body_length
        szx = None
        if size1 is not None and body_length > size1:
            pass  # no block size helps: the server will not take that much
        elif answer is not None and answer.size_exponent < self._szx1:
            szx = answer.size_exponent
        elif size1 is not None and size1 >= 16:
            szx = min(6, size1.bit_length() - 5)
        if szx is None or self._restarts >= MAX_RESTARTS or (1 << (szx + 4)) >= sent_length:
            self.response = response
            self._phase = "done"
            return None
        self._restarts += 1
        self._szx1 = szx
        self._offset = 0
        if self._own_tag:
            self._tag = self._new_tag()
        self._phase = "block1"
        return self._block1_request()

    def continue_download(self, response: Message) -> Optional[Message]:
        """Take ``response`` as the first block of the response (possibly
        the only one) and return the request for the next block, or None if
        it is complete. Used on its own for observe notifications."""
        block = response.opt.block2
        if block is None or not successful(response.code) and not block.more:
            self.response = response
            self._phase = "done"
            return None
        if block_start(block) != self._expected2:
            raise error.UnexpectedBlock2(
                f"expected the block at offset {self._expected2}, got block {block.block_number} of size {block_unit(block.size_exponent)}"
            )
        if not block.more:
            self.response = response
            self._phase = "done"
            return None
        if not block.is_valid_for_payload_size(len(response.payload)):
            raise error.UnexpectedBlock2(f"block of {len(response.payload)} bytes at size exponent {block.size_exponent}")
        size2 = response.opt.size2
        if size2 is not None and size2 > self.max_response_size:
            raise error.ResponseTooLarge(
                f"the response announces {size2} bytes (Size2), more than the limit of {self.max_response_size}"
            )
        self._phase = "block2"
        self._first = response
        self.expected_size = size2
        self._etag = response.opt.etag
        self._szx2 = block.size_exponent if self._block2_exp is None else min(block.size_exponent, self._block2_exp)
        self._body2 = bytearray(response.payload)
        return self._block2_request()

    def _next_block2(self, response: Message) -> Optional[Message]:
        if not successful(response.code):
            self.response = response
            self._phase = "done"
            return None
        options = response.opt
        block = options.block2
        if block is None:
            raise error.MissingBlock2Option("a later block of the response lacks the Block2 option")
        if options.etag != self._etag:
            raise error.ResourceChanged("the ETag changed between blocks")
        body = self._body2
        offset = self._expected2 + len(body)
        if block.block_number * block_unit(block.size_exponent) != offset:
            raise error.UnexpectedBlock2(
                f"asked for offset {offset}, got block {block.block_number} at size exponent {block.size_exponent}"
            )
        payload = response.payload
        if block.more and not block.is_valid_for_payload_size(len(payload)):
            raise error.UnexpectedBlock2(f"block of {len(payload)} bytes at size exponent {block.size_exponent}")
        body += payload
        if len(body) + self._expected2 > self.max_response_size:
            raise error.ResponseTooLarge(
                f"the response grew beyond the limit of {self.max_response_size} bytes"
            )
        if block.size_exponent < self._szx2:
            self._szx2 = block.size_exponent
        if block.more:
            return self._block2_request()
        assembled = self._first.copy()
        assembled.payload = bytes(body)
        assembled.opt.block2 = None
        assembled.remote = response.remote
        self._body2 = bytearray()
        self.response = assembled
        self._phase = "done"
        return None
