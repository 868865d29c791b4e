"""OSCORE (RFC 8613): protecting CoAP messages end to end.

Here are the algorithms, the security contexts and the protection and
verification of single messages, without any I/O. Sending protected requests
through a :class:`aiocoap.Context` and serving protected resources is done
by :mod:`aiocoap.transports.oscore` on top of this.

The implementation lives in the modules of :mod:`aiocoap._oscore`; this
module is the public face. In short:

* A client protects with ``outer, request_id = secctx.protect(request)`` and
  verifies every response with ``plain, _ = secctx.unprotect(response,
  request_id)``.
* A server picks the context by :func:`verify_start`, runs ``plain,
  request_id = secctx.unprotect(request)``, and protects each response
  (notifications included) with ``outer, _ = secctx.protect(response,
  request_id)``. A :class:`ReplayErrorWithEcho` is answered by protecting
  its :meth:`~ReplayErrorWithEcho.to_message` with its ``secctx`` and
  ``request_id``.

A security context is composed of :class:`BaseSecurityContext` (the
common parameters, ``alg_aead`` first) and the abilities
:class:`CanProtect`, :class:`CanUnprotect` and
:class:`SecurityContextUtils` (key derivation), as in aiocoap 0.4.x;
:class:`SecurityContext` has all of them, :class:`FilesystemSecurityContext`
keeps its state in a directory, and an application can compose its own.

OSCORE needs the packages of the ``oscore`` extra (``aiocoap[oscore]``:
cryptography, cbor2, and filelock for :class:`FilesystemSecurityContext`).
"""

from ._oscore.algorithms import (
    A128CBC,
    A128GCM,
    A192GCM,
    A256GCM,
    AES_CBC,
    AES_CCM,
    AES_CCM_16_64_128,
    AES_CCM_16_64_256,
    AES_CCM_16_128_128,
    AES_CCM_16_128_256,
    AES_CCM_64_64_128,
    AES_CCM_64_64_256,
    AES_CCM_64_128_128,
    AES_CCM_64_128_256,
    AES_GCM,
    DEFAULT_ALGORITHM,
    DEFAULT_HASHFUNCTION,
    DEFAULT_WINDOWSIZE,
    AeadAlgorithm,
    Algorithm,
    ChaCha20Poly1305,
    SymmetricEncryptionAlgorithm,
    algorithms,
    algorithms_by_value,
    hashfunctions,
)
from ._oscore.contexts import (
    BaseSecurityContext,
    CanProtect,
    CanUnprotect,
    CodeStyle,
    RequestIdentifiers,
    SecurityContext,
    SecurityContextUtils,
    verify_start,
)
from ._oscore.encoding import (
    COMPRESSION_BIT_H,
    COMPRESSION_BIT_K,
    COMPRESSION_BITS_N,
    COMPRESSION_BITS_RESERVED,
    COSE_KID,
    COSE_KID_CONTEXT,
    COSE_PIV,
    MAX_SEQNO,
)
from ._oscore.errors import (
    ContextUnavailable,
    DecodeError,
    NotAProtectedMessage,
    ProtectionInvalid,
    ReplayError,
    ReplayErrorWithEcho,
)
from ._oscore.filesystem import FilesystemSecurityContext
from ._oscore.replaywindow import ReplayWindow

# Labels and values of COSE_Key maps (RFC 9052 §7.1, RFC 9053 §7), for code
# that builds or reads the keys of OSCORE related protocols.
COSE_KEY_COMMON_KTY = 1
COSE_KEY_COMMON_ALG = 3
COSE_KTY_OKP = 1
COSE_KTY_EC2 = 2
COSE_KEY_OKP_CRV = -1
COSE_KEY_OKP_X = -2
COSE_KEY_EC2_X = -2
COSE_KEY_EC2_Y = -3

__all__ = [
    "NotAProtectedMessage",
    "ProtectionInvalid",
    "DecodeError",
    "ReplayError",
    "ReplayErrorWithEcho",
    "ContextUnavailable",
    "RequestIdentifiers",
    "CodeStyle",
    "SymmetricEncryptionAlgorithm",
    "AeadAlgorithm",
    "Algorithm",
    "AES_CBC",
    "A128CBC",
    "AES_CCM",
    "AES_CCM_16_64_128",
    "AES_CCM_16_64_256",
    "AES_CCM_64_64_128",
    "AES_CCM_64_64_256",
    "AES_CCM_16_128_128",
    "AES_CCM_16_128_256",
    "AES_CCM_64_128_128",
    "AES_CCM_64_128_256",
    "AES_GCM",
    "A128GCM",
    "A192GCM",
    "A256GCM",
    "ChaCha20Poly1305",
    "BaseSecurityContext",
    "CanProtect",
    "CanUnprotect",
    "SecurityContextUtils",
    "SecurityContext",
    "ReplayWindow",
    "FilesystemSecurityContext",
    "verify_start",
    "algorithms",
    "algorithms_by_value",
    "hashfunctions",
    "DEFAULT_ALGORITHM",
    "DEFAULT_HASHFUNCTION",
    "DEFAULT_WINDOWSIZE",
    "MAX_SEQNO",
    "COSE_KID",
    "COSE_PIV",
    "COSE_KID_CONTEXT",
    "COMPRESSION_BITS_N",
    "COMPRESSION_BIT_K",
    "COMPRESSION_BIT_H",
    "COMPRESSION_BITS_RESERVED",
    "COSE_KEY_COMMON_KTY",
    "COSE_KEY_COMMON_ALG",
    "COSE_KTY_OKP",
    "COSE_KTY_EC2",
    "COSE_KEY_OKP_CRV",
    "COSE_KEY_OKP_X",
    "COSE_KEY_EC2_X",
    "COSE_KEY_EC2_Y",
]
