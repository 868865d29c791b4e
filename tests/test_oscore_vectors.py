"""RFC 8613 Appendix C test vectors, run against aiocoap.oscore.

The vectors come from shared/vectors/rfc8613-appendix-c.json (transcribed
from the RFC); test names carry the Appendix C section numbers.
"""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("cbor2")

from aiocoap import Message  # noqa: E402
from aiocoap import oscore  # noqa: E402
from aiocoap._oscore import encoding, optionclasses  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
_CANDIDATES = [
    os.path.join(_HERE, "..", "..", "shared", "vectors", "rfc8613-appendix-c.json"),
    os.path.join(_HERE, "..", "shared", "vectors", "rfc8613-appendix-c.json"),
]
_PATH = next((p for p in _CANDIDATES if os.path.exists(p)), None)
if _PATH is None:
    pytest.skip("RFC 8613 vector file (shared/vectors) not available", allow_module_level=True)

with open(_PATH, encoding="utf-8") as _f:
    VECTORS = json.load(_f)["vectors"]

KEY_DERIVATION = ["C.1.1", "C.1.2", "C.2.1", "C.2.2", "C.3.1", "C.3.2"]
REQUESTS = ["C.4", "C.5", "C.6"]
# The server side of each request vector's security context
PEER = {"C.1.1": "C.1.2", "C.2.1": "C.2.2", "C.3.1": "C.3.2"}


def h(value):
    return None if value is None else bytes.fromhex(value)


def make_context(section: str) -> oscore.SecurityContext:
    inputs = VECTORS[section]["inputs"]
    return oscore.SecurityContext(
        sender_id=h(inputs["sender_id"]),
        recipient_id=h(inputs["recipient_id"]),
        master_secret=h(inputs["master_secret"]),
        master_salt=h(inputs["master_salt"]) or b"",
        id_context=h(inputs["id_context"]),
        algorithm=inputs["aead_alg_name"],
    )


@pytest.mark.parametrize("section", KEY_DERIVATION)
def test_key_derivation(section):
    vector = VECTORS[section]
    ctx = make_context(section)
    assert ctx.algorithm.value == vector["inputs"]["aead_alg"]
    assert ctx.sender_key.hex() == vector["outputs"]["sender_key"]
    assert ctx.recipient_key.hex() == vector["outputs"]["recipient_key"]
    assert ctx.common_iv.hex() == vector["outputs"]["common_iv"]


@pytest.mark.parametrize("section", KEY_DERIVATION)
def test_key_derivation_info(section):
    vector = VECTORS[section]
    inputs = vector["inputs"]
    alg = inputs["aead_alg"]
    idctx = h(inputs["id_context"])
    intermediate = vector["intermediate"]
    assert encoding.build_info(h(inputs["sender_id"]), idctx, alg, "Key", 16).hex() == intermediate["info_sender_key"]
    assert (
        encoding.build_info(h(inputs["recipient_id"]), idctx, alg, "Key", 16).hex()
        == intermediate["info_recipient_key"]
    )
    assert encoding.build_info(b"", idctx, alg, "IV", 13).hex() == intermediate["info_common_iv"]


@pytest.mark.parametrize("section", KEY_DERIVATION)
def test_nonces(section):
    vector = VECTORS[section]
    ctx = make_context(section)
    piv = h(vector["nonce_partial_iv"])
    assert encoding.build_nonce(ctx.common_iv, ctx.sender_id, piv).hex() == vector["outputs"]["sender_nonce"]
    assert encoding.build_nonce(ctx.common_iv, ctx.recipient_id, piv).hex() == vector["outputs"]["recipient_nonce"]


def _client(section):
    vector = VECTORS[section]
    ctx = make_context(vector["security_context"])
    ctx.sender_sequence_number = vector["sender_context"]["sender_sequence_number"]
    return ctx


@pytest.mark.parametrize("section", REQUESTS)
def test_request_intermediates(section):
    vector = VECTORS[section]
    derived = vector["derived"]
    ctx = _client(section)
    plain = Message.decode(h(vector["unprotected_coap_message"]))
    _, inner = optionclasses.split_options(plain)
    plaintext = optionclasses.encode_plaintext(plain.code, inner, plain.payload)
    assert plaintext.hex() == derived["plaintext"]
    piv = h(derived["partial_iv"])
    aad = encoding.build_aad(ctx.algorithm.value, h(derived["kid"]), piv)
    assert aad.hex() == derived["aad"]
    nonce = encoding.build_nonce(ctx.common_iv, ctx.sender_id, piv)
    assert nonce.hex() == derived["nonce"]
    assert ctx.algorithm.encrypt(plaintext, aad, ctx.sender_key, nonce).hex() == vector["outputs"]["ciphertext"]
    option = encoding.OscoreOptionValue(partial_iv=piv, kid_context=h(derived.get("kid_context")), kid=h(derived["kid"]))
    assert option.encode().hex() == vector["outputs"]["oscore_option_value"]


@pytest.mark.parametrize("section", REQUESTS)
def test_request_protect(section):
    vector = VECTORS[section]
    ctx = _client(section)
    plain = Message.decode(h(vector["unprotected_coap_message"]))
    outer, request_id = ctx.protect(plain)
    assert outer.encode().hex() == vector["outputs"]["protected_coap_message"]
    assert outer.opt.oscore.hex() == vector["outputs"]["oscore_option_value"]
    assert outer.payload.hex() == vector["outputs"]["ciphertext"]
    assert request_id.partial_iv.hex() == vector["derived"]["partial_iv"]
    assert request_id.kid.hex() == vector["derived"]["kid"]
    assert request_id.nonce.hex() == vector["derived"]["nonce"]
    assert ctx.sender_sequence_number == vector["sender_context"]["sender_sequence_number"] + 1


@pytest.mark.parametrize("section", REQUESTS)
def test_request_unprotect(section):
    vector = VECTORS[section]
    server = make_context(PEER[vector["security_context"]])
    protected = Message.decode(h(vector["outputs"]["protected_coap_message"]))
    assert oscore.verify_start(protected) == (h(vector["derived"]["kid"]), h(vector["derived"].get("kid_context")))
    plain, request_id = server.unprotect(protected)
    assert plain.encode().hex() == vector["unprotected_coap_message"]
    assert request_id.nonce.hex() == vector["derived"]["nonce"]
    assert not server.recipient_replay_window.is_valid(0x14)


def _server_after_c4():
    server = make_context("C.1.2")
    request = Message.decode(h(VECTORS["C.4"]["outputs"]["protected_coap_message"]))
    _, request_id = server.unprotect(request)
    return server, request_id


def test_c7_response_without_partial_iv():
    vector = VECTORS["C.7"]
    server, request_id = _server_after_c4()
    server.sender_sequence_number = vector["sender_context"]["sender_sequence_number"]
    response = Message.decode(h(vector["unprotected_coap_message"]))
    outer, returned_id = server.protect(response, request_id)
    assert returned_id is request_id
    assert outer.encode().hex() == vector["outputs"]["protected_coap_message"]
    assert outer.opt.oscore == b""
    # No sequence number was consumed: the request's nonce was reused once
    assert server.sender_sequence_number == 0
    assert request_id.can_reuse_nonce is False


def test_c8_response_with_partial_iv():
    vector = VECTORS["C.8"]
    server, request_id = _server_after_c4()
    server.sender_sequence_number = vector["sender_context"]["sender_sequence_number"]
    request_id.get_reusable_nonce()  # as after a first response: no reuse any more
    response = Message.decode(h(vector["unprotected_coap_message"]))
    outer, _ = server.protect(response, request_id)
    assert outer.encode().hex() == vector["outputs"]["protected_coap_message"]
    assert outer.opt.oscore.hex() == vector["outputs"]["oscore_option_value"]
    assert encoding.build_nonce(server.common_iv, server.sender_id, h(vector["derived"]["partial_iv"])).hex() == (
        vector["derived"]["nonce"]
    )


@pytest.mark.parametrize("section", ["C.7", "C.8"])
def test_response_unprotect(section):
    vector = VECTORS[section]
    client = _client("C.4")
    _, request_id = client.protect(Message.decode(h(VECTORS["C.4"]["unprotected_coap_message"])))
    assert (request_id.kid.hex(), request_id.partial_iv.hex()) == (
        vector["request_binding"]["request_kid"],
        vector["request_binding"]["request_piv"],
    )
    protected = Message.decode(h(vector["outputs"]["protected_coap_message"]))
    plain, returned_id = client.unprotect(protected, request_id)
    assert returned_id is request_id
    assert plain.encode().hex() == vector["unprotected_coap_message"]
    assert plain.payload == b"Hello World!"
