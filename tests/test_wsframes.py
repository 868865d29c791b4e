"""aiocoap.transports.wsframes: the RFC 6455 framing of CoAP over
WebSockets. Round trips under hypothesis (any message, masked or not, cut
anywhere), the RFC's own examples, and what a hostile peer sends: unmasked
client frames, lengths beyond the limit, fragmented or oversized control
frames, reserved opcodes and bits, broken fragmentation, bad Close frames.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocoap.transports import wsframes
from aiocoap.transports.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    FrameDecoder,
    FrameEncoder,
    FrameError,
    MaskKeys,
    MessageTooBig,
    Ping,
    Pong,
    UnsupportedData,
    apply_mask,
)
from fuzzing import fuzz_settings

pytestmark = pytest.mark.core

ZERO_KEYS = MaskKeys(lambda n: bytes(n))


def raw_frame(opcode, payload, *, fin=True, mask=None, rsv=0, length=None):
    """A frame built by hand (``length`` overrides the announced length)."""
    length = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if mask is None:
        return head + payload
    return head + mask + apply_mask(payload, mask)


def server_decoder(limit=1000):
    return FrameDecoder(masked=True, max_message_size=limit)


def client_decoder(limit=1000):
    return FrameDecoder(masked=False, max_message_size=limit)


def feed_in(decoder, data, cuts):
    events = []
    start = 0
    for end in sorted(cuts) + [len(data)]:
        if end > start:
            events.extend(decoder.feed(data[start:end]))
            start = end
    return events


# --- round trips ---------------------------------------------------------------------


@fuzz_settings(200)
@given(
    messages=st.lists(st.binary(max_size=70000).filter(bool) | st.binary(max_size=130), max_size=6),
    masked=st.booleans(),
    cuts=st.lists(st.integers(0, 200000), max_size=8),
    seed=st.binary(min_size=4, max_size=4),
)
def test_messages_round_trip_however_cut(messages, masked, cuts, seed):
    encoder = FrameEncoder(MaskKeys(lambda n: (seed * n)[:n]) if masked else None)
    data = b"".join(encoder.binary(m) for m in messages)
    decoder = FrameDecoder(masked=masked, max_message_size=70000)
    assert feed_in(decoder, data, [c for c in cuts if c < len(data)]) == messages
    assert decoder.failure is None and decoder.buffered == 0


@fuzz_settings(100)
@given(message=st.binary(max_size=3000), pieces=st.integers(1, 10), control=st.binary(max_size=125))
def test_fragmented_messages_are_put_together_around_control_frames(message, pieces, control):
    step = max(1, len(message) // pieces)
    # (an empty last fragment: at least two frames, with the Ping between)
    parts = [message[i:i + step] for i in range(0, max(len(message), 1), step)] + [b""]
    key = b"\x01\x02\x03\x04"
    data = b""
    for i, part in enumerate(parts):
        data += raw_frame(OP_BINARY if i == 0 else OP_CONT, part, fin=i == len(parts) - 1, mask=key)
        if i == 0:
            data += raw_frame(OP_PING, control, mask=key)
    decoder = server_decoder(limit=3000)
    assert feed_in(decoder, data, list(range(1, len(data), 7))) == [Ping(control), message]
    assert decoder.buffered == 0


def test_the_rfc_examples():
    # RFC 6455 §5.7: unmasked and masked "Hello", a fragmented one, a ping
    assert client_decoder().feed(bytes.fromhex("810548656c6c6f")) == []  # (text: refused)
    assert client_decoder().feed(bytes.fromhex("820548656c6c6f")) == [b"Hello"]
    assert server_decoder().feed(bytes.fromhex("828537fa213d7f9f4d5158")) == [b"Hello"]
    decoder = client_decoder()
    assert decoder.feed(bytes.fromhex("020348656c")) == []
    assert decoder.buffered == 3
    assert decoder.feed(bytes.fromhex("80026c6f")) == [b"Hello"]
    assert client_decoder().feed(bytes.fromhex("890548656c6c6f")) == [Ping(b"Hello")]
    assert client_decoder().feed(bytes.fromhex("8a0548656c6c6f")) == [Pong(b"Hello")]
    # 256 and 65536 bytes: 16-bit and 64-bit lengths
    assert FrameEncoder().binary(bytes(256))[:4].hex() == "827e0100"
    assert FrameEncoder().binary(bytes(65536))[:10].hex() == "827f0000000000010000"


def test_client_frames_are_masked_with_fresh_keys():
    drawn = []

    def random_bytes(n):
        drawn.append(n)
        return bytes(range(n))

    keys = MaskKeys(random_bytes, batch=2)
    encoder = FrameEncoder(keys)
    first, second, third = (encoder.binary(b"\x00\x00\x00\x00\x00") for _ in range(3))
    assert first[2:6] == bytes((0, 1, 2, 3)) and first[6:] == bytes((0, 1, 2, 3, 0))
    assert second[2:6] == bytes((4, 5, 6, 7))
    assert third[2:6] == bytes((0, 1, 2, 3))  # a new batch
    assert drawn == [8, 8]
    assert first[1] & 0x80


def test_close_frames():
    decoder = server_decoder()
    events = decoder.feed(raw_frame(OP_CLOSE, struct.pack("!H", 1001) + "grüß".encode(), mask=b"abcd")
                          + raw_frame(OP_BINARY, b"after", mask=b"abcd"))
    assert events == [Close(1001, "grüß")]
    assert decoder.close_received == Close(1001, "grüß") and decoder.done
    assert decoder.feed(raw_frame(OP_BINARY, b"more", mask=b"abcd")) == []
    assert client_decoder().feed(raw_frame(OP_CLOSE, b"")) == [Close(None)]
    assert FrameEncoder().close(1000, "x" * 200) == raw_frame(OP_CLOSE, struct.pack("!H", 1000) + b"x" * 123)
    # a reason cut at the limit does not split a character
    assert len(wsframes.close_payload(1000, "é" * 100)) == 2 + 122


# --- hostile input -------------------------------------------------------------------------


def failure_of(decoder, data):
    events = decoder.feed(data)
    assert decoder.failure is not None, events
    assert decoder.done and decoder.buffered == 0
    assert decoder.feed(raw_frame(OP_BINARY, b"x", mask=b"abcd")) == []
    return events, decoder.failure


def test_unmasked_client_frame_is_a_protocol_error():
    events, failure = failure_of(server_decoder(), raw_frame(OP_BINARY, b"hello"))
    assert failure.close_code == wsframes.PROTOCOL_ERROR and "unmasked" in str(failure)


def test_masked_server_frame_is_a_protocol_error():
    _, failure = failure_of(client_decoder(), raw_frame(OP_BINARY, b"hello", mask=b"abcd"))
    assert failure.close_code == wsframes.PROTOCOL_ERROR


def test_oversized_length_is_refused_from_the_header():
    for length in (1001, 70000, 1 << 40):
        decoder = server_decoder(limit=1000)
        # only the header: nothing of the payload has to come for the refusal
        _, failure = failure_of(decoder, raw_frame(OP_BINARY, b"", mask=b"abcd", length=length)[:14])
        assert isinstance(failure, MessageTooBig) and failure.close_code == wsframes.MESSAGE_TOO_BIG
    _, failure = failure_of(client_decoder(), bytes.fromhex("827f8000000000000000"))
    assert failure.close_code == wsframes.PROTOCOL_ERROR


def test_fragments_above_the_limit_are_refused():
    decoder = server_decoder(limit=100)
    assert decoder.feed(raw_frame(OP_BINARY, b"a" * 60, fin=False, mask=b"abcd")) == []
    assert decoder.buffered == 60
    _, failure = failure_of(decoder, raw_frame(OP_CONT, b"", fin=False, mask=b"abcd", length=41)[:6])
    assert isinstance(failure, MessageTooBig)


@pytest.mark.parametrize("frame, text", [
    (raw_frame(OP_PING, b"p", fin=False), "fragmented control"),
    (raw_frame(OP_CLOSE, b"", fin=False), "fragmented control"),
    (raw_frame(OP_PING, b"p" * 126), "control frame of 126"),
    (raw_frame(OP_PONG, b"", length=1 << 20)[:10], "control frame of"),
    (raw_frame(0x3, b""), "reserved opcode"),
    (raw_frame(0xB, b""), "reserved opcode"),
    (raw_frame(0xF, b""), "reserved opcode"),
    (raw_frame(OP_BINARY, b"x", rsv=0x40), "reserved bits"),
    (raw_frame(OP_BINARY, b"x", rsv=0x10), "reserved bits"),
    (raw_frame(OP_CONT, b"x"), "without a message"),
    (raw_frame(OP_BINARY, b"x", fin=False) + raw_frame(OP_BINARY, b"y"), "before the fragmented"),
    (raw_frame(OP_CLOSE, b"\x03"), "1-byte"),
    (raw_frame(OP_CLOSE, struct.pack("!H", 1005)), "invalid close code 1005"),
    (raw_frame(OP_CLOSE, struct.pack("!H", 999)), "invalid close code"),
    (raw_frame(OP_CLOSE, struct.pack("!H", 5000)), "invalid close code"),
])
def test_protocol_errors(frame, text):
    events, failure = failure_of(client_decoder(), frame)
    assert events == []
    assert failure.close_code == wsframes.PROTOCOL_ERROR and text in str(failure), failure


def test_text_and_bad_utf8():
    _, failure = failure_of(client_decoder(), raw_frame(OP_TEXT, b"hi"))
    assert isinstance(failure, UnsupportedData) and failure.close_code == wsframes.UNSUPPORTED_DATA
    _, failure = failure_of(client_decoder(), raw_frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"))
    assert failure.close_code == wsframes.INVALID_DATA


def test_messages_before_a_violation_are_kept():
    decoder = client_decoder()
    events = decoder.feed(raw_frame(OP_BINARY, b"one") + raw_frame(OP_PING, b"") + raw_frame(0x7, b""))
    assert events == [b"one", Ping(b"")]
    assert isinstance(decoder.failure, FrameError)


def test_what_is_held_is_bounded():
    decoder = server_decoder(limit=1000)
    frame = raw_frame(OP_BINARY, b"z" * 1000, mask=b"abcd")
    for i in range(len(frame) - 1):
        assert decoder.feed(frame[i:i + 1]) == []
        assert decoder.buffered == i + 1 <= 1000 + wsframes.MAX_HEADER
    assert decoder.feed(frame[-1:]) == [b"z" * 1000]
    assert decoder.buffered == 0
    decoder.feed(frame[:500])
    decoder.discard()
    assert decoder.buffered == 0
