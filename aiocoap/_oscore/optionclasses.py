"""Placement of options into the inner (encrypted) and outer message, and
the plaintext format (RFC 8613 §4.1 and §5.3).

Option classes:

* Class U (outer only): Uri-Host, Uri-Port, Proxy-Scheme, Hop-Limit, EDHOC,
  and the OSCORE option itself. Proxy-Uri is decomposed (§4.1.3.3): its
  path and query go inside as Uri-Path / Uri-Query, and the outer message
  carries a Proxy-Uri of only scheme and authority.
* Both: Observe (§4.1.3.5) and No-Response (§4.1.3.6) appear inner and
  outer. In notifications the inner Observe is empty and the outer one has
  the notification's value, which OSCORE-unaware proxies use for ordering;
  the actual ordering guarantee comes from the Partial IVs.
* Class E (inner): everything else, including all options this library does
  not know, Max-Age, Echo, Request-Tag and the Block / Size options of the
  plain message (outer blockwise belongs to the transport).

On the receiving side the plain message consists of the inner options only,
plus the request URI parts that are class U (Uri-Host, Uri-Port,
Proxy-Scheme, the authority of an outer Proxy-Uri) and Hop-Limit. All other
outer options, including any class E option an attacker may have put
outside, are discarded.
"""

from __future__ import annotations

import urllib.parse
from typing import Optional

from .. import error
from ..message import DEFAULT_PORTS, Message, UndecidedRemote
from ..numbers.codes import Code
from ..numbers.optionnumbers import OptionNumber
from ..options import Options
from ..optiontypes import StringOption, UintOption
from ..util import hostportsplit
from .errors import DecodeError

__all__ = [
    "OUTER_ONLY",
    "INNER_AND_OUTER",
    "split_options",
    "encode_plaintext",
    "decode_plaintext",
    "assemble_plain_message",
]

_O = OptionNumber

OUTER_ONLY = frozenset(
    {_O.URI_HOST, _O.URI_PORT, _O.PROXY_SCHEME, _O.HOP_LIMIT, _O.EDHOC, _O.OSCORE}
)
"""Class U options: only in the outer message"""

INNER_AND_OUTER = frozenset({_O.OBSERVE, _O.NO_RESPONSE})
"""Options that are both class E and class U"""

_REQUEST_OUTER_KEPT = (_O.URI_HOST, _O.URI_PORT, _O.PROXY_SCHEME, _O.HOP_LIMIT)


def _decompose_proxy_uri(value: str, inner: Options) -> str:
    """Put the path and query of the Proxy-Uri ``value`` into ``inner``
    (RFC 8613 §4.1.3.3) and return what stays outer: scheme and
    authority."""
    scheme, colon, rest = value.partition(":")
    scheme = scheme.lower()
    scratch = Message()
    # A URI of a scheme other than CoAP's (http, ...) is split the same way;
    # set_request_uri would keep it whole as a Proxy-Uri.
    scratch.set_request_uri(value if scheme in DEFAULT_PORTS or not colon else "coap:" + rest, set_uri_host=False)
    target = scratch.remote
    if not isinstance(target, UndecidedRemote):
        raise error.MalformedUrlError(f"Proxy-Uri {value!r} is not an absolute URI")
    for segment in scratch.opt.uri_path:
        inner.add_option(StringOption(_O.URI_PATH, segment))
    for query in scratch.opt.uri_query:
        inner.add_option(StringOption(_O.URI_QUERY, query))
    return f"{scheme}://{target.hostinfo}"


def split_options(message: Message) -> tuple[Options, Options]:
    """Sort the options of a plain message into (outer, inner).

    Raises ValueError if the message can not be protected (it already
    carries an OSCORE option, or has an unusable Proxy-Uri)."""
    outer = Options()
    inner = Options()
    is_request = message.code is not None and message.code.is_request()
    for option in message.opt.option_list():
        number = int(option.number)
        if number == _O.OSCORE:
            raise ValueError("Message already carries an OSCORE option")
        if number == _O.PROXY_URI and is_request:
            outer.proxy_uri = _decompose_proxy_uri(option.value, inner)
        elif number in OUTER_ONLY:
            outer.add_option(option)
        elif number == _O.OBSERVE and not is_request:
            outer.add_option(option)
            inner.add_option(UintOption(_O.OBSERVE, 0))
        elif number in INNER_AND_OUTER:
            outer.add_option(option)
            inner.add_option(option)
        else:
            inner.add_option(option)
    return outer, inner


def encode_plaintext(code: Code, inner: Options, payload: bytes) -> bytes:
    """The §5.3 plaintext: code, inner options, and payload after a marker."""
    parts = [bytes((code,)), inner.encode()]
    if payload:
        parts.append(b"\xff")
        parts.append(payload)
    return b"".join(parts)


def decode_plaintext(plaintext: bytes) -> tuple[Code, Options, bytes]:
    """Split a decrypted plaintext into code, inner options and payload;
    raises DecodeError if it is malformed."""
    if not plaintext:
        raise DecodeError("Empty plaintext")
    code = Code(plaintext[0])
    inner = Options()
    try:
        payload = inner.decode(plaintext[1:])
    except error.UnparsableMessage as e:
        raise DecodeError(f"Malformed inner options: {e}") from None
    return code, inner, payload


def _authority_of_proxy_uri(value: str) -> tuple[str, str, Optional[int]]:
    try:
        parsed = urllib.parse.urlsplit(value)
        host, port = hostportsplit(parsed.netloc)
    except ValueError:
        raise DecodeError("Unusable outer Proxy-Uri") from None
    if not parsed.scheme or not host:
        raise DecodeError("Outer Proxy-Uri lacks scheme or host")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise DecodeError("Outer Proxy-Uri carries path or query outside the protection")
    return parsed.scheme, host, port


def assemble_plain_message(
    outer: Message, code: Code, inner: Options, payload: bytes, is_request: bool
) -> Message:
    """Build the unprotected message from the outer message and the decrypted
    parts; raises DecodeError where outer and inner do not fit together."""
    plain = Message(code=code, payload=payload, _token=outer.token, _mtype=outer.mtype, _mid=outer.mid)
    plain.remote = outer.remote
    plain.opt = inner
    if is_request:
        for number in _REQUEST_OUTER_KEPT:
            if number not in inner:
                for option in outer.opt.get_option(number):
                    inner.add_option(option)
        proxy_uri = outer.opt.proxy_uri
        if proxy_uri is not None:
            scheme, host, port = _authority_of_proxy_uri(proxy_uri)
            if inner.proxy_scheme is None:
                inner.proxy_scheme = scheme
            if inner.uri_host is None:
                inner.uri_host = host
            if inner.uri_port is None and port is not None:
                inner.uri_port = port
    elif inner.observe is not None and outer.opt.observe is not None:
        # The inner Observe only says "this is a notification"; the value
        # for ordering by the observation layer is outside. PIV checks in
        # the security context already ensured authentic ordering.
        inner.observe = outer.opt.observe
    return plain
