"""The fuzz targets: one function per parser of untrusted input.

Each target takes one ``bytes`` input, runs the parser on it (for stream
parsers also cut into pieces) and asserts the parser's contract: it returns
a result or raises one of its documented error types, nothing else, and
what it returns is consistent (re-encodes, round-trips, does not depend on
how the input was cut). A failed assertion or any other exception is a bug.

The same functions are driven by the hypothesis tests (``test_fuzz_*.py``,
``test_codec_fuzz.py``, ``test_oscore_fuzz.py``), which add structured
inputs, and by ``tools/fuzz-long`` (atheris, coverage guided, or
hypothesis) for the long runs before a release. Targets derive any choice
they need (a size limit, where to cut) from the input bytes, so that a
failing input reproduces by itself: ``TARGETS[name](data)``.

:data:`TARGETS` maps the target names to the functions; :func:`seeds`
gives a few valid inputs per target for a fuzzer to start from.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import io
import json
import os
import random
import shutil
import tempfile
from typing import Callable, Optional

from aiocoap import error
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.options import Options
from aiocoap.transports import rfc8323common as rfc8323
from aiocoap.transports import wsframes
from aiocoap.util import linkformat

__all__ = ["TARGETS", "seeds", "decode_datagram", "split_argv", "check_client_argv", "check_oscore_context_files"]

_OPTION_VIEWS = tuple(
    name
    for name, value in vars(Options).items()
    if not name.startswith("_")
    and not inspect.isfunction(value)
    and not isinstance(value, (classmethod, staticmethod, property))
)


def _fields(message: Message):
    return (
        message.mtype,
        message.code,
        message.mid,
        message.token,
        [(int(o.number), type(o), o.value) for o in message.opt.option_list()],
        message.payload,
    )


# --- UDP messages (RFC 7252 §3) ------------------------------------------------


def decode_datagram(raw: bytes) -> Optional[Message]:
    """Decode ``raw`` as a CoAP datagram: a Message or None (for
    error.UnparsableMessage, the documented error). A message that decoded
    has sane fields, answers every typed option view, and is a fixpoint of
    encode/decode (the codec normalizes once, e.g. drops invalid options and
    leading zeros of uints, and is stable from then on)."""
    try:
        message = Message.decode(raw)
    except error.UnparsableMessage:
        return None
    assert isinstance(message, Message)
    assert isinstance(message.mtype, Type)
    assert isinstance(message.code, Code)
    assert 0 <= message.mid <= 0xFFFF
    assert len(message.token) <= 8
    if message.code == Code.EMPTY:
        assert message.token == b"" and message.payload == b"" and not message.opt.option_list()
    for view in _OPTION_VIEWS:
        getattr(message.opt, view)
    encoded = message.encode()
    again = Message.decode(encoded)
    assert _fields(again) == _fields(message)
    assert again.encode() == encoded
    return message


def udp_message(data: bytes) -> None:
    decode_datagram(data)


# --- RFC 8323 frames, stream parser and signaling ------------------------------

_STREAM_LIMITS = (16, 64, 1152, 70000)


def _parse_stream(stream: bytes, cuts: list, limit: int):
    """(frames of the messages, diagnostic or None, bytes buffered, signals read) from feeding
    ``stream`` cut at ``cuts``; only FramingError may escape the parser, and
    only BadSignalingOption the signaling readers."""
    parser = rfc8323.StreamParser(max_message_size=limit)
    messages: list = []
    diagnostic = None
    start = 0
    for end in cuts + [len(stream)]:
        if end <= start:
            continue
        try:
            messages.extend(parser.feed(stream[start:end]))
        except rfc8323.FramingError as e:
            messages.extend(e.messages)
            diagnostic = e.diagnostic
            assert parser.error is not None
            assert diagnostic and diagnostic.isascii()
            try:
                parser.feed(b"\x00")
            except rfc8323.FramingError:
                pass
            else:
                raise AssertionError("a broken stream parser accepted more input")
            break
        start = end
    buffered = parser.buffered
    signals = []
    csm = None
    for message in messages:
        signals.append(_read_signal(message, csm))
        if isinstance(signals[-1], rfc8323.CSM):
            csm = signals[-1]
    return [rfc8323.encode_message(m) for m in messages], diagnostic, buffered, signals


def _read_signal(message: Message, csm):
    """parse_signaling on a 7.xx message (else None): the dataclass, None,
    or the string of the documented error (BadSignalingOption), after
    checking that an Abort can be built from that error."""
    if message.code is None or message.code.class_ != 7:
        return None
    try:
        signal = rfc8323.parse_signaling(message, csm)
    except rfc8323.BadSignalingOption as e:
        abort = rfc8323.Abort.from_error(e)
        assert abort.diagnostic
        rfc8323.encode_message(abort.to_message())
        return f"{type(e).__name__} {e.number}"
    if signal is not None:
        # what was read can be written again
        rfc8323.encode_message(signal.to_message())
    return signal


def rfc8323_stream(data: bytes) -> None:
    """The bytes of a connection (after two control bytes choosing the
    receiver's Max-Message-Size and where to cut): whole, one byte at a
    time and in random pieces, the parser yields the same messages and the
    same error."""
    if len(data) < 2:
        return
    limit = _STREAM_LIMITS[data[0] % len(_STREAM_LIMITS)]
    rng = random.Random(data[1])
    stream = data[2:]
    whole = _parse_stream(stream, [], limit)
    bytewise = _parse_stream(stream, list(range(1, len(stream))), limit)
    pieces = _parse_stream(stream, sorted(rng.sample(range(len(stream) + 1), min(len(stream), 6))), limit)
    assert whole == bytewise == pieces
    frames, diagnostic, _, _ = whole
    if diagnostic is None and len(frames) == 1 and frames[0] == stream:
        # a stream of exactly one frame is also a frame to decode_message
        assert rfc8323.encode_message(rfc8323.decode_message(stream)) == stream


# --- WebSocket frames ------------------------------------------------------------------

_WS_LIMITS = (0, 16, 300, 70000)


def _parse_ws(stream: bytes, cuts: list, masked: bool, limit: int):
    """(events, failure as (type, close code) or None, bytes buffered) from
    feeding ``stream`` cut at ``cuts``; the decoder never raises."""
    decoder = wsframes.FrameDecoder(masked=masked, max_message_size=limit)
    events: list = []
    start = 0
    for end in cuts + [len(stream)]:
        if end <= start:
            continue
        events.extend(decoder.feed(stream[start:end]))
        start = end
        if decoder.done:
            assert decoder.feed(b"\x82\x00") == []
            break
    for event in events:
        if isinstance(event, bytes):
            assert len(event) <= limit
        elif isinstance(event, (wsframes.Ping, wsframes.Pong)):
            assert len(event.payload) <= wsframes.MAX_CONTROL_PAYLOAD
        else:
            assert isinstance(event, wsframes.Close)
            assert event is events[-1] and decoder.close_received is event
    failure = decoder.failure
    assert decoder.buffered <= limit + wsframes.MAX_HEADER + wsframes.MAX_CONTROL_PAYLOAD
    if failure is not None:
        assert isinstance(failure, wsframes.FrameError) and str(failure).isascii()
        # what we would send about it is a valid Close frame
        payload = wsframes.close_payload(failure.close_code, str(failure))
        assert len(payload) <= wsframes.MAX_CONTROL_PAYLOAD
        return events, (type(failure), failure.close_code), 0
    return events, None, decoder.buffered


def websocket_frames(data: bytes) -> None:
    """The bytes a WebSocket peer sends after the upgrade (after two control
    bytes: the side, the message size limit and where to cut): whole, one
    byte at a time and in random pieces, the decoder returns the same
    events and fails the same way; what it returns respects the limits, and
    binary messages re-encode (masked or not) to frames that decode to
    them again."""
    if len(data) < 2:
        return
    masked = bool(data[0] & 0x80)
    limit = _WS_LIMITS[data[0] % len(_WS_LIMITS)]
    rng = random.Random(data[1])
    stream = data[2:]
    whole = _parse_ws(stream, [], masked, limit)
    bytewise = _parse_ws(stream, list(range(1, len(stream))), masked, limit)
    pieces = _parse_ws(stream, sorted(rng.sample(range(len(stream) + 1), min(len(stream), 6))), masked, limit)
    assert whole == bytewise == pieces
    messages = [event for event in whole[0] if isinstance(event, bytes)]
    encoder = wsframes.FrameEncoder(wsframes.MaskKeys(rng.randbytes) if masked else None)
    again = wsframes.FrameDecoder(masked=masked, max_message_size=limit)
    assert again.feed(b"".join(encoder.binary(m) for m in messages)) == messages
    assert again.failure is None and again.buffered == 0


def rfc8323_frame(data: bytes) -> None:
    """One frame: decode_message raises only UnparsableMessage; what it
    decodes is also exactly one message to the stream parser."""
    try:
        message = rfc8323.decode_message(data)
    except error.UnparsableMessage:
        return
    assert message.mtype is None and message.mid is None
    streamed = rfc8323.StreamParser(max_message_size=len(data)).feed(data)
    assert len(streamed) == 1
    assert rfc8323.encode_message(streamed[0]) == rfc8323.encode_message(message)


_SIGNAL_CODES = (Code.CSM, Code.PING, Code.PONG, Code.RELEASE, Code.ABORT, Code(0xE6))


def rfc8323_signaling(data: bytes) -> None:
    """Options and payload of a signaling message (the first byte picks the
    7.xx code and the token length): the readers accept it or raise
    BadSignalingOption (BadCSMOption for a CSM), on top of any previous
    CSM."""
    if not data:
        return
    code = _SIGNAL_CODES[data[0] % len(_SIGNAL_CODES)]
    tkl = (data[0] >> 4) % 9
    token, body = data[1 : 1 + tkl], data[1 + tkl :]
    message = Message(code=code, _token=token)
    try:
        message.payload = message.opt.decode(body)
    except error.UnparsableMessage:
        return
    for previous in (None, rfc8323.CSM(max_message_size=70000, block_wise_transfer=True)):
        signal = _read_signal(message, previous)
        if isinstance(signal, rfc8323.CSM):
            assert signal.max_message_size >= 0
            assert 0 <= signal.maximum_block_size_exp <= 7
            assert signal.maximum_payload_size > 0
            if previous is not None:
                assert signal.block_wise_transfer
        if isinstance(signal, rfc8323.Release) and signal.hold_off is not None:
            assert signal.hold_off >= 0


# --- link format (RFC 6690) ------------------------------------------------------


def _parse_linkformat(document):
    try:
        return linkformat.parse(document)
    except ValueError as e:
        assert str(e)
        return None


def link_format(data: bytes) -> None:
    """A link-format document as bytes: parses (to the same result as the
    decoded text) or raises ValueError; what parses serializes to a document
    that parses to the same links."""
    parsed = _parse_linkformat(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        assert parsed is None
        return
    assert _parse_linkformat(text) == parsed
    if parsed is not None:
        assert linkformat.parse(str(parsed)) == parsed
        for link in parsed:
            link.get_attributes("rt")
            link.get("ct")


# --- OSCORE (RFC 8613) -------------------------------------------------------------


class _Oscore:
    """Security contexts made on first use (the oscore extra is optional)."""

    _pair = None

    @classmethod
    def pair(cls):
        if cls._pair is None:
            from aiocoap import oscore

            client = oscore.SecurityContext(sender_id=b"\x01", recipient_id=b"", master_secret=b"fuzz")
            server = oscore.SecurityContext(sender_id=b"", recipient_id=b"\x01", master_secret=b"fuzz")
            cls._pair = client, server
        return cls._pair


def _oscore_allowed():
    from aiocoap import oscore

    return (oscore.ProtectionInvalid, oscore.NotAProtectedMessage)


def oscore_option(data: bytes) -> None:
    """An OSCORE option value: decodes to its one canonical encoding or
    raises DecodeError."""
    from aiocoap import oscore
    from aiocoap._oscore import encoding

    try:
        parsed = encoding.OscoreOptionValue.decode(data)
    except oscore.DecodeError:
        return
    assert parsed.encode() == data


def oscore_message(data: bytes) -> None:
    """A datagram verified as a protected request (and as a response to a
    request of ours): only ProtectionInvalid (and its subclasses) or
    NotAProtectedMessage."""
    from aiocoap import oscore

    message = decode_datagram(data)
    if message is None:
        return
    allowed = _oscore_allowed()
    client, server = _Oscore.pair()
    for check in (
        lambda: oscore.verify_start(message),
        lambda: server.unprotect(message),
        lambda: client.unprotect(message, client.protect(Message(code=Code.GET))[1]),
    ):
        try:
            check()
        except allowed:
            pass


def oscore_plaintext(data: bytes) -> None:
    """Bytes that decrypt correctly (authentic) but are an arbitrary
    plaintext, in a request and in a response (first byte picks which): the
    inner message parses or unprotect raises ProtectionInvalid."""
    if not data:
        return
    from aiocoap._oscore import encoding

    client, server = _Oscore.pair()
    plaintext = data[1:]
    try:
        if data[0] & 1:
            outer, client_rid = client.protect(Message(code=Code.GET))
            _, rid = server.unprotect(outer)
            aad = encoding.build_aad(server.algorithm.value, rid.kid, rid.partial_iv)
            sealed = server.algorithm.encrypt(plaintext, aad, server.sender_key, rid.nonce)
            plain, _ = client.unprotect(Message(code=Code.CHANGED, payload=sealed, oscore=b""), client_rid)
            assert plain.code is not None and plain.code.is_response()
        else:
            piv = encoding.encode_partial_iv(client.new_sequence_number())
            nonce = encoding.build_nonce(client.common_iv, client.sender_id, piv)
            aad = encoding.build_aad(client.algorithm.value, client.sender_id, piv)
            sealed = client.algorithm.encrypt(plaintext, aad, client.sender_key, nonce)
            option = encoding.OscoreOptionValue(partial_iv=piv, kid=client.sender_id).encode()
            plain, _ = server.unprotect(Message(code=Code.POST, payload=sealed, oscore=option))
            assert plain.code is not None and plain.code.is_request()
    except _oscore_allowed():
        return


def _split(data: bytes, parts: int) -> list:
    pieces = data.split(b"\x00", parts - 1)
    return pieces + [b""] * (parts - len(pieces))


class _Scratch:
    """One temporary directory per process for targets that need files."""

    _path: Optional[str] = None

    @classmethod
    def path(cls) -> str:
        given = os.environ.get("AIOCOAP_FUZZ_SCRATCH")
        if given:
            # a fuzzer's child process that may end without atexit; the
            # parent removes the directory
            os.makedirs(given, exist_ok=True)
            return given
        if cls._path is None or not os.path.isdir(cls._path):
            # in memory where there is such a file system: these targets
            # create and fsync files for every input
            memory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
            cls._path = tempfile.mkdtemp(prefix="aiocoap-fuzz-", dir=memory)
            atexit.register(shutil.rmtree, cls._path, True)
        return cls._path

    @classmethod
    def write(cls, name: str, content: Optional[bytes]) -> str:
        path = os.path.join(cls.path(), name)
        if content is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            with open(path, "wb") as f:
                f.write(content)
        return path


def oscore_context_files(data: bytes) -> None:
    """The files of a security context directory (settings.json, then
    sequence.json, separated by a zero byte), see
    :func:`check_oscore_context_files`."""
    check_oscore_context_files(*_split(data, 2))


def check_oscore_context_files(settings: bytes, sequence: bytes) -> None:
    """A security context directory with these settings.json and
    sequence.json (an empty one is a missing file):
    FilesystemSecurityContext loads or raises its LoadError."""
    from aiocoap import oscore

    directory = os.path.join(_Scratch.path(), "context")
    os.makedirs(directory, exist_ok=True)
    for name, content in (("settings.json", settings), ("sequence.json", sequence), ("secrets.json", b"")):
        path = os.path.join(directory, name)
        if content:
            with open(path, "wb") as f:
                f.write(content)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    try:
        context = oscore.FilesystemSecurityContext(directory)
    except oscore.FilesystemSecurityContext.LoadError as e:
        assert str(e)
        return
    try:
        assert context.sender_key and context.recipient_key
    finally:
        context.shutdown()


# --- credentials (JSON) --------------------------------------------------------------


def credentials_json(data: bytes) -> None:
    """A credentials file (``--credentials``): loads or raises
    CredentialsLoadError; a map that loaded answers lookups. No file named
    in it is opened."""
    from aiocoap.credentials import CredentialsLoadError, CredentialsMap

    path = _Scratch.write("credentials.json", data)
    credentials = CredentialsMap()
    try:
        credentials.load_from_file(path)
    except CredentialsLoadError as e:
        assert str(e)
        assert not credentials
        return
    for uri in ("coap://localhost/x", "coaps://[::1]/", "coaps+tcp://h/"):
        credentials.find_dtls_client_psk(uri)
    for pattern in list(credentials):
        credentials.find_dtls_client_psk(pattern.rstrip("*"))


# --- aiocoap-client's command line -----------------------------------------------------


def split_argv(data: bytes) -> list:
    """Command line arguments from bytes: split at zero bytes and decoded as
    Python decodes argv on POSIX (UTF-8 with surrogateescape)."""
    if not data:
        return []
    return [part.decode("utf-8", "surrogateescape") for part in data.split(b"\x00")]


def cli_client_argv(data: bytes) -> None:
    """aiocoap-client's arguments (:func:`split_argv`), see
    :func:`check_client_argv`."""
    check_client_argv(split_argv(data))


def check_client_argv(argv: list) -> None:
    """aiocoap-client's arguments up to the request it would send (no
    network, no files, no stdin): a request, --help/--version on stdout
    with status 0, or a one-line error on stderr and a non-zero status."""
    from aiocoap.cli import client
    from aiocoap.cli._client_request import build_request

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            options = client.parse_commandline(argv)
            if options.interactive or (options.payload or "").startswith("@"):
                return
            build_request(options)
    except SystemExit as e:
        _check_exit(e, out.getvalue(), err.getvalue())
        return
    assert not err.getvalue(), err.getvalue()


def _check_exit(e: SystemExit, out: str, err: str) -> None:
    if e.code in (0, None):
        assert out and not err
        return
    assert isinstance(e.code, int) and e.code > 0, e.code
    lines = err.splitlines()
    # one line; a verbose run (-v before the failure) may show the handled
    # exception's traceback above it
    assert lines and lines[-1].startswith("aiocoap-client: error: "), err
    assert len(lines) == 1 or lines[0] == "Traceback (most recent call last):", err


LAZY_MODULES = (
    "aiocoap.cli.client",
    "aiocoap.cli._client_request",
    "aiocoap.util.edn",
    "aiocoap.credentials",
    "aiocoap.oscore",
    "aiocoap._oscore.contexts",
    "aiocoap._oscore.filesystem",
)
"""Modules that targets import on first use (optional extras); a coverage
guided fuzzer imports them up front to instrument them."""

TARGETS: dict[str, Callable[[bytes], None]] = {
    "udp-message": udp_message,
    "rfc8323-stream": rfc8323_stream,
    "rfc8323-frame": rfc8323_frame,
    "rfc8323-signaling": rfc8323_signaling,
    "websocket-frames": websocket_frames,
    "link-format": link_format,
    "oscore-option": oscore_option,
    "oscore-message": oscore_message,
    "oscore-plaintext": oscore_plaintext,
    "oscore-context-files": oscore_context_files,
    "credentials-json": credentials_json,
    "cli-client-argv": cli_client_argv,
}
"""Every fuzz target by name (the names tools/fuzz-long takes)."""

OSCORE_TARGETS = frozenset(name for name in TARGETS if name.startswith("oscore-"))
"""Targets that need the oscore extra."""


# --- seeds -----------------------------------------------------------------------------


def _seed_messages() -> list:
    rng = random.Random(8323)
    out = [
        b"\x40\x01\x7d\x34\xbbtemperature",
        b"\x60\x45\x7d\x34\xff22.3 C",
        b"\x44\x03\x12\x34\xca\xfe\xba\xbe\xb3foo\x03bar\x11\x2a\xff{}",
        b"\x42\x01\x00\x01\x01\x02\x39localhost\x31\x00\x53obs\xd1\x0e\x06",
    ]
    for _ in range(8):
        m = Message(code=rng.choice([Code.GET, Code.POST, Code.CONTENT]), payload=rng.randbytes(rng.randrange(20)))
        m.mtype = rng.choice(list(Type))
        m.mid = rng.randrange(0x10000)
        m.token = rng.randbytes(rng.randrange(9))
        m.opt.uri_path = ("a", "bc")
        m.opt.block2 = (rng.randrange(100), True, rng.randrange(7))
        if rng.random() < 0.5:
            m.opt.observe = rng.randrange(1 << 24)
        out.append(m.encode())
    return out


def seeds(name: str) -> list:
    """A few valid (or nearly valid) inputs of the target ``name``."""
    if name in ("udp-message", "oscore-message"):
        found = _seed_messages()
        if name == "oscore-message":
            client, _ = _Oscore.pair()
            protected = []
            for raw in found[:4]:
                m = Message.decode(raw)
                if m.code.is_request() and m.opt.oscore is None:
                    protected.append(client.protect(m)[0].encode())
            found = protected + found
        return found
    if name in ("rfc8323-stream", "rfc8323-frame"):
        frames = [
            rfc8323.encode_message(m)
            for m in (
                rfc8323.CSM(max_message_size=2000, block_wise_transfer=True).to_message(),
                rfc8323.Ping(custody=True).to_message(b"\x01"),
                rfc8323.Release(("coap+tcp://[::1]",), 30, "bye").to_message(),
                rfc8323.Abort(4, "bad").to_message(),
                Message(code=Code.GET, uri_path=("a",), _token=b"\x01\x02"),
                Message(code=Code.CONTENT, payload=bytes(300)),
            )
        ]
        if name == "rfc8323-frame":
            return frames
        return [bytes((2, 7)) + b"".join(frames), bytes((1, 3)) + frames[0] + frames[4]]
    if name == "websocket-frames":
        to_server = wsframes.FrameEncoder(wsframes.MaskKeys(lambda n: bytes(i % 256 for i in range(n))))
        to_client = wsframes.FrameEncoder()
        return [
            bytes((0x83, 1)) + to_server.binary(b"\x01\x01\x05") + to_server.frame(wsframes.OP_PING, b"hi")
            + to_server.close(1000, "bye"),
            bytes((0x02, 2)) + to_client.binary(bytes(200)) + to_client.frame(wsframes.OP_PONG, b"")
            + bytes((0x02, 2)) + b"ab" + bytes((0x80, 1)) + b"c",
            bytes((0x81, 3)) + to_server.frame(wsframes.OP_TEXT, b"text"),
        ]
    if name == "rfc8323-signaling":
        return [b"\x07\x22\x04\x00", b"\x13\x01\x21\x01", b"\x04\x41\x20\xffdiag", b"\x03\x2dcoap://h\x31\x10"]
    if name == "link-format":
        return [
            b'</sensors/temp>;rt="temperature-c";if="sensor";obs,</t>;ct=0;sz=1',
            b'<coap://[::1]/x>;anchor="/a";rel="alternate describedby";title*=UTF-8\'de\'x',
        ]
    if name == "oscore-option":
        return [bytes.fromhex("19140837cbf3210017a2d3"), b"\x09\x14", b"\x0b\x01\x00\x00\x01", b""]
    if name == "oscore-plaintext":
        return [b"\x00\x01\xb3foo", b"\x01\x45\xff\x00", b"\x00\x02\x61\x00"]
    if name == "oscore-context-files":
        settings = json.dumps({"sender-id_hex": "01", "recipient-id_hex": "", "secret_ascii": "x",
                               "algorithm": "AES-CCM-16-64-128", "window": 32}).encode()
        return [settings + b"\x00" + b'{"next-unused-sender-sequence-number": 10, "recipient-replay-window": null}',
                settings + b"\x00" + b'{"next-to-send": 4, "received": {"index": 3, "bitfield": 5}}']
    if name == "credentials-json":
        return [json.dumps({
            "coaps://localhost/*": {"dtls": {"psk": {"ascii": "k"}, "client-identity": {"hex": "01:02"}}},
            "coap://[::1]/*": {"oscore": {"contextfile": "ctx/"}},
            "coaps+tcp://h/*": {"any-of": [{"tls": {"ca-file": "ca.pem"}}]},
            "coap://alias/*": ":coap://[::1]/*",
        }).encode()]
    if name == "cli-client-argv":
        return [b"coap://localhost/", b"-m\x00PUT\x00--payload\x00hi\x00coap://h/x?q",
                b"--content-format\x00application/cbor\x00--payload\x00[1,{\"a\":2}]\x00coap+tcp://[::1]:1/",
                b"--proxy\x00p:1\x00--accept\x0050\x00--observe\x00coap://h/", b"--help"]
    raise KeyError(name)
