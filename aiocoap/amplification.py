"""Amplification mitigation for servers on plain UDP (RFC 7252 §11.3,
RFC 9175 §2.3 item 3 and §2.5): a peer that has not shown that it receives
what we send gets no response much larger than its request, but a 4.01
Unauthorized with an Echo option, and is served when it repeats the request
with that Echo value.

Rules enforced here (the :class:`AmplificationLimit` of a Context, ``Context.amplification``):

* Only remotes of plain ``coap://`` over UDP are limited. DTLS peers have
  proven their address in the handshake (its cookie exchange), and TCP,
  TLS and WebSocket peers in theirs; they are never limited.
* A peer counts as verified for :attr:`~AmplificationLimit.verified_lifetime`
  seconds (5 minutes by default) after it proved that it receives: it
  repeated a request with an Echo value we gave it, it acknowledged a
  confirmable message of ours (the message layer reports that), or it
  answered a request of ours. Each proof renews the time. At most
  :attr:`~AmplificationLimit.max_verified` peers are remembered; beyond
  that, the one whose proof is oldest is forgotten (it is challenged again
  when it next asks for a large response).
* To an unverified peer, a response (and every notification of an
  observation) goes out only if its datagram is at most
  :attr:`~AmplificationLimit.factor` (3) times the size of the request's
  datagram. A larger successful answer to an unsafe request (POST, PUT,
  DELETE, ...: repeating it would run it again) is cut into Block2 blocks small enough
  (down to 16 bytes; the rest is kept for the client's follow-up requests,
  which are served from there). Any other larger answer is replaced by 4.01
  Unauthorized carrying an Echo option (18 bytes plus the token), and an
  observation ends with it; the rendered response is dropped, and the
  request is served afresh when repeated with the Echo value. An unsafe
  request is challenged too where not even a 16 byte block fits, and
  where it is protected with OSCORE (its outer code is always POST or
  FETCH; a protected answer can only travel whole, and the client's
  OSCORE layer repeats the request protected anew, which runs the inner
  request again).
* The notifications of an observation registered by an unverified peer are
  confirmable until the peer acknowledges one (which verifies it), so an
  observer that does not receive is dropped after the usual retransmissions.
* The Echo value is stateless: 4 bytes of the time (milliseconds, modulo
  2**32) and 8 bytes of an HMAC-SHA256 over that time and the peer's
  address, with a random key per limit object. It is accepted from that
  peer only, for :attr:`~AmplificationLimit.echo_validity` seconds.

Everything but :class:`AmplificationGate` is sans-I/O: time is an argument.
Challenges and rejected Echo values are logged at debug level only (a peer
can cause them at will).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from typing import Any, Callable, Optional

from .message import Message
from .numbers.codes import Code
from .numbers.optionnumbers import OptionNumber
from .numbers.types import Type
from .pipe import Event, Pipe

__all__ = [
    "AmplificationLimit",
    "AmplificationGate",
    "datagram_size",
    "DEFAULT_FACTOR",
    "VERIFIED_LIFETIME",
    "ECHO_VALIDITY",
    "MAX_VERIFIED",
]

DEFAULT_FACTOR = 3.0
"""How many times the request's datagram size a response to an unverified
peer may have (RFC 9175 §2.3: the factor should be less than 3 or so)."""

VERIFIED_LIFETIME = 300.0
"""Seconds a peer counts as verified after its last proof of reachability."""

ECHO_VALIDITY = 60.0
"""Seconds an Echo value we gave out is accepted."""

MAX_VERIFIED = 10_000
"""How many verified peers are remembered at most (about 200 bytes each)."""

CutToFit = Callable[[Message, Message, Callable[[Message], bool]], Optional[Message]]
"""What makes an answer to an unsafe request smaller (see
:class:`AmplificationGate`)."""

_TIME = struct.Struct("!I")
_MAC_LENGTH = 8
_ECHO_LENGTH = _TIME.size + _MAC_LENGTH
_PLAIN_UDP = "coap"
_SAFE_METHODS = frozenset((Code.GET, Code.FETCH))
_OSCORE = OptionNumber.OSCORE
_MS_WRAP = 1 << 32


def datagram_size(message: Message, token_length: int) -> int:
    """The size of ``message`` on the wire (over UDP) when it carries a
    token of ``token_length`` bytes; type, MID and token need not be set.
    For a received message with options of invalid values (kept aside in
    ``opt.invalid_options``) it is a lower bound: each of those counts with
    its value and one header byte."""
    size = 4 + token_length
    payload = message.payload
    if payload:
        size += 1 + len(payload)
    options = message.opt
    if options.numbers():
        size += len(options.encode())
    for _, raw in options.invalid_options:
        size += 1 + len(raw)
    return size


class AmplificationLimit:
    """Which peers are verified, and what may be sent to the others (see
    the module documentation). The parameters can be changed on the object
    at any time; ``factor = None`` switches the limit off."""

    def __init__(
        self,
        *,
        factor: Optional[float] = DEFAULT_FACTOR,
        verified_lifetime: float = VERIFIED_LIFETIME,
        echo_validity: float = ECHO_VALIDITY,
        max_verified: int = MAX_VERIFIED,
        key: Optional[bytes] = None,
    ) -> None:
        self.factor = factor
        self.verified_lifetime = verified_lifetime
        self.echo_validity = echo_validity
        self.max_verified = max_verified
        self._key = key if key is not None else secrets.token_bytes(32)
        # remote -> time until which it counts as verified, in the order of
        # the last proof (a renewed entry moves to the end)
        self._verified: dict[Any, float] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} factor={self.factor!r}, {len(self._verified)} verified peer(s)>"

    @property
    def verified_count(self) -> int:
        """How many peers are remembered as verified (some may have expired
        and not been dropped yet)."""
        return len(self._verified)

    def applies_to(self, remote: Any) -> bool:
        """Whether responses to ``remote`` are limited at all: plain UDP,
        with the limit switched on."""
        return self.factor is not None and getattr(remote, "scheme", None) == _PLAIN_UDP

    # --- verified peers ---------------------------------------------------------

    def is_verified(self, remote: Any, now: float) -> bool:
        """Whether ``remote`` proved within the last ``verified_lifetime``
        seconds that it receives what we send."""
        until = self._verified.get(remote)
        if until is None:
            return False
        if until <= now:
            del self._verified[remote]
            return False
        return True

    def note_reachable(self, remote: Any, now: float) -> None:
        """``remote`` proved that it receives (it acknowledged or answered
        something of ours, or repeated our Echo value): it counts as
        verified for ``verified_lifetime`` seconds from ``now``."""
        if not self.applies_to(remote):
            return
        verified = self._verified
        lifetime = self.verified_lifetime
        until = verified.get(remote)
        if until is not None:
            if until - now > lifetime / 2:
                # (renewed recently enough: most proofs come from peers in a
                # busy exchange, and moving the entry costs more than this)
                return
            del verified[remote]
        while verified:
            oldest = next(iter(verified))
            if verified[oldest] > now and len(verified) < self.max_verified:
                break
            del verified[oldest]
        if self.max_verified > 0:
            verified[remote] = now + lifetime

    def forget(self) -> None:
        """Forget all verified peers (at shutdown)."""
        self._verified.clear()

    # --- the limit ----------------------------------------------------------------

    def allows(self, request_size: int, response_size: int) -> bool:
        """Whether a response of ``response_size`` bytes may answer an
        unverified peer's request of ``request_size`` bytes."""
        factor = self.factor
        return factor is None or response_size <= factor * request_size

    # --- Echo values ----------------------------------------------------------------

    def _mac(self, stamp: bytes, remote: Any) -> bytes:
        address: bytes = remote.hostinfo.encode("utf-8")
        return hmac.new(self._key, stamp + address, hashlib.sha256).digest()[:_MAC_LENGTH]

    def challenge(self, remote: Any, now: float) -> bytes:
        """A fresh Echo value for ``remote`` (valid ``echo_validity``
        seconds from ``now``)."""
        stamp = _TIME.pack(int(now * 1000) % _MS_WRAP)
        return stamp + self._mac(stamp, remote)

    def accept_echo(self, remote: Any, value: bytes, now: float) -> bool:
        """Check an Echo value a request of ``remote`` carries: True if it
        is one we gave to ``remote`` within ``echo_validity`` seconds (the
        peer then counts as verified)."""
        if len(value) != _ECHO_LENGTH:
            return False
        stamp = value[: _TIME.size]
        (then,) = _TIME.unpack(stamp)
        age = (int(now * 1000) - then) % _MS_WRAP
        if age > self.echo_validity * 1000:
            return False
        if not hmac.compare_digest(self._mac(stamp, remote), value[_TIME.size:]):
            return False
        self.note_reachable(remote, now)
        return True


class AmplificationGate(Pipe):
    """The pipe an unverified peer's request is rendered into: it passes
    each answer on to the request's own pipe (``outer``) while the answer
    is within the limit (or the peer got verified meanwhile), and replaces
    the first one that is not by the 4.01 + Echo challenge, which ends the
    exchange (and the rendering, or the observation, behind it). Interest
    and its end are the outer pipe's: the gate keeps no listeners or
    callbacks of its own (an observation keeps its gate for its whole
    life).

    ``cut_to_fit(request, response, fits)`` is what answers to unsafe
    requests are made smaller with
    (:meth:`aiocoap.blockwise.BlockwiseServer.cut_to_fit`)."""

    __slots__ = ("outer", "limit", "clock", "cut_to_fit", "request_size", "answered")

    def __init__(  # (no Pipe.__init__: see the class documentation)
        self, outer: Pipe, limit: AmplificationLimit, clock: Callable[[], float], cut_to_fit: CutToFit,
    ) -> None:
        request = outer.request
        self.request = request
        self.log = outer.log
        self.outer = outer
        self.limit = limit
        self.clock = clock
        self.cut_to_fit = cut_to_fit
        received_size = request.received_size
        self.request_size = (
            received_size if received_size is not None else datagram_size(request, len(request.token))
        )
        self.answered = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} before {self.outer!r}>"

    # --- interest: the outer pipe's -------------------------------------------------

    @property
    def is_interested(self) -> bool:
        return self.outer.is_interested

    def on_event(self, callback: Callable[[Event], bool]) -> Callable[[], None]:
        return self.outer.on_event(callback)

    def on_interest_end(self, callback: Callable[[], object]) -> None:
        self.outer.on_interest_end(callback)

    def discard_interest_end(self, callback: Callable[[], object]) -> None:
        self.outer.discard_interest_end(callback)

    def stop_interest(self) -> None:
        self.outer.stop_interest()

    def poke(self) -> None:
        self.outer.poke()

    def on_poke(self, handler: Callable[[], object]) -> None:
        self.outer.on_poke(handler)

    # --- events: through the gate -----------------------------------------------------

    def add_event(self, event: Event) -> None:
        outer = self.outer
        message = event.message
        if message is None:
            outer.add_event(event)
            return
        request = outer.request
        remote = request.remote
        now = self.clock()
        limit = self.limit
        if not limit.is_verified(remote, now):
            token_length = len(request.token)
            request_size = self.request_size
            size = datagram_size(message, token_length)
            if (
                not limit.allows(request_size, size)
                and request.code not in _SAFE_METHODS
                and message.code is not None
                and message.code.is_successful()
                and _OSCORE not in request.opt
            ):
                # Repeating this request would run it again: smaller
                # blocks instead. (Not for errors, whose diagnostic
                # clients do not fetch in blocks, nor for OSCORE: a
                # protected answer travels whole, and the repetition is
                # protected anew.)
                smaller = self.cut_to_fit(
                    request, message, lambda m: limit.allows(request_size, datagram_size(m, token_length)),
                )
                if smaller is not None:
                    outer.log.debug("Answering %r from an unverified peer in smaller blocks", request)
                    message = smaller
                    size = datagram_size(message, token_length)
                    event = Event(message, None, event.is_last)
            if not limit.allows(request_size, size):
                outer.log.debug(
                    "Answering %r with an Echo challenge: a %d byte response to a %d byte request "
                    "of an unverified peer", request, size, request_size,
                )
                challenge = Message(code=Code.UNAUTHORIZED, echo=limit.challenge(remote, now))
                outer.add_response(challenge, is_last=True)
                return
            if self.answered and message.mtype is not Type.ACK and not event.is_last:
                # A notification: confirmable until the peer acknowledges
                # one (which verifies it).
                message.mtype = Type.CON
        self.answered = True
        outer.add_event(event)
