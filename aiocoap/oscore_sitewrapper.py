"""Serving resources through OSCORE (RFC 8613): the wrapper a server Context
puts around its site when its server credentials hold OSCORE contexts.

``Context.create_server_context(site, server_credentials=creds)`` calls
:func:`wrap_site_if_configured`; when ``creds`` contain OSCORE entries (for
example ``{":client1": {"oscore": {"contextfile": "server-ctx/"}}}``), the
site is wrapped in an :class:`OscoreSiteWrapper`. Requests then take one of
two ways:

* Requests without OSCORE option go to the inner site unchanged. Their
  ``request.remote.authenticated_claims`` is empty.
* Protected requests are matched to a security context by their kid and kid
  context (the recipient ID and ID context of the server's contexts), verified,
  and rendered on the inner site as plain requests whose remote is an
  :class:`~aiocoap.transports.oscore.OSCOREAddress` (so
  ``request.remote.authenticated_claims`` holds the security context). The
  response is protected with the request's identifiers.

Requests that fail verification get the unprotected answers of RFC 8613
§8.2 (with Max-Age 0): 4.02 for a malformed OSCORE option or plaintext, 4.01
"Security context not found" for an unknown kid, 4.01 "Replay detected",
and 4.00 "Decryption failed" for everything else. A request arriving while a
replay window is lost (after a crash, Appendix B.1.2) gets a protected 4.01
with an Echo option; the client repeats it with that value and is served.

Blockwise: protected requests are never reassembled by the Context (outer
blockwise is for proxies), but the plain requests are, by the Context's
blockwise machinery (``context.blockwise``) when the wrapper knows the
Context and the inner resource asks for assembly; without a Context, the
inner site handles blockwise itself.

Observations: the inner site is offered a stand-in for the Context's
ServerObservation. Notifications it triggers are rendered and protected here
(each with a Partial IV of its own) and handed on to the real observation,
which numbers and sends them.

Resources that must only be reached through OSCORE derive from
:class:`RequireOSCORE`; plain requests to them get 4.01.

Logging (the Context's logger, or ``coap-server.oscore``): requests failing
verification at DEBUG, errors while rendering at ERROR with traceback.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Optional, Union, cast

from . import error, interfaces
from .message import Message, NoResponse
from .numbers.codes import Code
from .numbers.optionnumbers import OptionNumber

__all__ = [
    "wrap_site_if_configured",
    "OscoreSiteWrapper",
    "RequireOSCORE",
    "security_context_of",
]

_OSCORE = int(OptionNumber.OSCORE)
_OBSERVABLE_METHODS = (Code.GET, Code.FETCH)

# Bytes a protected notification adds to its plain payload: code, the inner
# options the library adds (ETag, Block2, Size2, Observe), payload marker
# and up to 16 bytes of tag.
_PROTECTION_OVERHEAD = 64


def _oscore_credentials(server_credentials) -> list:
    """The OSCORE credential items of a credentials map, in map order."""
    from .credentials import OSCORE, AnyOf

    found = []
    for item in server_credentials.values():
        for candidate in item.items if isinstance(item, AnyOf) else (item,):
            if isinstance(candidate, OSCORE):
                found.append(candidate)
    return found


def wrap_site_if_configured(site: Any, server_credentials: Any, context: Any = None) -> Any:
    """Return ``site`` wrapped in an :class:`OscoreSiteWrapper` if
    ``server_credentials`` contain OSCORE contexts, else ``site`` itself.

    The security contexts are opened right away, so a context directory
    that is missing, malformed or in use by another program raises here
    (:class:`aiocoap.oscore.FilesystemSecurityContext.LoadError`) rather
    than on the first request."""
    if site is None or server_credentials is None or isinstance(site, OscoreSiteWrapper):
        return site
    if not _oscore_credentials(server_credentials):
        return site
    return OscoreSiteWrapper(site, server_credentials, context)


def security_context_of(request: Message):
    """The OSCORE security context a request was protected with, or None
    for a request that came without OSCORE."""
    for claim in getattr(request.remote, "authenticated_claims", ()):
        if _is_security_context(claim):
            return claim
    return None


def _is_security_context(claim) -> bool:
    from .oscore import SecurityContext

    return isinstance(claim, SecurityContext)


class RequireOSCORE:
    """Mixin for resources that serve OSCORE-protected requests only.

    Put it before the resource class (``class Secret(RequireOSCORE,
    resource.Resource)``). Plain requests get 4.01 Unauthorized and are not
    admitted as observers; protected requests are rendered as usual, and the
    resource can find the security context with :func:`security_context_of`.
    """

    requires_oscore = True

    async def render(self, request: Message):
        if security_context_of(request) is None:
            raise error.Unauthorized("This resource requires OSCORE")
        return await super().render(request)  # type: ignore[misc]

    async def add_observation(self, request: Message, serverobservation) -> None:
        if security_context_of(request) is None:
            return
        parent = getattr(super(), "add_observation", None)
        if parent is not None:
            await parent(request, serverobservation)


def _is_protected(request: Message) -> bool:
    return _OSCORE in request.opt


def _unprotected_error(code: Code, text: str) -> Message:
    return Message(code=code, payload=text.encode("ascii"), max_age=0)


class _Verified:
    """A protected request that passed verification (kept from
    add_observation until the render of the same request)."""

    __slots__ = ("plain", "request_id", "secctx", "observation")

    def __init__(self, plain, request_id, secctx, observation=None):
        self.plain = plain
        self.request_id = request_id
        self.secctx = secctx
        self.observation = observation


class OscoreSiteWrapper(interfaces.ObservableResource):
    """A site that verifies OSCORE-protected requests, renders them on the
    inner site and protects the responses; plain requests pass through.

    ``server_credentials`` is a :class:`aiocoap.credentials.CredentialsMap`
    whose OSCORE entries are the security contexts of the clients (their
    keys are labels like ``":client1"``; entries added later are picked up
    on the next request). ``context`` is the server Context, whose blockwise
    machinery reassembles plain requests and cuts plain responses; without
    it, the inner site does blockwise itself.

    The wrapper can also be put around a site by hand and given to
    ``Context.create_server_context`` (as with earlier aiocoap versions);
    its :attr:`recognized_critical_options` tell the Context that it
    processes the OSCORE option.

    Call :meth:`shutdown` when done (the OSCORE transport of the Context
    does) so the contexts' sequence numbers and replay windows are stored.
    """

    recognized_critical_options = frozenset({_OSCORE})
    """Critical options this site processes beyond those the Context knows"""

    def __init__(self, inner_site, server_credentials, context=None):
        from . import oscore
        from .transports.oscore import OSCOREAddress

        self._oscore = oscore
        self._address = OSCOREAddress
        self._inner_site = inner_site
        self.server_credentials = server_credentials
        self._context = context
        self.log = getattr(context, "log", None) or logging.getLogger("coap-server.oscore")
        self._snapshot: Optional[tuple] = None
        self._by_recipient: dict[bytes, list] = {}
        self._contexts: list = []
        self._verified: "weakref.WeakKeyDictionary[Message, Any]" = weakref.WeakKeyDictionary()
        self._observations: set = set()
        self._refresh_index()

    def __repr__(self):
        return f"<{type(self).__name__} around {self._inner_site!r} with {len(self._contexts)} security context(s)>"

    @property
    def inner_site(self):
        """The site the plain requests are rendered on"""
        return self._inner_site

    def get_resources_as_linkheader(self):
        """The link format listing of the inner site (the resources are
        the same whether they are reached with OSCORE or not)."""
        return self._inner_site.get_resources_as_linkheader()

    def __getattr__(self, name):
        # Applications keep using context.serversite as the site they
        # created (add_resource, get_resources_as_linkheader, ...).
        if name.startswith("__") or name == "_inner_site":
            raise AttributeError(name)
        return getattr(self._inner_site, name)

    # --- security context lookup -----------------------------------------------------

    def _refresh_index(self) -> None:
        snapshot = tuple(self.server_credentials.values())
        if snapshot == self._snapshot:
            return
        by_recipient: dict[bytes, list] = {}
        contexts = []
        for item in _oscore_credentials(self.server_credentials):
            secctx = item.security_context
            contexts.append(secctx)
            by_recipient.setdefault(secctx.recipient_id, []).append(secctx)
        for candidates in by_recipient.values():
            # Without kid context in a request, contexts without ID context
            # are the likely match and are tried first.
            candidates.sort(key=lambda c: c.id_context is not None)
        self._by_recipient = by_recipient
        self._contexts = contexts
        self._snapshot = snapshot

    def _candidates(self, kid: bytes, kid_context: Optional[bytes]):
        self._refresh_index()
        candidates = self._by_recipient.get(kid, ())
        if kid_context is None:
            return candidates
        return [c for c in candidates if c.id_context == kid_context]

    def _verify(self, request: Message) -> Union[Message, _Verified]:
        """Verify a protected request: the verified request, or the response
        to send instead."""
        oscore = self._oscore
        try:
            kid, kid_context = oscore.verify_start(request)
        except oscore.DecodeError as e:
            self.log.debug("Malformed OSCORE option from %r: %s", request.remote, e)
            return _unprotected_error(Code.BAD_OPTION, "Failed to decode COSE")
        candidates = self._candidates(kid, kid_context)
        if not candidates:
            self.log.debug("No security context for kid %r, kid context %r", kid, kid_context)
            return _unprotected_error(Code.UNAUTHORIZED, "Security context not found")
        # Several contexts can share a recipient ID (differing in the ID
        # context a request need not name). Failures before decryption do
        # not tell which one was meant, so the others are tried too; those
        # after it (Echo challenge, malformed plaintext) are final.
        replayed = False
        for secctx in candidates:
            try:
                plain, request_id = secctx.unprotect(request)
            except oscore.ReplayErrorWithEcho as e:
                self.log.debug("Replay window of %r unknown; challenging with Echo", secctx)
                try:
                    return e.secctx.protect(e.to_message(), e.request_id)[0]
                except oscore.ContextUnavailable as unavailable:
                    return self._context_unavailable(secctx, unavailable)
            except oscore.ReplayError as e:
                self.log.debug("Replay from %r for %r: %s", request.remote, secctx, e)
                replayed = True
                continue
            except oscore.DecodeError as e:
                self.log.debug("Undecodable protected request from %r: %s", request.remote, e)
                return _unprotected_error(Code.BAD_OPTION, "Failed to decode COSE")
            except oscore.ProtectionInvalid as e:
                self.log.debug("Verification with %r failed: %s", secctx, e)
                continue
            except oscore.ContextUnavailable as e:
                return self._context_unavailable(secctx, e)
            plain.remote = self._address(secctx, cast(interfaces.EndpointAddress, request.remote))
            return _Verified(plain, request_id, secctx)
        if replayed:
            return _unprotected_error(Code.UNAUTHORIZED, "Replay detected")
        return _unprotected_error(Code.BAD_REQUEST, "Decryption failed")

    def _context_unavailable(self, secctx, exception) -> Message:
        self.log.warning("Security context %r is unavailable: %s", secctx, exception)
        return _unprotected_error(Code.SERVICE_UNAVAILABLE, "Security context unavailable")

    # --- the Resource interface -------------------------------------------------------

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        if _is_protected(request):
            # Blocks of the plain requests are assembled after verification.
            return False
        return await self._inner_site.needs_blockwise_assembly(request)

    async def add_observation(self, request: Message, serverobservation) -> None:
        if not _is_protected(request):
            add = getattr(self._inner_site, "add_observation", None)
            if add is not None:
                await add(request, serverobservation)
            return
        verified = self._verify(request)
        self._verified[request] = verified
        if not isinstance(verified, _Verified):
            return
        plain = verified.plain
        add = getattr(self._inner_site, "add_observation", None)
        if add is None or plain.opt.observe != 0 or plain.code not in _OBSERVABLE_METHODS:
            return
        observation = _ProtectedObservation(self, serverobservation, verified)
        try:
            await add(plain, observation)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Served like a request without Observe; the render will tell
            # the client if something is wrong.
            self.log.exception("Error offering an observation to %r", self._inner_site)
            observation.end()
            return
        if observation.accepted:
            verified.observation = observation

    async def render(self, request: Message):
        if not _is_protected(request):
            return await self._inner_site.render(request)
        verified = self._verified.pop(request, None) if self._verified else None
        if verified is None:
            verified = self._verify(request)
        if not isinstance(verified, _Verified):
            return verified
        if verified.observation is not None:
            return await verified.observation.first_response()
        return await self._render_verified(verified)

    async def render_plain(self, plain: Message, *, assemble: bool = True):
        """Render a verified request on the inner site; errors become their
        responses."""
        inner = self._inner_site
        try:
            recognized = getattr(self._context, "recognized_critical_options", None)
            if recognized is not None:
                _check_critical_options(plain, recognized)
            blockwise = getattr(self._context, "blockwise", None)
            if assemble and blockwise is not None and await inner.needs_blockwise_assembly(plain):
                return await blockwise.render(plain, inner.render)
            return await inner.render(plain)
        except asyncio.CancelledError:
            raise
        except error.RenderableError as e:
            return e.to_message()
        except Exception as e:
            self.log.error("An exception occurred while rendering a resource: %r", e, exc_info=e)
            return Message(code=Code.INTERNAL_SERVER_ERROR)

    async def _render_verified(self, verified: _Verified):
        response = await self.render_plain(verified.plain)
        if response is NoResponse:
            return response
        if not isinstance(response, Message):
            self.log.error("Resource returned %r instead of a Message", response)
            response = Message(code=Code.INTERNAL_SERVER_ERROR)
        if response.code is None:
            response.code = Code.CONTENT
        no_response = response.opt.no_response
        if no_response is None:
            no_response = verified.plain.opt.no_response
        if no_response is not None:
            # Decided on the inner code here; the outer code (always 2.04)
            # would mislead the layers below.
            from .messagemanager import no_response_suppresses

            response.opt.no_response = None
            if no_response_suppresses(no_response, response.code):
                return NoResponse
        return self._protect(verified, response)

    def _protect(self, verified: _Verified, response: Message) -> Message:
        try:
            return verified.secctx.protect(response, verified.request_id)[0]
        except self._oscore.ContextUnavailable as e:
            return self._context_unavailable(verified.secctx, e)

    # --- observations -------------------------------------------------------------------

    def protect_notification(self, verified: _Verified, response, is_last: bool):
        """The protected form of a notification and whether it ends the
        observation; (None, False) if there is nothing to send."""
        if response is NoResponse:
            return None, False
        if not isinstance(response, Message):
            self.log.error("Resource returned %r instead of a Message", response)
            response = Message(code=Code.INTERNAL_SERVER_ERROR)
        if response.code is None:
            response.code = Code.CONTENT
        final = is_last or not response.code.is_successful()
        if final:
            response.opt.observe = None
        else:
            # Any value: it makes protect() treat the message as a
            # notification (inner Observe, own Partial IV); the
            # ServerObservation numbers the outer Observe option.
            response.opt.observe = 0
            response = self._slice_notification(verified.plain, response)
        response.opt.no_response = None
        return self._protect(verified, response), final

    def _slice_notification(self, plain_request: Message, response: Message) -> Message:
        blockwise = getattr(self._context, "blockwise", None)
        if blockwise is None:
            return response
        from .blockwise import single_message_limit

        # The ServerObservation cuts notifications that do not fit one
        # message of the underlying transport; a protected message must
        # never be cut from outside, so the plain one is cut here into
        # blocks small enough to stay whole after protection.
        limit = single_message_limit(plain_request.remote)
        block2 = plain_request.opt.block2
        if block2 is None and len(response.payload) + _PROTECTION_OVERHEAD > limit:
            szx = 6
            while szx > 0 and (1 << (szx + 4)) + _PROTECTION_OVERHEAD > limit:
                szx -= 1
            plain_request = plain_request.copy(block2=(0, False, szx))
        return blockwise.slice_response(plain_request, response)

    def track_observation(self, observation: "_ProtectedObservation", active: bool) -> None:
        """Note a protected observation as running (so that shutdown ends
        it) or as ended."""
        if active:
            self._observations.add(observation)
        else:
            self._observations.discard(observation)

    async def shutdown(self) -> None:
        """Stop rendering notifications, and shut down (persist) the
        security contexts of the server credentials."""
        for observation in list(self._observations):
            observation.end()
        self._observations.clear()
        for secctx in self._contexts:
            try:
                secctx.shutdown()
            except Exception:
                self.log.exception("Shutting down security context %r failed", secctx)


def _check_critical_options(request: Message, recognized) -> None:
    number = request.opt.unprocessable_critical(recognized)
    if number is not None:
        raise error.BadOption(f"Unsupported critical option {OptionNumber(number).name}")


class _ProtectedObservation:
    """What the inner site gets as ServerObservation for a protected
    observation request: notifications it triggers are rendered and
    protected by the wrapper, then sent through the real ServerObservation.

    It offers what resources use of a ServerObservation: :meth:`accept`,
    :meth:`deregister` and :meth:`trigger`."""

    def __init__(self, wrapper: OscoreSiteWrapper, real, verified: _Verified):
        self._wrapper = wrapper
        self._real = real
        self._verified = verified
        self.accepted = False
        self._ended = False
        self._task: Optional[asyncio.Task] = None
        self._pending_trigger: Optional[bool] = None

    def __repr__(self):
        return f"<{type(self).__name__} for {self._real!r}>"

    @property
    def request(self) -> Message:
        """The verified (plain) observation request"""
        return self._verified.plain

    def accept(self, cancellation_callback) -> None:
        """Take the observation; ``cancellation_callback`` runs when it
        ends."""
        self.accepted = True
        self._wrapper.track_observation(self, True)

        def ended():
            self.end()
            cancellation_callback()

        self._real.accept(ended)

    def deregister(self, reason=None) -> None:
        """End the observation from the server side."""
        self._real.deregister(reason)

    def trigger(self, response: Optional[Message] = None, *, is_last: bool = False) -> None:
        """Send a notification: ``response``, or the resource rendered
        anew if it is None. ``is_last`` (or an unsuccessful response) ends
        the observation."""
        if self._ended or not self.accepted:
            return
        if response is not None:
            # Several observers may get the same message object.
            self._deliver(response.copy(), is_last)
            return
        if self._task is not None and not self._task.done():
            self._pending_trigger = is_last or bool(self._pending_trigger)
            return
        self._task = asyncio.get_running_loop().create_task(
            self._rerender(is_last), name="aiocoap OSCORE notification"
        )

    async def first_response(self):
        """Render and protect the response to the registration request."""
        response = await self._wrapper.render_plain(self._verified.plain, assemble=False)
        outer, final = self._wrapper.protect_notification(self._verified, response, False)
        if final:
            # Sent as the observation's last message; the ServerObservation
            # ends with it and ignores what is returned here.
            self._real.trigger(outer, is_last=True)
        return outer if outer is not None else NoResponse

    async def _rerender(self, is_last: bool) -> None:
        while True:
            response = await self._wrapper.render_plain(self._verified.plain, assemble=False)
            self._deliver(response, is_last)
            if self._pending_trigger is None or self._ended:
                return
            is_last, self._pending_trigger = self._pending_trigger, None

    def _deliver(self, response, is_last: bool) -> None:
        if self._ended:
            return
        outer, final = self._wrapper.protect_notification(self._verified, response, is_last)
        if outer is None:
            return
        self._real.trigger(outer, is_last=final)

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._wrapper.track_observation(self, False)
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
