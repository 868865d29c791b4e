"""Definitions shared by the client and the server side of blockwise
transfers: option numbers, block arithmetic, and how large a body can go to
a remote in one message (its ``maximum_block_size_exp``, or for BERT its
``maximum_payload_size``)."""

from __future__ import annotations

from typing import Optional

from ..numbers.codes import Code
from ..numbers.optionnumbers import OptionNumber
from ..optiontypes import BlockOption

BlockwiseTuple = BlockOption.BlockwiseTuple

BLOCK1 = int(OptionNumber.BLOCK1)
BLOCK2 = int(OptionNumber.BLOCK2)
SIZE1 = int(OptionNumber.SIZE1)
SIZE2 = int(OptionNumber.SIZE2)
OBSERVE = int(OptionNumber.OBSERVE)
REQUEST_TAG = int(OptionNumber.REQUEST_TAG)
ETAG = int(OptionNumber.ETAG)

CONTINUE = Code.CONTINUE
TOO_LARGE = Code.REQUEST_ENTITY_TOO_LARGE

BERT_UNIT = 1024
"""Block numbers of BERT blocks (szx 7, RFC 8323) count 1024 byte units."""


def successful(code: Optional[Code]) -> bool:
    return code is not None and code.is_successful()


def remote_max_exp(remote: object) -> int:
    return getattr(remote, "maximum_block_size_exp", 6)


def bert_chunk(remote: object) -> int:
    """Bytes in one BERT block to ``remote``: its maximum payload size,
    rounded down to whole 1024 byte units."""
    size = getattr(remote, "maximum_payload_size", BERT_UNIT)
    return max(BERT_UNIT, size - size % BERT_UNIT)


def single_message_limit(remote: object) -> int:
    """The largest body that goes to ``remote`` without blockwise."""
    exp = remote_max_exp(remote)
    if exp >= 7:
        return bert_chunk(remote)
    # (the same int objects every time: a server keeps one per observation)
    return _BLOCK_SIZES[exp] if exp >= 0 else 1 << (exp + 4)


_BLOCK_SIZES = tuple(1 << (exp + 4) for exp in range(7))


def block_unit(szx: int) -> int:
    """The byte length one block number stands for at size exponent szx."""
    return BERT_UNIT if szx == 7 else 1 << (szx + 4)


def block_start(block: BlockwiseTuple) -> int:
    """The byte offset a Block2 option (or a Block1 in a request) stands for."""
    return block.block_number * block_unit(block.size_exponent)
