"""What the asyncio adapters of the RFC 8323 session share
(aiocoap.transports.rfc8323adapter): the hold-off memory, the choice of
the idle connection to close, the TLS context from the credentials, and
how an interface sets a client connection up (SessionDriver's
start_connecting / wait_ready / connecting_failed). The rest of the
connection glue runs in every test of tests/test_tcp.py, tests/test_tls.py
and tests/test_ws*.py."""

from __future__ import annotations

import asyncio
import logging
import ssl

import pytest

from aiocoap import error
from aiocoap.credentials import CredentialsMap
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.transports.rfc8323adapter import HoldOffs, SessionDriver, client_ssl_context, idle_victim


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_hold_offs_expire_and_stay_bounded():
    clock = Clock()
    hold_offs = HoldOffs(clock, limit=3)
    hold_offs.add("a", 10)
    with pytest.raises(error.NetworkError, match="coap\\+tcp://a asked not to be contacted for another 10 s"):
        hold_offs.check("a", "coap+tcp://a")
    hold_offs.check("b", "b")  # unknown: fine
    clock.now += 10
    hold_offs.check("a", "a")  # expired, and forgotten
    assert len(hold_offs) == 0
    for i in range(10):
        hold_offs.add(i, 1000 - i)
        assert len(hold_offs) <= 3
    # the ones ending soonest made room
    with pytest.raises(error.NetworkError):
        hold_offs.check(9, "nine")


class Connection:
    def __init__(self, since):
        self.since = since

    def idle_rank(self):
        return self.since


def test_idle_victim_is_the_one_idle_longest():
    busy, recent, old = Connection(None), Connection(50.0), Connection(10.0)
    assert idle_victim([busy, recent, old]) is old
    assert idle_victim([busy]) is None
    assert idle_victim([]) is None


def test_client_ssl_context_follows_the_credentials(tmp_path):
    cryptography = pytest.importorskip("cryptography")  # noqa: F841
    from test_tls import PKI

    pki = PKI(tmp_path)
    credentials = CredentialsMap()
    credentials.load_from_dict({"coaps+ws://example.com/*": {"tls": {"ca-file": pki.ca}}})
    message = Message(code=Code.GET, uri="coaps+ws://example.com/x")
    context = client_ssl_context(credentials, message, "coaps+ws://other.example/", "http/1.1")
    assert isinstance(context, ssl.SSLContext)
    # without a message, the fallback URI decides
    assert client_ssl_context(credentials, None, "coaps+ws://other.example/", "http/1.1") is None
    assert client_ssl_context(credentials, None, "coaps+ws://example.com/", "coap") is not None
    assert client_ssl_context(None, message, "coaps+ws://example.com/", "coap") is None


class Driver(SessionDriver):
    """A client connection without a socket: counts the sessions it was
    asked to start."""

    scheme = "coap+tcp"
    _uri_default_port = 5683

    def __init__(self, loop):
        super().__init__(loop, logging.getLogger("test_rfc8323adapter"), loop.time, local_is_server=False)
        self.sessions = 0

    def _new_session(self):
        self.sessions += 1


async def test_start_connecting_runs_the_connect_task_and_wait_ready_reports_its_failure():
    driver = Driver(asyncio.get_running_loop())
    connected = asyncio.Event()

    async def connect():
        connected.set()

    task = driver.start_connecting(connect(), "test connect")
    assert driver.sessions == 1 and task.get_name() == "test connect"
    waiter = asyncio.create_task(driver.wait_ready())
    await task
    assert connected.is_set() and not waiter.done()
    driver.connecting_failed(error.NetworkError("refused"))
    with pytest.raises(error.NetworkError, match="refused"):
        await waiter
    with pytest.raises(error.NetworkError, match="refused"):
        await driver.wait_ready()


async def test_wait_ready_returns_once_the_session_is_ready():
    driver = Driver(asyncio.get_running_loop())

    async def connect():
        driver._session_ready()  # (what the session calls when the peer's CSM arrives)

    task = driver.start_connecting(connect(), "test connect")
    await driver.wait_ready()
    await task
