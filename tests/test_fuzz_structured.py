"""Structured fuzzing of the parsers whose input has a grammar that random
bytes rarely get through: aiocoap-client's command line, credentials
files, the files of an OSCORE context directory, and RFC 8323 signaling
options. The contracts are those of the targets in fuzz_targets.py; the
regression tests below name the bugs these harnesses found."""

from __future__ import annotations

import io
import json
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzz_targets
from aiocoap.defaults import oscore_missing_modules
from fuzzing import fuzz_settings

pytestmark = pytest.mark.fuzz

# --- aiocoap-client's command line ------------------------------------------------

_OPTIONS = [
    "-h", "--help", "--non", "-m", "--method", "--observe", "--observe-exec", "--accept",
    "--proxy", "--payload", "--content-format", "-v", "-vv", "--verbose", "-q", "--quiet",
    "--interactive", "--credentials", "--version", "--color", "--no-color", "--pretty-print",
    "--no-pretty-print", "--transport-tuning", "--pay", "--no-c", "--", "-", "-x", "--bogus",
    "--no-set-hostname", "--payload-initial-szx",
]
_VALUES = [
    "GET", "put", "FETCH", "iPATCH", "0", "1", "31", "32", "69", "²", "text/plain", "application/cbor",
    "application/senml+cbor", "application/json", "50", "65536", "hello", "@-", "[1, 2]",
    '{"a": [1, {"b": null}]}', "1e999", "ACK_TIMEOUT=0.1,MAX_RETRANSMIT=1", "ACK_TIMEOUT=nan",
    "NO_SUCH=1", "ACK_TIMEOUT=-1", "ACK_TIMEOUT=1e400", "p:1", "[::1]:99999", "coap://proxy",
    "http://x", "", "-1", "7", "[1, h'00']", "<<1>>", "(_ 'a', 'b')", "{1: 2}", "\"t\"",
]
_hosts = st.sampled_from(
    ["localhost", "127.0.0.1", "[::1]", "[fe80::1%25eth0]", "[::1", "h\u00e4st", "xn--", "a..b", "", "[]", "1.2.3.4.5"]
)
_ports = st.one_of(st.just(""), st.integers(0, 70000).map(lambda p: f":{p}"), st.sampled_from([":", ":-1", ":x"]))
_path = st.text(alphabet="/abc%20?&=#\u00e4.;\udcff", max_size=16)
_urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["coap://", "coaps://", "coap+tcp://", "coaps+tcp://", "coap+ws://", "http://", "x:", "", "//"]),
    _hosts,
    _ports,
    _path,
)
_tokens = st.one_of(
    st.sampled_from(_OPTIONS),
    st.sampled_from(_VALUES),
    _urls,
    st.text(max_size=12),
    st.binary(max_size=8).map(lambda b: b.decode("utf-8", "surrogateescape")),
)


@fuzz_settings(300)
@given(st.lists(_tokens, max_size=7))
def test_client_command_lines(argv):
    fuzz_targets.check_client_argv(argv)


def _run_client(argv):
    from aiocoap.cli import client
    from aiocoap.cli._client_request import build_request

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return build_request(client.parse_commandline(argv)), None, err.getvalue()
        except SystemExit as e:
            return None, e.code, err.getvalue()


def test_payload_that_is_not_utf8_is_sent_as_given():
    # found by the harness: a UnicodeEncodeError traceback
    request, status, err = _run_client(["--payload", b"\xff\xfeA".decode("utf-8", "surrogateescape"), "coap://h/"])
    assert status is None and not err
    assert request.payload == b"\xff\xfeA"


@pytest.mark.parametrize(
    "payload", ['"\udcff"', "'\udcff'", "[" * 100000, "{1: " * 100000, "[1, 2"]
)
def test_cbor_payload_that_is_no_diagnostic_notation_is_a_one_line_error(payload):
    # found by the harness: a string with bytes that are not UTF-8 was a
    # UnicodeEncodeError traceback
    request, status, err = _run_client(["--content-format", "application/cbor", "--payload", payload, "coap://h/"])
    assert request is None and status == 1
    assert err.count("\n") == 1 and err.startswith("aiocoap-client: error: --payload is not CBOR diagnostic notation")


# --- credentials files ----------------------------------------------------------------

_byte_specs = st.one_of(
    st.builds(lambda t: {"ascii": t}, st.text(max_size=8)),
    st.builds(lambda t: {"hex": t}, st.text(alphabet="0123456789abcdefABCDEF :-xg", max_size=12)),
    st.text(max_size=4),
    st.integers(),
    st.none(),
    st.builds(lambda t: {"base64": t}, st.text(max_size=4)),
)
_files = st.one_of(st.sampled_from(["ca.pem", "/etc/x", "", "a/../b"]), st.integers(), st.none())
_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=6))


def _fields(names, values):
    return st.dictionaries(st.sampled_from(names), values, max_size=len(names))


_leaves = st.one_of(
    st.builds(lambda d: {"dtls": d}, _fields(["psk", "client-identity", "extra"], _byte_specs)),
    st.builds(lambda d: {"tls": d}, _fields(["ca-file", "ca-path", "client-cert", "client-key", "x"], _files)),
    st.builds(lambda d: {"tlscert": d}, _fields(["certfile", "keyfile"], _files)),
    st.builds(lambda d: {"oscore": d}, _fields(["contextfile", "basedir"], _files)),
    st.builds(lambda v: {"unknown-kind": v}, _json_scalars),
    _json_scalars,
)
_credentials = st.deferred(
    lambda: st.one_of(
        _leaves,
        st.builds(lambda items: {"any-of": items}, st.lists(_credentials, max_size=3)),
        st.builds(lambda items: {"all-of": items}, st.lists(_credentials, max_size=3)),
        st.lists(_credentials, max_size=2),
    )
)
_keys = st.sampled_from(["coap://h/*", "coaps://h/x", "coap://[::1]/*", "*", "", ":label", "coap://alias/*"])
_references = _keys.map(lambda k: ":" + k)
_credential_files = st.dictionaries(_keys, st.one_of(_credentials, _references), max_size=4)


@fuzz_settings(300)
@given(_credential_files)
def test_credentials_files(data):
    fuzz_targets.credentials_json(json.dumps(data).encode())


@fuzz_settings(100)
@given(_credential_files)
def test_credentials_dicts(data):
    from aiocoap.credentials import CredentialsLoadError, CredentialsMap

    try:
        CredentialsMap().load_from_dict(data)
    except CredentialsLoadError as e:
        assert str(e)


def test_credentials_file_not_utf8(tmp_path):
    # found by the harness: a UnicodeDecodeError traceback
    from aiocoap.credentials import CredentialsLoadError, CredentialsMap

    path = tmp_path / "credentials.json"
    path.write_bytes(b'{"coap://h/*": {"dtls": {"psk": {"ascii": "\xac"}}}}')
    with pytest.raises(CredentialsLoadError, match="not valid JSON"):
        CredentialsMap().load_from_file(str(path))


def test_credentials_nested_too_deeply(tmp_path):
    from aiocoap.credentials import CredentialsLoadError, CredentialsMap

    path = tmp_path / "credentials.json"
    path.write_text('{"coap://h/*": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(CredentialsLoadError, match="nested too deeply"):
        CredentialsMap().load_from_file(str(path))
    item = {"dtls": {"psk": {"ascii": "k"}, "client-identity": {"ascii": "i"}}}
    for _ in range(2000):
        item = {"any-of": [item]}
    with pytest.raises(CredentialsLoadError, match="nested too deeply"):
        CredentialsMap().load_from_dict({"coap://h/*": item})


# --- OSCORE context directories ----------------------------------------------------------

_setting_names = [
    "sender-id", "recipient-id", "secret", "salt", "id-context", "sender-id_hex", "recipient-id_ascii",
    "secret_ascii", "salt_hex", "id-context_b64", "algorithm", "kdf-hashfun", "window", "other",
]
_setting_values = st.one_of(
    _byte_specs,
    st.sampled_from(["AES-CCM-16-64-128", "A128GCM", "ChaCha20/Poly1305", "sha256", "sha512", "md5", "01", "zz"]),
    st.integers(-2, 2**70),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.booleans(),
    st.floats(allow_nan=False),
)
_valid_settings = st.sampled_from([
    {"sender-id_hex": "01", "recipient-id_hex": "", "secret_ascii": "secret"},
    {"sender-id": {"hex": "01"}, "recipient-id": {"ascii": "r"}, "secret": {"hex": "0102"}, "salt": {"hex": ""}},
])
# a valid base with some parameters added or replaced by anything, so that
# the checks after the required parameters are reached too
_settings = st.one_of(
    st.builds(lambda base, changes: {**base, **changes}, _valid_settings, _fields(_setting_names, _setting_values)),
    _fields(_setting_names, _setting_values),
)
_window = st.one_of(
    st.none(),
    st.just("unknown"),
    _fields(["index", "entries", "bitfield", "x"], st.one_of(st.integers(-2, 2**64), st.text(max_size=2), st.none())),
    st.lists(st.integers(), max_size=2),
)
_sequence = st.one_of(
    _fields(["next-unused-sender-sequence-number", "recipient-replay-window", "x"],
            st.one_of(st.integers(-1, 2**41), _window, st.booleans())),
    _fields(["next-to-send", "received"], st.one_of(st.integers(-1, 2**41), _window)),
    _json_scalars,
)


@pytest.mark.skipif(bool(oscore_missing_modules()), reason="needs the oscore extra")
@fuzz_settings(200)
@given(st.one_of(_settings, _json_scalars), _sequence, st.booleans())
def test_oscore_context_directories(settings, sequence, with_sequence):
    fuzz_targets.check_oscore_context_files(
        json.dumps(settings).encode(), json.dumps(sequence).encode() if with_sequence else b""
    )


@pytest.mark.skipif(bool(oscore_missing_modules()), reason="needs the oscore extra")
@pytest.mark.parametrize("name", ["algorithm", "kdf-hashfun"])
@pytest.mark.parametrize("value", [[1], {"ascii": ""}])
def test_oscore_context_names_that_are_not_strings(tmp_path, name, value):
    # found by the harness: a TypeError (unhashable) traceback
    from aiocoap import oscore

    settings = {"sender-id_hex": "01", "recipient-id_hex": "", "secret_ascii": "secret", name: value}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    with pytest.raises(oscore.FilesystemSecurityContext.LoadError, match=name):
        oscore.FilesystemSecurityContext(tmp_path)


# --- RFC 8323 signaling options ------------------------------------------------------------


@st.composite
def _signaling_bodies(draw):
    """Options (ascending numbers, values of any length) of a signaling
    message, after the control byte of the rfc8323-signaling target."""
    from aiocoap.numbers.optionnumbers import OptionNumber
    from aiocoap.optiontypes import OpaqueOption
    from aiocoap.options import Options

    options = Options()
    numbers = st.one_of(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 9, 10]), st.integers(0, 2000))
    for number, value in draw(st.lists(st.tuples(numbers, st.binary(max_size=6)), max_size=5)):
        options.add_option(OpaqueOption(OptionNumber(number), value))
    payload = draw(st.binary(max_size=6))
    return bytes((draw(st.integers(0, 255)),)) + options.encode() + (b"\xff" + payload if payload else b"")


@fuzz_settings(300)
@given(_signaling_bodies())
def test_signaling_options(data):
    fuzz_targets.rfc8323_signaling(data)
