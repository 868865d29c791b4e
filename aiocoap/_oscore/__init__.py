"""Implementation of OSCORE (RFC 8613) behind the :mod:`aiocoap.oscore` facade.

Each module has one job and none of them does I/O except
:mod:`.filesystem`, which owns the on-disk security contexts:

* :mod:`.errors` -- the exceptions of the documented API
* :mod:`.algorithms` -- AEAD algorithms, hash functions and HKDF (RFC 8613 §3.2)
* :mod:`.encoding` -- the byte-level structures: OSCORE option value (§6.1),
  nonce (§5.2), AAD (§5.4), key derivation info (§3.2.1)
* :mod:`.optionclasses` -- which options go into the inner (encrypted) and
  outer message (§4.1), and the plaintext format (§5.3)
* :mod:`.replaywindow` -- the recipient's replay window (§7.4)
* :mod:`.contexts` -- :class:`SecurityContext` with protect/unprotect (§8)
* :mod:`.filesystem` -- :class:`FilesystemSecurityContext`, contexts kept in a
  directory with Appendix B.1 sequence number and replay window persistence

Applications import from :mod:`aiocoap.oscore`; the module layout here is
not part of the stable API.
"""
