"""Security contexts and message protection (RFC 8613 §3 and §8).

Calling conventions, the same for requests and responses:

* ``protect(message, request_id=None)`` returns ``(outer_message,
  request_id)``. For a request, the request_id is new and must be kept with
  the request; for a response, the request_id of the request it answers is
  passed in (and returned unchanged).
* ``unprotect(protected_message, request_id=None)`` returns
  ``(plain_message, request_id)``. Without a request_id the message is
  verified as a request and a new request_id is returned for protecting the
  responses; with one it is verified as a response to that request.

A client thus runs ``outer, rid = ctx.protect(request)``, sends ``outer``,
and runs ``ctx.unprotect(response, rid)`` on every response (notifications
included). A server runs :func:`verify_start` to find the context, then
``plain, rid = ctx.unprotect(request)``, renders ``plain`` and sends
``ctx.protect(response, rid)[0]``.

The outer message takes type, message ID, token and remote from the message
that was protected, and the unprotected message takes them from the outer
one, so a transport can treat both alike.
"""

from __future__ import annotations

import abc
import secrets
from collections import namedtuple
from typing import Any, ClassVar, NamedTuple, Optional, Union

from ..message import Message
from ..numbers.codes import Code
from ..numbers.optionnumbers import OptionNumber
from .algorithms import (
    DEFAULT_ALGORITHM,
    DEFAULT_HASHFUNCTION,
    DEFAULT_WINDOWSIZE,
    AeadAlgorithm,
    SymmetricEncryptionAlgorithm,
    hkdf,
    lookup_algorithm,
    lookup_hashfunction,
)
from .encoding import (
    COSE_KID,
    COSE_KID_CONTEXT,
    MAX_SEQNO,
    OscoreOptionValue,
    build_aad,
    build_info,
    build_nonce,
    decode_partial_iv,
    encode_partial_iv,
)
from .errors import (
    ContextUnavailable,
    DecodeError,
    NotAProtectedMessage,
    ProtectionInvalid,
    ReplayError,
    ReplayErrorWithEcho,
)
from .optionclasses import assemble_plain_message, decode_plaintext, encode_plaintext, split_options
from .replaywindow import ReplayWindow

__all__ = [
    "RequestIdentifiers", "CodeStyle", "BaseSecurityContext", "CanProtect", "CanUnprotect",
    "SecurityContextUtils", "SecurityContext", "verify_start",
]

_ECHO_RECOVERY_BYTES = 8


class _Material(NamedTuple):
    """The keying material one direction needs: own (sending) or peer's
    (receiving) ID and key, the common IV and the algorithm."""

    id: bytes
    key: bytes
    common_iv: bytes
    alg: AeadAlgorithm


class CodeStyle(namedtuple("_CodeStyle", ("request", "response"))):
    """The outer codes of a protected exchange (RFC 8613 §4.2): POST and
    2.04 Changed, or FETCH and 2.05 Content for observations.

    >>> CodeStyle.from_request(Code.FETCH).response
    <Successful Response Code 69 "2.05 Content">
    """

    __slots__ = ()

    FETCH_CONTENT: ClassVar["CodeStyle"]
    POST_CHANGED: ClassVar["CodeStyle"]

    @classmethod
    def from_request(cls, request: Code) -> "CodeStyle":
        """The style of a protected request with outer code ``request``;
        ValueError for codes OSCORE does not use outside."""
        if request == Code.FETCH:
            return cls.FETCH_CONTENT
        if request == Code.POST:
            return cls.POST_CHANGED
        raise ValueError(f"{request!r} is not an outer code of a protected request")


CodeStyle.FETCH_CONTENT = CodeStyle(Code.FETCH, Code.CONTENT)
CodeStyle.POST_CHANGED = CodeStyle(Code.POST, Code.CHANGED)


class RequestIdentifiers:
    """What protecting or verifying a response needs to know about its
    request: the request's kid, Partial IV and nonce (which bind the response
    to it, RFC 8613 §5.4 and §8.3), and whether that nonce may still be used
    for a response.

    Instances come out of protect/unprotect of a request and go back into
    protect/unprotect of its responses; other code treats them as opaque."""

    def __init__(self, kid: bytes, partial_iv: bytes, nonce: bytes, can_reuse_nonce: bool, code_style: CodeStyle = CodeStyle.POST_CHANGED):
        self.kid = kid
        self.partial_iv = partial_iv
        self.nonce = nonce
        self.can_reuse_nonce = can_reuse_nonce
        self.code_style = code_style
        """The outer codes of the exchange (from the request's)"""
        # Largest Partial IV of a response accepted for this request (the
        # Notification Number of RFC 8613 §4.1.3.5.2): responses carrying a
        # Partial IV are only accepted in increasing order.
        self.response_piv_floor: Optional[int] = None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} kid {self.kid.hex()!r} partial_iv "
            f"{self.partial_iv.hex()!r} can_reuse_nonce {self.can_reuse_nonce}>"
        )

    def get_reusable_kid_and_piv(self) -> tuple[Optional[bytes], Optional[bytes]]:
        """Hand out the request's kid and Partial IV (which make its nonce)
        for a response at most once: while can_reuse_nonce is set it is
        cleared and the pair returned, after that the result is (None,
        None)."""
        if self.can_reuse_nonce:
            self.can_reuse_nonce = False
            return self.kid, self.partial_iv
        return None, None

    def get_reusable_nonce(self) -> Optional[bytes]:
        """:meth:`get_reusable_kid_and_piv`, giving the nonce itself (or
        None)."""
        kid, _ = self.get_reusable_kid_and_piv()
        return None if kid is None else self.nonce


def _option_value(message: Message) -> OscoreOptionValue:
    value = message.opt.oscore
    if value is None:
        if any(number == OptionNumber.OSCORE for number, _ in message.opt.invalid_options):
            raise DecodeError("OSCORE option has an invalid length")
        raise NotAProtectedMessage("No OSCORE option present", message)
    if len(message.opt.get_option(OptionNumber.OSCORE)) > 1:
        raise DecodeError("OSCORE option repeated")
    return OscoreOptionValue.decode(value)


def verify_start(message: Message) -> tuple[bytes, Optional[bytes]]:
    """Read ``(kid, kid_context)`` from a protected request, so the server
    can look up the security context to verify it with; ``kid_context`` is
    None when the request does not carry one.

    This is meant for requests only: a response is verified with the context
    its request was protected with.

    Raises NotAProtectedMessage without OSCORE option, and DecodeError if the
    option is malformed or lacks the kid every request carries."""
    value = _option_value(message)
    if value.kid is None:
        raise DecodeError("No kid in the OSCORE option of a request")
    return value.kid, value.kid_context


class BaseSecurityContext:
    """What every OSCORE security context has (RFC 8613 §3.1, the Common
    Context): ``alg_aead`` (an :class:`AeadAlgorithm`), ``hashfun`` (a
    cryptography hash algorithm for HKDF), ``common_iv`` and ``id_context``
    (bytes or None), and ``authenticated_claims`` (what using it proves
    about the peer, set by whoever creates it).

    Contexts are composed of this and the abilities :class:`CanProtect`,
    :class:`CanUnprotect` and :class:`SecurityContextUtils`;
    :class:`SecurityContext` has them all. An application can compose its
    own (say, a context kept in a database) from the same parts by setting
    the attributes each part names and implementing
    :meth:`CanProtect.post_seqnoincrease`."""

    alg_aead: Optional[AeadAlgorithm] = None
    hashfun: Any = None
    common_iv: Optional[bytes] = None
    id_context: Optional[bytes] = None
    authenticated_claims: Any = ()

    # (what the abilities below use; declared here, where they meet)
    sender_id: Optional[bytes] = None
    sender_key: Optional[bytes] = None
    recipient_id: Optional[bytes] = None
    recipient_key: Optional[bytes] = None

    @property
    def algorithm(self) -> Optional[AeadAlgorithm]:
        """The older name of :attr:`alg_aead`."""
        return self.alg_aead

    @algorithm.setter
    def algorithm(self, value: Union[str, int, SymmetricEncryptionAlgorithm, type]) -> None:
        self.alg_aead = lookup_algorithm(value)

    def _check_usable(self) -> None:
        """Raise ContextUnavailable if the context can not be used any more
        (persisting subclasses, after shutdown)."""

    def _material_of(self, id_: Optional[bytes], key: Optional[bytes]) -> _Material:
        self._check_usable()
        common_iv, alg = self.common_iv, self.alg_aead
        if id_ is None or key is None or common_iv is None or alg is None:
            raise ContextUnavailable("Security context has no keys; call derive_keys first")
        return _Material(id_, key, common_iv, alg)


class CanProtect(BaseSecurityContext, metaclass=abc.ABCMeta):
    """The ability to protect messages (RFC 8613 §3.1, the Sender
    Context): needs ``sender_id``, ``sender_key`` and
    ``sender_sequence_number`` (the next one to use), and an implementation
    of :meth:`post_seqnoincrease`."""

    sender_sequence_number: int = 0

    def new_sequence_number(self) -> int:
        """Hand out the next sender sequence number; no number is handed out
        twice by a context.

        Raises ContextUnavailable when the 2**40 numbers are used up or (in
        persisting subclasses) the new state can not be saved."""
        self._check_usable()
        seqno = self.sender_sequence_number
        if seqno > MAX_SEQNO:
            raise ContextUnavailable("Sequence numbers of this security context are exhausted")
        self.sender_sequence_number = seqno + 1
        self.post_seqnoincrease()
        return seqno

    @abc.abstractmethod
    def post_seqnoincrease(self) -> None:
        """Called whenever sender_sequence_number advanced, before the
        number is used: a context whose state must survive restarts saves
        it here (raising ContextUnavailable if it can not)."""

    def context_from_response(self, unprotected_bag: dict[int, Any]) -> "CanUnprotect":
        """The context that verifies the responses to a request protected
        with this one (``unprotected_bag``: the response's unprotected
        header, ``{COSE_KID: ..., COSE_KID_CONTEXT: ...}``). For pairwise
        contexts that is the context itself."""
        if not isinstance(self, CanUnprotect):
            raise ContextUnavailable("This context can not verify responses")
        return self

    def _sender_material(self) -> _Material:
        return self._material_of(self.sender_id, self.sender_key)

    def protect(
        self,
        message: Message,
        request_id: Optional[RequestIdentifiers] = None,
        *,
        kid_context: Union[bool, bytes] = True,
    ) -> tuple[Message, RequestIdentifiers]:
        """Build the OSCORE-protected form of a plain request or response.

        The options are sorted into the encrypted inner part and the outer
        message by their class (RFC 8613 §4.1). A response needs the
        ``request_id`` of its request; the first response to a request that
        is not an observation uses the request's nonce, all others get a
        Partial IV of their own.

        ``kid_context`` decides the kid context sent with a request: True
        (default) sends the context's ID context if it has one, False sends
        none, and bytes are sent as given. Responses only carry one when it
        is given as bytes.

        Returns ``(outer_message, request_id)``: for requests, the new
        request_id to pass to :meth:`unprotect` with the responses; for
        responses, the request_id passed in.

        Raises ContextUnavailable when no sequence number can be had, and
        ValueError for messages that can not be protected."""
        code = message.code
        if code is None:
            raise ValueError("Message without code can not be protected")
        material = self._sender_material()
        alg = material.alg
        if code.is_request():
            if request_id is not None:
                raise ValueError("Requests are protected without request_id")
        elif not code.is_response():
            raise ValueError(f"Only requests and responses can be protected, not {code}")
        elif request_id is None:
            raise ValueError("Protecting a response needs the request_id of its request")

        outer_options, inner_options = split_options(message)
        plaintext = encode_plaintext(code, inner_options, message.payload)
        observing = message.opt.observe is not None

        if request_id is None:
            partial_iv = encode_partial_iv(self.new_sequence_number())
            nonce = build_nonce(material.common_iv, material.id, partial_iv)
            if kid_context is True:
                kidctx = self.id_context
            elif kid_context is False or kid_context is None:
                kidctx = None
            else:
                kidctx = bytes(kid_context)
            option = OscoreOptionValue(partial_iv=partial_iv, kid_context=kidctx, kid=material.id)
            style = CodeStyle.FETCH_CONTENT if observing else CodeStyle.POST_CHANGED
            request_id = RequestIdentifiers(
                material.id, partial_iv, nonce, can_reuse_nonce=not observing, code_style=style
            )
            outer_code = style.request
        else:
            reused = None if observing else request_id.get_reusable_nonce()
            response_piv = None
            if reused is None:
                response_piv = encode_partial_iv(self.new_sequence_number())
                nonce = build_nonce(material.common_iv, material.id, response_piv)
            else:
                nonce = reused
            kidctx = None if isinstance(kid_context, bool) or kid_context is None else bytes(kid_context)
            option = OscoreOptionValue(partial_iv=response_piv, kid_context=kidctx)
            outer_code = Code.CONTENT if observing else Code.CHANGED

        aad = build_aad(alg.value, request_id.kid, request_id.partial_iv)
        ciphertext = alg.encrypt(plaintext, aad, material.key, nonce)

        outer_options.oscore = option.encode()
        outer = Message(
            code=outer_code, payload=ciphertext, _mtype=message.mtype, _mid=message.mid, _token=message.token
        )
        outer.opt = outer_options
        outer.remote = message.remote
        return outer, request_id


class CanUnprotect(BaseSecurityContext):
    """The ability to verify and decrypt messages (RFC 8613 §3.1, the
    Recipient Context): needs ``recipient_id``, ``recipient_key`` and a
    ``recipient_replay_window`` (a :class:`ReplayWindow`)."""

    recipient_replay_window: ReplayWindow

    echo_recovery: Optional[bytes] = None
    """The Echo value a request must carry to initialize a lost replay
    window (RFC 8613 Appendix B.1.2); set while recovery is pending."""

    def context_for_response(self) -> "CanProtect":
        """The context that protects the responses to a request verified
        with this one: for pairwise contexts, the context itself."""
        if not isinstance(self, CanProtect):
            raise ContextUnavailable("This context can not protect responses")
        return self

    def find_all_used_contextless_oscore_kid(self) -> "set[bytes]":
        """The key IDs requests to this context come with (its recipient
        ID), which a new context of this endpoint must not take."""
        return set() if self.recipient_id is None else {self.recipient_id}

    def _recipient_material(self) -> _Material:
        return self._material_of(self.recipient_id, self.recipient_key)

    def unprotect(
        self, protected_message: Message, request_id: Optional[RequestIdentifiers] = None
    ) -> tuple[Message, RequestIdentifiers]:
        """Verify and decrypt a protected message.

        Without request_id, the message is treated as a request; the result
        is ``(plain_message, request_id)`` with a new request_id to protect
        the responses with. With the request_id of a request sent earlier,
        the message is treated as a response to it, and the result is
        ``(plain_message, request_id)`` with the request_id passed in.

        Raises NotAProtectedMessage if there is no OSCORE option, and
        ProtectionInvalid (or its subclasses DecodeError, ReplayError,
        ReplayErrorWithEcho) when verification fails."""
        material = self._recipient_material()
        option = _option_value(protected_message)
        if request_id is None:
            return self._unprotect_request(protected_message, option, material)
        return self._unprotect_response(protected_message, option, request_id, material)

    def _unprotect_request(
        self, message: Message, option: OscoreOptionValue, material: "_Material"
    ) -> tuple[Message, RequestIdentifiers]:
        partial_iv = option.partial_iv
        kid = option.kid
        if partial_iv is None or kid is None:
            raise DecodeError("Request lacks Partial IV or kid")
        if kid != material.id:
            raise ProtectionInvalid("kid does not match this security context's recipient ID")
        if option.kid_context is not None and option.kid_context != self.id_context:
            raise ProtectionInvalid("kid context does not match this security context's ID context")
        seqno = decode_partial_iv(partial_iv)
        window = self.recipient_replay_window
        if window.is_initialized() and not window.is_valid(seqno):
            raise ReplayError("Sequence number was used already")

        nonce = build_nonce(material.common_iv, kid, partial_iv)
        aad = build_aad(material.alg.value, kid, partial_iv)
        plaintext = material.alg.decrypt(message.payload, aad, material.key, nonce)

        if window.is_initialized():
            window.strike_out(seqno)
        code, inner, payload = decode_plaintext(plaintext)
        if not code.is_request():
            raise DecodeError("Protected request does not contain a request code")
        plain = assemble_plain_message(message, code, inner, payload, is_request=True)
        style = CodeStyle.FETCH_CONTENT if message.code == Code.FETCH else CodeStyle.POST_CHANGED
        request_id = RequestIdentifiers(
            kid, partial_iv, nonce, can_reuse_nonce=plain.opt.observe is None, code_style=style
        )

        if not window.is_initialized():
            self._recover_replay_window(plain, request_id, seqno)
        return plain, request_id

    def _recover_replay_window(self, plain: Message, request_id: RequestIdentifiers, seqno: int) -> None:
        # RFC 8613 Appendix B.1.2: the request is authentic but may be a
        # replay. Only a request that carries an Echo value made up after
        # the state loss proves freshness.
        echo = self.echo_recovery
        if echo is not None and plain.opt.echo == echo:
            self.recipient_replay_window.initialize_from_freshlyseen(seqno)
            self.echo_recovery = None
            plain.opt.echo = None
            return
        if echo is None:
            echo = self.echo_recovery = secrets.token_bytes(_ECHO_RECOVERY_BYTES)
        # The request might be replayed, and the same nonce may have been
        # used for a response before the state loss.
        request_id.can_reuse_nonce = False
        raise ReplayErrorWithEcho(self, request_id, echo)

    def _unprotect_response(
        self,
        message: Message,
        option: OscoreOptionValue,
        request_id: RequestIdentifiers,
        material: "_Material",
    ) -> tuple[Message, RequestIdentifiers]:
        # A kid or kid context in a response is not needed to verify it
        # (RFC 8613 §8.4) and is ignored.
        partial_iv = option.partial_iv
        seqno = None
        if partial_iv is None:
            nonce = request_id.nonce
        else:
            seqno = decode_partial_iv(partial_iv)
            floor = request_id.response_piv_floor
            if floor is not None and seqno <= floor:
                raise ReplayError("Response is older than one accepted before")
            nonce = build_nonce(material.common_iv, material.id, partial_iv)
        aad = build_aad(material.alg.value, request_id.kid, request_id.partial_iv)
        plaintext = material.alg.decrypt(message.payload, aad, material.key, nonce)
        if seqno is not None:
            request_id.response_piv_floor = seqno

        code, inner, payload = decode_plaintext(plaintext)
        if not code.is_response():
            raise DecodeError("Protected response does not contain a response code")
        return assemble_plain_message(message, code, inner, payload, is_request=False), request_id


class SecurityContextUtils(BaseSecurityContext):
    """Key derivation and context lookup for contexts built from a master
    secret (RFC 8613 §3.2)."""

    def derive_keys(self, master_salt: bytes, master_secret: bytes) -> None:
        """Compute sender_key, recipient_key and common_iv (RFC 8613 §3.2.1)
        from the master salt and secret, using the IDs, ID context, algorithm
        and hash function already set on the context."""
        sender_id = getattr(self, "sender_id", None)
        recipient_id = getattr(self, "recipient_id", None)
        if sender_id is None or recipient_id is None:
            raise ValueError("sender_id and recipient_id must be set before deriving keys")
        alg = self.alg_aead
        if alg is None or self.hashfun is None:
            raise ValueError("alg_aead and hashfun must be set before deriving keys")
        longest = alg.iv_bytes - 6
        for name, value in (("sender_id", sender_id), ("recipient_id", recipient_id)):
            if len(value) > longest:
                raise ValueError(f"{name} is longer than {longest} bytes, the limit of {alg.name}")

        def derive(id_: bytes, type_: str, length: int) -> bytes:
            info = build_info(id_, self.id_context, alg.value, type_, length)
            return hkdf(self.hashfun, master_salt, master_secret, info, length)

        self.sender_key = derive(sender_id, "Key", alg.key_bytes)
        self.recipient_key = derive(recipient_id, "Key", alg.key_bytes)
        self.common_iv = derive(b"", "IV", alg.iv_bytes)

    def get_oscore_context_for(self, unprotected: dict[int, Any]) -> Optional["SecurityContextUtils"]:
        """This context if a request's unprotected header (``{COSE_KID:
        kid, COSE_KID_CONTEXT: kid_context}``, entries absent where the
        request carries none) names it: the kid is the recipient ID and the
        kid context, if any, its ID context. Otherwise None."""
        if unprotected.get(COSE_KID) != getattr(self, "recipient_id", None):
            return None
        kid_context = unprotected.get(COSE_KID_CONTEXT)
        if kid_context is not None and kid_context != self.id_context:
            return None
        return self


class SecurityContext(CanProtect, CanUnprotect, SecurityContextUtils):
    """An OSCORE security context: the keys and state shared between this
    endpoint and one peer (RFC 8613 §3).

    Attributes: ``sender_id``, ``recipient_id``, ``id_context`` (bytes or
    None), ``alg_aead`` (an :class:`AeadAlgorithm`; ``algorithm`` is its
    older name), ``hashfun`` (a cryptography hash algorithm for HKDF),
    ``sender_key``, ``recipient_key``, ``common_iv``,
    ``sender_sequence_number`` (the next one to use) and
    ``recipient_replay_window``.

    All arguments are optional and keyword-only; a context can also be filled
    attribute by attribute and completed with :meth:`derive_keys`. When a
    ``master_secret`` is given, keys are derived right away and the replay
    window starts empty -- correct only for a key that was never used
    before. Contexts whose state must survive restarts are
    :class:`FilesystemSecurityContext`.
    """

    is_unicast = True
    """Whether this context is a pairwise one (group contexts are not)"""

    def __init__(
        self,
        *,
        sender_id: Optional[bytes] = None,
        recipient_id: Optional[bytes] = None,
        master_secret: Optional[bytes] = None,
        master_salt: bytes = b"",
        id_context: Optional[bytes] = None,
        algorithm: Union[str, int, AeadAlgorithm, type] = DEFAULT_ALGORITHM,
        hashfun: Any = DEFAULT_HASHFUNCTION,
        sender_sequence_number: int = 0,
        replay_window_size: int = DEFAULT_WINDOWSIZE,
    ):
        self.sender_id = sender_id
        self.recipient_id = recipient_id
        self.id_context = id_context
        self.alg_aead = lookup_algorithm(algorithm)
        self.hashfun = lookup_hashfunction(hashfun)
        self.sender_key = None
        self.recipient_key = None
        self.common_iv = None
        self.sender_sequence_number = sender_sequence_number
        self.recipient_replay_window = ReplayWindow(replay_window_size, self._replay_window_changed)
        if master_secret is not None:
            self.derive_keys(master_salt, master_secret)
            self.recipient_replay_window.initialize_empty()

    def __repr__(self) -> str:
        def show(value: Optional[bytes]) -> str:
            return "unset" if value is None else value.hex() or "(empty)"

        return (
            f"<{type(self).__name__} sender_id {show(self.sender_id)} recipient_id "
            f"{show(self.recipient_id)} id_context {show(self.id_context)} "
            f"{self.alg_aead.name if self.alg_aead is not None else 'no algorithm'}>"
        )

    def post_seqnoincrease(self) -> None:
        """Nothing to save for a context kept in memory only."""

    def _replay_window_changed(self) -> None:
        """Hook for subclasses that persist the replay window on every change"""

    def shutdown(self) -> None:
        """Persist state and release resources when the context is no longer
        used; in-memory contexts have nothing to do, but callers that manage
        contexts of any kind can call this on all of them."""
