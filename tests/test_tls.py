"""CoAP over TLS (aiocoap.transports.tls) on loopback, with certificates
made for each test session by the ``cryptography`` package: a CA, a server
certificate for localhost / 127.0.0.1, a client certificate, and an
unrelated second CA to distrust.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl

import pytest

from aiocoap import error, resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.protocol import Context
from aiocoap.transports.tcp import TcpConnection, TcpTuning
from aiocoap.transports.tls import TLSClient, TLSServer

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

pytestmark = pytest.mark.core

FAST = TcpTuning(connect_timeout=3.0, csm_timeout=1.0, close_timeout=0.5)
TIMEOUT = 5.0


# --- certificates ---------------------------------------------------------------


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_ids(builder, key, issuer_key):
    return builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
    )


def make_ca(common_name):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )
    cert = _key_ids(builder, key, key).sign(key, hashes.SHA256())
    return key, cert


def make_leaf(ca, common_name, *, dns=(), ips=(), client=False):
    import ipaddress

    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = _key_ids(builder, key, ca_key).sign(ca_key, hashes.SHA256())
    return key, cert


def write_pem(directory, stem, key, cert):
    cert_path = directory / f"{stem}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / f"{stem}.key"
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return str(cert_path), str(key_path)


class PKI:
    def __init__(self, directory):
        ca = make_ca("aiocoap test CA")
        other = make_ca("some other CA")
        self.ca, _ = write_pem(directory, "ca", *ca)
        self.other_ca, _ = write_pem(directory, "other-ca", *other)
        self.server = write_pem(
            directory, "server", *make_leaf(ca, "localhost", dns=["localhost"], ips=["127.0.0.1", "::1"])
        )
        self.name_only = write_pem(directory, "name-only", *make_leaf(ca, "localhost", dns=["localhost"]))
        self.client = write_pem(directory, "client", *make_leaf(ca, "client.example", client=True))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


# --- helpers --------------------------------------------------------------------


class Hello(resource.Resource):
    def __init__(self):
        super().__init__()
        self.remotes = []

    async def render_get(self, request):
        self.remotes.append(request.remote)
        return Message(payload=b"hello over TLS")

    async def render_post(self, request):
        return Message(code=Code.CHANGED, payload=request.payload.upper())


def server_context(pki, cert=None, require_client_cert=False):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*(cert or pki.server))
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    context.sni_seen = []
    context.sni_callback = lambda sslobj, name, ctx: context.sni_seen.append(name)
    return context


@contextlib.asynccontextmanager
async def tls_server(ssl_context):
    site = resource.Site()
    site.hello = Hello()
    site.add_resource(["hello"], site.hello)
    context = await Context.create_server_context(
        site, bind=("127.0.0.1", 0), transports=["tlsserver"], _ssl_context=ssl_context
    )
    (server,) = [ti for ti in context._tokenmanager.token_interfaces if isinstance(ti, TLSServer)]
    server.tuning = FAST
    context.port = server.server.sockets[0].getsockname()[1]
    context.tls = server
    context.site = site
    try:
        yield context
    finally:
        await context.shutdown()


@contextlib.asynccontextmanager
async def tls_client():
    context = await Context.create_client_context(transports=["tlsclient"])
    (client,) = [ti for ti in context._tokenmanager.token_interfaces if isinstance(ti, TLSClient)]
    client.tuning = FAST
    context.tls = client
    try:
        yield context
    finally:
        await context.shutdown()


def trust(client, authority, ca_file, client_cert=None):
    entry = {"ca-file": ca_file}
    if client_cert is not None:
        entry["client-cert"], entry["client-key"] = client_cert
    client.client_credentials.load_from_dict({f"coaps+tcp://{authority}/*": {"tls": entry}})


async def get(client, uri, **kwargs):
    message = Message(code=kwargs.pop("code", Code.GET), uri=uri, **kwargs)
    return await asyncio.wait_for(client.request(message).response, TIMEOUT)


# --- tests ------------------------------------------------------------------------


async def test_requests_over_tls_with_a_trusted_ca(pki):
    ssl_context = server_context(pki)
    async with tls_server(ssl_context) as server, tls_client() as client:
        authority = f"127.0.0.1:{server.port}"
        trust(client, authority, pki.ca)
        response = await get(client, f"coaps+tcp://{authority}/hello")
        assert response.code == Code.CONTENT and response.payload == b"hello over TLS"
        changed = await get(client, f"coaps+tcp://{authority}/hello", code=Code.POST, payload=b"abc")
        assert changed.payload == b"ABC"

        remote = response.remote
        assert isinstance(remote, TcpConnection) and remote.scheme == "coaps+tcp"
        assert remote.uri_base == f"coaps+tcp://{authority}"
        assert changed.remote is remote  # pooled
        assert remote._transport.get_extra_info("ssl_object").selected_alpn_protocol() == "coap"
        (server_side,) = server.site.hello.remotes
        assert server_side.scheme == "coaps+tcp"
        assert server_side.uri_base_local == f"coaps+tcp://{authority}"
        assert ssl_context.sni_seen == [None]  # no SNI for an IP literal


async def test_host_names_are_verified_and_sent_as_sni(pki):
    ssl_context = server_context(pki, cert=pki.name_only)
    async with tls_server(ssl_context) as server, tls_client() as client:
        trust(client, f"localhost:{server.port}", pki.ca)
        trust(client, f"127.0.0.1:{server.port}", pki.ca)
        response = await get(client, f"coaps+tcp://localhost:{server.port}/hello")
        assert response.payload == b"hello over TLS"
        assert ssl_context.sni_seen == ["localhost"]
        # the certificate does not name the address
        with pytest.raises(error.NetworkError, match="certificate verify failed"):
            await get(client, f"coaps+tcp://127.0.0.1:{server.port}/hello")


async def test_sni_names_the_server_in_request_uris_without_uri_host(pki):
    ssl_context = server_context(pki, cert=pki.name_only)
    async with tls_server(ssl_context) as server, tls_client() as client:
        trust(client, f"localhost:{server.port}", pki.ca)
        seen = []

        class Where(resource.Resource):
            async def render_get(self, request):
                seen.append(request.get_request_uri(local_is_server=True))
                return Message(payload=b"ok")

        server.site.add_resource(["where"], Where())
        message = Message(code=Code.GET)
        message.set_request_uri(f"coaps+tcp://localhost:{server.port}/where", set_uri_host=False)
        assert message.opt.uri_host is None
        await asyncio.wait_for(client.request(message).response, TIMEOUT)
        assert seen == [f"coaps+tcp://localhost:{server.port}/where"]
        # (the application's own SNI callback still runs)
        assert ssl_context.sni_seen == ["localhost"]


async def test_untrusted_certificate_fails_with_a_clear_error(pki):
    async with tls_server(server_context(pki)) as server, tls_client() as client:
        authority = f"127.0.0.1:{server.port}"
        trust(client, authority, pki.other_ca)
        with pytest.raises(error.NetworkError, match="certificate verify failed: .*issuer"):
            await get(client, f"coaps+tcp://{authority}/hello")
        # the server is not disturbed by the failed handshake
        trust(client, authority, pki.ca)
        assert (await get(client, f"coaps+tcp://{authority}/hello")).code == Code.CONTENT


async def test_system_store_does_not_trust_a_private_ca(pki):
    async with tls_server(server_context(pki)) as server, tls_client() as client:
        with pytest.raises(error.NetworkError, match="certificate verify failed"):
            await get(client, f"coaps+tcp://127.0.0.1:{server.port}/hello")


async def test_server_can_require_client_certificates(pki):
    ssl_context = server_context(pki, require_client_cert=True)
    async with tls_server(ssl_context) as server:
        authority = f"127.0.0.1:{server.port}"
        async with tls_client() as anonymous:
            trust(anonymous, authority, pki.ca)
            with pytest.raises(error.NetworkError, match="client certificate"):
                await get(anonymous, f"coaps+tcp://{authority}/hello")
        async with tls_client() as identified:
            trust(identified, authority, pki.ca, client_cert=pki.client)
            response = await get(identified, f"coaps+tcp://{authority}/hello")
            assert response.payload == b"hello over TLS"
            (server_side,) = server.site.hello.remotes
            peer_cert = server_side._transport.get_extra_info("peercert")
            assert peer_cert["subject"] == ((("commonName", "client.example"),),)


async def test_plain_tcp_to_a_tls_port_does_not_disturb_the_server(pki):
    async with tls_server(server_context(pki)) as server, tls_client() as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x00" * 64)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) is not None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        authority = f"127.0.0.1:{server.port}"
        trust(client, authority, pki.ca)
        assert (await get(client, f"coaps+tcp://{authority}/hello")).code == Code.CONTENT


async def test_tls_server_needs_an_ssl_context():
    loop = asyncio.get_running_loop()
    with pytest.raises(TypeError):
        await TLSServer.create_server(("127.0.0.1", 0), None, None, loop, None)


async def test_tcp_and_tls_servers_share_an_explicit_port_number(pki):
    """With bind=(host, PORT), TCP listens on PORT and TLS on PORT+1 (they
    used to collide with EADDRINUSE)."""
    from ports import free_udp_port

    port = free_udp_port()  # with port + 1 free too
    site = resource.Site()
    site.add_resource(["hello"], Hello())
    server = await Context.create_server_context(
        site, bind=("127.0.0.1", port), transports=["tcpserver", "tlsserver"], _ssl_context=server_context(pki)
    )
    try:
        (tls,) = [ti for ti in server._tokenmanager.token_interfaces if isinstance(ti, TLSServer)]
        assert tls.server.sockets[0].getsockname()[1] == port + 1
        async with tls_client() as client:
            trust(client, f"127.0.0.1:{port + 1}", pki.ca)
            response = await get(client, f"coaps+tcp://127.0.0.1:{port + 1}/hello")
            assert response.payload == b"hello over TLS"
    finally:
        await server.shutdown()
