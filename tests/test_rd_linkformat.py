"""The fast path of aiocoap.util.linkformat.parse (added for the resource
directory, which parses every registration): wherever it answers, it
answers exactly what the exact parser does, and it never hides an error."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aiocoap.util import linkformat
from aiocoap.util.linkformat import Link, LinkFormat, parse


def _exact(text):
    return linkformat._LinkFormatParser(text).document()


def _same_outcome(text):
    try:
        expected = _exact(text)
    except ValueError:
        expected = None
    fast = linkformat._parse_fast(text)
    if fast is not None:
        assert expected is not None, f"fast path accepted what the exact parser rejects: {text!r}"
        assert fast == expected
    # and parse() as a whole behaves like the exact parser
    if expected is None:
        with pytest.raises(ValueError):
            parse(text)
    else:
        assert parse(text) == expected


_grammar_pieces = st.sampled_from(
    ["<", ">", "</a>", "/", "a", "A", ";", ",", "=", '"', "\\", " ", "\t", "\n", "ct", "obs", "rt", "0",
     "*", "\u00e4", "\x00", "\x7f", '"x;y,z"', "title*", "=\"\"", "coap://[::1]"]
)


@given(st.lists(_grammar_pieces, max_size=40).map("".join))
@settings(max_examples=2000, deadline=None)
@example('</a>;rt="x";if="y",</b>;obs, </c> ; ct = 0')
@example("</a>,")
@example("</a>;x y")
@example('</a>;t="a\\"b\\\\c"')
@example("  ")
@example("</a>;RT=Temp")
def test_fast_path_agrees_with_exact_parser(text):
    _same_outcome(text)


@given(st.text(max_size=120))
@settings(max_examples=1000, deadline=None)
def test_fast_path_agrees_on_arbitrary_text(text):
    _same_outcome(text)


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~*", min_size=1, max_size=8)
_values = st.one_of(st.none(), st.text(max_size=20))
_hrefs = st.text(
    alphabet=st.characters(blacklist_characters="<>\x7f", blacklist_categories=("Cs",), min_codepoint=0x21),
    max_size=30,
)
_links = st.builds(Link, _hrefs, st.lists(st.tuples(_names, _values), max_size=6))


@given(st.lists(_links, min_size=1, max_size=6))
@settings(max_examples=500, deadline=None)
def test_serialized_documents_take_the_fast_path(links):
    text = str(LinkFormat(links))
    fast = linkformat._parse_fast(text)
    assert fast is not None
    assert fast == LinkFormat(links)


@pytest.mark.parametrize(
    "text",
    [
        "</a>;a" + " " * 20000 + "x",
        "</a>" + " ;a" * 5000 + " x",
        '</a>;a="' + "\\\\" * 5000,
        "<" + "a" * 20000,
        "</a>;" + "a" * 20000 + "=",
    ],
)
def test_pathological_input_is_rejected(text):
    with pytest.raises(ValueError):
        parse(text)
