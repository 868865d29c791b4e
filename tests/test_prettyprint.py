"""Tests for aiocoap.util.prettyprint (aiocoap-client's payload display),
aiocoap.util.contenttype and aiocoap.util.linkformat_pygments."""

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
from aiocoap.util.contenttype import categorize
from aiocoap.util.prettyprint import (
    MEDIATYPE_CBOR_DIAGNOSTIC,
    MEDIATYPE_HEXDUMP,
    colorize,
    hexdump,
    lexer_for_mime,
    pretty_print,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
CBOR = MEDIATYPE_CBOR_DIAGNOSTIC


def show(payload: bytes, content_format=None):
    return pretty_print(Message(payload=payload, content_format=content_format))


def assert_hexdump_of(result, payload: bytes, info_pattern: str):
    info, mime, text = result
    assert mime == MEDIATYPE_HEXDUMP
    assert text == hexdump(payload)
    assert len(info) >= 1 and re.search(info_pattern, info[-1]), info


def assert_shown_as_is(result, text: str, info_pattern: str):
    info, mime, shown = result
    assert (mime, shown) == ("text/plain", text)
    assert len(info) == 1 and re.search(info_pattern, info[0]), info


# ----------------------------------------------------------------- hexdump


def test_hexdump_layout():
    assert MEDIATYPE_HEXDUMP == "text/vnd.aiocoap.hexdump"
    data = bytes(range(0x1E, 0x30)) + b"\x7f\xff"
    assert hexdump(data) == (
        "00000000  1e 1f 20 21 22 23 24 25  26 27 28 29 2a 2b 2c 2d  |.. !\"#$%&'()*+,-|\n"
        "00000010  2e 2f 7f ff                                       |./..|\n"
        "00000014\n"
    )


def test_hexdump_exact_line_and_empty():
    assert hexdump(b"0123456789abcdef") == (
        "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n"
        "00000010\n"
    )
    assert hexdump(b"") == "00000000\n"


# -------------------------------------------------------------------- JSON


def test_json_is_indented_by_four():
    assert show(b'{"a":[1,2],"b":{"c":null}}', 50) == (
        [],
        "application/json",
        '{\n    "a": [\n        1,\n        2\n    ],\n    "b": {\n        "c": null\n    }\n}',
    )


@pytest.mark.parametrize("cf", [ContentFormat.SENML_JSON, ContentFormat.TD_JSON,
                                ContentFormat.MERGE_PATCH_JSON, ContentFormat.VND_OMA_LWM2M_JSON])
def test_structured_json_suffix(cf):
    info, mime, text = show(b'[{"n":"temp","v":21.5}]', cf)
    assert (info, mime) == ([], "application/json")
    assert text == '[\n    {\n        "n": "temp",\n        "v": 21.5\n    }\n]'


def test_json_keeps_non_ascii_and_escapes_terminal_controls():
    info, mime, text = show('{"t": "Grüße\\u009b2J\\u001b"}'.encode(), 50)
    assert (info, mime) == ([], "application/json")
    assert text == '{\n    "t": "Grüße\\u009b2J\\u001b"\n}'
    assert "\x1b" not in text and "\x9b" not in text


def test_broken_json_is_shown_as_it_is():
    assert_shown_as_is(show(b'{"a": 1,', 50), '{"a": 1,', r"^Payload is not valid JSON \(.+\), shown as it is$")


def test_json_that_is_not_utf8():
    payload = b'"\xff"'
    assert_hexdump_of(show(payload, 50), payload, r"not valid JSON \(not UTF-8.*showing raw bytes")


def test_absurdly_nested_json_does_not_raise():
    payload = b"[" * 200000 + b"]" * 200000
    info, mime, _ = show(payload, 50)
    assert mime in ("application/json", "text/plain")
    if mime == "text/plain":
        assert "nested too deeply" in info[0]


# -------------------------------------------------------------------- CBOR


def test_cbor_diagnostic_notation():
    from aiocoap.util.edn import edn_to_cbor

    short = '{"a": [1, -2, 2.5, h\'01ab\', true], 3: 1000({"k": null}), "e": {}}'
    assert show(edn_to_cbor(short), 60) == ([], CBOR, short)
    longer = '{"a": [1, -2, 2.5, h\'01ab\', null, true, false], 3: 1000({"k": "v"}), "e": {}}'
    assert show(edn_to_cbor(longer), 60)[2] == (
        '{\n    "a": [1, -2, 2.5, h\'01ab\', null, true, false],\n    3: 1000({"k": "v"}),\n    "e": {}\n}'
    )
    info, mime, text = show(edn_to_cbor('{"l": [%s]}' % ", ".join(map(str, range(30)))), 60)
    assert (info, mime) == ([], CBOR)
    assert text.startswith('{\n    "l": [\n        0,\n        1,\n')
    assert text.endswith("\n        29\n    ]\n}")


@pytest.mark.parametrize("hexdata,expected", [
    ("c11a514b67b0", "1(1363896240)"),
    ("c074323031332d30332d32315432303a30343a30305a", '0("2013-03-21T20:04:00Z")'),
    ("d9d9f701", "55799(1)"),
    ("f0", "simple(16)"),
    ("f7", "undefined"),
    ("f97e00", "NaN"),
    ("fb3ff8000000000000", "1.5_3"),
    ("1817", "23_0"),
    ("c249010000000000000000", "18446744073709551616"),
    ("5f42010243030405ff", "(_ h'0102', h'030405')"),
    ("7f657374726561646d696e67ff", '(_ "strea", "ming")'),
    ("a1a1010202", "{{1: 2}: 2}"),
])
def test_cbor_items(hexdata, expected):
    assert show(bytes.fromhex(hexdata), 60) == ([], CBOR, expected)


def test_cbor_text_strings_are_escaped():
    raw = '"q?\n\x9b\x1b'.encode()
    info, mime, text = show(bytes([0x60 + len(raw)]) + raw, 60)
    assert (info, mime) == ([], CBOR)
    assert text == '"\\"q?\\n\\u009b\\u001b"'


def test_cbor_text_string_not_utf8():
    payload = bytes.fromhex("62c328")
    assert_hexdump_of(show(payload, 60), payload, "not valid CBOR .*not UTF-8.*showing raw bytes")


@pytest.mark.parametrize("cf", [ContentFormat.SENML_CBOR, ContentFormat.CWT, ContentFormat.COSE_SIGN1,
                                ContentFormat.COSE_KEY, ContentFormat.ACE_CBOR, ContentFormat.VND_OCF_CBOR,
                                ContentFormat.YANG_DATA_CBOR_SID, ContentFormat.MULTIPART_CORE])
def test_cbor_based_formats(cf):
    assert show(bytes.fromhex("820102"), cf) == ([], CBOR, "[1, 2]")


@pytest.mark.parametrize("cf", [ContentFormat.CBOR_SEQ, ContentFormat.MISSING_BLOCKS_CBOR_SEQ,
                                ContentFormat.EDHOC_CBOR_SEQ])
def test_cbor_sequence(cf):
    assert show(bytes.fromhex("01a0626869"), cf) == ([], CBOR, '1,\n{},\n"hi"')


def test_cbor_trailing_data():
    payload = bytes.fromhex("0102")
    assert_hexdump_of(show(payload, 60), payload, r"not valid CBOR \(1 byte\(s\) after the item")


@pytest.mark.parametrize("hexdata", ["83", "820102ff", "63616263ff", "1c", "a1", "ff"])
def test_broken_cbor(hexdata):
    payload = bytes.fromhex(hexdata)
    assert_hexdump_of(show(payload, 60), payload, r"^Payload is not valid CBOR \(.+\), showing raw bytes$")


def test_truncated_cbor_sequence():
    payload = bytes.fromhex("0182")
    assert_hexdump_of(show(payload, 63), payload, "not valid a CBOR sequence")


@pytest.mark.parametrize("head,depth", [(b"\x81", 5000), (b"\xa1\x00", 300), (b"\xd8\x20", 300),
                                        (b"\xd8\x20", 100000)])
def test_deeply_nested_cbor_does_not_raise(head, depth):
    payload = head * depth + b"\x00"
    assert_hexdump_of(show(payload, 60), payload, r"not valid CBOR")


# ------------------------------------------------------------ link-format


def test_link_format_one_per_line():
    payload = (b'</sensors/temp>;rt="temperature-c";if="sensor",'
               b'</sensors/light>;rt="light-lux";title="a, b; c",</x>;obs,'
               b'<coap://[::1]/y>;ct=40;sz=12')
    assert show(payload, 40) == ([], "application/link-format", (
        '</sensors/temp>;rt="temperature-c";if="sensor",\n'
        '</sensors/light>;rt="light-lux";title="a, b; c",\n'
        "</x>;obs,\n"
        "<coap://[::1]/y>;ct=40;sz=12"
    ))


def test_link_format_tolerates_whitespace():
    info, mime, text = show(b' </a> ; rt = "x" ,\n </b>', 40)
    assert (info, mime) == ([], "application/link-format")
    assert text == '</a> ; rt = "x",\n</b>'


@pytest.mark.parametrize("payload", [b"hello", b"</a>;rt=\"x", b"</a>,", b"</a> </b>", b"<a"])
def test_broken_link_format(payload):
    assert_shown_as_is(show(payload, 40), payload.decode(), r"^Payload is not valid link-format \(.+\), shown as it is$")


# -------------------------------------------------------------------- text


def test_text_as_is():
    assert show("Hallo\tWelt\r\n∑".encode(), 0) == ([], "text/plain", "Hallo\tWelt\r\n∑")


def test_text_control_characters_are_escaped():
    assert show(b"red \x1b[31mtext\x07", 0) == ([], "text/plain", "red \\x1b[31mtext\\x07")


def test_text_not_utf8():
    payload = b"caf\xe9"
    assert_hexdump_of(show(payload, 0), payload, r"not valid text \(not UTF-8")


@pytest.mark.parametrize("cf,mime", [
    (ContentFormat.XML, "application/xml"),
    (ContentFormat.SENML_XML, "application/senml+xml"),
    (ContentFormat.IMAGE_SVG_XML, "image/svg+xml"),
    (ContentFormat.TEXT_CSS, "text/css"),
    (ContentFormat.JAVASCRIPT, "application/javascript"),
])
def test_textual_formats_keep_their_type(cf, mime):
    assert show(b"<a/>", cf) == ([], mime, "<a/>")


# ------------------------------------------------------- everything else


@pytest.mark.parametrize("cf", [ContentFormat.OCTETSTREAM, ContentFormat.IMAGE_PNG, ContentFormat.OSCORE,
                                ContentFormat.EXI, ContentFormat.VND_OMA_LWM2M_TLV, ContentFormat.PKIX_CERT])
def test_binary_formats_are_hexdumped(cf):
    payload = bytes(range(20))
    assert show(payload, cf) == ([], MEDIATYPE_HEXDUMP, hexdump(payload))


def test_unknown_content_format():
    payload = b'{"a": 1}'
    assert_hexdump_of(show(payload, 12345), payload, r"Unknown Content-Format 12345")


def test_without_content_format():
    assert show(b"just text") == ([], "text/plain", "just text")
    assert show(b"\x00\x01binary") == ([], MEDIATYPE_HEXDUMP, hexdump(b"\x00\x01binary"))
    assert show(b"\xff\xfe") == ([], MEDIATYPE_HEXDUMP, hexdump(b"\xff\xfe"))


def test_content_format_from_the_requests_accept():
    request = Message(accept=ContentFormat.CBOR)
    response = Message(payload=bytes.fromhex("820102"))
    response.request = request
    assert pretty_print(response) == ([], CBOR, "[1, 2]")
    # The response's own format wins
    response = Message(payload=b"[1]", content_format=ContentFormat.JSON)
    response.request = request
    assert pretty_print(response)[1] == "application/json"


def test_empty_payload():
    assert show(b"", 50) == ([], "text/plain", "")
    assert show(b"") == ([], "text/plain", "")


# ------------------------------------------------------------------ deflate


def test_deflated_json():
    payload = zlib.compress(b'{"x":1}')
    info, mime, text = show(payload, ContentFormat.JSON_DEFLATE)
    assert mime == "application/json" and text == '{\n    "x": 1\n}'
    assert len(info) == 1 and "Inflated" in info[0]


def test_raw_deflate_stream_is_accepted():
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    payload = compressor.compress(b"[1]") + compressor.flush()
    _, mime, text = show(payload, 11050)
    assert (mime, text) == ("application/json", "[\n    1\n]")


def test_deflated_cbor():
    _, mime, text = show(zlib.compress(bytes.fromhex("820102")), ContentFormat.CBOR_DEFLATE)
    assert (mime, text) == (CBOR, "[1, 2]")


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
    info, mime, text = show(zlib.compress(b"{nope"), 11050)
    # What is shown is the inflated text, which is what failed to parse.
    assert (mime, text) == ("text/plain", "{nope")
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
    info, mime, text = pretty_print(_OddMessage())
    assert mime == MEDIATYPE_HEXDUMP and text == hexdump(b"ab")
    assert "RuntimeError" in info[0] and "boom" in info[0]
    info, mime, text = pretty_print(_NoPayload())
    assert text == "" and "RuntimeError" in info[0]


content_formats = st.one_of(
    st.sampled_from([None] + list(ContentFormat)),
    st.integers(min_value=0, max_value=65535),
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), content_formats)
def test_arbitrary_payloads_never_raise(payload, cf):
    info, mime, text = show(payload, cf)
    assert isinstance(info, list) and all(isinstance(line, str) for line in info)
    assert isinstance(mime, str) and isinstance(text, str)
    assert "\x1b" not in text and "\x9b" not in text
    if mime == MEDIATYPE_HEXDUMP:
        assert text == hexdump(payload) or cf in (11050, 11060)


@settings(max_examples=100, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
))
def test_arbitrary_cbor_values_render(value):
    cbor2 = pytest.importorskip("cbor2")
    info, mime, text = show(cbor2.dumps(value), 60)
    assert (info, mime) == ([], CBOR)
    assert text


# ------------------------------------------------------------ contenttype


@pytest.mark.parametrize("given_type,expected", [
    ("application/cbor", "cbor"), ("application/senml+cbor", "cbor"), ("application/cbor-seq", "cbor-seq"),
    ("application/missing-blocks+cbor-seq", "cbor-seq"), ("application/json", "json"),
    ("application/senml+json; charset=utf-8", "json"), ("APPLICATION/JSON", "json"),
    ("application/link-format", "link-format"), ("text/plain;charset=utf-8", None),
    ("application/octet-stream", None), ("", None), ("type 12345", None),
])
def test_categorize(given_type, expected):
    assert categorize(given_type) == expected


# ----------------------------------------------------------------- colors


def test_colorize_json():
    pytest.importorskip("pygments")
    text = '{\n    "a": 1\n}'
    colored = colorize(text, "application/json")
    assert "\x1b[" in colored
    assert ANSI.sub("", colored) == text


def test_colorize_keeps_trailing_newline_structure():
    pytest.importorskip("pygments")
    assert ANSI.sub("", colorize("[1]\n", "application/json")) == "[1]\n"
    assert ANSI.sub("", colorize("[1]", "application/json")) == "[1]"


def test_colorize_off_or_unknown():
    assert colorize('{"a": 1}', "application/json", color=False) == '{"a": 1}'
    assert colorize("plain", "text/plain") == "plain"
    assert colorize("plain", "application/x-no-such-type") == "plain"
    assert colorize("", "application/json") == ""


def test_lexer_for_mime():
    pytest.importorskip("pygments")
    from pygments.lexers import HexdumpLexer, JsonLexer, XmlLexer
    from pygments.util import ClassNotFound

    from aiocoap.util.linkformat_pygments import LinkFormatLexer

    assert isinstance(lexer_for_mime("application/json"), JsonLexer)
    assert isinstance(lexer_for_mime("application/senml+json"), JsonLexer)
    assert isinstance(lexer_for_mime("application/senml+xml"), XmlLexer)
    assert isinstance(lexer_for_mime(MEDIATYPE_HEXDUMP), HexdumpLexer)
    assert isinstance(lexer_for_mime("application/link-format"), LinkFormatLexer)
    assert lexer_for_mime(CBOR).name == "CBOR diagnostic notation"
    for mime in ("text/plain", "text/plain;charset=utf-8", "application/x-no-such-type", "application/senml+cbor"):
        with pytest.raises(ClassNotFound):
            lexer_for_mime(mime)


@pytest.mark.parametrize("mime,payload,cf", [
    (CBOR, "a4616182f6f7f0f97e00c11a514b67b0626b6b40a0", 60),
    (CBOR, "9f01fb3ff8000000000000187b5f4101ff7fffff", 60),
    ("application/link-format", '</a>;rt="x y";ct=40;obs,<coap://h/b>;if=core.s', 40),
])
def test_own_lexers_cover_their_output(mime, payload, cf):
    pytest.importorskip("pygments")
    from pygments.token import Error

    data = bytes.fromhex(payload) if mime == CBOR else payload.encode()
    info, got_mime, text = show(data, cf)
    assert (info, got_mime) == ([], mime)
    tokens = list(lexer_for_mime(mime).get_tokens(text))
    assert not [t for t in tokens if t[0] in Error]
    colored = colorize(text, mime)
    assert colored != text and ANSI.sub("", colored) == text


def test_colorize_hexdump():
    pytest.importorskip("pygments")
    text = hexdump(b"hello world, more than sixteen bytes")
    assert ANSI.sub("", colorize(text, MEDIATYPE_HEXDUMP)) == text


# -------------------------------------------------------- missing modules


def test_without_pygments(monkeypatch):
    for name in [m for m in sys.modules if m == "pygments" or m.startswith("pygments.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pygments", None)
    with pytest.raises(ImportError, match=r"aiocoap\[prettyprint\]"):
        lexer_for_mime("application/json")
    assert colorize('{"a": 1}', "application/json") == '{"a": 1}'
    monkeypatch.delitem(sys.modules, "aiocoap.util.linkformat_pygments", raising=False)
    with pytest.raises(ImportError, match=r"aiocoap\[prettyprint\]"):
        importlib.import_module("aiocoap.util.linkformat_pygments")


def test_module_works_without_optional_modules(monkeypatch):
    for name in ("cbor2", "pygments", "link_header"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "aiocoap.util.prettyprint")
    fresh = importlib.import_module("aiocoap.util.prettyprint")
    assert fresh is not prettyprint
    info, mime, text = fresh.pretty_print(Message(payload=b'{"a":1}', content_format=50))
    assert (info, mime, text) == ([], "application/json", '{\n    "a": 1\n}')
    assert fresh.colorize(text, mime) == text
    assert fresh.pretty_print(Message(payload=b"</a>,</b>", content_format=40))[2] == "</a>,\n</b>"
    assert fresh.pretty_print(Message(payload=bytes.fromhex("820102"), content_format=60))[2] == "[1, 2]"
