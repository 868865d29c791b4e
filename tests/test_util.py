"""Tests for aiocoap.util (hostinfo helpers, ExtensibleIntEnum, Sentinel,
quote_nonascii) and aiocoap.util.uri."""

import pickle
import string

import pytest
from hypothesis import given, settings, strategies as st

from aiocoap.util import ExtensibleEnumMeta, ExtensibleIntEnum, Sentinel, hostportjoin, hostportsplit, quote_nonascii
from aiocoap.util.uri import quote_factory, sub_delims, unreserved

# --- hostportjoin / hostportsplit ------------------------------------------------


@pytest.mark.parametrize(
    "hostport,expected",
    [
        # the manual's doctests
        ("foo", ("foo", None)),
        ("foo:5683", ("foo", 5683)),
        ("[::1%eth0]:56830", ("::1%eth0", 56830)),
        # RFC 6874 zone identifiers, escaped as %25 inside URIs
        ("[fe80::1%25eth0]", ("fe80::1%eth0", None)),
        ("[fe80::1%25eth0]:1", ("fe80::1%eth0", 1)),
        ("[::1]", ("::1", None)),
        ("[2001:db8::1]:5684", ("2001:db8::1", 5684)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("foo:", ("foo", None)),
        ("[::1]:", ("::1", None)),
        ("h:65535", ("h", 65535)),
    ],
)
def test_hostportsplit(hostport, expected):
    assert hostportsplit(hostport) == expected


@pytest.mark.parametrize(
    "hostport",
    ["[::1", "[::1]x", "[::1]:x", "::1", "foo:bar", "foo:65536", "foo:-1", "foo: 1", "foo:١"],
)
def test_hostportsplit_rejects_malformed(hostport):
    with pytest.raises(ValueError):
        hostportsplit(hostport)


@pytest.mark.parametrize(
    "host,port,expected",
    [
        ("example.com", None, "example.com"),
        ("example.com", 1234, "example.com:1234"),
        ("2001:db8::1", 5683, "[2001:db8::1]:5683"),
        ("::1", None, "[::1]"),
        ("fe80::1%eth0", None, "[fe80::1%25eth0]"),
        ("fe80::1%eth0", 5683, "[fe80::1%25eth0]:5683"),
        ("127.0.0.1", 0, "127.0.0.1:0"),
    ],
)
def test_hostportjoin(host, port, expected):
    assert hostportjoin(host, port) == expected
    assert hostportsplit(expected) == (host, port)


@settings(max_examples=200, deadline=None)
@given(
    host=st.one_of(
        st.ip_addresses().map(str),
        st.from_regex(r"[a-z0-9-]{1,20}(\.[a-z0-9-]{1,20}){0,3}", fullmatch=True),
        st.builds(lambda a, z: f"{a}%{z}", st.ip_addresses(v=6).map(str), st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)),
    ),
    port=st.one_of(st.none(), st.integers(0, 65535)),
)
def test_hostport_round_trip(host, port):
    assert hostportsplit(hostportjoin(host, port)) == (host, port)


# --- quote_nonascii and util.uri -------------------------------------------------


def test_quote_nonascii():
    assert quote_nonascii("a b/ä") == "a b/%C3%A4"
    assert quote_nonascii("plain ASCII: ?&#%") == "plain ASCII: ?&#%"
    assert quote_nonascii("こ") == "%E3%81%93"
    assert quote_nonascii("") == ""


def test_uri_character_classes_rfc3986():
    assert set(unreserved) == set(string.ascii_letters + string.digits + "-._~")
    assert set(sub_delims) >= set("!$&'()*+,;=")
    assert not set(sub_delims) & set(":/?#[]@%")


def test_quote_factory():
    quote = quote_factory(unreserved)
    assert quote("a b/c") == "a%20b%2Fc"
    assert quote("ä~") == "%C3%A4~"
    quote_path = quote_factory(unreserved + sub_delims + ":@")
    assert quote_path("a:b@c&d/e?f") == "a:b@c&d%2Fe%3Ff"
    # everything outside the given set is escaped, even unreserved characters
    assert quote_factory(iter("ab"))("abc-") == "ab%63%2D"
    assert quote_factory("")("") == ""


# --- Sentinel ------------------------------------------------------------------------


def test_sentinel():
    a = Sentinel("Marker")
    b = Sentinel("Marker")
    assert repr(a) == "<Marker>"
    assert a is not b and a != b
    assert a == a
    assert hash(a) != hash(b) or a is not b


# --- ExtensibleIntEnum ------------------------------------------------------------


class Color(ExtensibleIntEnum):
    RED = 1
    GREEN = 2
    SCARLET = 1  # an alias: the first name is the canonical one

    def is_warm(self):
        return self == 1


def test_members_are_instances_and_ints():
    assert isinstance(Color.RED, Color)
    assert isinstance(Color.RED, int)
    assert Color.RED == 1 and Color.RED + 1 == 2 and type(Color.RED + 1) is int
    assert type(ExtensibleIntEnum) is ExtensibleEnumMeta
    assert Color.RED.is_warm() and not Color.GREEN.is_warm()


def test_lookup_gives_the_member():
    assert Color(1) is Color.RED
    assert Color(Color.GREEN) is Color.GREEN
    assert Color.SCARLET is Color.RED
    assert Color(1).name == "RED"


def test_unknown_values_work_and_print():
    seven = Color(7)
    assert seven == 7 and isinstance(seven, Color)
    assert repr(seven) == "<Color 7>"
    assert str(seven) == "7"
    assert seven.name == "7"
    assert seven.value == 7
    assert not seven.is_known()
    assert seven.is_warm() is False
    assert repr(Color.RED) == '<Color 1 "RED">'
    assert str(Color.RED) == "RED"
    assert Color.RED.is_known()


def test_formatting():
    assert f"{Color.RED}" == "RED"
    assert f"{Color.RED:d}" == "1"
    assert f"{Color.GREEN:02x}" == "02"
    assert "%d" % Color.GREEN == "2"


def test_rejects_non_integers():
    for bad in ("1", 1.5, None, b"\x01"):
        with pytest.raises(TypeError):
            Color(bad)


def test_hashing_and_equality_as_int():
    assert hash(Color.RED) == hash(1)
    assert {Color.RED: "x"}[1] == "x"
    assert {1: "x"}[Color.RED] == "x"
    assert Color(7) == Color(7) and hash(Color(7)) == hash(7)
    assert len({Color.RED, Color(1), 1, Color(7), 7}) == 2


def test_membership_and_iteration():
    assert 1 in Color and Color.GREEN in Color
    assert 7 not in Color
    assert list(Color) == [Color.RED, Color.GREEN]


def test_pickling():
    assert pickle.loads(pickle.dumps(Color.RED)) is Color.RED
    unknown = pickle.loads(pickle.dumps(Color(7)))
    assert unknown == 7 and type(unknown) is Color and not unknown.is_known()


def test_subclass_inherits_members():
    class MoreColors(Color):
        BLUE = 3

    assert MoreColors(3).name == "BLUE"
    assert MoreColors(2) == 2
    assert isinstance(MoreColors.BLUE, MoreColors)


async def test_result_within_keeps_a_cancellation_that_meets_the_result():
    """asyncio.wait_for (Python < 3.12) returns the result when it arrives
    in the loop iteration in which the waiting task is cancelled: the
    cancellation is lost. A Registerer's shutdown() then waited for ever
    for its refresh loop (seen once in a full test run)."""
    import asyncio

    from aiocoap.util.asyncio import result_within

    future = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(result_within(future, 10))
    await asyncio.sleep(0)
    future.set_result("response")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_result_within_times_out_and_cancels_what_it_waited_for():
    import asyncio

    from aiocoap.util.asyncio import result_within

    future = asyncio.get_running_loop().create_future()
    with pytest.raises(asyncio.TimeoutError):
        await result_within(future, 0.01)
    assert future.cancelled()
    assert await result_within(asyncio.sleep(0, "done"), 1) == "done"


def test_random_chunks_of_a_forked_child_are_its_own():
    """Values drawn before a fork are not handed out by both processes."""
    import os

    from aiocoap.util.secrets import RandomChunks

    if not hasattr(os, "fork"):
        pytest.skip("no os.fork on this platform")
    chunks = RandomChunks(8)
    chunks()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, chunks())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as child:
        from_child = child.read()
    assert len(from_child) == 8
    assert from_child != chunks()


async def test_future_drops_on_cancel_when_it_gets_a_result_or_exception():
    """Its owner needs no done callback to release the handler (one loop
    callback per request less); a cancellation still calls it at once."""
    import asyncio

    from aiocoap.util.asyncio import Future

    loop = asyncio.get_running_loop()
    calls = []
    for settle in (lambda f: f.set_result("response"), lambda f: f.set_exception(ValueError())):
        future = Future(loop=loop)
        future.on_cancel = calls.append
        settle(future)
        assert future.on_cancel is None
        future.exception()  # (retrieved: no "never retrieved" warning)
    assert calls == []

    future = Future(loop=loop)
    future.on_cancel = calls.append
    future.cancel()
    assert calls == [future] and future.on_cancel is None


async def test_future_calls_on_outcome_within_set_result_and_set_exception():
    """What the callback sets wakes its awaiter an iteration sooner than
    from a done callback; a future done already calls it at once; a
    cancellation does not call it."""
    import asyncio

    from aiocoap.util.asyncio import Future

    loop = asyncio.get_running_loop()
    seen = []

    def outcome(future):
        seen.append(future.exception() or future.result())

    future = Future(loop=loop)
    future.call_on_outcome(outcome)
    future.set_result("response")
    assert seen == ["response"]
    error = ValueError()
    future = Future(loop=loop)
    future.call_on_outcome(outcome)
    future.set_exception(error)
    assert seen == ["response", error]

    done = Future(loop=loop)
    done.set_result("early")
    done.call_on_outcome(outcome)
    assert seen == ["response", error, "early"]

    cancelled = Future(loop=loop)
    cancelled.call_on_outcome(outcome)
    cancelled.cancel()
    cancelled.call_on_outcome(outcome)
    assert seen == ["response", error, "early"]
