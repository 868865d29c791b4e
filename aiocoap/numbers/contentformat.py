"""Content-Format numbers: the IANA "CoAP Content-Formats" registry.

A Content-Format number (RFC 7252 §12.3) stands for a media type, possibly
with parameters, plus a content coding. :class:`ContentFormat` names every
number registered at the time of writing and knows its media type and
coding; any other number still works as an unnamed value.

Registry ranges: 0-255 are assigned by expert review, 256-9999 by IETF
review or IESG approval, 10000-64999 first come first served, and
65000-65535 are for experimental use (never named here).

This module is the single source of truth for the mapping;
:mod:`aiocoap.numbers.media_types` derives its legacy dictionaries from it.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Optional

from ..util import ExtensibleEnumMeta, ExtensibleIntEnum

__all__ = ["ContentFormat", "ContentFormatMeta"]


class ContentFormatMeta(ExtensibleEnumMeta):
    """Metaclass of :class:`ContentFormat` (an :class:`ExtensibleEnumMeta`;
    the registry behind the members lives in this module)."""


if TYPE_CHECKING:
    _ContentFormatBase = ExtensibleIntEnum
else:

    class _ContentFormatBase(ExtensibleIntEnum, metaclass=ContentFormatMeta):
        pass


class ContentFormat(_ContentFormatBase):
    """A CoAP Content-Format number.

    Registered numbers are named members that know their media type and
    content coding; look them up from a media type with
    :meth:`by_media_type`:

    >>> ContentFormat.by_media_type("application/json")
    <ContentFormat 50, media_type='application/json'>
    >>> str(ContentFormat.CBOR), ContentFormat.CBOR.encoding
    ('application/cbor', 'identity')
    >>> ContentFormat(11050)
    <ContentFormat 11050, media_type='application/json', encoding='deflate'>
    >>> ContentFormat(65000), ContentFormat(65000).media_type
    (<ContentFormat 65000>, None)
    """

    TEXT = 0
    COSE_ENCRYPT0 = 16
    COSE_MAC0 = 17
    COSE_SIGN1 = 18
    ACE_CBOR = 19
    IMAGE_GIF = 21
    IMAGE_JPEG = 22
    IMAGE_PNG = 23
    LINKFORMAT = 40
    XML = 41
    OCTETSTREAM = 42
    EXI = 47
    JSON = 50
    JSON_PATCH_JSON = 51
    MERGE_PATCH_JSON = 52
    CBOR = 60
    CWT = 61
    MULTIPART_CORE = 62
    CBOR_SEQ = 63
    EDHOC_CBOR_SEQ = 64
    CID_EDHOC_CBOR_SEQ = 65
    COSE_ENCRYPT = 96
    COSE_MAC = 97
    COSE_SIGN = 98
    COSE_KEY = 101
    COSE_KEY_SET = 102
    SENML_JSON = 110
    SENSML_JSON = 111
    SENML_CBOR = 112
    SENSML_CBOR = 113
    SENML_EXI = 114
    SENSML_EXI = 115
    YANG_DATA_CBOR_SID = 140
    COAP_GROUP_JSON = 256
    CONCISE_PROBLEM_DETAILS_CBOR = 257
    SWID_CBOR = 258
    PKIXCMP = 259
    DOTS_CBOR = 271
    MISSING_BLOCKS_CBOR_SEQ = 272
    PKCS7_MIME_SERVER_GENERATED_KEY = 280
    PKCS7_MIME_CERTS_ONLY = 281
    PKCS8 = 284
    CSRATTRS = 285
    PKCS10 = 286
    PKIX_CERT = 287
    AIF_CBOR = 290
    AIF_JSON = 291
    SENML_XML = 310
    SENSML_XML = 311
    SENML_ETCH_JSON = 320
    SENML_ETCH_CBOR = 322
    YANG_DATA_CBOR = 340
    YANG_DATA_CBOR_NAME = 341
    TD_JSON = 432
    TM_JSON = 433
    VND_OCF_CBOR = 10000
    OSCORE = 10001
    JAVASCRIPT = 10002
    JSON_DEFLATE = 11050
    CBOR_DEFLATE = 11060
    VND_OMA_LWM2M_TLV = 11542
    VND_OMA_LWM2M_JSON = 11543
    VND_OMA_LWM2M_CBOR = 11544
    TEXT_CSS = 20000
    IMAGE_SVG_XML = 30000
    SENML = 112
    """Another name of SENML_CBOR (aiocoap 0.4.x)."""

    @classmethod
    def define(cls, number: int, media_type: str, encoding: str = "identity") -> None:
        """Add (or, with a warning, change) the media type and coding of a
        Content-Format number for this program: for experiments with
        numbers the registry does not have yet. Afterwards the number prints
        as that media type and :meth:`by_media_type` finds it.

        >>> ContentFormat.define(65100, "application/x-experiment+cbor")
        >>> ContentFormat.by_media_type("application/x-experiment+cbor")
        <ContentFormat 65100, media_type='application/x-experiment+cbor'>
        """
        mtype, params, coding = _parse_media_type(media_type)
        if coding is not None:
            raise ValueError("give the content coding as encoding=, not with @ in the media type")
        old = _REGISTRY.get(number)
        if old is not None and old != (media_type, encoding):
            warnings.warn(
                f"Redefining Content-Format {number} (was {old[0]!r}) makes this program "
                "disagree with its peers; only do this for experiments",
                stacklevel=2,
            )
            old_mtype, old_params, _ = _parse_media_type(old[0])
            if _BY_KEY.get((old_mtype, old_params, old[1])) == number:
                del _BY_KEY[(old_mtype, old_params, old[1])]
        _REGISTRY[number] = (media_type, encoding)
        _BY_KEY.setdefault((mtype, params, encoding), number)

    @classmethod
    def by_media_type(cls, media_type: str, encoding: str = "identity") -> "ContentFormat":
        """Find the registered Content-Format of a media type and coding.

        Type, subtype and parameter names are compared case-insensitively
        (as is the value of ``charset``), whitespace around ``;`` and ``=``
        is ignored, and parameter values may be quoted. A content coding can
        also be given as an ``@coding`` suffix, which is what ``str()`` of a
        non-identity Content-Format looks like. Bare ``text/plain`` is
        accepted for 0.

        >>> ContentFormat.by_media_type('text/plain; charset="UTF-8"')
        <ContentFormat 0, media_type='text/plain;charset=utf-8'>
        >>> ContentFormat.by_media_type("application/cbor", "deflate").name
        'CBOR_DEFLATE'

        Raises :class:`KeyError` if nothing is registered for the
        combination (or the string is not a media type at all).
        """
        if not isinstance(media_type, str) or not isinstance(encoding, str):
            raise KeyError((media_type, encoding))
        try:
            mtype, params, suffix = _parse_media_type(media_type)
        except ValueError:
            raise KeyError((media_type, encoding)) from None
        coding = encoding.strip().lower()
        if suffix is not None:
            if coding not in ("identity", suffix):
                raise KeyError((media_type, encoding))
            coding = suffix
        try:
            return cls(_BY_KEY[(mtype, params, coding)])
        except KeyError:
            raise KeyError((media_type, encoding)) from None

    @property
    def media_type(self) -> Optional[str]:
        """The registered media type with its parameters, or None for
        numbers not in the registry."""
        entry = _REGISTRY.get(int(self))
        return entry[0] if entry is not None else None

    @property
    def encoding(self) -> str:
        """The registered content coding; ``"identity"`` for uncompressed
        formats and for numbers not in the registry."""
        entry = _REGISTRY.get(int(self))
        return entry[1] if entry is not None else "identity"

    def is_known(self) -> bool:
        """True if the number is in the registry (has a media type)."""
        return int(self) in _REGISTRY

    def __str__(self) -> str:
        entry = _REGISTRY.get(int(self))
        if entry is None:
            return str(int(self))
        media_type, coding = entry
        return media_type if coding == "identity" else f"{media_type}@{coding}"

    def __repr__(self) -> str:
        entry = _REGISTRY.get(int(self))
        if entry is None:
            return f"<{type(self).__name__} {int(self)}>"
        media_type, coding = entry
        extra = "" if coding == "identity" else f", encoding={coding!r}"
        return f"<{type(self).__name__} {int(self)}, media_type={media_type!r}{extra}>"


# Media types are written without whitespace; quoting of parameter values
# follows the registry.
_REGISTRY: dict[int, tuple[str, str]] = {
    0: ("text/plain;charset=utf-8", "identity"),
    16: ('application/cose;cose-type="cose-encrypt0"', "identity"),
    17: ('application/cose;cose-type="cose-mac0"', "identity"),
    18: ('application/cose;cose-type="cose-sign1"', "identity"),
    19: ("application/ace+cbor", "identity"),
    21: ("image/gif", "identity"),
    22: ("image/jpeg", "identity"),
    23: ("image/png", "identity"),
    40: ("application/link-format", "identity"),
    41: ("application/xml", "identity"),
    42: ("application/octet-stream", "identity"),
    47: ("application/exi", "identity"),
    50: ("application/json", "identity"),
    51: ("application/json-patch+json", "identity"),
    52: ("application/merge-patch+json", "identity"),
    60: ("application/cbor", "identity"),
    61: ("application/cwt", "identity"),
    62: ("application/multipart-core", "identity"),
    63: ("application/cbor-seq", "identity"),
    64: ("application/edhoc+cbor-seq", "identity"),
    65: ("application/cid-edhoc+cbor-seq", "identity"),
    96: ('application/cose;cose-type="cose-encrypt"', "identity"),
    97: ('application/cose;cose-type="cose-mac"', "identity"),
    98: ('application/cose;cose-type="cose-sign"', "identity"),
    101: ("application/cose-key", "identity"),
    102: ("application/cose-key-set", "identity"),
    110: ("application/senml+json", "identity"),
    111: ("application/sensml+json", "identity"),
    112: ("application/senml+cbor", "identity"),
    113: ("application/sensml+cbor", "identity"),
    114: ("application/senml-exi", "identity"),
    115: ("application/sensml-exi", "identity"),
    140: ("application/yang-data+cbor;id=sid", "identity"),
    256: ("application/coap-group+json", "identity"),
    257: ("application/concise-problem-details+cbor", "identity"),
    258: ("application/swid+cbor", "identity"),
    259: ("application/pkixcmp", "identity"),
    271: ("application/dots+cbor", "identity"),
    272: ("application/missing-blocks+cbor-seq", "identity"),
    280: ("application/pkcs7-mime;smime-type=server-generated-key", "identity"),
    281: ("application/pkcs7-mime;smime-type=certs-only", "identity"),
    284: ("application/pkcs8", "identity"),
    285: ("application/csrattrs", "identity"),
    286: ("application/pkcs10", "identity"),
    287: ("application/pkix-cert", "identity"),
    290: ("application/aif+cbor", "identity"),
    291: ("application/aif+json", "identity"),
    310: ("application/senml+xml", "identity"),
    311: ("application/sensml+xml", "identity"),
    320: ("application/senml-etch+json", "identity"),
    322: ("application/senml-etch+cbor", "identity"),
    340: ("application/yang-data+cbor", "identity"),
    341: ("application/yang-data+cbor;id=name", "identity"),
    432: ("application/td+json", "identity"),
    433: ("application/tm+json", "identity"),
    10000: ("application/vnd.ocf+cbor", "identity"),
    10001: ("application/oscore", "identity"),
    10002: ("application/javascript", "identity"),
    11050: ("application/json", "deflate"),
    11060: ("application/cbor", "deflate"),
    11542: ("application/vnd.oma.lwm2m+tlv", "identity"),
    11543: ("application/vnd.oma.lwm2m+json", "identity"),
    11544: ("application/vnd.oma.lwm2m+cbor", "identity"),
    20000: ("text/css", "identity"),
    30000: ("image/svg+xml", "identity"),
}


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_TYPE_RE = re.compile(rf"[ \t]*({_TOKEN})/({_TOKEN})[ \t]*")
_PARAM_RE = re.compile(rf";[ \t]*(?:({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|{_QUOTED})[ \t]*)?")
_CODING_RE = re.compile(rf"@[ \t]*({_TOKEN})[ \t]*")
# Parameters whose values are case-insensitive (RFC 2046 §4.1.2 for charset).
_CASELESS_PARAMS = frozenset({"charset"})

_Params = tuple[tuple[str, str], ...]


def _parse_media_type(text: str) -> tuple[str, _Params, Optional[str]]:
    """Split ``type/subtype;name=value...[@coding]`` into a normalized
    (type/subtype, sorted parameters, coding or None) triple.

    Raises ValueError if the text is not of that shape."""
    match = _TYPE_RE.match(text)
    if match is None:
        raise ValueError(text)
    mtype = f"{match.group(1)}/{match.group(2)}".lower()
    params = []
    pos = match.end()
    while pos < len(text) and text[pos] == ";":
        match = _PARAM_RE.match(text, pos)
        if match is None:
            raise ValueError(text)
        name, value = match.group(1), match.group(2)
        # An empty segment (as in a trailing ";") carries no parameter.
        if name is not None:
            name = name.lower()
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            if name in _CASELESS_PARAMS:
                value = value.lower()
            params.append((name, value))
        pos = match.end()
    coding = None
    if pos < len(text):
        match = _CODING_RE.fullmatch(text, pos)
        if match is None:
            raise ValueError(text)
        coding = match.group(1).lower()
    return mtype, tuple(sorted(params)), coding


def _build_index() -> dict[tuple[str, _Params, str], int]:
    index = {}
    for number, (media_type, coding) in _REGISTRY.items():
        mtype, params, _ = _parse_media_type(media_type)
        index[(mtype, params, coding)] = number
    # Before the charset was spelled out in the registry, 0 was known as
    # bare text/plain; that spelling still finds it.
    index[("text/plain", (), "identity")] = 0
    return index


_BY_KEY = _build_index()
