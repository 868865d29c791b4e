"""Tests for aiocoap.numbers.contentformat and the legacy media_types module."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocoap import Message
from aiocoap.numbers import ContentFormat
from aiocoap.numbers.contentformat import ContentFormat as DirectContentFormat
from aiocoap.numbers.media_types import media_types, media_types_rev

# Written out independently of the implementation: number, member name,
# media type, content coding.
REGISTRY = [
    (0, "TEXT", "text/plain;charset=utf-8", "identity"),
    (16, "COSE_ENCRYPT0", 'application/cose;cose-type="cose-encrypt0"', "identity"),
    (17, "COSE_MAC0", 'application/cose;cose-type="cose-mac0"', "identity"),
    (18, "COSE_SIGN1", 'application/cose;cose-type="cose-sign1"', "identity"),
    (19, "ACE_CBOR", "application/ace+cbor", "identity"),
    (21, "IMAGE_GIF", "image/gif", "identity"),
    (22, "IMAGE_JPEG", "image/jpeg", "identity"),
    (23, "IMAGE_PNG", "image/png", "identity"),
    (40, "LINKFORMAT", "application/link-format", "identity"),
    (41, "XML", "application/xml", "identity"),
    (42, "OCTETSTREAM", "application/octet-stream", "identity"),
    (47, "EXI", "application/exi", "identity"),
    (50, "JSON", "application/json", "identity"),
    (51, "JSON_PATCH_JSON", "application/json-patch+json", "identity"),
    (52, "MERGE_PATCH_JSON", "application/merge-patch+json", "identity"),
    (60, "CBOR", "application/cbor", "identity"),
    (61, "CWT", "application/cwt", "identity"),
    (62, "MULTIPART_CORE", "application/multipart-core", "identity"),
    (63, "CBOR_SEQ", "application/cbor-seq", "identity"),
    (64, "EDHOC_CBOR_SEQ", "application/edhoc+cbor-seq", "identity"),
    (65, "CID_EDHOC_CBOR_SEQ", "application/cid-edhoc+cbor-seq", "identity"),
    (96, "COSE_ENCRYPT", 'application/cose;cose-type="cose-encrypt"', "identity"),
    (97, "COSE_MAC", 'application/cose;cose-type="cose-mac"', "identity"),
    (98, "COSE_SIGN", 'application/cose;cose-type="cose-sign"', "identity"),
    (101, "COSE_KEY", "application/cose-key", "identity"),
    (102, "COSE_KEY_SET", "application/cose-key-set", "identity"),
    (110, "SENML_JSON", "application/senml+json", "identity"),
    (111, "SENSML_JSON", "application/sensml+json", "identity"),
    (112, "SENML_CBOR", "application/senml+cbor", "identity"),
    (113, "SENSML_CBOR", "application/sensml+cbor", "identity"),
    (114, "SENML_EXI", "application/senml-exi", "identity"),
    (115, "SENSML_EXI", "application/sensml-exi", "identity"),
    (140, "YANG_DATA_CBOR_SID", "application/yang-data+cbor;id=sid", "identity"),
    (256, "COAP_GROUP_JSON", "application/coap-group+json", "identity"),
    (257, "CONCISE_PROBLEM_DETAILS_CBOR", "application/concise-problem-details+cbor", "identity"),
    (258, "SWID_CBOR", "application/swid+cbor", "identity"),
    (259, "PKIXCMP", "application/pkixcmp", "identity"),
    (271, "DOTS_CBOR", "application/dots+cbor", "identity"),
    (272, "MISSING_BLOCKS_CBOR_SEQ", "application/missing-blocks+cbor-seq", "identity"),
    (280, "PKCS7_MIME_SERVER_GENERATED_KEY",
     "application/pkcs7-mime;smime-type=server-generated-key", "identity"),
    (281, "PKCS7_MIME_CERTS_ONLY", "application/pkcs7-mime;smime-type=certs-only", "identity"),
    (284, "PKCS8", "application/pkcs8", "identity"),
    (285, "CSRATTRS", "application/csrattrs", "identity"),
    (286, "PKCS10", "application/pkcs10", "identity"),
    (287, "PKIX_CERT", "application/pkix-cert", "identity"),
    (290, "AIF_CBOR", "application/aif+cbor", "identity"),
    (291, "AIF_JSON", "application/aif+json", "identity"),
    (310, "SENML_XML", "application/senml+xml", "identity"),
    (311, "SENSML_XML", "application/sensml+xml", "identity"),
    (320, "SENML_ETCH_JSON", "application/senml-etch+json", "identity"),
    (322, "SENML_ETCH_CBOR", "application/senml-etch+cbor", "identity"),
    (340, "YANG_DATA_CBOR", "application/yang-data+cbor", "identity"),
    (341, "YANG_DATA_CBOR_NAME", "application/yang-data+cbor;id=name", "identity"),
    (432, "TD_JSON", "application/td+json", "identity"),
    (433, "TM_JSON", "application/tm+json", "identity"),
    (10000, "VND_OCF_CBOR", "application/vnd.ocf+cbor", "identity"),
    (10001, "OSCORE", "application/oscore", "identity"),
    (10002, "JAVASCRIPT", "application/javascript", "identity"),
    (11050, "JSON_DEFLATE", "application/json", "deflate"),
    (11060, "CBOR_DEFLATE", "application/cbor", "deflate"),
    (11542, "VND_OMA_LWM2M_TLV", "application/vnd.oma.lwm2m+tlv", "identity"),
    (11543, "VND_OMA_LWM2M_JSON", "application/vnd.oma.lwm2m+json", "identity"),
    (11544, "VND_OMA_LWM2M_CBOR", "application/vnd.oma.lwm2m+cbor", "identity"),
    (20000, "TEXT_CSS", "text/css", "identity"),
    (30000, "IMAGE_SVG_XML", "image/svg+xml", "identity"),
]

REGISTRY_IDS = [f"{number}-{name}" for number, name, _, _ in REGISTRY]


def test_reexported_class_is_the_same():
    assert ContentFormat is DirectContentFormat


@pytest.mark.parametrize("number,name,media_type,encoding", REGISTRY, ids=REGISTRY_IDS)
def test_number_to_media_type(number, name, media_type, encoding):
    cf = ContentFormat(number)
    assert cf is getattr(ContentFormat, name)
    assert cf == number and int(cf) == number
    assert cf.name == name
    assert cf.media_type == media_type
    assert cf.encoding == encoding
    assert cf.is_known()


@pytest.mark.parametrize("number,name,media_type,encoding", REGISTRY, ids=REGISTRY_IDS)
def test_media_type_to_number(number, name, media_type, encoding):
    assert ContentFormat.by_media_type(media_type, encoding) is ContentFormat(number)
    # The string form of a Content-Format is a valid lookup key for it.
    assert ContentFormat.by_media_type(str(ContentFormat(number))) is ContentFormat(number)


def test_registry_table_matches_members_exactly():
    members = {int(cf): cf.name for cf in ContentFormat}
    assert members == {number: name for number, name, _, _ in REGISTRY}
    for cf in ContentFormat:
        assert cf.name.isupper() and cf.name.isidentifier()


def test_legacy_member_names_kept():
    assert (ContentFormat.TEXT, ContentFormat.LINKFORMAT, ContentFormat.XML,
            ContentFormat.OCTETSTREAM, ContentFormat.EXI, ContentFormat.JSON,
            ContentFormat.CBOR) == (0, 40, 41, 42, 47, 50, 60)


def test_repr_and_str_known():
    assert repr(ContentFormat.JSON) == "<ContentFormat 50, media_type='application/json'>"
    assert str(ContentFormat.JSON) == "application/json"
    assert f"{ContentFormat.JSON}" == "application/json"
    assert f"{ContentFormat.JSON:d}" == "50"
    assert str(ContentFormat.TEXT) == "text/plain;charset=utf-8"
    assert str(ContentFormat.COSE_SIGN1) == 'application/cose;cose-type="cose-sign1"'


def test_repr_and_str_with_content_coding():
    assert repr(ContentFormat(11050)) == (
        "<ContentFormat 11050, media_type='application/json', encoding='deflate'>"
    )
    assert str(ContentFormat(11060)) == "application/cbor@deflate"


@pytest.mark.parametrize("number", [1, 15, 20, 43, 12345, 64999, 65000, 65535])
def test_unknown_numbers(number):
    cf = ContentFormat(number)
    assert isinstance(cf, ContentFormat)
    assert cf == number
    assert not cf.is_known()
    assert cf.media_type is None
    assert cf.encoding == "identity"
    assert repr(cf) == f"<ContentFormat {number}>"
    assert str(cf) == str(number)
    assert cf.name == str(number)


def test_behaves_like_int():
    assert ContentFormat.JSON + 1 == 51
    assert hash(ContentFormat.JSON) == hash(50)
    assert {50: "x"}[ContentFormat.JSON] == "x"
    assert ContentFormat(50) is ContentFormat.JSON
    assert pickle.loads(pickle.dumps(ContentFormat.JSON)) is ContentFormat.JSON
    assert pickle.loads(pickle.dumps(ContentFormat(12345))) == 12345
    assert 50 in ContentFormat and 12345 not in ContentFormat
    assert list(ContentFormat) == sorted(ContentFormat)


@pytest.mark.parametrize("spelling", [
    "text/plain",
    "text/plain;charset=utf-8",
    "text/plain; charset=UTF-8",
    "TEXT/PLAIN;CHARSET=utf-8",
    'text/plain; charset="utf-8"',
    "text/plain ; charset = utf-8 ",
    "text/plain;charset=utf-8;",
])
def test_text_plain_spellings(spelling):
    assert ContentFormat.by_media_type(spelling) is ContentFormat.TEXT


@pytest.mark.parametrize("spelling,expected", [
    ("Application/JSON", 50),
    ("application/cose; cose-type=cose-encrypt0", 16),
    ('application/cose;cose-type="cose-mac"', 97),
    ('application/cose ; cose-type = "cose-sign"', 98),
    ("application/yang-data+cbor; id=sid", 140),
    ("application/yang-data+cbor;ID=name", 341),
    ("application/yang-data+cbor", 340),
    ("application/pkcs7-mime; smime-type=certs-only", 281),
    ("application/json@deflate", 11050),
    ("application/cbor @ DEFLATE", 11060),
])
def test_parameter_and_coding_handling(spelling, expected):
    assert ContentFormat.by_media_type(spelling) == expected


def test_encoding_argument():
    assert ContentFormat.by_media_type("application/json", "deflate") is ContentFormat.JSON_DEFLATE
    assert ContentFormat.by_media_type("application/json", "Deflate") is ContentFormat.JSON_DEFLATE
    assert ContentFormat.by_media_type("application/cbor", encoding="deflate") == 11060
    assert ContentFormat.by_media_type("application/json@deflate", "deflate") == 11050


@pytest.mark.parametrize("media_type,encoding", [
    ("application/foo", "identity"),
    ("application/json", "gzip"),
    ("application/xml", "deflate"),
    ("application/json@deflate", "gzip"),
    ("text/plain;charset=iso-8859-1", "identity"),
    ("text/plain", "deflate"),
    ("application/cose", "identity"),
    ('application/cose;cose-type="COSE-SIGN1"', "identity"),
    ("application/json;x", "identity"),
    ("application/json;x=", "identity"),
    ('application/json;x="unterminated', "identity"),
    ("application/json@", "identity"),
    ("application", "identity"),
    ("json", "identity"),
    ("", "identity"),
    ("/", "identity"),
    ("application/json extra", "identity"),
])
def test_unknown_media_types_raise_keyerror(media_type, encoding):
    with pytest.raises(KeyError):
        ContentFormat.by_media_type(media_type, encoding)


def test_non_string_lookup_raises_keyerror():
    with pytest.raises(KeyError):
        ContentFormat.by_media_type(50)  # type: ignore[arg-type]


_token_chars = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~")


@given(st.text(max_size=60))
def test_arbitrary_text_gives_format_or_keyerror(text):
    try:
        result = ContentFormat.by_media_type(text)
    except KeyError:
        return
    assert isinstance(result, ContentFormat) and result.is_known()


@given(
    entry=st.sampled_from(REGISTRY),
    upper=st.lists(st.booleans(), min_size=80, max_size=80),
    spaces=st.lists(st.sampled_from(["", " ", "\t", "  "]), min_size=4, max_size=4),
    quote=st.booleans(),
)
def test_reformatted_registry_entries_are_found(entry, upper, spaces, quote):
    number, _, media_type, encoding = entry
    mtype, _, param = media_type.partition(";")
    # Case changes are allowed on the type and on parameter names, and on
    # the value of charset.
    mtype = "".join(c.upper() if u else c for c, u in zip(mtype, upper))
    text = spaces[0] + mtype + spaces[1]
    if param:
        name, _, value = param.partition("=")
        value = value.strip('"')
        if name == "charset":
            value = value.upper() if upper[-1] else value
        if quote:
            value = f'"{value}"'
        name = name.upper() if upper[-2] else name
        text += f";{spaces[2]}{name}{spaces[3]}={spaces[2]}{value}{spaces[1]}"
    assert ContentFormat.by_media_type(text, encoding) == number


@given(st.lists(_token_chars, min_size=1, max_size=10), st.lists(_token_chars, min_size=1, max_size=10))
def test_unregistered_token_types_raise_keyerror(type_, subtype):
    text = "".join(type_) + "/" + "".join(subtype)
    known = {m.split(";")[0].lower() for _, _, m, _ in REGISTRY} | {"text/plain"}
    if text.lower() in known:
        assert ContentFormat.by_media_type(text).is_known()
    else:
        with pytest.raises(KeyError):
            ContentFormat.by_media_type(text)


def test_media_types_dicts_are_consistent():
    identity_entries = {n: m for n, _, m, e in REGISTRY if e == "identity"}
    assert media_types == identity_entries
    assert media_types_rev["text/plain"] == 0
    assert {k: v for k, v in media_types_rev.items() if k != "text/plain"} == {
        m: n for n, m in identity_entries.items()
    }
    for number, media_type in media_types.items():
        assert media_types_rev[media_type] == number
        assert ContentFormat(number).media_type == media_type
        assert ContentFormat.by_media_type(media_type) == number


def test_message_content_format_is_wrapped():
    msg = Message(content_format=50)
    assert msg.opt.content_format is ContentFormat.JSON
    assert msg.opt.content_format == 50
    msg.opt.content_format = ContentFormat.by_media_type("application/cbor")
    assert msg.opt.content_format == 60
    msg.opt.accept = 11060
    assert msg.opt.accept is ContentFormat.CBOR_DEFLATE
    msg.opt.content_format = 65001
    assert repr(msg.opt.content_format) == "<ContentFormat 65001>"


def test_content_format_survives_encoding():
    msg = Message(_mtype=0, code=1, _mid=1, content_format=ContentFormat.SENML_CBOR, payload=b"\x80")
    decoded = Message.decode(msg.encode())
    assert decoded.opt.content_format is ContentFormat.SENML_CBOR
