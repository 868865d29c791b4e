"""WebSocket framing (RFC 6455 §5) for CoAP over WebSockets, without I/O:
:class:`FrameDecoder` turns received bytes into whole binary messages and
control frames, :class:`FrameEncoder` turns messages and control frames
into bytes. The asyncio connection (:mod:`aiocoap.transports.wsconnection`)
lets the ``websockets`` package do the HTTP upgrade and this module
everything after it; it is written for the one use CoAP makes of
WebSockets and is fast where that matters (every CoAP message is one
binary frame).

Rules the decoder enforces, each failing the connection with a
:class:`FrameError` carrying the close code to send (RFC 6455 §7.4.1):

* No extension is negotiated (permessage-deflate is never offered or
  accepted), so reserved bits set are a protocol error (1002), and so are
  the reserved opcodes.
* A server's decoder (``masked=True``) requires every frame to be masked,
  a client's requires none to be (1002).
* Control frames (Close, Ping, Pong) are not fragmented and carry at most
  125 bytes (1002); a Close payload is empty or a valid close code with a
  UTF-8 reason (1002, 1007).
* Fragmented binary messages are put together; a continuation without a
  message to continue, or a new message before the last one finished, is a
  protocol error (1002).
* A message longer than ``max_message_size`` is refused from the frame
  header that announces it, before any of its payload is buffered (1009);
  for a fragmented message, from the first fragment that goes over.
* Text messages are refused (:class:`UnsupportedData`, 1003): CoAP
  messages are binary (RFC 8323 §4.2).
* After a Close frame nothing more is read.

What the decoder holds at any time is bounded: at most one frame
(``max_message_size`` plus a 14-byte header) and the fragments of one
message (``max_message_size`` together).

The encoder masks client frames with a fresh key each, taken from
:class:`MaskKeys` (unpredictable keys as RFC 6455 §5.3 asks, drawn from the
injected random source in batches, since a system call per frame costs
more than the rest of the framing).
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from typing import Callable, Optional, Union

from ..util.secrets import DEFAULT_BATCH, RandomChunks

__all__ = [
    "OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG",
    "NORMAL_CLOSURE", "GOING_AWAY", "PROTOCOL_ERROR", "UNSUPPORTED_DATA", "INVALID_DATA", "MESSAGE_TOO_BIG",
    "MAX_CONTROL_PAYLOAD", "MAX_HEADER",
    "FrameError", "UnsupportedData", "MessageTooBig", "Ping", "Pong", "Close", "Event",
    "apply_mask", "MaskKeys", "FrameEncoder", "FrameDecoder", "close_payload",
]

# Opcodes (RFC 6455 §5.2)
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_CONTROL = 0x8  # opcodes from here on are control frames

# Close codes (RFC 6455 §7.4.1)
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
_NO_STATUS = 1005
_ABNORMAL = 1006
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
_TLS_FAILURE = 1015
# codes a peer may send: the defined ones below 3000 except those reserved
# for local use only, and the registered/private range 3000-4999
_SENDABLE_BELOW_3000 = frozenset(range(1000, 1012)) - {1004, _NO_STATUS, _ABNORMAL}
_LOWEST_PRIVATE, _HIGHEST_PRIVATE = 3000, 4999

MAX_CONTROL_PAYLOAD = 125
"""Longest payload of a control frame."""
MAX_HEADER = 14
"""Longest frame header: 2 bytes, 8 of extended length, 4 of mask key."""

_FIN = 0x80
_RSV = 0x70
_OPCODE = 0x0F
_MASK_BIT = 0x80
_LENGTH = 0x7F
_LENGTH_16, _LENGTH_64 = 126, 127
_MASK_KEY_SIZE = 4
_SHORT_LIMIT, _MEDIUM_LIMIT = 126, 1 << 16


class FrameError(Exception):
    """The peer broke the WebSocket protocol; the connection fails with
    ``close_code`` (sent in our Close frame) and the text as reason."""

    close_code = PROTOCOL_ERROR


class UnsupportedData(FrameError):
    """A text message arrived (CoAP over WebSockets is binary only)."""

    close_code = UNSUPPORTED_DATA


class MessageTooBig(FrameError):
    """A message above the size limit was announced."""

    close_code = MESSAGE_TOO_BIG


class _InvalidUTF8(FrameError):
    close_code = INVALID_DATA


@dataclass(frozen=True)
class Ping:
    """A Ping frame (to be answered with a Pong carrying ``payload``)."""

    payload: bytes


@dataclass(frozen=True)
class Pong:
    """A Pong frame."""

    payload: bytes


@dataclass(frozen=True)
class Close:
    """A Close frame: the peer starts or answers the closing handshake.
    ``code`` is None when it gave none."""

    code: Optional[int]
    reason: str = ""


Event = Union[bytes, Ping, Pong, Close]
"""What :meth:`FrameDecoder.feed` returns: a complete binary message as
:class:`bytes`, or a control frame."""


def apply_mask(data: bytes, key: bytes) -> bytes:
    """``data`` XORed with the 4-byte ``key`` repeated (RFC 6455 §5.3);
    masking and unmasking are the same.

    >>> apply_mask(b"Hello", bytes.fromhex("37fa213d")).hex()
    '7f9f4d5158'
    >>> apply_mask(bytes.fromhex("7f9f4d5158"), bytes.fromhex("37fa213d"))
    b'Hello'
    """
    length = len(data)
    if not length:
        return b""
    repeated = key * ((length + _MASK_KEY_SIZE - 1) // _MASK_KEY_SIZE)
    if len(repeated) != length:
        repeated = repeated[:length]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(length, "little")


class MaskKeys(RandomChunks):
    """Masking keys for a client's frames: 4 unpredictable bytes per call,
    taken from ``random_bytes`` (default :func:`secrets.token_bytes`)
    ``batch`` keys at a time (see :class:`~aiocoap.util.secrets.RandomChunks`)."""

    __slots__ = ()

    def __init__(self, random_bytes: Callable[[int], bytes] = secrets.token_bytes, batch: int = DEFAULT_BATCH) -> None:
        super().__init__(_MASK_KEY_SIZE, random_bytes, batch)


def _header(first: int, length: int, mask_bit: int) -> bytes:
    if length < _SHORT_LIMIT:
        return bytes((first, mask_bit | length))
    if length < _MEDIUM_LIMIT:
        return struct.pack("!BBH", first, mask_bit | _LENGTH_16, length)
    return struct.pack("!BBQ", first, mask_bit | _LENGTH_64, length)


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a Close frame: the code and as much of ``reason`` as
    fits in a control frame (cut at a character boundary).

    >>> close_payload(1000, "bye").hex()
    '03e8627965'
    """
    encoded = reason.encode("utf-8")[: MAX_CONTROL_PAYLOAD - 2]
    return struct.pack("!H", code) + encoded.decode("utf-8", "ignore").encode("utf-8")


class FrameEncoder:
    """Builds the frames one side sends: masked with keys from ``mask_keys``
    (a client, RFC 6455 §5.3) or unmasked (``mask_keys`` None: a server).
    Messages are never fragmented.

    >>> FrameEncoder().binary(b"\\x01\\x01").hex()
    '82020101'
    >>> FrameEncoder(MaskKeys(lambda n: bytes(n))).binary(b"\\x01\\x01").hex()
    '8282000000000101'
    """

    def __init__(self, mask_keys: Optional[Callable[[], bytes]] = None) -> None:
        self._mask_keys = mask_keys

    def frame(self, opcode: int, payload: bytes) -> bytes:
        """One complete frame (FIN set) of ``opcode``."""
        mask_keys = self._mask_keys
        if mask_keys is None:
            return _header(_FIN | opcode, len(payload), 0) + payload
        key = mask_keys()
        return b"".join((_header(_FIN | opcode, len(payload), _MASK_BIT), key, apply_mask(payload, key)))

    def binary(self, message: bytes) -> bytes:
        """A binary message as one frame."""
        mask_keys = self._mask_keys
        length = len(message)
        if mask_keys is None:
            if length < _SHORT_LIMIT:
                return bytes((_FIN | OP_BINARY, length)) + message
            return _header(_FIN | OP_BINARY, length, 0) + message
        key = mask_keys()
        return b"".join((_header(_FIN | OP_BINARY, length, _MASK_BIT), key, apply_mask(message, key)))

    def close(self, code: int, reason: str = "") -> bytes:
        """A Close frame."""
        return self.frame(OP_CLOSE, close_payload(code, reason))


def _parse_close(payload: bytes) -> Close:
    if not payload:
        return Close(None)
    if len(payload) == 1:
        raise FrameError("Close frame with a 1-byte payload")
    (code,) = struct.unpack("!H", payload[:2])
    if code not in _SENDABLE_BELOW_3000 and not _LOWEST_PRIVATE <= code <= _HIGHEST_PRIVATE:
        raise FrameError(f"Close frame with the invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise _InvalidUTF8("Close frame with a reason that is not UTF-8") from None
    return Close(code, reason)


class FrameDecoder:
    """Reads the frames a peer sends (see the module description for the
    rules): :meth:`feed` takes bytes in any pieces and returns the events
    they complete.

    :param masked: whether the peer's frames must be masked (we are the
        server) or must not be (we are the client).
    :param max_message_size: the longest binary message accepted, in
        bytes of WebSocket payload.

    A violation does not raise: the events before it are returned, and
    :attr:`failure` is set (nothing more is read then), so that what came
    in good order is still processed.

    >>> decoder = FrameDecoder(masked=False, max_message_size=100)
    >>> decoder.feed(bytes.fromhex("8202 0101 8a00 02"))
    [b'\\x01\\x01', Pong(payload=b'')]
    >>> decoder.buffered, decoder.feed(bytes.fromhex("02 4142 0000")), decoder.feed(bytes.fromhex("800143"))
    (1, [], [b'ABC'])
    >>> decoder.feed(bytes.fromhex("82 7f ffffffffffffffff")), decoder.failure
    ([], FrameError('frame length above 2**63'))
    """

    def __init__(self, *, masked: bool, max_message_size: int) -> None:
        self._masked = masked
        self.max_message_size = max_message_size
        # the unparsed input: pieces not joined yet (joined once enough
        # is there for the frame they start), their length, and how much
        # the frame at their start needs
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._need = 0
        # the fragments of a binary message so far (None: no message open)
        self._fragments: Optional[list[bytes]] = None
        self._fragment_bytes = 0
        self.failure: Optional[FrameError] = None
        """Why the connection failed, once the peer broke the protocol."""
        self.close_received: Optional[Close] = None
        """The peer's Close frame, once it came."""

    def __repr__(self) -> str:
        state = "failed" if self.failure else "closed" if self.close_received else "open"
        return f"<{type(self).__name__} {state}, {self.buffered} bytes buffered>"

    @property
    def buffered(self) -> int:
        """Bytes held of what is not complete yet: part of a frame, and the
        fragments of a message so far."""
        return self._held_bytes + self._fragment_bytes

    @property
    def done(self) -> bool:
        """Whether nothing more is read (a Close came, or a violation)."""
        return self.failure is not None or self.close_received is not None

    def discard(self) -> None:
        """Drop what is held (the connection ended)."""
        self._held = []
        self._held_bytes = 0
        self._fragments = None
        self._fragment_bytes = 0

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by ``data``, in order (see :data:`Event`)."""
        if self.failure is not None or self.close_received is not None or not data:
            return []
        if self._held:
            self._held.append(data)
            self._held_bytes += len(data)
            if self._held_bytes < self._need:
                return []
            data = b"".join(self._held)
            self._held = []
            self._held_bytes = 0
        events: list[Event] = []
        try:
            position = self._parse(data, events)
        except FrameError as e:
            self.failure = e
            self.discard()
            return events
        if position < len(data):
            rest = data[position:] if position else data
            self._held = [rest]
            self._held_bytes = len(rest)
        return events

    def _parse(self, data: bytes, events: list[Event]) -> int:
        """Parse the frames at the start of ``data`` into ``events``;
        returns where the unparsed rest starts (and sets ``_need``)."""
        position = 0
        end = len(data)
        masked = self._masked
        while position < end:
            available = end - position
            if available < 2:
                self._need = 2
                return position
            first = data[position]
            second = data[position + 1]
            length = second & _LENGTH
            header = 2
            if length >= _LENGTH_16:
                if length == _LENGTH_16:
                    header = 4
                    if available < header:
                        self._need = header
                        return position
                    length = (data[position + 2] << 8) | data[position + 3]
                else:
                    header = 10
                    if available < header:
                        self._need = header
                        return position
                    length = int.from_bytes(data[position + 2:position + 10], "big")
                    if length >> 63:
                        raise FrameError("frame length above 2**63")
            opcode = first & _OPCODE
            self._check(first, second, opcode, length, masked)
            if masked:
                header += _MASK_KEY_SIZE
            size = header + length
            if available < size:
                self._need = size
                return position
            payload = data[position + header:position + size]
            if masked:
                payload = apply_mask(payload, data[position + header - _MASK_KEY_SIZE:position + header])
            position += size
            if opcode == OP_BINARY and self._fragments is None and first & _FIN:
                events.append(payload)
            elif opcode < _CONTROL:
                self._data_frame(opcode, first & _FIN, payload, events)
            elif opcode == OP_PING:
                events.append(Ping(payload))
            elif opcode == OP_PONG:
                events.append(Pong(payload))
            else:
                close = _parse_close(payload)
                self.close_received = close
                events.append(close)
                self.discard()
                return end
        return position

    def _check(self, first: int, second: int, opcode: int, length: int, masked: bool) -> None:
        """Raise for a frame header that breaks the rules (before anything
        of its payload is held)."""
        if first & _RSV:
            raise FrameError("reserved bits set (no extension was negotiated)")
        if bool(second & _MASK_BIT) is not masked:
            raise FrameError("unmasked frame from a client" if masked else "masked frame from a server")
        if opcode >= _CONTROL:
            if opcode > OP_PONG:
                raise FrameError(f"reserved opcode {opcode:#x}")
            if not first & _FIN:
                raise FrameError("fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                raise FrameError(f"control frame of {length} bytes")
            return
        if opcode == OP_TEXT:
            raise UnsupportedData("text message (CoAP messages are binary)")
        if opcode > OP_BINARY:
            raise FrameError(f"reserved opcode {opcode:#x}")
        if opcode == OP_CONT:
            if self._fragments is None:
                raise FrameError("continuation frame without a message to continue")
        elif self._fragments is not None:
            raise FrameError("new message before the fragmented one was complete")
        if length + self._fragment_bytes > self.max_message_size:
            raise MessageTooBig(
                f"message of {length + self._fragment_bytes} bytes or more (limit {self.max_message_size})"
            )

    def _data_frame(self, opcode: int, fin: int, payload: bytes, events: list[Event]) -> None:
        """A fragment (binary or continuation) of a message in pieces."""
        fragments = self._fragments
        if fragments is None:
            fragments = self._fragments = []
        fragments.append(payload)
        self._fragment_bytes += len(payload)
        if fin:
            events.append(b"".join(fragments))
            self._fragments = None
            self._fragment_bytes = 0
