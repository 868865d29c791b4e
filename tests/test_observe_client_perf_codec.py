"""What the receive path of every notification relies on: cached derived
TransportTuning values that still follow the parameters, and options
decoding without per-message allocations it does not need."""

import pytest

from aiocoap.message import Message
from aiocoap.numbers import constants
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.options import Options


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


def test_no_invalid_options_share_one_read_only_list():
    a = Message.decode(Message(code=Code.CONTENT, _mtype=1, _mid=1, observe=3, payload=b"x").encode())
    b = Options()
    assert a.opt.invalid_options == [] and not a.opt.invalid_options
    assert a.opt.invalid_options is b.invalid_options
    with pytest.raises(TypeError):
        b.invalid_options.append((OptionNumber.OBSERVE, b""))
    assert b.invalid_options == []


def test_invalid_options_are_per_message_once_there():
    opt = Options()
    # Observe with 4 bytes is too long (0-3)
    rest = opt.decode(bytes([0x64]) + b"\x01\x02\x03\x04" + b"\xffpayload")
    assert rest == b"payload"
    assert opt.invalid_options == [(OptionNumber.OBSERVE, b"\x01\x02\x03\x04")]
    assert Options().invalid_options == []
    copy = opt.copy()
    assert copy.invalid_options == opt.invalid_options
    assert copy.invalid_options is not opt.invalid_options
    assert opt.copy_shallow().invalid_options is opt.invalid_options
    replaced = Options()
    replaced.invalid_options = [(OptionNumber.URI_PATH, b"\xff")]
    assert replaced.invalid_options == [(OptionNumber.URI_PATH, b"\xff")]


def test_message_decode_does_not_depend_on_slicing():
    original = Message(code=Code.CONTENT, _mtype=1, _mid=7, _token=b"tok", observe=70000, max_age=5, payload=b"body")
    data = original.encode()
    decoded = Message.decode(data)
    assert decoded.opt.observe == 70000 and decoded.opt.max_age == 5
    assert decoded.payload == b"body" and decoded.token == b"tok"
    assert decoded.encode() == data
    assert Message.decode(bytearray(data)).encode() == data
