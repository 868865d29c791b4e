"""The CoAP message: data plus its codec for the RFC 7252 §3 datagram format,
and request URI composition/decomposition (RFC 7252 §6.4, §6.5).

No I/O happens here. ``Message.decode`` of any byte string returns a Message
or raises :class:`aiocoap.error.UnparsableMessage`, never anything else.
"""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple, Optional, Union

from . import error
from .numbers import uri_path_abbrev
from .numbers.codes import Code
from .numbers.constants import DEFAULT_BLOCK_SIZE_EXP
from .numbers.optionnumbers import OptionNumber
from .numbers.types import Type
from .options import VIEW_NAMES, Options
from .util import Sentinel, hostportjoin, hostportsplit
from .util.uri import quote_factory, sub_delims, unreserved

if TYPE_CHECKING:
    from .interfaces import EndpointAddress

__all__ = ["Message", "NoResponse", "UndecidedRemote"]

NoResponse = Sentinel("NoResponse")
"""Result that can be returned from a render method instead of a Message
when, due to defaults (eg. multicast link-format queries) or explicit
configuration (eg. the No-Response option), no response should be sent at
all. Note that per RFC 7967 section 2, an ACK is still sent to a CON
request.

Deprecated; set the no_response option on a regular response instead."""

DEFAULT_PORTS = {
    "coap": 5683,
    "coaps": 5684,
    "coap+tcp": 5683,
    "coaps+tcp": 5684,
    "coap+ws": 80,
    "coaps+ws": 443,
}

_SCHEME_NAMES = {scheme: scheme for scheme in DEFAULT_PORTS}

_quote_path = quote_factory(unreserved + sub_delims + ":@")
_quote_query = quote_factory(unreserved + sub_delims.replace("&", "") + ":@/?")

_HOST_DELIMITERS = frozenset(":/?#[]@")

_code_of: Callable[[int], Optional[Code]] = Code._value2member_map_.get  # type: ignore[assignment]
_types = tuple(Type)


class _UndecidedRemoteFields(NamedTuple):
    scheme: str
    hostinfo: str


class UndecidedRemote(_UndecidedRemoteFields):
    """The remote of a message that has not been routed yet: scheme and
    hostinfo (``host[:port]``) as taken from a URI. Transports turn it into a
    real :class:`aiocoap.interfaces.EndpointAddress` when the message is
    sent.

    An application can set :attr:`maximum_block_size_exp` on it to have
    blockwise transfers of the request use smaller blocks."""

    maximum_block_size_exp = DEFAULT_BLOCK_SIZE_EXP
    """The largest block size exponent to use for the request (settable per
    instance: ``request.remote.maximum_block_size_exp = 4`` asks for blocks
    of at most 256 bytes, for the Block1 upload and from the first Block2
    response on)."""

    @property
    def uri_base(self) -> str:
        return f"{self.scheme}://{self.hostinfo}"

    @property
    def is_ip_literal(self) -> bool:
        """True if the host is an IP address (no name to resolve), so that
        the route found for it once holds for later messages.

        >>> UndecidedRemote("coap", "[fe80::1%eth0]:1234").is_ip_literal
        True
        >>> UndecidedRemote("coap", "localhost").is_ip_literal
        False
        """
        try:
            host, _ = hostportsplit(self.hostinfo)
        except ValueError:
            return False
        return _is_ip_literal(host)

    @classmethod
    def from_pathless_uri(cls, uri: str) -> "UndecidedRemote":
        """Parse ``scheme://host[:port]`` (nothing after it) into a remote.

        >>> UndecidedRemote.from_pathless_uri("coap+tcp://[::1]:1234")
        UndecidedRemote(scheme='coap+tcp', hostinfo='[::1]:1234')
        """
        parsed = urllib.parse.urlparse(uri)
        if parsed.path not in ("", "/") or parsed.query or parsed.fragment or not parsed.netloc:
            raise error.MalformedUrlError(f"not a URI of a host without path: {uri!r}")
        return cls(parsed.scheme, parsed.netloc)


def _as_bytes(value: object, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


# Clients name the same few hosts in request after request; parsing the
# address each time was a tenth of the CPU time of a small request over TCP.
@functools.lru_cache(maxsize=256)
def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class Message:
    """CoAP Message with some handling metadata

    This object's attributes provide access to the fields in a CoAP message
    and can be directly manipulated.

    * payload: The payload (body) of the message as bytes.
    * mtype: Message type (CON, ACK etc, see numbers.types). Managed unless
      set by the application.
    * code: The code (either request or response code), see numbers.codes.
    * opt: A container for the options, see options.Options.
    * mid: The message ID. Managed by the Context.
    * token: The message's token as bytes. Managed by the Context.
    * remote: The socket address of the other side (an
      interfaces.EndpointAddress). Before a message is sent, it is managed by
      the Message itself from the constructor's ``uri`` argument or
      :meth:`set_request_uri`, and is an :class:`UndecidedRemote` then.
      Non-roundtrippable.
    * transport_tuning: Parameters used by the transports to guide
      transmission (a numbers.constants.TransportTuning). Advisory.
    * request: The request to which an incoming response message belongs;
      only available at the client. Managed by the RequestProvider.

    Options can be given as further keyword arguments at construction time
    (``Message(code=GET, uri_path=['x'], observe=0)``).

    ``mtype``, ``mid`` and ``token`` are managed by the library; giving them
    to the constructor still works but warns (DeprecationWarning), as in
    aiocoap 0.4.x: ask for (un)reliable transmission with
    ``transport_tuning=aiocoap.Reliable`` / ``aiocoap.Unreliable``. Code that
    builds raw messages (tests, transports) passes ``_mtype``, ``_mid`` and
    ``_token`` instead.
    """

    # Defaults for attributes that decoded messages usually do not set; being
    # class attributes keeps decoding lean. Assignments go to the instance.
    version = 1
    _remote: Optional[EndpointAddress] = None
    _target: Optional[UndecidedRemote] = None
    request: Optional[Message] = None
    transport_tuning: Any = None
    received_size: Optional[int] = None
    """The size in bytes of the datagram the message was decoded from
    (:meth:`decode`), None for a message built or copied here. Limits that
    depend on what a peer sent (RFC 9175 §2.3 amplification) read it
    instead of encoding the message again."""

    def __init__(
        self,
        *,
        mtype: Optional[int] = None,
        mid: Optional[int] = None,
        code: Optional[int] = None,
        payload: bytes = b"",
        token: bytes = b"",
        uri: Optional[str] = None,
        transport_tuning: Any = None,
        _mid: Optional[int] = None,
        _mtype: Optional[int] = None,
        _token: bytes = b"",
        **kwargs: Any,
    ) -> None:
        if mtype is not None:
            warnings.warn(
                "Message(mtype=...) is deprecated: the library picks the type; set "
                "transport_tuning=aiocoap.Reliable or aiocoap.Unreliable to ask for CON or NON "
                "(raw message construction: _mtype=)",
                DeprecationWarning,
                stacklevel=2,
            )
            _mtype = mtype
        if mid is not None:
            warnings.warn(
                "Message(mid=...) is deprecated: message IDs are managed by the library "
                "(raw message construction: _mid=)",
                DeprecationWarning,
                stacklevel=2,
            )
            _mid = mid
        if token:
            warnings.warn(
                "Message(token=...) is deprecated: tokens are managed by the library "
                "(raw message construction: _token=)",
                DeprecationWarning,
                stacklevel=2,
            )
            _token = token
        self.mtype = None if _mtype is None else Type(_mtype)
        self.mid = _mid
        self.code = code if code is None or type(code) is Code else Code(code)
        self.token = token = _token
        self.payload = payload
        self.opt = Options()
        self._remote = None
        self.transport_tuning = transport_tuning

        if type(payload) is not bytes:
            self.payload = _as_bytes(payload, "payload")
        if type(token) is not bytes:
            self.token = _as_bytes(token, "token")

        if uri is not None:
            self.set_request_uri(uri)

        if kwargs:
            for key, value in kwargs.items():
                if key not in VIEW_NAMES:
                    raise TypeError(f"Message got an unexpected keyword argument {key!r}")
                setattr(self.opt, key, value)

    # --- remote handling -------------------------------------------------

    @property
    def remote(self) -> Optional[Union[EndpointAddress, UndecidedRemote]]:
        """Where the message goes to or came from: the
        :class:`~aiocoap.interfaces.EndpointAddress` of a transport once the
        message is routed (always, for a received one), an
        :class:`UndecidedRemote` for a request that was given a URI and not
        sent yet, else None."""
        if self._remote is not None:
            return self._remote
        return self._target

    @remote.setter
    def remote(self, value: Optional[Union[EndpointAddress, UndecidedRemote]]) -> None:
        if isinstance(value, UndecidedRemote):
            self._target = value
            self._remote = None
        else:
            self._remote = value

    @property
    def unresolved_remote(self) -> Optional[str]:
        """Deprecated: the hostinfo the message is to be sent to, if not yet
        routed. Use ``remote`` (an UndecidedRemote before sending)."""
        if self._target is not None:
            return self._target.hostinfo
        remote = self._remote
        return getattr(remote, "hostinfo", None) if remote is not None else None

    @unresolved_remote.setter
    def unresolved_remote(self, value: Optional[str]) -> None:
        if value is None:
            self._target = None
        else:
            scheme = self._target.scheme if self._target is not None else "coap"
            self._target = UndecidedRemote(scheme, value)

    # --- representation ----------------------------------------------------

    def __repr__(self) -> str:
        if self.mtype is None:
            mtype = "no mtype,"
        else:
            mtype = f"Type.{Type(self.mtype).name}"
        code = "no code" if self.code is None else str(Code(self.code))
        mid = "no MID" if self.mid is None else f"MID {self.mid}"
        token = f"token {self.token.hex()}" if self.token else "empty token"
        extras = ""
        count = len(self.opt.numbers())
        if count:
            extras += f", {count} option(s)"
        if self.payload:
            extras += f", {len(self.payload)} byte(s) payload"
        return (
            f"<aiocoap.Message at {id(self):#x}: {mtype} {code} ({mid}, {token}) "
            f"remote {self._remote!r}{extras}>"
        )

    def copy(self, **kwargs: Any) -> "Message":
        """Create a copy of the Message. kwargs are treated like the named
        arguments in the constructor, and update the copy."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.pop("received_size", None)  # (a copy was not received)
        new.opt = self.opt.copy()
        if "uri" in kwargs:
            new.set_request_uri(kwargs.pop("uri"))
        for key, value in kwargs.items():
            if key == "mtype":
                new.mtype = None if value is None else Type(value)
            elif key == "code":
                new.code = None if value is None else Code(value)
            elif key in ("payload", "token"):
                setattr(new, key, _as_bytes(value, key))
            elif key in ("mid", "transport_tuning", "remote", "request"):
                setattr(new, key, value)
            elif key in VIEW_NAMES:
                setattr(new.opt, key, value)
            else:
                raise TypeError(f"copy() got an unexpected keyword argument {key!r}")
        return new

    def payload_html(self) -> str:
        """The payload as HTML (for notebooks and similar displays): pretty
        printed and syntax highlighted as far as the installed modules
        allow (the ``prettyprint`` extra), with notes about the rendering
        above it; the exact markup is not fixed."""
        import html

        if not self.payload:
            return "<p>No payload</p>"
        from .util import prettyprint

        notes, mime, text = prettyprint.pretty_print(self)
        try:
            lexer = prettyprint.lexer_for_mime(mime)
            from pygments import highlight
            from pygments.formatters import HtmlFormatter

            body = highlight(text, lexer, HtmlFormatter())
        except Exception:  # (no pygments, or no lexer for the type)
            body = f"<pre>{html.escape(text)}</pre>"
        shown_notes = "".join(f'<p style="font-size:small">{html.escape(n)}</p>' for n in notes)
        return f"<div>{shown_notes}{body}</div>"

    # --- codec ---------------------------------------------------------------

    @classmethod
    def decode(cls, rawdata: bytes | bytearray | memoryview, remote: Optional[EndpointAddress] = None) -> "Message":
        """Create Message object from binary representation of message."""
        if type(rawdata) is not bytes:
            rawdata = bytes(rawdata)
        length = len(rawdata)
        if length < 4:
            raise error.UnparsableMessage("message shorter than the 4 byte header")
        first = rawdata[0]
        if first >> 6 != 1:
            # RFC 7252 §3: silently ignored, so no mtype/mid to answer with.
            raise error.UnparsableMessage("unknown CoAP version")
        mtype = _types[(first >> 4) & 0x03]
        mid = rawdata[2] << 8 | rawdata[3]
        tkl = first & 0x0F
        if tkl > 8:
            raise error.UnparsableMessage("token length 9-15 is reserved", mtype=mtype, mid=mid)
        body_start = 4 + tkl
        if body_start > length:
            raise error.UnparsableMessage("token truncated", mtype=mtype, mid=mid)
        code_number = rawdata[1]
        if code_number == 0 and length != 4:
            raise error.UnparsableMessage(
                "empty message with bytes after the header", mtype=mtype, mid=mid
            )

        self = cls.__new__(cls)
        self.mtype = mtype
        self.mid = mid
        code = _code_of(code_number)
        self.code = code if code is not None else Code(code_number)
        self.token = rawdata[4:body_start]
        opt = self.opt = Options()
        if length > body_start:
            try:
                self.payload = opt.decode_at(rawdata, body_start)
            except error.UnparsableMessage as e:
                e.mtype = mtype
                e.mid = mid
                raise
        else:
            self.payload = b""
        self._remote = remote
        self.received_size = length
        return self

    def encode(self) -> bytes:
        """Create binary representation of message from Message object."""
        mtype, code, mid, token = self.mtype, self.code, self.mid, self.token
        if mtype is None or code is None or mid is None:
            raise TypeError("Fatal Error: Code, Message Type and Message ID must not be None.")
        if len(token) > 8:
            raise ValueError(f"Token of {len(token)} bytes is longer than 8 bytes")
        try:
            out = bytearray((0x40 | mtype << 4 | len(token), code, mid >> 8, mid & 0xFF))
        except ValueError:
            raise ValueError(
                f"Message ID {mid} or code {int(code)} out of range (16 and 8 bits)"
            ) from None
        out += token
        self.opt.encode_into(out)
        if self.payload:
            out.append(0xFF)
            out += self.payload
        return bytes(out)

    # --- cache key -------------------------------------------------------------

    def get_cache_key(self, ignore_options: Iterable[int] = ()) -> tuple[Any, ...]:
        """Generate a hashable and comparable object (currently a tuple) from
        the message's code and all option values that are part of the cache
        key and not in the optional list of ignore_options (which is the list
        of option numbers that are not technically NoCacheKey but handled by
        the application using this method).

        >>> from aiocoap.numbers import GET
        >>> m1 = Message(code=GET)
        >>> m2 = Message(code=GET)
        >>> m1.opt.uri_path = ('s', '1')
        >>> m2.opt.uri_path = ('s', '1')
        >>> m1.opt.size1 = 10 # the only no-cache-key option in the base spec
        >>> m2.opt.size1 = 20
        >>> m1.get_cache_key() == m2.get_cache_key()
        True
        >>> m2.opt.etag = b'000'
        >>> m1.get_cache_key() == m2.get_cache_key()
        False
        >>> from aiocoap.numbers.optionnumbers import OptionNumber
        >>> ignore = [OptionNumber.ETAG]
        >>> m1.get_cache_key(ignore) == m2.get_cache_key(ignore)
        True
        """
        ignore = set(ignore_options)
        key = []
        for option in self.opt.option_list():
            number = OptionNumber(option.number)
            if number in ignore:
                continue
            if not number.is_unsafe() and number.is_nocachekey():
                continue
            key.append((int(number), option.encode()))
        return (self.code, tuple(key))

    # --- URIs ------------------------------------------------------------------

    def set_request_uri(self, uri: str, *, set_uri_host: bool = True) -> None:
        """Parse a given URI into the uri_* fields of the options.

        The remote does not get set automatically; instead, the remote data
        is stored in the uri_host option (unless the host is an IP literal)
        and the message's remote becomes an :class:`UndecidedRemote` that
        holds scheme and hostinfo. Name resolution happens when the message
        is sent, by the transport that takes it.

        When set_uri_host=False is passed, the host is not put into a
        Uri-Host option; this breaks virtual hosts but makes messages
        smaller.

        A URI of a scheme that is not CoAP's (``http:``, ``urn:``, ...) is
        stored in the Proxy-Uri option as a whole, and the remote is left
        alone: such a request has to be sent to a proxy, which the
        application sets as the remote.

        This implements Section 6.4 of RFC7252."""
        try:
            parsed = urllib.parse.urlsplit(uri)
        except ValueError as e:
            raise error.MalformedUrlError(f"Invalid URI {uri!r}: {e}") from None
        if not parsed.scheme:
            raise error.IncompleteUrlError(f"URI {uri!r} is not absolute (no scheme)")
        if parsed.fragment or uri.endswith("#"):
            raise error.MalformedUrlError(
                "Fragment identifiers can not be set on a request URI"
            )
        scheme = parsed.scheme.lower()
        # (the one string of a known scheme: a message keeps its remote)
        scheme = _SCHEME_NAMES.get(scheme, scheme)
        if scheme not in DEFAULT_PORTS:
            self.opt.proxy_uri = uri
            return
        netloc = parsed.netloc
        if "@" in netloc:
            raise error.MalformedUrlError("User name and password are not supported in CoAP URIs")
        try:
            host, port = hostportsplit(netloc)
        except ValueError as e:
            raise error.MalformedUrlError(f"Invalid URI {uri!r}: {e}") from None
        if not host:
            raise error.IncompleteUrlError(f"URI {uri!r} has no host")

        host_is_literal = _is_ip_literal(host)
        if not host_is_literal:
            try:
                host = urllib.parse.unquote(host.lower(), errors="strict")
            except UnicodeDecodeError:
                raise error.MalformedUrlError(
                    f"Invalid URI {uri!r}: percent-encoding in the host is not UTF-8"
                ) from None
            if _HOST_DELIMITERS.intersection(host):
                # They would make the hostinfo of the remote ambiguous.
                raise error.MalformedUrlError(
                    f"Invalid URI {uri!r}: the host name contains URI delimiters"
                )

        try:
            if parsed.path in ("", "/"):
                path: tuple[str, ...] = ()
            else:
                if not parsed.path.startswith("/"):
                    raise error.MalformedUrlError(f"Invalid URI {uri!r}: relative path")
                path = tuple(
                    urllib.parse.unquote(seg, errors="strict")
                    for seg in parsed.path[1:].split("/")
                )
            if parsed.query:
                query: tuple[str, ...] = tuple(
                    urllib.parse.unquote(q, errors="strict")
                    for q in parsed.query.split("&")
                )
            else:
                query = ()
        except UnicodeDecodeError:
            raise error.MalformedUrlError(
                f"Invalid URI {uri!r}: percent-encoding is not UTF-8"
            ) from None

        self.opt.uri_path = path
        self.opt.uri_query = query
        self.opt.uri_port = None
        if set_uri_host and not host_is_literal:
            self.opt.uri_host = host
        else:
            self.opt.uri_host = None
        self._target = UndecidedRemote(scheme, hostportjoin(host, port))
        self._remote = None

    def get_request_uri(self, *, local_is_server: bool = False) -> str:
        """The absolute URI this message belongs to.

        For requests, this is composed from the options (falling back to the
        remote). For responses, this is largely taken from the original
        request message, but -- in case of a multicast request -- with the
        host replaced by the responder's endpoint details.

        This implements Section 6.5 of RFC7252.

        By default, these values are only valid on the client. To determine
        a message's request URI on the server, set the local_is_server
        argument to True."""
        if self.code is not None and Code(self.code).is_response():
            request = self.request
            if request is None:
                raise ValueError("Can not construct the request URI of a response without its request")
            uri = request.get_request_uri(local_is_server=local_is_server)
            remote = self._remote
            if (
                not local_is_server
                and request.remote is not None
                and getattr(request.remote, "is_multicast", False)
                and remote is not None
            ):
                # Replace the multicast host by the responder
                parsed = urllib.parse.urlsplit(uri)
                uri = urllib.parse.urlunsplit(
                    (parsed.scheme, remote.hostinfo, parsed.path, parsed.query, "")
                )
            return uri

        proxy_uri = self.opt.proxy_uri
        if proxy_uri is not None:
            return proxy_uri

        target = self.remote
        if target is None:
            raise ValueError("Message has neither a remote nor a URI")
        scheme = target.scheme
        if not local_is_server:
            hostinfo = target.hostinfo
        elif isinstance(target, UndecidedRemote):
            raise ValueError("A message that was not received has no local side to take the URI from")
        else:
            hostinfo = target.hostinfo_local
        if self.opt.proxy_scheme is not None:
            scheme = self.opt.proxy_scheme
        if scheme is None:
            scheme = "coap"

        host, port = hostportsplit(hostinfo)
        if self.opt.uri_host is not None:
            host = self.opt.uri_host
        if self.opt.uri_port is not None:
            port = self.opt.uri_port
        # (A port is kept even if it is the scheme's default: the addresses
        # of the transports leave that out, so it is there only when given
        # explicitly.)
        if ":" in host:
            netloc = hostportjoin(host, port)
        else:
            netloc = hostportjoin(urllib.parse.quote(host, safe=unreserved + sub_delims), port)

        uri_path = self.opt.uri_path
        abbreviated = self.opt.uri_path_abbrev
        if abbreviated is not None:
            if uri_path:
                raise ValueError("Conflicting paths: the message has Uri-Path and Uri-Path-Abbrev")
            expanded = uri_path_abbrev.path_of(abbreviated)
            if expanded is None:
                raise ValueError(f"Unknown Uri-Path-Abbrev value {abbreviated}")
            uri_path = expanded
        if local_is_server:
            # A resource in a Site sees its own part of the path stripped;
            # the URI the client requested has all of it.
            uri_path = self.__dict__.get("_original_uri_path", uri_path)
        path = "/" + "/".join(_quote_path(p) for p in uri_path)
        query = "&".join(_quote_query(q) for q in self.opt.uri_query)
        return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")

    # --- deprecated requested_* properties ---------------------------------

    def _requested_split(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.get_request_uri())

    @property
    def requested_scheme(self) -> str:
        """The URI scheme of the request (for a response: of its request).

        Setting it on a request that is not sent yet picks the transport by
        scheme (``"coap+tcp"``, ``"coaps"``, ...) while keeping the host,
        which is taken from the request's URI or, for a request built from
        options only, from its Uri-Host and Uri-Port."""
        return self._requested_split().scheme

    @requested_scheme.setter
    def requested_scheme(self, value: str) -> None:
        target = self._target
        if target is not None:
            hostinfo = target.hostinfo
        elif self._remote is not None:
            hostinfo = self._remote.hostinfo
        elif self.opt.uri_host is not None:
            hostinfo = hostportjoin(self.opt.uri_host, self.opt.uri_port)
        else:
            raise ValueError("The message has no host to send to (no URI, remote or Uri-Host)")
        self._target = UndecidedRemote(value, hostinfo)
        self._remote = None

    @property
    def requested_proxy_uri(self) -> Optional[str]:
        """Deprecated; use get_request_uri()."""
        return (self.request if self.request is not None else self).opt.proxy_uri

    @property
    def requested_hostinfo(self) -> str:
        """Deprecated; use get_request_uri()."""
        return self._requested_split().netloc

    @property
    def requested_path(self) -> tuple[str, ...]:
        """Deprecated; use get_request_uri()."""
        return (self.request if self.request is not None else self).opt.uri_path

    @property
    def requested_query(self) -> tuple[str, ...]:
        """Deprecated; use get_request_uri()."""
        return (self.request if self.request is not None else self).opt.uri_query
