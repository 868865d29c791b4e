"""Module in which all meaningful numbers are collected. Most of the
submodules correspond to IANA registries.

The commonly used names (codes, types, option numbers, ContentFormat) are
re-exported here and from the package root."""

from . import codes, constants, contentformat, types  # noqa: F401
from .contentformat import ContentFormat
from .optionnumbers import OptionNumber
from .types import Type, CON, NON, ACK, RST
from .codes import *  # noqa: F401,F403  (Code and the code constants: GET, CONTENT, ...)
from .constants import (
    COAP_PORT,
    COAPS_PORT,
    MAX_REGULAR_BLOCK_SIZE_EXP,
    MCAST_ALL,
    MCAST_IPV4_ALLCOAPNODES,
    MCAST_IPV6_LINKLOCAL_ALLCOAPNODES,
    MCAST_IPV6_LINKLOCAL_ALLNODES,
    MCAST_IPV6_SITELOCAL_ALLCOAPNODES,
    MCAST_IPV6_SITELOCAL_ALLNODES,
    SHUTDOWN_TIMEOUT,
    Reliable,
    TransportTuning,
    Unreliable,
)

__all__ = [
    "ContentFormat", "OptionNumber", "Type", "TransportTuning", "Reliable", "Unreliable",
    "CON", "NON", "ACK", "RST",
    "COAP_PORT", "COAPS_PORT", "MAX_REGULAR_BLOCK_SIZE_EXP", "SHUTDOWN_TIMEOUT",
    "MCAST_ALL", "MCAST_IPV4_ALLCOAPNODES", "MCAST_IPV6_LINKLOCAL_ALLCOAPNODES",
    "MCAST_IPV6_LINKLOCAL_ALLNODES", "MCAST_IPV6_SITELOCAL_ALLCOAPNODES",
    "MCAST_IPV6_SITELOCAL_ALLNODES",
]
# (a form type checkers read, unlike a computed list)
__all__ += codes.__all__
