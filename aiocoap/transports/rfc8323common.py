"""The RFC 8323 wire format shared by the CoAP-over-TCP, -TLS and
-WebSockets transports: length-prefixed framing (§3.2), the stream parser
that cuts a byte stream into messages, the WebSocket message format (§4.2),
and the signaling messages of §5 (CSM, Ping, Pong, Release, Abort); also
the base class of the remotes of those transports (:class:`RFC8323Remote`)
and the exception that ends a connection (:class:`CloseConnection`), under
the names aiocoap 0.4.17 has for them.

This module does no I/O and keeps no connection state beyond what a parser
has buffered; the session core of
:mod:`aiocoap.transports.rfc8323session` feeds it bytes and acts on what
it returns.

Rules this module enforces:

* :func:`decode_message`, :func:`decode_ws_message` and
  :meth:`StreamParser.feed` raise nothing but
  :class:`aiocoap.error.UnparsableMessage` (the parser and the WebSocket
  decoder: its subclass :class:`FramingError`) for any input. A :class:`FramingError` means the
  stream can not be resynchronized; the connection is to be aborted with the
  error's ``diagnostic`` as Abort payload (:meth:`Abort.from_error`).
* A frame whose Len field (options, payload marker and payload) exceeds the
  parser's ``max_message_size`` is rejected as soon as the length header is
  complete, before any of its body is buffered (:class:`MessageTooLarge`).
  Being lenient in what it counts (not header and token) lets a peer that
  sizes messages by a different reading of "message size" get through, while
  what a parser keeps between calls stays below the limit plus 14 bytes.
* Messages decoded from a stream have neither type nor message ID
  (``mtype`` and ``mid`` are None): the reliable transport has no message
  layer.
* Signaling option numbers are specific to their code (RFC 8323 §5.1) and
  clash with request/response option numbers, so signaling options are read
  from the raw (number, bytes) pairs of a message, never from typed views.
  Unknown elective signaling options are ignored; an unknown critical one
  makes the parse fail with :class:`BadSignalingOption` (for a CSM:
  :class:`BadCSMOption`, which asks for an Abort carrying Bad-CSM-Option).
* Values of known signaling options are read leniently (uints of any
  length, flag options with a value count as present, undecodable UTF-8 in
  an elective Alternative-Address drops that address).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

from .. import error, interfaces
from ..message import Message
from ..numbers.codes import Code
from ..numbers.optionnumbers import OptionNumber
from ..optiontypes import OpaqueOption, OptionType, StringOption, UintOption

if TYPE_CHECKING:
    from .rfc8323session import RFC8323Session

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "SCHEME_TCP",
    "SCHEME_TLS",
    "DEFAULT_PORT_TCP",
    "DEFAULT_PORT_TLS",
    "DEFAULT_PORTS",
    "CloseConnection",
    "RFC8323Remote",
    "describe_remote",
    "FramingError",
    "MessageTooLarge",
    "BadSignalingOption",
    "BadCSMOption",
    "encode_length",
    "read_frame_header",
    "encode_message",
    "decode_message",
    "encode_ws_message",
    "decode_ws_message",
    "StreamParser",
    "CSM",
    "Ping",
    "Pong",
    "Release",
    "Abort",
    "SignalingMessage",
    "parse_signaling",
    "maximum_block_size_exp",
    "maximum_payload_size",
    "CSM_MAX_MESSAGE_SIZE",
    "CSM_BLOCK_WISE_TRANSFER",
    "PING_CUSTODY",
    "PONG_CUSTODY",
    "RELEASE_ALTERNATIVE_ADDRESS",
    "RELEASE_HOLD_OFF",
    "ABORT_BAD_CSM_OPTION",
]

DEFAULT_MAX_MESSAGE_SIZE = 1152
"""Max-Message-Size a peer is assumed to accept until its CSM says
otherwise (RFC 8323 §5.3.1), and the limit this library announces unless
configured differently."""

SCHEME_TCP = "coap+tcp"
SCHEME_TLS = "coaps+tcp"
DEFAULT_PORT_TCP = 5683
DEFAULT_PORT_TLS = 5684
DEFAULT_PORTS = {SCHEME_TCP: DEFAULT_PORT_TCP, SCHEME_TLS: DEFAULT_PORT_TLS}

BytesLike = Union[bytes, bytearray, memoryview]

_BERT_UNIT = 1024
# Room left for header, token and options when sizing a payload to a peer's
# Max-Message-Size.
_HEADROOM = 128

# Len nibble values 13, 14 and 15 announce an extended length field of 1, 2
# or 4 bytes whose value is offset by 13, 269 or 65805 (RFC 8323 §3.2).
_EXT_BYTES = (0,) * 13 + (1, 2, 4)
_EXT_OFFSET = (0,) * 13 + (13, 269, 65805)
_MAX_LEN = 0xFFFFFFFF + 65805

# Signaling option numbers (RFC 8323 §5.3-5.6), per code.
CSM_MAX_MESSAGE_SIZE = 2
CSM_BLOCK_WISE_TRANSFER = 4
PING_CUSTODY = 2
PONG_CUSTODY = 2
RELEASE_ALTERNATIVE_ADDRESS = 2
RELEASE_HOLD_OFF = 4
ABORT_BAD_CSM_OPTION = 2


# --- errors ------------------------------------------------------------------


class FramingError(error.UnparsableMessage):
    """The byte stream of an RFC 8323 connection is malformed (or carries a
    message the receiver does not accept); the connection can not continue.

    ``diagnostic`` is a short ASCII text suitable as Abort payload.
    ``messages`` holds the messages that were completed by the same
    :meth:`StreamParser.feed` call before the error was found; the caller
    may still process them before aborting."""

    def __init__(self, diagnostic: str):
        super().__init__(diagnostic)
        self.diagnostic = diagnostic
        self.messages: list[Message] = []


class MessageTooLarge(FramingError):
    """A frame announced a length above the receiver's Max-Message-Size.

    ``size`` is the announced Len value (options, marker and payload)."""

    def __init__(self, size: int, maximum: int):
        super().__init__(f"message of {size} bytes exceeds Max-Message-Size {maximum}")
        self.size = size
        self.maximum = maximum


class BadSignalingOption(error.UnparsableMessage):
    """A signaling message carried a critical option the receiver does not
    know (``number``, in the option space of ``code``). The connection is to
    be aborted (:meth:`Abort.from_error`)."""

    def __init__(self, number: int, code: int):
        self.number = number
        self.code = code
        self.diagnostic = f"unknown critical option {number} in {Code(code).dotted} signal"
        super().__init__(self.diagnostic)


class BadCSMOption(BadSignalingOption):
    """A CSM carried an unknown critical option ``number``; the Abort sent in
    reaction names it in its Bad-CSM-Option (RFC 8323 §5.3)."""

    def __init__(self, number: int):
        super().__init__(number, Code.CSM)


class CloseConnection(Exception):
    """Raised inside the processing of an RFC 8323 connection to end it.

    ``args[0]`` (``reason``) is the exception the requests still pending on
    the connection fail with; ``abort``, if not None, is the
    :class:`Abort` to send to the peer before closing; ``hard`` asks to cut
    the connection without writing anything more. The session core of
    :mod:`aiocoap.transports.rfc8323session` catches it where it processes
    input and closes the connection; nothing else needs to log it."""

    def __init__(self, reason: Exception, abort: Optional["Abort"] = None, hard: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.abort = abort
        self.hard = hard


# --- remotes -------------------------------------------------------------------


def describe_remote(remote: interfaces.EndpointAddress) -> str:
    """How log lines and error texts name the peer of a connection:
    ``scheme://hostinfo``."""
    return f"{remote.scheme}://{remote.hostinfo}"


class RFC8323Remote(interfaces.EndpointAddress):
    """Base class of the remotes of the RFC 8323 transports (TCP, TLS,
    WebSockets): one connection to one peer, whose block sizes follow the
    CSM that peer sent.

    A subclass provides ``scheme``, ``hostinfo`` and ``hostinfo_local``, and
    keeps the :class:`~aiocoap.transports.rfc8323session.RFC8323Session` of
    its current connection in ``_session`` (None before the first one).
    ``local_is_server`` tells which side accepted the connection: only the
    accepting side has an address that can be put into a URI."""

    is_multicast = False
    is_multicast_locally = False
    reliable_transport = True

    def __init__(self, *, local_is_server: bool = False) -> None:
        self._local_is_server = local_is_server
        self._session: Optional[RFC8323Session] = None

    @property
    def local_is_server(self) -> bool:
        """True on the side that accepted the connection, False on the
        side that opened it."""
        return self._local_is_server

    @property
    def uri_base(self) -> str:
        if self._local_is_server:
            raise error.AnonymousHost(
                f"The client side of a {self.scheme} connection can not be expressed as a URI"
            )
        return f"{self.scheme}://{self.hostinfo}"

    @property
    def uri_base_local(self) -> str:
        if not self._local_is_server:
            raise error.AnonymousHost(
                f"The local side of a {self.scheme} client connection (ephemeral port) "
                "can not be expressed as a URI"
            )
        return f"{self.scheme}://{self.hostinfo_local}"

    @property
    def maximum_block_size_exp(self) -> int:  # type: ignore[override]
        """Block size exponent for messages to the peer (7: BERT), from the
        peer's CSM (the RFC 8323 defaults before it arrived)."""
        session = self._session
        if session is None:
            return maximum_block_size_exp(DEFAULT_MAX_MESSAGE_SIZE, False)
        return session.maximum_block_size_exp

    @property
    def maximum_payload_size(self) -> int:  # type: ignore[override]
        session = self._session
        if session is None:
            return maximum_payload_size(DEFAULT_MAX_MESSAGE_SIZE, False)
        return session.maximum_payload_size

    @property
    def peer_max_message_size(self) -> int:
        """The Max-Message-Size the peer announced (1152 until its CSM)."""
        session = self._session
        return DEFAULT_MAX_MESSAGE_SIZE if session is None else session.peer_csm.max_message_size

    def abort(self, errormessage: Optional[str] = None, bad_csm_option: Optional[int] = None) -> None:
        """Send a 7.05 Abort (with the diagnostic ``errormessage`` and, if
        given, the Bad-CSM-Option) and close the connection. Pending requests
        fail with :class:`aiocoap.error.NetworkError`. Does nothing when the
        connection is not established."""
        if self._session is not None:
            self._session.abort(errormessage or "", bad_csm_option)


# --- framing -----------------------------------------------------------------


def encode_length(length: int) -> tuple[int, bytes]:
    """The Len nibble and the extended length bytes that announce a Len
    (options, payload marker and payload) of ``length`` bytes in an RFC 8323
    §3.2 frame header.

    >>> encode_length(12)
    (12, b'')
    >>> encode_length(13)
    (13, b'\\x00')
    >>> encode_length(300)
    (14, b'\\x00\\x1f')
    >>> encode_length(65805)
    (15, b'\\x00\\x00\\x00\\x00')

    Raises ValueError for a length no frame can announce."""
    if length < 13:
        if length < 0:
            raise ValueError("negative length")
        return length, b""
    if length < 269:
        return 13, bytes((length - 13,))
    if length < 65805:
        return 14, (length - 269).to_bytes(2, "big")
    if length <= _MAX_LEN:
        return 15, (length - 65805).to_bytes(4, "big")
    raise ValueError("message too long for an RFC 8323 frame")


def read_frame_header(data: BytesLike, pos: int = 0, end: Optional[int] = None) -> Optional[tuple[int, int, int]]:
    """Read the RFC 8323 §3.2 frame header that starts at ``data[pos]``
    (``end`` defaults to the length of ``data``): the number of bytes of the
    Len/TKL byte and the extended length (the Code byte follows them), the
    token length TKL and the Len value. None while those bytes are not all
    there. A TKL above 8 is returned as it is (decoding rejects it).

    >>> read_frame_header(bytes.fromhex("c2 01 1234"))
    (1, 2, 12)
    >>> read_frame_header(bytes.fromhex("d0 ff"))
    (2, 0, 268)
    >>> read_frame_header(bytes.fromhex("e0 00")) is None
    True
    """
    if end is None:
        end = len(data)
    if pos >= end:
        return None
    first = data[pos]
    nibble = first >> 4
    if nibble < 13:
        return 1, first & 0x0F, nibble
    extra = _EXT_BYTES[nibble]
    if end - pos <= extra:
        return None
    return 1 + extra, first & 0x0F, int.from_bytes(data[pos + 1 : pos + 1 + extra], "big") + _EXT_OFFSET[nibble]


_RESERVED_TKL = "token length 9-15 is reserved"


def _body(message: Message) -> tuple[int, bytes, bytes, bytes]:
    """Code, token, encoded options and payload of a message to be framed;
    raises TypeError without a code, ValueError for a token above 8
    bytes. (:func:`encode_message`, on every message's path, does the same
    inline.)"""
    code = message.code
    if code is None:
        raise TypeError("a message needs a code to be encoded")
    token = message.token
    if len(token) > 8:
        raise ValueError("token longer than 8 bytes")
    return code, token, message.opt.encode(), message.payload


def encode_message(message: Message) -> bytes:
    """Serialize a message into one RFC 8323 §3.2 frame.

    Type and message ID of the message are not part of the frame and are
    ignored. Raises TypeError when the message has no code and ValueError
    when its token is longer than 8 bytes or it is too long to frame."""
    code = message.code
    if code is None:
        raise TypeError("a message needs a code to be encoded")
    token = message.token
    tkl = len(token)
    if tkl > 8:
        raise ValueError("token longer than 8 bytes")
    options = message.opt.encode()
    payload = message.payload
    length = len(options) + (len(payload) + 1 if payload else 0)
    if length < 13:
        header = bytes(((length << 4) | tkl, code))
    elif length < 269:
        # (encode_length's second case, inlined: most messages with a
        # payload are this long)
        header = bytes((0xD0 | tkl, length - 13, code))
    else:
        nibble, extended = encode_length(length)
        header = b"".join((bytes(((nibble << 4) | tkl,)), extended, bytes((code,))))
    if payload:
        return b"".join((header, token, options, b"\xff", payload))
    return b"".join((header, token, options))


def encode_ws_message(message: Message) -> bytes:
    """Serialize a message for CoAP over WebSockets (RFC 8323 §4.2): the
    frame layout of :func:`encode_message` with the Len nibble 0 and no
    extended length, since the WebSocket frame delimits the message.

    >>> encode_ws_message(Message(code=Code.GET, _token=b"\\x01", uri_path=["a"])).hex()
    '010101b161'

    Raises like :func:`encode_message`."""
    code, token, options, payload = _body(message)
    header = bytes((len(token), code))
    if payload:
        return b"".join((header, token, options, b"\xff", payload))
    return b"".join((header, token, options))


def _build(code_number: int, token: BytesLike, rest: BytesLike) -> Message:
    message = Message(code=code_number, _token=bytes(token))
    if rest:
        message.payload = message.opt.decode(rest)
    return message


def decode_message(frame: BytesLike) -> Message:
    """Parse exactly one complete RFC 8323 frame (any bytes-like object).

    The resulting message has no type and no message ID. Any malformation,
    including bytes beyond or missing from the announced length, raises
    :class:`aiocoap.error.UnparsableMessage`."""
    end = len(frame)
    header = read_frame_header(frame, 0, end)
    if header is None:
        raise FramingError("frame truncated in the length field")
    hlen, tkl, length = header
    if tkl > 8:
        raise FramingError(_RESERVED_TKL)
    if hlen + 1 + tkl + length != end:
        raise FramingError(
            f"frame of {end} bytes does not match the announced length {length}"
        )
    body = hlen + 1 + tkl
    return _build(frame[hlen], frame[hlen + 1 : body], frame[body:])


def decode_ws_message(frame: BytesLike) -> Message:
    """Parse the content of one WebSocket binary frame as a CoAP message
    (RFC 8323 §4.2: the Len nibble is 0 and there is no extended length).

    The resulting message has no type and no message ID. Any malformation,
    a nonzero Len nibble included, raises
    :class:`aiocoap.error.UnparsableMessage` (a :class:`FramingError`)."""
    if len(frame) < 2:
        raise FramingError("WebSocket message shorter than 2 bytes")
    first = frame[0]
    if first >> 4:
        raise FramingError("Len field is not 0 in a WebSocket message")
    tkl = first & 0x0F
    if tkl > 8:
        raise FramingError(_RESERVED_TKL)
    if len(frame) < 2 + tkl:
        raise FramingError("WebSocket message truncated in the token")
    try:
        return _build(frame[1], frame[2 : 2 + tkl], frame[2 + tkl :])
    except FramingError:
        raise
    except error.UnparsableMessage as e:
        raise FramingError(str(e) or "malformed options") from e


class StreamParser:
    """Incremental parser that turns the bytes of one RFC 8323 connection
    into messages.

    Feed it whatever the connection delivers, in chunks of any size
    (:meth:`feed`); it returns the messages completed so far. Work is linear
    in the bytes fed: a partial frame is kept in one buffer that is only
    appended to and trimmed from the front, never re-scanned.

    ``max_message_size`` is the limit this side announced in its CSM; it may
    be changed between calls. After a :class:`FramingError` the parser stays
    broken: every further :meth:`feed` raises a FramingError again."""

    __slots__ = ("max_message_size", "error", "_buffer", "_header")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE):
        self.max_message_size = max_message_size
        self.error: Optional[FramingError] = None
        """The error that broke the stream, if any."""
        self._buffer = bytearray()
        # (header length, TKL, total frame length) of the frame at the start
        # of the buffer once its length header is complete.
        self._header: Optional[tuple[int, int, int]] = None

    def __repr__(self) -> str:
        state = f"error {self.error.diagnostic!r}" if self.error else f"{len(self._buffer)} bytes pending"
        return f"<{type(self).__name__} max {self.max_message_size}, {state}>"

    @property
    def buffered(self) -> int:
        """Number of bytes held of a frame that is not complete yet. When the
        peer closes the connection while this is nonzero, it was cut off in
        the middle of a message."""
        return len(self._buffer)

    def discard(self) -> None:
        """Forget the bytes of an incomplete frame (the connection ended:
        they can never complete)."""
        self._buffer = bytearray()
        self._header = None

    def feed(self, data: BytesLike) -> list[Message]:
        """Add received bytes; return the messages they complete (possibly
        none), in order.

        Raises :class:`FramingError` when the stream is malformed; messages
        completed before the malformed frame in the same call are in the
        error's ``messages``."""
        if self.error is not None:
            raise FramingError(self.error.diagnostic)
        if not data:
            return []
        buf = self._buffer
        buf += data
        end = len(buf)
        pos = 0
        messages: list[Message] = []
        view = memoryview(buf)
        try:
            header = self._header
            while True:
                if header is None:
                    parsed = read_frame_header(buf, pos, end)
                    if parsed is None:
                        break
                    hlen, tkl, length = parsed
                    if tkl > 8:
                        raise FramingError(_RESERVED_TKL)
                    if length > self.max_message_size:
                        raise MessageTooLarge(length, self.max_message_size)
                    header = (hlen, tkl, hlen + 1 + tkl + length)
                hlen, tkl, total = header
                frame_end = pos + total
                if frame_end > end:
                    break
                body = pos + hlen + 1 + tkl
                messages.append(
                    _build(buf[pos + hlen], view[pos + hlen + 1 : body], view[body:frame_end])
                )
                pos = frame_end
                header = None
        except error.UnparsableMessage as e:
            failure = e if isinstance(e, FramingError) else FramingError(str(e) or "malformed options")
            failure.messages = messages
            self.error = failure
            # The traceback may still reference slices of the old buffer,
            # which would make resizing it fail; it is not needed any more.
            self._buffer = bytearray()
            self._header = None
            if failure is e:
                raise
            raise failure from e
        finally:
            view.release()
        self._header = header
        del buf[:pos]
        return messages


# --- signaling ---------------------------------------------------------------


def _raw_options(message: Message) -> list[tuple[int, bytes]]:
    """All options of a message as (number, value bytes), sorted by number,
    including those the request/response registry considered invalid."""
    opt = message.opt
    raw = [(int(o.number), o.encode()) for o in opt.option_list()]
    if opt.invalid_options:
        raw.extend((int(number), bytes(value)) for number, value in opt.invalid_options)
        raw.sort(key=itemgetter(0))
    return raw


def _check_code(message: Message, expected: int) -> None:
    if message.code != expected:
        raise ValueError(f"expected a {expected} message, got {message.code}")


def _unknown(number: int, code: int) -> None:
    if number & 1:
        if code == Code.CSM:
            raise BadCSMOption(number)
        raise BadSignalingOption(number, code)


def _signal(code: int, options: Sequence[OptionType], payload: bytes = b"") -> Message:
    message = Message(code=code, payload=payload)
    for option in options:
        message.opt.add_option(option)
    return message


def _diagnostic(payload: bytes) -> str:
    return payload.decode("utf-8", "replace")


@dataclass(frozen=True)
class CSM:
    """A Capabilities and Settings Message (7.01, RFC 8323 §5.3).

    The defaults are the values in force before the peer's first CSM. CSMs
    are cumulative: a setting a CSM does not carry keeps its previous value,
    so parse each received CSM with the previous state as ``previous``."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    block_wise_transfer: bool = False

    def to_message(self) -> Message:
        """Build the 7.01 message (Max-Message-Size is always stated)."""
        options: list[OptionType] = [
            UintOption(OptionNumber(CSM_MAX_MESSAGE_SIZE), self.max_message_size)
        ]
        if self.block_wise_transfer:
            options.append(OpaqueOption(OptionNumber(CSM_BLOCK_WISE_TRANSFER), b""))
        return _signal(Code.CSM, options)

    @classmethod
    def from_message(cls, message: Message, previous: Optional["CSM"] = None) -> "CSM":
        """Read a received 7.01 message on top of the ``previous`` settings
        (the defaults if None).

        Raises :class:`BadCSMOption` for an unknown critical option."""
        _check_code(message, Code.CSM)
        max_message_size = None
        block_wise_transfer = None
        for number, value in _raw_options(message):
            if number == CSM_MAX_MESSAGE_SIZE:
                if max_message_size is None:
                    max_message_size = int.from_bytes(value, "big")
            elif number == CSM_BLOCK_WISE_TRANSFER:
                block_wise_transfer = True
            else:
                _unknown(number, Code.CSM)
        base = previous if previous is not None else cls()
        return cls(
            max_message_size=base.max_message_size if max_message_size is None else max_message_size,
            block_wise_transfer=base.block_wise_transfer or bool(block_wise_transfer),
        )

    @property
    def maximum_block_size_exp(self) -> int:
        """Block size exponent to use towards the peer that sent this CSM."""
        return maximum_block_size_exp(self.max_message_size, self.block_wise_transfer)

    @property
    def maximum_payload_size(self) -> int:
        """Largest (BERT) block payload to send to the peer that sent this
        CSM."""
        return maximum_payload_size(self.max_message_size, self.block_wise_transfer)


def _flag_options(message: Message, code: int, number: int) -> bool:
    present = False
    for option_number, _ in _raw_options(message):
        if option_number == number:
            present = True
        else:
            _unknown(option_number, code)
    return present


@dataclass(frozen=True)
class Ping:
    """A 7.02 Ping (RFC 8323 §5.4); ``custody`` asks the peer to hold its
    Pong until it has responded to all requests received before. The Pong
    carries the Ping's token, so a token tells concurrent Pings apart."""

    custody: bool = False

    def to_message(self, token: bytes = b"") -> Message:
        options = [OpaqueOption(OptionNumber(PING_CUSTODY), b"")] if self.custody else []
        message = _signal(Code.PING, options)
        message.token = token
        return message

    @classmethod
    def from_message(cls, message: Message) -> "Ping":
        """Raises :class:`BadSignalingOption` for an unknown critical option."""
        _check_code(message, Code.PING)
        return cls(custody=_flag_options(message, Code.PING, PING_CUSTODY))


@dataclass(frozen=True)
class Pong:
    """A 7.03 Pong (RFC 8323 §5.4), the answer to a Ping. Send it with the
    token of the Ping it answers (``to_message(token=ping.token)``)."""

    custody: bool = False

    def to_message(self, token: bytes = b"") -> Message:
        options = [OpaqueOption(OptionNumber(PONG_CUSTODY), b"")] if self.custody else []
        message = _signal(Code.PONG, options)
        message.token = token
        return message

    @classmethod
    def from_message(cls, message: Message) -> "Pong":
        """Raises :class:`BadSignalingOption` for an unknown critical option."""
        _check_code(message, Code.PONG)
        return cls(custody=_flag_options(message, Code.PONG, PONG_CUSTODY))


@dataclass(frozen=True)
class Release:
    """A 7.04 Release (RFC 8323 §5.5): the peer wants this connection closed
    gracefully, maybe suggesting other addresses and a time (``hold_off``,
    seconds) to wait before reconnecting."""

    alternative_addresses: tuple[str, ...] = ()
    hold_off: Optional[int] = None
    diagnostic: str = ""

    def to_message(self) -> Message:
        options: list[OptionType] = [
            StringOption(OptionNumber(RELEASE_ALTERNATIVE_ADDRESS), address)
            for address in self.alternative_addresses
        ]
        if self.hold_off is not None:
            options.append(UintOption(OptionNumber(RELEASE_HOLD_OFF), self.hold_off))
        return _signal(Code.RELEASE, options, self.diagnostic.encode("utf-8"))

    @classmethod
    def from_message(cls, message: Message) -> "Release":
        """Raises :class:`BadSignalingOption` for an unknown critical option."""
        _check_code(message, Code.RELEASE)
        addresses = []
        hold_off = None
        for number, value in _raw_options(message):
            if number == RELEASE_ALTERNATIVE_ADDRESS:
                try:
                    addresses.append(value.decode("utf-8"))
                except UnicodeDecodeError:
                    continue
            elif number == RELEASE_HOLD_OFF:
                if hold_off is None:
                    hold_off = int.from_bytes(value, "big")
            else:
                _unknown(number, Code.RELEASE)
        return cls(tuple(addresses), hold_off, _diagnostic(message.payload))


@dataclass(frozen=True)
class Abort:
    """A 7.05 Abort (RFC 8323 §5.6): the sender closes the connection now,
    for the reason in ``diagnostic``; ``bad_csm_option`` names the CSM option
    that caused it, if one did."""

    bad_csm_option: Optional[int] = None
    diagnostic: str = ""

    def to_message(self) -> Message:
        options = []
        if self.bad_csm_option is not None:
            options.append(UintOption(OptionNumber(ABORT_BAD_CSM_OPTION), self.bad_csm_option))
        return _signal(Code.ABORT, options, self.diagnostic.encode("utf-8"))

    @classmethod
    def from_message(cls, message: Message) -> "Abort":
        """Raises :class:`BadSignalingOption` for an unknown critical option
        (the connection is closing anyway; there is no need to answer)."""
        _check_code(message, Code.ABORT)
        bad_csm_option = None
        for number, value in _raw_options(message):
            if number == ABORT_BAD_CSM_OPTION:
                if bad_csm_option is None:
                    bad_csm_option = int.from_bytes(value, "big")
            else:
                _unknown(number, Code.ABORT)
        return cls(bad_csm_option, _diagnostic(message.payload))

    @classmethod
    def from_error(cls, exc: error.UnparsableMessage) -> "Abort":
        """The Abort to send when a connection fails with ``exc`` (a
        :class:`FramingError`, :class:`BadSignalingOption` or other parse
        error of this module)."""
        if isinstance(exc, BadCSMOption):
            return cls(bad_csm_option=exc.number, diagnostic=exc.diagnostic)
        diagnostic = getattr(exc, "diagnostic", None) or str(exc) or "malformed message"
        return cls(diagnostic=diagnostic)


SignalingMessage = Union[CSM, Ping, Pong, Release, Abort]

_SIGNALS: dict[int, Callable[[Message], SignalingMessage]] = {
    Code.PING: Ping.from_message,
    Code.PONG: Pong.from_message,
    Code.RELEASE: Release.from_message,
    Code.ABORT: Abort.from_message,
}


def parse_signaling(message: Message, csm: Optional[CSM] = None) -> Optional[SignalingMessage]:
    """Interpret a 7.xx message: the matching dataclass, or None for a
    signaling code this module does not know (which the caller ignores).

    ``csm`` is the peer's current CSM state, on top of which a received CSM
    is read. Raises :class:`BadSignalingOption` (:class:`BadCSMOption`) for
    unknown critical options."""
    if message.code == Code.CSM:
        return CSM.from_message(message, csm)
    reader = _SIGNALS.get(message.code) if message.code is not None else None
    return reader(message) if reader is not None else None


# --- block sizes ---------------------------------------------------------------


def maximum_block_size_exp(max_message_size: int, block_wise_transfer: bool) -> int:
    """Largest block size exponent (SZX) usable towards a peer with the given
    CSM values: 7 (BERT) when the peer announced Block-Wise-Transfer together
    with a Max-Message-Size above 1152 (RFC 8323 §6), else the largest
    classical block that fits with headroom for header and options (at
    most 6, at least 0)."""
    if block_wise_transfer and max_message_size > DEFAULT_MAX_MESSAGE_SIZE:
        return 7
    room = max_message_size - _HEADROOM
    exponent = 6
    while exponent > 0 and 1 << (exponent + 4) > room:
        exponent -= 1
    return exponent


def maximum_payload_size(max_message_size: int, block_wise_transfer: bool) -> int:
    """Largest payload to put into one message (one block, or one BERT
    message of several 1024 byte blocks) towards a peer with the given CSM
    values; leaves 128 bytes of the peer's Max-Message-Size for the rest of
    the frame."""
    exponent = maximum_block_size_exp(max_message_size, block_wise_transfer)
    if exponent == 7:
        blocks = (max_message_size - _HEADROOM) // _BERT_UNIT
        return max(blocks, 1) * _BERT_UNIT
    return 1 << (exponent + 4)
