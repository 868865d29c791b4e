"""Fixtures for talking to libcoap's command line tools over UDP on loopback.

* ``coap_client_bin`` / ``coap_server_bin``: paths of libcoap's
  ``coap-client-notls`` / ``coap-server-notls`` (Debian package
  ``libcoap3-bin``); a test using one of them is skipped, naming the missing
  binary, where it is not installed.
* ``libcoap_server``: a ``coap-server-notls`` on a free port of 127.0.0.1,
  started once per module with dynamic resources enabled (``-d``), waited
  for until it answers a CoAP request, and killed afterwards.
* ``coap_client``: an async callable running ``coap-client-notls`` with
  :func:`asyncio.create_subprocess_exec` (so that a server in the test's own
  event loop keeps serving) and returning the parsed :class:`ClientRun`.
* ``our_server``: an :class:`OurServer`, an async context manager serving a
  :class:`aiocoap.resource.Site` with the resources described in
  :func:`build_site` on 127.0.0.1 from inside the test's event loop.
  Fixtures here are synchronous (see ``tests/conftest.py``), so the test
  enters it itself: ``async with our_server as server: ...``.
* ``client_context``: an async context manager factory for a client
  :class:`aiocoap.Context` that is shut down on exit.

Nothing here imports aiocoap at collection time: a library that can not be
imported yet makes the tests that need it fail, not the whole directory.
Every process started here is bounded by a timeout and killed on teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import secrets
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

CLIENT_NAME = "coap-client-notls"
SERVER_NAME = "coap-server-notls"

#: Payload of our ``/hello`` resource.
HELLO_PAYLOAD = b"Hello from the aiocoap interop site"
#: Payload of our ``/big`` resource: large enough for several Block2 blocks.
BIG_PAYLOAD = b"".join(b"%04d:0123456789abcdef\n" % i for i in range(150))


# ---------------------------------------------------------------- ports


def free_port(host: str = "127.0.0.1") -> int:
    """A port number that is currently free for UDP and TCP on ``host``
    (see tests/ports.py for why it does not come from bind(0))."""
    from ports import free_port as reserved

    return reserved(host)


def closed_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` that nothing listens on (at the time of the
    call), so datagrams sent there are answered with ICMP port unreachable."""
    return free_port(host)


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------- raw CoAP probe


def coap_answers(host: str, port: int, timeout: float = 0.2) -> bool:
    """Send one CON GET for ``/`` as a raw datagram and report whether a
    message with the same message ID came back within ``timeout``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    mid = secrets.randbits(16)
    token = secrets.token_bytes(2)
    request = struct.pack("!BBH", 0x40 | len(token), 0x01, mid) + token
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            s.send(request)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data = s.recv(2048)
                if len(data) >= 4 and struct.unpack_from("!H", data, 2)[0] == mid:
                    return True
        except OSError:
            # timeout, or ICMP port unreachable while the server starts
            return False
    return False


# ------------------------------------------------------------- binaries


def _find_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"libcoap's {name} is not installed (Debian package libcoap3-bin)"
        )
    return path


@pytest.fixture(scope="session")
def coap_client_bin() -> str:
    return _find_binary(CLIENT_NAME)


@pytest.fixture(scope="session")
def coap_server_bin() -> str:
    return _find_binary(SERVER_NAME)


# ------------------------------------------------------- libcoap server


@dataclasses.dataclass
class LibcoapServer:
    """A running ``coap-server-notls``."""

    host: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def base(self) -> str:
        return f"coap://{hostport(self.host, self.port)}"

    def uri(self, path: str) -> str:
        return self.base + path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_libcoap_server(
    binary: str, logdir: Path, host: str = "127.0.0.1", extra=("-d", "50")
) -> LibcoapServer:
    """Start ``coap-server-notls`` on a free port of ``host`` and return once
    it answers CoAP requests; retry on a fresh port if it fails to start."""
    last_log = ""
    for attempt in range(3):
        port = free_port(host)
        log_path = logdir / f"coap-server-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [binary, "-A", host, "-p", str(port), *extra],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and process.poll() is None:
            if coap_answers(host, port):
                return LibcoapServer(host, port, process, log_path)
            time.sleep(0.05)
        stop_process(process)
        last_log = log_path.read_text(errors="replace")
    raise RuntimeError(f"{binary} did not start answering; last log:\n{last_log}")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(3)


@pytest.fixture(scope="module")
def libcoap_server(coap_server_bin, tmp_path_factory) -> LibcoapServer:
    server = start_libcoap_server(coap_server_bin, tmp_path_factory.mktemp("libcoap"))
    try:
        yield server
    finally:
        stop_process(server.process)


# ------------------------------------------------------- libcoap client

# One message as printed by coap-client at verbosity 6, e.g.
#   v:1 t:ACK c:2.05 i:9ba4 {01} [ Max-Age:196607 ] :: 'payload'
_DUMP = re.compile(
    r"^v:1 t:(?P<type>CON|NON|ACK|RST) c:(?P<code>\S+) i:(?P<mid>[0-9a-f]+)"
    r" \{(?P<token>[0-9a-f]*)\} \[ ?(?P<options>.*?) ?\](?: :: (?P<payload>.*))?$"
)
_RESPONSE_CODE = re.compile(r"^[2-5]\.\d\d$")


@dataclasses.dataclass
class DumpedMessage:
    """One CoAP message from coap-client's verbose output."""

    mtype: str
    code: str
    mid: int
    token: str
    options: list
    #: the payload as coap-client shows it (non-printable bytes escaped)
    payload_text: str

    @property
    def is_response(self) -> bool:
        return bool(_RESPONSE_CODE.match(self.code))

    def option_values(self, name: str) -> list:
        return [value for key, value in self.options if key == name]


def parse_dump(text: str) -> list:
    messages = []
    for line in text.splitlines():
        m = _DUMP.match(line.strip())
        if m is None:
            continue
        options = []
        if m["options"]:
            for item in m["options"].split(", "):
                key, _, value = item.partition(":")
                options.append((key, value))
        payload = m["payload"] or ""
        if len(payload) >= 2 and payload[0] == payload[-1] == "'":
            payload = payload[1:-1]
        messages.append(
            DumpedMessage(
                m["type"], m["code"], int(m["mid"], 16), m["token"], options, payload
            )
        )
    return messages


@dataclasses.dataclass
class ClientRun:
    """What one run of coap-client did."""

    argv: list
    returncode: int
    stdout: str
    stderr: str
    #: the response payload(s) as written by ``-o``, concatenated
    payload: bytes
    messages: list

    @property
    def responses(self) -> list:
        return [m for m in self.messages if m.is_response]

    @property
    def code(self):
        """Code of the last response received, e.g. ``"2.05"``, or None."""
        responses = self.responses
        return responses[-1].code if responses else None

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


async def run_coap_client(
    binary: str,
    uri: str,
    *args: str,
    workdir: Path,
    wait: float = 5.0,
) -> ClientRun:
    """Run ``coap-client-notls`` on ``uri`` with the extra ``args`` (e.g.
    ``"-m", "put", "-e", "text"``) and wait at most ``wait`` seconds for
    answers (``-B``); the process is killed if it overstays that."""
    out = workdir / f"payload-{secrets.token_hex(4)}"
    argv = [binary, "-v", "6", "-B", str(max(1, round(wait))), "-o", str(out), *args, uri]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), wait + 10)
    except asyncio.TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
    payload = out.read_bytes() if out.exists() else b""
    text = stdout.decode(errors="replace")
    return ClientRun(
        argv, process.returncode, text, stderr.decode(errors="replace"), payload,
        parse_dump(text),
    )


@pytest.fixture
def coap_client(coap_client_bin, tmp_path) -> Callable:
    async def run(uri: str, *args: str, wait: float = 5.0) -> ClientRun:
        return await run_coap_client(
            coap_client_bin, uri, *args, workdir=tmp_path, wait=wait
        )

    return run


# ---------------------------------------------------------- our server


@dataclasses.dataclass
class SiteState:
    """What the resources of :func:`build_site` share with the tests."""

    store: bytes | None = b"initial"
    items: dict = dataclasses.field(default_factory=dict)
    counter: int = 0
    ticker: asyncio.TimerHandle | None = None
    observers: int = 0


def build_site(state: SiteState):
    """A Site with one resource per method under test:

    ``/hello``      GET: :data:`HELLO_PAYLOAD` (text/plain)
    ``/store``      GET the stored bytes, PUT replaces them (2.04),
                    DELETE removes them (2.02, GET is 4.04 until the next PUT)
    ``/items``      POST creates ``/items/N`` holding the payload (2.01 with
                    Location-Path), GET on it returns the payload
    ``/echo``       FETCH returns the request payload and content format
    ``/big``        GET :data:`BIG_PAYLOAD` (blockwise), PUT stores a payload
                    of any size (assembled from Block1) and echoes its length
    ``/counter``    observable; while observed it counts up every 0.2 s
    ``/.well-known/core``  the link format of all the above
    """
    import aiocoap
    from aiocoap import error, resource

    class Hello(resource.Resource):
        rt = "x.hello"
        ct = 0

        async def render_get(self, request):
            return aiocoap.Message(payload=HELLO_PAYLOAD, content_format=0)

    class Store(resource.Resource):
        rt = "x.store"

        async def render_get(self, request):
            if state.store is None:
                raise error.NotFound()
            return aiocoap.Message(payload=state.store)

        async def render_put(self, request):
            state.store = request.payload
            return aiocoap.Message(code=aiocoap.CHANGED)

        async def render_delete(self, request):
            state.store = None
            return aiocoap.Message(code=aiocoap.DELETED)

    class Item(resource.Resource):
        def __init__(self, payload):
            super().__init__()
            self.payload = payload

        async def render_get(self, request):
            return aiocoap.Message(payload=self.payload)

    class Items(resource.Resource):
        rt = "x.collection"

        async def render_post(self, request):
            number = str(len(state.items) + 1)
            state.items[number] = request.payload
            site.add_resource(("items", number), Item(request.payload))
            return aiocoap.Message(code=aiocoap.CREATED, location_path=("items", number))

    class Echo(resource.Resource):
        async def render_fetch(self, request):
            response = aiocoap.Message(payload=request.payload)
            if request.opt.content_format is not None:
                response.opt.content_format = request.opt.content_format
            return response

    class Big(resource.Resource):
        async def render_get(self, request):
            return aiocoap.Message(payload=BIG_PAYLOAD)

        async def render_put(self, request):
            state.store = request.payload
            return aiocoap.Message(
                code=aiocoap.CHANGED, payload=str(len(request.payload)).encode()
            )

    class Counter(resource.ObservableResource):
        def update_observation_count(self, count):
            state.observers = count
            if count and state.ticker is None:
                self._schedule()
            elif not count and state.ticker is not None:
                state.ticker.cancel()
                state.ticker = None

        def _schedule(self):
            state.ticker = asyncio.get_running_loop().call_later(0.2, self._tick)

        def _tick(self):
            state.counter += 1
            self.updated_state()
            self._schedule()

        async def render_get(self, request):
            return aiocoap.Message(payload=b"%d" % state.counter)

    site = resource.Site()
    site.add_resource((".well-known", "core"), resource.WKCResource(site.get_resources_as_linkheader))
    site.add_resource(("hello",), Hello())
    site.add_resource(("store",), Store())
    site.add_resource(("items",), Items())
    site.add_resource(("echo",), Echo())
    site.add_resource(("big",), Big())
    site.add_resource(("counter",), Counter())
    return site


class OurServer:
    """Serves :func:`build_site` with our library from the current event loop
    while the ``async with`` block runs."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.port: int | None = None
        self.state = SiteState()
        self.context = None

    @property
    def base(self) -> str:
        return f"coap://{hostport(self.host, self.port)}"

    def uri(self, path: str) -> str:
        return self.base + path

    async def __aenter__(self) -> "OurServer":
        import aiocoap

        site = build_site(self.state)
        for attempt in range(3):
            self.port = free_port(self.host)
            try:
                self.context = await aiocoap.Context.create_server_context(
                    site, bind=(self.host, self.port)
                )
                break
            except OSError:
                # somebody took the port between free_port() and the bind
                if attempt == 2:
                    raise
        return self

    async def __aexit__(self, *exc) -> None:
        if self.state.ticker is not None:
            self.state.ticker.cancel()
            self.state.ticker = None
        if self.context is not None:
            await self.context.shutdown()
            self.context = None


@pytest.fixture
def our_server() -> OurServer:
    return OurServer("127.0.0.1")


@pytest.fixture
def our_server_v6() -> OurServer:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback (::1) on this machine")
    return OurServer("::1")


@contextlib.asynccontextmanager
async def _client_context() -> AsyncIterator:
    import aiocoap

    context = await aiocoap.Context.create_client_context()
    try:
        yield context
    finally:
        await context.shutdown()


@pytest.fixture
def client_context() -> Callable:
    """``async with client_context() as ctx:`` gives a client Context."""
    return _client_context
