"""Transports: the modular network backends of the library.

They move bytes and addresses and hold no CoAP logic; each one implements
one of the interfaces of :mod:`aiocoap.interfaces` (a MessageInterface under
the message layer, a TokenInterface under the token layer, or a
RequestInterface). Their classes are not part of the API: the descriptions
in the modules are for information, and applications select transports by
name only.

A Context can run several transports side by side. They are loaded in the
order :mod:`aiocoap.defaults` gives (overridable with the environment
variables ``AIOCOAP_CLIENT_TRANSPORT`` / ``AIOCOAP_SERVER_TRANSPORT``, a
colon separated list of names), and an outgoing message goes through the
first one that claims its remote or URI scheme; some transports claim every
address of their scheme, so not all combinations make sense.

The available transports are:

* ``udp6``: CoAP over UDP on one dual-stack socket (recvmsg, packet info,
  ICMP errors, multicast); Linux.
* ``simple6``: client-only UDP with one connected socket per peer; portable.
* ``simplesocketserver``: server-only UDP bound to one address; portable.
* ``generic_udp``: not a transport itself, the code the simple UDP
  transports share.
* ``tcp`` / ``tls``: CoAP over TCP and TLS (RFC 8323), framing in
  ``rfc8323common``.
* ``tinydtls`` / ``tinydtls_server``: CoAP over DTLS (coaps://).
* ``oscore``: OSCORE (RFC 8613) on top of any of the above.
"""
