"""The table of transports (aiocoap.transports.TRANSPORTS) and how a
Context loads from it."""

import pytest

import aiocoap
from aiocoap import defaults
from aiocoap.transports import TRANSPORTS, TransportEntry, TransportSetup


def test_every_default_name_is_in_the_table():
    for name in defaults.get_default_clienttransports() + defaults.get_default_servertransports():
        assert name in TRANSPORTS, name


def test_entries_say_what_they_carry():
    assert TRANSPORTS["udp6"].schemes == ("coap",)
    assert TRANSPORTS["tlsserver"].server and not TRANSPORTS["tlsserver"].client
    assert TRANSPORTS["simple6"].client and not TRANSPORTS["simple6"].server
    for entry in TRANSPORTS.values():
        assert entry.client or entry.server
        assert all(s.startswith("coap") for s in entry.schemes)


async def test_unknown_explicit_transport_is_an_error():
    with pytest.raises(ValueError, match="Unknown transport 'nosuch'"):
        await aiocoap.Context.create_client_context(transports=["nosuch"])


async def test_explicit_transport_with_missing_modules_names_the_extra(monkeypatch):
    monkeypatch.setitem(
        TRANSPORTS, "fake", TransportEntry("fake", "udp6", ("coap",), True, False, extra="tinydtls")
    )
    monkeypatch.setattr(TransportEntry, "missing_modules", property(lambda self: ["DTLSSocket"]))
    with pytest.raises(ImportError, match=r"install aiocoap\[tinydtls\]"):
        await aiocoap.Context.create_client_context(transports=["fake"])


async def test_default_transport_with_missing_modules_is_skipped(monkeypatch):
    monkeypatch.setitem(
        TRANSPORTS, "fake", TransportEntry("fake", "udp6", ("coap",), True, False, extra="tinydtls")
    )
    monkeypatch.setattr(TransportEntry, "missing_modules", property(lambda self: ["DTLSSocket"]))
    monkeypatch.setattr(defaults, "get_default_clienttransports", lambda loop=None: ["fake", "udp6"])
    ctx = await aiocoap.Context.create_client_context()
    try:
        assert "fake" not in repr(ctx)
    finally:
        await ctx.shutdown()


def _setup(bind, loaded):
    return TransportSetup(
        log=None, loop=None, tokenmanager=None, tuning=None, server_bind=bind, ssl_context=None,
        client_credentials=None, server_credentials=None, add_message_interface=None,
        add_token_interface=None, add_request_interface=None, request_provider=None,
        loaded=loaded,
    )


def test_secure_listener_moves_next_to_its_plain_variant():
    assert _setup(("::1", 7000), {"tcpserver"}).secure_bind("tcpserver") == ("::1", 7001)
    # alone on the port: it takes the port as given
    assert _setup(("::1", 7000), set()).secure_bind("tcpserver") == ("::1", 7000)
    # ephemeral and default ports are not moved
    assert _setup(("::1", 0), {"tcpserver"}).secure_bind("tcpserver") == ("::1", 0)
    assert _setup((None, None), {"tcpserver"}).secure_bind("tcpserver") == (None, None)
    assert _setup(None, set()).secure_bind("tcpserver") is None
