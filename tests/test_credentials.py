"""The credentials map: loading (formats, references, errors) and lookup."""

import json

import pytest

from aiocoap.credentials import (
    DTLS, OSCORE, TLS, AnyOf, CredentialsLoadError, CredentialsMap, CredentialsMissingError,
)
from aiocoap.message import Message
from aiocoap.numbers.codes import Code


def test_manual_example_with_python_bytes():
    m = CredentialsMap()
    m.load_from_dict({"coaps://localhost/*": {"dtls": {"psk": b"secretPSK", "client-identity": b"client_Identity"}}})
    assert m.find_dtls_client_psk("coaps://localhost/x") == (b"client_Identity", b"secretPSK")
    assert m.find_dtls_client_psk("coaps://other/x") is None


def test_json_encodings():
    m = CredentialsMap()
    m.load_from_dict(json.loads(json.dumps({
        "coaps://h/*": {"dtls": {"psk": {"hex": "73 65:63"}, "client-identity": {"ascii": "id"}}},
    })))
    assert m.find_dtls_client_psk("coaps://h/") == (b"id", b"sec")


@pytest.mark.parametrize("data,fragment", [
    ({"coap://h/*": {"dtls": {"psk": "bare", "client-identity": b"x"}}}, "bare string"),
    ({"coap://h/*": {"dtls": {"psk": {"hex": "zz"}, "client-identity": b"x"}}}, "not hexadecimal"),
    ({"coap://h/*": {"dtls": {"psk": b"x"}}}, "lacks 'client-identity'"),
    ({"coap://h/*": {"dtls": {"psk": b"x", "client-identity": b"y", "extra": 1}}}, "unknown dtls field"),
    ({"coap://h/*": {"magic": {}}}, "unknown credential kind"),
    ({"coap://h/*": ":nowhere"}, "unknown entry 'nowhere'"),
    ({"a": ":b", "b": ":a"}, "reference cycle"),
    ({"coap://h/*": "plain"}, "reference starting with ':'"),
    ({"coap://h/*": {"oscore": {"contextfile": "x", "other": 1}}}, "exactly a 'contextfile'"),
    ({"coap://h/*": {"tls": {"client-key": "k.pem"}}}, "without 'client-cert'"),
    ([1, 2], "must be an object"),
])
def test_load_errors_name_the_problem(data, fragment):
    m = CredentialsMap()
    with pytest.raises(CredentialsLoadError) as info:
        m.load_from_dict(data)
    assert fragment in str(info.value)
    assert len(m) == 0


def test_references_and_longest_match():
    m = CredentialsMap()
    shared = {"dtls": {"psk": b"k", "client-identity": b"i"}}
    m.load_from_dict({
        "coaps://a/*": shared,
        "coaps://a/special/*": {"dtls": {"psk": b"k2", "client-identity": b"i2"}},
        "coaps://b/*": ":coaps://a/*",
    })
    assert m.find_dtls_client_psk("coaps://b/x") == (b"i", b"k")
    assert m.find_dtls_client_psk("coaps://a/special/y") == (b"i2", b"k2")
    assert m.find_dtls_client_psk("coaps://a/other") == (b"i", b"k")


def test_dtls_server_lookup_by_identity():
    """aiocoap 0.4.x's server-side form: labels starting with ':', found by
    the identity the client presents; the label names the peer."""
    m = CredentialsMap()
    m.load_from_dict({
        ":client": {"dtls": {"psk": {"ascii": "secretPSK"}, "client-identity": {"ascii": "client_Identity"}}},
        ":other": {"dtls": {"psk": {"hex": "0102"}, "client-identity": {"hex": "ff00"}}},
    })
    assert m.find_dtls_psk(b"client_Identity") == (b"secretPSK", ":client")
    assert m.find_dtls_psk(b"\xff\x00") == (b"\x01\x02", ":other")
    with pytest.raises(KeyError):
        m.find_dtls_psk(b"nobody")
    assert m[":client"].as_dtls_psk() == (b"client_Identity", b"secretPSK")


def test_credentials_from_request():
    m = CredentialsMap()
    m.load_from_dict({"coap://h/*": {"oscore": {"contextfile": "/nonexistent"}}})
    msg = Message(code=Code.GET, uri="coap://h/x")
    assert isinstance(m.credentials_from_request(msg), OSCORE)
    with pytest.raises(CredentialsMissingError):
        m.credentials_from_request(Message(code=Code.GET, uri="coap://other/x"))


def test_file_loading_relative_paths(tmp_path):
    (tmp_path / "creds.json").write_text(json.dumps({
        "coaps+tcp://h/*": {"tls": {"ca-file": "ca.pem"}},
        "coap://h/*": {"oscore": {"contextfile": "ctx/"}},
    }))
    m = CredentialsMap()
    m.load_from_file(str(tmp_path / "creds.json"))
    tls = m._find("coaps+tcp://h/a", TLS)
    assert tls.ca_file == str(tmp_path / "ca.pem")
    assert m["coap://h/*"].contextfile == str(tmp_path) + "/ctx/"


def test_file_errors(tmp_path):
    m = CredentialsMap()
    with pytest.raises(CredentialsLoadError, match="Can not read"):
        m.load_from_file(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CredentialsLoadError, match="not valid JSON"):
        m.load_from_file(str(bad))


def test_any_of():
    m = CredentialsMap()
    m.load_from_dict({"coaps://h/*": {"any-of": [
        {"tls": {}},
        {"dtls": {"psk": b"p", "client-identity": b"i"}},
    ]}})
    assert isinstance(m["coaps://h/*"], AnyOf)
    assert m.find_dtls_client_psk("coaps://h/") == (b"i", b"p")
    assert m.ssl_client_context("coaps://h/") is not None


def test_ssl_client_context_only_when_configured():
    m = CredentialsMap()
    assert m.ssl_client_context("coaps+tcp://h/") is None
    m.load_from_dict({"coaps+tcp://h/*": {"tls": {}}})
    ctx = m.ssl_client_context("coaps+tcp://h/")
    assert ctx.verify_mode.name == "CERT_REQUIRED"
