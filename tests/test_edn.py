"""CBOR diagnostic notation both ways (aiocoap.util.edn): the examples of
RFC 8949 Appendix A, exact round trips of arbitrary well-formed CBOR
(including non-preferred and indefinite-length encodings), agreement with
cbor2 on what the items mean, and errors (never anything else) for any
other input."""

import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiocoap.util.edn import MAX_DEPTH, CBORError, EDNError, cbor_to_edn, edn_to_cbor

# RFC 8949 Appendix A: diagnostic notation and encoding of each example
APPENDIX_A = [
    ("0", "00"), ("1", "01"), ("10", "0a"), ("23", "17"), ("24", "1818"), ("25", "1819"),
    ("100", "1864"), ("1000", "1903e8"), ("1000000", "1a000f4240"),
    ("1000000000000", "1b000000e8d4a51000"),
    ("18446744073709551615", "1bffffffffffffffff"),
    ("18446744073709551616", "c249010000000000000000"),
    ("-18446744073709551616", "3bffffffffffffffff"),
    ("-18446744073709551617", "c349010000000000000000"),
    ("-1", "20"), ("-10", "29"), ("-100", "3863"), ("-1000", "3903e7"),
    ("0.0", "f90000"), ("-0.0", "f98000"), ("1.0", "f93c00"), ("1.1", "fb3ff199999999999a"),
    ("1.5", "f93e00"), ("65504.0", "f97bff"), ("100000.0", "fa47c35000"),
    ("3.4028234663852886e+38", "fa7f7fffff"), ("1.0e+300", "fb7e37e43c8800759c"),
    ("5.960464477539063e-8", "f90001"), ("0.00006103515625", "f90400"), ("-4.0", "f9c400"),
    ("-4.1", "fbc010666666666666"), ("Infinity", "f97c00"), ("NaN", "f97e00"),
    ("-Infinity", "f9fc00"), ("false", "f4"), ("true", "f5"), ("null", "f6"),
    ("undefined", "f7"), ("simple(16)", "f0"), ("simple(255)", "f8ff"),
    ('0("2013-03-21T20:04:00Z")', "c074323031332d30332d32315432303a30343a30305a"),
    ("1(1363896240)", "c11a514b67b0"), ("1(1363896240.5)", "c1fb41d452d9ec200000"),
    ("23(h'01020304')", "d74401020304"), ("24(h'6449455446')", "d818456449455446"),
    ('32("http://www.example.com")', "d82076687474703a2f2f7777772e6578616d706c652e636f6d"),
    ("h''", "40"), ("h'01020304'", "4401020304"), ('""', "60"), ('"a"', "6161"),
    ('"IETF"', "6449455446"), ('"\\"\\\\"', "62225c"), ('"\\u00fc"', "62c3bc"),
    ('"\\u6c34"', "63e6b0b4"), ('"\\ud800\\udd51"', "64f0908591"),
    ("[]", "80"), ("[1, 2, 3]", "83010203"), ("[1, [2, 3], [4, 5]]", "8301820203820405"),
    ("{}", "a0"), ("{1: 2, 3: 4}", "a201020304"), ('{"a": 1, "b": [2, 3]}', "a26161016162820203"),
    ('["a", {"b": "c"}]', "826161a161626163"),
    ("(_ h'0102', h'030405')", "5f42010243030405ff"),
    ('(_ "strea", "ming")', "7f657374726561646d696e67ff"), ("[_ ]", "9fff"),
    ("[_ 1, [2, 3], [_ 4, 5]]", "9f018202039f0405ffff"),
    ('{_ "a": 1, "b": [_ 2, 3]}', "bf61610161629f0203ffff"),
    ('{_ "Fun": true, "Amt": -2}', "bf6346756ef563416d7421ff"),
]


@pytest.mark.parametrize("diagnostic,hexdata", APPENDIX_A)
def test_rfc8949_appendix_a(diagnostic, hexdata):
    assert edn_to_cbor(diagnostic).hex() == hexdata
    shown = cbor_to_edn(bytes.fromhex(hexdata))
    assert edn_to_cbor(shown).hex() == hexdata
    if not any(c in diagnostic for c in "e\\u") and diagnostic != "0.00006103515625":
        # (Python writes some floats and strings differently, eg. 1e+300)
        assert shown == diagnostic


@pytest.mark.parametrize(
    "diagnostic,hexdata",
    [
        ("23_0", "1817"), ("0_3", "1b0000000000000000"), ("-1_1", "390000"),
        ("1.5_2", "fa3fc00000"), ("1.5_3", "fb3ff8000000000000"), ("NaN_3", "fb7ff8000000000000"),
        ('"a"_0', "780161"), ("h'01'_1", "59000101"),
        ("[_0 1]", "980101"), ("{_1 1: 2}", "b900010102"), ("1_0(2)", "d80102"),
        ("''_", "5fff"), ('""_', "7fff"), ("(_ )", "5fff"), ("<<1, 2>>", "420102"), ("<<>>", "40"),
        ("'hello'", "4568656c6c6f"), ("b64'SGVsbG8'", "4548656c6c6f"), ("b64'-_8'", "42fbff"),
        ("b32'JBSWY3DP'", "4548656c6c6f"), ("h32'91IMOR3F'", "4548656c6c6f"),
        ("h'48 65 /comment/ 6c6c 6f'", "4548656c6c6f"), ('"he" "llo"', "6568656c6c6f"),
        ("h'48' 'ello'", "4548656c6c6f"), ("0x10", "10"), ("-0x10", "2f"), ("0o17", "0f"),
        ("0b101", "05"), ("007", "07"), ("[1, 2,]", "820102"), ("{1: 2,}", "a10102"),
        ("/ a comment / 1 # another\n", "01"), ("1e3", "f963d0"), ("-0", "00"),
        ("simple(0)", "e0"), ("simple(32)", "f820"),
    ],
)
def test_encoding_indicators_and_extensions(diagnostic, hexdata):
    assert edn_to_cbor(diagnostic).hex() == hexdata


def test_sequences():
    assert edn_to_cbor("1, [2], \"x\"", sequence=True).hex() == "0181026178"
    assert edn_to_cbor("", sequence=True) == b""
    assert cbor_to_edn(bytes.fromhex("0181026178"), sequence=True) == '1,\n[2],\n"x"'
    assert cbor_to_edn(b"", sequence=True) == ""


def test_layout_of_long_containers():
    data = edn_to_cbor('{"values": [%s], "unit": "Cel"}' % ", ".join(["21.5"] * 20))
    assert cbor_to_edn(data) == (
        '{\n    "values": [\n' + ",\n".join(["        21.5"] * 20) + '\n    ],\n    "unit": "Cel"\n}'
    )
    assert cbor_to_edn(edn_to_cbor("[_ " + ", ".join(["1000000"] * 12) + "]")).startswith("[_\n    1000000,\n")


def test_text_is_safe_for_terminals():
    shown = cbor_to_edn(edn_to_cbor('"bell\\u0007 esc\\u001b[2J del\\u007f c1\\u009b tab\\t ü"'))
    assert shown == '"bell\\u0007 esc\\u001b[2J del\\u007f c1\\u009b tab\\t ü"'
    assert all(c >= " " for c in shown)


def test_nan_with_payload_is_shown_in_a_comment():
    shown = cbor_to_edn(bytes.fromhex("f97e01"))
    assert shown == "NaN_1 /7e01/"
    assert math.isnan(struct.unpack(">e", edn_to_cbor(shown)[1:])[0])


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "expected an item"), ("[1,", "expected an item"), ("[1 2]", "expected ','"),
        ("{1}", "expected ':'"), ("{1: }", "unexpected '}'"), ("h'1'", "even number"),
        ("h'zz'", "even number"), ("b64'!!'", "invalid b64"), ("x'00'", "unknown string prefix"),
        ('"abc', "not closed"), ("'abc", "not closed"), ('"\\q"', "unknown escape"),
        ('"\\u12"', "four hexadecimal"), ('"\\ud800"', "surrogate"), ('"\\udc00"', "surrogate"),
        ("simple(24)", "does not exist"), ("simple(256)", "does not exist"), ("simple(x)", "simple value"),
        ("1.1_1", "exactly"), ("1e999", "out of the range"), ("1.5_0", "no encoding indicator _0"),
        ("256_0", "does not fit"), ("18446744073709551616_3", "too large"), ("1_", "indefinite"),
        ("-1(2)", "plain unsigned"), ("1_(2)", "only possible for strings"), ('"a" h\'00\'', "can not be concatenated"),
        ("(_ 1)", "expected a string"), ("(_ \"a\", h'00')", "all be text or all bytes"),
        ('"ab"_', "(_ chunk"), ("1 2", "after the item"), ("/ open", "comment is not closed"),
        ("foo", "unknown word"), ("@", "unexpected '@'"), ("[_2 " + "1," * 3 + "]", None),
    ],
)
def test_malformed_text(text, message):
    if message is None:
        assert edn_to_cbor(text).hex() == "9a00000003010101"
        return
    with pytest.raises(EDNError) as info:
        edn_to_cbor(text)
    assert message in str(info.value)
    assert "(line 1, column" in str(info.value)


def test_error_position_counts_lines():
    with pytest.raises(EDNError, match=r"line 3, column 5"):
        edn_to_cbor("[\n  1,\n    @]")


@pytest.mark.parametrize(
    "hexdata,message",
    [
        ("", "too early"), ("18", "too early"), ("1c", "reserved"), ("1f", "indefinite length"),
        ("3f", "indefinite length"), ("df", "indefinite length"), ("ff", "break outside"),
        ("f817", "in two bytes"), ("62c3", "too early"), ("62ff41", "not UTF-8"),
        ("5f6161ff", "another kind"), ("5f5f4100ffff", "another kind"), ("5f41", "too early"), ("5f", "ends inside"),
        ("9f01", "ends inside"), ("9bffffffffffffffff00", "entries announced"), ("0101", "after the item"),
        ("a101", "too early"),
    ],
)
def test_malformed_cbor(hexdata, message):
    with pytest.raises(CBORError, match=message):
        cbor_to_edn(bytes.fromhex(hexdata))


def test_nesting_limit_both_ways():
    deep = b"\x81" * (MAX_DEPTH + 5) + b"\x01"
    with pytest.raises(CBORError, match="nested deeper"):
        cbor_to_edn(deep)
    with pytest.raises(CBORError, match="nested deeper"):
        cbor_to_edn(b"\xc1" * (MAX_DEPTH + 5) + b"\x01")
    with pytest.raises(EDNError, match="nested deeper"):
        edn_to_cbor("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))
    ok = b"\x81" * (MAX_DEPTH - 1) + b"\x01"
    assert edn_to_cbor(cbor_to_edn(ok)) == ok


# --- properties --------------------------------------------------------------------


def _head(major: int, value: int, width) -> bytes:
    """A test-side encoder of item heads: width None is the shortest form,
    else 1, 2, 4 or 8 bytes"""
    if width is None:
        if value < 24:
            return bytes([major << 5 | value])
        width = next(w for w in (1, 2, 4, 8) if value < 1 << (8 * w))
    return bytes([major << 5 | {1: 24, 2: 25, 4: 26, 8: 27}[width]]) + value.to_bytes(width, "big")


@st.composite
def _argument(draw, major, max_value=2**64 - 1):
    value = draw(st.integers(0, max_value))
    widths = [None] + [w for w in (1, 2, 4, 8) if value < 1 << (8 * w)]
    return _head(major, value, draw(st.sampled_from(widths)))


def _float_item():
    def encode(choice):
        fmt, value = choice
        return {">e": b"\xf9", ">f": b"\xfa", ">d": b"\xfb"}[fmt] + struct.pack(fmt, value)

    plain = st.one_of(
        st.tuples(st.just(">e"), st.floats(width=16, allow_nan=False)),
        st.tuples(st.just(">f"), st.floats(width=32, allow_nan=False)),
        st.tuples(st.just(">d"), st.floats(allow_nan=False)),
        st.tuples(st.sampled_from([">e", ">f", ">d"]), st.just(math.nan)),
    )
    return plain.map(encode)


_text = st.text(max_size=8).map(lambda s: s.encode("utf-8", "surrogatepass"))


@st.composite
def _string(draw, major):
    data = draw(_text if major == 3 else st.binary(max_size=8))
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        data = b"x"
    return _head(major, len(data), draw(st.sampled_from([None, 1, 2]))) + data


@st.composite
def _indefinite_string(draw):
    major = draw(st.sampled_from([2, 3]))
    chunks = draw(st.lists(_string(major), max_size=3))
    return bytes([major << 5 | 31]) + b"".join(chunks) + b"\xff"


_leaf = st.one_of(
    _argument(0),
    _argument(1),
    _string(2),
    _string(3),
    _indefinite_string(),
    _float_item(),
    st.sampled_from([b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xe0", b"\xf3", b"\xf8\x20", b"\xf8\xff"]),
)


def _containers(children):
    @st.composite
    def array(draw):
        items = draw(st.lists(children, max_size=4))
        if draw(st.booleans()):
            return b"\x9f" + b"".join(items) + b"\xff"
        return _head(4, len(items), draw(st.sampled_from([None, 1, 2]))) + b"".join(items)

    @st.composite
    def mapping(draw):
        pairs = draw(st.lists(st.tuples(children, children), max_size=3))
        body = b"".join(k + v for k, v in pairs)
        if draw(st.booleans()):
            return b"\xbf" + body + b"\xff"
        return _head(5, len(pairs), draw(st.sampled_from([None, 1, 8]))) + body

    @st.composite
    def tagged(draw):
        return draw(_argument(6)) + draw(children)

    return st.one_of(array(), mapping(), tagged())


cbor_items = st.recursive(_leaf, _containers, max_leaves=20)


@settings(max_examples=400)
@given(cbor_items)
def test_any_wellformed_cbor_round_trips_exactly(data):
    shown = cbor_to_edn(data)
    assert edn_to_cbor(shown) == data
    # The rendering is a fixed point as well
    assert cbor_to_edn(edn_to_cbor(shown)) == shown


@given(st.lists(cbor_items, max_size=4))
def test_sequences_round_trip(items):
    data = b"".join(items)
    assert edn_to_cbor(cbor_to_edn(data, sequence=True), sequence=True) == data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=15,
)


@given(json_values)
def test_json_is_diagnostic_notation(value):
    cbor2 = pytest.importorskip("cbor2")
    encoded = edn_to_cbor(json.dumps(value))
    assert cbor2.loads(encoded) == value
    # Without encoding indicators, the preferred serialization (RFC 8949
    # Section 4.1) comes out: cbor2 makes the same for integers and strings
    # (it writes floats in 8 bytes unless asked for the shortest form).
    assert encoded == cbor2.dumps(value) or _has_float(value)


def _has_float(value) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, list):
        return any(map(_has_float, value))
    if isinstance(value, dict):
        return any(map(_has_float, value.values()))
    return False


@given(json_values)
def test_agrees_with_cbor2_on_meaning(value):
    cbor2 = pytest.importorskip("cbor2")
    data = cbor2.dumps(value)
    assert cbor2.loads(edn_to_cbor(cbor_to_edn(data))) == value


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("[]{}()<>_,:'\"/#hb64x0129.-eE simpleNaInfty\\u\n")), max_size=40))
def test_any_text_parses_or_raises_ednerror(text):
    try:
        data = edn_to_cbor(text)
    except EDNError:
        return
    # Whatever parsed is well-formed CBOR of one item
    cbor_to_edn(data)


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_any_bytes_render_or_raise_cborerror(data):
    try:
        shown = cbor_to_edn(data, sequence=True)
    except CBORError:
        return
    if b"\xf9" not in data and b"\xfa" not in data and b"\xfb" not in data:
        assert edn_to_cbor(shown, sequence=True) == data
