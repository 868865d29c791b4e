"""Tests of aiocoap.util.linkformat: the RFC 6690 model, serializer and
parser."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocoap.numbers import ContentFormat
from aiocoap.util.linkformat import Link, LinkFormat, parse
from fuzzing import fuzz_settings

# --- serialization ------------------------------------------------------------


@pytest.mark.parametrize(
    "link, expected",
    [
        (Link("/a"), "</a>"),
        (Link("/a", rt="temperature-c"), '</a>;rt="temperature-c"'),
        (Link("/a", if_="sensor"), '</a>;if="sensor"'),
        (Link("/a", **{"if": "sensor"}), '</a>;if="sensor"'),
        (Link("/a", rel="impl-info"), '</a>;rel="impl-info"'),
        (Link("/a", rev="x"), '</a>;rev="x"'),
        (Link("/a", anchor="/b"), '</a>;anchor="/b"'),
        (Link("/a", title="Temp"), '</a>;title="Temp"'),
        (Link("/a", ct=40), "</a>;ct=40"),
        (Link("/a", ct="0"), "</a>;ct=0"),
        (Link("/a", ct=ContentFormat.LINKFORMAT), "</a>;ct=40"),
        (Link("/a", ct="40 64 504"), '</a>;ct="40 64 504"'),
        (Link("/a", ct=[40, 64]), '</a>;ct="40 64"'),
        (Link("/a", sz=1024), "</a>;sz=1024"),
        (Link("/a", sz="big"), '</a>;sz="big"'),
        (Link("/a", obs=None), "</a>;obs"),
        (Link("/a", obs=True), "</a>;obs"),
        (Link("/a", obs=False), "</a>"),
        (Link("/a", foo="bar/baz"), "</a>;foo=bar/baz"),
        (Link("/a", foo="two words"), '</a>;foo="two words"'),
        (Link("/a", foo=""), '</a>;foo=""'),
        (Link("/a", foo="x;y,z"), '</a>;foo="x;y,z"'),
        (Link("/a", rt=["a", "b"]), '</a>;rt="a b"'),
        (Link("/a", foo=["x", "y"]), "</a>;foo=x;foo=y"),
        (Link("/a", title='say "hi" \\o/'), '</a>;title="say \\"hi\\" \\\\o/"'),
        (Link("coap://example.com/x", [("rt", "r"), ("obs", None)], ct=0), '<coap://example.com/x>;rt="r";obs;ct=0'),
    ],
)
def test_serialize_link(link, expected):
    assert str(link) == expected


def test_serialize_document_uses_no_whitespace():
    doc = LinkFormat([Link("/time", obs=None), Link("/.well-known/core", ct=40), Link("/other/block")])
    assert str(doc) == "</time>;obs,</.well-known/core>;ct=40,</other/block>"


def test_empty_document_is_empty_string():
    assert str(LinkFormat()) == ""
    assert str(LinkFormat([])) == ""


def test_attribute_names_are_lowercased():
    link = Link("/a", [("RT", "x")], CT=0)
    assert link.attr_pairs == [("rt", "x"), ("ct", "0")]


# --- model -------------------------------------------------------------------


def test_link_accessors():
    link = Link("/a", [("rt", "one"), ("rt", "two"), ("obs", None)], if_="sensor")
    assert link.get("rt") == "one"
    assert link.get("RT") == "one"
    assert link.get("missing", "dflt") == "dflt"
    assert link.get_attributes("rt") == ["one", "two"]
    assert link.get_attributes("obs") == [None]
    assert link.get_attributes("missing") == []
    assert "obs" in link and "rt" in link and "title" not in link
    assert link.rt == "one"
    assert link.if_ == "sensor"
    assert link.obs is None
    with pytest.raises(AttributeError):
        link.title
    with pytest.raises(AttributeError):
        link.__missing_dunder__


def test_link_equality():
    assert Link("/a", rt="x") == Link("/a", [("rt", "x")])
    assert Link("/a", rt="x") != Link("/b", rt="x")
    assert Link("/a", rt="x") != Link("/a", rt="y")
    assert Link("/a") != "/a"
    assert "Link </a>;ct=0" in repr(Link("/a", ct=0))


@pytest.mark.parametrize("href", ["/a>b", "/a<b", "/a b", "/a\nb", "/\x00", "/\x7f"])
def test_bad_href_rejected(href):
    with pytest.raises(ValueError, match="not allowed"):
        Link(href)


def test_href_must_be_str():
    with pytest.raises(TypeError):
        Link(b"/a")


@pytest.mark.parametrize("name", ["", "a b", "a=b", "a;", 'a"'])
def test_bad_attribute_name_rejected(name):
    with pytest.raises(ValueError, match="attribute name"):
        Link("/a", [(name, "x")])


def test_bad_attribute_values_rejected():
    with pytest.raises(TypeError):
        Link("/a", rt=1.5)
    with pytest.raises(TypeError):
        Link("/a", [("rt", b"x")])
    with pytest.raises(TypeError):
        Link("/a", ["rt"])


def test_linkformat_container():
    links = [Link("/a", rt="x"), Link("/b", rt="y"), Link("/c", rt="x", ct="0")]
    doc = LinkFormat(links)
    assert len(doc) == 3
    assert list(doc) == links
    assert doc == LinkFormat(list(links))
    assert doc != LinkFormat(links[:2])
    assert doc.links_by_attr_pairs([("rt", "x")]) == [links[0], links[2]]
    assert doc.links_by_attr_pairs([("rt", "x"), ("ct", "0")]) == [links[2]]
    assert doc.links_by_attr_pairs([("RT", "y")]) == [links[1]]
    assert "3 link(s)" in repr(doc)


def test_coerce():
    doc = LinkFormat([Link("/a")])
    assert LinkFormat.coerce(doc) is doc
    assert LinkFormat.coerce("</a>;ct=0") == LinkFormat([Link("/a", ct=0)])
    assert LinkFormat.coerce(b"</a>") == LinkFormat([Link("/a")])

    # Shaped like the LinkHeader package's objects, without needing it
    class ForeignLink:
        def __init__(self, href, attr_pairs):
            self.href = href
            self.attr_pairs = attr_pairs

    class ForeignHeader:
        def __init__(self, links):
            self.links = links

    foreign = ForeignHeader([ForeignLink("/x", [["rt", "r"], ["obs", None]]), ForeignLink("/y", [])])
    assert LinkFormat.coerce(foreign) == LinkFormat([Link("/x", rt="r", obs=None), Link("/y")])

    with pytest.raises(TypeError, match="link format"):
        LinkFormat.coerce(42)


# --- parsing -------------------------------------------------------------------


def test_parse_rfc6690_section5_example():
    text = (
        '</sensors/temp>;rt="temperature-c";if="sensor",'
        '</sensors/light>;rt="light-lux";if="sensor"'
    )
    doc = parse(text)
    assert doc == LinkFormat(
        [
            Link("/sensors/temp", rt="temperature-c", if_="sensor"),
            Link("/sensors/light", rt="light-lux", if_="sensor"),
        ]
    )
    assert str(doc) == text


def test_parse_anchor_and_title_star():
    text = "</t>;anchor=\"/sensors/temp\";rel=\"describedby\";title*=UTF-8'de'T%C3%BCr;sz=12"
    (link,) = parse(text).links
    assert link.href == "/t"
    assert link.attr_pairs == [
        ("anchor", "/sensors/temp"),
        ("rel", "describedby"),
        ("title*", "UTF-8'de'T%C3%BCr"),
        ("sz", "12"),
    ]


def test_parse_tolerates_whitespace_and_folds_names():
    doc = parse(' </time> ; OBS , </.well-known/core> ;ct = 40 ,\n</x>; Title = "Hello, world" ')
    assert doc == LinkFormat(
        [Link("/time", obs=None), Link("/.well-known/core", ct=40), Link("/x", title="Hello, world")]
    )


def test_parse_unquotes_escapes():
    (link,) = parse(r'</a>;title="a \"b\" c\\d\e"').links
    assert link.title == 'a "b" c\\de'


def test_parse_empty_and_bytes():
    assert parse("") == LinkFormat()
    assert parse("  \r\n") == LinkFormat()
    assert parse(b"</a>;ct=0") == LinkFormat([Link("/a", ct=0)])
    assert parse(bytearray(b"</a>")) == LinkFormat([Link("/a")])
    assert parse("</\u00e4>;title=\"\u00fc\"".encode()).links[0].title == "\u00fc"


def test_parse_tour_output_form():
    # The form the guided tour shows (with spaces after separators)
    doc = parse("</time>; obs, </.well-known/core>; ct=40, </other/separate>, </other/block>")
    assert [link.href for link in doc] == ["/time", "/.well-known/core", "/other/separate", "/other/block"]
    assert doc.links[0].get_attributes("obs") == [None]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("/a", "expected '<'"),
        ("<", "unterminated"),
        ("</a", "unterminated"),
        ("</a>,", "expected '<'"),
        ("</a>,,</b>", "expected '<'"),
        ("</a> </b>", "expected ','"),
        ("</a>x", "expected ','"),
        ("</a>;", "parameter name"),
        ("</a>;;ct=0", "parameter name"),
        ("</a>;=x", "parameter name"),
        ("</a>;ct=", "expected a value"),
        ("</a>;ct=,</b>", "expected a value"),
        ('</a>;title="open', "unterminated quoted"),
        ('</a>;title="open\\', "unterminated quoted"),
        ("</a>;title=\u00fc", "expected a value"),
        ("</a b>", "not allowed"),
        ("</a\tb>", "not allowed"),
        ("<</a>", "not allowed"),
        ('</a>;rt="x"y', "expected ','"),
    ],
)
def test_parse_errors(text, reason):
    with pytest.raises(ValueError, match=reason) as excinfo:
        parse(text)
    assert "invalid link format at offset" in str(excinfo.value)


def test_parse_error_names_offset():
    with pytest.raises(ValueError, match="offset 10: expected ','"):
        parse("</a>;ct=0 x")


def test_parse_invalid_utf8():
    with pytest.raises(ValueError, match="not UTF-8"):
        parse(b"</\xff>")


def test_parse_needs_text():
    with pytest.raises(TypeError):
        parse(None)
    with pytest.raises(TypeError):
        parse(["</a>"])


# --- properties ----------------------------------------------------------------

_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~*", min_size=1, max_size=8)
_special_names = st.sampled_from(["rt", "if", "ct", "sz", "rel", "rev", "anchor", "title", "obs", "title*"])
_values = st.one_of(st.none(), st.text(max_size=20), st.from_regex(r"(0|[1-9][0-9]{0,4})", fullmatch=True))
_hrefs = st.text(
    alphabet=st.characters(blacklist_characters="<>\x7f", blacklist_categories=("Cs",), min_codepoint=0x21),
    max_size=30,
)
_links = st.builds(
    Link,
    _hrefs,
    st.lists(st.tuples(st.one_of(_names, _special_names), _values), max_size=6),
)


@given(st.lists(_links, max_size=5))
@fuzz_settings(300)
@pytest.mark.fuzz
def test_roundtrip(links):
    doc = LinkFormat(links)
    text = str(doc)
    assert parse(text) == doc
    assert parse(text.encode("utf-8")) == doc


@given(st.text(max_size=200))
@fuzz_settings(500)
@pytest.mark.fuzz
def test_parse_arbitrary_text(text):
    try:
        doc = parse(text)
    except ValueError as e:
        assert str(e)
        return
    assert isinstance(doc, LinkFormat)
    # What parses serializes to something that parses to the same model
    assert parse(str(doc)) == doc


_linkish = st.lists(
    st.sampled_from(["<", ">", "/", "a", ";", ",", "=", '"', "\\", " ", "ct", "obs", "rt", "0", "*", "\u00e4", "\t"]),
    max_size=40,
).map("".join)


@given(_linkish)
@fuzz_settings(500)
@pytest.mark.fuzz
def test_parse_linkish_text(text):
    # Text made of the grammar's own characters reaches the deeper branches
    try:
        doc = parse(text)
    except ValueError:
        return
    assert parse(str(doc)) == doc


@given(st.binary(max_size=100))
@fuzz_settings(300)
@pytest.mark.fuzz
def test_parse_arbitrary_bytes(data):
    try:
        doc = parse(data)
    except ValueError:
        return
    assert isinstance(doc, LinkFormat)
