"""Tests for aiocoap.numbers: codes (RFC 7252 §5.9, §12.1; RFC 8323 §5),
message types (RFC 7252 §3), option numbers and their properties (RFC 7252
§5.4.6, §12.2) and the transmission parameters (RFC 7252 §4.8)."""

import pickle

import pytest

import aiocoap
from aiocoap import numbers
from aiocoap.numbers import constants
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.optionnumbers import OptionNumber, is_nocachekey_number
from aiocoap.numbers.types import ACK, CON, NON, RST, Type
from aiocoap.optiontypes import BlockOption, OpaqueOption, StringOption, UintOption

# --- codes -------------------------------------------------------------------

# The reprs as the manual lists them for every member of Code.
CODE_REPRS = {
    "EMPTY": '<Code 0 "EMPTY">',
    "GET": '<Request Code 1 "GET">',
    "POST": '<Request Code 2 "POST">',
    "PUT": '<Request Code 3 "PUT">',
    "DELETE": '<Request Code 4 "DELETE">',
    "FETCH": '<Request Code 5 "FETCH">',
    "PATCH": '<Request Code 6 "PATCH">',
    "iPATCH": '<Request Code 7 "iPATCH">',
    "CREATED": '<Successful Response Code 65 "2.01 Created">',
    "DELETED": '<Successful Response Code 66 "2.02 Deleted">',
    "VALID": '<Successful Response Code 67 "2.03 Valid">',
    "CHANGED": '<Successful Response Code 68 "2.04 Changed">',
    "CONTENT": '<Successful Response Code 69 "2.05 Content">',
    "CONTINUE": '<Successful Response Code 95 "2.31 Continue">',
    "BAD_REQUEST": '<Response Code 128 "4.00 Bad Request">',
    "UNAUTHORIZED": '<Response Code 129 "4.01 Unauthorized">',
    "BAD_OPTION": '<Response Code 130 "4.02 Bad Option">',
    "FORBIDDEN": '<Response Code 131 "4.03 Forbidden">',
    "NOT_FOUND": '<Response Code 132 "4.04 Not Found">',
    "METHOD_NOT_ALLOWED": '<Response Code 133 "4.05 Method Not Allowed">',
    "NOT_ACCEPTABLE": '<Response Code 134 "4.06 Not Acceptable">',
    "REQUEST_ENTITY_INCOMPLETE": '<Response Code 136 "4.08 Request Entity Incomplete">',
    "CONFLICT": '<Response Code 137 "4.09 Conflict">',
    "PRECONDITION_FAILED": '<Response Code 140 "4.12 Precondition Failed">',
    "REQUEST_ENTITY_TOO_LARGE": '<Response Code 141 "4.13 Request Entity Too Large">',
    "UNSUPPORTED_CONTENT_FORMAT": '<Response Code 143 "4.15 Unsupported Media Type">',
    "UNSUPPORTED_MEDIA_TYPE": '<Response Code 143 "4.15 Unsupported Media Type">',
    "UNPROCESSABLE_ENTITY": '<Response Code 150 "4.22 Unprocessable Entity">',
    "TOO_MANY_REQUESTS": '<Response Code 157 "4.29 Too Many Requests">',
    "INTERNAL_SERVER_ERROR": '<Response Code 160 "5.00 Internal Server Error">',
    "NOT_IMPLEMENTED": '<Response Code 161 "5.01 Not Implemented">',
    "BAD_GATEWAY": '<Response Code 162 "5.02 Bad Gateway">',
    "SERVICE_UNAVAILABLE": '<Response Code 163 "5.03 Service Unavailable">',
    "GATEWAY_TIMEOUT": '<Response Code 164 "5.04 Gateway Timeout">',
    "PROXYING_NOT_SUPPORTED": '<Response Code 165 "5.05 Proxying Not Supported">',
    "HOP_LIMIT_REACHED": '<Response Code 168 "5.08 Hop Limit Reached">',
    "CSM": '<Code 225 "7.01 Csm">',
    "PING": '<Code 226 "7.02 Ping">',
    "PONG": '<Code 227 "7.03 Pong">',
    "RELEASE": '<Code 228 "7.04 Release">',
    "ABORT": '<Code 229 "7.05 Abort">',
}


@pytest.mark.parametrize("name,expected", sorted(CODE_REPRS.items()))
def test_code_repr_as_in_manual(name, expected):
    assert repr(getattr(Code, name)) == expected


def test_every_code_member_has_a_documented_repr():
    names = {c.name for c in Code}
    assert names <= set(CODE_REPRS)


def test_tour_code_reprs():
    assert repr(aiocoap.CONTENT) == '<Successful Response Code 69 "2.05 Content">'
    assert repr(aiocoap.GET) == '<Request Code 1 "GET">'
    assert repr(Code(132)) == '<Response Code 132 "4.04 Not Found">'
    assert repr(Code(225)) == '<Code 225 "7.01 Csm">'


@pytest.mark.parametrize("code", list(Code))
def test_code_is_predicates_match_ranges(code):
    # RFC 7252 §12.1: 0.xx requests (0.00 empty), 2.xx success, 4.xx/5.xx
    # errors; RFC 8323 §5: 7.xx signaling.
    cls = int(code) >> 5
    detail = int(code) & 0x1F
    assert code.is_request() == (cls == 0 and detail != 0)
    assert code.is_response() == (cls in (2, 3, 4, 5))
    assert code.is_successful() == (cls == 2)
    assert code.is_signalling() == (cls == 7)
    assert code.class_ == cls
    assert code.dotted == "%d.%02d" % (cls, detail)
    assert code.can_have_payload() in (True, False)


def test_code_properties_examples():
    assert Code.CONTENT.class_ == 2
    assert Code.BAD_GATEWAY.class_ == 5
    assert Code.CONTENT.dotted == "2.05"
    assert Code.NOT_FOUND.dotted == "4.04"
    assert Code.CSM.dotted == "7.01"
    assert Code.CONTENT.name_printable == "Content"
    assert Code.METHOD_NOT_ALLOWED.name_printable == "Method Not Allowed"
    assert Code.iPATCH.name_printable == "iPATCH"
    assert Code.METHOD_NOT_ALLOWED.name == "METHOD_NOT_ALLOWED"
    assert str(Code.GET) == "GET"
    assert str(Code.CONTENT) == "2.05 Content"
    assert str(Code.EMPTY) == "EMPTY"


def test_code_name_is_name_printable_in_caps():
    for code in Code:
        if code is Code.iPATCH:
            continue
        assert code.name == code.name_printable.upper().replace(" ", "_")


def test_code_can_have_payload():
    for code in (Code.POST, Code.PUT, Code.FETCH, Code.PATCH, Code.iPATCH, Code.CONTENT, Code.NOT_FOUND):
        assert code.can_have_payload()
    for code in (Code.GET, Code.DELETE, Code.EMPTY):
        assert not code.can_have_payload()


def test_code_alias_resolves_to_one_member():
    assert Code.UNSUPPORTED_CONTENT_FORMAT is Code.UNSUPPORTED_MEDIA_TYPE
    assert Code(143) is Code.UNSUPPORTED_MEDIA_TYPE
    assert numbers.UNSUPPORTED_CONTENT_FORMAT is Code(143)


def test_code_lookup_by_number_gives_the_member():
    assert Code(0x45) is Code.CONTENT
    assert Code(1) is Code.GET
    assert Code(Code.CONTENT) is Code.CONTENT


@pytest.mark.parametrize(
    "number,expected",
    [
        (31, '<Request Code 31 "0.31 Unknown Request">'),
        (70, '<Successful Response Code 70 "2.06 Unknown">'),
        (135, '<Response Code 135 "4.07 Unknown">'),
        (250, '<Code 250 "7.26 Unknown">'),
        (0x20, '<Code 32 "1.00 Unknown">'),
    ],
)
def test_unknown_codes_work_and_print(number, expected):
    code = Code(number)
    assert repr(code) == expected
    assert code == number
    assert not code.is_known()
    assert code.dotted == expected.split('"')[1].split()[0]


def test_code_rejects_non_integers():
    with pytest.raises(TypeError):
        Code("GET")
    with pytest.raises(TypeError):
        Code(None)


def test_code_pickles_to_the_same_member():
    assert pickle.loads(pickle.dumps(Code.CONTENT)) is Code.CONTENT
    unknown = pickle.loads(pickle.dumps(Code(70)))
    assert unknown == 70 and type(unknown) is Code


def test_codes_reexported_from_package_root_and_numbers():
    for code in Code:
        assert getattr(numbers, code.name) is code
        assert getattr(aiocoap, code.name) is code


# --- types -------------------------------------------------------------------


def test_type_values_rfc7252_section_3():
    assert (CON, NON, ACK, RST) == (0, 1, 2, 3)
    assert [t.name for t in Type] == ["CON", "NON", "ACK", "RST"]
    assert aiocoap.CON is Type.CON and numbers.ACK is Type.ACK
    assert str(Type.CON) == "CON" and str(Type.ACK) == "ACK"  # as in aiocoap 0.4.x
    with pytest.raises(ValueError):
        Type(4)


# --- option numbers ----------------------------------------------------------

# Number: (critical, unsafe, nocachekey) as the registries give them
# (RFC 7252 §5.10 table C/U/N columns and the defining RFCs); None for
# nocachekey where the option is unsafe (the property does not apply).
OPTION_PROPERTIES = {
    "IF_MATCH": (1, True, False, False),
    "URI_HOST": (3, True, True, None),
    "ETAG": (4, False, False, False),
    "IF_NONE_MATCH": (5, True, False, False),
    "OBSERVE": (6, False, True, None),
    "URI_PORT": (7, True, True, None),
    "LOCATION_PATH": (8, False, False, False),
    "OSCORE": (9, True, False, False),
    "URI_PATH": (11, True, True, None),
    "CONTENT_FORMAT": (12, False, False, False),
    "URI_PATH_ABBREV": (13, True, False, False),
    "MAX_AGE": (14, False, True, None),
    "URI_QUERY": (15, True, True, None),
    "HOP_LIMIT": (16, False, False, False),
    "ACCEPT": (17, True, False, False),
    "Q_BLOCK1": (19, True, True, None),
    "LOCATION_QUERY": (20, False, False, False),
    "EDHOC": (21, True, False, False),
    "BLOCK2": (23, True, True, None),
    "BLOCK1": (27, True, True, None),
    "SIZE2": (28, False, False, True),
    "Q_BLOCK2": (31, True, True, None),
    "PROXY_URI": (35, True, True, None),
    "PROXY_SCHEME": (39, True, True, None),
    "SIZE1": (60, False, False, True),
    "ECHO": (252, False, False, True),
    "NO_RESPONSE": (258, False, True, None),
    "REQUEST_TAG": (292, False, False, False),
    "REQUEST_HASH": (548, False, False, False),
    "OCF_ACCEPT_CONTENT_FORMAT_VERSION": (2049, True, False, False),
    "OCF_CONTENT_FORMAT_VERSION": (2053, True, False, False),
}


@pytest.mark.parametrize("name,props", sorted(OPTION_PROPERTIES.items()))
def test_option_number_properties(name, props):
    value, critical, unsafe, nocachekey = props
    number = getattr(OptionNumber, name)
    assert number == value
    assert repr(number) == f'<OptionNumber {value} "{name}">'
    assert number.is_critical() is critical
    assert number.is_elective() is (not critical)
    assert number.is_unsafe() is unsafe
    assert number.is_safetoforward() is (not unsafe)
    if unsafe:
        with pytest.raises(ValueError):
            number.is_nocachekey()
    else:
        assert number.is_nocachekey() is nocachekey
        assert number.is_cachekey() is (not nocachekey)


def test_whole_registry_is_covered():
    assert {n.name for n in OptionNumber} - {"OBJECT_SECURITY"} == set(OPTION_PROPERTIES)


def test_echo_is_the_rfc9175_number():
    # The 0.4b2 manual printed the draft number 540; RFC 9175 assigned 252.
    assert OptionNumber.ECHO == 252
    assert OptionNumber(252) is OptionNumber.ECHO


def test_object_security_is_an_alias_of_oscore():
    assert OptionNumber.OBJECT_SECURITY is OptionNumber.OSCORE
    assert OptionNumber(9).name == "OSCORE"


@pytest.mark.parametrize(
    "value,critical,unsafe,nocachekey",
    [
        (2048, False, False, False),
        (2050, False, True, None),
        (2051, True, True, None),
        (65000, False, False, False),
        (65001, True, False, False),
        (65020, False, False, True),
    ],
)
def test_unknown_option_numbers_have_properties_from_their_bits(value, critical, unsafe, nocachekey):
    number = OptionNumber(value)
    assert repr(number) == f"<OptionNumber {value}>"
    assert not number.is_known()
    assert number.is_critical() is critical
    assert number.is_unsafe() is unsafe
    if nocachekey is not None:
        assert number.is_nocachekey() is nocachekey
    assert number.format is OpaqueOption


def test_is_nocachekey_number_agrees_with_the_method():
    for value in range(1 << 16):
        number = OptionNumber(value)
        expected = False if number.is_unsafe() else number.is_nocachekey()
        assert is_nocachekey_number(value) is expected, value
        assert is_nocachekey_number(number) is expected, value


@pytest.mark.parametrize(
    "number,fmt",
    [
        (OptionNumber.URI_PATH, StringOption),
        (OptionNumber.URI_HOST, StringOption),
        (OptionNumber.ETAG, OpaqueOption),
        (OptionNumber.OBSERVE, UintOption),
        (OptionNumber.CONTENT_FORMAT, UintOption),
        (OptionNumber.BLOCK1, BlockOption),
        (OptionNumber.BLOCK2, BlockOption),
        (OptionNumber.Q_BLOCK2, BlockOption),
        (OptionNumber.ECHO, OpaqueOption),
        (OptionNumber.NO_RESPONSE, UintOption),
    ],
)
def test_option_number_format(number, fmt):
    assert number.format is fmt
    assert type(number.create_option()) is fmt


def test_create_option_with_decode_and_value():
    opt = OptionNumber.URI_PATH.create_option(decode=b"temp")
    assert isinstance(opt, StringOption) and opt.value == "temp" and opt.number is OptionNumber.URI_PATH
    opt = OptionNumber.CONTENT_FORMAT.create_option(value=50)
    assert opt.encode() == b"\x32"
    opt = OptionNumber.BLOCK2.create_option(decode=b"\x1e")
    assert opt.value == (1, True, 6)
    opt = OptionNumber(2048).create_option(decode=b"\x01\x02")
    assert isinstance(opt, OpaqueOption) and opt.value == b"\x01\x02"


def test_option_length_ranges_rfc7252_section_5_10():
    assert OptionNumber.URI_HOST.length_range == (1, 255)
    assert OptionNumber.ETAG.length_range == (1, 8)
    assert OptionNumber.URI_PORT.length_range == (0, 2)
    assert OptionNumber.MAX_AGE.length_range == (0, 4)
    assert OptionNumber.PROXY_URI.length_range == (1, 1034)
    assert OptionNumber.IF_NONE_MATCH.length_range == (0, 0)


# --- constants ---------------------------------------------------------------


def test_constants_rfc7252_section_4_8():
    assert constants.COAP_PORT == 5683
    assert constants.COAPS_PORT == 5684
    assert constants.ACK_TIMEOUT == 2.0
    assert constants.ACK_RANDOM_FACTOR == 1.5
    assert constants.MAX_RETRANSMIT == 4
    assert constants.NSTART == 1
    assert constants.DEFAULT_LEISURE == 5
    assert constants.PROBING_RATE == 1


def test_derived_constants_rfc7252_section_4_8_2():
    assert constants.MAX_TRANSMIT_SPAN == 45
    assert constants.MAX_TRANSMIT_WAIT == 93
    assert constants.MAX_LATENCY == 100
    assert constants.PROCESSING_DELAY == 2
    assert constants.MAX_RTT == 202
    assert constants.EXCHANGE_LIFETIME == 247
    assert constants.NON_LIFETIME == 145


def test_library_constants_as_documented():
    assert constants.DEFAULT_BLOCK_SIZE_EXP == 6
    assert constants.EMPTY_ACK_DELAY == 0.1
    assert constants.REQUEST_TIMEOUT == 93
    assert constants.OBSERVATION_RESET_TIME == 128


def test_transport_tuning_defaults_match_constants():
    tuning = TransportTuning()
    for name in ("ACK_TIMEOUT", "ACK_RANDOM_FACTOR", "MAX_RETRANSMIT", "NSTART",
                 "MAX_LATENCY", "MAX_TRANSMIT_SPAN", "MAX_TRANSMIT_WAIT", "MAX_RTT",
                 "EXCHANGE_LIFETIME", "NON_LIFETIME", "PROCESSING_DELAY", "EMPTY_ACK_DELAY",
                 "DEFAULT_LEISURE", "PROBING_RATE"):
        assert getattr(tuning, name) == getattr(constants, name), name
    assert tuning.request_timeout == constants.REQUEST_TIMEOUT


def test_transport_tuning_overrides_propagate_to_derived_values():
    tuning = TransportTuning(ACK_TIMEOUT=0.1, MAX_RETRANSMIT=2)
    assert tuning.MAX_TRANSMIT_SPAN == pytest.approx(0.1 * 3 * 1.5)
    assert tuning.MAX_TRANSMIT_WAIT == pytest.approx(0.1 * 7 * 1.5)
    assert tuning.PROCESSING_DELAY == 0.1
    assert tuning.MAX_RTT == pytest.approx(200.1)
    assert tuning.EXCHANGE_LIFETIME == pytest.approx(0.45 + 200.1)
    assert tuning.NON_LIFETIME == pytest.approx(0.45 + 100)
    assert tuning.request_timeout == pytest.approx(1.05)
    assert TransportTuning(REQUEST_TIMEOUT=5).request_timeout == 5
    # the module constants are untouched
    assert constants.ACK_TIMEOUT == 2.0
    assert TransportTuning().ACK_TIMEOUT == 2.0


def test_transport_tuning_subclass_overrides():
    class Quick(TransportTuning):
        ACK_TIMEOUT = 0.5

    assert Quick().MAX_TRANSMIT_SPAN == pytest.approx(0.5 * 15 * 1.5)


def test_transport_tuning_rejects_unknown_parameters():
    with pytest.raises(TypeError):
        TransportTuning(ACK_TIMEOUTT=1)
    assert "ACK_TIMEOUT=0.1" in repr(TransportTuning(ACK_TIMEOUT=0.1))
