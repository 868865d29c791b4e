"""The byte-level structures of RFC 8613.

* :class:`OscoreOptionValue` -- the compressed COSE header in the OSCORE
  option (§6.1): flag byte, Partial IV, kid context, kid.
* :func:`build_nonce` (§5.2), :func:`build_aad` (§5.4) and
  :func:`build_info` (§3.2.1).
* :func:`encode_partial_iv` / :func:`decode_partial_iv`: sequence numbers as
  Partial IVs (big-endian, minimal length, 0 is one zero byte).

Decoding of untrusted bytes raises :class:`DecodeError` only. Non-canonical
encodings (an all-zero flag byte that is not omitted, Partial IVs with
leading zeros, reserved flag bits set) are rejected rather than guessed at,
so that every accepted option value has exactly one meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

try:
    import cbor2
except ImportError as _e:  # pragma: no cover (depends on the installation)
    raise ImportError("OSCORE needs the 'cbor2' package; install aiocoap[oscore]") from _e

from .errors import DecodeError

__all__ = [
    "MAX_SEQNO",
    "COSE_KID",
    "COSE_PIV",
    "COSE_KID_CONTEXT",
    "COMPRESSION_BITS_N",
    "COMPRESSION_BIT_K",
    "COMPRESSION_BIT_H",
    "COMPRESSION_BIT_GROUP",
    "COMPRESSION_BITS_RESERVED",
    "OscoreOptionValue",
    "encode_partial_iv",
    "decode_partial_iv",
    "build_nonce",
    "build_aad",
    "build_info",
]

MAX_SEQNO = 2**40 - 1
"""Largest sender sequence number: Partial IVs are at most 5 bytes long"""

# COSE header parameter labels (RFC 9052 §3.1, and kid context: RFC 8613
# §5.1) of the values the OSCORE option carries.
COSE_KID = 4
COSE_PIV = 6
COSE_KID_CONTEXT = 10

# The flag byte of the OSCORE option (RFC 8613 §6.1)
COMPRESSION_BITS_N = 0x07
"""Length of the Partial IV"""
COMPRESSION_BIT_K = 0x08
"""A kid follows"""
COMPRESSION_BIT_H = 0x10
"""A kid context follows"""
COMPRESSION_BIT_GROUP = 0x20
"""Group OSCORE (draft-ietf-core-oscore-groupcomm); not supported here, so
an option with it set is rejected"""
COMPRESSION_BITS_RESERVED = 0xC0
"""Bits no specification assigns"""

_REJECTED_FLAGS = COMPRESSION_BITS_RESERVED | COMPRESSION_BIT_GROUP


def encode_partial_iv(seqno: int) -> bytes:
    """Encode a sequence number as Partial IV.

    >>> encode_partial_iv(0), encode_partial_iv(20), encode_partial_iv(256)
    (b'\\x00', b'\\x14', b'\\x01\\x00')
    """
    if not 0 <= seqno <= MAX_SEQNO:
        raise ValueError(f"sequence number {seqno} out of the range of Partial IVs")
    return seqno.to_bytes(max(1, (seqno.bit_length() + 7) // 8), "big")


def decode_partial_iv(partial_iv: bytes) -> int:
    return int.from_bytes(partial_iv, "big")


@dataclass(frozen=True)
class OscoreOptionValue:
    """The content of an OSCORE option (RFC 8613 §6.1).

    Absent fields are None; an empty ``kid`` (``b""``) is present and
    distinct from an absent one.

    >>> OscoreOptionValue(partial_iv=b'\\x14', kid=b'').encode().hex()
    '0914'
    >>> OscoreOptionValue.decode(bytes.fromhex('19140837cbf3210017a2d3'))
    OscoreOptionValue(partial_iv=b'\\x14', kid_context=b'7\\xcb\\xf3!\\x00\\x17\\xa2\\xd3', kid=b'')
    """

    partial_iv: Optional[bytes] = None
    kid_context: Optional[bytes] = None
    kid: Optional[bytes] = None

    def encode(self) -> bytes:
        flags = 0
        parts = []
        if self.partial_iv is not None:
            if not 1 <= len(self.partial_iv) <= 5:
                raise ValueError("Partial IV must be 1 to 5 bytes long")
            flags |= len(self.partial_iv)
            parts.append(self.partial_iv)
        if self.kid_context is not None:
            if len(self.kid_context) > 255:
                raise ValueError("kid context must be at most 255 bytes long")
            flags |= COMPRESSION_BIT_H
            parts.append(bytes((len(self.kid_context),)))
            parts.append(self.kid_context)
        if self.kid is not None:
            flags |= COMPRESSION_BIT_K
            parts.append(self.kid)
        if not flags:
            return b""
        return bytes((flags,)) + b"".join(parts)

    @classmethod
    def decode(cls, value: bytes) -> "OscoreOptionValue":
        """Parse an OSCORE option value; raises DecodeError if malformed."""
        if not value:
            return cls()
        flags = value[0]
        if flags & _REJECTED_FLAGS:
            raise DecodeError("OSCORE option uses reserved flag bits")
        if not flags:
            raise DecodeError("OSCORE option with all flags zero must be empty")
        n = flags & COMPRESSION_BITS_N
        if n > 5:
            raise DecodeError("OSCORE option uses a reserved Partial IV length")
        pos = 1
        partial_iv = None
        if n:
            partial_iv = bytes(value[pos : pos + n])
            if len(partial_iv) != n:
                raise DecodeError("OSCORE option Partial IV truncated")
            if n > 1 and partial_iv[0] == 0:
                raise DecodeError("OSCORE option Partial IV has leading zeros")
            pos += n
        kid_context = None
        if flags & COMPRESSION_BIT_H:
            if pos >= len(value):
                raise DecodeError("OSCORE option kid context length missing")
            s = value[pos]
            pos += 1
            kid_context = bytes(value[pos : pos + s])
            if len(kid_context) != s:
                raise DecodeError("OSCORE option kid context truncated")
            pos += s
        kid = None
        if flags & COMPRESSION_BIT_K:
            kid = bytes(value[pos:])
        elif pos != len(value):
            raise DecodeError("OSCORE option has trailing bytes")
        return cls(partial_iv=partial_iv, kid_context=kid_context, kid=kid)


def build_nonce(common_iv: bytes, id_piv: bytes, partial_iv: bytes) -> bytes:
    """The AEAD nonce of §5.2 from the Common IV, the Sender ID of the
    endpoint that generated the Partial IV, and the Partial IV.

    >>> build_nonce(bytes.fromhex('4622d4dd6d944168eefb54987c'), b'', b'\\x14').hex()
    '4622d4dd6d944168eefb549868'
    """
    length = len(common_iv)
    idlen = length - 6
    if len(id_piv) > idlen:
        raise ValueError(f"Sender ID too long for a {length} byte nonce")
    if len(partial_iv) > 5:
        raise ValueError("Partial IV longer than 5 bytes")
    padded = bytes((len(id_piv),)) + id_piv.rjust(idlen, b"\0") + partial_iv.rjust(5, b"\0")
    return (int.from_bytes(padded, "big") ^ int.from_bytes(common_iv, "big")).to_bytes(length, "big")


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes((major << 5 | value,))
    if value < 0x100:
        return bytes((major << 5 | 24, value))
    if value < 0x10000:
        return bytes((major << 5 | 25,)) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes((major << 5 | 26,)) + value.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + value.to_bytes(8, "big")


def _cbor_bstr(value: bytes) -> bytes:
    return _cbor_head(2, len(value)) + value


def _cbor_int(value: int) -> bytes:
    return _cbor_head(0, value) if value >= 0 else _cbor_head(1, -1 - value)


_ENC_STRUCTURE_START = b"\x83\x68Encrypt0\x40"
"""array(3), "Encrypt0", h'' -- the constant start of the Enc_structure"""


def build_aad(alg_aead: int, request_kid: bytes, request_piv: bytes, class_i_options: bytes = b"") -> bytes:
    """The serialized COSE Enc_structure of §5.4 used as AEAD associated data.

    ``alg_aead`` is the COSE identifier of the AEAD algorithm; request kid
    and Partial IV are those of the request, also when protecting a
    response. The CBOR is written out directly (it is on the path of
    every message, and the structure is fixed).

    >>> build_aad(10, b'', b'\\x14').hex()
    '8368456e63727970743040488501810a40411440'
    """
    external_aad = (
        b"\x85\x01\x81" + _cbor_int(alg_aead) + _cbor_bstr(request_kid)
        + _cbor_bstr(request_piv) + _cbor_bstr(class_i_options)
    )
    return _ENC_STRUCTURE_START + _cbor_bstr(external_aad)


def build_info(id: bytes, id_context: Optional[bytes], alg_aead: int, type: str, length: int) -> bytes:
    """The HKDF info of §3.2.1; ``type`` is ``"Key"`` or ``"IV"``.

    >>> build_info(b'', None, 10, 'IV', 13).hex()
    '8540f60a6249560d'
    """
    return cbor2.dumps([id, id_context, alg_aead, type, length])
