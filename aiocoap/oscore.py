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

OSCORE needs the packages of the ``oscore`` extra (``aiocoap[oscore]``:
cryptography, cbor2, and filelock for :class:`FilesystemSecurityContext`).
"""

from ._oscore.algorithms import (
    A128GCM,
    A192GCM,
    A256GCM,
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
    Algorithm,
    ChaCha20Poly1305,
    algorithms,
    algorithms_by_value,
    hashfunctions,
)
from ._oscore.contexts import RequestIdentifiers, SecurityContext, verify_start
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

__all__ = [
    "NotAProtectedMessage",
    "ProtectionInvalid",
    "DecodeError",
    "ReplayError",
    "ReplayErrorWithEcho",
    "ContextUnavailable",
    "RequestIdentifiers",
    "Algorithm",
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
]
