"""Tests for aiocoap.oscore: algorithms, replay window, option placement
(RFC 8613 §4), request/response binding (§8), observe (§4.1.3.5), and the
Appendix B.1.2 Echo recovery at the SecurityContext level."""

from __future__ import annotations

import hashlib
import hmac

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("cbor2")

from aiocoap import Message, error  # noqa: E402
from aiocoap import oscore  # noqa: E402
from aiocoap._oscore import encoding  # noqa: E402
from aiocoap.numbers.codes import Code  # noqa: E402
from aiocoap.numbers.optionnumbers import OptionNumber  # noqa: E402
from aiocoap.numbers.types import Type  # noqa: E402
from aiocoap.optiontypes import OpaqueOption  # noqa: E402

SECRET = bytes(range(16))
SALT = b"\x9e\x7c\xa9\x22\x23\x78\x63\x40"


def pair(algorithm="AES-CCM-16-64-128", hashfun="sha256", id_context=None, client_id=b"\x01", server_id=b""):
    def ctx(sender, recipient):
        return oscore.SecurityContext(
            sender_id=sender,
            recipient_id=recipient,
            master_secret=SECRET,
            master_salt=SALT,
            id_context=id_context,
            algorithm=algorithm,
            hashfun=hashfun,
        )

    return ctx(client_id, server_id), ctx(server_id, client_id)


def request(**kwargs):
    kwargs.setdefault("code", Code.GET)
    kwargs.setdefault("_mtype", Type.CON)
    kwargs.setdefault("_mid", 0x1234)
    kwargs.setdefault("_token", b"\xaa\xbb")
    return Message(**kwargs)


def response(**kwargs):
    kwargs.setdefault("code", Code.CONTENT)
    kwargs.setdefault("_mtype", Type.ACK)
    kwargs.setdefault("_mid", 0x1234)
    kwargs.setdefault("_token", b"\xaa\xbb")
    return Message(**kwargs)


def over_the_wire(message):
    """Encode and decode as a datagram would; the remote is not kept"""
    return Message.decode(message.encode())


def roundtrip(client, server, req, resp):
    outer, client_rid = client.protect(req)
    plain_req, server_rid = server.unprotect(over_the_wire(outer))
    outer_resp, _ = server.protect(resp, server_rid)
    plain_resp, _ = client.unprotect(over_the_wire(outer_resp), client_rid)
    return plain_req, plain_resp


# --- API surface --------------------------------------------------------------

def test_public_names():
    for name in [
        "NotAProtectedMessage", "ProtectionInvalid", "DecodeError", "ReplayError",
        "ReplayErrorWithEcho", "ContextUnavailable", "RequestIdentifiers", "Algorithm",
        "AES_CCM", "AES_CCM_16_64_128", "AES_CCM_16_64_256", "AES_CCM_64_64_128",
        "AES_CCM_64_64_256", "AES_CCM_16_128_128", "AES_CCM_16_128_256",
        "AES_CCM_64_128_128", "AES_CCM_64_128_256", "AES_GCM", "A128GCM", "A192GCM",
        "A256GCM", "ChaCha20Poly1305", "SecurityContext", "ReplayWindow",
        "FilesystemSecurityContext", "verify_start",
    ]:
        assert hasattr(oscore, name), name
    assert oscore.SecurityContext.is_unicast is True
    assert oscore.SecurityContext.echo_recovery is None
    assert issubclass(oscore.FilesystemSecurityContext, oscore.SecurityContext)
    assert issubclass(oscore.FilesystemSecurityContext.LoadError, ValueError)


def test_exception_hierarchy():
    for cls in (oscore.NotAProtectedMessage, oscore.ProtectionInvalid, oscore.ContextUnavailable):
        assert issubclass(cls, ValueError)
    for cls in (oscore.DecodeError, oscore.ReplayError, oscore.ReplayErrorWithEcho):
        assert issubclass(cls, oscore.ProtectionInvalid)
    assert issubclass(oscore.ReplayErrorWithEcho, error.RenderableError)
    plain = Message(code=Code.GET)
    e = oscore.NotAProtectedMessage("no option", plain)
    assert e.plain_message is plain


# --- algorithms ---------------------------------------------------------------

ALGORITHM_TABLE = [
    # class, value, key_bytes, tag_bytes, iv_bytes, base
    (oscore.AES_CCM_16_64_128, 10, 16, 8, 13, oscore.AES_CCM),
    (oscore.AES_CCM_16_64_256, 11, 32, 8, 13, oscore.AES_CCM),
    (oscore.AES_CCM_64_64_128, 12, 16, 8, 7, oscore.AES_CCM),
    (oscore.AES_CCM_64_64_256, 13, 32, 8, 7, oscore.AES_CCM),
    (oscore.AES_CCM_16_128_128, 30, 16, 16, 13, oscore.AES_CCM),
    (oscore.AES_CCM_16_128_256, 31, 32, 16, 13, oscore.AES_CCM),
    (oscore.AES_CCM_64_128_128, 32, 16, 16, 7, oscore.AES_CCM),
    (oscore.AES_CCM_64_128_256, 33, 32, 16, 7, oscore.AES_CCM),
    (oscore.A128GCM, 1, 16, 16, 12, oscore.AES_GCM),
    (oscore.A192GCM, 2, 24, 16, 12, oscore.AES_GCM),
    (oscore.A256GCM, 3, 32, 16, 12, oscore.AES_GCM),
    (oscore.ChaCha20Poly1305, 24, 32, 16, 12, oscore.Algorithm),
]
ALGORITHM_NAMES = sorted(oscore.algorithms)


@pytest.mark.parametrize("cls,value,key_bytes,tag_bytes,iv_bytes,base", ALGORITHM_TABLE)
def test_algorithm_parameters(cls, value, key_bytes, tag_bytes, iv_bytes, base):
    assert issubclass(cls, base) and issubclass(cls, oscore.Algorithm)
    assert (cls.value, cls.key_bytes, cls.tag_bytes, cls.iv_bytes) == (value, key_bytes, tag_bytes, iv_bytes)
    assert type(oscore.algorithms_by_value[value]) is cls
    assert oscore.algorithms[cls.name] is oscore.algorithms_by_value[value]


def test_algorithm_registry():
    assert len(oscore.algorithms) == 12
    assert type(oscore.algorithms["AES-CCM-16-64-128"]) is oscore.AES_CCM_16_64_128
    assert type(oscore.algorithms["ChaCha20/Poly1305"]) is oscore.ChaCha20Poly1305
    assert oscore.DEFAULT_ALGORITHM == "AES-CCM-16-64-128"
    assert set(oscore.hashfunctions) >= {"sha256", "sha512"}


@pytest.mark.parametrize("cls", [row[0] for row in ALGORITHM_TABLE])
def test_algorithm_encrypt_decrypt(cls):
    key = bytes(range(cls.key_bytes))
    iv = bytes(range(100, 100 + cls.iv_bytes))
    sealed = cls.encrypt(b"some plaintext", b"aad", key, iv)
    assert len(sealed) == len(b"some plaintext") + cls.tag_bytes
    assert cls.decrypt(sealed, b"aad", key, iv) == b"some plaintext"
    tampered = bytes([sealed[0] ^ 1]) + sealed[1:]
    with pytest.raises(oscore.ProtectionInvalid):
        cls.decrypt(tampered, b"aad", key, iv)
    with pytest.raises(oscore.ProtectionInvalid):
        cls.decrypt(sealed, b"other aad", key, iv)
    with pytest.raises(oscore.ProtectionInvalid):
        cls.decrypt(sealed[: cls.tag_bytes - 1], b"aad", key, iv)
    with pytest.raises(oscore.ProtectionInvalid):
        cls.decrypt(sealed, b"aad", key, iv[:-1])


def _independent_hkdf(digest, salt, secret, info, length):
    prk = hmac.new(salt or bytes(digest().digest_size), secret, digest).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes((counter,)), digest).digest()
        out += block
        counter += 1
    return out[:length]


@pytest.mark.parametrize("name,digest", [("sha256", hashlib.sha256), ("sha384", hashlib.sha384), ("sha512", hashlib.sha512)])
def test_key_derivation_hash_functions(name, digest):
    """The HKDF is RFC 5869 with the configured hash (checked against a
    stdlib-only HKDF), with the §3.2.1 info structure."""
    client, server = pair(hashfun=name, id_context=b"ctx")
    info = encoding.build_info(b"\x01", b"ctx", 10, "Key", 16)
    assert client.sender_key == _independent_hkdf(digest, SALT, SECRET, info, 16)
    info_iv = encoding.build_info(b"", b"ctx", 10, "IV", 13)
    assert client.common_iv == _independent_hkdf(digest, SALT, SECRET, info_iv, 13)
    assert server.recipient_key == client.sender_key
    plain_req, plain_resp = roundtrip(client, server, request(uri_path=["x"]), response(payload=b"ok"))
    assert plain_req.opt.uri_path == ("x",) and plain_resp.payload == b"ok"


def test_hash_functions_give_different_keys():
    assert pair(hashfun="sha256")[0].sender_key != pair(hashfun="sha512")[0].sender_key


def test_sender_id_too_long_for_nonce():
    with pytest.raises(ValueError, match="sender_id"):
        oscore.SecurityContext(
            sender_id=b"\x01\x02", recipient_id=b"", master_secret=SECRET, algorithm="AES-CCM-64-64-128"
        )


# --- replay window --------------------------------------------------------------

def test_replay_window_persistence():
    calls = []
    w = oscore.ReplayWindow(32, lambda: calls.append(1))
    assert not w.is_initialized()
    with pytest.raises(RuntimeError):
        w.is_valid(0)
    w.initialize_empty()
    for n in (0, 1, 7, 40):
        w.strike_out(n)
    assert len(calls) == 4
    with pytest.raises(ValueError):
        w.strike_out(40)
    restored = oscore.ReplayWindow(32, lambda: None)
    restored.initialize_from_persisted(w.persist())
    for n in range(0, 80):
        assert restored.is_valid(n) == w.is_valid(n), n
    assert not restored.is_valid(40) and not restored.is_valid(8) and restored.is_valid(39)


@pytest.mark.parametrize("bad", [None, {}, {"index": -1, "entries": 0}, {"index": 0, "entries": 1 << 40}, {"index": "0", "entries": 0}])
def test_replay_window_rejects_bad_persisted_state(bad):
    w = oscore.ReplayWindow(32, lambda: None)
    with pytest.raises(ValueError):
        w.initialize_from_persisted(bad)
    assert not w.is_initialized()


def test_replay_window_freshlyseen():
    w = oscore.ReplayWindow(32, lambda: None)
    w.initialize_from_freshlyseen(100)
    assert not w.is_valid(100) and not w.is_valid(99) and not w.is_valid(0)
    assert w.is_valid(101) and w.is_valid(10**9)


def test_replay_window_large_jump():
    w = oscore.ReplayWindow(32, lambda: None)
    w.initialize_empty()
    w.strike_out(3)
    w.strike_out(2**39)
    assert not w.is_valid(3) and not w.is_valid(2**39 - 32)
    assert w.is_valid(2**39 - 31) and w.is_valid(2**39 + 1)


# --- protection basics --------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ALGORITHM_NAMES)
def test_roundtrip_each_algorithm(algorithm):
    client, server = pair(algorithm=algorithm)
    req = request(code=Code.PUT, uri_path=["sensors", "temp"], payload=b"21.5", content_format=0)
    resp = response(code=Code.CHANGED, payload=b"stored")
    plain_req, plain_resp = roundtrip(client, server, req, resp)
    assert plain_req.code == Code.PUT
    assert plain_req.opt.uri_path == ("sensors", "temp")
    assert plain_req.opt.content_format == 0
    assert plain_req.payload == b"21.5"
    assert (plain_req.mtype, plain_req.mid, plain_req.token) == (Type.CON, 0x1234, b"\xaa\xbb")
    assert plain_resp.code == Code.CHANGED and plain_resp.payload == b"stored"


def test_outer_message_shape():
    client, _ = pair()
    req = request(uri_path=["a"], uri_host="example.com", payload=b"")
    outer, _ = client.protect(req)
    assert outer.code == Code.POST
    assert (outer.mtype, outer.mid, outer.token) == (Type.CON, 0x1234, b"\xaa\xbb")
    assert outer.opt.uri_path == ()
    assert outer.opt.uri_host == "example.com"
    assert outer.opt.oscore == bytes.fromhex("090001")  # n=1, k=1; PIV 0; kid 01
    assert outer.remote == req.remote


def test_replay_rejected():
    client, server = pair()
    outer, _ = client.protect(request(uri_path=["x"]))
    wire = outer.encode()
    server.unprotect(Message.decode(wire))
    with pytest.raises(oscore.ReplayError):
        server.unprotect(Message.decode(wire))


def test_requests_out_of_order_within_window():
    client, server = pair()
    wires = [client.protect(request(uri_path=[str(i)]))[0].encode() for i in range(5)]
    for i in (4, 0, 3, 1, 2):
        plain, _ = server.unprotect(Message.decode(wires[i]))
        assert plain.opt.uri_path == (str(i),)
    for i in range(5):
        with pytest.raises(oscore.ReplayError):
            server.unprotect(Message.decode(wires[i]))


def test_tampered_ciphertext_rejected():
    client, server = pair()
    outer, _ = client.protect(request(uri_path=["x"], payload=b"data"))
    for position in range(len(outer.payload)):
        tampered = outer.copy(payload=outer.payload[:position] + bytes([outer.payload[position] ^ 0x40]) + outer.payload[position + 1 :])
        with pytest.raises(oscore.ProtectionInvalid):
            server.unprotect(tampered)
    # Nothing was struck out: the genuine message is still accepted
    server.unprotect(outer)


def test_tampered_partial_iv_rejected():
    client, server = pair()
    outer, _ = client.protect(request())
    forged = outer.copy(oscore=encoding.OscoreOptionValue(partial_iv=b"\x05", kid=b"\x01").encode())
    with pytest.raises(oscore.ProtectionInvalid):
        server.unprotect(forged)
    assert server.recipient_replay_window.is_valid(5)


def test_wrong_kid():
    client, server = pair()
    other, _ = pair(client_id=b"\x02")
    outer, _ = other.protect(request())
    assert oscore.verify_start(outer) == (b"\x02", None)
    with pytest.raises(oscore.ProtectionInvalid):
        server.unprotect(outer)


def test_same_ids_different_secret():
    client, _ = pair()
    server = oscore.SecurityContext(sender_id=b"", recipient_id=b"\x01", master_secret=b"other secret")
    outer, _ = client.protect(request())
    with pytest.raises(oscore.ProtectionInvalid):
        server.unprotect(outer)


def test_not_a_protected_message():
    _, server = pair()
    plain = request(uri_path=["x"])
    with pytest.raises(oscore.NotAProtectedMessage) as info:
        server.unprotect(plain)
    assert info.value.plain_message is plain
    with pytest.raises(oscore.NotAProtectedMessage):
        oscore.verify_start(plain)


@pytest.mark.parametrize(
    "option_hex",
    ["", "0100", "0800", "20", "0600000000000001", "020014", "1900", "1914", "191403aabb", "00"],
)
def test_malformed_request_option(option_hex):
    _, server = pair()
    msg = request(code=Code.POST, payload=b"\x00" * 16, oscore=bytes.fromhex(option_hex))
    with pytest.raises(oscore.DecodeError):
        server.unprotect(msg)


def test_verify_start_requires_kid():
    with pytest.raises(oscore.DecodeError):
        oscore.verify_start(request(oscore=bytes.fromhex("0100")))


def test_oscore_option_encoding():
    V = encoding.OscoreOptionValue
    assert V().encode() == b""
    assert V.decode(b"") == V()
    assert V(partial_iv=b"\x01\x02\x03\x04\x05", kid_context=b"", kid=b"\x07").encode() == bytes.fromhex("1d010203040500" "07")
    assert V.decode(bytes.fromhex("1d01020304050007")) == V(partial_iv=b"\x01\x02\x03\x04\x05", kid_context=b"", kid=b"\x07")
    assert V.decode(bytes.fromhex("08")) == V(kid=b"")
    assert encoding.encode_partial_iv(encoding.MAX_SEQNO) == b"\xff" * 5
    with pytest.raises(ValueError):
        encoding.encode_partial_iv(encoding.MAX_SEQNO + 1)


def test_context_without_keys_is_unavailable():
    ctx = oscore.SecurityContext()
    with pytest.raises(oscore.ContextUnavailable):
        ctx.protect(request())
    with pytest.raises(oscore.ContextUnavailable):
        ctx.unprotect(request(oscore=b"\x09\x00"))


def test_filled_attribute_by_attribute():
    ctx = oscore.SecurityContext()
    ctx.sender_id, ctx.recipient_id, ctx.id_context = b"\x01", b"", None
    ctx.derive_keys(SALT, SECRET)
    ctx.recipient_replay_window.initialize_empty()
    client, server = pair()
    assert (ctx.sender_key, ctx.recipient_key, ctx.common_iv) == (client.sender_key, client.recipient_key, client.common_iv)
    outer, _ = ctx.protect(request())
    server.unprotect(outer)


def test_protect_misuse():
    client, server = pair()
    outer, rid = client.protect(request())
    with pytest.raises(ValueError):
        client.protect(outer)  # already protected
    with pytest.raises(ValueError):
        server.protect(response())  # response without request_id
    with pytest.raises(ValueError):
        client.protect(request(), rid)  # request with request_id
    with pytest.raises(ValueError):
        client.protect(Message(code=Code.EMPTY))


def test_sequence_number_exhaustion():
    client, server = pair()
    client.sender_sequence_number = encoding.MAX_SEQNO
    outer, rid = client.protect(request())
    assert rid.partial_iv == b"\xff" * 5
    server.unprotect(outer)
    with pytest.raises(oscore.ContextUnavailable):
        client.protect(request())
    with pytest.raises(oscore.ContextUnavailable):
        client.new_sequence_number()


def test_plaintext_errors_are_decode_errors():
    client, server = pair()

    def forge(plaintext):
        piv = encoding.encode_partial_iv(client.new_sequence_number())
        nonce = encoding.build_nonce(client.common_iv, client.sender_id, piv)
        aad = encoding.build_aad(client.algorithm.value, client.sender_id, piv)
        sealed = client.algorithm.encrypt(plaintext, aad, client.sender_key, nonce)
        return request(code=Code.POST, payload=sealed, oscore=encoding.OscoreOptionValue(partial_iv=piv, kid=client.sender_id).encode())

    for bad in [b"", b"\x01\xf1", b"\x01\xff", b"\x45", b"\x00", b"\x01\xd1"]:
        with pytest.raises(oscore.DecodeError):
            server.unprotect(forge(bad))


# --- request/response binding --------------------------------------------------

def test_first_response_reuses_nonce_later_ones_do_not():
    client, server = pair()
    outer, client_rid = client.protect(request())
    _, server_rid = server.unprotect(outer)
    first, _ = server.protect(response(payload=b"1"), server_rid)
    second, _ = server.protect(response(payload=b"2"), server_rid)
    assert first.opt.oscore == b""
    assert encoding.OscoreOptionValue.decode(second.opt.oscore).partial_iv == b"\x00"
    assert client.unprotect(first, client_rid)[0].payload == b"1"
    assert client.unprotect(second, client_rid)[0].payload == b"2"
    assert first.code == second.code == Code.CHANGED


def test_response_bound_to_its_request():
    client, server = pair()
    outer_a, rid_a = client.protect(request(uri_path=["a"]))
    outer_b, rid_b = client.protect(request(uri_path=["b"]))
    _, server_rid_a = server.unprotect(outer_a)
    server.unprotect(outer_b)
    resp_a, _ = server.protect(response(payload=b"for a"), server_rid_a)
    with pytest.raises(oscore.ProtectionInvalid):
        client.unprotect(resp_a, rid_b)
    assert client.unprotect(resp_a, rid_a)[0].payload == b"for a"


def test_response_from_other_context_rejected():
    client, server = pair()
    # Same IDs, different master secret
    impostor = oscore.SecurityContext(sender_id=b"", recipient_id=b"\x01", master_secret=b"not the secret")
    outer, rid = client.protect(request())
    _, server_rid = server.unprotect(outer)
    server_rid.can_reuse_nonce = False
    forged, _ = impostor.protect(response(), server_rid)
    with pytest.raises(oscore.ProtectionInvalid):
        client.unprotect(forged, rid)


def test_response_not_verified_as_request():
    client, server = pair()
    outer, _ = client.protect(request())
    _, rid = server.unprotect(outer)
    resp, _ = server.protect(response(), rid)
    with pytest.raises(oscore.ProtectionInvalid):
        client.unprotect(resp)


def test_reused_request_id_response_replay():
    client, server = pair()
    outer, client_rid = client.protect(request())
    _, server_rid = server.unprotect(outer)
    server_rid.can_reuse_nonce = False
    r1, _ = server.protect(response(payload=b"1"), server_rid)
    r2, _ = server.protect(response(payload=b"2"), server_rid)
    client.unprotect(r2, client_rid)
    with pytest.raises(oscore.ReplayError):
        client.unprotect(r1, client_rid)
    with pytest.raises(oscore.ReplayError):
        client.unprotect(r2, client_rid)


# --- kid context ---------------------------------------------------------------

def test_kid_context_sent_by_default():
    client, server = pair(id_context=b"\x37\xcb")
    outer, _ = client.protect(request())
    assert oscore.verify_start(outer) == (b"\x01", b"\x37\xcb")
    server.unprotect(outer)


def test_kid_context_suppressed():
    client, server = pair(id_context=b"\x37\xcb")
    outer, _ = client.protect(request(), kid_context=False)
    assert oscore.verify_start(outer) == (b"\x01", None)
    plain, _ = server.unprotect(outer)
    assert plain.code == Code.GET


def test_kid_context_explicit_value():
    client, server = pair(id_context=b"\x37\xcb")
    outer, _ = client.protect(request(), kid_context=b"other")
    assert oscore.verify_start(outer) == (b"\x01", b"other")
    with pytest.raises(oscore.ProtectionInvalid):
        server.unprotect(outer)


def test_kid_context_mismatch_on_context_without_id_context():
    client, _ = pair(id_context=b"ctx")
    _, server = pair()
    outer, _ = client.protect(request())
    with pytest.raises(oscore.ProtectionInvalid):
        server.unprotect(outer)


def test_responses_carry_no_kid_context_by_default():
    client, server = pair(id_context=b"ctx")
    outer, client_rid = client.protect(request())
    _, rid = server.unprotect(outer)
    rid.can_reuse_nonce = False
    resp, _ = server.protect(response(), rid)
    value = encoding.OscoreOptionValue.decode(resp.opt.oscore)
    assert value.kid_context is None and value.kid is None and value.partial_iv is not None
    client.unprotect(resp, client_rid)


# --- option classes ------------------------------------------------------------------

UNKNOWN_ELECTIVE = OptionNumber(65000)


def _rich_request():
    req = request(code=Code.POST, payload=b"body")
    opt = req.opt
    opt.if_match = [b"\x01"]
    opt.uri_host = "example.com"
    opt.etags = [b"e1"]
    opt.if_none_match = True
    opt.uri_port = 61616
    opt.uri_path = ["a", "b"]
    opt.content_format = 60
    opt.max_age = 30
    opt.uri_query = ["q=1", "r"]
    opt.hop_limit = 16
    opt.accept = 50
    opt.block2 = (0, False, 6)
    opt.block1 = (1, True, 6)
    opt.size2 = 0
    opt.proxy_scheme = "coap"
    opt.size1 = 1000
    opt.no_response = 26
    opt.echo = b"echo"
    opt.request_tag = [b"tag"]
    opt.add_option(OpaqueOption(UNKNOWN_ELECTIVE, b"unknown"))
    return req


def test_request_option_placement():
    client, server = pair()
    req = _rich_request()
    outer, _ = client.protect(req)
    outer_numbers = {int(o.number) for o in outer.opt.option_list()}
    assert outer_numbers == {
        OptionNumber.URI_HOST, OptionNumber.URI_PORT, OptionNumber.HOP_LIMIT,
        OptionNumber.PROXY_SCHEME, OptionNumber.NO_RESPONSE, OptionNumber.OSCORE,
    }
    plain, _ = server.unprotect(over_the_wire(outer))
    assert plain.opt == req.opt
    assert plain.payload == b"body"
    assert plain.opt.get_option(UNKNOWN_ELECTIVE)[0].value == b"unknown"


def test_response_option_placement():
    client, server = pair()
    outer_req, client_rid = client.protect(request())
    _, rid = server.unprotect(outer_req)
    resp = response(payload=b"x" * 64)
    resp.opt.max_age = 0
    resp.opt.etag = b"etag"
    resp.opt.location_path = ["new", "thing"]
    resp.opt.location_query = ["q"]
    resp.opt.content_format = 0
    resp.opt.block2 = (0, True, 2)
    resp.opt.size2 = 2000
    outer, _ = server.protect(resp, rid)
    assert [int(o.number) for o in outer.opt.option_list()] == [OptionNumber.OSCORE]
    assert outer.code == Code.CHANGED
    plain, _ = client.unprotect(over_the_wire(outer), client_rid)
    assert plain.opt == resp.opt
    assert plain.code == Code.CONTENT


def test_outer_class_e_options_are_discarded():
    client, server = pair()
    outer, _ = client.protect(request(uri_path=["real"]))
    outer.opt.uri_path = ["injected"]
    outer.opt.uri_query = ["evil"]
    outer.opt.max_age = 5
    plain, _ = server.unprotect(over_the_wire(outer))
    assert plain.opt.uri_path == ("real",)
    assert plain.opt.uri_query == ()
    assert plain.opt.max_age is None


def test_outer_max_age_on_response_ignored():
    client, server = pair()
    outer_req, client_rid = client.protect(request())
    _, rid = server.unprotect(outer_req)
    outer, _ = server.protect(response(payload=b"x"), rid)
    outer.opt.max_age = 0
    plain, _ = client.unprotect(over_the_wire(outer), client_rid)
    assert plain.opt.max_age is None and plain.payload == b"x"


def test_proxy_uri_decomposition():
    client, server = pair()
    req = request(proxy_uri="coap://example.com:1234/some/path?a=1&b")
    outer, _ = client.protect(req)
    assert outer.opt.proxy_uri == "coap://example.com:1234"
    assert outer.opt.uri_path == () and outer.opt.uri_query == ()
    plain, _ = server.unprotect(over_the_wire(outer))
    assert plain.opt.uri_path == ("some", "path")
    assert plain.opt.uri_query == ("a=1", "b")
    assert plain.opt.proxy_scheme == "coap"
    assert plain.opt.uri_host == "example.com"
    assert plain.opt.uri_port == 1234
    assert plain.opt.proxy_uri is None


def test_proxy_uri_ipv6_without_path():
    client, server = pair()
    outer, _ = client.protect(request(proxy_uri="coap+tcp://[2001:db8::1]"))
    assert outer.opt.proxy_uri == "coap+tcp://[2001:db8::1]"
    plain, _ = server.unprotect(over_the_wire(outer))
    assert (plain.opt.proxy_scheme, plain.opt.uri_host, plain.opt.uri_port) == ("coap+tcp", "2001:db8::1", None)
    assert plain.opt.uri_path == ()


def test_proxy_uri_of_another_scheme_is_decomposed_too():
    client, server = pair()
    outer, _ = client.protect(request(proxy_uri="HTTP://Example.com:8080/a/b%20c?x=1"))
    assert outer.opt.proxy_uri == "http://example.com:8080"
    plain, _ = server.unprotect(over_the_wire(outer))
    assert plain.opt.uri_path == ("a", "b c") and plain.opt.uri_query == ("x=1",)
    assert (plain.opt.proxy_scheme, plain.opt.uri_host, plain.opt.uri_port) == ("http", "example.com", 8080)


def test_outer_proxy_uri_with_path_is_rejected():
    client, server = pair()
    outer, _ = client.protect(request(proxy_uri="coap://example.com/a"))
    outer.opt.proxy_uri = "coap://example.com/unprotected"
    with pytest.raises(oscore.DecodeError):
        server.unprotect(outer)


# --- observe -----------------------------------------------------------------------

def test_observe_registration_and_notifications():
    client, server = pair()
    outer, client_rid = client.protect(request(uri_path=["obs"], observe=0))
    assert outer.code == Code.FETCH
    assert outer.opt.observe == 0
    plain_req, server_rid = server.unprotect(over_the_wire(outer))
    assert plain_req.opt.observe == 0 and plain_req.code == Code.GET
    assert server_rid.can_reuse_nonce is False

    wires = []
    for i in range(3):
        note, _ = server.protect(response(observe=i + 10, payload=b"v%d" % i), server_rid)
        assert note.code == Code.CONTENT
        assert note.opt.observe == i + 10
        assert encoding.OscoreOptionValue.decode(note.opt.oscore).partial_iv == bytes([i])
        wires.append(note.encode())

    for i, wire in enumerate(wires):
        plain, _ = client.unprotect(Message.decode(wire), client_rid)
        assert plain.opt.observe == i + 10
        assert plain.payload == b"v%d" % i
    with pytest.raises(oscore.ReplayError):
        client.unprotect(Message.decode(wires[1]), client_rid)

    final, _ = server.protect(response(code=Code.NOT_FOUND), server_rid)
    assert final.code == Code.CHANGED
    assert encoding.OscoreOptionValue.decode(final.opt.oscore).partial_iv == b"\x03"
    plain, _ = client.unprotect(final, client_rid)
    assert plain.code == Code.NOT_FOUND and plain.opt.observe is None


def test_notification_inner_observe_is_empty():
    client, server = pair()
    outer, _ = client.protect(request(observe=0))
    _, rid = server.unprotect(outer)
    note, _ = server.protect(response(observe=1234), rid)
    # Decrypt by hand to look at the inner options
    value = encoding.OscoreOptionValue.decode(note.opt.oscore)
    nonce = encoding.build_nonce(server.common_iv, server.sender_id, value.partial_iv)
    aad = encoding.build_aad(10, rid.kid, rid.partial_iv)
    plaintext = server.algorithm.decrypt(note.payload, aad, server.sender_key, nonce)
    assert plaintext == bytes([Code.CONTENT, 0x60])  # Observe, length 0


def test_notification_reordered_by_network_is_rejected():
    client, server = pair()
    outer, client_rid = client.protect(request(observe=0))
    _, rid = server.unprotect(outer)
    first, _ = server.protect(response(observe=1), rid)
    second, _ = server.protect(response(observe=2), rid)
    client.unprotect(second, client_rid)
    with pytest.raises(oscore.ReplayError):
        client.unprotect(first, client_rid)


def test_outer_observe_without_inner_is_ignored():
    client, server = pair()
    outer, client_rid = client.protect(request())
    _, rid = server.unprotect(outer)
    resp, _ = server.protect(response(), rid)
    resp.opt.observe = 7
    plain, _ = client.unprotect(resp, client_rid)
    assert plain.opt.observe is None


# --- Appendix B.1.2 Echo recovery ------------------------------------------------

def _server_with_lost_window():
    client, server = pair()
    server.recipient_replay_window = oscore.ReplayWindow(32, lambda: None)
    client.sender_sequence_number = 500
    return client, server


def test_echo_recovery_flow():
    client, server = _server_with_lost_window()
    first, first_rid = client.protect(request(uri_path=["x"]))
    with pytest.raises(oscore.ReplayErrorWithEcho) as info:
        server.unprotect(over_the_wire(first))
    e = info.value
    assert e.secctx is server
    assert e.echo == server.echo_recovery and len(e.echo) >= 8
    assert e.request_id.can_reuse_nonce is False

    challenge = e.to_message()
    assert challenge.code == Code.UNAUTHORIZED and challenge.opt.echo == e.echo
    protected_challenge, _ = e.secctx.protect(challenge, e.request_id)
    assert encoding.OscoreOptionValue.decode(protected_challenge.opt.oscore).partial_iv is not None
    plain_challenge, _ = client.unprotect(protected_challenge, first_rid)
    assert plain_challenge.code == Code.UNAUTHORIZED

    # The same request again without Echo still gets the challenge
    with pytest.raises(oscore.ReplayErrorWithEcho):
        server.unprotect(over_the_wire(client.protect(request(uri_path=["x"]))[0]))

    retry = request(uri_path=["x"], echo=plain_challenge.opt.echo)
    outer_retry, retry_rid = client.protect(retry)
    plain, server_rid = server.unprotect(over_the_wire(outer_retry))
    assert plain.opt.uri_path == ("x",)
    assert plain.opt.echo is None
    assert server.recipient_replay_window.is_initialized()
    assert server.echo_recovery is None
    # Responses to a freshness-proven request may reuse its nonce again
    resp, _ = server.protect(response(payload=b"ok"), server_rid)
    assert resp.opt.oscore == b""
    assert client.unprotect(resp, retry_rid)[0].payload == b"ok"

    # Everything from before the recovery is now a replay
    for old in (first, outer_retry):
        with pytest.raises(oscore.ReplayError):
            server.unprotect(over_the_wire(old))
    # and new requests are accepted
    server.unprotect(client.protect(request())[0])


def test_echo_recovery_wrong_echo():
    client, server = _server_with_lost_window()
    with pytest.raises(oscore.ReplayErrorWithEcho) as info:
        server.unprotect(client.protect(request())[0])
    wrong = request(echo=bytes(b ^ 0xFF for b in info.value.echo))
    with pytest.raises(oscore.ReplayErrorWithEcho) as again:
        server.unprotect(client.protect(wrong)[0])
    assert again.value.echo == info.value.echo
    assert not server.recipient_replay_window.is_initialized()


def test_echo_recovery_does_not_skip_authentication():
    client, server = _server_with_lost_window()
    outer, _ = client.protect(request())
    outer.payload = bytes([outer.payload[0] ^ 1]) + outer.payload[1:]
    with pytest.raises(oscore.ProtectionInvalid) as info:
        server.unprotect(outer)
    assert not isinstance(info.value, oscore.ReplayErrorWithEcho)


def test_overlong_oscore_option_is_a_decode_error():
    _, server = pair()
    # Option 9 with extended length 300 (14 -> 2 byte extension), then payload
    raw = bytes([0x40, Code.POST, 0, 1]) + bytes([0x9E]) + (300 - 269).to_bytes(2, "big") + b"\x09" * 300 + b"\xff\x00"
    message = Message.decode(raw)
    assert message.opt.oscore is None
    with pytest.raises(oscore.DecodeError):
        server.unprotect(message)
    with pytest.raises(oscore.DecodeError):
        oscore.verify_start(message)


def test_repeated_oscore_option_is_a_decode_error():
    client, server = pair()
    outer, _ = client.protect(request())
    outer.opt.add_option(OpaqueOption(OptionNumber.OSCORE, outer.opt.oscore))
    with pytest.raises(oscore.DecodeError):
        server.unprotect(over_the_wire(outer))
