"""aiocoap 0.4.x compatibility: messages, numbers and options, written the
way programs for aiocoap 0.4.x (its examples, tutorials and test suites)
use them."""

import warnings

import pytest

import aiocoap
from aiocoap import CON, GET, NON, Message
from aiocoap.numbers import ContentFormat, OptionNumber
from aiocoap.optiontypes import ContentFormatOption, StringOption, TypedOption


def test_mtype_mid_token_still_work_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="mtype"):
        m = Message(code=GET, mtype=NON, uri="coap://localhost/x")
    assert m.mtype is NON
    with pytest.warns(DeprecationWarning, match="mid"):
        assert Message(code=GET, mid=5).mid == 5
    with pytest.warns(DeprecationWarning, match="token"):
        assert Message(code=GET, token=b"tk").token == b"tk"
    # what code building raw messages uses instead, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = Message(code=GET, _mtype=CON, _mid=0x1234, _token=b"\x01")
    assert raw.encode() == b"\x41\x01\x12\x34\x01"


def test_reliability_is_asked_for_with_the_tuning_classes():
    request = Message(code=GET, uri="coap://localhost/x", transport_tuning=aiocoap.Unreliable)
    assert request.transport_tuning.reliability is False and request.mtype is None
    # the classes themselves work as tunings: derived values included
    assert aiocoap.Reliable.MAX_TRANSMIT_WAIT == 93.0
    assert aiocoap.Reliable.EXCHANGE_LIFETIME == 247.0
    assert aiocoap.numbers.TransportTuning.reliability is None


def test_requested_scheme_selects_the_transport():
    request = Message(code=GET, uri_host="localhost", uri_path=["x"])
    request.requested_scheme = "coap+tcp"
    assert request.remote.scheme == "coap+tcp" and request.remote.hostinfo == "localhost"
    assert request.get_request_uri() == "coap+tcp://localhost/x"
    other = Message(code=GET, uri="coap://[::1]:1234/y")
    other.requested_scheme = "coaps"
    assert other.get_request_uri() == "coaps://[::1]:1234/y"
    with pytest.raises(ValueError):
        Message(code=GET).requested_scheme = "coap"


def test_request_uri_keeps_an_explicit_default_port():
    assert Message(code=GET, uri="coap://localhost:5683/x").get_request_uri() == "coap://localhost:5683/x"
    assert Message(code=GET, uri="coap://localhost/x").get_request_uri() == "coap://localhost/x"


@pytest.mark.parametrize("uri", ["http://example.com/x?y", "urn:ietf:rfc:7252", "mailto:someone@example.com"])
def test_non_coap_uris_become_proxy_uri(uri):
    request = Message(code=GET, uri=uri)
    assert request.opt.proxy_uri == uri
    assert request.remote is None
    assert request.opt.uri_host is None and request.opt.uri_path == ()


def test_uri_path_abbrev():
    request = Message(code=GET, uri="coap://localhost", uri_path_abbrev=0)
    assert request.opt.uri_path_abbrev == 0
    assert request.get_request_uri() == "coap://localhost/.well-known/core"
    assert Message.decode(request.copy(mid=1, mtype=CON).encode()).opt.uri_path_abbrev == 0
    request.opt.uri_path = ["x"]
    with pytest.raises(ValueError, match="Conflicting"):
        request.get_request_uri()
    unknown = Message(code=GET, uri="coap://localhost", uri_path_abbrev=9999)
    with pytest.raises(ValueError, match="Unknown"):
        unknown.get_request_uri()


def test_types_and_codes_print_and_import_as_in_0_4():
    assert str(aiocoap.ACK) == "ACK" and f"{aiocoap.CON}" == "CON"
    from aiocoap.numbers.codes import CHANGED, CONTENT, NOT_FOUND

    assert CONTENT == 69 and str(CHANGED) == "2.04 Changed" and NOT_FOUND is aiocoap.NOT_FOUND
    assert OptionNumber.URI_PATH.name_printable == "Uri-Path"


def test_custom_option_format_as_applications_set_it():
    experimental = OptionNumber(65003)
    experimental.set_format(StringOption)
    m = Message(code=GET, _mtype=CON, _mid=1)
    m.opt.add_option(experimental.create_option(value="hello"))
    decoded = Message.decode(m.encode())
    assert decoded.opt.get_option(65003)[0].value == "hello"
    opaque = OptionNumber.ETAG.format
    with pytest.warns(UserWarning):
        OptionNumber.ETAG.set_format(StringOption)
    with pytest.warns(UserWarning):
        OptionNumber.ETAG.format = opaque  # (back as it was)


def test_typed_options():
    option = ContentFormatOption(OptionNumber.CONTENT_FORMAT, 50)
    assert option.value is ContentFormat.JSON and isinstance(option, TypedOption)
    assert option.encode() == b"\x32"
    with pytest.raises(ValueError):
        option.value = "json"


def test_experimental_content_format():
    ContentFormat.define(65011, "application/x-compat-test")
    assert str(ContentFormat(65011)) == "application/x-compat-test"
    assert ContentFormat.by_media_type("application/x-compat-test") == 65011
    assert ContentFormat.SENML == ContentFormat.SENML_CBOR


def test_read_extended_field_value():
    from aiocoap.options import _read_extended_field_value

    assert _read_extended_field_value(14, b"\x01\x00rest") == (256 + 269, b"rest")
    with pytest.raises(aiocoap.error.UnparsableMessage):
        _read_extended_field_value(15, b"")


def test_payload_html():
    assert "No payload" in Message().payload_html()
    html = Message(payload=b'{"a": 1}', content_format=50).payload_html()
    assert html.startswith("<div>") and "a" in html
