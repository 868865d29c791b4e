"""Client side of RFC 9176 registration: keep a context's resources
registered at a resource directory.

:class:`Registerer` is what ``aiocoap-fileserver --register`` uses; any
server application can do the same::

    context = await aiocoap.Context.create_server_context(site)
    registerer = Registerer(context, "coap://rd.example.com")
    ...
    await registerer.shutdown()   # removes the registration
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Mapping, Optional

from ... import error
from ...message import Message
from ...numbers.codes import Code
from ...numbers.contentformat import ContentFormat
from ...numbers.types import Type
from ...util.linkformat import parse
from ...util.asyncio import result_within
from .. import _uri

__all__ = ["Registerer"]

_LINKFORMAT = ContentFormat.LINKFORMAT
_DEFAULT_LIFETIME = 90000
_DISCOVERY_URI = "coap://[ff05::fd]"
"""Where an RD is looked for when none is given: the site-local All CoAP
Nodes multicast address."""


class _Retry(Exception):
    """A step failed in a way that may go away (network trouble, RD
    unavailable): try again later, from discovery if the RD was found by
    discovery."""


class _Reregister(Exception):
    """The RD does not know the registration any more (4.04 on an update):
    register anew."""


class _Unrecoverable(Exception):
    """The RD refuses what is sent (4.xx on registration): retrying the
    same would not help."""


def _code(response: Message) -> Code:
    code = response.code
    assert code is not None  # responses always have one
    return code


def _query_value(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class Registerer:
    """Keeps the resources of a context registered at a resource directory
    until :meth:`shutdown`.

    ``rd`` is the RD's URI: with a path (``coap://rd.example.com/rd``) it is
    taken as the registration interface itself; without a path
    (``coap://rd.example.com``) that host is asked for it through
    ``/.well-known/core?rt=core.rd*``; when None, the question goes to the
    site-local All CoAP Nodes multicast address.

    What is registered are the links of the context's site
    (``context.serversite.get_resources_as_linkheader()``); with
    ``link_source`` (a URI), the ``/.well-known/core`` of that host is
    registered instead, with ``link_source`` as the base (third-party
    registration, as a commissioning tool does).

    ``registration_parameters`` go into the registration's query (``et``,
    ``d``, ...); ``lt`` is the lifetime in seconds. If
    ``name_from_hostname`` is true, or when it is None and
    ``registration_parameters`` has no ``ep``, the endpoint name ``ep``
    (and sector ``d``) are taken from the host name (``node.example.com``:
    ep ``node``, d ``example.com``).

    The registration is refreshed before its lifetime runs out; if the RD
    lost it (4.04 on the update), the context registers anew. Network
    trouble and 5.xx answers are retried after growing delays (from
    :attr:`retry_delay` up to :attr:`retry_delay_max` seconds), forever;
    an RD that refuses the registration (4.xx) ends the attempts (state
    ``failed``, logged at ERROR level).

    :attr:`state` follows the progress informally: ``starting``,
    ``discovering``, ``registering``, ``registered``, ``renewing``,
    ``waiting`` (before a retry), ``failed``, ``cancelled``.
    """

    retry_delay = 2.0
    """Seconds to wait before the first retry (doubled on each failure)"""
    retry_delay_max = 600.0
    """Longest wait between two retries"""
    request_timeout = 120.0
    """Seconds after which a request without answer counts as failed"""

    def __init__(
        self,
        context: Any,
        rd: Optional[str] = None,
        lt: int = _DEFAULT_LIFETIME,
        name_from_hostname: Optional[bool] = None,
        link_source: Optional[str] = None,
        registration_parameters: Mapping[str, Any] = {},
        loggername: str = "coap-rd-registerer",
    ):
        self._context = context
        self._initial_rd = rd
        self._lt = lt
        self._link_source = link_source
        self._directory_resource: Optional[str] = None
        self._registration_resource: Optional[str] = None
        self._registration_parameters = dict(registration_parameters)
        if name_from_hostname or (name_from_hostname is None and "ep" not in registration_parameters):
            ep, _, d = socket.getfqdn().partition(".")
            self._registration_parameters["ep"] = ep
            if d:
                self._registration_parameters["d"] = d
        self.log = logging.getLogger(loggername)
        self.state = "starting"
        self._task = asyncio.get_running_loop().create_task(self._run(), name="Registerer")

    def __repr__(self) -> str:
        where = self._registration_resource or self._directory_resource or self._initial_rd
        return (
            f"<{type(self).__name__} at {id(self):#x}: registering at {where} as "
            f"{self._registration_parameters} (currently {self.state})>"
        )

    def _set_state(self, state: str) -> None:
        self.log.debug("Entering state %s", state)
        self.state = state

    # ---------------------------------------------------------- requests

    async def _request(self, message: Message) -> Message:
        """Send a request; network trouble and timeouts become _Retry."""
        try:
            return await result_within(self._context.request(message).response, self.request_timeout)
        except asyncio.TimeoutError:
            raise _Retry(f"no answer from {message.get_request_uri()}") from None
        except error.Error as e:
            raise _Retry(f"{message.get_request_uri()}: {e}") from None

    async def _discover(self) -> str:
        """The URI of the registration interface."""
        if self._initial_rd is not None:
            scheme, authority, path, _, _ = _uri.split(self._initial_rd)
            if scheme is None or authority is None:
                raise _Unrecoverable(f"the RD URI {self._initial_rd!r} needs a scheme and a host")
            if path not in ("", "/"):
                return self._initial_rd
            host_uri = f"{scheme}://{authority}"
            mtype = Type.CON
        else:
            host_uri = _DISCOVERY_URI
            mtype = Type.NON
        request = Message(code=Code.GET, _mtype=mtype, uri=host_uri + "/.well-known/core?rt=core.rd*", accept=_LINKFORMAT)
        response = await self._request(request)
        if not _code(response).is_successful():
            raise _Retry(f"RD discovery at {host_uri} answered {response.code}")
        try:
            links = parse(response.payload)
        except ValueError as e:
            raise _Retry(f"RD discovery at {host_uri} gave malformed links: {e}") from None
        candidates = [link for link in links if "core.rd" in (link.get("rt") or "").split()]
        if not candidates:
            raise _Retry(f"{host_uri} offers no registration interface")
        if len(candidates) > 1:
            self.log.info("%s offers %d registration interfaces, using the first", host_uri, len(candidates))
        return _uri.resolve(response.get_request_uri(), candidates[0].href)

    async def _link_data(self) -> bytes:
        if self._link_source is None:
            return str(self._context.serversite.get_resources_as_linkheader()).encode("utf-8")
        request = Message(code=Code.GET, uri=_uri.resolve(self._link_source, "/.well-known/core"), accept=_LINKFORMAT)
        response = await self._request(request)
        if response.code != Code.CONTENT:
            raise _Retry(f"{request.get_request_uri()} answered {response.code}")
        return response.payload

    def _query(self) -> list[str]:
        query = [f"{name}={_query_value(value)}" for name, value in self._registration_parameters.items()]
        if self._lt != _DEFAULT_LIFETIME and "lt" not in self._registration_parameters:
            query.append(f"lt={self._lt}")
        if self._link_source is not None and "base" not in self._registration_parameters:
            query.append(f"base={self._link_source}")
        return query

    async def _register(self) -> str:
        """Register at the directory resource; the registration resource's
        URI."""
        assert self._directory_resource is not None
        request = Message(code=Code.POST, uri=self._directory_resource, content_format=_LINKFORMAT)
        request.opt.uri_query = request.opt.uri_query + tuple(self._query())
        request.payload = await self._link_data()
        response = await self._request(request)
        if response.code == Code.CREATED:
            path = "/" + "/".join(response.opt.location_path)
            return _uri.resolve(response.get_request_uri(), path)
        self._raise_for(response, "registration")
        raise _Retry(f"registration answered {response.code}")

    def _raise_for(self, response: Message, what: str) -> None:
        detail = response.payload.decode("utf-8", "replace")[:200]
        text = f"{what} answered {response.code}" + (f": {detail}" if detail else "")
        if _code(response).class_ == 4:
            raise _Unrecoverable(text)
        raise _Retry(text)

    async def _refresh(self) -> None:
        assert self._registration_resource is not None
        response = await self._request(Message(code=Code.POST, uri=self._registration_resource))
        if response.code == Code.CHANGED:
            return
        if response.code == Code.NOT_FOUND:
            raise _Reregister()
        if _code(response).class_ == 4:
            # The RD does not like the update itself; a new registration
            # gets a fresh start.
            self.log.warning("Registration update answered %s, registering anew", response.code)
            raise _Reregister()
        self._raise_for(response, "registration update")

    def _refresh_delay(self) -> float:
        # Well before the lifetime runs out: a minute, or a quarter of the
        # lifetime, whichever is longer.
        return max(self._lt * 0.75, self._lt - 60)

    # ---------------------------------------------------------- the run

    async def _run(self) -> None:
        delay = self.retry_delay
        try:
            while True:
                try:
                    if self._directory_resource is None:
                        self._set_state("discovering")
                        self._directory_resource = await self._discover()
                    self._set_state("registering")
                    self._registration_resource = await self._register()
                    self.log.info("Registered at %s as %s", self._directory_resource, self._registration_resource)
                    self._set_state("registered")
                    delay = self.retry_delay
                    while True:
                        await asyncio.sleep(self._refresh_delay())
                        self._set_state("renewing")
                        await self._refresh()
                        self._set_state("registered")
                except _Reregister:
                    self.log.info("The RD lost the registration %s, registering anew", self._registration_resource)
                    self._registration_resource = None
                except _Retry as e:
                    self.log.warning("Registration at the RD failed (%s), trying again in %g s", e, delay)
                    self._registration_resource = None
                    if self._initial_rd is None or self._directory_resource != self._initial_rd:
                        # found by discovery: look again next time
                        self._directory_resource = None
                    self._set_state("waiting")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_delay_max)
        except _Unrecoverable as e:
            self.log.error("Not registering at the resource directory: %s", e)
            self._set_state("failed")
        except asyncio.CancelledError:
            self._set_state("cancelled")
            raise

    async def shutdown(self) -> None:
        """Stop keeping the registration alive, and remove it from the RD
        (errors doing that are logged, not raised)."""
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        location, self._registration_resource = self._registration_resource, None
        if location is None:
            return
        try:
            response = await result_within(
                self._context.request(Message(code=Code.DELETE, uri=location)).response, self.request_timeout
            )
        except (asyncio.TimeoutError, error.Error) as e:
            self.log.info("Removing the registration %s failed: %s", location, e)
            return
        if response.code != Code.DELETED:
            self.log.info("Removing the registration %s answered %s", location, response.code)
