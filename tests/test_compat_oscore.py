"""aiocoap 0.4.x compatibility: OSCORE and credentials as programs written
for aiocoap 0.4.x use them -- credentials files with ``basedir`` and
labels, a server enabled by wrapping its site, security contexts an
application composes from CanProtect / CanUnprotect /
SecurityContextUtils."""

import asyncio
import json

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("filelock")

import aiocoap  # noqa: E402
import aiocoap.resource as resource  # noqa: E402
from aiocoap import GET, Context, Message, oscore  # noqa: E402
from aiocoap.credentials import CredentialsMap  # noqa: E402
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper  # noqa: E402

from ports import free_udp_port  # noqa: E402

SECRET = b"correct horse battery staple"


def context_dir(path, sender, recipient):
    path.mkdir()
    (path / "settings.json").write_text(json.dumps({
        "sender-id_ascii": sender, "recipient-id_ascii": recipient, "secret_ascii": SECRET.decode(),
    }))
    return str(path)


class Hello(resource.Resource):
    async def render_get(self, request):
        return Message(payload=b"hello over OSCORE")


@pytest.mark.core
async def test_client_and_server_as_in_the_aiocoap_documentation(tmp_path):
    server_credentials = CredentialsMap()
    server_credentials.load_from_dict({":client": {"oscore": {"basedir": context_dir(tmp_path / "s", "srv", "cli")}}})
    site = resource.Site()
    site.add_resource(["hello"], Hello())
    port = free_udp_port()
    server = await Context.create_server_context(
        OscoreSiteWrapper(site, server_credentials), bind=("127.0.0.1", port), transports=["oscore", "udp6"]
    )
    client = await Context.create_client_context(transports=["oscore", "udp6"])
    try:
        uri = f"coap://127.0.0.1:{port}/hello"
        client.client_credentials.load_from_dict({
            ":server": {"oscore": {"basedir": context_dir(tmp_path / "c", "cli", "srv")}},
            f"coap://127.0.0.1:{port}/*": ":server",
        })
        response = await asyncio.wait_for(client.request(Message(code=GET, uri=uri)).response, 10)
        assert response.payload == b"hello over OSCORE"
        assert response.remote.authenticated_claims
        secctx = client.client_credentials.credentials_from_request(Message(code=GET, uri=uri))
        assert isinstance(secctx, oscore.FilesystemSecurityContext) and secctx.sender_sequence_number >= 1
        assert server_credentials.find_all_used_contextless_oscore_kid() == {b"cli"}
    finally:
        await client.shutdown()
        await server.shutdown()


class ApplicationContext(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):
    """A security context as an application composes one (keeping its
    state wherever it likes), from the parts aiocoap 0.4.x offers."""

    def __init__(self, sender_id, recipient_id):
        self.sender_id = sender_id
        self.recipient_id = recipient_id
        self.id_context = None
        self.alg_aead = oscore.algorithms["AES-CCM-16-64-128"]
        self.hashfun = oscore.hashfunctions["sha256"]
        self.derive_keys(b"", SECRET)
        self.sender_sequence_number = 0
        self.recipient_replay_window = oscore.ReplayWindow(32, lambda: None)
        self.recipient_replay_window.initialize_empty()
        self.saved = []

    def post_seqnoincrease(self):
        self.saved.append(self.sender_sequence_number)


def test_composed_context_talks_to_the_library_context():
    client = ApplicationContext(b"cli", b"srv")
    server = oscore.SecurityContext(sender_id=b"srv", recipient_id=b"cli", master_secret=SECRET)
    assert client.sender_key == server.recipient_key and client.common_iv == server.common_iv
    request = Message(code=GET, uri="coap://example.com/x", _mtype=aiocoap.CON, _mid=1, _token=b"t")
    protected, request_id = client.protect(request)
    assert protected.code == aiocoap.POST and request_id.code_style == oscore.CodeStyle.POST_CHANGED
    assert client.saved == [1]
    assert server.get_oscore_context_for({oscore.COSE_KID: b"cli"}) is server
    assert server.get_oscore_context_for({oscore.COSE_KID: b"other"}) is None
    plain, server_request_id = server.unprotect(Message.decode(protected.encode()))
    assert plain.opt.uri_path == ("x",)
    outer, _ = server.context_for_response().protect(Message(code=aiocoap.CONTENT, payload=b"ok"), server_request_id)
    answer, _ = client.context_from_response({}).unprotect(outer, request_id)
    assert answer.payload == b"ok"
    # the older attribute name still works
    assert client.algorithm is client.alg_aead


def test_reusable_kid_and_piv():
    client = oscore.SecurityContext(sender_id=b"a", recipient_id=b"b", master_secret=SECRET)
    _, request_id = client.protect(Message(code=GET, uri="coap://h/"))
    assert request_id.get_reusable_kid_and_piv() == (b"a", b"\x00")
    assert request_id.get_reusable_kid_and_piv() == (None, None)


def test_aes_cbc_is_available_but_not_as_a_context_algorithm():
    key, iv = bytes(16), bytes(16)
    sealed = oscore.A128CBC.encrypt(b"hello", b"", key, iv)
    assert len(sealed) == 16 and oscore.A128CBC.decrypt(sealed, b"", key, iv) == b"hello"
    with pytest.raises(oscore.ProtectionInvalid):
        oscore.A128CBC.decrypt(sealed[:15], b"", key, iv)
    assert not issubclass(oscore.A128CBC, oscore.AeadAlgorithm)
    with pytest.raises(KeyError):
        oscore.SecurityContext(sender_id=b"a", recipient_id=b"b", master_secret=SECRET, algorithm=oscore.A128CBC)


def test_filesystem_context_from_a_credentials_item(tmp_path):
    directory = context_dir(tmp_path / "c", "cli", "srv")
    with oscore.FilesystemSecurityContext.from_item({"basedir": directory}) as ctx:
        assert ctx.sender_id == b"cli" and ctx.find_all_used_contextless_oscore_kid() == {b"srv"}
