"""Property tests: OSCORE verification of arbitrary or mutated input raises
only the documented errors (ProtectionInvalid and its subclasses, or
NotAProtectedMessage), and protection round-trips."""

from __future__ import annotations

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("cbor2")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from aiocoap import Message, error  # noqa: E402
from aiocoap import oscore  # noqa: E402
from aiocoap._oscore import encoding  # noqa: E402
from aiocoap.numbers.codes import Code  # noqa: E402
from aiocoap.numbers.types import Type  # noqa: E402
import fuzzing  # noqa: E402
from fuzzing import fuzz_settings, mutate  # noqa: E402

ALLOWED = (oscore.ProtectionInvalid, oscore.NotAProtectedMessage)
FUZZ = fuzz_settings(300)
pytestmark = pytest.mark.fuzz


def pair(id_context=None):
    client = oscore.SecurityContext(sender_id=b"\x01", recipient_id=b"", master_secret=b"secret", id_context=id_context)
    server = oscore.SecurityContext(sender_id=b"", recipient_id=b"\x01", master_secret=b"secret", id_context=id_context)
    return client, server


def decode_or_none(data):
    try:
        return Message.decode(data)
    except error.UnparsableMessage:
        return None


def expect_only_documented_errors(call):
    """Run call(); success is fine, and so are the documented errors"""
    try:
        result = call()
    except ALLOWED:
        return None
    return result


def protected_exchange(observe):
    client, server = pair()
    req = Message(code=Code.GET, mtype=Type.CON, mid=7, token=b"tok", uri_host="example.com", uri_path=["a", "b"])
    if observe:
        req.opt.observe = 0
    outer, client_rid = client.protect(req)
    _, server_rid = server.unprotect(Message.decode(outer.encode()))
    resp = Message(code=Code.CONTENT, mtype=Type.ACK, mid=7, token=b"tok", payload=b"hello", content_format=0)
    if observe:
        resp.opt.observe = 5
    outer_resp, _ = server.protect(resp, server_rid)
    return client, client_rid, outer.encode(), outer_resp.encode()


mutation = st.lists(fuzzing.mutation, min_size=1, max_size=4)


@st.composite
def datagrams(draw):
    """Bytes that mostly get past the CoAP header checks, often with an
    OSCORE option up front"""
    tkl = draw(st.integers(0, 8))
    header = bytes([0x40 | (draw(st.integers(0, 3)) << 4) | tkl, draw(st.integers(1, 255))])
    header += draw(st.binary(min_size=2 + tkl, max_size=2 + tkl))
    option = b""
    if draw(st.booleans()):
        value = draw(st.binary(max_size=12))
        option = bytes([0x90 | len(value)]) + value
    return header + option + draw(st.binary(max_size=120))


@FUZZ
@given(datagrams())
def test_unprotect_arbitrary_datagrams(data):
    message = decode_or_none(data)
    assume(message is not None)
    _, server = pair()
    expect_only_documented_errors(lambda: server.unprotect(message))
    expect_only_documented_errors(lambda: oscore.verify_start(message))


@FUZZ
@given(st.binary(max_size=40), st.binary(max_size=80), st.sampled_from([None, b"", b"ctx"]))
def test_unprotect_arbitrary_option_and_payload(option, payload, id_context):
    client, server = pair(id_context)
    message = Message(code=Code.POST, mtype=Type.CON, mid=1, token=b"", payload=payload, oscore=option)
    expect_only_documented_errors(lambda: server.unprotect(message))
    _, rid = client.protect(Message(code=Code.GET))
    response = Message(code=Code.CHANGED, mtype=Type.ACK, mid=1, payload=payload, oscore=option)
    expect_only_documented_errors(lambda: client.unprotect(response, rid))


@FUZZ
@given(st.booleans(), mutation)
def test_unprotect_mutated_request(observe, edits):
    _, _, wire, _ = protected_exchange(observe)
    message = decode_or_none(mutate(wire, edits))
    assume(message is not None)
    _, server = pair()
    result = expect_only_documented_errors(lambda: server.unprotect(message))
    if result is not None:
        plain, _ = result
        # Only unprotected parts can have been changed
        assert plain.opt.uri_path == ("a", "b")


@FUZZ
@given(st.booleans(), mutation)
def test_unprotect_mutated_response(observe, edits):
    client, client_rid, _, wire = protected_exchange(observe)
    message = decode_or_none(mutate(wire, edits))
    assume(message is not None)
    result = expect_only_documented_errors(lambda: client.unprotect(message, client_rid))
    if result is not None:
        plain, _ = result
        assert plain.payload == b"hello"


@FUZZ
@given(st.binary(max_size=60), st.booleans())
def test_authentic_but_garbled_plaintext(plaintext, as_response):
    """Plaintexts that decrypt fine but do not parse are DecodeErrors"""
    client, server = pair()
    if as_response:
        outer, client_rid = client.protect(Message(code=Code.GET))
        _, rid = server.unprotect(outer)
        aad = encoding.build_aad(10, rid.kid, rid.partial_iv)
        sealed = server.algorithm.encrypt(plaintext, aad, server.sender_key, rid.nonce)
        message = Message(code=Code.CHANGED, payload=sealed, oscore=b"")
        expect_only_documented_errors(lambda: client.unprotect(message, client_rid))
    else:
        piv = encoding.encode_partial_iv(client.new_sequence_number())
        nonce = encoding.build_nonce(client.common_iv, client.sender_id, piv)
        aad = encoding.build_aad(10, client.sender_id, piv)
        sealed = client.algorithm.encrypt(plaintext, aad, client.sender_key, nonce)
        option = encoding.OscoreOptionValue(partial_iv=piv, kid=client.sender_id).encode()
        message = Message(code=Code.POST, payload=sealed, oscore=option)
        expect_only_documented_errors(lambda: server.unprotect(message))


@FUZZ
@given(st.binary(max_size=30))
def test_option_value_decode_is_canonical(value):
    try:
        parsed = encoding.OscoreOptionValue.decode(value)
    except oscore.DecodeError:
        return
    assert parsed.encode() == value


uri_segment = st.text(max_size=12)


@FUZZ
@given(
    st.sampled_from([Code.GET, Code.POST, Code.PUT, Code.DELETE, Code.FETCH, Code.PATCH, Code.iPATCH]),
    st.lists(uri_segment, max_size=4),
    st.lists(uri_segment, max_size=3),
    st.binary(max_size=100),
    st.one_of(st.none(), st.integers(0, 2**24 - 1)),
    st.sampled_from(sorted(oscore.algorithms)),
)
def test_protection_roundtrip(code, path, query, payload, observe, algorithm):
    client = oscore.SecurityContext(sender_id=b"\x01", recipient_id=b"", master_secret=b"s", algorithm=algorithm)
    server = oscore.SecurityContext(sender_id=b"", recipient_id=b"\x01", master_secret=b"s", algorithm=algorithm)
    req = Message(code=code, mtype=Type.NON, mid=3, token=b"x", payload=payload, uri_path=path, uri_query=query)
    if observe is not None:
        req.opt.observe = observe
    outer, client_rid = client.protect(req)
    plain, server_rid = server.unprotect(Message.decode(outer.encode()))
    assert plain.code == code and plain.payload == payload
    assert plain.opt == req.opt
    resp = Message(code=Code.CONTENT, mtype=Type.NON, mid=4, token=b"x", payload=payload[::-1])
    outer_resp, _ = server.protect(resp, server_rid)
    plain_resp, _ = client.unprotect(Message.decode(outer_resp.encode()), client_rid)
    assert plain_resp.payload == payload[::-1] and plain_resp.code == Code.CONTENT
