"""Protocol constants of RFC 7252 §4.8 (and a few practical ones invented
here, like :data:`DEFAULT_BLOCK_SIZE_EXP` and :data:`EMPTY_ACK_DELAY`).

The module-level names keep their documented values. The message layer does
not read them directly but through a :class:`TransportTuning` instance (the
message's ``transport_tuning`` or the context's default), so tests and
applications can shorten timeouts without patching globals.
"""

from __future__ import annotations

from functools import cached_property

__all__ = [
    "COAP_PORT", "COAPS_PORT", "COAP_TCP_PORT", "COAPS_TCP_PORT",
    "ACK_TIMEOUT", "ACK_RANDOM_FACTOR", "MAX_RETRANSMIT", "NSTART",
    "DEFAULT_LEISURE", "PROBING_RATE",
    "MAX_TRANSMIT_SPAN", "MAX_TRANSMIT_WAIT", "MAX_LATENCY",
    "PROCESSING_DELAY", "MAX_RTT", "EXCHANGE_LIFETIME", "NON_LIFETIME",
    "DEFAULT_BLOCK_SIZE_EXP", "EMPTY_ACK_DELAY", "REQUEST_TIMEOUT",
    "OBSERVATION_RESET_TIME", "MAX_REGULAR_BLOCK_SIZE_EXP",
    "SHUTDOWN_TIMEOUT", "TransportTuning",
]

COAP_PORT = 5683
"""The IANA-assigned standard port for COAP services."""
COAPS_PORT = 5684
COAP_TCP_PORT = 5683
COAPS_TCP_PORT = 5684

ACK_TIMEOUT = 2.0
"""The time, in seconds, to wait for an acknowledgement of a confirmable
message. The inter-transmission time doubles for each retransmission."""

ACK_RANDOM_FACTOR = 1.5
"""Timeout multiplier for anti-synchronization."""

MAX_RETRANSMIT = 4
"""The number of retransmissions of confirmable messages to non-multicast
endpoints before the infrastructure assumes no acknowledgement will be
received."""

NSTART = 1
"""Maximum number of simultaneous outstanding interactions that endpoint
maintains to a given server (including proxies)"""

DEFAULT_LEISURE = 5.0
"""Upper bound of the random delay before answering a multicast request."""

PROBING_RATE = 1.0
"""Bytes per second a client may send to a peer that does not respond."""

MAX_TRANSMIT_SPAN = ACK_TIMEOUT * (2 ** MAX_RETRANSMIT - 1) * ACK_RANDOM_FACTOR
"""Maximum time from the first transmission of a confirmable message to its
last retransmission."""

MAX_TRANSMIT_WAIT = ACK_TIMEOUT * (2 ** (MAX_RETRANSMIT + 1) - 1) * ACK_RANDOM_FACTOR
"""Maximum time from the first transmission of a confirmable message to the
time when the sender gives up on receiving an acknowledgement or reset."""

MAX_LATENCY = 100.0
"""Maximum time a datagram is expected to take from the start of its
transmission to the completion of its reception."""

PROCESSING_DELAY = ACK_TIMEOUT
"""Time a node takes to turn around a confirmable message into an
acknowledgement."""

MAX_RTT = 2 * MAX_LATENCY + PROCESSING_DELAY
"""Maximum round-trip time."""

EXCHANGE_LIFETIME = MAX_TRANSMIT_SPAN + MAX_RTT
"""Time from starting to send a confirmable message to the time when an
acknowledgement is no longer expected, i.e. message layer information about
the message exchange can be purged."""

NON_LIFETIME = MAX_TRANSMIT_SPAN + MAX_LATENCY
"""Time from sending a non-confirmable message to the time its Message ID
can be safely reused."""

DEFAULT_BLOCK_SIZE_EXP = 6
"""Default size exponent for blockwise transfers (6: 1024 bytes)."""

MAX_REGULAR_BLOCK_SIZE_EXP = 6
"""The largest size exponent that is not BERT (RFC 8323)."""

EMPTY_ACK_DELAY = 0.1
"""After this time the server sends an empty ACK, and later a separate
response."""

REQUEST_TIMEOUT = MAX_TRANSMIT_WAIT
"""Time after which a server assumes it won't receive any answer. Not
defined by IETF documents."""

OBSERVATION_RESET_TIME = 128
"""Time in seconds after which the value of the observe field is ignored
(RFC 7641 §3.4; the number is not named there)."""

SHUTDOWN_TIMEOUT = 3.0
"""How long shutting down a context waits for transports to finish."""


class TransportTuning:
    """The timing parameters the message layer reads.

    Every attribute defaults to the module constant of the same name; derive
    or instantiate with keyword arguments to change them, and put the object
    on a message's ``transport_tuning`` (affects that exchange) or pass it to
    the context (affects all). The derived values (``MAX_TRANSMIT_SPAN``,
    ``EXCHANGE_LIFETIME``, ...) are computed from the base ones as RFC 7252
    §4.8.2 defines them, so shortening ``ACK_TIMEOUT`` shortens them too.
    They are computed on first use and kept (the message layer reads them
    for every message); setting a parameter on the instance recomputes
    them. (Parameters are meant to be set on an instance or a subclass;
    assigning to the class attributes of a class whose instances are in
    use is not followed.)

    >>> quick = TransportTuning(ACK_TIMEOUT=0.1, MAX_RETRANSMIT=2)
    >>> round(quick.MAX_TRANSMIT_WAIT, 3)
    1.05
    >>> TransportTuning().EXCHANGE_LIFETIME
    247.0
    """

    ACK_TIMEOUT = ACK_TIMEOUT
    ACK_RANDOM_FACTOR = ACK_RANDOM_FACTOR
    MAX_RETRANSMIT = MAX_RETRANSMIT
    NSTART = NSTART
    DEFAULT_LEISURE = DEFAULT_LEISURE
    PROBING_RATE = PROBING_RATE
    MAX_LATENCY = MAX_LATENCY
    EMPTY_ACK_DELAY = EMPTY_ACK_DELAY
    REQUEST_TIMEOUT = None
    """Overall deadline of a request; None means MAX_TRANSMIT_WAIT."""

    def __init__(self, **overrides):
        for key, value in overrides.items():
            if not hasattr(type(self), key):
                raise TypeError(f"TransportTuning has no parameter {key!r}")
            setattr(self, key, value)

    def __setattr__(self, name, value):
        if name in _DERIVED:
            raise AttributeError(f"{name} is derived from the other parameters and can not be set")
        super().__setattr__(name, value)
        cached = self.__dict__
        for derived in _DERIVED:
            cached.pop(derived, None)

    def __repr__(self):
        changed = {
            k: v for k, v in vars(self).items() if not k.startswith("_") and k not in _DERIVED
        }
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"<{type(self).__name__}({args})>"

    @cached_property
    def PROCESSING_DELAY(self) -> float:
        return self.ACK_TIMEOUT

    @cached_property
    def MAX_TRANSMIT_SPAN(self) -> float:
        return self.ACK_TIMEOUT * (2 ** self.MAX_RETRANSMIT - 1) * self.ACK_RANDOM_FACTOR

    @cached_property
    def MAX_TRANSMIT_WAIT(self) -> float:
        return self.ACK_TIMEOUT * (2 ** (self.MAX_RETRANSMIT + 1) - 1) * self.ACK_RANDOM_FACTOR

    @cached_property
    def MAX_RTT(self) -> float:
        return 2 * self.MAX_LATENCY + self.PROCESSING_DELAY

    @cached_property
    def EXCHANGE_LIFETIME(self) -> float:
        return self.MAX_TRANSMIT_SPAN + self.MAX_RTT

    @cached_property
    def NON_LIFETIME(self) -> float:
        return self.MAX_TRANSMIT_SPAN + self.MAX_LATENCY

    @property
    def request_timeout(self) -> float:
        """The effective overall request deadline."""
        return self.MAX_TRANSMIT_WAIT if self.REQUEST_TIMEOUT is None else self.REQUEST_TIMEOUT


_DERIVED = frozenset(
    ("PROCESSING_DELAY", "MAX_TRANSMIT_SPAN", "MAX_TRANSMIT_WAIT", "MAX_RTT", "EXCHANGE_LIFETIME", "NON_LIFETIME")
)


DEFAULT_TUNING = TransportTuning()
"""The tuning used where neither the message nor the context set one."""
