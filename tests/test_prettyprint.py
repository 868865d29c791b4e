"""Tests for aiocoap.util.prettyprint (aiocoap-client's payload display)."""

from __future__ import annotations

import importlib
import re
import sys
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiocoap import Message
from aiocoap.numbers import ContentFormat
from aiocoap.util import prettyprint
from aiocoap.util.prettyprint import colorize, hexdump, lexer_for, pretty_print

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def show(payload: bytes, content_format=None):
    return pretty_print(Message(payload=payload, content_format=content_format))


def assert_hexdump_of(result, payload: bytes, info_pattern: str):
    info, hint, text = result
    assert hint == "hexdump"
    assert text == hexdump(payload)
    assert len(info) == 1 and re.search(info_pattern, info[0]), info


# ----------------------------------------------------------------- hexdump


def test_hexdump_layout():
    data = bytes(range(0x1E, 0x30)) + b"\x7f\xff"
    assert hexdump(data) == (
        "00000000  1e 1f 20 21 22 23 24 25  26 27 28 29 2a 2b 2c 2d  |.. !\"#$%&'()*+,-|\n"
        "00000010  2e 2f 7f ff                                       |./..|\n"
        "00000014"
    )


def test_hexdump_exact_line_and_empty():
    assert hexdump(b"0123456789abcdef").splitlines() == [
        "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|",
        "00000010",
    ]
    assert hexdump(b"") == "00000000"


# -------------------------------------------------------------------- JSON


def test_json_is_reindented():
    assert show(b'{"a":[1,2],"b":{"c":null}}', 50) == (
        [],
        "json",
        '{\n  "a": [\n    1,\n    2\n  ],\n  "b": {\n    "c": null\n  }\n}',
    )


@pytest.mark.parametrize("cf", [ContentFormat.SENML_JSON, ContentFormat.TD_JSON,
                                ContentFormat.MERGE_PATCH_JSON, ContentFormat.VND_OMA_LWM2M_JSON])
def test_structured_json_suffix(cf):
    info, hint, text = show(b'[{"n":"temp","v":21.5}]', cf)
    assert (info, hint) == ([], "json")
    assert text == '[\n  {\n    "n": "temp",\n    "v": 21.5\n  }\n]'


def test_json_keeps_non_ascii_and_escapes_terminal_controls():
    info, hint, text = show('{"t": "Grüße\\u009b2J\\u001b"}'.encode(), 50)
    assert (info, hint) == ([], "json")
    assert text == '{\n  "t": "Grüße\\u009b2J\\u001b"\n}'
    assert "\x1b" not in text and "\x9b" not in text


def test_broken_json_is_hexdumped():
    payload = b'{"a": 1,'
    assert_hexdump_of(show(payload, 50), payload, r"^Payload is not valid JSON \(.+\), showing raw bytes$")


def test_json_that_is_not_utf8():
    payload = b'"\xff"'
    assert_hexdump_of(show(payload, 50), payload, r"not valid JSON \(not UTF-8")


def test_absurdly_nested_json_does_not_raise():
    payload = b"[" * 200000 + b"]" * 200000
    info, hint, _ = show(payload, 50)
    assert hint in ("json", "hexdump")
    if hint == "hexdump":
        assert info


# -------------------------------------------------------------------- CBOR


def test_cbor_diagnostic_notation():
    cbor2 = pytest.importorskip("cbor2")
    value = {
        "a": [1, -2, 2.5, b"\x01\xab", None, True, False],
        3: cbor2.CBORTag(1000, {"k": "v"}),
        "e": {},
        "l": [],
    }
    info, hint, text = show(cbor2.dumps(value), 60)
    assert (info, hint) == ([], "cbor-diag")
    assert text == (
        "{\n"
        '  "a": [\n'
        "    1,\n"
        "    -2,\n"
        "    2.5,\n"
        "    h'01ab',\n"
        "    null,\n"
        "    true,\n"
        "    false\n"
        "  ],\n"
        "  3: 1000({\n"
        '    "k": "v"\n'
        "  }),\n"
        '  "e": {},\n'
        '  "l": []\n'
        "}"
    )


@pytest.mark.parametrize("hexdata,expected", [
    ("c11a514b67b0", "1(1363896240)"),
    ("c074323031332d30332d32315432303a30343a30305a", '0("2013-03-21T20:04:00Z")'),
    ("d8255000112233445566778899aabbccddeeff", "37(h'00112233445566778899aabbccddeeff')"),
    ("d9d9f701", "55799(1)"),
    ("f0", "simple(16)"),
    ("f7", "undefined"),
    ("f97e00", "NaN"),
    ("f97c00", "Infinity"),
    ("f9fc00", "-Infinity"),
    ("c249010000000000000000", "18446744073709551616"),
    ("3bffffffffffffffff", "-18446744073709551616"),
    ("5f42010243030405ff", "h'0102030405'"),
    ("7f657374726561646d696e67ff", '"streaming"'),
    ("a1a1010202", "{\n  {\n    1: 2\n  }: 2\n}"),
])
def test_cbor_items(hexdata, expected):
    pytest.importorskip("cbor2")
    assert show(bytes.fromhex(hexdata), 60) == ([], "cbor-diag", expected)


def test_cbor_text_strings_are_escaped():
    pytest.importorskip("cbor2")
    raw = '"q?\n\x9b\x1b'.encode()
    info, hint, text = show(bytes([0x60 + len(raw)]) + raw, 60)
    assert (info, hint) == ([], "cbor-diag")
    assert text == '"\\"q?\\n\\u009b\\u001b"'


def test_cbor_text_string_not_utf8():
    pytest.importorskip("cbor2")
    payload = bytes.fromhex("62c328")
    assert_hexdump_of(show(payload, 60), payload, "not valid CBOR")


@pytest.mark.parametrize("cf", [ContentFormat.SENML_CBOR, ContentFormat.CWT, ContentFormat.COSE_SIGN1,
                                ContentFormat.COSE_KEY, ContentFormat.ACE_CBOR, ContentFormat.VND_OCF_CBOR,
                                ContentFormat.YANG_DATA_CBOR_SID, ContentFormat.MULTIPART_CORE])
def test_cbor_based_formats(cf):
    pytest.importorskip("cbor2")
    info, hint, text = show(bytes.fromhex("820102"), cf)
    assert (info, hint, text) == ([], "cbor-diag", "[\n  1,\n  2\n]")


@pytest.mark.parametrize("cf", [ContentFormat.CBOR_SEQ, ContentFormat.MISSING_BLOCKS_CBOR_SEQ,
                                ContentFormat.EDHOC_CBOR_SEQ])
def test_cbor_sequence(cf):
    pytest.importorskip("cbor2")
    info, hint, text = show(bytes.fromhex("01a0626869"), cf)
    assert (info, hint, text) == ([], "cbor-diag", '1,\n{},\n"hi"')


def test_cbor_trailing_data():
    pytest.importorskip("cbor2")
    payload = bytes.fromhex("0102")
    assert_hexdump_of(show(payload, 60), payload, r"not valid CBOR \(1 byte\(s\) of trailing data\)")


@pytest.mark.parametrize("hexdata", ["83", "820102ff", "63616263ff", "1c", "a1", "ff"])
def test_broken_cbor(hexdata):
    pytest.importorskip("cbor2")
    payload = bytes.fromhex(hexdata)
    assert_hexdump_of(show(payload, 60), payload, r"^Payload is not valid CBOR \(.+\), showing raw bytes$")


def test_truncated_cbor_sequence():
    pytest.importorskip("cbor2")
    payload = bytes.fromhex("0182")
    assert_hexdump_of(show(payload, 63), payload, "not valid a CBOR sequence")


@pytest.mark.parametrize("head,depth", [(b"\x81", 5000), (b"\xa1\x00", 300), (b"\xd8\x20", 300),
                                        (b"\xd8\x20", 100000)])
def test_deeply_nested_cbor_does_not_raise(head, depth):
    pytest.importorskip("cbor2")
    payload = head * depth + b"\x00"
    assert_hexdump_of(show(payload, 60), payload, r"not valid CBOR")


# ------------------------------------------------------------ link-format


def test_link_format_one_per_line():
    payload = (b'</sensors/temp>;rt="temperature-c";if="sensor",'
               b'</sensors/light>;rt="light-lux";title="a, b; c",</x>;obs,'
               b'<coap://[::1]/y>;ct=40;sz=12')
    assert show(payload, 40) == ([], "link-format", (
        '</sensors/temp>;rt="temperature-c";if="sensor",\n'
        '</sensors/light>;rt="light-lux";title="a, b; c",\n'
        "</x>;obs,\n"
        "<coap://[::1]/y>;ct=40;sz=12"
    ))


def test_link_format_tolerates_whitespace():
    info, hint, text = show(b' </a> ; rt = "x" ,\n </b>', 40)
    assert (info, hint) == ([], "link-format")
    assert text == '</a> ; rt = "x",\n</b>'


@pytest.mark.parametrize("payload", [b"hello", b"</a>;rt=\"x", b"</a>,", b"</a> </b>", b"<a"])
def test_broken_link_format(payload):
    assert_hexdump_of(show(payload, 40), payload, r"^Payload is not valid link-format \(.+\), showing raw bytes$")


# -------------------------------------------------------------------- text


def test_text_as_is():
    assert show("Hallo\tWelt\r\n∑".encode(), 0) == ([], "", "Hallo\tWelt\r\n∑")


def test_text_control_characters_are_escaped():
    info, hint, text = show(b"red \x1b[31mtext\x07", 0)
    assert (info, hint) == ([], "")
    assert text == "red \\x1b[31mtext\\x07"


def test_text_not_utf8():
    payload = b"caf\xe9"
    assert_hexdump_of(show(payload, 0), payload, r"not valid text \(not UTF-8")


@pytest.mark.parametrize("cf,hint", [
    (ContentFormat.XML, "xml"),
    (ContentFormat.SENML_XML, "xml"),
    (ContentFormat.IMAGE_SVG_XML, "xml"),
    (ContentFormat.TEXT_CSS, "css"),
    (ContentFormat.JAVASCRIPT, "javascript"),
])
def test_textual_formats_get_hints(cf, hint):
    assert show(b"<a/>", cf) == ([], hint, "<a/>")


# ------------------------------------------------------- everything else


@pytest.mark.parametrize("cf", [ContentFormat.OCTETSTREAM, ContentFormat.IMAGE_PNG, ContentFormat.OSCORE,
                                ContentFormat.EXI, ContentFormat.VND_OMA_LWM2M_TLV, ContentFormat.PKIX_CERT])
def test_binary_formats_are_hexdumped(cf):
    payload = bytes(range(20))
    assert show(payload, cf) == ([], "hexdump", hexdump(payload))


def test_unknown_content_format():
    payload = b'{"a": 1}'
    assert_hexdump_of(show(payload, 12345), payload, r"Unknown Content-Format 12345")


def test_without_content_format():
    assert show(b"just text") == ([], "", "just text")
    assert show(b"\x00\x01binary") == ([], "hexdump", hexdump(b"\x00\x01binary"))
    assert show(b"\xff\xfe") == ([], "hexdump", hexdump(b"\xff\xfe"))


def test_empty_payload():
    assert show(b"", 50) == ([], "", "")
    assert show(b"") == ([], "", "")


# ------------------------------------------------------------------ deflate


def test_deflated_json():
    payload = zlib.compress(b'{"x":1}')
    info, hint, text = show(payload, ContentFormat.JSON_DEFLATE)
    assert hint == "json" and text == '{\n  "x": 1\n}'
    assert len(info) == 1 and "Inflated" in info[0]


def test_raw_deflate_stream_is_accepted():
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    payload = compressor.compress(b"[1]") + compressor.flush()
    _, hint, text = show(payload, 11050)
    assert (hint, text) == ("json", "[\n  1\n]")


def test_deflated_cbor():
    pytest.importorskip("cbor2")
    _, hint, text = show(zlib.compress(bytes.fromhex("820102")), ContentFormat.CBOR_DEFLATE)
    assert (hint, text) == ("cbor-diag", "[\n  1,\n  2\n]")


def test_broken_deflate():
    payload = b"not deflate at all"
    assert_hexdump_of(show(payload, 11050), payload, r"^Payload is not valid deflate data")


def test_truncated_deflate():
    payload = zlib.compress(b'{"x": "' + b"y" * 1000 + b'"}')[:-5]
    assert_hexdump_of(show(payload, 11050), payload, r"not valid deflate data \(truncated")


def test_deflate_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(prettyprint, "MAX_INFLATED_SIZE", 1000)
    payload = zlib.compress(b"[" + b"0," * 5000 + b"0]")
    assert_hexdump_of(show(payload, 11050), payload, r"more than 1000 bytes")


def test_deflated_but_broken_inside():
    payload = zlib.compress(b"{nope")
    info, hint, text = show(payload, 11050)
    # The dump shows the inflated bytes, which is what failed to parse.
    assert hint == "hexdump" and text == hexdump(b"{nope")
    assert "Inflated" in info[0] and "not valid JSON" in info[1]


# -------------------------------------------------------------- robustness


class _ExplodingOptions:
    @property
    def content_format(self):
        raise RuntimeError("boom")


class _OddMessage:
    payload = b"ab"
    opt = _ExplodingOptions()


class _NoPayload:
    @property
    def payload(self):
        raise RuntimeError("gone")


def test_unexpected_failures_do_not_escape():
    info, hint, text = pretty_print(_OddMessage())
    assert hint == "hexdump" and text == hexdump(b"ab")
    assert "RuntimeError" in info[0] and "boom" in info[0]
    info, hint, text = pretty_print(_NoPayload())
    assert (hint, text) == ("", "") and "RuntimeError" in info[0]


content_formats = st.one_of(
    st.sampled_from([None] + list(ContentFormat)),
    st.integers(min_value=0, max_value=65535),
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), content_formats)
def test_arbitrary_payloads_never_raise(payload, cf):
    info, hint, text = show(payload, cf)
    assert isinstance(info, list) and all(isinstance(line, str) for line in info)
    assert isinstance(hint, str) and isinstance(text, str)
    assert "\x1b" not in text and "\x9b" not in text
    if hint == "hexdump":
        assert text == hexdump(payload) or cf in (11050, 11060)


@settings(max_examples=100, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
))
def test_arbitrary_cbor_values_render(value):
    cbor2 = pytest.importorskip("cbor2")
    info, hint, text = show(cbor2.dumps(value), 60)
    assert (info, hint) == ([], "cbor-diag")
    assert text


# ----------------------------------------------------------------- colors


def test_colorize_json():
    pytest.importorskip("pygments")
    text = '{\n  "a": 1\n}'
    colored = colorize(text, "json")
    assert "\x1b[" in colored
    assert ANSI.sub("", colored) == text


def test_colorize_keeps_trailing_newline_structure():
    pytest.importorskip("pygments")
    assert ANSI.sub("", colorize("[1]\n", "json")) == "[1]\n"
    assert ANSI.sub("", colorize("[1]", "json")) == "[1]"


def test_colorize_off_or_unknown():
    assert colorize('{"a": 1}', "json", color=False) == '{"a": 1}'
    assert colorize("plain", "") == "plain"
    assert colorize("plain", "no-such-lexer-name") == "plain"
    assert colorize("", "json") == ""


def test_lexer_for():
    pytest.importorskip("pygments")
    from pygments.lexers import JsonLexer

    assert isinstance(lexer_for("json"), JsonLexer)
    assert lexer_for("hexdump") is not None
    assert lexer_for("link-format") is not None
    assert lexer_for("cbor-diag") is not None
    assert lexer_for("") is None
    assert lexer_for("no-such-lexer-name") is None


@pytest.mark.parametrize("hint,payload,cf", [
    ("cbor-diag", "a4616182f6f7f0f97e00c11a514b67b0626b6b40a0", 60),
    ("link-format", '</a>;rt="x y";ct=40;obs,<coap://h/b>;if=core.s', 40),
])
def test_custom_lexers_cover_their_output(hint, payload, cf):
    pytest.importorskip("pygments")
    pytest.importorskip("cbor2")
    from pygments.token import Error

    data = bytes.fromhex(payload) if hint == "cbor-diag" else payload.encode()
    info, got_hint, text = show(data, cf)
    assert (info, got_hint) == ([], hint)
    tokens = list(lexer_for(hint).get_tokens(text))
    assert not [t for t in tokens if t[0] in Error]
    colored = colorize(text, hint)
    assert colored != text and ANSI.sub("", colored) == text


def test_colorize_hexdump():
    pytest.importorskip("pygments")
    text = hexdump(b"hello world, more than sixteen bytes")
    assert ANSI.sub("", colorize(text, "hexdump")) == text


# -------------------------------------------------------- missing modules


def test_without_cbor2(monkeypatch):
    monkeypatch.setitem(sys.modules, "cbor2", None)
    payload = bytes.fromhex("820102")
    assert_hexdump_of(show(payload, 60), payload, r"Module cbor2 is not installed")
    # Formats that need no optional module are unaffected.
    assert show(b"[1]", 50)[1:] == ("json", "[\n  1\n]")


def test_without_pygments(monkeypatch):
    for name in [m for m in sys.modules if m == "pygments" or m.startswith("pygments.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pygments", None)
    assert lexer_for("json") is None
    assert lexer_for("cbor-diag") is None
    assert colorize('{"a": 1}', "json") == '{"a": 1}'


def test_module_imports_without_optional_modules(monkeypatch):
    for name in ("cbor2", "pygments", "link_header"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "aiocoap.util.prettyprint")
    fresh = importlib.import_module("aiocoap.util.prettyprint")
    assert fresh is not prettyprint
    info, hint, text = fresh.pretty_print(Message(payload=b'{"a":1}', content_format=50))
    assert (info, hint, text) == ([], "json", '{\n  "a": 1\n}')
    assert fresh.colorize(text, hint) == text
    assert fresh.pretty_print(Message(payload=b"</a>,</b>", content_format=40))[2] == "</a>,\n</b>"


def test_cbor2_without_semantic_decoder_override(monkeypatch):
    """Older cbor2 turns well-known tags into Python objects; they are shown
    in tag form again as far as possible."""
    cbor2 = pytest.importorskip("cbor2")
    original = cbor2.CBORDecoder

    def old_style_decoder(fp, **kwargs):
        if "semantic_decoders" in kwargs:
            raise TypeError("unexpected keyword argument 'semantic_decoders'")
        return original(fp, **kwargs)

    monkeypatch.setattr(cbor2, "CBORDecoder", old_style_decoder)
    cases = [
        ("c11a514b67b0", '0("2013-03-21T20:04:00+00:00")'),
        ("d8255000112233445566778899aabbccddeeff", "37(h'00112233445566778899aabbccddeeff')"),
        ("d9010282f5f4", "258([\n  false,\n  true\n])"),
        ("c48221196ab3", '/Decimal/ "273.15"'),
    ]
    for hexdata, expected in cases:
        info, hint, text = show(bytes.fromhex(hexdata), 60)
        assert (info, hint) == ([], "cbor-diag"), hexdata
        if hexdata.startswith("d90102"):
            assert text in (expected, "258([\n  true,\n  false\n])")
        else:
            assert text == expected
