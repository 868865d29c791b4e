"""Congestion control of CoAP over UDP (RFC 7252 §4.7 and §4.8): the
bookkeeping the message layer (:mod:`aiocoap.messagemanager`) keeps per
peer, without I/O.

* :class:`PeerExchanges` counts the confirmable exchanges outstanding to
  one peer and holds the confirmable messages waiting for their turn: at
  most NSTART (``TransportTuning.NSTART``, 1 by default) are outstanding at
  a time, the rest wait in order, up to a bound.
* :class:`RtoEstimator` estimates the retransmission timeout of one peer
  from measured round trips, after CoCoA (draft-ietf-core-cocoa-03): a
  "strong" estimator fed by exchanges acknowledged after their first
  transmission and a "weak" one fed by those acknowledged after one or two
  retransmissions, blended into one RTO; the backoff factor depends on the
  RTO (3 below 1 s, 1.5 above 3 s, else 2), and an RTO that was not updated
  for a while drifts back towards the 2 s default.

Adaptive RTOs are off by default (``TransportTuning.ADAPTIVE_RTO``): the
fixed ACK_TIMEOUT of RFC 7252 is what peers and operators expect, and is
what aiocoap does. Turning it on pays off on paths whose round trips are
far from 2 s (fast local networks: quicker recovery from loss; slow
constrained ones: fewer spurious retransmissions).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Optional

__all__ = ["PeerExchanges", "RtoEstimator"]


class PeerExchanges:
    """The confirmable exchanges with one peer: ``active`` counts those
    outstanding (sent, not yet acknowledged), ``queue`` holds messages
    waiting to be sent, of which ``waiting`` are still wanted (entries whose
    sender lost interest stay in the queue until they are reached, and are
    skipped then)."""

    __slots__ = ("active", "queue", "waiting")

    def __init__(self) -> None:
        self.active = 0
        self.queue: deque[Any] = deque()
        self.waiting = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.active} outstanding, {self.waiting} waiting>"

    @property
    def idle(self) -> bool:
        """Nothing outstanding and nothing waiting: the entry can go."""
        return not self.active and not self.waiting


class RtoEstimator:
    """The retransmission timeout of one peer, estimated CoCoA style.

    >>> est = RtoEstimator(initial=2.0)
    >>> est.rto(now=0.0)
    2.0
    >>> est.sample(0.1, transmissions=1, now=1.0)  # strong: 0.1 + 4 * 0.05 = 0.3
    >>> round(est.rto(now=1.0), 3)  # blended half and half with 2 s
    1.15
    >>> est.sample(0.1, transmissions=1, now=1.1)
    >>> round(est.rto(now=1.1), 4), RtoEstimator.backoff_factor(0.5)
    (0.7, 3.0)
    """

    __slots__ = ("_rto", "_updated", "_strong", "_weak", "_initial")

    K_STRONG = 4
    K_WEAK = 1
    ALPHA = 1 / 8
    BETA = 1 / 4
    MIN_RTO = 0.1
    """Estimates below this are raised to it (a timer of a few
    milliseconds would only measure the host's own scheduling)."""
    MAX_RTO = 60.0
    """Estimates above this are capped (a timeout beyond that would make
    an exchange last for many minutes)."""

    def __init__(self, initial: float):
        self._initial = initial
        self._rto = initial
        self._updated: Optional[float] = None
        # (srtt, rttvar) of each estimator, None before its first sample
        self._strong: Optional[tuple[float, float]] = None
        self._weak: Optional[tuple[float, float]] = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} RTO {self._rto:.3f}s>"

    def rto(self, now: float) -> float:
        """The current RTO; one that was not updated for a while moves
        towards the initial value (small ones after 16 RTOs double, large
        ones after 4 RTOs go half way back)."""
        updated = self._updated
        if updated is not None:
            rto = self._rto
            if rto < 1.0 and now - updated > 16 * rto:
                self._set(min(2 * rto, self._initial), now)
            elif rto > 3.0 and now - updated > 4 * rto:
                self._set((self._initial + rto) / 2, now)
        return self._rto

    def _set(self, rto: float, now: float) -> None:
        self._rto = min(max(rto, self.MIN_RTO), self.MAX_RTO)
        self._updated = now

    @staticmethod
    def backoff_factor(rto: float) -> float:
        """The factor by which the timeout grows with each retransmission
        of an exchange that started with the RTO ``rto``."""
        if rto < 1.0:
            return 3.0
        if rto > 3.0:
            return 1.5
        return 2.0

    def sample(self, rtt: float, transmissions: int, now: float) -> None:
        """Feed the round trip ``rtt`` of an exchange, measured from its
        first transmission to the acknowledgement, which came after
        ``transmissions`` transmissions. Exchanges that needed more than
        three transmissions say nothing reliable and are ignored."""
        if rtt < 0:
            return
        if transmissions == 1:
            self._strong = self._update(self._strong, rtt)
            srtt, rttvar = self._strong
            self._set(0.5 * (srtt + self.K_STRONG * rttvar) + 0.5 * self._rto, now)
        elif transmissions <= 3:
            self._weak = self._update(self._weak, rtt)
            srtt, rttvar = self._weak
            self._set(0.25 * (srtt + self.K_WEAK * rttvar) + 0.75 * self._rto, now)

    def _update(self, state: Optional[tuple[float, float]], rtt: float) -> tuple[float, float]:
        if state is None:
            return rtt, rtt / 2
        srtt, rttvar = state
        rttvar = (1 - self.BETA) * rttvar + self.BETA * abs(srtt - rtt)
        srtt = (1 - self.ALPHA) * srtt + self.ALPHA * rtt
        return srtt, rttvar
