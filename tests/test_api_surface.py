"""The public names and signatures the manual documents for the wire format
modules (aiocoap.message, .options, .optiontypes, .numbers.*, .error,
.util, .util.uri, .meta and the package root) exist and keep existing."""

import enum
import importlib
import inspect
import os

import pytest

import aiocoap
from aiocoap import error, message, meta, numbers, options, optiontypes, util
from aiocoap.numbers import codes, constants, optionnumbers, types
from aiocoap.util import uri as util_uri

EMPTY = inspect.Parameter.empty
POS = inspect.Parameter.POSITIONAL_OR_KEYWORD
KW = inspect.Parameter.KEYWORD_ONLY
VAR_KW = inspect.Parameter.VAR_KEYWORD


def params(func, drop_first=False):
    """[(name, kind, default)] of a callable's signature."""
    result = [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]
    return result[1:] if drop_first else result


# --- aiocoap.message ---------------------------------------------------------------


def test_message_constructor_signature():
    assert params(message.Message.__init__, drop_first=True) == [
        ("mtype", KW, None),
        ("mid", KW, None),
        ("code", KW, None),
        ("payload", KW, b""),
        ("token", KW, b""),
        ("uri", KW, None),
        ("transport_tuning", KW, None),
        ("_mid", KW, None),
        ("_mtype", KW, None),
        ("_token", KW, b""),
        ("kwargs", VAR_KW, EMPTY),
    ]


@pytest.mark.parametrize(
    "name,expected",
    [
        ("copy", [("kwargs", VAR_KW, EMPTY)]),
        ("encode", []),
        ("get_cache_key", [("ignore_options", POS, ())]),
        ("get_request_uri", [("local_is_server", KW, False)]),
        ("set_request_uri", [("uri", POS, EMPTY), ("set_uri_host", KW, True)]),
    ],
)
def test_message_method_signatures(name, expected):
    assert params(getattr(message.Message, name), drop_first=True) == expected


def test_message_decode_is_a_classmethod():
    assert isinstance(inspect.getattr_static(message.Message, "decode"), classmethod)
    assert params(message.Message.decode) == [("rawdata", POS, EMPTY), ("remote", POS, None)]


@pytest.mark.parametrize(
    "name",
    ["unresolved_remote", "requested_scheme", "requested_proxy_uri", "requested_hostinfo",
     "requested_path", "requested_query", "remote"],
)
def test_message_properties(name):
    assert isinstance(inspect.getattr_static(message.Message, name), property)


def test_message_attributes():
    m = message.Message()
    for name in ("payload", "mtype", "code", "opt", "mid", "token", "remote", "transport_tuning", "request"):
        assert hasattr(m, name), name
    assert isinstance(m.opt, options.Options)


def test_noresponse():
    assert repr(message.NoResponse) == "<NoResponse>"
    assert isinstance(message.NoResponse, util.Sentinel)


def test_package_root_reexports():
    assert aiocoap.Message is message.Message
    assert aiocoap.NoResponse is message.NoResponse
    assert "Context" in aiocoap.__all__
    for name in aiocoap.__all__:
        assert hasattr(aiocoap, name), name
    from aiocoap.protocol import Context

    assert aiocoap.Context is Context
    namespace = {}
    exec("from aiocoap import *", namespace)
    assert namespace["Context"] is Context and namespace["GET"] is aiocoap.GET
    for name in ("GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH", "CONTENT", "CHANGED",
                 "NOT_FOUND", "CON", "NON", "ACK", "RST", "Code", "Type", "OptionNumber",
                 "ContentFormat"):
        assert name in aiocoap.__all__, name


# --- aiocoap.options -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name,expected",
    [
        ("decode", [("rawdata", POS, EMPTY)]),
        ("encode", []),
        ("add_option", [("option", POS, EMPTY)]),
        ("delete_option", [("number", POS, EMPTY)]),
        ("get_option", [("number", POS, EMPTY)]),
        ("option_list", []),
    ],
)
def test_options_method_signatures(name, expected):
    assert params(getattr(options.Options, name), drop_first=True) == expected


OPTION_VIEWS = [
    "uri_path", "uri_query", "location_path", "location_query", "block2", "block1",
    "content_format", "etag", "etags", "if_none_match", "observe", "accept", "uri_host",
    "uri_port", "proxy_uri", "proxy_scheme", "size1", "object_security", "max_age",
    "if_match", "no_response", "echo", "request_tag",
]


@pytest.mark.parametrize("name", OPTION_VIEWS)
def test_options_views(name):
    view = inspect.getattr_static(options.Options, name)
    assert inspect.isdatadescriptor(view)
    assert hasattr(view, "__delete__")
    assert view.__doc__
    assert getattr(options.Options, name) is view


# --- aiocoap.optiontypes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,expected",
    [
        (optiontypes.OptionType, [("number", POS, EMPTY), ("value", POS, EMPTY)]),
        (optiontypes.StringOption, [("number", POS, EMPTY), ("value", POS, "")]),
        (optiontypes.OpaqueOption, [("number", POS, EMPTY), ("value", POS, b"")]),
        (optiontypes.UintOption, [("number", POS, EMPTY), ("value", POS, 0)]),
        (optiontypes.BlockOption, [("number", POS, EMPTY), ("value", POS, None)]),
    ],
)
def test_optiontype_signatures(cls, expected):
    assert params(cls) == expected
    if cls is not optiontypes.OptionType:
        assert issubclass(cls, optiontypes.OptionType)
    assert params(cls.encode, drop_first=True) == []
    assert params(cls.decode, drop_first=True) == [("rawdata", POS, EMPTY)]


def test_blockwise_tuple():
    bt = optiontypes.BlockOption.BlockwiseTuple
    assert bt._fields == ("block_number", "more", "size_exponent")
    assert issubclass(bt, tuple)
    for name in ("size", "start", "is_bert"):
        assert isinstance(inspect.getattr_static(bt, name), property), name
    assert params(bt.is_valid_for_payload_size, drop_first=True) == [("payloadsize", POS, EMPTY)]
    assert params(bt.reduced_to, drop_first=True) == [("maximum_exponent", POS, EMPTY)]


# --- aiocoap.numbers -------------------------------------------------------------------


def test_numbers_modules_and_names():
    for name in ("codes", "constants", "optionnumbers", "types", "contentformat"):
        importlib.import_module(f"aiocoap.numbers.{name}")
    assert numbers.Code is codes.Code
    assert numbers.OptionNumber is optionnumbers.OptionNumber
    assert numbers.Type is types.Type
    assert numbers.TransportTuning is constants.TransportTuning
    assert (numbers.CON, numbers.NON, numbers.ACK, numbers.RST) == tuple(types.Type)


def test_code_class():
    assert issubclass(codes.Code, util.ExtensibleIntEnum)
    for name in ("is_request", "is_response", "is_signalling", "is_successful", "can_have_payload"):
        assert params(getattr(codes.Code, name), drop_first=True) == [], name
    for name in ("class_", "dotted", "name_printable", "name"):
        assert isinstance(inspect.getattr_static(codes.Code, name), property), name
    documented = [
        "EMPTY", "GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH", "CREATED", "DELETED",
        "VALID", "CHANGED", "CONTENT", "CONTINUE", "BAD_REQUEST", "UNAUTHORIZED", "BAD_OPTION",
        "FORBIDDEN", "NOT_FOUND", "METHOD_NOT_ALLOWED", "NOT_ACCEPTABLE",
        "REQUEST_ENTITY_INCOMPLETE", "CONFLICT", "PRECONDITION_FAILED",
        "REQUEST_ENTITY_TOO_LARGE", "UNSUPPORTED_CONTENT_FORMAT", "UNSUPPORTED_MEDIA_TYPE",
        "UNPROCESSABLE_ENTITY", "INTERNAL_SERVER_ERROR", "NOT_IMPLEMENTED", "BAD_GATEWAY",
        "SERVICE_UNAVAILABLE", "GATEWAY_TIMEOUT", "PROXYING_NOT_SUPPORTED", "CSM", "PING", "PONG",
        "RELEASE", "ABORT",
    ]
    for name in documented:
        assert isinstance(getattr(codes.Code, name), codes.Code), name


def test_option_number_class():
    assert issubclass(optionnumbers.OptionNumber, util.ExtensibleIntEnum)
    for name in ("is_critical", "is_elective", "is_unsafe", "is_safetoforward", "is_nocachekey", "is_cachekey"):
        assert params(getattr(optionnumbers.OptionNumber, name), drop_first=True) == [], name
    assert isinstance(inspect.getattr_static(optionnumbers.OptionNumber, "format"), property)
    assert params(optionnumbers.OptionNumber.create_option, drop_first=True) == [
        ("decode", POS, None),
        ("value", POS, None),
    ]
    documented = {
        "IF_MATCH": 1, "URI_HOST": 3, "ETAG": 4, "IF_NONE_MATCH": 5, "OBSERVE": 6, "URI_PORT": 7,
        "LOCATION_PATH": 8, "URI_PATH": 11, "CONTENT_FORMAT": 12, "MAX_AGE": 14, "URI_QUERY": 15,
        "ACCEPT": 17, "LOCATION_QUERY": 20, "BLOCK2": 23, "BLOCK1": 27, "SIZE2": 28,
        "PROXY_URI": 35, "PROXY_SCHEME": 39, "SIZE1": 60, "NO_RESPONSE": 258,
        "OBJECT_SECURITY": 9, "ECHO": 252, "REQUEST_TAG": 292,
    }
    for name, value in documented.items():
        assert getattr(optionnumbers.OptionNumber, name) == value, name


def test_type_class():
    assert issubclass(types.Type, enum.IntEnum)
    assert {t.name: t.value for t in types.Type} == {"CON": 0, "NON": 1, "ACK": 2, "RST": 3}


def test_constants():
    documented = {
        "COAP_PORT": 5683, "ACK_TIMEOUT": 2.0, "ACK_RANDOM_FACTOR": 1.5, "MAX_RETRANSMIT": 4,
        "NSTART": 1, "MAX_TRANSMIT_SPAN": 45.0, "MAX_TRANSMIT_WAIT": 93.0, "MAX_LATENCY": 100.0,
        "PROCESSING_DELAY": 2.0, "MAX_RTT": 202.0, "EXCHANGE_LIFETIME": 247.0,
        "DEFAULT_BLOCK_SIZE_EXP": 6, "EMPTY_ACK_DELAY": 0.1, "REQUEST_TIMEOUT": 93.0,
        "OBSERVATION_RESET_TIME": 128,
    }
    for name, value in documented.items():
        assert getattr(constants, name) == value, name
    assert inspect.isclass(constants.TransportTuning)


# --- aiocoap.error ---------------------------------------------------------------------

# name: (documented base, code value or None, message or None); as the manual
# lists them.
ERRORS = {
    "Error": (Exception, None, None),
    "RenderableError": ("Error", None, None),
    "ResponseWrappingError": ("Error", None, None),
    "ConstructionRenderableError": ("RenderableError", 160, ""),
    "NotFound": ("ConstructionRenderableError", 132, None),
    "MethodNotAllowed": ("ConstructionRenderableError", 133, None),
    "UnsupportedContentFormat": ("ConstructionRenderableError", 143, None),
    "Unauthorized": ("ConstructionRenderableError", 129, None),
    "BadRequest": ("ConstructionRenderableError", 128, None),
    "NoResource": ("NotFound", 132, "Error: Resource not found!"),
    "UnallowedMethod": ("MethodNotAllowed", 133, "Error: Method not allowed!"),
    "UnsupportedMethod": ("MethodNotAllowed", 133, "Error: Method not recognized!"),
    "NotImplemented": ("Error", None, None),
    "RequestTimedOut": ("Error", None, None),
    "WaitingForClientTimedOut": ("Error", None, None),
    "ResourceChanged": ("Error", None, None),
    "UnexpectedBlock1Option": ("Error", None, None),
    "UnexpectedBlock2": ("Error", None, None),
    "MissingBlock2Option": ("Error", None, None),
    "NotObservable": ("Error", None, None),
    "ObservationCancelled": ("Error", None, None),
    "UnparsableMessage": ("Error", None, None),
    "CommunicationKilled": ("ConstructionRenderableError", 163, None),
    "LibraryShutdown": ("Error", None, None),
    "AnonymousHost": ("Error", None, None),
    "NetworkError": ("Error", None, None),
    "ResolutionError": ("NetworkError", None, None),
}


@pytest.mark.parametrize("name,spec", sorted(ERRORS.items()))
def test_error_hierarchy(name, spec):
    base, code, msg = spec
    cls = getattr(error, name)
    base_cls = base if isinstance(base, type) else getattr(error, base)
    assert issubclass(cls, base_cls)
    assert issubclass(cls, Exception)
    if code is not None:
        assert cls.code == code
        assert isinstance(cls.code, codes.Code)
        assert "message" in inspect.signature(cls).parameters
        assert inspect.signature(cls).parameters["message"].default is None
        rendered = cls().to_message()
        assert isinstance(rendered, message.Message)
        assert rendered.code == code
    if msg is not None:
        assert cls.message == msg


def test_error_reprs_of_codes_as_documented():
    assert repr(error.ConstructionRenderableError.code) == '<Response Code 160 "5.00 Internal Server Error">'
    assert repr(error.UnsupportedContentFormat.code) == '<Response Code 143 "4.15 Unsupported Media Type">'
    assert repr(error.CommunicationKilled.code) == '<Response Code 163 "5.03 Service Unavailable">'


def test_error_aliases_and_signatures():
    assert error.UnsupportedMediaType is error.UnsupportedContentFormat
    assert params(error.ResponseWrappingError) == [("coapmessage", POS, EMPTY)]
    wrapped = error.ResponseWrappingError(message.Message(code=codes.Code.NOT_FOUND))
    assert wrapped.to_message().code == codes.Code.NOT_FOUND
    assert error.RenderableError().to_message().code == codes.Code.INTERNAL_SERVER_ERROR
    assert issubclass(error.MalformedUrlError, ValueError)
    assert issubclass(error.MalformedUrlError, error.Error)
    assert issubclass(error.IncompleteUrlError, error.MalformedUrlError)


def test_construction_renderable_error_message_override():
    e = error.NotFound("no such thing")
    assert e.message == "no such thing"
    rendered = e.to_message()
    assert rendered.payload == b"no such thing"
    assert error.NotFound().to_message().payload == b""
    assert error.NoResource().to_message().payload == b"Error: Resource not found!"


def test_unparsable_message_carries_header_fields():
    e = error.UnparsableMessage("x", mtype=numbers.CON, mid=5)
    assert (e.mtype, e.mid) == (numbers.CON, 5)
    assert error.UnparsableMessage().mtype is None


# --- aiocoap.util, aiocoap.util.uri, aiocoap.meta ------------------------------------


def test_util_signatures():
    assert params(util.hostportjoin) == [("host", POS, EMPTY), ("port", POS, None)]
    assert params(util.hostportsplit) == [("hostport", POS, EMPTY)]
    assert params(util.quote_nonascii) == [("s", POS, EMPTY)]
    assert params(util.Sentinel) == [("label", POS, EMPTY)]
    assert issubclass(util.ExtensibleEnumMeta, type)
    assert params(util.ExtensibleEnumMeta.__init__, drop_first=True) == [
        ("name", POS, EMPTY), ("bases", POS, EMPTY), ("dict", POS, EMPTY),
    ]
    assert issubclass(util.ExtensibleIntEnum, int)
    assert type(util.ExtensibleIntEnum) is util.ExtensibleEnumMeta


def test_util_uri():
    assert util_uri.unreserved == "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
    assert set(util_uri.sub_delims) == set("!$&'()*+,;=")
    assert params(util_uri.quote_factory) == [("safe_characters", POS, EMPTY)]


def test_meta():
    assert isinstance(meta.version, str) and meta.version
    assert isinstance(meta.library_uri, str)
    assert meta.library_uri.startswith("http")
    assert meta.version in meta.library_uri


def test_plain_import_reaches_the_documented_modules():
    """After only ``import aiocoap``, applications use aiocoap.protocol,
    aiocoap.interfaces etc. as attributes (as with aiocoap)."""
    import subprocess
    import sys

    code = (
        "import aiocoap\n"
        "assert aiocoap.protocol.Context is aiocoap.Context\n"
        "assert aiocoap.interfaces.Resource and aiocoap.error.NotFound\n"
        "assert aiocoap.defaults.get_default_clienttransports and aiocoap.credentials.CredentialsMap\n"
        "assert aiocoap.protocol.BlockwiseRequest.__module__ == 'aiocoap.blockwise'\n"
        "assert aiocoap.numbers.COAP_PORT == 5683 and aiocoap.COAPS_PORT == 5684\n"
        "import aiocoap.util.secrets as s; assert len(s.token_bytes(4)) == 4\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.stdout.strip() == b"ok", done.stderr.decode()


# --- aiocoap 0.4.17 names of the tools' helper modules ------------------------------


def test_prettyprint_and_contenttype_names_of_0_4_17():
    from aiocoap.util import contenttype, prettyprint

    assert prettyprint.MEDIATYPE_HEXDUMP == "text/vnd.aiocoap.hexdump"
    assert params(prettyprint.lexer_for_mime) == [("mime", POS, EMPTY)]
    assert params(prettyprint.pretty_print) == [("message", POS, EMPTY)]
    assert params(contenttype.categorize) == [("contenttype", POS, EMPTY)]
    infos, mime, text = prettyprint.pretty_print(message.Message(payload=b"\x00\x01"))
    assert (infos, mime) == ([], prettyprint.MEDIATYPE_HEXDUMP)


def test_linkformat_lexer_of_0_4_17():
    pytest.importorskip("pygments")
    from pygments.lexer import RegexLexer

    from aiocoap.util.linkformat_pygments import LinkFormatLexer

    assert issubclass(LinkFormatLexer, RegexLexer)
    assert "application/link-format" in LinkFormatLexer.mimetypes


# --- the other public names of aiocoap 0.4.17 ---------------------------------------

# Every public name of aiocoap 0.4.17 that applications and test suites
# written for it reach, and this library has (module -> attribute paths),
# except those of the transports and tools pinned elsewhere (tinydtls, ws,
# tcp/tls/rfc8323common, proxy, resourcedirectory, prettyprint). Not
# carried over: error.classname (a loop variable aiocoap leaves behind).
AIOCOAP_0_4_17_NAMES = {
    "aiocoap": [
        "ContentFormat.SENML", "ContentFormat.define", "MCAST_ALL", "MCAST_IPV4_ALLCOAPNODES",
        "MCAST_IPV6_LINKLOCAL_ALLCOAPNODES", "MCAST_IPV6_LINKLOCAL_ALLNODES",
        "MCAST_IPV6_SITELOCAL_ALLCOAPNODES", "MCAST_IPV6_SITELOCAL_ALLNODES",
        "Message.payload_html", "OptionNumber.REQUEST_HASH", "OptionNumber.URI_PATH_ABBREV",
        "OptionNumber.name_printable", "OptionNumber.set_format", "Reliable",
        "TransportTuning.DEFAULT_BLOCK_SIZE_EXP", "TransportTuning.MULTICAST_REQUEST_TIMEOUT",
        "TransportTuning.OBSERVATION_RESET_TIME", "TransportTuning.reliability", "Unreliable",
    ],
    "aiocoap.blockwise": [
        "Block1Spool", "Block2Cache", "ContinueException", "IncompleteException",
    ],
    "aiocoap.credentials": [
        "CredentialReference", "CredentialsMap.find_all_used_contextless_oscore_kid",
        "TLSCert.__init__", "TLSCert.as_ssl_params", "import_filesystem_security_context",
    ],
    "aiocoap.defaults": [
        "has_reuse_port", "missing_module_functions", "ws_missing_modules",
    ],
    "aiocoap.error": [
        "ConToMulticast", "IncompleteUrlError.extra_help", "MessageError", "MissingRemoteError",
        "NetworkError.extra_help", "NoRequestInterface", "NotImplemented.code",
        "RemoteServerShutdown", "TimeoutError",
    ],
    "aiocoap.interfaces": [
        "EndpointAddress.blockwise_key", "MAX_REGULAR_BLOCK_SIZE_EXP",
        "ObservableResource.render_to_pipe", "Request.response", "Resource.__init__",
        "Resource.render_to_pipe",
    ],
    "aiocoap.message": [
        "Message.payload_html",
    ],
    "aiocoap.meta": [
        "bugreport_uri",
    ],
    "aiocoap.numbers": [
        "ContentFormat.SENML", "ContentFormat.define", "MCAST_ALL", "MCAST_IPV4_ALLCOAPNODES",
        "MCAST_IPV6_LINKLOCAL_ALLCOAPNODES", "MCAST_IPV6_LINKLOCAL_ALLNODES",
        "MCAST_IPV6_SITELOCAL_ALLCOAPNODES", "MCAST_IPV6_SITELOCAL_ALLNODES",
        "OptionNumber.REQUEST_HASH", "OptionNumber.URI_PATH_ABBREV", "OptionNumber.name_printable",
        "OptionNumber.set_format", "Reliable", "TransportTuning.DEFAULT_BLOCK_SIZE_EXP",
        "TransportTuning.MULTICAST_REQUEST_TIMEOUT", "TransportTuning.OBSERVATION_RESET_TIME",
        "TransportTuning.reliability", "Unreliable",
    ],
    "aiocoap.numbers.codes": [
        "ABORT", "BAD_GATEWAY", "BAD_OPTION", "BAD_REQUEST", "CHANGED", "CONFLICT", "CONTENT",
        "CONTINUE", "CREATED", "CSM", "DELETE", "DELETED", "EMPTY", "FETCH", "FORBIDDEN",
        "GATEWAY_TIMEOUT", "GET", "HOP_LIMIT_REACHED", "INTERNAL_SERVER_ERROR",
        "METHOD_NOT_ALLOWED", "NOT_ACCEPTABLE", "NOT_FOUND", "NOT_IMPLEMENTED", "PATCH", "PING",
        "PONG", "POST", "PRECONDITION_FAILED", "PROXYING_NOT_SUPPORTED", "PUT", "RELEASE",
        "REQUEST_ENTITY_INCOMPLETE", "REQUEST_ENTITY_TOO_LARGE", "SERVICE_UNAVAILABLE",
        "TOO_MANY_REQUESTS", "UNAUTHORIZED", "UNPROCESSABLE_ENTITY", "UNSUPPORTED_CONTENT_FORMAT",
        "VALID", "iPATCH",
    ],
    "aiocoap.numbers.constants": [
        "MCAST_ALL", "MCAST_IPV4_ALLCOAPNODES", "MCAST_IPV6_LINKLOCAL_ALLCOAPNODES",
        "MCAST_IPV6_LINKLOCAL_ALLNODES", "MCAST_IPV6_SITELOCAL_ALLCOAPNODES",
        "MCAST_IPV6_SITELOCAL_ALLNODES", "Reliable", "TransportTuning.DEFAULT_BLOCK_SIZE_EXP",
        "TransportTuning.MULTICAST_REQUEST_TIMEOUT", "TransportTuning.OBSERVATION_RESET_TIME",
        "TransportTuning.reliability", "Unreliable",
    ],
    "aiocoap.numbers.contentformat": [
        "ContentFormat.SENML", "ContentFormat.define", "ContentFormatMeta",
    ],
    "aiocoap.numbers.optionnumbers": [
        "OptionNumber.REQUEST_HASH", "OptionNumber.URI_PATH_ABBREV", "OptionNumber.name_printable",
        "OptionNumber.set_format",
    ],
    "aiocoap.options": [
        "Options.request_hash", "Options.uri_path_abbrev",
    ],
    "aiocoap.optiontypes": [
        "BlockOption.type", "ContentFormatOption", "TypedOption",
    ],
    "aiocoap.oscore": [
        "A128CBC", "AES_CBC", "AeadAlgorithm", "BaseSecurityContext", "COMPRESSION_BITS_N",
        "COMPRESSION_BITS_RESERVED", "COMPRESSION_BIT_H", "COMPRESSION_BIT_K",
        "COSE_KEY_COMMON_ALG", "COSE_KEY_COMMON_KTY", "COSE_KEY_EC2_X", "COSE_KEY_EC2_Y",
        "COSE_KEY_OKP_CRV", "COSE_KEY_OKP_X", "COSE_KID", "COSE_KID_CONTEXT", "COSE_KTY_EC2",
        "COSE_KTY_OKP", "COSE_PIV", "CanProtect", "CanUnprotect", "CodeStyle",
        "FilesystemSecurityContext.alg_aead",
        "FilesystemSecurityContext.find_all_used_contextless_oscore_kid",
        "FilesystemSecurityContext.from_item", "MAX_SEQNO",
        "RequestIdentifiers.get_reusable_kid_and_piv", "SecurityContextUtils",
        "SymmetricEncryptionAlgorithm",
    ],
    "aiocoap.oscore_sitewrapper": [
        "OscoreSiteWrapper.get_resources_as_linkheader", "OscoreSiteWrapper.render_to_pipe",
    ],
    "aiocoap.pipe": [
        "IterablePipe", "Pipe.Event", "Pipe.poke",
    ],
    "aiocoap.protocol": [
        "SHUTDOWN_TIMEOUT",
    ],
    "aiocoap.resource": [
        "ObservableResource.render_to_pipe", "Resource.render_to_pipe", "Site.render_to_pipe",
    ],
    "aiocoap.tokenmanager": [
        "TokenManager.client_credentials", "TokenManager.next_token",
    ],
    "aiocoap.transports.generic_udp": [
        "COAP_PORT",
    ],
    "aiocoap.transports.oscore": [
        "MAX_REGULAR_BLOCK_SIZE_EXP", "OSCOREAddress.blockwise_key",
    ],
    "aiocoap.transports.simple6": [
        "COAP_PORT",
    ],
    "aiocoap.transports.simplesocketserver": [
        "COAP_PORT",
    ],
    "aiocoap.transports.udp6": [
        "COAP_PORT", "InterfaceOnlyPktinfo", "UDP6EndpointAddress.blockwise_key",
        "UDP6EndpointAddress.maximum_block_size_exp", "UDP6EndpointAddress.netif",
    ],
    "aiocoap.util": [
        "deprecation_getattr",
    ],
    "aiocoap.util.asyncio.getaddrinfo_addrconfig": [
        "getaddrinfo_routechecked",
    ],
    "aiocoap.util.asyncio.recvmsg": [
        "RecvmsgDatagramProtocol.error_received", "RecvmsgSelectorDatagramTransport.max_size",
    ],
    "aiocoap.util.asyncio.timeoutdict": [
        "K", "TimeoutDict", "V",
    ],
    "aiocoap.util.socknumbers": [
        "HAS_RECVERR",
    ],
}

@pytest.mark.parametrize(
    "module,path",
    [(module, path) for module, paths in AIOCOAP_0_4_17_NAMES.items() for path in paths],
)
def test_aiocoap_0_4_17_name_exists(module, path):
    if module in ("aiocoap.oscore", "aiocoap.oscore_sitewrapper", "aiocoap.transports.oscore"):
        pytest.importorskip("cryptography")
    obj = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)


def test_aiocoap_0_4_17_signatures():
    from aiocoap import credentials, interfaces, pipe
    from aiocoap.util.asyncio.timeoutdict import TimeoutDict

    assert params(numbers.OptionNumber.set_format, drop_first=True) == [("value", POS, EMPTY)]
    assert params(message.Message.payload_html, drop_first=True) == []
    assert params(credentials.CredentialReference) == [("target", POS, EMPTY), ("map", POS, EMPTY)]
    assert params(credentials.TLSCert) == [("certfile", POS, EMPTY)]
    assert params(credentials.TLSCert.as_ssl_params, drop_first=True) == []
    assert [p[0] for p in params(error.NetworkError.extra_help, drop_first=True)] == ["hints"]
    assert params(interfaces.Resource.render_to_pipe, drop_first=True) == [("pipe", POS, EMPTY)]
    assert params(pipe.IterablePipe) == [("request", POS, EMPTY)]
    assert params(pipe.Pipe.poke, drop_first=True) == []
    assert pipe.Pipe.Event._fields == ("message", "exception", "is_last")
    assert params(TimeoutDict) == [("timeout", POS, EMPTY)]
    assert params(util.deprecation_getattr) == [("_deprecated_aliases", POS, EMPTY), ("_globals", POS, EMPTY)]
    from aiocoap import defaults

    assert params(defaults.has_reuse_port) == [("use_env", KW, True)]
    from aiocoap.blockwise import ContinueException, IncompleteException

    assert params(ContinueException) == [("block1", POS, EMPTY)]
    assert params(IncompleteException) == [("message", POS, None)]


def test_aiocoap_0_4_17_values():
    assert aiocoap.MCAST_IPV4_ALLCOAPNODES == "224.0.1.187"
    assert aiocoap.MCAST_IPV6_LINKLOCAL_ALLCOAPNODES == "ff02::fd"
    assert aiocoap.MCAST_IPV6_SITELOCAL_ALLCOAPNODES == "ff05::fd"
    assert set(aiocoap.MCAST_ALL) >= {"224.0.1.187", "ff02::1", "ff02::fd", "ff05::1", "ff05::fd"}
    assert numbers.OptionNumber.URI_PATH_ABBREV == 13 and numbers.OptionNumber.REQUEST_HASH == 548
    assert codes.GET is codes.Code.GET and codes.ABORT == 229 and aiocoap.numbers.codes.iPATCH == 7
    assert aiocoap.Reliable.reliability is True and aiocoap.Unreliable.reliability is False
    assert issubclass(aiocoap.Reliable, constants.TransportTuning)
    assert constants.TransportTuning.reliability is None
    assert constants.TransportTuning().DEFAULT_BLOCK_SIZE_EXP == 6
    assert constants.TransportTuning().OBSERVATION_RESET_TIME == 128
    assert constants.TransportTuning().MULTICAST_REQUEST_TIMEOUT == 93.0 + 5.0
    assert error.NotImplemented.code == codes.Code.NOT_IMPLEMENTED
    assert error.NoRequestInterface.code == codes.Code.PROXYING_NOT_SUPPORTED
    assert issubclass(error.RequestTimedOut, error.TimeoutError)
    assert issubclass(error.TimeoutError, error.NetworkError)
    assert issubclass(error.ResetReceived, error.MessageError)
    assert str(types.Type.ACK) == "ACK"
    assert numbers.ContentFormat.SENML == 112


# aiocoap.error.classname is the loop variable of the module code that
# generates 0.4.17's error classes, left behind by accident, not API.
_NOT_API = {"aiocoap.error.classname"}


def _names_of_0_4_17() -> list[str]:
    path = os.path.join(os.path.dirname(__file__), "data", "aiocoap-0.4.17-names.txt")
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


def test_every_public_name_of_aiocoap_0_4_17_exists():
    names = _names_of_0_4_17()
    assert len(names) > 200
    missing = []
    for name in names:
        if name in _NOT_API:
            continue
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert missing == []
