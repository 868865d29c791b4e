"""CoAP over DTLS between two Contexts over real loopback sockets: the
methods, observe, blockwise, the authenticated identity, credential errors,
sessions ending (idle, restart, alerts) and being replaced by new epochs,
many requests over one session, OSCORE inside DTLS, and a clean shutdown.

Timers are shortened through DTLSTuning / TransportTuning; nothing waits
for a default timeout."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import time

import pytest

pytest.importorskip("DTLSSocket")

import aiocoap  # noqa: E402
from aiocoap import error  # noqa: E402
from aiocoap.credentials import CredentialsMissingError  # noqa: E402
from aiocoap.numbers.constants import TransportTuning  # noqa: E402
from aiocoap.transports.dtls_sessions import DTLSTuning  # noqa: E402
from aiocoap.transports.tinydtls import (  # noqa: E402
    CloseNotifyReceived,
    DTLSClientConnection,
    DTLSError,
    FatalDTLSError,
    HandshakeTimeout,
    SessionClosed,
)

from ports import free_udp_port  # noqa: E402
from dtls_support import (  # noqa: E402
    BIG,
    IDENTITY,
    PSK,
    DemoSite,
    client_credentials_for,
    client_interface,
    dtls_client,
    dtls_server,
    get,
    open_fds,
)

pytestmark = pytest.mark.core
QUICK = TransportTuning(ACK_TIMEOUT=0.2, MAX_RETRANSMIT=2, EMPTY_ACK_DELAY=0.05)


async def until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --- the basics ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_get_and_put_with_authenticated_identity(host):
    async with dtls_server(host) as server, dtls_client(None) as client:
        client.client_credentials.load_from_dict(client_credentials_for(server))
        response = await get(client, server.uri("/hello"))
        assert response.code == aiocoap.CONTENT
        assert response.payload == b"(':client',)"
        assert isinstance(response.remote, DTLSClientConnection)
        assert response.remote.scheme == "coaps"
        assert response.remote.uri_base == server.uri("")
        (seen,) = server.site.seen_remotes
        assert seen.authenticated_claims == (":client",) and seen.psk_identity == IDENTITY
        assert seen.uri_base.startswith("coaps://")
        response = await get(client, server.uri("/store"), code=aiocoap.PUT, payload=b"new value")
        assert response.code == aiocoap.CHANGED
        response = await get(client, server.uri("/store"))
        assert response.payload == b"new value"
        # one session carried everything
        assert len(client_interface(client).sessions) == 1
        assert len(server.interface.sessions) == 1


async def test_plain_and_secure_requests_share_the_site_next_to_the_udp_port():
    port = free_udp_port()
    site = DemoSite()
    for _ in range(5):
        try:
            server_cm = dtls_server("127.0.0.1", port, site=site, transports=("udp6", "tinydtls_server"))
            server = await server_cm.__aenter__()
            break
        except OSError:
            port = free_udp_port()
    else:
        pytest.skip("no two adjacent free ports found")
    try:
        assert server.port == port + 1
        async with dtls_client(client_credentials_for(server), transports=("tinydtls", "udp6")) as client:
            secure = await get(client, server.uri("/hello"))
            plain = await get(client, f"coap://127.0.0.1:{port}/hello")
        assert secure.payload == b"(':client',)"
        assert plain.payload == b"()"
        assert [r.authenticated_claims for r in site.seen_remotes] == [(":client",), ()]
    finally:
        await server_cm.__aexit__(None, None, None)


async def test_observe():
    async with dtls_server() as server, dtls_client(None) as client:
        client.client_credentials.load_from_dict(client_credentials_for(server))
        request = client.request(aiocoap.Message(code=aiocoap.GET, uri=server.uri("/counter"), observe=0))
        first = await asyncio.wait_for(request.response, 5)
        assert first.payload == b"0" and first.opt.observe is not None
        notifications = []
        iterator = request.observation.__aiter__()
        for expected in (b"1", b"2", b"3"):
            server.site.tick()
            notification = await asyncio.wait_for(iterator.__anext__(), 5)
            notifications.append(notification)
            assert notification.payload == expected
        assert all(n.remote is first.remote for n in notifications)
        request.observation.cancel()


async def test_blockwise_100k_both_ways():
    async with dtls_server() as server, dtls_client(None) as client:
        client.client_credentials.load_from_dict(client_credentials_for(server))
        response = await get(client, server.uri("/big"), timeout=30)
        assert response.payload == BIG
        response = await get(client, server.uri("/big"), code=aiocoap.PUT, payload=BIG[::-1], timeout=30)
        assert response.code == aiocoap.CHANGED and response.payload == str(len(BIG)).encode()
        assert server.site.store == BIG[::-1]
        assert len(server.interface.sessions) == 1


async def test_thousand_requests_over_one_session():
    async with dtls_server() as server, dtls_client(None) as client:
        client.client_credentials.load_from_dict(client_credentials_for(server))
        remotes = set()
        for _ in range(1000 // 20):
            responses = await asyncio.gather(*(get(client, server.uri("/hello")) for _ in range(20)))
            assert all(r.payload == b"(':client',)" for r in responses)
            remotes.update(id(r.remote) for r in responses)
        assert len(remotes) == 1
        assert len(client_interface(client).sessions) == 1
        assert len(server.interface.sessions) == 1
        assert len({id(r) for r in server.site.seen_remotes}) == 1


class LossyRelay(asyncio.DatagramProtocol):
    """Forwards datagrams between one client and a server port, dropping
    the server's datagrams whose numbers (counted from 0) are in ``drop``."""

    def __init__(self, server_port: int, drop=()):
        self.server_port = server_port
        self.drop = set(drop)
        self.from_server = 0
        self.client_addr = None
        self.upstream = None

    async def start(self):
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        relay = self

        class Upstream(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                number = relay.from_server
                relay.from_server += 1
                if number not in relay.drop and relay.client_addr is not None:
                    relay.transport.sendto(data, relay.client_addr)

        self.upstream, _ = await loop.create_datagram_endpoint(Upstream, remote_addr=("127.0.0.1", self.server_port))
        return self

    @property
    def port(self):
        return self.transport.get_extra_info("sockname")[1]

    def datagram_received(self, data, addr):
        self.client_addr = addr
        self.upstream.sendto(data)

    def close(self):
        self.transport.close()
        self.upstream.close()


async def test_lost_handshake_flight_is_retransmitted():
    async with dtls_server() as server:
        relay = await LossyRelay(server.port, drop={0}).start()  # the HelloVerifyRequest
        try:
            uri = f"coaps://127.0.0.1:{relay.port}/hello"
            tuning = DTLSTuning(handshake_timeout=6.0, idle_timeout=None, silence_timeout=None)
            async with dtls_client({f"coaps://127.0.0.1:{relay.port}/*": {"dtls": {"psk": PSK, "client-identity": IDENTITY}}},
                                   tuning=tuning) as client:
                started = time.monotonic()
                response = await get(client, uri)
                elapsed = time.monotonic() - started
        finally:
            relay.close()
    assert response.payload == b"(':client',)"
    # tinydtls retransmits its ClientHello after about 2 s
    assert 1.0 < elapsed < 5.0, elapsed


# --- credentials and handshake failures ---------------------------------------------------


async def test_wrong_psk_fails_with_a_clear_error_and_no_hang():
    tuning = DTLSTuning(handshake_timeout=0.8, idle_timeout=None, silence_timeout=None)
    async with dtls_server(tuning=tuning) as server, dtls_client(None, tuning=tuning) as client:
        client.client_credentials.load_from_dict(client_credentials_for(server, psk=b"wrongPSK"))
        started = time.monotonic()
        with pytest.raises(HandshakeTimeout) as info:
            await get(client, server.uri("/hello"))
        assert time.monotonic() - started < 3
        assert "check the PSK and the identity" in str(info.value)
        assert isinstance(info.value, error.NetworkError)
        assert client_interface(client).sessions == []
        # the server forgets the half-finished handshake as well
        await until(lambda: not server.interface.sessions)


async def test_unknown_identity_fails_with_the_alert():
    async with dtls_server() as server, dtls_client(None) as client:
        client.client_credentials.load_from_dict(client_credentials_for(server, identity=b"stranger"))
        started = time.monotonic()
        with pytest.raises(FatalDTLSError) as info:
            await get(client, server.uri("/hello"))
        assert time.monotonic() - started < 2
        assert info.value.code is not None and "during the handshake" in str(info.value)
        assert client_interface(client).sessions == []
        await until(lambda: not server.interface.sessions)


async def test_second_identity_gets_its_own_claims():
    async with dtls_server() as server, dtls_client(None) as client:
        client.client_credentials.load_from_dict(client_credentials_for(server, psk=b"otherPSK", identity=b"other"))
        response = await get(client, server.uri("/hello"))
        assert response.payload == b"(':other',)"


async def test_credentials_per_path_choose_the_session():
    """Credentials that differ by path on one host mean one session per
    identity, and every request goes out with the identity of its path --
    also the repeated ones, whose route the context would otherwise
    remember by host."""
    async with dtls_server() as server, dtls_client(None) as client:
        client.client_credentials.load_from_dict({
            server.uri("/*"): {"dtls": {"psk": PSK, "client-identity": IDENTITY}},
            server.uri("/hello/*"): {"dtls": {"psk": b"otherPSK", "client-identity": b"other"}},
        })
        for _ in range(3):
            assert (await get(client, server.uri("/hello/x"))).code == aiocoap.NOT_FOUND
            assert (await get(client, server.uri("/hello"))).payload == b"(':client',)"
        assert len(client_interface(client).sessions) == 2
        assert {s.authenticated_claims for s in server.interface.sessions} == {(":client",), (":other",)}


async def test_missing_and_unusable_credentials():
    async with dtls_server() as server, dtls_client(None) as client:
        with pytest.raises(CredentialsMissingError, match="No DTLS credentials configured"):
            await get(client, server.uri("/hello"))
        client.client_credentials.load_from_dict(client_credentials_for(server, psk=b"k" * 17))
        with pytest.raises(DTLSError, match="at most 16|1 to 16"):
            await get(client, server.uri("/hello"))


async def test_nothing_listening_fails_fast():
    port = free_udp_port()
    async with dtls_client({f"coaps://127.0.0.1:{port}/*": {"dtls": {"psk": PSK, "client-identity": IDENTITY}}}) as client:
        started = time.monotonic()
        with pytest.raises(error.NetworkError):
            await get(client, f"coaps://127.0.0.1:{port}/x")
        assert time.monotonic() - started < 2


async def test_unresolvable_host():
    async with dtls_client({"coaps://nowhere.invalid/*": {"dtls": {"psk": PSK, "client-identity": IDENTITY}}}) as client:
        with pytest.raises(error.ResolutionError):
            await get(client, "coaps://nowhere.invalid/x")


async def test_server_without_dtls_credentials_does_not_listen():
    site = DemoSite()
    context = await aiocoap.Context.create_server_context(site.site, bind=("127.0.0.1", 0), transports=["tinydtls_server"])
    try:
        assert "TinyDTLSServer" not in repr(context)
    finally:
        await context.shutdown()


# --- sessions ending and epochs ---------------------------------------------------------


async def test_server_restart_client_recovers_on_the_next_request():
    """A server that shut down told the client (close_notify): the next
    request opens a new session at once."""
    port = free_udp_port()
    site = DemoSite()
    async with dtls_client(None) as client:
        async with dtls_server("127.0.0.1", port, site=site) as server:
            client.client_credentials.load_from_dict(client_credentials_for(server))
            old = (await get(client, server.uri("/hello"))).remote
        await until(lambda: old.session_ended)
        async with dtls_server("127.0.0.1", port, site=site) as server:
            response = await get(client, server.uri("/hello"))
            assert response.payload == b"(':client',)"
            assert response.remote is not old


async def test_server_crash_client_recovers_on_the_next_request():
    """A server that lost its state without a word (crashed and came back)
    drops what the client sends in the old session; the client notices the
    silence, fails what waited, and the next request opens a new session --
    also through the route the context cached for the literal address."""
    port = free_udp_port()
    tuning = DTLSTuning(handshake_timeout=2.0, idle_timeout=None, silence_timeout=0.4)
    site = DemoSite()
    async with dtls_client(None, tuning=tuning) as client:
        async with dtls_server("127.0.0.1", port, site=site) as server:
            client.client_credentials.load_from_dict(client_credentials_for(server))
            old = (await get(client, server.uri("/hello"))).remote
            # crash: nothing the server would still send goes out
            server.interface._engine._sendto = lambda data, addr: None
        assert not old.session_ended
        async with dtls_server("127.0.0.1", port, site=site) as server:
            started = time.monotonic()
            with pytest.raises(SessionClosed, match="considered lost"):
                await get(client, server.uri("/hello"))
            assert time.monotonic() - started < 2
            assert old.session_ended
            response = await get(client, server.uri("/hello"))
            assert response.payload == b"(':client',)"
            new = response.remote
            assert new is not old and new != old and hash(new) != hash(old)
            assert new._session.epoch > old._session.epoch
            assert not client_interface(client).recognize_remote(old)


async def test_client_idle_expiry_closes_both_sides():
    tuning = DTLSTuning(handshake_timeout=2.0, idle_timeout=0.3, silence_timeout=None)
    async with dtls_server() as server, dtls_client(None, tuning=tuning) as client:
        client.client_credentials.load_from_dict(client_credentials_for(server))
        first = await get(client, server.uri("/hello"))
        await until(lambda: first.remote.session_ended)
        # the close_notify reached the server, which forgot the session
        await until(lambda: not server.interface.sessions)
        second = await get(client, server.uri("/hello"))
        assert second.remote is not first.remote


async def test_server_idle_expiry_ends_the_clients_session_and_its_observation():
    tuning = DTLSTuning(handshake_timeout=2.0, idle_timeout=0.3, silence_timeout=None)
    async with dtls_server(tuning=tuning) as server, dtls_client(None) as client:
        client.client_credentials.load_from_dict(client_credentials_for(server))
        request = client.request(aiocoap.Message(code=aiocoap.GET, uri=server.uri("/counter"), observe=0))
        first = await asyncio.wait_for(request.response, 5)
        with pytest.raises(CloseNotifyReceived):
            async for _ in request.observation:
                pass
        assert first.remote.session_ended
        assert not server.interface.sessions
        response = await get(client, server.uri("/hello"))
        assert response.remote is not first.remote


async def test_server_session_cap_closes_the_longest_idle_session():
    tuning = DTLSTuning(handshake_timeout=2.0, idle_timeout=None, silence_timeout=None,
                        max_server_sessions=2, max_server_handshakes=2)
    async with dtls_server(tuning=tuning) as server:
        async with dtls_client(client_credentials_for(server)) as a, dtls_client(client_credentials_for(server)) as b, \
                dtls_client(client_credentials_for(server)) as c:
            ra = await get(a, server.uri("/hello"))
            await get(b, server.uri("/hello"))
            await get(a, server.uri("/hello"))  # a is active again: b is the longest idle
            rc = await get(c, server.uri("/hello"))
            assert len(server.interface.sessions) == 2
            await until(lambda: client_interface(b).sessions == [])
            assert not ra.remote.session_ended and not rc.remote.session_ended
            assert (await get(b, server.uri("/hello"))).code == aiocoap.CONTENT


# --- OSCORE inside DTLS ------------------------------------------------------------------


def _oscore_context(directory, sender, recipient):
    os.makedirs(directory)
    with open(os.path.join(directory, "settings.json"), "w") as f:
        json.dump({"sender-id": {"ascii": sender}, "recipient-id": {"ascii": recipient}}, f)
    with open(os.path.join(directory, "secrets.json"), "w") as f:
        json.dump({"secret": {"hex": "0102030405060708090a0b0c0d0e0f10"}, "salt": {"hex": "9e7ca92223786340"}}, f)
    return str(directory)


async def test_oscore_over_dtls(tmp_path):
    pytest.importorskip("cryptography")
    from aiocoap.oscore_sitewrapper import security_context_of

    client_dir = _oscore_context(tmp_path / "client", "cli", "srv")
    server_dir = _oscore_context(tmp_path / "server", "srv", "cli")
    credentials = {
        ":client": {"dtls": {"psk": PSK, "client-identity": IDENTITY}},
        ":oscore": {"oscore": {"contextfile": server_dir}},
    }
    site = DemoSite()
    seen = []

    class Who(aiocoap.resource.Resource):
        async def render_get(self, request):
            seen.append((security_context_of(request) is not None, request.remote.authenticated_claims))
            return aiocoap.Message(payload=b"both")

    site.site.add_resource(("who",), Who())
    async with dtls_server(credentials=credentials, site=site, transports=("oscore", "tinydtls_server")) as server:
        async with dtls_client(None, transports=("oscore", "tinydtls")) as client:
            client.client_credentials.load_from_dict({server.uri("/*"): {"all-of": [
                {"oscore": {"contextfile": client_dir}},
                {"dtls": {"psk": PSK, "client-identity": IDENTITY}},
            ]}})
            response = await get(client, server.uri("/who"))
            assert response.payload == b"both"
            assert response.remote.scheme == "coaps"
            assert response.remote.authenticated_claims[0] is not None
            big = await get(client, server.uri("/big"), timeout=30)
            assert big.payload == BIG
    assert seen and seen[0][0] is True


# --- shutdown ---------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to count file descriptors")
async def test_shutdown_with_sessions_open(no_warnings, caplog):
    # warm-up, so that lazily created loop resources are not counted
    async with dtls_server() as server, dtls_client(client_credentials_for(server)) as client:
        await get(client, server.uri("/hello"))
    gc.collect()
    before = open_fds()
    with caplog.at_level(logging.DEBUG):
        async with dtls_server() as server:
            async with dtls_client(client_credentials_for(server)) as client:
                await get(client, server.uri("/hello"))
                observation = client.request(aiocoap.Message(code=aiocoap.GET, uri=server.uri("/counter"), observe=0))
                await asyncio.wait_for(observation.response, 5)
                # a second client stuck in its handshake (the server never answers it)
                silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                silent.bind(("127.0.0.1", 0))
                port = silent.getsockname()[1]
                client.client_credentials.load_from_dict(
                    {f"coaps://127.0.0.1:{port}/*": {"dtls": {"psk": PSK, "client-identity": IDENTITY}}}
                )
                pending = asyncio.ensure_future(get(client, f"coaps://127.0.0.1:{port}/x"))
                await asyncio.sleep(0.05)
            with pytest.raises(error.LibraryShutdown):
                await pending
            silent.close()
            # the server got the close_notify of the client's session
            await until(lambda: not server.interface.sessions)
    gc.collect()
    assert open_fds() <= before
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- aiocoap-client --credentials -------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def _run_client(*args):
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable, os.path.join(ROOT, "aiocoap-client"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, stdout.decode(), stderr.decode()


async def test_aiocoap_client_with_a_credentials_file(tmp_path):
    async with dtls_server() as server:
        credentials = tmp_path / "credentials.json"
        credentials.write_text(json.dumps({server.uri("/*"): {"dtls": {
            "psk": {"ascii": PSK.decode()}, "client-identity": {"hex": IDENTITY.hex()},
        }}}))
        code, stdout, stderr = await _run_client("--credentials", str(credentials), server.uri("/hello"))
        assert (code, stdout.strip(), stderr) == (0, "(':client',)", "")
        # without credentials: one line saying what is missing
        code, stdout, stderr = await _run_client(server.uri("/hello"))
        assert code != 0 and stdout == ""
        assert len(stderr.splitlines()) == 1 and "No DTLS credentials configured" in stderr


async def test_the_examples_work():
    """examples/dtls-server.py and dtls-client.py, as the DTLS guide shows
    them, against each other."""
    import sys

    port = free_udp_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, os.path.join(ROOT, "examples", "dtls-server.py"), "127.0.0.1", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert await asyncio.wait_for(server.stdout.readline(), 20) == b"Serving\n"

        async def client(uri):
            process = await asyncio.create_subprocess_exec(
                sys.executable, os.path.join(ROOT, "examples", "dtls-client.py"), uri,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )
            stdout, _ = await asyncio.wait_for(process.communicate(), 20)
            return process.returncode, stdout.decode()

        assert await client(f"coaps://127.0.0.1:{port + 1}/whoami") == (
            0, "Result: 2.05 Content\nYou are :client, connected over DTLS\n")
        assert await client(f"coap://127.0.0.1:{port}/whoami") == (
            0, "Result: 2.05 Content\nYou are not authenticated\n")
    finally:
        server.terminate()
        await server.wait()
