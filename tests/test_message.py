"""Tests for aiocoap.message.Message: the datagram format of RFC 7252 §3
with the example exchanges of RFC 7252 Appendix A, message format errors,
and the Message API (constructor, copy, repr, cache key)."""

import re

import pytest

from aiocoap import error
from aiocoap.message import Message, NoResponse, UndecidedRemote
from aiocoap.numbers import ACK, CON, NON, RST, TransportTuning
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import OpaqueOption

GET = Code.GET
CONTENT = Code.CONTENT
EMPTY = Code.EMPTY


def roundtrip(message, expected):
    """encode() gives exactly ``expected``, and decoding that gives the
    message's fields back."""
    assert message.encode() == expected
    decoded = Message.decode(expected)
    assert decoded.mtype == message.mtype
    assert decoded.code == message.code
    assert decoded.mid == message.mid
    assert decoded.token == message.token
    assert decoded.opt.option_list() == message.opt.option_list()
    assert decoded.payload == message.payload
    assert decoded.encode() == expected
    return decoded


# --- RFC 7252 Appendix A: example exchanges ----------------------------------

TEMPERATURE = b"temperature"


def test_appendix_a_con_get_without_token():
    # CON [0x7d34] GET /temperature: version 1, T=0, TKL=0, code 0.01,
    # then Uri-Path (delta 11, length 11) "temperature".
    request = Message(_mtype=CON, _mid=0x7D34, code=GET, uri_path=["temperature"])
    decoded = roundtrip(request, b"\x40\x01\x7d\x34\xbb" + TEMPERATURE)
    assert decoded.opt.uri_path == ("temperature",)
    assert decoded.mtype is Type.CON and decoded.code is Code.GET


def test_appendix_a_piggybacked_response():
    # ACK [0x7d34] 2.05 Content "22.3 C": T=2, code 0x45, payload marker.
    response = Message(_mtype=ACK, _mid=0x7D34, code=CONTENT, payload=b"22.3 C")
    decoded = roundtrip(response, b"\x60\x45\x7d\x34\xff22.3 C")
    assert decoded.code is Code.CONTENT
    assert decoded.payload == b"22.3 C"


def test_appendix_a_request_and_response_with_token():
    # CON [0x7d35] GET /temperature with the 1-byte token 0x20 and its
    # piggybacked response echoing the token.
    request = Message(_mtype=CON, _mid=0x7D35, code=GET, _token=b"\x20", uri_path=["temperature"])
    roundtrip(request, b"\x41\x01\x7d\x35\x20\xbb" + TEMPERATURE)
    response = Message(_mtype=ACK, _mid=0x7D35, code=CONTENT, _token=b"\x20", payload=b"22.3 C")
    roundtrip(response, b"\x61\x45\x7d\x35\x20\xff22.3 C")


def test_appendix_a_piggybacked_not_found():
    # ACK [0x7d36] 4.04 Not Found (Token 0x31) "Not found"
    response = Message(_mtype=ACK, _mid=0x7D36, code=Code.NOT_FOUND, _token=b"\x31", payload=b"Not found")
    decoded = roundtrip(response, b"\x61\x84\x7d\x36\x31\xffNot found")
    assert decoded.code is Code.NOT_FOUND


def test_appendix_a_separate_response():
    # CON [0x7a10] GET /temperature (Token 0x23); empty ACK [0x7a10];
    # CON [0x23bb] 2.05 Content (Token 0x23) "22.5 C"; empty ACK [0x23bb].
    roundtrip(
        Message(_mtype=CON, _mid=0x7A10, code=GET, _token=b"\x23", uri_path=["temperature"]),
        b"\x41\x01\x7a\x10\x23\xbb" + TEMPERATURE,
    )
    empty_ack = roundtrip(Message(_mtype=ACK, _mid=0x7A10, code=EMPTY), b"\x60\x00\x7a\x10")
    assert empty_ack.code is Code.EMPTY and empty_ack.token == b""
    roundtrip(
        Message(_mtype=CON, _mid=0x23BB, code=CONTENT, _token=b"\x23", payload=b"22.5 C"),
        b"\x41\x45\x23\xbb\x23\xff22.5 C",
    )
    roundtrip(Message(_mtype=ACK, _mid=0x23BB, code=EMPTY), b"\x60\x00\x23\xbb")


def test_appendix_a_non_confirmable_exchange():
    # NON [0x7d37] GET /temperature (Token 0x74), NON [0xad7b] 2.05 (Token 0x74)
    roundtrip(
        Message(_mtype=NON, _mid=0x7D37, code=GET, _token=b"\x74", uri_path=["temperature"]),
        b"\x51\x01\x7d\x37\x74\xbb" + TEMPERATURE,
    )
    roundtrip(
        Message(_mtype=NON, _mid=0xAD7B, code=CONTENT, _token=b"\x74", payload=b"22.3 C"),
        b"\x51\x45\xad\x7b\x74\xff22.3 C",
    )


def test_reset_message():
    # RFC 7252 §4.2: a Reset is an empty message of type 3
    decoded = roundtrip(Message(_mtype=RST, _mid=0x1234, code=EMPTY), b"\x70\x00\x12\x34")
    assert decoded.mtype is Type.RST


def test_eight_byte_token_and_all_header_bits():
    token = bytes(range(1, 9))
    message = Message(_mtype=NON, _mid=0xFFFF, code=Code(0xFF), _token=token)
    roundtrip(message, b"\x58\xff\xff\xff" + token)


def test_options_and_payload_together():
    message = Message(
        _mtype=CON, _mid=1, code=Code.POST, _token=b"tk",
        uri_host="example.com", uri_path=["a", "b"], uri_query=["x=1"],
        content_format=0, payload=b"data",
    )
    roundtrip(
        message,
        b"\x42\x02\x00\x01tk"
        b"\x3bexample.com"  # Uri-Host (3)
        b"\x81a\x01b"  # Uri-Path (11) twice
        b"\x10"  # Content-Format (12), empty value = 0
        b"\x33x=1"  # Uri-Query (15)
        b"\xffdata",
    )


def test_decode_keeps_remote_and_accepts_buffers():
    raw = b"\x60\x45\x7d\x34\xff22.3 C"
    remote = object()
    for buffer in (raw, bytearray(raw), memoryview(raw)):
        message = Message.decode(buffer, remote)
        assert message.remote is remote
        assert type(message.payload) is bytes and type(message.token) is bytes
    assert Message.decode(raw).remote is None


def test_decode_records_the_datagram_size_and_copies_forget_it():
    # Uri-Port 0 sent in two bytes: re-encoding would make it 0 bytes long,
    # so only the decoder knows what came in.
    raw = bytes((0x44, 0x01, 0x00, 0x01)) + b"abcd" + bytes((0x72, 0, 0, 0x41)) + b"s"
    message = Message.decode(raw)
    assert message.received_size == len(raw) == 13
    assert len(message.encode()) == 11
    assert message.copy().received_size is None
    assert Message(code=Code.GET).received_size is None


def test_decode_unknown_code_and_options():
    # the unassigned code 2.30 (0x5e), then an empty option 2048 (delta 14 + 0x06f3)
    raw = b"\x40\x5e\x00\x01" + b"\xe0\x06\xf3"
    message = Message.decode(raw)
    assert message.code == 0x5E and type(message.code) is Code
    assert not message.code.is_known()
    assert message.opt.get_option(2048)[0].value == b""
    assert message.encode() == raw


# --- RFC 7252 §3: message format errors --------------------------------------


def unparsable(raw):
    with pytest.raises(error.UnparsableMessage) as excinfo:
        Message.decode(raw)
    return excinfo.value


@pytest.mark.parametrize("raw", [b"", b"\x40", b"\x40\x01", b"\x40\x01\x00"])
def test_shorter_than_header(raw):
    e = unparsable(raw)
    assert e.mtype is None and e.mid is None


@pytest.mark.parametrize("first", [0x00, 0x80, 0xC0, 0x30, 0xB0])
def test_wrong_version(first):
    # RFC 7252 §3: unknown versions are silently ignored, hence no mtype/mid
    # to answer with a Reset
    e = unparsable(bytes((first, 0x01, 0x12, 0x34)))
    assert e.mtype is None and e.mid is None


@pytest.mark.parametrize("tkl", range(9, 16))
def test_reserved_token_lengths(tkl):
    e = unparsable(bytes((0x40 | tkl, 0x01, 0x12, 0x34)) + bytes(16))
    assert e.mtype is Type.CON and e.mid == 0x1234


@pytest.mark.parametrize("tkl,available", [(1, 0), (4, 3), (8, 7), (8, 0)])
def test_truncated_token(tkl, available):
    e = unparsable(bytes((0x50 | tkl, 0x01, 0xAB, 0xCD)) + bytes(available))
    assert e.mtype is Type.NON and e.mid == 0xABCD


@pytest.mark.parametrize(
    "raw",
    [
        b"\x41\x00\x12\x34\x01",  # empty code with a token
        b"\x40\x00\x12\x34\xff",  # empty code with a payload marker
        b"\x40\x00\x12\x34\xffx",  # ... and payload
        b"\x40\x00\x12\x34\xb1a",  # ... with an option
    ],
)
def test_empty_message_with_extra_bytes(raw):
    e = unparsable(raw)
    assert e.mtype is Type.CON and e.mid == 0x1234


@pytest.mark.parametrize(
    "tail",
    [
        b"\xf0",  # delta nibble 15
        b"\x1f",  # length nibble 15
        b"\xd0",  # extended delta truncated
        b"\xe0\x01",
        b"\x0d",  # extended length truncated
        b"\x0e\x00",
        b"\xb5temp",  # value truncated
        b"\xff",  # payload marker without payload
        b"\xb4temp\xff",
    ],
)
def test_option_format_errors(tail):
    e = unparsable(b"\x62\x45\x00\x07ab" + tail)
    assert e.mtype is Type.ACK and e.mid == 7


def test_unparsable_is_an_aiocoap_error():
    assert issubclass(error.UnparsableMessage, error.Error)


def test_message_with_only_header_and_token():
    message = Message.decode(b"\x42\x01\x00\x01ab")
    assert message.token == b"ab" and message.payload == b"" and message.opt.option_list() == []


# --- encoding errors ---------------------------------------------------------


def test_encode_requires_header_fields():
    with pytest.raises(TypeError):
        Message(code=GET).encode()
    with pytest.raises(TypeError):
        Message(code=GET, _mtype=CON).encode()
    with pytest.raises(TypeError):
        Message(_mtype=CON, _mid=1).encode()


@pytest.mark.parametrize("mid", [-1, 0x10000])
def test_encode_rejects_out_of_range_mid(mid):
    with pytest.raises(ValueError):
        Message(code=GET, _mtype=CON, _mid=mid).encode()


def test_encode_rejects_long_token():
    with pytest.raises(ValueError):
        Message(code=GET, _mtype=CON, _mid=1, _token=bytes(9)).encode()


# --- constructor -------------------------------------------------------------


def test_constructor_defaults():
    message = Message()
    assert message.mtype is None
    assert message.mid is None
    assert message.code is None
    assert message.token == b""
    assert message.payload == b""
    assert message.remote is None
    assert message.request is None
    assert message.transport_tuning is None
    assert message.opt.option_list() == []


def test_constructor_normalizes_types():
    message = Message(_mtype=0, code=69)
    assert message.mtype is Type.CON
    assert message.code is Code.CONTENT
    message = Message(payload=bytearray(b"x"), _token=memoryview(b"t"))
    assert message.payload == b"x" and type(message.payload) is bytes
    assert message.token == b"t" and type(message.token) is bytes


def test_constructor_rejects_non_bytes():
    with pytest.raises(TypeError):
        Message(payload="text")
    with pytest.raises(TypeError):
        Message(_token="t")


def test_constructor_option_keywords():
    message = Message(code=GET, uri_path=["a"], observe=0)
    assert message.opt.uri_path == ("a",)
    assert message.opt.observe == 0
    message = Message(code=CONTENT, content_format=50, etag=b"e", max_age=0, block2=(0, True, 6))
    assert message.opt.content_format == 50
    assert message.opt.etag == b"e"
    assert message.opt.max_age == 0
    assert message.opt.block2 == (0, True, 6)


def test_constructor_unknown_keyword():
    with pytest.raises(TypeError):
        Message(code=GET, uri_paht=["a"])
    with pytest.raises(TypeError):
        Message(code=GET, remote=None)


def test_constructor_transport_tuning():
    tuning = TransportTuning(ACK_TIMEOUT=0.5)
    assert Message(transport_tuning=tuning).transport_tuning is tuning


def test_constructor_uri_sets_options_and_remote():
    message = Message(code=GET, uri="coap://localhost/other/separate")
    assert message.opt.uri_host == "localhost"
    assert message.opt.uri_path == ("other", "separate")
    assert message.remote == UndecidedRemote("coap", "localhost")
    assert message.remote.uri_base == "coap://localhost"


def test_uri_and_option_keywords_combine():
    message = Message(code=GET, uri="coap://h/a", observe=0)
    assert message.opt.uri_path == ("a",) and message.opt.observe == 0


# --- copy ----------------------------------------------------------------------


def test_copy_is_independent():
    original = Message(_mtype=CON, _mid=1, code=GET, _token=b"t", uri_path=["a"], payload=b"p")
    copy = original.copy()
    assert copy is not original
    assert copy.encode() == original.encode()
    copy.opt.uri_path = ("b",)
    assert original.opt.uri_path == ("a",)


def test_copy_with_keywords():
    original = Message(_mtype=CON, _mid=1, code=GET, _token=b"t", uri="coap://h/a")
    copy = original.copy(code=CONTENT, mtype=ACK, mid=2, token=b"u", payload=bytearray(b"x"), observe=3)
    assert (copy.code, copy.mtype, copy.mid, copy.token, copy.payload) == (CONTENT, ACK, 2, b"u", b"x")
    assert copy.opt.observe == 3 and copy.opt.uri_path == ("a",)
    assert original.opt.observe is None and original.code is GET
    assert copy.remote == original.remote
    moved = original.copy(uri="coap://other/b")
    assert moved.opt.uri_path == ("b",) and moved.opt.uri_host == "other"
    assert original.opt.uri_host == "h"


def test_copy_rejects_unknown_keywords_and_bad_values():
    message = Message(code=GET)
    with pytest.raises(TypeError):
        message.copy(nonsense=1)
    with pytest.raises(TypeError):
        message.copy(payload="text")


def test_copy_of_decoded_message():
    decoded = Message.decode(b"\x41\x01\x7d\x35\x20\xbb" + TEMPERATURE, "remote")
    copy = decoded.copy(mid=9)
    assert copy.remote == "remote"
    assert copy.encode() == b"\x41\x01\x00\x09\x20\xbb" + TEMPERATURE


# --- repr ----------------------------------------------------------------------

ADDRESS = r"0x[0-9a-f]+"


def test_repr_of_fresh_request_as_in_tour():
    message = Message(code=GET, uri="coap://localhost/other/separate")
    assert re.fullmatch(
        rf"<aiocoap\.Message at {ADDRESS}: no mtype, GET \(no MID, empty token\) remote None, 2 option\(s\)>",
        repr(message),
    )
    assert str(message) == repr(message)


def test_repr_of_response_as_in_tour():
    class FakeRemote:
        def __repr__(self):
            return "<UDP6EndpointAddress [::ffff:127.0.0.1]:5683 with local address>"

    # CON 2.05, MID 51187 (0xc7f3), token 00008199, 186 bytes payload
    raw = b"\x44\x45\xc7\xf3" + b"\x00\x00\x81\x99" + b"\xff" + b"x" * 186
    message = Message.decode(raw, FakeRemote())
    assert re.fullmatch(
        rf"<aiocoap\.Message at {ADDRESS}: Type\.CON 2\.05 Content \(MID 51187, token 00008199\) "
        r"remote <UDP6EndpointAddress \[::ffff:127\.0\.0\.1\]:5683 with local address>, "
        r"186 byte\(s\) payload>",
        repr(message),
    )


def test_repr_with_options_and_payload():
    message = Message(_mtype=ACK, _mid=3, code=Code.NOT_FOUND, uri_path=["a"], payload=b"xy")
    assert re.fullmatch(
        rf"<aiocoap\.Message at {ADDRESS}: Type\.ACK 4\.04 Not Found \(MID 3, empty token\) "
        r"remote None, 1 option\(s\), 2 byte\(s\) payload>",
        repr(message),
    )
    assert repr(Message()).endswith(": no mtype, no code (no MID, empty token) remote None>")


# --- cache key (manual doctest, RFC 7252 §5.6) -----------------------------------


def test_cache_key_as_in_manual():
    m1 = Message(code=GET)
    m2 = Message(code=GET)
    m1.opt.uri_path = ("s", "1")
    m2.opt.uri_path = ("s", "1")
    m1.opt.size1 = 10  # the only no-cache-key option in the base spec
    m2.opt.size1 = 20
    assert m1.get_cache_key() == m2.get_cache_key()
    m2.opt.etag = b"000"
    assert m1.get_cache_key() != m2.get_cache_key()
    ignore = [OptionNumber.ETAG]
    assert m1.get_cache_key(ignore) == m2.get_cache_key(ignore)


def test_cache_key_details():
    m1 = Message(code=GET, uri_path=["a"])
    m2 = Message(code=Code.FETCH, uri_path=["a"])
    assert m1.get_cache_key() != m2.get_cache_key()
    hash(m1.get_cache_key())
    # Echo (RFC 9175) and Size2 are NoCacheKey as well; unsafe options count
    m3 = Message(code=GET, uri_path=["a"], echo=b"e", size2=5)
    assert m3.get_cache_key() == m1.get_cache_key()
    m4 = Message(code=GET, uri_path=["a"], observe=0)
    assert m4.get_cache_key() != m1.get_cache_key()
    # the order of repeated options is part of the key
    assert Message(code=GET, uri_path=["a", "b"]).get_cache_key() != Message(
        code=GET, uri_path=["b", "a"]
    ).get_cache_key()
    # unknown options count unless they are NoCacheKey
    m5 = Message(code=GET, uri_path=["a"])
    m5.opt.add_option(OpaqueOption(OptionNumber(65020), b"x"))
    assert m5.get_cache_key() == m1.get_cache_key()
    m5.opt.add_option(OpaqueOption(OptionNumber(2048), b"x"))
    assert m5.get_cache_key() != m1.get_cache_key()


# --- misc ----------------------------------------------------------------------


def test_noresponse_sentinel():
    assert repr(NoResponse) == "<NoResponse>"


def test_unresolved_remote_compatibility():
    message = Message(code=GET, uri="coaps://example.com:1234/x")
    assert message.unresolved_remote == "example.com:1234"
    message.unresolved_remote = "other:99"
    assert message.remote == UndecidedRemote("coaps", "other:99")
    message.unresolved_remote = None
    assert message.remote is None
    fresh = Message(code=GET)
    fresh.unresolved_remote = "[::1]"
    assert fresh.remote == UndecidedRemote("coap", "[::1]")


def test_remote_assignment():
    message = Message(code=GET, uri="coap://h/")
    sentinel = object()
    message.remote = sentinel
    assert message.remote is sentinel
    message.remote = UndecidedRemote("coap+tcp", "other")
    assert message.remote == UndecidedRemote("coap+tcp", "other")


def test_undecided_remote_from_pathless_uri():
    assert UndecidedRemote.from_pathless_uri("coap+tcp://[::1]:1234") == UndecidedRemote("coap+tcp", "[::1]:1234")
    assert UndecidedRemote.from_pathless_uri("coap://h/") == UndecidedRemote("coap", "h")
    for bad in ("coap://h/path", "coap://h?q", "coap:///", "coap://h#f"):
        with pytest.raises(error.MalformedUrlError):
            UndecidedRemote.from_pathless_uri(bad)


def test_message_decode_does_not_depend_on_slicing():
    original = Message(code=Code.CONTENT, _mtype=1, _mid=7, _token=b"tok", observe=70000, max_age=5, payload=b"body")
    data = original.encode()
    decoded = Message.decode(data)
    assert decoded.opt.observe == 70000 and decoded.opt.max_age == 5
    assert decoded.payload == b"body" and decoded.token == b"tok"
    assert decoded.encode() == data
    assert Message.decode(bytearray(data)).encode() == data
