"""Tests for aiocoap.options: the option part of the wire format (RFC 7252
§3.1), treatment of malformed and unknown options (RFC 7252 §5.4) and the
typed views on ``Message.opt``."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocoap import error
from aiocoap.numbers.contentformat import ContentFormat
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.optiontypes import BlockOption, OpaqueOption, StringOption, UintOption
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.options import Options


def encode(*options):
    opt = Options()
    for option in options:
        opt.add_option(option)
    return opt.encode()


def decode(raw):
    opt = Options()
    payload = opt.decode(raw)
    return opt, payload


# --- RFC 7252 §3.1: option delta and length ----------------------------------


@pytest.mark.parametrize(
    "delta,header",
    [
        (0, b"\x00"),
        (12, b"\xc0"),
        (13, b"\xd0\x00"),
        (14, b"\xd0\x01"),
        (268, b"\xd0\xff"),
        (269, b"\xe0\x00\x00"),
        (270, b"\xe0\x00\x01"),
        # the largest delta that stays within 16-bit option numbers
        (65534, b"\xe0\xfe\xf1"),
    ],
)
def test_extended_option_delta(delta, header):
    # An empty If-Match (number 1) first, then an empty unknown option at
    # 1 + delta: the second header shows the delta encoding alone.
    first = OpaqueOption(OptionNumber.IF_MATCH, b"")
    second = OpaqueOption(OptionNumber(1 + delta), b"")
    raw = encode(first, second)
    assert raw == b"\x10" + header
    opt, payload = decode(raw)
    assert payload == b""
    assert [int(o.number) for o in opt.option_list()] == [1, 1 + delta]


@pytest.mark.parametrize(
    "number,value,header",
    [
        (OptionNumber.MAX_AGE, b"\x3b", b"\xd1\x01"),  # delta 14 after nothing
        (OptionNumber.PROXY_SCHEME, b"coap", b"\xd4\x1a"),
        (268, b"x" * 12, b"\xdc\xff"),  # the last delta and length of the one byte form
        (268, b"x" * 13, b"\xdd\xff\x00"),  # ... and a length just beyond it
        (269, b"x" * 12, b"\xec\x00\x00"),
    ],
)
def test_one_byte_extended_delta_with_values(number, value, header):
    # The extended delta together with non-empty values of either length
    # form, as first option (delta = number).
    option = OpaqueOption(OptionNumber(number), value)
    raw = encode(option)
    assert raw == header + value
    opt, payload = decode(raw + b"\xffp")
    assert payload == b"p"
    assert [(int(o.number), o.encode()) for o in opt.option_list()] == [(number, value)]


def test_option_numbers_beyond_16_bits_are_rejected():
    with pytest.raises(ValueError):
        encode(OpaqueOption(OptionNumber(65536), b""))
    with pytest.raises(ValueError):
        encode(OpaqueOption(OptionNumber(65805), b""))
    # the extended delta can express up to 65804, which is no option number
    with pytest.raises(error.UnparsableMessage):
        decode(b"\xe0\xff\xff")
    with pytest.raises(error.UnparsableMessage):
        decode(b"\xe0\xfe\xf2\x10")  # 65535, then one more
    opt, _ = decode(b"\xe0\xfe\xf2")
    assert opt.get_option(65535)[0].value == b""


@pytest.mark.parametrize(
    "length,header",
    [
        (0, b"\x00"),
        (12, b"\x0c"),
        (13, b"\x0d\x00"),
        (268, b"\x0d\xff"),
        (269, b"\x0e\x00\x00"),
        (65804, b"\x0e\xff\xff"),
    ],
)
def test_extended_option_length(length, header):
    value = bytes(i & 0xFF for i in range(length))
    # option 2048 is an unknown elective option, hence opaque of any length;
    # its delta from 0 is 2048 (14 + two bytes of 2048 - 269).
    raw = encode(OpaqueOption(OptionNumber(2048), value))
    delta_bytes = (2048 - 269).to_bytes(2, "big")
    assert raw == bytes((0xE0 | header[0],)) + delta_bytes + header[1:] + value
    opt, payload = decode(raw)
    assert opt.get_option(2048)[0].value == value


def test_option_length_too_large_is_rejected():
    with pytest.raises(ValueError):
        encode(OpaqueOption(OptionNumber(2048), bytes(65805)))


def test_both_extended_delta_and_length():
    # delta 100 (one extra byte) and length 269 (two extra bytes): the
    # extended delta comes before the extended length. (Option 100 is
    # unassigned, so any length is accepted.)
    raw = encode(OpaqueOption(OptionNumber(100), b"x" * 269))
    assert raw[:4] == b"\xde\x57\x00\x00"
    assert len(raw) == 4 + 269
    opt, _ = decode(raw)
    assert opt.get_option(100)[0].value == b"x" * 269


def test_options_are_sorted_by_number_on_encode():
    raw = encode(
        UintOption(OptionNumber.CONTENT_FORMAT, 0),
        StringOption(OptionNumber.URI_HOST, "h"),
    )
    # Uri-Host (3) first, then Content-Format (delta 9, empty value)
    assert raw == b"\x31h\x90"


def test_repeated_options_keep_their_order():
    opt = Options()
    opt.uri_path = ("b", "a", "c")
    raw = opt.encode()
    assert raw == b"\xb1b\x01a\x01c"
    decoded, _ = decode(raw)
    assert decoded.uri_path == ("b", "a", "c")


def test_repeated_options_added_interleaved_keep_order():
    opt = Options()
    opt.add_option(StringOption(OptionNumber.URI_QUERY, "q1"))
    opt.add_option(StringOption(OptionNumber.URI_PATH, "p1"))
    opt.add_option(StringOption(OptionNumber.URI_QUERY, "q2"))
    opt.add_option(StringOption(OptionNumber.URI_PATH, "p2"))
    assert [(int(o.number), o.value) for o in opt.option_list()] == [
        (11, "p1"), (11, "p2"), (15, "q1"), (15, "q2"),
    ]
    decoded, _ = decode(opt.encode())
    assert decoded.uri_path == ("p1", "p2")
    assert decoded.uri_query == ("q1", "q2")


def test_payload_after_marker_is_returned():
    opt, payload = decode(b"\xb1a\xffhello")
    assert opt.uri_path == ("a",)
    assert payload == b"hello"


def test_decode_accepts_bytearray_and_memoryview():
    for raw in (bytearray(b"\xb1a\xffhi"), memoryview(b"\xb1a\xffhi")):
        opt, payload = decode(raw)
        assert opt.uri_path == ("a",) and payload == b"hi"
        assert type(payload) is bytes


# --- RFC 7252 §3.1: message format errors in the option part -----------------


@pytest.mark.parametrize(
    "raw",
    [
        b"\xf0",  # delta nibble 15 with length nibble 0
        b"\xf1x",  # delta nibble 15 with length nibble 1
        b"\x1f",  # length nibble 15
        b"\xd0",  # delta 13 without its extra byte
        b"\xe0\x00",  # delta 14 with only one extra byte
        b"\x0d",  # length 13 without its extra byte
        b"\x0e\x01",  # length 14 with only one extra byte
        b"\x05abc",  # value truncated
        b"\xff",  # payload marker without payload
        b"\xb1a\xff",  # the same after an option
    ],
)
def test_format_errors_raise_unparsable(raw):
    with pytest.raises(error.UnparsableMessage):
        decode(raw)


# --- RFC 7252 §5.4: unknown and invalid options ------------------------------


@pytest.mark.parametrize("number", [2048, 2050, 2051, 65000, 65001, 64999])
def test_unknown_options_survive_decode_encode(number):
    raw = encode(
        StringOption(OptionNumber.URI_PATH, "x"),
        OpaqueOption(OptionNumber(number), b"\x00\xffvalue"),
        OpaqueOption(OptionNumber(number), b""),
    )
    opt, _ = decode(raw)
    unknown = opt.get_option(number)
    assert [o.value for o in unknown] == [b"\x00\xffvalue", b""]
    assert all(isinstance(o, OpaqueOption) for o in unknown)
    assert unknown[0].number == number
    assert opt.invalid_options == []
    assert opt.encode() == raw


def test_unknown_critical_and_elective_are_distinguishable():
    opt, _ = decode(encode(OpaqueOption(OptionNumber(2050), b"a"), OpaqueOption(OptionNumber(2051), b"b")))
    numbers = [o.number for o in opt.option_list()]
    assert [n.is_critical() for n in numbers] == [False, True]


@pytest.mark.parametrize(
    "number,value",
    [
        (OptionNumber.URI_PORT, b"\x01\x02\x03"),  # 0-2 bytes
        (OptionNumber.CONTENT_FORMAT, b"\x01\x02\x03"),  # 0-2 bytes
        (OptionNumber.ACCEPT, b"\x01\x02\x03"),  # 0-2 bytes
        (OptionNumber.URI_PATH, b"\xff\xfe"),  # not UTF-8
        (OptionNumber.URI_HOST, b"\xc3"),  # truncated UTF-8 sequence
        (OptionNumber.URI_HOST, b""),  # 1-255 bytes
        (OptionNumber.ETAG, b"123456789"),  # 1-8 bytes
        (OptionNumber.ETAG, b""),
        (OptionNumber.BLOCK2, b"\x00\x00\x00\x01"),  # 0-3 bytes
        (OptionNumber.BLOCK1, b"\x00\x00\x00\x01"),
        (OptionNumber.OBSERVE, b"\x00\x00\x00\x01"),  # 0-3 bytes
        (OptionNumber.MAX_AGE, b"\x00\x00\x00\x00\x01"),  # 0-4 bytes
        (OptionNumber.IF_NONE_MATCH, b"\x00"),  # empty
        (OptionNumber.IF_MATCH, b"123456789"),  # 0-8 bytes
        (OptionNumber.HOP_LIMIT, b""),  # exactly 1 byte
        (OptionNumber.ECHO, b""),  # 1-40 bytes
        (OptionNumber.PROXY_SCHEME, b""),  # 1-255 bytes
        (OptionNumber.LOCATION_PATH, b"x" * 256),  # 0-255 bytes
    ],
)
def test_invalid_values_go_to_invalid_options(number, value):
    raw = encode(
        OpaqueOption(number, value),
        OpaqueOption(OptionNumber(2048), b"after"),
    ) + b"\xffpayload"
    opt, payload = decode(raw)
    assert opt.invalid_options == [(number, value)]
    assert opt.get_option(number) == []
    assert number not in opt
    # decoding went on after the invalid option
    assert opt.get_option(2048)[0].value == b"after"
    assert payload == b"payload"
    # an invalid option is no longer part of the encoded options
    assert opt.encode() == encode(OpaqueOption(OptionNumber(2048), b"after"))


def test_invalid_option_among_valid_repetitions():
    raw = encode(
        OpaqueOption(OptionNumber.URI_PATH, b"a"),
        OpaqueOption(OptionNumber.URI_PATH, b"\xff"),
        OpaqueOption(OptionNumber.URI_PATH, b"c"),
    )
    opt, _ = decode(raw)
    assert opt.uri_path == ("a", "c")
    assert opt.invalid_options == [(OptionNumber.URI_PATH, b"\xff")]
    assert opt.invalid_options[0][0].is_critical()


def test_decoded_uints_stay_valid_when_reencoded():
    # found by the fuzzer: a valid 2-byte OCF-Content-Format-Version of 215
    # was re-encoded as 1 byte, which the registry does not allow
    raw = encode(
        OpaqueOption(OptionNumber.OCF_CONTENT_FORMAT_VERSION, b"\x00\xd7"),
        OpaqueOption(OptionNumber.HOP_LIMIT, b"\x00"),
    )
    opt, _ = decode(raw)
    assert opt.invalid_options == []
    assert opt.hop_limit == 0
    assert opt.encode() == raw


def test_valid_boundary_lengths_are_accepted():
    raw = encode(
        OpaqueOption(OptionNumber.ETAG, b"12345678"),
        OpaqueOption(OptionNumber.URI_PORT, b""),
        OpaqueOption(OptionNumber.BLOCK2, b"\x01\x02\x03"),
        OpaqueOption(OptionNumber.LOCATION_PATH, b"x" * 255),
    )
    opt, _ = decode(raw)
    assert opt.invalid_options == []
    assert opt.etag == b"12345678"
    assert opt.uri_port == 0
    assert opt.block2 == (0x1020, False, 3)
    assert opt.location_path == ("x" * 255,)


def test_decoded_options_have_their_registry_types():
    opt = Options()
    opt.uri_host = "example.com"
    opt.uri_port = 61616
    opt.etag = b"\x01"
    opt.observe = 5
    opt.block2 = (2, True, 6)
    opt.content_format = 60
    decoded, _ = decode(opt.encode())
    types = {int(o.number): type(o) for o in decoded.option_list()}
    assert types == {
        3: StringOption, 7: UintOption, 4: OpaqueOption, 6: UintOption,
        23: BlockOption, 12: UintOption,
    }
    assert all(type(o.number) is OptionNumber for o in decoded.option_list())
    assert decoded == opt


# --- typed views -------------------------------------------------------------


@pytest.mark.parametrize(
    "name,value",
    [
        ("uri_host", "example.com"),
        ("uri_port", 5683),
        ("proxy_uri", "coap://example.com/x"),
        ("proxy_scheme", "coap"),
        ("size1", 1000),
        ("size2", 2000),
        ("max_age", 60),
        ("observe", 0),
        ("no_response", 26),
        ("echo", b"\x01\x02"),
        ("oscore", b"\x09\x00"),
        ("hop_limit", 16),
        ("etag", b"tag"),
        ("block1", (1, True, 4)),
        ("block2", (0, False, 6)),
        ("q_block1", (1, True, 4)),
        ("q_block2", (1, True, 4)),
    ],
)
def test_single_value_views(name, value):
    opt = Options()
    assert getattr(opt, name) is None
    setattr(opt, name, value)
    assert getattr(opt, name) == value
    decoded, _ = decode(opt.encode())
    assert getattr(decoded, name) == value
    setattr(opt, name, None)
    assert getattr(opt, name) is None
    assert opt.encode() == b""
    setattr(opt, name, value)
    delattr(opt, name)
    assert getattr(opt, name) is None


@pytest.mark.parametrize(
    "name,value",
    [
        ("uri_path", ("a", "b", "")),
        ("uri_query", ("a=1", "b")),
        ("location_path", ("x", "y")),
        ("location_query", ("q",)),
        ("if_match", (b"", b"\x01")),
        ("etags", (b"a", b"b")),
        ("request_tag", (b"", b"t")),
    ],
)
def test_repeatable_views(name, value):
    opt = Options()
    assert getattr(opt, name) == ()
    setattr(opt, name, list(value))
    assert getattr(opt, name) == value
    assert isinstance(getattr(opt, name), tuple)
    decoded, _ = decode(opt.encode())
    assert getattr(decoded, name) == value
    setattr(opt, name, ())
    assert getattr(opt, name) == ()
    assert opt.encode() == b""


def test_repeatable_view_rejects_a_single_string():
    opt = Options()
    with pytest.raises(TypeError):
        opt.uri_path = "a/b"
    with pytest.raises(TypeError):
        opt.etags = b"ab"


def test_etag_and_etags_share_the_option():
    opt = Options()
    opt.etags = [b"1", b"2"]
    assert opt.etag == b"1"
    opt.etag = b"3"
    assert opt.etags == (b"3",)


def test_presence_views():
    opt = Options()
    assert opt.if_none_match is False
    opt.if_none_match = True
    assert opt.if_none_match is True
    assert opt.encode() == b"\x50"
    decoded, _ = decode(b"\x50")
    assert decoded.if_none_match is True
    opt.if_none_match = False
    assert opt.encode() == b""
    opt.edhoc = True
    assert opt.encode() == bytes((0xD0, 21 - 13))
    assert decode(opt.encode())[0].edhoc is True


def test_content_format_and_accept_are_contentformats():
    opt = Options()
    opt.content_format = 50
    opt.accept = ContentFormat(60)
    assert isinstance(opt.content_format, ContentFormat) and opt.content_format == 50
    assert isinstance(opt.accept, ContentFormat) and opt.accept == 60
    decoded, _ = decode(opt.encode())
    assert isinstance(decoded.content_format, ContentFormat)
    assert decoded.content_format == 50
    opt.content_format = 0
    assert opt.encode()[0] == 0xC0  # zero is the empty uint


def test_object_security_is_the_oscore_option():
    opt = Options()
    opt.object_security = b"\x01"
    assert opt.oscore == b"\x01"
    assert opt.get_option(OptionNumber.OSCORE)[0].value == b"\x01"


def test_setting_a_view_replaces_all_repetitions():
    opt = Options()
    opt.add_option(UintOption(OptionNumber.OBSERVE, 1))
    opt.add_option(UintOption(OptionNumber.OBSERVE, 2))
    assert opt.observe == 1
    opt.observe = 3
    assert [o.value for o in opt.get_option(OptionNumber.OBSERVE)] == [3]


def test_add_get_delete_option():
    opt = Options()
    opt.add_option(StringOption(OptionNumber.URI_PATH, "a"))
    opt.add_option(StringOption(OptionNumber.URI_PATH, "b"))
    assert [o.value for o in opt.get_option(OptionNumber.URI_PATH)] == ["a", "b"]
    assert [o.value for o in opt.get_option(11)] == ["a", "b"]
    assert OptionNumber.URI_PATH in opt and 11 in opt
    opt.delete_option(OptionNumber.URI_PATH)
    assert opt.get_option(OptionNumber.URI_PATH) == []
    opt.delete_option(OptionNumber.URI_PATH)  # deleting an absent option is fine
    assert opt.option_list() == []


def test_copy_is_independent():
    opt = Options()
    opt.uri_path = ("a",)
    copy = opt.copy()
    copy.uri_path = ("b",)
    copy.add_option(StringOption(OptionNumber.URI_QUERY, "q"))
    assert opt.uri_path == ("a",)
    assert opt.uri_query == ()
    assert copy == copy.copy()


def test_equality():
    a = Options()
    b = Options()
    assert a == b
    a.uri_path = ("x",)
    assert a != b
    b.uri_path = ("x",)
    assert a == b
    assert (a == "x") is False


def test_negative_uint_value_fails_on_encode():
    opt = Options()
    opt.max_age = -1
    with pytest.raises(ValueError):
        opt.encode()


def test_repr_as_in_the_guided_tour():
    opt = Options()
    opt.uri_path = ("other", "separate")
    opt.uri_host = "localhost"
    text = repr(opt)
    assert text.startswith("<aiocoap.options.Options at 0x")
    assert text.endswith(": URI_HOST: localhost, URI_PATH: other / separate>")
    assert repr(Options()).endswith(": (empty)>")
    opt2 = Options()
    opt2.add_option(OpaqueOption(OptionNumber(2048), b"\x01"))
    assert repr(opt2).endswith(": 2048: 01>")


def test_option_numbers_beyond_16_bits_are_rejected_among_others():
    with pytest.raises(ValueError):
        encode(UintOption(OptionNumber.OBSERVE, 1), OpaqueOption(OptionNumber(65536), b""))


@given(
    st.sampled_from([OptionNumber.OBSERVE, OptionNumber.CONTENT_FORMAT, OptionNumber.MAX_AGE,
                     OptionNumber.HOP_LIMIT, OptionNumber.SIZE2, OptionNumber(65000)]),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_uint_options_encode_as_their_own_encode_says(number, value):
    """Options.encode inlines the encoding of uint options; it must give
    what UintOption.encode gives (minimum lengths such as Hop-Limit's
    included)."""
    option = UintOption(number, value)
    raw = option.encode()
    assert encode(option) == bytes([(min(number, 13) if number < 269 else 14) << 4 | len(raw)]) + (
        b"" if number < 13 else bytes([number - 13]) if number < 269 else (number - 269).to_bytes(2, "big")
    ) + raw


def test_no_invalid_options_share_one_read_only_list():
    a = Message.decode(Message(code=Code.CONTENT, _mtype=1, _mid=1, observe=3, payload=b"x").encode())
    b = Options()
    assert a.opt.invalid_options == [] and not a.opt.invalid_options
    assert a.opt.invalid_options is b.invalid_options
    with pytest.raises(TypeError):
        b.invalid_options.append((OptionNumber.OBSERVE, b""))
    assert b.invalid_options == []


def test_invalid_options_are_per_message_once_there():
    opt = Options()
    # Observe with 4 bytes is too long (0-3)
    rest = opt.decode(bytes([0x64]) + b"\x01\x02\x03\x04" + b"\xffpayload")
    assert rest == b"payload"
    assert opt.invalid_options == [(OptionNumber.OBSERVE, b"\x01\x02\x03\x04")]
    assert Options().invalid_options == []
    copy = opt.copy()
    assert copy.invalid_options == opt.invalid_options
    assert copy.invalid_options is not opt.invalid_options
    assert opt.copy_shallow().invalid_options is opt.invalid_options
    replaced = Options()
    replaced.invalid_options = [(OptionNumber.URI_PATH, b"\xff")]
    assert replaced.invalid_options == [(OptionNumber.URI_PATH, b"\xff")]


def test_numbers_lists_the_options_present():
    opt = Options()
    opt.uri_path = ["a", "b"]
    opt.observe = 0
    assert sorted(opt.numbers()) == [OptionNumber.OBSERVE, OptionNumber.URI_PATH]
    assert OptionNumber.OBSERVE in opt and OptionNumber.ETAG not in opt


def test_split_off_leaves_the_original_alone():
    opt = Options()
    opt.uri_path = ["a", "b"]
    opt.accept = 50
    rest, paths = opt.split_off(OptionNumber.URI_PATH)
    assert [o.value for o in paths] == ["a", "b"]
    assert rest.uri_path == () and rest.accept == 50
    rest.uri_path = ["c"]
    assert opt.uri_path == ("a", "b")
    assert opt.split_off(OptionNumber.ETAG)[1] == []


def test_unprocessable_critical():
    opt = Options()
    opt.uri_path = ["a"]
    assert opt.unprocessable_critical({OptionNumber.URI_PATH}) is None
    assert opt.unprocessable_critical(set()) == OptionNumber.URI_PATH
    opt.observe = 1  # elective (even number)
    assert opt.unprocessable_critical({OptionNumber.URI_PATH}) is None
    bad_format = Options()
    bad_format.decode(bytes([0xC3]) + b"\x01\x02\x03")  # Content-Format (elective): 3 bytes, max 2
    assert bad_format.invalid_options and bad_format.unprocessable_critical(set()) is None
    bad_port = Options()
    bad_port.decode(bytes([0x73]) + b"\x01\x02\x03")  # Uri-Port: 3 bytes (max 2)
    assert bad_port.unprocessable_critical({OptionNumber.URI_PORT}) == OptionNumber.URI_PORT


def test_values_except_follows_the_decoded_order_and_skips_numbers():
    raw = encode(
        StringOption(OptionNumber.URI_HOST, "h"),
        UintOption(OptionNumber.URI_PORT, 5683),
        StringOption(OptionNumber.URI_PATH, "a"),
        StringOption(OptionNumber.URI_PATH, "b"),
        UintOption(OptionNumber.SIZE1, 10),
    )
    opt, _ = decode(raw)
    assert opt.values_except({int(OptionNumber.SIZE1)}) == ((3, "h"), (7, 5683), (11, "a"), (11, "b"))
    everything = opt.values_except(())
    assert everything[-1] == (60, 10)
    assert {everything: True}[opt.values_except(())]  # hashable, equal when decoded alike
