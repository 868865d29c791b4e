"""Tests for aiocoap.transports.rfc8323common: the RFC 8323 framing codec,
the stream parser and the signaling messages."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiocoap import error
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber, _FORMATS
from aiocoap.optiontypes import OpaqueOption, UintOption
from aiocoap.transports import rfc8323common as r
import fuzz_targets
from fuzzing import fuzz_settings
from aiocoap.transports.rfc8323common import (
    CSM,
    Abort,
    BadCSMOption,
    BadSignalingOption,
    FramingError,
    MessageTooLarge,
    Ping,
    Pong,
    Release,
    StreamParser,
    decode_message,
    encode_message,
    parse_signaling,
)


def same_message(a: Message, b: Message) -> bool:
    return (
        a.code == b.code
        and a.token == b.token
        and a.payload == b.payload
        and a.opt == b.opt
        and a.opt.invalid_options == b.opt.invalid_options
    )


def feed_chunks(parser: StreamParser, data: bytes, cuts) -> list[Message]:
    out = []
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out.extend(parser.feed(data[start:cut]))
        start = cut
    return out


def payload_message(tkl: int, length: int) -> Message:
    """A POST whose options+marker+payload (the Len field) is ``length``."""
    return Message(code=Code.POST, token=bytes(range(1, tkl + 1)), payload=b"x" * (length - 1))


# --- RFC 8323 §3.2 frame layout ---------------------------------------------------


def test_s3_2_empty_csm():
    frame = encode_message(Message(code=Code.CSM))
    assert frame == bytes.fromhex("00e1")
    decoded = decode_message(frame)
    assert decoded.code == Code.CSM and decoded.token == b"" and decoded.payload == b""
    assert decoded.mtype is None and decoded.mid is None


def test_s3_2_get_with_token_and_uri_path():
    message = Message(code=Code.GET, token=b"\x12\x34", uri_path=["temperature"])
    # Len 12 (option header 0xBB + 11 bytes), TKL 2, code 0.01, token, option.
    expected = bytes.fromhex("c2 01 1234 bb") + b"temperature"
    assert encode_message(message) == expected
    decoded = decode_message(expected)
    assert decoded.code == Code.GET
    assert decoded.token == b"\x12\x34"
    assert decoded.opt.uri_path == ("temperature",)


def test_s3_2_response_with_payload():
    message = Message(code=Code.CONTENT, token=b"\x01", payload=b"22.5 C")
    assert encode_message(message) == bytes.fromhex("71 45 01 ff") + b"22.5 C"


@pytest.mark.parametrize(
    "length, header",
    [
        (12, "c3"),
        (13, "d3 00"),
        (268, "d3 ff"),
        (269, "e3 0000"),
        (65804, "e3 ffff"),
        (65805, "f3 00000000"),
        (65806, "f3 00000001"),
    ],
)
def test_s3_2_length_boundaries(length, header):
    message = payload_message(3, length)
    frame = encode_message(message)
    head = bytes.fromhex(header)
    assert frame[: len(head)] == head
    assert frame[len(head)] == Code.POST
    assert frame[len(head) + 1 : len(head) + 4] == b"\x01\x02\x03"
    assert frame[len(head) + 4] == 0xFF
    assert len(frame) == len(head) + 1 + 3 + length
    assert same_message(decode_message(frame), message)
    parser = StreamParser(max_message_size=length)
    assert [m.payload for m in parser.feed(frame)] == [message.payload]


def test_encode_rejects_long_token_and_missing_code():
    with pytest.raises(ValueError):
        encode_message(Message(code=Code.GET, token=b"123456789"))
    with pytest.raises(TypeError):
        encode_message(Message())


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        bytes.fromhex("09 01") + b"123456789",  # TKL 9
        bytes.fromhex("d0"),  # extended length missing
        bytes.fromhex("10 01"),  # announces one byte that is missing
        bytes.fromhex("00 01 00"),  # one byte too many
        bytes.fromhex("10 01 ff"),  # payload marker without payload
        bytes.fromhex("10 01 f0"),  # option delta nibble 15
    ],
)
def test_decode_rejects_malformed(frame):
    with pytest.raises(error.UnparsableMessage):
        decode_message(frame)


def test_decode_accepts_memoryview_and_unknown_code():
    frame = bytes.fromhex("00 1f")
    decoded = decode_message(memoryview(frame))
    assert int(decoded.code) == 0x1F


# --- stream parser ---------------------------------------------------------------

unregistered_numbers = st.integers(1, 65535).filter(lambda n: n not in _FORMATS)


@st.composite
def messages(draw, max_payload=3000):
    message = Message(
        code=draw(st.integers(0, 255)),
        token=draw(st.binary(max_size=8)),
        payload=draw(st.binary(max_size=max_payload)),
    )
    if draw(st.booleans()):
        message.opt.uri_path = draw(st.lists(st.text(max_size=20), max_size=3))
    if draw(st.booleans()):
        message.opt.content_format = draw(st.integers(0, 65535))
    if draw(st.booleans()):
        message.opt.etag = draw(st.binary(min_size=1, max_size=8))
    if draw(st.booleans()):
        message.opt.block2 = (draw(st.integers(0, 2**20 - 1)), draw(st.booleans()), draw(st.integers(0, 7)))
    for number, value in draw(
        st.lists(st.tuples(unregistered_numbers, st.binary(max_size=300)), max_size=4)
    ):
        message.opt.add_option(OpaqueOption(OptionNumber(number), value))
    return message


@fuzz_settings(150)
@given(st.lists(messages(), min_size=1, max_size=4), st.data())
def test_roundtrip_through_stream_in_random_chunks(originals, data):
    stream = b"".join(encode_message(m) for m in originals)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    parser = StreamParser(max_message_size=70000)
    parsed = feed_chunks(parser, stream, cuts)
    assert len(parsed) == len(originals)
    for got, original in zip(parsed, originals):
        assert same_message(got, original)
        assert got.mtype is None and got.mid is None
    assert parser.buffered == 0


@fuzz_settings(40)
@given(st.lists(messages(max_payload=600), min_size=1, max_size=3))
def test_roundtrip_one_byte_at_a_time(originals):
    stream = b"".join(encode_message(m) for m in originals)
    frame_ends = []
    for m in originals:
        frame_ends.append((frame_ends[-1] if frame_ends else 0) + len(encode_message(m)))
    parser = StreamParser()
    parsed = []
    for i in range(len(stream)):
        parsed.extend(parser.feed(stream[i : i + 1]))
        # A message comes out exactly with the last byte of its frame.
        assert len(parsed) == sum(1 for e in frame_ends if e <= i + 1)
    assert parser.buffered == 0
    assert [encode_message(m) for m in parsed] == [encode_message(m) for m in originals]
    assert all(same_message(a, b) for a, b in zip(parsed, originals))


# Arbitrary input (whole, byte by byte and in random pieces; signaling
# options read from it): the contracts live in the rfc8323-stream and
# rfc8323-frame targets of fuzz_targets.py, which test_fuzz_targets.py also
# feeds mutated valid frames.


@fuzz_settings(300)
@pytest.mark.fuzz
@given(st.binary(max_size=300), st.integers(0, 3), st.integers(0, 255))
def test_arbitrary_bytes_parse_or_raise_framing_error(stream, limit, cuts):
    fuzz_targets.rfc8323_stream(bytes((limit, cuts)) + stream)


@fuzz_settings(300)
@pytest.mark.fuzz
@given(st.binary(max_size=300))
def test_arbitrary_frame_decodes_or_raises_unparsable(frame):
    fuzz_targets.rfc8323_frame(frame)


@pytest.mark.parametrize(
    "header", [bytes.fromhex("f0 ffffffff"), bytes.fromhex("e0 ffff"), bytes.fromhex("d0 ff")]
)
def test_oversized_frame_rejected_from_the_header(header):
    parser = StreamParser(max_message_size=200)
    with pytest.raises(MessageTooLarge) as info:
        parser.feed(header)
    assert info.value.maximum == 200
    assert info.value.size > 200
    assert isinstance(info.value, error.UnparsableMessage)
    assert "Max-Message-Size" in info.value.diagnostic
    assert parser.buffered == 0
    with pytest.raises(FramingError):
        parser.feed(b"\x00" * 100)


def test_oversized_frame_rejected_one_byte_at_a_time():
    parser = StreamParser()
    assert parser.feed(b"\xf0") == []
    assert parser.feed(b"\xff\xff") == []
    assert parser.feed(b"\xff") == []
    with pytest.raises(MessageTooLarge):
        parser.feed(b"\xff")


def test_limit_counts_options_and_payload_only():
    message = payload_message(8, 100)
    frame = encode_message(message)
    assert len(frame) > 100
    assert len(StreamParser(max_message_size=100).feed(frame)) == 1
    with pytest.raises(MessageTooLarge):
        StreamParser(max_message_size=99).feed(frame)


def test_messages_before_the_error_are_kept():
    good = encode_message(Message(code=Code.GET, token=b"a"))
    parser = StreamParser()
    with pytest.raises(FramingError) as info:
        parser.feed(good + good + b"\x0f\x01")
    assert [m.token for m in info.value.messages] == [b"a", b"a"]
    assert "token length" in info.value.diagnostic
    assert parser.error is info.value


def test_bad_options_become_framing_error():
    parser = StreamParser()
    with pytest.raises(FramingError) as info:
        parser.feed(bytes.fromhex("10 01 ff"))
    assert isinstance(info.value.__cause__, error.UnparsableMessage)
    assert info.value.diagnostic


def test_partial_frame_is_visible_as_buffered():
    parser = StreamParser()
    frame = encode_message(Message(code=Code.GET, token=b"tok", uri_path=["a", "b"]))
    assert parser.feed(frame[:-1]) == []
    assert parser.buffered == len(frame) - 1
    assert len(parser.feed(frame[-1:])) == 1
    assert parser.buffered == 0
    assert parser.feed(b"") == []


def test_many_frames_in_one_buffer_are_parsed_in_place(monkeypatch):
    frame = encode_message(Message(code=Code.GET, token=b"\x01\x02", uri_path=["x"]))
    stream = frame * 10000
    seen_lengths = []
    original = r._build

    def recording_build(code, token, rest):
        # Each frame's parts are views into the one receive buffer, not
        # copies of the remaining stream.
        assert isinstance(token, memoryview) and isinstance(rest, memoryview)
        seen_lengths.append(len(rest))
        return original(code, token, rest)

    monkeypatch.setattr(r, "_build", recording_build)
    parser = StreamParser()
    parsed = parser.feed(stream)
    assert len(parsed) == 10000
    assert set(seen_lengths) == {len(frame) - 4}
    assert parser.buffered == 0
    assert all(m.opt.uri_path == ("x",) for m in parsed[:: 997])


# --- the pieces of the frame header -----------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.integers(0, 70000),
        st.sampled_from([12, 13, 268, 269, 65804, 65805, 0xFFFFFFFF + 65805]),
    ),
    st.integers(0, 15),
)
def test_encode_length_and_read_frame_header_agree(length, tkl):
    nibble, extended = r.encode_length(length)
    header = bytes(((nibble << 4) | tkl,)) + extended
    assert r.read_frame_header(header) == (len(header), tkl, length)
    assert r.read_frame_header(header[:-1]) is None or not extended
    # the same at an offset into a larger buffer
    assert r.read_frame_header(b"junk" + header + b"more", 4) == (len(header), tkl, length)


def test_encode_length_out_of_range():
    with pytest.raises(ValueError):
        r.encode_length(0xFFFFFFFF + 65806)
    with pytest.raises(ValueError):
        r.encode_length(-1)


# --- WebSocket framing (RFC 8323 §4.2) ---------------------------------------------


def test_s4_2_websocket_message_has_no_length():
    message = Message(code=Code.GET, token=b"\x12\x34", uri_path=["temperature"])
    encoded = r.encode_ws_message(message)
    assert encoded == bytes.fromhex("02 01 1234 bb") + b"temperature"
    assert same_message(r.decode_ws_message(encoded), message)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_websocket_roundtrip(original):
    encoded = r.encode_ws_message(original)
    assert encoded[0] >> 4 == 0
    decoded = r.decode_ws_message(encoded)
    assert same_message(decoded, original)
    assert decoded.mtype is None and decoded.mid is None
    # the stream frame of the same message differs only in its length header
    assert encode_message(original).endswith(encoded[1:])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",  # no code
        bytes.fromhex("10 01 00"),  # Len nibble set
        bytes.fromhex("09 01") + b"123456789",  # TKL 9
        bytes.fromhex("04 01 12"),  # token cut short
        bytes.fromhex("00 01 ff"),  # payload marker without payload
    ],
)
def test_decode_ws_rejects_malformed(data):
    with pytest.raises(FramingError):
        r.decode_ws_message(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_websocket_message_decodes_or_raises_framing_error(data):
    try:
        message = r.decode_ws_message(data)
    except FramingError as e:
        assert e.diagnostic
        return
    # The same content with a length header is the same message to the
    # stream decoder.
    tkl = data[0] & 0x0F
    nibble, extended = r.encode_length(len(data) - 2 - tkl)
    reframed = bytes(((nibble << 4) | tkl,)) + extended + data[1:]
    assert same_message(decode_message(reframed), message)


# --- signaling (RFC 8323 §5) -------------------------------------------------------


def test_s5_3_csm_frame():
    frame = encode_message(CSM(max_message_size=1152, block_wise_transfer=True).to_message())
    # Len 4, code 7.01, Max-Message-Size (2) = 0x0480, Block-Wise-Transfer (4) empty.
    assert frame == bytes.fromhex("40 e1 22 0480 20")


def test_s5_4_ping_pong_frames():
    assert encode_message(Ping().to_message()) == bytes.fromhex("00 e2")
    assert encode_message(Ping(custody=True).to_message()) == bytes.fromhex("10 e2 20")
    assert encode_message(Pong(custody=True).to_message(token=b"\x07")) == bytes.fromhex("11 e3 07 20")


def test_s5_6_abort_frame():
    frame = encode_message(Abort(bad_csm_option=9, diagnostic="no").to_message())
    assert frame == bytes.fromhex("50 e5 21 09 ff") + b"no"


@given(st.integers(0, 2**32 - 1), st.booleans())
def test_csm_roundtrip(size, bwt):
    csm = CSM(size, bwt)
    assert CSM.from_message(decode_message(encode_message(csm.to_message()))) == csm


def test_csm_is_cumulative():
    previous = CSM(max_message_size=4000, block_wise_transfer=True)
    assert CSM.from_message(Message(code=Code.CSM), previous) == previous
    assert CSM.from_message(Message(code=Code.CSM)) == CSM()
    update = CSM.from_message(CSM(2000).to_message(), previous)
    assert update == CSM(2000, True)


@given(st.booleans(), st.binary(max_size=8))
def test_ping_pong_roundtrip(custody, token):
    ping = decode_message(encode_message(Ping(custody).to_message(token=token)))
    assert Ping.from_message(ping) == Ping(custody)
    assert ping.token == token
    pong = decode_message(encode_message(Pong(custody).to_message(token=token)))
    assert Pong.from_message(pong) == Pong(custody)
    assert pong.token == token


@given(
    st.lists(st.text(min_size=1, max_size=40), max_size=4).map(tuple),
    st.none() | st.integers(0, 2**24 - 1),
    st.text(max_size=60),
)
def test_release_roundtrip(addresses, hold_off, diagnostic):
    release = Release(addresses, hold_off, diagnostic)
    parsed = parse_signaling(decode_message(encode_message(release.to_message())))
    assert parsed == release


def test_release_hold_off_zero_despite_etag_collision():
    # Option 4 with an empty value is an invalid ETag in request/response
    # messages; in a Release it is Hold-Off = 0.
    message = decode_message(bytes.fromhex("10 e4 40"))
    assert Release.from_message(message) == Release(hold_off=0)


@given(st.none() | st.integers(0, 65535), st.text(max_size=60))
def test_abort_roundtrip(bad_option, diagnostic):
    abort = Abort(bad_option, diagnostic)
    assert Abort.from_message(decode_message(encode_message(abort.to_message()))) == abort


def test_unknown_critical_csm_option_is_bad_csm_option():
    message = CSM().to_message()
    message.opt.add_option(UintOption(OptionNumber(9), 1))
    frame = encode_message(message)
    with pytest.raises(BadCSMOption) as info:
        parse_signaling(decode_message(frame))
    assert info.value.number == 9
    assert isinstance(info.value, error.UnparsableMessage)
    abort = Abort.from_error(info.value)
    assert abort.bad_csm_option == 9 and "9" in abort.diagnostic


def test_unknown_elective_signaling_options_are_ignored():
    message = CSM(3000).to_message()
    message.opt.add_option(OpaqueOption(OptionNumber(6), b"\x01"))
    message.opt.add_option(OpaqueOption(OptionNumber(1000), b"zz"))
    assert CSM.from_message(decode_message(encode_message(message))) == CSM(3000)
    ping = Ping(custody=True).to_message()
    ping.opt.add_option(OpaqueOption(OptionNumber(8), b""))
    assert Ping.from_message(decode_message(encode_message(ping))) == Ping(True)


@pytest.mark.parametrize("cls, code", [(Ping, Code.PING), (Pong, Code.PONG), (Release, Code.RELEASE), (Abort, Code.ABORT)])
def test_unknown_critical_option_in_other_signals(cls, code):
    message = cls().to_message()
    message.opt.add_option(OpaqueOption(OptionNumber(11), b"x"))
    with pytest.raises(BadSignalingOption) as info:
        cls.from_message(decode_message(encode_message(message)))
    assert not isinstance(info.value, BadCSMOption)
    assert info.value.number == 11 and info.value.code == code


def test_parse_signaling_dispatch():
    assert parse_signaling(Message(code=Code.PING)) == Ping()
    assert parse_signaling(Message(code=Code.PONG)) == Pong()
    assert parse_signaling(Message(code=Code.ABORT, payload=b"bye")) == Abort(diagnostic="bye")
    assert parse_signaling(Message(code=0xE6)) is None
    with pytest.raises(ValueError):
        Ping.from_message(Message(code=Code.GET))


def test_abort_from_framing_error():
    parser = StreamParser(max_message_size=10)
    with pytest.raises(FramingError) as info:
        parser.feed(b"\xd0\x50")
    abort = Abort.from_error(info.value)
    assert abort.bad_csm_option is None
    assert abort.diagnostic == info.value.diagnostic
    assert Abort.from_message(decode_message(encode_message(abort.to_message()))) == abort


def test_malformed_signaling_values_are_tolerated():
    # Alternative-Address with invalid UTF-8 is dropped; uints of any length.
    message = Message(code=Code.RELEASE)
    message.opt.add_option(OpaqueOption(OptionNumber(2), b"\xff\xfe"))
    message.opt.add_option(OpaqueOption(OptionNumber(2), b"coap+tcp://h"))
    message.opt.add_option(OpaqueOption(OptionNumber(4), b"\x00\x00\x00\x00\x05"))
    parsed = Release.from_message(decode_message(encode_message(message)))
    assert parsed == Release(("coap+tcp://h",), 5)


# --- block sizes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, bwt, exp, payload",
    [
        (1152, False, 6, 1024),
        (1152, True, 6, 1024),
        (100000, False, 6, 1024),
        (1153, True, 7, 1024),
        (5000, True, 7, 4096),
        (8320, True, 7, 8192),
        (8319, True, 7, 7168),
        (400, False, 4, 256),
        (100, True, 0, 16),
    ],
)
def test_block_limits(size, bwt, exp, payload):
    assert r.maximum_block_size_exp(size, bwt) == exp
    assert r.maximum_payload_size(size, bwt) == payload
    csm = CSM(size, bwt)
    assert (csm.maximum_block_size_exp, csm.maximum_payload_size) == (exp, payload)


@given(st.integers(0, 2**32), st.booleans())
def test_payload_fits_peer_limit(size, bwt):
    payload = r.maximum_payload_size(size, bwt)
    assert payload >= 16
    if size >= 1152:
        assert payload >= 1024
        assert payload + 128 <= size
    if r.maximum_block_size_exp(size, bwt) == 7:
        assert payload % 1024 == 0


def test_constants():
    assert r.DEFAULT_MAX_MESSAGE_SIZE == 1152
    assert r.DEFAULT_PORTS == {"coap+tcp": 5683, "coaps+tcp": 5684}
    assert (r.SCHEME_TCP, r.SCHEME_TLS) == ("coap+tcp", "coaps+tcp")
