"""What hostile peers can make an RFC 8323 session do (issue 20), on a
virtual clock: log lines stay few however many connections misbehave, a
peer's absurd Max-Message-Size ends the connection, idle and slow
connections are closed. Socket-level versions of the server caps are in
tests/test_tcp_hostile.py.
"""

from __future__ import annotations

import logging

import pytest

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.transports import rfc8323common as rfc
from aiocoap.transports.rfc8323session import (
    MIN_PEER_MAX_MESSAGE_SIZE,
    PeerLog,
    RFC8323Session,
    SessionState,
    SessionTuning,
    StreamFramer,
)

from test_rfc8323session import Remote

LOGGER = "test-rfc8323hostile"
log = logging.getLogger(LOGGER)
START = 1000.0


class ServerEnd:
    """A server-side session whose peer is the test: ``feed`` bytes,
    read what it ``written``."""

    def __init__(self, name="peer", tuning=SessionTuning(), peer_log=None):
        self.written: list[bytes] = []
        self.requests: list[Message] = []
        self.closed: list = []
        self.remote = Remote(name, local_is_server=True)
        self.session = RFC8323Session(
            framer=StreamFramer(tuning.max_message_size),
            write=self.written.append,
            backlog=lambda: 0,
            deliver_request=self.requests.append,
            deliver_response=lambda message: False,
            remote=self.remote,
            log=log,
            tuning=tuning,
            on_close=lambda reason, hard: self.closed.append((reason, hard)),
            peer_log=peer_log,
        )
        self.session.start(START)

    def sent(self) -> list[Message]:
        return rfc.StreamParser(1 << 30).feed(b"".join(self.written))


def frame(message: Message) -> bytes:
    return rfc.encode_message(message)


def csm(max_message_size=1152) -> bytes:
    return frame(rfc.CSM(max_message_size, False).to_message())


def records(caplog, level):
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


# --- log flooding (issue 20, weakness 5) --------------------------------------------


def test_a_thousand_connections_without_csm_give_one_warning(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    shared = PeerLog(log)
    ends = [ServerEnd(f"peer{i}", peer_log=shared) for i in range(1000)]
    deadline = ends[0].session.next_deadline()
    for end in ends:
        end.session.handle_timer(deadline)
        assert end.session.state is SessionState.CLOSED
        assert end.sent()[-1].code == Code.ABORT
    (warning,) = records(caplog, logging.WARNING)
    assert "no CSM received" in warning.getMessage()
    assert len([r for r in records(caplog, logging.DEBUG) if "no CSM" in r.getMessage()]) == 999
    # A minute later, the next one says how many were not shown.
    late = ServerEnd("late", peer_log=shared)
    late.session.handle_timer(deadline + 60)
    assert "(and 999 more like it" in records(caplog, logging.WARNING)[-1].getMessage()


def test_ten_thousand_oversized_responses_give_one_warning(caplog):
    """One connection announcing a small Max-Message-Size and asking for a
    large resource 10 000 times: 10 000 5.00 responses, one warning."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    end = ServerEnd()
    end.session.receive_data(csm(MIN_PEER_MAX_MESSAGE_SIZE), START)
    requests = b"".join(
        frame(Message(code=Code.GET, _token=i.to_bytes(2, "big"), uri_path=["big"])) for i in range(10000)
    )
    end.session.receive_data(requests, START)
    assert len(end.requests) == 10000
    for i, request in enumerate(end.requests):
        end.session.send(Message(code=Code.CONTENT, _token=request.token, payload=b"x" * 200), START + i * 1e-4)
    responses = end.sent()[1:]
    assert len(responses) == 10000 and {r.code for r in responses} == {Code.INTERNAL_SERVER_ERROR}
    (warning,) = records(caplog, logging.WARNING)
    assert "exceeds the Max-Message-Size 64" in warning.getMessage()


def test_peer_endings_are_summarized_at_info(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    shared = PeerLog(log)
    for i in range(100):
        end = ServerEnd(f"peer{i}", peer_log=shared)
        end.session.receive_data(csm() + frame(rfc.Abort(diagnostic="bye").to_message()), START)
        assert end.session.state is SessionState.CLOSED
    (info,) = records(caplog, logging.INFO)
    assert "aborted the connection: bye" in info.getMessage()


@pytest.mark.parametrize("size", [0, 10, MIN_PEER_MAX_MESSAGE_SIZE - 1])
def test_a_max_message_size_below_the_minimum_is_aborted(size):
    end = ServerEnd()
    end.session.receive_data(csm(size) + frame(Message(code=Code.GET, _token=b"1")), START)
    assert end.requests == []  # the request after the CSM is not processed
    abort = end.sent()[-1]
    assert abort.code == Code.ABORT
    assert rfc.Abort.from_message(abort).bad_csm_option == rfc.CSM_MAX_MESSAGE_SIZE
    assert end.session.state is SessionState.CLOSED
    assert "Max-Message-Size" in str(end.closed[0][0])


def test_a_later_csm_may_not_lower_it_below_the_minimum_either():
    end = ServerEnd()
    end.session.receive_data(csm(), START)
    assert end.session.state is SessionState.OPEN
    end.session.receive_data(csm(10), START)
    assert end.session.state is SessionState.CLOSED


def test_the_minimum_itself_is_accepted():
    end = ServerEnd()
    end.session.receive_data(csm(MIN_PEER_MAX_MESSAGE_SIZE), START)
    assert end.session.state is SessionState.OPEN
