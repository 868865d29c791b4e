"""The credentials map: loading (formats, references, errors) and lookup."""

import json

import pytest

from aiocoap.credentials import (
    DTLS, OSCORE, TLS, AnyOf, CredentialReference, CredentialsLoadError, CredentialsMap,
    CredentialsMissingError, TLSCert,
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
    ({"coap://h/*": {"oscore": {"contextfile": "x", "other": 1}}}, "exactly a 'basedir'"),
    ({"coap://h/*": {"oscore": {"contextfile": "x", "basedir": "y"}}}, "exactly a 'basedir'"),
    ({"coaps+tcp://h/*": {"tlscert": {"certfile": "c.pem", "keyfile": "k.pem"}}}, "client-cert"),
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


def _context_dir(path, sender=b"\x01", recipient=b"\x02"):
    path.mkdir()
    (path / "settings.json").write_text(json.dumps({
        "sender-id_hex": sender.hex(), "recipient-id_hex": recipient.hex(), "secret_ascii": "secret",
    }))
    return str(path)


def test_credentials_from_request_gives_the_security_context(tmp_path):
    pytest.importorskip("cryptography")
    pytest.importorskip("filelock")
    m = CredentialsMap()
    m.load_from_dict({"coap://h/*": {"oscore": {"basedir": _context_dir(tmp_path / "ctx")}}})
    msg = Message(code=Code.GET, uri="coap://h/x")
    found = m.credentials_from_request(msg)
    from aiocoap.oscore import FilesystemSecurityContext

    assert isinstance(found, FilesystemSecurityContext)
    assert found is m.credentials_from_request(msg)  # opened once
    assert m.find_all_used_contextless_oscore_kid() == {b"\x02"}
    with pytest.raises(CredentialsMissingError):
        m.credentials_from_request(Message(code=Code.GET, uri="coap://other/x"))
    found.shutdown()


def test_oscore_basedir_and_contextfile_spellings(tmp_path):
    m = CredentialsMap()
    m.load_from_dict({
        "coap://a/*": {"oscore": {"basedir": "one/"}},
        "coap://b/*": {"oscore": {"contextfile": "two/"}},
    }, base_directory=str(tmp_path))
    assert m["coap://a/*"].basedir == str(tmp_path / "one") + "/"
    assert m["coap://b/*"].basedir == m["coap://b/*"].contextfile == str(tmp_path / "two") + "/"


def test_aiocoap_style_label_references():
    """aiocoap 0.4.x keeps shared entries under labels starting with a
    colon and refers to them by that very key."""
    m = CredentialsMap()
    m.load_from_dict({
        ":client": {"dtls": {"psk": b"k", "client-identity": b"i"}},
        "coaps://a/*": ":client",
        "coaps://b/*": ":coaps://a/*",
    })
    assert m.find_dtls_client_psk("coaps://a/x") == (b"i", b"k")
    assert m.find_dtls_client_psk("coaps://b/x") == (b"i", b"k")


def test_credential_reference_objects_are_followed_at_lookup():
    m = CredentialsMap()
    m.load_from_dict({":psk": {"dtls": {"psk": b"k", "client-identity": b"i"}}})
    m["coaps://h/*"] = CredentialReference(":psk", m)
    assert m.find_dtls_client_psk("coaps://h/x") == (b"i", b"k")
    assert m["coaps://h/*"].client_identity == b"i"  # attributes of the target
    m.load_from_dict({":psk": {"dtls": {"psk": b"new", "client-identity": b"i"}}})
    assert m.find_dtls_client_psk("coaps://h/x") == (b"i", b"new")  # follows the key, not the old object
    with pytest.raises(CredentialsLoadError):
        CredentialReference("psk", m)
    m["coaps://loop/*"] = CredentialReference(":loop", m)
    m[":loop"] = CredentialReference(":coaps://loop/*", m)
    with pytest.raises(CredentialsLoadError, match="cycle"):
        m.find_dtls_client_psk("coaps://loop/x")


def test_tlscert_is_a_trust_anchor(tmp_path):
    m = CredentialsMap()
    m.load_from_dict({"coaps+tcp://h/*": {"tlscert": {"certfile": "server.pem"}}}, base_directory=str(tmp_path))
    item = m["coaps+tcp://h/*"]
    assert isinstance(item, TLSCert) and isinstance(item, TLS)
    assert item.certfile == item.ca_file == str(tmp_path / "server.pem")
    assert item.client_cert is None
    assert item.as_ssl_params() == {"cafile": str(tmp_path / "server.pem")}
    assert TLSCert(certfile="x.pem").as_ssl_params() == {"cafile": "x.pem"}


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
