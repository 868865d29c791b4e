"""Tests of aiocoap-client (aiocoap.cli.client) and the helpers the tools
share (aiocoap.cli.common).

The argument handling is tested in-process. Everything else runs the
``aiocoap-client`` wrapper script of the checkout as a subprocess against a
server in the test's own event loop (on 127.0.0.1, free port), so that
output streams, terminals (through pseudo-terminals), signals and exit
codes are the real ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import pty
import re
import signal
import socket
import sys
import time

import pytest
from ports import free_udp_port

from aiocoap import error
from aiocoap.cli import _client_request, client, common
from aiocoap.message import Message, UndecidedRemote
from aiocoap.proxy.client import ProxyForwarder
from aiocoap.numbers import Code, ContentFormat, TransportTuning
from aiocoap.numbers.types import ACK, CON, NON

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = [sys.executable, os.path.join(ROOT, "aiocoap-client")]
QUICK = "--transport-tuning=ACK_TIMEOUT=0.1,MAX_RETRANSMIT=1"

ERROR_LINE = re.compile(r"^aiocoap-client: error: \S.*$")


def _one_error_line(stderr: str) -> str:
    """Assert that stderr is exactly one error line, and return it"""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {stderr!r}"
    assert ERROR_LINE.match(lines[0]), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


# --- argument parsing (no network) -------------------------------------------


def test_defaults():
    options = client.parse_commandline(["coap://localhost/"])
    assert options.url == "coap://localhost/"
    assert options.method is Code.GET
    assert (options.non, options.observe, options.interactive) == (False, False, False)
    assert options.color is None and options.pretty_print is None
    assert options.payload is options.accept is options.content_format is None
    assert options.verbose == options.quiet == 0


@pytest.mark.parametrize(
    "given, expected",
    [
        ("GET", Code.GET),
        ("put", Code.PUT),
        ("Post", Code.POST),
        ("delete", Code.DELETE),
        ("FETCH", Code.FETCH),
        ("ipatch", Code.iPATCH),
        ("3", Code.PUT),
        ("7", Code.iPATCH),
        ("30", Code(30)),
    ],
)
def test_method_names_and_numbers(given, expected):
    assert client.parse_commandline(["-m", given, "coap://h/"]).method == expected
    assert client.parse_commandline(["--method", given, "coap://h/"]).method == expected


@pytest.mark.parametrize("given", ["FOO", "CONTENT", "0", "69", "32", "-1", ""])
def test_bad_method_is_usage_error(given, capsys):
    with pytest.raises(SystemExit) as excinfo:
        client.parse_commandline(["-m", given, "coap://h/"])
    assert excinfo.value.code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "method" in line


@pytest.mark.parametrize(
    "given, expected",
    [
        ("application/json", ContentFormat.JSON),
        ("application/cbor", ContentFormat.CBOR),
        ("text/plain", ContentFormat.TEXT),
        ("application/senml+cbor", ContentFormat.SENML_CBOR),
        ("60", ContentFormat.CBOR),
        ("65000", ContentFormat(65000)),
    ],
)
def test_content_format_arguments(given, expected):
    options = client.parse_commandline(["--accept", given, "--content-format", given, "coap://h/"])
    assert options.accept == expected
    assert options.content_format == expected


@pytest.mark.parametrize("given", ["application/x-nonsense", "json", "70000"])
def test_bad_content_format_is_usage_error(given, capsys):
    with pytest.raises(SystemExit) as excinfo:
        client.parse_commandline(["--accept", given, "coap://h/"])
    assert excinfo.value.code == 2
    _one_error_line(capsys.readouterr().err)


def test_observe_exec_implies_observe():
    assert client.parse_commandline(["--observe-exec", "true", "coap://h/"]).observe is True


def test_url_is_required_unless_interactive(capsys):
    with pytest.raises(SystemExit) as excinfo:
        client.parse_commandline([])
    assert excinfo.value.code == 2
    assert "url" in _one_error_line(capsys.readouterr().err)
    assert client.parse_commandline(["--interactive", "-v", "--no-color"]).interactive


def test_interactive_takes_no_request_options(capsys):
    with pytest.raises(SystemExit):
        client.parse_commandline(["--interactive", "coap://h/"])
    assert "interactive" in _one_error_line(capsys.readouterr().err)


def test_version(capsys):
    from aiocoap import meta

    with pytest.raises(SystemExit) as excinfo:
        client.parse_commandline(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out == f"aiocoap-client {meta.version}\n"


def test_help_documents_every_option():
    text = client.build_parser().format_help()
    for option in [
        "--non", "--method", "--observe", "--observe-exec", "--accept", "--proxy",
        "--payload", "--content-format", "--verbose", "--quiet", "--interactive",
        "--credentials", "--version", "--color, --no-color",
        "--pretty-print, --no-pretty-print", "url",
    ]:
        assert option in text
    # The tuning option is for tests only
    assert "tuning" not in text


def test_transport_tuning_option():
    options = client.parse_commandline([QUICK, "coap://h/"])
    assert isinstance(options.transport_tuning, TransportTuning)
    assert options.transport_tuning.ACK_TIMEOUT == 0.1
    assert options.transport_tuning.MAX_RETRANSMIT == 1


@pytest.mark.parametrize("given", ["ACK_TIMEOUT", "NO_SUCH=1", "ACK_TIMEOUT=fast"])
def test_bad_transport_tuning(given, capsys):
    with pytest.raises(SystemExit):
        client.parse_commandline(["--transport-tuning", given, "coap://h/"])
    _one_error_line(capsys.readouterr().err)


# --- building requests (no network) --------------------------------------------


def _request(*args) -> Message:
    options = client.parse_commandline([*args])
    request = _client_request.build_request(options)
    proxy = _client_request.proxy_address(options)
    if proxy is not None:
        ProxyForwarder(proxy, None).rewrite(request)
    return request


def test_request_from_url_and_flags():
    request = _request("--non", "-m", "POST", "--accept", "60", "coap://example.com:1234/a/b?x=1")
    assert request.mtype == NON
    assert request.code == Code.POST
    assert request.opt.accept == ContentFormat.CBOR
    assert request.opt.uri_path == ("a", "b")
    assert request.opt.uri_query == ("x=1",)
    assert request.opt.observe is None
    assert request.remote == UndecidedRemote("coap", "example.com:1234")
    assert _request("coap://h/").mtype == CON


def test_request_observe():
    assert _request("--observe", "coap://h/").opt.observe == 0


def test_request_via_proxy():
    """The target goes into Proxy-Scheme and Uri-Host/-Port, as aiocoap's
    ProxyForwarder puts it"""
    request = _request("--proxy", "127.0.0.1:5700", "coap://example.com/a?b")
    assert request.opt.proxy_uri is None
    assert request.opt.proxy_scheme == "coap"
    assert (request.opt.uri_host, request.opt.uri_port) == ("example.com", None)
    assert request.opt.uri_path == ("a",) and request.opt.uri_query == ("b",)
    assert request.remote == UndecidedRemote("coap", "127.0.0.1:5700")
    request = _request("--proxy", "coap+tcp://[::1]:5700", "coap+tcp://[2001:db8::1]:1234/")
    assert request.remote == UndecidedRemote("coap+tcp", "[::1]:5700")
    # (an IP literal in Uri-Host keeps its brackets, RFC 7252 §6.4)
    assert (request.opt.proxy_scheme, request.opt.uri_host, request.opt.uri_port) == ("coap+tcp", "[2001:db8::1]", 1234)
    # Schemes the client can not send itself can be given to a proxy
    request = _request("--proxy", "127.0.0.1", "http://example.com/x")
    assert (request.opt.proxy_scheme, request.opt.uri_host, request.opt.uri_path) == ("http", "example.com", ("x",))
    for none in ("none", "-", ""):
        request = _request("--proxy", none, "coap://example.com/a")
        assert request.opt.proxy_scheme is None and request.remote == UndecidedRemote("coap", "example.com")


def test_no_set_hostname():
    assert _request("coap://localhost/x").opt.uri_host == "localhost"
    assert _request("--no-set-hostname", "coap://localhost/x").opt.uri_host is None
    assert _request("coap://127.0.0.1/x").opt.uri_host is None


def test_payload_initial_szx():
    request = _request("--payload-initial-szx", "2", "--payload", "x" * 100, "coap://h/")
    assert request.opt.block1.size_exponent == 2 and request.opt.block1.block_number == 0
    assert _request("coap://h/").opt.block1 is None


@pytest.mark.parametrize("given", ["7", "-1", "x", "1.5"])
def test_bad_payload_initial_szx(given, capsys):
    with pytest.raises(SystemExit) as excinfo:
        client.parse_commandline(["--payload-initial-szx", given, "coap://h/"])
    assert excinfo.value.code == 2
    assert "size exponent" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("proxy", ["[::1", "host:port", ":5683", "http://proxy.example", "coap://h/path"])
def test_bad_proxy(proxy, capsys):
    with pytest.raises(SystemExit) as excinfo:
        _request("--proxy", proxy, "coap://example.com/")
    assert excinfo.value.code == 1
    assert "proxy" in _one_error_line(capsys.readouterr().err)


def test_payload_text_file_and_stdin(tmp_path, monkeypatch):
    assert _request("--payload", "hällo", "coap://h/").payload == "hällo".encode()
    data = bytes(range(256))
    (tmp_path / "blob").write_bytes(data)
    assert _request("--payload", f"@{tmp_path / 'blob'}", "coap://h/").payload == data

    class FakeStdin:
        buffer = __import__("io").BytesIO(b"from stdin\x00")

    monkeypatch.setattr(sys, "stdin", FakeStdin)
    assert _request("--payload", "@-", "coap://h/").payload == b"from stdin\x00"


def test_payload_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as excinfo:
        _request("--payload", f"@{tmp_path / 'absent'}", "coap://h/")
    assert excinfo.value.code == 1
    assert "absent" in _one_error_line(capsys.readouterr().err)


def test_json_payload_converted_to_cbor(tmp_path):
    """JSON is a part of CBOR diagnostic notation"""
    cbor2 = pytest.importorskip("cbor2")
    value = {"temp": 21.5, "tags": ["a", None, True], "n": -3}
    text = json.dumps(value)
    request = _request("--content-format", "application/cbor", "--payload", text, "coap://h/")
    assert request.opt.content_format == ContentFormat.CBOR
    assert cbor2.loads(request.payload) == value
    # CBOR-based formats are converted as well
    request = _request("--content-format", "application/senml+cbor", "--payload", "[1]", "coap://h/")
    assert request.payload == cbor2.dumps([1])
    # Files are sent as they are
    (tmp_path / "p.json").write_text(text)
    request = _request("--content-format", "60", "--payload", f"@{tmp_path / 'p.json'}", "coap://h/")
    assert request.payload == text.encode()
    # JSON stays JSON
    request = _request("--content-format", "application/json", "--payload", text, "coap://h/")
    assert request.payload == text.encode()


@pytest.mark.parametrize(
    "cf,text,expected",
    [
        ("application/cbor", "{1: h'cafe', \"t\": [1.5, true, null]}", "a201 42cafe 6174 83 f93e00 f5 f6"),
        ("application/cbor", "1(1700000000)", "c1 1a6553f100"),
        ("application/cbor", "[_ 1, 2]", "9f 01 02 ff"),
        ("application/senml+cbor", "[{-2: 21.5}]", "81 a1 21 f94d60"),
        ("application/cbor-seq", "1, \"a\", [2]", "01 6161 8102"),
        # One array stands for its elements (as in aiocoap) ...
        ("application/cbor-seq", "[1, \"a\", [2]]", "01 6161 8102"),
        # ... so a sequence of one array is written as an array in an array
        ("application/cbor-seq", "[[1, 2]]", "820102"),
    ],
)
def test_diagnostic_notation_payloads(cf, text, expected):
    request = _request("--content-format", cf, "--payload", text, "coap://h/")
    assert request.payload.hex() == expected.replace(" ", "")


@pytest.mark.parametrize("text", ["{nope", "[1, 2", "h'1'", "'unclosed", "{temp: 1}"])
def test_invalid_diagnostic_notation(text, capsys):
    with pytest.raises(SystemExit) as excinfo:
        _request("--content-format", "application/cbor", "--payload", text, "coap://h/")
    assert excinfo.value.code == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "CBOR diagnostic notation" in line and "quotation marks" in line


@pytest.mark.parametrize(
    "url, hint",
    [
        ("localhost/time", "Must start with a scheme (eg. coap://) (did you mean coap://localhost/time?)"),
        ("localhost:5683/time", "Must start with a scheme (eg. coap://) (did you mean coap://localhost:5683/time?)"),
        ("[::1]:5683/time", "Must start with a scheme (eg. coap://) (did you mean coap://[::1]:5683/time?)"),
        ("coap:/host/x", "no host (did you mean coap://host/x?)"),
        ("coap:host/x", "no host (did you mean coap://host/x?)"),
        ("coap//host/x", "did you mean coap://host/x?"),
        ("coap+tcp:/host", "did you mean coap+tcp://host?"),
        ("http://example.com/", "not a CoAP URI (http: is not a CoAP scheme)"),
        ("urn:ietf:rfc:7252", "only be requested through a proxy"),
        ("coap://[::1/", "invalid URI"),
        ("coap://h/x#fragment", "fragment"),
        ("coap:///path", "no host"),
    ],
)
def test_malformed_uri(url, hint, capsys):
    with pytest.raises(SystemExit) as excinfo:
        _request(url)
    assert excinfo.value.code == 1
    line = _one_error_line(capsys.readouterr().err)
    assert hint.lower() in line.lower()
    assert url in line
    if "did you mean" not in hint:
        assert "did you mean" not in line


@pytest.mark.parametrize(
    "url,suggestion",
    [
        ("coap:/host/x", "coap://host/x"),
        ("coap:host", "coap://host"),
        ("COAP:/host/x", "coap://host/x"),
        ("coaps+tcp:/h:1/x", "coaps+tcp://h:1/x"),
        ("//host/x?q", "coap://host/x?q"),
        ("host", "coap://host"),
        ("host:1234", "coap://host:1234"),
        ("coap:///x", None),
        ("coap:/", None),
        ("/x", None),
        ("coap://host/x", None),
        ("http://h/x", None),
        ("mailto:someone", None),
        ("coap:/[::1/x", None),
    ],
)
def test_url_suggestions(url, suggestion):
    assert _client_request.url_suggestion(url) == suggestion

# --- aiocoap.cli.common (no network) ---------------------------------------------


def test_verbosity_levels():
    assert common.verbosity_to_level(-3) > logging.CRITICAL
    assert common.verbosity_to_level(-1) == logging.ERROR
    assert common.verbosity_to_level(0) == logging.WARNING
    assert common.verbosity_to_level(1) == logging.INFO
    assert common.verbosity_to_level(5) == logging.DEBUG
    # The library one step behind a tool's own logger
    assert [common.library_level(v) for v in (-2, -1, 0, 1, 2, 3)] == [
        logging.CRITICAL + 1, logging.ERROR, logging.WARNING, logging.WARNING, logging.INFO, logging.DEBUG,
    ]


@pytest.fixture
def restored_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("coap").level)
    yield
    for handler in root.handlers:
        if handler not in saved[1]:
            root.removeHandler(handler)
    root.setLevel(saved[0])
    logging.getLogger("coap").setLevel(saved[2])
    logging.getLogger("coap.aiocoap-client").setLevel(logging.NOTSET)
    common.configure_logging.__globals__["_verbosity"] = 0


def _shown(handler, logger: str, level: int, msg: str = "something") -> bool:
    """Whether a record would be created and written by the tool's handler"""
    log = logging.getLogger(logger)
    if not log.isEnabledFor(level):
        return False
    record = log.makeRecord(logger, level, __file__, 0, msg, (), None)
    return bool(handler.filter(record))


def test_client_verbosity_as_aiocoap(restored_logging):
    """-v: the client's own logger; -vv: the library's info; -vvv: its debug
    output (aiocoap's staging, with the client logger named as there)"""
    handler = [h for h in logging.getLogger().handlers if getattr(h, "_aiocoap_cli", False)]
    client.configure_logging(0)
    (handler,) = [h for h in logging.getLogger().handlers if getattr(h, "_aiocoap_cli", False)]
    assert client.log.name == "coap.aiocoap-client"
    assert not _shown(handler, "coap.aiocoap-client", logging.INFO)
    assert _shown(handler, "coap", logging.WARNING)

    client.configure_logging(1)
    assert _shown(handler, "coap.aiocoap-client", logging.INFO)
    assert not _shown(handler, "coap", logging.INFO)
    assert not _shown(handler, "coap", logging.DEBUG, "Sending %r")
    assert not _shown(handler, "coap.tcp", logging.DEBUG)
    # Retransmissions are shown from -v on
    assert _shown(handler, "coap", logging.DEBUG, "Retransmitting MID %d to %r (transmission %d)")
    assert _shown(handler, "coap", logging.WARNING)

    client.configure_logging(2)
    assert _shown(handler, "coap", logging.INFO)
    assert not _shown(handler, "coap", logging.DEBUG)
    assert not _shown(handler, "coap.aiocoap-client", logging.DEBUG)

    client.configure_logging(3)
    assert _shown(handler, "coap", logging.DEBUG)
    assert _shown(handler, "coap.aiocoap-client", logging.DEBUG)

    client.configure_logging(-1)
    assert not _shown(handler, "coap", logging.WARNING)
    assert _shown(handler, "coap", logging.ERROR)
    client.configure_logging(-2)
    assert not _shown(handler, "coap", logging.CRITICAL)


def test_configure_logging_installs_one_handler():
    logger_name = "aiocoap-test-cli-logging"
    logger = logging.getLogger(logger_name)
    try:
        common.configure_logging(1, name=logger_name)
        common.configure_logging(2, name=logger_name)
        assert logger.level == logging.DEBUG
        assert len(logger.handlers) == 1
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        common.configure_logging.__globals__["_verbosity"] = 0


def test_fail_prints_one_line(capsys):
    with pytest.raises(SystemExit) as excinfo:
        try:
            raise OSError("disk on fire")
        except OSError as e:
            common.fail(f"cannot go on: {e}\n(really)", prog="tool", verbose=False)
    assert excinfo.value.code == 1
    assert capsys.readouterr().err == "tool: error: cannot go on: disk on fire (really)\n"


def test_fail_shows_traceback_when_verbose(capsys):
    with pytest.raises(SystemExit) as excinfo:
        try:
            raise OSError("disk on fire")
        except OSError:
            common.fail("cannot go on", prog="tool", verbose=True, exitcode=3)
    assert excinfo.value.code == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "disk on fire" in err
    assert err.endswith("tool: error: cannot go on\n")


def _server_parser(**kwargs) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="server")
    common.add_server_arguments(p, **kwargs)
    return p


@pytest.mark.parametrize(
    "given, expected",
    [
        ("localhost", ("localhost", None)),
        ("127.0.0.1:5700", ("127.0.0.1", 5700)),
        (":5700", (None, 5700)),
        ("[::1]:5700", ("::1", 5700)),
        ("[fe80::1%eth0]", ("fe80::1%eth0", None)),
    ],
)
def test_bind_argument(given, expected):
    assert _server_parser().parse_args(["--bind", given]).bind == expected


@pytest.mark.parametrize("given", ["[::1", "::1:5683", "host:http", "host:99999"])
def test_bad_bind_argument(given, capsys):
    with pytest.raises(SystemExit) as excinfo:
        _server_parser().parse_args(["--bind", given])
    assert excinfo.value.code == 2
    assert "--help-bind" in capsys.readouterr().err


def test_help_bind(capsys):
    with pytest.raises(SystemExit) as excinfo:
        _server_parser().parse_args(["--help-bind"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    assert "HOST:PORT" in out and "[IPV6]:PORT" in out


def test_server_arguments():
    options = _server_parser().parse_args(
        ["--tls-server-certificate", "c.pem", "--tls-server-key", "k.pem"]
    )
    assert (options.bind, options.tls_server_certificate, options.tls_server_key) == (None, "c.pem", "k.pem")
    assert not hasattr(options, "server_credentials")
    options = _server_parser(credentials=True).parse_args(["--server-credentials", "x.json"])
    assert options.server_credentials == "x.json"
    server = common.extract_server_arguments(options)
    assert server.server_credentials == "x.json"
    assert not hasattr(options, "server_credentials")


def test_credentials_file_errors(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit):
        common.load_credentials_file(str(tmp_path / "bad.json"))
    assert "not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        common.load_credentials_file(str(tmp_path / "absent.json"))
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "good.json").write_text('{"coap://*": {"dtls": {}}}')
    assert common.load_credentials_file(str(tmp_path / "good.json")) == {"coap://*": {"dtls": {}}}


# --- a server to talk to --------------------------------------------------------




def _build_site():
    import aiocoap
    from aiocoap import resource

    class Text(resource.Resource):
        def __init__(self, payload: bytes, content_format=ContentFormat.TEXT):
            super().__init__()
            self.payload = payload
            self.content_format = content_format

        async def render_get(self, request):
            return aiocoap.Message(payload=self.payload, content_format=self.content_format)

    class Echo(resource.Resource):
        """Describes the request it got, as JSON"""

        async def render(self, request):
            description = {
                "method": str(request.code),
                "mtype": request.mtype.name,
                "payload": request.payload.hex(),
                "content_format": request.opt.content_format,
                "accept": request.opt.accept,
                "observe": request.opt.observe,
                "uri_host": request.opt.uri_host,
                "block1": request.opt.block1 is not None,
            }
            return aiocoap.Message(
                code=Code.CHANGED if request.code != Code.GET else Code.CONTENT,
                payload=json.dumps(description).encode(),
                content_format=ContentFormat.JSON,
            )

    class Forbidden(resource.Resource):
        async def render_get(self, request):
            raise error.Forbidden("not for you")

    class Garbled(resource.Resource):
        async def render_get(self, request):
            raise error.BadRequest("bad\x1b[2Jthing\r")

    class Slow(resource.Resource):
        async def render_get(self, request):
            await asyncio.sleep(5)
            return aiocoap.Message(payload=b"finally")

    class Counter(resource.ObservableResource):
        """Counts up and notifies every 50 ms while observed"""

        def __init__(self, line_end="\n"):
            super().__init__()
            self.line_end = line_end
            self.count = 0
            self.observers = 0
            self.handle = None

        def tick(self):
            self.count += 1
            self.updated_state()
            self.handle = asyncio.get_running_loop().call_later(0.05, self.tick)

        def update_observation_count(self, count):
            self.observers = count
            if count and self.handle is None:
                self.handle = asyncio.get_running_loop().call_later(0.05, self.tick)
            if not count:
                self.stop()

        def stop(self):
            if self.handle is not None:
                self.handle.cancel()
                self.handle = None

        async def render_get(self, request):
            return aiocoap.Message(payload=f"n={self.count}{self.line_end}".encode(), content_format=ContentFormat.TEXT)

    class Created(resource.Resource):
        """POST creates a resource (and tells where)"""

        async def render_post(self, request):
            return aiocoap.Message(
                code=Code.CREATED, location_path=("items", "4 2"), location_query=("v=1", "a&b")
            )

    site = resource.Site()
    site.add_resource(["text"], Text(b"hello world\n"))
    site.add_resource(["nonl"], Text(b"no newline"))
    site.add_resource(["large"], Text(b"0123456789" * 500 + b"\n"))
    site.add_resource(["empty"], Text(b""))
    site.add_resource(["binary"], Text(bytes(range(256)) * 4, ContentFormat.OCTETSTREAM))
    site.add_resource(["json"], Text(b'{"a":[1,2],"b":"c"}', ContentFormat.JSON))
    try:
        import cbor2
    except ImportError:
        pass
    else:
        site.add_resource(["cbor"], Text(cbor2.dumps({"temp": 21.5, "list": [1, 2]}), ContentFormat.CBOR))
    site.add_resource(["echo"], Echo())
    site.add_resource(["forbidden"], Forbidden())
    site.add_resource(["slow"], Slow())
    site.add_resource(["garbled"], Garbled())
    counter = Counter()
    site.add_resource(["counter"], counter)
    unterminated = Counter(line_end="")
    site.add_resource(["counter-nonl"], unterminated)
    site.add_resource(["created"], Created())
    return site, (counter, unterminated)


class RunningServer:
    def __init__(self, context, base, counters):
        self.context = context
        self.base = base
        self.counter, self.unterminated = counters

    def uri(self, path: str) -> str:
        return self.base + path


@contextlib.asynccontextmanager
async def coap_server():
    from aiocoap import Context

    site, counters = _build_site()
    port = free_udp_port()
    context = await Context.create_server_context(site, bind=("127.0.0.1", port))
    try:
        yield RunningServer(context, f"coap://127.0.0.1:{port}", counters)
    finally:
        for counter in counters:
            counter.stop()
        await context.shutdown()


async def finish(process, timeout: float = 10) -> tuple[bytes, bytes]:
    """Wait for a client process started by a test to exit, and return its
    remaining output; fail with that output if it does not exit in time"""
    try:
        return await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        out, err = await process.communicate()
        pytest.fail(f"aiocoap-client did not exit: stdout {out!r}, stderr {err!r}")


class Result:
    def __init__(self, returncode: int, stdout: bytes, stderr: str):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self):
        return f"<Result {self.returncode} stdout={self.stdout!r} stderr={self.stderr!r}>"


async def run_client(*args, stdin: bytes = None, timeout: float = 15) -> Result:
    """Run aiocoap-client with stdout and stderr as pipes"""
    process = await asyncio.create_subprocess_exec(
        *CLIENT,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        process.kill()
        out, err = await process.communicate()
        pytest.fail(f"aiocoap-client {args} did not finish: {out!r} {err!r}")
    return Result(process.returncode, out, err.decode("utf-8", "replace"))


def _read_available(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        except OSError as e:
            if e.errno == errno.EIO:  # the other side is closed
                break
            raise
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def run_client_on_tty(*args, timeout: float = 15) -> Result:
    """Run aiocoap-client with stdout on a pseudo-terminal (stderr is a
    pipe); the terminal's CRLF line ends are turned back into LF"""
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    try:
        process = await asyncio.create_subprocess_exec(
            *CLIENT,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=slave,
            stderr=asyncio.subprocess.PIPE,
        )
        os.close(slave)
        slave = None
        output = []
        loop = asyncio.get_running_loop()
        loop.add_reader(master, lambda: output.append(_read_available(master)))
        try:
            err = await asyncio.wait_for(process.stderr.read(), timeout)
            await asyncio.wait_for(process.wait(), timeout)
        finally:
            loop.remove_reader(master)
        output.append(_read_available(master))
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    stdout = b"".join(output).replace(b"\r\n", b"\n")
    return Result(process.returncode, stdout, err.decode("utf-8", "replace"))


# --- requests against the server -------------------------------------------------


@pytest.mark.core
async def test_get_to_pipe_is_verbatim():
    async with coap_server() as server:
        result = await run_client(server.uri("/text"))
        assert (result.returncode, result.stdout, result.stderr) == (0, b"hello world\n", "")
        # Not on a terminal: no note about the missing newline
        result = await run_client(server.uri("/nonl"))
        assert (result.returncode, result.stdout, result.stderr) == (0, b"no newline", "")
        result = await run_client(server.uri("/binary"))
        assert (result.returncode, result.stdout, result.stderr) == (0, bytes(range(256)) * 4, "")
        result = await run_client(server.uri("/empty"))
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", "")


@pytest.mark.core
async def test_methods_types_and_options():
    async with coap_server() as server:
        echo = server.uri("/echo")

        async def ask(*args) -> dict:
            result = await run_client(*args, echo)
            assert result.returncode == 0, result
            assert result.stderr == ""
            return json.loads(result.stdout)

        seen = await ask()
        assert (seen["method"], seen["mtype"], seen["payload"]) == ("GET", "CON", "")
        assert seen["accept"] is None and seen["observe"] is None
        seen = await ask("--non")
        assert seen["mtype"] == "NON"
        seen = await ask("-m", "PUT", "--payload", "data")
        assert (seen["method"], seen["payload"]) == ("PUT", b"data".hex())
        seen = await ask("--method", "2")
        assert seen["method"] == "POST"
        seen = await ask("-m", "ipatch")
        assert seen["method"] == "iPATCH"
        seen = await ask("--accept", "application/cbor")
        assert seen["accept"] == 60
        seen = await ask("--accept", "110")
        assert seen["accept"] == 110
        seen = await ask("-m", "POST", "--content-format", "application/json", "--payload", '{"x": 1}')
        assert seen["content_format"] == 50
        assert bytes.fromhex(seen["payload"]) == b'{"x": 1}'


@pytest.mark.core
async def test_payload_from_file_and_stdin(tmp_path):
    data = bytes(range(256))
    (tmp_path / "payload.bin").write_bytes(data)
    async with coap_server() as server:
        result = await run_client("-m", "PUT", "--payload", f"@{tmp_path / 'payload.bin'}", server.uri("/echo"))
        assert result.returncode == 0, result
        assert bytes.fromhex(json.loads(result.stdout)["payload"]) == data
        result = await run_client("-m", "POST", "--payload", "@-", server.uri("/echo"), stdin=b"piped\n\x00in")
        assert result.returncode == 0, result
        assert bytes.fromhex(json.loads(result.stdout)["payload"]) == b"piped\n\x00in"


@pytest.mark.core
async def test_json_to_cbor_on_the_wire():
    cbor2 = pytest.importorskip("cbor2")
    async with coap_server() as server:
        result = await run_client(
            "-m", "POST", "--content-format", "application/cbor",
            "--payload", '{"temp": 21.5, "list": [1, 2]}', server.uri("/echo"),
        )
        assert result.returncode == 0, result
        seen = json.loads(result.stdout)
        assert seen["content_format"] == 60
        assert cbor2.loads(bytes.fromhex(seen["payload"])) == {"temp": 21.5, "list": [1, 2]}
        result = await run_client(
            "-m", "POST", "--content-format", "60", "--payload", "not json", server.uri("/echo")
        )
        assert result.returncode == 1
        assert "diagnostic notation" in _one_error_line(result.stderr)
        result = await run_client(
            "-m", "POST", "--content-format", "application/cbor-seq", "--payload", "1, h'00'", server.uri("/echo")
        )
        assert json.loads(result.stdout)["payload"] == "014100"


@pytest.mark.core
async def test_unsuccessful_responses_go_to_stderr():
    async with coap_server() as server:
        result = await run_client(server.uri("/nonexistent"))
        assert result.returncode == 1
        assert result.stdout == b""
        assert result.stderr.splitlines()[0] == "4.04 Not Found"
        result = await run_client(server.uri("/forbidden"))
        assert result.returncode == 1
        assert result.stdout == b""
        assert result.stderr == "4.03 Forbidden\nnot for you\n"
        # Diagnostic payloads can not send terminal control sequences
        result = await run_client(server.uri("/garbled"))
        assert result.stderr == "4.00 Bad Request\nbad\\x1b[2Jthing\\x0d\n"
        result = await run_client("-m", "DELETE", server.uri("/text"))
        assert result.returncode == 1
        assert result.stderr.splitlines()[0] == "4.05 Method Not Allowed"


@pytest.mark.core
async def test_pretty_print_on_a_terminal():
    pytest.importorskip("pygments")
    pytest.importorskip("cbor2")
    async with coap_server() as server:
        # Defaults on a terminal: pretty-printed and colored
        result = await run_client_on_tty(server.uri("/json"))
        assert result.returncode == 0, result
        assert b"\x1b[" in result.stdout
        plain = re.sub(rb"\x1b\[[0-9;]*m", b"", result.stdout)
        assert json.loads(plain) == {"a": [1, 2], "b": "c"}
        assert plain.count(b"\n") > 2, "JSON is indented"

        result = await run_client_on_tty("--no-color", server.uri("/cbor"))
        assert result.returncode == 0, result
        assert b"\x1b[" not in result.stdout
        assert b"21.5" in result.stdout and b'"temp"' in result.stdout

        result = await run_client_on_tty("--no-pretty-print", "--no-color", server.uri("/json"))
        assert result.stdout == b'{"a":[1,2],"b":"c"}\n'


@pytest.mark.core
async def test_pretty_print_forced_on_a_pipe():
    pytest.importorskip("pygments")
    pytest.importorskip("cbor2")
    async with coap_server() as server:
        result = await run_client("--pretty-print", server.uri("/cbor"))
        assert result.returncode == 0, result
        assert b"21.5" in result.stdout and b"\x1b[" not in result.stdout
        result = await run_client("--pretty-print", "--color", server.uri("/cbor"))
        assert b"\x1b[" in result.stdout
        result = await run_client("--color", server.uri("/nonexistent"))
        assert result.stderr.startswith("\x1b[31m4.04 Not Found\x1b[0m\n")


@pytest.mark.core
async def test_missing_newline_note_on_a_terminal():
    async with coap_server() as server:
        result = await run_client_on_tty("--no-color", server.uri("/nonl"))
        assert result.returncode == 0
        assert result.stdout == b"no newline\n"
        assert result.stderr == "(No newline at end of message)\n"
        result = await run_client_on_tty("--no-color", server.uri("/text"))
        assert (result.stdout, result.stderr) == (b"hello world\n", "")
        result = await run_client_on_tty("-q", "--no-color", server.uri("/nonl"))
        assert (result.stdout, result.stderr) == (b"no newline\n", "")


@pytest.mark.core
async def test_verbose_and_quiet():
    async with coap_server() as server:
        result = await run_client("-v", server.uri("/text"))
        assert result.returncode == 0
        assert result.stdout == b"hello world\n"
        assert all(line.startswith("INFO:coap.aiocoap-client: ") for line in result.stderr.splitlines())
        lines = [line.split(": ", 1)[1] for line in result.stderr.splitlines()]
        # Each message: code, peer, type (and MID, token once sent), every
        # option, the payload size and a hex dump
        assert lines[:3] == ["GET to " + server.base + " (CON)", "- Uri-Path (11): 'text'", "No payload"]
        assert re.fullmatch(r"2\.05 Content from coap://127\.0\.0\.1:\d+ \(ACK, MID \d+, token [0-9a-f]+\)", lines[3])
        assert lines[3].split()[3] == server.base
        assert lines[4:] == [
            "- Content-Format (12): 0 (text/plain;charset=utf-8)",
            "Payload: 12 bytes:",
            "  00000000  68 65 6c 6c 6f 20 77 6f  72 6c 64 0a              |hello world.|",
            "  0000000c",
        ]
        # Large payloads: the first VERBOSE_DUMP_LIMIT bytes are dumped
        result = await run_client("-v", server.uri("/large"))
        assert "Payload: 5001 bytes, the first 256 of them:" in result.stderr
        assert "  00000100" in result.stderr and "  00000110" not in result.stderr
        result = await run_client("-q", "-q", server.uri("/forbidden"))
        assert result.returncode == 1
        assert "4.03 Forbidden" in result.stderr


@pytest.mark.core
async def test_observe_prints_notifications_until_interrupted():
    async with coap_server() as server:
        for signum in (signal.SIGINT, signal.SIGTERM):
            process = await asyncio.create_subprocess_exec(
                *CLIENT, "--observe", server.uri("/counter"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                lines = [await asyncio.wait_for(process.stdout.readline(), 10) for _ in range(4)]
            finally:
                process.send_signal(signum)
            out, err = await finish(process)
            assert process.returncode == 0, (lines, out, err)
            assert err == b""
            numbers = [int(line.decode().strip().split("=")[1]) for line in lines]
            assert numbers == sorted(numbers) and len(set(numbers)) == 4
            # The server learns that the observation is gone (at the latest
            # when its next notification is rejected)
            for _ in range(100):
                if server.counter.observers == 0:
                    break
                await asyncio.sleep(0.02)
            assert server.counter.observers == 0


@pytest.mark.core
async def test_observe_exec(tmp_path):
    target = tmp_path / "notifications"
    async with coap_server() as server:
        process = await asyncio.create_subprocess_exec(
            *CLIENT, "--observe-exec", f"cat >> {target}; echo >> {target}", server.uri("/counter"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if target.exists() and target.read_text().count("n=") >= 3:
                    break
                await asyncio.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
        out, err = await finish(process)
        assert process.returncode == 0, err
        assert out == b"" and err == b""
        entries = [e for e in target.read_text().split("\n\n") if e.strip()]
        assert len(entries) >= 3
        assert all(re.fullmatch(r"n=\d+\n?", e) for e in entries), entries


@pytest.mark.core
async def test_observe_on_unobservable_resource():
    async with coap_server() as server:
        result = await run_client("--observe", server.uri("/text"))
        assert result.returncode == 1
        assert result.stdout == b"hello world\n"
        assert "observation" in _one_error_line(result.stderr)


@pytest.mark.core
async def test_interrupted_request_exits_nonzero():
    async with coap_server() as server:
        process = await asyncio.create_subprocess_exec(
            *CLIENT, "-v", server.uri("/slow"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        # Logged once the client handles signals itself
        while True:
            line = await asyncio.wait_for(process.stderr.readline(), 10)
            assert line, "the client ended before sending its request"
            if b"GET to coap://" in line:
                break
        process.send_signal(signal.SIGINT)
        out, err = await finish(process)
        assert process.returncode == 130
        assert out == b"" and b"Traceback" not in err


class FakeProxy(asyncio.DatagramProtocol):
    """Answers every confirmable request with a piggybacked response that
    tells the proxy options it got"""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        request = Message.decode(data)
        response = Message(
            mtype=ACK,
            mid=request.mid,
            token=request.token,
            code=Code.CONTENT,
            payload=(
                f"proxied scheme={request.opt.proxy_scheme} host={request.opt.uri_host} "
                f"port={request.opt.uri_port} path={'/'.join(request.opt.uri_path)} "
                f"query={'&'.join(request.opt.uri_query)} uri={request.opt.proxy_uri}"
            ).encode(),
        )
        self.transport.sendto(response.encode(), addr)


@pytest.mark.core
async def test_proxy():
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(FakeProxy, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        result = await run_client("--proxy", f"127.0.0.1:{port}", "coap://device.example:61616/sensor?x=1")
        assert result.returncode == 0, result
        assert result.stdout == b"proxied scheme=coap host=device.example port=61616 path=sensor query=x=1 uri=None"
        result = await run_client("--proxy", f"coap://127.0.0.1:{port}", "coap+tcp://[::1]/a/b")
        assert result.stdout == b"proxied scheme=coap+tcp host=[::1] port=None path=a/b query= uri=None"
        # A scheme the client does not support itself is fine for a proxy
        result = await run_client("--proxy", f"127.0.0.1:{port}", "coaps://device.example/")
        assert result.stdout == b"proxied scheme=coaps host=device.example port=None path= query= uri=None"
    finally:
        transport.close()


@pytest.mark.core
async def test_credentials_option(tmp_path):
    async with coap_server() as server:
        (tmp_path / "broken.json").write_text("[unclosed")
        result = await run_client("--credentials", str(tmp_path / "broken.json"), server.uri("/text"))
        assert result.returncode == 1
        assert "JSON" in _one_error_line(result.stderr)
        result = await run_client("--credentials", str(tmp_path / "absent.json"), server.uri("/text"))
        assert result.returncode == 1
        assert "absent.json" in _one_error_line(result.stderr)
        (tmp_path / "odd.json").write_text('{"coap://*": {"no-such-kind": {}}}')
        result = await run_client("--credentials", str(tmp_path / "odd.json"), server.uri("/text"))
        assert result.returncode == 1
        assert "odd.json" in _one_error_line(result.stderr)
        (tmp_path / "empty.json").write_text("{}")
        result = await run_client("--credentials", str(tmp_path / "empty.json"), server.uri("/text"))
        if result.returncode == 0:
            assert result.stdout == b"hello world\n"
        else:
            # Only acceptable failure: a build without credential support
            assert "credentials" in _one_error_line(result.stderr)


# --- failures ---------------------------------------------------------------


@pytest.mark.core
async def test_unknown_host():
    result = await run_client(QUICK, "coap://nonexistent.invalid/")
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "name resolution" in line and "nonexistent.invalid" in line


@pytest.mark.core
async def test_closed_port():
    port = free_udp_port()
    result = await run_client(QUICK, f"coap://127.0.0.1:{port}/")
    assert result.returncode == 1
    assert "network error" in _one_error_line(result.stderr)


@pytest.mark.core
async def test_timeout():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = await run_client(QUICK, f"coap://127.0.0.1:{port}/")
        assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "timed out" in _one_error_line(result.stderr)


@pytest.mark.core
async def test_failures_are_one_line_and_verbose_shows_traceback():
    result = await run_client(QUICK, "coap://[::1/")
    assert result.returncode == 1
    assert "invalid uri" in _one_error_line(result.stderr).lower()
    result = await run_client(QUICK, "no-scheme/path")
    assert "coap://no-scheme/path" in _one_error_line(result.stderr)
    result = await run_client("-m", "BREW", "coap://localhost/")
    assert result.returncode == 2
    assert "BREW" in _one_error_line(result.stderr)
    result = await run_client("-v", QUICK, "coap://nonexistent.invalid/")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert ERROR_LINE.match(result.stderr.splitlines()[-1])


@pytest.mark.core
async def test_unsupported_scheme():
    result = await run_client(QUICK, "http://127.0.0.1/")
    assert result.returncode == 1
    assert "http: is not a CoAP scheme" in _one_error_line(result.stderr)


# --- interactive mode --------------------------------------------------------


class Terminal:
    """The master side of a pseudo-terminal a child process runs on"""

    def __init__(self, master: int):
        self.master = master
        self.buffer = b""
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()
        os.set_blocking(master, False)
        self.loop.add_reader(master, self._readable)

    def _readable(self):
        data = _read_available(self.master)
        if not data:
            self.loop.remove_reader(self.master)
        self.buffer += data
        self.changed.set()

    def write(self, text: str):
        os.write(self.master, text.encode())

    async def expect(self, pattern: str, timeout: float = 10) -> re.Match:
        """Wait for output matching the regular expression; consume the
        output up to the end of the match"""
        regex = re.compile(pattern.encode(), re.DOTALL)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.buffer)
            if match:
                self.buffer = self.buffer[match.end():]
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{pattern!r} did not appear in {self.buffer!r}")
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def close(self):
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.master)
        os.close(self.master)


@pytest.mark.core
async def test_interactive_on_a_terminal():
    async with coap_server() as server:
        master, slave = pty.openpty()
        process = await asyncio.create_subprocess_exec(
            *CLIENT, "--interactive", stdin=slave, stdout=slave, stderr=slave
        )
        os.close(slave)
        terminal = Terminal(master)
        try:
            await terminal.expect("aiocoap> ")
            terminal.write(f"--no-color {server.uri('/text')}\n")
            await terminal.expect("hello world")
            await terminal.expect("aiocoap> ")

            terminal.write(f"--no-color {server.uri('/nonexistent')}\n")
            await terminal.expect("4.04 Not Found")
            await terminal.expect("aiocoap> ")

            terminal.write("-m FOO coap://x/\n")
            await terminal.expect("aiocoap-client: error: argument -m/--method")
            await terminal.expect("aiocoap> ")

            terminal.write("help\n")
            await terminal.expect("cancel.*--observe.*aiocoap> ")

            # An observation runs in the background while the prompt is back
            terminal.write(f"--no-color --observe {server.uri('/counter')}\n")
            await terminal.expect("n=")
            await terminal.expect("aiocoap> ")
            await terminal.expect("n=.*n=")
            assert server.counter.observers == 1
            terminal.write(f"--no-color {server.uri('/text')}\n")
            await terminal.expect("hello world")
            terminal.write("cancel\n")
            for _ in range(100):
                if server.counter.observers == 0:
                    break
                await asyncio.sleep(0.02)
            assert server.counter.observers == 0

            # A waiting request can be interrupted without leaving
            terminal.write(f"{server.uri('/slow')}\n")
            await asyncio.sleep(0.5)
            process.send_signal(signal.SIGINT)
            await terminal.expect(r"\(interrupted\).*aiocoap> ")

            terminal.write("exit\n")
            assert await asyncio.wait_for(process.wait(), 10) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            terminal.close()


@pytest.mark.core
async def test_interactive_from_a_pipe():
    async with coap_server() as server:
        commands = f"help\n\n# a comment\n{server.uri('/text')}\n'unbalanced\n"
        result = await run_client("--interactive", stdin=commands.encode())
        assert result.returncode == 0, result
        assert b"exit (or Ctrl-D)" in result.stdout
        assert b"hello world\n" in result.stdout
        assert "cannot split the line" in result.stderr


@pytest.mark.core
async def test_interactive_sigterm_at_prompt():
    master, slave = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        *CLIENT, "--interactive", stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    terminal = Terminal(master)
    try:
        await terminal.expect("aiocoap> ")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert b"Traceback" not in terminal.buffer
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        terminal.close()


# --- server contexts from arguments ---------------------------------------------


@pytest.mark.core
async def test_server_context_from_arguments():
    from aiocoap import GET, Context

    site, counters = _build_site()
    port = free_udp_port()
    options = _server_parser().parse_args(["--bind", f"127.0.0.1:{port}"])
    server = await common.server_context_from_arguments(site, options)
    client_context = await Context.create_client_context()
    try:
        response = await client_context.request(
            Message(code=GET, uri=f"coap://127.0.0.1:{port}/text")
        ).response
        assert response.payload == b"hello world\n"
    finally:
        await client_context.shutdown()
        await server.shutdown()
        for counter in counters:
            counter.stop()


@pytest.mark.core
async def test_server_context_errors_are_one_line(tmp_path, capsys):
    site, _ = _build_site()
    # An address this host does not have (TEST-NET-1)
    options = _server_parser().parse_args(["--bind", "192.0.2.1:5683"])
    with pytest.raises(SystemExit) as excinfo:
        await common.server_context_from_arguments(site, options)
    assert excinfo.value.code == 1
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "cannot start the server" in line and "192.0.2.1" in line

    options = _server_parser().parse_args(
        ["--bind", "127.0.0.1:0", "--tls-server-certificate", str(tmp_path / "absent.pem")]
    )
    with pytest.raises(SystemExit):
        await common.server_context_from_arguments(site, options)
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "absent.pem" in line

    options = _server_parser().parse_args(["--bind", "127.0.0.1:0", "--tls-server-key", "k.pem"])
    with pytest.raises(SystemExit):
        await common.server_context_from_arguments(site, options)
    assert "--tls-server-certificate" in capsys.readouterr().err

    (tmp_path / "bad.json").write_text('{"coap://*": {"no-such-kind": {}}}')
    options = _server_parser(credentials=True).parse_args(
        ["--bind", f"127.0.0.1:{free_udp_port()}", "--server-credentials", str(tmp_path / "bad.json")]
    )
    with pytest.raises(SystemExit):
        await common.server_context_from_arguments(site, options)
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "bad.json" in line


@pytest.mark.core
async def test_server_credentials_are_loaded(tmp_path):
    site, _ = _build_site()
    (tmp_path / "creds.json").write_text('{"coap://client/*": {"oscore": {"contextfile": "ctx/"}}}')
    options = _server_parser(credentials=True).parse_args(
        ["--bind", f"127.0.0.1:{free_udp_port()}", "--server-credentials", str(tmp_path / "creds.json")]
    )
    context = await common.server_context_from_arguments(site, options)
    try:
        entry = context.server_credentials["coap://client/*"]
        # Relative to the credentials file, not to the working directory
        assert os.path.normpath(entry.contextfile) == str(tmp_path / "ctx")
    finally:
        await context.shutdown()


def _self_signed(tmp_path):
    """A certificate and key for localhost, as PEM files"""
    import datetime

    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def test_tls_server_context(tmp_path, capsys):
    import ssl

    cert, key = _self_signed(tmp_path)
    context = common._ssl_context_from(cert, key)
    assert isinstance(context, ssl.SSLContext)
    assert common._ssl_context_from(None, None) is None
    # A key file that does not hold a usable key
    (tmp_path / "other.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SystemExit):
        common._ssl_context_from(cert, str(tmp_path / "other.pem"))
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "cert.pem" in line


# --- without the optional modules ------------------------------------------------


async def run_client_without(modules, *args) -> Result:
    """Run aiocoap-client in an interpreter where the given modules can not
    be imported"""
    code = (
        "import sys\n"
        f"for name in {list(modules)!r}:\n"
        "    sys.modules[name] = None\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "from aiocoap.cli.client import sync_main\n"
        "sync_main()\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await finish(process)
    return Result(process.returncode, out, err.decode())


@pytest.mark.core
async def test_missing_prettyprint_modules():
    result = await run_client_without(["pygments", "cbor2"], "--pretty-print", "--color", "coap://127.0.0.1:9/")
    assert result.returncode == 1
    assert "aiocoap[prettyprint]" in _one_error_line(result.stderr)
    async with coap_server() as server:
        # Pretty printing and diagnostic notation payloads need no module
        result = await run_client_without(["pygments", "cbor2"], "--pretty-print", server.uri("/json"))
        assert (result.returncode, result.stdout, result.stderr) == (
            0, b'{\n    "a": [\n        1,\n        2\n    ],\n    "b": "c"\n}', ""
        )
        result = await run_client_without(
            ["cbor2"], "-m", "POST", "--content-format", "application/cbor", "--payload", "{1: 2}", server.uri("/echo")
        )
        assert json.loads(result.stdout)["payload"] == "a10102"
        # Without the modules, output is not colored by default, and that
        # is no error
        result = await run_client_without(["pygments", "cbor2"], server.uri("/json"))
        assert (result.returncode, result.stdout, result.stderr) == (0, b'{"a":[1,2],"b":"c"}', "")


@pytest.mark.core
async def test_blockwise_progress_on_a_terminal():
    """With stderr on a terminal, a blockwise download shows its progress
    there; the payload on stdout is unaffected."""
    async with coap_server() as server:
        master, slave = pty.openpty()
        os.set_blocking(master, False)
        try:
            process = await asyncio.create_subprocess_exec(
                *CLIENT, "--no-pretty-print", server.uri("/large"),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=slave,
            )
            os.close(slave)
            slave = None
            terminal = []
            loop = asyncio.get_running_loop()
            loop.add_reader(master, lambda: terminal.append(_read_available(master)))
            try:
                stdout = await asyncio.wait_for(process.stdout.read(), 15)
                await asyncio.wait_for(process.wait(), 15)
            finally:
                loop.remove_reader(master)
            terminal.append(_read_available(master))
        finally:
            os.close(master)
            if slave is not None:
                os.close(slave)
        assert process.returncode == 0
        assert stdout == b"0123456789" * 500 + b"\n"
        shown = b"".join(terminal)
        assert b"receiving: 1024 bytes" in shown or b"receiving: 1024 of" in shown, shown
        assert shown.endswith(b"\r\x1b[K"), "the progress line is cleared at the end"


# --- aiocoap 0.4.x behaviour ---------------------------------------------------------


def test_help_describes_every_option_as_the_manual():
    """Every option of the 0.4b2 manual (with its metavariable) and the 0.4.x
    additions is there and described"""
    parser = client.build_parser()
    text = " ".join(parser.format_help().split())
    for usage in [
        "--non", "-m METHOD, --method METHOD", "--observe", "--observe-exec CMD", "--accept MIME",
        "--proxy HOST[:PORT]", "--payload X", "--content-format MIME", "-v, --verbose", "-q, --quiet",
        "--interactive", "--credentials CREDENTIALS", "--version", "--color, --no-color",
        "--pretty-print, --no-pretty-print", "--no-set-hostname", "--payload-initial-szx SZX",
    ]:
        assert usage in text, usage
    assert "CoAP address to fetch" in text
    assert text.count("aiocoap-client is a simple command-line tool for interacting with CoAP servers") == 1
    for action in parser._actions:
        if action.help != argparse.SUPPRESS:
            assert action.help and len(action.help) > 10, action.option_strings
    for phrase in ["non-confirmable (NON)", 'default: "GET"', "standard input", "CBOR diagnostic notation",
                   "Uri-Host", "retransmissions", "terminal"]:
        assert phrase in text, phrase


@pytest.mark.core
async def test_location_of_a_created_resource():
    async with coap_server() as server:
        result = await run_client("-m", "POST", server.uri("/created"))
        assert (result.returncode, result.stdout) == (0, b"")
        assert result.stderr == "Location options indicate new resource: /items/4%202?v=1&a%26b\n"
        result = await run_client("-q", "-m", "POST", server.uri("/created"))
        assert (result.returncode, result.stderr) == (0, "")
        result = await run_client_on_tty("--no-color", "-m", "POST", server.uri("/created"))
        assert result.stderr.splitlines() == [
            "Location options indicate new resource: /items/4%202?v=1&a%26b", "(2.01 Created, no payload)"
        ]


@pytest.mark.core
async def test_hostname_and_initial_block_size_on_the_wire():
    async with coap_server() as server:
        url = server.uri("/echo").replace("127.0.0.1", "localhost")
        try:
            socket.getaddrinfo("localhost", 5683, socket.AF_INET)
        except socket.gaierror:
            pytest.skip("localhost does not resolve")
        result = await run_client(url)
        assert json.loads(result.stdout)["uri_host"] == "localhost"
        result = await run_client("--no-set-hostname", url)
        assert json.loads(result.stdout)["uri_host"] is None
        # A 100 byte payload in 16 byte blocks still arrives whole
        payload = "".join(chr(ord("a") + i % 26) for i in range(100))
        result = await run_client("-v", "-m", "PUT", "--payload-initial-szx", "0", "--payload", payload, server.uri("/echo"))
        assert bytes.fromhex(json.loads(result.stdout)["payload"]).decode() == payload
        assert "- Block1 (27): " in result.stderr


class DropFirst(asyncio.DatagramProtocol):
    """A server that ignores the first transmission of every request and
    answers the retransmission with 2.05 and "late" """

    def __init__(self):
        self.seen = set()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        request = Message.decode(data)
        if request.mid not in self.seen:
            self.seen.add(request.mid)
            return
        response = Message(mtype=ACK, mid=request.mid, token=request.token, code=Code.CONTENT, payload=b"late")
        self.transport.sendto(response.encode(), addr)


@pytest.mark.core
async def test_verbose_shows_retransmissions():
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(DropFirst, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        url = f"coap://127.0.0.1:{port}/x"
        result = await run_client("-v", "--transport-tuning=ACK_TIMEOUT=0.1,MAX_RETRANSMIT=2", url)
        assert (result.returncode, result.stdout) == (0, b"late"), result
        retransmissions = [line for line in result.stderr.splitlines() if "Retransmitting" in line]
        assert len(retransmissions) == 1 and "(transmission 2)" in retransmissions[0], result.stderr
        # Other debug output of the library is not shown at -v
        assert not [line for line in result.stderr.splitlines() if line.startswith("DEBUG:") and "Retransmitting" not in line]
        result = await run_client("--transport-tuning=ACK_TIMEOUT=0.1,MAX_RETRANSMIT=2", url)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"late", "")
    finally:
        transport.close()


@pytest.mark.core
async def test_observe_output_a_script_can_split():
    async with coap_server() as server:
        process = await asyncio.create_subprocess_exec(
            *CLIENT, "--observe", server.uri("/counter-nonl"),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            lines = [await asyncio.wait_for(process.stdout.readline(), 10) for _ in range(4)]
        finally:
            process.send_signal(signal.SIGINT)
        out, err = await finish(process)
        assert process.returncode == 0 and err == b""
        for line in lines:
            assert re.fullmatch(rb"n=\d+\n", line), lines
        # On a terminal: every notification on a line of its own, and the
        # remark about the missing newline once
        master, slave = pty.openpty()
        os.set_blocking(master, False)
        process = await asyncio.create_subprocess_exec(
            *CLIENT, "--observe", "--no-color", server.uri("/counter-nonl"),
            stdin=asyncio.subprocess.DEVNULL, stdout=slave, stderr=asyncio.subprocess.PIPE,
        )
        os.close(slave)
        shown = b""
        try:
            for _ in range(200):
                await asyncio.sleep(0.02)
                shown += _read_available(master)
                if shown.count(b"\n") >= 4:
                    break
        finally:
            process.send_signal(signal.SIGINT)
            _, err = await finish(process)
            os.close(master)
        assert re.fullmatch(rb"(n=\d+\r\n){4,}", shown), shown
        assert err.decode() == "(No newline at end of message)\n"


@pytest.mark.parametrize("feature,extra,scheme", [("dtls", "tinydtls", "coaps"), ("ws", "ws", "coap+ws"),
                                                  ("ws", "ws", "coaps+ws")])
def test_schemes_this_version_lacks(feature, extra, scheme, monkeypatch, capsys):
    """A transport missing from this version is reported as exactly that; a
    missing third-party module names the extra; nothing missing, no error"""
    from aiocoap import defaults

    functions = dict(defaults.missing_module_functions)
    monkeypatch.setattr(defaults, "missing_module_functions", functions)
    url = f"{scheme}://127.0.0.1/"

    functions[feature] = lambda: [f"aiocoap.transports.{feature}"]
    with pytest.raises(SystemExit):
        _request(url)
    line = _one_error_line(capsys.readouterr().err)
    assert f"{scheme}:// " in line and "not supported by this version of aiocoap" in line
    assert "install" not in line

    functions[feature] = lambda: ["SomeModule"]
    with pytest.raises(SystemExit):
        _request(url)
    line = _one_error_line(capsys.readouterr().err)
    assert "SomeModule" in line and f"aiocoap[{extra}]" in line

    functions[feature] = lambda: []
    assert _request(url).remote == UndecidedRemote(scheme, "127.0.0.1")


def test_scheme_support_follows_defaults():
    """What this build reports, through the functions of aiocoap.defaults"""
    from aiocoap import defaults

    for scheme, function in [("coaps", defaults.dtls_missing_modules), ("coap+ws", defaults.ws_missing_modules)]:
        message = _client_request.unsupported_scheme(scheme)
        missing = function()
        assert (message is None) == (not missing)
        if any(m.startswith("aiocoap.") for m in missing):
            assert "not supported by this version" in message


def _network_error(errno_value):
    cause = OSError(errno_value, os.strerror(errno_value))
    e = error.NetworkError(str(cause))
    e.__cause__ = cause
    return e


@pytest.mark.parametrize(
    "url,errno_value,expected",
    [
        ("coap://[2001:db8::1]/", errno.ENETUNREACH, "lack of IPv6 connectivity"),
        ("coap://192.0.2.1/", errno.ENETUNREACH, "lack of IPv4 connectivity"),
        ("coap://example.invalid/", errno.ENETUNREACH, "lack of connectivity"),
        ("coap://127.0.0.1:9/", errno.ECONNREFUSED, "port is not open"),
        ("coap://192.0.2.1/", errno.EHOSTUNREACH, "offline or behind a firewall"),
        ("coap://192.0.2.255/", errno.EACCES, "broadcast"),
        ("coap://192.0.2.1/", errno.EIO, None),
    ],
)
def test_network_hints(url, errno_value, expected):
    request = Message(uri=url)
    hint = _client_request.network_hint(_network_error(errno_value), request)
    if expected is None:
        assert hint is None
    else:
        assert expected in hint
    assert _client_request.network_hint(error.RequestTimedOut(), request) is None


class _FailingContext:
    """A client context whose requests fail as a transport would (nothing
    is sent anywhere)"""

    def __init__(self, exception):
        self.exception = exception
        self.client_credentials = None

    def request(self, message):
        exception = self.exception

        class Failed:
            response = asyncio.get_running_loop().create_future()
            observation = None

        Failed.response.set_exception(exception)
        return Failed()


@pytest.mark.core
async def test_unreachable_ipv6_host_in_process(capsys):
    status = await client.single_request(["coap://[2001:db8::1]/"], _FailingContext(_network_error(errno.ENETUNREACH)))
    assert status == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "network error" in line and "lack of IPv6 connectivity" in line


@pytest.mark.core
async def test_in_process_against_a_local_server(capsys):
    """single_request on an application's context, output on sys.stdout /
    sys.stderr"""
    from aiocoap import Context

    async with coap_server() as server:
        context = await Context.create_client_context()
        try:
            assert await client.single_request([server.uri("/text")], context) == 0
            assert capsys.readouterr() == ("hello world\n", "")
            assert await client.single_request(["--pretty-print", server.uri("/json")], context) == 0
            assert capsys.readouterr().out == '{\n    "a": [\n        1,\n        2\n    ],\n    "b": "c"\n}'
            assert await client.single_request(["-m", "POST", server.uri("/created")], context) == 0
            assert "Location options indicate new resource: /items/4%202" in capsys.readouterr().err
            assert await client.single_request([server.uri("/nonexistent")], context) == 1
            assert capsys.readouterr().err.startswith("4.04 Not Found")
            assert await client.single_request(["coap:/localhost/x"], context) == 1
            assert "did you mean coap://localhost/x?" in _one_error_line(capsys.readouterr().err)
            assert await client.single_request(["--payload-initial-szx", "9", "coap://h/"], context) == 2
            _one_error_line(capsys.readouterr().err)
        finally:
            await context.shutdown()


@pytest.mark.core
@pytest.mark.parametrize(
    "args",
    [
        ["--payload-initial-szx", "8", "coap://h/"],
        ["--content-format", "application/cbor", "--payload", "{1:", "coap://h/"],
        ["--proxy", "http://proxy/", "coap://h/"],
        ["coap:/h/x"],
        ["urn:x"],
        ["-m", "PUT", "--payload", "@/nonexistent/file", "coap://h/"],
        ["--accept", "text/no-such-type", "coap://h/"],
    ],
)
async def test_cli_mistakes_are_one_line(args):
    result = await run_client(*args)
    assert result.returncode in (1, 2)
    _one_error_line(result.stderr)
