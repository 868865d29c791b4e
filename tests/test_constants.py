"""Tests for aiocoap.numbers.constants: TransportTuning's derived values
(RFC 7252 §4.8.2), which are computed once and cached, still follow the
parameters set later and those of subclasses."""

import pytest

from aiocoap.numbers import constants
from aiocoap.numbers.constants import TransportTuning


def test_derived_values_follow_parameters_set_later():
    tuning = TransportTuning()
    assert tuning.NON_LIFETIME == constants.NON_LIFETIME
    assert tuning.EXCHANGE_LIFETIME == constants.EXCHANGE_LIFETIME
    tuning.ACK_TIMEOUT = 0.1
    tuning.MAX_RETRANSMIT = 2
    assert tuning.MAX_TRANSMIT_SPAN == pytest.approx(0.1 * 3 * 1.5)
    assert tuning.NON_LIFETIME == pytest.approx(0.45 + 100)
    assert tuning.EXCHANGE_LIFETIME == pytest.approx(0.45 + 200.1)
    assert tuning.request_timeout == pytest.approx(1.05)
    tuning.MAX_LATENCY = 1.0
    assert tuning.NON_LIFETIME == pytest.approx(1.45)
    assert tuning.MAX_RTT == pytest.approx(2.1)


def test_derived_values_can_not_be_set_and_stay_out_of_repr():
    tuning = TransportTuning(ACK_TIMEOUT=0.1)
    tuning.EXCHANGE_LIFETIME  # computed and kept
    assert repr(tuning) == "<TransportTuning(ACK_TIMEOUT=0.1)>"
    with pytest.raises(AttributeError):
        tuning.NON_LIFETIME = 5
    with pytest.raises(AttributeError):
        TransportTuning(EXCHANGE_LIFETIME=5)


def test_subclass_values_are_used_for_derived_ones():
    class Quick(TransportTuning):
        ACK_TIMEOUT = 0.5

    class FixedLifetime(TransportTuning):
        NON_LIFETIME = 7.0

    assert Quick().NON_LIFETIME == pytest.approx(0.5 * 15 * 1.5 + 100)
    assert FixedLifetime().NON_LIFETIME == 7.0
