"""Transports: the modular network backends of the library.

They move bytes and addresses and hold no CoAP logic. Which ones a Context
loads, and in which order, is decided by :mod:`aiocoap.defaults`
(overridable with ``AIOCOAP_CLIENT_TRANSPORT`` / ``AIOCOAP_SERVER_TRANSPORT``).

* ``udp6``: CoAP over UDP on one dual-stack socket (recvmsg, packet info,
  ICMP errors, multicast); Linux.
* ``simple6``: client-only UDP with one connected socket per peer; portable.
* ``simplesocketserver``: server-only UDP bound to one address; portable.
* ``tcp`` / ``tls``: CoAP over TCP and TLS (RFC 8323), framing in
  ``rfc8323common``.
* ``tinydtls`` / ``tinydtls_server``: CoAP over DTLS (coaps://).
* ``oscore``: OSCORE (RFC 8613) on top of any of the above.
"""
