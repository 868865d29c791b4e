"""Module in which all meaningful numbers are collected. Most of the
submodules correspond to IANA registries.

The commonly used names (codes, types, option numbers, ContentFormat) are
re-exported here and from the package root."""

from . import constants, contentformat, types  # noqa: F401
from .codes import Code
from .contentformat import ContentFormat
from .optionnumbers import OptionNumber
from .types import Type, CON, NON, ACK, RST
from .constants import (
    COAP_PORT,
    COAPS_PORT,
    MAX_REGULAR_BLOCK_SIZE_EXP,
    SHUTDOWN_TIMEOUT,
    TransportTuning,
)

for _code in Code:
    globals()[_code.name] = _code
UNSUPPORTED_CONTENT_FORMAT = Code.UNSUPPORTED_CONTENT_FORMAT
del _code

__all__ = (
    ["Code", "ContentFormat", "OptionNumber", "Type", "TransportTuning",
     "CON", "NON", "ACK", "RST", "UNSUPPORTED_CONTENT_FORMAT",
     "COAP_PORT", "COAPS_PORT", "MAX_REGULAR_BLOCK_SIZE_EXP", "SHUTDOWN_TIMEOUT"]
    + [c.name for c in Code]
)
