"""Tests for aiocoap.defaults: the transport choice (environment overrides,
the udp6 capability check, the fallback to simple6 / simplesocketserver on
a host without IPv6) and the optional-module helpers."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import re
import sys

import pytest

from aiocoap import defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _udp_part(names):
    """The server list without the DTLS server, which follows the UDP
    transport so that it can listen next to its port."""
    if "tinydtls_server" in names:
        assert names[-1] == "tinydtls_server"
        return names[:-1]
    return names


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("AIOCOAP_CLIENT_TRANSPORT", raising=False)
    monkeypatch.delenv("AIOCOAP_SERVER_TRANSPORT", raising=False)


# --- transport lists -------------------------------------------------------------


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("AIOCOAP_CLIENT_TRANSPORT", "simple6:tcpclient")
    monkeypatch.setenv("AIOCOAP_SERVER_TRANSPORT", "udp6")
    assert defaults.get_default_clienttransports() == ["simple6", "tcpclient"]
    assert defaults.get_default_servertransports() == ["udp6"]
    # empty entries are ignored; an empty variable means the defaults
    monkeypatch.setenv("AIOCOAP_CLIENT_TRANSPORT", ":udp6::")
    assert defaults.get_default_clienttransports() == ["udp6"]
    monkeypatch.setenv("AIOCOAP_CLIENT_TRANSPORT", "")
    from_empty = defaults.get_default_clienttransports()
    monkeypatch.delenv("AIOCOAP_CLIENT_TRANSPORT")
    assert from_empty == defaults.get_default_clienttransports()
    assert "tcpclient" in from_empty


def test_defaults_on_this_machine(clean_env):
    client = defaults.get_default_clienttransports()
    server_all = defaults.get_default_servertransports()
    server = _udp_part(server_all)
    if defaults._udp6_works_on_platform():
        assert client[-1] == "udp6" and "simple6" not in client
        assert server[-1] == "udp6" and "simplesocketserver" not in server
    else:
        assert client[-1] == "simple6"
        assert server[-2:] == ["simple6", "simplesocketserver"]
    assert ("oscore" in client) == (not defaults.oscore_missing_modules())
    # DTLS where DTLSSocket is installed (the server side only listens when
    # server credentials have DTLS entries, decided when it is loaded)
    dtls = not defaults.dtls_missing_modules()
    assert ("tinydtls" in client) == dtls and ("tinydtls" in server_all) == dtls
    assert ("tinydtls_server" in server_all) == dtls and "tinydtls_server" not in client
    if "oscore" in client:
        assert client[0] == "oscore" and server[0] == "oscore"
    assert "tcpclient" in client and "tcpclient" in server
    assert "tcpserver" in server and "tcpserver" not in client
    assert ("tlsclient" in client) == (importlib.util.find_spec("_ssl") is not None)
    # WebSockets (client and server in one transport) where websockets is
    has_ws = importlib.util.find_spec("websockets") is not None
    assert ("ws" in client) == has_ws and ("ws" in server) == has_ws
    assert defaults.ws_missing_modules() == ([] if has_ws else ["websockets"])


def test_ws_follows_its_module(clean_env, monkeypatch):
    monkeypatch.setattr(defaults, "ws_missing_modules", lambda: ["websockets"])
    assert "ws" not in defaults.get_default_clienttransports()
    assert "ws" not in defaults.get_default_servertransports()
    monkeypatch.setattr(defaults, "ws_missing_modules", lambda: [])
    client = defaults.get_default_clienttransports()
    server = defaults.get_default_servertransports()
    # before the UDP transport, which comes last
    assert client.index("ws") == len(client) - 2
    assert server.index("ws") < server.index("udp6" if "udp6" in server else "simple6")


def test_without_udp6(clean_env, monkeypatch):
    monkeypatch.setattr(defaults, "_udp6_works_on_platform", lambda: False)
    assert defaults.get_default_clienttransports()[-1] == "simple6"
    assert "udp6" not in defaults.get_default_clienttransports()
    assert _udp_part(defaults.get_default_servertransports())[-2:] == ["simple6", "simplesocketserver"]


class _LoopWithoutReaders(asyncio.AbstractEventLoop):
    """A loop type the defaults module does not know, like a proactor."""

    def add_reader(self, fd, callback, *args):
        raise NotImplementedError

    def remove_reader(self, fd):
        raise NotImplementedError


def test_loop_without_add_reader_gets_simple6(clean_env):
    loop = _LoopWithoutReaders()
    assert defaults.get_default_clienttransports(loop=loop)[-1] == "simple6"
    assert _udp_part(defaults.get_default_servertransports(loop=loop))[-2:] == ["simple6", "simplesocketserver"]


@pytest.mark.skipif(not defaults._udp6_works_on_platform(), reason="udp6 does not work on this platform")
def test_known_loops_get_udp6(clean_env):
    loop = asyncio.new_event_loop()
    try:
        assert defaults.get_default_clienttransports(loop=loop)[-1] == "udp6"
    finally:
        loop.close()
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        assert _udp_part(defaults.get_default_servertransports(loop=loop))[-1] == "udp6"
    finally:
        loop.close()


# --- optional modules ------------------------------------------------------------


def test_missing_modules(monkeypatch, clean_env):
    for function in (
        defaults.oscore_missing_modules,
        defaults.linkheader_missing_modules,
        defaults.prettyprint_missing_modules,
        defaults.dtls_missing_modules,
        defaults.ws_missing_modules,
    ):
        assert isinstance(function(), list)
        assert all(isinstance(name, str) for name in function())

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert defaults.oscore_missing_modules() == ["cryptography", "cbor2", "filelock"]
    # link format is built in: nothing can be missing for it
    assert defaults.linkheader_missing_modules() == []
    assert defaults.prettyprint_missing_modules() == ["pygments", "cbor2"]
    assert defaults.dtls_missing_modules() == ["DTLSSocket", "aiocoap.transports.tinydtls"]
    assert "tinydtls" not in defaults.get_default_clienttransports()
    assert "tinydtls_server" not in defaults.get_default_servertransports()
    assert defaults.ws_missing_modules() == ["websockets", "aiocoap.transports.ws"]


def test_missing_modules_name_transports_this_build_lacks(monkeypatch):
    """A feature whose transport module is not in this tree is reported
    missing even when its third-party module is installed."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name: None if name == "aiocoap.transports.tinydtls" else object(),
    )
    assert defaults.dtls_missing_modules() == ["aiocoap.transports.tinydtls"]
    monkeypatch.setattr(importlib.util, "find_spec", real)
    assert set(defaults.missing_module_functions) == {"dtls", "oscore", "linkheader", "prettyprint", "ws"}
    for name, function in defaults.missing_module_functions.items():
        assert defaults.missing_modules_of_extra({"dtls": "tinydtls"}.get(name, name)) == function()


def test_present_modules(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert defaults.oscore_missing_modules() == []
    assert not defaults.prettyprint_missing_modules()


def test_missing_module_message():
    message = defaults.missing_module_message("oscore", ["cbor2"])
    assert message == "OSCORE requires the optional module(s) cbor2; install aiocoap[oscore]"
    assert "\n" not in message
    other = defaults.missing_module_message("frobnicate", ("a", "b"))
    assert "a, b" in other and "aiocoap[frobnicate]" in other


# --- a host with IPv6 disabled ------------------------------------------------------


_NO_IPV6_SCRIPT = r'''
import asyncio, json, logging, os
from aiocoap import defaults
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.transports.simple6 import MessageInterfaceSimple6
from aiocoap.transports.simplesocketserver import MessageInterfaceSimpleServer

class Manager:
    def __init__(self):
        self.datagrams = []
        self.event = asyncio.Event()
    def dispatch_datagram(self, data, remote):
        self.datagrams.append((data, remote))
        self.event.set()
    def dispatch_error(self, exc, remote):
        raise AssertionError(f"unexpected error {exc!r} for {remote!r}")

async def next_datagram(manager):
    await asyncio.wait_for(manager.event.wait(), 2)
    manager.event.clear()
    return manager.datagrams[-1]

async def main():
    loop = asyncio.get_running_loop()
    log = logging.getLogger("no-ipv6")
    result = {
        "client": defaults.get_default_clienttransports(loop=loop),
        "server": defaults.get_default_servertransports(loop=loop),
    }
    server_manager, client_manager = Manager(), Manager()
    server = await MessageInterfaceSimpleServer.create_server((None, None), server_manager, log, loop)
    client = await MessageInterfaceSimple6.create_client_transport_endpoint(client_manager, log, loop)
    request = Message(code=Code.GET, _mtype=Type.CON, _mid=1, _token=b"t", uri="coap://127.0.0.1/", payload=b"ping")
    request.remote = await client.determine_remote(request)
    client.send(request)
    data, remote = await next_datagram(server_manager)
    response = Message(code=Code.CONTENT, _mtype=Type.ACK, _mid=1, _token=b"t", payload=b"pong")
    response.remote = remote
    server.send(response)
    data, responder = await next_datagram(client_manager)
    result["request"] = Message.decode(server_manager.datagrams[0][0]).payload.decode()
    result["response"] = Message.decode(data).payload.decode()
    result["same_remote"] = responder == request.remote
    result["server_sees"] = remote.hostinfo.rsplit(":", 1)[0]
    await client.shutdown()
    await server.shutdown()
    print(json.dumps(result))

if os.environ.get("AIOCOAP_TEST_LOOP") == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
'''


def _run_without_ipv6(script: str) -> subprocess.CompletedProcess:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip") or not shutil.which("sysctl"):
        pytest.skip("needs root with unshare, ip and sysctl to make a network namespace")
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow creating network namespaces")
    setup = """
        ip link set lo up
        sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || exit 77
        sysctl -qw net.ipv6.conf.lo.disable_ipv6=1 || exit 77
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    env.pop("AIOCOAP_CLIENT_TRANSPORT", None)
    env.pop("AIOCOAP_SERVER_TRANSPORT", None)
    result = subprocess.run(
        ["unshare", "-n", "--", "sh", "-ec", setup + '\nexec "$@"', "sh", sys.executable, "-c", script],
        env=env, capture_output=True, text=True, timeout=60,
    )
    if result.returncode == 77:
        pytest.skip(f"IPv6 can not be disabled in a namespace here: {result.stderr.strip()}")
    return result


@pytest.mark.core
def test_host_without_ipv6_uses_the_simple_transports():
    result = _run_without_ipv6(_NO_IPV6_SCRIPT)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["client"][-1] == "simple6" and "udp6" not in outcome["client"]
    assert _udp_part(outcome["server"])[-2:] == ["simple6", "simplesocketserver"] and "udp6" not in outcome["server"]
    assert outcome["request"] == "ping" and outcome["response"] == "pong"
    assert outcome["same_remote"]
    assert outcome["server_sees"] == "127.0.0.1"


def _extras() -> dict:
    """``extras_require`` of setup.py, read without running setup()."""
    import ast
    import pathlib

    tree = ast.parse((pathlib.Path(__file__).parent.parent / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["extras_require"]:
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no extras_require")


def test_feature_extras_install_what_the_missing_modules_check():
    """Each feature extra pulls in exactly the distributions whose modules
    its ``*_missing_modules`` function looks for: no more (the prettyprint
    extra used to pull in the unmaintained LinkHeader, which nothing
    imports), no less."""
    module_of = {"pygments": "pygments", "cbor2": "cbor2", "cryptography": "cryptography",
                 "filelock": "filelock", "DTLSSocket": "DTLSSocket", "websockets": "websockets"}
    checks = {
        "prettyprint": defaults.prettyprint_missing_modules,
        "oscore": defaults.oscore_missing_modules,
        "tinydtls": defaults.dtls_missing_modules,
        "ws": defaults.ws_missing_modules,
    }
    extras = _extras()
    for extra, check in checks.items():
        distributions = {re.split(r"[ <>=;]", requirement)[0] for requirement in extras[extra]}
        modules = {module_of[d] for d in distributions}
        saved = {name: sys.modules.get(name) for name in modules}
        try:
            for name in modules:
                sys.modules[name] = None  # import fails
            reported = set(check())
        finally:
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
        assert modules <= reported, (extra, modules, reported)
    assert "LinkHeader" not in str(extras["prettyprint"])
