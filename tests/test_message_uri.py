"""Tests for request URI decomposition (Message.set_request_uri, RFC 7252
§6.4) and composition (Message.get_request_uri, RFC 7252 §6.5), including
the URI examples of RFC 7252 Appendix B."""

from dataclasses import dataclass
from typing import Optional

import pytest
from hypothesis import given, settings, strategies as st

from aiocoap import error
from aiocoap.message import Message, UndecidedRemote
from aiocoap.numbers.codes import Code

GET = Code.GET


def parsed(uri, **kwargs):
    message = Message(code=GET)
    message.set_request_uri(uri, **kwargs)
    return message


@dataclass
class FakeAddress:
    """Just what get_request_uri reads from an EndpointAddress."""

    scheme: str
    hostinfo: str
    hostinfo_local: str = "local.invalid"
    is_multicast: bool = False


# --- RFC 7252 Appendix B ------------------------------------------------------


def test_appendix_b_ip_literal_only():
    message = parsed("coap://[2001:db8::2:1]/")
    assert message.opt.option_list() == []
    assert message.remote == UndecidedRemote("coap", "[2001:db8::2:1]")
    assert message.get_request_uri() == "coap://[2001:db8::2:1]/"


def test_appendix_b_host_name():
    message = parsed("coap://example.net/")
    assert message.opt.uri_host == "example.net"
    assert message.opt.uri_path == ()
    assert message.get_request_uri() == "coap://example.net/"
    # composed from options plus a resolved address
    # (transports leave the default port out of an address' hostinfo)
    resolved = Message(code=GET, uri_host="example.net")
    resolved.remote = FakeAddress("coap", "[2001:db8::2:1]")
    assert resolved.get_request_uri() == "coap://example.net/"


def test_appendix_b_well_known_core():
    message = parsed("coap://example.net/.well-known/core")
    assert message.opt.uri_host == "example.net"
    assert message.opt.uri_path == (".well-known", "core")
    assert message.get_request_uri() == "coap://example.net/.well-known/core"


def test_appendix_b_internationalized_path():
    uri = "coap://xn--18j4d.example/%E3%81%93%E3%82%93%E3%81%AB%E3%81%A1%E3%81%AF"
    message = parsed(uri)
    assert message.opt.uri_host == "xn--18j4d.example"
    assert message.opt.uri_path == ("こんにちは",)
    assert message.get_request_uri() == uri


def test_appendix_b_empty_segments_and_escaped_delimiters():
    message = parsed("coap://198.51.100.1:61616//%2F//?%2F%2F&?%26")
    assert message.opt.uri_host is None  # IPv4 literal
    assert message.opt.uri_port is None  # the port goes to the remote
    assert message.remote == UndecidedRemote("coap", "198.51.100.1:61616")
    assert message.opt.uri_path == ("", "/", "", "")
    assert message.opt.uri_query == ("//", "?&")
    # §6.5 leaves '/' and '?' in queries unescaped; the result decomposes
    # to the same options.
    composed = message.get_request_uri()
    assert composed == "coap://198.51.100.1:61616//%2F//?//&?%26"
    again = parsed(composed)
    assert again.opt.uri_path == message.opt.uri_path
    assert again.opt.uri_query == message.opt.uri_query


# --- §6.4 decomposition --------------------------------------------------------


@pytest.mark.parametrize(
    "uri,path",
    [
        ("coap://h", ()),
        ("coap://h/", ()),
        ("coap://h/a", ("a",)),
        ("coap://h/a/", ("a", "")),
        ("coap://h//", ("", "")),
        ("coap://h/a/b/c", ("a", "b", "c")),
    ],
)
def test_path_segments(uri, path):
    assert parsed(uri).opt.uri_path == path


@pytest.mark.parametrize(
    "uri,path,query",
    [
        ("coap://h/a%20b", ("a b",), ()),
        ("coap://h/a%2Fb", ("a/b",), ()),
        ("coap://h/a%3Fb", ("a?b",), ()),
        ("coap://h/a&b", ("a&b",), ()),
        ("coap://h/%C3%A4", ("ä",), ()),
        ("coap://h/ä", ("ä",), ()),
        ("coap://h/a+b", ("a+b",), ()),
        ("coap://h/?a=1&b=2", (), ("a=1", "b=2")),
        ("coap://h/?a%26b=c", (), ("a&b=c",)),
        ("coap://h/?a=%20", (), ("a= ",)),
        ("coap://h/?a&&b", (), ("a", "", "b")),
        ("coap://h/?", (), ()),
        ("coap://h/x?a?b", ("x",), ("a?b",)),
        ("coap://h?q", (), ("q",)),
    ],
)
def test_percent_decoding(uri, path, query):
    message = parsed(uri)
    assert message.opt.uri_path == path
    assert message.opt.uri_query == query


def test_host_is_lowercased_and_percent_decoded():
    message = parsed("coap://Example.NET/")
    assert message.opt.uri_host == "example.net"
    assert message.remote == UndecidedRemote("coap", "example.net")
    assert parsed("coap://%C3%A4.example/").opt.uri_host == "ä.example"


@pytest.mark.parametrize(
    "uri,hostinfo",
    [
        ("coap://[::1]/", "[::1]"),
        ("coap://[::1]:1234/", "[::1]:1234"),
        ("coap://127.0.0.1/", "127.0.0.1"),
        ("coap://[fe80::1%25eth0]/", "[fe80::1%25eth0]"),
        ("coap://[fe80::1%25eth0]:61616/", "[fe80::1%25eth0]:61616"),
    ],
)
def test_ip_literals_give_no_uri_host(uri, hostinfo):
    message = parsed(uri)
    assert message.opt.uri_host is None
    assert message.remote.hostinfo == hostinfo


def test_scheme_is_kept_in_the_remote_and_lowercased():
    for scheme in ("coap", "coaps", "coap+tcp", "coaps+tcp", "coap+ws"):
        assert parsed(f"{scheme}://h/").remote == UndecidedRemote(scheme, "h")
    assert parsed("COAP://h/").remote.scheme == "coap"


def test_set_uri_host_false():
    message = parsed("coap://example.com:1234/a", set_uri_host=False)
    assert message.opt.uri_host is None
    assert message.remote == UndecidedRemote("coap", "example.com:1234")
    assert message.unresolved_remote == "example.com:1234"
    assert message.opt.uri_path == ("a",)
    assert message.get_request_uri() == "coap://example.com:1234/a"


def test_set_request_uri_replaces_previous_uri_options():
    message = parsed("coap://h1:99/a/b?x")
    message.set_request_uri("coap://[::1]/c")
    assert message.opt.uri_host is None
    assert message.opt.uri_path == ("c",)
    assert message.opt.uri_query == ()
    assert message.remote == UndecidedRemote("coap", "[::1]")


@pytest.mark.parametrize(
    "uri",
    [
        "coap://h/#frag",
        "coap://h/a#",
        "coap://h#",
        "coap://user@h/",
        "coap://user:pw@h/",
        "coap://h:port/",
        "coap://h:99999/",
        "coap://h:-1/",
        "coap://[::1/",
        "coap://::1/",
        "coap://[::1]x/",
        "coap://h/%FF",
        "coap://h/?%C3",
        "coap://%FF/",
        "coap://a%3Ab/",
        "coap://a%5Bb/",
    ],
)
def test_malformed_uris(uri):
    with pytest.raises(error.MalformedUrlError):
        parsed(uri)


@pytest.mark.parametrize("uri", ["/a/b", "h/a", "//h/a", "coap:///a", "coap:/a", "coap:", ""])
def test_incomplete_uris(uri):
    with pytest.raises(error.MalformedUrlError) as excinfo:
        parsed(uri)
    assert isinstance(excinfo.value, error.IncompleteUrlError)


def test_malformed_url_error_is_a_valueerror():
    with pytest.raises(ValueError):
        parsed("coap://h/#f")


def test_empty_port_is_the_default():
    # RFC 3986 §3.2.3: "port = *DIGIT", an empty port means the default
    message = parsed("coap://h:/a")
    assert message.remote == UndecidedRemote("coap", "h")


# --- §6.5 composition ----------------------------------------------------------


@pytest.mark.parametrize(
    "uri,expected",
    [
        ("coap://h:5683/", "coap://h:5683/"),
        ("coaps://h:5684/", "coaps://h:5684/"),
        ("coap+tcp://h:5683/", "coap+tcp://h:5683/"),
        ("coaps+tcp://h:5684/", "coaps+tcp://h:5684/"),
        ("coap://h:5684/", "coap://h:5684/"),
        ("coaps://h:5683/", "coaps://h:5683/"),
        ("coap+tcp://h:1234/", "coap+tcp://h:1234/"),
        ("coap://[::1]:5683/", "coap://[::1]:5683/"),
        ("coap://[::1]:1/", "coap://[::1]:1/"),
        ("coap://[fe80::1%25eth0]:5683/x", "coap://[fe80::1%25eth0]:5683/x"),
        ("coap://h", "coap://h/"),
        ("coap://h/a/", "coap://h/a/"),
    ],
)
def test_explicit_ports_are_kept_even_default_ones(uri, expected):
    # As aiocoap 0.4.x: the URI comes back as it was given (the addresses
    # of resolved remotes leave default ports out by themselves).
    assert parsed(uri).get_request_uri() == expected


@pytest.mark.parametrize(
    "path,query,expected",
    [
        (("a b",), (), "/a%20b"),
        (("a/b",), (), "/a%2Fb"),
        (("a?b",), (), "/a%3Fb"),
        (("a&b=c",), (), "/a&b=c"),
        (("ä",), (), "/%C3%A4"),
        (("a:b@c",), (), "/a:b@c"),
        (("%",), (), "/%25"),
        ((), ("a&b",), "/?a%26b"),
        ((), ("a=b", "c"), "/?a=b&c"),
        ((), ("k=a b",), "/?k=a%20b"),
        ((), ("/?:@",), "/?/?:@"),
        ((), ("#",), "/?%23"),
    ],
)
def test_percent_encoding_on_composition(path, query, expected):
    message = Message(code=GET, uri_path=path, uri_query=query)
    message.remote = UndecidedRemote("coap", "h")
    assert message.get_request_uri() == "coap://h" + expected


def test_composition_prefers_uri_host_and_uri_port_options():
    message = Message(code=GET, uri_host="example.com", uri_port=61616, uri_path=["x"])
    message.remote = FakeAddress("coap", "[2001:db8::1]")
    assert message.get_request_uri() == "coap://example.com:61616/x"
    message.opt.uri_port = 5683
    assert message.get_request_uri() == "coap://example.com:5683/x"
    message.opt.uri_port = None
    assert message.get_request_uri() == "coap://example.com/x"


def test_composition_of_non_ascii_host():
    message = parsed("coap://%C3%A4.example/")
    assert message.get_request_uri() == "coap://%C3%A4.example/"


def test_composition_with_ipv6_uri_host():
    message = Message(code=GET, uri_host="2001:db8::1")
    message.remote = FakeAddress("coap", "[2001:db8::1]")
    assert message.get_request_uri() == "coap://[2001:db8::1]/"


def test_proxy_uri_wins():
    message = Message(code=GET, proxy_uri="http://example.com/x?y")
    message.remote = FakeAddress("coap", "proxy.example")
    assert message.get_request_uri() == "http://example.com/x?y"


def test_proxy_scheme_overrides_the_scheme():
    message = Message(code=GET, uri="coap://example.com/x", proxy_scheme="http")
    assert message.get_request_uri() == "http://example.com/x"


def test_no_remote_is_an_error():
    message = Message(code=GET, uri_path=["a"])
    with pytest.raises(ValueError):
        message.get_request_uri()
    with pytest.raises(ValueError):
        message.get_request_uri(local_is_server=True)


def test_an_unsent_request_has_no_local_side():
    message = Message(code=GET, uri="coap://example.com/a")
    with pytest.raises(ValueError, match="no local side"):
        message.get_request_uri(local_is_server=True)


def test_server_side_uses_the_local_hostinfo():
    request = Message.decode(b"\x40\x01\x00\x01\xb1a", FakeAddress("coap", "[2001:db8::2]:40000", "[2001:db8::1]"))
    assert request.get_request_uri(local_is_server=True) == "coap://[2001:db8::1]/a"
    assert request.get_request_uri() == "coap://[2001:db8::2]:40000/a"
    request.opt.uri_host = "example.com"
    assert request.get_request_uri(local_is_server=True) == "coap://example.com/a"


def test_response_uri_comes_from_its_request():
    request = Message(code=GET, uri="coap://example.com/a?b")
    response = Message.decode(b"\x60\x45\x00\x01", FakeAddress("coap", "[2001:db8::1]:5683"))
    response.request = request
    assert response.get_request_uri() == "coap://example.com/a?b"


def test_response_to_multicast_request_names_the_responder():
    request = Message(code=GET, uri_path=["a"], uri_query=["b"])
    request.remote = FakeAddress("coap", "[ff02::fd]", is_multicast=True)
    response = Message.decode(b"\x50\x45\x00\x01", FakeAddress("coap", "[2001:db8::7]:5683"))
    response.request = request
    assert response.get_request_uri() == "coap://[2001:db8::7]:5683/a?b"


def test_response_without_request_is_an_error():
    response = Message.decode(b"\x60\x45\x00\x01", FakeAddress("coap", "h"))
    with pytest.raises(ValueError):
        response.get_request_uri()


def test_deprecated_requested_properties():
    request = Message(code=GET, uri="coaps://example.com:99/a/b?c")
    assert request.requested_scheme == "coaps"
    assert request.requested_hostinfo == "example.com:99"
    assert request.requested_path == ("a", "b")
    assert request.requested_query == ("c",)
    assert request.requested_proxy_uri is None
    response = Message.decode(b"\x60\x45\x00\x01", FakeAddress("coaps", "h"))
    response.request = request
    assert response.requested_path == ("a", "b")
    assert response.requested_hostinfo == "example.com:99"


# --- round trip property ---------------------------------------------------------

segment = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
ports = st.one_of(st.none(), st.integers(1, 65535))
schemes = st.sampled_from(["coap", "coaps", "coap+tcp", "coaps+tcp"])


@settings(max_examples=300, deadline=None)
@given(
    scheme=schemes,
    host=hosts,
    port=ports,
    path=st.lists(segment, max_size=5),
    query=st.lists(segment, max_size=4),
)
def test_uri_round_trip(scheme, host, port, path, query):
    # A single empty segment or query is not expressible in a URI ("h/" and
    # "h/?" read as no option at all, RFC 7252 §6.4 steps 8 and 9).
    if path == [""]:
        path = []
    if query == [""]:
        query = []
    message = Message(code=GET, uri_path=path, uri_query=query)
    if ":" in host:
        hostinfo = f"[{host}]"
    else:
        hostinfo = host
        if not host[0].isdigit():
            message.opt.uri_host = host
    message.remote = UndecidedRemote(scheme, hostinfo if port is None else f"{hostinfo}:{port}")

    uri = message.get_request_uri()
    again = parsed(uri)
    assert again.opt.uri_path == tuple(path)
    assert again.opt.uri_query == tuple(query)
    assert again.opt.uri_host == message.opt.uri_host
    assert again.remote.scheme == scheme
    assert again.get_request_uri() == uri
