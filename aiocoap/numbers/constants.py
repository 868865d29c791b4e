"""Protocol constants of RFC 7252 §4.8 (and a few practical ones invented
here, like :data:`DEFAULT_BLOCK_SIZE_EXP` and :data:`EMPTY_ACK_DELAY`).

The module-level names keep their documented values. The message layer does
not read them directly but through a :class:`TransportTuning` instance (the
message's ``transport_tuning`` or the context's default), so tests and
applications can shorten timeouts without patching globals.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = [
    "COAP_PORT", "COAPS_PORT", "COAP_TCP_PORT", "COAPS_TCP_PORT",
    "MCAST_IPV4_ALLCOAPNODES", "MCAST_IPV6_LINKLOCAL_ALLNODES",
    "MCAST_IPV6_LINKLOCAL_ALLCOAPNODES", "MCAST_IPV6_SITELOCAL_ALLNODES",
    "MCAST_IPV6_SITELOCAL_ALLCOAPNODES", "MCAST_ALL",
    "ACK_TIMEOUT", "ACK_RANDOM_FACTOR", "MAX_RETRANSMIT", "NSTART",
    "DEFAULT_LEISURE", "PROBING_RATE",
    "MAX_TRANSMIT_SPAN", "MAX_TRANSMIT_WAIT", "MAX_LATENCY",
    "PROCESSING_DELAY", "MAX_RTT", "EXCHANGE_LIFETIME", "NON_LIFETIME",
    "DEFAULT_BLOCK_SIZE_EXP", "EMPTY_ACK_DELAY", "REQUEST_TIMEOUT",
    "OBSERVATION_RESET_TIME", "MAX_REGULAR_BLOCK_SIZE_EXP",
    "SHUTDOWN_TIMEOUT", "TransportTuning", "Reliable", "Unreliable",
]

COAP_PORT = 5683
"""The IANA-assigned standard port for COAP services."""
COAPS_PORT = 5684
COAP_TCP_PORT = 5683
COAPS_TCP_PORT = 5684

MCAST_IPV4_ALLCOAPNODES = "224.0.1.187"
"""The IPv4 "All CoAP Nodes" multicast address (RFC 7252 §12.8)."""
MCAST_IPV6_LINKLOCAL_ALLNODES = "ff02::1"
"""The IPv6 link-local "All Nodes" multicast address (RFC 4291)."""
MCAST_IPV6_LINKLOCAL_ALLCOAPNODES = "ff02::fd"
"""The IPv6 link-local "All CoAP Nodes" multicast address (RFC 7252 §12.8)."""
MCAST_IPV6_SITELOCAL_ALLNODES = "ff05::1"
"""The IPv6 site-local "All Nodes" multicast address (RFC 4291)."""
MCAST_IPV6_SITELOCAL_ALLCOAPNODES = "ff05::fd"
"""The IPv6 site-local "All CoAP Nodes" multicast address (RFC 7252 §12.8)."""
MCAST_ALL = (
    MCAST_IPV4_ALLCOAPNODES,
    MCAST_IPV6_LINKLOCAL_ALLNODES,
    MCAST_IPV6_LINKLOCAL_ALLCOAPNODES,
    MCAST_IPV6_SITELOCAL_ALLNODES,
    MCAST_IPV6_SITELOCAL_ALLCOAPNODES,
)
"""The multicast groups a server joins when asked to listen on "all" of
them."""

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


class _Derived:
    """A parameter of :class:`TransportTuning` computed from the others.

    Read on an instance, it is computed from the instance's parameters and
    kept (the message layer reads these for every message; setting a
    parameter drops the kept values). Read on the class, it is computed from
    the class's parameters, so that a tuning class can be used as a tuning
    itself (``Message(transport_tuning=aiocoap.Reliable)``)."""

    def __init__(self, compute: Callable[[Any], float]):
        self._compute = compute
        self.__doc__ = compute.__doc__
        self._name = compute.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, instance: object, owner: Any = None) -> float:
        if instance is None:
            return self._compute(owner)
        value = self._compute(instance)
        instance.__dict__[self._name] = value
        return value


class TransportTuning:
    """The timing parameters the message layer reads.

    Every attribute defaults to the module constant of the same name; derive
    or instantiate with keyword arguments to change them, and put the object
    (or the class itself) on a message's ``transport_tuning`` (affects that
    exchange) or pass it to the context (affects all). The derived values
    (``MAX_TRANSMIT_SPAN``, ``EXCHANGE_LIFETIME``, ...) are computed from
    the base ones as RFC 7252 §4.8.2 defines them, so shortening
    ``ACK_TIMEOUT`` shortens them too. On an instance they are computed on
    first use and kept (the message layer reads them for every message);
    setting a parameter on the instance recomputes them. (Parameters are
    meant to be set on an instance or a subclass; assigning to the class
    attributes of a class whose instances are in use is not followed.)

    >>> quick = TransportTuning(ACK_TIMEOUT=0.1, MAX_RETRANSMIT=2)
    >>> round(quick.MAX_TRANSMIT_WAIT, 3)
    1.05
    >>> TransportTuning().EXCHANGE_LIFETIME
    247.0
    >>> Reliable.reliability, Reliable.MAX_TRANSMIT_WAIT
    (True, 93.0)
    """

    ACK_TIMEOUT: float = ACK_TIMEOUT
    ACK_RANDOM_FACTOR: float = ACK_RANDOM_FACTOR
    MAX_RETRANSMIT: int = MAX_RETRANSMIT
    NSTART = NSTART
    """Confirmable exchanges a message layer keeps outstanding to one peer
    at a time (RFC 7252 §4.7); further ones wait their turn. Read from the
    context's tuning."""
    DEFAULT_LEISURE = DEFAULT_LEISURE
    PROBING_RATE = PROBING_RATE
    MAX_LATENCY = MAX_LATENCY
    EMPTY_ACK_DELAY = EMPTY_ACK_DELAY
    DEFAULT_BLOCK_SIZE_EXP = DEFAULT_BLOCK_SIZE_EXP
    """Block size exponent used for blockwise transfers unless a smaller one
    is asked for."""
    OBSERVATION_RESET_TIME = OBSERVATION_RESET_TIME
    """Seconds after which an observe sequence number is no longer compared
    with the previous one (RFC 7641 §3.4)."""
    REQUEST_TIMEOUT: Optional[float] = None
    """Overall deadline of a request; None means MAX_TRANSMIT_WAIT."""
    ADAPTIVE_RTO = False
    """Estimate retransmission timeouts from measured round trips (CoCoA,
    draft-ietf-core-cocoa) instead of using ACK_TIMEOUT for every exchange;
    see :mod:`aiocoap.messagemanager`."""

    reliability: Optional[bool] = None
    """Whether messages are to be sent reliably: True asks for confirmable
    messages, False for non-confirmable ones, None leaves the choice to the
    library (CON for requests, the request's type for responses). Ignored
    where the protocol leaves no choice (multicast requests are NON, a
    response that can be piggybacked is an ACK, and an observation sends a
    CON now and then). See :class:`Reliable` and :class:`Unreliable`."""

    def __init__(self, **overrides: Any) -> None:
        for key, value in overrides.items():
            if not hasattr(type(self), key) or key.startswith("_"):
                raise TypeError(f"TransportTuning has no parameter {key!r}")
            setattr(self, key, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _DERIVED:
            raise AttributeError(f"{name} is derived from the other parameters and can not be set")
        super().__setattr__(name, value)
        cached = self.__dict__
        for derived in _DERIVED:
            cached.pop(derived, None)

    def __repr__(self) -> str:
        changed = {
            k: v for k, v in vars(self).items() if not k.startswith("_") and k not in _DERIVED
        }
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"<{type(self).__name__}({args})>"

    @_Derived
    def PROCESSING_DELAY(self) -> float:
        """Time a node takes to turn around a confirmable message into an
        acknowledgement."""
        return self.ACK_TIMEOUT

    @_Derived
    def MAX_TRANSMIT_SPAN(self) -> float:
        """Maximum time from the first transmission of a confirmable message
        to its last retransmission."""
        return self.ACK_TIMEOUT * (2.0 ** self.MAX_RETRANSMIT - 1) * self.ACK_RANDOM_FACTOR

    @_Derived
    def MAX_TRANSMIT_WAIT(self) -> float:
        """Maximum time from the first transmission of a confirmable message
        to the time when the sender gives up on receiving an acknowledgement
        or reset."""
        return self.ACK_TIMEOUT * (2.0 ** (self.MAX_RETRANSMIT + 1) - 1) * self.ACK_RANDOM_FACTOR

    @_Derived
    def MAX_RTT(self) -> float:
        """Maximum round-trip time."""
        return 2 * self.MAX_LATENCY + self.PROCESSING_DELAY

    @_Derived
    def EXCHANGE_LIFETIME(self) -> float:
        """Time from starting to send a confirmable message to the time when
        an acknowledgement is no longer expected."""
        return self.MAX_TRANSMIT_SPAN + self.MAX_RTT

    @_Derived
    def NON_LIFETIME(self) -> float:
        """Time from sending a non-confirmable message to the time its
        Message ID can be safely reused."""
        return self.MAX_TRANSMIT_SPAN + self.MAX_LATENCY

    @_Derived
    def request_timeout(self) -> float:
        """The effective overall request deadline."""
        return self.MAX_TRANSMIT_WAIT if self.REQUEST_TIMEOUT is None else self.REQUEST_TIMEOUT

    @_Derived
    def MULTICAST_REQUEST_TIMEOUT(self) -> float:
        """How long responses to a multicast request are waited for: the
        request timeout plus the leisure servers may take (RFC 7252 §8.2)."""
        return self.request_timeout + self.DEFAULT_LEISURE


_DERIVED = frozenset(
    name for name, value in vars(TransportTuning).items() if isinstance(value, _Derived)
)


class Reliable(TransportTuning):
    """A TransportTuning asking for reliable transmission: requests (and
    separate responses) go out as confirmable messages. Usable as the class
    itself: ``Message(code=GET, uri=..., transport_tuning=aiocoap.Reliable)``."""

    reliability = True


class Unreliable(TransportTuning):
    """A TransportTuning asking for unreliable transmission: requests (and
    separate responses) go out as non-confirmable messages."""

    reliability = False


DEFAULT_TUNING = TransportTuning()
"""The tuning used where neither the message nor the context set one."""
