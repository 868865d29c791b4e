"""The token layer: tokens for outgoing requests, matching responses to
requests, and turning incoming requests into pipes for the Context.

Rules enforced here:

* Tokens are 4 random bytes from :mod:`secrets` (RFC 7252 §5.3.1 asks for
  at least 32 random bits on unsecured transports), unique among the
  requests in flight to the same remote.
* A response matches a request by (token, remote); responses to a multicast
  request are accepted from any member of the group.
* A response nobody waits for is reported as unmatched, so the message
  layer can RST a CON (or drop a NON).
* A NON request gets NON responses.
* A client's observation stays registered for as long as notifications are
  successful and carry Observe; anything else is its last event.
* An incoming request with the token and remote of a running observation
  replaces it (re-registration), and ends it when it is a GET without
  Observe or with Observe: 1 (RFC 7641 §3.6, §4.1).
"""

from __future__ import annotations

import secrets
from typing import Optional

from . import error, interfaces
from .message import Message
from .numbers.codes import Code
from .numbers.types import Type
from .pipe import Pipe

__all__ = ["TokenManager"]

NON = Type.NON


class _Outgoing:
    """Book-keeping of one request we sent."""

    __slots__ = ("pipe", "stop", "observing")

    def __init__(self, pipe, observing):
        self.pipe = pipe
        self.stop = None
        self.observing = observing


class TokenManager(interfaces.RequestInterface, interfaces.TokenManager):
    """Serves the Context as a RequestInterface and the TokenInterfaces
    (message managers, reliable transports) as their TokenManager.

    :param render_to_pipe: called with a :class:`Pipe` for every incoming
        request; the Context renders it and feeds the response events into
        it."""

    def __init__(self, render_to_pipe, log, loop, client_credentials=None):
        self._render_to_pipe = render_to_pipe
        self.log = log
        self.loop = loop
        self.client_credentials = client_credentials
        self.token_interfaces: list[interfaces.TokenInterface] = []
        self._outgoing: dict = {}  # (token, remote) -> _Outgoing
        self._outgoing_multicast: dict = {}  # token -> _Outgoing
        self._observations: dict = {}  # (token, remote) -> Pipe of an incoming observation

    def __repr__(self):
        return f"<{type(self).__name__} with {len(self.token_interfaces)} transport(s)>"

    def _interface_for(self, remote) -> Optional[interfaces.TokenInterface]:
        for ti in self.token_interfaces:
            if ti.recognize_remote(remote):
                return ti
        return None

    # --- RequestInterface (towards the Context) -------------------------------------

    async def fill_or_recognize_remote(self, message: Message) -> bool:
        for ti in self.token_interfaces:
            if await ti.fill_or_recognize_remote(message):
                return True
        return False

    def _new_token(self, remote) -> bytes:
        while True:
            token = secrets.token_bytes(4)
            if (token, remote) not in self._outgoing and token not in self._outgoing_multicast:
                return token

    def request(self, pipe: Pipe) -> None:
        message = pipe.request
        remote = message.remote
        ti = self._interface_for(remote)
        if ti is None:
            pipe.add_exception(error.NetworkError(f"No transport available for {remote!r}"))
            return
        multicast = getattr(remote, "is_multicast", False)
        if multicast:
            message.mtype = NON
        token = self._new_token(remote)
        message.token = token
        state = _Outgoing(pipe, message.opt.observe == 0)
        if multicast:
            key = token
            table = self._outgoing_multicast
        else:
            key = (token, remote)
            table = self._outgoing
        table[key] = state

        def monitor(exc):
            if table.get(key) is state:
                del table[key]
            pipe.add_exception(exc)

        def on_interest_end():
            if table.get(key) is state:
                del table[key]
            if state.stop is not None:
                state.stop()
                state.stop = None

        pipe.on_interest_end(on_interest_end)
        try:
            state.stop = ti.send_message(message, monitor)
        except Exception as e:
            self.log.debug("Sending %r failed: %r", message, e)
            if not isinstance(e, error.Error):
                wrapped = error.NetworkError(str(e) or type(e).__name__)
                wrapped.__cause__ = e
                e = wrapped
            monitor(e)

    # --- TokenManager (towards the transports) ---------------------------------------

    def process_response(self, response: Message) -> bool:
        key = (response.token, response.remote)
        state = self._outgoing.get(key)
        is_multicast = False
        if state is None:
            state = self._outgoing_multicast.get(response.token)
            if state is None:
                return False
            is_multicast = True
        if state.stop is not None:
            # The response implies the request arrived: no retransmissions
            # (and no NON timeout) any more.
            state.stop()
            state.stop = None
        code = response.code
        if is_multicast:
            is_last = False
        elif state.observing and code.is_successful() and response.opt.observe is not None:
            is_last = False
        else:
            is_last = True
            del self._outgoing[key]
        response.request = state.pipe.request
        state.pipe.add_response(response, is_last=is_last)
        return True

    def process_request(self, request: Message) -> None:
        remote = request.remote
        ti = self._interface_for(remote)
        if ti is None:
            self.log.warning("Request %r arrived on an unknown transport; dropping", request)
            return
        key = (request.token, remote)
        if self._observations:
            old = self._observations.pop(key, None)
            if old is not None:
                old.stop_interest()
        observe = request.opt.observe
        if request.code == Code.GET and observe == 1:
            # Deregistration: answered like a plain GET after the
            # observation above was ended.
            request.opt.observe = None
            observe = None

        pipe = Pipe(request, self.log)
        response_remote = remote.as_response_address()
        request_is_non = request.mtype is NON

        def on_event(event) -> bool:
            message = event.message
            if message is None:
                if event.exception is not None:
                    self.log.error("Error rendering %r: %r", request, event.exception)
                    message = Message(code=Code.INTERNAL_SERVER_ERROR)
                else:
                    no_response = getattr(ti, "no_response_for", None)
                    if no_response is not None:
                        no_response(remote, request.token)
                    return False
            message.token = request.token
            message.remote = response_remote
            if request_is_non and message.mtype is None:
                message.mtype = NON
            ti.send_message(message, None)
            return not event.is_last

        pipe.on_event(on_event)
        if observe is not None:
            self._observations[key] = pipe

            def forget():
                if self._observations.get(key) is pipe:
                    del self._observations[key]

            pipe.on_interest_end(forget)
        self._render_to_pipe(pipe)

    def dispatch_error(self, exception: Exception, remote) -> None:
        for key in [k for k in self._outgoing if k[1] == remote]:
            state = self._outgoing.pop(key)
            if state.stop is not None:
                state.stop()
            state.pipe.add_exception(exception)
        for key in [k for k in self._observations if k[1] == remote]:
            self._observations.pop(key).stop_interest()

    async def shutdown(self) -> None:
        for table in (self._outgoing, self._outgoing_multicast):
            states = list(table.values())
            table.clear()
            for state in states:
                state.pipe.add_exception(error.LibraryShutdown())
        observations = list(self._observations.values())
        self._observations.clear()
        for pipe in observations:
            pipe.stop_interest()
        for ti in self.token_interfaces:
            await ti.shutdown()
