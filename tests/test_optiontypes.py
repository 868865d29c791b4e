"""Tests for the option value formats of aiocoap.optiontypes: uint, string
and opaque (RFC 7252 §3.2) and the block options (RFC 7959 §2.2, BERT from
RFC 8323 §6)."""

import pytest

from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.optiontypes import BlockOption, OpaqueOption, OptionType, StringOption, UintOption

BlockwiseTuple = BlockOption.BlockwiseTuple

# --- RFC 7252 §3.2 value formats ---------------------------------------------


@pytest.mark.parametrize(
    "value,encoded",
    [
        (0, b""),
        (1, b"\x01"),
        (255, b"\xff"),
        (256, b"\x01\x00"),
        (65535, b"\xff\xff"),
        (65536, b"\x01\x00\x00"),
        (2**32 - 1, b"\xff\xff\xff\xff"),
    ],
)
def test_uint_shortest_encoding(value, encoded):
    # "A sender SHOULD represent the integer with as few bytes as possible"
    option = UintOption(OptionNumber.MAX_AGE, value)
    assert option.encode() == encoded
    decoded = UintOption(OptionNumber.MAX_AGE)
    decoded.decode(encoded)
    assert decoded.value == value


def test_uint_padded_to_the_registry_minimum():
    # Hop-Limit is exactly 1 byte (RFC 8768), the OCF version options 2
    assert UintOption(OptionNumber.HOP_LIMIT, 0).encode() == b"\x00"
    assert UintOption(OptionNumber.HOP_LIMIT, 16).encode() == b"\x10"
    assert UintOption(OptionNumber.OCF_CONTENT_FORMAT_VERSION, 215).encode() == b"\x00\xd7"
    assert UintOption(OptionNumber.OCF_ACCEPT_CONTENT_FORMAT_VERSION, 0).encode() == b"\x00\x00"
    assert UintOption(OptionNumber.OCF_CONTENT_FORMAT_VERSION, 0x0801).encode() == b"\x08\x01"
    # options with no minimum stay shortest
    assert UintOption(OptionNumber.CONTENT_FORMAT, 0).encode() == b""
    assert UintOption(2048, 0).encode() == b""


def test_uint_leading_zeros_are_accepted():
    option = UintOption(OptionNumber.MAX_AGE)
    option.decode(b"\x00\x00\x3c")
    assert option.value == 60
    assert option.encode() == b"\x3c"


def test_uint_negative_is_rejected():
    with pytest.raises(ValueError):
        UintOption(OptionNumber.MAX_AGE, -1).encode()


def test_uint_default_value():
    assert UintOption(OptionNumber.OBSERVE).value == 0
    assert UintOption(OptionNumber.OBSERVE).encode() == b""


def test_string_is_utf8():
    option = StringOption(OptionNumber.URI_PATH, "こんにちは")
    assert option.encode() == "こんにちは".encode("utf-8")
    decoded = StringOption(OptionNumber.URI_PATH)
    decoded.decode(b"\xc3\xa4")
    assert decoded.value == "ä"
    assert StringOption(OptionNumber.URI_PATH).value == ""


def test_string_rejects_invalid_utf8_with_valueerror():
    option = StringOption(OptionNumber.URI_PATH)
    with pytest.raises(ValueError):
        option.decode(b"\xff\xfe")


def test_opaque_keeps_bytes():
    option = OpaqueOption(OptionNumber.ETAG, b"\x00\x01")
    assert option.encode() == b"\x00\x01"
    decoded = OpaqueOption(OptionNumber.ETAG)
    assert decoded.value == b""
    decoded.decode(bytearray(b"ab"))
    assert decoded.value == b"ab" and type(decoded.value) is bytes
    assert str(option) == "0001"


def test_option_equality_and_hash_by_number_and_encoding():
    a = UintOption(OptionNumber.MAX_AGE, 60)
    b = UintOption(OptionNumber.MAX_AGE, 60)
    c = UintOption(OptionNumber.SIZE1, 60)
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert StringOption(OptionNumber.URI_PATH, "a") != StringOption(OptionNumber.URI_PATH, "b")
    assert len(StringOption(OptionNumber.URI_PATH, "abc")) == 3


def test_option_repr_and_str():
    option = StringOption(OptionNumber.URI_PATH, "x")
    assert repr(option) == '<StringOption <OptionNumber 11 "URI_PATH">: \'x\'>'
    assert str(option) == "x"
    assert str(UintOption(OptionNumber.MAX_AGE, 5)) == "5"


def test_option_type_is_abstract():
    option = OptionType(OptionNumber.ETAG, b"")
    with pytest.raises(NotImplementedError):
        option.encode()
    with pytest.raises(NotImplementedError):
        option.decode(b"")


# --- RFC 7959 §2.2 block option values ---------------------------------------


@pytest.mark.parametrize(
    "value,encoded",
    [
        # 0 bytes: NUM=0, M=0, SZX=0 is the uint zero
        ((0, False, 0), b""),
        # 1 byte: 4-bit NUM
        ((0, True, 6), b"\x0e"),
        ((0, False, 6), b"\x06"),
        ((1, False, 2), b"\x12"),
        ((15, True, 7), b"\xff"),
        ((0, False, 1), b"\x01"),
        # 2 bytes: 12-bit NUM
        ((16, False, 6), b"\x01\x06"),
        ((4095, True, 6), b"\xff\xfe"),
        # 3 bytes: 20-bit NUM
        ((4096, False, 0), b"\x01\x00\x00"),
        ((2**20 - 1, True, 7), b"\xff\xff\xff"),
    ],
)
def test_block_value_encoding(value, encoded):
    option = BlockOption(OptionNumber.BLOCK2, value)
    assert option.encode() == encoded
    decoded = BlockOption(OptionNumber.BLOCK2)
    decoded.decode(encoded)
    assert decoded.value == value
    assert isinstance(decoded.value, BlockwiseTuple)


def test_block_value_is_normalized_to_blockwisetuple():
    option = BlockOption(OptionNumber.BLOCK1, (3, True, 4))
    assert isinstance(option.value, BlockwiseTuple)
    assert option.value.block_number == 3
    assert option.value.more is True
    assert option.value.size_exponent == 4
    option.value = [5, False, 2]
    assert option.value == BlockwiseTuple(5, False, 2)
    assert BlockOption(OptionNumber.BLOCK1).value is None


def test_block_number_beyond_20_bits_is_rejected():
    with pytest.raises(ValueError):
        BlockOption(OptionNumber.BLOCK2, (2**20, False, 6)).encode()
    with pytest.raises(ValueError):
        BlockOption(OptionNumber.BLOCK2, (-1, False, 6)).encode()
    with pytest.raises(ValueError):
        BlockOption(OptionNumber.BLOCK2, (0, False, 8)).encode()


def test_block_value_longer_than_3_bytes_is_rejected():
    option = BlockOption(OptionNumber.BLOCK2)
    with pytest.raises(ValueError):
        option.decode(b"\x00\x00\x00\x00")


@pytest.mark.parametrize("szx,size", [(0, 16), (1, 32), (2, 64), (3, 128), (4, 256), (5, 512), (6, 1024), (7, 1024)])
def test_blockwise_tuple_size(szx, size):
    # RFC 7959 §2.2: size = 2**(SZX + 4); SZX 7 is BERT, 1024-byte units (RFC 8323 §6)
    assert BlockwiseTuple(3, False, szx).size == size
    assert BlockwiseTuple(3, False, szx).start == 3 * size


def test_blockwise_tuple_is_bert():
    assert BlockwiseTuple(0, True, 7).is_bert
    assert not BlockwiseTuple(0, True, 6).is_bert


@pytest.mark.parametrize(
    "tuple_,payloadsize,valid",
    [
        ((0, True, 6), 1024, True),
        ((0, True, 6), 1023, False),
        ((0, True, 6), 2048, False),
        ((0, False, 6), 0, True),
        ((0, False, 6), 1024, True),
        ((0, False, 6), 1025, False),
        ((1, True, 0), 16, True),
        ((1, True, 0), 15, False),
        # BERT: non-final blocks carry whole multiples of 1024 bytes
        ((3, True, 7), 1024, True),
        ((3, True, 7), 3072, True),
        ((3, True, 7), 1500, False),
        ((3, True, 7), 0, False),
        ((3, False, 7), 1500, True),
        ((3, False, 7), 0, True),
    ],
)
def test_blockwise_tuple_is_valid_for_payload_size(tuple_, payloadsize, valid):
    assert BlockwiseTuple(*tuple_).is_valid_for_payload_size(payloadsize) is valid


@pytest.mark.parametrize(
    "tuple_,maximum,expected",
    [
        ((10, 0, 5), 6, (10, 0, 5)),
        ((10, 0, 5), 5, (10, 0, 5)),
        ((10, 0, 5), 3, (40, 0, 3)),
        ((1, True, 6), 0, (64, True, 0)),
        # BERT reduced to 1024-byte blocks keeps the block number (RFC 8323 §6)
        ((2, 1, 7), 6, (2, 1, 6)),
        ((2, 1, 7), 4, (8, 1, 4)),
        ((2, 1, 7), 7, (2, 1, 7)),
    ],
)
def test_blockwise_tuple_reduced_to(tuple_, maximum, expected):
    reduced = BlockwiseTuple(*tuple_).reduced_to(maximum)
    assert reduced == expected
    assert isinstance(reduced, BlockwiseTuple)
    # the same byte offset is described
    assert reduced.start == BlockwiseTuple(*tuple_).start


def test_blockwise_tuple_repr():
    assert repr(BlockwiseTuple(40, 0, 3)) == "BlockwiseTuple(block_number=40, more=0, size_exponent=3)"
    assert repr(BlockwiseTuple(1, True, 2)) == "BlockwiseTuple(block_number=1, more=True, size_exponent=2)"
    assert BlockwiseTuple(1, True, 2) == (1, True, 2)
