"""The server side of blockwise transfers, without I/O: Block1 reassembly
and the Block2 response cache, bounded in count, bytes and time. The
responses it gives by itself are listed in the documentation of
:mod:`aiocoap.blockwise`."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Optional, Union, cast

from ..message import Message
from ..numbers.codes import Code
from ..numbers.constants import EXCHANGE_LIFETIME
from ..numbers.optionnumbers import is_nocachekey_number
from ._common import (
    BERT_UNIT, BLOCK1, BLOCK2, CONTINUE, OBSERVE, REQUEST_TAG, SIZE1, SIZE2,
    BlockwiseTuple, bert_chunk, block_start, remote_max_exp, single_message_limit, successful,
)

__all__ = ["ServerBlockwiseState", "RenderJob", "body_etag", "DEFAULT_MAX_BODY_SIZE"]

DEFAULT_MAX_BODY_SIZE = 1 << 20
"""The largest request body a server reassembles by default (1 MiB)."""

# Options that describe how a body travels rather than which body: they are
# left out when deciding which blocks belong to the same transfer.
_TRANSFER_OPTIONS = frozenset((BLOCK1, BLOCK2, SIZE1, SIZE2, OBSERVE, REQUEST_TAG))

_SAFE_METHODS = frozenset((Code.GET, Code.FETCH))


@dataclass(frozen=True, slots=True)
class RenderJob:
    """What :meth:`ServerBlockwiseState.receive` asks the caller to do:
    render ``request`` (block options removed, body reassembled) and pass
    the result to :meth:`ServerBlockwiseState.respond` with this job."""

    request: Message
    remote: object
    key: tuple[Any, ...]
    """Which transfer the response belongs to (see _transfer_key)."""
    tag: tuple[bytes, ...]
    block1: Optional[BlockwiseTuple] = None
    """Block1 to echo in the response (the request's final block)."""
    block2: Optional[BlockwiseTuple] = None
    """Block2 the client asked for (number and preferred size)."""
    want_size2: bool = False


class _Assembly:
    __slots__ = ("buffer", "seen", "last")

    def __init__(self, now: float):
        self.buffer = bytearray()
        self.seen = now
        self.last = (0, 0)  # offset and length of the block appended last


class _Representation:
    __slots__ = ("template", "body", "seen", "alias")

    def __init__(self, template: Message, body: bytes, now: float, alias: Hashable) -> None:
        self.template = template
        self.body = body
        self.seen = now
        self.alias = alias


def _transfer_key(request: Message, with_payload: bool) -> tuple[Any, ...]:
    """Code, options and (for FETCH) payload that make blocks belong to one
    transfer: everything in the cache key except the transfer options."""
    items = []
    for option in request.opt.option_list():
        number = option.number
        if number in _TRANSFER_OPTIONS or is_nocachekey_number(number):
            continue
        items.append((int(number), option.encode()))
    payload = request.payload if with_payload and request.code == Code.FETCH else b""
    return (request.code, tuple(items), payload)


def _strip_transfer_options(request: Message, payload: bytes) -> Message:
    stripped = request.copy()
    stripped.payload = payload
    options = stripped.opt
    for number in (BLOCK1, BLOCK2, SIZE1, SIZE2):
        options.delete_option(number)
    return stripped


def _error(code: Code, text: str, **options: Any) -> Message:
    return Message(code=code, payload=text.encode(), **options)


def body_etag(body: bytes) -> bytes:
    """The ETag the server gives a cut response whose resource set none."""
    return hashlib.blake2b(body, digest_size=8).digest()


class ServerBlockwiseState:
    """Server-side blockwise bookkeeping (sans-I/O): Block1 reassembly and
    the Block2 response cache.

    Feed every request of a resource that wants assembly into
    :meth:`receive`; it returns either a finished response (2.31, or one
    of the error responses of the module documentation, or a block from
    the cache) or a :class:`RenderJob`. Render the job's request and give
    the result to :meth:`respond`, which adds Block1 and cuts the body into
    the requested Block2 block. :meth:`slice` cuts a response rendered
    without a job (plain requests, observe notifications).

    State is keyed by (remote, request options without the transfer
    options, Request-Tag), refreshed whenever it is used, and dropped
    ``reassembly_timeout`` / ``response_timeout`` seconds after its last
    use (:meth:`expire`, :meth:`next_deadline`), or earlier when a count or
    byte limit is reached: responses oldest first; uploads first within
    their source (a remote starting more than ``max_reassemblies_per_peer``
    loses its own least recently continued one), then, at the global
    limits, those that have not got beyond their first block (oldest
    first) before any that made progress. So a stream of uploads started
    and never continued, from one source or many, does not push out a
    slow upload that is being continued; what it can still push out is
    an upload between its first and its second block."""

    def __init__(
        self,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        reassembly_timeout: float = EXCHANGE_LIFETIME,
        max_reassemblies: int = 1024,
        max_reassemblies_per_peer: int = 16,
        max_reassembly_bytes: int = 32 << 20,
        response_timeout: float = 60.0,
        max_responses: int = 256,
        max_response_bytes: int = 32 << 20,
    ):
        self.max_body_size = max_body_size
        self._reassembly_timeout = reassembly_timeout
        self.max_reassemblies = max_reassemblies
        self.max_reassemblies_per_peer = max_reassemblies_per_peer
        self.max_reassembly_bytes = max_reassembly_bytes
        self._response_timeout = response_timeout
        self.max_responses = max_responses
        self.max_response_bytes = max_response_bytes
        self._check_at = float("inf")  # no deadline of any state is earlier
        # key -> _Assembly, least recently continued first
        self._assemblies: OrderedDict[Hashable, _Assembly] = OrderedDict()
        # The same keys per remote (in the same order), and those of the
        # assemblies that hold only their first block (in order of arrival)
        self._assemblies_of: dict[object, OrderedDict[Hashable, None]] = {}
        self._unproven: OrderedDict[Hashable, None] = OrderedDict()
        self._assembly_bytes = 0
        self._responses: OrderedDict[Hashable, _Representation] = OrderedDict()
        self._aliases: dict[Hashable, Hashable] = {}
        self._response_bytes = 0

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__}: {len(self._assemblies)} reassemblies "
            f"({self._assembly_bytes} bytes), {len(self._responses)} responses "
            f"({self._response_bytes} bytes)>"
        )

    @property
    def reassembly_timeout(self) -> float:
        """Seconds an unfinished upload is kept after its last block."""
        return self._reassembly_timeout

    @reassembly_timeout.setter
    def reassembly_timeout(self, value: float) -> None:
        self._reassembly_timeout = value
        self._check_at = float("-inf")

    @property
    def response_timeout(self) -> float:
        """Seconds a cut response is kept after its last block was served."""
        return self._response_timeout

    @response_timeout.setter
    def response_timeout(self, value: float) -> None:
        self._response_timeout = value
        self._check_at = float("-inf")

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in reassemblies and cached responses together."""
        return self._assembly_bytes + self._response_bytes

    @property
    def reassembly_count(self) -> int:
        return len(self._assemblies)

    @property
    def response_count(self) -> int:
        return len(self._responses)

    # --- time ----------------------------------------------------------------

    def next_deadline(self) -> Optional[float]:
        """When :meth:`expire` has something to drop next (None: nothing)."""
        deadlines = []
        if self._assemblies:
            deadlines.append(next(iter(self._assemblies.values())).seen + self.reassembly_timeout)
        if self._responses:
            deadlines.append(next(iter(self._responses.values())).seen + self.response_timeout)
        return min(deadlines) if deadlines else None

    @property
    def wake_up_at(self) -> float:
        """A time not after the next deadline (infinity: no state), cheaper
        than :meth:`next_deadline`; calling :meth:`expire` then is enough
        to keep all state within its timeouts."""
        return self._check_at

    def expire(self, now: float) -> None:
        """Drop all state unused for longer than its timeout."""
        assemblies = self._assemblies
        limit = now - self.reassembly_timeout
        while assemblies:
            key, state = next(iter(assemblies.items()))
            if state.seen > limit:
                break
            self._drop_assembly(key)
        responses = self._responses
        limit = now - self.response_timeout
        while responses:
            key, entry = next(iter(responses.items()))
            if entry.seen > limit:
                break
            self._drop_response(key)
        deadline = self.next_deadline()
        self._check_at = float("inf") if deadline is None else deadline

    def clear(self) -> None:
        """Forget all state (at shutdown)."""
        self._check_at = float("inf")
        self._assemblies.clear()
        self._assemblies_of.clear()
        self._unproven.clear()
        self._responses.clear()
        self._aliases.clear()
        self._assembly_bytes = self._response_bytes = 0

    # --- requests ------------------------------------------------------------

    def receive(self, request: Message, now: float) -> Union[Message, RenderJob]:
        """Process an incoming request: return the response to send, or the
        job of rendering the (reassembled) request."""
        if now >= self._check_at:
            self.expire(now)
        options = request.opt
        block1 = options.block1
        block2 = options.block2
        remote = request.remote
        if (
            (block1 is not None and block1.size_exponent == 7)
            or (block2 is not None and block2.size_exponent == 7)
        ) and remote_max_exp(remote) < 7:
            return _error(Code.BAD_REQUEST, "BERT block size is not available on this transport")
        want_size2 = options.size2 == 0
        tag = options.request_tag
        if block1 is not None:
            if block2 is not None and block2.block_number != 0:
                return _error(Code.BAD_REQUEST, "Block2 other than 0 with Block1")
            return self._receive_block1(request, block1, block2, tag, want_size2, now)

        key = _transfer_key(request, True)
        if block2 is not None and block2.block_number != 0:
            entry_key = (remote, key, tag) if tag else self._aliases.get((remote, key))
            entry = self._responses.get(entry_key) if entry_key is not None else None
            if entry is not None:
                entry.seen = now
                self._responses.move_to_end(entry_key)
                return self._cut(entry, block2, remote, want_size2)
            if request.code not in _SAFE_METHODS:
                return _error(
                    Code.REQUEST_ENTITY_INCOMPLETE,
                    "No stored response for this block; repeat the whole request",
                )
        return RenderJob(
            _strip_transfer_options(request, request.payload), remote, key, tag,
            block2=block2, want_size2=want_size2,
        )

    def _receive_block1(
        self,
        request: Message,
        block1: BlockwiseTuple,
        block2: Optional[BlockwiseTuple],
        tag: tuple[bytes, ...],
        want_size2: bool,
        now: float,
    ) -> Union[Message, RenderJob]:
        payload = request.payload
        length = len(payload)
        if not block1.is_valid_for_payload_size(length):
            return _error(Code.BAD_REQUEST, "Block1 payload size does not match the block size")
        remote = request.remote
        szx = block1.size_exponent
        preferred = min(szx, remote_max_exp(remote))
        offset = block_start(block1)
        key = _transfer_key(request, False)
        akey = (remote, key, tag)
        assemblies = self._assemblies
        limit = self.max_body_size

        state: Optional[_Assembly]
        if offset == 0:
            if akey in assemblies:
                self._drop_assembly(akey)
            size1 = request.opt.size1
            if (size1 is not None and size1 > limit) or length > limit:
                return _error(Code.REQUEST_ENTITY_TOO_LARGE, "Request body too large", size1=limit)
            if not block1.more:
                return RenderJob(
                    _strip_transfer_options(request, payload), remote, key, tag,
                    block1=block1, block2=block2, want_size2=want_size2,
                )
            state = _Assembly(now)
            assemblies[akey] = state
            self._unproven[akey] = None
            own = self._assemblies_of.get(remote)
            if own is None:
                own = self._assemblies_of[remote] = OrderedDict()
            own[akey] = None
            while len(own) > max(1, self.max_reassemblies_per_peer):
                self._drop_assembly(next(iter(own)))
            self._check_at = min(self._check_at, now + self._reassembly_timeout)
        else:
            state = assemblies.get(akey)
            if state is None:
                return _error(Code.REQUEST_ENTITY_INCOMPLETE, "No upload in progress for this block")
            have = len(state.buffer)
            if offset != have:
                if block1.more and state.last == (offset, length) and offset + length == have:
                    # The same block again (new message, lost answer)
                    state.seen = now
                    assemblies.move_to_end(akey)
                    self._assemblies_of[remote].move_to_end(akey)
                    return Message(code=CONTINUE, block1=(block1.block_number, True, preferred))
                self._drop_assembly(akey)
                return _error(Code.REQUEST_ENTITY_INCOMPLETE, "Block1 out of sequence")
            if have + length > limit:
                self._drop_assembly(akey)
                return _error(Code.REQUEST_ENTITY_TOO_LARGE, "Request body too large", size1=limit)
            assemblies.move_to_end(akey)
            self._assemblies_of[remote].move_to_end(akey)
            self._unproven.pop(akey, None)
            state.seen = now

        if not block1.more:
            self._drop_assembly(akey)
            state.buffer += payload
            return RenderJob(
                _strip_transfer_options(request, bytes(state.buffer)), remote, key, tag,
                block1=block1, block2=block2, want_size2=want_size2,
            )
        state.buffer += payload
        state.last = (offset, length)
        self._assembly_bytes += length
        self._enforce_assembly_limits(akey)
        answer = Message(code=CONTINUE)
        answer.opt.block1 = BlockwiseTuple(block1.block_number, True, preferred)
        return answer

    def _drop_assembly(self, key: Hashable) -> None:
        state = self._assemblies.pop(key, None)
        if state is None:
            return
        self._assembly_bytes -= len(state.buffer)
        self._unproven.pop(key, None)
        remote = cast(tuple[Any, ...], key)[0]  # (the keys of _receive_block1)
        own = self._assemblies_of[remote]
        del own[key]
        if not own:
            del self._assemblies_of[remote]

    def _enforce_assembly_limits(self, current: Hashable) -> None:
        assemblies = self._assemblies
        unproven = self._unproven
        byte_limit = max(self.max_reassembly_bytes, self.max_body_size)
        while len(assemblies) > self.max_reassemblies or self._assembly_bytes > byte_limit:
            victim = next(iter(unproven), current)
            if victim == current:
                # (the current one is the newest of those; then the least
                # recently continued of all)
                victim = next(iter(assemblies))
                if victim == current:
                    break
            self._drop_assembly(victim)

    # --- responses -----------------------------------------------------------

    def respond(self, job: RenderJob, response: Message, now: float) -> Message:
        """Turn the rendering result of ``job`` into the message to send:
        Block1 echoed, the body cut to the requested Block2 block (and
        stored for the following blocks), Size2 if asked for."""
        if not isinstance(response, Message):
            return response
        if response.code is None:
            response.code = Code.CONTENT  # as the Context would send it
        opts = response.opt
        if BLOCK2 in opts:
            # The resource cut its response itself.
            if job.block1 is not None and opts.block1 is None:
                opts.block1 = job.block1
            return response
        remote = job.remote
        block2 = job.block2
        body = response.payload
        if block2 is None:
            fits = len(body) <= single_message_limit(remote)
        else:
            szx = block2.size_exponent
            fits = block2.block_number == 0 and len(body) <= (
                bert_chunk(remote) if szx == 7 else 1 << (min(szx, remote_max_exp(remote), 6) + 4)
            )
        if fits:
            if job.block1 is not None:
                opts.block1 = job.block1
            if block2 is not None:
                opts.block2 = (0, False, min(block2.size_exponent, remote_max_exp(remote)))
            if job.want_size2:
                opts.size2 = len(body)
            return response
        entry = self._store(job.remote, job.key, job.tag, response, now)
        message = self._cut(entry, block2, remote, job.want_size2)
        if successful(message.code):
            observe = opts.observe
            if observe is not None:
                message.opt.observe = observe
            if job.block1 is not None:
                message.opt.block1 = job.block1
        elif job.block1 is not None:
            # 4.02 for a block beyond the end still acknowledges the upload
            message.opt.block1 = job.block1
        return message

    @staticmethod
    def needs_slicing(request: Message, response: Message) -> bool:
        """Whether :meth:`slice` would do more than return ``response``: it
        is too large for one message, or the request asks for a block or
        the size."""
        if not isinstance(response, Message):
            return False
        options = request.opt
        return (
            BLOCK2 in options
            or SIZE2 in options
            or len(response.payload) > single_message_limit(request.remote)
        )

    def slice(self, request: Message, response: Message, now: float) -> Message:
        """Cut ``response`` (rendered for ``request`` without a job) to the
        block the request asks for, block 0 by default, if it is larger
        than one block; otherwise return it unchanged."""
        if not self.needs_slicing(request, response):
            return response
        opts = request.opt
        block2 = opts.block2
        want_size2 = opts.size2 == 0
        if block2 is not None and block2.size_exponent == 7 and remote_max_exp(request.remote) < 7:
            block2 = None
        job = RenderJob(
            request, request.remote, _transfer_key(request, True), opts.request_tag,
            block2=block2, want_size2=want_size2,
        )
        return self.respond(job, response, now)

    def cut_to_fit(self, request: Message, response: Message, fits: Callable[[Message], bool], now: float) -> Optional[Message]:
        """A smaller first message for ``response`` (the answer to
        ``request``) that ``fits``: the beginning of its body in the
        largest Block2 block that does, the rest kept for the client's
        follow-up requests as :meth:`slice` keeps it. For a response that
        already is a block (of a representation kept here, or cut by the
        resource), the beginning of that block at a smaller size. None if
        not even a 16 byte block fits, or the body is no larger than that.

        For answers that must not be replaced by a challenge to repeat the
        request (see :mod:`aiocoap.amplification`)."""
        opts = response.opt
        block2 = opts.block2
        if block2 is not None and (block2.more or block2.block_number):
            size_exponent = min(block2.size_exponent, 6)
            for szx in range(size_exponent - 1, -1, -1):
                chunk = 1 << (szx + 4)
                if len(response.payload) <= chunk:
                    continue
                smaller = response.copy()
                smaller.payload = response.payload[:chunk]
                smaller.opt.block2 = BlockwiseTuple(block2.block_number << (size_exponent - szx), True, szx)
                if fits(smaller):
                    return smaller
            return None
        body = response.payload
        if len(body) <= 16:
            return None
        remote = request.remote
        tag = request.opt.request_tag
        key = _transfer_key(request, BLOCK1 not in request.opt)
        block1 = opts.block1
        entry = self._store(remote, key, tag, response, now)
        for szx in range(min(remote_max_exp(remote), 6), -1, -1):
            if len(body) <= 1 << (szx + 4):
                continue
            message = self._cut(entry, BlockwiseTuple(0, False, szx), remote, False)
            if block1 is not None:
                message.opt.block1 = block1
            if fits(message):
                return message
        self._drop_response((remote, key, tag))
        return None

    def _store(
        self, remote: object, key: tuple[Any, ...], tag: tuple[bytes, ...], response: Message, now: float
    ) -> _Representation:
        body = response.payload
        template = response.copy()
        template.payload = b""
        topts = template.opt
        for number in (BLOCK1, SIZE1, SIZE2, OBSERVE):
            topts.delete_option(number)
        if template.code == Code.CONTENT and topts.etag is None:
            topts.etag = body_etag(body)
        alias = (remote, key)
        full = (remote, key, tag)
        self._drop_response(full)
        entry = _Representation(template, body, now, alias)
        self._responses[full] = entry
        self._check_at = min(self._check_at, now + self._response_timeout)
        self._aliases[alias] = full
        self._response_bytes += len(body)
        responses = self._responses
        while len(responses) > self.max_responses or self._response_bytes > self.max_response_bytes:
            oldest = next(iter(responses))
            if oldest == full:
                break
            self._drop_response(oldest)
        return entry

    def _drop_response(self, key: Hashable) -> None:
        entry = self._responses.pop(key, None)
        if entry is None:
            return
        self._response_bytes -= len(entry.body)
        if self._aliases.get(entry.alias) == key:
            del self._aliases[entry.alias]

    @staticmethod
    def _cut(entry: _Representation, block2: Optional[BlockwiseTuple], remote: object, want_size2: bool) -> Message:
        body = entry.body
        max_exp = remote_max_exp(remote)
        if block2 is None:
            number, szx = 0, (7 if max_exp >= 7 else max_exp)
        else:
            number, szx = block2.block_number, block2.size_exponent
        if szx == 7:
            chunk = bert_chunk(remote)
            start = number * BERT_UNIT
        else:
            limit = min(max_exp, 6)
            if szx > limit:
                number <<= szx - limit
                szx = limit
            chunk = 1 << (szx + 4)
            start = number * chunk
        total = len(body)
        if start >= total and start:
            return _error(Code.BAD_OPTION, "Block2 beyond the end of the representation")
        end = start + chunk
        message = entry.template.copy()
        message.payload = body[start:end]
        message.opt.block2 = BlockwiseTuple(number, end < total, szx)
        if want_size2:
            message.opt.size2 = total
        return message
