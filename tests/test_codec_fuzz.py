"""Property tests of the message codec (RFC 7252 §3).

* Any byte string decodes to a Message or raises error.UnparsableMessage,
  nothing else.
* Every message that decoded can be encoded again, and decoding that gives
  the same message (the codec normalizes once, e.g. drops invalid options
  and leading zeros of uints, and is stable from then on).
* Valid messages survive encode -> decode unchanged.
"""

import random

import pytest
from hypothesis import example, given, strategies as st

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption, OpaqueOption, StringOption, UintOption
from fuzz_targets import decode_datagram as check_decode
from fuzzing import fuzz_settings, mutate, mutation

pytestmark = pytest.mark.fuzz

FUZZ = fuzz_settings(2000)


# --- (a) arbitrary bytes -----------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw):
    check_decode(raw)


@FUZZ
@given(
    header=st.sampled_from([0x40, 0x41, 0x44, 0x48, 0x50, 0x60, 0x70, 0x62]),
    code=st.integers(0, 255),
    tail=st.binary(max_size=300),
)
def test_arbitrary_bytes_after_a_plausible_header(header, code, tail):
    # Random bytes mostly fail at the version bits; this reaches the option
    # parser far more often.
    check_decode(bytes((header, code, 0x12, 0x34)) + tail)


# --- (c) generated valid messages ------------------------------------------------

_KNOWN = {int(n): n for n in OptionNumber}


def _uint_values(minlen, maxlen):
    # small values too where the registry asks for a minimum length: the
    # encoder pads them
    return st.integers(0, 256**maxlen - 1)


def _value_strategy(number):
    """Values valid for the option number's format and length range."""
    fmt = number.format
    minlen, maxlen = number.length_range
    maxlen = min(maxlen, 40)
    if fmt is StringOption:
        return st.text(max_size=maxlen).filter(lambda s: minlen <= len(s.encode("utf-8")) <= maxlen)
    if fmt is UintOption:
        return _uint_values(minlen, maxlen)
    if fmt is BlockOption:
        return st.tuples(st.integers(0, 2**20 - 1), st.booleans(), st.integers(0, 7))
    return st.binary(min_size=minlen, max_size=maxlen)


known_options = st.sampled_from(sorted(_KNOWN)).flatmap(
    lambda n: st.tuples(st.just(_KNOWN[n]), _value_strategy(_KNOWN[n]))
)
unknown_options = st.tuples(
    st.integers(0, 65535).filter(lambda n: n not in _KNOWN).map(OptionNumber),
    # short values, and some around the 13 and 269 byte length boundaries
    st.one_of(st.binary(max_size=14), st.binary(min_size=267, max_size=270)),
)
options = st.lists(st.one_of(known_options, unknown_options), max_size=8)


@st.composite
def messages(draw):
    code = draw(st.integers(1, 255))
    message = Message(
        mtype=draw(st.sampled_from(list(Type))),
        mid=draw(st.integers(0, 0xFFFF)),
        code=code,
        token=draw(st.binary(max_size=8)),
        payload=draw(st.binary(max_size=64)),
    )
    for number, value in draw(options):
        message.opt.add_option(number.format(number, value))
    return message


@fuzz_settings(400)
@given(messages())
def test_valid_messages_round_trip(message):
    raw = message.encode()
    decoded = Message.decode(raw)
    assert decoded.code == message.code
    assert decoded.mtype == message.mtype
    assert decoded.mid == message.mid
    assert decoded.token == message.token
    assert decoded.opt.option_list() == message.opt.option_list()
    assert [o.value for o in decoded.opt.option_list()] == [o.value for o in message.opt.option_list()]
    assert decoded.opt.invalid_options == []
    assert decoded.payload == message.payload
    assert decoded.encode() == raw


@fuzz_settings(200)
@given(mtype=st.sampled_from(list(Type)), mid=st.integers(0, 0xFFFF))
def test_empty_messages_round_trip(mtype, mid):
    raw = Message(mtype=mtype, mid=mid, code=Code.EMPTY).encode()
    assert len(raw) == 4
    decoded = Message.decode(raw)
    assert (decoded.mtype, decoded.mid, decoded.code) == (mtype, mid, Code.EMPTY)


# --- (b) mutations of valid messages ---------------------------------------------


def _random_option(rng):
    number = OptionNumber(rng.choice(sorted(_KNOWN) + [13, 268, 269, 2048, 2050, 65000, 65001, 65535]))
    minlen, maxlen = number.length_range
    length = rng.randint(minlen, min(maxlen, rng.choice([12, 13, 40, 270])))
    fmt = number.format
    if fmt is StringOption:
        value = "".join(rng.choice("aä/ z€") for _ in range(length))
        while len(value.encode("utf-8")) > maxlen:
            value = value[:-1]
        if len(value.encode("utf-8")) < minlen:
            value = "x" * minlen
    elif fmt is UintOption:
        value = rng.randrange(256**length)
    elif fmt is BlockOption:
        value = (rng.randrange(2**rng.choice([4, 12, 20])), rng.random() < 0.5, rng.randrange(8))
    else:
        value = rng.randbytes(length)
    return fmt(number, value)


def _corpus(count=80):
    """Deterministic valid messages to mutate (cheaper than drawing them)."""
    rng = random.Random(7252)
    corpus = [
        b"\x40\x01\x7d\x34\xbbtemperature",
        b"\x60\x45\x7d\x34\xff22.3 C",
        b"\x60\x00\x7a\x10",
    ]
    for _ in range(count):
        message = Message(
            mtype=rng.choice(list(Type)),
            mid=rng.randrange(0x10000),
            code=rng.randrange(1, 256),
            token=rng.randbytes(rng.randrange(9)),
            payload=rng.randbytes(rng.choice([0, 0, 1, 13, 100])),
        )
        for _ in range(rng.randrange(9)):
            message.opt.add_option(_random_option(rng))
        corpus.append(message.encode())
    return corpus


CORPUS = _corpus()

def test_corpus_is_valid():
    for raw in CORPUS:
        assert check_decode(raw).encode() == raw


@FUZZ
@given(st.sampled_from(CORPUS), st.lists(mutation, min_size=1, max_size=4))
@example(
    # a 2-byte OCF-Content-Format-Version of 215 must not shrink to 1 byte
    raw=b"Ut`\x1br>\xcf\x0b\tB\x97\x052z\x1a\xd0\x01#\x19\x82\x83\xe0\x06\xde2\xd70",
    mutations=[("insert", 261321, 0)],
)
def test_mutated_messages(raw, mutations):
    check_decode(mutate(raw, mutations))


@fuzz_settings(150)
@given(messages(), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_generated_messages(message, mutations):
    check_decode(mutate(message.encode(), mutations))
